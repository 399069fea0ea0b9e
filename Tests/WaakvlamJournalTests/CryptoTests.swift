import XCTest
import WaakvlamCrypto

final class CryptoTests: XCTestCase {
    func testSHA256KnownVector() {
        XCTAssertEqual(Hex.encode(SHA256.hash(Array("abc".utf8))),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testHMACKnownVector() {
        // RFC 4231 test case 2.
        let mac = HMACSHA256.authenticate(Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8))
        XCTAssertEqual(Hex.encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    func testAESGCMRoundTripAndTamper() throws {
        let key = SecureRandom.bytes(32)
        let sealed = try AESGCM.seal(Array("geheim".utf8), key: key, aad: [1, 2])
        XCTAssertEqual(try AESGCM.open(sealed, key: key, aad: [1, 2]), Array("geheim".utf8))
        var tampered = sealed
        tampered[14] ^= 1
        XCTAssertThrowsError(try AESGCM.open(tampered, key: key, aad: [1, 2]))
        XCTAssertThrowsError(try AESGCM.open(sealed, key: SecureRandom.bytes(32), aad: [1, 2]))
        XCTAssertEqual(try AESGCM.open(try AESGCM.seal([], key: key), key: key), [])
    }

    func testHexRoundTrip() {
        XCTAssertEqual(Hex.decode("00ff10"), [0, 255, 16])
        XCTAssertNil(Hex.decode("0g"))
        XCTAssertEqual(Hex.encode([0xde, 0xad]), "dead")
    }
}
