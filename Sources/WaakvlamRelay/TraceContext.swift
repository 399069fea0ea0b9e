import Foundation
import WaakvlamCrypto
import WaakvlamSystem

/// A W3C Trace Context `traceparent` (version 00): carried across organisations so that a
/// signal's processing can be followed in every party's Logboek Dataverwerkingen.
public struct TraceContext: Sendable, Equatable {
    public let traceID: String
    /// The span of this node's processing of the signal.
    public let spanID: String
    public let flags: String

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; nil when malformed or all-zero ids.
    public init?(traceparent: String) {
        let parts = traceparent.trimmingCharacters(in: .whitespaces).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "00",
              parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
              parts.allSatisfy({ $0.allSatisfy(\.isHexDigit) && $0 == $0.lowercased() }),
              parts[1] != Substring(String(repeating: "0", count: 32)),
              parts[2] != Substring(String(repeating: "0", count: 16)) else { return nil }
        traceID = String(parts[1])
        spanID = String(parts[2])
        flags = String(parts[3])
    }

    private init(traceID: String, spanID: String, flags: String) {
        self.traceID = traceID
        self.spanID = spanID
        self.flags = flags
    }

    /// A new trace, for a sender that sent none.
    public static func random() -> TraceContext {
        // Both ids from one draw, on the stack.
        withUnsafeTemporaryAllocation(byteCount: 24, alignment: 8) { bytes in
            SecureRandom.fill(bytes)
            return TraceContext(traceID: Hex.encode(UnsafeRawBufferPointer(rebasing: bytes[..<16])),
                                spanID: Hex.encode(UnsafeRawBufferPointer(rebasing: bytes[16...])), flags: "01")
        }
    }

    /// This node's own span within the same trace (the sender's span becomes the parent).
    public func child() -> TraceContext {
        withUnsafeTemporaryAllocation(byteCount: 8, alignment: 8) { bytes in
            SecureRandom.fill(bytes)
            return TraceContext(traceID: traceID, spanID: Hex.encode(UnsafeRawBufferPointer(bytes)), flags: flags)
        }
    }

    public var traceparent: String { Self.traceparent(traceID: traceID, spanID: spanID, flags: flags) }

    /// The version this node writes.
    private static let version = "00"

    /// `00-<trace id>-<span id>-<flags>`, built in one allocation (interpolation takes two or
    /// three): every answer and every push carries one.
    static func traceparent(traceID: String, spanID: String, flags: String = "01") -> String {
        var text = version + "-"
        text.reserveCapacity(3 + traceID.utf8.count + 1 + spanID.utf8.count + 1 + flags.utf8.count)
        text += traceID
        text += "-"
        text += spanID
        text += "-"
        text += flags
        return text
    }

    /// `traceparent(traceID:spanID:flags:)` written straight into `out` (a push's header and
    /// message), with no String in between.
    static func appendTraceparent(traceID: String, spanID: String, flags: String = "01", to out: inout [UInt8]) {
        JSONText.appendUTF8(version, to: &out)
        out.append(UInt8(ascii: "-"))
        JSONText.appendUTF8(traceID, to: &out)
        out.append(UInt8(ascii: "-"))
        JSONText.appendUTF8(spanID, to: &out)
        out.append(UInt8(ascii: "-"))
        JSONText.appendUTF8(flags, to: &out)
    }
}
