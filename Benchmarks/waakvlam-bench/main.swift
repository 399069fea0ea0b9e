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
  e2e          signals/s end to end and ack latency through waakvlamd vs nginx as a mutual-TLS proxy;
               daemon RSS, also with a 100,000-signal backlog (see docs/BENCHMARKS.md)
  recipient    (started by e2e) the push recipient stand-in: answers 200, counts signal ids
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
case "e2e": exit(runEndToEndBenchmark(rest))
case "recipient": exit(runRecipientStandIn(rest))
default:
    print(usage)
    exit(2)
}
