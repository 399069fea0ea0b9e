#if canImport(Glibc)
import Glibc
#endif
import Foundation
import WaakvlamSystem

/// A mutual-TLS client connection as a state machine over a non-blocking socket: connect,
/// handshake, then one request and its response at a time. It never waits itself: `advance`
/// does what the socket allows and says what it waits for. `HTTPClientConnection` drives it by
/// polling the socket; `HTTPClientLoop` drives many from one epoll thread. Not thread-safe.
final class ClientChannel {
    enum Progress: Equatable {
        /// The socket must become readable (or writable) before `advance` can go on.
        case wantRead
        case wantWrite
        /// Connected, handshake done, server certificate verified: ready for `begin`.
        case established
        case response(HTTPResponse)
    }

    private enum State {
        /// TCP connect in progress to `addresses[0]`; the rest are tried after it.
        case connecting(addresses: ArraySlice<(family: Int32, address: [UInt8])>)
        case handshaking
        case idle
        case sending(bytes: [UInt8], offset: Int)
        case receiving
        case closed
    }

    let endpoint: Endpoint
    /// The socket; it changes while connecting when an address fails and the next is tried.
    private(set) var fd: Int32 = -1
    /// When the current phase times out (monotonic ns); for an idle channel, when it expires.
    private(set) var deadline: UInt64
    /// The server's verified certificate, once established.
    private(set) var serverCertificate: PeerCertificate?
    /// Whether any byte of a response arrived for the current request (a request that failed
    /// before that on a reused connection can safely be sent again on a new one).
    private(set) var receivedResponseBytes = false
    /// False once the server asked to close, a response was delimited by the close, or
    /// anything failed.
    private(set) var isReusable = false

    private let tls: TLSContext
    private let configuration: HTTPClientConfiguration
    private var state: State
    private var connection: TLSConnection?
    private var parser: HTTPResponseParser
    private var requestKeepAlive = true
    private let buffer: UnsafeMutableRawBufferPointer

    /// Starts connecting to `addresses` (from `Socket.resolve`), without waiting.
    init(to endpoint: Endpoint, addresses: [(family: Int32, address: [UInt8])], tls: TLSContext,
         configuration: HTTPClientConfiguration) throws {
        precondition(tls.role == .client, "a client connection needs a client TLS context")
        Socket.ignoreSIGPIPE
        self.endpoint = endpoint
        self.tls = tls
        self.configuration = configuration
        self.parser = HTTPResponseParser(limits: configuration.responseLimits)
        self.deadline = monotonicNanoseconds() + nanoseconds(configuration.connectTimeout)
        self.state = .closed
        // Allocated first: once every property is set, `deinit` frees it, also when the
        // connect below throws.
        self.buffer = .allocate(byteCount: 16 << 10, alignment: 16)
        state = .connecting(addresses: try startConnecting(ArraySlice(addresses),
                                                           lastError: .connect(address: endpoint.description, reason: "no address")))
    }

    deinit {
        close()
        buffer.deallocate()
    }

    /// What the current phase is called in a timeout error.
    var phase: String {
        switch state {
        case .connecting: "connect"
        case .handshaking: "TLS handshake"
        case .sending, .receiving: "response"
        case .idle, .closed: "idle"
        }
    }

    /// Counts the sockets this channel opened: while connecting, a failed address's socket is
    /// replaced by one to the next address, which can get the same descriptor number, so an
    /// event loop must register it again.
    private(set) var socketGeneration = 0

    var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    /// Starts `request` on an established, reusable channel.
    func begin(_ request: SerializedRequest) {
        precondition(isIdle && isReusable, "begin on a channel that is not ready")
        isReusable = false
        receivedResponseBytes = false
        requestKeepAlive = request.keepAlive
        parser.requestMethod = request.method
        deadline = monotonicNanoseconds() + nanoseconds(configuration.responseTimeout)
        state = .sending(bytes: request.bytes, offset: 0)
    }

    /// Does what the socket allows now. Throws the transport error that ends the channel
    /// (it is closed then).
    func advance() throws -> Progress {
        do {
            return try step()
        } catch {
            close()
            throw error as? TransportError ?? .io("\(error)")
        }
    }

    /// True when an idle channel is still usable: not expired, and nothing (such as the
    /// server's close) arrived while it was idle. `askingTheSocket: false` leaves out the
    /// `poll` that looks for what the kernel holds, for a caller that watches idle sockets
    /// itself and can send the request again when the server closed meanwhile.
    func isFreshForReuse(now: UInt64, askingTheSocket: Bool = true) -> Bool {
        guard isIdle, isReusable, now < deadline, let connection else { return false }
        return askingTheSocket ? !connection.isReadableWhileIdle : !connection.hasPendingBytes
    }

    /// Sends close_notify and closes the socket.
    func close() {
        isReusable = false
        state = .closed
        if let connection {
            connection.close()
        } else if fd >= 0 {
            Glibc.close(fd)
        }
        connection = nil
        fd = -1
    }

    private func step() throws -> Progress {
        while true {
            switch state {
            case .connecting(let addresses):
                var failure: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
                if failure == EINPROGRESS || failure == EALREADY { return .wantWrite }
                if failure != 0 {
                    let error = TransportError.connect(address: endpoint.description, reason: String(cString: strerror(failure)))
                    Glibc.close(fd)
                    fd = -1
                    state = .connecting(addresses: try startConnecting(addresses.dropFirst(), lastError: error))
                    continue
                }
                if !isConnected(fd) { return .wantWrite }
                Socket.setNoDelay(fd)
                let connection = try TLSConnection(context: tls, fd: fd)
                self.connection = connection
                try connection.expectServer(endpoint)
                deadline = monotonicNanoseconds() + nanoseconds(configuration.handshakeTimeout)
                state = .handshaking

            case .handshaking:
                let step: TLSConnection.Step
                do {
                    step = try connection!.handshakeStep()
                } catch TransportError.connectionClosed {
                    throw TransportError.handshake(reason: "the server closed the connection (it may be at its connection limit)")
                }
                switch step {
                case .wantRead: return .wantRead
                case .wantWrite: return .wantWrite
                case .done: break
                }
                guard let certificate = connection!.peerCertificate() else {
                    throw TransportError.handshake(reason: "the server sent no certificate")
                }
                serverCertificate = certificate
                isReusable = true
                becomeIdle()
                return .established

            case .sending(let bytes, let offset):
                let step = try bytes.withUnsafeBytes { raw in
                    try connection!.writeStep(UnsafeRawBufferPointer(rebasing: raw[offset...]), phase: "request")
                }
                switch step {
                case .wantRead: return .wantRead
                case .wantWrite: return .wantWrite
                case .done(let count) where offset + count < bytes.count:
                    state = .sending(bytes: bytes, offset: offset + count)
                case .done:
                    state = .receiving
                    // The answer cannot be there yet unless OpenSSL already holds bytes: wait for
                    // the socket instead of a read that would only say EAGAIN.
                    if !connection!.hasPendingBytes && !parser.hasUnconsumedBytes { return .wantRead }
                }

            case .receiving:
                switch parser.next() {
                case .response(let response, let keepAlive):
                    isReusable = keepAlive && requestKeepAlive && !parser.hasUnconsumedBytes
                    if isReusable { becomeIdle() } else { close() }
                    return .response(response)
                case .error(let error):
                    throw TransportError.protocolViolation(error)
                case .needMoreData:
                    switch try connection!.readStep(into: buffer, phase: "response") {
                    case .wantRead: return .wantRead
                    case .wantWrite: return .wantWrite
                    case .done(0):
                        switch parser.finishAtEndOfStream() {
                        case .response(let response, _):
                            close()
                            return .response(response)
                        case .error(let error): throw TransportError.protocolViolation(error)
                        case .needMoreData: throw TransportError.connectionClosed
                        }
                    case .done(let count):
                        receivedResponseBytes = true
                        parser.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                    }
                }

            case .idle:
                return .established

            case .closed:
                throw TransportError.connectionClosed
            }
        }
    }

    private func becomeIdle() {
        state = .idle
        deadline = monotonicNanoseconds() + nanoseconds(configuration.idleTimeout)
    }

    /// Opens a non-blocking socket to the first address that accepts the start of a connect;
    /// returns the addresses still to try after it. Throws `lastError` when none is left.
    private func startConnecting(_ addresses: ArraySlice<(family: Int32, address: [UInt8])>,
                                 lastError: TransportError) throws -> ArraySlice<(family: Int32, address: [UInt8])> {
        var remaining = addresses
        var error = lastError
        while let (family, address) = remaining.first {
            let socketFD = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard socketFD >= 0 else {
                error = .connect(address: endpoint.description, reason: String(cString: strerror(errno)))
                remaining = remaining.dropFirst()
                continue
            }
            let started = address.withUnsafeBytes {
                Glibc.connect(socketFD, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
            }
            if started == 0 || errno == EINPROGRESS || errno == EINTR {
                fd = socketFD
                socketGeneration += 1
                return remaining
            }
            error = .connect(address: endpoint.description, reason: String(cString: strerror(errno)))
            Glibc.close(socketFD)
            remaining = remaining.dropFirst()
        }
        throw error
    }

    /// Whether a socket whose connect was started has completed it.
    private func isConnected(_ fd: Int32) -> Bool {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) == 0 }
        }
    }
}
