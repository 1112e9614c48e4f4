import ArgumentParser
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import Synchronization

// Groups and channels from the command line: `helio group …`, `helio channel …`, and the
// commands that work on any chat (join, chats, read, post, reply, edit, delete, forward, pin,
// react, search). `helio listen` follows chats through ``ChatFollower``.

/// The help text of every CHAT argument.
let chatArgumentHelp = ArgumentHelp(
    "The chat: its id, @name for a public one, or the start of its title as 'helio chats' shows it.",
    valueName: "chat")

/// Runs `body` with the profile's client and closes the client afterwards, whatever happens.
func withClient(_ global: GlobalOptions, _ body: (HeliographClient) async throws -> Void) async throws {
    let client = try global.client()
    do {
        try await body(client)
    } catch {
        await client.close()
        throw error
    }
    await client.close()
}

/// An account name as the server takes it: without a leading `@`.
func bareName(_ text: String) -> String { text.hasPrefix("@") ? String(text.dropFirst()) : text }

/// The words of a text argument joined, refused when empty.
func joinedText(_ words: [String], what: String = "text") throws -> String {
    let text = words.joined(separator: " ")
    guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
        throw ValidationError("nothing to send: give the \(what)")
    }
    return text
}

/// `30s`, `15m`, `2h`, `1d`, `1w` (or plain seconds) as seconds.
func parseDuration(_ text: String, option: String) throws -> TimeInterval {
    let units: [Character: TimeInterval] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800]
    var number = Substring(text)
    var unit: TimeInterval = 1
    if let last = text.last, let factor = units[last] {
        number = text.dropLast()
        unit = factor
    }
    guard let value = Double(number), value > 0, value.isFinite else {
        throw ValidationError("\(option) takes a duration such as 30m, 1h, 2d or 1w, not '\(text)'")
    }
    return value * unit
}

/// An ISO 8601 time (`2026-12-01T18:00:00Z`) or date (`2026-12-01`, midnight UTC).
func parseTime(_ text: String, option: String) throws -> Date {
    let full = ISO8601DateFormatter()
    if let date = full.date(from: text) { return date }
    full.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    if let date = full.date(from: text) { return date }
    let day = ISO8601DateFormatter()
    day.formatOptions = [.withFullDate]
    if let date = day.date(from: text) { return date }
    throw ValidationError("\(option) takes an ISO 8601 time such as 2026-12-01T18:00:00Z, not '\(text)'")
}

/// A time as listen and read print it.
func stamp(_ date: Date) -> String {
    let formatter = DateFormatter()
    formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
    return formatter.string(from: date)
}

/// Writes a line at once (unbuffered, so a pipe sees it as it happens).
func printNow(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Writes a note on stderr.
func warn(_ line: String) {
    FileHandle.standardError.write(Data("helio: \(line)\n".utf8))
}

// MARK: - Finding chats

/// Turns a CHAT argument into a chat: a chat id, `@name` of a public chat, or the unique start
/// of a title among this account's chats (private-group titles as this device knows them).
struct ChatResolver {
    let client: HeliographClient

    func resolve(_ text: String) async throws -> WireChat {
        let given = text.trimmingCharacters(in: .whitespaces)
        guard !given.isEmpty else { throw ValidationError("name a chat: its id, @name, or the start of its title") }
        if let id = ChatID(given) { return try await client.chatInfo(id).chat }
        if given.hasPrefix("@") { return try await client.resolveChat(given).chat }
        // Titles of private groups arrive end-to-end encrypted through the inbox.
        _ = try? await client.absorbGroupKeys()
        let chats = try await client.chatList().map(\.chat)
        let wanted = given.lowercased()
        let titled = chats.map { (chat: $0, title: (client.localTitle(of: $0) ?? "").lowercased()) }
        let exact = titled.filter { $0.title == wanted }
        if exact.count == 1 { return exact[0].chat }
        let matches = exact.isEmpty ? titled.filter { !$0.title.isEmpty && $0.title.hasPrefix(wanted) } : exact
        switch matches.count {
        case 1: return matches[0].chat
        case 0:
            // A public chat's name typed without its @.
            if (try? Username(validating: given)) != nil, let chat = try? await client.resolveChat(given).chat { return chat }
            throw HeliographError(
                .unknownChat,
                "none of your chats is titled '\(given)'; 'helio chats' lists them (use an id, or @name for a public chat)")
        default:
            let names = matches.prefix(5).map { "\(displayTitle($0.chat, client)) (\($0.chat.chatId))" }
            throw HeliographError(
                .badRequest,
                "'\(given)' matches several chats: \(names.joined(separator: ", ")); give more of the title or the id")
        }
    }
}

/// The title to show: a private group's from this device's keys, else a placeholder.
func displayTitle(_ chat: WireChat, _ client: HeliographClient) -> String {
    if let title = client.localTitle(of: chat), !title.isEmpty { return title }
    return "private group \(chat.chatId.description.prefix(8))"
}

/// How a chat kind reads in output.
func kindName(_ kind: ChatKind) -> String {
    switch kind {
    case .privateGroup: "private group"
    case .publicGroup: "public group"
    case .channel: "channel"
    }
}

/// Joins by `@name` or invite link, pointing out a public name written without its `@` (which
/// is read as an invite code, since a code can look like a name).
func join(_ target: String, client: HeliographClient) async throws -> JoinChatResponse {
    do {
        return try await client.join(target)
    } catch let error as HeliographError where error.code == .unknownChat {
        let text = target.trimmingCharacters(in: .whitespaces)
        guard !text.hasPrefix("@"), !text.contains("/"), (try? Username(validating: text)) != nil else { throw error }
        throw HeliographError(.unknownChat, "\(error.message); for a public chat named \(text), write @\(text)")
    }
}

// MARK: - Showing updates

/// How chat updates read on the terminal.
enum ChatLines {
    /// One update: `[Title] #12 @alice: text`, `[Title] #13 @bob edited #12: text`, …
    static func line(_ event: ChatEvent) -> String {
        let head = "[\(event.chatTitle)] #\(event.seq)"
        let who = event.sender.map { "@\($0)" }
        let actor = who ?? (event.chatKind == .channel ? "an admin" : "someone")
        let target = event.target.map { "#\($0)" } ?? "a message"
        switch event.kind {
        case .message:
            var line = head + (who.map { " \($0)" } ?? "")
            if let reply = event.replyTo { line += " (reply to #\(reply))" }
            line += ": " + (event.text ?? "")
            if let forward = event.forward { line += " " + forwardNote(forward) }
            if let signature = event.signature { line += " — \(signature)" }
            return line
        case .edit: return "\(head) \(actor) edited \(target): \(event.text ?? "")"
        case .delete: return "\(head) \(actor) deleted \(target)"
        case .pin: return "\(head) \(actor) pinned \(target)"
        case .unpin: return "\(head) \(actor) unpinned \(target)"
        case .reaction:
            let reactor = who ?? "a subscriber"
            if let emoji = event.emoji { return "\(head) \(reactor) reacted \(emoji) to \(target)" }
            return "\(head) \(reactor) withdrew a reaction to \(target)"
        case .membership, .info:
            return "\(head) \(event.notice ?? event.kind.rawValue)"
        }
    }

    /// Where a forward came from.
    static func forwardNote(_ origin: ForwardOrigin) -> String {
        guard !origin.hidden else { return "(forwarded; the origin is hidden)" }
        var parts: [String] = []
        if let title = origin.title { parts.append(title) }
        if let seq = origin.seq { parts.append("#\(seq)") }
        if let author = origin.author { parts.append("by @\(author)") }
        return parts.isEmpty ? "(forwarded)" : "(forwarded from \(parts.joined(separator: " ")))"
    }

    /// A message of a history with its current state: edited, pinned, views, reactions.
    static func historyLine(_ event: ChatEvent, _ message: WireChatMessage, kind: ChatKind) -> String {
        if message.deleted { return "[\(event.chatTitle)] #\(event.seq) (deleted)" }
        var line = line(event)
        var marks: [String] = []
        // A private group's posts are opaque to the server: edits and reactions are posts of
        // their own there, and the server's counters say nothing.
        if kind != .privateGroup {
            if message.editedAt != nil { marks.append("edited") }
            if message.pinned { marks.append("pinned") }
            if kind == .channel || message.views > 0 { marks.append(message.views == 1 ? "1 view" : "\(message.views) views") }
            let reactions = ChatMessage.reactionEmoji.compactMap { emoji in
                message.reactions[emoji].map { "\(emoji) \($0)" }
            }
            if !reactions.isEmpty { marks.append(reactions.joined(separator: " ")) }
        }
        if !marks.isEmpty { line += "  [" + marks.joined(separator: " · ") + "]" }
        return line
    }
}

/// Prints a history (oldest first) and returns the newest position shown.
@discardableResult
func printHistory(
    _ chat: WireChat, limit: Int, recordingViews: Bool, client: HeliographClient
) async throws -> Int64? {
    var opened: [Int64: ChatEvent] = [:]
    if chat.kind == .privateGroup {
        // Sender keys arrive through the inbox, and the verified membership and the posts not
        // seen yet through the chat's log: both before the history is decrypted.
        try await client.absorbGroupKeys()
        for event in try await client.syncChats(only: [chat.chatId]) where event.dropped == nil {
            opened[event.seq] = event
        }
    }
    var entries = try await client.history(of: chat.chatId, limit: limit)
    if recordingViews, chat.kind == .channel {
        let seen = entries.filter { !$0.message.deleted }.map(\.event.seq)
        if !seen.isEmpty {
            let views = try await client.recordViews(seen, in: chat.chatId)
            for index in entries.indices {
                entries[index].message.views = views[entries[index].event.seq] ?? entries[index].message.views
            }
        }
    }
    guard !entries.isEmpty else {
        printNow("no messages in [\(displayTitle(chat, client))] yet")
        return nil
    }
    for (update, message) in entries {
        let event = titled(update, client)
        var shown = event
        if let reason = event.dropped {
            // A sender-key chain runs forward only: a post this device opened before (while
            // listening, say) cannot be opened again; the sync above kept what it opened now.
            if let earlier = opened[event.seq] {
                shown = titled(earlier, client)
            } else {
                printNow("\(stamp(event.serverTime)) [\(event.chatTitle)] #\(event.seq)\(sender(event)) (\(unreadable(reason)))")
                continue
            }
        }
        printNow("\(stamp(shown.serverTime)) " + ChatLines.historyLine(shown, message, kind: chat.kind))
        if let media = receivedMedia(of: shown) {
            for line in mediaLines(media, reference: chatMessageReference(shown)) { printNow(line) }
        }
    }
    return entries.map(\.event.seq).max()
}

/// The event with its private group's title as this device knows it now: the title arrives with
/// the first sender key, which may come while the update is being read.
func titled(_ event: ChatEvent, _ client: HeliographClient) -> ChatEvent {
    guard event.chatKind == .privateGroup, let title = client.groupTitle(event.chatID) else { return event }
    var event = event
    event.chatTitle = title
    return event
}

/// ` @name` of an update's sender, if shown.
func sender(_ event: ChatEvent) -> String { event.sender.map { " @\($0)" } ?? "" }

/// Why a private-group post is not shown, in the reader's terms.
func unreadable(_ reason: String) -> String {
    if reason.contains("precedes this device's copy") { return "sent before you received this sender's key" }
    if reason.contains("already opened") { return "opened before on this device; a sender key opens each post once" }
    return "cannot be shown: \(reason)"
}

// MARK: - Following chats in `helio listen`

/// Counts what `helio listen` printed, for `--count`.
final class ListenOutput: Sendable {
    let limit: Int?
    private let printed = Mutex(0)

    init(limit: Int?) { self.limit = limit }

    /// Prints a line; true when the limit is reached with it.
    func emit(_ line: String) -> Bool {
        printNow(line)
        let count = printed.withLock { count -> Int in
            count += 1
            return count
        }
        return limit.map { count >= $0 } ?? false
    }
}

/// Runs one body at a time, in arrival order. `helio listen` saves the profile from two tasks
/// (inbox acknowledgements and chat positions), and two saves at once would collide on the
/// profile store's temporary file.
actor SerialGate {
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        do {
            let result = try await body()
            release()
            return result
        } catch {
            release()
            throw error
        }
    }

    private func acquire() async {
        guard busy else {
            busy = true
            return
        }
        // Handed over by `release`, still busy.
        await withCheckedContinuation { waiting.append($0) }
    }

    private func release() {
        if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
    }
}

/// Follows the account's groups and channels for `helio listen`: syncs at start and whenever the
/// server pushes (a receiving socket of its own), prints each update, and retries private-group
/// posts whose sender key had not arrived yet (it comes through the inbox, a moment later).
final class ChatFollower: Sendable {
    enum Trigger: Sendable {
        case pushed(WireChatUpdate)
        case sync
        case retry
    }

    struct Waiting: Sendable {
        var chat: ChatID
        var seq: Int64
        var title: String
        var since: ContinuousClock.Instant
        var reason: String
    }

    let client: HeliographClient
    let output: ListenOutput
    /// `helio listen --save-dir`: where received attachments and media are saved.
    let saveDirectory: URL?
    /// Held while anything that saves the profile runs.
    let profileWrites = SerialGate()
    private let triggers: AsyncStream<Trigger>
    private let continuation: AsyncStream<Trigger>.Continuation
    private let waiting = Mutex<[Waiting]>([])
    /// How long a post waits for its sender key before it is reported unreadable.
    static let patience = Duration.seconds(30)

    init(client: HeliographClient, output: ListenOutput, saveDirectory: URL? = nil) {
        self.client = client
        self.output = output
        self.saveDirectory = saveDirectory
        (triggers, continuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// Something arrived in the inbox: perhaps the sender key a waiting post needs.
    func nudge() {
        if waiting.withLock({ !$0.isEmpty }) { continuation.yield(.retry) }
    }

    /// Runs until `--count` is reached (then returns) or the task is cancelled.
    func run() async {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.consume()
                return true
            }
            group.addTask {
                await self.followSocket()
                return false
            }
            group.addTask {
                while (try? await Task.sleep(for: .seconds(2))) != nil { self.nudge() }
                return false
            }
            while let finished = await group.next() {
                if finished { break }
            }
            group.cancelAll()
        }
    }

    /// Handles triggers one at a time, so syncs and pushes never race over the saved positions.
    private func consume() async {
        var lastProblem: String?
        for await trigger in triggers {
            do {
                let done = try await profileWrites.run {
                    switch trigger {
                    case .pushed(let update):
                        if let event = try await self.client.applyPushed(update) { return await self.show(event) }
                        return try await self.sync()
                    case .sync: return try await self.sync()
                    case .retry: return try await self.retry()
                    }
                }
                if done { return }
                lastProblem = nil
            } catch {
                let problem = (error as? HeliographError)?.message ?? "\(error)"
                // Said once, not on every retry.
                if problem != lastProblem { warn("chats: \(problem)") }
                lastProblem = problem
            }
        }
    }

    private func sync() async throws -> Bool {
        for event in try await client.syncChats() {
            if await show(event) { return true }
        }
        return try await retry()
    }

    /// Prints an update, or keeps a private-group post that could not be opened yet. True when
    /// `--count` is reached.
    private func show(_ update: ChatEvent) async -> Bool {
        let event = titled(update, client)
        // A membership change this device made itself comes back through the log: not news.
        if event.repeated { return false }
        if let reason = event.dropped {
            if event.chatKind == .privateGroup, event.kind == .message {
                waiting.withLock {
                    $0.append(
                        Waiting(
                            chat: event.chatID, seq: event.seq, title: event.chatTitle, since: .now, reason: reason))
                }
            } else {
                warn("[\(event.chatTitle)] #\(event.seq): \(reason)")
            }
            return false
        }
        return await emit(event)
    }

    /// Prints an update with its media (remembered for `helio save`, saved with `--save-dir`).
    /// Called with the profile writes already held.
    private func emit(_ event: ChatEvent) async -> Bool {
        let reference = chatMessageReference(event)
        let extra = await handleReceivedMedia(
            receivedMedia(of: event), reference: reference, client: client, saveDirectory: saveDirectory
        ) { [client] media in try client.rememberMedia(media, for: reference) }
        return output.emit((["\(stamp(event.serverTime)) " + ChatLines.line(event)] + extra).joined(separator: "\n"))
    }

    /// Tries the waiting posts again; reports those that waited too long.
    private func retry() async throws -> Bool {
        let posts = waiting.withLock { waiting -> [Waiting] in
            defer { waiting.removeAll() }
            return waiting
        }
        var still: [Waiting] = []
        var done = false
        for var post in posts {
            guard !done else {
                still.append(post)
                continue
            }
            if let update = try await client.reinterpretChatUpdate(post.seq, in: post.chat) {
                let event = titled(update, client)
                if event.dropped == nil {
                    done = await emit(event)
                    continue
                }
                post.reason = event.dropped ?? post.reason
                post.title = event.chatTitle
            }
            if ContinuousClock.now - post.since > Self.patience {
                warn("[\(post.title)] #\(post.seq) cannot be read: \(post.reason)")
            } else {
                still.append(post)
            }
        }
        waiting.withLock { $0 = still + $0 }
        return done
    }

    /// A receiving socket of its own, for the pushed chat frames; reconnects with backoff.
    private func followSocket() async {
        var backoff = Duration.milliseconds(200)
        while !Task.isCancelled {
            do {
                let profile = client.profile
                let connection = try await HeliographConnection.connect(to: profile.server, logger: quietLogger)
                do {
                    // `after` is where the inbox already is: this socket only listens for chats.
                    _ = try await connection.request(
                        .authenticate,
                        AuthenticateRequest(token: profile.token, after: profile.lastAcknowledged, receive: true),
                        as: SessionInfo.self)
                } catch {
                    await connection.close()
                    throw error
                }
                backoff = .milliseconds(200)
                // What was committed before the socket registered is fetched by a sync.
                continuation.yield(.sync)
                await withTaskCancellationHandler {
                    for await event in connection.events {
                        switch event {
                        case .chatUpdate(let update): continuation.yield(.pushed(update))
                        case .chatsChanged: continuation.yield(.sync)
                        case .envelope, .error, .readPosition: break
                        }
                    }
                } onCancel: {
                    Task { await connection.close() }
                }
                // A revoked device or a dead token: the inbox loop reports it.
                if let reason = connection.closeReason, Self.isFatal(reason) { return }
            } catch let error as HeliographError where Self.isFatal(error) {
                return
            } catch {
                // Not reachable for now: try again.
            }
            guard (try? await Task.sleep(for: backoff)) != nil else { return }
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    static func isFatal(_ error: HeliographError) -> Bool {
        [.deviceRevoked, .unauthenticated, .tokenExpired].contains(error.code)
    }
}

// MARK: - Commands on any chat

extension Helio {
    /// `helio join @name|LINK`
    struct Join: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Join a public group or channel by @name, or any chat by invite link or code.",
            discussion: """
                A link that needs an admin's approval (and every link to a private group) makes a join \
                request; you become a member once an admin lets you in.
                """)

        @Argument(help: "@name of a public chat, or an invite link (heliograph:join/CODE) or its code.")
        var target: String

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                try await withClient(global) { client in
                    let joined = try await join(target, client: client)
                    let title = displayTitle(joined.chat, client)
                    if joined.pending {
                        print("asked to join [\(title)]; an admin must approve the request")
                    } else {
                        print("joined [\(title)] (\(kindName(joined.chat.kind)), id \(joined.chat.chatId))")
                    }
                }
            }
        }
    }

    /// `helio chats`
    struct Chats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List your groups and channels: title, kind, unread count, last message, muted.")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                try await withClient(global) { client in
                    // Private-group titles come through the inbox.
                    try await client.absorbGroupKeys()
                    let chats = try await client.chatList()
                    guard !chats.isEmpty else {
                        print("no groups or channels yet ('helio group create', 'helio channel create', 'helio join')")
                        return
                    }
                    for summary in chats {
                        let chat = summary.chat
                        var parts = ["[\(displayTitle(chat, client))]", kindName(chat.kind)]
                        if let name = chat.username { parts.append("@\(name)") }
                        if summary.role != .member { parts.append(summary.role.rawValue) }
                        parts.append("\(summary.unread) unread")
                        if summary.muted { parts.append("muted") }
                        if let last = summary.lastMessage {
                            parts.append("last #\(last.update.seq) " + lastMessageText(last, kind: chat.kind))
                        }
                        parts.append("id \(chat.chatId)")
                        print(parts.joined(separator: " · "))
                    }
                }
            }
        }

        /// The last message as the list shows it; a private group's stays encrypted here (opening
        /// it would use up its place in the sender-key chain before `helio read` shows it).
        func lastMessageText(_ message: WireChatMessage, kind: ChatKind) -> String {
            let who = message.update.sender.map { "@\($0.username): " } ?? ""
            if message.deleted { return "(deleted)" }
            guard kind != .privateGroup else { return who + "(encrypted; 'helio read' shows it)" }
            let text = message.update.content?.text ?? ""
            return who + (text.count > 60 ? String(text.prefix(59)) + "…" : text)
        }
    }

    /// `helio read CHAT`
    struct Read: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a chat's recent messages and mark them read.",
            discussion: """
                Messages are shown oldest first with their number (#SEQ, for reply, edit, delete, pin, \
                react and forward), sender and time; in channels with their view counts (reading counts \
                as a view) and reactions. Private groups are decrypted on this device.
                """)

        @Argument(help: chatArgumentHelp)
        var chat: String

        @Option(help: "How many recent messages (1-200).")
        var limit = 20

        @OptionGroup var global: GlobalOptions

        func validate() throws {
            guard (1...200).contains(limit) else { throw ValidationError("--limit must be 1-200") }
        }

        func run() async throws {
            try await reportingErrors {
                try await withClient(global) { client in
                    let info = try await ChatResolver(client: client).resolve(chat)
                    let newest = try await printHistory(info, limit: limit, recordingViews: true, client: client)
                    // Only members have a read position.
                    if let newest, try await client.chatInfo(info.chatId).role != nil {
                        try await client.markRead(info.chatId, through: max(newest, info.lastSeq))
                    }
                }
            }
        }
    }

    /// `helio post CHAT TEXT`
    struct Post: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Post a message to a group or channel (encrypted on this device in a private group).")

        @Argument(help: chatArgumentHelp)
        var chat: String

        @Argument(help: "The text (the caption with --photo or --file); several words are joined with spaces.")
        var text: [String] = []

        @OptionGroup var media: PostMediaOptions

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await postText(text, to: chat, media: media, global)
        }
    }

    /// `helio reply CHAT SEQ TEXT`
    struct Reply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reply to a message of a group.")

        @Argument(help: chatArgumentHelp)
        var chat: String

        @Argument(help: "The number of the message replied to (#SEQ in 'helio read').")
        var seq: Int64

        @Argument(help: "The text; several words are joined with spaces.")
        var text: [String]

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let message = try joinedText(text)
                try await withClient(global) { client in
                    let info = try await ChatResolver(client: client).resolve(chat)
                    let posted = try await client.post(message, to: info.chatId, replyTo: seq)
                    print("replied to #\(seq) in [\(displayTitle(info, client))] as #\(posted.seq)")
                }
            }
        }
    }

    /// `helio edit CHAT SEQ TEXT`
    struct Edit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Edit a message: your own, or anyone's with the edit_others right.")

        @Argument(help: chatArgumentHelp)
        var chat: String

        @Argument(help: "The number of the message (#SEQ in 'helio read').")
        var seq: Int64

        @Argument(help: "The new text; several words are joined with spaces.")
        var text: [String]

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let message = try joinedText(text, what: "new text")
                try await withClient(global) { client in
                    let info = try await ChatResolver(client: client).resolve(chat)
                    let done = try await client.edit(seq, in: info.chatId, text: message)
                    print("edited #\(seq) in [\(displayTitle(info, client))] (update #\(done.seq))")
                }
            }
        }
    }

    /// `helio delete CHAT SEQ`
    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a message for everyone: your own, or anyone's with the delete right.")

        @Argument(help: chatArgumentHelp)
        var chat: String

        @Argument(help: "The number of the message (#SEQ in 'helio read').")
        var seq: Int64

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                try await withClient(global) { client in
                    let info = try await ChatResolver(client: client).resolve(chat)
                    let done = try await client.deleteMessage(seq, in: info.chatId)
                    print("deleted #\(seq) in [\(displayTitle(info, client))] (update #\(done.seq))")
                }
            }
        }
    }

    /// `helio forward FROMCHAT SEQ TOCHAT`
    struct Forward: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forward a message of a public group or channel to another chat.",
            discussion: "The forward names its origin, unless the channel it comes from hides it.")

        @Argument(help: "The chat the message is in (id, @name or title start).")
        var from: String

        @Argument(help: "The number of the message (#SEQ in 'helio read').")
        var seq: Int64

        @Argument(help: "The chat to forward it to (id, @name or title start).")
        var to: String

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                try await withClient(global) { client in
                    let resolver = ChatResolver(client: client)
                    let source = try await resolver.resolve(from)
                    let target = try await resolver.resolve(to)
                    let done = try await client.forward(seq, from: source.chatId, to: target.chatId)
                    print(
                        "forwarded #\(seq) of [\(displayTitle(source, client))] to [\(displayTitle(target, client))] as #\(done.seq)"
                    )
                }
            }
        }
    }

    /// `helio pin CHAT SEQ [--unpin]`
    struct Pin: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pin a message (needs the pin right), or unpin it.")

        @Argument(help: chatArgumentHelp)
        var chat: String

        @Argument(help: "The number of the message (#SEQ in 'helio read').")
        var seq: Int64

        @Flag(help: "Unpin instead.")
        var unpin = false

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                try await withClient(global) { client in
                    let info = try await ChatResolver(client: client).resolve(chat)
                    try await client.pin(seq, in: info.chatId, pinned: !unpin)
                    print("\(unpin ? "unpinned" : "pinned") #\(seq) in [\(displayTitle(info, client))]")
                }
            }
        }
    }

    /// `helio react CHAT SEQ EMOJI|--remove`
    struct React: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "React to a message with one of the fixed emoji, or withdraw your reaction.",
            discussion: """
                The emoji are \(ChatMessage.reactionEmoji.joined(separator: " ")); names work too: \
                \(React.aliases.map { "\($0.0) \($0.1)" }.joined(separator: ", ")). Each account has one \
                reaction per message; a new one replaces it.
                """)

        @Argument(help: chatArgumentHelp)
        var chat: String

        @Argument(help: "The number of the message (#SEQ in 'helio read').")
        var seq: Int64

        @Argument(help: "The emoji, or its name (like, dislike, heart, fire, party, laugh, wow, sad).")
        var emoji: String?

        @Flag(help: "Withdraw your reaction instead.")
        var remove = false

        @OptionGroup var global: GlobalOptions

        static let aliases: [(String, String)] = [
            ("like", "👍"), ("dislike", "👎"), ("heart", "❤️"), ("fire", "🔥"), ("party", "🎉"), ("laugh", "😂"),
            ("wow", "😮"), ("sad", "😢"),
        ]

        /// The emoji the argument names, from the fixed set.
        static func emoji(for text: String) throws -> String {
            let lowered = text.lowercased()
            if let alias = aliases.first(where: { $0.0 == lowered }) { return alias.1 }
            // A heart typed without its variation selector is still the heart.
            if text == "❤" { return "❤️" }
            guard ChatMessage.reactionEmoji.contains(text) else {
                throw ValidationError(
                    "reactions are one of \(ChatMessage.reactionEmoji.joined(separator: " ")) "
                        + "(or \(aliases.map(\.0).joined(separator: ", "))), not '\(text)'")
            }
            return text
        }

        func validate() throws {
            switch (emoji, remove) {
            case (nil, false): throw ValidationError("give an emoji, or --remove to withdraw your reaction")
            case (.some, true): throw ValidationError("give an emoji or --remove, not both")
            case (let text?, false): _ = try Self.emoji(for: text)
            case (nil, true): break
            }
        }

        func run() async throws {
            try await reportingErrors {
                let chosen = try emoji.map(Self.emoji(for:))
                try await withClient(global) { client in
                    let info = try await ChatResolver(client: client).resolve(chat)
                    try await client.react(seq, in: info.chatId, emoji: chosen)
                    let title = displayTitle(info, client)
                    print(
                        chosen.map { "reacted \($0) to #\(seq) in [\(title)]" }
                            ?? "withdrew your reaction to #\(seq) in [\(title)]")
                }
            }
        }
    }

    /// `helio search WORDS…`
    struct Search: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Find public groups and channels by words of their title or the start of their @name.")

        @Argument(help: "1-8 words; a title must have every one.")
        var words: [String]

        @Option(help: "At most this many results (1-50).")
        var limit = 20

        @OptionGroup var global: GlobalOptions

        func validate() throws {
            guard !words.isEmpty else { throw ValidationError("give the words to search for") }
            guard (1...50).contains(limit) else { throw ValidationError("--limit must be 1-50") }
        }

        func run() async throws {
            try await reportingErrors {
                try await withClient(global) { client in
                    let found = try await client.searchChats(words.joined(separator: " "), limit: limit)
                    guard !found.isEmpty else {
                        print("no public group or channel matches")
                        return
                    }
                    for chat in found {
                        let name = chat.username.map { "@\($0)" } ?? "(invite only)"
                        let members = chat.kind == .channel ? "subscribers" : "members"
                        print(
                            "[\(chat.title)] · \(kindName(chat.kind)) · \(name) · \(chat.memberCount) \(members) · id \(chat.chatId)"
                        )
                    }
                }
            }
        }
    }
}

// MARK: - helio group

extension Helio {
    /// `helio group …`
    struct GroupCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "group",
            abstract: "Create and manage groups: members, admins, bans, invite links, join requests.",
            discussion: """
                Groups are private (end-to-end encrypted with sender keys; the server sees members and \
                ciphertext only; at most 1,000 members) unless created with --public (server-readable, \
                moderated, up to 200,000 members, joinable by @name or link). Post with 'helio post'.
                """,
            subcommands: [
                Create.self, Add.self, Remove.self, Leave.self, Admins.self, Ban.self, Unban.self, Invite.self, Requests.self,
            ])

        /// `helio group create TITLE`
        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create a group: private (end-to-end encrypted) by default, or public with --public.")

            @Argument(help: "The title (1-128 characters); a private group's is seen by its members only.")
            var title: String

            @Flag(help: "Create a public group: server-readable and moderated, found by --username or invite links.")
            var `public` = false

            @Option(help: "Public groups: a public name (5-32 of A-Z a-z 0-9 _), so anyone can join it as @NAME.")
            var username: String?

            @Option(
                help: ArgumentHelp(
                    "Public groups: seconds a member waits between two posts (0-86400; admins are not slowed).",
                    valueName: "seconds"))
            var slowMode: Int?

            @Option(
                name: .customLong("member"), parsing: .upToNextOption,
                help: ArgumentHelp("Accounts to add at once (repeat the option or list several names).", valueName: "name"))
            var members: [String] = []

            @OptionGroup var global: GlobalOptions

            func validate() throws {
                if !`public`, username != nil || slowMode != nil {
                    throw ValidationError("--username and --slow-mode are for public groups: add --public")
                }
                if let slowMode, !(0...Chat.maximumSlowModeSeconds).contains(slowMode) {
                    throw ValidationError("--slow-mode must be 0-\(Chat.maximumSlowModeSeconds) seconds")
                }
            }

            func run() async throws {
                try await reportingErrors {
                    let names = members.map(bareName)
                    try await withClient(global) { client in
                        let with = names.isEmpty ? "" : " with " + names.map { "@\($0)" }.joined(separator: ", ")
                        if `public` {
                            let chat = try await client.createPublicGroup(
                                title: title, username: username.map(bareName), slowModeSeconds: slowMode, members: names)
                            let name = chat.username.map { " @\($0)" } ?? ""
                            print("created public group [\(chat.title)]\(name)\(with) (id \(chat.chatId))")
                        } else {
                            let id = try await client.createPrivateGroup(title: title, members: names)
                            print("created private group [\(title)]\(with) (id \(id)); end-to-end encrypted")
                        }
                    }
                }
            }
        }

        /// `helio group add CHAT NAME…`
        struct Add: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Add accounts to a group (needs the invite right); in a private group this signs the change.")

            @Argument(help: chatArgumentHelp)
            var chat: String

            @Argument(help: "The accounts to add, as @name or name.")
            var names: [String]

            @OptionGroup var global: GlobalOptions

            func validate() throws {
                guard !names.isEmpty else { throw ValidationError("name the accounts to add") }
            }

            func run() async throws {
                try await reportingErrors {
                    try await withClient(global) { client in
                        let info = try await ChatResolver(client: client).resolve(chat)
                        try await client.addMembers(names.map(bareName), to: info.chatId)
                        print(
                            "added \(names.map { "@" + bareName($0) }.joined(separator: ", ")) to [\(displayTitle(info, client))]"
                        )
                    }
                }
            }
        }

        /// `helio group remove CHAT NAME`
        struct Remove: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Remove a member (needs the ban right).",
                discussion: """
                    In a private group every remaining member's next post uses a new sender key, so the \
                    removed member reads nothing that follows.
                    """)

            @Argument(help: chatArgumentHelp)
            var chat: String

            @Argument(help: "The member, as @name or name.")
            var name: String

            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await reportingErrors {
                    try await withClient(global) { client in
                        let info = try await ChatResolver(client: client).resolve(chat)
                        try await client.removeMember(bareName(name), from: info.chatId)
                        print("removed @\(bareName(name)) from [\(displayTitle(info, client))]")
                    }
                }
            }
        }

        /// `helio group leave CHAT`
        struct Leave: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Leave a group (the owner hands it over first).")

            @Argument(help: chatArgumentHelp)
            var chat: String

            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await reportingErrors {
                    try await withClient(global) { client in
                        let info = try await ChatResolver(client: client).resolve(chat)
                        let title = displayTitle(info, client)
                        try await client.leave(info.chatId)
                        print("left [\(title)]")
                    }
                }
            }
        }

        /// `helio group admins CHAT [--set NAME --rights …] [--dismiss NAME]`
        struct Admins: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "List a chat's owner and admins, appoint an admin with rights, or dismiss one.",
                discussion: """
                    Rights: \(AdminRights.names.map(\.1).joined(separator: ", ")), or all. Appointing and \
                    dismissing needs manage_admins, and nobody grants rights they lack. Works for channels too.
                    """)

            @Argument(help: chatArgumentHelp)
            var chat: String

            @Option(
                name: .customLong("set"),
                help: ArgumentHelp("Make this account an admin (or change its rights); needs --rights.", valueName: "name"))
            var appoint: String?

            @Option(
                help: ArgumentHelp(
                    "The rights for --set, separated by commas, such as post,delete,pin (or all).", valueName: "rights"))
            var rights: String?

            @Option(help: ArgumentHelp("Make this admin a plain member again.", valueName: "name"))
            var dismiss: String?

            @OptionGroup var global: GlobalOptions

            /// The rights named by --rights.
            func rightNames() throws -> [String] {
                let names = (rights ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                    .filter { !$0.isEmpty }
                if names == ["all"] { return AdminRights.all.nameList }
                do {
                    return try AdminRights(names: names).nameList
                } catch {
                    throw ValidationError(error.message)
                }
            }

            func validate() throws {
                if appoint != nil, dismiss != nil { throw ValidationError("give --set or --dismiss, not both") }
                if appoint != nil {
                    guard try !rightNames().isEmpty else {
                        throw ValidationError("--set needs --rights, such as --rights post,delete (or --dismiss to demote)")
                    }
                } else if rights != nil {
                    throw ValidationError("--rights goes with --set NAME")
                }
            }

            func run() async throws {
                try await reportingErrors {
                    try await withClient(global) { client in
                        let info = try await ChatResolver(client: client).resolve(chat)
                        let title = displayTitle(info, client)
                        if let appoint {
                            let names = try rightNames()
                            try await client.setAdmin(bareName(appoint), rights: names, in: info.chatId)
                            print("@\(bareName(appoint)) is now an admin of [\(title)] with \(names.joined(separator: ", "))")
                            return
                        }
                        if let dismiss {
                            try await client.setAdmin(bareName(dismiss), rights: [], in: info.chatId)
                            print("@\(bareName(dismiss)) is now a plain member of [\(title)]")
                            return
                        }
                        let admins = try await client.chatAdmins(info.chatId)
                        if info.kind == .privateGroup {
                            // The signed membership chain is what counts; the server's list names them.
                            let names = Dictionary(admins.map { ($0.accountId, $0.username) }) { first, _ in first }
                            let state = try await client.groupState(info.chatId)
                            // The owner first, then admins in a stable order.
                            let ranked = state.members.values.filter { $0.role != .member }.map {
                                (rank: $0.role == .owner ? 0 : 1, id: $0.account.description, member: $0)
                            }
                            for (_, _, member) in ranked.sorted(by: { ($0.rank, $0.id) < ($1.rank, $1.id) }) {
                                let name = names[member.account].map { "@\($0)" } ?? "account \(member.account)"
                                print(adminLine(name, member.role, member.rights.nameList))
                            }
                        } else {
                            for admin in admins { print(adminLine("@\(admin.username)", admin.role, admin.rights)) }
                        }
                    }
                }
            }

            func adminLine(_ name: String, _ role: ChatRole, _ rights: [String]) -> String {
                role == .owner ? "\(name)  owner" : "\(name)  admin  \(rights.joined(separator: ", "))"
            }
        }

        /// `helio group ban CHAT NAME [--until TIME | --for DURATION]`
        struct Ban: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Ban an account from a public group or channel: it leaves and cannot join again until the ban ends.")

            @Argument(help: chatArgumentHelp)
            var chat: String

            @Argument(help: "The account, as @name or name.")
            var name: String

            @Option(help: ArgumentHelp("End the ban at this ISO 8601 time, such as 2026-12-01T18:00:00Z.", valueName: "time"))
            var until: String?

            @Option(
                name: .customLong("for"),
                help: ArgumentHelp("End the ban after this long, such as 30m, 1h, 2d or 1w.", valueName: "duration"))
            var duration: String?

            @OptionGroup var global: GlobalOptions

            func validate() throws {
                if until != nil, duration != nil { throw ValidationError("give --until or --for, not both") }
                if let until { _ = try parseTime(until, option: "--until") }
                if let duration { _ = try parseDuration(duration, option: "--for") }
            }

            func run() async throws {
                try await reportingErrors {
                    var end: Date?
                    if let until { end = try parseTime(until, option: "--until") }
                    if let duration { end = Date().addingTimeInterval(try parseDuration(duration, option: "--for")) }
                    try await withClient(global) { client in
                        let info = try await ChatResolver(client: client).resolve(chat)
                        try await client.ban(bareName(name), from: info.chatId, until: end)
                        let span = end.map { " until \(stamp($0))" } ?? " until lifted"
                        print("banned @\(bareName(name)) from [\(displayTitle(info, client))]\(span)")
                    }
                }
            }
        }

        /// `helio group unban CHAT NAME`
        struct Unban: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Lift a ban (needs the ban right).")

            @Argument(help: chatArgumentHelp)
            var chat: String

            @Argument(help: "The account, as @name or name.")
            var name: String

            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await reportingErrors {
                    try await withClient(global) { client in
                        let info = try await ChatResolver(client: client).resolve(chat)
                        try await client.unban(bareName(name), from: info.chatId)
                        print("lifted the ban of @\(bareName(name)) in [\(displayTitle(info, client))]")
                    }
                }
            }
        }

        /// `helio group invite CHAT`
        struct Invite: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Make an invite link (needs the invite right) and print it.",
                discussion: """
                    Anyone with the link joins with 'helio join LINK' (or subscribes to a channel). Joins of \
                    a private group always wait for an admin ('helio group requests').
                    """)

            @Argument(help: chatArgumentHelp)
            var chat: String

            @Option(
                help: ArgumentHelp(
                    "The link stops working after this long, such as 1h, 1d or 1w (default: never).", valueName: "duration"))
            var expires: String?

            @Option(help: "The link works for this many joins (default: no limit).")
            var uses: Int?

            @Flag(help: "Joins through the link wait for an admin's approval.")
            var approval = false

            @OptionGroup var global: GlobalOptions

            func validate() throws {
                if let expires { _ = try parseDuration(expires, option: "--expires") }
                if let uses, !(1...100_000).contains(uses) { throw ValidationError("--uses must be 1-100000") }
            }

            func run() async throws {
                try await reportingErrors {
                    let expiry = try expires.map { Date().addingTimeInterval(try parseDuration($0, option: "--expires")) }
                    try await withClient(global) { client in
                        let info = try await ChatResolver(client: client).resolve(chat)
                        let invite = try await client.createInvite(
                            to: info.chatId, expiresAt: expiry, usageLimit: uses, requiresApproval: approval)
                        print("heliograph:join/\(invite.code)")
                        var terms: [String] = []
                        terms.append(
                            invite.expiresAt.map { "expires \(stamp(Date(millisecondsSince1970: $0)))" } ?? "never expires")
                        terms.append(invite.usageLimit.map { "\($0) joins" } ?? "any number of joins")
                        if invite.requiresApproval || info.kind == .privateGroup { terms.append("joins wait for approval") }
                        print("code \(invite.code) for [\(displayTitle(info, client))]: \(terms.joined(separator: ", "))")
                    }
                }
            }
        }

        /// `helio group requests CHAT [--approve NAME | --decline NAME]`
        struct Requests: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "List join requests waiting for approval, or approve or decline one (needs the invite right).")

            @Argument(help: chatArgumentHelp)
            var chat: String

            @Option(help: ArgumentHelp("Let this account in (in a private group: a signed add).", valueName: "name"))
            var approve: String?

            @Option(help: ArgumentHelp("Decline this account's request.", valueName: "name"))
            var decline: String?

            @OptionGroup var global: GlobalOptions

            func validate() throws {
                if approve != nil, decline != nil { throw ValidationError("give --approve or --decline, not both") }
            }

            func run() async throws {
                try await reportingErrors {
                    try await withClient(global) { client in
                        let info = try await ChatResolver(client: client).resolve(chat)
                        let title = displayTitle(info, client)
                        if let name = approve ?? decline {
                            try await client.decideJoinRequest(bareName(name), in: info.chatId, approve: approve != nil)
                            print(
                                approve != nil
                                    ? "let @\(bareName(name)) into [\(title)]" : "declined the request of @\(bareName(name))")
                            return
                        }
                        let requests = try await client.joinRequests(of: info.chatId)
                        guard !requests.isEmpty else {
                            print("no join requests for [\(title)]")
                            return
                        }
                        for request in requests {
                            print("@\(request.username)  asked \(stamp(Date(millisecondsSince1970: request.requestedAt)))")
                        }
                    }
                }
            }
        }
    }
}

// MARK: - helio channel

extension Helio {
    /// `helio channel …`
    struct ChannelCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "channel",
            abstract: "Create channels, post to them, subscribe and read them.",
            discussion: """
                A channel is a broadcast: admins with the post right post, subscribers read and react and \
                cannot see each other. Members, admins, bans and links work as for groups ('helio group admins', \
                'helio group ban', 'helio group invite').
                """,
            subcommands: [Create.self, ChannelPost.self, Subscribe.self, Unsubscribe.self, History.self])

        /// `helio channel create TITLE`
        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create a channel; you are its owner.")

            @Argument(help: "The title (1-128 characters).")
            var title: String

            @Option(help: "A public name (5-32 of A-Z a-z 0-9 _), so anyone can subscribe as @NAME (default: invite links only).")
            var username: String?

            @Flag(help: "Sign each post with the posting admin's name.")
            var sign = false

            @Flag(help: "Forwards of the channel's posts do not name the channel.")
            var hideForwardOrigin = false

            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await reportingErrors {
                    try await withClient(global) { client in
                        let chat = try await client.createChannel(
                            title: title, username: username.map(bareName), signPosts: sign, hidesForwardOrigin: hideForwardOrigin
                        )
                        let name = chat.username.map { " @\($0)" } ?? ""
                        print("created channel [\(chat.title)]\(name) (id \(chat.chatId))")
                    }
                }
            }
        }

        /// `helio channel post CHAT TEXT`
        struct ChannelPost: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "post", abstract: "Post to a channel (needs the post right).")

            @Argument(help: chatArgumentHelp)
            var chat: String

            @Argument(help: "The text (the caption with --photo or --file); several words are joined with spaces.")
            var text: [String] = []

            @OptionGroup var media: PostMediaOptions

            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await postText(text, to: chat, media: media, global)
            }
        }

        /// `helio channel subscribe @NAME|LINK`
        struct Subscribe: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Subscribe to a channel by @name or invite link.")

            @Argument(help: "@name of a public channel, or an invite link (heliograph:join/CODE) or its code.")
            var target: String

            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await reportingErrors {
                    try await withClient(global) { client in
                        let joined = try await join(target, client: client)
                        let title = displayTitle(joined.chat, client)
                        if joined.pending {
                            print("asked to subscribe to [\(title)]; an admin must approve the request")
                        } else if joined.chat.kind != .channel {
                            print("joined [\(title)], a \(kindName(joined.chat.kind)) (id \(joined.chat.chatId))")
                        } else {
                            print("subscribed to [\(title)] (id \(joined.chat.chatId))")
                        }
                    }
                }
            }
        }

        /// `helio channel unsubscribe CHAT`
        struct Unsubscribe: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Unsubscribe from a channel.")

            @Argument(help: chatArgumentHelp)
            var chat: String

            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await reportingErrors {
                    try await withClient(global) { client in
                        let info = try await ChatResolver(client: client).resolve(chat)
                        try await client.leave(info.chatId)
                        print("unsubscribed from [\(displayTitle(info, client))]")
                    }
                }
            }
        }

        /// `helio channel history CHAT`
        struct History: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Show a channel's recent posts with view counts and reactions (without counting a view).")

            @Argument(help: chatArgumentHelp)
            var chat: String

            @Option(help: "How many recent posts (1-200).")
            var limit = 20

            @OptionGroup var global: GlobalOptions

            func validate() throws {
                guard (1...200).contains(limit) else { throw ValidationError("--limit must be 1-200") }
            }

            func run() async throws {
                try await reportingErrors {
                    try await withClient(global) { client in
                        let info = try await ChatResolver(client: client).resolve(chat)
                        try await printHistory(info, limit: limit, recordingViews: false, client: client)
                    }
                }
            }
        }
    }
}

/// Posts words as one text to a chat, for `helio post` and `helio channel post`; with photos or
/// files the words are their caption.
func postText(_ words: [String], to chat: String, media: PostMediaOptions, _ global: GlobalOptions) async throws {
    try await reportingErrors {
        let files = try postedFiles(photos: media.photo, files: media.file)
        let message = files.isEmpty ? try joinedText(words) : words.joined(separator: " ")
        try await withClient(global) { client in
            let info = try await ChatResolver(client: client).resolve(chat)
            let posted: PostResponse
            if files.isEmpty {
                posted = try await client.post(message, to: info.chatId)
            } else {
                let bar = ProgressBar(files.count == 1 ? files[0].lastPathComponent : "\(files.count) files")
                posted = try await client.postMedia(
                    files, caption: message.isEmpty ? nil : message, in: info.chatId, progress: bar.callback)
                bar.finish()
            }
            print("posted #\(posted.seq) to [\(displayTitle(info, client))]")
        }
    }
}

/// `--photo` and `--file` of `helio post` and `helio channel post`.
struct PostMediaOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Post this image (JPEG, PNG, GIF or WebP); repeatable.", valueName: "path"))
    var photo: [String] = []

    @Option(
        help: ArgumentHelp(
            "Post this file (public chats: mp4, webm, ogg, mp3, pdf or an image; private groups: any file); repeatable.",
            valueName: "path"))
    var file: [String] = []
}
