import Foundation
import WaakvlamSystem
import WaakvlamTransport

// What the transport and end-to-end benchmarks share: the load generator (closed and open
// loop), child processes (this executable in a child mode, waakvlamd, nginx), reading a
// process's memory, and small statistics and formatting helpers.

// MARK: - Load generation

/// What a closed-loop load run did.
struct ClosedLoopResult {
    /// Operations completed inside the measured window, per second.
    let perSecond: Double
    /// Operations completed in total, including those that finished after the window.
    let total: Int
    /// Monotonic nanoseconds at the start and end of the measured window.
    let windowStart: UInt64
    let windowEnd: UInt64
    /// CPU seconds the `cpuOf` process (with its children) used in the window.
    let cpuSeconds: Double
}

/// Runs `operation` in a loop on `threads` threads, each with its own `setup` state (made
/// before the clock starts), for `warmUp` seconds and then a measured window of `seconds`;
/// or, with `count`, until `count` operations were started in total (then `seconds` is
/// ignored and the window is the whole run). The threads are plain POSIX threads with a
/// small stack; the per-operation bookkeeping is one uncontended lock.
func closedLoop<State>(threads: Int, warmUp: Double = 0, seconds: Double, count: Int? = nil, cpuOf process: Int32? = nil,
                       setup: @escaping () throws -> State, _ operation: @escaping (State, Int) throws -> Void) throws -> ClosedLoopResult {
    let counters = (0..<threads).map { _ in Counter() }
    let stop = Flag()
    let gate = Gate()
    let tickets = Counter()
    let ready = DispatchGroup()
    let finished = DispatchGroup()
    for (index, counter) in counters.enumerated() {
        ready.enter()
        finished.enter()
        try spawnDetachedThread(stackSize: 512 << 10) {
            defer { finished.leave() }
            let state: State
            do {
                state = try setup()
            } catch {
                counter.fail("\(error)")
                ready.leave()
                return
            }
            ready.leave()
            gate.wait()
            do {
                var sequence = 0
                while !stop.isSet {
                    if let count, tickets.add() > count { break }
                    try operation(state, index * 1_000_000_000 + sequence)
                    sequence += 1
                    counter.add()
                }
            } catch {
                counter.fail("\(error)")
                stop.set()
            }
        }
    }
    ready.wait()
    if let failure = counters.compactMap(\.failure).first {
        stop.set()
        gate.open()
        finished.wait()
        throw BenchError.load(failure)
    }
    gate.open()
    if warmUp > 0 { usleep(UInt32(warmUp * 1_000_000)) }
    let start = monotonicNanoseconds()
    let cpuBefore = process.map { cpuSeconds($0, children: true) } ?? 0
    let before = counters.map(\.value)
    var after: [Int] = []
    var end: UInt64 = 0
    var cpuAfter = 0.0
    if count == nil {
        usleep(UInt32(seconds * 1_000_000))
        after = counters.map(\.value)
        end = monotonicNanoseconds()
        cpuAfter = process.map { cpuSeconds($0, children: true) } ?? 0
        stop.set()
    }
    finished.wait()
    if count != nil {
        after = counters.map(\.value)
        end = monotonicNanoseconds()
        cpuAfter = process.map { cpuSeconds($0, children: true) } ?? 0
    }
    if let failure = counters.compactMap(\.failure).first {
        throw BenchError.load(failure)
    }
    let done = zip(after, before).map { $0 - $1 }.reduce(0, +)
    return ClosedLoopResult(perSecond: Double(done) / (Double(end - start) / 1e9),
                            total: counters.map(\.value).reduce(0, +), windowStart: start, windowEnd: end,
                            cpuSeconds: cpuAfter - cpuBefore)
}

/// Closed-loop load from event loops instead of a thread per connection: `connections`
/// requests in flight at all times, each on its own keep-alive connection, spread over
/// `loops` `HTTPClientLoop`s (one thread each). A response is handled where it arrives and
/// the connection's next request goes out in the same turn, so the generator costs no
/// thread wake-up per request and, with one loop, competes with the servers for the cores as
/// one thread instead of `connections`. Before the window, every connection makes one
/// `warmUp` request (its handshake; only a transport failure counts); the window starts
/// when all have answered, with the first request of every sender. `request(number)` makes
/// request `number`; `check` says what is wrong with a response (nil: nothing).
func closedLoopOnEventLoops(connections: Int, loops loopCount: Int, seconds: Double, tls: TLSContext, endpoint: Endpoint,
                            warmUp: HTTPRequest, request: @escaping @Sendable (Int) -> HTTPRequest,
                            check: @escaping @Sendable (HTTPResponse) -> String?) throws -> ClosedLoopResult {
    let configuration = HTTPClientConfiguration(maximumIdleConnectionsPerEndpoint: connections)
    let clients = try (0..<loopCount).map { index in
        try HTTPClientLoop(tls: tls, configuration: configuration, threadName: "generator-\(index)")
    }
    var started: [HTTPClientLoop] = []
    defer { for client in started { client.stop(deadline: monotonicNanoseconds()) } }
    for client in clients {
        try client.start()
        started.append(client)
    }
    let completed = Counter()
    let stop = Flag()
    let connected = DispatchGroup()
    let finished = DispatchGroup()
    // Each connection's handshake first, so that no signal is sent before the window starts.
    for chain in 0..<connections {
        connected.enter()
        clients[chain % loopCount].execute {
            clients[chain % loopCount].send(warmUp, to: endpoint, idempotent: true) { result in
                if case .failure(let error) = result {
                    completed.fail("\(error)")
                    stop.set()
                }
                connected.leave()
            }
        }
    }
    connected.wait()
    let start = monotonicNanoseconds()
    for chain in 0..<connections {
        let client = clients[chain % loopCount]
        finished.enter()
        client.execute {
            var sequence = 0
            /// Sends the chain's next request, or ends the chain once stopped or failed.
            func next() {
                guard !stop.isSet else { return finished.leave() }
                client.send(request(chain * 1_000_000_000 + sequence), to: endpoint, idempotent: true) { result in
                    switch result {
                    case .success(let response):
                        if let problem = check(response) {
                            completed.fail(problem)
                            stop.set()
                        } else {
                            completed.add()
                        }
                    case .failure(let error):
                        completed.fail("\(error)")
                        stop.set()
                    }
                    sequence += 1
                    next()
                }
            }
            next()
        }
    }
    if !stop.isSet { usleep(UInt32(seconds * 1_000_000)) }
    let done = completed.value
    let end = monotonicNanoseconds()
    stop.set()
    finished.wait()
    if let failure = completed.failure { throw BenchError.load(failure) }
    return ClosedLoopResult(perSecond: Double(done) / (Double(end - start) / 1e9), total: completed.value,
                            windowStart: start, windowEnd: end, cpuSeconds: 0)
}

/// Open-loop load at a fixed offered `rate` for `seconds`: operation number i is due at
/// start + i/rate, whatever happened to earlier ones, and its latency is measured from that
/// due time (so a stall is not hidden by requests that were never sent: no coordinated
/// omission, as in wrk2). `threads` threads take the next due operation in turn, sleep until
/// it is due (absolute clock_nanosleep) and run it. Returns the latencies in nanoseconds.
func openLoop<State>(rate: Double, seconds: Double, threads: Int,
                     setup: @escaping () throws -> State, _ operation: @escaping (State, Int) throws -> Void) throws -> [UInt64] {
    let total = Int(rate * seconds)
    let interval = 1e9 / rate
    let tickets = Counter()
    let gate = Gate()
    let ready = DispatchGroup()
    let finished = DispatchGroup()
    let results = (0..<threads).map { _ in LatencyList(capacity: total / threads * 2 + 16) }
    var start: UInt64 = 0
    for list in results {
        ready.enter()
        finished.enter()
        try spawnDetachedThread(stackSize: 512 << 10) {
            defer { finished.leave() }
            let state: State
            do {
                state = try setup()
            } catch {
                list.failure = "\(error)"
                ready.leave()
                return
            }
            ready.leave()
            gate.wait()
            do {
                while true {
                    let ticket = tickets.add() - 1
                    guard ticket < total else { break }
                    let due = start + UInt64(Double(ticket) * interval)
                    sleepUntil(due)
                    try operation(state, ticket)
                    list.values.append(monotonicNanoseconds() - due)
                }
            } catch {
                list.failure = "\(error)"
            }
        }
    }
    ready.wait()
    start = monotonicNanoseconds() + 10_000_000
    gate.open()
    finished.wait()
    if let failure = results.compactMap(\.failure).first { throw BenchError.load(failure) }
    return results.flatMap(\.values).sorted()
}

/// Sleeps until the monotonic clock reads `nanoseconds`.
func sleepUntil(_ nanoseconds: UInt64) {
    var due = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, nil) == EINTR {}
}

/// One thread's latencies (touched only by that thread until the run ends).
private final class LatencyList: @unchecked Sendable {
    var values: [UInt64] = []
    var failure: String?

    init(capacity: Int) { values.reserveCapacity(capacity) }
}

enum BenchError: Error, CustomStringConvertible {
    case load(String)
    case setup(String)

    var description: String {
        switch self {
        case .load(let reason): "load generator: \(reason)"
        case .setup(let reason): reason
        }
    }
}

final class Counter: @unchecked Sendable {
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

    /// Adds one and returns the new value.
    @discardableResult
    func add() -> Int {
        lock.lock()
        defer { lock.unlock() }
        count += 1
        return count
    }

    /// Keeps the first failure: later ones are usually its consequences.
    func fail(_ message: String) {
        lock.lock()
        if error == nil { error = message }
        lock.unlock()
    }
}

final class Flag: @unchecked Sendable {
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

/// Closed until `open`; `wait` blocks until then.
private final class Gate: @unchecked Sendable {
    private let condition = NSCondition()
    private var isOpen = false

    func wait() {
        condition.lock()
        while !isOpen { condition.wait() }
        condition.unlock()
    }

    func open() {
        condition.lock()
        isOpen = true
        condition.broadcast()
        condition.unlock()
    }
}

// MARK: - Child processes

/// This executable (for child modes such as `transport --serve` and `recipient`).
func benchExecutable() -> URL {
    URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
}

/// An executable built next to this one (`waakvlamd`, `waakvlam`).
func siblingExecutable(_ name: String) throws -> URL {
    let url = benchExecutable().deletingLastPathComponent().appendingPathComponent(name)
    guard FileManager.default.isExecutableFile(atPath: url.path) else {
        throw BenchError.setup("\(url.path) is missing: build everything first with `swift build -c release`")
    }
    return url
}

/// Starts `executable` with `arguments`; its standard error goes to `log` (or nowhere).
func startProcess(_ executable: URL, _ arguments: [String], log: String? = nil) throws -> Process {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    if let log {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: log)
    } else {
        process.standardError = FileHandle.nullDevice
    }
    try process.run()
    return process
}

/// Runs `executable` to completion; throws with its output when it fails.
func runToCompletion(_ executable: URL, _ arguments: [String]) throws {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw BenchError.setup("\(executable.lastPathComponent) \(arguments.joined(separator: " ")) failed:\n\(output)")
    }
}

/// SIGTERM, then waits for the process to exit.
func stopProcess(_ process: Process) {
    guard process.isRunning else { return }
    process.terminate()
    process.waitUntilExit()
}

/// Resident memory of a process in KiB: now (VmRSS) and at its peak (VmHWM).
func residentMemory(of pid: Int32) -> (now: Int, peak: Int)? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    func field(_ name: String) -> Int? {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }
    guard let now = field("VmRSS"), let peak = field("VmHWM") else { return nil }
    return (now, peak)
}

/// CPU time (user + system) used so far by process `pid`, and with `children` by its child
/// processes too (nginx's workers), in seconds; 0 for a process that is gone.
func cpuSeconds(_ pid: Int32, children: Bool = false) -> Double {
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    var all = [pid]
    if children, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") {
        for entry in entries {
            guard let child = Int32(entry), let fields = statFields(child), fields.count > 1, Int32(fields[1]) == pid else { continue }
            all.append(child)
        }
    }
    return all.reduce(0) { total, pid in
        guard let fields = statFields(pid), fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return total }
        return total + (user + system) / ticks
    }
}

/// The machine's CPU time since boot from /proc/stat, in clock ticks: all of it, and the part
/// the hypervisor gave to others while this machine wanted to run (steal).
struct HostTimes {
    var total = 0.0, steal = 0.0

    static func now() -> HostTimes {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return HostTimes() }
        let ticks = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        guard ticks.count >= 8 else { return HostTimes() }
        return HostTimes(total: ticks[0..<8].reduce(0, +), steal: ticks[7])
    }

    /// Percent of the CPU time between `earlier` and this that was stolen.
    func stealPercent(since earlier: HostTimes) -> Double {
        total > earlier.total ? 100 * (steal - earlier.steal) / (total - earlier.total) : 0
    }
}

/// The fields of /proc/PID/stat after the command name: state, ppid, ... (utime is [11]).
private func statFields(_ pid: Int32) -> [Substring]? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return nil }
    return text[text.index(after: close)...].split(separator: " ")
}

/// Sends GET `target` until the server answers (up to 10 s) and returns the answer.
func waitUntilServing(_ endpoint: Endpoint, tls: TLSContext, target: String = "/v1/whoami", process: Process? = nil) throws -> HTTPResponse {
    let client = HTTPClient(tls: tls)
    let end = Date(timeIntervalSinceNow: 10)
    while true {
        do {
            return try client.send(HTTPRequest(method: "GET", target: target), to: endpoint)
        } catch {
            if let process, !process.isRunning {
                throw BenchError.setup("\(process.executableURL?.lastPathComponent ?? "the server") exited with status \(process.terminationStatus) before serving")
            }
            if Date() > end { throw error }
            usleep(50_000)
        }
    }
}

// MARK: - nginx

/// nginx for the comparisons: the same mutual TLS as waakvlamd (protocol versions, NCSC
/// suites, groups, client certificate required and checked against the CA and the CRL, no
/// session resumption), one worker per core, `server` being the body of its server block.
enum Nginx {
    struct TLSFiles {
        let certificate: String, key: String, ca: String, crl: String
    }

    static func start(folder: String, port: UInt16, tls: TLSFiles, upstreams: String = "", accessLog: Bool = false,
                      server: String) throws -> Process {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let conf = """
        worker_processes auto;
        pid \(folder)/nginx.pid;
        error_log \(folder)/error.log warn;
        events { worker_connections 4096; }
        http {
            access_log \(accessLog ? folder + "/access.log" : "off");
            client_body_temp_path \(folder)/body;
            proxy_temp_path \(folder)/proxy;
            fastcgi_temp_path \(folder)/fastcgi;
            uwsgi_temp_path \(folder)/uwsgi;
            scgi_temp_path \(folder)/scgi;
            keepalive_requests 10000000;
            keepalive_timeout 60s;
        \(upstreams)
            server {
                listen 127.0.0.1:\(port) ssl;
                ssl_certificate \(tls.certificate);
                ssl_certificate_key \(tls.key);
                ssl_client_certificate \(tls.ca);
                ssl_verify_client on;
                ssl_crl \(tls.crl);
                ssl_protocols TLSv1.2 TLSv1.3;
                ssl_ciphers \(cipherList);
                ssl_prefer_server_ciphers on;
                ssl_ecdh_curve X25519:prime256v1:secp384r1;
                ssl_session_cache off;
                ssl_session_tickets off;
        \(server)
            }
        }
        """
        try conf.write(toFile: folder + "/nginx.conf", atomically: true, encoding: .utf8)
        return try startProcess(URL(fileURLWithPath: "/usr/sbin/nginx"), ["-p", folder, "-c", folder + "/nginx.conf", "-g", "daemon off;"])
    }

    /// Forward-secret AEAD suites only (the TLS 1.2 list; TLS 1.3 suites are all AEAD).
    static let cipherList = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"
        + "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"

    static var version: String {
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
}

// MARK: - Numbers and text

/// `text` padded with spaces to `width` (String(format:) ignores widths for %@ on Linux).
func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - text.count))
    return right ? fill + text : text + fill
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// The `fraction` quantile (nearest rank) of ascending `sorted` values.
func quantile(_ sorted: [UInt64], _ fraction: Double) -> UInt64 {
    guard !sorted.isEmpty else { return 0 }
    let rank = Int((fraction * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

