import Foundation
import XCTest
@testable import WaakvlamCore

/// The subject keys end up as pseudonyms in the journal, so their bytes must never change:
/// the byte-by-byte builders are compared with the earlier, interpolating ones (kept here as
/// the reference) over many inputs, valid and not.
final class SubjectKeyEncodingTests: XCTestCase {
    private let postcodes = ["1621AB", "1621 ab", "1621ab", " 1621 A B ", "0621AB", "162AB", "1621ABC", "16210AB", "1621A1",
                             "１621AB", "1621ÄB", "", "      ", "9999ZZ", "1000aa", "1621\tAB", "1621-AB", "162 1AB"]
    private let dates = ["1948-06-30", "2024-02-29", "2023-02-29", "1971-13-08", "1971-03-00", "1971-3-08", "19710308", "1971-03-081",
                         "0000-01-01", "9999-12-31", "1971/03/08", "", "１971-03-08", "1971-03-08 "]

    func testPostcodeAndDateParsingAsBefore() {
        for text in postcodes + (0..<500).map({ _ in Self.randomText(from: "0123456789aAbZz -", length: Int.random(in: 0...9)) }) {
            let postcode = Postcode(text)
            XCTAssertEqual(postcode.map { "\($0.digits)|\($0.letters)|\($0)" }, referencePostcode(text), text)
        }
        for text in dates + (0..<500).map({ _ in Self.randomText(from: "0123456789-", length: Int.random(in: 8...11)) }) {
            XCTAssertEqual(LocalDate(text).map { "\($0.year)-\($0.month)-\($0.day)" }, referenceDate(text), text)
        }
    }

    func testSubjectKeysAsBefore() {
        let surnames = ["Voorbeeld", "celik VAN", " De\tVRIES\r\n  jong ", "O'Brien-Smith", "dé vriës jong", "", "   ", "A", "Çelik",
                        "x\u{0B}y\u{0C}z", "van  der   Berg"]
        for surname in surnames {
            for date in dates.prefix(4) {
                for postcode in postcodes.prefix(6) {
                    XCTAssertEqual(SubjectKeys.person(surname: surname, birthDate: date, postcode: postcode),
                                   referencePerson(surname: surname, birthDate: date, postcode: postcode), "\(surname) \(date) \(postcode)")
                }
            }
        }
        let numbers = ["12", " 12 ", "012", "0", "-5", "+12", "12a", "", "\t7\t", "99999999999999999999999", "１2"]
        let additions: [String?] = [nil, "", "a", "A-1", "bis", "-", "ä", " 2 "]
        for number in numbers {
            for addition in additions {
                for postcode in postcodes.prefix(6) {
                    XCTAssertEqual(SubjectKeys.address(postcode: postcode, houseNumber: number, addition: addition),
                                   referenceAddress(postcode: postcode, houseNumber: number, addition: addition),
                                   "\(postcode) \(number) \(addition ?? "nil")")
                }
            }
        }
    }

    private static func randomText(from alphabet: String, length: Int) -> String {
        String((0..<length).map { _ in alphabet.randomElement()! })
    }

    // MARK: - The reference: the builders as they were before they wrote bytes directly.

    private func referencePostcode(_ text: String) -> String? {
        let bytes = text.utf8.filter { $0 != UInt8(ascii: " ") }
        guard bytes.count == 6, bytes[0] != UInt8(ascii: "0"),
              bytes[0..<4].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        let upper = bytes[4...].map { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") ? $0 - 32 : $0 }
        guard upper.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else { return nil }
        let digits = bytes[0..<4].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        let letters = String(decoding: upper, as: UTF8.self)
        return "\(digits)|\(letters)|\(digits)\(letters)"
    }

    private func referenceDate(_ text: String) -> String? {
        let utf8 = Array(text.utf8)
        guard utf8.count == 10, utf8[4] == UInt8(ascii: "-"), utf8[7] == UInt8(ascii: "-"),
              utf8.enumerated().allSatisfy({ $0.offset == 4 || $0.offset == 7 || ($0.element >= 48 && $0.element <= 57) }) else { return nil }
        func number(_ range: Range<Int>) -> Int { utf8[range].reduce(0) { $0 * 10 + Int($1 - 48) } }
        return LocalDate(year: number(0..<4), month: number(5..<7), day: number(8..<10)).map { "\($0.year)-\($0.month)-\($0.day)" }
    }

    private func referencePerson(surname: String, birthDate: String, postcode: String) -> String? {
        guard let date = LocalDate(birthDate), let postcode = Postcode(postcode) else { return nil }
        let folded: String
        if surname.utf8.allSatisfy({ $0 < 0x80 }) {
            var bytes: [UInt8] = []
            var space = false
            for byte in surname.utf8 {
                if byte == 0x20 || (0x09...0x0D).contains(byte) {
                    space = !bytes.isEmpty
                    continue
                }
                if space { bytes.append(0x20) }
                space = false
                bytes.append((0x41...0x5A).contains(byte) ? byte + 0x20 : byte)
            }
            folded = String(decoding: bytes, as: UTF8.self)
        } else {
            folded = surname.folding(options: [.caseInsensitive, .diacriticInsensitive], locale: Locale(identifier: "en_US_POSIX"))
                .split(whereSeparator: { $0.isWhitespace }).joined(separator: " ").lowercased()
        }
        guard !folded.isEmpty else { return nil }
        return "person:\(folded)|\(date)|\(postcode.digits)\(postcode.letters)"
    }

    private func referenceAddress(postcode: String, houseNumber: String, addition: String?) -> String? {
        let addition = addition ?? ""
        let trimmed: String, suffix: String
        if houseNumber.utf8.allSatisfy({ $0 < 0x80 }) && addition.utf8.allSatisfy({ $0 < 0x80 }) {
            let blank = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
            let bytes = Array(houseNumber.utf8)
            let start = bytes.firstIndex(where: { !blank($0) }) ?? bytes.endIndex
            let end = (bytes.lastIndex(where: { !blank($0) }) ?? start - 1) + 1
            trimmed = String(decoding: bytes[start..<max(start, end)], as: UTF8.self)
            suffix = String(decoding: addition.utf8.compactMap { byte -> UInt8? in
                switch byte {
                case 0x61...0x7A: byte - 0x20
                case 0x41...0x5A, 0x30...0x39: byte
                default: nil
                }
            }, as: UTF8.self)
        } else {
            trimmed = houseNumber.trimmingCharacters(in: .whitespaces)
            suffix = addition.uppercased().filter { $0.isLetter || $0.isNumber }
        }
        guard let postcode = Postcode(postcode), let number = Int(trimmed), number > 0 else { return nil }
        return "address:\(postcode.digits)\(postcode.letters)|\(number)|\(suffix)"
    }
}
