import XCTest
import WaakvlamTransport

final class SmokeTests: XCTestCase {
    func testRoundTrip() throws {
        let pki = try TestPKI()
        let server = try HTTPServer(configuration: .init(endpoint: Endpoint(host: "127.0.0.1", port: 0)), tls: pki.serverContext()) { request, peer in
            .json(status: 200, object: ["oin": peer.certificate.subjectSerialNumber ?? "", "path": String(request.path)])
        }
        try server.start()
        defer { server.shutdown(gracePeriod: 2) }
        let client = HTTPClient(tls: try pki.clientContext())
        let response = try client.send(HTTPRequest(method: "GET", target: "/v1/whoami"), to: Endpoint(host: "127.0.0.1", port: server.port))
        print(response.status, String(decoding: response.body, as: UTF8.self))
        let r = try runProcess("/usr/bin/curl", ["-sS", "--cacert", pki.path("ca.pem"), "--cert", pki.path("valid.pem"), "--key", pki.path("valid.key"), "https://localhost:\(server.port)/v1/whoami"])
        print(r)
    }
}
