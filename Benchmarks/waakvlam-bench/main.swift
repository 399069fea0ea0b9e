import Foundation

// `waakvlam-bench`: benchmarks that print figures (never pass/fail). Each benchmark lives in
// its own file; this file only dispatches.

let usage = """
usage: waakvlam-bench <benchmark> [options]

benchmarks:
  journal      durable appends/s and ack latency for 1, 8, 64 writers vs raw fdatasync; recovery time
  transport    handshakes/s and keep-alive whoami requests/s vs nginx with the same mutual TLS
  policy       policy decisions and submission bodies parsed per CPU-second on one core
  ledger       seconds for `waakvlam send --csv` of a 10,000-row rent ledger, first run and re-run
"""

let arguments = Array(CommandLine.arguments.dropFirst())
guard let name = arguments.first else {
    print(usage)
    exit(2)
}
let rest = Array(arguments.dropFirst())
switch name {
case "journal": exit(runJournalBenchmark(rest))
case "transport": exit(runTransportBenchmark(rest))
case "policy": exit(runPolicyBenchmark(rest))
case "ledger": exit(runLedgerBenchmark(rest))
default:
    print(usage)
    exit(2)
}
