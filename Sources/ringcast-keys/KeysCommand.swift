import ArgumentParser
import RingCastKeys

/// `ringcast-keys`: makes and checks key files. One subcommand per kind of key (the Chain BFT key files will be
/// `ringcast-keys chain …`); the file code lives in the RingCastKeys module, which the library reads them with.
@main
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ringcast-keys",
        abstract: "Make and check RingCast key files.",
        subcommands: [Cluster.self, Check.self]
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

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check that a cluster key file loads (permissions, format, length); prints nothing secret."
        )

        @Argument(help: ArgumentHelp("The key file.", valueName: "FILE"))
        var file: String

        func run() throws {
            _ = try ClusterKey.load(from: file)
            print("\(file): a valid cluster key (version \(ClusterKey.version), mode 0600)")
        }
    }
}
