internal import CRingCast

/// One side of one control-plane connection's handshake: the C state machine of `rc_auth.h` (the one the ring's
/// engine and the fuzzer drive too), owned by the channel thread.
final class ControlAuth {
    /// Why the handshake failed, for logs and counters.
    struct Failure: Error, CustomStringConvertible {
        var code: Int32
        var description: String { String(cString: rc_auth_error_describe(code)) }
    }

    private let state: UnsafeMutablePointer<rc_auth_handshake>

    /// Starts a handshake (the HELLO is ready in ``takeOutput()``).
    /// - Parameters:
    ///   - config: the member's settings (`Security.authConfig`); the channel is set here.
    ///   - initiator: true on the connection this side dialled.
    ///   - expectNode: the peer dialled, or `RC_AUTH_PEER_ANY` on an accepted connection.
    ///   - channel: the plane (bound into the transcript): control, or a service's client port.
    init(config: rc_auth_config, initiator: Bool, expectNode: UInt32,
         channel: rc_auth_channel = RC_AUTH_CHANNEL_CONTROL) throws(Failure) {
        state = .allocate(capacity: 1)
        var config = config
        config.channel = channel.rawValue
        config.expect_node = expectNode
        var nonce = [UInt8](repeating: 0, count: Int(RC_AUTH_NONCE_BYTES))
        var result = nonce.withUnsafeMutableBufferPointer { rc_auth_random($0.baseAddress, $0.count) }
        if result == 0 {
            result = nonce.withUnsafeBufferPointer { rc_auth_handshake_init(state, &config, initiator, $0.baseAddress) }
        }
        guard result == 0 else {
            state.deallocate()
            throw Failure(code: result)
        }
    }

    deinit {
        // The session keys are secrets: wipe them before the memory goes back.
        UnsafeMutableRawPointer(state).initializeMemory(as: UInt8.self, repeating: 0,
                                                        count: MemoryLayout<rc_auth_handshake>.size)
        state.deallocate()
    }

    /// True once the peer proved the cluster key.
    var isDone: Bool { rc_auth_handshake_done(state) }

    /// The peer the handshake proved (valid once ``isDone``).
    var peer: ControlPeer { ControlPeer(node: state.pointee.peer_node, incarnation: state.pointee.peer_incarnation) }

    /// Bytes of the peer's handshake still to come (a HELLO and a PROOF in all): reading no more than this never
    /// takes bytes of the next layer.
    var peerBytesRemaining: Int {
        switch state.pointee.state {
        case RC_AUTH_STATE_HELLO.rawValue: Int(RC_AUTH_HELLO_BYTES + RC_AUTH_PROOF_BYTES) - Int(state.pointee.in_filled)
        case RC_AUTH_STATE_PROOF.rawValue: Int(RC_AUTH_PROOF_BYTES) - Int(state.pointee.in_filled)
        default: 0
        }
    }

    /// Feeds received bytes; returns how many belong to the handshake (the rest are the next layer's).
    /// - Throws: ``Failure``: close the connection, trust nothing it sent.
    func input(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> Int {
        let result = rc_auth_handshake_input(state, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
        guard result >= 0 else { throw Failure(code: result) }
        return Int(result)
    }

    /// True when the channel tags every frame after the handshake (modes frames and encrypt).
    var tagsFrames: Bool {
        state.pointee.config.mode == RC_AUTH_MODE_FRAMES.rawValue || state.pointee.config.mode == RC_AUTH_MODE_ENCRYPT.rawValue
    }

    /// The frame MAC of one direction, keyed by the handshake (valid once ``isDone``).
    /// - Throws: ``Failure`` when libcrypto fails.
    func frameMAC(sending: Bool) throws(Failure) -> ControlFrameMAC {
        precondition(isDone, "session keys exist once the handshake is done")
        let key = withUnsafeBytes(of: sending ? state.pointee.key_send : state.pointee.key_recv) { Array($0) }
        return try ControlFrameMAC(key: key)
    }

    /// What to send now (possibly nothing); taken, so the next call returns only newer bytes.
    func takeOutput() -> [UInt8] {
        var length: UInt32 = 0
        guard let bytes = rc_auth_handshake_output(state, &length), length > 0 else { return [] }
        let out = Array(UnsafeBufferPointer(start: bytes, count: Int(length)))
        rc_auth_handshake_output_advance(state, length)
        return out
    }
}

/// One direction's control-frame MAC (`rc_auth_mac`: HMAC-SHA-256-128 over a frame counter, the length prefix and
/// the payload), so that an attacker on the path cannot change, insert, replay or drop a control frame after the
/// handshake either (modes frames and encrypt; control frames are not encrypted).
final class ControlFrameMAC {
    private let mac: OpaquePointer

    init(key: [UInt8]) throws(ControlAuth.Failure) {
        var pointer: OpaquePointer?
        let result = key.withUnsafeBufferPointer { rc_auth_mac_create(&pointer, $0.baseAddress) }
        guard result == 0, let pointer else { throw ControlAuth.Failure(code: result) }
        mac = pointer
    }

    deinit { rc_auth_mac_destroy(mac) }

    /// The tag of the next frame (`frame` = length prefix and payload, as on the wire).
    func tag(_ frame: ArraySlice<UInt8>) -> [UInt8] {
        var tag = [UInt8](repeating: 0, count: Int(RC_AUTH_TAG_BYTES))
        let ok = rc_auth_mac_begin(mac) == 0
            && frame.withUnsafeBufferPointer { rc_auth_mac_update(mac, $0.baseAddress, $0.count) } == 0
            && rc_auth_mac_finish(mac, &tag) == 0
        precondition(ok, "libcrypto failed to compute an HMAC")
        return tag
    }

    /// Checks the next frame's tag (`payload` without its length prefix, which is rebuilt).
    func verify(payload: [UInt8], tag: [UInt8]) -> Bool {
        var frame: [UInt8] = []
        frame.reserveCapacity(ControlFrame.headerBytes + payload.count)
        ControlFrame.appendHeader(length: payload.count, to: &frame)
        frame += payload
        guard tag.count == Int(RC_AUTH_TAG_BYTES) else { return false }
        return frame.withUnsafeBufferPointer { rc_auth_mac_verify(mac, $0.baseAddress, $0.count, tag) } == 0
    }
}
