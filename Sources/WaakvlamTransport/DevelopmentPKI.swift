#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import Foundation
import WaakvlamCrypto
import WaakvlamSystem

// A development PKI on OpenSSL's C API: a CA, certificates in the Dutch government shape
// (subject serialNumber = OIN, O = organisation name), and CRLs. For `waakvlam pki init`
// and the tests; production certificates come from PKIoverheid or the partners' own CA.

/// An EC P-256 private key.
public final class PrivateKey: @unchecked Sendable {
    let pointer: OpaquePointer

    private init(pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit {
        EVP_PKEY_free(pointer)
    }

    public static func generateP256() throws -> PrivateKey {
        ERR_clear_error()
        guard let key = waakvlam_EVP_EC_gen("P-256") else {
            throw TransportError.pki("cannot generate a P-256 key: \(openSSLErrors("unknown error"))")
        }
        return PrivateKey(pointer: key)
    }

    public convenience init(pemFile path: String) throws {
        guard let bio = BIO_new_file(path, "r") else {
            throw TransportError.file(path: path, problem: "cannot open the private key file")
        }
        defer { BIO_free(bio) }
        guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else {
            ERR_clear_error()
            throw TransportError.file(path: path, problem: "contains no unencrypted PEM private key")
        }
        self.init(pointer: key)
    }

    /// PKCS#8 PEM, unencrypted.
    public var pem: String {
        PKI.pem { PEM_write_bio_PrivateKey($0, pointer, nil, nil, 0, nil, nil) }
    }
}

/// What to put in a certificate.
public struct CertificateSpec: Sendable {
    public enum Usage: Sendable {
        case client, server, clientAndServer
    }

    public var commonName: String
    public var organisation: String?
    /// The subject serialNumber attribute: the OIN of the organisation.
    public var subjectSerialNumber: String?
    public var dnsNames: [String]
    public var ipAddresses: [String]
    public var usage: Usage
    public var notBefore: Date
    public var notAfter: Date
    /// Where relying parties find the CRL (a URI in the CRL distribution points extension).
    public var crlDistributionPoint: String?

    /// Valid from an hour ago (tolerating clock skew) for `days` days in all: one year by
    /// default, well within the 398 days that browsers accept for TLS server certificates.
    public init(commonName: String, organisation: String? = nil, subjectSerialNumber: String? = nil,
                dnsNames: [String] = [], ipAddresses: [String] = [], usage: Usage = .client,
                notBefore: Date = Date(timeIntervalSinceNow: -3600), days: Int = 365,
                crlDistributionPoint: String? = nil) {
        self.commonName = commonName
        self.organisation = organisation
        self.subjectSerialNumber = subjectSerialNumber
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.usage = usage
        self.notBefore = notBefore
        self.notAfter = notBefore.addingTimeInterval(TimeInterval(days) * 86400)
        self.crlDistributionPoint = crlDistributionPoint
    }
}

/// A certificate issued by a `DevelopmentCA`, with its key.
public struct IssuedCertificate: Sendable {
    public let certificatePEM: String
    public let key: PrivateKey
    /// Upper-case hexadecimal, as `PeerCertificate.serialNumber`.
    public let serialNumber: String
    public let publicKeyPin: String

    /// Writes the certificate (mode 0644) and the key (mode 0600).
    public func write(certificateTo certificatePath: String, keyTo keyPath: String) throws {
        try PEMFile.write(certificatePEM, to: certificatePath, secret: false)
        try PEMFile.write(key.pem, to: keyPath, secret: true)
    }
}

/// A certificate authority whose key is in memory: creates certificates and CRLs.
public final class DevelopmentCA: @unchecked Sendable {
    public let key: PrivateKey
    private let certificate: OpaquePointer

    private init(key: PrivateKey, certificate: OpaquePointer) {
        self.key = key
        self.certificate = certificate
    }

    deinit {
        X509_free(certificate)
    }

    /// A new self-signed CA with an EC P-256 key, valid for `days` days.
    public static func create(organisation: String, commonName: String, days: Int = 3650) throws -> DevelopmentCA {
        let key = try PrivateKey.generateP256()
        let spec = CertificateSpec(commonName: commonName, organisation: organisation, days: days)
        let x509 = try PKI.build(spec: spec, publicKey: key, issuer: nil, signer: key, isCA: true)
        return DevelopmentCA(key: key, certificate: x509)
    }

    /// Loads a CA from its PEM certificate and key.
    public convenience init(certificateFile: String, keyFile: String) throws {
        let key = try PrivateKey(pemFile: keyFile)
        guard let bio = BIO_new_file(certificateFile, "r") else {
            throw TransportError.file(path: certificateFile, problem: "cannot open the CA certificate")
        }
        defer { BIO_free(bio) }
        guard let x509 = PEM_read_bio_X509(bio, nil, nil, nil) else {
            ERR_clear_error()
            throw TransportError.file(path: certificateFile, problem: "contains no PEM certificate")
        }
        guard X509_check_private_key(x509, key.pointer) == 1 else {
            ERR_clear_error()
            X509_free(x509)
            throw TransportError.file(path: keyFile, problem: "this key does not belong to the CA certificate \(certificateFile)")
        }
        self.init(key: key, certificate: x509)
    }

    public var certificatePEM: String {
        PKI.pem { PEM_write_bio_X509($0, certificate) }
    }

    /// Issues a certificate for `spec`, with a new key or (for a renewal that keeps the
    /// public-key pin) an existing one.
    public func issue(_ spec: CertificateSpec, key existingKey: PrivateKey? = nil) throws -> IssuedCertificate {
        let key = try existingKey ?? PrivateKey.generateP256()
        let x509 = try PKI.build(spec: spec, publicKey: key, issuer: certificate, signer: self.key, isCA: false)
        defer { X509_free(x509) }
        let peer = try PeerCertificate(x509: x509)
        return IssuedCertificate(certificatePEM: PKI.pem { PEM_write_bio_X509($0, x509) }, key: key,
                                 serialNumber: peer.serialNumber, publicKeyPin: peer.publicKeyPin)
    }

    /// A CRL (PEM) listing the certificates with these serial numbers (hexadecimal).
    public func revocationList(revoking serialNumbers: [String], number: Int = 1, days: Int = 365) throws -> String {
        guard let crl = X509_CRL_new() else { throw TransportError.pki("X509_CRL_new failed") }
        defer { X509_CRL_free(crl) }
        let now = time(nil)
        let lastUpdate = ASN1_TIME_set(nil, now)
        let nextUpdate = ASN1_TIME_set(nil, now + time_t(days) * 86400)
        defer {
            ASN1_TIME_free(lastUpdate)
            ASN1_TIME_free(nextUpdate)
        }
        guard X509_CRL_set_version(crl, 1) == 1,
              X509_CRL_set_issuer_name(crl, X509_get_subject_name(certificate)) == 1,
              X509_CRL_set1_lastUpdate(crl, lastUpdate) == 1,
              X509_CRL_set1_nextUpdate(crl, nextUpdate) == 1
        else { throw TransportError.pki("cannot fill in the CRL: \(openSSLErrors("unknown"))") }
        for serial in serialNumbers {
            guard let revoked = X509_REVOKED_new() else { throw TransportError.pki("X509_REVOKED_new failed") }
            var bn: OpaquePointer?
            guard BN_hex2bn(&bn, serial) > 0, let number = BN_to_ASN1_INTEGER(bn, nil) else {
                BN_free(bn)
                X509_REVOKED_free(revoked)
                throw TransportError.pki("'\(serial)' is not a hexadecimal serial number")
            }
            BN_free(bn)
            X509_REVOKED_set_serialNumber(revoked, number)
            X509_REVOKED_set_revocationDate(revoked, lastUpdate)
            ASN1_INTEGER_free(number)
            X509_CRL_add0_revoked(crl, revoked)
        }
        X509_CRL_sort(crl)
        var context = X509V3_CTX()
        X509V3_set_ctx(&context, certificate, nil, nil, crl, 0)
        try PKI.addExtension(NID_authority_key_identifier, "keyid:always", context: &context) { X509_CRL_add_ext(crl, $0, -1) }
        let crlNumber = ASN1_INTEGER_new()
        defer { ASN1_INTEGER_free(crlNumber) }
        ASN1_INTEGER_set(crlNumber, number)
        guard X509_CRL_add1_ext_i2d(crl, NID_crl_number, UnsafeMutableRawPointer(crlNumber), 0, 0) == 1,
              X509_CRL_sign(crl, key.pointer, EVP_sha256()) > 0
        else { throw TransportError.pki("cannot sign the CRL: \(openSSLErrors("unknown"))") }
        return PKI.pem { PEM_write_bio_X509_CRL($0, crl) }
    }
}

/// Writes PEM files: atomically (a temporary file renamed into place), keys readable by the
/// owner only.
public enum PEMFile {
    /// Writes a PEM file durably (temporary file, flush, rename); keys get mode 0600.
    public static func write(_ text: String, to path: String, secret: Bool) throws {
        do {
            try DurableFile.write(path, Array(text.utf8), mode: secret ? 0o600 : 0o644)
        } catch {
            throw TransportError.file(path: path, problem: "cannot write: \(error)")
        }
    }
}

enum PKI {
    /// Builds and signs an X.509 v3 certificate. The caller frees the result.
    static func build(spec: CertificateSpec, publicKey: PrivateKey, issuer: OpaquePointer?, signer: PrivateKey,
                      isCA: Bool) throws -> OpaquePointer {
        ERR_clear_error()
        guard let x509 = X509_new() else { throw TransportError.pki("X509_new failed") }
        do {
            try fill(x509, spec: spec, publicKey: publicKey, issuer: issuer, signer: signer, isCA: isCA)
            return x509
        } catch {
            X509_free(x509)
            throw error
        }
    }

    private static func fill(_ x509: OpaquePointer, spec: CertificateSpec, publicKey: PrivateKey, issuer: OpaquePointer?,
                             signer: PrivateKey, isCA: Bool) throws {
        // A random positive 128-bit serial number.
        var serial = SecureRandom.bytes(16)
        serial[0] &= 0x7f
        let bn = BN_bin2bn(serial, Int32(serial.count), nil)
        defer { BN_free(bn) }
        guard X509_set_version(x509, 2) == 1,
              BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x509)) != nil,
              ASN1_TIME_set(X509_getm_notBefore(x509), time_t(spec.notBefore.timeIntervalSince1970)) != nil,
              ASN1_TIME_set(X509_getm_notAfter(x509), time_t(spec.notAfter.timeIntervalSince1970)) != nil,
              X509_set_pubkey(x509, publicKey.pointer) == 1
        else { throw TransportError.pki("cannot fill in the certificate: \(openSSLErrors("unknown"))") }

        let name = X509_get_subject_name(x509)
        for (nid, value) in [(NID_serialNumber, spec.subjectSerialNumber), (NID_organizationName, spec.organisation),
                             (NID_commonName, Optional(spec.commonName))] {
            guard let value else { continue }
            guard X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8, value, -1, -1, 0) == 1 else {
                throw TransportError.pki("'\(value)' cannot go into the certificate subject: \(openSSLErrors("invalid"))")
            }
        }
        guard X509_set_issuer_name(x509, issuer.map { X509_get_subject_name($0) } ?? name) == 1 else {
            throw TransportError.pki("cannot set the issuer: \(openSSLErrors("unknown"))")
        }

        var context = X509V3_CTX()
        X509V3_set_ctx(&context, issuer ?? x509, x509, nil, nil, 0)
        var extensions: [(Int32, String)] = [(NID_subject_key_identifier, "hash"),
                                             (NID_authority_key_identifier, "keyid:always")]
        if isCA {
            extensions += [(NID_basic_constraints, "critical,CA:TRUE,pathlen:0"),
                           (NID_key_usage, "critical,keyCertSign,cRLSign")]
        } else {
            let usage: String
            switch spec.usage {
            case .client: usage = "clientAuth"
            case .server: usage = "serverAuth"
            case .clientAndServer: usage = "serverAuth,clientAuth"
            }
            extensions += [(NID_basic_constraints, "critical,CA:FALSE"),
                           (NID_key_usage, "critical,digitalSignature"),
                           (NID_ext_key_usage, usage)]
            let names = spec.dnsNames.map { "DNS:\($0)" } + spec.ipAddresses.map { "IP:\($0)" }
            if !names.isEmpty { extensions.append((NID_subject_alt_name, names.joined(separator: ","))) }
            if let uri = spec.crlDistributionPoint { extensions.append((NID_crl_distribution_points, "URI:\(uri)")) }
        }
        for (nid, value) in extensions {
            try addExtension(nid, value, context: &context) { X509_add_ext(x509, $0, -1) }
        }
        guard X509_sign(x509, signer.pointer, EVP_sha256()) > 0 else {
            throw TransportError.pki("cannot sign the certificate: \(openSSLErrors("unknown"))")
        }
    }

    static func addExtension(_ nid: Int32, _ value: String, context: inout X509V3_CTX,
                             add: (OpaquePointer) -> Int32) throws {
        guard let ext = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
            throw TransportError.pki("invalid extension value '\(value)': \(openSSLErrors("unknown"))")
        }
        defer { X509_EXTENSION_free(ext) }
        guard add(ext) == 1 else { throw TransportError.pki("cannot add extension '\(value)'") }
    }

    /// Runs a PEM writer against a memory BIO and returns the text.
    static func pem(_ write: (OpaquePointer) -> Int32) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        guard write(bio) == 1 else { return "" }
        var data: UnsafeMutablePointer<CChar>?
        let length = waakvlam_BIO_get_mem_data(bio, &data)
        guard length > 0, let data else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }
}
