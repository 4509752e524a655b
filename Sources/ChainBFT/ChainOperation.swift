public import RingCastSMR
import Glibc

/// The bytes `o` of a Chain request for a ``StateMachine``: a command (applied in order) or a query (answered in
/// order too, so a read is linearizable without a separate read path: Chain orders reads like writes).
/// A Byzantine client can get any bytes ordered; a replica answers bytes that do not decode with an error reply,
/// the same on every correct replica (deterministic), and never traps.
public enum ChainOperation {
    static let commandTag: UInt8 = 1
    static let queryTag: UInt8 = 2
    static let outputTag: UInt8 = 1
    static let errorTag: UInt8 = 0

    public static func command<C: SMRCodable>(_ command: C) -> [UInt8] {
        var w = ByteWriter()
        w.uint8(commandTag)
        command.encode(into: &w)
        return w.bytes
    }

    public static func query<Q: SMRCodable>(_ query: Q) -> [UInt8] {
        var w = ByteWriter()
        w.uint8(queryTag)
        query.encode(into: &w)
        return w.bytes
    }

    /// The reply bytes a replica computes for `op` (executed at sequence number `sn`).
    static func execute<Machine: StateMachine>(_ machine: inout Machine, op: [UInt8], sn: UInt64, client: UInt32,
                                               timestamp: UInt64, outputs: inout [Machine.Output]) -> [UInt8] {
        guard let tag = op.first else { return error("an empty operation") }
        switch tag {
        case commandTag:
            let command: Machine.Command
            do { command = try Machine.Command.decode(op[1...]) } catch { return Self.error("\(error)") }
            var batch = CommandBatch<Machine.Command>()
            batch.append(command, context(sn: sn, client: client, timestamp: timestamp))
            outputs.removeAll(keepingCapacity: true)
            machine.apply(batch, into: &outputs)
            precondition(outputs.count == 1, "a state machine appends exactly one output per command")
            return output(outputs[0])
        case queryTag:
            let query: Machine.Query
            do { query = try Machine.Query.decode(op[1...]) } catch { return Self.error("\(error)") }
            return output(machine.query(query))
        default:
            return error("unknown operation tag \(tag)")
        }
    }

    /// The command `op` carries when it is one that decodes (nil for a query, an unknown tag or bytes that do not
    /// decode: those go through ``execute(_:op:sn:client:timestamp:outputs:)``, which answers them one by one).
    static func command<Machine: StateMachine>(_ op: [UInt8], for: Machine.Type) -> Machine.Command? {
        guard op.first == commandTag else { return nil }
        do { return try Machine.Command.decode(op[1...]) } catch { return nil }
    }

    /// The context a command executed at `sn` is applied with (the same as ``execute(_:op:sn:client:timestamp:outputs:)``'s).
    static func context(sn: UInt64, client: UInt32, timestamp: UInt64) -> ApplyContext {
        // Chain has no ordered clock (it orders requests, not replica stamps): orderedTimeMillis is 0 (ChainBFT.md).
        ApplyContext(index: sn, orderedTimeMillis: 0, session: UInt64(client), sequence: timestamp)
    }

    static func output<O: SMRCodable>(_ value: O) -> [UInt8] {
        var w = ByteWriter()
        w.uint8(outputTag)
        value.encode(into: &w)
        return w.bytes
    }

    static func error(_ text: String) -> [UInt8] { [errorTag] + Array(text.utf8.prefix(256)) }

    /// The service's output in a committed reply; throws ``ChainBFTError/rejectedOperation(_:)`` for an error reply.
    public static func decodeReply<O: SMRCodable>(_ reply: [UInt8], as: O.Type) throws(ChainBFTError) -> O {
        guard let tag = reply.first else { throw .undecodableReply("empty") }
        if tag == errorTag { throw .rejectedOperation(String(decoding: reply[1...], as: UTF8.self)) }
        guard tag == outputTag else { throw .undecodableReply("tag \(tag)") }
        do { return try O.decode(reply[1...]) } catch { throw .undecodableReply("\(error)") }
    }
}

/// A joinable OS thread (the engine loops block in io_uring waits, which must not block the cooperative pool).
struct ChainThread: Sendable {
    private let handle: pthread_t

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    init(_ body: @escaping @Sendable () -> Void) throws(ChainBFTError) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        guard result == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw .transport("pthread_create", -result)
        }
        handle = thread
    }

    func join() { _ = pthread_join(handle, nil) }
}
