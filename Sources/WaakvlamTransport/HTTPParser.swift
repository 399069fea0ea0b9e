// Strict, bounded HTTP/1.1 parsing kept apart from socket I/O: callers feed bytes as they
// arrive and ask for the next event. Nothing here blocks or touches a file descriptor.

/// Parses requests from a byte stream: feed bytes, then call `next()` until it says
/// `.needMoreData`. Pipelined requests come out one by one, in order.
public struct HTTPRequestParser {
    public enum Event: Equatable {
        /// Feed more bytes.
        case needMoreData
        /// The head of a request with `Expect: 100-continue` is complete and its body has not
        /// arrived yet: write an interim `100 Continue`, then call `next()` again.
        case continueExpected
        case request(HTTPRequest)
        /// The stream is not valid HTTP or exceeds a limit: answer with `error.response` and
        /// close the connection. Every later call returns the same error.
        case error(HTTPParseError)
    }

    private enum State {
        case head
        case body(RequestHead, HTTPBodyDecoder, continueAnswered: Bool)
        case failed(HTTPParseError)
    }

    private struct RequestHead {
        var method: String
        var target: String
        var version: HTTPVersion
        var headers: HTTPHeaders
        var keepAlive: Bool
        var expectsContinue: Bool
    }

    public let limits: HTTPLimits
    private var buffer = HTTPInputBuffer()
    private var state = State.head

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(bytes)
    }

    public mutating func feed<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    /// True when bytes of a request that is not complete yet have arrived (the server then
    /// applies the header or body timeout instead of the idle timeout).
    public var isInsideRequest: Bool {
        switch state {
        case .head: buffer.count > 0
        case .body, .failed: true
        }
    }

    /// True once the head of the current request is complete and its body is being read.
    public var isReadingBody: Bool {
        if case .body = state { return true }
        return false
    }

    public mutating func next() -> Event {
        switch state {
        case .failed(let error):
            return .error(error)
        case .head:
            switch locateRequestHead() {
            case .needMoreData:
                return .needMoreData
            case .error(let error):
                return fail(error)
            case .head(let consumed):
                let head: RequestHead
                let framing: BodyFraming
                do {
                    (head, framing) = try buffer.withHead { startLine, fieldLines in
                        try interpretRequestHead(startLine: startLine, fieldLines: fieldLines)
                    }
                } catch {
                    return fail(error as! HTTPParseError)
                }
                buffer.consume(consumed)
                let decoder = HTTPBodyDecoder(framing: framing, limits: limits)
                state = .body(head, decoder, continueAnswered: !head.expectsContinue)
                return next()
            }
        case .body(let head, var decoder, let continueAnswered):
            state = .head // release the decoder's body storage while it is being filled
            let progress = decoder.decode(&buffer)
            switch progress {
            case .error(let error):
                return fail(error)
            case .complete(let body):
                return .request(HTTPRequest(method: head.method, target: head.target, version: head.version,
                                            headers: head.headers, body: body, keepAlive: head.keepAlive))
            case .needMoreData:
                state = .body(head, decoder, continueAnswered: true)
                // Only ask for the body when none of it has been sent yet.
                return continueAnswered || decoder.hasReceivedBytes ? .needMoreData : .continueExpected
            }
        }
    }

    private mutating func fail(_ error: HTTPParseError) -> Event {
        state = .failed(error)
        return .error(error)
    }

    /// Skips up to two empty lines before a request line (RFC 9112 section 2.2), then finds the
    /// end of the head within the limits.
    private mutating func locateRequestHead() -> HeadLocation {
        var skipped = 0
        while skipped < 2, buffer.count >= 2, buffer[0] == CR, buffer[1] == LF {
            buffer.consume(2)
            skipped += 1
        }
        return buffer.locateHead(limits: limits, startLineLimit: limits.maximumRequestLineBytes,
                                 startLineError: .requestLineTooLong(limit: limits.maximumRequestLineBytes))
    }

    private func interpretRequestHead(startLine: HeadBytes, fieldLines: HeadLines) throws -> (RequestHead, BodyFraming) {
        // METHOD SP target SP version: exactly two spaces.
        guard let firstSpace = startLine.firstIndex(of: SP), let lastSpace = startLine.lastIndex(of: SP),
              firstSpace < lastSpace else { throw HTTPParseError.malformedStartLine }
        let methodBytes = startLine[startLine.startIndex..<firstSpace]
        let targetBytes = startLine[(firstSpace + 1)..<lastSpace]
        guard !methodBytes.isEmpty, methodBytes.allSatisfy(isTokenByte),
              !targetBytes.isEmpty, targetBytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f })
        else { throw HTTPParseError.malformedStartLine }
        let version = try parseVersion(startLine[(lastSpace + 1)...])
        let method = String(decoding: methodBytes, as: UTF8.self)
        let target = String(decoding: targetBytes, as: UTF8.self)
        guard target.hasPrefix("/") || (target == "*" && method == "OPTIONS") else {
            throw HTTPParseError.malformedStartLine
        }
        let headers = try parseFieldLines(fieldLines, limits: limits)
        let fields = FramingFields(headers)

        if fields.hostCount > 1 { throw HTTPParseError.duplicateHost }
        if fields.hostCount == 0 && version == .http11 { throw HTTPParseError.missingHost }

        let framing = try bodyFraming(fields, version: version, limits: limits)

        let connection = tokens(fields.connection)
        let keepAlive = version == .http11 ? !connection.contains("close") : connection.contains("keep-alive")

        var expectsContinue = false
        if let expect = fields.expect {
            guard expect.asciiLowercased == "100-continue" else { throw HTTPParseError.unsupportedExpectation }
            expectsContinue = version == .http11 && framing != .length(0)
        }
        return (RequestHead(method: method, target: target, version: version, headers: headers,
                            keepAlive: keepAlive, expectsContinue: expectsContinue), framing)
    }
}

/// Parses responses from a byte stream for a client that sends one request at a time. Set
/// `requestMethod` before each response (a response to HEAD has no body). Interim 1xx responses
/// are skipped.
public struct HTTPResponseParser {
    public enum Event: Equatable {
        case needMoreData
        /// A complete response; `keepAlive` says whether the connection may be reused.
        case response(HTTPResponse, keepAlive: Bool)
        case error(HTTPParseError)
    }

    private enum State {
        case head
        case body(status: Int, headers: HTTPHeaders, keepAlive: Bool, HTTPBodyDecoder)
        case failed(HTTPParseError)
    }

    public let limits: HTTPLimits
    public var requestMethod = "GET"
    private var buffer = HTTPInputBuffer()
    private var state = State.head

    public init(limits: HTTPLimits = HTTPLimits(maximumBodyBytes: 16 << 20)) {
        self.limits = limits
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(bytes)
    }

    public mutating func feed<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    /// True when bytes are buffered that no complete response has consumed.
    public var hasUnconsumedBytes: Bool {
        if case .head = state { return buffer.count > 0 }
        return true
    }

    public mutating func next() -> Event {
        switch state {
        case .failed(let error):
            return .error(error)
        case .head:
            switch buffer.locateHead(limits: limits, startLineLimit: limits.maximumHeaderBytes,
                                     startLineError: .headersTooLarge(limit: limits.maximumHeaderBytes)) {
            case .needMoreData:
                return .needMoreData
            case .error(let error):
                return fail(error)
            case .head(let consumed):
                do {
                    let (status, headers) = try buffer.withHead { startLine, fieldLines in
                        (try parseStatusLine(startLine), try parseFieldLines(fieldLines, limits: limits))
                    }
                    buffer.consume(consumed)
                    if status < 200 {
                        guard status != 101 else { throw HTTPParseError.malformedStartLine }
                        return next() // 100 Continue and other interim responses
                    }
                    let fields = FramingFields(headers)
                    let framing: BodyFraming
                    if requestMethod == "HEAD" || status == 204 || status == 304 {
                        framing = .length(0)
                    } else if fields.transferEncodings.isEmpty && fields.contentLengthCount == 0 {
                        framing = .untilClose
                    } else {
                        framing = try bodyFraming(fields, version: .http11, limits: limits)
                    }
                    let keepAlive = framing != .untilClose && !tokens(fields.connection).contains("close")
                    state = .body(status: status, headers: headers, keepAlive: keepAlive,
                                  HTTPBodyDecoder(framing: framing, limits: limits))
                    return next()
                } catch {
                    return fail(error as! HTTPParseError)
                }
            }
        case .body(let status, let headers, let keepAlive, var decoder):
            state = .head
            switch decoder.decode(&buffer) {
            case .error(let error):
                return fail(error)
            case .complete(let body):
                return .response(HTTPResponse(status: status, headers: headers, body: body), keepAlive: keepAlive)
            case .needMoreData:
                state = .body(status: status, headers: headers, keepAlive: keepAlive, decoder)
                return .needMoreData
            }
        }
    }

    /// The peer closed the connection: completes a response delimited by the close, or
    /// reports a truncated one. Returns `.needMoreData` when no response was in progress.
    public mutating func finishAtEndOfStream() -> Event {
        switch state {
        case .failed(let error):
            return .error(error)
        case .head:
            return buffer.count == 0 ? .needMoreData : fail(.truncatedMessage)
        case .body(let status, let headers, _, var decoder):
            if let body = decoder.finishUntilClose() {
                state = .head
                return .response(HTTPResponse(status: status, headers: headers, body: body), keepAlive: false)
            }
            return fail(.truncatedMessage)
        }
    }

    private mutating func fail(_ error: HTTPParseError) -> Event {
        state = .failed(error)
        return .error(error)
    }

    private func parseStatusLine(_ line: HeadBytes) throws -> Int {
        // HTTP-version SP 3DIGIT SP [reason-phrase]; a missing final space is tolerated.
        guard line.count >= 12 else { throw HTTPParseError.malformedStartLine }
        let start = line.startIndex
        _ = try parseVersion(line[start..<start + 8])
        let digits = line[start + 9..<start + 12]
        guard line[start + 8] == SP, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              line.count == 12 || line[start + 12] == SP
        else { throw HTTPParseError.malformedStartLine }
        return digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    }
}

// MARK: - Shared framing

let CR: UInt8 = 0x0d
let LF: UInt8 = 0x0a
let SP: UInt8 = 0x20
let HTAB: UInt8 = 0x09

/// tchar from RFC 9110 section 5.6.2.
func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case 0x30...0x39, 0x41...0x5a, 0x61...0x7a: true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
         UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
         UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"): true
    default: false
    }
}

private func parseVersion(_ bytes: HeadBytes) throws -> HTTPVersion {
    let s = bytes.startIndex
    guard bytes.count == 8, bytes[s] == UInt8(ascii: "H"), bytes[s + 1] == UInt8(ascii: "T"), bytes[s + 2] == UInt8(ascii: "T"),
          bytes[s + 3] == UInt8(ascii: "P"), bytes[s + 4] == UInt8(ascii: "/") else { throw HTTPParseError.malformedStartLine }
    let major = bytes[s + 5], dot = bytes[s + 6], minor = bytes[s + 7]
    guard major >= 0x30, major <= 0x39, dot == UInt8(ascii: "."), minor >= 0x30, minor <= 0x39 else {
        throw HTTPParseError.malformedStartLine
    }
    switch (major, minor) {
    case (UInt8(ascii: "1"), UInt8(ascii: "1")): return .http11
    case (UInt8(ascii: "1"), UInt8(ascii: "0")): return .http10
    default: throw HTTPParseError.unsupportedVersion
    }
}

/// Parses field lines (without their CRLF); `locateHead` has already bounded their count.
private func parseFieldLines(_ lines: HeadLines, limits: HTTPLimits) throws -> HTTPHeaders {
    var headers = HTTPHeaders(capacity: lines.count, byteCount: lines.byteCount)
    for line in lines {
        let (name, value) = try parseFieldLine(line)
        headers.addParsed(name: name, value: value)
    }
    return headers
}

/// Checks a field line; returns its name and its value without surrounding whitespace.
private func parseFieldLine(_ line: HeadBytes) throws -> (name: HeadBytes, value: HeadBytes) {
    guard let first = line.first else { throw HTTPParseError.malformedHeader }
    if first == SP || first == HTAB { throw HTTPParseError.obsoleteLineFolding }
    guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw HTTPParseError.malformedHeader }
    let name = line[line.startIndex..<colon]
    guard !name.isEmpty, name.allSatisfy(isTokenByte) else { throw HTTPParseError.malformedHeader }
    var value = line[(colon + 1)...]
    while let b = value.first, b == SP || b == HTAB { value = value.dropFirst() }
    while let b = value.last, b == SP || b == HTAB { value = value.dropLast() }
    // field-vchar, SP, HTAB and obs-text; no other control characters.
    guard value.allSatisfy({ $0 == HTAB || ($0 >= 0x20 && $0 != 0x7f) }) else { throw HTTPParseError.malformedHeader }
    return (name, value)
}

enum BodyFraming: Equatable {
    case length(Int)
    case chunked
    /// Responses only: the body ends when the server closes the connection.
    case untilClose
}

/// The fields that decide framing and connection handling, gathered in one pass.
private struct FramingFields {
    var hostCount = 0
    var contentLengthCount = 0
    /// The first Content-Length value.
    var contentLength: String?
    var transferEncodings: [String] = []
    var connection: [String] = []
    var expect: String?

    /// `headers` as parsed: names are tokens, in lower case. Strings are made only of the
    /// values used.
    init(_ headers: HTTPHeaders) {
        // Gathered in local variables: a closure changing `self` (or one local value of this
        // type) copies the whole value in and out.
        var hostCount = 0, contentLengthCount = 0
        var contentLength: String?, expect: String?
        var transferEncodings: [String] = [], connection: [String] = []
        headers.forEachField { name, value in
            if HTTPHeaders.parsedName(name, is: "host") {
                hostCount += 1
            } else if HTTPHeaders.parsedName(name, is: "content-length") {
                contentLengthCount += 1
                if contentLength == nil { contentLength = String(decoding: value, as: UTF8.self) }
            } else if HTTPHeaders.parsedName(name, is: "transfer-encoding") {
                transferEncodings.append(String(decoding: value, as: UTF8.self))
            } else if HTTPHeaders.parsedName(name, is: "connection") {
                connection.append(String(decoding: value, as: UTF8.self))
            } else if HTTPHeaders.parsedName(name, is: "expect") {
                expect = String(decoding: value, as: UTF8.self)
            }
            return true
        }
        self.hostCount = hostCount
        self.contentLengthCount = contentLengthCount
        self.contentLength = contentLength
        self.transferEncodings = transferEncodings
        self.connection = connection
        self.expect = expect
    }
}

/// The comma-separated tokens of field values, lower-cased, empty elements dropped.
private func tokens(_ values: [String]) -> [String] {
    values.flatMap { $0.split(separator: ",") }
        .map { String($0.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed()).asciiLowercased }
        .filter { !$0.isEmpty }
}

/// Decides how the body is delimited, refusing every ambiguity that enables request
/// smuggling: Content-Length with Transfer-Encoding, repeated or malformed Content-Length,
/// Transfer-Encoding that does not end in chunked.
private func bodyFraming(_ fields: FramingFields, version: HTTPVersion, limits: HTTPLimits) throws -> BodyFraming {
    if !fields.transferEncodings.isEmpty {
        guard fields.contentLengthCount == 0 else { throw HTTPParseError.contentLengthWithTransferEncoding }
        guard version == .http11 else { throw HTTPParseError.invalidTransferEncoding }
        let codings = tokens(fields.transferEncodings)
        guard codings.last == "chunked", codings.filter({ $0 == "chunked" }).count == 1 else {
            throw HTTPParseError.invalidTransferEncoding
        }
        guard codings.count == 1 else { throw HTTPParseError.unsupportedTransferEncoding }
        return .chunked
    }
    guard let text = fields.contentLength else { return .length(0) }
    guard fields.contentLengthCount == 1 else { throw HTTPParseError.duplicateContentLength }
    let digits = text.utf8
    guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
        throw HTTPParseError.invalidContentLength
    }
    let length = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    guard length <= limits.maximumBodyBytes else { throw HTTPParseError.bodyTooLarge(limit: limits.maximumBodyBytes) }
    return .length(length)
}

enum HeadLocation {
    case needMoreData
    case error(HTTPParseError)
    /// A complete head of `consumed` bytes: read it with `HTTPInputBuffer.withHead`.
    case head(consumed: Int)
}

/// Bytes of a head being parsed. They point into the input buffer, which holds no other
/// reference meanwhile: consuming afterwards never copies it.
typealias HeadBytes = Slice<UnsafeBufferPointer<UInt8>>

/// The field lines of a head, as `HeadBytes`.
struct HeadLines: RandomAccessCollection {
    fileprivate let bytes: UnsafeBufferPointer<UInt8>
    fileprivate let ranges: ArraySlice<Range<Int>>

    var startIndex: Int { ranges.startIndex }
    var endIndex: Int { ranges.endIndex }
    subscript(position: Int) -> HeadBytes { bytes[ranges[position]] }
    /// The bytes of all lines together.
    var byteCount: Int { ranges.reduce(0) { $0 + $1.count } }
}

/// Received bytes not consumed yet. Consumed bytes are dropped lazily so that a pipelined
/// stream is not copied once per request.
struct HTTPInputBuffer {
    private var storage: [UInt8] = []
    private var start = 0
    /// Where the search for the end of the head resumes (relative to `start`).
    private var scanned = 0
    /// The lines of the head `locateHead` found, relative to `start`, without their CRLF
    /// (kept between requests for its capacity).
    private var headLines: [Range<Int>] = []

    var count: Int { storage.count - start }

    subscript(offset: Int) -> UInt8 { storage[start + offset] }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compactIfUseful()
        storage.append(contentsOf: bytes)
    }

    mutating func append<C: Collection>(contentsOf bytes: C) where C.Element == UInt8 {
        compactIfUseful()
        storage.append(contentsOf: bytes)
    }

    mutating func consume(_ n: Int) {
        precondition(n <= count)
        start += n
        scanned = 0
        if start == storage.count {
            storage.removeAll(keepingCapacity: true)
            start = 0
        }
    }

    /// Moves up to `n` bytes to the end of `target`.
    mutating func move(upTo n: Int, into target: inout [UInt8]) -> Int {
        let k = min(n, count)
        target.append(contentsOf: storage[start..<start + k])
        consume(k)
        return k
    }

    /// Calls `body` with the unconsumed bytes.
    func withBytes<T>(_ body: (UnsafeBufferPointer<UInt8>) throws -> T) rethrows -> T {
        try storage.withUnsafeBufferPointer { all in try body(UnsafeBufferPointer(rebasing: all[start...])) }
    }

    /// Calls `body` with the start line and the field lines of the head `locateHead` found.
    func withHead<T>(_ body: (HeadBytes, HeadLines) throws -> T) rethrows -> T {
        try withBytes { bytes in try body(bytes[headLines[0]], HeadLines(bytes: bytes, ranges: headLines[1...])) }
    }

    /// The offset of the first CRLF at or after `from`, searching at most up to `limit`.
    func firstCRLF(from: Int, limit: Int) -> Int? {
        let end = min(count, limit)
        guard from + 1 < end else { return nil }
        return storage.withUnsafeBufferPointer { all in
            let bytes = UnsafeBufferPointer(rebasing: all[start..<(start + end)])
            var i = from
            while i + 1 < end {
                if bytes[i] == CR && bytes[i + 1] == LF { return i }
                i += 1
            }
            return nil
        }
    }

    private mutating func compactIfUseful() {
        if start > 0 && start >= storage.count / 2 {
            storage.removeFirst(start)
            start = 0
        }
    }

    /// Finds a complete head (start line and fields up to the empty line) within the limits
    /// and splits it into lines. Bare CR or LF inside a line is refused.
    mutating func locateHead(limits: HTTPLimits, startLineLimit: Int, startLineError: HTTPParseError) -> HeadLocation {
        // The end of the start line first, so an endless start line is refused early.
        guard let lineEnd = firstCRLF(from: 0, limit: startLineLimit + 2) else {
            return count >= startLineLimit + 2 ? .error(startLineError) : .needMoreData
        }
        let end = min(count, limits.maximumHeaderBytes + 1)
        let terminator: Int? = storage.withUnsafeBufferPointer { all in
            let bytes = UnsafeBufferPointer(rebasing: all[start..<(start + end)])
            var i = max(scanned, lineEnd)
            while i + 3 < end {
                if bytes[i] == CR && bytes[i + 1] == LF && bytes[i + 2] == CR && bytes[i + 3] == LF { return i }
                i += 1
            }
            return nil
        }
        guard let terminator else {
            if count > limits.maximumHeaderBytes { return .error(.headersTooLarge(limit: limits.maximumHeaderBytes)) }
            scanned = max(lineEnd, count - 3)
            return .needMoreData
        }
        if lineEnd == terminator && lineEnd == 0 { return .error(.malformedStartLine) }
        let consumed = terminator + 4
        guard consumed <= limits.maximumHeaderBytes else { return .error(.headersTooLarge(limit: limits.maximumHeaderBytes)) }
        headLines.removeAll(keepingCapacity: true)
        // One pass: each line ends at the first CRLF; a CR or LF before it is a bare one.
        let bare: Bool = storage.withUnsafeBufferPointer { all in
            let bytes = UnsafeBufferPointer(rebasing: all[start..<(start + terminator + 2)])
            var lineStart = 0
            var i = 0
            while i < bytes.count {
                let byte = bytes[i]
                if byte == CR && i + 1 < bytes.count && bytes[i + 1] == LF {
                    headLines.append(lineStart..<i)
                    i += 2
                    lineStart = i
                } else if byte == CR || byte == LF {
                    return true
                } else {
                    i += 1
                }
            }
            return false
        }
        if bare { return .error(headLines.isEmpty ? .malformedStartLine : .malformedHeader) }
        if headLines.isEmpty { return .error(.malformedStartLine) }
        if headLines.count - 1 > limits.maximumHeaderCount { return .error(.tooManyHeaders(limit: limits.maximumHeaderCount)) }
        return .head(consumed: consumed)
    }
}

/// Reads a body delimited by a length, by chunked framing, or by the end of the stream.
struct HTTPBodyDecoder {
    enum Progress {
        case needMoreData
        case complete([UInt8])
        case error(HTTPParseError)
    }

    private enum Phase {
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers(bytes: Int, count: Int)
        case untilClose
    }

    /// A chunk-size line with extensions longer than this is refused.
    private static let maximumChunkLine = 4096

    private var phase: Phase
    private var body: [UInt8] = []
    private let limits: HTTPLimits
    private(set) var hasReceivedBytes = false

    init(framing: BodyFraming, limits: HTTPLimits) {
        self.limits = limits
        switch framing {
        case .length(let n): phase = .fixed(remaining: n); body.reserveCapacity(n)
        case .chunked: phase = .chunkSize
        case .untilClose: phase = .untilClose
        }
    }

    mutating func decode(_ buffer: inout HTTPInputBuffer) -> Progress {
        if buffer.count > 0 { hasReceivedBytes = true }
        while true {
            switch phase {
            case .fixed(let remaining):
                let moved = buffer.move(upTo: remaining, into: &body)
                if remaining - moved > 0 {
                    phase = .fixed(remaining: remaining - moved)
                    return .needMoreData
                }
                return .complete(take())
            case .untilClose:
                if body.count + buffer.count > limits.maximumBodyBytes {
                    return .error(.bodyTooLarge(limit: limits.maximumBodyBytes))
                }
                _ = buffer.move(upTo: buffer.count, into: &body)
                return .needMoreData
            case .chunkSize:
                guard let end = buffer.firstCRLF(from: 0, limit: Self.maximumChunkLine) else {
                    return buffer.count >= Self.maximumChunkLine ? .error(.malformedChunk) : .needMoreData
                }
                guard let size = buffer.withBytes({ Self.chunkSize($0[0..<end]) }) else { return .error(.malformedChunk) }
                buffer.consume(end + 2)
                if size == 0 {
                    phase = .trailers(bytes: 0, count: 0)
                } else {
                    guard body.count + size <= limits.maximumBodyBytes else {
                        return .error(.bodyTooLarge(limit: limits.maximumBodyBytes))
                    }
                    phase = .chunkData(remaining: size)
                }
            case .chunkData(let remaining):
                let moved = buffer.move(upTo: remaining, into: &body)
                if remaining - moved > 0 {
                    phase = .chunkData(remaining: remaining - moved)
                    return .needMoreData
                }
                phase = .chunkDataEnd
            case .chunkDataEnd:
                guard buffer.count >= 2 else { return .needMoreData }
                guard buffer[0] == CR, buffer[1] == LF else { return .error(.malformedChunk) }
                buffer.consume(2)
                phase = .chunkSize
            case .trailers(let bytes, let count):
                let room = limits.maximumHeaderBytes - bytes
                guard let end = buffer.firstCRLF(from: 0, limit: room) else {
                    return buffer.count >= room ? .error(.headersTooLarge(limit: limits.maximumHeaderBytes)) : .needMoreData
                }
                if end == 0 {
                    buffer.consume(2)
                    return .complete(take())
                }
                // Trailer fields are checked for syntax and then dropped: nothing here uses them.
                let valid = buffer.withBytes { bytes in
                    let line = bytes[0..<end]
                    return !line.contains(CR) && !line.contains(LF) && (try? parseFieldLine(line)) != nil
                }
                guard valid else { return .error(.malformedHeader) }
                guard count + 1 <= limits.maximumHeaderCount else {
                    return .error(.tooManyHeaders(limit: limits.maximumHeaderCount))
                }
                buffer.consume(end + 2)
                phase = .trailers(bytes: bytes + end + 2, count: count + 1)
            }
        }
    }

    /// For a body delimited by the end of the stream: the body. Nil for other framings.
    mutating func finishUntilClose() -> [UInt8]? {
        guard case .untilClose = phase else { return nil }
        return take()
    }

    private mutating func take() -> [UInt8] {
        defer { body = [] }
        return body
    }

    /// chunk-size [ BWS ";" chunk-ext ]; nil when malformed or absurdly large.
    private static func chunkSize(_ line: HeadBytes) -> Int? {
        var size = 0
        var digits = 0
        var index = line.startIndex
        while index < line.endIndex, let digit = hexValue(line[index]) {
            digits += 1
            guard digits <= 15 else { return nil }
            size = size << 4 | digit
            index += 1
        }
        guard digits > 0 else { return nil }
        var rest = line[index...]
        while let b = rest.first, b == SP || b == HTAB { rest = rest.dropFirst() }
        if let b = rest.first {
            guard b == UInt8(ascii: ";"), rest.allSatisfy({ $0 == HTAB || ($0 >= 0x20 && $0 != 0x7f) }) else { return nil }
        }
        return size
    }

    private static func hexValue(_ c: UInt8) -> Int? {
        switch c {
        case 0x30...0x39: Int(c - 0x30)
        case 0x61...0x66: Int(c - 0x57)
        case 0x41...0x46: Int(c - 0x37)
        default: nil
        }
    }
}
