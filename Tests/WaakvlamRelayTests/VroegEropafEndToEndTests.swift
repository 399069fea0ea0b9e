import Foundation
import XCTest
import WaakvlamCore
@testable import WaakvlamRelay
import WaakvlamSystem
import WaakvlamTransport

/// Vroeg Eropaf end to end: the West-Friesland example (Intermaris with homes in Hoorn and
/// Koggenland, threshold 30 days, inbox delivery, and Medemblik, threshold 60 days, push
/// delivery) run by `waakvlamd` as a child process, a rent ledger sent with `waakvlam send`,
/// and the gemeenten reading what arrived.
final class VroegEropafEndToEndTests: XCTestCase {
    private static var shared: LedgerSite?
    private var site: LedgerSite { Self.shared! }

    override class func setUp() {
        shared = try! LedgerSite()
    }

    override class func tearDown() {
        shared?.stop()
        shared = nil
    }

    /// 10,000 rows over three gemeenten: valid ones, ones below the threshold of their
    /// gemeente, addresses outside every area, bad cells, unmet preconditions, a value only the
    /// node checks, and repeated rows. Every valid row reaches exactly its gemeente with
    /// exactly the fields of the rule; every other row is refused with its reason; the same
    /// file sent again sends nothing new.
    func testTenThousandRowLedgerReachesExactlyTheRightGemeenten() throws {
        let ledger = GeneratedLedger(rows: 10_000, today: LocalDate(Date(), in: TimeZone(identifier: "Europe/Amsterdam")!))
        let csvPath = site.root + "/ledger.csv", mappingPath = site.root + "/mapping.json", reportPath = site.root + "/report.csv"
        try ledger.csv.write(toFile: csvPath, atomically: true, encoding: .utf8)
        // The default mapping plus the BSN, which the rule does not allow: the node must drop it.
        try (String(LedgerMapping.standard.json.dropLast(3)) + ",\n  \"BSN\": \"Burgerservicenummer\"\n}\n")
            .write(toFile: mappingPath, atomically: true, encoding: .utf8)

        // 16 connections: each of the node's fsyncs is shared by more alerts (group commit).
        let send = ["send", "--client-config", site.clientConfig, "--csv", csvPath, "--mapping", mappingPath, "--report", reportPath, "--concurrency", "16"]
        let first = try site.waakvlam(send)
        XCTAssertEqual(first.status, 1, "rows were refused, so the exit status is 1: \(first.stderr)")
        print("first run of \(ledger.rows.count) rows: " + (first.stderr.split(separator: "\n").first { $0.contains("rows in") } ?? "?"))
        let report = try Self.report(reportPath)
        XCTAssertEqual(report.count, ledger.rows.count)

        var expectedInbox: [String: [String: [String: PayloadValue]]] = [:]  // gemeente -> id -> payload
        for row in ledger.rows {
            let line = try XCTUnwrap(report[row.row], "row \(row.row) is in the report")
            XCTAssertEqual(line.tenant, row.tenant)
            switch row.expectation {
            case .delivered(let gemeente, let payload):
                XCTAssertEqual(line.outcome, "sent", "row \(row.row): \(line)")
                XCTAssertEqual(line.recipients, gemeente, "row \(row.row)")
                expectedInbox[gemeente, default: [:]][line.signalID] = payload
            case .duplicate(let of):
                XCTAssertEqual(line.outcome, "duplicate", "row \(row.row): \(line)")
                XCTAssertTrue(line.reason.contains("row \(of)"), line.reason)
            case .refused(let code, let phrase, let recipient):
                XCTAssertEqual(line.outcome, "refused", "row \(row.row): \(line)")
                XCTAssertEqual(line.code, code, "row \(row.row): \(line)")
                XCTAssertTrue(line.reason.contains(phrase), "row \(row.row): '\(line.reason)' should contain '\(phrase)'")
                XCTAssertEqual(line.recipients, recipient ?? "", "row \(row.row)")
            }
        }
        XCTAssertEqual(Set(expectedInbox.keys), ["gemeente-hoorn", "gemeente-koggenland", "gemeente-medemblik"])

        // What arrived: the inboxes of Hoorn and Koggenland, Medemblik's endpoint by push.
        var phase = Date()
        for gemeente in ["gemeente-hoorn", "gemeente-koggenland"] {
            let received = try site.drainInbox(gemeente)
            XCTAssertEqual(received.count, expectedInbox[gemeente]!.count, gemeente)
            XCTAssertEqual(Set(received.keys), Set(expectedInbox[gemeente]!.keys), gemeente)
            for (id, message) in received {
                try Self.check(message, id: id, expected: expectedInbox[gemeente]![id])
            }
        }
        print("inboxes of Hoorn and Koggenland read and acknowledged in \(String(format: "%.1f", -phase.timeIntervalSinceNow)) s")
        phase = Date()
        let medemblik = expectedInbox["gemeente-medemblik"]!
        let pushed = try site.waitForPushes(count: medemblik.count, timeout: 60)
        print("pushes to Medemblik complete \(String(format: "%.1f", -phase.timeIntervalSinceNow)) s later")
        XCTAssertEqual(Set(pushed.keys), Set(medemblik.keys))
        for (id, message) in pushed {
            try Self.check(message, id: id, expected: medemblik[id])
        }

        // The same file again: nothing new.
        let pushesBefore = site.pushCount
        let second = try site.waakvlam(send)
        XCTAssertEqual(second.status, 1)
        print("second run: " + (second.stderr.split(separator: "\n").first { $0.contains("rows in") } ?? "?"))
        XCTAssertTrue(second.stderr.contains("  sent:         0\n"), second.stderr)
        let again = try Self.report(reportPath)
        for row in ledger.rows {
            let line = try XCTUnwrap(again[row.row])
            switch row.expectation {
            case .delivered(let gemeente, _):
                XCTAssertEqual(line.outcome, "already-sent", "row \(row.row): \(line)")
                XCTAssertEqual(line.recipients, gemeente)
                XCTAssertEqual(line.signalID, report[row.row]!.signalID)
            case .duplicate:
                XCTAssertEqual(line.outcome, "duplicate")
            case .refused(let code, _, _):
                XCTAssertEqual(line.outcome, "refused", "row \(row.row): \(line)")
                XCTAssertEqual(line.code, code)
            }
        }
        for gemeente in ["gemeente-hoorn", "gemeente-koggenland"] {
            XCTAssertEqual(try site.drainInbox(gemeente).count, 0, "\(gemeente) gets nothing new")
        }
        Thread.sleep(forTimeInterval: 1.5)
        XCTAssertEqual(site.pushCount, pushesBefore, "Medemblik gets nothing new")
    }

    /// One alert with the single-signal mode; the gemeente's feedback reaches the corporation
    /// as only "opgepakt", and nothing else gets through.
    func testFeedbackReachesTheCorporationAsOnlyTheStatus() throws {
        let today = LocalDate(Date(), in: TimeZone(identifier: "Europe/Amsterdam")!)
        let payloadPath = site.root + "/alert.json"
        try Self.alertPayload(today: today).write(toFile: payloadPath, atomically: true, encoding: .utf8)
        let id = "feedback-\(UUID().uuidString.lowercased())"
        let arguments = ["send", "--client-config", site.clientConfig, "--type", "betalingsachterstand", "--route-by-address",
                         "--payload", payloadPath, "--id", id]
        let sent = try site.waakvlam(arguments)
        XCTAssertEqual(sent.status, 0, sent.stderr)
        let answer = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(sent.stdout.utf8)) as? [String: Any])
        let recipient = try XCTUnwrap((answer["recipients"] as? [[String: Any]])?.first)
        XCTAssertEqual(recipient["recipient"] as? String, "gemeente-hoorn")
        XCTAssertEqual(Set(recipient["droppedFields"] as? [String] ?? []), ["Burgerservicenummer", "zorgNotitie"])
        let resent = try site.waakvlam(arguments)
        XCTAssertEqual(resent.status, 0)
        XCTAssertTrue(resent.stderr.contains("nothing was sent again"), resent.stderr)

        let inbox = try site.drainInbox("gemeente-hoorn")
        XCTAssertEqual(Array(inbox.keys), [id])
        let payload = try XCTUnwrap(inbox[id]?["payload"] as? [String: Any])
        XCTAssertNil(payload["Burgerservicenummer"])
        XCTAssertNil(payload["zorgNotitie"])

        XCTAssertEqual(try site.request("gemeente-koggenland", "POST", "/v1/signals/\(id)/feedback", ["status": "opgepakt"]).status, 404,
                       "only a recipient may give feedback")
        let reason = try site.request("gemeente-hoorn", "POST", "/v1/signals/\(id)/feedback", ["status": "in behandeling"])
        XCTAssertEqual(reason.status, 403)
        XCTAssertEqual((reason.json["error"] as? [String: Any])?["code"] as? String, "feedback_status_not_allowed")
        let taken = try site.request("gemeente-hoorn", "POST", "/v1/signals/\(id)/feedback", ["status": "opgepakt"])
        XCTAssertEqual(taken.status, 202, "\(taken.json)")
        // A reason is never passed on: the feedback is refused, not shortened.
        let withReason = try site.request("gemeente-hoorn", "POST", "/v1/signals/\(id)/feedback",
                                          ["status": "niet opgepakt", "fields": ["reden": "huurder wil geen hulp"]])
        XCTAssertEqual(withReason.status, 403, "\(withReason.json)")
        XCTAssertEqual((withReason.json["error"] as? [String: Any])?["code"] as? String, "feedback_field_not_allowed")

        let corporation = try site.drainInbox("intermaris")
        XCTAssertEqual(corporation.count, 1, "\(corporation)")
        let feedback = try XCTUnwrap(corporation.values.first)
        XCTAssertEqual(feedback["type"] as? String, "terugmelding")
        XCTAssertEqual(feedback["payload"] as? [String: String], ["signaal": id, "status": "opgepakt"], "only the status reaches the corporation")
    }

    func testSingleSignalRefusalsExitNonZeroWithTheNodesReason() throws {
        let today = LocalDate(Date(), in: TimeZone(identifier: "Europe/Amsterdam")!)
        let outside = site.root + "/outside.json"
        try Self.alertPayload(today: today).replacingOccurrences(of: "1624KM", with: "9711AB").write(toFile: outside, atomically: true, encoding: .utf8)
        let denied = try site.waakvlam(["send", "--client-config", site.clientConfig, "--type", "betalingsachterstand", "--route-by-address", "--payload", outside])
        XCTAssertEqual(denied.status, 1)
        XCTAssertTrue(denied.stderr.contains("HTTP 403 all_recipients_denied"), denied.stderr)
        XCTAssertTrue(denied.stderr.contains("address_outside_areas"), denied.stderr)

        let incomplete = site.root + "/incomplete.json"
        try Self.alertPayload(today: today).replacingOccurrences(of: "Achternaam: \"Voorbeeld\",", with: "")
            .write(toFile: incomplete, atomically: true, encoding: .utf8)
        let invalid = try site.waakvlam(["send", "--client-config", site.clientConfig, "--type", "betalingsachterstand", "--route-by-address", "--payload", incomplete])
        XCTAssertEqual(invalid.status, 1)
        XCTAssertTrue(invalid.stderr.contains("HTTP 400"), invalid.stderr)
        XCTAssertTrue(invalid.stderr.contains("Achternaam"), invalid.stderr)

        let noCA = try site.waakvlam(["send", "--node", "https://127.0.0.1:\(site.port)", "--cert", site.pki("intermaris.crt"),
                                      "--key", site.pki("intermaris.key"), "--type", "betalingsachterstand", "--route-by-address", "--payload", outside])
        XCTAssertEqual(noCA.status, 2)
        XCTAssertTrue(noCA.stderr.contains("no ca given: pass --ca"), noCA.stderr)
    }

    // MARK: - Helpers

    private struct ReportLine {
        let tenant, outcome, recipients, code, reason, signalID: String
    }

    private static func report(_ path: String) throws -> [Int: ReportLine] {
        let table = try CSVTable.parse(try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(table.header, LedgerReport.columns)
        var lines: [Int: ReportLine] = [:]
        for record in table.records {
            let f = record.fields
            lines[Int(f[0])!] = ReportLine(tenant: f[1], outcome: f[2], recipients: f[3], code: f[4], reason: f[5], signalID: f[6])
        }
        return lines
    }

    /// A delivered message holds exactly the expected payload and says who sent it.
    private static func check(_ message: [String: Any], id: String, expected: [String: PayloadValue]?) throws {
        let expected = try XCTUnwrap(expected, "\(id) was not expected here")
        XCTAssertEqual(message["type"] as? String, "betalingsachterstand")
        XCTAssertEqual((message["sender"] as? [String: Any])?["id"] as? String, "intermaris")
        let payloadObject = try XCTUnwrap(message["payload"])
        guard case .success(let payload) = Payload.parse(try JSONSerialization.data(withJSONObject: payloadObject)) else {
            return XCTFail("payload of \(id) is not flat JSON")
        }
        XCTAssertEqual(payload, expected, id)
    }

    /// The example payload of Config/payloads with dates around `today`.
    private static func alertPayload(today: LocalDate) -> String {
        func day(_ offset: Int) -> String { LocalDate(dayNumber: today.dayNumber + offset).description }
        return """
        {
          bedrag: 1482.50, ontstaansdatum: "\(day(-90))", signaaldatum: "\(day(0))", signaalpartnerType: "Huur",
          Voorletters: "J.", Voorvoegsel: "van", Achternaam: "Voorbeeld", Geboortedatum: "1971-03-08",
          Burgerservicenummer: "999990019", Straatnaam: "Voorbeeldstraat", Postcode: "1624KM", Huisnummer: 12,
          Plaatsnaam: "Hoorn", persoonlijkContactGeprobeerd: true, gewezenOpSchuldhulp: true,
          schriftelijkeHerinneringVerstuurd: true, herinneringsdatum: "\(day(-30))", aanbodGegevensDoorgeven: true,
          bezwaarGemaakt: false, zorgNotitie: "Interne notitie.",
        }
        """
    }
}

/// A ledger export with a known fate for every row.
struct GeneratedLedger {
    enum Expectation {
        case delivered(gemeente: String, payload: [String: PayloadValue])
        case refused(code: String, phrase: String, recipient: String?)
        case duplicate(of: Int)
    }

    struct Row {
        let row: Int
        let tenant: String
        let cells: [String]
        let expectation: Expectation
    }

    static let header = ["Huurdernummer", "Voorletters", "Tussenvoegsel", "Achternaam", "Geboortedatum", "BSN", "Straat", "Huisnummer",
                         "Toevoeging", "Postcode", "Woonplaats", "Telefoon", "E-mail", "Achterstand", "Achterstand sinds",
                         "Persoonlijk contact geprobeerd", "Gewezen op schuldhulp", "Herinnering verstuurd", "Datum herinnering",
                         "Aanbod gegevens doorgeven", "Bezwaar"]

    /// Four-digit areas well inside each gemeente's postcode areas, the threshold of its rule
    /// and its place name.
    static let gemeenten: [(id: String, areas: ClosedRange<Int>, threshold: Int, place: String)] = [
        ("gemeente-hoorn", 1620...1628, 30, "Hoorn"),
        ("gemeente-koggenland", 1631...1636, 30, "Avenhorn"),
        ("gemeente-medemblik", 1671...1679, 60, "Medemblik"),
    ]

    let rows: [Row]
    let today: LocalDate

    init(rows count: Int, today: LocalDate) {
        self.today = today
        var random = SplitMix64(seed: 20_261_121)
        var rows: [Row] = []
        let letters = Array("ABCDEFGHIJKLMNOPRSTUVWXZ")
        for index in 0..<count {
            let number = index + 2
            let tenant = String(format: "H-%06d", index + 1)
            let gemeente = Self.gemeenten[Int(random.next() % 3)]
            let postcode = "\(gemeente.areas.lowerBound + Int(random.next() % UInt64(gemeente.areas.count)))"
                + String(letters[Int(random.next() % 24)]) + String(letters[Int(random.next() % 24)])
            let roll = Int(random.next() % 100)
            // Arrears age: comfortably above the threshold, or (for the "below" rows) below it
            // with a margin, so that a date change during the test changes nothing.
            var age = gemeente.threshold + 3 + Int(random.next() % 150)
            if (70..<80).contains(roll) { age = gemeente.threshold == 60 && roll % 2 == 0 ? 31 + Int(random.next() % 26) : Int(random.next() % 27) }
            let start = LocalDate(dayNumber: today.dayNumber - age)
            let reminder = LocalDate(dayNumber: start.dayNumber + age / 2)
            let amount = String(format: "%d.%02d", 50 + Int(random.next() % 3000), 1 + Int(random.next() % 99))
            let houseNumber = 1 + Int(random.next() % 200)
            let phone = String(format: "06-%08d", Int(random.next() % 100_000_000))
            var cells = [tenant, "A.B.", index % 7 == 0 ? "van der" : "", "Achternaam\(index)", "1980-05-17", "999990019",
                         "Straat \(index % 50)", String(houseNumber), index % 5 == 0 ? "bis" : "", postcode, gemeente.place,
                         phone, "huurder\(index)@example.nl", amount, start.description, "ja", "ja", "ja",
                         reminder.description, "ja", "nee"]
            func set(_ column: String, _ value: String) { cells[Self.header.firstIndex(of: column)!] = value }
            let expectation: Expectation
            switch roll {
            case 0..<70:
                expectation = .delivered(gemeente: gemeente.id, payload: Self.payload(cells, today: today))
            case 70..<80:
                expectation = .refused(code: "arrears_below_threshold", phrase: "days old; this rule requires at least \(gemeente.threshold) days",
                                       recipient: gemeente.id)
            case 80..<83:
                set("Postcode", "9711" + postcode.suffix(2))
                expectation = .refused(code: "address_outside_areas", phrase: "outside every gemeente's postcode areas", recipient: "gemeente-of-address")
            case 83..<93:
                let problems: [(String, String, String)] = [
                    ("Postcode", "", "'Postcode' is empty"),
                    ("Postcode", "162AB", "'Postcode' is not a postcode"),
                    ("Achterstand", amount.replacingOccurrences(of: ".", with: ","), "write the amount with a point"),
                    ("Achterstand", "-" + amount, "is negative"),
                    ("Achterstand sinds", String(format: "%02d-%02d-%04d", start.day, start.month, start.year), "write the date as YYYY-MM-DD"),
                    ("Achternaam", "", "'Achternaam' is empty"),
                    ("Huisnummer", "\(houseNumber)a", "is not a whole number"),
                ]
                let problem = problems[roll % problems.count]
                set(problem.0, problem.1)
                expectation = .refused(code: "invalid_row", phrase: problem.2, recipient: nil)
            case 83..<96 where roll % 2 == 0:
                set("Gewezen op schuldhulp", "nee")
                expectation = .refused(code: "precondition_not_met", phrase: "(b) not attested", recipient: nil)
            case 83..<96:
                set("Bezwaar", "ja")
                expectation = .refused(code: "tenant_objected", phrase: "refused to have the details passed on", recipient: nil)
            case 96..<98:
                set("Telefoon", "12345")
                expectation = .refused(code: "bad_format", phrase: "Telefoonnummer", recipient: nil)
            default:
                if let earlier = rows.last(where: { if case .delivered = $0.expectation { true } else { false } }) {
                    rows.append(Row(row: number, tenant: earlier.tenant, cells: earlier.cells, expectation: .duplicate(of: earlier.row)))
                    continue
                }
                expectation = .delivered(gemeente: gemeente.id, payload: Self.payload(cells, today: today))
            }
            rows.append(Row(row: number, tenant: tenant, cells: cells, expectation: expectation))
        }
        self.rows = rows
    }

    /// What the gemeente must receive for these cells: every field of the rule, not the BSN.
    static func payload(_ cells: [String], today: LocalDate) -> [String: PayloadValue] {
        func cell(_ column: String) -> String { cells[header.firstIndex(of: column)!] }
        var payload: [String: PayloadValue] = [
            "Voorletters": .string(cell("Voorletters")), "Achternaam": .string(cell("Achternaam")),
            "Geboortedatum": .string(cell("Geboortedatum")), "Straatnaam": .string(cell("Straat")),
            "Huisnummer": .integer(Int(cell("Huisnummer"))!), "Postcode": .string(cell("Postcode")),
            "Plaatsnaam": .string(cell("Woonplaats")), "Telefoonnummer": .string(cell("Telefoon")),
            "Emailadres": .string(cell("E-mail")), "bedrag": .number(Double(cell("Achterstand"))!),
            "ontstaansdatum": .string(cell("Achterstand sinds")), "signaaldatum": .string(today.description),
            "signaalpartnerType": .string("Huur"), "persoonlijkContactGeprobeerd": .boolean(true),
            "gewezenOpSchuldhulp": .boolean(true), "schriftelijkeHerinneringVerstuurd": .boolean(true),
            "herinneringsdatum": .string(cell("Datum herinnering")), "aanbodGegevensDoorgeven": .boolean(true),
            "bezwaarGemaakt": .boolean(false),
        ]
        if !cell("Tussenvoegsel").isEmpty { payload["Voorvoegsel"] = .string(cell("Tussenvoegsel")) }
        if !cell("Toevoeging").isEmpty { payload["Huisnummertoevoeging"] = .string(cell("Toevoeging")) }
        return payload
    }

    /// The file as a Dutch spreadsheet writes it: `;`, a byte order mark, CRLF, quotes where needed.
    var csv: String {
        func quoted(_ cell: String) -> String { cell.contains(";") || cell.contains(" ") ? "\"\(cell)\"" : cell }
        return "\u{FEFF}" + ([Self.header] + rows.map(\.cells)).map { $0.map(quoted).joined(separator: ";") }.joined(separator: "\r\n") + "\r\n"
    }
}

/// A small deterministic random generator, so that the ledger is the same on every run.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The West-Friesland example in a temporary folder: its PKI from `waakvlam pki init`,
/// Medemblik's push endpoint on a local HTTPS server, and `waakvlamd` running it.
final class LedgerSite: @unchecked Sendable {
    let root: String
    let port: UInt16
    let clientConfig: String
    private let daemon = Process()
    private var pushServer: HTTPServer?
    private let lock = NSLock()
    private var pushes: [String: [String: Any]] = [:]
    private var pushTotal = 0

    init() throws {
        root = NSTemporaryDirectory() + "waakvlam-vroegeropaf-\(UUID().uuidString)"
        let config = root + "/Config"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Site.packageRoot.appendingPathComponent("Config/examples/westfriesland").path, toPath: config)
        port = try freeLoopbackPort()
        clientConfig = root + "/client.json"
        try """
        {
          node: { name: "waakvlam-e2e", operator: "gemeente-hoorn" },
          listen: { peer: "127.0.0.1:\(port)", admin: "127.0.0.1:\(try freeLoopbackPort())" },
          tls: { ca: "../pki/ca.pem", certificate: "../pki/node.crt", key: "../pki/node.key", crl: null, pins: "../pki/pins.json" },
          state: "../state",
          timeZone: "Europe/Amsterdam",
          delivery: { minimumBackoffSeconds: 1, maximumBackoffSeconds: 2 },
        }
        """.write(toFile: config + "/node.json", atomically: true, encoding: .utf8)
        let pkiInit = try runProcess(Site.binary("waakvlam").path, ["pki", "init", "--config", config, "--out", root + "/pki"])
        guard pkiInit.status == 0 else { throw TransportError.pki("pki init failed: \(pkiInit.stderr)") }

        // Medemblik's receiving endpoint: a certificate of the same CA, mutual TLS.
        let ca = try DevelopmentCA(certificateFile: root + "/pki/ca.pem", keyFile: root + "/pki/ca.key")
        try ca.issue(CertificateSpec(commonName: "schuldhulp.medemblik", organisation: "Gemeente Medemblik", ipAddresses: ["127.0.0.1"], usage: .server))
            .write(certificateTo: root + "/pki/push.crt", keyTo: root + "/pki/push.key")
        let tls = try TLSContext(role: .server, certificateChain: root + "/pki/push.crt", privateKey: root + "/pki/push.key", trustedCAs: root + "/pki/ca.pem")
        let server = try HTTPServer(configuration: HTTPServer.Configuration(endpoint: Endpoint(host: "127.0.0.1", port: 0)), tls: tls) { [weak self] request, _ in
            self?.received(request) ?? HTTPResponse(status: 503)
        }
        try server.start()
        pushServer = server
        let organisations = config + "/organisations.json"
        let text = try String(contentsOfFile: organisations)
        let example = "https://schuldhulp.medemblik.example.nl/vroegsignalering"
        precondition(text.contains(example), "the West-Friesland example has no push endpoint for Medemblik any more")
        try text.replacingOccurrences(of: example, with: "https://127.0.0.1:\(server.port)/vroegsignalering")
            .write(toFile: organisations, atomically: true, encoding: .utf8)

        try "{ node: \"https://127.0.0.1:\(port)\", cert: \"pki/intermaris.crt\", key: \"pki/intermaris.key\", ca: \"pki/ca.pem\" }"
            .write(toFile: clientConfig, atomically: true, encoding: .utf8)

        daemon.executableURL = Site.binary("waakvlamd")
        daemon.arguments = ["--config", config]
        _ = FileManager.default.createFile(atPath: root + "/waakvlamd.log", contents: nil)
        daemon.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: root + "/waakvlamd.log"))
        daemon.standardOutput = FileHandle.nullDevice
        try daemon.run()
        let deadline = Date(timeIntervalSinceNow: 20)
        while (try? request("intermaris", "GET", "/v1/whoami").status) != 200 {
            guard daemon.isRunning, Date() < deadline else {
                throw TransportError.io("waakvlamd did not start: \((try? String(contentsOfFile: root + "/waakvlamd.log")) ?? "")")
            }
            usleep(50_000)
        }
    }

    func stop() {
        if daemon.isRunning {
            daemon.terminate()
            daemon.waitUntilExit()
        }
        _ = pushServer?.shutdown(gracePeriod: 1)
        try? FileManager.default.removeItem(atPath: root)
    }

    func pki(_ name: String) -> String { root + "/pki/" + name }

    func waakvlam(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try runProcess(Site.binary("waakvlam").path, arguments)
    }

    private var clients: [String: HTTPClient] = [:]

    private func client(_ organisation: String) throws -> HTTPClient {
        try lock.withLock {
            if let client = clients[organisation] { return client }
            let tls = try TLSContext(role: .client, certificateChain: pki("\(organisation).crt"), privateKey: pki("\(organisation).key"), trustedCAs: pki("ca.pem"))
            let client = HTTPClient(tls: tls)
            clients[organisation] = client
            return client
        }
    }

    /// A request as `organisation`; the status and the JSON body.
    func request(_ organisation: String, _ method: String, _ target: String, _ body: [String: Any]? = nil) throws -> (status: Int, json: [String: Any]) {
        let data = try body.map { [UInt8](try JSONSerialization.data(withJSONObject: $0)) } ?? []
        let response = try client(organisation).send(HTTPRequest(method: method, target: target, headers: HTTPHeaders([("Content-Type", "application/json")]), body: data),
                                                     to: Endpoint(host: "127.0.0.1", port: port), idempotent: true)
        return (response.status, json(response))
    }

    /// Reads the whole inbox of `organisation` and acknowledges every signal (16 at a time).
    func drainInbox(_ organisation: String) throws -> [String: [String: Any]] {
        var messages: [String: [String: Any]] = [:]
        while true {
            let page = try request(organisation, "GET", "/v1/inbox?limit=500")
            guard page.status == 200 else { throw TransportError.io("inbox of \(organisation): HTTP \(page.status) \(page.json)") }
            let signals = page.json["signals"] as? [[String: Any]] ?? []
            if signals.isEmpty { return messages }
            let ids = signals.compactMap { $0["id"] as? String }
            for (id, message) in zip(ids, signals) { messages[id] = message }
            let failures = Locked(0)
            let group = DispatchGroup()
            for worker in 0..<16 {
                group.enter()
                Thread {
                    for id in ids.enumerated().filter({ $0.offset % 16 == worker }).map(\.element) {
                        if (try? self.request(organisation, "POST", "/v1/inbox/\(id)/ack").status) != 200 { failures.withLock { $0 += 1 } }
                    }
                    group.leave()
                }.start()
            }
            group.wait()
            guard failures.withLock({ $0 }) == 0 else { throw TransportError.io("acknowledging the inbox of \(organisation) failed") }
        }
    }

    private func received(_ request: HTTPRequest) -> HTTPResponse {
        guard request.method == "POST", request.path == "/vroegsignalering",
              let message = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any],
              let id = message["id"] as? String, id == request.headers["waakvlam-signal-id"] else {
            return .error(status: 400, code: "bad_push", message: "not a Waakvlam delivery")
        }
        lock.withLock {
            pushes[id] = message
            pushTotal += 1
        }
        return .json(status: 200, object: ["received": id])
    }

    /// Pushed deliveries so far (a redelivery counts again).
    var pushCount: Int { lock.withLock { pushTotal } }

    func waitForPushes(count: Int, timeout: TimeInterval) throws -> [String: [String: Any]] {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while Date() < deadline {
            let received = lock.withLock { pushes }
            if received.count >= count { return received }
            usleep(100_000)
        }
        return lock.withLock { pushes }
    }
}

/// A value behind a lock, for counters shared by test threads.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func withLock<Result>(_ body: (inout Value) -> Result) -> Result {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
