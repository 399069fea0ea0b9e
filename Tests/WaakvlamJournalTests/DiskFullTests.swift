#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
@testable import WaakvlamJournal
import WaakvlamSystem

/// A full disk (simulated with RLIMIT_FSIZE, SIGXFSZ ignored so writes fail with EFBIG) gives
/// `diskFull`, loses nothing acknowledged, and appends resume once there is room.
final class DiskFullTests: XCTestCase {
    func testFullDiskFailsAppendsCleanlyAndRecovers() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        var acknowledged: [String] = []
        for i in 0..<20 {
            try journal.append(Sample.signal("before-\(i)"))
            acknowledged.append("before-\(i)")
        }
        let segment = dir + "/" + segmentFiles(dir).last!
        let size = try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int

        let logged = Counter()
        let previousSink = Log.shared.sink
        Log.shared.sink = { line in if line.contains("journal_write_failed") { logged.increment() } }
        defer { Log.shared.sink = previousSink }
        var failedIDs: [String] = []
        var firstError: JournalError?
        withFileSizeLimit(size + 3000) {
            for i in 0..<40 {
                do {
                    try journal.append(Sample.signal("during-\(i)"))
                    acknowledged.append("during-\(i)")
                } catch let error as JournalError {
                    firstError = firstError ?? error
                    failedIDs.append("during-\(i)")
                } catch {
                    XCTFail("\(error)")
                }
            }
        }

        guard case .diskFull(let why)? = firstError else { return XCTFail("expected diskFull, got \(String(describing: firstError))") }
        XCTAssertTrue(why.contains("errno"), why)
        XCTAssertTrue(JournalError.diskFull(why).description.contains("free space"))
        XCTAssertGreaterThan(failedIDs.count, 10, "the limit must have been hit")
        XCTAssertGreaterThan(journal.statistics.failedAppends, 10)
        XCTAssertEqual(logged.value, failedIDs.count, "each failed write is logged")
        // The segment was cut back: nothing of a failed append is on disk.
        let after = try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int
        XCTAssertLessThanOrEqual(after, size + 3000)

        // Space is back: appends work again and continue the chain.
        for i in 0..<5 {
            try journal.append(Sample.signal("after-\(i)"))
            acknowledged.append("after-\(i)")
        }
        let index = journal.deliveryState()
        XCTAssertEqual(acknowledged.filter { !index.contains(signalID: $0) }, [])
        XCTAssertEqual(failedIDs.filter { index.contains(signalID: $0) }, [], "failed appends must leave no trace")
        journal.close()

        let reopened = try Journal.openForTest(dir)
        XCTAssertEqual(reopened.recovery.tornBytesCut, 0)
        XCTAssertEqual(acknowledged.filter { !reopened.deliveryState().contains(signalID: $0) }, [])
        XCTAssertEqual(failedIDs.filter { reopened.deliveryState().contains(signalID: $0) }, [])
        XCTAssertEqual(try reopened.payload(signalID: "after-4", recipientID: "gemeente-hoorn"), Array("payload of after-4".utf8))
        reopened.close()
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)
    }

    func testAFailedKeyWriteLeavesNoRecordBehind() throws {
        let dir = temporaryDirectory(self)
        let options = JournalOptions(segmentSizeLimit: 4096, maxGroupBytes: 4096)
        let journal = try Journal.openForTest(dir, options)
        // The key file grows in steps of 64 KiB: its header and 1,023 slots fill the first.
        for i in 0..<1023 { try journal.append(Sample.signal("k\(i)")) }
        let keysSize = try FileManager.default.attributesOfItem(atPath: dir + "/keys")[.size] as! Int
        let segmentSize = try FileManager.default.attributesOfItem(atPath: dir + "/" + segmentFiles(dir).last!)[.size] as! Int
        XCTAssertEqual(keysSize, 64 << 10)
        XCTAssertLessThan(segmentSize, 5_000)

        let previousSink = Log.shared.sink
        Log.shared.sink = { _ in }
        defer { Log.shared.sink = previousSink }
        // The next key slot needs the file to grow past the limit.
        let (failed, withoutPayload) = withFileSizeLimit(keysSize) {
            (Result { try journal.append(Sample.signal("no-key")) }, Result { try journal.append([Sample.received("no-payload")]) })
        }

        guard case .failure(JournalError.diskFull) = failed else { return XCTFail("expected diskFull, got \(failed)") }
        XCTAssertNoThrow(try withoutPayload.get(), "records without a payload key still fit")
        XCTAssertFalse(journal.deliveryState().contains(signalID: "no-key"))
        try journal.append(Sample.signal("after"))
        journal.close()
        let reopened = try Journal.openForTest(dir, options)
        XCTAssertFalse(reopened.deliveryState().contains(signalID: "no-key"), "nothing of the failed append is on disk")
        XCTAssertEqual(try JournalReader(directory: dir).records(matching: JournalQuery(signalID: "no-payload")).count, 1)
        XCTAssertEqual(try reopened.payload(signalID: "after", recipientID: "gemeente-hoorn"), Array("payload of after".utf8))
        reopened.close()
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)
    }

    /// An asynchronous append whose group commit fails is told `diskFull` in its completion,
    /// leaves nothing behind, and the journal goes on once there is room.
    func testAsynchronousAppendsAreToldTheDiskIsFull() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        try journal.append(Sample.signal("before"))
        let size = try FileManager.default.attributesOfItem(atPath: dir + "/" + segmentFiles(dir).last!)[.size] as! Int

        let previousSink = Log.shared.sink
        Log.shared.sink = { _ in }
        defer { Log.shared.sink = previousSink }
        let outcomes = Outcomes()
        let waited = try withFileSizeLimit(size) {  // not one more byte of segment
            let done = DispatchGroup()
            for i in 0..<10 {
                done.enter()
                try journal.append([Sample.received("full-\(i)")]) { result in
                    outcomes.add(result)
                    done.leave()
                }
            }
            return done.wait(timeout: .now() + 30)
        }

        XCTAssertEqual(waited, .success)
        XCTAssertEqual(outcomes.all.count, 10)
        for outcome in outcomes.all {
            guard case .failure(.diskFull) = outcome else { return XCTFail("expected diskFull, got \(outcome)") }
        }
        XCTAssertFalse((0..<10).contains { journal.deliveryState().contains(signalID: "full-\($0)") })
        let positions = try journal.append(Sample.signal("after"))
        XCTAssertEqual(positions.count, 2)
        journal.close()
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)
    }
}

/// Runs `body` with the process's file size limit (RLIMIT_FSIZE) at `bytes` and SIGXFSZ
/// ignored, so that writes past it fail with EFBIG as on a full disk; restores both after.
private func withFileSizeLimit<T>(_ bytes: Int, _ body: () throws -> T) rethrows -> T {
    let previousHandler = signal(SIGXFSZ, SIG_IGN)
    var saved = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &saved)
    var limited = saved
    limited.rlim_cur = rlim_t(bytes)
    XCTAssertEqual(setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limited), 0)
    defer {
        XCTAssertEqual(setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &saved), 0)
        signal(SIGXFSZ, previousHandler)
    }
    return try body()
}

/// Completion results gathered from the completion thread.
private final class Outcomes: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<[RecordPosition], JournalError>] = []

    func add(_ result: Result<[RecordPosition], JournalError>) {
        lock.lock()
        results.append(result)
        lock.unlock()
    }

    var all: [Result<[RecordPosition], JournalError>] {
        lock.lock()
        defer { lock.unlock() }
        return results
    }
}
