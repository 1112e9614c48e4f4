import Foundation
import HeliographCore

/// Everything one device keeps locally: where its server is, who it is, and its secrets.
///
/// Stored as JSON with file mode 0600 in a 0700 directory, because it holds the identity
/// private key and the session token.
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

    /// A store in `directory`.
    public init(directory: URL) { self.directory = directory }

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

    /// Loads a profile, or throws a readable error when there is none.
    public func load(_ name: String) throws -> Profile {
        let file = try file(for: name)
        guard let data = FileManager.default.contents(atPath: file.path) else {
            throw HeliographError(
                .badRequest, "no profile '\(name)' in \(directory.path); run 'helio register NAME' first")
        }
        do {
            return try JSONDecoder().decode(Profile.self, from: data)
        } catch {
            throw HeliographError(.badRequest, "the profile file \(file.path) is damaged: \(error)")
        }
    }

    /// Saves a profile atomically with mode 0600.
    public func save(_ profile: Profile, as name: String) throws {
        let file = try file(for: name)
        try FileManager.default.createDirectory(
            at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(profile)
        try writePrivateFile(data, to: file)
    }
}

/// Writes `data` to `file` for its owner only (mode 0600), atomically and durably.
///
/// The bytes go to a private temporary file beside it, are flushed, and then rename(2)
/// replaces the old file: a crash leaves the old or the new content, never half, and the
/// secret is never readable by others, not even for an instant.
func writePrivateFile(_ data: Data, to file: URL) throws {
    let temporary = file.deletingLastPathComponent().appendingPathComponent("." + file.lastPathComponent + ".tmp")
    FileManager.default.createFile(atPath: temporary.path, contents: nil, attributes: [.posixPermissions: 0o600])
    let handle = try FileHandle(forWritingTo: temporary)
    try handle.truncate(atOffset: 0)
    try handle.write(contentsOf: data)
    try handle.synchronize()
    try handle.close()
    guard rename(temporary.path, file.path) == 0 else {
        throw HeliographError(.internalError, "cannot save \(file.path): \(String(cString: strerror(errno)))")
    }
}
