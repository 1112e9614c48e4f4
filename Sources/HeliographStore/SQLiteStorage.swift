import Foundation
import GRDB
import HeliographCore

/// The embedded backend: one SQLite file in WAL mode, through GRDB.
///
/// WAL lets readers (inbox fetches) run beside the single writer. `synchronous = FULL` makes
/// every committed transaction durable before the sender is acknowledged, so an acknowledged
/// message survives the process being killed and the machine losing power.
public final class SQLiteStorage: HeliographStorage {
    /// The GRDB pool shared by every store of this backend.
    let pool: DatabasePool

    public let accounts: any AccountStore
    public let devices: any DeviceStore
    public let sessions: any SessionStore
    public let challenges: any ChallengeStore
    public let inbox: any InboxStore
    public let prekeys: any PrekeyStore
    public let secrets: any ServerSecretStore
    public let frankingKeys: any FrankingKeyStore
    public let chats: any ChatStore
    public let chatLog: any ChatLogStore
    /// Blobs as files in `blobs/` beside the database file.
    public let blobs: any BlobStore
    /// Blob references, the blob register and public media facts, in the database.
    public let blobReferences: any BlobReferenceStore
    /// One embedded database serves one node: no cross-node feed.
    public var changeFeed: (any InboxChangeFeed)? { nil }

    /// Opens (creating if needed) the database at `path` and migrates it.
    ///
    /// Throws ``StorageError/schemaTooNew(_:)`` when the file was written by a newer Heliograph.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        try SQLiteSchema.migrate(pool)
        checkpointer = try SQLiteCheckpointer(path: path)
        accounts = SQLiteAccountStore(pool: pool)
        devices = SQLiteDeviceStore(pool: pool)
        sessions = SQLiteSessionStore(pool: pool)
        challenges = SQLiteChallengeStore(pool: pool)
        inbox = SQLiteInboxStore(pool: pool)
        prekeys = SQLitePrekeyStore(pool: pool)
        secrets = SQLiteSecretStore(pool: pool)
        frankingKeys = SQLiteFrankingKeyStore(pool: pool)
        chats = SQLiteChatStore(pool: pool)
        chatLog = SQLiteChatLogStore(pool: pool)
        blobs = try FileBlobStore(directory: URL(fileURLWithPath: path).deletingLastPathComponent())
        blobReferences = SQLiteBlobReferenceStore(pool: pool)
    }

    /// Opens the database `heliograph.sqlite` in `directory`, creating the directory (mode 0700).
    public convenience init(directory: URL) throws {
        try FileManager.default.createDirectory(
            at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try self.init(path: directory.appendingPathComponent("heliograph.sqlite").path)
    }

    public func ping() async throws {
        _ = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    public func close() async throws {
        await checkpointer.stop()
        try pool.close()
    }

    private let checkpointer: SQLiteCheckpointer
}

/// Moves the write-ahead log into the database file in the background, twice a second, on a
/// connection of its own. A passive checkpoint never takes the write lock, so sends keep
/// committing to the log while it runs; the checkpoint SQLite still starts inside a commit
/// (every 1,000 pages, which also lets the log restart from the beginning) then finds little
/// left to copy, so that commit, and every send waiting on it, is not held up for long.
final class SQLiteCheckpointer: Sendable {
    private let task: Task<Void, Never>

    init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let connection = try DatabaseQueue(path: path, configuration: configuration)
        task = Task.detached(priority: .utility) {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(500))
                _ = try? await connection.writeWithoutTransaction { db in try db.checkpoint(.passive) }
            }
            try? connection.close()
        }
    }

    func stop() async {
        task.cancel()
        await task.value
    }
}

/// Failures of a storage backend that an operator must act on.
public enum StorageError: Error, CustomStringConvertible, Equatable {
    /// The database was migrated by a newer Heliograph; this version must not touch it.
    case schemaTooNew(String)

    public var description: String {
        switch self {
        case .schemaTooNew(let detail):
            "the database schema is newer than this Heliograph understands (\(detail)); upgrade Heliograph or use another database"
        }
    }
}

/// Versioned migrations of the SQLite schema. Keep in step with the PostgreSQL migrations.
enum SQLiteSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-accounts-devices-inbox") { db in
            try db.execute(
                sql: """
                    CREATE TABLE accounts (
                        id TEXT PRIMARY KEY NOT NULL,
                        username TEXT NOT NULL,
                        username_canonical TEXT NOT NULL UNIQUE,
                        identity_key BLOB NOT NULL,
                        created_at INTEGER NOT NULL
                    );
                    CREATE TABLE devices (
                        id TEXT PRIMARY KEY NOT NULL,
                        account_id TEXT NOT NULL REFERENCES accounts(id),
                        name TEXT NOT NULL,
                        created_at INTEGER NOT NULL,
                        revoked_at INTEGER,
                        last_seq INTEGER NOT NULL DEFAULT 0,
                        acked_seq INTEGER NOT NULL DEFAULT 0
                    );
                    CREATE INDEX devices_by_account ON devices(account_id);
                    CREATE TABLE sessions (
                        token_hash BLOB PRIMARY KEY NOT NULL,
                        account_id TEXT NOT NULL,
                        device_id TEXT NOT NULL REFERENCES devices(id),
                        created_at INTEGER NOT NULL,
                        expires_at INTEGER NOT NULL
                    );
                    CREATE INDEX sessions_by_expiry ON sessions(expires_at);
                    CREATE TABLE challenges (
                        id TEXT PRIMARY KEY NOT NULL,
                        account_id TEXT NOT NULL,
                        nonce BLOB NOT NULL,
                        expires_at INTEGER NOT NULL
                    );
                    CREATE TABLE inbox (
                        device_id TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        message_id TEXT NOT NULL,
                        sender_account_id TEXT NOT NULL,
                        sender_username TEXT NOT NULL,
                        sender_device_id TEXT NOT NULL,
                        server_time INTEGER NOT NULL,
                        payload BLOB NOT NULL,
                        PRIMARY KEY (device_id, seq)
                    ) WITHOUT ROWID;
                    CREATE INDEX inbox_by_time ON inbox(server_time);
                    CREATE TABLE sent_messages (
                        sender_device_id TEXT NOT NULL,
                        message_id TEXT NOT NULL,
                        server_time INTEGER NOT NULL,
                        sequences TEXT NOT NULL,
                        PRIMARY KEY (sender_device_id, message_id)
                    ) WITHOUT ROWID;
                    CREATE INDEX sent_messages_by_time ON sent_messages(server_time);
                    """)
        }
        migrator.registerMigration("v2-prekeys-franking") { db in
            try db.execute(
                sql: """
                    ALTER TABLE inbox ADD COLUMN franking_commitment BLOB;
                    ALTER TABLE inbox ADD COLUMN franking_tag BLOB;
                    CREATE TABLE device_keys (
                        device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices(id),
                        account_id TEXT NOT NULL,
                        agreement_key BLOB NOT NULL,
                        agreement_signature BLOB NOT NULL,
                        signed_prekey_id INTEGER NOT NULL,
                        signed_prekey BLOB NOT NULL,
                        signed_prekey_signature BLOB NOT NULL,
                        last_resort_id INTEGER NOT NULL,
                        last_resort_key BLOB NOT NULL,
                        last_resort_signature BLOB NOT NULL
                    );
                    CREATE TABLE one_time_prekeys (
                        device_id TEXT NOT NULL,
                        kind INTEGER NOT NULL,
                        key_id INTEGER NOT NULL,
                        public_key BLOB NOT NULL,
                        signature BLOB NOT NULL,
                        PRIMARY KEY (device_id, kind, key_id)
                    ) WITHOUT ROWID;
                    CREATE TABLE device_lists (
                        account_id TEXT PRIMARY KEY NOT NULL,
                        version INTEGER NOT NULL,
                        list BLOB NOT NULL
                    );
                    CREATE TABLE server_secrets (
                        name TEXT PRIMARY KEY NOT NULL,
                        value BLOB NOT NULL
                    );
                    """)
        }
        migrator.registerMigration("v4-device-linking") { db in
            try db.execute(
                sql: """
                    ALTER TABLE devices ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE devices ADD COLUMN link_key BLOB;
                    """)
        }
        migrator.registerMigration("v5-send-payload-hash") { db in
            // Rows from before this migration keep NULL: they cannot be compared (see SendIdempotency).
            try db.execute(sql: "ALTER TABLE sent_messages ADD COLUMN content_hash BLOB")
        }
        migrator.registerMigration("v3-franking-keys") { db in
            // Sealed keys only; the plain secret of earlier versions is moved here by the server
            // at start (sealing needs a key the database never holds).
            try db.execute(
                sql: """
                    CREATE TABLE franking_keys (
                        id INTEGER PRIMARY KEY NOT NULL,
                        sealed_key BLOB NOT NULL,
                        created_at INTEGER NOT NULL,
                        retired_at INTEGER
                    );
                    """)
        }
        migrator.registerMigration("v6-chats") { db in
            // The log is an ordinary rowid table: its rows carry whole messages, too large for
            // WITHOUT ROWID to pay off. The small per-member and per-message tables are clustered
            // on their keys. A message's views and reactions live in tables of their own, one row
            // per account, so each counts an account once. Invites and join requests keep rowids
            // to order rows made in the same millisecond by when they were stored.
            try db.execute(
                sql: """
                    CREATE TABLE chats (
                        id TEXT PRIMARY KEY NOT NULL,
                        kind TEXT NOT NULL,
                        title TEXT NOT NULL,
                        about TEXT NOT NULL,
                        username TEXT,
                        username_canonical TEXT UNIQUE,
                        created_at INTEGER NOT NULL,
                        slow_mode_seconds INTEGER NOT NULL,
                        sign_posts INTEGER NOT NULL,
                        hides_forward_origin INTEGER NOT NULL,
                        member_count INTEGER NOT NULL,
                        last_seq INTEGER NOT NULL,
                        membership_version INTEGER NOT NULL,
                        removal_version INTEGER NOT NULL
                    );
                    CREATE INDEX chats_public_by_size ON chats(member_count DESC, id) WHERE username_canonical IS NOT NULL;
                    CREATE TABLE chat_members (
                        chat_id TEXT NOT NULL REFERENCES chats(id),
                        account_id TEXT NOT NULL,
                        role TEXT NOT NULL,
                        rights INTEGER NOT NULL,
                        joined_at INTEGER NOT NULL,
                        read_seq INTEGER NOT NULL,
                        muted INTEGER NOT NULL,
                        last_post_at INTEGER,
                        PRIMARY KEY (chat_id, account_id)
                    ) WITHOUT ROWID;
                    CREATE INDEX chat_members_by_account ON chat_members(account_id);
                    CREATE INDEX chat_members_by_role ON chat_members(chat_id, role, account_id);
                    CREATE TABLE chat_log (
                        chat_id TEXT NOT NULL REFERENCES chats(id),
                        seq INTEGER NOT NULL,
                        kind TEXT NOT NULL,
                        message_id TEXT NOT NULL,
                        sender_account_id TEXT NOT NULL,
                        sender_username TEXT NOT NULL,
                        sender_device_id TEXT NOT NULL,
                        server_time INTEGER NOT NULL,
                        target INTEGER,
                        payload BLOB NOT NULL,
                        content_hash BLOB,
                        edited_at INTEGER,
                        deleted INTEGER NOT NULL DEFAULT 0,
                        pinned INTEGER NOT NULL DEFAULT 0,
                        views INTEGER NOT NULL DEFAULT 0,
                        PRIMARY KEY (chat_id, seq)
                    );
                    CREATE UNIQUE INDEX chat_log_idempotency ON chat_log(chat_id, sender_device_id, message_id);
                    CREATE INDEX chat_log_messages ON chat_log(chat_id, seq) WHERE kind = 'message';
                    CREATE TABLE chat_reactions (
                        chat_id TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        account_id TEXT NOT NULL,
                        emoji TEXT NOT NULL,
                        PRIMARY KEY (chat_id, seq, account_id)
                    ) WITHOUT ROWID;
                    CREATE TABLE chat_views (
                        chat_id TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        account_id TEXT NOT NULL,
                        PRIMARY KEY (chat_id, seq, account_id)
                    ) WITHOUT ROWID;
                    CREATE TABLE chat_bans (
                        chat_id TEXT NOT NULL REFERENCES chats(id),
                        account_id TEXT NOT NULL,
                        banned_by TEXT NOT NULL,
                        banned_at INTEGER NOT NULL,
                        banned_until INTEGER,
                        PRIMARY KEY (chat_id, account_id)
                    ) WITHOUT ROWID;
                    CREATE TABLE chat_invites (
                        code TEXT PRIMARY KEY NOT NULL,
                        chat_id TEXT NOT NULL REFERENCES chats(id),
                        created_by TEXT NOT NULL,
                        created_at INTEGER NOT NULL,
                        expires_at INTEGER,
                        usage_limit INTEGER,
                        uses INTEGER NOT NULL,
                        requires_approval INTEGER NOT NULL,
                        revoked_at INTEGER
                    );
                    CREATE INDEX chat_invites_by_chat ON chat_invites(chat_id, created_at);
                    CREATE TABLE chat_join_requests (
                        chat_id TEXT NOT NULL REFERENCES chats(id),
                        account_id TEXT NOT NULL,
                        requested_at INTEGER NOT NULL,
                        invite_code TEXT NOT NULL,
                        PRIMARY KEY (chat_id, account_id)
                    );
                    CREATE INDEX chat_join_requests_by_time ON chat_join_requests(chat_id, requested_at);
                    """)
        }
        migrator.registerMigration("v8-blob-references") { db in
            // What keeps blobs alive and who may read them; the register of stored blobs that
            // garbage collection walks (the blob files themselves live beside the database); the
            // checked facts of public media.
            try db.execute(
                sql: """
                    CREATE TABLE blob_references (
                        blob BLOB NOT NULL,
                        holder TEXT NOT NULL,
                        reader TEXT NOT NULL,
                        is_upload INTEGER NOT NULL,
                        quota_bytes INTEGER NOT NULL,
                        created_at INTEGER NOT NULL,
                        expires_at INTEGER,
                        PRIMARY KEY (blob, holder, reader)
                    ) WITHOUT ROWID;
                    CREATE INDEX blob_references_by_holder ON blob_references(holder);
                    CREATE INDEX blob_references_by_expiry ON blob_references(expires_at) WHERE expires_at IS NOT NULL;
                    CREATE INDEX blob_references_by_quota ON blob_references(reader, created_at) WHERE is_upload = 1;
                    CREATE TABLE blob_register (
                        blob BLOB PRIMARY KEY NOT NULL,
                        registered_at INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE INDEX blob_register_by_time ON blob_register(registered_at);
                    CREATE TABLE public_media (
                        blob BLOB PRIMARY KEY NOT NULL,
                        media_type TEXT NOT NULL,
                        width INTEGER,
                        height INTEGER,
                        thumbnail BLOB
                    ) WITHOUT ROWID;
                    """)
        }
        return migrator
    }

    static func migrate(_ pool: DatabasePool) throws {
        let migrator = migrator
        // Refuse, rather than corrupt, a database a newer version migrated.
        let superseded = try pool.read { db in try migrator.hasBeenSuperseded(db) }
        if superseded {
            let applied = try pool.read { db in try migrator.appliedIdentifiers(db) }
            let known = Set(migrator.migrations)
            let unknown = applied.filter { !known.contains($0) }.sorted()
            throw StorageError.schemaTooNew("unknown migrations: \(unknown.joined(separator: ", "))")
        }
        try migrator.migrate(pool)
    }
}

extension Date {
    var databaseMilliseconds: Int64 { millisecondsSince1970 }
}

struct SQLiteAccountStore: AccountStore {
    let pool: DatabasePool

    func insert(_ account: Account) async throws {
        do {
            try await pool.write { db in
                try db.cachedStatement(
                    sql:
                        "INSERT INTO accounts (id, username, username_canonical, identity_key, created_at) VALUES (?, ?, ?, ?, ?)"
                ).execute(arguments: [
                    account.id.description, account.username.display, account.username.canonical, account.identityKey,
                    account.createdAt.databaseMilliseconds,
                ])
            }
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw HeliographError(.usernameTaken, "the username \(account.username) is already taken")
        }
    }

    func account(id: AccountID) async throws -> Account? {
        try await pool.read { db in
            try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM accounts WHERE id = ?"), arguments: [id.description]).map(
                Self.account)
        }
    }

    func account(username: Username) async throws -> Account? {
        try await pool.read { db in
            try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT * FROM accounts WHERE username_canonical = ?"),
                arguments: [username.canonical]
            )
            .map(Self.account)
        }
    }

    func replaceIdentityKey(of accountID: AccountID, from old: Data, to new: Data) async throws -> Bool {
        try await pool.write { db in
            try db.cachedStatement(sql: "UPDATE accounts SET identity_key = ? WHERE id = ? AND identity_key = ?")
                .execute(arguments: [new, accountID.description, old])
            return db.changesCount == 1
        }
    }

    static func account(_ row: Row) throws -> Account {
        Account(
            id: try row.accountID("id"),
            username: try Username(validating: row["username"]),
            identityKey: row["identity_key"],
            createdAt: Date(millisecondsSince1970: row["created_at"])
        )
    }
}

struct SQLiteDeviceStore: DeviceStore {
    let pool: DatabasePool

    func insert(_ device: Device) async throws {
        try await pool.write { db in
            try db.cachedStatement(
                sql:
                    "INSERT INTO devices (id, account_id, name, created_at, revoked_at, pending, link_key) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ).execute(arguments: [
                device.id.description, device.accountID.description, device.name, device.createdAt.databaseMilliseconds,
                device.revokedAt?.databaseMilliseconds, device.pending, device.linkKey,
            ])
        }
    }

    func device(id: DeviceID) async throws -> Device? {
        try await pool.read { db in
            try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM devices WHERE id = ?"), arguments: [id.description]).map(
                Self.device)
        }
    }

    func devices(of accountID: AccountID) async throws -> [Device] {
        try await pool.read { db in
            try Row.fetchAll(
                try db.cachedStatement(sql: "SELECT * FROM devices WHERE account_id = ? ORDER BY created_at, id"),
                arguments: [accountID.description]
            ).map(Self.device)
        }
    }

    func revoke(_ deviceID: DeviceID, at time: Date) async throws -> Device? {
        try await pool.write { db in
            try db.cachedStatement(
                sql: "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?"
            ).execute(arguments: [time.databaseMilliseconds, deviceID.description])
            // A revoked device will never fetch its inbox: drop the copies now, and its keys so
            // that nobody sets up a session with it any more.
            try db.cachedStatement(sql: "DELETE FROM inbox WHERE device_id = ?").execute(arguments: [deviceID.description])
            try SQLitePrekeyStore.deleteKeys(db, deviceID)
            return try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT * FROM devices WHERE id = ?"), arguments: [deviceID.description]
            )
            .map(Self.device)
        }
    }

    func approve(_ deviceID: DeviceID) async throws -> Device? {
        try await pool.write { db in
            try db.cachedStatement(sql: "UPDATE devices SET pending = 0 WHERE id = ? AND pending = 1 AND revoked_at IS NULL")
                .execute(arguments: [deviceID.description])
            guard db.changesCount == 1 else { return nil }
            return try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT * FROM devices WHERE id = ?"), arguments: [deviceID.description]
            )
            .map(Self.device)
        }
    }

    static func device(_ row: Row) throws -> Device {
        Device(
            id: try row.deviceID("id"),
            accountID: try row.accountID("account_id"),
            name: row["name"],
            createdAt: Date(millisecondsSince1970: row["created_at"]),
            revokedAt: (row["revoked_at"] as Int64?).map(Date.init(millisecondsSince1970:)),
            pending: row["pending"],
            linkKey: row["link_key"]
        )
    }
}

struct SQLiteSessionStore: SessionStore {
    let pool: DatabasePool

    func insert(_ session: DeviceSession) async throws {
        try await pool.write { db in
            try db.cachedStatement(
                sql: "INSERT INTO sessions (token_hash, account_id, device_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)"
            ).execute(arguments: [
                session.tokenHash, session.accountID.description, session.deviceID.description,
                session.createdAt.databaseMilliseconds, session.expiresAt.databaseMilliseconds,
            ])
        }
    }

    func session(tokenHash: Data) async throws -> DeviceSession? {
        try await pool.read { db in
            guard
                let row = try Row.fetchOne(
                    try db.cachedStatement(sql: "SELECT * FROM sessions WHERE token_hash = ?"), arguments: [tokenHash])
            else { return nil }
            return DeviceSession(
                tokenHash: row["token_hash"],
                accountID: try row.accountID("account_id"),
                deviceID: try row.deviceID("device_id"),
                createdAt: Date(millisecondsSince1970: row["created_at"]),
                expiresAt: Date(millisecondsSince1970: row["expires_at"])
            )
        }
    }

    func deleteExpired(before time: Date) async throws -> Int {
        try await pool.write { db in
            try db.cachedStatement(sql: "DELETE FROM sessions WHERE expires_at < ?").execute(arguments: [
                time.databaseMilliseconds
            ])
            return db.changesCount
        }
    }
}

struct SQLiteChallengeStore: ChallengeStore {
    let pool: DatabasePool

    func insert(_ challenge: LoginChallenge) async throws {
        try await pool.write { db in
            try db.cachedStatement(
                sql: "INSERT INTO challenges (id, account_id, nonce, expires_at) VALUES (?, ?, ?, ?)"
            ).execute(arguments: [
                challenge.id.uuidString.lowercased(), challenge.accountID.description, challenge.nonce,
                challenge.expiresAt.databaseMilliseconds,
            ])
        }
    }

    func consume(id: UUID) async throws -> LoginChallenge? {
        // DELETE … RETURNING in the single writer: a challenge is handed out at most once.
        try await pool.write { db in
            guard
                let row = try Row.fetchOne(
                    try db.cachedStatement(sql: "DELETE FROM challenges WHERE id = ? RETURNING *"),
                    arguments: [id.uuidString.lowercased()])
            else { return nil }
            return LoginChallenge(
                id: id,
                accountID: try row.accountID("account_id"),
                nonce: row["nonce"],
                expiresAt: Date(millisecondsSince1970: row["expires_at"])
            )
        }
    }

    func deleteExpired(before time: Date) async throws -> Int {
        try await pool.write { db in
            try db.cachedStatement(sql: "DELETE FROM challenges WHERE expires_at < ?").execute(arguments: [
                time.databaseMilliseconds
            ])
            return db.changesCount
        }
    }
}

struct SQLiteInboxStore: InboxStore {
    let pool: DatabasePool
    let committer: SQLiteGroupCommitter

    init(pool: DatabasePool) {
        self.pool = pool
        committer = SQLiteGroupCommitter(pool: pool)
    }

    func enqueue(_ message: OutgoingMessage) async throws -> DeliveryReceipt {
        try await committer.enqueue(message)
    }

    /// Appends one message inside the caller's transaction.
    static func enqueue(_ message: OutgoingMessage, in db: Database) throws -> DeliveryReceipt {
        let senderDevice = message.sender.deviceID.description
        if let previous = try Row.fetchOne(
            try db.cachedStatement(
                sql:
                    "SELECT server_time, sequences, content_hash FROM sent_messages WHERE sender_device_id = ? AND message_id = ?"
            ),
            arguments: [senderDevice, message.messageID.rawValue])
        {
            guard SendIdempotency.isRetry(stored: previous["content_hash"], incoming: message.contentHash) else {
                throw SendIdempotency.conflict(message.messageID)
            }
            return DeliveryReceipt(
                messageID: message.messageID,
                serverTime: Date(millisecondsSince1970: previous["server_time"]),
                sequences: SequenceList.decode(previous["sequences"]),
                duplicate: true
            )
        }
        let serverTime = message.serverTime.databaseMilliseconds
        var sequences: [DeviceID: Int64] = [:]
        for copy in message.copies {
            let deviceID = copy.deviceID
            guard
                let sequence = try Int64.fetchOne(
                    try db.cachedStatement(
                        sql: "UPDATE devices SET last_seq = last_seq + 1 WHERE id = ? AND revoked_at IS NULL RETURNING last_seq"),
                    arguments: [deviceID.description])
            else { continue }  // revoked since the caller listed it: nobody will read that copy
            try db.cachedStatement(
                sql: """
                    INSERT INTO inbox (device_id, seq, message_id, sender_account_id, sender_username, sender_device_id,
                                       server_time, payload, franking_commitment, franking_tag)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [
                deviceID.description, sequence, message.messageID.rawValue, message.sender.accountID.description,
                message.sender.username.display, senderDevice, serverTime, copy.payload, message.frankingCommitment,
                copy.frankingTag,
            ])
            sequences[deviceID] = sequence
        }
        try db.cachedStatement(
            sql:
                "INSERT INTO sent_messages (sender_device_id, message_id, server_time, sequences, content_hash) VALUES (?, ?, ?, ?, ?)"
        ).execute(arguments: [
            senderDevice, message.messageID.rawValue, serverTime, SequenceList.encode(sequences), message.contentHash,
        ])
        return DeliveryReceipt(
            messageID: message.messageID, serverTime: Date(millisecondsSince1970: serverTime), sequences: sequences,
            duplicate: false)
    }

    func envelopes(for deviceID: DeviceID, after: Int64, limit: Int) async throws -> [Envelope] {
        try await pool.read { db in
            try Row.fetchAll(
                try db.cachedStatement(sql: "SELECT * FROM inbox WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?"),
                arguments: [deviceID.description, after, limit]
            ).map { row in
                Envelope(
                    sequence: row["seq"],
                    messageID: try MessageID(validating: row["message_id"]),
                    sender: EnvelopeSender(
                        accountID: try row.accountID("sender_account_id"),
                        username: try Username(validating: row["sender_username"]),
                        deviceID: try row.deviceID("sender_device_id")),
                    recipientDeviceID: deviceID,
                    serverTime: Date(millisecondsSince1970: row["server_time"]),
                    payload: row["payload"],
                    frankingCommitment: row["franking_commitment"],
                    frankingTag: row["franking_tag"]
                )
            }
        }
    }

    func acknowledge(_ deviceID: DeviceID, through sequence: Int64) async throws -> Int64 {
        try await pool.write { db in
            guard
                let row = try Row.fetchOne(
                    try db.cachedStatement(sql: "SELECT last_seq, acked_seq FROM devices WHERE id = ?"),
                    arguments: [deviceID.description])
            else { throw HeliographError(.unknownDevice, "unknown device") }
            let last: Int64 = row["last_seq"]
            let acked: Int64 = row["acked_seq"]
            guard sequence >= 0, sequence <= last else {
                throw HeliographError(
                    .ackOutOfRange, "cannot acknowledge \(sequence): the highest sequence number sent to this device is \(last)")
            }
            guard sequence > acked else { return acked }
            try db.cachedStatement(
                sql: "DELETE FROM inbox WHERE device_id = ? AND seq <= ?"
            ).execute(arguments: [deviceID.description, sequence])
            try db.cachedStatement(
                sql: "UPDATE devices SET acked_seq = ? WHERE id = ?"
            ).execute(arguments: [sequence, deviceID.description])
            return sequence
        }
    }

    func lastSequence(of deviceID: DeviceID) async throws -> Int64 {
        try await pool.read { db in
            try Int64.fetchOne(
                try db.cachedStatement(sql: "SELECT last_seq FROM devices WHERE id = ?"), arguments: [deviceID.description]) ?? 0
        }
    }

    func deleteExpired(before time: Date) async throws -> Int {
        try await pool.write { db in
            try db.cachedStatement(sql: "DELETE FROM inbox WHERE server_time < ?").execute(arguments: [time.databaseMilliseconds])
            let deleted = db.changesCount
            try db.cachedStatement(sql: "DELETE FROM sent_messages WHERE server_time < ?").execute(arguments: [
                time.databaseMilliseconds
            ])
            return deleted
        }
    }
}

struct SQLitePrekeyStore: PrekeyStore {
    let pool: DatabasePool

    func setKeys(_ keys: DeviceKeyRecord) async throws {
        try await pool.write { db in
            try db.cachedStatement(
                sql: """
                    INSERT OR REPLACE INTO device_keys (device_id, account_id, agreement_key, agreement_signature,
                        signed_prekey_id, signed_prekey, signed_prekey_signature, last_resort_id, last_resort_key, last_resort_signature)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [
                keys.deviceID.description, keys.accountID.description, keys.agreementKey, keys.agreementSignature,
                keys.signedPrekey.id, keys.signedPrekey.publicKey, keys.signedPrekey.signature, keys.lastResortPrekey.id,
                keys.lastResortPrekey.publicKey, keys.lastResortPrekey.signature,
            ])
        }
    }

    func addOneTimePrekeys(_ prekeys: [StoredPrekey], for deviceID: DeviceID) async throws {
        try await pool.write { db in
            for prekey in prekeys {
                try db.cachedStatement(
                    sql: """
                        INSERT OR IGNORE INTO one_time_prekeys (device_id, kind, key_id, public_key, signature)
                        VALUES (?, ?, ?, ?, ?)
                        """
                ).execute(arguments: [deviceID.description, prekey.kind, prekey.id, prekey.publicKey, prekey.signature])
            }
        }
    }

    func keys(for deviceID: DeviceID) async throws -> DeviceKeyRecord? {
        try await pool.read { db in try Self.keys(db, deviceID) }
    }

    private static func keys(_ db: Database, _ deviceID: DeviceID) throws -> DeviceKeyRecord? {
        guard
            let row = try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT * FROM device_keys WHERE device_id = ?"), arguments: [deviceID.description])
        else { return nil }
        return DeviceKeyRecord(
            deviceID: deviceID, accountID: try row.accountID("account_id"), agreementKey: row["agreement_key"],
            agreementSignature: row["agreement_signature"],
            signedPrekey: StoredPrekey(
                kind: 1, id: row["signed_prekey_id"], publicKey: row["signed_prekey"],
                signature: row["signed_prekey_signature"]),
            lastResortPrekey: StoredPrekey(
                kind: 4, id: row["last_resort_id"], publicKey: row["last_resort_key"], signature: row["last_resort_signature"]))
    }

    func claim(for deviceID: DeviceID) async throws -> ClaimedPrekeys? {
        // In the single writer: a one-time prekey deleted here can never be returned twice.
        try await pool.write { db in
            guard let keys = try Self.keys(db, deviceID) else { return nil }
            func take(_ kind: Int) throws -> StoredPrekey? {
                guard
                    let row = try Row.fetchOne(
                        try db.cachedStatement(
                            sql: """
                                DELETE FROM one_time_prekeys WHERE device_id = ?1 AND kind = ?2 AND key_id =
                                    (SELECT min(key_id) FROM one_time_prekeys WHERE device_id = ?1 AND kind = ?2)
                                RETURNING key_id, public_key, signature
                                """),
                        arguments: [deviceID.description, kind])
                else { return nil }
                return StoredPrekey(kind: kind, id: row["key_id"], publicKey: row["public_key"], signature: row["signature"])
            }
            return ClaimedPrekeys(
                keys: keys, oneTimePrekey: try take(StoredPrekey.oneTimeKind), kemPrekey: try take(StoredPrekey.kemKind))
        }
    }

    func oneTimeCounts(for deviceID: DeviceID) async throws -> (x25519: Int, kem: Int) {
        try await pool.read { db in
            let rows = try Row.fetchAll(
                try db.cachedStatement(sql: "SELECT kind, count(*) AS n FROM one_time_prekeys WHERE device_id = ? GROUP BY kind"),
                arguments: [deviceID.description])
            var counts: [Int: Int] = [:]
            for row in rows { counts[row["kind"]] = row["n"] }
            return (counts[StoredPrekey.oneTimeKind] ?? 0, counts[StoredPrekey.kemKind] ?? 0)
        }
    }

    func publishedDevices(of accountID: AccountID) async throws -> [DeviceID] {
        try await pool.read { db in
            try String.fetchAll(
                // Joined with devices: a key upload racing a revocation must not bring a device back.
                try db.cachedStatement(
                    sql: """
                        SELECT k.device_id FROM device_keys k JOIN devices d ON d.id = k.device_id
                        WHERE k.account_id = ? AND d.revoked_at IS NULL ORDER BY k.device_id
                        """),
                arguments: [accountID.description]
            ).compactMap(DeviceID.init)
        }
    }

    func deleteKeys(for deviceID: DeviceID) async throws {
        try await pool.write { db in try SQLitePrekeyStore.deleteKeys(db, deviceID) }
    }

    func deleteDeviceList(account: AccountID) async throws {
        try await pool.write { db in
            try db.cachedStatement(sql: "DELETE FROM device_lists WHERE account_id = ?").execute(arguments: [
                account.description
            ])
        }
    }

    func deleteOneTimePrekeys(for deviceID: DeviceID) async throws {
        try await pool.write { db in
            try db.cachedStatement(sql: "DELETE FROM one_time_prekeys WHERE device_id = ?")
                .execute(arguments: [deviceID.description])
        }
    }

    static func deleteKeys(_ db: Database, _ deviceID: DeviceID) throws {
        try db.cachedStatement(sql: "DELETE FROM one_time_prekeys WHERE device_id = ?").execute(arguments: [deviceID.description])
        try db.cachedStatement(sql: "DELETE FROM device_keys WHERE device_id = ?").execute(arguments: [deviceID.description])
    }

    func storeDeviceList(account: AccountID, version: Int64, list: Data) async throws -> Bool {
        try await pool.write { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO device_lists (account_id, version, list) VALUES (?, ?, ?)
                    ON CONFLICT (account_id) DO UPDATE SET version = excluded.version, list = excluded.list
                    WHERE excluded.version > device_lists.version
                    """
            ).execute(arguments: [account.description, version, list])
            return db.changesCount == 1
        }
    }

    func deviceList(account: AccountID) async throws -> (version: Int64, list: Data)? {
        try await pool.read { db in
            guard
                let row = try Row.fetchOne(
                    try db.cachedStatement(sql: "SELECT version, list FROM device_lists WHERE account_id = ?"),
                    arguments: [account.description])
            else { return nil }
            return (row["version"], row["list"])
        }
    }
}

struct SQLiteSecretStore: ServerSecretStore {
    let pool: DatabasePool

    func secret(named name: String, create: @Sendable () -> Data) async throws -> Data {
        try await pool.write { db in
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO server_secrets (name, value) VALUES (?, ?)").execute(arguments: [
                name, create(),
            ])
            return try Data.fetchOne(
                try db.cachedStatement(sql: "SELECT value FROM server_secrets WHERE name = ?"), arguments: [name]) ?? Data()
        }
    }
}

/// The compact text form of a receipt's per-device sequence numbers: `device=seq,device=seq`.
package enum SequenceList {
    package static func encode(_ sequences: [DeviceID: Int64]) -> String {
        sequences.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ",")
    }

    package static func decode(_ text: String) -> [DeviceID: Int64] {
        var result: [DeviceID: Int64] = [:]
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=")
            if parts.count == 2, let device = DeviceID(String(parts[0])), let sequence = Int64(parts[1]) {
                result[device] = sequence
            }
        }
        return result
    }
}

extension Row {
    func accountID(_ column: String) throws -> AccountID {
        guard let id = AccountID(self[column] as String) else { throw StorageCorruption(column: column) }
        return id
    }

    func deviceID(_ column: String) throws -> DeviceID {
        guard let id = DeviceID(self[column] as String) else { throw StorageCorruption(column: column) }
        return id
    }
}

/// A stored value that does not parse: a bug or tampering, logged by the server as internal.
struct StorageCorruption: Error, CustomStringConvertible {
    let column: String
    var description: String { "stored value in column \(column) is malformed" }
}
