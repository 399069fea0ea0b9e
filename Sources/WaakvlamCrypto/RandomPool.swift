#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import COpenSSL

/// Random bytes drawn ahead from OpenSSL's DRBG, for small draws; one per thread (in
/// `ThreadContexts`).
///
/// OpenSSL 3.0 spends about 3 µs on every RAND_bytes call, whatever its size: its CTR-DRBG
/// re-keys an AES context (looking parameters up by name) and asks the kernel for the process
/// id to notice a fork. The relay drew twice per signal (trace ids, payload keys), which cost
/// ~3% of its CPU; from a pool refilled 4 KiB at a time a draw is a copy. Bytes are wiped as
/// they are handed out, so that no copy of a key made from them stays behind, and a process
/// made by `fork` refills before its first draw instead of repeating its parent's bytes.
final class RandomPool {
    static let capacity = 4096
    /// Larger draws go straight to the DRBG.
    static let largestDraw = 256

    private let buffer: UnsafeMutableRawBufferPointer
    /// Where the bytes not yet handed out start.
    private var next = RandomPool.capacity
    /// `forkCount` when the buffer was filled.
    private var filledAfterForks: UInt64 = 0

    init() {
        RandomPool.countForks
        buffer = .allocate(byteCount: Self.capacity, alignment: 16)
    }

    deinit {
        OPENSSL_cleanse(buffer.baseAddress, buffer.count)
        buffer.deallocate()
    }

    /// Fills `out` (at most `largestDraw` bytes) with random bytes.
    func fill(_ out: UnsafeMutableRawBufferPointer) {
        precondition(out.count <= Self.largestDraw, "a large draw goes to the DRBG directly")
        if next + out.count > Self.capacity || filledAfterForks != forkCount {
            SecureRandom.draw(buffer)
            next = 0
            filledAfterForks = forkCount
        }
        let bytes = buffer.baseAddress! + next
        out.baseAddress!.copyMemory(from: bytes, byteCount: out.count)
        OPENSSL_cleanse(bytes, out.count)
        next += out.count
    }

    /// Registers the handler that counts forks in the child, once.
    private static let countForks: Void = {
        precondition(pthread_atfork(nil, nil, { forkCount &+= 1 }) == 0, "pthread_atfork failed")
    }()
}

/// Forks of this process's ancestors and itself, counted in each child (a pool copied by a
/// fork sees the count change).
private nonisolated(unsafe) var forkCount: UInt64 = 0
