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
        /// The highest signed device list accepted (see `DeviceListPolicy`): sessions are used
        /// only with devices it lists, with exactly the keys it lists.
        public var deviceList: SignedDeviceList?

        /// The version of ``deviceList``, 0 when none was accepted.
        public var deviceListVersion: UInt64 { deviceList?.version ?? 0 }
    }

    /// A session with one device of one account, and the keys it was set up with. The keys are
    /// checked against the contact record and its signed device list every time the session is
    /// used, so a server cannot make a session with one device stand in for another.
    public struct PeerSession: Codable, Sendable {
        /// The peer's account.
        public var account: AccountID
        /// The peer's device.
        public var device: DeviceID
        /// The peer account's identity key when the session was set up.
        public var identityKey: Data
        /// The peer device's agreement key.
        public var agreementKey: Data
        /// The ratchet.
        public var ratchet: RatchetSession

        /// The storage key of a peer: account and device together.
        public static func key(_ account: AccountID, _ device: DeviceID) -> String { "\(account)/\(device)" }
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
    /// Sessions by ``PeerSession/key(_:_:)`` (account and device). Older key files kept them
    /// by device id alone; those are not read, and sessions are set up again.
    public var peerSessions: [String: PeerSession]? = [:]
    /// Contacts by account id.
    public var contacts: [String: Contact] = [:]
    /// Decrypted messages not yet acknowledged, by inbox sequence number.
    public var decrypted: [Int64: Decrypted] = [:]
    /// Earlier sessions by peer key, newest first (see `HeliographClient.open`).
    public var archivedPeerSessions: [String: [PeerSession]]?
    /// Base keys of session setups already answered, per signed prekey id. Kept exactly as long
    /// as the signed prekey itself, so a setup can never be replayed while it could still open.
    public var answeredSetups: [UInt32: [Data]]?
    /// Last-resort ML-KEM prekeys replaced by a rotation, kept for the same grace period as
    /// rotated signed prekeys.
    public var retiredLastResort: [UInt32: PrivatePrekey]?
    /// When the current last-resort key was made (ms).
    public var lastResortCreatedAt: Int64?
    /// Private groups by chat id: their verified membership chain and sender keys.
    public var groups: [String: GroupKeys]?

    /// What this device keeps about one private group.
    public struct GroupKeys: Codable, Sendable {
        /// The signed membership changes accepted, in order (replayed to get the members).
        public var chain: [Data] = []
        /// The title, from the creator's control message.
        public var title: String?
        /// This device's sending chain.
        public var ownKey: SenderKeyState?
        /// The devices (`account/device`) the own chain was given to.
        public var ownKeyRecipients: [String] = []
        /// When the member devices were last checked for the own chain (ms).
        public var checkedAt: Int64 = 0
        /// The membership version they were checked at.
        public var checkedVersion: Int64 = 0
        /// The log position of each change of ``chain`` (the creator's own creation may lack one).
        public var chainPositions: [Int64]?
        /// Plaintexts of others' posts already opened, by `SEQ/messageID`, so history can be
        /// read again (a sender-key chain only runs forward).
        public var opened: [String: Data]?
        /// The log position up to which membership changes were taken in.
        public var membershipPosition: Int64?
        /// Other devices' chains by `account/device/keyID`.
        public var received: [String: SenderKeyState] = [:]
        /// Plaintexts of this device's own recent posts by message id (its own chain cannot
        /// open them again).
        public var sent: [String: Data] = [:]

        /// Creates an empty record.
        public init() {}
    }

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
    private let sealer: PassphraseSealer?

    /// The key file of profile `name` in `store`. With a passphrase (this one, else the
    /// store's) the file is sealed, see ``PassphraseSealer``, and a plain file is refused.
    public init(profile name: String, store: ProfileStore, passphrase: String? = nil) throws {
        let profileFile = try store.file(for: name)
        file = profileFile.deletingPathExtension().appendingPathExtension("keys")
        sealer = store.sealing(with: passphrase).sealer
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
        var descriptor = open(lockPath, O_RDWR | O_CREAT, 0o600)
        if descriptor < 0, errno == ENOENT {
            // The first file of a profile directory (a login writes the keys before the profile).
            try FileManager.default.createDirectory(
                at: file.deletingLastPathComponent(), withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
            descriptor = open(lockPath, O_RDWR | O_CREAT, 0o600)
        }
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

    /// Seals a plain key file in place, under the lock; see ``ProfileStore/sealPlainFiles(of:)``.
    func sealIfPlain() throws {
        guard let sealer else { return }
        try locked {
            guard let data = FileManager.default.contents(atPath: file.path), !PassphraseSealer.isSealed(data) else { return }
            let state: DeviceKeyState
            do {
                state = try JSONDecoder().decode(DeviceKeyState.self, from: data)
            } catch {
                throw HeliographError(.badRequest, "the key file \(file.path) is damaged: \(error)")
            }
            try writePrivateFile(try sealer.seal(try JSONEncoder().encode(state), purpose: "keys"), to: file)
        }
    }

    private func encode(_ state: DeviceKeyState) throws -> Data {
        let plain = try JSONEncoder().encode(state)
        guard let sealer else { return plain }
        return try sealer.seal(plain, purpose: "keys")
    }

    private func decode(_ data: Data) throws -> DeviceKeyState {
        let plain = try PassphraseSealer.plainContent(
            of: data, sealer: sealer, purpose: "keys", file: file, what: "the key file")
        do {
            return try JSONDecoder().decode(DeviceKeyState.self, from: plain)
        } catch {
            throw HeliographError(.badRequest, "the key file \(file.path) is damaged: \(error)")
        }
    }
}
