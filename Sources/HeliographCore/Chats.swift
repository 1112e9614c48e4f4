import Foundation

/// The stable identifier of a group or channel.
public struct ChatID: UUIDIdentifier {
    public let rawValue: UUID
    public init(_ rawValue: UUID) { self.rawValue = rawValue }
}

/// The three kinds of chat besides one-to-one conversations.
public enum ChatKind: String, Codable, Sendable, CaseIterable {
    /// End-to-end encrypted with sender keys; the server sees members and ciphertext only.
    case privateGroup = "private_group"
    /// Server-readable, moderated, history on the server.
    case publicGroup = "public_group"
    /// Broadcast: admins post, subscribers read and cannot see each other.
    case channel

    /// Whether the server can read (and so moderate and apply operations to) the content.
    public var serverReadable: Bool { self != .privateGroup }

    /// The most members the kind allows; nil for no limit.
    public var memberLimit: Int? {
        switch self {
        case .privateGroup: 1_000
        case .publicGroup: 200_000
        case .channel: nil
        }
    }
}

/// A member's standing in a chat.
public enum ChatRole: String, Codable, Sendable, CaseIterable {
    /// The one account that owns the chat: every right, and only it can transfer ownership.
    case owner
    /// An account with some of the ``AdminRights``.
    case admin
    /// A member (in channels: a subscriber).
    case member
}

/// What an admin may do. The owner has every right; members have none (in groups they may
/// still post their own messages, edit and delete them, react).
public struct AdminRights: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Post in a channel.
    public static let post = AdminRights(rawValue: 1 << 0)
    /// Edit other people's messages.
    public static let editOthers = AdminRights(rawValue: 1 << 1)
    /// Delete other people's messages.
    public static let delete = AdminRights(rawValue: 1 << 2)
    /// Ban and unban members, remove them.
    public static let ban = AdminRights(rawValue: 1 << 3)
    /// Add members, make and revoke invite links, decide join requests.
    public static let invite = AdminRights(rawValue: 1 << 4)
    /// Pin and unpin messages.
    public static let pin = AdminRights(rawValue: 1 << 5)
    /// Appoint, change and dismiss admins (never with more rights than one's own).
    public static let manageAdmins = AdminRights(rawValue: 1 << 6)
    /// Change title, description, public name, slow mode and signatures.
    public static let changeInfo = AdminRights(rawValue: 1 << 7)

    /// Every right.
    public static let all: AdminRights = [.post, .editOthers, .delete, .ban, .invite, .pin, .manageAdmins, .changeInfo]

    /// The wire names, in a fixed order.
    public static let names: [(AdminRights, String)] = [
        (.post, "post"), (.editOthers, "edit_others"), (.delete, "delete"), (.ban, "ban"), (.invite, "invite"),
        (.pin, "pin"), (.manageAdmins, "manage_admins"), (.changeInfo, "change_info"),
    ]

    /// The names of the rights set, in the fixed order.
    public var nameList: [String] { Self.names.filter { contains($0.0) }.map(\.1) }

    /// Rights from wire names; throws `bad_request` naming an unknown one.
    public init(names: [String]) throws(HeliographError) {
        var rights: AdminRights = []
        for name in names {
            guard let right = Self.names.first(where: { $0.1 == name })?.0 else {
                throw HeliographError(
                    .badRequest, "unknown right '\(name)'; rights are " + Self.names.map(\.1).joined(separator: ", "))
            }
            rights.insert(right)
        }
        self = rights
    }
}

/// A group or channel as the server keeps it.
public struct Chat: Sendable, Equatable {
    /// The stable id.
    public var id: ChatID
    /// The kind; fixed at creation.
    public var kind: ChatKind
    /// The title, 1–128 characters.
    public var title: String
    /// A description, up to 1,024 characters.
    public var about: String
    /// The public name (`@name`), unique among chats; nil for a chat reached by invite only.
    /// Private groups never have one.
    public var username: Username?
    /// When it was created.
    public var createdAt: Date
    /// Seconds a member must wait between two posts (public groups); 0 for none.
    public var slowModeSeconds: Int
    /// Channels: posts carry the posting admin's name.
    public var signPosts: Bool
    /// Channels: forwards of its posts do not name it.
    public var hidesForwardOrigin: Bool
    /// How many members (subscribers) it has.
    public var memberCount: Int
    /// The sequence number of its latest update (0 before the first).
    public var lastSequence: Int64
    /// Private groups: the version of the signed membership chain (1 after creation).
    public var membershipVersion: Int64
    /// Private groups: the membership version of the latest removal. Sender keys made before it
    /// are stale: the removed member holds them.
    public var removalVersion: Int64

    /// Creates a chat value.
    public init(
        id: ChatID, kind: ChatKind, title: String, about: String = "", username: Username? = nil, createdAt: Date,
        slowModeSeconds: Int = 0, signPosts: Bool = false, hidesForwardOrigin: Bool = false, memberCount: Int = 0,
        lastSequence: Int64 = 0, membershipVersion: Int64 = 0, removalVersion: Int64 = 0
    ) {
        self.id = id
        self.kind = kind
        self.title = title
        self.about = about
        self.username = username
        self.createdAt = createdAt
        self.slowModeSeconds = slowModeSeconds
        self.signPosts = signPosts
        self.hidesForwardOrigin = hidesForwardOrigin
        self.memberCount = memberCount
        self.lastSequence = lastSequence
        self.membershipVersion = membershipVersion
        self.removalVersion = removalVersion
    }

    /// The longest title, in Unicode scalars.
    public static let maximumTitleLength = 128
    /// The longest description, in Unicode scalars.
    public static let maximumAboutLength = 1_024
    /// The longest slow-mode interval: one day.
    public static let maximumSlowModeSeconds = 86_400
}

/// One account's membership of a chat.
public struct ChatMember: Sendable, Equatable {
    /// The chat.
    public var chatID: ChatID
    /// The member.
    public var accountID: AccountID
    /// Owner, admin or member.
    public var role: ChatRole
    /// Admin rights (every right for the owner, none for members).
    public var rights: AdminRights
    /// When the account joined.
    public var joinedAt: Date
    /// The account's read position: every update up to it is read, on all its devices.
    public var readSequence: Int64
    /// Whether the account muted the chat.
    public var muted: Bool
    /// The time of the member's latest post, for slow mode.
    public var lastPostAt: Date?

    /// Creates a membership.
    public init(
        chatID: ChatID, accountID: AccountID, role: ChatRole, rights: AdminRights = [], joinedAt: Date,
        readSequence: Int64 = 0, muted: Bool = false, lastPostAt: Date? = nil
    ) {
        self.chatID = chatID
        self.accountID = accountID
        self.role = role
        self.rights = role == .owner ? .all : (role == .member ? [] : rights)
        self.joinedAt = joinedAt
        self.readSequence = readSequence
        self.muted = muted
        self.lastPostAt = lastPostAt
    }

    /// Whether the member holds `right` (the owner holds all).
    public func has(_ right: AdminRights) -> Bool { role == .owner || rights.isSuperset(of: right) }
}

/// A ban: the account is out and cannot join again until it ends.
public struct ChatBan: Sendable, Equatable {
    /// The chat.
    public var chatID: ChatID
    /// The banned account.
    public var accountID: AccountID
    /// Who banned it.
    public var bannedBy: AccountID
    /// When.
    public var bannedAt: Date
    /// When it ends by itself; nil for a ban until lifted.
    public var until: Date?

    /// Creates a ban.
    public init(chatID: ChatID, accountID: AccountID, bannedBy: AccountID, bannedAt: Date, until: Date?) {
        self.chatID = chatID
        self.accountID = accountID
        self.bannedBy = bannedBy
        self.bannedAt = bannedAt
        self.until = until
    }

    /// Whether the ban holds at `time`.
    public func isActive(at time: Date) -> Bool { until.map { $0 > time } ?? true }
}

/// An invite link: revocable, with an optional expiry, use limit and admin approval.
public struct ChatInvite: Sendable, Equatable {
    /// The secret part of the link (22 characters of base64url).
    public var code: String
    /// The chat it opens.
    public var chatID: ChatID
    /// The admin who made it.
    public var createdBy: AccountID
    /// When.
    public var createdAt: Date
    /// After this it opens nothing; nil for never.
    public var expiresAt: Date?
    /// How many joins it allows; nil for no limit.
    public var usageLimit: Int?
    /// How many joins (or join requests) it has been used for.
    public var uses: Int
    /// Whether a join through it waits for an admin's approval.
    public var requiresApproval: Bool
    /// When it was revoked, if it was.
    public var revokedAt: Date?

    /// Creates an invite.
    public init(
        code: String, chatID: ChatID, createdBy: AccountID, createdAt: Date, expiresAt: Date? = nil, usageLimit: Int? = nil,
        uses: Int = 0, requiresApproval: Bool = false, revokedAt: Date? = nil
    ) {
        self.code = code
        self.chatID = chatID
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.usageLimit = usageLimit
        self.uses = uses
        self.requiresApproval = requiresApproval
        self.revokedAt = revokedAt
    }

    /// Why the invite opens nothing at `time`, or nil when it is good.
    public func refusal(at time: Date) -> HeliographError? {
        if revokedAt != nil { return HeliographError(.inviteRevoked, "this invite link was revoked") }
        if let expiresAt, expiresAt <= time { return HeliographError(.inviteExpired, "this invite link has expired") }
        if let usageLimit, uses >= usageLimit {
            return HeliographError(.inviteUsedUp, "this invite link was used its \(usageLimit) allowed times")
        }
        return nil
    }
}

/// An account asking to join through an invite link that needs approval.
public struct JoinRequest: Sendable, Equatable {
    /// The chat.
    public var chatID: ChatID
    /// Who asks.
    public var accountID: AccountID
    /// When.
    public var requestedAt: Date
    /// The link used.
    public var inviteCode: String

    /// Creates a request.
    public init(chatID: ChatID, accountID: AccountID, requestedAt: Date, inviteCode: String) {
        self.chatID = chatID
        self.accountID = accountID
        self.requestedAt = requestedAt
        self.inviteCode = inviteCode
    }
}

/// What an update in a chat's log is.
public enum ChatUpdateKind: String, Codable, Sendable, CaseIterable {
    /// A new message (post). In private groups every update is this kind: edits, deletions,
    /// pins and reactions are encrypted inside it.
    case message
    /// A message's new content.
    case edit
    /// A message deleted for everyone.
    case delete
    /// A message pinned.
    case pin
    /// A message unpinned.
    case unpin
    /// An account's reaction set or withdrawn.
    case reaction
    /// A membership change (join, leave, add, remove, ban, role); in private groups the payload
    /// is the admin-signed change.
    case membership
    /// The chat's title, description or settings changed.
    case info
}

/// One entry of a chat's log, stored once whatever the member count, numbered per chat
/// (1, 2, 3, … without gaps) so a device can say where it is with one number.
public struct ChatUpdate: Sendable, Equatable {
    /// The chat.
    public var chatID: ChatID
    /// The position in the chat's log.
    public var sequence: Int64
    /// What it is.
    public var kind: ChatUpdateKind
    /// The sender's idempotency key.
    public var messageID: MessageID
    /// Who made it.
    public var sender: EnvelopeSender
    /// When the server accepted it.
    public var serverTime: Date
    /// The message an edit, deletion, pin or reaction acts on.
    public var target: Int64?
    /// The content: the server's JSON for public chats, ciphertext or a signed change for
    /// private groups. Opaque to the store.
    public var payload: Data

    /// Creates an update.
    public init(
        chatID: ChatID, sequence: Int64, kind: ChatUpdateKind, messageID: MessageID, sender: EnvelopeSender,
        serverTime: Date, target: Int64? = nil, payload: Data
    ) {
        self.chatID = chatID
        self.sequence = sequence
        self.kind = kind
        self.messageID = messageID
        self.sender = sender
        self.serverTime = serverTime
        self.target = target
        self.payload = payload
    }
}

/// A message of a chat in its current state: edits applied, deletions blanked, views and
/// reactions counted.
public struct ChatMessage: Sendable, Equatable {
    /// The update that posted it.
    public var update: ChatUpdate
    /// When it was last edited.
    public var editedAt: Date?
    /// Whether it was deleted for everyone (its payload is then empty).
    public var deleted: Bool
    /// Whether it is pinned.
    public var pinned: Bool
    /// How many accounts viewed it (each counted once).
    public var views: Int
    /// Reaction counts by emoji (each account counted once per message).
    public var reactions: [String: Int]

    /// Creates a message value.
    public init(
        update: ChatUpdate, editedAt: Date? = nil, deleted: Bool = false, pinned: Bool = false, views: Int = 0,
        reactions: [String: Int] = [:]
    ) {
        self.update = update
        self.editedAt = editedAt
        self.deleted = deleted
        self.pinned = pinned
        self.views = views
        self.reactions = reactions
    }

    /// The emoji a reaction may use: a small fixed set, as the issue of reactions asks.
    public static let reactionEmoji: [String] = ["👍", "👎", "❤️", "🔥", "🎉", "😂", "😮", "😢"]
}

/// What appending an update does besides adding it to the log, in the same transaction.
public enum ChatEffect: Sendable, Equatable {
    /// An edit: the target message (kind `message`, not deleted) takes the update's payload as
    /// its content, and its edit time becomes the update's time.
    case edit(target: Int64)
    /// The target message is deleted for everyone: its payload is emptied, pins removed.
    case delete(target: Int64)
    /// The target message is pinned (true) or unpinned (false).
    case pin(target: Int64, pinned: Bool)
    /// `account`'s reaction to the target: set to an emoji, or withdrawn with nil.
    case react(target: Int64, account: AccountID, emoji: String?)
    /// A new member; refused with `chat_full` when the chat is at `limit`, `already_member`
    /// when the account is a member.
    case addMember(ChatMember, limit: Int?)
    /// A member leaves or is removed; `not_a_member` when it is not one.
    case removeMember(AccountID)
    /// A member's role and rights change; `not_a_member` when it is not one.
    case setRole(AccountID, role: ChatRole, rights: AdminRights)
    /// A ban: the account leaves (if it was a member) and the ban is stored.
    case ban(ChatBan)
    /// Private groups: the signed membership chain moves to `version`, which must be one above
    /// the stored one (`membership_conflict` otherwise); with `removal`, the removal version too.
    case membershipVersion(Int64, removal: Bool)
}

/// An update handed to the store.
public struct NewChatUpdate: Sendable {
    /// The chat.
    public var chatID: ChatID
    /// What it is.
    public var kind: ChatUpdateKind
    /// The sender's idempotency key: a second append with the same chat, sender device and id
    /// stores nothing and returns the first receipt marked duplicate.
    public var messageID: MessageID
    /// Who makes it.
    public var sender: EnvelopeSender
    /// When the server accepted it.
    public var serverTime: Date
    /// The message it acts on.
    public var target: Int64?
    /// The content.
    public var payload: Data
    /// A digest of what the sender asked for: a reused message id with another digest is
    /// refused with `idempotency_conflict`. Nil: not compared.
    public var contentHash: Data?
    /// Slow mode: refused with `slow_mode` when the sender posted less than this many seconds
    /// before `serverTime`; on success the sender's last post time becomes `serverTime`.
    public var slowModeSeconds: Int
    /// What else changes with it, in the same transaction.
    public var effects: [ChatEffect]
    /// Whether the update goes into the log. Channel subscriptions change membership without
    /// an entry (subscribers cannot see each other): then nothing is numbered and the receipt's
    /// sequence is the chat's current last one.
    public var logged: Bool

    /// Creates an update.
    public init(
        chatID: ChatID, kind: ChatUpdateKind, messageID: MessageID, sender: EnvelopeSender, serverTime: Date,
        target: Int64? = nil, payload: Data, contentHash: Data? = nil, slowModeSeconds: Int = 0,
        effects: [ChatEffect] = [], logged: Bool = true
    ) {
        self.chatID = chatID
        self.kind = kind
        self.messageID = messageID
        self.sender = sender
        self.serverTime = serverTime
        self.target = target
        self.payload = payload
        self.contentHash = contentHash
        self.slowModeSeconds = slowModeSeconds
        self.effects = effects
        self.logged = logged
    }
}

/// What the store committed for one append.
public struct ChatUpdateReceipt: Sendable, Equatable {
    /// The sequence number assigned (or first assigned, for a duplicate).
    public var sequence: Int64
    /// The time of the first acceptance.
    public var serverTime: Date
    /// True when this repeated an earlier append and nothing new was stored.
    public var duplicate: Bool

    /// Creates a receipt.
    public init(sequence: Int64, serverTime: Date, duplicate: Bool) {
        self.sequence = sequence
        self.serverTime = serverTime
        self.duplicate = duplicate
    }
}
