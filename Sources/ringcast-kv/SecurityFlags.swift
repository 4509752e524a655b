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
        do {
            return try Security.fromCommandLine(clusterKeyFile: clusterKey, authentication: auth, encrypt: encrypt)
        } catch {
            throw ValidationError(error.reason)
        }
    }
}

/// `--cluster-key`, `--cluster-name` of the client commands: the client plane's handshake.
struct ClientSecurityFlags: ParsableArguments {
    @Option(name: .customLong("cluster-key"), help: ArgumentHelp("The cluster key file of the replicas (mode 0600): needed when they run with one.", valueName: "file"))
    var clusterKey: String?
    @Option(name: .customLong("cluster-name"), help: "The group's name (as given to serve).")
    var clusterName = "ringcast"

    func security() throws -> Security {
        do {
            return try Security.fromCommandLine(clusterKeyFile: clusterKey, authentication: nil)
        } catch {
            throw ValidationError(error.reason)
        }
    }
}

extension RingCastError {
    /// The message of an ``invalidConfiguration(_:)`` (what the command line shows), or the description.
    var reason: String {
        if case let .invalidConfiguration(reason) = self { return reason }
        return description
    }
}
