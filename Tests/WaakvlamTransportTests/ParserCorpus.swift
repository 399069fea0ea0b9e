import WaakvlamTransport

/// Generated HTTP messages, valid and malformed (fed in random pieces, with small limits
/// now and then), and a description of what the parsers made of them, one line per case, for
/// `ParserCorpusTests`.
enum ParserCorpus {
    /// SplitMix64: the same sequence on every platform and run.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
        mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    }

    static let requestFields: [String] = [
        "Host: 127.0.0.1:8443", "host:example.org", "HOST:  spaced.example  ", "Content-Type: application/json",
        "Waakvlam-Signal-Id: bench-0123456789-abcdef-42", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "Content-Length: 5", "content-length: 0", "Content-Length: 05", "Content-Length: -1", "Content-Length: 5, 5",
        "Content-Length: 99999999999999999999", "Content-Length: 1000", "Transfer-Encoding: chunked", "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked, gzip", "Transfer-Encoding: gzip", "transfer-encoding: Chunked", "Connection: close",
        "Connection: keep-alive", "connection: Keep-Alive, Upgrade", "Connection: ,close ,", "Expect: 100-continue",
        "Expect: 100-Continue", "Expect: something", "X-Empty:", "X-Tabs:\t\tvalue\t \t", "X-Latin: caf\u{e9}",
        "X-Long: " + String(repeating: "abcdefghij", count: 8), "User-Agent: waakvlam-bench/1.0 (linux; x86_64)",
        "Bad Name: x", ": no name", "NoColon", " folded: x", "\tfolded: y", "X-Ctl: a\u{1}b", "X-Del: a\u{7f}b",
        "X-Colon: a:b:c", "X-Quote: \"quoted\" 'single'", "x-\u{2126}: ohm", "Accept: */*",
    ]
    /// Fields that are valid on their own (most requests carry only these).
    static let validRequestFields = requestFields.filter {
        !["Bad Name: x", ": no name", "NoColon", " folded: x", "\tfolded: y", "X-Ctl: a\u{1}b", "X-Del: a\u{7f}b", "x-\u{2126}: ohm"].contains($0)
    }

    static let statusLines = [
        "HTTP/1.1 200 OK", "HTTP/1.1 204 No Content", "HTTP/1.1 304 Not Modified", "HTTP/1.0 200 OK", "HTTP/1.1 100 Continue",
        "HTTP/1.1 101 Switching", "HTTP/1.1 404", "HTTP/1.1 500 Internal Server Error", "HTTP/2.0 200 OK", "HTTP/1.1 2OO OK",
        "HTTP/1.1  200 OK", "HTTP/1.1 200OK", "http/1.1 200 OK", "HTTP/1.1 503 Service Unavailable",
    ]

    static let responseFields: [String] = [
        "Content-Type: application/json", "Date: Sun, 22 Nov 2026 13:39:26 GMT", "Content-Length: 2", "Content-Length: 0",
        "Content-Length: 7", "content-length: x", "Transfer-Encoding: chunked", "Transfer-Encoding: identity", "Connection: close",
        "Connection: keep-alive", "Server: nginx/1.22.1", "X-Latin: caf\u{e9}", "Bad Name: x", " folded: x", "X-Ctl: a\u{1}b",
        "Cache-Control: no-store", "Strict-Transport-Security: max-age=31536000",
    ]

    static let methods = ["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "G ET", "", "PO(ST"]
    static let targets = ["/", "/v1/signals", "/v1/signals/abc?x=1&y=2", "*", "x", "/a b", "/caf\u{e9}", "/" + String(repeating: "p", count: 80)]
    static let versions = ["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.x", "http/1.1", "HTTP/1.10"]

    /// Raw bytes, with some of the generated field lines given invalid UTF-8 or bare CR/LF.
    static func line(_ text: String, _ g: inout Generator) -> [UInt8] {
        var bytes = Array(text.utf8)
        switch g.below(60) {
        case 0: bytes.append(0xff)
        case 1: bytes.append(contentsOf: [0xc3, 0x28])
        case 2: bytes.insert(LFByte, at: bytes.count / 2)
        case 3: bytes.insert(CRByte, at: bytes.count / 2)
        default: break
        }
        return bytes + [CRByte, LFByte]
    }

    static let CRByte: UInt8 = 0x0d
    static let LFByte: UInt8 = 0x0a

    static func body(_ g: inout Generator, chunked: Bool) -> [UInt8] {
        let data = Array("{\"a\":1}".utf8) + Array(repeating: UInt8(ascii: "z"), count: g.below(12))
        guard chunked else { return data }
        var out: [UInt8] = []
        var rest = data[...]
        while !rest.isEmpty {
            let n = min(rest.count, 1 + g.below(5))
            out += Array(String(n, radix: 16, uppercase: g.chance(50)).utf8)
            if g.chance(15) { out += Array(" ;ext=1".utf8) }
            out += [CRByte, LFByte] + rest.prefix(n) + [CRByte, LFByte]
            rest = rest.dropFirst(n)
        }
        switch g.below(10) {
        case 0: out += Array("0\r\nX-Trailer: t\r\n\r\n".utf8)
        case 1: out += Array("0\r\nBad Trailer\r\n\r\n".utf8)
        case 2: out += Array("zz\r\n".utf8)
        case 3: out += Array("5\r\nab".utf8)
        default: out += Array("0\r\n\r\n".utf8)
        }
        return out
    }

    static func limits(_ g: inout Generator, response: Bool) -> HTTPLimits {
        switch g.below(6) {
        case 0: return HTTPLimits(maximumRequestLineBytes: 40, maximumHeaderBytes: 160, maximumHeaderCount: 3, maximumBodyBytes: 12)
        case 1: return HTTPLimits(maximumHeaderCount: 2)
        default: return response ? HTTPLimits(maximumBodyBytes: 16 << 20) : HTTPLimits()
        }
    }

    /// Feeds `bytes` in random pieces and describes every event, then the end of the stream.
    static func requestCase(_ g: inout Generator) -> String {
        var bytes: [UInt8] = []
        for _ in 0..<(1 + g.below(2)) {
            if g.chance(10) { bytes += [CRByte, LFByte] }
            let valid = g.chance(75)
            let start = valid ? g.pick(["GET", "POST", "HEAD"]) + " " + g.pick(Array(targets.prefix(3))) + " " + g.pick(Array(versions.prefix(3)))
                : g.pick(methods) + " " + g.pick(targets) + " " + g.pick(versions)
            bytes += line(start, &g)
            if valid && g.chance(80) { bytes += line("Host: 127.0.0.1:8443", &g) }
            var chunked = false, length: Int?
            for _ in 0..<g.below(7) {
                let field = g.pick(valid && g.chance(80) ? validRequestFields : requestFields)
                if field.lowercased().hasPrefix("transfer-encoding") { chunked = true }
                if field == "Content-Length: 5" { length = 5 }
                bytes += line(field, &g)
            }
            if g.chance(95) { bytes += [CRByte, LFByte] }
            if chunked || length != nil || g.chance(5) {
                var b = body(&g, chunked: chunked)
                if let length, !chunked { b = Array(b.prefix(length + (g.chance(20) ? -1 : 0))) }
                bytes += b
            }
        }
        var parser = HTTPRequestParser(limits: limits(&g, response: false))
        var out: [String] = []
        inPieces(bytes, &g) { piece in
            parser.feed(piece)
            events: while true {
                let event = parser.next()
                out.append(describe(event))
                switch event {
                case .needMoreData, .error: break events
                case .continueExpected, .request: continue
                }
            }
            if case .error = parser.next() { return false }
            return true
        }
        out.append("inside=\(parser.isInsideRequest) body=\(parser.isReadingBody)")
        return out.joined(separator: " | ")
    }

    static func responseCase(_ g: inout Generator) -> String {
        var bytes: [UInt8] = []
        let head = g.chance(15)
        for _ in 0..<(1 + g.below(2)) {
            bytes += line(g.pick(statusLines), &g)
            var chunked = false
            for _ in 0..<g.below(6) {
                let field = g.pick(responseFields)
                if field.hasPrefix("Transfer-Encoding") { chunked = true }
                bytes += line(field, &g)
            }
            if g.chance(90) { bytes += [CRByte, LFByte] }
            bytes += body(&g, chunked: chunked).prefix(g.chance(70) ? 2 : 40)
        }
        var parser = HTTPResponseParser(limits: limits(&g, response: true))
        if head { parser.requestMethod = "HEAD" }
        var out: [String] = []
        inPieces(bytes, &g) { piece in
            parser.feed(piece)
            while true {
                let event = parser.next()
                out.append(describe(event))
                switch event {
                case .needMoreData: return true
                case .error: return false
                case .response: continue
                }
            }
        }
        out.append("end: " + describe(parser.finishAtEndOfStream()) + " unconsumed=\(parser.hasUnconsumedBytes)")
        return out.joined(separator: " | ")
    }

    /// Hands `bytes` to `take` in pieces of random length (all at once half the time), until
    /// it returns false.
    static func inPieces(_ bytes: [UInt8], _ g: inout Generator, _ take: (ArraySlice<UInt8>) -> Bool) {
        var offset = 0
        while offset < bytes.count {
            let n = g.chance(50) ? bytes.count - offset : min(bytes.count - offset, 1 + g.below(40))
            let goOn = take(bytes[offset..<offset + n])
            offset += n
            if !goOn { return }
        }
    }

    static func describe(_ event: HTTPRequestParser.Event) -> String {
        switch event {
        case .needMoreData: "more"
        case .continueExpected: "continue"
        case .error(let error): "error \(error)"
        case .request(let r):
            "request \(r.method.debugDescription) \(r.target.debugDescription) \(r.version.rawValue) keepAlive=\(r.keepAlive) "
                + describe(r.headers) + " body=\(r.body.count):\(checksum(r.body))"
        }
    }

    static func describe(_ event: HTTPResponseParser.Event) -> String {
        switch event {
        case .needMoreData: "more"
        case .error(let error): "error \(error)"
        case .response(let r, let keepAlive):
            "response \(r.status) keepAlive=\(keepAlive) " + describe(r.headers) + " body=\(r.body.count):\(checksum(r.body))"
        }
    }

    /// The fields, the lookups and edits on them, and a response written with them.
    static func describe(_ headers: HTTPHeaders) -> String {
        var text = "[" + headers.fields.map { "\($0.name.debugDescription)=\($0.value.debugDescription)" }.joined(separator: ",") + "]"
        text += " count=\(headers.count) iterated=\(headers.map(\.value).joined(separator: ",").debugDescription)"
        text += " host=\(headers["Host"]?.debugDescription ?? "nil") lengths=\(headers.values("CONTENT-LENGTH"))"
        text += " same=\(headers == HTTPHeaders(headers.fields.map { ($0.name, $0.value) }))"
        var edited = headers
        edited.remove("connection")
        edited.set("X-Set", "v")
        edited.add("Content-Length", "1")
        text += " edited=\(edited.fields.map { $0.name + ":" + $0.value }) equal=\(edited == headers)"
        let written = HTTPResponse(status: 200, headers: headers, body: [0x7b, 0x7d])
            .serialized(keepAlive: headers.count % 2 == 0, date: "Sun, 22 Nov 2026 13:39:26 GMT", headRequest: false,
                        defaults: HTTPHeaders([("cache-control", "no-store"), ("x-latin", "d")]))
        return text + " written=\(checksum(written))"
    }

    /// FNV-1a, 64 bits, in hex.
    static func checksum(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return String(hash, radix: 16)
    }

    /// Every case's line, `count` requests then `count` responses.
    static func lines(count: Int) -> [String] {
        var g = Generator(state: 7)
        return (0..<count).map { "q\($0) " + requestCase(&g) } + (0..<count).map { "r\($0) " + responseCase(&g) }
    }
}
