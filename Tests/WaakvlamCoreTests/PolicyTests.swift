import Foundation
import XCTest
@testable import WaakvlamCore

final class PolicyTests: XCTestCase {
    private var hoorn: Configuration!

    override func setUpWithError() throws {
        hoorn = try ConfigFixtures.hoorn()
    }

    /// An instant on a local date (and hour) in Amsterdam.
    private func amsterdam(_ date: String, hour: Int = 12, minute: Int = 0, second: Int = 0) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Europe/Amsterdam")!
        let day = LocalDate(date)!
        return calendar.date(from: DateComponents(year: day.year, month: day.month, day: day.day, hour: hour, minute: minute, second: second))!
    }

    private func samplePayload(_ name: String) throws -> [String: PayloadValue] {
        let data = try Data(contentsOf: ConfigFixtures.configFolder.appendingPathComponent("payloads/\(name).json"))
        return try Payload.parse(data).get()
    }

    private func decide(_ type: String, from sender: String, to recipients: [RecipientRequest], payload: [String: PayloadValue],
                        configuration: Configuration? = nil, at instant: Date? = nil) throws -> [RecipientDecision] {
        let configuration = configuration ?? hoorn!
        let submission = SignalSubmission(id: "test-1", type: type, recipients: recipients, payload: payload)
        let result = PolicyEngine.decide(submission, sender: try XCTUnwrap(configuration.organisation(identifier: sender)),
                                         configuration: configuration, at: instant ?? amsterdam("2026-11-21"))
        guard case .decided(let decisions) = result else {
            XCTFail("refused as invalid: \(result)")
            return []
        }
        return decisions
    }

    private func decideOne(_ type: String, from sender: String, to recipient: String, payload: [String: PayloadValue],
                           configuration: Configuration? = nil, at instant: Date? = nil) throws -> RecipientDecision {
        try XCTUnwrap(try decide(type, from: sender, to: [.organisation(recipient)], payload: payload, configuration: configuration, at: instant).first)
    }

    // MARK: - The issue's cases

    func testSignalIDsMayNotTakeTheNameOfAFeedback() throws {
        XCTAssertTrue(SignalSubmission.isValidID("6f1c2a9e-0b7d-4a51-9d1e-2b8f3c4d5e6f"))
        XCTAssertTrue(SignalSubmission.isValidID("ledger:2026-11:row-12"))
        XCTAssertTrue(SignalSubmission.isValidID("a:terugmelding"), "only the part with both colons is reserved")
        XCTAssertFalse(SignalSubmission.isValidID("X:terugmelding:0011223344556677"))
        XCTAssertFalse(SignalSubmission.isValidID(""))
        XCTAssertFalse(SignalSubmission.isValidID(String(repeating: "a", count: 129)))
        // A sender taking a feedback's id hears why.
        let body = Data(#"{"id": "X:terugmelding:0011223344556677", "type": "zorgsignaal", "to": ["1hoorn"], "payload": {}}"#.utf8)
        guard case .failure(let invalid) = SignalSubmission.parse(body) else { return XCTFail("accepted a reserved id") }
        let issue = try XCTUnwrap(invalid.issues.first { $0.field == "id" })
        XCTAssertEqual(issue.code, .invalidID)
        XCTAssertTrue(issue.message.contains(":terugmelding:"), issue.message)
    }

    func testArrearsAlertWithExtraFieldsIsMinimisedForTheGemeenteAndDeniedForPolitie() throws {
        let payload = try samplePayload("huurachterstand")
        XCTAssertNotNil(payload["Burgerservicenummer"])
        XCTAssertNotNil(payload["zorgNotitie"])
        let decisions = try decide("betalingsachterstand", from: "intermaris", to: [.organisation("gemeente-hoorn"), .organisation("politie-nhn")], payload: payload)
        XCTAssertEqual(decisions.map(\.requested), ["gemeente-hoorn", "politie-nhn"])

        let allowed = try XCTUnwrap(decisions[0].allowed)
        let rule = try XCTUnwrap(hoorn.rule(convenantID: "vroeg-eropaf-hoorn", version: 1, ruleID: "huurachterstand-naar-gemeente")).1
        XCTAssertEqual(allowed.ruleID, rule.id)
        XCTAssertEqual(allowed.convenantID, "vroeg-eropaf-hoorn")
        XCTAssertEqual(allowed.convenantVersion, 1)
        XCTAssertEqual(allowed.processingActivity, "https://register.hoorn.nl/verwerkingen/vroegsignalering-schulden")
        XCTAssertEqual(allowed.retentionDays, 90)
        XCTAssertTrue(Set(allowed.payload.keys).isSubset(of: rule.fields))
        XCTAssertNil(allowed.payload["Burgerservicenummer"])
        XCTAssertNil(allowed.payload["zorgNotitie"])
        XCTAssertEqual(allowed.payload["bedrag"], .number(1482.5))
        XCTAssertEqual(allowed.payload["Huisnummer"], .integer(12))
        XCTAssertEqual(allowed.keptFields, allowed.payload.keys.sorted())
        XCTAssertEqual(allowed.droppedFields, [DroppedField(name: "Burgerservicenummer", category: .identifying, reason: .notInRule),
                                               DroppedField(name: "zorgNotitie", category: .health, reason: .notInRule)])
        XCTAssertEqual(Set(allowed.keptFields).union(allowed.droppedFields.map(\.name)), Set(payload.keys))
        XCTAssertEqual(allowed.feedback.statuses, ["opgepakt", "niet opgepakt"])
        XCTAssertEqual(allowed.feedback.fields, [])

        XCTAssertEqual(decisions[1].recipient?.id, "politie-nhn")
        XCTAssertEqual(decisions[1].denial?.code, .noMatchingRule)
        XCTAssertEqual(decisions[1].denial?.message, "No rule in any convenant lets 'intermaris' send a betalingsachterstand to 'politie-nhn'.")
    }

    func testEachMissingPreconditionIsNamed() throws {
        let payload = try samplePayload("huurachterstand")
        for step in VroegEropaf.attestations {
            var changed = payload
            changed[step.field] = .boolean(false)
            let denial = try XCTUnwrap(try decideOne("betalingsachterstand", from: "intermaris", to: "gemeente-hoorn", payload: changed).denial)
            XCTAssertEqual(denial.code, .preconditionNotMet)
            XCTAssertTrue(denial.message.contains("(\(step.letter)) is not attested: \(step.field) must be true"), denial.message)
            XCTAssertTrue(denial.message.contains("Besluit gemeentelijke schuldhulpverlening art. 2"))
        }
        let sample = try XCTUnwrap(try decideOne("betalingsachterstand", from: "intermaris", to: "gemeente-hoorn", payload: try samplePayload("huurachterstand-zonder-verwijzing")).denial)
        XCTAssertEqual(sample.code, .preconditionNotMet)
        XCTAssertTrue(sample.message.contains("(b)"))

        var two = payload
        two["persoonlijkContactGeprobeerd"] = .boolean(false)
        two["aanbodGegevensDoorgeven"] = .boolean(false)
        let both = try XCTUnwrap(try decideOne("betalingsachterstand", from: "intermaris", to: "gemeente-hoorn", payload: two).denial)
        XCTAssertTrue(both.message.contains("(a)") && both.message.contains("(d)"), both.message)

        var objected = payload
        objected["bezwaarGemaakt"] = .boolean(true)
        XCTAssertEqual(try decideOne("betalingsachterstand", from: "intermaris", to: "gemeente-hoorn", payload: objected).denial?.code, .tenantObjected)

        var futureReminder = payload
        futureReminder["herinneringsdatum"] = .string("2026-11-25")
        let future = try XCTUnwrap(try decideOne("betalingsachterstand", from: "intermaris", to: "gemeente-hoorn", payload: futureReminder).denial)
        XCTAssertEqual(future.code, .preconditionNotMet)
        XCTAssertTrue(future.message.contains("(c) the written reminder (herinneringsdatum) is dated in the future"), future.message)

        var earlyReminder = payload
        earlyReminder["herinneringsdatum"] = .string("2026-09-01")
        XCTAssertTrue(try decideOne("betalingsachterstand", from: "intermaris", to: "gemeente-hoorn", payload: earlyReminder).denial?.message.contains("before the arrears began") == true)
    }

    func testArrearsThreshold() throws {
        let ten = try XCTUnwrap(try decideOne("betalingsachterstand", from: "intermaris", to: "gemeente-hoorn", payload: try samplePayload("huurachterstand-10-dagen")).denial)
        XCTAssertEqual(ten.code, .arrearsBelowThreshold)
        XCTAssertEqual(ten.message, "The arrears are 10 days old; this rule requires at least 30 days before the gemeente may be told.")
        var payload = try samplePayload("huurachterstand")
        payload["herinneringsdatum"] = .string("2026-10-25")
        payload["ontstaansdatum"] = .string("2026-10-22")  // 30 days before 2026-11-21
        XCTAssertNotNil(try decideOne("betalingsachterstand", from: "intermaris", to: "gemeente-hoorn", payload: payload).allowed)
        payload["ontstaansdatum"] = .string("2026-10-23")  // 29 days
        XCTAssertEqual(try decideOne("betalingsachterstand", from: "intermaris", to: "gemeente-hoorn", payload: payload).denial?.code, .arrearsBelowThreshold)
        // Counted in the node's time zone: 23:30 UTC on the 20th is already the 21st in Amsterdam.
        payload["ontstaansdatum"] = .string("2026-10-22")
        let lateEvening = Date(timeIntervalSince1970: 1_795_217_400)  // 2026-11-20T23:30:00Z
        XCTAssertNotNil(try decideOne("betalingsachterstand", from: "intermaris", to: "gemeente-hoorn", payload: payload, at: lateEvening).allowed)
    }

    // MARK: - Validity, suspension, parties

    func testValidityWindowIsInclusiveInTheNodesTimeZone() throws {
        let payload = try samplePayload("zorgsignaal")
        func outcome(_ instant: Date) throws -> DenialCode? {
            try decideOne("zorgsignaal", from: "intermaris", to: "1hoorn", payload: payload, at: instant).denial?.code
        }
        XCTAssertEqual(try outcome(amsterdam("2024-12-31", hour: 23, minute: 59, second: 59)), .convenantNotInForce)
        XCTAssertNil(try outcome(amsterdam("2025-01-01", hour: 0)))        // 2024-12-31T23:00Z
        XCTAssertNil(try outcome(amsterdam("2029-12-31", hour: 23, minute: 59, second: 59)))
        XCTAssertEqual(try outcome(amsterdam("2030-01-01", hour: 0)), .convenantNotInForce)
        let denial = try XCTUnwrap(try decideOne("zorgsignaal", from: "intermaris", to: "1hoorn", payload: payload, at: amsterdam("2030-02-01")).denial)
        XCTAssertEqual(denial.message, "Convenant 'leefbaarheid-hoorn' version 1 is in force from 2025-01-01 to 2029-12-31, not on 2030-02-01.")
    }

    func testVersionsOfAConvenantTakeOverFromEachOther() throws {
        let denHaag = try XCTUnwrap(try ConfigFixtures.parse(ConfigFixtures.configFolder.appendingPathComponent("examples/den-haag")).configuration)
        let overlast: [String: PayloadValue] = ["Postcode": .string("2521AB"), "Huisnummer": .integer(3), "soortOverlast": .string("geluid"), "startdatum": .string("2026-01-05")]
        let before = try decideOne("overlast", from: "staedion", to: "gemeente-den-haag", payload: overlast, configuration: denHaag, at: amsterdam("2026-06-30"))
        XCTAssertEqual(before.allowed?.convenantVersion, 1)
        let after = try decideOne("overlast", from: "staedion", to: "gemeente-den-haag", payload: overlast, configuration: denHaag, at: amsterdam("2026-07-01"))
        XCTAssertEqual(after.allowed?.convenantVersion, 2)
        // Woonfraude arrived with version 2 only.
        let fraude: [String: PayloadValue] = ["Postcode": .string("2521AB"), "Huisnummer": .integer(3), "vermoeden": .string("overbewoning")]
        XCTAssertEqual(try decideOne("woonfraude", from: "staedion", to: "gemeente-den-haag", payload: fraude, configuration: denHaag, at: amsterdam("2026-03-01")).denial?.code, .convenantNotInForce)
        XCTAssertEqual(try decideOne("woonfraude", from: "staedion", to: "gemeente-den-haag", payload: fraude, configuration: denHaag, at: amsterdam("2026-08-01")).allowed?.ruleID, "woonfraude-corporatie-naar-meldpunt")
        // The meldpunt passes a report on to the owning corporation, by sector rule.
        XCTAssertEqual(try decideOne("overlast", from: "gemeente-den-haag", to: "vestia", payload: overlast, configuration: denHaag).allowed?.ruleID, "meldpunt-naar-corporatie")
    }

    private func modified(_ change: (inout [Organisation]) -> Void) -> Configuration {
        var organisations = hoorn.organisations
        change(&organisations)
        return Configuration(node: hoorn.node, organisations: organisations, signalTypes: hoorn.signalTypes, convenants: hoorn.convenants)
    }

    func testSuspendedPartiesReceiveAndSendNothing() throws {
        let payload = try samplePayload("zorgsignaal")
        let recipientSuspended = modified { $0[$0.firstIndex { $0.id == "1hoorn" }!].suspended = true }
        let decisions = try decide("zorgsignaal", from: "intermaris", to: [.organisation("1hoorn"), .organisation("ggz-nhn")], payload: payload, configuration: recipientSuspended)
        XCTAssertEqual(decisions[0].denial?.code, .recipientSuspended)
        XCTAssertNotNil(decisions[1].allowed)
        let senderSuspended = modified { $0[$0.firstIndex { $0.id == "intermaris" }!].suspended = true }
        let denied = try decide("zorgsignaal", from: "intermaris", to: [.organisation("1hoorn"), .organisation("ggz-nhn")], payload: payload, configuration: senderSuspended)
        XCTAssertEqual(denied.map { $0.denial?.code }, [.senderSuspended, .senderSuspended])
    }

    func testSectorRuleDoesNotReachAnOrganisationOutsideTheConvenant() throws {
        let withNewcomer = modified {
            $0.append(Organisation(id: "ggd-hn", oin: "00000099000000990000", name: "GGD Hollands Noorden", sector: .zorg))
        }
        let casus: [String: PayloadValue] = ["Postcode": .string("1624KM"), "Huisnummer": .integer(12), "casusomschrijving": .string("x")]
        let denial = try XCTUnwrap(try decideOne("casusaanmelding", from: "ggd-hn", to: "gemeente-hoorn", payload: casus, configuration: withNewcomer).denial)
        XCTAssertEqual(denial.code, .notAParty)
        XCTAssertEqual(denial.message, "'ggd-hn' is not a party of convenant 'leefbaarheid-hoorn' version 1, whose rules would cover this signal.")
        XCTAssertNotNil(try decideOne("casusaanmelding", from: "1hoorn", to: "gemeente-hoorn", payload: casus).allowed)
    }

    // MARK: - Special categories

    func testHealthDataOnlyWhereTheRuleGrantsIt() throws {
        let payload = try samplePayload("zorgsignaal")
        let decisions = try decide("zorgsignaal", from: "intermaris", to: [.organisation("1hoorn"), .organisation("politie-nhn"), .organisation("gemeente-hoorn")], payload: payload)
        XCTAssertEqual(decisions[0].allowed?.payload["gezondheidsobservatie"], payload["gezondheidsobservatie"])
        XCTAssertEqual(decisions[1].denial?.code, .noMatchingRule)
        XCTAssertTrue(decisions[1].denial!.message.contains("'intermaris' send a zorgsignaal to 'politie-nhn'"))
        let gemeente = try XCTUnwrap(decisions[2].allowed)
        XCTAssertNil(gemeente.payload["gezondheidsobservatie"])
        XCTAssertEqual(gemeente.droppedFields, [DroppedField(name: "gezondheidsobservatie", category: .health, reason: .notInRule)])
    }

    /// A rule that lists a special field without granting its category (a configuration that
    /// validation refuses) still never lets the field through.
    func testSpecialFieldOnTheAllowlistWithoutGrantIsDropped() throws {
        var convenants = hoorn.convenants
        let index = convenants.firstIndex { $0.id == "leefbaarheid-hoorn" }!
        let ruleIndex = convenants[index].rules.firstIndex { $0.id == "zorgsignaal-naar-gemeente" }!
        convenants[index].rules[ruleIndex].fields.append("gezondheidsobservatie")
        let configuration = Configuration(node: hoorn.node, organisations: hoorn.organisations, signalTypes: hoorn.signalTypes, convenants: convenants)
        let allowed = try XCTUnwrap(try decideOne("zorgsignaal", from: "intermaris", to: "gemeente-hoorn", payload: try samplePayload("zorgsignaal"), configuration: configuration).allowed)
        XCTAssertNil(allowed.payload["gezondheidsobservatie"])
        XCTAssertEqual(allowed.droppedFields, [DroppedField(name: "gezondheidsobservatie", category: .health, reason: .specialCategoryNotGranted(.health))])
        // Granted in the rule but without a basis in the convenant: still dropped.
        convenants[index].rules[ruleIndex].specialCategories = [.health]
        convenants[index].specialCategoryBasis[.health] = nil
        let noBasis = Configuration(node: hoorn.node, organisations: hoorn.organisations, signalTypes: hoorn.signalTypes, convenants: convenants)
        XCTAssertNil(try decideOne("zorgsignaal", from: "intermaris", to: "gemeente-hoorn", payload: try samplePayload("zorgsignaal"), configuration: noBasis).allowed?.payload["gezondheidsobservatie"])
    }

    /// A type that requires a special-category field: a recipient whose rule does not grant it
    /// is denied rather than sent an incomplete signal.
    func testRequiredSpecialFieldNotGrantedDenies() throws {
        var types = hoorn.signalTypes
        let index = types.firstIndex { $0.id == "zorgsignaal" }!
        let field = types[index].fields.firstIndex { $0.name == "gezondheidsobservatie" }!
        types[index].fields[field].required = true
        let configuration = Configuration(node: hoorn.node, organisations: hoorn.organisations, signalTypes: types, convenants: hoorn.convenants)
        let decisions = try decide("zorgsignaal", from: "intermaris", to: [.organisation("1hoorn"), .organisation("gemeente-hoorn")], payload: try samplePayload("zorgsignaal"), configuration: configuration)
        XCTAssertNotNil(decisions[0].allowed)
        XCTAssertEqual(decisions[1].denial?.code, .specialCategoryNotGranted)
        XCTAssertTrue(decisions[1].denial!.message.contains("requires 'gezondheidsobservatie', which holds health data"))
    }

    func testTenantOrganisationSignalCarriesNoPersonalData() throws {
        let payload: [String: PayloadValue] = ["wijk": .string("Kersenboogerd"), "postcodegebied": .string("1628"), "thema": .string("eenzaamheid")]
        let decisions = try decide("buurtsignaal", from: "vh-de-boog", to: [.organisation("1hoorn"), .organisation("politie-nhn")], payload: payload)
        XCTAssertEqual(decisions[0].allowed?.payload, payload)
        XCTAssertEqual(decisions[1].denial?.code, .noMatchingRule)
        XCTAssertEqual(try decideOne("zorgsignaal", from: "vh-de-boog", to: "1hoorn", payload: try samplePayload("zorgsignaal")).denial?.code, .noMatchingRule)
    }

    // MARK: - Routing and recipients

    func testRoutingByPostcodeAcrossGemeenten() throws {
        let westfriesland = try XCTUnwrap(try ConfigFixtures.parse(ConfigFixtures.configFolder.appendingPathComponent("examples/westfriesland")).configuration)
        var payload = try samplePayload("huurachterstand")
        payload["ontstaansdatum"] = .string("2026-10-07")  // 45 days
        func route(_ postcode: String) throws -> RecipientDecision {
            var changed = payload
            changed["Postcode"] = .string(postcode)
            return try XCTUnwrap(try decide("betalingsachterstand", from: "intermaris", to: [.gemeenteOfAddress], payload: changed, configuration: westfriesland).first)
        }
        XCTAssertEqual(try route("1624KM").allowed.map { _ in "hoorn" }, "hoorn")
        XCTAssertEqual(try route("1624KM").recipient?.id, "gemeente-hoorn")
        XCTAssertEqual(try route("1689 bc").recipient?.id, "gemeente-hoorn")
        XCTAssertEqual(try route("1633XY").allowed?.ruleID, "huurachterstand-hoorn-koggenland")
        XCTAssertEqual(try route("1633XY").recipient?.id, "gemeente-koggenland")
        let medemblik = try route("1671AB")
        XCTAssertEqual(medemblik.recipient?.id, "gemeente-medemblik")
        XCTAssertEqual(medemblik.requested, "gemeente-of-address")
        XCTAssertEqual(medemblik.denial?.code, .arrearsBelowThreshold)
        XCTAssertTrue(medemblik.denial!.message.contains("45 days old; this rule requires at least 60 days"))
        let outside = try route("1781AA")
        XCTAssertNil(outside.recipient)
        XCTAssertEqual(outside.denial?.code, .addressOutsideAreas)
        XCTAssertEqual(outside.denial?.message, "No gemeente in this configuration serves postcode area 1781; the address lies outside every gemeente's postcode areas.")
    }

    func testRecipientsUnknownByOINAndTwice() throws {
        let payload = try samplePayload("zorgsignaal")
        let ggz = try XCTUnwrap(hoorn.organisation(id: "ggz-nhn"))
        let decisions = try decide("zorgsignaal", from: "intermaris", to: [.organisation(ggz.oin), .organisation("nobody")], payload: payload)
        XCTAssertEqual(decisions[0].recipient?.id, "ggz-nhn")
        XCTAssertEqual(decisions[0].requested, ggz.oin)
        XCTAssertNotNil(decisions[0].allowed)
        XCTAssertEqual(decisions[1].denial?.code, .recipientUnknown)
        let twice = PolicyEngine.decide(SignalSubmission(id: "a", type: "zorgsignaal", recipients: [.organisation("ggz-nhn"), .organisation(ggz.oin)], payload: payload),
                                        sender: hoorn.organisation(id: "intermaris")!, configuration: hoorn, at: amsterdam("2026-11-21"))
        guard case .invalid(let issues) = twice else { return XCTFail("\(twice)") }
        XCTAssertEqual(issues.map(\.code), [.duplicateRecipient])
        let buurt: [String: PayloadValue] = ["wijk": .string("Grote Waal"), "thema": .string("overlast")]
        XCTAssertEqual(try decide("buurtsignaal", from: "vh-de-boog", to: [.gemeenteOfAddress], payload: buurt).first?.denial?.code, .addressNotRoutable)
    }

    // MARK: - Invalid submissions

    func testInvalidPayloadsAreRefusedAsAWholeWithoutValues() throws {
        let sender = try XCTUnwrap(hoorn.organisation(id: "intermaris"))
        var payload = try samplePayload("huurachterstand")
        payload["Burgerservicenummer"] = .string("123456789")   // fails the elfproef
        payload["Postcode"] = .string("0123AB")
        payload["Huisnummer"] = .string("12")
        payload["signaalpartnerType"] = .string("Energie")
        payload["Voorletters"] = .string(String(repeating: "J", count: 21))
        payload["Emailadres"] = .string("not an address")
        payload["bedrag"] = .number(-5)
        payload["Achternam"] = .string("Voorbeeld")
        payload["Achternaam"] = nil
        let result = PolicyEngine.decide(SignalSubmission(id: "bad id!", type: "betalingsachterstand", recipients: [], payload: payload),
                                         sender: sender, configuration: hoorn, at: amsterdam("2026-11-21"))
        guard case .invalid(let issues) = result else { return XCTFail("\(result)") }
        let byField = Dictionary(issues.map { ($0.field, $0.code) }, uniquingKeysWith: { first, _ in first })
        XCTAssertEqual(byField["id"], .invalidID)
        XCTAssertEqual(byField["recipients"], .noRecipients)
        XCTAssertEqual(byField["payload.Burgerservicenummer"], .badFormat)
        XCTAssertEqual(byField["payload.Postcode"], .badFormat)
        XCTAssertEqual(byField["payload.Huisnummer"], .wrongType)
        XCTAssertEqual(byField["payload.signaalpartnerType"], .notInValues)
        XCTAssertEqual(byField["payload.Voorletters"], .tooLong)
        XCTAssertEqual(byField["payload.Emailadres"], .badFormat)
        XCTAssertEqual(byField["payload.bedrag"], .badFormat)
        XCTAssertEqual(byField["payload.Achternam"], .unknownField)
        XCTAssertEqual(byField["payload.Achternaam"], .missingField)
        XCTAssertTrue(issues.first { $0.field == "payload.Achternam" }!.message.contains("did you mean 'Achternaam'?"))
        for issue in issues {
            XCTAssertFalse(issue.message.contains("123456789") || issue.message.contains("Voorbeeld") || issue.message.contains("not an address"), issue.description)
        }
        let unknownType = PolicyEngine.decide(SignalSubmission(id: "x", type: "roddel", recipients: [.organisation("1hoorn")], payload: [:]),
                                              sender: sender, configuration: hoorn, at: Date())
        guard case .invalid(let typeIssues) = unknownType else { return XCTFail() }
        XCTAssertEqual(typeIssues.map(\.code), [.unknownType])
    }

    func testDecisionsAreDeterministic() throws {
        let payload = try samplePayload("huurachterstand")
        let submission = SignalSubmission(id: "d", type: "betalingsachterstand", recipients: [.gemeenteOfAddress, .organisation("politie-nhn"), .organisation("1hoorn")], payload: payload)
        let sender = try XCTUnwrap(hoorn.organisation(id: "intermaris"))
        let first = PolicyEngine.decide(submission, sender: sender, configuration: hoorn, at: amsterdam("2026-11-21"))
        for _ in 0..<20 {
            XCTAssertEqual(PolicyEngine.decide(submission, sender: sender, configuration: hoorn, at: amsterdam("2026-11-21")), first)
        }
    }

    // MARK: - Feedback

    func testFeedbackOnlyWhatTheRuleAllows() throws {
        let allowed = try XCTUnwrap(try decideOne("betalingsachterstand", from: "intermaris", to: "gemeente-hoorn", payload: try samplePayload("huurachterstand")).allowed)
        XCTAssertEqual(FeedbackPolicy.decide(status: "niet opgepakt", fields: ["reden": .string("heeft al schuldhulp")], allowed: allowed.feedback),
                       .allowed(status: "niet opgepakt", fields: [:], dropped: ["reden"]))
        guard case .denied(let denial) = FeedbackPolicy.decide(status: "in behandeling", fields: [:], allowed: allowed.feedback) else { return XCTFail() }
        XCTAssertEqual(denial.code, .feedbackStatusNotAllowed)
        XCTAssertEqual(denial.message, "The status 'in behandeling' may not be reported; the rule allows 'opgepakt', 'niet opgepakt'.")

        let casus = try XCTUnwrap(try decideOne("casusaanmelding", from: "intermaris", to: "gemeente-hoorn",
                                                payload: ["Postcode": .string("1624KM"), "Huisnummer": .integer(12), "casusomschrijving": .string("x")]).allowed)
        XCTAssertEqual(FeedbackPolicy.decide(status: "casusregisseur benoemd", fields: ["casusregisseur": .string("1.Hoorn"), "overlegdatum": .string("2026-12-01")], allowed: casus.feedback),
                       .allowed(status: "casusregisseur benoemd", fields: ["casusregisseur": .string("1.Hoorn"), "overlegdatum": .string("2026-12-01")], dropped: []))
        guard case .invalid(let issues) = FeedbackPolicy.decide(status: "geagendeerd", fields: ["overlegdatum": .string("1 december")], allowed: casus.feedback) else { return XCTFail() }
        XCTAssertEqual(issues.map(\.field), ["fields.overlegdatum"])

        let none = try XCTUnwrap(try decideOne("overlast", from: "gemeente-hoorn", to: "intermaris",
                                               payload: ["Postcode": .string("1624KM"), "Huisnummer": .integer(12), "soortOverlast": .string("geluid"), "startdatum": .string("2026-11-01")]).allowed)
        guard case .denied(let noFeedback) = FeedbackPolicy.decide(status: "opgepakt", fields: [:], allowed: none.feedback) else { return XCTFail() }
        XCTAssertEqual(noFeedback.code, .feedbackNotAllowed)
    }
}
