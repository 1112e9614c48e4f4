import Foundation
import HeliographCore

/// What keeps a blob alive: an upload, a one-to-one message or a chat post.
public enum BlobHolder: Hashable, Sendable, CustomStringConvertible {
    /// An upload in flight or recently finished: its uploader may still send the blob.
    case upload(UploadID)
    /// A one-to-one message, named by its sender and the sender's message id.
    case directMessage(sender: AccountID, messageID: MessageID)
    /// A post of a group or channel, named by its chat, its sender and the sender's message id
    /// (known before the post is stored, so the reference can be made first).
    case chatPost(ChatID, sender: AccountID, messageID: MessageID)

    /// The stored form, unique per holder: `upload:<id>`, `direct:<account>:<message id>`,
    /// `chat:<chat>:<account>:<message id>`.
    public var key: String {
        switch self {
        case .upload(let id): "upload:\(id)"
        case .directMessage(let sender, let messageID): "direct:\(sender):\(messageID)"
        case .chatPost(let chat, let sender, let messageID): "chat:\(chat):\(sender):\(messageID)"
        }
    }

    public var description: String { key }

    /// Parses the stored form; nil for anything else.
    public init?(key: String) {
        let parts = key.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
        switch (parts.first, parts.count) {
        case ("upload", 2):
            guard let id = UploadID(parts[1]) else { return nil }
            self = .upload(id)
        case ("direct", 3):
            guard let sender = AccountID(parts[1]), let messageID = try? MessageID(validating: parts[2]) else { return nil }
            self = .directMessage(sender: sender, messageID: messageID)
        case ("chat", 4):
            guard let chat = ChatID(parts[1]), let sender = AccountID(parts[2]),
                let messageID = try? MessageID(validating: parts[3])
            else { return nil }
            self = .chatPost(chat, sender: sender, messageID: messageID)
        default:
            return nil
        }
    }
}

/// Who may read a blob because of one reference.
public enum BlobReader: Hashable, Sendable {
    /// One account.
    case account(AccountID)
    /// Whoever may read the chat.
    case chat(ChatID)

    /// The stored form: `a:<account>` or `c:<chat>`.
    public var key: String {
        switch self {
        case .account(let account): "a:\(account)"
        case .chat(let chat): "c:\(chat)"
        }
    }

    /// Parses the stored form; nil for anything else.
    public init?(key: String) {
        let rest = String(key.dropFirst(2))
        if key.hasPrefix("a:"), let account = AccountID(rest) {
            self = .account(account)
        } else if key.hasPrefix("c:"), let chat = ChatID(rest) {
            self = .chat(chat)
        } else {
            return nil
        }
    }
}

/// One reason a blob is kept, and who may read it because of it.
public struct BlobReference: Hashable, Sendable {
    /// The blob.
    public var blob: BlobHash
    /// What holds it.
    public var holder: BlobHolder
    /// Who may read it through this reference.
    public var reader: BlobReader
    /// Bytes this reference counts against its reader's upload quota (uploads only; 0 otherwise).
    public var quotaBytes: Int64
    /// When it was made.
    public var createdAt: Date
    /// When it stops counting (nil: while the holder exists).
    public var expiresAt: Date?

    /// Creates a reference.
    public init(
        blob: BlobHash, holder: BlobHolder, reader: BlobReader, quotaBytes: Int64 = 0, createdAt: Date,
        expiresAt: Date? = nil
    ) {
        self.blob = blob
        self.holder = holder
        self.reader = reader
        self.quotaBytes = quotaBytes
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }

    /// Whether the reference still holds at `time`.
    public func isLive(at time: Date) -> Bool { expiresAt.map { $0 > time } ?? true }
}

/// What the server learned about a public media blob when it checked it.
public struct StoredMediaInfo: Sendable, Equatable {
    /// The blob.
    public var blob: BlobHash
    /// The checked media type.
    public var mediaType: String
    /// Images: width in pixels.
    public var width: Int?
    /// Images: height in pixels.
    public var height: Int?
    /// Images: the thumbnail's blob.
    public var thumbnail: BlobHash?

    /// Creates the value.
    public init(blob: BlobHash, mediaType: String, width: Int? = nil, height: Int? = nil, thumbnail: BlobHash? = nil) {
        self.blob = blob
        self.mediaType = mediaType
        self.width = width
        self.height = height
        self.thumbnail = thumbnail
    }
}

/// The references that keep blobs alive and say who may read them, the checked facts of public
/// media, and the register of stored blobs that garbage collection walks.
///
/// A blob no live reference holds, registered longer ago than a grace period, may be deleted.
/// Dropping a holder does not forget its references at once: they expire a grace period later, so
/// a message deleted a moment ago does not lose its blob under a reader that is downloading it.
public protocol BlobReferenceStore: Sendable {
    /// Adds references; one already stored (same blob, holder and reader) keeps its first form.
    func add(_ references: [BlobReference]) async throws

    /// Up to `limit` references to `blob` that are live at `time`.
    func references(to blob: BlobHash, liveAt time: Date, limit: Int) async throws -> [BlobReference]

    /// The distinct readers of `blob` through references live at `time`, in the order of their
    /// stored form (``BlobReader/key``), starting after the reader whose key is `after`: a page of
    /// at most `limit`, so a blob shared into many chats is walked in pages.
    func readers(of blob: BlobHash, liveAt time: Date, after: String?, limit: Int) async throws -> [BlobReader]

    /// Every reference made by `holder`, live or not.
    func references(heldBy holder: BlobHolder) async throws -> [BlobReference]

    /// Makes every reference of `holder` expire at `time` (unless it expires sooner); returns how
    /// many references changed.
    @discardableResult
    func release(_ holder: BlobHolder, expiringAt time: Date) async throws -> Int

    /// Deletes references that expired before `time`; returns how many.
    @discardableResult
    func deleteExpiredReferences(before time: Date) async throws -> Int

    /// The bytes of upload references `account` made since `time` (its quota use).
    func quotaBytes(of account: AccountID, since time: Date) async throws -> Int64

    /// Notes that a blob was stored at `time`; a blob registered again keeps its first time.
    func register(_ blob: BlobHash, at time: Date) async throws

    /// Up to `limit` registered blobs, registered before `time`, that no reference live at `now`
    /// holds: the candidates for deletion.
    func unreferencedBlobs(registeredBefore time: Date, now: Date, limit: Int) async throws -> [BlobHash]

    /// Forgets a deleted blob: its register entry and media facts.
    func forget(_ blob: BlobHash) async throws

    /// Records the checked facts of a public media blob (replacing earlier ones).
    func recordMedia(_ info: StoredMediaInfo) async throws

    /// The checked facts of a public media blob, or nil when it was never checked.
    func media(_ blob: BlobHash) async throws -> StoredMediaInfo?
}
