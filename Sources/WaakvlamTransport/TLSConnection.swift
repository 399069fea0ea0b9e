#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import WaakvlamSystem

/// One TLS connection over a non-blocking socket. It belongs to one thread at a time (the
/// server's connection thread, or the client thread that took it from the pool), which is
/// what serialises its reads and writes: OpenSSL's SSL object must never be used by two
/// threads at once. Waiting happens in `poll` with a deadline, so every phase has a timeout.
final class TLSConnection {
    let fd: Int32
    private let ssl: OpaquePointer
    private var closed = false
    private var closeNotifySent = false

    /// Takes ownership of `fd` (closed by `close()`).
    init(context: TLSContext, fd: Int32) throws {
        ERR_clear_error()
        guard let ssl = SSL_new(context.pointer) else {
            Glibc.close(fd)
            throw TransportError.tlsConfiguration(openSSLErrors("SSL_new failed"))
        }
        self.fd = fd
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        if context.role == .server { SSL_set_accept_state(ssl) } else { SSL_set_connect_state(ssl) }
    }

    deinit {
        close()
        SSL_free(ssl)
    }

    /// Client side: the server's certificate must be valid for this host name or IP address.
    func expectServer(_ endpoint: Endpoint) throws {
        ERR_clear_error()
        if endpoint.hostIsIPAddress {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), endpoint.host) == 1 else {
                throw TransportError.invalidEndpoint(endpoint.description)
            }
        } else {
            guard SSL_set1_host(ssl, endpoint.host) == 1,
                  waakvlam_SSL_set_tlsext_host_name(ssl, endpoint.host) == 1 else {
                throw TransportError.invalidEndpoint(endpoint.description)
            }
        }
    }

    /// Runs the handshake; on the server this is where the client certificate is verified.
    /// Throws `.connectionClosed` when the peer just went away, `.handshake` when TLS failed.
    func handshake(deadline: UInt64, interrupt: Int32? = nil) throws {
        do {
            _ = try perform("TLS handshake", deadline: deadline, interrupt: interrupt) { SSL_do_handshake($0) }
        } catch TransportError.connectionClosed {
            if let failure = verificationFailure() { throw TransportError.handshake(reason: failure) }
            throw TransportError.connectionClosed
        } catch TransportError.io(let reason) {
            throw TransportError.handshake(reason: verificationFailure() ?? reason)
        }
    }

    /// Reads decrypted bytes; 0 means the peer closed the connection.
    func read(into buffer: UnsafeMutableRawBufferPointer, deadline: UInt64, interrupt: Int32? = nil,
              phase: String = "request") throws -> Int {
        // Nothing buffered in OpenSSL: wait for the socket first, which saves the read that
        // would only say EAGAIN (the usual case between keep-alive requests).
        if SSL_has_pending(ssl) == 0 {
            switch Socket.wait(fd, for: Int16(POLLIN), deadline: deadline, interrupt: interrupt) {
            case .ready: break
            case .timedOut: throw TransportError.timedOut(phase: phase)
            case .interrupted: throw TransportError.shuttingDown
            }
        }
        do {
            return Int(try perform(phase, deadline: deadline, interrupt: interrupt) {
                SSL_read($0, buffer.baseAddress, Int32(buffer.count))
            })
        } catch TransportError.connectionClosed {
            return 0
        }
    }

    func write(_ bytes: [UInt8], deadline: UInt64) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let chunk = Int32(min(raw.count - offset, 1 << 30))
                let n = try perform("write", deadline: deadline, interrupt: nil) {
                    SSL_write($0, raw.baseAddress! + offset, chunk)
                }
                offset += Int(n)
            }
        }
    }

    /// The verified peer certificate. SSL_get1_peer_certificate adds a reference that is
    /// released here.
    func peerCertificate() -> PeerCertificate? {
        guard let x509 = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(x509) }
        return try? PeerCertificate(x509: x509)
    }

    var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    var cipher: String {
        guard let cipher = SSL_get_current_cipher(ssl) else { return "" }
        return String(cString: SSL_CIPHER_get_name(cipher))
    }

    /// True when the peer has sent something (or closed) although no request is pending: a
    /// pooled client connection in that state cannot be reused.
    var isReadableWhileIdle: Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return SSL_has_pending(ssl) == 1 || poll(&descriptor, 1, 0) != 0
    }

    /// Sends close_notify (without waiting for the peer's) and closes the socket.
    func close() {
        guard !closed else { return }
        closed = true
        sendCloseNotify()
        Glibc.close(fd)
    }

    private func sendCloseNotify() {
        guard !closeNotifySent else { return }
        closeNotifySent = true
        ERR_clear_error()
        if SSL_is_init_finished(ssl) == 1 { _ = SSL_shutdown(ssl) }
        ERR_clear_error()
    }

    /// Before closing after an error response while the peer may still be sending: stop
    /// writing, then read and discard for a short while, so that the close does not reset the
    /// connection and destroy the response before the peer has read it.
    func linger(until deadline: UInt64) {
        guard !closed else { return }
        sendCloseNotify()
        shutdown(fd, Int32(SHUT_WR))
        var scratch = [UInt8](repeating: 0, count: 4096)
        loop: while Socket.wait(fd, for: Int16(POLLIN), deadline: deadline) == .ready {
            switch recv(fd, &scratch, scratch.count, 0) {
            case let n where n > 0: continue
            case let n where n < 0 && (errno == EAGAIN || errno == EINTR): continue
            default: break loop
            }
        }
    }

    /// Calls an SSL I/O function until it makes progress, waiting for the socket as OpenSSL
    /// asks. The error queue is cleared before every call so that a stale error cannot be
    /// mistaken for this call's.
    private func perform(_ phase: String, deadline: UInt64, interrupt: Int32?, _ call: (OpaquePointer) -> Int32) throws -> Int32 {
        while true {
            ERR_clear_error()
            let result = call(ssl)
            if result > 0 { return result }
            let error = SSL_get_error(ssl, result)
            let events: Int16
            switch error {
            case SSL_ERROR_WANT_READ: events = Int16(POLLIN)
            case SSL_ERROR_WANT_WRITE: events = Int16(POLLOUT)
            case SSL_ERROR_ZERO_RETURN: throw TransportError.connectionClosed
            case SSL_ERROR_SYSCALL:
                let code = errno
                ERR_clear_error()
                if code == 0 || code == ECONNRESET || code == EPIPE { throw TransportError.connectionClosed }
                throw TransportError.io("\(phase): \(String(cString: strerror(code)))")
            default:
                // A peer that vanishes without close_notify (the server disables this check).
                if ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING {
                    ERR_clear_error()
                    throw TransportError.connectionClosed
                }
                throw TransportError.io(openSSLErrors("\(phase) failed"))
            }
            switch Socket.wait(fd, for: events, deadline: deadline, interrupt: interrupt) {
            case .ready: continue
            case .timedOut: throw TransportError.timedOut(phase: phase)
            case .interrupted: throw TransportError.shuttingDown
            }
        }
    }

    /// Why certificate verification failed, when it did ("certificate has expired", ...).
    private func verificationFailure() -> String? {
        let result = SSL_get_verify_result(ssl)
        guard result != X509_V_OK else { return nil }
        return String(cString: X509_verify_cert_error_string(result))
    }
}
