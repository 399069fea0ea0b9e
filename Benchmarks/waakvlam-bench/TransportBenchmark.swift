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

        let nodePort = try freeLoopbackPort(), nginxPort = try freeLoopbackPort()
        let node = try startNode(folder: folder, pki: pki, port: nodePort)
        defer { stopProcess(node) }
        let client = try TLSContext(role: .client, certificateChain: pki.clientCertificate, privateKey: pki.clientKey, trustedCAs: pki.ca)
        let nodeEndpoint = Endpoint(host: "127.0.0.1", port: nodePort)
        let whoami = try waitUntilServing(nodeEndpoint, tls: client)
        guard whoami.status == 200 else { throw TransportError.io("the node answered whoami with \(whoami.status)") }

        // nginx returns the node's whoami body as a fixed response.
        let nginx = try startNginx(folder: folder + "/nginx", pki: pki, port: nginxPort, body: whoami.body)
        defer { stopProcess(nginx) }
        let nginxEndpoint = Endpoint(host: "127.0.0.1", port: nginxPort)
        let nginxWhoami = try waitUntilServing(nginxEndpoint, tls: client)
        guard nginxWhoami.status == 200, nginxWhoami.body == whoami.body else {
            throw TransportError.io("nginx answered whoami with \(nginxWhoami.status)")
        }

        print("""
        transport benchmark: GET /v1/whoami over mutual TLS (TLS 1.3, X25519, ECDSA P-256 certificates,
        CRL checked, no session resumption), \(ProcessInfo.processInfo.activeProcessorCount) cores shared by server and load generator;
        load generator: the project's client, one thread per connection; \(seconds) s per figure after 1 s warm-up;
        handshakes with \(handshakeThreads) concurrent clients; waakvlamd's node with identity checks vs nginx \(Nginx.version)
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
            return try figures(closedLoop(threads: handshakeThreads, warmUp: 1, seconds: seconds, cpuOf: serverProcess, setup: {}) { _, _ in
                let connection = try HTTPClientConnection(to: endpoint, tls: tls)
                defer { connection.close() }
                guard try connection.send(request).status == 200 else { throw TransportError.io("not 200") }
            })
        case .keepAlive1, .keepAlive64:
            let threads = measure == .keepAlive1 ? 1 : 64
            return try figures(closedLoop(threads: threads, warmUp: 1, seconds: seconds, cpuOf: serverProcess,
                                          setup: { try HTTPClientConnection(to: endpoint, tls: tls) }) { connection, _ in
                guard try connection.send(request).status == 200 else { throw TransportError.io("not 200") }
            })
        }
    }

    /// Operations per second and server CPU microseconds per operation.
    private func figures(_ result: ClosedLoopResult) -> (Double, Double) {
        let operations = result.perSecond * Double(result.windowEnd - result.windowStart) / 1e9
        return (result.perSecond, operations > 0 ? result.cpuSeconds / operations * 1e6 : 0)
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
          listen: { peer: "127.0.0.1:\(port)", admin: "127.0.0.1:\(try freeLoopbackPort())" },
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
        return try startProcess(benchExecutable(), ["transport", "--serve", config])
    }

    private func startNginx(folder: String, pki: PKIFiles, port: UInt16, body: [UInt8]) throws -> Process {
        let escaped = String(decoding: body, as: UTF8.self).replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")
        let tls = Nginx.TLSFiles(certificate: pki.serverCertificate, key: pki.serverKey, ca: pki.ca, crl: pki.crl)
        return try Nginx.start(folder: folder, port: port, tls: tls, server: """
                location = /v1/whoami {
                    default_type application/json;
                    return 200 '\(escaped)';
                }
        """)
    }
}
