import Foundation
import XCTest
@testable import WaakvlamCore
@testable import WaakvlamRelay
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
