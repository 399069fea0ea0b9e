import Foundation
import WaakvlamCore
import WaakvlamJournal
import WaakvlamSystem

/// The message a recipient receives, pushed to its endpoint or read from its inbox: the
/// minimised payload with where it comes from and under which rule. Built from the journal,
/// so that a retry after a restart sends exactly what was decided.
enum Outbound {
    /// What a message is written from. Writing it straight into the buffer it is sent from
    /// (`write(to:)`) saves building it apart and copying it there.
    struct Message: Sendable {
        let signalID: String
        let signalType: String
        let senderID: String
        let receivedAt: Date
        let decision: Decision
        /// The stored canonical JSON, written as it is.
        let payload: [UInt8]
        /// The sending organisation in the configuration the signal was decided under.
        let sender: Organisation?
        /// The trace the signal came with: its `traceparent` is written from it, never built.
        let trace: (traceID: String, spanID: String)?

        init(signalID: String, signalType: String, senderID: String, receivedAt: Date, decision: Decision,
             payload: [UInt8], received: Received?, sender: Organisation?) {
            self.signalID = signalID
            self.signalType = signalType
            self.senderID = senderID
            self.receivedAt = receivedAt
            self.decision = decision
            self.payload = payload
            self.sender = sender
            trace = received.map { ($0.traceID, $0.spanID) }
        }

        /// About the size of the JSON (a little more unless much needs escaping): the fixed
        /// parts and the text, so that the buffer it is written into need not grow.
        var estimatedCount: Int {
            var text = signalID.utf8.count + signalType.utf8.count + senderID.utf8.count
            text += (decision.convenantID?.utf8.count ?? 0) + (decision.convenantVersion?.utf8.count ?? 0)
                + (decision.processingActivity?.utf8.count ?? 0) + (decision.ruleID?.utf8.count ?? 0)
            if let sender { text += sender.name.utf8.count + sender.oin.utf8.count + sender.sector.rawValue.utf8.count }
            if let trace { text += trace.traceID.utf8.count + trace.spanID.utf8.count }
            return 384 + payload.count + text
        }

        /// The message as JSON.
        var body: [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(estimatedCount)
            write(to: &out)
            return out
        }

        /// Appends the message as JSON to `out`: keys in byte order, as the relay's JSON always
        /// has them; times as they read back from the journal, so that a message built from the
        /// records being appended and one read back give the same bytes. Written piece by piece
        /// (the keys are fixed) rather than through `JSONText.Writer`, which scans every key.
        func write(to out: inout [UInt8]) {
            out.append(contentsOf: #"{"convenant":{"id":"#.utf8)
            JSONText.appendString(decision.convenantID ?? "", to: &out)
            out.append(contentsOf: #","version":"#.utf8)
            JSONText.appendString(decision.convenantVersion ?? "", to: &out)
            out.append(contentsOf: #"},"id":"#.utf8)
            JSONText.appendString(signalID, to: &out)
            out.append(contentsOf: #","payload":"#.utf8)
            out.append(contentsOf: payload)
            if let activity = decision.processingActivity {
                out.append(contentsOf: #","processingActivity":"#.utf8)
                JSONText.appendString(activity, to: &out)
            }
            out.append(contentsOf: #","receivedAt":"#.utf8)
            JSONText.appendTimestamp(JournalTime.rounded(receivedAt), to: &out)
            if let retention = decision.retentionUntil {
                out.append(contentsOf: #","retainUntil":"#.utf8)
                JSONText.appendTimestamp(JournalTime.rounded(retention), to: &out)
            }
            out.append(contentsOf: #","rule":"#.utf8)
            JSONText.appendString(decision.ruleID ?? "", to: &out)
            out.append(contentsOf: #","sender":{"id":"#.utf8)
            JSONText.appendString(senderID, to: &out)
            if let sender {
                out.append(contentsOf: #","name":"#.utf8)
                JSONText.appendString(sender.name, to: &out)
                out.append(contentsOf: #","oin":"#.utf8)
                JSONText.appendString(sender.oin, to: &out)
                out.append(contentsOf: #","sector":"#.utf8)
                JSONText.appendString(sender.sector.rawValue, to: &out)
            }
            out.append(UInt8(ascii: "}"))
            if let trace {
                out.append(contentsOf: #","traceparent":"#.utf8)
                if JSONText.isPlain(trace.traceID) && JSONText.isPlain(trace.spanID) {
                    out.append(UInt8(ascii: "\""))
                    TraceContext.appendTraceparent(traceID: trace.traceID, spanID: trace.spanID, to: &out)
                    out.append(UInt8(ascii: "\""))
                } else {
                    JSONText.appendString(TraceContext.traceparent(traceID: trace.traceID, spanID: trace.spanID), to: &out)
                }
            }
            out.append(contentsOf: #","type":"#.utf8)
            JSONText.appendString(signalType, to: &out)
            out.append(UInt8(ascii: "}"))
        }

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
            Message(signalID: received.signalID, signalType: received.signalType, senderID: received.senderID,
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
        return Message(signalID: state.signalID, signalType: summary.signalType, senderID: summary.senderID, receivedAt: summary.receivedAt,
                       decision: decision, payload: payload, received: received, sender: configuration.organisation(id: summary.senderID))
    }
}
