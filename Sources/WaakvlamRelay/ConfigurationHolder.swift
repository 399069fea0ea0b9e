import Foundation
import WaakvlamCore
import WaakvlamTransport

/// The configuration in force with the version it was applied as. Replaced as a whole on
/// reload, so that no signal is decided under half a configuration: a request takes one
/// snapshot at its start and uses only that. A class, so that taking it (on every request)
/// costs one reference instead of a copy of the whole configuration.
public final class ConfigurationSnapshot: Sendable {
    public let configuration: Configuration
    /// The archive version the journal records with every decision.
    public let version: String
    public let contentHash: String
    /// Where each push recipient's signals go, taken apart once instead of per delivery.
    let pushTargets: [String: PushTarget]

    public init(configuration: Configuration, version: String, contentHash: String) {
        self.configuration = configuration
        self.version = version
        self.contentHash = contentHash
        var targets: [String: PushTarget] = [:]
        for organisation in configuration.organisations {
            if case .push(let url) = organisation.delivery, let host = url.host {
                let path = url.path.isEmpty ? "/" : url.path + (url.query.map { "?\($0)" } ?? "")
                targets[organisation.id] = PushTarget(endpoint: Endpoint(host: host, port: UInt16(url.port ?? 443)), path: path)
            }
        }
        pushTargets = targets
    }
}

/// A push recipient's endpoint and the request target signals are posted to.
struct PushTarget: Sendable {
    let endpoint: Endpoint
    let path: String
    /// What every push to it starts with, serialised once.
    let head: RequestHead

    init(endpoint: Endpoint, path: String) {
        self.endpoint = endpoint
        self.path = path
        head = RequestHead(method: "POST", target: path, endpoint: endpoint, fields: [("content-type", "application/json")])
    }
}

/// Holds the current snapshot; reads and swaps are atomic. Every request reads it, on many
/// threads at once, and a reload replaces it now and then: readers share a read-write lock
/// (behind a mutex, the connection threads queued for it and slept in the kernel).
public final class ConfigurationHolder: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>
    private var snapshot: ConfigurationSnapshot

    public init(_ snapshot: ConfigurationSnapshot) {
        self.snapshot = snapshot
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    public var current: ConfigurationSnapshot {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return snapshot
    }

    public func replace(with snapshot: ConfigurationSnapshot) {
        pthread_rwlock_wrlock(lock)
        self.snapshot = snapshot
        pthread_rwlock_unlock(lock)
    }
}
