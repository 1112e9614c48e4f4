import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import HeliographStore
import Testing

/// Waits for the next pushed chat update on a socket, skipping other events.
func nextChatUpdate(_ connection: HeliographConnection, timeout: Duration = .seconds(10)) async -> WireChatUpdate? {
    await withTaskGroup(of: WireChatUpdate?.self) { group in
        group.addTask {
            for await event in connection.events {
                if case .chatUpdate(let update) = event { return update }
            }
            return nil
        }
        group.addTask {
            try? await Task.sleep(for: timeout)
            return nil
        }
        let first = await group.next()!
        group.cancelAll()
        return first
    }
}

/// Expects `body` to fail with `code`.
func expectRefusal(
    _ code: HeliographError.Code, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation
)
    async
{
    do {
        try await body()
        Issue.record("expected \(code), but it succeeded", sourceLocation: sourceLocation)
    } catch let error as HeliographError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Public groups and channels over real sockets")
struct PublicChatTests {
    @Test("a channel post reaches every live subscriber once, is stored once, and views count once per account")
    func channelFanout() async throws {
        let subscribers = 1_000
        try await TestServer.run(configure: { configuration in
            // The receiving sockets, plus two per subscriber still joining (50 at a time).
            configuration.maxConnectionsPerAddress = subscribers + 150
            configuration.registerAddressRate = 0
            configuration.loginAddressRate = 0
            configuration.authRate = 0
        }) { server in
            let owner = try await server.register("owner", encryption: false)
            let channel = try await owner.createChannel(title: "News", username: "news_daily")
            // Subscribers join by name and listen on their own sockets.
            let sockets = try await withThrowingTaskGroup(of: HeliographConnection.self) { group in
                var sockets: [HeliographConnection] = []
                for batch in stride(from: 0, to: subscribers, by: 50) {
                    for index in batch..<min(batch + 50, subscribers) {
                        group.addTask {
                            let connection = try await server.connect()
                            let name = "sub\(String(format: "%05d", index))"
                            let token = try await rawAccount(name, on: connection, server: server)
                            _ = try await connection.request(
                                .joinChat, JoinChatRequest(username: "@news_daily"), as: JoinChatResponse.self)
                            // A fresh socket authenticated after joining follows the channel.
                            let receiving = try await server.connect()
                            _ = try await receiving.request(
                                .authenticate, AuthenticateRequest(token: token, after: nil), as: SessionInfo.self)
                            await connection.close()
                            return receiving
                        }
                    }
                    for _ in batch..<min(batch + 50, subscribers) { sockets.append(try await group.next()!) }
                }
                return sockets
            }
            #expect(try await owner.chatInfo(channel.chatId).chat.memberCount == subscribers + 1)

            let posted = try await owner.post("first post", to: channel.chatId)
            let received = await withTaskGroup(of: WireChatUpdate?.self) { group in
                for socket in sockets { group.addTask { await nextChatUpdate(socket, timeout: .seconds(60)) } }
                var updates: [WireChatUpdate] = []
                for await update in group { if let update { updates.append(update) } }
                return updates
            }
            #expect(received.count == subscribers)
            #expect(received.allSatisfy { $0.seq == posted.seq && $0.content?.text == "first post" })
            // Subscribers cannot see who posted or each other.
            #expect(received.allSatisfy { $0.sender == nil })

            // Stored once: one log row, whatever the subscriber count.
            let log = try await server.storage.chatLog.updates(of: channel.chatId, after: 0, limit: 10)
            #expect(log.count == 1)

            // Views: every subscriber once, and a repeat changes nothing.
            await withTaskGroup(of: Void.self) { group in
                for socket in sockets.prefix(300) {
                    group.addTask {
                        _ = try? await socket.request(
                            .recordViews, RecordViewsRequest(chatId: channel.chatId, seqs: [posted.seq]), as: ViewsResponse.self)
                    }
                }
            }
            let again = try await sockets[0].request(
                .recordViews, RecordViewsRequest(chatId: channel.chatId, seqs: [posted.seq]), as: ViewsResponse.self)
            #expect(again.views[String(posted.seq)] == 300)
            let history = try await owner.history(of: channel.chatId)
            #expect(history.last?.message.views == 300)
            for socket in sockets { await socket.close() }
        }
    }

    @Test("edit, delete, forward, pin and reactions propagate to other members, with the origin a channel may hide")
    func messageOperations() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice", encryption: false)
            let bob = try await server.register("bob_b", encryption: false)
            let group = try await alice.createPublicGroup(title: "Gardening", username: "gardeners")
            _ = try await bob.join("@gardeners")
            let bobSocket = try await server.connect(as: bob)
            _ = try await bob.syncChats()

            let hello = try await alice.post("hello", to: group.chatId)
            let pushed = await nextChatUpdate(bobSocket)
            #expect(pushed?.content?.text == "hello")
            #expect(pushed?.sender?.username == "alice")
            let reply = try await bob.post("hi alice", to: group.chatId, replyTo: hello.seq)
            try await alice.edit(hello.seq, in: group.chatId, text: "hello, gardeners")
            try await bob.react(hello.seq, in: group.chatId, emoji: "👍")
            try await alice.react(hello.seq, in: group.chatId, emoji: "❤️")
            try await bob.react(hello.seq, in: group.chatId, emoji: "🔥")
            try await alice.pin(hello.seq, in: group.chatId)

            // Bob syncs: every operation, in order, once.
            let events = try await bob.syncChats()
            #expect(events.map(\.kind) == [.message, .message, .edit, .reaction, .reaction, .reaction, .pin])
            #expect(events[1].replyTo == hello.seq && events[1].text == "hi alice")
            #expect(events[2].text == "hello, gardeners" && events[2].target == hello.seq)
            #expect(try await bob.syncChats().isEmpty)

            var state = try await alice.history(of: group.chatId).first { $0.message.update.seq == hello.seq }!.message
            #expect(state.update.content?.text == "hello, gardeners")
            #expect(state.editedAt != nil)
            #expect(state.pinned)
            // One reaction per account: Bob's fire replaced his thumbs-up.
            #expect(state.reactions == ["❤️": 1, "🔥": 1])

            // Deleting for everyone blanks it; Bob cannot delete Alice's message, only his own.
            await expectRefusal(.missingRight) { try await bob.deleteMessage(hello.seq, in: group.chatId) }
            try await bob.deleteMessage(reply.seq, in: group.chatId)
            let deleted = try await alice.history(of: group.chatId).first { $0.message.update.seq == reply.seq }!.message
            #expect(deleted.deleted && deleted.update.content == nil)
            await expectRefusal(.unknownMessage) { try await alice.edit(reply.seq, in: group.chatId, text: "again") }

            // Forwards name their origin, unless the origin channel hides itself.
            let open = try await alice.createChannel(title: "Open", username: "open_channel")
            let hidden = try await alice.createChannel(title: "Hidden", username: "hidden_chan", hidesForwardOrigin: true)
            let openPost = try await alice.post("from the open channel", to: open.chatId)
            let hiddenPost = try await alice.post("from the hidden channel", to: hidden.chatId)
            try await bob.forward(openPost.seq, from: open.chatId, to: group.chatId)
            try await bob.forward(hiddenPost.seq, from: hidden.chatId, to: group.chatId)
            let forwards = try await bob.syncChats().filter { $0.forward != nil }
            #expect(forwards.count == 2)
            #expect(forwards[0].forward?.chatId == open.chatId && forwards[0].forward?.hidden == false)
            #expect(forwards[1].forward?.chatId == nil && forwards[1].forward?.hidden == true)
            #expect(forwards[1].text == "from the hidden channel")
            state = try await alice.history(of: group.chatId).last!.message
            #expect(state.update.content?.forward?.title == nil)
            await bobSocket.close()
        }
    }

    @Test("a reconnecting device fetches exactly the gaps, nothing twice; too far behind it is told to refetch")
    func gapsAndTooLong() async throws {
        try await TestServer.run(configure: { $0.chatGapLimit = 20 }) { server in
            let alice = try await server.register("alice", encryption: false)
            let bob = try await server.register("bob_b", encryption: false)
            let busy = try await alice.createPublicGroup(title: "Busy", username: "busy_group")
            let quiet = try await alice.createPublicGroup(title: "Quiet", username: "quiet_group")
            _ = try await bob.join("@busy_group")
            _ = try await bob.join("@quiet_group")
            var seen = try await bob.syncChats()
            #expect(seen.count == 2)  // the two joins
            for index in 1...5 { try await alice.post("busy \(index)", to: busy.chatId) }
            try await alice.post("quiet 1", to: quiet.chatId)
            seen = try await bob.syncChats()
            #expect(seen.compactMap(\.text).sorted() == ["busy 1", "busy 2", "busy 3", "busy 4", "busy 5", "quiet 1"])
            // Nothing new: nothing again.
            #expect(try await bob.syncChats().isEmpty)
            // A pushed update that continues the position is applied; one past a gap is not.
            let socket = try await server.connect(as: bob)
            try await alice.post("busy 6", to: busy.chatId)
            let pushed = try #require(await nextChatUpdate(socket))
            #expect(try await bob.applyPushed(pushed)?.text == "busy 6")
            #expect(try await bob.applyPushed(pushed) == nil)
            await socket.close()

            // Away for longer than the gap limit in one chat: "too long" there, the gap elsewhere.
            for index in 7...40 { try await alice.post("busy \(index)", to: busy.chatId) }
            try await alice.post("quiet 2", to: quiet.chatId)
            let positions = try #require(bob.profile.chatPositions)
            let states = try await bob.call(
                .syncChats,
                SyncChatsRequest(positions: Dictionary(uniqueKeysWithValues: positions.map { (ChatID($0.key)!, $0.value) })),
                as: SyncChatsResponse.self
            ).chats
            #expect(states.first { $0.chatId == busy.chatId }?.status == "too_long")
            #expect(states.first { $0.chatId == quiet.chatId }?.status == "news")
            let refetch = try await bob.call(
                .chatUpdates, ChatUpdatesRequest(chatId: busy.chatId, after: positions[busy.chatId.description]!),
                as: ChatUpdatesResponse.self)
            #expect(refetch.tooLong && refetch.updates.isEmpty)
            let caughtUp = try await bob.syncChats()
            // The busy chat comes back as its latest history (up to 50 messages), the quiet one as its gap.
            #expect(caughtUp.filter { $0.chatID == quiet.chatId }.compactMap(\.text) == ["quiet 2"])
            #expect(caughtUp.filter { $0.chatID == busy.chatId }.last?.text == "busy 40")
            #expect(bob.profile.chatPositions?[busy.chatId.description] == (try await bob.chatInfo(busy.chatId)).chat.lastSeq)
            #expect(try await bob.syncChats().isEmpty)
        }
    }

    @Test("the chat list has the last message, unread counts and read positions shared by the account's devices")
    func chatListAndReadPositions() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice", encryption: false)
            let bobPhone = try await server.register("bob_b", device: "phone", encryption: false)
            let bobLaptop = try await server.addDevice(to: bobPhone, named: "laptop", encryption: false)
            let group = try await alice.createPublicGroup(title: "Book club", username: "book_club")
            _ = try await bobPhone.join("@book_club")
            for index in 1...3 { try await alice.post("chapter \(index)", to: group.chatId) }
            try await bobPhone.post("mine", to: group.chatId)
            var list = try await bobLaptop.chatList()
            #expect(list.count == 1)
            #expect(list[0].lastMessage?.update.content?.text == "mine")
            // Own messages are not unread.
            #expect(list[0].unread == 3)

            let laptopSocket = try await server.connect(as: bobLaptop)
            let last = list[0].chat.lastSeq
            #expect(try await bobPhone.markRead(group.chatId, through: last) == last)
            // The other device hears of it, and the list agrees.
            var readPush: Int64?
            for await event in laptopSocket.events {
                if case .readPosition(let chat, let seq) = event, chat == group.chatId {
                    readPush = seq
                    break
                }
            }
            #expect(readPush == last)
            list = try await bobLaptop.chatList()
            #expect(list[0].unread == 0 && list[0].readSeq == last)
            // A read position never goes back, and cannot pass the end.
            #expect(try await bobLaptop.markRead(group.chatId, through: 1) == last)
            await expectRefusal(.ackOutOfRange) { try await bobLaptop.markRead(group.chatId, through: last + 10) }
            await laptopSocket.close()
        }
    }
}

/// Registers an account over `connection` without end-to-end keys and authenticates the socket
/// for requests; returns the session token.
func rawAccount(_ name: String, on connection: HeliographConnection, server: TestServer) async throws -> String {
    let identity = IdentityKeyPair()
    let account = try await connection.request(
        .register, RegisterRequest(username: name, identityKey: identity.publicKey.rawBytes), as: AccountInfo.self)
    let challenge = try await connection.request(.challenge, ChallengeRequest(username: name), as: ChallengeResponse.self)
    let signature = try identity.signLogin(
        nonce: challenge.nonce, challengeID: challenge.challengeId, account: account.accountId,
        origin: try ServerOrigin(url: server.url), deviceName: "socket")
    let session = try await connection.request(
        .login, LoginRequest(challengeId: challenge.challengeId, deviceName: "socket", signature: signature),
        as: LoginResponse.self)
    _ = try await connection.request(
        .authenticate, AuthenticateRequest(token: session.token, after: nil, receive: false), as: SessionInfo.self)
    return session.token
}
