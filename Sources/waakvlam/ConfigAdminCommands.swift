import Foundation
import WaakvlamCore
import WaakvlamRelay

// `waakvlam config diff | history | show | rollback`: what an administrator needs to change
// a convenant safely. All offline: they read configuration folders and the node's archive.

let configAdminUsage = """
usage: waakvlam config diff OLD NEW [--json]
         what changes from folder OLD to folder NEW, per convenant; exit 0 without warnings,
         3 when special-category (health, criminal) sharing widens, 1 when a folder is invalid
       waakvlam config history --state DIR [--json]
         the configuration versions the node applied
       waakvlam config show VERSION --state DIR [--file NAME]
         the files of an applied version (VERSION: a number or 'latest')
       waakvlam config rollback VERSION --state DIR --config DIR [--by NAME] [--dry-run]
         write an applied version back into the configuration folder, then reload the node
"""

private func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// The arguments of one subcommand: positional words, `--flag VALUE` options and switches.
private struct Arguments {
    var positional: [String] = []
    var values: [String: String] = [:]
    var switches: Set<String> = []

    /// Nil (after saying why) on an unknown option or a missing value.
    init?(_ arguments: [String], values valueFlags: Set<String>, switches switchFlags: Set<String> = []) {
        var remaining = arguments[...]
        while let word = remaining.popFirst() {
            if valueFlags.contains(word) {
                guard let value = remaining.popFirst(), !value.hasPrefix("--") else {
                    printError("waakvlam: \(word) needs a value")
                    return nil
                }
                values[word] = value
            } else if switchFlags.contains(word) {
                switches.insert(word)
            } else if word.hasPrefix("--") {
                printError("waakvlam: unknown option '\(word)'")
                return nil
            } else {
                positional.append(word)
            }
        }
    }
}

private func usageError() -> Int32 {
    printError(configAdminUsage)
    return 2
}

/// A configuration folder parsed as written (paths in node.json not resolved, no pins file),
/// which is how two folders, or a folder and an archived version, compare like for like.
private func loadAsWritten(_ folder: String) -> ConfigurationResult {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
        return ConfigurationResult(configuration: nil, issues: [ConfigIssue(file: folder, path: "$", line: nil,
                                                                            message: "no configuration folder here: give the folder that holds node.json", severity: .error)])
    }
    let (sources, readIssues) = ConfigLoading.readSources(folder)
    let result = ConfigurationParser.parse(sources)
    return ConfigurationResult(configuration: result.configuration, issues: readIssues + result.issues)
}

/// Prints the errors of an invalid configuration to stderr; nil then.
private func validConfiguration(_ result: ConfigurationResult, _ name: String) -> Configuration? {
    if let configuration = result.configuration { return configuration }
    for issue in result.errors { printError(issue.description) }
    printError("waakvlam: \(name) has \(result.errors.count) error\(result.errors.count == 1 ? "" : "s"); fix them (`waakvlam config check \(name)` lists them)")
    return nil
}

// MARK: - diff

/// `waakvlam config diff OLD NEW [--json]`.
func runConfigDiffCommand(_ arguments: [String]) -> Int32 {
    guard let parsed = Arguments(arguments, values: [], switches: ["--json"]), parsed.positional.count == 2 else { return usageError() }
    let (oldFolder, newFolder) = (parsed.positional[0], parsed.positional[1])
    let old = validConfiguration(loadAsWritten(oldFolder), oldFolder)
    let new = validConfiguration(loadAsWritten(newFolder), newFolder)
    guard let old, let new else { return 1 }
    let diff = ConfigDiff(old: old, new: new)
    if parsed.switches.contains("--json") {
        FileHandle.standardOutput.write(diff.jsonData() + Data("\n".utf8))
    } else {
        print(diff.render(), terminator: "")
    }
    return diff.warnings.isEmpty ? 0 : 3
}

// MARK: - history and show

private let timeFormatter: DateFormatter = {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyy-MM-dd HH:mm:ss'Z'"
    return formatter
}()

/// `waakvlam config history --state DIR [--json]`.
func runConfigHistoryCommand(_ arguments: [String]) -> Int32 {
    guard let parsed = Arguments(arguments, values: ["--state"], switches: ["--json"]), parsed.positional.isEmpty,
          let state = parsed.values["--state"] else { return usageError() }
    let archive = ConfigArchive(stateFolder: state)
    do {
        let versions = try archive.list()
        if parsed.switches.contains("--json") {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            FileHandle.standardOutput.write(try encoder.encode(versions) + Data("\n".utf8))
            return 0
        }
        guard !versions.isEmpty else {
            print("No configuration has been archived in \(archive.folder) yet: the node archives each configuration it applies.")
            return 0
        }
        let rows = [["VERSION", "APPLIED (UTC)", "APPLIED BY", "HASH", "SUMMARY"]]
            + versions.map { [String($0.version), timeFormatter.string(from: $0.appliedAt), $0.appliedBy, String($0.contentHash.prefix(12)), $0.diffSummary] }
        let widths = (0..<4).map { column in rows.map { $0[column].count }.max()! }
        for row in rows {
            let padded = (0..<4).map { column -> String in
                let cell = row[column]
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return column == 0 ? padding + cell : cell + padding
            }
            print((padded + [row[4]]).joined(separator: "  "))
        }
        if let pending = try archive.pendingRollback() {
            print("\nPending: rollback to version \(pending.version), requested by \(pending.requestedBy) at \(timeFormatter.string(from: pending.requestedAt)); the node records it as a new version when it next applies its configuration.")
        }
        return 0
    } catch {
        printError("waakvlam: \(error)")
        return 1
    }
}

/// A version number or "latest".
private func versionNumber(_ text: String, in archive: ConfigArchive) throws -> Int? {
    if text == "latest" { return try archive.list().last?.version ?? 0 }
    guard let number = Int(text), number > 0 else { return nil }
    return number
}

/// `waakvlam config show VERSION --state DIR [--file NAME]`.
func runConfigShowCommand(_ arguments: [String]) -> Int32 {
    guard let parsed = Arguments(arguments, values: ["--state", "--file"]), parsed.positional.count == 1,
          let state = parsed.values["--state"] else { return usageError() }
    let archive = ConfigArchive(stateFolder: state)
    do {
        guard let number = try versionNumber(parsed.positional[0], in: archive) else {
            printError("waakvlam: '\(parsed.positional[0])' is not a version: give a number from `waakvlam config history` or 'latest'")
            return 2
        }
        let archived = try archive.version(number)
        if let name = parsed.values["--file"] {
            let matches = archived.files.filter { $0.path == name || $0.path.hasSuffix("/" + name) }
            guard matches.count == 1 else {
                printError("waakvlam: version \(number) has \(matches.isEmpty ? "no" : "more than one") file '\(name)'; its files: \(archived.files.map(\.path).joined(separator: ", "))")
                return 1
            }
            FileHandle.standardOutput.write(matches[0].bytes)
            return 0
        }
        let record = archived.version
        print("version \(record.version), applied \(timeFormatter.string(from: record.appliedAt)) by \(record.appliedBy)")
        print("content hash: \(record.contentHash)")
        print("changes: \(record.diffSummary)")
        for file in archived.files {
            print("\n==> \(file.path) <==")
            let text = String(decoding: file.bytes, as: UTF8.self)
            print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
        }
        return 0
    } catch {
        printError("waakvlam: \(error)")
        return 1
    }
}

// MARK: - rollback

/// `waakvlam config rollback VERSION --state DIR --config DIR [--by NAME] [--dry-run]`: shows
/// what changes from the folder to the archived version, writes the version's files into the
/// folder, and asks for a reload. The node then archives it as a new version, so history is
/// never rewritten.
func runConfigRollbackCommand(_ arguments: [String]) -> Int32 {
    guard let parsed = Arguments(arguments, values: ["--state", "--config", "--by"], switches: ["--dry-run"]), parsed.positional.count == 1,
          let state = parsed.values["--state"], let folder = parsed.values["--config"] else { return usageError() }
    let environment = ProcessInfo.processInfo.environment
    let requestedBy = parsed.values["--by"] ?? environment["SUDO_USER"] ?? environment["USER"] ?? environment["LOGNAME"] ?? "unknown"
    let archive = ConfigArchive(stateFolder: state)
    do {
        guard let number = try versionNumber(parsed.positional[0], in: archive) else {
            printError("waakvlam: '\(parsed.positional[0])' is not a version: give a number from `waakvlam config history`")
            return 2
        }
        let archived = try archive.version(number)
        let target = ConfigurationParser.parse(archived.files)
        guard let targetConfiguration = target.configuration else {
            for issue in target.errors { printError(issue.description) }
            printError("waakvlam: archived version \(number) does not pass today's validation, so the node would refuse it; edit the folder instead")
            return 1
        }
        let record = archived.version
        print("Rolling \(folder) back to version \(number) (applied \(timeFormatter.string(from: record.appliedAt)) by \(record.appliedBy), content hash \(record.contentHash.prefix(12))).")
        let current = loadAsWritten(folder)
        if let currentConfiguration = current.configuration {
            print("What changes from the folder as it is now to version \(number):\n")
            print(ConfigDiff(old: currentConfiguration, new: targetConfiguration).render(), terminator: "")
        } else {
            print("The folder as it is now has errors, so no diff can be shown; version \(number) replaces it:")
            for issue in current.errors { print("  " + issue.description) }
        }
        if parsed.switches.contains("--dry-run") {
            print("\nDry run: nothing written.")
            return 0
        }
        let result = try archive.restore(number, into: folder, requestedBy: requestedBy)
        print("")
        if result.written.isEmpty, result.removed.isEmpty {
            print("The folder already holds version \(number): nothing written.")
        } else {
            if !result.written.isEmpty { print("Written: \(result.written.joined(separator: ", "))") }
            if !result.removed.isEmpty { print("Removed: \(result.removed.joined(separator: ", "))") }
            if let backup = result.backup { print("The files it replaced or removed are kept in \(backup)") }
        }
        return requestApply(folder: folder, version: number, requestedBy: requestedBy)
    } catch {
        printError("waakvlam: \(error)")
        return 1
    }
}

/// The seam between restoring files and the node applying them. Today the operator reloads
/// the node; when the node offers an admin endpoint that applies the folder, call it here and
/// print the version it archived.
private func requestApply(folder: String, version: Int, requestedBy: String) -> Int32 {
    print("""
    Nothing changes in the running node until it reloads. Apply the restored files with
      systemctl reload waakvlamd      (or: kill -HUP <pid of waakvlamd>)
    The node validates them, applies them as a whole and archives them as a new version
    ("rollback of \(version) by \(requestedBy)"); `waakvlam config history` then shows it.
    """)
    return 0
}
