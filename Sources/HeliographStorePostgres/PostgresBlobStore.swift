import Foundation
import HeliographCore
import HeliographStore
import Logging
import PostgresNIO

/// Blobs in PostgreSQL, shared by every node without a shared disk.
///
/// A blob is a `blobs` row (hash, size, creation time) and its bytes are `blob_chunks` rows of at
/// most 256 KiB, each keyed by its byte offset in the blob, so a range read fetches only the
/// chunks it covers, one at a time. Upload parts are `blob_upload_parts` rows. Finishing copies the
/// parts into chunks inside the database in one transaction, so the blob row and all its chunks
/// appear together or not at all.
struct PostgresBlobStore: BlobStore {
    let client: PostgresClient
    let timeout: Duration
    let logger = Logger(label: "heliograph.postgres")

    /// The largest chunk row; a part is cut into chunks of this size (the last may be shorter).
    static let chunkSize = 256 * 1024

    func createUpload(_ record: UploadRecord) async throws {
        try record.validate()
        try await withDeadline(timeout, what: "create an upload") {
            let inserted = try await countRows(
                client.query(
                    """
                    INSERT INTO blob_uploads (id, owner, size, sha256, part_size, created_at, expires_at, label)
                    VALUES (\(record.id.rawValue), \(record.owner.rawValue), \(record.size), \(record.sha256.bytes),
                            \(Int64(record.partSize)), \(record.createdAt.millisecondsSince1970),
                            \(record.expiresAt.millisecondsSince1970), \(record.label))
                    ON CONFLICT (id) DO NOTHING RETURNING 1
                    """, logger: logger))
            guard inserted == 1 else { throw HeliographError(.badRequest, "an upload with id \(record.id) already exists") }
        }
    }

    func upload(id: UploadID) async throws -> UploadRecord? {
        try await withDeadline(timeout, what: "read an upload") { try await record(id)?.record }
    }

    func writePart(upload id: UploadID, index: Int, bytes: Data) async throws {
        try await withDeadline(timeout, what: "store an upload part") {
            guard let (record, finished) = try await record(id) else { throw Self.unknown(id) }
            if let finished {
                throw HeliographError(.unknownUpload, "upload \(id) is already finished as blob \(finished.hex)")
            }
            if let error = record.partError(index: index, length: bytes.count) { throw error }
            do {
                let inserted = try await countRows(
                    client.query(
                        """
                        INSERT INTO blob_upload_parts (upload_id, part_index, bytes)
                        VALUES (\(id.rawValue), \(Int64(index)), \(bytes))
                        ON CONFLICT (upload_id, part_index) DO NOTHING RETURNING 1
                        """, logger: logger))
                if inserted == 1 { return }
            } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23503" {
                // The foreign key: the upload was discarded meanwhile.
                throw Self.unknown(id)
            }
            // Compared in the database, so the stored part never travels back.
            var same = false
            for try await equal in try await client.query(
                "SELECT bytes = \(bytes) FROM blob_upload_parts WHERE upload_id = \(id.rawValue) AND part_index = \(Int64(index))",
                logger: logger
            ).decode(Bool.self) {
                same = equal
            }
            guard same else {
                throw HeliographError(.partMismatch, "part \(index) of upload \(id) is already stored with different bytes")
            }
        }
    }

    func receivedParts(of id: UploadID) async throws -> [Int] {
        try await withDeadline(timeout, what: "list upload parts") {
            guard try await record(id) != nil else { throw Self.unknown(id) }
            return try await receivedIndices(id)
        }
    }

    func finish(upload id: UploadID, at time: Date) async throws -> BlobInfo {
        // No overall deadline: hashing a large upload takes as long as its size needs; every query
        // below is short (one part at a time) except the copy, which runs in the database.
        guard let (record, finished) = try await withDeadline(timeout, what: "read an upload", { try await record(id) })
        else { throw Self.unknown(id) }
        if let finished { return try await existing(finished, of: id) }
        let received = try await withDeadline(timeout, what: "list upload parts") { try await receivedIndices(id) }
        let present = Set(received)
        let missing = (0..<record.partCount).filter { !present.contains($0) }
        guard missing.isEmpty else {
            let listed = missing.prefix(20).map(String.init).joined(separator: ", ")
            let more = missing.count > 20 ? " and \(missing.count - 20) more" : ""
            throw HeliographError(.uploadIncomplete, "upload \(id) is missing \(missing.count) part(s): \(listed)\(more)")
        }
        var hasher = BlobHasher()
        var size: Int64 = 0
        for index in 0..<record.partCount {
            let part: Data
            do {
                part = try await readPart(index)
            } catch let error as HeliographError where error.code == .uploadIncomplete {
                // A concurrent finish of the same upload (a client retrying) completed meanwhile
                // and removed the parts: its blob is the answer.
                if let (_, finished) = try await self.record(id), let finished { return try await existing(finished, of: id) }
                throw error
            }
            hasher.update(part)
            size += Int64(part.count)
        }
        func readPart(_ index: Int) async throws -> Data {
            try await withDeadline(timeout, what: "read an upload part") {
                var part: Data?
                for try await bytes in try await client.query(
                    "SELECT bytes FROM blob_upload_parts WHERE upload_id = \(id.rawValue) AND part_index = \(Int64(index))",
                    logger: logger
                ).decode(Data.self) {
                    part = bytes
                }
                guard let part else {
                    throw HeliographError(.uploadIncomplete, "upload \(id) is missing 1 part(s): \(index)")
                }
                return part
            }
        }
        let hash = hasher.finalize()
        guard size == record.size, hash == record.sha256 else {
            // Which part is wrong cannot be told: drop them all so the upload starts over clean.
            try await withDeadline(timeout, what: "drop upload parts") {
                try await client.query("DELETE FROM blob_upload_parts WHERE upload_id = \(id.rawValue)", logger: logger)
            }
            throw HeliographError(
                .hashMismatch,
                size == record.size
                    ? "upload \(id) has SHA-256 \(hash.hex), not the declared \(record.sha256.hex); send its parts again"
                    : "upload \(id) has \(size) bytes, not the declared \(record.size); send its parts again")
        }
        let chunk = Int64(Self.chunkSize)
        let partSize = Int64(record.partSize)
        try await inTransaction(client, logger: logger) { connection in
            // The upload row locked: a second finish of the same upload waits, then sees it finished.
            var open = false
            for try await finishedHash in try await connection.query(
                "SELECT finished_hash FROM blob_uploads WHERE id = \(id.rawValue) FOR UPDATE", logger: logger
            ).decode(Data?.self) {
                open = finishedHash == nil
            }
            guard open else { return }
            let created = try await countRows(
                connection.query(
                    """
                    INSERT INTO blobs (hash, size, created_at) VALUES (\(hash.bytes), \(size), \(time.millisecondsSince1970))
                    ON CONFLICT (hash) DO NOTHING RETURNING 1
                    """, logger: logger))
            if created == 1 {
                try await connection.query(
                    """
                    INSERT INTO blob_chunks (hash, byte_offset, bytes)
                    SELECT \(hash.bytes), p.part_index * \(partSize) + g.k * \(chunk),
                           substring(p.bytes FROM (g.k * \(chunk) + 1)::integer FOR \(chunk)::integer)
                    FROM blob_upload_parts p
                    CROSS JOIN LATERAL generate_series(0, (length(p.bytes) - 1) / \(chunk)) AS g(k)
                    WHERE p.upload_id = \(id.rawValue) AND length(p.bytes) > 0
                    """, logger: logger)
            }
            try await connection.query(
                "UPDATE blob_uploads SET finished_hash = \(hash.bytes) WHERE id = \(id.rawValue)", logger: logger)
            try await connection.query("DELETE FROM blob_upload_parts WHERE upload_id = \(id.rawValue)", logger: logger)
        }
        return try await existing(hash, of: id)
    }

    func discardUpload(id: UploadID) async throws -> Bool {
        try await withDeadline(timeout, what: "discard an upload") {
            try await countRows(
                client.query("DELETE FROM blob_uploads WHERE id = \(id.rawValue) RETURNING 1", logger: logger)) == 1
        }
    }

    func deleteExpiredUploads(before time: Date) async throws -> Int {
        try await withDeadline(timeout, what: "delete expired uploads") {
            try await countRows(
                client.query(
                    "DELETE FROM blob_uploads WHERE expires_at < \(time.millisecondsSince1970) RETURNING 1", logger: logger))
        }
    }

    func blob(_ hash: BlobHash) async throws -> BlobInfo? {
        try await withDeadline(timeout, what: "read a blob") {
            var info: BlobInfo?
            for try await (size, created) in try await client.query(
                "SELECT size, created_at FROM blobs WHERE hash = \(hash.bytes)", logger: logger
            ).decode((Int64, Int64).self) {
                info = BlobInfo(hash: hash, size: size, createdAt: Date(millisecondsSince1970: created))
            }
            return info
        }
    }

    func read(_ hash: BlobHash, range: ClosedRange<Int64>?) -> AsyncThrowingStream<Data, any Error> {
        let cursor = ChunkCursor(store: self, hash: hash, requested: range)
        return AsyncThrowingStream { try await cursor.next() }
    }

    func delete(_ hash: BlobHash) async throws -> Bool {
        try await withDeadline(timeout, what: "delete a blob") {
            // Chunks go with the row (ON DELETE CASCADE), in the same statement.
            try await countRows(client.query("DELETE FROM blobs WHERE hash = \(hash.bytes) RETURNING 1", logger: logger))
                == 1
        }
    }

    func allBlobs(createdBefore time: Date, limit: Int) async throws -> [BlobInfo] {
        try await withDeadline(timeout, what: "list blobs") {
            var blobs: [BlobInfo] = []
            for try await (hash, size, created) in try await client.query(
                """
                SELECT hash, size, created_at FROM blobs WHERE created_at < \(time.millisecondsSince1970)
                ORDER BY created_at, hash LIMIT \(Int64(max(0, limit)))
                """, logger: logger
            ).decode((Data, Int64, Int64).self) {
                guard let hash = BlobHash(bytes: hash) else { throw StorageUnavailable("a stored blob hash is malformed") }
                blobs.append(BlobInfo(hash: hash, size: size, createdAt: Date(millisecondsSince1970: created)))
            }
            return blobs
        }
    }

    /// The chunk holding byte `position` of the blob: its offset and bytes, or nil when none does.
    fileprivate func chunk(_ hash: BlobHash, containing position: Int64) async throws -> (Int64, Data)? {
        try await withDeadline(timeout, what: "read a blob chunk") {
            var found: (Int64, Data)?
            for try await row in try await client.query(
                """
                SELECT byte_offset, bytes FROM blob_chunks WHERE hash = \(hash.bytes) AND byte_offset <= \(position)
                ORDER BY byte_offset DESC LIMIT 1
                """, logger: logger
            ).decode((Int64, Data).self) {
                found = row
            }
            return found
        }
    }

    // MARK: Helpers

    private func record(_ id: UploadID) async throws -> (record: UploadRecord, finished: BlobHash?)? {
        var found: (UploadRecord, BlobHash?)?
        for try await (owner, size, sha256, partSize, created, expires, finished, label) in try await client.query(
            """
            SELECT owner, size, sha256, part_size, created_at, expires_at, finished_hash, label FROM blob_uploads
            WHERE id = \(id.rawValue)
            """, logger: logger
        ).decode((UUID, Int64, Data, Int64, Int64, Int64, Data?, String).self) {
            guard let declared = BlobHash(bytes: sha256) else { throw StorageUnavailable("a stored upload hash is malformed") }
            let record = UploadRecord(
                id: id, owner: AccountID(owner), size: size, sha256: declared, partSize: Int(partSize),
                createdAt: Date(millisecondsSince1970: created), expiresAt: Date(millisecondsSince1970: expires),
                label: label)
            found = (record, finished.flatMap(BlobHash.init(bytes:)))
        }
        return found
    }

    private func receivedIndices(_ id: UploadID) async throws -> [Int] {
        var indices: [Int] = []
        for try await index in try await client.query(
            "SELECT part_index FROM blob_upload_parts WHERE upload_id = \(id.rawValue) ORDER BY part_index", logger: logger
        ).decode(Int64.self) {
            indices.append(Int(index))
        }
        return indices
    }

    private func existing(_ hash: BlobHash, of id: UploadID) async throws -> BlobInfo {
        guard let info = try await blob(hash) else {
            throw HeliographError(.unknownBlob, "the blob \(hash.hex) of upload \(id) was deleted since it was finished")
        }
        return info
    }

    private static func unknown(_ id: UploadID) -> HeliographError {
        HeliographError(.unknownUpload, "no upload has id \(id); it may have expired or been discarded")
    }
}

/// Walks a blob range chunk row by chunk row as a stream's consumer pulls, yielding at most
/// ``blobReadChunkSize`` bytes at a time.
private actor ChunkCursor {
    let store: PostgresBlobStore
    let hash: BlobHash
    let requested: ClosedRange<Int64>?
    private var started = false
    private var position: Int64 = 0
    private var end: Int64 = -1
    /// The chunk row being served and its offset in the blob.
    private var current: (offset: Int64, bytes: Data)?

    init(store: PostgresBlobStore, hash: BlobHash, requested: ClosedRange<Int64>?) {
        self.store = store
        self.hash = hash
        self.requested = requested
    }

    func next() async throws -> Data? {
        if !started {
            started = true
            guard let info = try await store.blob(hash) else {
                throw HeliographError(.unknownBlob, "no blob has hash \(hash.hex)")
            }
            guard let range = try resolvedBlobRange(requested, size: info.size) else { return nil }
            position = range.lowerBound
            end = range.upperBound
        }
        guard position <= end else { return nil }
        if current.map({ position < $0.offset || position >= $0.offset + Int64($0.bytes.count) }) ?? true {
            guard let (offset, bytes) = try await store.chunk(hash, containing: position),
                position < offset + Int64(bytes.count)
            else {
                // The blob was deleted while being read.
                throw HeliographError(.unknownBlob, "the blob \(hash.hex) was deleted while it was read")
            }
            current = (offset, bytes)
        }
        guard let current else { return nil }
        let start = Int(position - current.offset)
        let count = Int(min(Int64(blobReadChunkSize), end - position + 1, Int64(current.bytes.count - start)))
        let base = current.bytes.startIndex + start
        let piece = Data(current.bytes[base..<(base + count)])
        position += Int64(count)
        return piece
    }
}
