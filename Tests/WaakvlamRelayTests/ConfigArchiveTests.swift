import Foundation
import XCTest
import WaakvlamCore
@testable import WaakvlamRelay

final class ConfigArchiveTests: XCTestCase {
    private static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    private var temporary: URL!
    private var config: String { temporary.appendingPathComponent("Config").path }
    private var state: String { temporary.appendingPathComponent("state").path }
    private let day = Date(timeIntervalSince1970: 1_795_258_800)

    override func setUpWithError() throws {
        temporary = FileManager.default.temporaryDirectory.appendingPathComponent("waakvlam-archive-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: ConfigArchiveTests.packageRoot.appendingPathComponent("Config"), to: URL(fileURLWithPath: config))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: temporary)
    }

    private func write(_ relative: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: config + "/" + relative))
    }

    private func read(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    func testArchiveListAndShowAVersion() throws {
        let archive = ConfigArchive(stateFolder: state)
        XCTAssertEqual(try archive.list(), [])
        let record = try archive.archive(folder: config, appliedBy: "SIGHUP", diffSummary: "first configuration", at: day)
        XCTAssertEqual(record.version, 1)
        XCTAssertEqual(record.appliedBy, "SIGHUP")
        XCTAssertEqual(record.appliedAt, day)
        XCTAssertEqual(record.files.map(\.path), ["convenants/leefbaarheid-hoorn.json", "convenants/vroeg-eropaf-hoorn.json", "node.json",
                                                  "organisations.json", "signal-types.json"])
        XCTAssertEqual(try archive.list(), [record], "the record reads back as written")

        let shown = try archive.version(1)
        XCTAssertEqual(shown.version, record)
        let onDisk = try ConfigArchive.readFolder(config)
        XCTAssertEqual(shown.files.sorted { $0.path < $1.path }, onDisk.sorted { $0.path < $1.path })
        XCTAssertEqual(record.contentHash, ConfigArchive.contentHash(of: onDisk))
        // The layout the operator sees.
        XCTAssertNotNil(read(state + "/config-archive/000001/version.json"))
        XCTAssertEqual(read(state + "/config-archive/000001/files/node.json"), read(config + "/node.json"))
        // The archived files parse to the same configuration as the folder.
        XCTAssertEqual(ConfigurationParser.parse(shown.files, now: day).configuration,
                       ConfigurationParser.parse(ConfigLoading.readSources(config).sources, now: day).configuration)

        XCTAssertThrowsError(try archive.version(7)) { error in
            XCTAssertEqual(error as? ConfigArchiveError, .noSuchVersion(7, latest: 1))
            XCTAssertTrue("\(error)".contains("versions run from 1 to 1"))
        }
    }

    func testIdenticalContentIsNotArchivedTwice() throws {
        let archive = ConfigArchive(stateFolder: state)
        let first = try archive.archive(folder: config, appliedBy: "SIGHUP", diffSummary: "first", at: day)
        // The same content, as ConfigLoading returns it (paths under the folder), in another order.
        let sources = ConfigLoading.readSources(config).sources.reversed()
        let again = try archive.archive(files: Array(sources), relativeTo: config, appliedBy: "admin:gemeente-hoorn", diffSummary: "no changes",
                                        at: day.addingTimeInterval(60))
        XCTAssertEqual(again, first)
        XCTAssertEqual(try archive.list().count, 1)

        try write("node.json", read(config + "/node.json")!.replacingOccurrences(of: "maximumInFlight: 256", with: "maximumInFlight: 128"))
        let second = try archive.archive(folder: config, appliedBy: "admin:gemeente-hoorn", diffSummary: "1 other change", at: day.addingTimeInterval(120))
        XCTAssertEqual(second.version, 2)
        XCTAssertNotEqual(second.contentHash, first.contentHash)
        XCTAssertEqual(try archive.list().map(\.version), [1, 2])
        // A second archive object on the same folder (a restarted node) continues the numbering.
        try write("node.json", read(config + "/node.json")!.replacingOccurrences(of: "maximumInFlight: 128", with: "maximumInFlight: 64"))
        XCTAssertEqual(try ConfigArchive(stateFolder: state).archive(folder: config, appliedBy: "SIGHUP", diffSummary: "", at: day).version, 3)
    }

    func testContentHashIsCanonicalAndStable() {
        let files = [ConfigSource(path: "b/c.json", bytes: Data()), ConfigSource(path: "a.json", bytes: Data("abc".utf8))]
        // SHA-256 of "a.json\n3\nabc" + "b/c.json\n0\n": the documented listing, recomputable with any tool.
        XCTAssertEqual(ConfigArchive.contentHash(of: files), "93d0cf32c840af3d96f366b228c381f724b951af424f92002562cbb1b7e1d29b")
        XCTAssertEqual(ConfigArchive.contentHash(of: files.reversed()), ConfigArchive.contentHash(of: files))
        // Moving a byte from one file to the next changes the hash.
        let shifted = [ConfigSource(path: "a.json", bytes: Data("ab".utf8)), ConfigSource(path: "b/c.json", bytes: Data("c".utf8))]
        XCTAssertNotEqual(ConfigArchive.contentHash(of: shifted), ConfigArchive.contentHash(of: files))
    }

    func testRestoreWritesTheFilesAndTheNextArchiveRecordsARollback() throws {
        let archive = ConfigArchive(stateFolder: state)
        let first = try archive.archive(folder: config, appliedBy: "SIGHUP", diffSummary: "first", at: day)
        let originalOrganisations = read(config + "/organisations.json")!
        // A file that is not configuration stays where it is.
        try write("README.txt", "notes of the administrator\n")
        // Version 2: organisations edited, a convenant added.
        try write("organisations.json", originalOrganisations.replacingOccurrences(of: "administrator: true,", with: "administrator: false,"))
        try write("convenants/extra.json", read(config + "/convenants/vroeg-eropaf-hoorn.json")!
            .replacingOccurrences(of: "id: \"vroeg-eropaf-hoorn\"", with: "id: \"vroeg-eropaf-extra\""))
        let second = try archive.archive(folder: config, appliedBy: "admin:gemeente-hoorn", diffSummary: "1 flow opened", at: day.addingTimeInterval(60))
        XCTAssertEqual(second.version, 2)

        let result = try archive.restore(1, into: config, requestedBy: "alice", at: day.addingTimeInterval(120))
        XCTAssertEqual(result.written, ["organisations.json"])
        XCTAssertEqual(result.removed, ["convenants/extra.json"])
        XCTAssertEqual(result.unchanged.count, 4)
        XCTAssertEqual(read(config + "/organisations.json"), originalOrganisations)
        XCTAssertFalse(FileManager.default.fileExists(atPath: config + "/convenants/extra.json"))
        XCTAssertEqual(read(config + "/README.txt"), "notes of the administrator\n")
        XCTAssertEqual(ConfigArchive.contentHash(of: try ConfigArchive.readFolder(config)), first.contentHash)
        // What was replaced is kept.
        let backup = try XCTUnwrap(result.backup)
        XCTAssertTrue(backup.hasPrefix(state + "/config-archive/replaced/20261121T"), backup)
        XCTAssertTrue(read(backup + "/organisations.json")!.contains("administrator: false,"))
        XCTAssertNotNil(read(backup + "/convenants/extra.json"))
        XCTAssertEqual(try archive.pendingRollback()?.version, 1)

        // Restoring again changes nothing: an interrupted restore can simply be repeated.
        let again = try archive.restore(1, into: config, requestedBy: "alice", at: day.addingTimeInterval(130))
        XCTAssertEqual(again.written + again.removed, [])
        XCTAssertNil(again.backup)

        // The node applies the restored folder: a new version, history untouched.
        let third = try archive.archive(folder: config, appliedBy: "SIGHUP", diffSummary: "1 flow closed", at: day.addingTimeInterval(180))
        XCTAssertEqual(third.version, 3)
        XCTAssertEqual(third.appliedBy, "rollback of 1 by alice (SIGHUP)")
        XCTAssertEqual(third.contentHash, first.contentHash)
        XCTAssertNil(try archive.pendingRollback())
        XCTAssertEqual(try archive.list(), [first, second, third])
        XCTAssertEqual(try archive.version(2).files.count, 6, "version 2 still holds the convenant the rollback removed")
    }

    func testAnApplyOfOtherContentSupersedesAPendingRollback() throws {
        let archive = ConfigArchive(stateFolder: state)
        try archive.archive(folder: config, appliedBy: "SIGHUP", diffSummary: "", at: day)
        try write("node.json", read(config + "/node.json")!.replacingOccurrences(of: "maximumInFlight: 256", with: "maximumInFlight: 128"))
        try archive.archive(folder: config, appliedBy: "SIGHUP", diffSummary: "", at: day)
        try archive.restore(1, into: config, requestedBy: "bob", at: day)
        // The administrator edits the folder again before the node reloads.
        try write("node.json", read(config + "/node.json")!.replacingOccurrences(of: "maximumInFlight: 256", with: "maximumInFlight: 64"))
        let applied = try archive.archive(folder: config, appliedBy: "SIGHUP", diffSummary: "", at: day)
        XCTAssertEqual(applied.appliedBy, "SIGHUP")
        XCTAssertNil(try archive.pendingRollback())
    }

    func testDamagedVersionIsReportedNotShown() throws {
        let archive = ConfigArchive(stateFolder: state)
        try archive.archive(folder: config, appliedBy: "SIGHUP", diffSummary: "", at: day)
        let archived = state + "/config-archive/000001/files/organisations.json"
        try Data((read(archived)! + " ").utf8).write(to: URL(fileURLWithPath: archived))
        XCTAssertEqual(try archive.list().count, 1)
        XCTAssertThrowsError(try archive.version(1)) { error in
            XCTAssertEqual(error as? ConfigArchiveError, .corrupted(version: 1, reason: "its file organisations.json does not match the SHA-256 recorded for it"))
        }
        XCTAssertThrowsError(try archive.restore(1, into: config, requestedBy: "alice"))
        XCTAssertNil(try archive.pendingRollback())
    }

    func testPathsOutsideTheFolderAreRefused() throws {
        let archive = ConfigArchive(stateFolder: state)
        let bytes = Data("{}".utf8)
        for path in ["../pins.json", "/etc/passwd", "convenants/../../x.json", "convenants/.hidden.json", "a//b.json", ""] {
            XCTAssertThrowsError(try archive.archive(files: [ConfigSource(path: path, bytes: bytes)], appliedBy: "SIGHUP", diffSummary: "")) { error in
                XCTAssertEqual(error as? ConfigArchiveError, .invalidPath(path))
            }
        }
        let twice = [ConfigSource(path: "node.json", bytes: bytes), ConfigSource(path: "node.json", bytes: bytes)]
        XCTAssertThrowsError(try archive.archive(files: twice, appliedBy: "SIGHUP", diffSummary: ""))
        XCTAssertThrowsError(try archive.archive(files: [ConfigSource(path: "/elsewhere/node.json", bytes: bytes)], relativeTo: config,
                                                 appliedBy: "SIGHUP", diffSummary: ""))
        XCTAssertEqual(try archive.list(), [])
    }

    func testLeftoversOfAnInterruptedArchiveAreIgnoredAndRemoved() throws {
        let archive = ConfigArchive(stateFolder: state)
        let leftover = state + "/config-archive/.incoming-0011223344556677"
        try FileManager.default.createDirectory(atPath: leftover + "/files", withIntermediateDirectories: true)
        try Data("half".utf8).write(to: URL(fileURLWithPath: leftover + "/files/node.json"))
        XCTAssertEqual(try archive.list(), [])
        XCTAssertEqual(try archive.archive(folder: config, appliedBy: "SIGHUP", diffSummary: "", at: day).version, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: leftover))
    }
}
