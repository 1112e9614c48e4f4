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

/// The request context of every route: Hummingbird's core storage, the WebSocket hand-off,
/// and the TCP peer (rate limits count per client address).
public struct HeliographRequestContext: RequestContext, WebSocketRequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The WebSocket hand-off, through a slot emptied when the connection closes (see
    /// ``WebSocketHandoffSlot``: held directly it would keep every upgraded connection alive).
    public var webSocket: WebSocketHandlerReference<Self> { webSocketSlot.reference }
    private let webSocketSlot: WebSocketHandoffSlot
    /// The connected peer: the client, or the reverse proxy in front of the server.
    public let remoteAddress: SocketAddress?
    /// The connection, so the WebSocket upgrade can add its RFC 6455 checks to the pipeline.
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocketSlot = WebSocketHandoffSlot()
        remoteAddress = source.channel.remoteAddress
        channel = source.channel
    }

    /// Frees the WebSocket hand-off once the connection closes; called by the route that
    /// upgrades, once per connection (plain HTTP requests never fill the hand-off).
    func releaseWebSocketHandoffOnClose() {
        webSocketSlot.release(whenClosed: channel)
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
    /// Groups and channels.
    public let chats: ChatService
    /// Uploads, downloads and the references that keep blobs.
    public let media: MediaService

    /// Wires the services over one storage backend.
    public init(
        storage: any HeliographStorage, configuration: ServerConfiguration, clock: any WallClock, hub: DeliveryHub,
        metrics: ServerMetrics, revocations: RevocationRegistry, fanout: ChatFanout = ChatFanout()
    ) {
        let authLimits = AuthLimits(configuration)
        accounts = AccountService(storage: storage, clock: clock, limits: authLimits)
        auth = AuthService(
            storage: storage, clock: clock, configuration: configuration, accounts: accounts, limits: authLimits,
            revocations: revocations)
        devices = DeviceService(storage: storage, clock: clock, hub: hub, revocations: revocations)
        let franking = FrankingKeyring(
            store: storage.frankingKeys, sealingKey: configuration.frankingSealingKey, clock: clock,
            retention: configuration.frankingKeyRetention, refreshInterval: configuration.frankingKeyRefreshInterval)
        frankingKeys = franking
        media = MediaService(
            storage: storage, clock: clock, limits: configuration.media,
            uploadLimiter: RateLimiter(rate: configuration.accountUploadRate, burst: configuration.accountUploadBurst))
        messages = MessageService(
            storage: storage, clock: clock, configuration: configuration, accounts: accounts, hub: hub, metrics: metrics,
            accountLimiter: RateLimiter(rate: configuration.accountSendRate, burst: configuration.accountSendBurst),
            pairLimiter: RateLimiter(rate: configuration.pairSendRate, burst: configuration.pairSendBurst), franking: franking,
            media: media)
        keys = KeyService(storage: storage, accounts: accounts, clock: clock, fetchLimits: KeyFetchLimits(configuration))
        reports = ReportVerificationService(storage: storage, keyring: franking)
        chats = ChatService(
            storage: storage, clock: clock, configuration: configuration, accounts: accounts, fanout: fanout,
            postLimiter: RateLimiter(rate: configuration.accountPostRate, burst: configuration.accountPostBurst),
            media: media)
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
///   - onMetricsServerRunning: called with the bound port of the metrics listener, if configured.
public func buildApplication(
    configuration: ServerConfiguration,
    storage: any HeliographStorage,
    clock: any WallClock = SystemWallClock(),
    logger: Logger,
    sockets: SocketRegistry = SocketRegistry(),
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in },
    onMetricsServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    let hub = DeliveryHub()
    let metrics = ServerMetrics()
    // One per node: the services revoke through it, every socket checks it, the feed feeds it.
    let revocations = RevocationRegistry()
    // One per node: which sockets here follow which chats.
    let fanout = ChatFanout(counted: { metrics.recordChatPushes($0) })
    let services = HeliographServices(
        storage: storage, configuration: configuration, clock: clock, hub: hub, metrics: metrics, revocations: revocations,
        fanout: fanout)
    let gateway = SocketGateway(
        services: services, storage: storage, hub: hub, metrics: metrics, configuration: configuration, clock: clock,
        sockets: sockets, revocations: revocations, fanout: fanout)

    let router = Router(context: HeliographRequestContext.self)
    router.add(middleware: ErrorMiddleware())
    router.add(
        middleware: BodyLimitMiddleware(maxBodyBytes: configuration.maxFrameBytes, partBodyBytes: configuration.media.partSize))
    let clients = ClientAddressResolver(trustForwardedFor: configuration.trustForwardedFor)
    let api = HTTPRoutes(
        services: services, storage: storage, metrics: metrics, maxBodyBytes: configuration.maxFrameBytes,
        clients: clients, metricsAccess: .mainPort(configuration))
    api.register(on: router)
    /// GET /v1/socket — the WebSocket of protocol v1 (see docs/protocol.md).
    router.ws("/v1/socket") { _, context in
        // Frames that break RFC 6455 are refused with their own close code before the gateway.
        try await WebSocketCheckInstaller.install(on: context.channel, maxMessageBytes: configuration.maxFrameBytes)
        context.releaseWebSocketHandoffOnClose()
        return .upgrade([:])
    } onUpgrade: { inbound, outbound, context in
        // The address is taken at the upgrade: every request on the socket counts against it.
        let client = clients.resolve(peer: context.requestContext.remoteAddress, headers: context.request.headers)
        await gateway.serve(
            inbound: inbound, outbound: outbound, client: client, channel: context.requestContext.channel,
            logger: context.logger)
    }

    let sweeper = RetentionSweeper(
        storage: storage, configuration: configuration, clock: clock, logger: logger, frankingKeys: services.frankingKeys,
        media: services.media)
    var background: [any Service] = [StorageCloser(storage: storage), sweeper]
    if let feed = storage.changeFeed {
        background.append(
            ChangeFeedRelay(
                feed: feed, hub: hub, revocations: revocations, devices: storage.devices, chats: services.chats,
                fanout: fanout, logger: logger))
    }
    if let address = configuration.metricsAddress {
        background.append(
            HTTPRoutes.metricsApplication(
                address: address, access: .metricsListener(configuration), metrics: metrics, logger: logger,
                onServerRunning: onMetricsServerRunning))
    }
    return Application(
        router: router,
        server: .guardedHTTP1WebSocketUpgrade(
            webSocketRouter: router,
            configuration: .init(
                // Pings come from WebSocketKeepalive, whose timer a closed socket frees at once.
                ws: .init(maxFrameSize: configuration.maxFrameBytes, autoPing: .disabled, validateUTF8: true)),
            limiter: ConnectionLimiter(configuration), headerTimeout: configuration.headerTimeout
        ),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "heliograph"),
        services: background,
        onServerRunning: { channel in
            // Login proofs name the origin, whose port is known only now when port 0 was asked for.
            services.auth.origins.listening(on: channel.localAddress?.port ?? configuration.port)
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
            if failure.code == .payloadTooLarge, Self.closesAfterRefusal(request) {
                // The rest of a large refused body is not read: the connection closes after this answer.
                response.headers[.connection] = "close"
            }
            return response
        }
    }
}

extension ErrorMiddleware {
    /// Refused bodies up to this size are read and dropped after the answer, so that the
    /// connection stays usable; larger ones, and bodies of unknown length, end the connection.
    static var drainAllowance: Int { 1 << 20 }

    /// Whether answering `request` with 413 should close the connection instead of reading
    /// the rest of its body.
    static func closesAfterRefusal(_ request: Request) -> Bool {
        guard let text = request.headers[.contentLength], let declared = Int(text) else { return true }
        return declared > drainAllowance
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

/// Relays what any node sharing the database committed: wakes local sockets for inbox changes,
/// and closes local sockets of revoked devices. After a gap in the feed it wakes every socket
/// and re-checks every connected device against the store, retrying each second until the
/// store answers, so a revocation missed during the gap still closes its sockets.
struct ChangeFeedRelay: Service {
    let feed: any InboxChangeFeed
    let hub: DeliveryHub
    let revocations: RevocationRegistry
    let devices: any DeviceStore
    let chats: ChatService
    let fanout: ChatFanout
    let logger: Logger

    func run() async throws {
        // Re-checks run beside the relay so that wake-ups keep flowing meanwhile; several gaps
        // in a row collapse into one re-check.
        let (gaps, gapSeen) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in gaps { await recheckUntilDone() }
            }
            for await change in feed.changes().cancelOnGracefulShutdown() {
                switch change {
                case .devices(let devices): hub.wake(devices)
                case .revoked(let devices): revocations.revoke(devices)
                case .chats(let ids):
                    do { try await chats.relayGrowth(of: ids) } catch {
                        // Devices fetch the gap themselves on their next sync.
                        logger.warning("relaying chat updates failed", metadata: ["error": "\(String(reflecting: error))"])
                    }
                case .memberships(let chat, let accounts):
                    do { try await chats.relayMemberships(chat, accounts) } catch {
                        logger.warning("relaying a membership change failed", metadata: ["error": "\(String(reflecting: error))"])
                        fanout.announceChatsChanged()
                    }
                case .all:
                    hub.wakeAll()
                    // Chat updates may have been missed too: every socket syncs its chats.
                    fanout.announceChatsChanged()
                    revocations.gap()
                    gapSeen.yield()
                }
            }
            gapSeen.finish()
            group.cancelAll()
        }
    }

    private func recheckUntilDone() async {
        while !Task.isCancelled {
            do {
                try await revocations.recheck(against: devices)
                return
            } catch {
                logger.warning(
                    "re-checking connected devices for revocations failed; retrying",
                    metadata: ["error": "\(String(reflecting: error))"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}

/// Deletes expired envelopes, sessions, challenges, uploads and unreferenced blobs on a fixed
/// interval.
struct RetentionSweeper: Service {
    let storage: any HeliographStorage
    let configuration: ServerConfiguration
    let clock: any WallClock
    let logger: Logger
    let frankingKeys: FrankingKeyring
    let media: MediaService

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
        do {
            let blobs = try await media.collectGarbage()
            if blobs > 0 { logger.info("deleted unreferenced blobs", metadata: ["blobs": "\(blobs)"]) }
        } catch {
            logger.warning("blob collection failed", metadata: ["error": "\(String(reflecting: error))"])
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
