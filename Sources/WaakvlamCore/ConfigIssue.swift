import Foundation

/// One configuration file's bytes and the path to show in messages. The parser recognises a
/// file by its name: `node.json`, `organisations.json`, `signal-types.json`, or a `.json`
/// file in a `convenants` folder.
public struct ConfigSource: Sendable, Equatable {
    public var path: String
    public var bytes: Data

    public init(path: String, bytes: Data) {
        self.path = path
        self.bytes = bytes
    }
}

/// A mistake (or a risk) in the configuration: where it is and what to do about it.
public struct ConfigIssue: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable, Equatable {
        case error, warning
    }

    public var file: String
    /// JSON path into the file, e.g. `$.rules[2].fields[1]`.
    public var path: String
    /// The line the value starts on, when the file could be read as JSON.
    public var line: Int?
    public var message: String
    public var severity: Severity

    public init(file: String, path: String, line: Int?, message: String, severity: Severity) {
        self.file = file
        self.path = path
        self.line = line
        self.message = message
        self.severity = severity
    }

    /// `FILE: PATH: error: message (line N)`, the form `waakvlam config check` prints.
    public var description: String {
        "\(file): \(path): \(severity.rawValue): \(message)" + (line.map { " (line \($0))" } ?? "")
    }
}

/// The outcome of parsing: the configuration when there is no error (warnings allowed), and
/// every issue found.
public struct ConfigurationResult: Sendable {
    public var configuration: Configuration?
    public var issues: [ConfigIssue]

    public init(configuration: Configuration?, issues: [ConfigIssue]) {
        self.configuration = configuration
        self.issues = issues
    }

    public var errors: [ConfigIssue] { issues.filter { $0.severity == .error } }
    public var warnings: [ConfigIssue] { issues.filter { $0.severity == .warning } }
}
