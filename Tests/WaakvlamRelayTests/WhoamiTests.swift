import Foundation
import XCTest
import WaakvlamCore
@testable import WaakvlamRelay
@testable import WaakvlamTransport

/// The node's first face, end to end: the repository's Config copied to a temporary folder,
/// `waakvlam pki init` run on it, the node started, and partners asking who they are.
final class WhoamiTests: XCTestCase {
    private static var shared: Site?
    private var site: Site { Self.shared! }

    override class func setUp() {
        shared = try! Site()
        try! shared!.startNode()
    }

    override class func tearDown() {
        shared?.node?.shutdown(gracePeriod: 1)
        shared = nil
    }

    func testPKIInitPrintsAWorkingCurlCommandAndIsIdempotent() throws {
        // The first run (in setUp) printed a curl command: run it as printed.
        let command = try XCTUnwrap(site.pkiOutput.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("curl ") })
        let result = try runProcess("/bin/sh", ["-c", String(command) + " --max-time 10 -sS"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let body = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((body["organisation"] as? [String: Any])?["id"] as? String, "gemeente-hoorn")

        // A second run keeps everything.
        let caBefore = try String(contentsOfFile: site.pki("ca.pem"))
        let pinsBefore = try String(contentsOfFile: site.pki("pins.json"))
        let again = try site.runPKIInit()
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("kept:"), again.stdout)
        XCTAssertEqual(try String(contentsOfFile: site.pki("ca.pem")), caBefore)
        XCTAssertEqual(try String(contentsOfFile: site.pki("pins.json")), pinsBefore)
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: site.pki("intermaris.key"))[.posixPermissions] as? Int), 0o600)
    }

    func testPKIInitForceReplacesTheCA() throws {
        let other = try Site()
        let caBefore = try String(contentsOfFile: other.pki("ca.pem"))
        let forced = try other.runPKIInit(["--force"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertNotEqual(try String(contentsOfFile: other.pki("ca.pem")), caBefore)
        let verify = try runProcess("/usr/bin/openssl", ["verify", "-CAfile", other.pki("ca.pem"), other.pki("node.crt"), other.pki("1hoorn.crt")])
        XCTAssertEqual(verify.status, 0, verify.stdout)
    }

    func testEveryOrganisationIsRecognisedByCurlAndTheOwnClient() throws {
        let configuration = try XCTUnwrap(site.node?.configuration)
        for organisation in configuration.organisations {
            let result = try site.curl(organisation.id, "/v1/whoami")
            XCTAssertEqual(result.status, 200, organisation.id)
            XCTAssertEqual(result.json["organisation"] as? [String: String],
                           ["id": organisation.id, "oin": organisation.oin, "name": organisation.name, "sector": organisation.sector.rawValue])
            let certificate = result.json["certificate"] as? [String: Any]
            XCTAssertEqual(certificate?["pin"] as? String, organisation.pins.first)

            let client = HTTPClient(tls: try site.clientContext(organisation.id))
            let response = try client.send(HTTPRequest(method: "GET", target: "/v1/whoami"), to: site.endpoint)
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual((json(response)["organisation"] as? [String: Any])?["oin"] as? String, organisation.oin)
        }
    }

    func testACertificateOfTheRightCAWithoutAnOrganisationGets403() throws {
        let ca = try site.ca()
        // An OIN that no configured organisation has.
        try site.issue(ca, "unknown", CertificateSpec(commonName: "stranger", organisation: "Stranger BV", subjectSerialNumber: "00000099000000990000"))
        let unknown = try site.curl("unknown", "/v1/whoami")
        XCTAssertEqual(unknown.status, 403)
        XCTAssertEqual((unknown.json["error"] as? [String: String])?["code"], "unknown_organisation")
        XCTAssertTrue(((unknown.json["error"] as? [String: String])?["message"] ?? "").contains("00000099000000990000"))
        XCTAssertNil(unknown.json["organisation"])

        // Intermaris' OIN, but a key that is not pinned for Intermaris.
        let intermaris = try XCTUnwrap(site.node?.configuration.organisation(id: "intermaris"))
        try site.issue(ca, "wrong-key", CertificateSpec(commonName: "impostor", organisation: intermaris.name, subjectSerialNumber: intermaris.oin))
        let wrongPin = try site.curl("wrong-key", "/v1/whoami")
        XCTAssertEqual(wrongPin.status, 403)
        XCTAssertEqual((wrongPin.json["error"] as? [String: String])?["code"], "key_not_pinned")

        // No OIN at all.
        try site.issue(ca, "no-oin", CertificateSpec(commonName: "anonymous"))
        let noOIN = try site.curl("no-oin", "/v1/whoami")
        XCTAssertEqual(noOIN.status, 403)
        XCTAssertEqual((noOIN.json["error"] as? [String: String])?["code"], "certificate_without_oin")

        // Refused on every route, not only whoami.
        XCTAssertEqual(try site.curl("unknown", "/v1/anything").status, 403)
    }

    func testARenewedCertificateWithTheSameKeyKeepsWorking() throws {
        let ca = try site.ca()
        let key = try PrivateKey(pemFile: site.pki("1hoorn.key"))
        let renewed = try ca.issue(CertificateSpec(commonName: "1hoorn renewed", organisation: "1.Hoorn", subjectSerialNumber: "00000099000000040000"), key: key)
        try renewed.write(certificateTo: site.pki("1hoorn-renewed.crt"), keyTo: site.pki("1hoorn-renewed.key"))
        XCTAssertNotEqual(try String(contentsOfFile: site.pki("1hoorn-renewed.crt")), try String(contentsOfFile: site.pki("1hoorn.crt")))
        let result = try site.curl("1hoorn-renewed", "/v1/whoami")
        XCTAssertEqual(result.status, 200)
        XCTAssertEqual((result.json["organisation"] as? [String: String])?["id"], "1hoorn")
    }

    func testUnknownRoutesAndMethods() throws {
        let missing = try site.curl("intermaris", "/v1/nothing-here")
        XCTAssertEqual(missing.status, 404)
        XCTAssertEqual((missing.json["error"] as? [String: String])?["code"], "not_found")
        let post = try site.curl("intermaris", "/v1/whoami", ["-X", "POST", "--data", "{}"])
        XCTAssertEqual(post.status, 405)
        XCTAssertEqual((post.json["error"] as? [String: String])?["code"], "method_not_allowed")
    }

    /// The CRL refresh of Deploy/PRODUCTION.md: a new CRL and a reload refuse a revoked
    /// certificate; a new pin and a reload admit a new key.
    func testReloadAppliesANewCRLAndNewPins() throws {
        let other = try Site()
        try other.setNodeJSON(replacing: "crl: null", with: "crl: \"../run/pki/crl.pem\"")
        try other.startNode()
        defer { other.node?.shutdown(gracePeriod: 1) }
        XCTAssertEqual(try other.curl("politie-nhn", "/v1/whoami").status, 200, "the empty CRL of pki init is loaded")

        let ca = try other.ca()
        let serial = try PeerCertificate(pemFile: other.pki("politie-nhn.crt")).serialNumber
        try PEMFile.write(try ca.revocationList(revoking: [serial], number: 2), to: other.pki("crl.pem"), secret: false)
        let second = try other.issue(ca, "ggz-second", CertificateSpec(commonName: "ggz second key", organisation: "GGZ Noord-Holland-Noord",
                                                                        subjectSerialNumber: "00000099000000050000"))
        var pins = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: other.pki("pins.json")))) as? [String: [String]])
        pins["ggz-nhn", default: []].append(second.publicKeyPin)
        try JSONSerialization.data(withJSONObject: pins).write(to: URL(fileURLWithPath: other.pki("pins.json")))
        XCTAssertEqual(try other.curl("ggz-second", "/v1/whoami").status, 403, "not pinned yet")

        guard case .applied = try XCTUnwrap(other.node).applyConfiguration(appliedBy: "test") else {
            return XCTFail("the new CRL and pins file were not applied")
        }
        XCTAssertNotEqual(try other.curl("politie-nhn", "/v1/whoami").status, 200, "revoked by the new CRL")
        XCTAssertEqual(try other.curl("ggz-second", "/v1/whoami").status, 200, "pinned by the new pins file")
        XCTAssertEqual(try other.curl("intermaris", "/v1/whoami").status, 200)
    }

    func testWhoamiBodyIsValidJSONForAnyName() throws {
        let certificate = try PeerCertificate(pemFile: site.pki("intermaris.crt"))
        let name = "De \"Boog\" \\ Hoorn\n\u{1}é"
        let response = Whoami.response(organisation: Organisation(id: "x", oin: "00000099000000990000", name: name, sector: .zorg),
                                        certificate: certificate)
        let body = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: [String: String]])
        XCTAssertEqual(body["organisation"]?["name"], name)
        XCTAssertEqual(body["certificate"]?["pin"], certificate.publicKeyPin)
        XCTAssertEqual(Whoami.utcTimestamp(Date(timeIntervalSince1970: 1_861_138_311)), "2028-12-22T22:51:51Z")
    }

    func testDaemonAnswersAndShutsDownOnSIGTERM() throws {
        let other = try Site()
        let daemon = Process()
        daemon.executableURL = Site.binary("waakvlamd")
        daemon.arguments = ["--config", other.config]
        let errors = Pipe()
        daemon.standardError = errors
        try daemon.run()
        defer { if daemon.isRunning { daemon.terminate() } }
        var status = 0
        let end = Date(timeIntervalSinceNow: 10)
        while status != 200 && Date() < end {
            status = (try? other.curl("vh-de-boog", "/v1/whoami").status) ?? 0
            if status != 200 { usleep(50_000) }
        }
        XCTAssertEqual(status, 200)
        daemon.terminate() // SIGTERM
        let stopped = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            daemon.waitUntilExit()
            stopped.signal()
        }
        XCTAssertEqual(stopped.wait(timeout: .now() + 12), .success)
        XCTAssertEqual(daemon.terminationStatus, 0)
        let log = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        for event in ["node_started", "shutdown_requested", "server_stopped"] {
            XCTAssertTrue(log.contains("\"event\":\"\(event)\""), "\(event) in \(log)")
        }
        // One JSON object per line.
        for line in log.split(separator: "\n") {
            XCTAssertNotNil(try? JSONSerialization.jsonObject(with: Data(line.utf8)), String(line))
        }
    }
}
