import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import Testing

/// The franking sealing key and `admin rotate-franking-key`, on the real executables.
extension ProcessTests {
    /// Receives and opens one message.
    func openOne(from client: HeliographClient) async throws -> DecryptedMessage {
        let envelope = try await receive(1, from: client)[0]
        guard case .message(let message) = try await client.open(envelope) else {
            throw HeliographError(.internalError, "the message did not open")
        }
        return message
    }

    /// The key id in a message's franking tag (01 ‖ key id ‖ HMAC).
    func keyID(of message: DecryptedMessage) throws -> UInt32 {
        let tag = try #require(message.envelope.frankingTag)
        try #require(tag.count == 37 && tag.first == 1)
        return tag.dropFirst().prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    @Test(
        "SQLite: the sealing key file is made beside the database; rotate-franking-key; a missing or wrong key stops the server")
    func sealingKeyAndRotation() async throws {
        let data = temporaryDirectory("franking")
        defer { _ = try? FileManager.default.removeItem(at: data) }
        let keyFile = data.appendingPathComponent("franking-sealing.key")
        let profiles = ProfileStore(directory: data.appendingPathComponent("profiles"))
        let first = try await ServerProcess(dataDirectory: data)
        // Created on first start, readable only by the server's user, outside the database.
        let attributes = try FileManager.default.attributesOfItem(atPath: keyFile.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let sealingKey = try Data(contentsOf: keyFile)
        #expect(Data(base64Encoded: String(decoding: sealingKey, as: UTF8.self).trimmingCharacters(in: .newlines))?.count == 32)

        let alice = try await HeliographClient.register(
            username: "alice", server: first.url, deviceName: "laptop", profileName: "alice", store: profiles)
        let bob = try await HeliographClient.register(
            username: "bob_b", server: first.url, deviceName: "phone", profileName: "bob", store: profiles)
        try await alice.sendEncrypted(text: "before", to: "bob_b")
        let before = try await openOne(from: bob)
        #expect(try keyID(of: before) == 1)
        #expect(try await bob.verifyReport(of: before).verified)

        // Rotation beside the running server, on the same database.
        let rotation = try await heliograph(["admin", "rotate-franking-key", "--data-dir", data.path, "--log-level", "warning"])
        #expect(rotation.status == 0, "\(rotation.error)")
        #expect(rotation.output.contains("franking key 2 is now current"))
        #expect(rotation.output.contains("kept for verification: 1"))
        #expect(try await bob.verifyReport(of: before).verified)
        try await first.stop()

        // Without the key file: a clear refusal, and no new key file in its place.
        try FileManager.default.moveItem(at: keyFile, to: data.appendingPathComponent("backup.key"))
        let missing = try await heliograph(["serve", "--port", "0", "--data-dir", data.path])
        #expect(missing.status != 0)
        #expect(missing.error.contains("franking-sealing.key does not exist"), "\(missing.error)")
        #expect(missing.error.contains("restore"))
        #expect(!FileManager.default.fileExists(atPath: keyFile.path))
        // A different key: refused, naming the key that does not open.
        try Data(Data(repeating: 0x42, count: 32).base64EncodedString().utf8).write(to: keyFile)
        let wrong = try await heliograph(["serve", "--port", "0", "--data-dir", data.path])
        #expect(wrong.status != 0)
        #expect(wrong.error.contains("does not open with the configured sealing key"), "\(wrong.error)")
        let wrongRotation = try await heliograph(["admin", "rotate-franking-key", "--data-dir", data.path])
        #expect(wrongRotation.status != 0)
        // Also through the environment variable instead of the file.
        let fromEnvironment = try await heliograph(
            ["serve", "--port", "0", "--data-dir", data.path],
            environment: ["HELIOGRAPH_FRANKING_SEALING_KEY": Data(count: 32).base64EncodedString()])
        #expect(fromEnvironment.status != 0)
        #expect(fromEnvironment.error.contains("does not open"))

        // The restored key: the server starts, tags with key 2, and both reports verify.
        try FileManager.default.removeItem(at: keyFile)
        try FileManager.default.moveItem(at: data.appendingPathComponent("backup.key"), to: keyFile)
        let second = try await ServerProcess(dataDirectory: data)
        for name in ["alice", "bob"] {
            var profile = try profiles.load(name)
            profile.server = second.url
            try profiles.save(profile, as: name)
        }
        let alice2 = try HeliographClient(profileName: "alice", store: profiles)
        let bob2 = try HeliographClient(profileName: "bob", store: profiles)
        try await alice2.sendEncrypted(text: "after", to: "bob_b")
        let after = try await openOne(from: bob2)
        #expect(try keyID(of: after) == 2)
        #expect(try await bob2.verifyReport(of: after).verified)
        #expect(try await bob2.verifyReport(of: before).verified)
        try await second.stop()
    }

    @Test("PostgreSQL without a sealing key: the node refuses to start and says what to give")
    func postgresNeedsSealingKey() async throws {
        // Refused before connecting, so no database needs to be running.
        let result = try await heliograph(
            ["serve", "--port", "0", "--database", "postgres://heliograph@127.0.0.1:1/heliograph"],
            environment: ["HELIOGRAPH_FRANKING_SEALING_KEY": "", "HELIOGRAPH_FRANKING_SEALING_KEY_FILE": ""])
        #expect(result.status != 0)
        #expect(result.error.contains("--franking-sealing-key-file"), "\(result.error)")
        #expect(result.error.contains("HELIOGRAPH_FRANKING_SEALING_KEY"))
        #expect(result.error.split(separator: "\n").count <= 2)
    }
}

extension ProcessTests {
    @Test(
        "two nodes: after a rotation, a tag made with the new key on one node verifies at once on the other",
        .enabled(if: postgresURL != nil))
    func rotationAcrossNodes() async throws {
        let database = try await freshDatabase()
        let data = temporaryDirectory("franking-nodes")
        defer { _ = try? FileManager.default.removeItem(at: data) }
        let sealingKey = data.appendingPathComponent("shared-sealing.key")
        try Data(Data((0..<32).map { _ in UInt8.random(in: .min ... .max) }).base64EncodedString().utf8).write(to: sealingKey)
        let shared = ["--database", database, "--franking-sealing-key-file", sealingKey.path]
        let node1 = try await ServerProcess(dataDirectory: data, extraArguments: shared)
        let node2 = try await ServerProcess(dataDirectory: data, extraArguments: shared)
        let profiles = ProfileStore(directory: data.appendingPathComponent("profiles"))
        let alice = try await HeliographClient.register(
            username: "alice", server: node1.url, deviceName: "laptop", profileName: "alice", store: profiles)
        let bob = try await HeliographClient.register(
            username: "bob_b", server: node2.url, deviceName: "phone", profileName: "bob", store: profiles)

        try await alice.sendEncrypted(text: "tagged on node 1", to: "bob_b")
        let first = try await openOne(from: bob)
        #expect(try keyID(of: first) == 1)
        #expect(try await bob.verifyReport(of: first).verified)

        let rotation = try await heliograph(["admin", "rotate-franking-key", "--log-level", "warning"] + shared)
        #expect(rotation.status == 0, "\(rotation.error)")
        #expect(rotation.output.contains("franking key 2 is now current"))

        // Node 2 tags its first message now, with the new key; node 1 has only ever used key 1.
        try await bob.sendEncrypted(text: "tagged on node 2", to: "alice")
        let reply = try await openOne(from: alice)
        #expect(try keyID(of: reply) == 2)
        #expect(try await alice.verifyReport(of: reply).verified)
        #expect(try await bob.verifyReport(of: first).verified)
        try await node1.stop()
        try await node2.stop()
    }
}
