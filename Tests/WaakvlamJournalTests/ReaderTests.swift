import Foundation
import XCTest
import WaakvlamCrypto
@testable import WaakvlamJournal

final class PseudonymTests: XCTestCase {
    func testPseudonymsAreStableKeyedAndTheSecretIsPrivate() throws {
        let state = temporaryDirectory(self)
        let first = try Pseudonymizer(stateDirectory: state)
        let again = try Pseudonymizer(stateDirectory: state)
        let bsn = "bsn:123456782"
        let p = first.pseudonym(bsn)
        XCTAssertTrue(p.hasPrefix("bsn:"))
        XCTAssertEqual(p.count, 4 + 64)
        XCTAssertFalse(p.contains("123456782"))
        XCTAssertEqual(again.pseudonym(bsn), p, "stable across restarts")
        XCTAssertNotEqual(first.pseudonym("bsn:123456783"), p)
        // The HMAC of the whole canonical string under the secret, and nothing of a string
        // without a kind prefix shows.
        let secret = Array(FileManager.default.contents(atPath: state + "/secret")!)
        XCTAssertEqual(p, "bsn:" + Hex.encode(HMACSHA256(key: secret).authenticate(Array(bsn.utf8))))
        XCTAssertEqual(first.pseudonym("address:1621AB|12|"), "address:" + Hex.encode(HMACSHA256(key: secret).authenticate(Array("address:1621AB|12|".utf8))))
        XCTAssertTrue(first.pseudonym("123456782").hasPrefix("subject:"))
        XCTAssertTrue(first.pseudonym(":123456782").hasPrefix("subject:"))

        let attributes = try FileManager.default.attributesOfItem(atPath: state + "/secret")
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        XCTAssertEqual(attributes[.size] as? Int, 32)

        let otherNode = try Pseudonymizer(stateDirectory: temporaryDirectory(self))
        XCTAssertNotEqual(otherNode.pseudonym(bsn), p, "keyed: another secret gives other pseudonyms")

        chmod(state + "/secret", 0o644)
        XCTAssertThrowsError(try Pseudonymizer(stateDirectory: state)) { XCTAssertTrue("\($0)".contains("chmod 600")) }
        XCTAssertThrowsError(try Pseudonymizer(secret: [1, 2, 3]))
    }

    func testLogboekSubjectTypesComeFromThePseudonymsKind() {
        XCTAssertEqual(Pseudonymizer.dataSubjectIDType(ofPseudonym: "bsn:ab"), "BSN")
        XCTAssertEqual(Pseudonymizer.dataSubjectIDType(ofPseudonym: "address:ab"), "urn:waakvlam:data-subject:address")
    }
}

final class ReaderTests: XCTestCase {
    /// Two signals about one person, one about another; deliveries in several states.
    private func makeJournal() throws -> (dir: String, person: String, other: String) {
        let dir = temporaryDirectory(self)
        let pseudonyms = try Pseudonymizer(secret: [UInt8](repeating: 7, count: 32))
        let person = pseudonyms.pseudonym("bsn:123456782")
        let other = pseudonyms.pseudonym("address:1621AB|12|")
        let journal = try Journal.openForTest(dir)
        try journal.append([Sample.received("s1", subjects: [person], at: time(0)),
                            Sample.decision("s1", to: "gemeente-hoorn", at: time(1)),
                            Sample.decision("s1", to: "politie", allowed: false, at: time(1))])
        try journal.append([Sample.received("s2", type: "zorgsignaal", to: ["1hoorn"], subjects: [person, other], at: time(100)),
                            Sample.decision("s2", to: "1hoorn", at: time(101))])
        try journal.append([Sample.received("s3", from: "politie", to: ["gemeente-hoorn"], subjects: [other], at: time(200)),
                            Sample.decision("s3", to: "gemeente-hoorn", at: time(201))])
        try journal.append([.delivered(Delivered(signalID: "s1", recipientID: "gemeente-hoorn", via: .push, at: time(5)))])
        try journal.append([.expired(Expired(signalID: "s2", recipientID: "1hoorn", at: time(900)))])
        journal.close()
        return (dir, person, other)
    }

    func testQueryFiltersBySignalOrganisationTypeKindAndTime() throws {
        let (dir, _, _) = try makeJournal()
        let reader = try JournalReader(directory: dir)
        XCTAssertEqual(try reader.records(matching: JournalQuery()).count, 9)
        XCTAssertEqual(try reader.records(matching: JournalQuery(signalID: "s1")).map(\.position.sequence), [1, 2, 3, 8])
        XCTAssertEqual(try reader.records(matching: JournalQuery(organisation: "politie")).map(\.position.sequence), [3, 6])
        XCTAssertEqual(try reader.records(matching: JournalQuery(signalType: "zorgsignaal")).map(\.position.sequence), [4, 5, 9])
        XCTAssertEqual(try reader.records(matching: JournalQuery(kind: .decision, since: time(100), until: time(150)))
            .map(\.position.sequence), [5])
    }

    func testSubjectAccessListsWhoReceivedWhatUnderWhichRule() throws {
        let (dir, person, other) = try makeJournal()
        let reader = try JournalReader(directory: dir)
        let disclosures = try reader.subject(pseudonym: person)
        XCTAssertEqual(disclosures.map(\.signalID), ["s1", "s1", "s2"])
        XCTAssertEqual(disclosures.map(\.recipientID), ["gemeente-hoorn", "politie", "1hoorn"])
        XCTAssertEqual(disclosures.map(\.outcome), [.delivered, .denied, .expired])
        XCTAssertEqual(disclosures[0].deliveredAt, time(5))
        XCTAssertEqual(disclosures[0].ruleID, "hoorn-overlast-1")
        XCTAssertEqual(disclosures[0].convenantVersion, "3")
        XCTAssertEqual(disclosures[0].fieldsDelivered, ["adres", "soort"])
        XCTAssertEqual(disclosures[1].fieldsDelivered, [])
        XCTAssertEqual(try reader.subject(pseudonym: other).map(\.signalID), ["s2", "s3"])
        XCTAssertEqual(try reader.subject(pseudonym: "bsn:unknown").count, 0)
    }

    func testLogboekExportHasOneLinePerActionPerSubject() throws {
        let (dir, person, other) = try makeJournal()
        var lines: [[String: Any]] = []
        try JournalReader(directory: dir).exportLogboek { line in
            lines.append(try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any])
        }
        // s1: received, shared, denied, delivered (1 subject); s2: received, shared, expired (2
        // subjects); s3: received, shared (1 subject).
        XCTAssertEqual(lines.count, 4 + 3 * 2 + 2)
        for line in lines {
            for key in ["trace_id", "span_id", "name", "start_time", "end_time", "status_code", "attributes", "resource"] {
                XCTAssertNotNil(line[key], "\(key) missing in \(line)")
            }
            let attributes = line["attributes"] as! [String: Any]
            XCTAssertNotNil(attributes["dpl.core.processing_activity_id"])
            XCTAssertTrue([person, other].contains(attributes["dpl.core.data_subject_id"] as! String))
            XCTAssertEqual((line["trace_id"] as! String).count, 32)
            XCTAssertEqual((line["span_id"] as! String).count, 16)
        }
        let s1 = lines.filter { ($0["attributes"] as! [String: Any])["waakvlam.signal_id"] as? String == "s1" }
        XCTAssertEqual(s1.map { $0["name"] as! String },
                       ["waakvlam.signal.received", "waakvlam.signal.shared", "waakvlam.signal.denied", "waakvlam.signal.delivered"])
        XCTAssertEqual(s1[0]["span_id"] as? String, "00f067aa0ba902b7")
        XCTAssertEqual(s1[1]["parent_span_id"] as? String, "00f067aa0ba902b7")
        XCTAssertEqual((s1[0]["attributes"] as! [String: Any])["dpl.core.data_subject_id_type"] as? String, "BSN")
        XCTAssertEqual((s1[1]["attributes"] as! [String: Any])["dpl.core.processing_activity_id"] as? String,
                       "https://register.example/activiteiten/overlast")
        XCTAssertEqual(s1[1]["status_code"] as? String, "STATUS_CODE_OK")
        XCTAssertEqual(s1[2]["status_code"] as? String, "STATUS_CODE_UNSET")
        XCTAssertEqual(s1[3]["start_time"] as? String, "2026-09-21T14:13:21.000Z")
        XCTAssertEqual(s1[3]["end_time"] as? String, "2026-09-21T14:13:25.000Z")
        // Nine actions, one span each, shared by the action's subjects; the three receipts carry
        // the submitter's span id, which the samples reuse.
        XCTAssertEqual(Set(lines.map { $0["span_id"] as! String }).count, 7)
    }
}
