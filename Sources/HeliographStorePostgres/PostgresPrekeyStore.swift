import Foundation
import HeliographCore
import HeliographStore
import Logging
import NIOCore
import PostgresNIO

struct PostgresPrekeyStore: PrekeyStore {
    let client: PostgresClient
    let timeout: Duration
    let logger = Logger(label: "heliograph.postgres")

    func setKeys(_ keys: DeviceKeyRecord) async throws {
        try await withDeadline(timeout, what: "store device keys") {
            try await client.query(
                """
                INSERT INTO device_keys (device_id, account_id, agreement_key, agreement_signature, signed_prekey_id,
                    signed_prekey, signed_prekey_signature, last_resort_id, last_resort_key, last_resort_signature)
                VALUES (\(keys.deviceID.rawValue), \(keys.accountID.rawValue), \(keys.agreementKey), \(keys.agreementSignature),
                    \(keys.signedPrekey.id), \(keys.signedPrekey.publicKey), \(keys.signedPrekey.signature),
                    \(keys.lastResortPrekey.id), \(keys.lastResortPrekey.publicKey), \(keys.lastResortPrekey.signature))
                ON CONFLICT (device_id) DO UPDATE SET
                    agreement_key = excluded.agreement_key, agreement_signature = excluded.agreement_signature,
                    signed_prekey_id = excluded.signed_prekey_id, signed_prekey = excluded.signed_prekey,
                    signed_prekey_signature = excluded.signed_prekey_signature, last_resort_id = excluded.last_resort_id,
                    last_resort_key = excluded.last_resort_key, last_resort_signature = excluded.last_resort_signature
                """, logger: logger)
        }
    }

    func addOneTimePrekeys(_ prekeys: [StoredPrekey], for deviceID: DeviceID) async throws {
        guard !prekeys.isEmpty else { return }
        try await withDeadline(timeout, what: "store one-time prekeys") {
            // One statement for the whole batch.
            try await client.query(
                """
                INSERT INTO one_time_prekeys (device_id, kind, key_id, public_key, signature)
                SELECT \(deviceID.rawValue), k, i, p, s
                FROM unnest(\(prekeys.map { Int32($0.kind) })::int4[], \(prekeys.map(\.id))::int8[],
                            \(prekeys.map { ByteBuffer(bytes: $0.publicKey) })::bytea[], \(prekeys.map { ByteBuffer(bytes: $0.signature) })::bytea[]) AS t(k, i, p, s)
                ON CONFLICT DO NOTHING
                """, logger: logger)
        }
    }

    func keys(for deviceID: DeviceID) async throws -> DeviceKeyRecord? {
        try await withDeadline(timeout, what: "find device keys") {
            try await Self.keys(client.query(Self.keysQuery(deviceID), logger: logger), deviceID)
        }
    }

    private static func keysQuery(_ deviceID: DeviceID) -> PostgresQuery {
        """
        SELECT account_id, agreement_key, agreement_signature, signed_prekey_id, signed_prekey, signed_prekey_signature,
               last_resort_id, last_resort_key, last_resort_signature
        FROM device_keys WHERE device_id = \(deviceID.rawValue)
        """
    }

    private static func keys(_ rows: PostgresRowSequence, _ deviceID: DeviceID) async throws -> DeviceKeyRecord? {
        for try await row in rows {
            let (account, agreement, agreementSignature, signedID, signed, signedSignature, lastID, last, lastSignature) =
                try row.decode((UUID, Data, Data, Int64, Data, Data, Int64, Data, Data).self)
            return DeviceKeyRecord(
                deviceID: deviceID, accountID: AccountID(account), agreementKey: agreement,
                agreementSignature: agreementSignature,
                signedPrekey: StoredPrekey(kind: 1, id: signedID, publicKey: signed, signature: signedSignature),
                lastResortPrekey: StoredPrekey(kind: 4, id: lastID, publicKey: last, signature: lastSignature))
        }
        return nil
    }

    func claim(for deviceID: DeviceID) async throws -> ClaimedPrekeys? {
        try await withDeadline(timeout, what: "claim prekeys") {
            try await inTransaction(client, logger: logger) { connection in
                guard let keys = try await Self.keys(connection.query(Self.keysQuery(deviceID), logger: logger), deviceID)
                else { return nil }
                // SKIP LOCKED: concurrent claimers each take a different row instead of queueing
                // on the same one; the DELETE makes every key leave exactly once.
                func take(_ kind: Int) async throws -> StoredPrekey? {
                    let rows = try await connection.query(
                        """
                        DELETE FROM one_time_prekeys WHERE (device_id, kind, key_id) = (
                            SELECT device_id, kind, key_id FROM one_time_prekeys
                            WHERE device_id = \(deviceID.rawValue) AND kind = \(Int32(kind))
                            ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
                        RETURNING key_id, public_key, signature
                        """, logger: logger)
                    for try await (id, key, signature) in rows.decode((Int64, Data, Data).self) {
                        return StoredPrekey(kind: kind, id: id, publicKey: key, signature: signature)
                    }
                    return nil
                }
                return ClaimedPrekeys(
                    keys: keys, oneTimePrekey: try await take(StoredPrekey.oneTimeKind),
                    kemPrekey: try await take(StoredPrekey.kemKind))
            }
        }
    }

    func oneTimeCounts(for deviceID: DeviceID) async throws -> (x25519: Int, kem: Int) {
        try await withDeadline(timeout, what: "count prekeys") {
            var counts: [Int: Int] = [:]
            let rows = try await client.query(
                "SELECT kind, count(*) FROM one_time_prekeys WHERE device_id = \(deviceID.rawValue) GROUP BY kind",
                logger: logger)
            for try await (kind, count) in rows.decode((Int32, Int64).self) { counts[Int(kind)] = Int(count) }
            return (counts[StoredPrekey.oneTimeKind] ?? 0, counts[StoredPrekey.kemKind] ?? 0)
        }
    }

    func publishedDevices(of accountID: AccountID) async throws -> [DeviceID] {
        try await withDeadline(timeout, what: "list devices with keys") {
            var devices: [DeviceID] = []
            let rows = try await client.query(
                """
                SELECT k.device_id FROM device_keys k JOIN devices d ON d.id = k.device_id
                WHERE k.account_id = \(accountID.rawValue) AND d.revoked_at IS NULL ORDER BY k.device_id
                """, logger: logger)
            for try await id in rows.decode(UUID.self) { devices.append(DeviceID(id)) }
            return devices
        }
    }

    func deleteKeys(for deviceID: DeviceID) async throws {
        try await withDeadline(timeout, what: "delete device keys") {
            try await inTransaction(client, logger: logger) { connection in
                try await Self.deleteKeys(connection, deviceID, logger: logger)
            }
        }
    }

    func deleteDeviceList(account: AccountID) async throws {
        try await withDeadline(timeout, what: "delete device list") {
            try await client.query("DELETE FROM device_lists WHERE account_id = \(account.rawValue)")
        }
    }

    func deleteOneTimePrekeys(for deviceID: DeviceID) async throws {
        try await withDeadline(timeout, what: "delete one-time prekeys") {
            try await client.query("DELETE FROM one_time_prekeys WHERE device_id = \(deviceID.rawValue)")
        }
    }

    static func deleteKeys(_ connection: PostgresConnection, _ deviceID: DeviceID, logger: Logger) async throws {
        try await connection.query("DELETE FROM one_time_prekeys WHERE device_id = \(deviceID.rawValue)", logger: logger)
        try await connection.query("DELETE FROM device_keys WHERE device_id = \(deviceID.rawValue)", logger: logger)
    }

    func storeDeviceList(account: AccountID, version: Int64, list: Data) async throws -> Bool {
        try await withDeadline(timeout, what: "store device list") {
            try await countRows(
                client.query(
                    """
                    INSERT INTO device_lists (account_id, version, list) VALUES (\(account.rawValue), \(version), \(list))
                    ON CONFLICT (account_id) DO UPDATE SET version = excluded.version, list = excluded.list
                    WHERE excluded.version > device_lists.version
                    RETURNING 1
                    """, logger: logger)) == 1
        }
    }

    func deviceList(account: AccountID) async throws -> (version: Int64, list: Data)? {
        try await withDeadline(timeout, what: "find device list") {
            let rows = try await client.query(
                "SELECT version, list FROM device_lists WHERE account_id = \(account.rawValue)", logger: logger)
            for try await (version, list) in rows.decode((Int64, Data).self) { return (version, list) }
            return nil
        }
    }
}

struct PostgresSecretStore: ServerSecretStore {
    let client: PostgresClient
    let timeout: Duration

    func secret(named name: String, create: @Sendable () -> Data) async throws -> Data {
        let candidate = create()
        return try await withDeadline(timeout, what: "read server secret") {
            // The first node's value wins; every later node reads that one.
            try await client.query(
                "INSERT INTO server_secrets (name, value) VALUES (\(name), \(candidate)) ON CONFLICT DO NOTHING")
            for try await value in try await client.query("SELECT value FROM server_secrets WHERE name = \(name)").decode(
                Data.self)
            {
                return value
            }
            throw StorageUnavailable("the server secret \(name) vanished")
        }
    }
}
