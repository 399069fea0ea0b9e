import Foundation
import WaakvlamCore
import WaakvlamRelay

// `waakvlam config check` and `waakvlam policy explain`.

private func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// `waakvlam config check [DIR]`: every issue as `FILE: PATH: severity: message`; exit 0
/// without errors, 1 with errors, 2 on a usage mistake.
func runConfigCommand(_ arguments: [String]) -> Int32 {
    switch arguments.first {
    case "diff": return runConfigDiffCommand(Array(arguments.dropFirst()))
    case "history": return runConfigHistoryCommand(Array(arguments.dropFirst()))
    case "show": return runConfigShowCommand(Array(arguments.dropFirst()))
    case "rollback": return runConfigRollbackCommand(Array(arguments.dropFirst()))
    default: break
    }
    guard arguments.first == "check", arguments.count <= 2 else {
        printError("usage: waakvlam config check [DIR]   (DIR defaults to Config)")
        return 2
    }
    let folder = arguments.count == 2 ? arguments[1] : "Config"
    let result = ConfigLoading.load(directory: folder)
    for issue in result.issues { print(issue.description) }
    let errors = result.errors.count, warnings = result.warnings.count
    if errors == 0 {
        print("\(folder): valid" + (warnings > 0 ? " (\(warnings) warning\(warnings == 1 ? "" : "s"))" : ""))
        return 0
    }
    print("\(folder): \(errors) error\(errors == 1 ? "" : "s"), \(warnings) warning\(warnings == 1 ? "" : "s"); fix the errors and run `waakvlam config check \(folder)` again")
    return 1
}

private let policyUsage = """
usage: waakvlam policy explain --config DIR --from ORG --type TYPE [--to ORG ...] [--route-by-address]
                               --payload FILE [--at YYYY-MM-DD] [--json]
  ORG is an organisation id or OIN. Without --to and --route-by-address, a signal type with a
  precondition (betalingsachterstand) is routed to the gemeente of its address.
  Prints, per recipient, allowed or denied, the rule and convenant version, and the fields kept
  and dropped. Sends nothing. Exit 0 when decided, 1 when the payload or configuration is
  invalid, 2 on a usage mistake.
"""

/// The options of `policy explain`.
private struct ExplainOptions {
    var config = "Config"
    var from: String?
    var type: String?
    var recipients: [RecipientRequest] = []
    var payloadFile: String?
    var at: String?
    var json = false

    init?(_ arguments: [String]) {
        var remaining = arguments[...]
        func value(_ flag: String) -> String? {
            guard let next = remaining.popFirst(), !next.hasPrefix("--") else {
                printError("waakvlam: \(flag) needs a value")
                return nil
            }
            return next
        }
        while let flag = remaining.popFirst() {
            switch flag {
            case "--config": guard let text = value(flag) else { return nil }; config = text
            case "--from": guard let text = value(flag) else { return nil }; from = text
            case "--type": guard let text = value(flag) else { return nil }; type = text
            case "--to": guard let text = value(flag) else { return nil }; recipients.append(.organisation(text))
            case "--route-by-address": recipients.append(.gemeenteOfAddress)
            case "--payload": guard let text = value(flag) else { return nil }; payloadFile = text
            case "--at": guard let text = value(flag) else { return nil }; at = text
            case "--json": json = true
            default:
                printError("waakvlam: unknown option '\(flag)'")
                return nil
            }
        }
        guard from != nil, type != nil, payloadFile != nil else {
            printError("waakvlam: --from, --type and --payload are required")
            return nil
        }
    }
}

/// `waakvlam policy explain`: what the policy engine decides for a payload, sending nothing.
func runPolicyCommand(_ arguments: [String]) -> Int32 {
    guard arguments.first == "explain", var options = ExplainOptions(Array(arguments.dropFirst())),
          let senderName = options.from, let typeName = options.type, let payloadFile = options.payloadFile else {
        printError(policyUsage)
        return 2
    }
    let loaded = ConfigLoading.load(directory: options.config)
    guard let configuration = loaded.configuration else {
        for issue in loaded.errors { printError(issue.description) }
        printError("waakvlam: the configuration in \(options.config) has errors; `waakvlam config check \(options.config)` lists them")
        return 1
    }
    guard let sender = configuration.organisation(identifier: senderName) else {
        printError("waakvlam: unknown sender '\(senderName)'; known organisations: \(configuration.organisations.map(\.id).joined(separator: ", "))")
        return 2
    }
    var instant = Date()
    if let at = options.at {
        guard let date = LocalDate(at) else {
            printError("waakvlam: --at takes a date as YYYY-MM-DD")
            return 2
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = configuration.node.timeZone
        instant = calendar.date(from: DateComponents(year: date.year, month: date.month, day: date.day, hour: 12))!
    }
    guard let bytes = FileManager.default.contents(atPath: payloadFile) else {
        printError("waakvlam: cannot read the payload file \(payloadFile)")
        return 2
    }
    let payload: [String: PayloadValue]
    switch Payload.parse(bytes) {
    case .success(let values): payload = values
    case .failure(let invalid):
        for issue in invalid.issues { printError("\(payloadFile): \(issue.description)") }
        return 1
    }
    if options.recipients.isEmpty, configuration.signalType(id: typeName)?.requiredPreconditions.isEmpty == false {
        options.recipients = [.gemeenteOfAddress]
    }
    let submission = SignalSubmission(id: "explain", type: typeName, recipients: options.recipients, payload: payload)
    let result = PolicyEngine.decide(submission, sender: sender, configuration: configuration, at: instant)
    let today = configuration.localDate(of: instant)
    switch result {
    case .invalid(let issues):
        if options.json {
            printJSON(["sender": sender.id, "type": typeName, "date": today.description, "invalid": issues.map { ["field": $0.field, "code": $0.code.rawValue, "message": $0.message] }])
        } else {
            print("The signal is refused as a whole (HTTP 400); no recipient is considered:")
            for issue in issues { print("  \(issue.field): \(issue.code.rawValue): \(issue.message)") }
        }
        return 1
    case .decided(let decisions):
        if options.json {
            printJSON(["sender": sender.id, "type": typeName, "date": today.description, "decisions": decisions.map(explainJSON)])
        } else {
            print("\(typeName) from \(sender.id) (\(sender.name)) on \(today), \(configuration.node.timeZone.identifier)")
            for decision in decisions { print(""); print(explainText(decision)) }
        }
        return 0
    }
}

private func describe(_ dropped: DroppedField) -> String {
    switch dropped.reason {
    case .notInRule: "\(dropped.name) (\(dropped.category.rawValue), not in the rule's fields)"
    case .specialCategoryNotGranted(let category): "\(dropped.name) (\(category.rawValue): special category not granted)"
    }
}

private func explainText(_ decision: RecipientDecision) -> String {
    let name = decision.recipient.map { "\($0.id) (\($0.name))" } ?? decision.requested
    let via = decision.requested == RecipientRequest.gemeenteOfAddress.description ? " [routed by address]" : ""
    switch decision.outcome {
    case .allowed(let delivery):
        let feedback = delivery.feedback.statuses.isEmpty ? "none"
            : delivery.feedback.statuses.joined(separator: ", ") + (delivery.feedback.fields.isEmpty ? "" : "; fields: " + delivery.feedback.fields.map(\.name).joined(separator: ", "))
        return """
        \(name)\(via): ALLOWED
          rule        \(delivery.ruleID)
          convenant   \(delivery.convenantID) version \(delivery.convenantVersion)
          register    \(delivery.processingActivity)
          kept        \(delivery.keptFields.joined(separator: ", "))
          dropped     \(delivery.droppedFields.isEmpty ? "none" : delivery.droppedFields.map(describe).joined(separator: ", "))
          retention   \(delivery.retentionDays) days
          feedback    \(feedback)
        """
    case .denied(let denial):
        return """
        \(name)\(via): DENIED \(denial.code.rawValue)
          \(denial.message)
        """
    }
}

private func explainJSON(_ decision: RecipientDecision) -> [String: Any] {
    var object: [String: Any] = ["requested": decision.requested]
    if let recipient = decision.recipient { object["recipient"] = recipient.id }
    switch decision.outcome {
    case .allowed(let delivery):
        object["outcome"] = "allowed"
        object["rule"] = delivery.ruleID
        object["convenant"] = delivery.convenantID
        object["convenantVersion"] = delivery.convenantVersion
        object["processingActivity"] = delivery.processingActivity
        object["kept"] = delivery.keptFields
        object["dropped"] = delivery.droppedFields.map { dropped -> [String: String] in
            switch dropped.reason {
            case .notInRule: ["field": dropped.name, "category": dropped.category.rawValue, "reason": "not_in_rule"]
            case .specialCategoryNotGranted: ["field": dropped.name, "category": dropped.category.rawValue, "reason": "special_category_not_granted"]
            }
        }
        object["retentionDays"] = delivery.retentionDays
        object["feedback"] = ["statuses": delivery.feedback.statuses, "fields": delivery.feedback.fields.map(\.name)]
        object["payload"] = (try? JSONSerialization.jsonObject(with: Payload.canonicalJSON(delivery.payload))) ?? [:]
    case .denied(let denial):
        object["outcome"] = "denied"
        object["code"] = denial.code.rawValue
        object["message"] = denial.message
    }
    return object
}

private func printJSON(_ object: [String: Any]) {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])) ?? Data()
    print(String(decoding: data, as: UTF8.self))
}
