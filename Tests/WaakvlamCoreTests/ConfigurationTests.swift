import Foundation
import XCTest
@testable import WaakvlamCore

final class ConfigurationTests: XCTestCase {
    func testHoornConfigurationIsValid() throws {
        let result = try ConfigFixtures.parse(ConfigFixtures.configFolder)
        XCTAssertEqual(result.errors, [], result.errors.map(\.description).joined(separator: "\n"))
        let configuration = try XCTUnwrap(result.configuration)
        // Without a pins file (a fresh clone before `pki init`) every organisation is warned about.
        XCTAssertEqual(result.warnings.count, configuration.organisations.count)
        XCTAssertTrue(result.warnings.allSatisfy { $0.message.contains("no public-key pins") })

        XCTAssertEqual(configuration.node.name, "waakvlam-hoorn")
        XCTAssertEqual(configuration.node.operatorID, "gemeente-hoorn")
        XCTAssertEqual(configuration.node.listen.peer, ListenAddress(host: "127.0.0.1", port: 8443))
        XCTAssertEqual(configuration.node.listen.admin.port, 9443)
        XCTAssertEqual(configuration.node.tls.ca, "../run/pki/ca.pem")
        XCTAssertNil(configuration.node.tls.crl)
        XCTAssertEqual(configuration.node.tls.pins, "../run/pki/pins.json")
        XCTAssertEqual(configuration.node.state, "../run/state")
        XCTAssertEqual(configuration.node.delivery.maximumLifetimeSeconds, 120 * 3600)
        XCTAssertEqual(configuration.node.limits.maximumBodyBytes, 1_048_576)
        XCTAssertEqual(configuration.node.timeZone.identifier, "Europe/Amsterdam")

        let ids = configuration.organisations.map(\.id)
        XCTAssertEqual(ids, ["gemeente-hoorn", "intermaris", "vh-de-boog", "1hoorn", "ggz-nhn", "politie-nhn"])
        let intermaris = try XCTUnwrap(configuration.organisation(id: "intermaris"))
        XCTAssertEqual(intermaris.sector, .corporatie)
        XCTAssertEqual(configuration.organisation(oin: intermaris.oin)?.id, "intermaris")
        XCTAssertEqual(configuration.organisation(identifier: intermaris.oin)?.id, "intermaris")
        XCTAssertEqual(configuration.organisation(identifier: "politie-nhn")?.name, "Politie Eenheid Noord-Holland")
        XCTAssertNil(configuration.organisation(identifier: "nobody"))
        XCTAssertTrue(configuration.organisation(id: "gemeente-hoorn")!.administrator)
        XCTAssertFalse(intermaris.administrator)
        XCTAssertTrue(configuration.organisation(id: "gemeente-hoorn")!.serves(Postcode("1621 ab")!))
        XCTAssertFalse(configuration.organisation(id: "gemeente-hoorn")!.serves(Postcode("1671AB")!))

        XCTAssertEqual(Set(configuration.convenants.map(\.id)), ["leefbaarheid-hoorn", "vroeg-eropaf-hoorn"])
        XCTAssertNotNil(configuration.signalType(id: "betalingsachterstand"))
        XCTAssertEqual(configuration.signalType(id: "betalingsachterstand")?.requiredPreconditions, [.vroegEropaf])
    }

    func testPinsFileAddsPinsAndLookUpByPin() throws {
        let pin = PublicKeyPin.pin(digest: [UInt8](repeating: 7, count: 32))
        let pins = ConfigSource(path: "run/pki/pins.json", bytes: Data("{\"intermaris\": [\"\(pin)\"]}".utf8))
        let result = ConfigurationParser.parse(try ConfigFixtures.sources(ConfigFixtures.configFolder), pins: pins, now: ConfigFixtures.now)
        let configuration = try XCTUnwrap(result.configuration, result.errors.map(\.description).joined(separator: "\n"))
        XCTAssertEqual(configuration.organisation(matchingPin: pin)?.id, "intermaris")
        XCTAssertEqual(configuration.organisation(id: "intermaris")?.pins, [pin])
        XCTAssertFalse(result.warnings.contains { $0.message.contains("'intermaris' has no public-key pins") })
    }

    func testNotJSONNamesTheLine() throws {
        var sources = try ConfigFixtures.sources(ConfigFixtures.configFolder)
        let index = try XCTUnwrap(sources.firstIndex { $0.path.hasSuffix("organisations.json") })
        sources[index].bytes = Data("[\n  { id: \"x\",\n    oin: \"1\"\n    name: \"y\" }\n]\n".utf8)
        let result = ConfigurationParser.parse(sources, now: ConfigFixtures.now)
        XCTAssertNil(result.configuration)
        let issue = try XCTUnwrap(result.errors.first { $0.file.hasSuffix("organisations.json") })
        XCTAssertEqual(issue.line, 4)
        XCTAssertTrue(issue.message.contains("line 4, column 5"), issue.message)
        XCTAssertTrue(issue.message.contains("expected ',' or '}'"), issue.message)
        // References to organisations are not reported one by one when the file is unreadable.
        XCTAssertFalse(result.errors.contains { $0.message.contains("unknown organisation") }, result.errors.map(\.description).joined(separator: "\n"))
    }
}
