import Foundation
import WaakvlamCore
import WaakvlamCrypto
import WaakvlamJournal
import WaakvlamSystem
import WaakvlamTransport

/// The signal API of the peer port: submit, status, feedback, inbox and acknowledgement.
/// Every answer that acknowledges something is given only after the journal has it on disk.
final class SignalService: @unchecked Sendable {
    private let journal: Journal
    private let pseudonymizer: Pseudonymizer
    private let configuration: ConfigurationHolder
    private let metrics: Metrics
    /// Told about push deliveries: their messages before they are journaled, then that they are.
    private let onQueued: @Sendable (Outbound.Notice) -> Void

    /// Submissions being decided and journaled, by signal id, with the submissions of the
    /// same id that came meanwhile: those run again once the first is answered (and then get
    /// its answer from the journal, or a 409).
    private let inFlightLock = NSLock()
    /// Held from a feedback's duplicate check until its append is durable: two identical
    /// feedback requests at once (handler threads) must not both journal a decision, which
    /// would push the terugmelding twice. Feedback is rare; one lock for all of it is enough.
    private let feedbackLock = NSLock()
    private var inFlight: [String: [@Sendable () -> Void]] = [:]
    /// The counters of every accepted signal, by type and by denial reason.
    private let acceptedByType: Metrics.CounterFamily, allowedByType: Metrics.CounterFamily, deniedByReason: Metrics.CounterFamily

    /// Largest inbox page a recipient can ask for.
    static let maximumInboxPage = 500

    init(journal: Journal, pseudonymizer: Pseudonymizer, configuration: ConfigurationHolder, metrics: Metrics,
         onQueued: @escaping @Sendable (Outbound.Notice) -> Void) {
        self.journal = journal
        self.pseudonymizer = pseudonymizer
        self.configuration = configuration
        self.metrics = metrics
        self.onQueued = onQueued
        acceptedByType = metrics.counters("waakvlam_signals_accepted_total", by: "type")
        allowedByType = metrics.counters("waakvlam_signals_allowed_total", by: "type")
        deniedByReason = metrics.counters("waakvlam_signals_denied_total", by: "reason")
    }

    // MARK: - POST /v1/signals

    /// Decides and journals a submission without waiting: `reply` is called once, on `loop`
    /// (the connection's) once the signal is on disk, at once for a refusal, or from another
    /// thread with the first answer for an id already journaled. Not at all if the loop ended
    /// first (a connection still open when shutdown's grace period ran out): the signal is
    /// journaled, but its answer, log lines and counts are lost with the connection.
    /// - Parameter snapshot: the configuration the sender was identified under; the signal is
    ///   decided under the same one.
    func submit(_ request: HTTPRequest, sender: Organisation, snapshot: ConfigurationSnapshot, loop: EventLoop,
                reply: @escaping @Sendable (HTTPResponse) -> Void) {
        let submission: SignalSubmission
        switch SignalSubmission.parse(bytes: request.body, makeID: { UUID().uuidString.lowercased() }) {
        case .failure(let invalid):
            metrics.increment("waakvlam_signals_rejected_total", ["reason": "invalid_envelope"])
            return reply(Self.invalid(invalid))
        case .success(let parsed):
            submission = parsed
        }
        var trace = TraceContext.random()
        if let text = submission.traceparent ?? request.headers["traceparent"] {
            guard let parent = TraceContext(traceparent: text) else {
                return reply(.error(status: 400, code: "invalid_traceparent",
                                    message: "traceparent must be a W3C Trace Context value like 00-<32 hex>-<16 hex>-01; leave it out to have one made."))
            }
            trace = parent.child()
        }
        let canonicalPayload = Payload.canonicalBytes(submission.payload)
        let requestHash = Self.requestHash(submission, canonicalPayload: canonicalPayload)

        // One submission per id at a time; a duplicate runs again after the first, and replays.
        let id = submission.id
        inFlightLock.lock()
        if inFlight[id] != nil {
            inFlight[id]!.append { [self] in submit(request, sender: sender, snapshot: snapshot, loop: loop, reply: reply) }
            inFlightLock.unlock()
            return
        }
        if journal.deliveryState().contains(signalID: id) {
            inFlightLock.unlock()
            // The replay reads the journal: not on the caller's event loop.
            DispatchQueue.global().async { [self] in reply(replay(id, sender: sender, requestHash: requestHash)) }
            return
        }
        inFlight[id] = []
        inFlightLock.unlock()
        decideAndJournal(submission, sender: sender, snapshot: snapshot, canonicalPayload: canonicalPayload,
                         requestHash: requestHash, trace: trace, loop: loop, reply: reply)
    }

    /// Gives the answer to the submission of `signalID` that was in flight, then lets the
    /// submissions of the same id that came meanwhile run again.
    private func finish(_ signalID: String, _ response: HTTPResponse, reply: @Sendable (HTTPResponse) -> Void) {
        reply(response)
        inFlightLock.lock()
        let waiting = inFlight.removeValue(forKey: signalID) ?? []
        inFlightLock.unlock()
        // Not on the connection's loop: a re-run may read the journal, which blocks.
        for resubmission in waiting { DispatchQueue.global().async(execute: resubmission) }
    }

    /// Decides and journals a submission that is now in flight; every way out ends in `finish`
    /// (the append's completion is the only closure made per signal).
    private func decideAndJournal(_ submission: SignalSubmission, sender: Organisation, snapshot: ConfigurationSnapshot,
                                  canonicalPayload: [UInt8], requestHash: String, trace: TraceContext, loop: EventLoop,
                                  reply: @escaping @Sendable (HTTPResponse) -> Void) {
        let now = Date()
        let decisions: [RecipientDecision]
        switch PolicyEngine.decide(submission, sender: sender, configuration: snapshot.configuration, at: now) {
        case .invalid(let issues):
            metrics.increment("waakvlam_signals_rejected_total", ["reason": "invalid_payload"])
            return finish(submission.id, Self.invalid(InvalidPayload(issues)), reply: reply)
        case .decided(let decided):
            decisions = decided
        }
        var pseudonyms: [String] = []
        if let keys = snapshot.configuration.subjectKeys(for: submission.payload, typeID: submission.type) {
            pseudonyms.reserveCapacity(2)
            if let person = keys.person { pseudonyms.append(pseudonymizer.pseudonym(person)) }
            if let address = keys.address { pseudonyms.append(pseudonymizer.pseudonym(address)) }
        }
        let received = Received(
            signalID: submission.id, senderID: sender.id, senderOIN: sender.oin, signalType: submission.type,
            requestedRecipients: submission.recipients.map(\.description),
            payloadHash: SHA256.hexDigest(canonicalPayload),
            requestHash: requestHash, subjectPseudonyms: pseudonyms, traceID: trace.traceID, spanID: trace.spanID,
            configVersion: snapshot.version, at: now)
        // The decision records kept apart as well, so that the pushes and the answer take
        // them without matching (and copying) every record again.
        var decisionRecords: [Decision] = []
        decisionRecords.reserveCapacity(decisions.count)
        var records: [JournalRecord] = [.received(received)]
        records.reserveCapacity(1 + decisions.count)
        var prepared: [Outbound.Prepared] = []
        for decision in decisions {
            let record = Self.record(for: decision, signalID: submission.id, configVersion: snapshot.version,
                                     canonicalPayload: canonicalPayload, at: now)
            if record.allowed, record.deliveryMode == .push, let payload = record.payload {
                prepared.append(Outbound.Prepared(received: received, decision: record, payload: payload, sender: sender))
            }
            records.append(.decision(record))
            decisionRecords.append(record)
        }
        if !prepared.isEmpty { onQueued(.prepared(prepared)) }
        let accepted = Accepted(received: received, decisionRecords: decisionRecords)
        let completion: Journal.AppendCompletion = { [self] result in
            switch result {
            case .success: finish(accepted.received.signalID, journaled(accepted), reply: reply)
            case .failure(let error): finish(accepted.received.signalID, journalFailed(accepted.received.signalID, error), reply: reply)
            }
        }
        do {
            try journal.append(records, on: loop, completion: completion)
        } catch {
            completion(.failure(error as? JournalError ?? .closed))
        }
    }

    /// A submission decided and on its way to the journal: what its answer and logs need
    /// (the received record holds the signal's id, sender, type, trace and configuration;
    /// the decision records, one per recipient, the rest).
    private struct Accepted: @unchecked Sendable {
        let received: Received
        let decisionRecords: [Decision]
    }

    /// The signal is on disk: count and log its decisions, let the pushes go, and answer.
    /// (The fields are read from the records one by one where they are used: a decision
    /// copied out whole would be retained field by field across the logging.)
    private func journaled(_ accepted: Accepted) -> HTTPResponse {
        var queuedPush = false, allowed = 0
        let records = accepted.decisionRecords
        for index in records.indices {
            if records[index].allowed {
                allowed += 1
                if records[index].deliveryMode == .push { queuedPush = true }
                Log.shared.info("decision_allowed", ["signal": accepted.received.signalID, "sender": accepted.received.senderID,
                                                     "recipient": records[index].recipientID,
                                                     "rule": records[index].ruleID ?? "", "convenant": records[index].convenantID ?? "",
                                                     "convenant_version": Self.convenantVersion(of: records[index]),
                                                     "config_version": accepted.received.configVersion])
            } else {
                let code = records[index].reasonCode ?? ""
                deniedByReason.increment(code)
                Log.shared.info("decision_denied", ["signal": accepted.received.signalID, "sender": accepted.received.senderID,
                                                    "recipient": records[index].recipientID,
                                                    "code": code, "config_version": accepted.received.configVersion])
            }
        }
        // Counted at once: a series only appears once something is counted in it.
        if allowed > 0 { allowedByType.increment(accepted.received.signalType, by: Double(allowed)) }
        acceptedByType.increment(accepted.received.signalType)
        Log.shared.info("signal_received", ["signal": accepted.received.signalID, "sender": accepted.received.senderID,
                                            "type": accepted.received.signalType,
                                            "recipients": records.count, "trace_id": accepted.received.traceID])
        if queuedPush { onQueued(.queued) }
        // The answer a resubmission would get from the journal, from the records as they were
        // appended instead of reading them back.
        return Self.answer(received: accepted.received, decisions: accepted.decisionRecords)
    }

    /// The version of the convenant that allowed a decision, as a number (as the convenant
    /// numbers it; the record holds it as text); 0 for a denial.
    private static func convenantVersion(of decision: Decision) -> Int {
        decision.convenantVersion.flatMap { Int($0) } ?? 0
    }

    private func journalFailed(_ signalID: String, _ error: Error) -> HTTPResponse {
        metrics.increment("waakvlam_journal_failures_total")
        Log.shared.error("journal_append_failed", ["signal": signalID, "error": "\(error)"])
        return .error(status: 503, code: "journal_unavailable",
                      message: "The node cannot write its journal right now, so the signal was not accepted; send it again later with the same id.")
    }

    /// The answer to a submission, built from the journal, so that a resubmission of the same
    /// id and content gets exactly the first answer.
    private func replay(_ signalID: String, sender: Organisation, requestHash: String) -> HTTPResponse {
        let stored: SignalRecord?
        do {
            stored = try journal.signal(signalID)
        } catch {
            Log.shared.error("journal_read_failed", ["signal": signalID, "error": "\(error)"])
            return .error(status: 503, code: "journal_unavailable", message: "The node cannot read its journal right now; try again later.")
        }
        guard let stored, let received = stored.received, received.senderID == sender.id else {
            return .error(status: 409, code: "id_in_use",
                          message: "This signal id is already in use: choose a new id (a UUID) for a new signal.")
        }
        guard received.requestHash == requestHash else {
            return .error(status: 409, code: "id_reused_with_other_content",
                          message: "A signal with this id and different content was already accepted: send a changed signal under a new id.")
        }
        return Self.answer(received: received, decisions: stored.decisions.map(\.decision))
    }

    /// 202 with each recipient's state as it was when the signal was accepted (so that a
    /// resubmission of the same id and content gets it again unchanged, even after deliveries
    /// went on), or 403 when every recipient was denied.
    private static func answer(received: Received, decisions: [Decision]) -> HTTPResponse {
        let anyAllowed = decisions.contains { $0.allowed }
        let error = anyAllowed ? nil : (code: "all_recipients_denied",
                                        message: "No recipient may receive this signal under the convenants in force; see the reason per recipient.")
        return .json(status: anyAllowed ? 202 : 403, signalJSON(received: received, recipients: decisions.count, error: error) { json in
            for index in decisions.indices { appendRecipient(decisions[index], acceptedStatus(decisions[index]), to: &json) }
        })
    }

    // MARK: - GET /v1/signals/{id}

    func status(_ signalID: String, caller: Organisation) -> HTTPResponse {
        guard let stored = try? journal.signal(signalID), let received = stored.received, received.senderID == caller.id else {
            return Self.notFound(signalID)
        }
        return .json(status: 200, Self.signalJSON(received: received, recipients: stored.decisions.count) { json in
            for index in stored.decisions.indices {
                Self.appendRecipient(stored.decisions[index].decision, stored.decisions[index].state.status, to: &json)
            }
        })
    }

    // MARK: - POST /v1/signals/{id}/feedback

    /// Feedback by a recipient, passed on to the sender as a `terugmelding` only as far as the
    /// rule allows (Vroeg Eropaf: "opgepakt" or "niet opgepakt", never a reason).
    func feedback(_ signalID: String, _ request: HTTPRequest, caller: Organisation) -> HTTPResponse {
        let index = journal.deliveryState()
        guard let state = index.delivery(signalID: signalID, recipientID: caller.id), !Self.isDenied(state),
              let original = try? journal.signal(signalID), let received = original.received,
              let decision = original.decisions.first(where: { $0.decision.recipientID == caller.id })?.decision,
              let convenantID = decision.convenantID, let ruleID = decision.ruleID,
              let version = decision.convenantVersion.flatMap(Int.init) else {
            return Self.notFound(signalID)
        }
        let parsed: (status: String, fields: [String: PayloadValue])
        switch FeedbackRequest.parse(Data(request.body)) {
        case .failure(let invalid): return Self.invalid(invalid)
        case .success(let value): parsed = value
        }
        let snapshot = configuration.current
        guard let (_, rule) = snapshot.configuration.rule(convenantID: convenantID, version: version, ruleID: ruleID) else {
            return .error(status: 409, code: "rule_no_longer_in_force",
                          message: "The rule under which you received this signal is no longer in the configuration, so no feedback can be passed on.")
        }
        let forwarded: [String: PayloadValue]
        guard let type = snapshot.configuration.signalType(id: received.signalType) else {
            return .error(status: 409, code: "rule_no_longer_in_force",
                          message: "The signal type of this signal is no longer in the configuration, so no feedback can be passed on.")
        }
        switch FeedbackPolicy.decide(status: parsed.status, fields: parsed.fields, allowed: PolicyEngine.feedbackAllowance(rule: rule, type: type)) {
        case .denied(let denial):
            metrics.increment("waakvlam_feedback_denied_total", ["reason": denial.code.rawValue])
            return .error(status: 403, code: denial.code.rawValue, message: denial.message)
        case .invalid(let issues):
            return Self.invalid(InvalidPayload(issues))
        case .allowed(_, let fields, let dropped):
            // A field the rule does not let through is refused rather than silently left out,
            // so the recipient knows it did not reach the sender (Vroeg Eropaf: never a reason).
            guard dropped.isEmpty else {
                metrics.increment("waakvlam_feedback_denied_total", ["reason": "feedback_field_not_allowed"])
                return .error(status: 403, code: "feedback_field_not_allowed",
                              message: "The rule does not let you pass on " + dropped.map { "'\($0)'" }.joined(separator: ", ")
                                + " to the sender; send the status only" + (rule.feedback.fields.isEmpty ? "." : ", or only the fields the rule allows."))
            }
            forwarded = fields
        }
        guard let sender = snapshot.configuration.organisation(id: received.senderID) else {
            return .error(status: 409, code: "sender_unknown", message: "The sender of this signal is no longer configured on this node.")
        }
        // The feedback travels as its own signal to the sender; its id is derived from the
        // content so that sending the same feedback twice is idempotent.
        var payload = forwarded
        payload["signaal"] = .string(signalID)
        payload["status"] = .string(parsed.status)
        let canonical = Payload.canonicalBytes(payload)
        let feedbackID = "\(signalID):terugmelding:\(Hex.encode(SHA256.hash(Array(caller.id.utf8) + canonical).prefix(8)))"
        feedbackLock.lock()
        defer { feedbackLock.unlock() }
        if index.contains(signalID: feedbackID) {
            return .json(status: 202, object: ["id": feedbackID, "signal": signalID, "status": parsed.status, "duplicate": true])
        }
        let now = Date()
        let mode: WaakvlamJournal.DeliveryMode = if case .push = sender.delivery { .push } else { .inbox }
        let records: [JournalRecord] = [
            .feedback(Feedback(signalID: signalID, fromID: caller.id, status: parsed.status,
                               fieldsForwarded: forwarded.keys.sorted(), at: now)),
            .received(Received(signalID: feedbackID, senderID: caller.id, senderOIN: caller.oin, signalType: "terugmelding",
                               requestedRecipients: [sender.id], payloadHash: Hex.encode(SHA256.hash(canonical)),
                               requestHash: Hex.encode(SHA256.hash(canonical)), subjectPseudonyms: [],
                               traceID: received.traceID, spanID: Hex.encode(SecureRandom.bytes(8)),
                               configVersion: snapshot.version, at: now)),
            .decision(Decision(signalID: feedbackID, recipientID: sender.id, allowed: true, ruleID: ruleID,
                               convenantID: convenantID, convenantVersion: String(version),
                               processingActivity: decision.processingActivity, configVersion: snapshot.version,
                               fieldsDelivered: payload.keys.sorted(), retentionUntil: decision.retentionUntil,
                               deliveryMode: mode, payload: canonical, at: now)),
        ]
        do {
            _ = try journal.append(records)
        } catch {
            Log.shared.error("journal_append_failed", ["signal": feedbackID, "error": "\(error)"])
            return .error(status: 503, code: "journal_unavailable", message: "The node cannot write its journal right now; send the feedback again later.")
        }
        metrics.increment("waakvlam_feedback_total", ["status": parsed.status])
        Log.shared.info("feedback_received", ["signal": signalID, "from": caller.id, "to": sender.id, "status": parsed.status])
        if mode == .push { onQueued(.queued) }
        return .json(status: 202, object: ["id": feedbackID, "signal": signalID, "status": parsed.status,
                                           "forwardedFields": forwarded.keys.sorted(), "duplicate": false])
    }

    // MARK: - GET /v1/inbox, POST /v1/inbox/{id}/ack

    func inbox(_ request: HTTPRequest, caller: Organisation) -> HTTPResponse {
        var limit = 100
        if let query = request.query {
            for pair in query.split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, parts[0] == "limit" else { continue }
                guard let value = Int(parts[1]), (1...Self.maximumInboxPage).contains(value) else {
                    return .error(status: 400, code: "invalid_limit",
                                  message: "limit must be a whole number from 1 to \(Self.maximumInboxPage).")
                }
                limit = value
            }
        }
        let states = journal.deliveryState().inbox(recipientID: caller.id, limit: limit + 1)
        var items: [JSONText.Fragment] = []
        for state in states.prefix(limit) {
            do {
                if let message = try Outbound.message(for: state, journal: journal, configuration: configuration.current.configuration) {
                    items.append(JSONText.Fragment(message.body))
                }
            } catch {
                Log.shared.error("journal_read_failed", ["signal": state.signalID, "error": "\(error)"])
                return .error(status: 503, code: "journal_unavailable", message: "The node cannot read its journal right now; try again later.")
            }
        }
        return .json(status: 200, object: ["signals": items, "more": states.count > limit])
    }

    func acknowledge(_ signalID: String, caller: Organisation) -> HTTPResponse {
        guard let state = journal.deliveryState().delivery(signalID: signalID, recipientID: caller.id), !Self.isDenied(state) else {
            return Self.notFound(signalID)
        }
        switch state.status {
        case .delivered(let at):
            return .json(status: 200, object: ["id": signalID, "state": "delivered", "deliveredAt": Self.timestamp(at)])
        case .expired:
            return .error(status: 410, code: "expired", message: "This signal expired before it was acknowledged; the sender has been told.")
        case .pending(_, _, _, let mode):
            guard mode == .inbox else {
                return .error(status: 409, code: "pushed_not_pulled",
                              message: "This signal is delivered to your endpoint by push, not through the inbox.")
            }
        case .denied:
            return Self.notFound(signalID)
        }
        let now = Date()
        do {
            _ = try journal.append([.delivered(Delivered(signalID: signalID, recipientID: caller.id, via: .inboxAck, at: now))])
        } catch {
            Log.shared.error("journal_append_failed", ["signal": signalID, "error": "\(error)"])
            return .error(status: 503, code: "journal_unavailable", message: "The node cannot write its journal right now; acknowledge again later.")
        }
        metrics.increment("waakvlam_deliveries_total", ["via": "inbox"])
        Log.shared.info("delivered", ["signal": signalID, "recipient": caller.id, "via": "inbox"])
        return .json(status: 200, object: ["id": signalID, "state": "delivered", "deliveredAt": Self.timestamp(now)])
    }

    // MARK: - Shapes

    /// SHA-256 over the canonical form of what was asked (type, recipients, payload), so
    /// that the same content resubmitted under the same id is recognised.
    static func requestHash(_ submission: SignalSubmission, canonicalPayload: [UInt8]) -> String {
        var count = submission.type.utf8.count + 1 + canonicalPayload.count
        for recipient in submission.recipients { count += recipient.description.utf8.count + 1 }
        // Gathered on the stack (for all but very large payloads), not in an array of its own.
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count) { bytes in
            var end = bytes.startIndex
            func append<Bytes: Sequence<UInt8>>(_ part: Bytes, line: Bool) {
                end += UnsafeMutableBufferPointer(rebasing: bytes[end...]).initialize(from: part).1
                if line {
                    bytes[end] = 0x0A
                    end += 1
                }
            }
            append(submission.type.utf8, line: true)
            for recipient in submission.recipients { append(recipient.description.utf8, line: true) }
            append(canonicalPayload, line: false)
            precondition(end == bytes.endIndex, "the request hash's input was counted wrong")
            return SHA256.hexDigest(UnsafeRawBufferPointer(bytes))
        }
    }

    /// - Parameter canonicalPayload: the submitted payload's canonical JSON, which is the
    ///   recipient's when the rule kept every field.
    static func record(for decision: RecipientDecision, signalID: String, configVersion: String, canonicalPayload: [UInt8],
                       at now: Date) -> Decision {
        let recipientID = decision.recipient?.id ?? decision.requested
        // Matched in place (the `allowed` and `denial` properties return copies).
        switch decision.outcome {
        case .allowed(let allowed):
            let mode: WaakvlamJournal.DeliveryMode = if case .push = decision.recipient?.delivery { .push } else { .inbox }
            return Decision(signalID: signalID, recipientID: recipientID, allowed: true, ruleID: allowed.ruleID,
                            convenantID: allowed.convenantID, convenantVersion: String(allowed.convenantVersion),
                            processingActivity: allowed.processingActivity, configVersion: configVersion,
                            fieldsDelivered: allowed.keptFields, fieldsDropped: allowed.droppedFields.map(\.name),
                            retentionUntil: now.addingTimeInterval(TimeInterval(allowed.retentionDays) * 86_400),
                            deliveryMode: mode,
                            payload: allowed.droppedFields.isEmpty ? canonicalPayload : Payload.canonicalBytes(allowed.payload), at: now)
        case .denied(let denial):
            return Decision(signalID: signalID, recipientID: recipientID, allowed: false, reasonCode: denial.code.rawValue,
                            reasonMessage: denial.message, configVersion: configVersion, at: now)
        }
    }

    /// A signal with its decisions and their current state, as the sender sees it (with
    /// `error` when the whole submission was refused). Keys in byte order.
    /// - Parameter appendRecipients: writes the `recipients` decisions with `appendRecipient`
    ///   (from the caller's own records, without gathering copies of them first).
    static func signalJSON(received: Received, recipients: Int, error: (code: String, message: String)? = nil,
                           _ appendRecipients: (inout JSONText.Writer) -> Void) -> [UInt8] {
        // Room for the usual answer (a recipient with a few tens of fields) without growing.
        var json = JSONText.Writer(capacity: 512 + 512 * recipients)
        json.beginObject()
        json.string("configVersion", received.configVersion)
        if let error {
            json.beginObject("error")
            json.string("code", error.code)
            json.string("message", error.message)
            json.endObject()
        }
        json.string("id", received.signalID)
        json.timestamp("receivedAt", JournalTime.rounded(received.at))
        json.beginArray("recipients")
        appendRecipients(&json)
        json.endArray()
        json.string("traceparent", TraceContext.traceparent(traceID: received.traceID, spanID: received.spanID))
        json.string("type", received.signalType)
        json.endObject()
        return json.bytes
    }

    /// One recipient's decision and state in `signalJSON`.
    static func appendRecipient(_ decision: Decision, _ status: DeliveryStatus, to json: inout JSONText.Writer) {
        var attempts: Int?, nextAttemptAt: Date?, deliveredAt: Date?, expiredAt: Date?
        let state: String
        switch status {
        case .pending(let count, _, let next, _): (state, attempts, nextAttemptAt) = ("pending", count, next)
        case .delivered(let at): (state, deliveredAt) = ("delivered", at)
        case .expired(let at): (state, expiredAt) = ("expired", at)
        case .denied: state = "denied"
        }
        json.beginObject()
        if let attempts { json.int("attempts", attempts) }
        if !decision.allowed { json.string("code", decision.reasonCode ?? "denied") }
        if decision.allowed {
            json.beginObject("convenant")
            json.string("id", decision.convenantID ?? "")
            json.string("version", decision.convenantVersion ?? "")
            json.endObject()
        }
        json.string("decision", decision.allowed ? "allowed" : "denied")
        if let deliveredAt { json.timestamp("deliveredAt", JournalTime.rounded(deliveredAt)) }
        if decision.allowed {
            json.string("delivery", decision.deliveryMode?.rawValue ?? "inbox")
            json.strings("droppedFields", decision.fieldsDropped)
        }
        if let expiredAt { json.timestamp("expiredAt", JournalTime.rounded(expiredAt)) }
        if decision.allowed { json.strings("fields", decision.fieldsDelivered) }
        if !decision.allowed { json.string("message", decision.reasonMessage ?? "") }
        if let nextAttemptAt { json.timestamp("nextAttemptAt", JournalTime.rounded(nextAttemptAt)) }
        json.string("recipient", decision.recipientID)
        if decision.allowed { json.string("rule", decision.ruleID ?? "") }
        json.string("state", state)
        json.endObject()
    }

    /// A delivery's state right after its decision was journaled (as the delivery index has it).
    static func acceptedStatus(_ decision: Decision) -> DeliveryStatus {
        guard decision.allowed else { return .denied(code: decision.reasonCode ?? "denied") }
        let push = decision.deliveryMode == .push
        return .pending(attempts: 0, firstQueuedAt: decision.at, nextAttemptAt: push ? decision.at : nil, mode: push ? .push : .inbox)
    }

    static func invalid(_ invalid: InvalidPayload) -> HTTPResponse {
        let first = invalid.issues.first
        let message = first.map { "\($0.field): \($0.message)" } ?? "The request is not valid."
        return .json(status: 400, object: [
            "error": ["code": first?.code.rawValue ?? "invalid_request", "message": message, "field": first?.field ?? "$"],
            "issues": invalid.issues.map { ["field": $0.field, "code": $0.code.rawValue, "message": $0.message] },
        ])
    }

    static func notFound(_ signalID: String) -> HTTPResponse {
        .error(status: 404, code: "signal_not_found", message: "No signal with this id is known to you on this node.")
    }

    static func isDenied(_ state: DeliveryState) -> Bool {
        if case .denied = state.status { return true }
        return false
    }

    /// As the date reads back from the journal (rounded to its microseconds), so that answers
    /// built from the records just appended equal those built from the journal.
    static func timestamp(_ date: Date) -> String { Log.timestamp(JournalTime.rounded(date)) }
}

/// The body of `POST /v1/signals/{id}/feedback`: `{"status": "opgepakt", "fields": {...}}`.
enum FeedbackRequest {
    static func parse(_ data: Data) -> Result<(status: String, fields: [String: PayloadValue]), InvalidPayload> {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            return .failure(InvalidPayload([PayloadIssue(field: "$", code: .notJSON,
                                                         message: "the body must be a JSON object like {\"status\": \"opgepakt\"}")]))
        }
        if let unknown = object.keys.first(where: { $0 != "status" && $0 != "fields" }) {
            return .failure(InvalidPayload([PayloadIssue(field: unknown, code: .unknownKey,
                                                         message: "unknown key '\(unknown)': the body holds status and, where allowed, fields")]))
        }
        guard let status = object["status"] as? String, !status.isEmpty else {
            return .failure(InvalidPayload([PayloadIssue(field: "status", code: .missingField,
                                                         message: "'status' is required, e.g. \"opgepakt\" or \"niet opgepakt\"")]))
        }
        var fields: [String: PayloadValue] = [:]
        if let raw = object["fields"] {
            let encoded = (try? JSONSerialization.data(withJSONObject: raw)) ?? Data()
            switch Payload.parse(encoded) {
            case .success(let values): fields = values
            case .failure(let invalid): return .failure(invalid)
            }
        }
        return .success((status, fields))
    }
}
