import ArgumentParser
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographServer
import HeliographStore
import HeliographStorePostgres
import Logging

/// `heliograph`: the Heliograph server.
@main
struct HeliographCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heliograph",
        abstract: "The Heliograph messaging server.",
        subcommands: [Serve.self, Migrate.self, Admin.self],
        defaultSubcommand: Serve.self
    )
}

/// Options shared by the subcommands that open the database.
struct StorageOptions: ParsableArguments {
    @Option(
        name: .customLong("data-dir"),
        help: "Directory of the SQLite database, created if missing. (env: HELIOGRAPH_DATA_DIR; default: ./heliograph-data)")
    var dataDirectory: String?

    @Option(
        name: .customLong("database"),
        help: """
            PostgreSQL URL (postgres://user:password@host:5432/db[?sslmode=require]) to use instead of \
            SQLite; several nodes may share one. (env: HELIOGRAPH_DATABASE_URL)
            """)
    var databaseURL: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error. (env: HELIOGRAPH_LOG_LEVEL; default: info)")
    var logLevel: String?

    func resolvedDataDirectory(_ environment: [String: String]) -> URL {
        URL(fileURLWithPath: dataDirectory ?? environment["HELIOGRAPH_DATA_DIR"] ?? "heliograph-data")
    }

    @Option(help: "Log format: text, or json for one JSON object per line. (env: HELIOGRAPH_LOG_FORMAT; default: text)")
    var logFormat: String?

    func logger(_ environment: [String: String]) throws -> Logger {
        let text = logLevel ?? environment["HELIOGRAPH_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: text) else {
            throw ValidationError("unknown log level '\(text)'; use trace, debug, info, notice, warning or error")
        }
        let format = logFormat ?? environment["HELIOGRAPH_LOG_FORMAT"] ?? "text"
        var logger: Logger
        switch format {
        case "text": logger = Logger(label: "heliograph")
        case "json": logger = Logger(label: "heliograph") { JSONLogHandler(label: $0) }
        default: throw ValidationError("unknown log format '\(format)'; use text or json")
        }
        logger.logLevel = level
        return logger
    }

    /// Opens PostgreSQL when a URL is given, else SQLite in the data directory; migrates either.
    func openStorage(_ environment: [String: String], logger: Logger) async throws -> any HeliographStorage {
        if let url = databaseURL ?? environment["HELIOGRAPH_DATABASE_URL"], !url.isEmpty {
            let location: PostgresLocation
            do {
                location = try PostgresLocation(url: url)
            } catch {
                throw ValidationError(error.message)
            }
            do {
                return try await PostgresStorage(location: location, logger: logger)
            } catch let error as StorageError {
                throw ValidationError("cannot use \(location): \(error)")
            } catch let error as StorageUnavailable {
                throw ValidationError(error.detail)
            }
        }
        let directory = resolvedDataDirectory(environment)
        do {
            return try SQLiteStorage(directory: directory)
        } catch let error as StorageError {
            throw ValidationError("cannot open \(directory.path): \(error)")
        } catch {
            throw ValidationError("cannot open the database in \(directory.path): \(error)")
        }
    }

    /// What `migrate` reports: the database, without any password.
    func describe(_ environment: [String: String]) -> String {
        if let url = databaseURL ?? environment["HELIOGRAPH_DATABASE_URL"], !url.isEmpty,
            let location = try? PostgresLocation(url: url)
        {
            return "\(location)"
        }
        return resolvedDataDirectory(environment).path
    }
}

/// Prints a start-up failure as one line on stderr and exits 1, without the usage text.
func reportingFailures(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ValidationError {
        FileHandle.standardError.write(Data("heliograph: \(error.message)\n".utf8))
        throw ExitCode.failure
    }
}

extension HeliographCommand {
    /// `heliograph serve`: run the server until SIGINT or SIGTERM.
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the server (SQLite in --data-dir by default, PostgreSQL with --database).",
            discussion: """
                Every option can also be set by the environment variable named in its help; a flag \
                wins over the environment. SIGINT or SIGTERM stop accepting connections, finish \
                requests in flight and close sockets with a reconnect hint.
                """)

        @OptionGroup var storage: StorageOptions
        @OptionGroup var franking: FrankingKeyOptions

        @Option(help: "Address to listen on. (env: HELIOGRAPH_HOST; default: 127.0.0.1)")
        var host: String?

        @Option(help: "TCP port; 0 picks a free one. (env: HELIOGRAPH_PORT; default: 8080)")
        var port: Int?

        @Option(
            help: """
                The URL clients use to reach this server, such as https://chat.example.org; login proofs \
                must name it. (env: HELIOGRAPH_PUBLIC_ORIGIN; default: http://HOST:PORT, plus the loopback \
                names when listening on loopback or all addresses)
                """)
        var publicOrigin: String?

        @Option(help: "Largest WebSocket frame or HTTP body, in bytes. (env: HELIOGRAPH_MAX_FRAME_BYTES; default: 262144)")
        var maxFrameBytes: Int?

        @Option(help: "Largest envelope payload, in bytes. (env: HELIOGRAPH_MAX_ENVELOPE_BYTES; default: 131072)")
        var maxEnvelopeBytes: Int?

        @Option(help: "Days an unacknowledged envelope is kept. (env: HELIOGRAPH_RETENTION_DAYS; default: 30)")
        var retentionDays: Double?

        @Option(help: "Days a session token stays valid. (env: HELIOGRAPH_TOKEN_DAYS; default: 90)")
        var tokenDays: Double?

        @Option(help: "Sends per second per account, 0 for no limit. (env: HELIOGRAPH_ACCOUNT_SEND_RATE; default: 50)")
        var accountSendRate: Double?

        @Option(
            help:
                "Sends per second from one account to one recipient, 0 for no limit. (env: HELIOGRAPH_PAIR_SEND_RATE; default: 20)"
        )
        var pairSendRate: Double?

        @Option(
            help:
                "Posts and message operations per second per account in groups and channels, 0 for no limit. (env: HELIOGRAPH_ACCOUNT_POST_RATE; default: 20)"
        )
        var accountPostRate: Double?

        @Option(
            help:
                "How many updates behind a device may be in one chat and still get the gap; further behind it refetches the history. (env: HELIOGRAPH_CHAT_GAP_LIMIT; default: 1000)"
        )
        var chatGapLimit: Int?

        @Option(help: "Largest file one upload may hold, in MiB. (env: HELIOGRAPH_MAX_UPLOAD_MIB; default: 2048)")
        var maxUploadMib: Int?

        @Option(
            help: "MiB each account may upload per 24 hours, 0 for no quota. (env: HELIOGRAPH_UPLOAD_QUOTA_MIB; default: 20480)"
        )
        var uploadQuotaMib: Int?

        @Option(help: "New uploads per second per account, 0 for no limit. (env: HELIOGRAPH_UPLOAD_RATE; default: 1)")
        var uploadRate: Double?

        @Option(
            help:
                "Minutes a blob that no message holds any more is kept before deletion. (env: HELIOGRAPH_BLOB_GRACE_MINUTES; default: 60)"
        )
        var blobGraceMinutes: Int?

        @Option(
            help: """
                Registrations and logins per second, server-wide (the ceiling above the per-address and \
                per-account limits); 0 turns every registration and login limit off, for load tests. \
                (env: HELIOGRAPH_AUTH_RATE; default: 100, burst 1000)
                """)
        var authRate: Double?

        @Option(
            help: """
                Registrations per second from one client address, 0 for no limit. \
                (env: HELIOGRAPH_REGISTER_ADDRESS_RATE; default: 0.0333, one per 30 s)
                """)
        var registerAddressRate: Double?

        @Option(
            help: """
                Registrations from one client address in a burst. \
                (env: HELIOGRAPH_REGISTER_ADDRESS_BURST; default: 20)
                """)
        var registerAddressBurst: Double?

        @Option(
            help: """
                Login challenges (and as many logins) per second from one client address, 0 for no limit. \
                (env: HELIOGRAPH_LOGIN_ADDRESS_RATE; default: 0.5)
                """)
        var loginAddressRate: Double?

        @Option(
            help: """
                Login challenges (and logins) from one client address in a burst. \
                (env: HELIOGRAPH_LOGIN_ADDRESS_BURST; default: 30)
                """)
        var loginAddressBurst: Double?

        @Option(
            help: """
                Login challenges (and as many logins) per second for one account, 0 for no limit. \
                (env: HELIOGRAPH_LOGIN_ACCOUNT_RATE; default: 0.1)
                """)
        var loginAccountRate: Double?

        @Option(
            help: """
                Login challenges (and logins) for one account in a burst. \
                (env: HELIOGRAPH_LOGIN_ACCOUNT_BURST; default: 10)
                """)
        var loginAccountBurst: Double?

        @Option(
            help: """
                fetchKeys calls per second by one account, 0 for no limit. \
                (env: HELIOGRAPH_FETCH_KEYS_ACCOUNT_RATE; default: 0.1)
                """)
        var fetchKeysAccountRate: Double?

        @Option(
            help: """
                fetchKeys calls by one account in a burst. \
                (env: HELIOGRAPH_FETCH_KEYS_ACCOUNT_BURST; default: 30)
                """)
        var fetchKeysAccountBurst: Double?

        @Option(
            help: """
                Prekey bundles per second handed out for one device, 0 for no limit. \
                (env: HELIOGRAPH_FETCH_KEYS_DEVICE_RATE; default: 0.0167, one per minute)
                """)
        var fetchKeysDeviceRate: Double?

        @Option(
            help: """
                Prekey bundles handed out for one device in a burst. \
                (env: HELIOGRAPH_FETCH_KEYS_DEVICE_BURST; default: 10)
                """)
        var fetchKeysDeviceBurst: Double?

        @Flag(
            help: """
                Count each request against the last address in X-Forwarded-For instead of the TCP peer. \
                Only behind a proxy that appends it, with the server unreachable otherwise. \
                (env: HELIOGRAPH_TRUST_FORWARDED_FOR=1; default: off)
                """)
        var trustForwardedFor = false

        @Option(
            help: """
                Serve GET /metrics on a separate HOST:PORT listener (and not on the main port). \
                (env: HELIOGRAPH_METRICS_ADDRESS)
                """)
        var metricsAddress: String?

        @Option(
            help: """
                Require 'Authorization: Bearer TOKEN' on GET /metrics; prefer the environment, which ps does not \
                show. Without a token or a metrics address, metrics answer only this machine. \
                (env: HELIOGRAPH_METRICS_TOKEN)
                """)
        var metricsToken: String?

        @Option(
            help: """
                Seconds a client may take to send a request's line and headers (from connecting, or from the \
                previous response); then the connection closes. (env: HELIOGRAPH_HEADER_TIMEOUT; default: 10)
                """)
        var headerTimeout: Double?

        @Option(
            help: """
                Seconds a WebSocket may stay open without authenticating. \
                (env: HELIOGRAPH_UNAUTHENTICATED_SOCKET_TIMEOUT; default: 30)
                """)
        var unauthenticatedSocketTimeout: Double?

        @Option(
            help: """
                Open connections one client address (IPv6: one /64) may hold, 0 for no limit; load tests from one \
                machine need 0. (env: HELIOGRAPH_MAX_CONNECTIONS_PER_ADDRESS; default: 64)
                """)
        var maxConnectionsPerAddress: Int?

        @Option(
            help: """
                Open connections in all; more are answered 503 and closed at once. Keep it below the descriptor \
                limit (ulimit -n). (env: HELIOGRAPH_MAX_CONNECTIONS; default: the descriptor limit minus 128)
                """)
        var maxConnections: Int?

        @Option(help: "Write the bound port to this file once listening (for scripts and tests). (env: HELIOGRAPH_PORT_FILE)")
        var portFile: String?

        func run() async throws {
            try await reportingFailures { try await serve() }
        }

        func serve() async throws {
            let environment = ProcessInfo.processInfo.environment
            let logger = try storage.logger(environment)
            var resolved = try resolve(environment)
            let sealingKeySource = try franking.source(environment, storage: self.storage)
            let storage = try await self.storage.openStorage(environment, logger: logger)
            do {
                _ = try await franking.prepare(
                    &resolved, source: sealingKeySource, storage: storage, logger: logger, environment: environment)
            } catch {
                try? await storage.close()
                throw error
            }
            let configuration = resolved
            let portFile = portFile ?? environment["HELIOGRAPH_PORT_FILE"]
            let sockets = SocketRegistry()
            let app = buildApplication(
                configuration: configuration, storage: storage, logger: logger, sockets: sockets,
                onServerRunning: { port in
                    logger.info("heliograph listening", metadata: ["address": "http://\(configuration.host):\(port)"])
                    if let portFile {
                        try? "\(port)\n".write(toFile: portFile, atomically: true, encoding: .utf8)
                    }
                },
                onMetricsServerRunning: { port in
                    let host = configuration.metricsAddress.map { MetricsAddress(host: $0.host, port: port) }
                    logger.info("metrics listening", metadata: ["address": "http://\(host?.description ?? "?")/metrics"])
                })
            try await runUntilSignalled(app, sockets: sockets, grace: configuration.shutdownGrace, logger: logger)
            logger.info("heliograph stopped")
        }

        /// Flags win over `HELIOGRAPH_*` variables, which win over defaults.
        func resolve(_ environment: [String: String]) throws -> ServerConfiguration {
            var configuration = ServerConfiguration()
            func value<T: LosslessStringConvertible>(_ flag: T?, _ name: String) throws -> T? {
                if let flag { return flag }
                guard let text = environment[name] else { return nil }
                guard let parsed = T(text) else { throw ValidationError("\(name)='\(text)' is not a valid value") }
                return parsed
            }
            if let host = try value(host, "HELIOGRAPH_HOST") { configuration.host = host }
            if let port = try value(port, "HELIOGRAPH_PORT") {
                guard (0...65535).contains(port) else { throw ValidationError("port must be 0-65535") }
                configuration.port = port
            }
            if let origin = publicOrigin ?? environment["HELIOGRAPH_PUBLIC_ORIGIN"], !origin.isEmpty {
                do {
                    configuration.publicOrigin = try ServerOrigin(parsing: origin)
                } catch {
                    throw ValidationError("--public-origin: \(error.message)")
                }
            }
            if let bytes = try value(maxFrameBytes, "HELIOGRAPH_MAX_FRAME_BYTES") {
                guard bytes >= 1024 else { throw ValidationError("max frame size must be at least 1024 bytes") }
                configuration.maxFrameBytes = bytes
            }
            if let bytes = try value(maxEnvelopeBytes, "HELIOGRAPH_MAX_ENVELOPE_BYTES") {
                guard bytes >= 1 else { throw ValidationError("max envelope size must be positive") }
                configuration.maxEnvelopeBytes = bytes
            }
            if let days = try value(retentionDays, "HELIOGRAPH_RETENTION_DAYS") {
                guard days > 0 else { throw ValidationError("retention must be positive") }
                configuration.retention = .seconds(days * 86400)
            }
            if let days = try value(tokenDays, "HELIOGRAPH_TOKEN_DAYS") {
                guard days > 0 else { throw ValidationError("token lifetime must be positive") }
                configuration.tokenLifetime = .seconds(days * 86400)
            }
            if let rate = try value(accountSendRate, "HELIOGRAPH_ACCOUNT_SEND_RATE") {
                guard rate >= 0 else { throw ValidationError("rates must not be negative") }
                configuration.accountSendRate = rate
                configuration.accountSendBurst = max(configuration.accountSendBurst, rate * 4)
            }
            if let rate = try value(accountPostRate, "HELIOGRAPH_ACCOUNT_POST_RATE") {
                guard rate >= 0 else { throw ValidationError("rates must not be negative") }
                configuration.accountPostRate = rate
                configuration.accountPostBurst = max(configuration.accountPostBurst, rate * 4)
            }
            if let mib = try value(maxUploadMib, "HELIOGRAPH_MAX_UPLOAD_MIB") {
                guard mib >= 1 else { throw ValidationError("the upload limit must be at least 1 MiB") }
                configuration.media.maxUploadBytes = Int64(mib) * 1024 * 1024
            }
            if let mib = try value(uploadQuotaMib, "HELIOGRAPH_UPLOAD_QUOTA_MIB") {
                guard mib >= 0 else { throw ValidationError("the upload quota must not be negative") }
                configuration.media.quotaBytes = Int64(mib) * 1024 * 1024
            }
            if let rate = try value(uploadRate, "HELIOGRAPH_UPLOAD_RATE") {
                guard rate >= 0 else { throw ValidationError("rates must not be negative") }
                configuration.accountUploadRate = rate
                configuration.accountUploadBurst = max(configuration.accountUploadBurst, rate * 4)
            }
            if let minutes = try value(blobGraceMinutes, "HELIOGRAPH_BLOB_GRACE_MINUTES") {
                guard minutes >= 0 else { throw ValidationError("the blob grace period must not be negative") }
                configuration.media.grace = .seconds(minutes * 60)
            }
            if let limit = try value(chatGapLimit, "HELIOGRAPH_CHAT_GAP_LIMIT") {
                guard limit >= 1 else { throw ValidationError("the chat gap limit must be at least 1") }
                configuration.chatGapLimit = limit
            }
            if let rate = try value(pairSendRate, "HELIOGRAPH_PAIR_SEND_RATE") {
                guard rate >= 0 else { throw ValidationError("rates must not be negative") }
                configuration.pairSendRate = rate
                configuration.pairSendBurst = max(configuration.pairSendBurst, rate * 4)
            }
            if let rate = try value(authRate, "HELIOGRAPH_AUTH_RATE") {
                guard rate >= 0 else { throw ValidationError("rates must not be negative") }
                configuration.authRate = rate
                configuration.authBurst = max(configuration.authBurst, rate * 4)
                if rate == 0 {
                    // Load tests register and log in thousands of times from one address; the
                    // finer limits below may still be set explicitly.
                    configuration.registerAddressRate = 0
                    configuration.loginAddressRate = 0
                    configuration.loginAccountRate = 0
                }
            }
            func limit(
                _ rate: Double?, _ rateName: String, _ burst: Double?, _ burstName: String,
                _ field: WritableKeyPath<ServerConfiguration, Double>,
                _ burstField: WritableKeyPath<ServerConfiguration, Double>
            ) throws {
                if let rate = try value(rate, rateName) {
                    guard rate >= 0, rate.isFinite else { throw ValidationError("rates must not be negative") }
                    configuration[keyPath: field] = rate
                }
                if let burst = try value(burst, burstName) {
                    guard burst >= 1, burst.isFinite else { throw ValidationError("bursts must be at least 1") }
                    configuration[keyPath: burstField] = burst
                }
            }
            try limit(
                registerAddressRate, "HELIOGRAPH_REGISTER_ADDRESS_RATE", registerAddressBurst,
                "HELIOGRAPH_REGISTER_ADDRESS_BURST", \.registerAddressRate, \.registerAddressBurst)
            try limit(
                loginAddressRate, "HELIOGRAPH_LOGIN_ADDRESS_RATE", loginAddressBurst, "HELIOGRAPH_LOGIN_ADDRESS_BURST",
                \.loginAddressRate, \.loginAddressBurst)
            try limit(
                loginAccountRate, "HELIOGRAPH_LOGIN_ACCOUNT_RATE", loginAccountBurst, "HELIOGRAPH_LOGIN_ACCOUNT_BURST",
                \.loginAccountRate, \.loginAccountBurst)
            try limit(
                fetchKeysAccountRate, "HELIOGRAPH_FETCH_KEYS_ACCOUNT_RATE", fetchKeysAccountBurst,
                "HELIOGRAPH_FETCH_KEYS_ACCOUNT_BURST", \.fetchKeysAccountRate, \.fetchKeysAccountBurst)
            try limit(
                fetchKeysDeviceRate, "HELIOGRAPH_FETCH_KEYS_DEVICE_RATE", fetchKeysDeviceBurst,
                "HELIOGRAPH_FETCH_KEYS_DEVICE_BURST", \.fetchKeysDeviceRate, \.fetchKeysDeviceBurst)
            if trustForwardedFor {
                configuration.trustForwardedFor = true
            } else if let text = environment["HELIOGRAPH_TRUST_FORWARDED_FOR"] {
                switch text.lowercased() {
                case "1", "true", "yes", "on": configuration.trustForwardedFor = true
                case "0", "false", "no", "off", "": configuration.trustForwardedFor = false
                default: throw ValidationError("HELIOGRAPH_TRUST_FORWARDED_FOR='\(text)' is not 1 or 0")
                }
            }
            if let text = metricsAddress ?? environment["HELIOGRAPH_METRICS_ADDRESS"], !text.isEmpty {
                guard let address = MetricsAddress(parsing: text) else {
                    throw ValidationError("metrics address '\(text)' is not HOST:PORT (e.g. 127.0.0.1:9090 or [::1]:9090)")
                }
                configuration.metricsAddress = address
            }
            if let token = metricsToken ?? environment["HELIOGRAPH_METRICS_TOKEN"], !token.isEmpty {
                guard token.count >= 16 else {
                    throw ValidationError("the metrics token must be at least 16 characters (e.g. openssl rand -hex 32)")
                }
                configuration.metricsToken = token
            }
            if let seconds = try value(headerTimeout, "HELIOGRAPH_HEADER_TIMEOUT") {
                guard seconds > 0, seconds.isFinite else { throw ValidationError("the header timeout must be positive") }
                configuration.headerTimeout = .milliseconds(Int64(seconds * 1000))
            }
            if let seconds = try value(unauthenticatedSocketTimeout, "HELIOGRAPH_UNAUTHENTICATED_SOCKET_TIMEOUT") {
                guard seconds > 0, seconds.isFinite else {
                    throw ValidationError("the unauthenticated socket timeout must be positive")
                }
                configuration.unauthenticatedSocketTimeout = .milliseconds(Int64(seconds * 1000))
            }
            if let count = try value(maxConnectionsPerAddress, "HELIOGRAPH_MAX_CONNECTIONS_PER_ADDRESS") {
                guard count >= 0 else { throw ValidationError("max connections per address must not be negative") }
                configuration.maxConnectionsPerAddress = count
            }
            if let count = try value(maxConnections, "HELIOGRAPH_MAX_CONNECTIONS") {
                guard count >= 1 else { throw ValidationError("max connections must be at least 1") }
                configuration.maxConnections = count
            }
            return configuration
        }
    }

    /// `heliograph migrate`: bring the database schema up to date and exit.
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create or upgrade the database schema, then exit.")

        @OptionGroup var storage: StorageOptions

        func run() async throws {
            try await reportingFailures { try await migrate() }
        }

        func migrate() async throws {
            let environment = ProcessInfo.processInfo.environment
            let logger = try storage.logger(environment)
            let opened = try await storage.openStorage(environment, logger: logger)
            try await opened.close()
            print("database \(storage.describe(environment)) is up to date")
        }
    }
}
