import Crypto
import CryptoExtras
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import Testing

@Suite("Local key files and profiles")
struct LocalKeyFileTests {
    @Test("with a passphrase, NAME.json holds neither the identity private key nor the token in the clear")
    func sealedProfile() async throws {
        try await TestServer.run { server in
            let client = try await HeliographClient.register(
                username: "sealed_one", server: server.url, deviceName: "d", profileName: "sealed", store: server.profiles,
                passphrase: "correct horse")
            let profile = client.profile
            let onDisk = try Data(contentsOf: try server.profiles.file(for: "sealed"))
            for secret in [
                profile.identityPrivateKey, Data(profile.token.utf8), Data(profile.identityPrivateKey.base64EncodedString().utf8),
                Data(profile.server.absoluteString.utf8),
            ] {
                #expect(onDisk.range(of: secret) == nil)
            }
            #expect((try? JSONDecoder().decode(Profile.self, from: onDisk)) == nil)

            // Without the passphrase it does not open; with the wrong one neither; with it, it does.
            #expect(throws: HeliographError(.badRequest, "")) { _ = try server.profiles.load("sealed") }
            #expect(throws: HeliographError(.badRequest, "")) {
                _ = try server.profiles.sealing(with: "wrong").load("sealed")
            }
            #expect(try server.profiles.sealing(with: "correct horse").load("sealed") == profile)
            let reopened = try HeliographClient(profileName: "sealed", store: server.profiles, passphrase: "correct horse")
            #expect(reopened.profile == profile)
            #expect(try await reopened.devices().count == 1)

            // A sealed profile cannot stand in for the key file: each is bound to its purpose.
            try Data(contentsOf: try server.profiles.file(for: "sealed")).write(to: client.keyStore.file)
            #expect(throws: HeliographError(.badRequest, "")) { _ = try reopened.keyStore.read() }
        }
    }

    @Test("a plain profile or key file is refused when a passphrase is set, until the person seals it")
    func plainFilesRefused() async throws {
        try await TestServer.run { server in
            let plain = try await server.register("plain_one")
            let name = plain.profileName
            // Someone who can write the directory left plain files: they are not accepted.
            do {
                _ = try HeliographClient(profileName: name, store: server.profiles, passphrase: "pass phrase")
                Issue.record("a plain profile was accepted with a passphrase set")
            } catch let error as HeliographError {
                #expect(error.code == .badRequest)
                #expect(error.message.contains("not sealed"))
            }
            // Sealing them is an explicit act; afterwards both are sealed and open.
            try server.profiles.sealing(with: "pass phrase").sealPlainFiles(of: name)
            for file in [try server.profiles.file(for: name), plain.keyStore.file] {
                #expect(PassphraseSealer.isSealed(try Data(contentsOf: file)))
            }
            let sealed = try HeliographClient(profileName: name, store: server.profiles, passphrase: "pass phrase")
            let state = try sealed.keyStore.read()
            #expect(state.agreementKey.count == 32)

            // A plain key file slipped in beside the sealed profile is refused too.
            try JSONEncoder().encode(DeviceKeyState()).write(to: sealed.keyStore.file)
            do {
                _ = try sealed.keyStore.read()
                Issue.record("a plain key file was accepted with a passphrase set")
            } catch let error as HeliographError {
                #expect(error.message.contains("not sealed"))
            }
        }
    }

    @Test("key files sealed with the old scrypt parameters still open, and are resealed with N = 2^17")
    func oldParametersStillOpen() throws {
        let directory = temporaryDirectory("keys")
        let store = ProfileStore(directory: directory, passphrase: "old secret")
        let keys = try KeyStoreFile(profile: "old", store: store)
        var state = DeviceKeyState()
        state.nextPrekeyID = 42
        let plain = try JSONEncoder().encode(state)

        // The first format: `heliograph-sealed-keys-v1`, scrypt N = 2^15, r = 8, p = 1, no
        // associated data. Written here by hand, as the earlier version did.
        struct FirstFormat: Codable {
            var format: String
            var salt: Data
            var box: Data
        }
        let salt = Data((0..<16).map { _ in UInt8.random(in: .min ... .max) })
        let oldKey = try KDF.Scrypt.deriveKey(
            from: Data("old secret".utf8), salt: salt, outputByteCount: 32, rounds: 1 << 15, blockSize: 8, parallelism: 1)
        let box = try #require(try AES.GCM.seal(plain, using: oldKey).combined)
        try JSONEncoder().encode(FirstFormat(format: "heliograph-sealed-keys-v1", salt: salt, box: box)).write(to: keys.file)
        #expect(try keys.read().nextPrekeyID == 42)

        // The current format with the old parameters stored in it.
        let legacy = PassphraseSealer(passphrase: "old secret", parameters: .init(n: 1 << 15, r: 8, p: 1))
        try legacy.seal(plain, purpose: "keys").write(to: keys.file)
        #expect(try keys.read().nextPrekeyID == 42)
        #expect(try scryptN(of: keys.file) == 1 << 15)

        // The next write reseals with the current parameters.
        try keys.update { $0.nextPrekeyID = 43 }
        #expect(try scryptN(of: keys.file) == 1 << 17)
        #expect(
            try KeyStoreFile(profile: "old", store: ProfileStore(directory: directory, passphrase: "old secret")).read()
                .nextPrekeyID == 43)
        #expect(PassphraseSealer.currentParameters == .init(n: 1 << 17, r: 8, p: 1))
    }

    /// A power loss after a send, with the key file as it was before that send: the restarted
    /// client sends from the same chain position again, but never under the same message key
    /// and nonce, and the recipient opens what it can.
    @Test("a restored old key file never reuses a message key")
    func restoredKeyFile() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            try await alice.sendEncrypted(text: "first", to: "bob_b")
            let onDiskBefore = try Data(contentsOf: alice.keyStore.file)
            try await alice.sendEncrypted(text: "second", to: "bob_b")
            await alice.close()

            // The old file comes back; the device starts again from it.
            try onDiskBefore.write(to: alice.keyStore.file)
            let restarted = try HeliographClient(profileName: alice.profileName, store: server.profiles)
            try await restarted.sendEncrypted(text: "third", to: "bob_b")

            let messages = try await receive(3, from: bob)
            let headers = try messages.map { try SealedMessage(bytes: $0.payload).ratchetMessage.header }
            // "third" went out from the chain position of "second": the rollback happened...
            #expect(headers[1].ratchetKey == headers[2].ratchetKey)
            #expect(headers[1].messageNumber == headers[2].messageNumber)
            // ...but with its own salt, hence its own AES-GCM key and nonce.
            #expect(headers[1].salt.count == 16)
            #expect(headers[1].salt != headers[2].salt)
            #expect(messages[1].payload != messages[2].payload)

            var texts: [String] = []
            var dropped = 0
            for message in messages {
                switch try await bob.open(message) {
                case .message(let opened): texts.append(opened.content.text)
                case .dropped: dropped += 1
                }
            }
            #expect(texts == ["first", "second"])
            #expect(dropped == 1)
        }
    }

    /// The `n` stored in a sealed file.
    private func scryptN(of file: URL) throws -> Int? {
        let object = try JSONSerialization.jsonObject(with: try Data(contentsOf: file)) as? [String: Any]
        return (object?["scrypt"] as? [String: Any])?["n"] as? Int
    }
}
