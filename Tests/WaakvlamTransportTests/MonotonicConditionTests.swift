import Foundation
import XCTest
import WaakvlamSystem

/// WaakvlamSystem's condition whose timed waits run on the monotonic clock.
final class MonotonicConditionTests: XCTestCase {
    /// Unsignalled, a timed wait sleeps until its monotonic deadline: it neither returns at
    /// once (a deadline read on the wrong clock lies decades in the past) nor much later.
    func testATimedWaitSleepsUntilItsMonotonicDeadline() {
        let condition = MonotonicCondition()
        let start = monotonicNanoseconds()
        let deadline = start + 200_000_000
        var wakeUps = 0
        condition.lock()
        while monotonicNanoseconds() < deadline {
            condition.wait(untilMonotonic: deadline)
            wakeUps += 1
        }
        condition.unlock()
        let elapsed = monotonicNanoseconds() - start
        XCTAssertLessThan(wakeUps, 10, "the wait returned early again and again")
        XCTAssertLessThan(elapsed, 5_000_000_000)
    }

    /// A signal ends the wait before its deadline.
    func testASignalEndsATimedWait() {
        let condition = MonotonicCondition()
        let flag = Flag()
        let start = monotonicNanoseconds()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) {
            condition.lock()
            flag.value = true
            condition.signal()
            condition.unlock()
        }
        condition.lock()
        while !flag.value, monotonicNanoseconds() < start + 30_000_000_000 {
            condition.wait(untilMonotonic: start + 30_000_000_000)
        }
        condition.unlock()
        XCTAssertTrue(flag.value)
        XCTAssertLessThan(monotonicNanoseconds() - start, 10_000_000_000, "woken by the signal, not the deadline")
    }
}

/// Set and read under the condition's lock.
private final class Flag: @unchecked Sendable {
    var value = false
}
