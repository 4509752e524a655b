// WireFixture: one DATA frame's fields and every buffer the codec needs, made once before measuring.

import CRingCast

final class WireFixture {
    let nodes: Int
    let appCount: Int
    private let acks: UnsafeMutablePointer<rc_lcr_ack>
    private let messageClock: UnsafeMutablePointer<UInt64>
    private let appLengths: UnsafeMutablePointer<UInt32>
    private var message: rc_lcr_message
    private var hop: rc_wire_hop
    /// Encoder output: the hop header and the message header, as iov[0] and iov[1] would send them.
    private let hopBuffer: UnsafeMutablePointer<UInt8>
    private let headerBuffer: UnsafeMutablePointer<UInt8>
    private let headerCapacity: Int
    /// Decoder input: the whole frame in one buffer, as a receive buffer would hold it.
    private let frameBytes: UnsafeMutablePointer<UInt8>
    private let frameLength: Int
    /// Decoder output arrays (RC_LCR_NODES_MAX entries each, rc_wire_decode's contract).
    private let decodedAcks: UnsafeMutablePointer<rc_lcr_ack>
    private let decodedClock: UnsafeMutablePointer<UInt64>
    private var decoded = rc_wire_frame()

    init(nodes: Int, appCount: Int, appBytes: UInt32) {
        self.nodes = nodes
        self.appCount = appCount
        let nodesMax = Int(RC_LCR_NODES_MAX)
        acks = .allocate(capacity: nodes)
        for origin in 0..<nodes { acks[origin] = rc_lcr_ack(origin: UInt32(origin), seq: 1_000 + UInt64(origin)) }
        messageClock = .allocate(capacity: nodes)
        for origin in 0..<nodes { messageClock[origin] = 2_000 + UInt64(origin) }
        appLengths = .allocate(capacity: appCount)
        appLengths.initialize(repeating: appBytes, count: appCount)

        let origin: UInt32 = 3
        message = rc_lcr_message()
        message.origin = origin
        message.seq = messageClock[Int(origin)]
        message.burst_size = 0
        message.count = UInt32(appCount)
        message.bytes = UInt64(appCount) * UInt64(appBytes)
        message.clock = UnsafePointer(messageClock)

        headerCapacity = Int(rc_wire_message_header_bytes(UInt32(nodes), UInt32(appCount)))
        let bodyBytes = headerCapacity + Int(message.bytes)
        hop = rc_wire_hop()
        hop.type = UInt8(RC_WIRE_TYPE_DATA.rawValue)
        hop.view_id = 7
        hop.nodes = UInt32(nodes)
        hop.sender = 2
        hop.ack_count = UInt32(nodes)
        hop.acks = UnsafePointer(acks)
        hop.body_bytes = UInt32(bodyBytes)

        hopBuffer = .allocate(capacity: Int(RC_WIRE_HOP_MAX))
        headerBuffer = .allocate(capacity: headerCapacity)
        let hopBytes = Int(rc_wire_hop_bytes(UInt32(nodes)))
        frameLength = hopBytes + bodyBytes
        frameBytes = .allocate(capacity: frameLength)
        frameBytes.initialize(repeating: 0xA5, count: frameLength)
        decodedAcks = .allocate(capacity: nodesMax)
        decodedClock = .allocate(capacity: nodesMax)

        // Build the decoder's input with the encoder, and check the round trip once.
        let written = encode()
        precondition(written == hopBytes + headerCapacity, "encode wrote \(written) bytes")
        frameBytes.update(from: hopBuffer, count: hopBytes)
        (frameBytes + hopBytes).update(from: headerBuffer, count: headerCapacity)
        let seen = decode()
        precondition(seen == Int(message.bytes) + appCount, "decode saw \(seen)")
        precondition(decoded.lcr.has_message && decoded.lcr.message.seq == message.seq, "round trip")
        precondition(decoded.lcr.ack_count == UInt32(nodes) && decoded.frame_bytes == UInt32(frameLength), "round trip")
    }

    deinit {
        acks.deallocate()
        messageClock.deallocate()
        appLengths.deallocate()
        hopBuffer.deallocate()
        headerBuffer.deallocate()
        frameBytes.deallocate()
        decodedAcks.deallocate()
        decodedClock.deallocate()
    }

    /// Writes the message header and the hop header; returns the bytes written (traps on a codec error).
    @inline(__always)
    func encode() -> Int {
        let header = rc_wire_message_header_encode(headerBuffer, headerCapacity, UInt32(nodes), &message, appLengths)
        let hopHeader = rc_wire_hop_encode(hopBuffer, Int(RC_WIRE_HOP_MAX), &hop)
        precondition(header > 0 && hopHeader > 0, "encode failed: \(header) \(hopHeader)")
        return Int(header) + Int(hopHeader)
    }

    /// Decodes the frame and walks its application messages in place; returns payload bytes + messages seen.
    @inline(__always)
    func decode() -> Int {
        let status = rc_wire_decode(frameBytes, frameLength, &decoded, decodedAcks, decodedClock)
        precondition(status == 0, "rc_wire_decode: \(status)")
        var iterator = rc_wire_app_iter()
        rc_wire_app_iter_init(&iterator, decoded.body, decoded.body_bytes)
        var bytes: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        var seen = 0
        while rc_wire_app_next(&iterator, &bytes, &length) { seen += Int(length) + 1 }
        return seen
    }
}
