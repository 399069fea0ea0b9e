import COpenSSL
import Foundation

/// Everything that can go wrong in the transport. User-caused cases say what to fix.
public enum TransportError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A certificate, key, CA bundle or CRL file could not be used.
    case file(path: String, problem: String)
    /// OpenSSL refused a setting of a TLS context (a bug or an unusual OpenSSL build).
    case tlsConfiguration(String)
    /// An address is not "host:port".
    case invalidEndpoint(String)
    case addressResolution(host: String, reason: String)
    case bind(address: String, reason: String)
    case connect(address: String, reason: String)
    /// `phase` is "connect", "TLS handshake", "request" or "response".
    case timedOut(phase: String)
    /// The TLS handshake failed; `reason` is OpenSSL's (for example "certificate has expired").
    case handshake(reason: String)
    /// The server's public key is not one of the pins the caller required.
    case pinMismatch(pin: String)
    /// The peer closed the connection before the exchange was complete.
    case connectionClosed
    /// A read or write on an established connection failed.
    case io(String)
    /// The peer sent something that is not valid HTTP.
    case protocolViolation(HTTPParseError)
    /// A development PKI operation failed.
    case pki(String)
    /// The server is shutting down.
    case shuttingDown

    public var description: String {
        switch self {
        case .file(let path, let problem): "\(path): \(problem)"
        case .tlsConfiguration(let text): "TLS configuration failed: \(text)"
        case .invalidEndpoint(let text): "'\(text)' is not an address: write host:port, for example 127.0.0.1:8443, localhost:8443 or [::1]:8443"
        case .addressResolution(let host, let reason): "cannot resolve host '\(host)': \(reason)"
        case .bind(let address, let reason): "cannot listen on \(address): \(reason); choose a free port or stop the process using it"
        case .connect(let address, let reason): "cannot connect to \(address): \(reason)"
        case .timedOut(let phase): "\(phase) timed out"
        case .handshake(let reason): "TLS handshake failed: \(reason)"
        case .pinMismatch(let pin): "the server's public key \(pin) is not among the pinned keys"
        case .connectionClosed: "the peer closed the connection"
        case .io(let text): "connection failed: \(text)"
        case .protocolViolation(let error): "invalid HTTP from peer: \(error.message)"
        case .pki(let text): "PKI: \(text)"
        case .shuttingDown: "the server is shutting down"
        }
    }
}

extension TransportError {
    /// The connection broke (closed or reset) rather than timing out or being refused.
    var isConnectionLoss: Bool {
        switch self {
        case .connectionClosed, .io: true
        default: false
        }
    }
}

/// OpenSSL's error queue as one line (oldest first), then cleared.
func openSSLErrors(_ fallback: String) -> String {
    var parts: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        // "error:0A000086:SSL routines::certificate verify failed" -> "certificate verify failed".
        let text = String(cString: buffer)
        let reason = text.split(separator: ":", omittingEmptySubsequences: false).last.map(String.init) ?? text
        parts.append(reason)
    }
    return parts.isEmpty ? fallback : parts.joined(separator: "; ")
}

