// swift-tools-version:6.0
// Waakvlam: a convenant-enforcing signal relay. No Swift package dependencies: Foundation,
// Dispatch, XCTest and the system OpenSSL only.
import PackageDescription

let package = Package(
    name: "Waakvlam",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "waakvlamd", targets: ["waakvlamd"]),
        .executable(name: "waakvlam", targets: ["waakvlam"]),
    ],
    targets: [
        // The system OpenSSL (libssl 3) plus a C shim for the macros Swift cannot import.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // epoll and eventfd, which Glibc's module map leaves out, and the CPU's CRC-32C.
        .systemLibrary(name: "CLinux"),
        // POSIX syscall wrappers (EINTR retry), files, clocks, the epoll poller and the
        // structured logger.
        .target(name: "WaakvlamSystem", dependencies: ["CLinux"]),
        // SHA-256, HMAC, AES-GCM and randomness over OpenSSL's EVP interface.
        .target(name: "WaakvlamCrypto", dependencies: ["COpenSSL", "WaakvlamSystem"]),
        // The pure domain: configuration model, validation, policy engine, diff. No I/O.
        .target(name: "WaakvlamCore"),
        // The append-only, hash-chained, group-committed delivery journal.
        .target(name: "WaakvlamJournal", dependencies: ["CLinux", "WaakvlamSystem", "WaakvlamCrypto"]),
        // Mutual-TLS HTTP/1.1 server and client, certificate identity, development PKI.
        .target(name: "WaakvlamTransport", dependencies: ["COpenSSL", "WaakvlamSystem", "WaakvlamCrypto"]),
        // The node: HTTP API, policy enforcement, journaling, delivery, admin listener.
        .target(
            name: "WaakvlamRelay",
            dependencies: ["WaakvlamCore", "WaakvlamJournal", "WaakvlamTransport", "WaakvlamSystem", "WaakvlamCrypto"]
        ),
        .executableTarget(name: "waakvlamd", dependencies: ["WaakvlamRelay"]),
        .executableTarget(
            name: "waakvlam",
            dependencies: ["WaakvlamRelay", "WaakvlamCore", "WaakvlamJournal", "WaakvlamTransport", "WaakvlamSystem"]
        ),
        .executableTarget(
            name: "waakvlam-bench",
            dependencies: ["WaakvlamRelay", "WaakvlamCore", "WaakvlamJournal", "WaakvlamTransport", "WaakvlamSystem", "WaakvlamCrypto"],
            path: "Benchmarks/waakvlam-bench"
        ),
        .testTarget(name: "WaakvlamCoreTests", dependencies: ["WaakvlamCore"]),
        .testTarget(name: "WaakvlamJournalTests", dependencies: ["WaakvlamJournal", "WaakvlamSystem", "WaakvlamCrypto"]),
        .testTarget(name: "WaakvlamTransportTests", dependencies: ["WaakvlamTransport", "WaakvlamSystem", "WaakvlamCrypto"]),
        .testTarget(name: "WaakvlamRelayTests", dependencies: ["WaakvlamRelay", "WaakvlamCore", "WaakvlamJournal", "WaakvlamTransport", "WaakvlamSystem"]),
    ],
    swiftLanguageModes: [.v5]
)
