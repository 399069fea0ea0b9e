import Foundation

// The policy engine: from (configuration, time, authenticated sender, signal) to one decision
// per recipient. Pure and deterministic: the same inputs give the same decisions.

/// Who a signal is addressed to.
public enum RecipientRequest: Sendable, Hashable, CustomStringConvertible {
    /// An organisation by short id or by OIN.
    case organisation(String)
    /// The gemeente whose postcode areas hold the address in the payload.
    case gemeenteOfAddress

    public var description: String {
        switch self {
        case .organisation(let identifier): identifier
        case .gemeenteOfAddress: "gemeente-of-address"
        }
    }
}

/// A signal as a partner submits it: an id chosen by the sender (for deduplication), the
/// signal type, the recipients and a flat payload.
public struct SignalSubmission: Sendable, Equatable {
    public var id: String
    public var type: String
    public var recipients: [RecipientRequest]
    public var payload: [String: PayloadValue]
    /// The sender's W3C `traceparent`, when it sent one in the body (not yet checked).
    public var traceparent: String?

    public init(id: String, type: String, recipients: [RecipientRequest], payload: [String: PayloadValue], traceparent: String? = nil) {
        self.id = id
        self.type = type
        self.recipients = recipients
        self.payload = payload
        self.traceparent = traceparent
    }

    /// Signal ids: 1 to 128 of `A-Z a-z 0-9 . _ : -`, so they are safe in file names and logs,
    /// without `reservedIDPart`.
    public static func isValidID(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count) && id.utf8.allSatisfy { byte in
            (byte >= 48 && byte <= 57) || (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) || byte == 46 || byte == 95 || byte == 58 || byte == 45
        } && !(id.utf8.contains(58) && id.contains(reservedIDPart))
    }

    /// The node names a feedback signal `<signal>:terugmelding:<hash>`. A sender's id may not
    /// contain this: it could take the id of a feedback before the recipient gives it, and
    /// the feedback would then be answered as a duplicate and never reach the sender.
    public static let reservedIDPart = ":terugmelding:"

    /// What an invalid id must be, for error messages.
    public static let idRule = "1 to 128 of the characters A-Z a-z 0-9 . _ : - without ':terugmelding:' (a UUID is best)"


    /// Reads the submission body of the API:
    /// `{"id": "...", "type": "...", "to": ["<id or OIN>", ...], "routeByAddress": true, "traceparent": "...", "payload": {...}}`.
    /// `to` and `routeByAddress` are each optional; together they must name a recipient.
    /// Without `id`, `makeID` gives one (the relay makes a UUID); without `makeID`, `id` is required.
    public static func parse(_ data: Data, makeID: (() -> String)? = nil) -> Result<SignalSubmission, InvalidPayload> {
        let node: JSONNode
        do {
            node = try JSONParser.parse(data)
        } catch {
            return .failure(InvalidPayload([PayloadIssue(field: "$", code: .notJSON, message: error.description)]))
        }
        guard case .object(let members) = node.value else {
            return .failure(InvalidPayload([PayloadIssue(field: "$", code: .notAnObject, message: "the body must be a JSON object with id, type, to and payload")]))
        }
        var issues: [PayloadIssue] = []
        var fields: [String: JSONNode] = [:]
        let keys = ["id", "type", "to", "routeByAddress", "traceparent", "payload"]
        for member in members {
            if !keys.contains(member.key) {
                issues.append(PayloadIssue(field: member.key, code: .unknownKey, message: "unknown key '\(member.key)': the body holds \(keys.joined(separator: ", "))"))
            } else if fields.updateValue(member.value, forKey: member.key) != nil {
                issues.append(PayloadIssue(field: member.key, code: .duplicateField, message: "'\(member.key)' appears twice; send it once"))
            }
        }
        func text(_ key: String) -> String? {
            guard let value = fields[key] else {
                issues.append(PayloadIssue(field: key, code: .missingField, message: "'\(key)' is required"))
                return nil
            }
            guard case .string(let text) = value.value else {
                issues.append(PayloadIssue(field: key, code: .wrongType, message: "'\(key)' must be text, found \(value.value.kindName)"))
                return nil
            }
            return text
        }
        let id = fields["id"] == nil && makeID != nil ? makeID!() : text("id"), type = text("type")
        if let id, !isValidID(id) {
            issues.append(PayloadIssue(field: "id", code: .invalidID,
                                       message: "'id' must be \(idRule)"))
        }
        var traceparent: String?
        if let value = fields["traceparent"] {
            if case .string(let text) = value.value { traceparent = text } else {
                issues.append(PayloadIssue(field: "traceparent", code: .wrongType, message: "'traceparent' must be text like 00-<32 hex>-<16 hex>-01"))
            }
        }
        var recipients: [RecipientRequest] = []
        if let to = fields["to"] {
            if case .array(let elements) = to.value, elements.allSatisfy({ if case .string = $0.value { true } else { false } }) {
                recipients = elements.compactMap { if case .string(let name) = $0.value { .organisation(name) } else { nil } }
            } else {
                issues.append(PayloadIssue(field: "to", code: .wrongType, message: "'to' must be a list of organisation ids or OINs"))
            }
        }
        if let route = fields["routeByAddress"] {
            guard case .bool(let flag) = route.value else {
                return .failure(InvalidPayload(issues + [PayloadIssue(field: "routeByAddress", code: .wrongType, message: "'routeByAddress' must be true or false")]))
            }
            if flag { recipients.append(.gemeenteOfAddress) }
        }
        var payload: [String: PayloadValue] = [:]
        if let body = fields["payload"] {
            switch Payload.payload(from: body, field: "payload") {
            case .success(let values): payload = values
            case .failure(let problems): issues += problems.issues
            }
        } else {
            issues.append(PayloadIssue(field: "payload", code: .missingField, message: "'payload' is required: a flat object of the signal's fields"))
        }
        guard issues.isEmpty, let id, let type else { return .failure(InvalidPayload(issues)) }
        return .success(SignalSubmission(id: id, type: type, recipients: recipients, payload: payload, traceparent: traceparent))
    }
}

/// Stable reasons for a denial, as the sender sees them in the API and the journal records.
public enum DenialCode: String, Sendable, Equatable, CaseIterable {
    case recipientUnknown = "recipient_unknown"
    case recipientSuspended = "recipient_suspended"
    case senderSuspended = "sender_suspended"
    case noMatchingRule = "no_matching_rule"
    case notAParty = "not_a_party"
    case convenantNotInForce = "convenant_not_in_force"
    case specialCategoryNotGranted = "special_category_not_granted"
    case requiredFieldNotAllowed = "required_field_not_allowed"
    case preconditionNotMet = "precondition_not_met"
    case tenantObjected = "tenant_objected"
    case arrearsBelowThreshold = "arrears_below_threshold"
    case addressNotRoutable = "address_not_routable"
    case addressOutsideAreas = "address_outside_areas"
    case feedbackNotAllowed = "feedback_not_allowed"
    case feedbackStatusNotAllowed = "feedback_status_not_allowed"
}

/// Why nothing goes to a recipient: a stable code and a sentence the sender understands.
public struct Denial: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: DenialCode
    public var message: String

    public init(code: DenialCode, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// A field the recipient does not get, and why.
public struct DroppedField: Sendable, Equatable {
    public enum Reason: Sendable, Equatable {
        /// Not on the rule's allowlist.
        case notInRule
        /// On the allowlist, but of a special category the rule does not grant.
        case specialCategoryNotGranted(DataCategory)
    }

    public var name: String
    /// The field's data category in the signal type.
    public var category: DataCategory
    public var reason: Reason

    public init(name: String, category: DataCategory, reason: Reason) {
        self.name = name
        self.category = category
        self.reason = reason
    }
}

/// What a recipient may answer the sender about a delivered signal.
public struct FeedbackAllowance: Sendable, Equatable {
    public var statuses: [String]
    public var fields: [FieldDefinition]

    public init(statuses: [String], fields: [FieldDefinition]) {
        self.statuses = statuses
        self.fields = fields
    }
}

/// An allowed delivery: the rule that allows it and the minimised payload.
public struct AllowedDelivery: Sendable, Equatable {
    public var ruleID: String
    public var convenantID: String
    public var convenantVersion: Int
    /// URI into the processing register (Logboek Dataverwerkingen `dpl.core.processing_activity_id`).
    public var processingActivity: String
    /// Only the fields the rule allows: this, and nothing else, leaves for the recipient.
    public var payload: [String: PayloadValue]
    /// Sorted names of the fields kept.
    public var keptFields: [String]
    /// The fields left out, sorted by name.
    public var droppedFields: [DroppedField]
    public var retentionDays: Int
    public var feedback: FeedbackAllowance
}

public struct RecipientDecision: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case allowed(AllowedDelivery)
        case denied(Denial)
    }

    /// As the sender asked: an id, an OIN, or `gemeente-of-address`.
    public var requested: String
    /// The organisation it resolved to, when it did.
    public var recipient: Organisation?
    public var outcome: Outcome

    public var allowed: AllowedDelivery? {
        if case .allowed(let delivery) = outcome { delivery } else { nil }
    }

    public var denial: Denial? {
        if case .denied(let denial) = outcome { denial } else { nil }
    }
}

public enum PolicyResult: Sendable, Equatable {
    /// The submission itself is wrong (HTTP 400); no recipient is considered.
    case invalid([PayloadIssue])
    /// One decision per requested recipient, in the order requested.
    case decided([RecipientDecision])
}

/// A rule that carries a signal type, prepared for that type when the configuration is
/// loaded: what happens to each of the type's fields under the rule, and what a recipient
/// may answer. The engine then decides a signal without looking a field name up per rule.
struct TypedRule: Sendable {
    enum Treatment: Sendable {
        case kept
        /// Not on the rule's allowlist.
        case notInRule
        /// On the allowlist, but of a special category the rule does not grant or the
        /// convenant states no basis for.
        case specialCategoryNotGranted
    }

    /// Positions in `Configuration.convenants` and in that convenant's rules.
    let convenant: Int
    let rule: Int
    /// By position in the type's fields.
    let treatment: [Treatment]
    let feedback: FeedbackAllowance

    /// The rules that carry `type`, in configuration order (convenants, then their rules).
    static func rules(carrying type: SignalType, in convenants: [Convenant]) -> [TypedRule] {
        var rules: [TypedRule] = []
        for (c, convenant) in convenants.enumerated() {
            for (r, rule) in convenant.rules.enumerated() where rule.signalTypes.contains(type.id) {
                let treatment = type.fields.map { field -> Treatment in
                    guard rule.allowlist.contains(field.name) else { return .notInRule }
                    if field.category.isSpecial, !rule.specialCategories.contains(field.category) || convenant.specialCategoryBasis[field.category] == nil {
                        return .specialCategoryNotGranted
                    }
                    return .kept
                }
                rules.append(TypedRule(convenant: c, rule: r, treatment: treatment,
                                       feedback: PolicyEngine.feedbackAllowance(rule: rule, type: type)))
            }
        }
        return rules
    }
}

public enum PolicyEngine {
    /// Decides, per recipient, whether and what `sender` may send.
    ///
    /// Per recipient: default deny. A rule applies when it carries the type, its `from`
    /// selects the sender and its `to` the recipient, both are parties of its convenant, and
    /// the convenant is in force on the local date of `instant` in the node's time zone.
    /// Candidate rules are tried in configuration order (convenant files by path, rules in
    /// file order); the first that allows wins, else the first denial is given. The
    /// recipient gets only the rule's fields, and special-category fields only where the rule
    /// grants the category and the convenant states its basis. A field the type requires
    /// that the rule cannot carry denies the recipient rather than sending an incomplete
    /// signal.
    /// (Never inlined: Benchmarks/profile/counts.sh counts submissions by its calls.)
    @inline(never)
    public static func decide(_ submission: SignalSubmission, sender: Organisation, configuration: Configuration, at instant: Date) -> PolicyResult {
        var issues: [PayloadIssue] = []
        if !SignalSubmission.isValidID(submission.id) {
            issues.append(PayloadIssue(field: "id", code: .invalidID, message: "a signal id is \(SignalSubmission.idRule)"))
        }
        if submission.recipients.isEmpty {
            issues.append(PayloadIssue(field: "recipients", code: .noRecipients, message: "name at least one recipient, or route by address"))
        }
        // Passed on as arguments, not captured by closures (which copied the type, the
        // submission and the configuration, retaining each of their strings and arrays).
        if let typeIndex = configuration.signalTypeIndex(id: submission.type) {
            return decide(submission, of: configuration.signalTypes[typeIndex], rules: configuration.rulesByType[typeIndex],
                          sender: sender, configuration: configuration, at: instant, issues: issues)
        }
        let known = configuration.signalTypes.map(\.id)
        return .invalid(issues + [PayloadIssue(field: "type", code: .unknownType,
                                               message: "unknown signal type '\(submission.type)': use one of \(known.joined(separator: ", "))")])
    }

    /// `decide` once the type and the rules carrying it are known; `issues` are those found
    /// before.
    private static func decide(_ submission: SignalSubmission, of type: SignalType, rules: [TypedRule], sender: Organisation,
                               configuration: Configuration, at instant: Date, issues: [PayloadIssue]) -> PolicyResult {
        var issues = issues
        // Filled by the validation, read by each rule.
        var found = PayloadPositions(repeating: nil, count: type.fields.count)
        issues += PayloadValidator.validate(submission.payload, against: type.fields, position: { type.position(of: $0) },
                                            owner: "signal type '\(type.id)'", found: &found)
        guard issues.isEmpty else { return .invalid(issues) }

        let today = configuration.localDate(of: instant)
        var decisions: [RecipientDecision] = []
        decisions.reserveCapacity(submission.recipients.count)
        // Each recipient once; only needed (and built) when there are several.
        var seen: [String: String] = [:]
        let several = submission.recipients.count > 1
        for request in submission.recipients {
            let resolved = resolve(request, type: type, payload: submission.payload, configuration: configuration)
            guard case .success(let recipient) = resolved else {
                if case .failure(let denial) = resolved {
                    decisions.append(RecipientDecision(requested: request.description, recipient: nil, outcome: .denied(denial)))
                }
                continue
            }
            if several, let earlier = seen.updateValue(request.description, forKey: recipient.id) {
                return .invalid([PayloadIssue(field: "recipients", code: .duplicateRecipient,
                                              message: "'\(recipient.id)' is requested twice (as '\(earlier)' and as '\(request.description)'); name each recipient once")])
            }
            let outcome = decide(type: type, rules: rules, payload: submission.payload, found: found, sender: sender, recipient: recipient,
                                 configuration: configuration, today: today)
            decisions.append(RecipientDecision(requested: request.description, recipient: recipient, outcome: outcome))
        }
        return .decided(decisions)
    }

    private static func resolve(_ request: RecipientRequest, type: SignalType, payload: [String: PayloadValue],
                                configuration: Configuration) -> Result<Organisation, Denial> {
        switch request {
        case .organisation(let identifier):
            guard let organisation = configuration.organisation(identifier: identifier) else {
                return .failure(Denial(code: .recipientUnknown, message: "No organisation '\(identifier)' is known to this node; use an organisation id or OIN from the configuration."))
            }
            return .success(organisation)
        case .gemeenteOfAddress:
            guard let field = type.routingField ?? type.address?.postcode else {
                return .failure(Denial(code: .addressNotRoutable, message: "Signal type '\(type.id)' has no postcode field to route by; name the recipient instead."))
            }
            guard case .string(let text) = payload[field], let postcode = Postcode(text) else {
                return .failure(Denial(code: .addressNotRoutable, message: "Routing by address needs the postcode in '\(field)'; fill it in or name the recipient."))
            }
            guard let gemeente = configuration.organisations.first(where: { $0.sector == .gemeente && $0.serves(postcode) }) else {
                return .failure(Denial(code: .addressOutsideAreas, message: "No gemeente in this configuration serves postcode area \(postcode.digits); the address lies outside every gemeente's postcode areas."))
            }
            return .success(gemeente)
        }
    }

    private static func decide(type: SignalType, rules: [TypedRule], payload: [String: PayloadValue], found: PayloadPositions,
                               sender: Organisation, recipient: Organisation, configuration: Configuration,
                               today: LocalDate) -> RecipientDecision.Outcome {
        if sender.suspended {
            return .denied(Denial(code: .senderSuspended, message: "Your organisation ('\(sender.id)') is suspended on this node: it can send nothing until an administrator lifts the suspension."))
        }
        if recipient.suspended {
            return .denied(Denial(code: .recipientSuspended, message: "'\(recipient.id)' is suspended on this node: nothing may be sent to it until an administrator lifts the suspension."))
        }
        // One pass over the rules in configuration order, remembering the first rule that
        // matched, the first with both parties and the first denial: the most specific
        // reason is given when nothing allows.
        var firstMatch: Int?, firstWithParties: Int?, firstDenial: Denial?
        let convenants = configuration.convenants
        // Only the rules that carry the type, still in configuration order.
        for candidate in rules.indices {
            let c = rules[candidate].convenant, r = rules[candidate].rule
            guard convenants[c].rules[r].from.matches(sender), convenants[c].rules[r].to.matches(recipient) else { continue }
            firstMatch = firstMatch ?? c
            guard convenants[c].parties.contains(sender.id), convenants[c].parties.contains(recipient.id) else { continue }
            firstWithParties = firstWithParties ?? c
            guard convenants[c].isInForce(on: today) else { continue }
            switch apply(rules[candidate], convenants[c].rules[r], of: convenants[c], type: type, payload: payload, found: found, today: today) {
            case .success(let delivery): return .allowed(delivery)
            case .failure(let denial): firstDenial = firstDenial ?? denial
            }
        }
        if let firstDenial { return .denied(firstDenial) }
        guard let firstMatch else {
            return .denied(Denial(code: .noMatchingRule, message: "No rule in any convenant lets '\(sender.id)' send a \(type.id) to '\(recipient.id)'."))
        }
        guard let firstWithParties else {
            let convenant = convenants[firstMatch]
            let outsider = convenant.parties.contains(sender.id) ? recipient.id : sender.id
            return .denied(Denial(code: .notAParty, message: "'\(outsider)' is not a party of convenant '\(convenant.id)' version \(convenant.version), whose rules would cover this signal."))
        }
        let convenant = convenants[firstWithParties]
        return .denied(Denial(code: .convenantNotInForce, message: "Convenant '\(convenant.id)' version \(convenant.version) is in force from \(convenant.validFrom) to \(convenant.validUntil), not on \(today)."))
    }

    /// Preconditions and minimisation under one rule (`prepared` for the type): the payload
    /// is read by position through `found`, never by name.
    private static func apply(_ prepared: TypedRule, _ rule: Rule, of convenant: Convenant, type: SignalType,
                              payload: [String: PayloadValue], found: PayloadPositions,
                              today: LocalDate) -> Result<AllowedDelivery, Denial> {
        if let threshold = rule.preconditions.vroegEropafMinimumArrearsDays,
           let denial = checkVroegEropaf(payload, threshold: threshold, today: today) {
            return .failure(denial)
        }
        let treatment = prepared.treatment
        func isKept(_ position: Int) -> Bool { found[position] != nil && treatment[position] == .kept }
        for position in type.fields.indices where type.fields[position].required && !isKept(position) {
            let field = type.fields[position]
            if field.category.isSpecial {
                return .failure(Denial(code: .specialCategoryNotGranted, message: "Signal type '\(type.id)' requires '\(field.name)', which holds \(field.category.rawValue) data that rule '\(rule.id)' of convenant '\(convenant.id)' does not grant."))
            }
            return .failure(Denial(code: .requiredFieldNotAllowed, message: "Signal type '\(type.id)' requires '\(field.name)', which rule '\(rule.id)' of convenant '\(convenant.id)' does not allow; the signal would arrive incomplete."))
        }
        // Names as the payload spells them, in name order (validation has placed every
        // payload field). Usually the rule keeps every field: then the payload is shared as it is.
        var kept = payload, keptFields: [String] = [], dropped: [DroppedField] = []
        keptFields.reserveCapacity(payload.count)
        for position in type.nameOrder {
            guard let index = found[position] else { continue }
            let name = payload[index].key, category = type.fields[position].category
            switch treatment[position] {
            case .kept:
                keptFields.append(name)
                continue
            case .notInRule: dropped.append(DroppedField(name: name, category: category, reason: .notInRule))
            case .specialCategoryNotGranted: dropped.append(DroppedField(name: name, category: category, reason: .specialCategoryNotGranted(category)))
            }
            kept[name] = nil
        }
        return .success(AllowedDelivery(ruleID: rule.id, convenantID: convenant.id, convenantVersion: convenant.version,
                                        processingActivity: convenant.processingActivity, payload: kept, keptFields: keptFields,
                                        droppedFields: dropped, retentionDays: rule.retentionDays, feedback: prepared.feedback))
    }

    /// What a recipient under `rule` may report back about a signal of `type`: the rule's
    /// statuses, and the type's feedback fields that the rule names.
    public static func feedbackAllowance(rule: Rule, type: SignalType) -> FeedbackAllowance {
        FeedbackAllowance(statuses: rule.feedback.statuses,
                          fields: type.feedback.fields.filter { rule.feedback.fields.contains($0.name) })
    }

    /// Besluit gemeentelijke schuldhulpverlening art. 2: every unmet step is named.
    static func checkVroegEropaf(_ payload: [String: PayloadValue], threshold: Int, today: LocalDate) -> Denial? {
        var unmet: [String] = []
        for step in VroegEropaf.attestations where payload[step.field] != .boolean(true) {
            unmet.append("(\(step.letter)) is not attested: \(step.field) must be true, meaning \(step.meaning)")
        }
        let start = date(payload[VroegEropaf.arrearsStartField])
        if payload[VroegEropaf.attestations[2].field] == .boolean(true) {
            if let reminder = date(payload[VroegEropaf.reminderDateField]) {
                if reminder > today {
                    unmet.append("(c) the written reminder (\(VroegEropaf.reminderDateField)) is dated in the future")
                } else if let start, reminder < start {
                    unmet.append("(c) the written reminder (\(VroegEropaf.reminderDateField)) is dated before the arrears began")
                }
            } else {
                unmet.append("(c) the date of the written reminder (\(VroegEropaf.reminderDateField)) is missing")
            }
        }
        let law = "Besluit gemeentelijke schuldhulpverlening art. 2"
        if !unmet.isEmpty {
            return Denial(code: .preconditionNotMet, message: "Vroeg Eropaf precondition not met (\(law)): " + unmet.joined(separator: "; ") + ".")
        }
        if payload[VroegEropaf.objectionField] == .boolean(true) {
            return Denial(code: .tenantObjected, message: "The tenant refused to have the details passed on (\(VroegEropaf.objectionField) is true), so nothing may be sent (\(law) (d)).")
        }
        guard let start else {
            return Denial(code: .preconditionNotMet, message: "The start of the arrears (\(VroegEropaf.arrearsStartField)) is missing; it is needed to check the \(threshold)-day threshold.")
        }
        let days = start.days(until: today)
        if days < threshold {
            return Denial(code: .arrearsBelowThreshold, message: "The arrears are \(days) days old; this rule requires at least \(threshold) days before the gemeente may be told.")
        }
        return nil
    }

    private static func date(_ value: PayloadValue?) -> LocalDate? {
        guard case .string(let text) = value else { return nil }
        return LocalDate(text)
    }
}
