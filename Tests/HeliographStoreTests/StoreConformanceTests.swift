import Foundation
import HeliographCore
import HeliographStore
import Testing

/// The behaviour every storage backend must show. New stores add their tests here.
@Suite("Store conformance")
struct StoreConformanceTests {
    /// Two users, alice with one device and bob with two, stored in `storage`.
    struct People {
        let alice: Account
        let aliceLaptop: Device
        let bob: Account
        let bobPhone: Device
        let bobLaptop: Device
    }

    func people(in storage: any HeliographStorage) async throws -> People {
        let alice = try Fixture.account("alice")
        let bob = try Fixture.account("bob_b")
        try await storage.accounts.insert(alice)
        try await storage.accounts.insert(bob)
        let aliceLaptop = Fixture.device(of: alice)
        let bobPhone = Fixture.device(of: bob, named: "phone")
        let bobLaptop = Fixture.device(of: bob, named: "laptop", at: Fixture.start + 1)
        for device in [aliceLaptop, bobPhone, bobLaptop] { try await storage.devices.insert(device) }
        return People(alice: alice, aliceLaptop: aliceLaptop, bob: bob, bobPhone: bobPhone, bobLaptop: bobLaptop)
    }

    // MARK: Accounts

    @Test("accounts are found by id and by name in any case", arguments: Backend.all)
    func accountLookup(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try Fixture.account("Alice_W")
            try await storage.accounts.insert(alice)
            #expect(try await storage.accounts.account(id: alice.id) == alice)
            #expect(try await storage.accounts.account(username: try Username(validating: "alice_w"))?.id == alice.id)
            #expect(
                try await storage.accounts.account(username: try Username(validating: "ALICE_W"))?.username.display == "Alice_W")
            #expect(try await storage.accounts.account(username: try Username(validating: "nobody")) == nil)
            #expect(try await storage.accounts.account(id: .random()) == nil)
        }
    }

    @Test("a username is unique case-insensitively", arguments: Backend.all)
    func uniqueUsernames(_ backend: Backend) async throws {
        try await backend.with { storage in
            try await storage.accounts.insert(try Fixture.account("alice"))
            await #expect(throws: HeliographError(.usernameTaken, "")) {
                try await storage.accounts.insert(try Fixture.account("ALICE"))
            }
        }
    }

    // MARK: Devices and sessions

    @Test("devices are listed oldest first, and revocation sticks to the first time", arguments: Backend.all)
    func devices(_ backend: Backend) async throws {
        try await backend.with { storage in
            let people = try await people(in: storage)
            let listed = try await storage.devices.devices(of: people.bob.id)
            #expect(listed.map(\.id) == [people.bobPhone.id, people.bobLaptop.id])
            let revoked = try await storage.devices.revoke(people.bobPhone.id, at: Fixture.start + 10)
            #expect(revoked?.revokedAt == Fixture.start + 10)
            let again = try await storage.devices.revoke(people.bobPhone.id, at: Fixture.start + 20)
            #expect(again?.revokedAt == Fixture.start + 10)
            #expect(try await storage.devices.device(id: people.bobPhone.id)?.isActive == false)
            #expect(try await storage.devices.revoke(.random(), at: Fixture.start) == nil)
        }
    }

    @Test("sessions are found by token hash and swept after expiry", arguments: Backend.all)
    func sessions(_ backend: Backend) async throws {
        try await backend.with { storage in
            let people = try await people(in: storage)
            let session = DeviceSession(
                tokenHash: Data(repeating: 1, count: 32), accountID: people.alice.id, deviceID: people.aliceLaptop.id,
                createdAt: Fixture.start, expiresAt: Fixture.start + 100)
            try await storage.sessions.insert(session)
            #expect(try await storage.sessions.session(tokenHash: session.tokenHash) == session)
            #expect(try await storage.sessions.session(tokenHash: Data(repeating: 2, count: 32)) == nil)
            #expect(try await storage.sessions.deleteExpired(before: Fixture.start + 50) == 0)
            #expect(try await storage.sessions.deleteExpired(before: Fixture.start + 101) == 1)
            #expect(try await storage.sessions.session(tokenHash: session.tokenHash) == nil)
        }
    }

    @Test("a challenge is consumed exactly once, even by concurrent logins", arguments: Backend.all)
    func challengeOnce(_ backend: Backend) async throws {
        try await backend.with { storage in
            let people = try await people(in: storage)
            let challenge = LoginChallenge(
                id: UUID(), accountID: people.alice.id, nonce: Data(repeating: 9, count: 32), expiresAt: Fixture.start + 300)
            try await storage.challenges.insert(challenge)
            let winners = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<8 { group.addTask { try await storage.challenges.consume(id: challenge.id) != nil } }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(winners == 1)
            #expect(try await storage.challenges.consume(id: challenge.id) == nil)
        }
    }

    // MARK: Inboxes

    @Test("each recipient device gets its own gapless sequence", arguments: Backend.all)
    func sequences(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            for index in 1...3 {
                let receipt = try await storage.inbox.enqueue(
                    try Fixture.message(
                        "m\(index)", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone, p.bobLaptop]))
                #expect(receipt.sequences == [p.bobPhone.id: Int64(index), p.bobLaptop.id: Int64(index)])
                #expect(!receipt.duplicate)
            }
            // A message only to the phone advances the phone alone.
            let receipt = try await storage.inbox.enqueue(
                try Fixture.message("m4", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone]))
            #expect(receipt.sequences == [p.bobPhone.id: 4])
            let phone = try await storage.inbox.envelopes(for: p.bobPhone.id, after: 0, limit: 100)
            #expect(phone.map(\.sequence) == [1, 2, 3, 4])
            #expect(phone.map(\.messageID.rawValue) == ["m1", "m2", "m3", "m4"])
            #expect(phone.first?.sender.username == p.alice.username)
            #expect(phone.first?.payload == Data("ciphertext".utf8))
            #expect(try await storage.inbox.envelopes(for: p.bobLaptop.id, after: 1, limit: 1).map(\.sequence) == [2])
            #expect(try await storage.inbox.lastSequence(of: p.bobPhone.id) == 4)
            #expect(try await storage.inbox.lastSequence(of: p.bobLaptop.id) == 3)
        }
    }

    @Test("a repeated message id from the same device is stored once", arguments: Backend.all)
    func idempotentEnqueue(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            let message = try Fixture.message("same", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone])
            let first = try await storage.inbox.enqueue(message)
            var retry = message
            retry.serverTime = Fixture.start + 5
            let second = try await storage.inbox.enqueue(retry)
            #expect(second.duplicate)
            #expect(second.sequences == first.sequences)
            #expect(second.serverTime == first.serverTime)
            #expect(try await storage.inbox.envelopes(for: p.bobPhone.id, after: 0, limit: 10).count == 1)
        }
    }

    @Test(
        "a repeated message id with other content is refused and the first content kept; without digests it is a retry",
        arguments: Backend.all)
    func idempotencyConflict(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            var first = try Fixture.message(
                "reused", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone], payload: "first")
            first.contentHash = Data(repeating: 1, count: 32)
            let accepted = try await storage.inbox.enqueue(first)
            #expect(!accepted.duplicate)

            // Same id, other content: refused, nothing stored.
            var other = try Fixture.message(
                "reused", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone], payload: "second")
            other.contentHash = Data(repeating: 2, count: 32)
            other.serverTime = Fixture.start + 5
            await #expect(throws: HeliographError(.idempotencyConflict, "")) {
                try await storage.inbox.enqueue(other)
            }
            // Same id, same content: a retry, answered with the first receipt.
            var retry = first
            retry.serverTime = Fixture.start + 6
            let repeated = try await storage.inbox.enqueue(retry)
            #expect(repeated.duplicate)
            #expect(repeated.sequences == accepted.sequences)
            #expect(repeated.serverTime == accepted.serverTime)
            let stored = try await storage.inbox.envelopes(for: p.bobPhone.id, after: 0, limit: 10)
            #expect(stored.map(\.payload) == [Data("first".utf8)])
            #expect(try await storage.inbox.lastSequence(of: p.bobPhone.id) == 1)

            // A record without a digest (written before digests were kept) cannot be compared:
            // any repeat counts as a retry, as it always did.
            let old = try Fixture.message(
                "undigested", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone], payload: "old")
            _ = try await storage.inbox.enqueue(old)
            var later = try Fixture.message(
                "undigested", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone], payload: "new")
            later.contentHash = Data(repeating: 3, count: 32)
            #expect(try await storage.inbox.enqueue(later).duplicate)
            #expect(
                try await storage.inbox.envelopes(for: p.bobPhone.id, after: 1, limit: 10).map(\.payload) == [Data("old".utf8)])

            // The digest belongs to the sending device's id: another device may use the same id.
            let bobAsSender = try Fixture.message(
                "reused", from: p.bob, device: p.bobLaptop, to: p.alice, devices: [p.aliceLaptop], payload: "bob's")
            #expect(try await storage.inbox.enqueue(bobAsSender).duplicate == false)
        }
    }

    @Test("concurrent sends to one device get distinct consecutive sequence numbers", arguments: Backend.all)
    func concurrentEnqueue(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<40 {
                    group.addTask {
                        _ = try await storage.inbox.enqueue(
                            try Fixture.message(
                                "c\(index)", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone]))
                    }
                }
                try await group.waitForAll()
            }
            let sequences = try await storage.inbox.envelopes(for: p.bobPhone.id, after: 0, limit: 100).map(\.sequence)
            #expect(sequences == Array(1...40))
        }
    }

    @Test("acknowledging deletes up to the sequence and refuses numbers never sent", arguments: Backend.all)
    func acknowledge(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            for index in 1...5 {
                _ = try await storage.inbox.enqueue(
                    try Fixture.message("a\(index)", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone]))
            }
            #expect(try await storage.inbox.acknowledge(p.bobPhone.id, through: 3) == 3)
            #expect(try await storage.inbox.envelopes(for: p.bobPhone.id, after: 0, limit: 10).map(\.sequence) == [4, 5])
            // Acknowledging backwards is harmless and keeps the higher position.
            #expect(try await storage.inbox.acknowledge(p.bobPhone.id, through: 1) == 3)
            await #expect(throws: HeliographError(.ackOutOfRange, "")) {
                try await storage.inbox.acknowledge(p.bobPhone.id, through: 6)
            }
            await #expect(throws: HeliographError(.ackOutOfRange, "")) {
                try await storage.inbox.acknowledge(p.bobPhone.id, through: -1)
            }
            #expect(try await storage.inbox.envelopes(for: p.bobPhone.id, after: 0, limit: 10).count == 2)
        }
    }

    @Test("a revoked device gets no new envelopes and loses its inbox", arguments: Backend.all)
    func revokedInbox(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            _ = try await storage.inbox.enqueue(
                try Fixture.message("r1", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone, p.bobLaptop]))
            _ = try await storage.devices.revoke(p.bobPhone.id, at: Fixture.start + 1)
            #expect(try await storage.inbox.envelopes(for: p.bobPhone.id, after: 0, limit: 10).isEmpty)
            let receipt = try await storage.inbox.enqueue(
                try Fixture.message("r2", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone, p.bobLaptop]))
            #expect(receipt.sequences == [p.bobLaptop.id: 2])
        }
    }

    @Test("retention deletes old envelopes and their idempotency records", arguments: Backend.all)
    func retention(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            let old = try Fixture.message(
                "old", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone], at: Fixture.start)
            _ = try await storage.inbox.enqueue(old)
            _ = try await storage.inbox.enqueue(
                try Fixture.message(
                    "new", from: p.alice, device: p.aliceLaptop, to: p.bob, devices: [p.bobPhone], at: Fixture.start + 100))
            #expect(try await storage.inbox.deleteExpired(before: Fixture.start + 50) == 1)
            #expect(
                try await storage.inbox.envelopes(for: p.bobPhone.id, after: 0, limit: 10).map(\.messageID.rawValue) == ["new"])
            // The sequence never goes back, even after old envelopes are gone.
            #expect(try await storage.inbox.lastSequence(of: p.bobPhone.id) == 2)
        }
    }
}

@Suite("SQLite backend")
struct SQLiteBackendTests {
    @Test("committed envelopes survive closing and reopening the file")
    func durableAcrossReopen() async throws {
        let directory = temporaryDirectory("reopen")
        let alice = try Fixture.account("alice")
        let bob = try Fixture.account("bob_b")
        let laptop = Fixture.device(of: alice)
        let phone = Fixture.device(of: bob)
        do {
            let storage = try SQLiteStorage(directory: directory)
            try await storage.accounts.insert(alice)
            try await storage.accounts.insert(bob)
            try await storage.devices.insert(laptop)
            try await storage.devices.insert(phone)
            _ = try await storage.inbox.enqueue(try Fixture.message("m1", from: alice, device: laptop, to: bob, devices: [phone]))
            try await storage.close()
        }
        let reopened = try SQLiteStorage(directory: directory)
        #expect(try await reopened.inbox.envelopes(for: phone.id, after: 0, limit: 10).map(\.messageID.rawValue) == ["m1"])
        #expect(try await reopened.accounts.account(username: bob.username)?.id == bob.id)
    }

    @Test("a database from a newer version is refused with a reason")
    func newerSchemaRefused() async throws {
        let directory = temporaryDirectory("newer")
        let storage = try SQLiteStorage(directory: directory)
        try await storage.close()
        // Simulate a newer Heliograph having applied a migration this version does not know.
        let path = directory.appendingPathComponent("heliograph.sqlite").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"INSERT INTO grdb_migrations VALUES ('v99-from-the-future')\"); c.commit()",
            path,
        ]
        try process.run()
        // Poll rather than block: a blocked cooperative thread can starve the other tests.
        while process.isRunning { try await Task.sleep(for: .milliseconds(10)) }
        #expect(process.terminationStatus == 0)
        do {
            _ = try SQLiteStorage(directory: directory)
            Issue.record("opened a database with an unknown migration")
        } catch let error as StorageError {
            #expect("\(error)".contains("v99-from-the-future"))
        }
    }
}
