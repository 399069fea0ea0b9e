import Foundation
import WaakvlamCore
import WaakvlamJournal

// `waakvlam journal verify|query|subject|export --state DIR`: reads a node's journal
// offline. Exit status: 0 done (verify: intact), 1 verify found damage, 2 usage or setup error.

private let journalUsage = """
usage: waakvlam journal <command> --state DIR [options]

  verify                          re-hash the whole chain; exit 1 naming the first bad record
  query [--signal ID] [--org ID] [--type SIGNALTYPE] [--kind RECORDKIND]
        [--since TIME] [--until TIME] [--json]
                                  list records (TIME: 2026-11-21 or 2026-11-21T10:00:00Z)
  subject --bsn NUMBER | --name SURNAME --birthdate YYYY-MM-DD --postcode P
        | --address POSTCODE HOUSENUMBER [ADDITION] | --pseudonym P   [--json]
                                  who received data about this person or address (access
                                  request); give "-" as the BSN to read it from stdin
  export --format logboek         Logboek Dataverwerkingen JSON lines on stdout

DIR is the node's state folder (it holds journal/ and secret).
"""

func runJournalCommand(_ arguments: [String]) -> Int32 {
    guard let command = arguments.first else { return journalUsageError("give a command") }
    do {
        let options = try JournalCommandOptions(Array(arguments.dropFirst()))
        switch command {
        case "verify": return try journalVerify(options)
        case "query": return try journalQuery(options)
        case "subject": return try journalSubject(options)
        case "export": return try journalExport(options)
        case "help", "--help", "-h":
            print(journalUsage)
            return 0
        default: return journalUsageError("unknown journal command '\(command)'")
        }
    } catch let error as JournalCommandOptions.UsageError {
        return journalUsageError(error.message)
    } catch {
        FileHandle.standardError.write(Data("waakvlam journal: \(error)\n".utf8))
        return 2
    }
}

private func journalUsageError(_ message: String) -> Int32 {
    FileHandle.standardError.write(Data("waakvlam journal: \(message)\n\n\(journalUsage)\n".utf8))
    return 2
}

/// Flags as `--name value...`; values run until the next flag (for `--address P N A`).
private struct JournalCommandOptions {
    struct UsageError: Error { let message: String }

    private var values: [String: [String]] = [:]

    init(_ arguments: [String]) throws {
        var current: String?
        for argument in arguments {
            if argument.hasPrefix("--") {
                current = argument
                guard values[argument] == nil else { throw UsageError(message: "\(argument) is given twice") }
                values[argument] = []
            } else if let flag = current {
                values[flag, default: []].append(argument)
            } else {
                throw UsageError(message: "unexpected argument '\(argument)'")
            }
        }
    }

    func has(_ flag: String) -> Bool { values[flag] != nil }

    func list(_ flag: String) -> [String]? { values[flag] }

    func value(_ flag: String) throws -> String? {
        guard let v = values[flag] else { return nil }
        guard v.count == 1 else { throw UsageError(message: "\(flag) takes one value") }
        return v[0]
    }

    func check(allowed: Set<String>) throws {
        for flag in values.keys where !allowed.contains(flag) {
            throw UsageError(message: "unknown option \(flag) for this command")
        }
        for (flag, v) in values where v.isEmpty && flag != "--json" {
            throw UsageError(message: "\(flag) needs a value")
        }
    }

    func reader() throws -> JournalReader {
        guard let state = try value("--state") else { throw UsageError(message: "give the node's state folder with --state DIR") }
        return try JournalReader(directory: Journal.directory(inState: state))
    }

    func time(_ flag: String) throws -> Date? {
        guard let text = try value(flag) else { return nil }
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime],
                                                      [.withFullDate]] {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return date }
        }
        throw UsageError(message: "\(flag) '\(text)' is not a time; use 2026-11-21 or 2026-11-21T10:00:00Z")
    }
}

private let timestamps: ISO8601DateFormatter = {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f
}()

private func journalVerify(_ options: JournalCommandOptions) throws -> Int32 {
    try options.check(allowed: ["--state"])
    let result = try options.reader().verify()
    if let damage = result.damage {
        print("journal DAMAGED: first bad record: \(damage)")
        print("\(result.records) records before it are intact.")
        return 1
    }
    print("journal intact: \(result.records) records in \(result.segments) segment(s); head #\(result.headSequence) sha256 \(result.headHash ?? "-")")
    if result.skippedInFlightTail {
        print("(the running node was writing; its last, not yet durable write was not checked)")
    }
    return 0
}

private func journalQuery(_ options: JournalCommandOptions) throws -> Int32 {
    try options.check(allowed: ["--state", "--signal", "--org", "--type", "--kind", "--since", "--until", "--json"])
    var query = JournalQuery(signalID: try options.value("--signal"), organisation: try options.value("--org"),
                             signalType: try options.value("--type"), since: try options.time("--since"),
                             until: try options.time("--until"))
    if let kind = try options.value("--kind") {
        guard let k = JournalRecord.Kind(name: kind) else {
            throw JournalCommandOptions.UsageError(
                message: "--kind must be one of \(JournalRecord.Kind.allCases.map(\.name).joined(separator: ", "))")
        }
        query.kind = k
    }
    let json = options.has("--json")
    let out = LineWriter()
    var count = 0
    try options.reader().records(matching: query) { stored in
        count += 1
        out.write(json ? try jsonLine(stored.jsonObject) : describe(stored))
    }
    out.flush()
    if !json { FileHandle.standardError.write(Data("\(count) record(s)\n".utf8)) }
    return 0
}

private func describe(_ stored: StoredRecord) -> String {
    let head = "#\(stored.position.sequence)  \(timestamps.string(from: stored.record.at))  \(stored.record.kind.name)"
    switch stored.record {
    case .received(let r):
        return "\(head)  \(r.signalID)  \(r.signalType) from \(r.senderID) to \(r.requestedRecipients.joined(separator: ","))  subjects=\(r.subjectPseudonyms.count) trace=\(r.traceID)"
    case .decision(let d):
        var text = "\(head)  \(d.signalID) -> \(d.recipientID)  \(d.allowed ? "allowed" : "denied")"
        if let code = d.reasonCode { text += " (\(code))" }
        if let rule = d.ruleID { text += "  rule=\(rule)" }
        if let c = d.convenantID { text += "  convenant=\(c)" + (d.convenantVersion.map { "@\($0)" } ?? "") }
        if d.allowed { text += "  fields=\(d.fieldsDelivered.joined(separator: ","))  mode=\(d.deliveryMode?.rawValue ?? "push")" }
        if d.sealed != nil { text += "  payload=sealed" }
        return text
    case .attempt(let a):
        return "\(head)  \(a.signalID) -> \(a.recipientID)  attempt \(a.attempt): \(a.outcome)"
            + (a.nextAttemptAt.map { "  next \(timestamps.string(from: $0))" } ?? "  no retry")
    case .delivered(let d):
        return "\(head)  \(d.signalID) -> \(d.recipientID)  via \(d.via.rawValue)"
    case .expired(let e):
        return "\(head)  \(e.signalID) -> \(e.recipientID)"
    case .feedback(let f):
        return "\(head)  \(f.signalID) <- \(f.fromID)  \(f.status)  fields=\(f.fieldsForwarded.joined(separator: ","))"
    case .payloadPurged(let p):
        return "\(head)  \(p.signalID) -> \(p.recipientID)"
    case .configApplied(let c):
        return "\(head)  version \(c.version) by \(c.appliedBy): \(c.summary)"
    }
}

private func journalSubject(_ options: JournalCommandOptions) throws -> Int32 {
    try options.check(allowed: ["--state", "--bsn", "--name", "--birthdate", "--postcode", "--address", "--pseudonym", "--json"])
    let reader = try options.reader()
    let pseudonym: String
    if let given = try options.value("--pseudonym") {
        pseudonym = given
    } else {
        // The same canonical strings as the policy engine computes from a payload.
        let canonical: String?
        if var bsn = try options.value("--bsn") {
            if bsn == "-" { bsn = readLine(strippingNewline: true) ?? "" }
            canonical = SubjectKeys.person(bsn: bsn.filter { !$0.isWhitespace })
            if canonical == nil { throw JournalCommandOptions.UsageError(message: "--bsn needs a BSN of 9 digits that passes the elfproef") }
        } else if let name = options.list("--name") {
            guard let birthdate = try options.value("--birthdate"), let postcode = try options.value("--postcode") else {
                throw JournalCommandOptions.UsageError(message: "--name needs --birthdate YYYY-MM-DD and --postcode too")
            }
            canonical = SubjectKeys.person(surname: name.joined(separator: " "), birthDate: birthdate, postcode: postcode)
            if canonical == nil { throw JournalCommandOptions.UsageError(message: "give the birth date as YYYY-MM-DD and a postcode like 1621AB") }
        } else if let address = options.list("--address") {
            guard (2...3).contains(address.count) else {
                throw JournalCommandOptions.UsageError(message: "--address takes POSTCODE HOUSENUMBER [ADDITION]")
            }
            canonical = SubjectKeys.address(postcode: address[0], houseNumber: address[1], addition: address.count == 3 ? address[2] : nil)
            if canonical == nil { throw JournalCommandOptions.UsageError(message: "give a postcode like 1621AB and a house number like 12") }
        } else {
            throw JournalCommandOptions.UsageError(message: "give --bsn, --name, --address or --pseudonym")
        }
        guard let state = try options.value("--state"), let canonical else { return 2 }
        pseudonym = try Pseudonymizer(stateDirectory: state, create: false).pseudonym(canonical)
    }
    let disclosures = try reader.subject(pseudonym: pseudonym)
    if options.has("--json") {
        let out = LineWriter()
        for d in disclosures {
            var o: [String: Any] = [
                "signal_id": d.signalID, "signal_type": d.signalType, "sender_id": d.senderID, "recipient_id": d.recipientID,
                "received_at": timestamps.string(from: d.receivedAt), "decided_at": timestamps.string(from: d.decidedAt),
                "outcome": d.outcome.rawValue, "fields_delivered": d.fieldsDelivered, "data_subject_id": pseudonym,
            ]
            o["delivered_at"] = d.deliveredAt.map { timestamps.string(from: $0) }
            o["rule_id"] = d.ruleID
            o["convenant_id"] = d.convenantID
            o["convenant_version"] = d.convenantVersion
            o["processing_activity"] = d.processingActivity
            o["reason_code"] = d.reasonCode
            out.write(try jsonLine(o))
        }
        out.flush()
        return 0
    }
    print("data subject \(pseudonym)")
    let shared = disclosures.filter { $0.outcome != .denied }
    print("\(shared.count) disclosure(s) to organisations, \(disclosures.count - shared.count) refused")
    for d in disclosures {
        var line = "\(timestamps.string(from: d.decidedAt))  \(d.recipientID)  "
        switch d.outcome {
        case .delivered: line += "received it " + (d.deliveredAt.map { timestamps.string(from: $0) } ?? "")
        case .pending: line += "not yet delivered"
        case .expired: line += "never delivered (expired)"
        case .denied: line += "refused (\(d.reasonCode ?? "denied"))"
        }
        line += "  signal \(d.signalID) (\(d.signalType) from \(d.senderID))"
        if let rule = d.ruleID { line += "  rule \(rule)" }
        if let c = d.convenantID { line += "  convenant \(c)" + (d.convenantVersion.map { " version \($0)" } ?? "") }
        if !d.fieldsDelivered.isEmpty { line += "  fields \(d.fieldsDelivered.joined(separator: ", "))" }
        print(line)
    }
    return 0
}

private func journalExport(_ options: JournalCommandOptions) throws -> Int32 {
    try options.check(allowed: ["--state", "--format"])
    guard try options.value("--format") == "logboek" else {
        throw JournalCommandOptions.UsageError(message: "give --format logboek (the only export format)")
    }
    let out = LineWriter()
    try options.reader().exportLogboek { out.write($0) }
    out.flush()
    return 0
}

private func jsonLine(_ object: [String: Any]) throws -> String {
    String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
}

/// Buffered lines to stdout.
private final class LineWriter {
    private var buffer: [UInt8] = []

    func write(_ line: String) {
        buffer += line.utf8
        buffer.append(10)
        if buffer.count >= 1 << 16 { flush() }
    }

    func flush() {
        FileHandle.standardOutput.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }
}
