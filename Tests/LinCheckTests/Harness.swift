@testable import RingCastLinCheck

/// Shorthands for hand-written histories: `k("a")` is the key `a`, times are plain integers.
func k(_ text: String) -> [UInt8] { Array(text.utf8) }

func event(
    _ client: Int, _ input: KVInput, _ output: KVOutput?, _ invoke: UInt64, _ returned: UInt64?
) -> KVEvent {
    KVEvent(client: client, input: input, output: output, invokeNanos: invoke, returnNanos: output == nil ? nil : returned)
}

typealias IntRegister = RegisterModel<Int>

func registerOperation(
    _ client: Int, _ input: IntRegister.Input, _ output: IntRegister.Output?, _ invoke: UInt64, _ returned: UInt64?
) -> Linearizability.Operation<IntRegister.Input, IntRegister.Output> {
    .init(client: client, input: input, output: output, invokeNanos: invoke, returnNanos: returned)
}

/// SplitMix64 (Steele, Lea & Flood 2014): a seeded, reproducible generator for the random histories.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A linearizable key-value history by construction: a sequential store that clients drive with
/// overlapping operations. Each operation is invoked, takes effect on the store at a later instant (its
/// linearization point), and returns later still; the scheduler interleaves the clients' phases at random, so
/// operations of different clients overlap. A few operations lose their answer (open): half of those took
/// effect, half did not.
struct LinearizableHistoryGenerator {
    var clients = 8
    var keys = 50
    var operations = 10_000
    /// Per thousand operations.
    var lostPerMille = 2
    var seed: UInt64 = 1

    func generate() -> [KVEvent] {
        var random = SplitMix64(state: seed)
        enum Phase { case idle, invoked(Int), applied(Int) }
        var phases = [Phase](repeating: .idle, count: clients)
        var store: [[UInt8]: [UInt8]] = [:]
        var written: [[UInt8]: [[UInt8]]] = [:]
        var events: [KVEvent] = []
        var now: UInt64 = 1_000
        var serial = 0
        let model = KVModel()
        func idleCount() -> Int { phases.filter { if case .idle = $0 { return true } else { return false } }.count }
        while events.count < operations || idleCount() < clients {
            let client = Int.random(in: 0..<clients, using: &random)
            switch phases[client] {
            case .idle:
                guard events.count < operations else { break }
                serial += 1
                let key = k("k\(Int.random(in: 0..<keys, using: &random))")
                let input: KVInput
                switch Int.random(in: 0..<100, using: &random) {
                case 0..<25: input = .put(key: key, value: k("v\(serial)"))
                case 25..<55: input = .get(key: key)
                case 55..<60: input = .delete(key: key)
                case 60..<75:
                    let expected: [UInt8]?
                    switch Int.random(in: 0..<3, using: &random) {
                    case 0: expected = store[key]
                    case 1: expected = nil
                    default: expected = written[key]?.randomElement(using: &random)
                    }
                    input = .cas(key: key, expected: expected, new: k("c\(serial)"))
                default: input = .incr(key: key, delta: Int64.random(in: -5...5, using: &random))
                }
                events.append(KVEvent(client: client, input: input, output: nil, invokeNanos: now, returnNanos: nil))
                phases[client] = .invoked(events.count - 1)
            case .invoked(let index):
                let lost = Int.random(in: 0..<1000, using: &random) < lostPerMille
                if lost, Bool.random(using: &random) {
                    phases[client] = .idle  // Lost before it took effect.
                    break
                }
                let key = events[index].input.key
                let (output, next) = model.step(store[key], events[index].input)
                store[key] = next
                if let next { written[key, default: []].append(next) }
                if lost {
                    phases[client] = .idle  // Took effect, but the answer was lost.
                } else {
                    events[index].output = output
                    phases[client] = .applied(index)
                }
            case .applied(let index):
                events[index].returnNanos = now
                phases[client] = .idle
            }
            now += UInt64.random(in: 1...3, using: &random)
        }
        return events
    }
}

/// Plants a stale read: a get that returns the value of a put that a later, completed put overwrote before
/// the get was invoked. Returns the changed history and the index of the get.
func plantStaleRead(_ events: [KVEvent]) -> (events: [KVEvent], index: Int)? {
    func isPut(_ event: KVEvent) -> [UInt8]? {
        if case .put(_, let value) = event.input, event.output != nil { return value }
        return nil
    }
    for (getIndex, get) in events.enumerated().dropFirst(events.count / 2) {
        guard case .get(let key) = get.input, get.output != nil else { continue }
        let getInvoke = get.invokeNanos
        let puts = events.indices.filter { events[$0].input.key == key && isPut(events[$0]) != nil }
        for old in puts {
            let overwritten = puts.contains { newer in
                events[old].returnNanos! < events[newer].invokeNanos && events[newer].returnNanos! < getInvoke
            }
            if overwritten {
                var planted = events
                planted[getIndex].output = .value(isPut(events[old])!)
                return (planted, getIndex)
            }
        }
    }
    return nil
}
