#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import WaakvlamCrypto
import WaakvlamSystem

/// Keyed pseudonyms of data subjects: HMAC-SHA256 under the node secret, so that an access
/// request can be answered from the journal without a BSN or name in it, while nobody without
/// the secret can test a guess. The canonical strings (`bsn:123456782`,
/// `person:jansen|1980-01-01|1621AB`, `address:1621AB|12|A`) come from WaakvlamCore's
/// `SubjectKeys`, both in the relay and in `waakvlam journal subject`.
public struct Pseudonymizer: Sendable {
    public static let secretFileName = "secret"
    public static let secretLength = 32

    private let mac: HMACSHA256

    /// Loads STATE/secret, creating it (32 random bytes, mode 0600) on first use unless
    /// `create` is false. Refuses a secret that others can read or that has the wrong length.
    public init(stateDirectory: String, create: Bool = true) throws {
        let path = stateDirectory + "/" + Pseudonymizer.secretFileName
        if !create, !FileManager.default.fileExists(atPath: path) {
            throw JournalError.invalidSetup("there is no node secret at \(path); pseudonyms need the secret of the node that wrote the journal")
        }
        mac = HMACSHA256(key: try Pseudonymizer.loadOrCreate(path, directory: stateDirectory))
    }

    public init(secret: [UInt8]) throws {
        guard secret.count == Pseudonymizer.secretLength else {
            throw JournalError.invalidSetup("the node secret must be \(Pseudonymizer.secretLength) bytes")
        }
        mac = HMACSHA256(key: secret)
    }

    /// `<kind>:<64 hex digits>`, e.g. `bsn:3fa2...`: the kind prefix of the canonical string
    /// stays readable (it is no personal data), the rest is the HMAC. A string without a
    /// kind prefix gets `subject:` (never any part of the string itself).
    public func pseudonym(_ canonical: String) -> String {
        var canonical = canonical
        return canonical.withUTF8 { text in
            let colon = text.firstIndex(of: UInt8(ascii: ":")) ?? 0
            let kindCount = colon > 0 ? colon : Self.defaultKind.count
            // The MAC on the stack, the pseudonym written in one piece.
            return withUnsafeTemporaryAllocation(byteCount: SHA256.byteCount, alignment: 8) { digest in
                mac.authenticate(UnsafeRawBufferPointer(text), into: digest.baseAddress!)
                return String(unsafeUninitializedCapacity: kindCount + 1 + 2 * SHA256.byteCount) { out in
                    if colon > 0 { _ = out.initialize(from: text[..<colon]) } else { _ = out.initialize(from: Self.defaultKind) }
                    out[kindCount] = UInt8(ascii: ":")
                    Hex.write(UnsafeRawBufferPointer(digest), to: UnsafeMutableBufferPointer(rebasing: out[(kindCount + 1)...]))
                    return kindCount + 1 + 2 * SHA256.byteCount
                }
            }
        }
    }

    /// The kind of a canonical string without one.
    private static let defaultKind = Array("subject".utf8)

    /// The Logboek Dataverwerkingen `dpl.core.data_subject_id_type` of a pseudonym: `BSN`, or a
    /// URN naming the kind (`urn:waakvlam:data-subject:person`, `...:address`).
    public static func dataSubjectIDType(ofPseudonym pseudonym: String) -> String {
        switch pseudonym.split(separator: ":", maxSplits: 1).first.map(String.init) {
        case "bsn": "BSN"
        case let kind?: "urn:waakvlam:data-subject:\(kind)"
        case nil: "urn:waakvlam:data-subject"
        }
    }

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
