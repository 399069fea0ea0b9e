import Foundation
import XCTest
@testable import WaakvlamCore
@testable import WaakvlamRelay
import WaakvlamCrypto
import WaakvlamTransport

/// The relay's shortcuts on the submission path give what the general path gives.
final class HotPathTests: XCTestCase {
    private static let configFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Config").path

    func testSubmissionsPathIsRoutedLikeEveryOtherPath() {
        XCTAssertEqual(PeerRoute(path: "/v1/signals"), .signals)
        XCTAssertEqual(PeerRoute(path: "/v1/signals/abc"), .signal("abc"))
        XCTAssertEqual(PeerRoute(path: "/v1/signals/abc/feedback"), .feedback("abc"))
        XCTAssertEqual(PeerRoute(path: "/v1/inbox/abc/ack"), .acknowledge("abc"))
        for path in ["/v1/signals/", "/v1//signals", "v1/signals", "/v1/signals/a/b", "/v2/signals", "/v1/signal"] {
            XCTAssertNil(PeerRoute(path: Substring(path)), path)
        }
        let request = HTTPRequest(method: "GET", target: "/v1/inbox?limit=5")
        XCTAssertEqual(request.path, "/v1/inbox")
        XCTAssertEqual(request.query, "limit=5")
        XCTAssertEqual(HTTPRequest(method: "GET", target: "/v1/inbox").path, "/v1/inbox")
        XCTAssertNil(HTTPRequest(method: "GET", target: "/v1/inbox").query)
    }

    /// The request hash is journaled (a resubmission is recognised by it): it stays SHA-256
    /// over the type, each recipient and the canonical payload, each on its own line.
    func testRequestHashIsTheHashOfTheCanonicalRequest() {
        let names = ["", "1hoorn", "gemeente-hoorn", "politie-nhn", "é", String(repeating: "x", count: 200)]
        for round in 0..<300 {
            var recipients = (0..<Int.random(in: 0...4)).map { _ in RecipientRequest.organisation(names.randomElement()!) }
            if round % 3 == 0 { recipients.append(.gemeenteOfAddress) }
            let payload: [String: PayloadValue] = Dictionary(uniqueKeysWithValues: (0..<Int.random(in: 0...30)).map {
                ("veld\($0)", PayloadValue.string(String(repeating: "w", count: Int.random(in: 0...300))))
            })
            let submission = SignalSubmission(id: "h-\(round)", type: round % 2 == 0 ? "zorgsignaal" : "", recipients: recipients, payload: payload)
            let canonical = Payload.canonicalBytes(payload)
            var bytes = Array(submission.type.utf8) + [0x0A]
            for recipient in recipients { bytes += Array(recipient.description.utf8) + [0x0A] }
            XCTAssertEqual(SignalService.requestHash(submission, canonicalPayload: canonical), SHA256.hexDigest(bytes + canonical))
        }
    }

    /// A decision whose rule keeps every field stores the submitted payload's canonical bytes;
    /// one that drops fields stores its own. Both as `Payload.canonicalBytes` of the kept fields.
    func testDecisionPayloadIsTheKeptFieldsCanonicalJSON() throws {
        let result = ConfigLoading.load(directory: Self.configFolder)
        let configuration = try XCTUnwrap(result.configuration, "\(result.errors)")
        let sender = try XCTUnwrap(configuration.organisation(id: "intermaris"))
        let payload: [String: PayloadValue] = [
            "Postcode": .string("1624KM"), "Huisnummer": .integer(12), "Huisnummertoevoeging": .string("a"),
            "Voorletters": .string("J."), "Achternaam": .string("Voorbeeld"), "Geboortedatum": .string("1948-06-30"),
            "waarneming": .string("Post stapelt zich op."), "urgentie": .string("hoog"), "gezondheidsobservatie": .string("Verward."),
        ]
        let submission = SignalSubmission(id: "hot-1", type: "zorgsignaal", recipients: [.organisation("1hoorn"), .organisation("gemeente-hoorn")],
                                          payload: payload)
        guard case .decided(let decisions) = PolicyEngine.decide(submission, sender: sender, configuration: configuration, at: Date()) else {
            return XCTFail("not decided")
        }
        let allowed = decisions.compactMap(\.allowed)
        XCTAssertEqual(allowed.map(\.droppedFields.isEmpty), [true, false], "1hoorn gets every field, the gemeente no health data")
        let canonical = Payload.canonicalBytes(payload)
        for decision in decisions {
            let delivery = try XCTUnwrap(decision.allowed)
            let record = SignalService.record(for: decision, signalID: "hot-1", configVersion: "1", canonicalPayload: canonical, at: Date())
            XCTAssertEqual(record.payload, Payload.canonicalBytes(delivery.payload))
            XCTAssertEqual(record.payload, [UInt8](Payload.canonicalJSON(delivery.payload)))
        }
    }
}
