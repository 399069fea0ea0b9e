import Foundation
import WaakvlamCore
import WaakvlamRelay
import WaakvlamSystem

// `waakvlam-bench ledger`: the time `waakvlam send --csv` takes for a rent ledger of N rows
// (default 10,000) over the three gemeenten of the West-Friesland example, against a
// `waakvlamd` in its own process, the way a corporation runs it: the first run (every row
// checked, decided, journaled) and a second run of the same file (every row answered as
// sent before). Each round starts from an empty node; medians are printed.

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
    var first: [Double] = [], second: [Double] = []
    do {
        for round in 1...runs {
            let times = try LedgerRound(rows: rows, concurrency: concurrency, example: example, binaries: binaries).run()
            print(String(format: "round %d: first run %.2f s (%.0f rows/s), second run %.2f s (%.0f rows/s)",
                         round, times.first, Double(rows) / times.first, times.second, Double(rows) / times.second))
            first.append(times.first)
            second.append(times.second)
        }
    } catch {
        print("ledger benchmark failed: \(error)")
        return 1
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    print(String(format: "median of %d: %d rows sent in %.2f s (%.0f rows/s); sent again in %.2f s (%.0f rows/s); concurrency %d",
                 runs, rows, median(first), Double(rows) / median(first), median(second), Double(rows) / median(second), concurrency))
    return 0
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

    func run() throws -> (first: Double, second: Double) {
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
        var times: [Double] = []
        for _ in 0..<2 {
            let start = Date()
            let result = try execute("waakvlam", send)
            times.append(Date().timeIntervalSince(start))
            // Exit 1: some rows are refused, as intended.
            guard result.status == 1, result.output.contains("\(rows) rows in") else {
                throw BenchmarkFailure(description: "waakvlam send: exit \(result.status): \(result.output)")
            }
        }
        return (times[0], times[1])
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
