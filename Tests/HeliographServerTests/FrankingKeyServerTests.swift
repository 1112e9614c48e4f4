import Foundation
import GRDB
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import HeliographStore
import Testing

/// Receives and opens one end-to-end encrypted message.
private func openOne(from client: HeliographClient) async throws -> DecryptedMessage {
    let envelope = try await receive(1, from: client)[0]
    guard case .message(let message) = try await client.open(envelope) else {
        throw HeliographError(.internalError, "the message did not open")
    }
    return message
}

/// The key id a received message's franking tag names.
private func keyID(of message: DecryptedMessage) throws -> UInt32 {
    try Franking.ServerTag(bytes: try #require(message.envelope.frankingTag)).keyID
}

/// Every value stored anywhere in the SQLite database at `path` (blobs, and text as UTF-8 and,
/// where it decodes, as base64): what someone holding a copy of the file has.
private func everyStoredValue(at path: String) throws -> [Data] {
    var configuration = Configuration()
    configuration.readonly = true
    let database = try DatabaseQueue(path: path, configuration: configuration)
    defer { try? database.close() }
    return try database.read { db in
        var values: [Data] = []
        for table in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") {
            for row in try Row.fetchAll(db, sql: "SELECT * FROM \"\(table)\"") {
                for (_, value) in row {
                    switch value.storage {
                    case .blob(let data): values.append(data)
                    case .string(let text):
                        values.append(Data(text.utf8))
                        if let decoded = Data(base64Encoded: text) { values.append(decoded) }
                    default: break
                    }
                }
            }
        }
        return values
    }
}

/// Every 32-byte window of `value`: any place a 32-byte key could sit.
private func windows(_ value: Data) -> [Data] {
    let bytes = [UInt8](value)
    guard bytes.count >= Franking.size else { return [] }
    return (0...(bytes.count - Franking.size)).map { Data(bytes[$0..<$0 + Franking.size]) }
}

@Suite("Franking keys: sealed, rotated, retained")
struct FrankingKeyServerTests {
    @Test("a report forged with a database copy but without the sealing key fails verification")
    func forgedWithDatabaseCopy() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            try await alice.sendEncrypted(text: "see you at noon", to: "bob_b")
            let genuine = try await openOne(from: bob)
            #expect(try await bob.verifyReport(of: genuine).verified)

            // The attacker's copy of the database: every stored value, and every 32-byte window.
            let stored = try everyStoredValue(at: server.directory.appendingPathComponent("heliograph.sqlite").path)
            #expect(!stored.isEmpty)
            let candidates = Set(stored.flatMap(windows))

            // Offline: no candidate reproduces the genuine message's tag, so none is the key.
            let genuineTag = try Franking.ServerTag(bytes: try #require(genuine.envelope.frankingTag))
            let genuineContext = Franking.Context(
                commitment: try #require(genuine.envelope.frankingCommitment), senderAccount: alice.profile.accountID,
                senderDevice: alice.profile.deviceID, recipientAccount: bob.profile.accountID,
                recipientDevice: bob.profile.deviceID,
                serverTime: genuine.envelope.serverTime.millisecondsSince1970, messageID: genuine.envelope.messageID)
            let reproducing = try candidates.filter {
                Franking.isValidTag(
                    genuineTag, for: genuineContext, key: try Franking.ServerKey(id: genuineTag.keyID, secret: $0))
            }
            #expect(reproducing.isEmpty, "the database holds the franking key in usable form")

            // Online: a made-up message in Alice's name, tagged with each candidate that could be
            // key material (the franking key tables' windows), is rejected.
            let keyMaterial =
                try await server.storage.frankingKeys.keys().map(\.sealedKey)
                + (try everyStoredValue(at: server.directory.appendingPathComponent("heliograph.sqlite").path)
                    .filter { $0.count == Franking.size })
            let body = try WireCodec.encode(MessageContent(text: "something Alice never wrote", sentAt: 0))
            let frankingKey = Franking.newKey()
            let messageID = MessageID.random()
            let serverTime = genuine.envelope.serverTime.millisecondsSince1970 + 1000
            let context = Franking.Context(
                commitment: Franking.commitment(
                    frankingKey: frankingKey, messageID: messageID.rawValue, sender: alice.profile.accountID, body: body),
                senderAccount: alice.profile.accountID, senderDevice: alice.profile.deviceID,
                recipientAccount: bob.profile.accountID, recipientDevice: bob.profile.deviceID, serverTime: serverTime,
                messageID: messageID.rawValue)
            func report(tag: Data) async throws -> FrankedReportResponse {
                try await bob.call(
                    .verifyReport,
                    FrankedReportRequest(
                        messageId: messageID, senderAccountId: alice.profile.accountID, senderDeviceId: alice.profile.deviceID,
                        recipientDeviceId: bob.profile.deviceID, serverTime: serverTime, body: body, frankingKey: frankingKey,
                        frankingTag: tag),
                    as: FrankedReportResponse.self)
            }
            var tried = 0
            for candidate in Set(keyMaterial.flatMap(windows)) {
                // In the current form under the genuine key's id, and in the earlier bare form.
                let forged = Franking.tag(context, key: try Franking.ServerKey(id: genuineTag.keyID, secret: candidate))
                for tag in [forged, try Franking.ServerTag(bytes: forged).mac] {
                    let answer = try await report(tag: tag)
                    #expect(!answer.verified, "a tag made from stored bytes verified")
                    tried += 1
                }
            }
            #expect(tried >= 2 * 30)

            // Control: with the sealing key the same forgery would pass, so only the sealing key
            // stood in the way.
            let sealing = try #require(server.configuration.frankingSealingKey)
            let stolen = try #require(try await server.storage.frankingKeys.key(id: genuineTag.keyID))
            let opened = try Franking.ServerKey(
                id: stolen.id, secret: try sealing.open(stolen.sealedKey, keyID: stolen.id, purpose: .frankingTag))
            #expect(try await report(tag: Franking.tag(context, key: opened)).verified)
        }
    }

    @Test("rotation: older reports still verify, new messages name the new key, and after the retention the old key is gone")
    func rotation() async throws {
        let clock = ManualWallClock()
        try await TestServer.run(clock: clock) { configuration in
            configuration.sweepInterval = .milliseconds(50)
            // Sessions and envelopes outlive the jump over the franking key retention below.
            configuration.tokenLifetime = .seconds(1000 * 86400)
            configuration.retention = .seconds(1000 * 86400)
        } _: { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            try await alice.sendEncrypted(text: "before the rotation", to: "bob_b")
            let before = try await openOne(from: bob)
            #expect(try keyID(of: before) == 1)
            #expect(try await bob.verifyReport(of: before).verified)

            // What `heliograph admin rotate-franking-key` does, on the same database.
            let admin = FrankingKeyring(
                store: server.storage.frankingKeys, sealingKey: server.configuration.frankingSealingKey, clock: clock,
                retention: server.configuration.frankingKeyRetention)
            let rotated = try await admin.rotate()
            #expect(rotated.newKeyID == 2)
            #expect(rotated.deleted.isEmpty)
            #expect(try await bob.verifyReport(of: before).verified)

            // The node reads the current key again within its refresh interval.
            clock.advance(by: Double(server.configuration.frankingKeyRefreshInterval.components.seconds) + 1)
            try await alice.sendEncrypted(text: "after the rotation", to: "bob_b")
            let after = try await openOne(from: bob)
            #expect(try keyID(of: after) == 2)
            #expect(try await bob.verifyReport(of: after).verified)
            #expect(try await bob.verifyReport(of: before).verified)

            // Past the retention window the sweeper deletes key 1, and its reports stop verifying.
            clock.advance(by: Double(server.configuration.frankingKeyRetention.components.seconds))
            let deadline = ContinuousClock.now + .seconds(10)
            while try await server.storage.frankingKeys.key(id: 1) != nil, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(try await server.storage.frankingKeys.keys().map(\.id) == [2])
            let rejected = try await bob.verifyReport(of: before)
            #expect(!rejected.verified)
            #expect(rejected.reason?.contains("key 1") == true)
            #expect(rejected.reason?.contains("400 days") == true)
            #expect(try await bob.verifyReport(of: after).verified)
        }
    }

    @Test("past its retention a key is refused even before the sweep, and the next rotation deletes it")
    func retentionWithoutSweep() async throws {
        let storage = try SQLiteStorage(directory: temporaryDirectory("franking-retention"))
        let clock = ManualWallClock()
        let keyring = FrankingKeyring(
            store: storage.frankingKeys, sealingKey: .generate(), clock: clock, retention: .seconds(10 * 86400))
        let first = try await keyring.currentKey()
        #expect(first.id == 1)
        #expect(try await keyring.rotate() == (newKeyID: 2, deleted: []))
        guard case .key(let kept) = try await keyring.verificationKey(id: 1) else {
            Issue.record("the replaced key is not kept")
            return
        }
        #expect(kept.id == 1)

        clock.advance(by: 10 * 86400 + 1)
        guard case .expired(let retiredAt) = try await keyring.verificationKey(id: 1) else {
            Issue.record("a key past its retention was still used")
            return
        }
        #expect(retiredAt < clock.now())
        guard case .unknown = try await keyring.verificationKey(id: 7) else {
            Issue.record("a key id never stored was found")
            return
        }
        // Rotating deletes what is past the retention; the key it replaces stays.
        let third = try await keyring.rotate()
        #expect(third.newKeyID == 3)
        #expect(third.deleted == [1])
        #expect(try await storage.frankingKeys.keys().map(\.id) == [2, 3])
        try await storage.close()
    }

    @Test("a server without its sealing key cannot open the keys: a clear error, and no new key")
    func withoutSealingKey() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            try await alice.sendEncrypted(text: "tagged", to: "bob_b")
            let message = try await openOne(from: bob)
            let before = try await server.storage.frankingKeys.keys()
            #expect(before.map(\.id) == [1])

            let store = server.storage.frankingKeys
            let missing = FrankingKeyring(
                store: store, sealingKey: nil, clock: SystemWallClock(), retention: .seconds(86400))
            await #expect(throws: FrankingKeyError.noSealingKey) { try await missing.prepare() }
            await #expect(throws: FrankingKeyError.noSealingKey) { _ = try await missing.currentKey() }
            await #expect(throws: FrankingKeyError.noSealingKey) { _ = try await missing.rotate() }

            let wrong = FrankingKeyring(
                store: store, sealingKey: .generate(), clock: SystemWallClock(), retention: .seconds(86400))
            await #expect(throws: FrankingKeyError.cannotOpen(keyID: 1)) { try await wrong.prepare() }
            await #expect(throws: FrankingKeyError.cannotOpen(keyID: 1)) { _ = try await wrong.currentKey() }
            await #expect(throws: FrankingKeyError.cannotOpen(keyID: 1)) { _ = try await wrong.rotate() }
            await #expect(throws: FrankingKeyError.cannotOpen(keyID: 1)) { _ = try await wrong.verificationKey(id: 1) }
            #expect("\(FrankingKeyError.cannotOpen(keyID: 1))".contains("sealing key"))

            // Nothing was created or changed, and the real key still works.
            #expect(try await store.keys() == before)
            #expect(try await bob.verifyReport(of: message).verified)
        }
    }

    @Test("an earlier version's plain secret is sealed as key 0: its 32-byte tags still verify, the plain copy is gone")
    func plainSecretMigrated() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            // The state an earlier version left: a plain secret, and a message tagged with it in
            // the 32-byte form. (Written before this server made any key.)
            let plain = Franking.newServerSecret()
            _ = try await server.storage.secrets.secret(named: "franking-v1") { plain }
            try await alice.sendEncrypted(text: "tagged by this version", to: "bob_b")
            var old = try await openOne(from: bob)
            let oldTag = try Franking.ServerTag(bytes: try #require(old.envelope.frankingTag))
            #expect(oldTag.keyID == 1)
            // Re-tag the same message the way the earlier version did: the bare HMAC with the plain secret.
            let context = Franking.Context(
                commitment: try #require(old.envelope.frankingCommitment), senderAccount: alice.profile.accountID,
                senderDevice: alice.profile.deviceID, recipientAccount: bob.profile.accountID,
                recipientDevice: bob.profile.deviceID, serverTime: old.envelope.serverTime.millisecondsSince1970,
                messageID: old.envelope.messageID)
            let legacy = try Franking.ServerTag(
                bytes: Franking.tag(context, key: try Franking.ServerKey(id: 0, secret: plain))
            ).mac
            #expect(legacy.count == 32)
            old.envelope.frankingTag = legacy
            #expect(try await bob.verifyReport(of: old).verified)

            let keys = try await server.storage.frankingKeys.keys()
            #expect(keys.map(\.id) == [0, 1])
            #expect(keys[0].retiredAt != nil)
            #expect(keys[0].sealedKey.range(of: plain) == nil)
            let values = try everyStoredValue(at: server.directory.appendingPathComponent("heliograph.sqlite").path)
            #expect(!values.contains { $0.range(of: plain) != nil }, "the plain secret is still in the database")
        }
    }
}
