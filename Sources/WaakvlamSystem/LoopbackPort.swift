#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A TCP port on 127.0.0.1 that is free at this moment (the kernel picks it), for tests and
/// benchmarks that start a server in another process and must tell it a port. Another
/// process may take the port before it is used.
public func freeLoopbackPort() throws -> UInt16 {
    let fd = try syscall("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = try withUnsafeMutablePointer(to: &address) { pointer in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            _ = try syscall("bind") { bind(fd, raw, length) }
            return try syscall("getsockname") { getsockname(fd, raw, &length) }
        }
    }
    return UInt16(bigEndian: address.sin_port)
}
