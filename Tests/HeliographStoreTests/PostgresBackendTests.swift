import Foundation
import HeliographCore
import HeliographStore
import HeliographStorePostgres
import Testing

@Suite("PostgreSQL backend", .enabled(if: Backend.postgresURL != nil, "set HELIOGRAPH_TEST_POSTGRES_URL"))
struct PostgresBackendTests {
    @Test("a database migrated by a newer version is refused")
    func newerSchema() async throws {
        let location = try await freshPostgresDatabase(Backend.postgresURL!)
        let storage = try await PostgresStorage(location: location, logger: quietLogger)
        try await storage.close()
        try await PostgresAdministration.execute(
            "INSERT INTO heliograph_migrations (id) VALUES ('v99-from-the-future')", at: location, logger: quietLogger)
        do {
            _ = try await PostgresStorage(location: location, logger: quietLogger)
            Issue.record("opened a database with an unknown migration")
        } catch let error as StorageError {
            #expect("\(error)".contains("v99-from-the-future"))
        }
    }

    @Test("a database lost while running: calls fail as unavailable, then work again when it returns")
    func databaseLostAndBack() async throws {
        let location = try await freshPostgresDatabase(Backend.postgresURL!)
        let admin = try PostgresLocation(url: Backend.postgresURL!)
        let storage = try await PostgresStorage(
            location: location, maximumConnections: 2, operationTimeout: .seconds(2), logger: quietLogger)
        let alice = try Fixture.account("alice")
        try await storage.accounts.insert(alice)
        // Refuse new connections to this database and cut the existing ones.
        try await PostgresAdministration.execute(
            "ALTER DATABASE \(location.database) ALLOW_CONNECTIONS false", at: admin, logger: quietLogger)
        try await PostgresAdministration.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(location.database)'", at: admin,
            logger: quietLogger)
        await #expect(throws: StorageUnavailable.self) {
            _ = try await storage.accounts.account(id: alice.id)
        }
        try await PostgresAdministration.execute(
            "ALTER DATABASE \(location.database) ALLOW_CONNECTIONS true", at: admin, logger: quietLogger)
        var found: Account?
        let deadline = ContinuousClock.now + .seconds(20)
        while found == nil, ContinuousClock.now < deadline {
            found = try? await storage.accounts.account(id: alice.id)
            if found == nil { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(found?.id == alice.id)
        try await storage.close()
    }

    @Test("two storages on one database migrate once and see each other's writes and notifications")
    func sharedDatabase() async throws {
        let location = try await freshPostgresDatabase(Backend.postgresURL!)
        async let first = PostgresStorage(location: location, logger: quietLogger)
        async let second = PostgresStorage(location: location, logger: quietLogger)
        let (a, b) = try await (first, second)
        var changes = b.changeFeed!.changes().makeAsyncIterator()
        // The first change is always `.all`; once it arrived, b's listener is connected.
        #expect(await changes.next() == .all)

        let alice = try Fixture.account("alice")
        let bob = try Fixture.account("bob_b")
        try await a.accounts.insert(alice)
        try await a.accounts.insert(bob)
        let laptop = Fixture.device(of: alice)
        let phone = Fixture.device(of: bob)
        try await a.devices.insert(laptop)
        try await a.devices.insert(phone)
        _ = try await a.inbox.enqueue(try Fixture.message("m1", from: alice, device: laptop, to: bob, devices: [phone]))
        var next = await changes.next()
        while next == .all { next = await changes.next() }
        #expect(next == .devices([phone.id]))
        #expect(try await b.inbox.envelopes(for: phone.id, after: 0, limit: 10).map(\.messageID.rawValue) == ["m1"])
        try await a.close()
        try await b.close()
    }
}

@Suite("PostgreSQL locations")
struct PostgresLocationTests {
    @Test("database URLs are parsed, and the password never printed")
    func urls() throws {
        let location = try PostgresLocation(url: "postgres://app:s3cret@db.example:6543/heliograph?sslmode=require")
        #expect(location.host == "db.example")
        #expect(location.port == 6543)
        #expect(location.username == "app")
        #expect(location.password == "s3cret")
        #expect(location.database == "heliograph")
        #expect(location.requireTLS)
        #expect(!"\(location)".contains("s3cret"))
        #expect(throws: HeliographError.self) { try PostgresLocation(url: "mysql://x@y/z") }
    }
}
