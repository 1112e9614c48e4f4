import Foundation
import HeliographStore
import Logging
import PostgresNIO

/// Operations on a PostgreSQL server outside one Heliograph database: for tests, the load
/// tool and operators' scripts.
public enum PostgresAdministration {
    /// Creates an empty database `name` on the server at `admin` and returns its location.
    /// `name` must be a plain identifier (letters, digits, `_`).
    public static func createDatabase(
        named name: String, using admin: PostgresLocation, logger: Logger
    ) async throws
        -> PostgresLocation
    {
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
            throw StorageUnavailable("database names must be letters, digits and '_'")
        }
        try await execute("CREATE DATABASE \(name)", at: admin, logger: logger)
        var location = admin
        location.database = name
        return location
    }

    /// Runs one statement on its own connection (statements such as CREATE DATABASE cannot
    /// run inside the pool's transactions).
    public static func execute(_ sql: String, at location: PostgresLocation, logger: Logger) async throws {
        let configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.username, password: location.password,
            database: location.database, tls: location.tls)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        do {
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }
}
