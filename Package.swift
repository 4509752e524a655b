// swift-tools-version: 6.1
//
// RingCast: throughput-optimal uniform total order broadcast (LCR) for state machine replication.
// The hot path is C (CSources/CRingCast) driven through io_uring; control, APIs and tools are Swift.
import PackageDescription

/// C settings shared by every C target. `_GNU_SOURCE` exposes memfd_create, accept4 and friends.
/// No `unsafeFlags`: a consumer package would be refused.
let cSettings: [CSetting] = [
    .define("_GNU_SOURCE"),
]

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "RingCast",
    platforms: [.macOS(.v14)],
    products: [
        // The C hot path, for the Benchmarks/ package (and, later, the RingCast library).
        .library(name: "CRingCast", targets: ["CRingCast"]),
        // The sans-IO C core alone (LCR and the wire codec), without liburing, and its one Swift wrapper
        // (for the simulator, the tests and the Benchmarks/ package).
        .library(name: "CRingCastCore", targets: ["CRingCastCore"]),
        .library(name: "RingCastLCR", targets: ["RingCastLCR"]),
        .library(name: "RingCastChain", targets: ["RingCastChain"]),
        .library(name: "ChainBFT", targets: ["ChainBFT"]),
        .library(name: "RingCastBackup", targets: ["RingCastBackup"]),
        .library(name: "RingCast", targets: ["RingCast"]),
        .library(name: "RingCastMembership", targets: ["RingCastMembership"]),
        .library(name: "RingCastLinCheck", targets: ["RingCastLinCheck"]),
        .executable(name: "ringperf", targets: ["ringperf"]),
        .executable(name: "ringcast-node", targets: ["ringcast-node"]),
        .executable(name: "ringcast-bench", targets: ["ringcast-bench"]),
        .executable(name: "ringcast-sim", targets: ["ringcast-sim"]),
        .library(name: "RingCastSMR", targets: ["RingCastSMR"]),
        .executable(name: "ringcast-kv", targets: ["ringcast-kv"]),
        .executable(name: "ringcast-keys", targets: ["ringcast-keys"]),
        .library(name: "RingCastKeys", targets: ["RingCastKeys"]),
    ],
    dependencies: [
        // Command-line parsing with --help, validation and clear errors, for every tool.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Latency percentiles (p50/p99/max) without keeping every sample.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        // The library logs view changes and suspicions to the application's Logger.
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The library reports its statistics as counters, gauges and timers to the application's metrics backend.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        // Group runs as a Service in a ServiceGroup: graceful shutdown (leave, then stop) on SIGTERM.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // ringcast-node only: the Prometheus text format for --metrics-listen.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // System libraries, found with pkg-config; the apt providers name the Debian packages.
        .systemLibrary(
            name: "CLibUring",
            path: "CSources/CLibUring",
            pkgConfig: "liburing",
            providers: [.apt(["liburing-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            path: "CSources/COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),

        // The sans-IO core: the LCR protocol (lcr/) and the wire codec (wire/). No liburing, no OpenSSL, no
        // system calls: that it builds without them is what "sans-IO" means here.
        .target(
            name: "CRingCastCore",
            path: "CSources/CRingCastCore",
            cSettings: cSettings
        ),
        // The one Swift wrapper of the LCR core, for the simulator and the tests.
        .target(name: "RingCastLCR", dependencies: ["CRingCastCore"], swiftSettings: swiftSettings),
        // The Swift wrapper of the Chain BFT core (rc_chain.h) with its OpenSSL key rings (rc_crypto_openssl.h),
        // for the simulator, the tests and (later) the ChainBFT replica and client.
        .target(name: "RingCastChain", dependencies: ["CRingCastCore", "CRingCast", "RingCastKeys"], swiftSettings: swiftSettings),
        // Aliph's Backup instance (spec §13.1): a sans-IO PBFT core and the wrapper that enters it with a Chain init
        // history, commits k requests and aborts with a signed history back into Chain.
        .target(name: "RingCastBackup", dependencies: ["RingCastChain", "CRingCastCore"], swiftSettings: swiftSettings),
        // The hot path over the core: transport (io/), engine, simulator and ringperf. Swift sees only the
        // rc_*.h headers of both include/ folders (rc_engine.h and rc_sim.h include rc_lcr.h, so
        // `import CRingCast` sees the core's too); liburing and OpenSSL stay inside.
        .target(
            name: "CRingCast",
            dependencies: ["CRingCastCore", "CLibUring", "COpenSSL"],
            path: "CSources/CRingCast",
            cSettings: cSettings
        ),

        // The tools' one JSON value (writer and reader; no Foundation key reordering).
        .target(name: "RingCastJSON", swiftSettings: swiftSettings),
        // Loopback ports for local clusters (tests, benches, ringcast-kv), outside the kernel's ephemeral range.
        .target(name: "RingCastLocalPorts", swiftSettings: swiftSettings),

        // ringperf: netperf-style link test (ARCHITECTURE §3.1).
        .target(
            name: "RingPerfKit",
            dependencies: [
                "CRingCast",
                "RingCastJSON",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(name: "ringperf", dependencies: ["RingPerfKit"], swiftSettings: swiftSettings),

        // ringcast-sim: round model (§2.2.2) and randomized schedules over the real LCR core.
        .target(
            name: "RingCastSimKit",
            dependencies: [
                "CRingCast",
                "RingCastLCR",
                "RingCastChain",
                "RingCastBackup",
                "RingCastMembership",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(name: "ringcast-sim", dependencies: ["RingCastSimKit"], swiftSettings: swiftSettings),

        // Group membership and view change (Fig. 2.7), sans-IO: events in, directives out. Pure Swift, so the
        // simulator and the RingCast shell drive the very same value.
        .target(name: "RingCastMembership", swiftSettings: swiftSettings),

        // Linearizability checker (Wing & Gong; Lowe 2017) for recorded client histories, and its key-value
        // instance. Pure Swift, no dependencies, so a test or a tool can link it alone.
        .target(name: "RingCastLinCheck", swiftSettings: swiftSettings),
        // Key files (the cluster key; later the Chain BFT key files): mode 0600, checked on load. Small on purpose,
        // so that the library, ringcast-keys and ChainBFT share one reader.
        .target(name: "RingCastKeys", dependencies: ["CRingCast"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "ringcast-keys",
            dependencies: ["RingCastKeys", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),

        // The embeddable broadcast API over the C engine, and a node as its own process.
        .target(
            name: "RingCast",
            dependencies: [
                "CRingCast",
                "RingCastKeys",
                "RingCastMembership",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ringcast-node",
            dependencies: [
                "RingCast",
                "RingCastJSON",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        // ringcast-bench: the k-to-n experiment of §2.6 over node processes (ARCHITECTURE §3.1–3.3).
        .target(
            name: "RingCastBenchKit",
            dependencies: [
                "RingCastJSON",
                "ChainBFT", // `ringcast-bench chain`
                "RingCastChain",
                "RingCastSMR",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                "RingCastKeys", // --auth without --cluster-key: a fresh key file for the run
                "RingCastLocalPorts",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(name: "ringcast-bench", dependencies: ["RingCastBenchKit"], swiftSettings: swiftSettings),

        // State machine replication over a Group: sessions (exactly-once), read modes, snapshots, the TCP client.
        .target(
            name: "RingCastSMR",
            dependencies: [
                "RingCast",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Chain BFT over real processes: a replica (the core, an io_uring transport and a StateMachine on one engine
        // thread) and a client (C1, C4, PANIC and ABORT collection).
        .target(
            name: "ChainBFT",
            dependencies: ["RingCastChain", "RingCastBackup", "RingCastSMR", "RingCastKeys", "CRingCast", "CRingCastCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "ChainBFTTests", dependencies: ["ChainBFT", "RingCastChain", "RingCastBackup", "RingCastSMR", "RingCastLocalPorts"], swiftSettings: swiftSettings),

        // ringcast-kv: a replicated key-value service on RingCastSMR (serve, client commands, bench; `bench --check`
        // checks the recorded history with RingCastLinCheck).
        .executableTarget(
            name: "ringcast-kv",
            dependencies: [
                "RingCastSMR",
                "ChainBFT",
                "RingCastChain",
                "RingCastBackup", // ChainServe's Backup schedule
                "RingCastLinCheck",
                "RingCastJSON",
                "RingCast",
                "RingCastBenchKit", // tools/lan, child processes and the raw-link test, shared with ringcast-bench
                "RingCastLocalPorts",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "SMRTests", dependencies: ["RingCastSMR", "RingCast", "RingCastKeys", "RingCastLocalPorts"], swiftSettings: swiftSettings),

        .testTarget(
            name: "RingCastTests",
            dependencies: [
                "RingCast",
                "RingCastKeys",
                "RingCastLocalPorts",
                "CRingCast",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "BenchTests", dependencies: ["RingCastBenchKit", "RingCastJSON"], swiftSettings: swiftSettings),
        .testTarget(name: "TransportTests", dependencies: ["CRingCast"], swiftSettings: swiftSettings),
        .testTarget(name: "RingPerfTests", dependencies: ["RingPerfKit"], swiftSettings: swiftSettings),
        .testTarget(name: "LCRTests", dependencies: ["CRingCast", "RingCastLCR"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ChainTests", dependencies: ["RingCastChain", "RingCastSimKit", "RingCastKeys", "CRingCast", "CRingCastCore"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BackupTests", dependencies: ["RingCastBackup", "RingCastChain", "RingCastSimKit", "CRingCastCore"],
            swiftSettings: swiftSettings),
        .testTarget(name: "WireTests", dependencies: ["CRingCast"], swiftSettings: swiftSettings),
        .testTarget(name: "SimTests", dependencies: ["RingCastSimKit", "CRingCast", "RingCastLCR"], swiftSettings: swiftSettings),
        .testTarget(name: "ToolsTests", swiftSettings: swiftSettings),
        .testTarget(name: "MembershipTests", dependencies: ["RingCastMembership", "CRingCast"], swiftSettings: swiftSettings),
        .testTarget(name: "LinCheckTests", dependencies: ["RingCastLinCheck"], swiftSettings: swiftSettings),
    ]
)
