import CRingCast
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The iovec contract of rc_wire.h with a real gather write, and the assertion that guards the
// application walk against blocks that were never decoded.

@Suite struct WireGatherTests {
    /// An own message leaves as iov[0] hop header, iov[1] message header, iov[2 + i] payload i
    /// (payloads referenced where they lie), and a forwarded one as iov[0] new hop, iov[1] block.
    @Test func gatherWriteOfThePiecesIsOneDecodableFrame() throws {
        var generator = FrameGenerator(seed: 51)
        let spec = generator.frame(nodes: 4, type: Wire.data)
        let encoded = Wire.encode(spec)
        let pieces = [encoded.hop, encoded.messageHeader] + encoded.payloads
        let received = try gatherThroughPipe(pieces)
        #expect(try Wire.decode(received).get().spec == spec)

        let decoded = try Wire.decode(received).get()
        var next = spec
        next.sender = (spec.sender + 1) % spec.nodes
        next.acks = []
        var hop = [UInt8](repeating: 0, count: Int(RC_WIRE_HOP_MAX))
        let hopBytes = Int(Wire.encodeHop(next, bodyBytes: decoded.bodyBytes, into: &hop))
        let forwarded = try gatherThroughPipe([Array(hop[..<hopBytes]), Array(received[decoded.bodyOffset!...])])
        #expect(try Wire.decode(forwarded).get().spec.message == spec.message)
    }

    /// writev(2) of `pieces` into a pipe, read back whole.
    private func gatherThroughPipe(_ pieces: [[UInt8]]) throws -> [UInt8] {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let total = pieces.reduce(0) { $0 + $1.count }
        try #require(total < 65_536, "a pipe holds 64 KiB without a reader")
        let pointers = pieces.map { piece -> UnsafeMutableRawPointer in
            let memory = UnsafeMutableRawPointer.allocate(byteCount: max(piece.count, 1), alignment: 1)
            piece.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: piece.count) }
            return memory
        }
        defer { pointers.forEach { $0.deallocate() } }
        let iovecs = zip(pointers, pieces).map { iovec(iov_base: $0, iov_len: $1.count) }
        let written = iovecs.withUnsafeBufferPointer { writev(fds[1], $0.baseAddress, Int32($0.count)) }
        close(fds[1])
        try #require(written == total)
        var out = [UInt8](repeating: 0, count: total)
        let readBytes = out.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, total) }
        try #require(readBytes == total)
        return out
    }
}

@Suite struct WireTrapTests {
    /// RC_ASSERT stays on: walking a block whose lengths were never checked stops the process
    /// instead of reading past the block.
    @Test func walkingAnUncheckedBlockTraps() async {
        await #expect(processExitsWith: .failure) {
            let message = MessageSpec(origin: 0, seq: 1, burstSize: 0, clock: [1], apps: [[1, 2]])
            var block = Wire.encodeMessageHeader(message, nodes: 1) + [1, 2]
            Wire.store32(&block, at: 32 + 8, 1_000) // the only application claims 1000 bytes
            block.withUnsafeBufferPointer { buffer in
                var iter = rc_wire_app_iter()
                rc_wire_app_iter_init(&iter, buffer.baseAddress, UInt32(buffer.count))
                var bytes: UnsafePointer<UInt8>? = nil
                var length: UInt32 = 0
                _ = rc_wire_app_next(&iter, &bytes, &length)
            }
        }
    }
}
