import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import Testing

/// Receives and opens `count` messages; dropped ones are returned with their reasons.
func openMessages(_ count: Int, from client: HeliographClient) async throws -> (texts: [String], dropped: [String]) {
    var texts: [String] = []
    var dropped: [String] = []
    for message in try await receive(count, from: client) {
        switch try await client.open(message) {
        case .message(let decrypted): texts.append(decrypted.content.text)
        case .dropped(_, let reason): dropped.append(reason)
        }
    }
    return (texts, dropped)
}

@Suite("End-to-end encryption through a real server")
struct EncryptionTests {
    @Test("two accounts with two devices each chat end-to-end encrypted; own devices get copies")
    func twoByTwo() async throws {
        try await TestServer.run { server in
            let alicePhone = try await server.register("alice", device: "phone")
            let aliceLaptop = try await server.addDevice(to: alicePhone, named: "laptop")
            let bobPhone = try await server.register("bob_b", device: "phone")
            let bobLaptop = try await server.addDevice(to: bobPhone, named: "laptop")

            for index in 1...3 { try await alicePhone.sendEncrypted(text: "a\(index)", to: "@bob_b") }
            try await bobLaptop.sendEncrypted(text: "b1", to: "alice")
            try await alicePhone.sendEncrypted(text: "a4", to: "bob_b")

            // Bob's phone also gets the copy of what Bob sent from his laptop.
            #expect(try await openMessages(5, from: bobPhone).texts == ["a1", "a2", "a3", "b1", "a4"])
            // Bob's laptop gets Alice's messages and the copy of its own reply is not sent to itself.
            #expect(try await openMessages(4, from: bobLaptop).texts == ["a1", "a2", "a3", "a4"])
            let phone = try await openMessages(1, from: alicePhone)
            #expect(phone.texts == ["b1"])
            // The laptop sees Alice's own messages (copies) and Bob's reply, in order.
            let laptop = try await openMessages(5, from: aliceLaptop)
            #expect(laptop.texts == ["a1", "a2", "a3", "b1", "a4"])
            #expect(laptop.dropped.isEmpty)
        }
    }

    @Test("the server stores only ciphertext, and every copy differs")
    func serverSeesCiphertext() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bobPhone = try await server.register("bob_b", device: "phone")
            _ = try await server.addDevice(to: bobPhone, named: "laptop")
            try await alice.sendEncrypted(text: "secret words", to: "bob_b")
            let raw = try await receive(1, from: bobPhone)[0]
            #expect(SealedMessage.isSealed(raw.payload))
            #expect(raw.payload.range(of: Data("secret words".utf8)) == nil)
            #expect(raw.frankingCommitment?.count == 32)
            #expect(raw.frankingTag?.count == Franking.ServerTag.size)
        }
    }

    @Test("exhausted one-time prekeys fall back to the last-resort key; the send still works")
    func exhaustedPrekeys() async throws {
        // The fetchKeys limits exist to prevent this drain; they are off to test the fallback.
        try await TestServer.run(configure: {
            $0.fetchKeysAccountRate = 0
            $0.fetchKeysDeviceRate = 0
        }) { server in
            let bob = try await server.register("bob_b")
            let mallory = try await server.register("mallory")
            // Someone drains Bob's one-time prekeys.
            var lastBundle: WirePrekeyBundle?
            for _ in 0..<55 {
                lastBundle = try await mallory.call(.fetchKeys, FetchKeysRequest(username: "bob_b"), as: FetchKeysResponse.self)
                    .bundles.first
            }
            #expect(lastBundle?.oneTimePrekey == nil)
            #expect(lastBundle?.kemPrekey.kind == Int(PrekeyKind.lastResortKEMPrekey.rawValue))
            let status = try await bob.call(.keyStatus, EmptyBody(), as: KeyStatus.self)
            #expect(status.oneTimePrekeys == 0 && status.needsRefill)

            let alice = try await server.register("alice")
            try await alice.sendEncrypted(text: "still arrives", to: "bob_b")
            #expect(try await openMessages(1, from: bob).texts == ["still arrives"])
            // Opening a setup message made Bob refill.
            let refilled = try await bob.call(.keyStatus, EmptyBody(), as: KeyStatus.self)
            #expect(!refilled.needsRefill)
        }
    }

    @Test("tampered, replayed and uncommitted messages are dropped with a reason; the session survives")
    func badMessagesDropped() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            try await alice.sendEncrypted(text: "first", to: "bob_b")
            #expect(try await openMessages(1, from: bob).texts == ["first"])

            // A second message, captured: Bob's device gets it tampered, then twice intact.
            let sent = try await alice.sendEncrypted(text: "second", to: "bob_b")
            _ = sent
            let genuine = try await receive(1, from: bob)[0]
            var tampered = genuine
            tampered.payload[tampered.payload.count - 1] ^= 0x01
            guard case .dropped(_, let tamperReason) = try await bob.open(tampered) else {
                Issue.record("a tampered message was accepted")
                return
            }
            #expect(tamperReason.contains("tampered"))
            var noCommitment = genuine
            noCommitment.frankingCommitment = nil
            guard case .dropped(_, let commitmentReason) = try await bob.open(noCommitment) else {
                Issue.record("a message without commitment was accepted")
                return
            }
            #expect(commitmentReason.contains("commitment"))
            var wrongCommitment = genuine
            wrongCommitment.frankingCommitment = Data(repeating: 7, count: 32)
            guard case .dropped(_, let wrongReason) = try await bob.open(wrongCommitment) else {
                Issue.record("a message with a wrong commitment was accepted")
                return
            }
            #expect(wrongReason.contains("bad_commitment"))
            guard case .message(let opened) = try await bob.open(genuine) else {
                Issue.record("the genuine message was refused after the bad ones")
                return
            }
            #expect(opened.content.text == "second")
            // Acknowledged now: the same ciphertext again (a replay under a new number) is refused.
            try await bob.acknowledge(genuine)
            var replay = genuine
            replay.sequence += 100
            guard case .dropped(_, let replayReason) = try await bob.open(replay) else {
                Issue.record("a replayed message was accepted")
                return
            }
            #expect(replayReason.contains("replayed"))
            var plain = genuine
            plain.payload = Data("{\"text\":\"hi\",\"sentAt\":1}".utf8)
            plain.sequence += 200
            guard case .dropped = try await bob.open(plain) else {
                Issue.record("a plaintext message was shown as end-to-end encrypted")
                return
            }
            try await alice.sendEncrypted(text: "third", to: "bob_b")
            #expect(try await openMessages(1, from: bob).texts == ["third"])
        }
    }

    @Test("a genuine report verifies; altered body, sender, time or reporter are rejected")
    func franking() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let carol = try await server.register("carol")
            try await alice.sendEncrypted(text: "something abusive", to: "bob_b")
            let envelope = try await receive(1, from: bob)[0]
            guard case .message(let message) = try await bob.open(envelope) else {
                Issue.record("the message did not open")
                return
            }
            let genuine = try await bob.verifyReport(of: message)
            #expect(genuine.verified)
            #expect(genuine.senderUsername == "alice")

            var altered = message
            altered.body = try WireCodec.encode(MessageContent(text: "something else", sentAt: 0))
            #expect(!(try await bob.verifyReport(of: altered).verified))
            var otherSender = message
            otherSender.envelope.senderAccount = carol.profile.accountID
            #expect(!(try await bob.verifyReport(of: otherSender).verified))
            var otherTime = message
            otherTime.envelope.serverTime = message.envelope.serverTime.addingTimeInterval(1)
            #expect(!(try await bob.verifyReport(of: otherTime).verified))
            var otherKey = message
            otherKey.frankingKey = Franking.newKey()
            #expect(!(try await bob.verifyReport(of: otherKey).verified))
            // Another device cannot pass Bob's message off as received by itself…
            #expect(!(try await carol.verifyReport(of: message).verified))
            // …nor check a report in Bob's name.
            await #expect(throws: HeliographError(.forbidden, "")) {
                _ = try await carol.call(
                    .verifyReport,
                    FrankedReportRequest(
                        messageId: try MessageID(validating: message.envelope.messageID),
                        senderAccountId: message.envelope.senderAccount,
                        senderDeviceId: try #require(DeviceID(message.envelope.senderDevice)),
                        recipientDeviceId: bob.profile.deviceID,
                        serverTime: message.envelope.serverTime.millisecondsSince1970, body: message.body,
                        frankingKey: message.frankingKey, frankingTag: try #require(message.envelope.frankingTag)),
                    as: FrankedReportResponse.self)
            }
        }
    }

    @Test("uploads with bad signatures and sends that miss a device are refused")
    func refusals() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bobPhone = try await server.register("bob_b", device: "phone")
            let impostor = IdentityKeyPair()
            let forged = try SignedPrekey.sign(
                kind: .oneTimePrekey, id: 999, publicKey: AgreementKeyPair().publicKeyBytes, account: alice.profile.accountID,
                device: alice.profile.deviceID, with: impostor)
            await #expect(throws: HeliographError(.badSignature, "")) {
                _ = try await alice.call(
                    .publishKeys,
                    PublishKeysRequest(
                        oneTimePrekeys: [WirePrekey(kind: 2, id: 999, publicKey: forged.publicKey, signature: forged.signature)]),
                    as: KeyStatus.self)
            }
            // A list signed by someone else.
            let list = try SignedDeviceList.sign(account: alice.profile.accountID, version: 99, devices: [], with: impostor)
            await #expect(throws: HeliographError(.badSignature, "")) {
                _ = try await alice.call(
                    .publishKeys,
                    PublishKeysRequest(deviceList: WireDeviceList(version: 99, devices: [], signature: list.signature)),
                    as: KeyStatus.self)
            }
            // Copies for Bob's phone only, while Bob also has a laptop with keys.
            _ = try await server.addDevice(to: bobPhone, named: "laptop")
            await #expect(throws: HeliographError(.deviceListMismatch, "")) {
                _ = try await alice.call(
                    .send,
                    SendRequest(
                        messageId: .random(), to: "bob_b",
                        copies: [WireCopy(deviceId: bobPhone.profile.deviceID, payload: Data([1]))],
                        frankingCommitment: Data(repeating: 0, count: 32)),
                    as: SendResponse.self)
            }
            await #expect(throws: HeliographError(.badRequest, "")) {
                _ = try await alice.call(
                    .send,
                    SendRequest(
                        messageId: .random(), to: "bob_b",
                        copies: [WireCopy(deviceId: bobPhone.profile.deviceID, payload: Data([1]))],
                        frankingCommitment: Data([1, 2])),
                    as: SendResponse.self)
            }
        }
    }

    @Test("a new device of a contact is noticed, and it receives from then on")
    func newDeviceNoticed() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bobPhone = try await server.register("bob_b", device: "phone")
            let first = try await alice.sendEncrypted(text: "one", to: "bob_b")
            #expect(first.notices.isEmpty)
            let bobTablet = try await server.addDevice(to: bobPhone, named: "tablet")
            // The signed device list now names both devices.
            let keys = try await alice.call(.fetchKeys, FetchKeysRequest(username: "bob_b"), as: FetchKeysResponse.self)
            #expect(
                Set(keys.deviceList?.devices.map(\.deviceId) ?? []) == [bobPhone.profile.deviceID, bobTablet.profile.deviceID])
            let second = try await alice.sendEncrypted(text: "two", to: "bob_b")
            #expect(second.notices == [.newDevice(username: "bob_b", device: bobTablet.profile.deviceID)])
            #expect(second.response.deviceCount == 2)
            #expect(try await openMessages(1, from: bobTablet).texts == ["two"])
            #expect(try await openMessages(2, from: bobPhone).texts == ["one", "two"])
        }
    }

    @Test("two devices that set up sessions with each other at the same moment converge on one")
    func simultaneousSetup() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            // Both write first, before reading anything: two setups cross on the wire.
            try await alice.sendEncrypted(text: "hi from alice", to: "bob_b")
            try await bob.sendEncrypted(text: "hi from bob", to: "alice")
            #expect(try await openMessages(1, from: bob).texts == ["hi from alice"])
            #expect(try await openMessages(1, from: alice).texts == ["hi from bob"])
            // From here on, both directions keep working.
            for round in 1...3 {
                try await alice.sendEncrypted(text: "a\(round)", to: "bob_b")
                try await bob.sendEncrypted(text: "b\(round)", to: "alice")
                let atBob = try await openMessages(1, from: bob)
                let atAlice = try await openMessages(1, from: alice)
                #expect(atBob.texts == ["a\(round)"], "\(atBob.dropped)")
                #expect(atAlice.texts == ["b\(round)"], "\(atAlice.dropped)")
            }
        }
    }

    @Test("a decrypted message kept for crash recovery is reused only for exactly the same envelope")
    func recoveryCacheBinding() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let carol = try await server.register("carol")
            try await alice.sendEncrypted(text: "from alice", to: "bob_b")
            let envelope = try await receive(1, from: bob)[0]
            guard case .message(let first) = try await bob.open(envelope) else {
                Issue.record("the message did not open")
                return
            }
            #expect(first.senderName == "alice")
            // Opened again (as after a crash before acknowledging): the kept copy is used.
            guard case .message(let again) = try await bob.open(envelope) else {
                Issue.record("the kept copy was not used")
                return
            }
            #expect(again.content.text == "from alice")
            // The same sequence number re-sent by a lying server as coming from someone else.
            var relabelled = envelope
            relabelled.sender = "carol"
            relabelled.senderAccount = carol.profile.accountID
            guard case .dropped = try await bob.open(relabelled) else {
                Issue.record("a relabelled envelope was shown")
                return
            }
        }
    }

    @Test("a message without a session is dropped as unknown_session; a changed identity is reported")
    func unknownSessionAndIdentityChange() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            try await alice.sendEncrypted(text: "setup", to: "bob_b")
            _ = try await openMessages(1, from: bob)
            try await bob.sendEncrypted(text: "reply", to: "alice")
            #expect(try await openMessages(1, from: alice).texts == ["reply"])
            // Alice's session is acknowledged now: her next message carries no setup header.
            try await alice.sendEncrypted(text: "plain ratchet message", to: "bob_b")
            let envelope = try await receive(1, from: bob)[0]
            guard case .message = try SealedMessage(bytes: envelope.payload) else {
                Issue.record("expected a message without setup header")
                return
            }
            // Bob's device lost its sessions (say, restored from an old backup).
            try bob.keyStore.update { state in
                state.peerSessions = [:]
                state.archivedPeerSessions = nil
            }
            guard case .dropped(_, let reason) = try await bob.open(envelope) else {
                Issue.record("a message without a session was accepted")
                return
            }
            #expect(reason.contains("unknown_session"))

            // Alice verified Bob; then the identity the server reports for Bob differs from the
            // one she recorded (simulated by changing her record): she is told, and Bob is no
            // longer verified.
            try await alice.markVerified("bob_b")
            try alice.keyStore.update { state in
                state.contacts[bob.profile.accountID.description]?.identityKey = IdentityKeyPair().publicKey.rawBytes
            }
            let (_, verified, notices) = try await alice.safetyNumber(with: "bob_b")
            #expect(notices == [.identityChanged(username: "bob_b")])
            #expect(!verified)
        }
    }

    @Test("safety numbers agree on both sides, and the key file is private and can be sealed")
    func safetyNumbersAndKeyFile() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let fromAlice = try await alice.safetyNumber(with: "bob_b")
            let fromBob = try await bob.safetyNumber(with: "@alice")
            #expect(fromAlice.number == fromBob.number)
            #expect(!fromAlice.verified)
            try await alice.markVerified("bob_b")
            #expect(try await alice.safetyNumber(with: "bob_b").verified)

            let attributes = try FileManager.default.attributesOfItem(atPath: alice.keyStore.file.path)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)

            let sealedClient = try await HeliographClient.register(
                username: "sealed_one", server: server.url, deviceName: "d", profileName: "sealed", store: server.profiles,
                passphrase: "correct horse")
            let onDisk = try Data(contentsOf: sealedClient.keyStore.file)
            #expect(onDisk.range(of: Data("agreementKey".utf8)) == nil)
            #expect(throws: HeliographError.self) {
                _ = try KeyStoreFile(profile: "sealed", store: server.profiles, passphrase: "wrong").read()
            }
            #expect(throws: HeliographError.self) { _ = try KeyStoreFile(profile: "sealed", store: server.profiles).read() }
            let reopened = try HeliographClient(profileName: "sealed", store: server.profiles, passphrase: "correct horse")
            try await alice.sendEncrypted(text: "to the sealed one", to: "sealed_one")
            #expect(try await openMessages(1, from: reopened).texts == ["to the sealed one"])
        }
    }
}
