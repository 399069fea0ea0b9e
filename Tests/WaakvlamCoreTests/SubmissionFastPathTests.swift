import Foundation
import XCTest
@testable import WaakvlamCore

/// The typed reader of submission bodies must give exactly what the general reader gives,
/// or step aside (nil) and let the general reader answer.
final class SubmissionFastPathTests: XCTestCase {
    private static let zorgsignaal = #"{"id":"bench-1","type":"zorgsignaal","to":["1hoorn"],"payload":{"Postcode":"1624KM","Huisnummer":12,"#
        + #""Huisnummertoevoeging":"a","Voorletters":"J.","Achternaam":"Voorbeeld","Geboortedatum":"1948-06-30","#
        + #""waarneming":"Post stapelt zich op, buren hebben de bewoner twee weken niet gezien.","urgentie":"hoog","#
        + #""gezondheidsobservatie":"Bewoner leek verward bij het laatste huisbezoek."}}"#

    /// The fast result, when there is one, equals the general one; `parse(bytes:)` always does.
    private func assertAgrees(_ body: String, fast expectFast: Bool? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let bytes = Array(body.utf8)
        var general = 0, viaBytes = 0
        let expected = SignalSubmission.parse(Data(bytes), makeID: { general += 1; return "made-\(general)" })
        let result = SignalSubmission.parse(bytes: bytes, makeID: { viaBytes += 1; return "made-\(viaBytes)" })
        XCTAssertEqual(result, expected, body, file: file, line: line)
        var reader = SubmissionFastReader(bytes: bytes)
        let fast = reader.submission(makeID: { "made-1" })
        if let expectFast { XCTAssertEqual(fast != nil, expectFast, "fast path taken: \(body)", file: file, line: line) }
        if let fast { XCTAssertEqual(Result.success(fast), expected, body, file: file, line: line) }
    }

    func testUsualBodiesTakeTheFastPath() {
        assertAgrees(Self.zorgsignaal, fast: true)
        assertAgrees("""
        {
          "id": "intermaris-2026-000123", "type": "betalingsachterstand", "to": ["gemeente-hoorn", "politie-nhn"],
          "routeByAddress": true, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
          "payload": {"bedrag": 1234.56, "dagen": 61, "negatief": -3, "nul": 0, "groot": 1e3, "akkoord": true, "bezwaar": false,
                      "naam": "Çelik – ’s-Gravenhage"}
        }
        """, fast: true)
        assertAgrees(#"{"type":"zorgsignaal","routeByAddress":false,"payload":{}}"#, fast: true)
        assertAgrees(#"{"payload":{"a":"b"},"to":[],"type":"t","id":"x"}"#, fast: true)
        // Numbers as the general reader converts them; invalid ids are judged by parse(bytes:).
        assertAgrees(#"{"id":"a","type":"t","to":["x"],"payload":{"n":01,"m":1.,"e":2E-2,"z":-0}}"#, fast: true)
        assertAgrees(#"{"id":"a","type":"t","to":["x"],"payload":{"n":99999999999999999999}}"#, fast: true)
        assertAgrees(#"{"id":"a/b","type":"t","to":["x"],"payload":{}}"#)
        assertAgrees(#"{"id":"","type":"t","to":["x"],"payload":{}}"#)
    }

    func testEverythingElseGoesToTheGeneralReader() {
        let bodies = [
            // JSON5 and escapes
            #"{"id":"a","type":"t","to":["x"],"payload":{"a":"b\"c"}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{"a\u0041":"b"}}"#,
            #"{id:"a","type":"t","to":["x"],"payload":{}}"#,
            #"{'id':'a','type':'t','to':['x'],'payload':{}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{},}"#,
            #"{"id":"a","type":"t","to":["x",],"payload":{}}"#,
            "// comment\n{\"id\":\"a\",\"type\":\"t\",\"to\":[\"x\"],\"payload\":{}}",
            "\u{FEFF}{\"id\":\"a\",\"type\":\"t\",\"to\":[\"x\"],\"payload\":{}}",
            #"{"id":"a","type":"t","to":["x"],"payload":{"n":+1,"m":.5,"h":0x1F}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{"n":1e999}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{"n":-Infinity}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{"n":NaN}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{"n":1.2.3}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{"n":12abc}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{"n":-}}"#,
            // nulls, duplicates, nesting, unknown keys, wrong types, missing fields, bad ids
            #"{"id":"a","type":"t","to":["x"],"payload":{"a":null}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{"a":null,"a":"b"}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{"a":1,"a":2}}"#,
            #"{"id":"a","id":"b","type":"t","to":["x"],"payload":{}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{"a":[1]}}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":{"a":{"b":1}}}"#,
            #"{"id":"a","type":"t","to":["x"],"extra":1,"payload":{}}"#,
            #"{"id":5,"type":"t","to":["x"],"payload":{}}"#,
            #"{"id":"a","type":true,"to":["x"],"payload":{}}"#,
            #"{"id":"a","type":"t","to":"x","payload":{}}"#,
            #"{"id":"a","type":"t","to":[1],"payload":{}}"#,
            #"{"id":"a","type":"t","routeByAddress":"yes","payload":{}}"#,
            #"{"id":"a","type":"t","routeByAddress":truex,"payload":{}}"#,
            #"{"id":"a","type":"t","traceparent":1,"payload":{}}"#,
            #"{"id":"a","to":["x"],"payload":{}}"#,
            #"{"id":"a","type":"t","to":["x"]}"#,
            #"{"id":"a","type":"t","to":["x"],"payload":"text"}"#,
            // not JSON, not an object, truncated, trailing garbage, control characters
            "", "   ", "[]", "\"text\"", "null", "{", #"{"id":"a""#, #"{"id":"a","type":"t","payload":{}} x"#,
            #"{"id":"a","type":"t","payload":{}}}"#, "{\"id\":\"a\tb\",\"type\":\"t\",\"payload\":{}}",
        ]
        for body in bodies { assertAgrees(body, fast: false) }
        // Text that is not UTF-8.
        let invalid = Array(#"{"id":"a","type":"t","to":["x"],"payload":{"a":""#.utf8) + [0xC3, 0x28] + Array(#""}}"#.utf8)
        XCTAssertNil({ var reader = SubmissionFastReader(bytes: invalid); return reader.submission(makeID: nil) }())
        XCTAssertEqual(SignalSubmission.parse(bytes: invalid), SignalSubmission.parse(Data(invalid)))
    }

    /// Every prefix and every one-byte change of a usual body: the fast path either agrees
    /// with the general reader or leaves the body to it.
    func testMutationsAgree() {
        let body = Array(Self.zorgsignaal.utf8)
        for end in 0..<body.count { assertAgrees(String(decoding: body[..<end], as: UTF8.self)) }
        let replacements: [UInt8] = Array(#" "\{}[],:0-.e+nt/"#.utf8) + [0x0A, 0x00, 0x7F]
        for position in stride(from: 0, to: body.count, by: 3) {
            for byte in replacements where byte != body[position] {
                var mutated = body
                mutated[position] = byte
                assertAgrees(String(decoding: mutated, as: UTF8.self))
            }
        }
    }

    func testCanonicalBytesEqualCanonicalJSON() {
        let payloads: [[String: PayloadValue]] = [
            [:], ["b": .integer(-12), "a": .number(1234.5), "é": .string("x\"y\u{1}"), "Z": .boolean(false), "aa": .number(3)],
        ]
        for payload in payloads {
            XCTAssertEqual(Payload.canonicalBytes(payload), [UInt8](Payload.canonicalJSON(payload)))
        }
        XCTAssertEqual(String(decoding: Payload.canonicalBytes(payloads[1]), as: UTF8.self),
                       #"{"Z":false,"a":1234.5,"aa":3.0,"b":-12,"é":"x\"y\u0001"}"#)
    }
}
