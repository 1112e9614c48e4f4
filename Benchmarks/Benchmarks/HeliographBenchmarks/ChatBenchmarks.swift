import Benchmark
import Crypto
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographStore
import Synchronization

/// A channel on SQLite with `members` members (the owner and synthetic accounts' rows; the
/// store does not need their account rows), added 10,000 per transaction as seed-chat does.
private func seededChannel(
    members: Int
) async throws -> (
    storage: SQLiteStorage, directory: URL, chat: ChatID, owner: EnvelopeSender
) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("heliograph-bench-\(UUID().uuidString)")
    let storage = try SQLiteStorage(directory: directory)
    let now = Date().wholeMilliseconds
    let owner = EnvelopeSender(accountID: .random(), username: try Username(validating: "owner"), deviceID: .random())
    let chat = Chat(
        id: .random(), kind: .channel, title: "Bench", username: try Username(validating: "bench_channel"), createdAt: now)
    try await storage.chats.create(
        chat, members: [ChatMember(chatID: chat.id, accountID: owner.accountID, role: .owner, joinedAt: now)], firstUpdate: nil)
    var added = 1
    while added < members {
        let count = min(10_000, members - added)
        let effects = (0..<count).map { _ in
            ChatEffect.addMember(ChatMember(chatID: chat.id, accountID: .random(), role: .member, joinedAt: now), limit: nil)
        }
        _ = try await storage.chatLog.append(
            NewChatUpdate(
                chatID: chat.id, kind: .membership, messageID: .random(), sender: owner, serverTime: now, payload: Data(),
                effects: effects, logged: false))
        added += count
    }
    return (storage, directory, chat.id, owner)
}

/// A seeded channel shared by the samples of one benchmark, from its setup to its teardown.
private final class SeededChannelSlot: Sendable {
    let value = Mutex<(storage: SQLiteStorage, directory: URL, chat: ChatID, owner: EnvelopeSender)?>(nil)
}

/// Groups and channels: the sender-key cost of a private-group post on each side, beside the
/// primitives it is made of, and a channel post's commit with few and with many members.
func chatBenchmarks() {
    let context = SenderKeyContext(chat: .random(), senderAccount: .random(), senderDevice: .random())
    let plaintext = Data(repeating: 0x61, count: 200)

    // Sealing a post: two chain HMACs, one HKDF for the post's key and nonce, AES-256-GCM, and
    // an Ed25519 signature. Opening replaces the signature by its verification.
    Benchmark("chat: primitives of a sender-key seal (2 HMAC + HKDF + AES-GCM seal + Ed25519 sign, 200 B)") { benchmark in
        let chainKey = SymmetricKey(size: .bits256)
        let signer = Curve25519.Signing.PrivateKey()
        let salt = Data(repeating: 5, count: 16)
        for _ in benchmark.scaledIterations {
            let messageKey = HMAC<SHA256>.authenticationCode(for: [0x01], using: chainKey)
            blackHole(HMAC<SHA256>.authenticationCode(for: [0x02], using: chainKey))
            let expanded = HKDF<SHA256>.deriveKey(
                inputKeyMaterial: SymmetricKey(data: Data(messageKey)), salt: salt, info: Data("x".utf8), outputByteCount: 44
            ).withUnsafeBytes { Data($0) }
            let box = try AES.GCM.seal(
                plaintext, using: SymmetricKey(data: expanded.prefix(32)), nonce: try AES.GCM.Nonce(data: expanded.suffix(12)),
                authenticating: salt)
            blackHole(try signer.signature(for: box.ciphertext + box.tag))
        }
    }

    Benchmark("chat: sender-key seal (200 B)") { benchmark in
        var sending = SenderKeyState.generate(chat: context.chat, epoch: 1)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try sending.seal(plaintext, context: context).bytes)
        }
    }

    Benchmark("chat: primitives of a sender-key open (2 HMAC + HKDF + AES-GCM open + Ed25519 verify, 200 B)") { benchmark in
        let chainKey = SymmetricKey(size: .bits256)
        let signer = Curve25519.Signing.PrivateKey()
        let salt = Data(repeating: 5, count: 16)
        let key = SymmetricKey(size: .bits256)
        let box = try AES.GCM.seal(plaintext, using: key, authenticating: salt)
        let signature = try signer.signature(for: box.ciphertext + box.tag)
        for _ in benchmark.scaledIterations {
            blackHole(HMAC<SHA256>.authenticationCode(for: [0x01], using: chainKey))
            blackHole(HMAC<SHA256>.authenticationCode(for: [0x02], using: chainKey))
            blackHole(
                HKDF<SHA256>.deriveKey(
                    inputKeyMaterial: key, salt: salt, info: Data("x".utf8), outputByteCount: 44))
            blackHole(try AES.GCM.open(box, using: key, authenticating: salt))
            blackHole(signer.publicKey.isValidSignature(signature, for: box.ciphertext + box.tag))
        }
    }

    Benchmark("chat: sender-key open (parse, decrypt, verify; 200 B)") { benchmark in
        var sending = SenderKeyState.generate(chat: context.chat, epoch: 1)
        var receiving = try SenderKeyState(receiving: sending.distribution)
        // Posts are opened in the order they were sealed, as a member receives them.
        let posts = try benchmark.scaledIterations.map { _ in try sending.seal(plaintext, context: context).bytes }
        benchmark.startMeasurement()
        for post in posts {
            blackHole(try receiving.open(try SenderKeyMessage(bytes: post), context: context))
        }
    }

    // A channel post's commit: one log row and the chat's counter, whatever the member count.
    // The channel is seeded once per benchmark (a million members take a while), not per sample.
    for members in [1_000, 1_000_000] {
        let seeded = SeededChannelSlot()
        Benchmark(
            "chat log (SQLite): append one channel post, \(members) members",
            configuration: .init(maxDuration: .seconds(3), maxIterations: 2_000)
        ) { benchmark in
            guard let channel = seeded.value.withLock({ $0 }) else { fatalError("the channel was not seeded") }
            let payload = Data(repeating: 0x61, count: 220)
            for _ in benchmark.scaledIterations {
                blackHole(
                    try await channel.storage.chatLog.append(
                        NewChatUpdate(
                            chatID: channel.chat, kind: .message, messageID: .random(), sender: channel.owner, serverTime: Date(),
                            payload: payload, contentHash: Data(SHA256.hash(data: payload)))))
            }
        } setup: {
            let channel = try await seededChannel(members: members)
            seeded.value.withLock { $0 = channel }
        } teardown: {
            guard
                let channel = seeded.value.withLock({ state in
                    defer { state = nil }; return state
                })
            else { return }
            try await channel.storage.close()
            try? FileManager.default.removeItem(at: channel.directory)
        }
    }
}
