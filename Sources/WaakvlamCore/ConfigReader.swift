import Foundation

/// Collects issues while the configuration is read, so that every mistake is reported at
/// once instead of stopping at the first.
final class IssueCollector {
    private(set) var issues: [ConfigIssue] = []

    var hasErrors: Bool { issues.contains { $0.severity == .error } }

    func error(_ location: Location, _ message: String) {
        issues.append(ConfigIssue(file: location.file, path: location.path, line: location.line, message: message, severity: .error))
    }

    func warning(_ location: Location, _ message: String) {
        issues.append(ConfigIssue(file: location.file, path: location.path, line: location.line, message: message, severity: .warning))
    }
}

/// A place in a configuration file: file, JSON path and line.
struct Location: Sendable {
    var file: String
    var path: String
    var line: Int?

    func appending(key: String, line: Int?) -> Location {
        let isPlain = key.first.map { $0.isLetter || $0 == "_" } == true && key.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
        return Location(file: file, path: isPlain ? "\(path).\(key)" : "\(path)[\"\(key)\"]", line: line ?? self.line)
    }

    func appending(index: Int, line: Int?) -> Location {
        Location(file: file, path: "\(path)[\(index)]", line: line ?? self.line)
    }
}

/// A JSON value together with where it is.
struct Located {
    var node: JSONNode
    var location: Location
}

/// Reads one JSON object with a fixed set of keys. Unknown keys (with a suggestion for a
/// likely typo) and duplicate keys are reported when the reader is made; the accessors
/// report missing or mistyped values. A `null` value counts as absent.
struct ObjectReader {
    let location: Location
    private let members: [String: JSONNode]
    private let issues: IssueCollector

    /// Nil (with an error reported) when the value is not an object.
    init?(_ located: Located, what: String, keys: [String], issues: IssueCollector) {
        guard case .object(let list) = located.node.value else {
            issues.error(located.location, "expected \(what) (an object in braces), found \(located.node.value.kindName)")
            return nil
        }
        self.location = located.location
        self.issues = issues
        var members: [String: JSONNode] = [:]
        for member in list {
            let memberLocation = located.location.appending(key: member.key, line: member.value.line)
            if members[member.key] != nil {
                issues.error(memberLocation, "the key '\(member.key)' appears twice in this object; remove one of them")
                continue
            }
            guard keys.contains(member.key) else {
                let hint = suggestion(for: member.key, among: keys).map { " (did you mean '\($0)'?)" } ?? ""
                issues.error(memberLocation, "unknown key '\(member.key)'\(hint): correct or remove it; the keys allowed here are \(keys.joined(separator: ", "))")
                continue
            }
            members[member.key] = member.value
        }
        self.members = members
    }

    /// The value under `key`, unless absent or null.
    func value(_ key: String) -> Located? {
        guard let node = members[key] else { return nil }
        if case .null = node.value { return nil }
        return Located(node: node, location: location.appending(key: key, line: node.line))
    }

    func has(_ key: String) -> Bool { value(key) != nil }

    /// Whether the key is written at all, `null` included.
    func isPresent(_ key: String) -> Bool { members[key] != nil }

    func location(of key: String) -> Location {
        value(key)?.location ?? location.appending(key: key, line: nil)
    }

    func missing(_ key: String, _ hint: String) {
        issues.error(location, "missing the required key '\(key)': \(hint)")
    }

    /// A non-empty text value.
    func string(_ key: String, required hint: String? = nil) -> String? {
        guard let located = value(key) else {
            if let hint { missing(key, hint) }
            return nil
        }
        return ConfigValues.string(located, issues: issues)
    }

    func integer(_ key: String, required hint: String? = nil, minimum: Int = Int.min, maximum: Int = Int.max) -> Int? {
        guard let located = value(key) else {
            if let hint { missing(key, hint) }
            return nil
        }
        guard case .integer(let number) = located.node.value else {
            issues.error(located.location, "expected a whole number, found \(located.node.value.kindName)")
            return nil
        }
        guard number >= minimum, number <= maximum else {
            let range = maximum == Int.max ? "at least \(minimum)" : "between \(minimum) and \(maximum)"
            issues.error(located.location, "\(number) is out of range: use a number \(range)")
            return nil
        }
        return number
    }

    func bool(_ key: String, default fallback: Bool) -> Bool {
        guard let located = value(key) else { return fallback }
        guard case .bool(let flag) = located.node.value else {
            issues.error(located.location, "expected true or false, found \(located.node.value.kindName)")
            return fallback
        }
        return flag
    }

    /// The elements of a list, each with its location.
    func list(_ key: String, required hint: String? = nil) -> [Located]? {
        guard let located = value(key) else {
            if let hint { missing(key, hint) }
            return nil
        }
        return ConfigValues.list(located, issues: issues)
    }

    /// A list of distinct non-empty text values; duplicates are reported and left out.
    func strings(_ key: String, required hint: String? = nil) -> [(String, Location)]? {
        guard let elements = list(key, required: hint) else { return nil }
        var seen = Set<String>()
        var result: [(String, Location)] = []
        for element in elements {
            guard let text = ConfigValues.string(element, issues: issues) else { continue }
            guard seen.insert(text).inserted else {
                issues.error(element.location, "'\(text)' is listed twice; remove the duplicate")
                continue
            }
            result.append((text, element.location))
        }
        return result
    }

    func object(_ key: String, what: String, keys: [String], required hint: String? = nil) -> ObjectReader? {
        guard let located = value(key) else {
            if let hint { missing(key, hint) }
            return nil
        }
        return ObjectReader(located, what: what, keys: keys, issues: issues)
    }
}

/// Readers for values outside an object (list elements, top-level values).
enum ConfigValues {
    static func string(_ located: Located, issues: IssueCollector) -> String? {
        guard case .string(let text) = located.node.value else {
            issues.error(located.location, "expected a text value in quotes, found \(located.node.value.kindName)")
            return nil
        }
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            issues.error(located.location, "the text is empty; fill it in")
            return nil
        }
        return text
    }

    static func list(_ located: Located, issues: IssueCollector) -> [Located]? {
        guard case .array(let elements) = located.node.value else {
            issues.error(located.location, "expected a list in square brackets, found \(located.node.value.kindName)")
            return nil
        }
        return elements.enumerated().map { Located(node: $0.element, location: located.location.appending(index: $0.offset, line: $0.element.line)) }
    }
}

/// The closest of `candidates` to a misspelt `word`, if one is close enough to be a typo.
func suggestion(for word: String, among candidates: [String]) -> String? {
    let lowered = word.lowercased()
    var best: (String, Int)?
    for candidate in candidates {
        let distance = editDistance(lowered, candidate.lowercased())
        if distance <= max(1, min(3, candidate.count / 3)), distance < (best?.1 ?? Int.max) {
            best = (candidate, distance)
        }
    }
    return best?.0
}

private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
