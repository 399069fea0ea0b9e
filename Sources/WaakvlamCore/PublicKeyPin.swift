import Foundation

/// A certificate public-key pin as curl's `--pinnedpubkey` writes it:
/// `sha256//` followed by the base64 of the SHA-256 digest of the DER SubjectPublicKeyInfo.
/// Pinning the key (not the certificate) lets a renewed certificate with the same key keep
/// working.
public enum PublicKeyPin {
    public static let prefix = "sha256//"

    /// The pin for a SHA-256 digest of a SubjectPublicKeyInfo.
    public static func pin(digest: [UInt8]) -> String {
        prefix + Data(digest).base64EncodedString()
    }

    public static func isWellFormed(_ pin: String) -> Bool {
        guard pin.hasPrefix(prefix), let digest = Data(base64Encoded: String(pin.dropFirst(prefix.count))) else { return false }
        return digest.count == 32
    }
}
