import Foundation

extension ParseSession {
    /// What a rule is checked against: its convenant's parties and special-category bases.
    private struct ConvenantContext {
        var id: String
        var parties: [String]
        var basis: [DataCategory: String]
    }

    func readConvenant(_ root: Located) {
        guard let reader = ObjectReader(root, what: "a convenant",
                                        keys: ["id", "version", "title", "parties", "validFrom", "validUntil", "purpose", "legalBasis",
                                               "specialCategoryBasis", "processingActivity", "rules"],
                                        issues: issues) else { return }
        let id = reader.string("id", required: "a short name such as \"leefbaarheid-hoorn\"")
        if let id, !ParseSession.isValidIdentifier(id) {
            issues.error(reader.location(of: "id"), "'\(id)' is not a valid id: use lowercase letters, digits and single hyphens")
        }
        let version = reader.integer("version", required: "the version number, 1 for the first; a changed convenant gets a new version", minimum: 1)
        let title = reader.string("title", required: "the convenant's title")
        let parties = readParties(reader)
        let validFrom = readDate(reader, "validFrom", hint: "the first day the convenant is in force, \"YYYY-MM-DD\"")
        let validUntil = readDate(reader, "validUntil", hint: "the last day the convenant is in force, \"YYYY-MM-DD\"")
        if let validFrom, let validUntil, validUntil < validFrom {
            issues.error(reader.location(of: "validUntil"), "validUntil \(validUntil) lies before validFrom \(validFrom); swap or correct the dates")
        }
        let purpose = reader.string("purpose", required: "the purpose (doelbinding) the shared data may be used for")
        let legalBasis = reader.string("legalBasis", required: "the legal basis for sharing, e.g. \"AVG art. 6 lid 1 sub e\"")
        var basis: [DataCategory: String] = [:]
        if let reader = reader.object("specialCategoryBasis", what: "the legal basis per special category",
                                      keys: DataCategory.allCases.filter(\.isSpecial).map(\.rawValue)) {
            for category in DataCategory.allCases where category.isSpecial {
                if let text = reader.string(category.rawValue) { basis[category] = text }
            }
        }
        let activity = reader.string("processingActivity", required: "the URI of this processing activity in your processing register")
        if let activity, URL(string: activity)?.scheme == nil || activity.contains(" ") {
            issues.error(reader.location(of: "processingActivity"), "'\(activity)' is not a URI: name the processing activity in your register, e.g. \"https://register.hoorn.nl/verwerkingen/vroegsignalering\"")
        }
        let context = ConvenantContext(id: id ?? "", parties: parties, basis: basis)
        let ruleElements = reader.list("rules", required: "the list of rules: who may send which signals to whom")
        if ruleElements?.isEmpty == true {
            issues.error(reader.location(of: "rules"), "a convenant without rules lets nothing flow; add rules or remove the file")
        }
        var rules: [Rule] = []
        for element in ruleElements ?? [] {
            guard let rule = readRule(element, context) else { continue }
            if rules.contains(where: { $0.id == rule.id }) {
                issues.error(element.location.appending(key: "id", line: nil), "the rule id '\(rule.id)' is used twice in this convenant; rule ids must be unique")
                continue
            }
            rules.append(rule)
        }
        guard let id, let version, let validFrom, let validUntil else { return }
        let convenant = Convenant(id: id, version: version, title: title ?? "", parties: parties, validFrom: validFrom, validUntil: validUntil,
                                  purpose: purpose ?? "", legalBasis: legalBasis ?? "", specialCategoryBasis: basis,
                                  processingActivity: activity ?? "", rules: rules)
        convenants.append(ReadConvenant(convenant: convenant, location: reader.location, version: reader.location(of: "version"),
                                        validFrom: reader.location(of: "validFrom"), validUntil: reader.location(of: "validUntil")))
    }

    private func readParties(_ reader: ObjectReader) -> [String] {
        guard let list = reader.strings("parties", required: "the ids of the organisations that signed the convenant") else { return [] }
        if list.count < 2 {
            issues.error(reader.location(of: "parties"), "a convenant needs at least two parties; list the organisations that signed it")
        }
        for (party, location) in list where organisationsReadable && organisationIndex[party] == nil {
            issues.error(location, "unknown organisation '\(party)'\(hint(party, organisations.map(\.id))): add it to organisations.json or correct the id")
        }
        return list.map(\.0)
    }

    private func readDate(_ reader: ObjectReader, _ key: String, hint text: String) -> LocalDate? {
        guard let value = reader.string(key, required: text) else { return nil }
        guard let date = LocalDate(value) else {
            issues.error(reader.location(of: key), "'\(value)' is not a date: write an existing date as \"YYYY-MM-DD\"")
            return nil
        }
        return date
    }

    // MARK: - Rules

    private func readRule(_ located: Located, _ convenant: ConvenantContext) -> Rule? {
        guard let reader = ObjectReader(located, what: "a rule",
                                        keys: ["id", "from", "to", "signalTypes", "fields", "specialCategories", "retentionDays", "preconditions", "feedback"],
                                        issues: issues) else { return nil }
        let id = reader.string("id", required: "a short name for the rule, e.g. \"huurachterstand-naar-gemeente\"")
        let from = readSelector(reader, "from", convenant)
        let to = readSelector(reader, "to", convenant)
        let types = readRuleTypes(reader)
        let special = readSpecialCategories(reader, convenant)
        let fields = readRuleFields(reader, types: types, special: special, senders: from)
        var retention: Int?
        if let located = reader.value("retentionDays"), case .integer(let days) = located.node.value, days <= 0 {
            issues.error(located.location, "retentionDays is \(days): a recipient must be allowed to keep the payload at least 1 day; set how many days it may keep it")
        } else {
            retention = reader.integer("retentionDays", required: "how many days the recipient may keep the payload", minimum: 1, maximum: 36_500)
        }
        let preconditions = readPreconditions(reader, types: types)
        let feedback = readFeedback(reader, types: types)

        if let fields {
            for type in types {
                for field in type.fields where field.required && !fields.contains(field.name) {
                    issues.error(reader.location(of: "fields"), "signal type '\(type.id)' requires the field '\(field.name)', which this rule leaves out: a recipient would get an incomplete signal; add it to fields")
                }
            }
        }
        guard let id, let from, let to, let fields, let retention else { return nil }
        return Rule(id: id, from: from.selector, to: to.selector, signalTypes: types.map(\.id), fields: fields, specialCategories: special,
                    retentionDays: retention, preconditions: preconditions, feedback: feedback)
    }

    /// A selector and the sectors it can select (for the tenant-organisation check).
    private struct Selection {
        var selector: PartySelector
        var sectors: Set<Sector>
    }

    private func readSelector(_ reader: ObjectReader, _ key: String, _ convenant: ConvenantContext) -> Selection? {
        let role = key == "from" ? "senders" : "recipients"
        guard let selector = reader.object(key, what: "the \(role)", keys: ["organisations", "sectors"],
                                           required: "the \(role): { organisations: [...] } or { sectors: [...] }") else { return nil }
        switch (selector.has("organisations"), selector.has("sectors")) {
        case (true, true):
            issues.error(selector.location, "name the \(role) by organisations or by sectors, not both; split this into two rules")
            return nil
        case (false, false):
            issues.error(selector.location, "name the \(role): { organisations: [\"...\"] } or { sectors: [\"...\"] }")
            return nil
        case (true, false):
            let list = selector.strings("organisations") ?? []
            if list.isEmpty { issues.error(selector.location(of: "organisations"), "the list of \(role) is empty; name at least one organisation") }
            var sectors = Set<Sector>()
            for (id, location) in list {
                guard organisationsReadable else { continue }
                guard let index = organisationIndex[id] else {
                    issues.error(location, "unknown organisation '\(id)'\(hint(id, organisations.map(\.id))): add it to organisations.json or correct the id")
                    continue
                }
                sectors.insert(organisations[index].sector)
                if !convenant.parties.contains(id) {
                    issues.error(location, "'\(id)' is not a party of convenant '\(convenant.id)'; add it to parties or remove it from this rule")
                }
            }
            return Selection(selector: .organisations(list.map(\.0)), sectors: sectors)
        case (false, true):
            let list = selector.strings("sectors") ?? []
            if list.isEmpty { issues.error(selector.location(of: "sectors"), "the list of \(role) is empty; name at least one sector") }
            var sectors: [Sector] = []
            for (name, location) in list {
                guard let sector = readSector(Located(node: JSONNode(value: .string(name), line: location.line ?? 0, column: 0), location: location), missing: {}) else { continue }
                sectors.append(sector)
                let partyInSector = convenant.parties.contains { organisationIndex[$0].map { organisations[$0].sector } == sector }
                if organisationsReadable, !partyInSector {
                    issues.error(location, "no party of convenant '\(convenant.id)' is a \(sector.rawValue), so this rule never applies; add such a party or correct the sector")
                }
            }
            return Selection(selector: .sectors(sectors), sectors: Set(sectors))
        }
    }

    private func readRuleTypes(_ reader: ObjectReader) -> [SignalType] {
        let list = reader.strings("signalTypes", required: "the signal types this rule lets through, e.g. [\"overlast\"]") ?? []
        if reader.has("signalTypes"), list.isEmpty {
            issues.error(reader.location(of: "signalTypes"), "the list of signal types is empty; name at least one")
        }
        return list.compactMap { name, location in
            guard let index = signalTypeIndex[name] else {
                if signalTypesReadable {
                    issues.error(location, "unknown signal type '\(name)'\(hint(name, signalTypes.map(\.id))): define it in signal-types.json or correct the name")
                }
                return nil
            }
            return signalTypes[index]
        }
    }

    private func readSpecialCategories(_ reader: ObjectReader, _ convenant: ConvenantContext) -> [DataCategory] {
        (reader.strings("specialCategories") ?? []).compactMap { name, location in
            guard let category = readCategory(Located(node: JSONNode(value: .string(name), line: location.line ?? 0, column: 0), location: location), missing: {}) else { return nil }
            guard category.isSpecial else {
                issues.error(location, "'\(name)' is not a special category (only health and criminal are); remove it from specialCategories")
                return nil
            }
            if convenant.basis[category] == nil {
                issues.error(location, "this rule grants \(name) data, but the convenant states no legal basis for it: add specialCategoryBasis.\(name) (e.g. \(category == .health ? "\"AVG art. 9 lid 2 sub g jo. UAVG art. 30\"" : "\"Wpg art. 20\"")) or remove the grant")
            }
            return category
        }
    }

    /// The allowlist, checked against the rule's types, its grants and its senders.
    private func readRuleFields(_ reader: ObjectReader, types: [SignalType], special: [DataCategory], senders: Selection?) -> [String]? {
        guard let list = reader.strings("fields", required: "the allowlist: the only fields a recipient receives") else { return nil }
        if list.isEmpty {
            issues.error(reader.location(of: "fields"), "the allowlist is empty; list the fields a recipient may receive")
        }
        let typeNames = types.map { "'\($0.id)'" }.joined(separator: ", ")
        let senderIsTenantOrganisation = senders?.sectors.contains(.huurdersorganisatie) == true
        for (name, location) in list {
            let definitions = types.compactMap { $0.field(named: name) }
            if types.contains(where: { unreadableFields.contains("\($0.id).\(name)") }) { continue }
            if definitions.isEmpty {
                if !types.isEmpty {
                    let known = types.flatMap { $0.fields.map(\.name) }
                    issues.error(location, "the field '\(name)' is not defined by signal type \(typeNames)\(hint(name, known)); correct the name or remove it")
                }
                continue
            }
            for category in Set(definitions.map(\.category)).sorted() {
                if category.isSpecial, !special.contains(category) {
                    issues.error(location, "the field '\(name)' holds \(category.rawValue) data, a special category: list \"\(category.rawValue)\" in this rule's specialCategories (with specialCategoryBasis in the convenant) or remove the field")
                }
                if senderIsTenantOrganisation, category.isPersonal {
                    issues.error(location, "a huurdersorganisatie may not send personal data, and '\(name)' is \(category.rawValue) data; remove it from this rule")
                }
            }
        }
        return list.map(\.0)
    }

    private func readPreconditions(_ reader: ObjectReader, types: [SignalType]) -> Preconditions {
        var result = Preconditions()
        if let preconditions = reader.object("preconditions", what: "the preconditions", keys: PreconditionKind.allCases.map(\.rawValue)),
           let vroegEropaf = preconditions.object("vroegEropaf", what: "the Vroeg Eropaf precondition", keys: ["minimumArrearsDays"]) {
            result.vroegEropafMinimumArrearsDays = vroegEropaf.integer("minimumArrearsDays", minimum: 1, maximum: 3650) ?? Preconditions.defaultMinimumArrearsDays
            for type in types {
                let missing = VroegEropaf.missingFields(in: type)
                if !missing.isEmpty {
                    issues.error(preconditions.location(of: "vroegEropaf"), "signal type '\(type.id)' cannot attest the vroegEropaf precondition: it lacks \(missing.joined(separator: ", ")); remove the precondition or the type")
                }
            }
        }
        for type in types {
            for kind in type.requiredPreconditions where !result.kinds.contains(kind) {
                issues.error(reader.location, "signal type '\(type.id)' may only be shared under the \(kind.rawValue) precondition (Besluit gemeentelijke schuldhulpverlening art. 2): add preconditions: { \(kind.rawValue): { minimumArrearsDays: 30 } }")
            }
        }
        return result
    }

    private func readFeedback(_ reader: ObjectReader, types: [SignalType]) -> FeedbackRule {
        guard let feedback = reader.object("feedback", what: "the feedback allowed to the sender", keys: ["statuses", "fields"]) else { return FeedbackRule() }
        let statuses = feedback.strings("statuses") ?? []
        let fields = feedback.strings("fields") ?? []
        let knownStatuses = types.flatMap(\.feedback.statuses)
        let knownFields = types.flatMap { $0.feedback.fields.map(\.name) }
        for (status, location) in statuses where !types.isEmpty && !knownStatuses.contains(status) {
            issues.error(location, "'\(status)' is not a feedback status of \(types.map { "'\($0.id)'" }.joined(separator: ", "))\(hint(status, knownStatuses)): use one of \(knownStatuses.isEmpty ? "(none defined)" : knownStatuses.joined(separator: ", "))")
        }
        for (field, location) in fields where !types.isEmpty && !knownFields.contains(field) {
            issues.error(location, "'\(field)' is not a feedback field of \(types.map { "'\($0.id)'" }.joined(separator: ", "))\(hint(field, knownFields)); define it under the type's feedback.fields or remove it")
        }
        if statuses.isEmpty, !fields.isEmpty {
            issues.error(feedback.location(of: "statuses"), "feedback fields travel with a status: list the statuses a recipient may report")
        }
        return FeedbackRule(statuses: statuses.map(\.0), fields: fields.map(\.0))
    }
}
