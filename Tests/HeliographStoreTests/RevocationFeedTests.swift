import Foundation
import HeliographCore
import HeliographStore
import HeliographStorePostgres
import Testing

@Suite("Revocations in the store and the change feed")
struct RevocationFeedTests {
    @Test("revokedDevices(among:) names the revoked and the unknown devices, in any backend", arguments: Backend.all)
    func revokedAmong(_ backend: Backend) async throws {
        try await backend.with { storage in
            let bob = try Fixture.account("bob_b")
            try await storage.accounts.insert(bob)
            let phone = Fixture.device(of: bob, named: "phone")
            let laptop = Fixture.device(of: bob, named: "laptop")
            try await storage.devices.insert(phone)
            try await storage.devices.insert(laptop)
            let unknown = DeviceID.random()
            #expect(try await storage.devices.revokedDevices(among: []).isEmpty)
            #expect(try await storage.devices.revokedDevices(among: [phone.id, laptop.id]).isEmpty)
            _ = try await storage.devices.revoke(phone.id, at: Fixture.start + 5)
            #expect(try await storage.devices.revokedDevices(among: [phone.id, laptop.id, unknown]) == [phone.id, unknown])
        }
    }

    @Test(
        "a revocation is announced to every node on one database, the revoking one included",
        .enabled(if: Backend.postgresURL != nil, "set HELIOGRAPH_TEST_POSTGRES_URL"))
    func revocationOnTheFeed() async throws {
        let location = try await freshPostgresDatabase(Backend.postgresURL!)
        async let first = PostgresStorage(location: location, logger: quietLogger)
        async let second = PostgresStorage(location: location, logger: quietLogger)
        let (a, b) = try await (first, second)
        var onA = a.changeFeed!.changes().makeAsyncIterator()
        var onB = b.changeFeed!.changes().makeAsyncIterator()
        // The first change is always `.all`; once it arrived, the listener is connected.
        #expect(await onA.next() == .all)
        #expect(await onB.next() == .all)

        let bob = try Fixture.account("bob_b")
        try await a.accounts.insert(bob)
        let phone = Fixture.device(of: bob, named: "phone")
        try await a.devices.insert(phone)
        _ = try await a.devices.revoke(phone.id, at: Fixture.start + 5)
        // Revoking an unknown device announces nothing.
        #expect(try await a.devices.revoke(.random(), at: Fixture.start + 5) == nil)

        #expect(await Self.nextChange(&onB) == .revoked([phone.id]))
        #expect(await Self.nextChange(&onA) == .revoked([phone.id]))
        // Committed before it was announced: the other node's read sees it.
        #expect(try await b.devices.device(id: phone.id)?.revokedAt != nil)
        try await a.close()
        try await b.close()
    }

    /// The next change other than `.all` (which a reconnecting listener may add at any time).
    static func nextChange(_ feed: inout AsyncStream<InboxChange>.Iterator) async -> InboxChange? {
        var next = await feed.next()
        while next == .all { next = await feed.next() }
        return next
    }
}
