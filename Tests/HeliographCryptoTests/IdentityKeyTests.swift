import Foundation
import HeliographCore
import HeliographCrypto
import Testing

@Suite("Identity keys and login proofs")
struct IdentityKeyTests {
    /// RFC 8032 §7.1, TEST 1: the public key derived from the secret key, and the signature of the
    /// empty message. Ed25519 signatures are deterministic, so the bytes must match exactly.
    @Test("RFC 8032 test vector 1 (empty message)")
    func rfc8032Vector1() throws {
        let secret = Data(hex: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        let expectedPublic = Data(hex: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let expectedSignature = Data(
            hex:
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        )
        let pair = try IdentityKeyPair(privateKeyBytes: secret)
        #expect(pair.publicKey.rawBytes == expectedPublic)
        let key = try IdentityPublicKey(rawBytes: expectedPublic)
        #expect(key.isValidSignature(expectedSignature, for: Data()))
        #expect(!key.isValidSignature(expectedSignature, for: Data([0])))
    }

    @Test("a login proof verifies only for its nonce, challenge, account, origin, device name and key")
    func loginProof() throws {
        let pair = IdentityKeyPair()
        let other = IdentityKeyPair()
        let nonce = SessionToken.randomNonce()
        let challenge = UUID()
        let account = AccountID.random()
        let origin = try ServerOrigin(parsing: "https://chat.example.org")
        let signature = try pair.signLogin(
            nonce: nonce, challengeID: challenge, account: account, origin: origin, deviceName: "laptop")
        func verify(
            key: IdentityPublicKey? = nil, nonce: Data? = nil, challengeID: UUID? = nil, account: AccountID? = nil,
            origins: [ServerOrigin]? = nil, deviceName: String = "laptop"
        ) throws {
            try LoginProof.verify(
                signature: signature, identityKey: key ?? pair.publicKey, nonce: nonce ?? SessionToken.randomNonce(),
                challengeID: challengeID ?? challenge, account: account ?? AccountID.random(), origins: origins ?? [origin],
                deviceName: deviceName)
        }
        try verify(nonce: nonce, account: account)
        // The name is signed as the server stores it, so surrounding spaces make no difference.
        try verify(nonce: nonce, account: account, deviceName: "  laptop\n")
        let bad = HeliographError(.badSignature, "")
        #expect(throws: bad) { try verify(key: other.publicKey, nonce: nonce, account: account) }
        #expect(throws: bad) { try verify(account: account) }
        #expect(throws: bad) { try verify(nonce: nonce, challengeID: UUID(), account: account) }
        #expect(throws: bad) { try verify(nonce: nonce, account: account, deviceName: "phone") }
        #expect(throws: bad) { try verify(nonce: nonce) }
        #expect(throws: bad) {
            try verify(nonce: nonce, account: account, origins: [try ServerOrigin(parsing: "https://chat.example.net")])
        }
    }

    @Test("public keys of the wrong length are refused")
    func badKeys() {
        #expect(throws: HeliographError(.invalidKey, "")) { try IdentityPublicKey(rawBytes: Data(count: 31)) }
        #expect(throws: HeliographError(.invalidKey, "")) { try IdentityPublicKey(rawBytes: Data(count: 33)) }
        #expect(throws: HeliographError(.invalidKey, "")) { try IdentityKeyPair(privateKeyBytes: Data(count: 5)) }
    }

    @Test("tokens are random and stored only as their SHA-256")
    func tokens() {
        let first = SessionToken.generate()
        let second = SessionToken.generate()
        #expect(first != second)
        #expect(first.count == 43)  // 32 bytes, base64url without padding
        #expect(SessionToken.hash(first).count == 32)
        #expect(SessionToken.hash(first) == SessionToken.hash(first))
        #expect(SessionToken.hash(first) != SessionToken.hash(second))
        // FIPS 180-2 / RFC 6234: SHA-256("abc").
        #expect(SessionToken.hash("abc") == Data(hex: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
    }
}

extension Data {
    init(hex: String) {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        self.init(bytes)
    }
}
