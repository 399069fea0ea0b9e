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
/// One thread does it all: an `HTTPClientLoop` (epoll over non-blocking TLS connections, a
/// keep-alive pool per recipient) on which the scheduling passes, the pushes and their
/// outcomes run, so the state below needs no lock. A pass runs once a second, and at the end
/// of each turn of the loop in which new deliveries were queued or a slot became free (the
/// wake-ups of one turn share one pass). A push that got a 2xx appends its receipt to the
/// journal without waiting, lazily (it joins the next submission's group commit, or commits
/// within the journal's `lazyDelay`, 10 ms); the journal's completion hands the delivery back
/// to the loop once the receipt is durable, so a delivery is never picked again before that.
/// Failed attempts and expiries are released the same way once their record is durable. The
/// per-recipient limit counts requests on the wire.
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
    private let loop: HTTPClientLoop
    private let configuration: ConfigurationHolder
    private let metrics: Metrics
    /// `waakvlam_deliveries_total` by `via`.
    private let deliveries: Metrics.CounterFamily

    // Shared with the threads that accept signals, under `shared`.
    private let shared = NSLock()
    /// What first pushes are built from, by delivery.
    private var prepared: [Key: Outbound.Prepared] = [:]
    /// Recipients that are down (no first-push messages are kept for them).
    private var downRecipients = Set<String>()
    private var passRequested = false
    private var stopping = false

    // The loop thread's own.
    private var running = false
    /// Picked and not yet released (until the outcome is in the journal), by the sequence
    /// number of the delivery's decision record: the index passes over them by that number
    /// without building their states.
    private var inFlight = Set<UInt64>()
    /// Per recipient: requests on the wire.
    private var sendingPerRecipient: [String: Int] = [:]
    private var health: [String: RecipientHealth] = [:]
    private var nextSweep = Date.distantPast
    /// Expiries and purges of the last sweep, until they are durable: not pushed meanwhile,
    /// and no new sweep before.
    private var sweeping = Set<UInt64>()

    /// Deliveries to one recipient at the same time, at most. The push client keeps as many
    /// idle connections per recipient (`pushClient`): with fewer, every push beyond them would
    /// open a connection and pay a full handshake at both ends.
    static let perRecipientLimit = 32
    /// Expiries and purges appended per sweep, at most (the rest follows a second later).
    static let sweepBatch = 1_000
    /// Prepared messages held at most (a few MiB).
    static let preparedLimit = 4_096

    /// `tls` is the node's client context; `client` the timeouts of pushes.
    init(journal: Journal, tls: TLSContext, client: HTTPClientConfiguration, configuration: ConfigurationHolder,
         metrics: Metrics) throws {
        self.journal = journal
        self.loop = try HTTPClientLoop(tls: tls, configuration: Self.pushClient(client), threadName: "delivery")
        self.configuration = configuration
        self.metrics = metrics
        deliveries = metrics.counters("waakvlam_deliveries_total", by: "via")
    }

    /// `client` with room for `perRecipientLimit` idle connections per recipient.
    static func pushClient(_ client: HTTPClientConfiguration) -> HTTPClientConfiguration {
        var pushes = client
        pushes.maximumIdleConnectionsPerEndpoint = max(client.maximumIdleConnectionsPerEndpoint, perRecipientLimit)
        return pushes
    }

    func start() throws {
        try loop.start()
        loop.execute { [self] in
            running = true
            tick()
        }
    }

    func notice(_ notice: Outbound.Notice) {
        switch notice {
        case .prepared(let items): prepare(items)
        case .queued: requestPass()
        }
    }

    /// Keeps what the first pushes about to be journaled are built from, for recipients that
    /// are up. Used ones leave at once; when the limit is reached, all are dropped (any left
    /// by an append that failed go with them) and those deliveries read the journal instead.
    private func prepare(_ items: [Outbound.Prepared]) {
        shared.lock()
        defer { shared.unlock() }
        guard !stopping else { return }
        let wanted = downRecipients.isEmpty ? items : items.filter { !downRecipients.contains($0.decision.recipientID) }
        if prepared.count + wanted.count > Self.preparedLimit { prepared.removeAll() }
        for item in wanted {
            prepared[Key(signalID: item.decision.signalID, recipientID: item.decision.recipientID)] = item
        }
    }

    /// Stops scheduling and waits up to `deadline` for pushes on the wire to finish and their
    /// receipts to be journaled; the rest resumes from the journal at the next start.
    func stop(deadline: Date) {
        shared.lock()
        stopping = true
        prepared.removeAll()
        shared.unlock()
        loop.execute { [self] in running = false }
        // Until every answered push's receipt (and a sweep) is durable and told, so that its
        // log line and count are not lost; the journal closes after this returns.
        loop.stop(deadline: monotonicNanoseconds() + nanoseconds(deadline.timeIntervalSinceNow),
                  ownerIsDone: { [self] in inFlight.isEmpty && sweeping.isEmpty })
    }

    // MARK: - Scheduling (on the loop)

    /// New deliveries were queued: a pass soon. Any thread.
    private func requestPass() {
        guard markPassRequested() else { return }
        loop.execute { [self] in schedulePass() }
    }

    /// A slot became free or a delivery was released: a pass soon. On the loop, where the pass
    /// is scheduled at once (a task would cost the loop a wake-up: two system calls).
    private func requestPassOnLoop() {
        if markPassRequested() { schedulePass() }
    }

    /// True when no pass was requested yet since the last one.
    private func markPassRequested() -> Bool {
        shared.lock()
        defer { shared.unlock() }
        let first = !passRequested
        passRequested = true
        return first
    }

    /// A pass at the end of this turn of the loop, after the answers and receipts that came
    /// with it: one pass for all of them, and no wait. (A delay to gather more would idle each
    /// recipient's slots that long after every answer: with 32 slots and pushes of 2-3 ms
    /// under load, half a millisecond capped a recipient at about 10,000 pushes/s.) On the loop.
    private func schedulePass() {
        loop.schedule(at: monotonicNanoseconds()) { [self] in pass() }
    }

    /// Once a second: sweeps, and a pass for deliveries whose retry became due.
    private func tick() {
        guard running else { return }
        let now = Date()
        if now >= nextSweep {
            sweep(now)
            nextSweep = now.addingTimeInterval(1)
        }
        pass()
        loop.schedule(at: monotonicNanoseconds() + 1_000_000_000) { [self] in tick() }
    }

    /// Picks due deliveries recipient by recipient, within the global and per-recipient
    /// limits, and starts them.
    private func pass() {
        shared.lock()
        passRequested = false
        let stopped = stopping
        shared.unlock()
        guard running, !stopped else { return }
        let now = Date()
        let maximumInFlight = configuration.current.configuration.node.delivery.maximumInFlight
        let index = journal.deliveryState()
        for recipient in index.pushRecipients() {
            guard let free = freeSlots(recipient, now: now, maximumInFlight: maximumInFlight) else { continue }
            // The earliest due are often those already in flight (they leave the index's
            // schedule when their outcome is journaled): passed over.
            let due = index.duePushes(recipientID: recipient, at: now, limit: free) { [self] decision in
                inFlight.contains(decision.sequence) || sweeping.contains(decision.sequence)
            }
            for delivery in due {
                // Asked again per delivery: a push that failed at once may have put the
                // recipient into back-off.
                guard freeSlots(recipient, now: now, maximumInFlight: maximumInFlight) != nil,
                      inFlight.insert(delivery.decision.sequence).inserted else { continue }
                sendingPerRecipient[recipient, default: 0] += 1
                push(delivery)
            }
        }
    }

    /// How many more pushes may start to `recipient` now; nil for none (in back-off, or no
    /// slot). A recipient that is down gets one probe when its back-off ends.
    private func freeSlots(_ recipient: String, now: Date, maximumInFlight: Int) -> Int? {
        let state = health[recipient] ?? RecipientHealth()
        let limit = state.downSince == nil ? Self.perRecipientLimit : 1
        let free = min(limit - (sendingPerRecipient[recipient] ?? 0), maximumInFlight - inFlight.count)
        return state.deferredUntil <= now && free > 0 ? free : nil
    }

    /// The request is over (answered, failed, or never sent): the recipient's slot is free.
    private func finishSending(_ recipientID: String) {
        sendingPerRecipient[recipientID, default: 1] -= 1
        requestPassOnLoop()
    }

    /// The delivery is no longer in flight. (Its prepared message, if any, left when it was
    /// pushed: every delivery released was.)
    private func release(_ delivery: DeliveryState) {
        inFlight.remove(delivery.decision.sequence)
        requestPassOnLoop()
    }

    // MARK: - One delivery

    /// Builds the message and sends it; the outcome is handled in `answered`. What prevents
    /// sending is journaled as a failed attempt or an expiry.
    private func push(_ delivery: DeliveryState) {
        let snapshot = configuration.current
        let now = Date()
        shared.lock()
        let cached = prepared.removeValue(forKey: Key(signalID: delivery.signalID, recipientID: delivery.recipientID))
        shared.unlock()
        guard case .pending(let attempts, let firstQueuedAt, _, _) = delivery.status else {
            finishSending(delivery.recipientID)
            release(delivery)
            return
        }
        guard let target = snapshot.pushTargets[delivery.recipientID] else {
            finishSending(delivery.recipientID)
            fail(delivery, attempts: attempts, firstQueuedAt: firstQueuedAt, outcome: "no push endpoint configured", at: now)
            return
        }
        let message: Outbound.Message
        if let cached, attempts == 0, JournalTime.microseconds(cached.decision.at) == JournalTime.microseconds(firstQueuedAt),
           delivery.hasPayload {
            message = cached.message
        } else {
            do {
                guard let built = try Outbound.message(for: delivery, journal: journal, configuration: snapshot.configuration) else {
                    // The payload's retention ended before it could be delivered.
                    finishSending(delivery.recipientID)
                    expire(delivery, reason: "payload retention ended", at: now)
                    return
                }
                message = built
            } catch {
                // Retried after the back-off, like a failed push, rather than at once.
                Log.shared.error("journal_read_failed", ["signal": delivery.signalID, "error": "\(error)"])
                finishSending(delivery.recipientID)
                fail(delivery, attempts: attempts, firstQueuedAt: firstQueuedAt, outcome: "journal read failed: \(error)", at: now)
                return
            }
        }
        // Head and message written into the one buffer that is sent.
        var request = target.head.request(capacity: 256 + delivery.signalID.utf8.count + message.estimatedCount)
        request.add("waakvlam-signal-id", delivery.signalID)
        if let trace = message.trace {
            request.add("traceparent") { TraceContext.appendTraceparent(traceID: trace.traceID, spanID: trace.spanID, to: &$0) }
        }
        loop.send(request.finish { message.write(to: &$0) }, to: target.endpoint, idempotent: true) { [self] result in
            finishSending(delivery.recipientID)
            switch result {
            case .success(let response) where (200..<300).contains(response.status):
                journalReceipt(of: delivery)
            case .success(let response):
                fail(delivery, attempts: attempts, firstQueuedAt: firstQueuedAt, outcome: "http \(response.status)", at: Date())
            case .failure(.shuttingDown):
                // Stopped before the answer: the delivery stays due in the journal.
                release(delivery)
            case .failure(let error):
                fail(delivery, attempts: attempts, firstQueuedAt: firstQueuedAt, outcome: "\(error)", at: Date())
            }
        }
    }

    /// Appends the receipt without waiting; the completion releases the delivery. A receipt
    /// that cannot be journaled means the delivery is pushed again later (at-least-once;
    /// recipients deduplicate by id). Lazily, unless every in-flight slot is taken: then the
    /// next push waits for this release, and should not wait out the lazy delay too.
    private func journalReceipt(of delivery: DeliveryState) {
        let receipt = JournalRecord.delivered(Delivered(signalID: delivery.signalID, recipientID: delivery.recipientID,
                                                        via: .push, at: Date()))
        let slotsFull = inFlight.count >= configuration.current.configuration.node.delivery.maximumInFlight
        append([receipt], for: delivery, lazily: !slotsFull, then: .delivered)
    }

    /// A receipt is durable: the recipient counts as up.
    private func recipientAnswered(_ recipientID: String) {
        guard let state = health.removeValue(forKey: recipientID) else { return }
        if state.downSince != nil {
            Log.shared.info("recipient_up", ["recipient": recipientID])
            shared.lock()
            downRecipients.remove(recipientID)
            shared.unlock()
        }
    }

    /// What is told once a delivery's record is durable.
    private enum Durable {
        /// Its receipt: counted and logged, and the recipient counts as up.
        case delivered
        /// A failed attempt: told when it happened.
        case attemptFailed
        /// Its expiry, after its last outcome.
        case expired(reason: String)
    }

    /// Appends `records` without waiting. Once they are durable, `durable` is told on the
    /// loop; then (durable or not) the delivery is released there. (One closure per append:
    /// what follows is named, not a closure of its own.) `lazily`: see `Journal.append`.
    private func append(_ records: [JournalRecord], for delivery: DeliveryState, lazily: Bool = false, then durable: Durable) {
        let completion: Journal.AppendCompletion = { [self] result in
            switch result {
            case .success: tell(durable, delivery)
            case .failure(let error): Log.shared.error("journal_append_failed", ["signal": delivery.signalID, "error": "\(error)"])
            }
            release(delivery)
        }
        do {
            try journal.append(records, on: loop.eventLoop, lazily: lazily, completion: completion)
        } catch {
            // Refused at once (closed): told on the loop later, as a commit's failure would be.
            loop.execute { completion(.failure(error as? JournalError ?? .closed)) }
        }
    }

    private func tell(_ durable: Durable, _ delivery: DeliveryState) {
        switch durable {
        case .delivered:
            deliveries.increment("push")
            Log.shared.info("delivered", ["signal": delivery.signalID, "recipient": delivery.recipientID, "via": "push"])
            recipientAnswered(delivery.recipientID)
        case .attemptFailed:
            break
        case .expired(let reason):
            metrics.increment("waakvlam_deliveries_expired_total", ["recipient": delivery.recipientID])
            Log.shared.warning("delivery_expired", ["signal": delivery.signalID, "recipient": delivery.recipientID,
                                                    "last_outcome": reason])
        }
    }

    /// Records a failed attempt with the next one planned, or expires the delivery when its
    /// lifetime is over. The delay grows with the time in queue, clamped between the minimum
    /// and maximum back-off (Postfix's rule).
    private func fail(_ delivery: DeliveryState, attempts: Int, firstQueuedAt: Date, outcome: String, at now: Date) {
        let settings = configuration.current.configuration.node.delivery
        let age = now.timeIntervalSince(firstQueuedAt)
        let lifetime = TimeInterval(settings.maximumLifetimeSeconds)
        metrics.increment("waakvlam_delivery_retries_total", ["recipient": delivery.recipientID])
        var state = health[delivery.recipientID] ?? RecipientHealth()
        let downSince = state.downSince ?? now
        if state.downSince == nil {
            Log.shared.warning("recipient_down", ["recipient": delivery.recipientID, "outcome": outcome])
            // Its backlog waits in the journal, not in memory.
            shared.lock()
            downRecipients.insert(delivery.recipientID)
            prepared = prepared.filter { $0.key.recipientID != delivery.recipientID }
            shared.unlock()
        }
        state.downSince = downSince
        state.deferredUntil = now.addingTimeInterval(Self.backoff(now.timeIntervalSince(downSince), settings))
        health[delivery.recipientID] = state
        if age >= lifetime {
            expire(delivery, reason: outcome, at: now)
            return
        }
        let next = now.addingTimeInterval(Self.backoff(age, settings))
        append([.attempt(Attempt(signalID: delivery.signalID, recipientID: delivery.recipientID,
                                 attempt: attempts + 1, outcome: outcome, nextAttemptAt: next, at: now))], for: delivery,
               then: .attemptFailed)
        Log.shared.info("delivery_attempt_failed", ["signal": delivery.signalID, "recipient": delivery.recipientID,
                                                    "attempt": attempts + 1, "outcome": outcome,
                                                    "next_attempt_at": Log.timestamp(next)])
    }

    static func backoff(_ timeInQueue: TimeInterval, _ settings: DeliverySettings) -> TimeInterval {
        min(max(timeInQueue, TimeInterval(settings.minimumBackoffSeconds)), TimeInterval(settings.maximumBackoffSeconds))
    }

    private func expire(_ delivery: DeliveryState, reason: String, at now: Date) {
        append([.expired(Expired(signalID: delivery.signalID, recipientID: delivery.recipientID, at: now))], for: delivery,
               then: .expired(reason: reason))
    }

    // MARK: - Sweeps

    /// Expires deliveries (push and inbox) past their lifetime, and purges payloads whose
    /// retention ended, appending without waiting; until that is durable the deliveries are
    /// not pushed and no new sweep starts.
    private func sweep(_ now: Date) {
        guard sweeping.isEmpty else { return }
        let settings = configuration.current.configuration.node.delivery
        let index = journal.deliveryState()
        let cutoff = now.addingTimeInterval(-TimeInterval(settings.maximumLifetimeSeconds))
        let expiring = index.pendingQueued(before: cutoff, limit: Self.sweepBatch).filter { !inFlight.contains($0.decision.sequence) }
        let purgeable = index.payloadsDue(at: now, limit: Self.sweepBatch)
        var records = expiring.map { JournalRecord.expired(Expired(signalID: $0.signalID, recipientID: $0.recipientID, at: now)) }
        records += purgeable.map { JournalRecord.payloadPurged(PayloadPurged(signalID: $0.signalID, recipientID: $0.recipientID, at: now)) }
        guard !records.isEmpty else { return }
        sweeping.formUnion((expiring + purgeable).lazy.map(\.decision.sequence))
        let metrics = self.metrics
        let completion: Journal.AppendCompletion = { [self] result in
            switch result {
            case .success:
                for delivery in expiring {
                    metrics.increment("waakvlam_deliveries_expired_total", ["recipient": delivery.recipientID])
                    Log.shared.warning("delivery_expired", ["signal": delivery.signalID, "recipient": delivery.recipientID,
                                                            "last_outcome": "lifetime ended"])
                }
                if !purgeable.isEmpty {
                    metrics.increment("waakvlam_payloads_purged_total", by: Double(purgeable.count))
                    Log.shared.info("payloads_purged", ["count": purgeable.count])
                }
            case .failure(let error):
                Log.shared.error("journal_append_failed", ["event": "sweep", "error": "\(error)"])
            }
            sweeping.removeAll()
        }
        do {
            try journal.append(records, on: loop.eventLoop, completion: completion)
        } catch {
            // Refused at once (closed): told on the loop later, as a commit's failure would be.
            loop.execute { completion(.failure(error as? JournalError ?? .closed)) }
        }
    }
}
