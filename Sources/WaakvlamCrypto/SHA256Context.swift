import COpenSSL

/// A reusable SHA-256 state for hashing many small inputs in a row (a journal's records),
/// through OpenSSL's low-level functions: no allocation and no provider dispatch per hash
/// (shim.h says why not EVP). Not thread-safe: one per thread.
public final class SHA256Context {
    private let state = UnsafeMutablePointer<SHA256_CTX>.allocate(capacity: 1)

    public init() {}

    deinit { state.deallocate() }

    public func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: SHA256.byteCount) { buffer, count in
            hash(bytes, into: UnsafeMutableRawPointer(buffer.baseAddress!))
            count = SHA256.byteCount
        }
    }

    /// Writes the 32-byte digest of `bytes` to `out`, for hashing in place inside a buffer:
    /// `out` may overlap `bytes`, as the digest is written once all of them are hashed.
    public func hash(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        waakvlam_sha256_init(state)
        waakvlam_sha256_update(state, bytes.baseAddress, bytes.count)
        waakvlam_sha256_final(state, out.assumingMemoryBound(to: UInt8.self))
    }
}
