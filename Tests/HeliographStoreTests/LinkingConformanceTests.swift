import Foundation
import HeliographCore
import HeliographStore
import Testing

/// Device linking, identity changes and device-list deletion, on every backend.
@Suite("Store conformance: device linking")
struct LinkingConformanceTests {
    @Test("a waiting device keeps its committed key and becomes active once, only if not revoked", arguments: Backend.all)
    func approval(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try Fixture.account("alice")
            try await storage.accounts.insert(alice)
            let key = Data(repeating: 7, count: 32)
            var waiting = Fixture.device(of: alice, named: "tablet")
            waiting.pending = true
            waiting.linkKey = key
            try await storage.devices.insert(waiting)
            let stored = try #require(try await storage.devices.device(id: waiting.id))
            #expect(stored.pending && !stored.isActive && stored.linkKey == key)
            #expect(try await storage.devices.devices(of: alice.id).map(\.pending) == [true])

            let approved = try #require(try await storage.devices.approve(waiting.id))
            #expect(approved.isActive && !approved.pending && approved.linkKey == key)
            // Approving twice, or a device that is not waiting, changes nothing.
            #expect(try await storage.devices.approve(waiting.id) == nil)

            var refused = Fixture.device(of: alice, named: "thief", at: Fixture.start + 1)
            refused.pending = true
            try await storage.devices.insert(refused)
            _ = try await storage.devices.revoke(refused.id, at: Fixture.start + 2)
            #expect(try await storage.devices.approve(refused.id) == nil)
            #expect(try await storage.devices.device(id: refused.id)?.isActive == false)
        }
    }

    @Test("an identity key is replaced only from the key it still has", arguments: Backend.all)
    func identityReplacement(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try Fixture.account("alice")
            try await storage.accounts.insert(alice)
            let new = Data(repeating: 9, count: 32)
            #expect(!(try await storage.accounts.replaceIdentityKey(of: alice.id, from: Data(repeating: 1, count: 32), to: new)))
            #expect(try await storage.accounts.account(id: alice.id)?.identityKey == alice.identityKey)
            #expect(try await storage.accounts.replaceIdentityKey(of: alice.id, from: alice.identityKey, to: new))
            #expect(try await storage.accounts.account(id: alice.id)?.identityKey == new)
            // The same rotation again (a replay) no longer matches.
            #expect(!(try await storage.accounts.replaceIdentityKey(of: alice.id, from: alice.identityKey, to: new)))
        }
    }

    @Test("a deleted device list starts a new history", arguments: Backend.all)
    func deviceListDeletion(_ backend: Backend) async throws {
        try await backend.with { storage in
            let account = AccountID.random()
            #expect(try await storage.prekeys.storeDeviceList(account: account, version: 5, list: Data([5])))
            try await storage.prekeys.deleteDeviceList(account: account)
            #expect(try await storage.prekeys.deviceList(account: account) == nil)
            #expect(try await storage.prekeys.storeDeviceList(account: account, version: 1, list: Data([1])))
            #expect(try await storage.prekeys.deviceList(account: account)?.version == 1)
        }
    }
}
