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
import Testing

/// Bounds how many test servers run at once (`HELIOGRAPH_TEST_SERVERS`, default 3). One per
/// test process: the bound is about the machine, which every test shares.
actor TestServerSlots {
    static let shared = TestServerSlots(
        capacity: ProcessInfo.processInfo.environment["HELIOGRAPH_TEST_SERVERS"].flatMap(Int.init) ?? 3)

    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(capacity: Int) { free = max(1, capacity) }

    func acquire() async throws {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty {
            free += 1
        } else {
            waiting.removeFirst().resume()
        }
    }
}

/// A real server on a real loopback socket, over a fresh SQLite file, for one test.
struct TestServer: Sendable {
    let client: any TestClientProtocol
    let url: URL
    let profiles: ProfileStore
    /// The server's database, for tests that look at what it stores.
    let storage: SQLiteStorage
    /// The directory of the database file.
    let directory: URL
    /// The configuration the server runs with (its franking sealing key included).
    let configuration: ServerConfiguration
    /// The storage the server runs over: `storage` itself, or a wrapper around it.
    let served: any HeliographStorage

    /// Starts a server with `configure` applied to test defaults, runs `body`, stops the server.
    static func run(
        clock: any WallClock = SystemWallClock(),
        configure: (inout ServerConfiguration) -> Void = { _ in },
        serving wrap: (SQLiteStorage) -> any HeliographStorage = { $0 },
        _ body: @Sendable (TestServer) async throws -> Void
    ) async throws {
        // Swift Testing starts every test at once; hundreds of servers on two cores starve each
        // other into timeouts. A few run at a time, the others wait their turn.
        try await TestServerSlots.shared.acquire()
        defer { Task { await TestServerSlots.shared.release() } }
        let directory = temporaryDirectory("server")
        var configuration = ServerConfiguration()
        configuration.port = 0
        // The test client opens its connection when the server starts and may first use it
        // much later on a busy machine; tests of the header timeout set their own.
        configuration.headerTimeout = .seconds(120)
        // As `heliograph serve` always has one; a test may take it away.
        configuration.frankingSealingKey = .generate()
        configure(&configuration)
        let storage = try SQLiteStorage(directory: directory)
        var logger = Logger(label: "test-server")
        logger.logLevel = .warning
        // The server may run over a wrapper that misbehaves on purpose (HostileStorage).
        let served = wrap(storage)
        let app = buildApplication(configuration: configuration, storage: served, clock: clock, logger: logger)
        let configured = configuration
        try await app.test(.live) { client in
            let server = TestServer(
                client: client, url: URL(string: "http://localhost:\(client.port!)")!,
                profiles: ProfileStore(directory: directory.appendingPathComponent("profiles")), storage: storage,
                directory: directory, configuration: configured, served: served)
            try await body(server)
        }
    }

    /// Registers an account with one device, in a profile of the same name. Without
    /// `encryption` no end-to-end keys are published (for servers with tiny frame limits).
    func register(_ name: String, device: String = "laptop", encryption: Bool = true) async throws -> HeliographClient {
        try await HeliographClient.register(
            username: name, server: url, deviceName: device, profileName: "\(name)-\(device)", store: profiles,
            encryption: encryption)
    }

    /// Logs another device in to the account of `client`, which approves it by the code the
    /// new device shows (as a person would type it).
    func addDevice(
        to client: HeliographClient, named device: String, encryption: Bool = true
    ) async throws
        -> HeliographClient
    {
        let profile = client.profile
        return try await HeliographClient.login(
            username: profile.username, identityPrivateKey: profile.identityPrivateKey, server: url, deviceName: device,
            profileName: "\(profile.username)-\(device)", store: profiles, encryption: encryption,
            approvalTimeout: .seconds(20)
        ) { pending in
            try await client.approveDevice(code: pending.code)
        }
    }

    /// A raw socket, not yet authenticated.
    func connect() async throws -> HeliographConnection {
        try await HeliographConnection.connect(to: url)
    }

    /// A raw socket authenticated as `client`'s device.
    func connect(as client: HeliographClient, after: Int64? = nil) async throws -> HeliographConnection {
        let connection = try await connect()
        _ = try await connection.request(
            .authenticate, AuthenticateRequest(token: client.profile.token, after: after), as: SessionInfo.self)
        return connection
    }

    /// An HTTP request with an optional JSON body and bearer token.
    func http(
        _ method: HTTPRequest.Method, _ uri: String, json: String? = nil, token: String? = nil
    ) async throws
        -> TestResponse
    {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        if json != nil { headers[.contentType] = "application/json" }
        return try await client.execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
    }
}

extension TestResponse {
    /// The error code of a JSON error response.
    var errorCode: String? {
        (try? JSONDecoder().decode(ErrorEnvelope.self, from: Data(body.readableBytesView)))?.error.code
    }

    /// The body decoded as `T`.
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: Data(body.readableBytesView))
    }
}

/// Receives `count` messages from `client`, failing after `timeout`.
func receive(_ count: Int, from client: HeliographClient, timeout: Duration = .seconds(10)) async throws -> [IncomingMessage] {
    try await withThrowingTaskGroup(of: [IncomingMessage]?.self) { group in
        group.addTask {
            var received: [IncomingMessage] = []
            guard count > 0 else { return received }
            for try await message in client.messages() {
                received.append(message)
                if received.count == count {
                    try await client.acknowledge(message)
                    break
                }
            }
            return received
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        guard let messages = first else {
            throw HeliographError(.internalError, "timed out waiting for \(count) messages")
        }
        return messages
    }
}

/// The next event of a raw socket, or nil after `timeout` or when it closed.
func nextEvent(_ connection: HeliographConnection, timeout: Duration = .seconds(5)) async -> ConnectionEvent? {
    await withTaskGroup(of: ConnectionEvent?.self) { group in
        group.addTask {
            var iterator = connection.events.makeAsyncIterator()
            return await iterator.next()
        }
        group.addTask {
            try? await Task.sleep(for: timeout)
            return nil
        }
        let first = await group.next()!
        group.cancelAll()
        return first
    }
}

/// A new empty directory under `TMPDIR`.
func temporaryDirectory(_ label: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("heliograph-\(label)-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
