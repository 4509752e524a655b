import Foundation
import RingCastSimKit
import Testing

/// Parsing and validation of `ringcast-sim`, and the JSON contract of ARCHITECTURE §3.2.
@Suite struct SimCommandTests {
    @Test func defaultsAreTheRoundModelWithFairness() throws {
        let command = try SimCommand.parse([])
        #expect(command.nodes == 5)
        #expect(command.rounds == 100_000)
        #expect(command.fairness == .on)
        #expect(!command.random)
        let settings = try command.roundModelSettings()
        #expect(settings.senders == [0, 1, 2, 3, 4], "all nodes send by default")
    }

    @Test func sendersAndSenderSet() throws {
        #expect(try SimCommand.parse(["--nodes", "6", "--senders", "2"]).roundModelSettings().senders == [0, 1])
        #expect(try SimCommand.parse(["--nodes", "6", "--sender-set", "0,2,4"]).roundModelSettings().senders == [0, 2, 4])
        #expect(try SimCommand.parse(["--fairness", "off"]).fairness == .off)
    }

    /// Every bad value is refused with a message naming the option.
    @Test(arguments: [
        (["--nodes", "1"], "--nodes"),
        (["--nodes", "17"], "--nodes"),
        (["--nodes", "4", "--senders", "5"], "--senders"),
        (["--senders", "0"], "--senders"),
        (["--senders", "2", "--sender-set", "0,1"], "--sender-set"),
        (["--sender-set", "0,x"], "--sender-set"),
        (["--sender-set", "0,0"], "twice"),
        (["--nodes", "3", "--sender-set", "1,3"], "sender 3"),
        (["--rounds", "0"], "--rounds"),
        (["--rounds", "100", "--warmup-rounds", "100"], "--warmup-rounds"),
        (["--fairness", "maybe"], "fairness"),
        (["--send-queue-max", "8", "--forward-queue-max", "8"], "--forward-queue-max"),
        (["--nodes", "3", "--pending-max", "10"], "--pending-max"),
        (["--seed", "3"], "--random"),
        (["--random", "--seed", "1", "--seeds", "2"], "--seeds"),
        (["--random", "--seeds", "0"], "--seeds"),
        (["--random", "--trace"], "--trace"),
        (["--plant-bug", "everything"], "plant-bug"),
        (["--random", "--senders", "2"], "round model"),
    ])
    func badValuesAreRejected(arguments: [String], mentioned: String) {
        do {
            _ = try SimCommand.parse(arguments)
            Issue.record("\(arguments) was accepted")
        } catch {
            let message = SimCommand.message(for: error)
            #expect(message.contains(mentioned), "\(arguments): \(message)")
        }
    }

    func jsonObject(_ text: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any])
    }

    @Test func roundModelJSONHasTheContractFields() throws {
        let command = try SimCommand.parse(["--nodes", "4", "--senders", "2", "--rounds", "2000", "--json"])
        let (output, _) = try command.execute()
        let json = try jsonObject(output)
        for key in ["nodes", "senders", "rounds", "fairness", "throughput_per_round", "bound_per_round", "efficiency",
                    "sender_shares", "lone_latency_rounds", "lone_latency_bound_rounds", "warmup_rounds",
                    "send_queue_max", "forward_queue_max", "pending_max"] {
            #expect(json[key] != nil, "missing \(key)")
        }
        #expect(json["nodes"] as? Int == 4)
        #expect(json["lone_latency_rounds"] as? Int == 6)
        let shares = try #require(json["sender_shares"] as? [String: Double])
        #expect(Set(shares.keys) == ["0", "1"])
    }

    @Test func randomJSONHasTheContractFields() throws {
        let command = try SimCommand.parse(["--random", "--seeds", "20", "--first-seed", "5", "--json"])
        let (output, _) = try command.execute()
        let json = try jsonObject(output)
        #expect(json["seeds_run"] as? Int == 20)
        #expect(json["violations"] is Int)
        #expect(json["first_seed"] as? Int == 5)
    }

    @Test func oneSeedReportsItsDigest() throws {
        let command = try SimCommand.parse(["--random", "--seed", "42", "--json"])
        let (output, _) = try command.execute()
        let json = try jsonObject(output)
        #expect(json["seed"] as? Int == 42)
        #expect((json["trace_digest"] as? String)?.count == 16)
    }

    @Test func plantedBugRunPassesWhenCaught() throws {
        let command = try SimCommand.parse(["--random", "--seeds", "20", "--plant-bug", "deliver-unstable"])
        let (output, passed) = try command.execute()
        #expect(passed, "the planted bug must be caught: \(output)")
        #expect(output.contains("replay"))
    }
}
