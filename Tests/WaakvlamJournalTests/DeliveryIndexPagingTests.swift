import Foundation
import XCTest
@testable import WaakvlamJournal

/// The delivery index keeps its arrays in a nameless scratch file whose pages leave the
/// process's memory (`ScratchSpace`); these tests check that nothing is lost on the way.
final class DeliveryIndexPagingTests: XCTestCase {
    func testScratchArraysKeepTheirContentsWhenTheirPagesLeaveMemory() throws {
        let dir = temporaryDirectory(self)
        for directory in [dir, nil] {
            let label = directory == nil ? "anonymous" : "file"
            let space = ScratchSpace(directory: directory)
            let values = ScratchArray<UInt64>(space)
            for i in 0..<300_000 { values.append(UInt64(i) &* 0x9E37_79B9_7F4A_7C15) }  // 2.4 MB: several reservations
            let zeroed = ScratchArray<UInt32>(space, zeroed: 5_000)
            zeroed[4_999] = 7
            space.releaseResident()
            XCTAssertEqual(space.isFileBacked, directory != nil, label)
            XCTAssertEqual(values.count, 300_000, label)
            XCTAssertTrue((0..<300_000).allSatisfy { values[$0] == UInt64($0) &* 0x9E37_79B9_7F4A_7C15 }, label)
            XCTAssertEqual(zeroed[4_999], 7, label)
            XCTAssertTrue((0..<4_999).allSatisfy { zeroed[$0] == 0 }, label)
            values.removeFirst(100_000)
            XCTAssertEqual(values[0], 100_000 &* 0x9E37_79B9_7F4A_7C15, label)
            values.truncate(to: 10)
            XCTAssertEqual(values.last, 100_009 &* 0x9E37_79B9_7F4A_7C15, label)
            XCTAssertGreaterThanOrEqual(space.reservedBytes, 2_400_000, label)
        }
        // A window given back is reused; a zeroed array on it reads as zeros.
        let space = ScratchSpace(directory: dir)
        var first: ScratchArray<UInt32>? = ScratchArray(space)
        for _ in 0..<100_000 { first!.append(0xFFFF_FFFF) }
        first = nil
        XCTAssertEqual(space.reservedBytes, 0)
        let second = ScratchArray<UInt32>(space, zeroed: 100_000)
        XCTAssertTrue((0..<100_000).allSatisfy { second[$0] == 0 })
        // The scratch file has no name: the folder holds only what the test made.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
    }

    func testAPagedIndexAnswersTheSameAfterItsPagesLeftMemoryAndAfterReopening() throws {
        let dir = temporaryDirectory(self)
        var journal: Journal? = try Journal.openForTest(dir)
        // More records than `releaseInterval`, so the index drops its pages several times.
        let count = 12_000
        var batch: [JournalRecord] = []
        for i in 0..<count {
            let id = "signal-\(i)"
            switch i % 3 {
            case 0: batch += Sample.signal(id, to: "gemeente-hoorn", at: time(i))
            case 1: batch += Sample.signal(id, to: "politie", at: time(i))
            default: batch += Sample.signal(id, to: "1hoorn", mode: .inbox, at: time(i))
            }
            if i % 10 == 9 {
                batch.append(.delivered(Delivered(signalID: "signal-\(i - 9)", recipientID: "gemeente-hoorn", via: .push, at: time(i))))
            }
            if batch.count >= 500 {
                try journal!.append(batch)
                batch = []
            }
        }
        if !batch.isEmpty { try journal!.append(batch) }
        XCTAssertEqual(journal!.deliveryState().isPageable, true)
        XCTAssertGreaterThan(journal!.deliveryState().scratchDiskBytes, 0, "the arrays' disk blocks are counted")

        func check(_ index: DeliveryIndex, _ label: String) {
            let delivered = (0..<count).filter { $0 % 30 == 0 }.count  // every tenth, of the gemeente's third
            XCTAssertEqual(index.signalCount, count, label)
            XCTAssertEqual(index.pendingCount, count - delivered, label)
            XCTAssertEqual(index.pendingPerRecipient(), ["gemeente-hoorn": count / 3 - delivered, "politie": count / 3, "1hoorn": count / 3], label)
            XCTAssertTrue((0..<count).allSatisfy { index.contains(signalID: "signal-\($0)") }, label)
            XCTAssertFalse(index.contains(signalID: "signal-\(count)"), label)
            XCTAssertEqual(index.duePushes(recipientID: "gemeente-hoorn", at: time(count), limit: 3).map(\.signalID),
                           ["signal-3", "signal-6", "signal-9"], label)
            XCTAssertEqual(index.duePushes(recipientID: "politie", at: time(count), limit: 2).map(\.signalID), ["signal-1", "signal-4"], label)
            XCTAssertEqual(index.inbox(recipientID: "1hoorn", limit: 2).map(\.signalID), ["signal-2", "signal-5"], label)
            XCTAssertEqual(index.pendingQueued(before: time(4), limit: 10).map(\.signalID), ["signal-1", "signal-2", "signal-3"], label)
            XCTAssertEqual(index.delivery(signalID: "signal-11970", recipientID: "gemeente-hoorn")?.status, .delivered(at: time(11979)), label)
            XCTAssertEqual(index.delivery(signalID: "signal-11999", recipientID: "1hoorn")?.status,
                           .pending(attempts: 0, firstQueuedAt: time(11999), nextAttemptAt: nil, mode: .inbox), label)
        }
        let index = journal!.deliveryState()
        check(index, "live")
        // A walk over the whole index ends by dropping its pages: what is left in memory of the
        // scratch file is at most a few pages.
        index.forgetCompleted(receivedBefore: .distantPast)
        XCTAssertLessThan(scratchResidentKiB(dir), 64)
        check(index, "after its pages left memory")
        journal!.close()
        journal = try Journal.openForTest(dir)
        check(journal!.deliveryState(), "after reopen")
        journal!.close()
    }

    /// A node with more recipients than one scratch file has windows for (seven arrays plus a
    /// schedule per push recipient and a queue per inbox recipient, 32 windows per file): the
    /// index maps a second file and every recipient's queue stays whole and in order.
    func testManyRecipientsSpillIntoASecondScratchFile() throws {
        let dir = temporaryDirectory(self)
        let recipients = 30
        var journal: Journal? = try Journal.openForTest(dir)
        var batch: [JournalRecord] = []
        for i in 0..<recipients * 20 {
            let r = i % recipients
            batch += Sample.signal("s\(i)", to: "r\(r)", mode: r % 2 == 0 ? .push : .inbox, at: time(i))
        }
        try journal!.append(batch)
        XCTAssertEqual(scratchMappings(dir), 2, "a second scratch file")

        func check(_ index: DeliveryIndex, _ label: String) {
            XCTAssertTrue(index.isPageable, label)
            XCTAssertEqual(index.pendingPerRecipient(), Dictionary(uniqueKeysWithValues: (0..<recipients).map { ("r\($0)", 20) }), label)
            for r in 0..<recipients {
                let expected = (0..<20).map { "s\($0 * recipients + r)" }
                let found = r % 2 == 0 ? index.duePushes(recipientID: "r\(r)", at: time(recipients * 20), limit: 50).map(\.signalID)
                                       : index.inbox(recipientID: "r\(r)", limit: 50).map(\.signalID)
                XCTAssertEqual(found, expected, "\(label): r\(r)")
            }
        }
        let index = journal!.deliveryState()
        index.forgetCompleted(receivedBefore: .distantPast)  // drops the pages, as a long-running node does
        check(index, "live")
        journal!.close()
        journal = try Journal.openForTest(dir)
        check(journal!.deliveryState(), "after reopen")
        journal!.close()
    }

    /// How many scratch files of `directory` this process has mapped.
    private func scratchMappings(_ directory: String) -> Int {
        guard let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8) else { return 0 }
        return Set(maps.split(separator: "\n").compactMap { line -> Substring? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return fields.count >= 6 && fields[5].hasPrefix(directory) ? fields[4] : nil  // the inode
        }).count
    }

    /// Resident KiB of this process's mappings of files in `directory` (the nameless scratch
    /// file shows as "<directory>/#<inode> (deleted)").
    private func scratchResidentKiB(_ directory: String) -> Int {
        guard let smaps = try? String(contentsOfFile: "/proc/self/smaps", encoding: .utf8) else { return 0 }
        var inScratch = false
        var total = 0
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = fields.first, first.contains("-"), fields.count >= 5 {
                inScratch = fields.count >= 6 && fields[5].hasPrefix(directory)
            } else if inScratch, fields.first == "Rss:", fields.count >= 2 {
                total += Int(fields[1]) ?? 0
            }
        }
        return total
    }
}

/// `contains(signalID:)` is asked on the connection loops while the journal writer applies
/// group commits: it must stay right while ids are added (growing the id table) and
/// compaction swaps the table. The index is in anonymous memory here, where a window given
/// back reads as zeros: a look-up in a table being replaced would miss (or crash, as it did
/// with the look-up's lock taken out).
final class DeliveryIndexConcurrencyTests: XCTestCase {
    func testIDLookUpsStayRightWhileIDsAreAddedAndTheTableIsCompacted() throws {
        let index = DeliveryIndex(directory: nil)
        let old = time(0), recent = time(100 * 86400)
        /// What the writer has published and what the readers found, under `lock`.
        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var keepersApplied = 0, finished = false
            var lookUps = 0, wrong: [String] = []
        }
        let shared = Shared()
        let readers = DispatchGroup()
        for reader in 0..<3 {
            DispatchQueue.global().async(group: readers) {
                while true {
                    shared.lock.lock()
                    let known = shared.keepersApplied, done = shared.finished
                    shared.lock.unlock()
                    if done { return }
                    var mistakes: [String] = []
                    // The newest ids, which each grow of the table moves.
                    for k in max(0, known - 64)..<known where !index.contains(signalID: "keep-\(k)") {
                        mistakes.append("keep-\(k) missing")
                    }
                    if index.contains(signalID: "never-\(reader)") { mistakes.append("never-\(reader) found") }
                    shared.lock.lock()
                    shared.lookUps += 1
                    shared.wrong += mistakes
                    shared.lock.unlock()
                }
            }
        }
        // Pending keepers stay; complete (denied) old signals go at each compaction. 60,000 ids
        // grow the table's slots from 1,024 to 131,072.
        var sequence: UInt64 = 1
        for round in 0..<300 {
            var records: [JournalRecord] = []
            for i in round * 100..<(round + 1) * 100 {
                records += [Sample.received("keep-\(i)", at: recent), Sample.decision("keep-\(i)", at: recent),
                            Sample.received("old-\(i)", at: old), Sample.decision("old-\(i)", allowed: false, at: old)]
            }
            let positions = records.indices.map { RecordPosition(segment: 1, offset: UInt32($0), sequence: sequence + UInt64($0)) }
            sequence += UInt64(records.count)
            index.apply { apply in apply(records, positions, 0) }
            shared.lock.lock()
            shared.keepersApplied = (round + 1) * 100
            shared.lock.unlock()
            if round % 50 == 49 {
                XCTAssertEqual(index.forgetCompleted(receivedBefore: time(86400)), 5_000, "round \(round)")
            }
        }
        shared.lock.lock()
        shared.finished = true
        shared.lock.unlock()
        readers.wait()
        XCTAssertEqual(shared.wrong.prefix(5), [])
        XCTAssertGreaterThan(shared.lookUps, 100)
        XCTAssertEqual(index.signalCount, 30_000)
        XCTAssertTrue((0..<30_000).allSatisfy { index.contains(signalID: "keep-\($0)") })
        XCTAssertFalse(index.contains(signalID: "old-0"))
    }
}
