internal import CRingCast
import CoreMetrics
import Logging

/// How a node sends its own payloads to its successor (`MSG_ZEROCOPY` through io_uring `send_zc`).
public enum ZeroCopyMode: String, Sendable, Hashable, CaseIterable {
    /// Probe the first sends and keep zero-copy only if the kernel really avoids the copy.
    case auto
    /// Zero-copy for every large enough send.
    case on
    /// Plain copying sends (the kernel copies into the socket buffer; user space still copies nothing).
    case off

    var cValue: Int32 {
        switch self {
        case .auto: Int32(RC_IO_ZEROCOPY_AUTO.rawValue)
        case .on: Int32(RC_IO_ZEROCOPY_ON.rawValue)
        case .off: Int32(RC_IO_ZEROCOPY_OFF.rawValue)
        }
    }
}

extension Node {
    /// The bounded queues and timers of one node. Every limit has a documented maximum; memory is allocated
    /// from these at construction and never after.
    public struct Limits: Sendable, Hashable {
        /// Own messages broadcast and not yet delivered locally (the LCR send queue), 1...``windowMax``; at most half of
        /// them not yet stable (acknowledged round the ring).
        public var window: Int
        /// Own payload bytes broadcast and not yet stable (still on their way round the ring), 1...``windowBytesMax`` (one message is always
        /// admitted, so a payload larger than this still goes). With ``windowAdaptive``, the most the adaptive window may grow to.
        public var windowBytes: Int
        /// Size the byte window from the ring's measured round trip and rate (its bandwidth-delay product plus a
        /// margin, `rc_window.h`) instead of keeping ``windowBytes`` in flight: the same throughput with short queues,
        /// so broadcast-to-delivery latency stays near what the ring itself needs. On by default.
        public var windowAdaptive: Bool
        /// Payload bytes a member queues in front of the byte window, in the engine and in `Group`'s outbox each (one
        /// message is always admitted): the engine refills the window from them without waiting for the producer's
        /// thread. Beyond them `broadcast()` waits, so that no queue that adds only latency grows in front of the ring.
        /// 8 KiB by default (one 10 kB message, or 80 of 100 B); 0...``windowBytesMax``.
        public var stagingBytes: Int
        /// Application messages per LCR message (1 = no batching), 1...``batchCountMaxLimit``.
        public var batchCountMax: Int
        /// Payload bytes per LCR message; also the largest payload, 1...``batchBytesMaxLimit``.
        public var batchBytesMax: Int
        /// The fairness mechanism of §2.5.2 (off reproduces Fig. 2.9's starvation of forwarders' own messages).
        public var fairness: Bool
        /// Broadcasts handed over and not yet taken by the engine thread, 1...``broadcastRingMaxLimit``.
        public var broadcastRingMax: Int
        /// Deliveries not yet released by the consumer, ``batchCountMax``...``deliveryRingMaxLimit``.
        public var deliveryRingMax: Int
        /// Bytes of the mirrored receive buffer, ≤ ``receiveBufferBytesMax``; `nil` (the default) lets the engine
        /// derive it from the windows (8 × n × (windowBytes + largest frame), rounded up to a MiB: rc_engine.h says why). A
        /// smaller explicit value is refused by the engine at construction.
        public var receiveBufferBytes: Int?
        /// A heartbeat goes out when the link was idle this long, 1...``heartbeatMillisMax``.
        public var heartbeatMillis: Int
        /// Give up connecting the ring after this long, 1...``connectTimeoutMillisMax``.
        public var connectTimeoutMillis: Int
        /// Zero-copy sends to the successor.
        public var zeroCopy: ZeroCopyMode
        /// TCP congestion control of the ring's sockets (`TCP_CONGESTION`): `"cubic"` by default, the one `ringperf`
        /// measures the raw link with (on the emulated 100 Mbit/s LAN the ring's links idled more under BBR); `""`
        /// keeps the system's. A preference, not a requirement: when the kernel refuses it (an unprivileged process
        /// and a name outside `/proc/sys/net/ipv4/tcp_allowed_congestion_control`, or an algorithm not built), the
        /// socket keeps the system's and ``Node/Statistics/congestionRefused`` counts it. At most
        /// ``congestionControlLengthMax`` characters of `a-z`, `0-9`, `_` and `-`.
        public var congestionControl: String
        /// Delivery batches the ``DeliveryBatches`` sequence buffers (copied, released from the engine) before its
        /// consumer thread stops taking more from the delivery ring, 1...``deliveryBatchesBufferedMaxLimit``.
        public var deliveryBatchesBufferedMax: Int
        /// Deliveries taken from the engine's ring per batch of ``DeliveryBatches``, 1...``deliveryRingMaxLimit``.
        public var deliveryBatchCountMax: Int

        public static let windowMax = Int(RC_LCR_QUEUE_MAX / 4)
        public static let windowBytesMax = Int(UInt32.max)
        public static let batchCountMaxLimit = Int(RC_LCR_BATCH_COUNT_MAX)
        public static let batchBytesMaxLimit = Int(RC_LCR_BATCH_BYTES_MAX)
        public static let broadcastRingMaxLimit = Int(RC_ENGINE_BROADCAST_RING_MAX)
        public static let deliveryRingMaxLimit = Int(RC_ENGINE_DELIVERY_RING_MAX)
        public static let receiveBufferBytesMax = Int(RC_IO_RECV_BUFFER_BYTES_MAX)
        public static let heartbeatMillisMax = Int(RC_ENGINE_HEARTBEAT_MS_MAX)
        public static let connectTimeoutMillisMax = 3_600_000
        public static let deliveryBatchesBufferedMaxLimit = 1 << 16
        public static let congestionControlLengthMax = 15

        /// The engine's defaults (`rc_engine_settings_default`: at the time of writing a window of 1024 messages and
        /// 1 MiB, batches of ≤ 64 messages / 64 KiB, fairness on, broadcast ring 1024, delivery ring 4096, receive
        /// buffer derived, heartbeat 100 ms, connect timeout 10 s, zero-copy off); and for ``DeliveryBatches``
        /// 4 buffered batches of ≤ 256 deliveries.
        public init() {
            var settings = rc_engine_settings()
            rc_engine_settings_default(&settings)
            window = Int(settings.window)
            windowBytes = Int(settings.window_bytes)
            windowAdaptive = settings.window_adaptive
            stagingBytes = Int(settings.staging_bytes)
            batchCountMax = Int(settings.batch_count_max)
            batchBytesMax = Int(settings.batch_bytes_max)
            fairness = settings.fairness
            broadcastRingMax = Int(settings.broadcast_ring_max)
            deliveryRingMax = Int(settings.delivery_ring_max)
            receiveBufferBytes = settings.recv_buffer_bytes == 0 ? nil : Int(settings.recv_buffer_bytes)
            heartbeatMillis = Int(settings.heartbeat_ms)
            connectTimeoutMillis = Int(settings.connect_timeout_ms)
            switch settings.zerocopy {
            case Int32(RC_IO_ZEROCOPY_AUTO.rawValue): zeroCopy = .auto
            case Int32(RC_IO_ZEROCOPY_ON.rawValue): zeroCopy = .on
            default: zeroCopy = .off
            }
            congestionControl = withUnsafeBytes(of: settings.congestion) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            deliveryBatchesBufferedMax = 4
            deliveryBatchCountMax = 256
        }

        /// Checks every limit against its documented range.
        /// - Throws: ``RingCastError/invalidConfiguration(_:)`` naming the first limit out of range.
        public func validate() throws(RingCastError) {
            func check(_ name: String, _ value: Int, _ range: ClosedRange<Int>) throws(RingCastError) {
                guard range.contains(value) else {
                    throw .invalidConfiguration("\(name) = \(value) is outside \(range.lowerBound)...\(range.upperBound)")
                }
            }
            try check("window", window, 1...Self.windowMax)
            try check("windowBytes", windowBytes, 1...Self.windowBytesMax)
            try check("stagingBytes", stagingBytes, 0...Self.windowBytesMax)
            try check("batchCountMax", batchCountMax, 1...Self.batchCountMaxLimit)
            try check("batchBytesMax", batchBytesMax, 1...Self.batchBytesMaxLimit)
            try check("broadcastRingMax", broadcastRingMax, 1...Self.broadcastRingMaxLimit)
            try check("deliveryRingMax", deliveryRingMax, batchCountMax...Self.deliveryRingMaxLimit)
            if let receiveBufferBytes {
                try check("receiveBufferBytes", receiveBufferBytes, 1...Self.receiveBufferBytesMax)
            }
            try check("heartbeatMillis", heartbeatMillis, 1...Self.heartbeatMillisMax)
            try check("connectTimeoutMillis", connectTimeoutMillis, 1...Self.connectTimeoutMillisMax)
            try check("deliveryBatchesBufferedMax", deliveryBatchesBufferedMax, 1...Self.deliveryBatchesBufferedMaxLimit)
            try check("deliveryBatchCountMax", deliveryBatchCountMax, 1...Self.deliveryRingMaxLimit)
            let allowed = congestionControl.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            }
            guard allowed, congestionControl.utf8.count <= Self.congestionControlLengthMax else {
                throw .invalidConfiguration("congestionControl \"\(congestionControl)\" is not a congestion control name "
                    + "(at most \(Self.congestionControlLengthMax) characters of a-z, 0-9, _ and -)")
            }
        }
    }

    /// Where a node sits in the ring and how it is limited. Validated at construction.
    public struct Configuration: Sendable, Hashable {
        /// This node's ring position, `0..<nodeCount` (the LCR core's process index).
        public let position: Int
        /// n, the number of nodes in the ring, 1...``nodeCountMax``.
        public let nodeCount: Int
        /// Where this node listens for its predecessor.
        public let listen: Address
        /// Where this node's successor (position `(position + 1) % nodeCount`) listens.
        public let successor: Address
        /// The view every frame carries; frames of another view are refused.
        public let viewId: UInt64
        /// Queue sizes and timers.
        public let limits: Limits
        /// Where the node says that it started, connected, failed or stopped, and warns about a refused congestion
        /// control (metadata `position`, `view_id`, …). Nothing is logged per message. Not part of equality.
        public var logger = Logger(label: "ringcast")
        /// The backend of this node's engine counters (the DocC article *Observability*; dimensions `group` = ``name``,
        /// `member` = ``position``), updated every half second by a helper thread, never per message; `nil` uses
        /// `MetricsSystem.factory`. Not part of equality.
        public var metricsFactory: (any MetricsFactory)?
        /// The `group` dimension of the metrics. Not part of equality. With ``security``, also the cluster name the
        /// handshake binds (every node of the ring must use the same).
        public var name = "ringcast"
        /// The cluster key and authentication mode of the ring's links (``Security``); open links by default. A
        /// static ring names its nodes by ring position: position p proves itself as node p.
        public var security = Security()

        /// The largest ring this build supports (full vector clocks: n × 8 bytes per LCR message).
        public static let nodeCountMax = Int(RC_LCR_NODES_MAX)

        /// A node of a ring given as its members' addresses in ring order.
        /// - Parameters:
        ///   - position: this node's index in `members`.
        ///   - members: every node's `host:port`, in ring order (each node's successor is the next one).
        ///   - listen: where to listen, when not `members[position]` (e.g. `0.0.0.0:PORT` behind NAT).
        ///   - viewId: the view id every frame carries.
        ///   - limits: queue sizes and timers.
        /// - Throws: ``RingCastError/invalidConfiguration(_:)`` or ``RingCastError/invalidAddress(_:reason:)``.
        public init(position: Int, members: [String], listen: String? = nil, viewId: UInt64 = 1,
                    limits: Limits = Limits()) throws(RingCastError) {
            var addresses: [Address] = []
            for member in members { addresses.append(try Address(member)) }
            guard !addresses.isEmpty else { throw .invalidConfiguration("members is empty") }
            guard Set(addresses).count == addresses.count else {
                throw .invalidConfiguration("members lists an address twice")
            }
            guard addresses.indices.contains(position) else {
                throw .invalidConfiguration("position \(position) is outside 0..<\(addresses.count)")
            }
            try self.init(position: position, nodeCount: addresses.count,
                          listen: try listen.map { text throws(RingCastError) in try Address(text) } ?? addresses[position],
                          successor: addresses[(position + 1) % addresses.count], viewId: viewId, limits: limits)
        }

        /// A node known only by its own listen address and its successor's (how a node process is started).
        /// - Throws: ``RingCastError/invalidConfiguration(_:)``.
        public init(position: Int, nodeCount: Int, listen: Address, successor: Address, viewId: UInt64 = 1,
                    limits: Limits = Limits()) throws(RingCastError) {
            guard (1...Self.nodeCountMax).contains(nodeCount) else {
                throw .invalidConfiguration("nodeCount \(nodeCount) is outside 1...\(Self.nodeCountMax)")
            }
            guard (0..<nodeCount).contains(position) else {
                throw .invalidConfiguration("position \(position) is outside 0..<\(nodeCount)")
            }
            guard nodeCount == 1 || listen != successor else {
                throw .invalidConfiguration("listen and successor are the same address \(listen) in a ring of \(nodeCount)")
            }
            try limits.validate()
            self.position = position
            self.nodeCount = nodeCount
            self.listen = listen
            self.successor = successor
            self.viewId = viewId
            self.limits = limits
        }

        /// Equal when the ring settings are; the logger and the metrics are where reports go, not what the node is.
        public static func == (lhs: Self, rhs: Self) -> Bool {
            lhs.position == rhs.position && lhs.nodeCount == rhs.nodeCount && lhs.listen == rhs.listen
                && lhs.successor == rhs.successor && lhs.viewId == rhs.viewId && lhs.limits == rhs.limits
                && lhs.security == rhs.security
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(position)
            hasher.combine(nodeCount)
            hasher.combine(listen)
            hasher.combine(successor)
            hasher.combine(viewId)
            hasher.combine(limits)
            hasher.combine(security)
        }

        /// The engine's settings (without the delivery handler).
        var engineSettings: rc_engine_settings {
            var settings = rc_engine_settings()
            rc_engine_settings_default(&settings)
            settings.nodes = UInt32(nodeCount)
            settings.`self` = UInt32(position)
            settings.view_id = viewId
            settings.listen = listen.cAddress
            settings.successor = successor.cAddress
            settings.window = UInt32(limits.window)
            settings.window_bytes = UInt32(limits.windowBytes)
            settings.window_adaptive = limits.windowAdaptive
            settings.staging_bytes = UInt32(limits.stagingBytes)
            settings.batch_count_max = UInt32(limits.batchCountMax)
            settings.batch_bytes_max = UInt32(limits.batchBytesMax)
            settings.fairness = limits.fairness
            settings.broadcast_ring_max = UInt32(limits.broadcastRingMax)
            settings.delivery_ring_max = UInt32(limits.deliveryRingMax)
            settings.recv_buffer_bytes = UInt32(limits.receiveBufferBytes ?? 0)
            settings.heartbeat_ms = UInt32(limits.heartbeatMillis)
            settings.connect_timeout_ms = UInt32(limits.connectTimeoutMillis)
            settings.zerocopy = limits.zeroCopy.cValue
            withUnsafeMutableBytes(of: &settings.congestion) { raw in
                raw.initializeMemory(as: UInt8.self, repeating: 0)
                for (index, byte) in limits.congestionControl.utf8.enumerated() { raw[index] = byte }
            }
            security.apply(to: &settings, clusterName: name, node: UInt32(position), incarnation: 0,
                           predecessor: UInt32((position + nodeCount - 1) % nodeCount),
                           successor: UInt32((position + 1) % nodeCount))
            return settings
        }
    }
}
