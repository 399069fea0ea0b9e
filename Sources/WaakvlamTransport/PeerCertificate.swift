import COpenSSL
import Foundation
import WaakvlamCrypto

/// What a verified certificate says about its holder, in the terms of Dutch government
/// practice (PKIoverheid, Digikoppeling): the OIN in the subject serialNumber, the
/// organisation's name in subject O, and a pin of the public key that survives renewal
/// of the certificate with the same key.
public struct PeerCertificate: Sendable, Equatable {
    /// The subject serialNumber attribute (2.5.4.5): the OIN for Dutch organisations.
    public let subjectSerialNumber: String?
    /// The subject O attribute.
    public let organisation: String?
    /// The subject CN attribute.
    public let commonName: String?
    /// The subject and issuer as one-line RFC 2253 strings, for logs.
    public let subject: String
    public let issuer: String
    /// The certificate's serial number in upper-case hexadecimal (as in a CRL listing).
    public let serialNumber: String
    public let notBefore: Date
    public let notAfter: Date
    /// "sha256//" + base64 of SHA-256 over the DER SubjectPublicKeyInfo, as curl's --pinnedpubkey.
    public let publicKeyPin: String

    /// Reads the certificate (the first one) of a PEM file.
    public init(pemFile path: String) throws {
        guard let bio = BIO_new_file(path, "r") else {
            throw TransportError.file(path: path, problem: "cannot open the certificate file")
        }
        defer { BIO_free(bio) }
        guard let x509 = PEM_read_bio_X509(bio, nil, nil, nil) else {
            ERR_clear_error()
            throw TransportError.file(path: path, problem: "contains no PEM certificate")
        }
        defer { X509_free(x509) }
        try self.init(x509: x509)
    }

    /// Reads a certificate without taking ownership of it.
    init(x509: OpaquePointer) throws {
        let subjectName = X509_get_subject_name(x509)
        subjectSerialNumber = Self.attribute(NID_serialNumber, of: subjectName)
        organisation = Self.attribute(NID_organizationName, of: subjectName)
        commonName = Self.attribute(NID_commonName, of: subjectName)
        subject = Self.oneLine(subjectName)
        issuer = Self.oneLine(X509_get_issuer_name(x509))
        serialNumber = Self.hex(X509_get0_serialNumber(x509))
        notBefore = Self.date(X509_get0_notBefore(x509))
        notAfter = Self.date(X509_get0_notAfter(x509))
        guard let pin = Self.pin(of: x509) else {
            throw TransportError.tlsConfiguration("cannot encode the certificate's public key")
        }
        publicKeyPin = pin
    }

    /// The pin of a certificate's public key.
    static func pin(of x509: OpaquePointer) -> String? {
        var der: UnsafeMutablePointer<UInt8>?
        let length = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x509), &der)
        guard length > 0, let der else { return nil }
        defer { waakvlam_OPENSSL_free(der) }
        let digest = SHA256.hash(UnsafeBufferPointer(start: der, count: Int(length)))
        return "sha256//" + Data(digest).base64EncodedString()
    }

    private static func attribute(_ nid: Int32, of name: OpaquePointer?) -> String? {
        let index = X509_NAME_get_index_by_NID(name, nid, -1)
        guard index >= 0, let entry = X509_NAME_get_entry(name, index),
              let data = X509_NAME_ENTRY_get_data(entry) else { return nil }
        var utf8: UnsafeMutablePointer<UInt8>?
        let length = ASN1_STRING_to_UTF8(&utf8, data)
        guard length >= 0, let utf8 else { return nil }
        defer { waakvlam_OPENSSL_free(utf8) }
        return String(decoding: UnsafeBufferPointer(start: utf8, count: Int(length)), as: UTF8.self)
    }

    private static func oneLine(_ name: OpaquePointer?) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        X509_NAME_print_ex(bio, name, 0, waakvlam_XN_FLAG_RFC2253())
        var data: UnsafeMutablePointer<CChar>?
        let length = waakvlam_BIO_get_mem_data(bio, &data)
        guard length > 0, let data else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }

    private static func hex(_ integer: UnsafePointer<ASN1_INTEGER>?) -> String {
        guard let bn = ASN1_INTEGER_to_BN(integer, nil) else { return "" }
        defer { BN_free(bn) }
        guard let text = BN_bn2hex(bn) else { return "" }
        defer { waakvlam_OPENSSL_free(text) }
        return String(cString: text)
    }

    private static func date(_ time: UnsafePointer<ASN1_TIME>?) -> Date {
        var broken = tm()
        guard ASN1_TIME_to_tm(time, &broken) == 1 else { return Date(timeIntervalSince1970: 0) }
        return Date(timeIntervalSince1970: TimeInterval(timegm(&broken)))
    }
}
