#if canImport(Glibc)
import Glibc
#endif
import Foundation
import WaakvlamSystem

/// Timeouts and limits of client connections.
public struct HTTPClientConfiguration: Sendable {
    public var connectTimeout: TimeInterval
    public var handshakeTimeout: TimeInterval
    /// From the start of sending a request to the end of its response.
    public var responseTimeout: TimeInterval
    /// Idle connections kept per endpoint. At least as many as the concurrent requests a
    /// caller makes to one endpoint (the relay: 32 per recipient), or every burst closes the
    /// extra connections and the next one pays for new handshakes.
    public var maximumIdleConnectionsPerEndpoint: Int
    /// A pooled connection idle for longer is closed rather than reused (servers close idle
    /// keep-alive connections too; Waakvlam's after 60 s).
    public var idleTimeout: TimeInterval
    public var responseLimits: HTTPLimits

    public init(connectTimeout: TimeInterval = 5, handshakeTimeout: TimeInterval = 10, responseTimeout: TimeInterval = 30,
                maximumIdleConnectionsPerEndpoint: Int = 32, idleTimeout: TimeInterval = 30,
                responseLimits: HTTPLimits = HTTPLimits(maximumBodyBytes: 16 << 20)) {
        self.connectTimeout = connectTimeout
        self.handshakeTimeout = handshakeTimeout
        self.responseTimeout = responseTimeout
        self.maximumIdleConnectionsPerEndpoint = maximumIdleConnectionsPerEndpoint
        self.idleTimeout = idleTimeout
        self.responseLimits = responseLimits
    }
}

/// One mutual-TLS connection to a server, for one request at a time, with blocking calls.
/// Not thread-safe: use it from one thread at a time (`HTTPClient` hands each connection to
/// one caller at a time). It drives a `ClientChannel`, waiting for its socket in `poll`.
public final class HTTPClientConnection {
    public var endpoint: Endpoint { channel.endpoint }
    /// The server's verified certificate.
    public let serverCertificate: PeerCertificate
    /// False once the server asked to close, the response was delimited by the close, or
    /// anything failed.
    public var isReusable: Bool { channel.isReusable }
    /// Whether any byte of a response arrived during the last `send` (a request that failed
    /// before that on a reused connection can safely be retried on a new one).
    var receivedResponseBytes: Bool { channel.receivedResponseBytes }

    private let channel: ClientChannel

    /// Connects, runs the handshake and verifies the server's certificate against the CA
    /// bundle of `tls` and against `endpoint`'s host name or IP address.
    public init(to endpoint: Endpoint, tls: TLSContext, configuration: HTTPClientConfiguration = HTTPClientConfiguration()) throws {
        precondition(tls.role == .client, "HTTPClientConnection needs a client TLS context")
        let channel = try ClientChannel(to: endpoint, addresses: try Socket.resolve(endpoint, passive: false), tls: tls,
                                        configuration: configuration)
        guard case .established = try Self.run(channel) else { preconditionFailure("a new channel answered before a request") }
        self.channel = channel
        self.serverCertificate = channel.serverCertificate!
    }

    /// Sends `request` (adding Host and Content-Length) and reads the whole response.
    public func send(_ request: HTTPRequest) throws -> HTTPResponse {
        precondition(isReusable, "send on a connection that cannot be reused")
        channel.begin(SerializedRequest(request, endpoint: channel.endpoint))
        guard case .response(let response) = try Self.run(channel) else { preconditionFailure("a request ended without a response") }
        return response
    }

    /// Closes the connection (sending close_notify).
    public func close() {
        channel.close()
    }

    /// True when a pooled connection is still usable: not expired and nothing (such as the
    /// server's close) arrived while it was idle.
    func isFreshForReuse(now: UInt64) -> Bool {
        channel.isFreshForReuse(now: now)
    }

    /// Advances the channel until it is established or has a response, waiting for its socket.
    private static func run(_ channel: ClientChannel) throws -> ClientChannel.Progress {
        while true {
            let events: Int16
            switch try channel.advance() {
            case .wantRead: events = Int16(POLLIN)
            case .wantWrite: events = Int16(POLLOUT)
            case let done: return done
            }
            if Socket.wait(channel.fd, for: events, deadline: channel.deadline) == .timedOut {
                let phase = channel.phase
                channel.close()
                throw TransportError.timedOut(phase: phase)
            }
        }
    }
}

/// An HTTPS client with mutual TLS and a keep-alive pool per endpoint. Thread-safe: each
/// call takes a connection out of the pool (or opens one) and puts it back afterwards, so
/// concurrent calls to one endpoint use separate connections.
public final class HTTPClient: @unchecked Sendable {
    public let configuration: HTTPClientConfiguration
    private let tls: TLSContext
    private let lock = NSLock()
    private var idle: [Endpoint: [HTTPClientConnection]] = [:]

    /// `tls` must be a client context: it holds this node's certificate and key, which are
    /// presented to servers, and the CAs that server certificates must chain to.
    public init(tls: TLSContext, configuration: HTTPClientConfiguration = HTTPClientConfiguration()) {
        precondition(tls.role == .client, "HTTPClient needs a client TLS context")
        self.tls = tls
        self.configuration = configuration
    }

    deinit {
        closeIdleConnections()
    }

    /// Sends `request` to `endpoint` and returns the response.
    /// - Parameters:
    ///   - serverPins: when given, the server's public-key pin ("sha256//...") must be one of them.
    ///   - idempotent: whether the request may be sent again if a pooled connection turns
    ///     out to have been closed by the server before any response arrived. Defaults to
    ///     true for GET, HEAD, PUT, DELETE and OPTIONS. (A POST carrying an id that the
    ///     server deduplicates is idempotent too.)
    public func send(_ request: HTTPRequest, to endpoint: Endpoint, serverPins: [String]? = nil,
                     idempotent: Bool? = nil) throws -> HTTPResponse {
        let retryable = idempotent ?? ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"].contains(request.method)
        let (connection, reused) = try checkOut(endpoint)
        do {
            try check(connection, pins: serverPins)
            let response = try connection.send(request)
            checkIn(connection)
            return response
        } catch let error as TransportError {
            connection.close()
            guard reused, retryable, error.isConnectionLoss, !connection.receivedResponseBytes else { throw error }
            let fresh = try HTTPClientConnection(to: endpoint, tls: tls, configuration: configuration)
            do {
                try check(fresh, pins: serverPins)
                let response = try fresh.send(request)
                checkIn(fresh)
                return response
            } catch {
                fresh.close()
                throw error
            }
        }
    }

    /// Closes all idle connections (for example when the configuration of peers changed).
    public func closeIdleConnections() {
        lock.lock()
        let all = idle.values.flatMap { $0 }
        idle.removeAll()
        lock.unlock()
        for connection in all { connection.close() }
    }

    private func check(_ connection: HTTPClientConnection, pins: [String]?) throws {
        if let pins, !pins.contains(connection.serverCertificate.publicKeyPin) {
            throw TransportError.pinMismatch(pin: connection.serverCertificate.publicKeyPin)
        }
    }

    private func checkOut(_ endpoint: Endpoint) throws -> (HTTPClientConnection, reused: Bool) {
        let now = monotonicNanoseconds()
        var stale: [HTTPClientConnection] = []
        defer { for connection in stale { connection.close() } }
        lock.lock()
        while let candidate = idle[endpoint]?.popLast() {
            if candidate.isFreshForReuse(now: now) {
                lock.unlock()
                return (candidate, true)
            }
            stale.append(candidate)
        }
        lock.unlock()
        return (try HTTPClientConnection(to: endpoint, tls: tls, configuration: configuration), false)
    }

    private func checkIn(_ connection: HTTPClientConnection) {
        guard connection.isReusable else {
            connection.close()
            return
        }
        lock.lock()
        // Appended in place (a copy taken out and put back would copy the whole list).
        let keep = (idle[connection.endpoint]?.count ?? 0) < configuration.maximumIdleConnectionsPerEndpoint
        if keep { idle[connection.endpoint, default: []].append(connection) }
        lock.unlock()
        if !keep { connection.close() }
    }
}
