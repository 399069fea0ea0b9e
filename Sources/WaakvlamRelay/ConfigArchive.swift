import Foundation
import WaakvlamCore
import WaakvlamCrypto
import WaakvlamSystem

/// What went wrong with the configuration archive, each with what to do about it.
public enum ConfigArchiveError: Error, Equatable, CustomStringConvertible {
    /// A file path that is not a plain relative path inside the configuration folder.
    case invalidPath(String)
    /// Nothing to archive.
    case noFiles
    /// The configuration folder could not be read; the issues say which files.
    case unreadableFolder(String, [String])
    case noSuchVersion(Int, latest: Int?)
    /// An archived version whose files or metadata do not match what was archived.
    case corrupted(version: Int?, reason: String)
    case io(SystemError)

    public var description: String {
        switch self {
        case .invalidPath(let path):
            "'\(path)' is not a relative path inside the configuration folder (no '..', no leading '/' or '.', no line breaks): archive only the folder's own files"
        case .noFiles:
            "there are no configuration files to archive: give the folder that holds node.json"
        case .unreadableFolder(let folder, let issues):
            "cannot read the configuration in \(folder): " + issues.joined(separator: "; ")
        case .noSuchVersion(let version, let latest):
            "there is no archived configuration version \(version): " + (latest.map { "versions run from 1 to \($0); `waakvlam config history` lists them" } ?? "nothing has been archived yet")
        case .corrupted(let version, let reason):
            (version.map { "archived configuration version \($0) is damaged: " } ?? "the configuration archive is damaged: ")
                + reason + "; restore the state folder from a backup, or choose another version"
        case .io(let error):
            "cannot read or write the configuration archive: \(error); check that the state folder exists, is writable and the disk is not full"
        }
    }
}

/// One file of an archived version: its path relative to the configuration folder, its size
/// and its SHA-256 (hex).
public struct ArchivedFile: Codable, Equatable, Sendable {
    public var path: String
    public var size: Int
    public var sha256: String
}

/// The record of one applied configuration version.
public struct ArchivedVersion: Codable, Equatable, Sendable {
    /// 1, 2, 3, ... in the order applied; never reused.
    public var version: Int
    /// `ConfigArchive.contentHash(of:)` of the files (hex).
    public var contentHash: String
    public var appliedAt: Date
    /// "SIGHUP", "admin:<org id>", or "rollback of N by <who> (<how it was applied>)".
    public var appliedBy: String
    /// `ConfigDiff.summary` against the version applied before it.
    public var diffSummary: String
    public var files: [ArchivedFile]
}

/// An archived version with the bytes of its files (paths relative to the configuration folder).
public struct ArchivedConfiguration: Sendable {
    public var version: ArchivedVersion
    public var files: [ConfigSource]
}

/// What `ConfigArchive.restore` did to the configuration folder (relative paths).
public struct RestoreResult: Equatable, Sendable {
    public var written: [String]
    public var removed: [String]
    public var unchanged: [String]
    /// Where the replaced and removed files were copied first, when any were.
    public var backup: String?
}

/// A rollback written into the configuration folder and not yet applied by the node: the next
/// archived version with this content hash is recorded as "rollback of N by ...".
public struct PendingRollback: Codable, Equatable, Sendable {
    public var version: Int
    public var contentHash: String
    public var requestedBy: String
    public var requestedAt: Date
}

/// The archive of applied configuration versions in the node's state folder.
///
/// Layout of `STATE/config-archive/`:
/// - `000001/version.json` (an `ArchivedVersion`) and `000001/files/<relative path>` (the bytes);
/// - `pending-rollback.json` while a restored version waits to be applied;
/// - `replaced/<time>-before-restoring-N/` the files a restore replaced or removed.
///
/// A version is written into a hidden temporary folder (every file flushed), which is then
/// renamed to its number and the archive folder flushed: after a crash a version is either
/// complete or absent. History is append-only: a rollback becomes a new version.
public final class ConfigArchive: @unchecked Sendable {
    public static let folderName = "config-archive"
    static let metadataName = "version.json"
    static let filesName = "files"
    static let pendingName = "pending-rollback.json"
    static let replacedName = "replaced"
    static let incomingPrefix = ".incoming-"

    /// `STATE/config-archive`.
    public let folder: String
    private let lock = NSLock()

    public init(stateFolder: String) {
        let state = stateFolder.count > 1 && stateFolder.hasSuffix("/") ? String(stateFolder.dropLast()) : stateFolder
        folder = state + "/" + ConfigArchive.folderName
    }

    // MARK: Content hash

    /// SHA-256 (hex) over a canonical listing of the files: sorted by the UTF-8 bytes of their
    /// relative paths, each contributes `path` LF `decimal byte count` LF `bytes`. The same
    /// files give the same hash whatever order they come in.
    public static func contentHash(of files: [ConfigSource]) -> String {
        var listing = Data()
        for file in files.sorted(by: { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }) {
            listing.append(Data("\(file.path)\n\(file.bytes.count)\n".utf8))
            listing.append(file.bytes)
        }
        return Hex.encode(SHA256.hash(listing))
    }

    /// A plain relative path: no empty, `.`, `..` or hidden components, no line breaks.
    static func isValidRelativePath(_ path: String) -> Bool {
        guard !path.isEmpty, !path.hasPrefix("/"), !path.contains("\n"), !path.contains("\0") else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && !$0.hasPrefix(".") }
    }

    /// The files of a configuration folder as `ConfigLoading` reads them, with relative paths.
    public static func readFolder(_ folder: String) throws -> [ConfigSource] {
        let (sources, issues) = ConfigLoading.readSources(folder)
        let unreadable = issues.filter { $0.severity == .error }
        guard unreadable.isEmpty else { throw ConfigArchiveError.unreadableFolder(folder, unreadable.map(\.description)) }
        return try relative(sources, to: folder)
    }

    /// `sources` with the `folder/` prefix taken off their paths.
    public static func relative(_ sources: [ConfigSource], to folder: String) throws -> [ConfigSource] {
        let prefix = (folder.count > 1 && folder.hasSuffix("/") ? String(folder.dropLast()) : folder) + "/"
        return try sources.map { source in
            guard source.path.hasPrefix(prefix) else { throw ConfigArchiveError.invalidPath(source.path) }
            return ConfigSource(path: String(source.path.dropFirst(prefix.count)), bytes: source.bytes)
        }
    }

    // MARK: Archiving

    /// Archives the files of an applied configuration as the next version, or returns the
    /// latest version unchanged when its content hash is the same (nothing new was applied).
    ///
    /// - Parameters:
    ///   - files: paths relative to the configuration folder, or prefixed with `folder`.
    ///   - folder: the configuration folder the paths start with, when they do (as
    ///     `ConfigLoading.readSources` returns them).
    ///   - appliedBy: "SIGHUP", "admin:<org id>", ... When a pending rollback has the same
    ///     content, the version is recorded as "rollback of N by <who> (<appliedBy>)".
    ///   - diffSummary: `ConfigDiff.summary` against the configuration in force before.
    @discardableResult
    public func archive(files: [ConfigSource], relativeTo folder: String? = nil, appliedBy: String, diffSummary: String,
                        at time: Date = Date()) throws -> ArchivedVersion {
        let files = try folder.map { try ConfigArchive.relative(files, to: $0) } ?? files
        guard !files.isEmpty else { throw ConfigArchiveError.noFiles }
        var seen = Set<String>()
        for file in files where !ConfigArchive.isValidRelativePath(file.path) || !seen.insert(file.path).inserted {
            throw ConfigArchiveError.invalidPath(file.path)
        }
        let hash = ConfigArchive.contentHash(of: files)
        lock.lock()
        defer { lock.unlock() }
        let latest = try list().last
        let pending = try pendingRollback()
        if let latest, latest.contentHash == hash {
            if pending?.contentHash == hash { try io { try DurableFile.remove(self.path(ConfigArchive.pendingName)) } }
            return latest
        }
        let by = pending.flatMap { $0.contentHash == hash ? "rollback of \($0.version) by \($0.requestedBy) (\(appliedBy))" : nil } ?? appliedBy
        let entries = files.sorted { $0.path < $1.path }
        let record = ArchivedVersion(version: (latest?.version ?? 0) + 1, contentHash: hash, appliedAt: time, appliedBy: by, diffSummary: diffSummary,
                                     files: entries.map { ArchivedFile(path: $0.path, size: $0.bytes.count, sha256: Hex.encode(SHA256.hash($0.bytes))) })
        let tree = entries.map { ConfigSource(path: ConfigArchive.filesName + "/" + $0.path, bytes: $0.bytes) }
            + [ConfigSource(path: ConfigArchive.metadataName, bytes: ConfigArchive.encode(record))]
        try io {
            try DurableFile.makeFolder(self.folder)
            self.removeIncomplete()
            try self.writeTree(tree, as: self.path(ConfigArchive.versionName(record.version)))
            // Any apply supersedes a pending rollback: it was applied now or edited over.
            if pending != nil { try DurableFile.remove(self.path(ConfigArchive.pendingName)) }
        }
        return record
    }

    /// Archives the configuration files of `folder` (see `archive(files:...)`).
    @discardableResult
    public func archive(folder: String, appliedBy: String, diffSummary: String, at time: Date = Date()) throws -> ArchivedVersion {
        try archive(files: ConfigArchive.readFolder(folder), appliedBy: appliedBy, diffSummary: diffSummary, at: time)
    }

    // MARK: Reading

    /// Every archived version, oldest first (metadata only; `version(_:)` checks the files).
    public func list() throws -> [ArchivedVersion] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            guard FileManager.default.fileExists(atPath: folder) else { return [] }
            throw ConfigArchiveError.corrupted(version: nil, reason: "the folder \(folder) cannot be listed")
        }
        let numbers = names.compactMap { name in name.allSatisfy(\.isASCII) && name.allSatisfy(\.isNumber) ? Int(name) : nil }.sorted()
        return try numbers.map { number in
            guard let data = FileManager.default.contents(atPath: path(ConfigArchive.versionName(number) + "/" + ConfigArchive.metadataName)),
                  let record = try? ConfigArchive.decoder.decode(ArchivedVersion.self, from: data) else {
                throw ConfigArchiveError.corrupted(version: number, reason: "its \(ConfigArchive.metadataName) is missing or unreadable")
            }
            guard record.version == number else {
                throw ConfigArchiveError.corrupted(version: number, reason: "its \(ConfigArchive.metadataName) says version \(record.version)")
            }
            return record
        }
    }

    /// One version with its files, each checked against its recorded SHA-256 and the whole
    /// against the content hash.
    public func version(_ number: Int) throws -> ArchivedConfiguration {
        let all = try list()
        guard let record = all.first(where: { $0.version == number }) else {
            throw ConfigArchiveError.noSuchVersion(number, latest: all.last?.version)
        }
        let base = path(ConfigArchive.versionName(number) + "/" + ConfigArchive.filesName)
        let files = try record.files.map { file -> ConfigSource in
            guard ConfigArchive.isValidRelativePath(file.path) else {
                throw ConfigArchiveError.corrupted(version: number, reason: "it names the file '\(file.path)', which is not a relative path")
            }
            guard let bytes = FileManager.default.contents(atPath: base + "/" + file.path) else {
                throw ConfigArchiveError.corrupted(version: number, reason: "its file \(file.path) is missing")
            }
            guard Hex.encode(SHA256.hash(bytes)) == file.sha256 else {
                throw ConfigArchiveError.corrupted(version: number, reason: "its file \(file.path) does not match the SHA-256 recorded for it")
            }
            return ConfigSource(path: file.path, bytes: bytes)
        }
        guard ConfigArchive.contentHash(of: files) == record.contentHash else {
            throw ConfigArchiveError.corrupted(version: number, reason: "its files do not match its content hash")
        }
        return ArchivedConfiguration(version: record, files: files)
    }

    /// The rollback waiting to be applied, if any.
    public func pendingRollback() throws -> PendingRollback? {
        guard let data = FileManager.default.contents(atPath: path(ConfigArchive.pendingName)) else { return nil }
        guard let pending = try? ConfigArchive.decoder.decode(PendingRollback.self, from: data) else {
            throw ConfigArchiveError.corrupted(version: nil, reason: "\(ConfigArchive.pendingName) is unreadable; remove it")
        }
        return pending
    }

    // MARK: Restoring

    /// Writes archived version `number` into the configuration folder `target` for the node to
    /// apply on its next reload, and records a pending rollback so that the node archives it
    /// as "rollback of N by `requestedBy` (...)" — a new version: history is never rewritten.
    ///
    /// Files are written one by one, each durably (temporary file, flush, rename, flush the
    /// folder); configuration files (as `ConfigLoading` reads them) that the version does not
    /// have are removed; other files in the folder are left alone. Files that would be
    /// replaced or removed are first copied to `replaced/` in the archive. The node reads the
    /// folder only when told to reload, so the restore is complete before it looks; if the
    /// restore is interrupted, running it again finishes it (it is idempotent).
    @discardableResult
    public func restore(_ number: Int, into target: String, requestedBy: String, at time: Date = Date()) throws -> RestoreResult {
        let archived = try version(number)
        lock.lock()
        defer { lock.unlock() }
        let target = target.count > 1 && target.hasSuffix("/") ? String(target.dropLast()) : target
        let current = FileManager.default.fileExists(atPath: target) ? try ConfigArchive.readFolder(target) : []
        let currentBytes = Dictionary(current.map { ($0.path, $0.bytes) }) { first, _ in first }
        let wanted = Set(archived.files.map(\.path))
        var result = RestoreResult(written: [], removed: [], unchanged: [], backup: nil)
        for file in archived.files {
            if currentBytes[file.path] == file.bytes { result.unchanged.append(file.path) } else { result.written.append(file.path) }
        }
        result.removed = current.map(\.path).filter { !wanted.contains($0) }
        let replaced = current.filter { file in !wanted.contains(file.path) || result.written.contains(file.path) }
        try io {
            try DurableFile.makeFolder(self.folder)
            if !replaced.isEmpty {
                let stamp = ConfigArchive.stampFormatter.string(from: time)
                var backup = self.path(ConfigArchive.replacedName + "/\(stamp)-before-restoring-\(number)")
                var suffix = 1
                while FileManager.default.fileExists(atPath: backup) {
                    suffix += 1
                    backup = self.path(ConfigArchive.replacedName + "/\(stamp)-before-restoring-\(number)-\(suffix)")
                }
                try DurableFile.makeFolder(self.path(ConfigArchive.replacedName))
                try self.writeTree(replaced, as: backup)
                result.backup = backup
            }
            for file in archived.files where result.written.contains(file.path) {
                let destination = target + "/" + file.path
                try DurableFile.makeFolder(DurableFile.folder(of: destination))
                try DurableFile.write(destination, [UInt8](file.bytes))
            }
            for path in result.removed { try DurableFile.remove(target + "/" + path) }
            let pending = PendingRollback(version: number, contentHash: archived.version.contentHash, requestedBy: requestedBy, requestedAt: time)
            try DurableFile.write(self.path(ConfigArchive.pendingName), [UInt8](ConfigArchive.encode(pending)))
        }
        return result
    }

    // MARK: Helpers

    private func path(_ relative: String) -> String { folder + "/" + relative }

    static func versionName(_ number: Int) -> String { String(format: "%06d", number) }

    /// Writes `files` (relative paths) into a hidden temporary folder, flushes every file and
    /// folder, then renames it to `destination` and flushes the parent.
    private func writeTree(_ files: [ConfigSource], as destination: String) throws {
        let parent = DurableFile.folder(of: destination)
        let temporary = parent + "/" + ConfigArchive.incomingPrefix + Hex.encode(SecureRandom.bytes(8))
        try syscall("mkdir(\(temporary))") { mkdir(temporary, 0o755) }
        var folders: Set<String> = [temporary]
        for file in files {
            let path = temporary + "/" + file.path
            let folder = DurableFile.folder(of: path)
            if !folders.contains(folder) {
                try DurableFile.makeFolder(folder)
                folders.insert(folder)
            }
            try DurableFile.writeNew(path, [UInt8](file.bytes))
        }
        for folder in folders { try syncDirectory(folder) }
        try syscall("rename(\(destination))") { rename(temporary, destination) }
        try syncDirectory(parent)
    }

    /// Removes temporary folders a crash left behind (only this process writes the archive).
    private func removeIncomplete() {
        for parent in [folder, path(ConfigArchive.replacedName)] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []
            for name in names where name.hasPrefix(ConfigArchive.incomingPrefix) {
                try? FileManager.default.removeItem(atPath: parent + "/" + name)
            }
        }
    }

    private func io<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as SystemError {
            throw ConfigArchiveError.io(error)
        }
    }

    private static func encode<T: Encodable>(_ value: T) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        // Plain records of strings, numbers and dates always encode.
        return try! encoder.encode(value) + Data("\n".utf8)
    }

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    private static let stampFormatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter
    }()
}
