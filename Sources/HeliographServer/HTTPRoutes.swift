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
        /// GET /metrics — Prometheus text exposition.
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
        }

        let v1 = router.group("v1")
        /// POST /v1/accounts — register a username with an identity key (201).
        v1.post("accounts") { request, context in
            try JSONBody.response(
                try await services.accounts.register(try await decode(RegisterRequest.self, request)), status: .created)
        }
        /// GET /v1/accounts/{username} — public facts and active devices of an account.
        v1.get("accounts/:username") { _, context in
            let username = try context.parameters.require("username")
            return try JSONBody.response(try await services.accounts.lookup(LookupAccountRequest(username: username)))
        }
        /// POST /v1/auth/challenge — a nonce to sign for login.
        v1.post("auth/challenge") { request, _ in
            try JSONBody.response(try await services.auth.challenge(try await decode(ChallengeRequest.self, request)))
        }
        /// POST /v1/auth/login — the signed challenge; creates a device and its token (201).
        v1.post("auth/login") { request, _ in
            try JSONBody.response(try await services.auth.login(try await decode(LoginRequest.self, request)), status: .created)
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
            return try JSONBody.response(try await services.devices.revoke(RevokeDeviceRequest(deviceId: deviceID), by: caller))
        }
        /// POST /v1/messages — send an envelope; answered after the store committed it.
        v1.post("messages") { request, _ in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await services.messages.send(try await decode(SendRequest.self, request), from: caller))
        }
        /// GET /v1/inbox?after=N&limit=M — pull envelopes.
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
                try await services.messages.fetch(FetchInboxRequest(after: after ?? 0, limit: limit), for: caller))
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
            return try JSONBody.response(try await services.keys.fetch(FetchKeysRequest(username: username), by: caller))
        }
        /// POST /v1/reports/verify — check a franked report of a received message.
        v1.post("reports/verify") { request, _ in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await services.reports.verify(try await decode(FrankedReportRequest.self, request), by: caller))
        }
        /// POST /v1/inbox/ack — acknowledge up to a sequence number.
        v1.post("inbox/ack") { request, _ in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await services.messages.acknowledge(try await decode(AckRequest.self, request), for: caller))
        }
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
