import Foundation
import HeliographCore
import HeliographStore
import Logging
import PostgresNIO

/// Blob references, the blob register and public media facts in PostgreSQL (tables of the
/// "v8-blob-references" migration). Hashes are the 32 SHA-256 bytes; times milliseconds.
struct PostgresBlobReferenceStore: BlobReferenceStore {
    let client: PostgresClient
    let timeout: Duration
    let logger = Logger(label: "heliograph.postgres")

    func add(_ references: [BlobReference]) async throws {
        guard !references.isEmpty else { return }
        try await withDeadline(timeout, what: "add blob references") {
            try await inTransaction(client, logger: logger) { connection in
                for reference in references {
                    var isUpload = false
                    if case .upload = reference.holder { isUpload = true }
                    try await connection.query(
                        """
                        INSERT INTO blob_references (blob, holder, reader, is_upload, quota_bytes, created_at, expires_at)
                        VALUES (\(reference.blob.bytes), \(reference.holder.key), \(reference.reader.key), \(isUpload),
                                \(reference.quotaBytes), \(reference.createdAt.millisecondsSince1970),
                                \(reference.expiresAt?.millisecondsSince1970))
                        ON CONFLICT (blob, holder, reader) DO NOTHING
                        """, logger: logger)
                }
            }
        }
    }

    func references(to blob: BlobHash, liveAt time: Date, limit: Int) async throws -> [BlobReference] {
        try await withDeadline(timeout, what: "read blob references") {
            try await collect(
                client.query(
                    """
                    SELECT blob, holder, reader, quota_bytes, created_at, expires_at FROM blob_references
                    WHERE blob = \(blob.bytes) AND (expires_at IS NULL OR expires_at > \(time.millisecondsSince1970))
                    ORDER BY created_at LIMIT \(Int64(max(0, limit)))
                    """, logger: logger))
        }
    }

    func readers(of blob: BlobHash, liveAt time: Date, after: String?, limit: Int) async throws -> [BlobReader] {
        try await withDeadline(timeout, what: "read blob readers") {
            var readers: [BlobReader] = []
            // COLLATE "C": the same byte order as SQLite's, whatever the database's collation.
            for try await key in try await client.query(
                """
                SELECT DISTINCT reader COLLATE "C" AS reader FROM blob_references
                WHERE blob = \(blob.bytes) AND reader COLLATE "C" > \(after ?? "")
                  AND (expires_at IS NULL OR expires_at > \(time.millisecondsSince1970))
                ORDER BY 1 LIMIT \(Int64(max(0, limit)))
                """, logger: logger
            ).decode(String.self) {
                if let reader = BlobReader(key: key) { readers.append(reader) }
            }
            return readers
        }
    }

    func references(heldBy holder: BlobHolder) async throws -> [BlobReference] {
        try await withDeadline(timeout, what: "read blob references") {
            try await collect(
                client.query(
                    """
                    SELECT blob, holder, reader, quota_bytes, created_at, expires_at FROM blob_references
                    WHERE holder = \(holder.key)
                    """, logger: logger))
        }
    }

    func release(_ holder: BlobHolder, expiringAt time: Date) async throws -> Int {
        try await withDeadline(timeout, what: "release blob references") {
            try await countRows(
                client.query(
                    """
                    UPDATE blob_references SET expires_at = \(time.millisecondsSince1970)
                    WHERE holder = \(holder.key) AND (expires_at IS NULL OR expires_at > \(time.millisecondsSince1970))
                    RETURNING 1
                    """, logger: logger))
        }
    }

    func deleteExpiredReferences(before time: Date) async throws -> Int {
        try await withDeadline(timeout, what: "delete expired blob references") {
            try await countRows(
                client.query(
                    """
                    DELETE FROM blob_references WHERE expires_at IS NOT NULL AND expires_at < \(time.millisecondsSince1970)
                    RETURNING 1
                    """, logger: logger))
        }
    }

    func quotaBytes(of account: AccountID, since time: Date) async throws -> Int64 {
        try await withDeadline(timeout, what: "read an upload quota") {
            var total: Int64 = 0
            for try await sum in try await client.query(
                """
                SELECT COALESCE(SUM(quota_bytes), 0)::bigint FROM blob_references
                WHERE reader = \(BlobReader.account(account).key) AND is_upload AND created_at >= \(time.millisecondsSince1970)
                """, logger: logger
            ).decode(Int64.self) {
                total = sum
            }
            return total
        }
    }

    func register(_ blob: BlobHash, at time: Date) async throws {
        try await withDeadline(timeout, what: "register a blob") {
            try await client.query(
                """
                INSERT INTO blob_register (blob, registered_at) VALUES (\(blob.bytes), \(time.millisecondsSince1970))
                ON CONFLICT (blob) DO NOTHING
                """, logger: logger)
        }
    }

    func unreferencedBlobs(registeredBefore time: Date, now: Date, limit: Int) async throws -> [BlobHash] {
        try await withDeadline(timeout, what: "list unreferenced blobs") {
            var blobs: [BlobHash] = []
            for try await bytes in try await client.query(
                """
                SELECT blob FROM blob_register AS r WHERE registered_at < \(time.millisecondsSince1970) AND NOT EXISTS (
                    SELECT 1 FROM blob_references AS x
                    WHERE x.blob = r.blob AND (x.expires_at IS NULL OR x.expires_at > \(now.millisecondsSince1970)))
                ORDER BY registered_at LIMIT \(Int64(max(0, limit)))
                """, logger: logger
            ).decode(Data.self) {
                if let hash = BlobHash(bytes: bytes) { blobs.append(hash) }
            }
            return blobs
        }
    }

    func forget(_ blob: BlobHash) async throws {
        try await withDeadline(timeout, what: "forget a blob") {
            try await inTransaction(client, logger: logger) { connection in
                try await connection.query("DELETE FROM blob_register WHERE blob = \(blob.bytes)", logger: logger)
                try await connection.query("DELETE FROM public_media WHERE blob = \(blob.bytes)", logger: logger)
            }
        }
    }

    func recordMedia(_ info: StoredMediaInfo) async throws {
        try await withDeadline(timeout, what: "record public media") {
            try await client.query(
                """
                INSERT INTO public_media (blob, media_type, width, height, thumbnail)
                VALUES (\(info.blob.bytes), \(info.mediaType), \(info.width.map(Int32.init)), \(info.height.map(Int32.init)),
                        \(info.thumbnail?.bytes))
                ON CONFLICT (blob) DO UPDATE SET media_type = excluded.media_type, width = excluded.width,
                    height = excluded.height, thumbnail = excluded.thumbnail
                """, logger: logger)
        }
    }

    func media(_ blob: BlobHash) async throws -> StoredMediaInfo? {
        try await withDeadline(timeout, what: "read public media") {
            var info: StoredMediaInfo?
            for try await (mediaType, width, height, thumbnail) in try await client.query(
                "SELECT media_type, width, height, thumbnail FROM public_media WHERE blob = \(blob.bytes)", logger: logger
            ).decode((String, Int32?, Int32?, Data?).self) {
                info = StoredMediaInfo(
                    blob: blob, mediaType: mediaType, width: width.map(Int.init), height: height.map(Int.init),
                    thumbnail: thumbnail.flatMap(BlobHash.init(bytes:)))
            }
            return info
        }
    }

    private func collect(_ rows: PostgresRowSequence) async throws -> [BlobReference] {
        var references: [BlobReference] = []
        for try await (blob, holder, reader, quota, created, expires) in rows.decode(
            (Data, String, String, Int64, Int64, Int64?).self)
        {
            guard let hash = BlobHash(bytes: blob), let holder = BlobHolder(key: holder), let reader = BlobReader(key: reader)
            else { throw StorageUnavailable("a stored blob reference is malformed") }
            references.append(
                BlobReference(
                    blob: hash, holder: holder, reader: reader, quotaBytes: quota,
                    createdAt: Date(millisecondsSince1970: created), expiresAt: expires.map(Date.init(millisecondsSince1970:))))
        }
        return references
    }
}
