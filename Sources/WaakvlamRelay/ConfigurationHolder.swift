import Foundation
import WaakvlamCore

/// The configuration in force with the version it was applied as. Replaced as a whole on
/// reload, so that no signal is decided under half a configuration: a request takes one
/// snapshot at its start and uses only that.
public struct ConfigurationSnapshot: Sendable {
    public let configuration: Configuration
    /// The archive version the journal records with every decision.
    public let version: String
    public let contentHash: String
}

/// Holds the current snapshot; reads and swaps are atomic.
public final class ConfigurationHolder: @unchecked Sendable {
    private let lock = NSLock()
    private var snapshot: ConfigurationSnapshot

    public init(_ snapshot: ConfigurationSnapshot) {
        self.snapshot = snapshot
    }

    public var current: ConfigurationSnapshot {
        lock.lock()
        defer { lock.unlock() }
        return snapshot
    }

    public func replace(with snapshot: ConfigurationSnapshot) {
        lock.lock()
        self.snapshot = snapshot
        lock.unlock()
    }
}
