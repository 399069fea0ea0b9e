#if canImport(Glibc)
import Glibc
#endif
import Foundation
import WaakvlamSystem

/// A mutual-TLS HTTP/1.1 server on event loops: each loop is one thread waiting in epoll over
/// its share of the connections (non-blocking TLS, a state machine per connection), so that a
/// request costs no thread switch of its own and one wake-up serves every connection that
/// became ready. A slow, idle or half-open client costs a table entry, not a thread.
///
/// Handlers come in two kinds. An `AsyncHandler` runs on the loop and must not block: it
/// answers through its `Responder`, from any thread, when it is ready (the relay answers a
/// submission from the journal's completion, once the signal is on disk). A blocking
/// `Handler` runs on a thread of its own (reused, see `HandlerThreads`), so it may wait
/// without holding up other connections. Responses on one connection are written in request
/// order: the next request is read only once the previous one was answered. The number of
/// connections is bounded by `maximumConnections`. See docs/TRANSPORT.md.
public final class HTTPServer: @unchecked Sendable {
    /// Called once per request on a thread of its own, possibly from many threads at once; it
    /// must be thread-safe. It may block for a while: only this connection waits.
    public typealias Handler = @Sendable (HTTPRequest, PeerConnection) -> HTTPResponse
    /// Called once per request on the connection's event loop; it must not block. It answers
    /// by calling `respond` on the responder exactly once, from any thread.
    public typealias AsyncHandler = @Sendable (HTTPRequest, PeerConnection, Responder) -> Void

    /// Answers one request.
    public struct Responder: @unchecked Sendable {
        fileprivate let loop: ConnectionLoop
        fileprivate let token: UInt64
        /// Which request of the connection this answers (a late or second answer must never
        /// answer the next one).
        fileprivate let request: UInt64
        fileprivate let threads: HandlerThreads

        /// The event loop of the request's connection: work that ends in the answer runs
        /// there most cheaply.
        public var eventLoop: EventLoop { loop.eventLoop }

        /// Runs `work`, which may block, on a handler thread and answers with its result.
        public func respond(blocking work: @escaping @Sendable () -> HTTPResponse) {
            do {
                try threads.run { respond(work()) }
            } catch {
                Log.shared.error("handler_thread_failed", ["reason": "\(error)"])
                respond(.error(status: 503, code: "server_busy", message: "The server cannot take this request right now; send it again later."))
            }
        }

        /// Any thread; once. The response is dropped if the connection is gone meanwhile.
        public func respond(_ response: HTTPResponse) {
            if loop.eventLoop.isCurrent {
                loop.respond(token, request, response)
            } else {
                loop.eventLoop.execute { [loop, token, request] in loop.respond(token, request, response) }
            }
        }
    }

    /// The client on the other end of a connection, after the TLS handshake verified its
    /// certificate chain (and the CRL, when configured). A class: every request of the
    /// connection hands it on, and a copy of the struct would retain each of its strings.
    public final class PeerConnection: Sendable {
        public let id: UInt64
        /// "ip:port"
        public let remoteAddress: String
        public let certificate: PeerCertificate
        /// For example "TLSv1.3".
        public let tlsVersion: String
        public let cipher: String

        init(id: UInt64, remoteAddress: String, certificate: PeerCertificate, tlsVersion: String, cipher: String) {
            self.id = id
            self.remoteAddress = remoteAddress
            self.certificate = certificate
            self.tlsVersion = tlsVersion
            self.cipher = cipher
        }
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
        /// Stack of each thread (event loops and the threads of blocking handlers).
        public var threadStackBytes: Int
        /// Event loops (threads) sharing the connections; by default one per processor, at most 4.
        public var eventLoops: Int
        /// Added to every response that does not set the field itself. The defaults suit an
        /// API that carries personal data: never cached, never sniffed or framed, HTTPS only.
        public var defaultResponseHeaders: HTTPHeaders

        public init(endpoint: Endpoint, limits: HTTPLimits = HTTPLimits(), maximumConnections: Int = 1024,
                    handshakeTimeout: TimeInterval = 10, headerTimeout: TimeInterval = 10,
                    bodyTimeout: TimeInterval = 30, idleTimeout: TimeInterval = 60,
                    writeTimeout: TimeInterval = 30, threadStackBytes: Int = 512 << 10,
                    eventLoops: Int = min(4, max(1, ProcessInfo.processInfo.activeProcessorCount)),
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
            self.eventLoops = eventLoops
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
        /// Connections still open at the deadline, which were then closed.
        public let forcedConnections: Int
        public var completedInTime: Bool { forcedConnections == 0 }

        public init(forcedConnections: Int) {
            self.forcedConnections = forcedConnections
        }
    }

    private enum State { case created, running, draining, stopped }

    public let configuration: Configuration
    let handler: AsyncHandler
    /// Where blocking work runs (`Responder.respond(blocking:)`).
    let handlerThreads: HandlerThreads
    let defaultHeaders: PreparedHeaders
    /// Told the cause of every failed TLS handshake (see `HandshakeFailure`), for metrics.
    /// Set before `start`.
    public var onHandshakeFailure: (@Sendable (HandshakeFailure) -> Void)?
    private let condition = NSCondition()
    private var state = State.created
    private var tls: TLSContext
    private var loops: [ConnectionLoop] = []
    private var listenerFD: Int32 = -1
    private var openConnections = 0
    private var nextConnectionID: UInt64 = 0
    private var boundPort: UInt16 = 0

    /// A server whose handler answers on the loop, through the responder.
    public init(configuration: Configuration, tls: TLSContext, asyncHandler: @escaping AsyncHandler) throws {
        precondition(tls.role == .server, "HTTPServer needs a server TLS context")
        self.configuration = configuration
        self.defaultHeaders = PreparedHeaders(configuration.defaultResponseHeaders)
        self.tls = tls
        self.handler = asyncHandler
        self.handlerThreads = HandlerThreads(stackSize: configuration.threadStackBytes)
    }

    /// A server whose handler may block: each request runs on a handler thread.
    public convenience init(configuration: Configuration, tls: TLSContext, handler: @escaping Handler) throws {
        try self.init(configuration: configuration, tls: tls) { request, peer, responder in
            responder.respond(blocking: { handler(request, peer) })
        }
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
        return openConnections
    }

    /// Binds, listens and starts the event loops. Throws when the address cannot be used.
    public func start() throws {
        condition.lock()
        defer { condition.unlock() }
        precondition(state == .created, "start() called twice")
        Socket.ignoreSIGPIPE
        let (fd, port) = try Socket.listen(on: configuration.endpoint)
        listenerFD = fd
        boundPort = port
        do {
            for index in 0..<max(1, configuration.eventLoops) {
                let loop = try ConnectionLoop(server: self, name: "http-\(index)", listener: fd)
                do {
                    try loop.eventLoop.start(stackSize: configuration.threadStackBytes)
                } catch {
                    loop.eventLoop.waitUntilFinished() // releases the handlers of a loop that never ran
                    throw error
                }
                loops.append(loop)
            }
        } catch {
            for loop in loops { loop.eventLoop.execute { loop.closeAll(); loop.eventLoop.finish() } }
            loops.removeAll()
            close(fd)
            listenerFD = -1
            throw TransportError.bind(address: configuration.endpoint.description, reason: "\(error)")
        }
        for loop in loops { loop.eventLoop.execute { loop.listen() } }
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
    /// closed (a handler still running is not interrupted; its response is dropped). Blocks
    /// the caller; returns how many connections had to be forced.
    /// Not from a handler on one of the server's loops (it would wait for itself).
    @discardableResult
    public func shutdown(gracePeriod: TimeInterval) -> ShutdownResult {
        condition.lock()
        precondition(!loops.contains { $0.eventLoop.isCurrent }, "shutdown called from the server's own event loop")
        guard state == .running else {
            condition.unlock()
            return ShutdownResult(forcedConnections: 0)
        }
        state = .draining
        Log.shared.info("server_draining", ["open_connections": openConnections])
        let loops = self.loops
        condition.unlock()
        // Once no loop watches the listener, it is closed: new connections are refused.
        let drained = DispatchGroup()
        for loop in loops {
            drained.enter()
            loop.eventLoop.execute {
                loop.drain()
                drained.leave()
            }
        }
        drained.wait()
        condition.lock()
        close(listenerFD)
        listenerFD = -1
        let deadline = Date(timeIntervalSinceNow: gracePeriod)
        while openConnections > 0 && condition.wait(until: deadline) {}
        let forced = openConnections
        condition.unlock()
        for loop in loops {
            loop.eventLoop.execute {
                loop.closeAll()
                loop.eventLoop.finish()
            }
        }
        for loop in loops { loop.eventLoop.waitUntilFinished() }
        condition.lock()
        self.loops.removeAll()
        state = .stopped
        condition.unlock()
        handlerThreads.stop()
        Log.shared.info("server_stopped", ["forced_connections": forced])
        return ShutdownResult(forcedConnections: forced)
    }

    // MARK: - For the loops

    /// Registers a new connection within the limit; nil (and a log line) when over it.
    func admit(remote: String) -> (id: UInt64, tls: TLSContext)? {
        condition.lock()
        guard openConnections < configuration.maximumConnections else {
            condition.unlock()
            Log.shared.warning("connection_refused", ["remote": remote, "reason": "connection limit reached",
                                                      "limit": configuration.maximumConnections])
            return nil
        }
        openConnections += 1
        nextConnectionID += 1
        let admitted = (nextConnectionID, tls)
        condition.unlock()
        return admitted
    }

    func connectionClosed() {
        condition.lock()
        openConnections -= 1
        condition.broadcast()
        condition.unlock()
    }
}

/// One event loop of a server and the connections it serves.
final class ConnectionLoop {
    /// A connection and where its exchange stands.
    private final class Connection {
        enum Phase {
            case handshaking
            /// Reading (or between) requests.
            case reading
            /// A request is with the handler.
            case handling(keepAlive: Bool, head: Bool)
            case writing(bytes: [UInt8], offset: Int, then: AfterWrite)
            /// After an error response: reading and discarding until the peer closes, so that
            /// closing does not reset the connection before the peer has read the response.
            case lingering
        }

        /// `read`: the next request; `resume`: the rest of this one (after 100 Continue).
        enum AfterWrite { case read, resume, close, linger }

        let token: UInt64
        /// Unique in the server (tokens are per loop).
        let id: UInt64
        let remote: String
        let tls: TLSConnection
        var phase = Phase.handshaking
        var peer: HTTPServer.PeerConnection?
        var parser: HTTPRequestParser
        /// When the current phase times out (monotonic ns).
        var deadline: UInt64
        var idleSince: UInt64 = 0
        var requestStarted: UInt64 = 0
        var bodyStarted: UInt64 = 0
        /// What epoll watches now, to skip needless epoll_ctl calls.
        var watched = false
        var watchingReads = false
        var watchingWrites = false
        /// Requests handed to the handler so far.
        var requests: UInt64 = 0

        init(token: UInt64, id: UInt64, remote: String, tls: TLSConnection, limits: HTTPLimits, deadline: UInt64) {
            self.token = token
            self.id = id
            self.remote = remote
            self.tls = tls
            self.parser = HTTPRequestParser(limits: limits)
            self.deadline = deadline
        }
    }

    let eventLoop: EventLoop
    /// Held while running: a started server lives until it is shut down, like its threads.
    private let server: HTTPServer
    private let configuration: HTTPServer.Configuration
    private let listener: Int32
    private var connections: [UInt64: Connection] = [:]
    private var draining = false
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 << 10, alignment: 16)
    /// Token 0 is the listening socket.
    private static let listenerToken: UInt64 = 0
    private var nextToken: UInt64 = 0
    private var acceptPausedUntil: UInt64 = 0
    /// No connection's deadline is earlier (it may be later than the true earliest).
    private var earliestDeadline = UInt64.max
    /// The connection whose handler is being called on this loop right now.
    private var handlingInline: UInt64?
    /// Requests one connection may have answered in one go before the others get their turn.
    private static let requestsPerTurn = 16

    init(server: HTTPServer, name: String, listener: Int32) throws {
        self.server = server
        self.configuration = server.configuration
        self.listener = listener
        self.eventLoop = try EventLoop(name: name)
        eventLoop.onEvents = { [self] events in handle(events) }
        eventLoop.onIteration = { [self] now in expire(now) }
    }

    deinit {
        buffer.deallocate()
    }

    /// Watches the listener, shared with the other loops: a new connection wakes one of them.
    /// Where the kernel refuses an exclusive watch, an ordinary one (every loop woken) will do.
    func listen() {
        guard !draining else { return }
        do {
            try eventLoop.watchExclusively(listener, token: Self.listenerToken)
        } catch let error as SystemError where error.errno == EEXIST {
            // Watched already.
        } catch {
            do {
                try eventLoop.watch(listener, token: Self.listenerToken, reading: true, writing: false)
            } catch {
                Log.shared.error("listener_unwatched", ["loop": eventLoop.name, "reason": "\(error)"])
            }
        }
    }

    /// Stops accepting and closes connections that wait for a request (or a handshake).
    func drain() {
        draining = true
        eventLoop.forget(listener)
        for connection in connections.values {
            switch connection.phase {
            case .handshaking: close(connection)
            case .reading where !connection.parser.isInsideRequest: close(connection)
            default: break
            }
        }
    }

    func closeAll() {
        for connection in connections.values { close(connection) }
    }

    /// A handler's response for request number `request` of the connection `token` (dropped
    /// when the connection is gone or the request was answered already).
    func respond(_ token: UInt64, _ request: UInt64, _ response: HTTPResponse) {
        guard let connection = connections[token], connection.requests == request,
              case .handling(let keepAliveRequested, let head) = connection.phase else { return }
        let keepAlive = keepAliveRequested && !draining
        let bytes = response.serialized(keepAlive: keepAlive, dateLine: HTTPDate.line(), headRequest: head, defaults: server.defaultHeaders)
        startWriting(connection, bytes, then: keepAlive ? .read : .close)
        // Answered inside the handler call: the `progress` that called it writes the answer
        // when the handler returns (calling it here would nest one level per pipelined request).
        if handlingInline != token { progress(connection) }
    }

    // MARK: - Events

    private func handle(_ events: [Poller.Event]) {
        for event in events {
            if event.token == Self.listenerToken {
                accept()
                continue
            }
            guard let connection = connections[event.token] else { continue }
            if case .handling = connection.phase {
                // The peer sent more (or closed) while its request is with the handler: stop
                // watching until the answer is written (level-triggered epoll would repeat it,
                // and reports a hang-up even for no events).
                eventLoop.forget(connection.tls.fd)
                connection.watched = false
                continue
            }
            progress(connection)
        }
    }

    private func accept() {
        guard !draining, monotonicNanoseconds() >= acceptPausedUntil else { return }
        while true {
            var address = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(listener, $0, &length) }
            }
            if fd < 0 {
                switch errno {
                case EAGAIN, EWOULDBLOCK: return
                case EINTR, ECONNABORTED, EPROTO: continue
                default:
                    // Out of descriptors or memory: pause accepting instead of spinning.
                    Log.shared.error("accept_failed", ["reason": String(cString: strerror(errno))])
                    eventLoop.forget(listener)
                    acceptPausedUntil = monotonicNanoseconds() + 10_000_000
                    eventLoop.schedule(at: acceptPausedUntil) { [self] in listen() }
                    return
                }
            }
            // (accept4 is not visible to Swift on Glibc; two fcntl calls do the same.)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            let remote = Socket.describe(address)
            guard let (id, context) = server.admit(remote: remote) else {
                Glibc.close(fd)
                continue
            }
            Socket.setNoDelay(fd)
            let tls: TLSConnection
            do {
                tls = try TLSConnection(context: context, fd: fd)
            } catch {
                server.connectionClosed()
                continue
            }
            nextToken += 1
            let connection = Connection(token: nextToken, id: id, remote: remote, tls: tls, limits: configuration.limits,
                                        deadline: 0)
            connections[nextToken] = connection
            setDeadline(connection, monotonicNanoseconds() + nanoseconds(configuration.handshakeTimeout))
            progress(connection)
        }
    }

    // MARK: - One connection

    /// Moves the connection on as far as its socket allows, for at most `requestsPerTurn`
    /// requests; then it queues the rest behind the loop's other work (a pipelining client
    /// cannot hold the loop).
    private func progress(_ connection: Connection) {
        let firstRequest = connection.requests
        while connections[connection.token] != nil {
            if connection.requests - firstRequest >= Self.requestsPerTurn, case .reading = connection.phase {
                eventLoop.execute { [self] in progress(connection) }
                return
            }
            switch connection.phase {
            case .handshaking:
                guard handshake(connection) else { return }
            case .reading:
                guard read(connection) else { return }
            case .handling:
                return
            case .writing(let bytes, let offset, let then):
                let step: TLSConnection.Step
                do {
                    step = try bytes.withUnsafeBytes { raw in
                        try connection.tls.writeStep(UnsafeRawBufferPointer(rebasing: raw[offset...]), phase: "write")
                    }
                } catch {
                    Log.shared.warning("http_response_failed", ["remote": connection.remote, "reason": "\(error)"])
                    return close(connection)
                }
                guard let count = progressMade(connection, step) else { return }
                if offset + count < bytes.count {
                    connection.phase = .writing(bytes: bytes, offset: offset + count, then: then)
                } else {
                    switch then {
                    case .read:
                        startReading(connection)
                        // Nothing of a next request buffered: close when draining, else wait for
                        // the socket instead of a read that would only say EAGAIN (the usual
                        // case with keep-alive).
                        if !connection.parser.isInsideRequest && !connection.tls.hasPendingBytes {
                            if draining { return close(connection) }
                            return watch(connection, reading: true, writing: false)
                        }
                    case .resume:
                        connection.phase = .reading
                        setRequestDeadline(connection, now: monotonicNanoseconds())
                    case .close: return close(connection)
                    case .linger:
                        connection.tls.stopWriting()
                        connection.phase = .lingering
                        setDeadline(connection, monotonicNanoseconds() + 2_000_000_000)
                    }
                }
            case .lingering:
                while true {
                    let count = recv(connection.tls.fd, buffer.baseAddress, buffer.count, 0)
                    if count > 0 { continue }
                    if count < 0 && errno == EINTR { continue }
                    if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                        return watch(connection, reading: true, writing: false)
                    }
                    return close(connection)
                }
            }
        }
    }

    /// One handshake step; true when the connection may go on to reading.
    private func handshake(_ connection: Connection) -> Bool {
        let step: TLSConnection.Step
        do {
            step = try connection.tls.handshakeStep()
        } catch TransportError.connectionClosed {
            // A port probe or health check: nothing to warn about.
            Log.shared.debug("connection_closed_before_tls", ["remote": connection.remote])
            close(connection)
            return false
        } catch {
            handshakeFailed(connection, HandshakeFailure(error), reason: "\(error)")
            return false
        }
        guard progressMade(connection, step) != nil else { return false }
        guard let certificate = connection.tls.peerCertificate() else {
            handshakeFailed(connection, .noClientCertificate, reason: "no client certificate")
            return false
        }
        connection.peer = HTTPServer.PeerConnection(id: connection.id, remoteAddress: connection.remote, certificate: certificate,
                                                    tlsVersion: connection.tls.protocolVersion, cipher: connection.tls.cipher)
        startReading(connection)
        return true
    }

    private func handshakeFailed(_ connection: Connection, _ failure: HandshakeFailure, reason: String) {
        server.onHandshakeFailure?(failure)
        Log.shared.warning("tls_handshake_failed", ["remote": connection.remote, "cause": failure.rawValue, "reason": reason])
        close(connection)
    }

    /// Between requests: wait for the next one (closed at once when draining). Part of it may
    /// be buffered already (pipelined): then its header deadline runs from now.
    private func startReading(_ connection: Connection) {
        let now = monotonicNanoseconds()
        connection.phase = .reading
        connection.idleSince = now
        connection.bodyStarted = 0
        if connection.parser.isInsideRequest {
            connection.requestStarted = now
            setRequestDeadline(connection, now: now)
        } else {
            connection.requestStarted = 0
            setDeadline(connection, now + nanoseconds(configuration.idleTimeout))
        }
    }

    /// Parses what is buffered and reads more; true when the phase changed and `progress`
    /// should go on.
    private func read(_ connection: Connection) -> Bool {
        while true {
            switch connection.parser.next() {
            case .request(let request):
                connection.phase = .handling(keepAlive: request.keepAlive, head: request.method == "HEAD")
                connection.deadline = .max
                connection.requests += 1
                handlingInline = connection.token
                server.handler(request, connection.peer!, HTTPServer.Responder(loop: self, token: connection.token, request: connection.requests,
                                                                              threads: server.handlerThreads))
                handlingInline = nil
                return true
            case .continueExpected:
                startWriting(connection, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8), then: .resume)
                return true
            case .error(let error):
                Log.shared.warning("http_request_refused", ["remote": connection.remote, "status": error.status, "code": error.code])
                let bytes = error.response.serialized(keepAlive: false, dateLine: HTTPDate.line(), headRequest: false,
                                                      defaults: server.defaultHeaders)
                startWriting(connection, bytes, then: .linger)
                return true
            case .needMoreData:
                if !connection.parser.isInsideRequest && draining {
                    close(connection)
                    return false
                }
                let step: TLSConnection.Step
                do {
                    step = try connection.tls.readStep(into: buffer, phase: "request")
                } catch {
                    close(connection)
                    return false
                }
                guard let count = progressMade(connection, step) else { return false }
                guard count > 0 else {
                    close(connection)
                    return false
                }
                let now = monotonicNanoseconds()
                if !connection.parser.isInsideRequest { connection.requestStarted = now }
                connection.parser.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                setRequestDeadline(connection, now: now)
            }
        }
    }

    /// Inside a request: the header deadline runs from its first byte, the body deadline
    /// from the end of its head.
    private func setRequestDeadline(_ connection: Connection, now: UInt64) {
        if connection.parser.isReadingBody {
            if connection.bodyStarted == 0 { connection.bodyStarted = now }
            setDeadline(connection, connection.bodyStarted + nanoseconds(configuration.bodyTimeout))
        } else if connection.parser.isInsideRequest {
            setDeadline(connection, connection.requestStarted + nanoseconds(configuration.headerTimeout))
        }
    }

    private func startWriting(_ connection: Connection, _ bytes: [UInt8], then: Connection.AfterWrite) {
        connection.phase = .writing(bytes: bytes, offset: 0, then: then)
        setDeadline(connection, monotonicNanoseconds() + nanoseconds(configuration.writeTimeout))
    }

    /// Every deadline is set here, so that `earliestDeadline` is never later than the
    /// earliest one.
    private func setDeadline(_ connection: Connection, _ deadline: UInt64) {
        connection.deadline = deadline
        earliestDeadline = min(earliestDeadline, deadline)
    }

    /// Closes connections whose phase timed out; returns the earliest deadline left. Looks at
    /// the connections only once the earliest deadline has passed.
    private func expire(_ now: UInt64) -> UInt64? {
        guard earliestDeadline <= now else { return earliestDeadline == .max ? nil : earliestDeadline }
        earliestDeadline = .max
        for connection in connections.values {
            guard connection.deadline <= now else {
                earliestDeadline = min(earliestDeadline, connection.deadline)
                continue
            }
            switch connection.phase {
            case .handshaking:
                handshakeFailed(connection, .timeout, reason: "\(TransportError.timedOut(phase: "TLS handshake"))")
            case .reading where connection.parser.isInsideRequest:
                let phase = connection.parser.isReadingBody ? "body" : "header"
                Log.shared.warning("http_request_timeout", ["remote": connection.remote, "phase": phase])
                let timeout = HTTPResponse.error(status: 408, code: "request_timeout",
                                                 message: "The request was not received completely within the \(phase) timeout.")
                let bytes = timeout.serialized(keepAlive: false, dateLine: HTTPDate.line(), headRequest: false, defaults: server.defaultHeaders)
                // Written like any response (within the write timeout), then closed.
                startWriting(connection, bytes, then: .close)
                progress(connection)
            case .writing:
                Log.shared.warning("http_response_failed", ["remote": connection.remote, "reason": "\(TransportError.timedOut(phase: "write"))"])
                close(connection)
            default:
                close(connection)
            }
        }
        return earliestDeadline == .max ? nil : earliestDeadline
    }

    /// The bytes a TLS step moved; nil for a step that must wait, after watching the socket
    /// for what it waits for.
    private func progressMade(_ connection: Connection, _ step: TLSConnection.Step) -> Int? {
        switch step {
        case .wantRead: watch(connection, reading: true, writing: false)
        case .wantWrite: watch(connection, reading: false, writing: true)
        case .done(let count): return count
        }
        return nil
    }

    private func watch(_ connection: Connection, reading: Bool, writing: Bool) {
        guard !connection.watched || reading != connection.watchingReads || writing != connection.watchingWrites else { return }
        do {
            try eventLoop.watch(connection.tls.fd, token: connection.token, reading: reading, writing: writing)
            connection.watched = true
            connection.watchingReads = reading
            connection.watchingWrites = writing
        } catch {
            Log.shared.error("connection_failed", ["remote": connection.remote, "reason": "cannot watch the socket: \(error)"])
            close(connection)
        }
    }

    private func close(_ connection: Connection) {
        guard connections.removeValue(forKey: connection.token) != nil else { return }
        eventLoop.forget(connection.tls.fd)
        connection.tls.close()
        server.connectionClosed()
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
