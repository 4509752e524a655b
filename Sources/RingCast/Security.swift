internal import CRingCast
import Logging
import RingCastKeys

/// Who may open a link to a member, and what the links protect: the cluster key and the authentication mode.
///
/// With a cluster key (`ringcast-keys cluster --out FILE`, the same file on every member) every TCP connection of
/// the group — the ring's data links and the control plane — opens with a mutual challenge–response handshake
/// (HMAC-SHA-256 over both node ids, both incarnations, the group's ``Group/Configuration/name`` and a fresh
/// nonce from each side; `rc_auth.h`). A connection that fails it is closed and counted, and nothing it sent
/// reaches the LCR core or the membership layer. ``Authentication/frames`` also puts a MAC on every ring frame,
/// keyed per connection and direction by the handshake.
///
/// Without a key (the default) links are open, as before, and ``Group`` logs a warning: any process that reaches
/// the ports can join, send heartbeats and view changes, and feed frames to the core.
public struct Security: Sendable, Hashable {
    /// What the links prove (`--auth none|handshake|frames`).
    public enum Authentication: String, Sendable, CaseIterable {
        /// Open links.
        case none
        /// Every connection proves the cluster key; frames are not MACed (an attacker on the path can still
        /// inject into an established TCP connection).
        case handshake
        /// The handshake, then an HMAC-SHA-256-128 tag on every ring frame (per connection and direction).
        case frames

        var cValue: UInt32 {
            switch self {
            case .none: RC_AUTH_MODE_NONE.rawValue
            case .handshake: RC_AUTH_MODE_HANDSHAKE.rawValue
            case .frames: RC_AUTH_MODE_FRAMES.rawValue
            }
        }
    }

    /// The mode in force.
    public var authentication: Authentication
    /// The cluster key; required unless ``authentication`` is ``Authentication/none``.
    public var clusterKey: ClusterKey?
    /// A connection must finish its handshake within this (1...60000 ms), or it is closed and counted.
    public var handshakeTimeoutMillis = 2000
    /// Seal every ring frame with AES-256-GCM under the handshake's per-connection keys (`--encrypt`): the frames'
    /// bytes are then confidential and authenticated (the GCM tag replaces the frame MAC). Needs ``authentication``
    /// other than ``Authentication/none``. Control-plane frames stay in clear (authenticated by the handshake only).
    /// Costs one pass of the cipher over each frame at each hop (sealed into a slot of its own, opened in place).
    public var encrypt = false

    /// Open links (no key).
    public init() {
        authentication = .none
        clusterKey = nil
    }

    /// Authenticated links with `clusterKey`.
    public init(clusterKey: ClusterKey, authentication: Authentication = .handshake) {
        self.clusterKey = clusterKey
        self.authentication = authentication
    }

    /// Authenticated links with the key in `clusterKeyFile` (checked: mode 0600, format, length).
    /// - Throws: ``RingCastError/invalidConfiguration(_:)`` with the key file's error.
    public init(clusterKeyFile: String, authentication: Authentication = .handshake) throws(RingCastError) {
        do {
            self.init(clusterKey: try ClusterKey.load(from: clusterKeyFile), authentication: authentication)
        } catch {
            throw .invalidConfiguration("cluster key: \(error)")
        }
    }

    /// The tools' command-line rule (`--cluster-key FILE`, `--auth none|handshake|frames`, `--encrypt`), one for
    /// `ringcast-node` and `ringcast-kv`: a key without a mode means `handshake`; a mode other than `none` needs a key
    /// (loaded and checked: mode 0600, format, length); `--encrypt` needs a key.
    /// - Throws: ``RingCastError/invalidConfiguration(_:)`` with the message to show, naming the flags.
    public static func fromCommandLine(clusterKeyFile keyPath: String?, authentication text: String?,
                                       encrypt: Bool = false) throws(RingCastError) -> Security {
        let mode: Authentication
        if let text {
            guard let parsed = Authentication(rawValue: text.lowercased()) else {
                throw .invalidConfiguration("--auth must be none, handshake or frames, not '\(text)'")
            }
            mode = parsed
        } else {
            mode = keyPath == nil ? .none : .handshake
        }
        guard mode != .none else {
            guard !encrypt else { throw .invalidConfiguration("--encrypt needs --cluster-key FILE") }
            return Security()
        }
        guard let keyPath else {
            throw .invalidConfiguration("--auth \(mode.rawValue) needs --cluster-key FILE (make one with `ringcast-keys cluster --out FILE`)")
        }
        var security: Security
        do {
            security = Security(clusterKey: try ClusterKey.load(from: keyPath), authentication: mode)
        } catch {
            throw .invalidConfiguration("--cluster-key: \(error)")
        }
        security.encrypt = encrypt
        return security
    }

    /// True when links run the handshake.
    public var isAuthenticated: Bool { authentication != .none }

    /// - Throws: ``RingCastError/invalidConfiguration(_:)`` for a mode without a key, a timeout out of range, or a
    ///   cluster name the handshake cannot carry.
    func validate(clusterName: String) throws(RingCastError) {
        guard !isAuthenticated || clusterKey != nil else {
            throw .invalidConfiguration("authentication \(authentication.rawValue) needs a cluster key (ringcast-keys cluster --out FILE)")
        }
        guard !encrypt || isAuthenticated else {
            throw .invalidConfiguration("encrypt needs authentication handshake or frames (and a cluster key)")
        }
        guard (1...60_000).contains(handshakeTimeoutMillis) else {
            throw .invalidConfiguration("handshakeTimeoutMillis \(handshakeTimeoutMillis) is not in 1...60000")
        }
        guard clusterName.utf8.count <= Int(RC_AUTH_CLUSTER_NAME_MAX), !clusterName.utf8.contains(0) else {
            throw .invalidConfiguration("the cluster name \"\(clusterName)\" is longer than \(RC_AUTH_CLUSTER_NAME_MAX) bytes")
        }
    }

    /// The handshake's settings for this member (channel and expected peer are set per connection).
    func authConfig(clusterName: String, node: UInt32, incarnation: UInt32) -> rc_auth_config {
        var config = rc_auth_config()
        config.mode = encrypt ? RC_AUTH_MODE_ENCRYPT.rawValue : authentication.cValue
        config.self_node = node
        config.self_incarnation = incarnation
        config.expect_node = RC_AUTH_PEER_ANY
        config.expect_incarnation = RC_AUTH_PEER_ANY
        if let key = clusterKey?.bytes {
            withUnsafeMutableBytes(of: &config.key) { raw in raw.copyBytes(from: key) }
        }
        withUnsafeMutableBytes(of: &config.cluster) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            for (index, byte) in clusterName.utf8.prefix(Int(RC_AUTH_CLUSTER_NAME_MAX)).enumerated() { raw[index] = byte }
        }
        return config
    }

    /// Fills the engine's authentication settings for a ring link between `predecessor` and `successor`.
    func apply(to settings: inout rc_engine_settings, clusterName: String, node: UInt32, incarnation: UInt32,
               predecessor: UInt32, successor: UInt32) {
        guard isAuthenticated else { return }
        // Group.Configuration.validate() refuses this; a Node.Configuration set up by hand must not run open links
        // believing them authenticated.
        precondition(clusterKey != nil, "Security.authentication \(authentication.rawValue) without a cluster key")
        settings.auth = authConfig(clusterName: clusterName, node: node, incarnation: incarnation)
        settings.auth.channel = RC_AUTH_CHANNEL_RING.rawValue
        settings.predecessor_node = predecessor
        settings.successor_node = successor
        // Incarnations are bound into the transcript, not matched: a view may name a member by an older one.
        settings.predecessor_incarnation = RC_AUTH_PEER_ANY
        settings.successor_incarnation = RC_AUTH_PEER_ANY
        settings.auth_timeout_ms = UInt32(handshakeTimeoutMillis)
    }

    /// Open links are today's behaviour, but never silently: one warning per group at construction.
    func warnIfOpen(_ logger: Logger, group: String, member: UInt32) {
        guard !isAuthenticated else { return }
        logger.warning("""
            links are not authenticated: any process that reaches this member's ports can join, send view changes and \
            inject frames; make a key with `ringcast-keys cluster --out FILE` and set Security
            """,
            metadata: ["group": "\(group)", "member": "\(member)"])
    }
}
