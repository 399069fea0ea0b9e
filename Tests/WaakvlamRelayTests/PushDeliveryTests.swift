import Foundation
import XCTest
import WaakvlamCore
import WaakvlamJournal
@testable import WaakvlamRelay
@testable import WaakvlamTransport

/// Push delivery on its fast path: the first push of a new signal uses the message the
/// signal service built while journaling, and receipts are journaled in batches. What the
/// recipient gets must be byte for byte what a retry would build from the journal, every
/// receipt must end up durable, and no delivery may be pushed twice because the scheduler
/// read the index just before a receipt was released.
final class PushDeliveryTests: XCTestCase {
    func testFirstPushesAreWhatTheJournalWouldSendAndEveryReceiptIsJournaled() throws {
        let site = try Site()
        let received = ReceivedBodies()
        let recipient = try Self.pushRecipient(site) { request in
            received.enter()
            defer { received.leave() }
            // Long enough for pushes to overlap at the recipient.
            usleep(5_000)
            received.add(request.headers["waakvlam-signal-id"] ?? "", request.body)
        }
        defer { recipient.shutdown(gracePeriod: 1) }
        try site.setDelivery("maximumInFlight: 8")
        let threadsBefore = deliveryThreads()
        try site.startNode()
        let node = try XCTUnwrap(site.node)
        defer { node.shutdown(gracePeriod: 1) }

        let client = HTTPClient(tls: try site.clientContext("intermaris"))
        let ids = (0..<200).map { "push-\($0)" }
        XCTAssertEqual(Self.submit(ids, site: site, client: client), Array(repeating: 202, count: ids.count))

        let deadline = Date(timeIntervalSinceNow: 20)
        let index = node.journal.deliveryState()
        func allDelivered() -> Bool {
            ids.allSatisfy { id in
                if case .delivered = index.delivery(signalID: id, recipientID: "1hoorn")?.status { return true }
                return false
            }
        }
        while (received.count < ids.count || !allDelivered()) && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(allDelivered(), "every receipt is journaled")
        XCTAssertEqual(deliveryThreads() - threadsBefore, 1, "one thread pushes, whatever the load")
        XCTAssertGreaterThan(received.maximumConcurrent, 1, "pushes run concurrently")
        XCTAssertLessThanOrEqual(received.maximumConcurrent, 8, "never more pushes at once than maximumInFlight")
        usleep(200_000)
        XCTAssertEqual(Set(ids.map { received.count($0) }), [1], "each signal pushed once")
        for id in ids {
            let state = try XCTUnwrap(index.delivery(signalID: id, recipientID: "1hoorn"))
            let fromJournal = try XCTUnwrap(try Outbound.message(for: state, journal: node.journal, configuration: node.configuration))
            XCTAssertEqual(received.body(id).map { String(decoding: $0, as: UTF8.self) }, String(decoding: fromJournal.body, as: UTF8.self), id)
            let status = try client.send(HTTPRequest(method: "GET", target: "/v1/signals/\(id)"), to: site.endpoint)
            let recipients = try XCTUnwrap(json(status)["recipients"] as? [[String: Any]])
            XCTAssertEqual(recipients.first?["state"] as? String, "delivered")
        }
        let message = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(received.body(ids[0])))) as? [String: Any])
        let payload = try XCTUnwrap(message["payload"] as? [String: Any])
        XCTAssertEqual(NSDictionary(dictionary: payload),
                       NSDictionary(dictionary: ["Postcode": "1624KM", "Huisnummer": 12, "waarneming": "Post stapelt zich op.",
                                                 "gezondheidsobservatie": "Leek verward.", "urgentie": "hoog"]))
        XCTAssertEqual((message["sender"] as? [String: Any])?["id"] as? String, "intermaris")
    }

    /// A recipient with a backlog gets exactly `perRecipientLimit` pushes at once, and they
    /// keep to as many connections: a push client that kept fewer idle connections would open
    /// a new one, with a full handshake, for every push beyond them.
    func testPushesToOneRecipientKeepToTheirLimitAndTheirConnections() throws {
        XCTAssertEqual(DeliveryScheduler.pushClient(HTTPClientConfiguration(maximumIdleConnectionsPerEndpoint: 1))
                           .maximumIdleConnectionsPerEndpoint, DeliveryScheduler.perRecipientLimit)
        XCTAssertEqual(DeliveryScheduler.pushClient(HTTPClientConfiguration(maximumIdleConnectionsPerEndpoint: 100))
                           .maximumIdleConnectionsPerEndpoint, 100)
        let site = try Site()
        let received = ReceivedBodies()
        let connections = ConnectionIDs()
        // The first pushes are held until every signal was accepted: the rest queue behind them.
        // A turnstile: one signal lets every held push through, each passing it on.
        let allAccepted = DispatchSemaphore(value: 0)
        defer { allAccepted.signal() } // never leaves pushes held, even when the test fails early
        let recipient = try Self.pushRecipient(site) { request, peer in
            received.enter()
            defer { received.leave() }
            connections.add(peer.id)
            allAccepted.wait()
            allAccepted.signal()
            usleep(2_000)
            received.add(request.headers["waakvlam-signal-id"] ?? "", request.body)
        }
        defer { recipient.shutdown(gracePeriod: 1) }
        try site.startNode()
        let node = try XCTUnwrap(site.node)
        defer { node.shutdown(gracePeriod: 1) }

        let client = HTTPClient(tls: try site.clientContext("intermaris"))
        let ids = (0..<200).map { "limit-\($0)" }
        XCTAssertEqual(Self.submit(ids, site: site, client: client), Array(repeating: 202, count: ids.count))
        let limit = DeliveryScheduler.perRecipientLimit
        let filled = Date(timeIntervalSinceNow: 10)
        while received.inProgress < limit && Date() < filled { usleep(10_000) }
        usleep(100_000) // none beyond the limit comes either
        XCTAssertEqual(received.inProgress, limit, "pushes held at the recipient")
        allAccepted.signal()
        let deadline = Date(timeIntervalSinceNow: 30)
        while received.count < ids.count && Date() < deadline { usleep(20_000) }
        XCTAssertEqual(received.count, ids.count, "every signal pushed")
        XCTAssertEqual(received.maximumConcurrent, limit, "as many pushes at once as the per-recipient limit, no more")
        XCTAssertLessThanOrEqual(connections.distinct, limit, "no connection opened beyond the limit")
    }

    /// A graceful stop while the last push waits for its answer: the delivery loop ends only
    /// once that push's receipt is durable and told, so its count (and log line) is not lost
    /// with the loop.
    func testAStopWaitsForTheReceiptOfAPushAnsweredMeanwhile() throws {
        let site = try Site()
        let ids = (0..<10).map { "stop-\($0)" }
        let lastArrived = DispatchSemaphore(value: 0)
        let arrivals = ReceivedBodies()
        let recipient = try Self.pushRecipient(site) { request in
            arrivals.add(request.headers["waakvlam-signal-id"] ?? "", request.body)
            guard request.headers["waakvlam-signal-id"] == ids.last else { return }
            lastArrived.signal()
            // Answered only once the node is stopping.
            usleep(300_000)
        }
        defer { recipient.shutdown(gracePeriod: 1) }
        try site.setDelivery("maximumInFlight: 1")
        try site.startNode()
        let node = try XCTUnwrap(site.node)
        let client = HTTPClient(tls: try site.clientContext("intermaris"))
        for id in ids { XCTAssertEqual(Self.submit([id], site: site, client: client), [202]) }
        XCTAssertEqual(lastArrived.wait(timeout: .now() + 20), .success, "the last push reaches the recipient")
        node.shutdown(gracePeriod: 5)
        XCTAssertEqual(Set(ids.map { arrivals.count($0) }), [1], "each signal pushed once")
        XCTAssertEqual(node.metrics.counter("waakvlam_deliveries_total", ["via": "push"]), Double(ids.count),
                       "every receipt told before the stop returned, the last one included")
    }

    /// A recipient stand-in with 1.Hoorn's certificate that runs `handle` for each push and
    /// answers 200; 1.Hoorn's delivery in the site's configuration is switched to it.
    private static func pushRecipient(_ site: Site, handle: @escaping @Sendable (HTTPRequest) -> Void) throws -> HTTPServer {
        try pushRecipient(site) { request, _ in handle(request) }
    }

    /// The same, with the connection each push came on.
    private static func pushRecipient(_ site: Site, handle: @escaping @Sendable (HTTPRequest, HTTPServer.PeerConnection) -> Void)
        throws -> HTTPServer {
        let recipient = try HTTPServer(configuration: HTTPServer.Configuration(endpoint: Endpoint(host: "127.0.0.1", port: 0)),
                                       tls: TLSContext(role: .server, certificateChain: site.pki("1hoorn.crt"),
                                                       privateKey: site.pki("1hoorn.key"), trustedCAs: site.pki("ca.pem"))) { request, peer in
            handle(request, peer)
            return HTTPResponse(status: 200)
        }
        try recipient.start()
        let organisations = site.config + "/organisations.json"
        let text = try String(contentsOfFile: organisations, encoding: .utf8)
        let pushed = try NSRegularExpression(pattern: #"(id: "1hoorn",[^}]*?delivery: )\{ mode: "inbox" \}"#)
            .stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text),
                                      withTemplate: "$1{ mode: \"push\", endpoint: \"https://127.0.0.1:\(recipient.port)/in\" }")
        XCTAssertNotEqual(pushed, text)
        try pushed.write(toFile: organisations, atomically: true, encoding: .utf8)
        return recipient
    }

    /// Submits a zorgsignaal for 1.Hoorn under each id, concurrently; the statuses (0: no answer).
    private static func submit(_ ids: [String], site: Site, client: HTTPClient) -> [Int] {
        let statuses = Statuses()
        DispatchQueue.concurrentPerform(iterations: ids.count) { index in
            let body = #"{"id":"\#(ids[index])","type":"zorgsignaal","to":["1hoorn"],"payload":{"Postcode":"1624KM","Huisnummer":12,"#
                + #""waarneming":"Post stapelt zich op.","gezondheidsobservatie":"Leek verward.","urgentie":"hoog"}}"#
            let status = (try? client.send(HTTPRequest(method: "POST", target: "/v1/signals", body: Array(body.utf8)), to: site.endpoint).status) ?? 0
            statuses.add(status)
        }
        return statuses.all
    }
}

private final class ReceivedBodies: @unchecked Sendable {
    private let lock = NSLock()
    private var bodies: [String: [UInt8]] = [:]
    private var counts: [String: Int] = [:]
    private var concurrent = 0
    private var peak = 0

    func enter() {
        lock.withLock {
            concurrent += 1
            peak = max(peak, concurrent)
        }
    }

    func leave() { lock.withLock { concurrent -= 1 } }
    var inProgress: Int { lock.withLock { concurrent } }
    var maximumConcurrent: Int { lock.withLock { peak } }

    func add(_ id: String, _ body: [UInt8]) {
        lock.withLock {
            bodies[id] = body
            counts[id, default: 0] += 1
        }
    }

    func body(_ id: String) -> [UInt8]? { lock.withLock { bodies[id] } }
    func count(_ id: String) -> Int { lock.withLock { counts[id] ?? 0 } }
    var count: Int { lock.withLock { bodies.count } }
}

private final class Statuses: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int] = []

    func add(_ status: Int) { lock.withLock { values.append(status) } }
    var all: [Int] { lock.withLock { values } }
}

/// Threads of this process named as a node's delivery loop.
private func deliveryThreads() -> Int {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.filter { task in
        ((try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? "").hasPrefix("delivery")
    }.count
}

/// The distinct connections pushes came on.
private final class ConnectionIDs: @unchecked Sendable {
    private let lock = NSLock()
    private var ids = Set<UInt64>()

    func add(_ id: UInt64) { lock.withLock { _ = ids.insert(id) } }
    var distinct: Int { lock.withLock { ids.count } }
}
