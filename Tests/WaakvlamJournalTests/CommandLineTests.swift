import Foundation
import XCTest
@testable import WaakvlamJournal

/// `waakvlam journal ...` end to end, on a state folder written by the journal.
final class CommandLineTests: XCTestCase {
    private func makeState() throws -> (state: String, pseudonyms: Pseudonymizer) {
        let state = temporaryDirectory(self)
        let pseudonyms = try Pseudonymizer(stateDirectory: state)
        let journal = try Journal.openForTest(Journal.directory(inState: state))
        try journal.append([Sample.received("s1", subjects: [pseudonyms.pseudonym("bsn:123456782")], at: time(0)),
                            Sample.decision("s1", to: "gemeente-hoorn", at: time(1)),
                            Sample.decision("s1", to: "politie", allowed: false, at: time(1))])
        try journal.append([Sample.received("s2", subjects: [pseudonyms.pseudonym("address:1621AB|12|A")], at: time(50)),
                            Sample.decision("s2", to: "1hoorn", at: time(51))])
        try journal.append([.delivered(Delivered(signalID: "s1", recipientID: "gemeente-hoorn", via: .inboxAck, at: time(9)))])
        journal.close()
        return (state, pseudonyms)
    }

    func testVerifyExitsZeroWhenIntactAndOneNamingTheDamage() throws {
        let waakvlam = try productBinary("waakvlam")
        let (state, _) = try makeState()
        var result = try runProcess(waakvlam, ["journal", "verify", "--state", state])
        XCTAssertEqual(result.status, 0, result.err)
        XCTAssertTrue(result.out.contains("journal intact: 6 records in 1 segment(s); head #6 sha256 "), result.out)

        let segment = Journal.directory(inState: state) + "/00000001.seg"
        var bytes = readFile(segment)
        bytes[bytes.count - 3] ^= 1
        writeFile(segment, bytes)
        result = try runProcess(waakvlam, ["journal", "verify", "--state", state])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.out.contains("journal DAMAGED: first bad record: record #6 in 00000001.seg at offset"), result.out)

        result = try runProcess(waakvlam, ["journal", "verify", "--state", state + "/nowhere"])
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.err.contains("there is no journal folder"), result.err)
        result = try runProcess(waakvlam, ["journal", "verify"])
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.err.contains("--state DIR"), result.err)
    }

    func testQuerySubjectAndExport() throws {
        let waakvlam = try productBinary("waakvlam")
        let (state, pseudonyms) = try makeState()

        var result = try runProcess(waakvlam, ["journal", "query", "--state", state, "--org", "politie", "--json"])
        XCTAssertEqual(result.status, 0, result.err)
        let lines = result.out.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(lines.map { $0["sequence"] as! Int }, [3])
        XCTAssertEqual(lines.first?["reason_code"] as? String, "no_rule")

        result = try runProcess(waakvlam, ["journal", "query", "--state", state, "--signal", "s2", "--since", "2026-09-21T14:14:10.500Z"])
        XCTAssertEqual(result.status, 0, result.err)
        XCTAssertEqual(result.out.split(separator: "\n").count, 1, result.out)
        XCTAssertTrue(result.out.contains("s2 -> 1hoorn  allowed  rule=hoorn-overlast-1  convenant=hoorn-2024@3"), result.out)
        result = try runProcess(waakvlam, ["journal", "query", "--state", state, "--since", "yesterday"])
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.err.contains("2026-11-21T10:00:00Z"), result.err)

        // The BSN from stdin, so it stays out of the shell history.
        result = try runProcess(waakvlam, ["journal", "subject", "--state", state, "--bsn", "-"], stdin: "123456782\n")
        XCTAssertEqual(result.status, 0, result.err)
        XCTAssertTrue(result.out.contains(pseudonyms.pseudonym("bsn:123456782")), result.out)
        XCTAssertTrue(result.out.contains("1 disclosure(s) to organisations, 1 refused"), result.out)
        XCTAssertTrue(result.out.contains("gemeente-hoorn  received it 2026-09-21T14:13:29.000Z  signal s1"), result.out)
        XCTAssertTrue(result.out.contains("convenant hoorn-2024 version 3"), result.out)
        XCTAssertTrue(result.out.contains("politie  refused (no_rule)"), result.out)
        XCTAssertFalse(result.out.contains("123456782"), "the BSN itself is never printed")

        result = try runProcess(waakvlam, ["journal", "subject", "--state", state, "--address", "1621 ab", "12", "a", "--json"])
        XCTAssertEqual(result.status, 0, result.err)
        XCTAssertTrue(result.out.contains("\"recipient_id\":\"1hoorn\""), result.out)
        result = try runProcess(waakvlam, ["journal", "subject", "--state", state, "--bsn", "123456789"])
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.err.contains("elfproef"), result.err)

        result = try runProcess(waakvlam, ["journal", "export", "--state", state, "--format", "logboek"])
        XCTAssertEqual(result.status, 0, result.err)
        // s1: received, shared, denied, delivered; s2: received, shared.
        XCTAssertEqual(result.out.split(separator: "\n").count, 6)
        result = try runProcess(waakvlam, ["journal", "export", "--state", state, "--format", "csv"])
        XCTAssertEqual(result.status, 2)
    }
}
