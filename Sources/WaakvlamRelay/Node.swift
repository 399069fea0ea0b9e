import Foundation
import WaakvlamCore
import WaakvlamSystem
import WaakvlamTransport

/// The node as far as it is built: the peer listener with mutual TLS, which recognises the
/// calling organisation from its certificate and answers `GET /v1/whoami`. Every request
/// first needs a recognised organisation (403 otherwise); unknown routes get 404.
public final class Node: @unchecked Sendable {
    private let routes: PeerRoutes
    private let server: HTTPServer
    /// The folder the configuration was loaded from, when it was (for `reloadConfiguration`).
    public private(set) var configFolder: String?

    /// Builds the TLS context from `configuration.node.tls` (all paths absolute, as
    /// `ConfigLoading` returns them) and the listener from `listen.peer` and `limits`.
    public init(configuration: Configuration) throws {
        let routes = PeerRoutes(configuration: configuration)
        self.routes = routes
        let node = configuration.node
        let limits = HTTPLimits(maximumHeaderBytes: node.limits.maximumHeaderBytes,
                                maximumHeaderCount: node.limits.maximumHeaderCount,
                                maximumBodyBytes: node.limits.maximumBodyBytes)
        let settings = HTTPServer.Configuration(endpoint: Endpoint(host: node.listen.peer.host, port: node.listen.peer.port),
                                                limits: limits, maximumConnections: node.limits.maximumConnections)
        server = try HTTPServer(configuration: settings, tls: try Self.serverContext(node.tls)) { request, peer in
            routes.respond(to: request, from: peer)
        }
    }

    /// Loads the configuration from `configFolder` (see `loadConfiguration`) and builds the node.
    public convenience init(configFolder: String) throws {
        try self.init(configuration: Self.loadConfiguration(folder: configFolder))
        self.configFolder = configFolder
    }

    /// Loads a configuration folder, logging every issue as a `config_issue` line; throws
    /// when there are errors.
    public static func loadConfiguration(folder: String) throws -> Configuration {
        let result = ConfigLoading.load(directory: folder)
        for issue in result.issues {
            let fields: [String: Any] = ["file": issue.file, "path": issue.path, "message": issue.message]
            if issue.severity == .error { Log.shared.error("config_issue", fields) } else { Log.shared.warning("config_issue", fields) }
        }
        guard let configuration = result.configuration else {
            throw NodeError.invalidConfiguration(folder: folder, errors: result.errors.count)
        }
        return configuration
    }

    /// The server TLS context for these settings: node certificate and key, the CA bundle
    /// partner certificates must chain to, and the CRL when configured.
    public static func serverContext(_ tls: TLSSettings) throws -> TLSContext {
        try TLSContext(role: .server, certificateChain: tls.certificate, privateKey: tls.key, trustedCAs: tls.ca, crl: tls.crl)
    }

    public func start() throws {
        try server.start()
    }

    /// The bound peer port (differs from the configuration when it asked for port 0).
    public var peerPort: UInt16 { server.port }

    /// Switches to a new configuration: organisations and pins at once, TLS files (CA, CRL,
    /// certificate) for new connections. The listen address and limits need a restart.
    public func reload(_ configuration: Configuration) throws {
        let context = try Self.serverContext(configuration.node.tls)
        routes.configuration = configuration
        server.replaceTLSContext(context)
    }

    /// Reloads the folder the node was started from; on any error the running configuration stays.
    public func reloadConfiguration() throws {
        guard let configFolder else { return }
        try reload(Self.loadConfiguration(folder: configFolder))
    }

    public var configuration: Configuration { routes.configuration }

    /// Graceful shutdown; see `HTTPServer.shutdown(gracePeriod:)`.
    @discardableResult
    public func shutdown(gracePeriod: TimeInterval) -> HTTPServer.ShutdownResult {
        server.shutdown(gracePeriod: gracePeriod)
    }

}

public enum NodeError: Error, CustomStringConvertible {
    case invalidConfiguration(folder: String, errors: Int)

    public var description: String {
        switch self {
        case .invalidConfiguration(let folder, let errors):
            "the configuration in \(folder) has \(errors) error\(errors == 1 ? "" : "s") (logged as config_issue); fix them and check with `waakvlam config check \(folder)`"
        }
    }
}

/// The peer API's request handling: identity first, then the route.
final class PeerRoutes: @unchecked Sendable {
    private let lock = NSLock()
    private var current: Configuration

    init(configuration: Configuration) {
        current = configuration
    }

    /// Read on every request, replaced by a reload.
    var configuration: Configuration {
        get {
            lock.lock()
            defer { lock.unlock() }
            return current
        }
        set {
            lock.lock()
            current = newValue
            lock.unlock()
        }
    }

    func respond(to request: HTTPRequest, from peer: HTTPServer.PeerConnection) -> HTTPResponse {
        let organisation: Organisation
        switch Identity.organisation(for: peer.certificate, in: configuration) {
        case .failure(let refusal):
            Log.shared.warning("identity_refused", ["remote": peer.remoteAddress, "code": refusal.code,
                                                    "oin": peer.certificate.subjectSerialNumber ?? "",
                                                    "pin": peer.certificate.publicKeyPin])
            return refusal.response
        case .success(let found):
            organisation = found
        }
        switch request.path {
        case "/v1/whoami":
            guard request.method == "GET" || request.method == "HEAD" else {
                var response = HTTPResponse.error(status: 405, code: "method_not_allowed",
                                                  message: "/v1/whoami answers GET only.")
                response.headers.add("Allow", "GET, HEAD")
                return response
            }
            return Whoami.response(organisation: organisation, certificate: peer.certificate)
        default:
            return .error(status: 404, code: "not_found", message: "There is no \(request.method) \(request.path) on this node.")
        }
    }
}

/// `GET /v1/whoami`: which organisation this node recognises from the caller's certificate,
/// so that partners can test their certificate set-up. The body is written as bytes (keys in a
/// fixed order) because it is on the hot path of every partner's health check.
enum Whoami {
    static func response(organisation: Organisation, certificate: PeerCertificate) -> HTTPResponse {
        var body: [UInt8] = []
        body.reserveCapacity(320)
        func raw(_ text: StaticString) {
            body.append(contentsOf: UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }
        raw("{\"organisation\":{\"id\":")
        appendJSONString(organisation.id, to: &body)
        raw(",\"oin\":")
        appendJSONString(organisation.oin, to: &body)
        raw(",\"name\":")
        appendJSONString(organisation.name, to: &body)
        raw(",\"sector\":")
        appendJSONString(organisation.sector.rawValue, to: &body)
        raw("},\"certificate\":{\"commonName\":")
        appendJSONString(certificate.commonName ?? "", to: &body)
        raw(",\"notAfter\":")
        appendJSONString(utcTimestamp(certificate.notAfter), to: &body)
        raw(",\"pin\":")
        appendJSONString(certificate.publicKeyPin, to: &body)
        raw("}}")
        return .json(status: 200, body)
    }

    /// Appends `text` as a JSON string literal (runs without escapes are copied whole).
    static func appendJSONString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { bytes in
            var runStart = 0
            for index in bytes.indices {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                if byte < 0x20 {
                    out.append(contentsOf: String(format: "\\u%04x", byte).utf8)
                } else {
                    out.append(UInt8(ascii: "\\"))
                    out.append(byte)
                }
                runStart = index + 1
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// RFC 3339 in UTC to the second, e.g. 2029-02-23T22:51:51Z.
    static func utcTimestamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var broken = tm()
        gmtime_r(&seconds, &broken)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(broken.tm_year + 1900)-\(two(broken.tm_mon + 1))-\(two(broken.tm_mday))T"
            + "\(two(broken.tm_hour)):\(two(broken.tm_min)):\(two(broken.tm_sec))Z"
    }
}
