import Foundation
import GRDB
import HeliographCore

/// Groups and channels in the embedded database.
///
/// Every change is one write transaction, and SQLite has one writer at a time, so a check and
/// the write that depends on it (a free public name, an invite's remaining uses) cannot be
/// overtaken by another change.
struct SQLiteChatStore: ChatStore {
    let pool: DatabasePool

    func create(_ chat: Chat, members: [ChatMember], firstUpdate: NewChatUpdate?) async throws {
        try await pool.write { db in
            if let username = chat.username, try Self.holder(of: username, in: db) != nil {
                throw Self.nameTaken(username)
            }
            try db.cachedStatement(
                sql: """
                    INSERT INTO chats (id, kind, title, about, username, username_canonical, created_at, slow_mode_seconds,
                                       sign_posts, hides_forward_origin, member_count, last_seq, membership_version,
                                       removal_version)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)
                    """
            ).execute(arguments: [
                chat.id.description, chat.kind.rawValue, chat.title, chat.about, chat.username?.display,
                chat.username?.canonical, chat.createdAt.databaseMilliseconds, chat.slowModeSeconds, chat.signPosts,
                chat.hidesForwardOrigin, members.count, chat.membershipVersion, chat.removalVersion,
            ])
            for member in members {
                try Self.insertMember(member, into: chat.id, in: db)
            }
            // The first update goes through the same path as every later one, so it is numbered
            // 1 and a retried creation's update is recognised by its message id.
            if let firstUpdate { _ = try SQLiteChatLogStore.append(firstUpdate, in: db) }
        }
    }

    func chat(id: ChatID) async throws -> Chat? {
        try await pool.read { db in try Self.chat(id: id, in: db) }
    }

    func chat(username: Username) async throws -> Chat? {
        try await pool.read { db in
            try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT * FROM chats WHERE username_canonical = ?"), arguments: [username.canonical]
            ).map(Self.chat)
        }
    }

    func updateInfo(_ chat: Chat) async throws -> Chat? {
        try await pool.write { db in
            guard try Self.chat(id: chat.id, in: db) != nil else { return nil }
            if let username = chat.username, let holder = try Self.holder(of: username, in: db), holder != chat.id.description {
                throw Self.nameTaken(username)
            }
            try db.cachedStatement(
                sql: """
                    UPDATE chats SET title = ?, about = ?, username = ?, username_canonical = ?, slow_mode_seconds = ?,
                                     sign_posts = ?, hides_forward_origin = ?
                    WHERE id = ?
                    """
            ).execute(arguments: [
                chat.title, chat.about, chat.username?.display, chat.username?.canonical, chat.slowModeSeconds,
                chat.signPosts, chat.hidesForwardOrigin, chat.id.description,
            ])
            return try Self.chat(id: chat.id, in: db)
        }
    }

    func search(words: [String], limit: Int) async throws -> [Chat] {
        guard limit > 0 else { return [] }
        // LIKE folds ASCII case in SQLite; the words' own % and _ are escaped so they match
        // themselves. No words: every public chat, as every word of none is contained.
        var titleConditions: [String] = []
        var arguments: StatementArguments = []
        for word in words {
            titleConditions.append("title LIKE ? ESCAPE '\\'")
            arguments += ["%" + Self.likeEscaped(word) + "%"]
        }
        var condition = titleConditions.isEmpty ? "1" : titleConditions.joined(separator: " AND ")
        if words.count == 1 {
            condition = "(\(condition) OR username_canonical LIKE ? ESCAPE '\\')"
            arguments += [Self.likeEscaped(words[0].lowercased()) + "%"]
        }
        arguments += [limit]
        return try await pool.read { [condition, arguments] db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM chats WHERE username_canonical IS NOT NULL AND \(condition)
                    ORDER BY member_count DESC, id LIMIT ?
                    """,
                arguments: arguments
            ).map(Self.chat)
        }
    }

    func member(of chatID: ChatID, account: AccountID) async throws -> ChatMember? {
        try await pool.read { db in try Self.member(of: chatID, account: account, in: db) }
    }

    func members(of chatID: ChatID, after: AccountID?, roles: Set<ChatRole>?, limit: Int) async throws -> [ChatMember] {
        guard limit > 0, roles?.isEmpty != true else { return [] }
        var sql = "SELECT * FROM chat_members WHERE chat_id = ? AND account_id > ?"
        var arguments: StatementArguments = [chatID.description, after?.description ?? ""]
        if let roles {
            let names = roles.map(\.rawValue).sorted()
            sql += " AND role IN (" + names.map { _ in "?" }.joined(separator: ", ") + ")"
            arguments += StatementArguments(names)
        }
        sql += " ORDER BY account_id LIMIT ?"
        arguments += [limit]
        return try await pool.read { [sql, arguments] db in
            try Row.fetchAll(try db.cachedStatement(sql: sql), arguments: arguments).map(Self.member)
        }
    }

    func memberships(of accountID: AccountID, limit: Int) async throws -> [ChatMembership] {
        guard limit > 0 else { return [] }
        return try await pool.read { db in
            try Row.fetchAll(
                try db.cachedStatement(
                    sql: """
                        SELECT c.*, m.chat_id, m.account_id, m.role, m.rights, m.joined_at, m.read_seq, m.muted, m.last_post_at
                        FROM chat_members m JOIN chats c ON c.id = m.chat_id
                        WHERE m.account_id = ?
                        ORDER BY c.last_seq DESC, c.id LIMIT ?
                        """),
                arguments: [accountID.description, limit]
            ).map { row in ChatMembership(chat: try Self.chat(row), member: try Self.member(row)) }
        }
    }

    func markRead(_ chatID: ChatID, account: AccountID, through sequence: Int64) async throws -> Int64 {
        try await pool.write { db in
            guard
                let row = try Row.fetchOne(
                    try db.cachedStatement(
                        sql: """
                            SELECT m.read_seq, c.last_seq FROM chat_members m JOIN chats c ON c.id = m.chat_id
                            WHERE m.chat_id = ? AND m.account_id = ?
                            """),
                    arguments: [chatID.description, account.description])
            else { throw Self.notAMember(account) }
            let read: Int64 = row["read_seq"]
            let last: Int64 = row["last_seq"]
            guard sequence >= 0, sequence <= last else {
                throw HeliographError(
                    .ackOutOfRange, "cannot mark \(sequence) as read: the chat's latest update is number \(last)")
            }
            guard sequence > read else { return read }
            try db.cachedStatement(sql: "UPDATE chat_members SET read_seq = ? WHERE chat_id = ? AND account_id = ?")
                .execute(arguments: [sequence, chatID.description, account.description])
            return sequence
        }
    }

    func setMuted(_ chatID: ChatID, account: AccountID, muted: Bool) async throws {
        try await pool.write { db in
            try db.cachedStatement(sql: "UPDATE chat_members SET muted = ? WHERE chat_id = ? AND account_id = ?")
                .execute(arguments: [muted, chatID.description, account.description])
            guard db.changesCount == 1 else { throw Self.notAMember(account) }
        }
    }

    func ban(in chatID: ChatID, account: AccountID) async throws -> ChatBan? {
        try await pool.read { db in
            guard
                let row = try Row.fetchOne(
                    try db.cachedStatement(sql: "SELECT * FROM chat_bans WHERE chat_id = ? AND account_id = ?"),
                    arguments: [chatID.description, account.description])
            else { return nil }
            return ChatBan(
                chatID: chatID, accountID: account, bannedBy: try row.accountID("banned_by"),
                bannedAt: Date(millisecondsSince1970: row["banned_at"]),
                until: (row["banned_until"] as Int64?).map(Date.init(millisecondsSince1970:)))
        }
    }

    func unban(in chatID: ChatID, account: AccountID) async throws -> Bool {
        try await pool.write { db in
            try db.cachedStatement(sql: "DELETE FROM chat_bans WHERE chat_id = ? AND account_id = ?")
                .execute(arguments: [chatID.description, account.description])
            return db.changesCount == 1
        }
    }

    func insertInvite(_ invite: ChatInvite) async throws {
        try await refusingUnknownChat { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO chat_invites (code, chat_id, created_by, created_at, expires_at, usage_limit, uses,
                                              requires_approval, revoked_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [
                invite.code, invite.chatID.description, invite.createdBy.description, invite.createdAt.databaseMilliseconds,
                invite.expiresAt?.databaseMilliseconds, invite.usageLimit, invite.uses, invite.requiresApproval,
                invite.revokedAt?.databaseMilliseconds,
            ])
        }
    }

    func invite(code: String) async throws -> ChatInvite? {
        try await pool.read { db in try Self.invite(code: code, in: db) }
    }

    func invites(of chatID: ChatID) async throws -> [ChatInvite] {
        try await pool.read { db in
            try Row.fetchAll(
                try db.cachedStatement(sql: "SELECT * FROM chat_invites WHERE chat_id = ? ORDER BY created_at DESC, rowid DESC"),
                arguments: [chatID.description]
            ).map(Self.invite)
        }
    }

    func revokeInvite(code: String, of chatID: ChatID, at time: Date) async throws -> ChatInvite? {
        try await pool.write { db in
            try db.cachedStatement(
                sql: "UPDATE chat_invites SET revoked_at = COALESCE(revoked_at, ?) WHERE code = ? AND chat_id = ?"
            ).execute(arguments: [time.databaseMilliseconds, code, chatID.description])
            guard db.changesCount == 1 else { return nil }
            return try Self.invite(code: code, in: db)
        }
    }

    func useInvite(code: String, at time: Date) async throws -> ChatInvite {
        // Read, check and count in the single writer: two uses of the last allowed join
        // cannot both see it free.
        try await pool.write { db in
            guard var invite = try Self.invite(code: code, in: db) else {
                throw HeliographError(.unknownChat, "no group or channel has this invite link")
            }
            if let refusal = invite.refusal(at: time) { throw refusal }
            try db.cachedStatement(sql: "UPDATE chat_invites SET uses = uses + 1 WHERE code = ?").execute(arguments: [code])
            invite.uses += 1
            return invite
        }
    }

    func insertJoinRequest(_ request: JoinRequest) async throws {
        // REPLACE gives a repeated request a new rowid: it counts as made now among equal times.
        try await refusingUnknownChat { db in
            try db.cachedStatement(
                sql: """
                    INSERT OR REPLACE INTO chat_join_requests (chat_id, account_id, requested_at, invite_code)
                    VALUES (?, ?, ?, ?)
                    """
            ).execute(arguments: [
                request.chatID.description, request.accountID.description, request.requestedAt.databaseMilliseconds,
                request.inviteCode,
            ])
        }
    }

    func joinRequests(of chatID: ChatID, limit: Int) async throws -> [JoinRequest] {
        guard limit > 0 else { return [] }
        return try await pool.read { db in
            try Row.fetchAll(
                try db.cachedStatement(
                    sql: "SELECT * FROM chat_join_requests WHERE chat_id = ? ORDER BY requested_at, rowid LIMIT ?"),
                arguments: [chatID.description, limit]
            ).map(Self.joinRequest)
        }
    }

    func removeJoinRequest(of chatID: ChatID, account: AccountID) async throws -> JoinRequest? {
        try await pool.write { db in
            try Row.fetchOne(
                try db.cachedStatement(
                    sql: "DELETE FROM chat_join_requests WHERE chat_id = ? AND account_id = ? RETURNING *"),
                arguments: [chatID.description, account.description]
            ).map(Self.joinRequest)
        }
    }

    /// Runs `body` in a write transaction; a row for a chat that does not exist is refused
    /// with `unknown_chat`.
    private func refusingUnknownChat(_ body: @escaping @Sendable (Database) throws -> Void) async throws {
        do {
            try await pool.write(body)
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_FOREIGNKEY {
            throw HeliographError(.unknownChat, "no group or channel has this id")
        }
    }

    // MARK: Rows

    static func chat(id: ChatID, in db: Database) throws -> Chat? {
        try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM chats WHERE id = ?"), arguments: [id.description])
            .map(chat)
    }

    static func member(of chatID: ChatID, account: AccountID, in db: Database) throws -> ChatMember? {
        try Row.fetchOne(
            try db.cachedStatement(sql: "SELECT * FROM chat_members WHERE chat_id = ? AND account_id = ?"),
            arguments: [chatID.description, account.description]
        ).map(member)
    }

    static func insertMember(_ member: ChatMember, into chatID: ChatID, in db: Database) throws {
        try db.cachedStatement(
            sql: """
                INSERT INTO chat_members (chat_id, account_id, role, rights, joined_at, read_seq, muted, last_post_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: [
            chatID.description, member.accountID.description, member.role.rawValue, member.rights.rawValue,
            member.joinedAt.databaseMilliseconds, member.readSequence, member.muted, member.lastPostAt?.databaseMilliseconds,
        ])
    }

    /// The id (text) of the chat holding the public name, if any.
    private static func holder(of username: Username, in db: Database) throws -> String? {
        try String.fetchOne(
            try db.cachedStatement(sql: "SELECT id FROM chats WHERE username_canonical = ?"), arguments: [username.canonical])
    }

    private static func nameTaken(_ username: Username) -> HeliographError {
        HeliographError(.usernameTaken, "the public name \(username) is already taken by another group or channel")
    }

    static func notAMember(_ account: AccountID) -> HeliographError {
        HeliographError(.notAMember, "account \(account) is not a member of this chat")
    }

    /// `text` with LIKE's wildcards (and the escape character) escaped by a backslash.
    private static func likeEscaped(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if character == "\\" || character == "%" || character == "_" { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }

    private static func invite(code: String, in db: Database) throws -> ChatInvite? {
        try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM chat_invites WHERE code = ?"), arguments: [code])
            .map(invite)
    }

    static func chat(_ row: Row) throws -> Chat {
        guard let id = ChatID(row["id"] as String) else { throw StorageCorruption(column: "chats.id") }
        guard let kind = ChatKind(rawValue: row["kind"]) else { throw StorageCorruption(column: "chats.kind") }
        let username: String? = row["username"]
        return Chat(
            id: id, kind: kind, title: row["title"], about: row["about"],
            username: try username.map { try Username(validating: $0) },
            createdAt: Date(millisecondsSince1970: row["created_at"]), slowModeSeconds: row["slow_mode_seconds"],
            signPosts: row["sign_posts"], hidesForwardOrigin: row["hides_forward_origin"], memberCount: row["member_count"],
            lastSequence: row["last_seq"], membershipVersion: row["membership_version"],
            removalVersion: row["removal_version"])
    }

    static func member(_ row: Row) throws -> ChatMember {
        guard let chatID = ChatID(row["chat_id"] as String) else { throw StorageCorruption(column: "chat_members.chat_id") }
        guard let role = ChatRole(rawValue: row["role"]) else { throw StorageCorruption(column: "chat_members.role") }
        return ChatMember(
            chatID: chatID, accountID: try row.accountID("account_id"), role: role,
            rights: AdminRights(rawValue: row["rights"]), joinedAt: Date(millisecondsSince1970: row["joined_at"]),
            readSequence: row["read_seq"], muted: row["muted"],
            lastPostAt: (row["last_post_at"] as Int64?).map(Date.init(millisecondsSince1970:)))
    }

    private static func invite(_ row: Row) throws -> ChatInvite {
        guard let chatID = ChatID(row["chat_id"] as String) else { throw StorageCorruption(column: "chat_invites.chat_id") }
        return ChatInvite(
            code: row["code"], chatID: chatID, createdBy: try row.accountID("created_by"),
            createdAt: Date(millisecondsSince1970: row["created_at"]),
            expiresAt: (row["expires_at"] as Int64?).map(Date.init(millisecondsSince1970:)), usageLimit: row["usage_limit"],
            uses: row["uses"], requiresApproval: row["requires_approval"],
            revokedAt: (row["revoked_at"] as Int64?).map(Date.init(millisecondsSince1970:)))
    }

    private static func joinRequest(_ row: Row) throws -> JoinRequest {
        guard let chatID = ChatID(row["chat_id"] as String) else {
            throw StorageCorruption(column: "chat_join_requests.chat_id")
        }
        return JoinRequest(
            chatID: chatID, accountID: try row.accountID("account_id"),
            requestedAt: Date(millisecondsSince1970: row["requested_at"]), inviteCode: row["invite_code"])
    }
}

/// Each chat's log in the embedded database: one row per update whatever the member count,
/// numbered from the chat row's `last_seq` inside the single writer, so numbers never repeat
/// or skip.
struct SQLiteChatLogStore: ChatLogStore {
    let pool: DatabasePool

    func append(_ update: NewChatUpdate) async throws -> ChatUpdateReceipt {
        try await pool.write { db in try Self.append(update, in: db) }
    }

    /// Appends inside the caller's transaction; a throw leaves the caller to roll back.
    static func append(_ update: NewChatUpdate, in db: Database) throws -> ChatUpdateReceipt {
        let chatID = update.chatID.description
        guard
            try Int64.fetchOne(
                try db.cachedStatement(sql: "SELECT last_seq FROM chats WHERE id = ?"), arguments: [chatID]) != nil
        else { throw HeliographError(.unknownChat, "no group or channel has the id \(update.chatID)") }

        if update.logged,
            let previous = try Row.fetchOne(
                try db.cachedStatement(
                    sql: """
                        SELECT seq, server_time, content_hash FROM chat_log
                        WHERE chat_id = ? AND sender_device_id = ? AND message_id = ?
                        """),
                arguments: [chatID, update.sender.deviceID.description, update.messageID.rawValue])
        {
            guard SendIdempotency.isRetry(stored: previous["content_hash"], incoming: update.contentHash) else {
                throw SendIdempotency.conflict(update.messageID)
            }
            return ChatUpdateReceipt(
                sequence: previous["seq"], serverTime: Date(millisecondsSince1970: previous["server_time"]), duplicate: true)
        }

        let serverTime = update.serverTime.databaseMilliseconds
        if update.slowModeSeconds > 0 {
            try applySlowMode(update, at: serverTime, in: db)
        }
        for effect in update.effects {
            try apply(effect, of: update, at: serverTime, in: db)
        }

        guard update.logged else {
            let last =
                try Int64.fetchOne(
                    try db.cachedStatement(sql: "SELECT last_seq FROM chats WHERE id = ?"), arguments: [chatID]) ?? 0
            return ChatUpdateReceipt(sequence: last, serverTime: Date(millisecondsSince1970: serverTime), duplicate: false)
        }
        guard
            let sequence = try Int64.fetchOne(
                try db.cachedStatement(sql: "UPDATE chats SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq"),
                arguments: [chatID])
        else { throw HeliographError(.unknownChat, "no group or channel has the id \(update.chatID)") }
        // COALESCE: an empty Data may be bound as NULL, and an empty payload is a valid one.
        try db.cachedStatement(
            sql: """
                INSERT INTO chat_log (chat_id, seq, kind, message_id, sender_account_id, sender_username, sender_device_id,
                                      server_time, target, payload, content_hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(?, x''), ?)
                """
        ).execute(arguments: [
            chatID, sequence, update.kind.rawValue, update.messageID.rawValue, update.sender.accountID.description,
            update.sender.username.display, update.sender.deviceID.description, serverTime, update.target, update.payload,
            update.contentHash,
        ])
        return ChatUpdateReceipt(sequence: sequence, serverTime: Date(millisecondsSince1970: serverTime), duplicate: false)
    }

    private static func applySlowMode(_ update: NewChatUpdate, at serverTime: Int64, in db: Database) throws {
        let chatID = update.chatID.description
        let account = update.sender.accountID
        guard
            let row = try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT last_post_at FROM chat_members WHERE chat_id = ? AND account_id = ?"),
                arguments: [chatID, account.description])
        else { throw SQLiteChatStore.notAMember(account) }
        if let lastPost = row["last_post_at"] as Int64? {
            let remaining = lastPost + Int64(update.slowModeSeconds) * 1000 - serverTime
            if remaining > 0 {
                let seconds = Int((remaining + 999) / 1000)
                throw HeliographError(
                    .slowMode, "slow mode is on: wait \(seconds) more second\(seconds == 1 ? "" : "s") before posting again",
                    retryAfterSeconds: seconds)
            }
        }
        try db.cachedStatement(sql: "UPDATE chat_members SET last_post_at = ? WHERE chat_id = ? AND account_id = ?")
            .execute(arguments: [serverTime, chatID, account.description])
    }

    private static func apply(_ effect: ChatEffect, of update: NewChatUpdate, at serverTime: Int64, in db: Database) throws {
        let chatID = update.chatID.description
        switch effect {
        case .edit(let target):
            try requireMessage(target, of: update.chatID, allowingDeleted: false, in: db)
            try db.cachedStatement(
                sql: "UPDATE chat_log SET payload = COALESCE(?, x''), edited_at = ? WHERE chat_id = ? AND seq = ?"
            ).execute(arguments: [update.payload, serverTime, chatID, target])
        case .delete(let target):
            try requireMessage(target, of: update.chatID, allowingDeleted: true, in: db)
            try db.cachedStatement(
                sql: "UPDATE chat_log SET payload = x'', deleted = 1, pinned = 0 WHERE chat_id = ? AND seq = ?"
            ).execute(arguments: [chatID, target])
        case .pin(let target, let pinned):
            try requireMessage(target, of: update.chatID, allowingDeleted: false, in: db)
            try db.cachedStatement(sql: "UPDATE chat_log SET pinned = ? WHERE chat_id = ? AND seq = ?")
                .execute(arguments: [pinned, chatID, target])
        case .react(let target, let account, let emoji):
            try requireMessage(target, of: update.chatID, allowingDeleted: false, in: db)
            if let emoji {
                try db.cachedStatement(
                    sql: """
                        INSERT INTO chat_reactions (chat_id, seq, account_id, emoji) VALUES (?, ?, ?, ?)
                        ON CONFLICT (chat_id, seq, account_id) DO UPDATE SET emoji = excluded.emoji
                        """
                ).execute(arguments: [chatID, target, account.description, emoji])
            } else {
                try db.cachedStatement(sql: "DELETE FROM chat_reactions WHERE chat_id = ? AND seq = ? AND account_id = ?")
                    .execute(arguments: [chatID, target, account.description])
            }
        case .addMember(let member, let limit):
            if try SQLiteChatStore.member(of: update.chatID, account: member.accountID, in: db) != nil {
                throw HeliographError(.alreadyMember, "account \(member.accountID) is already a member of this chat")
            }
            if let limit {
                let count =
                    try Int.fetchOne(
                        try db.cachedStatement(sql: "SELECT member_count FROM chats WHERE id = ?"), arguments: [chatID]) ?? 0
                guard count < limit else {
                    throw HeliographError(.chatFull, "this chat has reached its limit of \(limit) members")
                }
            }
            try SQLiteChatStore.insertMember(member, into: update.chatID, in: db)
            try changeMemberCount(of: chatID, by: 1, in: db)
        case .removeMember(let account):
            guard try removeMember(account, from: chatID, in: db) else { throw SQLiteChatStore.notAMember(account) }
        case .setRole(let account, let role, let rights):
            // Normalised as ChatMember does: the owner holds every right, a member none.
            let stored: AdminRights = role == .owner ? .all : (role == .member ? [] : rights)
            try db.cachedStatement(sql: "UPDATE chat_members SET role = ?, rights = ? WHERE chat_id = ? AND account_id = ?")
                .execute(arguments: [role.rawValue, stored.rawValue, chatID, account.description])
            guard db.changesCount == 1 else { throw SQLiteChatStore.notAMember(account) }
        case .ban(let ban):
            _ = try removeMember(ban.accountID, from: chatID, in: db)
            try db.cachedStatement(
                sql: """
                    INSERT INTO chat_bans (chat_id, account_id, banned_by, banned_at, banned_until) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (chat_id, account_id) DO UPDATE
                    SET banned_by = excluded.banned_by, banned_at = excluded.banned_at, banned_until = excluded.banned_until
                    """
            ).execute(arguments: [
                chatID, ban.accountID.description, ban.bannedBy.description, ban.bannedAt.databaseMilliseconds,
                ban.until?.databaseMilliseconds,
            ])
        case .membershipVersion(let version, let removal):
            let stored =
                try Int64.fetchOne(
                    try db.cachedStatement(sql: "SELECT membership_version FROM chats WHERE id = ?"), arguments: [chatID]) ?? 0
            guard version == stored + 1 else {
                throw HeliographError(
                    .membershipConflict,
                    "the membership is at version \(stored), so a change must bring it to \(stored + 1), not \(version)")
            }
            try db.cachedStatement(
                sql: """
                    UPDATE chats SET membership_version = ?1,
                                     removal_version = CASE WHEN ?2 THEN ?1 ELSE removal_version END
                    WHERE id = ?3
                    """
            ).execute(arguments: [version, removal, chatID])
        }
    }

    /// Throws `unknown_message` unless `sequence` is a message of the chat (and, unless
    /// allowed, not deleted).
    private static func requireMessage(_ sequence: Int64, of chatID: ChatID, allowingDeleted: Bool, in db: Database) throws {
        let deleted = try Bool.fetchOne(
            try db.cachedStatement(sql: "SELECT deleted FROM chat_log WHERE chat_id = ? AND seq = ? AND kind = 'message'"),
            arguments: [chatID.description, sequence])
        guard let deleted else {
            throw HeliographError(.unknownMessage, "update \(sequence) is not a message of this chat")
        }
        guard allowingDeleted || !deleted else {
            throw HeliographError(.unknownMessage, "message \(sequence) was deleted")
        }
    }

    /// Removes the membership row; returns whether there was one.
    private static func removeMember(_ account: AccountID, from chatID: String, in db: Database) throws -> Bool {
        try db.cachedStatement(sql: "DELETE FROM chat_members WHERE chat_id = ? AND account_id = ?")
            .execute(arguments: [chatID, account.description])
        guard db.changesCount == 1 else { return false }
        try changeMemberCount(of: chatID, by: -1, in: db)
        return true
    }

    private static func changeMemberCount(of chatID: String, by change: Int, in db: Database) throws {
        try db.cachedStatement(sql: "UPDATE chats SET member_count = member_count + ? WHERE id = ?")
            .execute(arguments: [change, chatID])
    }

    func updates(of chatID: ChatID, after: Int64, limit: Int) async throws -> [ChatUpdate] {
        guard limit > 0 else { return [] }
        return try await pool.read { db in
            try Row.fetchAll(
                try db.cachedStatement(sql: "SELECT * FROM chat_log WHERE chat_id = ? AND seq > ? ORDER BY seq LIMIT ?"),
                arguments: [chatID.description, after, limit]
            ).map { try Self.update($0, of: chatID) }
        }
    }

    func messages(of chatID: ChatID, before: Int64?, limit: Int) async throws -> [ChatMessage] {
        guard limit > 0 else { return [] }
        return try await pool.read { db in
            let rows = try Row.fetchAll(
                try db.cachedStatement(
                    sql: """
                        SELECT * FROM chat_log WHERE chat_id = ? AND kind = 'message' AND seq < ?
                        ORDER BY seq DESC LIMIT ?
                        """),
                arguments: [chatID.description, before ?? Int64.max, limit])
            guard let newestRow = rows.first, let oldestRow = rows.last else { return [] }
            let newest: Int64 = newestRow["seq"]
            let oldest: Int64 = oldestRow["seq"]
            // Every message between the oldest and newest listed is listed, and only messages
            // carry reactions, so one range read gathers exactly theirs.
            let reactions = try Self.reactionCounts(of: chatID, from: oldest, through: newest, in: db)
            return try rows.map { row in
                let sequence: Int64 = row["seq"]
                return try Self.message(row, of: chatID, reactions: reactions[sequence] ?? [:])
            }
        }
    }

    func message(of chatID: ChatID, sequence: Int64) async throws -> ChatMessage? {
        try await pool.read { db in
            guard
                let row = try Row.fetchOne(
                    try db.cachedStatement(sql: "SELECT * FROM chat_log WHERE chat_id = ? AND seq = ? AND kind = 'message'"),
                    arguments: [chatID.description, sequence])
            else { return nil }
            let reactions = try Self.reactionCounts(of: chatID, from: sequence, through: sequence, in: db)
            return try Self.message(row, of: chatID, reactions: reactions[sequence] ?? [:])
        }
    }

    func recordViews(of chatID: ChatID, sequences: [Int64], by accountID: AccountID) async throws -> [Int64: Int] {
        try await pool.write { db in
            var counts: [Int64: Int] = [:]
            for sequence in Set(sequences) {
                guard
                    let views = try Int.fetchOne(
                        try db.cachedStatement(
                            sql: "SELECT views FROM chat_log WHERE chat_id = ? AND seq = ? AND kind = 'message'"),
                        arguments: [chatID.description, sequence])
                else { continue }
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO chat_views (chat_id, seq, account_id) VALUES (?, ?, ?)")
                    .execute(arguments: [chatID.description, sequence, accountID.description])
                guard db.changesCount == 1 else {
                    counts[sequence] = views
                    continue
                }
                try db.cachedStatement(sql: "UPDATE chat_log SET views = views + 1 WHERE chat_id = ? AND seq = ?")
                    .execute(arguments: [chatID.description, sequence])
                counts[sequence] = views + 1
            }
            return counts
        }
    }

    func unreadCount(of chatID: ChatID, after: Int64, excluding accountID: AccountID, cap: Int) async throws -> Int {
        guard cap > 0 else { return 0 }
        return try await pool.read { db in
            try Int.fetchOne(
                try db.cachedStatement(
                    sql: """
                        SELECT count(*) FROM (
                            SELECT 1 FROM chat_log
                            WHERE chat_id = ? AND kind = 'message' AND seq > ? AND deleted = 0 AND sender_account_id <> ?
                            LIMIT ?)
                        """),
                arguments: [chatID.description, after, accountID.description, cap]) ?? 0
        }
    }

    /// Reaction counts by emoji of the messages numbered `first` through `last`, by sequence.
    private static func reactionCounts(
        of chatID: ChatID, from first: Int64, through last: Int64, in db: Database
    ) throws
        -> [Int64: [String: Int]]
    {
        var counts: [Int64: [String: Int]] = [:]
        let rows = try Row.fetchAll(
            try db.cachedStatement(
                sql: """
                    SELECT seq, emoji, count(*) AS n FROM chat_reactions
                    WHERE chat_id = ? AND seq BETWEEN ? AND ? GROUP BY seq, emoji
                    """),
            arguments: [chatID.description, first, last])
        for row in rows {
            let sequence: Int64 = row["seq"]
            let emoji: String = row["emoji"]
            counts[sequence, default: [:]][emoji] = row["n"] as Int
        }
        return counts
    }

    private static func update(_ row: Row, of chatID: ChatID) throws -> ChatUpdate {
        guard let kind = ChatUpdateKind(rawValue: row["kind"]) else { throw StorageCorruption(column: "chat_log.kind") }
        return ChatUpdate(
            chatID: chatID, sequence: row["seq"], kind: kind, messageID: try MessageID(validating: row["message_id"]),
            sender: EnvelopeSender(
                accountID: try row.accountID("sender_account_id"), username: try Username(validating: row["sender_username"]),
                deviceID: try row.deviceID("sender_device_id")),
            serverTime: Date(millisecondsSince1970: row["server_time"]), target: row["target"], payload: row["payload"])
    }

    private static func message(_ row: Row, of chatID: ChatID, reactions: [String: Int]) throws -> ChatMessage {
        ChatMessage(
            update: try update(row, of: chatID),
            editedAt: (row["edited_at"] as Int64?).map(Date.init(millisecondsSince1970:)), deleted: row["deleted"],
            pinned: row["pinned"], views: row["views"], reactions: reactions)
    }
}
