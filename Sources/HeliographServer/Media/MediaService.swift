import Foundation
import HeliographCore
import HeliographMedia
import HeliographProtocol
import HeliographStore
import Logging

/// Limits of uploads and blobs, from the server configuration.
public struct MediaLimits: Sendable {
    /// The largest file one upload may declare.
    public var maxUploadBytes: Int64 = 2 * 1024 * 1024 * 1024
    /// The bytes one account may upload per ``quotaWindow``; 0 for no quota.
    public var quotaBytes: Int64 = 20 * 1024 * 1024 * 1024
    /// The window of the quota.
    public var quotaWindow: Duration = .seconds(24 * 3600)
    /// The length of every upload part but the last.
    public var partSize: Int = 512 * 1024
    /// How long an upload may stay unfinished, and how long a finished one keeps its blob for
    /// its uploader before a message must refer to it.
    public var uploadLifetime: Duration = .seconds(24 * 3600)
    /// How long a blob no reference holds any more is kept before it is deleted.
    public var grace: Duration = .seconds(3600)
    /// How long a one-to-one message keeps its attachments readable (the inbox retention).
    public var directRetention: Duration = .seconds(30 * 24 * 3600)
    /// The most attachments one message may name.
    public var maxAttachmentsPerMessage: Int = 32

    /// The defaults.
    public init() {}
}

/// Uploads, downloads and the references that decide who may read a blob and how long it lives.
///
/// Access: a blob is readable by its uploader (while its upload reference lives), by the sender
/// and the recipient account of a one-to-one message that names it, and by whoever may read a
/// chat whose post names it. Anyone else is told `unknown_blob`, as for a blob that does not exist,
/// so hashes cannot be probed.
public struct MediaService: Sendable {
    let storage: any HeliographStorage
    let clock: any WallClock
    let limits: MediaLimits
    /// New uploads per account.
    let uploadLimiter: RateLimiter
    /// Checks public media and makes thumbnails.
    var mediaCheck = PublicMediaCheck()
    let logger = Logger(label: "heliograph.media")

    /// Creates the service over `storage`'s blob and reference stores.
    public init(storage: any HeliographStorage, clock: any WallClock, limits: MediaLimits, uploadLimiter: RateLimiter) {
        self.storage = storage
        self.clock = clock
        self.limits = limits
        self.uploadLimiter = uploadLimiter
    }

    // MARK: Uploads

    /// `POST /v1/uploads`.
    public func createUpload(_ request: CreateUploadRequest, by caller: AuthenticatedDevice) async throws -> UploadStatus {
        guard request.size >= 0 else { throw HeliographError(.badRequest, "the size cannot be negative") }
        guard request.size <= limits.maxUploadBytes else {
            throw HeliographError(
                .payloadTooLarge,
                "the file is \(ByteCount.text(request.size)); the limit is \(ByteCount.text(limits.maxUploadBytes)) per file")
        }
        var label = request.purpose.rawValue
        switch request.purpose {
        case .encrypted:
            guard request.mediaType == nil else {
                throw HeliographError(
                    .badRequest,
                    "an encrypted upload takes no 'mediaType': the type travels inside the end-to-end encrypted message")
            }
        case .public:
            guard let declared = request.mediaType else {
                throw HeliographError(.badRequest, "a public upload needs 'mediaType', such as image/jpeg")
            }
            // Refused before any byte is sent: a type the server cannot check, an image too large to decode.
            label += " " + (try mediaCheck.checkDeclaration(declaredType: declared, byteCount: Int(request.size)))
        }
        try uploadLimiter.take(caller.accountID.description, what: "uploads")
        let now = clock.now().wholeMilliseconds
        let used = try await storage.blobReferences.quotaBytes(of: caller.accountID, since: now - limits.quotaWindow.timeInterval)
        guard limits.quotaBytes <= 0 || used + request.size <= limits.quotaBytes else {
            throw HeliographError(
                .quotaExceeded,
                "you uploaded \(ByteCount.text(used)) in the last \(Int(limits.quotaWindow.timeInterval / 3600)) hours; "
                    + "the quota is \(ByteCount.text(limits.quotaBytes)) and this file needs \(ByteCount.text(request.size))")
        }
        let record = UploadRecord(
            id: .random(), owner: caller.accountID, size: request.size, sha256: request.sha256, partSize: limits.partSize,
            createdAt: now, expiresAt: now + limits.uploadLifetime.timeInterval, label: label)
        // The reference comes first: it counts against the quota, and it keeps garbage collection
        // off a stored blob with the declared hash while this upload is in flight.
        try await storage.blobReferences.add([
            BlobReference(
                blob: request.sha256, holder: .upload(record.id), reader: .account(caller.accountID),
                quotaBytes: request.size, createdAt: now, expiresAt: record.expiresAt)
        ])
        try await storage.blobs.createUpload(record)
        return status(record, received: [])
    }

    /// `GET /v1/uploads/{id}`.
    public func status(of id: UploadID, by caller: AuthenticatedDevice) async throws -> UploadStatus {
        let record = try await ownUpload(id, caller)
        return status(record, received: try await storage.blobs.receivedParts(of: id))
    }

    /// `PUT /v1/uploads/{id}/parts/{index}`.
    public func writePart(
        _ bytes: Data, index: Int, of id: UploadID, by caller: AuthenticatedDevice
    ) async throws -> UploadPartResponse {
        _ = try await ownUpload(id, caller)
        try await storage.blobs.writePart(upload: id, index: index, bytes: bytes)
        return UploadPartResponse(index: index, receivedCount: try await storage.blobs.receivedParts(of: id).count)
    }

    /// `POST /v1/uploads/{id}/finish`: checks size and hash (and, for public media, the type),
    /// then the blob exists.
    public func finish(_ id: UploadID, by caller: AuthenticatedDevice) async throws -> BlobDescriptor {
        let record = try await ownUpload(id, caller)
        let now = clock.now().wholeMilliseconds
        let info = try await storage.blobs.finish(upload: id, at: now)
        try await storage.blobReferences.register(info.hash, at: now)
        guard let mediaType = Self.publicMediaType(of: record) else {
            return BlobDescriptor(sha256: info.hash, size: info.size)
        }
        do {
            let facts = try await checkedMedia(info, declared: mediaType, record: record, at: now)
            return BlobDescriptor(
                sha256: info.hash, size: info.size, mediaType: facts.mediaType, width: facts.width, height: facts.height,
                thumbnail: facts.thumbnail)
        } catch let error as HeliographError where error.code == .unsupportedMedia {
            // The upload is thrown away; the blob goes at once unless something else holds it
            // (the same bytes sent by someone else stay untouched).
            try await storage.blobs.discardUpload(id: id)
            try await storage.blobReferences.release(.upload(id), expiringAt: now)
            try await deleteIfUnreferenced(info.hash, at: now)
            throw error
        }
    }

    /// `DELETE /v1/uploads/{id}`.
    public func discard(_ id: UploadID, by caller: AuthenticatedDevice) async throws {
        _ = try await ownUpload(id, caller)
        try await storage.blobs.discardUpload(id: id)
        try await storage.blobReferences.release(.upload(id), expiringAt: clock.now() + limits.grace.timeInterval)
    }

    // MARK: Downloads

    /// The blob and its media type, when `caller` may read it; `unknown_blob` otherwise.
    public func readable(_ hash: BlobHash, by caller: AuthenticatedDevice) async throws -> (BlobInfo, String?) {
        guard try await mayRead(hash, caller, at: clock.now()) else {
            throw HeliographError(.unknownBlob, "there is no blob \(hash.hex) that you may read")
        }
        guard let info = try await storage.blobs.blob(hash) else {
            throw HeliographError(.unknownBlob, "there is no blob \(hash.hex) that you may read")
        }
        return (info, try await storage.blobReferences.media(hash)?.mediaType)
    }

    /// The blob's bytes, or those of `range`.
    public func read(_ hash: BlobHash, range: ClosedRange<Int64>?) -> AsyncThrowingStream<Data, any Error> {
        storage.blobs.read(hash, range: range)
    }

    // MARK: References from messages

    /// A one-to-one message names attachments: checks the sender may read each and lets the
    /// recipient account read them for the inbox retention. Called before the message is
    /// stored, so an acknowledged message never names a blob nothing keeps.
    public func attach(
        _ blobs: [BlobHash], toDirectMessage messageID: MessageID, from caller: AuthenticatedDevice, to recipient: AccountID
    ) async throws {
        guard !blobs.isEmpty else { return }
        try await checkAttachable(blobs, by: caller)
        let now = clock.now().wholeMilliseconds
        let holder = BlobHolder.directMessage(sender: caller.accountID, messageID: messageID)
        let expiry = now + limits.directRetention.timeInterval
        try await storage.blobReferences.add(
            blobs.flatMap { blob in
                [caller.accountID, recipient].map { account in
                    BlobReference(blob: blob, holder: holder, reader: .account(account), createdAt: now, expiresAt: expiry)
                }
            })
    }

    /// A private-group post names attachment ciphertexts: the chat's members may read them while
    /// the post holds them.
    public func attach(
        _ blobs: [BlobHash], toPostOf messageID: MessageID, in chat: ChatID, by caller: AuthenticatedDevice
    )
        async throws
    {
        guard !blobs.isEmpty else { return }
        try await checkAttachable(blobs, by: caller)
        try await addChatReferences(blobs, chat: chat, sender: caller.accountID, messageID: messageID)
    }

    /// A public post names media: checks the caller may read each and that it was checked as
    /// public media, and returns what the post shows. The chat's readers may then read the media
    /// and its thumbnail.
    public func attachPublicMedia(
        _ references: [MediaReference], toPostOf messageID: MessageID, in chat: ChatID, by caller: AuthenticatedDevice
    ) async throws -> [PublicMedia] {
        guard !references.isEmpty else { return [] }
        try await checkAttachable(references.map(\.blob), by: caller)
        var media: [PublicMedia] = []
        for reference in references {
            if let name = reference.fileName, name.isEmpty || name.utf8.count > 255 || name.contains("/") {
                throw HeliographError(.badRequest, "a file name must be 1-255 bytes without '/'")
            }
            guard let facts = try await storage.blobReferences.media(reference.blob),
                let info = try await storage.blobs.blob(reference.blob)
            else {
                throw HeliographError(
                    .unsupportedMedia,
                    "blob \(reference.blob.hex) was not uploaded as public media: upload it with purpose 'public'")
            }
            media.append(
                PublicMedia(
                    blob: reference.blob, mediaType: facts.mediaType, size: info.size, width: facts.width,
                    height: facts.height, thumbnail: facts.thumbnail, fileName: reference.fileName))
        }
        try await addChatReferences(Self.blobs(of: media), chat: chat, sender: caller.accountID, messageID: messageID)
        return media
    }

    /// A forward copies media into another chat: its readers may read it too.
    func attachForwarded(
        _ media: [PublicMedia], toPostOf messageID: MessageID, in chat: ChatID, by sender: AccountID
    )
        async throws
    {
        try await addChatReferences(Self.blobs(of: media), chat: chat, sender: sender, messageID: messageID)
    }

    /// The blobs a post's media consists of: each file and its thumbnail, which readers get alike.
    static func blobs(of media: [PublicMedia]) -> [BlobHash] {
        media.flatMap { [$0.blob] + ($0.thumbnail.map { [$0] } ?? []) }
    }

    /// A post was deleted for everyone: its references expire after the grace period.
    func releasePost(of messageID: MessageID, by sender: AccountID, in chat: ChatID) async throws {
        try await storage.blobReferences.release(
            .chatPost(chat, sender: sender, messageID: messageID), expiringAt: clock.now() + limits.grace.timeInterval)
    }

    /// `POST /v1/attachments/release`: the sender deleted its message for everyone.
    public func release(
        _ request: ReleaseAttachmentsRequest, by caller: AuthenticatedDevice
    ) async throws
        -> ReleaseAttachmentsResponse
    {
        let holder: BlobHolder =
            request.chatId.map { .chatPost($0, sender: caller.accountID, messageID: request.messageId) }
            ?? .directMessage(sender: caller.accountID, messageID: request.messageId)
        let released = try await storage.blobReferences.release(holder, expiringAt: clock.now() + limits.grace.timeInterval)
        return ReleaseAttachmentsResponse(released: released)
    }

    // MARK: Garbage collection

    /// One collection pass: expired uploads and references go, then blobs that nothing has held
    /// for the grace period. Returns how many blobs were deleted.
    @discardableResult
    public func collectGarbage(batch: Int = 500) async throws -> Int {
        let now = clock.now()
        try await storage.blobs.deleteExpiredUploads(before: now)
        try await storage.blobReferences.deleteExpiredReferences(before: now)
        var deleted = 0
        let candidates = try await storage.blobReferences.unreferencedBlobs(
            registeredBefore: now - limits.grace.timeInterval, now: now, limit: batch)
        for blob in candidates where try await deleteIfUnreferenced(blob, at: now) { deleted += 1 }
        return deleted
    }

    // MARK: Helpers

    private func ownUpload(_ id: UploadID, _ caller: AuthenticatedDevice) async throws -> UploadRecord {
        // Another account's upload is answered as unknown: ids cannot be probed.
        guard let record = try await storage.blobs.upload(id: id), record.owner == caller.accountID else {
            throw HeliographError(.unknownUpload, "there is no upload \(id) of yours (it may have expired)")
        }
        return record
    }

    private func status(_ record: UploadRecord, received: [Int]) -> UploadStatus {
        UploadStatus(
            uploadId: record.id.rawValue, size: record.size, sha256: record.sha256,
            purpose: record.label.hasPrefix(UploadPurpose.public.rawValue) ? .public : .encrypted,
            partSize: record.partSize, partCount: record.partCount, receivedParts: received, expiresAt: record.expiresAt)
    }

    /// The declared media type of a public upload (kept in its label), nil for an encrypted one.
    static func publicMediaType(of record: UploadRecord) -> String? {
        let prefix = UploadPurpose.public.rawValue + " "
        guard record.label.hasPrefix(prefix) else { return nil }
        return String(record.label.dropFirst(prefix.count))
    }

    /// Whether a live reference lets `caller` read the blob: one naming the caller's account, or a
    /// chat the caller may read. The readers are walked in pages, so a blob forwarded into many
    /// chats is still found through the last of them.
    private func mayRead(_ blob: BlobHash, _ caller: AuthenticatedDevice, at time: Date) async throws -> Bool {
        let own = BlobReader.account(caller.accountID)
        var after: String?
        while true {
            let page = try await storage.blobReferences.readers(of: blob, liveAt: time, after: after, limit: 200)
            if page.contains(own) { return true }
            for case .chat(let chat) in page where try await chatReadable(chat, caller) { return true }
            guard page.count == 200, let last = page.last else { return false }
            after = last.key
        }
    }

    /// Whether `caller` may read the chat: its members, and anyone for a chat with a public name
    /// (the rule by which the chat itself is visible).
    private func chatReadable(_ id: ChatID, _ caller: AuthenticatedDevice) async throws -> Bool {
        guard let chat = try await storage.chats.chat(id: id) else { return false }
        if chat.username != nil { return true }
        return try await storage.chats.member(of: id, account: caller.accountID) != nil
    }

    private func checkAttachable(_ blobs: [BlobHash], by caller: AuthenticatedDevice) async throws {
        guard blobs.count <= limits.maxAttachmentsPerMessage else {
            throw HeliographError(
                .badRequest, "a message may name at most \(limits.maxAttachmentsPerMessage) attachments, not \(blobs.count)")
        }
        for blob in Set(blobs) { _ = try await readable(blob, by: caller) }
    }

    private func addChatReferences(_ blobs: [BlobHash], chat: ChatID, sender: AccountID, messageID: MessageID) async throws {
        let now = clock.now().wholeMilliseconds
        let holder = BlobHolder.chatPost(chat, sender: sender, messageID: messageID)
        try await storage.blobReferences.add(
            Set(blobs).map { BlobReference(blob: $0, holder: holder, reader: .chat(chat), createdAt: now) })
    }

    /// Checks a finished public upload (once per blob: identical bytes uploaded again reuse the
    /// facts) and stores an image's thumbnail as its own blob.
    private func checkedMedia(
        _ info: BlobInfo, declared: String, record: UploadRecord, at now: Date
    ) async throws -> StoredMediaInfo {
        if let known = try await storage.blobReferences.media(info.hash), known.mediaType == declared {
            if let thumbnail = known.thumbnail { try await holdForUploader(thumbnail, record) }
            return known
        }
        let facts: PublicMediaFacts
        if PublicMediaCheck.isImage(declared) {
            // The declared size was checked against the image limit when the upload was created,
            // and the blob has exactly that size.
            let bytes = try await storage.blobs.contents(info.hash)
            let check = mediaCheck
            // Decoding is CPU work: off the cooperative pool's threads, as file I/O is.
            facts = try await onDispatchThread(qos: .utility) { try check.check(declaredType: declared, bytes: bytes) }
        } else {
            let head =
                info.size == 0
                ? Data() : try await storage.blobs.contents(info.hash, range: 0...Int64(PublicMediaCheck.headLength - 1))
            facts = try mediaCheck.check(declaredType: declared, head: head)
        }
        var thumbnailHash: BlobHash?
        if let thumbnail = facts.thumbnail {
            let hash = try await storeSmallBlob(thumbnail, owner: record.owner, at: now)
            try await storage.blobReferences.recordMedia(StoredMediaInfo(blob: hash, mediaType: "image/jpeg"))
            try await holdForUploader(hash, record)
            thumbnailHash = hash
        }
        let stored = StoredMediaInfo(
            blob: info.hash, mediaType: facts.mediaType, width: facts.width, height: facts.height, thumbnail: thumbnailHash)
        try await storage.blobReferences.recordMedia(stored)
        return stored
    }

    /// The uploader may read a thumbnail as long as it may read the image's upload.
    private func holdForUploader(_ blob: BlobHash, _ record: UploadRecord) async throws {
        try await storage.blobReferences.add([
            BlobReference(
                blob: blob, holder: .upload(record.id), reader: .account(record.owner), createdAt: record.createdAt,
                expiresAt: record.expiresAt)
        ])
    }

    /// Stores a small server-made blob (a thumbnail) through the same checked upload path.
    private func storeSmallBlob(_ data: Data, owner: AccountID, at now: Date) async throws -> BlobHash {
        let hash = BlobHash.of(data)
        let record = UploadRecord(
            id: .random(), owner: owner, size: Int64(data.count), sha256: hash, partSize: max(data.count, 1),
            createdAt: now, expiresAt: now + 3600, label: "thumbnail")
        try await storage.blobs.createUpload(record)
        if !data.isEmpty { try await storage.blobs.writePart(upload: record.id, index: 0, bytes: data) }
        _ = try await storage.blobs.finish(upload: record.id, at: now)
        try await storage.blobs.discardUpload(id: record.id)
        try await storage.blobReferences.register(hash, at: now)
        return hash
    }

    /// Deletes a blob nothing holds at `time`; false when something does.
    @discardableResult
    private func deleteIfUnreferenced(_ blob: BlobHash, at time: Date) async throws -> Bool {
        // Checked again right before deleting: a reference made since the candidate list was
        // read keeps the blob.
        guard try await storage.blobReferences.references(to: blob, liveAt: time, limit: 1).isEmpty else { return false }
        try await storage.blobs.delete(blob)
        try await storage.blobReferences.forget(blob)
        logger.debug("deleted an unreferenced blob", metadata: ["blob": "\(blob.hex)"])
        return true
    }
}
