import Crypto
import Foundation
import HeliographCore

extension BlobHash {
    /// The hash of `data`, for small contents (tests, thumbnails); uploads use ``BlobHasher``.
    public static func of(_ data: Data) -> BlobHash {
        var hasher = BlobHasher()
        hasher.update(data)
        return hasher.finalize()
    }
}

/// SHA-256 over bytes fed piece by piece, so a file is hashed without being held in memory.
public struct BlobHasher: Sendable {
    private var state = SHA256()

    /// A hasher that has seen nothing yet.
    public init() {}

    /// Feeds the next bytes.
    public mutating func update(_ data: Data) { state.update(data: data) }

    /// The hash of everything fed so far.
    public func finalize() -> BlobHash {
        // A SHA-256 digest is always 32 bytes.
        BlobHash(bytes: Data(state.finalize()))!
    }
}

/// The identifier of one resumable upload, chosen at random by the server.
public struct UploadID: UUIDIdentifier {
    public let rawValue: UUID
    public init(_ rawValue: UUID) { self.rawValue = rawValue }
}

/// A resumable upload as declared when it was created: the bytes to expect and how they are cut.
///
/// The file is cut into parts of ``partSize`` bytes each, except the last, which holds the rest;
/// an empty file has no parts.
public struct UploadRecord: Sendable, Equatable, Codable {
    /// The upload's identifier.
    public let id: UploadID
    /// The account that created the upload (for quotas and access checks above the store).
    public let owner: AccountID
    /// The declared size of the whole file in bytes.
    public let size: Int64
    /// The declared SHA-256 of the whole file; ``BlobStore/finish(upload:at:)`` verifies it.
    public let sha256: BlobHash
    /// The length of every part but the last.
    public let partSize: Int
    /// When the upload was created.
    public let createdAt: Date
    /// When an unfinished upload may be thrown away.
    public let expiresAt: Date
    /// What the layer above keeps with the upload (what it is for, a declared media type); the
    /// store only carries it, at most 200 bytes.
    public let label: String

    /// Creates a record; ``BlobStore/createUpload(_:)`` checks its sizes.
    public init(
        id: UploadID, owner: AccountID, size: Int64, sha256: BlobHash, partSize: Int, createdAt: Date, expiresAt: Date,
        label: String = ""
    ) {
        self.label = label
        self.id = id
        self.owner = owner
        self.size = size
        self.sha256 = sha256
        self.partSize = partSize
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }

    /// How many parts the file is cut into.
    public var partCount: Int {
        guard partSize > 0, size > 0 else { return 0 }
        return Int((size + Int64(partSize) - 1) / Int64(partSize))
    }

    /// The exact length part `index` must have, or `nil` when there is no such part.
    public func partLength(_ index: Int) -> Int? {
        guard index >= 0, index < partCount else { return nil }
        return Int(min(Int64(partSize), size - Int64(index) * Int64(partSize)))
    }

    /// Refuses a record whose sizes make no sense, before anything is stored.
    public func validate() throws(HeliographError) {
        guard size >= 0 else { throw HeliographError(.badRequest, "an upload's size cannot be negative") }
        guard partSize > 0 else { throw HeliographError(.badRequest, "an upload's part size must be at least one byte") }
        guard expiresAt > createdAt else { throw HeliographError(.badRequest, "an upload must expire after it is created") }
        guard label.utf8.count <= 200 else { throw HeliographError(.badRequest, "an upload's label is longer than 200 bytes") }
    }

    /// The error for a part index or length that does not fit this record, or nil when it fits.
    public func partError(index: Int, length: Int) -> HeliographError? {
        guard let expected = partLength(index) else {
            return HeliographError(
                .partOutOfRange, "part \(index) does not exist: upload \(id) has parts 0 to \(partCount - 1)")
        }
        guard length == expected else {
            return HeliographError(
                .partOutOfRange, "part \(index) of upload \(id) must be \(expected) bytes long, not \(length)")
        }
        return nil
    }
}

/// A stored blob.
public struct BlobInfo: Sendable, Equatable {
    /// Its SHA-256, which is its name.
    public let hash: BlobHash
    /// Its length in bytes.
    public let size: Int64
    /// When it was first stored (a later identical upload keeps this time).
    public let createdAt: Date

    /// Creates a description of a blob.
    public init(hash: BlobHash, size: Int64, createdAt: Date) {
        self.hash = hash
        self.size = size
        self.createdAt = createdAt
    }
}

/// Immutable byte strings named by their SHA-256, filled by resumable uploads.
///
/// A blob only exists once its whole content was received and checked against the declared size
/// and hash, and it appears all at once: a crash at any moment leaves either no blob or the whole
/// one, never a partial file that reads as complete. Access control, quotas and references from
/// messages live above this store; it only keeps bytes.
public protocol BlobStore: Sendable {
    /// Starts an upload. Throws `bad_request` for a record whose sizes make no sense.
    func createUpload(_ record: UploadRecord) async throws

    /// The upload with this id, or nil when it never existed, was discarded or expired and was
    /// cleaned up. A finished upload stays readable until it is cleaned up.
    func upload(id: UploadID) async throws -> UploadRecord?

    /// Stores part `index` of the upload. Parts arrive in any order.
    ///
    /// Idempotent: the same bytes again succeed and change nothing. Throws `part_mismatch` when
    /// different bytes were already stored for this part (the stored part is kept),
    /// `part_out_of_range` for an index past the last part or bytes of the wrong length (every part
    /// is ``UploadRecord/partSize`` long except the last, which holds the rest), and
    /// `unknown_upload` when there is no such unfinished upload.
    func writePart(upload: UploadID, index: Int, bytes: Data) async throws

    /// The indices of the parts received so far, ascending; `unknown_upload` when there is no such
    /// upload.
    func receivedParts(of upload: UploadID) async throws -> [Int]

    /// Checks the upload and publishes its blob.
    ///
    /// The parts are read in order through SHA-256 without holding the file in memory. Throws
    /// `upload_incomplete` (naming the missing parts) when parts are missing; the upload stays as
    /// it was, so the client sends them and finishes again. Throws `hash_mismatch` when the
    /// parts' size or hash is not the declared one; since no one can tell which part is wrong, the
    /// received parts are dropped and the upload stays open, empty, to be sent again. On success the blob
    /// appears atomically with `createdAt` = `time` (unless the same content is already stored,
    /// which is kept as it is) and the parts are deleted. Finishing a finished upload again
    /// returns the same blob; `unknown_upload` when there is no such upload, `unknown_blob` when
    /// its blob was deleted since.
    func finish(upload: UploadID, at time: Date) async throws -> BlobInfo

    /// Deletes an upload and its parts; false when there was none. Its published blob, if any, stays.
    @discardableResult
    func discardUpload(id: UploadID) async throws -> Bool

    /// Deletes every upload (finished or not) whose `expiresAt` is before `time`, with its parts;
    /// returns how many. Published blobs stay.
    @discardableResult
    func deleteExpiredUploads(before time: Date) async throws -> Int

    /// The blob with this hash, or nil.
    func blob(_ hash: BlobHash) async throws -> BlobInfo?

    /// The blob's bytes, or the bytes of `range` (offsets inclusive), in chunks of at most 64 KiB
    /// read from storage as the consumer pulls them.
    ///
    /// The stream fails with `unknown_blob` when there is no such blob, and with `bad_request`
    /// when the range is empty, negative or starts at or past the end; an upper bound past the
    /// end is cut to the last byte.
    func read(_ hash: BlobHash, range: ClosedRange<Int64>?) -> AsyncThrowingStream<Data, any Error>

    /// Deletes a blob; false when there was none. Uploads are untouched.
    @discardableResult
    func delete(_ hash: BlobHash) async throws -> Bool

    /// Up to `limit` blobs created before `time`, oldest first, for garbage collection.
    func allBlobs(createdBefore time: Date, limit: Int) async throws -> [BlobInfo]
}

/// The size of the chunks ``BlobStore/read(_:range:)`` yields.
public let blobReadChunkSize = 64 * 1024

extension BlobStore {
    /// Every byte of the blob in one value; for small blobs and tests only.
    public func contents(_ hash: BlobHash, range: ClosedRange<Int64>? = nil) async throws -> Data {
        var data = Data()
        for try await chunk in read(hash, range: range) { data.append(chunk) }
        return data
    }
}

/// The byte range a read covers once checked against the blob's size (the rules of
/// ``BlobStore/read(_:range:)``): nil for a whole read of an empty blob.
public func resolvedBlobRange(_ range: ClosedRange<Int64>?, size: Int64) throws(HeliographError) -> ClosedRange<Int64>? {
    guard let range else { return size == 0 ? nil : 0...(size - 1) }
    guard range.lowerBound >= 0, range.lowerBound < size else {
        throw HeliographError(
            .badRequest, "the range \(range.lowerBound)-\(range.upperBound) starts outside the blob's \(size) bytes")
    }
    return range.lowerBound...min(range.upperBound, size - 1)
}
