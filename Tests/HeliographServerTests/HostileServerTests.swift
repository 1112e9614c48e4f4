import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import HeliographStore
import Synchronization
import Testing

/// Each test runs the real server over ``HostileStorage`` and mounts one attack a hostile or
/// compelled operator could make on end-to-end encrypted chats. The clients must notice: a
/// dropped message with a reason, a refused send, a notice; never a silent session swap.
@Suite("A hostile server cannot read or forge private chats")
struct HostileServerTests {
    static func run(_ body: @Sendable (TestServer, HostileStorage) async throws -> Void) async throws {
        try await TestServer.run(serving: { HostileStorage($0) }) { server in
            try await body(server, try #require(server.served as? HostileStorage))
        }
    }

    @Test("session swap: a setup from the server's own account labelled as alice's device is dropped")
    func setupRelabelledAsAnotherDevice() async throws {
        try await Self.run { server, hostile in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let mallory = try await server.register("mallory")
            try await alice.sendEncrypted(text: "hello bob", to: "bob_b")
            #expect(try await openMessages(1, from: bob).texts == ["hello bob"])

            // The server's own account writes to Bob; what reaches Bob names Alice's device,
            // first under Mallory's account (a session keyed by device alone would be replaced),
            // then under Alice's account too.
            let forged = [
                EnvelopeSender(
                    accountID: mallory.profile.accountID, username: try Username(validating: "mallory"),
                    deviceID: alice.profile.deviceID),
                EnvelopeSender(
                    accountID: alice.profile.accountID, username: try Username(validating: "alice"),
                    deviceID: alice.profile.deviceID),
            ]
            for (index, sender) in forged.enumerated() {
                hostile.attack { $0.relabel[bob.profile.deviceID] = sender }
                try await mallory.sendEncrypted(text: "this is alice \(index)", to: "bob_b")
                let opened = try await openMessages(1, from: bob)
                #expect(opened.texts.isEmpty, "a forged message was shown: \(opened.texts)")
                #expect(opened.dropped.count == 1)
                #expect(opened.dropped.first?.contains("unlisted_device") == true, "\(opened.dropped)")
            }
            hostile.attack { $0.relabel = [:] }

            // Bob's session with Alice's device is still Alice's: she reads his next message.
            try await bob.sendEncrypted(text: "still for alice", to: "alice")
            let atAlice = try await openMessages(1, from: alice)
            #expect(atAlice.texts == ["still for alice"], "\(atAlice.dropped)")
        }
    }

    @Test("device slipped into an account: a device the signed list does not name gets no copy")
    func deviceSlippedIntoAccount() async throws {
        try await Self.run { server, hostile in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let mallory = try await server.register("mallory")
            // Bob has a working session with Mallory's device.
            try await mallory.sendEncrypted(text: "hi bob", to: "bob_b")
            #expect(try await openMessages(1, from: bob).texts == ["hi bob"])
            try await bob.sendEncrypted(text: "hi mallory", to: "mallory")
            #expect(try await openMessages(1, from: mallory).texts == ["hi mallory"])

            // The server lists Mallory's device as one of Alice's, with keys.
            let malloryDevice = Device(
                id: mallory.profile.deviceID, accountID: alice.profile.accountID, name: "alice's new phone",
                createdAt: Date())
            hostile.attack { $0.extraDevices[alice.profile.accountID] = [malloryDevice] }
            let refused = await #expect(throws: HeliographError.self) {
                try await bob.sendEncrypted(text: "for alice only", to: "alice")
            }
            #expect(refused?.code == .deviceListMismatch)

            // Nothing Bob wrote for Alice reached Mallory's device.
            let inbox = try await mallory.call(.fetchInbox, FetchInboxRequest(after: 0), as: FetchInboxResponse.self)
            #expect(inbox.envelopes.filter { $0.sender.accountId == bob.profile.accountID }.isEmpty)
        }
    }

    @Test("bundle substituted: another device's genuine keys offered for a listed device are not used")
    func bundleSubstituted() async throws {
        try await Self.run { server, hostile in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let mallory = try await server.register("mallory")
            // The server answers a request for Alice's keys with Mallory's (correctly signed by
            // Mallory's identity, for Mallory's device).
            hostile.attack { $0.substituteBundle[alice.profile.deviceID] = mallory.profile.deviceID }
            let refused = await #expect(throws: HeliographError.self) {
                try await bob.sendEncrypted(text: "for alice", to: "alice")
            }
            #expect(refused?.code == .noDevices)
            hostile.attack { $0.substituteBundle = [:] }
            try await bob.sendEncrypted(text: "for alice", to: "alice")
            #expect(try await openMessages(1, from: alice).texts == ["for alice"])
            let atMallory = try await mallory.call(.fetchInbox, FetchInboxRequest(after: 0), as: FetchInboxResponse.self)
            #expect(atMallory.envelopes.isEmpty)
        }
    }

    @Test("device hidden: a listed device the server reports gone is named in a notice, not silently skipped")
    func deviceHidden() async throws {
        try await Self.run { server, hostile in
            let phone = try await server.register("alice", device: "phone")
            let laptop = try await server.addDevice(to: phone, named: "laptop")
            let bob = try await server.register("bob_b")
            #expect(try await bob.sendEncrypted(text: "one", to: "alice").response.deviceCount == 2)
            hostile.attack { $0.hide.insert(laptop.profile.deviceID) }
            let second = try await bob.sendEncrypted(text: "two", to: "alice")
            #expect(second.response.deviceCount == 1)
            #expect(second.notices.contains(.unreachableDevice(username: "alice", device: laptop.profile.deviceID)))
        }
    }

    @Test("device list left out: a contact whose list was seen before gets nothing without it")
    func deviceListLeftOut() async throws {
        try await Self.run { server, hostile in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            try await bob.sendEncrypted(text: "one", to: "alice")
            hostile.attack { $0.omitList.insert(alice.profile.accountID) }
            let refused = await #expect(throws: HeliographError.self) {
                try await bob.sendEncrypted(text: "two", to: "alice")
            }
            #expect(refused?.message.contains("left out the device list") == true, "\(String(describing: refused))")
            hostile.attack { $0.omitList = [] }
            #expect(try await openMessages(1, from: alice).texts == ["one"])
        }
    }

    @Test("device list rolled back: an older list hiding a revocation is refused")
    func deviceListRolledBack() async throws {
        try await Self.run { server, hostile in
            let phone = try await server.register("alice", device: "phone")
            let laptop = try await server.addDevice(to: phone, named: "laptop")
            let bob = try await server.register("bob_b")
            #expect(try await bob.sendEncrypted(text: "one", to: "alice").response.deviceCount == 2)
            let before = try #require(try await server.storage.prekeys.deviceList(account: phone.profile.accountID))

            try await phone.revokeDevice(laptop.profile.deviceID)
            let second = try await bob.sendEncrypted(text: "two", to: "alice")
            #expect(second.response.deviceCount == 1)
            #expect(second.notices.contains(.deviceRemoved(username: "alice", device: laptop.profile.deviceID)))

            hostile.attack { $0.rollBack[phone.profile.accountID] = before }
            let refused = await #expect(throws: HeliographError.self) {
                try await bob.sendEncrypted(text: "three", to: "alice")
            }
            #expect(refused?.message.contains("version \(before.version) of a device list after") == true)
        }
    }

    @Test("revoked device comes back: it logs in again but waits forever, and a list re-adding it is refused")
    func revokedDeviceCannotComeBack() async throws {
        try await Self.run { server, _ in
            let phone = try await server.register("alice", device: "phone")
            let laptop = try await server.addDevice(to: phone, named: "laptop")
            let bob = try await server.register("bob_b")
            try await phone.revokeDevice(laptop.profile.deviceID)
            _ = try await bob.sendEncrypted(text: "after the revocation", to: "alice")

            // The thief still holds the laptop's copy of the identity key: logging in only
            // makes a waiting device that no active device approves.
            let stolenKey = laptop.profile.identityPrivateKey
            let waited = await #expect(throws: HeliographError.self) {
                _ = try await HeliographClient.login(
                    username: "alice", identityPrivateKey: stolenKey, server: server.url, deviceName: "thief",
                    profileName: "thief", store: server.profiles, approvalTimeout: .seconds(1))
            }
            #expect(waited?.code == .devicePending)
            let thief = try HeliographClient(profileName: "thief", store: server.profiles)
            let listed = await #expect(throws: HeliographError.self) { _ = try await thief.devices() }
            #expect(listed?.code == .devicePending)
            // A waiting device cannot approve itself, nor revoke the owner's devices.
            await #expect(throws: HeliographError.self) {
                try await thief.revokeDevice(phone.profile.deviceID)
            }

            // With the server's help the thief publishes a list that brings the laptop back,
            // signed with the stolen identity key. Bob has seen the revocation and refuses it.
            let current = try #require(try await server.storage.prekeys.deviceList(account: phone.profile.accountID))
            let wire = try WireCodec.decode(WireDeviceList.self, from: current.list)
            let laptopKey = try AgreementKeyPair(privateKeyBytes: try laptop.keyStore.read().agreementKey).publicKeyBytes
            let identity = try IdentityKeyPair(privateKeyBytes: stolenKey)
            let forgetful = try SignedDeviceList.sign(
                account: phone.profile.accountID, version: wire.version + 1,
                devices: wire.devices.map { .init(device: $0.deviceId, agreementKey: $0.agreementKey) }
                    + [.init(device: laptop.profile.deviceID, agreementKey: laptopKey)],
                revoked: [], with: identity)
            _ = try await server.storage.prekeys.storeDeviceList(
                account: phone.profile.accountID, version: Int64(forgetful.version),
                list: try WireCodec.encode(
                    WireDeviceList(
                        version: forgetful.version,
                        devices: forgetful.devices.map { .init(deviceId: $0.device, agreementKey: $0.agreementKey) },
                        revoked: nil, signature: forgetful.signature)))
            let refused = await #expect(throws: HeliographError.self) {
                try await bob.sendEncrypted(text: "to alice", to: "alice")
            }
            #expect(refused?.message.contains("was revoked") == true, "\(String(describing: refused))")
        }
    }

    @Test("stolen identity key: after revoking with identity rotation it logs nothing in and signs nothing contacts accept")
    func rotatedIdentityLocksOutStolenKey() async throws {
        try await Self.run { server, _ in
            let phone = try await server.register("alice", device: "phone")
            let laptop = try await server.addDevice(to: phone, named: "laptop")
            let bob = try await server.register("bob_b")
            try await bob.sendEncrypted(text: "before", to: "alice")
            #expect(try await openMessages(1, from: phone).texts == ["before"])
            let stolenKey = laptop.profile.identityPrivateKey

            try await phone.revokeDevice(laptop.profile.deviceID, rotateIdentity: true)
            #expect(phone.profile.identityPrivateKey != stolenKey)

            // Bob is told the identity changed, and the conversation goes on under the new key.
            let after = try await bob.sendEncrypted(text: "after", to: "alice")
            #expect(after.notices.contains(.identityChanged(username: "alice")))
            #expect(try await openMessages(1, from: phone).texts == ["after"])
            try await phone.sendEncrypted(text: "reply", to: "bob_b")
            #expect(try await openMessages(1, from: bob).texts == ["reply"])

            // The old key logs nothing in: neither as a new device nor as a recovery.
            await #expect(throws: HeliographError.self) {
                _ = try await HeliographClient.login(
                    username: "alice", identityPrivateKey: stolenKey, server: server.url, deviceName: "thief",
                    profileName: "thief", store: server.profiles, approvalTimeout: .seconds(1))
            }
            await #expect(throws: HeliographError.self) {
                _ = try await HeliographClient.recover(
                    username: "alice", identityPrivateKey: stolenKey, server: server.url, deviceName: "thief",
                    profileName: "thief2", store: server.profiles)
            }
            // A list signed with the old key, slipped in by the server, is refused.
            let current = try #require(try await server.storage.prekeys.deviceList(account: phone.profile.accountID))
            let forged = try SignedDeviceList.sign(
                account: phone.profile.accountID, version: UInt64(current.version) + 1,
                devices: [
                    .init(
                        device: laptop.profile.deviceID,
                        agreementKey: try AgreementKeyPair(privateKeyBytes: try laptop.keyStore.read().agreementKey)
                            .publicKeyBytes)
                ], with: try IdentityKeyPair(privateKeyBytes: stolenKey))
            _ = try await server.storage.prekeys.storeDeviceList(
                account: phone.profile.accountID, version: Int64(forged.version),
                list: try WireCodec.encode(
                    WireDeviceList(
                        version: forged.version,
                        devices: forged.devices.map { .init(deviceId: $0.device, agreementKey: $0.agreementKey) },
                        signature: forged.signature)))
            await #expect(throws: HeliographError.self) { try await bob.sendEncrypted(text: "x", to: "alice") }
        }
    }

    @Test("replayed setup: refused as long as its signed prekey is held, however many setups came between")
    func setupReplayed() async throws {
        try await Self.run { server, hostile in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            try await alice.sendEncrypted(text: "only once", to: "bob_b")
            let original = try await server.storage.inbox.envelopes(for: bob.profile.deviceID, after: 0, limit: 10)
            #expect(try await openMessages(1, from: bob).texts == ["only once"])

            // Many other setups answered since, and the session itself replaced meanwhile.
            let prekey = try bob.keyStore.read().currentSignedPrekey
            try bob.keyStore.update { state in
                let others = (0..<2_500).map { _ in Data((0..<32).map { _ in UInt8.random(in: 0...255) }) }
                state.answeredSetups?[prekey, default: []].insert(contentsOf: others, at: 0)
                state.peerSessions = [:]
                state.archivedPeerSessions = nil
            }
            hostile.attack { $0.replay[bob.profile.deviceID] = (2, original) }
            let replayed = try await openMessages(1, from: bob)
            #expect(replayed.texts.isEmpty)
            #expect(replayed.dropped.first?.contains("replayed") == true, "\(replayed.dropped)")

            // Once the signed prekey is gone (rotated and past its grace period), a setup naming
            // it is refused for that reason, so the record of answered setups can go with it.
            try bob.keyStore.update { state in
                state.signedPrekeys[prekey] = nil
                state.answeredSetups = [:]
            }
            hostile.attack { $0.replay[bob.profile.deviceID] = (3, original) }
            let again = try await openMessages(1, from: bob)
            #expect(again.texts.isEmpty)
            #expect(again.dropped.first?.contains("unknown_prekey") == true, "\(again.dropped)")
        }
    }

    @Test("approval with a swapped key: the code shown on the new device does not match, nothing is approved")
    func approvalWithSwappedKey() async throws {
        try await Self.run { server, hostile in
            let phone = try await server.register("alice", device: "phone")
            let outcome = Mutex<HeliographError?>(nil)
            let waited = await #expect(throws: HeliographError.self) {
                _ = try await HeliographClient.login(
                    username: "alice", identityPrivateKey: phone.profile.identityPrivateKey, server: server.url,
                    deviceName: "tablet", profileName: "alice-tablet", store: server.profiles, approvalTimeout: .seconds(1)
                ) { pending in
                    // The server reports the waiting tablet with a key of its own choosing.
                    hostile.attack { $0.swapLinkKey[pending.deviceID] = AgreementKeyPair().publicKeyBytes }
                    do {
                        try await phone.approveDevice(code: pending.code)
                    } catch let error as HeliographError {
                        outcome.withLock { $0 = error }
                    }
                }
            }
            #expect(waited?.code == .devicePending)
            #expect(outcome.withLock { $0 }?.code == .unknownDevice)
            #expect(try await phone.devices().filter { $0.revokedAt == nil && $0.pending != true }.count == 1)
        }
    }

    @Test("publishing one's own device list claims none of one's own one-time prekeys")
    func ownListLeavesOwnPrekeys() async throws {
        try await TestServer.run { server in
            let phone = try await server.register("alice", device: "phone")
            let laptop = try await server.addDevice(to: phone, named: "laptop")
            let before = try await laptop.call(.keyStatus, EmptyBody(), as: KeyStatus.self)
            try await phone.publishDeviceList()
            _ = try await server.addDevice(to: phone, named: "tablet")
            let after = try await laptop.call(.keyStatus, EmptyBody(), as: KeyStatus.self)
            #expect(after.oneTimePrekeys == before.oneTimePrekeys)
            #expect(after.kemPrekeys == before.kemPrekeys)
        }
    }
}
