import Foundation
import XCTest
@testable import WaakvlamCore

final class JSONAndPayloadTests: XCTestCase {
    private func parse(_ text: String) throws -> JSONNode {
        try JSONParser.parse(Data(text.utf8))
    }

    private func syntaxError(_ text: String) -> JSONSyntaxError? {
        do {
            _ = try JSONParser.parse(Data(text.utf8))
            return nil
        } catch {
            return error
        }
    }

    func testJSON5Features() throws {
        let node = try parse("""
        // comment
        {
          unquoted: 'single "quoted"', /* block
          comment */ "quoted": [1, -2, +3, 0x1F, .5, 1.5e2, true, false, null,],
          $odd_key1: "\\u00e9\\uD83D\\uDE00\\x41\\
        b",
        }
        """)
        guard case .object(let members) = node.value else { return XCTFail() }
        XCTAssertEqual(members.map(\.key), ["unquoted", "quoted", "$odd_key1"])
        guard case .string(let single) = members[0].value.value else { return XCTFail() }
        XCTAssertEqual(single, "single \"quoted\"")
        guard case .array(let numbers) = members[1].value.value else { return XCTFail() }
        XCTAssertEqual(numbers.count, 9)
        guard case .integer(1) = numbers[0].value, case .integer(-2) = numbers[1].value, case .integer(3) = numbers[2].value,
              case .integer(31) = numbers[3].value, case .number(0.5) = numbers[4].value, case .number(150) = numbers[5].value,
              case .bool(true) = numbers[6].value, case .null = numbers[8].value else { return XCTFail("\(numbers.map(\.value))") }
        guard case .string(let escaped) = members[2].value.value else { return XCTFail() }
        XCTAssertEqual(escaped, "é😀Ab")
        XCTAssertEqual(members[1].value.line, 4)
        XCTAssertEqual(numbers[0].line, 4)
    }

    func testSyntaxErrorsNameLineAndColumn() {
        XCTAssertEqual(syntaxError("{\n  a: 1\n  b: 2\n}"), JSONSyntaxError(line: 3, column: 3, reason: "expected ',' or '}' after the value of 'a', found 'b'"))
        XCTAssertEqual(syntaxError("")?.reason, "the file is empty; expected a JSON value")
        XCTAssertEqual(syntaxError("[1, 2")?.reason, "unexpected end of file inside a list; expected ']'")
        XCTAssertEqual(syntaxError("{ a: \"open\n}")?.line, 1)
        XCTAssertEqual(syntaxError("/* never closed\n{}")?.reason, "a /* comment is never closed with */")
        XCTAssertEqual(syntaxError("{ a: yes }")?.reason, "unexpected word 'yes'; text values need quotes")
        XCTAssertEqual(syntaxError("[NaN]")?.reason, "'NaN' is not allowed; use a finite number")
        XCTAssertEqual(syntaxError("{} {}")?.reason, "unexpected '{' after the end of the JSON value")
        XCTAssertEqual(syntaxError("\"\\q\"")?.reason, "unknown escape '\\q' in a text value")
        XCTAssertEqual(syntaxError("\"\\uD800\"")?.reason, "a \\u escape holds half of a surrogate pair")
        XCTAssertEqual(syntaxError(String(repeating: "[", count: 65) + String(repeating: "]", count: 65))?.reason, "nested more than 64 levels deep")
        XCTAssertNil(syntaxError(String(repeating: "[", count: 64) + String(repeating: "]", count: 64)))
        XCTAssertEqual((try? JSONParser.parse(Data([0x22, 0xFF, 0x22]))).map { _ in "parsed" }, nil)
        XCTAssertEqual(syntaxError("\"\u{1}\"")?.reason, "control character inside a text value; escape it")
    }

    func testPayloadParsing() throws {
        let payload = try Payload.parse(Data("{ a: 'x', b: 2, c: 2.5, d: true, e: null }".utf8)).get()
        XCTAssertEqual(payload, ["a": .string("x"), "b": .integer(2), "c": .number(2.5), "d": .boolean(true)])
        guard case .failure(let nested) = Payload.parse(Data("{ a: { b: 1 }, c: [1], d: 1, d: 2 }".utf8)) else { return XCTFail() }
        XCTAssertEqual(nested.issues.map(\.code), [.nestedValue, .nestedValue, .duplicateField])
        XCTAssertEqual(nested.issues.map(\.field), ["payload.a", "payload.c", "payload.d"])
        guard case .failure(let list) = Payload.parse(Data("[1]".utf8)) else { return XCTFail() }
        XCTAssertEqual(list.issues.map(\.code), [.notAnObject])
        guard case .failure(let broken) = Payload.parse(Data("{ a: ".utf8)) else { return XCTFail() }
        XCTAssertEqual(broken.issues.first?.code, .notJSON)
    }

    func testCanonicalJSONSortsKeysAndEscapes() throws {
        let payload: [String: PayloadValue] = ["b": .string("line\n\"quote\" é\u{1}"), "a": .integer(-3), "c": .number(1482.5), "d": .boolean(false), "e": .number(2)]
        let text = String(decoding: Payload.canonicalJSON(payload), as: UTF8.self)
        XCTAssertEqual(text, "{\"a\":-3,\"b\":\"line\\n\\\"quote\\\" é\\u0001\",\"c\":1482.5,\"d\":false,\"e\":2.0}")
        XCTAssertEqual(try Payload.parse(Payload.canonicalJSON(payload)).get(), payload)
        // Keys in UTF-8 byte order (upper case before lower case before accented), every escape.
        let other: [String: PayloadValue] = ["é": .string("\u{1F}"), "a": .integer(1), "Z": .string("t\tr\rb\\")]
        XCTAssertEqual(String(decoding: Payload.canonicalJSON(other), as: UTF8.self),
                       "{\"Z\":\"t\\tr\\rb\\\\\",\"a\":1,\"é\":\"\\u001f\"}")
    }

    func testSubmissionEnvelope() throws {
        let body = """
        {"id": "intermaris-2026-000123", "type": "betalingsachterstand", "to": ["gemeente-hoorn"], "routeByAddress": true,
         "payload": {"bedrag": 12.5, "Postcode": "1624KM"}}
        """
        let submission = try SignalSubmission.parse(Data(body.utf8)).get()
        XCTAssertEqual(submission, SignalSubmission(id: "intermaris-2026-000123", type: "betalingsachterstand",
                                                    recipients: [.organisation("gemeente-hoorn"), .gemeenteOfAddress],
                                                    payload: ["bedrag": .number(12.5), "Postcode": .string("1624KM")]))
        guard case .failure(let invalid) = SignalSubmission.parse(Data("{\"id\": 5, \"to\": \"x\", \"extra\": 1, \"payload\": {\"a\": [1]}}".utf8)) else { return XCTFail() }
        XCTAssertEqual(Set(invalid.issues.map { "\($0.field):\($0.code.rawValue)" }),
                       ["extra:unknown_key", "id:wrong_type", "type:missing_field", "to:wrong_type", "payload.a:nested_value"])
        XCTAssertTrue(SignalSubmission.isValidID("a.b_c:d-9"))
        XCTAssertFalse(SignalSubmission.isValidID(""))
        XCTAssertFalse(SignalSubmission.isValidID("a/b"))
        XCTAssertFalse(SignalSubmission.isValidID(String(repeating: "a", count: 129)))
    }

    func testFormats() {
        XCTAssertTrue(PayloadValidator.isValidBSN("999990019"))
        XCTAssertTrue(PayloadValidator.isValidBSN("111222333"))
        XCTAssertFalse(PayloadValidator.isValidBSN("123456789"))
        XCTAssertFalse(PayloadValidator.isValidBSN("99999001"))
        XCTAssertFalse(PayloadValidator.isValidBSN("000000000"))
        XCTAssertEqual(Postcode("1621 ab")?.description, "1621AB")
        XCTAssertNil(Postcode("0621AB"))
        XCTAssertNil(Postcode("1621A"))
        XCTAssertNil(Postcode("1621ÄB"))
        XCTAssertNotNil(PostcodeArea("1620-1625"))
        XCTAssertNotNil(PostcodeArea("1689AA-1689ZZ"))
        XCTAssertNotNil(PostcodeArea("1621"))
        XCTAssertNil(PostcodeArea("1625-1620"))
        XCTAssertNil(PostcodeArea("1620-1689AB"))
        XCTAssertNil(PostcodeArea("16"))
        XCTAssertTrue(PostcodeArea("1620-1625")!.contains(Postcode("1625ZZ")!))
        XCTAssertFalse(PostcodeArea("1689AA-1689MZ")!.contains(Postcode("1689NA")!))
        XCTAssertTrue(PostcodeArea("1620-1625")!.overlaps(PostcodeArea("1625AA-1625AB")!))
        XCTAssertFalse(PostcodeArea("1620-1625")!.overlaps(PostcodeArea("1626")!))
        XCTAssertEqual(LocalDate("2024-02-29")?.description, "2024-02-29")
        XCTAssertNil(LocalDate("2025-02-29"))
        XCTAssertNil(LocalDate("2025-1-01"))
        XCTAssertEqual(LocalDate("1970-01-01")?.dayNumber, 0)
        for number in stride(from: -800_000, through: 3_000_000, by: 997) {
            XCTAssertEqual(LocalDate(dayNumber: number).dayNumber, number)
        }
        XCTAssertEqual(LocalDate(dayNumber: 20_513).description, "2026-03-01")
        // Amsterdam: 23:30 UTC is the next day in winter (UTC+1) and in summer (UTC+2).
        let amsterdam = TimeZone(identifier: "Europe/Amsterdam")!
        XCTAssertEqual(LocalDate(Date(timeIntervalSince1970: 1_795_217_400), in: amsterdam).description, "2026-11-21")
        XCTAssertEqual(LocalDate(Date(timeIntervalSince1970: 1_782_257_400), in: amsterdam).description, "2026-06-24")
        XCTAssertEqual(LocalDate(Date(timeIntervalSince1970: 1_782_257_400), in: TimeZone(identifier: "UTC")!).description, "2026-06-23")
        XCTAssertEqual(LocalDate(Date(timeIntervalSince1970: -1), in: TimeZone(identifier: "UTC")!).description, "1969-12-31")
        XCTAssertEqual(LocalDate("2026-09-15")!.days(until: LocalDate("2026-11-21")!), 67)
        XCTAssertEqual(ListenAddress("[::1]:8443"), ListenAddress(host: "::1", port: 8443))
        XCTAssertNil(ListenAddress("host:0"))
        XCTAssertNil(ListenAddress("::1:8443"))
        XCTAssertTrue(PublicKeyPin.isWellFormed(PublicKeyPin.pin(digest: [UInt8](repeating: 1, count: 32))))
        XCTAssertFalse(PublicKeyPin.isWellFormed("sha256//" + Data(count: 20).base64EncodedString()))
    }

    func testSubjectKeys() throws {
        let configuration = try ConfigFixtures.hoorn()
        let arrears = try XCTUnwrap(configuration.signalType(id: "betalingsachterstand"))
        let payload: [String: PayloadValue] = ["Burgerservicenummer": .string("999990019"), "Achternaam": .string("Voorbeeld"), "Geboortedatum": .string("1971-03-08"),
                                               "Postcode": .string("1624 km"), "Huisnummer": .integer(12), "Huisnummertoevoeging": .string("-a ")]
        XCTAssertEqual(subjectKeys(for: payload, type: arrears), SubjectKeys(person: "bsn:999990019", address: "address:1624KM|12|A"))
        var withoutBSN = payload
        withoutBSN["Burgerservicenummer"] = nil
        withoutBSN["Achternaam"] = .string("  Çelik  van ")
        XCTAssertEqual(subjectKeys(for: withoutBSN, type: arrears).person, "person:celik van|1971-03-08|1624KM")
        XCTAssertEqual(SubjectKeys.person(surname: "celik VAN", birthDate: "1971-03-08", postcode: "1624KM"), "person:celik van|1971-03-08|1624KM")
        // ASCII names take a fast path; it folds case and white space like the general one.
        XCTAssertEqual(SubjectKeys.person(surname: " De\tVRIES\r\n  jong ", birthDate: "1971-03-08", postcode: "1624KM"),
                       SubjectKeys.person(surname: "dé vriës jong", birthDate: "1971-03-08", postcode: "1624KM"))
        XCTAssertEqual(SubjectKeys.person(surname: "O'Brien-Smith", birthDate: "1971-03-08", postcode: "1624KM"), "person:o'brien-smith|1971-03-08|1624KM")
        XCTAssertNil(SubjectKeys.person(surname: " \t\n ", birthDate: "1971-03-08", postcode: "1624KM"))
        XCTAssertEqual(SubjectKeys.person(surname: "a  b", birthDate: "1971-03-08", postcode: "1624KM"), "person:a b|1971-03-08|1624KM")
        let overlast = try XCTUnwrap(configuration.signalType(id: "overlast"))
        XCTAssertEqual(subjectKeys(for: payload, type: overlast), SubjectKeys(person: nil, address: "address:1624KM|12|A"))
        XCTAssertEqual(subjectKeys(for: [:], type: arrears), SubjectKeys(person: nil, address: nil))
        XCTAssertEqual(SubjectKeys.address(postcode: "1624KM", houseNumber: "012"), "address:1624KM|12|")
        // ASCII house numbers and additions take a fast path; it trims and filters like the general one.
        XCTAssertEqual(SubjectKeys.address(postcode: "1624 km", houseNumber: " \t12 ", addition: "-b 2"), "address:1624KM|12|B2")
        XCTAssertEqual(SubjectKeys.address(postcode: "1624KM", houseNumber: " 12 ", addition: "b-ü"), "address:1624KM|12|BÜ")
        XCTAssertNil(SubjectKeys.address(postcode: "1624KM", houseNumber: "  "))
    }
}
