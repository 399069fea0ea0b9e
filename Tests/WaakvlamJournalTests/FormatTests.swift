import Foundation
import XCTest
import WaakvlamCrypto
@testable import WaakvlamJournal

/// Pins the on-disk layout described in docs/JOURNAL.md.
final class FormatTests: XCTestCase {
    func testCRC32CCheckValue() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(Array("123456789".utf8).withUnsafeBytes { CRC32C.softwareChecksum($0) }, 0xE306_9283)
    }

    /// The CPU's instruction and the table agree for every length up to 300 at every alignment.
    func testCRC32CInstructionAndTableAgree() throws {
        try XCTSkipUnless(CRC32C.usesHardware, "this CPU has no crc32 instruction; the table is used alone")
        // A fixed, irregular pattern (reproducible): an LCG's high bytes.
        var state: UInt32 = 12345
        let bytes = (0..<320).map { _ -> UInt8 in
            state = state &* 1_103_515_245 &+ 12345
            return UInt8(truncatingIfNeeded: state >> 23)
        }
        bytes.withUnsafeBytes { all in
            for start in 0..<8 {
                for length in 0...300 {
                    let slice = UnsafeRawBufferPointer(rebasing: all[start..<start + length])
                    XCTAssertEqual(CRC32C.checksum(slice), CRC32C.softwareChecksum(slice), "offset \(start), length \(length)")
                }
            }
        }
    }

    func testSegmentAndFrameLayoutMatchTheDocumentation() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        try journal.append([.expired(Expired(signalID: "s", recipientID: "r", at: Date(timeIntervalSince1970: 1)))])
        try journal.append([.payloadPurged(PayloadPurged(signalID: "s", recipientID: "r", at: Date(timeIntervalSince1970: 2)))])
        journal.close()
        let bytes = readFile(dir + "/00000001.seg")
        XCTAssertEqual(Array(bytes[0..<8]), Array("WVJSEG1\n".utf8))
        XCTAssertEqual(bytes[8..<12].le32, 1, "segment number")
        XCTAssertEqual(bytes[12..<16].le32, 1, "format version")
        XCTAssertEqual(bytes[16..<24].le64, 1, "first sequence")
        XCTAssertEqual(bytes[28..<32].le32, CRC32C.checksum(Array(bytes[0..<28])))

        // expired: "s", "r", time 1 s = 1,000,000 us.
        let body: [UInt8] = [1, 0x73, 1, 0x72] + withUnsafeBytes(of: Int64(1_000_000).littleEndian, Array.init)
        let first = Array(bytes[32..<(32 + 52 + body.count)])
        XCTAssertEqual(first[4..<8].le32, UInt32(body.count))
        XCTAssertEqual(first[8..<16].le64, 1, "sequence")
        XCTAssertEqual(first[16], 5, "kind expired")
        XCTAssertEqual(first[17], 1, "end of append")
        XCTAssertEqual(Array(first[18..<52]), [UInt8](repeating: 0, count: 34), "reserved and zero previous hash")
        XCTAssertEqual(Array(first[52...]), body)
        XCTAssertEqual(first[0..<4].le32, CRC32C.checksum(Array(first[4...])))

        let second = Array(bytes[(32 + first.count)...])
        XCTAssertEqual(second[16], 7, "kind payloadPurged")
        XCTAssertEqual(Array(second[20..<52]), SHA256.hash(first), "previous hash = SHA-256 of the whole previous frame")

        let checkpoint = readFile(dir + "/checkpoint")
        XCTAssertEqual(checkpoint.count, 64)
        XCTAssertEqual(Array(checkpoint[0..<8]), Array("WVJCKPT1".utf8))
        XCTAssertEqual(checkpoint[12..<16].le32, UInt32(bytes.count), "end offset of the last record")
        XCTAssertEqual(checkpoint[16..<24].le64, 2)
        XCTAssertEqual(Array(checkpoint[24..<56]), SHA256.hash(second))
        XCTAssertEqual(Array(readFile(dir + "/keys")[0..<8]), Array("WVJKEYS1".utf8))
    }

    func testVarintsAndOptionalsRoundTrip() throws {
        var w = ByteWriter()
        w.varint(300)
        w.optional(nil as String?) { $0.string($1) }
        w.optional("é") { $0.string($1) }
        XCTAssertEqual(w.bytes, [0xAC, 0x02, 0, 1, 2, 0xC3, 0xA9])
        try w.bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            XCTAssertEqual(try r.varint(), 300)
            XCTAssertNil(try r.optional { try $0.string() })
            XCTAssertEqual(try r.optional { try $0.string() }, "é")
            XCTAssertTrue(r.isAtEnd)
        }
        // A damaged body is an error, never a crash.
        func readAll(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { raw in
                var r = ByteReader(raw)
                _ = try r.varint()
                _ = try r.optional { try $0.string() }
                _ = try r.optional { try $0.string() }
            }
        }
        for cut in 0..<w.bytes.count {
            XCTAssertThrowsError(try readAll(Array(w.bytes[..<cut])), "cut at \(cut)")
        }
    }
}

final class IndexDecodingTests: XCTestCase {
    /// Recovery decodes only what the delivery index needs: those fields must equal a full
    /// decoding's, and a damaged body must be refused just the same.
    func testIndexDetailKeepsWhatTheIndexUsesAndChecksTheRest() throws {
        var sealedAllowed = Sample.decision("s-1", retentionUntil: time(99))
        if case .decision(var d) = sealedAllowed {
            d.payload = nil
            d.sealed = SealedPayload(keySlot: 41, ciphertext: Array(repeating: 7, count: 300))
            sealedAllowed = .decision(d)
        }
        let records = [Sample.received("s-1", subjects: ["p1", "p2"]), sealedAllowed,
                       Sample.decision("s-1", to: "politie", allowed: false, mode: .inbox)]
        for record in records {
            var writer = ByteWriter()
            try record.encodeBody(into: &writer)
            let body = writer.bytes
            let full = try XCTUnwrap(body.withUnsafeBytes { JournalRecord.decode(kind: record.kind.rawValue, body: $0) })
            let lean = try XCTUnwrap(body.withUnsafeBytes { JournalRecord.decode(kind: record.kind.rawValue, body: $0, detail: .index) })
            XCTAssertEqual(full, record)
            switch (full, lean) {
            case (.received(let f), .received(let l)):
                XCTAssertEqual([l.signalID, l.senderID, l.signalType], [f.signalID, f.senderID, f.signalType])
                XCTAssertEqual(l.at, f.at)
                XCTAssertEqual(l.subjectPseudonyms, [], "left out")
            case (.decision(let f), .decision(let l)):
                XCTAssertEqual([l.signalID, l.recipientID], [f.signalID, f.recipientID])
                XCTAssertEqual(l.allowed, f.allowed)
                XCTAssertEqual(l.reasonCode, f.reasonCode)
                XCTAssertEqual(l.deliveryMode, f.deliveryMode)
                XCTAssertEqual(l.retentionUntil, f.retentionUntil)
                XCTAssertEqual(l.sealed?.keySlot, f.sealed?.keySlot)
                XCTAssertEqual(l.at, f.at)
            default:
                XCTFail("kinds differ: \(full) / \(lean)")
            }
            // A truncated or lengthened body decodes in neither mode.
            for damaged in [Array(body.dropLast()), body + [0]] {
                XCTAssertNil(damaged.withUnsafeBytes { JournalRecord.decode(kind: record.kind.rawValue, body: $0, detail: .index) })
                XCTAssertNil(damaged.withUnsafeBytes { JournalRecord.decode(kind: record.kind.rawValue, body: $0) })
            }
        }
    }
}

extension ArraySlice where Element == UInt8 {
    var le32: UInt32 { withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) } }
    var le64: UInt64 { withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) } }
}
