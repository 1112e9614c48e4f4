import Crypto
import Foundation
import HeliographCore

/// Message franking: how a recipient can prove to the server what an end-to-end encrypted
/// message said and who sent it, while the server still cannot read any message.
///
/// 1. The sender picks a random franking key per message, puts it inside the ciphertext, and
///    sends the commitment `HMAC-SHA-256(franking key, label ‖ message id ‖ sender ‖ body)`
///    in the clear.
/// 2. The server, on accepting the message, adds a tag per recipient device: the id of the
///    server key that made it, then
///    `HMAC-SHA-256(server key, label ‖ commitment ‖ sender ‖ recipient ‖ server time ‖ message id)`
///    (see ``ServerTag``). It learns nothing about the body: the commitment is keyed by a
///    secret it never sees. Server keys are rotated; the id says which one checks a tag.
/// 3. The recipient decrypts, recomputes the commitment and drops the message if it differs,
///    so a sender cannot get a message displayed that it could later deny.
/// 4. A report reveals body, franking key and tag; the server recomputes both HMACs. A
///    reporter cannot alter the body (the commitment would change) nor the sender, recipient
///    or time (the tag would change), and cannot forge a tag without the server key.
public enum Franking {
    /// Size of franking keys, commitments, server keys and the HMAC inside a server tag.
    public static let size = 32

    /// A fresh random franking key.
    public static func newKey() -> Data { Data.random(count: size) }

    /// The sender's commitment to a message body.
    public static func commitment(frankingKey: Data, messageID: String, sender: AccountID, body: Data) -> Data {
        Data(
            HMAC<SHA256>.authenticationCode(
                for: committedBytes(messageID: messageID, sender: sender, body: body), using: SymmetricKey(data: frankingKey)))
    }

    /// The recipient's check after decrypting (constant-time comparison).
    public static func verifyCommitment(
        _ commitment: Data, frankingKey: Data, messageID: String, sender: AccountID, body: Data
    ) throws(SessionError) {
        guard frankingKey.count == size,
            HMAC<SHA256>.isValidAuthenticationCode(
                commitment, authenticating: committedBytes(messageID: messageID, sender: sender, body: body),
                using: SymmetricKey(data: frankingKey))
        else {
            throw SessionError(.badCommitment, "the franking commitment does not match the message")
        }
    }

    private static func committedBytes(messageID: String, sender: AccountID, body: Data) -> Data {
        var writer = ByteWriter(label: "heliograph-franking-commitment-v1")
        writer.appendField(Data(messageID.utf8))
        writer.append(sender.rawValue)
        writer.appendField(body)
        return writer.bytes
    }

    /// What the server's tag binds a commitment to.
    public struct Context: Sendable, Equatable {
        /// The sender's commitment.
        public var commitment: Data
        /// The sending account.
        public var senderAccount: AccountID
        /// The sending device.
        public var senderDevice: DeviceID
        /// The receiving account.
        public var recipientAccount: AccountID
        /// The receiving device.
        public var recipientDevice: DeviceID
        /// The server's acceptance time (ms since 1970).
        public var serverTime: Int64
        /// The sender's message id.
        public var messageID: String

        /// Creates the value.
        public init(
            commitment: Data, senderAccount: AccountID, senderDevice: DeviceID, recipientAccount: AccountID,
            recipientDevice: DeviceID, serverTime: Int64, messageID: String
        ) {
            self.commitment = commitment
            self.senderAccount = senderAccount
            self.senderDevice = senderDevice
            self.recipientAccount = recipientAccount
            self.recipientDevice = recipientDevice
            self.serverTime = serverTime
            self.messageID = messageID
        }

        var bytes: Data {
            var writer = ByteWriter(label: "heliograph-franking-tag-v1")
            writer.appendField(commitment)
            writer.append(senderAccount.rawValue)
            writer.append(senderDevice.rawValue)
            writer.append(recipientAccount.rawValue)
            writer.append(recipientDevice.rawValue)
            writer.append(serverTime)
            writer.appendField(Data(messageID.utf8))
            return writer.bytes
        }
    }

    /// One of the server's keys for tags, with the id that tags name it by.
    public struct ServerKey: Sendable {
        /// The key's id (0 is the secret of versions before key ids, see ``ServerTag``).
        public let id: UInt32
        let key: SymmetricKey

        /// A key from its 32 secret bytes.
        public init(id: UInt32, secret: Data) throws(SessionError) {
            guard secret.count == Franking.size else {
                throw SessionError(.invalidKey, "a franking server key must be \(Franking.size) bytes, not \(secret.count)")
            }
            self.id = id
            self.key = SymmetricKey(data: secret)
        }
    }

    /// The server's tag as envelopes carry it: `01 ‖ key id (u32, big-endian) ‖ HMAC (32)`,
    /// 37 bytes. The key id only selects the key; the HMAC input is the ``Context`` alone, so
    /// a tag of the earlier 32-byte form (the bare HMAC, made before keys had ids) is read as
    /// key id 0 and still checks against that key.
    public struct ServerTag: Sendable, Equatable {
        /// The format version byte.
        public static let version: UInt8 = 1
        /// The size of a tag in the current form.
        public static let size = 1 + 4 + Franking.size
        /// The size of a tag made before key ids (the bare HMAC).
        public static let legacySize = Franking.size
        /// The key id a tag of the earlier 32-byte form is checked with.
        public static let legacyKeyID: UInt32 = 0

        /// The id of the server key that made the tag.
        public var keyID: UInt32
        /// The HMAC.
        public var mac: Data

        /// Creates the value.
        public init(keyID: UInt32, mac: Data) {
            self.keyID = keyID
            self.mac = mac
        }

        /// Parses a tag of either form; anything else is `malformed`.
        public init(bytes: Data) throws(SessionError) {
            if bytes.count == Self.legacySize {
                self.init(keyID: Self.legacyKeyID, mac: Data(bytes))
                return
            }
            var reader = ByteReader(bytes)
            guard bytes.count == Self.size, try reader.readByte() == Self.version else {
                throw SessionError(
                    .malformed,
                    "a franking tag is \(Self.size) bytes starting with version \(Self.version) (or \(Self.legacySize) bytes); got \(bytes.count)"
                )
            }
            self.init(keyID: try reader.readUInt32(), mac: try reader.readData(Franking.size))
        }

        /// The bytes envelopes carry.
        public var bytes: Data {
            var writer = ByteWriter()
            writer.append(Self.version)
            writer.append(keyID)
            writer.appendFixed(mac)
            return writer.bytes
        }
    }

    /// The server's tag over `context`, naming `key`: ``ServerTag/bytes``.
    public static func tag(_ context: Context, key: ServerKey) -> Data {
        ServerTag(keyID: key.id, mac: Data(HMAC<SHA256>.authenticationCode(for: context.bytes, using: key.key))).bytes
    }

    /// Whether `tag` was made by `key` for `context` (constant-time comparison of the HMAC).
    public static func isValidTag(_ tag: ServerTag, for context: Context, key: ServerKey) -> Bool {
        tag.keyID == key.id && HMAC<SHA256>.isValidAuthenticationCode(tag.mac, authenticating: context.bytes, using: key.key)
    }

    /// A fresh server key secret.
    public static func newServerSecret() -> Data { Data.random(count: size) }
}

/// What travels inside the ciphertext: the franking key and the body.
public struct SealedContent: Sendable, Equatable {
    /// The message's franking key.
    public var frankingKey: Data
    /// The application content (Kit encodes its message type here).
    public var body: Data

    /// Creates the value.
    public init(frankingKey: Data, body: Data) {
        self.frankingKey = frankingKey
        self.body = body
    }

    /// The plaintext handed to the ratchet.
    public var bytes: Data {
        var writer = ByteWriter()
        writer.append(UInt8(1))
        writer.appendFixed(frankingKey)
        writer.appendField(body)
        return writer.bytes
    }

    /// Parses a decrypted plaintext.
    public init(bytes: Data) throws(SessionError) {
        var reader = ByteReader(bytes)
        guard try reader.readByte() == 1 else { throw SessionError(.malformed, "unknown content version") }
        frankingKey = try reader.readData(Franking.size)
        body = try reader.readField()
        try reader.requireEnd()
    }
}
