import Foundation
import GRDB
import HeliographCore

/// Sealed franking keys in the embedded database. Every change is one write transaction, and
/// SQLite has one writer at a time, so concurrent rotations get distinct ids.
struct SQLiteFrankingKeyStore: FrankingKeyStore {
    let pool: DatabasePool

    func keys() async throws -> [StoredFrankingKey] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM franking_keys ORDER BY id").map(Self.key)
        }
    }

    func current() async throws -> StoredFrankingKey? {
        try await pool.read { db in try Self.current(db) }
    }

    func key(id: UInt32) async throws -> StoredFrankingKey? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM franking_keys WHERE id = ?", arguments: [Int64(id)]).map(Self.key)
        }
    }

    func addCurrentKey(
        at time: Date, onlyIfNone: Bool, seal: @escaping @Sendable (UInt32) throws -> Data
    ) async throws
        -> StoredFrankingKey
    {
        try await pool.write { db in
            if onlyIfNone, let current = try Self.current(db) { return current }
            let highest = try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM franking_keys") ?? 0
            guard highest < Int64(UInt32.max) else { throw StorageCorruption(column: "franking_keys.id") }
            let key = StoredFrankingKey(
                id: UInt32(highest + 1), sealedKey: try seal(UInt32(highest + 1)), createdAt: time, retiredAt: nil)
            try db.execute(
                sql: "UPDATE franking_keys SET retired_at = ? WHERE retired_at IS NULL", arguments: [time.databaseMilliseconds])
            try db.execute(
                sql: "INSERT INTO franking_keys (id, sealed_key, created_at) VALUES (?, ?, ?)",
                arguments: [Int64(key.id), key.sealedKey, time.databaseMilliseconds])
            return key
        }
    }

    func deleteRetired(before time: Date) async throws -> [UInt32] {
        try await pool.write { db in
            let ids = try Int64.fetchAll(
                db, sql: "SELECT id FROM franking_keys WHERE retired_at IS NOT NULL AND retired_at < ? ORDER BY id",
                arguments: [time.databaseMilliseconds])
            try db.execute(
                sql: "DELETE FROM franking_keys WHERE retired_at IS NOT NULL AND retired_at < ?",
                arguments: [time.databaseMilliseconds])
            return ids.map { UInt32(truncatingIfNeeded: $0) }
        }
    }

    func importPlainSecret(
        named name: String, as id: UInt32, at time: Date, seal: @escaping @Sendable (Data) throws -> Data
    )
        async throws -> Bool
    {
        try await pool.write { db in
            guard let plain = try Data.fetchOne(db, sql: "SELECT value FROM server_secrets WHERE name = ?", arguments: [name])
            else { return false }
            try db.execute(
                sql: "INSERT OR IGNORE INTO franking_keys (id, sealed_key, created_at, retired_at) VALUES (?, ?, ?, ?)",
                arguments: [Int64(id), try seal(plain), time.databaseMilliseconds, time.databaseMilliseconds])
            try db.execute(sql: "DELETE FROM server_secrets WHERE name = ?", arguments: [name])
            return true
        }
    }

    private static func current(_ db: Database) throws -> StoredFrankingKey? {
        try Row.fetchOne(db, sql: "SELECT * FROM franking_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1").map(key)
    }

    private static func key(_ row: Row) throws -> StoredFrankingKey {
        let id: Int64 = row["id"]
        guard let keyID = UInt32(exactly: id) else { throw StorageCorruption(column: "franking_keys.id") }
        let retired: Int64? = row["retired_at"]
        return StoredFrankingKey(
            id: keyID, sealedKey: row["sealed_key"], createdAt: Date(millisecondsSince1970: row["created_at"]),
            retiredAt: retired.map { Date(millisecondsSince1970: $0) })
    }
}
