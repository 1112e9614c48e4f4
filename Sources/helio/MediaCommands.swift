import ArgumentParser
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import Synchronization

// Files and photos from the command line: `helio send --file`, `helio post --photo/--file`,
// `helio save`, and what `helio listen` shows and saves of received attachments.

/// A progress bar on stderr when it is a terminal, and nothing otherwise (a pipe or a log file
/// would fill with carriage returns).
final class ProgressBar: Sendable {
    private let label: String
    private let shown = Mutex<(percent: Int, drawn: Bool)>((-1, false))
    private let enabled: Bool

    init(_ label: String) {
        self.label = label
        enabled = isatty(STDERR_FILENO) == 1
    }

    /// The callback for the Kit's transfers; nil when stderr is not a terminal.
    var callback: TransferProgress? {
        guard enabled else { return nil }
        return { [self] done, total in update(done, total) }
    }

    private func update(_ done: Int64, _ total: Int64) {
        let percent = total > 0 ? Int(min(100, done * 100 / total)) : 100
        let draw = shown.withLock { state -> Bool in
            guard percent != state.percent else { return false }
            state = (percent, true)
            return true
        }
        guard draw else { return }
        let width = 30
        let filled = width * percent / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        let line = "\r\(label) [\(bar)] \(percent)% \(ByteCount.text(done)) / \(ByteCount.text(total))"
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Ends the bar's line, if one was drawn.
    func finish() {
        if shown.withLock({ $0.drawn }) { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// The lines that show a message's attachments under it, each with how to save it.
func mediaLines(_ media: ReceivedMedia, reference: String) -> [String] {
    var lines = media.attachments.map { pointer in
        let facts =
            [pointer.mediaType, ByteCount.text(Int64(pointer.plaintextSize))] + (pointer.thumbnail == nil ? [] : ["thumbnail"])
        return "  attachment: \(pointer.fileName ?? "unnamed") (\(facts.joined(separator: ", ")))"
    }
    lines += media.media.map { item in
        var facts = [item.mediaType, ByteCount.text(item.size)]
        if let width = item.width, let height = item.height { facts.append("\(width)×\(height)") }
        if item.thumbnail != nil { facts.append("thumbnail") }
        return "  media: \(item.fileName ?? "unnamed") (\(facts.joined(separator: ", ")))"
    }
    if !lines.isEmpty { lines.append("  save with: helio save \(reference)") }
    return lines
}

/// The media of a chat event, if it has any.
func receivedMedia(of event: ChatEvent) -> ReceivedMedia? {
    let media = ReceivedMedia(
        sender: event.sender, receivedAt: event.serverTime, attachments: event.attachments ?? [], media: event.media ?? [])
    return media.isEmpty ? nil : media
}

/// How `helio save` and `helio listen` refer to a chat message: `CHAT_ID#SEQ`.
func chatMessageReference(_ event: ChatEvent) -> String { "\(event.chatID)#\(event.seq)" }

/// A file name safe to create in a directory: the last path component, without leading dots.
func safeFileName(_ name: String?, fallback: String, mediaType: String) -> String {
    let last = (name ?? "").split(separator: "/").last.map(String.init) ?? ""
    let trimmed = String(last.drop { $0 == "." }).trimmingCharacters(in: .whitespacesAndNewlines)
    if !trimmed.isEmpty { return trimmed }
    return FileMediaType.fileExtension(for: mediaType).map { "\(fallback).\($0)" } ?? fallback
}

/// `directory/name`, or `directory/name (2)`, … when that exists already.
func freshFile(in directory: URL, named name: String) -> URL {
    let first = directory.appendingPathComponent(name)
    guard FileManager.default.fileExists(atPath: first.path) else { return first }
    let base = (name as NSString).deletingPathExtension
    let ext = (name as NSString).pathExtension
    var number = 2
    while true {
        let candidate = directory.appendingPathComponent(ext.isEmpty ? "\(base) (\(number))" : "\(base) (\(number)).\(ext)")
        if !FileManager.default.fileExists(atPath: candidate.path) { return candidate }
        number += 1
    }
}

/// Downloads every attachment and media item into `directory` (new names, never overwriting)
/// and returns where each went.
func saveMedia(
    _ media: ReceivedMedia, reference: String, into directory: URL, client: HeliographClient, progress: Bool
) async throws -> [URL] {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let fallback = "attachment-" + String(reference.filter { $0.isLetter || $0.isNumber }.prefix(12))
    var saved: [URL] = []
    for pointer in media.attachments {
        let target = freshFile(
            in: directory, named: safeFileName(pointer.fileName, fallback: fallback, mediaType: pointer.mediaType))
        let bar = ProgressBar(target.lastPathComponent)
        try await client.download(attachment: pointer, to: target, progress: progress ? bar.callback : nil)
        bar.finish()
        saved.append(target)
    }
    for item in media.media {
        let target = freshFile(in: directory, named: safeFileName(item.fileName, fallback: fallback, mediaType: item.mediaType))
        let bar = ProgressBar(target.lastPathComponent)
        try await client.download(blob: item.blob, to: target, progress: progress ? bar.callback : nil)
        bar.finish()
        saved.append(target)
    }
    return saved
}

/// Remembers a received message's media (so `helio save` finds it) and, with a save
/// directory, saves it; returns the lines to print under the message. `remember` writes the
/// remembered media file (one writer at a time: `helio listen` runs two receiving tasks).
func handleReceivedMedia(
    _ media: ReceivedMedia?, reference: String, client: HeliographClient, saveDirectory: URL?,
    remember: (ReceivedMedia) async throws -> Void
) async -> [String] {
    guard let media, !media.isEmpty else { return [] }
    var lines = mediaLines(media, reference: reference)
    do {
        try await remember(media)
    } catch {
        warn("cannot remember the attachments of \(reference): \((error as? HeliographError)?.message ?? "\(error)")")
    }
    if let saveDirectory {
        do {
            let saved = try await saveMedia(media, reference: reference, into: saveDirectory, client: client, progress: false)
            lines += saved.map { "  saved to \($0.path)" }
        } catch {
            warn("cannot save the attachments of \(reference): \((error as? HeliographError)?.message ?? "\(error)")")
        }
    }
    return lines
}

/// The files of `--photo` and `--file`, checked to exist; photos must be images.
func postedFiles(photos: [String], files: [String]) throws -> [URL] {
    var urls: [URL] = []
    for path in photos {
        let url = URL(fileURLWithPath: path)
        guard let type = FileMediaType.of(url), type.hasPrefix("image/") else {
            throw ValidationError("--photo takes a JPEG, PNG, GIF or WebP image, not '\(path)'")
        }
        urls.append(url)
    }
    urls += files.map { URL(fileURLWithPath: $0) }
    for url in urls where !FileManager.default.isReadableFile(atPath: url.path) {
        throw ValidationError("cannot read '\(url.path)'")
    }
    return urls
}

extension Helio {
    /// `helio save MESSAGE [PATH]`
    struct Save: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Save the attachments or media of a received message.",
            discussion: """
                MESSAGE is what 'helio listen' prints after 'save with:': a direct message's id, or \
                CHAT#SEQ for a group or channel message (CHAT as the chat commands take it: id, @name \
                or title start). Encrypted attachments are checked and decrypted on this device. PATH \
                is a directory (default: the current one) or, for a single file, the file to write.
                """)

        @Argument(help: "The message: its id as 'helio listen' prints it, or CHAT#SEQ.")
        var message: String

        @Argument(help: "Where to save: a directory, or a file name for a single attachment.")
        var path: String?

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                try await withClient(global) { client in
                    let (reference, media) = try await find(client)
                    let progress = true
                    let count = media.attachments.count + media.media.count
                    let target = URL(fileURLWithPath: path ?? FileManager.default.currentDirectoryPath)
                    var isDirectory: ObjCBool = false
                    let exists = FileManager.default.fileExists(atPath: target.path, isDirectory: &isDirectory)
                    let saved: [URL]
                    if path != nil, count == 1, !(exists && isDirectory.boolValue) {
                        // One file, to the name given.
                        let bar = ProgressBar(target.lastPathComponent)
                        if let pointer = media.attachments.first {
                            try await client.download(attachment: pointer, to: target, progress: bar.callback)
                        } else if let item = media.media.first {
                            try await client.download(blob: item.blob, to: target, progress: bar.callback)
                        }
                        bar.finish()
                        saved = [target]
                    } else {
                        saved = try await saveMedia(
                            media, reference: reference, into: target, client: client, progress: progress)
                    }
                    for file in saved {
                        let size = (try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? NSNumber)?.int64Value
                        print("saved \(file.path)" + (size.map { " (\(ByteCount.text($0)))" } ?? ""))
                    }
                }
            }
        }

        /// The remembered media of the message, or a chat message's media read from the chat.
        func find(_ client: HeliographClient) async throws -> (String, ReceivedMedia) {
            if let hash = message.lastIndex(of: "#"), let seq = Int64(message[message.index(after: hash)...]) {
                let chat = try await ChatResolver(client: client).resolve(String(message[..<hash]))
                let reference = "\(chat.chatId)#\(seq)"
                if let kept = try client.rememberedMedia(for: reference) { return (reference, kept) }
                var opened: ChatEvent?
                if chat.kind == .privateGroup {
                    // Sender keys come through the inbox, the verified membership and the posts
                    // not seen yet through the chat's log: both before the post can be opened.
                    _ = try? await client.absorbGroupKeys()
                    opened = try await client.syncChats(only: [chat.chatId]).last { $0.seq == seq && $0.dropped == nil }
                }
                if opened == nil { opened = try await client.reinterpretChatUpdate(seq, in: chat.chatId) }
                guard let event = opened else {
                    throw HeliographError(.unknownMessage, "[\(displayTitle(chat, client))] has no message #\(seq)")
                }
                if let reason = event.dropped {
                    throw HeliographError(.unknownMessage, "message #\(seq) cannot be read: \(unreadable(reason))")
                }
                guard let media = receivedMedia(of: event) else {
                    throw HeliographError(.notFound, "message #\(seq) of [\(displayTitle(chat, client))] has no attachment")
                }
                return (reference, media)
            }
            guard let kept = try client.rememberedMedia(for: message) else {
                throw HeliographError(
                    .notFound,
                    "no attachment known for message '\(message)'; 'helio listen' remembers the attachments it shows "
                        + "(for a group or channel message give CHAT#SEQ)")
            }
            return (message, kept)
        }
    }
}
