import Foundation

/// The outcome of feedback a recipient sends about a delivered signal.
public enum FeedbackDecision: Sendable, Equatable {
    /// Forward `status` and `fields` to the sender; `dropped` names fields the rule does not
    /// let the sender see (left out, never forwarded).
    case allowed(status: String, fields: [String: PayloadValue], dropped: [String])
    case denied(Denial)
    /// A field value has the wrong form (HTTP 400).
    case invalid([PayloadIssue])
}

/// Judges feedback (terugmelding) against what the rule of the original delivery allowed,
/// e.g. Vroeg Eropaf: only "opgepakt" or "niet opgepakt", never why.
public enum FeedbackPolicy {
    public static func decide(status: String, fields: [String: PayloadValue], allowed: FeedbackAllowance) -> FeedbackDecision {
        guard !allowed.statuses.isEmpty else {
            return .denied(Denial(code: .feedbackNotAllowed, message: "The rule this signal was delivered under allows no feedback to the sender."))
        }
        guard allowed.statuses.contains(status) else {
            return .denied(Denial(code: .feedbackStatusNotAllowed,
                                  message: "The status '\(status)' may not be reported; the rule allows " + allowed.statuses.map { "'\($0)'" }.joined(separator: ", ") + "."))
        }
        let allowedNames = Set(allowed.fields.map(\.name))
        let kept = fields.filter { allowedNames.contains($0.key) }
        let optional = allowed.fields.map { field in
            var copy = field
            copy.required = false
            return copy
        }
        let issues = PayloadValidator.validate(kept, against: optional, position: { name in optional.firstIndex { $0.name == name } },
                                               owner: "this feedback", prefix: "fields")
        guard issues.isEmpty else { return .invalid(issues) }
        return .allowed(status: status, fields: kept, dropped: fields.keys.filter { !allowedNames.contains($0) }.sorted())
    }
}
