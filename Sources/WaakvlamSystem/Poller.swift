#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// An epoll set plus an eventfd that other threads use to wake the waiting one: the core of an
/// event loop. Only the loop's thread calls `watch`, `forget` and `wait`; `wake` may be called
/// from any thread.
public final class Poller {
    /// One ready descriptor, by the token it was registered with.
    public struct Event {
        public let token: UInt64
        public let readable: Bool
        public let writable: Bool
        /// Error or hang-up: the next read or write will say which.
        public let failed: Bool
    }

    private let epollFD: Int32
    private let wakeFD: Int32
    private var buffer: [epoll_event]
    /// What `wait` returns, kept for its capacity (the caller lets go of it before waiting again).
    private var events: [Event] = []
    /// The token reserved for the wake-up descriptor.
    private static let wakeToken = UInt64.max

    public init(capacity: Int = 256) throws {
        epollFD = try syscall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        do {
            wakeFD = try syscall("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
        } catch {
            close(epollFD)
            throw error
        }
        buffer = [epoll_event](repeating: epoll_event(), count: capacity)
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = Self.wakeToken
        _ = epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event)
    }

    deinit {
        close(epollFD)
        close(wakeFD)
    }

    /// Registers `fd` (or changes what it is watched for). Level-triggered.
    public func watch(_ fd: Int32, token: UInt64, reading: Bool, writing: Bool) throws {
        precondition(token != Self.wakeToken, "token reserved for wake-ups")
        var event = epoll_event()
        event.events = (reading ? EPOLLIN.rawValue : 0) | (writing ? EPOLLOUT.rawValue : 0)
        event.data.u64 = token
        if epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event) == 0 { return }
        guard errno == ENOENT else { throw SystemError(call: "epoll_ctl", errno: errno) }
        _ = try syscall("epoll_ctl") { epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) }
    }

    /// Registers a listening socket that other pollers watch too, for reading, exclusively
    /// (EPOLLEXCLUSIVE): a new connection wakes one of the waiting pollers instead of all of
    /// them. Level-triggered. `fd` must not be watched by this poller already (an exclusive
    /// registration cannot be changed, only forgotten and made again).
    public func watchExclusively(_ fd: Int32, token: UInt64) throws {
        precondition(token != Self.wakeToken, "token reserved for wake-ups")
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLEXCLUSIVE.rawValue
        event.data.u64 = token
        _ = try syscall("epoll_ctl") { epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) }
    }

    /// Stops watching `fd`; call before closing it.
    public func forget(_ fd: Int32) {
        var event = epoll_event()
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, &event)
    }

    /// Makes the current or next `wait` return.
    public func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Waits up to `timeoutMilliseconds` (-1: without limit) and returns the ready descriptors.
    /// A wake-up returns early, with or without events.
    public func wait(timeoutMilliseconds: Int32) -> [Event] {
        let count = buffer.withUnsafeMutableBufferPointer {
            epoll_wait(epollFD, $0.baseAddress, Int32($0.count), timeoutMilliseconds)
        }
        events.removeAll(keepingCapacity: true)
        guard count > 0 else { return events } // a timeout, or EINTR: the caller loops anyway
        for index in 0..<Int(count) {
            let event = buffer[index]
            if event.data.u64 == Self.wakeToken {
                var value: UInt64 = 0
                _ = read(wakeFD, &value, 8)
                continue
            }
            let flags = event.events
            events.append(Event(token: event.data.u64, readable: flags & EPOLLIN.rawValue != 0,
                                writable: flags & EPOLLOUT.rawValue != 0,
                                failed: flags & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0))
        }
        return events
    }
}
