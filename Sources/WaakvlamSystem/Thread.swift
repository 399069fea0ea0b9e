#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Starts a detached POSIX thread with an explicit stack size, for servers that run one
/// thread per connection (Foundation's `Thread` allocates more per thread and its default
/// stack is larger than a connection needs).
public func spawnDetachedThread(stackSize: Int, _ body: @escaping () -> Void) throws {
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    pthread_attr_setstacksize(&attributes, max(stackSize, Int(PTHREAD_STACK_MIN)))
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    #if canImport(Glibc)
    var thread = pthread_t()
    #else
    var thread: pthread_t?
    #endif
    let result = pthread_create(&thread, &attributes, { raw in
        let box = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, context)
    if result != 0 {
        Unmanaged<ThreadBody>.fromOpaque(context).release()
        throw SystemError(call: "pthread_create", errno: result)
    }
}

/// Names the calling thread as `top -H`, `ps -L` and debuggers show it; Linux keeps 15 bytes
/// of it. (Foundation's `Thread.name`, set before `start`, does not reach the kernel there,
/// and Glibc's `pthread_setname_np` is not visible to Swift, so this writes the thread's
/// `comm` file, as `pthread_setname_np` itself does.)
public func nameCurrentThread(_ name: String) {
    #if canImport(Glibc)
    let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return }
    let bytes = Array(name.utf8.prefix(15))
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    #endif
}

/// One object per thread, made on the thread's first use and released when the thread ends:
/// a POSIX thread-specific key (Swift has no thread-local stored properties here). For state
/// a hot path reuses instead of allocating or sharing behind a lock. Meant for a `static let`:
/// its key is never given back, and a process has only so many (PTHREAD_KEYS_MAX).
public final class PerThread<Value: AnyObject>: @unchecked Sendable {
    @usableFromInline let key: pthread_key_t
    @usableFromInline let make: () -> Value

    public init(_ make: @escaping () -> Value) {
        var key = pthread_key_t()
        let created = pthread_key_create(&key) { value in
            // The thread ends: its object with it.
            guard let value else { return }
            Unmanaged<AnyObject>.fromOpaque(value).release()
        }
        precondition(created == 0, "pthread_key_create failed")
        self.key = key
        self.make = make
    }

    /// The calling thread's object.
    @inlinable public var current: Value {
        if let existing = pthread_getspecific(key) {
            return Unmanaged<Value>.fromOpaque(existing).takeUnretainedValue()
        }
        let value = make()
        pthread_setspecific(key, Unmanaged.passRetained(value).toOpaque())
        return value
    }
}
