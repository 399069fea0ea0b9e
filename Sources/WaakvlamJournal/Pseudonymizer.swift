#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import WaakvlamCrypto
import WaakvlamSystem

/// A data subject in canonical form: the string that is pseudonymised. The policy engine and
/// the `journal subject` command must produce the same string for the same person, so both
/// go through these constructors.
///
/// - `bsn:123456782` (9 digits; an 8-digit BSN gets its leading zero)
/// - `person:jansen|j|1980-01-01|1621AB` (surname with prefixes, lower case, single spaces;
///   initials as lower-case letters without dots; birth date YYYY-MM-DD; postcode upper case
///   without space)
/// - `address:1621AB|12|a` (postcode; house number digits; addition lower case, empty if none)
public struct DataSubject: Equatable, Hashable, Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case bsn, person, address
    }

    public let kind: Kind
    public let canonical: String

    /// Throws `invalidSetup` with a sentence saying what is wrong with the input.
    public static func bsn(_ number: String) throws -> DataSubject {
        let digits = number.filter { !$0.isWhitespace && $0 != "." && $0 != "-" }
        guard (8...9).contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw JournalError.invalidSetup("a BSN has 9 digits")
        }
        let padded = digits.count == 8 ? "0" + digits : digits
        return DataSubject(kind: .bsn, canonical: "bsn:" + padded)
    }

    public static func person(surname: String, initials: String, birthdate: String, postcode: String) throws -> DataSubject {
        let name = surname.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ")
        guard !name.isEmpty, !name.contains("|") else { throw JournalError.invalidSetup("give the surname (with prefixes such as 'van der')") }
        let letters = String(initials.lowercased().filter(\.isLetter))
        guard !letters.isEmpty else { throw JournalError.invalidSetup("give the initials, e.g. J.P.") }
        guard isDate(birthdate) else { throw JournalError.invalidSetup("give the birth date as YYYY-MM-DD") }
        return DataSubject(kind: .person, canonical: "person:\(name)|\(letters)|\(birthdate)|\(try canonicalPostcode(postcode))")
    }

    public static func address(postcode: String, houseNumber: String, addition: String? = nil) throws -> DataSubject {
        let number = houseNumber.trimmingCharacters(in: .whitespaces)
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw JournalError.invalidSetup("a house number is digits only; put letters in the addition (toevoeging)")
        }
        let extra = (addition ?? "").lowercased().filter { !$0.isWhitespace && $0 != "-" }
        guard !extra.contains("|") else { throw JournalError.invalidSetup("the addition may not contain '|'") }
        let trimmedNumber = String(number.drop(while: { $0 == "0" }))
        return DataSubject(kind: .address,
                           canonical: "address:\(try canonicalPostcode(postcode))|\(trimmedNumber.isEmpty ? "0" : trimmedNumber)|\(extra)")
    }

    /// The Logboek Dataverwerkingen `dpl.core.data_subject_id_type` of a pseudonym of this kind.
    public static func logboekType(ofPseudonym pseudonym: String) -> String {
        switch pseudonym.split(separator: ":", maxSplits: 1).first.map(String.init) {
        case "bsn": "BSN"
        case let kind?: "urn:waakvlam:data-subject:\(kind)"
        case nil: "urn:waakvlam:data-subject"
        }
    }

    private static func canonicalPostcode(_ postcode: String) throws -> String {
        let p = postcode.uppercased().filter { !$0.isWhitespace }
        let chars = Array(p)
        guard chars.count == 6, chars[0..<4].allSatisfy({ $0.isASCII && $0.isNumber }),
              chars[4..<6].allSatisfy({ $0.isASCII && $0.isLetter }) else {
            throw JournalError.invalidSetup("a postcode is four digits and two letters, e.g. 1621 AB")
        }
        return p
    }

    private static func isDate(_ s: String) -> Bool {
        let parts = s.split(separator: "-")
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]) else { return false }
        return y >= 1850 && (1...12).contains(m) && (1...31).contains(d)
    }
}

/// Keyed pseudonyms of data subjects: HMAC-SHA256 under the node secret, so that an access
/// request can be answered from the journal without a BSN or name in it, while nobody without
/// the secret can test a guess.
public struct Pseudonymizer: Sendable {
    public static let secretFileName = "secret"
    public static let secretLength = 32

    private let secret: [UInt8]

    /// Loads STATE/secret, creating it (32 random bytes, mode 0600) on first use unless
    /// `create` is false. Refuses a secret that others can read or that has the wrong length.
    public init(stateDirectory: String, create: Bool = true) throws {
        let path = stateDirectory + "/" + Pseudonymizer.secretFileName
        if !create, !FileManager.default.fileExists(atPath: path) {
            throw JournalError.invalidSetup("there is no node secret at \(path); pseudonyms need the secret of the node that wrote the journal")
        }
        secret = try Pseudonymizer.loadOrCreate(path, directory: stateDirectory)
    }

    public init(secret: [UInt8]) throws {
        guard secret.count == Pseudonymizer.secretLength else {
            throw JournalError.invalidSetup("the node secret must be \(Pseudonymizer.secretLength) bytes")
        }
        self.secret = secret
    }

    /// `<kind>:<64 hex digits>`, e.g. `bsn:3fa2...`: the kind prefix of the canonical string
    /// stays readable (it is no personal data), the rest is the HMAC.
    public func pseudonym(_ canonical: String) -> String {
        let kind = canonical.split(separator: ":", maxSplits: 1).first.map(String.init) ?? "subject"
        return kind + ":" + Hex.encode(HMACSHA256.authenticate(Array(canonical.utf8), key: secret))
    }

    public func pseudonym(_ subject: DataSubject) -> String { pseudonym(subject.canonical) }

    private static func loadOrCreate(_ path: String, directory: String) throws -> [UInt8] {
        if let existing = try read(path) { return existing }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            let temporary = path + ".\(getpid()).tmp"
            let fd = try syscall("open(\(temporary))") { open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
            defer { unlink(temporary) }
            do {
                try SecureRandom.bytes(secretLength).withUnsafeBytes { try writeAll(fd, $0) }
                try syscall("fsync") { fsync(fd) }
                close(fd)
            } catch {
                close(fd)
                throw error
            }
            // link() fails if another process created the secret first; then use theirs.
            if link(temporary, path) == 0 { try syncDirectory(directory) }
        } catch {
            throw JournalError.invalidSetup("cannot create the node secret \(path): \(error)")
        }
        guard let created = try read(path) else { throw JournalError.invalidSetup("cannot read the node secret \(path)") }
        return created
    }

    private static func read(_ path: String) throws -> [UInt8]? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        guard st.st_mode & 0o077 == 0 else {
            throw JournalError.invalidSetup("the node secret \(path) is readable by others; run: chmod 600 \(path)")
        }
        guard let data = FileManager.default.contents(atPath: path), data.count == secretLength else {
            throw JournalError.invalidSetup("the node secret \(path) is not \(secretLength) bytes; restore it from a backup (a new secret changes every pseudonym)")
        }
        return Array(data)
    }
}
