import Foundation
import WaakvlamSystem

/// Where one delivery (one signal to one recipient) stands.
public enum DeliveryStatus: Equatable, Sendable {
    /// Allowed and not yet delivered. `nextAttemptAt` is nil for inbox deliveries (the
    /// recipient pulls) and for push deliveries with no further attempt planned.
    case pending(attempts: Int, firstQueuedAt: Date, nextAttemptAt: Date?, mode: DeliveryMode)
    case delivered(at: Date)
    case expired(at: Date)
    /// The policy refused this recipient; `code` is the decision's reason code.
    case denied(code: String)
}

/// One delivery as the index knows it. The full decision record can be read with
/// `Journal.record(at: decision)`.
public struct DeliveryState: Equatable, Sendable {
    public let signalID: String
    public let recipientID: String
    public let status: DeliveryStatus
    /// Position of the decision record.
    public let decision: RecordPosition
    /// True while a sealed payload exists whose key has not been purged.
    public let hasPayload: Bool
    public let retentionUntil: Date?

    public var isPending: Bool {
        if case .pending = status { return true }
        return false
    }
}

/// One signal as the index knows it: enough to find its records and answer status queries.
public struct SignalSummary: Equatable, Sendable {
    public let signalID: String
    public let senderID: String
    public let signalType: String
    public let receivedAt: Date
    /// Position of the `received` record; nil if the journal holds decisions without one.
    public let received: RecordPosition?
    /// One entry per decision, in journal order.
    public let deliveries: [DeliveryState]
}

/// The relay's view of the journal, rebuilt at open and kept current by `append`: every
/// signal id seen, every delivery's state, pending pushes ordered by next attempt, inbox
/// queues per recipient, and payloads ordered by retention end. Thread-safe.
///
/// It is compact on purpose: no payloads and no free text; strings that repeat (organisation
/// ids, types, reason codes) are interned, signal ids live in one byte arena, and delivery
/// state is a fixed-size struct. Details come from the journal (`Journal.signal(_:)`).
public final class DeliveryIndex: @unchecked Sendable {
    private let lock = NSLock()
    /// Where the arrays below live (see `ScratchSpace`); each array holds it too, so it
    /// outlives them.
    private let space: ScratchSpace
    private var ids: IDTable
    private var names = StringTable()
    private var signals: ScratchArray<SignalEntry>
    private var deliveries: ScratchArray<DeliveryEntry>
    /// Pending pushes per recipient by next attempt: the scheduler serves recipients one by
    /// one, so a recipient with a large backlog (one that is down) never hides the others.
    private var schedules: [UInt32: MinHeap] = [:]
    /// Pending deliveries (push and inbox) by the time they were queued, for expiry.
    private var queued: MinHeap
    private var retention: MinHeap
    private var inboxes: [UInt32: InboxQueue] = [:]
    private var pending = 0
    /// Pending deliveries per recipient, kept as records arrive (a scrape reads it at once).
    /// Indexed by the recipient's interned name.
    private var pendingByRecipient: [Int] = []
    private var lastConfig: String?
    /// Signals held after the last `forgetCompleted`: the next one runs when this doubles.
    private var compactedCount = 0
    /// Records applied since the index last dropped its pages from memory.
    private var appliedSinceRelease = 0
    private var lastRelease: UInt64 = 0
    /// The index drops its pages from memory (`ScratchSpace.releaseResident()`) once it has
    /// applied this many records and at least `releaseNanoseconds` passed (the pages a
    /// rebuild at open touches are not dropped and faulted in again hundreds of times), and
    /// at the relay's next expiry sweep after that time when fewer records came.
    static let releaseInterval = 8_192
    static let releaseNanoseconds: UInt64 = 1_000_000_000

    /// `directory`: where the index keeps its scratch file (the journal's folder); nil keeps
    /// it in memory.
    init(directory: String?) {
        space = ScratchSpace(directory: directory)
        ids = IDTable(space)
        signals = ScratchArray(space)
        deliveries = ScratchArray(space)
        queued = MinHeap(space)
        retention = MinHeap(space)
    }

    // MARK: Queries

    public var signalCount: Int { locked { signals.count } }
    public var deliveryCount: Int { locked { deliveries.count } }
    public var pendingCount: Int { locked { pending } }
    /// The version of the last `configApplied` record.
    public var lastConfigVersion: String? { locked { lastConfig } }

    public func contains(signalID: String) -> Bool { locked { ids.find(signalID) != nil } }

    public func signal(_ signalID: String) -> SignalSummary? {
        locked {
            guard let s = ids.find(signalID) else { return nil }
            let entry = signals[Int(s)]
            var states: [DeliveryState] = []
            var d = entry.firstDelivery
            while d != .max {
                states.append(state(d))
                d = deliveries[Int(d)].nextInSignal
            }
            return SignalSummary(signalID: signalID, senderID: names.name(entry.sender), signalType: names.name(entry.type),
                                 receivedAt: JournalTime.date(entry.receivedAt), received: entry.received.position,
                                 deliveries: states)
        }
    }

    public func delivery(signalID: String, recipientID: String) -> DeliveryState? {
        locked { find(signalID, recipientID).map(state) }
    }

    /// Pending deliveries (push and inbox) per recipient with any: the backlog in /metrics.
    public func pendingPerRecipient() -> [String: Int] {
        locked {
            var counts: [String: Int] = [:]
            for (recipient, count) in pendingByRecipient.enumerated() where count > 0 { counts[names.name(UInt32(recipient))] = count }
            return counts
        }
    }

    /// Recipients with pending push deliveries.
    public func pushRecipients() -> [String] {
        locked {
            var out: [String] = []
            out.reserveCapacity(schedules.count)
            var emptied: [UInt32] = []
            // A heap's copy shares its storage (a class): dropping from it drops from the
            // schedule, without copying the keys first to change the dictionary meanwhile.
            for (recipient, schedule) in schedules {
                var heap = schedule
                dropStale(&heap, isCurrent: isScheduled)
                if heap.count == 0 {
                    emptied.append(recipient)
                } else {
                    out.append(names.name(recipient))
                }
            }
            for recipient in emptied { schedules[recipient] = nil }
            out.sort()
            return out
        }
    }

    /// Pending push deliveries to one recipient whose next attempt is due at `date`, earliest
    /// first. Entries stay until a record changes them (attempt, delivered, expired): the
    /// caller tracks what it has in flight, and can have those passed over with `skipping`
    /// (given each delivery's decision position, called with the index locked), which costs
    /// far less than building their states.
    public func duePushes(recipientID: String, at date: Date, limit: Int,
                          skipping: (RecordPosition) -> Bool = { _ in false }) -> [DeliveryState] {
        locked {
            guard let recipient = names.lookup(recipientID), schedules[recipient] != nil else { return [] }
            dropStale(&schedules[recipient]!, isCurrent: isScheduled)
            return schedules[recipient]!.smallest(upTo: JournalTime.microseconds(date), limit: limit) { key, d in
                isScheduled(key, d) && !skipping(deliveries[Int(d)].decision.position!)
            }.map(state)
        }
    }

    /// Pending push deliveries to any recipient due at `date`, earliest first.
    public func duePushes(at date: Date, limit: Int) -> [DeliveryState] {
        let due = pushRecipients().flatMap { duePushes(recipientID: $0, at: date, limit: limit) }
        func next(_ state: DeliveryState) -> Date {
            if case .pending(_, _, let at?, _) = state.status { return at }
            return .distantFuture
        }
        return Array(due.sorted { next($0) < next($1) }.prefix(limit))
    }

    /// When the earliest pending push is due, or nil when none is scheduled.
    public func nextPushDue() -> Date? {
        locked {
            var earliest: Int64?
            for recipient in Array(schedules.keys) {
                dropStale(&schedules[recipient]!, isCurrent: isScheduled)
                if let top = schedules[recipient]!.top { earliest = min(earliest ?? .max, top.key) }
            }
            return earliest.map(JournalTime.date)
        }
    }

    /// Pending deliveries (push or inbox) queued before `date`, oldest first: the ones whose
    /// lifetime is over when `date` is now minus the lifetime.
    public func pendingQueued(before date: Date, limit: Int) -> [DeliveryState] {
        locked {
            // The relay's sweep asks every second: pages touched since the last release leave
            // memory also when no more records come (a backlog that stopped growing).
            if appliedSinceRelease > 0, monotonicNanoseconds() - lastRelease >= Self.releaseNanoseconds { releaseResident() }
            dropStale(&queued, isCurrent: isQueued)
            return queued.smallest(upTo: JournalTime.microseconds(date) - 1, limit: limit, isCurrent: isQueued).map(state)
        }
    }

    /// Pending inbox deliveries of a recipient in queue order (oldest first).
    public func inbox(recipientID: String, limit: Int) -> [DeliveryState] {
        locked {
            guard let recipient = names.lookup(recipientID), var queue = inboxes[recipient] else { return [] }
            let isWaiting = { (d: UInt32) -> Bool in
                let e = self.deliveries[Int(d)]
                return e.state == .pending && e.mode == .inbox
            }
            queue.dropLeading { !isWaiting($0) }
            inboxes[recipient] = queue.isEmpty ? nil : queue
            var seen = Set<UInt32>()
            var out: [DeliveryState] = []
            for i in queue.head..<queue.items.count {
                guard out.count < limit else { break }
                let d = queue.items[i]
                if isWaiting(d), seen.insert(d).inserted { out.append(state(d)) }
            }
            return out
        }
    }

    /// Deliveries whose payload is still readable and whose retention ended by `date`,
    /// earliest first: the relay purges them.
    public func payloadsDue(at date: Date, limit: Int) -> [DeliveryState] {
        locked {
            dropStale(&retention, isCurrent: isRetained)
            return retention.smallest(upTo: JournalTime.microseconds(date), limit: limit, isCurrent: isRetained).map(state)
        }
    }

    /// Approximate bytes held by the index, wherever they are: its arrays (reserved in the
    /// scratch file, see `ScratchSpace`) and its interned names. Only the pages in use are in
    /// the process's memory.
    public var memoryFootprint: Int {
        locked { space.reservedBytes + names.memoryFootprint }
    }

    /// True when the index's arrays are in a scratch file and can leave memory.
    public var isPageable: Bool { locked { space.isFileBacked } }

    /// Disk space the index's nameless scratch files take (see `ScratchSpace`).
    public var scratchDiskBytes: Int { locked { space.diskBytes } }

    // MARK: Forgetting

    /// Drops signals whose every delivery is final (delivered, expired or denied) and whose
    /// payload keys are all gone, received before `cutoff`: a resubmission of such an id is
    /// then new, and `signal(_:)` no longer knows it (the journal still does). Rebuilds the
    /// index compactly; returns how many signals were dropped.
    @discardableResult
    public func forgetCompleted(receivedBefore cutoff: Date) -> Int {
        locked { forget(before: JournalTime.microseconds(cutoff), minimum: 1) }
    }

    /// Forgets when the index has doubled since it last looked (amortised O(1) per record),
    /// and only when at least an eighth of it can go: a rebuild briefly needs twice the memory.
    func forgetCompletedIfGrown(receivedBefore cutoff: Date) {
        locked {
            if signals.count >= max(2 * compactedCount, 65536) {
                _ = forget(before: JournalTime.microseconds(cutoff), minimum: max(signals.count / 8, 1))
            }
        }
    }

    private func isForgettable(_ s: Int, before cutoff: Int64) -> Bool {
        let entry = signals[s]
        guard entry.received.sequence != 0, entry.receivedAt < cutoff else { return false }
        var d = entry.firstDelivery
        while d != .max {
            let delivery = deliveries[Int(d)]
            if delivery.state == .pending || delivery.keySlot != .max { return false }
            d = delivery.nextInSignal
        }
        return true
    }

    private func forget(before cutoff: Int64, minimum: Int) -> Int {
        defer { releaseResident() }
        compactedCount = signals.count
        var forgettable = 0
        for s in signals.indices {
            if isForgettable(s, before: cutoff) { forgettable += 1 }
            // A walk over the whole index keeps only a part of it in memory at a time.
            if s % 65_536 == 65_535 { space.releaseResident() }
        }
        guard forgettable >= minimum else { return 0 }
        var keptIDs = IDTable(space)
        let keptSignals = ScratchArray<SignalEntry>(space)
        let keptDeliveries = ScratchArray<DeliveryEntry>(space)
        for s in signals.indices where !isForgettable(s, before: cutoff) {
            var entry = signals[s]
            var chain: [UInt32] = []
            var d = entry.firstDelivery
            while d != .max {
                chain.append(d)
                d = deliveries[Int(d)].nextInSignal
            }
            let newSignal = keptIDs.insert(ids.string(UInt32(s))).0
            entry.firstDelivery = .max
            entry.lastDelivery = .max
            for old in chain {
                var delivery = deliveries[Int(old)]
                let new = UInt32(keptDeliveries.count)
                delivery.signal = newSignal
                delivery.nextInSignal = .max
                if entry.lastDelivery == .max {
                    entry.firstDelivery = new
                } else {
                    keptDeliveries[Int(entry.lastDelivery)].nextInSignal = new
                }
                entry.lastDelivery = new
                keptDeliveries.append(delivery)
            }
            keptSignals.append(entry)
        }
        let dropped = signals.count - keptSignals.count
        ids = keptIDs
        signals = keptSignals
        deliveries = keptDeliveries
        schedules = [:]
        queued = MinHeap(space)
        retention = MinHeap(space)
        inboxes = [:]
        // Deliveries keep their journal order, so inbox queues keep theirs.
        for i in deliveries.indices {
            let e = deliveries[i]
            if e.state == .pending {
                queued.push(e.firstQueuedAt, UInt32(i))
                if e.mode == .push, e.time != .max { schedule(UInt32(i), at: e.time, to: e.recipient) }
                if e.mode == .inbox { enqueue(UInt32(i), to: e.recipient) }
            }
            if e.keySlot != .max, e.retentionUntil != .max { retention.push(e.retentionUntil, UInt32(i)) }
        }
        compactedCount = signals.count
        return dropped
    }

    // MARK: Updates (called by the journal after a record is durable)

    /// The key slot and decision position of a delivery's readable payload.
    func payloadKey(signalID: String, recipientID: String) -> (slot: UInt32, decision: RecordPosition)? {
        locked {
            guard let d = find(signalID, recipientID) else { return nil }
            let e = deliveries[Int(d)]
            guard e.keySlot != .max, let position = e.decision.position else { return nil }
            return (e.keySlot, position)
        }
    }

    /// Applies appends in order, under one lock: `body` hands each to `apply` with its
    /// records, their positions and `firstSlot`. Decisions the journal sealed on append still
    /// carry their plaintext: their payloads took the key slots from `firstSlot` on, in record
    /// order. Decisions read back carry their slot in `sealed`.
    func apply(_ body: (_ apply: (_ records: [JournalRecord], _ positions: [RecordPosition], _ firstSlot: UInt32) -> Void) -> Void) {
        locked {
            body { records, positions, firstSlot in
                var slot = firstSlot
                for i in records.indices { apply(records[i], positions[i], nextSealedSlot: &slot) }
                appliedSinceRelease += records.count
            }
            if schedules.values.reduce(0, { $0 + $1.count }) > 2 * pending + 4096 {
                for recipient in Array(schedules.keys) { schedules[recipient]!.compact(isCurrent: isScheduled) }
                appliedSinceRelease = Self.releaseInterval
            }
            if queued.count > 2 * pending + 4096 {
                queued.compact(isCurrent: isQueued)
                appliedSinceRelease = Self.releaseInterval
            }
            if appliedSinceRelease >= Self.releaseInterval, monotonicNanoseconds() - lastRelease >= Self.releaseNanoseconds {
                releaseResident()
            }
        }
    }

    private func apply(_ record: JournalRecord, _ position: RecordPosition, nextSealedSlot: inout UInt32) {
        switch record {
        case .received(let r):
            let s = signalIndex(r.signalID)
            if signals[Int(s)].received.sequence == 0 {
                signals[Int(s)].sender = names.intern(r.senderID)
                signals[Int(s)].type = names.intern(r.signalType)
                signals[Int(s)].receivedAt = JournalTime.microseconds(r.at)
                signals[Int(s)].received = PackedPosition(position)
            }
        case .decision(let r):
            // A plaintext payload is what `prepare` seals (into the next slot of the append),
            // whatever `sealed` says; a read-back decision has only `sealed`.
            var keySlot = r.sealed?.keySlot
            if r.payload != nil {
                keySlot = nextSealedSlot
                nextSealedSlot += 1
            }
            decide(r, keySlot: keySlot, position)
        case .attempt(let r):
            guard let d = find(r.signalID, r.recipientID), deliveries[Int(d)].state == .pending else { return }
            deliveries[Int(d)].attempts = UInt16(clamping: max(Int(deliveries[Int(d)].attempts), r.attempt))
            deliveries[Int(d)].time = r.nextAttemptAt.map(JournalTime.microseconds) ?? .max
            if deliveries[Int(d)].mode == .push, let next = r.nextAttemptAt {
                schedule(d, at: JournalTime.microseconds(next), to: deliveries[Int(d)].recipient)
            }
        case .delivered(let r):
            finish(r.signalID, r.recipientID, .delivered, r.at)
        case .expired(let r):
            finish(r.signalID, r.recipientID, .expired, r.at)
        case .payloadPurged(let r):
            if let d = find(r.signalID, r.recipientID) { deliveries[Int(d)].keySlot = .max }
        case .feedback:
            break
        case .configApplied(let r):
            lastConfig = r.version
        }
    }

    private func decide(_ r: Decision, keySlot: UInt32?, _ position: RecordPosition) {
        let s = signalIndex(r.signalID)
        let recipient = names.intern(r.recipientID)
        var entry = DeliveryEntry(signal: s, recipient: recipient)
        entry.state = r.allowed ? .pending : .denied
        entry.mode = r.deliveryMode == .inbox ? .inbox : .push
        entry.reason = r.reasonCode.map { names.intern($0) } ?? .max
        entry.keySlot = keySlot ?? .max
        entry.firstQueuedAt = JournalTime.microseconds(r.at)
        entry.time = r.allowed && entry.mode == .push ? entry.firstQueuedAt : .max
        entry.retentionUntil = r.retentionUntil.map(JournalTime.microseconds) ?? .max
        entry.decision = PackedPosition(position)

        let d: UInt32
        if let existing = find(s, recipient) {
            // A second decision for the same delivery replaces the first.
            d = existing
            if deliveries[Int(d)].state == .pending { countPending(deliveries[Int(d)].recipient, -1) }
            entry.nextInSignal = deliveries[Int(d)].nextInSignal
            deliveries[Int(d)] = entry
        } else {
            d = UInt32(deliveries.count)
            deliveries.append(entry)
            if signals[Int(s)].lastDelivery == .max {
                signals[Int(s)].firstDelivery = d
            } else {
                deliveries[Int(signals[Int(s)].lastDelivery)].nextInSignal = d
            }
            signals[Int(s)].lastDelivery = d
        }
        if entry.state == .pending {
            countPending(recipient, 1)
            queued.push(entry.firstQueuedAt, d)
            if entry.mode == .push {
                schedule(d, at: entry.time, to: recipient)
            } else {
                enqueue(d, to: recipient)
            }
        }
        if entry.keySlot != .max, entry.retentionUntil != .max {
            retention.push(entry.retentionUntil, d)
        }
    }

    // Not `schedules[recipient, default: MinHeap(space)]`: that default value costs a closure
    // context on the heap per call.

    /// Adds a push delivery to its recipient's schedule.
    private func schedule(_ d: UInt32, at time: Int64, to recipient: UInt32) {
        if schedules[recipient] == nil { schedules[recipient] = MinHeap(space) }
        schedules[recipient]!.push(time, d)
    }

    /// Adds an inbox delivery to its recipient's queue.
    private func enqueue(_ d: UInt32, to recipient: UInt32) {
        if inboxes[recipient] == nil { inboxes[recipient] = InboxQueue(space) }
        inboxes[recipient]!.append(d)
    }

    private func finish(_ signalID: String, _ recipientID: String, _ state: DeliveryEntry.State, _ at: Date) {
        guard let d = find(signalID, recipientID), deliveries[Int(d)].state == .pending else { return }
        countPending(deliveries[Int(d)].recipient, -1)
        deliveries[Int(d)].state = state
        deliveries[Int(d)].time = JournalTime.microseconds(at)
    }

    // MARK: Internals

    /// What was touched since the last time leaves memory; what is still in use (the newest
    /// entries, the heads of the queues) comes back on its next access. After every
    /// `releaseInterval` records and after each walk over the whole index.
    private func releaseResident() {
        space.releaseResident()
        appliedSinceRelease = 0
        lastRelease = monotonicNanoseconds()
    }

    private func countPending(_ recipient: UInt32, _ change: Int) {
        pending += change
        let r = Int(recipient)
        if r >= pendingByRecipient.count { pendingByRecipient += Array(repeating: 0, count: r + 1 - pendingByRecipient.count) }
        pendingByRecipient[r] += change
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    private func signalIndex(_ signalID: String) -> UInt32 {
        let (s, inserted) = ids.insert(signalID)
        if inserted { signals.append(SignalEntry()) }
        return s
    }

    private func find(_ signalID: String, _ recipientID: String) -> UInt32? {
        guard let s = ids.find(signalID), let recipient = names.lookup(recipientID) else { return nil }
        return find(s, recipient)
    }

    private func find(_ s: UInt32, _ recipient: UInt32) -> UInt32? {
        var d = signals[Int(s)].firstDelivery
        while d != .max {
            if deliveries[Int(d)].recipient == recipient { return d }
            d = deliveries[Int(d)].nextInSignal
        }
        return nil
    }

    private func isScheduled(_ key: Int64, _ d: UInt32) -> Bool {
        let e = deliveries[Int(d)]
        return e.state == .pending && e.mode == .push && e.time == key
    }

    private func isQueued(_ key: Int64, _ d: UInt32) -> Bool {
        let e = deliveries[Int(d)]
        return e.state == .pending && e.firstQueuedAt == key
    }

    private func isRetained(_ key: Int64, _ d: UInt32) -> Bool {
        let e = deliveries[Int(d)]
        return e.keySlot != .max && e.retentionUntil == key
    }

    private func dropStale(_ heap: inout MinHeap, isCurrent: (Int64, UInt32) -> Bool) {
        while let top = heap.top, !isCurrent(top.key, top.value) { heap.pop() }
    }

    private func state(_ d: UInt32) -> DeliveryState {
        let e = deliveries[Int(d)]
        let status: DeliveryStatus
        switch e.state {
        case .pending:
            status = .pending(attempts: Int(e.attempts), firstQueuedAt: JournalTime.date(e.firstQueuedAt),
                              nextAttemptAt: e.time == .max ? nil : JournalTime.date(e.time),
                              mode: e.mode == .inbox ? .inbox : .push)
        case .delivered: status = .delivered(at: JournalTime.date(e.time))
        case .expired: status = .expired(at: JournalTime.date(e.time))
        case .denied: status = .denied(code: e.reason == .max ? "denied" : names.name(e.reason))
        }
        return DeliveryState(signalID: ids.string(e.signal), recipientID: names.name(e.recipient),
                             status: status, decision: e.decision.position!, hasPayload: e.keySlot != .max,
                             retentionUntil: e.retentionUntil == .max ? nil : JournalTime.date(e.retentionUntil))
    }
}

/// A record position in 16 bytes; sequence 0 means "none".
private struct PackedPosition {
    var segment: UInt32 = 0
    var offset: UInt32 = 0
    var sequence: UInt64 = 0

    init() {}

    init(_ p: RecordPosition) {
        segment = p.segment
        offset = p.offset
        sequence = p.sequence
    }

    var position: RecordPosition? {
        sequence == 0 ? nil : RecordPosition(segment: segment, offset: offset, sequence: sequence)
    }
}

private struct SignalEntry {
    var sender: UInt32 = .max
    var type: UInt32 = .max
    var firstDelivery: UInt32 = .max
    var lastDelivery: UInt32 = .max
    var receivedAt: Int64 = 0
    var received = PackedPosition()
}

private struct DeliveryEntry {
    enum State: UInt8 { case pending, delivered, expired, denied }
    enum Mode: UInt8 { case push, inbox }

    var signal: UInt32
    var recipient: UInt32
    var nextInSignal: UInt32 = .max
    var keySlot: UInt32 = .max
    var reason: UInt32 = .max
    var state: State = .pending
    var mode: Mode = .push
    var attempts: UInt16 = 0
    var firstQueuedAt: Int64 = 0
    /// Pending: next attempt (.max for none); delivered or expired: when.
    var time: Int64 = .max
    var retentionUntil: Int64 = .max
    var decision = PackedPosition()

    init(signal: UInt32, recipient: UInt32) {
        self.signal = signal
        self.recipient = recipient
    }
}

private struct InboxQueue {
    let items: ScratchArray<UInt32>
    var head = 0

    init(_ space: ScratchSpace) {
        items = ScratchArray(space)
    }

    var isEmpty: Bool { head == items.count }

    /// Mutating (though `items` is a reference), so that `inboxes[r, default: ...].append`
    /// stores a new queue in the dictionary.
    mutating func append(_ d: UInt32) { items.append(d) }

    mutating func dropLeading(while shouldDrop: (UInt32) -> Bool) {
        while head < items.count, shouldDrop(items[head]) { head += 1 }
        if head > 1024, head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
    }
}

/// Interned strings that repeat a lot: organisation ids, signal types, reason codes.
private struct StringTable {
    private var names: [String] = []
    private var ids: [String: UInt32] = [:]

    mutating func intern(_ s: String) -> UInt32 {
        if let id = ids[s] { return id }
        let id = UInt32(names.count)
        names.append(s)
        ids[s] = id
        return id
    }

    func lookup(_ s: String) -> UInt32? { ids[s] }

    func name(_ id: UInt32) -> String { id == .max ? "" : names[Int(id)] }

    var memoryFootprint: Int { names.reduce(0) { $0 + 64 + $1.utf8.count } * 2 }
}

/// Signal ids (arbitrary strings, unique per signal) in one byte arena with an
/// open-addressing table: 4 bytes (end in the arena) and 11-23 bytes of table per id
/// instead of a heap object each.
struct IDTable {
    private let space: ScratchSpace
    private let arena: ScratchArray<UInt8>
    private let ends: ScratchArray<UInt32>
    /// Open addressing, at most 70% full: per slot the id's number + 1 (low half, 0 for an
    /// empty slot) and the upper half of its hash, so that a probe compares ids only when
    /// those match. A lookup of a new id (every submission) then touches one or two cache
    /// lines of this table and not the arena: only the table needs to stay in memory.
    private var slots: ScratchArray<UInt64>

    init(_ space: ScratchSpace) {
        self.space = space
        arena = ScratchArray(space)
        ends = ScratchArray(space)
        slots = ScratchArray(space, zeroed: 1024)
    }

    var count: Int { ends.count }

    private static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        h ^= h >> 33
        h &*= 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }

    private func range(_ i: Int) -> Range<Int> { (i == 0 ? 0 : Int(ends[i - 1]))..<Int(ends[i]) }

    private static func slotValue(_ index: Int, _ hash: UInt64) -> UInt64 { hash & 0xFFFF_FFFF_0000_0000 | UInt64(index + 1) }

    /// The table slot holding `key`, or the empty slot where it would go.
    private func probe(_ key: UnsafeRawBufferPointer, _ hash: UInt64) -> (slot: Int, id: UInt32?) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        let a = UnsafeRawBufferPointer(start: arena.base, count: arena.count)
        while true {
            let entry = slots[slot]
            if entry == 0 { return (slot, nil) }
            if entry >> 32 == hash >> 32 {
                let id = UInt32(truncatingIfNeeded: entry) - 1
                let r = range(Int(id))
                if r.count == key.count, key.count == 0 || memcmp(a.baseAddress! + r.lowerBound, key.baseAddress!, key.count) == 0 {
                    return (slot, id)
                }
            }
            slot = (slot + 1) & mask
        }
    }

    func find(_ id: String) -> UInt32? {
        var id = id
        return id.withUTF8 { utf8 in
            let key = UnsafeRawBufferPointer(utf8)
            return probe(key, Self.hash(key)).id
        }
    }

    mutating func insert(_ id: String) -> (UInt32, Bool) {
        var id = id
        return id.withUTF8 { utf8 in
            let key = UnsafeRawBufferPointer(utf8)
            let hash = Self.hash(key)
            let (slot, existing) = probe(key, hash)
            if let existing { return (existing, false) }
            let index = UInt32(ends.count)
            arena.append(contentsOf: utf8)
            ends.append(UInt32(arena.count))
            slots[slot] = Self.slotValue(Int(index), hash)
            if ends.count * 10 > slots.count * 7 { grow() }
            return (index, true)
        }
    }

    func string(_ i: UInt32) -> String {
        let r = range(Int(i))
        return String(decoding: UnsafeBufferPointer(start: arena.base + r.lowerBound, count: r.count), as: UTF8.self)
    }

    private mutating func grow() {
        let bigger = ScratchArray<UInt64>(space, zeroed: slots.count * 2)
        let mask = bigger.count - 1
        let a = UnsafeRawBufferPointer(start: arena.base, count: arena.count)
        for i in 0..<ends.count {
            let r = range(i)
            let hash = Self.hash(UnsafeRawBufferPointer(rebasing: a[r]))
            var slot = Int(truncatingIfNeeded: hash) & mask
            while bigger[slot] != 0 { slot = (slot + 1) & mask }
            bigger[slot] = Self.slotValue(i, hash)
        }
        slots = bigger
    }
}

/// A binary min-heap of (time, delivery) pairs with lazy deletion: entries that no longer
/// match their delivery are skipped and dropped.
struct MinHeap {
    struct Entry {
        var key: Int64
        var value: UInt32
    }

    private let storage: ScratchArray<Entry>

    init(_ space: ScratchSpace) {
        storage = ScratchArray(space)
    }

    var count: Int { storage.count }
    var top: Entry? { storage.isEmpty ? nil : storage[0] }

    mutating func push(_ key: Int64, _ value: UInt32) {
        storage.append(Entry(key: key, value: value))
        Self.siftUp(storage.base, storage.count - 1)
    }

    mutating func pop() {
        guard !storage.isEmpty else { return }
        storage.swapAt(0, storage.count - 1)
        storage.removeLast()
        Self.siftDown(storage.base, storage.count, 0)
    }

    private static func swap(_ heap: UnsafeMutablePointer<Entry>, _ i: Int, _ j: Int) {
        let t = heap[i]
        heap[i] = heap[j]
        heap[j] = t
    }

    private static func siftUp(_ heap: UnsafeMutablePointer<Entry>, _ start: Int) {
        var i = start
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].key < heap[parent].key else { break }
            swap(heap, i, parent)
            i = parent
        }
    }

    private static func siftDown(_ heap: UnsafeMutablePointer<Entry>, _ count: Int, _ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < count, heap[l].key < heap[smallest].key { smallest = l }
            if r < count, heap[r].key < heap[smallest].key { smallest = r }
            if smallest == i { return }
            swap(heap, i, smallest)
            i = smallest
        }
    }

    /// The values of current entries with key <= `limitKey`, smallest first, without
    /// changing the heap: a best-first walk that visits O(k log k) entries.
    func smallest(upTo limitKey: Int64, limit: Int, isCurrent: (Int64, UInt32) -> Bool) -> [UInt32] {
        guard let top, top.key <= limitKey, limit > 0 else { return [] }
        // Room reserved up front: growing these step by step costs a malloc per doubling.
        let expected = min(limit, storage.count)
        var out: [UInt32] = []
        out.reserveCapacity(expected)
        var seen = Set<UInt32>(minimumCapacity: expected)
        // Positions in the heap still to visit, as a heap of (key, position) in ordinary memory.
        var frontier: [Entry] = []
        frontier.reserveCapacity(min(2 * expected + 2, storage.count))
        func visit(_ position: Int) {
            frontier.append(Entry(key: storage[position].key, value: UInt32(position)))
            frontier.withUnsafeMutableBufferPointer { Self.siftUp($0.baseAddress!, $0.count - 1) }
        }
        visit(0)
        while out.count < limit, let next = frontier.first {
            frontier.swapAt(0, frontier.count - 1)
            frontier.removeLast()
            frontier.withUnsafeMutableBufferPointer { if $0.count > 0 { Self.siftDown($0.baseAddress!, $0.count, 0) } }
            let i = Int(next.value)
            let entry = storage[i]
            if entry.key > limitKey { break }
            if isCurrent(entry.key, entry.value), seen.insert(entry.value).inserted { out.append(entry.value) }
            if 2 * i + 1 < storage.count { visit(2 * i + 1) }
            if 2 * i + 2 < storage.count { visit(2 * i + 2) }
        }
        return out
    }

    /// Drops entries that are no longer current, and duplicates.
    mutating func compact(isCurrent: (Int64, UInt32) -> Bool) {
        var seen = Set<UInt32>()
        var kept = 0
        for i in storage.indices {
            let entry = storage[i]
            if isCurrent(entry.key, entry.value), seen.insert(entry.value).inserted {
                storage[kept] = entry
                kept += 1
            }
        }
        storage.truncate(to: kept)
        for i in stride(from: kept / 2 - 1, through: 0, by: -1) { Self.siftDown(storage.base, kept, i) }
    }
}
