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
    public func signLogin(
        nonce: Data, challengeID: UUID, account: AccountID, origin: ServerOrigin, deviceName: String
    ) throws -> Data {
        try privateKey.signature(
            for: LoginProof.signedBytes(
                nonce: nonce, challengeID: challengeID, account: account, origin: origin, deviceName: deviceName))
    }
}

/// The public half of an identity key.
public struct IdentityPublicKey: Sendable, Equatable {
    fileprivate let key: Curve25519.Signing.PublicKey

    fileprivate init(_ key: Curve25519.Signing.PublicKey) { self.key = key }

    /// Parses the raw 32-byte encoding: the single gate through which every identity key from
    /// outside (registration, a server's answer, a key file) enters.
    ///
    /// Refuses, besides wrong lengths, non-canonical encodings (y ≥ p, or a sign bit on x = 0)
    /// and the points of small order (see ``Ed25519Point``): swift-crypto accepts both, and a
    /// small-order key lets anyone forge its signatures.
    public init(rawBytes: Data) throws(HeliographError) {
        do {
            try Ed25519Point.checkPublicKey(rawBytes)
        } catch {
            throw HeliographError(.invalidKey, "the identity key \(error.sentence)")
        }
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: rawBytes) else {
            throw HeliographError(.invalidKey, "the identity key must be a 32-byte Ed25519 public key")
        }
        self.key = key
    }

    /// The raw 32-byte encoding.
    public var rawBytes: Data { key.rawRepresentation }

    /// Whether `signature` is this key's signature over `message`, verified strictly.
    ///
    /// In order: the signature is 64 bytes; S (the second half) is below the group order L, so a
    /// signature cannot be turned into a second valid one by adding L; R (the first half) is a
    /// canonical encoding and not a point of small order, so R is a real commitment and has one
    /// encoding only; then swift-crypto checks the equation [S]B = R + [k]A. The key A itself
    /// passed the same encoding checks when it was constructed.
    public func isValidSignature(_ signature: Data, for message: Data) -> Bool {
        guard signature.count == 64 else { return false }
        let r = Data(signature.prefix(32))
        let s = Data(signature.suffix(32))
        guard Ed25519Point.isReducedScalar(s), Ed25519Point.isCanonical(r), !Ed25519Point.isSmallOrder(r) else {
            return false
        }
        return key.isValidSignature(signature, for: message)
    }

    public static func == (lhs: IdentityPublicKey, rhs: IdentityPublicKey) -> Bool { lhs.rawBytes == rhs.rawBytes }
}

/// The login proof: an identity-key signature over a server nonce.
///
/// What is signed binds the signature to its purpose and context so it cannot be replayed
/// elsewhere: a fixed domain label, the challenge id and nonce, the account being logged in
/// to, the origin of the server the client connected to, and the device name as the server
/// stores it. A signature a malicious server obtains for itself (by relaying another server's
/// challenge) names the wrong origin; one made for another account sharing the identity key
/// names the wrong account.
public enum LoginProof {
    /// Domain separation: a signature made for login can never be mistaken for another kind.
    static let label = "heliograph-login-v2"

    /// The device name as the server stores it: without surrounding whitespace and newlines.
    /// The signature covers this form, so what is signed is exactly what is shown later.
    public static func storedDeviceName(_ deviceName: String) -> String {
        deviceName.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The exact bytes a device signs to log in (length-prefixed fields, see docs/protocol.md).
    public static func signedBytes(
        nonce: Data, challengeID: UUID, account: AccountID, origin: ServerOrigin, deviceName: String
    ) -> Data {
        var writer = ByteWriter(label: label)
        writer.append(challengeID)
        writer.appendField(nonce)
        writer.append(account.rawValue)
        writer.appendField(Data(origin.text.utf8))
        writer.appendField(Data(storedDeviceName(deviceName).utf8))
        return writer.bytes
    }

    /// Checks a login signature against the account's identity key.
    ///
    /// `origins` are the origins under which this server is reached (usually one); the
    /// signature must name one of them.
    public static func verify(
        signature: Data, identityKey: IdentityPublicKey, nonce: Data, challengeID: UUID, account: AccountID,
        origins: [ServerOrigin], deviceName: String
    ) throws(HeliographError) {
        for origin in origins {
            let message = signedBytes(
                nonce: nonce, challengeID: challengeID, account: account, origin: origin, deviceName: deviceName)
            if identityKey.isValidSignature(signature, for: message) { return }
        }
        throw HeliographError(
            .badSignature,
            "the login signature does not match the account's identity key for this account and server "
                + "(\(origins.map(\.text).joined(separator: ", ")))")
    }
}

/// A server's origin, `scheme://host:port`, in the one canonical form both sides sign and
/// compare: lower-case scheme and host, `ws`/`wss` as `http`/`https` (the socket is on the same
/// server), the port always written out, IPv6 hosts in brackets, no path, query or user.
public struct ServerOrigin: Sendable, Hashable, CustomStringConvertible {
    /// The canonical text, such as `https://chat.example.org:443`.
    public let text: String

    /// The origin of a server base URL (`http(s)://` or `ws(s)://`).
    public init(url: URL) throws(HeliographError) {
        guard let rawScheme = url.scheme?.lowercased() else {
            throw HeliographError(.badRequest, "'\(url.absoluteString)' has no scheme; use http:// or https://")
        }
        let scheme: String
        switch rawScheme {
        case "http", "ws": scheme = "http"
        case "https", "wss": scheme = "https"
        default:
            throw HeliographError(.badRequest, "'\(url.absoluteString)' is not an http(s) or ws(s) URL")
        }
        guard var host = url.host?.lowercased(), !host.isEmpty else {
            throw HeliographError(.badRequest, "'\(url.absoluteString)' has no host")
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        // "example.org." and "example.org" name the same host.
        if host.hasSuffix("."), host.count > 1 { host.removeLast() }
        if host.contains(":") { host = "[\(host)]" }
        let port = url.port ?? (scheme == "https" ? 443 : 80)
        guard (1...65535).contains(port) else {
            throw HeliographError(.badRequest, "'\(url.absoluteString)' has port \(port), outside 1-65535")
        }
        text = "\(scheme)://\(host):\(port)"
    }

    /// Parses an origin or base URL given as text (a `--public-origin` value).
    public init(parsing string: String) throws(HeliographError) {
        guard let url = URL(string: string.trimmingCharacters(in: .whitespaces)) else {
            throw HeliographError(.badRequest, "'\(string)' is not a URL such as https://chat.example.org")
        }
        try self.init(url: url)
    }

    public var description: String { text }
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
