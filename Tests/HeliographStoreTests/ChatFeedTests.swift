import Foundation
import HeliographCore
import HeliographStore
import Testing

@testable import HeliographStorePostgres

@Suite("Chat changes on the PostgreSQL change feed")
struct ChatFeedTests {
    // MARK: The payload grammar

    @Test("chat and membership payloads have the documented form and read back as themselves")
    func newFormsRoundTrip() throws {
        let chats = [ChatID.random(), ChatID.random()]
        let chat = ChatID.random()
        let accounts = [AccountID.random(), AccountID.random(), AccountID.random()]

        let grown = ChangeNotification.chats(node: "0a1b2c3d", chats)
        #expect(grown.payload == "chats:0a1b2c3d:\(chats[0]),\(chats[1])")
        #expect(ChangeNotification(payload: grown.payload) == grown)

        let joined = ChangeNotification.members(node: "0a1b2c3d", chat: chat, accounts)
        #expect(joined.payload == "members:0a1b2c3d:\(chat):\(accounts[0]),\(accounts[1]),\(accounts[2])")
        #expect(ChangeNotification(payload: joined.payload) == joined)
    }

    @Test("a chat or membership payload is never read as a wake-up of devices, even when malformed")
    func newFormsAreNotInboxes() {
        let ids = (0..<3).map { _ in UUID().uuidString.lowercased() }
        let list = ids.joined(separator: ",")
        // Well formed: the chat and account ids do not become devices.
        if case .inboxes = ChangeNotification(payload: "chats:0a1b2c3d:\(list)") { Issue.record("chats read as devices") }
        if case .inboxes = ChangeNotification(payload: "members:0a1b2c3d:\(ids[0]):\(ids[1]),\(ids[2])") {
            Issue.record("members read as devices")
        }
        // Malformed: nothing at all rather than a guess. Each has the ids an inbox payload would.
        for payload in [
            "chats:\(list)",  // no node
            "chats::\(list)",  // empty node
            "chats:0a1b2c3d:\(ids[0]):\(ids[1])",  // a fourth part
            "chats:0a1b2c3d:not-an-id,also-not",  // no id
            "members:0a1b2c3d:\(list)",  // no chat
            "members:\(ids[0]):\(list)",  // no node
            "members:0a1b2c3d:not-a-chat:\(list)",  // the chat is not an id
            "members:0a1b2c3d:\(ids[0]):",  // no account
            "members:0a1b2c3d:\(ids[0]):\(ids[1]):\(ids[2])",  // a fifth part
        ] {
            #expect(ChangeNotification(payload: payload) == nil, "\(payload)")
        }
    }

    @Test("the inbox and revocation forms read as before")
    func olderFormsUnchanged() throws {
        let devices = [DeviceID.random(), DeviceID.random()]
        let list = devices.map(\.description).joined(separator: ",")
        #expect(ChangeNotification(payload: "0a1b2c3d:\(list)") == .inboxes(node: "0a1b2c3d", devices))
        #expect(ChangeNotification(payload: list) == .inboxes(node: nil, devices))
        #expect(ChangeNotification(payload: "revoked:\(list)") == .revoked(devices))
        #expect(ChangeNotification(payload: "0a1b2c3d:junk") == nil)
        #expect(ChangeNotification(payload: "") == nil)
        #expect(ChangeNotification(payload: "0a1b2c3d:\(devices[0]):\(devices[1])") == nil)
        #expect(ChangeNotification.inboxes(node: "0a1b2c3d", devices).payload == "0a1b2c3d:\(list)")
    }

    @Test("a node skips its own chat and membership changes and passes on other nodes'")
    func ownChangesSkipped() {
        let chat = ChatID.random()
        let account = AccountID.random()
        #expect(ChangeNotification.chats(node: "aaaaaaaa", [chat]).change(forNode: "aaaaaaaa") == nil)
        #expect(ChangeNotification.chats(node: "aaaaaaaa", [chat]).change(forNode: "bbbbbbbb") == .chats([chat]))
        #expect(ChangeNotification.members(node: "aaaaaaaa", chat: chat, [account]).change(forNode: "aaaaaaaa") == nil)
        #expect(
            ChangeNotification.members(node: "aaaaaaaa", chat: chat, [account]).change(forNode: "bbbbbbbb")
                == .memberships(chat, [account]))
    }

    // MARK: Two nodes on one database

    @Test(
        "a logged append is announced to the other node once committed; repeats and refusals are not announced",
        .enabled(if: Backend.postgresURL != nil, "set HELIOGRAPH_TEST_POSTGRES_URL"))
    func appendsOnTheFeed() async throws {
        let (a, b) = try await Self.twoNodes()
        var onA = a.changeFeed!.changes().makeAsyncIterator()
        var onB = b.changeFeed!.changes().makeAsyncIterator()
        // The first change is always `.all`; once it arrived, the listener is connected.
        #expect(await onA.next() == .all)
        #expect(await onB.next() == .all)

        let alice = try Fixture.account("alice_a")
        let first = try await Self.group(alice, on: a)
        let second = try await Self.group(alice, on: a)
        let third = try await Self.group(alice, on: a)
        // A chat's first members are announced when it is made, so other nodes follow it.
        for chat in [first, second, third] {
            #expect(await RevocationFeedTests.nextChange(&onB) == .memberships(chat, [alice.id]))
        }

        let post = try Self.post(first, by: alice, id: "post-1")
        #expect(try await a.chatLog.append(post).sequence == 1)
        // A repeat and a refused edit commit nothing, so they announce nothing.
        #expect(try await a.chatLog.append(post).duplicate)
        var edit = try Self.post(first, by: alice, id: "edit-1")
        edit.kind = .edit
        edit.effects = [.edit(target: 9)]
        await #expect(throws: HeliographError(.unknownMessage, "")) { try await a.chatLog.append(edit) }
        // The other node's append, to another chat.
        #expect(try await b.chatLog.append(Self.post(second, by: alice, id: "post-2")).sequence == 1)
        #expect(try await a.chatLog.append(Self.post(third, by: alice, id: "post-3")).sequence == 1)

        #expect(await RevocationFeedTests.nextChange(&onB) == .chats([first]))
        // Committed before it was announced: the other node's read sees it.
        #expect(try await b.chatLog.updates(of: first, after: 0, limit: 10).map(\.sequence) == [1])
        #expect(await RevocationFeedTests.nextChange(&onB) == .chats([third]))
        // The first node hears only the second's append: its own two were skipped (and were
        // committed before it, so they would have come first).
        #expect(await RevocationFeedTests.nextChange(&onA) == .chats([second]))
        try await a.close()
        try await b.close()
    }

    @Test(
        "joins, removals and bans are announced for their accounts, logged or not, in chunks that fit a notification",
        .enabled(if: Backend.postgresURL != nil, "set HELIOGRAPH_TEST_POSTGRES_URL"))
    func membershipsOnTheFeed() async throws {
        let (a, b) = try await Self.twoNodes()
        var onA = a.changeFeed!.changes().makeAsyncIterator()
        var onB = b.changeFeed!.changes().makeAsyncIterator()
        #expect(await onA.next() == .all)
        #expect(await onB.next() == .all)

        let alice = try Fixture.account("alice_a")
        let bob = AccountID.random()
        let carol = AccountID.random()
        let channel = try await Self.group(alice, on: a, kind: .channel)
        #expect(await RevocationFeedTests.nextChange(&onB) == .memberships(channel, [alice.id]))

        // A subscription: no log entry, so only the membership is announced.
        var subscribe = try Self.post(channel, by: alice, id: "subscribe-bob")
        subscribe.kind = .membership
        subscribe.logged = false
        subscribe.effects = [
            .addMember(ChatMember(chatID: channel, accountID: bob, role: .member, joinedAt: Fixture.start), limit: nil)
        ]
        #expect(try await a.chatLog.append(subscribe).sequence == 0)
        #expect(await RevocationFeedTests.nextChange(&onB) == .memberships(channel, [bob]))
        #expect(try await b.chats.member(of: channel, account: bob) != nil)

        // A refused join (the channel is full at 2) announces nothing.
        var full = subscribe
        full.messageID = try MessageID(validating: "subscribe-carol")
        full.effects = [
            .addMember(ChatMember(chatID: channel, accountID: carol, role: .member, joinedAt: Fixture.start), limit: 2)
        ]
        await #expect(throws: HeliographError(.chatFull, "")) { try await a.chatLog.append(full) }

        // A logged removal and ban: the accounts first, then the log.
        var remove = try Self.post(channel, by: alice, id: "remove")
        remove.kind = .membership
        remove.effects = [
            .removeMember(bob),
            .ban(ChatBan(chatID: channel, accountID: carol, bannedBy: alice.id, bannedAt: Fixture.start, until: nil)),
            .removeMember(alice.id),
        ]
        #expect(try await a.chatLog.append(remove).sequence == 1)
        #expect(await RevocationFeedTests.nextChange(&onB) == .memberships(channel, [bob, carol, alice.id]))
        #expect(await RevocationFeedTests.nextChange(&onB) == .chats([channel]))

        // A role change is no join or leave: only the log growth is announced.
        var restore = try Self.post(channel, by: alice, id: "restore")
        restore.kind = .membership
        restore.logged = false
        restore.effects = [
            .addMember(ChatMember(chatID: channel, accountID: alice.id, role: .owner, joinedAt: Fixture.start), limit: nil)
        ]
        _ = try await a.chatLog.append(restore)
        #expect(await RevocationFeedTests.nextChange(&onB) == .memberships(channel, [alice.id]))
        var promote = try Self.post(channel, by: alice, id: "promote")
        promote.kind = .membership
        promote.effects = [.setRole(alice.id, role: .owner, rights: .all)]
        #expect(try await a.chatLog.append(promote).sequence == 2)
        #expect(await RevocationFeedTests.nextChange(&onB) == .chats([channel]))

        // Many joins in one append: split so that no payload passes PostgreSQL's 8000 bytes.
        let crowd = (0..<250).map { _ in AccountID.random() }
        var crowdJoin = try Self.post(channel, by: alice, id: "crowd")
        crowdJoin.kind = .membership
        crowdJoin.logged = false
        crowdJoin.effects = crowd.map {
            .addMember(ChatMember(chatID: channel, accountID: $0, role: .member, joinedAt: Fixture.start), limit: nil)
        }
        _ = try await a.chatLog.append(crowdJoin)
        #expect(await RevocationFeedTests.nextChange(&onB) == .memberships(channel, Array(crowd[..<200])))
        #expect(await RevocationFeedTests.nextChange(&onB) == .memberships(channel, Array(crowd[200...])))
        #expect(try await b.chats.chat(id: channel)?.memberCount == 251)

        // The first node heard none of its own: the next thing it hears is the second node's.
        var leave = try Self.post(channel, by: alice, id: "leave-\(crowd[0])")
        leave.kind = .membership
        leave.logged = false
        leave.effects = [.removeMember(crowd[0])]
        _ = try await b.chatLog.append(leave)
        #expect(await RevocationFeedTests.nextChange(&onA) == .memberships(channel, [crowd[0]]))
        try await a.close()
        try await b.close()
    }

    // MARK: Helpers

    /// Two storages (two nodes) on one new database.
    static func twoNodes() async throws -> (PostgresStorage, PostgresStorage) {
        let location = try await freshPostgresDatabase(Backend.postgresURL!)
        async let first = PostgresStorage(location: location, logger: quietLogger)
        async let second = PostgresStorage(location: location, logger: quietLogger)
        return try await (first, second)
    }

    /// A new chat owned by `owner`, created through `storage`.
    static func group(_ owner: Account, on storage: PostgresStorage, kind: ChatKind = .publicGroup) async throws -> ChatID {
        let chat = Chat(id: .random(), kind: kind, title: "Feed", createdAt: Fixture.start)
        try await storage.chats.create(
            chat, members: [ChatMember(chatID: chat.id, accountID: owner.id, role: .owner, joinedAt: Fixture.start)],
            firstUpdate: nil)
        return chat.id
    }

    /// A message from `sender`'s one device.
    static func post(_ chat: ChatID, by sender: Account, id: String) throws -> NewChatUpdate {
        NewChatUpdate(
            chatID: chat, kind: .message, messageID: try MessageID(validating: id),
            sender: EnvelopeSender(accountID: sender.id, username: sender.username, deviceID: Self.device),
            serverTime: Fixture.start, payload: Data("hello".utf8))
    }

    static let device = DeviceID.random()
}
