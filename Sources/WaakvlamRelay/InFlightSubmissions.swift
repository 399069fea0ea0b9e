import Foundation

/// Submissions being decided and journaled, by signal id, with the submissions of the same
/// id that came meanwhile: those run again once the first is answered (and then get its
/// answer from the journal, or a 409). Split over stripes by the id's hash, each with its own
/// lock: every submission on every connection loop looks its id up here, and behind one lock
/// the loops queued for each other (and slept in the kernel) for ids that have nothing in
/// common. All calls for one id meet under the same stripe's lock.
final class InFlightSubmissions: @unchecked Sendable {
    enum Start {
        /// The id is now in flight: decide and journal it, then call `end`.
        case started
        /// Another submission of the id is in flight; this one runs again after it.
        case queued
        /// The id is journaled already: answer from the journal.
        case journaled
    }

    private final class Stripe {
        let lock = NSLock()
        var waiting: [String: [@Sendable () -> Void]] = [:]
    }

    private static let stripeCount = 16
    private let stripes = (0..<InFlightSubmissions.stripeCount).map { _ in Stripe() }

    private func stripe(_ id: String) -> Stripe {
        stripes[Int(UInt(bitPattern: id.hashValue) % UInt(Self.stripeCount))]
    }

    /// Starts `id` unless it is in flight (then `rerun` is queued) or `journaled` says it is on
    /// disk already; `journaled` is asked under the stripe's lock, so that a submission that
    /// ends meanwhile cannot slip between the two checks.
    func start(_ id: String, journaled: (String) -> Bool, orQueue rerun: @autoclosure () -> @Sendable () -> Void) -> Start {
        let stripe = stripe(id)
        stripe.lock.lock()
        defer { stripe.lock.unlock() }
        if stripe.waiting[id] != nil {
            stripe.waiting[id]!.append(rerun())
            return .queued
        }
        if journaled(id) { return .journaled }
        stripe.waiting[id] = []
        return .started
    }

    /// Ends `id`'s flight; returns the submissions of it that came meanwhile.
    func end(_ id: String) -> [@Sendable () -> Void] {
        let stripe = stripe(id)
        stripe.lock.lock()
        defer { stripe.lock.unlock() }
        return stripe.waiting.removeValue(forKey: id) ?? []
    }
}
