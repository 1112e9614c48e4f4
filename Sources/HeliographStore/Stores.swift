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

/// A change to inboxes, as seen by every node sharing a database.
public enum InboxChange: Sendable, Equatable {
    /// These devices' inboxes grew.
    case devices([DeviceID])
    /// Changes may have been missed (the feed reconnected): every inbox may have grown.
    case all
}

/// Cross-node wake-ups: which devices' inboxes changed, whichever node committed the change.
///
/// A feed is a hint, never the data: a node that misses a change delivers late, not never,
/// because delivery always reads the inbox tables.
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
    /// Cross-node wake-ups, for backends shared by several server nodes; nil for one node.
    var changeFeed: (any InboxChangeFeed)? { get }
    /// A cheap round trip, for readiness checks.
    func ping() async throws
    /// Closes connections; the storage is unusable afterwards.
    func close() async throws
}
