#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The Date header line ("Date: <IMF-fixdate>\r\n"), formatted once per second.
enum HTTPDate {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var cachedSecond = 0
    nonisolated(unsafe) private static var cachedLine: [UInt8] = []

    static func line() -> [UInt8] {
        let second = time(nil)
        lock.lock()
        defer { lock.unlock() }
        if second != cachedSecond {
            var now = second
            var broken = tm()
            gmtime_r(&now, &broken)
            var buffer = [CChar](repeating: 0, count: 64)
            strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &broken)
            var line: [UInt8] = []
            appendField("date".utf8, String(cString: buffer).utf8, to: &line)
            cachedLine = line
            cachedSecond = second
        }
        return cachedLine
    }
}
