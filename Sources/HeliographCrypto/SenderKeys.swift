import Crypto
import Foundation
import HeliographCore

// Sender keys for private groups.
//
// Every member device keeps one sending chain per group and hands its current position (a
// ``SenderKeyDistribution``) to each other member device inside the pairwise sessions that
// already exist. A post is then encrypted once, whatever the member count: the chain gives a
// fresh message key per post, and an Ed25519 signature by the chain's own signing key proves
// which member device wrote it, since every member holds the chain key and could otherwise
// encrypt in another member's name.
//
// A chain is replaced (a new key id) when the membership changes: a removed member holds the
// old chain keys. The epoch of a distribution is the membership version it was made at, so a
// server can refuse posts under a key older than the latest removal.

/// A sender key's current chain position, as sent inside a pairwise-encrypted control
/// message to every other member device of the group.
///
/// Whoever holds it can decrypt every later post of the chain and none before `iteration`.
public struct SenderKeyDistribution: Codable, Sendable, Equatable {
    /// The group.
    public var chatID: ChatID
    /// Names the chain among the sender's chains of this group; random.
    public var keyID: UInt32
    /// The group's membership version when the chain was made.
    public var epoch: Int64
    /// The number of the next post the chain will encrypt.
    public var iteration: UInt32
    /// The 32-byte chain key at `iteration`.
    public var chainKey: Data
    /// The chain's 32-byte Ed25519 public signing key.
    public var signingKey: Data

    /// Creates the value (check it by building a ``SenderKeyState`` with ``SenderKeyState/init(receiving:)``).
    public init(chatID: ChatID, keyID: UInt32, epoch: Int64, iteration: UInt32, chainKey: Data, signingKey: Data) {
        self.chatID = chatID
        self.keyID = keyID
        self.epoch = epoch
        self.iteration = iteration
        self.chainKey = chainKey
        self.signingKey = signingKey
    }

    /// The format version of ``bytes``.
    static let formatVersion: UInt8 = 1
    /// The length of ``bytes``: version, chat, key id, epoch, iteration, two 32-byte keys.
    static let encodedLength = 1 + 16 + 4 + 8 + 4 + 32 + 32

    /// The binary form (97 bytes): version 1, chat id (16), key id (u32), epoch (i64),
    /// iteration (u32), chain key (32), signing key (32); integers big-endian.
    public var bytes: Data {
        var writer = ByteWriter()
        writer.append(Self.formatVersion)
        writer.append(chatID.rawValue)
        writer.append(keyID)
        writer.append(epoch)
        writer.append(iteration)
        writer.appendFixed(chainKey)
        writer.appendFixed(signingKey)
        return writer.bytes
    }

    /// Parses ``bytes``; anything but exactly one well-formed distribution is `malformed`.
    /// The keys are checked later, by ``SenderKeyState/init(receiving:)``.
    public init(bytes: Data) throws(SessionError) {
        guard bytes.count == Self.encodedLength else {
            throw SessionError(.malformed, "a sender key distribution is \(Self.encodedLength) bytes (got \(bytes.count))")
        }
        var reader = ByteReader(bytes)
        let version = try reader.readByte()
        guard version == Self.formatVersion else {
            throw SessionError(.malformed, "unknown sender key distribution version \(version)")
        }
        chatID = ChatID(try reader.readUUID())
        keyID = try reader.readUInt32()
        epoch = Int64(bitPattern: try reader.readUInt64())
        iteration = try reader.readUInt32()
        chainKey = try reader.readData(32)
        signingKey = try reader.readData(32)
        try reader.requireEnd()
    }
}

/// Who a group post claims to be from, as the server delivered it. It is authenticated with
/// every post (in the AEAD associated data and under the signature), so a server cannot
/// present one device's post as another device's, or move it into another group.
public struct SenderKeyContext: Sendable, Equatable {
    /// The group.
    public var chat: ChatID
    /// The sending account.
    public var senderAccount: AccountID
    /// The sending device.
    public var senderDevice: DeviceID

    /// Creates the value.
    public init(chat: ChatID, senderAccount: AccountID, senderDevice: DeviceID) {
        self.chat = chat
        self.senderAccount = senderAccount
        self.senderDevice = senderDevice
    }

    /// Chat, account and device ids in order (48 bytes).
    fileprivate func write(to writer: inout ByteWriter) {
        writer.append(chat.rawValue)
        writer.append(senderAccount.rawValue)
        writer.append(senderDevice.rawValue)
    }
}

/// One encrypted group post.
///
/// Binary form (``bytes``), integers big-endian:
///
///     version      u8    = 1
///     keyID        u32
///     epoch        i64
///     iteration    u32
///     salt         16 bytes
///     ciphertext   u32 length, then AES-256-GCM ciphertext followed by its 16-byte tag
///     signature    64 bytes, Ed25519
///
/// The first five fields are the header. The AEAD authenticates the header and the
/// ``SenderKeyContext``; the signature covers context, header and ciphertext.
public struct SenderKeyMessage: Sendable, Equatable {
    /// The chain that encrypted it.
    public var keyID: UInt32
    /// The membership version the chain was made at.
    public var epoch: Int64
    /// The post's number in the chain.
    public var iteration: UInt32
    /// 16 fresh random bytes mixed into the post's AES-GCM key and nonce, so a sender whose
    /// state was rolled back (an old key file restored) never reuses a key and nonce pair.
    public var salt: Data
    /// AES-256-GCM ciphertext followed by the 16-byte tag.
    public var ciphertext: Data
    /// Ed25519 signature by the chain's signing key.
    public var signature: Data

    /// Creates the value.
    public init(keyID: UInt32, epoch: Int64, iteration: UInt32, salt: Data, ciphertext: Data, signature: Data) {
        self.keyID = keyID
        self.epoch = epoch
        self.iteration = iteration
        self.salt = salt
        self.ciphertext = ciphertext
        self.signature = signature
    }

    /// The format version written first.
    static let formatVersion: UInt8 = 1
    /// The size of ``salt``.
    static let saltSize = 16
    /// The size of ``signature``.
    static let signatureSize = 64
    /// The longest plaintext a post may carry.
    public static let maximumPlaintextLength = 1 << 20
    /// The AES-GCM tag size.
    static let tagSize = 16

    /// The header as authenticated and signed: version, key id, epoch, iteration, salt.
    var headerBytes: Data {
        var writer = ByteWriter()
        writer.append(Self.formatVersion)
        writer.append(keyID)
        writer.append(epoch)
        writer.append(iteration)
        writer.appendFixed(salt)
        return writer.bytes
    }

    /// The binary form (see the type's documentation).
    public var bytes: Data {
        var writer = ByteWriter()
        writer.appendFixed(headerBytes)
        writer.appendField(ciphertext)
        writer.appendFixed(signature)
        return writer.bytes
    }

    /// Parses ``bytes``: the version must be 1, the ciphertext at least a tag and at most the
    /// largest post, and nothing may follow the signature; otherwise `malformed`.
    public init(bytes: Data) throws(SessionError) {
        var reader = ByteReader(bytes)
        let version = try reader.readByte()
        guard version == Self.formatVersion else {
            throw SessionError(.malformed, "unknown sender key message version \(version)")
        }
        keyID = try reader.readUInt32()
        epoch = Int64(bitPattern: try reader.readUInt64())
        iteration = try reader.readUInt32()
        salt = try reader.readData(Self.saltSize)
        ciphertext = try reader.readField(maximum: Self.maximumPlaintextLength + Self.tagSize)
        guard ciphertext.count >= Self.tagSize else {
            throw SessionError(.malformed, "a sender key ciphertext is at least its \(Self.tagSize)-byte tag")
        }
        signature = try reader.readData(Self.signatureSize)
        try reader.requireEnd()
    }

    /// What the AEAD authenticates: a domain label, the context, the header.
    func associatedData(_ context: SenderKeyContext) -> Data {
        var writer = ByteWriter(label: "heliograph-sender-key-aead-v1")
        context.write(to: &writer)
        writer.appendFixed(headerBytes)
        return writer.bytes
    }

    /// What the signature covers: a domain label, the context, the header, the ciphertext.
    func signedBytes(_ context: SenderKeyContext) -> Data {
        var writer = ByteWriter(label: "heliograph-sender-key-signature-v1")
        context.write(to: &writer)
        writer.appendFixed(headerBytes)
        writer.appendField(ciphertext)
        return writer.bytes
    }
}

/// One sender-key chain: this device's own sending chain (which holds the Ed25519 signing
/// private key) or one received from another member device (public signing key only).
///
/// The chain follows Signal's sender-key construction: message key = HMAC-SHA-256(chain key,
/// 0x01), next chain key = HMAC-SHA-256(chain key, 0x02); each post's AES-256-GCM key and nonce
/// come from its message key and random salt through HKDF-SHA-256. The chain only runs forward,
/// so a device that received the chain at iteration N cannot derive the keys of earlier posts.
///
/// A value type: ``open(_:context:)`` works on a copy that replaces the state only when the
/// post authenticated and its signature verified, so a bad post never changes anything.
/// The `Codable` form holds the chain key (and, for an own chain, the signing private key):
/// it is for the device's local key store only.
public struct SenderKeyState: Codable, Sendable {
    /// How far past the next expected post a received one may be; the keys of the posts in
    /// between are kept for late arrival, at most this many in all (the oldest go first).
    public static let maximumSkipped = 2_000

    /// The group.
    public let chatID: ChatID
    /// The chain's id.
    public let keyID: UInt32
    /// The membership version the chain was made at.
    public let epoch: Int64
    /// The chain's Ed25519 public signing key.
    public let signingKey: Data
    /// Own chain: the number of the next post to encrypt. Received chain: the number of the
    /// next post in order (every earlier one was opened, skipped or precedes the distribution).
    public private(set) var iteration: UInt32
    /// Received chain: the iteration of the distribution; earlier posts can never be opened.
    public let firstIteration: UInt32
    private var chainKey: Data
    /// The signing private key (32-byte seed), for an own chain only.
    private var signingPrivateKey: Data?
    /// Message keys of posts not yet arrived, by ascending iteration.
    private var skippedKeys: [SkippedKey] = []

    private struct SkippedKey: Codable, Sendable {
        var iteration: UInt32
        var messageKey: Data
    }

    /// Whether this is the device's own sending chain.
    public var isSending: Bool { signingPrivateKey != nil }

    /// A new sending chain for `chat`, made at membership version `epoch`: a random key id,
    /// chain key and signing key, at iteration 0.
    public static func generate(chat: ChatID, epoch: Int64) -> SenderKeyState {
        let signing = Curve25519.Signing.PrivateKey()
        return SenderKeyState(
            chatID: chat, keyID: UInt32.random(in: .min ... .max), epoch: epoch, signingKey: signing.publicKey.rawRepresentation,
            iteration: 0, firstIteration: 0, chainKey: .random(count: 32), signingPrivateKey: signing.rawRepresentation)
    }

    private init(
        chatID: ChatID, keyID: UInt32, epoch: Int64, signingKey: Data, iteration: UInt32, firstIteration: UInt32,
        chainKey: Data, signingPrivateKey: Data?
    ) {
        self.chatID = chatID
        self.keyID = keyID
        self.epoch = epoch
        self.signingKey = signingKey
        self.iteration = iteration
        self.firstIteration = firstIteration
        self.chainKey = chainKey
        self.signingPrivateKey = signingPrivateKey
    }

    /// A received chain from another member device's distribution.
    ///
    /// The chain key must be 32 bytes and the signing key a canonical Ed25519 key that is not
    /// of small order (with one, anyone could forge the chain's signatures); else `invalid_key`.
    public init(receiving distribution: SenderKeyDistribution) throws(SessionError) {
        guard distribution.chainKey.count == 32 else {
            throw SessionError(.invalidKey, "a sender chain key must be 32 bytes (got \(distribution.chainKey.count))")
        }
        do {
            _ = try IdentityPublicKey(rawBytes: distribution.signingKey)
        } catch {
            throw SessionError(.invalidKey, "the sender key's signing key is not usable: \(error.message)")
        }
        self.init(
            chatID: distribution.chatID, keyID: distribution.keyID, epoch: distribution.epoch,
            signingKey: distribution.signingKey, iteration: distribution.iteration, firstIteration: distribution.iteration,
            chainKey: distribution.chainKey, signingPrivateKey: nil)
    }

    /// The chain's current position, to send to a member device (a new one, or all of them
    /// after the chain was made). It opens posts from ``iteration`` on.
    public var distribution: SenderKeyDistribution {
        SenderKeyDistribution(
            chatID: chatID, keyID: keyID, epoch: epoch, iteration: iteration, chainKey: chainKey, signingKey: signingKey)
    }

    /// Encrypts and signs one post, and advances the chain.
    ///
    /// Refused with `unknown_session` for a received chain or a context of another group,
    /// `malformed` for a plaintext over ``SenderKeyMessage/maximumPlaintextLength``.
    public mutating func seal(_ plaintext: Data, context: SenderKeyContext) throws(SessionError) -> SenderKeyMessage {
        guard let signingPrivateKey else {
            throw SessionError(.unknownSession, "a sender key received from another device cannot encrypt")
        }
        guard context.chat == chatID else {
            throw SessionError(.unknownSession, "this sender key belongs to chat \(chatID), not \(context.chat)")
        }
        guard plaintext.count <= SenderKeyMessage.maximumPlaintextLength else {
            throw SessionError(
                .malformed, "a group post is at most \(SenderKeyMessage.maximumPlaintextLength) bytes (got \(plaintext.count))")
        }
        // The last number is never used, so the next one always exists.
        guard iteration < UInt32.max else {
            throw SessionError(.tooFarAhead, "this sender key's chain is used up; make a new sender key")
        }
        let (messageKey, nextChainKey) = Self.chainStep(chainKey)
        var message = SenderKeyMessage(
            keyID: keyID, epoch: epoch, iteration: iteration, salt: .random(count: SenderKeyMessage.saltSize),
            ciphertext: Data(), signature: Data())
        let (key, nonce) = Self.messageCipher(messageKey, salt: message.salt)
        guard
            let box = try? AES.GCM.seal(plaintext, using: key, nonce: nonce, authenticating: message.associatedData(context)),
            let signer = try? Curve25519.Signing.PrivateKey(rawRepresentation: signingPrivateKey)
        else {
            throw SessionError(.malformed, "AES-GCM refused to encrypt")
        }
        message.ciphertext = box.ciphertext + box.tag
        guard let signature = try? signer.signature(for: message.signedBytes(context)) else {
            throw SessionError(.malformed, "the post could not be signed")
        }
        message.signature = signature
        chainKey = nextChainKey
        iteration += 1
        return message
    }

    /// Decrypts one post of this received chain and checks its signature. On any error the
    /// state is unchanged.
    ///
    /// In order:
    /// 1. key id, epoch and the context's chat must be this chain's (else `unknown_session`);
    ///    field sizes must be right (else `malformed`).
    /// 2. The post's key: a kept skipped key; or, for a post at or after ``iteration`` and at
    ///    most ``maximumSkipped`` ahead (else `too_far_ahead`), the chain run forward, keeping
    ///    the keys passed over. A post before ``firstIteration`` was never meant for this device
    ///    (`unknown_session`); any other earlier post was opened already (`replayed`).
    /// 3. AES-GCM over header and context (else `tampered`: altered, or attributed to another
    ///    device or group).
    /// 4. The signature by the chain's signing key (else `bad_signature`: a member who holds the
    ///    chain key made it, not the sending device).
    public mutating func open(_ message: SenderKeyMessage, context: SenderKeyContext) throws(SessionError) -> Data {
        guard !isSending else {
            throw SessionError(.unknownSession, "a device's own sender key does not open posts; keep the plaintext of its own")
        }
        guard message.keyID == keyID, message.epoch == epoch, context.chat == chatID else {
            throw SessionError(
                .unknownSession,
                "the post is under sender key \(message.keyID) of epoch \(message.epoch) in chat \(context.chat); "
                    + "this is key \(keyID) of epoch \(epoch) in chat \(chatID)")
        }
        guard message.salt.count == SenderKeyMessage.saltSize, message.signature.count == SenderKeyMessage.signatureSize,
            message.ciphertext.count >= SenderKeyMessage.tagSize
        else {
            throw SessionError(.malformed, "the post's salt, signature or ciphertext has the wrong size")
        }

        var candidate = self
        let messageKey = try candidate.takeMessageKey(for: message.iteration)
        let (key, nonce) = Self.messageCipher(messageKey, salt: message.salt)
        guard
            let box = try? AES.GCM.SealedBox(
                nonce: nonce, ciphertext: message.ciphertext.dropLast(SenderKeyMessage.tagSize),
                tag: message.ciphertext.suffix(SenderKeyMessage.tagSize)),
            let plaintext = try? AES.GCM.open(box, using: key, authenticating: message.associatedData(context))
        else {
            throw SessionError(
                .tampered, "the post does not authenticate: altered in transit, or not from this device and chat")
        }
        // The key was checked when the chain was received.
        guard let verifier = try? IdentityPublicKey(rawBytes: signingKey),
            verifier.isValidSignature(message.signature, for: message.signedBytes(context))
        else {
            throw SessionError(.badSignature, "the post is not signed by the sender key of device \(context.senderDevice)")
        }
        self = candidate
        return plaintext
    }

    /// The message key of post `target`, taken out of the skipped store or derived by running
    /// the chain forward (keeping the keys passed over).
    private mutating func takeMessageKey(for target: UInt32) throws(SessionError) -> Data {
        if target < iteration {
            if let index = skippedKeys.firstIndex(where: { $0.iteration == target }) {
                return skippedKeys.remove(at: index).messageKey
            }
            if target < firstIteration {
                throw SessionError(
                    .unknownSession,
                    "post \(target) precedes this device's copy of the sender key (from post \(firstIteration) on)")
            }
            throw SessionError(.replayed, "post \(target) of this sender key was already opened (or its key expired)")
        }
        let gap = Int(target - iteration)
        guard gap <= Self.maximumSkipped, target < UInt32.max else {
            throw SessionError(
                .tooFarAhead,
                "the post skips \(gap) posts; at most \(Self.maximumSkipped) are kept for late arrival")
        }
        var key = chainKey
        for skipped in iteration..<target {
            let (messageKey, next) = Self.chainStep(key)
            skippedKeys.append(SkippedKey(iteration: skipped, messageKey: messageKey))
            key = next
        }
        // The store is bounded: the oldest keys go first (those posts are then lost for good).
        if skippedKeys.count > Self.maximumSkipped { skippedKeys.removeFirst(skippedKeys.count - Self.maximumSkipped) }
        let (messageKey, next) = Self.chainStep(key)
        chainKey = next
        iteration = target + 1
        return messageKey
    }

    // MARK: - The KDFs

    /// HKDF info for a post's AES key and nonce.
    static let messageKeyInfo = Data("Heliograph_SenderKey_Message_v1".utf8)

    /// Message key = HMAC-SHA-256(chain, 0x01), next chain key = HMAC-SHA-256(chain, 0x02).
    static func chainStep(_ chainKey: Data) -> (messageKey: Data, next: Data) {
        let key = SymmetricKey(data: chainKey)
        return (
            Data(HMAC<SHA256>.authenticationCode(for: [0x01], using: key)),
            Data(HMAC<SHA256>.authenticationCode(for: [0x02], using: key))
        )
    }

    /// HKDF-SHA-256 (message key as input, the post's salt as salt) to 44 bytes: AES-256 key,
    /// then 96-bit nonce.
    static func messageCipher(_ messageKey: Data, salt: Data) -> (key: SymmetricKey, nonce: AES.GCM.Nonce) {
        let output = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: messageKey), salt: salt, info: messageKeyInfo, outputByteCount: 44
        ).withUnsafeBytes { Data($0) }
        // The 12-byte slice always forms a valid nonce.
        return (SymmetricKey(data: output.prefix(32)), try! AES.GCM.Nonce(data: output.suffix(12)))
    }
}
