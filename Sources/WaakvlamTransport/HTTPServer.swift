#if canImport(Glibc)
import Glibc
#endif
import Foundation
import WaakvlamSystem

/// A mutual-TLS HTTP/1.1 server with one thread per connection.
///
/// An acceptor thread only accepts sockets; each accepted socket gets its own thread (small
/// stack; reused for a later connection, see `ConnectionThreads`) that runs the TLS
/// handshake, reads requests, calls the handler and writes the responses. So a slow, idle or half-open client only ever occupies its own thread, and a
/// handler may block (the relay waits for a journal fsync before answering) without holding
/// up any other connection. The number of connections, and so of threads, is bounded by
/// `maximumConnections`. See docs/TRANSPORT.md for why this design was chosen.
public final class HTTPServer: @unchecked Sendable {
    /// Called once per request, on the connection's thread, possibly from many threads at
    /// once; it must be thread-safe. It may block for a while (a journal fsync): only this
    /// connection waits. Responses on one connection are written in request order.
    public typealias Handler = @Sendable (HTTPRequest, PeerConnection) -> HTTPResponse

    /// The client on the other end of a connection, after the TLS handshake verified its
    /// certificate chain (and the CRL, when configured).
    public struct PeerConnection: Sendable {
        public let id: UInt64
        /// "ip:port"
        public let remoteAddress: String
        public let certificate: PeerCertificate
        /// For example "TLSv1.3".
        public let tlsVersion: String
        public let cipher: String
    }

    public struct Configuration: Sendable {
        public var endpoint: Endpoint
        public var limits: HTTPLimits
        public var maximumConnections: Int
        /// From accepting the socket to the end of the TLS handshake.
        public var handshakeTimeout: TimeInterval
        /// From the first byte of a request to the end of its head.
        public var headerTimeout: TimeInterval
        /// From the end of the head to the end of the body.
        public var bodyTimeout: TimeInterval
        /// How long a keep-alive connection may wait for its next request.
        public var idleTimeout: TimeInterval
        /// For writing one response.
        public var writeTimeout: TimeInterval
        /// Stack of each connection thread.
        public var threadStackBytes: Int
        /// Added to every response that does not set the field itself. The defaults suit an
        /// API that carries personal data: never cached, never sniffed or framed, HTTPS only.
        public var defaultResponseHeaders: HTTPHeaders

        public init(endpoint: Endpoint, limits: HTTPLimits = HTTPLimits(), maximumConnections: Int = 1024,
                    handshakeTimeout: TimeInterval = 10, headerTimeout: TimeInterval = 10,
                    bodyTimeout: TimeInterval = 30, idleTimeout: TimeInterval = 60,
                    writeTimeout: TimeInterval = 30, threadStackBytes: Int = 512 << 10,
                    defaultResponseHeaders: HTTPHeaders = Configuration.securityHeaders) {
            self.endpoint = endpoint
            self.limits = limits
            self.maximumConnections = maximumConnections
            self.handshakeTimeout = handshakeTimeout
            self.headerTimeout = headerTimeout
            self.bodyTimeout = bodyTimeout
            self.idleTimeout = idleTimeout
            self.writeTimeout = writeTimeout
            self.threadStackBytes = threadStackBytes
            self.defaultResponseHeaders = defaultResponseHeaders
        }

        /// OWASP's headers for REST responses.
        public static let securityHeaders = HTTPHeaders([
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
            ("Strict-Transport-Security", "max-age=31536000"),
        ])
    }

    /// What `shutdown` achieved.
    public struct ShutdownResult: Sendable, Equatable {
        /// Connections still open at the deadline, whose sockets were then shut down.
        public let forcedConnections: Int
        public var completedInTime: Bool { forcedConnections == 0 }

        public init(forcedConnections: Int) {
            self.forcedConnections = forcedConnections
        }
    }

    private enum State { case created, running, draining, stopped }

    public let configuration: Configuration
    private let handler: Handler
    private let defaultHeaders: PreparedHeaders
    private let threads: ConnectionThreads
    /// Told the cause of every failed TLS handshake (see `HandshakeFailure`), for metrics.
    /// Set before `start`.
    public var onHandshakeFailure: (@Sendable (HandshakeFailure) -> Void)?
    private let condition = NSCondition()
    private var state = State.created
    private var tls: TLSContext
    private let shutdownSignal: ShutdownSignal
    private var listenerFD: Int32 = -1
    private var acceptorRunning = false
    /// Open connections by id, with their sockets (for a forced shutdown).
    private var connections: [UInt64: Int32] = [:]
    private var nextConnectionID: UInt64 = 0
    private var boundPort: UInt16 = 0

    public init(configuration: Configuration, tls: TLSContext, handler: @escaping Handler) throws {
        precondition(tls.role == .server, "HTTPServer needs a server TLS context")
        self.configuration = configuration
        self.defaultHeaders = PreparedHeaders(configuration.defaultResponseHeaders)
        self.threads = ConnectionThreads(stackSize: configuration.threadStackBytes)
        self.tls = tls
        self.handler = handler
        self.shutdownSignal = try ShutdownSignal()
    }

    deinit {
        if listenerFD >= 0 { close(listenerFD) }
    }

    /// The port actually bound (useful with port 0).
    public var port: UInt16 {
        condition.lock()
        defer { condition.unlock() }
        return boundPort
    }

    public var openConnectionCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return connections.count
    }

    /// Binds, listens and starts accepting. Throws when the address cannot be used.
    public func start() throws {
        condition.lock()
        defer { condition.unlock() }
        precondition(state == .created, "start() called twice")
        Socket.ignoreSIGPIPE
        let (fd, port) = try Socket.listen(on: configuration.endpoint)
        listenerFD = fd
        boundPort = port
        do {
            try spawnDetachedThread(stackSize: configuration.threadStackBytes) { [self] in acceptLoop() }
        } catch {
            close(fd)
            listenerFD = -1
            throw TransportError.bind(address: configuration.endpoint.description, reason: "\(error)")
        }
        acceptorRunning = true
        state = .running
        Log.shared.info("server_listening", ["address": "\(configuration.endpoint.host):\(port)",
                                             "max_connections": configuration.maximumConnections])
    }

    /// Uses `tls` for connections accepted from now on (for example after a CRL update).
    public func replaceTLSContext(_ tls: TLSContext) {
        precondition(tls.role == .server, "HTTPServer needs a server TLS context")
        condition.lock()
        self.tls = tls
        condition.unlock()
    }

    /// Graceful shutdown: stop accepting, let requests in progress finish (their responses
    /// carry `Connection: close`), close idle keep-alive connections at once, and wait until
    /// all connections are gone or `gracePeriod` has passed. Then any connection left is
    /// shut down at the socket (a handler still running is not interrupted; its response is
    /// lost). Blocks the caller; returns how many connections had to be forced.
    @discardableResult
    public func shutdown(gracePeriod: TimeInterval) -> ShutdownResult {
        condition.lock()
        defer { condition.unlock() }
        guard state == .running else { return ShutdownResult(forcedConnections: 0) }
        state = .draining
        Log.shared.info("server_draining", ["open_connections": connections.count])
        shutdownSignal.raise()
        let deadline = Date(timeIntervalSinceNow: gracePeriod)
        while acceptorRunning || !connections.isEmpty {
            if !condition.wait(until: deadline) { break }
        }
        let forced = connections.count
        if forced > 0 {
            for fd in connections.values { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
            let afterForce = Date(timeIntervalSinceNow: 1)
            while !connections.isEmpty && condition.wait(until: afterForce) {}
        }
        state = .stopped
        threads.stop()
        Log.shared.info("server_stopped", ["forced_connections": forced])
        return ShutdownResult(forcedConnections: forced)
    }

    // MARK: - Accepting

    private func acceptLoop() {
        let listener = listenerFD
        defer {
            condition.lock()
            close(listener)
            listenerFD = -1
            acceptorRunning = false
            condition.broadcast()
            condition.unlock()
        }
        while true {
            switch Socket.wait(listener, for: Int16(POLLIN), deadline: .max, interrupt: shutdownSignal.readFD) {
            case .interrupted, .timedOut: return
            case .ready: break
            }
            while true {
                var address = sockaddr_storage()
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let fd = withUnsafeMutablePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        accept(listener, $0, &length)
                    }
                }
                if fd < 0 {
                    switch errno {
                    case EAGAIN, EWOULDBLOCK: break
                    case EINTR, ECONNABORTED, EPROTO: continue
                    default:
                        // Out of descriptors or memory: back off instead of spinning.
                        Log.shared.error("accept_failed", ["reason": String(cString: strerror(errno))])
                        usleep(10_000)
                    }
                    break
                }
                // (accept4 is not visible to Swift on Glibc; two fcntl calls do the same.)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                admit(fd, remote: Socket.describe(address))
            }
        }
    }

    /// Registers the connection and starts its thread, or refuses it over the limit.
    private func admit(_ fd: Int32, remote: String) {
        condition.lock()
        guard connections.count < configuration.maximumConnections else {
            condition.unlock()
            close(fd)
            Log.shared.warning("connection_refused", ["remote": remote, "reason": "connection limit reached",
                                                      "limit": configuration.maximumConnections])
            return
        }
        nextConnectionID += 1
        let id = nextConnectionID
        connections[id] = fd
        let tls = self.tls
        condition.unlock()
        Socket.setNoDelay(fd)
        do {
            try threads.run { [self] in serve(id: id, fd: fd, remote: remote, tls: tls) }
        } catch {
            close(fd)
            finished(id)
            Log.shared.error("connection_refused", ["remote": remote, "reason": "cannot start a thread: \(error)"])
        }
    }

    private func finished(_ id: UInt64) {
        condition.lock()
        connections[id] = nil
        condition.broadcast()
        condition.unlock()
    }

    private var isDraining: Bool {
        condition.lock()
        defer { condition.unlock() }
        return state != .running
    }

    // MARK: - One connection

    private func serve(id: UInt64, fd: Int32, remote: String, tls: TLSContext) {
        let connection: TLSConnection
        do {
            connection = try TLSConnection(context: tls, fd: fd)
        } catch {
            finished(id)
            return
        }
        // Unregister before the socket is closed, so a forced shutdown never touches a
        // descriptor number that was already reused.
        defer {
            finished(id)
            connection.close()
        }
        do {
            try connection.handshake(deadline: deadline(configuration.handshakeTimeout), interrupt: shutdownSignal.readFD)
        } catch TransportError.shuttingDown {
            return
        } catch TransportError.connectionClosed {
            // A port probe or health check: nothing to warn about.
            Log.shared.debug("connection_closed_before_tls", ["remote": remote])
            return
        } catch {
            let failure = HandshakeFailure(error)
            onHandshakeFailure?(failure)
            Log.shared.warning("tls_handshake_failed", ["remote": remote, "cause": failure.rawValue, "reason": "\(error)"])
            return
        }
        guard let certificate = connection.peerCertificate() else {
            onHandshakeFailure?(.noClientCertificate)
            Log.shared.warning("tls_handshake_failed", ["remote": remote, "cause": HandshakeFailure.noClientCertificate.rawValue,
                                                        "reason": "no client certificate"])
            return
        }
        let peer = PeerConnection(id: id, remoteAddress: remote, certificate: certificate,
                                  tlsVersion: connection.protocolVersion, cipher: connection.cipher)
        serveRequests(on: connection, peer: peer)
    }

    private func serveRequests(on connection: TLSConnection, peer: PeerConnection) {
        var parser = HTTPRequestParser(limits: configuration.limits)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 << 10, alignment: 16)
        defer { buffer.deallocate() }
        var idleSince = monotonicNanoseconds()
        var requestStarted: UInt64 = 0
        var bodyStarted: UInt64 = 0

        func refuse(_ error: HTTPParseError) {
            Log.shared.warning("http_request_refused", ["remote": peer.remoteAddress, "status": error.status, "code": error.code])
            try? connection.write(bytes(of: error.response, keepAlive: false), deadline: deadline(configuration.writeTimeout))
            connection.linger(until: deadline(2))
        }

        while true {
            switch parser.next() {
            case .request(let request):
                let response = handler(request, peer)
                let keepAlive = request.keepAlive && !isDraining
                let bytes = bytes(of: response, keepAlive: keepAlive, headRequest: request.method == "HEAD")
                do {
                    try connection.write(bytes, deadline: deadline(configuration.writeTimeout))
                } catch {
                    Log.shared.warning("http_response_failed", ["remote": peer.remoteAddress, "reason": "\(error)"])
                    return
                }
                guard keepAlive else { return }
                idleSince = monotonicNanoseconds()
                requestStarted = 0
                bodyStarted = 0

            case .continueExpected:
                do {
                    try connection.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8), deadline: deadline(configuration.writeTimeout))
                } catch {
                    return
                }

            case .error(let error):
                refuse(error)
                return

            case .needMoreData:
                let waitDeadline: UInt64
                var interrupt: Int32?
                let phase: String
                if !parser.isInsideRequest {
                    // Between requests: idle keep-alive, closed at once when draining.
                    if isDraining { return }
                    waitDeadline = idleSince + nanoseconds(configuration.idleTimeout)
                    interrupt = shutdownSignal.readFD
                    phase = "idle"
                } else if parser.isReadingBody {
                    if bodyStarted == 0 { bodyStarted = monotonicNanoseconds() }
                    waitDeadline = bodyStarted + nanoseconds(configuration.bodyTimeout)
                    phase = "body"
                } else {
                    waitDeadline = requestStarted + nanoseconds(configuration.headerTimeout)
                    phase = "header"
                }
                let count: Int
                do {
                    count = try connection.read(into: buffer, deadline: waitDeadline, interrupt: interrupt, phase: phase)
                } catch TransportError.timedOut {
                    if phase != "idle" {
                        Log.shared.warning("http_request_timeout", ["remote": peer.remoteAddress, "phase": phase])
                        let timeout = HTTPResponse.error(status: 408, code: "request_timeout",
                                                         message: "The request was not received completely within the \(phase) timeout.")
                        try? connection.write(bytes(of: timeout, keepAlive: false), deadline: deadline(configuration.writeTimeout))
                    }
                    return
                } catch {
                    return
                }
                if count == 0 { return }
                if !parser.isInsideRequest { requestStarted = monotonicNanoseconds() }
                parser.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            }
        }
    }

    private func bytes(of response: HTTPResponse, keepAlive: Bool, headRequest: Bool = false) -> [UInt8] {
        response.serialized(keepAlive: keepAlive, dateLine: HTTPDate.line(), headRequest: headRequest, defaults: defaultHeaders)
    }

    private func nanoseconds(_ interval: TimeInterval) -> UInt64 {
        UInt64(max(0, interval) * 1_000_000_000)
    }

    private func deadline(_ interval: TimeInterval) -> UInt64 {
        monotonicNanoseconds() + nanoseconds(interval)
    }
}

/// Why a TLS handshake failed, in a few stable classes (the metric label
/// `waakvlam_tls_handshake_failures_total{cause=...}`).
public enum HandshakeFailure: String, Sendable, CaseIterable {
    case noClientCertificate = "no_client_certificate"
    case certificateExpired = "certificate_expired"
    case certificateRevoked = "certificate_revoked"
    case unknownCA = "unknown_ca"
    case protocolVersion = "protocol_version"
    case timeout
    case other

    /// Classifies OpenSSL's reason text.
    init(_ error: Error) {
        if case TransportError.timedOut = error {
            self = .timeout
            return
        }
        let text = "\(error)".lowercased()
        if text.contains("expired") || text.contains("not yet valid") {
            self = .certificateExpired
        } else if text.contains("revoked") {
            self = .certificateRevoked
        } else if text.contains("did not return a certificate") || text.contains("no client certificate") {
            self = .noClientCertificate
        } else if text.contains("issuer") || text.contains("unknown ca") || text.contains("self-signed") || text.contains("self signed")
                    || text.contains("certificate verify failed") {
            self = .unknownCA
        } else if text.contains("protocol") || text.contains("version") {
            self = .protocolVersion
        } else {
            self = .other
        }
    }
}
