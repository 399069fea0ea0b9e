import XCTest
@testable import WaakvlamRelay

/// Counters incremented through a family (found once, as the hot path does) read and render
/// exactly as the same counts incremented by name.
final class MetricsTests: XCTestCase {
    func testFamiliesRenderAsCountersByName() {
        let byName = Metrics(), byFamily = Metrics()
        for metrics in [byName, byFamily] {
            metrics.describe("waakvlam_signals_allowed_total", type: "counter", "Allowed, by type.")
            metrics.describe("waakvlam_deliveries_total", type: "counter", "Deliveries.")
            metrics.increment("waakvlam_journal_failures_total")
            metrics.set("waakvlam_backlog", ["recipient": "gemeente-hoorn"], to: 3)
        }
        let allowed = byFamily.counters("waakvlam_signals_allowed_total", by: "type")
        XCTAssertTrue(allowed === byFamily.counters("waakvlam_signals_allowed_total", by: "type"), "one family per name and label")
        let deliveries = byFamily.counters("waakvlam_deliveries_total", by: "via")
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            let type = ["zorgsignaal", "overlast", "betalingsachterstand", "a \"quoted\"\ntype"].randomElement(using: &rng)!
            let amount = Double(Int.random(in: 1...3, using: &rng))
            byName.increment("waakvlam_signals_allowed_total", ["type": type], by: amount)
            allowed.increment(type, by: amount)
            let via = Bool.random(using: &rng) ? "push" : "inbox"
            byName.increment("waakvlam_deliveries_total", ["via": via])
            // Both ways into the same series of one node: they add up.
            if via == "inbox" { byFamily.increment("waakvlam_deliveries_total", ["via": via]) } else { deliveries.increment(via) }
        }
        XCTAssertEqual(byFamily.render(), byName.render())
        XCTAssertTrue(byFamily.render().contains("waakvlam_deliveries_total{via=\"push\"} "), byFamily.render())
        for labels in [["type": "overlast"], ["type": "zorgsignaal"], ["type": "none"], ["via": "overlast"]] {
            XCTAssertEqual(byFamily.counter("waakvlam_signals_allowed_total", labels), byName.counter("waakvlam_signals_allowed_total", labels))
        }
        XCTAssertEqual(byFamily.counter("waakvlam_deliveries_total", ["via": "inbox"]), byName.counter("waakvlam_deliveries_total", ["via": "inbox"]))
        XCTAssertEqual(byFamily.counter("waakvlam_deliveries_total", ["via": "push"]), byName.counter("waakvlam_deliveries_total", ["via": "push"]))
    }
}
