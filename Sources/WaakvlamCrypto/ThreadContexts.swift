#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import COpenSSL
import WaakvlamSystem

/// OpenSSL contexts kept per thread, so that hashing and sealing allocate nothing they can
/// avoid: a fresh cipher context costs two allocations per message (a context reused with
/// the cipher already set costs none). Each thread gets its own on first use; they are freed
/// when it ends. Also the thread's SHA-256 state and pool of random bytes.
final class ThreadContexts {
    /// SHA-256.
    let digest = SHA256Context()
    /// AES-256-GCM contexts with the cipher set: each message only sets its key and nonce.
    let sealing: OpaquePointer
    let opening: OpaquePointer
    /// Set after each message, so that a payload key (and its expanded schedule) does not
    /// stay in a context's memory until the thread's next message: purging a payload destroys
    /// its key, and no copy of it should linger.
    static let zeroKey = [UInt8](repeating: 0, count: 32)
    let random = RandomPool()

    private init() {
        guard let sealing = EVP_CIPHER_CTX_new(), let opening = EVP_CIPHER_CTX_new(),
              EVP_EncryptInit_ex(sealing, aes256GCM, nil, nil, nil) == 1,
              EVP_DecryptInit_ex(opening, aes256GCM, nil, nil, nil) == 1 else {
            fatalError("cannot set up AES-256-GCM in OpenSSL")
        }
        self.sealing = sealing
        self.opening = opening
    }

    deinit {
        EVP_CIPHER_CTX_free(sealing)
        EVP_CIPHER_CTX_free(opening)
    }

    private static let perThread = PerThread { ThreadContexts() }

    /// The calling thread's contexts (freed when it ends).
    static var current: ThreadContexts { perThread.current }
}
