internal import CRingCast

extension Node {
    /// The engine's state.
    public enum Status: Sendable, Equatable, CustomStringConvertible {
        /// Constructed, not started.
        case created
        /// Listening, connecting to the successor and waiting for the predecessor.
        case connecting
        /// The ring is connected; broadcasts flow.
        case running
        /// Shut down cleanly.
        case stopped
        /// Stopped by an error (a lost connection, a malformed frame, a connect timeout, …).
        case failed(RingCastError)

        public var description: String {
            switch self {
            case .created: "created"
            case .connecting: "connecting"
            case .running: "running"
            case .stopped: "stopped"
            case let .failed(error): "failed: \(error)"
            }
        }
    }

    /// A snapshot of a node's counters: the engine's (`rc_engine_stats`) and this API's.
    public struct Statistics: Sendable, Hashable {
        /// Application messages the engine took from the broadcast ring.
        public var broadcasts: UInt64 = 0
        /// Application messages delivered (all origins) and their payload bytes.
        public var deliveredMessages: UInt64 = 0
        public var deliveredBytes: UInt64 = 0
        /// Own LCR messages (batches) sent, and LCR messages forwarded.
        public var lcrMessagesSent: UInt64 = 0
        public var forwarded: UInt64 = 0
        public var framesIn: UInt64 = 0
        public var framesOut: UInt64 = 0
        public var heartbeatsOut: UInt64 = 0
        /// User-space copies of payload bytes, in messages: the engine's (0 by design) plus one per delivery that
        /// ``DeliveryBatches`` copied into Swift storage.
        public var payloadCopies: UInt64 = 0
        /// The engine's share of ``payloadCopies``.
        public var enginePayloadCopies: UInt64 = 0
        /// Times the engine stopped reading for backpressure (pending or receive buffer full).
        public var receiveStalls: UInt64 = 0
        /// Times the engine found the delivery ring full.
        public var deliveryStalls: UInt64 = 0
        public var bytesIn: UInt64 = 0
        public var bytesOut: UInt64 = 0
        /// Share of sends the kernel really did without copying.
        public var zeroCopyFraction: Double = 0
        /// Pacing diagnostics: nanoseconds the successor link had room while the core had no frame for it, the part
        /// of that while own broadcasts waited for the window, passes that found the window full, frames where
        /// fairness forwarded although an own message was ready, and ACK-only frames.
        public var linkStarvedNanos: UInt64 = 0
        public var linkStarvedWindowNanos: UInt64 = 0
        public var windowFull: UInt64 = 0
        public var ownHeld: UInt64 = 0
        public var ackOnlyFrames: UInt64 = 0
        /// Sockets left on the system's congestion control because the kernel refused ``Limits/congestionControl``.
        public var congestionRefused: UInt64 = 0
        /// The byte window as it stands (adaptive: sized from the ring, ``Limits/windowAdaptive``), and the unloaded ring
        /// round trip it is sized from (own messages, sent → stable; 0 before the first).
        public var windowBytesNow: UInt64 = 0
        public var ringRoundTripMinNanos: UInt64 = 0
        /// Where own messages' time went, summed over ``ownLatencySamples`` own messages delivered (divide for the
        /// means): waiting for the window after the engine had them (``ownAdmitWaitNanos``), in the core's send queue
        /// (fairness, the link: ``ownSendWaitNanos``), round the ring until stable (socket buffers, qdiscs, links, the
        /// other processes: ``ownRingTripNanos``), and stable until delivered (waiting in pending for the messages
        /// before it in ≺: ``ownDeliverWaitNanos``).
        public var ownLatencySamples: UInt64 = 0
        public var ownAdmitWaitNanos: UInt64 = 0
        public var ownSendWaitNanos: UInt64 = 0
        public var ownRingTripNanos: UInt64 = 0
        public var ownDeliverWaitNanos: UInt64 = 0
        /// Authenticated links (``Security``): ring connections whose peer proved the cluster key, connections
        /// closed for a failed or unfinished handshake, frame tags computed and verified (``Security/Authentication/frames``:
        /// the MAC operations), tags that failed (the link is closed, the frame never reaches the core), and accepted
        /// connections refused because the predecessor was already connected.
        public var authHandshakes: UInt64 = 0
        public var authRejected: UInt64 = 0
        public var authMacsOut: UInt64 = 0
        public var authMacsIn: UInt64 = 0
        public var authMacFailures: UInt64 = 0
        public var connectionsRefused: UInt64 = 0
        /// Connections to the ring's port closed at once because the transport had no free connection id (a flood).
        public var acceptsRejected: UInt64 = 0
        /// Frame bytes encrypted and decrypted (``Security/encrypt``; the GCM tags count in ``authMacsOut``/``authMacsIn``).
        public var authCipherBytes: UInt64 = 0
        /// Broadcasts that found the outbox full (the engine's byte window and its staging taken) and waited for room.
        public var broadcastWaits: UInt64 = 0
        /// Own payloads handed to the engine and not yet delivered back (retained, not copied).
        public var broadcastsInFlight: Int = 0
        /// The largest number of deliveries one peek of the delivery ring returned (``DeliveryBatches`` only): with
        /// ``Limits/deliveryBatchCountMax`` > ``Limits/deliveryRingMax`` this is the ring's highest occupancy.
        public var deliveryPeekHighWater: Int = 0
        /// The most batches ``DeliveryBatches`` ever buffered at once (≤ ``Limits/deliveryBatchesBufferedMax``).
        public var deliveryBatchesBufferedHighWater: Int = 0

        public init() {}

        /// The engine's counters (`rc_engine_stats`); the API's own fields stay zero for the caller to fill.
        init(engine stats: rc_engine_stats) {
            broadcasts = stats.broadcasts
            deliveredMessages = stats.delivered_messages
            deliveredBytes = stats.delivered_bytes
            lcrMessagesSent = stats.lcr_messages_sent
            forwarded = stats.forwarded
            framesIn = stats.frames_in
            framesOut = stats.frames_out
            heartbeatsOut = stats.heartbeats_out
            enginePayloadCopies = stats.payload_copies
            payloadCopies = stats.payload_copies
            receiveStalls = stats.recv_stalls
            deliveryStalls = stats.delivery_stalls
            bytesIn = stats.bytes_in
            bytesOut = stats.bytes_out
            zeroCopyFraction = stats.zerocopy_fraction
            linkStarvedNanos = stats.link_starved_ns
            linkStarvedWindowNanos = stats.link_starved_window_ns
            windowFull = stats.window_full
            ownHeld = stats.own_held
            ackOnlyFrames = stats.ack_only_frames
            congestionRefused = stats.congestion_refused
            windowBytesNow = stats.window_bytes_now
            ringRoundTripMinNanos = stats.ring_rtt_min_ns
            ownLatencySamples = stats.own_latency_samples
            ownAdmitWaitNanos = stats.own_admit_wait_ns
            ownSendWaitNanos = stats.own_send_wait_ns
            ownRingTripNanos = stats.own_ring_trip_ns
            ownDeliverWaitNanos = stats.own_deliver_wait_ns
            authHandshakes = stats.auth_handshakes
            authRejected = stats.auth_rejected
            authMacsOut = stats.auth_macs_out
            authMacsIn = stats.auth_macs_in
            authMacFailures = stats.auth_mac_failures
            connectionsRefused = stats.connections_refused
            acceptsRejected = stats.accepts_rejected
            authCipherBytes = stats.auth_cipher_bytes
        }
    }
}
