import Foundation
import XCTest
import WaakvlamJournal
import WaakvlamRelay
import WaakvlamTransport

/// Applying configuration to a running node (issue: administrators edit convenants safely):
/// under load, every decision names the version it was made under and no request fails; a
/// rollback is a new version; a convenant past its end date stops allowing flows.
final class ConfigApplyTests: XCTestCase {
    private let signal = Array("""
    {"type": "zorgsignaal", "to": ["1hoorn"], "payload": {"Postcode": "1624KM", "Huisnummer": 12,
     "Voorletters": "J.", "Achternaam": "Voorbeeld", "Geboortedatum": "1948-06-30", "waarneming": "Post stapelt zich op.", "urgentie": "hoog"}}
    """.utf8)

    private func edit(_ path: String, _ old: String, _ new: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(text.contains(old), "\(path) has no '\(old)'")
        try text.replacingOccurrences(of: old, with: new).write(toFile: path, atomically: true, encoding: .utf8)
    }

    private func body(_ response: HTTPResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
    }

    func testApplyUnderLoadDecidesEverySignalUnderOneWholeVersion() throws {
        let site = try Site()
        try site.startNode()
        let node = try XCTUnwrap(site.node)
        defer { node.shutdown(gracePeriod: 2) }
        let client = HTTPClient(tls: try site.clientContext("intermaris"))
        /// What the sender threads share.
        final class Flow: @unchecked Sendable {
            let lock = NSLock()
            var answers: [(status: Int, version: String)] = []
            var stop = false
        }
        let flow = Flow()
        let senders = DispatchGroup()
        for _ in 0..<6 {
            senders.enter()
            Thread {
                defer { senders.leave() }
                while true {
                    flow.lock.lock()
                    let done = flow.stop
                    flow.lock.unlock()
                    if done { return }
                    let request = HTTPRequest(method: "POST", target: "/v1/signals", headers: HTTPHeaders([("Content-Type", "application/json")]),
                                              body: self.signal)
                    let response = try? client.send(request, to: site.endpoint)
                    let object = response.map(self.body) ?? [:]
                    flow.lock.lock()
                    flow.answers.append((response?.status ?? 0, object["configVersion"] as? String ?? ""))
                    flow.lock.unlock()
                }
            }.start()
        }
        // Five applies while signals flow: the convenant's start date alternates, so every
        // version differs from the one before.
        let convenant = site.config + "/convenants/leefbaarheid-hoorn.json"
        var applied: [Int] = []
        for round in 0..<5 {
            usleep(150_000)
            try edit(convenant, round % 2 == 0 ? "validFrom: \"2025-01-01\"" : "validFrom: \"2025-01-02\"",
                     round % 2 == 0 ? "validFrom: \"2025-01-02\"" : "validFrom: \"2025-01-01\"")
            guard case .applied(let version, let summary) = node.applyConfiguration(appliedBy: "test") else {
                return XCTFail("round \(round): a valid change was refused")
            }
            XCTAssertFalse(summary.isEmpty)
            applied.append(version)
        }
        usleep(150_000)
        flow.lock.lock()
        flow.stop = true
        flow.lock.unlock()
        senders.wait()
        let answers = flow.answers

        XCTAssertEqual(applied, [2, 3, 4, 5, 6], "each apply is a new version")
        XCTAssertGreaterThan(answers.count, 20, "signals flowed during the applies")
        XCTAssertEqual(answers.filter { $0.status != 202 }.count, 0, "no request failed: \(answers.filter { $0.status != 202 }.prefix(3))")
        let versions = Set(answers.map(\.version))
        XCTAssertTrue(versions.isSubset(of: Set((1...6).map(String.init))), "\(versions)")
        XCTAssertGreaterThan(versions.count, 1, "signals were decided under more than one version")

        // In the journal, every decision names a version that was applied before it.
        node.shutdown(gracePeriod: 2)
        let reader = try JournalReader(directory: Journal.directory(inState: site.root + "/run/state"))
        var appliedSoFar: Set<String> = []
        var decisions = 0
        try reader.records(matching: JournalQuery()) { stored in
            switch stored.record {
            case .configApplied(let record): appliedSoFar.insert(record.version)
            case .decision(let decision):
                decisions += 1
                XCTAssertTrue(appliedSoFar.contains(decision.configVersion), "decision under \(decision.configVersion) before it was applied")
            default: break
            }
        }
        XCTAssertEqual(decisions, answers.count)
        XCTAssertEqual(appliedSoFar, Set((1...6).map(String.init)))
    }

    func testRollbackIsANewVersionAndHistoryIsKept() throws {
        let site = try Site()
        try site.startNode()
        let node = try XCTUnwrap(site.node)
        defer { node.shutdown(gracePeriod: 2) }
        let client = HTTPClient(tls: try site.clientContext("intermaris"))
        func submit() throws -> HTTPResponse {
            try client.send(HTTPRequest(method: "POST", target: "/v1/signals", body: signal), to: site.endpoint)
        }
        XCTAssertEqual(try submit().status, 202)

        try edit(site.config + "/organisations.json", "id: \"1hoorn\",", "id: \"1hoorn\", suspended: true,")
        guard case .applied(2, _) = node.applyConfiguration(appliedBy: "SIGHUP") else { return XCTFail("version 2 not applied") }
        XCTAssertEqual(try submit().status, 403, "1.Hoorn suspended")

        let state = site.root + "/run/state"
        let rollback = try runProcess(Site.binary("waakvlam").path, ["config", "rollback", "1", "--state", state, "--config", site.config, "--by", "alice"])
        XCTAssertEqual(rollback.status, 0, rollback.stderr)
        XCTAssertTrue(rollback.stdout.contains("organisations.json"), rollback.stdout)
        guard case .applied(let version, _) = node.applyConfiguration(appliedBy: "SIGHUP") else { return XCTFail("rollback not applied") }
        XCTAssertEqual(version, 3, "a rollback is a new version; history is never rewritten")
        let after = try submit()
        XCTAssertEqual(after.status, 202)
        XCTAssertEqual(body(after)["configVersion"] as? String, "3")

        let history = try runProcess(Site.binary("waakvlam").path, ["config", "history", "--state", state, "--json"])
        XCTAssertEqual(history.status, 0, history.stderr)
        let entries = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(history.stdout.utf8)) as? [[String: Any]])
        XCTAssertEqual(entries.map { $0["version"] as? Int }, [1, 2, 3])
        XCTAssertTrue((entries[2]["appliedBy"] as? String ?? "").contains("rollback of 1"), "\(entries[2])")
        XCTAssertEqual(entries[0]["contentHash"] as? String, entries[2]["contentHash"] as? String, "same content as version 1")
        let show = try runProcess(Site.binary("waakvlam").path, ["config", "show", "2", "--state", state, "--file", "organisations.json"])
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("suspended: true"), show.stdout)
    }

    func testAConvenantPastItsEndAllowsNothingAndOneEndingSoonIsAWarning() throws {
        let site = try Site()
        let calendar = Calendar(identifier: .gregorian)
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd"
        formatter.timeZone = TimeZone(identifier: "Europe/Amsterdam")
        let convenant = site.config + "/convenants/leefbaarheid-hoorn.json"

        let soon = formatter.string(from: calendar.date(byAdding: .day, value: 10, to: Date())!)
        try edit(convenant, "validUntil: \"2029-12-31\"", "validUntil: \"\(soon)\"")
        let check = try runProcess(Site.binary("waakvlam").path, ["config", "check", site.config])
        XCTAssertEqual(check.status, 0, "a warning is not an error: \(check.stdout)")
        XCTAssertTrue(check.stdout.contains("ends on \(soon)"), check.stdout)

        try site.startNode()
        let node = try XCTUnwrap(site.node)
        defer { node.shutdown(gracePeriod: 2) }
        let client = HTTPClient(tls: try site.clientContext("intermaris"))
        let before = try client.send(HTTPRequest(method: "POST", target: "/v1/signals", body: signal), to: site.endpoint)
        XCTAssertEqual(before.status, 202)

        let yesterday = formatter.string(from: calendar.date(byAdding: .day, value: -1, to: Date())!)
        try edit(convenant, "validUntil: \"\(soon)\"", "validUntil: \"\(yesterday)\"")
        guard case .applied = node.applyConfiguration(appliedBy: "test") else { return XCTFail("an ended convenant is valid configuration") }
        let after = try client.send(HTTPRequest(method: "POST", target: "/v1/signals", body: signal), to: site.endpoint)
        XCTAssertEqual(after.status, 403)
        let decision = (body(after)["recipients"] as? [[String: Any]])?.first
        XCTAssertEqual(decision?["code"] as? String, "convenant_not_in_force", "\(body(after))")
    }
}
