import Foundation
import HeliographCore

// One small protocol per aggregate. Every backend (SQLite here, PostgreSQL in its own module)
// conforms to all of them and passes the same conformance suite in HeliographStoreTests.
//
// Stores throw `HeliographError` for conditions a client can act on (a taken name, an
// out-of-range acknowledgement) and backend errors for everything else; the server maps the
// latter to a logged `internal_error` or `temporarily_unavailable` without leaking details.

/// Accounts: names and identity keys.
public protocol AccountStore: Sendable {
    /// Stores a new account; throws `username_taken` when the name is held (case-insensitively).
    func insert(_ account: Account) async throws
    /// The account with this id, if any.
    func account(id: AccountID) async throws -> Account?
    /// The account with this name (case-insensitive), if any.
    func account(username: Username) async throws -> Account?
    /// Replaces the account's identity key if it is still `old` (compare-and-set, so two
    /// rotations racing cannot both win); returns whether it was replaced.
    func replaceIdentityKey(of accountID: AccountID, from old: Data, to new: Data) async throws -> Bool
}

/// Devices of accounts.
public protocol DeviceStore: Sendable {
    /// Stores a new device with an empty inbox.
    func insert(_ device: Device) async throws
    /// The device with this id, revoked or not.
    func device(id: DeviceID) async throws -> Device?
    /// Every device of an account, revoked ones included, oldest first.
    func devices(of accountID: AccountID) async throws -> [Device]
    /// Marks a device revoked and drops its inbox; returns the updated device, or nil if unknown.
    /// Revoking an already revoked device keeps the first revocation time.
    func revoke(_ deviceID: DeviceID, at time: Date) async throws -> Device?
    /// Makes a pending, unrevoked device active; returns it, or nil if it was not pending.
    func approve(_ deviceID: DeviceID) async throws -> Device?
    /// Of these devices, the ones that are revoked or unknown, in as few reads as the backend
    /// can: a node checks every connected device with it after its change feed had a gap.
    func revokedDevices(among deviceIDs: [DeviceID]) async throws -> Set<DeviceID>
}

extension DeviceStore {
    /// One read per device: enough for a backend without a change feed (one node), where the
    /// only caller is rare; backends shared by several nodes answer in one query.
    public func revokedDevices(among deviceIDs: [DeviceID]) async throws -> Set<DeviceID> {
        var revoked: Set<DeviceID> = []
        for id in deviceIDs {
            guard let device = try await device(id: id), device.revokedAt == nil else {
                revoked.insert(id)
                continue
            }
        }
        return revoked
    }
}

/// Session tokens (stored as hashes).
public protocol SessionStore: Sendable {
    /// Stores a new session.
    func insert(_ session: DeviceSession) async throws
    /// The session whose token hashes to `tokenHash`, if any.
    func session(tokenHash: Data) async throws -> DeviceSession?
    /// Deletes sessions that expired before `time`; returns how many.
    func deleteExpired(before time: Date) async throws -> Int
}

/// Single-use login challenges.
public protocol ChallengeStore: Sendable {
    /// Stores a new challenge.
    func insert(_ challenge: LoginChallenge) async throws
    /// Removes and returns the challenge. Two concurrent calls for one id: exactly one gets it.
    func consume(id: UUID) async throws -> LoginChallenge?
    /// Deletes challenges that expired before `time`; returns how many.
    func deleteExpired(before time: Date) async throws -> Int
}

/// Per-device inboxes of opaque envelopes, with idempotent sends.
public protocol InboxStore: Sendable {
    /// Appends one envelope per recipient device, each with that device's next sequence number,
    /// atomically. A second call with the same sender device and message id stores nothing and
    /// returns the first receipt marked `duplicate`.
    func enqueue(_ message: OutgoingMessage) async throws -> DeliveryReceipt
    /// Envelopes of a device with a sequence number above `after`, in order, at most `limit`.
    func envelopes(for deviceID: DeviceID, after: Int64, limit: Int) async throws -> [Envelope]
    /// Deletes every envelope up to `sequence` (cumulative) and returns the device's acknowledged
    /// position. Throws `ack_out_of_range` for a sequence number never assigned.
    func acknowledge(_ deviceID: DeviceID, through sequence: Int64) async throws -> Int64
    /// The highest sequence number assigned to a device (0 when none).
    func lastSequence(of deviceID: DeviceID) async throws -> Int64
    /// Deletes envelopes and idempotency records accepted before `time`; returns the envelopes deleted.
    func deleteExpired(before time: Date) async throws -> Int
}

/// A published prekey as stored. The server keeps the signature so that clients can check it;
/// it checks it itself on upload, but clients never rely on that.
public struct StoredPrekey: Sendable, Equatable {
    /// The kind, as HeliographCrypto's `PrekeyKind` numbers it (1 signed, 2 one-time X25519,
    /// 3 one-time ML-KEM, 4 last-resort ML-KEM).
    public var kind: Int
    /// The device-chosen id (0…2³²−1).
    public var id: Int64
    /// The public key.
    public var publicKey: Data
    /// The account identity's signature.
    public var signature: Data

    /// The kind number of one-time X25519 prekeys.
    public static let oneTimeKind = 2
    /// The kind number of one-time ML-KEM prekeys.
    public static let kemKind = 3

    /// Creates the value.
    public init(kind: Int, id: Int64, publicKey: Data, signature: Data) {
        self.kind = kind
        self.id = id
        self.publicKey = publicKey
        self.signature = signature
    }
}

/// A device's long-lived published keys.
public struct DeviceKeyRecord: Sendable, Equatable {
    /// The device.
    public var deviceID: DeviceID
    /// Its account.
    public var accountID: AccountID
    /// The X25519 agreement key.
    public var agreementKey: Data
    /// The identity signature over it.
    public var agreementSignature: Data
    /// The current signed prekey.
    public var signedPrekey: StoredPrekey
    /// The last-resort ML-KEM prekey, handed out when the one-time ones are exhausted.
    public var lastResortPrekey: StoredPrekey

    /// Creates the value.
    public init(
        deviceID: DeviceID, accountID: AccountID, agreementKey: Data, agreementSignature: Data, signedPrekey: StoredPrekey,
        lastResortPrekey: StoredPrekey
    ) {
        self.deviceID = deviceID
        self.accountID = accountID
        self.agreementKey = agreementKey
        self.agreementSignature = agreementSignature
        self.signedPrekey = signedPrekey
        self.lastResortPrekey = lastResortPrekey
    }
}

/// What one bundle request takes from a device's published keys.
public struct ClaimedPrekeys: Sendable, Equatable {
    /// The long-lived keys.
    public var keys: DeviceKeyRecord
    /// A one-time X25519 prekey, now removed from the store; nil when none was left.
    public var oneTimePrekey: StoredPrekey?
    /// A one-time ML-KEM prekey, now removed; nil when none was left (use the last-resort key).
    public var kemPrekey: StoredPrekey?

    /// Creates the value.
    public init(keys: DeviceKeyRecord, oneTimePrekey: StoredPrekey?, kemPrekey: StoredPrekey?) {
        self.keys = keys
        self.oneTimePrekey = oneTimePrekey
        self.kemPrekey = kemPrekey
    }
}

/// Published device keys for end-to-end session setup, and signed device lists.
public protocol PrekeyStore: Sendable {
    /// Stores or replaces a device's long-lived keys.
    func setKeys(_ keys: DeviceKeyRecord) async throws
    /// Adds one-time prekeys (kinds 2 and 3); an id already stored for that kind is left as it is.
    func addOneTimePrekeys(_ prekeys: [StoredPrekey], for deviceID: DeviceID) async throws
    /// The long-lived keys of a device, if it published any.
    func keys(for deviceID: DeviceID) async throws -> DeviceKeyRecord?
    /// Takes one one-time prekey of each kind, removing them. Under concurrent calls each
    /// one-time prekey is handed out exactly once. Nil when the device has no keys.
    func claim(for deviceID: DeviceID) async throws -> ClaimedPrekeys?
    /// How many one-time prekeys of each kind are left.
    func oneTimeCounts(for deviceID: DeviceID) async throws -> (x25519: Int, kem: Int)
    /// The active devices of an account that published keys, in one read.
    func publishedDevices(of accountID: AccountID) async throws -> [DeviceID]
    /// Deletes the one-time prekeys of a device, keeping its long-lived keys (after its
    /// account's identity key changed, the old ones carry signatures nobody accepts).
    func deleteOneTimePrekeys(for deviceID: DeviceID) async throws
    /// Deletes every published key of a device (on revocation).
    func deleteKeys(for deviceID: DeviceID) async throws
    /// Stores an account's signed device list if `version` is above the stored one; returns
    /// whether it was stored.
    func storeDeviceList(account: AccountID, version: Int64, list: Data) async throws -> Bool
    /// The account's latest device list.
    func deviceList(account: AccountID) async throws -> (version: Int64, list: Data)?
    /// Deletes the account's device list (after a recovery replaced the identity key that
    /// signed it; the next list starts a new history under the new key).
    func deleteDeviceList(account: AccountID) async throws
}

/// Server-wide secrets shared by every node (the franking key), kept in the database.
public protocol ServerSecretStore: Sendable {
    /// The named secret; the first caller's `create()` value wins, even across nodes.
    func secret(named name: String, create: @Sendable () -> Data) async throws -> Data
}

/// One of the server's keys for franking tags as the database holds it: sealed under a key the
/// database never sees (see the server's `FrankingKeyring`).
public struct StoredFrankingKey: Sendable, Equatable {
    /// The id tags name the key by.
    public var id: UInt32
    /// The sealed key bytes; opaque to the store.
    public var sealedKey: Data
    /// When it was stored.
    public var createdAt: Date
    /// When a newer key replaced it; nil for the current key.
    public var retiredAt: Date?

    /// Creates the value.
    public init(id: UInt32, sealedKey: Data, createdAt: Date, retiredAt: Date?) {
        self.id = id
        self.sealedKey = sealedKey
        self.createdAt = createdAt
        self.retiredAt = retiredAt
    }
}

/// The server's franking keys, shared by every node: one current key that tags new messages,
/// and retired ones kept for a while so reports of older messages still verify.
public protocol FrankingKeyStore: Sendable {
    /// Every stored key, lowest id first.
    func keys() async throws -> [StoredFrankingKey]
    /// The current key (the one not retired), if any.
    func current() async throws -> StoredFrankingKey?
    /// The key with this id, retired or not.
    func key(id: UInt32) async throws -> StoredFrankingKey?
    /// Stores a new current key, atomically: its id is one above the highest stored (1 for the
    /// first), `seal` makes its bytes for that id, and the previous current key is retired at
    /// `time`. With `onlyIfNone`, stores nothing and returns the current key when there is one,
    /// so nodes starting together create one key. Concurrent callers get distinct ids.
    func addCurrentKey(
        at time: Date, onlyIfNone: Bool, seal: @escaping @Sendable (UInt32) throws -> Data
    ) async throws -> StoredFrankingKey
    /// Deletes keys retired before `time`; returns their ids. The current key is never deleted.
    func deleteRetired(before time: Date) async throws -> [UInt32]
    /// Moves a plain secret that earlier versions kept in ``ServerSecretStore`` under `name`
    /// into this store as key `id`, retired at `time`, sealed by `seal`, and deletes the plain
    /// copy, in one transaction. Returns whether there was one. When `id` is already stored,
    /// the plain copy is only deleted.
    func importPlainSecret(
        named name: String, as id: UInt32, at time: Date, seal: @escaping @Sendable (Data) throws -> Data
    ) async throws -> Bool
}

/// A change to inboxes or devices, as seen by every node sharing a database.
public enum InboxChange: Sendable, Equatable {
    /// These devices' inboxes grew.
    case devices([DeviceID])
    /// These devices were revoked (through any node, this one included): every socket
    /// authenticated as one of them must be closed. Announced in the revoking transaction, so a
    /// committed revocation is always announced.
    case revoked([DeviceID])
    /// These chats' logs grew through another node: its sockets of their members fetch.
    case chats([ChatID])
    /// These accounts joined or left the chat through another node: the node re-reads their
    /// membership if they are connected to it, so its sockets follow the chat or stop.
    case memberships(ChatID, [AccountID])
    /// Changes may have been missed (the feed reconnected): every inbox may have grown, and any
    /// connected device may have been revoked, so each must be checked against the store once.
    case all
}

/// Cross-node wake-ups: which devices' inboxes changed through another node sharing the
/// database, and which devices were revoked. (A node's own sends are handed to its sockets
/// directly, so its own inbox changes are not echoed back; revocations are, because a
/// revocation must hold even when the revoking node failed after its commit.)
///
/// A feed is a hint, never the data: a node that misses a change delivers late, not never,
/// because delivery reads the inbox tables whenever it is woken; and after a gap (``InboxChange/all``)
/// it re-checks its connected devices against the device table.
public protocol InboxChangeFeed: Sendable {
    /// Changes as they are committed. Finishes when the storage closes.
    func changes() -> AsyncStream<InboxChange>
}

/// The database cannot be reached right now; retrying later may succeed.
public struct StorageUnavailable: Error, CustomStringConvertible {
    /// What failed, for the server log (never sent to clients).
    public var detail: String
    /// Creates the error.
    public init(_ detail: String) { self.detail = detail }
    public var description: String { "storage unavailable: \(detail)" }
}

/// A storage backend: every store over one database.
public protocol HeliographStorage: Sendable {
    /// Accounts.
    var accounts: any AccountStore { get }
    /// Devices.
    var devices: any DeviceStore { get }
    /// Session tokens.
    var sessions: any SessionStore { get }
    /// Login challenges.
    var challenges: any ChallengeStore { get }
    /// Inboxes.
    var inbox: any InboxStore { get }
    /// Published prekeys and device lists.
    var prekeys: any PrekeyStore { get }
    /// Server-wide secrets.
    var secrets: any ServerSecretStore { get }
    /// The sealed franking keys.
    var frankingKeys: any FrankingKeyStore { get }
    /// Groups and channels, their members, bans and invites.
    var chats: any ChatStore { get }
    /// The chats' logs.
    var chatLog: any ChatLogStore { get }
    /// Uploaded blobs (attachments), named by their SHA-256.
    var blobs: any BlobStore { get }
    /// What keeps blobs alive and who may read them; public media facts.
    var blobReferences: any BlobReferenceStore { get }
    /// Cross-node wake-ups, for backends shared by several server nodes; nil for one node.
    var changeFeed: (any InboxChangeFeed)? { get }
    /// A cheap round trip, for readiness checks.
    func ping() async throws
    /// Closes connections; the storage is unusable afterwards.
    func close() async throws
}
