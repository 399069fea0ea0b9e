import Foundation
import XCTest
@testable import WaakvlamJournal

/// Verification must catch every change to a journal and name the first bad record.
final class TamperTests: XCTestCase {
    /// Builds a closed journal of two segments and returns the record offsets per segment.
    private func makeJournal() throws -> (dir: String, offsets: [String: [UInt32]]) {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir, JournalOptions(segmentSizeLimit: 4096, maxGroupBytes: 4096))
        var offsets: [String: [UInt32]] = [:]
        for i in 0..<30 {
            for p in try journal.append(Sample.signal("sig-\(i)", payload: [UInt8](repeating: UInt8(i), count: 40))) {
                offsets[Segment.fileName(p.segment), default: []].append(p.offset)
            }
        }
        journal.close()
        XCTAssertGreaterThanOrEqual(segmentFiles(dir).count, 3)
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)
        return (dir, offsets)
    }

    /// The start of the record holding byte `position`, or 0 inside the segment header.
    private func recordStart(_ position: Int, _ offsets: [UInt32]) -> UInt64 {
        UInt64(offsets.last { Int($0) <= position } ?? 0)
    }

    func testFlippingAnySingleByteIsDetectedAtItsRecord() throws {
        let (dir, offsets) = try makeJournal()
        for name in segmentFiles(dir) {
            let path = dir + "/" + name
            let original = readFile(path)
            // Every byte of the header and the first records (every field of each kind of
            // record the sample has), then a stride through the rest.
            let exhaustive = name == "00000001.seg" ? min(1400, original.count) : 0
            let positions = Array(0..<exhaustive) + Array(stride(from: exhaustive, to: original.count, by: 7))
            for position in positions {
                var bytes = original
                bytes[position] ^= 0x5a
                writeFile(path, bytes)
                let damage = try JournalReader(directory: dir).verify().damage
                XCTAssertNotNil(damage, "flip at \(name):\(position) went unnoticed")
                XCTAssertEqual(damage?.segment, name, "flip at \(position)")
                XCTAssertEqual(damage?.offset, recordStart(position, offsets[name]!), "flip at \(name):\(position): \(String(describing: damage))")
            }
            writeFile(path, original)
        }
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)
    }

    func testDeletingOrReorderingRecordsIsDetected() throws {
        let (dir, offsets) = try makeJournal()
        let name = "00000001.seg"
        let path = dir + "/" + name
        let original = readFile(path)
        let starts = offsets[name]!.map(Int.init)
        let ends = Array(starts.dropFirst()) + [original.count]

        // Delete record 3 (sequence 3).
        var deleted = original
        deleted.removeSubrange(starts[2]..<ends[2])
        writeFile(path, deleted)
        var damage = try XCTUnwrap(try JournalReader(directory: dir).verify().damage)
        XCTAssertEqual(damage.offset, UInt64(starts[2]))
        XCTAssertEqual(damage.sequence, 3)
        XCTAssertTrue(damage.reason.contains("missing"), damage.reason)

        // Swap records 4 and 5.
        var swapped = Array(original[..<starts[3]])
        swapped += original[starts[4]..<ends[4]]
        swapped += original[starts[3]..<ends[3]]
        swapped += original[ends[4]...]
        writeFile(path, swapped)
        damage = try XCTUnwrap(try JournalReader(directory: dir).verify().damage)
        XCTAssertEqual(damage.offset, UInt64(starts[3]))
        XCTAssertEqual(damage.sequence, 4)

        // Change a body byte and repair the record's checksum: the hash chain still breaks,
        // at the next record.
        var forged = original
        forged[starts[1] + Frame.headerSize + 3] ^= 1
        forged.withUnsafeMutableBytes { p in
            let frame = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(p)[starts[1]..<ends[1]])
            putU32(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: frame[4...])), p.baseAddress! + starts[1])
        }
        writeFile(path, forged)
        damage = try XCTUnwrap(try JournalReader(directory: dir).verify().damage)
        XCTAssertEqual(damage.offset, UInt64(starts[2]))
        XCTAssertTrue(damage.reason.contains("hash chain"), damage.reason)
        writeFile(path, original)
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)
    }

    func testTruncatedChainsAreDetected() throws {
        let (dir, offsets) = try makeJournal()
        let segments = segmentFiles(dir)
        let last = dir + "/" + segments.last!
        let original = readFile(last)
        let starts = offsets[segments.last!]!.map(Int.init)

        // Cut inside the last record.
        writeFile(last, Array(original[..<(original.count - 10)]))
        XCTAssertNotNil(try JournalReader(directory: dir).verify().damage)

        // Cut cleanly at a record boundary: the checkpoint knows more was written.
        writeFile(last, Array(original[..<starts[starts.count - 2]]))
        let damage = try XCTUnwrap(try JournalReader(directory: dir).verify().damage)
        XCTAssertTrue(damage.reason.contains("truncated"), damage.reason)
        XCTAssertThrowsError(try Journal.openForTest(dir)) { error in
            guard case JournalError.corrupt(let d) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(d.reason.contains("removed"), d.reason)
        }
        writeFile(last, original)

        // A whole segment removed from the middle.
        let middle = dir + "/" + segments[1]
        let saved = readFile(middle)
        try FileManager.default.removeItem(atPath: middle)
        let missing = try XCTUnwrap(try JournalReader(directory: dir).verify().damage)
        XCTAssertEqual(missing.segment, segments[1])
        XCTAssertTrue(missing.reason.contains("missing"), missing.reason)
        writeFile(middle, saved)

        // The last segment removed entirely.
        try FileManager.default.removeItem(atPath: last)
        XCTAssertNotNil(try JournalReader(directory: dir).verify().damage)
        writeFile(last, original)
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)
    }

    func testRecoveryCutsATornTailButRefusesDamageElsewhere() throws {
        let (dir, offsets) = try makeJournal()
        let segments = segmentFiles(dir)
        let last = dir + "/" + segments.last!
        let original = readFile(last)

        // Half a record after the last durable one: an interrupted write.
        writeFile(last, original + Array(original[Segment.headerSize..<(Segment.headerSize + 40)]))
        XCTAssertNotNil(try JournalReader(directory: dir).verify().damage, "verify is strict about a torn tail")
        var journal = try Journal.openForTest(dir)
        XCTAssertEqual(journal.recovery.tornBytesCut, 40)
        XCTAssertNotNil(journal.recovery.tornReason)
        XCTAssertEqual(journal.deliveryState().signalCount, 30)
        try journal.append(Sample.signal("after-cut"))
        journal.close()
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)

        // An append whose last record never made it: the whole append goes, not a part.
        try FileManager.default.removeItem(atPath: dir + "/" + Checkpoint.fileName)
        let withNew = readFile(last)
        writeFile(last, Array(withNew[..<(withNew.count - 5)]))
        journal = try Journal.openForTest(dir)
        XCTAssertFalse(journal.deliveryState().contains(signalID: "after-cut"), "received without its decision was cut too")
        XCTAssertEqual(journal.recovery.hashedRecords, 61, "without a checkpoint the whole chain is hashed (and the cut record)")
        journal.close()
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)

        // Damage in an earlier segment is not a torn tail: open refuses and names it.
        let first = dir + "/" + segments[0]
        var bytes = readFile(first)
        let victim = Int(offsets[segments[0]]![3]) + 60
        bytes[victim] ^= 0xff
        writeFile(first, bytes)
        XCTAssertThrowsError(try Journal.openForTest(dir)) { error in
            guard case JournalError.corrupt(let damage) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(damage.segment, segments[0])
            XCTAssertEqual(damage.offset, UInt64(offsets[segments[0]]![3]))
            XCTAssertTrue("\(error)".contains("verify"))
        }
    }

    func testACrashRightAfterRotationLeavesAnEmptySegmentThatStays() throws {
        let (dir, _) = try makeJournal()
        let count = segmentFiles(dir).count
        let next = dir + "/" + Segment.fileName(UInt32(count + 1))
        writeFile(next, Segment.header(number: UInt32(count + 1), firstSequence: 61))
        // As after a crash: the last checkpoint is older than the last record.
        try FileManager.default.removeItem(atPath: dir + "/" + Checkpoint.fileName)
        var journal = try Journal.openForTest(dir)
        journal.close()
        XCTAssertNil(try JournalReader(directory: dir).verify().damage, "the checkpoint names the last record, not the empty segment")
        journal = try Journal.openForTest(dir)
        XCTAssertEqual(try journal.append(Sample.signal("next")).first?.segment, UInt32(count + 1))
        journal.close()
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)
    }

    func testAnInterruptedRotationIsUndone() throws {
        let (dir, _) = try makeJournal()
        let next = dir + "/" + Segment.fileName(UInt32(segmentFiles(dir).count + 1))
        writeFile(next, Array(Segment.header(number: 99, firstSequence: 1)[..<10]))
        let journal = try Journal.openForTest(dir)
        XCTAssertFalse(FileManager.default.fileExists(atPath: next))
        XCTAssertEqual(journal.recovery.records, 60)
        journal.close()
        XCTAssertNil(try JournalReader(directory: dir).verify().damage)
    }
}
