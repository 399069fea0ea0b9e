import Foundation
import XCTest
@testable import WaakvlamCore

/// Reads the real configuration folders of the repository, so the tests check what a fresh
/// clone runs with. Core itself never reads files; the tests do.
enum ConfigFixtures {
    /// The package root, found from this file's location.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let configFolder = packageRoot.appendingPathComponent("Config")

    /// The moment the tests judge validity at: 2026-11-21 noon in Amsterdam.
    static let now = Date(timeIntervalSince1970: 1_795_258_800)

    /// The sources of a configuration folder, paths relative to the package root.
    static func sources(_ folder: URL) throws -> [ConfigSource] {
        var files = ["node.json", "organisations.json", "signal-types.json"]
        let convenants = folder.appendingPathComponent("convenants")
        files += try FileManager.default.contentsOfDirectory(atPath: convenants.path).filter { $0.hasSuffix(".json") }.sorted().map { "convenants/" + $0 }
        let prefix = folder.path.replacingOccurrences(of: packageRoot.path + "/", with: "")
        return try files.map { name in
            ConfigSource(path: prefix + "/" + name, bytes: try Data(contentsOf: folder.appendingPathComponent(name)))
        }
    }

    static func parse(_ folder: URL, at date: Date = now) throws -> ConfigurationResult {
        ConfigurationParser.parse(try sources(folder), now: date)
    }

    /// The Hoorn configuration of Config/, which must be valid.
    static func hoorn() throws -> Configuration {
        let result = try parse(configFolder)
        guard let configuration = result.configuration else {
            XCTFail("Config/ is invalid:\n" + result.errors.map(\.description).joined(separator: "\n"))
            throw CocoaError(.fileReadCorruptFile)
        }
        return configuration
    }
}
