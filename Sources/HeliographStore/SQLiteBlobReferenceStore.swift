import Foundation
import GRDB
import HeliographCore

/// Blob references, the blob register and public media facts in SQLite (tables of the
/// "v8-blob-references" migration). Hashes are the 32 SHA-256 bytes; times milliseconds.
struct SQLiteBlobReferenceStore: BlobReferenceStore {
    let pool: DatabasePool

    func add(_ references: [BlobReference]) async throws {
        guard !references.isEmpty else { return }
        try await pool.write { db in
            let statement = try db.cachedStatement(
                sql: """
                    INSERT INTO blob_references (blob, holder, reader, is_upload, quota_bytes, created_at, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (blob, holder, reader) DO NOTHING
                    """)
            for reference in references {
                var isUpload = false
                if case .upload = reference.holder { isUpload = true }
                try statement.execute(arguments: [
                    reference.blob.bytes, reference.holder.key, reference.reader.key, isUpload, reference.quotaBytes,
                    reference.createdAt.millisecondsSince1970, reference.expiresAt?.millisecondsSince1970,
                ])
            }
        }
    }

    func references(to blob: BlobHash, liveAt time: Date, limit: Int) async throws -> [BlobReference] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM blob_references WHERE blob = ? AND (expires_at IS NULL OR expires_at > ?)
                    ORDER BY created_at LIMIT ?
                    """, arguments: [blob.bytes, time.millisecondsSince1970, max(0, limit)]
            ).map(Self.reference)
        }
    }

    func readers(of blob: BlobHash, liveAt time: Date, after: String?, limit: Int) async throws -> [BlobReader] {
        try await pool.read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT DISTINCT reader FROM blob_references
                    WHERE blob = ? AND reader > ? AND (expires_at IS NULL OR expires_at > ?)
                    ORDER BY reader LIMIT ?
                    """, arguments: [blob.bytes, after ?? "", time.millisecondsSince1970, max(0, limit)]
            ).compactMap(BlobReader.init(key:))
        }
    }

    func references(heldBy holder: BlobHolder) async throws -> [BlobReference] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM blob_references WHERE holder = ?", arguments: [holder.key])
                .map(Self.reference)
        }
    }

    func release(_ holder: BlobHolder, expiringAt time: Date) async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE blob_references SET expires_at = ?
                    WHERE holder = ? AND (expires_at IS NULL OR expires_at > ?)
                    """, arguments: [time.millisecondsSince1970, holder.key, time.millisecondsSince1970])
            return db.changesCount
        }
    }

    func deleteExpiredReferences(before time: Date) async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql: "DELETE FROM blob_references WHERE expires_at IS NOT NULL AND expires_at < ?",
                arguments: [time.millisecondsSince1970])
            return db.changesCount
        }
    }

    func quotaBytes(of account: AccountID, since time: Date) async throws -> Int64 {
        try await pool.read { db in
            try Int64.fetchOne(
                db,
                sql: """
                    SELECT COALESCE(SUM(quota_bytes), 0) FROM blob_references
                    WHERE reader = ? AND is_upload = 1 AND created_at >= ?
                    """, arguments: [BlobReader.account(account).key, time.millisecondsSince1970]) ?? 0
        }
    }

    func register(_ blob: BlobHash, at time: Date) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO blob_register (blob, registered_at) VALUES (?, ?) ON CONFLICT (blob) DO NOTHING",
                arguments: [blob.bytes, time.millisecondsSince1970])
        }
    }

    func unreferencedBlobs(registeredBefore time: Date, now: Date, limit: Int) async throws -> [BlobHash] {
        try await pool.read { db in
            try Data.fetchAll(
                db,
                sql: """
                    SELECT blob FROM blob_register AS r WHERE registered_at < ? AND NOT EXISTS (
                        SELECT 1 FROM blob_references AS x
                        WHERE x.blob = r.blob AND (x.expires_at IS NULL OR x.expires_at > ?))
                    ORDER BY registered_at LIMIT ?
                    """, arguments: [time.millisecondsSince1970, now.millisecondsSince1970, max(0, limit)]
            ).compactMap(BlobHash.init(bytes:))
        }
    }

    func forget(_ blob: BlobHash) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM blob_register WHERE blob = ?", arguments: [blob.bytes])
            try db.execute(sql: "DELETE FROM public_media WHERE blob = ?", arguments: [blob.bytes])
        }
    }

    func recordMedia(_ info: StoredMediaInfo) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO public_media (blob, media_type, width, height, thumbnail) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (blob) DO UPDATE SET media_type = excluded.media_type, width = excluded.width,
                        height = excluded.height, thumbnail = excluded.thumbnail
                    """, arguments: [info.blob.bytes, info.mediaType, info.width, info.height, info.thumbnail?.bytes])
        }
    }

    func media(_ blob: BlobHash) async throws -> StoredMediaInfo? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM public_media WHERE blob = ?", arguments: [blob.bytes]).map { row in
                StoredMediaInfo(
                    blob: blob, mediaType: row["media_type"], width: row["width"], height: row["height"],
                    thumbnail: (row["thumbnail"] as Data?).flatMap(BlobHash.init(bytes:)))
            }
        }
    }

    private static func reference(_ row: Row) throws -> BlobReference {
        guard let blob = BlobHash(bytes: row["blob"]), let holder = BlobHolder(key: row["holder"]),
            let reader = BlobReader(key: row["reader"])
        else { throw StorageUnavailable("a stored blob reference is malformed") }
        return BlobReference(
            blob: blob, holder: holder, reader: reader, quotaBytes: row["quota_bytes"],
            createdAt: Date(millisecondsSince1970: row["created_at"]),
            expiresAt: (row["expires_at"] as Int64?).map(Date.init(millisecondsSince1970:)))
    }
}
