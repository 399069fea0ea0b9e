import Foundation

/// A parsed JSON value with the position it started at, so that every configuration issue
/// can name a line. Objects keep their members in document order, duplicates included: the
/// readers above decide what a duplicate key means.
struct JSONNode: Sendable {
    var value: JSONValue
    var line: Int
    var column: Int
}

struct JSONMember: Sendable {
    var key: String
    var value: JSONNode
}

indirect enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([JSONNode])
    case object([JSONMember])

    /// How a value is called in a message ("expected a string, found a number").
    var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .integer, .number: "a number"
        case .string: "a string"
        case .array: "a list"
        case .object: "an object"
        }
    }
}

/// Where and why a document is not JSON. Line and column are 1-based; the column counts bytes.
public struct JSONSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var reason: String

    public var description: String { "not valid JSON at line \(line), column \(column): \(reason)" }
}

/// A small JSON5 reader: standard JSON plus what an administrator editing a file by hand uses
/// (`//` and `/* */` comments, trailing commas, unquoted keys, single-quoted strings, hex
/// numbers, a leading `+`). `Infinity` and `NaN` are refused: no configuration value or
/// payload needs them. Nesting is bounded so hostile input cannot exhaust the stack.
struct JSONParser {
    /// The characters of a number from `start` on, as both readers take them (digits, `.`,
    /// `e`/`E` and an exponent's sign): where they end, whether they make an integer, and
    /// whether there was a digit at all.
    static func scanNumber(_ bytes: [UInt8], from start: Int) -> (end: Int, isInteger: Bool, sawDigit: Bool) {
        var index = start
        var isInteger = true
        var sawDigit = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                sawDigit = true
            } else if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
                isInteger = false
            } else if byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+"),
                      bytes[index - 1] == UInt8(ascii: "e") || bytes[index - 1] == UInt8(ascii: "E") {
                // the sign of an exponent
            } else {
                break
            }
            index += 1
        }
        return (index, isInteger, sawDigit)
    }

    static let maximumDepth = 64

    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private var lineStart = 0
    private var depth = 0

    static func parse(_ data: Data) throws(JSONSyntaxError) -> JSONNode {
        var parser = JSONParser(bytes: [UInt8](data))
        return try parser.document()
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    private mutating func document() throws(JSONSyntaxError) -> JSONNode {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3; lineStart = 3 }
        try skipTrivia()
        guard index < bytes.count else { throw failure("the file is empty; expected a JSON value") }
        let node = try value()
        try skipTrivia()
        guard index == bytes.count else {
            throw failure("unexpected \(describeCurrent()) after the end of the JSON value")
        }
        return node
    }

    // MARK: - Values

    private mutating func value() throws(JSONSyntaxError) -> JSONNode {
        let startLine = line, startColumn = column
        guard index < bytes.count else { throw failure("unexpected end of file; expected a value") }
        let parsed: JSONValue
        switch bytes[index] {
        case UInt8(ascii: "{"): parsed = try object()
        case UInt8(ascii: "["): parsed = try array()
        case UInt8(ascii: "\""), UInt8(ascii: "'"): parsed = .string(try string())
        case UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."), UInt8(ascii: "0")...UInt8(ascii: "9"):
            parsed = try number()
        default:
            guard let word = identifier() else {
                throw failure("unexpected \(describeCurrent()); expected a value")
            }
            switch word {
            case "true": parsed = .bool(true)
            case "false": parsed = .bool(false)
            case "null": parsed = .null
            case "Infinity", "NaN":
                throw failure("'\(word)' is not allowed; use a finite number", line: startLine, column: startColumn)
            default:
                throw failure("unexpected word '\(word)'; text values need quotes", line: startLine, column: startColumn)
            }
        }
        return JSONNode(value: parsed, line: startLine, column: startColumn)
    }

    private mutating func object() throws(JSONSyntaxError) -> JSONValue {
        try enter()
        index += 1
        var members: [JSONMember] = []
        while true {
            try skipTrivia()
            guard index < bytes.count else { throw failure("unexpected end of file inside an object; expected '}'") }
            if bytes[index] == UInt8(ascii: "}") { index += 1; break }
            let key: String
            if bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") {
                key = try string()
            } else if let word = identifier() {
                key = word
            } else {
                throw failure("unexpected \(describeCurrent()); expected a key or '}'")
            }
            try skipTrivia()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                throw failure("expected ':' after the key '\(key)'")
            }
            index += 1
            try skipTrivia()
            members.append(JSONMember(key: key, value: try value()))
            try skipTrivia()
            guard index < bytes.count else { throw failure("unexpected end of file inside an object; expected '}'") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "}") { index += 1; break }
            throw failure("expected ',' or '}' after the value of '\(key)', found \(describeCurrent())")
        }
        depth -= 1
        return .object(members)
    }

    private mutating func array() throws(JSONSyntaxError) -> JSONValue {
        try enter()
        index += 1
        var elements: [JSONNode] = []
        while true {
            try skipTrivia()
            guard index < bytes.count else { throw failure("unexpected end of file inside a list; expected ']'") }
            if bytes[index] == UInt8(ascii: "]") { index += 1; break }
            elements.append(try value())
            try skipTrivia()
            guard index < bytes.count else { throw failure("unexpected end of file inside a list; expected ']'") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "]") { index += 1; break }
            throw failure("expected ',' or ']' after a list element, found \(describeCurrent())")
        }
        depth -= 1
        return .array(elements)
    }

    private mutating func enter() throws(JSONSyntaxError) {
        depth += 1
        if depth > JSONParser.maximumDepth {
            throw failure("nested more than \(JSONParser.maximumDepth) levels deep")
        }
    }

    private mutating func string() throws(JSONSyntaxError) -> String {
        let quote = bytes[index]
        index += 1
        // Most text values hold no escape: then they are taken from the document as a whole.
        var end = index
        while end < bytes.count, bytes[end] != quote, bytes[end] != UInt8(ascii: "\\"), bytes[end] >= 0x20 { end += 1 }
        if end < bytes.count, bytes[end] == quote {
            guard let text = String(validating: bytes[index..<end], as: UTF8.self) else {
                throw failure("a text value is not valid UTF-8")
            }
            index = end + 1
            return text
        }
        var buffer = Array(bytes[index..<end])
        index = end
        while true {
            guard index < bytes.count else { throw failure("unexpected end of file inside a text value; a closing quote is missing") }
            let byte = bytes[index]
            if byte == quote { index += 1; break }
            if byte == UInt8(ascii: "\\") {
                try escape(into: &buffer)
                continue
            }
            if byte < 0x20 {
                throw failure(byte == 0x0A ? "a text value runs past the end of the line; a closing quote is missing" : "control character inside a text value; escape it")
            }
            buffer.append(byte)
            index += 1
        }
        guard let text = String(validating: buffer, as: UTF8.self) else {
            throw failure("a text value is not valid UTF-8")
        }
        return text
    }

    private mutating func escape(into buffer: inout [UInt8]) throws(JSONSyntaxError) {
        index += 1
        guard index < bytes.count else { throw failure("unexpected end of file after '\\'") }
        let byte = bytes[index]
        index += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "\\"), UInt8(ascii: "/"): buffer.append(byte)
        case UInt8(ascii: "b"): buffer.append(0x08)
        case UInt8(ascii: "f"): buffer.append(0x0C)
        case UInt8(ascii: "n"): buffer.append(0x0A)
        case UInt8(ascii: "r"): buffer.append(0x0D)
        case UInt8(ascii: "t"): buffer.append(0x09)
        case UInt8(ascii: "v"): buffer.append(0x0B)
        case UInt8(ascii: "0"): buffer.append(0x00)
        case 0x0A: newline(at: index - 1)  // JSON5 line continuation
        case UInt8(ascii: "x"):
            appendScalar(try hexDigits(2), to: &buffer)
        case UInt8(ascii: "u"):
            var scalar = try hexDigits(4)
            if (0xD800..<0xDC00).contains(scalar) {
                guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                    throw failure("a \\u escape holds half of a surrogate pair")
                }
                index += 2
                let low = try hexDigits(4)
                guard (0xDC00..<0xE000).contains(low) else { throw failure("a \\u escape holds half of a surrogate pair") }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            }
            guard Unicode.Scalar(scalar) != nil else { throw failure("a \\u escape is not a valid character") }
            appendScalar(scalar, to: &buffer)
        default:
            throw failure("unknown escape '\\\(Character(Unicode.Scalar(byte)))' in a text value")
        }
    }

    private func appendScalar(_ value: UInt32, to buffer: inout [UInt8]) {
        guard let scalar = Unicode.Scalar(value) else { return }
        buffer.append(contentsOf: Array(String(Character(scalar)).utf8))
    }

    private mutating func hexDigits(_ count: Int) throws(JSONSyntaxError) -> UInt32 {
        var result: UInt32 = 0
        for _ in 0..<count {
            guard index < bytes.count, let digit = JSONParser.hexValue(bytes[index]) else {
                throw failure("expected \(count) hexadecimal digits in an escape")
            }
            result = result * 16 + UInt32(digit)
            index += 1
        }
        return result
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private mutating func number() throws(JSONSyntaxError) -> JSONValue {
        let start = index
        let startColumn = column
        var negative = false
        if bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+") {
            negative = bytes[index] == UInt8(ascii: "-")
            index += 1
        }
        if let word = identifier() {
            throw failure(word == "Infinity" ? "'Infinity' is not allowed; use a finite number" : "unexpected word '\(word)' in a number", column: startColumn)
        }
        if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "0"),
           bytes[index + 1] == UInt8(ascii: "x") || bytes[index + 1] == UInt8(ascii: "X") {
            index += 2
            var magnitude = 0
            var digits = 0
            while index < bytes.count, let digit = JSONParser.hexValue(bytes[index]) {
                let (product, overflow) = magnitude.multipliedReportingOverflow(by: 16)
                guard !overflow, product <= Int.max - Int(digit) else { throw failure("a hexadecimal number is too large", column: startColumn) }
                magnitude = product + Int(digit)
                digits += 1
                index += 1
            }
            guard digits > 0 else { throw failure("expected hexadecimal digits after '0x'", column: startColumn) }
            return .integer(negative ? -magnitude : magnitude)
        }
        let scanned = JSONParser.scanNumber(bytes, from: index)
        index = scanned.end
        var text = String(decoding: bytes[start..<index], as: UTF8.self)
        if text.hasPrefix("+") { text.removeFirst() }
        guard scanned.sawDigit else { throw failure("a number has no digits", column: startColumn) }
        if scanned.isInteger, let integer = Int(text) { return .integer(integer) }
        // Swift's Double parser accepts "1.", ".5" and "1e3" as JSON5 does.
        guard let double = Double(text), double.isFinite else {
            throw failure("'\(text)' is not a valid number", column: startColumn)
        }
        return .number(double)
    }

    /// An unquoted identifier (a JSON5 key or a keyword): ASCII letters, digits, `_` and `$`.
    private mutating func identifier() -> String? {
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            let isLetter = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "$")
            let isDigit = byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
            guard isLetter || (isDigit && index > start) else { break }
            index += 1
        }
        return index > start ? String(decoding: bytes[start..<index], as: UTF8.self) : nil
    }

    // MARK: - Whitespace, comments, positions

    private mutating func skipTrivia() throws(JSONSyntaxError) {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0D:
                index += 1
            case 0x0A:
                newline(at: index)
                index += 1
            case UInt8(ascii: "/") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "/"):
                while index < bytes.count && bytes[index] != 0x0A { index += 1 }
            case UInt8(ascii: "/") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "*"):
                let (openLine, openColumn) = (line, column)
                index += 2
                while true {
                    guard index + 1 < bytes.count else {
                        throw failure("a /* comment is never closed with */", line: openLine, column: openColumn)
                    }
                    if bytes[index] == UInt8(ascii: "*") && bytes[index + 1] == UInt8(ascii: "/") { index += 2; break }
                    if bytes[index] == 0x0A { newline(at: index) }
                    index += 1
                }
            default:
                return
            }
        }
    }

    private mutating func newline(at position: Int) {
        line += 1
        lineStart = position + 1
    }

    private var column: Int { index - lineStart + 1 }

    private func describeCurrent() -> String {
        guard index < bytes.count else { return "end of file" }
        let byte = bytes[index]
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return String(format: "byte 0x%02X", byte)
    }

    private func failure(_ reason: String, line: Int? = nil, column: Int? = nil) -> JSONSyntaxError {
        JSONSyntaxError(line: line ?? self.line, column: column ?? self.column, reason: reason)
    }
}

/// Writes JSON text values; used for canonical payload bytes (sorted keys, no whitespace), so
/// equal payloads give equal bytes.
public enum JSONWriter {
    /// Appends `text` as a JSON string (quoted and escaped).
    public static func appendString(_ text: String, to output: inout String) {
        output.append("\"")
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output.append("\\\"")
            case "\\": output.append("\\\\")
            case "\n": output.append("\\n")
            case "\r": output.append("\\r")
            case "\t": output.append("\\t")
            default:
                if scalar.value < 0x20 {
                    output.append(String(format: "\\u%04x", scalar.value))
                } else {
                    output.unicodeScalars.append(scalar)
                }
            }
        }
        output.append("\"")
    }
}
