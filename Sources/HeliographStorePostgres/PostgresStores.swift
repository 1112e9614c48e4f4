import Foundation
import HeliographCore
import HeliographStore
import Logging
import NIOCore
import PostgresNIO

// The stores on PostgreSQL. Every query binds its values (never string concatenation), and
// every call is bounded by `timeout` so a lost database fails requests quickly and clearly.

/// SQLSTATE of a unique-constraint violation.
let uniqueViolation = "23505"

extension PSQLError {
    var sqlState: String? { serverInfo?[.sqlState] }
}

struct PostgresAccountStore: AccountStore {
    let client: PostgresClient
    let timeout: Duration

    func insert(_ account: Account) async throws {
        do {
            try await withDeadline(timeout, what: "insert account") {
                try await client.query(
                    """
                    INSERT INTO accounts (id, username, username_canonical, identity_key, created_at)
                    VALUES (\(account.id.rawValue), \(account.username.display), \(account.username.canonical),
                            \(account.identityKey), \(account.createdAt.millisecondsSince1970))
                    """)
            }
        } catch let error as PSQLError where error.sqlState == uniqueViolation {
            throw HeliographError(.usernameTaken, "the username \(account.username) is already taken")
        }
    }

    func account(id: AccountID) async throws -> Account? {
        try await withDeadline(timeout, what: "find account") {
            try await Self.first(
                client.query(
                    "SELECT id, username, identity_key, created_at FROM accounts WHERE id = \(id.rawValue)"))
        }
    }

    func account(username: Username) async throws -> Account? {
        try await withDeadline(timeout, what: "find account") {
            try await Self.first(
                client.query(
                    "SELECT id, username, identity_key, created_at FROM accounts WHERE username_canonical = \(username.canonical)"
                ))
        }
    }

    func replaceIdentityKey(of accountID: AccountID, from old: Data, to new: Data) async throws -> Bool {
        try await withDeadline(timeout, what: "replace identity key") {
            let rows = try await client.query(
                """
                UPDATE accounts SET identity_key = \(new)
                WHERE id = \(accountID.rawValue) AND identity_key = \(old) RETURNING id
                """)
            for try await _ in rows.decode(UUID.self) { return true }
            return false
        }
    }

    static func first(_ rows: PostgresRowSequence) async throws -> Account? {
        for try await (id, username, key, created) in rows.decode((UUID, String, Data, Int64).self) {
            return Account(
                id: AccountID(id), username: try Username(validating: username), identityKey: key,
                createdAt: Date(millisecondsSince1970: created))
        }
        return nil
    }
}

struct PostgresDeviceStore: DeviceStore {
    let client: PostgresClient
    let timeout: Duration

    static let columns = "id, account_id, name, created_at, revoked_at, pending, link_key"

    func insert(_ device: Device) async throws {
        try await withDeadline(timeout, what: "insert device") {
            try await client.query(
                """
                INSERT INTO devices (id, account_id, name, created_at, revoked_at, pending, link_key)
                VALUES (\(device.id.rawValue), \(device.accountID.rawValue), \(device.name),
                        \(device.createdAt.millisecondsSince1970), \(device.revokedAt?.millisecondsSince1970),
                        \(device.pending), \(device.linkKey))
                """)
        }
    }

    func device(id: DeviceID) async throws -> Device? {
        try await withDeadline(timeout, what: "find device") {
            try await Self.all(
                client.query("SELECT \(unescaped: Self.columns) FROM devices WHERE id = \(id.rawValue)")
            ).first
        }
    }

    func devices(of accountID: AccountID) async throws -> [Device] {
        try await withDeadline(timeout, what: "list devices") {
            try await Self.all(
                client.query(
                    """
                    SELECT \(unescaped: Self.columns) FROM devices
                    WHERE account_id = \(accountID.rawValue) ORDER BY created_at, id
                    """))
        }
    }

    func revoke(_ deviceID: DeviceID, at time: Date) async throws -> Device? {
        try await withDeadline(timeout, what: "revoke device") {
            try await inTransaction(client, logger: Logger(label: "heliograph.postgres")) { connection in
                let rows = try await connection.query(
                    """
                    UPDATE devices SET revoked_at = COALESCE(revoked_at, \(time.millisecondsSince1970))
                    WHERE id = \(deviceID.rawValue)
                    RETURNING \(unescaped: Self.columns)
                    """, logger: Logger(label: "heliograph.postgres"))
                let device = try await Self.all(rows).first
                // A revoked device will never fetch its inbox: drop the copies now, and its keys so
                // that nobody sets up a session with it any more.
                try await connection.query(
                    "DELETE FROM inbox WHERE device_id = \(deviceID.rawValue)", logger: Logger(label: "heliograph.postgres"))
                try await PostgresPrekeyStore.deleteKeys(connection, deviceID, logger: Logger(label: "heliograph.postgres"))
                // Announced to every node (this one too) on commit, never before and never
                // without it: each closes the device's sockets when it hears this.
                if device != nil {
                    try await connection.query(
                        "SELECT pg_notify(\(PostgresChangeFeed.channel), \(ChangeNotification.revoked([deviceID]).payload))",
                        logger: Logger(label: "heliograph.postgres"))
                }
                return device
            }
        }
    }

    func revokedDevices(among deviceIDs: [DeviceID]) async throws -> Set<DeviceID> {
        guard !deviceIDs.isEmpty else { return [] }
        return try await withDeadline(timeout, what: "check revoked devices") {
            // Unknown ids count as revoked: only rows still active come back.
            let ids = deviceIDs.map(\.rawValue)
            var active: Set<DeviceID> = []
            let rows = try await client.query("SELECT id FROM devices WHERE id = ANY(\(ids)) AND revoked_at IS NULL")
            for try await id in rows.decode(UUID.self) { active.insert(DeviceID(id)) }
            return Set(deviceIDs).subtracting(active)
        }
    }

    func approve(_ deviceID: DeviceID) async throws -> Device? {
        try await withDeadline(timeout, what: "approve device") {
            try await Self.all(
                client.query(
                    """
                    UPDATE devices SET pending = false
                    WHERE id = \(deviceID.rawValue) AND pending AND revoked_at IS NULL
                    RETURNING \(unescaped: Self.columns)
                    """)
            ).first
        }
    }

    static func all(_ rows: PostgresRowSequence) async throws -> [Device] {
        var devices: [Device] = []
        for try await (id, account, name, created, revoked, pending, linkKey) in rows.decode(
            (UUID, UUID, String, Int64, Int64?, Bool, Data?).self)
        {
            devices.append(
                Device(
                    id: DeviceID(id), accountID: AccountID(account), name: name, createdAt: Date(millisecondsSince1970: created),
                    revokedAt: revoked.map(Date.init(millisecondsSince1970:)), pending: pending, linkKey: linkKey))
        }
        return devices
    }
}

struct PostgresSessionStore: SessionStore {
    let client: PostgresClient
    let timeout: Duration

    func insert(_ session: DeviceSession) async throws {
        try await withDeadline(timeout, what: "insert session") {
            try await client.query(
                """
                INSERT INTO sessions (token_hash, account_id, device_id, created_at, expires_at)
                VALUES (\(session.tokenHash), \(session.accountID.rawValue), \(session.deviceID.rawValue),
                        \(session.createdAt.millisecondsSince1970), \(session.expiresAt.millisecondsSince1970))
                """)
        }
    }

    func session(tokenHash: Data) async throws -> DeviceSession? {
        try await withDeadline(timeout, what: "find session") {
            let rows = try await client.query(
                "SELECT account_id, device_id, created_at, expires_at FROM sessions WHERE token_hash = \(tokenHash)")
            for try await (account, device, created, expires) in rows.decode((UUID, UUID, Int64, Int64).self) {
                return DeviceSession(
                    tokenHash: tokenHash, accountID: AccountID(account), deviceID: DeviceID(device),
                    createdAt: Date(millisecondsSince1970: created), expiresAt: Date(millisecondsSince1970: expires))
            }
            return nil
        }
    }

    func deleteExpired(before time: Date) async throws -> Int {
        try await withDeadline(timeout, what: "sweep sessions") {
            try await countRows(client.query("DELETE FROM sessions WHERE expires_at < \(time.millisecondsSince1970) RETURNING 1"))
        }
    }
}

struct PostgresChallengeStore: ChallengeStore {
    let client: PostgresClient
    let timeout: Duration

    func insert(_ challenge: LoginChallenge) async throws {
        try await withDeadline(timeout, what: "insert challenge") {
            try await client.query(
                """
                INSERT INTO challenges (id, account_id, nonce, expires_at)
                VALUES (\(challenge.id), \(challenge.accountID.rawValue), \(challenge.nonce), \(challenge.expiresAt.millisecondsSince1970))
                """)
        }
    }

    func consume(id: UUID) async throws -> LoginChallenge? {
        // DELETE … RETURNING: of two concurrent calls only one sees the row.
        try await withDeadline(timeout, what: "consume challenge") {
            let rows = try await client.query(
                "DELETE FROM challenges WHERE id = \(id) RETURNING account_id, nonce, expires_at")
            for try await (account, nonce, expires) in rows.decode((UUID, Data, Int64).self) {
                return LoginChallenge(
                    id: id, accountID: AccountID(account), nonce: nonce, expiresAt: Date(millisecondsSince1970: expires))
            }
            return nil
        }
    }

    func deleteExpired(before time: Date) async throws -> Int {
        try await withDeadline(timeout, what: "sweep challenges") {
            try await countRows(
                client.query("DELETE FROM challenges WHERE expires_at < \(time.millisecondsSince1970) RETURNING 1"))
        }
    }
}

struct PostgresInboxStore: InboxStore {
    let client: PostgresClient
    let logger: Logger
    let timeout: Duration
    /// The storage's name in notifications.
    let node: String

    /// The NOTIFY payload limit is 8000 bytes; device ids are 36 characters plus a comma.
    static let devicesPerNotification = 200

    func enqueue(_ message: OutgoingMessage) async throws -> DeliveryReceipt {
        let logger = self.logger
        return try await withDeadline(timeout, what: "enqueue") {
            try await inTransaction(client, logger: logger) { connection in
                let senderDevice = message.sender.deviceID.rawValue
                let messageID = message.messageID.rawValue
                let serverTime = message.serverTime.millisecondsSince1970
                // Claim the idempotency key first: a concurrent retry waits here and then sees it taken.
                let claimed = try await countRows(
                    connection.query(
                        """
                        INSERT INTO sent_messages (sender_device_id, message_id, server_time, sequences, content_hash)
                        VALUES (\(senderDevice), \(messageID), \(serverTime), '', \(message.contentHash))
                        ON CONFLICT DO NOTHING RETURNING 1
                        """, logger: logger))
                guard claimed == 1 else {
                    let rows = try await connection.query(
                        """
                        SELECT server_time, sequences, content_hash FROM sent_messages
                        WHERE sender_device_id = \(senderDevice) AND message_id = \(messageID)
                        """, logger: logger)
                    for try await (time, sequences, stored) in rows.decode((Int64, String, Data?).self) {
                        guard SendIdempotency.isRetry(stored: stored, incoming: message.contentHash) else {
                            throw SendIdempotency.conflict(message.messageID)
                        }
                        return DeliveryReceipt(
                            messageID: message.messageID, serverTime: Date(millisecondsSince1970: time),
                            sequences: SequenceList.decode(sequences), duplicate: true)
                    }
                    throw StorageUnavailable("idempotency record vanished during a retry")
                }
                // Lock the recipient devices in id order, so concurrent fan-outs cannot deadlock,
                // then take one sequence number per device in a single statement.
                let ids = message.copies.map(\.deviceID.rawValue).sorted { $0.uuidString < $1.uuidString }
                try await connection.query(
                    "SELECT id FROM devices WHERE id = ANY(\(ids)) ORDER BY id FOR UPDATE", logger: logger)
                var sequences: [DeviceID: Int64] = [:]
                let updated = try await connection.query(
                    """
                    UPDATE devices SET last_seq = last_seq + 1
                    WHERE id = ANY(\(ids)) AND revoked_at IS NULL
                    RETURNING id, last_seq
                    """, logger: logger)
                for try await (id, sequence) in updated.decode((UUID, Int64).self) {
                    sequences[DeviceID(id)] = sequence
                }
                if !sequences.isEmpty {
                    // One multi-row insert for the whole fan-out.
                    let copies = message.copies.filter { sequences[$0.deviceID] != nil }
                    let devices = copies.map(\.deviceID.rawValue)
                    let seqs = copies.map { sequences[$0.deviceID]! }
                    let payloads = copies.map { ByteBuffer(bytes: $0.payload) }
                    // An empty tag stands for "none" inside the array; NULLIF restores it.
                    let tags = copies.map { ByteBuffer(bytes: $0.frankingTag ?? Data()) }
                    try await connection.query(
                        """
                        INSERT INTO inbox (device_id, seq, message_id, sender_account_id, sender_username, sender_device_id,
                                           server_time, payload, franking_commitment, franking_tag)
                        SELECT d, s, \(messageID), \(message.sender.accountID.rawValue), \(message.sender.username.display),
                               \(senderDevice), \(serverTime), p, \(message.frankingCommitment), NULLIF(f, ''::bytea)
                        FROM unnest(\(devices)::uuid[], \(seqs)::int8[], \(payloads)::bytea[], \(tags)::bytea[]) AS t(d, s, p, f)
                        """, logger: logger)
                }
                try await connection.query(
                    """
                    UPDATE sent_messages SET sequences = \(SequenceList.encode(sequences))
                    WHERE sender_device_id = \(senderDevice) AND message_id = \(messageID)
                    """, logger: logger)
                // Delivered to listeners on commit, never before: a woken node always finds the rows.
                let names = sequences.keys.map(\.description)
                for start in stride(from: 0, to: names.count, by: Self.devicesPerNotification) {
                    let chunk =
                        node + ":" + names[start..<min(start + Self.devicesPerNotification, names.count)].joined(separator: ",")
                    try await connection.query(
                        "SELECT pg_notify(\(PostgresChangeFeed.channel), \(chunk))", logger: logger)
                }
                return DeliveryReceipt(
                    messageID: message.messageID, serverTime: Date(millisecondsSince1970: serverTime), sequences: sequences,
                    duplicate: false)
            }
        }
    }

    func envelopes(for deviceID: DeviceID, after: Int64, limit: Int) async throws -> [Envelope] {
        // The hottest read (every push and every catch-up): a named prepared statement, parsed
        // once per connection.
        try await withDeadline(timeout, what: "fetch inbox") {
            var envelopes: [Envelope] = []
            let statement = FetchInboxStatement(device: deviceID.rawValue, after: after, limit: Int64(limit))
            for try await row in try await client.execute(statement) {
                envelopes.append(
                    Envelope(
                        sequence: row.seq, messageID: try MessageID(validating: row.messageID),
                        sender: EnvelopeSender(
                            accountID: AccountID(row.senderAccount), username: try Username(validating: row.senderName),
                            deviceID: DeviceID(row.senderDevice)),
                        recipientDeviceID: deviceID, serverTime: Date(millisecondsSince1970: row.serverTime),
                        payload: row.payload, frankingCommitment: row.frankingCommitment, frankingTag: row.frankingTag))
            }
            return envelopes
        }
    }

    func acknowledge(_ deviceID: DeviceID, through sequence: Int64) async throws -> Int64 {
        let logger = self.logger
        return try await withDeadline(timeout, what: "acknowledge") {
            try await inTransaction(client, logger: logger) { connection in
                let rows = try await connection.query(
                    "SELECT last_seq, acked_seq FROM devices WHERE id = \(deviceID.rawValue) FOR UPDATE", logger: logger)
                var found: (Int64, Int64)?
                for try await row in rows.decode((Int64, Int64).self) { found = row }
                guard let (last, acked) = found else { throw HeliographError(.unknownDevice, "unknown device") }
                guard sequence >= 0, sequence <= last else {
                    throw HeliographError(
                        .ackOutOfRange,
                        "cannot acknowledge \(sequence): the highest sequence number sent to this device is \(last)")
                }
                guard sequence > acked else { return acked }
                try await connection.query(
                    "DELETE FROM inbox WHERE device_id = \(deviceID.rawValue) AND seq <= \(sequence)", logger: logger)
                try await connection.query(
                    "UPDATE devices SET acked_seq = \(sequence) WHERE id = \(deviceID.rawValue)", logger: logger)
                return sequence
            }
        }
    }

    func lastSequence(of deviceID: DeviceID) async throws -> Int64 {
        try await withDeadline(timeout, what: "last sequence") {
            for try await value in try await client.query(
                "SELECT last_seq FROM devices WHERE id = \(deviceID.rawValue)"
            ).decode(Int64.self) {
                return value
            }
            return 0
        }
    }

    func deleteExpired(before time: Date) async throws -> Int {
        try await withDeadline(timeout, what: "sweep inbox") {
            let cutoff = time.millisecondsSince1970
            let deleted = try await countRows(client.query("DELETE FROM inbox WHERE server_time < \(cutoff) RETURNING 1"))
            try await client.query("DELETE FROM sent_messages WHERE server_time < \(cutoff)")
            return deleted
        }
    }
}

/// `envelopes(for:after:limit:)` as a prepared statement.
struct FetchInboxStatement: PostgresPreparedStatement {
    static let sql = """
        SELECT seq, message_id, sender_account_id, sender_username, sender_device_id, server_time, payload,
               franking_commitment, franking_tag
        FROM inbox WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
        """

    struct Row {
        var seq: Int64
        var messageID: String
        var senderAccount: UUID
        var senderName: String
        var senderDevice: UUID
        var serverTime: Int64
        var payload: Data
        var frankingCommitment: Data?
        var frankingTag: Data?
    }

    var device: UUID
    var after: Int64
    var limit: Int64

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 3)
        bindings.append(device)
        bindings.append(after)
        bindings.append(limit)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        let (seq, messageID, account, name, device, time, payload, commitment, tag) = try row.decode(
            (Int64, String, UUID, String, UUID, Int64, Data, Data?, Data?).self)
        return Row(
            seq: seq, messageID: messageID, senderAccount: account, senderName: name, senderDevice: device, serverTime: time,
            payload: payload, frankingCommitment: commitment, frankingTag: tag)
    }
}

/// Runs `body` in a transaction, rethrowing the body's own error rather than the wrapper, so a
/// domain error (such as `ack_out_of_range`) reaches the caller unchanged.
func inTransaction<T: Sendable>(
    _ client: PostgresClient, logger: Logger, _ body: (PostgresConnection) async throws -> T
) async throws -> T {
    do {
        return try await client.withTransaction(logger: logger) { connection in try await body(connection) }
    } catch let error as PostgresTransactionError {
        if let cause = error.closureError ?? error.beginError ?? error.commitError { throw cause }
        throw error
    }
}

/// Drains a row sequence, counting rows.
func countRows(_ rows: PostgresRowSequence) async throws -> Int {
    var count = 0
    for try await _ in rows { count += 1 }
    return count
}
