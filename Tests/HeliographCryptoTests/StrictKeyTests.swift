import Crypto
import Foundation
import HeliographCore
import HeliographCrypto
import Testing

/// p = 2²⁵⁵ − 19 and the group order L, little-endian, written out here (not taken from the
/// code under test) so the tests check the code against independent values.
private let p = Data(hex: "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
private let groupOrder = Data(hex: "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")

/// The canonical encodings of the eight points of small order, each derived in
/// `Ed25519Point.smallOrderYCoordinates`' comment: y = 1 (order 1), y = p − 1 (order 2),
/// y = 0 with either sign of x (order 4), and the two order-8 y values with either sign.
private let canonicalSmallOrder: [Data] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
].map { Data(hex: $0) }

/// Their non-canonical aliases: a sign bit on x = 0 (y = ±1), and y + p (for y = 0 and 1) with
/// either sign bit.
private let aliasedSmallOrder: [Data] = [
    "0100000000000000000000000000000000000000000000000000000000000080",  // y = 1, "−0"
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  // y = p − 1, "−0"
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // y = p ≡ 0
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // y = p + 1 ≡ 1
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
].map { Data(hex: $0) }

/// The identity point's encoding, used as R in the forgeries below.
private let neutral = Data(hex: "0100000000000000000000000000000000000000000000000000000000000000")

@Suite("Strict Ed25519 and X25519 keys")
struct StrictKeyTests {
    /// RFC 8032 §7.1 (Ed25519 test vectors): TEST 1, TEST 2, TEST 3 and TEST SHA(abc). Each
    /// verifies through the strict checks, and the public key derives from the secret key.
    @Test("RFC 8032 §7.1 vectors verify under the strict checks")
    func rfc8032Vectors() throws {
        let vectors: [(secret: String, public: String, message: String, signature: String)] = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
            ),
            (
                "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
                "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"
            ),
        ]
        for vector in vectors {
            let pair = try IdentityKeyPair(privateKeyBytes: Data(hex: vector.secret))
            #expect(pair.publicKey.rawBytes == Data(hex: vector.public))
            let key = try IdentityPublicKey(rawBytes: Data(hex: vector.public))
            let message = Data(hex: vector.message)
            let signature = Data(hex: vector.signature)
            #expect(key.isValidSignature(signature, for: message))
            #expect(!key.isValidSignature(signature, for: message + Data([0])))
        }
    }

    @Test("the small-order list has the 8 canonical encodings and their 6 aliases, and nothing else")
    func smallOrderList() {
        #expect(Ed25519Point.smallOrderEncodings == Set(canonicalSmallOrder + aliasedSmallOrder))
        #expect(Ed25519Point.smallOrderEncodings.count == 14)
        for encoding in canonicalSmallOrder {
            #expect(Ed25519Point.isCanonical(encoding), "\(encoding.hex)")
        }
        for encoding in aliasedSmallOrder {
            #expect(!Ed25519Point.isCanonical(encoding), "\(encoding.hex)")
        }
    }

    /// Proves, with swift-crypto's own verifier, that every listed encoding is a point of small
    /// order A: the signature (R = neutral, S = 0) claims [0]B = [k]A, true exactly when the
    /// order of A divides k = SHA-512(R ‖ A ‖ M) mod L — so for some of 64 messages when A has
    /// order ≤ 8, and for none with a real key. It also shows what swift-crypto accepts.
    @Test("every listed encoding is of small order, swift-crypto accepts it, the strict gate refuses it")
    func smallOrderKeysAreRefused() throws {
        let zeroSignature = neutral + Data(count: 32)
        let messages = (0..<64).map { Data("message \($0)".utf8) }
        for encoding in canonicalSmallOrder + aliasedSmallOrder {
            let lenient = try Curve25519.Signing.PublicKey(rawRepresentation: encoding)
            #expect(messages.contains { lenient.isValidSignature(zeroSignature, for: $0) }, "\(encoding.hex)")
            #expect(throws: HeliographError(.invalidKey, "")) { try IdentityPublicKey(rawBytes: encoding) }
        }
        for _ in 0..<16 {
            let real = IdentityKeyPair().publicKey
            #expect(!messages.contains { real.isValidSignature(zeroSignature, for: $0) })
            #expect(try IdentityPublicKey(rawBytes: real.rawBytes) == real)
        }
    }

    @Test("the fixed signature 01 00…00 ‖ 00…00 forges for key 01 00…00 in swift-crypto and is refused here")
    func fixedSignatureAttack() throws {
        let forged = neutral + Data(count: 32)
        let lenient = try Curve25519.Signing.PublicKey(rawRepresentation: neutral)
        for message in ["log me in", "", "anything at all"].map({ Data($0.utf8) }) {
            #expect(lenient.isValidSignature(forged, for: message))
        }
        #expect(throws: HeliographError(.invalidKey, "")) { try IdentityPublicKey(rawBytes: neutral) }
        // And the same R ‖ S is refused as a signature under any real key.
        let real = IdentityKeyPair()
        #expect(!real.publicKey.isValidSignature(forged, for: Data("log me in".utf8)))
    }

    @Test("encodings with y ≥ p are refused, whatever point they would decode to")
    func nonCanonicalKeys() throws {
        // y = p + k for k = 0…18 covers every 255-bit value at or above p, with both sign bits.
        for k in 0...18 {
            var y = [UInt8](p)
            y[0] += UInt8(k)
            for sign: UInt8 in [0, 0x80] {
                var encoding = y
                encoding[31] |= sign
                #expect(!Ed25519Point.isCanonical(Data(encoding)))
                #expect(throws: HeliographError(.invalidKey, "")) { try IdentityPublicKey(rawBytes: Data(encoding)) }
            }
        }
        // p − 1 is the largest canonical y.
        #expect(Ed25519Point.isCanonical(Data(hex: "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")))
    }

    /// A signature whose R is the neutral element, made with a real private key: S = k·a mod L,
    /// so [S]B − [k]A is the neutral element and the equation holds. swift-crypto accepts it;
    /// the strict check refuses a small-order R.
    @Test("a small-order R verifies in swift-crypto but not under the strict checks")
    func smallOrderR() throws {
        let seed = Data(hex: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        let pair = try IdentityKeyPair(privateKeyBytes: seed)
        let publicKey = pair.publicKey.rawBytes
        let message = Data("small-order R".utf8)
        let signature = neutral + signatureScalar(seed: seed, r: neutral, publicKey: publicKey, message: message)
        let lenient = try Curve25519.Signing.PublicKey(rawRepresentation: publicKey)
        #expect(lenient.isValidSignature(signature, for: message))
        #expect(!pair.publicKey.isValidSignature(signature, for: message))

        // R encoded non-canonically ("−0" sign bit, or y = p + 1): swift-crypto compares R's bytes
        // with the canonical encoding it computes, so it already refuses these; so do we.
        for alias in [
            "0100000000000000000000000000000000000000000000000000000000000080",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ] {
            let r = Data(hex: alias)
            let aliased = r + signatureScalar(seed: seed, r: r, publicKey: publicKey, message: message)
            #expect(!lenient.isValidSignature(aliased, for: message))
            #expect(!pair.publicKey.isValidSignature(aliased, for: message))
        }
    }

    /// S + L is the same scalar modulo L; RFC 8032 requires S < L. BoringSSL already refuses it
    /// (the first expectation documents that); the strict check refuses it before BoringSSL.
    @Test("a signature with S ≥ L is refused")
    func malleableScalar() throws {
        let pair = IdentityKeyPair()
        let message = Data("pay 10".utf8)
        let signature = try pair.sign(message)
        #expect(pair.publicKey.isValidSignature(signature, for: message))
        let s = Scalar(bytes: signature.suffix(32))
        let bumped = signature.prefix(32) + (s + Scalar(bytes: groupOrder)).bytes(count: 32)
        let lenient = try Curve25519.Signing.PublicKey(rawRepresentation: pair.publicKey.rawBytes)
        #expect(!lenient.isValidSignature(bumped, for: message))
        #expect(!pair.publicKey.isValidSignature(bumped, for: message))
        #expect(!Ed25519Point.isReducedScalar(groupOrder))
        #expect(Ed25519Point.isReducedScalar((Scalar(bytes: groupOrder) - Scalar(1)).bytes(count: 32)))
    }

    // MARK: X25519

    /// The canonical small-order u-coordinates: 0, 1, p − 1 and the two order-8 points (u =
    /// (1 + y)/(1 − y) of the Edwards order-8 points), and their aliases: p and p + 1, and every
    /// one with bit 255 set (X25519 ignores that bit, RFC 7748 §5).
    static let smallOrderU: [Data] = {
        let canonical = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ].map { Data(hex: $0) }
        return canonical
            + canonical.map { value in
                var high = value
                high[31] |= 0x80
                return high
            }
    }()

    @Test("small-order X25519 keys: swift-crypto gets no secret from them, and every check refuses them")
    func smallOrderX25519() throws {
        let ours = AgreementKeyPair()
        let raw = Curve25519.KeyAgreement.PrivateKey()
        let device = try TestDevice()
        let (account, id, identity) = (device.local.account, device.local.device, device.local.identity)
        for u in Self.smallOrderU {
            #expect(X25519Point.isSmallOrder(u), "\(u.hex)")
            // swift-crypto's own agreement yields nothing usable: the point is of small order.
            let secret = try? raw.sharedSecretFromKeyAgreement(with: Curve25519.KeyAgreement.PublicKey(rawRepresentation: u))
            #expect(secret.map { $0.withUnsafeBytes { Data($0) }.allSatisfy { $0 == 0 } } ?? true, "\(u.hex)")
            #expect(throws: SessionError(.invalidKey, "")) { _ = try ours.sharedSecret(with: u) }

            // Properly signed, still refused: as agreement key, signed prekey and one-time prekey.
            for kind in [PrekeyKind.signedPrekey, .oneTimePrekey] {
                let prekey = try SignedPrekey.sign(kind: kind, id: 5, publicKey: u, account: account, device: id, with: identity)
                #expect(throws: SessionError(.invalidKey, "")) {
                    try prekey.verify(account: account, device: id, identity: identity.publicKey)
                }
            }
            let agreement = try DeviceAgreementKey.sign(publicKey: u, account: account, device: id, with: identity)
            #expect(throws: SessionError(.invalidKey, "")) {
                try agreement.verify(account: account, device: id, identity: identity.publicKey)
            }

            var bundles = [try device.bundle(), try device.bundle(), try device.bundle()]
            bundles[0].agreementKey = agreement
            bundles[1].signedPrekey = try .sign(
                kind: .signedPrekey, id: 1, publicKey: u, account: account, device: id, with: identity)
            bundles[2].oneTimePrekey = try .sign(
                kind: .oneTimePrekey, id: 7, publicKey: u, account: account, device: id, with: identity)
            for bundle in bundles {
                guard case .rejected(let error) = PrekeyBundleVerifier.verify(bundle, identity: identity.publicKey) else {
                    Issue.record("a bundle with the small-order key \(u.hex) verified")
                    continue
                }
                #expect(error.code == .invalidKey)
            }
        }
        // Real keys pass, and the untouched bundle verifies.
        for _ in 0..<64 { #expect(!X25519Point.isSmallOrder(AgreementKeyPair().publicKeyBytes)) }
        _ = try verified(device.bundle(), identity.publicKey)
    }

    @Test("a setup message whose base key is of small order is refused by the responder")
    func smallOrderBaseKey() throws {
        let alice = try TestDevice()
        let bob = try TestDevice()
        let setup = try PQXDH.initiate(from: alice.local, to: try verified(bob.bundle(), bob.local.identity.publicKey))
        for u in Self.smallOrderU {
            var header = setup.header
            header.baseKey = u
            #expect(throws: SessionError(.invalidKey, "")) { _ = try bob.respond(to: header, from: alice) }
        }
        _ = try bob.respond(to: setup.header, from: alice)
    }

    /// The S half of an Ed25519 signature with the given R, computed from the private seed as
    /// RFC 8032 §5.1.6 does: S = (r + k·a) mod L with r = 0, so that R need not be [r]B.
    private func signatureScalar(seed: Data, r: Data, publicKey: Data, message: Data) -> Data {
        var expanded = [UInt8](SHA512.hash(data: seed))
        expanded[0] &= 248
        expanded[31] &= 127
        expanded[31] |= 64
        let a = Scalar(bytes: Data(expanded.prefix(32)))
        let k = Scalar(bytes: Data(SHA512.hash(data: r + publicKey + message))).reduced(modulo: Scalar(bytes: groupOrder))
        return (k * a).reduced(modulo: Scalar(bytes: groupOrder)).bytes(count: 32)
    }
}

/// A non-negative integer as little-endian 32-bit limbs: just enough arithmetic to build the
/// signature scalars above independently of the code under test.
private struct Scalar {
    var limbs: [UInt32]

    init(_ value: UInt32) { limbs = [value] }

    init(bytes: some Collection<UInt8>) {
        let array = [UInt8](bytes)
        limbs = stride(from: 0, to: array.count, by: 4).map { start in
            (0..<4).reduce(UInt32(0)) { value, offset in
                start + offset < array.count ? value | UInt32(array[start + offset]) << (8 * offset) : value
            }
        }
    }

    func bytes(count: Int) -> Data {
        Data(
            (0..<count).map { index in
                index / 4 < limbs.count ? UInt8(truncatingIfNeeded: limbs[index / 4] >> (8 * (index % 4))) : 0
            })
    }

    var bitCount: Int { limbs.count * 32 }

    func bit(_ index: Int) -> Bool { limbs[index / 32] >> (index % 32) & 1 == 1 }

    static func + (lhs: Scalar, rhs: Scalar) -> Scalar {
        var result = Scalar(0)
        result.limbs = []
        var carry: UInt64 = 0
        for index in 0..<max(lhs.limbs.count, rhs.limbs.count) {
            let sum = UInt64(lhs.limbs[safe: index]) + UInt64(rhs.limbs[safe: index]) + carry
            result.limbs.append(UInt32(truncatingIfNeeded: sum))
            carry = sum >> 32
        }
        if carry > 0 { result.limbs.append(UInt32(carry)) }
        return result
    }

    /// lhs − rhs for lhs ≥ rhs.
    static func - (lhs: Scalar, rhs: Scalar) -> Scalar {
        var result = Scalar(0)
        result.limbs = []
        var borrow: Int64 = 0
        for index in 0..<lhs.limbs.count {
            var difference = Int64(lhs.limbs[index]) - Int64(rhs.limbs[safe: index]) - borrow
            borrow = difference < 0 ? 1 : 0
            if difference < 0 { difference += 1 << 32 }
            result.limbs.append(UInt32(difference))
        }
        return result
    }

    static func * (lhs: Scalar, rhs: Scalar) -> Scalar {
        var product = [UInt64](repeating: 0, count: lhs.limbs.count + rhs.limbs.count + 1)
        for (i, x) in lhs.limbs.enumerated() {
            var carry: UInt64 = 0
            for (j, y) in rhs.limbs.enumerated() {
                let value = product[i + j] + UInt64(x) * UInt64(y) + carry
                product[i + j] = value & 0xFFFF_FFFF
                carry = value >> 32
            }
            product[i + rhs.limbs.count] += carry
        }
        var result = Scalar(0)
        result.limbs = product.map { UInt32(truncatingIfNeeded: $0) }
        return result
    }

    static func < (lhs: Scalar, rhs: Scalar) -> Bool {
        for index in stride(from: max(lhs.limbs.count, rhs.limbs.count) - 1, through: 0, by: -1) {
            let (a, b) = (lhs.limbs[safe: index], rhs.limbs[safe: index])
            if a != b { return a < b }
        }
        return false
    }

    /// Binary long division: shift the bits in from the top, subtracting the modulus when it fits.
    func reduced(modulo modulus: Scalar) -> Scalar {
        var remainder = Scalar(0)
        for index in stride(from: bitCount - 1, through: 0, by: -1) {
            remainder = remainder + remainder + Scalar(bit(index) ? 1 : 0)
            if !(remainder < modulus) { remainder = remainder - modulus }
        }
        return remainder
    }
}

extension [UInt32] {
    fileprivate subscript(safe index: Int) -> UInt32 { index < count ? self[index] : 0 }
}

extension Data {
    fileprivate var hex: String { map { String(format: "%02x", $0) }.joined() }
}
