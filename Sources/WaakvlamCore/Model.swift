import Foundation

// The configuration an administrator edits, as values. Parsing and validation live in
// ConfigurationParser; the policy engine reads these types only.

/// A validated configuration: one node's settings, the organisations it knows, the catalogue
/// of signal types and the convenants. Look-ups by id, OIN and pin are indexed once here,
/// because the relay asks them for every signal.
public struct Configuration: Sendable, Equatable {
    public var node: NodeSettings
    public var organisations: [Organisation]
    public var signalTypes: [SignalType] {
        didSet { indexTypesAndRules() }
    }
    public var convenants: [Convenant] {
        didSet { indexTypesAndRules() }
    }

    private var byID: [String: Int] = [:]
    private var byOIN: [String: Int] = [:]
    private var byPin: [String: Int] = [:]
    private var typesByID: [String: Int] = [:]
    /// Per signal type (by position in `signalTypes`), the rules that carry it, prepared for
    /// the policy engine; rebuilt whenever the types or the convenants change.
    private(set) var rulesByType: [[TypedRule]] = []

    public init(node: NodeSettings, organisations: [Organisation], signalTypes: [SignalType], convenants: [Convenant]) {
        self.node = node
        self.organisations = organisations
        self.signalTypes = signalTypes
        self.convenants = convenants
        for (index, organisation) in organisations.enumerated() {
            byID[organisation.id] = byID[organisation.id] ?? index
            byOIN[organisation.oin] = byOIN[organisation.oin] ?? index
            for pin in organisation.pins { byPin[pin] = byPin[pin] ?? index }
        }
        indexTypesAndRules()
    }

    private mutating func indexTypesAndRules() {
        typesByID = [:]
        for (index, type) in signalTypes.enumerated() { typesByID[type.id] = typesByID[type.id] ?? index }
        rulesByType = signalTypes.map { type in TypedRule.rules(carrying: type, in: convenants) }
    }

    public func organisation(id: String) -> Organisation? { byID[id].map { organisations[$0] } }
    public func organisation(oin: String) -> Organisation? { byOIN[oin].map { organisations[$0] } }
    /// The organisation whose public-key pin (`sha256//<base64>`) this is.
    public func organisation(matchingPin pin: String) -> Organisation? { byPin[pin].map { organisations[$0] } }
    /// By short id or by OIN, as the CLI and the API accept both.
    public func organisation(identifier: String) -> Organisation? {
        organisation(id: identifier) ?? organisation(oin: identifier)
    }
    public func signalType(id: String) -> SignalType? { typesByID[id].map { signalTypes[$0] } }

    /// The position of the signal type of this id in `signalTypes` (and `rulesByType`).
    func signalTypeIndex(id: String) -> Int? { typesByID[id] }

    /// A rule by its full name, as recorded with a delivery (used to judge feedback later).
    public func rule(convenantID: String, version: Int, ruleID: String) -> (Convenant, Rule)? {
        guard let convenant = convenants.first(where: { $0.id == convenantID && $0.version == version }),
              let rule = convenant.rules.first(where: { $0.id == ruleID }) else { return nil }
        return (convenant, rule)
    }

    /// The calendar date of an instant in the node's time zone: the unit in which convenant
    /// validity and arrears are counted.
    public func localDate(of instant: Date) -> LocalDate {
        LocalDate(instant, in: node.timeZone)
    }

    public static func == (lhs: Configuration, rhs: Configuration) -> Bool {
        lhs.node == rhs.node && lhs.organisations == rhs.organisations
            && lhs.signalTypes == rhs.signalTypes && lhs.convenants == rhs.convenants
    }
}

// MARK: - Node

/// node.json: how this node runs. Paths are as written (relative to the configuration
/// folder) until the loader resolves them.
public struct NodeSettings: Sendable, Equatable {
    public var name: String
    /// The organisation id of the operator of this node.
    public var operatorID: String
    public var listen: ListenSettings
    public var tls: TLSSettings
    public var state: String
    public var delivery: DeliverySettings
    public var limits: LimitSettings
    public var timeZone: TimeZone

    public init(name: String, operatorID: String, listen: ListenSettings = ListenSettings(), tls: TLSSettings = TLSSettings(),
                state: String = NodeSettings.defaultState, delivery: DeliverySettings = DeliverySettings(),
                limits: LimitSettings = LimitSettings(), timeZone: TimeZone = NodeSettings.defaultTimeZone) {
        self.name = name
        self.operatorID = operatorID
        self.listen = listen
        self.tls = tls
        self.state = state
        self.delivery = delivery
        self.limits = limits
        self.timeZone = timeZone
    }

    public static let defaultState = "../run/state"
    public static let defaultTimeZone = TimeZone(identifier: "Europe/Amsterdam")!
}

/// A `host:port` to listen on. IPv6 hosts are written in brackets: `[::1]:8443`.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`; nil when the text is not of that form or the port is not 1...65535.
    public init?(_ text: String) {
        let host: Substring, port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, !host.contains(where: { $0.isWhitespace }),
              let number = UInt16(port), number > 0 else { return nil }
        self.host = String(host)
        self.port = number
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct ListenSettings: Sendable, Equatable {
    /// Where partner systems connect (mutual TLS).
    public var peer: ListenAddress
    /// Where administrators apply configuration and read metrics (mutual TLS).
    public var admin: ListenAddress

    public init(peer: ListenAddress = ListenAddress(host: "127.0.0.1", port: 8443),
                admin: ListenAddress = ListenAddress(host: "127.0.0.1", port: 9443)) {
        self.peer = peer
        self.admin = admin
    }
}

public struct TLSSettings: Sendable, Equatable {
    /// PEM file with the trust anchors that partner certificates must chain to.
    public var ca: String
    public var certificate: String
    public var key: String
    /// Optional PEM certificate revocation list.
    public var crl: String?
    /// Optional pins file written by `waakvlam pki init`: `{"<org id>": ["sha256//<base64>"]}`.
    public var pins: String?

    public init(ca: String = "../run/pki/ca.pem", certificate: String = "../run/pki/node.crt", key: String = "../run/pki/node.key",
                crl: String? = nil, pins: String? = "../run/pki/pins.json") {
        self.ca = ca
        self.certificate = certificate
        self.key = key
        self.crl = crl
        self.pins = pins
    }
}

public struct DeliverySettings: Sendable, Equatable {
    public var minimumBackoffSeconds: Int
    public var maximumBackoffSeconds: Int
    /// After this long undelivered, a delivery expires and the sender is told. Written in
    /// node.json as maximumLifetimeHours (or maximumLifetimeSeconds, for short test set-ups).
    public var maximumLifetimeSeconds: Int
    /// Deliveries attempted at the same time, over all recipients.
    public var maximumInFlight: Int
    public var timeoutSeconds: Int

    public init(minimumBackoffSeconds: Int = 5, maximumBackoffSeconds: Int = 600, maximumLifetimeSeconds: Int = 120 * 3600,
                maximumInFlight: Int = 256, timeoutSeconds: Int = 10) {
        self.minimumBackoffSeconds = minimumBackoffSeconds
        self.maximumBackoffSeconds = maximumBackoffSeconds
        self.maximumLifetimeSeconds = maximumLifetimeSeconds
        self.maximumInFlight = maximumInFlight
        self.timeoutSeconds = timeoutSeconds
    }
}

public struct LimitSettings: Sendable, Equatable {
    public var maximumBodyBytes: Int
    public var maximumHeaderBytes: Int
    public var maximumHeaderCount: Int
    public var maximumConnections: Int

    public init(maximumBodyBytes: Int = 1_048_576, maximumHeaderBytes: Int = 16_384, maximumHeaderCount: Int = 64,
                maximumConnections: Int = 1024) {
        self.maximumBodyBytes = maximumBodyBytes
        self.maximumHeaderBytes = maximumHeaderBytes
        self.maximumHeaderCount = maximumHeaderCount
        self.maximumConnections = maximumConnections
    }
}

// MARK: - Organisations

public enum Sector: String, Sendable, Equatable, CaseIterable {
    case corporatie, gemeente, politie, zorg, huurdersorganisatie
}

/// How signals reach an organisation: pushed to its HTTPS endpoint, or kept in an inbox it
/// pulls from.
public enum DeliveryMode: Sendable, Equatable {
    case push(endpoint: URL)
    case inbox
}

/// An organisation of the configuration. Its fields live in one shared, immutable object:
/// the relay copies an organisation several times per signal (the sender, each recipient,
/// each push), and a copy then costs one retain instead of one per string and array. A
/// change makes a new object (copy on write), so it stays a value.
public struct Organisation: Sendable, Equatable {
    private struct Fields: Sendable, Equatable {
        var id: String
        var oin: String
        var name: String
        var sector: Sector
        var pins: [String]
        var delivery: DeliveryMode
        var postcodeAreas: [PostcodeArea]
        var suspended: Bool
        var administrator: Bool
    }

    private final class Storage: Sendable {
        let fields: Fields
        init(_ fields: Fields) { self.fields = fields }
    }

    private var storage: Storage

    /// Short name used throughout the configuration ("intermaris", "gemeente-hoorn").
    public var id: String {
        get { storage.fields.id }
        set { change { $0.id = newValue } }
    }
    /// Organisatie-identificatienummer: 20 digits, in the certificate's subject serialNumber.
    public var oin: String {
        get { storage.fields.oin }
        set { change { $0.oin = newValue } }
    }
    /// Matches the certificate's subject O.
    public var name: String {
        get { storage.fields.name }
        set { change { $0.name = newValue } }
    }
    public var sector: Sector {
        get { storage.fields.sector }
        set { change { $0.sector = newValue } }
    }
    /// `sha256//<base64 of SHA-256 over the DER SubjectPublicKeyInfo>`, as curl --pinnedpubkey.
    public var pins: [String] {
        get { storage.fields.pins }
        set { change { $0.pins = newValue } }
    }
    public var delivery: DeliveryMode {
        get { storage.fields.delivery }
        set { change { $0.delivery = newValue } }
    }
    /// Only for gemeenten: the postcodes whose addresses this gemeente serves.
    public var postcodeAreas: [PostcodeArea] {
        get { storage.fields.postcodeAreas }
        set { change { $0.postcodeAreas = newValue } }
    }
    /// A suspended organisation neither sends nor receives.
    public var suspended: Bool {
        get { storage.fields.suspended }
        set { change { $0.suspended = newValue } }
    }
    /// May apply configuration over the admin listener.
    public var administrator: Bool {
        get { storage.fields.administrator }
        set { change { $0.administrator = newValue } }
    }

    public init(id: String, oin: String, name: String, sector: Sector, pins: [String] = [], delivery: DeliveryMode = .inbox,
                postcodeAreas: [PostcodeArea] = [], suspended: Bool = false, administrator: Bool = false) {
        storage = Storage(Fields(id: id, oin: oin, name: name, sector: sector, pins: pins, delivery: delivery,
                                 postcodeAreas: postcodeAreas, suspended: suspended, administrator: administrator))
    }

    private mutating func change(_ body: (inout Fields) -> Void) {
        var fields = storage.fields
        body(&fields)
        storage = Storage(fields)
    }

    /// Whether the organisation serves the address with this postcode.
    public func serves(_ postcode: Postcode) -> Bool {
        storage.fields.postcodeAreas.contains { $0.contains(postcode) }
    }

    public static func == (lhs: Organisation, rhs: Organisation) -> Bool {
        lhs.storage === rhs.storage || lhs.storage.fields == rhs.storage.fields
    }
}

/// A Dutch postcode: four digits (the first not 0) and two letters, e.g. 1621AB.
public struct Postcode: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let digits: Int
    public let letters: String

    /// Accepts "1621AB", "1621 ab"; nil for anything else.
    public init?(_ text: String) {
        // Read byte by byte (it runs several times per signal): the six bytes that are not
        // spaces, four digits (the first not 0) and two letters.
        var digits = 0, letters: (UInt8, UInt8) = (0, 0), count = 0
        for byte in text.utf8 where byte != UInt8(ascii: " ") {
            switch count {
            case 0...3:
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), count > 0 || byte != UInt8(ascii: "0") else { return nil }
                digits = digits * 10 + Int(byte - UInt8(ascii: "0"))
            case 4, 5:
                let upper = byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") ? byte - 32 : byte
                guard upper >= UInt8(ascii: "A"), upper <= UInt8(ascii: "Z") else { return nil }
                if count == 4 { letters.0 = upper } else { letters.1 = upper }
            default:
                return nil
            }
            count += 1
        }
        guard count == 6 else { return nil }
        self.digits = digits
        // Two ASCII letters: a small string, no allocation.
        self.letters = String(unsafeUninitializedCapacity: 2) { buffer in
            buffer[0] = letters.0
            buffer[1] = letters.1
            return 2
        }
    }

    /// A total order over all postcodes: the four digits, then the letters.
    var ordinal: Int {
        let scalars = letters.unicodeScalars.map { Int($0.value) - 65 }
        return digits * 676 + scalars[0] * 26 + scalars[1]
    }

    /// `1621AB` (written without interpolation: it is part of every subject key).
    public var description: String {
        var text = String(digits)
        text += letters
        return text
    }

    public static func < (lhs: Postcode, rhs: Postcode) -> Bool { lhs.ordinal < rhs.ordinal }
}

/// A postcode area as written in organisations.json: a four-digit area ("1621"), a range of
/// them ("1620-1625"), a single postcode ("1689AB") or a range of postcodes
/// ("1689AA-1689ZZ").
public struct PostcodeArea: Sendable, Equatable, CustomStringConvertible {
    /// Inclusive bounds in `Postcode.ordinal` order.
    let lower: Int
    let upper: Int
    public let description: String

    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 1 || parts.count == 2,
              let low = PostcodeArea.bound(parts[0], upper: false),
              let high = PostcodeArea.bound(parts[parts.count - 1], upper: true),
              parts[0].count == parts[parts.count - 1].count,
              low <= high else { return nil }
        lower = low
        upper = high
        description = text
    }

    private static func bound(_ text: String, upper: Bool) -> Int? {
        if text.count == 4, text.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(text), number >= 1000 {
            return number * 676 + (upper ? 675 : 0)
        }
        return Postcode(text).map(\.ordinal)
    }

    public func contains(_ postcode: Postcode) -> Bool { (lower...upper).contains(postcode.ordinal) }
    public func overlaps(_ other: PostcodeArea) -> Bool { lower <= other.upper && other.lower <= upper }
}

// MARK: - Signal types

/// What kind of data a field holds. `health` and `criminal` are special categories (AVG
/// art. 9 and 10, Wpg): a rule must grant them explicitly on a stated legal basis.
public enum DataCategory: String, Sendable, Equatable, Hashable, CaseIterable, Comparable {
    case identifying, contact, address, financial, nuisance, neighbourhood, `case`, health, criminal

    public var isSpecial: Bool { self == .health || self == .criminal }

    /// Whether the field says something about a person. Only `nuisance` (the kind and time of
    /// a nuisance) and `neighbourhood` (an area, never a household) do not; a tenant
    /// organisation may send those only.
    public var isPersonal: Bool { self != .nuisance && self != .neighbourhood }

    public static func < (lhs: DataCategory, rhs: DataCategory) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

public enum FieldFormat: Sendable, Equatable {
    case text, postcode, date, amount, bsn, boolean, integer, phone, email
    case enumeration([String])

    /// The name used in signal-types.json.
    public var name: String {
        switch self {
        case .text: "text"
        case .postcode: "postcode"
        case .date: "date"
        case .amount: "amount"
        case .bsn: "bsn"
        case .boolean: "boolean"
        case .integer: "integer"
        case .phone: "phone"
        case .email: "email"
        case .enumeration: "enum"
        }
    }

    static let names = ["text", "postcode", "date", "amount", "bsn", "enum", "boolean", "integer", "phone", "email"]
}

public struct FieldDefinition: Sendable, Equatable {
    public var name: String
    public var description: String
    public var category: DataCategory
    public var format: FieldFormat
    public var required: Bool
    /// For text-valued formats: the longest value accepted, in characters.
    public var maxLength: Int?

    public init(name: String, description: String = "", category: DataCategory, format: FieldFormat, required: Bool = false, maxLength: Int? = nil) {
        self.name = name
        self.description = description
        self.category = category
        self.format = format
        self.required = required
        self.maxLength = maxLength
    }
}

/// Which fields identify the person a signal is about; used only to derive the pseudonymous
/// subject keys of the journal. A person is identified by BSN, or else by surname, birth
/// date and postcode.
public struct PersonFields: Sendable, Equatable {
    public var bsn: String?
    public var surname: String?
    public var birthDate: String?
    public var postcode: String?

    public init(bsn: String? = nil, surname: String? = nil, birthDate: String? = nil, postcode: String? = nil) {
        self.bsn = bsn
        self.surname = surname
        self.birthDate = birthDate
        self.postcode = postcode
    }
}

/// Which fields hold the address a signal is about.
public struct AddressFields: Sendable, Equatable {
    public var postcode: String
    public var houseNumber: String
    public var houseNumberAddition: String?

    public init(postcode: String, houseNumber: String, houseNumberAddition: String? = nil) {
        self.postcode = postcode
        self.houseNumber = houseNumber
        self.houseNumberAddition = houseNumberAddition
    }
}

/// A precondition the law attaches to a signal type, checked per message.
public enum PreconditionKind: String, Sendable, Equatable, CaseIterable {
    /// Besluit gemeentelijke schuldhulpverlening art. 2 (a)-(d) and an arrears threshold.
    case vroegEropaf
}

/// What a recipient may answer about a signal of this type: the statuses and the fields the
/// answer can carry. A rule narrows these further.
public struct FeedbackCatalogue: Sendable, Equatable {
    public var statuses: [String]
    public var fields: [FieldDefinition]

    public init(statuses: [String] = [], fields: [FieldDefinition] = []) {
        self.statuses = statuses
        self.fields = fields
    }
}

public struct SignalType: Sendable, Equatable {
    public var id: String
    public var description: String
    /// Names are unique (the parser refuses a name defined twice).
    public var fields: [FieldDefinition] {
        didSet { (positions, nameOrder) = SignalType.index(fields) }
    }
    /// Field name to position in `fields`: the engine looks fields up per payload field.
    private var positions: [String: Int]
    /// The positions in `fields`, ordered by field name: the engine lists kept and dropped
    /// fields in this order without sorting names per signal.
    private(set) var nameOrder: [Int]
    public var person: PersonFields?
    public var address: AddressFields?
    /// The postcode field used to route "to the gemeente of this address".
    public var routingField: String?
    /// Preconditions every rule carrying this type must impose.
    public var requiredPreconditions: [PreconditionKind]
    public var feedback: FeedbackCatalogue

    public init(id: String, description: String = "", fields: [FieldDefinition], person: PersonFields? = nil, address: AddressFields? = nil,
                routingField: String? = nil, requiredPreconditions: [PreconditionKind] = [], feedback: FeedbackCatalogue = FeedbackCatalogue()) {
        self.id = id
        self.description = description
        self.fields = fields
        (positions, nameOrder) = SignalType.index(fields)
        self.person = person
        self.address = address
        self.routingField = routingField
        self.requiredPreconditions = requiredPreconditions
        self.feedback = feedback
    }

    public func field(named name: String) -> FieldDefinition? { positions[name].map { fields[$0] } }
    /// Where the field of this name is in `fields`: read in place, without copying it out.
    func position(of name: String) -> Int? { positions[name] }

    private static func index(_ fields: [FieldDefinition]) -> (positions: [String: Int], nameOrder: [Int]) {
        (Dictionary(fields.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { first, _ in first }),
         fields.indices.sorted { fields[$0].name < fields[$1].name })
    }
}

// MARK: - Convenants

/// A calendar date without a time zone ("2026-11-21"). Convenant dates are inclusive and
/// read in the node's time zone.
public struct LocalDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    public init?(year: Int, month: Int, day: Int) {
        guard (1...9999).contains(year), (1...12).contains(month), day >= 1, day <= LocalDate.daysIn(month: month, year: year) else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// Parses exactly `YYYY-MM-DD`.
    public init?(_ text: String) {
        var year = 0, month = 0, day = 0, offset = 0
        // Read byte by byte, without copying the text (it runs several times per signal).
        for byte in text.utf8 {
            switch offset {
            case 4, 7:
                guard byte == UInt8(ascii: "-") else { return nil }
            case 0..<10:
                guard byte >= 48, byte <= 57 else { return nil }
                let digit = Int(byte - 48)
                if offset < 4 { year = year * 10 + digit } else if offset < 7 { month = month * 10 + digit } else { day = day * 10 + digit }
            default:
                return nil
            }
            offset += 1
        }
        guard offset == 10 else { return nil }
        self.init(year: year, month: month, day: day)
    }

    /// The calendar date of `instant` in `timeZone` (daylight saving time included). Computed
    /// from the zone's offset instead of a Calendar: the policy engine asks it per signal.
    public init(_ instant: Date, in timeZone: TimeZone) {
        let seconds = Int(instant.timeIntervalSince1970.rounded(.down)) + ZoneOffsets.shared.secondsFromGMT(for: instant, in: timeZone)
        self.init(dayNumber: Int((Double(seconds) / 86_400).rounded(.down)))
    }

    /// The date `dayNumber` days after 1970-01-01 (the inverse of `dayNumber`).
    public init(dayNumber: Int) {
        let shifted = dayNumber + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 (proleptic Gregorian), for day arithmetic.
    public var dayNumber: Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    public func days(until other: LocalDate) -> Int { other.dayNumber - dayNumber }

    /// YYYY-MM-DD (as "%04d-%02d-%02d", without String(format:): it is built per signal).
    public var description: String {
        guard (0...9999).contains(year) else { return Self.padded(year, 4) + "-" + Self.padded(month, 2) + "-" + Self.padded(day, 2) }
        // Month and day are 1...12 and 1...31 (both initialisers ensure it).
        return String(unsafeUninitializedCapacity: 10) { buffer in
            let zero = UInt8(ascii: "0")
            buffer[0] = zero + UInt8(year / 1000)
            buffer[1] = zero + UInt8(year / 100 % 10)
            buffer[2] = zero + UInt8(year / 10 % 10)
            buffer[3] = zero + UInt8(year % 10)
            buffer[4] = UInt8(ascii: "-")
            buffer[5] = zero + UInt8(month / 10)
            buffer[6] = zero + UInt8(month % 10)
            buffer[7] = UInt8(ascii: "-")
            buffer[8] = zero + UInt8(day / 10)
            buffer[9] = zero + UInt8(day % 10)
            return 10
        }
    }

    private static func padded(_ number: Int, _ width: Int) -> String {
        let digits = String(number.magnitude)
        let sign = number < 0 ? "-" : ""
        return sign + String(repeating: "0", count: max(0, width - sign.count - digits.count)) + digits
    }

    public static func < (lhs: LocalDate, rhs: LocalDate) -> Bool { lhs.dayNumber < rhs.dayNumber }
}

/// The offset from GMT of the zone the policy engine last asked about, until that zone's
/// next transition: asking the zone (ICU, behind its lock) for every signal cost more than
/// the date arithmetic. An instant outside the cached interval is asked again.
final class ZoneOffsets: @unchecked Sendable {
    static let shared = ZoneOffsets()

    private struct Entry {
        let zone: String
        /// The offset holds from `from` (inclusive) to `until` (exclusive), in seconds since 1970.
        let from: Double
        let until: Double
        let offset: Int
    }

    private let lock = NSLock()
    private var entry: Entry?

    func secondsFromGMT(for instant: Date, in timeZone: TimeZone) -> Int {
        let time = instant.timeIntervalSince1970
        let zone = timeZone.identifier
        lock.lock()
        if let entry, entry.zone == zone, time >= entry.from, time < entry.until {
            lock.unlock()
            return entry.offset
        }
        lock.unlock()
        let offset = timeZone.secondsFromGMT(for: instant)
        let until = timeZone.nextDaylightSavingTimeTransition(after: instant)?.timeIntervalSince1970 ?? .infinity
        lock.lock()
        entry = Entry(zone: zone, from: time, until: until, offset: offset)
        lock.unlock()
        return offset
    }
}

/// Who a rule applies to: named organisations, or every party of the convenant in a sector.
public enum PartySelector: Sendable, Equatable {
    case organisations([String])
    case sectors([Sector])

    public func matches(_ organisation: Organisation) -> Bool {
        switch self {
        case .organisations(let ids): ids.contains(organisation.id)
        case .sectors(let sectors): sectors.contains(organisation.sector)
        }
    }
}

public struct Preconditions: Sendable, Equatable {
    /// Vroeg Eropaf: art. 2 (a)-(d) attested and arrears of at least this many days.
    public var vroegEropafMinimumArrearsDays: Int?

    public init(vroegEropafMinimumArrearsDays: Int? = nil) {
        self.vroegEropafMinimumArrearsDays = vroegEropafMinimumArrearsDays
    }

    public var kinds: [PreconditionKind] { vroegEropafMinimumArrearsDays == nil ? [] : [.vroegEropaf] }

    public static let defaultMinimumArrearsDays = 30
}

public struct FeedbackRule: Sendable, Equatable {
    /// Statuses the recipient may report back to the sender; none means no feedback.
    public var statuses: [String]
    public var fields: [String]

    public init(statuses: [String] = [], fields: [String] = []) {
        self.statuses = statuses
        self.fields = fields
    }
}

public struct Rule: Sendable, Equatable {
    public var id: String
    public var from: PartySelector
    public var to: PartySelector
    public var signalTypes: [String]
    /// The allowlist: the only fields a recipient under this rule receives.
    public var fields: [String] {
        didSet { allowlist = Set(fields) }
    }
    /// `fields` as a set, for the per-field check of the engine.
    private(set) var allowlist: Set<String>
    /// Special categories this rule grants explicitly (with a basis in the convenant).
    public var specialCategories: [DataCategory]
    public var retentionDays: Int
    public var preconditions: Preconditions
    public var feedback: FeedbackRule

    public init(id: String, from: PartySelector, to: PartySelector, signalTypes: [String], fields: [String], specialCategories: [DataCategory] = [],
                retentionDays: Int, preconditions: Preconditions = Preconditions(), feedback: FeedbackRule = FeedbackRule()) {
        self.id = id
        self.from = from
        self.to = to
        self.signalTypes = signalTypes
        self.fields = fields
        self.allowlist = Set(fields)
        self.specialCategories = specialCategories
        self.retentionDays = retentionDays
        self.preconditions = preconditions
        self.feedback = feedback
    }
}

public struct Convenant: Sendable, Equatable {
    public var id: String
    public var version: Int
    public var title: String
    /// Organisation ids.
    public var parties: [String]
    public var validFrom: LocalDate
    public var validUntil: LocalDate
    /// Doelbinding: what the shared data may be used for.
    public var purpose: String
    public var legalBasis: String
    /// The legal basis for each special category the convenant lets flow.
    public var specialCategoryBasis: [DataCategory: String]
    /// URI of the processing activity in the register (Logboek Dataverwerkingen).
    public var processingActivity: String
    public var rules: [Rule]

    public init(id: String, version: Int, title: String, parties: [String], validFrom: LocalDate, validUntil: LocalDate, purpose: String,
                legalBasis: String, specialCategoryBasis: [DataCategory: String] = [:], processingActivity: String, rules: [Rule]) {
        self.id = id
        self.version = version
        self.title = title
        self.parties = parties
        self.validFrom = validFrom
        self.validUntil = validUntil
        self.purpose = purpose
        self.legalBasis = legalBasis
        self.specialCategoryBasis = specialCategoryBasis
        self.processingActivity = processingActivity
        self.rules = rules
    }

    /// In force on this calendar date (both ends inclusive).
    public func isInForce(on date: LocalDate) -> Bool { validFrom <= date && date <= validUntil }
}
