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
enum ChangeNotification: Equatable {
    /// Inboxes grew, through `node` when it is named.
    case inboxes(node: String?, [DeviceID])
    /// Devices were revoked.
    case revoked([DeviceID])

    /// The prefix that marks a revocation.
    static let revokedPrefix = "revoked"

    /// The payload to send.
    var payload: String {
        switch self {
        case .inboxes(let node, let devices):
            let list = devices.map(\.description).joined(separator: ",")
            return node.map { "\($0):\(list)" } ?? list
        case .revoked(let devices):
            return Self.revokedPrefix + ":" + devices.map(\.description).joined(separator: ",")
        }
    }

    /// Parses a received payload; nil when it names no device (nothing to do).
    init?(payload: String) {
        let parts = payload.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let devices = (parts.last ?? "").split(separator: ",").compactMap { DeviceID(String($0)) }
        guard !devices.isEmpty else { return nil }
        if parts.count == 2, parts[0] == Self.revokedPrefix {
            self = .revoked(devices)
        } else {
            self = .inboxes(node: parts.count == 2 ? String(parts[0]) : nil, devices)
        }
    }

    /// What the storage named `node` tells its subscribers; nil for its own inbox changes,
    /// which it handed to its sockets directly.
    func change(forNode node: String) -> InboxChange? {
        switch self {
        case .inboxes(let sender, let devices):
            return sender == node ? nil : .devices(devices)
        case .revoked(let devices):
            return .revoked(devices)
        }
    }
}
