import Foundation

// Reading a rent-ledger export: CSV as spreadsheets write it (UTF-8 with or without a byte
// order mark, `;`, `,` or tab as delimiter, RFC 4180 quotes). Pure: bytes in, table out.

/// A CSV file: its header and its data records.
public struct CSVTable: Sendable, Equatable {
    /// The delimiter found in the header line: `;`, `,` or a tab.
    public var delimiter: UInt8
    public var header: [String]
    public var records: [CSVRecord]

    public init(delimiter: UInt8, header: [String], records: [CSVRecord]) {
        self.delimiter = delimiter
        self.header = header
        self.records = records
    }

    /// Reads `data`: strips a UTF-8 byte order mark, checks the encoding, detects the delimiter
    /// from the header line and splits records. Empty lines and lines of empty fields are
    /// skipped (but counted in row numbers).
    public static func parse(_ data: Data) throws(LedgerFileError) -> CSVTable {
        var bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        if String(validating: bytes, as: UTF8.self) == nil {
            let offset = firstInvalidUTF8Offset(bytes)
            throw .notUTF8(line: 1 + bytes[..<offset].reduce(0) { $0 + ($1 == 10 ? 1 : 0) })
        }
        guard let delimiter = detectDelimiter(bytes) else { throw .noDelimiter }
        var reader = CSVReader(bytes: bytes, delimiter: delimiter)
        guard let header = try reader.next() else { throw .empty }
        if let problem = header.problem { throw .badHeader(problem) }
        var records: [CSVRecord] = []
        while let record = try reader.next() {
            if record.problem == nil && record.fields.allSatisfy({ $0.allSatisfy(\.isWhitespace) }) { continue }
            records.append(record)
        }
        return CSVTable(delimiter: delimiter, header: header.fields.map { $0.trimmingCharacters(in: .whitespaces) }, records: records)
    }

    /// The delimiter that occurs most often (outside quotes) in the first line: `;` wins ties,
    /// as Dutch spreadsheets write it.
    static func detectDelimiter(_ bytes: [UInt8]) -> UInt8? {
        var counts: [UInt8: Int] = [:]
        var quoted = false
        for byte in bytes {
            if byte == UInt8(ascii: "\"") { quoted.toggle() }
            if !quoted && (byte == 10 || byte == 13) { break }
            if !quoted { counts[byte, default: 0] += 1 }
        }
        let candidates: [UInt8] = [UInt8(ascii: ";"), UInt8(ascii: ","), 9]
        let best = candidates.max { counts[$0, default: 0] < counts[$1, default: 0] }!
        return counts[best, default: 0] > 0 ? best : nil
    }

    /// Where the first byte that is not UTF-8 is (slow; only for the message).
    static func firstInvalidUTF8Offset(_ bytes: [UInt8]) -> Int {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        while case .valid(let scalar) = parser.parseScalar(from: &iterator) { offset += scalar.count }
        return offset
    }
}

/// One record of a CSV file.
public struct CSVRecord: Sendable, Equatable {
    /// The row number a spreadsheet shows for it: the header is row 1, a quoted field with line
    /// breaks stays one row.
    public var row: Int
    public var fields: [String]
    /// Set when the record is malformed (text after a closing quote); the fields are then
    /// not to be trusted.
    public var problem: String?

    public init(row: Int, fields: [String], problem: String? = nil) {
        self.row = row
        self.fields = fields
        self.problem = problem
    }
}

/// Why a ledger file as a whole cannot be used; nothing is sent.
public enum LedgerFileError: Error, Sendable, Equatable, CustomStringConvertible {
    case notUTF8(line: Int)
    case empty
    case noDelimiter
    case badHeader(String)
    case unterminatedQuote(row: Int)
    case missingColumns([String])
    case ambiguousColumns(field: String, headers: [String])
    case duplicateHeader(String)
    case invalidMapping(String)

    public var description: String {
        switch self {
        case .notUTF8(let line):
            "the file is not UTF-8 (line \(line) holds a byte that is not): export it as \"CSV UTF-8\" (Excel: Save As > CSV UTF-8), or convert it with `iconv -f WINDOWS-1252 -t UTF-8`"
        case .empty:
            "the file is empty: it needs a header line with the column names and one line per tenant"
        case .noDelimiter:
            "the first line has no ';', ',' or tab: it must be the header with the column names, separated by one of these"
        case .badHeader(let problem):
            "the header line is malformed: \(problem)"
        case .unterminatedQuote(let row):
            "the quoted field that starts in row \(row) is never closed: every \" that opens a field needs a closing \" (write \"\" for a quote inside a field)"
        case .missingColumns(let missing):
            "the file lacks required columns: \(missing.joined(separator: "; ")). Add them to the export, or map other column names with --mapping FILE"
        case .ambiguousColumns(let field, let headers):
            "columns \(headers.map { "'\($0)'" }.joined(separator: " and ")) both map to \(field): keep one of them in the export or the mapping"
        case .duplicateHeader(let header):
            "the column '\(header)' appears twice in the header: rename or remove one"
        case .invalidMapping(let reason):
            "the column mapping is not usable: \(reason)"
        }
    }
}

/// Splits bytes into records (RFC 4180, with `\n`, `\r\n` or `\r` line ends).
private struct CSVReader {
    let bytes: [UInt8]
    let delimiter: UInt8
    var position = 0
    var row = 0

    init(bytes: [UInt8], delimiter: UInt8) {
        self.bytes = bytes
        self.delimiter = delimiter
    }

    mutating func next() throws(LedgerFileError) -> CSVRecord? {
        guard position < bytes.count else { return nil }
        row += 1
        let quote = UInt8(ascii: "\"")
        var fields: [String] = []
        var field: [UInt8] = []
        var problem: String?
        var quoted = false
        var fieldStarted = false
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            if quoted {
                if byte == quote {
                    if position < bytes.count && bytes[position] == quote {
                        field.append(quote)
                        position += 1
                    } else {
                        quoted = false
                        // After the closing quote only a delimiter or the end of the line may follow.
                        if position < bytes.count, ![delimiter, 10, 13].contains(bytes[position]) {
                            problem = problem ?? "field \(fields.count + 1) has text after its closing quote: put the whole field in quotes and write \"\" for a quote inside it"
                        }
                    }
                } else {
                    field.append(byte)
                }
                continue
            }
            switch byte {
            case quote where !fieldStarted:
                quoted = true
                fieldStarted = true
            case delimiter:
                fields.append(String(decoding: field, as: UTF8.self))
                field.removeAll(keepingCapacity: true)
                fieldStarted = false
            case 10, 13:
                if byte == 13 && position < bytes.count && bytes[position] == 10 { position += 1 }
                fields.append(String(decoding: field, as: UTF8.self))
                return CSVRecord(row: row, fields: fields, problem: problem)
            default:
                field.append(byte)
                if byte != UInt8(ascii: " ") { fieldStarted = true }
            }
        }
        if quoted { throw .unterminatedQuote(row: row) }
        fields.append(String(decoding: field, as: UTF8.self))
        return CSVRecord(row: row, fields: fields, problem: problem)
    }
}
