import Foundation
import HeliographCore
import HeliographStore
import Logging
import PostgresNIO

/// Sealed franking keys on PostgreSQL, shared by every node.
struct PostgresFrankingKeyStore: FrankingKeyStore {
    let client: PostgresClient
    let timeout: Duration
    let logger = Logger(label: "heliograph.postgres")

    func keys() async throws -> [StoredFrankingKey] {
        try await withDeadline(timeout, what: "read franking keys") {
            try await Self.keys(
                client.query("SELECT id, sealed_key, created_at, retired_at FROM franking_keys ORDER BY id", logger: logger))
        }
    }

    func current() async throws -> StoredFrankingKey? {
        try await withDeadline(timeout, what: "read the current franking key") {
            try await Self.current(client.query(Self.currentQuery, logger: logger))
        }
    }

    func key(id: UInt32) async throws -> StoredFrankingKey? {
        try await withDeadline(timeout, what: "read a franking key") {
            try await Self.keys(
                client.query(
                    "SELECT id, sealed_key, created_at, retired_at FROM franking_keys WHERE id = \(Int64(id))", logger: logger)
            ).first
        }
    }

    func addCurrentKey(
        at time: Date, onlyIfNone: Bool, seal: @escaping @Sendable (UInt32) throws -> Data
    ) async throws
        -> StoredFrankingKey
    {
        try await withDeadline(timeout, what: "store a franking key") {
            try await inTransaction(client, logger: logger) { connection in
                // Readers go on; a second rotation (or a second node creating the first key)
                // waits here and then sees this one's key, so ids never collide.
                try await connection.query("LOCK TABLE franking_keys IN SHARE ROW EXCLUSIVE MODE", logger: logger)
                if onlyIfNone, let current = try await Self.current(connection.query(Self.currentQuery, logger: logger)) {
                    return current
                }
                var highest: Int64 = 0
                for try await value in try await connection.query(
                    "SELECT COALESCE(MAX(id), 0) FROM franking_keys", logger: logger
                ).decode(Int64.self) {
                    highest = value
                }
                guard highest < Int64(UInt32.max) else { throw StorageUnavailable("no franking key id is left") }
                let id = UInt32(highest + 1)
                let key = StoredFrankingKey(id: id, sealedKey: try seal(id), createdAt: time, retiredAt: nil)
                let millis = time.millisecondsSince1970
                try await connection.query(
                    "UPDATE franking_keys SET retired_at = \(millis) WHERE retired_at IS NULL", logger: logger)
                try await connection.query(
                    "INSERT INTO franking_keys (id, sealed_key, created_at) VALUES (\(Int64(id)), \(key.sealedKey), \(millis))",
                    logger: logger)
                return key
            }
        }
    }

    func deleteRetired(before time: Date) async throws -> [UInt32] {
        try await withDeadline(timeout, what: "delete retired franking keys") {
            var ids: [UInt32] = []
            for try await id in try await client.query(
                """
                DELETE FROM franking_keys WHERE retired_at IS NOT NULL AND retired_at < \(time.millisecondsSince1970)
                RETURNING id
                """, logger: logger
            ).decode(Int64.self) {
                ids.append(UInt32(truncatingIfNeeded: id))
            }
            return ids.sorted()
        }
    }

    func importPlainSecret(
        named name: String, as id: UInt32, at time: Date, seal: @escaping @Sendable (Data) throws -> Data
    ) async throws -> Bool {
        try await withDeadline(timeout, what: "seal the plain franking secret") {
            try await inTransaction(client, logger: logger) { connection in
                // FOR UPDATE: two nodes starting together import it once; the second finds it gone.
                var plain: Data?
                for try await value in try await connection.query(
                    "SELECT value FROM server_secrets WHERE name = \(name) FOR UPDATE", logger: logger
                ).decode(Data.self) {
                    plain = value
                }
                guard let plain else { return false }
                let millis = time.millisecondsSince1970
                try await connection.query(
                    """
                    INSERT INTO franking_keys (id, sealed_key, created_at, retired_at)
                    VALUES (\(Int64(id)), \(try seal(plain)), \(millis), \(millis)) ON CONFLICT (id) DO NOTHING
                    """, logger: logger)
                try await connection.query("DELETE FROM server_secrets WHERE name = \(name)", logger: logger)
                return true
            }
        }
    }

    private static let currentQuery: PostgresQuery =
        "SELECT id, sealed_key, created_at, retired_at FROM franking_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1"

    private static func current(_ rows: PostgresRowSequence) async throws -> StoredFrankingKey? {
        try await keys(rows).first
    }

    private static func keys(_ rows: PostgresRowSequence) async throws -> [StoredFrankingKey] {
        var keys: [StoredFrankingKey] = []
        for try await (id, sealed, created, retired) in rows.decode((Int64, Data, Int64, Int64?).self) {
            guard let keyID = UInt32(exactly: id) else { throw StorageUnavailable("a stored franking key id is out of range") }
            keys.append(
                StoredFrankingKey(
                    id: keyID, sealedKey: sealed, createdAt: Date(millisecondsSince1970: created),
                    retiredAt: retired.map { Date(millisecondsSince1970: $0) }))
        }
        return keys
    }
}
