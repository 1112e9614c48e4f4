import Crypto
import Foundation

/// The clear header of a ratchet message: the sender's current ratchet key, counters, and
/// the message's random salt.
public struct RatchetHeader: Sendable, Equatable {
    /// The sender's current X25519 ratchet public key.
    public var ratchetKey: Data
    /// Messages the sender sent in its previous sending chain.
    public var previousChainLength: UInt32
    /// This message's number in the current sending chain.
    public var messageNumber: UInt32
    /// 16 fresh random bytes mixed into this message's AES-GCM key and nonce (see
    /// ``RatchetSession``); empty only in messages of format version 1, which had none.
    public var salt: Data

    /// The size of ``salt``.
    static let saltSize = 16

    var bytes: Data {
        var writer = ByteWriter()
        writer.appendFixed(ratchetKey)
        writer.append(previousChainLength)
        writer.append(messageNumber)
        writer.appendFixed(salt)
        return writer.bytes
    }
}

/// One encrypted message of a session: header, and AES-256-GCM ciphertext with its tag.
public struct RatchetMessage: Sendable, Equatable {
    /// The clear header (authenticated, not encrypted).
    public var header: RatchetHeader
    /// Ciphertext followed by the 16-byte tag.
    public var ciphertext: Data
}

/// A Double Ratchet session with one remote device, following Signal's published
/// specification: an X25519 DH ratchet, HKDF-SHA-256 root chain, HMAC-SHA-256 symmetric
/// chains, and AES-256-GCM per message (a suite WebCrypto also has, so a browser client can
/// speak it).
///
/// One addition: every message carries a fresh random salt in its authenticated header, and
/// its AES-GCM key and nonce are derived from the message key *and* that salt. A sender whose
/// state was rolled back (an old key file restored after a crash or from a backup) derives
/// the same message keys again, but never encrypts two messages under the same key and nonce,
/// which for AES-GCM would reveal the XOR of the plaintexts and the authentication key.
///
/// A value type: decrypting works on a copy that replaces the session only when the message
/// authenticated, so a tampered or replayed message never changes the state.
public struct RatchetSession: Sendable, Codable {
    /// Skipped message keys kept per session by default; a message further ahead is refused.
    public static let defaultMaximumSkipped = 1_000

    private var rootKey: Data
    private var sendingRatchetPrivateKey: Data
    /// Kept beside the private key: deriving it again would cost a scalar multiplication per message.
    private var sendingRatchetPublicKey: Data
    private var remoteRatchetKey: Data?
    private var sendingChainKey: Data?
    private var receivingChainKey: Data?
    private var sendCount: UInt32 = 0
    private var receiveCount: UInt32 = 0
    private var previousSendCount: UInt32 = 0
    /// Keys of messages that have not arrived yet, oldest first, bounded by `maximumSkipped`.
    private var skippedKeys: [SkippedKey] = []
    /// Ratchet keys the peer used before its current one: a message under one of them whose key
    /// was not kept is a replay (or beyond the bound), not a new ratchet step.
    private var retiredRemoteKeys: [Data] = []
    /// The bound on stored skipped keys.
    public private(set) var maximumSkipped: Int
    /// Both identities; authenticated with every message.
    public private(set) var associatedData: Data
    /// Set on the initiator until the first reply arrives: every message carries the setup
    /// header so the responder can build the session from whichever arrives first.
    public private(set) var pendingSetup: PrekeyHeaderStorage?
    /// Set on the responder: the initiator's base key, to recognise repeated setup messages.
    public private(set) var initiatorBaseKey: Data?

    private struct SkippedKey: Codable, Sendable {
        var ratchetKey: Data
        var messageNumber: UInt32
        var messageKey: Data
    }

    /// The initiator's session, right after ``PQXDH/initiate(from:to:)``.
    public init(initiating setup: PQXDH.Initiation, maximumSkipped: Int = defaultMaximumSkipped) throws(SessionError) {
        let ratchet = AgreementKeyPair()
        let (root, chain) = Self.rootStep(
            rootKey: setup.secret, dhOutput: try ratchet.sharedSecret(with: setup.remoteSignedPrekey))
        rootKey = root
        sendingRatchetPrivateKey = ratchet.privateKeyBytes
        sendingRatchetPublicKey = ratchet.publicKeyBytes
        remoteRatchetKey = setup.remoteSignedPrekey
        sendingChainKey = chain
        self.maximumSkipped = maximumSkipped
        associatedData = setup.associatedData
        pendingSetup = PrekeyHeaderStorage(setup.header)
    }

    /// The responder's session, from the secret of ``PQXDH/respond(to:at:from:device:identity:prekeys:)``.
    /// The signed prekey is the responder's first ratchet key.
    public init(
        responding secret: Data, associatedData: Data, signedPrekey: AgreementKeyPair, initiatorBaseKey: Data,
        maximumSkipped: Int = defaultMaximumSkipped
    ) {
        rootKey = secret
        sendingRatchetPrivateKey = signedPrekey.privateKeyBytes
        sendingRatchetPublicKey = signedPrekey.publicKeyBytes
        self.maximumSkipped = maximumSkipped
        self.associatedData = associatedData
        self.initiatorBaseKey = initiatorBaseKey
    }

    /// Whether this session has received a message from the peer (so the setup header is no
    /// longer sent).
    public var isAcknowledged: Bool { pendingSetup == nil }

    /// Encrypts one message and advances the sending chain.
    public mutating func encrypt(_ plaintext: Data) throws(SessionError) -> RatchetMessage {
        if sendingChainKey == nil {
            // A responder sends before it received a reply to its own key: start a sending chain.
            try startSendingChain()
        }
        guard let chainKey = sendingChainKey else { throw SessionError(.unknownSession, "the session has no sending chain") }
        let (messageKey, nextChainKey) = Self.chainStep(chainKey)
        let header = RatchetHeader(
            ratchetKey: sendingRatchetPublicKey,
            previousChainLength: previousSendCount, messageNumber: sendCount, salt: .random(count: RatchetHeader.saltSize))
        let ciphertext = try Self.seal(
            plaintext, messageKey: messageKey, salt: header.salt, associatedData: associatedData + header.bytes)
        sendingChainKey = nextChainKey
        sendCount += 1
        return RatchetMessage(header: header, ciphertext: ciphertext)
    }

    /// Decrypts one message. On any error the session is unchanged.
    public mutating func decrypt(_ message: RatchetMessage) throws(SessionError) -> Data {
        var candidate = self
        let plaintext = try candidate.decryptAdvancing(message)
        // Only an authenticated message may change the state.
        self = candidate
        return plaintext
    }

    private mutating func decryptAdvancing(_ message: RatchetMessage) throws(SessionError) -> Data {
        let header = message.header
        guard header.ratchetKey.count == 32 else { throw SessionError(.malformed, "a ratchet key must be 32 bytes") }
        guard header.salt.isEmpty || header.salt.count == RatchetHeader.saltSize else {
            throw SessionError(.malformed, "a message salt must be \(RatchetHeader.saltSize) bytes")
        }
        let associated = associatedData + header.bytes

        if let index = skippedKeys.firstIndex(where: {
            $0.ratchetKey == header.ratchetKey && $0.messageNumber == header.messageNumber
        }) {
            let plaintext = try Self.open(
                message.ciphertext, messageKey: skippedKeys[index].messageKey, salt: header.salt, associatedData: associated)
            skippedKeys.remove(at: index)
            pendingSetup = nil
            return plaintext
        }

        if header.ratchetKey != remoteRatchetKey {
            guard !retiredRemoteKeys.contains(header.ratchetKey) else {
                throw SessionError(.replayed, "message \(header.messageNumber) of an earlier chain was already received")
            }
            // A new ratchet key from the peer: finish the old receiving chain, then step.
            try skipMessageKeys(until: header.previousChainLength)
            try ratchetStep(remoteKey: header.ratchetKey)
        } else if header.messageNumber < receiveCount {
            throw SessionError(.replayed, "message \(header.messageNumber) of this chain was already received")
        }
        try skipMessageKeys(until: header.messageNumber)
        guard let chainKey = receivingChainKey else { throw SessionError(.unknownSession, "the session has no receiving chain") }
        let (messageKey, nextChainKey) = Self.chainStep(chainKey)
        let plaintext = try Self.open(
            message.ciphertext, messageKey: messageKey, salt: header.salt, associatedData: associated)
        receivingChainKey = nextChainKey
        receiveCount += 1
        pendingSetup = nil
        return plaintext
    }

    private mutating func skipMessageKeys(until end: UInt32) throws(SessionError) {
        let start = receiveCount
        guard end > start, var chainKey = receivingChainKey else { return }
        guard Int(end - start) <= maximumSkipped else {
            throw SessionError(
                .tooFarAhead,
                "the message skips \(end - start) messages; at most \(maximumSkipped) are kept for late arrival")
        }
        guard let remote = remoteRatchetKey else { return }
        for number in start..<end {
            let (messageKey, next) = Self.chainStep(chainKey)
            skippedKeys.append(SkippedKey(ratchetKey: remote, messageNumber: number, messageKey: messageKey))
            chainKey = next
        }
        // The store is bounded: the oldest keys go first (those messages are then lost for good).
        if skippedKeys.count > maximumSkipped { skippedKeys.removeFirst(skippedKeys.count - maximumSkipped) }
        receivingChainKey = chainKey
        receiveCount = end
    }

    private mutating func ratchetStep(remoteKey: Data) throws(SessionError) {
        if let old = remoteRatchetKey {
            retiredRemoteKeys.append(old)
            if retiredRemoteKeys.count > 16 { retiredRemoteKeys.removeFirst() }
        }
        previousSendCount = sendCount
        sendCount = 0
        receiveCount = 0
        remoteRatchetKey = remoteKey
        let current = try AgreementKeyPair(privateKeyBytes: sendingRatchetPrivateKey)
        let (root, receiving) = Self.rootStep(rootKey: rootKey, dhOutput: try current.sharedSecret(with: remoteKey))
        receivingChainKey = receiving
        rootKey = root
        // A fresh key pair for our next sending chain: this is what heals the session after a
        // compromise, since the attacker does not know the new private key.
        let next = AgreementKeyPair()
        let (nextRoot, sending) = Self.rootStep(rootKey: rootKey, dhOutput: try next.sharedSecret(with: remoteKey))
        sendingRatchetPrivateKey = next.privateKeyBytes
        sendingRatchetPublicKey = next.publicKeyBytes
        sendingChainKey = sending
        rootKey = nextRoot
    }

    private mutating func startSendingChain() throws(SessionError) {
        guard let remote = remoteRatchetKey else {
            // A responder that has not decrypted anything yet has no peer ratchet key.
            throw SessionError(.unknownSession, "the session cannot send before it received its first message")
        }
        let next = AgreementKeyPair()
        let (root, sending) = Self.rootStep(rootKey: rootKey, dhOutput: try next.sharedSecret(with: remote))
        previousSendCount = sendCount
        sendCount = 0
        sendingRatchetPrivateKey = next.privateKeyBytes
        sendingRatchetPublicKey = next.publicKeyBytes
        sendingChainKey = sending
        rootKey = root
    }

    // MARK: - The KDFs

    static let rootInfo = Data("Heliograph_Ratchet_Root_v1".utf8)
    /// Message-key expansion of format version 1 (no salt), kept to open such messages.
    static let messageKeyInfoV1 = Data("Heliograph_Ratchet_MessageKey_v1".utf8)
    /// Message-key expansion with the per-message salt.
    static let messageKeyInfo = Data("Heliograph_Ratchet_MessageKey_v2".utf8)

    /// KDF_RK: HKDF-SHA-256 with the root key as salt and the DH output as input → (root, chain).
    static func rootStep(rootKey: Data, dhOutput: Data) -> (root: Data, chain: Data) {
        let output = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: dhOutput), salt: rootKey, info: rootInfo, outputByteCount: 64
        ).withUnsafeBytes { Data($0) }
        return (output.prefix(32), output.suffix(32))
    }

    /// KDF_CK: message key = HMAC(chain, 0x01), next chain key = HMAC(chain, 0x02).
    static func chainStep(_ chainKey: Data) -> (messageKey: Data, next: Data) {
        let key = SymmetricKey(data: chainKey)
        return (
            Data(HMAC<SHA256>.authenticationCode(for: [0x01], using: key)),
            Data(HMAC<SHA256>.authenticationCode(for: [0x02], using: key))
        )
    }

    /// A message key and the message's salt expand (HKDF-SHA-256, the salt as HKDF salt) to an
    /// AES-256 key and a 96-bit nonce. A message key is meant to be used once; the salt keeps
    /// key and nonce fresh even when a rolled-back sender uses it again. An empty salt is the
    /// expansion of format version 1 (32 zero bytes as HKDF salt), for opening old messages only.
    static func messageCipher(_ messageKey: Data, salt: Data) -> (key: SymmetricKey, nonce: AES.GCM.Nonce) {
        let output = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: messageKey), salt: salt.isEmpty ? Data(repeating: 0, count: 32) : salt,
            info: salt.isEmpty ? messageKeyInfoV1 : messageKeyInfo, outputByteCount: 44
        ).withUnsafeBytes { Data($0) }
        // The 12-byte slice always forms a valid nonce.
        return (SymmetricKey(data: output.prefix(32)), try! AES.GCM.Nonce(data: output.suffix(12)))
    }

    static func seal(_ plaintext: Data, messageKey: Data, salt: Data, associatedData: Data) throws(SessionError) -> Data {
        let (key, nonce) = messageCipher(messageKey, salt: salt)
        guard let box = try? AES.GCM.seal(plaintext, using: key, nonce: nonce, authenticating: associatedData) else {
            throw SessionError(.malformed, "AES-GCM refused to encrypt")
        }
        return box.ciphertext + box.tag
    }

    static func open(_ ciphertext: Data, messageKey: Data, salt: Data, associatedData: Data) throws(SessionError) -> Data {
        let (key, nonce) = messageCipher(messageKey, salt: salt)
        guard ciphertext.count >= 16,
            let box = try? AES.GCM.SealedBox(nonce: nonce, ciphertext: ciphertext.dropLast(16), tag: ciphertext.suffix(16)),
            let plaintext = try? AES.GCM.open(box, using: key, authenticating: associatedData)
        else {
            throw SessionError(.tampered, "the message does not authenticate: altered in transit or not for this session")
        }
        return plaintext
    }
}

/// The setup header kept by an initiator, in a codable form for the key store.
public struct PrekeyHeaderStorage: Sendable, Codable, Equatable {
    /// The encoded header.
    public var bytes: Data

    init(_ header: PrekeyHeader) {
        var writer = ByteWriter()
        header.write(to: &writer)
        bytes = writer.bytes
    }

    /// The header.
    public func header() throws(SessionError) -> PrekeyHeader {
        var reader = ByteReader(bytes)
        let header = try PrekeyHeader.read(from: &reader)
        try reader.requireEnd()
        return header
    }
}
