import Foundation
import WaakvlamCrypto

/// Turns journal records into Logboek Dataverwerkingen lines:
///
/// | journal record            | name                        | status_code        |
/// |---------------------------|-----------------------------|--------------------|
/// | received                  | waakvlam.signal.received    | STATUS_CODE_OK     |
/// | decision, allowed         | waakvlam.signal.shared      | STATUS_CODE_OK     |
/// | decision, denied          | waakvlam.signal.denied      | STATUS_CODE_UNSET  |
/// | delivered                 | waakvlam.signal.delivered   | STATUS_CODE_OK     |
/// | expired                   | waakvlam.signal.expired     | STATUS_CODE_ERROR  |
/// | feedback                  | waakvlam.signal.feedback    | STATUS_CODE_OK     |
/// | payloadPurged             | waakvlam.payload.destroyed  | STATUS_CODE_OK     |
///
/// One line per action per data subject of the signal. Attempts and configuration records
/// are no processing of personal data and are left out.
struct LogboekExporter {
    private struct SignalInfo {
        var received: Received
        var sequence: UInt64
        var activity: String?
        var emittedReceived = false
        var decisions: [String: (at: Date, activity: String?, rule: String?, convenant: String?)] = [:]
    }

    static let unknownActivity = "urn:waakvlam:processing-activity:unspecified"

    private let emit: (String) throws -> Void
    private let time = TimestampFormatter()
    private var signals: [String: SignalInfo] = [:]

    init(emit: @escaping (String) throws -> Void) { self.emit = emit }

    mutating func add(_ stored: StoredRecord) throws {
        let sequence = stored.position.sequence
        switch stored.record {
        case .received(let r):
            signals[r.signalID] = SignalInfo(received: r, sequence: sequence)
        case .decision(let d):
            guard var info = signals[d.signalID] else { return }
            if !info.emittedReceived {
                // The receipt happened for the first decision's processing activity.
                info.emittedReceived = true
                info.activity = d.processingActivity
                try lines(info, sequence: info.sequence, name: "waakvlam.signal.received", status: "STATUS_CODE_OK",
                          start: info.received.at, end: info.received.at, activity: d.processingActivity, extra: [:], isReceipt: true)
            }
            info.decisions[d.recipientID] = (d.at, d.processingActivity, d.ruleID,
                                              d.convenantID.map { id in d.convenantVersion.map { "\(id)@\($0)" } ?? id })
            signals[d.signalID] = info
            var extra: [String: Any] = ["waakvlam.recipient": d.recipientID]
            if let rule = d.ruleID { extra["waakvlam.rule_id"] = rule }
            if let c = info.decisions[d.recipientID]?.convenant { extra["waakvlam.convenant"] = c }
            if d.allowed {
                extra["waakvlam.fields"] = d.fieldsDelivered.joined(separator: ",")
            } else if let code = d.reasonCode {
                extra["waakvlam.reason_code"] = code
            }
            try lines(info, sequence: sequence, name: d.allowed ? "waakvlam.signal.shared" : "waakvlam.signal.denied",
                      status: d.allowed ? "STATUS_CODE_OK" : "STATUS_CODE_UNSET", start: info.received.at, end: d.at,
                      activity: d.processingActivity, extra: extra)
        case .delivered(let d):
            try delivery(d.signalID, d.recipientID, sequence: sequence, name: "waakvlam.signal.delivered",
                         status: "STATUS_CODE_OK", at: d.at, extra: ["waakvlam.via": d.via.rawValue])
        case .expired(let e):
            try delivery(e.signalID, e.recipientID, sequence: sequence, name: "waakvlam.signal.expired",
                         status: "STATUS_CODE_ERROR", at: e.at, extra: [:])
        case .payloadPurged(let p):
            try delivery(p.signalID, p.recipientID, sequence: sequence, name: "waakvlam.payload.destroyed",
                         status: "STATUS_CODE_OK", at: p.at, extra: [:])
        case .feedback(let f):
            guard let info = signals[f.signalID] else { return }
            try lines(info, sequence: sequence, name: "waakvlam.signal.feedback", status: "STATUS_CODE_OK",
                      start: f.at, end: f.at, activity: info.decisions[f.fromID]?.activity ?? info.activity,
                      extra: ["waakvlam.from": f.fromID, "waakvlam.status": f.status,
                              "waakvlam.fields": f.fieldsForwarded.joined(separator: ",")])
        case .attempt, .configApplied:
            break
        }
    }

    /// Signals that never got a decision still had their receipt logged.
    mutating func finish() throws {
        for info in signals.values.sorted(by: { $0.sequence < $1.sequence }) where !info.emittedReceived {
            try lines(info, sequence: info.sequence, name: "waakvlam.signal.received", status: "STATUS_CODE_OK",
                      start: info.received.at, end: info.received.at, activity: nil, extra: [:], isReceipt: true)
        }
    }

    private func delivery(_ signalID: String, _ recipientID: String, sequence: UInt64, name: String, status: String,
                          at: Date, extra: [String: Any]) throws {
        guard let info = signals[signalID] else { return }
        let decision = info.decisions[recipientID]
        var extra = extra
        extra["waakvlam.recipient"] = recipientID
        if let rule = decision?.rule { extra["waakvlam.rule_id"] = rule }
        if let c = decision?.convenant { extra["waakvlam.convenant"] = c }
        try lines(info, sequence: sequence, name: name, status: status, start: decision?.at ?? at, end: at,
                  activity: decision?.activity, extra: extra)
    }

    private func lines(_ info: SignalInfo, sequence: UInt64, name: String, status: String, start: Date, end: Date,
                       activity: String?, extra: [String: Any], isReceipt: Bool = false) throws {
        let r = info.received
        let traceID = Self.isHex(r.traceID, count: 32) ? r.traceID.lowercased() : Self.derivedID(r.signalID, "trace", bytes: 16)
        let receiptSpan = Self.isHex(r.spanID, count: 16) ? r.spanID.lowercased() : Self.derivedID(r.signalID, "span", bytes: 8)
        let spanID = isReceipt ? receiptSpan : Self.derivedID(r.signalID, String(sequence), bytes: 8)
        for subject in r.subjectPseudonyms {
            var attributes = extra
            attributes["dpl.core.processing_activity_id"] = activity ?? Self.unknownActivity
            attributes["dpl.core.data_subject_id"] = subject
            attributes["dpl.core.data_subject_id_type"] = Pseudonymizer.dataSubjectIDType(ofPseudonym: subject)
            attributes["waakvlam.signal_id"] = r.signalID
            attributes["waakvlam.signal_type"] = r.signalType
            attributes["waakvlam.sender"] = r.senderID
            attributes["waakvlam.journal_sequence"] = Int(sequence)
            var line: [String: Any] = [
                "trace_id": traceID, "span_id": spanID, "name": name,
                "start_time": time.string(start), "end_time": time.string(end), "status_code": status,
                "resource": ["attributes": ["service.name": "waakvlam"]], "attributes": attributes,
            ]
            if !isReceipt { line["parent_span_id"] = receiptSpan }
            let data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys, .withoutEscapingSlashes])
            try emit(String(decoding: data, as: UTF8.self))
        }
    }

    private static func isHex(_ s: String, count: Int) -> Bool {
        s.utf8.count == count && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) || (65...70).contains($0) }
            && s.utf8.contains { $0 != 48 }
    }

    /// A stable id for actions without one of their own: the same journal exports the same.
    private static func derivedID(_ signalID: String, _ salt: String, bytes: Int) -> String {
        Hex.encode(SHA256.hash(Array("\(signalID)\u{0}\(salt)".utf8)).prefix(bytes))
    }
}
