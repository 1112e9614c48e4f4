import ArgumentParser
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographStore

extension HeliographCommand.Admin {
    /// `heliograph admin seed-chat`: benchmark tooling that writes a public group or channel
    /// with many synthetic members straight into the database, through the store protocols.
    struct SeedChat: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "seed-chat",
            abstract: "Benchmark tooling: a public group or channel with N synthetic members, written straight to the database.",
            discussion: """
                Creates the chat, owned by a new account whose identity key is written with \
                --credentials (JSON: chat id and name, owner name, account id and private key) so \
                that `heliograph-load channel-fanout --credentials FILE` can log in as the owner \
                and post; or, with --into, adds the members to an existing chat. Every member is \
                an account of its own (named PREFIX_N, with one identity key nobody holds), so \
                member lists show names. Members are added MEMBERS-PER-TRANSACTION at a time, \
                without log entries (as channel subscriptions are), so memory stays flat; the \
                accounts are inserted one by one, which on SQLite costs one durable commit each. \
                Never run it against a database with real people: it is for benchmarks only.
                """)

        @OptionGroup var storage: StorageOptions

        @Option(help: "What to create: channel or public_group.")
        var kind: String = "channel"

        @Option(help: "Synthetic members to add, besides the owner.")
        var members: Int

        @Option(help: "The chat's title.")
        var title: String?

        @Option(help: "The chat's public name, by which load clients join it. (default: a random seed name)")
        var username: String?

        @Option(help: "Add the members to this existing public group or channel instead of creating one.")
        var into: String?

        @Option(
            help: "Write the chat id and the owner's login (name, account id, identity private key) to this file (mode 0600).")
        var credentials: String?

        @Option(help: "Name prefix of the synthetic accounts (letters and digits). (default: random)")
        var memberPrefix: String?

        @Option(help: "Members added per transaction.")
        var batch: Int = 5_000

        @Option(help: "Account inserts in flight at once.")
        var parallel: Int = 8

        func run() async throws {
            try await reportingFailures { try await seed() }
        }

        func validate() throws {
            guard members >= 0 else { throw ValidationError("--members must not be negative") }
            guard batch >= 1, batch <= 100_000 else { throw ValidationError("--batch must be 1-100000") }
            guard parallel >= 1, parallel <= 256 else { throw ValidationError("--parallel must be 1-256") }
            if into != nil, username != nil || title != nil || credentials != nil {
                throw ValidationError(
                    "--into adds members to an existing chat: --title, --username and --credentials are for a new one")
            }
        }

        func seed() async throws {
            let environment = ProcessInfo.processInfo.environment
            let logger = try storage.logger(environment)
            let chatKind = try Self.kind(kind)
            let prefix = try Self.prefix(memberPrefix)
            let opened = try await storage.openStorage(environment, logger: logger)
            do {
                try await seed(into: opened, kind: chatKind, prefix: prefix)
            } catch {
                try? await opened.close()
                throw error
            }
            try await opened.close()
        }

        private func seed(into opened: any HeliographStorage, kind chatKind: ChatKind, prefix: String) async throws {
            let now = Date().wholeMilliseconds
            let started = ContinuousClock.now
            let chat: Chat
            let owner: EnvelopeSender
            if let into {
                guard let id = ChatID(into), let existing = try await opened.chats.chat(id: id) else {
                    throw ValidationError("no chat \(into) in \(storage.describe(ProcessInfo.processInfo.environment))")
                }
                guard existing.kind == chatKind else {
                    throw ValidationError("chat \(id) is a \(existing.kind.rawValue), not a \(chatKind.rawValue) (--kind)")
                }
                guard
                    let ownerRow = try await opened.chats.members(of: id, after: nil, roles: [.owner], limit: 1).first,
                    let account = try await opened.accounts.account(id: ownerRow.accountID)
                else { throw ValidationError("chat \(id) has no owner account") }
                chat = existing
                owner = EnvelopeSender(accountID: account.id, username: account.username, deviceID: .random())
            } else {
                let identity = IdentityKeyPair()
                let ownerAccount = Account(
                    id: .random(), username: try Self.name("\(prefix)_owner"), identityKey: identity.publicKey.rawBytes,
                    createdAt: now)
                try await opened.accounts.insert(ownerAccount)
                var created = Chat(
                    id: .random(), kind: chatKind, title: title ?? "Seeded \(chatKind.rawValue) of \(members) members",
                    username: try Self.name(username ?? "\(prefix)_chat"), createdAt: now)
                created.title = String(created.title.prefix(Chat.maximumTitleLength))
                try await opened.chats.create(
                    created, members: [ChatMember(chatID: created.id, accountID: ownerAccount.id, role: .owner, joinedAt: now)],
                    firstUpdate: nil)
                chat = created
                // No device: the unlogged membership appends below store no sender.
                owner = EnvelopeSender(accountID: ownerAccount.id, username: ownerAccount.username, deviceID: .random())
                if let credentials {
                    try Self.writeCredentials(
                        SeededChatCredentials(
                            chatId: created.id, chatUsername: created.username?.display, kind: chatKind,
                            owner: .init(
                                username: ownerAccount.username.display, accountId: ownerAccount.id,
                                identityPrivateKey: identity.privateKeyBytes)),
                        to: credentials)
                }
            }
            if let limit = chatKind.memberLimit, chat.memberCount + members > limit {
                throw ValidationError(
                    "a \(chatKind.rawValue) has at most \(limit) members; it has \(chat.memberCount), so at most "
                        + "\(max(0, limit - chat.memberCount)) more fit")
            }

            // One real public key for every synthetic member: valid for anything that checks its
            // form, and its private half is thrown away here, so nobody can log in as them.
            let sharedKey = IdentityKeyPair().publicKey.rawBytes
            var added = 0
            var reported = ContinuousClock.now
            while added < members {
                let count = min(batch, members - added)
                let accounts = try (added..<added + count).map { index in
                    Account(id: .random(), username: try Self.name("\(prefix)_\(index)"), identityKey: sharedKey, createdAt: now)
                }
                try await insert(accounts, into: opened.accounts)
                let effects = accounts.map { account in
                    ChatEffect.addMember(
                        ChatMember(chatID: chat.id, accountID: account.id, role: .member, joinedAt: now),
                        limit: chatKind.memberLimit)
                }
                _ = try await opened.chatLog.append(
                    NewChatUpdate(
                        chatID: chat.id, kind: .membership, messageID: .random(), sender: owner, serverTime: now,
                        payload: Data(), effects: effects, logged: false))
                added += count
                if reported.duration(to: .now) > .seconds(5) || added == members {
                    reported = .now
                    let seconds = started.duration(to: .now).secondsValue
                    FileHandle.standardError.write(
                        Data(
                            String(
                                format: "seeded %d of %d members in %.1f s (%.0f/s)\n", added, members, seconds,
                                Double(added) / max(seconds, 0.001)
                            ).utf8))
                }
            }
            let stored = try await opened.chats.chat(id: chat.id)
            print("chat \(chat.id)")
            print("kind \(chatKind.rawValue)")
            if let name = stored?.username?.display { print("username \(name)") }
            print("members \(stored?.memberCount ?? 0)")
            print("owner \(owner.username.display)")
            print(String(format: "seconds %.1f", started.duration(to: .now).secondsValue))
        }

        /// Inserts accounts with `parallel` inserts in flight: a server backend commits
        /// concurrent inserts together; SQLite takes them one at a time.
        private func insert(_ accounts: [Account], into store: any AccountStore) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = 0
                while next < min(parallel, accounts.count) {
                    let account = accounts[next]
                    group.addTask { try await store.insert(account) }
                    next += 1
                }
                while try await group.next() != nil, next < accounts.count {
                    let account = accounts[next]
                    group.addTask { try await store.insert(account) }
                    next += 1
                }
                try await group.waitForAll()
            }
        }

        static func kind(_ text: String) throws -> ChatKind {
            switch ChatKind(rawValue: text) {
            case .channel?: return .channel
            case .publicGroup?: return .publicGroup
            case .privateGroup?:
                throw ValidationError(
                    "a private group's members are a chain signed by its admins, which the server cannot make; "
                        + "use heliograph-load group-post --kind private_group, which creates one through the protocol")
            case nil: throw ValidationError("unknown kind '\(text)'; use channel or public_group")
            }
        }

        /// The members' name prefix: given (checked), or a random one so runs do not collide.
        static func prefix(_ given: String?) throws -> String {
            let prefix = given ?? "seed" + String((0..<6).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement()! })
            guard let first = prefix.utf8.first, first.isASCIILetter, prefix.utf8.allSatisfy(\.isASCIIAlphanumeric),
                prefix.utf8.count <= 20
            else {
                throw ValidationError("--member-prefix must be 1-20 letters and digits, starting with a letter")
            }
            return prefix
        }

        static func name(_ text: String) throws -> Username {
            do {
                return try Username(validating: text)
            } catch {
                throw ValidationError("'\(text)' is not a usable name: \(error.message)")
            }
        }

        static func writeCredentials(_ credentials: SeededChatCredentials, to path: String) throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let url = URL(fileURLWithPath: path)
            try? FileManager.default.removeItem(at: url)
            // The file holds a login: readable by its owner only.
            guard
                FileManager.default.createFile(
                    atPath: path, contents: try encoder.encode(credentials), attributes: [.posixPermissions: 0o600])
            else { throw ValidationError("cannot write \(path)") }
        }
    }
}

/// What `seed-chat --credentials` writes, and `heliograph-load` reads to post as the owner.
struct SeededChatCredentials: Codable {
    /// The owner's login.
    struct Owner: Codable {
        var username: String
        var accountId: AccountID
        /// The 32-byte Ed25519 identity private key, base64.
        var identityPrivateKey: Data
    }

    var chatId: ChatID
    var chatUsername: String?
    var kind: ChatKind
    var owner: Owner
}

extension Duration {
    /// The duration in seconds.
    fileprivate var secondsValue: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension UInt8 {
    fileprivate var isASCIILetter: Bool { (0x41...0x5A).contains(self) || (0x61...0x7A).contains(self) }
    fileprivate var isASCIIAlphanumeric: Bool { isASCIILetter || (0x30...0x39).contains(self) }
}
