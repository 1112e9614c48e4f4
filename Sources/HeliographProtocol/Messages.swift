import Foundation
import HeliographCore

// Wire protocol v1: the bodies of requests and responses, shared by HTTP and WebSocket.
// Field names are the JSON keys; binary fields are base64; times are milliseconds since 1970.

/// `register` — POST /v1/accounts: claim a username with an identity key.
public struct RegisterRequest: Codable, Sendable {
    /// The wanted name.
    public var username: String
    /// Raw 32-byte Ed25519 public identity key.
    public var identityKey: Data
    /// Creates the request.
    public init(username: String, identityKey: Data) {
        self.username = username
        self.identityKey = identityKey
    }
}

/// An account as anybody may look it up.
public struct AccountInfo: Codable, Sendable, Equatable {
    /// The account id.
    public var accountId: AccountID
    /// The registered spelling of the name.
    public var username: String
    /// Raw 32-byte Ed25519 public identity key.
    public var identityKey: Data
    /// Registration time (ms).
    public var createdAt: Int64
    /// Active device ids, so a sender can encrypt for each.
    public var devices: [DeviceID]
    /// The account's latest signed device list, if one was published. Clients trust this, not
    /// `devices`: the server cannot sign it.
    public var deviceList: WireDeviceList?
    /// Creates the value.
    public init(
        accountId: AccountID, username: String, identityKey: Data, createdAt: Int64, devices: [DeviceID],
        deviceList: WireDeviceList? = nil
    ) {
        self.accountId = accountId
        self.username = username
        self.identityKey = identityKey
        self.createdAt = createdAt
        self.devices = devices
        self.deviceList = deviceList
    }
}

/// `lookupAccount` — GET /v1/accounts/{username}.
public struct LookupAccountRequest: Codable, Sendable {
    /// The name to find.
    public var username: String
    /// Creates the request.
    public init(username: String) { self.username = username }
}

/// `challenge` — POST /v1/auth/challenge: ask for a nonce to sign.
public struct ChallengeRequest: Codable, Sendable {
    /// The account to log in to.
    public var username: String
    /// Creates the request.
    public init(username: String) { self.username = username }
}

/// A single-use login challenge.
public struct ChallengeResponse: Codable, Sendable {
    /// Echo this id in the login request.
    public var challengeId: UUID
    /// The random bytes to sign.
    public var nonce: Data
    /// Expiry (ms).
    public var expiresAt: Int64
    /// The origin (`scheme://host:port`) the server expects the login proof to name, so a
    /// client that reached it under another name can say so instead of a bare `bad_signature`.
    public var origin: String?
    /// Creates the value.
    public init(challengeId: UUID, nonce: Data, expiresAt: Int64, origin: String? = nil) {
        self.challengeId = challengeId
        self.nonce = nonce
        self.expiresAt = expiresAt
        self.origin = origin
    }
}

/// `login` — POST /v1/auth/login: prove possession of the identity key, get a device and token.
public struct LoginRequest: Codable, Sendable {
    /// The challenge being answered.
    public var challengeId: UUID
    /// A label for the new device, 1–64 characters.
    public var deviceName: String
    /// Ed25519 signature over the login proof bytes.
    public var signature: Data
    /// The new device's X25519 agreement key. Required when the account already has active
    /// devices: the device then waits until one of them approves exactly this key.
    public var agreementKey: Data?
    /// Account recovery, for an account whose devices were all revoked: the new identity key
    /// that replaces the one that signed `signature`.
    public var recovery: IdentityRotation?
    /// Creates the request.
    public init(
        challengeId: UUID, deviceName: String, signature: Data, agreementKey: Data? = nil, recovery: IdentityRotation? = nil
    ) {
        self.challengeId = challengeId
        self.deviceName = deviceName
        self.signature = signature
        self.agreementKey = agreementKey
        self.recovery = recovery
    }
}

/// A new device session.
public struct LoginResponse: Codable, Sendable {
    /// The account logged in to.
    public var accountId: AccountID
    /// The new device.
    public var deviceId: DeviceID
    /// The bearer token; shown once, stored by the server only as a hash.
    public var token: String
    /// Token expiry (ms).
    public var expiresAt: Int64
    /// True when the device waits for approval by an active device of the account; the token
    /// works only once it is approved.
    public var pending: Bool?
    /// Creates the value.
    public init(accountId: AccountID, deviceId: DeviceID, token: String, expiresAt: Int64, pending: Bool? = nil) {
        self.accountId = accountId
        self.deviceId = deviceId
        self.token = token
        self.expiresAt = expiresAt
        self.pending = pending
    }
}

/// `authenticate` — WebSocket only: bind the socket to a device session and start delivery.
public struct AuthenticateRequest: Codable, Sendable {
    /// The bearer token from login.
    public var token: String
    /// The last sequence number this device has processed; acknowledges up to it and resumes after it.
    public var after: Int64?
    /// Whether to push the inbox on this socket (default true); false for request-only sockets.
    public var receive: Bool?
    /// Creates the request.
    public init(token: String, after: Int64?, receive: Bool? = nil) {
        self.token = token
        self.after = after
        self.receive = receive
    }
}

/// Who the socket now belongs to.
public struct SessionInfo: Codable, Sendable {
    /// The account.
    public var accountId: AccountID
    /// The registered spelling of the account's name.
    public var username: String
    /// The device.
    public var deviceId: DeviceID
    /// The highest sequence number assigned to this device so far.
    public var lastSequence: Int64
    /// Creates the value.
    public init(accountId: AccountID, username: String, deviceId: DeviceID, lastSequence: Int64) {
        self.accountId = accountId
        self.username = username
        self.deviceId = deviceId
        self.lastSequence = lastSequence
    }
}

/// No parameters: used by `listDevices`, `whoami` and others.
public struct EmptyBody: Codable, Sendable {
    /// Creates the empty value.
    public init() {}
}

/// One device as its owner sees it.
public struct DeviceInfo: Codable, Sendable, Equatable {
    /// The device id.
    public var deviceId: DeviceID
    /// The label chosen at login.
    public var name: String
    /// Login time (ms).
    public var createdAt: Int64
    /// Revocation time (ms), if revoked.
    public var revokedAt: Int64?
    /// Whether this is the device making the request.
    public var current: Bool
    /// True while the device waits for approval.
    public var pending: Bool?
    /// For a waiting device: the agreement key it committed to at login, from which an active
    /// device recomputes the link code the new device shows.
    public var linkKey: Data?
    /// Creates the value.
    public init(
        deviceId: DeviceID, name: String, createdAt: Int64, revokedAt: Int64?, current: Bool, pending: Bool? = nil,
        linkKey: Data? = nil
    ) {
        self.deviceId = deviceId
        self.name = name
        self.createdAt = createdAt
        self.revokedAt = revokedAt
        self.current = current
        self.pending = pending
        self.linkKey = linkKey
    }
}

/// `listDevices` — GET /v1/devices.
public struct DeviceListResponse: Codable, Sendable {
    /// Every device of the account, revoked ones included.
    public var devices: [DeviceInfo]
    /// Creates the value.
    public init(devices: [DeviceInfo]) { self.devices = devices }
}

/// `revokeDevice` — DELETE /v1/devices/{deviceId}.
public struct RevokeDeviceRequest: Codable, Sendable {
    /// The device to revoke (may be the current one: that is a logout).
    public var deviceId: DeviceID
    /// The account's new signed device list, without the device and naming it revoked.
    /// Required when the account has a published list, so the revocation is signed too.
    public var deviceList: WireDeviceList?
    /// Optional identity rotation: after it the old identity key logs nothing in; `deviceList`
    /// must then be signed by the new key.
    public var rotation: IdentityRotation?
    /// Creates the request.
    public init(deviceId: DeviceID, deviceList: WireDeviceList? = nil, rotation: IdentityRotation? = nil) {
        self.deviceId = deviceId
        self.deviceList = deviceList
        self.rotation = rotation
    }
}

/// A new identity key for an account, signed by the old key and by the new one (see
/// HeliographCrypto's `IdentityRotationProof` for the signed bytes).
public struct IdentityRotation: Codable, Sendable, Equatable {
    /// The new Ed25519 identity public key.
    public var newIdentityKey: Data
    /// The old key's signature over the rotation statement.
    public var oldSignature: Data
    /// The new key's signature over the same statement.
    public var newSignature: Data
    /// Creates the value.
    public init(newIdentityKey: Data, oldSignature: Data, newSignature: Data) {
        self.newIdentityKey = newIdentityKey
        self.oldSignature = oldSignature
        self.newSignature = newSignature
    }
}

/// `approveDevice` — POST /v1/devices/{id}/approve: an active device approves a waiting one.
public struct ApproveDeviceRequest: Codable, Sendable {
    /// The waiting device.
    public var deviceId: DeviceID
    /// The account's new signed device list, listing the device with the key it committed to.
    public var deviceList: WireDeviceList
    /// Creates the request.
    public init(deviceId: DeviceID, deviceList: WireDeviceList) {
        self.deviceId = deviceId
        self.deviceList = deviceList
    }
}

/// `send` — POST /v1/messages: deliver a message to every device of an account.
///
/// Either one `payload` for every device, or `copies`: one ciphertext per device — every active
/// device of the recipient, plus every other active device of the sender (so a person's own
/// devices see what it sent). With copies the device sets must match exactly, or the send is
/// refused with `device_list_mismatch` naming the current devices.
public struct SendRequest: Codable, Sendable {
    /// The idempotency key: a retry with the same id is delivered once.
    public var messageId: MessageID
    /// The recipient's username (an optional leading `@` is accepted).
    public var to: String
    /// The exact devices the payload was encrypted for; when given it must equal the active list.
    public var devices: [DeviceID]?
    /// The same opaque content for every device.
    public var payload: Data?
    /// One opaque content per device (end-to-end encrypted sends).
    public var copies: [WireCopy]?
    /// The sender's 32-byte franking commitment; the server then tags every copy.
    public var frankingCommitment: Data?
    /// The blobs (attachment ciphertexts the sender uploaded) the message refers to: the
    /// recipient account may then download them. Their keys travel inside the encrypted payload.
    public var attachments: [BlobHash]?
    /// Creates a request with one payload for all devices.
    public init(messageId: MessageID, to: String, devices: [DeviceID]? = nil, payload: Data) {
        self.messageId = messageId
        self.to = to
        self.devices = devices
        self.payload = payload
    }
    /// Creates a request with one copy per device.
    public init(messageId: MessageID, to: String, copies: [WireCopy], frankingCommitment: Data?) {
        self.messageId = messageId
        self.to = to
        self.copies = copies
        self.frankingCommitment = frankingCommitment
    }
}

/// The acknowledgement of a send, given only after the store committed it.
public struct SendResponse: Codable, Sendable, Equatable {
    /// The idempotency key.
    public var messageId: MessageID
    /// Acceptance time (ms), the same on a retry.
    public var serverTime: Int64
    /// How many device inboxes received it.
    public var deviceCount: Int
    /// Whether this was a retry of an already accepted send.
    public var duplicate: Bool
    /// Creates the value.
    public init(messageId: MessageID, serverTime: Int64, deviceCount: Int, duplicate: Bool) {
        self.messageId = messageId
        self.serverTime = serverTime
        self.deviceCount = deviceCount
        self.duplicate = duplicate
    }
}

/// The sender of an envelope on the wire.
public struct WireSender: Codable, Sendable, Equatable {
    /// The sending account.
    public var accountId: AccountID
    /// Its name.
    public var username: String
    /// The sending device.
    public var deviceId: DeviceID
    /// Creates the value.
    public init(accountId: AccountID, username: String, deviceId: DeviceID) {
        self.accountId = accountId
        self.username = username
        self.deviceId = deviceId
    }
}

/// An envelope on the wire.
public struct WireEnvelope: Codable, Sendable, Equatable {
    /// Position in the receiving device's inbox.
    public var seq: Int64
    /// The sender's idempotency key.
    public var messageId: MessageID
    /// Who sent it.
    public var sender: WireSender
    /// Acceptance time (ms).
    public var serverTime: Int64
    /// The opaque content.
    public var payload: Data
    /// The sender's franking commitment, if the message carries one.
    public var frankingCommitment: Data?
    /// The server's franking tag for this device's copy.
    public var frankingTag: Data?
    /// Creates the value.
    public init(
        seq: Int64, messageId: MessageID, sender: WireSender, serverTime: Int64, payload: Data, frankingCommitment: Data? = nil,
        frankingTag: Data? = nil
    ) {
        self.seq = seq
        self.messageId = messageId
        self.sender = sender
        self.serverTime = serverTime
        self.payload = payload
        self.frankingCommitment = frankingCommitment
        self.frankingTag = frankingTag
    }
}

extension WireEnvelope {
    /// The wire form of a stored envelope.
    public init(_ envelope: Envelope) {
        self.init(
            seq: envelope.sequence,
            messageId: envelope.messageID,
            sender: WireSender(
                accountId: envelope.sender.accountID, username: envelope.sender.username.display,
                deviceId: envelope.sender.deviceID),
            serverTime: envelope.serverTime.millisecondsSince1970,
            payload: envelope.payload,
            frankingCommitment: envelope.frankingCommitment,
            frankingTag: envelope.frankingTag
        )
    }
}

/// `fetchInbox` — GET /v1/inbox?after=N&limit=M: pull envelopes (for clients without a socket).
public struct FetchInboxRequest: Codable, Sendable {
    /// Return envelopes with a sequence number above this (default 0: from the start).
    public var after: Int64?
    /// At most this many (1–500, default 100).
    public var limit: Int?
    /// Creates the request.
    public init(after: Int64? = nil, limit: Int? = nil) {
        self.after = after
        self.limit = limit
    }
}

/// A page of the inbox, in sequence order.
public struct FetchInboxResponse: Codable, Sendable {
    /// The envelopes.
    public var envelopes: [WireEnvelope]
    /// Creates the value.
    public init(envelopes: [WireEnvelope]) { self.envelopes = envelopes }
}

/// `ack` — POST /v1/inbox/ack, or the `ack` frame: everything up to `seq` is processed.
public struct AckRequest: Codable, Sendable {
    /// The cumulative acknowledgement.
    public var seq: Int64
    /// Creates the request.
    public init(seq: Int64) { self.seq = seq }
}

/// The result of an acknowledgement.
public struct AckResponse: Codable, Sendable {
    /// The highest sequence number now acknowledged.
    public var acknowledged: Int64
    /// Creates the value.
    public init(acknowledged: Int64) { self.acknowledged = acknowledged }
}

/// An error on the wire.
public struct ErrorBody: Codable, Sendable, Equatable {
    /// The stable code.
    public var code: String
    /// A sentence for people.
    public var message: String
    /// Seconds to wait, for `rate_limited`.
    public var retryAfter: Int?
    /// Creates the value.
    public init(code: String, message: String, retryAfter: Int? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }
}

extension ErrorBody {
    /// The wire form of a domain error.
    public init(_ error: HeliographError) {
        self.init(code: error.code.rawValue, message: error.message, retryAfter: error.retryAfterSeconds)
    }

    /// The domain error this body carries.
    public var heliographError: HeliographError {
        HeliographError(HeliographError.Code(code), message, retryAfterSeconds: retryAfter)
    }
}

/// An error response, as HTTP sends it: `{"error": {...}}`.
public struct ErrorEnvelope: Codable, Sendable {
    /// The error.
    public var error: ErrorBody
    /// Creates the value.
    public init(error: ErrorBody) { self.error = error }
}
