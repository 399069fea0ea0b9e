#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import WaakvlamCrypto
import WaakvlamSystem

public struct JournalOptions: Sendable {
    /// A segment is closed and a new one started once it reaches this size. 4 KiB ... 2 GiB.
    public var segmentSizeLimit: Int
    /// A group commit writes at most this many bytes (but always at least one whole append).
    /// 4 KiB ... 16 MiB.
    public var maxGroupBytes: Int
    /// Records between two checkpoints (a checkpoint also follows each rotation and close).
    public var checkpointInterval: UInt64
    /// How long the delivery index remembers a completed signal (all deliveries final, no
    /// payload key left) after its receipt: the window for idempotent resubmission and status
    /// queries. Older ones are dropped at open and whenever the index has doubled, so memory
    /// follows the live backlog, not the history. nil: remember every signal.
    public var rememberCompletedSignals: TimeInterval?
    /// How long a lazy append (`append(_:on:lazily:completion:)`) waits at most for another
    /// append to start a group commit it can join. 0 ... 60 s.
    public var lazyDelay: TimeInterval

    public init(segmentSizeLimit: Int = 64 << 20, maxGroupBytes: Int = 4 << 20, checkpointInterval: UInt64 = 100_000,
                rememberCompletedSignals: TimeInterval? = 30 * 86400, lazyDelay: TimeInterval = 0.01) {
        self.segmentSizeLimit = segmentSizeLimit
        self.maxGroupBytes = maxGroupBytes
        self.checkpointInterval = checkpointInterval
        self.rememberCompletedSignals = rememberCompletedSignals
        self.lazyDelay = lazyDelay
    }
}

/// What recovery found and did when the journal was opened.
public struct RecoveryReport: Equatable, Sendable {
    /// Records replayed into the delivery index.
    public let records: UInt64
    /// Records whose hash chain was checked (those after the checkpoint).
    public let hashedRecords: UInt64
    public let segments: Int
    /// The sequence number of the checkpoint recovery started hashing from (nil: none).
    public let checkpointSequence: UInt64?
    /// Bytes of a torn tail (an interrupted, never acknowledged write) that were cut off.
    public let tornBytesCut: UInt64
    /// Why the tail was cut (nil when nothing was cut).
    public let tornReason: String?
    public let pendingDeliveries: Int
    public let duration: TimeInterval
}

/// Counters since open.
public struct JournalStatistics: Equatable, Sendable {
    /// Calls to `append` that succeeded / failed.
    public var appends: UInt64 = 0
    public var failedAppends: UInt64 = 0
    public var records: UInt64 = 0
    /// Group commits: each is one pwrite and one fdatasync of the segment.
    public var groupCommits: UInt64 = 0
    /// fdatasync calls on segments, and on the key file (groups that carried keys).
    public var segmentSyncs: UInt64 = 0
    public var keySyncs: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    public var rotations: UInt64 = 0
    public var checkpoints: UInt64 = 0
    /// The largest number of appends that shared one group commit.
    public var largestGroup: Int = 0
    /// The last durable record's sequence and chain hash (hex). Logged or stored elsewhere
    /// now and then, they anchor the chain: a later rewrite of the whole chain cannot match.
    public var headSequence: UInt64 = 0
    public var headHash: String = ""
}

/// The append-only, hash-chained delivery journal of one node. See docs/JOURNAL.md.
///
/// `append` may be called from any number of threads: a single writer thread collects what
/// is queued, writes it with one `pwrite`, makes it durable with one `fdatasync`, and only
/// then returns to each caller (or, for `append(_:completion:)`, calls its completion). An
/// append is atomic with respect to recovery: after a crash either all of its records are
/// there or none.
public final class Journal: @unchecked Sendable {
    /// One append call may hold at most this many bytes of records.
    public static let maxAppendBytes = 16 << 20
    /// Recovery cuts an invalid tail only up to this size: no single write is larger.
    static let tornTailLimit = UInt64(maxAppendBytes + 4096)

    public let directory: String
    public let options: JournalOptions
    public let recovery: RecoveryReport
    private let index: DeliveryIndex
    private let lockFD: Int32

    // Writer state: touched only by the writer thread once open returns.
    private var segmentNumber: UInt32
    private var segmentFD: Int32
    private var segmentSize: UInt64
    private var nextSequence: UInt64
    private var lastHash: [UInt8]
    /// Where the last durable record ends; checkpoints name it.
    private var lastRecord: (segment: UInt32, end: UInt64)
    private var checkpointedSequence: UInt64
    private let keyFD: Int32
    /// The key file's size (see `writeSlots`).
    private var keyFileBytes: Int
    /// The key file grows by this much at a time: 1,024 slots.
    private static let keyFileStep = 64 << 10
    /// Set when a failed write could not be rolled back: the journal refuses further appends.
    private var broken: JournalError?

    private let queueLock = MonotonicCondition()
    private var queue: [PendingAppend] = []
    /// Appends in `queue` that start a group commit (all but the lazy ones).
    private var urgentQueued = 0
    /// When the oldest lazy append in `queue` stops waiting for an urgent one (monotonic ns).
    private var lazyDeadline: UInt64?
    /// `options.lazyDelay` in nanoseconds.
    private let lazyDelay: UInt64
    /// What the appends in `queue` wait on; the writer takes it together with them.
    private var openTicket: CommitTicket?
    private var closing = false
    private let writerExited = DispatchSemaphore(value: 0)

    private let slotLock = NSLock()
    private var nextSlot: UInt32

    private let statsLock = NSLock()
    private var stats = JournalStatistics()
    /// The chain hash of `stats.headSequence`; hex-encoded only when `statistics` is read.
    private var headHash: [UInt8] = []
    /// False after a group commit failed, until one succeeds again (read by health checks).
    private var lastCommitSucceeded = true

    /// Called on the writer thread after every group commit with its duration (write and
    /// fdatasync, in seconds) and whether it succeeded: the node's fsync latency metric.
    public var onGroupCommit: (@Sendable (TimeInterval, Bool) -> Void)?

    private let readLock = NSLock()
    private var readers: [UInt32: SegmentReader] = [:]

    private let checkpointQueue = DispatchQueue(label: "waakvlam.journal.checkpoint")
    /// Up to this many callers the writer wakes itself; more are woken from `wakeQueue`
    /// (handing over to another thread costs about as much as a few wake-ups).
    private static let inlineWakeLimit = 4
    /// Wakes the callers of committed groups (see `writerLoop`).
    private let wakeQueue = DispatchQueue(label: "waakvlam.journal.wake")
    /// Calls the completions of asynchronous appends, one group after another.
    private let completionQueue = DispatchQueue(label: "waakvlam.journal.completions")
    /// Set on `completionQueue`, so that `close` can tell it runs there.
    private static let completionQueueKey = DispatchSpecificKey<Bool>()
    /// The thread running completions (under `queueLock`), and the appends it made meanwhile.
    private var completingThread: pthread_t?
    private var heldByCompletions: [PendingAppend] = []
    /// The writer thread's hashing context.
    private let hasher = SHA256Context()
    /// The writer thread's buffer for one group's frames (its capacity is kept between groups).
    private var groupBuffer: [UInt8] = []
    /// The writer thread's running chain hash while it seals a group (it becomes `lastHash`
    /// once durable).
    private var chainHash = [UInt8](repeating: 0, count: 32)
    /// The writer thread's buffer for a run of neighbouring key slots.
    private var slotBuffer: [UInt8] = []

    /// The journal folder inside a node's state folder.
    public static func directory(inState stateDirectory: String) -> String { stateDirectory + "/journal" }

    /// Opens (creating if needed) the journal in `directory`, runs recovery and starts the
    /// writer. Throws `locked` when another process has it open, `corrupt` when it is damaged
    /// beyond a torn tail.
    public static func open(directory: String, options: JournalOptions = .init()) throws -> Journal {
        guard (4096...(2 << 30)).contains(options.segmentSizeLimit) else {
            throw JournalError.invalidSetup("segmentSizeLimit must be between 4 KiB and 2 GiB")
        }
        guard (4096...maxAppendBytes).contains(options.maxGroupBytes) else {
            throw JournalError.invalidSetup("maxGroupBytes must be between 4 KiB and 16 MiB")
        }
        guard options.checkpointInterval > 0 else {
            throw JournalError.invalidSetup("checkpointInterval must be at least 1")
        }
        guard (0...60).contains(options.lazyDelay) else {
            throw JournalError.invalidSetup("lazyDelay must be between 0 and 60 seconds")
        }
        try makeDirectory(directory)
        let lockFD = try lock(directory)
        do {
            return try Journal(directory: directory, options: options, lockFD: lockFD)
        } catch {
            Glibc.close(lockFD)
            throw error
        }
    }

    private init(directory: String, options: JournalOptions, lockFD: Int32) throws {
        self.directory = directory
        self.options = options
        lazyDelay = nanoseconds(options.lazyDelay)
        self.lockFD = lockFD
        let started = monotonicNanoseconds()
        let index = DeliveryIndex(directory: directory)
        self.index = index
        let state = try Journal.recover(directory: directory, index: index, options: options)
        segmentNumber = state.segment
        segmentSize = state.segmentSize
        nextSequence = state.nextSequence
        lastHash = state.lastHash
        lastRecord = state.lastRecord
        nextSlot = state.nextSlot
        checkpointedSequence = state.checkpoint?.sequence ?? 0
        segmentFD = try syscall("open segment") {
            Glibc.open(directory + "/" + Segment.fileName(state.segment), O_WRONLY | O_CLOEXEC)
        }
        do {
            (keyFD, keyFileBytes) = try Journal.openKeyFile(directory)
        } catch {
            Glibc.close(segmentFD)
            throw error
        }
        completionQueue.setSpecific(key: Journal.completionQueueKey, value: true)
        stats.headSequence = state.nextSequence - 1
        headHash = state.lastHash
        recovery = RecoveryReport(
            records: state.records, hashedRecords: state.hashedRecords, segments: state.segments,
            checkpointSequence: state.checkpoint?.sequence, tornBytesCut: state.tornBytesCut,
            tornReason: state.tornReason, pendingDeliveries: index.pendingCount,
            duration: Double(monotonicNanoseconds() - started) / 1e9)
        if nextSequence > 1, checkpointedSequence != nextSequence - 1 {
            try? writeCheckpoint()
        }
        let writer = Thread { [unowned self] in
            nameCurrentThread("journal-writer")
            self.writerLoop()
        }
        writer.start()
        Log.shared.info("journal_opened", [
            "directory": directory, "records": Int(recovery.records), "hashed_records": Int(recovery.hashedRecords),
            "segments": recovery.segments, "pending_deliveries": recovery.pendingDeliveries,
            "torn_bytes_cut": Int(recovery.tornBytesCut), "duration_ms": Int(recovery.duration * 1000),
        ])
    }

    deinit { close() }

    // MARK: - Appending

    /// Appends `records` as one atomic unit and returns once they are durable (written and
    /// fdatasync'ed), with their positions. Decisions carrying a plaintext `payload` are
    /// sealed with a fresh key first. A `payloadPurged` record destroys the delivery's key in
    /// the same group commit. Throws `diskFull` / `unavailable` when the write or sync fails
    /// (nothing of this append is then acknowledged or kept), `closed`, or `invalidRecord`.
    @discardableResult
    public func append(_ records: [JournalRecord]) throws -> [RecordPosition] {
        guard !records.isEmpty else { return [] }
        let pending = try prepare(records, completion: nil, on: nil)
        let ticket = try enqueue(pending)!
        ticket.wait()
        return try pending.result!.get()
    }

    /// What an asynchronous append is told: its records' positions once they are durable,
    /// or why its group commit failed (`diskFull`, `unavailable`).
    public typealias AppendCompletion = @Sendable (Result<[RecordPosition], JournalError>) -> Void

    /// Appends `records` like `append(_:)`, without waiting for them to become durable:
    /// `completion` is called exactly once, after the group commit that carried them, on the
    /// journal's completion thread, in the order of the records' sequence numbers. So no
    /// thread is parked per append: the caller goes on at once and many appends share one
    /// commit. Completions should be short. They may append asynchronously again (such an
    /// append joins the queue once the group's completions ran, so appends from other threads
    /// may go before it); they must not wait for such an append, nor call `close` (a
    /// precondition failure); a blocking `append` only delays the completions after them.
    /// Throws at once, without calling `completion`, for a closed journal or an invalid
    /// record (an empty `records` too).
    public func append(_ records: [JournalRecord], completion: @escaping AppendCompletion) throws {
        guard !records.isEmpty else { throw JournalError.invalidRecord("an append needs at least one record") }
        _ = try enqueue(try prepare(records, completion: completion, on: nil))
    }

    /// Appends `records` like `append(_:completion:)`, but `completion` runs on `loop`: the
    /// writer hands each group's completions for a loop to it as one task, in the order of
    /// the records' sequence numbers. For callers that live on an event loop (a connection's,
    /// the deliveries'), this saves a hop through the completion thread and frees the records
    /// on the thread that made them. A completion whose loop has finished is dropped (its
    /// work ended with the loop); `close` hands the last ones over before it returns, but does
    /// not wait for them to run. Appends a completion makes join the queue at once.
    ///
    /// A `lazily` append starts no group commit of its own: it joins the next one another
    /// append starts, or commits after `JournalOptions.lazyDelay` at the latest (at once when
    /// the journal closes). For records nobody waits on, such as a delivery's receipt: under
    /// a moderate load they ride along with the next submission instead of costing a sync.
    public func append(_ records: [JournalRecord], on loop: EventLoop, lazily: Bool = false,
                       completion: @escaping AppendCompletion) throws {
        guard !records.isEmpty else { throw JournalError.invalidRecord("an append needs at least one record") }
        _ = try enqueue(try prepare(records, completion: completion, on: loop), lazily: lazily)
    }

    /// Queues a prepared append for the writer. Returns the ticket a blocking caller waits on
    /// (nil for an asynchronous append, whose completion is called instead).
    private func enqueue(_ pending: PendingAppend, lazily: Bool = false) throws -> CommitTicket? {
        queueLock.lock()
        defer { queueLock.unlock() }
        guard !closing else { throw JournalError.closed }
        var ticket: CommitTicket?
        if pending.completion == nil {
            if openTicket == nil { openTicket = CommitTicket() }
            ticket = openTicket
        } else if pending.loop == nil, let completing = completingThread, pthread_equal(completing, pthread_self()) != 0 {
            heldByCompletions.append(pending)
            return nil
        }
        queue.append(pending)
        // The writer waits while the queue is empty (only the first append wakes it, lazy or
        // not), and while it holds lazy appends only (only the first urgent one wakes it).
        if lazily {
            if lazyDeadline == nil { lazyDeadline = monotonicNanoseconds() + lazyDelay }
            if queue.count == 1 { queueLock.signal() }
        } else {
            urgentQueued += 1
            if urgentQueued == 1 { queueLock.signal() }
        }
        return ticket
    }

    /// Random bytes per sealed payload: its key and its nonce.
    private let keyMaterialCount = AESGCM.keyCount + AESGCM.nonceCount

    /// Seals payloads and encodes the frames of one append, in the caller's thread, so that
    /// the writer thread only numbers, checksums and hashes them. The records themselves stay
    /// as they are (a decision keeps its plaintext until the append is done): the sealed
    /// payload goes into the frame, and the delivery index learns its key slot from
    /// `PendingAppend.firstSlot`.
    private func prepare(_ records: [JournalRecord], completion: AppendCompletion?, on loop: EventLoop?) throws -> PendingAppend {
        var sealingCount = 0
        var purgeCount = 0
        var capacity = 0
        for record in records {
            // Most records take less (a received record with two pseudonyms about 450 bytes).
            capacity += Frame.headerSize + 512
            switch record {
            case .decision(let d):
                if let payload = d.payload {
                    sealingCount += 1
                    capacity += payload.count + AESGCM.nonceCount + AESGCM.tagCount
                }
            case .payloadPurged:
                purgeCount += 1
            default:
                break
            }
        }
        var slot: UInt32 = 0
        if sealingCount > 0 {
            slotLock.lock()
            slot = nextSlot
            nextSlot += UInt32(sealingCount)
            slotLock.unlock()
        }
        let firstSlot = slot
        var keyEvents: [KeyEvent] = []
        keyEvents.reserveCapacity(sealingCount + purgeCount)
        var w = ByteWriter(capacity: capacity)
        // Every fresh key with its nonce, from one call to the random generator, on the stack:
        // only the keys are kept (for the key file), the payloads are sealed into the frames.
        try withUnsafeTemporaryAllocation(byteCount: sealingCount * keyMaterialCount, alignment: 8) { material in
            SecureRandom.fill(material)
            defer { SecureRandom.wipe(material) }
            var used = 0
            for i in records.indices {
                var sealing: PayloadSealing?
                switch records[i] {
                case .decision(let d):
                    if d.payload != nil {
                        let key = UnsafeRawBufferPointer(rebasing: material[used..<used + AESGCM.keyCount])
                        let nonce = UnsafeRawBufferPointer(rebasing: material[used + AESGCM.keyCount..<used + keyMaterialCount])
                        used += keyMaterialCount
                        sealing = PayloadSealing(slot: slot, key: key, nonce: nonce)
                        keyEvents.append(.seal(record: i, slot: slot, key: Array(key),
                                               delivery: DeliveryKey(signalID: d.signalID, recipientID: d.recipientID)))
                        slot += 1
                    }
                case .payloadPurged(let r):
                    keyEvents.append(.purge(record: i, delivery: DeliveryKey(signalID: r.signalID, recipientID: r.recipientID)))
                default:
                    break
                }
                try Frame.encode(records[i], sealing: sealing, flags: i == records.count - 1 ? Frame.flagEndOfAppend : 0, into: &w)
                guard w.bytes.count <= Journal.maxAppendBytes else {
                    throw JournalError.invalidRecord("one append may hold at most \(Journal.maxAppendBytes) bytes; split the batch or shrink the payload")
                }
            }
        }
        return PendingAppend(records: records, firstSlot: firstSlot, frames: w.bytes, keyEvents: keyEvents,
                             completion: completion, loop: loop)
    }

    /// Destroys the payload key of a delivery and journals `payloadPurged`; afterwards
    /// `payload(signalID:recipientID:)` returns nil. Purging twice is harmless.
    public func purge(signalID: String, recipientID: String, at: Date = Date()) throws {
        try append([.payloadPurged(PayloadPurged(signalID: signalID, recipientID: recipientID, at: at))])
    }

    // MARK: - Reading

    /// The live delivery index (the same object for the journal's lifetime).
    public func deliveryState() -> DeliveryIndex { index }

    /// Whether appends currently succeed: open, not broken, and the last group commit worked.
    public var isWritable: Bool {
        queueLock.lock()
        let open = !closing
        queueLock.unlock()
        statsLock.lock()
        defer { statsLock.unlock() }
        return open && lastCommitSucceeded
    }

    public var statistics: JournalStatistics {
        statsLock.lock()
        var statistics = stats
        let head = headHash
        statsLock.unlock()
        statistics.headHash = Hex.encode(head)
        return statistics
    }

    /// Reads the record at `position` back from disk.
    public func record(at position: RecordPosition) throws -> JournalRecord {
        try withReader(position.segment) { reader in
            let record = try reader.frame(at: position.offset, maxBody: Journal.maxAppendBytes) { frame -> JournalRecord? in
                frame.sequence == position.sequence ? frame.decode() : nil
            }
            guard let record = record ?? nil else {
                throw JournalError.corrupt(JournalDamage(segment: Segment.fileName(position.segment), offset: UInt64(position.offset),
                                                         sequence: position.sequence, reason: "record cannot be read back"))
            }
            return record
        }
    }

    /// The decrypted minimised payload of a delivery; nil when it had none or was purged.
    public func payload(signalID: String, recipientID: String) throws -> [UInt8]? {
        guard let (slot, position) = index.payloadKey(signalID: signalID, recipientID: recipientID) else { return nil }
        guard case .decision(let decision) = try record(at: position), let sealed = decision.sealed, sealed.keySlot == slot else {
            throw JournalError.corrupt(JournalDamage(segment: Segment.fileName(position.segment), offset: UInt64(position.offset),
                                                     sequence: position.sequence, reason: "the decision record holds no sealed payload"))
        }
        var bytes = [UInt8](repeating: 0, count: KeySlot.size)
        let n = try bytes.withUnsafeMutableBytes { p in
            try syscall("pread(keys)") { pread(keyFD, p.baseAddress!, KeySlot.size, off_t(KeySlot.offset(slot))) }
        }
        guard n == KeySlot.size else { return nil }
        switch KeySlot.decode(bytes, slot: slot) {
        case .empty:
            return nil
        case .damaged:
            throw JournalError.corrupt(JournalDamage(segment: KeySlot.fileName, offset: UInt64(KeySlot.offset(slot)),
                                                     sequence: position.sequence, reason: "payload key slot \(slot) is damaged"))
        case .key(let key, let sequence):
            guard sequence == position.sequence else { return nil }
            do {
                return try AESGCM.open(sealed.ciphertext, key: key,
                                       aad: KeySlot.associatedData(signalID: signalID, recipientID: recipientID))
            } catch {
                throw JournalError.corrupt(JournalDamage(segment: Segment.fileName(position.segment), offset: UInt64(position.offset),
                                                         sequence: position.sequence, reason: "sealed payload fails authentication"))
            }
        }
    }

    /// A signal with its `received` record and every decision, read from disk, with the
    /// current delivery state: what GET /v1/signals/{id} and an idempotent resubmission need.
    public func signal(_ signalID: String) throws -> SignalRecord? {
        guard let summary = index.signal(signalID) else { return nil }
        var received: Received?
        if let position = summary.received, case .received(let r) = try record(at: position) { received = r }
        var decisions: [SignalRecord.DecisionState] = []
        for state in summary.deliveries {
            if case .decision(let d) = try record(at: state.decision) {
                decisions.append(.init(decision: d, state: state))
            }
        }
        return SignalRecord(summary: summary, received: received, decisions: decisions)
    }

    /// Stops the writer after the queued appends, writes a final checkpoint and releases the
    /// folder. Later appends throw `closed`.
    public func close() {
        queueLock.lock()
        if let completing = completingThread, pthread_equal(completing, pthread_self()) != 0 {
            preconditionFailure("Journal.close() called from an append completion: close the journal from another thread")
        }
        if closing {
            queueLock.unlock()
            return
        }
        closing = true
        queueLock.broadcast()
        queueLock.unlock()
        writerExited.wait()
        // Every queued append was committed before the writer left; its completion is told
        // before close returns (handed to its loop, for a loop's: not awaited). (Unless this
        // is the completion thread itself: a journal dropped without `close` whose last
        // reference was a completion's.)
        if DispatchQueue.getSpecific(key: Journal.completionQueueKey) == nil { completionQueue.sync {} }
        checkpointQueue.sync {}
        if nextSequence > 1, checkpointedSequence != nextSequence - 1, broken == nil {
            try? writeCheckpoint()
        }
        Glibc.close(segmentFD)
        Glibc.close(keyFD)
        readLock.lock()
        readers.removeAll()
        readLock.unlock()
        Glibc.close(lockFD)
    }

    // MARK: - The writer

    /// Takes everything queued (with the ticket its callers wait on), commits it in groups
    /// of at most `maxGroupBytes`, then has all those callers woken at once.
    private func writerLoop() {
        var taken: [PendingAppend] = []
        while true {
            queueLock.lock()
            // While closing, completions that are running may still hand over the appends
            // they made before `closing` was set: the writer leaves only after them.
            while true {
                if queue.isEmpty {
                    guard !closing || completingThread != nil else { break }
                    queueLock.wait()
                } else if urgentQueued == 0, !closing, let deadline = lazyDeadline, monotonicNanoseconds() < deadline {
                    // Lazy appends only: they wait for an urgent one, or until their deadline.
                    queueLock.wait(untilMonotonic: deadline)
                } else {
                    break
                }
            }
            if queue.isEmpty {
                queueLock.unlock()
                break
            }
            swap(&queue, &taken)
            urgentQueued = 0
            lazyDeadline = nil
            let ticket = openTicket
            openTicket = nil
            queueLock.unlock()
            var first = 0
            while first < taken.count {
                var end = first
                var bytes = 0
                while end < taken.count, end == first || bytes + taken[end].frames.count <= options.maxGroupBytes {
                    bytes += taken[end].frames.count
                    end += 1
                }
                commit(taken[first..<end], bytes: bytes)
                first = end
            }
            // Asynchronous appends are told on their loops or on the completion thread, in
            // queue (and so sequence) order, while this thread goes on with the next group.
            var completed: [PendingAppend] = []
            var onLoops: [(loop: EventLoop, appends: [PendingAppend])] = []
            var callers = 0
            for p in taken {
                if p.completion == nil {
                    callers += 1
                } else if let loop = p.loop {
                    if let i = onLoops.firstIndex(where: { $0.loop === loop }) {
                        onLoops[i].appends.append(p)
                    } else {
                        onLoops.append((loop, [p]))
                    }
                } else {
                    completed.append(p)
                }
            }
            if !completed.isEmpty {
                completionQueue.async { [self, completed] in complete(completed) }
            }
            for (loop, appends) in onLoops {
                loop.execute { for p in appends { p.completion!(p.result!) } }
            }
            // Let go of the appends before waking anyone, so that their records are freed on
            // the callers' threads.
            taken.removeAll(keepingCapacity: true)
            if let ticket {
                if callers <= Journal.inlineWakeLimit {
                    ticket.complete()
                } else {
                    // Waking tens of callers costs the kernel a few microseconds each: done on
                    // another thread, it overlaps the next group's write and sync.
                    wakeQueue.async { ticket.complete() }
                }
            }
        }
        writerExited.signal()
    }

    /// Tells one group's asynchronous appends, on the completion thread. Appends the
    /// completions make are queued together once all of them ran: otherwise the writer, idle
    /// meanwhile, would commit the first few alone and the rest in the next group, and the
    /// groups of chained writers would settle at half their number.
    private func complete(_ completed: [PendingAppend]) {
        queueLock.lock()
        completingThread = pthread_self()
        queueLock.unlock()
        for p in completed { p.completion!(p.result!) }
        queueLock.lock()
        completingThread = nil
        let writerWaits = urgentQueued == 0
        queue.append(contentsOf: heldByCompletions)
        // Held appends are never lazy: only appends without a loop are held, and a lazy one has a loop.
        urgentQueued += heldByCompletions.count
        heldByCompletions.removeAll(keepingCapacity: true)
        // The writer waits for an urgent append, or (closing) for this to end.
        if writerWaits && (urgentQueued > 0 || closing) { queueLock.signal() }
        queueLock.unlock()
    }

    /// Writes one group, updates the index and sets each append's result.
    private func commit(_ group: ArraySlice<PendingAppend>, bytes: Int) {
        var failure = broken
        let started = monotonicNanoseconds()
        if failure == nil {
            do {
                try write(group, bytes: bytes)
            } catch {
                failure = JournalError.writing(error)
            }
        }
        onGroupCommit?(TimeInterval(monotonicNanoseconds() - started) / 1e9, failure == nil)
        statsLock.lock()
        lastCommitSucceeded = failure == nil
        statsLock.unlock()
        if let failure {
            statsLock.lock()
            stats.failedAppends += UInt64(group.count)
            statsLock.unlock()
            Log.shared.error("journal_write_failed", ["appends": group.count, "error": failure.description])
            for p in group { p.result = .failure(failure) }
            return
        }
        index.apply { apply in
            for p in group { apply(p.records, p.positions, p.firstSlot) }
        }
        var records = 0
        for p in group {
            p.result = .success(p.positions)
            records += p.positions.count
        }
        statsLock.lock()
        stats.appends += UInt64(group.count)
        stats.records += UInt64(records)
        stats.groupCommits += 1
        stats.largestGroup = max(stats.largestGroup, group.count)
        stats.headSequence = nextSequence - 1
        headHash = lastHash
        statsLock.unlock()
        if nextSequence - 1 >= checkpointedSequence + options.checkpointInterval { scheduleCheckpoint() }
        if let window = options.rememberCompletedSignals {
            index.forgetCompletedIfGrown(receivedBefore: Date().addingTimeInterval(-window))
        }
    }

    /// Writes one group. Key slots first (pwrite and fdatasync), so that no record on disk can
    /// lack its key (nor a `payloadPurged` record precede the destruction of its key). Then one
    /// pwrite and one fdatasync of the segment. On failure the segment is cut back to where the
    /// group began. (The key slots used to be written on a thread of their own, overlapping the
    /// sealing of the frames; the two hand-offs per group cost more CPU than the overlap saved.)
    private func write(_ group: ArraySlice<PendingAppend>, bytes: Int) throws {
        if segmentSize > UInt64(Segment.headerSize), segmentSize + UInt64(bytes) > UInt64(options.segmentSizeLimit) {
            try rotate()
        }
        // Pass 1: key slot contents, in record order.
        var slotWrites: [SlotWrite] = []
        var groupSlots: [DeliveryKey: UInt32] = [:]
        var firstSequence = nextSequence
        for p in group {
            for event in p.keyEvents {
                if groupSlots.isEmpty { groupSlots.reserveCapacity(2 * group.count) }
                switch event {
                case .seal(let record, let slot, let key, let delivery):
                    // A decision that replaces an earlier one for the same delivery destroys
                    // the earlier payload's key: nothing could reach or purge it any more.
                    if let replaced = currentSlot(delivery, groupSlots) { slotWrites.append(SlotWrite(slot: replaced)) }
                    slotWrites.append(SlotWrite(slot: slot, key: key, sequence: firstSequence + UInt64(record)))
                    groupSlots[delivery] = slot
                case .purge(_, let delivery):
                    if let slot = currentSlot(delivery, groupSlots) {
                        slotWrites.append(SlotWrite(slot: slot))
                        groupSlots[delivery] = nil
                    }
                }
            }
            firstSequence += UInt64(p.records.count)
        }
        if !slotWrites.isEmpty {
            try writeSlots(slotWrites)
        }
        // Pass 2: sequence numbers, checksums and the hash chain, in place.
        let start = segmentSize
        groupBuffer.removeAll(keepingCapacity: true)
        for p in group { groupBuffer.append(contentsOf: p.frames) }
        var sequence = nextSequence
        let segment = segmentNumber
        let hasher = self.hasher
        lastHash.withUnsafeBytes { last in chainHash.withUnsafeMutableBytes { $0.copyMemory(from: last) } }
        groupBuffer.withUnsafeMutableBytes { all in
            chainHash.withUnsafeMutableBytes { hash in
                var offset = 0
                for p in group {
                    var list: [RecordPosition] = []
                    list.reserveCapacity(p.records.count)
                    for _ in 0..<p.records.count {
                        list.append(RecordPosition(segment: segment, offset: UInt32(start + UInt64(offset)), sequence: sequence))
                        offset += Frame.seal(all.baseAddress! + offset, sequence: sequence, hash: hash.baseAddress!, hasher: hasher)
                        sequence += 1
                    }
                    p.positions = list
                }
            }
        }
        do {
            try groupBuffer.withUnsafeBytes { try pwriteAll(segmentFD, $0, at: Int64(start)) }
            try dataSync(segmentFD)
        } catch {
            rollBack(to: start, after: error)
            throw error
        }
        statsLock.lock()
        stats.segmentSyncs += 1
        stats.keySyncs += slotWrites.isEmpty ? 0 : 1
        stats.bytesWritten += UInt64(groupBuffer.count)
        statsLock.unlock()
        segmentSize = start + UInt64(groupBuffer.count)
        // The previous hash's buffer is reused by the next group (once `headHash` lets go of it).
        swap(&lastHash, &chainHash)
        lastRecord = (segmentNumber, segmentSize)
        nextSequence = sequence
    }

    /// The key slot currently holding the payload key of `delivery`:
    /// from this group, else from the index.
    private func currentSlot(_ delivery: DeliveryKey, _ groupSlots: [DeliveryKey: UInt32]) -> UInt32? {
        if let slot = groupSlots[delivery] { return slot }
        return index.payloadKey(signalID: delivery.signalID, recipientID: delivery.recipientID)?.slot
    }

    /// Writes key slots, coalescing neighbours into one pwrite, and makes them durable. The
    /// file grows ahead of the slots in `keyFileStep`s (zeros: empty slots), so that the
    /// fdatasync of most groups writes their slots only, not also the inode's new size.
    /// Runs on the writer thread (which is what guards `keyFileBytes` and `slotBuffer`).
    private func writeSlots(_ writes: [SlotWrite]) throws {
        var sorted = writes
        sorted.sort { $0.slot < $1.slot }
        let needed = Int(KeySlot.offset(sorted.last!.slot)) + KeySlot.size
        if needed > keyFileBytes {
            let target = (needed + Journal.keyFileStep - 1) / Journal.keyFileStep * Journal.keyFileStep
            let status = posix_fallocate(keyFD, off_t(keyFileBytes), off_t(target - keyFileBytes))
            guard status == 0 else { throw SystemError(call: "posix_fallocate(keys)", errno: status) }
            keyFileBytes = target
        }
        var i = 0
        while i < sorted.count {
            var j = i + 1
            while j < sorted.count, sorted[j].slot == sorted[j - 1].slot + 1 { j += 1 }
            // Later writes to the same slot win, as they would as separate pwrites.
            slotBuffer.removeAll(keepingCapacity: true)
            slotBuffer.append(contentsOf: repeatElement(0, count: (j - i) * KeySlot.size))
            try slotBuffer.withUnsafeMutableBytes { run in
                for write in sorted[i..<j] {
                    let slot = run.baseAddress! + Int(write.slot - sorted[i].slot) * KeySlot.size
                    if let key = write.key {
                        KeySlot.encode(key: key, sequence: write.sequence, slot: write.slot, into: slot)
                    } else {
                        slot.initializeMemory(as: UInt8.self, repeating: 0, count: KeySlot.size)
                    }
                }
                try pwriteAll(keyFD, UnsafeRawBufferPointer(run), at: KeySlot.offset(sorted[i].slot))
            }
            i = j
        }
        try dataSync(keyFD)
    }

    /// Cuts the segment back to `offset` after a failed write, so that the next group
    /// continues the chain from the last durable record.
    private func rollBack(to offset: UInt64, after error: Error) {
        do {
            try syscall("ftruncate") { ftruncate(segmentFD, off_t(offset)) }
            try dataSync(segmentFD)
        } catch {
            broken = .unavailable("a failed write could not be undone (\(error)); restart the node so that recovery repairs the journal")
            Log.shared.error("journal_rollback_failed", ["error": String(describing: error)])
        }
    }

    private func rotate() throws {
        let number = segmentNumber + 1
        let path = directory + "/" + Segment.fileName(number)
        let fd = try syscall("open(\(path))") { Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }
        do {
            try Segment.header(number: number, firstSequence: nextSequence).withUnsafeBytes { try writeAll(fd, $0) }
            try dataSync(fd)
            try syncDirectory(directory)
        } catch {
            Glibc.close(fd)
            unlink(path)
            throw error
        }
        let previousBytes = segmentSize
        Glibc.close(segmentFD)
        segmentFD = fd
        segmentNumber = number
        segmentSize = UInt64(Segment.headerSize)
        statsLock.lock()
        stats.rotations += 1
        statsLock.unlock()
        Log.shared.info("journal_segment_rotated", ["segment": Segment.fileName(number), "previous_bytes": Int(previousBytes)])
        if nextSequence > 1, checkpointedSequence != nextSequence - 1 { scheduleCheckpoint() }
    }

    private func currentCheckpoint() -> Checkpoint {
        Checkpoint(segment: lastRecord.segment, endOffset: UInt32(lastRecord.end), sequence: nextSequence - 1, hash: lastHash)
    }

    /// Writes a checkpoint in the background; called by the writer after durable groups.
    private func scheduleCheckpoint() {
        let checkpoint = currentCheckpoint()
        checkpointedSequence = checkpoint.sequence
        let directory = self.directory
        checkpointQueue.async { [weak self] in
            do {
                try checkpoint.store(directory: directory)
                self?.countCheckpoint()
            } catch {
                Log.shared.warning("journal_checkpoint_failed", ["error": String(describing: error)])
            }
        }
    }

    private func writeCheckpoint() throws {
        let checkpoint = currentCheckpoint()
        try checkpoint.store(directory: directory)
        checkpointedSequence = checkpoint.sequence
        countCheckpoint()
    }

    private func countCheckpoint() {
        statsLock.lock()
        stats.checkpoints += 1
        statsLock.unlock()
    }

    private func withReader<T>(_ segment: UInt32, _ body: (SegmentReader) throws -> T) throws -> T {
        readLock.lock()
        defer { readLock.unlock() }
        if readers[segment] == nil {
            if readers.count >= 8 { readers.removeAll() }
            readers[segment] = try SegmentReader(path: directory + "/" + Segment.fileName(segment))
        }
        return try body(readers[segment]!)
    }

    // MARK: - Opening

    private static func makeDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw JournalError.invalidSetup("cannot create the journal folder \(path): \(error.localizedDescription)")
        }
    }

    private static func lock(_ directory: String) throws -> Int32 {
        let path = directory + "/lock"
        let fd = try syscall("open(\(path))") { Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            Glibc.close(fd)
            throw JournalError.locked("the journal in \(directory) is in use by another process; stop that waakvlamd first")
        }
        return fd
    }

    /// Opens (creating if needed) the key file; returns it and its size.
    private static func openKeyFile(_ directory: String) throws -> (fd: Int32, bytes: Int) {
        let path = directory + "/" + KeySlot.fileName
        let fd = try syscall("open(\(path))") { Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            Glibc.close(fd)
            throw JournalError.unavailable("cannot stat \(path)")
        }
        do {
            if st.st_size < KeySlot.size {
                try KeySlot.fileHeader().withUnsafeBytes { try pwriteAll(fd, $0, at: 0) }
                try dataSync(fd)
                try syncDirectory(directory)
            } else {
                var header = [UInt8](repeating: 0, count: KeySlot.size)
                _ = try header.withUnsafeMutableBytes { p in try syscall("pread(keys)") { pread(fd, p.baseAddress!, KeySlot.size, 0) } }
                guard header == KeySlot.fileHeader() else {
                    throw JournalError.corrupt(JournalDamage(segment: KeySlot.fileName, offset: 0, sequence: nil,
                                                             reason: "the key file header is damaged"))
                }
            }
        } catch {
            Glibc.close(fd)
            throw JournalError.writing(error)
        }
        return (fd, max(Int(st.st_size), KeySlot.size))
    }

    private struct RecoveredState {
        var segment: UInt32 = 1
        var segmentSize = UInt64(Segment.headerSize)
        var nextSequence: UInt64 = 1
        var lastHash = [UInt8](repeating: 0, count: 32)
        var lastRecord: (segment: UInt32, end: UInt64) = (1, UInt64(Segment.headerSize))
        var nextSlot: UInt32 = 0
        var records: UInt64 = 0
        var hashedRecords: UInt64 = 0
        var segments = 1
        var checkpoint: Checkpoint?
        var tornBytesCut: UInt64 = 0
        var tornReason: String?
    }

    /// Replays the journal into `index`: checksums and sequence numbers everywhere, the hash
    /// chain from the checkpoint on, a torn tail cut off, anything else refused.
    private static func recover(directory: String, index: DeliveryIndex, options: JournalOptions) throws -> RecoveredState {
        var state = RecoveredState()
        if try listSegments(directory: directory).isEmpty {
            try createSegment(directory: directory, number: 1, firstSequence: 1)
            return state
        }
        var checkpoint: Checkpoint?
        do {
            checkpoint = try Checkpoint.load(directory: directory)
        } catch {
            Log.shared.warning("journal_checkpoint_ignored", ["reason": "\(error)", "effect": "the whole chain is hashed"])
        }
        var batch: [JournalRecord] = []
        var batchPositions: [RecordPosition] = []
        var chunk: [([JournalRecord], [RecordPosition])] = []
        var chunkRecords = 0
        var maxSlot: Int64 = -1
        var checkpointSeen = false
        let forgetBefore = options.rememberCompletedSignals.map { Date().addingTimeInterval(-$0) }
        let replay = Replay(index: index, forgetBefore: forgetBefore)
        defer { replay.finish() }
        // The index needs only ids, kinds, times and states; full records are read from disk when asked for.
        let walk = ChainWalk(directory: directory, hashFrom: checkpoint?.sequence ?? 1, maxBody: maxAppendBytes, detail: .index)
        var outcome = try walk.run { frame, position, record, hash in
            if let checkpoint, position.sequence == checkpoint.sequence {
                guard hash == checkpoint.hash, position.segment == checkpoint.segment,
                      UInt64(frame.end) == UInt64(checkpoint.endOffset) else {
                    throw JournalError.corrupt(JournalDamage(
                        segment: Segment.fileName(position.segment), offset: UInt64(position.offset), sequence: position.sequence,
                        reason: "the record differs from what the checkpoint recorded: it, or a record before it, was changed"))
                }
                checkpointSeen = true
            }
            if case .decision(let d) = record, let sealed = d.sealed { maxSlot = max(maxSlot, Int64(sealed.keySlot)) }
            batch.append(record)
            batchPositions.append(position)
            if frame.endsAppend {
                // Only complete appends reach the index; they go in chunks to the replay queue.
                chunk.append((batch, batchPositions))
                chunkRecords += batch.count
                batch = []
                batchPositions = []
                if chunkRecords >= 4096 {
                    replay.submit(chunk)
                    chunk = []
                    chunkRecords = 0
                }
            }
        }
        replay.submit(chunk)
        replay.finish()
        if let problem = outcome.problem {
            let last = outcome.lastSegment ?? 1
            let cutFrom = problem.inHeader ? 0 : (outcome.committed.segment == problem.segment ? outcome.committed.endOffset : UInt64(Segment.headerSize))
            let size = outcome.segmentSizes[problem.segment] ?? 0
            let beyondCheckpoint = checkpoint.map { c in
                problem.segment > c.segment || (problem.segment == c.segment && cutFrom >= UInt64(c.endOffset))
            } ?? true
            guard problem.tornCompatible, problem.segment == last, beyondCheckpoint, size - min(cutFrom, size) <= tornTailLimit else {
                throw JournalError.corrupt(problem.damage)
            }
            let path = directory + "/" + Segment.fileName(problem.segment)
            if problem.inHeader {
                // A rotation interrupted before its header was durable: no record is in it.
                try syscall("unlink(\(path))") { unlink(path) }
                try syncDirectory(directory)
                outcome.segments.removeLast()
                if outcome.segments.isEmpty {
                    try createSegment(directory: directory, number: 1, firstSequence: 1)
                    outcome.segments = [1]
                    outcome.committed = ChainWalk.Committed(segment: 1, endOffset: UInt64(Segment.headerSize))
                }
            } else {
                let fd = try syscall("open(\(path))") { Glibc.open(path, O_WRONLY | O_CLOEXEC) }
                defer { Glibc.close(fd) }
                try syscall("ftruncate(\(path))") { ftruncate(fd, off_t(cutFrom)) }
                try dataSync(fd)
            }
            state.tornBytesCut = size - min(cutFrom, size)
            state.tornReason = problem.damage.description
            Log.shared.warning("journal_torn_tail_cut", [
                "segment": problem.damage.segment, "offset": Int(cutFrom), "bytes": Int(state.tornBytesCut),
                "reason": problem.damage.reason,
                "meaning": "an interrupted write that was never acknowledged was removed",
            ])
        }
        if let checkpoint, !checkpointSeen {
            throw JournalError.corrupt(JournalDamage(
                segment: Segment.fileName(outcome.lastSegment ?? 1), offset: outcome.committed.endOffset,
                sequence: checkpoint.sequence,
                reason: "the journal ends at record #\(outcome.committed.sequence) but the checkpoint says #\(checkpoint.sequence) was durable: records were removed"))
        }
        state.segment = outcome.lastSegment ?? 1
        state.segments = outcome.segments.count
        state.segmentSize = outcome.committed.segment == state.segment ? outcome.committed.endOffset : UInt64(Segment.headerSize)
        state.nextSequence = outcome.committed.sequence + 1
        if outcome.committed.sequence > 0 {
            guard let hash = outcome.committed.hash else {
                throw JournalError.corrupt(JournalDamage(segment: Segment.fileName(state.segment), offset: state.segmentSize,
                                                         sequence: outcome.committed.sequence,
                                                         reason: "the journal ends before its checkpoint"))
            }
            state.lastHash = hash
            state.lastRecord = (outcome.committed.recordSegment, outcome.committed.recordEnd)
        }
        if let window = options.rememberCompletedSignals {
            index.forgetCompleted(receivedBefore: Date().addingTimeInterval(-window))
        }
        state.nextSlot = UInt32(maxSlot + 1)
        state.records = outcome.committed.sequence
        state.hashedRecords = outcome.hashedRecords
        state.checkpoint = checkpoint
        return state
    }

    private static func createSegment(directory: String, number: UInt32, firstSequence: UInt64) throws {
        let path = directory + "/" + Segment.fileName(number)
        let fd = try syscall("open(\(path))") { Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }
        defer { Glibc.close(fd) }
        do {
            try Segment.header(number: number, firstSequence: firstSequence).withUnsafeBytes { try writeAll(fd, $0) }
            try dataSync(fd)
            try syncDirectory(directory)
        } catch {
            throw JournalError.writing(error)
        }
    }
}

/// Applies recovered appends to the index on a queue of its own, so that reading, checking
/// and decoding the segments (the caller) overlaps updating the index. At most four chunks
/// wait at a time, which bounds the memory recovery needs.
private final class Replay: @unchecked Sendable {
    private let index: DeliveryIndex
    private let forgetBefore: Date?
    private let queue = DispatchQueue(label: "waakvlam.journal.replay")
    private let room = DispatchSemaphore(value: 4)

    init(index: DeliveryIndex, forgetBefore: Date?) {
        self.index = index
        self.forgetBefore = forgetBefore
    }

    func submit(_ chunk: [([JournalRecord], [RecordPosition])]) {
        guard !chunk.isEmpty else { return }
        room.wait()
        queue.async { [self] in
            index.apply { apply in
                for (records, positions) in chunk { apply(records, positions, 0) }
            }
            if let forgetBefore { index.forgetCompletedIfGrown(receivedBefore: forgetBefore) }
            room.signal()
        }
    }

    /// Waits until every submitted chunk is in the index.
    func finish() { queue.sync {} }
}

/// A signal read back in full: see `Journal.signal(_:)`.
public struct SignalRecord: Equatable, Sendable {
    public struct DecisionState: Equatable, Sendable {
        public let decision: Decision
        public let state: DeliveryState
    }

    public let summary: SignalSummary
    public let received: Received?
    public let decisions: [DecisionState]
}

/// A delivery: signal id and recipient id.
private struct DeliveryKey: Hashable {
    let signalID: String
    let recipientID: String
}

/// One key slot to write: a key with its decision's sequence number, or (key nil) zeros.
private struct SlotWrite {
    let slot: UInt32
    var key: [UInt8]?
    var sequence: UInt64 = 0
}

/// What an append does to the key file, by the index of its record within the append.
private enum KeyEvent {
    /// A decision whose payload was sealed under a fresh key, to be stored in `slot`.
    case seal(record: Int, slot: UInt32, key: [UInt8], delivery: DeliveryKey)
    /// A `payloadPurged` record: the delivery's key is destroyed.
    case purge(record: Int, delivery: DeliveryKey)
}

/// One queued append, waiting for its group commit: its records (for the delivery index) and
/// their frames, encoded by the caller (see `Frame.encode`).
private final class PendingAppend {
    /// As the caller gave them: decisions still carry their plaintext payload.
    let records: [JournalRecord]
    /// The key slot of the first payload sealed by this append; the others follow in record order.
    let firstSlot: UInt32
    let frames: [UInt8]
    let keyEvents: [KeyEvent]
    /// For an asynchronous append; nil when the caller waits on the ticket.
    let completion: Journal.AppendCompletion?
    /// Where `completion` runs; nil: on the journal's completion thread.
    let loop: EventLoop?
    /// The records' positions, set by the writer once it has numbered them.
    var positions: [RecordPosition] = []
    /// Set by the writer before it completes the ticket or queues the completion.
    var result: Result<[RecordPosition], JournalError>?

    init(records: [JournalRecord], firstSlot: UInt32, frames: [UInt8], keyEvents: [KeyEvent],
         completion: Journal.AppendCompletion?, loop: EventLoop?) {
        self.records = records
        self.firstSlot = firstSlot
        self.frames = frames
        self.keyEvents = keyEvents
        self.completion = completion
        self.loop = loop
    }
}

/// What the appends the writer takes from the queue in one go wait on. Completing it wakes
/// them all with one futex wake (a dispatch group's wake-up), instead of one wake-up call per
/// caller from the writer thread (each of which could preempt the writer).
private final class CommitTicket: @unchecked Sendable {
    private let group = DispatchGroup()

    init() { group.enter() }

    func wait() { group.wait() }

    /// Called once, after every result is set: the group's leave publishes them.
    func complete() { group.leave() }
}
