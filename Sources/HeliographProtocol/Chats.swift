import Foundation
import HeliographCore

// Wire protocol v1 for groups and channels. Every request names its chat by `chatId`; the
// HTTP twins are listed in docs/protocol.md. Times are milliseconds since 1970.

/// A group or channel as members (or, for public ones, anyone) see it.
public struct WireChat: Codable, Sendable, Equatable {
    /// The chat id.
    public var chatId: ChatID
    /// `private_group`, `public_group` or `channel`.
    public var kind: ChatKind
    /// The title.
    public var title: String
    /// The description.
    public var about: String
    /// The public name, if the chat has one.
    public var username: String?
    /// Members (subscribers).
    public var memberCount: Int
    /// The sequence number of the latest update.
    public var lastSeq: Int64
    /// Slow mode in seconds (0: off).
    public var slowModeSeconds: Int
    /// Channels: posts are signed with the posting admin's name.
    public var signPosts: Bool
    /// Channels: forwards of posts do not name the channel.
    public var hidesForwardOrigin: Bool
    /// Private groups: the version of the signed membership chain.
    public var membershipVersion: Int64?
    /// Private groups: sender keys made before this membership version are refused.
    public var removalVersion: Int64?
    /// Creation time.
    public var createdAt: Int64

    /// Creates the value.
    public init(_ chat: Chat) {
        chatId = chat.id
        kind = chat.kind
        title = chat.title
        about = chat.about
        username = chat.username?.display
        memberCount = chat.memberCount
        lastSeq = chat.lastSequence
        slowModeSeconds = chat.slowModeSeconds
        signPosts = chat.signPosts
        hidesForwardOrigin = chat.hidesForwardOrigin
        membershipVersion = chat.kind == .privateGroup ? chat.membershipVersion : nil
        removalVersion = chat.kind == .privateGroup ? chat.removalVersion : nil
        createdAt = chat.createdAt.millisecondsSince1970
    }
}

/// One member as a member list shows it.
public struct WireMember: Codable, Sendable, Equatable {
    /// The account.
    public var accountId: AccountID
    /// Its name.
    public var username: String
    /// `owner`, `admin` or `member`.
    public var role: ChatRole
    /// Admin rights by name (empty for members).
    public var rights: [String]
    /// When it joined.
    public var joinedAt: Int64
    /// Creates the value.
    public init(accountId: AccountID, username: String, role: ChatRole, rights: [String], joinedAt: Int64) {
        self.accountId = accountId
        self.username = username
        self.role = role
        self.rights = rights
        self.joinedAt = joinedAt
    }
}

/// `createChat` — POST /v1/chats (201).
public struct CreateChatRequest: Codable, Sendable {
    /// What to create.
    public var kind: ChatKind
    /// The title, 1–128 characters.
    public var title: String
    /// A description, up to 1,024 characters.
    public var about: String?
    /// A public name (public groups and channels); without one the chat is reached by invite.
    public var username: String?
    /// Public groups: slow mode in seconds.
    public var slowModeSeconds: Int?
    /// Channels: sign posts with the admin's name.
    public var signPosts: Bool?
    /// Channels: hide the channel in forwards of its posts.
    public var hidesForwardOrigin: Bool?
    /// Public groups: accounts to add at once, by name.
    public var members: [String]?
    /// Private groups: the creator's signed creation of the membership chain (version 1),
    /// listing the creator as owner and the first members with their identity keys.
    public var membership: Data?
    /// Creates the request.
    public init(
        kind: ChatKind, title: String, about: String? = nil, username: String? = nil, slowModeSeconds: Int? = nil,
        signPosts: Bool? = nil, hidesForwardOrigin: Bool? = nil, members: [String]? = nil, membership: Data? = nil
    ) {
        self.kind = kind
        self.title = title
        self.about = about
        self.username = username
        self.slowModeSeconds = slowModeSeconds
        self.signPosts = signPosts
        self.hidesForwardOrigin = hidesForwardOrigin
        self.members = members
        self.membership = membership
    }
}

/// A request naming only a chat: `chatInfo`, `leaveChat`, `listInvites`, `joinRequests`.
public struct ChatRef: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// Creates the request.
    public init(chatId: ChatID) { self.chatId = chatId }
}

/// `chatInfo` answer, and the answer of most membership operations.
public struct ChatInfoResponse: Codable, Sendable, Equatable {
    /// The chat.
    public var chat: WireChat
    /// The caller's role, if it is a member.
    public var role: ChatRole?
    /// The caller's rights, if it is a member.
    public var rights: [String]?
    /// Creates the value.
    public init(chat: WireChat, role: ChatRole?, rights: [String]?) {
        self.chat = chat
        self.role = role
        self.rights = rights
    }
}

/// `updateChat` — PATCH /v1/chats/{id}: fields left out stay as they are.
public struct UpdateChatRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// A new title.
    public var title: String?
    /// A new description.
    public var about: String?
    /// A new public name; the empty string removes it (the chat is then reached by invite).
    public var username: String?
    /// Slow mode in seconds (public groups).
    public var slowModeSeconds: Int?
    /// Channels: sign posts.
    public var signPosts: Bool?
    /// Channels: hide the channel in forwards.
    public var hidesForwardOrigin: Bool?
    /// Creates the request.
    public init(
        chatId: ChatID, title: String? = nil, about: String? = nil, username: String? = nil, slowModeSeconds: Int? = nil,
        signPosts: Bool? = nil, hidesForwardOrigin: Bool? = nil
    ) {
        self.chatId = chatId
        self.title = title
        self.about = about
        self.username = username
        self.slowModeSeconds = slowModeSeconds
        self.signPosts = signPosts
        self.hidesForwardOrigin = hidesForwardOrigin
    }
}

/// `searchChats` — GET /v1/chats/search?q=WORDS&limit=N: public groups and channels.
public struct SearchChatsRequest: Codable, Sendable {
    /// Words the title must contain, or the start of a public name.
    public var query: String
    /// At most this many (1–50, default 20).
    public var limit: Int?
    /// Creates the request.
    public init(query: String, limit: Int? = nil) {
        self.query = query
        self.limit = limit
    }
}

/// A list of chats.
public struct ChatsResponse: Codable, Sendable {
    /// The chats.
    public var chats: [WireChat]
    /// Creates the value.
    public init(chats: [WireChat]) { self.chats = chats }
}

/// `resolveChat` — GET /v1/chats/by-name/{username}: a public chat by its name.
public struct ResolveChatRequest: Codable, Sendable {
    /// The chat's public name (a leading `@` is accepted).
    public var username: String
    /// Creates the request.
    public init(username: String) { self.username = username }
}

/// `chatMembers` — GET /v1/chats/{id}/members?after=ID&limit=N&admins=true: one page.
public struct ChatMembersRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The last account id of the previous page.
    public var after: AccountID?
    /// At most this many (1–500, default 100).
    public var limit: Int?
    /// Only the owner and admins (what channel subscribers may see).
    public var admins: Bool?
    /// Creates the request.
    public init(chatId: ChatID, after: AccountID? = nil, limit: Int? = nil, admins: Bool? = nil) {
        self.chatId = chatId
        self.after = after
        self.limit = limit
        self.admins = admins
    }
}

/// One page of members.
public struct ChatMembersResponse: Codable, Sendable {
    /// The members, by account id.
    public var members: [WireMember]
    /// Pass as `after` for the next page; nil on the last page.
    public var next: AccountID?
    /// Creates the value.
    public init(members: [WireMember], next: AccountID?) {
        self.members = members
        self.next = next
    }
}

/// `addMembers` — POST /v1/chats/{id}/members (public groups and channels).
public struct AddMembersRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// Accounts to add, by name.
    public var usernames: [String]
    /// Creates the request.
    public init(chatId: ChatID, usernames: [String]) {
        self.chatId = chatId
        self.usernames = usernames
    }
}

/// `removeMember`, `unbanMember`, `transferOwnership`: a chat and an account.
public struct ChatMemberRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The account, by name.
    public var username: String
    /// Creates the request.
    public init(chatId: ChatID, username: String) {
        self.chatId = chatId
        self.username = username
    }
}

/// `banMember` — POST /v1/chats/{id}/bans.
public struct BanMemberRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The account, by name.
    public var username: String
    /// When the ban ends (ms); absent: until lifted.
    public var until: Int64?
    /// Creates the request.
    public init(chatId: ChatID, username: String, until: Int64? = nil) {
        self.chatId = chatId
        self.username = username
        self.until = until
    }
}

/// `setAdmin` — PUT /v1/chats/{id}/admins/{username}: rights by name; none makes a member again.
public struct SetAdminRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The account, by name.
    public var username: String
    /// The rights (see docs/protocol.md); empty demotes.
    public var rights: [String]
    /// Creates the request.
    public init(chatId: ChatID, username: String, rights: [String]) {
        self.chatId = chatId
        self.username = username
        self.rights = rights
    }
}

/// `changeMembership` — POST /v1/chats/{id}/membership: a private group's next signed change.
public struct ChangeMembershipRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The signed change (see HeliographCrypto's `SignedMembershipChange`).
    public var change: Data
    /// Creates the request.
    public init(chatId: ChatID, change: Data) {
        self.chatId = chatId
        self.change = change
    }
}

/// `joinChat` — POST /v1/chats/join: by public name or by invite link.
public struct JoinChatRequest: Codable, Sendable {
    /// A public chat's name.
    public var username: String?
    /// An invite link's code (or the whole link).
    public var invite: String?
    /// Creates the request.
    public init(username: String? = nil, invite: String? = nil) {
        self.username = username
        self.invite = invite
    }
}

/// The result of a join.
public struct JoinChatResponse: Codable, Sendable {
    /// The chat joined (or asked to join).
    public var chat: WireChat
    /// True when the link needs an admin's approval: the join waits.
    public var pending: Bool
    /// Creates the value.
    public init(chat: WireChat, pending: Bool) {
        self.chat = chat
        self.pending = pending
    }
}

/// `createInvite` — POST /v1/chats/{id}/invites.
public struct CreateInviteRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// Expiry (ms); absent: never.
    public var expiresAt: Int64?
    /// How many joins; absent: no limit.
    public var usageLimit: Int?
    /// Whether joins wait for an admin's approval.
    public var requiresApproval: Bool?
    /// Creates the request.
    public init(chatId: ChatID, expiresAt: Int64? = nil, usageLimit: Int? = nil, requiresApproval: Bool? = nil) {
        self.chatId = chatId
        self.expiresAt = expiresAt
        self.usageLimit = usageLimit
        self.requiresApproval = requiresApproval
    }
}

/// An invite link.
public struct WireInvite: Codable, Sendable, Equatable {
    /// The code; the link is `heliograph:join/<code>` or the server's `/join/<code>`.
    public var code: String
    /// The chat.
    public var chatId: ChatID
    /// Expiry (ms).
    public var expiresAt: Int64?
    /// The use limit.
    public var usageLimit: Int?
    /// Uses so far.
    public var uses: Int
    /// Whether joins wait for approval.
    public var requiresApproval: Bool
    /// Revocation time (ms), if revoked.
    public var revokedAt: Int64?
    /// Creates the value.
    public init(_ invite: ChatInvite) {
        code = invite.code
        chatId = invite.chatID
        expiresAt = invite.expiresAt?.millisecondsSince1970
        usageLimit = invite.usageLimit
        uses = invite.uses
        requiresApproval = invite.requiresApproval
        revokedAt = invite.revokedAt?.millisecondsSince1970
    }
}

/// `revokeInvite` — DELETE /v1/chats/{id}/invites/{code}.
public struct InviteRef: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The code.
    public var code: String
    /// Creates the request.
    public init(chatId: ChatID, code: String) {
        self.chatId = chatId
        self.code = code
    }
}

/// `listInvites` answer.
public struct InvitesResponse: Codable, Sendable {
    /// The links, newest first.
    public var invites: [WireInvite]
    /// Creates the value.
    public init(invites: [WireInvite]) { self.invites = invites }
}

/// A pending join request.
public struct WireJoinRequest: Codable, Sendable, Equatable {
    /// Who asks.
    public var accountId: AccountID
    /// Its name.
    public var username: String
    /// When (ms).
    public var requestedAt: Int64
    /// Creates the value.
    public init(accountId: AccountID, username: String, requestedAt: Int64) {
        self.accountId = accountId
        self.username = username
        self.requestedAt = requestedAt
    }
}

/// `joinRequests` answer.
public struct JoinRequestsResponse: Codable, Sendable {
    /// Oldest first.
    public var requests: [WireJoinRequest]
    /// Creates the value.
    public init(requests: [WireJoinRequest]) { self.requests = requests }
}

/// `decideJoinRequest` — POST /v1/chats/{id}/requests/{username}.
public struct DecideJoinRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// Who asked.
    public var username: String
    /// Let in (true) or decline.
    public var approve: Bool
    /// Creates the request.
    public init(chatId: ChatID, username: String, approve: Bool) {
        self.chatId = chatId
        self.username = username
        self.approve = approve
    }
}

/// Where a forwarded message came from, as the forward shows it.
public struct ForwardOrigin: Codable, Sendable, Equatable {
    /// The chat, unless it hides itself in forwards (or was a private chat).
    public var chatId: ChatID?
    /// The chat's title at the time, unless hidden.
    public var title: String?
    /// The message's position there, unless hidden.
    public var seq: Int64?
    /// The original author's name, when known and not hidden.
    public var author: String?
    /// True when the origin chose to hide itself.
    public var hidden: Bool
    /// Creates the value.
    public init(chatId: ChatID?, title: String?, seq: Int64?, author: String?, hidden: Bool) {
        self.chatId = chatId
        self.title = title
        self.seq = seq
        self.author = author
        self.hidden = hidden
    }
}

/// The content of a message in a public chat, as the server stores and serves it.
public struct ChatContent: Codable, Sendable, Equatable {
    /// The text.
    public var text: String
    /// The message replied to (its sequence number in the same chat).
    public var replyTo: Int64?
    /// Where it was forwarded from.
    public var forward: ForwardOrigin?
    /// Channels with signatures: the posting admin's name.
    public var signature: String?
    /// Photos, videos and files, as the server checked them.
    public var media: [PublicMedia]?
    /// Creates the value.
    public init(text: String, replyTo: Int64? = nil, forward: ForwardOrigin? = nil, signature: String? = nil) {
        self.text = text
        self.replyTo = replyTo
        self.forward = forward
        self.signature = signature
    }
}

/// A membership or settings change in a public chat, as its log shows it.
public struct ChatNotice: Codable, Sendable, Equatable {
    /// `joined`, `left`, `added`, `removed`, `banned`, `role`, `owner` or `info`.
    public var action: String
    /// The account concerned, if any.
    public var account: AccountID?
    /// Its name.
    public var username: String?
    /// Roles: the new role.
    public var role: ChatRole?
    /// Roles: the new rights.
    public var rights: [String]?
    /// Info changes: the chat after the change.
    public var chat: WireChat?
    /// Creates the value.
    public init(
        action: String, account: AccountID? = nil, username: String? = nil, role: ChatRole? = nil, rights: [String]? = nil,
        chat: WireChat? = nil
    ) {
        self.action = action
        self.account = account
        self.username = username
        self.role = role
        self.rights = rights
        self.chat = chat
    }
}

/// What a public chat's log entry holds, stored as JSON in the log's payload.
public struct PublicUpdateBody: Codable, Sendable, Equatable {
    /// Messages and edits.
    public var content: ChatContent?
    /// Reactions: the emoji set, absent when withdrawn.
    public var emoji: String?
    /// Membership and settings changes.
    public var notice: ChatNotice?
    /// Creates the value.
    public init(content: ChatContent? = nil, emoji: String? = nil, notice: ChatNotice? = nil) {
        self.content = content
        self.emoji = emoji
        self.notice = notice
    }
}

/// One entry of a chat's log on the wire.
public struct WireChatUpdate: Codable, Sendable, Equatable {
    /// The chat.
    public var chatId: ChatID
    /// Its position in the chat's log.
    public var seq: Int64
    /// What it is.
    public var kind: ChatUpdateKind
    /// The sender's idempotency key.
    public var messageId: MessageID
    /// Who made it; absent in channels (subscribers and posting admins are not shown).
    public var sender: WireSender?
    /// Acceptance time (ms).
    public var serverTime: Int64
    /// The message acted on (edits, deletions, pins, reactions).
    public var target: Int64?
    /// Public chats: the message or edit.
    public var content: ChatContent?
    /// Public chats: a reaction's emoji (absent when withdrawn).
    public var emoji: String?
    /// Public chats: a membership or settings change.
    public var notice: ChatNotice?
    /// Private groups: the sender-key ciphertext, or the signed membership change.
    public var payload: Data?
    /// Creates the value.
    public init(
        chatId: ChatID, seq: Int64, kind: ChatUpdateKind, messageId: MessageID, sender: WireSender?, serverTime: Int64,
        target: Int64? = nil, content: ChatContent? = nil, emoji: String? = nil, notice: ChatNotice? = nil,
        payload: Data? = nil
    ) {
        self.chatId = chatId
        self.seq = seq
        self.kind = kind
        self.messageId = messageId
        self.sender = sender
        self.serverTime = serverTime
        self.target = target
        self.content = content
        self.emoji = emoji
        self.notice = notice
        self.payload = payload
    }
}

/// A message in its current state on the wire (history).
public struct WireChatMessage: Codable, Sendable, Equatable {
    /// The update that posted it.
    public var update: WireChatUpdate
    /// Last edit (ms).
    public var editedAt: Int64?
    /// Deleted for everyone.
    public var deleted: Bool
    /// Pinned.
    public var pinned: Bool
    /// Accounts that viewed it.
    public var views: Int
    /// Reaction counts by emoji.
    public var reactions: [String: Int]
    /// Creates the value.
    public init(
        update: WireChatUpdate, editedAt: Int64?, deleted: Bool, pinned: Bool, views: Int, reactions: [String: Int]
    ) {
        self.update = update
        self.editedAt = editedAt
        self.deleted = deleted
        self.pinned = pinned
        self.views = views
        self.reactions = reactions
    }
}

/// `post` — POST /v1/chats/{id}/messages: a new message.
///
/// Public chats take `text` (with `replyTo` or `forward`); private groups take `payload`, the
/// sender-key ciphertext, with `keyEpoch`, the membership version its sender key was made at.
public struct PostRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The idempotency key.
    public var messageId: MessageID
    /// Public chats: the text.
    public var text: String?
    /// Public chats: the message replied to.
    public var replyTo: Int64?
    /// Public chats: forward this message of a chat the caller can read (text is then ignored).
    public var forward: ForwardSource?
    /// Private groups: the ciphertext.
    public var payload: Data?
    /// Private groups: the membership version of the sender key used.
    public var keyEpoch: Int64?
    /// Public chats: media uploaded with purpose `public` (text is then an optional caption).
    public var media: [MediaReference]?
    /// Private groups: the attachment ciphertexts the post refers to, so members may download them.
    public var attachments: [BlobHash]?
    /// Creates the request.
    public init(
        chatId: ChatID, messageId: MessageID, text: String? = nil, replyTo: Int64? = nil, forward: ForwardSource? = nil,
        payload: Data? = nil, keyEpoch: Int64? = nil, media: [MediaReference]? = nil, attachments: [BlobHash]? = nil
    ) {
        self.chatId = chatId
        self.messageId = messageId
        self.text = text
        self.replyTo = replyTo
        self.forward = forward
        self.payload = payload
        self.keyEpoch = keyEpoch
        self.media = media
        self.attachments = attachments
    }
}

/// The message a forward copies.
public struct ForwardSource: Codable, Sendable, Equatable {
    /// Its chat.
    public var chatId: ChatID
    /// Its position.
    public var seq: Int64
    /// Creates the value.
    public init(chatId: ChatID, seq: Int64) {
        self.chatId = chatId
        self.seq = seq
    }
}

/// The acknowledgement of a post or message operation, after the commit.
public struct PostResponse: Codable, Sendable, Equatable {
    /// The chat.
    public var chatId: ChatID
    /// The update's position in the chat's log.
    public var seq: Int64
    /// Acceptance time (ms), the same on a retry.
    public var serverTime: Int64
    /// Whether this repeated an accepted request.
    public var duplicate: Bool
    /// Creates the value.
    public init(chatId: ChatID, seq: Int64, serverTime: Int64, duplicate: Bool) {
        self.chatId = chatId
        self.seq = seq
        self.serverTime = serverTime
        self.duplicate = duplicate
    }
}

/// `editMessage` — PUT /v1/chats/{id}/messages/{seq} (public chats).
public struct EditMessageRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The idempotency key of the edit.
    public var messageId: MessageID
    /// The message.
    public var seq: Int64
    /// The new text.
    public var text: String
    /// Creates the request.
    public init(chatId: ChatID, messageId: MessageID, seq: Int64, text: String) {
        self.chatId = chatId
        self.messageId = messageId
        self.seq = seq
        self.text = text
    }
}

/// `deleteMessage` — DELETE /v1/chats/{id}/messages/{seq}, and `pinMessage` (with `pinned`).
public struct MessageActionRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The idempotency key of the action.
    public var messageId: MessageID
    /// The message.
    public var seq: Int64
    /// `pinMessage`: pin (true, the default) or unpin.
    public var pinned: Bool?
    /// Creates the request.
    public init(chatId: ChatID, messageId: MessageID, seq: Int64, pinned: Bool? = nil) {
        self.chatId = chatId
        self.messageId = messageId
        self.seq = seq
        self.pinned = pinned
    }
}

/// `react` — PUT /v1/chats/{id}/messages/{seq}/reaction: one of the fixed emoji, or none.
public struct ReactRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The idempotency key.
    public var messageId: MessageID
    /// The message.
    public var seq: Int64
    /// The emoji (see docs/protocol.md for the set); absent withdraws the caller's reaction.
    public var emoji: String?
    /// Creates the request.
    public init(chatId: ChatID, messageId: MessageID, seq: Int64, emoji: String?) {
        self.chatId = chatId
        self.messageId = messageId
        self.seq = seq
        self.emoji = emoji
    }
}

/// `chatHistory` — GET /v1/chats/{id}/messages?before=N&limit=M: messages, newest first.
public struct ChatHistoryRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// Only messages below this position; absent: from the latest.
    public var before: Int64?
    /// At most this many (1–200, default 50).
    public var limit: Int?
    /// Creates the request.
    public init(chatId: ChatID, before: Int64? = nil, limit: Int? = nil) {
        self.chatId = chatId
        self.before = before
        self.limit = limit
    }
}

/// A page of history.
public struct ChatHistoryResponse: Codable, Sendable {
    /// Newest first.
    public var messages: [WireChatMessage]
    /// Creates the value.
    public init(messages: [WireChatMessage]) { self.messages = messages }
}

/// `chatUpdates` — GET /v1/chats/{id}/updates?after=N&limit=M: the log after a position.
public struct ChatUpdatesRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The position the device holds.
    public var after: Int64
    /// At most this many (1–500, default 100).
    public var limit: Int?
    /// Creates the request.
    public init(chatId: ChatID, after: Int64, limit: Int? = nil) {
        self.chatId = chatId
        self.after = after
        self.limit = limit
    }
}

/// The updates after a position, or "too long".
public struct ChatUpdatesResponse: Codable, Sendable {
    /// In order.
    public var updates: [WireChatUpdate]
    /// The chat's latest position.
    public var lastSeq: Int64
    /// True when `after` is further behind than the server streams: fetch the history instead
    /// (`chatHistory`) and continue from `lastSeq`. `updates` is then empty.
    public var tooLong: Bool
    /// Creates the value.
    public init(updates: [WireChatUpdate], lastSeq: Int64, tooLong: Bool) {
        self.updates = updates
        self.lastSeq = lastSeq
        self.tooLong = tooLong
    }
}

/// One chat of the chat list.
public struct ChatSummary: Codable, Sendable, Equatable {
    /// The chat.
    public var chat: WireChat
    /// The caller's role.
    public var role: ChatRole
    /// The latest message.
    public var lastMessage: WireChatMessage?
    /// Messages after the read position, not the caller's own (counted up to 1,000).
    public var unread: Int
    /// The account's read position.
    public var readSeq: Int64
    /// Whether the account muted it.
    public var muted: Bool
    /// Creates the value.
    public init(chat: WireChat, role: ChatRole, lastMessage: WireChatMessage?, unread: Int, readSeq: Int64, muted: Bool) {
        self.chat = chat
        self.role = role
        self.lastMessage = lastMessage
        self.unread = unread
        self.readSeq = readSeq
        self.muted = muted
    }
}

/// `chatList` — GET /v1/chats: the caller's chats, most recently active first.
public struct ChatListResponse: Codable, Sendable {
    /// The chats.
    public var chats: [ChatSummary]
    /// Creates the value.
    public init(chats: [ChatSummary]) { self.chats = chats }
}

/// `syncChats` — POST /v1/chats/sync: the positions a device holds, after a reconnect.
public struct SyncChatsRequest: Codable, Sendable {
    /// Chat id to the last sequence number the device holds.
    public var positions: [String: Int64]
    /// Creates the request.
    public init(positions: [ChatID: Int64]) {
        self.positions = Dictionary(uniqueKeysWithValues: positions.map { ($0.key.description, $0.value) })
    }
}

/// What a device must do for one chat.
public struct ChatSyncState: Codable, Sendable, Equatable {
    /// The chat.
    public var chatId: ChatID
    /// `news` (fetch the updates after your position), `too_long` (fetch the history and
    /// continue from `lastSeq`) or `removed` (you are no longer a member).
    public var status: String
    /// The chat's latest position.
    public var lastSeq: Int64
    /// The account's read position.
    public var readSeq: Int64
    /// Creates the value.
    public init(chatId: ChatID, status: String, lastSeq: Int64, readSeq: Int64) {
        self.chatId = chatId
        self.status = status
        self.lastSeq = lastSeq
        self.readSeq = readSeq
    }
}

/// The chats with news (chats without are left out).
public struct SyncChatsResponse: Codable, Sendable {
    /// One entry per chat that needs something.
    public var chats: [ChatSyncState]
    /// Creates the value.
    public init(chats: [ChatSyncState]) { self.chats = chats }
}

/// `markRead` — POST /v1/chats/{id}/read: everything up to `seq` is read, on every device.
public struct MarkReadRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The position read.
    public var seq: Int64
    /// Creates the request.
    public init(chatId: ChatID, seq: Int64) {
        self.chatId = chatId
        self.seq = seq
    }
}

/// The read position after `markRead`.
public struct ReadPositionResponse: Codable, Sendable, Equatable {
    /// The chat.
    public var chatId: ChatID
    /// The account's read position now.
    public var readSeq: Int64
    /// Creates the value.
    public init(chatId: ChatID, readSeq: Int64) {
        self.chatId = chatId
        self.readSeq = readSeq
    }
}

/// `muteChat` — PUT /v1/chats/{id}/mute.
public struct MuteChatRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// Mute or unmute.
    public var muted: Bool
    /// Creates the request.
    public init(chatId: ChatID, muted: Bool) {
        self.chatId = chatId
        self.muted = muted
    }
}

/// `recordViews` — POST /v1/chats/{id}/views: the caller saw these messages.
public struct RecordViewsRequest: Codable, Sendable {
    /// The chat.
    public var chatId: ChatID
    /// The messages seen (at most 100).
    public var seqs: [Int64]
    /// Creates the request.
    public init(chatId: ChatID, seqs: [Int64]) {
        self.chatId = chatId
        self.seqs = seqs
    }
}

/// View counts after `recordViews`.
public struct ViewsResponse: Codable, Sendable {
    /// Sequence number (as text) to views.
    public var views: [String: Int]
    /// Creates the value.
    public init(views: [Int64: Int]) {
        self.views = Dictionary(uniqueKeysWithValues: views.map { (String($0.key), $0.value) })
    }
}

/// A pushed update of a chat the socket's account is a member of.
public struct ChatUpdateFrame: Codable, Sendable {
    /// Always `chatUpdate`.
    public var type: ServerFrameType = .chatUpdate
    /// The update.
    public var update: WireChatUpdate
    /// Creates the frame.
    public init(update: WireChatUpdate) { self.update = update }
}

/// A pushed change of the account's read position in a chat (made on another device).
public struct ReadPositionFrame: Codable, Sendable {
    /// Always `readPosition`.
    public var type: ServerFrameType = .readPosition
    /// The chat.
    public var chatId: ChatID
    /// The read position.
    public var readSeq: Int64
    /// Creates the frame.
    public init(chatId: ChatID, readSeq: Int64) {
        self.chatId = chatId
        self.readSeq = readSeq
    }
}

/// Pushed when the server dropped chat updates for this socket (it read too slowly): run
/// `syncChats` and fetch the gaps.
public struct ChatsChangedFrame: Codable, Sendable {
    /// Always `chatsChanged`.
    public var type: ServerFrameType = .chatsChanged
    /// Creates the frame.
    public init() {}
}
