import COpenSSL
import Foundation

/// Errors from the cryptographic primitives; they indicate misuse or a corrupted input.
public enum CryptoError: Error, Equatable, Sendable {
    case openSSL(String)
    case authenticationFailed
    case invalidKeyLength
}

/// SHA-256, fetched once: OpenSSL 3's one-shot SHA256() looks the digest up by name (locks
/// and string compares) on every call, which dominated hashing many small records.
private let sha256Digest: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)

/// SHA-256 over bytes.
public enum SHA256 {
    public static let byteCount = 32

    public static func hash<D: ContiguousBytes>(_ data: D) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        data.withUnsafeBytes { raw in
            _ = EVP_Digest(raw.baseAddress, raw.count, &out, nil, sha256Digest, nil)
        }
        return out
    }
}

/// HMAC-SHA256 under one key, used for pseudonyms (keyed hashes of a data subject).
///
/// RFC 2104 over the SHA-256 fetched once: H((K ^ opad) || H((K ^ ipad) || data)). OpenSSL
/// 3's one-shot HMAC() fetches the MAC and the digest by name on every call, which cost more
/// than the hashing itself (the relay makes two pseudonyms per signal). The key's padded
/// blocks are made once; each MAC hashes from buffers on the stack.
public struct HMACSHA256: Sendable {
    private static let blockSize = 64
    private let innerPad: [UInt8]
    private let outerPad: [UInt8]

    public init<K: ContiguousBytes>(key: K) {
        var block = key.withUnsafeBytes { [UInt8]($0) }
        if block.count > Self.blockSize { block = SHA256.hash(block) }
        block += [UInt8](repeating: 0, count: Self.blockSize - block.count)
        innerPad = block.map { $0 ^ 0x36 }
        outerPad = block.map { $0 ^ 0x5c }
    }

    public func authenticate<D: ContiguousBytes>(_ data: D) -> [UInt8] {
        var mac = [UInt8](repeating: 0, count: SHA256.byteCount)
        data.withUnsafeBytes { data in
            withUnsafeTemporaryAllocation(byteCount: Self.blockSize + max(data.count, SHA256.byteCount), alignment: 16) { buffer in
                let base = buffer.baseAddress!
                innerPad.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: Self.blockSize) }
                if data.count > 0 { (base + Self.blockSize).copyMemory(from: data.baseAddress!, byteCount: data.count) }
                let innerHash = base + Self.blockSize  // overwrites the data once it is hashed
                _ = EVP_Digest(base, Self.blockSize + data.count, innerHash.assumingMemoryBound(to: UInt8.self), nil, sha256Digest, nil)
                outerPad.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: Self.blockSize) }
                _ = EVP_Digest(base, Self.blockSize + SHA256.byteCount, &mac, nil, sha256Digest, nil)
            }
        }
        return mac
    }
}

/// Cryptographically secure random bytes from OpenSSL's DRBG.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&out, Int32(count)) == 1 else {
            fatalError("RAND_bytes failed: the system random source is unavailable")
        }
        return out
    }
}

/// AES-256-GCM, fetched once: OpenSSL 3 otherwise looks the cipher up by name (locks and
/// string compares) on every init.
private let aes256GCM: OpaquePointer? = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil)

/// AES-256-GCM with a 12-byte nonce and a 16-byte tag appended to the ciphertext.
public enum AESGCM {
    public static let keyCount = 32
    public static let nonceCount = 12
    public static let tagCount = 16

    /// Returns nonce || ciphertext || tag, with a random nonce.
    public static func seal(_ plaintext: [UInt8], key: [UInt8], aad: [UInt8] = []) throws -> [UInt8] {
        try seal(plaintext, key: key, nonce: SecureRandom.bytes(nonceCount), aad: aad)
    }

    /// Returns nonce || ciphertext || tag. The 12-byte `nonce` must never be used twice with
    /// the same key: random, for instance drawn together with a fresh key (one call to the
    /// random generator instead of two, which is what a fresh key per message mostly costs).
    public static func seal(_ plaintext: [UInt8], key: [UInt8], nonce: [UInt8], aad: [UInt8] = []) throws -> [UInt8] {
        guard key.count == keyCount else { throw CryptoError.invalidKeyLength }
        precondition(nonce.count == nonceCount, "AES-GCM nonces are 12 bytes")
        guard let ctx = EVP_CIPHER_CTX_new() else { throw CryptoError.openSSL("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        guard EVP_EncryptInit_ex(ctx, aes256GCM, nil, key, nonce) == 1 else {
            throw CryptoError.openSSL("EVP_EncryptInit_ex")
        }
        var length: Int32 = 0
        if !aad.isEmpty {
            guard EVP_EncryptUpdate(ctx, nil, &length, aad, Int32(aad.count)) == 1 else {
                throw CryptoError.openSSL("EVP_EncryptUpdate(aad)")
            }
        }
        var out = [UInt8](repeating: 0, count: nonceCount + plaintext.count + tagCount)
        for i in 0..<nonceCount { out[i] = nonce[i] }
        let written: Int32 = try out.withUnsafeMutableBufferPointer { buffer in
            var n: Int32 = 0
            guard EVP_EncryptUpdate(ctx, buffer.baseAddress! + nonceCount, &n, plaintext, Int32(plaintext.count)) == 1 else {
                throw CryptoError.openSSL("EVP_EncryptUpdate")
            }
            var final: Int32 = 0
            guard EVP_EncryptFinal_ex(ctx, buffer.baseAddress! + nonceCount + Int(n), &final) == 1 else {
                throw CryptoError.openSSL("EVP_EncryptFinal_ex")
            }
            guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(tagCount),
                                      buffer.baseAddress! + nonceCount + Int(n + final)) == 1 else {
                throw CryptoError.openSSL("EVP_CTRL_GCM_GET_TAG")
            }
            return n + final
        }
        precondition(Int(written) == plaintext.count)
        return out
    }

    /// Opens nonce || ciphertext || tag; throws `authenticationFailed` on any tampering.
    public static func open(_ sealed: [UInt8], key: [UInt8], aad: [UInt8] = []) throws -> [UInt8] {
        guard key.count == keyCount else { throw CryptoError.invalidKeyLength }
        guard sealed.count >= nonceCount + tagCount else { throw CryptoError.authenticationFailed }
        guard let ctx = EVP_CIPHER_CTX_new() else { throw CryptoError.openSSL("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let cipherCount = sealed.count - nonceCount - tagCount
        var out = [UInt8](repeating: 0, count: max(cipherCount, 1))
        try sealed.withUnsafeBufferPointer { input in
            let base = input.baseAddress!
            guard EVP_DecryptInit_ex(ctx, aes256GCM, nil, key, base) == 1 else {
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
        let bytes = Array(bytes)
        // Written straight into the string's storage.
        return String(unsafeUninitializedCapacity: bytes.count * 2) { buffer in
            for (index, byte) in bytes.enumerated() {
                buffer[2 * index] = digits[Int(byte >> 4)]
                buffer[2 * index + 1] = digits[Int(byte & 0x0f)]
            }
            return bytes.count * 2
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
