#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
internal import CRingCast

/// The handshake that opens a link to a *service's* client port (RingCastSMR's replicas and ``SMRClient``-style
/// clients, and the snapshot pulls between replicas on that port).
///
/// It is the same challenge–response as the ring and control links (`rc_auth.h`: HMAC-SHA-256 over both ids, both
/// incarnations, the cluster name and a fresh nonce from each side), on a channel of its own, so that a client
/// handshake can never open a ring or control link, nor the reverse. It runs in mode handshake whatever the group's
/// ``Security/authentication`` and ``Security/encrypt``: the client plane's frames are not tagged nor sealed (the
/// handshake proves that the peer holds the cluster key; per-frame integrity and confidentiality cover the ring,
/// and integrity the control plane — see the Security article).
extension Security {
    /// The side of a client link.
    public enum LinkRole: Sendable, Hashable {
        /// The side that connected (a client, or a joiner pulling a snapshot).
        case dialer
        /// The side that accepted (a replica's client port).
        case acceptor
    }

    /// What a client-link handshake proved about the peer.
    public struct LinkPeer: Sendable, Hashable {
        /// The id the peer named itself with (a replica's node id; clients name themselves as they like).
        public let id: UInt32
        /// The peer's incarnation, as it stated it.
        public let incarnation: UInt32
    }

    /// Runs the client-link handshake on a connected, blocking TCP socket, and returns once the peer proved the
    /// cluster key, within ``handshakeTimeoutMillis``. It reads only the handshake's own bytes: what the peer sends
    /// after it stays in the socket for the next layer. With ``Authentication/none`` it returns at once without
    /// sending anything (open links).
    ///
    /// - Parameters:
    ///   - socket: the connected socket (blocking mode; the handshake polls it with the timeout).
    ///   - role: ``LinkRole/dialer`` on the side that connected.
    ///   - clusterName: the group's ``Group/Configuration/name`` (every party must use the same).
    ///   - selfID: the id this side names itself with (bound into the transcript).
    /// - Returns: the peer, or nil on open links.
    /// - Throws: ``RingCastError/authenticationFailed(_:)`` when the peer does not prove the key, runs another mode,
    ///   goes silent past the timeout or closes: close the socket and trust nothing it sent.
    @discardableResult
    public func authenticateClientLink(socket: Int32, role: LinkRole, clusterName: String,
                                       selfID: UInt32) throws(RingCastError) -> LinkPeer? {
        guard isAuthenticated else { return nil }
        try validate(clusterName: clusterName)
        var config = authConfig(clusterName: clusterName, node: selfID, incarnation: 0)
        // The client plane runs the handshake whatever the group's mode (its frames are not tagged), so a client
        // needs only the key and the cluster name, not the ring's --auth/--encrypt.
        config.mode = RC_AUTH_MODE_HANDSHAKE.rawValue
        let handshake: ControlAuth
        do {
            handshake = try ControlAuth(config: config, initiator: role == .dialer, expectNode: RC_AUTH_PEER_ANY,
                                        channel: RC_AUTH_CHANNEL_CLIENT)
        } catch {
            throw .authenticationFailed(error.description)
        }
        let deadline = Self.monotonicMillis() + Int64(handshakeTimeoutMillis)
        var buffer = [UInt8](repeating: 0, count: Int(RC_AUTH_HELLO_BYTES + RC_AUTH_PROOF_BYTES))
        while true {
            let output = handshake.takeOutput()
            if !output.isEmpty { try Self.sendAll(socket, output, deadline: deadline) }
            if handshake.isDone { return LinkPeer(id: handshake.peer.node, incarnation: handshake.peer.incarnation) }
            // Never more than the peer's handshake has left: its next frame belongs to the next layer.
            let want = handshake.peerBytesRemaining
            precondition(want > 0 && want <= buffer.count, "a handshake not done still expects bytes")
            try Self.waitReadable(socket, deadline: deadline)
            let received = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, want, 0) }
            if received < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard received > 0 else {
                throw .authenticationFailed(received == 0 ? "the peer closed the connection during the handshake"
                                                          : "recv: \(String(cString: strerror(errno)))")
            }
            let result = buffer.withUnsafeBytes { raw -> Result<Int, ControlAuth.Failure> in
                do throws(ControlAuth.Failure) { return .success(try handshake.input(UnsafeRawBufferPointer(rebasing: raw[0..<received]))) }
                catch { return .failure(error) }
            }
            if case let .failure(failure) = result { throw .authenticationFailed(failure.description) }
        }
    }

    private static func monotonicMillis() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    private static func waitReadable(_ socket: Int32, deadline: Int64) throws(RingCastError) {
        while true {
            let left = deadline - monotonicMillis()
            guard left > 0 else { throw .authenticationFailed("the peer did not finish the handshake in time") }
            var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(min(left, Int64(Int32.max))))
            if ready > 0 { return }
            if ready < 0 && errno != EINTR { throw .system(call: "poll", errno: errno) }
        }
    }

    private static func sendAll(_ socket: Int32, _ bytes: [UInt8], deadline: Int64) throws(RingCastError) {
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes { send(socket, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if count > 0 {
                sent += count
                continue
            }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                let left = deadline - monotonicMillis()
                guard left > 0 else { throw .authenticationFailed("the peer did not take the handshake in time") }
                var descriptor = pollfd(fd: socket, events: Int16(POLLOUT), revents: 0)
                _ = poll(&descriptor, 1, Int32(min(left, Int64(Int32.max))))
                continue
            }
            throw .authenticationFailed("send: \(String(cString: strerror(errno)))")
        }
    }
}
