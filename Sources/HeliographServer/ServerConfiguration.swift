import Foundation
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
    /// Account registrations and logins per second, server-wide; 0 disables the limit.
    public var authRate: Double = 50
    /// Registrations and logins in a burst, server-wide.
    public var authBurst: Double = 500
    /// How long a shutting-down server waits for in-flight requests before closing sockets.
    public var shutdownGrace: Duration = .seconds(5)
    /// The key that seals the franking keys in the database; it is never stored there. Without
    /// one, franked sends and report checks fail (`heliograph serve` always sets one).
    public var frankingSealingKey: ServerSealingKey?
    /// How long a replaced franking key is kept so that reports of older messages still verify.
    public var frankingKeyRetention: Duration = .seconds(400 * 24 * 3600)
    /// How often a node reads which franking key is current, bounding how long after a
    /// rotation a node still tags with the previous key.
    public var frankingKeyRefreshInterval: Duration = .seconds(60)

    /// The defaults.
    public init() {}
}
