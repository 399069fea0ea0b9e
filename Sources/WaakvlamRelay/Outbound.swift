import Foundation
import WaakvlamCore
import WaakvlamJournal
import WaakvlamSystem

/// The message a recipient receives, pushed to its endpoint or read from its inbox: the
/// minimised payload with where it comes from and under which rule. Built from the journal,
/// so that a retry after a restart sends exactly what was decided.
enum Outbound {
    struct Message {
        /// The message as JSON (keys sorted); the payload is the stored canonical JSON as it is.
        let body: [UInt8]
        let traceparent: String?
    }

    /// nil when the payload is gone (purged after its retention ended).
    static func message(for state: DeliveryState, journal: Journal, configuration: Configuration) throws -> Message? {
        guard case .decision(let decision) = try journal.record(at: state.decision),
              let payload = try journal.payload(signalID: state.signalID, recipientID: state.recipientID),
              let summary = journal.deliveryState().signal(state.signalID) else { return nil }
        var received: Received?
        if let position = summary.received, case .received(let record) = try journal.record(at: position) { received = record }
        var sender: [String: Any] = ["id": summary.senderID]
        if let organisation = configuration.organisation(id: summary.senderID) {
            sender["oin"] = organisation.oin
            sender["name"] = organisation.name
            sender["sector"] = organisation.sector.rawValue
        }
        var message: [String: Any] = [
            "id": state.signalID,
            "type": summary.signalType,
            "sender": sender,
            "receivedAt": Log.timestamp(summary.receivedAt),
            "rule": decision.ruleID ?? "",
            "convenant": ["id": decision.convenantID ?? "", "version": decision.convenantVersion ?? ""],
            // Written by the journal from Payload.canonicalJSON and authenticated on reading.
            "payload": JSONText.Fragment(payload),
        ]
        if let activity = decision.processingActivity { message["processingActivity"] = activity }
        if let retention = decision.retentionUntil { message["retainUntil"] = Log.timestamp(retention) }
        let traceparent = received.map { "00-\($0.traceID)-\($0.spanID)-01" }
        if let traceparent { message["traceparent"] = traceparent }
        return Message(body: JSONText.encode(message), traceparent: traceparent)
    }
}
