import Foundation
import HeliographCore
import HeliographCrypto
import HeliographProtocol
import HeliographStore
import Logging

/// Groups and channels: creation, settings, membership, roles, bans and invite links. Posting,
/// message operations, history and sync are in ChatMessaging.swift.
///
/// Authorisation is checked here for every call: a chat that is neither public nor joined is
/// answered as unknown, so ids of invite-only chats cannot be probed.
public struct ChatService: Sendable {
    let storage: any HeliographStorage
    let clock: any WallClock
    let configuration: ServerConfiguration
    let accounts: AccountService
    let fanout: ChatFanout
    /// Posts and operations per account.
    let postLimiter: RateLimiter
    /// Checks and records the media and attachments posts name.
    let media: MediaService

    // MARK: Lookup and authorisation

    /// The chat, or `unknown_chat`.
    func requireChat(_ id: ChatID) async throws -> Chat {
        guard let chat = try await storage.chats.chat(id: id) else {
            throw HeliographError(.unknownChat, "no group or channel \(id) is visible to you")
        }
        return chat
    }

    /// The chat and the caller's membership, if the caller may see it: members always, anyone
    /// for chats with a public name. Others get `unknown_chat`, as for a chat that does not exist.
    func visibleChat(_ id: ChatID, to caller: AuthenticatedDevice) async throws -> (Chat, ChatMember?) {
        let chat = try await requireChat(id)
        let member = try await storage.chats.member(of: id, account: caller.accountID)
        guard member != nil || chat.username != nil else {
            throw HeliographError(.unknownChat, "no group or channel \(id) is visible to you")
        }
        return (chat, member)
    }

    /// The chat and the caller's membership; `not_a_member` for a public chat the caller has
    /// not joined, `unknown_chat` for any other.
    func memberChat(_ id: ChatID, _ caller: AuthenticatedDevice) async throws -> (Chat, ChatMember) {
        let (chat, member) = try await visibleChat(id, to: caller)
        guard let member else {
            throw HeliographError(.notAMember, "you are not a member of \(chat.title); join it first")
        }
        return (chat, member)
    }

    /// Throws `missing_right` unless the member holds `right`.
    func require(_ right: AdminRights, of member: ChatMember, to what: String) throws(HeliographError) {
        guard member.has(right) else {
            let name = right.nameList.joined(separator: ", ")
            throw HeliographError(.missingRight, "you need the '\(name)' right to \(what)")
        }
    }

    /// The account named, or `unknown_account`.
    func account(named name: String) async throws -> Account {
        try await accounts.requireAccount(named: name)
    }

    // MARK: Creation and settings

    /// `createChat`: a private group (with its signed creation), public group or channel; the
    /// caller becomes the owner.
    public func create(_ request: CreateChatRequest, by caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        try postLimiter.take(caller.accountID.description, what: "chat changes")
        let now = clock.now().wholeMilliseconds
        let about = try Self.checkedAbout(request.about ?? "")
        var chat = Chat(id: .random(), kind: request.kind, title: "", about: about, createdAt: now)
        var members = [ChatMember(chatID: chat.id, accountID: caller.accountID, role: .owner, joinedAt: now)]
        var firstUpdate: NewChatUpdate?
        switch request.kind {
        case .privateGroup:
            // The server never learns a private group's title or anything else but members.
            guard request.username == nil, request.members == nil, request.about == nil, request.title.isEmpty else {
                throw HeliographError(
                    .badRequest,
                    "a private group has no public name, description or title on the server (the title travels "
                        + "end-to-end encrypted); give only 'membership', the signed creation")
            }
            guard let bytes = request.membership else {
                throw HeliographError(.badRequest, "a private group needs 'membership': the owner's signed creation")
            }
            let signed = try SignedMembershipChange(bytes: bytes)
            let change = signed.change
            guard change.action == .create, change.version == 1 else {
                throw HeliographError(.invalidMembershipChange, "the first membership change must be a creation, version 1")
            }
            guard change.title == nil else {
                throw HeliographError(
                    .invalidMembershipChange,
                    "leave the title out of the signed creation: the server reads it; send the title to members encrypted")
            }
            guard try await storage.chats.chat(id: change.chat) == nil else {
                throw HeliographError(.invalidMembershipChange, "the chat id \(change.chat) is already in use; choose another")
            }
            try await checkSignature(signed, by: caller)
            // The genesis proves itself (the owner signed with the key it lists); the server
            // additionally checks every listed key against the accounts, for honest clients'
            // sake (clients check against what they know, whatever the server says).
            guard change.members.filter({ $0.role == .owner }).map(\.account) == [caller.accountID] else {
                throw HeliographError(.invalidMembershipChange, "the creation must list its signer as the only owner")
            }
            let limit = configuration.chatMemberLimits[.privateGroup] ?? .max
            guard change.members.count <= limit else {
                throw HeliographError(.chatFull, "a private group has at most \(limit) members")
            }
            try await checkListedKeys(change.members)
            chat = Chat(id: change.chat, kind: .privateGroup, title: "", createdAt: now, membershipVersion: 1)
            members = change.members.map {
                ChatMember(chatID: chat.id, accountID: $0.account, role: $0.role, rights: $0.rights, joinedAt: now)
            }
            firstUpdate = NewChatUpdate(
                chatID: chat.id, kind: .membership, messageID: .random(), sender: sender(caller), serverTime: now,
                payload: bytes)
        case .publicGroup, .channel:
            guard request.membership == nil else {
                throw HeliographError(.badRequest, "'membership' is for private groups only")
            }
            chat.title = try Self.checkedTitle(request.title)
            chat.username = try request.username.map { try Username(validating: $0) }
            if request.kind == .publicGroup {
                chat.slowModeSeconds = try Self.checkedSlowMode(request.slowModeSeconds ?? 0)
                guard request.signPosts != true, request.hidesForwardOrigin != true else {
                    throw HeliographError(.badRequest, "'signPosts' and 'hidesForwardOrigin' are channel settings")
                }
            } else {
                guard (request.slowModeSeconds ?? 0) == 0 else {
                    throw HeliographError(.badRequest, "slow mode is for public groups; only admins post in a channel")
                }
                chat.signPosts = request.signPosts ?? false
                chat.hidesForwardOrigin = request.hidesForwardOrigin ?? false
            }
            let names = request.members ?? []
            guard names.count <= Self.maximumAddedAtOnce else {
                throw HeliographError(.badRequest, "add at most \(Self.maximumAddedAtOnce) members at once")
            }
            for name in names {
                let account = try await account(named: name)
                guard !members.contains(where: { $0.accountID == account.id }) else { continue }
                members.append(ChatMember(chatID: chat.id, accountID: account.id, role: .member, joinedAt: now))
            }
        }
        try await storage.chats.create(chat, members: members, firstUpdate: firstUpdate)
        for member in members { fanout.setMember(member.accountID, of: chat.id, true) }
        let stored = try await requireChat(chat.id)
        return ChatInfoResponse(chat: WireChat(stored), role: .owner, rights: AdminRights.all.nameList)
    }

    /// `chatInfo`: the chat and the caller's role.
    public func info(_ request: ChatRef, for caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        let (chat, member) = try await visibleChat(request.chatId, to: caller)
        return ChatInfoResponse(chat: WireChat(chat), role: member?.role, rights: member?.rights.nameList)
    }

    /// `resolveChat`: a chat by its public name.
    public func resolve(_ request: ResolveChatRequest, for caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        let name = try Username(validating: request.username)
        guard let chat = try await storage.chats.chat(username: name) else {
            throw HeliographError(.unknownChat, "no public group or channel is named \(name)")
        }
        let member = try await storage.chats.member(of: chat.id, account: caller.accountID)
        return ChatInfoResponse(chat: WireChat(chat), role: member?.role, rights: member?.rights.nameList)
    }

    /// `searchChats`: public chats whose title has every word, or whose name starts with it.
    public func search(_ request: SearchChatsRequest) async throws -> ChatsResponse {
        let limit = request.limit ?? 20
        guard (1...50).contains(limit) else { throw HeliographError(.badRequest, "limit must be 1-50, not \(limit)") }
        let words = request.query.lowercased().split(whereSeparator: { $0.isWhitespace }).map(String.init)
            .map { $0.hasPrefix("@") ? String($0.dropFirst()) : $0 }.filter { !$0.isEmpty }
        guard !words.isEmpty, words.count <= 8, request.query.count <= 200 else {
            throw HeliographError(.badRequest, "give 1-8 words to search for (at most 200 characters)")
        }
        return ChatsResponse(chats: try await storage.chats.search(words: words, limit: limit).map(WireChat.init))
    }

    /// `updateChat`: title, description, public name and settings; needs `change_info`.
    public func update(_ request: UpdateChatRequest, by caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try require(.changeInfo, of: member, to: "change the chat's info")
        guard chat.kind != .privateGroup else {
            throw HeliographError(
                .badRequest, "a private group's title lives end-to-end encrypted with its members, not on the server")
        }
        var changed = chat
        if let title = request.title { changed.title = try Self.checkedTitle(title) }
        if let about = request.about { changed.about = try Self.checkedAbout(about) }
        if let name = request.username { changed.username = name.isEmpty ? nil : try Username(validating: name) }
        if let slow = request.slowModeSeconds {
            guard chat.kind == .publicGroup || slow == 0 else {
                throw HeliographError(.badRequest, "slow mode is for public groups")
            }
            changed.slowModeSeconds = try Self.checkedSlowMode(slow)
        }
        if request.signPosts != nil || request.hidesForwardOrigin != nil {
            guard chat.kind == .channel else {
                throw HeliographError(.badRequest, "'signPosts' and 'hidesForwardOrigin' are channel settings")
            }
            changed.signPosts = request.signPosts ?? chat.signPosts
            changed.hidesForwardOrigin = request.hidesForwardOrigin ?? chat.hidesForwardOrigin
        }
        guard let stored = try await storage.chats.updateInfo(changed) else {
            throw HeliographError(.unknownChat, "the chat no longer exists")
        }
        _ = try await appendNotice(ChatNotice(action: "info", chat: WireChat(stored)), in: stored, by: caller, effects: [])
        return ChatInfoResponse(chat: WireChat(stored), role: member.role, rights: member.rights.nameList)
    }

    // MARK: Members

    /// `chatMembers`: one page of members; subscribers of a channel see only its admins.
    public func members(_ request: ChatMembersRequest, for caller: AuthenticatedDevice) async throws -> ChatMembersResponse {
        let (chat, member) = try await visibleChat(request.chatId, to: caller)
        let limit = request.limit ?? 100
        guard (1...500).contains(limit) else { throw HeliographError(.badRequest, "limit must be 1-500, not \(limit)") }
        let adminsOnly = request.admins ?? false
        if chat.kind == .channel, !adminsOnly, member.map({ $0.role == .member }) ?? true {
            throw HeliographError(
                .missingRight, "subscribers of a channel cannot see each other; ask for the admins ('admins': true)")
        }
        if member == nil, !adminsOnly {
            throw HeliographError(.notAMember, "join the chat to see its members; non-members may list its admins")
        }
        let page = try await storage.chats.members(
            of: chat.id, after: request.after, roles: adminsOnly ? [.owner, .admin] : nil, limit: limit)
        var wire: [WireMember] = []
        for row in page {
            let name = try await storage.accounts.account(id: row.accountID)?.username.display ?? ""
            wire.append(
                WireMember(
                    accountId: row.accountID, username: name, role: row.role, rights: row.rights.nameList,
                    joinedAt: row.joinedAt.millisecondsSince1970))
        }
        return ChatMembersResponse(members: wire, next: page.count == limit ? page.last?.accountID : nil)
    }

    /// `addMembers`: an admin with `invite` adds accounts to a public group or channel.
    public func addMembers(_ request: AddMembersRequest, by caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try Self.refusePrivate(chat, "add members")
        try require(.invite, of: member, to: "add members")
        guard !request.usernames.isEmpty, request.usernames.count <= Self.maximumAddedAtOnce else {
            throw HeliographError(.badRequest, "name 1-\(Self.maximumAddedAtOnce) accounts to add")
        }
        // Every name is checked before anything is added: a bad one changes nothing.
        var adding: [Account] = []
        for name in request.usernames {
            let account = try await account(named: name)
            try await refuseIfBanned(account.id, from: chat)
            guard try await storage.chats.member(of: chat.id, account: account.id) == nil else {
                throw HeliographError(.alreadyMember, "\(account.username) is already a member")
            }
            adding.append(account)
        }
        let now = clock.now().wholeMilliseconds
        for account in adding {
            let added = ChatMember(chatID: chat.id, accountID: account.id, role: .member, joinedAt: now)
            _ = try await appendNotice(
                ChatNotice(action: "added", account: account.id, username: account.username.display), in: chat, by: caller,
                effects: [.addMember(added, limit: configuration.chatMemberLimits[chat.kind])])
        }
        return try await info(ChatRef(chatId: chat.id), for: caller)
    }

    /// `removeMember`: an admin with `ban` removes a member (not the owner; admins only with
    /// `manage_admins` too).
    public func removeMember(_ request: ChatMemberRequest, by caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try Self.refusePrivate(chat, "remove members")
        try require(.ban, of: member, to: "remove members")
        let target = try await account(named: request.username)
        try await checkCanAct(on: target, in: chat, by: member)
        _ = try await appendNotice(
            ChatNotice(action: "removed", account: target.id, username: target.username.display), in: chat, by: caller,
            effects: [.removeMember(target.id)])
        return try await info(ChatRef(chatId: chat.id), for: caller)
    }

    /// `leaveChat`: the caller leaves (the owner must hand the chat over first).
    public func leave(_ request: ChatRef, by caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try Self.refusePrivate(chat, "leave")
        guard member.role != .owner else {
            throw HeliographError(.badRequest, "the owner cannot leave; transfer ownership first")
        }
        let left = try await appendNotice(
            ChatNotice(action: "left", account: caller.accountID, username: caller.username.display), in: chat, by: caller,
            effects: [.removeMember(caller.accountID)])
        return ChatInfoResponse(chat: WireChat(left), role: nil, rights: nil)
    }

    /// `banMember`: removes the account and keeps it out (until `until`, or until lifted).
    public func ban(_ request: BanMemberRequest, by caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try Self.refusePrivate(chat, "ban")
        try require(.ban, of: member, to: "ban")
        let target = try await account(named: request.username)
        let now = clock.now().wholeMilliseconds
        let until = request.until.map { Date(millisecondsSince1970: $0) }
        if let until, until <= now {
            throw HeliographError(.badRequest, "'until' is in the past; leave it out for a ban until lifted")
        }
        try await checkCanAct(on: target, in: chat, by: member, mustBeMember: false)
        let ban = ChatBan(chatID: chat.id, accountID: target.id, bannedBy: caller.accountID, bannedAt: now, until: until)
        _ = try await appendNotice(
            ChatNotice(action: "banned", account: target.id, username: target.username.display), in: chat, by: caller,
            effects: [.ban(ban)])
        return try await info(ChatRef(chatId: chat.id), for: caller)
    }

    /// `unbanMember`: lifts a ban.
    public func unban(_ request: ChatMemberRequest, by caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try require(.ban, of: member, to: "lift bans")
        let target = try await account(named: request.username)
        guard try await storage.chats.unban(in: chat.id, account: target.id) else {
            throw HeliographError(.notFound, "\(target.username) is not banned from this chat")
        }
        return try await info(ChatRef(chatId: chat.id), for: caller)
    }

    /// `setAdmin`: appoints an admin with rights (never more than one's own), changes them, or
    /// (no rights) makes the admin a member again. Needs `manage_admins`.
    public func setAdmin(_ request: SetAdminRequest, by caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try Self.refusePrivate(chat, "change admins")
        try require(.manageAdmins, of: member, to: "change admins")
        let rights = try AdminRights(names: request.rights)
        guard member.role == .owner || member.rights.isSuperset(of: rights) else {
            throw HeliographError(.missingRight, "you cannot grant rights you do not have yourself")
        }
        let target = try await account(named: request.username)
        guard let current = try await storage.chats.member(of: chat.id, account: target.id) else {
            throw HeliographError(.notAMember, "\(target.username) is not a member")
        }
        guard current.role != .owner else { throw HeliographError(.badRequest, "the owner's rights cannot be changed") }
        let role: ChatRole = rights.isEmpty ? .member : .admin
        _ = try await appendNotice(
            ChatNotice(
                action: "role", account: target.id, username: target.username.display, role: role, rights: rights.nameList),
            in: chat, by: caller, effects: [.setRole(target.id, role: role, rights: rights)])
        return try await info(ChatRef(chatId: chat.id), for: caller)
    }

    /// `transferOwnership`: the owner hands the chat to a member and stays as an admin.
    public func transfer(_ request: ChatMemberRequest, by caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try Self.refusePrivate(chat, "transfer ownership")
        guard member.role == .owner else { throw HeliographError(.missingRight, "only the owner can transfer ownership") }
        let target = try await account(named: request.username)
        guard target.id != caller.accountID else { throw HeliographError(.badRequest, "you already own this chat") }
        guard try await storage.chats.member(of: chat.id, account: target.id) != nil else {
            throw HeliographError(.notAMember, "\(target.username) is not a member")
        }
        _ = try await appendNotice(
            ChatNotice(action: "owner", account: target.id, username: target.username.display, role: .owner), in: chat,
            by: caller,
            effects: [
                .setRole(target.id, role: .owner, rights: .all), .setRole(caller.accountID, role: .admin, rights: .all),
            ])
        return try await info(ChatRef(chatId: chat.id), for: caller)
    }

    // MARK: Private groups

    /// `changeMembership`: a private group's next change, signed by the admin making it. The
    /// server checks what it can (signature with the caller's key, version, rights, listed
    /// keys); every member's client checks the whole chain again.
    public func changeMembership(
        _ request: ChangeMembershipRequest, by caller: AuthenticatedDevice
    ) async throws
        -> ChatInfoResponse
    {
        let (chat, member) = try await memberChat(request.chatId, caller)
        guard chat.kind == .privateGroup else {
            throw HeliographError(.badRequest, "signed membership changes are for private groups")
        }
        let signed = try SignedMembershipChange(bytes: request.change)
        let change = signed.change
        guard change.chat == chat.id else {
            throw HeliographError(.invalidMembershipChange, "the change names another chat")
        }
        guard change.actor == caller.accountID else {
            throw HeliographError(.invalidMembershipChange, "a change must be signed by the account sending it")
        }
        guard change.version == chat.membershipVersion + 1 else {
            throw HeliographError(
                .membershipConflict,
                "the change is version \(change.version) but the group is at \(chat.membershipVersion); fetch it and sign again")
        }
        try await checkSignature(signed, by: caller)
        let now = clock.now().wholeMilliseconds
        var effects: [ChatEffect] = []
        var removal = false
        switch change.action {
        case .create:
            throw HeliographError(.invalidMembershipChange, "a group is created once")
        case .add:
            try require(.invite, of: member, to: "add members")
            try await checkListedKeys(change.members)
            for added in change.members {
                try await refuseIfBanned(added.account, from: chat)
                effects.append(
                    .addMember(
                        ChatMember(chatID: chat.id, accountID: added.account, role: .member, joinedAt: now),
                        limit: configuration.chatMemberLimits[chat.kind]))
            }
        case .remove:
            try require(.ban, of: member, to: "remove members")
            for removed in change.members {
                let target = try await storage.chats.member(of: chat.id, account: removed.account)
                guard let target else { throw HeliographError(.notAMember, "\(removed.account) is not a member") }
                guard target.role != .owner else {
                    throw HeliographError(.invalidMembershipChange, "the owner cannot be removed")
                }
                if target.role == .admin { try require(.manageAdmins, of: member, to: "remove an admin") }
                effects.append(.removeMember(removed.account))
            }
            removal = true
        case .leave:
            guard change.members.map(\.account) == [caller.accountID], member.role != .owner else {
                throw HeliographError(
                    .invalidMembershipChange, "a leave lists only the member leaving, and the owner transfers first")
            }
            effects.append(.removeMember(caller.accountID))
            removal = true
        case .setRole:
            try require(.manageAdmins, of: member, to: "change admins")
            for changed in change.members {
                guard member.role == .owner || member.rights.isSuperset(of: changed.rights) else {
                    throw HeliographError(.missingRight, "you cannot grant rights you do not have yourself")
                }
                guard changed.role != .owner else {
                    throw HeliographError(.invalidMembershipChange, "ownership moves with a transfer")
                }
                effects.append(.setRole(changed.account, role: changed.role, rights: changed.rights))
            }
        case .transfer:
            guard member.role == .owner, let target = change.members.first, change.members.count == 1 else {
                throw HeliographError(.invalidMembershipChange, "only the owner transfers, to one member")
            }
            effects += [
                .setRole(target.account, role: .owner, rights: .all), .setRole(caller.accountID, role: .admin, rights: .all),
            ]
        }
        effects.append(.membershipVersion(change.version, removal: removal))
        let update = NewChatUpdate(
            chatID: chat.id, kind: .membership, messageID: .random(), sender: sender(caller), serverTime: now,
            payload: request.change, effects: effects)
        let receipt = try await storage.chatLog.append(update)
        if change.action == .add {
            for added in change.members { _ = try? await storage.chats.removeJoinRequest(of: chat.id, account: added.account) }
        }
        applyMembershipLocally(effects, chat: chat.id)
        try publish(update, receipt: receipt, in: chat)
        // After a leave the caller no longer sees the group: it gets the chat as it was, no role.
        guard change.action != .leave else { return ChatInfoResponse(chat: WireChat(chat), role: nil, rights: nil) }
        return try await info(ChatRef(chatId: chat.id), for: caller)
    }

    /// Refuses a change whose signature does not verify with the caller's identity key.
    private func checkSignature(_ signed: SignedMembershipChange, by caller: AuthenticatedDevice) async throws {
        guard let account = try await storage.accounts.account(id: caller.accountID),
            SignedMembershipChange.verifySignature(signed, identityKey: account.identityKey)
        else {
            throw HeliographError(.invalidMembershipChange, "the change is not signed with your account's identity key")
        }
    }

    /// Every listed member must be an account with exactly the listed identity key.
    private func checkListedKeys(_ members: [MembershipChange.Member]) async throws {
        for listed in members {
            guard let account = try await storage.accounts.account(id: listed.account) else {
                throw HeliographError(.unknownAccount, "no account \(listed.account)")
            }
            guard account.identityKey == listed.identityKey else {
                throw HeliographError(
                    .invalidMembershipChange, "the change lists another identity key for \(account.username) than its own")
            }
        }
    }

    // MARK: Joining and invites

    /// `joinChat`: by a public chat's name, or by an invite link (which may make the join wait
    /// for an admin). Private groups are joined by request only: an admin's client signs the add.
    public func join(_ request: JoinChatRequest, by caller: AuthenticatedDevice) async throws -> JoinChatResponse {
        // Counted like posts: guessing invite codes costs as much as spamming.
        try postLimiter.take(caller.accountID.description, what: "chat changes")
        let now = clock.now().wholeMilliseconds
        switch (request.username, request.invite) {
        case (let name?, nil):
            let username = try Username(validating: name)
            guard let chat = try await storage.chats.chat(username: username) else {
                throw HeliographError(.unknownChat, "no public group or channel is named \(username)")
            }
            let joined = try await addSelf(to: chat, caller: caller, at: now)
            return JoinChatResponse(chat: WireChat(joined), pending: false)
        case (nil, let link?):
            let code = Self.inviteCode(from: link)
            guard let invite = try await storage.chats.invite(code: code) else {
                throw HeliographError(.unknownChat, "this invite link opens nothing (mistyped?)")
            }
            let chat = try await requireChat(invite.chatID)
            try await refuseIfBanned(caller.accountID, from: chat)
            guard try await storage.chats.member(of: chat.id, account: caller.accountID) == nil else {
                throw HeliographError(.alreadyMember, "you are already a member of this chat")
            }
            if let refusal = invite.refusal(at: now) { throw refusal }
            if let limit = configuration.chatMemberLimits[chat.kind], chat.memberCount >= limit {
                throw HeliographError(.chatFull, "the chat has reached its limit of \(limit) members")
            }
            if invite.requiresApproval || chat.kind == .privateGroup {
                _ = try await storage.chats.useInvite(code: code, at: now)
                try await storage.chats.insertJoinRequest(
                    JoinRequest(chatID: chat.id, accountID: caller.accountID, requestedAt: now, inviteCode: code))
                return JoinChatResponse(chat: WireChat(chat), pending: true)
            }
            _ = try await storage.chats.useInvite(code: code, at: now)
            let joined = try await addSelf(to: chat, caller: caller, at: now)
            return JoinChatResponse(chat: WireChat(joined), pending: false)
        default:
            throw HeliographError(.badRequest, "give either 'username' (a public chat) or 'invite' (a link), not both")
        }
    }

    /// Adds the caller to a public group or channel.
    private func addSelf(to chat: Chat, caller: AuthenticatedDevice, at now: Date) async throws -> Chat {
        try await refuseIfBanned(caller.accountID, from: chat)
        let member = ChatMember(chatID: chat.id, accountID: caller.accountID, role: .member, joinedAt: now)
        return try await appendNotice(
            ChatNotice(action: "joined", account: caller.accountID, username: caller.username.display), in: chat,
            by: caller, effects: [.addMember(member, limit: configuration.chatMemberLimits[chat.kind])])
    }

    /// `createInvite`: a revocable link; needs `invite`.
    public func createInvite(_ request: CreateInviteRequest, by caller: AuthenticatedDevice) async throws -> WireInvite {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try require(.invite, of: member, to: "make invite links")
        let now = clock.now().wholeMilliseconds
        let expiry = request.expiresAt.map { Date(millisecondsSince1970: $0) }
        if let expiry, expiry <= now { throw HeliographError(.badRequest, "'expiresAt' is in the past") }
        if let limit = request.usageLimit, !(1...100_000).contains(limit) {
            throw HeliographError(.badRequest, "usageLimit must be 1-100000, not \(limit)")
        }
        let invite = ChatInvite(
            code: Self.newInviteCode(), chatID: chat.id, createdBy: caller.accountID, createdAt: now, expiresAt: expiry,
            usageLimit: request.usageLimit, requiresApproval: request.requiresApproval ?? false)
        try await storage.chats.insertInvite(invite)
        return WireInvite(invite)
    }

    /// `revokeInvite`: the link opens nothing from now on.
    public func revokeInvite(_ request: InviteRef, by caller: AuthenticatedDevice) async throws -> WireInvite {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try require(.invite, of: member, to: "revoke invite links")
        guard let revoked = try await storage.chats.revokeInvite(code: request.code, of: chat.id, at: clock.now()) else {
            throw HeliographError(.notFound, "this chat has no invite link \(request.code)")
        }
        return WireInvite(revoked)
    }

    /// `listInvites`: the chat's links; needs `invite`.
    public func invites(_ request: ChatRef, for caller: AuthenticatedDevice) async throws -> InvitesResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try require(.invite, of: member, to: "see invite links")
        return InvitesResponse(invites: try await storage.chats.invites(of: chat.id).map(WireInvite.init))
    }

    /// `joinRequests`: joins waiting for approval; needs `invite`.
    public func joinRequests(_ request: ChatRef, for caller: AuthenticatedDevice) async throws -> JoinRequestsResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try require(.invite, of: member, to: "see join requests")
        var wire: [WireJoinRequest] = []
        for row in try await storage.chats.joinRequests(of: chat.id, limit: 500) {
            let name = try await storage.accounts.account(id: row.accountID)?.username.display ?? ""
            wire.append(
                WireJoinRequest(accountId: row.accountID, username: name, requestedAt: row.requestedAt.millisecondsSince1970))
        }
        return JoinRequestsResponse(requests: wire)
    }

    /// `decideJoinRequest`: let a waiting account in, or decline it. (In a private group the
    /// admin's client approves by signing an add; declining works here.)
    public func decideJoinRequest(
        _ request: DecideJoinRequest, by caller: AuthenticatedDevice
    ) async throws
        -> ChatInfoResponse
    {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try require(.invite, of: member, to: "decide join requests")
        let target = try await account(named: request.username)
        if request.approve, chat.kind == .privateGroup {
            throw HeliographError(
                .badRequest, "a private group's members are added by a signed change ('helio group add'), not here")
        }
        guard try await storage.chats.removeJoinRequest(of: chat.id, account: target.id) != nil else {
            throw HeliographError(.notFound, "\(target.username) has not asked to join")
        }
        if request.approve {
            let now = clock.now().wholeMilliseconds
            let added = ChatMember(chatID: chat.id, accountID: target.id, role: .member, joinedAt: now)
            _ = try await appendNotice(
                ChatNotice(action: "joined", account: target.id, username: target.username.display), in: chat, by: caller,
                effects: [.addMember(added, limit: configuration.chatMemberLimits[chat.kind])])
        }
        return try await info(ChatRef(chatId: chat.id), for: caller)
    }

    // MARK: Helpers

    /// Appends a membership or settings notice with its effects; in channels membership changes
    /// are not logged (subscribers cannot see each other) but still applied. Returns the chat
    /// after the change.
    @discardableResult
    func appendNotice(
        _ notice: ChatNotice, in chat: Chat, by caller: AuthenticatedDevice, effects: [ChatEffect]
    )
        async throws -> Chat
    {
        let kind: ChatUpdateKind = notice.action == "info" ? .info : .membership
        let logged = chat.kind != .channel || kind == .info || notice.action == "role" || notice.action == "owner"
        let update = NewChatUpdate(
            chatID: chat.id, kind: kind, messageID: .random(), sender: sender(caller),
            serverTime: clock.now().wholeMilliseconds, payload: try WireCodec.encode(PublicUpdateBody(notice: notice)),
            effects: effects, logged: logged)
        let receipt = try await storage.chatLog.append(update)
        applyMembershipLocally(effects, chat: chat.id)
        if logged { try publish(update, receipt: receipt, in: chat) }
        return try await requireChat(chat.id)
    }

    /// Tells this node's sockets about members added and removed (other nodes hear it from the
    /// change feed).
    func applyMembershipLocally(_ effects: [ChatEffect], chat: ChatID) {
        for effect in effects {
            switch effect {
            case .addMember(let member, _): fanout.setMember(member.accountID, of: chat, true)
            case .removeMember(let account): fanout.setMember(account, of: chat, false)
            case .ban(let ban): fanout.setMember(ban.accountID, of: chat, false)
            default: break
            }
        }
    }

    /// Throws `banned` while a ban of the account holds.
    func refuseIfBanned(_ account: AccountID, from chat: Chat) async throws {
        if let ban = try await storage.chats.ban(in: chat.id, account: account), ban.isActive(at: clock.now()) {
            let until = ban.until.map { " until \(ISO8601DateFormatter().string(from: $0))" } ?? ""
            throw HeliographError(.banned, "this account is banned from \(chat.title.isEmpty ? "this chat" : chat.title)\(until)")
        }
    }

    /// A member may act on another (remove, ban) unless it is the owner, or an admin and the
    /// actor lacks `manage_admins`.
    private func checkCanAct(on target: Account, in chat: Chat, by member: ChatMember, mustBeMember: Bool = true) async throws {
        guard target.id != member.accountID else { throw HeliographError(.badRequest, "you cannot do that to yourself") }
        let row = try await storage.chats.member(of: chat.id, account: target.id)
        guard let row else {
            if mustBeMember { throw HeliographError(.notAMember, "\(target.username) is not a member") }
            return
        }
        guard row.role != .owner else { throw HeliographError(.missingRight, "nobody can remove or ban the owner") }
        if row.role == .admin { try require(.manageAdmins, of: member, to: "remove or ban an admin") }
    }

    static func refusePrivate(_ chat: Chat, _ what: String) throws(HeliographError) {
        guard chat.kind != .privateGroup else {
            throw HeliographError(
                .badRequest, "in a private group, \(what) with a signed membership change ('changeMembership')")
        }
    }

    func sender(_ caller: AuthenticatedDevice) -> EnvelopeSender {
        EnvelopeSender(accountID: caller.accountID, username: caller.username, deviceID: caller.deviceID)
    }

    /// The most accounts one request adds.
    static let maximumAddedAtOnce = 200

    static func checkedTitle(_ text: String) throws(HeliographError) -> String {
        let title = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !title.isEmpty, title.unicodeScalars.count <= Chat.maximumTitleLength else {
            throw HeliographError(.badRequest, "the title must be 1-\(Chat.maximumTitleLength) characters")
        }
        return title
    }

    static func checkedAbout(_ text: String) throws(HeliographError) -> String {
        guard text.unicodeScalars.count <= Chat.maximumAboutLength else {
            throw HeliographError(.badRequest, "the description must be at most \(Chat.maximumAboutLength) characters")
        }
        return text
    }

    static func checkedSlowMode(_ seconds: Int) throws(HeliographError) -> Int {
        guard (0...Chat.maximumSlowModeSeconds).contains(seconds) else {
            throw HeliographError(.badRequest, "slow mode must be 0-\(Chat.maximumSlowModeSeconds) seconds")
        }
        return seconds
    }

    /// 16 random bytes as base64url without padding (22 characters).
    static func newInviteCode() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = Data((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) })
        return bytes.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// The code of a link (`…/join/CODE`) or the code itself.
    static func inviteCode(from link: String) -> String {
        let trimmed = link.trimmingCharacters(in: .whitespaces)
        return trimmed.split(separator: "/").last.map(String.init) ?? trimmed
    }
}
