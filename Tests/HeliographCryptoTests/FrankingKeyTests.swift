import Foundation
import HeliographCore
import HeliographCrypto
import Testing

@Suite("Franking server keys: tag format and sealing")
struct FrankingKeyTests {
    /// A fixed context. The expected HMAC was computed independently with Python's `hmac` and
    /// `hashlib` over the byte layout docs/security.md describes (length-prefixed label and
    /// commitment, four 16-byte UUIDs, big-endian time, length-prefixed message id), with the
    /// server key bytes 00 01 … 1f.
    static let context = Franking.Context(
        commitment: Data((0..<32).map { 0xC0 + UInt8($0 % 16) }),
        senderAccount: AccountID(UUID(uuidString: "11111111-2222-3333-4444-555555555555")!),
        senderDevice: DeviceID(UUID(uuidString: "66666666-7777-8888-9999-aaaaaaaaaaaa")!),
        recipientAccount: AccountID(UUID(uuidString: "bbbbbbbb-cccc-dddd-eeee-ffffffffffff")!),
        recipientDevice: DeviceID(UUID(uuidString: "01234567-89ab-cdef-0123-456789abcdef")!),
        serverTime: 1_790_000_000_123, messageID: "msg-0001")
    static let secret = Data(0..<32)
    static let expectedMAC = "4a1047a2b9c21a767801af234f50a989d1ae80cfcd502afd255c634dcd9b4189"

    @Test("a tag is 01 ‖ key id ‖ HMAC over the unchanged context; the earlier 32-byte form reads as key 0")
    func tagFormat() throws {
        let key = try Franking.ServerKey(id: 0x0102_0304, secret: Self.secret)
        let bytes = Franking.tag(Self.context, key: key)
        #expect(bytes.count == 37)
        #expect(Array(bytes.prefix(5)) == [1, 1, 2, 3, 4])
        #expect(bytes.dropFirst(5).map { String(format: "%02x", $0) }.joined() == Self.expectedMAC)
        let tag = try Franking.ServerTag(bytes: bytes)
        #expect(tag.keyID == 0x0102_0304)
        #expect(tag.bytes == bytes)
        #expect(Franking.isValidTag(tag, for: Self.context, key: key))

        // A tag from before key ids is the bare HMAC: it is key 0's, and verifies with it.
        let legacy = try Franking.ServerTag(bytes: Data(bytes.dropFirst(5)))
        #expect(legacy.keyID == 0)
        #expect(Franking.isValidTag(legacy, for: Self.context, key: try Franking.ServerKey(id: 0, secret: Self.secret)))
        // The same HMAC presented under another id is not that key's tag.
        #expect(!Franking.isValidTag(legacy, for: Self.context, key: key))
        var renamed = tag
        renamed.keyID = 9
        #expect(!Franking.isValidTag(renamed, for: Self.context, key: key))
    }

    @Test("malformed tags and wrong-size server keys are refused with a reason")
    func malformed() throws {
        let bytes = Franking.tag(Self.context, key: try Franking.ServerKey(id: 1, secret: Self.secret))
        for bad in [Data(), bytes.dropLast(), bytes + [0], Data([2]) + bytes.dropFirst(), Data(repeating: 1, count: 33)] {
            #expect(throws: SessionError(.malformed, "")) { _ = try Franking.ServerTag(bytes: Data(bad)) }
        }
        #expect(throws: SessionError(.invalidKey, "")) { _ = try Franking.ServerKey(id: 1, secret: Data(count: 16)) }
    }

    @Test("a sealed key opens only with its sealing key, id and purpose, and does not contain the key")
    func sealing() throws {
        let sealing = ServerSealingKey.generate()
        let secret = Franking.newServerSecret()
        let sealed = sealing.seal(secret, keyID: 5, purpose: .frankingTag)
        #expect(sealed.count == 1 + 12 + 32 + 16)
        #expect(sealed.range(of: secret) == nil)
        #expect(try sealing.open(sealed, keyID: 5, purpose: .frankingTag) == secret)
        // Sealing twice gives different bytes (fresh nonce).
        #expect(sealing.seal(secret, keyID: 5, purpose: .frankingTag) != sealed)

        #expect(throws: SessionError(.tampered, "")) {
            _ = try ServerSealingKey.generate().open(sealed, keyID: 5, purpose: .frankingTag)
        }
        #expect(throws: SessionError(.tampered, "")) { _ = try sealing.open(sealed, keyID: 6, purpose: .frankingTag) }
        #expect(throws: SessionError(.tampered, "")) {
            _ = try sealing.open(sealed, keyID: 5, purpose: ServerSealingKey.Purpose(rawValue: "other"))
        }
        var flipped = sealed
        flipped[flipped.count - 20] ^= 1
        #expect(throws: SessionError(.tampered, "")) { _ = try sealing.open(flipped, keyID: 5, purpose: .frankingTag) }
        // The plain secret itself, as an earlier version stored it, is not a sealed key.
        #expect(throws: SessionError(.malformed, "")) { _ = try sealing.open(secret, keyID: 5, purpose: .frankingTag) }
    }

    @Test("sealing keys are read as 32 raw bytes or their base64; other lengths are refused")
    func encodings() throws {
        let key = ServerSealingKey.generate()
        let secret = Franking.newServerSecret()
        let sealed = key.seal(secret, keyID: 1, purpose: .frankingTag)
        let forms = [
            key.rawBytes, Data(key.base64.utf8), Data((key.base64 + "\n").utf8),
            Data(("  " + key.base64.replacingOccurrences(of: "=", with: "") + "\r\n").utf8),
        ]
        for form in forms {
            #expect(try ServerSealingKey(encoded: form).open(sealed, keyID: 1, purpose: .frankingTag) == secret)
        }
        #expect(key.rawBytes.count == 32)
        for bad in [Data(count: 16), Data("not base64 at all!".utf8), Data(Data(count: 31).base64EncodedString().utf8)] {
            #expect(throws: SessionError(.invalidKey, "")) { _ = try ServerSealingKey(encoded: bad) }
        }
    }
}
