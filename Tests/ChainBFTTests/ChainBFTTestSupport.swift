import ChainBFT
import Glibc
import RingCastChain
import RingCastLocalPorts
import RingCastSMR
import Testing

/// A small replicated service for the tests: a key-value map with a running digest of every command applied, so a
/// reply depends on the whole order before it (a reordering or a skipped request shows in the next reply).
struct TestStore: StateMachine {
    enum Command: SMRCodable, Hashable {
        case put(key: [UInt8], value: [UInt8])
        func encode(into writer: inout ByteWriter) {
            switch self {
            case let .put(key, value):
                writer.uint8(1)
                writer.lengthPrefixed(key)
                writer.lengthPrefixed(value)
            }
        }
        init(from reader: inout ByteReader) throws(SMRCodecError) {
            guard try reader.uint8() == 1 else { throw SMRCodecError("unknown command") }
            self = .put(key: try reader.lengthPrefixed(), value: try reader.lengthPrefixed())
        }
    }
    struct Query: SMRCodable, Hashable {
        var key: [UInt8]
        init(key: [UInt8]) { self.key = key }
        func encode(into writer: inout ByteWriter) { writer.lengthPrefixed(key) }
        init(from reader: inout ByteReader) throws(SMRCodecError) { key = try reader.lengthPrefixed() }
    }
    struct Output: SMRCodable, Hashable {
        var value: [UInt8]?
        var digest: UInt64
        init(value: [UInt8]?, digest: UInt64) { self.value = value; self.digest = digest }
        func encode(into writer: inout ByteWriter) {
            writer.optionalBytes(value)
            writer.uint64(digest)
        }
        init(from reader: inout ByteReader) throws(SMRCodecError) {
            value = try reader.optionalBytes()
            digest = try reader.uint64()
        }
    }

    var entries: [[UInt8]: [UInt8]] = [:]
    /// FNV-1a 64 over every command applied (kept as a value so that a snapshot restores it).
    var digest = TestDigest()

    mutating func apply(_ batch: CommandBatch<Command>, into outputs: inout [Output]) {
        for (command, context) in batch {
            guard case let .put(key, value) = command else { continue }
            digest.combine(key)
            digest.combine(value)
            withUnsafeBytes(of: context.index) { digest.combine($0) }
            entries[key] = value
            applied += 1
            outputs.append(Output(value: value, digest: digest.value))
        }
    }

    /// Puts applied so far (exactly-once checks read it with a query of ``appliedKey``).
    var applied: UInt64 = 0
    static let appliedKey = "#applied"

    func query(_ query: Query) -> Output {
        if query.key == Array(Self.appliedKey.utf8) { return Output(value: Array("\(applied)".utf8), digest: digest.value) }
        return Output(value: entries[query.key], digest: digest.value)
    }

    func snapshot(into writer: inout SnapshotWriter) throws(SnapshotError) {
        try writer.uint64(digest.value)
        try writer.uint64(UInt64(entries.count))
        for key in entries.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            try writer.lengthPrefixed(key)
            try writer.lengthPrefixed(entries[key]!)
        }
        try writer.uint64(applied)
    }

    /// Used by a replica that enters the next instance (D10: back to the checkpoint base).
    mutating func restore(from reader: inout SnapshotReader) throws(SnapshotError) {
        digest = TestDigest(value: try reader.uint64())
        let count = try reader.uint64()
        entries = [:]
        for _ in 0..<count {
            let key = try reader.lengthPrefixed(limit: 1 << 20)
            entries[key] = try reader.lengthPrefixed(limit: 1 << 20)
        }
        applied = try reader.uint64()
    }
}

/// FNV-1a 64 whose value can be restored (RingCastSMR's FNV1a64 cannot be set).
struct TestDigest: Hashable, Sendable {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func combine(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            value ^= UInt64(byte)
            value = value &* 0x0000_0100_0000_01b3
        }
    }
}

/// Whether this kernel lets us create an io_uring at all (containers may forbid it).
let ioUringAvailable: Bool = {
    do {
        let keys = try ChainKeys.generate(f: 1, clients: 1)
        let probe = try ChainClient(settings: .init(f: 1, client: 0, replicas: (0..<4).map { ChainEndpoint(host: "127.0.0.1", port: UInt16(1 + $0)) }),
                                    keyRing: try keys.keyRing(for: .client(0)))
        _ = probe
        return true
    } catch {
        return false
    }
}()

/// Free loopback ports for in-process replicas, outside the kernel's ephemeral range (see `LocalPorts`).
func freePorts(_ count: Int) -> [UInt16] {
    guard let ports = LocalPorts.free(count: count, pool: .tests) else {
        preconditionFailure("no \(count) free loopback ports in \(LocalPorts.Pool.tests.range)")
    }
    return ports
}

/// n = 3f+1 in-process replicas over loopback TCP, each on its own engine thread, and their key material.
final class TestCluster {
    let f: UInt32
    let keys: ChainKeys
    let endpoints: [ChainEndpoint]
    var replicas: [ChainReplica<TestStore>] = []

    init(f: UInt32 = 1, clients: UInt32 = 4, keys: ChainKeys? = nil,
         adjust: (inout ChainReplica<TestStore>.Settings) -> Void = { _ in }) throws {
        self.f = f
        self.keys = try keys ?? ChainKeys.generate(f: f, clients: clients)
        let n = Int(3 * f + 1)
        endpoints = freePorts(n).map { ChainEndpoint(host: "127.0.0.1", port: $0) }
        for position in 0..<n {
            var settings = ChainReplica<TestStore>.Settings(f: f, position: UInt32(position), replicas: endpoints)
            settings.clientsMax = clients
            settings.checkpointInterval = 16
            adjust(&settings)
            let replica = try ChainReplica(settings: settings, keyRing: try self.keys.keyRing(for: .replica(UInt32(position))),
                                           machine: TestStore())
            try replica.start()
            replicas.append(replica)
        }
        for replica in replicas { try #require(replica.waitForLinks(), "replica \(replica.settings.position) not linked") }
    }

    func client(_ id: UInt32, timeoutMillis: UInt64 = 2000, window: Int = 16) throws -> ChainClient {
        var settings = ChainClient.Settings(f: f, client: id, replicas: endpoints)
        settings.timeoutNanos = timeoutMillis * 1_000_000
        settings.abortWaitNanos = 3_000_000_000
        settings.checkpointInterval = 16
        settings.windowMax = window
        let client = try ChainClient(settings: settings, keyRing: try keys.keyRing(for: .client(id)))
        try client.start()
        return client
    }

    func stop() { for replica in replicas { replica.stop() } }
}

func put(_ client: ChainClient, _ key: String, _ value: String) async throws -> TestStore.Output {
    let reply = try await client.submit(ChainOperation.command(TestStore.Command.put(key: Array(key.utf8), value: Array(value.utf8))))
    return try ChainOperation.decodeReply(reply, as: TestStore.Output.self)
}

func get(_ client: ChainClient, _ key: String) async throws -> TestStore.Output {
    let reply = try await client.submit(ChainOperation.query(TestStore.Query(key: Array(key.utf8))))
    return try ChainOperation.decodeReply(reply, as: TestStore.Output.self)
}
