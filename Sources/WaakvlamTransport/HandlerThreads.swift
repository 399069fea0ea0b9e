import Foundation
import WaakvlamSystem

/// The threads that run a server's blocking handlers, one request each. A thread whose request
/// is answered parks for a while and takes the next one: waking a parked thread costs less
/// than creating one, and on a busy machine the scheduler runs a woken thread sooner than a
/// new one (Linux's CFS queues a new thread behind the running ones).
final class HandlerThreads: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var parked = 0
    private var stopped = false
    private let stackSize: Int
    private let maximumParked: Int
    private let parkingTime: TimeInterval

    init(stackSize: Int, maximumParked: Int = 128, parkingTime: TimeInterval = 60) {
        self.stackSize = stackSize
        self.maximumParked = maximumParked
        self.parkingTime = parkingTime
    }

    /// Runs `job` on a parked thread, or on a new one when none is free.
    func run(_ job: @escaping () -> Void) throws {
        condition.lock()
        if parked > jobs.count {
            jobs.append(job)
            condition.signal()
            condition.unlock()
            return
        }
        condition.unlock()
        try spawnDetachedThread(stackSize: stackSize) { [self] in work(first: job) }
    }

    /// Parked threads exit; running ones exit when their job is done.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func work(first: @escaping () -> Void) {
        var next: (() -> Void)? = first
        while let job = next {
            job()
            next = nil
            condition.lock()
            guard !stopped, parked < maximumParked else {
                condition.unlock()
                return
            }
            parked += 1
            let deadline = Date(timeIntervalSinceNow: parkingTime)
            while jobs.isEmpty && !stopped && condition.wait(until: deadline) {}
            parked -= 1
            if !jobs.isEmpty { next = jobs.removeFirst() }
            condition.unlock()
        }
    }
}
