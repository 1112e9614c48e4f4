import Crypto
import Foundation
import HeliographCore
import HeliographCrypto
import Testing

/// A device with its published keys and the private halves, as a client would hold them.
struct TestDevice {
    let local: LocalDevice
    let signedPrekey = AgreementKeyPair()
    let oneTimePrekey = AgreementKeyPair()
    let kemPrekey: KEMKeyPair
    let lastResort: KEMKeyPair

    init(identity: IdentityKeyPair = IdentityKeyPair(), account: AccountID = .random()) throws {
        local = try LocalDevice(account: account, device: .random(), identity: identity, agreement: AgreementKeyPair())
        kemPrekey = try KEMKeyPair()
        lastResort = try KEMKeyPair()
    }

    func bundle(oneTime: Bool = true, lastResortKEM: Bool = false) throws -> UnverifiedPrekeyBundle {
        let (account, device, identity) = (local.account, local.device, local.identity)
        return UnverifiedPrekeyBundle(
            account: account, device: device, agreementKey: local.signedAgreementKey,
            signedPrekey: try .sign(
                kind: .signedPrekey, id: 1, publicKey: signedPrekey.publicKeyBytes, account: account, device: device,
                with: identity),
            oneTimePrekey: oneTime
                ? try .sign(
                    kind: .oneTimePrekey, id: 7, publicKey: oneTimePrekey.publicKeyBytes, account: account, device: device,
                    with: identity) : nil,
            kemPrekey: lastResortKEM
                ? try .sign(
                    kind: .lastResortKEMPrekey, id: 99, publicKey: lastResort.publicKeyBytes, account: account,
                    device: device, with: identity)
                : try .sign(
                    kind: .kemPrekey, id: 3, publicKey: kemPrekey.publicKeyBytes, account: account, device: device,
                    with: identity))
    }

    /// The responder side of a setup message.
    func respond(
        to header: PrekeyHeader, from sender: TestDevice, maximumSkipped: Int = RatchetSession.defaultMaximumSkipped
    ) throws -> RatchetSession {
        let prekeys = PQXDH.ResponderPrekeys(
            signedPrekey: signedPrekey, oneTimePrekey: header.oneTimePrekeyID == nil ? nil : oneTimePrekey,
            kemPrekey: header.kemPrekeyIsLastResort ? lastResort : kemPrekey)
        let (secret, associated) = try PQXDH.respond(
            to: header, at: local, from: sender.local.account, device: sender.local.device,
            identity: sender.local.identity.publicKey, prekeys: prekeys)
        return RatchetSession(
            responding: secret, associatedData: associated, signedPrekey: signedPrekey, initiatorBaseKey: header.baseKey,
            maximumSkipped: maximumSkipped)
    }
}

func verified(_ bundle: UnverifiedPrekeyBundle, _ identity: IdentityPublicKey) throws -> VerifiedPrekeyBundle {
    switch PrekeyBundleVerifier.verify(bundle, identity: identity) {
    case .verified(let verified): return verified
    case .rejected(let error): throw error
    }
}

/// Alice sets a session up with Bob; Bob answers the first message.
func establishedPair(
    maximumSkipped: Int = RatchetSession.defaultMaximumSkipped, oneTime: Bool = true
)
    throws -> (alice: RatchetSession, bob: RatchetSession)
{
    let aliceDevice = try TestDevice()
    let bobDevice = try TestDevice()
    let setup = try PQXDH.initiate(
        from: aliceDevice.local, to: try verified(bobDevice.bundle(oneTime: oneTime), bobDevice.local.identity.publicKey))
    var alice = try RatchetSession(initiating: setup, maximumSkipped: maximumSkipped)
    guard case .setup(let header, let first) = try alice.seal(Data("hello".utf8)) else {
        throw SessionError(.malformed, "the first message must carry the setup header")
    }
    var bob = try bobDevice.respond(to: header, from: aliceDevice, maximumSkipped: maximumSkipped)
    #expect(try bob.decrypt(first) == Data("hello".utf8))
    return (alice, bob)
}

@Suite("PQXDH session setup")
struct SessionSetupTests {
    @Test("both sides derive the same session, with and without a one-time prekey, with the last-resort KEM key")
    func setupVariants() throws {
        for (oneTime, lastResort) in [(true, false), (false, false), (false, true)] {
            let alice = try TestDevice()
            let bob = try TestDevice()
            let bundle = try verified(bob.bundle(oneTime: oneTime, lastResortKEM: lastResort), bob.local.identity.publicKey)
            let setup = try PQXDH.initiate(from: alice.local, to: bundle)
            #expect(setup.header.oneTimePrekeyID == (oneTime ? 7 : nil))
            #expect(setup.header.kemPrekeyIsLastResort == lastResort)
            var aliceSession = try RatchetSession(initiating: setup)
            let sealed = try aliceSession.seal(Data("first".utf8))
            // The wire form survives a round trip, also from a slice whose indices do not start at 0.
            #expect(try SealedMessage(bytes: (Data([0xFF]) + sealed.bytes).dropFirst()) == sealed)
            let parsed = try SealedMessage(bytes: sealed.bytes)
            guard case .setup(let header, let message) = parsed else {
                Issue.record("expected a setup message")
                return
            }
            var bobSession = try bob.respond(to: header, from: alice)
            #expect(try bobSession.decrypt(message) == Data("first".utf8))
            #expect(bobSession.associatedData == aliceSession.associatedData)
        }
    }

    @Test("a bundle signed by another identity, or with a swapped key, is rejected")
    func badBundles() throws {
        let bob = try TestDevice()
        let impostor = IdentityKeyPair()
        guard case .rejected(let error) = PrekeyBundleVerifier.verify(try bob.bundle(), identity: impostor.publicKey) else {
            Issue.record("a bundle verified against the wrong identity")
            return
        }
        #expect(error.code == .badSignature)

        var swapped = try bob.bundle()
        swapped.signedPrekey.publicKey = AgreementKeyPair().publicKeyBytes
        guard case .rejected(let swapError) = PrekeyBundleVerifier.verify(swapped, identity: bob.local.identity.publicKey) else {
            Issue.record("a bundle with a substituted prekey verified")
            return
        }
        #expect(swapError.code == .badSignature)

        // A one-time prekey offered as the signed prekey: the kind is part of what is signed.
        var misfiled = try bob.bundle()
        misfiled.signedPrekey = try #require(misfiled.oneTimePrekey)
        guard case .rejected(let kindError) = PrekeyBundleVerifier.verify(misfiled, identity: bob.local.identity.publicKey)
        else {
            Issue.record("a misfiled prekey verified")
            return
        }
        #expect(kindError.code == .invalidKey)
    }

    @Test("a setup message whose agreement key is not signed by the claimed sender is refused")
    func forgedInitiator() throws {
        let alice = try TestDevice()
        let bob = try TestDevice()
        let mallory = try TestDevice()
        let setup = try PQXDH.initiate(from: mallory.local, to: try verified(bob.bundle(), bob.local.identity.publicKey))
        // Mallory claims to be Alice's device: Bob checks against Alice's identity and refuses.
        #expect(throws: SessionError(.badSignature, "")) {
            _ = try bob.respond(to: setup.header, from: alice)
        }
    }

    @Test("safety numbers agree on both sides and change with an identity")
    func safetyNumbers() throws {
        let alice = (account: AccountID.random(), identity: IdentityKeyPair().publicKey)
        let bob = (account: AccountID.random(), identity: IdentityKeyPair().publicKey)
        let fromAlice = SafetyNumber(alice, bob)
        let fromBob = SafetyNumber(bob, alice)
        #expect(fromAlice == fromBob)
        #expect(fromAlice.digits.count == 60)
        #expect(fromAlice.digits.allSatisfy { $0.isNumber })
        #expect(fromAlice.description.split(separator: " ").count == 12)
        #expect(fromAlice.scannable.hasPrefix("heliograph-safety:1:"))
        let changed = SafetyNumber(alice, (bob.account, IdentityKeyPair().publicKey))
        #expect(changed.digits != fromAlice.digits)
    }

    @Test("a signed device list verifies, and fails after any change")
    func deviceList() throws {
        let identity = IdentityKeyPair()
        let entries = [
            SignedDeviceList.Entry(device: .random(), agreementKey: AgreementKeyPair().publicKeyBytes),
            SignedDeviceList.Entry(device: .random(), agreementKey: AgreementKeyPair().publicKeyBytes),
        ]
        let list = try SignedDeviceList.sign(account: .random(), version: 3, devices: entries, with: identity)
        try list.verify(identity: identity.publicKey)
        var hidden = list
        hidden.devices.removeFirst()
        #expect(throws: SessionError(.badSignature, "")) { try hidden.verify(identity: identity.publicKey) }
        var rolledBack = list
        rolledBack.version = 2
        #expect(throws: SessionError(.badSignature, "")) { try rolledBack.verify(identity: identity.publicKey) }
    }
}

@Suite("Double Ratchet")
struct DoubleRatchetTests {
    @Test("in order, both directions, many turns")
    func inOrder() throws {
        var (alice, bob) = try establishedPair()
        for turn in 0..<20 {
            for index in 0..<3 {
                let text = Data("a\(turn).\(index)".utf8)
                #expect(try bob.decrypt(alice.encrypt(text)) == text)
            }
            let reply = Data("b\(turn)".utf8)
            #expect(try alice.decrypt(bob.encrypt(reply)) == reply)
        }
        #expect(alice.isAcknowledged)
    }

    @Test("out of order and lost messages")
    func outOfOrder() throws {
        var (alice, bob) = try establishedPair()
        let messages = try (0..<10).map { try alice.encrypt(Data("m\($0)".utf8)) }
        // 9 first, then some of the earlier ones; 3 is lost for good.
        for index in [9, 0, 5, 1, 8, 2, 4, 6, 7] {
            #expect(try bob.decrypt(messages[index]) == Data("m\(index)".utf8))
        }
        // A new DH step by Bob, then the rest of Alice's old chain still decrypts.
        let late = try alice.encrypt(Data("late".utf8))
        let reply = try bob.encrypt(Data("r".utf8))
        #expect(try alice.decrypt(reply) == Data("r".utf8))
        let afterStep = try alice.encrypt(Data("new chain".utf8))
        #expect(try bob.decrypt(afterStep) == Data("new chain".utf8))
        #expect(try bob.decrypt(late) == Data("late".utf8))
        #expect(try bob.decrypt(messages[3]) == Data("m3".utf8))
    }

    @Test("a replayed message is rejected and the session goes on")
    func replay() throws {
        var (alice, bob) = try establishedPair()
        let message = try alice.encrypt(Data("once".utf8))
        #expect(try bob.decrypt(message) == Data("once".utf8))
        #expect(throws: SessionError(.replayed, "")) { _ = try bob.decrypt(message) }
        // A skipped key is used once too.
        let skipped = try alice.encrypt(Data("skipped".utf8))
        let next = try alice.encrypt(Data("next".utf8))
        _ = try bob.decrypt(next)
        _ = try bob.decrypt(skipped)
        #expect(throws: SessionError(.replayed, "")) { _ = try bob.decrypt(skipped) }
        // A message of an earlier chain, after a DH step.
        _ = try alice.decrypt(bob.encrypt(Data("step".utf8)))
        _ = try bob.decrypt(alice.encrypt(Data("new".utf8)))
        #expect(throws: SessionError(.replayed, "")) { _ = try bob.decrypt(next) }
        #expect(try bob.decrypt(alice.encrypt(Data("still fine".utf8))) == Data("still fine".utf8))
    }

    @Test("the skipped-key bound: one beyond it is refused, exactly at it works")
    func skippedBound() throws {
        var (alice, bob) = try establishedPair(maximumSkipped: 50)
        let messages = try (0...51).map { try alice.encrypt(Data("m\($0)".utf8)) }
        #expect(throws: SessionError(.tooFarAhead, "")) { _ = try bob.decrypt(messages[51]) }
        #expect(try bob.decrypt(messages[50]) == Data("m50".utf8))
        #expect(try bob.decrypt(messages[0]) == Data("m0".utf8))
        #expect(try bob.decrypt(messages[51]) == Data("m51".utf8))
    }

    @Test("the default bound is 1,000")
    func defaultBound() throws {
        var (alice, bob) = try establishedPair()
        #expect(bob.maximumSkipped == 1_000)
        var last = try alice.encrypt(Data())
        for _ in 0..<1_001 { last = try alice.encrypt(Data("x".utf8)) }
        #expect(throws: SessionError(.tooFarAhead, "")) { _ = try bob.decrypt(last) }
    }

    @Test("tampered ciphertext, header or associated data fail without harming the session")
    func tampering() throws {
        var (alice, bob) = try establishedPair()
        let message = try alice.encrypt(Data("intact".utf8))

        var flipped = message
        flipped.ciphertext[flipped.ciphertext.startIndex] ^= 1
        #expect(throws: SessionError(.tampered, "")) { _ = try bob.decrypt(flipped) }

        var renumbered = message
        renumbered.header.messageNumber += 1
        #expect(throws: SessionError(.tampered, "")) { _ = try bob.decrypt(renumbered) }

        var truncated = message
        truncated.ciphertext = truncated.ciphertext.prefix(5)
        #expect(throws: SessionError(.tampered, "")) { _ = try bob.decrypt(truncated) }

        var foreignKey = message
        foreignKey.header.ratchetKey = AgreementKeyPair().publicKeyBytes
        #expect(throws: SessionError(.tampered, "")) { _ = try bob.decrypt(foreignKey) }

        // The same message in a session between other devices (other associated data).
        var (_, otherBob) = try establishedPair()
        #expect(throws: (any Error).self) { _ = try otherBob.decrypt(message) }

        #expect(try bob.decrypt(message) == Data("intact".utf8))
        for garbage in [Data(), Data([0xE2]), Data([0xE2, 1, 9]), Data([0xE2, 2, 1]), Data(repeating: 0xE2, count: 80)] {
            #expect(throws: SessionError(.malformed, "")) { _ = try SealedMessage(bytes: garbage) }
        }
    }

    @Test("forward secrecy: a later state cannot decrypt earlier captured ciphertext")
    func forwardSecrecy() throws {
        var (alice, bob) = try establishedPair()
        let captured = try alice.encrypt(Data("secret".utf8))
        #expect(try bob.decrypt(captured) == Data("secret".utf8))
        for index in 0..<3 {
            _ = try alice.decrypt(bob.encrypt(Data("r\(index)".utf8)))
            _ = try bob.decrypt(alice.encrypt(Data("a\(index)".utf8)))
        }
        // An attacker who steals Bob's whole state now still cannot read what was captured.
        var stolen = bob
        #expect(throws: SessionError.self) { _ = try stolen.decrypt(captured) }
    }

    @Test("healing: after a DH step an attacker holding an old state cannot decrypt")
    func postCompromiseHealing() throws {
        var (alice, bob) = try establishedPair()
        _ = try alice.decrypt(bob.encrypt(Data("r".utf8)))
        let compromised = bob  // the attacker copies Bob's state here
        // Within the compromised chain the attacker can read (that is what compromise means)…
        let sameChain = try alice.encrypt(Data("same chain".utf8))
        var attacker = compromised
        #expect(try attacker.decrypt(sameChain) == Data("same chain".utf8))
        _ = try bob.decrypt(sameChain)
        // …but after Bob answers and Alice steps her ratchet with fresh randomness, it cannot.
        _ = try alice.decrypt(bob.encrypt(Data("heal".utf8)))
        let healed = try alice.encrypt(Data("after healing".utf8))
        var attackerLater = compromised
        #expect(throws: SessionError.self) { _ = try attackerLater.decrypt(healed) }
        #expect(try bob.decrypt(healed) == Data("after healing".utf8))
    }

    @Test("a session survives a round trip through its stored form")
    func persistence() throws {
        var (alice, bob) = try establishedPair()
        let stored = try JSONEncoder().encode(bob)
        var restored = try JSONDecoder().decode(RatchetSession.self, from: stored)
        let message = try alice.encrypt(Data("after restart".utf8))
        #expect(try restored.decrypt(message) == Data("after restart".utf8))
        #expect(throws: SessionError(.replayed, "")) { _ = try restored.decrypt(message) }
        #expect(try bob.decrypt(message) == Data("after restart".utf8))
    }
}

@Suite("Message franking")
struct FrankingTests {
    let serverKey = try! Franking.ServerKey(id: 7, secret: Franking.newServerSecret())

    @Test("a genuine report verifies; altered plaintext, sender, recipient or time are rejected")
    func reports() throws {
        let key = Franking.newKey()
        let sender = AccountID.random()
        let body = Data("abusive text".utf8)
        let commitment = Franking.commitment(frankingKey: key, messageID: "m1", sender: sender, body: body)
        try Franking.verifyCommitment(commitment, frankingKey: key, messageID: "m1", sender: sender, body: body)

        let context = Franking.Context(
            commitment: commitment, senderAccount: sender, senderDevice: .random(), recipientAccount: .random(),
            recipientDevice: .random(), serverTime: 1_790_000_000_000, messageID: "m1")
        let tag = try Franking.ServerTag(bytes: Franking.tag(context, key: serverKey))
        #expect(Franking.isValidTag(tag, for: context, key: serverKey))

        // The reporter changes the words: the commitment no longer matches.
        #expect(throws: SessionError(.badCommitment, "")) {
            try Franking.verifyCommitment(
                commitment, frankingKey: key, messageID: "m1", sender: sender, body: Data("other text".utf8))
        }
        // …or blames someone else, another recipient, another time, or another message id.
        var otherSender = context
        otherSender.senderAccount = .random()
        var otherRecipient = context
        otherRecipient.recipientDevice = .random()
        var otherTime = context
        otherTime.serverTime += 1
        var otherID = context
        otherID.messageID = "m2"
        for altered in [otherSender, otherRecipient, otherTime, otherID] {
            #expect(!Franking.isValidTag(tag, for: altered, key: serverKey))
        }
        // A tag made up without the server key, under the same key id.
        let guessed = try Franking.ServerKey(id: serverKey.id, secret: Franking.newServerSecret())
        let guessedTag = try Franking.ServerTag(bytes: Franking.tag(context, key: guessed))
        #expect(!Franking.isValidTag(guessedTag, for: context, key: serverKey))
        // A wrong franking key.
        #expect(throws: SessionError(.badCommitment, "")) {
            try Franking.verifyCommitment(commitment, frankingKey: Franking.newKey(), messageID: "m1", sender: sender, body: body)
        }
    }

    @Test("sealed content round-trips and rejects garbage")
    func sealedContent() throws {
        let content = SealedContent(frankingKey: Franking.newKey(), body: Data("hi".utf8))
        #expect(try SealedContent(bytes: content.bytes) == content)
        #expect(throws: SessionError(.malformed, "")) { _ = try SealedContent(bytes: content.bytes.dropLast()) }
    }
}
