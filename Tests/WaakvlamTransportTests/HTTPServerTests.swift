import Foundation
import XCTest
import WaakvlamSystem
@testable import WaakvlamTransport

/// HTTP behaviour over real TLS connections, concurrency and shutdown.
final class HTTPServerTests: PKITestCase {
    private func smallLimits(_ configuration: inout HTTPServer.Configuration) {
        configuration.limits = HTTPLimits(maximumHeaderBytes: 4096, maximumHeaderCount: 20, maximumBodyBytes: 1024)
    }

    /// Sends `text` on a new connection and returns the one response the server sends before closing.
    private func refusal(_ server: TestServer, _ text: String) throws -> HTTPResponse {
        let connection = try rawConnection(to: server.endpoint, client: try pki.clientContext())
        try connection.send(text)
        let responses = parseResponses(connection.readUntilClosed())
        XCTAssertEqual(responses.count, 1)
        return try XCTUnwrap(responses.first)
    }

    func testSmugglingAttemptsAndOversizedRequestsGetJSONErrors() throws {
        let server = try TestServer(pki, configure: smallLimits)
        let cases: [(String, Int, String)] = [
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "content_length_with_transfer_encoding"),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "duplicate_content_length"),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400, "invalid_transfer_encoding"),
            ("GET / HTTP/1.1\r\nHost: a\r\nX-Big: \(String(repeating: "x", count: 5000))\r\n\r\n", 431, "headers_too_large"),
            ("GET / HTTP/1.1\r\nHost: a\r\n" + (1...25).map { "X-\($0): y\r\n" }.joined() + "\r\n", 431, "too_many_headers"),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\n\r\n" + String(repeating: "b", count: 2048), 413, "body_too_large"),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + String(repeating: "c", count: 1024) + "\r\n1\r\nc\r\n0\r\n\r\n", 413, "body_too_large"),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: folded\r\n  line\r\n\r\n", 400, "obsolete_line_folding"),
        ]
        for (request, status, code) in cases {
            let response = try refusal(server, request)
            XCTAssertEqual(response.status, status, code)
            XCTAssertEqual(response.headers["content-type"], "application/json", code)
            XCTAssertEqual(response.headers["connection"], "close", code)
            XCTAssertEqual(response.errorBody?.code, code)
            XCTAssertFalse(response.errorBody?.message.isEmpty ?? true)
        }
        XCTAssertEqual(server.handled, 0)
    }

    func testCurlGetsJSONErrorsToo() throws {
        let server = try TestServer(pki, configure: smallLimits)
        let big = try curlWithCertificate(pki, "valid", server.url + "/", ["-H", "X-Big: \(String(repeating: "x", count: 5000))", "-w", "\n%{http_code}"])
        XCTAssertTrue(big.stdout.hasSuffix("\n431"), big.stdout)
        XCTAssertTrue(big.stdout.contains("\"code\":\"headers_too_large\""), big.stdout)
        let body = try curlWithCertificate(pki, "valid", server.url + "/", ["--data-binary", String(repeating: "y", count: 2000), "-w", "\n%{http_code}"])
        XCTAssertTrue(body.stdout.hasSuffix("\n413"), body.stdout)
        let both = try curlWithCertificate(pki, "valid", server.url + "/", ["-H", "Transfer-Encoding: chunked", "-H", "Content-Length: 3",
                                                                             "--data-binary", "abc", "-w", "\n%{http_code}"])
        XCTAssertTrue(both.stdout.hasSuffix("\n400"), both.stdout)
    }

    func testPipelinedRequestsAreAnsweredInOrder() throws {
        let server = try TestServer(pki)
        let connection = try rawConnection(to: server.endpoint, client: try pki.clientContext())
        try connection.send("GET /first HTTP/1.1\r\nHost: a\r\n\r\nPOST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /third HTTP/1.1\r\nHost: a\r\n\r\n")
        let responses = try connection.readResponses(3)
        XCTAssertEqual(responses.map { json($0)["path"] as? String }, ["/first", "/second", "/third"])
        XCTAssertEqual(json(responses[1])["bodyBytes"] as? Int, 3)
        for response in responses {
            XCTAssertEqual(response.headers["cache-control"], "no-store")
            XCTAssertEqual(response.headers["x-content-type-options"], "nosniff")
            XCTAssertEqual(response.headers["strict-transport-security"], "max-age=31536000")
            XCTAssertNotNil(response.headers["date"])
        }
        // The connection stays open for more; Connection: close ends it after the response.
        try connection.send("GET /fourth HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        let last = parseResponses(connection.readUntilClosed())
        XCTAssertEqual(last.map { json($0)["path"] as? String }, ["/fourth"])
        XCTAssertEqual(last.first?.headers["connection"], "close")
    }

    func testChunkedUploadExpectContinueAndLargeBodies() throws {
        let server = try TestServer(pki)
        let file = pki.path("upload.bin")
        try Data(repeating: 0x7a, count: 300_000).write(to: URL(fileURLWithPath: file))
        let chunked = try curlWithCertificate(pki, "valid", server.url + "/upload", ["-H", "Transfer-Encoding: chunked", "--data-binary", "@" + file])
        XCTAssertTrue(chunked.stdout.contains("\"bodyBytes\":300000"), chunked.stdout + chunked.stderr)
        let expect = try curlWithCertificate(pki, "valid", server.url + "/upload", ["-v", "-H", "Expect: 100-continue", "--data-binary", "@" + file])
        XCTAssertTrue(expect.stderr.contains("HTTP/1.1 100 Continue"), expect.stderr)
        XCTAssertTrue(expect.stdout.contains("\"bodyBytes\":300000"), expect.stdout)
        // A 1 MiB response and a 512 KiB request body through the project's client.
        let client = HTTPClient(tls: try pki.clientContext())
        XCTAssertEqual(try client.send(HTTPRequest(method: "GET", target: "/big"), to: server.endpoint).body.count, 1 << 20)
        let upload = try client.send(HTTPRequest(method: "POST", target: "/upload", body: [UInt8](repeating: 1, count: 512 << 10)), to: server.endpoint)
        XCTAssertEqual(json(upload)["bodyBytes"] as? Int, 512 << 10)
    }

    func testIdleConnectionsDoNotDelayANormalRequest() throws {
        let server = try TestServer(pki)
        // 100 sockets that never start TLS and 100 TLS connections that never send a request.
        var sockets: [Int32] = []
        var idle: [TLSConnection] = []
        defer { for fd in sockets { close(fd) } }
        for _ in 0..<100 { sockets.append(try connectSocket(to: server.endpoint, deadline: deadline(5))) }
        for _ in 0..<100 { idle.append(try rawConnection(to: server.endpoint, client: try pki.clientContext())) }
        let end = Date(timeIntervalSinceNow: 5)
        while server.server.openConnectionCount < 200 && Date() < end { usleep(10_000) }
        XCTAssertEqual(server.server.openConnectionCount, 200)

        let started = monotonicNanoseconds()
        let result = try curlWithCertificate(pki, "valid", server.url + "/v1/whoami")
        let seconds = Double(monotonicNanoseconds() - started) / 1e9
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertLessThan(seconds, 1.0, "a request next to 200 idle connections took \(seconds) s")
        let client = HTTPClient(tls: try pki.clientContext())
        XCTAssertEqual(try client.send(HTTPRequest(method: "GET", target: "/"), to: server.endpoint).status, 200)
    }

    func testSlowClientsTimeOut() throws {
        let server = try TestServer(pki) {
            $0.handshakeTimeout = 0.3
            $0.headerTimeout = 0.3
            $0.idleTimeout = 0.3
        }
        // Headers trickling in too slowly get 408.
        let slow = try rawConnection(to: server.endpoint, client: try pki.clientContext())
        try slow.send("GET / HTTP/1.1\r\nHo")
        let response = try XCTUnwrap(parseResponses(slow.readUntilClosed()).first)
        XCTAssertEqual(response.status, 408)
        XCTAssertEqual(response.errorBody?.code, "request_timeout")
        // A socket that never starts TLS is closed after the handshake timeout.
        let fd = try connectSocket(to: server.endpoint, deadline: deadline(5))
        defer { close(fd) }
        XCTAssertEqual(Socket.wait(fd, for: Int16(POLLIN), deadline: deadline(3)), .ready)
        var byte: UInt8 = 0
        XCTAssertEqual(recv(fd, &byte, 1, 0), 0, "closed by the server")
        // An idle keep-alive connection is closed silently.
        let idle = try rawConnection(to: server.endpoint, client: try pki.clientContext())
        XCTAssertEqual(idle.readUntilClosed(), [])
        XCTAssertEqual(server.handled, 0)
    }

    func testABlockingHandlerDoesNotStallOtherConnections() throws {
        let server = try TestServer(pki)
        let client = HTTPClient(tls: try pki.clientContext())
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            XCTAssertEqual(try? client.send(HTTPRequest(method: "GET", target: "/block"), to: server.endpoint).status, 200)
            done.signal()
        }
        XCTAssertEqual(server.shared.entered.wait(timeout: .now() + 5), .success)
        for _ in 0..<5 {
            XCTAssertEqual(try client.send(HTTPRequest(method: "GET", target: "/fast"), to: server.endpoint).status, 200)
        }
        XCTAssertEqual(done.wait(timeout: .now()), .timedOut, "the blocked request is still waiting")
        server.shared.gate.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 5), .success)
    }

    func testGracefulShutdownFinishesTheRequestInFlight() throws {
        let server = try TestServer(pki)
        let idle = try rawConnection(to: server.endpoint, client: try pki.clientContext())
        let busy = try rawConnection(to: server.endpoint, client: try pki.clientContext())
        try busy.send("GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
        XCTAssertEqual(server.shared.entered.wait(timeout: .now() + 5), .success)

        final class Outcome: @unchecked Sendable { var result: HTTPServer.ShutdownResult? }
        let outcome = Outcome()
        let stopped = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            outcome.result = server.server.shutdown(gracePeriod: 5)
            stopped.signal()
        }
        // The idle keep-alive connection is closed at once; new connections are refused.
        XCTAssertEqual(idle.readUntilClosed(timeout: 2), [])
        let end = Date(timeIntervalSinceNow: 2)
        var refused = false
        while !refused && Date() < end {
            refused = (try? rawConnection(to: server.endpoint, client: try pki.clientContext())) == nil
            if !refused { usleep(20_000) }
        }
        XCTAssertTrue(refused, "new connections are refused while draining")
        XCTAssertEqual(stopped.wait(timeout: .now() + 0.2), .timedOut, "shutdown waits for the request in flight")

        server.shared.gate.signal()
        let responses = parseResponses(busy.readUntilClosed())
        XCTAssertEqual(responses.first?.status, 200)
        XCTAssertEqual(responses.first?.headers["connection"], "close")
        XCTAssertEqual(stopped.wait(timeout: .now() + 5), .success)
        XCTAssertEqual(outcome.result, HTTPServer.ShutdownResult(forcedConnections: 0))
    }

    func testShutdownForcesConnectionsAfterTheDeadline() throws {
        let server = try TestServer(pki)
        let busy = try rawConnection(to: server.endpoint, client: try pki.clientContext())
        try busy.send("GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
        XCTAssertEqual(server.shared.entered.wait(timeout: .now() + 5), .success)
        let started = Date()
        let result = server.server.shutdown(gracePeriod: 0.3)
        XCTAssertEqual(result.forcedConnections, 1)
        XCTAssertLessThan(Date().timeIntervalSince(started), 2.5)
        server.shared.gate.signal()
    }

    func testConnectionLimit() throws {
        let server = try TestServer(pki) { $0.maximumConnections = 2 }
        let first = try rawConnection(to: server.endpoint, client: try pki.clientContext())
        let second = try rawConnection(to: server.endpoint, client: try pki.clientContext())
        defer { second.close() }
        let logs = try capturingLogs(until: "connection_refused") {
            XCTAssertThrowsError(try rawConnection(to: server.endpoint, client: try pki.clientContext()))
        }
        XCTAssertTrue(logs.contains { $0.contains("connection limit reached") }, "\(logs)")
        first.close()
        let end = Date(timeIntervalSinceNow: 3)
        while server.server.openConnectionCount > 1 && Date() < end { usleep(10_000) }
        XCTAssertNoThrow(try rawConnection(to: server.endpoint, client: try pki.clientContext()))
    }
}
