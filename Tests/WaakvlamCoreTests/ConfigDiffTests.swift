import Foundation
import XCTest
@testable import WaakvlamCore

/// A small configuration as file texts, edited per test by replacing text, then parsed with
/// the real parser (so every edited configuration is also a valid one).
private struct TestConfiguration {
    var files: [String: String] = [
        "node.json": #"{ node: { name: "test", operator: "gemeente-a" } }"#,
        "organisations.json": """
        [
          { id: "gemeente-a", oin: "00000099000000000001", name: "Gemeente A", sector: "gemeente", postcodeAreas: ["1000-1099"] },
          { id: "corp-b", oin: "00000099000000000002", name: "Corporatie B", sector: "corporatie" },
          { id: "zorg-c", oin: "00000099000000000003", name: "Wijkteam C", sector: "zorg" },
          { id: "zorg-d", oin: "00000099000000000004", name: "GGZ D", sector: "zorg" },
          { id: "politie-e", oin: "00000099000000000005", name: "Politie E", sector: "politie" },
        ]
        """,
        "signal-types.json": """
        [
          { id: "zorgsignaal", description: "Zorg over een bewoner.", fields: [
              { name: "Postcode", category: "address", format: "postcode", required: true },
              { name: "waarneming", category: "case", format: "text", required: true },
              { name: "Telefoonnummer", category: "contact", format: "phone" },
              { name: "gezondheid", category: "health", format: "text" },
            ],
            feedback: { statuses: ["opgepakt", "niet opgepakt", "afgerond"], fields: [{ name: "contactpersoon", category: "contact", format: "text" }] } },
          { id: "overlast", description: "Woonoverlast op een adres.", fields: [
              { name: "Postcode", category: "address", format: "postcode", required: true },
              { name: "soort", category: "nuisance", format: "text", required: true },
            ],
            feedback: { statuses: ["opgepakt"] } },
        ]
        """,
        "convenants/zorg-a.json": """
        {
          id: "zorg-a", version: 1, title: "Zorg in A", parties: ["gemeente-a", "corp-b", "zorg-c", "zorg-d"],
          validFrom: "2025-01-01", validUntil: "2029-12-31",
          purpose: "Zorg voor kwetsbare bewoners", legalBasis: "AVG art. 6 lid 1 sub e",
          specialCategoryBasis: { health: "AVG art. 9 lid 2 sub g" },
          processingActivity: "https://register.example/zorg",
          rules: [
            { id: "corp-naar-zorg", from: { organisations: ["corp-b"] }, to: { sectors: ["zorg"] }, signalTypes: ["zorgsignaal"],
              fields: ["Postcode", "waarneming", "Telefoonnummer", "gezondheid"], specialCategories: ["health"], retentionDays: 180,
              feedback: { statuses: ["opgepakt", "niet opgepakt"] } },
            { id: "corp-naar-gemeente", from: { organisations: ["corp-b"] }, to: { organisations: ["gemeente-a"] }, signalTypes: ["zorgsignaal", "overlast"],
              fields: ["Postcode", "waarneming", "soort"], retentionDays: 90 },
          ],
        }
        """,
    ]

    /// Replaces `text` (which must occur) in `file`.
    mutating func edit(_ file: String, _ text: String, _ replacement: String, line: UInt = #line) {
        guard let content = files[file], content.contains(text) else {
            XCTFail("'\(text)' does not occur in \(file)", line: line)
            return
        }
        files[file] = content.replacingOccurrences(of: text, with: replacement)
    }

    func parse(line: UInt = #line) throws -> Configuration {
        let sources = files.map { ConfigSource(path: "t/" + $0.key, bytes: Data($0.value.utf8)) }
        let result = ConfigurationParser.parse(sources, now: ConfigFixtures.now)
        guard let configuration = result.configuration else {
            XCTFail("invalid test configuration:\n" + result.errors.map(\.description).joined(separator: "\n"), line: line)
            throw CocoaError(.fileReadCorruptFile)
        }
        return configuration
    }
}

/// (sender, recipient, type) of the changes of one kind.
private func flows(_ diff: ConfigDiff, _ kind: ConfigChange.Kind) -> [String] {
    diff.changes.filter { $0.kind == kind }.map { "\($0.sender!)->\($0.recipient!):\($0.signalType!)" }
}

private func only(_ diff: ConfigDiff, _ kind: ConfigChange.Kind, file: StaticString = #filePath, line: UInt = #line) throws -> ConfigChange {
    let matches = diff.changes.filter { $0.kind == kind }
    XCTAssertEqual(matches.count, 1, "expected one \(kind) in:\n" + diff.render(), file: file, line: line)
    return try XCTUnwrap(matches.first, file: file, line: line)
}

final class ConfigDiffTests: XCTestCase {
    private let base = TestConfiguration()

    private func diff(_ edit: (inout TestConfiguration) -> Void) throws -> ConfigDiff {
        var edited = base
        edit(&edited)
        return ConfigDiff(old: try base.parse(), new: try edited.parse())
    }

    func testIdenticalConfigurationsHaveNoChanges() throws {
        let diff = ConfigDiff(old: try base.parse(), new: try base.parse())
        XCTAssertTrue(diff.isEmpty)
        XCTAssertEqual(diff.warnings, [])
        XCTAssertEqual(diff.summary, "no changes")
        XCTAssertTrue(diff.render().hasPrefix("No changes"))
        let hoorn = try ConfigFixtures.hoorn()
        XCTAssertTrue(ConfigDiff(old: hoorn, new: hoorn).isEmpty)
    }

    func testFlowsOpenAndCloseWithSectorRulesExpandedToOrganisations() throws {
        let diff = try diff { config in
            config.edit("organisations.json", "\n]", #"  { id: "zorg-f", oin: "00000099000000000006", name: "GGD F", sector: "zorg" },"# + "\n]")
            config.edit("convenants/zorg-a.json", #""zorg-d"],"#, #""zorg-d", "zorg-f"],"#)
            config.edit("convenants/zorg-a.json", #"signalTypes: ["zorgsignaal", "overlast"]"#, #"signalTypes: ["zorgsignaal"]"#)
            config.edit("convenants/zorg-a.json", #"fields: ["Postcode", "waarneming", "soort"]"#, #"fields: ["Postcode", "waarneming"]"#)
        }
        // The sector rule "to every zorg party" now reaches the new party.
        XCTAssertEqual(flows(diff, .flowOpened), ["corp-b->zorg-f:zorgsignaal"])
        let opened = try only(diff, .flowOpened)
        XCTAssertEqual(opened.fields, ["Postcode", "waarneming", "Telefoonnummer", "gezondheid"])
        XCTAssertEqual(opened.convenant, "zorg-a")
        XCTAssertEqual(opened.text, "flow opens: Corporatie B -> GGD F: zorgsignaal with Postcode, waarneming, Telefoonnummer, gezondheid [health]")
        XCTAssertEqual(opened.warning, "GGD F starts receiving health data (gezondheid) in zorgsignaal from Corporatie B")
        XCTAssertEqual(flows(diff, .flowClosed), ["corp-b->gemeente-a:overlast"])
        XCTAssertEqual(try only(diff, .partyJoined).organisation, "zorg-f")
        XCTAssertEqual(try only(diff, .organisationAdded).organisation, "zorg-f")
        XCTAssertEqual(diff.warnings.count, 1)
        XCTAssertEqual(diff.summary, "1 flow opened, 1 closed, 3 other changes, 1 warning")
        let rendered = diff.render()
        XCTAssertTrue(rendered.contains("Convenant 'zorg-a' (Zorg in A), version 1:\n"), rendered)
        XCTAssertTrue(rendered.contains("\n    WARNING: GGD F starts receiving health data"), rendered)
        XCTAssertTrue(rendered.contains("flow closes: Corporatie B -> Gemeente A: overlast"), rendered)
        XCTAssertTrue(rendered.hasSuffix("Summary: 1 flow opened, 1 closed, 3 other changes, 1 warning\n"), rendered)
    }

    func testPartyLeavingClosesItsFlows() throws {
        let diff = try diff { $0.edit("convenants/zorg-a.json", #", "zorg-d"],"#, "],") }
        XCTAssertEqual(try only(diff, .partyLeft).text, "GGZ D (zorg-d) leaves as a party")
        XCTAssertEqual(flows(diff, .flowClosed), ["corp-b->zorg-d:zorgsignaal"])
        XCTAssertEqual(diff.warnings, [])
    }

    func testFieldsARecipientGainsOrLoses() throws {
        let diff = try diff { config in
            config.edit("convenants/zorg-a.json", #"fields: ["Postcode", "waarneming", "Telefoonnummer", "gezondheid"]"#, #"fields: ["Postcode", "waarneming", "gezondheid"]"#)
            config.edit("convenants/zorg-a.json", #"fields: ["Postcode", "waarneming", "soort"]"#, #"fields: ["Postcode", "waarneming", "Telefoonnummer", "soort"]"#)
        }
        XCTAssertEqual(flows(diff, .fieldsGained), ["corp-b->gemeente-a:zorgsignaal"])
        XCTAssertEqual(try only(diff, .fieldsGained).fields, ["Telefoonnummer"])
        XCTAssertEqual(flows(diff, .fieldsLost), ["corp-b->zorg-c:zorgsignaal", "corp-b->zorg-d:zorgsignaal"])
        XCTAssertTrue(diff.changes.filter { $0.kind == .fieldsLost }.allSatisfy { $0.fields == ["Telefoonnummer"] })
        XCTAssertEqual(diff.warnings, [], "contact details are not a special category")
        XCTAssertEqual(flows(diff, .flowOpened) + flows(diff, .flowClosed), [])
        XCTAssertEqual(diff.summary, "3 flows with changed fields, 1 other change")  // plus the version NOTE
        XCTAssertEqual(diff.changes.first?.kind, .versionNotRaised)
    }

    func testRecipientGainingHealthDataIsWarnedAboutAndNarrowingIsNot() throws {
        let widened = try diff { config in
            config.edit("convenants/zorg-a.json", #"fields: ["Postcode", "waarneming", "soort"], retentionDays: 90"#,
                        #"fields: ["Postcode", "waarneming", "soort", "gezondheid"], specialCategories: ["health"], retentionDays: 90"#)
        }
        let granted = try only(widened, .specialCategoryGranted)
        XCTAssertEqual(granted.rule, "corp-naar-gemeente")
        XCTAssertEqual(granted.warning, "rule 'corp-naar-gemeente' newly grants health data")
        let gained = try only(widened, .fieldsGained)
        XCTAssertEqual(gained.fields, ["gezondheid"])
        XCTAssertEqual(gained.warning, "Gemeente A gains health data (gezondheid) in zorgsignaal from Corporatie B")
        XCTAssertEqual(widened.warnings.count, 2)

        // The reverse edit narrows sharing: reported, never warned about.
        var wide = base
        wide.edit("convenants/zorg-a.json", #"fields: ["Postcode", "waarneming", "soort"], retentionDays: 90"#,
                  #"fields: ["Postcode", "waarneming", "soort", "gezondheid"], specialCategories: ["health"], retentionDays: 90"#)
        let narrowed = ConfigDiff(old: try wide.parse(), new: try base.parse())
        XCTAssertEqual(try only(narrowed, .specialCategoryWithdrawn).rule, "corp-naar-gemeente")
        XCTAssertEqual(try only(narrowed, .fieldsLost).fields, ["gezondheid"])
        XCTAssertEqual(narrowed.warnings, [])
    }

    func testFieldBecomingHealthDataIsWarnedAboutPerRecipient() throws {
        let diff = try diff {
            $0.edit("signal-types.json", #"{ name: "Telefoonnummer", category: "contact""#, #"{ name: "Telefoonnummer", category: "health""#)
        }
        let category = try only(diff, .signalTypeFieldCategoryChanged)
        XCTAssertEqual(category.text, "signal type 'zorgsignaal': field 'Telefoonnummer' is now health data (was contact)")
        XCTAssertEqual(flows(diff, .fieldsBecameSpecial), ["corp-b->zorg-c:zorgsignaal", "corp-b->zorg-d:zorgsignaal"])
        XCTAssertEqual(diff.warnings.map(\.kind), [.fieldsBecameSpecial, .fieldsBecameSpecial])
        XCTAssertEqual(diff.warnings.first?.warning, "Wijkteam C now receives health data (Telefoonnummer) in zorgsignaal from Corporatie B")
    }

    func testNewRuleGrantingSpecialCategoryAndNewFlowsAreWarnedAbout() throws {
        let diff = try diff { config in
            config.edit("convenants/zorg-a.json", "  ],\n}", """
                { id: "zorg-naar-gemeente", from: { sectors: ["zorg"] }, to: { organisations: ["gemeente-a"] }, signalTypes: ["zorgsignaal"],
                  fields: ["Postcode", "waarneming", "gezondheid"], specialCategories: ["health"], retentionDays: 30 },
              ],
            }
            """)
        }
        let rule = try only(diff, .ruleAdded)
        XCTAssertEqual(rule.text, "rule 'zorg-naar-gemeente' added: every zorg party -> Gemeente A, zorgsignaal, kept 30 days, grants health data")
        XCTAssertNotNil(rule.warning)
        XCTAssertEqual(flows(diff, .flowOpened), ["zorg-c->gemeente-a:zorgsignaal", "zorg-d->gemeente-a:zorgsignaal"])
        XCTAssertEqual(diff.warnings.count, 3)
        XCTAssertEqual(diff.summary, "2 flows opened, 2 other changes, 3 warnings")
    }

    func testVersionValidityAndConvenantTextChanges() throws {
        let diff = try diff { config in
            let file = "convenants/zorg-a.json"
            config.edit(file, "version: 1", "version: 2")
            config.edit(file, #"validUntil: "2029-12-31""#, #"validUntil: "2027-06-30""#)
            config.edit(file, #"title: "Zorg in A""#, #"title: "Zorg en veiligheid in A""#)
            config.edit(file, #"purpose: "Zorg voor kwetsbare bewoners""#, #"purpose: "Zorg voor en veiligheid van kwetsbare bewoners""#)
            config.edit(file, #"legalBasis: "AVG art. 6 lid 1 sub e""#, #"legalBasis: "AVG art. 6 lid 1 sub c en e""#)
            config.edit(file, #"health: "AVG art. 9 lid 2 sub g""#, #"health: "AVG art. 9 lid 2 sub g jo. UAVG art. 30""#)
            config.edit(file, "https://register.example/zorg", "https://register.example/zorg-en-veiligheid")
        }
        let changes = try XCTUnwrap(diff.convenants.first)
        XCTAssertEqual(changes.oldVersion, 1)
        XCTAssertEqual(changes.newVersion, 2)
        XCTAssertEqual(changes.changes.map(\.kind), [.versionChanged, .validityChanged, .titleChanged, .purposeChanged, .legalBasisChanged,
                                                     .specialCategoryBasisChanged, .processingActivityChanged])
        let validity = try only(diff, .validityChanged)
        XCTAssertEqual(validity.text, "now in force from 2025-01-01 to 2027-06-30 (was 2025-01-01 to 2029-12-31)")
        XCTAssertEqual(validity.before, "2025-01-01 to 2029-12-31")
        XCTAssertEqual(try only(diff, .purposeChanged).after, "Zorg voor en veiligheid van kwetsbare bewoners")
        XCTAssertEqual(try only(diff, .specialCategoryBasisChanged).fields, ["health"])
        XCTAssertEqual(diff.warnings, [])
        XCTAssertTrue(diff.render().contains("Convenant 'zorg-a' (Zorg en veiligheid in A), version 1 -> 2:"))

        // The same edits without a new version number: the administrator is told to raise it.
        let unversioned = try self.diff { $0.edit("convenants/zorg-a.json", #"validUntil: "2029-12-31""#, #"validUntil: "2027-06-30""#) }
        XCTAssertEqual(unversioned.changes.map(\.kind), [.versionNotRaised, .validityChanged])
    }

    func testRetentionFeedbackAndPreconditionChanges() throws {
        let diff = try diff { config in
            config.edit("convenants/zorg-a.json", "retentionDays: 180", "retentionDays: 365")
            config.edit("convenants/zorg-a.json", #"feedback: { statuses: ["opgepakt", "niet opgepakt"] }"#,
                        #"feedback: { statuses: ["opgepakt", "afgerond"], fields: ["contactpersoon"] }"#)
        }
        let retention = try only(diff, .retentionChanged)
        XCTAssertEqual(retention.text, "rule 'corp-naar-zorg': recipients may keep the payload 365 days (was 180)")
        XCTAssertEqual([retention.before, retention.after], ["180", "365"])
        let feedback = try only(diff, .feedbackChanged)
        XCTAssertEqual(feedback.text, "rule 'corp-naar-zorg': feedback from recipients may now report 'afgerond'; may no longer report 'niet opgepakt'; may now add 'contactpersoon'")
        XCTAssertEqual(feedback.after, "opgepakt, afgerond with contactpersoon")

        // The Vroeg Eropaf threshold of the Hoorn example: 30 days -> 2 months.
        var sources = try ConfigFixtures.sources(ConfigFixtures.configFolder)
        let index = try XCTUnwrap(sources.firstIndex { $0.path.hasSuffix("vroeg-eropaf-hoorn.json") })
        let text = String(decoding: sources[index].bytes, as: UTF8.self)
        XCTAssertTrue(text.contains("minimumArrearsDays: 30"))
        sources[index].bytes = Data(text.replacingOccurrences(of: "minimumArrearsDays: 30", with: "minimumArrearsDays: 60").utf8)
        let edited = try XCTUnwrap(ConfigurationParser.parse(sources, now: ConfigFixtures.now).configuration)
        let hoorn = ConfigDiff(old: try ConfigFixtures.hoorn(), new: edited)
        let precondition = try only(hoorn, .preconditionChanged)
        XCTAssertEqual(precondition.text, "rule 'huurachterstand-naar-gemeente': Vroeg Eropaf threshold is now 60 days of arrears (was 30)")
        XCTAssertEqual(precondition.convenant, "vroeg-eropaf-hoorn")
    }

    func testOrganisationChanges() throws {
        let pin = PublicKeyPin.pin(digest: [UInt8](repeating: 9, count: 32))
        let diff = try diff { config in
            config.edit("organisations.json", #"name: "Corporatie B", sector: "corporatie" }"#,
                        #"name: "Corporatie B", sector: "corporatie", pins: ["\#(pin)"], delivery: { mode: "push", endpoint: "https://b.example:8443/signals" } }"#)
            config.edit("organisations.json", #"name: "GGZ D", sector: "zorg" }"#, #"name: "GGZ D", sector: "zorg", suspended: true }"#)
            config.edit("organisations.json", #"postcodeAreas: ["1000-1099"]"#, #"postcodeAreas: ["1000-1089", "1100"], administrator: true"#)
            config.edit("organisations.json", #"  { id: "politie-e", oin: "00000099000000000005", name: "Politie E", sector: "politie" },"# + "\n", "")
        }
        XCTAssertEqual(try only(diff, .pinsChanged).text, "Corporatie B (corp-b): public-key pins 1 added, 0 removed")
        XCTAssertEqual(try only(diff, .deliveryChanged).text, "Corporatie B (corp-b): delivery push to https://b.example:8443/signals (was inbox (pulls its signals))")
        XCTAssertEqual(try only(diff, .organisationSuspended).text, "GGZ D (zorg-d) suspended: nothing flows to or from it")
        let areas = try only(diff, .postcodeAreasChanged)
        XCTAssertEqual(areas.fields, ["1000-1089", "1100", "1000-1099"])
        XCTAssertEqual(try only(diff, .administratorChanged).organisation, "gemeente-a")
        XCTAssertEqual(try only(diff, .organisationRemoved).text, "Politie E (politie-e) removed")
        XCTAssertEqual(diff.convenants, [], "suspension is not reported as flows closing")
        XCTAssertEqual(diff.warnings, [])

        // Lifting a suspension lets health data flow to the organisation again: a warning.
        var suspended = base
        suspended.edit("organisations.json", #"name: "GGZ D", sector: "zorg" }"#, #"name: "GGZ D", sector: "zorg", suspended: true }"#)
        let lifted = ConfigDiff(old: try suspended.parse(), new: try base.parse())
        let unsuspended = try only(lifted, .organisationUnsuspended)
        XCTAssertEqual(unsuspended.warning, "lifting the suspension of GGZ D lets health data flow to or from it again (1 flow)")
        // A party without special-category flows gets no warning.
        var gemeenteSuspended = base
        gemeenteSuspended.edit("organisations.json", #"sector: "gemeente", postcodeAreas"#, #"sector: "gemeente", suspended: true, postcodeAreas"#)
        XCTAssertEqual(ConfigDiff(old: try gemeenteSuspended.parse(), new: try base.parse()).warnings, [])
    }

    func testSectorChangeMovesSectorFlows() throws {
        let diff = try diff { $0.edit("organisations.json", #"name: "GGZ D", sector: "zorg""#, #"name: "GGZ D", sector: "politie""#) }
        XCTAssertEqual(try only(diff, .sectorChanged).after, "politie")
        XCTAssertEqual(flows(diff, .flowClosed), ["corp-b->zorg-d:zorgsignaal"])
    }

    func testConvenantsAddedRemovedAndNewVersionsAlongsideOld() throws {
        var two = base
        two.files["convenants/overlast-a.json"] = """
        { id: "overlast-a", version: 1, title: "Overlast in A", parties: ["gemeente-a", "politie-e"], validFrom: "2026-01-01", validUntil: "2026-12-31",
          purpose: "Overlast aanpakken", legalBasis: "AVG art. 6 lid 1 sub e", processingActivity: "https://register.example/overlast",
          rules: [{ id: "gemeente-naar-politie", from: { organisations: ["gemeente-a"] }, to: { sectors: ["politie"] }, signalTypes: ["overlast"],
                    fields: ["Postcode", "soort"], retentionDays: 30 }] }
        """
        let added = ConfigDiff(old: try base.parse(), new: try two.parse())
        let section = try XCTUnwrap(added.convenants.first)
        XCTAssertEqual([section.id, section.oldVersion.map(String.init), section.newVersion.map(String.init)], ["overlast-a", nil, "1"])
        XCTAssertEqual(section.changes.map(\.kind), [.convenantAdded, .flowOpened])
        XCTAssertEqual(flows(added, .flowOpened), ["gemeente-a->politie-e:overlast"])
        XCTAssertTrue(added.render().contains("Convenant 'overlast-a' (Overlast in A), new, version 1:"))

        let removed = ConfigDiff(old: try two.parse(), new: try base.parse())
        XCTAssertEqual(removed.changes.map(\.kind), [.convenantRemoved, .flowClosed])
        XCTAssertTrue(removed.render().contains("removed, was version 1"))

        // Version 2 next to version 1 (one ends before the other starts): version 1 is
        // unchanged, version 2 is new.
        var versions = two
        versions.files["convenants/overlast-a-2.json"] = two.files["convenants/overlast-a.json"]!
            .replacingOccurrences(of: "version: 1", with: "version: 2")
            .replacingOccurrences(of: #"validFrom: "2026-01-01", validUntil: "2026-12-31""#, with: #"validFrom: "2027-01-01", validUntil: "2028-12-31""#)
            .replacingOccurrences(of: "retentionDays: 30", with: "retentionDays: 60")
        let next = ConfigDiff(old: try two.parse(), new: try versions.parse())
        XCTAssertEqual(next.convenants.map(\.newVersion), [2])
        XCTAssertEqual(next.convenants.map(\.oldVersion), [nil])
    }

    func testSignalTypeAndNodeChanges() throws {
        let diff = try diff { config in
            config.edit("signal-types.json", #"{ name: "soort", category: "nuisance", format: "text", required: true },"#,
                        #"{ name: "soort", category: "nuisance", format: "text", required: true }, { name: "sinds", category: "nuisance", format: "date" },"#)
            config.edit("signal-types.json", #"{ name: "Telefoonnummer", category: "contact", format: "phone" },"#, "")
            config.edit("convenants/zorg-a.json", #""waarneming", "Telefoonnummer", "gezondheid""#, #""waarneming", "gezondheid""#)
            config.edit("node.json", "operator: \"gemeente-a\" }", "operator: \"gemeente-a\" }, listen: { peer: \"0.0.0.0:8443\" }")
        }
        XCTAssertEqual(try only(diff, .signalTypeFieldAdded).text, "signal type 'overlast': field 'sinds' added (nuisance)")
        XCTAssertEqual(try only(diff, .signalTypeFieldRemoved).fields, ["Telefoonnummer"])
        let node = try only(diff, .nodeSettingChanged)
        XCTAssertEqual(node.text, "listen.peer: 127.0.0.1:8443 -> 0.0.0.0:8443")
        XCTAssertEqual(node.setting, "listen.peer")

        // A change that touches no field's name or category is still reported.
        let described = try self.diff { $0.edit("signal-types.json", "Woonoverlast op een adres.", "Woonoverlast op of rond een adres.") }
        XCTAssertEqual(try only(described, .signalTypeChanged).signalType, "overlast")
    }

    func testJSONFormRoundTripsAndCarriesSummaryAndWarnings() throws {
        let diff = try diff { config in
            config.edit("convenants/zorg-a.json", #"fields: ["Postcode", "waarneming", "soort"], retentionDays: 90"#,
                        #"fields: ["Postcode", "waarneming", "soort", "gezondheid"], specialCategories: ["health"], retentionDays: 90"#)
        }
        let json = diff.jsonData()
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        XCTAssertEqual(object["summary"] as? String, diff.summary)
        XCTAssertEqual((object["warnings"] as? [String])?.count, 2)
        let convenants = try XCTUnwrap(object["convenants"] as? [[String: Any]])
        let kinds = (convenants.first?["changes"] as? [[String: Any]])?.compactMap { $0["kind"] as? String }
        XCTAssertEqual(kinds, ["versionNotRaised", "specialCategoryGranted", "fieldsGained"])
        // The JSON decodes back into the same diff (the extra summary keys are ignored).
        XCTAssertEqual(try JSONDecoder().decode(ConfigDiff.self, from: json), diff)
    }
}
