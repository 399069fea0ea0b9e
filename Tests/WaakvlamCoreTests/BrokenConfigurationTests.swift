import Foundation
import XCTest
@testable import WaakvlamCore

/// A copy of Config/ with many kinds of mistakes made at once: every one must be reported in
/// a single run, naming the file, the JSON path and what to fix.
final class BrokenConfigurationTests: XCTestCase {
    private struct Expected {
        var file: String
        var path: String
        var message: String
        var severity: ConfigIssue.Severity = .error
    }

    /// Applies `old -> new` to the file ending in `suffix`, failing if `old` is not there.
    private func edit(_ sources: inout [ConfigSource], _ suffix: String, _ old: String, _ new: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let index = sources.firstIndex(where: { $0.path.hasSuffix(suffix) }) else {
            return XCTFail("no file \(suffix)", file: file, line: line)
        }
        let text = String(decoding: sources[index].bytes, as: UTF8.self)
        XCTAssertTrue(text.contains(old), "'\(old)' not in \(suffix)", file: file, line: line)
        sources[index].bytes = Data(text.replacingOccurrences(of: old, with: new).utf8)
    }

    func testEveryMistakeIsReportedAtOnceWithFilePathAndFix() throws {
        var sources = try ConfigFixtures.sources(ConfigFixtures.configFolder)
        // node.json: a misspelt time zone and a listen address without a port.
        edit(&sources, "node.json", "timeZone: \"Europe/Amsterdam\"", "timeZone: \"Europe/Amsterdm\"")
        edit(&sources, "node.json", "peer: \"127.0.0.1:8443\"", "peer: \"localhost\"")
        // organisations.json
        edit(&sources, "organisations.json", "oin: \"00000099000000020000\"", "oin: \"0000009900000002000\"")           // 19 digits
        edit(&sources, "organisations.json", "oin: \"00000099000000050000\"", "oin: \"00000099000000040000\"")          // duplicate OIN
        edit(&sources, "organisations.json", "sector: \"zorg\",\n    pins: [],\n    delivery: { mode: \"inbox\" },\n  },\n  {\n    id: \"ggz-nhn\"",
             "sector: \"zorgg\",\n    pins: [],\n    delivery: { mode: \"inbox\" },\n  },\n  {\n    id: \"ggz-nhn\"")         // unknown sector
        edit(&sources, "organisations.json", "administrator: true", "adminstrator: true")                                  // typo in a key
        edit(&sources, "organisations.json", "name: \"Intermaris\",\n    sector: \"corporatie\",\n    pins: [],\n    delivery: { mode: \"inbox\" }",
             "name: \"Intermaris\",\n    sector: \"corporatie\",\n    pins: [],\n    delivery: { mode: \"push\", endpoint: \"http://intermaris.example.nl/in\" }")
        edit(&sources, "organisations.json", "name: \"Verenigde Huurdersorganisatie De Boog\",\n    sector: \"huurdersorganisatie\",\n    pins: []",
             "name: \"Verenigde Huurdersorganisatie De Boog\",\n    sector: \"huurdersorganisatie\",\n    pins: [\"sha1//abc\"]")
        edit(&sources, "organisations.json", "\"1689AA-1689ZZ\"", "\"16AB\"")
        edit(&sources, "organisations.json", "  {\n    id: \"intermaris\",",
             "  { id: \"gemeente-koggenland\", oin: \"00000099000000310000\", name: \"Gemeente Koggenland\", sector: \"gemeente\", postcodeAreas: [\"1625-1636\"] },\n  {\n    id: \"intermaris\",")
        edit(&sources, "organisations.json", "id: \"politie-nhn\",\n    oin: \"00000099000000060000\"", "id: \"politie-nhn\",\n    oin: 99000000060000")
        // signal-types.json: an unknown data category.
        edit(&sources, "signal-types.json", "{ name: \"zorgNotitie\", category: \"health\"", "{ name: \"zorgNotitie\", category: \"gezondheid\"")
        // leefbaarheid-hoorn.json
        edit(&sources, "leefbaarheid-hoorn.json", "validUntil: \"2029-12-31\"", "validUntil: \"2024-12-31\"")
        edit(&sources, "leefbaarheid-hoorn.json", "to: { organisations: [\"1hoorn\", \"ggz-nhn\"] },\n      signalTypes: [\"zorgsignaal\"],\n      fields: [\"Postcode\", \"Huisnummer\", \"Huisnummertoevoeging\", \"Straatnaam\"",
             "to: { organisations: [\"1hoorn\", \"ggz-nhn\", \"intermaris2\"] },\n      signalTypes: [\"zorgsignaal\"],\n      fields: [\"Postcode\", \"Huisnummer\", \"Huisnummertoevoeging\", \"Straatnaam\"")
        edit(&sources, "leefbaarheid-hoorn.json", "\"Achternaam\", \"Geboortedatum\", \"waarneming\", \"urgentie\"],\n      retentionDays: 180,",
             "\"Achternaam\", \"Geboortedatum\", \"waarneming\", \"urgentie\", \"gezondheidsobservatie\"],\n      retentionDays: 180,")
        edit(&sources, "leefbaarheid-hoorn.json", "signalTypes: [\"woonfraude\"]", "signalTypes: [\"woonfraudee\"]")
        edit(&sources, "leefbaarheid-hoorn.json", "signalTypes: [\"buurtsignaal\"],\n      fields: [\"wijk\", \"postcodegebied\", \"thema\", \"omschrijving\"]",
             "signalTypes: [\"buurtsignaal\", \"zorgsignaal\"],\n      fields: [\"wijk\", \"postcodegebied\", \"thema\", \"omschrijving\", \"Postcode\", \"Huisnummer\", \"waarneming\"]")
        edit(&sources, "leefbaarheid-hoorn.json", "  purpose: \"Vroegtijdig", "  purpos: \"Vroegtijdig")
        // vroeg-eropaf-hoorn.json
        edit(&sources, "vroeg-eropaf-hoorn.json", "to: { organisations: [\"gemeente-hoorn\"] }", "to: { organisations: [\"gemeente-hoorn\", \"politie-nhn\"] }")
        edit(&sources, "vroeg-eropaf-hoorn.json", "fields: [\"bedrag\", ", "fields: [")
        edit(&sources, "vroeg-eropaf-hoorn.json", "retentionDays: 90,", "retentionDays: 0, specialCategories: [\"health\"],")
        // A second version of the Vroeg Eropaf convenant that overlaps the first.
        let vroeg = String(decoding: sources.first { $0.path.hasSuffix("vroeg-eropaf-hoorn.json") }!.bytes, as: UTF8.self)
        sources.append(ConfigSource(path: "Config/convenants/vroeg-eropaf-hoorn-v2.json",
                                    bytes: Data(vroeg.replacingOccurrences(of: "version: 1", with: "version: 2").replacingOccurrences(of: "validFrom: \"2025-01-01\"", with: "validFrom: \"2029-01-01\"").utf8)))
        // A convenant file that is not JSON at all.
        sources.append(ConfigSource(path: "Config/convenants/kapot.json", bytes: Data("// half written\n{\n  id: \"kapot\"\n  version: 1,\n".utf8)))

        let result = ConfigurationParser.parse(sources, now: ConfigFixtures.now)
        XCTAssertNil(result.configuration)
        let expected: [Expected] = [
            Expected(file: "node.json", path: "$.timeZone", message: "unknown time zone 'Europe/Amsterdm': use an IANA name"),
            Expected(file: "node.json", path: "$.listen.peer", message: "'localhost' is not a listen address: write host:port"),
            Expected(file: "organisations.json", path: "$[2].oin", message: "an OIN is exactly 20 digits (this one has 19 characters)"),
            Expected(file: "organisations.json", path: "$[5].oin", message: "the OIN 00000099000000040000 is already the OIN of '1hoorn'"),
            Expected(file: "organisations.json", path: "$[4].sector", message: "unknown sector 'zorgg' (did you mean 'zorg'?)"),
            Expected(file: "organisations.json", path: "$[0].adminstrator", message: "unknown key 'adminstrator' (did you mean 'administrator'?): correct or remove it"),
            Expected(file: "organisations.json", path: "$[2].delivery.endpoint", message: "the push endpoint must be an https:// URL"),
            Expected(file: "organisations.json", path: "$[3].pins[0]", message: "not a public-key pin: write \"sha256//\""),
            Expected(file: "organisations.json", path: "$[0].postcodeAreas[1]", message: "'16AB' is not a postcode area"),
            Expected(file: "organisations.json", path: "$[1].postcodeAreas[0]", message: "postcode area 1625-1636 overlaps 1620-1628 of 'gemeente-hoorn'"),
            Expected(file: "organisations.json", path: "$[6].oin", message: "write the OIN in quotes"),
            Expected(file: "signal-types.json", path: "$[2].fields[22].category", message: "unknown data category 'gezondheid'"),
            Expected(file: "leefbaarheid-hoorn.json", path: "$.validUntil", message: "validUntil 2024-12-31 lies before validFrom 2025-01-01; swap or correct the dates"),
            Expected(file: "leefbaarheid-hoorn.json", path: "$.rules[0].to.organisations[2]", message: "unknown organisation 'intermaris2' (did you mean 'intermaris'?)"),
            Expected(file: "leefbaarheid-hoorn.json", path: "$.rules[1].fields[11]", message: "the field 'gezondheidsobservatie' holds health data, a special category"),
            Expected(file: "leefbaarheid-hoorn.json", path: "$.rules[6].signalTypes[0]", message: "unknown signal type 'woonfraudee' (did you mean 'woonfraude'?)"),
            Expected(file: "leefbaarheid-hoorn.json", path: "$.rules[12].fields[4]", message: "a huurdersorganisatie may not send personal data, and 'Postcode' is address data"),
            Expected(file: "leefbaarheid-hoorn.json", path: "$.purpos", message: "unknown key 'purpos' (did you mean 'purpose'?)"),
            Expected(file: "leefbaarheid-hoorn.json", path: "$", message: "missing the required key 'purpose'"),
            Expected(file: "vroeg-eropaf-hoorn.json", path: "$.rules[0].to.organisations[1]", message: "'politie-nhn' is not a party of convenant 'vroeg-eropaf-hoorn'; add it to parties or remove it from this rule"),
            Expected(file: "vroeg-eropaf-hoorn.json", path: "$.rules[0].fields", message: "signal type 'betalingsachterstand' requires the field 'bedrag'"),
            Expected(file: "vroeg-eropaf-hoorn.json", path: "$.rules[0].retentionDays", message: "retentionDays is 0: a recipient must be allowed to keep the payload at least 1 day"),
            Expected(file: "vroeg-eropaf-hoorn.json", path: "$.rules[0].specialCategories[0]", message: "the convenant states no legal basis for it: add specialCategoryBasis.health"),
            Expected(file: "vroeg-eropaf-hoorn-v2.json", path: "$.validFrom", message: "version 2 of convenant 'vroeg-eropaf-hoorn' (2029-01-01 to 2029-12-31) overlaps version 1"),
            Expected(file: "kapot.json", path: "$", message: "not valid JSON at line 4, column 3: expected ',' or '}' after the value of 'id'"),
        ]
        for expectation in expected {
            let match = result.issues.first {
                $0.file.hasSuffix("/" + expectation.file) && $0.path == expectation.path && $0.message.contains(expectation.message) && $0.severity == expectation.severity
            }
            XCTAssertNotNil(match, "not reported: \(expectation.file): \(expectation.path): \(expectation.message)\nreported:\n"
                            + result.issues.map(\.description).joined(separator: "\n"))
        }
        // Every error names a line (the file is JSON) except the whole-file ones, and says what to do.
        for issue in result.errors {
            XCTAssertNotNil(issue.line, issue.description)
            XCTAssertTrue(["add", "remove", "use", "write", "correct", "fix", "fill", "give", "list", "swap", "split", "name", "set", "copy", "end", "check", "rename", "define"]
                .contains { issue.message.contains($0) }, "no fix in: \(issue.description)")
        }
        let kapot = try XCTUnwrap(result.issues.first { $0.file.hasSuffix("kapot.json") })
        XCTAssertEqual(kapot.line, 4)
    }

    func testMissingFilesAndWrongShapes() {
        let result = ConfigurationParser.parse([
            ConfigSource(path: "cfg/node.json", bytes: Data("{ node: { name: \"n\" }, extra: 1 }".utf8)),
            ConfigSource(path: "cfg/notes.txt", bytes: Data("hello".utf8)),
            ConfigSource(path: "cfg/convenants/c.json", bytes: Data("[]".utf8)),
        ], now: ConfigFixtures.now)
        XCTAssertNil(result.configuration)
        let lines = result.issues.map(\.description)
        func reported(_ text: String) -> Bool { lines.contains { $0.contains(text) } }
        XCTAssertTrue(reported("cfg/organisations.json: $: error: the file is missing: create organisations.json"), lines.joined(separator: "\n"))
        XCTAssertTrue(reported("cfg/signal-types.json: $: error: the file is missing"))
        XCTAssertTrue(reported("cfg/notes.txt: $: error: not a configuration file"))
        XCTAssertTrue(reported("cfg/node.json: $.extra: error: unknown key 'extra'"))
        XCTAssertTrue(reported("cfg/node.json: $.node: error: missing the required key 'operator'"))
        XCTAssertTrue(reported("cfg/convenants/c.json: $: error: expected a convenant (an object in braces), found a list"))
        // The same file twice (e.g. in an uploaded bundle) is reported, not a crash.
        let twice = ConfigurationParser.parse([ConfigSource(path: "node.json", bytes: Data("{}".utf8)), ConfigSource(path: "node.json", bytes: Data("{}".utf8))], now: ConfigFixtures.now)
        XCTAssertTrue(twice.errors.contains { $0.message.contains("a second node.json") })
    }

    func testWarningsForEndingConvenantAndMissingPinsDoNotMakeItInvalid() throws {
        var sources = try ConfigFixtures.sources(ConfigFixtures.configFolder)
        edit(&sources, "vroeg-eropaf-hoorn.json", "validUntil: \"2029-12-31\"", "validUntil: \"2026-12-10\"")
        let result = ConfigurationParser.parse(sources, now: ConfigFixtures.now)
        XCTAssertNotNil(result.configuration, result.errors.map(\.description).joined(separator: "\n"))
        let warning = try XCTUnwrap(result.warnings.first { $0.file.hasSuffix("vroeg-eropaf-hoorn.json") })
        XCTAssertEqual(warning.path, "$.validUntil")
        XCTAssertTrue(warning.message.contains("ends on 2026-12-10, in 19 days: renew it"), warning.message)
    }

    func testDuplicateKeysAndDuplicateIDs() throws {
        var sources = try ConfigFixtures.sources(ConfigFixtures.configFolder)
        edit(&sources, "organisations.json", "id: \"vh-de-boog\",", "id: \"intermaris\", id: \"intermaris\",")
        let result = ConfigurationParser.parse(sources, now: ConfigFixtures.now)
        let lines = result.errors.map(\.description)
        XCTAssertTrue(lines.contains { $0.contains("$[2].id: error: the key 'id' appears twice in this object") }, lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains { $0.contains("$[2].id: error: the id 'intermaris' is already used by another organisation") }, lines.joined(separator: "\n"))
    }
}
