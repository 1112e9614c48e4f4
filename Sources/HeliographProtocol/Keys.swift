import Foundation
import HeliographCore

/// A prekey on the wire; see docs/protocol.md for the kinds and what the signature covers.
public struct WirePrekey: Codable, Sendable, Equatable {
    /// 1 signed X25519, 2 one-time X25519, 3 one-time ML-KEM-768, 4 last-resort ML-KEM-768.
    public var kind: Int
    /// The device-chosen id.
    public var id: UInt32
    /// The public key (base64 in JSON).
    public var publicKey: Data
    /// The account identity's Ed25519 signature.
    public var signature: Data
    /// Creates the value.
    public init(kind: Int, id: UInt32, publicKey: Data, signature: Data) {
        self.kind = kind
        self.id = id
        self.publicKey = publicKey
        self.signature = signature
    }
}

/// An account's device list, signed by its identity key.
public struct WireDeviceList: Codable, Sendable, Equatable {
    /// One listed device.
    public struct Entry: Codable, Sendable, Equatable {
        /// The device.
        public var deviceId: DeviceID
        /// Its X25519 agreement key.
        public var agreementKey: Data
        /// Creates the value.
        public init(deviceId: DeviceID, agreementKey: Data) {
            self.deviceId = deviceId
            self.agreementKey = agreementKey
        }
    }
    /// Grows with every change.
    public var version: UInt64
    /// The active devices, sorted by id.
    public var devices: [Entry]
    /// Every device ever revoked under this identity, sorted by id (absent means none).
    public var revoked: [DeviceID]?
    /// The identity signature.
    public var signature: Data
    /// Creates the value.
    public init(version: UInt64, devices: [Entry], revoked: [DeviceID]? = nil, signature: Data) {
        self.version = version
        self.devices = devices
        self.revoked = revoked
        self.signature = signature
    }
}

/// `publishKeys` — PUT /v1/keys: publish or refresh the calling device's keys.
///
/// The first call must carry the agreement key, signed prekey and last-resort key; later calls
/// may carry only what changed (a rotated signed prekey, more one-time prekeys, a new list).
public struct PublishKeysRequest: Codable, Sendable {
    /// The device's X25519 agreement key.
    public var agreementKey: Data?
    /// Its identity signature.
    public var agreementSignature: Data?
    /// The current signed prekey (kind 1).
    public var signedPrekey: WirePrekey?
    /// The last-resort ML-KEM prekey (kind 4).
    public var lastResortPrekey: WirePrekey?
    /// More one-time prekeys (kinds 2 and 3).
    public var oneTimePrekeys: [WirePrekey]?
    /// A new signed device list for the account.
    public var deviceList: WireDeviceList?
    /// Delete every one-time prekey the server holds for the device before adding
    /// `oneTimePrekeys` (after an identity change, the old ones carry stale signatures).
    public var replaceOneTimePrekeys: Bool?
    /// Creates the request.
    public init(
        agreementKey: Data? = nil, agreementSignature: Data? = nil, signedPrekey: WirePrekey? = nil,
        lastResortPrekey: WirePrekey? = nil, oneTimePrekeys: [WirePrekey]? = nil, deviceList: WireDeviceList? = nil,
        replaceOneTimePrekeys: Bool? = nil
    ) {
        self.replaceOneTimePrekeys = replaceOneTimePrekeys
        self.agreementKey = agreementKey
        self.agreementSignature = agreementSignature
        self.signedPrekey = signedPrekey
        self.lastResortPrekey = lastResortPrekey
        self.oneTimePrekeys = oneTimePrekeys
        self.deviceList = deviceList
    }
}

/// `keyStatus` — GET /v1/keys: what the server holds of the calling device's keys.
public struct KeyStatus: Codable, Sendable, Equatable {
    /// Whether the device has published its long-lived keys.
    public var published: Bool
    /// One-time X25519 prekeys left.
    public var oneTimePrekeys: Int
    /// One-time ML-KEM prekeys left.
    public var kemPrekeys: Int
    /// Upload more when either count is below this.
    public var refillBelow: Int
    /// The most one-time prekeys of each kind the server keeps per device.
    public var maximum: Int
    /// The account's device-list version, 0 when none was published.
    public var deviceListVersion: UInt64
    /// Creates the value.
    public init(published: Bool, oneTimePrekeys: Int, kemPrekeys: Int, refillBelow: Int, maximum: Int, deviceListVersion: UInt64)
    {
        self.published = published
        self.oneTimePrekeys = oneTimePrekeys
        self.kemPrekeys = kemPrekeys
        self.refillBelow = refillBelow
        self.maximum = maximum
        self.deviceListVersion = deviceListVersion
    }

    /// Whether the device should upload more one-time prekeys.
    public var needsRefill: Bool { oneTimePrekeys < refillBelow || kemPrekeys < refillBelow }
}

/// `fetchKeys` — GET /v1/keys/{username}: prekey bundles of every active device of an account.
/// Each call consumes one one-time prekey of each kind per device.
public struct FetchKeysRequest: Codable, Sendable {
    /// The account (an optional leading `@` is accepted).
    public var username: String
    /// Only these devices (for example one that was just added); all active ones when nil.
    public var devices: [DeviceID]?
    /// Creates the request.
    public init(username: String, devices: [DeviceID]? = nil) {
        self.username = username
        self.devices = devices
    }
}

/// One device's bundle.
public struct WirePrekeyBundle: Codable, Sendable, Equatable {
    /// The device.
    public var deviceId: DeviceID
    /// Its X25519 agreement key.
    public var agreementKey: Data
    /// The identity signature over it.
    public var agreementSignature: Data
    /// The signed prekey.
    public var signedPrekey: WirePrekey
    /// A one-time X25519 prekey, absent when the device ran out.
    public var oneTimePrekey: WirePrekey?
    /// A one-time ML-KEM prekey, or the last-resort one when the device ran out.
    public var kemPrekey: WirePrekey
    /// Creates the value.
    public init(
        deviceId: DeviceID, agreementKey: Data, agreementSignature: Data, signedPrekey: WirePrekey, oneTimePrekey: WirePrekey?,
        kemPrekey: WirePrekey
    ) {
        self.deviceId = deviceId
        self.agreementKey = agreementKey
        self.agreementSignature = agreementSignature
        self.signedPrekey = signedPrekey
        self.oneTimePrekey = oneTimePrekey
        self.kemPrekey = kemPrekey
    }
}

/// The bundles of an account.
public struct FetchKeysResponse: Codable, Sendable {
    /// The account.
    public var accountId: AccountID
    /// Its name.
    public var username: String
    /// Its Ed25519 identity key.
    public var identityKey: Data
    /// Bundles of active devices that published keys.
    public var bundles: [WirePrekeyBundle]
    /// Active devices that have not published keys (they cannot receive encrypted messages yet).
    public var withoutKeys: [DeviceID]
    /// The account's signed device list, if one was published.
    public var deviceList: WireDeviceList?
    /// Creates the value.
    public init(
        accountId: AccountID, username: String, identityKey: Data, bundles: [WirePrekeyBundle], withoutKeys: [DeviceID],
        deviceList: WireDeviceList?
    ) {
        self.accountId = accountId
        self.username = username
        self.identityKey = identityKey
        self.bundles = bundles
        self.withoutKeys = withoutKeys
        self.deviceList = deviceList
    }
}

/// One device's copy of a message (`send` with `copies`).
public struct WireCopy: Codable, Sendable, Equatable {
    /// The receiving device (of the recipient, or another device of the sender).
    public var deviceId: DeviceID
    /// The ciphertext for that device.
    public var payload: Data
    /// Creates the value.
    public init(deviceId: DeviceID, payload: Data) {
        self.deviceId = deviceId
        self.payload = payload
    }
}

/// `verifyReport` — POST /v1/reports/verify: the recipient reveals one end-to-end encrypted
/// message (body and franking key, plus the server's tag) and the server checks that exactly
/// this message was sent by that sender to this device at that time.
public struct FrankedReportRequest: Codable, Sendable {
    /// The sender's message id.
    public var messageId: MessageID
    /// The sending account.
    public var senderAccountId: AccountID
    /// The sending device.
    public var senderDeviceId: DeviceID
    /// The receiving device (the reporter's).
    public var recipientDeviceId: DeviceID
    /// The server time of the envelope.
    public var serverTime: Int64
    /// The decrypted body, exactly as received.
    public var body: Data
    /// The franking key from inside the ciphertext.
    public var frankingKey: Data
    /// The server's tag from the envelope.
    public var frankingTag: Data
    /// Creates the request.
    public init(
        messageId: MessageID, senderAccountId: AccountID, senderDeviceId: DeviceID, recipientDeviceId: DeviceID,
        serverTime: Int64, body: Data, frankingKey: Data, frankingTag: Data
    ) {
        self.messageId = messageId
        self.senderAccountId = senderAccountId
        self.senderDeviceId = senderDeviceId
        self.recipientDeviceId = recipientDeviceId
        self.serverTime = serverTime
        self.body = body
        self.frankingKey = frankingKey
        self.frankingTag = frankingTag
    }
}

/// The outcome of checking a report.
public struct FrankedReportResponse: Codable, Sendable, Equatable {
    /// Whether the report proves the message.
    public var verified: Bool
    /// Why not, when it does not.
    public var reason: String?
    /// The sender's name, when verified.
    public var senderUsername: String?
    /// Creates the value.
    public init(verified: Bool, reason: String?, senderUsername: String?) {
        self.verified = verified
        self.reason = reason
        self.senderUsername = senderUsername
    }
}
