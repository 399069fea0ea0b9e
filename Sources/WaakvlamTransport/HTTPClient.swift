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

/// One mutual-TLS connection to a server, for one request at a time. Not thread-safe: use it
/// from one thread at a time (`HTTPClient` hands each connection to one caller at a time).
public final class HTTPClientConnection {
    public let endpoint: Endpoint
    /// The server's verified certificate.
    public let serverCertificate: PeerCertificate
    /// False once the server asked to close, the response was delimited by the close, or
    /// anything failed.
    public private(set) var isReusable = true
    /// Whether any byte of a response arrived during the last `send` (a request that failed
    /// before that on a reused connection can safely be retried on a new one).
    private(set) var receivedResponseBytes = false
    var lastUsed = monotonicNanoseconds()

    private let connection: TLSConnection
    private var parser: HTTPResponseParser
    private let configuration: HTTPClientConfiguration
    private let buffer: UnsafeMutableRawBufferPointer

    /// Connects, runs the handshake and verifies the server's certificate against the CA
    /// bundle of `tls` and against `endpoint`'s host name or IP address.
    public init(to endpoint: Endpoint, tls: TLSContext, configuration: HTTPClientConfiguration = HTTPClientConfiguration()) throws {
        precondition(tls.role == .client, "HTTPClientConnection needs a client TLS context")
        self.endpoint = endpoint
        self.configuration = configuration
        self.parser = HTTPResponseParser(limits: configuration.responseLimits)
        Socket.ignoreSIGPIPE
        let start = monotonicNanoseconds()
        let fd = try Socket.connect(to: endpoint, deadline: start + Self.nanoseconds(configuration.connectTimeout))
        let connection = try TLSConnection(context: tls, fd: fd)
        try connection.expectServer(endpoint)
        do {
            try connection.handshake(deadline: monotonicNanoseconds() + Self.nanoseconds(configuration.handshakeTimeout))
        } catch TransportError.connectionClosed {
            throw TransportError.handshake(reason: "the server closed the connection (it may be at its connection limit)")
        }
        guard let certificate = connection.peerCertificate() else {
            throw TransportError.handshake(reason: "the server sent no certificate")
        }
        self.connection = connection
        self.serverCertificate = certificate
        self.buffer = .allocate(byteCount: 16 << 10, alignment: 16)
    }

    deinit {
        connection.close()
        buffer.deallocate()
    }

    /// Sends `request` (adding Host and Content-Length) and reads the whole response.
    public func send(_ request: HTTPRequest) throws -> HTTPResponse {
        precondition(isReusable, "send on a connection that cannot be reused")
        isReusable = false
        receivedResponseBytes = false
        let deadline = monotonicNanoseconds() + Self.nanoseconds(configuration.responseTimeout)
        try connection.write(Self.serialize(request, endpoint: endpoint), deadline: deadline)
        parser.requestMethod = request.method
        while true {
            switch parser.next() {
            case .response(let response, let keepAlive):
                isReusable = keepAlive && request.keepAlive && !parser.hasUnconsumedBytes
                lastUsed = monotonicNanoseconds()
                return response
            case .error(let error):
                throw TransportError.protocolViolation(error)
            case .needMoreData:
                let count = try connection.read(into: buffer, deadline: deadline, phase: "response")
                if count == 0 {
                    switch parser.finishAtEndOfStream() {
                    case .response(let response, _): return response
                    case .error(let error): throw TransportError.protocolViolation(error)
                    case .needMoreData: throw TransportError.connectionClosed
                    }
                }
                receivedResponseBytes = true
                parser.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            }
        }
    }

    /// Closes the connection (sending close_notify).
    public func close() {
        isReusable = false
        connection.close()
    }

    /// True when a pooled connection is still usable: not expired and nothing (such as the
    /// server's close) arrived while it was idle.
    /// `now` may be older than `lastUsed`: another thread can check a connection in after the
    /// caller read the clock.
    func isFreshForReuse(now: UInt64) -> Bool {
        isReusable && now - min(now, lastUsed) < Self.nanoseconds(configuration.idleTimeout) && !connection.isReadableWhileIdle
    }

    static func serialize(_ request: HTTPRequest, endpoint: Endpoint) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128 + request.headers.count * 32 + request.body.count)
        out.append(contentsOf: request.method.utf8)
        out.append(SP)
        out.append(contentsOf: request.target.utf8)
        out.append(contentsOf: " HTTP/1.1\r\n".utf8)
        if request.headers["host"] == nil {
            // Endpoint.description, written without building it.
            let brackets = endpoint.hostNeedsBrackets
            out.append(contentsOf: "Host: ".utf8)
            if brackets { out.append(UInt8(ascii: "[")) }
            out.append(contentsOf: endpoint.host.utf8)
            out.append(contentsOf: brackets ? "]:".utf8 : ":".utf8)
            JSONText.appendInteger(Int(endpoint.port), to: &out)
            out.append(contentsOf: [CR, LF])
        }
        for field in request.headers where field.name != "content-length" && field.name != "transfer-encoding" {
            appendField(field.name, field.value, to: &out)
        }
        if !request.body.isEmpty || request.method == "POST" || request.method == "PUT" || request.method == "PATCH" {
            out.append(contentsOf: "Content-Length: ".utf8)
            JSONText.appendInteger(request.body.count, to: &out)
            out.append(contentsOf: [CR, LF])
        }
        if !request.keepAlive { appendField("connection", "close", to: &out) }
        out.append(contentsOf: [CR, LF])
        out.append(contentsOf: request.body)
        return out
    }

    static func nanoseconds(_ interval: TimeInterval) -> UInt64 {
        UInt64(max(0, interval) * 1_000_000_000)
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
