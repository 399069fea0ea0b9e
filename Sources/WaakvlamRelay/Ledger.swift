import Foundation
import WaakvlamCore
import WaakvlamCrypto

// Vroeg Eropaf from a rent ledger: the columns of a ledger export mapped to the fields of the
// signal type `betalingsachterstand`, each row checked before anything is sent, and a signal
// id per arrears episode so that sending the same file twice sends nothing twice.
// Pure: a parsed CSV table in, alerts and per-row refusals out.

/// A field of `betalingsachterstand` that a ledger column can fill, and how a cell is read.
public struct LedgerField: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case text, amount, date, wholeNumber, yesNo, postcode

        /// What a cell of this kind looks like, for messages.
        var expectation: String {
            switch self {
            case .text: "text"
            case .amount: "an amount in euros with a point, e.g. 1234.56"
            case .date: "a date as YYYY-MM-DD, e.g. 2026-03-01"
            case .wholeNumber: "a whole number, e.g. 12"
            case .yesNo: "ja or nee"
            case .postcode: "a postcode such as 1621AB"
            }
        }
    }

    public let name: String
    public let kind: Kind
    /// A row without it is refused. (`signaaldatum` is required by the signal type but
    /// defaults to the day of sending.)
    public let required: Bool
}

/// A row ready to send: the arrears episode it reports and its payload.
public struct LedgerAlert: Sendable, Equatable {
    public var arrearsStart: LocalDate
    public var payload: [String: PayloadValue]
}

/// Why a row is not sent: a stable code and one sentence per problem, naming the column and
/// what to write instead (never the value found: the report may travel).
public struct LedgerRowRefusal: Error, Sendable, Equatable {
    /// `invalid_row`, `precondition_not_met` or `tenant_objected` (the last two as the node
    /// names them).
    public var code: String
    public var reasons: [String]

    public var message: String { reasons.joined(separator: "; ") }
}

/// One data row of a ledger file, read.
public struct LedgerEntry: Sendable, Equatable {
    public enum Content: Sendable, Equatable {
        case alert(LedgerAlert)
        case refused(LedgerRowRefusal)
        /// The same tenant, arrears start and details as an earlier row: sent once, for that row.
        case duplicate(ofRow: Int)
    }

    /// The row number as a spreadsheet shows it (the header is row 1).
    public var row: Int
    /// The corporation's tenant reference; empty when the row lacks it.
    public var tenant: String
    public var content: Content
}

public enum Ledger {
    public static let signalType = "betalingsachterstand"
    /// The mapping target for the corporation's own tenant reference: it is not sent, it makes
    /// the signal id and names the row in the report.
    public static let tenantReference = "huurderReferentie"
    public static let signalDateField = "signaaldatum"

    /// The fields a ledger column can fill. `signaalpartnerType` is always "Huur"; the health
    /// note `zorgNotitie` of the signal type is deliberately not mappable.
    public static let fields: [LedgerField] = [
        LedgerField(name: "bedrag", kind: .amount, required: true),
        LedgerField(name: VroegEropaf.arrearsStartField, kind: .date, required: true),
        LedgerField(name: signalDateField, kind: .date, required: false),
        LedgerField(name: "Voorletters", kind: .text, required: false),
        LedgerField(name: "Voorvoegsel", kind: .text, required: false),
        LedgerField(name: "Achternaam", kind: .text, required: true),
        LedgerField(name: "Geboortedatum", kind: .date, required: false),
        LedgerField(name: "Burgerservicenummer", kind: .text, required: false),
        LedgerField(name: "Straatnaam", kind: .text, required: false),
        LedgerField(name: "Postcode", kind: .postcode, required: true),
        LedgerField(name: "Huisnummer", kind: .wholeNumber, required: true),
        LedgerField(name: "Huisnummertoevoeging", kind: .text, required: false),
        LedgerField(name: "Plaatsnaam", kind: .text, required: false),
        LedgerField(name: "Telefoonnummer", kind: .text, required: false),
        LedgerField(name: "Emailadres", kind: .text, required: false),
    ] + VroegEropaf.attestations.map { LedgerField(name: $0.field, kind: .yesNo, required: true) } + [
        LedgerField(name: VroegEropaf.reminderDateField, kind: .date, required: true),
        LedgerField(name: VroegEropaf.objectionField, kind: .yesNo, required: true),
    ]

    /// Mapping targets: the tenant reference and every field.
    static var targets: [String] { [tenantReference] + fields.map(\.name) }

    /// Reads every row of `table` with `mapping`. Throws only for problems of the whole file
    /// (required columns missing); a bad row becomes a refused entry and the others go on.
    /// - Parameter today: the day of sending, for `signaaldatum` when the file has none.
    public static func read(_ table: CSVTable, mapping: LedgerMapping, today: LocalDate) throws(LedgerFileError) -> [LedgerEntry] {
        let columns = try mapping.resolve(header: table.header)
        var firstRow: [EpisodeKey: (row: Int, payload: [String: PayloadValue])] = [:]
        let signalDate = PayloadValue.string(today.description)
        return table.records.map { record in
            var entry = read(record, columns: columns, headerCount: table.header.count, signalDate: signalDate)
            if case .alert(let alert) = entry.content {
                let key = EpisodeKey(tenant: entry.tenant, arrearsStart: alert.arrearsStart)
                if let first = firstRow[key] {
                    entry.content = first.payload == alert.payload
                        ? .duplicate(ofRow: first.row)
                        : .refused(LedgerRowRefusal(code: "duplicate_row", reasons: [
                            "row \(first.row) has the same tenant reference and arrears start (\(VroegEropaf.arrearsStartField)) with other details: one alert per tenant and arrears start; remove or correct one of the rows"]))
                } else {
                    firstRow[key] = (record.row, alert.payload)
                }
            }
            return entry
        }
    }

    private struct EpisodeKey: Hashable {
        let tenant: String
        let arrearsStart: LocalDate
    }

    /// - Parameter signalDate: `signaaldatum` for a row without one.
    static func read(_ record: CSVRecord, columns: [String: LedgerMapping.Column], headerCount: Int, signalDate: PayloadValue) -> LedgerEntry {
        func cell(_ target: String) -> String? {
            guard let column = columns[target], column.index < record.fields.count else { return nil }
            let text = trimmed(record.fields[column.index])
            return text.isEmpty ? nil : text
        }
        let tenant = cell(tenantReference) ?? ""
        if let problem = record.problem {
            return LedgerEntry(row: record.row, tenant: tenant, content: .refused(LedgerRowRefusal(code: "invalid_row", reasons: [problem])))
        }
        if record.fields.count < headerCount || record.fields[headerCount...].contains(where: { !$0.allSatisfy(\.isWhitespace) }) {
            return LedgerEntry(row: record.row, tenant: tenant, content: .refused(LedgerRowRefusal(code: "invalid_row", reasons: [
                "the row has \(record.fields.count) fields where the header has \(headerCount): check the delimiters and quotes in this row"])))
        }
        var problems: [String] = []
        if tenant.isEmpty {
            problems.append("\(columns[tenantReference]!.label) is empty: every row needs the tenant reference, from which the signal id is made")
        }
        var payload: [String: PayloadValue] = ["signaalpartnerType": .string("Huur")]
        for field in fields {
            guard let text = cell(field.name) else {
                if field.name == signalDateField {
                    payload[field.name] = signalDate
                } else if field.required {
                    let label = columns[field.name]?.label ?? "'\(field.name)'"
                    problems.append("\(label) is empty: fill it in (\(field.kind.expectation))")
                }
                continue
            }
            switch value(text, kind: field.kind) {
            case .success(let value): payload[field.name] = value
            case .failure(let problem): problems.append("\(columns[field.name]!.label) \(problem.text)")
            }
        }
        guard problems.isEmpty, case .string(let startText)? = payload[VroegEropaf.arrearsStartField], let start = LocalDate(startText) else {
            return LedgerEntry(row: record.row, tenant: tenant, content: .refused(LedgerRowRefusal(code: "invalid_row", reasons: problems)))
        }
        if let refusal = preconditionRefusal(payload, columns: columns) {
            return LedgerEntry(row: record.row, tenant: tenant, content: .refused(refusal))
        }
        return LedgerEntry(row: record.row, tenant: tenant, content: .alert(LedgerAlert(arrearsStart: start, payload: payload)))
    }

    /// Besluit gemeentelijke schuldhulpverlening art. 2: without (a)-(d) attested, or when the
    /// tenant objected, the details must not leave the corporation, so the row is not sent at
    /// all. (The node checks the same, and the threshold, for every sender.)
    private static func preconditionRefusal(_ payload: [String: PayloadValue], columns: [String: LedgerMapping.Column]) -> LedgerRowRefusal? {
        let law = "Besluit gemeentelijke schuldhulpverlening art. 2"
        let unmet = VroegEropaf.attestations.filter { payload[$0.field] != .boolean(true) }.map { step in
            "(\(step.letter)) not attested: \(columns[step.field]!.label) must be ja, meaning \(step.meaning) (\(law))"
        }
        if !unmet.isEmpty { return LedgerRowRefusal(code: "precondition_not_met", reasons: unmet) }
        if payload[VroegEropaf.objectionField] == .boolean(true) {
            return LedgerRowRefusal(code: "tenant_objected", reasons: [
                "the tenant refused to have the details passed on (\(columns[VroegEropaf.objectionField]!.label) is ja), so nothing may be sent (\(law) (d))"])
        }
        return nil
    }

    /// Without surrounding white space (a cheap check first: most cells have none).
    static func trimmed(_ text: String) -> String {
        guard let first = text.utf8.first, let last = text.utf8.last else { return text }
        let plain = { (byte: UInt8) in byte > 32 && byte < 128 }
        return plain(first) && plain(last) ? text : text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct CellProblem: Error {
        let text: String
    }

    /// A cell as a payload value, or what is wrong with it (without repeating the value).
    static func value(_ text: String, kind: LedgerField.Kind) -> Result<PayloadValue, CellProblem> {
        switch kind {
        case .text:
            return .success(.string(text))
        case .postcode:
            guard let postcode = Postcode(text) else {
                return .failure(CellProblem(text: "is not a postcode: write four digits and two letters, e.g. 1621AB or 1621 AB"))
            }
            return .success(.string(postcode.description))
        case .wholeNumber:
            guard text.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(text), number > 0 else {
                return .failure(CellProblem(text: "is not a whole number: write only the number, e.g. 12, and put an addition such as a or bis in Huisnummertoevoeging"))
            }
            return .success(.integer(number))
        case .yesNo:
            switch text.lowercased() {
            case "ja", "j", "true", "waar", "1", "yes", "y": return .success(.boolean(true))
            case "nee", "n", "false", "onwaar", "0", "no": return .success(.boolean(false))
            default: return .failure(CellProblem(text: "must be ja or nee (also accepted: j/n, true/false, 1/0, yes/no)"))
            }
        case .date:
            if LocalDate(text) != nil { return .success(.string(text)) }
            return .failure(CellProblem(text: dateProblem(text)))
        case .amount:
            return amount(text)
        }
    }

    private static func dateProblem(_ text: String) -> String {
        let parts = text.split(whereSeparator: { "-/.".contains($0) })
        let numeric = parts.count == 3 && parts.allSatisfy { $0.allSatisfy { $0.isASCII && $0.isNumber } }
        if numeric && parts[0].count == 4 {
            return "is not an existing date in the format YYYY-MM-DD, e.g. 2026-03-01"
        }
        if numeric && parts[2].count == 4 {
            return "is written day-month-year: write the date as YYYY-MM-DD (year-month-day), e.g. 2026-03-01"
        }
        return "is not a date in the format YYYY-MM-DD, e.g. 2026-03-01"
    }

    private static func amount(_ text: String) -> Result<PayloadValue, CellProblem> {
        var digits = Substring(text)
        let negative = digits.hasPrefix("-")
        if negative { digits = digits.dropFirst() }
        let parts = digits.split(separator: ".", omittingEmptySubsequences: false)
        let wellFormed = (1...2).contains(parts.count) && !parts[0].isEmpty && parts.allSatisfy { $0.allSatisfy { $0.isASCII && $0.isNumber } }
        if wellFormed && negative {
            return .failure(CellProblem(text: "is negative: write the arrears as a positive amount, e.g. 12.50"))
        }
        if !wellFormed && text.contains(",") {
            return .failure(CellProblem(text: "uses a comma: write the amount with a point as decimal separator and no thousands separator, e.g. 12.50"))
        }
        guard wellFormed, parts[0].count <= 12 else {
            return .failure(CellProblem(text: "is not an amount: write euros with a point and at most two decimals, e.g. 1234.56 (no € sign, no thousands separator)"))
        }
        if parts.count == 2 && (parts[1].isEmpty || parts[1].count > 2) {
            return .failure(CellProblem(text: "must have one or two decimals after the point, e.g. 12.50"))
        }
        let amount = Double(String(digits))!
        if amount == 0 {
            return .failure(CellProblem(text: "is 0: only arrears above zero are reported"))
        }
        return .success(.number(amount))
    }

    // MARK: - Signal ids

    /// The namespace of Waakvlam's name-based ledger ids (a random UUID, fixed forever).
    private static let namespace: [UInt8] = withUnsafeBytes(of: UUID(uuidString: "0c92a32f-ef09-443b-84c1-8df5ffb452c6")!.uuid) { Array($0) }

    /// The signal id of an arrears episode: a name-based UUID (RFC 9562 version 8, from
    /// SHA-256) of the corporation, the tenant reference and the arrears start. The same row
    /// gives the same id on every run and every machine, so the node recognises a re-sent row.
    /// - Parameter attempt: 0 for the first submission of the episode; 1, 2, … for the
    ///   submissions made after an earlier one was refused (see `LedgerSender`).
    public static func signalID(corporation: String, tenant: String, arrearsStart: LocalDate, attempt: Int = 0) -> String {
        var name = namespace
        for part in [signalType, corporation, tenant, arrearsStart.description] + (attempt > 0 ? [String(attempt)] : []) {
            name.append(0)
            name += Array(part.utf8)
        }
        var digest = Array(SHA256.hash(name).prefix(16))
        digest[6] = (digest[6] & 0x0F) | 0x80
        digest[8] = (digest[8] & 0x3F) | 0x80
        let hex = Hex.encode(digest)
        let cuts = [0, 8, 12, 16, 20, 32].map { hex.index(hex.startIndex, offsetBy: $0) }
        return (0..<5).map { String(hex[cuts[$0]..<cuts[$0 + 1]]) }.joined(separator: "-")
    }
}

/// Which CSV column fills which field: CSV header (compared without case and surrounding
/// spaces) to a field of `betalingsachterstand` or `huurderReferentie`. Several headers may
/// name one field (alternatives; a file may hold only one of them). A header equal to a field
/// name fills that field when no mapped header is present.
public struct LedgerMapping: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var header: String
        public var target: String

        public init(header: String, target: String) {
            self.header = header
            self.target = target
        }
    }

    /// A resolved column: its position and how messages name it.
    struct Column: Equatable {
        let index: Int
        let header: String
        let target: String

        var label: String { header == target ? "'\(header)'" : "'\(header)' (\(target))" }
    }

    public var entries: [Entry]

    /// Checks that every target is known and that every required one is mapped.
    public init(_ entries: [Entry]) throws(LedgerFileError) {
        var problems: [String] = []
        for entry in entries where !Ledger.targets.contains(entry.target) {
            let hint = Ledger.targets.first { $0.lowercased() == entry.target.lowercased() }.map { " (did you mean '\($0)'?)" } ?? ""
            problems.append("'\(entry.header)' maps to '\(entry.target)', which is not a field a ledger column can fill\(hint); use one of \(Ledger.targets.joined(separator: ", "))")
        }
        let mapped = Set(entries.map(\.target))
        for target in [Ledger.tenantReference] + Ledger.fields.filter(\.required).map(\.name) where !mapped.contains(target) {
            problems.append("no column maps to '\(target)', which every row needs")
        }
        guard problems.isEmpty else { throw .invalidMapping(problems.joined(separator: "; ")) }
        self.entries = entries
    }

    /// The columns of a typical ledger export with Dutch headers (docs/VROEG-EROPAF.md).
    public static let standard = try! LedgerMapping([
        ("Huurdernummer", Ledger.tenantReference),
        ("Voorletters", "Voorletters"), ("Tussenvoegsel", "Voorvoegsel"), ("Achternaam", "Achternaam"),
        ("Geboortedatum", "Geboortedatum"),
        ("Straat", "Straatnaam"), ("Huisnummer", "Huisnummer"), ("Toevoeging", "Huisnummertoevoeging"),
        ("Postcode", "Postcode"), ("Woonplaats", "Plaatsnaam"),
        ("Telefoon", "Telefoonnummer"), ("E-mail", "Emailadres"),
        ("Achterstand", "bedrag"), ("Achterstand sinds", VroegEropaf.arrearsStartField), ("Signaaldatum", Ledger.signalDateField),
        ("Persoonlijk contact geprobeerd", "persoonlijkContactGeprobeerd"), ("Gewezen op schuldhulp", "gewezenOpSchuldhulp"),
        ("Herinnering verstuurd", "schriftelijkeHerinneringVerstuurd"), ("Datum herinnering", VroegEropaf.reminderDateField),
        ("Aanbod gegevens doorgeven", "aanbodGegevensDoorgeven"), ("Bezwaar", VroegEropaf.objectionField),
    ].map { Entry(header: $0.0, target: $0.1) })

    /// Reads a mapping file: a JSON object (comments allowed) of CSV header to target.
    public static func parse(_ data: Data) throws(LedgerFileError) -> LedgerMapping {
        let object: [(String, PayloadValue)]
        switch Payload.parse(data) {
        case .failure(let invalid):
            throw .invalidMapping(invalid.issues.map { issue in
                switch issue.code {
                case .notJSON: issue.message
                case .duplicateField: "a header appears twice; map each header once"
                default: "it must be one JSON object of \"CSV header\": \"field\", for example {\"Achterstand\": \"bedrag\"}"
                }
            }.joined(separator: "; "))
        case .success(let values):
            object = values.sorted { $0.key < $1.key }
        }
        var entries: [Entry] = []
        for (header, value) in object {
            guard case .string(let target) = value else {
                throw .invalidMapping("the value for '\(header)' must be a field name in quotes, such as \"bedrag\"")
            }
            entries.append(Entry(header: header, target: target))
        }
        return try LedgerMapping(entries)
    }

    /// The mapping as a JSON file that `parse` reads (to start a custom mapping from).
    public var json: String {
        let width = entries.map(\.header.count).max() ?? 0
        let lines = entries.map { entry in
            "  \"\(entry.header)\": " + String(repeating: " ", count: width - entry.header.count) + "\"\(entry.target)\""
        }
        return "// CSV header -> field of betalingsachterstand (huurderReferentie: the tenant reference, not sent)\n{\n"
            + lines.joined(separator: ",\n") + "\n}\n"
    }

    /// The column for every target present in `header`; throws when a required one is
    /// missing, two present columns fill one field, or a used header appears twice.
    func resolve(header: [String]) throws(LedgerFileError) -> [String: Column] {
        func normal(_ text: String) -> String { text.trimmingCharacters(in: .whitespaces).lowercased() }
        var positions: [String: [Int]] = [:]
        for (index, name) in header.enumerated() { positions[normal(name), default: []].append(index) }
        var columns: [String: Column] = [:]
        var missing: [String] = []
        for target in Ledger.targets {
            let mapped = entries.filter { $0.target == target }.map(\.header)
            var present = mapped.filter { positions[normal($0)] != nil }
            if present.isEmpty && positions[normal(target)] != nil { present = [target] }
            if present.count > 1 { throw .ambiguousColumns(field: target, headers: present) }
            guard let name = present.first else {
                let required = target == Ledger.tenantReference || Ledger.fields.contains { $0.name == target && $0.required }
                if required { missing.append(mapped.map { "'\($0)'" }.joined(separator: " or ") + " for \(target)") }
                continue
            }
            let found = positions[normal(name)]!
            if found.count > 1 { throw .duplicateHeader(header[found[0]]) }
            columns[target] = Column(index: found[0], header: header[found[0]], target: target)
        }
        guard missing.isEmpty else { throw .missingColumns(missing) }
        return columns
    }
}
