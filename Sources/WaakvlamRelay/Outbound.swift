import Foundation
import WaakvlamCore
import WaakvlamJournal
import WaakvlamSystem

/// The message a recipient receives, pushed to its endpoint or read from its inbox: the
/// minimised payload with where it comes from and under which rule. Built from the journal,
/// so that a retry after a restart sends exactly what was decided.
enum Outbound {
    struct Message: Sendable {
        /// The message as JSON (keys sorted); the payload is the stored canonical JSON as it is.
        let body: [UInt8]
        let traceparent: String?
    }

    /// What the signal service tells the delivery side (`DeliveryScheduler.notice`).
    enum Notice: Sendable {
        /// First pushes about to be journaled: what their messages are built from. Given
        /// before the append, so that the message is there when the delivery can be picked.
        case prepared([Prepared])
        /// New push deliveries are in the journal: look now.
        case queued
    }

    /// What a first push's message is built from: the records being appended. `payload` is
    /// the decision's plaintext (canonical JSON) before the journal seals it; `sender` the
    /// sending organisation in the configuration the signal was decided under. A class, so
    /// that handing it on copies one reference instead of two records.
    final class Prepared: Sendable {
        let received: Received
        let decision: Decision
        let payload: [UInt8]
        let sender: Organisation?

        init(received: Received, decision: Decision, payload: [UInt8], sender: Organisation?) {
            self.received = received
            self.decision = decision
            self.payload = payload
            self.sender = sender
        }

        var message: Message {
            Outbound.message(signalID: received.signalID, signalType: received.signalType, senderID: received.senderID,
                             receivedAt: received.at, decision: decision, payload: payload, received: received, sender: sender)
        }
    }

    /// nil when the payload is gone (purged after its retention ended).
    static func message(for state: DeliveryState, journal: Journal, configuration: Configuration) throws -> Message? {
        guard case .decision(let decision) = try journal.record(at: state.decision),
              let payload = try journal.payload(signalID: state.signalID, recipientID: state.recipientID),
              let summary = journal.deliveryState().signal(state.signalID) else { return nil }
        var received: Received?
        if let position = summary.received, case .received(let record) = try journal.record(at: position) { received = record }
        return message(signalID: state.signalID, signalType: summary.signalType, senderID: summary.senderID, receivedAt: summary.receivedAt,
                       decision: decision, payload: payload, received: received, sender: configuration.organisation(id: summary.senderID))
    }

    private static func message(signalID: String, signalType: String, senderID: String, receivedAt: Date, decision: Decision,
                                payload: [UInt8], received: Received?, sender: Organisation?) -> Message {
        // Keys in byte order, as the relay's JSON always has them; times as they read back
        // from the journal, so that both ways give the same bytes.
        let traceparent = received.map { TraceContext.traceparent(traceID: $0.traceID, spanID: $0.spanID) }
        var json = JSONText.Writer(capacity: 384 + payload.count)
        json.beginObject()
        json.beginObject("convenant")
        json.string("id", decision.convenantID ?? "")
        json.string("version", decision.convenantVersion ?? "")
        json.endObject()
        json.string("id", signalID)
        // Canonical JSON written by the relay (and authenticated when read back).
        json.fragment("payload", payload)
        if let activity = decision.processingActivity { json.string("processingActivity", activity) }
        json.timestamp("receivedAt", JournalTime.rounded(receivedAt))
        if let retention = decision.retentionUntil { json.timestamp("retainUntil", JournalTime.rounded(retention)) }
        json.string("rule", decision.ruleID ?? "")
        json.beginObject("sender")
        json.string("id", senderID)
        if let organisation = sender {
            json.string("name", organisation.name)
            json.string("oin", organisation.oin)
            json.string("sector", organisation.sector.rawValue)
        }
        json.endObject()
        if let traceparent { json.string("traceparent", traceparent) }
        json.string("type", signalType)
        json.endObject()
        return Message(body: json.bytes, traceparent: traceparent)
    }
}
