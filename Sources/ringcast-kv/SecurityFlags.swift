import ArgumentParser
import RingCast

/// `--cluster-key`, `--auth`, `--encrypt`, `--cluster-name` of `serve`: the group's links (as `ringcast-node`).
struct ServeSecurityFlags: ParsableArguments {
    @Option(name: .customLong("cluster-key"), help: ArgumentHelp("The cluster key file (ringcast-keys cluster --out FILE; mode 0600). Every ring, control and client connection then proves it (default --auth handshake).", valueName: "file"))
    var clusterKey: String?
    @Option(help: ArgumentHelp("What the ring links prove: none, handshake (default with a key) or frames (a MAC per frame). Client links always run the handshake when there is a key.", valueName: "none|handshake|frames"))
    var auth: String?
    @Flag(help: "Seal every ring frame with AES-256-GCM (needs --cluster-key).")
    var encrypt = false
    @Option(name: .customLong("cluster-name"), help: "The group's name, bound into every handshake (the same on every replica and client).")
    var clusterName = "ringcast"

    func security() throws -> Security {
        var security = try resolveSecurity(keyPath: clusterKey, mode: auth)
        if encrypt {
            guard security.isAuthenticated else { throw ValidationError("--encrypt needs --cluster-key FILE") }
            security.encrypt = true
        }
        return security
    }
}

/// `--cluster-key`, `--cluster-name` of the client commands: the client plane's handshake.
struct ClientSecurityFlags: ParsableArguments {
    @Option(name: .customLong("cluster-key"), help: ArgumentHelp("The cluster key file of the replicas (mode 0600): needed when they run with one.", valueName: "file"))
    var clusterKey: String?
    @Option(name: .customLong("cluster-name"), help: "The group's name (as given to serve).")
    var clusterName = "ringcast"

    func security() throws -> Security {
        try resolveSecurity(keyPath: clusterKey, mode: nil)
    }
}

/// A key without a mode means handshake; a mode other than none needs a key (loaded and checked: mode 0600,
/// format, length).
func resolveSecurity(keyPath: String?, mode text: String?) throws -> Security {
    let mode: Security.Authentication
    if let text {
        guard let parsed = Security.Authentication(rawValue: text.lowercased()) else {
            throw ValidationError("--auth must be none, handshake or frames, not '\(text)'")
        }
        mode = parsed
    } else {
        mode = keyPath == nil ? .none : .handshake
    }
    guard mode != .none else { return Security() }
    guard let keyPath else {
        throw ValidationError("--auth \(mode.rawValue) needs --cluster-key FILE (make one with `ringcast-keys cluster --out FILE`)")
    }
    do {
        return try Security(clusterKeyFile: keyPath, authentication: mode)
    } catch {
        throw ValidationError("--cluster-key: \(error)")
    }
}
