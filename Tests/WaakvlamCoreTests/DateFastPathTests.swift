import Foundation
import XCTest
@testable import WaakvlamCore

/// The cached zone offset and the byte-built date text give what the zone and the general
/// formatting give.
final class DateFastPathTests: XCTestCase {
    func testCachedOffsetsFollowTransitions() throws {
        let amsterdam = try XCTUnwrap(TimeZone(identifier: "Europe/Amsterdam"))
        let newYork = try XCTUnwrap(TimeZone(identifier: "America/New_York"))
        let utc = try XCTUnwrap(TimeZone(identifier: "UTC"))
        // Every 20 minutes over two days around each 2026 transition in Amsterdam, forwards,
        // then backwards, with other zones in between (the cache holds one zone at a time).
        let transitions: [TimeInterval] = [1_774_746_000, 1_792_890_000]  // 2026-03-29 01:00Z, 2026-10-25 01:00Z
        for transition in transitions {
            var instants = stride(from: transition - 86_400, to: transition + 86_400, by: 1_200).map { Date(timeIntervalSince1970: $0) }
            instants += instants.reversed()
            for (index, instant) in instants.enumerated() {
                let zone = [amsterdam, amsterdam, newYork, utc][index % 4]
                XCTAssertEqual(ZoneOffsets.shared.secondsFromGMT(for: instant, in: zone), zone.secondsFromGMT(for: instant), "\(zone.identifier) \(instant)")
                let expected = Calendar(identifier: .gregorian).dateComponents(in: zone, from: instant)
                let date = LocalDate(instant, in: zone)
                XCTAssertEqual([date.year, date.month, date.day], [expected.year, expected.month, expected.day])
            }
        }
    }

    func testDescriptionIsZeroPadded() throws {
        for (year, month, day) in [(2026, 11, 22), (1948, 6, 30), (999, 1, 1), (10, 12, 31), (9999, 12, 31), (1, 2, 3)] {
            let date = try XCTUnwrap(LocalDate(year: year, month: month, day: day))
            XCTAssertEqual(date.description, String(format: "%04d-%02d-%02d", year, month, day))
            XCTAssertEqual(LocalDate(date.description), date)
        }
        XCTAssertEqual(LocalDate(dayNumber: -800_000).description.hasPrefix("-"), true)
    }
}
