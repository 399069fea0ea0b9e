import COpenSSL
import Foundation

/// Errors from the cryptographic primitives; they indicate misuse or a corrupted input.
public enum CryptoError: Error, Equatable, Sendable {
    case openSSL(String)
    case authenticationFailed
    case invalidKeyLength
}

/// SHA-256 over bytes, in the calling thread's reusable state (OpenSSL 3's one-shot SHA256()
/// would look the digest up by name, and `EVP_Digest` create and free a context, per call).
public enum SHA256 {
    public static let byteCount = 32

    public static func hash<D: ContiguousBytes>(_ data: D) -> [UInt8] {
        let context = ThreadContexts.current.digest
        return data.withUnsafeBytes { context.hash($0) }
    }

    /// Writes the 32-byte digest of `data` to `out`, without allocating an array for it.
    public static func hash(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        ThreadContexts.current.digest.hash(data, into: out)
    }

    /// The digest of `data` in lower-case hex (the digest itself stays on the stack).
    public static func hexDigest<D: ContiguousBytes>(_ data: D) -> String {
        withUnsafeTemporaryAllocation(byteCount: byteCount, alignment: 8) { digest in
            data.withUnsafeBytes { hash($0, into: digest.baseAddress!) }
            return Hex.encode(UnsafeRawBufferPointer(digest))
        }
    }
}

/// HMAC-SHA256 under one key, used for pseudonyms (keyed hashes of a data subject).
///
/// RFC 2104: H((K ^ opad) || H((K ^ ipad) || data)). The states after hashing the key's two
/// padded blocks are made once and copied for each MAC, which then hashes only the data and
/// the inner digest (OpenSSL 3's one-shot HMAC() fetched the MAC and the digest by name on
/// every call, and hashed both blocks again).
public struct HMACSHA256: @unchecked Sendable {
    private static let blockSize = 64
    /// Never changed after `init`: copied, not shared.
    private let inner: SHA256_CTX
    private let outer: SHA256_CTX

    public init<K: ContiguousBytes>(key: K) {
        var block = key.withUnsafeBytes { [UInt8]($0) }
        if block.count > Self.blockSize { block = SHA256.hash(block) }
        block += [UInt8](repeating: 0, count: Self.blockSize - block.count)
        func state(afterHashing pad: [UInt8]) -> SHA256_CTX {
            var state = SHA256_CTX()
            waakvlam_sha256_init(&state)
            waakvlam_sha256_update(&state, pad, pad.count)
            return state
        }
        inner = state(afterHashing: block.map { $0 ^ 0x36 })
        outer = state(afterHashing: block.map { $0 ^ 0x5c })
    }

    public func authenticate<D: ContiguousBytes>(_ data: D) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: SHA256.byteCount) { buffer, count in
            data.withUnsafeBytes { authenticate($0, into: UnsafeMutableRawPointer(buffer.baseAddress!)) }
            count = SHA256.byteCount
        }
    }

    /// Writes the 32-byte MAC of `data` to `out`, without allocating an array for it.
    public func authenticate(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        var state = inner
        waakvlam_sha256_update(&state, data.baseAddress, data.count)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: SHA256.byteCount) { digest in
            waakvlam_sha256_final(&state, digest.baseAddress!)
            state = outer
            waakvlam_sha256_update(&state, digest.baseAddress!, SHA256.byteCount)
        }
        waakvlam_sha256_final(&state, out.assumingMemoryBound(to: UInt8.self))
    }
}

/// Cryptographically secure random bytes from OpenSSL's DRBG. Small draws come from the
/// calling thread's `RandomPool`, which asks the DRBG for 4 KiB at a time.
public enum SecureRandom {
    /// Overwrites secret bytes with zeros in a way the compiler cannot drop (OPENSSL_cleanse),
    /// once they are no longer needed: keys drawn into a stack buffer, say.
    public static func wipe(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress else { return }
        OPENSSL_cleanse(base, buffer.count)
    }

    public static func bytes(_ count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            fill(UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    /// Fills `buffer` with random bytes (e.g. on the stack, where an array is not needed).
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard buffer.count > 0 else { return }
        if buffer.count <= RandomPool.largestDraw {
            ThreadContexts.current.random.fill(buffer)
        } else {
            draw(buffer)
        }
    }

    /// Straight from the DRBG.
    static func draw(_ buffer: UnsafeMutableRawBufferPointer) {
        guard RAND_bytes(buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(buffer.count)) == 1 else {
            fatalError("RAND_bytes failed: the system random source is unavailable")
        }
    }
}

/// AES-256-GCM, fetched once: OpenSSL 3 otherwise looks the cipher up by name (locks and
/// string compares) on every init.
let aes256GCM: OpaquePointer? = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil)

/// AES-256-GCM with a 12-byte nonce and a 16-byte tag appended to the ciphertext. Each call
/// uses the calling thread's cipher context, which has the cipher set once: setting a key and
/// nonce on it allocates nothing.
public enum AESGCM {
    public static let keyCount = 32
    public static let nonceCount = 12
    public static let tagCount = 16

    /// Returns nonce || ciphertext || tag, with a random nonce.
    public static func seal(_ plaintext: [UInt8], key: [UInt8], aad: [UInt8] = []) throws -> [UInt8] {
        try withUnsafeTemporaryAllocation(byteCount: nonceCount, alignment: 1) { nonce in
            SecureRandom.fill(nonce)
            return try seal(plaintext, key: key, nonce: UnsafeRawBufferPointer(nonce), aad: aad)
        }
    }

    /// Returns nonce || ciphertext || tag. The 12-byte `nonce` must never be used twice with
    /// the same key: random, for instance drawn together with a fresh key (one call to the
    /// random generator instead of two, which is what a fresh key per message mostly costs).
    public static func seal(_ plaintext: [UInt8], key: [UInt8], nonce: [UInt8], aad: [UInt8] = []) throws -> [UInt8] {
        try nonce.withUnsafeBytes { try seal(plaintext, key: key, nonce: $0, aad: aad) }
    }

    private static func seal(_ plaintext: [UInt8], key: [UInt8], nonce: UnsafeRawBufferPointer, aad: [UInt8]) throws -> [UInt8] {
        let count = nonceCount + plaintext.count + tagCount
        return try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try key.withUnsafeBytes {
                try seal(plaintext, key: $0, nonce: nonce, aad: aad, into: UnsafeMutableRawBufferPointer(buffer))
            }
            initialized = count
        }
    }

    /// Writes nonce || ciphertext || tag into `destination`, which must be exactly
    /// `nonceCount + plaintext.count + tagCount` bytes: for a caller that seals straight into
    /// a larger buffer. The nonce rule of `seal(_:key:nonce:aad:)` holds.
    public static func seal(_ plaintext: [UInt8], key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, aad: [UInt8],
                            into destination: UnsafeMutableRawBufferPointer) throws {
        guard key.count == keyCount else { throw CryptoError.invalidKeyLength }
        precondition(nonce.count == nonceCount, "AES-GCM nonces are 12 bytes")
        precondition(destination.count == nonceCount + plaintext.count + tagCount, "room for exactly nonce, ciphertext and tag")
        let out = destination.baseAddress!
        let ctx = ThreadContexts.current.sealing
        defer { _ = EVP_EncryptInit_ex(ctx, nil, nil, ThreadContexts.zeroKey, nil) }
        guard EVP_EncryptInit_ex(ctx, nil, nil, key.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                 nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1 else {
            throw CryptoError.openSSL("EVP_EncryptInit_ex")
        }
        var length: Int32 = 0
        if !aad.isEmpty {
            guard EVP_EncryptUpdate(ctx, nil, &length, aad, Int32(aad.count)) == 1 else {
                throw CryptoError.openSSL("EVP_EncryptUpdate(aad)")
            }
        }
        out.copyMemory(from: nonce.baseAddress!, byteCount: nonceCount)
        let base = out.assumingMemoryBound(to: UInt8.self)
        var n: Int32 = 0
        guard EVP_EncryptUpdate(ctx, base + nonceCount, &n, plaintext, Int32(plaintext.count)) == 1 else {
            throw CryptoError.openSSL("EVP_EncryptUpdate")
        }
        var final: Int32 = 0
        guard EVP_EncryptFinal_ex(ctx, base + nonceCount + Int(n), &final) == 1 else {
            throw CryptoError.openSSL("EVP_EncryptFinal_ex")
        }
        precondition(Int(n + final) == plaintext.count)
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(tagCount), base + nonceCount + plaintext.count) == 1 else {
            throw CryptoError.openSSL("EVP_CTRL_GCM_GET_TAG")
        }
    }

    /// Opens nonce || ciphertext || tag; throws `authenticationFailed` on any tampering.
    public static func open(_ sealed: [UInt8], key: [UInt8], aad: [UInt8] = []) throws -> [UInt8] {
        guard key.count == keyCount else { throw CryptoError.invalidKeyLength }
        guard sealed.count >= nonceCount + tagCount else { throw CryptoError.authenticationFailed }
        let ctx = ThreadContexts.current.opening
        defer { _ = EVP_DecryptInit_ex(ctx, nil, nil, ThreadContexts.zeroKey, nil) }
        let cipherCount = sealed.count - nonceCount - tagCount
        var out = [UInt8](repeating: 0, count: max(cipherCount, 1))
        try sealed.withUnsafeBufferPointer { input in
            let base = input.baseAddress!
            guard EVP_DecryptInit_ex(ctx, nil, nil, key, base) == 1 else {
                throw CryptoError.openSSL("EVP_DecryptInit_ex")
            }
            var length: Int32 = 0
            if !aad.isEmpty {
                guard EVP_DecryptUpdate(ctx, nil, &length, aad, Int32(aad.count)) == 1 else {
                    throw CryptoError.openSSL("EVP_DecryptUpdate(aad)")
                }
            }
            guard EVP_DecryptUpdate(ctx, &out, &length, base + nonceCount, Int32(cipherCount)) == 1 else {
                throw CryptoError.authenticationFailed
            }
            let tag = UnsafeMutableRawPointer(mutating: base + nonceCount + cipherCount)
            guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(tagCount), tag) == 1 else {
                throw CryptoError.openSSL("EVP_CTRL_GCM_SET_TAG")
            }
            var final: Int32 = 0
            let ok = out.withUnsafeMutableBufferPointer { EVP_DecryptFinal_ex(ctx, $0.baseAddress! + Int(length), &final) }
            guard ok == 1 else { throw CryptoError.authenticationFailed }
        }
        return Array(out.prefix(cipherCount))
    }
}

/// Lower-case hexadecimal encoding and decoding.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        // Arrays and slices are read in place; other sequences copied first.
        if let text = bytes.withContiguousStorageIfAvailable({ encode(UnsafeRawBufferPointer($0)) }) { return text }
        return Array(bytes).withUnsafeBytes { encode($0) }
    }

    /// Written straight into the string's storage.
    public static func encode(_ bytes: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { buffer in
            write(bytes, to: buffer)
            return bytes.count * 2
        }
    }

    /// Writes the `2 * bytes.count` digits to the start of `out`, which must have room for them
    /// (for a string built in one piece with other text).
    public static func write(_ bytes: UnsafeRawBufferPointer, to out: UnsafeMutableBufferPointer<UInt8>) {
        precondition(out.count >= bytes.count * 2, "no room for the hex digits")
        for (index, byte) in bytes.enumerated() {
            out[2 * index] = digits[Int(byte >> 4)]
            out[2 * index + 1] = digits[Int(byte & 0x0f)]
        }
    }

    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = value(chars[i]), let lo = value(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }
}
