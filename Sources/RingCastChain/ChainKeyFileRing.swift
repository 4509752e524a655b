public import RingCastKeys

extension ChainPrincipal {
    /// The principal of a key file's party.
    public init(_ party: ChainParty) {
        switch party {
        case .replica(let position): self = .replica(position)
        case .client(let id): self = .client(id)
        }
    }
}

extension ChainKeyFile {
    /// The crypto principal whose file this is.
    public var principal: ChainPrincipal { ChainPrincipal(party) }

    /// This party's OpenSSL key ring: its pairwise MAC keys, its signing key, every party's public key.
    /// - Throws: ``ChainError`` when OpenSSL refuses a key (the loader already checked sizes and the key pair).
    public func keyRing() throws(ChainError) -> ChainKeyRing {
        let ring = try ChainKeyRing(self: principal, replicas: replicas, clients: clients)
        for (peer, key) in macKeys { try ring.setMACKey(peer: ChainPrincipal(peer).raw, key: key) }
        try ring.setSigningKey(signingKey)
        for (position, key) in replicaPublicKeys.enumerated() {
            try ring.setPublicKey(signer: ChainPrincipal.replica(UInt32(position)).raw, key: key)
        }
        for (id, key) in clientPublicKeys.enumerated() {
            try ring.setPublicKey(signer: ChainPrincipal.client(UInt32(id)).raw, key: key)
        }
        return ring
    }
}

/// What a networked replica or client needs from its key file, in one call (for the ChainBFT module).
public struct ChainIdentity {
    /// Whose file it was.
    public let principal: ChainPrincipal
    /// This party's key ring (MACs, signing, public keys).
    public let keyRing: ChainKeyRing
    /// Faults tolerated (n = 3f+1).
    public let f: UInt32
    /// Clients 0 … clients-1.
    public let clients: UInt32
    /// The checked file itself (public keys, the party).
    public let file: ChainKeyFile

    public var replicas: UInt32 { 3 * f + 1 }

    /// Loads and checks a key file (``ChainKeyFile/load(path:)``) and builds the key ring.
    /// - Throws: ``ChainIdentityError``: the file's problem (``KeyFileError``, with the path and what to do), or
    ///   OpenSSL's refusal of a key.
    public static func load(path: String, expecting party: ChainParty? = nil) throws(ChainIdentityError) -> ChainIdentity {
        let file: ChainKeyFile
        do throws(KeyFileError) {
            if let party { file = try ChainKeyFile.load(path: path, expecting: party) } else { file = try ChainKeyFile.load(path: path) }
        } catch { throw .file(error) }
        do throws(ChainError) {
            return ChainIdentity(principal: file.principal, keyRing: try file.keyRing(), f: file.f, clients: file.clients, file: file)
        } catch { throw .crypto(path: path, error) }
    }
}

/// Why ``ChainIdentity/load(path:expecting:)`` failed.
public enum ChainIdentityError: Error, CustomStringConvertible, Equatable {
    case file(KeyFileError)
    case crypto(path: String, ChainError)

    public var description: String {
        switch self {
        case .file(let error): error.description
        case .crypto(let path, let error): "\(path): OpenSSL refused a key: \(error)"
        }
    }
}
