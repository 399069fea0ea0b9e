import Foundation

/// One structured line per event on stderr, as JSON. Callers pass metadata only: never a
/// payload value or a BSN (the privacy rule of the product).
public final class Log: @unchecked Sendable {
    public enum Level: String, Sendable, Comparable {
        case debug, info, warning, error

        private var rank: Int {
            switch self {
            case .debug: 0
            case .info: 1
            case .warning: 2
            case .error: 3
            }
        }

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rank < rhs.rank }
    }

    public static let shared = Log()

    private let lock = NSLock()
    public var minimumLevel: Level = .info
    /// Where lines go; stderr by default. Tests may capture lines here.
    public var sink: (String) -> Void = { line in
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    public init() {}

    public func log(_ level: Level, _ event: String, _ fields: [String: Any] = [:]) {
        guard level >= minimumLevel else { return }
        var object: [String: Any] = fields
        object["ts"] = Log.timestamp(Date())
        object["level"] = level.rawValue
        object["event"] = event
        let line = String(decoding: JSONText.encode(object, escapingSlashes: true), as: UTF8.self)
        lock.lock()
        defer { lock.unlock() }
        sink(line)
    }

    public func info(_ event: String, _ fields: [String: Any] = [:]) { log(.info, event, fields) }
    public func warning(_ event: String, _ fields: [String: Any] = [:]) { log(.warning, event, fields) }
    public func error(_ event: String, _ fields: [String: Any] = [:]) { log(.error, event, fields) }
    public func debug(_ event: String, _ fields: [String: Any] = [:]) { log(.debug, event, fields) }

    /// RFC 3339 UTC with milliseconds.
    public static func timestamp(_ date: Date) -> String { JSONText.timestamp(date) }
}
