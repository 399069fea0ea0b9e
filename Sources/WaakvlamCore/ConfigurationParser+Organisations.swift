import Foundation

extension ParseSession {
    static let organisationKeys = ["id", "oin", "name", "sector", "pins", "delivery", "postcodeAreas", "suspended", "administrator"]

    /// Ids are short lowercase names: letters, digits and single hyphens ("1hoorn", "ggz-nhn").
    static func isValidIdentifier(_ id: String) -> Bool {
        let parts = id.split(separator: "-", omittingEmptySubsequences: false)
        return id.count <= 64 && parts.allSatisfy { part in
            !part.isEmpty && part.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber) }
        }
    }

    func readOrganisations(_ root: Located) {
        guard let elements = ConfigValues.list(root, issues: issues) else { return }
        organisationsReadable = true
        var oinOwners: [String: String] = [:]
        var nameOwners: [String: String] = [:]
        for element in elements {
            guard let reader = ObjectReader(element, what: "an organisation", keys: ParseSession.organisationKeys, issues: issues) else { continue }
            let id = reader.string("id", required: "a short name such as \"gemeente-hoorn\"")
            if let id, !ParseSession.isValidIdentifier(id) {
                issues.error(reader.location(of: "id"), "'\(id)' is not a valid id: use lowercase letters, digits and single hyphens, e.g. \"gemeente-hoorn\"")
            }
            let oin = readOIN(reader)
            let name = reader.string("name", required: "the organisation's name as in its certificate's subject O")
            let sector = readSector(reader.value("sector"), missing: { reader.missing("sector", "one of \(Sector.allCases.map(\.rawValue).joined(separator: ", "))") })
            let pins = readPinList(reader.strings("pins") ?? [])
            let delivery = readDelivery(reader)
            var areas: [PostcodeArea] = []
            var locations: [Location] = []
            if let list = reader.strings("postcodeAreas") {
                if let sector, sector != .gemeente {
                    issues.error(reader.location(of: "postcodeAreas"), "only a gemeente serves postcode areas, and '\(id ?? "this organisation")' is a \(sector.rawValue); remove postcodeAreas")
                }
                for (text, location) in list {
                    guard let area = PostcodeArea(text) else {
                        issues.error(location, "'\(text)' is not a postcode area: write four digits (\"1621\"), a range of them (\"1620-1625\"), a postcode (\"1689AB\") or a range of postcodes (\"1689AA-1689ZZ\"), low to high")
                        continue
                    }
                    if let clash = areas.firstIndex(where: { $0.overlaps(area) }) {
                        issues.warning(location, "postcode area \(area) overlaps \(areas[clash]) of the same gemeente; merge them")
                    }
                    areas.append(area)
                    locations.append(location)
                }
            }
            let suspended = reader.bool("suspended", default: false)
            let administrator = reader.bool("administrator", default: false)
            guard let id else { continue }
            if organisationIndex[id] != nil {
                issues.error(reader.location(of: "id"), "the id '\(id)' is already used by another organisation; ids must be unique")
                continue
            }
            if let oin {
                if let owner = oinOwners[oin] {
                    issues.error(reader.location(of: "oin"), "the OIN \(oin) is already the OIN of '\(owner)'; every organisation has its own OIN: correct one of them")
                } else {
                    oinOwners[oin] = id
                }
            }
            if let name {
                if let owner = nameOwners[name] {
                    issues.error(reader.location(of: "name"), "the name '\(name)' is already the name of '\(owner)'; certificates are matched by name, so names must differ")
                } else {
                    nameOwners[name] = id
                }
            }
            organisationIndex[id] = organisations.count
            organisationLocations[id] = reader.location
            areaLocations[id] = locations
            organisations.append(Organisation(id: id, oin: oin ?? "", name: name ?? id, sector: sector ?? .zorg, pins: pins, delivery: delivery,
                                              postcodeAreas: areas, suspended: suspended, administrator: administrator))
        }
    }

    private func readOIN(_ reader: ObjectReader) -> String? {
        guard let located = reader.value("oin") else {
            reader.missing("oin", "the organisation's 20-digit OIN (organisatie-identificatienummer), in quotes")
            return nil
        }
        if case .integer = located.node.value {
            issues.error(located.location, "write the OIN in quotes, as text: as a number it loses its leading zeros")
            return nil
        }
        guard let oin = ConfigValues.string(located, issues: issues) else { return nil }
        guard oin.count == 20, oin.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            issues.error(located.location, "an OIN is exactly 20 digits (this one has \(oin.count) characters\(oin.allSatisfy { $0.isASCII && $0.isNumber } ? "" : ", not all digits")); copy it from the OIN register or the certificate's serialNumber")
            return nil
        }
        return oin
    }

    func readSector(_ located: Located?, missing: () -> Void) -> Sector? {
        guard let located else { missing(); return nil }
        guard let text = ConfigValues.string(located, issues: issues) else { return nil }
        guard let sector = Sector(rawValue: text) else {
            let names = Sector.allCases.map(\.rawValue)
            issues.error(located.location, "unknown sector '\(text)'\(hint(text, names)): use one of \(names.joined(separator: ", "))")
            return nil
        }
        return sector
    }

    private func readPinList(_ pins: [(String, Location)]) -> [String] {
        pins.compactMap { pin, location in
            guard PublicKeyPin.isWellFormed(pin) else {
                issues.error(location, "not a public-key pin: write \"sha256//\" followed by the base64 of the SHA-256 of the certificate's public key (as curl --pinnedpubkey), 44 characters ending in '='")
                return nil
            }
            return pin
        }
    }

    private func readDelivery(_ reader: ObjectReader) -> DeliveryMode {
        guard let delivery = reader.object("delivery", what: "how signals reach the organisation", keys: ["mode", "endpoint"]) else { return .inbox }
        guard let mode = delivery.string("mode", required: "\"push\" (with an endpoint) or \"inbox\"") else { return .inbox }
        switch mode {
        case "inbox":
            if delivery.has("endpoint") {
                issues.error(delivery.location(of: "endpoint"), "an inbox organisation pulls its signals and has no endpoint; remove 'endpoint' or set mode to \"push\"")
            }
            return .inbox
        case "push":
            guard let endpoint = delivery.string("endpoint", required: "the HTTPS URL signals are pushed to, e.g. \"https://host:8443/waakvlam/signals\"") else { return .inbox }
            guard let url = URL(string: endpoint), url.scheme?.lowercased() == "https", let host = url.host, !host.isEmpty,
                  url.user == nil, url.password == nil else {
                issues.error(delivery.location(of: "endpoint"), "the push endpoint must be an https:// URL with a host (and no user name or password in it), e.g. \"https://host:8443/waakvlam/signals\"")
                return .inbox
            }
            return .push(endpoint: url)
        default:
            issues.error(delivery.location(of: "mode"), "unknown delivery mode '\(mode)': use \"push\" (with an endpoint) or \"inbox\"")
            return .inbox
        }
    }

    /// The pins file written by `waakvlam pki init`: `{"<organisation id>": ["sha256//..."]}`.
    func readPins(_ root: Located) {
        guard case .object(let members) = root.node.value else {
            issues.error(root.location, "expected an object mapping organisation ids to lists of pins, found \(root.node.value.kindName); run `waakvlam pki init` again")
            return
        }
        for member in members {
            let location = root.location.appending(key: member.key, line: member.value.line)
            if organisationsReadable, organisationIndex[member.key] == nil {
                issues.error(location, "unknown organisation '\(member.key)'\(hint(member.key, organisations.map(\.id))): pins must belong to an organisation in organisations.json; remove them or run `waakvlam pki init` again")
                continue
            }
            guard let elements = ConfigValues.list(Located(node: member.value, location: location), issues: issues) else { continue }
            let pins = elements.compactMap { element in ConfigValues.string(element, issues: issues).map { ($0, element.location) } }
            pinsFromFile[member.key, default: []].append(contentsOf: readPinList(pins))
        }
    }
}
