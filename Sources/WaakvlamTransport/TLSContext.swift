import COpenSSL
import Foundation

/// An OpenSSL SSL_CTX configured for Waakvlam's mutual TLS, following the NCSC guidelines
/// and Digikoppeling: TLS 1.2 minimum and 1.3 preferred; for 1.2 only ECDHE with AES-GCM or
/// ChaCha20-Poly1305; no compression, no renegotiation, no session resumption (every
/// connection is fully verified, so a revocation takes effect on the next connection);
/// the peer's certificate is always required and verified against `trustedCAs`, and against
/// the CRL when one is given.
///
/// A context is immutable once built and may be shared by any number of connections and
/// threads. To change certificates or the CRL, build a new one.
public final class TLSContext: @unchecked Sendable {
    public enum Role: Sendable { case server, client }

    /// TLS 1.2 suites: forward-secret key exchange with AEAD ciphers only.
    static let tls12Ciphers = [
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    ].joined(separator: ":")
    static let tls13Suites = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
    static let groups = "X25519:P-256:P-384"

    public let role: Role
    let pointer: OpaquePointer

    /// - Parameters:
    ///   - certificateChain: PEM file with this side's certificate, then any intermediates.
    ///   - privateKey: PEM file with the matching private key.
    ///   - trustedCAs: PEM bundle of the CAs that issue the peers' certificates.
    ///   - crl: optional PEM file with one or more CRLs of those CAs; when given, the peer's
    ///     certificate must not be listed and the CRL must be current.
    public init(role: Role, certificateChain: String, privateKey: String, trustedCAs: String, crl: String? = nil) throws {
        for (path, what) in [(certificateChain, "certificate"), (privateKey, "private key"), (trustedCAs, "CA bundle")] + (crl.map { [($0, "CRL")] } ?? []) {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw TransportError.file(path: path, problem: "the \(what) file does not exist or is not readable; check the tls section of node.json (run `waakvlam pki init` for a development set)")
            }
        }
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(role == .server ? TLS_server_method() : TLS_client_method()) else {
            throw TransportError.tlsConfiguration(openSSLErrors("SSL_CTX_new failed"))
        }
        self.role = role
        self.pointer = ctx
        try configure(role: role)
        try load(certificateChain: certificateChain, privateKey: privateKey, trustedCAs: trustedCAs, crl: crl)
    }

    deinit {
        SSL_CTX_free(pointer)
    }

    private func configure(role: Role) throws {
        func check(_ ok: Bool, _ what: String) throws {
            if !ok { throw TransportError.tlsConfiguration(openSSLErrors(what)) }
        }
        try check(waakvlam_SSL_CTX_set_min_proto_version(pointer, TLS1_2_VERSION) == 1, "minimum protocol version")
        try check(SSL_CTX_set_cipher_list(pointer, Self.tls12Ciphers) == 1, "TLS 1.2 cipher list")
        try check(SSL_CTX_set_ciphersuites(pointer, Self.tls13Suites) == 1, "TLS 1.3 cipher suites")
        try check(waakvlam_SSL_CTX_set1_groups_list(pointer, Self.groups) == 1, "key exchange groups")
        var options = waakvlam_SSL_OP_NO_COMPRESSION() | waakvlam_SSL_OP_NO_RENEGOTIATION() | waakvlam_SSL_OP_NO_TICKET()
        if role == .server {
            // Requests are framed by HTTP, so a peer that closes without close_notify has not
            // truncated anything: treat that like an orderly close instead of an error.
            options |= waakvlam_SSL_OP_CIPHER_SERVER_PREFERENCE() | waakvlam_SSL_OP_IGNORE_UNEXPECTED_EOF()
        }
        SSL_CTX_set_options(pointer, options)
        _ = waakvlam_SSL_CTX_set_mode(pointer, Int(SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        // Read whatever the socket holds in one read(2) instead of a record header and then
        // its body; `SSL_has_pending` still tells whether buffered bytes wait.
        _ = waakvlam_SSL_CTX_set_read_ahead(pointer, 1)
        _ = waakvlam_SSL_CTX_set_session_cache_mode(pointer, Int(SSL_SESS_CACHE_OFF))
        _ = SSL_CTX_set_num_tickets(pointer, 0)
        _ = waakvlam_SSL_CTX_set_session_id_context_default(pointer)
        let mode = role == .server
            ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_CLIENT_ONCE
            : SSL_VERIFY_PEER
        SSL_CTX_set_verify(pointer, Int32(mode), nil)
        SSL_CTX_set_verify_depth(pointer, 4)
    }

    private func load(certificateChain: String, privateKey: String, trustedCAs: String, crl: String?) throws {
        ERR_clear_error()
        guard SSL_CTX_use_certificate_chain_file(pointer, certificateChain) == 1 else {
            throw TransportError.file(path: certificateChain, problem: "not a PEM certificate chain (\(openSSLErrors("unreadable")))")
        }
        let key = try PrivateKey(pemFile: privateKey)
        guard SSL_CTX_use_PrivateKey(pointer, key.pointer) == 1, SSL_CTX_check_private_key(pointer) == 1 else {
            ERR_clear_error()
            throw TransportError.file(path: privateKey, problem: "this key does not belong to the certificate in \(certificateChain)")
        }
        guard SSL_CTX_load_verify_file(pointer, trustedCAs) == 1 else {
            throw TransportError.file(path: trustedCAs, problem: "not a PEM CA bundle (\(openSSLErrors("unreadable")))")
        }
        if role == .server {
            // Tell clients which CAs are accepted, so a client with several certificates picks the right one.
            if let names = SSL_load_client_CA_file(trustedCAs) {
                SSL_CTX_set_client_CA_list(pointer, names)
            }
        }
        if let crl {
            let store = SSL_CTX_get_cert_store(pointer)
            let count = try Self.addCRLs(from: crl, to: store)
            guard count > 0 else {
                throw TransportError.file(path: crl, problem: "contains no PEM CRL (-----BEGIN X509 CRL-----)")
            }
            X509_STORE_set_flags(store, UInt(X509_V_FLAG_CRL_CHECK))
        }
    }

    private static func addCRLs(from path: String, to store: OpaquePointer?) throws -> Int {
        guard let bio = BIO_new_file(path, "r") else {
            throw TransportError.file(path: path, problem: "cannot open the CRL file")
        }
        defer { BIO_free(bio) }
        var count = 0
        while let crl = PEM_read_bio_X509_CRL(bio, nil, nil, nil) {
            defer { X509_CRL_free(crl) }
            guard X509_STORE_add_crl(store, crl) == 1 else {
                throw TransportError.file(path: path, problem: "OpenSSL refused a CRL (\(openSSLErrors("unknown")))")
            }
            count += 1
        }
        ERR_clear_error() // the read loop ends with "no start line"
        return count
    }
}
