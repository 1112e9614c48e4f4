import Foundation
import HeliographCore
import HeliographStore

/// A storage backend the conformance suite runs against; each test opens a fresh, empty one.
struct Backend: CustomStringConvertible, Sendable {
    let description: String
    let open: @Sendable () async throws -> any HeliographStorage

    /// SQLite always; PostgreSQL joins when `HELIOGRAPH_TEST_POSTGRES_URL` is set.
    static var all: [Backend] { [.sqlite] }

    static let sqlite = Backend(description: "SQLite") {
        try SQLiteStorage(directory: temporaryDirectory("store"))
    }
}

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
