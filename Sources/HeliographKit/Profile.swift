import Foundation
import HeliographCore

/// Everything one device keeps locally: where its server is, who it is, and its secrets.
///
/// Stored as JSON with file mode 0600 in a 0700 directory, because it holds the identity
/// private key and the session token; with a passphrase the whole file is sealed (see
/// ``PassphraseSealer``), so neither secret is on disk in the clear and no field (the server
/// URL included) can be changed unnoticed.
public struct Profile: Codable, Sendable, Equatable {
    /// The server's base URL.
    public var server: URL
    /// The account's name.
    public var username: String
    /// The account id.
    public var accountID: AccountID
    /// This device.
    public var deviceID: DeviceID
    /// The label given at login.
    public var deviceName: String
    /// The bearer session token.
    public var token: String
    /// The 32-byte Ed25519 identity private key seed.
    public var identityPrivateKey: Data
    /// The highest inbox sequence number processed and acknowledged; delivery resumes after it.
    public var lastAcknowledged: Int64
    /// Per group or channel (by id): the last position of its log this device processed.
    public var chatPositions: [String: Int64]?

    /// Creates a profile.
    public init(
        server: URL, username: String, accountID: AccountID, deviceID: DeviceID, deviceName: String, token: String,
        identityPrivateKey: Data, lastAcknowledged: Int64 = 0
    ) {
        self.server = server
        self.username = username
        self.accountID = accountID
        self.deviceID = deviceID
        self.deviceName = deviceName
        self.token = token
        self.identityPrivateKey = identityPrivateKey
        self.lastAcknowledged = lastAcknowledged
    }
}

/// Named profiles in a directory, one file each (`NAME.json`), so several people or devices can
/// share one machine.
public struct ProfileStore: Sendable {
    /// The directory holding the profiles.
    public let directory: URL
    /// Seals profiles and key files when a passphrase is set.
    let sealer: PassphraseSealer?

    /// A store in `directory`. With a `passphrase`, profiles (and the key files of clients
    /// opened from this store) are sealed, and plain ones are refused.
    public init(directory: URL, passphrase: String? = nil) {
        self.directory = directory
        sealer = passphrase.map { PassphraseSealer(passphrase: $0) }
    }

    private init(directory: URL, sealer: PassphraseSealer?) {
        self.directory = directory
        self.sealer = sealer
    }

    /// This store with `passphrase` (this store itself when it is nil or already the one),
    /// sharing derived keys with every store and key file made from the result.
    public func sealing(with passphrase: String?) -> ProfileStore {
        guard let passphrase, passphrase != sealer?.passphrase else { return self }
        return ProfileStore(directory: directory, sealer: PassphraseSealer(passphrase: passphrase))
    }

    /// Whether profiles are sealed with a passphrase.
    public var isSealed: Bool { sealer != nil }

    /// The default directory: `$XDG_CONFIG_HOME/heliograph`, else `~/.config/heliograph`.
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let xdg = environment["XDG_CONFIG_HOME"], !xdg.isEmpty {
            return URL(fileURLWithPath: xdg).appendingPathComponent("heliograph")
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return URL(fileURLWithPath: home).appendingPathComponent(".config").appendingPathComponent("heliograph")
    }

    /// The file of a profile.
    public func file(for name: String) throws -> URL {
        guard !name.isEmpty, name.utf8.count <= 64,
            name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }), !name.hasPrefix(".")
        else {
            throw HeliographError(.badRequest, "profile names may contain letters, digits, '-', '_' and '.'")
        }
        return directory.appendingPathComponent("\(name).json")
    }

    /// Whether a profile exists.
    public func exists(_ name: String) -> Bool {
        guard let file = try? file(for: name) else { return false }
        return FileManager.default.fileExists(atPath: file.path)
    }

    /// Loads a profile, or throws a readable error when there is none, when it is sealed and
    /// no passphrase is set, or when it is plain although a passphrase is set.
    public func load(_ name: String) throws -> Profile {
        let file = try file(for: name)
        guard let data = FileManager.default.contents(atPath: file.path) else {
            throw HeliographError(
                .badRequest, "no profile '\(name)' in \(directory.path); run 'helio register NAME' first")
        }
        // A plain profile while a passphrase is set would let whoever wrote it choose the server
        // this device talks to and the key it uses.
        let plain = try PassphraseSealer.plainContent(
            of: data, sealer: sealer, purpose: "profile", file: file, what: "the profile")
        do {
            return try JSONDecoder().decode(Profile.self, from: plain)
        } catch {
            throw HeliographError(.badRequest, "the profile file \(file.path) is damaged: \(error)")
        }
    }

    /// Saves a profile atomically with mode 0600, sealed when the store has a passphrase.
    public func save(_ profile: Profile, as name: String) throws {
        let file = try file(for: name)
        try FileManager.default.createDirectory(
            at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(profile)
        try writePrivateFile(try sealer?.seal(data, purpose: "profile") ?? data, to: file)
    }

    /// Seals a profile, and its key file, that were written without this store's passphrase
    /// (or by a version that left profiles plain). Call it only on the person's explicit word
    /// that they wrote these files themselves: it is exactly the acceptance of a plain file that
    /// ``load(_:)`` refuses. Files already sealed are left as they are.
    public func sealPlainFiles(of name: String) throws {
        guard sealer != nil else { throw HeliographError(.badRequest, "no passphrase is set to seal with") }
        let plainStore = ProfileStore(directory: directory)
        let file = try file(for: name)
        if let data = FileManager.default.contents(atPath: file.path), !PassphraseSealer.isSealed(data) {
            try save(try plainStore.load(name), as: name)
        }
        try KeyStoreFile(profile: name, store: self).sealIfPlain()
    }
}

/// Writes `data` to `file` for its owner only (mode 0600), atomically and durably.
///
/// The bytes go to a private temporary file beside it, which is fsynced; rename(2) then
/// replaces the old file, and the directory is fsynced so the rename itself is on disk. A
/// crash leaves the old or the new content, never half, and once this returns a power loss
/// cannot bring the old content back — for the key file that would roll the ratchet back to
/// a state that already sent messages. The secret is never readable by others, not even for
/// an instant.
func writePrivateFile(_ data: Data, to file: URL) throws {
    let directory = file.deletingLastPathComponent()
    // A name of its own per write: two writers (two tasks, or a `listen` and a command) must not
    // rename each other's half-written file into place or find theirs gone.
    let temporary = directory.appendingPathComponent("." + file.lastPathComponent + "." + UUID().uuidString + ".tmp")
    FileManager.default.createFile(atPath: temporary.path, contents: nil, attributes: [.posixPermissions: 0o600])
    let handle = try FileHandle(forWritingTo: temporary)
    try handle.truncate(atOffset: 0)
    try handle.write(contentsOf: data)
    try handle.synchronize()
    try handle.close()
    guard rename(temporary.path, file.path) == 0 else {
        throw HeliographError(.internalError, "cannot save \(file.path): \(String(cString: strerror(errno)))")
    }
    let descriptor = open(directory.path, O_RDONLY)
    guard descriptor >= 0 else {
        throw HeliographError(.internalError, "cannot open \(directory.path): \(String(cString: strerror(errno)))")
    }
    defer { close(descriptor) }
    guard fsync(descriptor) == 0 else {
        throw HeliographError(.internalError, "cannot flush \(directory.path): \(String(cString: strerror(errno)))")
    }
}
