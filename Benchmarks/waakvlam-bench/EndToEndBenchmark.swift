import Foundation
import WaakvlamSystem
import WaakvlamTransport

// `waakvlam-bench e2e`: the whole relay under load, against nginx as a plain mutual-TLS
// reverse proxy to the same recipient, in the same run on the same machine.
//
// Set-up, in a temporary folder: a copy of Config/ (the Hoorn convenants) with free ports,
// a development PKI from `waakvlam pki init`, a CRL, and 1.Hoorn switched to push delivery
// to a recipient stand-in (`waakvlam-bench recipient`, a separate process: a small mutual-TLS
// HTTP server that answers 200 at once and counts distinct signal ids). The release
// `waakvlamd` runs as a child process; so does nginx, proxying to the same stand-in with the
// node's certificate. Senders are Intermaris (its development certificate), submitting a
// zorgsignaal to 1.Hoorn over keep-alive connections.
//
// Per round: closed-loop senders as fast as they can (accepted signals/s = 202s, and end to
// end signals/s = distinct deliveries counted at the recipient until all accepted ones
// arrived), then open-loop load at a fixed rate (acknowledge latency percentiles); the same
// two for nginx. Then once: a backlog run against a second node whose recipient is down.

private let endToEndUsage = """
usage: waakvlam-bench e2e [--seconds N] [--senders N] [--generator-loops N] [--rate R] [--runs N] [--backlog N] [--keep]

  --seconds N   length of each throughput and latency measurement (default 10)
  --senders N   concurrent sender connections for the throughput measurement (default 64)
  --generator-loops N
                event-loop threads the throughput measurement's senders share (default 1);
                0: a thread per sender connection, blocking (the generator up to the seventh session)
  --rate R      offered load for the latency measurement, signals/s (default 1000)
  --runs N      rounds; medians are reported (default 3; 0 runs only the backlog part)
  --backlog N   signals submitted while the recipient is down (default 100000; 0 skips)
  --keep        keep the temporary folder (configuration, logs, journals) and print where it is
"""

func runEndToEndBenchmark(_ arguments: [String]) -> Int32 {
    var options = EndToEndOptions()
    var rest = arguments
    while !rest.isEmpty {
        let option = rest.removeFirst()
        if option == "--keep" {
            options.keep = true
            continue
        }
        guard let value = rest.first.flatMap(Double.init), value >= 0 else {
            print(endToEndUsage)
            return 2
        }
        rest.removeFirst()
        switch option {
        case "--seconds" where value > 0: options.seconds = value
        case "--senders" where value >= 1: options.senders = Int(value)
        case "--generator-loops": options.generatorLoops = Int(value)
        case "--rate" where value > 0: options.rate = value
        case "--runs": options.runs = Int(value)
        case "--backlog": options.backlog = Int(value)
        default:
            print(endToEndUsage)
            return 2
        }
    }
    do {
        try EndToEndBenchmark(options: options).run()
        return 0
    } catch {
        print("end-to-end benchmark failed: \(error)")
        return 1
    }
}

private struct EndToEndOptions {
    var seconds = 10.0
    var senders = 64
    var generatorLoops = 1
    var rate = 1_000.0
    var runs = 3
    var backlog = 100_000
    var keep = false
    /// Connections the open-loop latency measurement spreads its requests over.
    let latencyConnections = 16
}

// MARK: - The recipient stand-in

private let recipientUsage = "usage: waakvlam-bench recipient --port P --ca FILE --certificate FILE --key FILE"

/// `waakvlam-bench recipient`: the partner endpoint that signals are pushed to. Answers every
/// POST with 200 at once and counts it by its `Waakvlam-Signal-Id`; `GET /stats` answers
/// "distinct requests first last" (monotonic nanoseconds of the first and the latest new id).
/// Runs until SIGTERM.
func runRecipientStandIn(_ arguments: [String]) -> Int32 {
    var settings: [String: String] = [:]
    var rest = arguments
    while rest.count >= 2 {
        settings[rest.removeFirst()] = rest.removeFirst()
    }
    guard rest.isEmpty, let port = settings["--port"].flatMap(UInt16.init), let ca = settings["--ca"],
          let certificate = settings["--certificate"], let key = settings["--key"] else {
        print(recipientUsage)
        return 2
    }
    Log.shared.minimumLevel = .warning
    let stats = DeliveryCount()
    let ok = HTTPResponse.json(status: 200, Array("{}".utf8))
    do {
        let tls = try TLSContext(role: .server, certificateChain: certificate, privateKey: key, trustedCAs: ca)
        let server = try HTTPServer(configuration: HTTPServer.Configuration(endpoint: Endpoint(host: "127.0.0.1", port: port),
                                                                             maximumConnections: 4096, defaultResponseHeaders: HTTPHeaders()),
                                    tls: tls) { request, _, responder in
            // Answered on the event loop: counting takes a lock, nothing blocks.
            if request.method == "GET", request.path == "/stats" {
                return responder.respond(HTTPResponse(status: 200, body: Array(stats.summary.utf8)))
            }
            stats.record(request.headers["waakvlam-signal-id"] ?? "")
            responder.respond(ok)
        }
        try server.start()
    } catch {
        print("recipient stand-in: \(error)")
        return 1
    }
    signal(SIGTERM, SIG_DFL)
    while true { pause() }
}

private final class DeliveryCount: @unchecked Sendable {
    private let lock = NSLock()
    private var seen = Set<String>()
    private var requests = 0
    private var first: UInt64 = 0
    private var last: UInt64 = 0

    func record(_ id: String) {
        lock.lock()
        requests += 1
        if seen.insert(id).inserted {
            last = monotonicNanoseconds()
            if first == 0 { first = last }
        }
        lock.unlock()
    }

    var summary: String {
        lock.lock()
        defer { lock.unlock() }
        return "\(seen.count) \(requests) \(first) \(last)"
    }
}

// MARK: - The benchmark

private struct EndToEndBenchmark {
    let options: EndToEndOptions

    private enum Measure: String, CaseIterable {
        case accepted = "accepted signals/s"
        case delivered = "delivered end to end, signals/s"
        case p50 = "ack latency p50 (ms)"
        case p99 = "ack latency p99 (ms)"
        case p999 = "ack latency p99.9 (ms)"
        case serverCPU = "server CPU per signal (us)"
        case recipientCPU = "recipient CPU per signal (us)"
        case generatorCPU = "load generator CPU per signal (us)"
        case stolen = "CPU time stolen by the host (%)"
    }

    func run() throws {
        let folder = NSTemporaryDirectory() + "waakvlam-bench-e2e-\(getpid())"
        try? FileManager.default.removeItem(atPath: folder)
        defer {
            if options.keep { print("kept \(folder)") } else { try? FileManager.default.removeItem(atPath: folder) }
        }
        let configSource = try Self.findConfig()
        if options.runs > 0 {
            try compare(folder: folder, configSource: configSource)
        }
        if options.backlog > 0 {
            try backlogRun(folder: folder + "/backlog", configSource: configSource)
        }
    }

    /// The rounds against nginx, and their medians.
    private func compare(folder: String, configSource: String) throws {

        let site = try Site.make(folder: folder + "/main", configSource: configSource)
        let recipient = try site.startRecipient()
        defer { stopProcess(recipient) }
        let node = try site.startNode()
        defer { stopProcess(node) }
        try site.waitUntilReady(node: node, recipient: recipient)
        let nginxPort = try freeLoopbackPort()
        let nginx = try Nginx.start(folder: folder + "/nginx", port: nginxPort, tls: site.nginxTLS, upstreams: """
                upstream recipient {
                    server 127.0.0.1:\(site.recipientPort);
                    keepalive 64;
                }
            """, accessLog: true, server: site.nginxProxyLocation)
        defer { stopProcess(nginx) }
        let nginxEndpoint = Endpoint(host: "127.0.0.1", port: nginxPort)
        _ = try waitUntilServing(nginxEndpoint, tls: site.senderTLS, target: "/", process: nginx)

        let cores = ProcessInfo.processInfo.activeProcessorCount
        print("""
        end-to-end benchmark: Intermaris submits zorgsignalen to 1.Hoorn (push) over mutual TLS with keep-alive;
        waakvlamd (policy per message, journal with fdatasync before 202, push over mutual TLS, receipt journaled)
        vs nginx \(Nginx.version) as a plain mutual-TLS reverse proxy (proxy_pass https, node certificate, keep-alive upstream)
        to the same recipient stand-in. \(cores) cores shared by both servers, the recipient and the load generator.
        throughput: \(options.senders) closed-loop senders \(generatorDescription) for \(options.seconds) s;
        latency: open loop at \(Int(options.rate)) signals/s for \(options.seconds) s over \(options.latencyConnections) connections,
        measured from each request's due time.
        """)
        let waakvlam = Target(name: "waakvlamd", endpoint: site.peerEndpoint, expectedStatus: 202, pid: node.processIdentifier,
                              recipientPID: recipient.processIdentifier)
        let proxy = Target(name: "nginx", endpoint: nginxEndpoint, expectedStatus: 200, pid: nginx.processIdentifier,
                           recipientPID: recipient.processIdentifier)
        // Warm both up (connections, caches, the journal's first segment) without measuring.
        for target in [waakvlam, proxy] {
            _ = try throughput(target, site: site, seconds: 2, prefix: "warm-\(target.name)")
        }
        var figures: [String: [Measure: [Double]]] = [waakvlam.name: [:], proxy.name: [:]]
        for round in 1...options.runs {
            for target in [waakvlam, proxy] {
                let rates = try throughput(target, site: site, seconds: options.seconds, prefix: "r\(round)-\(target.name)")
                let latencies = try latency(target, site: site, prefix: "l\(round)-\(target.name)")
                let values: [Measure: Double] = [.accepted: rates.accepted, .delivered: rates.delivered,
                                                 .p50: Double(quantile(latencies, 0.5)) / 1e6,
                                                 .p99: Double(quantile(latencies, 0.99)) / 1e6,
                                                 .p999: Double(quantile(latencies, 0.999)) / 1e6,
                                                 .serverCPU: rates.cpu.server, .recipientCPU: rates.cpu.recipient,
                                                 .generatorCPU: rates.cpu.generator, .stolen: rates.cpu.stealPercent]
                for (measure, value) in values { figures[target.name]![measure, default: []].append(value) }
                print("  run \(round)  " + pad(target.name, 10)
                      + String(format: "accepted %6.0f/s  delivered %6.0f/s (last %.1f s after the senders stopped)  p50 %.2f  p99 %.2f  p99.9 %.2f ms"
                                + "  CPU/signal: server %.0f, recipient %.0f, generator %.0f us; stolen %.0f%%",
                               rates.accepted, rates.delivered, rates.drainSeconds, values[.p50]!, values[.p99]!, values[.p999]!,
                               rates.cpu.server, rates.cpu.recipient, rates.cpu.generator, rates.cpu.stealPercent))
            }
        }
        let memory = residentMemory(of: node.processIdentifier)

        print("\nmedians of \(options.runs) run\(options.runs == 1 ? "" : "s"):")
        print("  " + pad("", 34) + pad("waakvlamd", 12, right: true) + pad("nginx", 12, right: true) + pad("ratio", 10, right: true))
        for measure in Measure.allCases {
            let ours = median(figures[waakvlam.name]![measure]!), theirs = median(figures[proxy.name]![measure]!)
            let format = [.p50, .p99, .p999].contains(measure) ? "%.2f" : "%.0f"
            // Steal is the host's, not the servers': no ratio.
            let ratio = measure == .stolen ? "" : String(format: "%.2f", ours / theirs)
            print("  " + pad(measure.rawValue, 34) + pad(String(format: format, ours), 12, right: true)
                  + pad(String(format: format, theirs), 12, right: true) + pad(ratio, 10, right: true))
        }
        if let memory {
            print("  waakvlamd peak RSS (VmHWM) over the run: \(memory.peak / 1024) MiB (now \(memory.now / 1024) MiB)")
        }
        let delivered = median(figures[waakvlam.name]![.delivered]!), p99 = median(figures[waakvlam.name]![.p99]!)
        let ratio = delivered / median(figures[proxy.name]![.delivered]!)
        print("""
          targets: 10,000 signals/s end to end: \(delivered >= 10_000 ? "met" : "NOT met"); \
        at least half of nginx: \(ratio >= 0.5 ? "met" : "NOT met"); \
        p99 ack < 5 ms at \(Int(options.rate))/s: \(p99 < 5 ? "met" : "NOT met")
        """)
    }

    private var generatorDescription: String {
        switch options.generatorLoops {
        case 0: "(a thread each)"
        case 1: "(on one event loop)"
        default: "(on \(options.generatorLoops) event loops)"
        }
    }

    // MARK: Measurements

    private struct Target {
        let name: String
        let endpoint: Endpoint
        let expectedStatus: Int
        /// The server's process (nginx: its master; the workers are its children).
        let pid: Int32
        let recipientPID: Int32
    }

    /// CPU microseconds per signal of the server, the recipient stand-in and this process;
    /// and the share of the machine's CPU time the hypervisor stole meanwhile.
    private struct CPUShare {
        var server = 0.0, recipient = 0.0, generator = 0.0, stealPercent = 0.0
    }

    /// Closed-loop senders for `seconds`; then waits until the recipient has every accepted
    /// signal. Delivered/s counts distinct ids from the start of the window to the last one.
    /// CPU per signal covers the same span.
    private func throughput(_ target: Target, site: Site, seconds: Double, prefix: String)
        throws -> (accepted: Double, delivered: Double, drainSeconds: Double, cpu: CPUShare) {
        let before = try site.recipientStats()
        let cpuBefore = [cpuSeconds(target.pid, children: true), cpuSeconds(target.recipientPID), cpuSeconds(getpid())]
        let hostBefore = HostTimes.now()
        let submissions = Submissions(prefix: prefix)
        let result: ClosedLoopResult
        if options.generatorLoops > 0 {
            let expected = target.expectedStatus
            result = try closedLoopOnEventLoops(
                connections: options.senders, loops: options.generatorLoops, seconds: seconds, tls: site.senderTLS,
                endpoint: target.endpoint, warmUp: HTTPRequest(method: "GET", target: "/healthz"),
                request: { submissions.request($0) }, check: { Submissions.problem(with: $0, expecting: expected) })
        } else {
            result = try closedLoop(threads: options.senders, seconds: seconds, setup: {
                try HTTPClientConnection(to: target.endpoint, tls: site.senderTLS)
            }) { connection, number in
                try submissions.send(number, on: connection, expecting: target.expectedStatus)
            }
        }
        let after = try site.waitForDeliveries(before.distinct + result.total, timeout: max(120, seconds * 20))
        let cpuAfter = [cpuSeconds(target.pid, children: true), cpuSeconds(target.recipientPID), cpuSeconds(getpid())]
        let perSignal = zip(cpuAfter, cpuBefore).map { ($0 - $1) * 1e6 / Double(max(1, result.total)) }
        let steal = HostTimes.now().stealPercent(since: hostBefore)
        let windowSeconds = Double(after.last - result.windowStart) / 1e9
        return (result.perSecond, Double(after.distinct - before.distinct) / windowSeconds,
                Double(Int64(after.last) - Int64(result.windowEnd)) / 1e9,
                CPUShare(server: perSignal[0], recipient: perSignal[1], generator: perSignal[2], stealPercent: steal))
    }

    /// Open-loop load at the configured rate; the acknowledge latencies, ascending (ns).
    private func latency(_ target: Target, site: Site, prefix: String) throws -> [UInt64] {
        let before = try site.recipientStats()
        let submissions = Submissions(prefix: prefix)
        let latencies = try openLoop(rate: options.rate, seconds: options.seconds, threads: options.latencyConnections, setup: {
            try HTTPClientConnection(to: target.endpoint, tls: site.senderTLS)
        }) { connection, number in
            try submissions.send(number, on: connection, expecting: target.expectedStatus)
        }
        _ = try site.waitForDeliveries(before.distinct + latencies.count, timeout: 120)
        return latencies
    }

    /// A second node whose recipient is down: submits the backlog in four parts and prints the
    /// daemon's memory after each, then starts the recipient and times the drain.
    private func backlogRun(folder: String, configSource: String) throws {
        let site = try Site.make(folder: folder, configSource: configSource)
        let node = try site.startNode()
        defer { stopProcess(node) }
        _ = try waitUntilServing(site.peerEndpoint, tls: site.senderTLS, process: node)
        print("\nbacklog: \(options.backlog) signals to 1.Hoorn while its endpoint is down (connection refused), a fresh node:")
        print("  " + pad("backlog", 10, right: true) + pad("RSS MiB", 10, right: true) + pad("peak MiB", 10, right: true)
              + pad("journal MiB", 13, right: true) + pad("metric", 10, right: true) + pad("submitted/s", 13, right: true)
              + pad("CPU us/signal", 15, right: true))
        var cpu = cpuSeconds(node.processIdentifier)
        func report(_ submitted: Int, rate: Double?) throws {
            let cpuNow = cpuSeconds(node.processIdentifier)
            defer { cpu = cpuNow }
            let memory = residentMemory(of: node.processIdentifier) ?? (0, 0)
            print("  " + pad("\(submitted)", 10, right: true) + pad(String(format: "%.1f", Double(memory.now) / 1024), 10, right: true)
                  + pad(String(format: "%.1f", Double(memory.peak) / 1024), 10, right: true)
                  + pad(String(format: "%.1f", Double(directorySize(site.stateFolder + "/journal")) / 1_048_576), 13, right: true)
                  + pad(try site.backlogMetric().map(String.init) ?? "?", 10, right: true)
                  + pad(rate.map { String(format: "%.0f", $0) } ?? "", 13, right: true)
                  + pad(rate == nil ? "" : String(format: "%.0f", (cpuNow - cpu) * 1e6 / Double(options.backlog / 4)), 15, right: true))
        }
        try report(0, rate: nil)
        let part = options.backlog / 4
        for quarter in 1...4 {
            let submissions = Submissions(prefix: "backlog\(quarter)")
            let result = try closedLoop(threads: options.senders, seconds: 0, count: part, setup: {
                try HTTPClientConnection(to: site.peerEndpoint, tls: site.senderTLS)
            }) { connection, number in
                try submissions.send(number, on: connection, expecting: 202)
            }
            try report(part * quarter, rate: result.perSecond)
        }
        // The rows above catch the index's working set while signals keep coming; what stays
        // is measured once the backlog waits (the index drops its pages a second after the
        // last record).
        sleep(2)
        let waiting = residentMemory(of: node.processIdentifier) ?? (0, 0)
        print(String(format: "  waiting, 2 s after the last submission: RSS %.1f MiB", Double(waiting.now) / 1024))
        let started = monotonicNanoseconds()
        let recipient = try site.startRecipient()
        defer { stopProcess(recipient) }
        _ = try waitUntilServing(site.recipientEndpoint, tls: site.senderTLS, target: "/stats", process: recipient)
        let after = try site.waitForDeliveries(part * 4, timeout: 1_800)
        let memory = residentMemory(of: node.processIdentifier) ?? (0, 0)
        print(String(format: "  recipient back: all %d delivered %.1f s later (the node's back-off probe came after %.1f s; then %.0f signals/s); peak RSS %.1f MiB",
                     part * 4, Double(after.last - started) / 1e9, Double(after.first - started) / 1e9,
                     Double(part * 4) / max(0.001, Double(after.last - after.first) / 1e9), Double(memory.peak) / 1024))
    }

    /// Config/ of the checkout: from the working directory, else above the executable.
    private static func findConfig() throws -> String {
        var candidates = [FileManager.default.currentDirectoryPath]
        var url = benchExecutable().deletingLastPathComponent()
        while url.path != "/" {
            candidates.append(url.path)
            url = url.deletingLastPathComponent()
        }
        for base in candidates where FileManager.default.fileExists(atPath: base + "/Config/node.json") {
            return base + "/Config"
        }
        throw BenchError.setup("cannot find Config/node.json: run the benchmark from the repository's folder")
    }
}

/// Submission bodies: the same zorgsignaal each time under a fresh id; the body is
/// assembled from two fixed byte strings so that the generator spends next to nothing on it.
private struct Submissions: Sendable {
    let prefix: String
    private static let head = Array(#"{"id":""#.utf8)
    private static let tail = Array((#"","type":"zorgsignaal","to":["1hoorn"],"payload":{"Postcode":"1624KM","Huisnummer":12,"#
        + #""Huisnummertoevoeging":"a","Voorletters":"J.","Achternaam":"Voorbeeld","Geboortedatum":"1948-06-30","#
        + #""waarneming":"Post stapelt zich op, buren hebben de bewoner twee weken niet gezien.","urgentie":"hoog","#
        + #""gezondheidsobservatie":"Bewoner leek verward bij het laatste huisbezoek."}}"#).utf8)

    /// Submission `number`.
    func request(_ number: Int) -> HTTPRequest {
        let id = "\(prefix)-\(number)"
        return HTTPRequest(method: "POST", target: "/v1/signals",
                           headers: HTTPHeaders([("Content-Type", "application/json"), ("Waakvlam-Signal-Id", id)]),
                           body: Self.head + Array(id.utf8) + Self.tail)
    }

    /// What is wrong with the answer to a submission (nil: it has `status`).
    static func problem(with response: HTTPResponse, expecting status: Int) -> String? {
        guard response.status != status else { return nil }
        return "expected \(status), got \(response.status): \(String(decoding: response.body.prefix(300), as: UTF8.self))"
    }

    func send(_ number: Int, on connection: HTTPClientConnection, expecting status: Int) throws {
        guard connection.isReusable else { throw BenchError.load("the server closed a keep-alive connection") }
        let response = try connection.send(request(number))
        if let problem = Self.problem(with: response, expecting: status) { throw BenchError.load(problem) }
    }
}

/// One node's folder: a copy of Config/ with its own ports, PKI, state and recipient.
private struct Site {
    let folder: String
    let config: String
    let pki: String
    let stateFolder: String
    let peerPort: UInt16
    let adminPort: UInt16
    let recipientPort: UInt16
    let senderTLS: TLSContext
    let administratorTLS: TLSContext
    let statsClient: HTTPClient

    var peerEndpoint: Endpoint { Endpoint(host: "127.0.0.1", port: peerPort) }
    var recipientEndpoint: Endpoint { Endpoint(host: "127.0.0.1", port: recipientPort) }
    private func file(_ name: String) -> String { pki + "/" + name }

    /// Copies Config/ into `folder`, gives it free ports and a CRL, points 1.Hoorn's delivery
    /// to the recipient stand-in, and creates the development PKI with `waakvlam pki init`.
    static func make(folder: String, configSource: String) throws -> Site {
        let files = FileManager.default
        try files.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let config = folder + "/config"
        try files.copyItem(atPath: configSource, toPath: config)
        let peerPort = try freeLoopbackPort(), adminPort = try freeLoopbackPort(), recipientPort = try freeLoopbackPort()
        try edit(config + "/node.json", [
            ("\"127.0.0.1:8443\"", "\"127.0.0.1:\(peerPort)\""),
            ("\"127.0.0.1:9443\"", "\"127.0.0.1:\(adminPort)\""),
            ("crl: null,", "crl: \"../run/pki/crl.pem\","),
        ])
        try edit(config + "/organisations.json", [
            (#"id: "1hoorn",([^}]*?)delivery: \{ mode: "inbox" \}"#,
             #"id: "1hoorn",$1delivery: { mode: "push", endpoint: "https://127.0.0.1:\#(recipientPort)/waakvlam/signalen" }"#),
        ], regex: true)
        try runToCompletion(try siblingExecutable("waakvlam"), ["pki", "init", "--config", config])
        let pki = folder + "/run/pki"
        let senderTLS = try TLSContext(role: .client, certificateChain: pki + "/intermaris.crt",
                                       privateKey: pki + "/intermaris.key", trustedCAs: pki + "/ca.pem")
        return Site(folder: folder, config: config, pki: pki, stateFolder: folder + "/run/state",
                    peerPort: peerPort, adminPort: adminPort, recipientPort: recipientPort,
                    senderTLS: senderTLS,
                    administratorTLS: try TLSContext(role: .client, certificateChain: pki + "/gemeente-hoorn.crt",
                                                     privateKey: pki + "/gemeente-hoorn.key", trustedCAs: pki + "/ca.pem"),
                    statsClient: HTTPClient(tls: senderTLS))
    }

    /// Replaces each pattern exactly once (the copy of Config/ must still look as expected).
    private static func edit(_ path: String, _ replacements: [(String, String)], regex: Bool = false) throws {
        var text = try String(contentsOfFile: path, encoding: .utf8)
        for (pattern, replacement) in replacements {
            let expression = try NSRegularExpression(pattern: regex ? pattern : NSRegularExpression.escapedPattern(for: pattern))
            let range = NSRange(text.startIndex..., in: text)
            guard expression.numberOfMatches(in: text, range: range) == 1 else {
                throw BenchError.setup("\(path) no longer holds \(pattern) exactly once; adapt EndToEndBenchmark.swift to Config/")
            }
            text = expression.stringByReplacingMatches(in: text, range: range,
                                                       withTemplate: regex ? replacement : NSRegularExpression.escapedTemplate(for: replacement))
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    func startNode() throws -> Process {
        let daemon = try siblingExecutable("waakvlamd")
        try runToCompletion(daemon, ["--config", config, "--check"])
        return try startProcess(daemon, ["--config", config], log: folder + "/waakvlamd.log")
    }

    /// The recipient stand-in, as 1.Hoorn (its development certificate, which names 127.0.0.1).
    func startRecipient() throws -> Process {
        try startProcess(benchExecutable(), ["recipient", "--port", "\(recipientPort)", "--ca", file("ca.pem"),
                                             "--certificate", file("1hoorn.crt"), "--key", file("1hoorn.key")])
    }

    func waitUntilReady(node: Process, recipient: Process) throws {
        _ = try waitUntilServing(recipientEndpoint, tls: senderTLS, target: "/stats", process: recipient)
        let whoami = try waitUntilServing(peerEndpoint, tls: senderTLS, process: node)
        guard whoami.status == 200 else {
            throw BenchError.setup("waakvlamd answered whoami with \(whoami.status): \(String(decoding: whoami.body, as: UTF8.self))")
        }
    }

    var nginxTLS: Nginx.TLSFiles {
        Nginx.TLSFiles(certificate: file("node.crt"), key: file("node.key"), ca: file("ca.pem"), crl: file("crl.pem"))
    }

    /// Submissions go to the recipient as they are, over mutual TLS with the node's certificate.
    var nginxProxyLocation: String {
        """
                location = /v1/signals {
                    proxy_pass https://recipient/waakvlam/signalen;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_ssl_certificate \(file("node.crt"));
                    proxy_ssl_certificate_key \(file("node.key"));
                    proxy_ssl_trusted_certificate \(file("ca.pem"));
                    proxy_ssl_verify on;
                    proxy_ssl_name localhost;
                    proxy_ssl_protocols TLSv1.2 TLSv1.3;
                    proxy_ssl_session_reuse on;
                }
                location = / {
                    return 200 'nginx';
                }
        """
    }

    struct RecipientStats {
        let distinct: Int
        let requests: Int
        /// Monotonic nanoseconds of the first and the latest new signal id.
        let first: UInt64
        let last: UInt64
    }

    func recipientStats() throws -> RecipientStats {
        let response = try statsClient.send(HTTPRequest(method: "GET", target: "/stats"), to: recipientEndpoint)
        let parts = String(decoding: response.body, as: UTF8.self).split(separator: " ").compactMap { UInt64($0) }
        guard response.status == 200, parts.count == 4 else {
            throw BenchError.setup("the recipient stand-in answered /stats with \(response.status)")
        }
        return RecipientStats(distinct: Int(parts[0]), requests: Int(parts[1]), first: parts[2], last: parts[3])
    }

    /// Polls the recipient until it has `distinct` signals; throws after `timeout` seconds.
    func waitForDeliveries(_ distinct: Int, timeout: Double) throws -> RecipientStats {
        let end = Date(timeIntervalSinceNow: timeout)
        while true {
            let stats = try recipientStats()
            if stats.distinct >= distinct { return stats }
            if Date() > end {
                throw BenchError.load("only \(stats.distinct) of \(distinct) signals reached the recipient within \(Int(timeout)) s")
            }
            usleep(5_000)
        }
    }

    /// The node's `waakvlam_backlog` for 1.Hoorn, from /metrics on the admin listener.
    func backlogMetric() throws -> Int? {
        let client = HTTPClient(tls: administratorTLS)
        let response = try client.send(HTTPRequest(method: "GET", target: "/metrics"), to: Endpoint(host: "127.0.0.1", port: adminPort))
        let text = String(decoding: response.body, as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("waakvlam_backlog{recipient=\"1hoorn\"}") }) else {
            return response.status == 200 ? 0 : nil
        }
        return line.split(separator: " ").last.flatMap { Int($0) }
    }
}

/// Bytes in the files below a folder.
private func directorySize(_ path: String) -> Int {
    let files = FileManager.default
    guard let names = try? files.subpathsOfDirectory(atPath: path) else { return 0 }
    return names.reduce(0) { total, name in
        total + ((try? files.attributesOfItem(atPath: path + "/" + name)[.size] as? Int) ?? 0)
    }
}
