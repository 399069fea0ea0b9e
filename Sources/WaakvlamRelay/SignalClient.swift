import Foundation
import WaakvlamCore
import WaakvlamCrypto
import WaakvlamTransport

// The partner side of the peer API (docs/API.md): a corporation's or care organisation's
// system submitting signals to a node over mutual TLS.

/// Where and as whom to connect: the node's URL and the partner's certificate, key and the CA
/// bundle the node's certificate must chain to.
public struct ClientSettings: Sendable, Equatable {
    public var node: String?
    public var certificate: String?
    public var key: String?
    public var ca: String?

    public init(node: String? = nil, certificate: String? = nil, key: String? = nil, ca: String? = nil) {
        self.node = node
        self.certificate = certificate
        self.key = key
        self.ca = ca
    }

    /// Reads a client configuration file: a JSON object (comments allowed) with `node`, `cert`,
    /// `key` and `ca`. Relative paths are relative to the file's folder.
    public static func load(file path: String) throws(ClientError) -> ClientSettings {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .settingsFile(path: path, reason: "cannot be read; check the path")
        }
        let values: [String: PayloadValue]
        switch Payload.parse(data) {
        case .success(let parsed): values = parsed
        case .failure(let invalid):
            throw .settingsFile(path: path, reason: invalid.issues.first?.code == .notJSON
                ? invalid.issues[0].message : "it must be one JSON object with node, cert, key and ca")
        }
        let keys = ["node", "cert", "key", "ca"]
        if let unknown = values.keys.sorted().first(where: { !keys.contains($0) }) {
            throw .settingsFile(path: path, reason: "unknown key '\(unknown)': the file holds \(keys.joined(separator: ", "))")
        }
        var text: [String: String] = [:]
        for (key, value) in values {
            guard case .string(let string) = value else { throw .settingsFile(path: path, reason: "'\(key)' must be text in quotes") }
            text[key] = string
        }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
        func resolved(_ key: String) -> String? {
            text[key].map { $0.hasPrefix("/") ? $0 : folder.appendingPathComponent($0).standardizedFileURL.path }
        }
        return ClientSettings(node: text["node"], certificate: resolved("cert"), key: resolved("key"), ca: resolved("ca"))
    }

    /// These settings with the gaps filled from `other` (flags override the file).
    public func filled(from other: ClientSettings) -> ClientSettings {
        ClientSettings(node: node ?? other.node, certificate: certificate ?? other.certificate,
                       key: key ?? other.key, ca: ca ?? other.ca)
    }

    /// The node's address from `https://host:port` (port 443 when left out).
    public func endpoint() throws(ClientError) -> Endpoint {
        guard let node else { throw .missingSetting("node") }
        guard let url = URLComponents(string: node), url.scheme?.lowercased() == "https", let host = url.host, !host.isEmpty,
              url.path.isEmpty || url.path == "/", url.query == nil, url.user == nil else {
            throw .invalidNodeURL(node)
        }
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        guard let port = UInt16(exactly: url.port ?? 443), port > 0 else { throw .invalidNodeURL(node) }
        return Endpoint(host: bare, port: port)
    }
}

/// What can go wrong on the client side, each with what to do about it.
public enum ClientError: Error, Sendable, Equatable, CustomStringConvertible {
    case settingsFile(path: String, reason: String)
    case missingSetting(String)
    case invalidNodeURL(String)
    case tls(String)
    case unreachable(String)
    case unexpectedAnswer(status: Int, reason: String)

    public var description: String {
        switch self {
        case .settingsFile(let path, let reason): "client configuration \(path): \(reason)"
        case .missingSetting(let name): "no \(name) given: pass --\(name) or put \"\(name)\" in the file of --client-config"
        case .invalidNodeURL(let text): "'\(text)' is not a node URL: write https://host:port, e.g. https://waakvlam.hoorn.nl:8443"
        case .tls(let reason): "cannot set up mutual TLS: \(reason)"
        case .unreachable(let reason): "cannot reach the node: \(reason)"
        case .unexpectedAnswer(let status, let reason): "the node answered HTTP \(status): \(reason)"
        }
    }
}

/// A signal to submit (the body of `POST /v1/signals`).
public struct OutgoingSignal: Sendable, Equatable {
    public var id: String
    public var type: String
    public var to: [String]
    public var routeByAddress: Bool
    public var payload: [String: PayloadValue]

    public init(id: String, type: String, to: [String] = [], routeByAddress: Bool = false, payload: [String: PayloadValue]) {
        self.id = id
        self.type = type
        self.to = to
        self.routeByAddress = routeByAddress
        self.payload = payload
    }

    /// The JSON body: the envelope, then the payload in canonical form.
    var body: [UInt8] {
        var envelope = "{\"id\":"
        JSONWriter.appendString(id, to: &envelope)
        envelope += ",\"type\":"
        JSONWriter.appendString(type, to: &envelope)
        if !to.isEmpty {
            envelope += ",\"to\":["
            for (index, recipient) in to.enumerated() {
                if index > 0 { envelope += "," }
                JSONWriter.appendString(recipient, to: &envelope)
            }
            envelope += "]"
        }
        if routeByAddress { envelope += ",\"routeByAddress\":true" }
        envelope += ",\"payload\":"
        return Array(envelope.utf8) + Payload.canonicalBytes(payload) + [UInt8(ascii: "}")]
    }
}

/// A node's answer about a signal: to `POST /v1/signals` or `GET /v1/signals/{id}`.
public struct SignalAnswer: Sendable {
    public struct Recipient: Sendable, Equatable {
        public var recipient: String
        public var allowed: Bool
        /// For a denial: the stable code and the node's sentence.
        public var code: String?
        public var message: String?
        public var fields: [String]
        public var state: String?
    }

    public struct Problem: Sendable, Equatable {
        public var code: String
        public var message: String
        /// For a 400: the field concerned, e.g. `payload.Postcode`.
        public var field: String?
    }

    public var status: Int
    /// The answer as the node sent it.
    public var body: [UInt8]
    /// When the node received the signal, as it wrote it (`2026-11-21T10:00:00.000Z`).
    public var receivedAtText: String?
    public var receivedAt: Date?
    public var recipients: [Recipient]
    public var problem: Problem?
    /// True when the node already had this id with this content and answered with its first
    /// answer: the node continues the sender's trace, so an answer carrying another trace id
    /// than the one just sent belongs to an earlier submission.
    public var isEarlierAnswer: Bool

    public var allowedRecipients: [String] { recipients.filter(\.allowed).map(\.recipient) }

    init(_ response: HTTPResponse, sentTraceID: String?) {
        status = response.status
        body = response.body
        let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
        receivedAtText = object["receivedAt"] as? String
        receivedAt = receivedAtText.flatMap(Self.parseTimestamp)
        recipients = (object["recipients"] as? [[String: Any]] ?? []).map { item in
            Recipient(recipient: item["recipient"] as? String ?? "?", allowed: item["decision"] as? String == "allowed",
                      code: item["code"] as? String, message: item["message"] as? String,
                      fields: item["fields"] as? [String] ?? [], state: item["state"] as? String)
        }
        if let error = object["error"] as? [String: Any] {
            problem = Problem(code: error["code"] as? String ?? "error", message: error["message"] as? String ?? "",
                              field: error["field"] as? String)
        } else if status >= 400 {
            problem = Problem(code: "http_\(status)", message: String(decoding: response.body.prefix(300), as: UTF8.self), field: nil)
        }
        let answeredTrace = (object["traceparent"] as? String)?.split(separator: "-").dropFirst().first.map(String.init)
        isEarlierAnswer = sentTraceID != nil && answeredTrace != nil && answeredTrace != sentTraceID
    }

    /// Reads a UTC timestamp `YYYY-MM-DDTHH:MM:SS[.fraction]Z` as the node writes it.
    /// (A formatter per answer would cost more than the rest of reading it.)
    static func parseTimestamp(_ text: String) -> Date? {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 20, utf8[10] == UInt8(ascii: "T"), utf8.last == UInt8(ascii: "Z"),
              utf8[13] == UInt8(ascii: ":"), utf8[16] == UInt8(ascii: ":"),
              let day = LocalDate(String(decoding: utf8[0..<10], as: UTF8.self)) else { return nil }
        func number(_ range: Range<Int>) -> Int? { Int(String(decoding: utf8[range], as: UTF8.self)) }
        guard let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
              (0..<24).contains(hour), (0..<60).contains(minute), (0...60).contains(second) else { return nil }
        var fraction = 0.0
        if utf8[19] == UInt8(ascii: ".") {
            guard utf8.count > 21, let value = Double("0" + String(decoding: utf8[19..<(utf8.count - 1)], as: UTF8.self)) else { return nil }
            fraction = value
        } else if utf8.count != 20 {
            return nil
        }
        let seconds = day.dayNumber * 86_400 + hour * 3600 + minute * 60 + second
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }
}

/// A partner's connection to a node: a pool of keep-alive mutual-TLS connections, safe to use
/// from several threads at once (each call takes its own connection).
public final class SignalClient: @unchecked Sendable {
    public let endpoint: Endpoint
    private let http: HTTPClient
    /// Waits between attempts when the node cannot be reached or answers 503.
    private let retryDelays: [TimeInterval]

    public init(settings: ClientSettings, connections: Int = 8, retryDelays: [TimeInterval] = [0.2, 0.5, 1, 2]) throws(ClientError) {
        endpoint = try settings.endpoint()
        guard let certificate = settings.certificate else { throw .missingSetting("cert") }
        guard let key = settings.key else { throw .missingSetting("key") }
        guard let ca = settings.ca else { throw .missingSetting("ca") }
        for (path, flag, what) in [(certificate, "cert", "certificate"), (key, "key", "private key"), (ca, "ca", "CA bundle")]
            where !FileManager.default.isReadableFile(atPath: path) {
            throw .tls("the \(what) file \(path) does not exist or cannot be read; check --\(flag) or \"\(flag)\" in the client configuration")
        }
        let tls: TLSContext
        do {
            tls = try TLSContext(role: .client, certificateChain: certificate, privateKey: key, trustedCAs: ca)
        } catch {
            throw .tls("\(error)")
        }
        http = HTTPClient(tls: tls, configuration: HTTPClientConfiguration(maximumIdleConnectionsPerEndpoint: max(connections, 1)))
        self.retryDelays = retryDelays
    }

    /// The organisation the node recognises from this client's certificate.
    public func whoami() throws(ClientError) -> (id: String, oin: String, name: String) {
        let response = try exchange(HTTPRequest(method: "GET", target: "/v1/whoami"))
        let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
        guard response.status == 200, let organisation = object?["organisation"] as? [String: Any],
              let id = organisation["id"] as? String, let oin = organisation["oin"] as? String else {
            throw .unexpectedAnswer(status: response.status, reason: SignalAnswer(response, sentTraceID: nil).problem?.message ?? "no organisation in the answer")
        }
        return (id, oin, organisation["name"] as? String ?? id)
    }

    /// Submits `signal`. Sent again (same id, same trace) when the node cannot be reached or
    /// answers 503, which is safe: the node deduplicates by id.
    public func submit(_ signal: OutgoingSignal) throws(ClientError) -> SignalAnswer {
        let traceID = Hex.encode(SecureRandom.bytes(16))
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json")
        headers.add("traceparent", "00-\(traceID)-\(Hex.encode(SecureRandom.bytes(8)))-01")
        let request = HTTPRequest(method: "POST", target: "/v1/signals", headers: headers, body: signal.body)
        return SignalAnswer(try exchange(request), sentTraceID: traceID)
    }

    /// `GET /v1/signals/{id}`: the node's record of a signal this organisation sent.
    public func status(of signalID: String) throws(ClientError) -> SignalAnswer {
        let encoded = signalID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? signalID
        return SignalAnswer(try exchange(HTTPRequest(method: "GET", target: "/v1/signals/\(encoded)")), sentTraceID: nil)
    }

    private func exchange(_ request: HTTPRequest) throws(ClientError) -> HTTPResponse {
        var attempt = 0
        while true {
            do {
                let response = try http.send(request, to: endpoint, idempotent: true)
                if response.status != 503 || attempt >= retryDelays.count { return response }
            } catch let error as TransportError {
                if attempt >= retryDelays.count || !Self.isTransient(error) { throw .unreachable("\(error)") }
            } catch {
                throw .unreachable("\(error)")
            }
            Thread.sleep(forTimeInterval: retryDelays[attempt])
            attempt += 1
        }
    }

    /// Failures that another attempt may not have: not certificate or configuration problems.
    private static func isTransient(_ error: TransportError) -> Bool {
        switch error {
        case .connect, .timedOut, .connectionClosed, .io, .shuttingDown: true
        default: false
        }
    }
}
