import Crypto
import Foundation
import HeliographCore
import HeliographProtocol
import HeliographStore

/// Posting, message operations, history, the chat list and sync.
extension ChatService {
    /// The longest text of a public message, in Unicode scalars.
    static let maximumTextLength = 4_096
    /// The most views one request records.
    static let maximumViewsPerRequest = 100

    // MARK: Posting

    /// `post`: commits the message once with the chat's next sequence number, acknowledges, and
    /// hands it to the sockets of online members; the acknowledgement never waits for the push.
    public func post(_ request: PostRequest, by caller: AuthenticatedDevice) async throws -> PostResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try postLimiter.take(caller.accountID.description, what: "posts")
        let now = clock.now().wholeMilliseconds
        var update = NewChatUpdate(
            chatID: chat.id, kind: .message, messageID: request.messageId, sender: sender(caller), serverTime: now,
            payload: Data())
        switch chat.kind {
        case .privateGroup:
            guard let payload = request.payload, request.text == nil, request.forward == nil, request.replyTo == nil,
                request.media == nil
            else {
                throw HeliographError(
                    .badRequest,
                    "a private group takes only 'payload' (sender-key ciphertext; replies and forwards travel inside it), "
                        + "'keyEpoch' and 'attachments'"
                )
            }
            guard payload.count <= configuration.maxEnvelopeBytes else {
                throw HeliographError(
                    .payloadTooLarge, "the payload is \(payload.count) bytes; the limit is \(configuration.maxEnvelopeBytes)")
            }
            guard let epoch = request.keyEpoch else {
                throw HeliographError(.badRequest, "'keyEpoch' (the membership version of your sender key) is missing")
            }
            // A key made before the latest removal is one the removed member holds.
            guard epoch >= chat.removalVersion, epoch <= chat.membershipVersion else {
                throw HeliographError(
                    .staleSenderKey,
                    "your sender key is from membership version \(epoch), but members were removed at version "
                        + "\(chat.removalVersion): make a new sender key and distribute it")
            }
            update.payload = payload
            if let attachments = request.attachments {
                // Before the post is stored, so an acknowledged post never names a blob nothing keeps.
                try await media.attach(attachments, toPostOf: request.messageId, in: chat.id, by: caller)
            }
        case .publicGroup, .channel:
            guard request.payload == nil, request.keyEpoch == nil, request.attachments == nil else {
                throw HeliographError(
                    .badRequest,
                    "'payload', 'keyEpoch' and 'attachments' are for private groups; send 'text' and public 'media'")
            }
            if chat.kind == .channel { try require(.post, of: member, to: "post in this channel") }
            var content: ChatContent
            if let source = request.forward {
                content = try await forwardedContent(source, for: caller)
                if let media = content.media {
                    try await self.media.attachForwarded(
                        media, toPostOf: request.messageId, in: chat.id, by: caller.accountID)
                }
            } else if let references = request.media, !references.isEmpty {
                // Media with an optional caption.
                let caption = try request.text.flatMap { $0.isEmpty ? nil : $0 }.map(Self.checkedText) ?? ""
                content = ChatContent(text: caption)
                content.media = try await media.attachPublicMedia(
                    references, toPostOf: request.messageId, in: chat.id, by: caller)
            } else {
                guard let text = request.text else { throw HeliographError(.badRequest, "'text' is missing") }
                content = ChatContent(text: try Self.checkedText(text))
            }
            if let reply = request.replyTo {
                guard try await storage.chatLog.message(of: chat.id, sequence: reply) != nil else {
                    throw HeliographError(.unknownMessage, "this chat has no message \(reply) to reply to")
                }
                content.replyTo = reply
            }
            if chat.kind == .channel, chat.signPosts { content.signature = caller.username.display }
            update.payload = try WireCodec.encode(PublicUpdateBody(content: content))
            // Admins are not slowed down.
            if chat.kind == .publicGroup, member.role == .member { update.slowModeSeconds = chat.slowModeSeconds }
        }
        update.contentHash = Data(SHA256.hash(data: update.payload))
        let namesBlobs = request.attachments?.isEmpty == false || request.media?.isEmpty == false
        do {
            return try await commit(update, in: chat)
        } catch let error as HeliographError where namesBlobs && error.code != .idempotencyConflict {
            // The post was refused (slow mode, say): the references made for it go after the
            // grace period. A conflict is left alone: the stored post with this id holds them.
            try? await media.releasePost(of: request.messageId, by: caller.accountID, in: chat.id)
            throw error
        }
    }

    /// `editMessage`: one's own message, or anyone's with `edit_others` (public chats).
    public func edit(_ request: EditMessageRequest, by caller: AuthenticatedDevice) async throws -> PostResponse {
        let (chat, member, message) = try await target(request.chatId, request.seq, caller, "edit")
        if message.update.sender.accountID != caller.accountID {
            try require(.editOthers, of: member, to: "edit someone else's message")
        } else if chat.kind == .channel {
            try require(.post, of: member, to: "edit posts")
        }
        var content =
            (try? WireCodec.decode(PublicUpdateBody.self, from: message.update.payload))?.content ?? ChatContent(text: "")
        content.text = try Self.checkedText(request.text)
        let update = NewChatUpdate(
            chatID: chat.id, kind: .edit, messageID: request.messageId, sender: sender(caller),
            serverTime: clock.now().wholeMilliseconds, target: request.seq,
            payload: try WireCodec.encode(PublicUpdateBody(content: content)), effects: [.edit(target: request.seq)])
        return try await commit(hashed(update), in: chat)
    }

    /// `deleteMessage`: one's own message, or anyone's with `delete`, for everyone.
    public func delete(_ request: MessageActionRequest, by caller: AuthenticatedDevice) async throws -> PostResponse {
        let (chat, member, message) = try await target(request.chatId, request.seq, caller, "delete")
        if message.update.sender.accountID != caller.accountID || chat.kind == .channel {
            try require(.delete, of: member, to: "delete someone else's message")
        }
        let update = NewChatUpdate(
            chatID: chat.id, kind: .delete, messageID: request.messageId, sender: sender(caller),
            serverTime: clock.now().wholeMilliseconds, target: request.seq, payload: Data(),
            effects: [.delete(target: request.seq)])
        let response = try await commit(hashed(update), in: chat)
        // The deleted post no longer holds its media (after the grace period). A crash right
        // here keeps the blob longer than needed, never loses one.
        try await media.releasePost(of: message.update.messageID, by: message.update.sender.accountID, in: chat.id)
        return response
    }

    /// `pinMessage`: pin or unpin; needs `pin`.
    public func pin(_ request: MessageActionRequest, by caller: AuthenticatedDevice) async throws -> PostResponse {
        let (chat, member, _) = try await target(request.chatId, request.seq, caller, "pin")
        try require(.pin, of: member, to: "pin messages")
        let pinned = request.pinned ?? true
        let update = NewChatUpdate(
            chatID: chat.id, kind: pinned ? .pin : .unpin, messageID: request.messageId, sender: sender(caller),
            serverTime: clock.now().wholeMilliseconds, target: request.seq, payload: Data(),
            effects: [.pin(target: request.seq, pinned: pinned)])
        return try await commit(hashed(update), in: chat)
    }

    /// `react`: sets (or withdraws) the caller's one reaction to a message.
    public func react(_ request: ReactRequest, by caller: AuthenticatedDevice) async throws -> PostResponse {
        let (chat, _, _) = try await target(request.chatId, request.seq, caller, "react to")
        if let emoji = request.emoji, !ChatMessage.reactionEmoji.contains(emoji) {
            throw HeliographError(
                .badRequest, "reactions are one of " + ChatMessage.reactionEmoji.joined(separator: " ") + ", not \(emoji)")
        }
        let update = NewChatUpdate(
            chatID: chat.id, kind: .reaction, messageID: request.messageId, sender: sender(caller),
            serverTime: clock.now().wholeMilliseconds, target: request.seq,
            payload: try WireCodec.encode(PublicUpdateBody(emoji: request.emoji)),
            effects: [.react(target: request.seq, account: caller.accountID, emoji: request.emoji)])
        return try await commit(hashed(update), in: chat)
    }

    /// The chat, the caller's membership and the message an operation acts on. Operations on
    /// private groups travel encrypted inside posts, so the server refuses them here.
    private func target(
        _ chatID: ChatID, _ sequence: Int64, _ caller: AuthenticatedDevice, _ what: String
    ) async throws
        -> (Chat, ChatMember, ChatMessage)
    {
        let (chat, member) = try await memberChat(chatID, caller)
        guard chat.kind.serverReadable else {
            throw HeliographError(
                .badRequest, "in a private group, \(what) a message with an encrypted post; the server cannot read it")
        }
        try postLimiter.take(caller.accountID.description, what: "posts")
        guard let message = try await storage.chatLog.message(of: chat.id, sequence: sequence), !message.deleted else {
            throw HeliographError(.unknownMessage, "this chat has no message \(sequence)")
        }
        return (chat, member, message)
    }

    /// The content of a forward: the source's text, with its origin unless the source hides it.
    private func forwardedContent(_ source: ForwardSource, for caller: AuthenticatedDevice) async throws -> ChatContent {
        let (origin, _) = try await visibleChat(source.chatId, to: caller)
        guard origin.kind.serverReadable else {
            throw HeliographError(
                .badRequest, "messages of a private group are forwarded by the client, re-encrypted, not by the server")
        }
        guard let message = try await storage.chatLog.message(of: origin.id, sequence: source.seq), !message.deleted,
            let original = (try? WireCodec.decode(PublicUpdateBody.self, from: message.update.payload))?.content
        else {
            throw HeliographError(.unknownMessage, "the chat has no message \(source.seq) to forward")
        }
        // A forward of a forward names the first origin.
        let forward =
            original.forward
            ?? (origin.hidesForwardOrigin
                ? ForwardOrigin(chatId: nil, title: nil, seq: nil, author: nil, hidden: true)
                : ForwardOrigin(
                    chatId: origin.id, title: origin.title, seq: source.seq,
                    author: origin.kind == .channel ? original.signature : message.update.sender.username.display,
                    hidden: false))
        var content = ChatContent(text: original.text, forward: forward)
        content.media = original.media
        return content
    }

    /// Appends, then pushes to this node's sockets. A duplicate is answered with the first
    /// receipt and not pushed again.
    private func commit(_ update: NewChatUpdate, in chat: Chat) async throws -> PostResponse {
        let receipt = try await storage.chatLog.append(update)
        if !receipt.duplicate { try publish(update, receipt: receipt, in: chat) }
        return PostResponse(
            chatId: chat.id, seq: receipt.sequence, serverTime: receipt.serverTime.millisecondsSince1970,
            duplicate: receipt.duplicate)
    }

    private func hashed(_ update: NewChatUpdate) -> NewChatUpdate {
        var update = update
        var digest = SHA256()
        digest.update(data: Data(update.kind.rawValue.utf8))
        digest.update(data: Data(String(update.target ?? 0).utf8))
        digest.update(data: update.payload)
        update.contentHash = Data(digest.finalize())
        return update
    }

    /// Encodes a committed update once and hands it to every socket on this node following the chat.
    func publish(_ update: NewChatUpdate, receipt: ChatUpdateReceipt, in chat: Chat) throws {
        let stored = ChatUpdate(
            chatID: update.chatID, sequence: receipt.sequence, kind: update.kind, messageID: update.messageID,
            sender: update.sender, serverTime: receipt.serverTime, target: update.target, payload: update.payload)
        let frame = String(
            decoding: try WireCodec.encode(ChatUpdateFrame(update: Self.wire(stored, in: chat.kind))), as: UTF8.self)
        fanout.publish(chat.id, sequence: receipt.sequence, frame: frame)
    }

    /// The wire form of a stored update: public content decoded, private payload as it is, and
    /// no sender in channels (neither posting admins nor reacting subscribers are shown).
    static func wire(_ update: ChatUpdate, in kind: ChatKind) -> WireChatUpdate {
        var wire = WireChatUpdate(
            chatId: update.chatID, seq: update.sequence, kind: update.kind, messageId: update.messageID,
            sender: kind == .channel
                ? nil
                : WireSender(
                    accountId: update.sender.accountID, username: update.sender.username.display,
                    deviceId: update.sender.deviceID),
            serverTime: update.serverTime.millisecondsSince1970, target: update.target)
        if kind.serverReadable {
            if let body = try? WireCodec.decode(PublicUpdateBody.self, from: update.payload) {
                wire.content = body.content
                wire.emoji = body.emoji
                wire.notice = body.notice
            }
        } else if !update.payload.isEmpty {
            wire.payload = update.payload
        }
        return wire
    }

    static func wire(_ message: ChatMessage, in kind: ChatKind) -> WireChatMessage {
        WireChatMessage(
            update: wire(message.update, in: kind), editedAt: message.editedAt?.millisecondsSince1970,
            deleted: message.deleted, pinned: message.pinned, views: message.views, reactions: message.reactions)
    }

    static func checkedText(_ text: String) throws(HeliographError) -> String {
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw HeliographError(.badRequest, "the text is empty")
        }
        guard text.unicodeScalars.count <= maximumTextLength else {
            throw HeliographError(
                .payloadTooLarge, "the text has \(text.unicodeScalars.count) characters; the limit is \(maximumTextLength)")
        }
        return text
    }

    // MARK: Reading

    /// `chatHistory`: messages in their current state, newest first.
    public func history(_ request: ChatHistoryRequest, for caller: AuthenticatedDevice) async throws -> ChatHistoryResponse {
        let (chat, _) = try await visibleChat(request.chatId, to: caller)
        let limit = request.limit ?? 50
        guard (1...200).contains(limit) else { throw HeliographError(.badRequest, "limit must be 1-200, not \(limit)") }
        if let before = request.before, before < 1 {
            throw HeliographError(.badRequest, "before must be at least 1, not \(before)")
        }
        let messages = try await storage.chatLog.messages(of: chat.id, before: request.before, limit: limit)
        return ChatHistoryResponse(messages: messages.map { Self.wire($0, in: chat.kind) })
    }

    /// `chatUpdates`: the log after a position, or "too long" past the configured gap limit.
    public func updates(_ request: ChatUpdatesRequest, for caller: AuthenticatedDevice) async throws -> ChatUpdatesResponse {
        let (chat, _) = try await visibleChat(request.chatId, to: caller)
        let limit = request.limit ?? 100
        guard (1...500).contains(limit) else { throw HeliographError(.badRequest, "limit must be 1-500, not \(limit)") }
        guard request.after >= 0 else { throw HeliographError(.badRequest, "after must not be negative") }
        guard request.after <= chat.lastSequence else {
            throw HeliographError(
                .ackOutOfRange, "after is \(request.after) but the chat's latest position is \(chat.lastSequence)")
        }
        // A private group's members must see every membership change to check the signed
        // chain, so its log is never cut short; its size is bounded by its members' posts.
        if chat.kind != .privateGroup, chat.lastSequence - request.after > Int64(configuration.chatGapLimit) {
            return ChatUpdatesResponse(updates: [], lastSeq: chat.lastSequence, tooLong: true)
        }
        let updates = try await storage.chatLog.updates(of: chat.id, after: request.after, limit: limit)
        return ChatUpdatesResponse(
            updates: updates.map { Self.wire($0, in: chat.kind) }, lastSeq: chat.lastSequence, tooLong: false)
    }

    /// `chatList`: the caller's chats, most recently active first.
    public func list(for caller: AuthenticatedDevice) async throws -> ChatListResponse {
        var summaries: [ChatSummary] = []
        for membership in try await storage.chats.memberships(of: caller.accountID, limit: Self.maximumChatList) {
            let chat = membership.chat
            let last = try await storage.chatLog.messages(of: chat.id, before: nil, limit: 1).first
            let unread = try await storage.chatLog.unreadCount(
                of: chat.id, after: membership.member.readSequence, excluding: caller.accountID, cap: 1_000)
            summaries.append(
                ChatSummary(
                    chat: WireChat(chat), role: membership.member.role, lastMessage: last.map { Self.wire($0, in: chat.kind) },
                    unread: unread, readSeq: membership.member.readSequence, muted: membership.member.muted))
        }
        return ChatListResponse(chats: summaries)
    }

    /// The most chats the chat list and sync consider.
    static let maximumChatList = 2_000

    /// `syncChats`: for the positions a device holds, the chats with news (fetch the gap), too
    /// far behind (refetch), or left (forget). Chats joined since appear with news from 0.
    public func sync(_ request: SyncChatsRequest, for caller: AuthenticatedDevice) async throws -> SyncChatsResponse {
        guard request.positions.count <= Self.maximumChatList else {
            throw HeliographError(.badRequest, "at most \(Self.maximumChatList) positions")
        }
        var positions: [ChatID: Int64] = [:]
        for (key, value) in request.positions {
            guard let id = ChatID(key) else { throw HeliographError(.badRequest, "'\(key)' is not a chat id") }
            guard value >= 0 else { throw HeliographError(.badRequest, "the position of \(key) is negative") }
            positions[id] = value
        }
        var states: [ChatSyncState] = []
        var seen: Set<ChatID> = []
        for membership in try await storage.chats.memberships(of: caller.accountID, limit: Self.maximumChatList) {
            let chat = membership.chat
            seen.insert(chat.id)
            let held = positions[chat.id] ?? 0
            guard chat.lastSequence > held else { continue }
            let status =
                chat.kind != .privateGroup && chat.lastSequence - held > Int64(configuration.chatGapLimit) ? "too_long" : "news"
            states.append(
                ChatSyncState(
                    chatId: chat.id, status: status, lastSeq: chat.lastSequence, readSeq: membership.member.readSequence))
        }
        for (id, _) in positions where !seen.contains(id) {
            states.append(ChatSyncState(chatId: id, status: "removed", lastSeq: 0, readSeq: 0))
        }
        return SyncChatsResponse(chats: states)
    }

    /// `markRead`: moves the account's read position; its other devices get it pushed.
    public func markRead(_ request: MarkReadRequest, by caller: AuthenticatedDevice) async throws -> ReadPositionResponse {
        let (chat, _) = try await memberChat(request.chatId, caller)
        let position = try await storage.chats.markRead(chat.id, account: caller.accountID, through: request.seq)
        let frame = String(
            decoding: try WireCodec.encode(ReadPositionFrame(chatId: chat.id, readSeq: position)), as: UTF8.self)
        fanout.publish(toAccount: caller.accountID, excluding: caller.deviceID, frame: frame)
        return ReadPositionResponse(chatId: chat.id, readSeq: position)
    }

    /// `muteChat`.
    public func mute(_ request: MuteChatRequest, by caller: AuthenticatedDevice) async throws -> ChatInfoResponse {
        let (chat, member) = try await memberChat(request.chatId, caller)
        try await storage.chats.setMuted(chat.id, account: caller.accountID, muted: request.muted)
        return ChatInfoResponse(chat: WireChat(chat), role: member.role, rights: member.rights.nameList)
    }

    /// `recordViews`: counts each message once per account.
    public func recordViews(_ request: RecordViewsRequest, by caller: AuthenticatedDevice) async throws -> ViewsResponse {
        let (chat, _) = try await visibleChat(request.chatId, to: caller)
        guard !request.seqs.isEmpty, request.seqs.count <= Self.maximumViewsPerRequest else {
            throw HeliographError(.badRequest, "name 1-\(Self.maximumViewsPerRequest) messages")
        }
        return ViewsResponse(
            views: try await storage.chatLog.recordViews(of: chat.id, sequences: request.seqs, by: caller.accountID))
    }

    // MARK: Other nodes

    /// A chat's log grew through another node: pushes what followed the last push here to this
    /// node's followers. A push is a hint with data: a device that misses one fetches the gap.
    func relayGrowth(of chats: [ChatID]) async throws {
        for id in chats {
            let (followers, published) = fanout.followers(of: id)
            guard followers > 0, let chat = try await storage.chats.chat(id: id) else { continue }
            let from = max(published ?? (chat.lastSequence - 1), chat.lastSequence - Int64(Self.relayWindow))
            for update in try await storage.chatLog.updates(of: id, after: max(0, from), limit: Self.relayWindow) {
                let frame = String(
                    decoding: try WireCodec.encode(ChatUpdateFrame(update: Self.wire(update, in: chat.kind))), as: UTF8.self)
                fanout.publish(id, sequence: update.sequence, frame: frame)
            }
        }
    }

    /// Updates relayed at most per wake-up and chat; a longer gap is fetched by the devices.
    static let relayWindow = 100

    /// Accounts joined or left a chat through another node: their sockets here follow suit.
    func relayMemberships(_ chat: ChatID, _ accounts: [AccountID]) async throws {
        for account in fanout.connected(accounts) {
            let isMember = try await storage.chats.member(of: chat, account: account) != nil
            fanout.setMember(account, of: chat, isMember)
        }
    }
}
