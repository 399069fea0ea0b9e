import Foundation
import XCTest
import WaakvlamRelay

/// Running the daemon as an operator does: `--check`, SIGHUP applies (or refuses) a changed
/// configuration, the admin listener's health, metrics and apply endpoint, and the archive.
final class OperationsTests: XCTestCase {
    /// waakvlamd as a child process with its log in a file.
    private final class Daemon {
        let process = Process()
        let log: String

        init(site: Site) throws {
            log = site.root + "/waakvlamd-\(UUID().uuidString).log"
            XCTAssertTrue(FileManager.default.createFile(atPath: log, contents: nil), "cannot create \(log)")
            process.executableURL = Site.binary("waakvlamd")
            process.arguments = ["--config", site.config]
            process.standardError = FileHandle(forWritingAtPath: log)
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            try waitFor("node_started")
        }

        deinit {
            if process.isRunning {
                process.interrupt()
                process.waitUntilExit()
            }
        }

        var events: [[String: Any]] {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }

        /// Waits until the log has `count` lines with this event.
        @discardableResult
        func waitFor(_ event: String, count: Int = 1, timeout: TimeInterval = 15) throws -> [String: Any] {
            let end = Date(timeIntervalSinceNow: timeout)
            while Date() < end {
                let matching = events.filter { $0["event"] as? String == event }
                if matching.count >= count { return matching[count - 1] }
                guard process.isRunning else { break }
                usleep(20_000)
            }
            throw NSError(domain: "OperationsTests", code: 1, userInfo: [NSLocalizedDescriptionKey: "no \(event) in \(log)"])
        }

        func signal(_ number: Int32) { kill(process.processIdentifier, number) }
    }

    private func curl(_ site: Site, _ name: String, port: UInt16, _ method: String, _ path: String, body: String? = nil) throws -> (status: Int, text: String) {
        var arguments = ["-sS", "--max-time", "10", "--cacert", site.pki("ca.pem"), "--cert", site.pki("\(name).crt"),
                         "--key", site.pki("\(name).key"), "-X", method, "-w", "\n%{http_code}"]
        if let body { arguments += ["-H", "Content-Type: application/json", "--data-binary", body] }
        let result = try runProcess("/usr/bin/curl", arguments + ["https://localhost:\(port)\(path)"])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    private func object(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    private let signal = """
    {"type": "zorgsignaal", "to": ["1hoorn"], "payload": {"Postcode": "1624KM", "Huisnummer": 12,
     "Voorletters": "J.", "Achternaam": "Voorbeeld", "Geboortedatum": "1948-06-30", "waarneming": "Post stapelt zich op.", "urgentie": "hoog"}}
    """

    func testCheckReportsAValidAndABrokenConfiguration() throws {
        let site = try Site()
        let good = try runProcess(Site.binary("waakvlamd").path, ["--config", site.config, "--check"])
        XCTAssertEqual(good.status, 0, good.stderr)
        XCTAssertTrue(good.stdout.contains("configuration valid"), good.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: site.root + "/run/state/journal"), "--check writes nothing")

        try "{ id: \"kapot\", version: 1,, }".write(toFile: site.config + "/convenants/kapot.json", atomically: true, encoding: .utf8)
        let bad = try runProcess(Site.binary("waakvlamd").path, ["--config", site.config, "--check"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("kapot.json"), "the log names the broken file: \(bad.stderr)")

        try FileManager.default.removeItem(atPath: site.config + "/convenants/kapot.json")
        try FileManager.default.removeItem(atPath: site.pki("node.key"))
        let noKey = try runProcess(Site.binary("waakvlamd").path, ["--config", site.config, "--check"])
        XCTAssertEqual(noKey.status, 1)
        XCTAssertTrue(noKey.stderr.contains("node.key"), "names the missing key file: \(noKey.stderr)")
    }

    func testSIGHUPAppliesAValidChangeAndRefusesAnInvalidOne() throws {
        let site = try Site()
        let daemon = try Daemon(site: site)
        let first = try curl(site, "intermaris", port: site.port, "POST", "/v1/signals", body: signal)
        XCTAssertEqual(first.status, 202, first.text)
        XCTAssertEqual(object(first.text)["configVersion"] as? String, "1")

        // An invalid change is refused as a whole; the running configuration stays.
        let convenant = site.config + "/convenants/leefbaarheid-hoorn.json"
        let original = try String(contentsOfFile: convenant, encoding: .utf8)
        try original.replacingOccurrences(of: "retentionDays: 180", with: "retentionDays: 0")
            .replacingOccurrences(of: "\"1hoorn\", \"ggz-nhn\"", with: "\"1hoorn\", \"ggz-nhn\", \"onbekend\"")
            .write(toFile: convenant, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        let refused = try daemon.waitFor("config_apply_refused")
        XCTAssertEqual(refused["config_version"] as? String, "1")
        XCTAssertGreaterThanOrEqual(refused["errors"] as? Int ?? 0, 1)
        let during = try curl(site, "intermaris", port: site.port, "POST", "/v1/signals", body: signal)
        XCTAssertEqual(during.status, 202, "the old configuration still decides")
        XCTAssertEqual(object(during.text)["configVersion"] as? String, "1")

        // A valid change (1.Hoorn suspended) is applied atomically as version 2.
        try original.write(toFile: convenant, atomically: true, encoding: .utf8)
        let organisations = site.config + "/organisations.json"
        let orgs = try String(contentsOfFile: organisations, encoding: .utf8)
        let marker = "id: \"1hoorn\","
        XCTAssertTrue(orgs.contains(marker))
        try orgs.replacingOccurrences(of: marker, with: marker + " suspended: true,").write(toFile: organisations, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        let applied = try daemon.waitFor("config_applied")
        XCTAssertEqual(applied["config_version"] as? Int, 2)
        let after = try curl(site, "intermaris", port: site.port, "POST", "/v1/signals", body: signal)
        XCTAssertEqual(after.status, 403, "1.Hoorn is suspended now: \(after.text)")
        let decision = (object(after.text)["recipients"] as? [[String: Any]])?.first
        XCTAssertEqual(decision?["code"] as? String, "recipient_suspended")
        XCTAssertEqual(object(after.text)["configVersion"] as? String, "2")

        // The archive holds both versions; the journal ties them into the chain.
        daemon.signal(SIGTERM)
        daemon.process.waitUntilExit()
        XCTAssertEqual(daemon.process.terminationStatus, 0)
        let history = try runProcess(Site.binary("waakvlam").path, ["config", "history", "--state", site.root + "/run/state"])
        XCTAssertEqual(history.status, 0, history.stderr)
        XCTAssertTrue(history.stdout.contains("SIGHUP"), history.stdout)
        let lines = history.stdout.split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).first?.isNumber == true }
        XCTAssertEqual(lines.count, 2, history.stdout)
        let query = try runProcess(Site.binary("waakvlam").path, ["journal", "query", "--state", site.root + "/run/state", "--kind", "configApplied", "--json"])
        XCTAssertEqual(query.status, 0, query.stderr)
        XCTAssertEqual(query.stdout.split(separator: "\n").count, 2, query.stdout)
        let verify = try runProcess(Site.binary("waakvlam").path, ["journal", "verify", "--state", site.root + "/run/state"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }

    func testAdminListenerHealthMetricsAndApply() throws {
        let site = try Site()
        let daemon = try Daemon(site: site)
        let health = try curl(site, "vh-de-boog", port: site.adminPort, "GET", "/healthz")
        XCTAssertEqual(health.status, 200, health.text)
        XCTAssertEqual(object(health.text)["status"] as? String, "ready")

        XCTAssertEqual(try curl(site, "intermaris", port: site.port, "POST", "/v1/signals", body: signal).status, 202)
        // Metrics and apply are for administrators only (gemeente Hoorn in the example).
        let refused = try curl(site, "intermaris", port: site.adminPort, "GET", "/metrics")
        XCTAssertEqual(refused.status, 403)
        XCTAssertEqual((object(refused.text)["error"] as? [String: Any])?["code"] as? String, "not_an_administrator")
        let metrics = try curl(site, "gemeente-hoorn", port: site.adminPort, "GET", "/metrics")
        XCTAssertEqual(metrics.status, 200)
        for sample in ["waakvlam_signals_accepted_total{type=\"zorgsignaal\"} 1", "waakvlam_backlog{recipient=\"1hoorn\"} 1",
                       "waakvlam_journal_commit_seconds_count", "# TYPE waakvlam_tls_handshake_failures_total counter",
                       "# TYPE waakvlam_delivery_index_scratch_bytes gauge"] {
            XCTAssertTrue(metrics.text.contains(sample), "\(sample) in\n\(metrics.text)")
        }

        // A certificate from an unknown CA fails the handshake; the metric counts the cause.
        let stranger = try runProcess("/usr/bin/curl", ["-sS", "--max-time", "5", "-k", "https://localhost:\(site.port)/v1/whoami"])
        XCTAssertNotEqual(stranger.status, 0)
        let counted = try curl(site, "gemeente-hoorn", port: site.adminPort, "GET", "/metrics")
        XCTAssertTrue(counted.text.contains("waakvlam_tls_handshake_failures_total{cause=\"no_client_certificate\"} 1"), counted.text)

        // Apply through the endpoint: invalid is refused with every issue (422), valid is applied.
        let types = site.config + "/signal-types.json"
        let original = try String(contentsOfFile: types, encoding: .utf8)
        try original.replacingOccurrences(of: "category: \"nuisance\"", with: "category: \"overlast\"").write(toFile: types, atomically: true, encoding: .utf8)
        let invalid = try curl(site, "gemeente-hoorn", port: site.adminPort, "POST", "/admin/config/apply")
        XCTAssertEqual(invalid.status, 422, invalid.text)
        XCTAssertGreaterThan((object(invalid.text)["issues"] as? [Any])?.count ?? 0, 1, "every issue is listed")
        XCTAssertEqual(try curl(site, "intermaris", port: site.adminPort, "POST", "/admin/config/apply").status, 403)
        try original.write(toFile: types, atomically: true, encoding: .utf8)
        let unchanged = try curl(site, "gemeente-hoorn", port: site.adminPort, "POST", "/admin/config/apply")
        XCTAssertEqual(unchanged.status, 200, unchanged.text)
        XCTAssertEqual(object(unchanged.text)["version"] as? Int, 1, "the same content is the same version")
        _ = daemon
    }
}
