import Foundation

/// A value a log line may carry: an id, a code, a count. Never a payload value or a BSN
/// (the privacy rule of the product); only these types conform, so a payload dictionary
/// cannot be logged by accident.
public protocol LogValue {
    func appendJSON(to out: inout [UInt8])
}

extension String: LogValue {
    public func appendJSON(to out: inout [UInt8]) { JSONText.appendString(self, to: &out) }
}

extension Substring: LogValue {
    public func appendJSON(to out: inout [UInt8]) { JSONText.appendString(String(self), to: &out) }
}

extension Bool: LogValue {
    public func appendJSON(to out: inout [UInt8]) { out.append(contentsOf: (self ? "true" : "false").utf8) }
}

extension Double: LogValue {
    public func appendJSON(to out: inout [UInt8]) { JSONText.append(self, to: &out) }
}

extension Int: LogValue {
    public func appendJSON(to out: inout [UInt8]) { JSONText.appendInteger(self, to: &out) }
}
extension Int64: LogValue {}
extension Int32: LogValue {}
extension UInt64: LogValue {}
extension UInt32: LogValue {}
extension UInt16: LogValue {}
extension UInt8: LogValue {}

extension LogValue where Self: BinaryInteger {
    public func appendJSON(to out: inout [UInt8]) { out.append(contentsOf: String(self).utf8) }
}

/// The fields of a log line, in the order written: `["signal": id, "attempt": 2]`. Not
/// `KeyValuePairs`: reading its elements copies each value out of its box (a retain per
/// string), these are read where they are.
public struct LogFields: ExpressibleByDictionaryLiteral {
    private typealias Field = (String, any LogValue)
    private let elements: [Field]
    /// Where the value lies in a field's pair.
    private static let valueOffset = MemoryLayout<Field>.offset(of: \Field.1)!

    public init(dictionaryLiteral elements: (String, any LogValue)...) { self.elements = elements }

    /// Calls `body` with each key and value where they lie in the list, in order. (Taking a
    /// pair out of the list, even through a pointer to it, copies the pair: the key retained,
    /// the value copied out of its box.)
    fileprivate func forEach(_ body: (UnsafePointer<String>, UnsafePointer<any LogValue>) -> Void) {
        elements.withUnsafeBufferPointer { list in
            guard let base = list.baseAddress else { return }
            for index in list.indices {
                let field = UnsafeRawPointer(base + index)
                body(field.assumingMemoryBound(to: String.self), (field + Self.valueOffset).assumingMemoryBound(to: (any LogValue).self))
            }
        }
    }
}

/// One structured line per event, as JSON: `ts`, `level`, `event`, then the fields in the
/// order given. Lines go to standard error through a buffer: a warning or an error is
/// written at once (with everything before it); info and debug lines within about 20 ms,
/// by a flusher thread, so that a busy node does one write per batch instead of one per
/// line. What is still buffered when the process exits is written then (`atexit`).
public final class Log: @unchecked Sendable {
    public enum Level: String, Sendable, Comparable {
        case debug, info, warning, error

        private var rank: Int {
            switch self {
            case .debug: 0
            case .info: 1
            case .warning: 2
            case .error: 3
            }
        }

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rank < rhs.rank }
    }

    public typealias Fields = LogFields

    public static let shared = Log()

    /// How long an info line may wait in the buffer for others to join it.
    static let gatherInterval: useconds_t = 20_000
    /// Beyond this many buffered bytes (standard error is slow to take them) the logging
    /// thread writes itself, so that the buffer stays bounded.
    static let maximumBuffered = 4 << 20
    /// A thread's line buffer beyond this capacity is let go after its line.
    static let longLine = 16 << 10

    /// Guards `buffered`, `flusherStarted` and `sink`; the flusher waits on it.
    private let condition = NSCondition()
    /// Held while writing, so that batches reach standard error in order.
    private let writing = NSLock()
    private var buffered: [UInt8] = []
    /// What `flush` writes, under `writing` (the other buffer).
    private var writingBuffer: [UInt8] = []
    private var flusherStarted = false
    public var minimumLevel: Level = .info
    /// Where lines go instead of standard error, one call per line, unbuffered: tests capture
    /// lines here. nil (the default) is standard error.
    public var sink: ((String) -> Void)?

    public init() {}

    public func log(_ level: Level, _ event: String, _ fields: Fields = [:]) {
        guard level >= minimumLevel else { return }
        // Formatted outside the lock (a line takes about a microsecond; the threads that log
        // on every signal would otherwise queue for it), in this thread's own buffer, so that
        // a line allocates nothing. Lines of different threads may therefore reach the buffer
        // a few microseconds out of timestamp order.
        let line = LineBuffer.perThread.current
        line.bytes.removeAll(keepingCapacity: true)
        Self.appendLine(level, event, fields, to: &line.bytes)
        condition.lock()
        if let sink {
            defer { condition.unlock() }
            sink(String(decoding: line.bytes.dropLast(), as: UTF8.self))
            return
        }
        let wasEmpty = buffered.isEmpty
        buffered.append(contentsOf: line.bytes)
        // A rare long line (an error's description) does not keep its buffer for the thread's life.
        if line.bytes.capacity > Self.longLine { line.bytes = [] }
        let backedUp = buffered.count > Self.maximumBuffered
        if !flusherStarted { startFlusher() } else if wasEmpty { condition.signal() }
        condition.unlock()
        if level >= .warning || backedUp { flush() }
    }

    private static func appendLine(_ level: Level, _ event: String, _ fields: Fields, to line: inout [UInt8]) {
        line.append(contentsOf: #"{"ts":"#.utf8)
        JSONText.appendTimestamp(Date(), to: &line)
        line.append(contentsOf: #","level":""#.utf8)
        line.append(contentsOf: level.rawValue.utf8)
        line.append(contentsOf: #"","event":"#.utf8)
        JSONText.appendString(event, to: &line)
        fields.forEach { key, value in
            line.append(UInt8(ascii: ","))
            JSONText.appendString(key.pointee, to: &line)
            line.append(UInt8(ascii: ":"))
            value.pointee.appendJSON(to: &line)
        }
        line.append(contentsOf: "}\n".utf8)
    }

    public func info(_ event: String, _ fields: Fields = [:]) { log(.info, event, fields) }
    public func warning(_ event: String, _ fields: Fields = [:]) { log(.warning, event, fields) }
    public func error(_ event: String, _ fields: Fields = [:]) { log(.error, event, fields) }
    public func debug(_ event: String, _ fields: Fields = [:]) { log(.debug, event, fields) }

    /// Writes whatever is buffered now.
    public func flush() {
        writing.lock()
        defer { writing.unlock() }
        condition.lock()
        // The buffers take turns, keeping their capacity: lines go on into the other while
        // this one is written.
        swap(&writingBuffer, &buffered)
        condition.unlock()
        // A log line that cannot be written is dropped: there is nowhere left to report it.
        if !writingBuffer.isEmpty { writingBuffer.withUnsafeBytes { try? writeAll(STDERR_FILENO, $0) } }
        // A burst's buffer is not kept.
        if writingBuffer.capacity > Self.maximumBuffered { writingBuffer = [] } else { writingBuffer.removeAll(keepingCapacity: true) }
    }

    /// A thread's line buffer, kept for the thread's life.
    private final class LineBuffer {
        var bytes: [UInt8] = []

        init() { bytes.reserveCapacity(512) }

        static let perThread = PerThread { LineBuffer() }
    }

    /// RFC 3339 UTC with milliseconds.
    public static func timestamp(_ date: Date) -> String { JSONText.timestamp(date) }

    /// Called with the lock held.
    private func startFlusher() {
        flusherStarted = true
        do {
            try spawnDetachedThread(stackSize: 64 << 10) { [self] in flusherLoop() }
            if self === Log.shared { atexit { Log.shared.flush() } }
        } catch {
            // No thread: the next line tries again, and warnings and flush() still write.
            flusherStarted = false
        }
    }

    private func flusherLoop() {
        while true {
            condition.lock()
            while buffered.isEmpty { condition.wait() }
            condition.unlock()
            usleep(Self.gatherInterval)
            flush()
        }
    }
}
