import Crypto
import CryptoExtras
import Foundation
import HeliographCore
import Synchronization

/// Seals a device's local files — the key file and the profile — with a passphrase:
/// AES-256-GCM under a key derived with scrypt and a random salt, both stored in the file.
///
/// The scrypt parameters are stored with every file, so files sealed with older parameters
/// still open (and are resealed with the current ones on their next write). The file's
/// purpose and the parameters are authenticated as associated data: a sealed profile cannot
/// be passed off as a key file, and the parameters cannot be lowered without the passphrase.
///
/// Deriving a key takes a noticeable fraction of a second and 128 MiB on purpose, so each
/// sealer derives at most once per salt and reuses the derived key for its own writes (every
/// write has a fresh random nonce).
public final class PassphraseSealer: Sendable {
    /// scrypt's cost parameters.
    public struct Parameters: Codable, Sendable, Hashable {
        /// The CPU/memory cost N (a power of two).
        public var n: Int
        /// The block size r.
        public var r: Int
        /// The parallelism p.
        public var p: Int

        /// The parameters N, r and p.
        public init(n: Int, r: Int, p: Int) {
            self.n = n
            self.r = r
            self.p = p
        }

        /// Whether a file may ask for these: bounded, so an altered file cannot make opening it
        /// take unbounded time or memory before the authentication check fails.
        var isAcceptable: Bool {
            n >= 1 << 10 && n <= 1 << 20 && n & (n - 1) == 0 && (1...16).contains(r) && (1...4).contains(p)
        }
    }

    /// What new files are sealed with: N = 2¹⁷, r = 8, p = 1 (OWASP's current recommendation
    /// for scrypt).
    public static let currentParameters = Parameters(n: 1 << 17, r: 8, p: 1)
    /// What the first sealed key files (`heliograph-sealed-keys-v1`) used: N = 2¹⁵, r = 8, p = 1.
    static let legacyParameters = Parameters(n: 1 << 15, r: 8, p: 1)

    static let format = "heliograph-sealed-v2"
    static let legacyKeysFormat = "heliograph-sealed-keys-v1"

    /// The passphrase, kept to recognise a sealer for the same passphrase.
    let passphrase: String
    private let parameters: Parameters
    /// Derived keys by salt and parameters.
    private let derived = Mutex<[DerivationInput: SymmetricKey]>([:])
    /// The salt and key this sealer writes with (current parameters).
    private let writing = Mutex<(salt: Data, key: SymmetricKey)?>(nil)

    private struct DerivationInput: Hashable {
        var salt: Data
        var parameters: Parameters
    }

    /// A sealer for `passphrase`; `parameters` are for tests of older files only.
    public init(passphrase: String, parameters: Parameters = currentParameters) {
        self.passphrase = passphrase
        self.parameters = parameters
    }

    /// The stored form of a sealed file.
    struct Envelope: Codable {
        var format: String
        /// `keys` or `profile` (absent in the first format, which sealed key files only).
        var purpose: String?
        /// Absent in the first format, which used ``PassphraseSealer/legacyParameters``.
        var scrypt: Parameters?
        var salt: Data
        var box: Data
    }

    /// Whether `data` is a sealed file of any version.
    public static func isSealed(_ data: Data) -> Bool { envelope(data) != nil }

    private static func envelope(_ data: Data) -> Envelope? {
        guard let envelope = try? JSONDecoder().decode(Envelope.self, from: data),
            envelope.format == format || envelope.format == legacyKeysFormat
        else { return nil }
        return envelope
    }

    /// Seals `plain` for `purpose` (`keys`, `profile`, or an application's own label).
    public func seal(_ plain: Data, purpose: String) throws -> Data {
        let (salt, key) = try writingKey()
        let box = try AES.GCM.seal(plain, using: key, authenticating: Self.associatedData(purpose, parameters))
        guard let combined = box.combined else {
            throw HeliographError(.internalError, "AES-GCM produced no sealed box")
        }
        let envelope = Envelope(format: Self.format, purpose: purpose, scrypt: parameters, salt: salt, box: combined)
        return try JSONEncoder().encode(envelope)
    }

    /// Opens a sealed `file`'s content, or nil when it is not sealed at all (the caller decides
    /// what a plain file means). A wrong passphrase, another purpose or any alteration throws.
    public func open(_ data: Data, purpose: String, file: URL) throws -> Data? {
        guard let envelope = Self.envelope(data) else { return nil }
        let parameters: Parameters
        let associated: Data
        if envelope.format == Self.legacyKeysFormat {
            guard purpose == "keys" else { throw altered(file) }
            parameters = Self.legacyParameters
            associated = Data()
        } else {
            guard let stored = envelope.scrypt, stored.isAcceptable, envelope.purpose == purpose else { throw altered(file) }
            parameters = stored
            associated = Self.associatedData(purpose, stored)
        }
        let key = try derivedKey(salt: envelope.salt, parameters: parameters)
        guard let box = try? AES.GCM.SealedBox(combined: envelope.box),
            let plain = try? AES.GCM.open(box, using: key, authenticating: associated)
        else { throw altered(file) }
        if parameters == self.parameters {
            // Later writes reuse this salt and key instead of deriving another.
            writing.withLock { current in
                if current == nil { current = (envelope.salt, key) }
            }
        }
        return plain
    }

    private func altered(_ file: URL) -> HeliographError {
        HeliographError(.badRequest, "wrong passphrase for \(file.path) (or the file was altered)")
    }

    private func writingKey() throws -> (Data, SymmetricKey) {
        if let current = writing.withLock({ $0 }) { return current }
        let salt = Data((0..<32).map { _ in UInt8.random(in: .min ... .max) })
        let key = try derivedKey(salt: salt, parameters: parameters)
        return writing.withLock { current in
            if let current { return current }
            current = (salt, key)
            return (salt, key)
        }
    }

    private func derivedKey(salt: Data, parameters: Parameters) throws -> SymmetricKey {
        let input = DerivationInput(salt: salt, parameters: parameters)
        if let key = derived.withLock({ $0[input] }) { return key }
        let key = try KDF.Scrypt.deriveKey(
            from: Data(passphrase.utf8), salt: salt, outputByteCount: 32, rounds: parameters.n, blockSize: parameters.r,
            parallelism: parameters.p)
        derived.withLock { $0[input] = key }
        return key
    }

    /// Format, purpose and parameters, authenticated with the content.
    private static func associatedData(_ purpose: String, _ parameters: Parameters) -> Data {
        Data("\(format)\u{0}\(purpose)\u{0}\(parameters.n)\u{0}\(parameters.r)\u{0}\(parameters.p)".utf8)
    }
}

extension PassphraseSealer {
    /// The plain content of a local file that is sealed when a passphrase is set and plain
    /// otherwise (`what` names it in errors, such as "the key file").
    ///
    /// A plain file is refused while a passphrase is set: anyone able to write the directory could
    /// have put it there, and accepting it would let them choose keys, server or attachments.
    static func plainContent(
        of data: Data, sealer: PassphraseSealer?, purpose: String, file: URL, what: String
    ) throws -> Data {
        guard let sealer else {
            guard !isSealed(data) else {
                throw HeliographError(
                    .badRequest, "\(what) \(file.path) is sealed with a passphrase; set HELIO_PASSPHRASE to open it")
            }
            return data
        }
        guard let opened = try sealer.open(data, purpose: purpose, file: file) else {
            throw HeliographError(
                .badRequest,
                "\(what) \(file.path) is not sealed although a passphrase is set; refusing it, since anyone who can "
                    + "write that directory could have put it there (see 'Local key files' in docs/security.md)")
        }
        return opened
    }
}
