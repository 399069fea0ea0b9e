#if canImport(Glibc)
import Glibc
#endif
import Foundation
import WaakvlamJournal
import WaakvlamSystem

// `waakvlam-bench journal`: durable appends/s and ack latency for 1, 8 and 64 concurrent
// writers beside the raw fdatasync rate of the same disk, then recovery time and peak memory
// for a journal of 1,000,000 records. Two hidden child modes serve the benchmark and the
// crash test:
//   journal writer  --dir D [--threads N] [--chains N] [--segment-size BYTES]
//       appends signals from N threads (blocking appends) and N chains of asynchronous
//       appends forever, printing "<signal id>\n" after each append returned or completed
//       (is durable); meant to be killed with SIGKILL.
//   journal recover --dir D
//       opens (recovers) the journal and prints one JSON line with the figures.

func runJournalBenchmark(_ arguments: [String]) -> Int32 {
    var options = BenchOptions()
    do {
        options = try BenchOptions.parse(arguments)
    } catch {
        FileHandle.standardError.write(Data("waakvlam-bench journal: \(error)\n".utf8))
        return 2
    }
    Log.shared.minimumLevel = .warning
    switch options.mode {
    case "writer": return runWriterChild(options)
    case "recover": return runRecoverChild(options)
    default: return runMainBenchmark(options)
    }
}

private struct BenchOptions {
    var mode = "run"
    var directory: String?
    var threads = 16
    var chains = 0
    var seconds = 3.0
    var records = 1_000_000
    var segmentSize = 64 << 20
    /// "appends", "recovery" or "all".
    var part = "all"
    /// Which append shapes and writer counts to measure (all by default; narrower for profiling).
    var shapes = AppendShape.allCases
    var writerCounts = [1, 8, 64]
    var apis = WriterStyle.allCases

    struct UsageError: Error, CustomStringConvertible { let description: String }

    static func parse(_ arguments: [String]) throws -> BenchOptions {
        var o = BenchOptions()
        var args = arguments[...]
        if let first = args.first, !first.hasPrefix("--") {
            o.mode = first
            args = args.dropFirst()
        }
        while let flag = args.popFirst() {
            guard let value = args.popFirst() else { throw UsageError(description: "\(flag) needs a value") }
            switch flag {
            case "--dir": o.directory = value
            case "--threads": o.threads = try number(flag, value)
            case "--chains": o.chains = try number(flag, value)
            case "--seconds": o.seconds = Double(try number(flag, value))
            case "--records": o.records = try number(flag, value)
            case "--segment-size": o.segmentSize = try number(flag, value)
            case "--part":
                guard ["appends", "recovery", "all"].contains(value) else {
                    throw UsageError(description: "--part is appends, recovery or all")
                }
                o.part = value
            case "--shape":
                guard let shape = AppendShape(name: value) else { throw UsageError(description: "--shape is signal or record") }
                o.shapes = [shape]
            case "--writers":
                o.writerCounts = try value.split(separator: ",").map { try number(flag, String($0)) }
            case "--api":
                guard let style = WriterStyle(rawValue: value) else { throw UsageError(description: "--api is threads or completions") }
                o.apis = [style]
            default:
                throw UsageError(description: "unknown option \(flag) (options: --dir --seconds --records --part --shape --writers --api; child modes: --threads --chains --segment-size)")
            }
        }
        return o
    }

    private static func number(_ flag: String, _ value: String) throws -> Int {
        guard let n = Int(value), n > 0 else { throw UsageError(description: "\(flag) needs a positive number") }
        return n
    }
}

private let payloadHash = String(repeating: "5e", count: 32)
private let requestHash = String(repeating: "a7", count: 32)
private let subjects = ["bsn:" + String(repeating: "3c", count: 32)]
private let payloadTail = [UInt8](repeating: 32, count: 180)

/// What the relay appends when it accepts a signal: `received` plus one allowed decision
/// carrying a sealed ~300-byte payload.
private func signalRecords(_ id: String, at: Date = Date()) -> [JournalRecord] {
    [receivedRecord(id, at: at),
     .decision(Decision(signalID: id, recipientID: "gemeente-hoorn", allowed: true, ruleID: "vroegsignalering-huur",
                        convenantID: "hoorn-vroeg-eropaf", convenantVersion: "3",
                        processingActivity: "https://register.hoorn.nl/verwerkingen/vroegsignalering", configVersion: "12",
                        fieldsDelivered: ["bedrag", "ontstaansdatum", "Achternaam", "Postcode", "Huisnummer"],
                        fieldsDropped: ["Burgerservicenummer"], retentionUntil: at.addingTimeInterval(86400 * 30),
                        deliveryMode: .push, payload: payloadBytes(id), at: at))]
}

private func receivedRecord(_ id: String, at: Date = Date()) -> JournalRecord {
    .received(Received(signalID: id, senderID: "intermaris", senderOIN: "00000001809281230000", signalType: "betalingsachterstand",
                       requestedRecipients: ["gemeente-hoorn"], payloadHash: payloadHash, requestHash: requestHash,
                       subjectPseudonyms: subjects,
                       traceID: "4bf92f3577b34da6a3ce929d0e0e4736", spanID: "00f067aa0ba902b7", configVersion: "12", at: at))
}

private func payloadBytes(_ id: String) -> [UInt8] {
    Array("{\"id\":\"\(id)\",\"bedrag\":\"812.40\",\"ontstaansdatum\":\"2026-09-01\",\"Achternaam\":\"X\",\"Postcode\":\"1621AB\",\"Huisnummer\":\"12\"}".utf8)
        + payloadTail
}

// MARK: - Child modes

private func runWriterChild(_ options: BenchOptions) -> Int32 {
    guard let directory = options.directory else { return usageFailure("writer needs --dir") }
    let journal: Journal
    do {
        journal = try Journal.open(directory: directory, options: JournalOptions(segmentSizeLimit: options.segmentSize))
    } catch {
        FileHandle.standardError.write(Data("writer: \(error)\n".utf8))
        return 1
    }
    let run = String(getpid()) + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
    for t in 0..<options.threads {
        Thread {
            var i = 0
            while true {
                let id = "\(run)-\(t)-\(i)"
                do {
                    try journal.append(crashWriterRecords(run: run, writer: t, number: i))
                } catch {
                    FileHandle.standardError.write(Data("writer: \(error)\n".utf8))
                    exit(1)
                }
                acknowledge(id)
                i += 1
            }
        }.start()
    }
    @Sendable func chain(_ c: Int, _ i: Int) {
        let writer = options.threads + c
        do {
            try journal.append(crashWriterRecords(run: run, writer: writer, number: i)) { result in
                guard case .success = result else {
                    FileHandle.standardError.write(Data("writer: \(result)\n".utf8))
                    exit(1)
                }
                acknowledge("\(run)-\(writer)-\(i)")
                chain(c, i + 1)
            }
        } catch {
            FileHandle.standardError.write(Data("writer: \(error)\n".utf8))
            exit(1)
        }
    }
    for c in 0..<options.chains { chain(c, 0) }
    while true { sleep(60) }
}

/// A signal, and for every fourth one the receipt of the one before.
private func crashWriterRecords(run: String, writer: Int, number i: Int) -> [JournalRecord] {
    var records = signalRecords("\(run)-\(writer)-\(i)")
    if i > 0, i % 4 == 0 {
        records.append(.delivered(Delivered(signalID: "\(run)-\(writer)-\(i - 1)", recipientID: "gemeente-hoorn",
                                            via: .push, at: Date())))
    }
    return records
}

/// Prints a durable signal's id. One write(2) per line: lines from different threads never
/// interleave.
private func acknowledge(_ id: String) {
    let line = Array((id + "\n").utf8)
    _ = line.withUnsafeBytes { write(1, $0.baseAddress!, $0.count) }
}

private func runRecoverChild(_ options: BenchOptions) -> Int32 {
    guard let directory = options.directory else { return usageFailure("recover needs --dir") }
    let started = monotonicNanoseconds()
    do {
        let journal = try Journal.open(directory: directory)
        let seconds = Double(monotonicNanoseconds() - started) / 1e9
        let index = journal.deliveryState()
        let line: [String: Any] = [
            "records": journal.recovery.records, "hashed_records": journal.recovery.hashedRecords,
            "seconds": seconds, "cpu_seconds": cpuSeconds(), "max_rss_kib": maxResidentKiB(), "index_bytes": index.memoryFootprint,
            "signals": index.signalCount, "pending": index.pendingCount,
        ]
        journal.close()
        let data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
        return 0
    } catch {
        FileHandle.standardError.write(Data("recover: \(error)\n".utf8))
        return 1
    }
}

private func usageFailure(_ message: String) -> Int32 {
    FileHandle.standardError.write(Data("waakvlam-bench journal: \(message)\n".utf8))
    return 2
}

private func maxResidentKiB() -> Int {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Int(usage.ru_maxrss)
}

/// User plus system CPU time of this process: on a machine shared with other work, the
/// single-threaded recovery's own cost.
private func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

// MARK: - The benchmark

private func runMainBenchmark(_ options: BenchOptions) -> Int32 {
    let base = options.directory ?? (NSTemporaryDirectory() + "waakvlam-bench-journal-\(getpid())")
    try? FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    defer { if options.directory == nil { try? FileManager.default.removeItem(atPath: base) } }
    print("journal benchmark in \(base) (\(ProcessInfo.processInfo.activeProcessorCount) cores)")

    if options.part != "recovery",
       !measureAppends(base: base, seconds: options.seconds, shapes: options.shapes, writerCounts: options.writerCounts,
                      apis: options.apis) { return 1 }
    if options.part != "appends", !measureRecovery(base: base, records: options.records) { return 1 }
    return 0
}

private func measureAppends(base: String, seconds: Double, shapes: [AppendShape], writerCounts: [Int], apis: [WriterStyle]) -> Bool {
    let raw = rawSyncRate(directory: base, seconds: seconds)
    print(String(format: "raw fdatasync (512-byte appends, 1 thread): %.0f syncs/s, p50 %.3f ms", raw.rate, raw.p50 * 1000))
    print("")
    print("append                              writers as   writers  appends/s  x raw   p50 ms   p99 ms  appends/sync  commit us  CPU us/append")
    for shape in shapes {
        for writers in writerCounts {
            for style in apis {
                let dir = base + "/writers-\(writers)"
                guard let r = appendLoad(directory: dir, writers: writers, seconds: seconds, pacedRate: nil, shape: shape, style: style) else {
                    return false
                }
                print(String(format: "%@  %@  %7d  %9.0f  %5.1f  %7.3f  %7.3f  %12.1f  %9.0f  %13.1f", shape.label, style.label,
                             writers, r.appendsPerSecond, r.appendsPerSecond / raw.rate, r.p50 * 1000, r.p99 * 1000,
                             r.appendsPerSync, r.commitMean * 1e6, r.cpuPerAppend * 1e6))
                try? FileManager.default.removeItem(atPath: dir)
            }
        }
    }
    if shapes.contains(.signal) {
        guard let r = appendLoad(directory: base + "/paced", writers: 16, seconds: seconds, pacedRate: 1000, shape: .signal,
                                 style: .threads) else {
            return false
        }
        print(String(format: "signal appends paced at 1,000/s from 16 writers: p50 %.3f ms, p99 %.3f ms, %.1f appends/sync",
                     r.p50 * 1000, r.p99 * 1000, r.appendsPerSync))
        try? FileManager.default.removeItem(atPath: base + "/paced")
    }
    print("")
    return true
}

private func measureRecovery(base: String, records: Int) -> Bool {
    let dir = base + "/recovery"
    let built = monotonicNanoseconds()
    guard let signals = buildJournal(directory: dir, records: records) else { return false }
    print(String(format: "built a journal of %d records (%d signals) in %.1f s, %.0f MB on disk", records, signals,
                 Double(monotonicNanoseconds() - built) / 1e9, Double(directorySize(dir)) / 1e6))
    for (label, dropCheckpoint) in [("from the checkpoint (clean shutdown)", false), ("without checkpoint (whole chain hashed)", true)] {
        if dropCheckpoint { try? FileManager.default.removeItem(atPath: dir + "/checkpoint") }
        guard let figures = recoverInChild(directory: dir) else { return false }
        print(String(format: "recovery %@: %.2f s (%.2f s CPU) for %d records (%d hashed), peak RSS %.0f MB, index %.1f MB for %d signals / %d pending",
                     label, figures["seconds"] as? Double ?? 0, figures["cpu_seconds"] as? Double ?? 0,
                     figures["records"] as? Int ?? 0, figures["hashed_records"] as? Int ?? 0,
                     Double(figures["max_rss_kib"] as? Int ?? 0) / 1024, Double(figures["index_bytes"] as? Int ?? 0) / 1e6,
                     figures["signals"] as? Int ?? 0, figures["pending"] as? Int ?? 0))
    }
    return true
}

private func rawSyncRate(directory: String, seconds: Double) -> (rate: Double, p50: Double) {
    let path = directory + "/raw-sync"
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    defer {
        close(fd)
        unlink(path)
    }
    let block = [UInt8](repeating: 0x42, count: 512)
    var latencies: [UInt64] = []
    let end = monotonicNanoseconds() + UInt64(seconds * 1e9)
    while monotonicNanoseconds() < end {
        let t0 = monotonicNanoseconds()
        _ = block.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        fdatasync(fd)
        latencies.append(monotonicNanoseconds() - t0)
    }
    latencies.sort()
    return (Double(latencies.count) / seconds, Double(latencies[latencies.count / 2]) / 1e9)
}

private struct LoadResult {
    let appendsPerSecond: Double
    let p50: Double
    let p99: Double
    let appendsPerSync: Double
    /// Process CPU time (all threads, user + system) per append: what the journal costs,
    /// whatever else the machine is doing.
    let cpuPerAppend: Double
    /// The mean time of one group commit's write and fdatasync.
    let commitMean: Double
}

/// Latencies gathered from several threads.
private final class Latencies: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [UInt64] = []

    func add(_ more: [UInt64]) {
        lock.lock()
        values += more
        lock.unlock()
    }

    func sorted() -> [UInt64] {
        lock.lock()
        defer { lock.unlock() }
        return values.sorted()
    }
}

/// What one append holds.
private enum AppendShape: CaseIterable {
    /// What the relay appends per accepted signal: `received` + a decision with a sealed payload.
    case signal
    /// One `received` record: the group commit itself, without payload sealing or key file.
    case record

    init?(name: String) {
        switch name {
        case "signal": self = .signal
        case "record": self = .record
        default: return nil
        }
    }

    var label: String {
        switch self {
        case .signal: "signal (2 records, sealed payload)"
        case .record: "record (1 record, no payload)     "
        }
    }

    func records(_ id: String) -> [JournalRecord] {
        switch self {
        case .signal: signalRecords(id)
        case .record: [receivedRecord(id)]
        }
    }
}

/// How the benchmark's writers append.
private enum WriterStyle: String, CaseIterable {
    /// Each writer is a thread that calls the blocking `append` in a loop.
    case threads
    /// Each writer is a chain of asynchronous appends: the next one is issued from the
    /// completion of the previous, so every writer has one append in flight at all times.
    case completions

    var label: String { rawValue.padding(toLength: 11, withPad: " ", startingAt: 0) }
}

/// `writers` writers append for `seconds`; with `pacedRate` (threads only) the total arrival
/// rate is held at that many appends per second instead of as fast as possible.
private func appendLoad(directory: String, writers: Int, seconds: Double, pacedRate: Double?, shape: AppendShape,
                        style: WriterStyle) -> LoadResult? {
    let journal: Journal
    do {
        journal = try Journal.open(directory: directory)
    } catch {
        print("cannot open journal: \(error)")
        return nil
    }
    let collected = Latencies()
    let commits = CommitTimes()
    journal.onGroupCommit = { seconds, _ in commits.add(seconds) }
    let cpuAtStart = cpuSeconds()
    let start = monotonicNanoseconds()
    let end = start + UInt64(seconds * 1e9)
    switch style {
    case .threads:
        runWriterThreads(journal, writers: writers, start: start, end: end, pacedRate: pacedRate, shape: shape, into: collected)
    case .completions:
        guard CompletionChains(journal: journal, shape: shape, end: end, into: collected).run(writers: writers) else {
            journal.close()
            return nil
        }
    }
    let elapsed = Double(monotonicNanoseconds() - start) / 1e9
    let cpu = cpuSeconds() - cpuAtStart
    let stats = journal.statistics
    journal.close()
    let all = collected.sorted()
    guard !all.isEmpty else { return nil }
    return LoadResult(appendsPerSecond: Double(all.count) / elapsed, p50: Double(all[all.count / 2]) / 1e9,
                      p99: Double(all[min(all.count - 1, all.count * 99 / 100)]) / 1e9,
                      appendsPerSync: Double(stats.appends) / Double(max(stats.segmentSyncs, 1)),
                      cpuPerAppend: cpu / Double(all.count), commitMean: commits.mean)
}

/// The write-and-fdatasync time of each group commit (told on the writer thread).
private final class CommitTimes: @unchecked Sendable {
    private var total = 0.0
    private var count = 0

    func add(_ seconds: TimeInterval) {
        total += seconds
        count += 1
    }

    var mean: Double { count == 0 ? 0 : total / Double(count) }
}

private func runWriterThreads(_ journal: Journal, writers: Int, start: UInt64, end: UInt64, pacedRate: Double?,
                              shape: AppendShape, into collected: Latencies) {
    let group = DispatchGroup()
    for t in 0..<writers {
        group.enter()
        Thread {
            var latencies: [UInt64] = []
            var i = 0
            let interval = pacedRate.map { Double(writers) / $0 * 1e9 }
            while true {
                if let interval {
                    let due = start + UInt64(Double(i) * interval + Double(t) * interval / Double(writers))
                    let now = monotonicNanoseconds()
                    if due > now { usleep(UInt32((due - now) / 1000)) }
                }
                let t0 = monotonicNanoseconds()
                if t0 >= end { break }
                do {
                    try journal.append(shape.records("w\(writers)-\(t)-\(i)"))
                } catch {
                    print("append failed: \(error)")
                    break
                }
                latencies.append(monotonicNanoseconds() - t0)
                i += 1
            }
            collected.add(latencies)
            group.leave()
        }.start()
    }
    group.wait()
}

/// Writers as chains of asynchronous appends. Their latencies are kept by the journal's
/// completion thread, the only one that touches `latencies` until `run` returns.
private final class CompletionChains: @unchecked Sendable {
    private let journal: Journal
    private let shape: AppendShape
    private let end: UInt64
    private let collected: Latencies
    private let done = DispatchGroup()
    private var latencies: [UInt64] = []
    private let failures = NSLock()
    private var failed = false

    init(journal: Journal, shape: AppendShape, end: UInt64, into collected: Latencies) {
        self.journal = journal
        self.shape = shape
        self.end = end
        self.collected = collected
    }

    /// Starts `writers` chains and waits until all of them stopped; false if an append failed.
    func run(writers: Int) -> Bool {
        for writer in 0..<writers {
            done.enter()
            issue(writer: writer, writers: writers, number: 0)
        }
        done.wait()
        collected.add(latencies)
        failures.lock()
        defer { failures.unlock() }
        return !failed
    }

    private func issue(writer: Int, writers: Int, number: Int) {
        let t0 = monotonicNanoseconds()
        guard t0 < end else { return done.leave() }
        do {
            try journal.append(shape.records("w\(writers)-\(writer)-\(number)")) { [self] result in
                if case .failure(let error) = result { return stop("append failed: \(error)") }
                latencies.append(monotonicNanoseconds() - t0)
                issue(writer: writer, writers: writers, number: number + 1)
            }
        } catch {
            stop("append failed: \(error)")
        }
    }

    private func stop(_ message: String) {
        print(message)
        failures.lock()
        failed = true
        failures.unlock()
        done.leave()
    }
}

/// Writes `records` records in large appends: signals of three records (received, decision
/// with payload, delivered), with every tenth signal left pending.
private func buildJournal(directory: String, records: Int) -> Int? {
    try? FileManager.default.removeItem(atPath: directory)
    do {
        let journal = try Journal.open(directory: directory)
        defer { journal.close() }
        var batch: [JournalRecord] = []
        var written = 0
        var signals = 0
        let at = Date()
        while written < records {
            let id = "bench-\(signals)"
            var next = signalRecords(id, at: at)
            if signals % 10 != 0 {
                next.append(.delivered(Delivered(signalID: id, recipientID: "gemeente-hoorn", via: .push, at: at)))
            }
            next = Array(next.prefix(records - written))
            batch += next
            written += next.count
            signals += 1
            if batch.count >= 3000 || written == records {
                try journal.append(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        return signals
    } catch {
        print("cannot build the journal: \(error)")
        return nil
    }
}

private func recoverInChild(directory: String) -> [String: Any]? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
    if !FileManager.default.isExecutableFile(atPath: process.executableURL!.path) {
        process.executableURL = Bundle.main.executableURL
    }
    process.arguments = ["journal", "recover", "--dir", directory]
    let output = Pipe()
    process.standardOutput = output
    do {
        try process.run()
    } catch {
        print("cannot start the recovery child: \(error)")
        return nil
    }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0,
          let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        print("recovery child failed (status \(process.terminationStatus))")
        return nil
    }
    return object
}

private func directorySize(_ path: String) -> Int {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    return names.reduce(0) { total, name in
        total + ((try? FileManager.default.attributesOfItem(atPath: path + "/" + name)[.size] as? Int) ?? 0)
    }
}
