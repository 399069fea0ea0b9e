#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Fast JSON text for the hot paths (log lines, API answers, pushed messages): the values
/// that `JSONSerialization` takes, written straight into bytes with the object keys sorted.
///
/// Why not `JSONSerialization`: on Linux it bridges every dictionary to `NSDictionary`, casts
/// each value dynamically and sorts keys with a locale-aware `NSString` comparison; for the
/// relay's small objects that cost more than the policy check and the journal write together.
/// The output is the same JSON, except that keys are sorted by their UTF-8 bytes (a stable,
/// locale-free order) rather than case-insensitively.
public enum JSONText {
    /// JSON text that is written as it is (for example a stored payload that is already
    /// canonical JSON), so that it need not be parsed only to be written again.
    public struct Fragment: Sendable {
        public let bytes: [UInt8]

        /// `bytes` must be one complete JSON value; it is not checked.
        public init(_ bytes: [UInt8]) { self.bytes = bytes }
    }

    /// JSON written front to back into one buffer, members in the order written (write keys
    /// sorted where a stable order matters): the cheapest way to build the hot-path messages,
    /// one allocation instead of one per member.
    public struct Writer: Sendable {
        public private(set) var bytes: [UInt8] = []
        /// Per open container, one bit (the innermost lowest): whether a value was written
        /// in it yet (for the commas). Deeper than 64 containers, the outer bits go to `outer`.
        private var written: UInt64 = 0
        private var depth = 0
        private var outer: [UInt64] = []

        public init(capacity: Int = 512) { bytes.reserveCapacity(capacity) }

        public mutating func beginObject(_ key: String? = nil) { open(key, UInt8(ascii: "{")) }
        public mutating func endObject() { close(UInt8(ascii: "}")) }
        public mutating func beginArray(_ key: String? = nil) { open(key, UInt8(ascii: "[")) }
        public mutating func endArray() { close(UInt8(ascii: "]")) }

        public mutating func string(_ key: String? = nil, _ text: String) {
            member(key)
            JSONText.appendString(text, to: &bytes)
        }

        public mutating func int(_ key: String? = nil, _ number: Int) {
            member(key)
            JSONText.appendInteger(number, to: &bytes)
        }

        /// RFC 3339 UTC with milliseconds, as `JSONText.timestamp`.
        public mutating func timestamp(_ key: String? = nil, _ date: Date) {
            member(key)
            JSONText.appendTimestamp(date, to: &bytes)
        }

        /// `json`, one complete JSON value, as it is.
        public mutating func fragment(_ key: String? = nil, _ json: [UInt8]) {
            member(key)
            bytes.append(contentsOf: json)
        }

        public mutating func strings(_ key: String? = nil, _ texts: [String]) {
            beginArray(key)
            for text in texts { string(nil, text) }
            endArray()
        }

        private mutating func member(_ key: String?) {
            if depth > 0 {
                if written & 1 != 0 { bytes.append(UInt8(ascii: ",")) }
                written |= 1
            }
            if let key {
                JSONText.appendString(key, to: &bytes)
                bytes.append(UInt8(ascii: ":"))
            }
        }

        private mutating func open(_ key: String?, _ bracket: UInt8) {
            member(key)
            bytes.append(bracket)
            if depth % 64 == 63 {
                outer.append(written)
                written = 0
            } else {
                written <<= 1
            }
            depth += 1
        }

        private mutating func close(_ bracket: UInt8) {
            depth -= 1
            if depth % 64 == 63 {
                written = outer.removeLast()
            } else {
                written >>= 1
            }
            bytes.append(bracket)
        }
    }

    /// `value` as JSON. Strings, Swift integers and floating-point numbers, Bool, NSNull,
    /// fragments, arrays and `[String: Any]` are written directly; anything else (an `NSNumber` from a
    /// parsed document, say) goes through `JSONSerialization`. Non-finite numbers become null.
    /// `escapingSlashes` writes "/" as "\/", as `JSONSerialization` does by default.
    public static func encode(_ value: Any, escapingSlashes: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        append(value, to: &out, escapingSlashes: escapingSlashes)
        return out
    }

    public static func append(_ value: Any, to out: inout [UInt8], escapingSlashes: Bool = false) {
        switch value {
        case let text as String:
            appendString(text, to: &out, escapingSlashes: escapingSlashes)
        case let object as [String: Any]:
            out.append(UInt8(ascii: "{"))
            var first = true
            for key in object.keys.sorted() {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                appendString(key, to: &out, escapingSlashes: escapingSlashes)
                out.append(UInt8(ascii: ":"))
                append(object[key]!, to: &out, escapingSlashes: escapingSlashes)
            }
            out.append(UInt8(ascii: "}"))
        case let array as [Any]:
            out.append(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                append(element, to: &out, escapingSlashes: escapingSlashes)
            }
            out.append(UInt8(ascii: "]"))
        default:
            appendScalar(value, to: &out, escapingSlashes: escapingSlashes)
        }
    }

    private static func appendScalar(_ value: Any, to out: inout [UInt8], escapingSlashes: Bool) {
        // Exact types only: a bridged NSNumber could be read as Bool or Int alike.
        let type = type(of: value)
        if type == Bool.self {
            out.append(contentsOf: (value as! Bool) ? Array("true".utf8) : Array("false".utf8))
        } else if type == Int.self {
            out.append(contentsOf: String(value as! Int).utf8)
        } else if type == Int64.self {
            out.append(contentsOf: String(value as! Int64).utf8)
        } else if type == UInt64.self {
            out.append(contentsOf: String(value as! UInt64).utf8)
        } else if type == Int32.self {
            out.append(contentsOf: String(value as! Int32).utf8)
        } else if type == UInt32.self {
            out.append(contentsOf: String(value as! UInt32).utf8)
        } else if type == UInt16.self {
            out.append(contentsOf: String(value as! UInt16).utf8)
        } else if type == UInt8.self {
            out.append(contentsOf: String(value as! UInt8).utf8)
        } else if type == UInt.self {
            out.append(contentsOf: String(value as! UInt).utf8)
        } else if type == Double.self {
            append(value as! Double, to: &out)
        } else if type == Float.self {
            append(Double(value as! Float), to: &out)
        } else if type == Substring.self {
            appendString(String(value as! Substring), to: &out, escapingSlashes: escapingSlashes)
        } else if let fragment = value as? Fragment {
            out.append(contentsOf: fragment.bytes)
        } else if value is NSNull {
            out.append(contentsOf: "null".utf8)
        } else {
            // Wrapped in an array, since JSONSerialization wants a container at the top.
            var options: JSONSerialization.WritingOptions = []
            if !escapingSlashes { options.insert(.withoutEscapingSlashes) }
            guard let data = try? JSONSerialization.data(withJSONObject: [value], options: options), data.count >= 2 else {
                out.append(contentsOf: "null".utf8)
                return
            }
            out.append(contentsOf: data.dropFirst().dropLast())
        }
    }

    /// Like JSONSerialization: the shortest text that reads back as the same number, without
    /// a trailing ".0".
    public static func append(_ number: Double, to out: inout [UInt8]) {
        guard number.isFinite else {
            out.append(contentsOf: "null".utf8)
            return
        }
        var text = number.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        out.append(contentsOf: text.utf8)
    }

    /// `text` as a JSON string literal: quote, backslash and control characters escaped
    /// (and "/" when `escapingSlashes`); everything else as UTF-8.
    public static func appendString(_ text: String, to out: inout [UInt8], escapingSlashes: Bool = false) {
        // Most text needs no escape at all: then it is copied as a whole, scanned and copied
        // from the string's own buffer (far cheaper than the UTF-8 view's iterator, and
        // unlike `withUTF8` it needs no mutable copy of the string).
        let copied = text.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            guard needsNoEscape(bytes, escapingSlashes: escapingSlashes) else { return false }
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: bytes)
            out.append(UInt8(ascii: "\""))
            return true
        }
        if copied == true { return }
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "/") where escapingSlashes: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "/")])
            case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                        hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Whether `appendString` would write `text` as it is, between quotes (no quote,
    /// backslash or control character). Escaping goes byte by byte, so the parts of a value
    /// can be checked apart and then written with `appendUTF8`.
    public static func isPlain(_ text: String) -> Bool {
        text.utf8.withContiguousStorageIfAvailable { needsNoEscape($0, escapingSlashes: false) }
            ?? text.utf8.allSatisfy { $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
    }

    /// Appends `text`'s UTF-8 bytes as they are, from the string's own buffer (handing `utf8`
    /// to `append(contentsOf:)` would retain the string).
    public static func appendUTF8(_ text: String, to out: inout [UInt8]) {
        if text.utf8.withContiguousStorageIfAvailable({ out.append(contentsOf: $0) }) == nil { out.append(contentsOf: text.utf8) }
    }

    /// Whether `bytes` hold nothing a JSON string must escape: no quote, backslash or control
    /// character, and no "/" when `escapingSlashes`. Eight bytes are checked at a time (with
    /// the "has a byte below n / equal to c" word tricks, exact for any bytes).
    @inline(__always)
    static func needsNoEscape(_ bytes: UnsafeBufferPointer<UInt8>, escapingSlashes: Bool) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        func has(_ word: UInt64, _ byte: UInt8) -> Bool {
            let matched = word ^ (ones &* UInt64(byte))
            return (matched &- ones) & ~matched & highs != 0
        }
        var offset = 0
        while offset + 8 <= bytes.count {
            let word = UnsafeRawPointer(base + offset).loadUnaligned(as: UInt64.self)
            let control = (word &- ones &* 0x20) & ~word & highs != 0
            if control || has(word, UInt8(ascii: "\"")) || has(word, UInt8(ascii: "\\")) || (escapingSlashes && has(word, UInt8(ascii: "/"))) {
                return false
            }
            offset += 8
        }
        while offset < bytes.count {
            let byte = base[offset]
            if byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || (byte == UInt8(ascii: "/") && escapingSlashes) {
                return false
            }
            offset += 1
        }
        return true
    }

    /// The decimal digits of `number` (as `String(number)` writes them), without making a String.
    public static func appendInteger(_ number: Int, to out: inout [UInt8]) {
        var magnitude = number.magnitude
        if number < 0 { out.append(UInt8(ascii: "-")) }
        if magnitude < 10 {
            out.append(UInt8(ascii: "0") + UInt8(magnitude))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for the 20 digits of UInt64.max
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            while magnitude > 0 {
                buffer[23 - count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[(24 - count)...]))
        }
    }

    /// RFC 3339 in UTC with milliseconds (rounded), e.g. 2026-11-21T10:00:00.000Z: the
    /// text ISO8601DateFormatter writes with internet date-time and fractional seconds,
    /// without creating a formatter (which costs tens of microseconds each time).
    public static func timestamp(_ date: Date) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(24)
        appendTimestampDigits(date, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `timestamp(date)` as a JSON string literal, written straight into `out`.
    public static func appendTimestamp(_ date: Date, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        appendTimestampDigits(date, to: &out)
        out.append(UInt8(ascii: "\""))
    }

    private static func appendTimestampDigits(_ date: Date, to out: inout [UInt8]) {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var seconds = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        let fraction = Int(milliseconds - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        // 24 bytes on the stack, appended at once: YYYY-MM-DDTHH:MM:SS.mmmZ (the year's four
        // lowest digits, as before).
        var text: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &text) { buffer in
            func put(_ value: Int, _ digits: Int, at offset: Int, then separator: UInt8) {
                var value = value
                for index in stride(from: offset + digits - 1, through: offset, by: -1) {
                    buffer[index] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
                buffer[offset + digits] = separator
            }
            put(Int(parts.tm_year) + 1900, 4, at: 0, then: UInt8(ascii: "-"))
            put(Int(parts.tm_mon) + 1, 2, at: 5, then: UInt8(ascii: "-"))
            put(Int(parts.tm_mday), 2, at: 8, then: UInt8(ascii: "T"))
            put(Int(parts.tm_hour), 2, at: 11, then: UInt8(ascii: ":"))
            put(Int(parts.tm_min), 2, at: 14, then: UInt8(ascii: ":"))
            put(Int(parts.tm_sec), 2, at: 17, then: UInt8(ascii: "."))
            put(fraction, 3, at: 20, then: UInt8(ascii: "Z"))
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<24]))
        }
    }
}
