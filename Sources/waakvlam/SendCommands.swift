import Foundation
import WaakvlamCore
import WaakvlamRelay

// `waakvlam send`: the partner-side client. One signal from a payload file, or a batch of
// Vroeg Eropaf arrears alerts from a rent-ledger CSV (docs/VROEG-EROPAF.md).

private let sendUsage = """
usage:
  waakvlam send CONNECTION --type TYPE [--to ORG ...] [--route-by-address] --payload FILE [--id ID]
  waakvlam send CONNECTION --csv FILE [--mapping FILE] [--report FILE] [--concurrency N] [--quiet]
  waakvlam send --csv FILE --check [--mapping FILE] [--report FILE]
  waakvlam send --print-mapping

CONNECTION: --client-config FILE (JSON: node, cert, key, ca; paths relative to the file)
            and/or --node https://host:port --cert FILE --key FILE --ca FILE (flags win)

One signal: prints the node's answer; exit 1 when the node refuses (4xx/5xx).
--csv: arrears alerts (betalingsachterstand) from a rent-ledger export, routed to the
  gemeente of each tenant's address. Every row is checked first; a bad row is reported and
  the others go on. Ids come from (corporation, tenant reference, arrears start), so sending
  the same file again sends nothing twice. The per-row report (CSV) goes to --report FILE or
  stdout, progress and the summary to stderr. --check only checks the file (no connection).
  --mapping FILE maps other column names; --print-mapping prints the default to start from.
Exit status: 0 all rows sent (or sent before), 1 a row was refused or failed, or the node
refused the signal, 2 a usage, file or connection problem (nothing sent).
"""

private func sendError(_ text: String) {
    FileHandle.standardError.write(Data("waakvlam send: \(text)\n".utf8))
}

private func standardError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}

private struct SendOptions {
    var settings = ClientSettings()
    var clientConfig: String?
    var type: String?
    var to: [String] = []
    var routeByAddress = false
    var payload: String?
    var id: String?
    var csv: String?
    var mapping: String?
    var report: String?
    var concurrency = 8
    var quiet = false
    var check = false
    var printMapping = false
}

func runSendCommand(_ arguments: [String]) -> Int32 {
    var options = SendOptions()
    var rest = arguments
    while !rest.isEmpty {
        let argument = rest.removeFirst()
        func value() -> String? { rest.isEmpty ? nil : rest.removeFirst() }
        var missingValue = false
        switch argument {
        case "--client-config": if let text = value() { options.clientConfig = text } else { missingValue = true }
        case "--node": if let text = value() { options.settings.node = text } else { missingValue = true }
        case "--cert": if let text = value() { options.settings.certificate = text } else { missingValue = true }
        case "--key": if let text = value() { options.settings.key = text } else { missingValue = true }
        case "--ca": if let text = value() { options.settings.ca = text } else { missingValue = true }
        case "--type": if let text = value() { options.type = text } else { missingValue = true }
        case "--to": if let text = value() { options.to.append(text) } else { missingValue = true }
        case "--route-by-address": options.routeByAddress = true
        case "--payload": if let text = value() { options.payload = text } else { missingValue = true }
        case "--id": if let text = value() { options.id = text } else { missingValue = true }
        case "--csv": if let text = value() { options.csv = text } else { missingValue = true }
        case "--mapping": if let text = value() { options.mapping = text } else { missingValue = true }
        case "--report": if let text = value() { options.report = text } else { missingValue = true }
        case "--concurrency":
            guard let text = value(), let number = Int(text), (1...64).contains(number) else {
                sendError("--concurrency needs a number from 1 to 64")
                return 2
            }
            options.concurrency = number
        case "--quiet": options.quiet = true
        case "--check": options.check = true
        case "--print-mapping": options.printMapping = true
        case "--help", "-h":
            print(sendUsage)
            return 0
        default:
            sendError("unexpected argument '\(argument)'\n\n" + sendUsage)
            return 2
        }
        if missingValue {
            sendError("\(argument) needs a value\n\n" + sendUsage)
            return 2
        }
    }
    if options.printMapping {
        print(LedgerMapping.standard.json, terminator: "")
        return 0
    }
    if options.csv != nil {
        guard options.type == nil, options.payload == nil, options.to.isEmpty, !options.routeByAddress, options.id == nil else {
            sendError("--csv sends arrears alerts routed by address; leave out --type, --to, --route-by-address, --payload and --id")
            return 2
        }
        return sendLedger(options)
    }
    guard !options.check else {
        sendError("--check goes with --csv FILE")
        return 2
    }
    return sendOne(options)
}

private func makeClient(_ options: SendOptions) -> SignalClient? {
    do {
        var settings = options.settings
        if let file = options.clientConfig {
            settings = settings.filled(from: try ClientSettings.load(file: file))
        }
        return try SignalClient(settings: settings, connections: options.concurrency)
    } catch {
        sendError("\(error)")
        return nil
    }
}

// MARK: - One signal

private func sendOne(_ options: SendOptions) -> Int32 {
    guard let type = options.type, let payloadFile = options.payload else {
        sendError("give --type TYPE and --payload FILE for one signal, or --csv FILE for a ledger\n\n" + sendUsage)
        return 2
    }
    guard !options.to.isEmpty || options.routeByAddress else {
        sendError("name a recipient: --to ORG (an organisation id or OIN, repeatable) and/or --route-by-address")
        return 2
    }
    if let id = options.id, !SignalSubmission.isValidID(id) {
        sendError("--id must be \(SignalSubmission.idRule)")
        return 2
    }
    guard let data = FileManager.default.contents(atPath: payloadFile) else {
        sendError("cannot read the payload file \(payloadFile)")
        return 2
    }
    let payload: [String: PayloadValue]
    switch Payload.parse(data) {
    case .success(let values): payload = values
    case .failure(let invalid):
        sendError("\(payloadFile): " + invalid.issues.map(\.description).joined(separator: "; "))
        return 2
    }
    guard let client = makeClient(options) else { return 2 }
    let signal = OutgoingSignal(id: options.id ?? UUID().uuidString.lowercased(), type: type, to: options.to,
                                routeByAddress: options.routeByAddress, payload: payload)
    let answer: SignalAnswer
    do {
        answer = try client.submit(signal)
    } catch {
        sendError("\(error)")
        return 2
    }
    let body = Data(answer.body)
    if let object = try? JSONSerialization.jsonObject(with: body),
       let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]) {
        print(String(decoding: pretty, as: UTF8.self))
    } else if !body.isEmpty {
        print(String(decoding: body, as: UTF8.self))
    }
    if answer.isEarlierAnswer {
        sendError("note: the node already had signal \(signal.id) with this content; this is its first answer, nothing was sent again")
    }
    guard answer.status < 400 else {
        let problem = answer.problem
        sendError("HTTP \(answer.status) \(problem?.code ?? ""): \(problem.map { [$0.field, $0.message].compactMap { $0 }.joined(separator: ": ") } ?? "")")
        for recipient in answer.recipients where !recipient.allowed {
            sendError("  \(recipient.recipient): \(recipient.code ?? "denied"): \(recipient.message ?? "")")
        }
        return 1
    }
    return 0
}

// MARK: - Ledger batch

private func sendLedger(_ options: SendOptions) -> Int32 {
    let csvPath = options.csv!
    guard let data = FileManager.default.contents(atPath: csvPath) else {
        sendError("cannot read the ledger file \(csvPath)")
        return 2
    }
    let timeZone = TimeZone(identifier: "Europe/Amsterdam")!
    let today = LocalDate(Date(), in: timeZone)
    let table: CSVTable
    let entries: [LedgerEntry]
    do {
        var mapping = LedgerMapping.standard
        if let mappingPath = options.mapping {
            guard let mappingData = FileManager.default.contents(atPath: mappingPath) else {
                sendError("cannot read the mapping file \(mappingPath)")
                return 2
            }
            mapping = try LedgerMapping.parse(mappingData)
        }
        table = try CSVTable.parse(data)
        entries = try Ledger.read(table, mapping: mapping, today: today)
    } catch {
        sendError("\(csvPath): \(error)")
        return 2
    }
    let results: [LedgerRowResult]
    let started = Date()
    if options.check {
        results = entries.compactMap(LedgerSender.localResult)
        let ready = entries.count - results.count
        let summary = "\(entries.count) rows: \(ready) ready to send, \(results.filter(\.outcome.isFailure).count) refused in the file check, "
            + "\(results.filter { $0.outcome == .duplicate }.count) duplicate\n"
        guard writeReport(results, options: options, delimiter: table.delimiter) else { return 2 }
        standardError(summary)
        return results.contains(where: \.outcome.isFailure) ? 1 : 0
    }
    guard let client = makeClient(options) else { return 2 }
    let corporation: (id: String, oin: String, name: String)
    do {
        corporation = try client.whoami()
    } catch {
        sendError("\(error)")
        return 2
    }
    if !options.quiet {
        standardError("sending \(entries.count) rows of \(csvPath) as \(corporation.name) (\(corporation.oin)) to \(options.settings.node ?? "the node")\n")
    }
    let sender = LedgerSender(client: client, corporation: corporation.oin, concurrency: options.concurrency,
                              today: today, timeZone: timeZone)
    let progress = ProgressLine(enabled: !options.quiet)
    results = sender.send(entries, progressInterval: 0.25) { progress.show($0) }
    progress.end()
    guard writeReport(results, options: options, delimiter: table.delimiter) else { return 2 }
    standardError(LedgerReport.summary(results, elapsed: Date().timeIntervalSince(started)))
    return results.contains(where: \.outcome.isFailure) ? 1 : 0
}

private func writeReport(_ results: [LedgerRowResult], options: SendOptions, delimiter: UInt8) -> Bool {
    let text = LedgerReport.csv(results, delimiter: delimiter)
    guard let path = options.report else {
        print(text, terminator: "")
        return true
    }
    do {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return true
    } catch {
        sendError("cannot write the report to \(path): \(error.localizedDescription)")
        return false
    }
}

/// `rows done/total, rate` on stderr: rewritten in place on a terminal, a line every five
/// seconds otherwise (a log file).
private final class ProgressLine {
    private let enabled: Bool
    private let terminal = isatty(STDERR_FILENO) == 1
    private var lastLine = Date.distantPast
    private var shown = false

    init(enabled: Bool) {
        self.enabled = enabled
    }

    func show(_ progress: LedgerProgress) {
        guard enabled, progress.total > 0 else { return }
        let text = "rows \(progress.done)/\(progress.total)  \(Int(progress.rate.rounded())) rows/s  \(progress.failures) refused or failed"
        if terminal {
            standardError("\r" + text + "\u{1B}[K")
            shown = true
        } else if Date().timeIntervalSince(lastLine) >= 5 || progress.done == progress.total {
            standardError(text + "\n")
            lastLine = Date()
        }
    }

    func end() {
        if shown { standardError("\n") }
    }
}
