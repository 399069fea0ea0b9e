import Foundation

/// Canonical strings naming who and what address a signal is about. The journal turns them
/// into HMAC pseudonyms, so an access request ("who received data about me?") can be
/// answered without keeping a BSN or a name in the clear. An auditor builds the same strings
/// from what the person gives (with the static functions) and asks for their pseudonym.
public struct SubjectKeys: Sendable, Equatable {
    /// `bsn:<9 digits>` when the payload holds a BSN, else
    /// `person:<surname>|<birth date>|<postcode>` when it holds all three, else nil.
    public var person: String?
    /// `address:<postcode>|<house number>|<addition>`, or nil.
    public var address: String?

    public init(person: String?, address: String?) {
        self.person = person
        self.address = address
    }

    public static func person(bsn: String) -> String? {
        PayloadValidator.isValidBSN(bsn) ? "bsn:" + bsn : nil
    }

    private static let personPrefix = Array("person:".utf8)

    /// The surname is folded (case, accents, spaces), so "Dijk, van" and "van dijk" differ but
    /// "Çelik" and "celik" do not.
    public static func person(surname: String, birthDate: String, postcode: String) -> String? {
        guard let date = LocalDate(birthDate), let postcode = Postcode(postcode) else { return nil }
        if surname.utf8.allSatisfy({ $0 < 0x80 }) {
            // ASCII (most names): folding is lower-casing; the same text, without the cost of
            // Foundation's locale-aware folding on every signal. Words lower-cased, separated
            // by one space (runs of whitespace collapsed, none at the ends), written byte by
            // byte into the key's own storage (one allocation, no per-character appends).
            func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || (0x09...0x0D).contains(byte) }
            guard surname.utf8.contains(where: { !isSpace($0) }) else { return nil }
            let date = date.description, postcode = postcode.description
            let capacity = Self.personPrefix.count + surname.utf8.count + 1 + date.utf8.count + 1 + postcode.utf8.count
            return String(unsafeUninitializedCapacity: capacity) { key in
                var end = 0
                func append<Bytes: Collection<UInt8>>(_ bytes: Bytes) {
                    end += UnsafeMutableBufferPointer(rebasing: key[end...]).initialize(fromContentsOf: bytes)
                }
                func put(_ byte: UInt8) {
                    key[end] = byte
                    end += 1
                }
                append(Self.personPrefix)
                var space = false
                for byte in surname.utf8 {
                    if isSpace(byte) {
                        space = end > Self.personPrefix.count
                        continue
                    }
                    if space { put(0x20) }
                    space = false
                    put((0x41...0x5A).contains(byte) ? byte + 0x20 : byte)
                }
                put(UInt8(ascii: "|"))
                append(date.utf8)
                put(UInt8(ascii: "|"))
                append(postcode.utf8)
                return end
            }
        }
        let folded = surname.folding(options: [.caseInsensitive, .diacriticInsensitive], locale: Locale(identifier: "en_US_POSIX"))
            .split(whereSeparator: { $0.isWhitespace }).joined(separator: " ").lowercased()
        guard !folded.isEmpty else { return nil }
        return "person:\(folded)|\(date)|\(postcode)"
    }

    /// The house number without leading zeros, the addition upper-cased without separators.
    public static func address(postcode: String, houseNumber: String, addition: String? = nil) -> String? {
        let addition = addition ?? ""
        if houseNumber.utf8.allSatisfy({ $0 < 0x80 }) && addition.utf8.allSatisfy({ $0 < 0x80 }) {
            // ASCII (all of them, in practice): trimmed and filtered byte by byte, without
            // Foundation or Character properties on every signal, into the key.
            let blank = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
            let utf8 = houseNumber.utf8
            let start = utf8.firstIndex(where: { !blank($0) }) ?? utf8.endIndex
            let end = utf8.lastIndex(where: { !blank($0) }).map(utf8.index(after:)) ?? start
            guard let postcode = Postcode(postcode), let number = Int(houseNumber[start..<max(start, end)]), number > 0 else { return nil }
            var key = "address:"
            key.reserveCapacity(key.utf8.count + 6 + 1 + 20 + 1 + addition.utf8.count)
            key += postcode.description
            key += "|"
            key += String(number)
            key += "|"
            for byte in addition.utf8 {
                switch byte {
                case 0x61...0x7A: key.unicodeScalars.append(Unicode.Scalar(byte - 0x20))
                case 0x41...0x5A, 0x30...0x39: key.unicodeScalars.append(Unicode.Scalar(byte))
                default: continue
                }
            }
            return key
        }
        let trimmed = houseNumber.trimmingCharacters(in: .whitespaces)
        let suffix = addition.uppercased().filter { $0.isLetter || $0.isNumber }
        guard let postcode = Postcode(postcode), let number = Int(trimmed), number > 0 else { return nil }
        return "address:\(postcode)|\(number)|\(suffix)"
    }
}

/// The subject keys of a payload of `type`, from the fields the type names as person and
/// address fields. Computed from the submitted payload, before minimisation: the signal is
/// about that person whatever each recipient gets.
public func subjectKeys(for payload: [String: PayloadValue], type: SignalType) -> SubjectKeys {
    subjectKeys(for: payload, person: type.person, address: type.address)
}

extension Configuration {
    /// `subjectKeys(for:type:)` for the signal type of this id; nil when there is none. Only
    /// the type's person and address fields are read from the configuration: a copy of the
    /// whole type retains each of its arrays and longer strings, for every signal.
    public func subjectKeys(for payload: [String: PayloadValue], typeID: String) -> SubjectKeys? {
        guard let index = signalTypeIndex(id: typeID) else { return nil }
        return WaakvlamCore.subjectKeys(for: payload, person: signalTypes[index].person, address: signalTypes[index].address)
    }
}

/// The subject keys of a payload from a signal type's person and address fields.
private func subjectKeys(for payload: [String: PayloadValue], person personFields: PersonFields?,
                         address addressFields: AddressFields?) -> SubjectKeys {
    func text(_ field: String?) -> String? {
        guard let field else { return nil }
        switch payload[field] {
        case .string(let text): return text
        case .integer(let number): return String(number)
        default: return nil
        }
    }
    var person: String?
    if let fields = personFields {
        person = text(fields.bsn).flatMap { SubjectKeys.person(bsn: $0) }
        if person == nil, let surname = text(fields.surname), let birthDate = text(fields.birthDate), let postcode = text(fields.postcode) {
            person = SubjectKeys.person(surname: surname, birthDate: birthDate, postcode: postcode)
        }
    }
    var address: String?
    if let fields = addressFields, let postcode = text(fields.postcode), let number = text(fields.houseNumber) {
        address = SubjectKeys.address(postcode: postcode, houseNumber: number, addition: text(fields.houseNumberAddition))
    }
    return SubjectKeys(person: person, address: address)
}
