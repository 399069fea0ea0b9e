#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes and removes files so that a crash (or power loss) leaves either the old or the new
/// state, never a torn file: write a temporary file in the same folder, flush it, rename it
/// over the target, flush the folder.
public enum DurableFile {
    /// Replaces (or creates) `path` with `bytes`, durably.
    public static func write(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let temporary = "\(folder(of: path))/.\(name(of: path)).\(getpid()).\(UInt32.random(in: 0 ... .max)).tmp"
        try writeNew(temporary, bytes, mode: mode)
        do {
            try syscall("rename(\(path))") { rename(temporary, path) }
        } catch {
            unlink(temporary)
            throw error
        }
        try syncDirectory(folder(of: path))
    }

    /// Creates `path`, which must not exist, with `bytes` and flushes it. The caller makes the
    /// name durable (by flushing the folder, or renaming the folder that holds it into place).
    public static func writeNew(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let fd = try syscall("open(\(path))") { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode) }
        do {
            try bytes.withUnsafeBytes { try writeAll(fd, $0) }
            try syscall("fsync(\(path))") { fsync(fd) }
            close(fd)
        } catch {
            close(fd)
            unlink(path)
            throw error
        }
    }

    /// Removes `path` durably; nothing happens when it does not exist.
    public static func remove(_ path: String) throws {
        if unlink(path) != 0 {
            guard errno != ENOENT else { return }
            throw SystemError(call: "unlink(\(path))", errno: errno)
        }
        try syncDirectory(folder(of: path))
    }

    /// Creates the folder `path` and every missing parent, each made durable in its parent.
    public static func makeFolder(_ path: String, mode: mode_t = 0o755) throws {
        var isFolder = stat()
        if stat(path, &isFolder) == 0 {
            guard isFolder.st_mode & S_IFMT == S_IFDIR else { throw SystemError(call: "mkdir(\(path))", errno: ENOTDIR) }
            return
        }
        let parent = folder(of: path)
        if parent != path { try makeFolder(parent, mode: mode) }
        if mkdir(path, mode) != 0, errno != EEXIST { throw SystemError(call: "mkdir(\(path))", errno: errno) }
        try syncDirectory(parent)
    }

    /// The folder part of a path ("." for a bare name, "/" for a name at the root).
    public static func folder(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func name(of path: String) -> String {
        path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
    }
}
