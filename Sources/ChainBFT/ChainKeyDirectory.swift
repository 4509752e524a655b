public import RingCastChain
import RingCastKeys

/// The Chain key files of a cluster in one directory, as `ringcast-keys chain --f F --clients C --out DIR` writes
/// them: `replica-<position>.chainkey` and `client-<id>.chainkey`, mode 0600, each holding only that party's
/// pairwise HMAC keys, its Ed25519 signing key and every party's public key (``ChainKeyFile``; spec §4: keys from
/// OpenSSL's RAND_bytes, never from ids). This type only names the files and loads one party's; the format and its
/// checks (permissions, header, sizes, party, key pair) are ``ChainKeyFile``'s and ``ChainIdentity``'s.
public enum ChainKeyDirectory {
    /// The file of `principal` in a key directory.
    public static func fileName(_ principal: ChainPrincipal) -> String {
        switch principal {
        case .replica(let position): "replica-\(position).chainkey"
        case .client(let id): "client-\(id).chainkey"
        }
    }

    /// Generates fresh keys for n = 3f+1 replicas and `clients` clients and writes every party's file (for tests and
    /// the spawning benchmarks; operators use `ringcast-keys chain`).
    public static func generate(directory: String, f: UInt32, clients: UInt32, overwrite: Bool = false) throws(ChainBFTError) {
        do throws(KeyFileError) {
            for file in try ChainKeyFile.generateCluster(f: f, clients: clients) {
                try file.write(to: directory + "/" + file.fileName, overwrite: overwrite)
            }
        } catch {
            throw .keyFile("\(error)")
        }
    }

    /// Loads `principal`'s key ring from its file in `directory` (checked by ``ChainIdentity/load(path:expecting:)``).
    /// - Returns: the ring and the cluster's f and client count, as the file says.
    public static func load(directory: String, principal: ChainPrincipal) throws(ChainBFTError) -> (ring: ChainKeyRing, f: UInt32, clients: UInt32) {
        let party: ChainParty
        switch principal {
        case .replica(let position): party = .replica(position)
        case .client(let id): party = .client(id)
        }
        do throws(ChainIdentityError) {
            let identity = try ChainIdentity.load(path: directory + "/" + fileName(principal), expecting: party)
            return (identity.keyRing, identity.f, identity.clients)
        } catch {
            throw .keyFile("\(error)")
        }
    }
}
