import Foundation
import WaakvlamCore

/// What happened to one row of a ledger file.
public struct LedgerRowResult: Sendable, Equatable {
    public enum Outcome: String, Sendable, CaseIterable {
        /// Accepted now for the gemeente(s) in `recipients`.
        case sent
        /// The node had this arrears episode from an earlier run and allowed it then: nothing
        /// was sent again.
        case alreadySent = "already-sent"
        /// Same as an earlier row of the file; sent once, for that row.
        case duplicate
        /// Not sent: refused in the file check or by the node (`code`, `reason`).
        case refused
        /// Not sent because of a technical problem (node unreachable, 503, unexpected answer);
        /// sending the file again is safe.
        case failed

        /// Whether the row needs attention (the exit status is non-zero).
        public var isFailure: Bool { self == .refused || self == .failed }
    }

    public var row: Int
    public var tenant: String
    public var outcome: Outcome
    /// The id under which the node knows this row's signal.
    public var signalID: String?
    /// Sent (or sent earlier) to these organisations; for a refusal by the node, the one that
    /// refused.
    public var recipients: [String]
    public var code: String?
    public var reason: String?

    public init(row: Int, tenant: String, outcome: Outcome, signalID: String? = nil, recipients: [String] = [],
                code: String? = nil, reason: String? = nil) {
        self.row = row
        self.tenant = tenant
        self.outcome = outcome
        self.signalID = signalID
        self.recipients = recipients
        self.code = code
        self.reason = reason
    }
}

/// Rows done so far, for a progress line.
public struct LedgerProgress: Sendable, Equatable {
    public var done: Int
    public var total: Int
    public var elapsed: TimeInterval
    public var failures: Int

    public var rate: Double { elapsed > 0 ? Double(done) / elapsed : 0 }
}

/// Sends the alerts of a ledger file, several at a time over keep-alive connections, and
/// tells per row what became of it.
///
/// Each arrears episode (corporation, tenant, arrears start) has a fixed signal id, and the
/// node answers a known id with its first answer. So a row sent before comes back as
/// `already-sent` (the answer carries the trace of the earlier submission), and a row whose
/// details changed since (a new day's amount) gets 409 and counts as already sent too.
///
/// A refusal must not stick forever (the arrears grow past the threshold, a postcode gets
/// corrected): when the earlier submission of an episode was refused, or expired before the
/// gemeente got it, the row is submitted again under the episode's next id (attempt 1, 2, …)
/// if its details changed or the earlier answer was given on an earlier day. Same file, same
/// day: the earlier answer stands and nothing new is sent.
public final class LedgerSender: @unchecked Sendable {
    private let client: SignalClient
    private let corporation: String
    private let concurrency: Int
    private let today: LocalDate
    private let timeZone: TimeZone

    /// Attempts per episode before giving up (more than a year of daily refusals).
    static let maximumAttempts = 400

    /// - Parameters:
    ///   - corporation: the sender's OIN (from `GET /v1/whoami`), part of every signal id.
    ///   - today: the day of sending in `timeZone`, to tell a refusal of today from an older one.
    public init(client: SignalClient, corporation: String, concurrency: Int = 8, today: LocalDate,
                timeZone: TimeZone = TimeZone(identifier: "Europe/Amsterdam")!) {
        self.client = client
        self.corporation = corporation
        self.concurrency = max(1, concurrency)
        self.today = today
        self.timeZone = timeZone
    }

    /// Sends every alert of `entries` and returns one result per entry, in order. Calls
    /// `progress` on the calling thread every `progressInterval` seconds and once at the end.
    /// When the node cannot be reached after retries, the remaining rows fail without trying.
    public func send(_ entries: [LedgerEntry], progressInterval: TimeInterval = 0.5,
                     progress: ((LedgerProgress) -> Void)? = nil) -> [LedgerRowResult] {
        let batch = Batch(count: entries.count)
        let group = DispatchGroup()
        for _ in 0..<min(concurrency, max(entries.count, 1)) {
            group.enter()
            let worker = Thread {
                while let (index, stopped) = batch.take() {
                    if let stopped {
                        batch.finish(index, Self.result(entries[index], .failed, code: "not_sent", reason: "not sent: \(stopped)"), stop: nil)
                    } else {
                        let (result, unreachable) = self.process(entries[index])
                        batch.finish(index, result, stop: unreachable)
                    }
                }
                group.leave()
            }
            worker.stackSize = 1 << 20
            worker.start()
        }
        while group.wait(timeout: .now() + progressInterval) == .timedOut {
            progress?(batch.progress())
        }
        progress?(batch.progress())
        return batch.results()
    }

    /// The rows of one `send` shared by its workers.
    private final class Batch: @unchecked Sendable {
        private let lock = NSLock()
        private let start = Date()
        private var slots: [LedgerRowResult?]
        private var next = 0, done = 0, failures = 0
        /// Set when the node could not be reached: the rows not yet sent are not tried.
        private var stopReason: String?

        init(count: Int) {
            slots = Array(repeating: nil, count: count)
        }

        /// The next row to do, and the reason to skip it, if any.
        func take() -> (Int, String?)? {
            lock.lock()
            defer { lock.unlock() }
            guard next < slots.count else { return nil }
            next += 1
            return (next - 1, stopReason)
        }

        func finish(_ index: Int, _ result: LedgerRowResult, stop: String?) {
            lock.lock()
            defer { lock.unlock() }
            slots[index] = result
            done += 1
            if result.outcome.isFailure { failures += 1 }
            if stopReason == nil { stopReason = stop }
        }

        func progress() -> LedgerProgress {
            lock.lock()
            defer { lock.unlock() }
            return LedgerProgress(done: done, total: slots.count, elapsed: Date().timeIntervalSince(start), failures: failures)
        }

        func results() -> [LedgerRowResult] {
            lock.lock()
            defer { lock.unlock() }
            return slots.map { $0! }
        }
    }

    /// The result of a row that the file check already decided (refused or duplicate); nil
    /// for a row to send.
    public static func localResult(_ entry: LedgerEntry) -> LedgerRowResult? {
        switch entry.content {
        case .refused(let refusal):
            result(entry, .refused, code: refusal.code, reason: refusal.message)
        case .duplicate(let row):
            result(entry, .duplicate, reason: "same tenant, arrears start and details as row \(row): sent once, for that row")
        case .alert:
            nil
        }
    }

    private static func result(_ entry: LedgerEntry, _ outcome: LedgerRowResult.Outcome, id: String? = nil, recipients: [String] = [],
                               code: String? = nil, reason: String? = nil) -> LedgerRowResult {
        LedgerRowResult(row: entry.row, tenant: entry.tenant, outcome: outcome, signalID: id, recipients: recipients, code: code, reason: reason)
    }

    /// One row; the second value is set when the node could not be reached at all.
    private func process(_ entry: LedgerEntry) -> (LedgerRowResult, String?) {
        guard case .alert(let alert) = entry.content else { return (Self.localResult(entry)!, nil) }
        do {
            return (try submit(entry, alert), nil)
        } catch {
            let reason = "\(error)"
            if case .unreachable = error {
                return (Self.result(entry, .failed, code: "unreachable", reason: reason), reason)
            }
            return (Self.result(entry, .failed, code: "failed", reason: reason), nil)
        }
    }

    private func submit(_ entry: LedgerEntry, _ alert: LedgerAlert) throws(ClientError) -> LedgerRowResult {
        for attempt in 0..<Self.maximumAttempts {
            let id = Ledger.signalID(corporation: corporation, tenant: entry.tenant, arrearsStart: alert.arrearsStart, attempt: attempt)
            let answer = try client.submit(OutgoingSignal(id: id, type: Ledger.signalType, routeByAddress: true, payload: alert.payload))
            let earlier: SignalAnswer
            let changed: Bool
            switch (answer.status, answer.problem?.code) {
            case (202, _), (403, _):
                guard answer.isEarlierAnswer else { return Self.decided(entry, id: id, answer, note: nil) }
                earlier = answer
                changed = false
            case (409, "id_reused_with_other_content"):
                earlier = try client.status(of: id)
                guard earlier.status == 200 else {
                    throw .unexpectedAnswer(status: earlier.status, reason: earlier.problem?.message ?? "no record of signal \(id)")
                }
                changed = true
            case (400, _):
                let problem = answer.problem
                var reason = problem?.message ?? "the node refused the payload"
                if let field = problem?.field, !reason.hasPrefix(field) { reason = "\(field): \(reason)" }
                return Self.result(entry, .refused, id: id, code: problem?.code, reason: reason)
            default:
                return Self.result(entry, .failed, id: id, code: answer.problem?.code ?? "http_\(answer.status)",
                                   reason: "HTTP \(answer.status): \(answer.problem?.message ?? "")")
            }
            // The node knows this id from an earlier run.
            let when = earlier.receivedAtText.map { "received \($0)" } ?? "earlier"
            let live = earlier.recipients.filter { $0.allowed && $0.state != "expired" }.map(\.recipient)
            if !live.isEmpty {
                let note = changed ? "sent earlier (\(when)) with other details, such as a lower amount; not sent again"
                                   : "sent earlier (\(when)); not sent again"
                return Self.result(entry, .alreadySent, id: id, recipients: live, reason: note)
            }
            // Refused, or allowed but expired undelivered: asked again when something changed.
            let decidedToday = earlier.receivedAt.map { LocalDate($0, in: timeZone) == today } ?? true
            if !changed && decidedToday {
                let expired = earlier.allowedRecipients
                guard expired.isEmpty else {
                    return Self.result(entry, .failed, id: id, recipients: expired, code: "expired",
                                       reason: "sent earlier today (\(when)), but the node gave up delivering it; it is sent again on a later day")
                }
                return Self.decided(entry, id: id, earlier, note: "refused earlier today (\(when)) with the same details")
            }
        }
        throw .unexpectedAnswer(status: 409, reason: "this arrears episode was refused \(Self.maximumAttempts) times; correct the row or ask the node's administrator")
    }

    /// A 202 or 403 as a row result: sent to the allowed recipients, or refused with the
    /// first denial.
    private static func decided(_ entry: LedgerEntry, id: String, _ answer: SignalAnswer, note: String?) -> LedgerRowResult {
        if !answer.allowedRecipients.isEmpty {
            let denied = answer.recipients.filter { !$0.allowed }.map { "\($0.recipient) refused: \($0.code ?? "denied")" }
            return result(entry, .sent, id: id, recipients: answer.allowedRecipients,
                          reason: denied.isEmpty ? note : denied.joined(separator: "; "))
        }
        let denial = answer.recipients.first
        let reason = [denial?.message ?? answer.problem?.message, note].compactMap { $0 }.joined(separator: " ")
        return result(entry, .refused, id: id, recipients: denial.map { [$0.recipient] } ?? [],
                      code: denial?.code ?? answer.problem?.code, reason: reason)
    }
}

/// The per-row report and the summary of a ledger run.
public enum LedgerReport {
    public static let columns = ["row", "tenant", "outcome", "recipients", "code", "reason", "signal_id"]

    /// The report as CSV with `delimiter` (use the ledger file's, so that the same
    /// spreadsheet settings open both).
    public static func csv(_ results: [LedgerRowResult], delimiter: UInt8 = UInt8(ascii: ";")) -> String {
        let separator = String(UnicodeScalar(delimiter))
        func quoted(_ text: String) -> String {
            guard text.contains(where: { $0 == "\"" || $0 == "\n" || $0 == "\r" || String($0) == separator }) else { return text }
            return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        var lines = [columns.joined(separator: separator)]
        for result in results {
            let fields = [String(result.row), result.tenant, result.outcome.rawValue, result.recipients.joined(separator: " "),
                          result.code ?? "", result.reason ?? "", result.signalID ?? ""]
            lines.append(fields.map(quoted).joined(separator: separator))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Counts per outcome, per gemeente and per refusal code, and the rate.
    public static func summary(_ results: [LedgerRowResult], elapsed: TimeInterval) -> String {
        var counts: [LedgerRowResult.Outcome: Int] = [:]
        var perRecipient: [String: Int] = [:]
        var perCode: [String: Int] = [:]
        for result in results {
            counts[result.outcome, default: 0] += 1
            if result.outcome == .sent { for recipient in result.recipients { perRecipient[recipient, default: 0] += 1 } }
            if result.outcome.isFailure { perCode[result.code ?? "unknown", default: 0] += 1 }
        }
        func breakdown(_ values: [String: Int]) -> String {
            values.isEmpty ? "" : " (" + values.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"
        }
        let rate = elapsed > 0 ? Double(results.count) / elapsed : 0
        var lines = ["\(results.count) rows in \(String(format: "%.1f", elapsed)) s (\(Int(rate.rounded())) rows/s)"]
        lines.append("  sent:         \(counts[.sent] ?? 0)\(breakdown(perRecipient))")
        lines.append("  already sent: \(counts[.alreadySent] ?? 0)")
        lines.append("  duplicate:    \(counts[.duplicate] ?? 0)")
        lines.append("  refused:      \(counts[.refused] ?? 0)")
        lines.append("  failed:       \(counts[.failed] ?? 0)")
        if !perCode.isEmpty {
            lines.append("  reasons:      " + perCode.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
