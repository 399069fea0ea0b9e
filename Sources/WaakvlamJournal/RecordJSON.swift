import Foundation

extension StoredRecord {
    /// The record as a JSON object (for `journal query --json` and admin APIs): position,
    /// kind, RFC 3339 times and every field; a sealed payload shows only its key slot and size.
    public var jsonObject: [String: Any] {
        let time = TimestampFormatter()
        var o: [String: Any] = [
            "sequence": Int(position.sequence), "segment": Int(position.segment), "offset": Int(position.offset),
            "kind": record.kind.name, "at": time.string(record.at),
        ]
        func set(_ key: String, _ value: Any?) { if let value { o[key] = value } }
        switch record {
        case .received(let r):
            o["signal_id"] = r.signalID
            o["sender_id"] = r.senderID
            o["sender_oin"] = r.senderOIN
            o["signal_type"] = r.signalType
            o["requested_recipients"] = r.requestedRecipients
            o["payload_hash"] = r.payloadHash
            o["request_hash"] = r.requestHash
            o["subject_pseudonyms"] = r.subjectPseudonyms
            o["trace_id"] = r.traceID
            o["span_id"] = r.spanID
            o["config_version"] = r.configVersion
        case .decision(let d):
            o["signal_id"] = d.signalID
            o["recipient_id"] = d.recipientID
            o["allowed"] = d.allowed
            set("reason_code", d.reasonCode)
            set("reason_message", d.reasonMessage)
            set("rule_id", d.ruleID)
            set("convenant_id", d.convenantID)
            set("convenant_version", d.convenantVersion)
            set("processing_activity", d.processingActivity)
            o["config_version"] = d.configVersion
            o["fields_delivered"] = d.fieldsDelivered
            o["fields_dropped"] = d.fieldsDropped
            set("retention_until", d.retentionUntil.map(time.string))
            set("delivery_mode", d.deliveryMode?.rawValue)
            set("payload", d.sealed.map { ["key_slot": Int($0.keySlot), "sealed_bytes": $0.ciphertext.count] })
        case .attempt(let a):
            o["signal_id"] = a.signalID
            o["recipient_id"] = a.recipientID
            o["attempt"] = a.attempt
            o["outcome"] = a.outcome
            set("next_attempt_at", a.nextAttemptAt.map(time.string))
        case .delivered(let d):
            o["signal_id"] = d.signalID
            o["recipient_id"] = d.recipientID
            o["via"] = d.via.rawValue
        case .expired(let e):
            o["signal_id"] = e.signalID
            o["recipient_id"] = e.recipientID
        case .feedback(let f):
            o["signal_id"] = f.signalID
            o["from_id"] = f.fromID
            o["status"] = f.status
            o["fields_forwarded"] = f.fieldsForwarded
        case .payloadPurged(let p):
            o["signal_id"] = p.signalID
            o["recipient_id"] = p.recipientID
        case .configApplied(let c):
            o["version"] = c.version
            o["content_hash"] = c.contentHash
            o["applied_by"] = c.appliedBy
            o["summary"] = c.summary
        }
        return o
    }
}
