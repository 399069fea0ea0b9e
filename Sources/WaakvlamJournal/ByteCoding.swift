import Foundation
import WaakvlamCrypto

/// Appends the journal's primitive encodings to a byte buffer. All integers are
/// little-endian; see docs/JOURNAL.md for the table of encodings.
struct ByteWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    mutating func u32(_ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func u64(_ v: UInt64) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Unsigned LEB128.
    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }

    /// Microseconds since the Unix epoch, as a signed 64-bit integer.
    mutating func time(_ date: Date) { u64(UInt64(bitPattern: JournalTime.microseconds(date))) }

    mutating func data<Bytes: Collection<UInt8>>(_ v: Bytes) {
        varint(UInt64(v.count))
        bytes.append(contentsOf: v)
    }

    /// `data` of `plaintext` sealed with AES-256-GCM (nonce || ciphertext || tag), encrypted
    /// straight into the buffer instead of into an array of its own.
    mutating func sealed(_ plaintext: [UInt8], key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, aad: [UInt8]) throws {
        let count = AESGCM.nonceCount + plaintext.count + AESGCM.tagCount
        varint(UInt64(count))
        let start = bytes.count
        zeros(count)
        try bytes.withUnsafeMutableBytes {
            let sealed = UnsafeMutableRawBufferPointer(rebasing: $0[start..<start + count])
            try AESGCM.seal(plaintext, key: key, nonce: nonce, aad: aad, into: sealed)
        }
    }

    /// `count` zero bytes.
    mutating func zeros(_ count: Int) { bytes.append(contentsOf: repeatElement(0, count: count)) }

    mutating func string(_ s: String) {
        // Native and small strings lend their UTF-8 without a copy of the string.
        if s.utf8.withContiguousStorageIfAvailable({ data($0) }) == nil {
            var s = s
            s.withUTF8 { data($0) }
        }
    }

    mutating func strings(_ list: [String]) {
        varint(UInt64(list.count))
        for s in list { string(s) }
    }

    mutating func optional<T>(_ v: T?, _ write: (inout ByteWriter, T) -> Void) {
        if let v {
            u8(1)
            write(&self, v)
        } else {
            u8(0)
        }
    }
}

/// Reads what `ByteWriter` wrote, with bounds checks: a damaged body gives `malformed`,
/// never a crash.
struct ByteReader {
    struct Malformed: Error {}

    private let base: UnsafeRawBufferPointer
    private(set) var index = 0

    init(_ base: UnsafeRawBufferPointer) { self.base = base }

    var isAtEnd: Bool { index == base.count }

    private mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, base.count - index >= n else { throw Malformed() }
        defer { index += n }
        return UnsafeRawBufferPointer(rebasing: base[index..<index + n])
    }

    mutating func u8() throws -> UInt8 { try take(1)[0] }

    mutating func u64() throws -> UInt64 {
        UInt64(littleEndian: try take(8).loadUnaligned(as: UInt64.self))
    }

    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try u8()
            guard shift < 64 else { throw Malformed() }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    mutating func count() throws -> Int {
        let v = try varint()
        guard v <= UInt64(base.count - index) else { throw Malformed() }
        return Int(v)
    }

    mutating func bool() throws -> Bool {
        switch try u8() {
        case 0: return false
        case 1: return true
        default: throw Malformed()
        }
    }

    mutating func time() throws -> Date {
        JournalTime.date(Int64(bitPattern: try u64()))
    }

    mutating func data() throws -> [UInt8] { Array(try take(try count())) }

    /// Bodies are checksummed and were written from Swift strings, so the fast decoding path
    /// (which would repair rather than reject invalid UTF-8) is safe here.
    mutating func string() throws -> String {
        String(decoding: try take(try count()).bindMemory(to: UInt8.self), as: UTF8.self)
    }

    mutating func strings() throws -> [String] {
        let n = try count()
        var out: [String] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try string()) }
        return out
    }

    /// Passes over a string (or byte string) with the same bounds checks as reading it.
    mutating func skipString() throws { _ = try take(try count()) }

    mutating func skipStrings() throws {
        for _ in 0..<(try count()) { try skipString() }
    }

    mutating func optional<T>(_ read: (inout ByteReader) throws -> T) throws -> T? {
        try bool() ? read(&self) : nil
    }
}

/// The journal's clock resolution: microseconds since the Unix epoch.
public enum JournalTime {
    public static func microseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    }

    public static func date(_ microseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(microseconds) / 1_000_000)
    }

    /// `date` rounded to the journal's resolution, as it reads back from disk.
    public static func rounded(_ date: Date) -> Date { self.date(microseconds(date)) }
}
