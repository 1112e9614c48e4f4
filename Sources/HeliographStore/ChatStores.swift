import Foundation
import HeliographCore

// Groups and channels: the chats themselves with their members, bans and invite links
// (``ChatStore``), and each chat's numbered log of updates (``ChatLogStore``). A message is
// stored once whatever the member count; a member's read state is one number in its
// membership row. Both backends pass ChatConformanceTests.

/// A chat with the caller's membership of it, for the chat list.
public struct ChatMembership: Sendable, Equatable {
    /// The chat.
    public var chat: Chat
    /// The account's membership.
    public var member: ChatMember

    /// Creates the value.
    public init(chat: Chat, member: ChatMember) {
        self.chat = chat
        self.member = member
    }
}

/// Groups and channels, their members, bans, invite links and join requests.
public protocol ChatStore: Sendable {
    /// Stores a new chat with its first members (the owner among them; `memberCount` is set
    /// from them) and, when given, its first log update (a private group's signed creation) as
    /// sequence 1. Throws `username_taken` when another chat holds the public name
    /// (case-insensitively).
    func create(_ chat: Chat, members: [ChatMember], firstUpdate: NewChatUpdate?) async throws
    /// The chat with this id, if any.
    func chat(id: ChatID) async throws -> Chat?
    /// The chat with this public name (case-insensitive), if any.
    func chat(username: Username) async throws -> Chat?
    /// Replaces title, description, public name, slow mode, signatures and the forward setting
    /// with `chat`'s (other fields are ignored); returns the stored chat, or nil when unknown.
    /// Throws `username_taken` when another chat holds the new name.
    func updateInfo(_ chat: Chat) async throws -> Chat?
    /// Chats with a public name whose title contains every word of `words` (case-insensitive,
    /// ASCII case folding at least), or whose name starts with the single word given; most
    /// members first, then by id; at most `limit`.
    func search(words: [String], limit: Int) async throws -> [Chat]

    /// The account's membership of the chat, if it is a member.
    func member(of chatID: ChatID, account: AccountID) async throws -> ChatMember?
    /// A page of members ordered by account id (its lower-case text): those after `after`
    /// (nil: from the start), restricted to `roles` when given, at most `limit`.
    func members(of chatID: ChatID, after: AccountID?, roles: Set<ChatRole>?, limit: Int) async throws -> [ChatMember]
    /// Every chat the account is a member of, with its membership, most recently active first
    /// (highest `lastSequence`… then by id), at most `limit`.
    func memberships(of accountID: AccountID, limit: Int) async throws -> [ChatMembership]
    /// Raises the account's read position in the chat to `sequence` (never lowers it) and
    /// returns the position now stored. Throws `not_a_member`, or `ack_out_of_range` for a
    /// sequence above the chat's last one or below 0.
    func markRead(_ chatID: ChatID, account: AccountID, through sequence: Int64) async throws -> Int64
    /// Sets the account's mute flag; throws `not_a_member`.
    func setMuted(_ chatID: ChatID, account: AccountID, muted: Bool) async throws

    /// The ban of the account in the chat, if one is stored (expired or not).
    func ban(in chatID: ChatID, account: AccountID) async throws -> ChatBan?
    /// Lifts a ban; returns whether one was stored.
    func unban(in chatID: ChatID, account: AccountID) async throws -> Bool

    /// Stores a new invite link.
    func insertInvite(_ invite: ChatInvite) async throws
    /// The invite with this code, if any.
    func invite(code: String) async throws -> ChatInvite?
    /// The chat's invite links, revoked ones included, newest first.
    func invites(of chatID: ChatID) async throws -> [ChatInvite]
    /// Revokes an invite of the chat (keeping the first revocation time); returns it, or nil
    /// when the chat has no such code.
    func revokeInvite(code: String, of chatID: ChatID, at time: Date) async throws -> ChatInvite?
    /// Counts one use of an invite, atomically: refused with `invite_revoked`, `invite_expired`
    /// or `invite_used_up` (see ``ChatInvite/refusal(at:)``) and then changes nothing; two
    /// concurrent uses of a link with one use left: exactly one succeeds. Throws
    /// `unknown_chat` for an unknown code. Returns the invite after the use.
    func useInvite(code: String, at time: Date) async throws -> ChatInvite

    /// Stores a join request (replacing an earlier one of the same account for the chat).
    func insertJoinRequest(_ request: JoinRequest) async throws
    /// The chat's join requests, oldest first, at most `limit`.
    func joinRequests(of chatID: ChatID, limit: Int) async throws -> [JoinRequest]
    /// Removes and returns the account's join request, if there is one.
    func removeJoinRequest(of chatID: ChatID, account: AccountID) async throws -> JoinRequest?
}

/// Each chat's log: numbered updates, appended once, read from a position.
public protocol ChatLogStore: Sendable {
    /// Appends an update with the chat's next sequence number and applies its effects, all in
    /// one transaction; nothing changes when any part is refused. Throws `unknown_chat` for an
    /// unknown chat, the codes named in ``ChatEffect`` and ``NewChatUpdate``, and
    /// `unknown_message` when an effect's target is not a message of the chat (or, for edits,
    /// reactions and pins, was deleted). A repeat of an earlier append (same chat, sender device
    /// and message id) changes nothing and returns the first receipt marked `duplicate`.
    func append(_ update: NewChatUpdate) async throws -> ChatUpdateReceipt
    /// The updates with a sequence number above `after`, in order, at most `limit`.
    func updates(of chatID: ChatID, after: Int64, limit: Int) async throws -> [ChatUpdate]
    /// Messages (updates of kind `message`) in their current state, newest first: those below
    /// `before` (nil: from the latest), at most `limit`. Deleted messages are included, blank.
    func messages(of chatID: ChatID, before: Int64?, limit: Int) async throws -> [ChatMessage]
    /// The message with this sequence number in its current state, if it is a message.
    func message(of chatID: ChatID, sequence: Int64) async throws -> ChatMessage?
    /// Counts one view per account of each listed message; views already counted are not
    /// counted again. Returns the view counts after, by sequence number (unknown ones omitted).
    func recordViews(of chatID: ChatID, sequences: [Int64], by accountID: AccountID) async throws -> [Int64: Int]
    /// How many messages (kind `message`, not deleted, not sent by `account`) lie above
    /// `after`, counting at most `cap`.
    func unreadCount(of chatID: ChatID, after: Int64, excluding accountID: AccountID, cap: Int) async throws -> Int
}
