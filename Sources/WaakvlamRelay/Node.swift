import Foundation
import WaakvlamCore
import WaakvlamCrypto
import WaakvlamJournal
import WaakvlamSystem
import WaakvlamTransport

/// One Waakvlam node: the peer listener (mutual TLS) with the signal API, the journal, the
/// delivery scheduler, and the admin listener with health, metrics and configuration apply.
///
/// Life cycle: `init` loads and archives the configuration and recovers the journal;
/// `start` opens the listeners and starts delivering; `shutdown` drains within a deadline.
public final class Node: @unchecked Sendable {
    /// The explicit life-cycle state (swift-service-lifecycle style).
    public enum State: String, Sendable {
        case created, running, draining, stopped
    }

    /// What applying a configuration did.
    public enum ApplyOutcome: Sendable {
        /// Now in force as this archive version; `summary` says what changed.
        case applied(version: Int, summary: String)
        /// Refused as a whole: every issue, the running configuration stays.
        case refused([ConfigIssue])
    }

    public let configFolder: String
    let holder: ConfigurationHolder
    let journal: Journal
    let metrics = Metrics()
    private let archive: ConfigArchive
    private let scheduler: DeliveryScheduler
    private let routes: PeerRoutes
    private let server: HTTPServer
    private var adminServer: HTTPServer?
    private let lifecycleLock = NSLock()
    private var lifecycle: State = .created
    /// Applies happen one at a time (SIGHUP and the admin endpoint may race).
    private let applyLock = NSLock()
    private var convenantWatch: DispatchSourceTimer?

    /// Loads `configFolder`, opens (and recovers) the journal in the state folder, archives the
    /// configuration as a version and prepares the listeners. Throws with a message that says
    /// what to fix when the configuration or a TLS file is unusable.
    public init(configFolder: String) throws {
        self.configFolder = configFolder
        let configuration = try Self.loadConfiguration(folder: configFolder)
        let stateFolder = configuration.node.state
        do {
            try FileManager.default.createDirectory(atPath: stateFolder, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw NodeError.stateFolder(path: stateFolder, reason: "\(error)")
        }
        journal = try Journal.open(directory: Journal.directory(inState: stateFolder))
        let recovery = journal.recovery
        Log.shared.info("journal_recovered", ["records": Int(recovery.records), "segments": recovery.segments,
                                              "torn_bytes_cut": Int(recovery.tornBytesCut),
                                              "pending_deliveries": recovery.pendingDeliveries,
                                              "seconds": recovery.duration])
        journal.onGroupCommit = { [metrics] seconds, succeeded in
            metrics.observe("waakvlam_journal_commit_seconds", seconds, buckets: Node.commitBuckets)
            if !succeeded { metrics.increment("waakvlam_journal_commit_failures_total") }
        }
        let pseudonymizer = try Pseudonymizer(stateDirectory: stateFolder)
        archive = ConfigArchive(stateFolder: stateFolder)
        holder = ConfigurationHolder(ConfigurationSnapshot(configuration: configuration, version: "0", contentHash: ""))

        let clientTLS = try TLSContext(role: .client, certificateChain: configuration.node.tls.certificate,
                                       privateKey: configuration.node.tls.key, trustedCAs: configuration.node.tls.ca)
        let timeout = TimeInterval(configuration.node.delivery.timeoutSeconds)
        let pushTimeouts = HTTPClientConfiguration(connectTimeout: min(5, timeout), handshakeTimeout: timeout, responseTimeout: timeout)
        let metrics = self.metrics
        let scheduler = try DeliveryScheduler(journal: journal, tls: clientTLS, client: pushTimeouts, configuration: holder,
                                              metrics: metrics)
        self.scheduler = scheduler
        let signals = SignalService(journal: journal, pseudonymizer: pseudonymizer, configuration: holder, metrics: metrics,
                                    onQueued: { scheduler.notice($0) })
        let routes = PeerRoutes(configuration: holder, signals: signals, metrics: metrics)
        self.routes = routes
        let node = configuration.node
        server = try HTTPServer(configuration: Self.serverSettings(node, address: node.listen.peer),
                                tls: try Self.serverContext(node.tls)) { request, peer, responder in
            routes.respond(to: request, from: peer, responder: responder)
        }
        server.onHandshakeFailure = { [metrics] cause in
            metrics.increment("waakvlam_tls_handshake_failures_total", ["cause": cause.rawValue])
        }
        try recordApplied(configuration, appliedBy: "start")
        Self.describeMetrics(metrics)
        metrics.addCollector { [journal] in
            let index = journal.deliveryState()
            return index.pendingPerRecipient().map { (name: "waakvlam_backlog", labels: ["recipient": $0.key], value: Double($0.value)) }
                + [(name: "waakvlam_delivery_index_scratch_bytes", labels: [:], value: Double(index.scratchDiskBytes))]
        }
    }

    /// `waakvlamd --check` (like `nginx -t`): the configuration is valid and the TLS files
    /// (certificate, key, CA bundle, CRL) are usable. Writes nothing. Returns a summary line.
    public static func check(configFolder: String) throws -> String {
        let configuration = try loadConfiguration(folder: configFolder)
        _ = try serverContext(configuration.node.tls)
        _ = try TLSContext(role: .client, certificateChain: configuration.node.tls.certificate,
                           privateKey: configuration.node.tls.key, trustedCAs: configuration.node.tls.ca)
        let pinned = configuration.organisations.filter { !$0.pins.isEmpty }.count
        return "\(configFolder): configuration valid (\(configuration.organisations.count) organisations, \(pinned) with pins, "
            + "\(configuration.convenants.count) convenants); TLS files usable; state folder \(configuration.node.state)"
    }

    /// Loads a configuration folder, logging every issue as a `config_issue` line; throws
    /// when there are errors.
    public static func loadConfiguration(folder: String) throws -> Configuration {
        let result = ConfigLoading.load(directory: folder)
        logIssues(result.issues)
        guard let configuration = result.configuration else {
            throw NodeError.invalidConfiguration(folder: folder, errors: result.errors.count)
        }
        return configuration
    }

    private static func logIssues(_ issues: [ConfigIssue]) {
        for issue in issues {
            Log.shared.log(issue.severity == .error ? .error : .warning, "config_issue",
                           ["file": issue.file, "path": issue.path, "message": issue.message])
        }
    }

    /// The server TLS context for these settings: node certificate and key, the CA bundle
    /// partner certificates must chain to, and the CRL when configured.
    public static func serverContext(_ tls: TLSSettings) throws -> TLSContext {
        try TLSContext(role: .server, certificateChain: tls.certificate, privateKey: tls.key, trustedCAs: tls.ca, crl: tls.crl)
    }

    private static func serverSettings(_ node: NodeSettings, address: ListenAddress) -> HTTPServer.Configuration {
        let limits = HTTPLimits(maximumHeaderBytes: node.limits.maximumHeaderBytes,
                                maximumHeaderCount: node.limits.maximumHeaderCount,
                                maximumBodyBytes: node.limits.maximumBodyBytes)
        return HTTPServer.Configuration(endpoint: Endpoint(host: address.host, port: address.port),
                                        limits: limits, maximumConnections: node.limits.maximumConnections)
    }

    // MARK: - Life cycle

    public var state: State {
        lifecycleLock.lock()
        defer { lifecycleLock.unlock() }
        return lifecycle
    }

    public func start() throws {
        lifecycleLock.lock()
        defer { lifecycleLock.unlock() }
        guard lifecycle == .created else { return }
        try server.start()
        let admin = try AdminService.makeServer(node: self, settings: Self.serverSettings(configuration.node, address: configuration.node.listen.admin))
        try admin.start()
        adminServer = admin
        try scheduler.start()
        watchConvenantEnds()
        lifecycle = .running
        Log.shared.info("node_started", ["node": configuration.node.name, "peer_port": Int(server.port), "admin_port": Int(admin.port),
                                         "organisations": configuration.organisations.count, "config_version": holder.current.version,
                                         "pending_deliveries": journal.deliveryState().pendingCount])
    }

    /// The bound peer port (differs from the configuration when it asked for port 0).
    public var peerPort: UInt16 { server.port }
    /// The bound admin port, once started.
    public var adminPort: UInt16? { adminServer?.port }

    public var configuration: Configuration { holder.current.configuration }
    public var configurationVersion: String { holder.current.version }

    /// Whether the node can take signals: running, and the journal accepts writes.
    public var isReady: Bool {
        state == .running && journal.isWritable
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish, stop delivering
    /// (pending deliveries resume from the journal at the next start), close the journal.
    /// Everything within `gracePeriod`.
    @discardableResult
    public func shutdown(gracePeriod: TimeInterval) -> HTTPServer.ShutdownResult {
        lifecycleLock.lock()
        guard lifecycle == .running || lifecycle == .created else {
            lifecycleLock.unlock()
            return HTTPServer.ShutdownResult(forcedConnections: 0)
        }
        lifecycle = .draining
        lifecycleLock.unlock()
        let deadline = Date().addingTimeInterval(gracePeriod)
        convenantWatch?.cancel()
        let result = server.shutdown(gracePeriod: gracePeriod)
        scheduler.stop(deadline: deadline)
        _ = adminServer?.shutdown(gracePeriod: max(0.1, deadline.timeIntervalSinceNow))
        journal.close()
        lifecycleLock.lock()
        lifecycle = .stopped
        lifecycleLock.unlock()
        Log.shared.info("node_stopped", ["forced_connections": result.forcedConnections])
        return result
    }

    // MARK: - Configuration apply

    /// Reloads the configuration folder: validated first, swapped atomically, archived as a
    /// new version and journaled. Invalid: refused as a whole, the running one stays.
    public func applyConfiguration(appliedBy: String) -> ApplyOutcome {
        applyLock.lock()
        defer { applyLock.unlock() }
        let result = ConfigLoading.load(directory: configFolder)
        guard let candidate = result.configuration else {
            Self.logIssues(result.issues)
            Log.shared.error("config_apply_refused", ["applied_by": appliedBy, "errors": result.errors.count,
                                                      "config_version": holder.current.version])
            return .refused(result.errors)
        }
        do {
            let context = try Self.serverContext(candidate.node.tls)
            let old = holder.current.configuration
            let version = try recordApplied(candidate, appliedBy: appliedBy)
            server.replaceTLSContext(context)
            let summary = ConfigDiff(old: old, new: candidate).summary
            Log.shared.info("config_applied", ["applied_by": appliedBy, "config_version": version.version, "summary": summary])
            if old.node.listen != candidate.node.listen || old.node.limits != candidate.node.limits {
                Log.shared.warning("config_needs_restart", ["reason": "listen addresses and limits take effect at the next start"])
            }
            return .applied(version: version.version, summary: summary)
        } catch {
            Log.shared.error("config_apply_refused", ["applied_by": appliedBy, "reason": "\(error)"])
            return .refused([ConfigIssue(file: configFolder, path: "$", line: nil, message: "\(error)", severity: .error)])
        }
    }

    /// Archives `configuration` (the folder's files as they are now), journals a
    /// `configApplied` record when the version is new to the journal, and makes it current.
    @discardableResult
    private func recordApplied(_ configuration: Configuration, appliedBy: String) throws -> ArchivedVersion {
        let (sources, _) = ConfigLoading.readSources(configFolder)
        var summary = "initial configuration"
        if let latest = try archive.list().last, let previous = try? archive.version(latest.version),
           let old = ConfigurationParser.parse(previous.files).configuration {
            summary = ConfigDiff(old: old, new: configuration).summary
        }
        let version = try archive.archive(files: sources, relativeTo: configFolder, appliedBy: appliedBy, diffSummary: summary)
        let versionText = String(version.version)
        if journal.deliveryState().lastConfigVersion != versionText {
            _ = try journal.append([.configApplied(ConfigApplied(version: versionText, contentHash: version.contentHash,
                                                                 appliedBy: version.appliedBy, summary: version.diffSummary, at: Date()))])
        }
        holder.replace(with: ConfigurationSnapshot(configuration: configuration, version: versionText, contentHash: version.contentHash))
        return version
    }

    /// A convenant whose end date passes stops allowing flows at that moment (the policy
    /// engine judges every signal at its own time); this watch only logs it.
    private func watchConvenantEnds() {
        var lastCheck = configuration.localDate(of: Date())
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "waakvlam.convenant-watch"))
        timer.schedule(deadline: .now() + 60, repeating: 60)
        timer.setEventHandler { [holder] in
            let configuration = holder.current.configuration
            let today = configuration.localDate(of: Date())
            guard today != lastCheck else { return }
            for convenant in configuration.convenants where convenant.validUntil < today && convenant.validUntil >= lastCheck {
                Log.shared.warning("convenant_ended", ["convenant": convenant.id, "version": convenant.version,
                                                       "valid_until": convenant.validUntil.description])
            }
            lastCheck = today
        }
        timer.resume()
        convenantWatch = timer
    }

    /// Buckets of the group-commit latency histogram, in seconds (0.1 ms to 1 s).
    static let commitBuckets: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]

    private static func describeMetrics(_ metrics: Metrics) {
        metrics.describe("waakvlam_signals_accepted_total", type: "counter", "Signals made durable and answered 202 or 403, by type.")
        metrics.describe("waakvlam_signals_allowed_total", type: "counter", "Recipient decisions that allowed delivery, by signal type.")
        metrics.describe("waakvlam_signals_denied_total", type: "counter", "Recipient decisions that denied delivery, by reason code.")
        metrics.describe("waakvlam_signals_rejected_total", type: "counter", "Submissions refused with 400 before any decision.")
        metrics.describe("waakvlam_deliveries_total", type: "counter", "Deliveries completed (push receipt or inbox acknowledgement).")
        metrics.describe("waakvlam_delivery_retries_total", type: "counter", "Failed delivery attempts that will be retried, by recipient.")
        metrics.describe("waakvlam_deliveries_expired_total", type: "counter", "Deliveries given up after the maximum lifetime, by recipient.")
        metrics.describe("waakvlam_backlog", type: "gauge", "Deliveries waiting per recipient.")
        metrics.describe("waakvlam_delivery_index_scratch_bytes", type: "gauge",
                         "Disk space of the delivery index's nameless scratch file in the journal folder (not visible to du).")
        metrics.describe("waakvlam_journal_failures_total", type: "counter", "Appends the journal could not make durable (answered 503).")
        metrics.describe("waakvlam_tls_handshake_failures_total", type: "counter", "Failed TLS handshakes on the peer port, by cause.")
        metrics.describe("waakvlam_identity_refused_total", type: "counter", "Verified certificates that map to no organisation (403), by code.")
        metrics.describe("waakvlam_feedback_total", type: "counter", "Feedback passed on to senders, by status.")
        metrics.describe("waakvlam_feedback_denied_total", type: "counter", "Feedback refused by the rule, by reason.")
        metrics.describe("waakvlam_payloads_purged_total", type: "counter", "Payloads destroyed when their retention ended.")
        metrics.describe("waakvlam_journal_commit_seconds", type: "histogram", "Duration of one group commit: write and fdatasync.")
        metrics.describe("waakvlam_journal_commit_failures_total", type: "counter", "Group commits that failed (disk full, I/O error).")
    }
}

public enum NodeError: Error, CustomStringConvertible {
    case invalidConfiguration(folder: String, errors: Int)
    case stateFolder(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let folder, let errors):
            "the configuration in \(folder) has \(errors) error\(errors == 1 ? "" : "s") (logged as config_issue); fix them and check with `waakvlam config check \(folder)`"
        case .stateFolder(let path, let reason):
            "cannot create the state folder \(path) (node.json: state): \(reason); create it, writable for the daemon's user"
        }
    }
}

/// The peer API's request handling: identity first, then the route.
final class PeerRoutes: @unchecked Sendable {
    private let configuration: ConfigurationHolder
    private let signals: SignalService
    private let metrics: Metrics

    init(configuration: ConfigurationHolder, signals: SignalService, metrics: Metrics) {
        self.configuration = configuration
        self.signals = signals
        self.metrics = metrics
    }

    /// On the connection's event loop. A submission is decided there and answered from the
    /// journal's completion; the other routes, which may wait for the journal, run on a
    /// handler thread.
    func respond(to request: HTTPRequest, from peer: HTTPServer.PeerConnection, responder: HTTPServer.Responder) {
        // One snapshot per request: the sender is identified and its signal decided under it.
        let snapshot = configuration.current
        let organisation: Organisation
        // Through the closure's parameter: taken from the local, the configuration was copied
        // for the call (each of its arrays and dictionaries retained and released), as seen in
        // the generated code and the retain counts. What the optimiser does, not a guarantee.
        switch withExtendedLifetime(snapshot, { Identity.organisation(for: peer.certificate, in: $0.configuration) }) {
        case .failure(let refusal):
            metrics.increment("waakvlam_identity_refused_total", ["code": refusal.code])
            Log.shared.warning("identity_refused", ["remote": peer.remoteAddress, "code": refusal.code,
                                                    "oin": peer.certificate.subjectSerialNumber ?? "",
                                                    "pin": peer.certificate.publicKeyPin])
            return responder.respond(refusal.response)
        case .success(let found):
            organisation = found
        }
        guard let route = PeerRoute(path: request.path) else {
            return responder.respond(.error(status: 404, code: "not_found",
                                            message: "There is no \(request.method) \(request.path) on this node; see docs/API.md."))
        }
        guard route.allows(request.method) else {
            var response = HTTPResponse.error(status: 405, code: "method_not_allowed",
                                              message: "\(request.method) is not allowed on \(request.path); it answers \(route.methods.joined(separator: ", ")).")
            response.headers.add("Allow", route.methods.joined(separator: ", "))
            return responder.respond(response)
        }
        let signals = self.signals
        switch route {
        case .whoami: responder.respond(Whoami.response(organisation: organisation, certificate: peer.certificate))
        case .signals: signals.submit(request, sender: organisation, snapshot: snapshot, loop: responder.eventLoop) { responder.respond($0) }
        case .signal(let id): responder.respond(blocking: { signals.status(id, caller: organisation) })
        case .feedback(let id): responder.respond(blocking: { signals.feedback(id, request, caller: organisation) })
        case .inbox: responder.respond(blocking: { signals.inbox(request, caller: organisation) })
        case .acknowledge(let id): responder.respond(blocking: { signals.acknowledge(id, caller: organisation) })
        }
    }
}

/// The paths of the peer API (docs/API.md) and the methods each answers.
enum PeerRoute: Equatable {
    case whoami, signals, signal(String), feedback(String), inbox, acknowledge(String)

    init?(path: Substring) {
        // Every submission comes here: its path is told apart without splitting.
        if path == "/v1/signals" {
            self = .signals
            return
        }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[0].isEmpty, parts[1] == "v1", parts.dropFirst().allSatisfy({ !$0.isEmpty }) else { return nil }
        switch (parts.count, parts[2]) {
        case (3, "whoami"): self = .whoami
        case (3, "signals"): self = .signals
        case (4, "signals"): self = .signal(String(parts[3]))
        case (5, "signals") where parts[4] == "feedback": self = .feedback(String(parts[3]))
        case (3, "inbox"): self = .inbox
        case (5, "inbox") where parts[4] == "ack": self = .acknowledge(String(parts[3]))
        default: return nil
        }
    }

    var methods: [String] {
        switch self {
        case .whoami: ["GET", "HEAD"]
        case .signal, .inbox: ["GET"]
        case .signals, .feedback, .acknowledge: ["POST"]
        }
    }

    /// `methods.contains(method)` without building the array (asked on every request).
    func allows(_ method: String) -> Bool {
        switch self {
        case .whoami: method == "GET" || method == "HEAD"
        case .signal, .inbox: method == "GET"
        case .signals, .feedback, .acknowledge: method == "POST"
        }
    }
}

/// `GET /v1/whoami`: which organisation this node recognises from the caller's certificate,
/// so that partners can test their certificate set-up. The body is written as bytes (keys in a
/// fixed order) because it is on the hot path of every partner's health check.
enum Whoami {
    static func response(organisation: Organisation, certificate: PeerCertificate) -> HTTPResponse {
        var body: [UInt8] = []
        body.reserveCapacity(320)
        func raw(_ text: StaticString) {
            body.append(contentsOf: UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }
        raw("{\"organisation\":{\"id\":")
        appendJSONString(organisation.id, to: &body)
        raw(",\"oin\":")
        appendJSONString(organisation.oin, to: &body)
        raw(",\"name\":")
        appendJSONString(organisation.name, to: &body)
        raw(",\"sector\":")
        appendJSONString(organisation.sector.rawValue, to: &body)
        raw("},\"certificate\":{\"commonName\":")
        appendJSONString(certificate.commonName ?? "", to: &body)
        raw(",\"notAfter\":")
        appendJSONString(utcTimestamp(certificate.notAfter), to: &body)
        raw(",\"pin\":")
        appendJSONString(certificate.publicKeyPin, to: &body)
        raw("}}")
        return .json(status: 200, body)
    }

    /// Appends `text` as a JSON string literal (runs without escapes are copied whole).
    static func appendJSONString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { bytes in
            var runStart = 0
            for index in bytes.indices {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                if byte < 0x20 {
                    out.append(contentsOf: String(format: "\\u%04x", byte).utf8)
                } else {
                    out.append(UInt8(ascii: "\\"))
                    out.append(byte)
                }
                runStart = index + 1
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// RFC 3339 in UTC to the second, e.g. 2029-02-23T22:51:51Z.
    static func utcTimestamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var broken = tm()
        gmtime_r(&seconds, &broken)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(broken.tm_year + 1900)-\(two(broken.tm_mon + 1))-\(two(broken.tm_mday))T"
            + "\(two(broken.tm_hour)):\(two(broken.tm_min)):\(two(broken.tm_sec))Z"
    }
}
