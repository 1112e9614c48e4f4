import Crypto
import Foundation

/// The key that seals the server's franking keys where the database keeps them, so that a copy
/// of the database alone holds no usable key: whoever has it cannot make tags that verify.
///
/// It is never stored in the database. A sealed key is
/// `01 ‖ nonce (12) ‖ AES-256-GCM ciphertext ‖ GCM tag (16)`; the associated data binds it to
/// its purpose and key id, so a sealed key copied to another id or purpose does not open.
public struct ServerSealingKey: Sendable {
    /// The size of a sealing key.
    public static let size = 32
    /// The format version byte of a sealed key.
    static let version: UInt8 = 1

    /// What a sealed key is for; part of the associated data.
    public struct Purpose: Sendable, Equatable {
        /// The stable name.
        public let rawValue: String
        /// A purpose by name; each name seals keys that open only for that name.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// A key for franking tags (see ``Franking/ServerKey``).
        public static let frankingTag = Purpose(rawValue: "franking-tag")
    }

    private let key: SymmetricKey

    /// A sealing key from its 32 bytes.
    public init(rawBytes: Data) throws(SessionError) {
        guard rawBytes.count == Self.size else {
            throw SessionError(.invalidKey, "a sealing key must be \(Self.size) bytes, not \(rawBytes.count)")
        }
        key = SymmetricKey(data: rawBytes)
    }

    /// A sealing key as a file or variable holds it: exactly 32 raw bytes, or their base64
    /// (standard alphabet, padding optional) with surrounding white space ignored.
    public init(encoded: Data) throws(SessionError) {
        if encoded.count == Self.size {
            try self.init(rawBytes: encoded)
            return
        }
        var text = String(decoding: encoded, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        text += String(repeating: "=", count: (4 - text.count % 4) % 4)
        guard let decoded = Data(base64Encoded: text) else {
            throw SessionError(
                .invalidKey, "a sealing key must be \(Self.size) raw bytes or their base64; got \(encoded.count) bytes of neither"
            )
        }
        try self.init(rawBytes: decoded)
    }

    /// A fresh random sealing key.
    public static func generate() -> ServerSealingKey {
        // 32 random bytes always make a valid key.
        try! ServerSealingKey(rawBytes: Data.random(count: size))
    }

    /// The key's bytes, to write it to its file.
    public var rawBytes: Data { key.withUnsafeBytes { Data($0) } }

    /// The base64 form (what `HELIOGRAPH_FRANKING_SEALING_KEY` holds).
    public var base64: String { rawBytes.base64EncodedString() }

    /// Seals `secret`, stored under `keyID` for `purpose`.
    public func seal(_ secret: Data, keyID: UInt32, purpose: Purpose) -> Data {
        // A fresh random nonce per seal: keys are sealed a handful of times, far below GCM's
        // random-nonce bound.
        let box = try! AES.GCM.seal(secret, using: key, authenticating: Self.associatedData(keyID: keyID, purpose: purpose))
        var sealed = Data([Self.version])
        sealed.append(box.combined!)
        return sealed
    }

    /// Opens what ``seal(_:keyID:purpose:)`` made for the same id and purpose. Fails with
    /// `tampered` when this is not the key it was sealed with, or the bytes, id or purpose changed.
    public func open(_ sealed: Data, keyID: UInt32, purpose: Purpose) throws(SessionError) -> Data {
        let bytes = Data(sealed)
        guard bytes.count > 1 + 12 + 16, bytes.first == Self.version else {
            throw SessionError(.malformed, "sealed key \(keyID) is not in the sealed form (version \(Self.version))")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: bytes.dropFirst())
            return try AES.GCM.open(box, using: key, authenticating: Self.associatedData(keyID: keyID, purpose: purpose))
        } catch {
            throw SessionError(
                .tampered, "sealed key \(keyID) does not open with this sealing key (a different sealing key, or altered)")
        }
    }

    static func associatedData(keyID: UInt32, purpose: Purpose) -> Data {
        var writer = ByteWriter(label: "heliograph-sealed-server-key-v1")
        writer.appendField(Data(purpose.rawValue.utf8))
        writer.append(keyID)
        return writer.bytes
    }
}
