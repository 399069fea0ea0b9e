import Foundation
import XCTest
import WaakvlamRelay
@testable import WaakvlamTransport

/// The relay when things go wrong: a recipient that is down, one that never comes back, a
/// full disk, and the node killed with SIGKILL under load.
final class RelayFaultTests: XCTestCase {
    /// A small zorgsignaal from Intermaris; 1.Hoorn and GGZ may have it, the politie may not.
    private static func zorgsignaal(_ id: String, to recipients: [String]) throws -> [UInt8] {
        try jsonBytes(["id": id, "type": "zorgsignaal", "to": recipients,
                       "payload": ["Postcode": "1624KM", "Huisnummer": 12, "waarneming": "Post stapelt zich op.", "urgentie": "hoog"]])
    }

    // MARK: - Recipients that are down

    func testARecipientThatIsDownGetsEverythingOnceBackWithoutSlowingOthers() throws {
        let site = try Site()
        let wijkteam = try RecipientServer(site: site, organisation: "1hoorn") // down for a while
        let ggz = try RecipientServer(site: site, organisation: "ggz-nhn")     // up throughout
        for server in [wijkteam, ggz] { try site.setPush(server.organisation, to: server.url) }
        try site.setDelivery("minimumBackoffSeconds: 1, maximumBackoffSeconds: 2, maximumLifetimeHours: 120, maximumInFlight: 64, timeoutSeconds: 5")
        try ggz.start()
        try site.startNode()
        defer {
            site.node?.shutdown(gracePeriod: 1)
            for server in [wijkteam, ggz] { server.stop() }
        }

        let ids = (0..<20).map { "down-\($0)" }
        for id in ids {
            let reply = try site.send("intermaris", "POST", "/v1/signals", body: try Self.zorgsignaal(id, to: ["1hoorn", "ggz-nhn"]))
            XCTAssertEqual(reply.status, 202, "\(reply.json)")
        }

        // GGZ gets everything while 1.Hoorn is down, and 1.Hoorn is probed meanwhile (one
        // delivery at a time while it is down, not all twenty).
        XCTAssertTrue(ggz.waitForAll(Set(ids), timeout: 20), "GGZ got \(ggz.countsByID.count) of \(ids.count)")
        var tried: [String: Any]?
        XCTAssertTrue(try eventually(timeout: 10) {
            tried = try ids.lazy.compactMap { try site.status("intermaris", $0).recipient("1hoorn") }
                .first { ($0["attempts"] as? Int ?? 0) >= 1 }
            return tried != nil
        }, "1.Hoorn was tried")
        XCTAssertNotNil(tried?["nextAttemptAt"], "the sender sees when the next attempt is due")
        for id in ids {
            XCTAssertEqual(try site.recipientStates("intermaris", id), ["1hoorn": "pending", "ggz-nhn": "delivered"])
        }
        XCTAssertTrue(wijkteam.received.isEmpty)

        // 1.Hoorn comes back on the same address and gets everything, once.
        try wijkteam.start()
        XCTAssertTrue(wijkteam.waitForAll(Set(ids), timeout: 20), "1.Hoorn got \(wijkteam.countsByID.count) of \(ids.count)")
        for id in ids {
            var states: [String: String] = [:]
            XCTAssertTrue(try eventually(timeout: 10) {
                states = try site.recipientStates("intermaris", id)
                return states == ["1hoorn": "delivered", "ggz-nhn": "delivered"]
            }, "\(id): \(states)")
        }
        XCTAssertEqual(Set(ggz.countsByID.values), [1], "each signal once")
        XCTAssertEqual(Set(wijkteam.countsByID.values), [1], "each signal once")

        // The journal has the failed attempts, each with its outcome, then the delivery.
        let records = try site.journalRecords(signal: ids[0]).filter { $0["recipient_id"] as? String == "1hoorn" }
        XCTAssertEqual(records.first?["kind"] as? String, "decision")
        XCTAssertEqual(records.last?["kind"] as? String, "delivered")
        let attempts = records.filter { $0["kind"] as? String == "attempt" }
        XCTAssertFalse(attempts.isEmpty, "\(records)")
        XCTAssertTrue(attempts.allSatisfy { ($0["outcome"] as? String ?? "").contains("127.0.0.1:\(wijkteam.port)") }, "\(attempts)")
        let verify = try site.waakvlam(["journal", "verify", "--state", site.state])
        XCTAssertEqual(verify.status, 0, verify.stdout)
    }

    func testADeliveryThatNeverSucceedsExpiresAndTheSenderSeesIt() throws {
        let site = try Site()
        let ggz = try RecipientServer(site: site, organisation: "ggz-nhn")            // up
        let gemeente = try RecipientServer(site: site, organisation: "gemeente-hoorn") // never comes up
        for server in [ggz, gemeente] { try site.setPush(server.organisation, to: server.url) }
        try site.setDelivery("minimumBackoffSeconds: 1, maximumBackoffSeconds: 2, maximumLifetimeSeconds: 3, maximumInFlight: 64, timeoutSeconds: 5")
        try ggz.start()
        try site.startNode()
        defer {
            site.node?.shutdown(gracePeriod: 1)
            ggz.stop()
        }

        let ids = (0..<5).map { "never-\($0)" }
        for id in ids {
            let reply = try site.send("intermaris", "POST", "/v1/signals", body: try Self.zorgsignaal(id, to: ["ggz-nhn", "gemeente-hoorn"]))
            XCTAssertEqual(reply.status, 202, "\(reply.json)")
        }
        for id in ids {
            var states: [String: String] = [:]
            XCTAssertTrue(try eventually(timeout: 15) {
                states = try site.recipientStates("intermaris", id)
                return states == ["ggz-nhn": "delivered", "gemeente-hoorn": "expired"]
            }, "\(id): \(states)")
        }
        let status = try site.status("intermaris", ids[0])
        let expired = try XCTUnwrap(status.recipient("gemeente-hoorn"))
        let expiredAt = try XCTUnwrap(expired["expiredAt"] as? String)
        let receivedAt = try XCTUnwrap(status.json["receivedAt"] as? String)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let lived = try XCTUnwrap(formatter.date(from: expiredAt)).timeIntervalSince(try XCTUnwrap(formatter.date(from: receivedAt)))
        XCTAssertGreaterThanOrEqual(lived, 3, "not before the end of its lifetime")
        XCTAssertTrue(gemeente.received.isEmpty)

        let records = try site.journalRecords(signal: ids[0]).filter { $0["recipient_id"] as? String == "gemeente-hoorn" }
        XCTAssertEqual(records.first?["kind"] as? String, "decision")
        XCTAssertEqual(records.last?["kind"] as? String, "expired")
        XCTAssertTrue(records.contains { $0["kind"] as? String == "attempt" }, "\(records)")
        // An expired delivery is not tried again: no attempt for longer than the maximum back-off.
        let attemptsAtExpiry = records.filter { $0["kind"] as? String == "attempt" }.count
        usleep(2_500_000)
        let later = try site.journalRecords(signal: ids[0]).filter { $0["recipient_id"] as? String == "gemeente-hoorn" && $0["kind"] as? String == "attempt" }
        XCTAssertEqual(later.count, attemptsAtExpiry)
    }

    // MARK: - Full disk

    /// The journal's disk fills up (a file size limit on the daemon, so that writes fail with
    /// EFBIG as on a full disk): submissions get 503 `journal_unavailable`, never a 202 for
    /// something not on disk; after the limit is lifted, everything works again.
    func testAFullDiskGives503AndNeverAFalseAcknowledgement() throws {
        let site = try Site()
        let full = try Daemon(site: site, fileSizeLimitKiB: 64)
        defer { if full.process.isRunning { full.kill() } }
        try full.waitUntilReady()

        var acknowledged: [String: String] = [:]
        var refused: [String] = []
        for index in 0..<400 where refused.count < 3 {
            let id = "full-\(index)"
            guard let reply = try? site.send("intermaris", "POST", "/v1/signals", body: try Self.zorgsignaal(id, to: ["1hoorn"])) else {
                XCTFail("\(id): no answer; the daemon \(full.process.isRunning ? "runs" : "exited with \(full.process.terminationStatus)")")
                break
            }
            switch reply.status {
            case 202: acknowledged[id] = reply.text
            case 503:
                XCTAssertEqual(reply.errorCode, "journal_unavailable")
                refused.append(id)
            default: XCTFail("\(id): \(reply.status) \(reply.json)")
            }
        }
        XCTAssertEqual(refused.count, 3, "the journal never filled up")
        XCTAssertFalse(acknowledged.isEmpty)
        XCTAssertTrue(full.process.isRunning, "the daemon must answer 503, not die of SIGXFSZ:\n\(full.log.suffix(2000))")
        XCTAssertFalse(full.events("journal_write_failed").isEmpty, full.log.suffix(2000).description)

        let admin = try site.client("gemeente-hoorn").send(HTTPRequest(method: "GET", target: "/healthz"),
                                                           to: Endpoint(host: "127.0.0.1", port: site.adminPort))
        XCTAssertEqual(admin.status, 503, "not ready while the journal cannot be written")
        XCTAssertEqual(json(admin)["journalWritable"] as? Bool, false)
        XCTAssertNotNil(full.stop(), "a graceful stop with a full disk")

        // The limit lifted: every 202 is in the journal, nothing that got a 503 is.
        let daemon = try Daemon(site: site)
        defer { _ = daemon.stop() }
        try daemon.waitUntilReady()
        for (id, firstAnswer) in acknowledged {
            XCTAssertEqual(try site.status("intermaris", id).status, 200, "\(id) got a 202, so it must be in the journal")
            let resubmitted = try site.send("intermaris", "POST", "/v1/signals", body: try Self.zorgsignaal(id, to: ["1hoorn"]))
            XCTAssertEqual(resubmitted.status, 202, id)
            XCTAssertEqual(resubmitted.text, firstAnswer, "\(id): the first answer again, after the restart")
        }
        for id in refused {
            XCTAssertEqual(try site.status("intermaris", id).status, 404, "\(id) was refused, so it must not be known")
        }
        for id in refused + ["full-new"] {
            XCTAssertEqual(try site.send("intermaris", "POST", "/v1/signals", body: try Self.zorgsignaal(id, to: ["1hoorn"])).status, 202, id)
        }
        let inbox = try site.send("1hoorn", "GET", "/v1/inbox?limit=500")
        let inInbox = Set((inbox.json["signals"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String })
        XCTAssertEqual(inInbox, Set(acknowledged.keys).union(refused).union(["full-new"]))
        let verify = try site.waakvlam(["journal", "verify", "--state", site.state])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }

    // MARK: - kill -9 under load

    /// 10,000 signals submitted by 16 concurrent clients (keep-alive connections), the node
    /// killed with SIGKILL half-way and restarted. A client whose request failed sends the
    /// same id again once the node is back. Every signal that got a 202 reaches both of its
    /// allowed recipients; a recipient sees a signal twice only under the same id.
    func testKillDashNineWhileSubmittingLosesNoAcknowledgedSignal() throws {
        let total = 10_000, clients = 16, killAfter = 5_000
        let site = try Site()
        let wijkteam = try RecipientServer(site: site, organisation: "1hoorn", recordsMessages: false)
        let ggz = try RecipientServer(site: site, organisation: "ggz-nhn", recordsMessages: false)
        for server in [wijkteam, ggz] {
            try site.setPush(server.organisation, to: server.url)
            try server.start()
        }
        defer { for server in [wijkteam, ggz] { server.stop() } }
        try site.setDelivery("minimumBackoffSeconds: 1, maximumBackoffSeconds: 2, maximumLifetimeHours: 120, maximumInFlight: 16, timeoutSeconds: 10")
        var daemon = try Daemon(site: site)
        defer { _ = daemon.stop() }
        try daemon.waitUntilReady()

        let tally = SubmissionTally(total: total)
        let deadline = Date(timeIntervalSinceNow: 300)
        let context = try site.clientContext("intermaris")
        let finished = DispatchGroup()
        let started = Date()
        for number in 0..<clients {
            finished.enter()
            let thread = Thread { [endpoint = site.endpoint] in
                defer { finished.leave() }
                let client = HTTPClient(tls: context, configuration: HTTPClientConfiguration(connectTimeout: 2, handshakeTimeout: 10, responseTimeout: 30))
                while let id = tally.nextID() {
                    let request = HTTPRequest(method: "POST", target: "/v1/signals", headers: HTTPHeaders([("Content-Type", "application/json")]),
                                              body: try! Self.zorgsignaal(id, to: ["1hoorn", "ggz-nhn", "politie-nhn"]))
                    var failed = false
                    while Date() < deadline {
                        do {
                            let response = try client.send(request, to: endpoint, idempotent: true)
                            tally.answered(id, status: response.status, afterFailure: failed)
                            break
                        } catch {
                            // The node is down: send the same id again once it is back.
                            failed = true
                            usleep(50_000)
                        }
                    }
                }
            }
            thread.name = "crash-client-\(number)"
            thread.start()
        }

        tally.waitForAcknowledgements(killAfter, until: deadline)
        XCTAssertTrue(daemon.process.isRunning, "the node died before the kill:\n\(daemon.log.suffix(3000))")
        let firstNodeCPU = daemon.cpuSeconds ?? 0
        daemon.kill()
        let killedAt = Date()
        let acknowledgedAtKill = tally.acknowledged
        daemon = try Daemon(site: site)
        try daemon.waitUntilReady(timeout: 60)
        let restartSeconds = Date().timeIntervalSince(killedAt)
        XCTAssertEqual(finished.wait(timeout: .now() + deadline.timeIntervalSinceNow), .success, "clients did not finish")
        let submitSeconds = Date().timeIntervalSince(started)
        XCTAssertTrue(daemon.process.isRunning, "the node died after the restart:\n\(daemon.log.suffix(3000))")

        let allAcknowledged = tally.acknowledged
        XCTAssertEqual(tally.unexpected, [])
        XCTAssertEqual(allAcknowledged.count, total, "every signal is acknowledged in the end")
        XCTAssertTrue(acknowledgedAtKill.count >= killAfter && acknowledgedAtKill.count < total, "killed while submitting")

        // Every acknowledged signal reaches both allowed recipients, none is lost; a repeat
        // comes only under the same id.
        for server in [wijkteam, ggz] {
            XCTAssertTrue(server.waitForAll(allAcknowledged, timeout: 300),
                          "\(server.organisation) got \(server.countsByID.count) of \(allAcknowledged.count)")
            let counts = server.countsByID
            XCTAssertTrue(acknowledgedAtKill.isSubset(of: Set(counts.keys)), "\(server.organisation) lost signals acknowledged before the kill")
            XCTAssertEqual(Set(counts.keys), allAcknowledged, "\(server.organisation) got only submitted ids")
        }
        let drainSeconds = Date().timeIntervalSince(started)
        let nodeCPU = firstNodeCPU + (daemon.cpuSeconds ?? 0)
        let testCPU = Double(clock()) / Double(CLOCKS_PER_SEC)
        let repeats = [wijkteam, ggz].map { server in server.countsByID.values.reduce(0) { $0 + $1 - 1 } }

        // The states as the sender sees them, and the journal after the crash.
        for index in stride(from: 0, to: total, by: 997) {
            XCTAssertEqual(try site.recipientStates("intermaris", "crash-\(index)"),
                           ["1hoorn": "delivered", "ggz-nhn": "delivered", "politie-nhn": "denied"])
        }
        let recovered = daemon.events("journal_recovered").first ?? [:]
        XCTAssertGreaterThan(recovered["records"] as? Int ?? 0, 0)
        let verify = try site.waakvlam(["journal", "verify", "--state", site.state])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        print("""
            kill -9 test: \(total) signals, \(clients) clients; killed after \(acknowledgedAtKill.count) acknowledgements \
            (\(String(format: "%.1f", killedAt.timeIntervalSince(started))) s); answering again after \(String(format: "%.1f", restartSeconds)) s; \
            \(tally.resent) signals sent again after a failed request; recovery: \(recovered["records"] ?? "?") records, \
            \(recovered["torn_bytes_cut"] ?? "?") torn bytes cut, \(recovered["pending_deliveries"] ?? "?") pending deliveries; \
            all acknowledged after \(String(format: "%.1f", submitSeconds)) s, all delivered after \(String(format: "%.1f", drainSeconds)) s; \
            repeated deliveries (same id): 1hoorn \(repeats[0]), ggz-nhn \(repeats[1]); \
            CPU: node \(String(format: "%.0f", nodeCPU)) s, test process (clients and recipients) \(String(format: "%.0f", testCPU)) s
            """)
    }
}

/// What concurrent clients submitted and what the node answered.
private final class SubmissionTally: @unchecked Sendable {
    private let total: Int
    private let condition = NSCondition()
    private var next = 0
    private var acknowledgedIDs = Set<String>()
    private var resentIDs = Set<String>()
    private var unexpectedAnswers: [String] = []

    init(total: Int) {
        self.total = total
    }

    /// The id of the next signal to submit, nil when all were handed out.
    func nextID() -> String? {
        condition.lock()
        defer { condition.unlock() }
        guard next < total else { return nil }
        next += 1
        return "crash-\(next - 1)"
    }

    func answered(_ id: String, status: Int, afterFailure: Bool) {
        condition.lock()
        if status == 202 { acknowledgedIDs.insert(id) } else { unexpectedAnswers.append("\(id): \(status)") }
        if afterFailure { resentIDs.insert(id) }
        condition.broadcast()
        condition.unlock()
    }

    func waitForAcknowledgements(_ count: Int, until deadline: Date) {
        condition.lock()
        while acknowledgedIDs.count < count && condition.wait(until: deadline) {}
        condition.unlock()
    }

    var acknowledged: Set<String> {
        condition.lock()
        defer { condition.unlock() }
        return acknowledgedIDs
    }

    var resent: Int {
        condition.lock()
        defer { condition.unlock() }
        return resentIDs.count
    }

    var unexpected: [String] {
        condition.lock()
        defer { condition.unlock() }
        return unexpectedAnswers
    }
}
