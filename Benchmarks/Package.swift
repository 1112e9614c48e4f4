// swift-tools-version: 6.1
// Micro-benchmarks of Heliograph's hot paths, with allocation counts (ordo-one/benchmark).
// Run from this directory: swift package benchmark
import Foundation
import PackageDescription

/// SwiftPM names a path dependency after its directory, which differs between checkouts.
let heliograph = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent.lowercased()

let package = Package(
    name: "HeliographBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        .executableTarget(
            name: "HeliographBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "HeliographCore", package: heliograph),
                .product(name: "HeliographCrypto", package: heliograph),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HeliographProtocol", package: heliograph),
                .product(name: "HeliographStore", package: heliograph),
            ],
            path: "Benchmarks/HeliographBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
