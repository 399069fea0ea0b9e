import Foundation
import XCTest
import WaakvlamCrypto
@testable import WaakvlamJournal

/// Pins record bodies and key slots byte for byte to the layout in docs/JOURNAL.md, as the
/// journal writes them on append (records sealed without being copied, key slots written from
/// one buffer), and the copy-on-write behaviour of the records that share their fields.
final class EncodingTests: XCTestCase {
    /// The documented encodings, written out by hand.
    private func str(_ s: String) -> [UInt8] { [UInt8(s.utf8.count)] + Array(s.utf8) }
    private func strs(_ list: [String]) -> [UInt8] { [UInt8(list.count)] + list.flatMap(str) }
    private func micros(_ date: Date) -> [UInt8] {
        withUnsafeBytes(of: JournalTime.microseconds(date).littleEndian, Array.init)
    }

    private func frames(_ segment: [UInt8]) -> [(kind: UInt8, sequence: UInt64, body: [UInt8])] {
        var out: [(UInt8, UInt64, [UInt8])] = []
        var offset = Segment.headerSize
        while offset < segment.count {
            let length = Int(segment[(offset + 4)..<(offset + 8)].le32)
            out.append((segment[offset + 16], segment[(offset + 8)..<(offset + 16)].le64,
                        Array(segment[(offset + 52)..<(offset + 52 + length)])))
            offset += 52 + length
        }
        return out
    }

    func testAppendedBodiesMatchTheDocumentedLayoutByteForByte() throws {
        let dir = temporaryDirectory(self)
        let journal = try Journal.openForTest(dir)
        // A bridged string takes the encoder's other path; "é" is two bytes of UTF-8.
        let bridged = NSString(string: "intermaris-é-bridged") as String
        let received = Received(signalID: "sig-1", senderID: bridged, senderOIN: "0001", signalType: "overlast",
                                requestedRecipients: ["gemeente-hoorn", "zorg"], payloadHash: "ph", requestHash: "rh",
                                subjectPseudonyms: ["p1"], traceID: "t", spanID: "s", configVersion: "7", at: time(3))
        let decision = Decision(signalID: "sig-1", recipientID: "gemeente-hoorn", allowed: true, ruleID: "rule-1",
                                convenantID: "c", convenantVersion: "3", configVersion: "7", fieldsDelivered: ["adres"],
                                fieldsDropped: ["bsn", "naam"], retentionUntil: time(60), deliveryMode: .push,
                                payload: Array(#"{"adres":"Dorpsstraat 1"}"#.utf8), at: time(4))
        let denied = Decision(signalID: "sig-1", recipientID: "zorg", allowed: false, reasonCode: "no_rule",
                              reasonMessage: "none", configVersion: "7", at: time(4))
        try journal.append([.received(received), .decision(decision), .decision(denied)])
        let stored = try XCTUnwrap(journal.signal("sig-1"))
        let sealed = try XCTUnwrap(stored.decisions[0].decision.sealed)
        journal.close()

        let written = frames(readFile(dir + "/00000001.seg"))
        XCTAssertEqual(written.map(\.kind), [1, 2, 2])
        XCTAssertEqual(written[0].body,
                       str("sig-1") + str(bridged) + str("0001") + str("overlast") + strs(["gemeente-hoorn", "zorg"])
                       + str("ph") + str("rh") + strs(["p1"]) + str("t") + str("s") + str("7") + micros(time(3)))
        XCTAssertEqual(sealed.keySlot, 0)
        XCTAssertEqual(sealed.ciphertext.count, AESGCM.nonceCount + decision.payload!.count + AESGCM.tagCount)
        XCTAssertEqual(written[1].body,
                       str("sig-1") + str("gemeente-hoorn") + [1] + [0, 0] + [1] + str("rule-1") + [1] + str("c")
                       + [1] + str("3") + [0] + str("7") + strs(["adres"]) + strs(["bsn", "naam"])
                       + [1] + micros(time(60)) + [1] + str("push")
                       + [1, 0] + [UInt8(sealed.ciphertext.count)] + sealed.ciphertext + micros(time(4)))
        XCTAssertEqual(written[2].body,
                       str("sig-1") + str("zorg") + [0] + [1] + str("no_rule") + [1] + str("none") + [0, 0, 0, 0]
                       + str("7") + [0] + [0] + [0] + [0] + [0] + micros(time(4)))

        // The key slot: key, the decision's sequence, the slot number, zeros, CRC of 0 ..< 60.
        let slot = Array(readFile(dir + "/keys")[64..<128])
        XCTAssertEqual(slot[32..<40].le64, 2, "sequence of the decision record")
        XCTAssertEqual(slot[40..<44].le32, 0)
        XCTAssertEqual(Array(slot[44..<60]), [UInt8](repeating: 0, count: 16))
        XCTAssertEqual(slot[60..<64].le32, CRC32C.checksum(Array(slot[0..<60])))
        XCTAssertEqual(try AESGCM.open(sealed.ciphertext, key: Array(slot[0..<32]),
                                       aad: Array("sig-1\u{0}gemeente-hoorn".utf8)), decision.payload)
    }

    /// Several payloads sealed by one append take consecutive slots; the delivery index knows
    /// each one's slot at once (from the append) and again after a reopen (from the records).
    func testPayloadsSealedInOneAppendKeepTheirSlotsThroughAReopen() throws {
        let dir = temporaryDirectory(self)
        var journal = try Journal.openForTest(dir)
        try journal.append(Sample.signal("a"))
        let records = [Sample.received("b", to: ["x", "y", "z"]),
                       Sample.decision("b", to: "x", payload: Array("for x".utf8)),
                       Sample.decision("b", to: "y", allowed: false),
                       Sample.decision("b", to: "z", payload: Array("for z".utf8))]
        try journal.append(records)
        func check(_ journal: Journal) throws {
            XCTAssertEqual(try journal.payload(signalID: "a", recipientID: "gemeente-hoorn"), Array("payload of a".utf8))
            XCTAssertEqual(try journal.payload(signalID: "b", recipientID: "x"), Array("for x".utf8))
            XCTAssertNil(try journal.payload(signalID: "b", recipientID: "y"))
            XCTAssertEqual(try journal.payload(signalID: "b", recipientID: "z"), Array("for z".utf8))
            let slots = try XCTUnwrap(journal.signal("b")).decisions.map { $0.decision.sealed?.keySlot }
            XCTAssertEqual(slots, [1, nil, 2])
            XCTAssertEqual(journal.deliveryState().delivery(signalID: "b", recipientID: "z")?.hasPayload, true)
        }
        try check(journal)
        try journal.purge(signalID: "b", recipientID: "x")
        XCTAssertNil(try journal.payload(signalID: "b", recipientID: "x"))
        journal.close()
        journal = try Journal.openForTest(dir)
        defer { journal.close() }
        XCTAssertNil(try journal.payload(signalID: "b", recipientID: "x"))
        XCTAssertEqual(try journal.payload(signalID: "b", recipientID: "z"), Array("for z".utf8))
        XCTAssertEqual(journal.deliveryState().delivery(signalID: "b", recipientID: "x")?.hasPayload, false)
    }

    /// A payload sealed straight into the body (as the journal appends) gives the bytes that
    /// sealing it into an array of its own and writing that gives.
    func testPayloadSealedIntoTheBodyEqualsTheSealedArrayWritten() throws {
        let key = SecureRandom.bytes(AESGCM.keyCount), nonce = SecureRandom.bytes(AESGCM.nonceCount)
        for count in [0, 1, 15, 16, 17, 127, 128, 300, 5000] {
            guard case .decision(var d) = Sample.decision("s-\(count)", payload: SecureRandom.bytes(count)) else { return XCTFail("samples changed") }
            var direct = ByteWriter()
            try key.withUnsafeBytes { key in
                try nonce.withUnsafeBytes { nonce in
                    try JournalRecord.decision(d).encodeBody(into: &direct, sealing: PayloadSealing(slot: 300, key: key, nonce: nonce))
                }
            }
            let ciphertext = try AESGCM.seal(d.payload!, key: key, nonce: nonce, aad: Array("s-\(count)\u{0}gemeente-hoorn".utf8))
            d.payload = nil
            d.sealed = SealedPayload(keySlot: 300, ciphertext: ciphertext)
            var viaArray = ByteWriter()
            try JournalRecord.decision(d).encodeBody(into: &viaArray)
            XCTAssertEqual(direct.bytes, viaArray.bytes, "payload of \(count) bytes")
        }
    }

    func testRecordCopiesAreIndependent() {
        guard case .received(let original) = Sample.received("s"), case .decision(let decision) = Sample.decision("s") else {
            return XCTFail("samples changed")
        }
        var copy = original
        XCTAssertEqual(copy, original)
        copy.subjectPseudonyms.append("p")
        copy.signalID = "t"
        XCTAssertEqual(original.signalID, "s")
        XCTAssertEqual(original.subjectPseudonyms, [])
        XCTAssertNotEqual(copy, original)
        copy.signalID = "s"
        copy.subjectPseudonyms = []
        XCTAssertEqual(copy, original, "equal by value, not by identity")

        var changed = decision
        changed.payload = [1]
        changed.sealed = SealedPayload(keySlot: 9, ciphertext: [2])
        XCTAssertNil(decision.payload)
        XCTAssertNil(decision.sealed)
        XCTAssertEqual(changed.sealed?.keySlot, 9)
        XCTAssertNotEqual(changed, decision)
    }
}
