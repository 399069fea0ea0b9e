import Foundation
import XCTest
import WaakvlamTransport

/// A PKI in a temporary folder: a CA with a CRL, a second unrelated CA, a server certificate
/// for localhost/127.0.0.1 and client certificates in every state the tests need.
final class TestPKI {
    let directory: String
    let ca: DevelopmentCA
    let valid: IssuedCertificate
    let expired: IssuedCertificate
    let revoked: IssuedCertificate
    let foreign: IssuedCertificate

    static let oin = "00000001001589623000"

    init() throws {
        let directory = NSTemporaryDirectory() + "waakvlam-transport-\(UUID().uuidString)"
        self.directory = directory
        func path(_ name: String) -> String { directory + "/" + name }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        ca = try DevelopmentCA.create(organisation: "Waakvlam test CA", commonName: "Waakvlam test CA")
        try PEMFile.write(ca.certificatePEM, to: path("ca.pem"), secret: false)

        let server = try ca.issue(CertificateSpec(commonName: "localhost", organisation: "Waakvlam node",
                                                  subjectSerialNumber: "00000009999999999000",
                                                  dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"],
                                                  usage: .clientAndServer))
        try server.write(certificateTo: path("server.pem"), keyTo: path("server.key"))

        valid = try ca.issue(CertificateSpec(commonName: "Gemeente Hoorn relay", organisation: "Gemeente Hoorn",
                                             subjectSerialNumber: Self.oin))
        try valid.write(certificateTo: path("valid.pem"), keyTo: path("valid.key"))

        expired = try ca.issue(CertificateSpec(commonName: "expired", organisation: "Gemeente Hoorn",
                                               subjectSerialNumber: Self.oin,
                                               notBefore: Date(timeIntervalSinceNow: -40 * 86400), days: 30))
        try expired.write(certificateTo: path("expired.pem"), keyTo: path("expired.key"))

        revoked = try ca.issue(CertificateSpec(commonName: "revoked", organisation: "Gemeente Hoorn",
                                               subjectSerialNumber: Self.oin))
        try revoked.write(certificateTo: path("revoked.pem"), keyTo: path("revoked.key"))
        try PEMFile.write(try ca.revocationList(revoking: [revoked.serialNumber]), to: path("crl.pem"), secret: false)

        let other = try DevelopmentCA.create(organisation: "Somebody else", commonName: "Unrelated CA")
        foreign = try other.issue(CertificateSpec(commonName: "foreign", organisation: "Gemeente Hoorn",
                                                  subjectSerialNumber: Self.oin))
        try foreign.write(certificateTo: path("foreign.pem"), keyTo: path("foreign.key"))
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func path(_ name: String) -> String { directory + "/" + name }

    func serverContext(crl: Bool = true) throws -> TLSContext {
        try TLSContext(role: .server, certificateChain: path("server.pem"), privateKey: path("server.key"),
                       trustedCAs: path("ca.pem"), crl: crl ? path("crl.pem") : nil)
    }

    func clientContext(_ name: String = "valid") throws -> TLSContext {
        try TLSContext(role: .client, certificateChain: path("\(name).pem"), privateKey: path("\(name).key"),
                       trustedCAs: path("ca.pem"))
    }
}

/// Runs a process and returns its exit status, stdout and stderr.
@discardableResult
func runProcess(_ executable: String, _ arguments: [String], timeout: TimeInterval = 20) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let timer = DispatchWorkItem { if process.isRunning { process.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    timer.cancel()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}

/// A test class whose tests share one `TestPKI`, made once per class (making one costs
/// several key generations).
class PKITestCase: XCTestCase {
    private static var sharedPKI: TestPKI?
    var pki: TestPKI { Self.sharedPKI! }

    override class func setUp() {
        sharedPKI = try! TestPKI()
    }

    override class func tearDown() {
        sharedPKI = nil
    }
}
