import COpenSSL

/// A reusable SHA-256 context for hashing many small inputs in a row (a journal's records):
/// no allocation or lookup per hash. Not thread-safe: one per thread.
public final class SHA256Context {
    private static let digest: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)
    private let context: OpaquePointer

    public init() {
        guard let context = EVP_MD_CTX_new() else {
            fatalError("EVP_MD_CTX_new failed: out of memory")
        }
        self.context = context
    }

    deinit { EVP_MD_CTX_free(context) }

    public func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: SHA256.byteCount)
        out.withUnsafeMutableBytes { hash(bytes, into: $0.baseAddress!) }
        return out
    }

    /// Writes the 32-byte digest of `bytes` to `out` (which may not overlap `bytes`): no
    /// allocation, for hashing in place inside a buffer.
    public func hash(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        guard EVP_DigestInit_ex(context, Self.digest, nil) == 1,
              EVP_DigestUpdate(context, bytes.baseAddress, bytes.count) == 1,
              EVP_DigestFinal_ex(context, out.assumingMemoryBound(to: UInt8.self), nil) == 1 else {
            fatalError("SHA-256 failed inside OpenSSL")
        }
    }
}
