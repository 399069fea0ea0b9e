import Foundation
import WaakvlamCore
import WaakvlamJournal
import WaakvlamSystem

/// The message a recipient receives, pushed to its endpoint or read from its inbox: the
/// minimised payload with where it comes from and under which rule. Built from the journal,
/// so that a retry after a restart sends exactly what was decided.
enum Outbound {
    /// nil when the payload is gone (purged after its retention ended).
    static func message(for state: DeliveryState, journal: Journal, configuration: Configuration) throws -> [String: Any]? {
        guard case .decision(let decision) = try journal.record(at: state.decision),
              let payloadBytes = try journal.payload(signalID: state.signalID, recipientID: state.recipientID),
              let payload = try JSONSerialization.jsonObject(with: Data(payloadBytes)) as? [String: Any],
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
            "payload": payload,
        ]
        if let activity = decision.processingActivity { message["processingActivity"] = activity }
        if let retention = decision.retentionUntil { message["retainUntil"] = Log.timestamp(retention) }
        if let received { message["traceparent"] = "00-\(received.traceID)-\(received.spanID)-01" }
        return message
    }
}
