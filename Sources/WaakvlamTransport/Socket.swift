#if canImport(Glibc)
import Glibc
#endif
import WaakvlamSystem

/// "host:port": an IPv4 or IPv6 literal or a host name, and a port.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses "127.0.0.1:8443", "localhost:8443" or "[::1]:8443".
    public init(parsing text: String) throws {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw TransportError.invalidEndpoint(text)
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else {
                throw TransportError.invalidEndpoint(text)
            }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard !hostPart.isEmpty, let port = UInt16(portPart) else { throw TransportError.invalidEndpoint(text) }
        self.init(host: String(hostPart), port: port)
    }

    public var description: String { hostNeedsBrackets ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// An IPv6 literal, written in brackets before the port (checked on the UTF-8 bytes:
    /// `String.contains` goes through Foundation, and requests ask this for their Host field).
    var hostNeedsBrackets: Bool { host.utf8.contains(UInt8(ascii: ":")) }

    /// True when `host` is an IPv4 or IPv6 literal rather than a name.
    public var hostIsIPAddress: Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}

/// Thin socket helpers: non-blocking, close-on-exec sockets and poll-based waiting.
enum Socket {
    /// OpenSSL writes to sockets with plain write(2), which raises SIGPIPE when the peer has
    /// gone; that must fail the write, not kill the process.
    static let ignoreSIGPIPE: Void = {
        signal(SIGPIPE, SIG_IGN)
    }()

    enum WaitResult { case ready, timedOut, interrupted }

    /// Waits until `fd` is ready for `events`, the monotonic `deadline` passes, or `interrupt`
    /// (an eventfd signalled at shutdown) becomes readable.
    static func wait(_ fd: Int32, for events: Int16, deadline: UInt64, interrupt: Int32? = nil) -> WaitResult {
        // On the stack: this runs before every read of every connection.
        var fds = (pollfd(fd: fd, events: events, revents: 0), pollfd(fd: interrupt ?? -1, events: Int16(POLLIN), revents: 0))
        let count: nfds_t = interrupt == nil ? 1 : 2
        while true {
            let now = monotonicNanoseconds()
            if now >= deadline { return .timedOut }
            let milliseconds = Int32(min((deadline - now + 999_999) / 1_000_000, UInt64(Int32.max)))
            let result = withUnsafeMutableBytes(of: &fds) { raw in
                poll(raw.baseAddress!.assumingMemoryBound(to: pollfd.self), count, milliseconds)
            }
            if result < 0 {
                if errno == EINTR { continue }
                return .ready // let the following I/O call report the error
            }
            if result == 0 { continue } // re-check the deadline
            if count > 1 && fds.1.revents != 0 { return .interrupted }
            return .ready
        }
    }

    /// Resolves `endpoint` to socket addresses (numeric hosts without a DNS query).
    static func resolve(_ endpoint: Endpoint, passive: Bool) throws -> [(family: Int32, address: [UInt8])] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        if endpoint.hostIsIPAddress { hints.ai_flags |= AI_NUMERICHOST }
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &result)
        guard status == 0, let first = result else {
            throw TransportError.addressResolution(host: endpoint.host, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(first) }
        var addresses: [(Int32, [UInt8])] = []
        var current: UnsafeMutablePointer<addrinfo>? = first
        while let info = current {
            let bytes = UnsafeRawBufferPointer(start: info.pointee.ai_addr, count: Int(info.pointee.ai_addrlen))
            addresses.append((info.pointee.ai_family, Array(bytes)))
            current = info.pointee.ai_next
        }
        return addresses
    }

    /// A non-blocking listening socket on `endpoint`; returns it and the bound port.
    static func listen(on endpoint: Endpoint, backlog: Int32 = 1024) throws -> (fd: Int32, port: UInt16) {
        var lastError = "no address"
        for (family, address) in try resolve(endpoint, passive: true) {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            let bound = address.withUnsafeBytes {
                bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
            }
            if bound != 0 || Glibc.listen(fd, backlog) != 0 {
                lastError = String(cString: strerror(errno))
                close(fd)
                continue
            }
            return (fd, localPort(fd))
        }
        throw TransportError.bind(address: endpoint.description, reason: lastError)
    }

    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    static func localPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) }
        }
        return port(of: storage)
    }

    static func port(of storage: sockaddr_storage) -> UInt16 {
        var copy = storage
        return withUnsafePointer(to: &copy) { pointer -> UInt16 in
            if storage.ss_family == sa_family_t(AF_INET6) {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }

    /// "ip:port" of a peer address, for logs.
    static func describe(_ storage: sockaddr_storage) -> String {
        var copy = storage
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        return withUnsafePointer(to: &copy) { pointer -> String in
            if storage.ss_family == sa_family_t(AF_INET6) {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    var ip = address.pointee.sin6_addr
                    inet_ntop(AF_INET6, &ip, &text, socklen_t(text.count))
                    return "[\(String(cString: text))]:\(UInt16(bigEndian: address.pointee.sin6_port))"
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                var ip = address.pointee.sin_addr
                inet_ntop(AF_INET, &ip, &text, socklen_t(text.count))
                return "\(String(cString: text)):\(UInt16(bigEndian: address.pointee.sin_port))"
            }
        }
    }

}

/// A one-shot signal that waiting threads can poll: once raised, its read end stays readable
/// (a pipe that is written once and never read).
final class ShutdownSignal {
    let readFD: Int32
    private let writeFD: Int32

    init() throws {
        var fds: [Int32] = [0, 0]
        try syscall("pipe") { pipe(&fds) }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        readFD = fds[0]
        writeFD = fds[1]
    }

    func raise() {
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)
    }

    deinit {
        close(readFD)
        close(writeFD)
    }
}
