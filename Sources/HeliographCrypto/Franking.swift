import Crypto
import Foundation
import HeliographCore

/// Message franking: how a recipient can prove to the server what an end-to-end encrypted
/// message said and who sent it, while the server still cannot read any message.
///
/// 1. The sender picks a random franking key per message, puts it inside the ciphertext, and
///    sends the commitment `HMAC-SHA-256(franking key, label ‖ message id ‖ sender ‖ body)`
///    in the clear.
/// 2. The server, on accepting the message, adds a tag
///    `HMAC-SHA-256(server secret, label ‖ commitment ‖ sender ‖ recipient ‖ server time ‖ message id)`
///    per recipient device. It learns nothing about the body: the commitment is keyed by a
///    secret it never sees.
/// 3. The recipient decrypts, recomputes the commitment and drops the message if it differs,
///    so a sender cannot get a message displayed that it could later deny.
/// 4. A report reveals body, franking key and tag; the server recomputes both HMACs. A
///    reporter cannot alter the body (the commitment would change) nor the sender, recipient
///    or time (the tag would change), and cannot forge a tag without the server secret.
public enum Franking {
    /// Size of franking keys, commitments and tags.
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

    /// The server's tag.
    public static func tag(_ context: Context, serverSecret: Data) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: context.bytes, using: SymmetricKey(data: serverSecret)))
    }

    /// Whether `tag` is the server's tag for `context` (constant-time comparison).
    public static func isValidTag(_ tag: Data, for context: Context, serverSecret: Data) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(tag, authenticating: context.bytes, using: SymmetricKey(data: serverSecret))
    }

    /// A fresh server secret.
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
