import Foundation
import WaakvlamCrypto

/// Walks a journal folder's segments in order, checking what holds the journal together:
/// segment numbering and headers, record checksums, sequence numbers, and (from a chosen
/// sequence on) the hash chain. Recovery, verification and queries all read through it.
struct ChainWalk {
    /// What stopped a walk. `tornCompatible` problems are the kind a crash in the middle of
    /// a write leaves behind at the end of the last segment (a short or checksum-failing
    /// record, an incomplete segment header); anything else is damage or tampering.
    struct Problem: Error {
        let damage: JournalDamage
        let segment: UInt32
        let offset: UInt64
        let tornCompatible: Bool
        /// The segment's header itself is unusable.
        let inHeader: Bool
    }

    /// The point after the last complete append: where the next write goes (`segment`,
    /// `endOffset`, which moves to an empty segment's start) and the last record itself.
    struct Committed {
        var segment: UInt32 = 0
        var endOffset: UInt64 = 0
        var sequence: UInt64 = 0
        /// Where the record `sequence` ends (it may lie in an earlier segment than `segment`).
        var recordSegment: UInt32 = 0
        var recordEnd: UInt64 = 0
        /// Known when the record was hashed (at or after `hashFrom`).
        var hash: [UInt8]?
    }

    struct Outcome {
        var segments: [UInt32] = []
        var segmentSizes: [UInt32: UInt64] = [:]
        var committed = Committed()
        /// Records seen past `committed` (of an append that did not finish).
        var uncommittedRecords = 0
        var records: UInt64 = 0
        var hashedRecords: UInt64 = 0
        var problem: Problem?
        var lastSegment: UInt32? { segments.last }
    }

    let directory: String
    /// Records with a sequence at or after this one are hashed and their chain checked.
    let hashFrom: UInt64
    let maxBody: Int
    /// How much of each record `run` decodes for its visitor.
    var detail: JournalRecord.Detail = .full

    /// Walks everything, calling `visit` for each intact record (complete appends and the
    /// records of an unfinished one alike; `FrameView.endsAppend` tells them apart). `hash`
    /// is the record's chain hash when it was computed.
    func run(_ visit: (FrameView, RecordPosition, JournalRecord, [UInt8]?) throws -> Void) throws -> Outcome {
        var outcome = Outcome()
        outcome.segments = try listSegments(directory: directory)
        var expectedSequence: UInt64 = 1
        var previousHash: [UInt8]? = hashFrom <= 1 ? [UInt8](repeating: 0, count: 32) : nil
        let hasher = SHA256Context()

        func fail(_ segment: UInt32, _ offset: UInt64, _ sequence: UInt64?, _ reason: String,
                  torn: Bool = false, header: Bool = false) -> Outcome {
            outcome.problem = Problem(damage: JournalDamage(segment: Segment.fileName(segment), offset: offset,
                                                            sequence: sequence, reason: reason),
                                      segment: segment, offset: offset, tornCompatible: torn, inHeader: header)
            return outcome
        }

        for (i, number) in outcome.segments.enumerated() {
            let expectedNumber = UInt32(i + 1)
            guard number == expectedNumber else {
                return fail(expectedNumber, 0, expectedSequence,
                            "segment \(Segment.fileName(expectedNumber)) is missing (next present is \(Segment.fileName(number)))")
            }
            let reader = try SegmentReader(path: directory + "/" + Segment.fileName(number))
            outcome.segmentSizes[number] = reader.size
            switch try reader.readHeader() {
            case .failure(let problem):
                return fail(number, 0, expectedSequence, problem.reason,
                            torn: problem.torn || reader.size <= UInt64(Segment.headerSize), header: true)
            case .success(let header):
                guard header.number == number else {
                    return fail(number, 0, expectedSequence,
                                "segment header says it is \(Segment.fileName(header.number)): a segment file was renamed or copied")
                }
                guard header.firstSequence == expectedSequence else {
                    return fail(number, 0, expectedSequence,
                                "segment starts at record #\(header.firstSequence) but #\(expectedSequence) comes next: records are missing or out of order")
                }
            }
            if outcome.uncommittedRecords > 0 {
                return fail(number - 1, outcome.committed.endOffset, outcome.committed.sequence + 1,
                            "the segment ends inside an append: a record is missing")
            }
            var stop: Problem?
            let scanProblem = try reader.scan(from: UInt64(Segment.headerSize), maxBody: maxBody) { frame in
                guard stop == nil else { return }
                let sequence = frame.sequence
                guard sequence == expectedSequence else {
                    let reason = sequence < expectedSequence
                        ? "record #\(sequence) appears again or out of order (expected #\(expectedSequence))"
                        : "record #\(sequence) follows #\(expectedSequence - 1): records #\(expectedSequence)...#\(sequence - 1) are missing"
                    stop = fail(number, UInt64(frame.offset), expectedSequence, reason).problem
                    return
                }
                var hash: [UInt8]?
                if sequence >= hashFrom {
                    if let previousHash, !frame.previousHash.elementsEqual(previousHash) {
                        stop = fail(number, UInt64(frame.offset), sequence,
                                    "the hash chain is broken: the record does not name the hash of record #\(sequence - 1) (a record before it was changed, removed or reordered)").problem
                        return
                    }
                    hash = frame.hash(hasher)
                    outcome.hashedRecords += 1
                }
                previousHash = hash
                guard let record = frame.decode(detail) else {
                    stop = fail(number, UInt64(frame.offset), sequence,
                                "the record's checksum is right but its content does not decode (kind \(frame.kind))").problem
                    return
                }
                let position = RecordPosition(segment: number, offset: frame.offset, sequence: sequence)
                try visit(frame, position, record, hash)
                outcome.records += 1
                expectedSequence += 1
                if frame.endsAppend {
                    outcome.committed = Committed(segment: number, endOffset: UInt64(frame.end), sequence: sequence,
                                                  recordSegment: number, recordEnd: UInt64(frame.end), hash: hash)
                    outcome.uncommittedRecords = 0
                } else {
                    outcome.uncommittedRecords += 1
                }
            }
            if let stop {
                outcome.problem = stop
                return outcome
            }
            if let scanProblem {
                return fail(number, scanProblem.offset, expectedSequence, scanProblem.reason, torn: scanProblem.torn)
            }
            if outcome.committed.segment != number, outcome.uncommittedRecords == 0 {
                // An empty segment (just rotated): the commit point moves to its start.
                outcome.committed.segment = number
                outcome.committed.endOffset = UInt64(Segment.headerSize)
            }
        }
        if outcome.uncommittedRecords > 0, let last = outcome.lastSegment {
            return fail(last, outcome.committed.segment == last ? outcome.committed.endOffset : UInt64(Segment.headerSize),
                        outcome.committed.sequence + 1,
                        "the journal ends inside an append (\(outcome.uncommittedRecords) record(s) without the append's last record)",
                        torn: true)
        }
        return outcome
    }
}
