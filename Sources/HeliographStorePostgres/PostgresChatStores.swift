import Foundation
import HeliographCore
import HeliographStore
import Logging
import NIOCore
import PostgresNIO

// Groups and channels on PostgreSQL (tables of the "v6-chats" migration). Every query binds its
// values and every call is bounded by `timeout`, as in the other stores. Appends to one chat are
// serialised by the lock on its `chats` row, taken by the statement that numbers the update, so
// sequence numbers have no gaps and the effects of two appends never interleave.

/// Chats, members, bans, invite links and join requests on PostgreSQL.
struct PostgresChatStore: ChatStore {
    let client: PostgresClient
    let timeout: Duration
    /// The storage's name in notifications: a chat's first members are announced, so other
    /// nodes' sockets of those accounts follow it at once.
    var node: String? = nil
    let logger = Logger(label: "heliograph.postgres")

    func create(_ chat: Chat, members: [ChatMember], firstUpdate: NewChatUpdate?) async throws {
        let logger = self.logger
        try await mappingChatErrors(chat.username) {
            try await withDeadline(timeout, what: "create chat") {
                try await inTransaction(client, logger: logger) { connection in
                    try await connection.query(
                        """
                        INSERT INTO chats (id, kind, title, about, username, username_canonical, created_at,
                            slow_mode_seconds, sign_posts, hides_forward_origin, member_count, last_sequence,
                            membership_version, removal_version)
                        VALUES (\(chat.id.rawValue), \(chat.kind.rawValue), \(chat.title), \(chat.about),
                            \(chat.username?.display), \(chat.username?.canonical), \(chat.createdAt.millisecondsSince1970),
                            \(chat.slowModeSeconds), \(chat.signPosts), \(chat.hidesForwardOrigin), \(members.count), 0,
                            \(chat.membershipVersion), \(chat.removalVersion))
                        """, logger: logger)
                    if !members.isEmpty {
                        try await connection.query(
                            """
                            INSERT INTO chat_members (chat_id, account_id, role, rights, joined_at, read_sequence, muted,
                                last_post_at)
                            SELECT \(chat.id.rawValue), a, r, g, j, s, m, NULLIF(p, \(Self.noTime))
                            FROM unnest(\(members.map(\.accountID.rawValue))::uuid[], \(members.map(\.role.rawValue))::text[],
                                \(members.map(\.storedRights))::int8[], \(members.map(\.joinedAt.millisecondsSince1970))::int8[],
                                \(members.map(\.readSequence))::int8[], \(members.map(\.muted))::bool[],
                                \(members.map { $0.lastPostAt?.millisecondsSince1970 ?? Self.noTime })::int8[])
                                AS t(a, r, g, j, s, m, p)
                            """, logger: logger)
                    }
                    if let firstUpdate {
                        // The creation is the log's first entry, numbered and recorded like any
                        // other; its members are announced below, not as a growth of the log.
                        _ = try await PostgresChatLogStore.append(firstUpdate, on: connection, node: nil, logger: logger)
                    }
                    if let node {
                        let accounts = members.map(\.accountID)
                        let size = PostgresChatLogStore.accountsPerNotification
                        for start in stride(from: 0, to: accounts.count, by: size) {
                            let chunk = Array(accounts[start..<min(start + size, accounts.count)])
                            let payload = ChangeNotification.members(node: node, chat: chat.id, chunk).payload
                            try await connection.query(
                                "SELECT pg_notify(\(PostgresChangeFeed.channel), \(payload))", logger: logger)
                        }
                    }
                }
            }
        }
    }

    func chat(id: ChatID) async throws -> Chat? {
        try await withDeadline(timeout, what: "find chat") {
            try await Self.chats(
                client.query("SELECT \(unescaped: Self.columns) FROM chats WHERE id = \(id.rawValue)", logger: logger)
            ).first
        }
    }

    func chat(username: Username) async throws -> Chat? {
        try await withDeadline(timeout, what: "find chat") {
            try await Self.chats(
                client.query(
                    "SELECT \(unescaped: Self.columns) FROM chats WHERE username_canonical = \(username.canonical)",
                    logger: logger)
            ).first
        }
    }

    func updateInfo(_ chat: Chat) async throws -> Chat? {
        try await mappingChatErrors(chat.username) {
            try await withDeadline(timeout, what: "update chat") {
                try await Self.chats(
                    client.query(
                        """
                        UPDATE chats SET title = \(chat.title), about = \(chat.about), username = \(chat.username?.display),
                            username_canonical = \(chat.username?.canonical), slow_mode_seconds = \(chat.slowModeSeconds),
                            sign_posts = \(chat.signPosts), hides_forward_origin = \(chat.hidesForwardOrigin)
                        WHERE id = \(chat.id.rawValue)
                        RETURNING \(unescaped: Self.columns)
                        """, logger: logger)
                ).first
            }
        }
    }

    func search(words: [String], limit: Int) async throws -> [Chat] {
        guard limit > 0 else { return [] }
        // strpos, not LIKE: a word's % or _ is text to find, not a wildcard.
        let single = words.count == 1 ? words[0] : nil
        return try await withDeadline(timeout, what: "search chats") {
            try await Self.chats(
                client.query(
                    """
                    SELECT \(unescaped: Self.columns) FROM chats
                    WHERE username_canonical IS NOT NULL
                      AND (NOT EXISTS (SELECT 1 FROM unnest(\(words)::text[]) AS w(word)
                                       WHERE strpos(lower(title), lower(w.word)) = 0)
                           OR starts_with(username_canonical, lower(\(single)::text)))
                    ORDER BY member_count DESC, id LIMIT \(limit)
                    """, logger: logger))
        }
    }

    func member(of chatID: ChatID, account: AccountID) async throws -> ChatMember? {
        try await withDeadline(timeout, what: "find chat member") {
            try await Self.members(
                client.query(
                    """
                    SELECT \(unescaped: Self.memberColumns) FROM chat_members
                    WHERE chat_id = \(chatID.rawValue) AND account_id = \(account.rawValue)
                    """, logger: logger)
            ).first
        }
    }

    func members(of chatID: ChatID, after: AccountID?, roles: Set<ChatRole>?, limit: Int) async throws -> [ChatMember] {
        guard limit > 0 else { return [] }
        // uuid order is the order of the lower-case text: both compare the bytes from the left.
        let roleNames = roles.map { $0.map(\.rawValue).sorted() }
        return try await withDeadline(timeout, what: "list chat members") {
            try await Self.members(
                client.query(
                    """
                    SELECT \(unescaped: Self.memberColumns) FROM chat_members
                    WHERE chat_id = \(chatID.rawValue)
                      AND (\(after?.rawValue)::uuid IS NULL OR account_id > \(after?.rawValue)::uuid)
                      AND (\(roleNames)::text[] IS NULL OR role = ANY(\(roleNames)::text[]))
                    ORDER BY account_id LIMIT \(limit)
                    """, logger: logger))
        }
    }

    func memberships(of accountID: AccountID, limit: Int) async throws -> [ChatMembership] {
        guard limit > 0 else { return [] }
        let columns = Self.columns.split(separator: ", ").map { "c." + $0 }.joined(separator: ", ")
        let memberColumns = Self.memberColumns.split(separator: ", ").map { "m." + $0 }.joined(separator: ", ")
        return try await withDeadline(timeout, what: "list chats of an account") {
            var memberships: [ChatMembership] = []
            for try await row in try await client.query(
                """
                SELECT \(unescaped: columns), \(unescaped: memberColumns)
                FROM chat_members m JOIN chats c ON c.id = m.chat_id
                WHERE m.account_id = \(accountID.rawValue)
                ORDER BY c.last_sequence DESC, c.id LIMIT \(limit)
                """, logger: logger)
            {
                var cells = RowCursor(row)
                memberships.append(ChatMembership(chat: try Self.chat(&cells), member: try Self.member(&cells)))
            }
            return memberships
        }
    }

    func markRead(_ chatID: ChatID, account: AccountID, through sequence: Int64) async throws -> Int64 {
        try await withDeadline(timeout, what: "mark chat read") {
            var found: Int64?
            for try await last in try await client.query(
                """
                SELECT c.last_sequence FROM chat_members m JOIN chats c ON c.id = m.chat_id
                WHERE m.chat_id = \(chatID.rawValue) AND m.account_id = \(account.rawValue)
                """, logger: logger
            ).decode(Int64.self) {
                found = last
            }
            guard let last = found else { throw Self.notAMember }
            guard sequence >= 0, sequence <= last else {
                throw HeliographError(
                    .ackOutOfRange, "cannot mark \(sequence) read: the chat's latest update is number \(last)")
            }
            // GREATEST: of two concurrent marks the higher one stays, whichever commits last.
            for try await stored in try await client.query(
                """
                UPDATE chat_members SET read_sequence = GREATEST(read_sequence, \(sequence))
                WHERE chat_id = \(chatID.rawValue) AND account_id = \(account.rawValue)
                RETURNING read_sequence
                """, logger: logger
            ).decode(Int64.self) {
                return stored
            }
            // Removed between the two statements.
            throw Self.notAMember
        }
    }

    func setMuted(_ chatID: ChatID, account: AccountID, muted: Bool) async throws {
        try await withDeadline(timeout, what: "mute chat") {
            let updated = try await countRows(
                client.query(
                    """
                    UPDATE chat_members SET muted = \(muted)
                    WHERE chat_id = \(chatID.rawValue) AND account_id = \(account.rawValue) RETURNING 1
                    """, logger: logger))
            guard updated == 1 else { throw Self.notAMember }
        }
    }

    func ban(in chatID: ChatID, account: AccountID) async throws -> ChatBan? {
        try await withDeadline(timeout, what: "find chat ban") {
            let rows = try await client.query(
                """
                SELECT banned_by, banned_at, until FROM chat_bans
                WHERE chat_id = \(chatID.rawValue) AND account_id = \(account.rawValue)
                """, logger: logger)
            for try await (bannedBy, bannedAt, until) in rows.decode((UUID, Int64, Int64?).self) {
                return ChatBan(
                    chatID: chatID, accountID: account, bannedBy: AccountID(bannedBy),
                    bannedAt: Date(millisecondsSince1970: bannedAt), until: until.map(Date.init(millisecondsSince1970:)))
            }
            return nil
        }
    }

    func unban(in chatID: ChatID, account: AccountID) async throws -> Bool {
        try await withDeadline(timeout, what: "lift chat ban") {
            try await countRows(
                client.query(
                    """
                    DELETE FROM chat_bans WHERE chat_id = \(chatID.rawValue) AND account_id = \(account.rawValue) RETURNING 1
                    """, logger: logger)) > 0
        }
    }

    func insertInvite(_ invite: ChatInvite) async throws {
        do {
            try await withDeadline(timeout, what: "store invite link") {
                try await client.query(
                    """
                    INSERT INTO chat_invites (code, chat_id, created_by, created_at, expires_at, usage_limit, uses,
                        requires_approval, revoked_at)
                    VALUES (\(invite.code), \(invite.chatID.rawValue), \(invite.createdBy.rawValue),
                        \(invite.createdAt.millisecondsSince1970), \(invite.expiresAt?.millisecondsSince1970),
                        \(invite.usageLimit), \(invite.uses), \(invite.requiresApproval),
                        \(invite.revokedAt?.millisecondsSince1970))
                    """, logger: logger)
            }
        } catch let error as PSQLError where error.sqlState == foreignKeyViolation {
            throw Self.unknownChat
        }
    }

    func invite(code: String) async throws -> ChatInvite? {
        try await withDeadline(timeout, what: "find invite link") {
            try await Self.invites(
                client.query(
                    "SELECT \(unescaped: Self.inviteColumns) FROM chat_invites WHERE code = \(code)", logger: logger)
            ).first
        }
    }

    func invites(of chatID: ChatID) async throws -> [ChatInvite] {
        try await withDeadline(timeout, what: "list invite links") {
            // The ordinal breaks ties between links made in the same millisecond.
            try await Self.invites(
                client.query(
                    """
                    SELECT \(unescaped: Self.inviteColumns) FROM chat_invites WHERE chat_id = \(chatID.rawValue)
                    ORDER BY created_at DESC, ordinal DESC
                    """, logger: logger))
        }
    }

    func revokeInvite(code: String, of chatID: ChatID, at time: Date) async throws -> ChatInvite? {
        try await withDeadline(timeout, what: "revoke invite link") {
            try await Self.invites(
                client.query(
                    """
                    UPDATE chat_invites SET revoked_at = COALESCE(revoked_at, \(time.millisecondsSince1970))
                    WHERE code = \(code) AND chat_id = \(chatID.rawValue)
                    RETURNING \(unescaped: Self.inviteColumns)
                    """, logger: logger)
            ).first
        }
    }

    func useInvite(code: String, at time: Date) async throws -> ChatInvite {
        let logger = self.logger
        return try await withDeadline(timeout, what: "use invite link") {
            try await inTransaction(client, logger: logger) { connection in
                // FOR UPDATE: a concurrent use waits here and then judges the link by this
                // one's count, so a link with one use left admits exactly one.
                guard
                    var invite = try await Self.invites(
                        connection.query(
                            "SELECT \(unescaped: Self.inviteColumns) FROM chat_invites WHERE code = \(code) FOR UPDATE",
                            logger: logger)
                    ).first
                else {
                    throw HeliographError(.unknownChat, "no chat has this invite link")
                }
                if let refusal = invite.refusal(at: time) { throw refusal }
                for try await uses in try await connection.query(
                    "UPDATE chat_invites SET uses = uses + 1 WHERE code = \(code) RETURNING uses", logger: logger
                ).decode(Int.self) {
                    invite.uses = uses
                }
                return invite
            }
        }
    }

    func insertJoinRequest(_ request: JoinRequest) async throws {
        do {
            try await withDeadline(timeout, what: "store join request") {
                // A repeated request takes a new ordinal too: it counts as made now.
                try await client.query(
                    """
                    INSERT INTO chat_join_requests (chat_id, account_id, requested_at, invite_code)
                    VALUES (\(request.chatID.rawValue), \(request.accountID.rawValue),
                        \(request.requestedAt.millisecondsSince1970), \(request.inviteCode))
                    ON CONFLICT (chat_id, account_id) DO UPDATE SET requested_at = excluded.requested_at,
                        invite_code = excluded.invite_code, ordinal = excluded.ordinal
                    """, logger: logger)
            }
        } catch let error as PSQLError where error.sqlState == foreignKeyViolation {
            throw Self.unknownChat
        }
    }

    func joinRequests(of chatID: ChatID, limit: Int) async throws -> [JoinRequest] {
        guard limit > 0 else { return [] }
        return try await withDeadline(timeout, what: "list join requests") {
            try await Self.joinRequests(
                client.query(
                    """
                    SELECT chat_id, account_id, requested_at, invite_code FROM chat_join_requests
                    WHERE chat_id = \(chatID.rawValue) ORDER BY requested_at, ordinal LIMIT \(limit)
                    """, logger: logger))
        }
    }

    func removeJoinRequest(of chatID: ChatID, account: AccountID) async throws -> JoinRequest? {
        try await withDeadline(timeout, what: "remove join request") {
            try await Self.joinRequests(
                client.query(
                    """
                    DELETE FROM chat_join_requests WHERE chat_id = \(chatID.rawValue) AND account_id = \(account.rawValue)
                    RETURNING chat_id, account_id, requested_at, invite_code
                    """, logger: logger)
            ).first
        }
    }

    // MARK: Rows

    static let columns = """
        id, kind, title, about, username, created_at, slow_mode_seconds, sign_posts, hides_forward_origin, \
        member_count, last_sequence, membership_version, removal_version
        """

    static let memberColumns = "chat_id, account_id, role, rights, joined_at, read_sequence, muted, last_post_at"

    static let inviteColumns = """
        code, chat_id, created_by, created_at, expires_at, usage_limit, uses, requires_approval, revoked_at
        """

    /// Stands for "no time" inside an array, which cannot hold NULL here; NULLIF restores it.
    static let noTime = Int64.min

    static let notAMember = HeliographError(.notAMember, "the account is not a member of this chat")
    static let unknownChat = HeliographError(.unknownChat, "no chat has this id")

    static func chats(_ rows: PostgresRowSequence) async throws -> [Chat] {
        var chats: [Chat] = []
        for try await row in rows {
            var cells = RowCursor(row)
            chats.append(try chat(&cells))
        }
        return chats
    }

    /// A chat from the cursor's next cells, in the order of ``columns``.
    static func chat(_ cells: inout RowCursor) throws -> Chat {
        let id = try cells.next(UUID.self)
        let kindName = try cells.next(String.self)
        guard let kind = ChatKind(rawValue: kindName) else {
            throw StorageUnavailable("chat \(id) has an unknown kind '\(kindName)'")
        }
        return Chat(
            id: ChatID(id), kind: kind, title: try cells.next(), about: try cells.next(),
            username: try cells.next(String?.self).map(Username.init(validating:)),
            createdAt: Date(millisecondsSince1970: try cells.next()), slowModeSeconds: try cells.next(),
            signPosts: try cells.next(), hidesForwardOrigin: try cells.next(), memberCount: try cells.next(),
            lastSequence: try cells.next(), membershipVersion: try cells.next(), removalVersion: try cells.next())
    }

    static func members(_ rows: PostgresRowSequence) async throws -> [ChatMember] {
        var members: [ChatMember] = []
        for try await row in rows {
            var cells = RowCursor(row)
            members.append(try member(&cells))
        }
        return members
    }

    /// A membership from the cursor's next cells, in the order of ``memberColumns``.
    static func member(_ cells: inout RowCursor) throws -> ChatMember {
        let chat = try cells.next(UUID.self)
        let account = try cells.next(UUID.self)
        let roleName = try cells.next(String.self)
        guard let role = ChatRole(rawValue: roleName) else {
            throw StorageUnavailable("a member of chat \(chat) has an unknown role '\(roleName)'")
        }
        return ChatMember(
            chatID: ChatID(chat), accountID: AccountID(account), role: role,
            rights: AdminRights(rawValue: try cells.next()), joinedAt: Date(millisecondsSince1970: try cells.next()),
            readSequence: try cells.next(), muted: try cells.next(),
            lastPostAt: try cells.next(Int64?.self).map(Date.init(millisecondsSince1970:)))
    }

    static func invites(_ rows: PostgresRowSequence) async throws -> [ChatInvite] {
        var invites: [ChatInvite] = []
        for try await (code, chat, creator, created, expires, limit, uses, approval, revoked) in rows.decode(
            (String, UUID, UUID, Int64, Int64?, Int?, Int, Bool, Int64?).self)
        {
            invites.append(
                ChatInvite(
                    code: code, chatID: ChatID(chat), createdBy: AccountID(creator),
                    createdAt: Date(millisecondsSince1970: created), expiresAt: expires.map(Date.init(millisecondsSince1970:)),
                    usageLimit: limit, uses: uses, requiresApproval: approval,
                    revokedAt: revoked.map(Date.init(millisecondsSince1970:))))
        }
        return invites
    }

    static func joinRequests(_ rows: PostgresRowSequence) async throws -> [JoinRequest] {
        var requests: [JoinRequest] = []
        for try await (chat, account, time, code) in rows.decode((UUID, UUID, Int64, String).self) {
            requests.append(
                JoinRequest(
                    chatID: ChatID(chat), accountID: AccountID(account), requestedAt: Date(millisecondsSince1970: time),
                    inviteCode: code))
        }
        return requests
    }

    /// Runs `body`, turning a clash on the public name into `username_taken`.
    private func mappingChatErrors<T>(_ username: Username?, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PSQLError
            where error.sqlState == uniqueViolation && error.serverInfo?[.constraintName] == "chats_username_unique"
        {
            throw HeliographError(.usernameTaken, "another chat is already called \(username.map(\.description) ?? "that")")
        }
    }
}

/// SQLSTATE of a foreign-key violation: here, a row for a chat that does not exist.
let foreignKeyViolation = "23503"

/// Reads a row's cells from left to right, so that one row can hold a chat and then a membership.
struct RowCursor {
    private let row: PostgresRandomAccessRow
    private var index = 0

    init(_ row: PostgresRow) { self.row = row.makeRandomAccess() }

    /// The next cell, decoded.
    mutating func next<Value: PostgresDecodable>(_: Value.Type = Value.self) throws -> Value {
        defer { index += 1 }
        return try row[index].decode(Value.self)
    }
}

extension ChatRole {
    /// The rights a member of this role holds as stored: every right for the owner, none for a
    /// member, whatever was asked (as ``ChatMember``'s initialiser does).
    func storedRights(_ rights: AdminRights) -> Int {
        switch self {
        case .owner: AdminRights.all.rawValue
        case .admin: rights.rawValue
        case .member: 0
        }
    }
}

extension ChatMember {
    /// The rights as stored.
    var storedRights: Int { role.storedRights(rights) }
}

/// A chat's counters, read when an append numbers its update and written back after the effects.
struct ChatCounters: Equatable {
    var sequence: Int64
    var memberCount: Int
    var membershipVersion: Int64
    var removalVersion: Int64
}

/// Each chat's log on PostgreSQL; appends announce themselves to the other nodes on commit.
struct PostgresChatLogStore: ChatLogStore {
    let client: PostgresClient
    let logger: Logger
    let timeout: Duration
    /// The storage's name in notifications.
    let node: String

    /// The NOTIFY payload limit is 8000 bytes; account ids are 36 characters plus a comma.
    static let accountsPerNotification = 200

    func append(_ update: NewChatUpdate) async throws -> ChatUpdateReceipt {
        let logger = self.logger
        let node = self.node
        return try await withDeadline(timeout, what: "append to chat") {
            do {
                return try await inTransaction(client, logger: logger) { connection in
                    try await Self.append(update, on: connection, node: node, logger: logger)
                }
            } catch let repeated as RepeatedAppend {
                // Rolled back: the number taken for it is given back.
                return repeated.receipt
            }
        }
    }

    /// A repeat of an earlier append, thrown to roll back what the attempt changed.
    struct RepeatedAppend: Error {
        let receipt: ChatUpdateReceipt
    }

    /// The steps of an append inside the caller's transaction; announces to the other nodes
    /// (on commit) when `node` is given. Throws ``RepeatedAppend`` for a repeat.
    static func append(
        _ update: NewChatUpdate, on connection: PostgresConnection, node: String?, logger: Logger
    ) async throws -> ChatUpdateReceipt {
        let chatID = update.chatID.rawValue
        let serverTime = update.serverTime.millisecondsSince1970
        // 1. Number the update. The row lock this takes is held to commit: appends to the chat
        // queue here, so the checks below see every earlier append of the chat.
        var numbered: ChatCounters?
        for try await (sequence, members, version, removal) in try await connection.query(
            """
            UPDATE chats SET last_sequence = last_sequence + \(update.logged ? 1 : 0) WHERE id = \(chatID)
            RETURNING last_sequence, member_count, membership_version, removal_version
            """, logger: logger
        ).decode((Int64, Int, Int64, Int64).self) {
            numbered = ChatCounters(
                sequence: sequence, memberCount: members, membershipVersion: version, removalVersion: removal)
        }
        guard let numbered else { throw PostgresChatStore.unknownChat }
        var chat = numbered

        // 2. A repeat answers with the first receipt.
        if update.logged {
            let rows = try await connection.query(
                """
                SELECT seq, server_time, content_hash FROM chat_log
                WHERE chat_id = \(chatID) AND sender_device_id = \(update.sender.deviceID.rawValue)
                  AND message_id = \(update.messageID.rawValue)
                """, logger: logger)
            for try await (sequence, time, stored) in rows.decode((Int64, Int64, Data?).self) {
                guard SendIdempotency.isRetry(stored: stored, incoming: update.contentHash) else {
                    throw SendIdempotency.conflict(update.messageID)
                }
                throw RepeatedAppend(
                    receipt: ChatUpdateReceipt(
                        sequence: sequence, serverTime: Date(millisecondsSince1970: time), duplicate: true))
            }
        }

        // 3. Slow mode.
        if update.slowModeSeconds > 0 {
            try await checkSlowMode(update, on: connection, logger: logger)
        }

        // 4. Effects, in order; any refusal rolls everything back.
        var announced: [AccountID] = []
        for effect in update.effects {
            try await apply(effect, of: update, to: &chat, on: connection, logger: logger)
            switch effect {
            case .addMember(let member, _): announced.append(member.accountID)
            case .removeMember(let account): announced.append(account)
            case .ban(let ban): announced.append(ban.accountID)
            default: break
            }
        }
        if chat != numbered {
            try await connection.query(
                """
                UPDATE chats SET member_count = \(chat.memberCount), membership_version = \(chat.membershipVersion),
                    removal_version = \(chat.removalVersion)
                WHERE id = \(chatID)
                """, logger: logger)
        }

        // 5. Announce on commit: membership first, so a node that starts following the chat for a
        // new member then fetches the update that added it.
        if let node {
            var seen: Set<AccountID> = []
            let accounts = announced.filter { seen.insert($0).inserted }
            for start in stride(from: 0, to: accounts.count, by: accountsPerNotification) {
                let chunk = Array(accounts[start..<min(start + accountsPerNotification, accounts.count)])
                let payload = ChangeNotification.members(node: node, chat: update.chatID, chunk).payload
                try await connection.query("SELECT pg_notify(\(PostgresChangeFeed.channel), \(payload))", logger: logger)
            }
        }

        guard update.logged else {
            return ChatUpdateReceipt(sequence: chat.sequence, serverTime: update.serverTime, duplicate: false)
        }
        // 6. The update itself, stored once; announced in the same statement.
        let announcement = node.map { ChangeNotification.chats(node: $0, [update.chatID]).payload }
        try await connection.query(
            """
            WITH stored AS (
                INSERT INTO chat_log (chat_id, seq, kind, message_id, sender_account_id, sender_username,
                    sender_device_id, server_time, target, payload, content_hash)
                VALUES (\(chatID), \(chat.sequence), \(update.kind.rawValue), \(update.messageID.rawValue),
                    \(update.sender.accountID.rawValue), \(update.sender.username.display),
                    \(update.sender.deviceID.rawValue), \(serverTime), \(update.target), \(update.payload),
                    \(update.contentHash))
                RETURNING seq
            )
            SELECT pg_notify(\(PostgresChangeFeed.channel), \(announcement)::text) FROM stored
            WHERE \(announcement)::text IS NOT NULL
            """, logger: logger)
        return ChatUpdateReceipt(
            sequence: chat.sequence, serverTime: Date(millisecondsSince1970: serverTime), duplicate: false)
    }

    /// Refuses a post that comes too soon after the sender's previous one, else records it.
    private static func checkSlowMode(
        _ update: NewChatUpdate, on connection: PostgresConnection, logger: Logger
    )
        async throws
    {
        let chatID = update.chatID.rawValue
        let account = update.sender.accountID.rawValue
        let now = update.serverTime.millisecondsSince1970
        var member: Int64??
        for try await lastPost in try await connection.query(
            "SELECT last_post_at FROM chat_members WHERE chat_id = \(chatID) AND account_id = \(account)", logger: logger
        ).decode(Int64?.self) {
            member = .some(lastPost)
        }
        guard let lastPost = member else { throw PostgresChatStore.notAMember }
        let interval = Int64(update.slowModeSeconds) * 1000
        if let lastPost, lastPost + interval > now {
            let wait = Int((lastPost + interval - now + 999) / 1000)
            throw HeliographError(
                .slowMode, "slow mode: wait \(wait) more second\(wait == 1 ? "" : "s") before posting again",
                retryAfterSeconds: wait)
        }
        try await connection.query(
            "UPDATE chat_members SET last_post_at = \(now) WHERE chat_id = \(chatID) AND account_id = \(account)",
            logger: logger)
    }

    /// One effect of an append; `chat` carries the counters written back after the last one.
    private static func apply(
        _ effect: ChatEffect, of update: NewChatUpdate,
        to chat: inout ChatCounters,
        on connection: PostgresConnection, logger: Logger
    ) async throws {
        let chatID = update.chatID.rawValue
        let time = update.serverTime.millisecondsSince1970
        /// Throws `unknown_message` unless the statement touched a row.
        func expectMessage(_ target: Int64, _ query: PostgresQuery) async throws {
            guard try await countRows(connection.query(query, logger: logger)) > 0 else {
                throw HeliographError(.unknownMessage, "this chat has no message \(target)")
            }
        }
        switch effect {
        case .edit(let target):
            try await expectMessage(
                target,
                """
                UPDATE chat_log SET payload = \(update.payload), edited_at = \(time)
                WHERE chat_id = \(chatID) AND seq = \(target) AND kind = 'message' AND NOT deleted RETURNING 1
                """)
        case .delete(let target):
            // The content leaves the server; the row keeps its place in the log.
            try await expectMessage(
                target,
                """
                UPDATE chat_log SET payload = ''::bytea, deleted = true, pinned = false
                WHERE chat_id = \(chatID) AND seq = \(target) AND kind = 'message' RETURNING 1
                """)
        case .pin(let target, let pinned):
            try await expectMessage(
                target,
                """
                UPDATE chat_log SET pinned = \(pinned)
                WHERE chat_id = \(chatID) AND seq = \(target) AND kind = 'message' AND NOT deleted RETURNING 1
                """)
        case .react(let target, let account, let emoji):
            try await expectMessage(
                target,
                """
                SELECT 1 FROM chat_log
                WHERE chat_id = \(chatID) AND seq = \(target) AND kind = 'message' AND NOT deleted
                """)
            if let emoji {
                try await connection.query(
                    """
                    INSERT INTO chat_reactions (chat_id, seq, account_id, emoji)
                    VALUES (\(chatID), \(target), \(account.rawValue), \(emoji))
                    ON CONFLICT (chat_id, seq, account_id) DO UPDATE SET emoji = excluded.emoji
                    """, logger: logger)
            } else {
                try await connection.query(
                    """
                    DELETE FROM chat_reactions
                    WHERE chat_id = \(chatID) AND seq = \(target) AND account_id = \(account.rawValue)
                    """, logger: logger)
            }
        case .addMember(let member, let limit):
            let added = try await countRows(
                connection.query(
                    """
                    INSERT INTO chat_members (chat_id, account_id, role, rights, joined_at, read_sequence, muted,
                        last_post_at)
                    VALUES (\(chatID), \(member.accountID.rawValue), \(member.role.rawValue), \(member.storedRights),
                        \(member.joinedAt.millisecondsSince1970), \(member.readSequence), \(member.muted),
                        \(member.lastPostAt?.millisecondsSince1970))
                    ON CONFLICT (chat_id, account_id) DO NOTHING RETURNING 1
                    """, logger: logger))
            guard added == 1 else {
                throw HeliographError(.alreadyMember, "the account is already a member of this chat")
            }
            // Judged after the insert so that a member is told it is one even in a full chat;
            // the refusal rolls the insert back.
            if let limit, chat.memberCount >= limit {
                throw HeliographError(.chatFull, "this chat has reached its limit of \(limit) members")
            }
            chat.memberCount += 1
        case .removeMember(let account):
            let removed = try await countRows(
                connection.query(
                    """
                    DELETE FROM chat_members WHERE chat_id = \(chatID) AND account_id = \(account.rawValue) RETURNING 1
                    """, logger: logger))
            guard removed == 1 else { throw PostgresChatStore.notAMember }
            chat.memberCount -= 1
        case .setRole(let account, let role, let rights):
            let updated = try await countRows(
                connection.query(
                    """
                    UPDATE chat_members SET role = \(role.rawValue), rights = \(role.storedRights(rights))
                    WHERE chat_id = \(chatID) AND account_id = \(account.rawValue) RETURNING 1
                    """, logger: logger))
            guard updated == 1 else { throw PostgresChatStore.notAMember }
        case .ban(let ban):
            chat.memberCount -= try await countRows(
                connection.query(
                    """
                    DELETE FROM chat_members WHERE chat_id = \(chatID) AND account_id = \(ban.accountID.rawValue) RETURNING 1
                    """, logger: logger))
            try await connection.query(
                """
                INSERT INTO chat_bans (chat_id, account_id, banned_by, banned_at, until)
                VALUES (\(chatID), \(ban.accountID.rawValue), \(ban.bannedBy.rawValue), \(ban.bannedAt.millisecondsSince1970),
                    \(ban.until?.millisecondsSince1970))
                ON CONFLICT (chat_id, account_id) DO UPDATE SET banned_by = excluded.banned_by,
                    banned_at = excluded.banned_at, until = excluded.until
                """, logger: logger)
        case .membershipVersion(let version, let removal):
            guard version == chat.membershipVersion + 1 else {
                throw HeliographError(
                    .membershipConflict,
                    "the membership is at version \(chat.membershipVersion), not \(version - 1); fetch it and sign again")
            }
            chat.membershipVersion = version
            if removal { chat.removalVersion = version }
        }
    }

    func updates(of chatID: ChatID, after: Int64, limit: Int) async throws -> [ChatUpdate] {
        guard limit > 0 else { return [] }
        return try await withDeadline(timeout, what: "read chat log") {
            var updates: [ChatUpdate] = []
            for try await row in try await client.query(
                """
                SELECT \(unescaped: Self.updateColumns) FROM chat_log
                WHERE chat_id = \(chatID.rawValue) AND seq > \(after) ORDER BY seq LIMIT \(limit)
                """, logger: logger)
            {
                var cells = RowCursor(row)
                updates.append(try Self.update(&cells))
            }
            return updates
        }
    }

    func messages(of chatID: ChatID, before: Int64?, limit: Int) async throws -> [ChatMessage] {
        guard limit > 0 else { return [] }
        return try await withDeadline(timeout, what: "read chat messages") {
            try await Self.messages(
                client.query(
                    """
                    SELECT \(unescaped: Self.messageSelect) FROM chat_log l \(unescaped: Self.reactionJoin)
                    WHERE l.chat_id = \(chatID.rawValue) AND l.kind = 'message'
                      AND (\(before)::int8 IS NULL OR l.seq < \(before)::int8)
                    ORDER BY l.seq DESC LIMIT \(limit)
                    """, logger: logger))
        }
    }

    func message(of chatID: ChatID, sequence: Int64) async throws -> ChatMessage? {
        try await withDeadline(timeout, what: "read chat message") {
            try await Self.messages(
                client.query(
                    """
                    SELECT \(unescaped: Self.messageSelect) FROM chat_log l \(unescaped: Self.reactionJoin)
                    WHERE l.chat_id = \(chatID.rawValue) AND l.seq = \(sequence) AND l.kind = 'message'
                    """, logger: logger)
            ).first
        }
    }

    func recordViews(of chatID: ChatID, sequences: [Int64], by accountID: AccountID) async throws -> [Int64: Int] {
        guard !sequences.isEmpty else { return [:] }
        let logger = self.logger
        return try await withDeadline(timeout, what: "count chat views") {
            try await inTransaction(client, logger: logger) { connection in
                // A view row per account and message; the counter on the message moves only for
                // rows that are new, so repeats and concurrent repeats count once. View rows are
                // taken in sequence order, so two calls over the same messages queue rather than cross.
                try await connection.query(
                    """
                    WITH known AS (
                        SELECT seq FROM chat_log
                        WHERE chat_id = \(chatID.rawValue) AND seq = ANY(\(sequences)::int8[]) AND kind = 'message'
                        ORDER BY seq
                    ), counted AS (
                        INSERT INTO chat_views (chat_id, seq, account_id)
                        SELECT \(chatID.rawValue), seq, \(accountID.rawValue) FROM known
                        ON CONFLICT DO NOTHING RETURNING seq
                    )
                    UPDATE chat_log SET views = views + 1
                    WHERE chat_id = \(chatID.rawValue) AND seq IN (SELECT seq FROM counted)
                    """, logger: logger)
                var views: [Int64: Int] = [:]
                for try await (sequence, count) in try await connection.query(
                    """
                    SELECT seq, views FROM chat_log
                    WHERE chat_id = \(chatID.rawValue) AND seq = ANY(\(sequences)::int8[]) AND kind = 'message'
                    """, logger: logger
                ).decode((Int64, Int).self) {
                    views[sequence] = count
                }
                return views
            }
        }
    }

    func unreadCount(of chatID: ChatID, after: Int64, excluding accountID: AccountID, cap: Int) async throws -> Int {
        guard cap > 0 else { return 0 }
        return try await withDeadline(timeout, what: "count unread chat messages") {
            // The LIMIT inside stops the scan at the cap: a long-unread channel costs no more
            // than a badge can show.
            for try await count in try await client.query(
                """
                SELECT count(*) FROM (
                    SELECT 1 FROM chat_log
                    WHERE chat_id = \(chatID.rawValue) AND seq > \(after) AND kind = 'message' AND NOT deleted
                      AND sender_account_id <> \(accountID.rawValue)
                    LIMIT \(cap)
                ) AS unread
                """, logger: logger
            ).decode(Int.self) {
                return count
            }
            return 0
        }
    }

    // MARK: Rows

    static let updateColumns = """
        chat_id, seq, kind, message_id, sender_account_id, sender_username, sender_device_id, server_time, target, payload
        """

    /// A message's columns, with its reactions counted per emoji as two parallel arrays.
    static let messageSelect = """
        l.chat_id, l.seq, l.kind, l.message_id, l.sender_account_id, l.sender_username, l.sender_device_id, \
        l.server_time, l.target, l.payload, l.edited_at, l.deleted, l.pinned, l.views, r.emoji, r.counts
        """

    static let reactionJoin = """
        LEFT JOIN LATERAL (
            SELECT array_agg(emoji) AS emoji, array_agg(n) AS counts FROM (
                SELECT emoji, count(*) AS n FROM chat_reactions
                WHERE chat_reactions.chat_id = l.chat_id AND chat_reactions.seq = l.seq GROUP BY emoji
            ) AS per_emoji
        ) AS r ON true
        """

    /// An update from the cursor's next cells, in the order of ``updateColumns``.
    static func update(_ cells: inout RowCursor) throws -> ChatUpdate {
        let chat = try cells.next(UUID.self)
        let sequence = try cells.next(Int64.self)
        let kindName = try cells.next(String.self)
        guard let kind = ChatUpdateKind(rawValue: kindName) else {
            throw StorageUnavailable("update \(sequence) of chat \(chat) has an unknown kind '\(kindName)'")
        }
        return ChatUpdate(
            chatID: ChatID(chat), sequence: sequence, kind: kind, messageID: try MessageID(validating: try cells.next()),
            sender: EnvelopeSender(
                accountID: AccountID(try cells.next()), username: try Username(validating: try cells.next()),
                deviceID: DeviceID(try cells.next())),
            serverTime: Date(millisecondsSince1970: try cells.next()), target: try cells.next(), payload: try cells.next())
    }

    static func messages(_ rows: PostgresRowSequence) async throws -> [ChatMessage] {
        var messages: [ChatMessage] = []
        for try await row in rows {
            var cells = RowCursor(row)
            let update = try update(&cells)
            let edited = try cells.next(Int64?.self)
            let deleted = try cells.next(Bool.self)
            let pinned = try cells.next(Bool.self)
            let views = try cells.next(Int.self)
            let emoji = try cells.next([String]?.self) ?? []
            let counts = try cells.next([Int64]?.self) ?? []
            var reactions: [String: Int] = [:]
            for (emoji, count) in zip(emoji, counts) { reactions[emoji] = Int(count) }
            messages.append(
                ChatMessage(
                    update: update, editedAt: edited.map(Date.init(millisecondsSince1970:)), deleted: deleted,
                    pinned: pinned, views: views, reactions: reactions))
        }
        return messages
    }
}
