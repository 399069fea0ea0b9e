#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import WaakvlamCrypto
import WaakvlamSystem

/// The outcome of `JournalReader.verify()`.
public struct VerificationResult: Equatable, Sendable {
    public let records: UInt64
    public let segments: Int
    /// The last intact record's sequence and chain hash (hex): write them down elsewhere to
    /// detect a later rewrite of the whole chain.
    public let headSequence: UInt64
    public let headHash: String?
    /// The first bad record, or nil when the journal is intact.
    public let damage: JournalDamage?
    /// True when a node had the journal open and its last, still unsynced write was skipped.
    public let skippedInFlightTail: Bool

    public var isIntact: Bool { damage == nil }
}

/// Which records `JournalReader.records(matching:)` returns; nil fields match everything.
public struct JournalQuery: Sendable {
    public var signalID: String?
    /// Matches records naming this organisation (sender, recipient, feedback origin, admin).
    public var organisation: String?
    /// Matches the records of signals of this type (received, decisions, attempts, ...).
    public var signalType: String?
    public var kind: JournalRecord.Kind?
    public var since: Date?
    public var until: Date?

    public init(signalID: String? = nil, organisation: String? = nil, signalType: String? = nil,
                kind: JournalRecord.Kind? = nil, since: Date? = nil, until: Date? = nil) {
        self.signalID = signalID
        self.organisation = organisation
        self.signalType = signalType
        self.kind = kind
        self.since = since
        self.until = until
    }
}

/// What the journal says one organisation learned (or was refused) about a data subject.
public struct Disclosure: Equatable, Sendable {
    public enum Outcome: String, Sendable {
        case delivered, pending, expired, denied
    }

    public let signalID: String
    public let signalType: String
    public let senderID: String
    public let recipientID: String
    public let receivedAt: Date
    public let decidedAt: Date
    public let outcome: Outcome
    /// When the recipient got it (push or inbox acknowledgement).
    public let deliveredAt: Date?
    public let ruleID: String?
    public let convenantID: String?
    public let convenantVersion: String?
    public let processingActivity: String?
    public let fieldsDelivered: [String]
    public let reasonCode: String?
}

/// Reads a journal folder offline (the node may be running): verification of the whole
/// chain, queries, access requests and the Logboek Dataverwerkingen export.
public final class JournalReader {
    public let directory: String

    /// `directory` is the journal folder (`Journal.directory(inState:)`).
    public init(directory: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw JournalError.invalidSetup("there is no journal folder at \(directory); give the node's state folder with --state")
        }
        self.directory = directory
    }

    /// Re-hashes the whole chain and checks every record, segment header and the checkpoint.
    public func verify() throws -> VerificationResult {
        let checkpoint: Checkpoint?
        do {
            checkpoint = try Checkpoint.load(directory: directory)
        } catch JournalError.corrupt(let damage) {
            return VerificationResult(records: 0, segments: 0, headSequence: 0, headHash: nil, damage: damage, skippedInFlightTail: false)
        }
        var checkpointDamage: JournalDamage?
        var head: (sequence: UInt64, hash: [UInt8])?
        let outcome = try ChainWalk(directory: directory, hashFrom: 1, maxBody: Journal.maxAppendBytes).run { frame, position, _, hash in
            head = (position.sequence, hash!)
            if let checkpoint, position.sequence == checkpoint.sequence, checkpointDamage == nil,
               hash! != checkpoint.hash || position.segment != checkpoint.segment || frame.end != checkpoint.endOffset {
                checkpointDamage = JournalDamage(segment: Segment.fileName(position.segment), offset: UInt64(position.offset),
                                                 sequence: position.sequence,
                                                 reason: "the record is not the one the checkpoint recorded: the chain was rewritten from here or earlier")
            }
        }
        var damage = outcome.problem?.damage
        var skipped = false
        if let problem = outcome.problem, problem.tornCompatible, problem.segment == outcome.lastSegment,
           (outcome.segmentSizes[problem.segment] ?? 0) - min(problem.offset, outcome.segmentSizes[problem.segment] ?? 0) <= Journal.tornTailLimit,
           isOpenByNode() {
            damage = nil
            skipped = true
        }
        if damage == nil { damage = checkpointDamage }
        if damage == nil, let checkpoint, outcome.committed.sequence < checkpoint.sequence {
            damage = JournalDamage(segment: Segment.fileName(outcome.lastSegment ?? 1), offset: outcome.committed.endOffset,
                                   sequence: checkpoint.sequence,
                                   reason: "the journal ends at record #\(outcome.committed.sequence) but the checkpoint says #\(checkpoint.sequence) was written: the chain was truncated")
        }
        let headSequence = outcome.problem == nil || skipped ? outcome.committed.sequence : (head?.sequence ?? 0)
        return VerificationResult(records: outcome.records, segments: outcome.segments.count,
                                  headSequence: headSequence, headHash: head.map { Hex.encode($0.hash) },
                                  damage: damage, skippedInFlightTail: skipped)
    }

    /// Calls `visit` for each matching intact record in journal order. Throws `corrupt` after
    /// the last readable record when the journal is damaged (a write in progress by a running
    /// node is not damage and is skipped).
    public func records(matching query: JournalQuery, _ visit: (StoredRecord) throws -> Void) throws {
        var types: [String: String] = [:]
        let outcome = try ChainWalk(directory: directory, hashFrom: .max, maxBody: Journal.maxAppendBytes).run { _, position, record, _ in
            if query.signalType != nil, case .received(let r) = record { types[r.signalID] = r.signalType }
            if let kind = query.kind, record.kind != kind { return }
            if let id = query.signalID, record.signalID != id { return }
            if let org = query.organisation, !record.organisations.contains(org) { return }
            if let type = query.signalType, record.signalID.flatMap({ types[$0] }) != type { return }
            if let since = query.since, record.at < since { return }
            if let until = query.until, record.at > until { return }
            try visit(StoredRecord(position: position, record: record))
        }
        if let problem = outcome.problem, !(problem.tornCompatible && problem.segment == outcome.lastSegment && isOpenByNode()) {
            throw JournalError.corrupt(problem.damage)
        }
    }

    public func records(matching query: JournalQuery) throws -> [StoredRecord] {
        var out: [StoredRecord] = []
        try records(matching: query) { out.append($0) }
        return out
    }

    /// Every decision about signals that name `pseudonym` as data subject: which
    /// organisation received (or was refused) data about the person or address, when, under
    /// which rule and convenant version.
    public func subject(pseudonym: String) throws -> [Disclosure] {
        var signals: [String: Received] = [:]
        var found: [Disclosure] = []
        var where_: [String: Int] = [:]
        try records(matching: JournalQuery()) { stored in
            switch stored.record {
            case .received(let r) where r.subjectPseudonyms.contains(pseudonym):
                signals[r.signalID] = r
            case .decision(let d):
                guard let r = signals[d.signalID] else { return }
                where_[d.signalID + "\u{0}" + d.recipientID] = found.count
                found.append(Disclosure(signalID: d.signalID, signalType: r.signalType, senderID: r.senderID, recipientID: d.recipientID,
                                        receivedAt: r.at, decidedAt: d.at, outcome: d.allowed ? .pending : .denied, deliveredAt: nil,
                                        ruleID: d.ruleID, convenantID: d.convenantID, convenantVersion: d.convenantVersion,
                                        processingActivity: d.processingActivity, fieldsDelivered: d.allowed ? d.fieldsDelivered : [],
                                        reasonCode: d.reasonCode))
            case .delivered(let d):
                if let i = where_[d.signalID + "\u{0}" + d.recipientID] { found[i] = found[i].with(.delivered, at: d.at) }
            case .expired(let e):
                if let i = where_[e.signalID + "\u{0}" + e.recipientID] { found[i] = found[i].with(.expired, at: nil) }
            default:
                break
            }
        }
        return found
    }

    /// Writes the journal as Logboek Dataverwerkingen records, one JSON object per line and
    /// one line per action per data subject. See docs/JOURNAL.md for the mapping.
    public func exportLogboek(_ emit: (String) throws -> Void) throws {
        try withoutActuallyEscaping(emit) { emit in
            var exporter = LogboekExporter(emit: emit)
            try records(matching: JournalQuery()) { try exporter.add($0) }
            try exporter.finish()
        }
    }

    /// True when a node holds the journal open (its write lock is taken).
    private func isOpenByNode() -> Bool {
        let fd = open(directory + "/lock", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return true
    }
}

extension Disclosure {
    fileprivate func with(_ outcome: Outcome, at: Date?) -> Disclosure {
        Disclosure(signalID: signalID, signalType: signalType, senderID: senderID, recipientID: recipientID,
                   receivedAt: receivedAt, decidedAt: decidedAt, outcome: outcome, deliveredAt: at, ruleID: ruleID,
                   convenantID: convenantID, convenantVersion: convenantVersion, processingActivity: processingActivity,
                   fieldsDelivered: fieldsDelivered, reasonCode: reasonCode)
    }
}

/// RFC 3339 UTC timestamps with milliseconds, from one shared formatter.
struct TimestampFormatter: Sendable {
    private static let lock = NSLock()
    nonisolated(unsafe) private static let formatter: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    func string(_ date: Date) -> String {
        Self.lock.lock()
        defer { Self.lock.unlock() }
        return Self.formatter.string(from: date)
    }
}
