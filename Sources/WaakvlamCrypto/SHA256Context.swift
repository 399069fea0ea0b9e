import COpenSSL

/// A reusable SHA-256 context for hashing many small inputs in a row (a journal's records):
/// no lookup per hash, and one allocation (OpenSSL 3.0 renews the state on every init).
/// Not thread-safe: one per thread.
public final class SHA256Context {
    private let context: OpaquePointer

    public init() {
        guard let context = EVP_MD_CTX_new() else {
            fatalError("EVP_MD_CTX_new failed: out of memory")
        }
        self.context = context
    }

    deinit { EVP_MD_CTX_free(context) }

    public func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: SHA256.byteCount) { buffer, count in
            hash(bytes, into: UnsafeMutableRawPointer(buffer.baseAddress!))
            count = SHA256.byteCount
        }
    }

    /// Writes the 32-byte digest of `bytes` to `out`, for hashing in place inside a buffer:
    /// `out` may overlap `bytes`, as the digest is written once all of them are hashed.
    public func hash(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        guard EVP_DigestInit_ex(context, sha256Digest, nil) == 1,
              EVP_DigestUpdate(context, bytes.baseAddress, bytes.count) == 1,
              EVP_DigestFinal_ex(context, out.assumingMemoryBound(to: UInt8.self), nil) == 1 else {
            fatalError("SHA-256 failed inside OpenSSL")
        }
    }
}
