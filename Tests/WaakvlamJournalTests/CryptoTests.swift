import XCTest
import WaakvlamCrypto

final class CryptoTests: XCTestCase {
    func testSHA256KnownVector() {
        XCTAssertEqual(Hex.encode(SHA256.hash(Array("abc".utf8))),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testHMACKnownVector() {
        // RFC 4231 test case 2.
        let mac = HMACSHA256(key: Array("Jefe".utf8)).authenticate(Array("what do ya want for nothing?".utf8))
        XCTAssertEqual(Hex.encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // RFC 4231 test case 6: a key longer than the block is hashed first.
        let long = HMACSHA256(key: [UInt8](repeating: 0xaa, count: 131))
            .authenticate(Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8))
        XCTAssertEqual(Hex.encode(long), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        // Test case 1: a 20-byte key.
        let short = HMACSHA256(key: [UInt8](repeating: 0x0b, count: 20))
        XCTAssertEqual(Hex.encode(short.authenticate(Array("Hi There".utf8))), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        // The same key again, and data shorter than a digest (the buffer is sized for both).
        XCTAssertEqual(Hex.encode(short.authenticate(Array("Hi There".utf8))), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        XCTAssertEqual(Hex.encode(HMACSHA256(key: Array("key".utf8)).authenticate([UInt8]())),
                       "5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0")
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
