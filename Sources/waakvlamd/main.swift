import Foundation
import WaakvlamRelay
import WaakvlamSystem

// `waakvlamd --config DIR [--check]`: the daemon. SIGTERM/SIGINT shut down gracefully within
// a deadline; SIGHUP reloads the configuration (an invalid one is refused, the old stays).

let usage = """
usage: waakvlamd --config DIR [--check]

  --config DIR   the configuration folder (node.json, organisations.json, ...)
  --check        load the configuration and the TLS files, report, and exit
"""

/// How long in-flight requests get to finish after SIGTERM.
let shutdownGracePeriod: TimeInterval = 10

func fail(_ message: String, status: Int32 = 1) -> Never {
    Log.shared.flush()
    FileHandle.standardError.write(Data("waakvlamd: \(message)\n".utf8))
    exit(status)
}

var configFolder: String?
var checkOnly = false
var arguments = Array(CommandLine.arguments.dropFirst())
while !arguments.isEmpty {
    let argument = arguments.removeFirst()
    switch argument {
    case "--config":
        guard !arguments.isEmpty else { fail("--config needs a folder\n\(usage)", status: 2) }
        configFolder = arguments.removeFirst()
    case "--check": checkOnly = true
    case "--help", "-h":
        print(usage)
        exit(0)
    default: fail("unknown argument '\(argument)'\n\(usage)", status: 2)
    }
}
guard let configFolder else { fail("--config DIR is required\n\(usage)", status: 2) }

if checkOnly {
    do {
        print(try Node.check(configFolder: configFolder))
        exit(0)
    } catch {
        fail("\(error)")
    }
}
// A write beyond the file size limit (RLIMIT_FSIZE) must fail with EFBIG, which the journal
// reports and the node answers with 503, instead of killing the daemon with SIGXFSZ.
signal(SIGXFSZ, SIG_IGN)
let node: Node
do {
    node = try Node(configFolder: configFolder)
} catch {
    fail("\(error)")
}
do {
    try node.start()
} catch {
    fail("\(error)")
}

// Signals are delivered to dispatch sources instead of async handlers.
let signalQueue = DispatchQueue(label: "waakvlamd.signals")
var signalSources: [DispatchSourceSignal] = []
for signalNumber in [SIGTERM, SIGINT] {
    signal(signalNumber, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: signalQueue)
    source.setEventHandler {
        Log.shared.info("shutdown_requested", ["signal": signalNumber == SIGTERM ? "SIGTERM" : "SIGINT",
                                               "grace_seconds": shutdownGracePeriod])
        let result = node.shutdown(gracePeriod: shutdownGracePeriod)
        exit(result.completedInTime ? 0 : 1)
    }
    source.resume()
    signalSources.append(source)
}
signal(SIGHUP, SIG_IGN)
let reloadSource = DispatchSource.makeSignalSource(signal: SIGHUP, queue: signalQueue)
reloadSource.setEventHandler {
    // Applies or refuses as a whole; Node logs config_applied or config_apply_refused.
    _ = node.applyConfiguration(appliedBy: "SIGHUP")
}
reloadSource.resume()
dispatchMain()
