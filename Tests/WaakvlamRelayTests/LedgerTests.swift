import Foundation
import XCTest
import WaakvlamCore
@testable import WaakvlamRelay
@testable import WaakvlamTransport

/// The rent-ledger reader: CSV as spreadsheets write it, the column mapping, the per-row
/// checks with their messages, and the episode ids.
final class LedgerTests: XCTestCase {
    static let header = "Huurdernummer;Voorletters;Tussenvoegsel;Achternaam;Straat;Huisnummer;Toevoeging;Postcode;Woonplaats;"
        + "Achterstand;Achterstand sinds;Persoonlijk contact geprobeerd;Gewezen op schuldhulp;Herinnering verstuurd;"
        + "Datum herinnering;Aanbod gegevens doorgeven;Bezwaar"
    static let goodRow = "H-1;J.;van;Dijk;Grote Noord;12;a;1621 ab;Hoorn;1482.50;2026-01-15;ja;ja;ja;2026-02-01;ja;nee"
    let today = LocalDate("2026-11-21")!

    private func entries(_ lines: [String], mapping: LedgerMapping = .standard) throws -> [LedgerEntry] {
        try Ledger.read(CSVTable.parse(Data(([Self.header] + lines).joined(separator: "\n").utf8)), mapping: mapping, today: today)
    }

    private func refusal(_ row: String) throws -> LedgerRowRefusal {
        let entry = try XCTUnwrap(try entries([row]).first)
        guard case .refused(let refusal) = entry.content else {
            XCTFail("row was not refused: \(entry.content)")
            throw LedgerFileError.empty
        }
        return refusal
    }

    /// `goodRow` with the cell of column `header` replaced.
    private func row(_ header: String, _ value: String) -> String {
        let names = Self.header.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        var cells = Self.goodRow.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        cells[names.firstIndex(of: header)!] = value
        return cells.joined(separator: ";")
    }

    // MARK: CSV

    func testSemicolonFileWithBOMQuotesAndLineBreaksInsideQuotes() throws {
        let text = "\u{FEFF}a;b;c\r\n1;\"x;y\";\"say \"\"hi\"\"\"\r\n\r\n2;\"two\nlines\";z\r\n;;\r\n3;;\n"
        let table = try CSVTable.parse(Data(text.utf8))
        XCTAssertEqual(table.delimiter, UInt8(ascii: ";"))
        XCTAssertEqual(table.header, ["a", "b", "c"])
        XCTAssertEqual(table.records.map(\.fields), [["1", "x;y", "say \"hi\""], ["2", "two\nlines", "z"], ["3", "", ""]])
        // Spreadsheet row numbers: the header is row 1, the empty lines count, a quoted line
        // break does not start a row.
        XCTAssertEqual(table.records.map(\.row), [2, 4, 6])
    }

    func testCommaAndTabDelimitersAreDetected() throws {
        XCTAssertEqual(try CSVTable.parse(Data("a,b;c,d\n1,2;3,4".utf8)).header, ["a", "b;c", "d"])
        let tabbed = try CSVTable.parse(Data("a\tb\n1\t2\n".utf8))
        XCTAssertEqual(tabbed.delimiter, 9)
        XCTAssertEqual(tabbed.records.map(\.fields), [["1", "2"]])
        // A quoted header cell holding the other delimiter does not mislead the detection.
        XCTAssertEqual(try CSVTable.parse(Data("\"a,b\";c\n1;2".utf8)).header, ["a,b", "c"])
    }

    func testFileLevelErrorsSayWhatToDo() throws {
        var windows1252 = Data("Huurdernummer;Achternaam\nH-1;Dijk\nH-2;Cr".utf8)
        windows1252.append(0xE9) // é in Windows-1252
        windows1252.append(contentsOf: Array("mer\n".utf8))
        XCTAssertThrowsError(try CSVTable.parse(windows1252)) { error in
            XCTAssertEqual(error as? LedgerFileError, .notUTF8(line: 3))
            XCTAssertTrue("\(error)".contains("CSV UTF-8"))
        }
        XCTAssertThrowsError(try CSVTable.parse(Data())) { XCTAssertEqual($0 as? LedgerFileError, .noDelimiter) }
        XCTAssertThrowsError(try CSVTable.parse(Data("just one column\n1\n".utf8))) { XCTAssertEqual($0 as? LedgerFileError, .noDelimiter) }
        XCTAssertThrowsError(try CSVTable.parse(Data("a;b\n1;\"open\n2;3\n".utf8))) {
            XCTAssertEqual($0 as? LedgerFileError, .unterminatedQuote(row: 2))
        }
    }

    func testTextAfterAClosingQuoteRefusesOnlyThatRow() throws {
        let result = try entries([Self.goodRow, row("Achternaam", "\"Dijk\"x"), row("Huurdernummer", "H-3")])
        XCTAssertEqual(result.count, 3)
        guard case .refused(let refusal) = result[1].content else { return XCTFail("\(result[1])") }
        XCTAssertEqual(refusal.code, "invalid_row")
        XCTAssertTrue(refusal.message.contains("after its closing quote"), refusal.message)
        guard case .alert = result[2].content else { return XCTFail("\(result[2])") }
    }

    // MARK: Mapping

    func testAValidRowBecomesExactlyThePayloadOfBetalingsachterstand() throws {
        let entry = try XCTUnwrap(try entries([Self.goodRow]).first)
        XCTAssertEqual(entry.row, 2)
        XCTAssertEqual(entry.tenant, "H-1")
        guard case .alert(let alert) = entry.content else { return XCTFail("\(entry.content)") }
        XCTAssertEqual(alert.arrearsStart, LocalDate("2026-01-15"))
        XCTAssertEqual(alert.payload, [
            "bedrag": .number(1482.5), "ontstaansdatum": .string("2026-01-15"), "signaaldatum": .string("2026-11-21"),
            "signaalpartnerType": .string("Huur"), "Voorletters": .string("J."), "Voorvoegsel": .string("van"),
            "Achternaam": .string("Dijk"), "Straatnaam": .string("Grote Noord"), "Huisnummer": .integer(12),
            "Huisnummertoevoeging": .string("a"), "Postcode": .string("1621AB"), "Plaatsnaam": .string("Hoorn"),
            "persoonlijkContactGeprobeerd": .boolean(true), "gewezenOpSchuldhulp": .boolean(true),
            "schriftelijkeHerinneringVerstuurd": .boolean(true), "herinneringsdatum": .string("2026-02-01"),
            "aanbodGegevensDoorgeven": .boolean(true), "bezwaarGemaakt": .boolean(false),
        ])
        // Empty optional cells are left out rather than sent empty.
        let sparse = try XCTUnwrap(try entries([row("Tussenvoegsel", "")]).first)
        guard case .alert(let second) = sparse.content else { return XCTFail("\(sparse.content)") }
        XCTAssertNil(second.payload["Voorvoegsel"])
    }

    func testHeadersMatchWithoutCaseOrSpacesAndFieldNamesWorkAsHeaders() throws {
        let text = " huurdernummer ;ACHTERNAAM;Postcode;huisnummer;bedrag;ontstaansdatum;signaaldatum;persoonlijkContactGeprobeerd;"
            + "gewezenOpSchuldhulp;schriftelijkeHerinneringVerstuurd;herinneringsdatum;aanbodGegevensDoorgeven;bezwaarGemaakt;Kleur\n"
            + "7;Dijk;1621AB;3;10;2026-01-01;2026-11-01;j;j;j;2026-02-01;j;n;blauw\n"
        let entry = try XCTUnwrap(try Ledger.read(CSVTable.parse(Data(text.utf8)), mapping: .standard, today: today).first)
        guard case .alert(let alert) = entry.content else { return XCTFail("\(entry.content)") }
        XCTAssertEqual(alert.payload["signaaldatum"], .string("2026-11-01"), "a signaaldatum column wins over today")
        XCTAssertEqual(alert.payload["bedrag"], .number(10))
        XCTAssertEqual(alert.payload.count, 13, "unmapped columns such as Kleur are not sent: \(alert.payload.keys.sorted())")
    }

    func testMissingRequiredColumnsStopTheFileAndNameTheColumns() throws {
        let text = "Huurdernummer;Achternaam;Huisnummer\nH-1;Dijk;3\n"
        XCTAssertThrowsError(try Ledger.read(CSVTable.parse(Data(text.utf8)), mapping: .standard, today: today)) { error in
            guard case .missingColumns(let missing) = error as? LedgerFileError else { return XCTFail("\(error)") }
            XCTAssertTrue(missing.contains("'Postcode' for Postcode"), "\(missing)")
            XCTAssertTrue(missing.contains("'Achterstand' for bedrag"), "\(missing)")
            XCTAssertFalse(missing.contains { $0.contains("Voorletters") }, "optional columns may be absent")
            XCTAssertTrue("\(error)".contains("--mapping"))
        }
    }

    func testMappingFileWithCommentsAndItsMistakes() throws {
        let file = """
        // The export of our ledger system
        {
          "Contract": "huurderReferentie", "Naam": "Achternaam", "PC": "Postcode", "Nr": "Huisnummer",
          "Saldo": "bedrag", "Sinds": "ontstaansdatum", "A": "persoonlijkContactGeprobeerd", "B": "gewezenOpSchuldhulp",
          "C": "schriftelijkeHerinneringVerstuurd", "C-datum": "herinneringsdatum", "D": "aanbodGegevensDoorgeven",
          "Weigering": "bezwaarGemaakt", "Mobiel": "Telefoonnummer",
        }
        """
        let mapping = try LedgerMapping.parse(Data(file.utf8))
        let csv = "Contract,Naam,PC,Nr,Saldo,Sinds,A,B,C,C-datum,D,Weigering\nK9,Dijk,1621AB,3,99.95,2026-01-01,1,1,1,2026-02-01,1,0\n"
        let entry = try XCTUnwrap(try Ledger.read(CSVTable.parse(Data(csv.utf8)), mapping: mapping, today: today).first)
        XCTAssertEqual(entry.tenant, "K9")
        guard case .alert(let alert) = entry.content else { return XCTFail("\(entry.content)") }
        XCTAssertEqual(alert.payload["bedrag"], .number(99.95))

        // The printed default reads back as itself.
        XCTAssertEqual(Set(try LedgerMapping.parse(Data(LedgerMapping.standard.json.utf8)).entries.map { "\($0.header)=\($0.target)" }),
                       Set(LedgerMapping.standard.entries.map { "\($0.header)=\($0.target)" }))

        func mappingError(_ text: String) -> String {
            do {
                _ = try LedgerMapping.parse(Data(text.utf8))
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertTrue(mappingError(file.replacingOccurrences(of: "\"Achternaam\"", with: "\"achternaam\"")).contains("did you mean 'Achternaam'"))
        XCTAssertTrue(mappingError(file.replacingOccurrences(of: "\"Sinds\": \"ontstaansdatum\",", with: "")).contains("no column maps to 'ontstaansdatum'"))
        XCTAssertTrue(mappingError(file.replacingOccurrences(of: "\"Mobiel\"", with: "\"Naam\"")).contains("appears twice"))
        XCTAssertTrue(mappingError("{\"Saldo\": 3}").contains("field name in quotes"))
        XCTAssertTrue(mappingError("{\"Saldo\": \"zorgNotitie\"}").contains("not a field a ledger column can fill"), "health notes are never mapped")
        XCTAssertTrue(mappingError("{\"Saldo\": ").contains("line 1"))
    }

    func testTwoPresentColumnsForOneFieldOrARepeatedHeaderStopTheFile() throws {
        let mapping = try LedgerMapping(LedgerMapping.standard.entries + [LedgerMapping.Entry(header: "Saldo", target: "bedrag")])
        let ambiguous = Self.header + ";Saldo\n" + Self.goodRow + ";1.00\n"
        XCTAssertThrowsError(try Ledger.read(CSVTable.parse(Data(ambiguous.utf8)), mapping: mapping, today: today)) {
            XCTAssertEqual($0 as? LedgerFileError, .ambiguousColumns(field: "bedrag", headers: ["Achterstand", "Saldo"]))
        }
        let repeated = Self.header + ";postcode\n" + Self.goodRow + ";1621AB\n"
        XCTAssertThrowsError(try Ledger.read(CSVTable.parse(Data(repeated.utf8)), mapping: .standard, today: today)) {
            XCTAssertEqual($0 as? LedgerFileError, .duplicateHeader("Postcode"))
        }
    }

    // MARK: Rows

    func testEveryBadCellGetsAReasonThatSaysWhatToWrite() throws {
        let cases: [(column: String, value: String, expected: String)] = [
            ("Postcode", "", "'Postcode' is empty: fill it in (a postcode such as 1621AB)"),
            ("Postcode", "162AB", "'Postcode' is not a postcode: write four digits and two letters"),
            ("Achterstand", "12,50", "'Achterstand' (bedrag) uses a comma: write the amount with a point"),
            ("Achterstand", "1.234,56", "uses a comma"),
            ("Achterstand", "-12.50", "'Achterstand' (bedrag) is negative"),
            ("Achterstand", "€ 12.50", "is not an amount: write euros with a point"),
            ("Achterstand", "12.505", "one or two decimals"),
            ("Achterstand", "0.00", "is 0"),
            ("Achterstand sinds", "15-01-2026", "'Achterstand sinds' (ontstaansdatum) is written day-month-year: write the date as YYYY-MM-DD"),
            ("Achterstand sinds", "15/1/2026", "written day-month-year"),
            ("Achterstand sinds", "2026-02-30", "is not an existing date in the format YYYY-MM-DD"),
            ("Achterstand sinds", "januari", "is not a date in the format YYYY-MM-DD"),
            ("Datum herinnering", "", "'Datum herinnering' (herinneringsdatum) is empty: fill it in (a date as YYYY-MM-DD"),
            ("Huisnummer", "12a", "'Huisnummer' is not a whole number: write only the number"),
            ("Achternaam", "", "'Achternaam' is empty"),
            ("Huurdernummer", "", "every row needs the tenant reference"),
            ("Bezwaar", "misschien", "'Bezwaar' (bezwaarGemaakt) must be ja or nee"),
        ]
        for (column, value, expected) in cases {
            let refused = try refusal(row(column, value))
            XCTAssertEqual(refused.code, "invalid_row", "\(column)=\(value)")
            XCTAssertEqual(refused.reasons.count, 1, "\(column)=\(value): \(refused.reasons)")
            XCTAssertTrue(refused.message.contains(expected), "\(column)=\(value): \(refused.message)")
            if value.count > 1 {
                XCTAssertFalse(refused.message.contains(value), "the reason must not repeat the value: \(refused.message)")
            }
        }
        // Several problems in one row are all named.
        let several = try refusal(row("Postcode", "").replacingOccurrences(of: "1482.50", with: "12,50"))
        XCTAssertEqual(several.reasons.count, 2, several.message)
    }

    func testPreconditionsAndObjectionAreRefusedBeforeAnythingLeaves() throws {
        let unmet = try refusal(row("Gewezen op schuldhulp", "nee"))
        XCTAssertEqual(unmet.code, "precondition_not_met")
        XCTAssertTrue(unmet.message.contains("(b) not attested: 'Gewezen op schuldhulp' (gewezenOpSchuldhulp) must be ja"), unmet.message)
        XCTAssertTrue(unmet.message.contains("Besluit gemeentelijke schuldhulpverlening art. 2"))
        let objected = try refusal(row("Bezwaar", "ja"))
        XCTAssertEqual(objected.code, "tenant_objected")
        XCTAssertTrue(objected.message.contains("refused to have the details passed on"), objected.message)
    }

    func testRowsWithTheWrongNumberOfFields() throws {
        XCTAssertTrue(try refusal("H-1;J.;van").message.contains("has 3 fields where the header has 17"))
        let trailing = try XCTUnwrap(try entries([Self.goodRow + ";;"]).first)
        guard case .alert = trailing.content else { return XCTFail("empty trailing fields are harmless: \(trailing.content)") }
        XCTAssertEqual(try refusal(Self.goodRow + ";x").code, "invalid_row")
    }

    func testRepeatedEpisodesInOneFile() throws {
        let result = try entries([Self.goodRow, Self.goodRow, row("Achterstand", "99.00"), row("Achterstand sinds", "2026-01-16")])
        XCTAssertEqual(result[1].content, .duplicate(ofRow: 2))
        guard case .refused(let conflict) = result[2].content else { return XCTFail("\(result[2].content)") }
        XCTAssertEqual(conflict.code, "duplicate_row")
        XCTAssertTrue(conflict.message.contains("row 2 has the same tenant reference and arrears start"), conflict.message)
        guard case .alert = result[3].content else { return XCTFail("another arrears start is another episode") }
    }

    // MARK: Ids

    func testEpisodeIDsAreStableNameBasedUUIDs() throws {
        let start = LocalDate("2026-01-15")!
        let id = Ledger.signalID(corporation: "00000099000000020000", tenant: "H-1", arrearsStart: start)
        // Fixed forever: a changed derivation would send every open episode again.
        XCTAssertEqual(id, Ledger.signalID(corporation: "00000099000000020000", tenant: "H-1", arrearsStart: start))
        XCTAssertEqual(id, "342c8680-6eaa-847e-b183-336d4ea093ff")
        XCTAssertTrue(SignalSubmission.isValidID(id))
        let uuid = try XCTUnwrap(UUID(uuidString: id))
        XCTAssertEqual(uuid.uuid.6 >> 4, 8, "version 8 (RFC 9562, name-based with SHA-256)")
        XCTAssertEqual(uuid.uuid.8 >> 6, 2, "RFC 9562 variant")
        let others = [
            Ledger.signalID(corporation: "00000099000000990000", tenant: "H-1", arrearsStart: start),
            Ledger.signalID(corporation: "00000099000000020000", tenant: "H-2", arrearsStart: start),
            Ledger.signalID(corporation: "00000099000000020000", tenant: "H-1", arrearsStart: LocalDate("2026-01-16")!),
            Ledger.signalID(corporation: "00000099000000020000", tenant: "H-1", arrearsStart: start, attempt: 1),
            Ledger.signalID(corporation: "00000099000000020000", tenant: "H-1", arrearsStart: start, attempt: 2),
            // The parts are separated, so moving text between them gives another id.
            Ledger.signalID(corporation: "00000099000000020000H", tenant: "-1", arrearsStart: start),
        ]
        XCTAssertEqual(Set(others + [id]).count, others.count + 1)
    }

    // MARK: Client pieces

    func testTheSubmissionBodyIsWhatTheNodeParses() throws {
        let payload: [String: PayloadValue] = ["bedrag": .number(12.5), "Huisnummer": .integer(3), "Achternaam": .string("O\"Brien\n"),
                                               "bezwaarGemaakt": .boolean(false)]
        let signal = OutgoingSignal(id: "abc-1", type: "betalingsachterstand", to: ["gemeente-hoorn", "00000099000000040000"], routeByAddress: true, payload: payload)
        guard case .success(let parsed) = SignalSubmission.parse(Data(signal.body)) else { return XCTFail(String(decoding: signal.body, as: UTF8.self)) }
        XCTAssertEqual(parsed, SignalSubmission(id: "abc-1", type: "betalingsachterstand",
                                                recipients: [.organisation("gemeente-hoorn"), .organisation("00000099000000040000"), .gemeenteOfAddress],
                                                payload: payload))
        let routed = OutgoingSignal(id: "abc-2", type: "t", routeByAddress: true, payload: [:])
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(routed.body)) as? [String: Any])
        XCTAssertNil(object["to"])
        XCTAssertEqual(object["routeByAddress"] as? Bool, true)
    }

    func testNodeTimestampsAreRead() {
        XCTAssertEqual(SignalAnswer.parseTimestamp("2026-11-21T10:00:00.250Z"), Date(timeIntervalSince1970: 1_795_255_200.25))
        XCTAssertEqual(SignalAnswer.parseTimestamp("2026-11-21T10:00:00Z"), Date(timeIntervalSince1970: 1_795_255_200))
        for bad in ["2026-11-21 10:00:00Z", "2026-11-21T10:00:00", "2026-11-21T25:00:00Z", "2026-11-21T10:00:00.Z", "2026-13-01T10:00:00Z", ""] {
            XCTAssertNil(SignalAnswer.parseTimestamp(bad), bad)
        }
    }

    func testClientConfigurationFileAndNodeURL() throws {
        let folder = NSTemporaryDirectory() + "waakvlam-client-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = folder + "/client.json"
        try """
        // Intermaris' connection to the West-Friesland node
        { node: "https://localhost:8473", cert: "pki/intermaris.crt", key: "/etc/waakvlam/intermaris.key", ca: "pki/ca.pem" }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let loaded = try ClientSettings.load(file: file)
        XCTAssertEqual(loaded, ClientSettings(node: "https://localhost:8473", certificate: folder + "/pki/intermaris.crt",
                                              key: "/etc/waakvlam/intermaris.key", ca: folder + "/pki/ca.pem"))
        let flags = ClientSettings(node: "https://127.0.0.1:9000").filled(from: loaded)
        XCTAssertEqual(flags.node, "https://127.0.0.1:9000")
        XCTAssertEqual(flags.ca, loaded.ca)
        XCTAssertEqual(try flags.endpoint(), Endpoint(host: "127.0.0.1", port: 9000))
        XCTAssertEqual(try ClientSettings(node: "https://[::1]:8443/").endpoint(), Endpoint(host: "::1", port: 8443))
        XCTAssertEqual(try ClientSettings(node: "https://waakvlam.example.nl").endpoint(), Endpoint(host: "waakvlam.example.nl", port: 443))
        for bad in ["http://localhost:8443", "localhost:8443", "https://localhost:8443/v1/signals", "https://localhost:99999"] {
            XCTAssertThrowsError(try ClientSettings(node: bad).endpoint(), bad) { XCTAssertEqual($0 as? ClientError, .invalidNodeURL(bad)) }
        }
        XCTAssertThrowsError(try ClientSettings().endpoint()) { XCTAssertTrue("\($0)".contains("--node")) }
        XCTAssertThrowsError(try SignalClient(settings: ClientSettings(node: "https://127.0.0.1:8443", certificate: file, key: folder + "/none.key", ca: file))) {
            XCTAssertTrue("\($0)".contains("the private key file \(folder)/none.key does not exist or cannot be read; check --key"), "\($0)")
        }
        XCTAssertThrowsError(try SignalClient(settings: ClientSettings(node: "https://127.0.0.1:8443", certificate: file))) {
            XCTAssertEqual($0 as? ClientError, .missingSetting("key"))
        }

        try "{ node: \"https://x\", certificate: \"a\" }".write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ClientSettings.load(file: file)) { XCTAssertTrue("\($0)".contains("unknown key 'certificate'"), "\($0)") }
        XCTAssertThrowsError(try ClientSettings.load(file: folder + "/missing.json")) { XCTAssertTrue("\($0)".contains("cannot be read")) }
    }

    func testReportQuotesTheDelimiterAndSummaryCounts() {
        let results = [
            LedgerRowResult(row: 2, tenant: "H-1", outcome: .sent, signalID: "id-1", recipients: ["gemeente-hoorn"]),
            LedgerRowResult(row: 3, tenant: "H;2", outcome: .refused, code: "invalid_row", reason: "'Postcode' is empty; \"x\""),
            LedgerRowResult(row: 4, tenant: "H-3", outcome: .alreadySent, signalID: "id-3", recipients: ["gemeente-medemblik"]),
        ]
        XCTAssertEqual(LedgerReport.csv(results), [
            "row;tenant;outcome;recipients;code;reason;signal_id",
            "2;H-1;sent;gemeente-hoorn;;;id-1",
            #"3;"H;2";refused;;invalid_row;"'Postcode' is empty; ""x""";"#,
            "4;H-3;already-sent;gemeente-medemblik;;;id-3",
        ].joined(separator: "\n") + "\n")
        // The report reads back with the ledger's own CSV reader.
        let table = try? CSVTable.parse(Data(LedgerReport.csv(results, delimiter: UInt8(ascii: ",")).utf8))
        XCTAssertEqual(table?.records[1].fields[5], "'Postcode' is empty; \"x\"")
        let summary = LedgerReport.summary(results, elapsed: 2)
        XCTAssertTrue(summary.hasPrefix("3 rows in 2.0 s (2 rows/s)"), summary)
        XCTAssertTrue(summary.contains("sent:         1 (gemeente-hoorn 1)"), summary)
        XCTAssertTrue(summary.contains("already sent: 1"), summary)
        XCTAssertTrue(summary.contains("  reasons:      invalid_row 1\n"), summary)
    }
}

/// The ledger sender's reading of the node's answers, against a small node that keeps the
/// contract of docs/API.md for `POST /v1/signals` (first answer replayed for a known id with
/// the same content, 409 for other content, the sender's trace continued) and decides by a
/// fixed table. It lets the tests move the clock of earlier decisions and lose answers, which
/// the real node (VroegEropafEndToEndTests) does not allow.
final class LedgerSenderTests: XCTestCase {
    static let oin = "00000099000000020000"
    private var node: ContractNode!
    private var pki: String!

    override func setUpWithError() throws {
        pki = NSTemporaryDirectory() + "waakvlam-ledger-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: pki, withIntermediateDirectories: true)
        let ca = try DevelopmentCA.create(organisation: "Ledger test CA", commonName: "Ledger test CA")
        try PEMFile.write(ca.certificatePEM, to: pki + "/ca.pem", secret: false)
        try ca.issue(CertificateSpec(commonName: "localhost", organisation: "Node", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: .server))
            .write(certificateTo: pki + "/node.crt", keyTo: pki + "/node.key")
        try ca.issue(CertificateSpec(commonName: "intermaris", organisation: "Intermaris", subjectSerialNumber: Self.oin))
            .write(certificateTo: pki + "/client.crt", keyTo: pki + "/client.key")
        node = try ContractNode(pki: pki)
    }

    override func tearDown() {
        _ = node?.server.shutdown(gracePeriod: 1)
        try? FileManager.default.removeItem(atPath: pki)
    }

    private func client(port: UInt16? = nil, retryDelays: [TimeInterval] = [0.01, 0.01]) throws -> SignalClient {
        try SignalClient(settings: ClientSettings(node: "https://127.0.0.1:\(port ?? node.server.port)", certificate: pki + "/client.crt",
                                                  key: pki + "/client.key", ca: pki + "/ca.pem"), connections: 4, retryDelays: retryDelays)
    }

    /// Sends as on the day `daysAgo` days before today (UTC), which the node's clock must match.
    private func send(_ entries: [LedgerEntry], daysAgo: Int = 0) throws -> [LedgerRowResult] {
        let today = LocalDate(dayNumber: LocalDate(Date(), in: TimeZone(identifier: "UTC")!).dayNumber - daysAgo)
        let sender = LedgerSender(client: try client(), corporation: Self.oin, concurrency: 4, today: today,
                                  timeZone: TimeZone(identifier: "UTC")!)
        var last: LedgerProgress?
        let results = sender.send(entries, progressInterval: 0.01) { last = $0 }
        XCTAssertEqual(last?.done, entries.count)
        XCTAssertEqual(last?.total, entries.count)
        return results
    }

    /// A ledger entry as `Ledger.read` makes it.
    private func alert(_ tenant: String, row: Int, postcode: String = "1621AB", amount: Double = 500) -> LedgerEntry {
        LedgerEntry(row: row, tenant: tenant, content: .alert(LedgerAlert(arrearsStart: LocalDate("2026-01-15")!, payload: [
            "bedrag": .number(amount), "Postcode": .string(postcode), "Huisnummer": .integer(row), "ontstaansdatum": .string("2026-01-15"),
        ])))
    }

    private func id(_ tenant: String, attempt: Int = 0) -> String {
        Ledger.signalID(corporation: Self.oin, tenant: tenant, arrearsStart: LocalDate("2026-01-15")!, attempt: attempt)
    }

    func testOutcomesAndASecondRunThatSendsNothingNew() throws {
        let entries = [
            alert("H-1", row: 2),
            alert("H-2", row: 3, amount: 10),         // below the table's threshold
            alert("H-3", row: 4, postcode: "9999ZZ"), // outside every area
            LedgerEntry(row: 5, tenant: "H-4", content: .refused(LedgerRowRefusal(code: "invalid_row", reasons: ["'Postcode' is empty"]))),
            LedgerEntry(row: 6, tenant: "H-1", content: .duplicate(ofRow: 2)),
            alert("H-5", row: 7, postcode: "1000AA"), // the node finds the payload invalid
        ]
        let first = try send(entries)
        XCTAssertEqual(first.map(\.outcome), [.sent, .refused, .refused, .refused, .duplicate, .refused])
        XCTAssertEqual(first[0], LedgerRowResult(row: 2, tenant: "H-1", outcome: .sent, signalID: id("H-1"), recipients: ["gemeente-hoorn"]))
        XCTAssertEqual(first[1].code, "arrears_below_threshold")
        XCTAssertEqual(first[1].recipients, ["gemeente-hoorn"])
        XCTAssertEqual(first[2].code, "address_outside_areas")
        XCTAssertEqual(first[3].reason, "'Postcode' is empty")
        XCTAssertNil(first[3].signalID, "a row refused in the file check is not sent")
        XCTAssertEqual(first[5].code, "bad_format")
        XCTAssertEqual(first[5].reason, "payload.Postcode: 'Postcode' must be a postcode such as \"1621AB\"")
        XCTAssertEqual(node.decided, 3, "an invalid payload (400) is not decided")

        let second = try send(entries)
        XCTAssertEqual(node.decided, 3, "the second run makes the node decide nothing new")
        XCTAssertEqual(second.map(\.outcome), [.alreadySent, .refused, .refused, .refused, .duplicate, .refused])
        XCTAssertEqual(second[0].recipients, ["gemeente-hoorn"])
        XCTAssertTrue(second[0].reason?.hasPrefix("sent earlier (received 2026-") == true, second[0].reason ?? "")
        XCTAssertEqual(second[1].code, "arrears_below_threshold")
        XCTAssertTrue(second[1].reason?.contains("refused earlier today") == true, second[1].reason ?? "")
    }

    func testChangedDetailsCountAsSentAndACorrectedRefusalGoesOutUnderTheNextAttempt() throws {
        node.clock = Date(timeIntervalSinceNow: -86_400)
        _ = try send([alert("H-1", row: 2), alert("H-2", row: 3, postcode: "9999ZZ")], daysAgo: 1)
        XCTAssertEqual(node.decided, 2)
        node.clock = nil
        // The next day's export: a higher amount for H-1, a corrected postcode for H-2.
        let nextDay = [alert("H-1", row: 2, amount: 650), alert("H-2", row: 3, postcode: "1622AB")]
        let results = try send(nextDay)
        XCTAssertEqual(results[0].outcome, .alreadySent)
        XCTAssertTrue(results[0].reason?.contains("with other details") == true, results[0].reason ?? "")
        XCTAssertEqual(results[0].signalID, id("H-1"))
        XCTAssertEqual(results[1].outcome, .sent)
        XCTAssertEqual(results[1].signalID, id("H-2", attempt: 1))
        XCTAssertEqual(node.decided, 3, "only the corrected row was decided again")

        let again = try send(nextDay)
        XCTAssertEqual(again.map(\.outcome), [.alreadySent, .alreadySent])
        XCTAssertEqual(again[1].signalID, id("H-2", attempt: 1))
        XCTAssertEqual(node.decided, 3)
    }

    func testARefusalOfAnEarlierDayIsAskedAgainOncePerDay() throws {
        node.clock = Date(timeIntervalSinceNow: -86_400)
        _ = try send([alert("H-2", row: 3, amount: 10)], daysAgo: 1)
        node.clock = nil
        let today = try send([alert("H-2", row: 3, amount: 10)])
        XCTAssertEqual(node.decided, 2, "a refusal of yesterday is not today's answer: asked again under attempt 1")
        XCTAssertEqual(today[0].outcome, .refused)
        XCTAssertEqual(today[0].signalID, id("H-2", attempt: 1))
        _ = try send([alert("H-2", row: 3, amount: 10)])
        XCTAssertEqual(node.decided, 2, "asked once per day")
    }

    func testAnAlertThatExpiredUndeliveredIsSentAgainOnALaterDay() throws {
        node.clock = Date(timeIntervalSinceNow: -86_400)
        XCTAssertEqual(try send([alert("H-1", row: 2)], daysAgo: 1).map(\.outcome), [.sent])
        node.expire(id("H-1"))
        let sameDay = try send([alert("H-1", row: 2)], daysAgo: 1)
        XCTAssertEqual(sameDay.map(\.outcome), [.failed])
        XCTAssertEqual(sameDay[0].code, "expired")
        XCTAssertEqual(node.decided, 1)
        node.clock = nil
        let nextDay = try send([alert("H-1", row: 2)])
        XCTAssertEqual(nextDay.map(\.outcome), [.sent])
        XCTAssertEqual(nextDay[0].signalID, id("H-1", attempt: 1))
        XCTAssertEqual(node.decided, 2)
    }

    func testALostAnswerIsRetriedUnderTheSameTraceSoTheRowCountsAsSent() throws {
        node.loseAnswers = 1  // decided and stored, but the answer does not arrive: 503
        let results = try send([alert("H-1", row: 2)])
        XCTAssertEqual(results.map(\.outcome), [.sent], "\(results)")
        XCTAssertEqual(node.decided, 1)
        XCTAssertEqual(node.submissions, 2, "sent again after the lost answer, which replayed the first decision")
    }

    func testAnUnreachableNodeFailsTheRestWithoutTryingThem() throws {
        let probe = try Socket.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        close(probe.fd)
        let sender = LedgerSender(client: try client(port: probe.port), corporation: Self.oin, concurrency: 2, today: LocalDate("2026-11-21")!)
        let started = Date()
        let results = sender.send((0..<50).map { alert("H-\($0)", row: $0 + 2) })
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
        XCTAssertTrue(results.allSatisfy { $0.outcome == .failed }, "\(results.map(\.outcome))")
        XCTAssertTrue(results.contains { $0.code == "unreachable" && $0.reason?.contains("cannot reach the node") == true })
        XCTAssertGreaterThan(results.filter { $0.code == "not_sent" }.count, 40)
    }
}

/// See `LedgerSenderTests`.
final class ContractNode: @unchecked Sendable {
    private struct Stored {
        let requestHash: [UInt8]
        let status: Int
        let body: [String: Any]
    }

    private let lock = NSLock()
    private var signals: [String: Stored] = [:]
    private var _decided = 0, _submissions = 0, _loseAnswers = 0
    private var _clock: Date?
    private(set) var server: HTTPServer!

    var decided: Int { lock.withLock { _decided } }
    var submissions: Int { lock.withLock { _submissions } }
    var loseAnswers: Int {
        get { lock.withLock { _loseAnswers } }
        set { lock.withLock { _loseAnswers = newValue } }
    }
    /// The time recorded for new decisions (nil: now).
    var clock: Date? {
        get { lock.withLock { _clock } }
        set { lock.withLock { _clock = newValue } }
    }

    init(pki: String) throws {
        let tls = try TLSContext(role: .server, certificateChain: pki + "/node.crt", privateKey: pki + "/node.key", trustedCAs: pki + "/ca.pem")
        server = try HTTPServer(configuration: HTTPServer.Configuration(endpoint: Endpoint(host: "127.0.0.1", port: 0)), tls: tls) { [unowned self] request, _ in
            self.respond(request)
        }
        try server.start()
    }

    /// The node gave up delivering `id`: its allowed recipients become `expired`.
    func expire(_ id: String) {
        lock.withLock {
            guard let stored = signals[id] else { return }
            var body = stored.body
            body["recipients"] = (body["recipients"] as? [[String: Any]] ?? []).map { recipient in
                var changed = recipient
                if changed["decision"] as? String == "allowed" { changed["state"] = "expired" }
                return changed
            }
            signals[id] = Stored(requestHash: stored.requestHash, status: stored.status, body: body)
        }
    }

    private func respond(_ request: HTTPRequest) -> HTTPResponse {
        switch (request.method, String(request.path)) {
        case ("GET", "/v1/whoami"):
            return .json(status: 200, object: ["organisation": ["id": "intermaris", "oin": LedgerSenderTests.oin, "name": "Intermaris", "sector": "corporatie"]])
        case ("POST", "/v1/signals"):
            return submit(request)
        case ("GET", let path) where path.hasPrefix("/v1/signals/"):
            guard let stored = lock.withLock({ signals[String(path.dropFirst("/v1/signals/".count))] }) else {
                return .error(status: 404, code: "not_found", message: "no such signal")
            }
            return .json(status: 200, object: stored.body)
        default:
            return .error(status: 404, code: "not_found", message: "no route")
        }
    }

    private func submit(_ request: HTTPRequest) -> HTTPResponse {
        guard case .success(let submission) = SignalSubmission.parse(Data(request.body)) else {
            return .error(status: 400, code: "invalid", message: "not a submission")
        }
        let hash = Array(submission.type.utf8) + Array(Payload.canonicalJSON(submission.payload))
        lock.lock()
        defer { lock.unlock() }
        _submissions += 1
        if let stored = signals[submission.id] {
            guard stored.requestHash == hash else {
                return .error(status: 409, code: "id_reused_with_other_content", message: "A signal with this id and different content was already accepted.")
            }
            return .json(status: stored.status, object: stored.body)
        }
        guard case .string(let postcode)? = submission.payload["Postcode"], !postcode.hasPrefix("10") else {
            return .json(status: 400, object: ["error": ["code": "bad_format", "field": "payload.Postcode",
                                                         "message": "'Postcode' must be a postcode such as \"1621AB\""]])
        }
        var recipient: [String: Any]
        if postcode.hasPrefix("9") {
            recipient = ["recipient": "gemeente-of-address", "decision": "denied", "code": "address_outside_areas", "message": "No gemeente serves this area."]
        } else if case .number(let amount)? = submission.payload["bedrag"], amount < 50 {
            recipient = ["recipient": "gemeente-hoorn", "decision": "denied", "code": "arrears_below_threshold", "message": "The arrears are too young."]
        } else {
            recipient = ["recipient": "gemeente-hoorn", "decision": "allowed", "fields": submission.payload.keys.sorted(), "state": "pending"]
        }
        let traceID = request.headers["traceparent"]!.split(separator: "-")[1]
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var body: [String: Any] = ["id": submission.id, "type": submission.type, "receivedAt": formatter.string(from: _clock ?? Date()),
                                   "traceparent": "00-\(traceID)-00f067aa0ba902b7-01", "recipients": [recipient]]
        let allowed = recipient["decision"] as? String == "allowed"
        if !allowed { body["error"] = ["code": "all_recipients_denied", "message": "No recipient may receive this signal."] }
        signals[submission.id] = Stored(requestHash: hash, status: allowed ? 202 : 403, body: body)
        _decided += 1
        if _loseAnswers > 0 {
            _loseAnswers -= 1
            return .error(status: 503, code: "journal_unavailable", message: "try again")
        }
        return .json(status: allowed ? 202 : 403, object: body)
    }
}
