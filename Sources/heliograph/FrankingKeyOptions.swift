import ArgumentParser
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographServer
import HeliographStore
import Logging

/// Where the franking sealing key comes from, and how long replaced franking keys are kept:
/// options of `serve` and `admin rotate-franking-key`.
struct FrankingKeyOptions: ParsableArguments {
    /// The file name of the sealing key the embedded setup creates beside its database.
    static let defaultFileName = "franking-sealing.key"

    @Option(
        name: .customLong("franking-sealing-key-file"),
        help: """
            File with the key that seals the franking keys in the database: 32 random bytes, raw or \
            base64. Keep it out of database backups. (env: HELIOGRAPH_FRANKING_SEALING_KEY_FILE, or the \
            key itself in HELIOGRAPH_FRANKING_SEALING_KEY as base64; default with SQLite: \
            DATA_DIR/franking-sealing.key, created on first start; required with PostgreSQL)
            """)
    var sealingKeyFile: String?

    @Option(
        name: .customLong("franking-key-retention-days"),
        help: """
            Days a replaced franking key is kept so reports of older messages still verify. \
            (env: HELIOGRAPH_FRANKING_KEY_RETENTION_DAYS; default: 400)
            """)
    var retentionDays: Double?

    /// Where the sealing key is read from.
    enum Source {
        /// A file; `createIfMissing` for the embedded setup's default file.
        case file(URL, createIfMissing: Bool)
        /// `HELIOGRAPH_FRANKING_SEALING_KEY`.
        case environment(String)
    }

    /// Decides where the key comes from before the database is opened, so a PostgreSQL node
    /// without one stops at once with what to do. A flag wins over the variables.
    func source(_ environment: [String: String], storage: StorageOptions) throws -> Source {
        if let path = sealingKeyFile, !path.isEmpty { return .file(URL(fileURLWithPath: path), createIfMissing: false) }
        if let value = environment["HELIOGRAPH_FRANKING_SEALING_KEY"], !value.isEmpty { return .environment(value) }
        if let path = environment["HELIOGRAPH_FRANKING_SEALING_KEY_FILE"], !path.isEmpty {
            return .file(URL(fileURLWithPath: path), createIfMissing: false)
        }
        if let url = storage.databaseURL ?? environment["HELIOGRAPH_DATABASE_URL"], !url.isEmpty {
            throw ValidationError(
                """
                PostgreSQL needs a franking sealing key that every node shares and the database never holds: \
                give --franking-sealing-key-file PATH or HELIOGRAPH_FRANKING_SEALING_KEY (32 random bytes, base64, \
                e.g. from `openssl rand -base64 32`); see docs/operations.md
                """)
        }
        return .file(
            storage.resolvedDataDirectory(environment).appendingPathComponent(Self.defaultFileName), createIfMissing: true)
    }

    /// How long replaced keys are kept.
    func retention(_ environment: [String: String]) throws -> Duration {
        var days = 400.0
        if let retentionDays {
            days = retentionDays
        } else if let text = environment["HELIOGRAPH_FRANKING_KEY_RETENTION_DAYS"] {
            guard let parsed = Double(text) else {
                throw ValidationError("HELIOGRAPH_FRANKING_KEY_RETENTION_DAYS='\(text)' is not a valid value")
            }
            days = parsed
        }
        guard days > 0, days.isFinite else {
            throw ValidationError("the franking key retention must be a positive number of days")
        }
        return .seconds(days * 86400)
    }

    /// Reads the sealing key. The embedded setup's default file is created (mode 0600) only
    /// while the database holds no sealed key: otherwise a lost file would silently become a
    /// new key under which none of the stored keys opens.
    func sealingKey(from source: Source, storage: any HeliographStorage, logger: Logger) async throws -> ServerSealingKey {
        switch source {
        case .environment(let value):
            do {
                return try ServerSealingKey(encoded: Data(value.utf8))
            } catch {
                throw ValidationError("HELIOGRAPH_FRANKING_SEALING_KEY: \(error.message)")
            }
        case .file(let url, let createIfMissing):
            if !FileManager.default.fileExists(atPath: url.path) {
                let sealedKeys = try await storage.frankingKeys.keys().count
                guard createIfMissing, sealedKeys == 0 else {
                    throw ValidationError(
                        sealedKeys == 0
                            ? "the franking sealing key file \(url.path) does not exist"
                            : "the franking sealing key file \(url.path) does not exist, but the database holds \(sealedKeys) franking keys sealed with it: restore the file from its backup (a new key would not open them)"
                    )
                }
                try create(url)
                logger.notice(
                    "created the franking sealing key; back it up separately from the database",
                    metadata: ["file": "\(url.path)"])
            }
            let contents: Data
            do {
                contents = try Data(contentsOf: url)
            } catch {
                throw ValidationError("cannot read the franking sealing key file \(url.path): \(error.localizedDescription)")
            }
            if let mode = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.posixPermissions] as? Int,
                mode & 0o077 != 0
            {
                logger.warning(
                    "the franking sealing key file is readable by other users; chmod 600 it",
                    metadata: ["file": "\(url.path)", "mode": "\(String(mode, radix: 8))"])
            }
            do {
                return try ServerSealingKey(encoded: contents)
            } catch {
                throw ValidationError("the franking sealing key file \(url.path): \(error.message)")
            }
        }
    }

    /// Writes a new random key, failing rather than replacing a file that appeared meanwhile.
    private func create(_ url: URL) throws {
        let descriptor = open(url.path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else {
            throw ValidationError("cannot create the franking sealing key file \(url.path): \(String(cString: strerror(errno)))")
        }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        do {
            try handle.write(contentsOf: Data(ServerSealingKey.generate().base64.utf8 + [0x0A]))
            try handle.synchronize()
            try handle.close()
        } catch {
            try? FileManager.default.removeItem(at: url)
            throw ValidationError("cannot write the franking sealing key file \(url.path): \(error.localizedDescription)")
        }
    }

    /// Reads the sealing key and checks it opens every stored franking key (sealing a plain
    /// secret of an earlier version and creating the first key on the way); sets both franking
    /// settings of `configuration`.
    func prepare(
        _ configuration: inout ServerConfiguration, source: Source, storage: any HeliographStorage, logger: Logger,
        environment: [String: String]
    ) async throws -> FrankingKeyring {
        configuration.frankingKeyRetention = try retention(environment)
        configuration.frankingSealingKey = try await sealingKey(from: source, storage: storage, logger: logger)
        let keyring = FrankingKeyring(
            store: storage.frankingKeys, sealingKey: configuration.frankingSealingKey, clock: SystemWallClock(),
            retention: configuration.frankingKeyRetention, refreshInterval: configuration.frankingKeyRefreshInterval)
        let state: FrankingKeyring.State
        do {
            state = try await keyring.prepare()
        } catch let error as FrankingKeyError {
            throw ValidationError("cannot use the franking keys: \(error)")
        }
        if state.sealedPlainSecret {
            logger.notice("sealed the plain franking secret of the earlier version as key 0 and deleted the plain copy")
        }
        logger.info("franking keys opened", metadata: ["current": "\(state.currentKeyID)", "keys": "\(state.keyIDs)"])
        return keyring
    }
}

extension HeliographCommand {
    /// `heliograph admin …`: operator tasks on the database.
    struct Admin: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Operator tasks on the database.", subcommands: [RotateFrankingKey.self, SeedChat.self])
    }
}

extension HeliographCommand.Admin {
    /// `heliograph admin rotate-franking-key`: a new current franking key.
    struct RotateFrankingKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-franking-key",
            abstract: "Make a new current franking key; keep the replaced one for verification.",
            discussion: """
                Running servers tag with the new key within a minute and verify tags of every kept \
                key at once. Keys replaced more than --franking-key-retention-days ago are deleted \
                (reports of the messages they tagged no longer verify). Needs the same sealing key \
                as the servers.
                """)

        @OptionGroup var storage: StorageOptions
        @OptionGroup var franking: FrankingKeyOptions

        func run() async throws {
            try await reportingFailures { try await rotate() }
        }

        func rotate() async throws {
            let environment = ProcessInfo.processInfo.environment
            let logger = try storage.logger(environment)
            let source = try franking.source(environment, storage: storage)
            let opened = try await storage.openStorage(environment, logger: logger)
            do {
                var configuration = ServerConfiguration()
                let keyring = try await franking.prepare(
                    &configuration, source: source, storage: opened, logger: logger, environment: environment)
                let (newKeyID, deleted) = try await keyring.rotate()
                let kept = try await opened.frankingKeys.keys().map(\.id).filter { $0 != newKeyID }
                print("franking key \(newKeyID) is now current; running servers switch to it within a minute")
                print("kept for verification: \(kept.isEmpty ? "none" : kept.map(String.init).joined(separator: ", "))")
                if !deleted.isEmpty {
                    print(
                        "deleted (replaced more than \(keyring.retention.components.seconds / 86400) days ago): \(deleted.map(String.init).joined(separator: ", "))"
                    )
                }
            } catch {
                try? await opened.close()
                throw error
            }
            try await opened.close()
        }
    }
}
