import Foundation
import XCTest
@testable import WaakvlamTransport

final class HTTPClientTests: PKITestCase {
    func testKeepAliveReusesOneConnection() throws {
        let server = try TestServer(pki)
        let client = HTTPClient(tls: try pki.clientContext())
        let ids = try (0..<5).map { _ in
            json(try client.send(HTTPRequest(method: "GET", target: "/"), to: server.endpoint))["connection"] as? Int
        }
        XCTAssertEqual(Set(ids).count, 1, "\(ids)")
        var closing = HTTPRequest(method: "GET", target: "/")
        closing.keepAlive = false
        _ = try client.send(closing, to: server.endpoint)
        let next = json(try client.send(HTTPRequest(method: "GET", target: "/"), to: server.endpoint))["connection"] as? Int
        XCTAssertNotEqual(next, ids[0], "a connection closed on request is not reused")
    }

    func testConcurrentCallersShareThePoolSafely() throws {
        let server = try TestServer(pki)
        let client = HTTPClient(tls: try pki.clientContext())
        let lock = NSLock()
        var statuses: [Int] = []
        var connections = Set<Int>()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for index in 0..<25 {
                let body = Array("worker \(worker) request \(index)".utf8)
                let response = try? client.send(HTTPRequest(method: "POST", target: "/w\(worker)", body: body), to: server.endpoint)
                lock.lock()
                statuses.append(response?.status ?? 0)
                if let response {
                    XCTAssertEqual(json(response)["path"] as? String, "/w\(worker)")
                    XCTAssertEqual(json(response)["bodyBytes"] as? Int, body.count)
                    connections.insert(json(response)["connection"] as? Int ?? 0)
                }
                lock.unlock()
            }
        }
        XCTAssertEqual(statuses, Array(repeating: 200, count: 200))
        XCTAssertLessThanOrEqual(connections.count, 8, "connections are reused, one per concurrent caller at most")
    }

    func testAStalePooledConnectionIsReplaced() throws {
        let server = try TestServer(pki) { $0.idleTimeout = 0.2 }
        let client = HTTPClient(tls: try pki.clientContext())
        let first = json(try client.send(HTTPRequest(method: "GET", target: "/"), to: server.endpoint))["connection"] as? Int
        usleep(500_000) // the server closes the idle connection meanwhile
        let second = try client.send(HTTPRequest(method: "POST", target: "/", body: [1]), to: server.endpoint)
        XCTAssertEqual(second.status, 200)
        XCTAssertNotEqual(json(second)["connection"] as? Int, first)
    }

    func testTimeoutsAndConnectFailures() throws {
        // Nothing listens on this port.
        let closed = try Socket.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        close(closed.fd)
        let client = HTTPClient(tls: try pki.clientContext(), configuration: HTTPClientConfiguration(connectTimeout: 1, handshakeTimeout: 0.3, responseTimeout: 0.3))
        XCTAssertThrowsError(try client.send(HTTPRequest(method: "GET", target: "/"), to: Endpoint(host: "127.0.0.1", port: closed.port))) { error in
            guard case .connect(_, let reason) = error as? TransportError else { return XCTFail("\(error)") }
            XCTAssertEqual(reason, "Connection refused")
        }
        // A listener that never answers the handshake.
        let silent = try Socket.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        defer { close(silent.fd) }
        XCTAssertThrowsError(try client.send(HTTPRequest(method: "GET", target: "/"), to: Endpoint(host: "127.0.0.1", port: silent.port))) { error in
            XCTAssertEqual(error as? TransportError, .timedOut(phase: "TLS handshake"))
        }
        // A server whose handler takes longer than the response timeout.
        let server = try TestServer(pki)
        XCTAssertThrowsError(try client.send(HTTPRequest(method: "GET", target: "/block"), to: server.endpoint)) { error in
            XCTAssertEqual(error as? TransportError, .timedOut(phase: "response"))
        }
        server.shared.gate.signal()
    }
}
