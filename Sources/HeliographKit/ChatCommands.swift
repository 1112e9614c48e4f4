import Foundation
import HeliographCore
import HeliographProtocol

// Group and channel operations a client needs beside posting and reading: finding public
// chats, public groups with first members, bans, invite links, join requests, views, and the
// small steps a reader takes before it can open private-group posts.

extension HeliographClient {
    // MARK: Finding chats

    /// A public group or channel by its name (a leading `@` is accepted).
    public func resolveChat(_ username: String) async throws -> ChatInfoResponse {
        try await call(.resolveChat, ResolveChatRequest(username: username), as: ChatInfoResponse.self)
    }

    /// Public groups and channels whose title has every word, or whose name starts with one.
    public func searchChats(_ query: String, limit: Int? = nil) async throws -> [WireChat] {
        try await call(.searchChats, SearchChatsRequest(query: query, limit: limit), as: ChatsResponse.self).chats
    }

    /// The title this device shows for a chat: a private group's comes end-to-end encrypted from
    /// its creator (the server holds none); nil while this device has not received it yet.
    public func localTitle(of chat: WireChat) -> String? {
        guard chat.kind == .privateGroup else { return chat.title }
        return groupTitle(chat.chatId)
    }

    /// A private group's title as this device received it, if it did.
    public func groupTitle(_ chat: ChatID) -> String? {
        (try? keyStore.read().groups?[chat.description]?.title) ?? nil
    }

    // MARK: Creating

    /// Creates a public group (server-readable, moderated) with first members added at once.
    public func createPublicGroup(
        title: String, username: String?, slowModeSeconds: Int?, members: [String]
    ) async throws -> WireChat {
        try await call(
            .createChat,
            CreateChatRequest(
                kind: .publicGroup, title: title, username: username, slowModeSeconds: slowModeSeconds,
                members: members.isEmpty ? nil : members),
            as: ChatInfoResponse.self
        ).chat
    }

    // MARK: Moderation

    /// The owner and admins of a chat, as the server lists them.
    public func chatAdmins(_ chat: ChatID) async throws -> [WireMember] {
        var admins: [WireMember] = []
        var after: AccountID?
        repeat {
            let page = try await call(
                .chatMembers, ChatMembersRequest(chatId: chat, after: after, limit: 500, admins: true),
                as: ChatMembersResponse.self)
            admins += page.members
            after = page.next
        } while after != nil
        return admins
    }

    /// Bans an account from a public group or channel (it leaves and cannot join again), until
    /// `until` or until lifted.
    public func ban(_ username: String, from chat: ChatID, until: Date? = nil) async throws {
        _ = try await call(
            .banMember, BanMemberRequest(chatId: chat, username: username, until: until?.millisecondsSince1970),
            as: ChatInfoResponse.self)
    }

    /// Lifts a ban.
    public func unban(_ username: String, from chat: ChatID) async throws {
        _ = try await call(.unbanMember, ChatMemberRequest(chatId: chat, username: username), as: ChatInfoResponse.self)
    }

    // MARK: Invites and join requests

    /// Makes an invite link: optionally expiring, limited in uses, or waiting for an admin's
    /// approval (joins of a private group always wait: an admin's client signs the add).
    public func createInvite(
        to chat: ChatID, expiresAt: Date? = nil, usageLimit: Int? = nil, requiresApproval: Bool = false
    ) async throws -> WireInvite {
        try await call(
            .createInvite,
            CreateInviteRequest(
                chatId: chat, expiresAt: expiresAt?.millisecondsSince1970, usageLimit: usageLimit,
                requiresApproval: requiresApproval ? true : nil),
            as: WireInvite.self)
    }

    /// Joins waiting for an admin's approval, oldest first.
    public func joinRequests(of chat: ChatID) async throws -> [WireJoinRequest] {
        try await call(.joinRequests, ChatRef(chatId: chat), as: JoinRequestsResponse.self).requests
    }

    /// Lets a waiting account in, or declines it. In a private group letting in is a signed add
    /// made by this device (which also hands the newcomer this device's sender key); the server
    /// then drops the request.
    public func decideJoinRequest(_ username: String, in chat: ChatID, approve: Bool) async throws {
        if approve, try await chatInfo(chat).chat.kind == .privateGroup {
            let name = username.hasPrefix("@") ? String(username.dropFirst()) : username
            guard try await joinRequests(of: chat).contains(where: { $0.username.lowercased() == name.lowercased() }) else {
                throw HeliographError(.notFound, "\(name) has not asked to join")
            }
            try await addMembers([name], to: chat)
            return
        }
        _ = try await call(
            .decideJoinRequest, DecideJoinRequest(chatId: chat, username: username, approve: approve),
            as: ChatInfoResponse.self)
    }

    // MARK: Reading

    /// Counts these messages as seen by this account (once each); returns the view counts.
    @discardableResult
    public func recordViews(_ seqs: [Int64], in chat: ChatID) async throws -> [Int64: Int] {
        var views: [Int64: Int] = [:]
        // The server takes at most 100 per request.
        for start in stride(from: 0, to: seqs.count, by: 100) {
            let batch = Array(seqs[start..<min(start + 100, seqs.count)])
            let response = try await call(.recordViews, RecordViewsRequest(chatId: chat, seqs: batch), as: ViewsResponse.self)
            for (key, count) in response.views { if let seq = Int64(key) { views[seq] = count } }
        }
        return views
    }

    /// Opens what waits in this device's inbox so that private-group sender keys and titles,
    /// which travel there over the pairwise sessions, are in place before posts are read.
    ///
    /// Only the leading run of such group controls is acknowledged: a person's direct message
    /// stays in the inbox (its decryption kept) until `helio listen` or another reader shows it.
    /// Returns how many controls were taken in.
    @discardableResult
    public func absorbGroupKeys(limit: Int = 500) async throws -> Int {
        let page = try await call(
            .fetchInbox, FetchInboxRequest(after: profile.lastAcknowledged, limit: min(max(limit, 1), 500)),
            as: FetchInboxResponse.self)
        var controls = 0
        var acknowledgeable: Int64?
        var prefix = true
        for envelope in page.envelopes {
            let opened = try await open(IncomingMessage(envelope))
            var isControl = false
            if case .message(let decrypted) = opened, decrypted.content.group != nil, decrypted.content.text.isEmpty {
                isControl = true
                controls += 1
            }
            if prefix, isControl { acknowledgeable = envelope.seq } else { prefix = false }
        }
        if let acknowledgeable {
            try await acknowledge(through: acknowledgeable)
            _ = try await call(.ack, AckRequest(seq: acknowledgeable), as: AckResponse.self)
        }
        return controls
    }

    /// Fetches one update of a chat's log again and interprets it: for a private-group post that
    /// could not be opened because its sender key had not arrived yet. Nil when the log has no
    /// such update (any more).
    public func reinterpretChatUpdate(_ seq: Int64, in chat: ChatID) async throws -> ChatEvent? {
        guard seq >= 1 else { return nil }
        let info = try await chatInfo(chat).chat
        let page = try await call(
            .chatUpdates, ChatUpdatesRequest(chatId: chat, after: seq - 1, limit: 1), as: ChatUpdatesResponse.self)
        guard let update = page.updates.first, update.seq == seq else { return nil }
        return try interpret(update, in: info)
    }
}
