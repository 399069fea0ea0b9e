import WaakvlamSystem

/// Where a journal is damaged: the file, the byte offset in it, the sequence number the
/// record there has or should have, and what is wrong.
public struct JournalDamage: Equatable, Sendable, CustomStringConvertible {
    public let segment: String
    public let offset: UInt64
    public let sequence: UInt64?
    public let reason: String

    public init(segment: String, offset: UInt64, sequence: UInt64?, reason: String) {
        self.segment = segment
        self.offset = offset
        self.sequence = sequence
        self.reason = reason
    }

    public var description: String {
        let record = sequence.map { "record #\($0)" } ?? "data"
        return "\(record) in \(segment) at offset \(offset): \(reason)"
    }
}

/// Everything that can go wrong with the journal. `diskFull` and `unavailable` are transient
/// (the server answers 503 and nothing is acknowledged); the others need a person.
public enum JournalError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The disk or quota is full; the append was not made durable. Appends work again once
    /// space is freed.
    case diskFull(String)
    /// A write or sync failed for another reason; the append was not made durable.
    case unavailable(String)
    /// The journal was closed.
    case closed
    /// Another process has the journal open for writing.
    case locked(String)
    /// The journal's files are damaged in a way recovery must not repair silently.
    case corrupt(JournalDamage)
    /// The caller passed a record the journal cannot store (too large, empty batch, ...).
    case invalidRecord(String)
    /// A state folder, secret or argument is not usable; the message says what to fix.
    case invalidSetup(String)

    public var description: String {
        switch self {
        case .diskFull(let why):
            "the journal's disk is full (\(why)); free space in the state folder, appends resume by themselves"
        case .unavailable(let why):
            "the journal cannot write (\(why))"
        case .closed:
            "the journal is closed"
        case .locked(let why):
            why
        case .corrupt(let damage):
            "the journal is damaged: \(damage); run `waakvlam journal verify` and restore the damaged file from a backup"
        case .invalidRecord(let why):
            "record not stored: \(why)"
        case .invalidSetup(let why):
            why
        }
    }

    /// Maps an I/O failure while writing: disk full is told apart from other failures.
    static func writing(_ error: Error) -> JournalError {
        if let journalError = error as? JournalError { return journalError }
        if let system = error as? SystemError {
            return system.isOutOfSpace ? .diskFull(system.description) : .unavailable(system.description)
        }
        return .unavailable(String(describing: error))
    }
}
