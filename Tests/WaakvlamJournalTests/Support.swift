import Foundation
import XCTest
@testable import WaakvlamJournal

/// A fresh temporary folder, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase, file: StaticString = #filePath, line: UInt = #line) -> String {
    let path = NSTemporaryDirectory() + "waakvlam-journal-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// A fixed clock in whole microseconds, so records compare equal after a round trip.
func time(_ seconds: Int) -> Date { Date(timeIntervalSince1970: 1_790_000_000 + Double(seconds)) }

enum Sample {
    static func received(_ id: String, from sender: String = "intermaris", type: String = "overlast",
                         to recipients: [String] = ["gemeente-hoorn"], subjects: [String] = [],
                         requestHash: String = "r", at: Date = time(0)) -> JournalRecord {
        .received(Received(signalID: id, senderID: sender, senderOIN: "00000001234567890000", signalType: type,
                           requestedRecipients: recipients, payloadHash: String(repeating: "ab", count: 32),
                           requestHash: requestHash, subjectPseudonyms: subjects,
                           traceID: "4bf92f3577b34da6a3ce929d0e0e4736", spanID: "00f067aa0ba902b7",
                           configVersion: "7", at: at))
    }

    static func decision(_ id: String, to recipient: String = "gemeente-hoorn", allowed: Bool = true,
                         payload: [UInt8]? = nil, mode: DeliveryMode = .push, retentionUntil: Date? = nil,
                         at: Date = time(1)) -> JournalRecord {
        .decision(Decision(signalID: id, recipientID: recipient, allowed: allowed,
                           reasonCode: allowed ? nil : "no_rule", reasonMessage: allowed ? nil : "no convenant rule",
                           ruleID: allowed ? "hoorn-overlast-1" : nil, convenantID: allowed ? "hoorn-2024" : nil,
                           convenantVersion: allowed ? "3" : nil,
                           processingActivity: allowed ? "https://register.example/activiteiten/overlast" : nil,
                           configVersion: "7", fieldsDelivered: allowed ? ["adres", "soort"] : [],
                           fieldsDropped: ["bsn"], retentionUntil: retentionUntil, deliveryMode: allowed ? mode : nil,
                           payload: payload, at: at))
    }

    /// A signal with one allowed decision carrying a payload: what the relay appends on 202.
    static func signal(_ id: String, to recipient: String = "gemeente-hoorn", payload: [UInt8]? = nil,
                       mode: DeliveryMode = .push, at: Date = time(0)) -> [JournalRecord] {
        [received(id, to: [recipient], at: at),
         decision(id, to: recipient, payload: payload ?? Array("payload of \(id)".utf8), mode: mode, at: at)]
    }
}

extension Journal {
    static func openForTest(_ directory: String, _ options: JournalOptions = .init()) throws -> Journal {
        try Journal.open(directory: directory, options: options)
    }
}

func segmentFiles(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
}

func readFile(_ path: String) -> [UInt8] { Array(FileManager.default.contents(atPath: path)!) }

func writeFile(_ path: String, _ bytes: [UInt8]) { try! Data(bytes).write(to: URL(fileURLWithPath: path)) }

/// A thread-safe counter for tests that count from several threads.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    func increment() {
        lock.lock()
        count += 1
        lock.unlock()
    }

    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }
}

/// Runs `body(i)` on `count` threads of their own (not a pool of CPU-count size) and waits.
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            body(i)
            group.leave()
        }
        thread.start()
    }
    group.wait()
}

/// An executable of the package (`waakvlam`, `waakvlam-bench`), built by `swift test` next to
/// the test bundle.
func productBinary(_ name: String) throws -> String {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path,
        Bundle.main.bundleURL.deletingLastPathComponent().path,
    ]
    for folder in candidates where FileManager.default.isExecutableFile(atPath: folder + "/" + name) {
        return folder + "/" + name
    }
    XCTFail("\(name) is not built next to the tests (looked in \(candidates)); run `swift build` first")
    throw XCTSkip("no \(name) binary")
}

/// Runs an executable and returns its exit status, stdout and stderr.
func runProcess(_ executable: String, _ arguments: [String], stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe(), err = Pipe(), input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}
