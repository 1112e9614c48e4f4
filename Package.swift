// swift-tools-version: 6.2
import PackageDescription

/// Compiler settings shared by every Heliograph target.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Heliograph",
    platforms: [.macOS(.v15), .iOS(.v18)],
    products: [
        .executable(name: "heliograph", targets: ["heliograph"]),
        .executable(name: "helio", targets: ["helio"]),
        .executable(name: "heliograph-load", targets: ["heliograph-load"]),
        .library(name: "HeliographKit", targets: ["HeliographKit"]),
        .library(name: "HeliographCore", targets: ["HeliographCore"]),
        .library(name: "HeliographCrypto", targets: ["HeliographCrypto"]),
        .library(name: "HeliographProtocol", targets: ["HeliographProtocol"]),
        .library(name: "HeliographStore", targets: ["HeliographStore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket", from: "1.6.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
        // TLS for the client SDK's HTTP transfers (media uploads and downloads) to https servers.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // Property-based tests of the wire codec and of the routes' answers to random input.
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // Identifiers, entities and domain errors. Foundation only: reused by apps.
        .target(name: "HeliographCore", swiftSettings: strictSettings),
        // Key material and signatures. No I/O, no server code.
        .target(
            name: "HeliographCrypto",
            dependencies: [
                "HeliographCore",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        // libjpeg and libpng behind a small C interface that turns their errors into statuses.
        .target(
            name: "CMediaCodecs",
            linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]
        ),
        // Checks public media against its declared type; decodes images and makes thumbnails.
        .target(name: "HeliographMedia", dependencies: ["HeliographCore", "CMediaCodecs"], swiftSettings: strictSettings),
        // Versioned wire types and the frame codec.
        .target(name: "HeliographProtocol", dependencies: ["HeliographCore"], swiftSettings: strictSettings),
        // Store protocols and the embedded SQLite backend.
        .target(
            name: "HeliographStore",
            dependencies: [
                "HeliographCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                // SHA-256 that names and verifies blobs.
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        // The same store protocols on PostgreSQL, for several server nodes.
        .target(
            name: "HeliographStorePostgres",
            dependencies: [
                "HeliographCore", "HeliographStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The Hummingbird application: controllers, services, WebSocket gateway, delivery.
        .target(
            name: "HeliographServer",
            dependencies: [
                "HeliographCore", "HeliographCrypto", "HeliographProtocol", "HeliographStore",
                // Public uploads are checked against their declared media type and thumbnailed.
                "HeliographMedia",
                // SHA-256 of a send's content, kept with its idempotency record.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                // The HTTP parts that the handler answering refused WebSocket handshakes reads.
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOCore", package: "swift-nio"),
                // The HTTP/1 parser's errors and parts, for answering malformed requests.
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Client SDK: connection, sync, local profile. No server code.
        .target(
            name: "HeliographKit",
            dependencies: [
                "HeliographCore", "HeliographCrypto", "HeliographProtocol",
                .product(name: "WSClient", package: "swift-websocket"),
                // scrypt, for sealing the local key store with a passphrase.
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                // The HTTP/1.1 client of media uploads and downloads, with TLS for https.
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "heliograph",
            dependencies: [
                "HeliographCore", "HeliographCrypto", "HeliographServer", "HeliographStore", "HeliographStorePostgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "helio",
            dependencies: [
                "HeliographKit", "HeliographCore", "HeliographCrypto", "HeliographProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        // Load generator: drives a running server over real WebSockets.
        .executableTarget(
            name: "heliograph-load",
            dependencies: [
                "HeliographKit", "HeliographCore", "HeliographCrypto", "HeliographProtocol",
                // The thumbnail workload runs the server's public image check.
                "HeliographMedia",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                // XMPP over WebSocket, for the side-by-side run against ejabberd.
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                // The lean receiving sockets of the chat workloads: a bootstrap that binds a
                // chosen loopback source address.
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "HeliographCoreTests",
            dependencies: [
                "HeliographCore", "HeliographCrypto", "HeliographProtocol",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strictSettings
        ),
        // Known-answer vectors for the primitives, and the session protocols built on them.
        .testTarget(
            name: "HeliographCryptoTests",
            dependencies: [
                "HeliographCore", "HeliographCrypto",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "HeliographStoreTests",
            dependencies: [
                "HeliographCore", "HeliographStore", "HeliographStorePostgres",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "HeliographServerTests",
            dependencies: [
                "HeliographServer", "HeliographKit", "HeliographStore", "HeliographCrypto", "HeliographProtocol",
                // Media tests run the server on PostgreSQL too, and make real JPEG and PNG files.
                "HeliographStorePostgres", "HeliographMedia",
                // Reads a server's database file directly, as someone holding a copy of it would.
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                // A bare socket client for the protocol tests, which read every frame's status.
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strictSettings
        ),
        // Real JPEG and PNG files made in the tests, cut, corrupted and mislabelled.
        .testTarget(
            name: "HeliographMediaTests",
            dependencies: ["HeliographMedia", "HeliographCore", "CMediaCodecs"],
            swiftSettings: strictSettings
        ),
        // Live tests start the real executables, so they depend on them to get them built.
        .testTarget(
            name: "HeliographLiveTests",
            dependencies: [
                "HeliographKit", "HeliographCore", "HeliographProtocol", "HeliographStorePostgres", "heliograph", "helio",
                .product(name: "Logging", package: "swift-log"),
                // SHA-256 of the large files the media tests make.
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
