import Foundation

extension SignalSubmission {
    /// Reads a submission body as `parse(_:makeID:)` does, trying the typed reader below
    /// first: what partners send (plain JSON of the usual shape) is read straight into the
    /// submission's fields, without a JSON tree, a dictionary of members and a set of seen
    /// payload keys. Everything else (comments, escapes, unknown or duplicate keys, wrong
    /// types: every body that gets an issue) goes to the general reader, which gives the
    /// message; so the result is always the general reader's.
    public static func parse(bytes: [UInt8], makeID: (() -> String)? = nil) -> Result<SignalSubmission, InvalidPayload> {
        var reader = SubmissionFastReader(bytes: bytes)
        if let submission = reader.submission(makeID: makeID) { return .success(submission) }
        return parse(Data(bytes), makeID: makeID)
    }
}

/// The typed reader of submission bodies: strict JSON (no comments, trailing commas or
/// single quotes), text without escapes, each known key at most once, the payload flat with
/// distinct keys. Gives nil for anything else, and never a different result from the
/// general reader (`JSONParser` with `SignalSubmission.parse`) for what it accepts: numbers
/// are converted by the same rules (`Int`, else a finite `Double`), text must be valid UTF-8.
struct SubmissionFastReader {
    private let bytes: [UInt8]
    private var index = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The submission, with an id from `makeID` when the body has none; nil for a body this
    /// reader leaves to the general one, and for an invalid id. (Its parts are kept apart until
    /// the submission is made: a struct of them would be copied into it field by field.)
    mutating func submission(makeID: (() -> String)?) -> SignalSubmission? {
        var id: String?, type: String?, traceparent: String?, payload: [String: PayloadValue]?
        var seen: UInt8 = 0
        var to: [RecipientRequest]?, routeByAddress = false
        skipSpace()
        guard take(UInt8(ascii: "{")) else { return nil }
        skipSpace()
        if !take(UInt8(ascii: "}")) {
            while true {
                guard let key = keyBytes() else { return nil }
                skipSpace()
                guard take(UInt8(ascii: ":")) else { return nil }
                skipSpace()
                let bit: UInt8
                if key.elementsEqual(Self.idKey) {
                    bit = 1
                    guard let text = string() else { return nil }
                    id = text
                } else if key.elementsEqual(Self.typeKey) {
                    bit = 2
                    guard let text = string() else { return nil }
                    type = text
                } else if key.elementsEqual(Self.toKey) {
                    bit = 4
                    guard let list = recipients() else { return nil }
                    to = list
                } else if key.elementsEqual(Self.routeKey) {
                    bit = 8
                    guard let flag = boolean() else { return nil }
                    routeByAddress = flag
                } else if key.elementsEqual(Self.traceparentKey) {
                    bit = 16
                    guard let text = string() else { return nil }
                    traceparent = text
                } else if key.elementsEqual(Self.payloadKey) {
                    bit = 32
                    guard let values = self.payload() else { return nil }
                    payload = values
                } else {
                    return nil
                }
                guard seen & bit == 0 else { return nil }
                seen |= bit
                skipSpace()
                if take(UInt8(ascii: ",")) { skipSpace(); continue }
                guard take(UInt8(ascii: "}")) else { return nil }
                break
            }
        }
        skipSpace()
        // The type and the payload are required; without an id, the caller makes one.
        guard index == bytes.count, let type, let payload, let id = id ?? makeID?(), SignalSubmission.isValidID(id) else { return nil }
        var recipients = to ?? []
        if routeByAddress { recipients.append(.gemeenteOfAddress) }
        return SignalSubmission(id: id, type: type, recipients: recipients, payload: payload, traceparent: traceparent)
    }

    private static let idKey = Array("id".utf8), typeKey = Array("type".utf8), toKey = Array("to".utf8)
    private static let routeKey = Array("routeByAddress".utf8), traceparentKey = Array("traceparent".utf8)
    private static let payloadKey = Array("payload".utf8)

    private mutating func recipients() -> [RecipientRequest]? {
        guard take(UInt8(ascii: "[")) else { return nil }
        var list: [RecipientRequest] = []
        skipSpace()
        if take(UInt8(ascii: "]")) { return list }
        while true {
            guard let name = string() else { return nil }
            list.append(.organisation(name))
            skipSpace()
            if take(UInt8(ascii: ",")) { skipSpace(); continue }
            guard take(UInt8(ascii: "]")) else { return nil }
            return list
        }
    }

    private mutating func payload() -> [String: PayloadValue]? {
        guard take(UInt8(ascii: "{")) else { return nil }
        var values: [String: PayloadValue] = [:]
        values.reserveCapacity(16)
        skipSpace()
        if take(UInt8(ascii: "}")) { return values }
        while true {
            guard let key = string() else { return nil }
            skipSpace()
            guard take(UInt8(ascii: ":")) else { return nil }
            skipSpace()
            guard index < bytes.count else { return nil }
            // null (an absent field) is left to the general reader, as are nested values.
            let value: PayloadValue
            switch bytes[index] {
            case UInt8(ascii: "\""):
                guard let text = string() else { return nil }
                value = .string(text)
            case UInt8(ascii: "t"), UInt8(ascii: "f"):
                guard let flag = boolean() else { return nil }
                value = .boolean(flag)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                guard let number = number() else { return nil }
                value = number
            default:
                return nil
            }
            // A key given twice is an issue the general reader reports.
            guard values.updateValue(value, forKey: key) == nil else { return nil }
            skipSpace()
            if take(UInt8(ascii: ",")) { skipSpace(); continue }
            guard take(UInt8(ascii: "}")) else { return nil }
            return values
        }
    }

    private static let trueWord = Array("true".utf8), falseWord = Array("false".utf8)

    private mutating func boolean() -> Bool? {
        if word(Self.trueWord) { return true }
        if word(Self.falseWord) { return false }
        return nil
    }

    /// A keyword followed by a delimiter (as the general reader's identifiers end).
    private mutating func word(_ expected: [UInt8]) -> Bool {
        let end = index + expected.count
        guard end <= bytes.count, bytes[index..<end].elementsEqual(expected) else { return false }
        if end < bytes.count, Self.isIdentifierByte(bytes[end]) { return false }
        index = end
        return true
    }

    private static func isIdentifierByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "$")
    }

    /// A number as the general reader takes it: the same characters, then `Int`, else a
    /// finite `Double`. Leading `+`, `.`, hex and words are left to it.
    private mutating func number() -> PayloadValue? {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") else { return nil }
        if bytes[index] == UInt8(ascii: "0"), index + 1 < bytes.count,
           bytes[index + 1] == UInt8(ascii: "x") || bytes[index + 1] == UInt8(ascii: "X") { return nil }
        let scanned = JSONParser.scanNumber(bytes, from: index)
        index = scanned.end
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if scanned.isInteger, let integer = Int(text) { return .integer(integer) }
        guard let double = Double(text), double.isFinite else { return nil }
        return .number(double)
    }

    /// A double-quoted text without escapes or control characters, valid UTF-8.
    private mutating func string() -> String? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        let start = index + 1
        var end = start
        var high: UInt8 = 0
        while end < bytes.count {
            let byte = bytes[end]
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
            high |= byte
            end += 1
        }
        guard end < bytes.count else { return nil }
        let text: String
        if high < 0x80 {
            // ASCII is valid UTF-8: no validation needed.
            text = bytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[start..<end]), as: UTF8.self) }
        } else {
            guard let valid = String(validating: bytes[start..<end], as: UTF8.self) else { return nil }
            text = valid
        }
        index = end + 1
        return text
    }

    /// An object key of the body, as bytes (compared with the known keys without making a
    /// String).
    private mutating func keyBytes() -> ArraySlice<UInt8>? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        let start = index + 1
        var end = start
        while end < bytes.count, bytes[end] != UInt8(ascii: "\"") {
            if bytes[end] == UInt8(ascii: "\\") || bytes[end] < 0x20 { return nil }
            end += 1
        }
        guard end < bytes.count else { return nil }
        index = end + 1
        return bytes[start..<end]
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipSpace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }
}
