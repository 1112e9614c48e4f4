import Foundation
import HeliographCore
import HeliographStore
import HeliographStorePostgres
import Logging

/// A storage backend the conformance suite runs against; each test opens a fresh, empty one.
struct Backend: CustomStringConvertible, Sendable {
    let description: String
    let open: @Sendable () async throws -> any HeliographStorage

    /// SQLite always; PostgreSQL joins when `HELIOGRAPH_TEST_POSTGRES_URL` is set.
    static var all: [Backend] {
        var backends = [sqlite]
        if let url = postgresURL { backends.append(postgres(url)) }
        return backends
    }

    static var postgresURL: String? {
        ProcessInfo.processInfo.environment["HELIOGRAPH_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    static let sqlite = Backend(description: "SQLite") {
        try SQLiteStorage(directory: temporaryDirectory("store"))
    }

    /// A new database per test on the server at `url`, so tests never see each other's rows.
    static func postgres(_ url: String) -> Backend {
        Backend(description: "PostgreSQL") {
            let location = try await freshPostgresDatabase(url)
            // Few connections per test: many tests run at once against one server. A generous
            // deadline: forty sends serialised on one device's row, each a durable commit, can
            // take longer than production's 10 s while the whole suite loads two cores.
            // A generous connect deadline too: every test makes its own database, and a whole
            // suite of them starting at once queues on the server's catalog.
            return try await PostgresStorage(
                location: location, maximumConnections: 16, connectTimeout: .seconds(30), operationTimeout: .seconds(60),
                logger: quietLogger)
        }
    }
}

extension Backend {
    /// Opens a fresh storage, runs `body` with it, and closes it whatever happens.
    func with<T>(_ body: (any HeliographStorage) async throws -> T) async throws -> T {
        let storage = try await open()
        do {
            let result = try await body(storage)
            try await storage.close()
            return result
        } catch {
            try? await storage.close()
            throw error
        }
    }
}

/// Creates an empty database on the test server and returns its location.
func freshPostgresDatabase(_ url: String) async throws -> PostgresLocation {
    let admin = try PostgresLocation(url: url)
    let name = "heliograph_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
    return try await PostgresAdministration.createDatabase(named: String(name), using: admin, logger: quietLogger)
}

let quietLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .error
    return logger
}()

/// A new empty directory under the system temporary directory (`TMPDIR`, inside the work tree in CI).
func temporaryDirectory(_ label: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("heliograph-\(label)-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Test fixtures.
enum Fixture {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    static func account(_ name: String, at time: Date = start) throws -> Account {
        Account(
            id: .random(), username: try Username(validating: name), identityKey: Data(repeating: 7, count: 32), createdAt: time)
    }

    static func device(of account: Account, named name: String = "laptop", at time: Date = start) -> Device {
        Device(id: .random(), accountID: account.id, name: name, createdAt: time)
    }

    static func message(
        _ id: String, from sender: Account, device: Device, to recipient: Account, devices: [Device], at time: Date = start,
        payload: String = "ciphertext"
    ) throws -> OutgoingMessage {
        OutgoingMessage(
            messageID: try MessageID(validating: id),
            sender: EnvelopeSender(accountID: sender.id, username: sender.username, deviceID: device.id),
            recipientAccountID: recipient.id, recipientDeviceIDs: devices.map(\.id), serverTime: time,
            payload: Data(payload.utf8))
    }
}
