import Foundation
import WaakvlamRelay
import WaakvlamSystem
import WaakvlamTransport

// `waakvlam-bench transport`: waakvlamd's peer listener against nginx with the same mutual TLS
// (same certificates, CA, CRL, protocol versions, suites and groups, no session resumption),
// side by side on this machine, measured by the same load generator (the project's own
// client, one thread per connection). Prints full handshakes/s and keep-alive requests/s for
// GET /v1/whoami with 1 and 64 connections, the medians of the runs, and the ratios.

private let transportUsage = """
usage: waakvlam-bench transport [--runs N] [--seconds S] [--handshake-threads N]

  --runs N               measurement rounds; medians are reported (default 3)
  --seconds S            length of each measurement (default 5; plus 1 s warm-up)
  --handshake-threads N  concurrent clients for the handshake measurement (default 8)
"""

private let organisationOIN = "00000099000000770000"

func runTransportBenchmark(_ arguments: [String]) -> Int32 {
    // Internal: the bench starts the node in a child process of its own (`--serve DIR`), so
    // that server and load generator are separate processes, as with nginx.
    if arguments.first == "--serve", arguments.count == 2 {
        return serveNode(configFolder: arguments[1])
    }
    var runs = 3
    var seconds = 5.0
    var handshakeThreads = 8
    var rest = arguments
    while !rest.isEmpty {
        let option = rest.removeFirst()
        guard let value = rest.first.flatMap(Double.init), value > 0 else {
            print(transportUsage)
            return 2
        }
        rest.removeFirst()
        switch option {
        case "--runs": runs = Int(value)
        case "--seconds": seconds = value
        case "--handshake-threads": handshakeThreads = Int(value)
        default:
            print(transportUsage)
            return 2
        }
    }
    do {
        try TransportBenchmark(runs: runs, seconds: seconds, handshakeThreads: handshakeThreads).run()
        return 0
    } catch {
        print("transport benchmark failed: \(error)")
        return 1
    }
}

/// The node of `waakvlamd` (whoami with identity checks) until SIGTERM.
private func serveNode(configFolder: String) -> Int32 {
    Log.shared.minimumLevel = .warning
    do {
        let node = try Node(configFolder: configFolder)
        try node.start()
        signal(SIGTERM, SIG_IGN)
        let stop = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        stop.setEventHandler {
            node.shutdown(gracePeriod: 2)
            exit(0)
        }
        stop.resume()
        dispatchMain()
    } catch {
        print("cannot start the node: \(error)")
        return 1
    }
}

private struct TransportBenchmark {
    let runs: Int
    let seconds: Double
    let handshakeThreads: Int

    private enum Measure: String, CaseIterable {
        case handshakes = "full handshakes/s (each + 1 request)"
        case keepAlive1 = "keep-alive requests/s, 1 connection"
        case keepAlive64 = "keep-alive requests/s, 64 connections"
    }

    func run() throws {
        let folder = NSTemporaryDirectory() + "waakvlam-bench-transport-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder + "/pki", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let pki = try makePKI(folder + "/pki")

        let nodePort = try freePort(), nginxPort = try freePort()
        let node = try startNode(folder: folder, pki: pki, port: nodePort)
        defer { stop(node) }
        let client = try TLSContext(role: .client, certificateChain: pki.clientCertificate, privateKey: pki.clientKey, trustedCAs: pki.ca)
        let nodeEndpoint = Endpoint(host: "127.0.0.1", port: nodePort)
        let whoami = try waitUntilServing(nodeEndpoint, tls: client)
        guard whoami.status == 200 else { throw TransportError.io("the node answered whoami with \(whoami.status)") }

        // nginx returns the node's whoami body as a fixed response.
        let nginx = try startNginx(folder: folder + "/nginx", pki: pki, port: nginxPort, body: whoami.body)
        defer { stop(nginx) }
        let nginxEndpoint = Endpoint(host: "127.0.0.1", port: nginxPort)
        let nginxWhoami = try waitUntilServing(nginxEndpoint, tls: client)
        guard nginxWhoami.status == 200, nginxWhoami.body == whoami.body else {
            throw TransportError.io("nginx answered whoami with \(nginxWhoami.status)")
        }

        print("""
        transport benchmark: GET /v1/whoami over mutual TLS (TLS 1.3, X25519, ECDSA P-256 certificates,
        CRL checked, no session resumption), \(ProcessInfo.processInfo.activeProcessorCount) cores shared by server and load generator;
        load generator: the project's client, one thread per connection; \(seconds) s per figure after 1 s warm-up;
        handshakes with \(handshakeThreads) concurrent clients; waakvlamd's node with identity checks vs nginx \(nginxVersion())
        with a fixed body of the same \(whoami.body.count) bytes, both on this machine, measured alternately.
        """)
        var rates: [String: [Measure: [Double]]] = ["waakvlamd": [:], "nginx": [:]]
        var costs: [String: [Measure: [Double]]] = ["waakvlamd": [:], "nginx": [:]]
        let servers = [("waakvlamd", nodeEndpoint, node.processIdentifier), ("nginx", nginxEndpoint, nginx.processIdentifier)]
        for round in 1...runs {
            for (name, endpoint, pid) in servers {
                for measure in Measure.allCases {
                    let (rate, cost) = try self.measure(measure, endpoint: endpoint, tls: client, serverProcess: pid)
                    rates[name]![measure, default: []].append(rate)
                    costs[name]![measure, default: []].append(cost)
                    print("  run \(round)  " + pad(name, 10) + pad(measure.rawValue, 40) + pad(String(format: "%.0f", rate), 10, right: true)
                          + pad(String(format: "%.1f", cost), 10, right: true) + " µs server CPU each")
                }
            }
        }
        print("\nmedians of \(runs) run\(runs == 1 ? "" : "s") (throughput; server CPU time per operation, lower is better):")
        print("  " + pad("", 40) + pad("waakvlamd", 11, right: true) + pad("nginx", 11, right: true) + pad("ratio", 7, right: true)
              + pad("µs waakvlamd", 14, right: true) + pad("µs nginx", 10, right: true))
        for measure in Measure.allCases {
            let ours = median(rates["waakvlamd"]![measure]!), theirs = median(rates["nginx"]![measure]!)
            print("  " + pad(measure.rawValue, 40) + pad(String(format: "%.0f", ours), 11, right: true)
                  + pad(String(format: "%.0f", theirs), 11, right: true) + pad(String(format: "%.2f", ours / theirs), 7, right: true)
                  + pad(String(format: "%.1f", median(costs["waakvlamd"]![measure]!)), 14, right: true)
                  + pad(String(format: "%.1f", median(costs["nginx"]![measure]!)), 10, right: true))
        }
    }

    // MARK: Measuring

    /// Operations per second, and the CPU time the server process (with its children: nginx's
    /// workers) spent per operation, in microseconds.
    private func measure(_ measure: Measure, endpoint: Endpoint, tls: TLSContext, serverProcess: Int32) throws -> (Double, Double) {
        var request = HTTPRequest(method: "GET", target: "/v1/whoami")
        switch measure {
        case .handshakes:
            request.keepAlive = false
            return try load(threads: handshakeThreads, serverProcess: serverProcess) {
                let connection = try HTTPClientConnection(to: endpoint, tls: tls)
                defer { connection.close() }
                guard try connection.send(request).status == 200 else { throw TransportError.io("not 200") }
            }
        case .keepAlive1, .keepAlive64:
            let threads = measure == .keepAlive1 ? 1 : 64
            return try load(threads: threads, serverProcess: serverProcess, setup: { try HTTPClientConnection(to: endpoint, tls: tls) }) { connection in
                guard try connection.send(request).status == 200 else { throw TransportError.io("not 200") }
            }
        }
    }

    private func load(threads: Int, serverProcess: Int32, _ operation: @escaping () throws -> Void) throws -> (Double, Double) {
        try load(threads: threads, serverProcess: serverProcess, setup: { () }) { _ in try operation() }
    }

    /// Runs `operation` in a loop on `threads` threads (each with its own `setup` state) and
    /// returns the completed operations per second after a warm-up second, and the server's
    /// CPU microseconds per operation.
    private func load<State>(threads: Int, serverProcess: Int32, setup: @escaping () throws -> State,
                             _ operation: @escaping (State) throws -> Void) throws -> (Double, Double) {
        let counters = (0..<threads).map { _ in Counter() }
        let stop = Flag()
        let finished = DispatchGroup()
        for counter in counters {
            finished.enter()
            try spawnDetachedThread(stackSize: 512 << 10) {
                defer { finished.leave() }
                do {
                    let state = try setup()
                    while !stop.isSet {
                        try operation(state)
                        counter.add()
                    }
                } catch {
                    counter.fail("\(error)")
                }
            }
        }
        usleep(1_000_000)
        let start = monotonicNanoseconds()
        let cpuBefore = processTreeCPUSeconds(serverProcess)
        let before = counters.map(\.value)
        usleep(UInt32(seconds * 1_000_000))
        let after = counters.map(\.value)
        let cpu = processTreeCPUSeconds(serverProcess) - cpuBefore
        let elapsed = Double(monotonicNanoseconds() - start) / 1e9
        stop.set()
        finished.wait()
        if let failure = counters.compactMap(\.failure).first {
            throw TransportError.io("load generator: \(failure)")
        }
        let operations = Double(zip(after, before).map { $0 - $1 }.reduce(0, +))
        return (operations / elapsed, operations > 0 ? cpu / operations * 1e6 : 0)
    }

    // MARK: Servers

    private struct PKIFiles {
        let ca: String, crl: String, serverCertificate: String, serverKey: String, clientCertificate: String, clientKey: String
        let clientPin: String
    }

    private func makePKI(_ folder: String) throws -> PKIFiles {
        func path(_ name: String) -> String { folder + "/" + name }
        let ca = try DevelopmentCA.create(organisation: "Waakvlam benchmark CA", commonName: "Waakvlam benchmark CA")
        try PEMFile.write(ca.certificatePEM, to: path("ca.pem"), secret: false)
        try PEMFile.write(try ca.revocationList(revoking: []), to: path("crl.pem"), secret: false)
        try ca.issue(CertificateSpec(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: .server))
            .write(certificateTo: path("server.crt"), keyTo: path("server.key"))
        let client = try ca.issue(CertificateSpec(commonName: "bench client", organisation: "Gemeente Benchmark", subjectSerialNumber: organisationOIN))
        try client.write(certificateTo: path("client.crt"), keyTo: path("client.key"))
        return PKIFiles(ca: path("ca.pem"), crl: path("crl.pem"), serverCertificate: path("server.crt"), serverKey: path("server.key"),
                        clientCertificate: path("client.crt"), clientKey: path("client.key"), clientPin: client.publicKeyPin)
    }

    private func startNode(folder: String, pki: PKIFiles, port: UInt16) throws -> Process {
        let config = folder + "/config"
        try FileManager.default.createDirectory(atPath: config, withIntermediateDirectories: true)
        let node = """
        {
          node: { name: "bench", operator: "bench" },
          listen: { peer: "127.0.0.1:\(port)", admin: "127.0.0.1:\(try freePort())" },
          tls: { ca: "\(pki.ca)", certificate: "\(pki.serverCertificate)", key: "\(pki.serverKey)", crl: "\(pki.crl)", pins: null },
          state: "\(folder)/state",
          limits: { maximumBodyBytes: 1048576, maximumHeaderBytes: 16384, maximumHeaderCount: 64, maximumConnections: 1024 },
        }
        """
        let organisations = """
        [{ id: "bench", oin: "\(organisationOIN)", name: "Gemeente Benchmark", sector: "gemeente", pins: ["\(pki.clientPin)"], delivery: { mode: "inbox" } }]
        """
        try node.write(toFile: config + "/node.json", atomically: true, encoding: .utf8)
        try organisations.write(toFile: config + "/organisations.json", atomically: true, encoding: .utf8)
        try "[]".write(toFile: config + "/signal-types.json", atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        if !CommandLine.arguments[0].contains("/") {
            process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        }
        process.arguments = ["transport", "--serve", config]
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    private func startNginx(folder: String, pki: PKIFiles, port: UInt16, body: [UInt8]) throws -> Process {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let escaped = String(decoding: body, as: UTF8.self).replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")
        let conf = """
        worker_processes auto;
        pid \(folder)/nginx.pid;
        error_log \(folder)/error.log warn;
        events { worker_connections 4096; }
        http {
            access_log off;
            client_body_temp_path \(folder)/body;
            proxy_temp_path \(folder)/proxy;
            fastcgi_temp_path \(folder)/fastcgi;
            uwsgi_temp_path \(folder)/uwsgi;
            scgi_temp_path \(folder)/scgi;
            keepalive_requests 10000000;
            keepalive_timeout 60s;
            server {
                listen 127.0.0.1:\(port) ssl;
                ssl_certificate \(pki.serverCertificate);
                ssl_certificate_key \(pki.serverKey);
                ssl_client_certificate \(pki.ca);
                ssl_verify_client on;
                ssl_crl \(pki.crl);
                ssl_protocols TLSv1.2 TLSv1.3;
                ssl_ciphers ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256;
                ssl_prefer_server_ciphers on;
                ssl_ecdh_curve X25519:prime256v1:secp384r1;
                ssl_session_cache off;
                ssl_session_tickets off;
                location = /v1/whoami {
                    default_type application/json;
                    return 200 '\(escaped)';
                }
            }
        }
        """
        try conf.write(toFile: folder + "/nginx.conf", atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
        process.arguments = ["-p", folder, "-c", folder + "/nginx.conf", "-g", "daemon off;"]
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    private func nginxVersion() -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
        process.arguments = ["-v"]
        let pipe = Pipe()
        process.standardError = pipe
        try? process.run()
        process.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return text.components(separatedBy: "/").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    }

    private func waitUntilServing(_ endpoint: Endpoint, tls: TLSContext) throws -> HTTPResponse {
        let client = HTTPClient(tls: tls)
        let end = Date(timeIntervalSinceNow: 10)
        while true {
            do {
                return try client.send(HTTPRequest(method: "GET", target: "/v1/whoami"), to: endpoint)
            } catch {
                if Date() > end { throw error }
                usleep(50_000)
            }
        }
    }

    private func stop(_ process: Process) {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    private var error: String?

    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }

    var failure: String? {
        lock.lock()
        defer { lock.unlock() }
        return error
    }

    func add() {
        lock.lock()
        count += 1
        lock.unlock()
    }

    func fail(_ message: String) {
        lock.lock()
        error = message
        lock.unlock()
    }
}

private final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    func set() {
        lock.lock()
        value = true
        lock.unlock()
    }
}

/// `text` padded with spaces to `width` (String(format:) ignores widths for %@ on Linux).
private func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - text.count))
    return right ? fill + text : text + fill
}

private func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// User plus system CPU seconds of a process and its direct children, from /proc.
private func processTreeCPUSeconds(_ pid: Int32) -> Double {
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    var total = 0.0
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    for entry in entries where entry.allSatisfy(\.isNumber) {
        guard let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { continue }
        // After "pid (name)": state ppid ... utime (14th field) stime (15th).
        let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        guard fields.count > 12, let parent = Int32(fields[1]) else { continue }
        if Int32(entry) == pid || parent == pid {
            total += (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
        }
    }
    return total / ticks
}

/// A TCP port that is free right now (bound to port 0, then released).
private func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
            guard bind(fd, pointer, length) == 0 else { return -1 }
            return getsockname(fd, pointer, &length)
        }
    }
    guard bound == 0 else { throw TransportError.bind(address: "127.0.0.1:0", reason: String(cString: strerror(errno))) }
    return UInt16(bigEndian: address.sin_port)
}
