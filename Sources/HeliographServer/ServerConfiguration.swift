import Foundation
import HeliographCore
import HeliographCrypto

/// Everything `heliograph serve` can be told, with the defaults a fresh machine needs.
public struct ServerConfiguration: Sendable {
    /// The address to listen on; loopback by default so nothing is exposed by accident.
    public var host: String = "127.0.0.1"
    /// The TCP port; 0 picks a free one (tests).
    public var port: Int = 8080
    /// The origin clients use to reach this server (`https://chat.example.org`), which every
    /// login proof must name. Without it the origin is derived from `host` and the bound port
    /// (see ``PublicOrigins``); a server behind a proxy or TLS terminator needs it set.
    public var publicOrigin: ServerOrigin?
    /// The largest WebSocket frame or HTTP body accepted, in bytes.
    public var maxFrameBytes: Int = 256 * 1024
    /// The largest envelope payload accepted, in bytes (before base64).
    public var maxEnvelopeBytes: Int = 128 * 1024
    /// How long an unacknowledged envelope is kept.
    public var retention: Duration = .seconds(30 * 24 * 3600)
    /// How often expired envelopes, sessions and challenges are swept.
    public var sweepInterval: Duration = .seconds(600)
    /// How long a session token stays valid.
    public var tokenLifetime: Duration = .seconds(90 * 24 * 3600)
    /// How long a login challenge may be answered.
    public var challengeLifetime: Duration = .seconds(300)
    /// Sends per second one account may make (sustained); 0 disables the limit.
    public var accountSendRate: Double = 50
    /// Sends one account may make in a burst.
    public var accountSendBurst: Double = 200
    /// Sends per second from one account to one recipient account; 0 disables the limit.
    public var pairSendRate: Double = 20
    /// Sends from one account to one recipient in a burst.
    public var pairSendBurst: Double = 100
    /// Registrations, and login attempts, per second server-wide: a ceiling that protects the
    /// server, far above what one client may use; 0 disables it.
    public var authRate: Double = 100
    /// Registrations, and login attempts, in a burst, server-wide.
    public var authBurst: Double = 1000
    /// Registrations per second from one client address (IPv6: one /64); 0 disables the limit.
    public var registerAddressRate: Double = 1.0 / 30
    /// Registrations from one client address in a burst.
    public var registerAddressBurst: Double = 20
    /// Login challenges per second from one client address, and as many logins; 0 disables the limit.
    public var loginAddressRate: Double = 0.5
    /// Login challenges (and logins) from one client address in a burst.
    public var loginAddressBurst: Double = 30
    /// Login challenges per second for one account, and as many logins; 0 disables the limit.
    public var loginAccountRate: Double = 0.1
    /// Login challenges (and logins) for one account in a burst.
    public var loginAccountBurst: Double = 10
    /// `fetchKeys` calls per second by one account; 0 disables the limit.
    public var fetchKeysAccountRate: Double = 0.1
    /// `fetchKeys` calls by one account in a burst.
    public var fetchKeysAccountBurst: Double = 30
    /// Prekey bundles per second handed out for one device (each takes its one-time prekeys);
    /// 0 disables the limit.
    public var fetchKeysDeviceRate: Double = 1.0 / 60
    /// Prekey bundles handed out for one device in a burst.
    public var fetchKeysDeviceBurst: Double = 10
    /// Whether the client address is the last entry of `X-Forwarded-For` instead of the TCP
    /// peer. Only for servers reachable solely through a proxy that appends it (docs/operations.md).
    public var trustForwardedFor: Bool = false
    /// A separate listener for `GET /metrics`; when set, the main port does not serve metrics.
    public var metricsAddress: MetricsAddress?
    /// A bearer token `GET /metrics` requires. Without a token or a metrics address, metrics
    /// are answered only to loopback peers on the main port.
    public var metricsToken: String?
    /// How long a shutting-down server waits for in-flight requests before closing sockets.
    public var shutdownGrace: Duration = .seconds(5)
    /// How long a client may take to send a request's line and headers, counted from the
    /// connection's start or from the end of the previous response (an idle keep-alive
    /// connection closes after it too).
    public var headerTimeout: Duration = .seconds(10)
    /// How long a WebSocket may stay open without authenticating before it is closed.
    public var unauthenticatedSocketTimeout: Duration = .seconds(30)
    /// Open connections one client address may hold (IPv6: one /64); 0 disables the limit.
    /// Not applied with ``trustForwardedFor``, where every connection comes from the proxy.
    public var maxConnectionsPerAddress: Int = 64
    /// Open connections in all; further ones are answered 503 and closed at once. nil: the
    /// process's descriptor limit minus a reserve of 128 (see ``ConnectionLimiter``).
    public var maxConnections: Int?
    /// The key that seals the franking keys in the database; it is never stored there. Without
    /// one, franked sends and report checks fail (`heliograph serve` always sets one).
    public var frankingSealingKey: ServerSealingKey?
    /// How long a replaced franking key is kept so that reports of older messages still verify.
    public var frankingKeyRetention: Duration = .seconds(400 * 24 * 3600)
    /// How often a node reads which franking key is current, bounding how long after a
    /// rotation a node still tags with the previous key.
    public var frankingKeyRefreshInterval: Duration = .seconds(60)
    /// How far behind (in updates) a device may be in one chat and still get the updates after
    /// its position; further behind it is told "too long" and refetches the chat's history.
    public var chatGapLimit: Int = 1_000
    /// Member limits per chat kind (nil: no limit). The defaults are the kinds' own limits; an
    /// operator may raise them, and tests lower them to reach them.
    public var chatMemberLimits: [ChatKind: Int] = Dictionary(
        uniqueKeysWithValues: ChatKind.allCases.compactMap { kind in kind.memberLimit.map { (kind, $0) } })
    /// Posts and message operations per account per second in groups and channels.
    public var accountPostRate: Double = 20
    /// Burst of posts and message operations per account.
    public var accountPostBurst: Double = 100
    /// Uploads: the largest file, the per-account quota, part size, lifetimes and grace period.
    public var media = MediaLimits()
    /// New uploads each account may start per second (0 turns the limit off).
    public var accountUploadRate: Double = 1
    /// Burst of new uploads per account.
    public var accountUploadBurst: Double = 60

    /// The defaults.
    public init() {}
}

/// `HOST:PORT` of the metrics listener (`[::1]:9090` for IPv6).
public struct MetricsAddress: Sendable, Equatable, CustomStringConvertible {
    /// The address to bind.
    public var host: String
    /// The port; 0 picks a free one (tests).
    public var port: Int

    /// An address.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`, or nil when the text is not one.
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
