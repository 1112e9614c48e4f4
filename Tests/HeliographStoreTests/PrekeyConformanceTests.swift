import Foundation
import HeliographCore
import HeliographStore
import Testing

/// Prekeys, device lists, server secrets and per-device copies: the end-to-end encryption
/// part of the storage contract, on every backend.
extension StoreConformanceTests {
    func keyRecord(for device: Device, signedID: Int64 = 1) -> DeviceKeyRecord {
        DeviceKeyRecord(
            deviceID: device.id, accountID: device.accountID, agreementKey: Data(repeating: 1, count: 32),
            agreementSignature: Data(repeating: 2, count: 64),
            signedPrekey: StoredPrekey(kind: 1, id: signedID, publicKey: Data(repeating: 3, count: 32), signature: Data([4])),
            lastResortPrekey: StoredPrekey(kind: 4, id: 900, publicKey: Data(repeating: 5, count: 1184), signature: Data([6])))
    }

    func oneTimePrekeys(_ kind: Int, _ ids: ClosedRange<Int64>) -> [StoredPrekey] {
        ids.map { StoredPrekey(kind: kind, id: $0, publicKey: Data("key\(kind).\($0)".utf8), signature: Data("sig\($0)".utf8)) }
    }

    @Test("published keys are replaced, one-time prekeys are claimed in order and then run out", arguments: Backend.all)
    func prekeyLifecycle(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            let store = storage.prekeys
            #expect(try await store.claim(for: p.bobPhone.id) == nil)
            try await store.setKeys(keyRecord(for: p.bobPhone))
            try await store.setKeys(keyRecord(for: p.bobPhone, signedID: 2))
            #expect(try await store.keys(for: p.bobPhone.id) == keyRecord(for: p.bobPhone, signedID: 2))
            try await store.addOneTimePrekeys(
                oneTimePrekeys(StoredPrekey.oneTimeKind, 1...3) + oneTimePrekeys(StoredPrekey.kemKind, 10...11),
                for: p.bobPhone.id)
            // Uploading an id again keeps the first key.
            try await store.addOneTimePrekeys(
                [StoredPrekey(kind: StoredPrekey.oneTimeKind, id: 1, publicKey: Data("other".utf8), signature: Data())],
                for: p.bobPhone.id)
            #expect(try await store.oneTimeCounts(for: p.bobPhone.id) == (3, 2))

            let first = try #require(try await store.claim(for: p.bobPhone.id))
            #expect(first.keys.signedPrekey.id == 2)
            #expect(first.oneTimePrekey == oneTimePrekeys(StoredPrekey.oneTimeKind, 1...1).first)
            #expect(first.kemPrekey?.id == 10)
            _ = try await store.claim(for: p.bobPhone.id)
            let third = try #require(try await store.claim(for: p.bobPhone.id))
            #expect(third.oneTimePrekey?.id == 3)
            #expect(third.kemPrekey == nil)  // exhausted: the caller falls back to the last-resort key
            #expect(third.keys.lastResortPrekey.id == 900)
            let fourth = try #require(try await store.claim(for: p.bobPhone.id))
            #expect(fourth.oneTimePrekey == nil)
            #expect(try await store.oneTimeCounts(for: p.bobPhone.id) == (0, 0))
            // Another device's keys are untouched by all this.
            #expect(try await store.keys(for: p.bobLaptop.id) == nil)
        }
    }

    @Test("concurrent claims hand out each one-time prekey exactly once", arguments: Backend.all)
    func concurrentClaims(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            try await storage.prekeys.setKeys(keyRecord(for: p.bobPhone))
            try await storage.prekeys.addOneTimePrekeys(
                oneTimePrekeys(StoredPrekey.oneTimeKind, 1...20) + oneTimePrekeys(StoredPrekey.kemKind, 1...20),
                for: p.bobPhone.id)
            let claimed = try await withThrowingTaskGroup(of: ClaimedPrekeys?.self) { group in
                for _ in 0..<30 { group.addTask { try await storage.prekeys.claim(for: p.bobPhone.id) } }
                var all: [ClaimedPrekeys] = []
                for try await claim in group { if let claim { all.append(claim) } }
                return all
            }
            #expect(claimed.count == 30)
            let oneTimeIDs = claimed.compactMap(\.oneTimePrekey?.id)
            let kemIDs = claimed.compactMap(\.kemPrekey?.id)
            #expect(oneTimeIDs.count == 20 && Set(oneTimeIDs).count == 20)
            #expect(kemIDs.count == 20 && Set(kemIDs).count == 20)
        }
    }

    @Test("revoking a device deletes its published keys", arguments: Backend.all)
    func revokeDeletesKeys(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            try await storage.prekeys.setKeys(keyRecord(for: p.bobPhone))
            try await storage.prekeys.addOneTimePrekeys(oneTimePrekeys(StoredPrekey.oneTimeKind, 1...2), for: p.bobPhone.id)
            _ = try await storage.devices.revoke(p.bobPhone.id, at: Fixture.start + 10)
            #expect(try await storage.prekeys.keys(for: p.bobPhone.id) == nil)
            #expect(try await storage.prekeys.claim(for: p.bobPhone.id) == nil)
            #expect(try await storage.prekeys.oneTimeCounts(for: p.bobPhone.id) == (0, 0))
        }
    }

    @Test("a device list is replaced only by a higher version", arguments: Backend.all)
    func deviceLists(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            #expect(try await storage.prekeys.deviceList(account: p.bob.id) == nil)
            #expect(try await storage.prekeys.storeDeviceList(account: p.bob.id, version: 2, list: Data("v2".utf8)))
            #expect(!(try await storage.prekeys.storeDeviceList(account: p.bob.id, version: 1, list: Data("v1".utf8))))
            #expect(!(try await storage.prekeys.storeDeviceList(account: p.bob.id, version: 2, list: Data("x".utf8))))
            #expect(try await storage.prekeys.deviceList(account: p.bob.id)?.list == Data("v2".utf8))
            #expect(try await storage.prekeys.storeDeviceList(account: p.bob.id, version: 3, list: Data("v3".utf8)))
            #expect(try await storage.prekeys.deviceList(account: p.bob.id)?.version == 3)
        }
    }

    @Test("a server secret is created once and then always the same", arguments: Backend.all)
    func serverSecrets(_ backend: Backend) async throws {
        try await backend.with { storage in
            let first = try await storage.secrets.secret(named: "franking") { Data("first".utf8) }
            let second = try await storage.secrets.secret(named: "franking") { Data("second".utf8) }
            #expect(first == Data("first".utf8))
            #expect(second == first)
            #expect(try await storage.secrets.secret(named: "other") { Data("o".utf8) } == Data("o".utf8))
        }
    }

    @Test("each device gets its own copy, with the commitment and its own franking tag", arguments: Backend.all)
    func perDeviceCopies(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            let message = OutgoingMessage(
                messageID: try MessageID(validating: "e2e"),
                sender: EnvelopeSender(accountID: p.alice.id, username: p.alice.username, deviceID: p.aliceLaptop.id),
                recipientAccountID: p.bob.id,
                copies: [
                    EnvelopeCopy(deviceID: p.bobPhone.id, payload: Data("for phone".utf8), frankingTag: Data("tag1".utf8)),
                    EnvelopeCopy(deviceID: p.bobLaptop.id, payload: Data("for laptop".utf8), frankingTag: nil),
                ], serverTime: Fixture.start, frankingCommitment: Data("commitment".utf8))
            _ = try await storage.inbox.enqueue(message)
            let phone = try #require(try await storage.inbox.envelopes(for: p.bobPhone.id, after: 0, limit: 10).first)
            let laptop = try #require(try await storage.inbox.envelopes(for: p.bobLaptop.id, after: 0, limit: 10).first)
            #expect(phone.payload == Data("for phone".utf8))
            #expect(laptop.payload == Data("for laptop".utf8))
            #expect(phone.frankingCommitment == Data("commitment".utf8))
            #expect(phone.frankingTag == Data("tag1".utf8))
            #expect(laptop.frankingTag == nil)
        }
    }
}

extension StoreConformanceTests {
    @Test("the devices of an account with published keys are listed in one read", arguments: Backend.all)
    func publishedDevices(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(in: storage)
            #expect(try await storage.prekeys.publishedDevices(of: p.bob.id).isEmpty)
            try await storage.prekeys.setKeys(keyRecord(for: p.bobPhone))
            try await storage.prekeys.setKeys(keyRecord(for: p.bobLaptop))
            try await storage.prekeys.setKeys(keyRecord(for: p.aliceLaptop))
            #expect(Set(try await storage.prekeys.publishedDevices(of: p.bob.id)) == [p.bobPhone.id, p.bobLaptop.id])
            _ = try await storage.devices.revoke(p.bobPhone.id, at: Fixture.start + 1)
            #expect(try await storage.prekeys.publishedDevices(of: p.bob.id) == [p.bobLaptop.id])
        }
    }
}
