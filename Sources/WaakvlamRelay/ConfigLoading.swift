import Foundation
import WaakvlamCore

/// Reads a configuration folder from disk and hands the bytes to Core's parser: the only
/// part of configuration handling that touches the file system. The paths in node.json are
/// resolved against the folder, so the returned configuration holds absolute paths.
public enum ConfigLoading {
    /// Loads `directory` (node.json, organisations.json, signal-types.json, convenants/*.json,
    /// plus the pins file node.json names, when it exists).
    public static func load(directory: String, now: Date = Date()) -> ConfigurationResult {
        let folder = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            let issue = ConfigIssue(file: folder, path: "$", line: nil,
                                    message: "no configuration folder here: give the folder that holds node.json (default: Config)", severity: .error)
            return ConfigurationResult(configuration: nil, issues: [issue])
        }
        let (sources, readIssues) = readSources(folder)
        var issues = readIssues
        var result = ConfigurationParser.parse(sources, now: now)
        let base = absolute(folder)
        if let pinsPath = result.configuration?.node.tls.pins {
            let resolved = resolve(pinsPath, against: base)
            if let bytes = FileManager.default.contents(atPath: resolved) {
                result = ConfigurationParser.parse(sources, pins: ConfigSource(path: display(pinsPath, in: folder), bytes: bytes), now: now)
            } else {
                issues.append(ConfigIssue(file: display(pinsPath, in: folder), path: "$", line: nil,
                                          message: "the pins file named by tls.pins does not exist (yet): run `waakvlam pki init` to create it, or set tls.pins to null",
                                          severity: .warning))
            }
        }
        if var configuration = result.configuration {
            configuration.node.tls.ca = resolve(configuration.node.tls.ca, against: base)
            configuration.node.tls.certificate = resolve(configuration.node.tls.certificate, against: base)
            configuration.node.tls.key = resolve(configuration.node.tls.key, against: base)
            configuration.node.tls.crl = configuration.node.tls.crl.map { resolve($0, against: base) }
            configuration.node.tls.pins = configuration.node.tls.pins.map { resolve($0, against: base) }
            configuration.node.state = resolve(configuration.node.state, against: base)
            result.configuration = configuration
        }
        return ConfigurationResult(configuration: result.configuration, issues: issues + result.issues)
    }

    /// The configuration files of a folder as sources, and issues about files it cannot read.
    public static func readSources(_ folder: String) -> (sources: [ConfigSource], issues: [ConfigIssue]) {
        var sources: [ConfigSource] = []
        var issues: [ConfigIssue] = []
        func read(_ relative: String) {
            let path = folder + "/" + relative
            guard FileManager.default.fileExists(atPath: path) else { return }  // the parser reports a missing file
            if let bytes = FileManager.default.contents(atPath: path) {
                sources.append(ConfigSource(path: path, bytes: bytes))
            } else {
                issues.append(ConfigIssue(file: path, path: "$", line: nil, message: "cannot read this file: check its permissions", severity: .error))
            }
        }
        read(ConfigurationParser.nodeFile)
        read(ConfigurationParser.organisationsFile)
        read(ConfigurationParser.signalTypesFile)
        let convenants = folder + "/" + ConfigurationParser.convenantsFolder
        let names = (try? FileManager.default.contentsOfDirectory(atPath: convenants)) ?? []
        for name in names.sorted() where !name.hasPrefix(".") {
            if name.hasSuffix(".json") {
                read(ConfigurationParser.convenantsFolder + "/" + name)
            } else {
                issues.append(ConfigIssue(file: convenants + "/" + name, path: "$", line: nil,
                                          message: "ignored: only .json files in convenants/ are read; rename it to .json or move it away", severity: .warning))
            }
        }
        return (sources, issues)
    }

    /// How a path named in node.json is shown in messages: joined to the folder as the user
    /// wrote it, with `..` folded where possible ("Config/../run/x" becomes "run/x").
    private static func display(_ path: String, in folder: String) -> String {
        if path.hasPrefix("/") || folder.hasPrefix("/") { return resolve(path, against: folder) }
        var parts: [Substring] = []
        for part in (folder + "/" + path).split(separator: "/") {
            if part == "." { continue }
            if part == "..", let last = parts.last, last != ".." { parts.removeLast() } else { parts.append(part) }
        }
        return parts.isEmpty ? "." : parts.joined(separator: "/")
    }

    private static func absolute(_ folder: String) -> String {
        folder.hasPrefix("/") ? folder : FileManager.default.currentDirectoryPath + "/" + folder
    }

    /// `path` made absolute against `base` (an absolute folder), with `.` and `..` removed.
    static func resolve(_ path: String, against base: String) -> String {
        let joined = path.hasPrefix("/") ? path : base + "/" + path
        var parts: [Substring] = []
        for part in joined.split(separator: "/") {
            switch part {
            case ".": continue
            case "..": if !parts.isEmpty { parts.removeLast() }
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }
}
