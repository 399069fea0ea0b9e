import Foundation

// What a configuration change opens or closes, in words an administrator understands and in a
// form a program can read. Pure: compares two parsed configurations.

/// One difference between two configurations.
///
/// `text` says it in words; the other fields name what it is about, for programs (only the
/// ones that apply are set). `warning` is set when the change widens the sharing of
/// special-category data (health, criminal).
public struct ConfigChange: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        // A convenant as a whole.
        case convenantAdded, convenantRemoved, versionChanged, versionNotRaised, titleChanged, validityChanged
        case purposeChanged, legalBasisChanged, specialCategoryBasisChanged, processingActivityChanged
        case partyJoined, partyLeft
        // Who receives what: one flow is one sender, one recipient, one signal type.
        case flowOpened, flowClosed, fieldsGained, fieldsLost
        /// A field the recipient already received is now of a special category.
        case fieldsBecameSpecial
        // The rules of a convenant, matched by rule id.
        case ruleAdded, ruleRemoved, specialCategoryGranted, specialCategoryWithdrawn
        case retentionChanged, preconditionChanged, feedbackChanged
        // Organisations, matched by id.
        case organisationAdded, organisationRemoved, organisationSuspended, organisationUnsuspended
        case nameChanged, oinChanged, sectorChanged, administratorChanged, pinsChanged, deliveryChanged, postcodeAreasChanged
        // The catalogue of signal types.
        case signalTypeAdded, signalTypeRemoved, signalTypeFieldAdded, signalTypeFieldRemoved, signalTypeFieldCategoryChanged
        /// Descriptions, formats, required fields or the feedback catalogue of a type changed.
        case signalTypeChanged
        // node.json.
        case nodeSettingChanged
    }

    public var kind: Kind
    public var text: String
    public var warning: String?
    public var convenant: String?
    public var rule: String?
    public var organisation: String?
    public var sender: String?
    public var recipient: String?
    public var signalType: String?
    /// For node settings: the setting's name in node.json (e.g. `listen.peer`).
    public var setting: String?
    /// The fields (or feedback statuses, pins, postcode areas) the change is about.
    public var fields: [String]?
    public var before: String?
    public var after: String?

    public init(kind: Kind, text: String, warning: String? = nil, convenant: String? = nil, rule: String? = nil, organisation: String? = nil,
                sender: String? = nil, recipient: String? = nil, signalType: String? = nil, setting: String? = nil, fields: [String]? = nil,
                before: String? = nil, after: String? = nil) {
        self.kind = kind
        self.text = text
        self.warning = warning
        self.convenant = convenant
        self.rule = rule
        self.organisation = organisation
        self.sender = sender
        self.recipient = recipient
        self.signalType = signalType
        self.setting = setting
        self.fields = fields
        self.before = before
        self.after = after
    }
}

/// The changes to one convenant. A convenant is matched by id and version; when an id has one
/// version on each side with different numbers, the two are compared as old and new version.
public struct ConvenantChanges: Codable, Equatable, Sendable {
    public var id: String
    public var title: String
    /// Nil when the convenant is new.
    public var oldVersion: Int?
    /// Nil when the convenant is removed.
    public var newVersion: Int?
    public var changes: [ConfigChange]

    public init(id: String, title: String, oldVersion: Int?, newVersion: Int?, changes: [ConfigChange]) {
        self.id = id
        self.title = title
        self.oldVersion = oldVersion
        self.newVersion = newVersion
        self.changes = changes
    }
}

/// Everything that differs between two configurations, per convenant, then organisations,
/// signal types and node settings.
///
/// Flows are worked out the way the policy engine applies rules: a rule lets each party of
/// its convenant that `from` selects send each of its signal types to each party that `to`
/// selects (sector rules expanded to the organisations), carrying the rule's fields that the
/// type defines, special-category fields only where the rule grants the category and the
/// convenant states its basis. Where several rules cover one flow, the flow carries what any
/// of them allows. Sending to oneself is not a flow. Suspension is reported per organisation,
/// not as flows closing.
///
/// Warnings (special-category widening): a flow opening with health or criminal fields, a
/// recipient gaining such a field, a field it already received becoming such a field, a rule
/// newly granting such a category, and lifting the suspension of an organisation that sends
/// or receives such data. A longer validity or retention is reported, not warned about.
public struct ConfigDiff: Codable, Equatable, Sendable {
    public var convenants: [ConvenantChanges]
    public var organisations: [ConfigChange]
    public var signalTypes: [ConfigChange]
    public var node: [ConfigChange]

    public init(old: Configuration, new: Configuration) {
        let context = DiffContext(old: old, new: new)
        convenants = context.convenantChanges()
        organisations = context.organisationChanges()
        signalTypes = context.signalTypeChanges()
        node = context.nodeChanges()
    }

    /// Every change, in the order rendered.
    public var changes: [ConfigChange] { convenants.flatMap(\.changes) + organisations + signalTypes + node }

    /// The changes that widen the sharing of special-category data.
    public var warnings: [ConfigChange] { changes.filter { $0.warning != nil } }

    public var isEmpty: Bool { changes.isEmpty }

    /// One line: "2 flows opened, 1 closed, 1 flow with changed fields, 3 other changes, 1 warning",
    /// or "no changes".
    public var summary: String {
        let all = changes
        let opened = all.filter { $0.kind == .flowOpened }.count
        let closed = all.filter { $0.kind == .flowClosed }.count
        let fieldKinds: Set<ConfigChange.Kind> = [.fieldsGained, .fieldsLost, .fieldsBecameSpecial]
        let fieldChanges = all.filter { fieldKinds.contains($0.kind) }
        let changedFlows = Set(fieldChanges.map { [$0.convenant ?? "", $0.sender ?? "", $0.recipient ?? "", $0.signalType ?? ""] }).count
        let others = all.count - opened - closed - fieldChanges.count
        let warningCount = all.filter { $0.warning != nil }.count
        func count(_ n: Int, _ singular: String, _ plural: String) -> String { "\(n) \(n == 1 ? singular : plural)" }
        var parts: [String] = []
        if opened > 0 { parts.append(count(opened, "flow opened", "flows opened")) }
        if closed > 0 { parts.append(opened > 0 ? "\(closed) closed" : count(closed, "flow closed", "flows closed")) }
        if changedFlows > 0 { parts.append(count(changedFlows, "flow with changed fields", "flows with changed fields")) }
        if others > 0 { parts.append(count(others, "other change", "other changes")) }
        if warningCount > 0 { parts.append(count(warningCount, "warning", "warnings")) }
        return parts.isEmpty ? "no changes" : parts.joined(separator: ", ")
    }

    /// The diff in words: a section per changed convenant, then organisations, signal types
    /// and node settings; a `WARNING:` line under every change that widens special-category
    /// sharing; the summary last.
    public func render() -> String {
        guard !isEmpty else { return "No changes: both configurations let the same data flow under the same terms.\n" }
        var lines: [String] = []
        func section(_ title: String, _ changes: [ConfigChange]) {
            guard !changes.isEmpty else { return }
            if !lines.isEmpty { lines.append("") }
            lines.append(title)
            for change in changes {
                lines.append("  " + change.text)
                if let warning = change.warning { lines.append("    WARNING: " + warning) }
            }
        }
        for convenant in convenants {
            let version: String
            switch (convenant.oldVersion, convenant.newVersion) {
            case (nil, let new?): version = "new, version \(new)"
            case (let old?, nil): version = "removed, was version \(old)"
            case (let old?, let new?) where old != new: version = "version \(old) -> \(new)"
            case (_, let new): version = "version \(new ?? 0)"
            }
            section("Convenant '\(convenant.id)' (\(convenant.title)), \(version):", convenant.changes)
        }
        section("Organisations:", organisations)
        section("Signal types:", signalTypes)
        section("Node settings (node.json):", node)
        lines.append("")
        lines.append("Summary: " + summary)
        return lines.joined(separator: "\n") + "\n"
    }

    /// The machine-readable form: the diff plus `summary` and `warnings` (the warning
    /// sentences), as pretty-printed JSON with sorted keys.
    public func jsonData() -> Data {
        struct Report: Encodable {
            var summary: String
            var warnings: [String]
            var convenants: [ConvenantChanges]
            var organisations: [ConfigChange]
            var signalTypes: [ConfigChange]
            var node: [ConfigChange]
        }
        let report = Report(summary: summary, warnings: warnings.compactMap(\.warning), convenants: convenants,
                            organisations: organisations, signalTypes: signalTypes, node: node)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings, numbers and arrays cannot fail.
        return try! encoder.encode(report)
    }
}

// MARK: - Flows

/// One sender sending one signal type to one recipient under a convenant.
struct Flow: Hashable, Comparable {
    var sender: String
    var recipient: String
    var type: String

    static func < (lhs: Flow, rhs: Flow) -> Bool {
        (lhs.sender, lhs.type, lhs.recipient) < (rhs.sender, rhs.type, rhs.recipient)
    }
}

extension Convenant {
    /// The fields each flow of this convenant may carry (field name -> category), worked out
    /// from its rules against `configuration`'s organisations and signal types.
    func flows(in configuration: Configuration) -> [Flow: [String: DataCategory]] {
        let parties = parties.compactMap { configuration.organisation(id: $0) }
        var flows: [Flow: [String: DataCategory]] = [:]
        for rule in rules {
            let senders = parties.filter { rule.from.matches($0) }
            let recipients = parties.filter { rule.to.matches($0) }
            for type in rule.signalTypes.compactMap({ configuration.signalType(id: $0) }) {
                var fields: [String: DataCategory] = [:]
                for name in rule.fields {
                    guard let definition = type.field(named: name) else { continue }
                    let category = definition.category
                    if category.isSpecial, !rule.specialCategories.contains(category) || specialCategoryBasis[category] == nil { continue }
                    fields[name] = category
                }
                for sender in senders {
                    for recipient in recipients where recipient.id != sender.id {
                        flows[Flow(sender: sender.id, recipient: recipient.id, type: type.id), default: [:]].merge(fields) { first, _ in first }
                    }
                }
            }
        }
        return flows
    }
}

// MARK: - The comparison

private struct DiffContext {
    let old: Configuration
    let new: Configuration

    /// An organisation as an administrator knows it: its name, from whichever side has it.
    func name(_ id: String) -> String {
        new.organisation(id: id)?.name ?? old.organisation(id: id)?.name ?? id
    }

    func nameAndID(_ id: String) -> String {
        let name = name(id)
        return name == id ? id : "\(name) (\(id))"
    }

    /// Field names in the order the signal type defines them, each special one marked.
    func describe(_ fields: [String: DataCategory], type: String) -> String {
        guard !fields.isEmpty else { return "no fields" }
        return ordered(Array(fields.keys), type: type).map { name in
            let category = fields[name]!
            return category.isSpecial ? "\(name) [\(category.rawValue)]" : name
        }.joined(separator: ", ")
    }

    func ordered(_ fields: [String], type: String) -> [String] {
        let definition = new.signalType(id: type) ?? old.signalType(id: type)
        let position = Dictionary((definition?.fields ?? []).enumerated().map { ($0.element.name, $0.offset) }) { first, _ in first }
        return fields.sorted { (position[$0] ?? Int.max, $0) < (position[$1] ?? Int.max, $1) }
    }

    static func categories(_ categories: Set<DataCategory>) -> String {
        categories.sorted().map(\.rawValue).joined(separator: " and ")
    }

    // MARK: Convenants

    func convenantChanges() -> [ConvenantChanges] {
        var ids: [String] = []
        for convenant in new.convenants + old.convenants where !ids.contains(convenant.id) { ids.append(convenant.id) }
        var result: [ConvenantChanges] = []
        for id in ids {
            var olds = old.convenants.filter { $0.id == id }
            var news = new.convenants.filter { $0.id == id }
            var pairs: [(Convenant?, Convenant?)] = []
            for convenant in olds {
                if let match = news.firstIndex(where: { $0.version == convenant.version }) {
                    pairs.append((convenant, news.remove(at: match)))
                }
            }
            olds.removeAll { convenant in pairs.contains { $0.0?.version == convenant.version } }
            if olds.count == 1, news.count == 1 {
                pairs.append((olds.removeFirst(), news.removeFirst()))
            }
            pairs += olds.map { ($0, nil) } + news.map { (nil, $0) }
            pairs.sort { ($0.1 ?? $0.0)!.version < ($1.1 ?? $1.0)!.version }
            for pair in pairs {
                let changes: [ConfigChange]
                switch pair {
                case (let before?, let after?): changes = compare(before, after)
                case (nil, let after?): changes = added(after)
                case (let before?, nil): changes = removed(before)
                case (nil, nil): changes = []
                }
                guard !changes.isEmpty else { continue }
                result.append(ConvenantChanges(id: id, title: (pair.1 ?? pair.0)!.title, oldVersion: pair.0?.version,
                                               newVersion: pair.1?.version, changes: changes))
            }
        }
        return result
    }

    private func added(_ convenant: Convenant) -> [ConfigChange] {
        let parties = convenant.parties.map(nameAndID).joined(separator: ", ")
        var changes = [ConfigChange(kind: .convenantAdded,
                                    text: "added: in force from \(convenant.validFrom) to \(convenant.validUntil), between \(parties)",
                                    convenant: convenant.id, after: "version \(convenant.version)")]
        changes += flowChanges(convenant.id, before: [:], after: convenant.flows(in: new))
        return changes
    }

    private func removed(_ convenant: Convenant) -> [ConfigChange] {
        [ConfigChange(kind: .convenantRemoved, text: "removed: nothing flows under it any more", convenant: convenant.id,
                      before: "version \(convenant.version)")]
            + flowChanges(convenant.id, before: convenant.flows(in: old), after: [:])
    }

    private func compare(_ before: Convenant, _ after: Convenant) -> [ConfigChange] {
        let id = after.id
        var changes: [ConfigChange] = []
        func text(_ kind: ConfigChange.Kind, _ what: String, _ old: String, _ new: String) {
            guard old != new else { return }
            changes.append(ConfigChange(kind: kind, text: "\(what) changed to \"\(new)\" (was \"\(old)\")", convenant: id, before: old, after: new))
        }
        if before.version != after.version {
            changes.append(ConfigChange(kind: .versionChanged, text: "version \(before.version) -> \(after.version)", convenant: id,
                                        before: String(before.version), after: String(after.version)))
        } else if before != after {
            changes.append(ConfigChange(kind: .versionNotRaised,
                                        text: "NOTE: the content changed but the version is still \(after.version); every decision in the journal names the convenant version, so give changed content a new version number",
                                        convenant: id, before: String(before.version), after: String(after.version)))
        }
        if before.validFrom != after.validFrom || before.validUntil != after.validUntil {
            let old = "\(before.validFrom) to \(before.validUntil)", new = "\(after.validFrom) to \(after.validUntil)"
            changes.append(ConfigChange(kind: .validityChanged, text: "now in force from \(after.validFrom) to \(after.validUntil) (was \(old))",
                                        convenant: id, before: old, after: new))
        }
        text(.titleChanged, "title", before.title, after.title)
        text(.purposeChanged, "purpose (doelbinding)", before.purpose, after.purpose)
        text(.legalBasisChanged, "legal basis", before.legalBasis, after.legalBasis)
        for category in DataCategory.allCases where category.isSpecial {
            let old = before.specialCategoryBasis[category], new = after.specialCategoryBasis[category]
            guard old != new else { continue }
            let what = "legal basis for \(category.rawValue) data"
            let sentence = switch (old, new) {
            case (nil, let new?): "\(what) added: \"\(new)\""
            case (_?, nil): "\(what) removed"
            default: "\(what) changed to \"\(new ?? "")\" (was \"\(old ?? "")\")"
            }
            changes.append(ConfigChange(kind: .specialCategoryBasisChanged, text: sentence, convenant: id, fields: [category.rawValue], before: old, after: new))
        }
        text(.processingActivityChanged, "processing activity", before.processingActivity, after.processingActivity)
        for party in after.parties where !before.parties.contains(party) {
            changes.append(ConfigChange(kind: .partyJoined, text: "\(nameAndID(party)) joins as a party", convenant: id, organisation: party))
        }
        for party in before.parties where !after.parties.contains(party) {
            changes.append(ConfigChange(kind: .partyLeft, text: "\(nameAndID(party)) leaves as a party", convenant: id, organisation: party))
        }
        changes += ruleChanges(before, after)
        changes += flowChanges(id, before: before.flows(in: old), after: after.flows(in: new))
        return changes
    }

    // MARK: Rules

    private func describe(_ selector: PartySelector) -> String {
        switch selector {
        case .organisations(let ids): ids.map(name).joined(separator: ", ")
        case .sectors(let sectors): "every " + sectors.map(\.rawValue).joined(separator: " or ") + " party"
        }
    }

    private func ruleChanges(_ before: Convenant, _ after: Convenant) -> [ConfigChange] {
        let convenant = after.id
        var changes: [ConfigChange] = []
        for rule in after.rules where !before.rules.contains(where: { $0.id == rule.id }) {
            let granted = Set(rule.specialCategories)
            let grants = granted.isEmpty ? "" : ", grants \(DiffContext.categories(granted)) data"
            changes.append(ConfigChange(
                kind: .ruleAdded,
                text: "rule '\(rule.id)' added: \(describe(rule.from)) -> \(describe(rule.to)), \(rule.signalTypes.joined(separator: ", ")), kept \(rule.retentionDays) days\(grants)",
                warning: granted.isEmpty ? nil : "new rule '\(rule.id)' grants \(DiffContext.categories(granted)) data",
                convenant: convenant, rule: rule.id, fields: granted.isEmpty ? nil : granted.sorted().map(\.rawValue)))
        }
        for rule in before.rules where !after.rules.contains(where: { $0.id == rule.id }) {
            changes.append(ConfigChange(kind: .ruleRemoved, text: "rule '\(rule.id)' removed", convenant: convenant, rule: rule.id))
        }
        for rule in after.rules {
            guard let previous = before.rules.first(where: { $0.id == rule.id }) else { continue }
            let granted = Set(rule.specialCategories).subtracting(previous.specialCategories)
            let withdrawn = Set(previous.specialCategories).subtracting(rule.specialCategories)
            if !granted.isEmpty {
                let categories = DiffContext.categories(granted)
                changes.append(ConfigChange(kind: .specialCategoryGranted, text: "rule '\(rule.id)' now grants \(categories) data",
                                            warning: "rule '\(rule.id)' newly grants \(categories) data",
                                            convenant: convenant, rule: rule.id, fields: granted.sorted().map(\.rawValue)))
            }
            if !withdrawn.isEmpty {
                changes.append(ConfigChange(kind: .specialCategoryWithdrawn,
                                            text: "rule '\(rule.id)' no longer grants \(DiffContext.categories(withdrawn)) data",
                                            convenant: convenant, rule: rule.id, fields: withdrawn.sorted().map(\.rawValue)))
            }
            if rule.retentionDays != previous.retentionDays {
                changes.append(ConfigChange(kind: .retentionChanged,
                                            text: "rule '\(rule.id)': recipients may keep the payload \(rule.retentionDays) days (was \(previous.retentionDays))",
                                            convenant: convenant, rule: rule.id, before: String(previous.retentionDays), after: String(rule.retentionDays)))
            }
            let oldDays = previous.preconditions.vroegEropafMinimumArrearsDays, newDays = rule.preconditions.vroegEropafMinimumArrearsDays
            if oldDays != newDays {
                let sentence = switch (oldDays, newDays) {
                case (nil, let days?): "now requires the Vroeg Eropaf steps (a)-(d) and at least \(days) days of arrears"
                case (_?, nil): "no longer requires the Vroeg Eropaf steps (a)-(d) and an arrears threshold"
                default: "Vroeg Eropaf threshold is now \(newDays ?? 0) days of arrears (was \(oldDays ?? 0))"
                }
                changes.append(ConfigChange(kind: .preconditionChanged, text: "rule '\(rule.id)': " + sentence, convenant: convenant, rule: rule.id,
                                            before: oldDays.map { "vroegEropaf \($0) days" }, after: newDays.map { "vroegEropaf \($0) days" }))
            }
            if rule.feedback != previous.feedback {
                changes.append(feedbackChange(convenant: convenant, rule: rule.id, before: previous.feedback, after: rule.feedback))
            }
        }
        return changes
    }

    private func feedbackChange(convenant: String, rule: String, before: FeedbackRule, after: FeedbackRule) -> ConfigChange {
        func quoted(_ items: [String]) -> String { items.map { "'\($0)'" }.joined(separator: ", ") }
        var parts: [String] = []
        let newStatuses = after.statuses.filter { !before.statuses.contains($0) }
        let goneStatuses = before.statuses.filter { !after.statuses.contains($0) }
        let newFields = after.fields.filter { !before.fields.contains($0) }
        let goneFields = before.fields.filter { !after.fields.contains($0) }
        if !newStatuses.isEmpty { parts.append("may now report \(quoted(newStatuses))") }
        if !goneStatuses.isEmpty { parts.append("may no longer report \(quoted(goneStatuses))") }
        if !newFields.isEmpty { parts.append("may now add \(quoted(newFields))") }
        if !goneFields.isEmpty { parts.append("may no longer add \(quoted(goneFields))") }
        if after.statuses.isEmpty { parts.append("no feedback to the sender any more") }
        if parts.isEmpty { parts.append("feedback reordered") }
        func listing(_ feedback: FeedbackRule) -> String {
            feedback.statuses.isEmpty ? "none" : feedback.statuses.joined(separator: ", ") + (feedback.fields.isEmpty ? "" : " with " + feedback.fields.joined(separator: ", "))
        }
        return ConfigChange(kind: .feedbackChanged, text: "rule '\(rule)': feedback from recipients " + parts.joined(separator: "; "),
                            convenant: convenant, rule: rule, fields: newStatuses + goneStatuses + newFields + goneFields,
                            before: listing(before), after: listing(after))
    }

    // MARK: Flows

    private func flowChanges(_ convenant: String, before: [Flow: [String: DataCategory]], after: [Flow: [String: DataCategory]]) -> [ConfigChange] {
        var opened: [ConfigChange] = [], closed: [ConfigChange] = [], changed: [ConfigChange] = []
        func route(_ flow: Flow) -> String { "\(name(flow.sender)) -> \(name(flow.recipient)): \(flow.type)" }
        func change(_ kind: ConfigChange.Kind, _ flow: Flow, _ text: String, warning: String? = nil, fields: [String]) -> ConfigChange {
            ConfigChange(kind: kind, text: text, warning: warning, convenant: convenant, sender: flow.sender, recipient: flow.recipient,
                         signalType: flow.type, fields: ordered(fields, type: flow.type))
        }
        func widening(_ flow: Flow, _ verb: String, _ special: [String: DataCategory]) -> String? {
            guard !special.isEmpty else { return nil }
            let categories = DiffContext.categories(Set(special.values))
            return "\(name(flow.recipient)) \(verb) \(categories) data (\(ordered(Array(special.keys), type: flow.type).joined(separator: ", "))) in \(flow.type) from \(name(flow.sender))"
        }
        for flow in after.keys.sorted() {
            let fields = after[flow]!
            guard let previous = before[flow] else {
                opened.append(change(.flowOpened, flow, "flow opens: \(route(flow)) with \(describe(fields, type: flow.type))",
                                     warning: widening(flow, "starts receiving", fields.filter { $0.value.isSpecial }), fields: Array(fields.keys)))
                continue
            }
            let gained = fields.filter { previous[$0.key] == nil }
            let lost = previous.filter { fields[$0.key] == nil }
            let becameSpecial = fields.filter { name, category in
                guard let old = previous[name] else { return false }
                return category.isSpecial && old != category
            }
            if !gained.isEmpty {
                changed.append(change(.fieldsGained, flow, "\(route(flow)) gains \(describe(gained, type: flow.type))",
                                      warning: widening(flow, "gains", gained.filter { $0.value.isSpecial }), fields: Array(gained.keys)))
            }
            if !lost.isEmpty {
                changed.append(change(.fieldsLost, flow, "\(route(flow)) loses \(describe(lost, type: flow.type))", fields: Array(lost.keys)))
            }
            if !becameSpecial.isEmpty {
                changed.append(change(.fieldsBecameSpecial, flow, "\(route(flow)): \(describe(becameSpecial, type: flow.type)) now special-category data",
                                      warning: widening(flow, "now receives", becameSpecial), fields: Array(becameSpecial.keys)))
            }
        }
        for flow in before.keys.sorted() where after[flow] == nil {
            closed.append(change(.flowClosed, flow, "flow closes: \(route(flow))", fields: Array(before[flow]!.keys)))
        }
        return opened + closed + changed
    }

    // MARK: Organisations

    func organisationChanges() -> [ConfigChange] {
        var changes: [ConfigChange] = []
        for organisation in new.organisations where old.organisation(id: organisation.id) == nil {
            changes.append(ConfigChange(kind: .organisationAdded,
                                        text: "\(organisation.name) (\(organisation.id)) added: \(organisation.sector.rawValue), OIN \(organisation.oin), \(Self.describe(organisation.delivery))",
                                        organisation: organisation.id))
        }
        for organisation in old.organisations where new.organisation(id: organisation.id) == nil {
            changes.append(ConfigChange(kind: .organisationRemoved, text: "\(organisation.name) (\(organisation.id)) removed", organisation: organisation.id))
        }
        for organisation in new.organisations {
            guard let previous = old.organisation(id: organisation.id) else { continue }
            let who = "\(organisation.name) (\(organisation.id))"
            func add(_ kind: ConfigChange.Kind, _ text: String, warning: String? = nil, fields: [String]? = nil, before: String? = nil, after: String? = nil) {
                changes.append(ConfigChange(kind: kind, text: text, warning: warning, organisation: organisation.id, fields: fields, before: before, after: after))
            }
            if organisation.suspended != previous.suspended {
                if organisation.suspended {
                    add(.organisationSuspended, "\(who) suspended: nothing flows to or from it")
                } else {
                    add(.organisationUnsuspended, "\(who) no longer suspended: its flows resume", warning: resumedSpecialFlows(of: organisation))
                }
            }
            if organisation.name != previous.name {
                add(.nameChanged, "\(organisation.id): name \"\(previous.name)\" -> \"\(organisation.name)\" (must match the certificate's subject O)",
                    before: previous.name, after: organisation.name)
            }
            if organisation.oin != previous.oin {
                add(.oinChanged, "\(who): OIN \(previous.oin) -> \(organisation.oin) (must match the certificate's subject serialNumber)",
                    before: previous.oin, after: organisation.oin)
            }
            if organisation.sector != previous.sector {
                add(.sectorChanged, "\(who): sector \(previous.sector.rawValue) -> \(organisation.sector.rawValue) (rules by sector now select it differently)",
                    before: previous.sector.rawValue, after: organisation.sector.rawValue)
            }
            if organisation.administrator != previous.administrator {
                add(.administratorChanged,
                    organisation.administrator ? "\(who) may now apply configuration over the admin listener" : "\(who) may no longer apply configuration",
                    before: String(previous.administrator), after: String(organisation.administrator))
            }
            if organisation.pins != previous.pins {
                let added = organisation.pins.filter { !previous.pins.contains($0) }, removed = previous.pins.filter { !organisation.pins.contains($0) }
                let sentence = added.isEmpty && removed.isEmpty ? "reordered" : "\(added.count) added, \(removed.count) removed"
                add(.pinsChanged, "\(who): public-key pins \(sentence)", fields: added + removed,
                    before: previous.pins.joined(separator: " "), after: organisation.pins.joined(separator: " "))
            }
            if organisation.delivery != previous.delivery {
                add(.deliveryChanged, "\(who): delivery \(Self.describe(organisation.delivery)) (was \(Self.describe(previous.delivery)))",
                    before: Self.describe(previous.delivery), after: Self.describe(organisation.delivery))
            }
            if organisation.postcodeAreas != previous.postcodeAreas {
                let now = organisation.postcodeAreas.map(\.description), was = previous.postcodeAreas.map(\.description)
                let added = now.filter { !was.contains($0) }, removed = was.filter { !now.contains($0) }
                var parts: [String] = []
                if !added.isEmpty { parts.append("added " + added.joined(separator: ", ")) }
                if !removed.isEmpty { parts.append("removed " + removed.joined(separator: ", ")) }
                if parts.isEmpty { parts.append("reordered") }
                add(.postcodeAreasChanged, "\(who): postcode areas \(parts.joined(separator: "; ")) (arrears alerts are routed by these)",
                    fields: added + removed, before: was.joined(separator: ", "), after: now.joined(separator: ", "))
            }
        }
        return changes
    }

    private static func describe(_ delivery: DeliveryMode) -> String {
        switch delivery {
        case .inbox: "inbox (pulls its signals)"
        case .push(let endpoint): "push to \(endpoint.absoluteString)"
        }
    }

    /// The warning when lifting a suspension lets special-category data flow to or from an
    /// organisation again, or nil when none of its flows carries such data.
    private func resumedSpecialFlows(of organisation: Organisation) -> String? {
        var categories = Set<DataCategory>()
        var count = 0
        for convenant in new.convenants {
            for (flow, fields) in convenant.flows(in: new) where flow.sender == organisation.id || flow.recipient == organisation.id {
                let special = fields.values.filter(\.isSpecial)
                if !special.isEmpty {
                    categories.formUnion(special)
                    count += 1
                }
            }
        }
        guard count > 0 else { return nil }
        return "lifting the suspension of \(organisation.name) lets \(DiffContext.categories(categories)) data flow to or from it again (\(count) flow\(count == 1 ? "" : "s"))"
    }

    // MARK: Signal types

    func signalTypeChanges() -> [ConfigChange] {
        var changes: [ConfigChange] = []
        for type in new.signalTypes where old.signalType(id: type.id) == nil {
            changes.append(ConfigChange(kind: .signalTypeAdded, text: "signal type '\(type.id)' added with \(type.fields.count) fields", signalType: type.id))
        }
        for type in old.signalTypes where new.signalType(id: type.id) == nil {
            changes.append(ConfigChange(kind: .signalTypeRemoved, text: "signal type '\(type.id)' removed", signalType: type.id))
        }
        for type in new.signalTypes {
            guard let previous = old.signalType(id: type.id), previous != type else { continue }
            let before = changes.count
            for field in type.fields {
                guard let earlier = previous.field(named: field.name) else {
                    changes.append(ConfigChange(kind: .signalTypeFieldAdded, text: "signal type '\(type.id)': field '\(field.name)' added (\(field.category.rawValue))",
                                                signalType: type.id, fields: [field.name], after: field.category.rawValue))
                    continue
                }
                if earlier.category != field.category {
                    changes.append(ConfigChange(kind: .signalTypeFieldCategoryChanged,
                                                text: "signal type '\(type.id)': field '\(field.name)' is now \(field.category.rawValue) data (was \(earlier.category.rawValue))",
                                                signalType: type.id, fields: [field.name], before: earlier.category.rawValue, after: field.category.rawValue))
                }
            }
            for field in previous.fields where type.field(named: field.name) == nil {
                changes.append(ConfigChange(kind: .signalTypeFieldRemoved, text: "signal type '\(type.id)': field '\(field.name)' removed",
                                            signalType: type.id, fields: [field.name], before: field.category.rawValue))
            }
            if changes.count == before {
                changes.append(ConfigChange(kind: .signalTypeChanged,
                                            text: "signal type '\(type.id)': descriptions, formats, required fields or feedback statuses changed",
                                            signalType: type.id))
            }
        }
        return changes
    }

    // MARK: Node

    func nodeChanges() -> [ConfigChange] {
        let settings: [(String, (NodeSettings) -> String)] = [
            ("node.name", \.name), ("node.operator", \.operatorID),
            ("listen.peer", { $0.listen.peer.description }), ("listen.admin", { $0.listen.admin.description }),
            ("tls.ca", \.tls.ca), ("tls.certificate", \.tls.certificate), ("tls.key", \.tls.key),
            ("tls.crl", { $0.tls.crl ?? "none" }), ("tls.pins", { $0.tls.pins ?? "none" }), ("state", \.state),
            ("delivery.minimumBackoffSeconds", { String($0.delivery.minimumBackoffSeconds) }),
            ("delivery.maximumBackoffSeconds", { String($0.delivery.maximumBackoffSeconds) }),
            ("delivery.maximumLifetimeSeconds", { String($0.delivery.maximumLifetimeSeconds) }),
            ("delivery.maximumInFlight", { String($0.delivery.maximumInFlight) }),
            ("delivery.timeoutSeconds", { String($0.delivery.timeoutSeconds) }),
            ("limits.maximumBodyBytes", { String($0.limits.maximumBodyBytes) }),
            ("limits.maximumHeaderBytes", { String($0.limits.maximumHeaderBytes) }),
            ("limits.maximumHeaderCount", { String($0.limits.maximumHeaderCount) }),
            ("limits.maximumConnections", { String($0.limits.maximumConnections) }),
            ("timeZone", { $0.timeZone.identifier }),
        ]
        return settings.compactMap { setting, value in
            let before = value(old.node), after = value(new.node)
            guard before != after else { return nil }
            return ConfigChange(kind: .nodeSettingChanged, text: "\(setting): \(before) -> \(after)", setting: setting, before: before, after: after)
        }
    }
}
