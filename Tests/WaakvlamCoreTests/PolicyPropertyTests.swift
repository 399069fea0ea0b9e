import Foundation
import XCTest
@testable import WaakvlamCore

/// A small, seeded generator so every run checks the same thousands of cases.
struct SplitMix64: RandomNumberGenerator {
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

/// Over thousands of generated (unvalidated) configurations and payloads: no field outside a
/// recipient's allowlist ever appears in an allowed decision, nothing is allowed without a
/// matching rule in force between two unsuspended parties, and (default deny is not
/// over-deny) a recipient with such a rule that can carry the signal is allowed.
final class PolicyPropertyTests: XCTestCase {
    private static let reference = LocalDate("2026-11-21")!
    private static let timeZones = ["Europe/Amsterdam", "UTC", "Pacific/Kiritimati", "America/Adak"].map { TimeZone(identifier: $0)! }
    private static let formats: [FieldFormat] = [.text, .integer, .boolean, .postcode, .date, .enumeration(["x", "y"])]

    private func pick<T>(_ items: [T], _ rng: inout SplitMix64) -> T { items[Int.random(in: 0..<items.count, using: &rng)] }

    /// Each item with probability `percent`, at least `minimum` of them.
    private func subset<T>(_ items: [T], _ rng: inout SplitMix64, minimum: Int = 0, percent: Int = 50) -> [T] {
        var chosen = items.filter { _ in Int.random(in: 0..<100, using: &rng) < percent }
        while chosen.count < minimum, !items.isEmpty { chosen.append(pick(items, &rng)) }
        return chosen
    }

    private func date(offset: Int) -> LocalDate {
        LocalDate(dayNumber: PolicyPropertyTests.reference.dayNumber + offset)
    }

    private func randomConfiguration(_ rng: inout SplitMix64) -> Configuration {
        let organisations: [Organisation] = (0..<Int.random(in: 2...6, using: &rng)).map { index in
            let sector = pick(Sector.allCases, &rng)
            let areas = sector == .gemeente ? (0..<Int.random(in: 0...2, using: &rng)).map { _ -> PostcodeArea in
                let low = Int.random(in: 1000...1010, using: &rng)
                return PostcodeArea("\(low)-\(low + Int.random(in: 0...3, using: &rng))")!
            } : []
            return Organisation(id: "o\(index)", oin: String(format: "%020d", 1000 + index), name: "Org \(index)", sector: sector,
                                postcodeAreas: areas, suspended: Int.random(in: 0..<10, using: &rng) == 0)
        }
        let pool: [FieldDefinition] = (0..<12).map { index in
            FieldDefinition(name: "f\(index)", category: pick(DataCategory.allCases, &rng), format: pick(PolicyPropertyTests.formats, &rng))
        }
        let types: [SignalType] = (0..<Int.random(in: 1...3, using: &rng)).map { index in
            var fields = subset(pool, &rng, minimum: 2)
            var seen = Set<String>()
            fields = fields.filter { seen.insert($0.name).inserted }.map { field in
                var copy = field
                copy.required = Int.random(in: 0..<8, using: &rng) == 0
                return copy
            }
            return SignalType(id: "t\(index)", fields: fields, routingField: fields.first { $0.format == .postcode }?.name)
        }
        let specials = DataCategory.allCases.filter(\.isSpecial)
        let convenants: [Convenant] = (0..<Int.random(in: 1...3, using: &rng)).map { index in
            let parties = subset(organisations.map(\.id), &rng, minimum: 1, percent: 80)
            var basis: [DataCategory: String] = [:]
            for category in subset(specials, &rng) { basis[category] = "basis" }
            let rules: [Rule] = (0..<Int.random(in: 1...4, using: &rng)).map { ruleIndex in
                func selector() -> PartySelector {
                    Bool.random(using: &rng) ? .organisations(subset(organisations.map(\.id), &rng, minimum: 1, percent: 60))
                        : .sectors(subset(Sector.allCases, &rng, minimum: 1, percent: 60))
                }
                let typeIDs = subset(types.map(\.id) + ["unknown-type"], &rng, minimum: 1)
                let fieldNames = subset(pool.map(\.name) + ["zz"], &rng, percent: 70)
                let preconditions = Int.random(in: 0..<10, using: &rng) == 0 ? Preconditions(vroegEropafMinimumArrearsDays: 30) : Preconditions()
                return Rule(id: "r\(ruleIndex)", from: selector(), to: selector(), signalTypes: typeIDs, fields: fieldNames,
                            specialCategories: subset(specials, &rng), retentionDays: Int.random(in: 1...400, using: &rng),
                            preconditions: preconditions, feedback: FeedbackRule())
            }
            let from = date(offset: Int.random(in: -600...100, using: &rng))
            let until = date(offset: Int.random(in: -200...600, using: &rng))  // sometimes before validFrom: never in force
            return Convenant(id: "c\(index)", version: Int.random(in: 1...3, using: &rng), title: "", parties: parties, validFrom: from, validUntil: until,
                             purpose: "", legalBasis: "", specialCategoryBasis: basis, processingActivity: "urn:c\(index)", rules: rules)
        }
        var node = NodeSettings(name: "n", operatorID: organisations[0].id)
        node.timeZone = pick(PolicyPropertyTests.timeZones, &rng)
        return Configuration(node: node, organisations: organisations, signalTypes: types, convenants: convenants)
    }

    private func randomValue(_ format: FieldFormat, _ rng: inout SplitMix64) -> PayloadValue {
        switch format {
        case .integer: .integer(Int.random(in: 1...500, using: &rng))
        case .boolean: .boolean(Bool.random(using: &rng))
        case .postcode: .string("\(Int.random(in: 1000...1015, using: &rng))AB")
        case .date: .string(date(offset: Int.random(in: -100...100, using: &rng)).description)
        case .enumeration(let values): .string(pick(values, &rng))
        default: .string("text \(Int.random(in: 0...9, using: &rng))")
        }
    }

    private func randomSubmission(_ configuration: Configuration, _ rng: inout SplitMix64) -> SignalSubmission {
        let type = Int.random(in: 0..<20, using: &rng) == 0 ? nil : pick(configuration.signalTypes, &rng)
        var payload: [String: PayloadValue] = [:]
        for field in type?.fields ?? [] where Bool.random(using: &rng) || (field.required && Int.random(in: 0..<10, using: &rng) > 0) {
            payload[field.name] = randomValue(field.format, &rng)
        }
        if Int.random(in: 0..<20, using: &rng) == 0 { payload["not-a-field"] = .string("x") }
        let recipients: [RecipientRequest] = (0..<Int.random(in: 1...3, using: &rng)).map { _ in
            let organisation = pick(configuration.organisations, &rng)
            switch Int.random(in: 0..<10, using: &rng) {
            case 0: return .organisation("nobody")
            case 1: return .gemeenteOfAddress
            case 2: return .organisation(organisation.oin)
            default: return .organisation(organisation.id)
            }
        }
        return SignalSubmission(id: "s", type: type?.id ?? "no-such-type", recipients: recipients, payload: payload)
    }

    // MARK: - The oracle: written from the rules' meaning, not from the engine's code.

    private var formatters: [String: DateFormatter] = [:]

    private func localDate(_ instant: Date, _ zone: TimeZone) -> LocalDate {
        let formatter = formatters[zone.identifier] ?? {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.calendar = Calendar(identifier: .gregorian)
            formatter.timeZone = zone
            formatter.dateFormat = "yyyy-MM-dd"
            formatters[zone.identifier] = formatter
            return formatter
        }()
        return LocalDate(formatter.string(from: instant))!
    }

    private func selects(_ selector: PartySelector, _ organisation: Organisation) -> Bool {
        switch selector {
        case .organisations(let ids): ids.contains(organisation.id)
        case .sectors(let sectors): sectors.contains(organisation.sector)
        }
    }

    /// Rules under which `sender` may send `type` to `recipient` on `day`.
    private func activeRules(_ configuration: Configuration, type: SignalType, sender: Organisation, recipient: Organisation, day: LocalDate) -> [(Convenant, Rule)] {
        guard !sender.suspended, !recipient.suspended else { return [] }
        return configuration.convenants.flatMap { convenant -> [(Convenant, Rule)] in
            guard convenant.validFrom <= day, day <= convenant.validUntil,
                  convenant.parties.contains(sender.id), convenant.parties.contains(recipient.id) else { return [] }
            return convenant.rules.filter { $0.signalTypes.contains(type.id) && selects($0.from, sender) && selects($0.to, recipient) }.map { (convenant, $0) }
        }
    }

    private func mayCarry(_ field: FieldDefinition, _ rule: Rule, _ convenant: Convenant) -> Bool {
        rule.fields.contains(field.name) && (!field.category.isSpecial || (rule.specialCategories.contains(field.category) && convenant.specialCategoryBasis[field.category] != nil))
    }

    func testPolicyNeverLeaksAndNeverAllowsWithoutAnActiveRule() throws {
        var rng = SplitMix64(seed: 0x5EED_2026_1121)
        var counts = (allowed: 0, denied: 0, invalid: 0, configurations: 0)
        for _ in 0..<3000 {
            let configuration = randomConfiguration(&rng)
            counts.configurations += 1
            for _ in 0..<5 {
                let submission = randomSubmission(configuration, &rng)
                let sender = pick(configuration.organisations, &rng)
                let offset = TimeInterval(Int.random(in: -300 * 86_400...300 * 86_400, using: &rng))
                let instant = Date(timeIntervalSince1970: 1_795_258_800 + offset)
                let day = localDate(instant, configuration.node.timeZone)
                let result = PolicyEngine.decide(submission, sender: sender, configuration: configuration, at: instant)
                guard case .decided(let decisions) = result else {
                    counts.invalid += 1
                    let type = configuration.signalType(id: submission.type)
                    let payloadBad = type == nil || submission.payload.keys.contains { type?.field(named: $0) == nil }
                        || type!.fields.contains { $0.required && submission.payload[$0.name] == nil }
                    if !payloadBad {
                        guard case .invalid(let issues) = result, issues.allSatisfy({ $0.code == .duplicateRecipient }) else {
                            return XCTFail("refused without a reason: \(result)")
                        }
                    }
                    continue
                }
                let type = try XCTUnwrap(configuration.signalType(id: submission.type))
                XCTAssertEqual(decisions.map(\.requested), submission.recipients.map(\.description))
                for (decision, request) in zip(decisions, submission.recipients) {
                    // Who it resolved to must be who was asked for.
                    if let recipient = decision.recipient {
                        switch request {
                        case .organisation(let name): XCTAssertTrue(recipient.id == name || recipient.oin == name)
                        case .gemeenteOfAddress:
                            XCTAssertEqual(recipient.sector, .gemeente)
                            if case .string(let text) = submission.payload[type.routingField ?? ""] { XCTAssertTrue(recipient.serves(Postcode(text)!)) }
                        }
                    }
                    let candidates = decision.recipient.map { activeRules(configuration, type: type, sender: sender, recipient: $0, day: day) } ?? []
                    switch decision.outcome {
                    case .allowed(let delivery):
                        counts.allowed += 1
                        guard let (convenant, rule) = candidates.first(where: { $0.0.id == delivery.convenantID && $0.0.version == delivery.convenantVersion && $0.1.id == delivery.ruleID }) else {
                            return XCTFail("allowed without a matching active rule: \(delivery.convenantID) v\(delivery.convenantVersion) \(delivery.ruleID), \(sender.id) -> \(decision.recipient?.id ?? "-") on \(day)")
                        }
                        XCTAssertEqual(delivery.retentionDays, rule.retentionDays)
                        XCTAssertEqual(delivery.processingActivity, convenant.processingActivity)
                        for (name, value) in delivery.payload {
                            XCTAssertTrue(rule.fields.contains(name), "field \(name) outside the allowlist of \(rule.id)")
                            XCTAssertEqual(submission.payload[name], value)
                            XCTAssertTrue(mayCarry(type.field(named: name)!, rule, convenant), "special field \(name) without grant and basis")
                        }
                        XCTAssertEqual(delivery.keptFields, delivery.payload.keys.sorted())
                        XCTAssertEqual(Set(delivery.keptFields).union(delivery.droppedFields.map(\.name)), Set(submission.payload.keys))
                        XCTAssertTrue(Set(delivery.keptFields).isDisjoint(with: delivery.droppedFields.map(\.name)))
                        XCTAssertNil(rule.preconditions.vroegEropafMinimumArrearsDays, "preconditions cannot be met by these payloads")
                    case .denied(let denial):
                        counts.denied += 1
                        // Default deny must not over-deny: a rule in force that carries every
                        // required field (and imposes no precondition) allows.
                        let carrying = candidates.first { convenant, rule in
                            rule.preconditions.vroegEropafMinimumArrearsDays == nil
                                && type.fields.allSatisfy { !$0.required || mayCarry($0, rule, convenant) }
                        }
                        XCTAssertNil(carrying, "denied (\(denial.code.rawValue)) although rule \(carrying?.1.id ?? "") of \(carrying?.0.id ?? "") applies")
                    }
                }
            }
        }
        // The generator must reach every branch often enough for the property to mean something.
        XCTAssertGreaterThan(counts.allowed, 1500, "\(counts)")
        XCTAssertGreaterThan(counts.denied, 5000, "\(counts)")
        XCTAssertGreaterThan(counts.invalid, 500, "\(counts)")
    }

    // MARK: - Old against new: the engine reads payloads by position through tables built at
    // configuration load; the reference below is the engine as it was before, by name.

    /// The decisions and validation issues are those of the reference engine, for random
    /// configurations (some changed after loading, which must rebuild the tables) and payloads.
    func testEngineDecidesAsTheReferenceByName() throws {
        var rng = SplitMix64(seed: 0x0BAD_5EED_0006)
        var compared = (outcomes: 0, allowed: 0, invalid: 0, dropped: 0)
        for _ in 0..<1500 {
            var configuration = randomConfiguration(&rng)
            if Bool.random(using: &rng) { changeAfterLoading(&configuration, &rng) }
            for _ in 0..<5 {
                var submission = randomSubmission(configuration, &rng)
                if let name = submission.payload.keys.randomElement(using: &rng), Int.random(in: 0..<8, using: &rng) == 0 {
                    submission.payload[name] = .string("")  // an empty text counts as missing where required
                }
                let sender = pick(configuration.organisations, &rng)
                let instant = Date(timeIntervalSince1970: 1_795_258_800 + TimeInterval(Int.random(in: -300...300, using: &rng) * 86_400))
                let result = PolicyEngine.decide(submission, sender: sender, configuration: configuration, at: instant)
                guard let type = configuration.signalType(id: submission.type) else { continue }
                let issues = referenceValidate(submission.payload, type)
                guard issues.isEmpty else {
                    XCTAssertEqual(result, .invalid(issues))
                    compared.invalid += 1
                    continue
                }
                guard case .decided(let decisions) = result else { continue }  // a recipient named twice
                let today = configuration.localDate(of: instant)
                for decision in decisions {
                    guard let recipient = decision.recipient else { continue }
                    let expected = referenceOutcome(type: type, payload: submission.payload, sender: sender, recipient: recipient,
                                                    configuration: configuration, today: today)
                    XCTAssertEqual(decision.outcome, expected)
                    compared.outcomes += 1
                    if let allowed = decision.allowed {
                        compared.allowed += 1
                        if !allowed.droppedFields.isEmpty { compared.dropped += 1 }
                    }
                }
            }
        }
        XCTAssertGreaterThan(compared.allowed, 500, "\(compared)")
        XCTAssertGreaterThan(compared.dropped, 200, "\(compared)")
        XCTAssertGreaterThan(compared.invalid, 500, "\(compared)")
    }

    /// An administrator's kind of change to a loaded configuration: a field list, an
    /// allowlist, a grant or a basis, a type's feedback catalogue and a rule's feedback.
    private func changeAfterLoading(_ configuration: inout Configuration, _ rng: inout SplitMix64) {
        let t = Int.random(in: 0..<configuration.signalTypes.count, using: &rng)
        let c = Int.random(in: 0..<configuration.convenants.count, using: &rng)
        let r = Int.random(in: 0..<configuration.convenants[c].rules.count, using: &rng)
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: configuration.signalTypes[t].fields.shuffle(using: &rng)
        case 1: configuration.convenants[c].rules[r].fields = subset(configuration.convenants[c].rules[r].fields, &rng)
        case 2:
            configuration.convenants[c].rules[r].specialCategories = subset(DataCategory.allCases.filter(\.isSpecial), &rng)
            configuration.convenants[c].specialCategoryBasis = [:]
        default:
            let fields = configuration.signalTypes[t].fields
            configuration.signalTypes[t].feedback = FeedbackCatalogue(statuses: ["opgepakt"], fields: subset(fields, &rng))
            configuration.convenants[c].rules[r].feedback = FeedbackRule(statuses: ["opgepakt"], fields: subset(fields.map(\.name), &rng))
        }
    }

    /// Validation as it was: the issues of each field, then the required fields looked up by name.
    private func referenceValidate(_ payload: [String: PayloadValue], _ type: SignalType) -> [PayloadIssue] {
        let optional = type.fields.map { field in
            var copy = field
            copy.required = false
            return copy
        }
        var issues = PayloadValidator.validate(payload, against: optional, position: { type.position(of: $0) }, owner: "signal type '\(type.id)'")
        for field in type.fields where field.required {
            let missing: Bool
            switch payload[field.name] {
            case nil: missing = true
            case .string(let text): missing = text.isEmpty
            default: missing = false
            }
            if missing {
                issues.append(PayloadIssue(field: "payload.\(field.name)", code: .missingField,
                                           message: "'\(field.name)' is required for signal type '\(type.id)'; fill it in (\(PayloadValidator.expectation(field.format)))"))
            }
        }
        return issues
    }

    /// One recipient's outcome as it was: every rule of every convenant tried by name.
    private func referenceOutcome(type: SignalType, payload: [String: PayloadValue], sender: Organisation, recipient: Organisation,
                                  configuration: Configuration, today: LocalDate) -> RecipientDecision.Outcome {
        if sender.suspended {
            return .denied(Denial(code: .senderSuspended, message: "Your organisation ('\(sender.id)') is suspended on this node: it can send nothing until an administrator lifts the suspension."))
        }
        if recipient.suspended {
            return .denied(Denial(code: .recipientSuspended, message: "'\(recipient.id)' is suspended on this node: nothing may be sent to it until an administrator lifts the suspension."))
        }
        var firstMatch: Convenant?, firstWithParties: Convenant?, firstDenial: Denial?
        for convenant in configuration.convenants {
            for rule in convenant.rules where rule.signalTypes.contains(type.id) && rule.from.matches(sender) && rule.to.matches(recipient) {
                firstMatch = firstMatch ?? convenant
                guard convenant.parties.contains(sender.id), convenant.parties.contains(recipient.id) else { continue }
                firstWithParties = firstWithParties ?? convenant
                guard convenant.isInForce(on: today) else { continue }
                switch referenceApply(rule, of: convenant, type: type, payload: payload, today: today) {
                case .success(let delivery): return .allowed(delivery)
                case .failure(let denial): firstDenial = firstDenial ?? denial
                }
            }
        }
        if let firstDenial { return .denied(firstDenial) }
        guard let firstMatch else {
            return .denied(Denial(code: .noMatchingRule, message: "No rule in any convenant lets '\(sender.id)' send a \(type.id) to '\(recipient.id)'."))
        }
        guard let convenant = firstWithParties else {
            let outsider = firstMatch.parties.contains(sender.id) ? recipient.id : sender.id
            return .denied(Denial(code: .notAParty, message: "'\(outsider)' is not a party of convenant '\(firstMatch.id)' version \(firstMatch.version), whose rules would cover this signal."))
        }
        return .denied(Denial(code: .convenantNotInForce, message: "Convenant '\(convenant.id)' version \(convenant.version) is in force from \(convenant.validFrom) to \(convenant.validUntil), not on \(today)."))
    }

    private func referenceApply(_ rule: Rule, of convenant: Convenant, type: SignalType, payload: [String: PayloadValue],
                                today: LocalDate) -> Result<AllowedDelivery, Denial> {
        if let threshold = rule.preconditions.vroegEropafMinimumArrearsDays,
           let denial = PolicyEngine.checkVroegEropaf(payload, threshold: threshold, today: today) {
            return .failure(denial)
        }
        var dropped: [DroppedField] = []
        for name in payload.keys {
            let category = type.field(named: name)!.category
            guard rule.fields.contains(name) else {
                dropped.append(DroppedField(name: name, category: category, reason: .notInRule))
                continue
            }
            if category.isSpecial, !rule.specialCategories.contains(category) || convenant.specialCategoryBasis[category] == nil {
                dropped.append(DroppedField(name: name, category: category, reason: .specialCategoryNotGranted(category)))
            }
        }
        var kept = payload
        for field in dropped { kept[field.name] = nil }
        for field in type.fields where field.required && kept[field.name] == nil {
            if field.category.isSpecial {
                return .failure(Denial(code: .specialCategoryNotGranted, message: "Signal type '\(type.id)' requires '\(field.name)', which holds \(field.category.rawValue) data that rule '\(rule.id)' of convenant '\(convenant.id)' does not grant."))
            }
            return .failure(Denial(code: .requiredFieldNotAllowed, message: "Signal type '\(type.id)' requires '\(field.name)', which rule '\(rule.id)' of convenant '\(convenant.id)' does not allow; the signal would arrive incomplete."))
        }
        dropped.sort { $0.name < $1.name }
        let feedback = FeedbackAllowance(statuses: rule.feedback.statuses, fields: type.feedback.fields.filter { rule.feedback.fields.contains($0.name) })
        return .success(AllowedDelivery(ruleID: rule.id, convenantID: convenant.id, convenantVersion: convenant.version,
                                        processingActivity: convenant.processingActivity, payload: kept, keptFields: kept.keys.sorted(),
                                        droppedFields: dropped, retentionDays: rule.retentionDays, feedback: feedback))
    }
}
