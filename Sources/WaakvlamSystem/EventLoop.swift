#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// One thread that waits in epoll and runs, in turn: due timers, the owner's iteration hook
/// (deadlines), tasks handed in by other threads, and the owner's handler for ready
/// descriptors. Everything the owner keeps on the loop is touched by this thread only, so it
/// needs no lock. The HTTPS client loop of the relay's deliveries and the server's connection
/// loops are built on it.
public final class EventLoop: @unchecked Sendable {
    private enum State { case created, running, finishing, finished }

    public let name: String
    private let poller: Poller

    /// Called with the ready descriptors of each wait. Set before `start`; released when the
    /// loop ends (so it may hold its owner: a running loop keeps its owner alive).
    public var onEvents: ([Poller.Event]) -> Void = { _ in }
    /// Called at the start of each iteration with the monotonic time; returns the earliest
    /// monotonic deadline the owner needs to be woken for (nil: none). Set before `start`.
    public var onIteration: (UInt64) -> UInt64? = { _ in nil }

    // Shared with other threads, under `lock`.
    private let lock = NSCondition()
    private var state = State.created
    private var tasks: [() -> Void] = []
    /// The batch being run (loop thread only): swapped with `tasks`, so neither array is
    /// reallocated per batch.
    private var running: [() -> Void] = []
    /// The loop is in, or about to enter, a wait that only a descriptor, a timer or a wake-up
    /// ends. Only then does `execute` wake it: a busy loop runs new tasks at its next turn
    /// anyway, and the eventfd's write, read and extra epoll round would be wasted.
    private var blocking = false
    private var wakePending = false
    private var thread: pthread_t?

    // The loop thread's own.
    private var timers: [(deadline: UInt64, task: () -> Void)] = []

    public init(name: String) throws {
        self.name = name
        self.poller = try Poller()
    }

    /// Starts the loop's thread.
    public func start(stackSize: Int = 512 << 10) throws {
        lock.lock()
        defer { lock.unlock() }
        precondition(state == .created, "start() called twice")
        try spawnDetachedThread(stackSize: stackSize) { [self] in run() }
        state = .running
    }

    /// True on the loop's own thread.
    public var isCurrent: Bool {
        lock.lock()
        defer { lock.unlock() }
        return thread.map { pthread_equal($0, pthread_self()) != 0 } ?? false
    }

    /// Runs `task` on the loop's thread soon, in the order given. Any thread. Tasks given once
    /// the loop is finishing are dropped.
    public func execute(_ task: @escaping () -> Void) {
        lock.lock()
        guard state == .running || state == .created else {
            lock.unlock()
            return
        }
        tasks.append(task)
        let wake = blocking && !wakePending
        if wake { wakePending = true }
        lock.unlock()
        if wake { poller.wake() }
    }

    /// Runs `task` on the loop's thread once `deadline` (monotonic ns) has passed. Loop thread only.
    public func schedule(at deadline: UInt64, _ task: @escaping () -> Void) {
        timers.append((deadline, task))
    }

    /// Watches `fd` for the owner's `onEvents`. Loop thread only.
    public func watch(_ fd: Int32, token: UInt64, reading: Bool, writing: Bool) throws {
        try poller.watch(fd, token: token, reading: reading, writing: writing)
    }

    /// Watches a listening socket shared with other loops (see `Poller.watchExclusively`).
    /// Loop thread only.
    public func watchExclusively(_ fd: Int32, token: UInt64) throws {
        try poller.watchExclusively(fd, token: token)
    }

    /// Stops watching `fd` (before it is closed). Loop thread only.
    public func forget(_ fd: Int32) {
        poller.forget(fd)
    }

    /// Ends the loop after this iteration. Loop thread only.
    public func finish() {
        lock.lock()
        state = .finishing
        lock.unlock()
    }

    /// Blocks until the loop's thread has ended (or returns at once if it never started).
    public func waitUntilFinished() {
        lock.lock()
        defer { lock.unlock() }
        if state == .created {
            state = .finished
            onEvents = { _ in }
            onIteration = { _ in nil }
        }
        while state != .finished { lock.wait() }
    }

    private func run() {
        nameCurrentThread(name)
        lock.lock()
        thread = pthread_self()
        lock.unlock()
        var timeout: Int32 = 0
        while true {
            // Ready descriptors first, then deadlines: after a long iteration, an answer that
            // is already in a socket is read rather than timed out.
            let events = poller.wait(timeoutMilliseconds: timeout)
            if timeout != 0 {
                lock.lock()
                blocking = false
                lock.unlock()
            }
            runTasks()
            if !events.isEmpty { onEvents(events) }
            let now = monotonicNanoseconds()
            runDueTimers(now)
            var earliest = onIteration(now) ?? now + 1_000_000_000
            for timer in timers { earliest = min(earliest, timer.deadline) }
            lock.lock()
            let finishing = state == .finishing
            timeout = !tasks.isEmpty || earliest <= now ? 0 : Int32(min((earliest - now + 999_999) / 1_000_000, 1_000))
            // Decided under the lock: a task handed in from here on sees `blocking` and wakes.
            blocking = timeout != 0
            lock.unlock()
            if finishing { break }
        }
        // The owner's handlers usually hold the owner, which holds this loop: let go.
        timers.removeAll()
        onEvents = { _ in }
        onIteration = { _ in nil }
        lock.lock()
        state = .finished
        thread = nil // glibc reuses the identity of an ended thread
        tasks.removeAll()
        lock.broadcast()
        lock.unlock()
    }

    private func runTasks() {
        lock.lock()
        swap(&tasks, &running)
        wakePending = false
        lock.unlock()
        for task in running { task() }
        running.removeAll(keepingCapacity: true)
    }

    private func runDueTimers(_ now: UInt64) {
        guard timers.contains(where: { $0.deadline <= now }) else { return }
        let due = timers.filter { $0.deadline <= now }
        timers.removeAll { $0.deadline <= now }
        for timer in due { timer.task() }
    }
}
