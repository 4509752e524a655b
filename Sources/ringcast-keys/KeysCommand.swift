import ArgumentParser
import RingCastKeys
#if canImport(Glibc)
import Glibc
#endif

/// `ringcast-keys`: makes and checks key files. One subcommand per kind of key (`cluster`, `chain`); the file code
/// lives in the RingCastKeys module, which the library and ChainBFT read them with.
@main
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ringcast-keys",
        abstract: "Make and check RingCast key files.",
        subcommands: [Cluster.self, Chain.self, Check.self]
    )

    struct Cluster: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new 256-bit cluster key (OpenSSL RAND_bytes), mode 0600.",
            discussion: """
            Copy the file to every member over a channel you trust (scp, configuration management), keep mode 0600, \
            and start each node with --cluster-key FILE --auth handshake|frames.
            """
        )

        @Option(help: ArgumentHelp("Where to write the key.", valueName: "FILE"))
        var out: String

        @Flag(help: "Replace an existing file.")
        var force = false

        func run() throws {
            let key = try ClusterKey.generate()
            try key.write(to: out, overwrite: force)
            // Read back through the loader: the file on disk is exactly what the nodes will accept.
            guard try ClusterKey.load(from: out) == key else { throw ValidationError("\(out): read back differs") }
            print("wrote a 256-bit cluster key to \(out) (mode 0600)")
        }
    }

    struct Chain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the Chain BFT key files of a cluster: one per replica and one per client, mode 0600.",
            discussion: """
            The cluster is n = 3f+1 replicas (chain positions 0 = head … 3f = tail) and --clients clients (ids 0 … \
            clients-1). Into DIR go replica-<position>.chainkey and client-<id>.chainkey. Each file holds only that \
            party's secrets: its pairwise HMAC-SHA-256 keys (a replica: with every other replica and every client; a \
            client: with every replica), its own Ed25519 signing key, and every party's Ed25519 public key. Every key \
            comes from OpenSSL's RAND_bytes, none is derived from an id. Copy each file to its party alone over a \
            channel you trust, keep mode 0600, and check it there with `ringcast-keys check FILE`. The file format is \
            documented with ChainKeyFile (RingCastKeys); ChainIdentity.load(path:) (RingCastChain) reads it.
            """
        )

        @Option(help: ArgumentHelp("Byzantine faults tolerated, 1 … \(ChainKeyFile.fMax); the cluster has 3f+1 replicas.", valueName: "F"))
        var f: UInt32?

        @Option(help: ArgumentHelp("Replicas instead of --f: must be 3f+1 (4, 7, 10, …).", valueName: "N"))
        var replicas: UInt32?

        @Option(help: ArgumentHelp("Clients, 0 … \(ChainKeyFile.clientsMax).", valueName: "COUNT"))
        var clients: UInt32

        @Option(help: ArgumentHelp("The directory to write into (created if missing, mode 0700).", valueName: "DIR"))
        var out: String

        @Flag(help: "Replace existing files.")
        var force = false

        func validate() throws {
            guard (f == nil) != (replicas == nil) else { throw ValidationError("give exactly one of --f and --replicas") }
            if let replicas, replicas < 4 || (replicas - 1) % 3 != 0 {
                throw ValidationError("--replicas \(replicas) is not 3f+1 for some f ≥ 1 (4, 7, 10, …)")
            }
        }

        func run() throws {
            let faults = f ?? (replicas! - 1) / 3
            if mkdir(out, 0o700) != 0 && errno != EEXIST {
                throw ValidationError("\(out): mkdir: \(String(cString: strerror(errno)))")
            }
            let files = try ChainKeyFile.generateCluster(f: faults, clients: clients)
            for file in files {
                let path = out + "/" + file.fileName
                try file.write(to: path, overwrite: force)
                // Read back through the loader: the file on disk is exactly what the party will accept.
                guard try ChainKeyFile.load(path: path, expecting: file.party) == file else {
                    throw ValidationError("\(path): read back differs")
                }
            }
            print("wrote \(files.count) Chain BFT key files (f = \(faults): \(3 * faults + 1) replicas, \(clients) clients) to \(out) (mode 0600)")
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check that a cluster key file or a Chain BFT key file loads (permissions, format, keys); prints nothing secret."
        )

        @Argument(help: ArgumentHelp("The key file.", valueName: "FILE"))
        var file: String

        func run() throws {
            let bytes = try KeyFile.readSecret(at: file, limit: ChainKeyFile.bytesMax)
            if ChainKeyFile.isChainKeyText(String(decoding: bytes, as: UTF8.self)) {
                let keys = try ChainKeyFile.load(path: file)
                print("\(file): a valid Chain BFT key file of \(keys.party) (f = \(keys.f), \(keys.replicas) replicas, \(keys.clients) clients, version \(ChainKeyFile.version), mode 0600)")
            } else {
                _ = try ClusterKey.load(from: file)
                print("\(file): a valid cluster key (version \(ClusterKey.version), mode 0600)")
            }
        }
    }
}
