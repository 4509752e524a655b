import CRingCast
import Testing

/// One side of a handshake in a test: the C state machine of rc_auth.h.
private final class Side {
    var state = rc_auth_handshake()
    let initResult: Int32

    init(key: UInt8 = 7, node: UInt32, incarnation: UInt32 = 0, expect: UInt32 = RC_AUTH_PEER_ANY,
         mode: rc_auth_mode = RC_AUTH_MODE_HANDSHAKE, channel: rc_auth_channel = RC_AUTH_CHANNEL_RING,
         cluster: String = "test", initiator: Bool, nonce: UInt8? = nil) {
        var config = rc_auth_config()
        _ = withUnsafeMutableBytes(of: &config.key) { $0.initializeMemory(as: UInt8.self, repeating: key) }
        withUnsafeMutableBytes(of: &config.cluster) { raw in
            for (index, byte) in cluster.utf8.enumerated() { raw[index] = byte }
        }
        config.mode = mode.rawValue
        config.channel = channel.rawValue
        config.self_node = node
        config.self_incarnation = incarnation
        config.expect_node = expect
        config.expect_incarnation = RC_AUTH_PEER_ANY
        var nonceBytes = [UInt8](repeating: 0, count: Int(RC_AUTH_NONCE_BYTES))
        if let nonce { nonceBytes = [UInt8](repeating: nonce, count: nonceBytes.count) } else { _ = rc_auth_random(&nonceBytes, nonceBytes.count) }
        initResult = rc_auth_handshake_init(&state, &config, initiator, nonceBytes)
    }

    func output() -> [UInt8] {
        var length: UInt32 = 0
        guard let bytes = rc_auth_handshake_output(&state, &length), length > 0 else { return [] }
        let out = Array(UnsafeBufferPointer(start: bytes, count: Int(length)))
        rc_auth_handshake_output_advance(&state, length)
        return out
    }

    @discardableResult
    func input(_ bytes: [UInt8]) -> Int32 { rc_auth_handshake_input(&state, bytes, bytes.count) }

    var done: Bool { rc_auth_handshake_done(&state) }
    var keySend: [UInt8] { withUnsafeBytes(of: state.key_send) { Array($0) } }
    var keyRecv: [UInt8] { withUnsafeBytes(of: state.key_recv) { Array($0) } }
}

/// Runs both sides until nothing moves; returns the last results of each side's input.
@discardableResult
private func run(_ a: Side, _ b: Side, rounds: Int = 4) -> (Int32, Int32) {
    var last: (Int32, Int32) = (0, 0)
    for _ in 0..<rounds {
        let fromA = a.output(), fromB = b.output()
        if !fromA.isEmpty { last.1 = b.input(fromA) }
        if !fromB.isEmpty { last.0 = a.input(fromB) }
    }
    return last
}

@Suite("Authenticated links: the handshake (rc_auth.h)")
struct AuthHandshakeTests {
    @Test("both sides with the key finish, agree on the session keys crosswise, and use fresh nonces")
    func mutualSuccess() {
        let initiator = Side(node: 1, expect: 2, initiator: true)
        let responder = Side(node: 2, initiator: false)
        #expect(initiator.initResult == 0 && responder.initResult == 0)
        run(initiator, responder)
        #expect(initiator.done && responder.done)
        #expect(initiator.keySend == responder.keyRecv)
        #expect(initiator.keyRecv == responder.keySend)
        #expect(initiator.keySend != initiator.keyRecv)
        #expect(responder.state.peer_node == 1 && initiator.state.peer_node == 2)
    }

    @Test("bytes fed one at a time, and bytes after the handshake are left to the next layer")
    func byteByByteAndLeftover() {
        let initiator = Side(node: 1, initiator: true)
        let responder = Side(node: 2, initiator: false)
        let helloI = initiator.output()
        for byte in helloI { #expect(responder.input([byte]) == 1) }
        let fromR = responder.output() // HELLO + PROOF
        #expect(fromR.count == Int(RC_AUTH_HELLO_BYTES + RC_AUTH_PROOF_BYTES))
        #expect(initiator.input(fromR + [1, 2, 3]) == Int32(fromR.count), "the three trailing bytes are not the handshake's")
        #expect(initiator.done)
        let proofI = initiator.output()
        #expect(responder.input(proofI + [9, 9]) == Int32(proofI.count))
        #expect(responder.done)
    }

    @Test("a different cluster key fails on both sides (no key, no link)")
    func wrongKey() {
        let initiator = Side(key: 1, node: 1, initiator: true)
        let responder = Side(key: 2, node: 2, initiator: false)
        let (a, b) = run(initiator, responder)
        #expect(!initiator.done && !responder.done)
        #expect(a == RC_AUTH_ERROR_PROOF.rawValue || b == RC_AUTH_ERROR_PROOF.rawValue)
        #expect(initiator.state.state == RC_AUTH_STATE_FAILED.rawValue)
    }

    @Test("a different cluster name fails: the name is bound into the proof")
    func wrongCluster() {
        let initiator = Side(node: 1, cluster: "a", initiator: true)
        let responder = Side(node: 2, cluster: "b", initiator: false)
        run(initiator, responder)
        #expect(!initiator.done && !responder.done)
    }

    @Test("replaying an initiator's recorded HELLO and PROOF to a new connection fails (fresh responder nonce)")
    func replayFails() {
        let initiator = Side(node: 1, initiator: true)
        let responder = Side(node: 2, initiator: false)
        let hello = initiator.output()
        responder.input(hello)
        initiator.input(responder.output())
        let proof = initiator.output()
        responder.input(proof)
        #expect(responder.done)
        let fresh = Side(node: 2, initiator: false)
        #expect(fresh.input(hello) == Int32(hello.count))
        #expect(fresh.input(proof) == RC_AUTH_ERROR_PROOF.rawValue)
        #expect(!fresh.done)
        // Even the same responder nonce (a deterministic one) with a replay of the other side is bound to both:
        let r1 = Side(node: 2, initiator: false, nonce: 5)
        let i1 = Side(node: 1, initiator: true, nonce: 6)
        run(i1, r1)
        #expect(r1.done)
    }

    @Test("a reflected proof fails: the labels differ by role")
    func reflectionFails() {
        let a = Side(node: 1, initiator: true)
        let b = Side(node: 1, initiator: true) // same key, also an initiator: its proof is an initiator's
        run(a, b)
        #expect(!a.done && !b.done)
    }

    @Test("a stranger's id, another mode, another plane, garbage: each fails with its own error")
    func refusals() {
        let dialler = Side(node: 1, expect: 2, initiator: true)
        let stranger = Side(node: 3, initiator: false)
        #expect(dialler.input(stranger.output()) == RC_AUTH_ERROR_STRANGER.rawValue)

        let handshake = Side(node: 1, initiator: true)
        let frames = Side(node: 2, mode: RC_AUTH_MODE_FRAMES, initiator: false)
        #expect(handshake.input(frames.output()) == RC_AUTH_ERROR_MODE.rawValue)

        let ring = Side(node: 1, initiator: true)
        let control = Side(node: 2, channel: RC_AUTH_CHANNEL_CONTROL, initiator: false)
        #expect(ring.input(control.output()) == RC_AUTH_ERROR_MODE.rawValue)

        let victim = Side(node: 2, initiator: false)
        #expect(victim.input(Array("GET / HTTP/1.1\r\n".utf8)) == RC_AUTH_ERROR_MALFORMED.rawValue)
        #expect(victim.input([0]) == RC_AUTH_ERROR_MALFORMED.rawValue, "failure is sticky")
        var length: UInt32 = 99
        _ = rc_auth_handshake_output(&victim.state, &length)
        #expect(length == 0, "a failed handshake says nothing more")

        let echo = Side(node: 2, initiator: false)
        #expect(echo.input(echo.output()) == RC_AUTH_ERROR_STRANGER.rawValue, "our own HELLO echoed back is refused")
    }

    @Test("frame MACs: a tag verifies once, in order; a changed byte, a replay or a reorder fails")
    func frameMAC() throws {
        let key = [UInt8](repeating: 3, count: 32)
        var sender: OpaquePointer?, receiver: OpaquePointer?
        #expect(rc_auth_mac_create(&sender, key) == 0 && rc_auth_mac_create(&receiver, key) == 0)
        defer { rc_auth_mac_destroy(sender); rc_auth_mac_destroy(receiver) }
        func tag(_ frame: [UInt8]) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: Int(RC_AUTH_TAG_BYTES))
            #expect(rc_auth_mac_begin(sender) == 0)
            // Pieces in wire order, as the engine queues them.
            #expect(rc_auth_mac_update(sender, frame, 3) == 0)
            frame.withUnsafeBufferPointer { #expect(rc_auth_mac_update(sender, $0.baseAddress! + 3, frame.count - 3) == 0) }
            #expect(rc_auth_mac_finish(sender, &out) == 0)
            return out
        }
        let first: [UInt8] = Array(0..<40), second: [UInt8] = Array(100..<150)
        let tag1 = tag(first), tag2 = tag(second)
        #expect(rc_auth_mac_verify(receiver, first, first.count, tag1) == 0)
        #expect(rc_auth_mac_verify(receiver, first, first.count, tag1) == RC_AUTH_ERROR_PROOF.rawValue, "a replay")
        var changed = second
        changed[7] ^= 1
        #expect(rc_auth_mac_verify(receiver, changed, changed.count, tag2) == RC_AUTH_ERROR_PROOF.rawValue)
        #expect(rc_auth_mac_count(sender) == 2)
    }

    @Test("sealed frames: AES-256-GCM opens in place to the plaintext in order; a changed byte or a replay fails")
    func sealOpen() {
        let key = [UInt8](repeating: 9, count: 32)
        var sealer: OpaquePointer?, opener: OpaquePointer?
        #expect(rc_auth_seal_create(&sealer, key, true) == 0 && rc_auth_seal_create(&opener, key, false) == 0)
        defer { rc_auth_seal_destroy(sealer); rc_auth_seal_destroy(opener) }
        func seal(_ plain: [UInt8]) -> (header: [UInt8], box: [UInt8], tag: [UInt8]) {
            let header: [UInt8] = [0, 0, UInt8(plain.count >> 8), UInt8(plain.count & 0xff)]
            var box = [UInt8](repeating: 0, count: plain.count)
            var tag = [UInt8](repeating: 0, count: Int(RC_AUTH_SEAL_TAG_BYTES))
            #expect(rc_auth_seal_begin(sealer, header) == 0)
            #expect(rc_auth_seal_update(sealer, &box, plain, plain.count) == 0)
            #expect(rc_auth_seal_finish(sealer, &tag) == 0)
            return (header, box, tag)
        }
        let first: [UInt8] = Array(0..<200), second = [UInt8](repeating: 77, count: 300)
        var (h1, b1, t1) = seal(first)
        let (h2, b2, t2) = seal(second)
        #expect(b1 != first, "the bytes on the wire are not the plaintext")
        let replay = b1
        #expect(rc_auth_seal_open(opener, h1, &b1, b1.count, t1) == 0)
        #expect(b1 == first)
        var again = replay
        #expect(rc_auth_seal_open(opener, h1, &again, again.count, t1) == RC_AUTH_ERROR_PROOF.rawValue, "a replay")
        var changed = b2
        changed[5] ^= 1
        _ = h2
        _ = t2
        #expect(rc_auth_seal_open(opener, h2, &changed, changed.count, t2) == RC_AUTH_ERROR_PROOF.rawValue)
    }
}
