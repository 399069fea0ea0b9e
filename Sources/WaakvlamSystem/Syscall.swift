#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error from a POSIX call: which call failed and its errno.
public struct SystemError: Error, CustomStringConvertible, Equatable, Sendable {
    public let call: String
    public let errno: Int32

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    /// True for "no space left" and "file too large": the disk or quota is full.
    public var isOutOfSpace: Bool { errno == ENOSPC || errno == EFBIG || errno == EDQUOT }

    public var description: String {
        "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Runs a POSIX call, retrying on EINTR, and turns a -1 result into a `SystemError`.
@discardableResult
@inline(__always)
public func syscall<T: FixedWidthInteger>(_ name: String, _ body: () -> T) throws -> T {
    while true {
        let result = body()
        if result == -1 {
            let code = errno
            if code == EINTR { continue }
            throw SystemError(call: name, errno: code)
        }
        return result
    }
}

/// Writes all of `bytes` to `fd`, looping over short writes.
public func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
    var offset = 0
    while offset < bytes.count {
        let n = try syscall("write") { write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
        offset += n
    }
}

/// Writes all of `bytes` to `fd` at file offset `position`, looping over short writes.
public func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at position: Int64) throws {
    var offset = 0
    while offset < bytes.count {
        let n = try syscall("pwrite") {
            pwrite(fd, bytes.baseAddress! + offset, bytes.count - offset, off_t(position) + off_t(offset))
        }
        offset += n
    }
}

/// Flushes file data (not necessarily metadata) to stable storage.
public func dataSync(_ fd: Int32) throws {
    #if os(Linux)
    try syscall("fdatasync") { fdatasync(fd) }
    #else
    try syscall("fsync") { fsync(fd) }
    #endif
}

/// Flushes a directory so that file creations and renames in it are durable.
public func syncDirectory(_ path: String) throws {
    let fd = try syscall("open(\(path))") { open(path, O_RDONLY | O_DIRECTORY) }
    defer { close(fd) }
    try syscall("fsync(\(path))") { fsync(fd) }
}
