import Foundation
import XCTest
@testable import WaakvlamCore

/// Every configuration folder under Config/examples must pass validation, as Config/ does.
final class ExampleConfigurationTests: XCTestCase {
    func testEveryExampleIsValid() throws {
        let examples = ConfigFixtures.configFolder.appendingPathComponent("examples")
        let names = try FileManager.default.contentsOfDirectory(atPath: examples.path).filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertEqual(names, ["den-haag", "westfriesland", "zoetermeer"])
        for name in names {
            let result = try ConfigFixtures.parse(examples.appendingPathComponent(name))
            XCTAssertEqual(result.errors, [], "\(name):\n" + result.errors.map(\.description).joined(separator: "\n"))
            let configuration = try XCTUnwrap(result.configuration, name)
            // Only the pins a fresh clone cannot have yet are warned about.
            XCTAssertTrue(result.warnings.allSatisfy { $0.message.contains("no public-key pins") }, result.warnings.map(\.description).joined(separator: "\n"))
            XCTAssertEqual(configuration.node.name, "waakvlam-\(name)")
            XCTAssertNotNil(configuration.organisation(id: configuration.node.operatorID))
            // The tenant organisation sends no personal data in any example.
            for convenant in configuration.convenants {
                for rule in convenant.rules where configuration.organisations.contains(where: { $0.sector == .huurdersorganisatie && rule.from.matches($0) }) {
                    let categories = rule.signalTypes.flatMap { type in rule.fields.compactMap { configuration.signalType(id: type)?.field(named: $0)?.category } }
                    XCTAssertFalse(categories.contains(where: \.isPersonal), "\(name): rule \(rule.id)")
                }
            }
        }
    }

    func testDenHaagVersionsFollowEachOther() throws {
        let configuration = try XCTUnwrap(try ConfigFixtures.parse(ConfigFixtures.configFolder.appendingPathComponent("examples/den-haag")).configuration)
        let versions = configuration.convenants.filter { $0.id == "haagse-aanpak-woonoverlast" }.sorted { $0.version < $1.version }
        XCTAssertEqual(versions.map(\.version), [1, 2])
        XCTAssertEqual(versions[0].validUntil.days(until: versions[1].validFrom), 1)
    }

    func testDistinctPortsPerExample() throws {
        var ports = Set<UInt16>()
        for folder in ["", "examples/den-haag", "examples/westfriesland", "examples/zoetermeer"] {
            let node = try XCTUnwrap(try ConfigFixtures.parse(ConfigFixtures.configFolder.appendingPathComponent(folder)).configuration).node
            XCTAssertTrue(ports.insert(node.listen.peer.port).inserted)
            XCTAssertTrue(ports.insert(node.listen.admin.port).inserted)
        }
    }
}
