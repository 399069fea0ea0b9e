import Foundation
import WaakvlamCore
import WaakvlamRelay
import WaakvlamSystem

// `waakvlam-bench ledger`: the time `waakvlam send --csv` takes for a rent ledger of N rows
// (default 10,000) over the three gemeenten of the West-Friesland example, against a
// `waakvlamd` in its own process, the way a corporation runs it: the first run (every row
// checked, decided, journaled) and a second run of the same file (every row answered as
// sent before). Each round starts from an empty node; medians are printed, with the CPU time
// per row of the client and of the node (which a busy machine does not inflate as it does
// the wall time).

private let ledgerUsage = """
usage: waakvlam-bench ledger [--rows N] [--runs N] [--concurrency N] [--example DIR]

  --rows N         rows in the generated ledger (default 10000)
  --runs N         rounds, each with a new node; medians are reported (default 3)
  --concurrency N  connections of waakvlam send (default 8)
  --example DIR    the West-Friesland example (default Config/examples/westfriesland)
Needs waakvlam and waakvlamd built beside waakvlam-bench (swift build -c release).
"""

func runLedgerBenchmark(_ arguments: [String]) -> Int32 {
    var rows = 10_000, runs = 3, concurrency = 8
    var example = "Config/examples/westfriesland"
    var rest = arguments
    while !rest.isEmpty {
        let option = rest.removeFirst()
        guard let value = rest.first else {
            print(ledgerUsage)
            return 2
        }
        rest.removeFirst()
        switch (option, Int(value)) {
        case ("--rows", let number?) where number > 0: rows = number
        case ("--runs", let number?) where number > 0: runs = number
        case ("--concurrency", let number?) where number > 0: concurrency = number
        case ("--example", _): example = value
        default:
            print(ledgerUsage)
            return 2
        }
    }
    let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.deletingLastPathComponent()
    var first: [LedgerRun] = [], second: [LedgerRun] = []
    do {
        for round in 1...runs {
            let (one, two) = try LedgerRound(rows: rows, concurrency: concurrency, example: example, binaries: binaries).run()
            print("round \(round): first run \(one.text(rows: rows)); second run \(two.text(rows: rows))")
            first.append(one)
            second.append(two)
        }
    } catch {
        print("ledger benchmark failed: \(error)")
        return 1
    }
    func median(_ runs: [LedgerRun]) -> LedgerRun {
        func middle(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        return LedgerRun(seconds: middle(runs.map(\.seconds)), clientCPU: middle(runs.map(\.clientCPU)), nodeCPU: middle(runs.map(\.nodeCPU)))
    }
    print("median of \(runs), \(rows) rows, concurrency \(concurrency):")
    print("  first run (sent):         \(median(first).text(rows: rows))")
    print("  second run (sent before): \(median(second).text(rows: rows))")
    return 0
}

/// One `waakvlam send` of the ledger: wall time and the CPU seconds of both processes.
private struct LedgerRun {
    var seconds: Double
    var clientCPU: Double
    var nodeCPU: Double

    func text(rows: Int) -> String {
        String(format: "%.2f s (%.0f rows/s), CPU per row: client %.0f µs, node %.0f µs",
               seconds, Double(rows) / seconds, clientCPU / Double(rows) * 1e6, nodeCPU / Double(rows) * 1e6)
    }
}

private struct BenchmarkFailure: Error, CustomStringConvertible {
    let description: String
}

/// One round: a fresh node with the example configuration and a development PKI, a generated
/// ledger, and `waakvlam send` run twice on it.
private struct LedgerRound {
    let rows: Int
    let concurrency: Int
    let example: String
    let binaries: URL

    func run() throws -> (LedgerRun, LedgerRun) {
        let root = NSTemporaryDirectory() + "waakvlam-bench-ledger-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let config = root + "/Config"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: example, toPath: config)
        let port = try freeLoopbackPort()
        try """
        {
          node: { name: "waakvlam-bench", operator: "gemeente-hoorn" },
          listen: { peer: "127.0.0.1:\(port)", admin: "127.0.0.1:\(try freeLoopbackPort())" },
          tls: { ca: "../pki/ca.pem", certificate: "../pki/node.crt", key: "../pki/node.key", crl: null, pins: "../pki/pins.json" },
          state: "../state",
          timeZone: "Europe/Amsterdam",
        }
        """.write(toFile: config + "/node.json", atomically: true, encoding: .utf8)
        // Every gemeente reads its inbox, so that the figure is the sending alone.
        let organisations = try String(contentsOfFile: config + "/organisations.json")
            .split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.contains("mode: \"push\"") }.joined(separator: "\n")
        try organisations.write(toFile: config + "/organisations.json", atomically: true, encoding: .utf8)
        let pki = try execute("waakvlam", ["pki", "init", "--config", config, "--out", root + "/pki"])
        guard pki.status == 0 else { throw BenchmarkFailure(description: "pki init failed: \(pki.output)") }
        try "{ node: \"https://127.0.0.1:\(port)\", cert: \"pki/intermaris.crt\", key: \"pki/intermaris.key\", ca: \"pki/ca.pem\" }"
            .write(toFile: root + "/client.json", atomically: true, encoding: .utf8)
        try sampleLedger().write(toFile: root + "/ledger.csv", atomically: true, encoding: .utf8)

        let daemon = Process()
        daemon.executableURL = binaries.appendingPathComponent("waakvlamd")
        daemon.arguments = ["--config", config]
        _ = FileManager.default.createFile(atPath: root + "/waakvlamd.log", contents: nil)
        daemon.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: root + "/waakvlamd.log"))
        daemon.standardOutput = FileHandle.nullDevice
        try daemon.run()
        defer {
            daemon.terminate()
            daemon.waitUntilExit()
        }
        // Ready when it recognises the corporation.
        let client = try SignalClient(settings: try ClientSettings.load(file: root + "/client.json"), retryDelays: [])
        let ready = Date(timeIntervalSinceNow: 20)
        while (try? client.whoami()) == nil {
            guard daemon.isRunning, Date() < ready else { throw BenchmarkFailure(description: "waakvlamd did not start; see its log") }
            usleep(50_000)
        }
        let send = ["send", "--client-config", root + "/client.json", "--csv", root + "/ledger.csv", "--report", "/dev/null",
                    "--quiet", "--concurrency", String(concurrency)]
        var measured: [LedgerRun] = []
        for _ in 0..<2 {
            let start = Date(), clientBefore = childrenCPU(), nodeBefore = try processCPU(daemon.processIdentifier)
            let result = try execute("waakvlam", send)
            measured.append(LedgerRun(seconds: Date().timeIntervalSince(start), clientCPU: childrenCPU() - clientBefore,
                                      nodeCPU: try processCPU(daemon.processIdentifier) - nodeBefore))
            // Exit 1: some rows are refused, as intended.
            guard result.status == 1, result.output.contains("\(rows) rows in") else {
                throw BenchmarkFailure(description: "waakvlam send: exit \(result.status): \(result.output)")
            }
        }
        return (measured[0], measured[1])
    }

    /// A ledger like a corporation's daily export: mostly alerts for the three gemeenten, some
    /// below the threshold, some outside every area, some with a malformed cell.
    private func sampleLedger() -> String {
        let today = LocalDate(Date(), in: TimeZone(identifier: "Europe/Amsterdam")!)
        let areas = [1620, 1631, 1671]
        var lines = ["Huurdernummer;Voorletters;Achternaam;Straat;Huisnummer;Postcode;Woonplaats;Telefoon;Achterstand;Achterstand sinds;"
            + "Persoonlijk contact geprobeerd;Gewezen op schuldhulp;Herinnering verstuurd;Datum herinnering;Aanbod gegevens doorgeven;Bezwaar"]
        for index in 0..<rows {
            let kind = index % 20
            let age = kind == 0 || kind == 1 ? 10 : 90 + index % 100
            let start = LocalDate(dayNumber: today.dayNumber - age)
            let postcode = kind == 2 ? "9711AB" : "\(areas[index % 3] + index % 5)AB"
            let amount = kind == 3 ? "12,50" : "\(100 + index % 2000).\(10 + index % 90)"
            lines.append("B-\(index);J.;Huurder\(index);Straat;\(1 + index % 300);\(postcode);Plaats;06-12345678;\(amount);\(start);"
                + "ja;ja;ja;\(LocalDate(dayNumber: start.dayNumber + age / 2));ja;nee")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// User and system CPU seconds of the children waited for so far.
    private func childrenCPU() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// User and system CPU seconds of a running process (Linux: /proc/PID/stat).
    private func processCPU(_ pid: Int32) throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // The fields after the command name (which is in parentheses and may hold spaces).
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
            throw BenchmarkFailure(description: "cannot read the CPU time of process \(pid)")
        }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    private func execute(_ name: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = binaries.appendingPathComponent(name)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

}
