import XCTest

final class RelayPlaceholderTests: XCTestCase {
    func testPlaceholderUntilModuleLands() {}
}
