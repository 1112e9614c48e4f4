import Foundation
import HeliographCore
import HeliographCrypto
import HeliographProtocol
import Logging

/// One update of a group or channel as this device understood it.
public struct ChatEvent: Sendable, Equatable {
    /// The chat.
    public var chatID: ChatID
    /// Its kind.
    public var chatKind: ChatKind
    /// Its title as this device knows it.
    public var chatTitle: String
    /// The position in the chat's log.
    public var seq: Int64
    /// What happened: a message, or an operation on one (in private groups the operation is
    /// read from inside the ciphertext).
    public var kind: ChatUpdateKind
    /// Who did it; nil in channels.
    public var sender: String?
    /// The sending account; nil in channels.
    public var senderAccount: AccountID?
    /// When the server accepted it.
    public var serverTime: Date
    /// The text of a message or edit.
    public var text: String?
    /// The message acted on.
    public var target: Int64?
    /// The message replied to.
    public var replyTo: Int64?
    /// Where a forward came from.
    public var forward: ForwardOrigin?
    /// A reaction's emoji.
    public var emoji: String?
    /// A channel post's signature.
    public var signature: String?
    /// A readable description of a membership or settings change.
    public var notice: String?
    /// Set when the update could not be read or was refused (a forged membership change, a
    /// post without a sender key); the reason is safe to show.
    public var dropped: String?
    /// A private group's membership change this device had already taken in (its own, or one
    /// read while checking the membership): nothing new to show.
    public var repeated = false
    /// Public chats: the photos, videos and files of a post, as the server checked them.
    public var media: [PublicMedia]?
    /// Private groups: the encrypted attachments of a post (keys from inside the ciphertext).
    public var attachments: [AttachmentPointer]?
}

/// The content of a private group post, encrypted with the sender's sender key.
struct GroupPost: Codable, Sendable {
    var text: String?
    var replyTo: Int64?
    /// `edit`, `delete`, `pin`, `unpin` or `react`: an operation on `target`.
    var op: String?
    var target: Int64?
    var emoji: String?
    var forward: ForwardOrigin?
    var sentAt: Int64
    /// Encrypted attachments: key, digest, sizes and media type of each uploaded ciphertext.
    var attachments: [AttachmentPointer]?
}

extension HeliographClient {
    // MARK: Creating

    /// Creates an end-to-end encrypted private group with these members (by name). The server
    /// learns the members and nothing else: the membership is signed by this account's identity
    /// key, and the title reaches the members inside the pairwise-encrypted sender-key messages.
    public func createPrivateGroup(title: String, members usernames: [String]) async throws -> ChatID {
        let profile = self.profile
        let identity = try identityKeyPair
        var members = [
            MembershipChange.Member(account: profile.accountID, identityKey: identity.publicKey.rawBytes, role: .owner)
        ]
        for name in usernames {
            let trusted = try await trustedDevices(of: name)
            guard trusted.info.accountId != profile.accountID else { continue }
            members.append(
                MembershipChange.Member(account: trusted.info.accountId, identityKey: trusted.identity.rawBytes, role: .member))
        }
        let change = MembershipChange(
            chat: .random(), version: 1, previous: MembershipChange.genesisPrevious, action: .create, actor: profile.accountID,
            members: members, time: Date().millisecondsSince1970, title: nil)
        let signed = SignedMembershipChange.sign(change, with: identity)
        _ = try await call(
            .createChat, CreateChatRequest(kind: .privateGroup, title: "", membership: signed.bytes), as: ChatInfoResponse.self)
        try keyStore.update { state in
            var group = DeviceKeyState.GroupKeys()
            group.chain = [signed.bytes]
            group.chainPositions = [1]
            group.title = title
            state.groups = state.groups ?? [:]
            state.groups?[change.chat.description] = group
        }
        // The chain is known: the creation need not be taken in again.
        try keyStore.update { $0.groups?[change.chat.description]?.membershipPosition = 1 }
        try await ensureSenderKey(in: change.chat)
        return change.chat
    }

    /// Creates a public group (server-readable, moderated), optionally findable by `username`.
    public func createPublicGroup(title: String, username: String? = nil, slowModeSeconds: Int? = nil) async throws -> WireChat {
        try await call(
            .createChat,
            CreateChatRequest(kind: .publicGroup, title: title, username: username, slowModeSeconds: slowModeSeconds),
            as: ChatInfoResponse.self
        ).chat
    }

    /// Creates a broadcast channel, public by `username` or private (reached by invite link).
    public func createChannel(
        title: String, username: String? = nil, signPosts: Bool = false, hidesForwardOrigin: Bool = false
    ) async throws -> WireChat {
        try await call(
            .createChat,
            CreateChatRequest(
                kind: .channel, title: title, username: username, signPosts: signPosts, hidesForwardOrigin: hidesForwardOrigin),
            as: ChatInfoResponse.self
        ).chat
    }

    /// A chat's facts and this account's role.
    public func chatInfo(_ chat: ChatID) async throws -> ChatInfoResponse {
        try await call(.chatInfo, ChatRef(chatId: chat), as: ChatInfoResponse.self)
    }

    /// Joins a public chat by `@name` (with the `@`), or any chat by invite link or code.
    public func join(_ nameOrLink: String) async throws -> JoinChatResponse {
        let text = nameOrLink.trimmingCharacters(in: .whitespaces)
        // Names are written with their `@`: an invite code may look like a name.
        let request = text.hasPrefix("@") ? JoinChatRequest(username: text) : JoinChatRequest(invite: text)
        return try await call(.joinChat, request, as: JoinChatResponse.self)
    }

    // MARK: Membership

    /// Adds accounts: in a private group with a signed change (and this device's sender key for
    /// them), elsewhere through the server.
    public func addMembers(_ usernames: [String], to chat: ChatID) async throws {
        let info = try await chatInfo(chat).chat
        guard info.kind == .privateGroup else {
            _ = try await call(.addMembers, AddMembersRequest(chatId: chat, usernames: usernames), as: ChatInfoResponse.self)
            return
        }
        var members: [MembershipChange.Member] = []
        for name in usernames {
            let trusted = try await trustedDevices(of: name)
            members.append(
                MembershipChange.Member(account: trusted.info.accountId, identityKey: trusted.identity.rawBytes, role: .member))
        }
        try await changeGroup(chat, action: .add, members: members)
        try await ensureSenderKey(in: chat)
    }

    /// Removes a member. In a private group every remaining member's next post uses a new
    /// sender key, so the removed member reads nothing that follows.
    public func removeMember(_ username: String, from chat: ChatID) async throws {
        let info = try await chatInfo(chat).chat
        guard info.kind == .privateGroup else {
            _ = try await call(
                .removeMember, ChatMemberRequest(chatId: chat, username: username), as: ChatInfoResponse.self)
            return
        }
        let account = try await call(.lookupAccount, LookupAccountRequest(username: username), as: AccountInfo.self)
        let state = try await groupState(chat)
        guard let member = state.members[account.accountId] else {
            throw HeliographError(.notAMember, "\(username) is not a member of this group")
        }
        try await changeGroup(chat, action: .remove, members: [member])
        try await ensureSenderKey(in: chat)
    }

    /// Leaves a chat.
    public func leave(_ chat: ChatID) async throws {
        let info = try await chatInfo(chat).chat
        guard info.kind == .privateGroup else {
            _ = try await call(.leaveChat, ChatRef(chatId: chat), as: ChatInfoResponse.self)
            return
        }
        let state = try await groupState(chat)
        guard let me = state.members[profile.accountID] else {
            throw HeliographError(.notAMember, "you are not a member of this group")
        }
        try await changeGroup(chat, action: .leave, members: [me])
        _ = try keyStore.update { $0.groups?[chat.description] = nil }
    }

    /// Makes an account admin with `rights` (by name), or a member again with none.
    public func setAdmin(_ username: String, rights: [String], in chat: ChatID) async throws {
        let info = try await chatInfo(chat).chat
        guard info.kind == .privateGroup else {
            _ = try await call(
                .setAdmin, SetAdminRequest(chatId: chat, username: username, rights: rights), as: ChatInfoResponse.self)
            return
        }
        let account = try await call(.lookupAccount, LookupAccountRequest(username: username), as: AccountInfo.self)
        let state = try await groupState(chat)
        guard var member = state.members[account.accountId] else {
            throw HeliographError(.notAMember, "\(username) is not a member of this group")
        }
        member.rights = try AdminRights(names: rights)
        member.role = member.rights.isEmpty ? .member : .admin
        try await changeGroup(chat, action: .setRole, members: [member])
    }

    /// Signs and submits the next change of a private group, after bringing the chain up to date.
    private func changeGroup(
        _ chat: ChatID, action: MembershipChange.Action, members: [MembershipChange.Member]
    )
        async throws
    {
        let state = try await groupState(chat)
        let change = MembershipChange(
            chat: chat, version: state.version + 1, previous: state.hash, action: action, actor: profile.accountID,
            members: members, time: Date().millisecondsSince1970, title: nil)
        let signed = SignedMembershipChange.sign(change, with: try identityKeyPair)
        // Checked locally first: a change this device would refuse from others is not sent.
        var next = state
        try next.apply(signed)
        _ = try await call(
            .changeMembership, ChangeMembershipRequest(chatId: chat, change: signed.bytes), as: ChatInfoResponse.self)
        // Applied when the update comes back through the log (the chain stays in log order);
        // after leaving, the log is no longer readable and nothing is kept.
        if action != .leave { _ = try await groupState(chat) }
    }

    /// The verified membership of a private group, after taking in the membership changes the
    /// log added. Only membership changes are read here: the chat's position, and the posts
    /// after it, stay for ``syncChats(only:)`` to hand to the application.
    public func groupState(_ chat: ChatID) async throws -> GroupMembershipState {
        var after = try keyStore.read().groups?[chat.description]?.membershipPosition ?? 0
        while true {
            let page = try await call(
                .chatUpdates, ChatUpdatesRequest(chatId: chat, after: after, limit: 500), as: ChatUpdatesResponse.self)
            for update in page.updates where update.kind == .membership {
                _ = try acceptMembership(update, chat: chat)
            }
            after = page.updates.last?.seq ?? after
            let reached = after
            try keyStore.update { state in
                state.groups = state.groups ?? [:]
                var record = state.groups?[chat.description] ?? DeviceKeyState.GroupKeys()
                record.membershipPosition = max(record.membershipPosition ?? 0, reached)
                state.groups?[chat.description] = record
            }
            if page.updates.isEmpty || after >= page.lastSeq { break }
        }
        guard let chain = try keyStore.read().groups?[chat.description]?.chain, !chain.isEmpty else {
            throw HeliographError(.unknownChat, "this device holds no verified membership of group \(chat)")
        }
        return try Self.replay(chain)
    }

    static func replay(_ chain: [Data]) throws -> GroupMembershipState {
        var state = try GroupMembershipState.genesis(try SignedMembershipChange(bytes: chain[0]))
        for bytes in chain.dropFirst() { try state.apply(try SignedMembershipChange(bytes: bytes)) }
        return state
    }

    // MARK: Sender keys

    /// Makes sure every current member device holds this device's sender key for the group:
    /// a new key after a removal (or when a device that had it is gone), the current one for
    /// devices that lack it. Distribution goes over the pairwise sessions.
    func ensureSenderKey(in chat: ChatID, force: Bool = false) async throws {
        let state = try await groupState(chat)
        let profile = self.profile
        let group = try keyStore.read().groups?[chat.description] ?? DeviceKeyState.GroupKeys()
        let now = Date().millisecondsSince1970
        if !force, group.ownKey != nil, group.checkedVersion == state.version, now - group.checkedAt < 30_000 { return }
        // The member accounts' devices as their signed lists name them.
        let names = try await memberNames(chat)
        var devices: [String: [String]] = [:]
        for (account, member) in state.members {
            guard let name = names[account] else { continue }
            let trusted = try await trustedDevices(of: name)
            // The names are the server's word: a name must lead to the very account and identity
            // key the signed membership lists, or the key would go to someone else.
            guard trusted.info.accountId == account, trusted.identity.rawBytes == member.identityKey else {
                logger.notice(
                    "a group member's name leads to another account or key; it gets no sender key",
                    metadata: ["chat": "\(chat)", "account": "\(account)"])
                continue
            }
            devices[name] = trusted.targets(excluding: profile.deviceID).map {
                "\(trusted.info.accountId)/\($0.device)"
            }
        }
        let current = Set(devices.values.joined())
        var own = group.ownKey
        var recipients = Set(group.ownKeyRecipients)
        if own == nil || own!.epoch < state.removalVersion || !recipients.isSubset(of: current) {
            own = SenderKeyState.generate(chat: chat, epoch: state.version)
            recipients = []
        }
        let distribution = own!.distribution
        let title = group.title
        for (name, listed) in devices.sorted(by: { $0.key < $1.key }) where !Set(listed).isSubset(of: recipients) {
            try await sendEncrypted(
                text: "", control: GroupControl(chatId: chat, title: title, senderKey: distribution), to: name)
            recipients.formUnion(listed)
        }
        let key = own
        let given = recipients
        let version = state.version
        try keyStore.update { keys in
            keys.groups = keys.groups ?? [:]
            var record = keys.groups?[chat.description] ?? DeviceKeyState.GroupKeys()
            if record.ownKey?.keyID != key?.keyID { record.ownKey = key }
            record.ownKeyRecipients = given.sorted()
            record.checkedAt = now
            record.checkedVersion = version
            keys.groups?[chat.description] = record
        }
    }

    /// Checks the group's member devices now (rather than at most every 30 seconds before a
    /// post) and makes a new sender key if a device that had this device's key is gone: after a
    /// member revoked a device, the revoked device reads nothing that follows.
    public func refreshGroupKeys(_ chat: ChatID) async throws {
        try await ensureSenderKey(in: chat, force: true)
    }

    /// The id of this device's current sender key in the group, if it has one.
    public func senderKeyID(in chat: ChatID) throws -> UInt32? {
        try keyStore.read().groups?[chat.description]?.ownKey?.keyID
    }

    /// Account names of a chat's members, from the server's member list (the names are not in
    /// the signed chain; the accounts are, and only those are used).
    func memberNames(_ chat: ChatID) async throws -> [AccountID: String] {
        var names: [AccountID: String] = [:]
        var after: AccountID?
        repeat {
            let page = try await call(
                .chatMembers, ChatMembersRequest(chatId: chat, after: after, limit: 500), as: ChatMembersResponse.self)
            for member in page.members { names[member.accountId] = member.username }
            after = page.next
        } while after != nil
        return names
    }

    /// Records a sender key or title another member device sent over its pairwise session.
    func acceptGroupControl(_ control: GroupControl, from account: AccountID, device: DeviceID) throws {
        try keyStore.update { state in
            state.groups = state.groups ?? [:]
            var record = state.groups?[control.chatId.description] ?? DeviceKeyState.GroupKeys()
            if let title = control.title, record.title == nil || account != profile.accountID { record.title = title }
            if let distribution = control.senderKey, distribution.chatID == control.chatId,
                let received = try? SenderKeyState(receiving: distribution)
            {
                let key = "\(account)/\(device)/\(distribution.keyID)"
                if record.received[key] == nil { record.received[key] = received }
            }
            state.groups?[control.chatId.description] = record
        }
    }

    // MARK: Posting

    /// Posts text: encrypted with this device's sender key in a private group, as it is elsewhere.
    /// `attachments` (private groups only) are pointers to ciphertexts uploaded with purpose
    /// `encrypted` (see ``uploadAttachment(file:mediaType:thumbnail:progress:)``, or let
    /// ``postMedia(_:caption:in:mediaType:progress:)`` do both).
    @discardableResult
    public func post(
        _ text: String, to chat: ChatID, replyTo: Int64? = nil, messageID: MessageID = .random(),
        attachments: [AttachmentPointer]? = nil
    )
        async throws -> PostResponse
    {
        let kind = try await chatInfo(chat).chat.kind
        if kind == .privateGroup {
            var post = GroupPost(text: text, replyTo: replyTo, sentAt: Date().millisecondsSince1970)
            post.attachments = attachments
            return try await postEncrypted(post, to: chat, messageID: messageID)
        }
        guard attachments == nil else {
            throw HeliographError(
                .badRequest, "encrypted attachments go to private groups; public chats take media (postMedia)")
        }
        return try await call(
            .post, PostRequest(chatId: chat, messageId: messageID, text: text, replyTo: replyTo), as: PostResponse.self)
    }

    /// Edits a message (in a private group: an encrypted edit the members' clients apply).
    @discardableResult
    public func edit(_ seq: Int64, in chat: ChatID, text: String) async throws -> PostResponse {
        try await operate(chat, seq, op: "edit", text: text) {
            try await self.call(
                .editMessage, EditMessageRequest(chatId: chat, messageId: .random(), seq: seq, text: text), as: PostResponse.self)
        }
    }

    /// Deletes a message for everyone. In a private group the server cannot see the deletion,
    /// so for a post of this account's it is also told that the post's attachments are released.
    @discardableResult
    public func deleteMessage(_ seq: Int64, in chat: ChatID) async throws -> PostResponse {
        let response = try await operate(chat, seq, op: "delete") {
            try await self.call(
                .deleteMessage, MessageActionRequest(chatId: chat, messageId: .random(), seq: seq), as: PostResponse.self)
        }
        if try await chatInfo(chat).chat.kind == .privateGroup {
            let target = try await call(
                .chatUpdates, ChatUpdatesRequest(chatId: chat, after: seq - 1, limit: 1), as: ChatUpdatesResponse.self
            ).updates.first
            if let target, target.seq == seq, target.sender?.accountId == profile.accountID {
                try await releaseAttachments(of: target.messageId, in: chat)
            }
        }
        return response
    }

    /// Pins or unpins a message.
    @discardableResult
    public func pin(_ seq: Int64, in chat: ChatID, pinned: Bool = true) async throws -> PostResponse {
        try await operate(chat, seq, op: pinned ? "pin" : "unpin") {
            try await self.call(
                .pinMessage, MessageActionRequest(chatId: chat, messageId: .random(), seq: seq, pinned: pinned),
                as: PostResponse.self)
        }
    }

    /// Sets (or, with nil, withdraws) this account's reaction to a message.
    @discardableResult
    public func react(_ seq: Int64, in chat: ChatID, emoji: String?) async throws -> PostResponse {
        try await operate(chat, seq, op: "react", emoji: emoji) {
            try await self.call(
                .react, ReactRequest(chatId: chat, messageId: .random(), seq: seq, emoji: emoji), as: PostResponse.self)
        }
    }

    /// Forwards a message of a public chat to another chat.
    @discardableResult
    public func forward(_ seq: Int64, from source: ChatID, to chat: ChatID) async throws -> PostResponse {
        let kind = try await chatInfo(chat).chat.kind
        if kind == .privateGroup {
            // The server cannot put a message into encrypted content: the client copies it.
            let original = try await call(
                .chatHistory, ChatHistoryRequest(chatId: source, before: seq + 1, limit: 1), as: ChatHistoryResponse.self
            ).messages.first
            guard let original, original.update.seq == seq, let content = original.update.content else {
                throw HeliographError(.unknownMessage, "no readable message \(seq) to forward")
            }
            // The origin as the server would show it: hidden when the source channel hides itself.
            let sourceInfo = try await chatInfo(source).chat
            let origin =
                sourceInfo.hidesForwardOrigin
                ? ForwardOrigin(chatId: nil, title: nil, seq: nil, author: nil, hidden: true)
                : ForwardOrigin(
                    chatId: source, title: sourceInfo.title, seq: seq,
                    author: original.update.sender?.username ?? original.update.content?.signature, hidden: false)
            return try await postEncrypted(
                GroupPost(text: content.text, forward: content.forward ?? origin, sentAt: Date().millisecondsSince1970),
                to: chat, messageID: .random())
        }
        return try await call(
            .post, PostRequest(chatId: chat, messageId: .random(), forward: ForwardSource(chatId: source, seq: seq)),
            as: PostResponse.self)
    }

    private func operate(
        _ chat: ChatID, _ seq: Int64, op: String, text: String? = nil, emoji: String? = nil,
        server: () async throws -> PostResponse
    ) async throws -> PostResponse {
        guard try await chatInfo(chat).chat.kind == .privateGroup else { return try await server() }
        return try await postEncrypted(
            GroupPost(text: text, op: op, target: seq, emoji: emoji, sentAt: Date().millisecondsSince1970), to: chat,
            messageID: .random())
    }

    /// Encrypts a post with this device's sender key (after making sure the members hold it).
    private func postEncrypted(_ post: GroupPost, to chat: ChatID, messageID: MessageID) async throws -> PostResponse {
        try await ensureSenderKey(in: chat)
        let profile = self.profile
        let plaintext = try WireCodec.encode(post)
        let context = SenderKeyContext(chat: chat, senderAccount: profile.accountID, senderDevice: profile.deviceID)
        let (sealed, epoch) = try keyStore.update { state -> (SenderKeyMessage, Int64) in
            guard var own = state.groups?[chat.description]?.ownKey else {
                throw HeliographError(.staleSenderKey, "this device has no sender key for the group")
            }
            let message = try own.seal(plaintext, context: context)
            state.groups?[chat.description]?.ownKey = own
            var sent = state.groups?[chat.description]?.sent ?? [:]
            if sent.count >= 200, let oldest = sent.keys.sorted().first { sent[oldest] = nil }
            sent[messageID.rawValue] = plaintext
            state.groups?[chat.description]?.sent = sent
            return (message, own.epoch)
        }
        var request = PostRequest(chatId: chat, messageId: messageID, payload: sealed.bytes, keyEpoch: epoch)
        // The server may then let the members download the ciphertexts the post names.
        request.attachments = try post.attachments.map { try $0.map(Self.blobHash(of:)) }
        return try await call(.post, request, as: PostResponse.self)
    }

    // MARK: Reading

    /// Fetches, opens and acknowledges everything waiting in this device's inbox, without a
    /// receiving socket: what a device does before syncing its chats, so that sender keys sent
    /// over pairwise sessions are in place before the posts they open.
    public func processInbox() async throws -> [OpenedMessage] {
        var opened: [OpenedMessage] = []
        while true {
            let page = try await call(
                .fetchInbox, FetchInboxRequest(after: profile.lastAcknowledged, limit: 100), as: FetchInboxResponse.self)
            guard let last = page.envelopes.last else { return opened }
            for envelope in page.envelopes { opened.append(try await open(IncomingMessage(envelope))) }
            try await acknowledge(through: last.seq)
            _ = try await call(.ack, AckRequest(seq: last.seq), as: AckResponse.self)
        }
    }

    /// The account's chats, most recently active first.
    public func chatList() async throws -> [ChatSummary] {
        try await call(.chatList, EmptyBody(), as: ChatListResponse.self).chats
    }

    /// Recent messages of a chat, oldest first, in their current state (private groups:
    /// decrypted where this device holds the sender key).
    public func history(of chat: ChatID, limit: Int = 50) async throws -> [(event: ChatEvent, message: WireChatMessage)] {
        let info = try await chatInfo(chat).chat
        let messages = try await call(
            .chatHistory, ChatHistoryRequest(chatId: chat, limit: limit), as: ChatHistoryResponse.self
        ).messages
        var result: [(ChatEvent, WireChatMessage)] = []
        for message in messages.reversed() {
            result.append((try interpret(message.update, in: info), message))
        }
        return result
    }

    /// Marks a chat read up to `seq` on every device of the account.
    @discardableResult
    public func markRead(_ chat: ChatID, through seq: Int64) async throws -> Int64 {
        try await call(.markRead, MarkReadRequest(chatId: chat, seq: seq), as: ReadPositionResponse.self).readSeq
    }

    /// Fetches exactly what this device has not seen in its chats: asks the server which chats
    /// moved past the positions it holds, fetches each gap, and for a chat too far behind takes
    /// the latest history instead. Returns the updates in order per chat; positions are saved.
    public func syncChats(only: [ChatID]? = nil) async throws -> [ChatEvent] {
        let positions = (profile.chatPositions ?? [:]).reduce(into: [ChatID: Int64]()) { result, entry in
            if let id = ChatID(entry.key) { result[id] = entry.value }
        }
        var events: [ChatEvent] = []
        let states = try await call(.syncChats, SyncChatsRequest(positions: positions), as: SyncChatsResponse.self).chats
        for state in states where only.map({ $0.contains(state.chatId) }) ?? true {
            switch state.status {
            case "removed":
                try updateProfile { $0.chatPositions?[state.chatId.description] = nil }
            default:
                events += try await fetchGap(of: state.chatId, from: positions[state.chatId] ?? 0)
            }
        }
        return events
    }

    /// Fetches and interprets a chat's updates after `position`, saving the position as it goes.
    func fetchGap(of chat: ChatID, from position: Int64) async throws -> [ChatEvent] {
        let info = try await chatInfo(chat).chat
        var after = position
        var events: [ChatEvent] = []
        while true {
            let page = try await call(
                .chatUpdates, ChatUpdatesRequest(chatId: chat, after: after, limit: 500), as: ChatUpdatesResponse.self)
            if page.tooLong {
                // Too far behind: the latest history instead of an unbounded stream.
                let recent = try await call(
                    .chatHistory, ChatHistoryRequest(chatId: chat, limit: 50), as: ChatHistoryResponse.self
                ).messages
                for message in recent.reversed() { events.append(try interpret(message.update, in: info)) }
                after = page.lastSeq
                try savePosition(chat, after)
                break
            }
            for update in page.updates {
                events.append(try interpret(update, in: info))
                after = update.seq
            }
            try savePosition(chat, after)
            if page.updates.isEmpty || after >= page.lastSeq { break }
        }
        return events
    }

    /// Applies one pushed update if it continues exactly where this device is; otherwise (a gap,
    /// or something already seen) returns nil and the caller syncs.
    public func applyPushed(_ update: WireChatUpdate) async throws -> ChatEvent? {
        let position = profile.chatPositions?[update.chatId.description] ?? 0
        guard update.seq == position + 1 else { return nil }
        let info = try await chatInfo(update.chatId).chat
        let event = try interpret(update, in: info)
        try savePosition(update.chatId, update.seq)
        return event
    }

    private func savePosition(_ chat: ChatID, _ seq: Int64) throws {
        try updateProfile { profile in
            var positions = profile.chatPositions ?? [:]
            positions[chat.description] = max(positions[chat.description] ?? 0, seq)
            profile.chatPositions = positions
        }
    }

    /// Turns a wire update into an event: public ones as the server says; private ones
    /// verified (membership) or decrypted (posts), dropped with a reason when they fail.
    /// Membership changes are recorded only when they follow this device's chain.
    public func interpret(_ update: WireChatUpdate, in chat: WireChat) throws -> ChatEvent {
        var event = ChatEvent(
            chatID: chat.chatId, chatKind: chat.kind, chatTitle: chat.title, seq: update.seq, kind: update.kind,
            sender: update.sender?.username, senderAccount: update.sender?.accountId,
            serverTime: Date(millisecondsSince1970: update.serverTime), text: update.content?.text, target: update.target,
            replyTo: update.content?.replyTo, forward: update.content?.forward, emoji: update.emoji,
            signature: update.content?.signature, notice: update.notice.map(Self.describe), dropped: nil)
        event.media = update.content?.media
        guard chat.kind == .privateGroup else { return event }
        event.chatTitle = (try? keyStore.read().groups?[chat.chatId.description]?.title) ?? "private group"
        switch update.kind {
        case .membership:
            (event.notice, event.repeated) = try acceptMembership(update, chat: chat.chatId)
        case .message:
            guard let payload = update.payload, let sender = update.sender else {
                event.dropped = "the post has no ciphertext or sender"
                return event
            }
            do {
                let post = try openPost(
                    payload, messageID: update.messageId, chat: chat.chatId, sender: sender, sequence: update.seq)
                event.text = post.text
                event.replyTo = post.replyTo
                event.forward = post.forward
                event.emoji = post.emoji
                event.target = post.target
                event.attachments = post.attachments
                switch post.op {
                case "edit": event.kind = .edit
                case "delete": event.kind = .delete
                case "pin": event.kind = .pin
                case "unpin": event.kind = .unpin
                case "react": event.kind = .reaction
                default: break
                }
            } catch {
                event.dropped = "\(error)"
            }
        default:
            event.dropped = "a private group's log holds only posts and membership changes"
        }
        return event
    }

    /// Verifies a private group's membership change against the chain so far and records it;
    /// returns a description, or throws nothing and records nothing for a forged one (the
    /// description then says it was refused).
    private func acceptMembership(_ update: WireChatUpdate, chat: ChatID) throws -> (notice: String, repeated: Bool) {
        guard let bytes = update.payload, let signed = try? SignedMembershipChange(bytes: bytes) else {
            return ("refused a membership change that is not a signed change", false)
        }
        // Checked and recorded under the key file's lock: two processes of one profile (a
        // `listen` and a command) reading the same change record it once.
        let outcome = try keyStore.update { state -> Result<Void, HeliographError>? in
            state.groups = state.groups ?? [:]
            var record = state.groups?[chat.description] ?? DeviceKeyState.GroupKeys()
            if record.chain.contains(bytes) { return nil }
            do {
                if record.chain.isEmpty {
                    let first = try GroupMembershipState.genesis(signed)
                    // The creator's key must be the one this device knows for that account.
                    if let owner = first.owner, let recorded = state.contacts[owner.description]?.identityKey,
                        recorded != first.members[owner]?.identityKey
                    {
                        throw HeliographError(
                            .invalidMembershipChange, "the creation is signed with another key than the creator's known one")
                    }
                } else {
                    var next = try Self.replay(record.chain)
                    try next.apply(signed)
                }
            } catch let error as HeliographError {
                return .failure(error)
            }
            record.chain.append(bytes)
            record.chainPositions = (record.chainPositions ?? []) + [update.seq]
            state.groups?[chat.description] = record
            return .success(())
        }
        let change = signed.change
        switch outcome {
        case nil:
            return ("membership change \(change.version) (already known)", true)
        case .failure(let error)?:
            logger.notice("refused a membership change", metadata: ["chat": "\(chat)", "reason": "\(error)"])
            return ("refused a membership change: \(error.message)", false)
        case .success?:
            let contacts = (try? keyStore.read().contacts) ?? [:]
            let names = change.members.map { member in
                member.account == profile.accountID
                    ? "@\(profile.username)"
                    : contacts[member.account.description].map { "@\($0.username)" } ?? member.account.description
            }
            return ("\(change.action.rawValue) \(names.joined(separator: ", ")) (membership version \(change.version))", false)
        }
    }

    /// The membership as it stood just before log position `sequence`: a post is judged by the
    /// members and removals before it, not by later ones.
    static func membership(of record: DeviceKeyState.GroupKeys, before sequence: Int64) throws -> GroupMembershipState {
        let positions = record.chainPositions ?? []
        // Changes recorded without a position (the creator's own creation) count as first.
        let count = record.chain.indices.prefix { index in index >= positions.count || positions[index] < sequence }.count
        return try replay(Array(record.chain.prefix(max(count, 1))))
    }

    /// Decrypts a post with the sender device's sender key, after checking that the sender was a
    /// member by the verified chain when it posted and that the key is not older than the
    /// removals before the post. A post opened once is kept, so reading history again works
    /// (a sender-key chain only runs forward).
    private func openPost(
        _ payload: Data, messageID: MessageID, chat: ChatID, sender: WireSender, sequence: Int64
    ) throws
        -> GroupPost
    {
        let profile = self.profile
        let sealed = try SenderKeyMessage(bytes: payload)
        let record = try keyStore.read().groups?[chat.description]
        guard let record, !record.chain.isEmpty else {
            throw HeliographError(.unknownChat, "this device holds no verified membership of the group")
        }
        if sender.deviceId == profile.deviceID {
            guard let own = record.sent[messageID.rawValue] else {
                throw HeliographError(.unknownMessage, "an own post whose text this device no longer keeps")
            }
            return try WireCodec.decode(GroupPost.self, from: own)
        }
        let openedKey = "\(sequence)/\(messageID.rawValue)"
        if let kept = record.opened?[openedKey] { return try WireCodec.decode(GroupPost.self, from: kept) }
        let state = try Self.membership(of: record, before: sequence)
        guard state.members[sender.accountId] != nil else {
            throw HeliographError(.notAMember, "\(sender.username) was not a member by the signed membership")
        }
        guard sealed.epoch >= state.removalVersion else {
            throw HeliographError(.staleSenderKey, "the post uses a sender key from before a removal that preceded it")
        }
        let key = "\(sender.accountId)/\(sender.deviceId)/\(sealed.keyID)"
        let context = SenderKeyContext(chat: chat, senderAccount: sender.accountId, senderDevice: sender.deviceId)
        let plaintext = try keyStore.update { state -> Data in
            guard var chain = state.groups?[chat.description]?.received[key] else {
                throw HeliographError(.unknownMessage, "no sender key \(sealed.keyID) from this device (not received yet)")
            }
            let plaintext = try chain.open(sealed, context: context)
            state.groups?[chat.description]?.received[key] = chain
            var opened = state.groups?[chat.description]?.opened ?? [:]
            if opened.count >= Self.keptPosts, let oldest = opened.keys.min(by: Self.olderKept) { opened[oldest] = nil }
            opened[openedKey] = plaintext
            state.groups?[chat.description]?.opened = opened
            return plaintext
        }
        return try WireCodec.decode(GroupPost.self, from: plaintext)
    }

    /// Posts of others kept per group once opened.
    static let keptPosts = 1_000

    /// Orders kept posts by their log position (`SEQ/messageID`).
    static func olderKept(_ first: String, _ second: String) -> Bool {
        (Int64(first.prefix { $0 != "/" }) ?? 0) < (Int64(second.prefix { $0 != "/" }) ?? 0)
    }

    static func describe(_ notice: ChatNotice) -> String {
        let who = notice.username.map { "@\($0)" } ?? ""
        switch notice.action {
        case "role": return "\(who) is now \(notice.role?.rawValue ?? "member") \(notice.rights ?? [])"
        case "owner": return "\(who) is now the owner"
        case "info": return "chat info changed: \(notice.chat?.title ?? "")"
        default: return "\(who) \(notice.action)"
        }
    }
}
