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
///
/// Threads: one scheduler thread picks due deliveries and hands them to worker threads, which
/// are started as jobs wait for them, up to `maximumInFlight` (an idle node keeps only the
/// few it needed so far). Each side waits on its own condition and is woken one at a time (a
/// broadcast to hundreds of idle workers per signal cost more than the delivery itself). A
/// worker that got a receipt appends it to the journal without waiting and takes the next
/// job; the receipts of many workers share a group commit, and the journal's completion
/// thread lets go of each delivery once its receipt is durable, so a delivery is never
/// picked again before that. The per-recipient limit counts requests on the wire.
///
/// The first push of a new signal uses a message built from the records as the signal
/// service journaled them (`notice(.prepared)`, given before the append so it is there when
/// the delivery can be picked), instead of reading decision, payload and received record
/// back from the journal. At most `preparedLimit` such messages are held, none for a
/// recipient that is down: a backlog stays in the journal.
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
    /// Guards the state below; the scheduler thread (and `stop`) wait on it.
    private let condition = NSCondition()
    private var running = false
    private var wakeRequested = false
    /// Picked and not yet finished (until the outcome is in the journal).
    private var inFlight = Set<Key>()
    /// Released since the current pass of `collectDue` began: the index it reads may still
    /// show them as due, so they are not picked again in this pass.
    private var releasedThisPass = Set<Key>()
    /// Per recipient: in `inFlight`, and of those, requests on the wire.
    private var heldPerRecipient: [String: Int] = [:]
    private var sendingPerRecipient: [String: Int] = [:]
    private var health: [String: RecipientHealth] = [:]
    private var activeThreads = 0
    /// Guards `jobs` and the worker counts; idle workers wait on it, one is signalled per job.
    private let work = NSCondition()
    private var jobs: [DeliveryState] = []
    private var jobsHead = 0
    private var workersStopping = false
    private var workers = 0
    private var idleWorkers = 0
    /// Started but not yet looking for a job: each will take one.
    private var startingWorkers = 0
    private var nextSweep = Date.distantPast
    /// Messages for first pushes, by delivery, with their decision's time (journal microseconds).
    private var prepared: [Key: (decidedAt: Int64, message: Outbound.Message)] = [:]

    /// Deliveries to one recipient at the same time, at most.
    static let perRecipientLimit = 32
    /// Expiries and purges appended per sweep, at most (the rest follows a second later).
    static let sweepBatch = 1_000
    /// Prepared messages held at most (a few MiB).
    static let preparedLimit = 4_096
    /// How long the scheduler lets wake-ups gather before a pass (adds at most this to a push).
    static let gatherMicroseconds: UInt32 = 500

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
        spawn("scheduler") { [self] in scheduleLoop() }
    }

    func notice(_ notice: Outbound.Notice) {
        switch notice {
        case .prepared(let items): prepare(items)
        case .queued: wake()
        }
    }

    /// New deliveries were queued: look now rather than at the next tick.
    func wake() {
        condition.lock()
        wakeRequested = true
        condition.signal()
        condition.unlock()
    }

    /// Keeps the messages of first pushes about to be journaled, for recipients that are up.
    /// Used messages leave at once; when the limit is reached, all are dropped (any left by
    /// an append that failed go with them) and those deliveries read the journal instead.
    private func prepare(_ items: [Outbound.Prepared]) {
        condition.lock()
        let wanted = items.filter { health[$0.decision.recipientID]?.downSince == nil }
        condition.unlock()
        guard !wanted.isEmpty else { return }
        // Built outside the lock.
        let built = wanted.map { ($0.decision, $0.message) }
        condition.lock()
        if prepared.count + built.count > Self.preparedLimit { prepared.removeAll() }
        for (decision, message) in built {
            prepared[Key(signalID: decision.signalID, recipientID: decision.recipientID)] = (JournalTime.microseconds(decision.at), message)
        }
        condition.unlock()
    }

    /// Stops scheduling and waits up to `deadline` for deliveries in flight to finish; the
    /// rest resumes from the journal at the next start.
    func stop(deadline: Date) {
        condition.lock()
        running = false
        prepared.removeAll()
        condition.broadcast()
        condition.unlock()
        work.lock()
        workersStopping = true
        jobs.removeAll()
        jobsHead = 0
        work.broadcast()
        work.unlock()
        condition.lock()
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

    /// Starts a thread counted in `activeThreads` (which `stop` waits for). Called with
    /// `condition` locked.
    private func spawn(_ name: String, _ body: @escaping () -> Void) {
        activeThreads += 1
        let thread = Thread { [self] in
            nameCurrentThread(name)
            body()
            condition.lock()
            activeThreads -= 1
            condition.broadcast()
            condition.unlock()
        }
        thread.stackSize = 512 * 1024
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
            if !due.isEmpty { hand(due, workerLimit: configuration.current.configuration.node.delivery.maximumInFlight) }
            condition.lock()
            var woken = wakeRequested
            if !wakeRequested && running {
                woken = condition.wait(until: Date().addingTimeInterval(due.isEmpty ? 1 : 0.2))
            }
            wakeRequested = false
            if woken && running {
                // Let the events of the next moment (signals queued, answers, receipts) gather:
                // one pass for many of them instead of a wake-up and a pass for each.
                condition.unlock()
                usleep(Self.gatherMicroseconds)
                condition.lock()
            }
        }
        condition.unlock()
    }

    /// Picks due deliveries recipient by recipient, within the global and per-recipient limits,
    /// and marks them in flight.
    private func collectDue(_ now: Date) -> [DeliveryState] {
        let settings = configuration.current.configuration.node.delivery
        let index = journal.deliveryState()
        var picked: [DeliveryState] = []
        // A delivery is released only after its outcome is in the index, so what was released
        // before this point reads as done below; what is released later is in the set.
        condition.lock()
        releasedThisPass.removeAll(keepingCapacity: true)
        condition.unlock()
        for recipient in index.pushRecipients() {
            condition.lock()
            let state = health[recipient] ?? RecipientHealth()
            let sending = sendingPerRecipient[recipient] ?? 0
            let held = heldPerRecipient[recipient] ?? 0
            // A recipient that is down gets one probe when its back-off ends.
            let limit = state.downSince == nil ? Self.perRecipientLimit : 1
            let free = min(limit - sending, settings.maximumInFlight - inFlight.count)
            condition.unlock()
            guard state.deferredUntil <= now, free > 0 else { continue }
            // The earliest due are those already in flight (they leave the index's schedule
            // when their outcome is journaled): ask for enough to get past them.
            for delivery in index.duePushes(recipientID: recipient, at: now, limit: free + held) {
                let key = Key(signalID: delivery.signalID, recipientID: recipient)
                condition.lock()
                let added = picked.count < settings.maximumInFlight && (sendingPerRecipient[recipient] ?? 0) < limit
                    && !releasedThisPass.contains(key) && inFlight.insert(key).inserted
                if added {
                    sendingPerRecipient[recipient, default: 0] += 1
                    heldPerRecipient[recipient, default: 0] += 1
                }
                condition.unlock()
                if added { picked.append(delivery) }
            }
        }
        return picked
    }

    /// Queues jobs for the workers, waking one idle worker per job (a broadcast would wake
    /// every idle worker for a few jobs) and starting new ones for jobs no idle worker takes.
    private func hand(_ due: [DeliveryState], workerLimit: Int) {
        work.lock()
        jobs.append(contentsOf: due)
        for _ in 0..<min(due.count, idleWorkers) { work.signal() }
        let first = workers
        let starting = max(0, min(jobs.count - jobsHead - idleWorkers - startingWorkers, workerLimit - workers))
        workers += starting
        startingWorkers += starting
        work.unlock()
        guard starting > 0 else { return }
        condition.lock()
        for index in first..<first + starting {
            spawn("delivery-\(index)") { [self] in workerLoop() }
        }
        condition.unlock()
    }

    private func workerLoop() {
        work.lock()
        startingWorkers -= 1
        work.unlock()
        while let job = nextJob() {
            var sending = true
            let releasedLater = deliver(job) {
                // The recipient answered (or could not be reached): its slot is free again.
                self.finishSending(job.recipientID)
                sending = false
            }
            condition.lock()
            if sending { sendingPerRecipient[job.recipientID, default: 1] -= 1 }
            if !releasedLater { release(job) }
            wakeRequested = true
            condition.signal()
            condition.unlock()
        }
    }

    /// The delivery is no longer in flight. Called with `condition` locked.
    private func release(_ delivery: DeliveryState) {
        let key = Key(signalID: delivery.signalID, recipientID: delivery.recipientID)
        inFlight.remove(key)
        releasedThisPass.insert(key)
        prepared[key] = nil
        heldPerRecipient[delivery.recipientID, default: 1] -= 1
    }

    /// The next job, waiting for one; nil once stopping.
    private func nextJob() -> DeliveryState? {
        work.lock()
        defer { work.unlock() }
        while !workersStopping && jobsHead == jobs.count {
            idleWorkers += 1
            work.wait()
            idleWorkers -= 1
        }
        guard !workersStopping else {
            workers -= 1
            return nil
        }
        let job = jobs[jobsHead]
        jobsHead += 1
        if jobsHead == jobs.count {
            jobs.removeAll(keepingCapacity: true)
            jobsHead = 0
        }
        return job
    }

    private func finishSending(_ recipientID: String) {
        condition.lock()
        sendingPerRecipient[recipientID, default: 1] -= 1
        wakeRequested = true
        condition.signal()
        condition.unlock()
    }

    // MARK: - One delivery

    /// Pushes one delivery and journals the outcome; calls `answered` once the request is
    /// over (before the outcome is made durable), unless it never got to sending. Returns true
    /// when a receipt is being journaled (its completion then releases the delivery).
    private func deliver(_ delivery: DeliveryState, answered: () -> Void) -> Bool {
        let snapshot = configuration.current
        let now = Date()
        condition.lock()
        let cached = prepared.removeValue(forKey: Key(signalID: delivery.signalID, recipientID: delivery.recipientID))
        condition.unlock()
        guard case .pending(let attempts, let firstQueuedAt, _, _) = delivery.status else { return false }
        guard let target = snapshot.pushTargets[delivery.recipientID] else {
            fail(delivery, attempts: attempts, firstQueuedAt: firstQueuedAt, outcome: "no push endpoint configured", at: now)
            return false
        }
        let message: Outbound.Message
        if let cached, attempts == 0, cached.decidedAt == JournalTime.microseconds(firstQueuedAt), delivery.hasPayload {
            message = cached.message
        } else {
            do {
                guard let built = try Outbound.message(for: delivery, journal: journal, configuration: snapshot.configuration) else {
                    // The payload's retention ended before it could be delivered.
                    expire(delivery, reason: "payload retention ended", at: now)
                    return false
                }
                message = built
            } catch {
                Log.shared.error("journal_read_failed", ["signal": delivery.signalID, "error": "\(error)"])
                return false
            }
        }
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Waakvlam-Signal-Id", delivery.signalID)])
        if let traceparent = message.traceparent { headers.add("traceparent", traceparent) }
        let request = HTTPRequest(method: "POST", target: target.path, headers: headers, body: message.body)
        let outcome: String
        do {
            let response = try client.send(request, to: target.endpoint, idempotent: true)
            answered()
            if (200..<300).contains(response.status) {
                journalReceipt(of: delivery)
                return true
            }
            outcome = "http \(response.status)"
        } catch {
            answered()
            outcome = "\(error)"
        }
        fail(delivery, attempts: attempts, firstQueuedAt: firstQueuedAt, outcome: outcome, at: Date())
        return false
    }

    /// Appends the receipt without waiting; `receiptJournaled` follows on the journal's
    /// completion thread. A receipt that cannot be journaled means the delivery is pushed
    /// again later (at-least-once; recipients deduplicate by id).
    private func journalReceipt(of delivery: DeliveryState) {
        let receipt = JournalRecord.delivered(Delivered(signalID: delivery.signalID, recipientID: delivery.recipientID,
                                                        via: .push, at: Date()))
        do {
            try journal.append([receipt]) { [self] result in receiptJournaled(delivery, result) }
        } catch {
            receiptJournaled(delivery, .failure(error as? JournalError ?? .closed))
        }
    }

    /// Lets go of the delivery; once its receipt is durable, the recipient counts as up.
    private func receiptJournaled(_ delivery: DeliveryState, _ result: Result<[RecordPosition], JournalError>) {
        var durable = true
        if case .failure(let error) = result {
            durable = false
            Log.shared.error("journal_append_failed", ["signal": delivery.signalID, "error": "\(error)"])
        }
        condition.lock()
        release(delivery)
        if durable, health[delivery.recipientID] != nil {
            if health[delivery.recipientID]?.downSince != nil {
                Log.shared.info("recipient_up", ["recipient": delivery.recipientID])
            }
            health[delivery.recipientID] = nil
        }
        wakeRequested = true
        condition.signal()
        condition.unlock()
        guard durable else { return }
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
            // Its backlog waits in the journal, not in memory.
            prepared = prepared.filter { $0.key.recipientID != delivery.recipientID }
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
