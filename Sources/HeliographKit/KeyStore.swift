import Crypto
import CryptoExtras
import Foundation
import HeliographCore
import HeliographCrypto

/// Everything secret a device holds for end-to-end encryption: its agreement key, the private
/// halves of its published prekeys, its sessions and what it knows about its contacts.
public struct DeviceKeyState: Codable, Sendable {
    /// A prekey's private half.
    public struct PrivatePrekey: Codable, Sendable {
        /// X25519 private key bytes, or an ML-KEM-768 seed.
        public var secret: Data
        /// When it was made (ms), for rotation.
        public var createdAt: Int64
    }

    /// What this device believes about another account.
    public struct Contact: Codable, Sendable {
        /// The account's name as last seen.
        public var username: String
        /// The identity key first seen (trust on first use), or the one accepted after a change.
        public var identityKey: Data
        /// Whether the person compared safety numbers and marked the contact verified.
        public var verified: Bool
        /// Known devices and their agreement keys.
        public var devices: [String: Data]
        /// The highest signed device-list version seen; a lower one is refused.
        public var deviceListVersion: UInt64
    }

    /// A message already decrypted but perhaps not yet handed over: kept until acknowledged so a
    /// crash between decrypting and displaying loses nothing (the ratchet would refuse a replay).
    public struct Decrypted: Codable, Sendable {
        /// The inbox position.
        public var sequence: Int64
        /// The plaintext body.
        public var body: Data
        /// The franking key, for reports.
        public var frankingKey: Data
        /// What the envelope said, so the entry is used only for exactly the same envelope.
        public var messageID: String
        /// The sending account.
        public var senderAccount: AccountID
        /// The sending device.
        public var senderDevice: String
        /// SHA-256 of the ciphertext.
        public var payloadHash: Data

        init(_ message: IncomingMessage, body: Data, frankingKey: Data) {
            sequence = message.sequence
            self.body = body
            self.frankingKey = frankingKey
            messageID = message.messageID
            senderAccount = message.senderAccount
            senderDevice = message.senderDevice
            payloadHash = Data(SHA256.hash(data: message.payload))
        }

        /// Whether `message` is the envelope this entry was decrypted from.
        func matches(_ message: IncomingMessage) -> Bool {
            message.sequence == sequence && message.messageID == messageID && message.senderAccount == senderAccount
                && message.senderDevice == senderDevice && Data(SHA256.hash(data: message.payload)) == payloadHash
        }
    }

    /// The device's X25519 agreement private key.
    public var agreementKey: Data
    /// Signed prekeys by id (the current one and recently rotated ones).
    public var signedPrekeys: [UInt32: PrivatePrekey] = [:]
    /// The id of the signed prekey currently published.
    public var currentSignedPrekey: UInt32 = 0
    /// One-time X25519 prekeys not yet used.
    public var oneTimePrekeys: [UInt32: PrivatePrekey] = [:]
    /// One-time ML-KEM prekeys not yet used.
    public var kemPrekeys: [UInt32: PrivatePrekey] = [:]
    /// The last-resort ML-KEM prekey.
    public var lastResortID: UInt32 = 0
    /// Its seed.
    public var lastResortSeed = Data()
    /// The next prekey id to hand out.
    public var nextPrekeyID: UInt32 = 1
    /// Whether the server has the keys.
    public var published = false
    /// Sessions by remote device id.
    public var sessions: [String: RatchetSession] = [:]
    /// Contacts by account id.
    public var contacts: [String: Contact] = [:]
    /// Decrypted messages not yet acknowledged, by inbox sequence number.
    public var decrypted: [Int64: Decrypted] = [:]
    /// Earlier sessions by remote device id, newest first (see `HeliographClient.open`).
    public var archivedSessions: [String: [RatchetSession]]?
    /// Base keys of session setups already answered, oldest first.
    public var usedBaseKeys: [Data]?

    /// A fresh state with a new agreement key.
    public init() {
        agreementKey = AgreementKeyPair().privateKeyBytes
    }

    mutating func takePrekeyID() -> UInt32 {
        defer { nextPrekeyID = nextPrekeyID == .max ? 1 : nextPrekeyID + 1 }
        return nextPrekeyID
    }
}

/// The key file of a profile (`NAME.keys`), mode 0600, optionally sealed with a passphrase.
///
/// Every change runs under an exclusive `flock` on `NAME.keys.lock` and rewrites the file
/// atomically, so `helio send` and `helio listen` on the same profile never lose each other's
/// ratchet steps, and a crash leaves the old or the new state, never half of one.
public struct KeyStoreFile: Sendable {
    /// The key file.
    public let file: URL
    private let passphrase: String?

    /// The key file of profile `name` in `store`. With a passphrase the file is sealed:
    /// AES-256-GCM under a key derived with scrypt (N = 2¹⁵, r = 8, p = 1) and a random salt.
    public init(profile name: String, store: ProfileStore, passphrase: String? = nil) throws {
        let profileFile = try store.file(for: name)
        file = profileFile.deletingPathExtension().appendingPathExtension("keys")
        self.passphrase = passphrase
    }

    /// Whether the file exists.
    public var exists: Bool { FileManager.default.fileExists(atPath: file.path) }

    /// Runs `body` on the state under the lock and saves what it leaves. `create` makes the
    /// state when there is no file yet.
    public func update<T>(create: Bool = false, _ body: (inout DeviceKeyState) throws -> T) throws -> T {
        try locked {
            var state: DeviceKeyState
            if let data = FileManager.default.contents(atPath: file.path) {
                state = try decode(data)
            } else if create {
                state = DeviceKeyState()
            } else {
                throw missing
            }
            let result = try body(&state)
            try writePrivateFile(try encode(state), to: file)
            return result
        }
    }

    /// Reads the state without changing it (and without rewriting the file).
    public func read() throws -> DeviceKeyState {
        try locked {
            guard let data = FileManager.default.contents(atPath: file.path) else { throw missing }
            return try decode(data)
        }
    }

    private var missing: HeliographError {
        HeliographError(
            .badRequest, "no key file \(file.path): this profile has no end-to-end keys (log in again to create them)")
    }

    /// Runs `body` holding the exclusive lock of the key file.
    private func locked<T>(_ body: () throws -> T) throws -> T {
        let lockPath = file.path + ".lock"
        let descriptor = open(lockPath, O_RDWR | O_CREAT, 0o600)
        guard descriptor >= 0 else {
            throw HeliographError(.internalError, "cannot open \(lockPath): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        guard flock(descriptor, LOCK_EX) == 0 else {
            throw HeliographError(.internalError, "cannot lock \(lockPath): \(String(cString: strerror(errno)))")
        }
        defer { flock(descriptor, LOCK_UN) }
        return try body()
    }

    // MARK: Sealing

    private struct Sealed: Codable {
        var format: String
        var salt: Data
        var box: Data
    }

    private func encode(_ state: DeviceKeyState) throws -> Data {
        let plain = try JSONEncoder().encode(state)
        guard let passphrase else { return plain }
        let salt = Data((0..<16).map { _ in UInt8.random(in: .min ... .max) })
        let key = try Self.derive(passphrase, salt: salt)
        let box = try AES.GCM.seal(plain, using: key).combined ?? Data()
        return try JSONEncoder().encode(Sealed(format: Self.sealedFormat, salt: salt, box: box))
    }

    private func decode(_ data: Data) throws -> DeviceKeyState {
        if let sealed = try? JSONDecoder().decode(Sealed.self, from: data), sealed.format == Self.sealedFormat {
            guard let passphrase else {
                throw HeliographError(
                    .badRequest, "the key file \(file.path) is sealed with a passphrase; set HELIO_PASSPHRASE to open it")
            }
            let key = try Self.derive(passphrase, salt: sealed.salt)
            guard let box = try? AES.GCM.SealedBox(combined: sealed.box), let plain = try? AES.GCM.open(box, using: key) else {
                throw HeliographError(.badRequest, "wrong passphrase for \(file.path) (or the file was altered)")
            }
            return try JSONDecoder().decode(DeviceKeyState.self, from: plain)
        }
        do {
            return try JSONDecoder().decode(DeviceKeyState.self, from: data)
        } catch {
            throw HeliographError(.badRequest, "the key file \(file.path) is damaged: \(error)")
        }
    }

    static let sealedFormat = "heliograph-sealed-keys-v1"

    private static func derive(_ passphrase: String, salt: Data) throws -> SymmetricKey {
        try KDF.Scrypt.deriveKey(
            from: Data(passphrase.utf8), salt: salt, outputByteCount: 32, rounds: 1 << 15, blockSize: 8, parallelism: 1)
    }
}
