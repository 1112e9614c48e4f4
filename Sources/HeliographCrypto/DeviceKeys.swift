import Crypto
import Foundation
import HeliographCore

/// An X25519 key pair: a device's identity-agreement key, a prekey, or a ratchet key.
public struct AgreementKeyPair: Sendable {
    private let privateKey: Curve25519.KeyAgreement.PrivateKey

    /// A new random key pair.
    public init() { privateKey = Curve25519.KeyAgreement.PrivateKey() }

    /// Restores a key pair from its 32 private bytes (local key store only).
    public init(privateKeyBytes: Data) throws(SessionError) {
        guard let key = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: privateKeyBytes) else {
            throw SessionError(.invalidKey, "an X25519 private key must be 32 bytes")
        }
        privateKey = key
    }

    /// The 32 private bytes, for the local key store only.
    public var privateKeyBytes: Data { privateKey.rawRepresentation }

    /// The 32-byte public key.
    public var publicKeyBytes: Data { privateKey.publicKey.rawRepresentation }

    /// X25519(private, peer): the raw 32-byte shared secret.
    ///
    /// A peer key of small order is refused before the multiplication (its output would be
    /// one of a handful of values whatever our private key), and an all-zero result is refused
    /// after it, so that a malicious key can never force a known secret.
    public func sharedSecret(with peerPublicKey: Data) throws(SessionError) -> Data {
        try X25519Point.check(peerPublicKey, as: "the peer's public key")
        guard let peer = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: peerPublicKey),
            let secret = try? privateKey.sharedSecretFromKeyAgreement(with: peer)
        else {
            // BoringSSL refuses an all-zero output itself; the check below covers other backends.
            throw SessionError(.invalidKey, "the X25519 agreement with the peer's public key gave no secret (low-order point)")
        }
        let bytes = secret.withUnsafeBytes { Data($0) }
        guard bytes.contains(where: { $0 != 0 }) else {
            throw SessionError(.invalidKey, "the X25519 public key is a low-order point")
        }
        return bytes
    }
}

/// An ML-KEM-768 key pair (FIPS 203), kept as its 64-byte seed.
public struct KEMKeyPair: Sendable {
    private let privateKey: MLKEM768.PrivateKey

    /// A new random key pair.
    public init() throws(SessionError) {
        guard let key = try? MLKEM768.PrivateKey() else {
            throw SessionError(.invalidKey, "ML-KEM-768 key generation failed")
        }
        privateKey = key
    }

    /// Restores a key pair from its 64-byte seed (local key store only).
    public init(seed: Data) throws(SessionError) {
        guard let key = try? MLKEM768.PrivateKey(seedRepresentation: seed, publicKey: nil) else {
            throw SessionError(.invalidKey, "an ML-KEM-768 seed must be 64 bytes")
        }
        privateKey = key
    }

    /// The 64-byte seed.
    public var seed: Data { privateKey.seedRepresentation }

    /// The 1,184-byte encapsulation key.
    public var publicKeyBytes: Data { privateKey.publicKey.rawRepresentation }

    /// Recovers the 32-byte shared secret from a 1,088-byte ciphertext.
    public func decapsulate(_ ciphertext: Data) throws(SessionError) -> Data {
        guard ciphertext.count == KEMKeyPair.ciphertextSize, let secret = try? privateKey.decapsulate(ciphertext) else {
            throw SessionError(.malformed, "an ML-KEM-768 ciphertext must be \(KEMKeyPair.ciphertextSize) bytes")
        }
        return secret.withUnsafeBytes { Data($0) }
    }

    /// Encapsulates a fresh secret to a peer's public key: (ciphertext, 32-byte secret).
    public static func encapsulate(to publicKey: Data) throws(SessionError) -> (ciphertext: Data, secret: Data) {
        guard publicKey.count == publicKeySize, let key = try? MLKEM768.PublicKey(rawRepresentation: publicKey),
            let result = try? key.encapsulate()
        else {
            throw SessionError(.invalidKey, "an ML-KEM-768 public key must be \(publicKeySize) bytes (got \(publicKey.count))")
        }
        return (result.encapsulated, result.sharedSecret.withUnsafeBytes { Data($0) })
    }

    /// Size of an encapsulation key.
    public static let publicKeySize = 1184
    /// Size of a ciphertext.
    public static let ciphertextSize = 1088
}

/// What a prekey is for; part of what its signature covers, so one kind can never pass as another.
public enum PrekeyKind: UInt8, Codable, Sendable, CaseIterable {
    /// The medium-term X25519 prekey, rotated by the device.
    case signedPrekey = 1
    /// A one-time X25519 prekey, handed out once.
    case oneTimePrekey = 2
    /// A one-time ML-KEM-768 prekey, handed out once.
    case kemPrekey = 3
    /// The ML-KEM-768 prekey used when the one-time ones are exhausted.
    case lastResortKEMPrekey = 4

    /// Whether the key is ML-KEM-768 (else X25519).
    public var isKEM: Bool { self == .kemPrekey || self == .lastResortKEMPrekey }
}

/// A published prekey with the account identity's signature binding it to one device.
public struct SignedPrekey: Sendable, Equatable, Codable {
    /// What the key is for.
    public var kind: PrekeyKind
    /// The device-chosen id, echoed in setup messages so the device finds the private half.
    public var id: UInt32
    /// The public key (32 bytes X25519 or 1,184 bytes ML-KEM-768).
    public var publicKey: Data
    /// Ed25519 signature by the account identity key over ``signedBytes(account:device:)``.
    public var signature: Data

    /// Creates the value.
    public init(kind: PrekeyKind, id: UInt32, publicKey: Data, signature: Data) {
        self.kind = kind
        self.id = id
        self.publicKey = publicKey
        self.signature = signature
    }

    /// Signs a prekey for a device of the signer's account.
    public static func sign(
        kind: PrekeyKind, id: UInt32, publicKey: Data, account: AccountID, device: DeviceID, with identity: IdentityKeyPair
    ) throws -> SignedPrekey {
        var prekey = SignedPrekey(kind: kind, id: id, publicKey: publicKey, signature: Data())
        prekey.signature = try identity.sign(prekey.signedBytes(account: account, device: device))
        return prekey
    }

    /// Domain label, account, device, kind, id and key: the signature is valid for exactly this use.
    public func signedBytes(account: AccountID, device: DeviceID) -> Data {
        var writer = ByteWriter(label: "heliograph-prekey-v1")
        writer.append(account.rawValue)
        writer.append(device.rawValue)
        writer.append(kind.rawValue)
        writer.append(id)
        writer.appendField(publicKey)
        return writer.bytes
    }

    /// Checks size, that an X25519 key is not of small order, and the signature.
    public func verify(account: AccountID, device: DeviceID, identity: IdentityPublicKey) throws(SessionError) {
        let expected = kind.isKEM ? KEMKeyPair.publicKeySize : 32
        guard publicKey.count == expected else {
            throw SessionError(.invalidKey, "a \(kind) key must be \(expected) bytes (got \(publicKey.count))")
        }
        if !kind.isKEM { try X25519Point.check(publicKey, as: "the \(kind) \(id)") }
        guard identity.isValidSignature(signature, for: signedBytes(account: account, device: device)) else {
            throw SessionError(.badSignature, "the \(kind) \(id) of device \(device) is not signed by its account's identity key")
        }
    }
}

/// A device's long-term X25519 key, bound to the account's Ed25519 identity by a signature.
public struct DeviceAgreementKey: Sendable, Equatable, Codable {
    /// The 32-byte X25519 public key.
    public var publicKey: Data
    /// Ed25519 signature by the account identity over ``signedBytes(account:device:)``.
    public var signature: Data

    /// Creates the value.
    public init(publicKey: Data, signature: Data) {
        self.publicKey = publicKey
        self.signature = signature
    }

    /// Signs a device's agreement key.
    public static func sign(
        publicKey: Data, account: AccountID, device: DeviceID, with identity: IdentityKeyPair
    ) throws
        -> DeviceAgreementKey
    {
        var key = DeviceAgreementKey(publicKey: publicKey, signature: Data())
        key.signature = try identity.sign(key.signedBytes(account: account, device: device))
        return key
    }

    /// Domain label, account, device and key.
    public func signedBytes(account: AccountID, device: DeviceID) -> Data {
        var writer = ByteWriter(label: "heliograph-device-key-v1")
        writer.append(account.rawValue)
        writer.append(device.rawValue)
        writer.appendField(publicKey)
        return writer.bytes
    }

    /// Checks size, that the key is not of small order, and the signature.
    public func verify(account: AccountID, device: DeviceID, identity: IdentityPublicKey) throws(SessionError) {
        try X25519Point.check(publicKey, as: "the agreement key of device \(device)")
        guard identity.isValidSignature(signature, for: signedBytes(account: account, device: device)) else {
            throw SessionError(.badSignature, "the agreement key of device \(device) is not signed by its account's identity key")
        }
    }
}

extension IdentityKeyPair {
    /// Signs bytes that carry their own domain label (see the `signedBytes` functions).
    public func sign(_ message: Data) throws -> Data { try signingKey.signature(for: message) }
}
