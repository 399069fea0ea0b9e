import Foundation

/// Reads a configuration from the bytes of its files and checks it, reporting every issue at
/// once. Pure: the caller reads the files (see WaakvlamRelay's ConfigLoading).
public enum ConfigurationParser {
    public static let nodeFile = "node.json"
    public static let organisationsFile = "organisations.json"
    public static let signalTypesFile = "signal-types.json"
    public static let convenantsFolder = "convenants"

    /// Convenants ending within this many days get a warning.
    public static let expiryWarningDays = 30

    /// - Parameters:
    ///   - files: node.json, organisations.json, signal-types.json and convenants/*.json.
    ///   - pins: the optional pins file named by node.json's `tls.pins`, when it exists.
    ///   - now: the moment against which expiry warnings are judged.
    public static func parse(_ files: [ConfigSource], pins: ConfigSource? = nil, now: Date = Date()) -> ConfigurationResult {
        ParseSession(now: now).run(files: files, pins: pins)
    }
}

/// The state of one parse: what has been read so far, so later files can be checked against
/// earlier ones (convenants against organisations and signal types).
final class ParseSession {
    let issues = IssueCollector()
    let now: Date

    /// False when organisations.json could not be read at all: references to organisations
    /// are then not checked, rather than reported as unknown one by one.
    var organisationsReadable = false
    var organisations: [Organisation] = []
    var organisationIndex: [String: Int] = [:]
    var organisationLocations: [String: Location] = [:]
    var areaLocations: [String: [Location]] = [:]
    var pinsFromFile: [String: [String]] = [:]

    var signalTypesReadable = false
    var signalTypes: [SignalType] = []
    var signalTypeIndex: [String: Int] = [:]
    /// Fields (as "type.field") whose definition is broken: rules naming them are not
    /// checked further, so one mistake gives one message.
    var unreadableFields = Set<String>()

    /// Each convenant read, with where its version and dates are written.
    struct ReadConvenant {
        var convenant: Convenant
        var location: Location
        var version: Location
        var validFrom: Location
        var validUntil: Location
    }
    var convenants: [ReadConvenant] = []
    var node: NodeSettings?
    var timeZone = NodeSettings.defaultTimeZone

    init(now: Date) {
        self.now = now
    }

    private enum Role: Int {
        case node, organisations, signalTypes, convenant
    }

    func run(files: [ConfigSource], pins: ConfigSource?) -> ConfigurationResult {
        var byRole: [Role: [ConfigSource]] = [:]
        for source in files {
            guard let role = role(of: source.path) else {
                issues.error(Location(file: source.path, path: "$", line: nil),
                             "not a configuration file: a configuration folder holds node.json, organisations.json, signal-types.json and convenants/*.json; move or rename this file")
                continue
            }
            byRole[role, default: []].append(source)
        }
        let folder = folderPrefix(of: files)
        func single(_ role: Role, _ name: String, _ hint: String) -> Located? {
            let sources = byRole[role] ?? []
            for extra in sources.dropFirst() {
                issues.error(Location(file: extra.path, path: "$", line: nil), "a second \(name) (the first is \(sources[0].path)); keep only one")
            }
            guard let source = sources.first else {
                issues.error(Location(file: folder + name, path: "$", line: nil), "the file is missing: create \(name) with \(hint)")
                return nil
            }
            return document(source)
        }

        if let root = single(.organisations, ConfigurationParser.organisationsFile, "a list of the organisations") {
            readOrganisations(root)
        }
        if let pins, let root = document(pins) {
            readPins(root)
        }
        if let root = single(.signalTypes, ConfigurationParser.signalTypesFile, "the catalogue of signal types") {
            readSignalTypes(root)
        }
        if let root = single(.node, ConfigurationParser.nodeFile, "the node's name and operator") {
            readNode(root)
        }
        let convenantSources = (byRole[.convenant] ?? []).sorted { $0.path < $1.path }
        if convenantSources.isEmpty {
            issues.warning(Location(file: folder + ConfigurationParser.convenantsFolder, path: "$", line: nil),
                           "there are no convenants: nothing may be shared (default deny); add one file per convenant")
        }
        for source in convenantSources {
            if let root = document(source) { readConvenant(root) }
        }
        checkAcrossFiles()

        let order = Dictionary((files + [pins].compactMap { $0 }).enumerated().map { ($0.element.path, $0.offset) }, uniquingKeysWith: { first, _ in first })
        let sorted = issues.issues.enumerated().sorted { lhs, rhs in
            let left = (order[lhs.element.file] ?? -1, lhs.element.line ?? 0, lhs.offset)
            let right = (order[rhs.element.file] ?? -1, rhs.element.line ?? 0, rhs.offset)
            return left < right
        }.map(\.element)
        guard !issues.hasErrors, let node else {
            return ConfigurationResult(configuration: nil, issues: sorted)
        }
        let merged = organisations.map { organisation -> Organisation in
            var copy = organisation
            for pin in pinsFromFile[organisation.id] ?? [] where !copy.pins.contains(pin) { copy.pins.append(pin) }
            return copy
        }
        let configuration = Configuration(node: node, organisations: merged, signalTypes: signalTypes, convenants: convenants.map(\.convenant))
        return ConfigurationResult(configuration: configuration, issues: sorted)
    }

    private func role(of path: String) -> Role? {
        let components = path.split(separator: "/")
        guard let name = components.last else { return nil }
        switch name {
        case Substring(ConfigurationParser.nodeFile): return .node
        case Substring(ConfigurationParser.organisationsFile): return .organisations
        case Substring(ConfigurationParser.signalTypesFile): return .signalTypes
        default:
            if components.count >= 2, components[components.count - 2] == Substring(ConfigurationParser.convenantsFolder), name.hasSuffix(".json") {
                return .convenant
            }
            return nil
        }
    }

    /// The folder part of the paths, to name a missing file the way the others are named.
    private func folderPrefix(of files: [ConfigSource]) -> String {
        for source in files {
            guard let role = role(of: source.path) else { continue }
            var components = source.path.split(separator: "/", omittingEmptySubsequences: false)
            components.removeLast(role == .convenant ? 2 : 1)
            return components.isEmpty ? "" : components.joined(separator: "/") + "/"
        }
        return ""
    }

    /// The parsed JSON of a file, or nil with the syntax error reported at its line.
    private func document(_ source: ConfigSource) -> Located? {
        do {
            let node = try JSONParser.parse(source.bytes)
            return Located(node: node, location: Location(file: source.path, path: "$", line: node.line))
        } catch {
            issues.error(Location(file: source.path, path: "$", line: error.line),
                         "\(error.description); fix the syntax there (comments, trailing commas and unquoted keys are allowed)")
            return nil
        }
    }

    // MARK: - node.json

    private func readNode(_ root: Located) {
        guard let reader = ObjectReader(root, what: "the node settings", keys: ["node", "listen", "tls", "state", "delivery", "limits", "timeZone"], issues: issues) else { return }
        var name: String?, operatorID: String?
        if let identity = reader.object("node", what: "the node's identity", keys: ["name", "operator"], required: "{ name: \"waakvlam-hoorn\", operator: \"<organisation id>\" }") {
            name = identity.string("name", required: "the name of this node, e.g. \"waakvlam-hoorn\"")
            operatorID = identity.string("operator", required: "the id of the organisation that runs this node")
            if let operatorID, organisationsReadable, organisationIndex[operatorID] == nil {
                issues.error(identity.location(of: "operator"), "unknown organisation '\(operatorID)'\(hint(operatorID, organisations.map(\.id))): the operator must be an organisation in organisations.json")
            }
        }
        var settings = NodeSettings(name: name ?? "", operatorID: operatorID ?? "")
        if let listen = reader.object("listen", what: "the listen addresses", keys: ["peer", "admin"]) {
            if let address = listenAddress(listen, "peer") { settings.listen.peer = address }
            if let address = listenAddress(listen, "admin") { settings.listen.admin = address }
            if settings.listen.peer == settings.listen.admin {
                issues.error(listen.location, "peer and admin listen on the same address \(settings.listen.peer); give the admin listener its own port")
            }
        }
        if let tls = reader.object("tls", what: "the TLS files", keys: ["ca", "certificate", "key", "crl", "pins"]) {
            settings.tls.ca = tls.string("ca") ?? settings.tls.ca
            settings.tls.certificate = tls.string("certificate") ?? settings.tls.certificate
            settings.tls.key = tls.string("key") ?? settings.tls.key
            // crl and pins may be null to switch them off.
            settings.tls.crl = tls.string("crl")
            settings.tls.pins = tls.isPresent("pins") ? tls.string("pins") : settings.tls.pins
        }
        settings.state = reader.string("state") ?? settings.state
        if let delivery = reader.object("delivery", what: "the delivery settings",
                                        keys: ["minimumBackoffSeconds", "maximumBackoffSeconds", "maximumLifetimeHours", "maximumLifetimeSeconds", "maximumInFlight", "timeoutSeconds"]) {
            var values = settings.delivery
            values.minimumBackoffSeconds = delivery.integer("minimumBackoffSeconds", minimum: 1, maximum: 86_400) ?? values.minimumBackoffSeconds
            values.maximumBackoffSeconds = delivery.integer("maximumBackoffSeconds", minimum: 1, maximum: 86_400) ?? values.maximumBackoffSeconds
            if delivery.isPresent("maximumLifetimeHours") && delivery.isPresent("maximumLifetimeSeconds") {
                issues.error(delivery.location(of: "maximumLifetimeSeconds"),
                             "give the delivery lifetime once: maximumLifetimeHours or maximumLifetimeSeconds, not both")
            }
            if let hours = delivery.integer("maximumLifetimeHours", minimum: 1, maximum: 24 * 365) {
                values.maximumLifetimeSeconds = hours * 3600
            }
            values.maximumLifetimeSeconds = delivery.integer("maximumLifetimeSeconds", minimum: 1, maximum: 86_400 * 365) ?? values.maximumLifetimeSeconds
            values.maximumInFlight = delivery.integer("maximumInFlight", minimum: 1, maximum: 1_000_000) ?? values.maximumInFlight
            values.timeoutSeconds = delivery.integer("timeoutSeconds", minimum: 1, maximum: 3600) ?? values.timeoutSeconds
            if values.minimumBackoffSeconds > values.maximumBackoffSeconds {
                issues.error(delivery.location(of: "minimumBackoffSeconds"),
                             "minimumBackoffSeconds (\(values.minimumBackoffSeconds)) is larger than maximumBackoffSeconds (\(values.maximumBackoffSeconds)); swap or correct them")
            }
            settings.delivery = values
        }
        if let limits = reader.object("limits", what: "the request limits", keys: ["maximumBodyBytes", "maximumHeaderBytes", "maximumHeaderCount", "maximumConnections"]) {
            var values = settings.limits
            values.maximumBodyBytes = limits.integer("maximumBodyBytes", minimum: 1024, maximum: 1 << 30) ?? values.maximumBodyBytes
            values.maximumHeaderBytes = limits.integer("maximumHeaderBytes", minimum: 1024, maximum: 1 << 20) ?? values.maximumHeaderBytes
            values.maximumHeaderCount = limits.integer("maximumHeaderCount", minimum: 8, maximum: 1000) ?? values.maximumHeaderCount
            values.maximumConnections = limits.integer("maximumConnections", minimum: 1, maximum: 1_000_000) ?? values.maximumConnections
            settings.limits = values
        }
        if let zoneName = reader.string("timeZone") {
            if let zone = TimeZone(identifier: zoneName) {
                settings.timeZone = zone
            } else {
                issues.error(reader.location(of: "timeZone"), "unknown time zone '\(zoneName)': use an IANA name such as \"Europe/Amsterdam\"")
            }
        }
        timeZone = settings.timeZone
        if name != nil, operatorID != nil { node = settings }
    }

    private func listenAddress(_ reader: ObjectReader, _ key: String) -> ListenAddress? {
        guard let text = reader.string(key) else { return nil }
        guard let address = ListenAddress(text) else {
            issues.error(reader.location(of: key), "'\(text)' is not a listen address: write host:port, e.g. \"127.0.0.1:8443\" or \"[::1]:8443\"")
            return nil
        }
        return address
    }

    // MARK: - Checks that span files

    private func checkAcrossFiles() {
        // Postcode areas: an address must belong to exactly one gemeente, or routing is ambiguous.
        let gemeenten = organisations.filter { $0.sector == .gemeente }
        for (laterIndex, later) in gemeenten.enumerated() {
            for earlier in gemeenten[..<laterIndex] {
                for (areaIndex, area) in later.postcodeAreas.enumerated() {
                    guard let clash = earlier.postcodeAreas.first(where: { $0.overlaps(area) }) else { continue }
                    issues.error(areaLocations[later.id]?[areaIndex] ?? organisationLocations[later.id]!,
                                 "postcode area \(area) overlaps \(clash) of '\(earlier.id)': an address must belong to one gemeente; split the ranges")
                }
            }
        }
        // Pins: one key identifies one organisation.
        var pinOwners: [String: String] = [:]
        for organisation in organisations {
            let pins = organisation.pins + (pinsFromFile[organisation.id] ?? [])
            for pin in Set(pins).sorted() {
                if let owner = pinOwners[pin], owner != organisation.id {
                    issues.error(organisationLocations[organisation.id]!, "the pin \(pin) is also a pin of '\(owner)': a key identifies one organisation; remove the wrong one")
                } else {
                    pinOwners[pin] = organisation.id
                }
            }
            if pins.isEmpty {
                issues.warning(organisationLocations[organisation.id]!,
                               "'\(organisation.id)' has no public-key pins: run `waakvlam pki init` or add \"sha256//...\" pins so its certificate is tied to its key")
            }
        }
        checkConvenantVersions()
    }

    private func checkConvenantVersions() {
        let today = LocalDate(now, in: timeZone)
        for (index, entry) in convenants.enumerated() {
            let convenant = entry.convenant
            for earlier in convenants[..<index] where earlier.convenant.id == convenant.id {
                if earlier.convenant.version == convenant.version {
                    issues.error(entry.version,
                                 "convenant '\(convenant.id)' version \(convenant.version) is also defined in \(earlier.location.file); give this one a new version number")
                } else if convenant.validFrom <= earlier.convenant.validUntil && earlier.convenant.validFrom <= convenant.validUntil {
                    // Reported on the newer version, which is usually the one being added.
                    let (newer, older) = convenant.version > earlier.convenant.version ? (entry, earlier) : (earlier, entry)
                    issues.error(newer.validFrom,
                                 "version \(newer.convenant.version) of convenant '\(convenant.id)' (\(newer.convenant.validFrom) to \(newer.convenant.validUntil)) overlaps version \(older.convenant.version) in \(older.location.file) (\(older.convenant.validFrom) to \(older.convenant.validUntil)); only one version may be in force on a day: end the older one the day before the newer one starts")
                }
            }
            // A version followed by a later one is superseded, not ending.
            let superseded = convenants.contains { $0.convenant.id == convenant.id && $0.convenant.validFrom > convenant.validUntil }
            let daysLeft = today.days(until: convenant.validUntil)
            if superseded {
                continue
            } else if daysLeft < 0 {
                issues.warning(entry.validUntil,
                               "convenant '\(convenant.id)' version \(convenant.version) ended on \(convenant.validUntil): nothing flows under it; add a new version or remove the file")
            } else if daysLeft <= ConfigurationParser.expiryWarningDays {
                issues.warning(entry.validUntil,
                               "convenant '\(convenant.id)' version \(convenant.version) ends on \(convenant.validUntil), in \(daysLeft) days: renew it with a new version, or signals under it stop")
            }
        }
    }

    /// " (did you mean 'x'?)" for a likely typo, or nothing.
    func hint(_ word: String, _ candidates: [String]) -> String {
        suggestion(for: word, among: candidates).map { " (did you mean '\($0)'?)" } ?? ""
    }
}
