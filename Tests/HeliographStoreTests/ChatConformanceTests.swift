import Foundation
import HeliographCore
import HeliographStore
import Testing

/// Groups and channels: the ``ChatStore`` and ``ChatLogStore`` contract, on every backend.
@Suite("Chat conformance")
struct ChatConformanceTests {
    /// An account with one device, stored.
    struct Person {
        let account: Account
        let device: Device
        var id: AccountID { account.id }
        var sender: EnvelopeSender {
            EnvelopeSender(accountID: account.id, username: account.username, deviceID: device.id)
        }
    }

    func person(_ name: String, in storage: any HeliographStorage) async throws -> Person {
        let account = try Fixture.account(name)
        let device = Fixture.device(of: account)
        try await storage.accounts.insert(account)
        try await storage.devices.insert(device)
        return Person(account: account, device: device)
    }

    func people(_ names: [String], in storage: any HeliographStorage) async throws -> [Person] {
        var result: [Person] = []
        for name in names { result.append(try await person(name, in: storage)) }
        return result
    }

    func membership(
        _ person: Person, in chatID: ChatID, role: ChatRole = .member, rights: AdminRights = [], at time: Date = Fixture.start
    ) -> ChatMember {
        ChatMember(chatID: chatID, accountID: person.id, role: role, rights: rights, joinedAt: time)
    }

    /// Creates a chat owned by `owner` with `members` and returns it as stored.
    func makeChat(
        _ storage: any HeliographStorage, kind: ChatKind = .publicGroup, title: String = "Tea lovers",
        username: String? = nil, owner: Person, members: [Person] = [], slowModeSeconds: Int = 0,
        membershipVersion: Int64 = 0, firstUpdate: ((ChatID) throws -> NewChatUpdate)? = nil
    ) async throws -> Chat {
        let id = ChatID.random()
        let chat = Chat(
            id: id, kind: kind, title: title, username: try username.map { try Username(validating: $0) },
            createdAt: Fixture.start, slowModeSeconds: slowModeSeconds, membershipVersion: membershipVersion)
        let rows = [membership(owner, in: id, role: .owner)] + members.map { membership($0, in: id) }
        try await storage.chats.create(chat, members: rows, firstUpdate: try firstUpdate?(id))
        return try #require(try await storage.chats.chat(id: id))
    }

    func update(
        _ chatID: ChatID, by person: Person, id: String, kind: ChatUpdateKind = .message, text: String = "hello",
        at time: Date = Fixture.start + 1, target: Int64? = nil, contentHash: Data? = nil, slowModeSeconds: Int = 0,
        effects: [ChatEffect] = [], logged: Bool = true
    ) throws -> NewChatUpdate {
        NewChatUpdate(
            chatID: chatID, kind: kind, messageID: try MessageID(validating: id), sender: person.sender, serverTime: time,
            target: target, payload: Data(text.utf8), contentHash: contentHash, slowModeSeconds: slowModeSeconds,
            effects: effects, logged: logged)
    }

    /// Appends a plain message and returns its sequence number.
    @discardableResult
    func post(
        _ storage: any HeliographStorage, _ chatID: ChatID, by person: Person, id: String, text: String = "hello",
        at time: Date = Fixture.start + 1
    ) async throws -> Int64 {
        try await storage.chatLog.append(try update(chatID, by: person, id: id, text: text, at: time)).sequence
    }

    /// The error `body` throws, which must be a ``HeliographError``.
    func refusal(_ body: () async throws -> Void) async -> HeliographError? {
        do {
            try await body()
            return nil
        } catch let error as HeliographError {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    // MARK: Chats

    @Test("a chat is stored with its first members, counted, and found by id and by public name", arguments: Backend.all)
    func createAndFind(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol"], in: storage)
            let id = ChatID.random()
            let chat = Chat(
                id: id, kind: .channel, title: "Daily news", about: "One post a day",
                username: try Username(validating: "Daily_News"),
                createdAt: Fixture.start, slowModeSeconds: 0, signPosts: true, hidesForwardOrigin: true,
                memberCount: 99, lastSequence: 42)
            try await storage.chats.create(
                chat,
                members: [
                    membership(p[0], in: id, role: .owner),
                    membership(p[1], in: id, role: .admin, rights: [.post, .pin]), membership(p[2], in: id),
                ], firstUpdate: nil)
            var expected = chat
            expected.memberCount = 3  // from the members, not the value given
            expected.lastSequence = 0  // no update yet
            #expect(try await storage.chats.chat(id: id) == expected)
            let byName = try await storage.chats.chat(username: try Username(validating: "daily_NEWS"))
            #expect(byName == expected)
            #expect(byName?.username?.display == "Daily_News")
            #expect(try await storage.chats.chat(id: .random()) == nil)
            #expect(try await storage.chats.chat(username: try Username(validating: "nobody_here")) == nil)

            let owner = try #require(try await storage.chats.member(of: id, account: p[0].id))
            #expect(owner.role == .owner)
            #expect(owner.rights == .all)
            #expect(owner.joinedAt == Fixture.start)
            #expect(owner.readSequence == 0)
            #expect(owner.muted == false)
            #expect(owner.lastPostAt == nil)
            let admin = try #require(try await storage.chats.member(of: id, account: p[1].id))
            #expect(admin.role == .admin)
            #expect(admin.rights == [.post, .pin])
            #expect(try await storage.chats.member(of: id, account: p[2].id)?.role == .member)
            #expect(try await storage.chats.member(of: .random(), account: p[0].id) == nil)
        }
    }

    @Test("a public name is unique among chats in any case; chats without one never collide", arguments: Backend.all)
    func uniqueChatNames(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try await person("alice", in: storage)
            let first = try await makeChat(storage, username: "tea_lovers", owner: alice)
            let secondID = ChatID.random()
            let error = await refusal {
                try await storage.chats.create(
                    Chat(
                        id: secondID, kind: .publicGroup, title: "Other", username: try Username(validating: "TEA_Lovers"),
                        createdAt: Fixture.start),
                    members: [membership(alice, in: secondID, role: .owner)], firstUpdate: nil)
            }
            #expect(error?.code == .usernameTaken)
            #expect(error?.message.lowercased().contains("tea_lovers") == true)
            // The refused creation stored nothing: neither the chat nor its owner's membership.
            #expect(try await storage.chats.chat(id: secondID) == nil)
            #expect(try await storage.chats.member(of: secondID, account: alice.id) == nil)
            #expect(try await storage.chats.memberships(of: alice.id, limit: 10).map(\.chat.id) == [first.id])

            let unnamed1 = try await makeChat(storage, kind: .privateGroup, title: "Family", owner: alice)
            let unnamed2 = try await makeChat(storage, kind: .privateGroup, title: "Family", owner: alice)
            #expect(unnamed1.id != unnamed2.id)
            #expect(unnamed1.username == nil)

            // Renaming onto a taken name is refused; onto its own name in another case is not.
            var renamed = unnamed1
            renamed.username = try Username(validating: "Tea_LOVERS")
            await #expect(throws: HeliographError(.usernameTaken, "")) { try await storage.chats.updateInfo(renamed) }
            #expect(try await storage.chats.chat(id: unnamed1.id)?.username == nil)
            var recased = first
            recased.username = try Username(validating: "Tea_Lovers")
            #expect(try await storage.chats.updateInfo(recased)?.username?.display == "Tea_Lovers")
        }
    }

    @Test("a chat created with a first update starts its log at 1", arguments: Backend.all)
    func createWithFirstUpdate(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby"], in: storage)
            let chat = try await makeChat(
                storage, kind: .privateGroup, title: "Secret", owner: p[0], members: [p[1]], membershipVersion: 1
            ) { id in
                try update(id, by: p[0], id: "create-1", kind: .membership, text: "signed creation", at: Fixture.start)
            }
            #expect(chat.lastSequence == 1)
            #expect(chat.memberCount == 2)
            #expect(chat.membershipVersion == 1)
            let log = try await storage.chatLog.updates(of: chat.id, after: 0, limit: 10)
            #expect(log.map(\.sequence) == [1])
            #expect(log.first?.kind == .membership)
            #expect(log.first?.payload == Data("signed creation".utf8))
            #expect(log.first?.sender == p[0].sender)
            // The creation's update is recorded for idempotency like any other.
            let repeated = try await storage.chatLog.append(
                try update(chat.id, by: p[0], id: "create-1", kind: .membership, text: "signed creation", at: Fixture.start))
            #expect(repeated == ChatUpdateReceipt(sequence: 1, serverTime: Fixture.start, duplicate: true))
            #expect(try await post(storage, chat.id, by: p[1], id: "m1") == 2)
        }
    }

    @Test("updateInfo replaces the info fields and nothing else", arguments: Backend.all)
    func updateInfo(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby"], in: storage)
            let chat = try await makeChat(storage, username: "tea_lovers", owner: p[0], members: [p[1]])
            try await post(storage, chat.id, by: p[0], id: "m1")
            var change = chat
            change.title = "Coffee lovers"
            change.about = "Beans"
            change.username = try Username(validating: "Coffee_Lovers")
            change.slowModeSeconds = 60
            change.signPosts = true
            change.hidesForwardOrigin = true
            // Ignored: not info.
            change.kind = .channel
            change.memberCount = 500
            change.lastSequence = 77
            change.membershipVersion = 9
            change.removalVersion = 9
            change.createdAt = Fixture.start + 1000
            var expected = chat
            expected.title = "Coffee lovers"
            expected.about = "Beans"
            expected.username = try Username(validating: "Coffee_Lovers")
            expected.slowModeSeconds = 60
            expected.signPosts = true
            expected.hidesForwardOrigin = true
            expected.lastSequence = 1
            let stored = try await storage.chats.updateInfo(change)
            #expect(stored == expected)
            #expect(stored?.username?.display == "Coffee_Lovers")
            #expect(try await storage.chats.chat(id: chat.id) == expected)
            #expect(try await storage.chats.chat(username: try Username(validating: "tea_lovers")) == nil)
            #expect(try await storage.chats.chat(username: try Username(validating: "coffee_lovers"))?.id == chat.id)

            // The old name is free again; dropping the name hides the chat from search.
            let other = try await makeChat(storage, title: "Tea again", username: "tea_lovers", owner: p[1])
            #expect(other.username?.canonical == "tea_lovers")
            change.username = nil
            #expect(try await storage.chats.updateInfo(change)?.username == nil)
            #expect(try await storage.chats.search(words: ["coffee"], limit: 10).isEmpty)

            var unknown = chat
            unknown.id = .random()
            #expect(try await storage.chats.updateInfo(unknown) == nil)
            #expect(try await storage.chats.chat(id: unknown.id) == nil)
        }
    }

    @Test("search finds public chats by every title word or by name prefix, largest first", arguments: Backend.all)
    func search(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol", "david", "erika"], in: storage)
            let workgroup = try await makeChat(
                storage, title: "Swift Server Workgroup", username: "swift_server", owner: p[0], members: [p[1], p[2]])
            let admins = try await makeChat(
                storage, title: "Server Admins", username: "srv_admins", owner: p[0], members: [p[1], p[2], p[3], p[4]])
            let beginners = try await makeChat(storage, title: "SWIFT beginners", username: "swift_new", owner: p[1])
            let jobs = try await makeChat(storage, kind: .channel, title: "Swift jobs", username: "swiftjobs", owner: p[2])
            // Matches by title but has no public name: never found.
            _ = try await makeChat(storage, title: "Swift Server Secret", owner: p[0], members: [p[1], p[2], p[3], p[4]])

            // Equal member counts are ordered by id.
            let small = [beginners, jobs].sorted { $0.id.description < $1.id.description }.map(\.id)
            func found(_ words: [String], limit: Int = 10) async throws -> [ChatID] {
                try await storage.chats.search(words: words, limit: limit).map(\.id)
            }
            #expect(try await found(["swift"]) == [workgroup.id] + small)
            #expect(try await found(["Swift"], limit: 2) == [workgroup.id, small[0]])
            #expect(try await found(["SERVER"]) == [admins.id, workgroup.id])
            #expect(try await found(["server", "swift"]) == [workgroup.id])
            #expect(try await found(["wift", "beginn"]) == [beginners.id])
            // A single word also matches the start of the public name.
            #expect(try await found(["SRV"]) == [admins.id])
            #expect(try await found(["swift_s"]) == [workgroup.id])
            #expect(try await found(["swiftj"]) == [jobs.id])
            // Only the start of the name, and only for a single word.
            #expect(try await found(["admins_"]) == [])
            #expect(try await found(["srv", "admins"]) == [])
            // Wildcards in the words match themselves.
            #expect(try await found(["%"]) == [])
            #expect(try await found(["s_r"]) == [])
            #expect(try await found(["swift_"]) == [workgroup.id, beginners.id])  // not swiftjobs
            #expect(try await found(["nothing"]) == [])
            #expect(try await found(["swift"], limit: 0) == [])
            let full = try await storage.chats.search(words: ["admins"], limit: 1)
            #expect(full == [admins])
            #expect(full.first?.memberCount == 5)
        }
    }

    // MARK: Members

    @Test("members are paged by account id and filtered by role", arguments: Backend.all)
    func memberPages(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol", "david", "erika", "frank", "greta", "harry"], in: storage)
            let id = ChatID.random()
            let rows =
                [membership(p[0], in: id, role: .owner)]
                + [
                    membership(p[1], in: id, role: .admin, rights: [.ban]),
                    membership(p[2], in: id, role: .admin, rights: [.pin]),
                ]
                + p[3...].map { membership($0, in: id) }
            try await storage.chats.create(
                Chat(id: id, kind: .publicGroup, title: "Big", createdAt: Fixture.start), members: rows, firstUpdate: nil)
            let sorted = rows.sorted { $0.accountID.description < $1.accountID.description }

            let page1 = try await storage.chats.members(of: id, after: nil, roles: nil, limit: 3)
            #expect(page1 == Array(sorted[0..<3]))
            let page2 = try await storage.chats.members(of: id, after: page1.last?.accountID, roles: nil, limit: 3)
            #expect(page2 == Array(sorted[3..<6]))
            let page3 = try await storage.chats.members(of: id, after: page2.last?.accountID, roles: nil, limit: 3)
            #expect(page3 == Array(sorted[6..<8]))
            #expect(try await storage.chats.members(of: id, after: page3.last?.accountID, roles: nil, limit: 3) == [])

            let admins = rows[1...2].sorted { $0.accountID.description < $1.accountID.description }
            #expect(try await storage.chats.members(of: id, after: nil, roles: [.admin], limit: 10) == admins)
            #expect(
                try await storage.chats.members(of: id, after: nil, roles: [.admin], limit: 10).map(\.rights)
                    == admins.map(\.rights))
            let staff = rows[0...2].sorted { $0.accountID.description < $1.accountID.description }
            #expect(try await storage.chats.members(of: id, after: nil, roles: [.owner, .admin], limit: 10) == staff)
            #expect(
                try await storage.chats.members(of: id, after: staff[0].accountID, roles: [.owner, .admin], limit: 1)
                    == [staff[1]])
            let plain = try await storage.chats.members(of: id, after: nil, roles: [.member], limit: 10)
            #expect(plain.count == 5)
            #expect(Set(plain.map(\.accountID)) == Set(p[3...].map(\.id)))
            #expect(try await storage.chats.members(of: id, after: nil, roles: nil, limit: 0) == [])
            #expect(try await storage.chats.members(of: .random(), after: nil, roles: nil, limit: 10) == [])
        }
    }

    @Test("an account's chats come most recently active first, each with its membership", arguments: Backend.all)
    func membershipsOrder(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby"], in: storage)
            let quiet1 = try await makeChat(storage, title: "Quiet one", owner: p[1], members: [p[0]])
            let busy = try await makeChat(storage, title: "Busy", owner: p[0])
            let medium = try await makeChat(storage, title: "Medium", owner: p[1], members: [p[0]])
            let quiet2 = try await makeChat(storage, title: "Quiet two", owner: p[1], members: [p[0]])
            let notMine = try await makeChat(storage, title: "Not mine", owner: p[1])
            for index in 1...3 { try await post(storage, busy.id, by: p[0], id: "b\(index)") }
            try await post(storage, medium.id, by: p[1], id: "m1")
            for index in 1...5 { try await post(storage, notMine.id, by: p[1], id: "n\(index)") }

            let quiet = [quiet1, quiet2].sorted { $0.id.description < $1.id.description }.map(\.id)
            let listed = try await storage.chats.memberships(of: p[0].id, limit: 10)
            #expect(listed.map(\.chat.id) == [busy.id, medium.id] + quiet)
            #expect(listed.map(\.chat.lastSequence) == [3, 1, 0, 0])
            #expect(listed.map(\.member.accountID) == Array(repeating: p[0].id, count: 4))
            #expect(listed.map(\.member.chatID) == listed.map(\.chat.id))
            #expect(listed.map(\.member.role) == [.owner, .member, .member, .member])
            #expect(try await storage.chats.memberships(of: p[0].id, limit: 2).map(\.chat.id) == [busy.id, medium.id])
            #expect(try await storage.chats.memberships(of: AccountID.random(), limit: 10) == [])
        }
    }

    @Test("a read position only rises, within the log, for members only", arguments: Backend.all)
    func markRead(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol"], in: storage)
            let chat = try await makeChat(storage, owner: p[0], members: [p[1]])
            for index in 1...3 { try await post(storage, chat.id, by: p[0], id: "m\(index)") }
            #expect(try await storage.chats.markRead(chat.id, account: p[1].id, through: 2) == 2)
            #expect(try await storage.chats.markRead(chat.id, account: p[1].id, through: 1) == 2)
            #expect(try await storage.chats.member(of: chat.id, account: p[1].id)?.readSequence == 2)
            #expect(try await storage.chats.markRead(chat.id, account: p[1].id, through: 3) == 3)
            #expect(try await storage.chats.markRead(chat.id, account: p[1].id, through: 0) == 3)
            await #expect(throws: HeliographError(.ackOutOfRange, "")) {
                try await storage.chats.markRead(chat.id, account: p[1].id, through: 4)
            }
            await #expect(throws: HeliographError(.ackOutOfRange, "")) {
                try await storage.chats.markRead(chat.id, account: p[1].id, through: -1)
            }
            #expect(try await storage.chats.member(of: chat.id, account: p[1].id)?.readSequence == 3)
            // Per account: the owner's position did not move.
            #expect(try await storage.chats.member(of: chat.id, account: p[0].id)?.readSequence == 0)
            await #expect(throws: HeliographError(.notAMember, "")) {
                try await storage.chats.markRead(chat.id, account: p[2].id, through: 1)
            }
            await #expect(throws: HeliographError(.notAMember, "")) {
                try await storage.chats.markRead(.random(), account: p[1].id, through: 0)
            }
        }
    }

    @Test("mute is per account and needs a membership", arguments: Backend.all)
    func mute(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol"], in: storage)
            let chat = try await makeChat(storage, owner: p[0], members: [p[1]])
            try await storage.chats.setMuted(chat.id, account: p[1].id, muted: true)
            #expect(try await storage.chats.member(of: chat.id, account: p[1].id)?.muted == true)
            #expect(try await storage.chats.member(of: chat.id, account: p[0].id)?.muted == false)
            try await storage.chats.setMuted(chat.id, account: p[1].id, muted: false)
            #expect(try await storage.chats.member(of: chat.id, account: p[1].id)?.muted == false)
            await #expect(throws: HeliographError(.notAMember, "")) {
                try await storage.chats.setMuted(chat.id, account: p[2].id, muted: true)
            }
            #expect(try await storage.chats.member(of: chat.id, account: p[2].id) == nil)
        }
    }

    // MARK: Appending

    @Test("each chat numbers its updates 1, 2, 3 without gaps", arguments: Backend.all)
    func sequences(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby"], in: storage)
            let first = try await makeChat(storage, owner: p[0], members: [p[1]])
            let second = try await makeChat(storage, title: "Second", owner: p[1])
            for index in 1...3 {
                let receipt = try await storage.chatLog.append(
                    try update(
                        first.id, by: p[index % 2], id: "a\(index)", text: "text \(index)", at: Fixture.start + Double(index)))
                #expect(
                    receipt
                        == ChatUpdateReceipt(sequence: Int64(index), serverTime: Fixture.start + Double(index), duplicate: false))
                #expect(try await post(storage, second.id, by: p[1], id: "b\(index)") == Int64(index))
            }
            let reply = try await storage.chatLog.append(
                try update(first.id, by: p[0], id: "a4", kind: .message, text: "re", at: Fixture.start + 4.5, target: 2))
            #expect(reply.sequence == 4)
            #expect(reply.serverTime == Fixture.start + 4.5)
            #expect(try await storage.chats.chat(id: first.id)?.lastSequence == 4)
            #expect(try await storage.chats.chat(id: second.id)?.lastSequence == 3)
            let log = try await storage.chatLog.updates(of: first.id, after: 0, limit: 10)
            #expect(log.map(\.sequence) == [1, 2, 3, 4])
            #expect(log.map(\.payload) == ["text 1", "text 2", "text 3", "re"].map { Data($0.utf8) })
            #expect(log.map(\.sender) == [p[1].sender, p[0].sender, p[1].sender, p[0].sender])
            #expect(log.map(\.messageID.rawValue) == ["a1", "a2", "a3", "a4"])
            #expect(log.map(\.serverTime) == [1, 2, 3, 4.5].map { Fixture.start + $0 })
            #expect(log.map(\.target) == [nil, nil, nil, 2])
            #expect(log.allSatisfy { $0.kind == .message && $0.chatID == first.id })
        }
    }

    @Test("concurrent appends to one chat get distinct numbers without gaps", arguments: Backend.all)
    func concurrentAppends(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try await person("alice", in: storage)
            let chat = try await makeChat(storage, owner: alice)
            let sequences = try await withThrowingTaskGroup(of: Int64.self) { group in
                for index in 0..<12 {
                    let next = try update(chat.id, by: alice, id: "c\(index)")
                    group.addTask { try await storage.chatLog.append(next).sequence }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(sequences.sorted() == Array(1...12))
            #expect(try await storage.chats.chat(id: chat.id)?.lastSequence == 12)
        }
    }

    @Test("a repeated append is a duplicate; a message id reused for other content is refused", arguments: Backend.all)
    func idempotency(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby"], in: storage)
            let chat = try await makeChat(storage, owner: p[0], members: [p[1]])
            let other = try await makeChat(storage, title: "Other", owner: p[0])
            let hash = Data(repeating: 1, count: 32)
            let first = try await storage.chatLog.append(try update(chat.id, by: p[0], id: "m1", text: "one", contentHash: hash))
            #expect(first == ChatUpdateReceipt(sequence: 1, serverTime: Fixture.start + 1, duplicate: false))
            // A retry later, with the same digest: the first receipt, marked duplicate.
            let retry = try await storage.chatLog.append(
                try update(chat.id, by: p[0], id: "m1", text: "one", at: Fixture.start + 9, contentHash: hash))
            #expect(retry == ChatUpdateReceipt(sequence: 1, serverTime: Fixture.start + 1, duplicate: true))
            // Without a digest it cannot be compared and counts as a retry.
            let uncompared = try await storage.chatLog.append(try update(chat.id, by: p[0], id: "m1", text: "whatever"))
            #expect(uncompared.duplicate)
            #expect(uncompared.sequence == 1)
            let conflict = await refusal {
                _ = try await storage.chatLog.append(
                    try update(chat.id, by: p[0], id: "m1", text: "two", contentHash: Data(repeating: 2, count: 32)))
            }
            #expect(conflict?.code == .idempotencyConflict)
            #expect(try await storage.chats.chat(id: chat.id)?.lastSequence == 1)
            #expect(try await storage.chatLog.updates(of: chat.id, after: 0, limit: 10).map(\.payload) == [Data("one".utf8)])
            // The key is (chat, sending device, id): another device or chat may use the same id.
            #expect(try await post(storage, chat.id, by: p[1], id: "m1") == 2)
            #expect(try await post(storage, other.id, by: p[0], id: "m1") == 1)
        }
    }

    @Test("appending to an unknown chat is refused", arguments: Backend.all)
    func unknownChat(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try await person("alice", in: storage)
            await #expect(throws: HeliographError(.unknownChat, "")) {
                try await storage.chatLog.append(try update(.random(), by: alice, id: "m1"))
            }
            await #expect(throws: HeliographError(.unknownChat, "")) {
                try await storage.chatLog.append(try update(.random(), by: alice, id: "m2", logged: false))
            }
        }
    }

    @Test("slow mode refuses a post too soon with the wait, then lets it through", arguments: Backend.all)
    func slowMode(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol"], in: storage)
            let chat = try await makeChat(storage, owner: p[0], members: [p[1]], slowModeSeconds: 30)
            let t = Fixture.start + 100
            let first = try await storage.chatLog.append(try update(chat.id, by: p[1], id: "s1", at: t, slowModeSeconds: 30))
            #expect(first.sequence == 1)
            #expect(try await storage.chats.member(of: chat.id, account: p[1].id)?.lastPostAt == t)

            let tooSoon = await refusal {
                _ = try await storage.chatLog.append(try update(chat.id, by: p[1], id: "s2", at: t + 10, slowModeSeconds: 30))
            }
            #expect(tooSoon?.code == .slowMode)
            #expect(tooSoon?.retryAfterSeconds == 20)
            // Rounded up: 19.5 s left is a 20 s wait.
            let halfSecond = await refusal {
                _ = try await storage.chatLog.append(try update(chat.id, by: p[1], id: "s2", at: t + 10.5, slowModeSeconds: 30))
            }
            #expect(halfSecond?.retryAfterSeconds == 20)
            let lastMillisecond = await refusal {
                _ = try await storage.chatLog.append(
                    try update(chat.id, by: p[1], id: "s2", at: t + 29.999, slowModeSeconds: 30))
            }
            #expect(lastMillisecond?.retryAfterSeconds == 1)
            // A refused post neither takes a number nor moves the last post time.
            #expect(try await storage.chats.chat(id: chat.id)?.lastSequence == 1)
            #expect(try await storage.chats.member(of: chat.id, account: p[1].id)?.lastPostAt == t)
            // A retry of the accepted post is a duplicate, not a slow-mode refusal.
            let retry = try await storage.chatLog.append(try update(chat.id, by: p[1], id: "s1", at: t + 5, slowModeSeconds: 30))
            #expect(retry == ChatUpdateReceipt(sequence: 1, serverTime: t, duplicate: true))
            // Another member is not held up.
            #expect(
                try await storage.chatLog.append(try update(chat.id, by: p[0], id: "o1", at: t + 10, slowModeSeconds: 30))
                    .sequence == 2)

            let later = try await storage.chatLog.append(try update(chat.id, by: p[1], id: "s2", at: t + 30, slowModeSeconds: 30))
            #expect(later.sequence == 3)
            #expect(try await storage.chats.member(of: chat.id, account: p[1].id)?.lastPostAt == t + 30)
            // Without slow mode the last post time is not consulted.
            #expect(try await storage.chatLog.append(try update(chat.id, by: p[1], id: "s3", at: t + 31)).sequence == 4)
            // A non-member under slow mode.
            await #expect(throws: HeliographError(.notAMember, "")) {
                try await storage.chatLog.append(try update(chat.id, by: p[2], id: "x1", at: t + 40, slowModeSeconds: 30))
            }
        }
    }

    // MARK: Effects on messages

    @Test("an edit replaces the message's content and sets its edit time", arguments: Backend.all)
    func edit(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try await person("alice", in: storage)
            let chat = try await makeChat(storage, owner: alice)
            try await post(storage, chat.id, by: alice, id: "m1", text: "helo")
            let edit = try await storage.chatLog.append(
                try update(
                    chat.id, by: alice, id: "e1", kind: .edit, text: "hello", at: Fixture.start + 5, target: 1,
                    effects: [.edit(target: 1)]))
            #expect(edit.sequence == 2)
            let message = try #require(try await storage.chatLog.message(of: chat.id, sequence: 1))
            #expect(message.update.payload == Data("hello".utf8))
            #expect(message.editedAt == Fixture.start + 5)
            #expect(message.update.serverTime == Fixture.start + 1)
            #expect(message.deleted == false)
            let log = try await storage.chatLog.updates(of: chat.id, after: 0, limit: 10)
            #expect(log.map(\.kind) == [.message, .edit])
            #expect(log[1].target == 1)
            #expect(log[1].payload == Data("hello".utf8))
            // The edit is not a message.
            #expect(try await storage.chatLog.message(of: chat.id, sequence: 2) == nil)
            #expect(try await storage.chatLog.messages(of: chat.id, before: nil, limit: 10).map(\.update.sequence) == [1])
            for target: Int64 in [2, 99, 0] {
                await #expect(throws: HeliographError(.unknownMessage, "")) {
                    try await storage.chatLog.append(
                        try update(
                            chat.id, by: alice, id: "bad\(target)", kind: .edit, target: target, effects: [.edit(target: target)])
                    )
                }
            }
            #expect(try await storage.chats.chat(id: chat.id)?.lastSequence == 2)
        }
    }

    @Test("a deletion blanks and unpins the message, which stays listed", arguments: Backend.all)
    func delete(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby"], in: storage)
            let chat = try await makeChat(storage, owner: p[0], members: [p[1]])
            try await post(storage, chat.id, by: p[1], id: "m1", text: "oops")
            try await post(storage, chat.id, by: p[1], id: "m2", text: "fine")
            _ = try await storage.chatLog.append(
                try update(chat.id, by: p[0], id: "p1", kind: .pin, target: 1, effects: [.pin(target: 1, pinned: true)]))
            #expect(try await storage.chatLog.message(of: chat.id, sequence: 1)?.pinned == true)
            let deletion = try await storage.chatLog.append(
                try update(chat.id, by: p[1], id: "d1", kind: .delete, text: "", target: 1, effects: [.delete(target: 1)]))
            #expect(deletion.sequence == 4)
            let message = try #require(try await storage.chatLog.message(of: chat.id, sequence: 1))
            #expect(message.deleted)
            #expect(message.update.payload.isEmpty)
            #expect(message.pinned == false)
            #expect(message.update.sender == p[1].sender)
            // The content is gone from the log too; the deletion's own empty payload is kept.
            let log = try await storage.chatLog.updates(of: chat.id, after: 0, limit: 10)
            #expect(log.map(\.payload) == [Data(), Data("fine".utf8), Data("hello".utf8), Data()])
            let listed = try await storage.chatLog.messages(of: chat.id, before: nil, limit: 10)
            #expect(listed.map(\.update.sequence) == [2, 1])
            #expect(listed.map(\.deleted) == [false, true])
            #expect(listed[0].update.payload == Data("fine".utf8))
            // Deleting again is harmless; editing, pinning or reacting to it is refused.
            #expect(
                try await storage.chatLog.append(
                    try update(chat.id, by: p[0], id: "d2", kind: .delete, text: "", target: 1, effects: [.delete(target: 1)])
                ).sequence == 5)
            let refusedEffects: [ChatEffect] = [
                .edit(target: 1), .pin(target: 1, pinned: true), .react(target: 1, account: p[0].id, emoji: "👍"),
            ]
            for (index, effect) in refusedEffects.enumerated() {
                await #expect(throws: HeliographError(.unknownMessage, "")) {
                    try await storage.chatLog.append(try update(chat.id, by: p[0], id: "x\(index)", target: 1, effects: [effect]))
                }
            }
            await #expect(throws: HeliographError(.unknownMessage, "")) {
                try await storage.chatLog.append(
                    try update(chat.id, by: p[0], id: "d3", target: 42, effects: [.delete(target: 42)]))
            }
            #expect(try await storage.chats.chat(id: chat.id)?.lastSequence == 5)
        }
    }

    @Test("a message is pinned and unpinned", arguments: Backend.all)
    func pin(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try await person("alice", in: storage)
            let chat = try await makeChat(storage, owner: alice)
            try await post(storage, chat.id, by: alice, id: "m1")
            try await post(storage, chat.id, by: alice, id: "m2")
            _ = try await storage.chatLog.append(
                try update(chat.id, by: alice, id: "p1", kind: .pin, target: 2, effects: [.pin(target: 2, pinned: true)]))
            #expect(try await storage.chatLog.messages(of: chat.id, before: nil, limit: 10).map(\.pinned) == [true, false])
            _ = try await storage.chatLog.append(
                try update(chat.id, by: alice, id: "p2", kind: .unpin, target: 2, effects: [.pin(target: 2, pinned: false)]))
            #expect(try await storage.chatLog.message(of: chat.id, sequence: 2)?.pinned == false)
            await #expect(throws: HeliographError(.unknownMessage, "")) {
                try await storage.chatLog.append(
                    try update(chat.id, by: alice, id: "p3", kind: .pin, target: 3, effects: [.pin(target: 3, pinned: true)]))
            }
        }
    }

    @Test("each account has one reaction per message, replaced or withdrawn, counted by emoji", arguments: Backend.all)
    func reactions(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol"], in: storage)
            let chat = try await makeChat(storage, owner: p[0], members: [p[1], p[2]])
            try await post(storage, chat.id, by: p[0], id: "m1")
            try await post(storage, chat.id, by: p[0], id: "m2")
            var count = 0
            func react(_ person: Person, _ emoji: String?, on target: Int64 = 1) async throws {
                count += 1
                _ = try await storage.chatLog.append(
                    try update(
                        chat.id, by: person, id: "r\(count)", kind: .reaction, text: emoji ?? "", target: target,
                        effects: [.react(target: target, account: person.id, emoji: emoji)]))
            }
            func counts(_ sequence: Int64 = 1) async throws -> [String: Int]? {
                try await storage.chatLog.message(of: chat.id, sequence: sequence)?.reactions
            }
            #expect(try await counts() == [:])
            try await react(p[0], "👍")
            try await react(p[1], "👍")
            try await react(p[2], "❤️")
            #expect(try await counts() == ["👍": 2, "❤️": 1])
            try await react(p[1], "❤️")
            #expect(try await counts() == ["👍": 1, "❤️": 2])
            try await react(p[0], nil)
            #expect(try await counts() == ["❤️": 2])
            try await react(p[0], nil)  // nothing to withdraw: still fine
            #expect(try await counts() == ["❤️": 2])
            try await react(p[0], "🔥", on: 2)
            #expect(try await counts(2) == ["🔥": 1])
            let listed = try await storage.chatLog.messages(of: chat.id, before: nil, limit: 10)
            #expect(listed.map(\.reactions) == [["🔥": 1], ["❤️": 2]])
            #expect(try await storage.chats.chat(id: chat.id)?.lastSequence == 9)
            await #expect(throws: HeliographError(.unknownMessage, "")) {
                try await react(p[0], "👍", on: 3)  // a reaction update, not a message
            }
            #expect(try await counts() == ["❤️": 2])
        }
    }

    // MARK: Effects on membership

    @Test("added members are counted; a full chat and an existing member are refused", arguments: Backend.all)
    func addMember(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol", "david"], in: storage)
            let chat = try await makeChat(storage, owner: p[0])
            #expect(chat.memberCount == 1)
            func add(_ person: Person, id: String, limit: Int?, at time: Date = Fixture.start + 1) throws -> NewChatUpdate {
                try update(
                    chat.id, by: person, id: id, kind: .membership, at: time,
                    effects: [.addMember(membership(person, in: chat.id, at: time), limit: limit)])
            }
            #expect(try await storage.chatLog.append(try add(p[1], id: "j1", limit: 3, at: Fixture.start + 7)).sequence == 1)
            let bob = try #require(try await storage.chats.member(of: chat.id, account: p[1].id))
            #expect(bob == ChatMember(chatID: chat.id, accountID: p[1].id, role: .member, joinedAt: Fixture.start + 7))
            #expect(try await storage.chats.chat(id: chat.id)?.memberCount == 2)
            await #expect(throws: HeliographError(.alreadyMember, "")) {
                try await storage.chatLog.append(try add(p[1], id: "j2", limit: 3))
            }
            #expect(try await storage.chats.chat(id: chat.id)?.memberCount == 2)
            #expect(try await storage.chatLog.append(try add(p[2], id: "j3", limit: 3)).sequence == 2)
            #expect(try await storage.chats.chat(id: chat.id)?.memberCount == 3)
            await #expect(throws: HeliographError(.chatFull, "")) {
                try await storage.chatLog.append(try add(p[3], id: "j4", limit: 3))
            }
            #expect(try await storage.chats.member(of: chat.id, account: p[3].id) == nil)
            let full = try #require(try await storage.chats.chat(id: chat.id))
            #expect(full.memberCount == 3)
            #expect(full.lastSequence == 2)
            // No limit: always room.
            #expect(try await storage.chatLog.append(try add(p[3], id: "j5", limit: nil)).sequence == 3)
            #expect(try await storage.chats.chat(id: chat.id)?.memberCount == 4)
            #expect(try await storage.chats.members(of: chat.id, after: nil, roles: nil, limit: 10).count == 4)
        }
    }

    @Test("members are removed and their roles changed, and only members", arguments: Backend.all)
    func removeAndSetRole(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol", "david"], in: storage)
            let chat = try await makeChat(storage, owner: p[0], members: [p[1], p[2]])
            var count = 0
            func change(_ effect: ChatEffect) async throws {
                count += 1
                _ = try await storage.chatLog.append(
                    try update(chat.id, by: p[0], id: "c\(count)", kind: .membership, effects: [effect]))
            }
            try await change(.removeMember(p[1].id))
            #expect(try await storage.chats.member(of: chat.id, account: p[1].id) == nil)
            #expect(try await storage.chats.chat(id: chat.id)?.memberCount == 2)
            await #expect(throws: HeliographError(.notAMember, "")) { try await change(.removeMember(p[1].id)) }
            await #expect(throws: HeliographError(.notAMember, "")) { try await change(.removeMember(p[3].id)) }
            #expect(try await storage.chats.chat(id: chat.id)?.memberCount == 2)

            try await change(.setRole(p[2].id, role: .admin, rights: [.pin, .ban]))
            var carol = try #require(try await storage.chats.member(of: chat.id, account: p[2].id))
            #expect(carol.role == .admin)
            #expect(carol.rights == [.pin, .ban])
            #expect(carol.joinedAt == Fixture.start)
            try await change(.setRole(p[2].id, role: .member, rights: [.pin]))
            carol = try #require(try await storage.chats.member(of: chat.id, account: p[2].id))
            #expect(carol.role == .member)
            #expect(carol.rights == [])
            try await change(.setRole(p[2].id, role: .owner, rights: []))
            #expect(try await storage.chats.member(of: chat.id, account: p[2].id)?.rights == .all)
            await #expect(throws: HeliographError(.notAMember, "")) {
                try await change(.setRole(p[3].id, role: .admin, rights: [.pin]))
            }
            #expect(try await storage.chats.member(of: chat.id, account: p[3].id) == nil)
            #expect(try await storage.chats.chat(id: chat.id)?.lastSequence == 4)
        }
    }

    @Test("a ban removes the member and is stored until lifted", arguments: Backend.all)
    func bans(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol"], in: storage)
            let chat = try await makeChat(storage, owner: p[0], members: [p[1]])
            let ban = ChatBan(chatID: chat.id, accountID: p[1].id, bannedBy: p[0].id, bannedAt: Fixture.start + 5, until: nil)
            _ = try await storage.chatLog.append(try update(chat.id, by: p[0], id: "b1", kind: .membership, effects: [.ban(ban)]))
            #expect(try await storage.chats.member(of: chat.id, account: p[1].id) == nil)
            #expect(try await storage.chats.chat(id: chat.id)?.memberCount == 1)
            #expect(try await storage.chats.ban(in: chat.id, account: p[1].id) == ban)

            // A non-member can be banned too; the count does not move.
            let timed = ChatBan(
                chatID: chat.id, accountID: p[2].id, bannedBy: p[0].id, bannedAt: Fixture.start + 6, until: Fixture.start + 60)
            _ = try await storage.chatLog.append(
                try update(chat.id, by: p[0], id: "b2", kind: .membership, effects: [.ban(timed)]))
            #expect(try await storage.chats.chat(id: chat.id)?.memberCount == 1)
            let stored = try #require(try await storage.chats.ban(in: chat.id, account: p[2].id))
            #expect(stored == timed)
            #expect(stored.isActive(at: Fixture.start + 59))
            #expect(!stored.isActive(at: Fixture.start + 60))
            // Banning again replaces the ban.
            let longer = ChatBan(chatID: chat.id, accountID: p[2].id, bannedBy: p[0].id, bannedAt: Fixture.start + 7, until: nil)
            _ = try await storage.chatLog.append(
                try update(chat.id, by: p[0], id: "b3", kind: .membership, effects: [.ban(longer)]))
            #expect(try await storage.chats.ban(in: chat.id, account: p[2].id) == longer)

            #expect(try await storage.chats.unban(in: chat.id, account: p[1].id))
            #expect(try await storage.chats.ban(in: chat.id, account: p[1].id) == nil)
            #expect(try await storage.chats.unban(in: chat.id, account: p[1].id) == false)
            #expect(try await storage.chats.ban(in: chat.id, account: p[2].id) == longer)
            #expect(try await storage.chats.ban(in: .random(), account: p[2].id) == nil)
        }
    }

    @Test("the membership version moves one step at a time, and removals record theirs", arguments: Backend.all)
    func membershipVersion(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby"], in: storage)
            let chat = try await makeChat(storage, kind: .privateGroup, owner: p[0], members: [p[1]], membershipVersion: 1)
            func change(_ id: String, _ effects: [ChatEffect]) throws -> NewChatUpdate {
                try update(chat.id, by: p[0], id: id, kind: .membership, effects: effects)
            }
            _ = try await storage.chatLog.append(try change("v2", [.membershipVersion(2, removal: false)]))
            var stored = try #require(try await storage.chats.chat(id: chat.id))
            #expect(stored.membershipVersion == 2)
            #expect(stored.removalVersion == 0)
            for (index, version) in [Int64(2), 4, 1].enumerated() {
                await #expect(throws: HeliographError(.membershipConflict, "")) {
                    try await storage.chatLog.append(try change("bad\(index)", [.membershipVersion(version, removal: false)]))
                }
            }
            _ = try await storage.chatLog.append(
                try change("v3", [.removeMember(p[1].id), .membershipVersion(3, removal: true)]))
            stored = try #require(try await storage.chats.chat(id: chat.id))
            #expect(stored.membershipVersion == 3)
            #expect(stored.removalVersion == 3)
            #expect(stored.memberCount == 1)
            _ = try await storage.chatLog.append(try change("v4", [.membershipVersion(4, removal: false)]))
            stored = try #require(try await storage.chats.chat(id: chat.id))
            #expect(stored.membershipVersion == 4)
            #expect(stored.removalVersion == 3)
            #expect(stored.lastSequence == 3)
        }
    }

    @Test("a refused append changes nothing: no number taken, no effect applied", arguments: Backend.all)
    func refusedAppendIsAtomic(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol"], in: storage)
            let chat = try await makeChat(
                storage, kind: .privateGroup, owner: p[0], members: [p[1]], slowModeSeconds: 0, membershipVersion: 1)
            try await post(storage, chat.id, by: p[1], id: "m1", text: "original")
            let before = try #require(try await storage.chats.chat(id: chat.id))
            let ban = ChatBan(chatID: chat.id, accountID: p[1].id, bannedBy: p[0].id, bannedAt: Fixture.start, until: nil)
            // Every effect but the last would succeed; the last is refused.
            let effects: [ChatEffect] = [
                .edit(target: 1), .pin(target: 1, pinned: true), .react(target: 1, account: p[0].id, emoji: "👍"),
                .addMember(membership(p[2], in: chat.id), limit: nil), .setRole(p[1].id, role: .admin, rights: [.pin]),
                .membershipVersion(2, removal: true), .ban(ban), .delete(target: 1), .edit(target: 7),
            ]
            await #expect(throws: HeliographError(.unknownMessage, "")) {
                try await storage.chatLog.append(
                    try update(chat.id, by: p[0], id: "all", kind: .membership, text: "changed", effects: effects))
            }
            #expect(try await storage.chats.chat(id: chat.id) == before)
            #expect(try await storage.chats.member(of: chat.id, account: p[2].id) == nil)
            #expect(try await storage.chats.member(of: chat.id, account: p[1].id)?.role == .member)
            #expect(try await storage.chats.ban(in: chat.id, account: p[1].id) == nil)
            let message = try #require(try await storage.chatLog.message(of: chat.id, sequence: 1))
            #expect(message == ChatMessage(update: message.update))
            #expect(message.update.payload == Data("original".utf8))
            #expect(try await storage.chatLog.updates(of: chat.id, after: 0, limit: 10).count == 1)
            // The refused message id left no record, and the next update takes number 2.
            let receipt = try await storage.chatLog.append(try update(chat.id, by: p[0], id: "all"))
            #expect(receipt.sequence == 2)
            #expect(!receipt.duplicate)
            // A refused unlogged append changes nothing either.
            await #expect(throws: HeliographError(.alreadyMember, "")) {
                try await storage.chatLog.append(
                    try update(
                        chat.id, by: p[2], id: "u1", kind: .membership,
                        effects: [
                            .addMember(membership(p[2], in: chat.id), limit: nil),
                            .addMember(membership(p[1], in: chat.id), limit: nil),
                        ], logged: false))
            }
            #expect(try await storage.chats.member(of: chat.id, account: p[2].id) == nil)
            #expect(try await storage.chats.chat(id: chat.id)?.memberCount == 2)
        }
    }

    @Test("an unlogged append changes membership without a log entry or idempotency record", arguments: Backend.all)
    func unlogged(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby"], in: storage)
            let channel = try await makeChat(storage, kind: .channel, title: "News", username: "the_news", owner: p[0])
            try await post(storage, channel.id, by: p[0], id: "n1")
            try await post(storage, channel.id, by: p[0], id: "n2")
            let subscribe = try await storage.chatLog.append(
                try update(
                    channel.id, by: p[1], id: "sub", kind: .membership, at: Fixture.start + 3,
                    effects: [.addMember(membership(p[1], in: channel.id, at: Fixture.start + 3), limit: nil)], logged: false))
            #expect(subscribe == ChatUpdateReceipt(sequence: 2, serverTime: Fixture.start + 3, duplicate: false))
            #expect(try await storage.chats.member(of: channel.id, account: p[1].id)?.joinedAt == Fixture.start + 3)
            var stored = try #require(try await storage.chats.chat(id: channel.id))
            #expect(stored.memberCount == 2)
            #expect(stored.lastSequence == 2)
            #expect(try await storage.chatLog.updates(of: channel.id, after: 0, limit: 10).map(\.sequence) == [1, 2])
            // The same id again is applied again, not answered as a duplicate.
            let leave = try await storage.chatLog.append(
                try update(
                    channel.id, by: p[1], id: "sub", kind: .membership, at: Fixture.start + 4,
                    effects: [.removeMember(p[1].id)], logged: false))
            #expect(leave == ChatUpdateReceipt(sequence: 2, serverTime: Fixture.start + 4, duplicate: false))
            stored = try #require(try await storage.chats.chat(id: channel.id))
            #expect(stored.memberCount == 1)
            // And a logged update may use it.
            let logged = try await storage.chatLog.append(try update(channel.id, by: p[1], id: "sub", kind: .membership))
            #expect(logged.sequence == 3)
            #expect(!logged.duplicate)
        }
    }

    // MARK: Reading

    @Test("updates are read after a position in pages", arguments: Backend.all)
    func updatePages(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try await person("alice", in: storage)
            let chat = try await makeChat(storage, owner: alice)
            let other = try await makeChat(storage, title: "Other", owner: alice)
            for index in 1...5 {
                try await post(storage, chat.id, by: alice, id: "m\(index)", text: "text \(index)")
                try await post(storage, other.id, by: alice, id: "o\(index)")
            }
            let log = storage.chatLog
            #expect(try await log.updates(of: chat.id, after: 0, limit: 2).map(\.sequence) == [1, 2])
            #expect(try await log.updates(of: chat.id, after: 2, limit: 2).map(\.sequence) == [3, 4])
            let last = try await log.updates(of: chat.id, after: 4, limit: 10)
            #expect(last.map(\.sequence) == [5])
            #expect(last.first?.payload == Data("text 5".utf8))
            #expect(last.first?.chatID == chat.id)
            #expect(try await log.updates(of: chat.id, after: 5, limit: 10) == [])
            #expect(try await log.updates(of: chat.id, after: 0, limit: 0) == [])
            #expect(try await log.updates(of: .random(), after: 0, limit: 10) == [])
        }
    }

    @Test("messages are listed newest first below a position, in their current state", arguments: Backend.all)
    func messagePages(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby"], in: storage)
            let chat = try await makeChat(storage, owner: p[0], members: [p[1]])
            try await post(storage, chat.id, by: p[0], id: "m1", text: "one")  // 1
            try await post(storage, chat.id, by: p[1], id: "m2", text: "two")  // 2
            _ = try await storage.chatLog.append(
                try update(
                    chat.id, by: p[1], id: "r1", kind: .reaction, target: 1,
                    effects: [.react(target: 1, account: p[1].id, emoji: "🎉")]))  // 3
            try await post(storage, chat.id, by: p[0], id: "m3", text: "three")  // 4
            _ = try await storage.chatLog.append(
                try update(chat.id, by: p[1], id: "d2", kind: .delete, text: "", target: 2, effects: [.delete(target: 2)]))  // 5
            try await post(storage, chat.id, by: p[1], id: "m4", text: "four")  // 6
            _ = try await storage.chatLog.recordViews(of: chat.id, sequences: [4], by: p[1].id)

            let log = storage.chatLog
            let newest = try await log.messages(of: chat.id, before: nil, limit: 2)
            #expect(newest.map(\.update.sequence) == [6, 4])
            #expect(newest.map(\.views) == [0, 1])
            let older = try await log.messages(of: chat.id, before: 4, limit: 10)
            #expect(older.map(\.update.sequence) == [2, 1])
            #expect(older.map(\.deleted) == [true, false])
            #expect(older.map(\.update.payload) == [Data(), Data("one".utf8)])
            #expect(older.map(\.reactions) == [[:], ["🎉": 1]])
            #expect(try await log.messages(of: chat.id, before: 6, limit: 1).map(\.update.sequence) == [4])
            #expect(try await log.messages(of: chat.id, before: 1, limit: 10) == [])
            #expect(try await log.messages(of: chat.id, before: nil, limit: 0) == [])
            #expect(try await log.messages(of: .random(), before: nil, limit: 10) == [])
            let one = try #require(try await log.message(of: chat.id, sequence: 1))
            #expect(one == older[1])
            #expect(one.update.sender == p[0].sender)
            #expect(one.update.messageID.rawValue == "m1")
            #expect(try await log.message(of: chat.id, sequence: 3) == nil)  // a reaction
            #expect(try await log.message(of: chat.id, sequence: 7) == nil)
        }
    }

    @Test("views are counted once per account and message", arguments: Backend.all)
    func views(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol"], in: storage)
            let chat = try await makeChat(storage, kind: .channel, owner: p[0], members: [p[1], p[2]])
            try await post(storage, chat.id, by: p[0], id: "m1")
            try await post(storage, chat.id, by: p[0], id: "m2")
            _ = try await storage.chatLog.append(
                try update(chat.id, by: p[0], id: "p1", kind: .pin, target: 1, effects: [.pin(target: 1, pinned: true)]))
            let log = storage.chatLog
            #expect(try await log.recordViews(of: chat.id, sequences: [1, 2], by: p[1].id) == [1: 1, 2: 1])
            #expect(try await log.recordViews(of: chat.id, sequences: [1, 2], by: p[1].id) == [1: 1, 2: 1])
            #expect(try await log.recordViews(of: chat.id, sequences: [1, 1, 3, 99], by: p[2].id) == [1: 2])
            #expect(try await log.recordViews(of: chat.id, sequences: [1], by: p[2].id) == [1: 2])
            #expect(try await log.message(of: chat.id, sequence: 1)?.views == 2)
            #expect(try await log.message(of: chat.id, sequence: 2)?.views == 1)
            #expect(try await log.recordViews(of: chat.id, sequences: [], by: p[0].id) == [:])
            #expect(try await log.recordViews(of: .random(), sequences: [1], by: p[0].id) == [:])
        }
    }

    @Test("concurrent views by many accounts are each counted once", arguments: Backend.all)
    func concurrentViews(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try await person("alice", in: storage)
            let chat = try await makeChat(storage, kind: .channel, owner: alice)
            try await post(storage, chat.id, by: alice, id: "m1")
            let viewers = try await people((0..<10).map { "viewer\($0)" }, in: storage).map(\.id)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for viewer in viewers + viewers {
                    group.addTask { _ = try await storage.chatLog.recordViews(of: chat.id, sequences: [1], by: viewer) }
                }
                try await group.waitForAll()
            }
            #expect(try await storage.chatLog.message(of: chat.id, sequence: 1)?.views == 10)
        }
    }

    @Test("unread counts skip one's own, deleted and non-message updates, up to a cap", arguments: Backend.all)
    func unread(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby"], in: storage)
            let chat = try await makeChat(storage, owner: p[0], members: [p[1]])
            try await post(storage, chat.id, by: p[1], id: "b1")  // 1
            try await post(storage, chat.id, by: p[0], id: "a1")  // 2
            try await post(storage, chat.id, by: p[0], id: "a2")  // 3
            try await post(storage, chat.id, by: p[0], id: "a3")  // 4
            _ = try await storage.chatLog.append(
                try update(
                    chat.id, by: p[0], id: "r1", kind: .reaction, target: 1,
                    effects: [.react(target: 1, account: p[0].id, emoji: "👍")]))  // 5
            _ = try await storage.chatLog.append(
                try update(chat.id, by: p[0], id: "d1", kind: .delete, text: "", target: 3, effects: [.delete(target: 3)]))  // 6
            let log = storage.chatLog
            #expect(try await log.unreadCount(of: chat.id, after: 0, excluding: p[1].id, cap: 100) == 2)  // 2 and 4
            #expect(try await log.unreadCount(of: chat.id, after: 0, excluding: p[0].id, cap: 100) == 1)  // 1
            #expect(try await log.unreadCount(of: chat.id, after: 2, excluding: p[1].id, cap: 100) == 1)
            #expect(try await log.unreadCount(of: chat.id, after: 4, excluding: p[1].id, cap: 100) == 0)
            #expect(try await log.unreadCount(of: chat.id, after: 0, excluding: p[1].id, cap: 1) == 1)
            #expect(try await log.unreadCount(of: chat.id, after: 0, excluding: p[1].id, cap: 0) == 0)
            #expect(try await log.unreadCount(of: chat.id, after: 0, excluding: AccountID.random(), cap: 100) == 3)
        }
    }

    // MARK: Invites and join requests

    func invite(
        _ code: String, of chat: Chat, by person: Person, at time: Date = Fixture.start, expiresAt: Date? = nil,
        usageLimit: Int? = nil, requiresApproval: Bool = false
    ) -> ChatInvite {
        ChatInvite(
            code: code, chatID: chat.id, createdBy: person.id, createdAt: time, expiresAt: expiresAt, usageLimit: usageLimit,
            requiresApproval: requiresApproval)
    }

    @Test("invites are stored, listed newest first, and keep their first revocation", arguments: Backend.all)
    func invites(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try await person("alice", in: storage)
            let chat = try await makeChat(storage, owner: alice)
            let other = try await makeChat(storage, title: "Other", owner: alice)
            let older = invite(
                "AAAAAAAAAAAAAAAAAAAAAA", of: chat, by: alice, at: Fixture.start, expiresAt: Fixture.start + 3600, usageLimit: 5,
                requiresApproval: true)
            let newer = invite("BBBBBBBBBBBBBBBBBBBBBB", of: chat, by: alice, at: Fixture.start + 10)
            let elsewhere = invite("CCCCCCCCCCCCCCCCCCCCCC", of: other, by: alice, at: Fixture.start + 20)
            for item in [older, newer, elsewhere] { try await storage.chats.insertInvite(item) }
            #expect(try await storage.chats.invite(code: older.code) == older)
            #expect(try await storage.chats.invite(code: "ZZZZZZZZZZZZZZZZZZZZZZ") == nil)
            #expect(try await storage.chats.invites(of: chat.id) == [newer, older])

            let revoked = try await storage.chats.revokeInvite(code: older.code, of: chat.id, at: Fixture.start + 30)
            #expect(revoked?.revokedAt == Fixture.start + 30)
            #expect(revoked?.usageLimit == 5)
            let again = try await storage.chats.revokeInvite(code: older.code, of: chat.id, at: Fixture.start + 40)
            #expect(again?.revokedAt == Fixture.start + 30)
            #expect(try await storage.chats.revokeInvite(code: elsewhere.code, of: chat.id, at: Fixture.start + 40) == nil)
            #expect(try await storage.chats.invite(code: elsewhere.code)?.revokedAt == nil)
            #expect(try await storage.chats.revokeInvite(code: "ZZZZZZZZZZZZZZZZZZZZZZ", of: chat.id, at: Fixture.start) == nil)
            // Revoked links stay listed.
            #expect(try await storage.chats.invites(of: chat.id).map(\.revokedAt) == [nil, Fixture.start + 30])
            // Links made in the same millisecond: the one stored last comes first.
            let twin = invite("DDDDDDDDDDDDDDDDDDDDDD", of: chat, by: alice, at: Fixture.start + 10)
            try await storage.chats.insertInvite(twin)
            #expect(try await storage.chats.invites(of: chat.id).map(\.code) == [twin.code, newer.code, older.code])
            await #expect(throws: HeliographError(.unknownChat, "")) {
                try await storage.chats.insertInvite(
                    ChatInvite(code: "EEEEEEEEEEEEEEEEEEEEEE", chatID: .random(), createdBy: alice.id, createdAt: Fixture.start))
            }
            #expect(try await storage.chats.invite(code: "EEEEEEEEEEEEEEEEEEEEEE") == nil)
        }
    }

    @Test("an invite use is counted, and refused when revoked, expired or used up", arguments: Backend.all)
    func useInvite(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try await person("alice", in: storage)
            let chat = try await makeChat(storage, owner: alice)
            let limited = invite("LIMITEDLIMITEDLIMITED1", of: chat, by: alice, usageLimit: 2)
            let expiring = invite("EXPIRINGEXPIRINGEXPIR1", of: chat, by: alice, expiresAt: Fixture.start + 100)
            let revoked = invite("REVOKEDREVOKEDREVOKED1", of: chat, by: alice)
            for item in [limited, expiring, revoked] { try await storage.chats.insertInvite(item) }
            _ = try await storage.chats.revokeInvite(code: revoked.code, of: chat.id, at: Fixture.start + 1)
            let chats = storage.chats

            #expect(try await chats.useInvite(code: limited.code, at: Fixture.start + 1).uses == 1)
            let second = try await chats.useInvite(code: limited.code, at: Fixture.start + 2)
            #expect(second.uses == 2)
            #expect(second.usageLimit == 2)
            await #expect(throws: HeliographError(.inviteUsedUp, "")) {
                try await chats.useInvite(code: limited.code, at: Fixture.start + 3)
            }
            #expect(try await chats.invite(code: limited.code)?.uses == 2)

            #expect(try await chats.useInvite(code: expiring.code, at: Fixture.start + 99.999).uses == 1)
            await #expect(throws: HeliographError(.inviteExpired, "")) {
                try await chats.useInvite(code: expiring.code, at: Fixture.start + 100)
            }
            #expect(try await chats.invite(code: expiring.code)?.uses == 1)

            await #expect(throws: HeliographError(.inviteRevoked, "")) {
                try await chats.useInvite(code: revoked.code, at: Fixture.start + 2)
            }
            #expect(try await chats.invite(code: revoked.code)?.uses == 0)
            await #expect(throws: HeliographError(.unknownChat, "")) {
                try await chats.useInvite(code: "NOSUCHCODENOSUCHCODE12", at: Fixture.start)
            }
        }
    }

    @Test("concurrent uses of a link with one use left: exactly one succeeds", arguments: Backend.all)
    func concurrentInviteUse(_ backend: Backend) async throws {
        try await backend.with { storage in
            let alice = try await person("alice", in: storage)
            let chat = try await makeChat(storage, owner: alice)
            let link = invite("ONEUSEONEUSEONEUSEONE1", of: chat, by: alice, usageLimit: 1)
            try await storage.chats.insertInvite(link)
            let chats = storage.chats
            let outcomes = try await withThrowingTaskGroup(of: HeliographError.Code?.self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        do {
                            _ = try await chats.useInvite(code: link.code, at: Fixture.start + 1)
                            return nil
                        } catch let error as HeliographError {
                            return error.code
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == nil }.count == 1)
            #expect(outcomes.compactMap { $0 } == Array(repeating: .inviteUsedUp, count: 9))
            #expect(try await chats.invite(code: link.code)?.uses == 1)
        }
    }

    @Test("join requests are one per account, oldest first, and removed once", arguments: Backend.all)
    func joinRequests(_ backend: Backend) async throws {
        try await backend.with { storage in
            let p = try await people(["alice", "bobby", "carol"], in: storage)
            let chat = try await makeChat(storage, owner: p[0])
            let other = try await makeChat(storage, title: "Other", owner: p[0])
            let chats = storage.chats
            try await chats.insertJoinRequest(
                JoinRequest(chatID: chat.id, accountID: p[1].id, requestedAt: Fixture.start + 5, inviteCode: "code_one"))
            let carol = JoinRequest(chatID: chat.id, accountID: p[2].id, requestedAt: Fixture.start + 7, inviteCode: "code_one")
            try await chats.insertJoinRequest(carol)
            // Bob asks again later through another link: his request is replaced, not doubled.
            let bob = JoinRequest(chatID: chat.id, accountID: p[1].id, requestedAt: Fixture.start + 9, inviteCode: "code_two")
            try await chats.insertJoinRequest(bob)
            let elsewhere = JoinRequest(chatID: other.id, accountID: p[1].id, requestedAt: Fixture.start, inviteCode: "code_x")
            try await chats.insertJoinRequest(elsewhere)

            #expect(try await chats.joinRequests(of: chat.id, limit: 10) == [carol, bob])
            #expect(try await chats.joinRequests(of: chat.id, limit: 1) == [carol])
            #expect(try await chats.joinRequests(of: chat.id, limit: 0) == [])
            #expect(try await chats.removeJoinRequest(of: chat.id, account: p[1].id) == bob)
            #expect(try await chats.removeJoinRequest(of: chat.id, account: p[1].id) == nil)
            #expect(try await chats.joinRequests(of: chat.id, limit: 10) == [carol])
            #expect(try await chats.joinRequests(of: other.id, limit: 10) == [elsewhere])
            #expect(try await chats.removeJoinRequest(of: .random(), account: p[2].id) == nil)
            // Requests made in the same millisecond come in the order they were stored; a repeated
            // request counts as made when it is stored again.
            let same = Fixture.start + 20
            for person in [p[2], p[1], p[0]] {
                try await chats.insertJoinRequest(
                    JoinRequest(chatID: other.id, accountID: person.id, requestedAt: same, inviteCode: "code_y"))
            }
            #expect(try await chats.joinRequests(of: other.id, limit: 10).map(\.accountID) == [p[2].id, p[1].id, p[0].id])
            try await chats.insertJoinRequest(
                JoinRequest(chatID: other.id, accountID: p[2].id, requestedAt: same, inviteCode: "code_z"))
            let requests = try await chats.joinRequests(of: other.id, limit: 10)
            #expect(requests.map(\.accountID) == [p[1].id, p[0].id, p[2].id])
            #expect(requests.last?.inviteCode == "code_z")
            await #expect(throws: HeliographError(.unknownChat, "")) {
                try await chats.insertJoinRequest(
                    JoinRequest(chatID: .random(), accountID: p[1].id, requestedAt: Fixture.start, inviteCode: "code_one"))
            }
        }
    }
}
