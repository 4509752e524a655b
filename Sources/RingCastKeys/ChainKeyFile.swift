internal import CRingCast

/// One party of a Chain BFT cluster: a replica by its chain position (0 = head … 3f = tail), or a client by its id.
public enum ChainParty: Hashable, Sendable, CustomStringConvertible {
    case replica(UInt32)
    case client(UInt32)

    public var description: String {
        switch self {
        case .replica(let position): "replica \(position)"
        case .client(let id): "client \(id)"
        }
    }
}

/// The key file of one party of a Chain BFT cluster (spec §4): only that party's secrets — its pairwise HMAC-SHA-256
/// keys (with every replica, and a replica's also with every client) and its own Ed25519 signing key — and every
/// party's Ed25519 public key. Made by `ringcast-keys chain`, from OpenSSL's RAND_bytes; never derived from ids.
///
/// ## File format (version 1)
/// A text file, mode 0600, one per party; only that party may hold it:
/// ```
/// # RingCast Chain BFT key file of replica 2. Secret: mode 0600, on that party only.
/// ringcast-chain-keys 1
/// cluster <f> <clients>
/// self replica <position>            (or: self client <id>)
/// signing <64 hex digits>            this party's Ed25519 private key (RFC 8032 seed)
/// public replica <position> <64 hex> one line for every replica 0 … 3f
/// public client <id> <64 hex>        one line for every client 0 … clients-1
/// mac replica <position> <64 hex>    the key shared with that replica (every replica but self)
/// mac client <id> <64 hex>           replicas only: the key shared with that client
/// ```
/// Lines starting with `#` and blank lines are ignored. The loader refuses anything else: an unknown keyword or
/// version, a party out of range, a key of the wrong length, a line given twice, a key missing, a MAC key a party
/// should not have (client–client, or with itself), or a signing key whose public key is not the one listed for self.
///
/// Clients hold a signing key as well: the client-driven switch of the spec needs none (clients only relay signed
/// ABORTs), but replica-initiated switching (spec §11.6, R-Aliph) makes a replica act as a client, and a later
/// signed client message then needs no new key distribution.
public struct ChainKeyFile: Sendable, Equatable, CustomStringConvertible {
    /// The header line's first word.
    public static let header = "ringcast-chain-keys"
    /// The only version written and read.
    public static let version = 1
    /// Bytes of a pairwise MAC key (HMAC-SHA-256; RC_CRYPTO_MAC_KEY_BYTES).
    public static let macKeyBytes = Int(RC_CRYPTO_MAC_KEY_BYTES)
    /// Bytes of an Ed25519 private seed or public key.
    public static let signKeyBytes = Int(RC_CRYPTO_SIGN_KEY_BYTES)
    /// Largest f (n = 3f+1 replicas) the Chain core supports (RC_CHAIN_F_MAX).
    public static let fMax: UInt32 = 21
    /// Most clients a key file describes (the crypto provider holds up to 65536; this bound keeps a replica's file
    /// under ``bytesMax``).
    public static let clientsMax: UInt32 = 4096
    /// The largest Chain key file read: about 170 bytes per party, so 4096 clients and 64 replicas fit.
    public static let bytesMax = 1 << 20

    /// Faults tolerated; the cluster has n = 3f+1 replicas.
    public let f: UInt32
    /// Clients 0 … clients-1.
    public let clients: UInt32
    /// Whose file this is.
    public let party: ChainParty
    /// This party's Ed25519 private key (secret).
    public let signingKey: [UInt8]
    /// Every replica's public key, by position (count 3f+1).
    public let replicaPublicKeys: [[UInt8]]
    /// Every client's public key, by id (count `clients`).
    public let clientPublicKeys: [[UInt8]]
    /// The pairwise MAC keys of this party (secret): with every other replica, and at a replica with every client.
    public let macKeys: [ChainParty: [UInt8]]

    /// n = 3f+1.
    public var replicas: UInt32 { 3 * f + 1 }

    /// A key file's contents, checked as the loader checks a file (see ``validate()``).
    /// - Throws: ``KeyFileError/format(path:reason:)`` with path "-".
    public init(f: UInt32, clients: UInt32, party: ChainParty, signingKey: [UInt8], replicaPublicKeys: [[UInt8]],
                clientPublicKeys: [[UInt8]], macKeys: [ChainParty: [UInt8]]) throws(KeyFileError) {
        self.f = f
        self.clients = clients
        self.party = party
        self.signingKey = signingKey
        self.replicaPublicKeys = replicaPublicKeys
        self.clientPublicKeys = clientPublicKeys
        self.macKeys = macKeys
        try validate(path: "-")
    }

    /// The parties this party shares a MAC key with: every replica but itself, and at a replica every client.
    public static func macPeers(of party: ChainParty, f: UInt32, clients: UInt32) -> [ChainParty] {
        let replicas = (0..<(3 * f + 1)).map(ChainParty.replica)
        switch party {
        case .replica(let me): return replicas.filter { $0 != .replica(me) } + (0..<clients).map(ChainParty.client)
        case .client: return replicas
        }
    }

    /// Checks sizes, ranges, the set of MAC keys and that the signing key matches self's public key.
    func validate(path: String) throws(KeyFileError) {
        func fail(_ reason: String) -> KeyFileError { .format(path: path, reason: reason) }
        guard f >= 1, f <= Self.fMax else { throw fail("f is \(f); it must be 1 … \(Self.fMax)") }
        guard clients <= Self.clientsMax else { throw fail("\(clients) clients; at most \(Self.clientsMax)") }
        switch party {
        case .replica(let position):
            guard position < replicas else { throw fail("self is replica \(position) of only \(replicas) (0 … \(replicas - 1))") }
        case .client(let id):
            guard id < clients else { throw fail("self is client \(id) of only \(clients)") }
        }
        guard signingKey.count == Self.signKeyBytes else { throw fail("the signing key has \(signingKey.count) bytes, not \(Self.signKeyBytes)") }
        guard replicaPublicKeys.count == Int(replicas) else {
            throw fail("\(replicaPublicKeys.count) replica public keys for \(replicas) replicas")
        }
        guard clientPublicKeys.count == Int(clients) else {
            throw fail("\(clientPublicKeys.count) client public keys for \(clients) clients")
        }
        for (index, key) in (replicaPublicKeys + clientPublicKeys).enumerated() where key.count != Self.signKeyBytes {
            throw fail("public key \(index) has \(key.count) bytes, not \(Self.signKeyBytes)")
        }
        let peers = Set(Self.macPeers(of: party, f: f, clients: clients))
        for (peer, key) in macKeys {
            guard peers.contains(peer) else { throw fail("a MAC key with \(peer), which \(party) must not share a key with") }
            guard key.count == Self.macKeyBytes else { throw fail("the MAC key with \(peer) has \(key.count) bytes, not \(Self.macKeyBytes)") }
        }
        if let missing = Self.macPeers(of: party, f: f, clients: clients).first(where: { macKeys[$0] == nil }) {
            throw fail("no MAC key with \(missing)")
        }
        var derived = [UInt8](repeating: 0, count: Self.signKeyBytes)
        guard rc_crypto_openssl_ed25519_public(signingKey, &derived) == 0 else { throw fail("the signing key is not an Ed25519 key") }
        guard derived == publicKey(of: party) else { throw fail("the signing key does not belong to the public key listed for \(party)") }
    }

    /// The public key listed for `party` (which must be in range).
    public func publicKey(of party: ChainParty) -> [UInt8] {
        switch party {
        case .replica(let position): replicaPublicKeys[Int(position)]
        case .client(let id): clientPublicKeys[Int(id)]
        }
    }

    // MARK: generation

    /// Fresh keys for a whole cluster: one file per replica (positions 0 … 3f) then one per client (0 … clients-1).
    /// Every pairwise key and every signing key comes from OpenSSL's RAND_bytes (spec §4: never derived from ids).
    /// - Throws: ``KeyFileError/randomness``, ``KeyFileError/format(path:reason:)`` for f or clients out of range.
    public static func generateCluster(f: UInt32, clients: UInt32) throws(KeyFileError) -> [ChainKeyFile] {
        guard f >= 1, f <= fMax else { throw .format(path: "-", reason: "f is \(f); it must be 1 … \(fMax)") }
        guard clients <= clientsMax else { throw .format(path: "-", reason: "\(clients) clients; at most \(clientsMax)") }
        let parties = (0..<(3 * f + 1)).map(ChainParty.replica) + (0..<clients).map(ChainParty.client)
        var secrets: [[UInt8]] = [], publics: [[UInt8]] = []
        for _ in parties {
            var secret = [UInt8](repeating: 0, count: signKeyBytes), publicKey = secret
            guard rc_crypto_openssl_ed25519_keypair(&secret, &publicKey) == 0 else { throw .randomness }
            secrets.append(secret)
            publics.append(publicKey)
        }
        // One key per unordered pair that needs one (replica–replica, replica–client), held by both ends.
        var pairKeys: [Set<ChainParty>: [UInt8]] = [:]
        for party in parties {
            for peer in macPeers(of: party, f: f, clients: clients) where pairKeys[[party, peer]] == nil {
                var key = [UInt8](repeating: 0, count: macKeyBytes)
                guard rc_crypto_openssl_random(&key, key.count) == 0 else { throw .randomness }
                pairKeys[[party, peer]] = key
            }
        }
        let replicas = Int(3 * f + 1)
        var files: [ChainKeyFile] = []
        for (index, party) in parties.enumerated() {
            var macs: [ChainParty: [UInt8]] = [:]
            for peer in macPeers(of: party, f: f, clients: clients) { macs[peer] = pairKeys[[party, peer]] }
            files.append(try ChainKeyFile(
                f: f, clients: clients, party: party, signingKey: secrets[index],
                replicaPublicKeys: Array(publics[..<replicas]), clientPublicKeys: Array(publics[replicas...]), macKeys: macs))
        }
        return files
    }

    /// The conventional file name: `replica-<position>.chainkey` or `client-<id>.chainkey`.
    public var fileName: String {
        switch party {
        case .replica(let position): "replica-\(position).chainkey"
        case .client(let id): "client-\(id).chainkey"
        }
    }

    // MARK: text

    /// The file's text (version 1).
    public var fileText: String {
        var text = "# RingCast Chain BFT key file of \(party). Secret: mode 0600, on that party only.\n"
        text += "\(Self.header) \(Self.version)\n"
        text += "cluster \(f) \(clients)\n"
        switch party {
        case .replica(let position): text += "self replica \(position)\n"
        case .client(let id): text += "self client \(id)\n"
        }
        text += "signing \(KeyFile.hex(signingKey))\n"
        for (position, key) in replicaPublicKeys.enumerated() { text += "public replica \(position) \(KeyFile.hex(key))\n" }
        for (id, key) in clientPublicKeys.enumerated() { text += "public client \(id) \(KeyFile.hex(key))\n" }
        for peer in Self.macPeers(of: party, f: f, clients: clients) {
            guard let key = macKeys[peer] else { continue }
            switch peer {
            case .replica(let position): text += "mac replica \(position) \(KeyFile.hex(key))\n"
            case .client(let id): text += "mac client \(id) \(KeyFile.hex(key))\n"
            }
        }
        return text
    }

    /// Whether `text` looks like a Chain key file (its first meaningful line names ``header``), so that a checker
    /// can tell it from a cluster key file.
    public static func isChainKeyText(_ text: String) -> Bool {
        text.split(whereSeparator: \.isNewline).first { !$0.hasPrefix("#") && !$0.allSatisfy(\.isWhitespace) }?
            .split(separator: " ").first == Substring(header)
    }

    /// Parses the text of a key file (`path` only names it in errors).
    /// - Throws: ``KeyFileError/format(path:reason:)``.
    public static func parse(_ text: String, path: String = "-") throws(KeyFileError) -> ChainKeyFile {
        func fail(_ line: Int, _ reason: String) -> KeyFileError { .format(path: path, reason: "line \(line): \(reason)") }
        var lines: [(number: Int, words: [Substring])] = []
        for (index, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let words = raw.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if words.isEmpty || words[0].hasPrefix("#") { continue }
            lines.append((index + 1, words))
        }
        guard let first = lines.first else { throw .format(path: path, reason: "empty") }
        guard first.words.count == 2, first.words[0] == Substring(header) else {
            throw fail(first.number, "the first line must be \"\(header) \(version)\"")
        }
        guard first.words[1] == "\(version)" else {
            throw fail(first.number, "version \(first.words[1]) is not known (this build reads \(version))")
        }
        var f: UInt32?, clients: UInt32?, party: ChainParty?, signing: [UInt8]?
        var replicaPublic: [UInt32: [UInt8]] = [:], clientPublic: [UInt32: [UInt8]] = [:]
        var macs: [ChainParty: [UInt8]] = [:]
        func number(_ word: Substring, _ line: Int) throws(KeyFileError) -> UInt32 {
            guard let value = UInt32(word) else { throw fail(line, "\"\(word)\" is not a number") }
            return value
        }
        func key(_ word: Substring, _ line: Int) throws(KeyFileError) -> [UInt8] {
            guard let bytes = KeyFile.unhex(word) else { throw fail(line, "the key is not hexadecimal") }
            return bytes
        }
        func partyWord(_ kind: Substring, _ id: UInt32, _ line: Int) throws(KeyFileError) -> ChainParty {
            switch kind {
            case "replica": return .replica(id)
            case "client": return .client(id)
            default: throw fail(line, "\"\(kind)\" is neither replica nor client")
            }
        }
        for (line, words) in lines.dropFirst() {
            switch words[0] {
            case "cluster":
                guard words.count == 3 else { throw fail(line, "expected \"cluster <f> <clients>\"") }
                guard f == nil else { throw fail(line, "a second cluster line") }
                f = try number(words[1], line)
                clients = try number(words[2], line)
            case "self":
                guard words.count == 3 else { throw fail(line, "expected \"self replica|client <id>\"") }
                guard party == nil else { throw fail(line, "a second self line") }
                party = try partyWord(words[1], try number(words[2], line), line)
            case "signing":
                guard words.count == 2 else { throw fail(line, "expected \"signing <hex>\"") }
                guard signing == nil else { throw fail(line, "a second signing key") }
                signing = try key(words[1], line)
            case "public":
                guard words.count == 4 else { throw fail(line, "expected \"public replica|client <id> <hex>\"") }
                let owner = try partyWord(words[1], try number(words[2], line), line)
                let value = try key(words[3], line)
                switch owner {
                case .replica(let id):
                    guard replicaPublic.updateValue(value, forKey: id) == nil else { throw fail(line, "a second public key of \(owner)") }
                case .client(let id):
                    guard clientPublic.updateValue(value, forKey: id) == nil else { throw fail(line, "a second public key of \(owner)") }
                }
            case "mac":
                guard words.count == 4 else { throw fail(line, "expected \"mac replica|client <id> <hex>\"") }
                let peer = try partyWord(words[1], try number(words[2], line), line)
                guard macs.updateValue(try key(words[3], line), forKey: peer) == nil else { throw fail(line, "a second MAC key with \(peer)") }
            default:
                throw fail(line, "unknown keyword \"\(words[0])\"")
            }
        }
        guard let f, let clients else { throw .format(path: path, reason: "no cluster line") }
        guard let party else { throw .format(path: path, reason: "no self line") }
        guard let signing else { throw .format(path: path, reason: "no signing key") }
        guard f >= 1, f <= fMax else { throw .format(path: path, reason: "f is \(f); it must be 1 … \(fMax)") }
        guard clients <= clientsMax else { throw .format(path: path, reason: "\(clients) clients; at most \(clientsMax)") }
        let n = 3 * f + 1
        if let extra = replicaPublic.keys.first(where: { $0 >= n }) {
            throw .format(path: path, reason: "a public key of replica \(extra), but replicas are 0 … \(n - 1)")
        }
        if let extra = clientPublic.keys.first(where: { $0 >= clients }) {
            throw .format(path: path, reason: "a public key of client \(extra), but there are \(clients) clients")
        }
        var replicaKeys: [[UInt8]] = [], clientKeys: [[UInt8]] = []
        for position in 0..<n {
            guard let key = replicaPublic[position] else { throw .format(path: path, reason: "no public key of replica \(position)") }
            replicaKeys.append(key)
        }
        for id in 0..<clients {
            guard let key = clientPublic[id] else { throw .format(path: path, reason: "no public key of client \(id)") }
            clientKeys.append(key)
        }
        let file = ChainKeyFile(unchecked: f, clients: clients, party: party, signingKey: signing,
                                replicaPublicKeys: replicaKeys, clientPublicKeys: clientKeys, macKeys: macs)
        try file.validate(path: path)
        return file
    }

    private init(unchecked f: UInt32, clients: UInt32, party: ChainParty, signingKey: [UInt8],
                 replicaPublicKeys: [[UInt8]], clientPublicKeys: [[UInt8]], macKeys: [ChainParty: [UInt8]]) {
        self.f = f
        self.clients = clients
        self.party = party
        self.signingKey = signingKey
        self.replicaPublicKeys = replicaPublicKeys
        self.clientPublicKeys = clientPublicKeys
        self.macKeys = macKeys
    }

    // MARK: files

    /// Reads and checks a key file: permissions (regular file, mode without group/other bits), size, then the
    /// format, ranges and keys (see the type's documentation).
    /// - Throws: ``KeyFileError``.
    public static func load(path: String) throws(KeyFileError) -> ChainKeyFile {
        let bytes = try KeyFile.readSecret(at: path, limit: bytesMax)
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .format(path: path, reason: "not UTF-8 text") }
        return try parse(text, path: path)
    }

    /// Reads a key file and checks it is the file of `party` (a replica started with another position's file
    /// would otherwise sign with the wrong key).
    /// - Throws: ``KeyFileError``; ``KeyFileError/format(path:reason:)`` when the file belongs to another party.
    public static func load(path: String, expecting party: ChainParty) throws(KeyFileError) -> ChainKeyFile {
        let file = try load(path: path)
        guard file.party == party else { throw .format(path: path, reason: "this is the key file of \(file.party), not of \(party)") }
        return file
    }

    /// Writes the key file with mode 0600.
    /// - Throws: ``KeyFileError/exists(path:)`` unless `overwrite`, ``KeyFileError/system(call:path:errno:)``.
    public func write(to path: String, overwrite: Bool = false) throws(KeyFileError) {
        try KeyFile.writeSecret(Array(fileText.utf8), to: path, overwrite: overwrite)
    }

    /// Never a secret: the party and the cluster shape.
    public var description: String { "ChainKeyFile(\(party), f=\(f), clients=\(clients), secrets redacted)" }
}
