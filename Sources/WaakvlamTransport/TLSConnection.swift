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
        } catch {
            throw classifyHandshakeError(error)
        }
    }

    /// A closed connection with a failed verification, or an I/O error, is a handshake failure.
    private func classifyHandshakeError(_ error: Error) -> Error {
        switch error {
        case TransportError.connectionClosed:
            if let failure = verificationFailure() { return TransportError.handshake(reason: failure) }
            return error
        case TransportError.io(let reason):
            return TransportError.handshake(reason: verificationFailure() ?? reason)
        default:
            return error
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
            return try perform(phase, deadline: deadline, interrupt: interrupt) {
                SSL_read($0, buffer.baseAddress, Int32(buffer.count))
            }
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
                offset += n
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
        return hasPendingBytes || poll(&descriptor, 1, 0) != 0
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
    /// writing (close_notify, then the socket's write side), so that the peer sees the end of
    /// the response; the caller then reads and discards until the peer closes.
    func stopWriting() {
        guard !closed else { return }
        sendCloseNotify()
        shutdown(fd, Int32(SHUT_WR))
    }

    /// What one non-blocking step of an SSL call achieved.
    enum Step: Equatable {
        /// It made progress: bytes read or written (1 for a finished handshake).
        case done(Int)
        /// It needs the socket to become readable, or writable, first.
        case wantRead
        case wantWrite
    }

    /// Calls an SSL I/O function once, on the non-blocking socket. The error queue is emptied
    /// before the call so that a stale error cannot be mistaken for this call's; only when it
    /// holds anything, as OpenSSL 3.0's ERR_clear_error wipes all of its slots even when it is
    /// empty (before every read and write, that was ~1% of the node's CPU).
    private func attempt(_ phase: String, _ call: (OpaquePointer) -> Int32) throws -> Step {
        if ERR_peek_error() != 0 { ERR_clear_error() }
        let result = call(ssl)
        if result > 0 { return .done(Int(result)) }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
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
    }

    /// Calls an SSL I/O function until it makes progress, waiting for the socket as OpenSSL
    /// asks.
    private func perform(_ phase: String, deadline: UInt64, interrupt: Int32?, _ call: (OpaquePointer) -> Int32) throws -> Int {
        while true {
            let events: Int16
            switch try attempt(phase, call) {
            case .done(let count): return count
            case .wantRead: events = Int16(POLLIN)
            case .wantWrite: events = Int16(POLLOUT)
            }
            switch Socket.wait(fd, for: events, deadline: deadline, interrupt: interrupt) {
            case .ready: continue
            case .timedOut: throw TransportError.timedOut(phase: phase)
            case .interrupted: throw TransportError.shuttingDown
            }
        }
    }

    // MARK: - Non-blocking steps, for event loops

    /// One step of the handshake; errors as `handshake` throws them.
    func handshakeStep() throws -> Step {
        do {
            return try attempt("TLS handshake") { SSL_do_handshake($0) }
        } catch {
            throw classifyHandshakeError(error)
        }
    }

    /// One read; `.done(0)` means the peer closed the connection.
    func readStep(into buffer: UnsafeMutableRawBufferPointer, phase: String) throws -> Step {
        do {
            return try attempt(phase) { SSL_read($0, buffer.baseAddress, Int32(buffer.count)) }
        } catch TransportError.connectionClosed {
            return .done(0)
        }
    }

    /// One write of at most `bytes.count` bytes.
    func writeStep(_ bytes: UnsafeRawBufferPointer, phase: String) throws -> Step {
        try attempt(phase) { SSL_write($0, bytes.baseAddress, Int32(min(bytes.count, 1 << 30))) }
    }

    /// True when OpenSSL holds decrypted bytes not yet read: then a read must not wait for
    /// the socket first.
    var hasPendingBytes: Bool { SSL_has_pending(ssl) == 1 }

    /// Why certificate verification failed, when it did ("certificate has expired", ...).
    private func verificationFailure() -> String? {
        let result = SSL_get_verify_result(ssl)
        guard result != X509_V_OK else { return nil }
        return String(cString: X509_verify_cert_error_string(result))
    }
}
