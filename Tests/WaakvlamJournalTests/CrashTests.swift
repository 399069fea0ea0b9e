#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
@testable import WaakvlamJournal

/// kill -9 at random moments: every append that had returned (blocking appends from threads)
/// or completed (chains of asynchronous appends) must survive, and the chain must verify.
final class CrashTests: XCTestCase {
    func testKillNineAtRandomMomentsLosesNoAcknowledgedAppend() throws {
        let bench = try productBinary("waakvlam-bench")
        let dir = temporaryDirectory(self)
        var acknowledged: [String] = []
        var tornCuts = 0
        var generator = SystemRandomNumberGenerator()
        let rounds = 50
        for round in 0..<rounds {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: bench)
            process.arguments = ["journal", "writer", "--dir", dir, "--threads", "8", "--chains", "8", "--segment-size", "65536"]
            let outputPath = dir + "/acknowledged-\(round).txt"
            XCTAssertTrue(FileManager.default.createFile(atPath: outputPath, contents: nil), "cannot create \(outputPath)")
            process.standardOutput = FileHandle(forWritingAtPath: outputPath)
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Random moments: in even rounds counted from the start (so also during the
            // child's own start and recovery), in odd rounds from its first acknowledged
            // append (so a loaded machine still kills it mid-write).
            if round % 2 == 1 {
                let end = Date(timeIntervalSinceNow: 10)
                while Date() < end, (try? FileManager.default.attributesOfItem(atPath: outputPath)[.size] as? Int) ?? 0 == 0 {
                    usleep(2_000)
                }
            }
            usleep(UInt32.random(in: 5_000...120_000, using: &generator))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationReason, .uncaughtSignal, "round \(round): the writer died by itself")
            let lines = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            // A line cut by the kill was never complete, so never acknowledged.
            acknowledged += lines.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
            try? FileManager.default.removeItem(atPath: outputPath)

            let journal = try Journal.open(directory: dir, options: JournalOptions(segmentSizeLimit: 65536))
            if journal.recovery.tornBytesCut > 0 { tornCuts += 1 }
            let index = journal.deliveryState()
            let missing = acknowledged.filter { !index.contains(signalID: $0) }
            XCTAssertEqual(missing, [], "round \(round): acknowledged signals lost")
            for id in acknowledged.suffix(3) {
                XCTAssertNotNil(index.delivery(signalID: id, recipientID: "gemeente-hoorn"), "round \(round): \(id) without decision")
                let payload = try journal.payload(signalID: id, recipientID: "gemeente-hoorn")
                XCTAssertTrue(payload.map { String(decoding: $0, as: UTF8.self).hasPrefix("{\"id\":\"\(id)\",") } ?? false,
                              "round \(round): payload of \(id)")
            }
            journal.close()
            let verification = try JournalReader(directory: dir).verify()
            XCTAssertNil(verification.damage, "round \(round)")
            if !missing.isEmpty || verification.damage != nil { break }
        }
        XCTAssertGreaterThan(acknowledged.count, rounds / 2, "the writer must have made progress in the rounds that waited for it")
        // Ids are "<pid>-<run>-<writer>-<number>"; writers 8 and up are the chains.
        let fromChains = acknowledged.filter { Int($0.split(separator: "-")[2])! >= 8 }.count
        XCTAssertGreaterThan(fromChains, 0, "the chains of asynchronous appends must have been acknowledged too")
        print("crash test: \(rounds) kills, \(acknowledged.count) acknowledged signals, \(tornCuts) torn tails cut, \(segmentFiles(dir).count) segments")
    }
}
