#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The IMF-fixdate for the Date header, formatted once per second.
enum HTTPDate {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var cachedSecond = 0
    nonisolated(unsafe) private static var cachedText = ""

    static func now() -> String {
        let second = time(nil)
        lock.lock()
        defer { lock.unlock() }
        if second != cachedSecond {
            var now = second
            var broken = tm()
            gmtime_r(&now, &broken)
            var buffer = [CChar](repeating: 0, count: 64)
            strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &broken)
            cachedText = String(cString: buffer)
            cachedSecond = second
        }
        return cachedText
    }
}
