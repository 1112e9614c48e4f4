import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import HeliographStore
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import Testing

/// Attacks on the limits of unauthenticated methods and of `fetchKeys`, over real sockets.
///
/// The servers trust `X-Forwarded-For` (as behind the documented proxy), so one test process
/// can speak from many client addresses; requests without the header count against the TCP
/// peer, 127.0.0.1.
@Suite("Rate limits one client cannot abuse")
struct AbuseLimitTests {
    /// Test defaults plus a trusted proxy header. The bursts are the defaults; refills are
    /// slowed so that a test slowed down by others running beside it still counts exactly.
    static func behindProxy(_ configuration: inout ServerConfiguration) {
        configuration.trustForwardedFor = true
        slowRefills(&configuration)
    }

    /// Default bursts, nearly no refill.
    static func slowRefills(_ configuration: inout ServerConfiguration) {
        configuration.registerAddressRate = 0.001
        configuration.loginAddressRate = 0.001
        configuration.loginAccountRate = 0.001
        configuration.fetchKeysAccountRate = 0.001
        configuration.fetchKeysDeviceRate = 0.001
    }

    @Test("one client hammering challenge for one username is limited; another account from another address still logs in")
    func hammeredChallenge() async throws {
        try await TestServer.run(configure: Self.behindProxy) { server in
            _ = try await server.register("alice")
            _ = try await server.register("bob_b")
            var answered = 0
            var refusal: TestResponse?
            for _ in 0..<700 {
                let response = try await server.post(
                    "/v1/auth/challenge", ChallengeRequest(username: "alice"), from: "198.51.100.7")
                if response.status == .tooManyRequests {
                    refusal = response
                    break
                }
                #expect(response.status == .ok)
                answered += 1
            }
            let limited = try #require(refusal, "700 challenges for one account were all answered")
            #expect(answered <= Int(ServerConfiguration().loginAccountBurst))
            #expect(limited.errorCode == "rate_limited")
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect((try limited.decode(ErrorEnvelope.self).error.retryAfter ?? 0) >= 1)

            // Somebody else, elsewhere, logging in to their own account is not affected.
            let other = try await server.post("/v1/auth/challenge", ChallengeRequest(username: "bob_b"), from: "203.0.113.9")
            #expect(other.status == .ok)
            // Nor is a device of bob's over the WebSocket (from the socket's own address).
            let socket = try await server.connect()
            defer { Task { await socket.close() } }
            _ = try await socket.request(.challenge, ChallengeRequest(username: "bob_b"), as: ChallengeResponse.self)
        }
    }

    @Test("one address probing many usernames is limited before the lookup; other addresses are not")
    func oneAddressManyNames() async throws {
        try await TestServer.run(configure: Self.behindProxy) { server in
            _ = try await server.register("alice")
            let burst = Int(ServerConfiguration().loginAddressBurst)
            var codes: [String?] = []
            for index in 0..<(burst + 5) {
                codes.append(
                    try await server.post(
                        "/v1/auth/challenge", ChallengeRequest(username: "nobody_\(index)"), from: "198.51.100.20"
                    ).errorCode)
            }
            #expect(codes.prefix(burst).allSatisfy { $0 == "unknown_account" })
            #expect(codes.dropFirst(burst).allSatisfy { $0 == "rate_limited" })
            // The same for login: refused before the (bogus) challenge is looked up.
            let login = #"{"challengeId":"\#(UUID())","deviceName":"x","signature":"AAAA"}"#
            var loginCodes: [String?] = []
            for _ in 0..<(burst + 2) {
                loginCodes.append(try await server.post("/v1/auth/login", json: login, from: "198.51.100.20").errorCode)
            }
            #expect(loginCodes.prefix(burst).allSatisfy { $0 == "challenge_expired" })
            #expect(loginCodes.dropFirst(burst).allSatisfy { $0 == "rate_limited" })

            let elsewhere = try await server.post(
                "/v1/auth/challenge", ChallengeRequest(username: "alice"), from: "198.51.100.21")
            #expect(elsewhere.status == .ok)
        }
    }

    @Test("an attacker on many addresses cannot try one account faster than its bucket; other accounts still log in")
    func manyAddressesOneAccount() async throws {
        try await TestServer.run(configure: Self.behindProxy) { server in
            _ = try await server.register("alice")
            let carol = try await server.register("carol")
            let burst = Int(ServerConfiguration().loginAccountBurst)
            var statuses: [HTTPResponse.Status] = []
            for index in 0..<(burst + 10) {
                statuses.append(
                    try await server.post("/v1/auth/challenge", ChallengeRequest(username: "alice"), from: "10.1.\(index).1")
                        .status)
            }
            // alice's own registration logged in once: the rest of the burst is left for the attacker.
            #expect(statuses.prefix(burst - 1).allSatisfy { $0 == .ok })
            #expect(statuses.dropFirst(burst - 1).allSatisfy { $0 == .tooManyRequests })
            // IPv6 clients count per /64: varying the low bits does not give fresh buckets.
            var v6: [HTTPResponse.Status] = []
            for index in 0..<(Int(ServerConfiguration().loginAddressBurst) + 2) {
                v6.append(
                    try await server.post(
                        "/v1/auth/challenge", ChallengeRequest(username: "nobody_\(index)"), from: "2001:db8:5:6::\(index + 1)"
                    ).status)
            }
            #expect(v6.last == .tooManyRequests)
            // carol logs in a second device as usual.
            let tablet = try await server.addDevice(to: carol, named: "tablet")
            #expect(try await tablet.call(.listDevices, EmptyBody(), as: DeviceListResponse.self).devices.count == 2)
        }
    }

    @Test("one address taking the registration burst does not stop a registration from another address")
    func registrationBurst() async throws {
        try await TestServer.run(configure: Self.behindProxy) { server in
            var accepted = 0
            var refusal: TestResponse?
            for index in 0..<600 {
                let request = RegisterRequest(username: "spam_\(index)", identityKey: IdentityKeyPair().publicKey.rawBytes)
                let response = try await server.post("/v1/accounts", request, from: "198.51.100.66")
                if response.status == .tooManyRequests {
                    refusal = response
                    break
                }
                #expect(response.status == .created)
                accepted += 1
            }
            let limited = try #require(refusal, "600 registrations from one address were all accepted")
            #expect(accepted == Int(ServerConfiguration().registerAddressBurst))
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 >= 1)
            // Another address over HTTP, and a client over the WebSocket from the TCP peer.
            let other = RegisterRequest(username: "newcomer", identityKey: IdentityKeyPair().publicKey.rawBytes)
            #expect(try await server.post("/v1/accounts", other, from: "203.0.113.50").status == .created)
            let viaSocket = try await server.register("alice")
            #expect(viaSocket.profile.username == "alice")
        }
    }

    @Test("drained-prekey attempt over the WebSocket: 429 with retryAfter long before the one-time prekeys run out")
    func drainOverWebSocket() async throws {
        try await TestServer.run(configure: Self.slowRefills) { server in
            let bob = try await server.register("bob_b")
            let mallory = try await server.register("mallory")
            let before = try await bob.call(.keyStatus, EmptyBody(), as: KeyStatus.self)
            var fetched = 0
            var limit: HeliographError?
            for _ in 0..<50 {
                do {
                    _ = try await mallory.call(.fetchKeys, FetchKeysRequest(username: "bob_b"), as: FetchKeysResponse.self)
                    fetched += 1
                } catch let error as HeliographError {
                    limit = error
                    break
                }
            }
            let error = try #require(limit, "50 fetches of one device's keys were all answered")
            #expect(error.code == .rateLimited)
            #expect((error.retryAfterSeconds ?? 0) >= 1)
            #expect(fetched == Int(ServerConfiguration().fetchKeysDeviceBurst))
            let after = try await bob.call(.keyStatus, EmptyBody(), as: KeyStatus.self)
            #expect(after.oneTimePrekeys == before.oneTimePrekeys - fetched)
            #expect(after.oneTimePrekeys > 0)
            // Another sender is refused too while bob's device is drained: the limit is the device's.
            let eve = try await server.register("eve_e")
            await #expect(throws: HeliographError(.rateLimited, "")) {
                _ = try await eve.call(.fetchKeys, FetchKeysRequest(username: "bob_b"), as: FetchKeysResponse.self)
            }
        }
    }

    @Test("drained-prekey attempt over HTTP: 429 with Retry-After and retryAfter in the body")
    func drainOverHTTP() async throws {
        try await TestServer.run(configure: Self.slowRefills) { server in
            let bob = try await server.register("bob_b")
            let mallory = try await server.register("mallory")
            var fetched = 0
            var refusal: TestResponse?
            for _ in 0..<50 {
                let response = try await server.http(.post, "/v1/keys/bob_b", token: mallory.profile.token)
                if response.status == .tooManyRequests {
                    refusal = response
                    break
                }
                #expect(response.status == .ok)
                fetched += 1
            }
            let limited = try #require(refusal, "50 fetches of one device's keys were all answered")
            #expect(fetched == Int(ServerConfiguration().fetchKeysDeviceBurst))
            #expect(limited.errorCode == "rate_limited")
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect((try limited.decode(ErrorEnvelope.self).error.retryAfter ?? 0) >= 1)
            #expect(try await bob.call(.keyStatus, EmptyBody(), as: KeyStatus.self).oneTimePrekeys > 0)
        }
    }

    @Test("one account sweeping many accounts' keys hits its own limit; other requesters are unaffected")
    func fetchSweepPerRequester() async throws {
        try await TestServer.run(configure: Self.slowRefills) { server in
            let targets = ["t_one", "t_two", "t_three", "t_four"]
            for name in targets { _ = try await server.register(name) }
            let mallory = try await server.register("mallory")
            let burst = Int(ServerConfiguration().fetchKeysAccountBurst)
            var fetched = 0
            var limit: HeliographError?
            for index in 0..<(burst + 5) {
                do {
                    let name = targets[index % targets.count]
                    _ = try await mallory.call(.fetchKeys, FetchKeysRequest(username: name), as: FetchKeysResponse.self)
                    fetched += 1
                } catch let error as HeliographError {
                    limit = error
                    break
                }
            }
            #expect(limit?.code == .rateLimited)
            // Registration fetched the own account's keys once, maybe: at most the burst either way.
            #expect(fetched <= burst && fetched >= burst - 1)
            let erin = try await server.register("erin_e")
            let keys = try await erin.call(.fetchKeys, FetchKeysRequest(username: "t_four"), as: FetchKeysResponse.self)
            #expect(keys.bundles.count == 1)
        }
    }
}

@Suite("Who may read /metrics")
struct MetricsAccessTests {
    static let token = "metrics-token-0123456789abcdef"

    @Test("with a token: refused without it or with a wrong one (401), served with it")
    func token() async throws {
        try await TestServer.run(configure: { $0.metricsToken = Self.token }) { server in
            let missing = try await server.http(.get, "/metrics")
            #expect(missing.status == .unauthorized)
            #expect(missing.errorCode == "unauthenticated")
            #expect(
                (try missing.decode(ErrorEnvelope.self).error.message).contains("Authorization: Bearer"))
            let wrong = try await server.http(.get, "/metrics", token: Self.token + "x")
            #expect(wrong.status == .unauthorized)
            let served = try await server.http(.get, "/metrics", token: Self.token)
            #expect(served.status == .ok)
            #expect(String(buffer: served.body).contains("heliograph_connected_devices"))
        }
    }

    @Test("without token or address: answered to loopback peers, refused (403) to proxied requests")
    func loopbackOnly() async throws {
        try await TestServer.run { server in
            #expect(try await server.http(.get, "/metrics").status == .ok)
            let proxied = try await server.client.execute(
                uri: "/metrics", method: .get, headers: [.init("X-Forwarded-For")!: "198.51.100.7"], body: nil)
            #expect(proxied.status == .forbidden)
            #expect(proxied.errorCode == "forbidden")
            #expect((try proxied.decode(ErrorEnvelope.self).error.message).contains("--metrics-token"))
        }
    }

    @Test("with a metrics address: served there (with the token if set), not on the main port")
    func separateAddress() async throws {
        for token in [nil, Self.token] {
            var configuration = ServerConfiguration()
            configuration.port = 0
            configuration.metricsAddress = MetricsAddress(host: "127.0.0.1", port: 0)
            configuration.metricsToken = token
            let metricsPort = PortBox()
            let storage = try SQLiteStorage(directory: temporaryDirectory("metrics"))
            let app = buildApplication(
                configuration: configuration, storage: storage, logger: .init(label: "test-metrics"),
                onMetricsServerRunning: { port in metricsPort.set(port) })
            try await app.test(.live) { client in
                let main = try await client.execute(uri: "/metrics", method: .get)
                #expect(main.status == .notFound)
                #expect(main.errorCode == "not_found")
                let port = try await metricsPort.wait()
                try await TestClient.withClient(host: "127.0.0.1", port: port) { metrics in
                    let plain = try await metrics.get("/metrics")
                    #expect(plain.head.status == (token == nil ? .ok : .unauthorized))
                    if let token {
                        let authorized = try await metrics.get("/metrics", headers: [.authorization: "Bearer \(token)"])
                        #expect(authorized.head.status == .ok)
                        #expect(authorized.body.map { String(buffer: $0) }?.contains("heliograph_connected_devices") == true)
                    } else {
                        #expect(plain.body.map { String(buffer: $0) }?.contains("heliograph_connected_devices") == true)
                    }
                }
            }
        }
    }
}

/// The bound port of the metrics listener, reported from the server's start-up.
private final class PortBox: Sendable {
    private let port = Mutex<Int?>(nil)

    func set(_ value: Int) { port.withLock { $0 = value } }

    func wait() async throws -> Int {
        for _ in 0..<500 {
            if let value = port.withLock({ $0 }) { return value }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw HeliographError(.internalError, "the metrics listener did not start")
    }
}

extension TestServer {
    /// POSTs `body` as JSON as if from `address` (the server trusts `X-Forwarded-For`).
    func post(_ uri: String, _ body: some Encodable, from address: String) async throws -> TestResponse {
        try await post(uri, json: String(decoding: try WireCodec.encode(body), as: UTF8.self), from: address)
    }

    /// POSTs a JSON text as if from `address`.
    func post(_ uri: String, json: String, from address: String) async throws -> TestResponse {
        // A client's own entries come first; the proxy appends the real peer last.
        let headers: HTTPFields = [
            .contentType: "application/json", .init("X-Forwarded-For")!: "192.0.2.1, \(address)",
        ]
        return try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: json))
    }
}
