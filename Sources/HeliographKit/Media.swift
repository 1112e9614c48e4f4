import Crypto
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographProtocol
import Logging

/// Called as a transfer advances with the bytes done so far and the total.
public typealias TransferProgress = @Sendable (_ done: Int64, _ total: Int64) -> Void

/// Media types told from file name extensions, for uploads that declare one.
public enum FileMediaType {
    /// The extensions this client recognises and their media types.
    public static let byExtension: [String: String] = [
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
        "mp4": "video/mp4", "webm": "video/webm", "ogg": "audio/ogg", "mp3": "audio/mpeg", "pdf": "application/pdf",
    ]

    /// The media type of a file, from its extension (in any case); nil when it is not one above.
    public static func of(_ file: URL) -> String? { byExtension[file.pathExtension.lowercased()] }

    /// An extension for a media type (the first listed), for naming a saved file that has none.
    public static func fileExtension(for mediaType: String) -> String? {
        byExtension.filter { $0.value == mediaType }.keys.sorted().first
    }

    /// The media type of a small image from its first bytes (JPEG, PNG, GIF or WebP).
    static func sniffImage(_ data: Data) -> String? {
        let bytes = [UInt8](data.prefix(12))
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return "image/jpeg" }
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return "image/png" }
        if bytes.starts(with: Array("GIF8".utf8)) { return "image/gif" }
        if bytes.count == 12, bytes.starts(with: Array("RIFF".utf8)), Array(bytes[8..<12]) == Array("WEBP".utf8) {
            return "image/webp"
        }
        return nil
    }
}

/// Media of a received message that this device keeps, so it can be saved later: encrypted
/// attachments (their pointers hold the keys) or a public post's media.
public struct ReceivedMedia: Codable, Sendable, Equatable {
    /// Who sent it, as shown.
    public var sender: String?
    /// When it was received.
    public var receivedAt: Date
    /// End-to-end encrypted attachments.
    public var attachments: [AttachmentPointer]
    /// A public post's media.
    public var media: [PublicMedia]

    /// Creates the value.
    public init(sender: String?, receivedAt: Date = Date(), attachments: [AttachmentPointer] = [], media: [PublicMedia] = []) {
        self.sender = sender
        self.receivedAt = receivedAt
        self.attachments = attachments
        self.media = media
    }

    /// Whether there is nothing to save.
    public var isEmpty: Bool { attachments.isEmpty && media.isEmpty }
}

/// An upload begun and not finished, remembered so that the same file continues where it stopped.
struct PendingUpload: Codable, Sendable, Equatable {
    var path: String
    var size: Int64
    var sha256: BlobHash
    var purpose: UploadPurpose
    var mediaType: String?
    var uploadId: UUID
    var expiresAt: Date
}

extension HeliographClient {
    /// Reads files in pieces of this size: hashing, encrypting and decrypting stay in bounded memory.
    static let fileReadSize = 1 << 20
    /// Received media kept per profile (the oldest are forgotten first).
    static let keptReceivedMedia = 2_000

    /// An HTTP client of this profile's server, authenticated with its token.
    public func httpTransfer() throws -> HTTPTransfer {
        let profile = self.profile
        return try HTTPTransfer(server: profile.server, token: profile.token)
    }

    // MARK: Uploading

    /// Uploads a file as a blob and returns what the server stored.
    ///
    /// The file is hashed and sent in the server's parts, each read from the file at its offset,
    /// so it never sits whole in memory; a part whose connection drops is sent again. An upload
    /// begun earlier for the same file (same path, size and SHA-256), by a process that died or
    /// lost its connection, continues with the parts the server is missing. Public uploads
    /// declare `mediaType`; the server checks it.
    public func upload(
        file: URL, purpose: UploadPurpose, mediaType: String? = nil, partsInFlight: Int = HeliographClient.partsInFlight,
        progress: TransferProgress? = nil
    ) async throws -> BlobDescriptor {
        let size = try Self.fileSize(file)
        let hash = try Self.sha256(of: file)
        let http = try httpTransfer()
        var status: UploadStatus?
        if let pending = try pendingUpload(path: file.path, size: size, sha256: hash, purpose: purpose, mediaType: mediaType) {
            do {
                status = try await http.json("GET", "/v1/uploads/\(pending.uploadId.uuidString)", as: UploadStatus.self)
            } catch let error as HeliographError where error.code == .unknownUpload {
                // Expired or thrown away: start again.
                try forgetUpload(pending.uploadId)
            }
        }
        if status == nil {
            let created = try await http.json(
                "POST", "/v1/uploads",
                body: CreateUploadRequest(size: size, sha256: hash, purpose: purpose, mediaType: mediaType),
                as: UploadStatus.self)
            try rememberUpload(
                PendingUpload(
                    path: file.path, size: size, sha256: hash, purpose: purpose, mediaType: mediaType,
                    uploadId: created.uploadId, expiresAt: created.expiresAt))
            status = created
        }
        guard var current = status else { throw HeliographError(.internalError, "no upload to continue") }
        var sentAgain = false
        var refreshes = 0
        while true {
            try await sendMissingParts(
                of: file, status: current, http: http, partsInFlight: max(1, partsInFlight), progress: progress)
            do {
                let blob = try await http.json(
                    "POST", "/v1/uploads/\(current.uploadId.uuidString)/finish", as: BlobDescriptor.self)
                try forgetUpload(current.uploadId)
                return blob
            } catch let error as HeliographError where error.code == .hashMismatch && !sentAgain {
                // The server dropped every part (a part was damaged on the way): all of them once more.
                logger.notice("upload did not match its hash; sending it again", metadata: ["upload": "\(current.uploadId)"])
                sentAgain = true
            } catch let error as HeliographError where error.code == .uploadIncomplete && refreshes < 2 {
                refreshes += 1
            } catch let error as HeliographError where [.unknownUpload, .unsupportedMedia, .hashMismatch].contains(error.code) {
                // The server threw the upload away (or it cannot succeed with this file).
                try? forgetUpload(current.uploadId)
                throw error
            }
            current = try await http.json("GET", "/v1/uploads/\(current.uploadId.uuidString)", as: UploadStatus.self)
        }
    }

    /// How many parts an upload sends at once by default: each on its own connection, so the
    /// round trip and the server-side write of one part overlap the others'. The client holds at
    /// most this many parts in memory.
    public static let partsInFlight = 4

    /// Sends the parts the server does not hold, a few at a time, each read at its offset.
    private func sendMissingParts(
        of file: URL, status: UploadStatus, http: HTTPTransfer, partsInFlight: Int, progress: TransferProgress?
    ) async throws {
        let received = Set(status.receivedParts)
        func length(of index: Int) -> Int {
            Int(min(Int64(status.partSize), status.size - Int64(index) * Int64(status.partSize)))
        }
        var done = received.filter { $0 < status.partCount }.reduce(Int64(0)) { $0 + Int64(length(of: $1)) }
        progress?(done, status.size)
        let missing = (0..<status.partCount).filter { !received.contains($0) }
        guard !missing.isEmpty else { return }
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        let logger = self.logger
        let path = "/v1/uploads/\(status.uploadId.uuidString)/parts/"
        try await withThrowingTaskGroup(of: Int.self) { group in
            var inFlight = 0
            for index in missing {
                try Task.checkCancellation()
                // Parts are read here, one at a time, and handed to a task that sends them.
                try handle.seek(toOffset: UInt64(index) * UInt64(status.partSize))
                let bytes = try handle.read(upToCount: length(of: index)) ?? Data()
                guard bytes.count == length(of: index) else {
                    throw HeliographError(.badRequest, "\(file.path) changed while it was being uploaded")
                }
                if inFlight == partsInFlight, let sent = try await group.next() {
                    inFlight -= 1
                    done += Int64(sent)
                    progress?(done, status.size)
                }
                group.addTask {
                    var attempt = 0
                    while true {
                        attempt += 1
                        do {
                            _ = try await http.data(
                                "PUT", path + String(index), body: bytes, contentType: "application/octet-stream")
                            return bytes.count
                        } catch let error where attempt < 4 && Self.isTransient(error) {
                            logger.debug(
                                "part retry", metadata: ["part": "\(index)", "attempt": "\(attempt)", "error": "\(error)"])
                            try await Task.sleep(for: .milliseconds(300 * attempt))
                        }
                    }
                }
                inFlight += 1
            }
            while let sent = try await group.next() {
                done += Int64(sent)
                progress?(done, status.size)
            }
        }
    }

    /// Whether retrying the same request may help: the connection failed or the server was busy.
    static func isTransient(_ error: any Error) -> Bool {
        if error is ConnectionClosed || error is ConnectionFailed { return true }
        if let error = error as? HeliographError { return error.code == .temporarilyUnavailable }
        return false
    }

    // MARK: Downloading

    /// Downloads a blob into `destination`, streaming it to `destination.part` first.
    ///
    /// A `.part` file left by an earlier attempt is continued with a range request; a server
    /// that answers with the whole blob instead starts it over. The result must hash to `blob`:
    /// a continued download that does not (the `.part` file was damaged, or belongs to other
    /// bytes) is done once more from the start; otherwise the file is deleted and
    /// `hash_mismatch` thrown. Only a checked file is renamed into place.
    public func download(blob: BlobHash, to destination: URL, progress: TransferProgress? = nil) async throws {
        let partial = destination.appendingPathExtension("part")
        let http = try httpTransfer()
        var resumed = FileManager.default.fileExists(atPath: partial.path)
        while true {
            var attempt = 0
            while true {
                attempt += 1
                do {
                    try await downloadOnce(blob: blob, into: partial, http: http, progress: progress)
                    break
                } catch let error where attempt < 4 && Self.isTransient(error) {
                    // What arrived stays in the .part file: the next attempt asks for the rest.
                    logger.debug(
                        "download retry", metadata: ["blob": "\(blob)", "attempt": "\(attempt)", "error": "\(error)"])
                    try await Task.sleep(for: .milliseconds(300 * attempt))
                }
            }
            if try Self.sha256(of: partial) == blob { break }
            try? FileManager.default.removeItem(at: partial)
            guard resumed else {
                throw HeliographError(.hashMismatch, "the downloaded blob does not hash to \(blob.hex); it was deleted")
            }
            logger.notice("a continued download did not match its hash; downloading it again", metadata: ["blob": "\(blob)"])
            resumed = false
        }
        guard rename(partial.path, destination.path) == 0 else {
            throw HeliographError(
                .internalError, "cannot move the download to \(destination.path): \(String(cString: strerror(errno)))")
        }
    }

    private func downloadOnce(blob: BlobHash, into partial: URL, http: HTTPTransfer, progress: TransferProgress?) async throws {
        let manager = FileManager.default
        if !manager.fileExists(atPath: partial.path) { _ = manager.createFile(atPath: partial.path, contents: nil) }
        let handle = try FileHandle(forUpdating: partial)
        defer { try? handle.close() }
        var have = Int64(try handle.seekToEnd())
        var total: Int64 = 0
        var complete = false
        let headers = have > 0 ? ["Range": "bytes=\(have)-"] : [:]
        try await http.stream(
            "GET", "/v1/blobs/\(blob.hex)", headers: headers, accepting: [416],
            onResponse: { response in
                switch response.status {
                case 206:
                    // `Content-Range: bytes START-END/TOTAL`: it must continue exactly where the file ends.
                    let range = response.header("content-range") ?? ""
                    let numbers = range.split(whereSeparator: { !$0.isNumber }).compactMap { Int64($0) }
                    guard numbers.count == 3, numbers[0] == have else {
                        throw HeliographError(.badRequest, "the server answered a range request with '\(range)'")
                    }
                    total = numbers[2]
                case 416:
                    // Nothing after the end: the .part file may already be whole (checked by hash).
                    complete = true
                    total = have
                default:
                    // The whole blob: start over.
                    try handle.truncate(atOffset: 0)
                    have = 0
                    total = response.contentLength ?? 0
                }
                progress?(have, total)
            },
            onBody: { piece in
                guard !complete else { return }
                try handle.write(contentsOf: piece)
                have += Int64(piece.count)
                progress?(have, max(total, have))
            })
        try handle.synchronize()
    }

    // MARK: Encrypted attachments

    /// Encrypts a file with a fresh key (streaming, into a temporary file), uploads the
    /// ciphertext with purpose `encrypted`, and returns the pointer to send inside an encrypted
    /// message. `thumbnail` (a small JPEG, PNG, GIF or WebP image) travels encrypted inside it.
    public func uploadAttachment(
        file: URL, mediaType: String? = nil, thumbnail: Data? = nil, progress: TransferProgress? = nil
    ) async throws -> AttachmentPointer {
        let size = try Self.fileSize(file)
        let sealedThumbnail = try thumbnail.map { image -> AttachmentThumbnail in
            guard let type = FileMediaType.sniffImage(image) else {
                throw HeliographError(.badRequest, "the thumbnail is not a JPEG, PNG, GIF or WebP image")
            }
            return try AttachmentThumbnail(sealing: image, mediaType: type)
        }
        let ciphertext = FileManager.default.temporaryDirectory.appendingPathComponent(
            "heliograph-attachment-\(UUID().uuidString).enc")
        defer { try? FileManager.default.removeItem(at: ciphertext) }
        let seal = try Self.encrypt(file, size: size, into: ciphertext)
        let blob = try await upload(file: ciphertext, purpose: .encrypted, progress: progress)
        guard blob.sha256.bytes == seal.digest else {
            throw HeliographError(.hashMismatch, "the server stored the attachment under another hash than its digest")
        }
        return AttachmentPointer(
            seal: seal, mediaType: mediaType ?? FileMediaType.of(file) ?? "application/octet-stream",
            fileName: file.lastPathComponent, thumbnail: sealedThumbnail, blobHash: blob.sha256.hex)
    }

    /// Sends a file end-to-end encrypted to every listed device of `username` (and this
    /// account's other devices): the ciphertext is uploaded, and the message carries its key,
    /// digest, sizes, media type, file name and optional thumbnail, with `caption` as its text.
    /// The message names the blob to the server, so the recipient may download it.
    @discardableResult
    public func sendAttachment(
        file: URL, to username: String, caption: String?, mediaType: String? = nil, thumbnail: Data? = nil,
        progress: TransferProgress? = nil
    ) async throws -> EncryptedSend {
        let pointer = try await uploadAttachment(file: file, mediaType: mediaType, thumbnail: thumbnail, progress: progress)
        return try await sendEncrypted(text: caption ?? "", control: nil, attachments: [pointer], to: username)
    }

    /// Downloads an encrypted attachment (resumably, into a hidden file beside `destination`),
    /// decrypts it as a stream, checking its digest, every chunk and its size, and only then
    /// puts the plaintext at `destination`.
    public func download(attachment: AttachmentPointer, to destination: URL, progress: TransferProgress? = nil) async throws {
        let blob = try Self.blobHash(of: attachment)
        let directory = destination.deletingLastPathComponent()
        // Named by the blob, so an interrupted download continues on the next attempt.
        let ciphertext = directory.appendingPathComponent(".\(destination.lastPathComponent).\(blob.hex.prefix(16)).download")
        try await download(blob: blob, to: ciphertext, progress: progress)
        defer { try? FileManager.default.removeItem(at: ciphertext) }
        let temporary = directory.appendingPathComponent(".\(destination.lastPathComponent).\(UUID().uuidString).tmp")
        do {
            try Self.decrypt(ciphertext, with: attachment, into: temporary)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
        guard rename(temporary.path, destination.path) == 0 else {
            try? FileManager.default.removeItem(at: temporary)
            throw HeliographError(.internalError, "cannot write \(destination.path): \(String(cString: strerror(errno)))")
        }
    }

    /// The blob an attachment pointer names.
    static func blobHash(of pointer: AttachmentPointer) throws -> BlobHash {
        guard let hash = BlobHash(hex: pointer.blobHash) else {
            throw HeliographError(.badRequest, "the attachment names no valid blob ('\(pointer.blobHash.prefix(70))')")
        }
        return hash
    }

    // MARK: Chats

    /// Posts files to a chat with `caption` as the text.
    ///
    /// In a public group or channel each file is uploaded with purpose `public` and its media
    /// type (`mediaType`, else told from its extension), and the server checks it, measures
    /// images and makes thumbnails. In a private group the files are encrypted attachments
    /// inside the sender-key encrypted post instead.
    @discardableResult
    public func postMedia(
        _ files: [URL], caption: String?, in chat: ChatID, mediaType: String? = nil, progress: TransferProgress? = nil
    ) async throws -> PostResponse {
        guard !files.isEmpty else { throw HeliographError(.badRequest, "no files to post") }
        let total = try files.reduce(Int64(0)) { $0 + (try Self.fileSize($1)) }
        var before: Int64 = 0
        let kind = try await chatInfo(chat).chat.kind
        if kind == .privateGroup {
            var pointers: [AttachmentPointer] = []
            for file in files {
                let offset = before
                let plain = try Self.fileSize(file)
                // Progress in plaintext bytes: the ciphertext is a little larger.
                let ciphertext = Int64(AttachmentCipher.ciphertextSize(forPlaintextSize: UInt64(plain)))
                let scaled: TransferProgress? = progress.map { report in
                    { @Sendable done, _ in report(offset + done * plain / max(ciphertext, 1), total) }
                }
                pointers.append(try await uploadAttachment(file: file, mediaType: mediaType, progress: scaled))
                before += plain
            }
            return try await post(caption ?? "", to: chat, attachments: pointers)
        }
        var references: [MediaReference] = []
        for file in files {
            guard let type = mediaType ?? FileMediaType.of(file) else {
                throw HeliographError(
                    .unsupportedMedia,
                    "cannot tell the media type of \(file.lastPathComponent); public chats take "
                        + FileMediaType.byExtension.keys.sorted().joined(separator: ", "))
            }
            let offset = before
            let shifted: TransferProgress? = progress.map { report in { @Sendable done, _ in report(offset + done, total) } }
            let blob = try await upload(file: file, purpose: .public, mediaType: type, progress: shifted)
            references.append(MediaReference(blob: blob.sha256, fileName: file.lastPathComponent))
            before += try Self.fileSize(file)
        }
        var request = PostRequest(chatId: chat, messageId: .random(), text: caption)
        request.media = references
        return try await call(.post, request, as: PostResponse.self)
    }

    // MARK: Remembered media

    /// Remembers a received message's media under `reference` (a message id, or `CHAT#SEQ`),
    /// in a file beside the profile (sealed with the profile's passphrase: it holds keys).
    public func rememberMedia(_ media: ReceivedMedia, for reference: String) throws {
        guard !media.isEmpty else { return }
        var all = try rememberedMedia()
        all[reference] = media
        if all.count > Self.keptReceivedMedia {
            let oldest = all.sorted { $0.value.receivedAt < $1.value.receivedAt }.prefix(all.count - Self.keptReceivedMedia)
            for (key, _) in oldest { all[key] = nil }
        }
        try writeSidecar(all, suffix: "media", purpose: "received media")
    }

    /// The media remembered under `reference`, if any.
    public func rememberedMedia(for reference: String) throws -> ReceivedMedia? {
        try rememberedMedia()[reference]
    }

    private func rememberedMedia() throws -> [String: ReceivedMedia] {
        try readSidecar([String: ReceivedMedia].self, suffix: "media", purpose: "received media") ?? [:]
    }

    // MARK: Pending uploads

    private func pendingUpload(
        path: String, size: Int64, sha256: BlobHash, purpose: UploadPurpose, mediaType: String?
    ) throws -> PendingUpload? {
        try pendingUploads().first {
            $0.path == path && $0.size == size && $0.sha256 == sha256 && $0.purpose == purpose && $0.mediaType == mediaType
                && $0.expiresAt > Date()
        }
    }

    private func rememberUpload(_ upload: PendingUpload) throws {
        let now = Date()
        var all = try pendingUploads().filter { $0.expiresAt > now && $0.path != upload.path }
        all.append(upload)
        try writeSidecar(all, suffix: "uploads", purpose: "pending uploads")
    }

    private func forgetUpload(_ id: UUID) throws {
        let all = try pendingUploads()
        let kept = all.filter { $0.uploadId != id && $0.expiresAt > Date() }
        guard kept.count != all.count else { return }
        try writeSidecar(kept, suffix: "uploads", purpose: "pending uploads")
    }

    private func pendingUploads() throws -> [PendingUpload] {
        try readSidecar([PendingUpload].self, suffix: "uploads", purpose: "pending uploads") ?? []
    }

    /// `NAME.SUFFIX.json` beside the profile `NAME.json`.
    private func sidecarFile(_ suffix: String) throws -> URL {
        try store.file(for: profileName).deletingPathExtension().appendingPathExtension(suffix).appendingPathExtension("json")
    }

    private func readSidecar<Value: Decodable>(_ type: Value.Type, suffix: String, purpose: String) throws -> Value? {
        let file = try sidecarFile(suffix)
        guard let data = FileManager.default.contents(atPath: file.path) else { return nil }
        let plain = try PassphraseSealer.plainContent(
            of: data, sealer: store.sealer, purpose: purpose, file: file, what: "the \(purpose) file")
        do {
            return try JSONDecoder().decode(Value.self, from: plain)
        } catch {
            throw HeliographError(.badRequest, "\(file.path) is damaged (\(error)); delete it")
        }
    }

    private func writeSidecar(_ value: some Encodable, suffix: String, purpose: String) throws {
        let file = try sidecarFile(suffix)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(value)
        try writePrivateFile(try store.sealer?.seal(data, purpose: purpose) ?? data, to: file)
    }

    // MARK: Files

    static func fileSize(_ file: URL) throws -> Int64 {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: file.path)
        } catch {
            throw HeliographError(.badRequest, "cannot read \(file.path): no such file")
        }
        guard (attributes[.type] as? FileAttributeType) != .typeDirectory else {
            throw HeliographError(.badRequest, "\(file.path) is a directory, not a file")
        }
        return (attributes[.size] as? NSNumber)?.int64Value ?? 0
    }

    /// The SHA-256 of a file, read in pieces.
    static func sha256(of file: URL) throws -> BlobHash {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        var hasher = SHA256()
        while let piece = try handle.read(upToCount: fileReadSize), !piece.isEmpty { hasher.update(data: piece) }
        guard let hash = BlobHash(bytes: Data(hasher.finalize())) else {
            throw HeliographError(.internalError, "SHA-256 gave a digest that is not 32 bytes")
        }
        return hash
    }

    /// Encrypts `file` (of `size` bytes) into `output` as a stream and returns the seal.
    static func encrypt(_ file: URL, size: Int64, into output: URL) throws -> AttachmentSeal {
        var encryptor = try AttachmentEncryptor(plaintextSize: UInt64(size))
        let input = try FileHandle(forReadingFrom: file)
        defer { try? input.close() }
        _ = FileManager.default.createFile(atPath: output.path, contents: nil, attributes: [.posixPermissions: 0o600])
        let writer = try FileHandle(forWritingTo: output)
        defer { try? writer.close() }
        var read: Int64 = 0
        while read < size, let piece = try input.read(upToCount: Int(min(Int64(fileReadSize), size - read))), !piece.isEmpty {
            read += Int64(piece.count)
            try writer.write(contentsOf: try encryptor.update(piece))
        }
        guard read == size else { throw HeliographError(.badRequest, "\(file.path) changed while it was being encrypted") }
        let (last, seal) = try encryptor.finish()
        try writer.write(contentsOf: last)
        return seal
    }

    /// Decrypts `ciphertext` under `pointer` into `output` as a stream; complete only if it returns.
    static func decrypt(_ ciphertext: URL, with pointer: AttachmentPointer, into output: URL) throws {
        var decryptor = try pointer.decryptor()
        let input = try FileHandle(forReadingFrom: ciphertext)
        defer { try? input.close() }
        _ = FileManager.default.createFile(atPath: output.path, contents: nil, attributes: [.posixPermissions: 0o600])
        let writer = try FileHandle(forWritingTo: output)
        defer { try? writer.close() }
        while let piece = try input.read(upToCount: fileReadSize), !piece.isEmpty {
            try writer.write(contentsOf: try decryptor.update(piece))
        }
        try writer.write(contentsOf: try decryptor.finish())
        try writer.synchronize()
    }
}

extension HeliographClient {
    /// Tells the server that a message this account sent, deleted for everyone, no longer holds
    /// its attachments (in a private group: `chat`; one-to-one: nil), so their blobs can be
    /// collected. Returns how many references were released.
    @discardableResult
    public func releaseAttachments(of messageID: MessageID, in chat: ChatID? = nil) async throws -> Int {
        try await httpTransfer().json(
            "POST", "/v1/attachments/release", body: ReleaseAttachmentsRequest(messageId: messageID, chatId: chat),
            as: ReleaseAttachmentsResponse.self
        ).released
    }
}
