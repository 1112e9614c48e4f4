import Crypto
import Foundation
import HeliographCore

/// An account's Ed25519 identity key pair. The private half never leaves the client.
public struct IdentityKeyPair: Sendable {
    private let privateKey: Curve25519.Signing.PrivateKey

    /// The signing key, for the domain-labelled signatures of this module.
    var signingKey: Curve25519.Signing.PrivateKey { privateKey }

    /// A new random key pair.
    public init() { privateKey = Curve25519.Signing.PrivateKey() }

    /// Restores a key pair from its 32-byte private seed.
    public init(privateKeyBytes: Data) throws(HeliographError) {
        do {
            privateKey = try Curve25519.Signing.PrivateKey(rawRepresentation: privateKeyBytes)
        } catch {
            throw HeliographError(.invalidKey, "identity private key must be 32 bytes")
        }
    }

    /// The 32-byte private seed, for the local key store only.
    public var privateKeyBytes: Data { privateKey.rawRepresentation }

    /// The public half, as registered with the server.
    public var publicKey: IdentityPublicKey { IdentityPublicKey(privateKey.publicKey) }

    /// Signs a login challenge; see ``LoginProof`` for what exactly is signed.
    public func signLogin(nonce: Data, challengeID: UUID, deviceName: String) throws -> Data {
        try privateKey.signature(for: LoginProof.signedBytes(nonce: nonce, challengeID: challengeID, deviceName: deviceName))
    }
}

/// The public half of an identity key.
public struct IdentityPublicKey: Sendable, Equatable {
    fileprivate let key: Curve25519.Signing.PublicKey

    fileprivate init(_ key: Curve25519.Signing.PublicKey) { self.key = key }

    /// Parses the raw 32-byte encoding.
    public init(rawBytes: Data) throws(HeliographError) {
        guard rawBytes.count == 32, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: rawBytes) else {
            throw HeliographError(.invalidKey, "identity key must be a 32-byte Ed25519 public key (got \(rawBytes.count) bytes)")
        }
        self.key = key
    }

    /// The raw 32-byte encoding.
    public var rawBytes: Data { key.rawRepresentation }

    /// Whether `signature` is this key's signature over `message`.
    public func isValidSignature(_ signature: Data, for message: Data) -> Bool {
        key.isValidSignature(signature, for: message)
    }

    public static func == (lhs: IdentityPublicKey, rhs: IdentityPublicKey) -> Bool { lhs.rawBytes == rhs.rawBytes }
}

/// The login proof: an identity-key signature over a server nonce.
///
/// What is signed binds the signature to its purpose and context so it cannot be replayed
/// elsewhere: a fixed domain label, the challenge id, the nonce and the device name.
public enum LoginProof {
    /// Domain separation: a signature made for login can never be mistaken for another kind.
    static let domain = Data("heliograph-login-v1".utf8)

    /// The exact bytes a device signs to log in.
    public static func signedBytes(nonce: Data, challengeID: UUID, deviceName: String) -> Data {
        var bytes = domain
        bytes.append(0)
        bytes.append(Data(challengeID.uuidString.lowercased().utf8))
        bytes.append(0)
        bytes.append(nonce)
        bytes.append(Data(deviceName.utf8))
        return bytes
    }

    /// Checks a login signature against the account's identity key.
    public static func verify(
        signature: Data, identityKey: IdentityPublicKey, nonce: Data, challengeID: UUID, deviceName: String
    ) throws(HeliographError) {
        let message = signedBytes(nonce: nonce, challengeID: challengeID, deviceName: deviceName)
        guard identityKey.isValidSignature(signature, for: message) else {
            throw HeliographError(.badSignature, "the login signature does not match the account's identity key")
        }
    }
}

/// Bearer session tokens: random, shown to the client once, stored only as a hash.
public enum SessionToken {
    /// A new token: 32 random bytes, base64url without padding.
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Data(bytes).base64URLEncodedString()
    }

    /// The stored form of a token: SHA-256, so a leaked database holds no usable token.
    public static func hash(_ token: String) -> Data {
        Data(SHA256.hash(data: Data(token.utf8)))
    }

    /// Random bytes for a login challenge nonce.
    public static func randomNonce(count: Int = 32) -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }
}

extension Data {
    /// Base64url without padding (RFC 4648 §5), safe in URLs and headers.
    public func base64URLEncodedString() -> String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
