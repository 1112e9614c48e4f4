import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import Testing

/// Linking devices by approval, recovery and identity rotation, through a real (honest) server.
@Suite("Device linking")
struct DeviceLinkingTests {
    @Test("a linked device shows a code, waits, and is approved into the signed list; contacts are told")
    func linking() async throws {
        try await TestServer.run { server in
            let phone = try await server.register("alice", device: "phone")
            let bob = try await server.register("bob_b")
            _ = try await bob.sendEncrypted(text: "one", to: "alice")
            let laptop = try await server.addDevice(to: phone, named: "laptop")
            let account = try await phone.call(.lookupAccount, LookupAccountRequest(username: "alice"), as: AccountInfo.self)
            #expect(Set(account.deviceList?.devices.map(\.deviceId) ?? []) == [phone.profile.deviceID, laptop.profile.deviceID])
            let second = try await bob.sendEncrypted(text: "two", to: "alice")
            #expect(second.notices == [.newDevice(username: "alice", device: laptop.profile.deviceID)])
            #expect(try await openMessages(1, from: laptop).texts == ["two"])
        }
    }

    @Test("a login without its agreement key, a sixth waiting device, and another key than the committed one are refused")
    func waitingDeviceLimits() async throws {
        // A dozen logins to one account: more than its login burst, which is not what this tests.
        try await TestServer.run(configure: { $0.loginAccountBurst = 100 }) { server in
            let phone = try await server.register("alice", device: "phone")
            let identity = try IdentityKeyPair(privateKeyBytes: phone.profile.identityPrivateKey)
            func login(agreementKey: Data?) async throws -> LoginResponse {
                let connection = try await server.connect()
                defer { Task { await connection.close() } }
                let challenge = try await connection.request(
                    .challenge, ChallengeRequest(username: "alice"), as: ChallengeResponse.self)
                let signature = try identity.signLogin(
                    nonce: challenge.nonce, challengeID: challenge.challengeId, account: phone.profile.accountID,
                    origin: try ServerOrigin(url: server.url), deviceName: "extra")
                return try await connection.request(
                    .login,
                    LoginRequest(
                        challengeId: challenge.challengeId, deviceName: "extra", signature: signature,
                        agreementKey: agreementKey),
                    as: LoginResponse.self)
            }
            let missing = await #expect(throws: HeliographError.self) { _ = try await login(agreementKey: nil) }
            #expect(missing?.code == .badRequest)
            // A key of small order (here u = 1) is refused as it is everywhere else.
            var smallOrder = Data(repeating: 0, count: 32)
            smallOrder[0] = 1
            let weak = await #expect(throws: HeliographError.self) { _ = try await login(agreementKey: smallOrder) }
            #expect(weak?.code == .invalidKey)
            var waiting: [LoginResponse] = []
            for _ in 0..<Device.maximumPending {
                waiting.append(try await login(agreementKey: AgreementKeyPair().publicKeyBytes))
            }
            #expect(waiting.allSatisfy { $0.pending == true })
            let sixth = await #expect(throws: HeliographError.self) {
                _ = try await login(agreementKey: AgreementKeyPair().publicKeyBytes)
            }
            #expect(sixth?.code == .rateLimited)
            // Refusing one (revoking a waiting device needs no list) makes room again.
            _ = try await phone.revokeDevice(waiting[0].deviceId)
            #expect(try await login(agreementKey: AgreementKeyPair().publicKeyBytes).pending == true)

            for device in try await phone.waitingDevices() { _ = try await phone.revokeDevice(device.device.deviceId) }
            #expect(try await phone.waitingDevices().isEmpty)

            // An approved device may publish only the agreement key it committed to.
            let tablet = try await server.addDevice(to: phone, named: "tablet")
            let other = AgreementKeyPair().publicKeyBytes
            let signed = try DeviceAgreementKey.sign(
                publicKey: other, account: tablet.profile.accountID, device: tablet.profile.deviceID, with: identity)
            let swapped = await #expect(throws: HeliographError.self) {
                _ = try await tablet.call(
                    .publishKeys, PublishKeysRequest(agreementKey: other, agreementSignature: signed.signature),
                    as: KeyStatus.self)
            }
            #expect(swapped?.message.contains("committed to another agreement key") == true)
        }
    }

    @Test("device lists naming unknown devices, with short keys, unsorted, or with version 0 are refused, however well signed")
    func malformedLists() async throws {
        try await TestServer.run { server in
            let phone = try await server.register("alice", device: "phone")
            let identity = try IdentityKeyPair(privateKeyBytes: phone.profile.identityPrivateKey)
            let ownKey = try AgreementKeyPair(privateKeyBytes: try phone.keyStore.read().agreementKey).publicKeyBytes
            let published = try await phone.call(.keyStatus, EmptyBody(), as: KeyStatus.self).deviceListVersion
            let next = published + 1
            func publish(_ entries: [WireDeviceList.Entry], version: UInt64, sorted: Bool = true) async -> HeliographError? {
                var list = SignedDeviceList(
                    account: phone.profile.accountID, version: version,
                    devices: entries.map { .init(device: $0.deviceId, agreementKey: $0.agreementKey) }, signature: Data())
                if sorted { list.devices.sort { $0.device.description < $1.device.description } }
                list.signature = (try? identity.sign(list.signedBytes)) ?? Data()
                let wire = WireDeviceList(
                    version: version, devices: list.devices.map { .init(deviceId: $0.device, agreementKey: $0.agreementKey) },
                    signature: list.signature)
                do {
                    _ = try await phone.call(.publishKeys, PublishKeysRequest(deviceList: wire), as: KeyStatus.self)
                    return nil
                } catch let error as HeliographError {
                    return error
                } catch {
                    return HeliographError(.internalError, "\(error)")
                }
            }
            let me = WireDeviceList.Entry(deviceId: phone.profile.deviceID, agreementKey: ownKey)
            let stranger = WireDeviceList.Entry(deviceId: .random(), agreementKey: AgreementKeyPair().publicKeyBytes)
            #expect(await publish([me, stranger], version: next)?.code == .unknownDevice)
            #expect(
                await publish(
                    [WireDeviceList.Entry(deviceId: phone.profile.deviceID, agreementKey: Data([1, 2]))], version: next)?
                    .code == .invalidKey)
            let other = try await server.addDevice(to: phone, named: "laptop")
            let otherKey = try AgreementKeyPair(privateKeyBytes: try other.keyStore.read().agreementKey).publicKeyBytes
            let pair = [me, WireDeviceList.Entry(deviceId: other.profile.deviceID, agreementKey: otherKey)]
                .sorted { $0.deviceId.description > $1.deviceId.description }
            let current = try await phone.call(.keyStatus, EmptyBody(), as: KeyStatus.self).deviceListVersion
            #expect(await publish(pair, version: current + 1, sorted: false)?.code == .badRequest)
            #expect(await publish([me], version: 0)?.code == .badRequest)
            // The well-formed list still goes through.
            #expect(await publish(pair, version: current + 1) == nil)
        }
    }

    @Test("an account whose devices were all revoked is recovered only with a new identity, which contacts see")
    func recovery() async throws {
        try await TestServer.run { server in
            let phone = try await server.register("alice", device: "phone")
            let bob = try await server.register("bob_b")
            _ = try await bob.sendEncrypted(text: "before", to: "alice")
            let oldKey = phone.profile.identityPrivateKey
            try await phone.revokeDevice(phone.profile.deviceID)

            let plain = await #expect(throws: HeliographError.self) {
                _ = try await HeliographClient.login(
                    username: "alice", identityPrivateKey: oldKey, server: server.url, deviceName: "new phone",
                    profileName: "alice-new", store: server.profiles, approvalTimeout: .seconds(1))
            }
            #expect(plain?.code == .recoveryRequired)
            let recovered = try await HeliographClient.recover(
                username: "alice", identityPrivateKey: oldKey, server: server.url, deviceName: "new phone",
                profileName: "alice-recovered", store: server.profiles)
            #expect(recovered.profile.identityPrivateKey != oldKey)
            let after = try await bob.sendEncrypted(text: "after", to: "alice")
            #expect(after.notices.contains(.identityChanged(username: "alice")))
            #expect(try await openMessages(1, from: recovered).texts == ["after"])
            // Recovering again while a device is active is refused.
            await #expect(throws: HeliographError.self) {
                _ = try await HeliographClient.recover(
                    username: "alice", identityPrivateKey: recovered.profile.identityPrivateKey, server: server.url,
                    deviceName: "again", profileName: "alice-again", store: server.profiles)
            }
        }
    }

    @Test("the last-resort key is rotated with the signed prekey; replaced ones are kept a month, then deleted")
    func lastResortRotation() async throws {
        try await TestServer.run { server in
            let bob = try await server.register("bob_b")
            let before = try bob.keyStore.read()
            // A week and a day later (the clock of the key file is moved back instead).
            let week: Int64 = 8 * 24 * 3600 * 1000
            try bob.keyStore.update { state in
                for id in state.signedPrekeys.keys { state.signedPrekeys[id]?.createdAt -= week }
            }
            try await bob.prepareEncryption()
            let after = try bob.keyStore.read()
            #expect(after.lastResortID != before.lastResortID)
            #expect(after.currentSignedPrekey != before.currentSignedPrekey)
            #expect(after.retiredLastResort?[before.lastResortID] != nil)
            #expect(after.signedPrekeys[before.currentSignedPrekey] != nil)
            // A month later still: what was replaced before is deleted, and with it the record of
            // the setups it answered.
            let month: Int64 = 31 * 24 * 3600 * 1000
            try bob.keyStore.update { state in
                for id in state.signedPrekeys.keys { state.signedPrekeys[id]?.createdAt -= month }
                for id in (state.retiredLastResort ?? [:]).keys { state.retiredLastResort?[id]?.createdAt -= month }
                state.answeredSetups = [before.currentSignedPrekey: [Data(repeating: 1, count: 32)]]
            }
            try await bob.prepareEncryption()
            let later = try bob.keyStore.read()
            #expect(later.signedPrekeys[before.currentSignedPrekey] == nil)
            #expect(later.retiredLastResort?[before.lastResortID] == nil)
            #expect(later.answeredSetups?[before.currentSignedPrekey] == nil)
            // The server hands out the current signed prekey.
            let bundle = try await server.register("alice").call(
                .fetchKeys, FetchKeysRequest(username: "bob_b"), as: FetchKeysResponse.self
            ).bundles.first
            #expect(bundle?.signedPrekey.id == later.currentSignedPrekey)
        }
    }
}
