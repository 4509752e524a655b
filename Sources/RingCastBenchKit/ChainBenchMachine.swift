import RingCastSMR

/// The benchmark's service: every request is opaque bytes, every reply `replyBytes` bytes (spec §16: the cost model
/// counts MACs, not the service, so the service does as little as it can while still being a StateMachine the
/// replica executes in order).
struct ChainBenchMachine: StateMachine {
    struct Payload: SMRCodable, Hashable {
        /// A slice: decoding a command keeps a view of the request's own bytes instead of copying them (the replica
        /// decodes every request it executes; a 4 kB copy and an allocation per request per replica otherwise).
        var bytes: ArraySlice<UInt8>
        init(bytes: [UInt8]) { self.bytes = bytes[...] }
        func encode(into writer: inout ByteWriter) { writer.raw(bytes) }
        init(from reader: inout ByteReader) throws(SMRCodecError) { bytes = reader.rest() }
    }
    typealias Command = Payload
    typealias Query = Payload
    typealias Output = Payload

    let reply: Payload
    var applied: UInt64 = 0

    init(replyBytes: Int) { reply = Payload(bytes: [UInt8](repeating: 0x5a, count: replyBytes)) }

    mutating func apply(_ batch: CommandBatch<Payload>, into outputs: inout [Payload]) {
        for _ in batch {
            applied += 1
            outputs.append(reply)
        }
    }

    func query(_ query: Payload) -> Payload { reply }
    func snapshot(into writer: inout SnapshotWriter) throws(SnapshotError) { try writer.uint64(applied) }
    mutating func restore(from reader: inout SnapshotReader) throws(SnapshotError) { applied = try reader.uint64() }
}
