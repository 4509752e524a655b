import ChainBFT
import RingCastSMR
import Testing
@testable import RingCastBenchKit

/// `ringcast-bench chain`'s service: decoding a command keeps a view of the request's bytes (no copy of the payload
/// per request per replica), and the bytes round-trip.
@Suite struct ChainBenchMachineTests {
    @Test func aDecodedCommandSharesTheRequestsBytes() throws {
        let payload = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let op = ChainOperation.command(ChainBenchMachine.Payload(bytes: payload))
        #expect(op.count == 1 + payload.count && op.first == 1) // the command tag, then the payload
        let decoded = try ChainBenchMachine.Payload.decode(op[1...])
        #expect(Array(decoded.bytes) == payload)
        // The same storage: the slice starts one byte (the tag) into the request's own array.
        let opBase = op.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        let viewBase = decoded.bytes.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        #expect(viewBase == opBase + 1)
        var machine = ChainBenchMachine(replyBytes: 8)
        var batch = CommandBatch<ChainBenchMachine.Payload>()
        batch.append(decoded, ApplyContext(index: 1, orderedTimeMillis: 0, session: 0, sequence: 1))
        batch.append(decoded, ApplyContext(index: 2, orderedTimeMillis: 0, session: 0, sequence: 2))
        var outputs: [ChainBenchMachine.Payload] = []
        machine.apply(batch, into: &outputs)
        #expect(outputs.count == 2 && outputs.allSatisfy { Array($0.bytes) == [UInt8](repeating: 0x5a, count: 8) })
        #expect(machine.applied == 2)
    }
}
