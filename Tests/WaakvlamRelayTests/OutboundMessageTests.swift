import Foundation
import XCTest
import WaakvlamCore
import WaakvlamJournal
import WaakvlamSystem
@testable import WaakvlamRelay

/// The recipient-facing message (docs/API.md) is written piece by piece into the request
/// buffer: byte for byte what `JSONText.Writer` wrote before, for random messages.
final class OutboundMessageTests: XCTestCase {
    func testMessagesMatchTheWriterBuiltOnesByteForByte() throws {
        var generator = SystemRandomNumberGenerator()
        func text() -> String {
            let alphabet = Array(#"abcXYZ019 -_:./\"é€😀"#) + ["\n", "\t", "\u{1}", "\u{1f}", "\r"]
            return String((0..<Int.random(in: 0...24, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
        }
        func maybe(_ value: @autoclosure () -> String) -> String? { Bool.random(using: &generator) ? value() : nil }
        func date() -> Date { Date(timeIntervalSince1970: Double.random(in: 0...4_000_000_000, using: &generator)) }
        for round in 0..<400 {
            let decision = Decision(signalID: text(), recipientID: text(), allowed: true, ruleID: maybe(text()),
                                    convenantID: maybe(text()), convenantVersion: maybe(text()), processingActivity: maybe(text()),
                                    configVersion: "v1", retentionUntil: Bool.random(using: &generator) ? date() : nil, at: date())
            let received = Bool.random(using: &generator)
                ? Received(signalID: text(), senderID: text(), senderOIN: text(), signalType: text(), requestedRecipients: [],
                           payloadHash: "", requestHash: "", subjectPseudonyms: [],
                           // Now and then ids that need escaping: the traceparent is written from its parts.
                           traceID: round % 4 == 0 ? text() : String(repeating: "ab", count: 16),
                           spanID: round % 4 == 1 ? text() : String(repeating: "c\(round % 10)", count: 8), configVersion: "v1", at: date())
                : nil
            let sender = Bool.random(using: &generator)
                ? Organisation(id: text(), oin: text(), name: text(), sector: Sector.allCases.randomElement(using: &generator)!)
                : nil
            let payload = Array(#"{"Postcode":"1624KM","n":\#(round)}"#.utf8)
            let message = Outbound.Message(signalID: text(), signalType: text(), senderID: text(), receivedAt: date(),
                                           decision: decision, payload: payload, received: received, sender: sender)
            let expected = writerBuilt(message, received: received)
            XCTAssertEqual(String(decoding: message.body, as: UTF8.self), String(decoding: expected, as: UTF8.self), "round \(round)")
            var appended = Array("prefix".utf8)
            message.write(to: &appended)
            XCTAssertEqual(Array(appended.dropFirst(6)), expected)
            XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(expected)), "round \(round)")
        }
    }

    /// The message as the relay wrote it before, through `JSONText.Writer`.
    private func writerBuilt(_ message: Outbound.Message, received: Received?) -> [UInt8] {
        let decision = message.decision
        let traceparent = received.map { "00-\($0.traceID)-\($0.spanID)-01" }
        var json = JSONText.Writer(capacity: 384 + message.payload.count)
        json.beginObject()
        json.beginObject("convenant")
        json.string("id", decision.convenantID ?? "")
        json.string("version", decision.convenantVersion ?? "")
        json.endObject()
        json.string("id", message.signalID)
        json.fragment("payload", message.payload)
        if let activity = decision.processingActivity { json.string("processingActivity", activity) }
        json.timestamp("receivedAt", JournalTime.rounded(message.receivedAt))
        if let retention = decision.retentionUntil { json.timestamp("retainUntil", JournalTime.rounded(retention)) }
        json.string("rule", decision.ruleID ?? "")
        json.beginObject("sender")
        json.string("id", message.senderID)
        if let organisation = message.sender {
            json.string("name", organisation.name)
            json.string("oin", organisation.oin)
            json.string("sector", organisation.sector.rawValue)
        }
        json.endObject()
        if let traceparent { json.string("traceparent", traceparent) }
        json.string("type", message.signalType)
        json.endObject()
        return json.bytes
    }
}
