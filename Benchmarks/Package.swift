// swift-tools-version: 6.1
//
// RingCast benchmarks (ordo-one/package-benchmark), kept out of the root package on purpose: a consumer
// of RingCast must not resolve or build the benchmark harness and its malloc interposer.
//
//   cd Benchmarks && swift package --disable-sandbox benchmark thresholds check --no-progress   # the gate
//   cd Benchmarks && swift package --disable-sandbox benchmark --no-progress                    # numbers only
//
// Suites live in Benchmarks/<Suite>/<Suite>.swift (STYLE.md); static p90 thresholds in Thresholds/.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "RingCastBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "RingCast", path: ".."),
        // MallocInterposer (and only it) gives the mallocCountTotal metric the gate relies on on Swift 6.3+.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "LCRCore",
            dependencies: [
                .product(name: "CRingCast", package: "RingCast"),
                .product(name: "RingCastLCR", package: "RingCast"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/LCRCore",
            swiftSettings: swiftSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "WireCodec",
            dependencies: [
                .product(name: "CRingCast", package: "RingCast"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/WireCodec",
            swiftSettings: swiftSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
