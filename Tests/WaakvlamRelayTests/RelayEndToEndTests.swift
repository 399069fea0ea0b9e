import Foundation
import XCTest
import WaakvlamRelay
@testable import WaakvlamTransport

/// The relay end to end on loopback with real mutual TLS: partners submit to the node, the
/// node decides per recipient under the Hoorn convenants, journals, pushes the minimised
/// signal to the recipients' own servers (stand-ins here) or keeps it in their inbox, and
/// tells the sender what happened.
///
/// Push recipients: 1.Hoorn and gemeente Hoorn. Inbox: GGZ, Intermaris (for its feedback),
/// politie (which is refused the zorgsignaal).
final class RelayEndToEndTests: XCTestCase {
    private static var shared: (site: Site, wijkteam: RecipientServer, gemeente: RecipientServer)?
    private var site: Site { Self.shared!.site }
    /// 1.Hoorn's endpoint.
    private var wijkteam: RecipientServer { Self.shared!.wijkteam }
    /// Gemeente Hoorn's endpoint.
    private var gemeente: RecipientServer { Self.shared!.gemeente }

    override class func setUp() {
        let site = try! Site()
        let wijkteam = try! RecipientServer(site: site, organisation: "1hoorn")
        let gemeente = try! RecipientServer(site: site, organisation: "gemeente-hoorn")
        try! site.setPush("1hoorn", to: wijkteam.url)
        try! site.setPush("gemeente-hoorn", to: gemeente.url)
        try! wijkteam.start()
        try! gemeente.start()
        try! site.startNode()
        shared = (site, wijkteam, gemeente)
    }

    override class func tearDown() {
        shared?.site.node?.shutdown(gracePeriod: 1)
        shared?.wijkteam.stop()
        shared?.gemeente.stop()
        shared = nil
    }

    private func newID(_ label: String) -> String { "\(label)-\(UUID().uuidString.lowercased())" }

    /// Config/payloads/zorgsignaal.json with a telephone number and street added: 1.Hoorn may
    /// have all of it, the gemeente neither the health observation nor the telephone number.
    private func zorgsignaal() throws -> [String: Any] {
        var payload = try Fixtures.payload("zorgsignaal")
        payload["Telefoonnummer"] = "06-12345678"
        payload["Straatnaam"] = "Voorbeeldstraat"
        payload["Plaatsnaam"] = "Hoorn"
        return payload
    }

    private func waitForState(_ sender: String, _ signalID: String, _ expected: [String: String], timeout: TimeInterval = 20) throws {
        var states: [String: String] = [:]
        let reached = try eventually(timeout: timeout) {
            states = try site.recipientStates(sender, signalID)
            return states == expected
        }
        XCTAssertTrue(reached, "states of \(signalID): \(states), expected \(expected)")
    }

    /// Every pushed payload holds exactly the fields of the decision, with the submitted values.
    private func assertMinimised(_ delivery: RecipientServer.Delivery, decision: [String: Any], submitted: [String: Any],
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        let payload = try XCTUnwrap(delivery.message["payload"] as? [String: Any], file: file, line: line)
        let fields = try XCTUnwrap(decision["fields"] as? [String], file: file, line: line)
        XCTAssertEqual(Set(payload.keys), Set(fields), "delivered fields", file: file, line: line)
        for (key, value) in payload {
            XCTAssertEqual(try jsonBytes([value]), try jsonBytes([submitted[key] ?? NSNull()]), key, file: file, line: line)
        }
        for dropped in decision["droppedFields"] as? [String] ?? [] {
            XCTAssertNil(payload[dropped], "\(dropped) must not arrive", file: file, line: line)
        }
    }

    // MARK: - The Hoorn flow

    func testHoornFlowDeliversOnlyTheAllowedFieldsRefusesThePolitieAndJournalsEveryStep() throws {
        let zorgID = newID("zorg")
        let zorgPayload = try zorgsignaal()
        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
        let zorg = try site.submit("intermaris", ["id": zorgID, "type": "zorgsignaal", "to": ["1hoorn", "politie-nhn", "gemeente-hoorn"],
                                                  "traceparent": "00-\(traceID)-00f067aa0ba902b7-01", "payload": zorgPayload])
        XCTAssertEqual(zorg.status, 202, "\(zorg.json)")
        XCTAssertEqual(zorg.json["id"] as? String, zorgID)
        XCTAssertTrue((zorg.json["traceparent"] as? String ?? "").hasPrefix("00-\(traceID)-"), "the node continues the sender's trace")

        let toWijkteam = try XCTUnwrap(zorg.recipient("1hoorn"))
        XCTAssertEqual(toWijkteam["decision"] as? String, "allowed")
        XCTAssertEqual(toWijkteam["rule"] as? String, "zorgsignaal-corporatie-naar-zorg")
        XCTAssertEqual(toWijkteam["convenant"] as? [String: String], ["id": "leefbaarheid-hoorn", "version": "1"])
        XCTAssertEqual(Set(toWijkteam["fields"] as? [String] ?? []), Set(zorgPayload.keys), "the wijkteam may have everything, health included")
        XCTAssertEqual(toWijkteam["delivery"] as? String, "push")
        XCTAssertEqual(toWijkteam["state"] as? String, "pending")

        let toGemeente = try XCTUnwrap(zorg.recipient("gemeente-hoorn"))
        XCTAssertEqual(toGemeente["rule"] as? String, "zorgsignaal-naar-gemeente")
        XCTAssertEqual(Set(toGemeente["fields"] as? [String] ?? []), Set(zorgPayload.keys).subtracting(["gezondheidsobservatie", "Telefoonnummer"]))
        XCTAssertEqual(Set(toGemeente["droppedFields"] as? [String] ?? []), ["gezondheidsobservatie", "Telefoonnummer"])

        let toPolitie = try XCTUnwrap(zorg.recipient("politie-nhn"))
        XCTAssertEqual(toPolitie["decision"] as? String, "denied")
        XCTAssertEqual(toPolitie["state"] as? String, "denied")
        XCTAssertEqual(toPolitie["code"] as? String, "no_matching_rule")
        XCTAssertFalse((toPolitie["message"] as? String ?? "").isEmpty, "a denial is an answer with a sentence")
        XCTAssertNil(toPolitie["fields"])

        // Vroeg Eropaf, routed to the gemeente of the tenant's address. The alert carries a BSN
        // and a health note that no rule shares.
        let arrearsID = newID("arrears")
        let arrearsPayload = try Fixtures.payload("huurachterstand")
        XCTAssertNotNil(arrearsPayload["Burgerservicenummer"])
        let arrears = try site.submit("intermaris", ["id": arrearsID, "type": "betalingsachterstand", "routeByAddress": true,
                                                     "payload": arrearsPayload])
        XCTAssertEqual(arrears.status, 202, "\(arrears.json)")
        XCTAssertEqual(arrears.recipients.count, 1)
        let arrearsDecision = try XCTUnwrap(arrears.recipient("gemeente-hoorn"), "routed by postcode 1624KM")
        XCTAssertEqual(arrearsDecision["rule"] as? String, "huurachterstand-naar-gemeente")
        XCTAssertEqual(arrearsDecision["convenant"] as? [String: String], ["id": "vroeg-eropaf-hoorn", "version": "1"])
        XCTAssertEqual(Set(arrearsDecision["droppedFields"] as? [String] ?? []), ["Burgerservicenummer", "zorgNotitie"])

        // Each push recipient receives exactly its allowed fields, from the node's certificate,
        // with the signal id and the trace.
        XCTAssertTrue(wijkteam.waitUntil(timeout: 20) { $0.contains { $0.signalID == zorgID } })
        XCTAssertTrue(gemeente.waitUntil(timeout: 20) { deliveries in [zorgID, arrearsID].allSatisfy { id in deliveries.contains { $0.signalID == id } } })
        try waitForState("intermaris", zorgID, ["1hoorn": "delivered", "gemeente-hoorn": "delivered", "politie-nhn": "denied"])
        try waitForState("intermaris", arrearsID, ["gemeente-hoorn": "delivered"])

        let pushed = [(wijkteam, zorgID, toWijkteam, zorgPayload), (gemeente, zorgID, toGemeente, zorgPayload),
                      (gemeente, arrearsID, arrearsDecision, arrearsPayload)]
        for (server, signalID, decision, submitted) in pushed {
            let deliveries = server.deliveries(of: signalID)
            XCTAssertEqual(deliveries.count, 1, "\(server.organisation) got \(signalID) once")
            let delivery = try XCTUnwrap(deliveries.first)
            try assertMinimised(delivery, decision: decision, submitted: submitted)
            XCTAssertEqual(delivery.pushedBy, "waakvlam-hoorn", "pushed with the node's certificate")
            XCTAssertEqual(delivery.message["id"] as? String, signalID)
            XCTAssertEqual((delivery.message["sender"] as? [String: Any])?["id"] as? String, "intermaris")
            XCTAssertEqual((delivery.message["sender"] as? [String: Any])?["oin"] as? String, "00000099000000020000")
            XCTAssertEqual(delivery.message["rule"] as? String, decision["rule"] as? String)
            XCTAssertNotNil(delivery.message["retainUntil"])
            XCTAssertNotNil(delivery.message["processingActivity"])
            XCTAssertEqual(delivery.message["traceparent"] as? String, delivery.traceparent)
        }
        XCTAssertTrue(wijkteam.deliveries(of: zorgID)[0].traceparent?.hasPrefix("00-\(traceID)-") ?? false)

        // Nothing reaches the politie, not even through its inbox.
        let politieInbox = try site.send("politie-nhn", "GET", "/v1/inbox?limit=500")
        XCTAssertEqual(politieInbox.status, 200)
        XCTAssertFalse((politieInbox.json["signals"] as? [[String: Any]] ?? []).contains { $0["id"] as? String == zorgID })

        let status = try site.status("intermaris", zorgID)
        XCTAssertNotNil(status.recipient("1hoorn")?["deliveredAt"])
        XCTAssertEqual(status.recipient("politie-nhn")?["code"] as? String, "no_matching_rule")

        // The journal shows every step and verifies.
        let verify = try site.waakvlam(["journal", "verify", "--state", site.state])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.hasPrefix("journal intact:"), verify.stdout)

        let records = try site.journalRecords(signal: zorgID)
        XCTAssertEqual(records.map { $0["kind"] as? String ?? "" }.filter { $0 != "attempt" },
                       ["received", "decision", "decision", "decision", "delivered", "delivered"], "\(records)")
        let received = try XCTUnwrap(records.first)
        XCTAssertEqual(received["sender_id"] as? String, "intermaris")
        XCTAssertEqual(received["trace_id"] as? String, traceID)
        XCTAssertFalse((received["subject_pseudonyms"] as? [String] ?? []).isEmpty, "persons are recorded by a pseudonym")
        let decisions = records.filter { $0["kind"] as? String == "decision" }
        let politieRecord = try XCTUnwrap(decisions.first { $0["recipient_id"] as? String == "politie-nhn" })
        XCTAssertEqual(politieRecord["allowed"] as? Bool, false)
        XCTAssertEqual(politieRecord["reason_code"] as? String, "no_matching_rule")
        let gemeenteRecord = try XCTUnwrap(decisions.first { $0["recipient_id"] as? String == "gemeente-hoorn" })
        XCTAssertEqual(gemeenteRecord["rule_id"] as? String, "zorgsignaal-naar-gemeente")
        XCTAssertEqual(gemeenteRecord["convenant_version"] as? String, "1")
        XCTAssertEqual(Set(gemeenteRecord["fields_dropped"] as? [String] ?? []), ["gezondheidsobservatie", "Telefoonnummer"])
        XCTAssertEqual(Set(records.filter { $0["kind"] as? String == "delivered" }.compactMap { $0["recipient_id"] as? String }),
                       ["1hoorn", "gemeente-hoorn"])
        XCTAssertEqual(try site.journalRecords(signal: arrearsID).map { $0["kind"] as? String ?? "" }.filter { $0 != "attempt" },
                       ["received", "decision", "delivered"])

        // An access request finds the arrears alert by the BSN, which is nowhere in the clear.
        let subject = try site.waakvlam(["journal", "subject", "--state", site.state, "--bsn", "999990019", "--json"])
        XCTAssertEqual(subject.status, 0, subject.stderr)
        XCTAssertTrue(subject.stdout.contains(arrearsID) && subject.stdout.contains("gemeente-hoorn"), subject.stdout)
        let query = try site.waakvlam(["journal", "query", "--state", site.state, "--json"])
        let journalFiles = try FileManager.default.contentsOfDirectory(atPath: site.state + "/journal")
        var journalBytes = Data()
        for file in journalFiles { journalBytes += (try? Data(contentsOf: URL(fileURLWithPath: site.state + "/journal/" + file))) ?? Data() }
        for secret in ["999990019", "Voorbeeld", "verward", "06-12345678"] {
            XCTAssertFalse(query.stdout.contains(secret), "\(secret) in journal query output")
            XCTAssertNil(journalBytes.range(of: Data(secret.utf8)), "\(secret) in the clear in the journal files")
        }
    }

    // MARK: - Inbox

    func testAnInboxRecipientPullsAcknowledgesAndTheSignalIsGone() throws {
        let signalID = newID("inbox")
        let payload = try zorgsignaal()
        let submitted = try site.submit("intermaris", ["id": signalID, "type": "zorgsignaal", "to": ["ggz-nhn"], "payload": payload])
        XCTAssertEqual(submitted.status, 202, "\(submitted.json)")
        let decision = try XCTUnwrap(submitted.recipient("ggz-nhn"))
        XCTAssertEqual(decision["delivery"] as? String, "inbox")

        func inbox(_ organisation: String) throws -> [[String: Any]] {
            let reply = try site.send(organisation, "GET", "/v1/inbox?limit=500")
            XCTAssertEqual(reply.status, 200, "\(reply.json)")
            return reply.json["signals"] as? [[String: Any]] ?? []
        }
        let item = try XCTUnwrap(try inbox("ggz-nhn").first { $0["id"] as? String == signalID })
        let inboxPayload = try XCTUnwrap(item["payload"] as? [String: Any])
        XCTAssertEqual(Set(inboxPayload.keys), Set(decision["fields"] as? [String] ?? ["?"]))
        XCTAssertEqual((item["sender"] as? [String: Any])?["id"] as? String, "intermaris")
        XCTAssertEqual(item["type"] as? String, "zorgsignaal")
        XCTAssertFalse(try inbox("1hoorn").contains { $0["id"] as? String == signalID }, "only the recipient's own signals")
        XCTAssertEqual(try site.recipientStates("intermaris", signalID), ["ggz-nhn": "pending"])

        XCTAssertEqual(try site.send("1hoorn", "POST", "/v1/inbox/\(signalID)/ack").status, 404, "not 1.Hoorn's to acknowledge")
        let ack = try site.send("ggz-nhn", "POST", "/v1/inbox/\(signalID)/ack")
        XCTAssertEqual(ack.status, 200, "\(ack.json)")
        XCTAssertEqual(ack.json["state"] as? String, "delivered")
        XCTAssertFalse(try inbox("ggz-nhn").contains { $0["id"] as? String == signalID }, "gone once acknowledged")
        let again = try site.send("ggz-nhn", "POST", "/v1/inbox/\(signalID)/ack")
        XCTAssertEqual(again.status, 200, "acknowledging twice is harmless")
        XCTAssertEqual(again.json["deliveredAt"] as? String, ack.json["deliveredAt"] as? String)

        XCTAssertEqual(try site.recipientStates("intermaris", signalID), ["ggz-nhn": "delivered"])
        let delivered = try site.journalRecords(signal: signalID).filter { $0["kind"] as? String == "delivered" }
        XCTAssertEqual(delivered.count, 1)
        XCTAssertEqual(delivered.first?["via"] as? String, "inbox-ack")

        let badLimit = try site.send("ggz-nhn", "GET", "/v1/inbox?limit=0")
        XCTAssertEqual(badLimit.status, 400)
        XCTAssertEqual(badLimit.errorCode, "invalid_limit")
    }

    // MARK: - Feedback

    /// Intermaris' arrears signal to the gemeente, once the gemeente received it: what
    /// feedback is given on.
    private func arrearsSignalAtTheGemeente(_ prefix: String) throws -> String {
        let signalID = newID(prefix)
        let submitted = try site.submit("intermaris", ["id": signalID, "type": "betalingsachterstand", "to": ["gemeente-hoorn"],
                                                       "payload": try Fixtures.payload("huurachterstand")])
        XCTAssertEqual(submitted.status, 202, "\(submitted.json)")
        XCTAssertTrue(gemeente.waitUntil(timeout: 20) { $0.contains { $0.signalID == signalID } })
        return signalID
    }

    func testFeedbackReachesTheSenderOnlyAsTheRuleAllows() throws {
        let signalID = try arrearsSignalAtTheGemeente("feedback")

        // Vroeg Eropaf: never why, and only the statuses of the rule.
        for status in ["schuldhulp gestart", "in behandeling"] {
            let refused = try site.send("gemeente-hoorn", "POST", "/v1/signals/\(signalID)/feedback", body: try jsonBytes(["status": status]))
            XCTAssertEqual(refused.status, 403, status)
            XCTAssertEqual(refused.errorCode, "feedback_status_not_allowed", status)
            XCTAssertTrue(refused.errorMessage?.contains("'opgepakt'") ?? false, refused.errorMessage ?? "")
        }
        XCTAssertEqual(try site.send("politie-nhn", "POST", "/v1/signals/\(signalID)/feedback",
                                     body: try jsonBytes(["status": "opgepakt"])).status, 404, "only a recipient gives feedback")
        XCTAssertEqual(try site.send("intermaris", "POST", "/v1/signals/\(signalID)/feedback",
                                     body: try jsonBytes(["status": "opgepakt"])).status, 404, "the sender is no recipient")
        let notJSON = try site.send("gemeente-hoorn", "POST", "/v1/signals/\(signalID)/feedback", body: Array("opgepakt".utf8))
        XCTAssertEqual(notJSON.status, 400)

        // Never why: a reason sent along is refused, not silently left out.
        let withReason = try site.send("gemeente-hoorn", "POST", "/v1/signals/\(signalID)/feedback",
                                       body: try jsonBytes(["status": "opgepakt", "fields": ["reden": "schuldhulptraject gestart"]]))
        XCTAssertEqual(withReason.status, 403, "\(withReason.json)")
        XCTAssertEqual(withReason.errorCode, "feedback_field_not_allowed")
        XCTAssertTrue(withReason.errorMessage?.contains("'reden'") ?? false, withReason.errorMessage ?? "")

        // The status alone reaches Intermaris: the terugmelding holds the signal and the status only.
        let accepted = try site.send("gemeente-hoorn", "POST", "/v1/signals/\(signalID)/feedback", body: try jsonBytes(["status": "opgepakt"]))
        XCTAssertEqual(accepted.status, 202, "\(accepted.json)")
        XCTAssertEqual(accepted.json["forwardedFields"] as? [String], [])
        let feedbackID = try XCTUnwrap(accepted.json["id"] as? String)

        let inbox = try site.send("intermaris", "GET", "/v1/inbox?limit=500")
        let terugmeldingen = (inbox.json["signals"] as? [[String: Any]] ?? []).filter {
            ($0["payload"] as? [String: Any])?["signaal"] as? String == signalID
        }
        XCTAssertEqual(terugmeldingen.count, 1, "\(inbox.json)")
        let terugmelding = try XCTUnwrap(terugmeldingen.first)
        XCTAssertEqual(terugmelding["id"] as? String, feedbackID)
        XCTAssertEqual(terugmelding["type"] as? String, "terugmelding")
        XCTAssertEqual((terugmelding["sender"] as? [String: Any])?["id"] as? String, "gemeente-hoorn")
        XCTAssertEqual(terugmelding["payload"] as? [String: String], ["signaal": signalID, "status": "opgepakt"])
        XCTAssertFalse(inbox.text.contains("schuldhulptraject"))

        // The same feedback again is idempotent.
        let twice = try site.send("gemeente-hoorn", "POST", "/v1/signals/\(signalID)/feedback", body: try jsonBytes(["status": "opgepakt"]))
        XCTAssertEqual(twice.status, 202)
        XCTAssertEqual(twice.json["id"] as? String, feedbackID)
        XCTAssertEqual(twice.json["duplicate"] as? Bool, true)

        XCTAssertEqual(try site.send("intermaris", "POST", "/v1/inbox/\(feedbackID)/ack").status, 200)
        let feedbackRecords = try site.journalRecords(signal: signalID).filter { $0["kind"] as? String == "feedback" }
        XCTAssertEqual(feedbackRecords.count, 1, "\(feedbackRecords)")
        XCTAssertFalse(try site.waakvlam(["journal", "query", "--state", site.state, "--signal", signalID, "--json"]).stdout
            .contains("schuldhulptraject"))
    }

    func testTheSameFeedbackSentConcurrentlyIsJournaledOnce() throws {
        let signalID = try arrearsSignalAtTheGemeente("feedback-race")

        // Feedback runs on handler threads: identical requests at once must journal one
        // terugmelding (two would push it twice), the others answer as duplicates.
        let body = try jsonBytes(["status": "opgepakt"])
        // Connections first (handshakes would spread the feedback requests out in time).
        DispatchQueue.concurrentPerform(iterations: 6) { _ in _ = try? site.send("gemeente-hoorn", "GET", "/v1/whoami") }
        let lock = NSLock()
        var answers: [(status: Int, id: String?, duplicate: Bool?)] = []
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            let reply = try? site.send("gemeente-hoorn", "POST", "/v1/signals/\(signalID)/feedback", body: body)
            lock.lock()
            answers.append((reply?.status ?? 0, reply?.json["id"] as? String, reply?.json["duplicate"] as? Bool))
            lock.unlock()
        }
        XCTAssertEqual(answers.map(\.status), Array(repeating: 202, count: 6), "\(answers)")
        XCTAssertEqual(answers.filter { $0.duplicate == false }.count, 1, "\(answers)")
        let feedbackID = try XCTUnwrap(answers.first?.id)
        XCTAssertEqual(Set(answers.compactMap(\.id)), [feedbackID])
        let decisions = try site.journalRecords(signal: feedbackID).filter { $0["kind"] as? String == "decision" }
        XCTAssertEqual(decisions.count, 1, "\(decisions)")
        let feedbackRecords = try site.journalRecords(signal: signalID).filter { $0["kind"] as? String == "feedback" }
        XCTAssertEqual(feedbackRecords.count, 1, "\(feedbackRecords)")
    }

    // MARK: - Idempotency and refusals

    func testResubmissionIsIdempotentAndAChangedBodyIsRefused() throws {
        let signalID = newID("idem")
        let envelope: [String: Any] = ["id": signalID, "type": "zorgsignaal", "to": ["1hoorn", "politie-nhn"], "payload": try zorgsignaal()]
        let first = try site.submit("intermaris", envelope)
        XCTAssertEqual(first.status, 202)
        XCTAssertTrue(wijkteam.waitUntil(timeout: 20) { $0.contains { $0.signalID == signalID } })
        try waitForState("intermaris", signalID, ["1hoorn": "delivered", "politie-nhn": "denied"])

        // After the delivery, the same id and content get the first answer again, and nothing moves.
        let again = try site.submit("intermaris", envelope)
        XCTAssertEqual(again.status, first.status)
        XCTAssertEqual(again.text, first.text)
        // The same content with the members in another order is the same content.
        var payloadText = ""
        for (key, value) in try zorgsignaal().sorted(by: { $0.key > $1.key }) {
            payloadText += (payloadText.isEmpty ? "" : ",") + "\"\(key)\":" + String(decoding: try jsonBytes([value]).dropFirst().dropLast(), as: UTF8.self)
        }
        let reordered = "{\"payload\":{\(payloadText)},\"to\":[\"1hoorn\",\"politie-nhn\"],\"type\":\"zorgsignaal\",\"id\":\"\(signalID)\"}"
        let third = try site.send("intermaris", "POST", "/v1/signals", body: Array(reordered.utf8))
        XCTAssertEqual(third.status, 202, "\(third.json)")
        XCTAssertEqual(third.text, first.text)

        var changed = envelope
        var payload = try zorgsignaal()
        payload["urgentie"] = "laag"
        changed["payload"] = payload
        let conflict = try site.submit("intermaris", changed)
        XCTAssertEqual(conflict.status, 409)
        XCTAssertEqual(conflict.errorCode, "id_reused_with_other_content")
        var otherRecipients = envelope
        otherRecipients["to"] = ["1hoorn"]
        XCTAssertEqual(try site.submit("intermaris", otherRecipients).errorCode, "id_reused_with_other_content")
        let otherSender = try site.submit("vh-de-boog", envelope)
        XCTAssertEqual(otherSender.status, 409)
        XCTAssertEqual(otherSender.errorCode, "id_in_use")

        let records = try site.journalRecords(signal: signalID).map { $0["kind"] as? String ?? "" }
        XCTAssertEqual(records.filter { $0 == "received" }.count, 1, "\(records)")
        XCTAssertEqual(records.filter { $0 == "decision" }.count, 2, "\(records)")
        XCTAssertEqual(records.filter { $0 == "delivered" }.count, 1, "\(records)")
        XCTAssertEqual(wijkteam.deliveries(of: signalID).count, 1, "delivered once")
        XCTAssertEqual(try site.recipientStates("intermaris", signalID), ["1hoorn": "delivered", "politie-nhn": "denied"])
    }

    func testConcurrentSubmissionsOfOneIDAllGetTheSameAnswer() throws {
        let signalID = newID("race")
        let body = try jsonBytes(["id": signalID, "type": "zorgsignaal", "to": ["ggz-nhn"], "payload": try zorgsignaal()])
        let lock = NSLock()
        var answers: [Reply] = []
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            // Each on its own connection.
            let client = HTTPClient(tls: try! site.clientContext("intermaris"), configuration: Site.clientConfiguration)
            let reply = (try? client.send(HTTPRequest(method: "POST", target: "/v1/signals", body: body), to: site.endpoint)).map(Reply.init)
            lock.lock()
            if let reply { answers.append(reply) }
            lock.unlock()
        }
        XCTAssertEqual(answers.count, 8)
        XCTAssertEqual(Set(answers.map(\.status)), [202])
        XCTAssertEqual(Set(answers.map(\.body)).count, 1, "one answer for all")
        XCTAssertEqual(try site.journalRecords(signal: signalID).filter { $0["kind"] as? String == "received" }.count, 1)
    }

    func testInvalidTooLargeAndRefusedSubmissionsGetClearAnswers() throws {
        // 400 naming the field; nothing journaled.
        let invalidID = newID("invalid")
        var payload = try zorgsignaal()
        payload["Postcode"] = "16245"
        let invalid = try site.submit("intermaris", ["id": invalidID, "type": "zorgsignaal", "to": ["1hoorn"], "payload": payload])
        XCTAssertEqual(invalid.status, 400, "\(invalid.json)")
        XCTAssertTrue(((invalid.json["error"] as? [String: Any])?["field"] as? String ?? "").contains("Postcode"), "\(invalid.json)")
        XCTAssertFalse((invalid.json["issues"] as? [[String: Any]] ?? []).isEmpty)
        XCTAssertEqual(try site.journalRecords(signal: invalidID).count, 0)
        XCTAssertEqual(try site.status("intermaris", invalidID).status, 404)

        payload = try zorgsignaal()
        payload["Burgerservicenummer"] = "999990019"
        let unknownField = try site.submit("intermaris", ["id": newID("bsn"), "type": "zorgsignaal", "to": ["1hoorn"], "payload": payload])
        XCTAssertEqual(unknownField.status, 400, "a field the signal type does not have")
        XCTAssertTrue(((unknownField.json["error"] as? [String: Any])?["field"] as? String ?? "").contains("Burgerservicenummer"), "\(unknownField.json)")

        let noType = try site.submit("intermaris", ["id": newID("notype"), "to": ["1hoorn"], "payload": try zorgsignaal()])
        XCTAssertEqual(noType.status, 400)
        XCTAssertEqual((noType.json["error"] as? [String: Any])?["field"] as? String, "type")
        XCTAssertEqual(try site.send("intermaris", "POST", "/v1/signals", body: Array("{not json".utf8)).status, 400)
        let badTrace = try site.submit("intermaris", ["id": newID("trace"), "type": "zorgsignaal", "to": ["1hoorn"],
                                                      "traceparent": "01-xyz", "payload": try zorgsignaal()])
        XCTAssertEqual(badTrace.status, 400)
        XCTAssertEqual(badTrace.errorCode, "invalid_traceparent")

        // 413 beyond limits.maximumBodyBytes (1 MiB in Config/node.json).
        payload = try zorgsignaal()
        payload["waarneming"] = String(repeating: "x", count: 1_100_000)
        let tooLarge = try site.submit("intermaris", ["id": newID("large"), "type": "zorgsignaal", "to": ["1hoorn"], "payload": payload])
        XCTAssertEqual(tooLarge.status, 413)

        // 403 when every recipient is denied, with the reasons; it is journaled, and the sender can look it up.
        let deniedID = newID("denied")
        let denied = try site.submit("intermaris", ["id": deniedID, "type": "zorgsignaal", "to": ["politie-nhn", "vh-de-boog"],
                                                    "payload": try zorgsignaal()])
        XCTAssertEqual(denied.status, 403, "\(denied.json)")
        XCTAssertEqual(denied.errorCode, "all_recipients_denied")
        XCTAssertEqual(denied.recipients.count, 2)
        for recipient in denied.recipients {
            XCTAssertEqual(recipient["decision"] as? String, "denied")
            XCTAssertFalse((recipient["code"] as? String ?? "").isEmpty)
            XCTAssertFalse((recipient["message"] as? String ?? "").isEmpty)
        }
        XCTAssertEqual(try site.recipientStates("intermaris", deniedID), ["politie-nhn": "denied", "vh-de-boog": "denied"])
        XCTAssertEqual(try site.submit("intermaris", ["id": deniedID, "type": "zorgsignaal", "to": ["politie-nhn", "vh-de-boog"],
                                                      "payload": try zorgsignaal()]).text, denied.text, "a refusal is replayed too")
        XCTAssertEqual(try site.journalRecords(signal: deniedID).map { $0["kind"] as? String ?? "" }, ["received", "decision", "decision"])

        // 404 for anyone but the sender.
        let ownID = newID("own")
        XCTAssertEqual(try site.submit("intermaris", ["id": ownID, "type": "zorgsignaal", "to": ["ggz-nhn"], "payload": try zorgsignaal()]).status, 202)
        XCTAssertEqual(try site.status("intermaris", ownID).status, 200)
        for other in ["vh-de-boog", "ggz-nhn", "gemeente-hoorn"] {
            let reply = try site.status(other, ownID)
            XCTAssertEqual(reply.status, 404, other)
            XCTAssertEqual(reply.errorCode, "signal_not_found", other)
        }
        XCTAssertEqual(try site.status("intermaris", newID("unknown")).status, 404)
    }
}
