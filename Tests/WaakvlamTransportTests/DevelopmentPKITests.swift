import Foundation
import XCTest
@testable import WaakvlamTransport

final class DevelopmentPKITests: XCTestCase {
    func testIssuedCertificateCarriesTheDutchIdentityFields() throws {
        let pki = try TestPKI()
        let certificate = try PeerCertificate(pemFile: pki.path("valid.pem"))
        XCTAssertEqual(certificate.subjectSerialNumber, TestPKI.oin)
        XCTAssertEqual(certificate.organisation, "Gemeente Hoorn")
        XCTAssertEqual(certificate.commonName, "Gemeente Hoorn relay")
        XCTAssertEqual(certificate.serialNumber, pki.valid.serialNumber)
        XCTAssertEqual(certificate.publicKeyPin, pki.valid.publicKeyPin)
        XCTAssertEqual(certificate.issuer, "CN=Waakvlam test CA,O=Waakvlam test CA")
        XCTAssertLessThan(certificate.notBefore, Date())
        XCTAssertEqual(certificate.notAfter.timeIntervalSince(certificate.notBefore), 365 * 86400, accuracy: 1)
        let expired = try PeerCertificate(pemFile: pki.path("expired.pem"))
        XCTAssertLessThan(expired.notAfter, Date())

        try pki.ca.issue(CertificateSpec(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: .clientAndServer,
                                         crlDistributionPoint: "http://crl.example/ca.crl"))
            .write(certificateTo: pki.path("cdp.pem"), keyTo: pki.path("cdp.key"))
        let text = try runProcess("/usr/bin/openssl", ["x509", "-in", pki.path("cdp.pem"), "-noout", "-text"]).stdout
        XCTAssertTrue(text.contains("URI:http://crl.example/ca.crl"), text)
        XCTAssertTrue(text.contains("DNS:localhost, IP Address:127.0.0.1"), text)
        XCTAssertTrue(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"), text)
        XCTAssertTrue(text.contains("ASN1 OID: prime256v1"), text)
        let verify = try runProcess("/usr/bin/openssl", ["verify", "-CAfile", pki.path("ca.pem"), pki.path("server.pem"), pki.path("valid.pem")])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }

    func testPinMatchesCurlsPinnedPublicKeyDigest() throws {
        let pki = try TestPKI()
        // The pipeline from curl's documentation for --pinnedpubkey.
        let script = "openssl x509 -in '\(pki.path("valid.pem"))' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl enc -base64"
        let result = try runProcess("/bin/sh", ["-c", script])
        XCTAssertEqual("sha256//" + result.stdout.trimmingCharacters(in: .whitespacesAndNewlines), pki.valid.publicKeyPin)
    }

    func testRenewalWithTheSameKeyKeepsThePin() throws {
        let pki = try TestPKI()
        let renewed = try pki.ca.issue(CertificateSpec(commonName: "renewed", subjectSerialNumber: TestPKI.oin), key: pki.valid.key)
        XCTAssertEqual(renewed.publicKeyPin, pki.valid.publicKeyPin)
        XCTAssertNotEqual(renewed.serialNumber, pki.valid.serialNumber)
        XCTAssertNotEqual(try pki.ca.issue(CertificateSpec(commonName: "new key")).publicKeyPin, pki.valid.publicKeyPin)
    }

    func testCRLListsTheRevokedSerial() throws {
        let pki = try TestPKI()
        let text = try runProcess("/usr/bin/openssl", ["crl", "-in", pki.path("crl.pem"), "-noout", "-text"]).stdout
        XCTAssertTrue(text.contains("Serial Number: \(pki.revoked.serialNumber)"), text)
        XCTAssertFalse(text.contains(pki.valid.serialNumber), text)
        let check = try runProcess("/usr/bin/openssl", ["verify", "-crl_check", "-CAfile", pki.path("ca.pem"), "-CRLfile", pki.path("crl.pem"), pki.path("revoked.pem")])
        XCTAssertNotEqual(check.status, 0)
        XCTAssertTrue((check.stdout + check.stderr).contains("certificate revoked"))
        XCTAssertThrowsError(try pki.ca.revocationList(revoking: ["not hex"]))
    }

    func testKeysAreWrittenForTheOwnerOnlyAndTheCALoadsBack() throws {
        let pki = try TestPKI()
        func mode(_ name: String) throws -> Int {
            (try FileManager.default.attributesOfItem(atPath: pki.path(name))[.posixPermissions] as? Int) ?? -1
        }
        XCTAssertEqual(try mode("valid.key"), 0o600)
        XCTAssertEqual(try mode("valid.pem"), 0o644)
        try PEMFile.write(pki.ca.key.pem, to: pki.path("ca.key"), secret: true)
        let loaded = try DevelopmentCA(certificateFile: pki.path("ca.pem"), keyFile: pki.path("ca.key"))
        XCTAssertEqual(loaded.certificatePEM, pki.ca.certificatePEM)
        try loaded.issue(CertificateSpec(commonName: "later")).write(certificateTo: pki.path("later.pem"), keyTo: pki.path("later.key"))
        XCTAssertEqual(try runProcess("/usr/bin/openssl", ["verify", "-CAfile", pki.path("ca.pem"), pki.path("later.pem")]).status, 0)
        XCTAssertThrowsError(try DevelopmentCA(certificateFile: pki.path("ca.pem"), keyFile: pki.path("valid.key"))) { error in
            XCTAssertTrue("\(error)".contains("does not belong to the CA certificate"), "\(error)")
        }
    }
}
