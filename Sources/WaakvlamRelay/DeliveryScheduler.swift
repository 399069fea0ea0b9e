import Foundation
import WaakvlamCore
import WaakvlamJournal
import WaakvlamSystem
import WaakvlamTransport

/// Pushes allowed signals to their recipients' endpoints, retries with a growing delay,
/// expires what is undeliverable, and purges payloads whose retention ended.
///
/// The backlog lives in the journal's delivery index; only the deliveries in flight (at most
/// `maximumInFlight`) are held here. Each recipient has its own concurrency limit and its own
/// back-off, so that a recipient that is down costs one probe per interval and never holds
/// up deliveries to others (like Postfix's per-destination queues and dead-site detection).
final class DeliveryScheduler: @unchecked Sendable {
    /// What the scheduler knows about one recipient's reachability.
    private struct RecipientHealth {
        /// Since when every attempt failed; nil while the recipient answers.
        var downSince: Date?
        /// No attempt before this instant, except the single probe that ends the back-off.
        var deferredUntil: Date = .distantPast
    }

    private struct Key: Hashable {
        let signalID: String
        let recipientID: String
    }

    private let journal: Journal
    private let client: HTTPClient
    private let configuration: ConfigurationHolder
    private let metrics: Metrics
    private let condition = NSCondition()
    private var running = false
    private var wakeRequested = false
    private var inFlight = Set<Key>()
    private var inFlightPerRecipient: [String: Int] = [:]
    private var health: [String: RecipientHealth] = [:]
    private var jobs: [DeliveryState] = []
    private var threads: [Thread] = []
    private var activeThreads = 0
    private var nextSweep = Date.distantPast

    /// Deliveries to one recipient at the same time, at most.
    static let perRecipientLimit = 32
    /// Expiries and purges appended per sweep, at most (the rest follows a second later).
    static let sweepBatch = 1_000

    init(journal: Journal, client: HTTPClient, configuration: ConfigurationHolder, metrics: Metrics) {
        self.journal = journal
        self.client = client
        self.configuration = configuration
        self.metrics = metrics
    }

    func start() {
        condition.lock()
        defer { condition.unlock() }
        guard !running else { return }
        running = true
        let workers = max(1, configuration.current.configuration.node.delivery.maximumInFlight)
        spawn("waakvlam-scheduler") { [self] in scheduleLoop() }
        for index in 0..<workers {
            spawn("waakvlam-delivery-\(index)") { [self] in workerLoop() }
        }
    }

    /// New deliveries were queued: look now rather than at the next tick.
    func wake() {
        condition.lock()
        wakeRequested = true
        condition.broadcast()
        condition.unlock()
    }

    /// Stops scheduling and waits up to `deadline` for deliveries in flight to finish; the
    /// rest resumes from the journal at the next start.
    func stop(deadline: Date) {
        condition.lock()
        running = false
        jobs.removeAll()
        condition.broadcast()
        while activeThreads > 0 && Date() < deadline {
            _ = condition.wait(until: min(deadline, Date().addingTimeInterval(0.05)))
        }
        condition.unlock()
    }

    /// Deliveries per recipient that are waiting or in flight, for /metrics.
    var inFlightCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return inFlight.count
    }

    // MARK: - Scheduling

    private func spawn(_ name: String, _ body: @escaping () -> Void) {
        activeThreads += 1
        let thread = Thread { [self] in
            body()
            condition.lock()
            activeThreads -= 1
            condition.broadcast()
            condition.unlock()
        }
        thread.name = name
        thread.stackSize = 512 * 1024
        threads.append(thread)
        thread.start()
    }

    private func scheduleLoop() {
        condition.lock()
        while running {
            condition.unlock()
            let now = Date()
            if now >= nextSweep {
                sweep(now)
                nextSweep = now.addingTimeInterval(1)
            }
            let due = collectDue(now)
            condition.lock()
            if !due.isEmpty {
                jobs.append(contentsOf: due)
                condition.broadcast()
            }
            if !wakeRequested && running {
                _ = condition.wait(until: Date().addingTimeInterval(due.isEmpty ? 1 : 0.2))
            }
            wakeRequested = false
        }
        condition.unlock()
    }

    /// Picks due deliveries recipient by recipient, within the global and per-recipient limits,
    /// and marks them in flight.
    private func collectDue(_ now: Date) -> [DeliveryState] {
        let settings = configuration.current.configuration.node.delivery
        let index = journal.deliveryState()
        var picked: [DeliveryState] = []
        for recipient in index.pushRecipients() {
            condition.lock()
            let state = health[recipient] ?? RecipientHealth()
            let busy = inFlightPerRecipient[recipient] ?? 0
            // A recipient that is down gets one probe when its back-off ends.
            let limit = state.downSince == nil ? Self.perRecipientLimit : 1
            let free = min(limit - busy, settings.maximumInFlight - inFlight.count)
            condition.unlock()
            guard state.deferredUntil <= now, free > 0 else { continue }
            for delivery in index.duePushes(recipientID: recipient, at: now, limit: free + busy) {
                let key = Key(signalID: delivery.signalID, recipientID: recipient)
                condition.lock()
                let added = picked.count < settings.maximumInFlight && (inFlightPerRecipient[recipient] ?? 0) < limit
                    && inFlight.insert(key).inserted
                if added { inFlightPerRecipient[recipient, default: 0] += 1 }
                condition.unlock()
                if added { picked.append(delivery) }
            }
        }
        return picked
    }

    private func workerLoop() {
        condition.lock()
        while true {
            while running && jobs.isEmpty { condition.wait() }
            guard running else { break }
            let job = jobs.removeFirst()
            condition.unlock()
            deliver(job)
            condition.lock()
            inFlight.remove(Key(signalID: job.signalID, recipientID: job.recipientID))
            inFlightPerRecipient[job.recipientID, default: 1] -= 1
            wakeRequested = true
            condition.broadcast()
        }
        condition.unlock()
    }

    // MARK: - One delivery

    private func deliver(_ delivery: DeliveryState) {
        let snapshot = configuration.current
        let now = Date()
        guard case .pending(let attempts, let firstQueuedAt, _, _) = delivery.status else { return }
        guard let recipient = snapshot.configuration.organisation(id: delivery.recipientID),
              case .push(let endpointURL) = recipient.delivery,
              let host = endpointURL.host else {
            fail(delivery, attempts: attempts, firstQueuedAt: firstQueuedAt, outcome: "no push endpoint configured", at: now)
            return
        }
        let message: [String: Any]
        do {
            guard let built = try Outbound.message(for: delivery, journal: journal, configuration: snapshot.configuration) else {
                // The payload's retention ended before it could be delivered.
                expire(delivery, reason: "payload retention ended", at: now)
                return
            }
            message = built
        } catch {
            Log.shared.error("journal_read_failed", ["signal": delivery.signalID, "error": "\(error)"])
            return
        }
        let body = (try? JSONSerialization.data(withJSONObject: message, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Waakvlam-Signal-Id", delivery.signalID)])
        if let traceparent = message["traceparent"] as? String { headers.add("traceparent", traceparent) }
        let path = endpointURL.path.isEmpty ? "/" : endpointURL.path + (endpointURL.query.map { "?\($0)" } ?? "")
        let request = HTTPRequest(method: "POST", target: path, headers: headers, body: [UInt8](body))
        let endpoint = Endpoint(host: host, port: UInt16(endpointURL.port ?? 443))
        let outcome: String
        do {
            let response = try client.send(request, to: endpoint, idempotent: true)
            if (200..<300).contains(response.status) {
                delivered(delivery, at: Date())
                return
            }
            outcome = "http \(response.status)"
        } catch {
            outcome = "\(error)"
        }
        fail(delivery, attempts: attempts, firstQueuedAt: firstQueuedAt, outcome: outcome, at: Date())
    }

    private func delivered(_ delivery: DeliveryState, at now: Date) {
        do {
            _ = try journal.append([.delivered(Delivered(signalID: delivery.signalID, recipientID: delivery.recipientID, via: .push, at: now))])
        } catch {
            // The recipient has it but the receipt is not recorded: it will be pushed again
            // (at-least-once; the recipient deduplicates by id).
            Log.shared.error("journal_append_failed", ["signal": delivery.signalID, "error": "\(error)"])
            return
        }
        condition.lock()
        if health[delivery.recipientID]?.downSince != nil {
            Log.shared.info("recipient_up", ["recipient": delivery.recipientID])
        }
        health[delivery.recipientID] = nil
        condition.unlock()
        metrics.increment("waakvlam_deliveries_total", ["via": "push"])
        Log.shared.info("delivered", ["signal": delivery.signalID, "recipient": delivery.recipientID, "via": "push"])
    }

    /// Records a failed attempt with the next one planned, or expires the delivery when its
    /// lifetime is over. The delay grows with the time in queue, clamped between the minimum
    /// and maximum back-off (Postfix's rule).
    private func fail(_ delivery: DeliveryState, attempts: Int, firstQueuedAt: Date, outcome: String, at now: Date) {
        let settings = configuration.current.configuration.node.delivery
        let age = now.timeIntervalSince(firstQueuedAt)
        let lifetime = TimeInterval(settings.maximumLifetimeSeconds)
        metrics.increment("waakvlam_delivery_retries_total", ["recipient": delivery.recipientID])
        condition.lock()
        var state = health[delivery.recipientID] ?? RecipientHealth()
        let downSince = state.downSince ?? now
        if state.downSince == nil {
            Log.shared.warning("recipient_down", ["recipient": delivery.recipientID, "outcome": outcome])
        }
        state.downSince = downSince
        state.deferredUntil = now.addingTimeInterval(Self.backoff(now.timeIntervalSince(downSince), settings))
        health[delivery.recipientID] = state
        condition.unlock()
        if age >= lifetime {
            expire(delivery, reason: outcome, at: now)
            return
        }
        let next = now.addingTimeInterval(Self.backoff(age, settings))
        do {
            _ = try journal.append([.attempt(Attempt(signalID: delivery.signalID, recipientID: delivery.recipientID,
                                                     attempt: attempts + 1, outcome: outcome, nextAttemptAt: next, at: now))])
        } catch {
            Log.shared.error("journal_append_failed", ["signal": delivery.signalID, "error": "\(error)"])
        }
        Log.shared.info("delivery_attempt_failed", ["signal": delivery.signalID, "recipient": delivery.recipientID,
                                                    "attempt": attempts + 1, "outcome": outcome,
                                                    "next_attempt_at": Log.timestamp(next)])
    }

    static func backoff(_ timeInQueue: TimeInterval, _ settings: DeliverySettings) -> TimeInterval {
        min(max(timeInQueue, TimeInterval(settings.minimumBackoffSeconds)), TimeInterval(settings.maximumBackoffSeconds))
    }

    private func expire(_ delivery: DeliveryState, reason: String, at now: Date) {
        do {
            _ = try journal.append([.expired(Expired(signalID: delivery.signalID, recipientID: delivery.recipientID, at: now))])
        } catch {
            Log.shared.error("journal_append_failed", ["signal": delivery.signalID, "error": "\(error)"])
            return
        }
        metrics.increment("waakvlam_deliveries_expired_total", ["recipient": delivery.recipientID])
        Log.shared.warning("delivery_expired", ["signal": delivery.signalID, "recipient": delivery.recipientID, "last_outcome": reason])
    }

    // MARK: - Sweeps

    /// Expires deliveries (push and inbox) past their lifetime, and purges payloads whose
    /// retention ended.
    private func sweep(_ now: Date) {
        let settings = configuration.current.configuration.node.delivery
        let index = journal.deliveryState()
        let cutoff = now.addingTimeInterval(-TimeInterval(settings.maximumLifetimeSeconds))
        let expiring = index.pendingQueued(before: cutoff, limit: Self.sweepBatch).filter { delivery in
            condition.lock()
            defer { condition.unlock() }
            return !inFlight.contains(Key(signalID: delivery.signalID, recipientID: delivery.recipientID))
        }
        if !expiring.isEmpty {
            let records = expiring.map { JournalRecord.expired(Expired(signalID: $0.signalID, recipientID: $0.recipientID, at: now)) }
            do {
                _ = try journal.append(records)
                for delivery in expiring {
                    metrics.increment("waakvlam_deliveries_expired_total", ["recipient": delivery.recipientID])
                    Log.shared.warning("delivery_expired", ["signal": delivery.signalID, "recipient": delivery.recipientID,
                                                            "last_outcome": "lifetime ended"])
                }
            } catch {
                Log.shared.error("journal_append_failed", ["event": "expire", "error": "\(error)"])
            }
        }
        let purgeable = index.payloadsDue(at: now, limit: Self.sweepBatch)
        if !purgeable.isEmpty {
            let records = purgeable.map { JournalRecord.payloadPurged(PayloadPurged(signalID: $0.signalID, recipientID: $0.recipientID, at: now)) }
            do {
                _ = try journal.append(records)
                metrics.increment("waakvlam_payloads_purged_total", by: Double(records.count))
                Log.shared.info("payloads_purged", ["count": records.count])
            } catch {
                Log.shared.error("journal_append_failed", ["event": "purge", "error": "\(error)"])
            }
        }
    }
}
