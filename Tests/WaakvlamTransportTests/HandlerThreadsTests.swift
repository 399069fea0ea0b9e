import Foundation
import XCTest
@testable import WaakvlamTransport

final class HandlerThreadsTests: XCTestCase {
    func testAThreadIsReusedForTheNextJob() throws {
        let threads = HandlerThreads(stackSize: 256 << 10, maximumParked: 4, parkingTime: 5)
        defer { threads.stop() }
        let lock = NSLock()
        var seen = Set<UInt>()
        for _ in 0..<20 {
            let done = DispatchSemaphore(value: 0)
            try threads.run {
                lock.lock()
                seen.insert(UInt(pthread_self()))
                lock.unlock()
                done.signal()
            }
            XCTAssertEqual(done.wait(timeout: .now() + 5), .success)
            usleep(2_000) // let the thread park
        }
        XCTAssertLessThanOrEqual(seen.count, 2, "sequential jobs run on a parked thread, not a new one each")
    }

    func testConcurrentJobsEachGetAThread() throws {
        let threads = HandlerThreads(stackSize: 256 << 10)
        defer { threads.stop() }
        let started = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        for _ in 0..<10 {
            try threads.run {
                started.signal()
                release.wait()
            }
        }
        // All ten run at once: a blocked job never holds up another.
        for _ in 0..<10 { XCTAssertEqual(started.wait(timeout: .now() + 5), .success) }
        for _ in 0..<10 { release.signal() }
    }
}
