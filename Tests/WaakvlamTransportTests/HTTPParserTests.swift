import XCTest
@testable import WaakvlamTransport

final class HTTPParserTests: XCTestCase {
    private func parse(_ text: String, limits: HTTPLimits = HTTPLimits()) -> [HTTPRequestParser.Event] {
        var parser = HTTPRequestParser(limits: limits)
        parser.feed(Array(text.utf8))
        return drain(&parser)
    }

    private func drain(_ parser: inout HTTPRequestParser) -> [HTTPRequestParser.Event] {
        var events: [HTTPRequestParser.Event] = []
        while true {
            let event = parser.next()
            events.append(event)
            switch event {
            case .request, .continueExpected: continue
            default: return events
            }
        }
    }

    private func error(_ text: String, limits: HTTPLimits = HTTPLimits()) -> HTTPParseError? {
        if case .error(let error) = parse(text, limits: limits).last { return error }
        return nil
    }

    private func request(_ text: String) -> HTTPRequest? {
        if case .request(let request) = parse(text).first { return request }
        return nil
    }

    func testSimpleGet() throws {
        let r = try XCTUnwrap(request("GET /v1/whoami?x=1 HTTP/1.1\r\nHost: localhost\r\nAccept:  application/json \r\n\r\n"))
        XCTAssertEqual(r.method, "GET")
        XCTAssertEqual(r.target, "/v1/whoami?x=1")
        XCTAssertEqual(r.path, "/v1/whoami")
        XCTAssertEqual(r.query, "x=1")
        XCTAssertEqual(r.version, .http11)
        XCTAssertEqual(r.headers["ACCEPT"], "application/json")
        XCTAssertTrue(r.keepAlive)
        XCTAssertEqual(r.body, [])
    }

    func testByteByByteFeedGivesTheSameRequest() {
        let text = "POST /v1/signals HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        var parser = HTTPRequestParser()
        var events: [HTTPRequestParser.Event] = []
        for byte in text.utf8 {
            parser.feed([byte])
            let event = parser.next()
            if event != .needMoreData { events.append(event) }
        }
        XCTAssertEqual(events.count, 1)
        guard case .request(let r) = events[0] else { return XCTFail("\(events)") }
        XCTAssertEqual(r.body, Array("hello".utf8))
    }

    func testPipelinedRequestsComeOutInOrder() {
        let text = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /4"
        let events = parse(text)
        let targets = events.compactMap { event -> String? in
            if case .request(let r) = event { return r.target }
            return nil
        }
        XCTAssertEqual(targets, ["/1", "/2", "/3"])
        XCTAssertEqual(events.last, .needMoreData)
        if case .request(let third) = events[2] { XCTAssertFalse(third.keepAlive) }
    }

    func testChunkedBodyWithExtensionsAndTrailers() throws {
        let text = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nChecksum: abc\r\n\r\n"
        let r = try XCTUnwrap(request(text))
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "hello world")
        // The same stream one byte at a time.
        var parser = HTTPRequestParser()
        var found: HTTPRequest?
        for byte in text.utf8 {
            parser.feed([byte])
            if case .request(let request) = parser.next() { found = request }
        }
        XCTAssertEqual(found?.body, r.body)
    }

    func testContentLengthWithTransferEncodingIsRefused() {
        let e = error("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        XCTAssertEqual(e, .contentLengthWithTransferEncoding)
        XCTAssertEqual(e?.status, 400)
    }

    func testDuplicateOrInvalidContentLengthIsRefused() {
        XCTAssertEqual(error("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"), .duplicateContentLength)
        for value in ["-1", "1,1", "abc", "", "+5", "0x10", "1 2", "9999999999999999999"] {
            XCTAssertEqual(error("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: \(value)\r\n\r\n"), .invalidContentLength, value)
        }
    }

    func testTransferEncodingMustEndInChunked() {
        XCTAssertEqual(error("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"), .invalidTransferEncoding)
        XCTAssertEqual(error("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), .invalidTransferEncoding)
        XCTAssertEqual(error("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), .invalidTransferEncoding)
        XCTAssertEqual(error("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), .invalidTransferEncoding)
        XCTAssertEqual(error("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")?.status, 501)
        XCTAssertNotNil(request("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n"))
    }

    func testObsoleteLineFoldingAndMalformedHeadersAreRefused() {
        XCTAssertEqual(error("GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n"), .obsoleteLineFolding)
        XCTAssertEqual(error("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), .malformedHeader)
        XCTAssertEqual(error("GET / HTTP/1.1\r\nHost: a\r\nNo colon here\r\n\r\n"), .malformedHeader)
        XCTAssertEqual(error("GET / HTTP/1.1\r\nHost: a\r\nX: a\u{0}b\r\n\r\n"), .malformedHeader)
        XCTAssertEqual(error("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"), .malformedHeader)
        XCTAssertEqual(error("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), .malformedHeader)
    }

    func testBadRequestLinesAreRefused() {
        for line in ["GET /  HTTP/1.1", "GET / HTTP/1.1 extra", "GET http://example.org/ HTTP/1.1", "G(T / HTTP/1.1",
                     "GET / HTTP/1", "GET / http/1.1", "GET", " GET / HTTP/1.1", "GET /\u{7f} HTTP/1.1"] {
            XCTAssertEqual(error("\(line)\r\nHost: a\r\n\r\n"), .malformedStartLine, line)
        }
        XCTAssertEqual(error("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), .unsupportedVersion)
        XCTAssertEqual(error("GET / HTTP/2.0\r\nHost: a\r\n\r\n")?.status, 505)
        XCTAssertEqual(error("GET / HTTP/1.1\nHost: a\n\n"), nil, "bare LF never ends a line, so the head is incomplete")
    }

    func testHostRules() {
        XCTAssertEqual(error("GET / HTTP/1.1\r\n\r\n"), .missingHost)
        XCTAssertEqual(error("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), .duplicateHost)
        let old = request("GET / HTTP/1.0\r\n\r\n")
        XCTAssertEqual(old?.version, .http10)
        XCTAssertEqual(old?.keepAlive, false)
        XCTAssertEqual(request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")?.keepAlive, true)
        XCTAssertEqual(request("GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Close\r\n\r\n")?.keepAlive, false)
    }

    func testLimits() {
        let limits = HTTPLimits(maximumRequestLineBytes: 64, maximumHeaderBytes: 256, maximumHeaderCount: 5, maximumBodyBytes: 100)
        let longLine = "GET /" + String(repeating: "a", count: 100)
        XCTAssertEqual(error(longLine, limits: limits), .requestLineTooLong(limit: 64))
        XCTAssertEqual(error(longLine, limits: limits)?.status, 414)
        let bigHeader = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "b", count: 300)
        XCTAssertEqual(error(bigHeader, limits: limits), .headersTooLarge(limit: 256))
        XCTAssertEqual(error(bigHeader + "\r\n\r\n", limits: limits)?.status, 431)
        let many = "GET / HTTP/1.1\r\nHost: a\r\n" + (1...5).map { "X\($0): y\r\n" }.joined() + "\r\n"
        XCTAssertEqual(error(many, limits: limits), .tooManyHeaders(limit: 5))
        XCTAssertEqual(error(many, limits: limits)?.status, 431)
        // A declared length over the limit is refused before any body byte arrives.
        XCTAssertEqual(error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", limits: limits), .bodyTooLarge(limit: 100))
        XCTAssertEqual(error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", limits: limits)?.status, 413)
        let chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + String(repeating: "x", count: 64) + "\r\n40\r\n"
        XCTAssertEqual(error(chunked, limits: limits), .bodyTooLarge(limit: 100))
        let trailers = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + String(repeating: "T: v\r\n", count: 6) + "\r\n"
        XCTAssertEqual(error(trailers, limits: limits), .tooManyHeaders(limit: 5))
    }

    func testMalformedChunksAreRefused() {
        let head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        XCTAssertEqual(error(head + "zz\r\n"), .malformedChunk)
        XCTAssertEqual(error(head + "3\r\nabcX\r\n"), .malformedChunk)
        XCTAssertEqual(error(head + "-1\r\n"), .malformedChunk)
        XCTAssertEqual(error(head + "1 x\r\n"), .malformedChunk)
        XCTAssertEqual(error(head + "fffffffffffffffff\r\n"), .malformedChunk)
    }

    func testExpectContinue() {
        var parser = HTTPRequestParser()
        parser.feed(Array("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n".utf8))
        XCTAssertEqual(parser.next(), .continueExpected)
        XCTAssertEqual(parser.next(), .needMoreData)
        XCTAssertTrue(parser.isReadingBody)
        parser.feed(Array("abc".utf8))
        guard case .request(let r) = parser.next() else { return XCTFail() }
        XCTAssertEqual(r.body, Array("abc".utf8))
        XCTAssertEqual(error("POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n"), .unsupportedExpectation)
        // When the body is already there, no interim response is asked for.
        XCTAssertEqual(parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx").count, 2)
    }

    func testLeadingEmptyLinesAreSkippedAndErrorsAreSticky() {
        XCTAssertNotNil(request("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        var parser = HTTPRequestParser()
        parser.feed(Array("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n".utf8))
        XCTAssertEqual(parser.next(), .error(.invalidContentLength))
        parser.feed(Array("GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8))
        XCTAssertEqual(parser.next(), .error(.invalidContentLength))
    }

    func testInsideRequestTracking() {
        var parser = HTTPRequestParser()
        XCTAssertFalse(parser.isInsideRequest)
        parser.feed(Array("GET / HT".utf8))
        XCTAssertEqual(parser.next(), .needMoreData)
        XCTAssertTrue(parser.isInsideRequest)
        parser.feed(Array("TP/1.1\r\nHost: a\r\n\r\n".utf8))
        guard case .request = parser.next() else { return XCTFail() }
        XCTAssertFalse(parser.isInsideRequest)
    }

    func testErrorResponseIsJSON() throws {
        let response = HTTPParseError.contentLengthWithTransferEncoding.response
        XCTAssertEqual(response.status, 400)
        XCTAssertEqual(response.headers["content-type"], "application/json")
        XCTAssertEqual(response.errorBody?.code, "content_length_with_transfer_encoding")
        let text = String(decoding: response.serialized(keepAlive: false, date: "Sat, 21 Nov 2026 10:00:00 GMT"), as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nDate: Sat, 21 Nov 2026 10:00:00 GMT\r\nContent-Length: \(response.body.count)\r\nConnection: close\r\n\r\n{\"error\":"), text)
        let head = HTTPResponse(status: 200, body: [1, 2, 3]).serialized(keepAlive: true, headRequest: true)
        XCTAssertEqual(String(decoding: head, as: UTF8.self), "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
    }

    // MARK: - Responses

    private func responses(_ text: String, method: String = "GET", close: Bool = false) -> [HTTPResponseParser.Event] {
        var parser = HTTPResponseParser()
        parser.requestMethod = method
        parser.feed(Array(text.utf8))
        var events: [HTTPResponseParser.Event] = []
        while true {
            let event = parser.next()
            if case .response = event { events.append(event); continue }
            if close, event == .needMoreData { events.append(parser.finishAtEndOfStream()) } else { events.append(event) }
            return events
        }
    }

    func testResponseFraming() {
        XCTAssertEqual(responses("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").first,
                       .response(HTTPResponse(status: 200, headers: HTTPHeaders([("content-length", "2")]), body: Array("ok".utf8)), keepAlive: true))
        let chunked = responses("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        guard case .response(let r, let keepAlive) = chunked.first else { return XCTFail("\(chunked)") }
        XCTAssertEqual(r.status, 201)
        XCTAssertEqual(r.body, Array("ok".utf8))
        XCTAssertFalse(keepAlive)
        guard case .response(let untilClose, false) = responses("HTTP/1.0 200 OK\r\n\r\nall of it", close: true).first else { return XCTFail() }
        XCTAssertEqual(untilClose.body, Array("all of it".utf8))
        guard case .response(let head, true) = responses("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", method: "HEAD").first else { return XCTFail() }
        XCTAssertEqual(head.body, [])
        XCTAssertEqual(responses("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", close: true).last, .error(.truncatedMessage))
        XCTAssertEqual(responses("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n").last, .error(.contentLengthWithTransferEncoding))
        XCTAssertEqual(responses("HTTP/1.1 2OO OK\r\n\r\n").last, .error(.malformedStartLine))
    }

    func testClientRequestSerialization() {
        var request = HTTPRequest(method: "POST", target: "/v1/signals", headers: HTTPHeaders([("content-type", "application/json")]), body: Array("{}".utf8))
        request.keepAlive = false
        let text = String(decoding: SerializedRequest(request, endpoint: Endpoint(host: "::1", port: 8443)).bytes, as: UTF8.self)
        XCTAssertEqual(text, "POST /v1/signals HTTP/1.1\r\nHost: [::1]:8443\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    }

    /// A request built from a `RequestHead` (the relay's pushes) is byte for byte the one
    /// serialised from the same `HTTPRequest`, also where Content-Length gains a digit.
    func testRequestsFromAPreparedHeadMatchSerialisedRequests() {
        var generator = SystemRandomNumberGenerator()
        let endpoints = [Endpoint(host: "127.0.0.1", port: 8443), Endpoint(host: "::1", port: 443), Endpoint(host: "wijkteam.example", port: 9)]
        let lengths = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1_000, 9_999, 10_000, 65_537, 123_456]
        for round in 0..<300 {
            let endpoint = endpoints[round % endpoints.count]
            let target = "/in/\(round)" + (round % 4 == 0 ? "?via=waakvlam" : "")
            let bodyCount = round < lengths.count ? lengths[round] : Int.random(in: 0...2_000, using: &generator)
            let body = (0..<bodyCount).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let own = (0..<Int.random(in: 0...3, using: &generator)).map { ("x-field-\($0)", "value \(round)-\($0)") }
            let expected = SerializedRequest(HTTPRequest(method: "POST", target: target,
                                                         headers: HTTPHeaders([("content-type", "application/json")] + own), body: body),
                                             endpoint: endpoint)
            var writer = RequestHead(method: "POST", target: target, endpoint: endpoint, fields: [("Content-Type", "application/json")])
                .request(capacity: Int.random(in: 0...3_000, using: &generator))
            for (name, value) in own { writer.add(name, value) }
            let built = writer.finish { $0.append(contentsOf: body) }
            XCTAssertEqual(built.bytes, expected.bytes, "round \(round), body of \(bodyCount) bytes")
            XCTAssertTrue(built.keepAlive)
            XCTAssertEqual(built.method, "POST")
        }
    }

    func testEndpointParsing() throws {
        XCTAssertEqual(try Endpoint(parsing: "127.0.0.1:8443"), Endpoint(host: "127.0.0.1", port: 8443))
        XCTAssertEqual(try Endpoint(parsing: "[::1]:9"), Endpoint(host: "::1", port: 9))
        XCTAssertEqual(try Endpoint(parsing: "localhost:1").hostIsIPAddress, false)
        for bad in ["localhost", ":80", "host:99999", "::1:80", "[::1]80", "host:"] {
            XCTAssertThrowsError(try Endpoint(parsing: bad), bad)
        }
    }
}
