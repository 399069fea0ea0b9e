import XCTest

final class TransportPlaceholderTests: XCTestCase {
    func testPlaceholderUntilModuleLands() {}
}
