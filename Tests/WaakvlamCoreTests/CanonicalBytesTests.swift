import Foundation
import XCTest
@testable import WaakvlamCore

/// `Payload.canonicalBytes` is hashed and journaled: its bytes must never change. Pinned here
/// against the plain definition (members sorted by the UTF-8 bytes of their keys) on random
/// payloads whose keys share long starts, differ only in length, or are not ASCII.
final class CanonicalBytesTests: XCTestCase {
    /// The definition, written the simple way: a sorted copy of the members.
    private func reference(_ payload: [String: PayloadValue]) -> [UInt8] {
        let members = payload.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        var output: [UInt8] = [UInt8(ascii: "{")]
        for (index, member) in members.enumerated() {
            if index > 0 { output.append(UInt8(ascii: ",")) }
            output += Payload.canonicalBytes([member.key: member.value]).dropFirst().dropLast()
        }
        return output + [UInt8(ascii: "}")]
    }

    func testRandomPayloadsAgreeWithTheSortedDefinition() {
        var generator = SystemRandomNumberGenerator()
        let pieces = ["", "a", "A", "Huisnummer", "Huisnummertoevoeging", "Huisnumm", "Huisnummer2", "\u{0}", "\u{1}", "é", "Ç",
                      "z", "gezondheid", "gezondheidsobservatie", "12345678", "1234567", "123456789", "_", "~", "😀", " "]
        for _ in 0..<500 {
            var payload: [String: PayloadValue] = [:]
            for _ in 0..<Int.random(in: 0...24, using: &generator) {
                let key = (0..<Int.random(in: 1...3, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined()
                let value: PayloadValue = switch Int.random(in: 0...3, using: &generator) {
                case 0: .string(pieces.randomElement(using: &generator)! + "\"\n")
                case 1: .integer(Int.random(in: -1000...1000, using: &generator))
                case 2: .number(Double.random(in: -1e3...1e3, using: &generator))
                default: .boolean(Bool.random(using: &generator))
                }
                payload[key] = value
            }
            XCTAssertEqual(Payload.canonicalBytes(payload), reference(payload), "\(payload.keys.sorted())")
        }
    }

    /// A payload of 50,000 fields (a 1 MiB body allows about 90,000) is ordered as the
    /// definition says; the sort is not quadratic, or this would take minutes.
    func testAVeryLargePayloadAgreesWithTheSortedDefinition() {
        var payload: [String: PayloadValue] = [:]
        for i in 0..<50_000 { payload["k\((i &* 7_919) % 50_000)x"] = .integer(i) }
        XCTAssertEqual(Payload.canonicalBytes(payload), reference(payload))
    }
}
