import Foundation

/// How a recipient gets its signals: pushed to its endpoint, or pulled from its inbox.
public enum DeliveryMode: String, Sendable, Equatable, CaseIterable {
    case push
    case inbox
}

/// How a delivery completed: a successful push, or the recipient acknowledging an inbox entry.
public enum DeliveryVia: String, Sendable, Equatable, CaseIterable {
    case push
    case inboxAck = "inbox-ack"
}

/// The fields of a record in one immutable, shared object: a copy of the record (into the
/// append, the delivery index, the first push, the answer) costs one reference count instead
/// of one per string and array, and reading a field borrows it.
final class SharedFields<Fields: Sendable>: Sendable {
    let fields: Fields

    init(_ fields: Fields) { self.fields = fields }

    /// A new object with one field changed (rare: records are built whole).
    func with<T>(_ field: WritableKeyPath<Fields, T>, _ value: T) -> SharedFields {
        var changed = fields
        changed[keyPath: field] = value
        return SharedFields(changed)
    }
}

/// A signal accepted for relaying (written before the sender hears 202).
/// Its fields are `SharedFields`.
public struct Received: Equatable, Sendable {
    private struct Fields: Equatable, Sendable {
        var signalID, senderID, senderOIN, signalType: String
        var requestedRecipients: [String]
        var payloadHash, requestHash: String
        var subjectPseudonyms: [String]
        var traceID, spanID, configVersion: String
        var at: Date
    }

    private var box: SharedFields<Fields>

    public var signalID: String { get { box.fields.signalID } set { box = box.with(\.signalID, newValue) } }
    /// Organisation id of the sender.
    public var senderID: String { get { box.fields.senderID } set { box = box.with(\.senderID, newValue) } }
    public var senderOIN: String { get { box.fields.senderOIN } set { box = box.with(\.senderOIN, newValue) } }
    public var signalType: String { get { box.fields.signalType } set { box = box.with(\.signalType, newValue) } }
    /// The recipients as the sender named them (organisation ids or sectors).
    public var requestedRecipients: [String] { get { box.fields.requestedRecipients } set { box = box.with(\.requestedRecipients, newValue) } }
    /// Hex SHA-256 of the submitted payload.
    public var payloadHash: String { get { box.fields.payloadHash } set { box = box.with(\.payloadHash, newValue) } }
    /// Hex SHA-256 of the canonical request: same id and same hash is an idempotent retry.
    public var requestHash: String { get { box.fields.requestHash } set { box = box.with(\.requestHash, newValue) } }
    /// Pseudonyms (see `Pseudonymizer`) of the persons and addresses the signal is about.
    public var subjectPseudonyms: [String] { get { box.fields.subjectPseudonyms } set { box = box.with(\.subjectPseudonyms, newValue) } }
    /// W3C Trace Context ids of the submission.
    public var traceID: String { get { box.fields.traceID } set { box = box.with(\.traceID, newValue) } }
    public var spanID: String { get { box.fields.spanID } set { box = box.with(\.spanID, newValue) } }
    public var configVersion: String { get { box.fields.configVersion } set { box = box.with(\.configVersion, newValue) } }
    public var at: Date { get { box.fields.at } set { box = box.with(\.at, newValue) } }

    public init(signalID: String, senderID: String, senderOIN: String, signalType: String,
                requestedRecipients: [String], payloadHash: String, requestHash: String,
                subjectPseudonyms: [String], traceID: String, spanID: String, configVersion: String, at: Date) {
        box = SharedFields(Fields(signalID: signalID, senderID: senderID, senderOIN: senderOIN, signalType: signalType,
                         requestedRecipients: requestedRecipients, payloadHash: payloadHash, requestHash: requestHash,
                         subjectPseudonyms: subjectPseudonyms, traceID: traceID, spanID: spanID,
                         configVersion: configVersion, at: at))
    }

    public static func == (a: Received, b: Received) -> Bool { a.box === b.box || a.box.fields == b.box.fields }
}

/// A sealed payload as it lies in a decision record: AES-256-GCM ciphertext whose key sits in
/// slot `keySlot` of the key file.
public struct SealedPayload: Equatable, Sendable {
    public let keySlot: UInt32
    /// nonce || ciphertext || tag.
    public let ciphertext: [UInt8]
}

/// The policy decision for one recipient of a signal. Its fields are `SharedFields`.
public struct Decision: Equatable, Sendable {
    private struct Fields: Equatable, Sendable {
        var signalID, recipientID: String
        var allowed: Bool
        var reasonCode, reasonMessage, ruleID, convenantID, convenantVersion, processingActivity: String?
        var configVersion: String
        var fieldsDelivered, fieldsDropped: [String]
        var retentionUntil: Date?
        var deliveryMode: DeliveryMode?
        var payload: [UInt8]?
        var sealed: SealedPayload?
        var at: Date
    }

    private var box: SharedFields<Fields>

    public var signalID: String { get { box.fields.signalID } set { box = box.with(\.signalID, newValue) } }
    /// Organisation id, or the requested string when it names no known organisation.
    public var recipientID: String { get { box.fields.recipientID } set { box = box.with(\.recipientID, newValue) } }
    public var allowed: Bool { get { box.fields.allowed } set { box = box.with(\.allowed, newValue) } }
    public var reasonCode: String? { get { box.fields.reasonCode } set { box = box.with(\.reasonCode, newValue) } }
    public var reasonMessage: String? { get { box.fields.reasonMessage } set { box = box.with(\.reasonMessage, newValue) } }
    public var ruleID: String? { get { box.fields.ruleID } set { box = box.with(\.ruleID, newValue) } }
    public var convenantID: String? { get { box.fields.convenantID } set { box = box.with(\.convenantID, newValue) } }
    public var convenantVersion: String? { get { box.fields.convenantVersion } set { box = box.with(\.convenantVersion, newValue) } }
    /// URI of the processing activity (Logboek Dataverwerkingen `dpl.core.processing_activity_id`).
    public var processingActivity: String? { get { box.fields.processingActivity } set { box = box.with(\.processingActivity, newValue) } }
    public var configVersion: String { get { box.fields.configVersion } set { box = box.with(\.configVersion, newValue) } }
    public var fieldsDelivered: [String] { get { box.fields.fieldsDelivered } set { box = box.with(\.fieldsDelivered, newValue) } }
    public var fieldsDropped: [String] { get { box.fields.fieldsDropped } set { box = box.with(\.fieldsDropped, newValue) } }
    /// When the payload must be destroyed at the latest.
    public var retentionUntil: Date? { get { box.fields.retentionUntil } set { box = box.with(\.retentionUntil, newValue) } }
    public var deliveryMode: DeliveryMode? { get { box.fields.deliveryMode } set { box = box.with(\.deliveryMode, newValue) } }
    /// The minimised payload to deliver (plaintext). On append the journal seals it under a
    /// fresh key; records read back always have `payload == nil` and carry `sealed` instead.
    /// Read the plaintext with `Journal.payload(signalID:recipientID:)`.
    public var payload: [UInt8]? { get { box.fields.payload } set { box = box.with(\.payload, newValue) } }
    /// Set on records read back when the decision carried a payload.
    public internal(set) var sealed: SealedPayload? { get { box.fields.sealed } set { box = box.with(\.sealed, newValue) } }
    public var at: Date { get { box.fields.at } set { box = box.with(\.at, newValue) } }

    public init(signalID: String, recipientID: String, allowed: Bool, reasonCode: String? = nil,
                reasonMessage: String? = nil, ruleID: String? = nil, convenantID: String? = nil,
                convenantVersion: String? = nil, processingActivity: String? = nil, configVersion: String,
                fieldsDelivered: [String] = [], fieldsDropped: [String] = [], retentionUntil: Date? = nil,
                deliveryMode: DeliveryMode? = nil, payload: [UInt8]? = nil, at: Date) {
        self.init(signalID: signalID, recipientID: recipientID, allowed: allowed, reasonCode: reasonCode,
                  reasonMessage: reasonMessage, ruleID: ruleID, convenantID: convenantID,
                  convenantVersion: convenantVersion, processingActivity: processingActivity,
                  configVersion: configVersion, fieldsDelivered: fieldsDelivered, fieldsDropped: fieldsDropped,
                  retentionUntil: retentionUntil, deliveryMode: deliveryMode, payload: payload, sealed: nil, at: at)
    }

    /// Every field, `sealed` too: for records read back.
    init(signalID: String, recipientID: String, allowed: Bool, reasonCode: String?, reasonMessage: String?, ruleID: String?,
         convenantID: String?, convenantVersion: String?, processingActivity: String?, configVersion: String,
         fieldsDelivered: [String], fieldsDropped: [String], retentionUntil: Date?, deliveryMode: DeliveryMode?,
         payload: [UInt8]?, sealed: SealedPayload?, at: Date) {
        box = SharedFields(Fields(signalID: signalID, recipientID: recipientID, allowed: allowed, reasonCode: reasonCode,
                         reasonMessage: reasonMessage, ruleID: ruleID, convenantID: convenantID,
                         convenantVersion: convenantVersion, processingActivity: processingActivity,
                         configVersion: configVersion, fieldsDelivered: fieldsDelivered, fieldsDropped: fieldsDropped,
                         retentionUntil: retentionUntil, deliveryMode: deliveryMode, payload: payload, sealed: sealed, at: at))
    }

    public static func == (a: Decision, b: Decision) -> Bool { a.box === b.box || a.box.fields == b.box.fields }
}

/// One failed (or not yet successful) push attempt.
public struct Attempt: Equatable, Sendable {
    public var signalID: String
    public var recipientID: String
    /// 1 for the first attempt.
    public var attempt: Int
    /// What happened, e.g. "http 503", "connect refused", "timeout".
    public var outcome: String
    /// When to try again; nil when no further attempt is planned.
    public var nextAttemptAt: Date?
    public var at: Date

    public init(signalID: String, recipientID: String, attempt: Int, outcome: String, nextAttemptAt: Date?, at: Date) {
        self.signalID = signalID
        self.recipientID = recipientID
        self.attempt = attempt
        self.outcome = outcome
        self.nextAttemptAt = nextAttemptAt
        self.at = at
    }
}

public struct Delivered: Equatable, Sendable {
    public var signalID: String
    public var recipientID: String
    public var via: DeliveryVia
    public var at: Date

    public init(signalID: String, recipientID: String, via: DeliveryVia, at: Date) {
        self.signalID = signalID
        self.recipientID = recipientID
        self.via = via
        self.at = at
    }
}

/// A delivery reached its end of life undelivered.
public struct Expired: Equatable, Sendable {
    public var signalID: String
    public var recipientID: String
    public var at: Date

    public init(signalID: String, recipientID: String, at: Date) {
        self.signalID = signalID
        self.recipientID = recipientID
        self.at = at
    }
}

/// Feedback (terugmelding) from a recipient about a signal, as forwarded to the sender.
public struct Feedback: Equatable, Sendable {
    public var signalID: String
    public var fromID: String
    public var status: String
    public var fieldsForwarded: [String]
    public var at: Date

    public init(signalID: String, fromID: String, status: String, fieldsForwarded: [String], at: Date) {
        self.signalID = signalID
        self.fromID = fromID
        self.status = status
        self.fieldsForwarded = fieldsForwarded
        self.at = at
    }
}

/// The payload key of one delivery was destroyed: the payload is unreadable from now on.
public struct PayloadPurged: Equatable, Sendable {
    public var signalID: String
    public var recipientID: String
    public var at: Date

    public init(signalID: String, recipientID: String, at: Date) {
        self.signalID = signalID
        self.recipientID = recipientID
        self.at = at
    }
}

public struct ConfigApplied: Equatable, Sendable {
    public var version: String
    public var contentHash: String
    public var appliedBy: String
    public var summary: String
    public var at: Date

    public init(version: String, contentHash: String, appliedBy: String, summary: String, at: Date) {
        self.version = version
        self.contentHash = contentHash
        self.appliedBy = appliedBy
        self.summary = summary
        self.at = at
    }
}

/// One journal record. The numbering of `Kind` is the on-disk kind byte.
public enum JournalRecord: Equatable, Sendable {
    case received(Received)
    case decision(Decision)
    case attempt(Attempt)
    case delivered(Delivered)
    case expired(Expired)
    case feedback(Feedback)
    case payloadPurged(PayloadPurged)
    case configApplied(ConfigApplied)

    public enum Kind: UInt8, Sendable, CaseIterable {
        case received = 1, decision, attempt, delivered, expired, feedback, payloadPurged, configApplied

        /// The name used on the command line and in JSON output.
        public var name: String {
            switch self {
            case .received: "received"
            case .decision: "decision"
            case .attempt: "attempt"
            case .delivered: "delivered"
            case .expired: "expired"
            case .feedback: "feedback"
            case .payloadPurged: "payloadPurged"
            case .configApplied: "configApplied"
            }
        }

        public init?(name: String) {
            guard let kind = Kind.allCases.first(where: { $0.name.lowercased() == name.lowercased() }) else { return nil }
            self = kind
        }
    }

    public var kind: Kind {
        switch self {
        case .received: .received
        case .decision: .decision
        case .attempt: .attempt
        case .delivered: .delivered
        case .expired: .expired
        case .feedback: .feedback
        case .payloadPurged: .payloadPurged
        case .configApplied: .configApplied
        }
    }

    /// The signal the record is about; nil for `configApplied`.
    public var signalID: String? {
        switch self {
        case .received(let r): r.signalID
        case .decision(let r): r.signalID
        case .attempt(let r): r.signalID
        case .delivered(let r): r.signalID
        case .expired(let r): r.signalID
        case .feedback(let r): r.signalID
        case .payloadPurged(let r): r.signalID
        case .configApplied: nil
        }
    }

    public var at: Date {
        switch self {
        case .received(let r): r.at
        case .decision(let r): r.at
        case .attempt(let r): r.at
        case .delivered(let r): r.at
        case .expired(let r): r.at
        case .feedback(let r): r.at
        case .payloadPurged(let r): r.at
        case .configApplied(let r): r.at
        }
    }

    /// The organisations the record names (sender, recipient, feedback origin, administrator).
    public var organisations: [String] {
        switch self {
        case .received(let r): [r.senderID] + r.requestedRecipients
        case .decision(let r): [r.recipientID]
        case .attempt(let r): [r.recipientID]
        case .delivered(let r): [r.recipientID]
        case .expired(let r): [r.recipientID]
        case .feedback(let r): [r.fromID]
        case .payloadPurged(let r): [r.recipientID]
        case .configApplied(let r): [r.appliedBy]
        }
    }
}

/// Where a record lies: its segment number, its byte offset in that segment, and its
/// sequence number (1 for the first record of the journal).
public struct RecordPosition: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let segment: UInt32
    public let offset: UInt32
    public let sequence: UInt64

    public init(segment: UInt32, offset: UInt32, sequence: UInt64) {
        self.segment = segment
        self.offset = offset
        self.sequence = sequence
    }

    public static func < (a: RecordPosition, b: RecordPosition) -> Bool { a.sequence < b.sequence }

    public var description: String { "#\(sequence) (\(Segment.fileName(segment)) @\(offset))" }
}

/// A record read back from disk, with where it lies and its chain hash.
public struct StoredRecord: Equatable, Sendable {
    public let position: RecordPosition
    public let record: JournalRecord
}

// MARK: - Body encoding (field order is the on-disk format; see docs/JOURNAL.md)

/// How `encodeBody` seals a decision's plaintext payload: with AES-256-GCM under `key` and
/// `nonce`, straight into the body, as the sealed payload of key slot `slot`.
struct PayloadSealing {
    let slot: UInt32
    let key: UnsafeRawBufferPointer
    let nonce: UnsafeRawBufferPointer
}

extension JournalRecord {
    /// Appends the body bytes to `w`. A decision's plaintext payload is never written as it
    /// is: the journal seals it on append, passing `sealing` (whose sealed payload then
    /// replaces the record's own). Throws what sealing throws.
    func encodeBody(into w: inout ByteWriter, sealing: PayloadSealing? = nil) throws {
        switch self {
        case .received(let r):
            w.string(r.signalID)
            w.string(r.senderID)
            w.string(r.senderOIN)
            w.string(r.signalType)
            w.strings(r.requestedRecipients)
            w.string(r.payloadHash)
            w.string(r.requestHash)
            w.strings(r.subjectPseudonyms)
            w.string(r.traceID)
            w.string(r.spanID)
            w.string(r.configVersion)
            w.time(r.at)
        case .decision(let r):
            precondition(r.payload == nil || sealing != nil, "plaintext payloads are sealed while encoding")
            w.string(r.signalID)
            w.string(r.recipientID)
            w.bool(r.allowed)
            w.optional(r.reasonCode) { $0.string($1) }
            w.optional(r.reasonMessage) { $0.string($1) }
            w.optional(r.ruleID) { $0.string($1) }
            w.optional(r.convenantID) { $0.string($1) }
            w.optional(r.convenantVersion) { $0.string($1) }
            w.optional(r.processingActivity) { $0.string($1) }
            w.string(r.configVersion)
            w.strings(r.fieldsDelivered)
            w.strings(r.fieldsDropped)
            w.optional(r.retentionUntil) { $0.time($1) }
            w.optional(r.deliveryMode) { $0.string($1.rawValue) }
            if let sealing, let plaintext = r.payload {
                w.u8(1)
                w.varint(UInt64(sealing.slot))
                try w.sealed(plaintext, key: sealing.key, nonce: sealing.nonce,
                             aad: KeySlot.associatedData(signalID: r.signalID, recipientID: r.recipientID))
            } else {
                w.optional(r.sealed) {
                    $0.varint(UInt64($1.keySlot))
                    $0.data($1.ciphertext)
                }
            }
            w.time(r.at)
        case .attempt(let r):
            w.string(r.signalID)
            w.string(r.recipientID)
            w.varint(UInt64(max(r.attempt, 0)))
            w.string(r.outcome)
            w.optional(r.nextAttemptAt) { $0.time($1) }
            w.time(r.at)
        case .delivered(let r):
            w.string(r.signalID)
            w.string(r.recipientID)
            w.string(r.via.rawValue)
            w.time(r.at)
        case .expired(let r):
            w.string(r.signalID)
            w.string(r.recipientID)
            w.time(r.at)
        case .feedback(let r):
            w.string(r.signalID)
            w.string(r.fromID)
            w.string(r.status)
            w.strings(r.fieldsForwarded)
            w.time(r.at)
        case .payloadPurged(let r):
            w.string(r.signalID)
            w.string(r.recipientID)
            w.time(r.at)
        case .configApplied(let r):
            w.string(r.version)
            w.string(r.contentHash)
            w.string(r.appliedBy)
            w.string(r.summary)
            w.time(r.at)
        }
    }

    /// How much of a record to decode.
    enum Detail {
        /// Everything.
        case full
        /// What the delivery index needs (for recovery): a `received` record's text fields
        /// other than its id, sender and type, and a decision's reason message, rule,
        /// convenant, fields and ciphertext are checked for structure but left empty, which
        /// saves most of recovery's allocations.
        case index
    }

    /// Decodes a body; nil when the bytes do not form a valid record of that kind.
    static func decode(kind rawKind: UInt8, body: UnsafeRawBufferPointer, detail: Detail = .full) -> JournalRecord? {
        guard let kind = Kind(rawValue: rawKind) else { return nil }
        var r = ByteReader(body)
        do {
            let record: JournalRecord
            switch (kind, detail) {
            case (.received, .index):
                let signalID = try r.string(), senderID = try r.string()
                try r.skipString() // sender OIN
                let signalType = try r.string()
                try r.skipStrings() // requested recipients
                try r.skipString() // payload hash
                try r.skipString() // request hash
                try r.skipStrings() // subject pseudonyms
                for _ in 0..<3 { try r.skipString() } // trace id, span id, configuration version
                record = .received(Received(
                    signalID: signalID, senderID: senderID, senderOIN: "", signalType: signalType, requestedRecipients: [],
                    payloadHash: "", requestHash: "", subjectPseudonyms: [], traceID: "", spanID: "", configVersion: "",
                    at: try r.time()))
            case (.decision, .index):
                let signalID = try r.string(), recipientID = try r.string(), allowed = try r.bool()
                let reasonCode = try r.optional { try $0.string() }
                // Reason message, rule, convenant, convenant version, processing activity.
                for _ in 0..<5 { _ = try r.optional { try $0.skipString() } }
                try r.skipString() // configuration version
                try r.skipStrings() // fields delivered
                try r.skipStrings() // fields dropped
                let retentionUntil = try r.optional { try $0.time() }
                let deliveryMode = try r.optional { try $0.deliveryMode() }
                let sealed = try r.optional { reader -> SealedPayload in
                    let slot = try reader.keySlot()
                    try reader.skipString() // ciphertext
                    return SealedPayload(keySlot: slot, ciphertext: [])
                }
                record = .decision(Decision(
                    signalID: signalID, recipientID: recipientID, allowed: allowed, reasonCode: reasonCode, reasonMessage: nil,
                    ruleID: nil, convenantID: nil, convenantVersion: nil, processingActivity: nil, configVersion: "",
                    fieldsDelivered: [], fieldsDropped: [], retentionUntil: retentionUntil, deliveryMode: deliveryMode,
                    payload: nil, sealed: sealed, at: try r.time()))
            case (.received, .full):
                record = .received(Received(
                    signalID: try r.string(), senderID: try r.string(), senderOIN: try r.string(),
                    signalType: try r.string(), requestedRecipients: try r.strings(),
                    payloadHash: try r.string(), requestHash: try r.string(),
                    subjectPseudonyms: try r.strings(), traceID: try r.string(), spanID: try r.string(),
                    configVersion: try r.string(), at: try r.time()))
            case (.decision, .full):
                record = .decision(Decision(
                    signalID: try r.string(), recipientID: try r.string(), allowed: try r.bool(),
                    reasonCode: try r.optional { try $0.string() },
                    reasonMessage: try r.optional { try $0.string() },
                    ruleID: try r.optional { try $0.string() },
                    convenantID: try r.optional { try $0.string() },
                    convenantVersion: try r.optional { try $0.string() },
                    processingActivity: try r.optional { try $0.string() },
                    configVersion: try r.string(), fieldsDelivered: try r.strings(), fieldsDropped: try r.strings(),
                    retentionUntil: try r.optional { try $0.time() },
                    deliveryMode: try r.optional { try $0.deliveryMode() }, payload: nil,
                    sealed: try r.optional { SealedPayload(keySlot: try $0.keySlot(), ciphertext: try $0.data()) },
                    at: try r.time()))
            case (.attempt, _):
                let signalID = try r.string(), recipientID = try r.string()
                let number = try r.varint()
                guard number <= UInt64(Int32.max) else { return nil }
                record = .attempt(Attempt(signalID: signalID, recipientID: recipientID, attempt: Int(number),
                                          outcome: try r.string(), nextAttemptAt: try r.optional { try $0.time() },
                                          at: try r.time()))
            case (.delivered, _):
                let signalID = try r.string(), recipientID = try r.string()
                guard let via = DeliveryVia(rawValue: try r.string()) else { return nil }
                record = .delivered(Delivered(signalID: signalID, recipientID: recipientID, via: via, at: try r.time()))
            case (.expired, _):
                record = .expired(Expired(signalID: try r.string(), recipientID: try r.string(), at: try r.time()))
            case (.feedback, _):
                record = .feedback(Feedback(signalID: try r.string(), fromID: try r.string(), status: try r.string(),
                                            fieldsForwarded: try r.strings(), at: try r.time()))
            case (.payloadPurged, _):
                record = .payloadPurged(PayloadPurged(signalID: try r.string(), recipientID: try r.string(), at: try r.time()))
            case (.configApplied, _):
                record = .configApplied(ConfigApplied(version: try r.string(), contentHash: try r.string(),
                                                      appliedBy: try r.string(), summary: try r.string(), at: try r.time()))
            }
            return r.isAtEnd ? record : nil
        } catch {
            return nil
        }
    }
}

private extension ByteReader {
    mutating func deliveryMode() throws -> DeliveryMode {
        guard let mode = DeliveryMode(rawValue: try string()) else { throw Malformed() }
        return mode
    }

    mutating func keySlot() throws -> UInt32 {
        let slot = try varint()
        guard slot <= UInt64(UInt32.max) else { throw Malformed() }
        return UInt32(slot)
    }
}
