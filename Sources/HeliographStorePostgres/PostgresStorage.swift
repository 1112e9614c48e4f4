import Foundation
import HeliographCore
import HeliographStore
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// Where and how to reach PostgreSQL, parsed from a `postgres://` URL.
public struct PostgresLocation: Sendable, CustomStringConvertible {
    /// Host name or address.
    public var host: String
    /// TCP port.
    public var port: Int
    /// Role name.
    public var username: String
    /// Password, if any. Never printed.
    public var password: String?
    /// Database name.
    public var database: String
    /// Whether TLS is required (`?sslmode=require`).
    public var requireTLS: Bool

    /// Parses `postgres://user[:password]@host[:port]/database[?sslmode=require]`.
    public init(url text: String) throws(HeliographError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme,
            ["postgres", "postgresql"].contains(scheme), let host = components.host, !host.isEmpty
        else {
            throw HeliographError(.badRequest, "the database URL must look like postgres://user:password@host:5432/database")
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.user.flatMap { $0.removingPercentEncoding } ?? "postgres"
        self.password = components.password.flatMap { $0.removingPercentEncoding }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? username : path
        let sslmode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        self.requireTLS = ["require", "verify-ca", "verify-full"].contains(sslmode)
    }

    /// The location without the password, for messages and logs.
    public var description: String { "postgres://\(username)@\(host):\(port)/\(database)" }

    var tls: PostgresConnection.Configuration.TLS {
        requireTLS ? .require(try! NIOSSLContext(configuration: .makeClientConfiguration())) : .disable
    }

    var clientTLS: PostgresClient.Configuration.TLS {
        requireTLS ? .require(.makeClientConfiguration()) : .disable
    }
}

/// The production backend: every store on PostgreSQL through PostgresNIO, shared by several
/// server nodes. Inbox changes and revocations are announced with NOTIFY inside the committing
/// transaction, so every node's listener hears about a send or a revocation exactly when it
/// becomes visible.
public final class PostgresStorage: HeliographStorage {
    let client: PostgresClient
    let location: PostgresLocation
    let logger: Logger
    private let runTask: Task<Void, Never>
    private let feed: PostgresChangeFeed
    /// How long one store call may wait for the database before failing as unavailable.
    let operationTimeout: Duration

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
    public let blobs: any BlobStore
    public let blobReferences: any BlobReferenceStore
    public var changeFeed: (any InboxChangeFeed)? { feed }

    /// Connects, checks the database answers within `connectTimeout`, and migrates it.
    ///
    /// Fails fast with a message naming host and port when the server cannot be reached, and
    /// with ``StorageError/schemaTooNew(_:)`` when a newer Heliograph migrated the database.
    public init(
        location: PostgresLocation, maximumConnections: Int = 16, connectTimeout: Duration = .seconds(3),
        operationTimeout: Duration = .seconds(10), logger: Logger
    ) async throws {
        self.location = location
        self.logger = logger
        self.operationTimeout = operationTimeout
        var configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.username, password: location.password,
            database: location.database, tls: location.clientTLS)
        configuration.options.maximumConnections = maximumConnections
        configuration.options.minimumConnections = 0
        configuration.options.connectTimeout = connectTimeout
        // The pool retries failed connections on its own and logs each attempt; keep that quiet
        // unless the operator asked for detail.
        let poolLogger = {
            var quieter = logger
            quieter.logLevel = max(logger.logLevel, .warning)
            return quieter
        }()
        let client = PostgresClient(configuration: configuration, backgroundLogger: poolLogger)
        self.client = client
        runTask = Task { await client.run() }
        // Names this storage in its notifications, so its own listener can skip them: a node
        // hands its own sends to its sockets directly (see the server's DeliveryHub).
        let node = String(UUID().uuidString.prefix(8)).lowercased()
        feed = PostgresChangeFeed(location: location, node: node, logger: logger)
        accounts = PostgresAccountStore(client: client, timeout: operationTimeout)
        devices = PostgresDeviceStore(client: client, timeout: operationTimeout)
        sessions = PostgresSessionStore(client: client, timeout: operationTimeout)
        challenges = PostgresChallengeStore(client: client, timeout: operationTimeout)
        inbox = PostgresInboxStore(client: client, logger: logger, timeout: operationTimeout, node: node)
        prekeys = PostgresPrekeyStore(client: client, timeout: operationTimeout)
        secrets = PostgresSecretStore(client: client, timeout: operationTimeout)
        frankingKeys = PostgresFrankingKeyStore(client: client, timeout: operationTimeout)
        chats = PostgresChatStore(client: client, timeout: operationTimeout, node: node)
        chatLog = PostgresChatLogStore(client: client, logger: logger, timeout: operationTimeout, node: node)
        blobs = PostgresBlobStore(client: client, timeout: operationTimeout)
        blobReferences = PostgresBlobReferenceStore(client: client, timeout: operationTimeout)
        do {
            // One direct connection first: it fails at once with the real cause (refused,
            // unknown host, bad password) instead of the pool's silent retries.
            try await withDeadline(connectTimeout + .seconds(1), what: "connect") {
                let probe = try await PostgresConnection.connect(
                    configuration: PostgresConnection.Configuration(
                        host: location.host, port: location.port, username: location.username,
                        password: location.password, database: location.database, tls: location.tls),
                    id: 0, logger: poolLogger)
                try await probe.close()
            }
            try await PostgresSchema.migrate(client: client, logger: logger)
        } catch {
            runTask.cancel()
            if let error = error as? StorageError { throw error }
            throw StorageUnavailable(
                "cannot connect to PostgreSQL at \(location.host):\(location.port) (\(location)): \(Self.explain(error))")
        }
        feed.start()
    }

    public func ping() async throws {
        try await withDeadline(.seconds(3), what: "ping") { try await self.client.query("SELECT 1", logger: self.logger) }
    }

    public func close() async throws {
        feed.stop()
        runTask.cancel()
    }

    /// A readable cause from a PostgresNIO error: the server's message, or the socket error.
    static func explain(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            if let underlying = error.underlying { return "\(underlying)" }
            return "\(error.code)"
        }
        if let error = error as? StorageUnavailable { return error.detail }
        return "\(error)"
    }
}

/// Runs `body`, failing with ``StorageUnavailable`` if it takes longer than `limit` or loses
/// its connection: the pool would otherwise wait for an unreachable database indefinitely.
///
/// The body runs in its own task and is cancelled on timeout, but not waited for: a lease that
/// ignores cancellation must not hold the caller past its deadline.
func withDeadline<T: Sendable>(
    _ limit: Duration, what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = LockedBox<CheckedContinuation<T, any Error>?>(nil)
    let work = LockedBox<Task<Void, Never>?>(nil)
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            outcome.withLock { $0 = continuation }
            let task = Task {
                do {
                    let value = try await body()
                    outcome.withLock { $0.take() }?.resume(returning: value)
                } catch let error as PSQLError where error.meansUnavailable {
                    outcome.withLock { $0.take() }?.resume(
                        throwing: StorageUnavailable("\(what): \(PostgresStorage.explain(error))"))
                } catch {
                    outcome.withLock { $0.take() }?.resume(throwing: error)
                }
            }
            work.withLock { $0 = task }
            Task {
                try? await Task.sleep(for: limit)
                if let waiting = outcome.withLock({ $0.take() }) {
                    task.cancel()
                    waiting.resume(throwing: StorageUnavailable("\(what) took longer than \(limit)"))
                }
            }
        }
    } onCancel: {
        work.withLock { $0 }?.cancel()
    }
}

extension PSQLError {
    /// Whether the error says the database is unreachable or going away, rather than that the
    /// statement was wrong: connection failures, and server errors of SQLSTATE classes 08
    /// (connection exception), 53 (insufficient resources) and 57 (operator intervention,
    /// such as an administrator terminating the connection or a shutdown).
    var meansUnavailable: Bool {
        guard code == .server else { return true }
        guard let state = serverInfo?[.sqlState] else { return false }
        return state.hasPrefix("08") || state.hasPrefix("53") || state.hasPrefix("57")
    }
}

/// A value behind a lock, shareable between tasks.
final class LockedBox<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

/// Versioned migrations of the PostgreSQL schema. Keep in step with the SQLite migrations.
enum PostgresSchema {
    /// Migrations in order; never edit one that has shipped, add a new one.
    static let migrations: [(id: String, sql: [String])] = [
        (
            "v1-accounts-devices-inbox",
            [
                """
                CREATE TABLE accounts (
                    id uuid PRIMARY KEY,
                    username text NOT NULL,
                    username_canonical text NOT NULL UNIQUE,
                    identity_key bytea NOT NULL,
                    created_at bigint NOT NULL
                )
                """,
                """
                CREATE TABLE devices (
                    id uuid PRIMARY KEY,
                    account_id uuid NOT NULL REFERENCES accounts(id),
                    name text NOT NULL,
                    created_at bigint NOT NULL,
                    revoked_at bigint,
                    last_seq bigint NOT NULL DEFAULT 0,
                    acked_seq bigint NOT NULL DEFAULT 0
                )
                """,
                "CREATE INDEX devices_by_account ON devices(account_id, created_at)",
                """
                CREATE TABLE sessions (
                    token_hash bytea PRIMARY KEY,
                    account_id uuid NOT NULL,
                    device_id uuid NOT NULL REFERENCES devices(id),
                    created_at bigint NOT NULL,
                    expires_at bigint NOT NULL
                )
                """,
                "CREATE INDEX sessions_by_expiry ON sessions(expires_at)",
                """
                CREATE TABLE challenges (
                    id uuid PRIMARY KEY,
                    account_id uuid NOT NULL,
                    nonce bytea NOT NULL,
                    expires_at bigint NOT NULL
                )
                """,
                """
                CREATE TABLE inbox (
                    device_id uuid NOT NULL,
                    seq bigint NOT NULL,
                    message_id text NOT NULL,
                    sender_account_id uuid NOT NULL,
                    sender_username text NOT NULL,
                    sender_device_id uuid NOT NULL,
                    server_time bigint NOT NULL,
                    payload bytea NOT NULL,
                    PRIMARY KEY (device_id, seq)
                )
                """,
                "CREATE INDEX inbox_by_time ON inbox(server_time)",
                """
                CREATE TABLE sent_messages (
                    sender_device_id uuid NOT NULL,
                    message_id text NOT NULL,
                    server_time bigint NOT NULL,
                    sequences text NOT NULL,
                    PRIMARY KEY (sender_device_id, message_id)
                )
                """,
                "CREATE INDEX sent_messages_by_time ON sent_messages(server_time)",
            ]
        ),
        (
            "v2-prekeys-franking",
            [
                "ALTER TABLE inbox ADD COLUMN franking_commitment bytea, ADD COLUMN franking_tag bytea",
                """
                CREATE TABLE device_keys (
                    device_id uuid PRIMARY KEY REFERENCES devices(id),
                    account_id uuid NOT NULL,
                    agreement_key bytea NOT NULL,
                    agreement_signature bytea NOT NULL,
                    signed_prekey_id bigint NOT NULL,
                    signed_prekey bytea NOT NULL,
                    signed_prekey_signature bytea NOT NULL,
                    last_resort_id bigint NOT NULL,
                    last_resort_key bytea NOT NULL,
                    last_resort_signature bytea NOT NULL
                )
                """,
                """
                CREATE TABLE one_time_prekeys (
                    device_id uuid NOT NULL,
                    kind integer NOT NULL,
                    key_id bigint NOT NULL,
                    public_key bytea NOT NULL,
                    signature bytea NOT NULL,
                    PRIMARY KEY (device_id, kind, key_id)
                )
                """,
                "CREATE TABLE device_lists (account_id uuid PRIMARY KEY, version bigint NOT NULL, list bytea NOT NULL)",
                "CREATE TABLE server_secrets (name text PRIMARY KEY, value bytea NOT NULL)",
            ]
        ),
        (
            "v4-device-linking",
            ["ALTER TABLE devices ADD COLUMN pending boolean NOT NULL DEFAULT false, ADD COLUMN link_key bytea"]
        ),
        (
            // Rows from before this migration keep NULL: they cannot be compared (see SendIdempotency).
            "v5-send-payload-hash",
            ["ALTER TABLE sent_messages ADD COLUMN content_hash bytea"]
        ),
        (
            // Sealed keys only; the plain secret of earlier versions is moved here by the server
            // at start (sealing needs a key the database never holds).
            "v3-franking-keys",
            [
                """
                CREATE TABLE franking_keys (
                    id bigint PRIMARY KEY,
                    sealed_key bytea NOT NULL,
                    created_at bigint NOT NULL,
                    retired_at bigint
                )
                """
            ]
        ),
        (
            // Groups and channels. A message is stored once in chat_log whatever the member
            // count; a member's read state is one number in its chat_members row. Times are
            // milliseconds, as elsewhere.
            "v6-chats",
            [
                """
                CREATE TABLE chats (
                    id uuid PRIMARY KEY,
                    kind text NOT NULL,
                    title text NOT NULL,
                    about text NOT NULL,
                    username text,
                    username_canonical text CONSTRAINT chats_username_unique UNIQUE,
                    created_at bigint NOT NULL,
                    slow_mode_seconds integer NOT NULL,
                    sign_posts boolean NOT NULL,
                    hides_forward_origin boolean NOT NULL,
                    member_count integer NOT NULL,
                    last_sequence bigint NOT NULL,
                    membership_version bigint NOT NULL,
                    removal_version bigint NOT NULL
                )
                """,
                // Search walks public chats biggest first and stops at its limit.
                "CREATE INDEX chats_public_by_size ON chats(member_count DESC, id) WHERE username_canonical IS NOT NULL",
                """
                CREATE TABLE chat_members (
                    chat_id uuid NOT NULL REFERENCES chats(id),
                    account_id uuid NOT NULL,
                    role text NOT NULL,
                    rights integer NOT NULL,
                    joined_at bigint NOT NULL,
                    read_sequence bigint NOT NULL DEFAULT 0,
                    muted boolean NOT NULL DEFAULT false,
                    last_post_at bigint,
                    PRIMARY KEY (chat_id, account_id)
                )
                """,
                "CREATE INDEX chat_members_by_account ON chat_members(account_id)",
                """
                CREATE TABLE chat_log (
                    chat_id uuid NOT NULL,
                    seq bigint NOT NULL,
                    kind text NOT NULL,
                    message_id text NOT NULL,
                    sender_account_id uuid NOT NULL,
                    sender_username text NOT NULL,
                    sender_device_id uuid NOT NULL,
                    server_time bigint NOT NULL,
                    target bigint,
                    payload bytea NOT NULL,
                    content_hash bytea,
                    edited_at bigint,
                    deleted boolean NOT NULL DEFAULT false,
                    pinned boolean NOT NULL DEFAULT false,
                    views integer NOT NULL DEFAULT 0,
                    PRIMARY KEY (chat_id, seq),
                    CONSTRAINT chat_log_idempotency UNIQUE (chat_id, sender_device_id, message_id)
                )
                """,
                // History pages and unread counts skip edits, reactions and other non-messages.
                "CREATE INDEX chat_log_messages ON chat_log(chat_id, seq) WHERE kind = 'message'",
                """
                CREATE TABLE chat_views (
                    chat_id uuid NOT NULL,
                    seq bigint NOT NULL,
                    account_id uuid NOT NULL,
                    PRIMARY KEY (chat_id, seq, account_id)
                )
                """,
                """
                CREATE TABLE chat_reactions (
                    chat_id uuid NOT NULL,
                    seq bigint NOT NULL,
                    account_id uuid NOT NULL,
                    emoji text NOT NULL,
                    PRIMARY KEY (chat_id, seq, account_id)
                )
                """,
                """
                CREATE TABLE chat_bans (
                    chat_id uuid NOT NULL REFERENCES chats(id),
                    account_id uuid NOT NULL,
                    banned_by uuid NOT NULL,
                    banned_at bigint NOT NULL,
                    until bigint,
                    PRIMARY KEY (chat_id, account_id)
                )
                """,
                """
                CREATE TABLE chat_invites (
                    code text PRIMARY KEY,
                    chat_id uuid NOT NULL REFERENCES chats(id),
                    created_by uuid NOT NULL,
                    created_at bigint NOT NULL,
                    expires_at bigint,
                    usage_limit integer,
                    uses integer NOT NULL DEFAULT 0,
                    requires_approval boolean NOT NULL,
                    revoked_at bigint,
                    ordinal bigint GENERATED BY DEFAULT AS IDENTITY
                )
                """,
                "CREATE INDEX chat_invites_by_chat ON chat_invites(chat_id, created_at)",
                """
                CREATE TABLE chat_join_requests (
                    chat_id uuid NOT NULL REFERENCES chats(id),
                    account_id uuid NOT NULL,
                    requested_at bigint NOT NULL,
                    invite_code text NOT NULL,
                    ordinal bigint GENERATED BY DEFAULT AS IDENTITY,
                    PRIMARY KEY (chat_id, account_id)
                )
                """,
                "CREATE INDEX chat_join_requests_by_time ON chat_join_requests(chat_id, requested_at)",
            ]
        ),
        (
            // Blobs as chunk rows keyed by byte offset (a range read fetches only its chunks), and
            // resumable uploads with their parts. Hashes are the 32 SHA-256 bytes; times milliseconds.
            "v7-blobs",
            [
                "CREATE TABLE blobs (hash bytea PRIMARY KEY, size bigint NOT NULL, created_at bigint NOT NULL)",
                "CREATE INDEX blobs_by_creation ON blobs(created_at, hash)",
                """
                CREATE TABLE blob_chunks (
                    hash bytea NOT NULL REFERENCES blobs(hash) ON DELETE CASCADE,
                    byte_offset bigint NOT NULL,
                    bytes bytea NOT NULL,
                    PRIMARY KEY (hash, byte_offset)
                )
                """,
                """
                CREATE TABLE blob_uploads (
                    id uuid PRIMARY KEY,
                    owner uuid NOT NULL,
                    size bigint NOT NULL,
                    sha256 bytea NOT NULL,
                    part_size bigint NOT NULL,
                    created_at bigint NOT NULL,
                    expires_at bigint NOT NULL,
                    finished_hash bytea,
                    label text NOT NULL DEFAULT ''
                )
                """,
                "CREATE INDEX blob_uploads_by_expiry ON blob_uploads(expires_at)",
                """
                CREATE TABLE blob_upload_parts (
                    upload_id uuid NOT NULL REFERENCES blob_uploads(id) ON DELETE CASCADE,
                    part_index bigint NOT NULL,
                    bytes bytea NOT NULL,
                    PRIMARY KEY (upload_id, part_index)
                )
                """,
            ]
        ),
        (
            // What keeps blobs alive and who may read them, the register of stored blobs that
            // garbage collection walks, and the checked facts of public media.
            "v8-blob-references",
            [
                """
                CREATE TABLE blob_references (
                    blob bytea NOT NULL,
                    holder text NOT NULL,
                    reader text NOT NULL,
                    is_upload boolean NOT NULL,
                    quota_bytes bigint NOT NULL,
                    created_at bigint NOT NULL,
                    expires_at bigint,
                    PRIMARY KEY (blob, holder, reader)
                )
                """,
                "CREATE INDEX blob_references_by_holder ON blob_references(holder)",
                "CREATE INDEX blob_references_by_expiry ON blob_references(expires_at) WHERE expires_at IS NOT NULL",
                "CREATE INDEX blob_references_by_quota ON blob_references(reader, created_at) WHERE is_upload",
                "CREATE TABLE blob_register (blob bytea PRIMARY KEY, registered_at bigint NOT NULL)",
                "CREATE INDEX blob_register_by_time ON blob_register(registered_at)",
                """
                CREATE TABLE public_media (
                    blob bytea PRIMARY KEY,
                    media_type text NOT NULL,
                    width integer,
                    height integer,
                    thumbnail bytea
                )
                """,
            ]
        ),
    ]

    /// An arbitrary constant: the advisory lock that serialises migrations across nodes.
    static let lockKey: Int64 = 0x4865_6C69_6F67

    static func migrate(client: PostgresClient, logger: Logger) async throws {
        try await client.withConnection { connection in
            // Several nodes may start at once: one migrates, the others wait for it.
            try await connection.query("SELECT pg_advisory_lock(\(lockKey))", logger: logger)
            do {
                try await connection.query(
                    "CREATE TABLE IF NOT EXISTS heliograph_migrations (id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                    logger: logger)
                var applied: Set<String> = []
                for try await id in try await connection.query("SELECT id FROM heliograph_migrations", logger: logger)
                    .decode(String.self)
                {
                    applied.insert(id)
                }
                let known = Set(migrations.map(\.id))
                let unknown = applied.subtracting(known).sorted()
                guard unknown.isEmpty else {
                    throw StorageError.schemaTooNew("unknown migrations: \(unknown.joined(separator: ", "))")
                }
                for migration in migrations where !applied.contains(migration.id) {
                    let id = migration.id
                    try await connection.withTransaction(logger: logger) { transaction in
                        for statement in migration.sql {
                            try await transaction.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                        }
                        try await transaction.query("INSERT INTO heliograph_migrations (id) VALUES (\(id))", logger: logger)
                    }
                    logger.info("applied migration", metadata: ["migration": "\(id)"])
                }
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(lockKey))", logger: logger)
                throw error
            }
            try await connection.query("SELECT pg_advisory_unlock(\(lockKey))", logger: logger)
        }
    }
}

/// LISTEN on the inbox channel over a dedicated connection, reconnecting after failures.
final class PostgresChangeFeed: InboxChangeFeed {
    /// The NOTIFY channel enqueues and revocations announce on (see ``ChangeNotification``).
    static let channel = "heliograph_inbox"

    let location: PostgresLocation
    let logger: Logger
    /// This storage's name in notification payloads (`node:device,device,…`).
    let node: String
    private let subscribers = Mutex<[UInt64: AsyncStream<InboxChange>.Continuation]>([:])
    private let nextID = Atomic<UInt64>(0)
    private let task = Mutex<Task<Void, Never>?>(nil)
    /// Whether LISTEN is active right now.
    private let listening = Atomic<Bool>(false)

    init(location: PostgresLocation, node: String, logger: Logger) {
        self.location = location
        self.node = node
        self.logger = logger
    }

    func changes() -> AsyncStream<InboxChange> {
        let (stream, continuation) = AsyncStream<InboxChange>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        subscribers.withLock { $0[id] = continuation }
        continuation.onTermination = { [weak self] _ in _ = self?.subscribers.withLock { $0.removeValue(forKey: id) } }
        // A new subscriber cannot know what was committed before it subscribed: tell it so.
        // (If the listener is not connected yet, `.all` follows when it connects.)
        if listening.load(ordering: .acquiring) { continuation.yield(.all) }
        return stream
    }

    private func publish(_ change: InboxChange) {
        for continuation in subscribers.withLock({ Array($0.values) }) { continuation.yield(change) }
    }

    func start() {
        let loop = Task { await self.listenForever() }
        task.withLock { $0 = loop }
    }

    func stop() {
        task.withLock { $0 }?.cancel()
        for continuation in subscribers.withLock({ Array($0.values) }) { continuation.finish() }
    }

    private func listenForever() async {
        var attempt = 0
        while !Task.isCancelled {
            do {
                let configuration = PostgresConnection.Configuration(
                    host: location.host, port: location.port, username: location.username, password: location.password,
                    database: location.database, tls: location.tls)
                let connection = try await PostgresConnection.connect(
                    configuration: configuration, id: Int(nextID.wrappingAdd(1, ordering: .relaxed).newValue), logger: logger)
                defer { Task { try? await connection.close() } }
                try await connection.listen(on: Self.channel) { notifications in
                    attempt = 0
                    listening.store(true, ordering: .releasing)
                    defer { listening.store(false, ordering: .releasing) }
                    // Anything committed while we were not listening is unknown: wake everyone
                    // (and re-check every connected device for a missed revocation).
                    publish(.all)
                    for try await notification in notifications {
                        // Inbox and chat growth and membership changes from other nodes, and
                        // revocations from every node; the grammar is in ChangeNotification.
                        if let change = ChangeNotification(payload: notification.payload)?.change(forNode: node) {
                            publish(change)
                        }
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                if Task.isCancelled { return }
                attempt += 1
                if attempt == 1 || attempt % 30 == 0 {
                    logger.warning(
                        "inbox listener lost its connection; retrying",
                        metadata: ["database": "\(location)", "error": "\(PostgresStorage.explain(error))"])
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
