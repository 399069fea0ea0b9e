import Foundation
import XCTest
@testable import WaakvlamTransport

/// Who gets through the handshake: only certificates of the configured CA that are valid
/// and not revoked, over TLS 1.2 or 1.3 with forward-secret AEAD suites.
final class TLSVerificationTests: PKITestCase {
    func testCurlAndOwnClientWithValidCertificateGet200() throws {
        let server = try TestServer(pki)
        let result = try curlWithCertificate(pki, "valid", server.url + "/v1/whoami")
        XCTAssertEqual(result.status, 0, result.stderr)
        let body = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(body["oin"] as? String, TestPKI.oin)
        XCTAssertEqual(body["tls"] as? String, "TLSv1.3", "TLS 1.3 is preferred")

        let client = HTTPClient(tls: try pki.clientContext())
        let response = try client.send(HTTPRequest(method: "GET", target: "/v1/whoami"), to: server.endpoint)
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(json(response)["oin"] as? String, TestPKI.oin)
        XCTAssertEqual(response.headers["content-type"], "application/json")
    }

    func testNoClientCertificateIsRefused() throws {
        let server = try TestServer(pki)
        let logs = try capturingLogs(until: "tls_handshake_failed") {
            let result = try curl(pki, [server.url + "/v1/whoami"])
            XCTAssertNotEqual(result.status, 0)
            // curl reports the server's "certificate required" alert, or the reset that follows it.
            XCTAssertEqual(result.stdout, "")
        }
        XCTAssertTrue(logs.contains { $0.contains("tls_handshake_failed") && $0.contains("peer did not return a certificate") }, "\(logs)")
        XCTAssertEqual(server.handled, 0)
    }

    /// Each refused certificate, with the reason the server logs.
    private func assertRefused(_ name: String, reason: String, server: TestServer, file: StaticString = #filePath, line: UInt = #line) throws {
        let logs = try capturingLogs(until: reason) {
            let result = try curlWithCertificate(pki, name, server.url + "/v1/whoami")
            XCTAssertNotEqual(result.status, 0, "curl with \(name)", file: file, line: line)
            XCTAssertEqual(result.stdout, "", file: file, line: line)
            let client = HTTPClient(tls: try pki.clientContext(name))
            XCTAssertThrowsError(try client.send(HTTPRequest(method: "GET", target: "/v1/whoami"), to: server.endpoint),
                                 "own client with \(name)", file: file, line: line)
        }
        XCTAssertTrue(logs.contains { $0.contains("tls_handshake_failed") && $0.contains(reason) },
                      "expected '\(reason)' in \(logs)", file: file, line: line)
        XCTAssertEqual(server.handled, 0, file: file, line: line)
    }

    func testCertificateFromAnotherCAIsRefused() throws {
        try assertRefused("foreign", reason: "unable to get local issuer certificate", server: TestServer(pki))
    }

    func testExpiredCertificateIsRefused() throws {
        try assertRefused("expired", reason: "certificate has expired", server: TestServer(pki))
    }

    func testRevokedCertificateIsRefusedWhenACRLIsConfigured() throws {
        try assertRefused("revoked", reason: "certificate revoked", server: TestServer(pki, crl: true))
        // Without the CRL the same certificate is accepted: the refusal above is the CRL's doing.
        let withoutCRL = try TestServer(pki, crl: false)
        XCTAssertEqual(try curlWithCertificate(pki, "revoked", withoutCRL.url + "/").status, 0)
    }

    func testTLS10And11AreRefused() throws {
        let server = try TestServer(pki)
        for version in ["-tls1", "-tls1_1"] {
            // SECLEVEL=0 lets this client offer the old protocol, so the refusal is the server's.
            let result = try runProcess("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", version,
                                                             "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", pki.path("ca.pem"),
                                                             "-cert", pki.path("valid.pem"), "-key", pki.path("valid.key")])
            XCTAssertNotEqual(result.status, 0, version)
            XCTAssertTrue((result.stdout + result.stderr).contains("protocol version"), "\(version): \(result.stderr)")
        }
        let curl11 = try curlWithCertificate(pki, "valid", server.url + "/", ["--tls-max", "1.1", "--ciphers", "DEFAULT@SECLEVEL=0"])
        XCTAssertNotEqual(curl11.status, 0)
        XCTAssertEqual(server.handled, 0)
        // TLS 1.2 works (with an ECDHE AEAD suite).
        let curl12 = try curlWithCertificate(pki, "valid", server.url + "/", ["--tls-max", "1.2"])
        XCTAssertEqual(curl12.status, 0, curl12.stderr)
        XCTAssertTrue(curl12.stdout.contains("TLSv1.2"), curl12.stdout)
    }

    func testTLS12OffersOnlyForwardSecretAEADSuites() throws {
        let server = try TestServer(pki)
        func handshake(_ cipher: String) throws -> Bool {
            let result = try runProcess("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_2",
                                                             "-cipher", cipher, "-CAfile", pki.path("ca.pem"),
                                                             "-cert", pki.path("valid.pem"), "-key", pki.path("valid.key")])
            return result.stdout.contains("Cipher is \(cipher)")
        }
        XCTAssertTrue(try handshake("ECDHE-ECDSA-AES256-GCM-SHA384"))
        XCTAssertTrue(try handshake("ECDHE-ECDSA-CHACHA20-POLY1305"))
        XCTAssertFalse(try handshake("ECDHE-ECDSA-AES128-SHA256"), "CBC is refused")
        XCTAssertFalse(try handshake("ECDHE-ECDSA-AES256-SHA"), "CBC with SHA-1 is refused")
    }

    func testClientVerifiesTheServerNameAndPins() throws {
        // A server whose certificate names another host.
        let other = try pki.ca.issue(CertificateSpec(commonName: "other.example", dnsNames: ["other.example"], usage: .server))
        try other.write(certificateTo: pki.path("other.pem"), keyTo: pki.path("other.key"))
        let tls = try TLSContext(role: .server, certificateChain: pki.path("other.pem"), privateKey: pki.path("other.key"),
                                 trustedCAs: pki.path("ca.pem"))
        let wrongName = try TestServer(pki, tls: tls)
        let client = HTTPClient(tls: try pki.clientContext())
        XCTAssertThrowsError(try client.send(HTTPRequest(method: "GET", target: "/"), to: wrongName.endpoint)) { error in
            XCTAssertEqual(error as? TransportError, .handshake(reason: "IP address mismatch"))
        }
        XCTAssertThrowsError(try client.send(HTTPRequest(method: "GET", target: "/"), to: Endpoint(host: "localhost", port: wrongName.port))) { error in
            XCTAssertEqual(error as? TransportError, .handshake(reason: "hostname mismatch"))
        }

        let server = try TestServer(pki)
        let serverPin = try PeerCertificate(pemFile: pki.path("server.pem")).publicKeyPin
        for endpoint in [server.endpoint, Endpoint(host: "localhost", port: server.port)] {
            XCTAssertEqual(try client.send(HTTPRequest(method: "GET", target: "/"), to: endpoint, serverPins: [serverPin]).status, 200)
        }
        XCTAssertThrowsError(try client.send(HTTPRequest(method: "GET", target: "/"), to: server.endpoint, serverPins: [pki.valid.publicKeyPin])) { error in
            XCTAssertEqual(error as? TransportError, .pinMismatch(pin: serverPin))
        }
    }

    func testPeerCertificateIdentity() throws {
        let server = try TestServer(pki)
        let connection = try HTTPClientConnection(to: server.endpoint, tls: try pki.clientContext())
        XCTAssertEqual(connection.serverCertificate.commonName, "localhost")
        let response = try connection.send(HTTPRequest(method: "GET", target: "/"))
        XCTAssertEqual(json(response)["oin"] as? String, TestPKI.oin)
        XCTAssertTrue(connection.isReusable)
    }

    func testUnusableTLSFilesGiveClearErrors() throws {
        XCTAssertThrowsError(try TLSContext(role: .server, certificateChain: pki.path("missing.pem"), privateKey: pki.path("server.key"),
                                            trustedCAs: pki.path("ca.pem"))) { error in
            XCTAssertEqual(error as? TransportError, .file(path: pki.path("missing.pem"),
                                                           problem: "the certificate file does not exist or is not readable; check the tls section of node.json (run `waakvlam pki init` for a development set)"))
        }
        XCTAssertThrowsError(try TLSContext(role: .server, certificateChain: pki.path("server.pem"), privateKey: pki.path("valid.key"),
                                            trustedCAs: pki.path("ca.pem"))) { error in
            XCTAssertTrue("\(error)".contains("does not belong to the certificate"), "\(error)")
        }
        XCTAssertThrowsError(try TLSContext(role: .server, certificateChain: pki.path("server.pem"), privateKey: pki.path("server.key"),
                                            trustedCAs: pki.path("ca.pem"), crl: pki.path("ca.pem"))) { error in
            XCTAssertTrue("\(error)".contains("contains no PEM CRL"), "\(error)")
        }
    }
}
