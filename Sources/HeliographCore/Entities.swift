import Foundation

/// A registered person or bot. Holds no phone number or email: only a name and a public key.
public struct Account: Sendable, Equatable {
    /// The stable id.
    public var id: AccountID
    /// The public handle.
    public var username: Username
    /// The raw 32-byte Ed25519 public identity key; devices prove they hold its private half.
    public var identityKey: Data
    /// When the account was registered.
    public var createdAt: Date

    /// Creates an account value.
    public init(id: AccountID, username: Username, identityKey: Data, createdAt: Date) {
        self.id = id
        self.username = username
        self.identityKey = identityKey
        self.createdAt = createdAt
    }
}

/// One logged-in installation of an account; each has its own inbox.
public struct Device: Sendable, Equatable {
    /// The stable id.
    public var id: DeviceID
    /// The owning account.
    public var accountID: AccountID
    /// A label chosen at login, such as "laptop".
    public var name: String
    /// When the device logged in.
    public var createdAt: Date
    /// When the device was revoked, if it was; a revoked device is refused everywhere.
    public var revokedAt: Date?
    /// Whether the device still waits for an active device of its account to approve it. A
    /// pending device can do nothing but wait: it gets no token use, no messages, no keys out.
    public var pending: Bool
    /// The agreement key the device committed to when it logged in; an approval must list
    /// exactly this key, and the device can never publish another one.
    public var linkKey: Data?

    /// Whether the device may connect, send and receive.
    public var isActive: Bool { revokedAt == nil && !pending }

    /// Creates a device value.
    public init(
        id: DeviceID, accountID: AccountID, name: String, createdAt: Date, revokedAt: Date? = nil, pending: Bool = false,
        linkKey: Data? = nil
    ) {
        self.id = id
        self.accountID = accountID
        self.name = name
        self.createdAt = createdAt
        self.revokedAt = revokedAt
        self.pending = pending
        self.linkKey = linkKey
    }

    /// How long a device may wait for approval before it is refused for good.
    public static let approvalWindow: TimeInterval = 15 * 60
    /// The most devices of one account that may wait for approval at once.
    public static let maximumPending = 5

    /// The longest device name accepted, in characters.
    public static let maximumNameLength = 64
}

/// A session token's server-side record. The token itself is never stored: only its hash.
public struct DeviceSession: Sendable, Equatable {
    /// SHA-256 of the bearer token.
    public var tokenHash: Data
    /// The account the session belongs to.
    public var accountID: AccountID
    /// The device the session belongs to.
    public var deviceID: DeviceID
    /// When the session was created.
    public var createdAt: Date
    /// After this instant the token is refused with `token_expired`.
    public var expiresAt: Date

    /// Creates a session record.
    public init(tokenHash: Data, accountID: AccountID, deviceID: DeviceID, createdAt: Date, expiresAt: Date) {
        self.tokenHash = tokenHash
        self.accountID = accountID
        self.deviceID = deviceID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// A single-use login challenge: random bytes the device signs with the identity key.
public struct LoginChallenge: Sendable, Equatable {
    /// The challenge id the client echoes back.
    public var id: UUID
    /// The account being logged in to.
    public var accountID: AccountID
    /// The random bytes to sign.
    public var nonce: Data
    /// After this instant the challenge is refused.
    public var expiresAt: Date

    /// Creates a challenge value.
    public init(id: UUID, accountID: AccountID, nonce: Data, expiresAt: Date) {
        self.id = id
        self.accountID = accountID
        self.nonce = nonce
        self.expiresAt = expiresAt
    }
}

/// Who sent an envelope, as the recipient sees it.
public struct EnvelopeSender: Sendable, Equatable, Codable {
    /// The sending account.
    public var accountID: AccountID
    /// The sending account's name at the time of sending.
    public var username: Username
    /// The sending device.
    public var deviceID: DeviceID

    /// Creates a sender value.
    public init(accountID: AccountID, username: Username, deviceID: DeviceID) {
        self.accountID = accountID
        self.username = username
        self.deviceID = deviceID
    }
}

/// One opaque message copy waiting in one device's inbox.
///
/// The payload is bytes the server never interprets: end-to-end ciphertext for private chats.
public struct Envelope: Sendable, Equatable {
    /// The position in the recipient device's inbox, starting at 1, without gaps.
    public var sequence: Int64
    /// The sender's idempotency key.
    public var messageID: MessageID
    /// Who sent it.
    public var sender: EnvelopeSender
    /// The device whose inbox holds it.
    public var recipientDeviceID: DeviceID
    /// When the server accepted it, in whole milliseconds.
    public var serverTime: Date
    /// The opaque content.
    public var payload: Data
    /// The sender's franking commitment, when the message carries one.
    public var frankingCommitment: Data?
    /// The server's franking tag for this copy (see HeliographCrypto's `Franking`).
    public var frankingTag: Data?

    /// Creates an envelope value.
    public init(
        sequence: Int64, messageID: MessageID, sender: EnvelopeSender, recipientDeviceID: DeviceID, serverTime: Date,
        payload: Data, frankingCommitment: Data? = nil, frankingTag: Data? = nil
    ) {
        self.sequence = sequence
        self.messageID = messageID
        self.sender = sender
        self.recipientDeviceID = recipientDeviceID
        self.serverTime = serverTime
        self.payload = payload
        self.frankingCommitment = frankingCommitment
        self.frankingTag = frankingTag
    }
}

/// One device's copy of an outgoing message: end-to-end encryption makes each copy different.
public struct EnvelopeCopy: Sendable, Equatable {
    /// The receiving device.
    public var deviceID: DeviceID
    /// The opaque content for that device.
    public var payload: Data
    /// The server's franking tag for this copy, when the message carries a commitment.
    public var frankingTag: Data?

    /// Creates a copy.
    public init(deviceID: DeviceID, payload: Data, frankingTag: Data? = nil) {
        self.deviceID = deviceID
        self.payload = payload
        self.frankingTag = frankingTag
    }
}

/// A message handed to the store for delivery: one copy per recipient device.
public struct OutgoingMessage: Sendable {
    /// The sender's idempotency key.
    public var messageID: MessageID
    /// Who sends it.
    public var sender: EnvelopeSender
    /// The account addressed.
    public var recipientAccountID: AccountID
    /// The copies to append, one per device (the recipient's, and the sender's other devices).
    public var copies: [EnvelopeCopy]
    /// When the server accepted it.
    public var serverTime: Date
    /// The sender's franking commitment, stored with every copy.
    public var frankingCommitment: Data?
    /// A digest of what the sender asked to deliver, kept with the idempotency record so that a
    /// message id reused for different content is told apart from a retry. Nil: not compared.
    public var contentHash: Data? = nil

    /// Creates an outgoing message with a copy per device.
    public init(
        messageID: MessageID, sender: EnvelopeSender, recipientAccountID: AccountID, copies: [EnvelopeCopy],
        serverTime: Date, frankingCommitment: Data? = nil
    ) {
        self.messageID = messageID
        self.sender = sender
        self.recipientAccountID = recipientAccountID
        self.copies = copies
        self.serverTime = serverTime
        self.frankingCommitment = frankingCommitment
    }

    /// Creates an outgoing message with the same payload for every device.
    public init(
        messageID: MessageID, sender: EnvelopeSender, recipientAccountID: AccountID, recipientDeviceIDs: [DeviceID],
        serverTime: Date, payload: Data
    ) {
        self.init(
            messageID: messageID, sender: sender, recipientAccountID: recipientAccountID,
            copies: recipientDeviceIDs.map { EnvelopeCopy(deviceID: $0, payload: payload) }, serverTime: serverTime)
    }
}

/// What the store committed for one send.
public struct DeliveryReceipt: Sendable, Equatable {
    /// The sender's idempotency key.
    public var messageID: MessageID
    /// The server time of the first (and only) acceptance.
    public var serverTime: Date
    /// The inbox position assigned per recipient device.
    public var sequences: [DeviceID: Int64]
    /// True when this send repeated an earlier one and nothing new was stored.
    public var duplicate: Bool

    /// Creates a receipt.
    public init(messageID: MessageID, serverTime: Date, sequences: [DeviceID: Int64], duplicate: Bool) {
        self.messageID = messageID
        self.serverTime = serverTime
        self.sequences = sequences
        self.duplicate = duplicate
    }
}

extension Date {
    /// The instant truncated to whole milliseconds, the precision stored and sent.
    public var wholeMilliseconds: Date {
        Date(timeIntervalSince1970: Double(millisecondsSince1970) / 1000)
    }

    /// Milliseconds since 1970, as sent on the wire.
    public var millisecondsSince1970: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }

    /// The instant from milliseconds since 1970.
    public init(millisecondsSince1970: Int64) {
        self.init(timeIntervalSince1970: Double(millisecondsSince1970) / 1000)
    }
}
