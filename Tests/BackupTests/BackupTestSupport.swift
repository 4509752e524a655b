import RingCastBackup
import RingCastChain

/// PBFT's application in the tests: records what it executed and answers with the op reversed.
struct RecordingApp: PBFTApplication {
    var executed: [(sn: UInt64, request: PBFT.Request)] = []

    mutating func execute(sn: UInt64, request: PBFT.Request) -> [UInt8] {
        executed.append((sn, request))
        return request.op.reversed()
    }

    var order: [String] { executed.map { "\($0.request.client).\($0.request.timestamp)" } }
}

/// n PBFT replicas over a FIFO in-memory network; crashed replicas neither receive nor act.
final class PBFTCluster {
    let f: UInt32
    let keys: ChainKeys
    var replicas: [PBFT.Replica] = []
    var apps: [RecordingApp]
    var queue: [(to: UInt32, envelope: PBFT.Envelope)] = []
    var crashed: Set<UInt32> = []
    var replies: [PBFT.Reply] = []
    var refusals: [PBFT.EventError] = []

    init(f: UInt32, clients: UInt32 = 4, checkpointInterval: UInt64 = 16, logWindow: UInt64 = 64,
         timeout: UInt64 = 20, batchMax: Int = 32, proposalsInFlightMax: UInt64 = 2, fault: PBFT.TestFault = .none) throws {
        self.f = f
        keys = try ChainKeys.generate(f: f, clients: clients)
        let n = 3 * f + 1
        for r in 0..<n {
            let settings = PBFT.Settings(f: f, replica: r, checkpointInterval: checkpointInterval, logWindow: logWindow,
                                         clientsMax: clients, viewChangeTimeoutTicks: timeout, batchMax: batchMax,
                                         proposalsInFlightMax: proposalsInFlightMax, testFault: fault)
            replicas.append(try PBFT.Replica(settings: settings, keyRing: keys.keyRing(for: .replica(r))))
        }
        apps = Array(repeating: RecordingApp(), count: Int(n))
    }

    var n: UInt32 { 3 * f + 1 }
    var live: [UInt32] { (0..<n).filter { !crashed.contains($0) } }

    func clientRequest(client: UInt32, timestamp: UInt64, op: [UInt8] = [1, 2, 3]) throws -> PBFT.ClientRequest {
        PBFT.ClientRequest(PBFT.Request(client: client, timestamp: timestamp, op: op),
                           keyRing: try keys.keyRing(for: .client(client)), n: n)
    }

    /// The client sends to every replica, then the network runs until quiet.
    func submit(client: UInt32, timestamp: UInt64, op: [UInt8] = [1, 2, 3]) throws {
        let r = try clientRequest(client: client, timestamp: timestamp, op: op)
        for q in live { deliver(.request(r), to: q) }
        run()
    }

    func deliver(_ event: PBFT.Event, to q: UInt32) {
        guard !crashed.contains(q) else { return }
        do {
            let actions = try replicas[Int(q)].handle(event, app: &apps[Int(q)])
            for a in actions {
                switch a {
                case .broadcast(let e): for p in 0..<n where p != q { queue.append((p, e)) }
                case .send(let to, let e): queue.append((to, e))
                case .reply(let r): replies.append(r)
                case .executed, .enteredView: break
                }
            }
        } catch {
            refusals.append(error)
        }
    }

    func run(steps: Int = 1_000_000) {
        var k = 0
        while !queue.isEmpty && k < steps {
            let (to, e) = queue.removeFirst()
            deliver(.message(e), to: to)
            k += 1
        }
    }

    func tick(_ times: Int) {
        for _ in 0..<times {
            for q in live { deliver(.tick, to: q) }
            run()
        }
    }

    /// Replies for (client, timestamp) that f+1 replicas agree on.
    func committedResult(client: UInt32, timestamp: UInt64) -> [UInt8]? {
        var votes: [[UInt8]: Set<UInt32>] = [:]
        for r in replies where r.client == client && r.timestamp == timestamp { votes[r.result, default: []].insert(r.replica) }
        return votes.first { $0.value.count >= Int(f) + 1 }?.key
    }
}
