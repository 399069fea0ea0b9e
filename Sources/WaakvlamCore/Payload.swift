import Foundation

/// One value of a flat payload: text, a whole number, a decimal number or true/false.
public enum PayloadValue: Sendable, Hashable {
    case string(String)
    case integer(Int)
    case number(Double)
    case boolean(Bool)

    /// How the value is called in a message; never the value itself (privacy).
    var kindName: String {
        switch self {
        case .string: "text"
        case .integer, .number: "a number"
        case .boolean: "true/false"
        }
    }
}

/// Why a payload or a submission is refused before any recipient is considered (HTTP 400).
public struct PayloadIssue: Sendable, Equatable, CustomStringConvertible {
    /// The field concerned (`payload.Postcode`, `recipients`), or `$` for the whole body.
    public var field: String
    public var code: PayloadIssueCode
    /// A sentence saying what to fix. Never contains a payload value.
    public var message: String

    public init(field: String, code: PayloadIssueCode, message: String) {
        self.field = field
        self.code = code
        self.message = message
    }

    public var description: String { "\(field): \(code.rawValue): \(message)" }
}

/// Every issue of a refused payload or submission, reported together.
public struct InvalidPayload: Error, Sendable, Equatable {
    public var issues: [PayloadIssue]

    public init(_ issues: [PayloadIssue]) {
        self.issues = issues
    }
}

/// Stable codes for refused payloads and submissions.
public enum PayloadIssueCode: String, Sendable, Equatable, CaseIterable {
    case notJSON = "not_json"
    case notAnObject = "not_an_object"
    case duplicateField = "duplicate_field"
    case nestedValue = "nested_value"
    case unknownKey = "unknown_key"
    case invalidID = "invalid_id"
    case unknownType = "unknown_type"
    case noRecipients = "no_recipients"
    case duplicateRecipient = "duplicate_recipient"
    case unknownField = "unknown_field"
    case missingField = "missing_field"
    case wrongType = "wrong_type"
    case badFormat = "bad_format"
    case tooLong = "too_long"
    case notInValues = "not_in_values"
}

public enum Payload {
    /// A flat JSON object (comments allowed) as a payload: field name to text, number or
    /// boolean; `null` means the field is absent.
    public static func parse(_ data: Data) -> Result<[String: PayloadValue], InvalidPayload> {
        let node: JSONNode
        do {
            node = try JSONParser.parse(data)
        } catch {
            return .failure(InvalidPayload([PayloadIssue(field: "$", code: .notJSON, message: error.description)]))
        }
        return payload(from: node, field: "payload")
    }

    static func payload(from node: JSONNode, field: String) -> Result<[String: PayloadValue], InvalidPayload> {
        guard case .object(let members) = node.value else {
            return .failure(InvalidPayload([PayloadIssue(field: field, code: .notAnObject, message: "the payload must be a JSON object of field names and values, found \(node.value.kindName)")]))
        }
        var values: [String: PayloadValue] = [:]
        var issues: [PayloadIssue] = []
        var seen = Set<String>()
        for member in members {
            let name = "\(field).\(member.key)"
            guard seen.insert(member.key).inserted else {
                issues.append(PayloadIssue(field: name, code: .duplicateField, message: "the field '\(member.key)' appears twice; send it once"))
                continue
            }
            switch member.value.value {
            case .null: continue
            case .string(let text): values[member.key] = .string(text)
            case .integer(let number): values[member.key] = .integer(number)
            case .number(let number): values[member.key] = .number(number)
            case .bool(let flag): values[member.key] = .boolean(flag)
            case .array, .object:
                issues.append(PayloadIssue(field: name, code: .nestedValue, message: "payloads are flat: '\(member.key)' must be text, a number or true/false, not \(member.value.value.kindName)"))
            }
        }
        return issues.isEmpty ? .success(values) : .failure(InvalidPayload(issues))
    }

    /// The payload as JSON with sorted keys and no whitespace: equal payloads give equal
    /// bytes, so the relay can hash and store them. (Written byte by byte: it is computed
    /// several times per signal. The bytes must never change: hashes of them are journaled.)
    public static func canonicalJSON(_ payload: [String: PayloadValue]) -> Data {
        Data(canonicalBytes(payload))
    }

    /// `canonicalJSON` as bytes (what the relay hashes and stores).
    public static func canonicalBytes(_ payload: [String: PayloadValue]) -> [UInt8] {
        var output: [UInt8] = [UInt8(ascii: "{")]
        output.reserveCapacity(64 + payload.count * 48)
        // The members' positions sorted by key on the stack (the keys are distinct): no sorted
        // copy of the members, and most comparisons settled by the keys' first bytes. (The
        // standard sort: O(n log n) for a payload of any size, and for the usual few tens of
        // fields an insertion sort that allocates nothing.)
        withUnsafeTemporaryAllocation(of: CanonicalOrder.self, capacity: payload.count) { order in
            var count = 0
            for index in payload.indices {
                let start = CanonicalOrder.start(of: payload.keys[index])
                order.initializeElement(at: count, to: CanonicalOrder(start: start, index: index))
                count += 1
            }
            var sorted = UnsafeMutableBufferPointer(rebasing: order[..<count])
            defer { _ = sorted.deinitialize() }
            sorted.sort { $0.precedes($1, in: payload) }
            for position in 0..<count {
                if position > 0 { output.append(UInt8(ascii: ",")) }
                let index = sorted[position].index
                appendCanonicalString(payload.keys[index], to: &output)
                output.append(UInt8(ascii: ":"))
                switch payload.values[index] {
                case .string(let text): appendCanonicalString(text, to: &output)
                case .integer(let number): output.append(contentsOf: String(number).utf8)
                case .number(let number):
                    output.append(contentsOf: (number == number.rounded() && abs(number) < 1e15 ? String(format: "%.1f", number) : "\(number)").utf8)
                case .boolean(let flag): output.append(contentsOf: (flag ? "true" : "false").utf8)
                }
            }
        }
        output.append(UInt8(ascii: "}"))
        return output
    }

    /// A member's place in `canonicalBytes`: the first eight bytes of its key as a big-endian
    /// number (zero-padded: comparing two of them compares the keys' starts in byte order), and
    /// where the member lies in the payload.
    private struct CanonicalOrder {
        let start: UInt64
        let index: Dictionary<String, PayloadValue>.Index

        static func start(of key: String) -> UInt64 {
            var start: UInt64 = 0, count: UInt64 = 0
            for byte in key.utf8 {
                if count == 8 { break }
                start = start << 8 | UInt64(byte)
                count += 1
            }
            return start << (8 * (8 - count))  // (shifted out entirely for an empty key)
        }

        /// Whether this member's key comes before `other`'s in byte order.
        func precedes(_ other: CanonicalOrder, in payload: [String: PayloadValue]) -> Bool {
            if start != other.start { return start < other.start }
            return payload.keys[index].utf8.lexicographicallyPrecedes(payload.keys[other.index].utf8)
        }
    }

    /// A JSON string literal: quote, backslash, \n, \r and \t escaped, other control
    /// characters as \u00XX (lower-case hex), the rest as UTF-8.
    private static func appendCanonicalString(_ text: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        // Scanned and copied from the string's own buffer when nothing needs escaping.
        let copied = text.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            for byte in bytes where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { return false }
            output.append(contentsOf: bytes)
            return true
        }
        if copied == true {
            output.append(UInt8(ascii: "\""))
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20: output.append(contentsOf: String(format: "\\u%04x", UInt32(byte)).utf8)
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}

/// Where each field of a list of definitions (a signal type's) is in a payload, by position
/// in the list: the payload's index of that field, or nil when the payload lacks it. Found
/// once, by validation, so that each rule reads the payload by position instead of by name.
typealias PayloadPositions = [Dictionary<String, PayloadValue>.Index?]

/// Checks a payload against field definitions (a signal type, or the feedback a rule
/// allows). Messages name the field and what is expected, never the value sent.
enum PayloadValidator {
    /// `validate(_:against:position:owner:prefix:found:)` for a caller that does not need to
    /// know where the fields are.
    static func validate(_ payload: [String: PayloadValue], against fields: [FieldDefinition], position: (String) -> Int?,
                         owner: @autoclosure () -> String, prefix: String = "payload") -> [PayloadIssue] {
        var found = PayloadPositions(repeating: nil, count: fields.count)
        return validate(payload, against: fields, position: position, owner: owner(), prefix: prefix, found: &found)
    }

    /// - Parameter position: finds where a definition of `fields` is, by name (the
    ///   definitions are read in place, not copied out).
    /// - Parameter owner: what the fields belong to, for messages; only made when there is an issue.
    /// - Parameter found: one entry per definition of `fields`, nil on entry; set to the
    ///   payload's index of each field the payload has.
    static func validate(_ payload: [String: PayloadValue], against fields: [FieldDefinition], position: (String) -> Int?,
                         owner: @autoclosure () -> String, prefix: String = "payload", found: inout PayloadPositions) -> [PayloadIssue] {
        var issues: [PayloadIssue] = []
        // Unsorted (sorting every valid payload's keys is wasted work); issues in name order below.
        for payloadIndex in payload.indices {
            let (name, value) = payload[payloadIndex]
            var field: String { "\(prefix).\(name)" }
            guard let index = position(name) else {
                let hint = suggestion(for: name, among: fields.map(\.name)).map { " (did you mean '\($0)'?)" } ?? ""
                issues.append(PayloadIssue(field: field, code: .unknownField, message: "'\(name)' is not a field of \(owner())\(hint); leave it out or correct the name"))
                continue
            }
            found[index] = payloadIndex
            if let problem = check(value, format: fields[index].format, maxLength: fields[index].maxLength) {
                issues.append(PayloadIssue(field: field, code: problem.0, message: "'\(name)' \(problem.1)"))
            }
        }
        issues.sort { $0.field < $1.field }
        // Field names are unique: a field's own position is where its name was found.
        for index in fields.indices where fields[index].required {
            let name = fields[index].name
            let missing: Bool
            switch found[index].map({ payload[$0].value }) {
            case nil: missing = true
            case .string(let text): missing = text.isEmpty
            default: missing = false
            }
            if missing {
                issues.append(PayloadIssue(field: "\(prefix).\(name)", code: .missingField,
                                           message: "'\(name)' is required for \(owner()); fill it in (\(expectation(fields[index].format)))"))
            }
        }
        return issues
    }

    /// What a value of this format looks like, for messages.
    static func expectation(_ format: FieldFormat) -> String {
        switch format {
        case .text: "text"
        case .postcode: "a postcode such as \"1621AB\""
        case .date: "a date as \"YYYY-MM-DD\""
        case .amount: "an amount in euros as a number, e.g. 1234.56"
        case .bsn: "a 9-digit BSN as text that passes the elfproef"
        case .boolean: "true or false"
        case .integer: "a whole number, without quotes"
        case .phone: "a phone number of 10 to 15 digits as text"
        case .email: "an e-mail address as text"
        case .enumeration(let values): "one of " + values.map { "\"\($0)\"" }.joined(separator: ", ")
        }
    }

    /// Checks a value against its field's format and length (passed apart, so that the
    /// definition is not copied for every field of every payload).
    private static func check(_ value: PayloadValue, format: FieldFormat, maxLength: Int?) -> (PayloadIssueCode, String)? {
        var expected: String { expectation(format) }
        func wrongType() -> (PayloadIssueCode, String) { (.wrongType, "must be \(expected), found \(value.kindName)") }
        switch format {
        case .boolean:
            guard case .boolean = value else { return wrongType() }
        case .integer:
            guard case .integer = value else { return wrongType() }
        case .amount:
            let amount: Double
            switch value {
            case .integer(let number): amount = Double(number)
            case .number(let number): amount = number
            default: return wrongType()
            }
            guard amount >= 0, amount < 1e12, abs(amount * 100 - (amount * 100).rounded()) < 1e-6 else {
                return (.badFormat, "must be \(expected): not negative, at most two decimals")
            }
        case .text, .postcode, .date, .bsn, .phone, .email, .enumeration:
            guard case .string(let text) = value else { return wrongType() }
            // Characters never outnumber UTF-8 bytes: count them only when the bytes do not settle it.
            if let maxLength, text.utf8.count > maxLength, text.count > maxLength {
                return (.tooLong, "is longer than \(maxLength) characters; shorten it")
            }
            return checkText(text, format, expected)
        }
        return nil
    }

    private static func checkText(_ text: String, _ format: FieldFormat, _ expected: @autoclosure () -> String) -> (PayloadIssueCode, String)? {
        let valid: Bool
        switch format {
        case .postcode: valid = Postcode(text) != nil
        case .date: valid = LocalDate(text) != nil
        case .bsn: valid = isValidBSN(text)
        case .phone:
            var digits = text.filter { !" -()".contains($0) }
            if digits.hasPrefix("+") { digits.removeFirst() }
            valid = (10...15).contains(digits.count) && digits.allSatisfy { $0.isASCII && $0.isNumber }
        case .email:
            let parts = text.split(separator: "@", omittingEmptySubsequences: false)
            valid = parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && !parts[1].hasPrefix(".") && !parts[1].hasSuffix(".")
                && !text.contains(where: { $0.isWhitespace }) && text.count <= 254
        case .enumeration(let values):
            return values.contains(text) ? nil : (.notInValues, "must be \(expected())")
        default:
            valid = true
        }
        return valid ? nil : (.badFormat, "must be \(expected())")
    }

    /// A BSN is nine digits that pass the elfproef: 9·d1 + 8·d2 + … + 2·d8 − d9 ≡ 0 (mod 11).
    static func isValidBSN(_ text: String) -> Bool {
        let digits = text.compactMap { $0.isASCII ? $0.wholeNumberValue : nil }
        guard digits.count == 9, text.count == 9, digits.contains(where: { $0 != 0 }) else { return false }
        let sum = (0..<8).reduce(0) { $0 + (9 - $1) * digits[$1] } - digits[8]
        return sum % 11 == 0
    }
}
