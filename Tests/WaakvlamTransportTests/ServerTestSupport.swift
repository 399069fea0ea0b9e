import Foundation
import XCTest
import WaakvlamSystem
@testable import WaakvlamTransport

/// A server on 127.0.0.1 with an ephemeral port whose handler echoes what it saw, and a gate
/// that `/block` waits on.
final class TestServer {
    /// What the handler shares with the test.
    final class Shared: @unchecked Sendable {
        let gate = DispatchSemaphore(value: 0)
        let entered = DispatchSemaphore(value: 0)
        private let lock = NSLock()
        private var count = 0

        var handled: Int {
            lock.lock()
            defer { lock.unlock() }
            return count
        }

        func respond(to request: HTTPRequest, from peer: HTTPServer.PeerConnection) -> HTTPResponse {
            lock.lock()
            count += 1
            lock.unlock()
            if request.path == "/block" {
                entered.signal()
                gate.wait()
            }
            if request.path == "/big" { return HTTPResponse(status: 200, body: [UInt8](repeating: 0x61, count: 1 << 20)) }
            return .json(status: 200, object: ["oin": peer.certificate.subjectSerialNumber ?? "", "path": request.target,
                                               "connection": peer.id, "bodyBytes": request.body.count, "tls": peer.tlsVersion])
        }
    }

    let server: HTTPServer
    let shared = Shared()

    init(_ pki: TestPKI, crl: Bool = true, tls: TLSContext? = nil, configure: (inout HTTPServer.Configuration) -> Void = { _ in }) throws {
        var configuration = HTTPServer.Configuration(endpoint: Endpoint(host: "127.0.0.1", port: 0))
        configure(&configuration)
        let shared = self.shared
        server = try HTTPServer(configuration: configuration, tls: tls ?? pki.serverContext(crl: crl)) { request, peer in
            shared.respond(to: request, from: peer)
        }
        try server.start()
    }

    deinit {
        server.shutdown(gracePeriod: 1)
    }

    var port: UInt16 { server.port }
    var endpoint: Endpoint { Endpoint(host: "127.0.0.1", port: port) }
    var url: String { "https://localhost:\(port)" }
    var handled: Int { shared.handled }
}

func deadline(_ seconds: Double) -> UInt64 { monotonicNanoseconds() + UInt64(seconds * 1e9) }

/// A blocking connect within the deadline, for tests that speak raw bytes; the socket is
/// non-blocking with TCP_NODELAY.
func connectSocket(to endpoint: Endpoint, deadline: UInt64) throws -> Int32 {
    var lastError = TransportError.connect(address: endpoint.description, reason: "no address")
    for (family, address) in try Socket.resolve(endpoint, passive: false) {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { continue }
        let started = address.withUnsafeBytes {
            Glibc.connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
        }
        var failure: Int32 = started == 0 ? 0 : errno
        if failure == EINPROGRESS || failure == EINTR {
            switch Socket.wait(fd, for: Int16(POLLOUT), deadline: deadline) {
            case .timedOut, .interrupted:
                close(fd)
                throw TransportError.timedOut(phase: "connect")
            case .ready:
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
            }
        }
        if failure == 0 {
            Socket.setNoDelay(fd)
            return fd
        }
        lastError = .connect(address: endpoint.description, reason: String(cString: strerror(failure)))
        close(fd)
    }
    throw lastError
}

/// A TLS connection on which the test writes raw bytes.
func rawConnection(to endpoint: Endpoint, client: TLSContext) throws -> TLSConnection {
    let fd = try connectSocket(to: endpoint, deadline: deadline(5))
    let connection = try TLSConnection(context: client, fd: fd)
    try connection.expectServer(endpoint)
    try connection.handshake(deadline: deadline(5))
    return connection
}

extension TLSConnection {
    func send(_ text: String) throws {
        try write(Array(text.utf8), deadline: deadline(5))
    }

    /// Everything the server sends until it closes the connection (or the timeout).
    func readUntilClosed(timeout: Double = 5) -> [UInt8] {
        var bytes: [UInt8] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 1)
        defer { buffer.deallocate() }
        let end = deadline(timeout)
        while let n = try? read(into: buffer, deadline: end, phase: "test"), n > 0 {
            bytes += buffer[0..<n]
        }
        return bytes
    }

    /// Reads until `count` complete responses arrived.
    func readResponses(_ count: Int, method: String = "GET") throws -> [HTTPResponse] {
        var parser = HTTPResponseParser()
        parser.requestMethod = method
        var responses: [HTTPResponse] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 1)
        defer { buffer.deallocate() }
        let end = deadline(5)
        while responses.count < count {
            switch parser.next() {
            case .response(let response, _): responses.append(response)
            case .error(let error): throw TransportError.protocolViolation(error)
            case .needMoreData:
                let n = try read(into: buffer, deadline: end, phase: "test")
                if n == 0 { throw TransportError.connectionClosed }
                parser.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            }
        }
        return responses
    }
}

/// Parses all complete responses in `bytes`.
func parseResponses(_ bytes: [UInt8]) -> [HTTPResponse] {
    var parser = HTTPResponseParser()
    parser.feed(bytes)
    var responses: [HTTPResponse] = []
    while case .response(let response, _) = parser.next() { responses.append(response) }
    return responses
}

func json(_ response: HTTPResponse) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
}

/// Collects the log lines written while `body` runs (and shortly after, for lines that
/// server threads write once the client has already seen the outcome).
func capturingLogs(until expected: String? = nil, _ body: () throws -> Void) rethrows -> [String] {
    let lock = NSLock()
    var lines: [String] = []
    let previous = Log.shared.sink
    Log.shared.sink = { line in
        lock.lock()
        lines.append(line)
        lock.unlock()
    }
    defer { Log.shared.sink = previous }
    try body()
    if let expected {
        let end = Date(timeIntervalSinceNow: 3)
        while Date() < end {
            lock.lock()
            let found = lines.contains { $0.contains(expected) }
            lock.unlock()
            if found { break }
            usleep(10_000)
        }
    }
    lock.lock()
    defer { lock.unlock() }
    return lines
}

/// curl against the test server with the test CA.
func curl(_ pki: TestPKI, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    try runProcess("/usr/bin/curl", ["-sS", "--max-time", "10", "--cacert", pki.path("ca.pem")] + arguments)
}

func curlWithCertificate(_ pki: TestPKI, _ name: String, _ url: String, _ extra: [String] = []) throws -> (status: Int32, stdout: String, stderr: String) {
    try curl(pki, ["--cert", pki.path("\(name).pem"), "--key", pki.path("\(name).key")] + extra + [url])
}
