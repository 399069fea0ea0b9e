import Foundation
import XCTest
@testable import WaakvlamCore
import WaakvlamRelay
import WaakvlamSystem
@testable import WaakvlamTransport

/// A copy of the repository's Config on free ports, with `waakvlam pki init` run on it: the
/// development CA, the node's certificate and one certificate per organisation in
/// `root/run/pki`, the node's state in `root/run/state`.
final class Site {
    let root: String
    let config: String
    let port: UInt16
    /// The admin listener's port (node.json listen.admin).
    let adminPort: UInt16
    private(set) var pkiOutput = ""
    private(set) var node: Node?
    private let clientsLock = NSLock()
    private var clients: [String: HTTPClient] = [:]

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A product of this package, next to the test bundle.
    static func binary(_ name: String) -> URL {
        let beside = Bundle.main.bundleURL.appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        return Bundle(for: Site.self).bundleURL.deletingLastPathComponent().appendingPathComponent(name)
    }

    init() throws {
        root = NSTemporaryDirectory() + "waakvlam-site-\(UUID().uuidString)"
        config = root + "/Config"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.packageRoot.appendingPathComponent("Config").path, toPath: config)
        port = try freeLoopbackPort()
        adminPort = try freeLoopbackPort()
        try setNodeJSON(replacing: "127.0.0.1:8443", with: "127.0.0.1:\(port)")
        try setNodeJSON(replacing: "127.0.0.1:9443", with: "127.0.0.1:\(adminPort)")
        let result = try runPKIInit()
        guard result.status == 0 else { throw TransportError.pki("pki init failed: \(result.stderr)") }
        pkiOutput = result.stdout
    }

    deinit {
        node?.shutdown(gracePeriod: 1)
        try? FileManager.default.removeItem(atPath: root)
    }

    var endpoint: Endpoint { Endpoint(host: "127.0.0.1", port: port) }

    /// The node's state folder (node.json: state), which holds the journal.
    var state: String { root + "/run/state" }

    func pki(_ name: String) -> String { root + "/run/pki/" + name }

    func setNodeJSON(replacing old: String, with new: String) throws {
        try edit("node.json") { text in
            precondition(text.contains(old), "node.json has no '\(old)'")
            return text.replacingOccurrences(of: old, with: new)
        }
    }

    /// Replaces node.json's `delivery` settings, e.g. `minimumBackoffSeconds: 1, maximumBackoffSeconds: 2`.
    func setDelivery(_ settings: String) throws {
        try edit("node.json") { text in
            let range = try XCTUnwrap(text.range(of: #"delivery: \{[^}]*\}"#, options: .regularExpression), "node.json has no delivery object")
            return text.replacingCharacters(in: range, with: "delivery: { \(settings) }")
        }
    }

    /// Makes `organisation` a push recipient (organisations.json) with signals posted to `endpoint`.
    func setPush(_ organisation: String, to endpoint: String) throws {
        try edit("organisations.json") { text in
            let entry = try XCTUnwrap(text.range(of: "id: \"\(organisation)\","), "organisations.json has no \(organisation)")
            let delivery = try XCTUnwrap(text.range(of: "delivery: { mode: \"inbox\" }", range: entry.upperBound..<text.endIndex),
                                         "\(organisation) has no inbox delivery to replace")
            return text.replacingCharacters(in: delivery, with: "delivery: { mode: \"push\", endpoint: \"\(endpoint)\" }")
        }
    }

    private func edit(_ file: String, _ change: (String) throws -> String) throws {
        let path = config + "/" + file
        try change(try String(contentsOfFile: path, encoding: .utf8)).write(toFile: path, atomically: true, encoding: .utf8)
    }

    func runPKIInit(_ extra: [String] = []) throws -> ProcessResult {
        try runProcess(Self.binary("waakvlam").path, ["pki", "init", "--config", config, "--out", root + "/run/pki"] + extra)
    }

    /// The node in this process.
    func startNode() throws {
        let node = try Node(configFolder: config)
        try node.start()
        self.node = node
    }

    /// `waakvlam ARGUMENTS` (the command-line tool of this package).
    func waakvlam(_ arguments: [String]) throws -> ProcessResult {
        try runProcess(Self.binary("waakvlam").path, arguments)
    }

    func ca() throws -> DevelopmentCA {
        try DevelopmentCA(certificateFile: pki("ca.pem"), keyFile: pki("ca.key"))
    }

    @discardableResult
    func issue(_ ca: DevelopmentCA, _ name: String, _ spec: CertificateSpec) throws -> IssuedCertificate {
        let issued = try ca.issue(spec)
        try issued.write(certificateTo: pki("\(name).crt"), keyTo: pki("\(name).key"))
        return issued
    }

    func clientContext(_ name: String) throws -> TLSContext {
        try TLSContext(role: .client, certificateChain: pki("\(name).crt"), privateKey: pki("\(name).key"), trustedCAs: pki("ca.pem"))
    }

    /// A keep-alive client with the certificate of `name`, one per name.
    func client(_ name: String) throws -> HTTPClient {
        clientsLock.lock()
        defer { clientsLock.unlock() }
        if let client = clients[name] { return client }
        let client = HTTPClient(tls: try clientContext(name), configuration: Self.clientConfiguration)
        clients[name] = client
        return client
    }

    static let clientConfiguration = HTTPClientConfiguration(connectTimeout: 5, handshakeTimeout: 10, responseTimeout: 30)

    /// A request to the node's peer port with the certificate of `name`.
    func send(_ name: String, _ method: String, _ path: String, body: [UInt8] = []) throws -> Reply {
        var headers = HTTPHeaders()
        if !body.isEmpty { headers.add("Content-Type", "application/json") }
        let response = try client(name).send(HTTPRequest(method: method, target: path, headers: headers, body: body), to: endpoint,
                                             idempotent: true)
        return Reply(response)
    }

    /// `POST /v1/signals` by `name`.
    func submit(_ name: String, _ envelope: [String: Any]) throws -> Reply {
        try send(name, "POST", "/v1/signals", body: jsonBytes(envelope))
    }

    /// `GET /v1/signals/{id}` by `name`.
    func status(_ name: String, _ signalID: String) throws -> Reply {
        try send(name, "GET", "/v1/signals/\(signalID)")
    }

    /// curl with the certificate `name`; the HTTP status (0 when the TLS handshake failed) and the JSON body.
    func curl(_ name: String, _ path: String, _ extra: [String] = []) throws -> (status: Int, json: [String: Any]) {
        let result = try runProcess("/usr/bin/curl", ["-sS", "--max-time", "10", "--cacert", pki("ca.pem"), "--cert", pki("\(name).crt"),
                                                      "--key", pki("\(name).key"), "-w", "\n%{http_code}"] + extra + ["https://localhost:\(port)\(path)"])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.last ?? "") ?? 0
        let body = lines.dropLast().joined(separator: "\n")
        return (status, (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:])
    }

    /// The state per recipient of a signal as its sender sees it (`GET /v1/signals/{id}`).
    func recipientStates(_ sender: String, _ signalID: String) throws -> [String: String] {
        let reply = try status(sender, signalID)
        guard reply.status == 200 else { return [:] }
        return Dictionary(uniqueKeysWithValues: reply.recipients.map { ($0["recipient"] as? String ?? "", $0["state"] as? String ?? "") })
    }

    /// The journal records of one signal, as `waakvlam journal query --signal ID --json` prints them.
    func journalRecords(signal signalID: String) throws -> [[String: Any]] {
        let result = try waakvlam(["journal", "query", "--state", state, "--signal", signalID, "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        return result.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }
}

/// A response of the node, with its body parsed as JSON.
struct Reply {
    let status: Int
    let body: [UInt8]
    let json: [String: Any]

    init(_ response: HTTPResponse) {
        status = response.status
        body = response.body
        json = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
    }

    /// The body as text, for comparing answers with a readable message.
    var text: String { String(decoding: body, as: UTF8.self) }
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorMessage: String? { (json["error"] as? [String: Any])?["message"] as? String }
    var recipients: [[String: Any]] { json["recipients"] as? [[String: Any]] ?? [] }

    func recipient(_ id: String) -> [String: Any]? {
        recipients.first { $0["recipient"] as? String == id }
    }
}

/// The example payloads of Config/payloads (JSON5) as JSON objects.
enum Fixtures {
    static func payload(_ name: String) throws -> [String: Any] {
        let url = Site.packageRoot.appendingPathComponent("Config/payloads/\(name).json")
        return try XCTUnwrap(foundation(try JSONParser.parse(Data(contentsOf: url))) as? [String: Any])
    }

    private static func foundation(_ node: JSONNode) -> Any {
        switch node.value {
        case .null: NSNull()
        case .bool(let value): value
        case .integer(let value): value
        case .number(let value): value
        case .string(let value): value
        case .array(let elements): elements.map(foundation)
        case .object(let members): Dictionary(members.map { ($0.key, foundation($0.value)) }, uniquingKeysWith: { $1 })
        }
    }
}

/// A partner's own endpoint that the node pushes signals to: a mutual-TLS server with the
/// organisation's development certificate (it admits any certificate of the site's CA, as the
/// node's is), which records every delivery. It can be down (not listening) and come back on
/// the same port.
final class RecipientServer: @unchecked Sendable {
    struct Delivery {
        /// The `Waakvlam-Signal-Id` header.
        let signalID: String
        /// The pushed message; empty unless the server records messages.
        let message: [String: Any]
        let traceparent: String?
        /// The common name of the client certificate that pushed it.
        let pushedBy: String?
    }

    let organisation: String
    let port: UInt16
    private let tls: TLSContext
    private let recordsMessages: Bool
    private let condition = NSCondition()
    private var server: HTTPServer?
    private var deliveries: [Delivery] = []

    init(site: Site, organisation: String, recordsMessages: Bool = true) throws {
        self.organisation = organisation
        self.recordsMessages = recordsMessages
        port = try freeLoopbackPort()
        tls = try TLSContext(role: .server, certificateChain: site.pki("\(organisation).crt"), privateKey: site.pki("\(organisation).key"),
                             trustedCAs: site.pki("ca.pem"))
    }

    deinit { stop() }

    /// The URL to configure as the organisation's push endpoint.
    var url: String { "https://127.0.0.1:\(port)/signals" }

    func start() throws {
        let server = try HTTPServer(configuration: HTTPServer.Configuration(endpoint: Endpoint(host: "127.0.0.1", port: port)),
                                    tls: tls) { [weak self] request, peer in
            self?.receive(request, peer) ?? HTTPResponse(status: 503)
        }
        try server.start()
        condition.lock()
        self.server = server
        condition.unlock()
    }

    /// Stops listening and closes every connection: the node finds the endpoint down.
    func stop() {
        condition.lock()
        let server = self.server
        self.server = nil
        condition.unlock()
        server?.shutdown(gracePeriod: 1)
    }

    private func receive(_ request: HTTPRequest, _ peer: HTTPServer.PeerConnection) -> HTTPResponse {
        guard request.method == "POST", request.path == "/signals", let id = request.headers["waakvlam-signal-id"] else {
            return .error(status: 400, code: "unexpected", message: "\(request.method) \(request.target)")
        }
        var message: [String: Any] = [:]
        if recordsMessages {
            message = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] ?? [:]
        }
        condition.lock()
        deliveries.append(Delivery(signalID: id, message: message, traceparent: request.headers["traceparent"],
                                   pushedBy: peer.certificate.commonName))
        condition.broadcast()
        condition.unlock()
        return .json(status: 200, object: ["received": id])
    }

    var received: [Delivery] {
        condition.lock()
        defer { condition.unlock() }
        return deliveries
    }

    /// How often each signal id arrived.
    var countsByID: [String: Int] {
        received.reduce(into: [:]) { $0[$1.signalID, default: 0] += 1 }
    }

    func deliveries(of signalID: String) -> [Delivery] {
        received.filter { $0.signalID == signalID }
    }

    /// Waits until `predicate` holds for what arrived, at most `timeout` seconds.
    @discardableResult
    func waitUntil(timeout: TimeInterval, _ predicate: ([Delivery]) -> Bool) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while !predicate(deliveries) {
            if !condition.wait(until: deadline) { return predicate(deliveries) }
        }
        return true
    }

    /// Waits until every id in `ids` arrived at least once.
    @discardableResult
    func waitForAll(_ ids: Set<String>, timeout: TimeInterval) -> Bool {
        var missing = ids
        var checked = 0
        return waitUntil(timeout: timeout) { deliveries in
            for delivery in deliveries[checked...] { missing.remove(delivery.signalID) }
            checked = deliveries.count
            return missing.isEmpty
        }
    }
}

/// waakvlamd as a child process, its stderr (one JSON line per event) collected.
final class Daemon {
    let process = Process()
    private let lock = NSLock()
    private var output = Data()
    private let site: Site

    /// Starts `waakvlamd --config` on the site; with `fileSizeLimitKiB`, under that file size
    /// limit (RLIMIT_FSIZE, bash's `ulimit -f`): a write beyond it fails as on a full disk.
    init(site: Site, fileSizeLimitKiB: Int? = nil) throws {
        self.site = site
        let limit = fileSizeLimitKiB.map { "ulimit -f \($0) && " } ?? ""
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", limit + "exec \"$0\" --config \"$1\"", Site.binary("waakvlamd").path, site.config]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let handle = errors.fileHandleForReading
        let reader = Thread { [weak self] in
            while true {
                let data = handle.availableData
                if data.isEmpty { return }
                guard let self else { continue }
                self.lock.lock()
                self.output.append(data)
                self.lock.unlock()
            }
        }
        reader.start()
    }

    deinit {
        if process.isRunning { kill() }
    }

    /// Waits until the node answers on its peer port.
    func waitUntilReady(timeout: TimeInterval = 20) throws {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while Date() < deadline {
            guard process.isRunning else { throw DaemonError.exited(status: process.terminationStatus, log: log) }
            if (try? site.send("gemeente-hoorn", "GET", "/v1/whoami"))?.status == 200 { return }
            usleep(50_000)
        }
        throw DaemonError.notReady(log: log)
    }

    /// SIGKILL, then waits for the process to be gone.
    func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM (graceful shutdown); the exit status, or nil when it did not exit within `timeout`.
    func stop(timeout: TimeInterval = 15) -> Int32? {
        process.terminate()
        let deadline = Date(timeIntervalSinceNow: timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// CPU seconds (user and system) the daemon used so far, from /proc.
    var cpuSeconds: Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
              let end = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    var log: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: output, as: UTF8.self)
    }

    /// The log lines with this event name.
    func events(_ name: String) -> [[String: Any]] {
        log.split(separator: "\n").compactMap { line in
            guard line.contains("\"event\":\"\(name)\"") else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        }
    }

    enum DaemonError: Error, CustomStringConvertible {
        case exited(status: Int32, log: String)
        case notReady(log: String)

        var description: String {
            switch self {
            case .exited(let status, let log): "waakvlamd exited with status \(status):\n\(log.suffix(4000))"
            case .notReady(let log): "waakvlamd did not answer in time:\n\(log.suffix(4000))"
            }
        }
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` seconds passed; whether it held.
@discardableResult
func eventually(timeout: TimeInterval, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date(timeIntervalSinceNow: timeout)
    while true {
        if try condition() { return true }
        if Date() >= deadline { return false }
        usleep(20_000)
    }
}

func jsonBytes(_ object: Any) throws -> [UInt8] {
    [UInt8](try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
}

func json(_ response: HTTPResponse) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
}

typealias ProcessResult = (status: Int32, stdout: String, stderr: String)

/// Runs a process and returns its exit status, stdout and stderr.
func runProcess(_ executable: String, _ arguments: [String]) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    // Read stderr on another thread so that neither pipe can fill up and stall the process.
    let errors = PipeReader(err.fileHandleForReading)
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = errors.wait()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}

/// Reads a pipe to its end on its own thread.
private final class PipeReader: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var data = Data()

    init(_ handle: FileHandle) {
        Thread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }.start()
    }

    func wait() -> Data {
        done.wait()
        return data
    }
}
