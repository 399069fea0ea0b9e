import Foundation
import WaakvlamSystem

/// Header fields in the order received. Names are stored lower-cased (they are
/// case-insensitive in HTTP); values have surrounding whitespace removed.
///
/// The fields live one after the other in one byte buffer (each as its name's and its
/// value's byte counts, then the name and the value), so that a parsed head costs one
/// allocation instead of one per field name or value longer than a small string; strings
/// are made only when asked for. Names and values compare as the strings they read as.
public struct HTTPHeaders: Sendable, Equatable, Sequence {
    private var storage: [UInt8] = []
    public private(set) var count = 0
    /// The bytes before a field's name: its name's and its value's byte counts.
    private static let prefixCount = 2 * MemoryLayout<UInt32>.size

    public init() {}

    /// Empty, with room for `byteCount` bytes of names and values in `fields` fields.
    init(capacity fields: Int, byteCount: Int) {
        storage.reserveCapacity(fields * Self.prefixCount + byteCount)
    }

    public init(_ fields: [(String, String)]) {
        for (name, value) in fields { add(name, value) }
    }

    /// The fields as strings, in order.
    public var fields: [(name: String, value: String)] {
        var out: [(name: String, value: String)] = []
        out.reserveCapacity(count)
        forEachField { name, value in
            out.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
            return true
        }
        return out
    }

    public mutating func add(_ name: String, _ value: String) {
        append(name: name.utf8, lowercasing: true, value: value.utf8)
    }

    /// For the parser: `name` is a token (ASCII), lower-cased while copied; `value` is kept
    /// as `String(decoding:as: UTF8.self)` reads it (invalid UTF-8 replaced).
    mutating func addParsed(name: HeadBytes, value: HeadBytes) {
        if value.contains(where: { $0 >= 0x80 }) {
            append(name: name, lowercasing: true, value: String(decoding: value, as: UTF8.self).utf8)
        } else {
            append(name: name, lowercasing: true, value: value)
        }
    }

    private mutating func append<N: Collection, V: Collection>(name: N, lowercasing: Bool, value: V)
        where N.Element == UInt8, V.Element == UInt8 {
        withUnsafeBytes(of: UInt32(name.count).littleEndian) { storage.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(value.count).littleEndian) { storage.append(contentsOf: $0) }
        if lowercasing {
            for byte in name { storage.append(byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte) }
        } else {
            storage.append(contentsOf: name)
        }
        storage.append(contentsOf: value)
        count += 1
    }

    /// Replaces every field called `name` by a single one.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    public mutating func remove(_ name: String) {
        var kept = HTTPHeaders()
        var lower = name.asciiLowercased
        lower.withUTF8 { key in
            forEachField { fieldName, value in
                if !Self.same(fieldName, key) { kept.append(name: fieldName, lowercasing: false, value: value) }
                return true
            }
        }
        self = kept
    }

    /// The first value of `name`, if any.
    public subscript(name: String) -> String? {
        var found: String?
        forEachValue(named: name) { value in
            found = String(decoding: value, as: UTF8.self)
            return false
        }
        return found
    }

    public func values(_ name: String) -> [String] {
        var out: [String] = []
        forEachValue(named: name) { value in
            out.append(String(decoding: value, as: UTF8.self))
            return true
        }
        return out
    }

    /// Calls `body` with the value of each field called `name` (in any case), in order, while
    /// it returns true.
    private func forEachValue(named name: String, _ body: (UnsafeBufferPointer<UInt8>) -> Bool) {
        var lower = name.asciiLowercased
        lower.withUTF8 { key in
            forEachField { fieldName, value in Self.same(fieldName, key) ? body(value) : true }
        }
    }

    /// Whether a field is called `name` (lower case).
    func contains(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        var found = false
        forEachField { fieldName, _ in
            found = Self.same(fieldName, name)
            return !found
        }
        return found
    }

    /// Calls `body` with each field's name and value, in order, while it returns true.
    func forEachField(_ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) throws -> Bool) rethrows {
        try storage.withUnsafeBufferPointer { all in
            guard let base = all.baseAddress else { return }
            var offset = 0
            while offset < all.count {
                let nameCount = Int(UInt32(littleEndian: UnsafeRawPointer(base + offset).loadUnaligned(as: UInt32.self)))
                let valueCount = Int(UInt32(littleEndian: UnsafeRawPointer(base + offset + 4).loadUnaligned(as: UInt32.self)))
                let name = UnsafeBufferPointer(start: base + offset + Self.prefixCount, count: nameCount)
                let value = UnsafeBufferPointer(start: base + offset + Self.prefixCount + nameCount, count: valueCount)
                offset += Self.prefixCount + nameCount + valueCount
                guard try body(name, value) else { return }
            }
        }
    }

    /// Whether a stored name reads as `name` (see `same`).
    static func name(_ stored: UnsafeBufferPointer<UInt8>, is name: StaticString) -> Bool {
        name.withUTF8Buffer { same(stored, $0) }
    }

    /// Whether a name the parser stored is `name`: byte for byte, as parsed names are ASCII
    /// (`name(_:is:)` also allows for stored names beyond ASCII).
    static func parsedName(_ stored: UnsafeBufferPointer<UInt8>, is name: StaticString) -> Bool {
        name.withUTF8Buffer { equalBytes(stored, $0) }
    }

    /// Whether two names or values read as the same string: equal bytes, or (only possible
    /// beyond ASCII) canonically equivalent text, as `String`'s `==` has it.
    static func same(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        if equalBytes(a, b) { return true }
        guard a.contains(where: { $0 >= 0x80 }) || b.contains(where: { $0 >= 0x80 }) else { return false }
        return String(decoding: a, as: UTF8.self) == String(decoding: b, as: UTF8.self)
    }

    private static func equalBytes(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        a.count == b.count && (a.isEmpty || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        guard lhs.count == rhs.count else { return false }
        if lhs.storage == rhs.storage { return true }
        return zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}

extension String {
    /// Lower-cases A-Z only: header names and tokens are ASCII, and this avoids Unicode
    /// case mapping (and any copy when the text is lower case already).
    var asciiLowercased: String {
        guard utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5a }) else { return self }
        return String(unsafeUninitializedCapacity: utf8.count) { buffer in
            for (offset, byte) in utf8.enumerated() { buffer[offset] = byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte }
            return utf8.count
        }
    }
}

public enum HTTPVersion: String, Sendable, Equatable {
    case http10 = "HTTP/1.0"
    case http11 = "HTTP/1.1"
}

/// A complete request as parsed by `HTTPRequestParser`.
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    /// The request target exactly as sent (origin form: path and query).
    public var target: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    /// The body after removing any chunked framing.
    public var body: [UInt8]
    /// Whether the client lets the connection stay open after the response.
    public var keepAlive: Bool

    public init(method: String, target: String, version: HTTPVersion = .http11,
                headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [], keepAlive: Bool = true) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.keepAlive = keepAlive
    }

    /// The target without its query string.
    public var path: Substring {
        if let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) { return target[..<q] }
        return target[...]
    }

    /// The query string without `?`, if any.
    public var query: Substring? {
        guard let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return nil }
        return target[target.index(after: q)...]
    }
}

/// A response to write (server) or as parsed (client).
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    /// Extra header fields. The writer adds Content-Length, Connection and Date itself.
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A response with a JSON body (already serialised).
    public static func json(status: Int, _ body: [UInt8]) -> HTTPResponse {
        HTTPResponse(status: status, headers: jsonHeaders, body: body)
    }

    /// Made once: a copy shares its storage.
    private static let jsonHeaders = HTTPHeaders([("content-type", "application/json")])

    /// A response with a JSON-serialisable object as body (keys sorted).
    public static func json(status: Int, object: Any) -> HTTPResponse {
        json(status: status, JSONText.encode(object))
    }

    /// The project's error shape: `{"error":{"code":"...","message":"..."}}`.
    public static func error(status: Int, code: String, message: String) -> HTTPResponse {
        json(status: status, object: ["error": ["code": code, "message": message]])
    }

    /// The error code and message of a body in the project's error shape, if it is one.
    public var errorBody: (code: String, message: String)? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let error = object["error"] as? [String: Any],
              let code = error["code"] as? String, let message = error["message"] as? String
        else { return nil }
        return (code, message)
    }

    public static func reason(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 301: "Moved Permanently"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 410: "Gone"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 415: "Unsupported Media Type"
        case 417: "Expectation Failed"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: "Status \(status)"
        }
    }

    /// The bytes of this response on the wire. `keepAlive: false` adds `Connection: close`.
    /// A body is always framed with Content-Length; a response to HEAD sends the length of the
    /// body it would have had but no body bytes. `defaults` are added for every field name the
    /// response does not set itself.
    public func serialized(keepAlive: Bool, date: String? = nil, headRequest: Bool = false,
                           defaults: HTTPHeaders = HTTPHeaders()) -> [UInt8] {
        var dateLine: [UInt8] = []
        if let date { appendField("date".utf8, date.utf8, to: &dateLine) }
        return serialized(keepAlive: keepAlive, dateLine: dateLine, headRequest: headRequest, defaults: PreparedHeaders(defaults))
    }

    /// The server's path: the Date line and the default fields come already serialised.
    func serialized(keepAlive: Bool, dateLine: [UInt8], headRequest: Bool, defaults: PreparedHeaders) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(96 + headers.count * 40 + defaults.bytes.count + dateLine.count + (headRequest ? 0 : body.count))
        if let line = HTTPResponse.statusLines[status] {
            out.append(contentsOf: line)
        } else {
            out.append(contentsOf: "HTTP/1.1 \(status) \(HTTPResponse.reason(status))\r\n".utf8)
        }
        var overridesDefault = false
        headers.forEachField { name, value in
            if !HTTPHeaders.name(name, is: "content-length") && !HTTPHeaders.name(name, is: "connection") {
                appendField(name, value, to: &out)
                overridesDefault = overridesDefault || defaults.headers.contains(name)
            }
            return true
        }
        if overridesDefault {
            for (name, value) in defaults.headers.fields where headers[name] == nil {
                appendField(name.utf8, value.utf8, to: &out)
            }
        } else {
            out.append(contentsOf: defaults.bytes)
        }
        out.append(contentsOf: dateLine)
        if status >= 200 && status != 204 && status != 304 {
            appendField("content-length".utf8, String(body.count).utf8, to: &out)
        }
        if !keepAlive { appendField("connection".utf8, "close".utf8, to: &out) }
        out.append(CR)
        out.append(LF)
        if !headRequest { out.append(contentsOf: body) }
        return out
    }

    /// "HTTP/1.1 200 OK\r\n" and friends, serialised once.
    private static let statusLines: [Int: [UInt8]] = Dictionary(uniqueKeysWithValues:
        [200, 201, 202, 204, 400, 403, 404, 405, 408, 409, 413, 414, 415, 417, 422, 429, 431, 500, 501, 503, 505].map {
            ($0, Array("HTTP/1.1 \($0) \(reason($0))\r\n".utf8))
        })
}

// MARK: - Requests on the wire (client side)

/// A request as it goes on the wire, head and body in one buffer.
public struct SerializedRequest: Sendable {
    let bytes: [UInt8]
    /// For the response parser: the answer to HEAD has no body.
    let method: String
    let keepAlive: Bool

    /// `request` with Host (unless it has one) and Content-Length added; Content-Length and
    /// Transfer-Encoding fields of its own are left out.
    init(_ request: HTTPRequest, endpoint: Endpoint) {
        var out: [UInt8] = []
        out.reserveCapacity(128 + request.headers.count * 32 + request.body.count)
        appendRequestLine(request.method, request.target, to: &out)
        if request.headers["host"] == nil { appendHost(endpoint, to: &out) }
        request.headers.forEachField { name, value in
            if !HTTPHeaders.name(name, is: "content-length") && !HTTPHeaders.name(name, is: "transfer-encoding") {
                appendField(name, value, to: &out)
            }
            return true
        }
        if !request.body.isEmpty || request.method == "POST" || request.method == "PUT" || request.method == "PATCH" {
            out.append(contentsOf: "Content-Length: ".utf8)
            JSONText.appendInteger(request.body.count, to: &out)
            out.append(contentsOf: [CR, LF])
        }
        if !request.keepAlive { appendField("connection".utf8, "close".utf8, to: &out) }
        out.append(contentsOf: [CR, LF])
        out.append(contentsOf: request.body)
        self.init(bytes: out, method: request.method, keepAlive: request.keepAlive)
    }

    fileprivate init(bytes: [UInt8], method: String, keepAlive: Bool) {
        self.bytes = bytes
        self.method = method
        self.keepAlive = keepAlive
    }
}

/// What every request to one target repeats (the relay's pushes to a recipient): the request
/// line, Host and fixed fields, serialised once. Each request copies it into its own buffer,
/// adds its own fields and has its body written straight after (`RequestWriter`), so that
/// head and body are never built apart and copied together.
public struct RequestHead: Sendable {
    private let method: String
    private let bytes: [UInt8]

    /// `fields` are written as given (names in lower case, as `HTTPHeaders` keeps them;
    /// written capitalised), after Host.
    public init(method: String, target: String, endpoint: Endpoint, fields: [(String, String)] = []) {
        var out: [UInt8] = []
        appendRequestLine(method, target, to: &out)
        appendHost(endpoint, to: &out)
        for (name, value) in fields { appendField(name.asciiLowercased.utf8, value.utf8, to: &out) }
        self.method = method
        self.bytes = out
    }

    /// A request that starts with this head, in a buffer with room for `capacity` bytes.
    public func request(capacity: Int) -> RequestWriter {
        RequestWriter(method: method, head: bytes, capacity: capacity)
    }
}

/// One request after its `RequestHead`: its own fields, then Content-Length and the body,
/// in the buffer that goes on the wire. The connection is kept alive.
public struct RequestWriter {
    private let method: String
    private var bytes: [UInt8] = []
    /// Room kept for Content-Length's digits, which are known only once the body is written.
    private static let lengthDigits = 10

    fileprivate init(method: String, head: [UInt8], capacity: Int) {
        self.method = method
        bytes.reserveCapacity(max(capacity, head.count + 64))
        bytes.append(contentsOf: head)
    }

    /// Adds a field (the name in lower case, as `HTTPHeaders` keeps them; written capitalised).
    public mutating func add(_ name: String, _ value: String) {
        appendField(name.asciiLowercased.utf8, value.utf8, to: &bytes)
    }

    /// Adds a field whose value `writeValue` appends (without a line break), as `add` would
    /// with that value: for a value that is never needed as a string of its own.
    public mutating func add(_ name: String, writing writeValue: (inout [UInt8]) -> Void) {
        appendField(name.asciiLowercased.utf8, to: &bytes, value: writeValue)
    }

    /// Ends the head with Content-Length, after which `writeBody` appends the body; the
    /// digits are filled in afterwards, and the body moved back over the room they did not
    /// need (far cheaper than building the body apart and copying head and body together).
    /// The writer is empty afterwards.
    public mutating func finish(body writeBody: (inout [UInt8]) -> Void) -> SerializedRequest {
        // Taken out of the writer, so that the buffer has one owner and grows in place (a
        // consuming call could leave the caller's copy holding it: one copy per request).
        var bytes = self.bytes
        self.bytes = []
        bytes.append(contentsOf: "Content-Length: ".utf8)
        let digitsStart = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: Self.lengthDigits))
        bytes.append(contentsOf: [CR, LF, CR, LF])
        let bodyStart = bytes.count
        writeBody(&bytes)
        var length = bytes.count - bodyStart
        var digits = 1
        var rest = length / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        precondition(digits <= Self.lengthDigits, "a request body of 10 GB or more")
        let unused = Self.lengthDigits - digits
        bytes.withUnsafeMutableBytes { buffer in
            for index in stride(from: digitsStart + digits - 1, through: digitsStart, by: -1) {
                buffer[index] = UInt8(ascii: "0") + UInt8(length % 10)
                length /= 10
            }
            let end = digitsStart + digits
            buffer[end] = CR
            buffer[end + 1] = LF
            buffer[end + 2] = CR
            buffer[end + 3] = LF
            let bodyCount = buffer.count - bodyStart
            if unused > 0 && bodyCount > 0 {
                (buffer.baseAddress! + end + 4).copyMemory(from: buffer.baseAddress! + bodyStart, byteCount: bodyCount)
            }
        }
        bytes.removeLast(unused)
        return SerializedRequest(bytes: bytes, method: method, keepAlive: true)
    }
}

/// "METHOD target HTTP/1.1\r\n".
private func appendRequestLine(_ method: String, _ target: String, to out: inout [UInt8]) {
    out.append(contentsOf: method.utf8)
    out.append(SP)
    out.append(contentsOf: target.utf8)
    out.append(contentsOf: " HTTP/1.1\r\n".utf8)
}

/// "Host: host:port\r\n", as `Endpoint.description` writes the endpoint, without building it.
private func appendHost(_ endpoint: Endpoint, to out: inout [UInt8]) {
    let brackets = endpoint.hostNeedsBrackets
    out.append(contentsOf: "Host: ".utf8)
    if brackets { out.append(UInt8(ascii: "[")) }
    out.append(contentsOf: endpoint.host.utf8)
    out.append(contentsOf: brackets ? "]:".utf8 : ":".utf8)
    JSONText.appendInteger(Int(endpoint.port), to: &out)
    out.append(contentsOf: [CR, LF])
}

/// Header fields serialised once (the defaults every response of a server carries).
struct PreparedHeaders {
    let headers: HTTPHeaders
    let bytes: [UInt8]

    init(_ headers: HTTPHeaders) {
        self.headers = headers
        var bytes: [UInt8] = []
        headers.forEachField { name, value in
            appendField(name, value, to: &bytes)
            return true
        }
        self.bytes = bytes
    }
}

/// Appends "Name: value\r\n", writing the lower-case `name` in the usual capitalisation
/// (`content-type` as `Content-Type`).
func appendField<N: Collection, V: Collection>(_ name: N, _ value: V, to out: inout [UInt8])
    where N.Element == UInt8, V.Element == UInt8 {
    appendField(name, to: &out) { $0.append(contentsOf: value) }
}

/// `appendField` with the value appended by `writeValue`.
func appendField<N: Collection>(_ name: N, to out: inout [UInt8], value writeValue: (inout [UInt8]) -> Void)
    where N.Element == UInt8 {
    let start = out.count
    out.append(contentsOf: name)
    // In the buffer itself: through the array, every byte written would check its bounds
    // and whether the storage is shared.
    out.withUnsafeMutableBufferPointer { buffer in
        var capitalise = true
        for index in start..<buffer.count {
            let byte = buffer[index]
            if capitalise && byte >= 0x61 && byte <= 0x7a { buffer[index] = byte - 0x20 }
            capitalise = byte == UInt8(ascii: "-")
        }
    }
    out.append(UInt8(ascii: ":"))
    out.append(SP)
    writeValue(&out)
    out.append(CR)
    out.append(LF)
}

/// Request limits; anything beyond them is refused with 413, 414 or 431 before it is buffered.
public struct HTTPLimits: Sendable, Equatable {
    /// The request line (method, target, version).
    public var maximumRequestLineBytes: Int
    /// The whole head: request line plus header fields (also bounds a chunked body's trailers).
    public var maximumHeaderBytes: Int
    public var maximumHeaderCount: Int
    /// The body after removing chunked framing.
    public var maximumBodyBytes: Int

    public init(maximumRequestLineBytes: Int = 8192, maximumHeaderBytes: Int = 32768,
                maximumHeaderCount: Int = 100, maximumBodyBytes: Int = 1 << 20) {
        self.maximumRequestLineBytes = maximumRequestLineBytes
        self.maximumHeaderBytes = maximumHeaderBytes
        self.maximumHeaderCount = maximumHeaderCount
        self.maximumBodyBytes = maximumBodyBytes
    }
}

/// Why a message was refused. Each case maps to a status, a stable code and a sentence that
/// tells the sender what to fix; after any of them the connection is closed.
public enum HTTPParseError: Error, Equatable, Sendable {
    case malformedStartLine
    case requestLineTooLong(limit: Int)
    case unsupportedVersion
    case malformedHeader
    case obsoleteLineFolding
    case headersTooLarge(limit: Int)
    case tooManyHeaders(limit: Int)
    case missingHost
    case duplicateHost
    case contentLengthWithTransferEncoding
    case invalidContentLength
    case duplicateContentLength
    case invalidTransferEncoding
    case unsupportedTransferEncoding
    case unsupportedExpectation
    case bodyTooLarge(limit: Int)
    case malformedChunk
    /// The connection ended in the middle of a message.
    case truncatedMessage

    public var status: Int {
        switch self {
        case .requestLineTooLong: 414
        case .unsupportedVersion: 505
        case .headersTooLarge, .tooManyHeaders: 431
        case .unsupportedTransferEncoding: 501
        case .unsupportedExpectation: 417
        case .bodyTooLarge: 413
        default: 400
        }
    }

    public var code: String {
        switch self {
        case .malformedStartLine: "malformed_request_line"
        case .requestLineTooLong: "request_line_too_long"
        case .unsupportedVersion: "unsupported_http_version"
        case .malformedHeader: "malformed_header"
        case .obsoleteLineFolding: "obsolete_line_folding"
        case .headersTooLarge: "headers_too_large"
        case .tooManyHeaders: "too_many_headers"
        case .missingHost: "missing_host"
        case .duplicateHost: "duplicate_host"
        case .contentLengthWithTransferEncoding: "content_length_with_transfer_encoding"
        case .invalidContentLength: "invalid_content_length"
        case .duplicateContentLength: "duplicate_content_length"
        case .invalidTransferEncoding: "invalid_transfer_encoding"
        case .unsupportedTransferEncoding: "unsupported_transfer_encoding"
        case .unsupportedExpectation: "unsupported_expectation"
        case .bodyTooLarge: "body_too_large"
        case .malformedChunk: "malformed_chunk"
        case .truncatedMessage: "truncated_message"
        }
    }

    public var message: String {
        switch self {
        case .malformedStartLine:
            "The request line must be 'METHOD /path HTTP/1.1' with single spaces and end in CRLF."
        case .requestLineTooLong(let limit):
            "The request line is longer than \(limit) bytes; shorten the path or query."
        case .unsupportedVersion:
            "Only HTTP/1.1 and HTTP/1.0 are supported."
        case .malformedHeader:
            "A header field is malformed: it must be 'Name: value' with a token name, no whitespace before the colon, no control characters, and lines ending in CRLF."
        case .obsoleteLineFolding:
            "A header field continues on the next line (obsolete line folding); send each field on one line."
        case .headersTooLarge(let limit):
            "The request head is larger than \(limit) bytes; send fewer or shorter header fields."
        case .tooManyHeaders(let limit):
            "The request has more than \(limit) header fields; send fewer."
        case .missingHost:
            "An HTTP/1.1 request must carry a Host header field."
        case .duplicateHost:
            "The request carries more than one Host header field; send exactly one."
        case .contentLengthWithTransferEncoding:
            "The request carries both Content-Length and Transfer-Encoding; send only one of them."
        case .invalidContentLength:
            "Content-Length must be a single non-negative decimal number."
        case .duplicateContentLength:
            "The request carries Content-Length more than once; send it exactly once."
        case .invalidTransferEncoding:
            "Transfer-Encoding must end in 'chunked', name it once, and is not allowed in HTTP/1.0."
        case .unsupportedTransferEncoding:
            "Only the 'chunked' transfer coding is supported."
        case .unsupportedExpectation:
            "Only 'Expect: 100-continue' is supported."
        case .bodyTooLarge(let limit):
            "The body is larger than \(limit) bytes; send a smaller body."
        case .malformedChunk:
            "The chunked body is malformed: each chunk is a hexadecimal size line, the data, and CRLF, ending with a zero-size chunk."
        case .truncatedMessage:
            "The connection closed before the message was complete."
        }
    }

    /// The JSON error response for this error.
    public var response: HTTPResponse {
        .error(status: status, code: code, message: message)
    }
}
