import Foundation
import XCTest
import WaakvlamCrypto
import WaakvlamSystem
@testable import WaakvlamJournal

final class JournalTests: XCTestCase {
    func testAppendReadBackAndReopen() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        let records: [JournalRecord] = [
            Sample.received("s1", subjects: ["bsn:00"]),
            Sample.decision("s1", payload: [1, 2, 3]),
            Sample.decision("s1", to: "politie", allowed: false),
            .attempt(Attempt(signalID: "s1", recipientID: "gemeente-hoorn", attempt: 1, outcome: "http 503",
                             nextAttemptAt: time(60), at: time(2))),
            .delivered(Delivered(signalID: "s1", recipientID: "gemeente-hoorn", via: .push, at: time(61))),
            .expired(Expired(signalID: "s1", recipientID: "nobody", at: time(62))),
            .feedback(Feedback(signalID: "s1", fromID: "gemeente-hoorn", status: "opgepakt", fieldsForwarded: ["status"], at: time(63))),
            .payloadPurged(PayloadPurged(signalID: "s1", recipientID: "gemeente-hoorn", at: time(64))),
            .configApplied(ConfigApplied(version: "8", contentHash: "abc", appliedBy: "admin@hoorn", summary: "rule added", at: time(65))),
        ]
        let positions = try journal.append(records)
        XCTAssertEqual(positions.map(\.sequence), Array(1...9))
        XCTAssertEqual(positions.first?.segment, 1)
        XCTAssertEqual(positions.first?.offset, UInt32(Segment.headerSize))
        for (record, position) in zip(records, positions) {
            var expected = record
            let stored = try journal.record(at: position)
            if case .decision(var d) = expected, d.payload != nil, case .decision(let back) = stored {
                XCTAssertNil(back.payload)
                XCTAssertNotNil(back.sealed)
                XCTAssertFalse(back.sealed!.ciphertext.contains(subsequence: [1, 2, 3]))
                d.payload = nil
                d.sealed = back.sealed
                expected = .decision(d)
            }
            XCTAssertEqual(stored, expected)
        }
        XCTAssertEqual(journal.deliveryState().lastConfigVersion, "8")
        journal.close()
        XCTAssertThrowsError(try journal.append([Sample.received("late")])) { XCTAssertEqual($0 as? JournalError, .closed) }

        let reopened = try Journal.openForTest(dir)
        defer { reopened.close() }
        XCTAssertEqual(reopened.recovery.records, 9)
        XCTAssertEqual(reopened.recovery.tornBytesCut, 0)
        XCTAssertEqual(reopened.recovery.checkpointSequence, 9)
        XCTAssertEqual(reopened.recovery.hashedRecords, 1, "open re-hashes only from the checkpoint")
        let more = try reopened.append([Sample.received("s2")])
        XCTAssertEqual(more.map(\.sequence), [10])
        XCTAssertEqual(try JournalReader(directory: dir).verify().damage, nil)
    }

    func testDeliveryIndexIsRebuiltAtOpenAndKeptCurrent() throws {
        let dir = temporaryDirectory(self)
        var journal: Journal? = try Journal.openForTest(dir)
        try journal!.append(Sample.signal("a", at: time(10)))
        try journal!.append(Sample.signal("b", at: time(5)))
        try journal!.append(Sample.signal("c", to: "1hoorn", mode: .inbox, at: time(7)))
        try journal!.append([Sample.received("d", to: ["gemeente-hoorn", "politie"]),
                             Sample.decision("d", allowed: true, at: time(20)),
                             Sample.decision("d", to: "politie", allowed: false, at: time(20))])
        try journal!.append([.attempt(Attempt(signalID: "b", recipientID: "gemeente-hoorn", attempt: 1,
                                              outcome: "timeout", nextAttemptAt: time(100), at: time(6)))])
        try journal!.append([.delivered(Delivered(signalID: "a", recipientID: "gemeente-hoorn", via: .push, at: time(11)))])

        func check(_ index: DeliveryIndex, _ label: String) {
            XCTAssertEqual(index.signalCount, 4, label)
            XCTAssertEqual(index.pendingCount, 3, label)
            XCTAssertEqual(index.duePushes(at: time(1000), limit: 10).map(\.signalID), ["d", "b"], label)
            XCTAssertEqual(index.duePushes(at: time(50), limit: 10).map(\.signalID), ["d"], label)
            XCTAssertEqual(index.nextPushDue(), time(20), label)
            XCTAssertEqual(index.inbox(recipientID: "1hoorn", limit: 10).map(\.signalID), ["c"], label)
            XCTAssertEqual(index.delivery(signalID: "a", recipientID: "gemeente-hoorn")?.status, .delivered(at: time(11)), label)
            XCTAssertEqual(index.delivery(signalID: "b", recipientID: "gemeente-hoorn")?.status,
                           .pending(attempts: 1, firstQueuedAt: time(5), nextAttemptAt: time(100), mode: .push), label)
            XCTAssertEqual(index.delivery(signalID: "d", recipientID: "politie")?.status, .denied(code: "no_rule"), label)
            let d = index.signal("d")
            XCTAssertEqual(d?.senderID, "intermaris", label)
            XCTAssertEqual(d?.signalType, "overlast", label)
            XCTAssertEqual(d?.deliveries.map(\.recipientID), ["gemeente-hoorn", "politie"], label)
            XCTAssertNil(index.signal("zzz"), label)
            XCTAssertTrue(index.contains(signalID: "c"), label)
        }
        check(journal!.deliveryState(), "live")
        journal!.close()
        journal = try Journal.openForTest(dir)
        check(journal!.deliveryState(), "after reopen")
        XCTAssertEqual(journal!.recovery.pendingDeliveries, 3)

        // Full records for GET /v1/signals/{id} and idempotent resubmission.
        let full = try XCTUnwrap(try journal!.signal("d"))
        XCTAssertEqual(full.received?.requestHash, "r")
        XCTAssertEqual(full.decisions.map(\.decision.allowed), [true, false])
        XCTAssertEqual(full.decisions.last?.decision.reasonMessage, "no convenant rule")
        journal!.close()
    }

    func testCompletedSignalsAreForgottenAfterTheWindowAndTheRestSurvivesCompaction() throws {
        let dir = temporaryDirectory(self)
        let now = Date()
        let old = now.addingTimeInterval(-40 * 86400), recent = now.addingTimeInterval(-86400)
        let journal = try Journal.openForTest(dir, JournalOptions(rememberCompletedSignals: nil))
        // Old and complete: delivered (no payload) and denied.
        try journal.append([Sample.received("old-done", at: old), Sample.decision("old-done", at: old),
                            .delivered(Delivered(signalID: "old-done", recipientID: "gemeente-hoorn", via: .push, at: old))])
        try journal.append([Sample.received("old-denied", at: old), Sample.decision("old-denied", allowed: false, at: old)])
        // Old but not complete: pending push, pending inbox, delivered with a payload not yet purged.
        try journal.append([Sample.received("old-push", at: old), Sample.decision("old-push", at: old)])
        try journal.append([Sample.received("old-inbox", to: ["1hoorn"], at: old), Sample.decision("old-inbox", to: "1hoorn", mode: .inbox, at: old)])
        try journal.append([Sample.received("old-kept", at: old), Sample.decision("old-kept", payload: [1], retentionUntil: recent, at: old),
                            .delivered(Delivered(signalID: "old-kept", recipientID: "gemeente-hoorn", via: .push, at: old))])
        // Recent and complete.
        try journal.append([Sample.received("new-done", at: recent), Sample.decision("new-done", allowed: false, at: recent)])
        journal.close()

        let reopened = try Journal.openForTest(dir, JournalOptions(rememberCompletedSignals: 30 * 86400))
        let index = reopened.deliveryState()
        XCTAssertFalse(index.contains(signalID: "old-done"))
        XCTAssertFalse(index.contains(signalID: "old-denied"))
        for id in ["old-push", "old-inbox", "old-kept", "new-done"] { XCTAssertTrue(index.contains(signalID: id), id) }
        XCTAssertEqual(index.signalCount, 4)
        XCTAssertEqual(index.pendingCount, 2)
        XCTAssertEqual(index.duePushes(at: now, limit: 5).map(\.signalID), ["old-push"])
        XCTAssertEqual(index.inbox(recipientID: "1hoorn", limit: 5).map(\.signalID), ["old-inbox"])
        XCTAssertEqual(index.payloadsDue(at: now, limit: 5).map(\.signalID), ["old-kept"])
        XCTAssertEqual(Set(index.pendingQueued(before: now, limit: 5).map(\.signalID)), ["old-push", "old-inbox"])
        XCTAssertEqual(index.duePushes(recipientID: "gemeente-hoorn", at: now, limit: 5).map(\.signalID), ["old-push"])
        XCTAssertEqual(try reopened.payload(signalID: "old-kept", recipientID: "gemeente-hoorn"), [1])

        // Once purged, it goes at the next compaction; the journal itself keeps everything.
        try reopened.purge(signalID: "old-kept", recipientID: "gemeente-hoorn")
        XCTAssertEqual(index.forgetCompleted(receivedBefore: now.addingTimeInterval(-30 * 86400)), 1)
        XCTAssertFalse(index.contains(signalID: "old-kept"))
        XCTAssertEqual(index.duePushes(at: now, limit: 5).map(\.signalID), ["old-push"])
        try reopened.append([.delivered(Delivered(signalID: "old-push", recipientID: "gemeente-hoorn", via: .push, at: now))])
        XCTAssertEqual(index.pendingCount, 1)
        reopened.close()
        XCTAssertEqual(try JournalReader(directory: dir).records(matching: JournalQuery(signalID: "old-done")).count, 3)
    }

    func testPayloadIsSealedAndPurgeDestroysItWhileTheChainStaysValid() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        let secret = Array("Jansen, Dorpsstraat 1, achterstand 812 euro".utf8)
        try journal.append(Sample.signal("p1", payload: secret))
        try journal.append([Sample.received("p2"), Sample.decision("p2", payload: [9], retentionUntil: time(50))])
        XCTAssertEqual(try journal.payload(signalID: "p1", recipientID: "gemeente-hoorn"), secret)
        XCTAssertNil(try journal.payload(signalID: "p1", recipientID: "unknown"))
        XCTAssertEqual(journal.deliveryState().payloadsDue(at: time(100), limit: 5).map(\.signalID), ["p2"])
        XCTAssertEqual(journal.deliveryState().payloadsDue(at: time(10), limit: 5).map(\.signalID), [])

        // Nothing of the plaintext is on disk.
        for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
            XCTAssertFalse(readFile(dir + "/" + name).contains(subsequence: Array("Dorpsstraat".utf8)), name)
        }
        try journal.purge(signalID: "p1", recipientID: "gemeente-hoorn")
        try journal.purge(signalID: "p2", recipientID: "gemeente-hoorn")
        XCTAssertNil(try journal.payload(signalID: "p1", recipientID: "gemeente-hoorn"))
        XCTAssertEqual(journal.deliveryState().delivery(signalID: "p1", recipientID: "gemeente-hoorn")?.hasPayload, false)
        XCTAssertEqual(journal.deliveryState().payloadsDue(at: time(100), limit: 5).count, 0)
        journal.close()

        // The key slot is zeros on disk; the ciphertext is still in the chain but unreadable.
        let keys = readFile(dir + "/keys")
        XCTAssertTrue(keys[KeySlot.size..<3 * KeySlot.size].allSatisfy { $0 == 0 })
        let reopened = try Journal.openForTest(dir)
        XCTAssertNil(try reopened.payload(signalID: "p1", recipientID: "gemeente-hoorn"))
        reopened.close()
        let verification = try JournalReader(directory: dir).verify()
        XCTAssertNil(verification.damage)
        XCTAssertEqual(verification.records, 6)
    }

    func testASecondDecisionReplacesTheFirstAndDestroysItsKey() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        try journal.append([Sample.received("x"), Sample.decision("x", payload: Array("first".utf8))])
        let firstSlot = try XCTUnwrap(journal.deliveryState().delivery(signalID: "x", recipientID: "gemeente-hoorn"))
        try journal.append([Sample.decision("x", payload: Array("second".utf8), mode: .inbox, at: time(9))])
        XCTAssertEqual(try journal.payload(signalID: "x", recipientID: "gemeente-hoorn"), Array("second".utf8))
        XCTAssertEqual(journal.deliveryState().signal("x")?.deliveries.count, 1)
        XCTAssertEqual(journal.deliveryState().inbox(recipientID: "gemeente-hoorn", limit: 5).map(\.signalID), ["x"])
        XCTAssertEqual(journal.deliveryState().duePushes(at: time(100), limit: 5).count, 0)
        guard case .decision(let d) = try journal.record(at: firstSlot.decision), let slot = d.sealed?.keySlot else {
            return XCTFail("first decision lost")
        }
        journal.close()
        let keys = readFile(dir + "/keys")
        XCTAssertTrue(keys[Int(KeySlot.offset(slot))..<Int(KeySlot.offset(slot)) + KeySlot.size].allSatisfy { $0 == 0 })
        XCTAssertFalse(keys[Int(KeySlot.offset(slot + 1))..<Int(KeySlot.offset(slot + 1)) + KeySlot.size].allSatisfy { $0 == 0 })
        XCTAssertEqual(keys.count, 64 << 10, "the key file grows in steps of 64 KiB")
    }

    func testStatisticsNameTheHeadOfTheChain() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        try journal.append(Sample.signal("h1"))
        try journal.append(Sample.signal("h2"))
        let stats = journal.statistics
        journal.close()
        let verification = try JournalReader(directory: dir).verify()
        XCTAssertEqual(stats.headSequence, 4)
        XCTAssertEqual(stats.headHash, verification.headHash)
        let reopened = try Journal.openForTest(dir)
        XCTAssertEqual(reopened.statistics.headHash, verification.headHash)
        reopened.close()
    }

    func testGroupCommitBatchesConcurrentAppends() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        let threads = 32, perThread = 40
        let failures = Counter()
        runThreads(threads) { t in
            for i in 0..<perThread where (try? journal.append(Sample.signal("t\(t)-\(i)"))) == nil {
                failures.increment()
            }
        }
        XCTAssertEqual(failures.value, 0)
        let stats = journal.statistics
        XCTAssertEqual(stats.appends, UInt64(threads * perThread))
        XCTAssertEqual(stats.records, UInt64(threads * perThread * 2))
        XCTAssertEqual(stats.segmentSyncs, stats.groupCommits)
        XCTAssertLessThan(stats.groupCommits * 2, stats.appends, "appends must share syncs: \(stats)")
        XCTAssertGreaterThan(stats.largestGroup, 1)
        XCTAssertEqual(journal.deliveryState().pendingCount, threads * perThread)
        journal.close()
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)
    }

    /// Small groups: what the writer takes from the queue in one go is split into several
    /// group commits; every caller still gets the positions of its own records.
    func testConcurrentAppendsSplitIntoSmallGroupsReturnTheirOwnPositions() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir, JournalOptions(segmentSizeLimit: 64 << 10, maxGroupBytes: 4096))
        let threads = 16, perThread = 30
        let failures = Counter()
        runThreads(threads) { t in
            for i in 0..<perThread {
                let id = "s\(t)-\(i)"
                guard let positions = try? journal.append(Sample.signal(id)), positions.count == 2,
                      case .received(let r)? = try? journal.record(at: positions[0]), r.signalID == id,
                      case .decision(let d)? = try? journal.record(at: positions[1]), d.signalID == id,
                      positions[1].sequence == positions[0].sequence + 1,
                      (try? journal.payload(signalID: id, recipientID: "gemeente-hoorn")) == Array("payload of \(id)".utf8) else {
                    failures.increment()
                    continue
                }
            }
        }
        XCTAssertEqual(failures.value, 0)
        let stats = journal.statistics
        XCTAssertEqual(stats.appends, UInt64(threads * perThread))
        XCTAssertGreaterThan(stats.rotations, 0)
        journal.close()
        let verification = try JournalReader(directory: dir).verify()
        XCTAssertNil(verification.damage)
        XCTAssertEqual(verification.records, UInt64(threads * perThread * 2))
    }

    /// Asynchronous appends: each completion comes once, after its records are durable, with
    /// their own positions, in the order the appends were queued; appends mixed with blocking
    /// ones share group commits; close tells every completion before it returns.
    func testAsynchronousAppendsCompleteOnceInQueueOrder() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir, JournalOptions(segmentSizeLimit: 64 << 10, maxGroupBytes: 4096))
        let log = CompletionLog()
        let threads = 8, perThread = 60
        runThreads(threads) { t in
            for i in 0..<perThread {
                let id = "a\(t)-\(i)"
                if i % 10 == 9 {
                    // A blocking append in between.
                    if (try? journal.append(Sample.signal(id))) == nil { log.fail("blocking append \(id) failed") }
                    continue
                }
                do {
                    try journal.append(Sample.signal(id)) { result in log.record(id, result, journal: journal) }
                } catch {
                    log.fail("append \(id) threw \(error)")
                }
            }
        }
        journal.close()
        let asynchronous = threads * perThread * 9 / 10
        XCTAssertEqual(log.failures, [])
        XCTAssertEqual(log.ids.count, asynchronous, "close must tell every completion first")
        XCTAssertEqual(Set(log.ids).count, asynchronous, "each completion exactly once")
        XCTAssertEqual(log.sequences, log.sequences.sorted(), "completions follow the queue, which is the chain's order")
        XCTAssertThrowsError(try journal.append(Sample.signal("late")) { _ in log.fail("a refused append must not complete") }) {
            XCTAssertEqual($0 as? JournalError, .closed)
        }

        let reopened = try Journal.openForTest(dir)
        defer { reopened.close() }
        XCTAssertEqual(reopened.deliveryState().pendingCount, threads * perThread)
        XCTAssertEqual(reopened.statistics.appends, 0)
        XCTAssertEqual(reopened.recovery.records, UInt64(threads * perThread * 2))
    }

    /// Completions for an event loop run on that loop's thread, once each, in the order of
    /// their records' sequence numbers; appends for two loops share group commits.
    func testCompletionsForAnEventLoopRunOnItInSequenceOrder() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir, JournalOptions(maxGroupBytes: 4096))
        let loops = try [EventLoop(name: "test-a"), EventLoop(name: "test-b")]
        for loop in loops { try loop.start() }
        let logs = [CompletionLog(), CompletionLog()]
        let threads = 4, perThread = 50
        let done = DispatchGroup()
        runThreads(threads) { t in
            for i in 0..<perThread {
                let id = "l\(t)-\(i)", which = (t + i) % 2
                done.enter()
                do {
                    try journal.append(Sample.signal(id), on: loops[which]) { result in
                        if !loops[which].isCurrent { logs[which].fail("completion of \(id) ran off its loop") }
                        logs[which].record(id, result, journal: journal)
                        done.leave()
                    }
                } catch {
                    logs[which].fail("append \(id) threw \(error)")
                    done.leave()
                }
            }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success, "every completion must run")
        journal.close()
        for log in logs {
            XCTAssertEqual(log.failures, [])
            XCTAssertEqual(log.ids.count, threads * perThread / 2)
            XCTAssertEqual(Set(log.ids).count, log.ids.count, "each completion exactly once")
            XCTAssertEqual(log.sequences, log.sequences.sorted(), "a loop's completions follow the chain's order")
        }
        XCTAssertLessThan(journal.statistics.groupCommits, UInt64(threads * perThread))
        XCTAssertThrowsError(try journal.append(Sample.signal("late"), on: loops[0]) { _ in logs[0].fail("a refused append must not complete") }) {
            XCTAssertEqual($0 as? JournalError, .closed)
        }
        for loop in loops {
            loop.execute { loop.finish() }
            loop.waitUntilFinished()
        }
    }

    /// A lazy append starts no group commit: it waits for the next urgent append and shares
    /// its commit, or commits alone once its delay is over.
    func testALazyAppendJoinsTheNextGroupCommitOrWaitsItsDelayAtMost() throws {
        try withLoop("test-lazy") { loop in
            let patient = try Journal.openForTest(temporaryDirectory(self), JournalOptions(lazyDelay: 60))
            let joined = DispatchSemaphore(value: 0)
            try appendLazily("lazy-1", to: patient, on: loop, told: joined)
            XCTAssertEqual(joined.wait(timeout: .now() + 0.3), .timedOut, "a lazy append alone waits")
            XCTAssertEqual(patient.statistics.groupCommits, 0)
            try patient.append(Sample.signal("urgent-1"))
            XCTAssertEqual(joined.wait(timeout: .now() + 5), .success, "the lazy append rode along")
            XCTAssertEqual(patient.statistics.groupCommits, 1)
            XCTAssertEqual(patient.statistics.appends, 2)
            patient.close()

            let hasty = try Journal.openForTest(temporaryDirectory(self), JournalOptions(lazyDelay: 0.05))
            let alone = DispatchSemaphore(value: 0)
            try appendLazily("lazy-2", to: hasty, on: loop, told: alone)
            XCTAssertEqual(alone.wait(timeout: .now() + 5), .success, "committed once its delay was over")
            XCTAssertEqual(hasty.statistics.groupCommits, 1)
            hasty.close()
        }
    }

    /// An append made by a completion on the completion thread (held until the group's
    /// completions ran) starts a group commit even while a lazy append waits in the queue.
    func testAnAppendMadeOnTheCompletionThreadDoesNotWaitBehindALazyOne() throws {
        try withLoop("test-lazy-held") { loop in
            let journal = try Journal.openForTest(temporaryDirectory(self), JournalOptions(lazyDelay: 60))
            let lazyDone = DispatchSemaphore(value: 0), heldDone = DispatchSemaphore(value: 0)
            try journal.append(Sample.signal("first")) { _ in
                try? self.appendLazily("lazy", to: journal, on: loop, told: lazyDone)
                try? journal.append(Sample.signal("held")) { result in
                    if case .success = result { heldDone.signal() }
                }
            }
            XCTAssertEqual(heldDone.wait(timeout: .now() + 5), .success, "the held append did not wait for the lazy delay")
            XCTAssertEqual(lazyDone.wait(timeout: .now() + 5), .success, "the lazy append rode along")
            XCTAssertEqual(journal.statistics.groupCommits, 2)
            journal.close()
        }
    }

    /// Closing the journal commits the lazy appends that wait, and tells them.
    func testClosingCommitsWaitingLazyAppends() throws {
        try withLoop("test-lazy-close") { loop in
            let dir = temporaryDirectory(self)
            let journal = try Journal.openForTest(dir, JournalOptions(lazyDelay: 60))
            let told = DispatchSemaphore(value: 0)
            for i in 0..<3 { try appendLazily("lazy-\(i)", to: journal, on: loop, told: told) }
            let closing = monotonicNanoseconds()
            journal.close()
            XCTAssertLessThan(monotonicNanoseconds() - closing, 30_000_000_000, "close did not wait out the lazy delay")
            for _ in 0..<3 { XCTAssertEqual(told.wait(timeout: .now() + 5), .success) }
            let reopened = try Journal.openForTest(dir)
            XCTAssertEqual(reopened.statistics.headSequence, UInt64(3 * Sample.signal("x").count))
            reopened.close()
        }
    }

    /// Runs `body` with a started event loop, and ends the loop afterwards.
    private func withLoop(_ name: String, _ body: (EventLoop) throws -> Void) throws {
        let loop = try EventLoop(name: name)
        try loop.start()
        defer {
            loop.execute { loop.finish() }
            loop.waitUntilFinished()
        }
        try body(loop)
    }

    /// Appends a sample signal lazily on `loop`; `told` is signalled once it is durable.
    private func appendLazily(_ id: String, to journal: Journal, on loop: EventLoop, told: DispatchSemaphore) throws {
        try journal.append(Sample.signal(id), on: loop, lazily: true) { result in
            if case .success = result { told.signal() }
        }
    }

    /// Writers that append again from their completion, as the benchmark's do: nothing waits,
    /// and appends still share syncs.
    func testCompletionsMayAppendAgain() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        let done = DispatchGroup()
        let failures = Counter()
        let writers = 16, chain = 50
        @Sendable func next(_ writer: Int, _ i: Int) {
            guard i < chain else { return done.leave() }
            do {
                try journal.append(Sample.signal("c\(writer)-\(i)")) { result in
                    if case .failure = result { failures.increment() }
                    next(writer, i + 1)
                }
            } catch {
                failures.increment()
                done.leave()
            }
        }
        for writer in 0..<writers {
            done.enter()
            next(writer, 0)
        }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(failures.value, 0)
        let stats = journal.statistics
        XCTAssertEqual(stats.appends, UInt64(writers * chain))
        XCTAssertLessThan(stats.groupCommits * 4, stats.appends, "16 writers must share syncs: \(stats)")
        journal.close()
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)
    }

    /// Closing while chained writers keep appending from their completions: every append the
    /// journal took is completed before `close` returns, and the rest are refused with
    /// `closed`, so no writer waits forever.
    func testCloseCompletesEveryAppendItTook() throws {
        for round in 0..<5 {
            let dir = temporaryDirectory(self)
            let journal = try Journal.openForTest(dir)
            let taken = Counter(), completed = Counter(), refused = Counter()
            @Sendable func next(_ writer: Int, _ i: Int) {
                do {
                    try journal.append([Sample.received("r\(round)-\(writer)-\(i)")]) { _ in
                        completed.increment()
                        next(writer, i + 1)
                    }
                    taken.increment()
                } catch {
                    XCTAssertEqual(error as? JournalError, .closed)
                    refused.increment()
                }
            }
            for writer in 0..<16 { next(writer, 0) }
            usleep(UInt32(20_000 * (round + 1)))
            journal.close()
            XCTAssertEqual(refused.value, 16, "round \(round): every chain ends with a refused append")
            XCTAssertEqual(completed.value, taken.value, "round \(round): appends taken but never completed")
            let reopened = try Journal.openForTest(dir)
            XCTAssertEqual(reopened.recovery.records, UInt64(completed.value), "round \(round)")
            reopened.close()
        }
    }

    /// The same, deterministically: `close` is called while a completion that already made
    /// its next append is still running; that append is committed and completed first.
    func testCloseWaitsForAnAppendHeldByARunningCompletion() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        let appended = DispatchSemaphore(value: 0)
        let heldCompleted = Counter()
        try journal.append([Sample.received("first")]) { _ in
            do {
                try journal.append([Sample.received("held")]) { result in
                    if case .success = result { heldCompleted.increment() }
                }
            } catch {
                XCTFail("the append inside the completion was refused: \(error)")
            }
            appended.signal()
            usleep(300_000)  // close() starts meanwhile
        }
        appended.wait()
        journal.close()
        XCTAssertEqual(heldCompleted.value, 1)
        let reopened = try Journal.openForTest(dir)
        XCTAssertEqual(reopened.recovery.records, 2)
        reopened.close()
        XCTAssertEqual(try JournalReader(directory: dir).records(matching: JournalQuery(signalID: "held")).count, 1)
    }

    func testAnEmptyAsynchronousAppendIsRefused() throws {
        let journal = try Journal.openForTest(temporaryDirectory(self))
        defer { journal.close() }
        XCTAssertThrowsError(try journal.append([]) { _ in XCTFail("a refused append must not complete") }) {
            guard case .invalidRecord? = $0 as? JournalError else { return XCTFail("\($0)") }
        }
    }

    func testSegmentsRotateAndTheChainCrossesThem() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir, JournalOptions(segmentSizeLimit: 4096, maxGroupBytes: 4096))
        for i in 0..<100 { try journal.append(Sample.signal("r\(i)")) }
        XCTAssertGreaterThan(journal.statistics.rotations, 5)
        journal.close()
        let segments = segmentFiles(dir)
        XCTAssertEqual(segments.first, "00000001.seg")
        XCTAssertEqual(segments.count, Int(journal.statistics.rotations) + 1)
        let result = try JournalReader(directory: dir).verify()
        XCTAssertNil(result.damage)
        XCTAssertEqual(result.records, 200)
        XCTAssertEqual(result.segments, segments.count)
        let reopened = try Journal.openForTest(dir, JournalOptions(segmentSizeLimit: 4096, maxGroupBytes: 4096))
        XCTAssertEqual(reopened.deliveryState().signalCount, 100)
        XCTAssertEqual(try reopened.payload(signalID: "r3", recipientID: "gemeente-hoorn"), Array("payload of r3".utf8))
        reopened.close()
    }

    func testASecondProcessCannotOpenTheJournal() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        XCTAssertThrowsError(try Journal.openForTest(dir)) {
            guard case JournalError.locked = $0 else { return XCTFail("\($0)") }
        }
        journal.close()
        try Journal.openForTest(dir).close()
    }

    func testOversizedAppendIsRefusedWithAClearError() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        defer { journal.close() }
        let huge = [UInt8](repeating: 7, count: Journal.maxAppendBytes)
        XCTAssertThrowsError(try journal.append([Sample.received("big"), Sample.decision("big", payload: huge)])) {
            guard case JournalError.invalidRecord(let why) = $0 else { return XCTFail("\($0)") }
            XCTAssertTrue(why.contains("split"))
        }
        XCTAssertEqual(try journal.append([Sample.received("small")]).map(\.sequence), [1])
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence: [UInt8]) -> Bool {
        guard subsequence.count <= count else { return false }
        for start in 0...(count - subsequence.count) where self[start..<start + subsequence.count].elementsEqual(subsequence) {
            return true
        }
        return false
    }
}

/// What asynchronous completions reported, checked against the journal as they come.
private final class CompletionLog: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var ids: [String] = []
    private(set) var sequences: [UInt64] = []
    private(set) var failures: [String] = []

    func fail(_ message: String) {
        lock.lock()
        failures.append(message)
        lock.unlock()
    }

    /// The positions must hold this append's own two records, readable at once.
    func record(_ id: String, _ result: Result<[RecordPosition], JournalError>, journal: Journal) {
        guard case .success(let positions) = result, positions.count == 2,
              case .received(let r)? = try? journal.record(at: positions[0]), r.signalID == id,
              case .decision(let d)? = try? journal.record(at: positions[1]), d.signalID == id else {
            return fail("completion of \(id): \(result)")
        }
        lock.lock()
        ids.append(id)
        sequences.append(positions[0].sequence)
        lock.unlock()
    }
}
