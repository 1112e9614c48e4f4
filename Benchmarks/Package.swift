// swift-tools-version: 6.1
// Micro-benchmarks of Heliograph's hot paths, with allocation counts (ordo-one/benchmark).
// Run from this directory: swift package benchmark
import PackageDescription

let package = Package(
    name: "HeliographBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "HeliographBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "HeliographCore", package: "Heliograph"),
                .product(name: "HeliographProtocol", package: "Heliograph"),
                .product(name: "HeliographStore", package: "Heliograph"),
            ],
            path: "Benchmarks/HeliographBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
