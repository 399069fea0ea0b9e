import Foundation
import WaakvlamSystem
import WaakvlamTransport
import XCTest

/// JSONText writes what JSONSerialization would (it replaced it on the hot paths: API
/// answers, pushed messages, log lines), and its timestamps are ISO8601DateFormatter's.
final class JSONTextTests: XCTestCase {
    func testEncodesLikeJSONSerialization() throws {
        let object: [String: Any] = [
            "text": "a \"quoted\" back\\slash / slash\n\r\t\u{8}\u{C}\u{1}\u{1F} é 漢 🙂",
            "int": -42, "int64": Int64(1) << 40, "uint8": UInt8(7), "double": 0.021126516, "whole": 3.0, "tiny": 1e-7,
            "true": true, "false": false, "null": NSNull(),
            "array": [1, "two", [3.5, false], [String: Any]()] as [Any], "empty": [Any](),
            "nested": ["b": ["c": "d"], "a": [1, 2]] as [String: Any],
            "fragment": JSONText.Fragment(Array(#"{"raw":[1,2]}"#.utf8)),
            "nsnumber": NSNumber(value: 12), "substring": "abcdef".dropFirst(3),
        ]
        let ours = JSONText.encode(object)
        let parsed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(ours)) as? [String: Any])
        var expected = object
        expected["fragment"] = ["raw": [1, 2]]
        expected["substring"] = "def"
        let reference = try JSONSerialization.data(withJSONObject: expected, options: [.sortedKeys])
        let parsedReference = try XCTUnwrap(try JSONSerialization.jsonObject(with: reference) as? [String: Any])
        XCTAssertEqual(NSDictionary(dictionary: parsed), NSDictionary(dictionary: parsedReference))

        // Byte for byte where the key order agrees (all lower case): the same escapes and numbers.
        let flat: [String: Any] = ["a": "x/y \"q\" \u{1}\n", "b": 2.5, "c": 3.0, "d": [true, NSNull()] as [Any], "e": -7]
        XCTAssertEqual(String(decoding: JSONText.encode(flat, escapingSlashes: true), as: UTF8.self),
                       String(decoding: try JSONSerialization.data(withJSONObject: flat, options: [.sortedKeys]), as: UTF8.self))
        XCTAssertEqual(String(decoding: JSONText.encode(flat), as: UTF8.self),
                       String(decoding: try JSONSerialization.data(withJSONObject: flat, options: [.sortedKeys, .withoutEscapingSlashes]),
                              as: UTF8.self))
        // Keys in UTF-8 byte order; non-finite numbers become null.
        XCTAssertEqual(String(decoding: JSONText.encode(["b": 1, "B": 2, "a": Double.nan] as [String: Any]), as: UTF8.self),
                       #"{"B":2,"a":null,"b":1}"#)
    }

    /// Strings are escaped exactly as a byte-by-byte escaper does, wherever the special
    /// bytes fall in the eight-byte words the fast check reads, and log lines carry them so.
    func testStringEscapesMatchAByteByByteEscaper() {
        func reference(_ text: String, escapingSlashes: Bool) -> [UInt8] {
            var out: [UInt8] = [UInt8(ascii: "\"")]
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), byte]
                case UInt8(ascii: "/") where escapingSlashes: out += [UInt8(ascii: "\\"), byte]
                case 0x08: out += Array(#"\b"#.utf8)
                case 0x0C: out += Array(#"\f"#.utf8)
                case 0x0A: out += Array(#"\n"#.utf8)
                case 0x0D: out += Array(#"\r"#.utf8)
                case 0x09: out += Array(#"\t"#.utf8)
                case 0..<0x20: out += Array(String(format: "\\u%04x", byte).utf8)
                default: out.append(byte)
                }
            }
            return out + [UInt8(ascii: "\"")]
        }
        var rng = SystemRandomNumberGenerator()
        let pieces = ["a", "Z", "0", "-", " ", "\"", "\\", "/", "\n", "\u{1}", "\u{1F}", "\u{7F}", "é", "漢", "🙂", "~", "!", "#"]
        let log = Log()
        var lines: [String] = []
        log.sink = { lines.append($0) }
        for round in 0..<3000 {
            // Mostly plain text with at most one special piece, at any offset.
            var parts = (0..<Int.random(in: 0...40, using: &rng)).map { _ in pieces[Int.random(in: 0..<4, using: &rng)] }
            if round % 3 != 0, !parts.isEmpty { parts[Int.random(in: 0..<parts.count, using: &rng)] = pieces.randomElement(using: &rng)! }
            let text = parts.joined()
            for escapingSlashes in [false, true] {
                var out: [UInt8] = [7]
                JSONText.appendString(text, to: &out, escapingSlashes: escapingSlashes)
                XCTAssertEqual(out, [7] + reference(text, escapingSlashes: escapingSlashes), text.debugDescription)
            }
            log.info("e", ["k": text, "n": round, "b": true])
            let expected = #","level":"info","event":"e","k":"# + String(decoding: reference(text, escapingSlashes: false), as: UTF8.self)
                + #","n":\#(round),"b":true}"#
            XCTAssertEqual(lines.last.map { String($0.drop { $0 != "," }) }, expected)
        }
    }

    /// The writer's integers are String's digits, its commas right at any depth (the
    /// per-container state is kept in bits, 64 containers per word).
    func testWriterIntegersAndDeepNesting() throws {
        for number in [0, 7, -7, 10, -10, 1234567890, Int.max, Int.min] {
            var out: [UInt8] = []
            JSONText.appendInteger(number, to: &out)
            XCTAssertEqual(String(decoding: out, as: UTF8.self), String(number))
        }
        for depth in [1, 2, 63, 64, 65, 130] {
            var writer = JSONText.Writer()
            var expected = ""
            for level in 0..<depth {
                writer.beginArray()
                writer.int(nil, level)
                expected += "[\(level),"
            }
            for _ in 0..<depth {
                writer.string(nil, "x")
                writer.endArray()
                expected += "\"x\"],"
            }
            expected.removeLast()
            XCTAssertEqual(String(decoding: writer.bytes, as: UTF8.self), expected, "depth \(depth)")
            XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(writer.bytes)))
        }
    }

    func testTimestampsMatchISO8601DateFormatter() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let samples = [0, 1, 999_999, 1_000_000, 1_763_768_643_855_000, 1_763_768_643_999_999, 951_782_400_000_000, 4_102_444_799_999_000]
            .map { Date(timeIntervalSince1970: Double($0) / 1e6) } + [Date(), Date(timeIntervalSince1970: -86_400.5)]
        for date in samples {
            XCTAssertEqual(JSONText.timestamp(date), formatter.string(from: date), "\(date.timeIntervalSince1970)")
        }
        XCTAssertEqual(Log.timestamp(Date(timeIntervalSince1970: 1_763_768_643.855)), "2025-11-21T23:44:03.855Z")
    }
}
