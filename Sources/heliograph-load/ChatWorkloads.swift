import ArgumentParser
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import Histogram
import Synchronization

/// What `heliograph admin seed-chat --credentials FILE` writes: a seeded chat and its owner's
/// login. The load tool adds `ownerToken` after its first login there, because a second login
/// of the owner would be a new device waiting for approval by the first.
struct SeededChat: Codable {
    struct Owner: Codable {
        var username: String
        var accountId: AccountID
        var identityPrivateKey: Data
    }

    var chatId: ChatID
    var chatUsername: String?
    var kind: ChatKind
    var owner: Owner
    var ownerToken: String?
}

/// Options of the chat workloads.
struct ChatOptions: ParsableArguments {
    @Option(
        help: """
            A chat made by `heliograph admin seed-chat --credentials FILE`: the run posts to it as \
            its owner. Without it the run creates a chat of its own, with only its online members.
            """)
    var credentials: String?

    @Option(help: "Posts timed one at a time (each waits until every socket has it), then as many again back to back.")
    var posts = 10

    @Option(
        help: """
            Loopback source addresses the receiving sockets are spread over (127.0.0.1 … 127.0.0.K), \
            for a server that limits connections per address (64 by default).
            """)
    var addresses = 1

    @Option(help: "Registrations, joins and socket openings in flight.")
    var parallel = 32

    @Option(help: "Seconds to wait for every socket to receive the posts of a phase.")
    var deliveryTimeout: Double = 30

    func validate() throws {
        guard (1...200).contains(posts) else { throw ValidationError("--posts must be 1-200 (the server queues 512 per socket)") }
        guard (1...254).contains(addresses) else { throw ValidationError("--addresses must be 1-254") }
        guard (1...512).contains(parallel) else { throw ValidationError("--parallel must be 1-512") }
    }
}

/// The chat a run posts to, with its owner's request socket.
struct ChatUnderLoad {
    var chat: WireChat
    var owner: LoadDevice
    var socket: HeliographConnection
}

/// Setting the chat of a run up through the protocol.
enum ChatSetup {
    /// Logs in as the owner of a seeded chat, or reuses the session of an earlier run.
    static func seeded(_ path: String, kind: ChatKind, server: URL) async throws -> ChatUnderLoad {
        let url = URL(fileURLWithPath: path)
        var seeded = try JSONDecoder().decode(SeededChat.self, from: Data(contentsOf: url))
        guard seeded.kind == kind else {
            throw ValidationError("\(path) holds a \(seeded.kind.rawValue), not a \(kind.rawValue)")
        }
        let identity = try IdentityKeyPair(privateKeyBytes: seeded.owner.identityPrivateKey)
        let token: String
        if let saved = seeded.ownerToken {
            token = saved
        } else {
            let connection = try await HeliographConnection.connect(to: server)
            let device = try await Provision.login(
                seeded.owner.username, account: seeded.owner.accountId, identity: identity, server: server, over: connection)
            await connection.close()
            guard !device.pending else {
                throw ValidationError(
                    "the owner of \(path) already has a device but the file holds no session; seed a new chat")
            }
            seeded.ownerToken = device.token
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(seeded).write(to: url)
            token = device.token
        }
        let socket = try await HeliographConnection.connect(to: server)
        let session = try await socket.request(
            .authenticate, AuthenticateRequest(token: token, after: nil, receive: false), as: SessionInfo.self)
        let info = try await socket.request(.chatInfo, ChatRef(chatId: seeded.chatId), as: ChatInfoResponse.self)
        let owner = LoadDevice(
            username: seeded.owner.username, token: token, identity: identity.privateKeyBytes, accountID: session.accountId,
            deviceID: session.deviceId, agreementKey: Data(), pending: false)
        return ChatUnderLoad(chat: info.chat, owner: owner, socket: socket)
    }

    /// Registers an owner and creates a public group or channel with a public name.
    static func created(_ kind: ChatKind, prefix: String, server: URL) async throws -> ChatUnderLoad {
        let owner = try await Provision.account("\(prefix)o", server: server)
        let socket = try await senderSocket(owner, server: server)
        let info = try await socket.request(
            .createChat, CreateChatRequest(kind: kind, title: "Load \(kind.rawValue)", username: "\(prefix)_chat"),
            as: ChatInfoResponse.self)
        return ChatUnderLoad(chat: info.chat, owner: owner, socket: socket)
    }

    /// Registers an account, logs it in and, given a chat name, joins that chat, over one socket.
    static func member(_ username: String, joining chatName: String?, server: URL) async throws -> LoadDevice {
        let connection = try await HeliographConnection.connect(to: server)
        defer { Task { await connection.close() } }
        let identity = IdentityKeyPair()
        let account = try await connection.request(
            .register, RegisterRequest(username: username, identityKey: identity.publicKey.rawBytes), as: AccountInfo.self)
        let device = try await Provision.login(
            username, account: account.accountId, identity: identity, server: server, over: connection)
        if let chatName {
            // Login answers with a token; the socket itself acts for the device once authenticated.
            _ = try await connection.request(
                .authenticate, AuthenticateRequest(token: device.token, after: nil, receive: false), as: SessionInfo.self)
            _ = try await connection.request(.joinChat, JoinChatRequest(username: chatName), as: JoinChatResponse.self)
        }
        return device
    }

    /// Opens one receiving socket per device, spread over `addresses` loopback source addresses.
    static func receivers(
        _ devices: [LoadDevice], server: URL, addresses: Int, parallel: Int, counters: ChatArrivalCounters
    ) async throws -> [ChatReceiver] {
        try await Provision.many(devices.count, parallel: parallel) { index in
            try await ChatReceiver.connect(
                to: server, token: devices[index].token, from: addresses > 1 ? "127.0.0.\(1 + index % addresses)" : nil,
                counters: counters)
        }
    }
}

/// One post as the poster timed it.
struct TimedPost {
    /// Its position in the chat's log.
    var sequence: Int64
    /// Wall-clock µs before the request was made (and, in private groups, encrypted).
    var sent: Int64
    /// Wall-clock µs when the acknowledgement (after the commit) arrived.
    var acked: Int64
}

/// The posts of one phase and the server's CPU and memory around it.
struct PostPhase {
    var posts: [TimedPost] = []
    var errors = 0
    var firstError: String?
    var before: ProcessSample?
    var after: ProcessSample?
    var complete = true
}

/// Posts `count` times; one at a time waits until every socket got each post before the next.
func runPostPhase(
    count: Int, oneAtATime: Bool, socket: HeliographConnection, receivers: Int, counters: ChatArrivalCounters,
    timeout: Double, serverPid: [Int32], make: (Int) throws -> PostRequest
) async -> PostPhase {
    var phase = PostPhase()
    let base = counters.updates.load(ordering: .relaxed)
    phase.before = ProcessSample(pids: serverPid)
    for index in 0..<count {
        let sent = Clock.wallMicroseconds()
        do {
            let response = try await socket.request(.post, try make(index), as: PostResponse.self)
            phase.posts.append(TimedPost(sequence: response.seq, sent: sent, acked: Clock.wallMicroseconds()))
        } catch {
            phase.errors += 1
            if phase.firstError == nil { phase.firstError = "\(error)" }
        }
        if oneAtATime {
            phase.complete =
                await waitForUpdates(counters, reaching: base + phase.posts.count * receivers, timeout: timeout)
                && phase.complete
        }
    }
    if !oneAtATime {
        phase.complete = await waitForUpdates(counters, reaching: base + phase.posts.count * receivers, timeout: timeout)
    }
    phase.after = ProcessSample(pids: serverPid)
    return phase
}

/// Waits until the sockets received `target` updates in all; false after `timeout` seconds.
func waitForUpdates(_ counters: ChatArrivalCounters, reaching target: Int, timeout: Double) async -> Bool {
    let deadline = ContinuousClock.now + .seconds(timeout)
    while counters.updates.load(ordering: .relaxed) < target {
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(1))
    }
    return true
}

/// The figures of one phase, from the posts and every socket's arrivals.
struct PhaseFigures {
    /// Post sent → socket received, over every delivery.
    var latency = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
    /// Post sent → acknowledgement (commit done, the update handed to the sockets' queues).
    var acknowledgement = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
    /// Post sent → the last socket received it, per post that reached every socket.
    var everySocket: [Int64] = []
    var delivered = 0
    /// From the first post sent to the last delivery of the phase.
    var spanMicros: Int64 = 0

    init(_ phase: PostPhase, arrivals: [Int64: [Int64]], sockets: Int) {
        guard let first = phase.posts.first?.sent else { return }
        var last = first
        for post in phase.posts {
            _ = acknowledgement.record(UInt64(max(0, post.acked - post.sent)))
            let times = arrivals[post.sequence] ?? []
            delivered += times.count
            for time in times { _ = latency.record(UInt64(max(0, time - post.sent))) }
            if let latest = times.max() {
                last = max(last, latest)
                if times.count >= sockets { everySocket.append(latest - post.sent) }
            }
        }
        spanMicros = last - first
    }

    /// Deliveries per second over the phase.
    var rate: Double { spanMicros > 0 ? Double(delivered) / (Double(spanMicros) / 1e6) : 0 }

    /// Deliveries per second while one post fans out alone: sockets over its time to reach all.
    func singleRate(sockets: Int) -> Double {
        guard !everySocket.isEmpty else { return 0 }
        let mean = Double(everySocket.reduce(0, +)) / Double(everySocket.count)
        return mean > 0 ? Double(sockets) / (mean / 1e6) : 0
    }
}

/// Runs both phases on a chat whose members are online through `receivers`, and reports.
func measureChatPosts(
    workload: String, parameters: [String: String], target: ChatUnderLoad, receivers: [ChatReceiver],
    counters: ChatArrivalCounters, options: ChatOptions, common: CommonOptions, memoryBefore: ProcessSample?,
    memoryAfter: ProcessSample?, make: (Int) throws -> PostRequest
) async throws -> Report {
    let single = await runPostPhase(
        count: options.posts, oneAtATime: true, socket: target.socket, receivers: receivers.count, counters: counters,
        timeout: options.deliveryTimeout, serverPid: common.serverPid, make: make)
    let burst = await runPostPhase(
        count: options.posts, oneAtATime: false, socket: target.socket, receivers: receivers.count, counters: counters,
        timeout: options.deliveryTimeout, serverPid: common.serverPid, make: { try make(options.posts + $0) })
    var arrivals: [Int64: [Int64]] = [:]
    for receiver in receivers {
        for arrival in receiver.received { arrivals[arrival.sequence, default: []].append(arrival.micros) }
    }
    let chat =
        (try? await target.socket.request(.chatInfo, ChatRef(chatId: target.chat.chatId), as: ChatInfoResponse.self))?.chat
        ?? target.chat
    let one = PhaseFigures(single, arrivals: arrivals, sockets: receivers.count)
    let row = PhaseFigures(burst, arrivals: arrivals, sockets: receivers.count)
    let expected = (single.posts.count + burst.posts.count) * receivers.count

    var report = Report(
        workload: workload,
        parameters: parameters.merging(
            ["posts": "\(options.posts)", "addresses": "\(options.addresses)", "sockets": "\(receivers.count)"]
        ) { $1 },
        durationSeconds: Double(row.spanMicros) / 1e6, offeredRate: nil, sent: single.posts.count + burst.posts.count,
        errors: single.errors + burst.errors, delivered: one.delivered + row.delivered, achievedRate: row.rate,
        latencyMicroseconds: one.latency.summary)
    report.attachServer(before: burst.before, after: burst.after, deliveries: row.delivered)
    report.extra["members"] = Double(chat.memberCount)
    report.extra["ack µs p50, one at a time"] = Double(one.acknowledgement.valueAtPercentile(50))
    report.extra["ack µs max, one at a time"] = Double(one.acknowledgement.max)
    report.extra["ack µs p50, in a row"] = Double(row.acknowledgement.valueAtPercentile(50))
    if let median = one.everySocket.sorted().dropFirst(one.everySocket.count / 2).first {
        report.extra["every socket has it, ms p50, one at a time"] = Double(median) / 1000
        report.extra["every socket has it, ms max, one at a time"] = Double(one.everySocket.max() ?? 0) / 1000
    }
    report.extra["deliveries/s, one at a time"] = one.singleRate(sockets: receivers.count).rounded()
    report.extra["deliveries/s, in a row"] = row.rate.rounded()
    report.extra["latency µs p50, in a row"] = Double(row.latency.valueAtPercentile(50))
    report.extra["latency µs p99, in a row"] = Double(row.latency.valueAtPercentile(99))
    report.extra["missing deliveries"] = Double(expected - one.delivered - row.delivered)
    report.extra["overflows (chatsChanged)"] = Double(counters.overflows.load(ordering: .relaxed))
    if let memoryBefore, let memoryAfter {
        report.extra["server bytes per receiving socket"] =
            (Double(memoryAfter.residentBytes - memoryBefore.residentBytes) / Double(max(receivers.count, 1))).rounded()
    }
    if let error = single.firstError ?? burst.firstError { Swift.print("first error     \(error)") }
    if !single.complete || !burst.complete {
        Swift.print("note: not every socket received every post within \(options.deliveryTimeout) s")
    }
    for (index, post) in single.posts.enumerated() {
        let times = arrivals[post.sequence] ?? []
        Swift.print(
            String(
                format: "post %2d (seq %lld): ack %.2f ms, %d sockets, every socket %.2f ms", index + 1, post.sequence,
                Double(post.acked - post.sent) / 1000, times.count, Double((times.max() ?? post.sent) - post.sent) / 1000))
    }
    return report
}

extension LoadTool {
    /// A channel's posts pushed to its online subscribers.
    struct ChannelFanout: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "channel-fanout",
            abstract: "Channel posts to online subscribers: commit time, time until every socket has each post, deliveries/s.",
            discussion: """
                Registers --subscribers accounts, joins each to the channel by its public name and \
                opens one receiving socket per subscriber; then the owner posts --posts times one at \
                a time (each waits until every socket has it) and --posts times back to back. With \
                --credentials the channel is one made by `heliograph admin seed-chat`, with its \
                seeded subscribers offline. Start the server with --auth-rate 0, and with \
                --max-connections-per-address 0 or pass --addresses (sockets per address ≤ 64).
                """)

        @OptionGroup var common: CommonOptions
        @OptionGroup var chat: ChatOptions
        @Option(help: "Online subscribers: one account and one receiving socket each.") var subscribers = 10_000
        @Option(help: "Characters of text per post.") var textBytes = 200

        func run() async throws {
            try await runPublicChat(
                kind: .channel, workload: "channel-fanout", online: subscribers, textBytes: textBytes, common: common,
                options: chat)
        }
    }

    /// A message in a public group of many members, or a sender-key encrypted one in a private group.
    struct GroupPost: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "group-post",
            abstract: "Group messages to online members: public groups, or private groups with sender-key encryption.",
            discussion: """
                public_group: as channel-fanout, with --online members joined by name (with \
                --credentials, a group seeded by `heliograph admin seed-chat --kind public_group`; \
                public groups hold at most 200,000 members, seeded and joined together). \
                private_group: registers the owner and --members accounts, creates the group with the \
                owner's signed membership chain listing them all, and posts real sender-key \
                ciphertexts (HeliographCrypto SenderKeyState) of --message-bytes of plaintext; the \
                run times sealing, and opening every post as a member would, in this process.
                """)

        @OptionGroup var common: CommonOptions
        @OptionGroup var chat: ChatOptions
        @Option(help: "public_group or private_group.") var kind = "public_group"
        @Option(help: "Private group: members besides the owner (at most 999).") var members = 999
        @Option(help: "Receiving sockets, one per member. (default: public group 10,000; private group every member)")
        var online: Int?
        @Option(help: "Public group: characters of text per message. Private group: plaintext bytes before encryption.")
        var messageBytes = 200

        func run() async throws {
            switch kind {
            case ChatKind.publicGroup.rawValue:
                try await runPublicChat(
                    kind: .publicGroup, workload: "group-post", online: online ?? 10_000, textBytes: messageBytes,
                    common: common, options: chat)
            case ChatKind.privateGroup.rawValue:
                guard chat.credentials == nil else {
                    throw ValidationError("a private group is created through the protocol; --credentials is for seeded chats")
                }
                guard (1...999).contains(members) else { throw ValidationError("--members must be 1-999") }
                try await runPrivateGroup()
            default:
                throw ValidationError("--kind must be public_group or private_group")
            }
        }

        private func runPrivateGroup() async throws {
            let server = common.url
            let prefix = common.prefix
            let sockets = min(online ?? members, members)
            raiseFileLimit(for: sockets)
            let owner = try await Provision.account("\(prefix)o", server: server)
            let memberDevices = try await Provision.many(members, parallel: chat.parallel) {
                try await Provision.account("\(prefix)m\($0)", server: server)
            }
            // The owner's signed creation lists every member with its identity key, as a client does.
            let chatID = ChatID.random()
            let listed = try ([owner] + memberDevices).enumerated().map { index, device in
                MembershipChange.Member(
                    account: device.accountID,
                    identityKey: try IdentityKeyPair(privateKeyBytes: device.identity).publicKey.rawBytes,
                    role: index == 0 ? .owner : .member)
            }
            let ownerIdentity = try IdentityKeyPair(privateKeyBytes: owner.identity)
            let creation = SignedMembershipChange.sign(
                MembershipChange(
                    chat: chatID, version: 1, previous: MembershipChange.genesisPrevious, action: .create,
                    actor: owner.accountID, members: listed, time: Date().millisecondsSince1970),
                with: ownerIdentity)
            let socket = try await senderSocket(owner, server: server)
            let info = try await socket.request(
                .createChat, CreateChatRequest(kind: .privateGroup, title: "", membership: creation.bytes),
                as: ChatInfoResponse.self)
            let target = ChatUnderLoad(chat: info.chat, owner: owner, socket: socket)

            let counters = ChatArrivalCounters()
            let memoryBefore = ProcessSample(pids: common.serverPid)
            let receivers = try await ChatSetup.receivers(
                Array(memberDevices.prefix(sockets)), server: common.receiverURL, addresses: chat.addresses,
                parallel: chat.parallel, counters: counters)
            let memoryAfter = ProcessSample(pids: common.serverPid)

            // Real sender-key posts: the owner's chain at the group's membership version; a member's
            // copy of it (from the distribution) opens each post after the run.
            let epoch = info.chat.membershipVersion ?? 1
            var sending = SenderKeyState.generate(chat: chatID, epoch: epoch)
            var receiving = try SenderKeyState(receiving: sending.distribution)
            let context = SenderKeyContext(chat: chatID, senderAccount: owner.accountID, senderDevice: owner.deviceID)
            var sealing = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            var sealed: [(plaintext: Data, bytes: Data)] = []
            var report = try await measureChatPosts(
                workload: "group-post",
                parameters: ["kind": "private_group", "members": "\(members + 1)", "messageBytes": "\(messageBytes)"],
                target: target, receivers: receivers, counters: counters, options: chat, common: common,
                memoryBefore: memoryBefore, memoryAfter: memoryAfter
            ) { index in
                var plaintext = Data(count: messageBytes)
                for position in plaintext.indices { plaintext[position] = UInt8(truncatingIfNeeded: index &+ position) }
                let started = ContinuousClock.now
                let message = try sending.seal(plaintext, context: context)
                let bytes = message.bytes
                _ = sealing.record(UInt64(max(0, started.duration(to: .now).microseconds)))
                sealed.append((plaintext, bytes))
                return PostRequest(chatId: chatID, messageId: .random(), payload: bytes, keyEpoch: epoch)
            }
            // What every member device does with each post: parse, decrypt, verify the signature.
            var opening = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            for (plaintext, bytes) in sealed {
                let started = ContinuousClock.now
                let opened = try receiving.open(try SenderKeyMessage(bytes: bytes), context: context)
                _ = opening.record(UInt64(max(0, started.duration(to: .now).microseconds)))
                guard opened == plaintext else { throw ValidationError("a post opened to other bytes than were sealed") }
            }
            report.extra["sender key seal µs p50"] = Double(sealing.valueAtPercentile(50))
            report.extra["sender key open µs p50 (parse, decrypt, verify)"] = Double(opening.valueAtPercentile(50))
            report.extra["ciphertext bytes"] = Double(sealed.first?.bytes.count ?? 0)
            try report.print(json: common.json)
            await close(receivers, socket)
        }
    }
}

/// Channel or public group: an owned chat (seeded, or created here), `online` members joined by
/// name with a receiving socket each, and text posts by the owner.
func runPublicChat(
    kind: ChatKind, workload: String, online: Int, textBytes: Int, common: CommonOptions, options: ChatOptions
) async throws {
    guard online >= 1 else { throw ValidationError("at least one receiving socket is needed") }
    guard (1...4_096).contains(textBytes) else { throw ValidationError("posts carry 1-4096 characters") }
    raiseFileLimit(for: online)
    let server = common.url
    let prefix = common.prefix
    let target: ChatUnderLoad
    if let credentials = options.credentials {
        target = try await ChatSetup.seeded(credentials, kind: kind, server: server)
    } else {
        target = try await ChatSetup.created(kind, prefix: prefix, server: server)
    }
    guard let chatName = target.chat.username else {
        throw ValidationError("the chat has no public name to join it by")
    }
    let seededMembers = target.chat.memberCount
    let started = ContinuousClock.now
    let devices = try await Provision.many(online, parallel: options.parallel) {
        try await ChatSetup.member("\(prefix)m\($0)", joining: chatName, server: server)
    }
    Swift.print(
        String(
            format: "registered and joined %d members in %.1f s (the chat had %d)", online, started.duration(to: .now).seconds,
            seededMembers))
    let counters = ChatArrivalCounters()
    let memoryBefore = ProcessSample(pids: common.serverPid)
    let opening = ContinuousClock.now
    let receivers = try await ChatSetup.receivers(
        devices, server: common.receiverURL, addresses: options.addresses, parallel: options.parallel, counters: counters)
    let memoryAfter = ProcessSample(pids: common.serverPid)
    Swift.print(String(format: "opened %d receiving sockets in %.1f s", receivers.count, opening.duration(to: .now).seconds))

    let text = String(repeating: "x", count: max(0, textBytes - 12))
    let report = try await measureChatPosts(
        workload: workload,
        parameters: ["kind": kind.rawValue, "seeded": options.credentials == nil ? "no" : "yes", "textBytes": "\(textBytes)"],
        target: target, receivers: receivers, counters: counters, options: options, common: common,
        memoryBefore: memoryBefore, memoryAfter: memoryAfter
    ) { index in
        PostRequest(chatId: target.chat.chatId, messageId: .random(), text: String(format: "post %06d ", index) + text)
    }
    try report.print(json: common.json)
    await close(receivers, target.socket)
}

/// Closes the receiving sockets, a few hundred at a time, and the owner's socket.
func close(_ receivers: [ChatReceiver], _ socket: HeliographConnection) async {
    for start in stride(from: 0, to: receivers.count, by: 256) {
        await withTaskGroup(of: Void.self) { group in
            for receiver in receivers[start..<min(start + 256, receivers.count)] {
                group.addTask { await receiver.close() }
            }
        }
    }
    await socket.close()
}

extension Duration {
    /// Whole microseconds.
    var microseconds: Int64 { components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000 }
}
