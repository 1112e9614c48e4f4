import Crypto
import Foundation
import HeliographCore

/// The code a new device shows while it waits to be linked to its account, and that a person
/// types (or scans) on an active device to approve it.
///
/// The code is a hash of the account, the new device's id and the agreement key it committed
/// to at login. The approving device recomputes it from what the server reports about the
/// waiting device: if the server substituted the key (to slip its own device into the signed
/// list), the codes differ and nothing is approved. Twelve base-32 characters carry 60 bits, so
/// a server searching for a key whose code matches the one on the person's screen needs about
/// 2⁶⁰ tries for that single attempt; the scannable form carries the full 256-bit hash.
public enum LinkCode {
    /// The full hash the code is cut from.
    public static func digest(account: AccountID, device: DeviceID, agreementKey: Data) -> Data {
        var writer = ByteWriter(label: "heliograph-link-code-v1")
        writer.append(account.rawValue)
        writer.append(device.rawValue)
        writer.appendField(agreementKey)
        return Data(SHA256.hash(data: writer.bytes))
    }

    /// The short code, as `ABCD-EFGH-JKMN` (Crockford base 32: no I, L, O or U to misread).
    public static func code(account: AccountID, device: DeviceID, agreementKey: Data) -> String {
        let digest = digest(account: account, device: device, agreementKey: agreementKey)
        let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
        // The first 60 bits, five at a time.
        var bits = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } >> 4
        var characters: [Character] = []
        for _ in 0..<12 {
            characters.append(alphabet[Int(bits & 31)])
            bits >>= 5
        }
        let text = String(characters.reversed())
        return [0, 4, 8].map { offset in
            let start = text.index(text.startIndex, offsetBy: offset)
            return String(text[start..<text.index(start, offsetBy: 4)])
        }.joined(separator: "-")
    }

    /// The scannable form (for a QR code): `heliograph-link:1:` and the full digest in base64url.
    public static func scannable(account: AccountID, device: DeviceID, agreementKey: Data) -> String {
        "heliograph-link:1:" + digest(account: account, device: device, agreementKey: agreementKey).base64URLEncodedString()
    }

    /// Whether `entered` (a short code in any case, with or without dashes, or a scannable
    /// string) names this device and key.
    public static func matches(_ entered: String, account: AccountID, device: DeviceID, agreementKey: Data) -> Bool {
        let trimmed = entered.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("heliograph-link:") {
            return trimmed == scannable(account: account, device: device, agreementKey: agreementKey)
        }
        let normalised = trimmed.uppercased().filter { $0 != "-" && $0 != " " }
        return normalised == code(account: account, device: device, agreementKey: agreementKey).filter { $0 != "-" }
    }
}

/// The statement both the old and the new identity key sign when an account changes its
/// identity key: on revoking a device with `--rotate-identity`, or when recovering an account
/// whose devices were all revoked.
///
/// Signed by the old key, it proves the holder of the account agreed; signed by the new key,
/// that the holder of the new private key did. `purpose` and `context` bind the statement to one
/// use (a recovery login's challenge nonce, or the revoked device), so it cannot be replayed for
/// another.
public enum IdentityRotationProof {
    /// The bytes both keys sign.
    public static func signedBytes(
        account: AccountID, oldKey: IdentityPublicKey, newKey: IdentityPublicKey, purpose: String, context: Data
    ) -> Data {
        var writer = ByteWriter(label: "heliograph-identity-rotation-v1")
        writer.append(account.rawValue)
        writer.appendField(oldKey.rawBytes)
        writer.appendField(newKey.rawBytes)
        writer.appendField(Data(purpose.utf8))
        writer.appendField(context)
        return writer.bytes
    }

    /// Signs a rotation with both keys: (old signature, new signature).
    public static func sign(
        account: AccountID, old: IdentityKeyPair, new: IdentityKeyPair, purpose: String, context: Data
    ) throws -> (old: Data, new: Data) {
        let bytes = signedBytes(
            account: account, oldKey: old.publicKey, newKey: new.publicKey, purpose: purpose, context: context)
        return (try old.sign(bytes), try new.sign(bytes))
    }

    /// Checks both signatures.
    public static func verify(
        account: AccountID, oldKey: IdentityPublicKey, newKey: IdentityPublicKey, purpose: String, context: Data,
        oldSignature: Data, newSignature: Data
    ) throws(SessionError) {
        guard oldKey != newKey else { throw SessionError(.invalidKey, "the new identity key equals the old one") }
        let bytes = signedBytes(account: account, oldKey: oldKey, newKey: newKey, purpose: purpose, context: context)
        guard oldKey.isValidSignature(oldSignature, for: bytes) else {
            throw SessionError(.badSignature, "the identity rotation is not signed by the current identity key")
        }
        guard newKey.isValidSignature(newSignature, for: bytes) else {
            throw SessionError(.badSignature, "the identity rotation is not signed by the new identity key")
        }
    }
}
