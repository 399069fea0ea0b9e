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

    /// What a first push's message is built from: the records just appended, with the
    /// position of the decision record (see `DeliveryScheduler.wake(prepared:)`). `payload`
    /// is the decision's plaintext (canonical JSON) before the journal sealed it.
    struct Prepared: Sendable {
        let received: Received
        let decision: Decision
        let position: RecordPosition
        let payload: [UInt8]
        let configuration: Configuration

        var message: Message {
            Outbound.message(signalID: received.signalID, signalType: received.signalType, senderID: received.senderID,
                             receivedAt: received.at, decision: decision, payload: payload, received: received, configuration: configuration)
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
                       decision: decision, payload: payload, received: received, configuration: configuration)
    }

    private static func message(signalID: String, signalType: String, senderID: String, receivedAt: Date, decision: Decision,
                                payload: [UInt8], received: Received?, configuration: Configuration) -> Message {
        var sender: [String: Any] = ["id": senderID]
        if let organisation = configuration.organisation(id: senderID) {
            sender["oin"] = organisation.oin
            sender["name"] = organisation.name
            sender["sector"] = organisation.sector.rawValue
        }
        // Times as they read back from the journal, so both ways give the same bytes.
        var message: [String: Any] = [
            "id": signalID,
            "type": signalType,
            "sender": sender,
            "receivedAt": Log.timestamp(JournalTime.rounded(receivedAt)),
            "rule": decision.ruleID ?? "",
            "convenant": ["id": decision.convenantID ?? "", "version": decision.convenantVersion ?? ""],
            // Canonical JSON written by the relay (and authenticated when read back).
            "payload": JSONText.Fragment(payload),
        ]
        if let activity = decision.processingActivity { message["processingActivity"] = activity }
        if let retention = decision.retentionUntil { message["retainUntil"] = Log.timestamp(JournalTime.rounded(retention)) }
        let traceparent = received.map { "00-\($0.traceID)-\($0.spanID)-01" }
        if let traceparent { message["traceparent"] = traceparent }
        return Message(body: JSONText.encode(message), traceparent: traceparent)
    }
}
