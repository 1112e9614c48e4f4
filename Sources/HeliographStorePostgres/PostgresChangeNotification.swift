import HeliographCore
import HeliographStore

/// One NOTIFY payload on the ``PostgresChangeFeed/channel``, in both directions.
///
/// The grammar (PostgreSQL caps a payload at 8000 bytes; a device id is 36 characters):
///
/// - `<node>:<device>,<device>,…` — these devices' inboxes grew, through the storage named
///   `<node>` (8 lower-case hexadecimal digits), which skips its own.
/// - `<device>,…` — the same without a node name (written by older versions).
/// - `revoked:<device>,…` — these devices were revoked. `revoked` is never a node name (those
///   are hexadecimal), so every node, the revoking one included, acts on it; a node of an older
///   version reads it as a wake-up of those devices, which is harmless.
/// - `chats:<node>:<chat>,<chat>,…` — these chats' logs grew through the storage `<node>`,
///   which skips its own.
/// - `members:<node>:<chat>:<account>,…` — these accounts joined or left the chat (or were
///   banned from it) through the storage `<node>`, which skips its own.
///
/// `chats` and `members` are never node names either. A node of an older version splits at the
/// first colon and so reads the new forms as wake-ups of devices named by chat or account ids:
/// no device has those ids, so nothing happens.
enum ChangeNotification: Equatable {
    /// Inboxes grew, through `node` when it is named.
    case inboxes(node: String?, [DeviceID])
    /// Devices were revoked.
    case revoked([DeviceID])
    /// Chats' logs grew through `node`.
    case chats(node: String, [ChatID])
    /// Accounts joined or left `chat` through `node`.
    case members(node: String, chat: ChatID, [AccountID])

    /// The prefix that marks a revocation.
    static let revokedPrefix = "revoked"
    /// The prefix that marks grown chat logs.
    static let chatsPrefix = "chats"
    /// The prefix that marks membership changes.
    static let membersPrefix = "members"

    /// The payload to send.
    var payload: String {
        switch self {
        case .inboxes(let node, let devices):
            let list = devices.map(\.description).joined(separator: ",")
            return node.map { "\($0):\(list)" } ?? list
        case .revoked(let devices):
            return Self.revokedPrefix + ":" + devices.map(\.description).joined(separator: ",")
        case .chats(let node, let chats):
            return Self.chatsPrefix + ":" + node + ":" + chats.map(\.description).joined(separator: ",")
        case .members(let node, let chat, let accounts):
            return Self.membersPrefix + ":" + node + ":" + chat.description + ":"
                + accounts.map(\.description).joined(separator: ",")
        }
    }

    /// Parses a received payload; nil when it is malformed or names nothing (nothing to do).
    init?(payload: String) {
        // Ids contain no colon, so the colons alone give the form (split always yields one part).
        let parts = payload.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func ids<ID: UUIDIdentifier>(_ list: String, as _: ID.Type) -> [ID]? {
            let ids = list.split(separator: ",").compactMap { ID(String($0)) }
            return ids.isEmpty ? nil : ids
        }
        switch (parts[0], parts.count) {
        case (Self.chatsPrefix, 3):
            guard !parts[1].isEmpty, let chats = ids(parts[2], as: ChatID.self) else { return nil }
            self = .chats(node: parts[1], chats)
        case (Self.membersPrefix, 4):
            guard !parts[1].isEmpty, let chat = ChatID(parts[2]), let accounts = ids(parts[3], as: AccountID.self)
            else { return nil }
            self = .members(node: parts[1], chat: chat, accounts)
        case (Self.chatsPrefix, _), (Self.membersPrefix, _):
            // A new form with the wrong shape: never read as devices.
            return nil
        case (Self.revokedPrefix, 2):
            guard let devices = ids(parts[1], as: DeviceID.self) else { return nil }
            self = .revoked(devices)
        case (_, 2):
            guard let devices = ids(parts[1], as: DeviceID.self) else { return nil }
            self = .inboxes(node: parts[0], devices)
        case (_, 1):
            guard let devices = ids(parts[0], as: DeviceID.self) else { return nil }
            self = .inboxes(node: nil, devices)
        default:
            return nil
        }
    }

    /// What the storage named `node` tells its subscribers; nil for its own inbox, chat and
    /// membership changes, which it handed to its sockets directly.
    func change(forNode node: String) -> InboxChange? {
        switch self {
        case .inboxes(let sender, let devices):
            return sender == node ? nil : .devices(devices)
        case .revoked(let devices):
            return .revoked(devices)
        case .chats(let sender, let chats):
            return sender == node ? nil : .chats(chats)
        case .members(let sender, let chat, let accounts):
            return sender == node ? nil : .memberships(chat, accounts)
        }
    }
}
