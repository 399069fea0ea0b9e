import Foundation
import XCTest
import WaakvlamSystem
@testable import WaakvlamTransport

/// The event-loop client (`HTTPClientLoop`) against real TLS servers on loopback, and the
/// server's asynchronous handlers: answers from other threads, in order, and what happens when
/// a connection fails at once, times out, goes stale in the pool, or the loop is stopped.
final class EventLoopTests: PKITestCase {
    /// Sends on the loop and waits for the completion.
    private func send(_ loop: HTTPClientLoop, _ request: HTTPRequest, to endpoint: Endpoint,
                      timeout: Double = 10) -> Result<HTTPResponse, TransportError>? {
        let outcome = Outcome()
        loop.execute {
            loop.send(request, to: endpoint, idempotent: true) { outcome.set($0) }
        }
        return outcome.wait(timeout)
    }

    /// A task handed to an idle loop (waiting up to a second for nothing) runs at once: the
    /// hand-off wakes it. A busy loop is not woken (it runs the task at its next turn); a
    /// missed wake-up here would leave each task waiting for the rest of that second.
    func testATaskHandedToAnIdleLoopWakesIt() throws {
        let loop = try EventLoop(name: "test-idle")
        try loop.start()
        defer {
            loop.execute { loop.finish() }
            loop.waitUntilFinished()
        }
        var delays: [UInt64] = []
        for _ in 0..<20 {
            usleep(20_000) // the loop settles into its wait
            let ran = DispatchSemaphore(value: 0)
            let handed = monotonicNanoseconds()
            let delay = Box()
            loop.execute {
                delay.value = monotonicNanoseconds() - handed
                ran.signal()
            }
            XCTAssertEqual(ran.wait(timeout: .now() + 5), .success)
            delays.append(delay.value)
        }
        delays.sort()
        XCTAssertLessThan(delays[delays.count / 2], 100_000_000, "median delay \(delays[delays.count / 2]) ns")
    }

    /// A new connection to the listening socket that all of a server's loops watch wakes one
    /// waiting loop, not every one of them (EPOLLEXCLUSIVE). Watched the ordinary way, more
    /// than one of the three pollers here returns it. The woken one accepts at once, as a loop
    /// does.
    func testANewConnectionWakesOneOfThePollersSharingTheListener() throws {
        let (listener, port) = try Socket.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        defer { close(listener) }
        let pollers = try (0..<3).map { _ in try Poller() }
        for poller in pollers { try poller.watchExclusively(listener, token: 1) }
        let lock = NSLock()
        var woken = 0
        let done = DispatchGroup()
        let name = "exclusive-\(getpid() % 10_000)"
        for poller in pollers {
            done.enter()
            try spawnDetachedThread(stackSize: 256 << 10) {
                nameCurrentThread(name)
                if !poller.wait(timeoutMilliseconds: 3_000).isEmpty {
                    lock.withLock { woken += 1 }
                    let connection = accept(listener, nil, nil)
                    if connection >= 0 { close(connection) }
                }
                done.leave()
            }
        }
        // Connect only once all three sleep in epoll_wait (a poller that came later would find
        // the connection queued for it without being woken).
        let settled = Date(timeIntervalSinceNow: 5)
        func sleepingInEpoll() -> Bool {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            let sleeping = tasks.filter { task in
                func read(_ file: String) -> String {
                    (try? String(contentsOfFile: "/proc/self/task/\(task)/\(file)", encoding: .utf8)) ?? ""
                }
                return read("comm").hasPrefix(name) && read("wchan").contains("epoll")
            }
            return sleeping.count == pollers.count
        }
        while !sleepingInEpoll() && Date() < settled { usleep(5_000) }
        let (family, address) = try XCTUnwrap(try Socket.resolve(Endpoint(host: "127.0.0.1", port: port), passive: false).first)
        let client = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        let connected = address.withUnsafeBytes {
            connect(client, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
        }
        XCTAssertEqual(connected, 0)
        done.wait()
        XCTAssertEqual(lock.withLock { woken }, 1, "pollers woken by one connection")
    }

    func testManyConcurrentRequestsShareAFewKeptAliveConnections() throws {
        let server = try TestServer(pki)
        let loop = try HTTPClientLoop(tls: try pki.clientContext())
        try loop.start()
        defer { loop.stop(deadline: deadline(1)) }
        let outcomes = (0..<100).map { _ in Outcome() }
        loop.execute {
            for (index, outcome) in outcomes.enumerated() {
                let request = HTTPRequest(method: "POST", target: "/r\(index)", body: Array("request \(index)".utf8))
                loop.send(request, to: server.endpoint, idempotent: true) { outcome.set($0) }
            }
        }
        var connections = Set<Int>()
        for (index, outcome) in outcomes.enumerated() {
            let response = try XCTUnwrap(try outcome.wait(10)?.get(), "request \(index)")
            XCTAssertEqual(json(response)["path"] as? String, "/r\(index)")
            XCTAssertEqual(json(response)["bodyBytes"] as? Int, "request \(index)".utf8.count)
            connections.insert(try XCTUnwrap(json(response)["connection"] as? Int))
        }
        XCTAssertGreaterThan(connections.count, 1, "requests run concurrently")
        XCTAssertLessThanOrEqual(connections.count, 100)
        // Afterwards the pool serves sequential requests on a connection it already has.
        let again = try XCTUnwrap(try send(loop, HTTPRequest(method: "GET", target: "/again"), to: server.endpoint)?.get())
        XCTAssertTrue(connections.contains(try XCTUnwrap(json(again)["connection"] as? Int)), "a pooled connection is reused")
    }

    func testFailuresBeforeAnyConnectionAreReportedNotFatal() throws {
        let loop = try HTTPClientLoop(tls: try pki.clientContext())
        try loop.start()
        defer { loop.stop(deadline: deadline(1)) }
        // A name that cannot resolve, resolved off the loop.
        let unresolvable = send(loop, HTTPRequest(method: "GET", target: "/"), to: Endpoint(host: "no-such-host.invalid", port: 443))
        guard case .failure(.addressResolution(let host, _)) = unresolvable else {
            return XCTFail("expected a resolution failure, got \(String(describing: unresolvable))")
        }
        XCTAssertEqual(host, "no-such-host.invalid")
        // A loopback port nobody listens on: connect fails at once.
        let port = try freeLoopbackPort()
        let refused = send(loop, HTTPRequest(method: "GET", target: "/"), to: Endpoint(host: "127.0.0.1", port: port))
        guard case .failure(.connect(_, let reason)) = refused else {
            return XCTFail("expected a refused connect, got \(String(describing: refused))")
        }
        XCTAssertTrue(reason.lowercased().contains("refused"), reason)
        // The blocking client says the same, through the same channel.
        XCTAssertThrowsError(try HTTPClientConnection(to: Endpoint(host: "no-such-host.invalid", port: 443), tls: try pki.clientContext()))
        XCTAssertThrowsError(try HTTPClientConnection(to: Endpoint(host: "127.0.0.1", port: port), tls: try pki.clientContext()))
    }

    func testAResponseThatNeverComesTimesOut() throws {
        let server = try TestServer(pki)
        defer { server.shared.gate.signal() }
        let loop = try HTTPClientLoop(tls: try pki.clientContext(),
                                      configuration: HTTPClientConfiguration(responseTimeout: 0.3))
        try loop.start()
        defer { loop.stop(deadline: deadline(1)) }
        let started = monotonicNanoseconds()
        let result = send(loop, HTTPRequest(method: "GET", target: "/block"), to: server.endpoint)
        guard case .failure(.timedOut(let phase)) = result else {
            return XCTFail("expected a timeout, got \(String(describing: result))")
        }
        XCTAssertEqual(phase, "response")
        XCTAssertLessThan(monotonicNanoseconds() - started, 5_000_000_000, "the deadline is enforced by the loop")
    }

    func testStoppingEndsRequestsInFlightAtTheDeadline() throws {
        let server = try TestServer(pki)
        defer { server.shared.gate.signal() }
        let loop = try HTTPClientLoop(tls: try pki.clientContext())
        try loop.start()
        let outcome = Outcome()
        loop.execute {
            loop.send(HTTPRequest(method: "GET", target: "/block"), to: server.endpoint, idempotent: true) { outcome.set($0) }
        }
        XCTAssertEqual(server.shared.entered.wait(timeout: .now() + 5), .success)
        let stopping = monotonicNanoseconds()
        loop.stop(deadline: deadline(0.3))
        XCTAssertLessThan(monotonicNanoseconds() - stopping, 3_000_000_000)
        guard case .failure(.shuttingDown) = outcome.wait(1) else {
            return XCTFail("a request still in flight at the deadline ends with shuttingDown")
        }
        // Work handed to a stopped loop is dropped, not run.
        let late = Outcome()
        loop.execute { late.set(.failure(.connectionClosed)) }
        XCTAssertNil(late.wait(0.2))
    }

    func testAPooledConnectionTheServerClosedIsReplaced() throws {
        let server = try TestServer(pki) { $0.idleTimeout = 0.2 }
        let loop = try HTTPClientLoop(tls: try pki.clientContext())
        try loop.start()
        defer { loop.stop(deadline: deadline(1)) }
        let first = try XCTUnwrap(try send(loop, HTTPRequest(method: "GET", target: "/"), to: server.endpoint)?.get())
        usleep(600_000) // the server closes the idle connection
        let second = try XCTUnwrap(try send(loop, HTTPRequest(method: "GET", target: "/"), to: server.endpoint)?.get())
        XCTAssertEqual(second.status, 200)
        XCTAssertNotEqual(json(first)["connection"] as? Int, json(second)["connection"] as? Int)
    }

    /// The loop reuses an idle connection without asking the socket for idempotent requests:
    /// when the server closed it since the loop last looked, the request goes out again on a
    /// new connection. A request that is not idempotent is never sent on it.
    func testARequestOnAConnectionTheServerClosedUnseenGoesOutOnANewOne() throws {
        let server = try TestServer(pki) { $0.idleTimeout = 0.2 }
        let loop = try HTTPClientLoop(tls: try pki.clientContext())
        try loop.start()
        defer { loop.stop(deadline: deadline(1)) }
        for idempotent in [true, false] {
            let first = try XCTUnwrap(try send(loop, HTTPRequest(method: "GET", target: "/"), to: server.endpoint)?.get())
            let outcome = Outcome()
            loop.execute {
                // The loop is busy while the server closes the idle connection: it has not seen the close.
                usleep(600_000)
                loop.send(HTTPRequest(method: "POST", target: "/", body: [1]), to: server.endpoint, idempotent: idempotent) { outcome.set($0) }
            }
            let second = try XCTUnwrap(try outcome.wait(10)?.get(), "idempotent: \(idempotent)")
            XCTAssertEqual(second.status, 200)
            XCTAssertNotEqual(json(first)["connection"] as? Int, json(second)["connection"] as? Int)
        }
    }

    func testAsynchronousAnswersFromOtherThreadsKeepRequestOrderOnAConnection() throws {
        let queue = DispatchQueue(label: "answers", attributes: .concurrent)
        let server = try HTTPServer(configuration: HTTPServer.Configuration(endpoint: Endpoint(host: "127.0.0.1", port: 0)),
                                    tls: try pki.serverContext()) { request, _, responder in
            // The first request is answered last.
            let delay = request.path == "/0" ? 0.2 : 0.0
            queue.asyncAfter(deadline: .now() + delay) { responder.respond(HTTPResponse(status: 200, body: Array(request.path.utf8))) }
        }
        try server.start()
        defer { server.shutdown(gracePeriod: 1) }
        let connection = try rawConnection(to: Endpoint(host: "127.0.0.1", port: server.port), client: try pki.clientContext())
        // Pipelined: three requests in one write.
        try connection.send((0..<3).map { "GET /\($0) HTTP/1.1\r\nHost: a\r\n\r\n" }.joined())
        let responses = try connection.readResponses(3)
        XCTAssertEqual(responses.map { String(decoding: $0.body, as: UTF8.self) }, ["/0", "/1", "/2"])
    }

    func testHundredsOfPipelinedRequestsAnsweredOnTheSpotDoNotNest() throws {
        // One loop, small stacks: an answer given inside the handler used to nest one call
        // level per pipelined request and overflowed the loop's stack after about a hundred.
        var configuration = HTTPServer.Configuration(endpoint: Endpoint(host: "127.0.0.1", port: 0))
        configuration.eventLoops = 1
        configuration.threadStackBytes = 256 << 10
        let server = try HTTPServer(configuration: configuration, tls: try pki.serverContext()) { request, _, responder in
            responder.respond(HTTPResponse(status: 404, body: Array(request.path.utf8)))
        }
        try server.start()
        defer { server.shutdown(gracePeriod: 1) }
        let connection = try rawConnection(to: Endpoint(host: "127.0.0.1", port: server.port), client: try pki.clientContext())
        let count = 600
        try connection.send((0..<count).map { "GET /\($0) HTTP/1.1\r\nHost: a\r\n\r\n" }.joined())
        let responses = try connection.readResponses(count)
        XCTAssertEqual(responses.count, count)
        XCTAssertEqual(responses.map { String(decoding: $0.body, as: UTF8.self) }, (0..<count).map { "/\($0)" })
    }

    func testAClientThatLeavesBeforeItsAnswerFreesItsConnectionWhenTheAnswerComes() throws {
        let handled = Outcome()
        let parked = ParkedResponder()
        let server = try HTTPServer(configuration: HTTPServer.Configuration(endpoint: Endpoint(host: "127.0.0.1", port: 0)),
                                    tls: try pki.serverContext()) { request, _, responder in
            guard request.path == "/park" else { return responder.respond(HTTPResponse(status: 204)) }
            parked.set(responder)
            handled.set(.failure(.connectionClosed))
        }
        try server.start()
        defer { server.shutdown(gracePeriod: 1) }
        let endpoint = Endpoint(host: "127.0.0.1", port: server.port)
        let connection = try rawConnection(to: endpoint, client: try pki.clientContext())
        try connection.send("GET /park HTTP/1.1\r\nHost: a\r\n\r\n")
        XCTAssertNotNil(handled.wait(5))
        connection.close()
        // Meanwhile the loop serves others, although the peer's close keeps being reported.
        let client = HTTPClient(tls: try pki.clientContext())
        XCTAssertEqual(try client.send(HTTPRequest(method: "GET", target: "/"), to: endpoint).status, 204)
        client.closeIdleConnections()
        // The answer finds the peer gone: dropped, and the connection freed.
        try XCTUnwrap(parked.responder).respond(HTTPResponse(status: 200))
        let end = Date(timeIntervalSinceNow: 5)
        while server.openConnectionCount > 0 && Date() < end { usleep(10_000) }
        XCTAssertEqual(server.openConnectionCount, 0)
    }
}

/// A value set on one thread and read after a semaphore says it was set.
private final class Box: @unchecked Sendable {
    var value: UInt64 = 0
}

/// One result, set once from any thread.
private final class Outcome: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var result: Result<HTTPResponse, TransportError>?

    func set(_ result: Result<HTTPResponse, TransportError>) {
        lock.withLock { self.result = result }
        done.signal()
    }

    func wait(_ seconds: Double) -> Result<HTTPResponse, TransportError>? {
        guard done.wait(timeout: .now() + seconds) == .success else { return nil }
        return lock.withLock { result }
    }
}

private final class ParkedResponder: @unchecked Sendable {
    private let lock = NSLock()
    private var parked: HTTPServer.Responder?

    func set(_ responder: HTTPServer.Responder) { lock.withLock { parked = responder } }
    var responder: HTTPServer.Responder? { lock.withLock { parked } }
}
