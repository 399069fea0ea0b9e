import Foundation
import WaakvlamSystem

/// An HTTPS client with mutual TLS that runs many requests at once from one thread: an epoll
/// event loop over non-blocking `ClientChannel`s, with a keep-alive pool per endpoint and a
/// deadline per phase. Requests are started, and their completions and timers run, on the
/// loop's thread, so that a caller keeping its own state there needs no lock; other threads
/// hand it work with `execute`.
///
/// Compared with a thread per request (`HTTPClient`), a response costs no thread wake-up and
/// no handoff: the relay's deliveries went from ~4 context switches per push to a fraction
/// of one, as the loop handles every connection that became ready in one wake-up.
/// Host names are resolved on a separate thread (and the addresses kept for a minute), so a
/// slow resolver holds up only the requests to that name. Not for server pinning: the relay's
/// pushes verify the server against the CA bundle and the endpoint's name only.
public final class HTTPClientLoop: @unchecked Sendable {
    public typealias Completion = (Result<HTTPResponse, TransportError>) -> Void

    /// One request and where it is.
    private final class Exchange {
        let request: SerializedRequest
        let endpoint: Endpoint
        let idempotent: Bool
        let completion: Completion
        /// Whether it went out on a pooled connection (then a connection loss before any
        /// response byte allows one more try on a fresh one).
        var reused = false
        /// A retry: on a new connection, never a pooled one.
        var freshOnly = false
        /// The endpoint's idle connections, looked up once per request (by `start`): the
        /// connection goes back there after the response.
        var pool: Pool?

        init(request: SerializedRequest, endpoint: Endpoint, idempotent: Bool, completion: @escaping Completion) {
            self.request = request
            self.endpoint = endpoint
            self.idempotent = idempotent
            self.completion = completion
        }
    }

    /// A channel and what the loop knows about it.
    private final class Entry {
        let channel: ClientChannel
        var exchange: Exchange?
        /// What epoll watches now (the channel's socket generation and the interest), to skip
        /// needless epoll_ctl calls.
        var watchedGeneration = 0
        var watchingReads = false
        var watchingWrites = false

        init(channel: ClientChannel) {
            self.channel = channel
        }
    }

    public let configuration: HTTPClientConfiguration
    private let tls: TLSContext
    private let loop: EventLoop

    // The loop thread's own.
    private var entries: [UInt64: Entry] = [:]
    /// Idle pooled connections per endpoint. A class, so that taking one (every request)
    /// changes it in place instead of through the dictionary's modify accessor, whose nested
    /// coroutine frames cost three mallocs per call here.
    private final class Pool {
        var tokens: [UInt64] = []
    }

    private var idle: [Endpoint: Pool] = [:]
    private var nextToken: UInt64 = 0
    /// Addresses of host names, with when they were resolved (monotonic ns).
    private var resolved: [Endpoint: (addresses: [(family: Int32, address: [UInt8])], at: UInt64)] = [:]
    /// Exchanges waiting for a host name being resolved.
    private var resolving: [Endpoint: [Exchange]] = [:]
    private static let resolvedLifetime: UInt64 = 60_000_000_000
    /// Set by `stop`: until when requests in flight may finish.
    private var stopDeadline: UInt64?
    /// Set with `stopDeadline` (see `stop`).
    private var stopsWhenOwnerIsDone: () -> Bool = { true }
    /// Requests started and not yet completed.
    private var requestsInFlight = 0
    /// No channel's deadline is earlier (some may be later by now): `expire` looks at the
    /// channels only once it has passed, instead of on every turn of the loop.
    private var earliestDeadline: UInt64 = .max

    /// `tls` must be a client context: this node's certificate and key, and the CAs server
    /// certificates must chain to.
    public init(tls: TLSContext, configuration: HTTPClientConfiguration = HTTPClientConfiguration(),
                threadName: String = "http-client") throws {
        precondition(tls.role == .client, "HTTPClientLoop needs a client TLS context")
        self.tls = tls
        self.configuration = configuration
        self.loop = try EventLoop(name: threadName)
        // Held until the loop ends: a started client lives until it is stopped.
        loop.onIteration = { [self] now in expire(now) }
        loop.onEvents = { [self] events in handle(events) }
    }

    /// Starts the loop's thread.
    public func start() throws {
        try loop.start()
    }

    /// Runs `task` on the loop's thread soon (in the order given). Any thread. Tasks given after
    /// `stop` are dropped.
    public func execute(_ task: @escaping () -> Void) {
        loop.execute(task)
    }

    /// The loop's thread, for work handed to it from elsewhere (such as journal completions).
    public var eventLoop: EventLoop { loop }

    /// Runs `task` on the loop's thread once `deadline` (monotonic ns) has passed. Loop thread only.
    public func schedule(at deadline: UInt64, _ task: @escaping () -> Void) {
        loop.schedule(at: deadline, task)
    }

    /// Sends `request` to `endpoint`; `completion` runs on the loop's thread with the response
    /// or the transport error. Loop thread only.
    /// - Parameter idempotent: whether the request may be sent again when a pooled connection
    ///   turns out to have been closed by the server before any response arrived.
    public func send(_ request: HTTPRequest, to endpoint: Endpoint, idempotent: Bool, completion: @escaping Completion) {
        send(SerializedRequest(request, endpoint: endpoint), to: endpoint, idempotent: idempotent, completion: completion)
    }

    /// Sends a request serialised already (see `RequestHead`); otherwise as `send` above.
    public func send(_ request: SerializedRequest, to endpoint: Endpoint, idempotent: Bool, completion: @escaping Completion) {
        requestsInFlight += 1
        start(Exchange(request: request, endpoint: endpoint, idempotent: idempotent, completion: completion))
    }

    /// Stops the loop: requests in flight may finish until `deadline` (monotonic ns); those
    /// left then complete with `.shuttingDown`. Then all connections are closed and the thread
    /// ends. Blocks until it has. Not from the loop's thread.
    /// - Parameter ownerIsDone: asked on the loop; until `deadline`, the loop also waits for it
    ///   to say true, for the owner's work that follows a response (such as the journal
    ///   completion of a delivery's receipt, which comes to the loop as a task).
    public func stop(deadline: UInt64, ownerIsDone: @escaping () -> Bool = { true }) {
        loop.execute { [self] in
            stopDeadline = deadline
            stopsWhenOwnerIsDone = ownerIsDone
        }
        loop.waitUntilFinished()
    }

    // MARK: - The loop

    private func handle(_ events: [Poller.Event]) {
        for event in events {
            guard let entry = entries[event.token] else { continue }
            if entry.exchange == nil {
                // An idle pooled connection became readable: the server closed it (or sent
                // something unasked). Either way it cannot be reused.
                discard(event.token)
            } else {
                advance(event.token)
            }
        }
    }

    /// Fails the exchanges whose phase timed out and closes expired idle connections; ends
    /// the loop once stopping and done. Returns the earliest deadline left.
    private func expire(_ now: UInt64) -> UInt64? {
        if let stopDeadline, requestsInFlight == 0 && stopsWhenOwnerIsDone() || now >= stopDeadline {
            shutDown()
            return nil
        }
        if earliestDeadline <= now { closeExpired(now) }
        let earliest = min(earliestDeadline, stopDeadline ?? .max)
        return earliest == .max ? nil : earliest
    }

    /// Fails or closes the channels whose deadline passed, and finds the earliest one left.
    private func closeExpired(_ now: UInt64) {
        earliestDeadline = .max
        for (token, entry) in entries where entries[token] != nil {
            if entry.channel.deadline <= now {
                if let exchange = entry.exchange {
                    let phase = entry.channel.phase
                    close(token)
                    finish(exchange, .failure(.timedOut(phase: phase)))
                } else {
                    discard(token)
                }
            } else {
                earliestDeadline = min(earliestDeadline, entry.channel.deadline)
            }
        }
    }

    private func shutDown() {
        for (token, entry) in entries {
            entries[token] = nil
            if let exchange = entry.exchange { finish(exchange, .failure(.shuttingDown)) }
            entry.channel.close()
        }
        for exchange in resolving.values.joined() { finish(exchange, .failure(.shuttingDown)) }
        resolving.removeAll()
        idle.removeAll()
        loop.finish()
    }

    // MARK: - Exchanges

    private func start(_ exchange: Exchange) {
        let now = monotonicNanoseconds()
        let pool = exchange.pool ?? self.pool(for: exchange.endpoint)
        exchange.pool = pool
        while !exchange.freshOnly, let token = pool.tokens.popLast() {
            guard let entry = entries[token] else { continue }
            // The loop watches idle sockets, so only a close that came since its last wait
            // can be missed without the poll; an idempotent request then goes out again on a
            // new connection (see `advance`), as nginx does with its upstream keep-alive.
            if entry.channel.isFreshForReuse(now: now, askingTheSocket: !exchange.idempotent) {
                exchange.reused = true
                entry.exchange = exchange
                entry.channel.begin(exchange.request)
                advance(token)
                return
            }
            close(token)
        }
        exchange.reused = false
        let endpoint = exchange.endpoint
        if endpoint.hostIsIPAddress {
            // A literal: no DNS query, resolved in place.
            connect(exchange, Result { try Socket.resolve(endpoint, passive: false) })
        } else if let known = resolved[endpoint], now - known.at < Self.resolvedLifetime {
            connect(exchange, .success(known.addresses))
        } else if resolving[endpoint] != nil {
            resolving[endpoint]!.append(exchange)
        } else {
            resolving[endpoint] = [exchange]
            DispatchQueue.global().async { [self] in
                let result = Result { try Socket.resolve(endpoint, passive: false) }
                loop.execute { [self] in resolvedName(endpoint, result) }
            }
        }
    }

    /// The idle connections to `endpoint` (made on first use).
    private func pool(for endpoint: Endpoint) -> Pool {
        if let pool = idle[endpoint] { return pool }
        let pool = Pool()
        idle[endpoint] = pool
        return pool
    }

    private func resolvedName(_ endpoint: Endpoint, _ result: Result<[(family: Int32, address: [UInt8])], Error>) {
        if case .success(let addresses) = result { resolved[endpoint] = (addresses, monotonicNanoseconds()) }
        for exchange in resolving.removeValue(forKey: endpoint) ?? [] { connect(exchange, result) }
    }

    /// Opens a new channel for `exchange` to the resolved addresses.
    private func connect(_ exchange: Exchange, _ addresses: Result<[(family: Int32, address: [UInt8])], Error>) {
        let channel: ClientChannel
        do {
            channel = try ClientChannel(to: exchange.endpoint, addresses: try addresses.get(), tls: tls, configuration: configuration)
        } catch {
            finish(exchange, .failure(error as? TransportError ?? .io("\(error)")))
            return
        }
        nextToken += 1
        let entry = Entry(channel: channel)
        entry.exchange = exchange
        entries[nextToken] = entry
        advance(nextToken)
    }

    /// Moves a channel on after its socket became ready (or a request was given to it). Every
    /// change of a channel's deadline happens in here.
    private func advance(_ token: UInt64) {
        guard let entry = entries[token], let exchange = entry.exchange else { return }
        let progress: ClientChannel.Progress
        defer { earliestDeadline = min(earliestDeadline, entry.channel.deadline) }
        do {
            progress = try entry.channel.advance()
        } catch {
            let transportError = error as? TransportError ?? .io("\(error)")
            let retry = exchange.reused && exchange.idempotent && transportError.isConnectionLoss
                && !entry.channel.receivedResponseBytes
            close(token)
            if retry {
                let again = Exchange(request: exchange.request, endpoint: exchange.endpoint, idempotent: false,
                                     completion: exchange.completion)
                again.freshOnly = true
                again.pool = exchange.pool
                start(again)
            } else {
                finish(exchange, .failure(transportError))
            }
            return
        }
        switch progress {
        case .wantRead:
            watch(token, entry, reading: true, writing: false)
        case .wantWrite:
            watch(token, entry, reading: false, writing: true)
        case .established:
            entry.channel.begin(exchange.request)
            advance(token)
        case .response(let response):
            entry.exchange = nil
            if let pool = exchange.pool, entry.channel.isReusable && pool.tokens.count < configuration.maximumIdleConnectionsPerEndpoint {
                // Watched for reads while idle: the server closing it shows up as an event.
                watch(token, entry, reading: true, writing: false)
                pool.tokens.append(token)
            } else {
                close(token)
            }
            finish(exchange, .success(response))
        }
    }

    private func finish(_ exchange: Exchange, _ result: Result<HTTPResponse, TransportError>) {
        requestsInFlight -= 1
        exchange.completion(result)
    }

    private func watch(_ token: UInt64, _ entry: Entry, reading: Bool, writing: Bool) {
        let generation = entry.channel.socketGeneration
        guard generation != entry.watchedGeneration || reading != entry.watchingReads || writing != entry.watchingWrites else { return }
        do {
            try loop.watch(entry.channel.fd, token: token, reading: reading, writing: writing)
        } catch {
            // Cannot happen for a valid socket; fail the exchange rather than hang it.
            guard let exchange = entry.exchange else { return close(token) }
            close(token)
            finish(exchange, .failure(.io("cannot watch the socket: \(error)")))
            return
        }
        entry.watchedGeneration = generation
        entry.watchingReads = reading
        entry.watchingWrites = writing
    }

    /// Closes an idle connection and takes it out of the pool.
    private func discard(_ token: UInt64) {
        guard let entry = entries[token] else { return }
        idle[entry.channel.endpoint]?.tokens.removeAll { $0 == token }
        close(token)
    }

    private func close(_ token: UInt64) {
        guard let entry = entries.removeValue(forKey: token) else { return }
        if entry.watchedGeneration == entry.channel.socketGeneration && entry.channel.fd >= 0 { loop.forget(entry.channel.fd) }
        entry.channel.close()
    }
}
