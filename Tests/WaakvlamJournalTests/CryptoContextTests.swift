import COpenSSL
import Foundation
import XCTest
import WaakvlamCrypto
import WaakvlamJournal

/// The per-thread OpenSSL contexts behind SHA256, HMACSHA256 and AESGCM: reuse must never
/// carry state from one call to the next, nor between threads.
final class CryptoContextTests: XCTestCase {
    func testSealingIsTheSameOnAReusedContext() throws {
        let key = [UInt8](repeating: 7, count: 32), nonce = [UInt8](repeating: 9, count: 12)
        let first = try AESGCM.seal(Array("geheim".utf8), key: key, nonce: nonce, aad: [1])
        _ = try AESGCM.seal([UInt8](repeating: 1, count: 1000), key: SecureRandom.bytes(32), nonce: SecureRandom.bytes(12))
        XCTAssertEqual(try AESGCM.seal(Array("geheim".utf8), key: key, nonce: nonce, aad: [1]), first)
        XCTAssertEqual(Array(first.prefix(12)), nonce)
        XCTAssertEqual(first.count, 12 + 6 + 16)
    }

    func testOpeningAfterAFailedOpenStillWorks() throws {
        let key = SecureRandom.bytes(32)
        let sealed = try AESGCM.seal(Array("eerste".utf8), key: key, aad: [5])
        var tampered = sealed
        tampered[sealed.count - 1] ^= 1
        XCTAssertThrowsError(try AESGCM.open(tampered, key: key, aad: [5]))
        XCTAssertThrowsError(try AESGCM.open(sealed, key: key, aad: [6]))
        XCTAssertEqual(try AESGCM.open(sealed, key: key, aad: [5]), Array("eerste".utf8))
        // Without aad after a message with aad: nothing of the earlier message is left.
        let plain = try AESGCM.seal(Array("tweede".utf8), key: key)
        XCTAssertEqual(try AESGCM.open(plain, key: key), Array("tweede".utf8))
        XCTAssertThrowsError(try AESGCM.open(plain, key: key, aad: [5]))
    }

    /// SHA-256 and HMAC through the low-level functions and keyed midstates give what
    /// OpenSSL's one-shot EVP_Digest and HMAC() give, around every block boundary.
    func testHashesAndMACsMatchOpenSSLsOneShotFunctions() {
        var generator = SystemRandomNumberGenerator()
        let keys = [0, 1, 32, 63, 64, 65, 200].map { count in (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        let macs = keys.map { HMACSHA256(key: $0) }
        let context = SHA256Context()
        for count in Array(0...200) + [1_000, 4_097, 65_536] {
            let data = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            var expected = [UInt8](repeating: 0, count: 32)
            XCTAssertEqual(EVP_Digest(data, data.count, &expected, nil, EVP_sha256(), nil), 1)
            XCTAssertEqual(SHA256.hash(data), expected, "\(count) bytes")
            XCTAssertEqual(data.withUnsafeBytes { context.hash($0) }, expected, "\(count) bytes, own context")
            for (key, mac) in zip(keys, macs) {
                var length: UInt32 = 0
                XCTAssertNotNil(HMAC(EVP_sha256(), key, Int32(key.count), data, data.count, &expected, &length))
                XCTAssertEqual(mac.authenticate(data), expected, "\(count) bytes, key of \(key.count)")
            }
        }
    }

    /// Small draws come from the thread's pool: across refills they never repeat, and sizes
    /// above the pool's limit come straight from OpenSSL.
    func testRandomDrawsAcrossPoolRefillsDoNotRepeat() {
        var seen = Set<[UInt8]>()
        for round in 0..<2_000 {
            let draw = SecureRandom.bytes(16 + round % 40)
            XCTAssertTrue(seen.insert(Array(draw.prefix(16))).inserted, "round \(round)")
        }
        let large = SecureRandom.bytes(10_000)
        XCTAssertGreaterThan(Set(large).count, 200)
        XCTAssertEqual(SecureRandom.bytes(0), [])
    }

    func testEachThreadHasItsOwnContexts() {
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for round in 0..<200 {
                let key = SecureRandom.bytes(32)
                let message = Array("thread \(worker) round \(round)".utf8)
                do {
                    let sealed = try AESGCM.seal(message, key: key, aad: [UInt8(worker)])
                    if try AESGCM.open(sealed, key: key, aad: [UInt8(worker)]) != message { failures.add("open \(worker)/\(round)") }
                } catch {
                    failures.add("\(error) \(worker)/\(round)")
                }
                if Hex.encode(SHA256.hash(Array("abc".utf8))) != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
                    failures.add("sha \(worker)/\(round)")
                }
            }
        }
        XCTAssertEqual(failures.all, [])
    }

    func testInPlaceVariantsMatchTheArrayOnes() {
        let data = Array("what do ya want for nothing?".utf8)
        var digest = [UInt8](repeating: 0, count: 32)
        data.withUnsafeBytes { input in digest.withUnsafeMutableBytes { SHA256.hash(input, into: $0.baseAddress!) } }
        XCTAssertEqual(digest, SHA256.hash(data))
        let mac = HMACSHA256(key: Array("Jefe".utf8))
        data.withUnsafeBytes { input in digest.withUnsafeMutableBytes { mac.authenticate(input, into: $0.baseAddress!) } }
        XCTAssertEqual(Hex.encode(digest), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        XCTAssertEqual(Hex.encode(digest[30...]), "3843")
        XCTAssertEqual(Hex.encode(AnySequence([0x0a, 0xbc])), "0abc")
        XCTAssertEqual(Hex.encode([UInt8]()), "")
        var random = [UInt8](repeating: 0, count: 64)
        random.withUnsafeMutableBytes { SecureRandom.fill($0) }
        XCTAssertNotEqual(random, [UInt8](repeating: 0, count: 64))
    }

    func testPseudonymsAreTheKindAndTheHexMAC() throws {
        let secret = [UInt8](repeating: 3, count: 32)
        let pseudonymizer = try Pseudonymizer(secret: secret)
        let mac = HMACSHA256(key: secret)
        for (canonical, kind) in [("bsn:123456782", "bsn"), ("person:çelik|1980-01-01|1621AB", "person"),
                                  (":leeg", "subject"), ("geen dubbele punt", "subject"), ("", "subject")] {
            XCTAssertEqual(pseudonymizer.pseudonym(canonical), kind + ":" + Hex.encode(mac.authenticate(Array(canonical.utf8))), canonical)
        }
    }
}

private final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ failure: String) { lock.lock(); list.append(failure); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return list }
}
