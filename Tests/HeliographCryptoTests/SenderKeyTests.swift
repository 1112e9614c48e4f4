import Foundation
import HeliographCore
import HeliographCrypto
import Testing

/// Sender keys for private groups: one sending chain per member device, opened by every other
/// member device from the distribution it received.
@Suite("Sender keys")
struct SenderKeyTests {
    let chat = ChatID.random()
    let account = AccountID.random()
    let device = DeviceID.random()

    var context: SenderKeyContext { SenderKeyContext(chat: chat, senderAccount: account, senderDevice: device) }

    /// A sending chain and a receiver that got its distribution before the first post.
    func pair(epoch: Int64 = 4) throws -> (sender: SenderKeyState, receiver: SenderKeyState) {
        let sender = SenderKeyState.generate(chat: chat, epoch: epoch)
        return (sender, try SenderKeyState(receiving: sender.distribution))
    }

    /// Seals `count` posts whose plaintexts say their number.
    func seal(_ count: Int, with sender: inout SenderKeyState) throws -> [SenderKeyMessage] {
        try (0..<count).map { index in try sender.seal(Data("post \(index)".utf8), context: context) }
    }

    func expectError(
        _ code: SessionError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) {
        do {
            try body()
            Issue.record("expected \(code), but it succeeded", sourceLocation: sourceLocation)
        } catch let error as SessionError {
            #expect(error.code == code, "got \(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected a SessionError \(code), got \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("three hundred posts of assorted sizes survive their binary form and open in order")
    func roundTrip() throws {
        var (sender, receiver) = try pair()
        #expect(sender.isSending && !receiver.isSending)
        var seenCiphertexts = Set<Data>()
        for index in 0..<300 {
            let plaintext = Data((0..<(index * 7 % 600)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) })
            let message = try sender.seal(plaintext, context: context)
            #expect(message.iteration == UInt32(index))
            #expect(message.epoch == 4)
            let parsed = try SenderKeyMessage(bytes: message.bytes)
            #expect(parsed == message)
            #expect(try receiver.open(parsed, context: context) == plaintext)
            #expect(receiver.iteration == UInt32(index + 1))
            seenCiphertexts.insert(message.ciphertext)
        }
        // Each post has its own key: no two ciphertexts are alike, even the empty plaintexts'.
        #expect(seenCiphertexts.count == 300)
        #expect(sender.iteration == 300)
    }

    @Test("posts arriving out of order within the window all open, once each")
    func outOfOrder() throws {
        var (sender, receiver) = try pair()
        let messages = try seal(60, with: &sender)
        // A fixed interleaving: the last first, then evens, then odds backwards.
        let order = [59] + Array(stride(from: 0, to: 59, by: 2)) + Array(stride(from: 57, through: 1, by: -2))
        #expect(Set(order).count == 60)
        for index in order {
            #expect(try receiver.open(messages[index], context: context) == Data("post \(index)".utf8))
        }
        for index in [0, 31, 59] {
            expectError(.replayed) { _ = try receiver.open(messages[index], context: context) }
        }
    }

    @Test("a post more than 2,000 ahead is refused and changes nothing; exactly 2,000 ahead opens")
    func tooFarAhead() throws {
        var (sender, receiver) = try pair()
        let messages = try seal(SenderKeyState.maximumSkipped + 2, with: &sender)
        let before = receiver.distribution
        expectError(.tooFarAhead) { _ = try receiver.open(messages[SenderKeyState.maximumSkipped + 1], context: context) }
        #expect(receiver.distribution == before)
        let edge = SenderKeyState.maximumSkipped
        #expect(try receiver.open(messages[edge], context: context) == Data("post \(edge)".utf8))
        // Every post passed over is still there, and the one after the edge is now in reach.
        #expect(try receiver.open(messages[0], context: context) == Data("post 0".utf8))
        #expect(try receiver.open(messages[edge - 1], context: context) == Data("post \(edge - 1)".utf8))
        #expect(try receiver.open(messages[edge + 1], context: context) == Data("post \(edge + 1)".utf8))
    }

    @Test("the skipped-key store keeps at most 2,000 keys, dropping the oldest")
    func boundedStore() throws {
        var (sender, receiver) = try pair()
        let window = SenderKeyState.maximumSkipped
        let messages = try seal(2 * window + 2, with: &sender)
        // Keys 0..<2000 kept, then keys 2001..<4001 kept and 0..<2000 dropped.
        _ = try receiver.open(messages[window], context: context)
        _ = try receiver.open(messages[2 * window + 1], context: context)
        expectError(.replayed) { _ = try receiver.open(messages[window - 1], context: context) }
        #expect(try receiver.open(messages[window + 1], context: context) == Data("post \(window + 1)".utf8))
        #expect(try receiver.open(messages[2 * window], context: context) == Data("post \(2 * window)".utf8))
    }

    @Test("altered ciphertext, header, salt or signature are refused, and the post still opens afterwards")
    func tampering() throws {
        var (sender, receiver) = try pair()
        let messages = try seal(3, with: &sender)
        let message = messages[1]

        var flipped = message
        flipped.ciphertext[flipped.ciphertext.startIndex + 2] ^= 0x01
        expectError(.tampered) { _ = try receiver.open(flipped, context: context) }
        var tag = message
        tag.ciphertext[tag.ciphertext.endIndex - 1] ^= 0x80
        expectError(.tampered) { _ = try receiver.open(tag, context: context) }
        var salt = message
        salt.salt[salt.salt.startIndex] ^= 0x01
        expectError(.tampered) { _ = try receiver.open(salt, context: context) }
        // Renumbered: the post is decrypted with another post's key.
        var renumbered = message
        renumbered.iteration = 2
        expectError(.tampered) { _ = try receiver.open(renumbered, context: context) }
        var signature = message
        signature.signature[signature.signature.startIndex + 40] ^= 0x01
        expectError(.badSignature) { _ = try receiver.open(signature, context: context) }
        var otherKey = message
        otherKey.keyID &+= 1
        expectError(.unknownSession) { _ = try receiver.open(otherKey, context: context) }
        var otherEpoch = message
        otherEpoch.epoch += 1
        expectError(.unknownSession) { _ = try receiver.open(otherEpoch, context: context) }
        var shortSalt = message
        shortSalt.salt = Data(count: 8)
        expectError(.malformed) { _ = try receiver.open(shortSalt, context: context) }

        // None of the refusals moved the chain or used up a key.
        #expect(receiver.iteration == 0)
        for (index, message) in messages.enumerated() {
            #expect(try receiver.open(message, context: context) == Data("post \(index)".utf8))
        }
    }

    @Test("a member holding the chain key cannot post in the sender's name: the signature fails")
    func memberForgery() throws {
        var (sender, receiver) = try pair()
        _ = try seal(2, with: &sender)
        // The forger copies the sender's chain (key id, epoch, chain key, position) into a
        // sending state of its own, which has its own signing key.
        let forgerState = SenderKeyState.generate(chat: chat, epoch: 4)
        var forged = try JSONSerialization.jsonObject(with: JSONEncoder().encode(forgerState)) as! [String: Any]
        let original = try JSONSerialization.jsonObject(with: JSONEncoder().encode(sender)) as! [String: Any]
        for field in ["keyID", "epoch", "chainKey", "iteration"] { forged[field] = original[field] }
        var forger = try JSONDecoder().decode(
            SenderKeyState.self, from: JSONSerialization.data(withJSONObject: forged))
        #expect(forger.distribution.chainKey == sender.distribution.chainKey)
        #expect(forger.distribution.signingKey != sender.distribution.signingKey)

        let fake = try forger.seal(Data("in your name".utf8), context: context)
        #expect(fake.iteration == 2)
        // The AEAD accepts it (same chain key); only the signature tells it apart.
        expectError(.badSignature) { _ = try receiver.open(fake, context: context) }
        let genuine = try sender.seal(Data("real".utf8), context: context)
        #expect(try receiver.open(genuine, context: context) == Data("real".utf8))
    }

    @Test("a post cannot be re-attributed to another device, account or chat")
    func contextBinding() throws {
        var (sender, receiver) = try pair()
        let message = try sender.seal(Data("hello".utf8), context: context)

        var otherDevice = context
        otherDevice.senderDevice = .random()
        expectError(.tampered) { _ = try receiver.open(message, context: otherDevice) }
        var otherAccount = context
        otherAccount.senderAccount = .random()
        expectError(.tampered) { _ = try receiver.open(message, context: otherAccount) }
        var otherChat = context
        otherChat.chat = .random()
        expectError(.unknownSession) { _ = try receiver.open(message, context: otherChat) }

        // Even a receiver that files the same chain under another chat refuses it there: the
        // chat is inside the authenticated data, not only compared with the state.
        var moved = sender.distribution
        moved.chatID = otherChat.chat
        moved.iteration = 0
        var movedReceiver = try SenderKeyState(receiving: moved)
        expectError(.tampered) { _ = try movedReceiver.open(message, context: otherChat) }

        #expect(try receiver.open(message, context: context) == Data("hello".utf8))
        // And a sender cannot seal into another chat with this chain.
        expectError(.unknownSession) { _ = try sender.seal(Data("x".utf8), context: otherChat) }
    }

    @Test("a late receiver cannot open posts from before its distribution")
    func forwardSecrecy() throws {
        var sender = SenderKeyState.generate(chat: chat, epoch: 9)
        let early = try seal(10, with: &sender)
        let distribution = sender.distribution
        #expect(distribution.iteration == 10)
        var late = try SenderKeyState(receiving: distribution)
        #expect(late.firstIteration == 10)
        for message in early {
            expectError(.unknownSession) { _ = try late.open(message, context: context) }
        }
        let next = try seal(3, with: &sender)
        for (index, message) in next.enumerated() {
            #expect(try late.open(message, context: context) == Data("post \(index)".utf8))
        }
        expectError(.unknownSession) { _ = try late.open(early[9], context: context) }
    }

    @Test("a sender rolled back to an old copy uses fresh salts; the receiver takes only the first post of a number")
    func rolledBackSender() throws {
        var (sender, receiver) = try pair()
        var copy = sender
        let first = try sender.seal(Data("same".utf8), context: context)
        let second = try copy.seal(Data("same".utf8), context: context)
        #expect(first.iteration == second.iteration)
        #expect(first.salt != second.salt)
        #expect(first.ciphertext != second.ciphertext)
        #expect(try receiver.open(first, context: context) == Data("same".utf8))
        expectError(.replayed) { _ = try receiver.open(second, context: context) }
    }

    @Test("roles: a received chain cannot seal, an own chain does not open")
    func roles() throws {
        var (sender, receiver) = try pair()
        let message = try sender.seal(Data("a".utf8), context: context)
        expectError(.unknownSession) { _ = try receiver.seal(Data("b".utf8), context: context) }
        expectError(.unknownSession) { _ = try sender.open(message, context: context) }
        let tooLong = Data(count: SenderKeyMessage.maximumPlaintextLength + 1)
        expectError(.malformed) { _ = try sender.seal(tooLong, context: context) }
    }

    @Test("states survive their Codable form, skipped keys included")
    func codable() throws {
        var (sender, receiver) = try pair()
        let messages = try seal(5, with: &sender)
        _ = try receiver.open(messages[4], context: context)
        var restoredReceiver = try JSONDecoder().decode(SenderKeyState.self, from: JSONEncoder().encode(receiver))
        var restoredSender = try JSONDecoder().decode(SenderKeyState.self, from: JSONEncoder().encode(sender))
        #expect(restoredSender.isSending && !restoredReceiver.isSending)
        #expect(try restoredReceiver.open(messages[2], context: context) == Data("post 2".utf8))
        let later = try restoredSender.seal(Data("later".utf8), context: context)
        #expect(later.iteration == 5)
        #expect(try restoredReceiver.open(later, context: context) == Data("later".utf8))
        expectError(.replayed) { _ = try restoredReceiver.open(messages[4], context: context) }
    }

    @Test("distributions: binary round trip, and bad keys refused")
    func distributions() throws {
        let sender = SenderKeyState.generate(chat: chat, epoch: 7)
        let distribution = sender.distribution
        #expect(distribution.chainKey.count == 32 && distribution.signingKey.count == 32)
        #expect(try SenderKeyDistribution(bytes: distribution.bytes) == distribution)
        #expect(distribution.bytes.count == 97)
        #expect(try JSONDecoder().decode(SenderKeyDistribution.self, from: JSONEncoder().encode(distribution)) == distribution)
        for length in 0..<distribution.bytes.count {
            expectError(.malformed) { _ = try SenderKeyDistribution(bytes: distribution.bytes.prefix(length)) }
        }
        expectError(.malformed) { _ = try SenderKeyDistribution(bytes: distribution.bytes + Data([0])) }
        var version = distribution.bytes
        version[0] = 2
        expectError(.malformed) { _ = try SenderKeyDistribution(bytes: version) }

        var shortChain = distribution
        shortChain.chainKey = Data(count: 31)
        expectError(.invalidKey) { _ = try SenderKeyState(receiving: shortChain) }
        // The neutral element (small order: anyone could forge) and a non-canonical y ≥ p.
        for bad in [Data([1] + [UInt8](repeating: 0, count: 31)), Data([UInt8](repeating: 0xFF, count: 31) + [0x7F])] {
            var badKey = distribution
            badKey.signingKey = bad
            expectError(.invalidKey) { _ = try SenderKeyState(receiving: badKey) }
        }
    }

    @Test("malformed messages: every truncation, extension, wrong version and random bytes are refused without a crash")
    func malformed() throws {
        var (sender, receiver) = try pair()
        let message = try sender.seal(Data("malformed checks".utf8), context: context)
        let bytes = message.bytes
        #expect(bytes.count == 1 + 4 + 8 + 4 + 16 + 4 + message.ciphertext.count + 64)
        for length in 0..<bytes.count {
            expectError(.malformed) { _ = try SenderKeyMessage(bytes: bytes.prefix(length)) }
        }
        expectError(.malformed) { _ = try SenderKeyMessage(bytes: bytes + Data([0])) }
        var version = bytes
        version[0] = 0
        expectError(.malformed) { _ = try SenderKeyMessage(bytes: version) }
        // A length field claiming more than is there, and one below the tag size.
        var long = bytes
        long[33] = 0x7F
        expectError(.malformed) { _ = try SenderKeyMessage(bytes: long) }
        let short = bytes.prefix(33) + Data([0, 0, 0, 4, 1, 2, 3, 4]) + Data(count: 64)
        expectError(.malformed) { _ = try SenderKeyMessage(bytes: short) }

        var generator = SystemRandomNumberGenerator()
        for round in 0..<2_000 {
            var random = Data((0..<Int.random(in: 0...160, using: &generator)).map { _ in UInt8.random(in: 0...255) })
            if round % 2 == 0, !random.isEmpty { random[0] = 1 }
            guard let parsed = try? SenderKeyMessage(bytes: random) else { continue }
            // Whatever parses is still refused by the chain (without changing it).
            #expect(throws: SessionError.self) { _ = try receiver.open(parsed, context: context) }
        }
        #expect(try receiver.open(message, context: context) == Data("malformed checks".utf8))
    }
}
