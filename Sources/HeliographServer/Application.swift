import Foundation
import HeliographCore
import HeliographProtocol
import HeliographStore
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// The request context of every route: Hummingbird's core storage plus the WebSocket hand-off.
public struct HeliographRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
    }
}

/// The service layer, shared by the HTTP routes and the WebSocket gateway.
public struct HeliographServices: Sendable {
    /// Accounts.
    public let accounts: AccountService
    /// Login and tokens.
    public let auth: AuthService
    /// Devices.
    public let devices: DeviceService
    /// Messages and inboxes.
    public let messages: MessageService
    /// Prekey bundles for end-to-end sessions.
    public let keys: KeyService
    /// Verification of franked reports.
    public let reports: ReportVerificationService
    /// The server's franking keys (sealed in the database, rotated, shared by every node).
    public let frankingKeys: FrankingKeyring

    /// Wires the services over one storage backend.
    public init(
        storage: any HeliographStorage, configuration: ServerConfiguration, clock: any WallClock, hub: DeliveryHub,
        metrics: ServerMetrics
    ) {
        let authLimiter = RateLimiter(rate: configuration.authRate, burst: configuration.authBurst)
        accounts = AccountService(storage: storage, clock: clock, authLimiter: authLimiter)
        auth = AuthService(
            storage: storage, clock: clock, configuration: configuration, accounts: accounts, authLimiter: authLimiter)
        devices = DeviceService(storage: storage, clock: clock, hub: hub)
        let franking = FrankingKeyring(
            store: storage.frankingKeys, sealingKey: configuration.frankingSealingKey, clock: clock,
            retention: configuration.frankingKeyRetention, refreshInterval: configuration.frankingKeyRefreshInterval)
        frankingKeys = franking
        messages = MessageService(
            storage: storage, clock: clock, configuration: configuration, accounts: accounts, hub: hub, metrics: metrics,
            accountLimiter: RateLimiter(rate: configuration.accountSendRate, burst: configuration.accountSendBurst),
            pairLimiter: RateLimiter(rate: configuration.pairSendRate, burst: configuration.pairSendBurst), franking: franking)
        keys = KeyService(storage: storage, accounts: accounts)
        reports = ReportVerificationService(storage: storage, keyring: franking)
    }
}

/// Builds the whole server: services over `storage`, HTTP routes, the WebSocket gateway, and
/// the background sweeper. The one place where parts are wired together.
///
/// - Parameters:
///   - configuration: listening address, limits, lifetimes.
///   - storage: an opened, migrated backend; the application closes it when it stops.
///   - clock: the source of "now" for expiry and retention (tests pass a manual clock).
///   - logger: the server's logger.
///   - sockets: the registry of open sockets, which ``runUntilSignalled(_:sockets:grace:logger:)`` drains.
///   - onServerRunning: called with the bound port once the server accepts connections.
public func buildApplication(
    configuration: ServerConfiguration,
    storage: any HeliographStorage,
    clock: any WallClock = SystemWallClock(),
    logger: Logger,
    sockets: SocketRegistry = SocketRegistry(),
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    let hub = DeliveryHub()
    let metrics = ServerMetrics()
    let services = HeliographServices(storage: storage, configuration: configuration, clock: clock, hub: hub, metrics: metrics)
    let gateway = SocketGateway(
        services: services, storage: storage, hub: hub, metrics: metrics, configuration: configuration, clock: clock,
        sockets: sockets)

    let router = Router(context: HeliographRequestContext.self)
    router.add(middleware: ErrorMiddleware())
    let api = HTTPRoutes(services: services, storage: storage, metrics: metrics, maxBodyBytes: configuration.maxFrameBytes)
    api.register(on: router)
    /// GET /v1/socket — the WebSocket of protocol v1 (see docs/protocol.md).
    router.ws("/v1/socket") { _, _ in
        .upgrade([:])
    } onUpgrade: { inbound, outbound, context in
        await gateway.serve(inbound: inbound, outbound: outbound, logger: context.logger)
    }

    let sweeper = RetentionSweeper(
        storage: storage, configuration: configuration, clock: clock, logger: logger, frankingKeys: services.frankingKeys)
    var background: [any Service] = [StorageCloser(storage: storage), sweeper]
    if let feed = storage.changeFeed {
        background.append(ChangeFeedRelay(feed: feed, hub: hub))
    }
    return Application(
        router: router,
        server: .http1WebSocketUpgrade(
            webSocketRouter: router,
            configuration: .init(
                ws: .init(maxFrameSize: configuration.maxFrameBytes, autoPing: .enabled(timePeriod: .seconds(30))))
        ),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "heliograph"),
        services: background,
        onServerRunning: { channel in
            await onServerRunning(channel.localAddress?.port ?? configuration.port)
        },
        logger: logger
    )
}

/// Turns every thrown error into a JSON error response with a stable code.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            let failure = ErrorMapping.publicError(error, logger: context.logger)
            var response = try JSONBody.response(
                ErrorEnvelope(error: ErrorBody(failure)), status: .init(code: ErrorMapping.status(for: failure.code)))
            if let retryAfter = failure.retryAfterSeconds {
                response.headers[.retryAfter] = String(retryAfter)
            }
            return response
        }
    }
}

/// JSON responses with the wire codec.
enum JSONBody {
    static func response<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try WireCodec.encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Closes the storage after the server stopped; listed first so it shuts down last.
struct StorageCloser: Service {
    let storage: any HeliographStorage

    func run() async throws {
        try? await gracefulShutdown()
        try await storage.close()
    }
}

/// Wakes local sockets for inbox changes committed by any node sharing the database.
struct ChangeFeedRelay: Service {
    let feed: any InboxChangeFeed
    let hub: DeliveryHub

    func run() async throws {
        for await change in feed.changes().cancelOnGracefulShutdown() {
            switch change {
            case .devices(let devices): hub.wake(devices)
            case .all: hub.wakeAll()
            }
        }
    }
}

/// Deletes expired envelopes, sessions and challenges on a fixed interval.
struct RetentionSweeper: Service {
    let storage: any HeliographStorage
    let configuration: ServerConfiguration
    let clock: any WallClock
    let logger: Logger
    let frankingKeys: FrankingKeyring

    func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await sweepOnce()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: configuration.sweepInterval) }
        }
    }

    /// One pass; failures are logged and retried on the next pass.
    func sweepOnce() async {
        let now = clock.now()
        do {
            let envelopes = try await storage.inbox.deleteExpired(before: now - configuration.retention.timeInterval)
            let sessions = try await storage.sessions.deleteExpired(before: now)
            let challenges = try await storage.challenges.deleteExpired(before: now)
            if envelopes + sessions + challenges > 0 {
                logger.info(
                    "retention sweep",
                    metadata: ["envelopes": "\(envelopes)", "sessions": "\(sessions)", "challenges": "\(challenges)"])
            }
        } catch {
            logger.warning("retention sweep failed", metadata: ["error": "\(String(reflecting: error))"])
        }
        // Franking keys replaced longer ago than their retention: reports of messages they
        // tagged stop verifying, as documented.
        do {
            let deleted = try await frankingKeys.deleteExpired()
            if !deleted.isEmpty {
                logger.notice("deleted expired franking keys", metadata: ["keys": "\(deleted)"])
            }
        } catch {
            logger.warning("franking key sweep failed", metadata: ["error": "\(String(reflecting: error))"])
        }
    }
}

/// Runs an application until SIGINT or SIGTERM, then shuts it down in order: every socket is
/// told to reconnect and closed once its request in flight is answered (at most `grace`), then
/// the server stops accepting and the stores close. A second signal ends the process at once.
public func runUntilSignalled(
    _ application: some ApplicationProtocol, sockets: SocketRegistry, grace: Duration, logger: Logger
) async throws {
    let group = ServiceGroup(configuration: .init(services: [application], logger: logger))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        tasks.addTask {
            var signalled = false
            for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                guard !signalled else {
                    logger.warning("second signal: exiting without finishing the shutdown", metadata: ["signal": "\(signal)"])
                    exit(1)
                }
                signalled = true
                logger.info("shutting down", metadata: ["signal": "\(signal)", "sockets": "\(sockets.count)"])
                await sockets.drain(timeout: grace)
                await group.triggerGracefulShutdown()
            }
        }
        // The service group ends after the graceful shutdown (or on its own failure).
        try await tasks.next()
        tasks.cancelAll()
    }
}
