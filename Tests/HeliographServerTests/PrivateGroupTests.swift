import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import HeliographStore
import Testing

/// What a device reads of its chats after taking in what waits in its inbox (sender keys come
/// over pairwise sessions, so they are taken in first).
func catchUp(_ client: HeliographClient) async throws -> [ChatEvent] {
    _ = try await client.processInbox()
    return try await client.syncChats()
}

/// The server's database files in `directory` (the database, its write-ahead log), for canary
/// scans. (The test's client profiles live beside them and do hold plaintext.)
func databaseBytes(under directory: URL) -> [Data] {
    let files = (try? FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)) ?? []
    let database = files.filter { $0.lastPathComponent.hasPrefix("heliograph.sqlite") }
    #expect(!database.isEmpty)
    return database.compactMap { FileManager.default.contents(atPath: $0.path) }
}

/// The wire form of a stored update, as a server would hand it to anyone it chose to.
func wireUpdate(_ update: ChatUpdate) -> WireChatUpdate {
    WireChatUpdate(
        chatId: update.chatID, seq: update.sequence, kind: update.kind, messageId: update.messageID,
        sender: WireSender(
            accountId: update.sender.accountID, username: update.sender.username.display, deviceId: update.sender.deviceID),
        serverTime: update.serverTime.millisecondsSince1970, target: update.target, payload: update.payload)
}

@Suite("Private groups: sender keys and signed membership through a real server")
struct PrivateGroupTests {
    @Test("a post reaches every member device; the server stores neither the text nor the title")
    func everyDeviceAndCiphertextOnly() async throws {
        try await TestServer.run { server in
            let alicePhone = try await server.register("alice", device: "phone")
            let aliceLaptop = try await server.addDevice(to: alicePhone, named: "laptop")
            let bob = try await server.register("bob_b")
            let carol = try await server.register("carol")
            let canary = "canary-\(UUID().uuidString)"
            let title = "title-\(UUID().uuidString)"
            let chat = try await alicePhone.createPrivateGroup(title: title, members: ["bob_b", "carol"])
            try await alicePhone.post(canary, to: chat)
            try await bob.post("bob here", to: chat)

            for member in [aliceLaptop, bob, carol] {
                let events = try await catchUp(member)
                let texts = events.compactMap(\.text)
                #expect(texts.contains(canary), "\(member.profile.username)/\(member.profile.deviceName): \(events)")
                #expect(events.allSatisfy { $0.dropped == nil }, "\(events.compactMap(\.dropped))")
                #expect(events.last?.chatTitle == title)
            }
            // The sender's own device reads its own post from what it kept.
            let own = try await alicePhone.syncChats()
            #expect(own.compactMap(\.text).contains("bob here") || own.isEmpty == false)

            // The server's files hold neither the text nor the title, in any encoding it might use.
            let forms = [Data(canary.utf8), Data(canary.utf8).base64EncodedData(), Data(title.utf8)]
            for bytes in databaseBytes(under: server.directory) {
                for form in forms { #expect(bytes.range(of: form) == nil) }
            }
            let stored = try await server.storage.chatLog.updates(of: chat, after: 0, limit: 10)
            #expect(stored.first?.kind == .membership)
            #expect(stored.dropFirst().allSatisfy { $0.kind == .message && $0.payload.range(of: Data(canary.utf8)) == nil })
            // The server knows the members and nothing of the title.
            let info = try await alicePhone.chatInfo(chat)
            #expect(info.chat.title.isEmpty && info.chat.memberCount == 3)
        }
    }

    @Test("a removed member cannot read what follows, and cannot post; an old sender key is refused")
    func removal() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let carol = try await server.register("carol")
            let chat = try await alice.createPrivateGroup(title: "Three", members: ["bob_b", "carol"])
            try await alice.post("before", to: chat)
            #expect(try await catchUp(carol).compactMap(\.text) == ["before"])
            _ = try await catchUp(bob)
            let oldEpoch = try await alice.chatInfo(chat).chat.membershipVersion!

            try await alice.removeMember("carol", from: chat)
            try await alice.post("after", to: chat)
            // Bob reads it with Alice's new sender key.
            #expect(try await catchUp(bob).compactMap(\.text).contains("after"))
            // Carol is told she left; even handed the ciphertext, she cannot open it.
            _ = try await carol.processInbox()
            _ = try await carol.syncChats()
            await expectRefusal(.unknownChat) { _ = try await carol.chatInfo(chat) }
            let afterUpdate = try #require(
                try await server.storage.chatLog.updates(of: chat, after: 0, limit: 20).last { $0.kind == .message })
            let attempt = try carol.interpret(
                wireUpdate(afterUpdate),
                in: WireChat(Chat(id: chat, kind: .privateGroup, title: "", createdAt: Date(), membershipVersion: 3)))
            #expect(attempt.text == nil && attempt.dropped != nil)

            // Carol posting with the key she still holds: refused (the group is no longer visible
            // to her at all), nothing stored.
            let before = try await alice.chatInfo(chat).chat.lastSeq
            await expectRefusal(.unknownChat) {
                _ = try await carol.call(
                    .post, PostRequest(chatId: chat, messageId: .random(), payload: Data([1, 2, 3]), keyEpoch: oldEpoch),
                    as: PostResponse.self)
            }
            // Bob posting with a key made before the removal: refused as stale.
            await expectRefusal(.staleSenderKey) {
                _ = try await bob.call(
                    .post, PostRequest(chatId: chat, messageId: .random(), payload: Data([1, 2, 3]), keyEpoch: oldEpoch),
                    as: PostResponse.self)
            }
            #expect(try await alice.chatInfo(chat).chat.lastSeq == before)
            // Through the Kit, Bob makes a new key first and is read.
            try await bob.post("bob after", to: chat)
            #expect(try await catchUp(alice).compactMap(\.text).contains("bob after"))
        }
    }

    @Test("a membership change the server makes up is refused by every client, and its 'member' reads nothing")
    func injectedMembership() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let mallory = try await server.register("mallory")
            let chat = try await alice.createPrivateGroup(title: "Closed", members: ["bob_b"])
            _ = try await catchUp(bob)
            let state = try await alice.groupState(chat)

            // The server appends an "add mallory" in the group's log, as if Alice had signed it,
            // with its own key; and lets Mallory in on its side.
            let forger = IdentityKeyPair()
            let malloryKey = try IdentityKeyPair(privateKeyBytes: mallory.profile.identityPrivateKey).publicKey.rawBytes
            let forged = SignedMembershipChange.sign(
                MembershipChange(
                    chat: chat, version: state.version + 1, previous: state.hash, action: .add, actor: alice.profile.accountID,
                    members: [.init(account: mallory.profile.accountID, identityKey: malloryKey, role: .member)],
                    time: Date().millisecondsSince1970),
                with: forger)
            let now = Date().wholeMilliseconds
            _ = try await server.storage.chatLog.append(
                NewChatUpdate(
                    chatID: chat, kind: .membership, messageID: .random(),
                    sender: EnvelopeSender(
                        accountID: alice.profile.accountID, username: try Username(validating: "alice"),
                        deviceID: alice.profile.deviceID), serverTime: now, payload: forged.bytes,
                    effects: [
                        .addMember(
                            ChatMember(chatID: chat, accountID: mallory.profile.accountID, role: .member, joinedAt: now),
                            limit: nil), .membershipVersion(state.version + 1, removal: false),
                    ]))

            // Both clients refuse it and keep Mallory out of their membership.
            for client in [alice, bob] {
                let events = try await catchUp(client)
                #expect(events.contains { $0.notice?.hasPrefix("refused a membership change") == true }, "\(events)")
                #expect(try await client.groupState(chat).members[mallory.profile.accountID] == nil)
            }
            // Mallory, a member in the server's eyes, gets no sender key and reads nothing.
            try await alice.post("not for mallory", to: chat)
            let malloryEvents = try await catchUp(mallory)
            #expect(!malloryEvents.compactMap(\.text).contains("not for mallory"))
            #expect(try await catchUp(bob).compactMap(\.text).contains("not for mallory"))
            // What Mallory posts is dropped by the members: she is not in the signed membership.
            _ = try? await mallory.post("hello from mallory", to: chat)
            let seenByBob = try await catchUp(bob)
            #expect(!seenByBob.compactMap(\.text).contains("hello from mallory"))
        }
    }

    @Test("a member list that names a member's account as someone else's does not send that someone the sender key")
    func renamedMember() async throws {
        try await HostileServerTests.run { server, hostile in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let mallory = try await server.register("mallory")
            let chat = try await alice.createPrivateGroup(title: "Named", members: ["bob_b"])
            try await alice.post("for bob", to: chat)
            #expect(try await catchUp(bob).compactMap(\.text) == ["for bob"])
            // The server now lists Bob's account under Mallory's name; Alice checks the member
            // devices again and posts.
            let mallorysName = try Username(validating: "mallory")
            hostile.attack { $0.rename[bob.profile.accountID] = mallorysName }
            try await alice.refreshGroupKeys(chat)
            try await alice.post("not for mallory", to: chat)
            // Mallory got nothing from Alice: no sender key, so nothing opens.
            let inbox = try await mallory.processInbox()
            #expect(inbox.isEmpty)
        }
    }

    @Test("the server refuses membership changes not signed by an admin, forged, or out of turn, and changes nothing")
    func refusedChanges() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let carol = try await server.register("carol")
            let chat = try await alice.createPrivateGroup(title: "Rules", members: ["bob_b"])
            _ = try await catchUp(bob)
            let state = try await bob.groupState(chat)
            let carolKey = try IdentityKeyPair(privateKeyBytes: carol.profile.identityPrivateKey).publicKey.rawBytes
            func change(actor: AccountID, version: Int64) -> MembershipChange {
                MembershipChange(
                    chat: chat, version: version, previous: state.hash, action: .add, actor: actor,
                    members: [.init(account: carol.profile.accountID, identityKey: carolKey, role: .member)],
                    time: Date().millisecondsSince1970)
            }
            let bobIdentity = try IdentityKeyPair(privateKeyBytes: bob.profile.identityPrivateKey)
            let before = try await alice.chatInfo(chat).chat
            // Bob is a plain member: he may not add.
            await expectRefusal(.missingRight) {
                _ = try await bob.call(
                    .changeMembership,
                    ChangeMembershipRequest(
                        chatId: chat,
                        change: SignedMembershipChange.sign(change(actor: bob.profile.accountID, version: 2), with: bobIdentity)
                            .bytes), as: ChatInfoResponse.self)
            }
            // Bob sends a change in Alice's name, signed with his key.
            await expectRefusal(.invalidMembershipChange) {
                _ = try await bob.call(
                    .changeMembership,
                    ChangeMembershipRequest(
                        chatId: chat,
                        change: SignedMembershipChange.sign(change(actor: alice.profile.accountID, version: 2), with: bobIdentity)
                            .bytes), as: ChatInfoResponse.self)
            }
            // Alice signs, but skips a version.
            let aliceIdentity = try IdentityKeyPair(privateKeyBytes: alice.profile.identityPrivateKey)
            await expectRefusal(.membershipConflict) {
                _ = try await alice.call(
                    .changeMembership,
                    ChangeMembershipRequest(
                        chatId: chat,
                        change: SignedMembershipChange.sign(
                            change(actor: alice.profile.accountID, version: 5), with: aliceIdentity
                        )
                        .bytes), as: ChatInfoResponse.self)
            }
            // Garbage.
            await expectRefusal(.invalidMembershipChange) {
                _ = try await alice.call(
                    .changeMembership, ChangeMembershipRequest(chatId: chat, change: Data("not a change".utf8)),
                    as: ChatInfoResponse.self)
            }
            let after = try await alice.chatInfo(chat).chat
            #expect(after.lastSeq == before.lastSeq && after.membershipVersion == before.membershipVersion)
            #expect(after.memberCount == 2)
            // The right way works.
            try await alice.addMembers(["carol"], to: chat)
            try await alice.post("welcome carol", to: chat)
            #expect(try await catchUp(carol).compactMap(\.text).contains("welcome carol"))
        }
    }

    @Test("history reads again after later removals, each post judged by the membership before it; a member leaves")
    func historyAfterRemovalAndLeave() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let carol = try await server.register("carol")
            let chat = try await alice.createPrivateGroup(title: "History", members: ["bob_b", "carol"])
            try await carol.post("carol was here", to: chat)
            try await alice.post("alice first", to: chat)
            _ = try await catchUp(bob)
            try await alice.removeMember("carol", from: chat)
            try await alice.post("alice after", to: chat)
            _ = try await catchUp(bob)
            // Read twice: posts from before the removal (Carol's included) still open, from what
            // the device kept.
            for _ in 1...2 {
                let history = try await bob.history(of: chat).map(\.event)
                #expect(history.compactMap(\.text) == ["carol was here", "alice first", "alice after"], "\(history)")
                #expect(history.allSatisfy { $0.dropped == nil })
            }
            // Bob leaves: the server answers with the chat and no role, and Bob keeps nothing of it.
            try await bob.leave(chat)
            await expectRefusal(.unknownChat) { _ = try await bob.chatInfo(chat) }
            #expect(try await alice.groupState(chat).members[bob.profile.accountID] == nil)
            #expect(try await alice.chatInfo(chat).chat.memberCount == 1)
        }
    }

    @Test("a member's revoked device gets no new sender key: the others' keys rotate")
    func deviceRevocationRotates() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bobPhone = try await server.register("bob_b", device: "phone")
            let bobLaptop = try await server.addDevice(to: bobPhone, named: "laptop")
            let chat = try await alice.createPrivateGroup(title: "Devices", members: ["bob_b"])
            try await alice.post("both devices", to: chat)
            #expect(try await catchUp(bobLaptop).compactMap(\.text) == ["both devices"])
            let before = try #require(try alice.senderKeyID(in: chat))
            // Unchanged devices: the key stays.
            try await alice.refreshGroupKeys(chat)
            #expect(try alice.senderKeyID(in: chat) == before)

            _ = try await bobPhone.revokeDevice(bobLaptop.profile.deviceID)
            try await alice.refreshGroupKeys(chat)
            let after = try #require(try alice.senderKeyID(in: chat))
            #expect(after != before)
            try await alice.post("phone only", to: chat)
            #expect(try await catchUp(bobPhone).compactMap(\.text) == ["both devices", "phone only"])
            // The laptop's last key material opens nothing new, even handed the ciphertext.
            let update = try #require(
                try await server.storage.chatLog.updates(of: chat, after: 0, limit: 10).last { $0.kind == .message })
            let attempt = try bobLaptop.interpret(
                wireUpdate(update),
                in: WireChat(Chat(id: chat, kind: .privateGroup, title: "", createdAt: Date(), membershipVersion: 1)))
            #expect(attempt.text == nil && attempt.dropped != nil)
        }
    }

    @Test("edits, deletions, pins and reactions travel encrypted inside posts and are read as such")
    func encryptedOperations() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let chat = try await alice.createPrivateGroup(title: "Ops", members: ["bob_b"])
            let first = try await alice.post("first", to: chat)
            try await alice.edit(first.seq, in: chat, text: "first, edited")
            try await bob.react(first.seq, in: chat, emoji: "🎉")
            try await alice.pin(first.seq, in: chat)
            let reply = try await bob.post("a reply", to: chat, replyTo: first.seq)
            try await bob.deleteMessage(reply.seq, in: chat)
            let events = try await catchUp(alice).filter { $0.kind != .membership }
            #expect(events.map(\.kind) == [.message, .edit, .reaction, .pin, .message, .delete], "\(events)")
            #expect(events[1].text == "first, edited" && events[1].target == first.seq)
            #expect(events[2].emoji == "🎉" && events[2].sender == "bob_b")
            #expect(events[4].replyTo == first.seq)
            #expect(events[5].target == reply.seq)
            // The server saw only posts.
            let kinds = try await server.storage.chatLog.updates(of: chat, after: 1, limit: 20).map(\.kind)
            #expect(kinds.allSatisfy { $0 == .message })
            // Server-side operations are refused for private groups.
            await expectRefusal(.badRequest) {
                _ = try await alice.call(
                    .editMessage, EditMessageRequest(chatId: chat, messageId: .random(), seq: first.seq, text: "x"),
                    as: PostResponse.self)
            }
        }
    }
}
