import Foundation
import HeliographCore
import HeliographProtocol
import HeliographStore
import Hummingbird
import Logging
import NIOCore

/// The HTTP JSON twins of the protocol's methods, plus operations endpoints.
///
/// Controllers decode, authenticate and call a service; they never touch storage directly
/// (readiness excepted, which is about storage).
struct HTTPRoutes: Sendable {
    let services: HeliographServices
    let storage: any HeliographStorage
    let metrics: ServerMetrics
    let maxBodyBytes: Int
    /// Which address a request counts against for rate limits.
    let clients: ClientAddressResolver
    /// Who may read `/metrics` on this port.
    let metricsAccess: MetricsAccess

    func register(on router: Router<HeliographRequestContext>) {
        /// GET /healthz — the process is up.
        router.get("/healthz") { _, _ in "ok\n" }
        /// GET /readyz — the store answers; 503 otherwise.
        router.get("/readyz") { _, context in
            do {
                try await storage.ping()
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready\n")))
            } catch {
                context.logger.warning("readiness check failed", metadata: ["error": "\(String(reflecting: error))"])
                throw HeliographError(.temporarilyUnavailable, "the database is not reachable")
            }
        }
        /// GET /metrics — Prometheus text exposition, to the readers `metricsAccess` allows.
        router.get("/metrics") { request, context in
            try metricsAccess.check(request, peer: context.remoteAddress)
            return Self.metricsResponse(metrics)
        }

        let v1 = router.group("v1").add(middleware: ErrorCounter(metrics: metrics))
        /// POST /v1/accounts — register a username with an identity key (201).
        v1.post("accounts") { request, context in
            try JSONBody.response(
                try await services.accounts.register(
                    try await decode(RegisterRequest.self, request), from: client(request, context)),
                status: .init(code: APIMethod.register.successStatus))
        }
        /// GET /v1/accounts/{username} — public facts and active devices of an account.
        v1.get("accounts/:username") { _, context in
            let username = try context.parameters.require("username")
            return try JSONBody.response(try await services.accounts.lookup(LookupAccountRequest(username: username)))
        }
        /// POST /v1/auth/challenge — a nonce to sign for login.
        v1.post("auth/challenge") { request, context in
            try JSONBody.response(
                try await services.auth.challenge(
                    try await decode(ChallengeRequest.self, request), from: client(request, context)))
        }
        /// POST /v1/auth/login — the signed challenge; creates a device and its token (201).
        v1.post("auth/login") { request, context in
            try JSONBody.response(
                try await services.auth.login(try await decode(LoginRequest.self, request), from: client(request, context)),
                status: .init(code: APIMethod.login.successStatus))
        }
        /// GET /v1/devices — the caller's devices.
        v1.get("devices") { request, _ in
            try JSONBody.response(try await services.devices.list(for: try await authenticate(request)))
        }
        /// DELETE /v1/devices/{deviceId} — revoke one of the caller's devices.
        v1.delete("devices/:deviceId") { request, context in
            let caller = try await authenticate(request)
            let text = try context.parameters.require("deviceId")
            guard let deviceID = DeviceID(text) else {
                throw HeliographError(.badRequest, "'\(text)' is not a device id")
            }
            // The body (the new signed device list, an optional identity rotation) may be empty
            // for a device that was never listed.
            let buffer = try await request.body.collect(upTo: maxBodyBytes)
            var revocation = RevokeDeviceRequest(deviceId: deviceID)
            if buffer.readableBytes > 0 {
                revocation = try WireCodec.decode(RevokeDeviceRequest.self, from: Data(buffer.readableBytesView))
                guard revocation.deviceId == deviceID else {
                    throw HeliographError(.badRequest, "the body names device \(revocation.deviceId), the path \(deviceID)")
                }
            }
            return try JSONBody.response(try await services.devices.revoke(revocation, by: caller))
        }
        /// POST /v1/devices/{deviceId}/approve — approve a device of the caller's account that waits.
        v1.post("devices/:deviceId/approve") { request, context in
            let caller = try await authenticate(request)
            let approval = try await decode(ApproveDeviceRequest.self, request)
            guard approval.deviceId.description == (try context.parameters.require("deviceId")) else {
                throw HeliographError(.badRequest, "the body names device \(approval.deviceId), the path another")
            }
            return try JSONBody.response(try await services.devices.approve(approval, by: caller))
        }
        /// POST /v1/messages — send an envelope; answered after the store committed it.
        v1.post("messages") { request, _ in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await services.messages.send(try await decode(SendRequest.self, request), from: caller))
        }
        /// GET /v1/inbox?after=N&limit=M — pull envelopes; both parameters are optional, and
        /// their defaults are the service's, as over the WebSocket.
        v1.get("inbox") { request, _ in
            let caller = try await authenticate(request)
            let query = request.uri.queryParameters
            let after = try query["after"].map { text -> Int64 in
                guard let value = Int64(String(text)) else { throw HeliographError(.badRequest, "'after' must be an integer") }
                return value
            }
            let limit = try query["limit"].map { text -> Int in
                guard let value = Int(String(text)) else { throw HeliographError(.badRequest, "'limit' must be an integer") }
                return value
            }
            return try JSONBody.response(
                try await services.messages.fetch(FetchInboxRequest(after: after, limit: limit), for: caller))
        }
        /// PUT /v1/keys — publish the calling device's prekeys (and the account's device list).
        v1.put("keys") { request, _ in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await services.keys.publish(try await decode(PublishKeysRequest.self, request), by: caller))
        }
        /// GET /v1/keys — how many one-time prekeys the server holds for the calling device.
        v1.get("keys") { request, _ in
            try JSONBody.response(try await services.keys.status(for: try await authenticate(request)))
        }
        /// POST /v1/keys/{username} — take a prekey bundle per active device of an account.
        /// (POST, not GET: every call consumes one-time prekeys.)
        v1.post("keys/:username") { request, context in
            let caller = try await authenticate(request)
            let username = try context.parameters.require("username")
            // The body is optional: `{"devices": [...]}` restricts the bundles, as over the WebSocket.
            let limit = min(maxBodyBytes, Self.fetchKeysBodyLimit)
            try BodyLimitMiddleware<HeliographRequestContext>.refuseDeclaredLength(of: request, above: limit)
            let buffer = try await request.body.collect(upTo: limit)
            let options =
                buffer.readableBytes > 0
                ? try WireCodec.decode(FetchKeysOptions.self, from: Data(buffer.readableBytesView)) : FetchKeysOptions()
            return try JSONBody.response(
                try await services.keys.fetch(FetchKeysRequest(username: username, devices: options.devices), by: caller))
        }
        /// POST /v1/reports/verify — check a franked report of a received message.
        v1.post("reports/verify") { request, _ in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await services.reports.verify(try await decode(FrankedReportRequest.self, request), by: caller))
        }
        ChatRoutes(chats: services.chats, maxBodyBytes: maxBodyBytes, authenticate: { try await authenticate($0) })
            .register(on: v1)
        MediaRoutes(media: services.media, maxBodyBytes: maxBodyBytes, authenticate: { try await authenticate($0) })
            .register(on: v1)
        /// POST /v1/inbox/ack — acknowledge up to a sequence number.
        v1.post("inbox/ack") { request, _ in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await services.messages.acknowledge(try await decode(AckRequest.self, request), for: caller))
        }
    }

    /// The address `request` counts against.
    func client(_ request: Request, _ context: HeliographRequestContext) -> ClientAddress {
        clients.resolve(peer: context.remoteAddress, headers: request.headers)
    }

    /// Reads and decodes a JSON body no larger than the frame limit.
    func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let buffer = try await request.body.collect(upTo: maxBodyBytes)
        return try WireCodec.decode(type, from: Data(buffer.readableBytesView))
    }

    /// The device behind `Authorization: Bearer <token>`.
    func authenticate(_ request: Request) async throws -> AuthenticatedDevice {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw HeliographError(.unauthenticated, "send 'Authorization: Bearer <token>' (log in to get a token)")
        }
        return try await services.auth.authenticate(token: String(header.dropFirst("Bearer ".count)))
    }
}

extension HTTPRoutes {
    /// The largest body of `POST /v1/keys/{username}`: a list of device ids.
    static let fetchKeysBodyLimit = 16 * 1024
}

/// Refuses request bodies before they are read: any body on a method that takes none (GET,
/// HEAD, OPTIONS), and a declared `Content-Length` above the limit. Bodies without a declared
/// length are still capped where routes read them.
struct BodyLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The largest body any route accepts, in bytes.
    let maxBodyBytes: Int
    /// The largest upload part (`PUT /v1/uploads/{id}/parts/{index}`).
    var partBodyBytes: Int = 0

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response
    {
        if [.get, .head, .options].contains(request.method) {
            let declared = request.headers[.contentLength].flatMap { Int($0) } ?? 0
            if declared > 0 || request.headers[.transferEncoding] != nil {
                throw HeliographError(.payloadTooLarge, "\(request.method) requests take no body")
            }
        } else if request.method == .put, request.uri.path.hasPrefix("/v1/uploads/") {
            // Upload parts are larger than any JSON body; their route enforces the part size.
            try Self.refuseDeclaredLength(of: request, above: max(maxBodyBytes, partBodyBytes))
        } else {
            try Self.refuseDeclaredLength(of: request, above: maxBodyBytes)
        }
        return try await next(request, context)
    }

    /// Throws `payload_too_large` when `Content-Length` says the body is over `limit` bytes.
    static func refuseDeclaredLength(of request: Request, above limit: Int) throws(HeliographError) {
        guard let text = request.headers[.contentLength], let declared = Int(text), declared > limit else { return }
        throw HeliographError(
            .payloadTooLarge, "the request body is \(declared) bytes; this endpoint accepts at most \(limit)")
    }
}

/// The body of `POST /v1/keys/{username}`: the name is in the path.
private struct FetchKeysOptions: Decodable {
    /// Only these devices; every active one when absent.
    var devices: [DeviceID]?
}

/// Counts failed HTTP requests by error code, as the WebSocket gateway counts failed requests,
/// so `heliograph_errors_total` covers both transports.
private struct ErrorCounter<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            // Mapped here (and logged once, if unexpected); the error middleware passes it through.
            let failure = ErrorMapping.publicError(error, logger: context.logger)
            metrics.countError(code: failure.code.rawValue)
            throw failure
        }
    }
}

extension HTTPRoutes {
    /// The Prometheus text of `metrics`.
    static func metricsResponse(_ metrics: ServerMetrics) -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
    }

    /// A second, small HTTP server answering only `GET /metrics`, for `--metrics-address`.
    static func metricsApplication(
        address: MetricsAddress, access: MetricsAccess, metrics: ServerMetrics, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void
    ) -> some ApplicationProtocol {
        let router = Router(context: HeliographRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        /// GET /metrics — Prometheus text exposition on the metrics listener.
        router.get("/metrics") { request, context in
            try access.check(request, peer: context.remoteAddress)
            return metricsResponse(metrics)
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(address.host, port: address.port), serverName: "heliograph-metrics"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? address.port) },
            logger: logger)
    }
}

/// Who may read `GET /metrics` on one listener. The figures (connected devices, traffic,
/// error counts) are operational detail that strangers should not be able to watch.
struct MetricsAccess: Sendable {
    enum Rule: Sendable {
        /// Anyone who reaches this listener (a separate address the operator chose).
        case anyone
        /// Requests with `Authorization: Bearer <token>`.
        case token(String)
        /// Peers on this machine that did not come through a proxy.
        case loopbackOnly
        /// Not on this port: metrics have their own address.
        case elsewhere(MetricsAddress)
    }

    let rule: Rule

    /// The rule for the main port: metrics move to the metrics address when one is set, need
    /// the token when one is set, and are otherwise answered to this machine only.
    static func mainPort(_ configuration: ServerConfiguration) -> MetricsAccess {
        if let address = configuration.metricsAddress { return MetricsAccess(rule: .elsewhere(address)) }
        if let token = configuration.metricsToken { return MetricsAccess(rule: .token(token)) }
        return MetricsAccess(rule: .loopbackOnly)
    }

    /// The rule for the metrics listener: the token when one is set, else anyone reaching it.
    static func metricsListener(_ configuration: ServerConfiguration) -> MetricsAccess {
        MetricsAccess(rule: configuration.metricsToken.map(Rule.token) ?? .anyone)
    }

    /// Throws a clear refusal unless the request may read the metrics.
    func check(_ request: Request, peer: SocketAddress?) throws(HeliographError) {
        switch rule {
        case .anyone:
            return
        case .token(let expected):
            guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
                Self.constantTimeEqual(String(header.dropFirst("Bearer ".count)), expected)
            else {
                throw HeliographError(
                    .unauthenticated, "metrics need 'Authorization: Bearer <token>' with the server's metrics token")
            }
        case .loopbackOnly:
            // Behind a proxy on the same machine every peer is loopback; a forwarded request
            // comes from elsewhere, so it is refused whatever the peer.
            guard ClientAddress(peer).isLoopback, !ClientAddressResolver.isProxied(request.headers) else {
                throw HeliographError(
                    .forbidden,
                    "metrics are only answered to this machine; configure --metrics-token or --metrics-address to scrape from elsewhere"
                )
            }
        case .elsewhere(let address):
            throw HeliographError(.notFound, "metrics are served on the metrics address (\(address)), not on this port")
        }
    }

    /// Compares without stopping at the first difference, so timing does not reveal how much
    /// of a guessed token is right.
    static func constantTimeEqual(_ given: String, _ expected: String) -> Bool {
        let given = Array(given.utf8)
        let expected = Array(expected.utf8)
        var difference = UInt8(given.count == expected.count ? 0 : 1)
        for index in expected.indices {
            difference |= expected[index] ^ (index < given.count ? given[index] : 0)
        }
        return difference == 0
    }
}
