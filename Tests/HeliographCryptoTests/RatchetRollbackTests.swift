import Foundation
import HeliographCore
import HeliographCrypto
import Testing

@Suite("Double Ratchet after a rolled-back sender")
struct RatchetRollbackTests {
    /// A sender restored to an older state (an old key file after a power loss) sends from the
    /// same chain position twice. Without the per-message salt both messages would use the same
    /// AES-GCM key and nonce, and the XOR of the ciphertexts would equal the XOR of the
    /// plaintexts; with it, key and nonce differ.
    @Test("two messages from the same cloned state use different keys and nonces; the recipient opens what it can")
    func clonedSenderNeverReusesKeys() throws {
        var (alice, bob) = try establishedPair()
        let reply = try bob.encrypt(Data("hi alice".utf8))
        _ = try alice.decrypt(reply)
        let restored = alice  // the key file as it was on disk before the next send

        var original = alice
        var clone = restored
        let first = Data("transfer 100 to carol".utf8)
        let second = Data("transfer 900 to mallo".utf8)
        #expect(first.count == second.count)
        let sentFirst = try original.encrypt(first)
        let sentSecond = try clone.encrypt(second)

        // Same chain position: this is the rollback.
        #expect(sentFirst.header.ratchetKey == sentSecond.header.ratchetKey)
        #expect(sentFirst.header.messageNumber == sentSecond.header.messageNumber)
        // Fresh salts, so a fresh key and nonce: no keystream reuse, different tags.
        #expect(sentFirst.header.salt.count == 16)
        #expect(sentFirst.header.salt != sentSecond.header.salt)
        let body = first.count
        let ciphertextXOR = zip(sentFirst.ciphertext.prefix(body), sentSecond.ciphertext.prefix(body)).map { $0 ^ $1 }
        let plaintextXOR = zip(first, second).map { $0 ^ $1 }
        #expect(ciphertextXOR != plaintextXOR)
        #expect(sentFirst.ciphertext.suffix(16) != sentSecond.ciphertext.suffix(16))

        // The same plaintext twice from the same state still gives different ciphertexts.
        var again = restored
        var yetAgain = restored
        #expect(try again.encrypt(first).ciphertext != yetAgain.encrypt(first).ciphertext)

        // Bob opens the first; the second claims the same position and is refused as a replay;
        // the restored sender's next message opens.
        #expect(try bob.decrypt(sentFirst) == first)
        #expect(throws: SessionError(.replayed, "")) { _ = try bob.decrypt(sentSecond) }
        #expect(try bob.decrypt(clone.encrypt(Data("next".utf8))) == Data("next".utf8))
    }

    @Test("the salt is authenticated, and a message cannot be downgraded to the unsalted format")
    func saltIsBound() throws {
        var (alice, bob) = try establishedPair()
        _ = try alice.decrypt(try bob.encrypt(Data("reply".utf8)))
        let sealed = try alice.seal(Data("bound".utf8))
        var bytes = [UInt8](sealed.bytes)
        #expect(bytes[1] == 2)

        // Flip one bit of the salt: the message no longer authenticates.
        let message = sealed.ratchetMessage
        var altered = message
        altered.header.salt[0] ^= 1
        var probe = bob
        #expect(throws: SessionError(.tampered, "")) { _ = try probe.decrypt(altered) }

        // Rewrite it as version 1 (drop the salt): it parses, but does not open.
        guard case .message = sealed else {
            Issue.record("expected an established-session message")
            return
        }
        let saltOffset = 3 + 32 + 4 + 4
        bytes[1] = 1
        bytes.removeSubrange(saltOffset..<saltOffset + 16)
        let downgraded = try SealedMessage(bytes: Data(bytes))
        #expect(downgraded.ratchetMessage.header.salt.isEmpty)
        #expect(throws: SessionError(.tampered, "")) { _ = try probe.decrypt(downgraded.ratchetMessage) }

        // The untouched message still opens.
        #expect(try bob.decrypt(message) == Data("bound".utf8))
        // A version this client does not speak is refused with a clear error.
        var future = [UInt8](sealed.bytes)
        future[1] = 3
        #expect(throws: SessionError(.malformed, "")) { _ = try SealedMessage(bytes: Data(future)) }
    }
}
