import Crypto
import Foundation
import Testing

/// Known-answer tests for the swift-crypto primitives Heliograph relies on. Each test names the published source
/// of its vector. All values were checked against independent implementations (pyca/cryptography, PyCryptodome,
/// kyber-py and a from-scratch X25519 ladder) before being written down here.
@Suite("Primitive known-answer vectors")
struct PrimitiveVectorTests {
    // MARK: - X25519

    /// RFC 7748 §5.2, first X25519 test vector (input scalar, input u-coordinate, output u-coordinate).
    /// The scalar is given unclamped, so this also checks that the implementation clamps it.
    @Test("RFC 7748 §5.2 X25519, first vector")
    func x25519FirstVector() throws {
        let output = try x25519(
            scalar: "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            uCoordinate: "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"
        )
        #expect(output == Data(hexString: "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"))
    }

    /// RFC 7748 §5.2, second X25519 test vector. Its u-coordinate has the most significant bit of the last byte
    /// set (0x93), which RFC 7748 §5 requires implementations to mask off; without the masking the output differs.
    @Test("RFC 7748 §5.2 X25519, second vector (u-coordinate with the top bit set)")
    func x25519SecondVector() throws {
        let output = try x25519(
            scalar: "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            uCoordinate: "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493"
        )
        #expect(output == Data(hexString: "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"))
    }

    /// RFC 7748 §6.1, the X25519 Diffie-Hellman example: Alice's and Bob's private keys, the public keys derived
    /// from them, and the shared secret both sides compute.
    @Test("RFC 7748 §6.1 X25519 Diffie-Hellman")
    func x25519DiffieHellman() throws {
        let alice = try Curve25519.KeyAgreement.PrivateKey(
            rawRepresentation: Data(hexString: "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let bob = try Curve25519.KeyAgreement.PrivateKey(
            rawRepresentation: Data(hexString: "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
        let alicePublic = Data(hexString: "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        let bobPublic = Data(hexString: "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        let shared = Data(hexString: "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

        #expect(alice.publicKey.rawRepresentation == alicePublic)
        #expect(bob.publicKey.rawRepresentation == bobPublic)
        let aliceSide = try alice.sharedSecretFromKeyAgreement(
            with: Curve25519.KeyAgreement.PublicKey(rawRepresentation: bobPublic))
        let bobSide = try bob.sharedSecretFromKeyAgreement(
            with: Curve25519.KeyAgreement.PublicKey(rawRepresentation: alicePublic))
        #expect(aliceSide.withUnsafeBytes { Data($0) } == shared)
        #expect(bobSide.withUnsafeBytes { Data($0) } == shared)
    }

    // MARK: - Ed25519

    /// RFC 8032 §7.1, TEST 2 (one-byte message 0x72).
    @Test("RFC 8032 §7.1 Ed25519 TEST 2")
    func ed25519Test2() throws {
        try checkEd25519(
            secretKey: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            publicKey: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            message: "72",
            signature: """
                92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da
                085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00
                """
        )
    }

    /// RFC 8032 §7.1, TEST 3 (two-byte message 0xaf82).
    @Test("RFC 8032 §7.1 Ed25519 TEST 3")
    func ed25519Test3() throws {
        try checkEd25519(
            secretKey: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            publicKey: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            message: "af82",
            signature: """
                6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac
                18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a
                """
        )
    }

    // MARK: - HKDF-SHA-256

    /// RFC 5869 Appendix A, Test Case 1 (basic test case with SHA-256).
    @Test("RFC 5869 A.1 HKDF-SHA-256, test case 1")
    func hkdfTestCase1() {
        checkHKDF(
            inputKeyMaterial: Data(repeating: 0x0b, count: 22),
            salt: Data(UInt8(0x00)...UInt8(0x0c)),
            info: Data(UInt8(0xf0)...UInt8(0xf9)),
            outputByteCount: 42,
            pseudoRandomKey: "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
            outputKeyingMaterial: """
                3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf
                34007208d5b887185865
                """
        )
    }

    /// RFC 5869 Appendix A, Test Case 2 (SHA-256 with 80-byte inputs and an 82-byte output).
    @Test("RFC 5869 A.2 HKDF-SHA-256, test case 2")
    func hkdfTestCase2() {
        checkHKDF(
            inputKeyMaterial: Data(UInt8(0x00)...UInt8(0x4f)),
            salt: Data(UInt8(0x60)...UInt8(0xaf)),
            info: Data(UInt8(0xb0)...UInt8(0xff)),
            outputByteCount: 82,
            pseudoRandomKey: "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
            outputKeyingMaterial: """
                b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c
                59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71
                cc30c58179ec3e87c14c01d5c1f3434f1d87
                """
        )
    }

    /// RFC 5869 Appendix A, Test Case 3 (SHA-256 with an empty salt and empty info).
    @Test("RFC 5869 A.3 HKDF-SHA-256, test case 3")
    func hkdfTestCase3() {
        checkHKDF(
            inputKeyMaterial: Data(repeating: 0x0b, count: 22),
            salt: Data(),
            info: Data(),
            outputByteCount: 42,
            pseudoRandomKey: "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
            outputKeyingMaterial: """
                8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d
                9d201395faa4b61a96c8
                """
        )
    }

    // MARK: - HMAC-SHA-256

    /// RFC 4231 §4.2, Test Case 1 (HMAC-SHA-256 result).
    @Test("RFC 4231 §4.2 HMAC-SHA-256, test case 1")
    func hmacTestCase1() {
        let mac = hmacSHA256(key: Data(repeating: 0x0b, count: 20), message: Data("Hi There".utf8))
        #expect(mac == Data(hexString: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"))
    }

    /// RFC 4231 §4.3, Test Case 2 (key shorter than the hash output; HMAC-SHA-256 result).
    @Test("RFC 4231 §4.3 HMAC-SHA-256, test case 2")
    func hmacTestCase2() {
        let mac = hmacSHA256(key: Data("Jefe".utf8), message: Data("what do ya want for nothing?".utf8))
        #expect(mac == Data(hexString: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
    }

    /// RFC 4231 §4.4, Test Case 3 (50 bytes of 0xdd under a 20-byte 0xaa key; HMAC-SHA-256 result).
    @Test("RFC 4231 §4.4 HMAC-SHA-256, test case 3")
    func hmacTestCase3() {
        let mac = hmacSHA256(key: Data(repeating: 0xaa, count: 20), message: Data(repeating: 0xdd, count: 50))
        #expect(mac == Data(hexString: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"))
    }

    /// RFC 4231 §4.6, Test Case 5: the HMAC-SHA-256 output truncated to 128 bits.
    @Test("RFC 4231 §4.6 HMAC-SHA-256, test case 5 (truncated to 128 bits)")
    func hmacTestCase5Truncated() {
        let mac = hmacSHA256(key: Data(repeating: 0x0c, count: 20), message: Data("Test With Truncation".utf8))
        #expect(mac.count == 32)
        #expect(Data(mac.prefix(16)) == Data(hexString: "a3b6167473100ee06e0c796c2955552b"))
    }

    /// RFC 4231 §4.7, Test Case 6 (131-byte key, longer than the SHA-256 block size; HMAC-SHA-256 result).
    @Test("RFC 4231 §4.7 HMAC-SHA-256, test case 6 (key longer than a block)")
    func hmacTestCase6() {
        let mac = hmacSHA256(
            key: Data(repeating: 0xaa, count: 131),
            message: Data("Test Using Larger Than Block-Size Key - Hash Key First".utf8)
        )
        #expect(mac == Data(hexString: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"))
    }

    // MARK: - AES-256-GCM

    /// McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)" (the specification submitted to NIST),
    /// Test Case 14: all-zero 256-bit key and 96-bit IV, one all-zero block of plaintext, no AAD.
    @Test("GCM specification test case 14 (AES-256)")
    func aesGCMTestCase14() throws {
        try checkAESGCM(
            key: "0000000000000000000000000000000000000000000000000000000000000000",
            nonce: "000000000000000000000000",
            plaintext: "00000000000000000000000000000000",
            authenticatedData: "",
            ciphertext: "cea7403d4d606b6e074ec5d3baf39d18",
            tag: "d0d1c8a799996bf0265b98b5d48ab919"
        )
    }

    /// McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)" (the specification submitted to NIST),
    /// Test Case 15: 256-bit key, 96-bit IV, 64 bytes of plaintext, no AAD.
    @Test("GCM specification test case 15 (AES-256)")
    func aesGCMTestCase15() throws {
        try checkAESGCM(
            key: Self.gcmKey,
            nonce: Self.gcmNonce,
            plaintext: Self.gcmPlaintext,
            authenticatedData: "",
            ciphertext: """
                522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
                8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad
                """,
            tag: "b094dac5d93471bdec1a502270e3cc6c"
        )
    }

    /// McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)" (the specification submitted to NIST),
    /// Test Case 16: the key and IV of test case 15, the first 60 bytes of its plaintext, and 20 bytes of AAD.
    @Test("GCM specification test case 16 (AES-256 with AAD)")
    func aesGCMTestCase16() throws {
        try checkAESGCM(
            key: Self.gcmKey,
            nonce: Self.gcmNonce,
            plaintext: String(Self.gcmPlaintext.filter(\.isHexDigit).prefix(120)),
            authenticatedData: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            ciphertext: """
                522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
                8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662
                """,
            tag: "76fc6ece0f4e1768cddf8853bb2d551b"
        )
    }

    /// Key of GCM specification test cases 15 and 16.
    private static let gcmKey = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
    /// IV of GCM specification test cases 15 and 16.
    private static let gcmNonce = "cafebabefacedbaddecaf888"
    /// Plaintext of GCM specification test case 15 (test case 16 uses its first 60 bytes).
    private static let gcmPlaintext = """
        d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
        1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255
        """

    // MARK: - ML-KEM-768

    /// NIST ACVP-Server ML-KEM-keyGen-FIPS203 internal projection, test group 2 (ML-KEM-768), tcId 26: the key
    /// generated from the seed d || z must have exactly the expected 1184-byte encapsulation key. The vector
    /// itself lives in MLKEMVectors.swift.
    @available(macOS 26.0, iOS 26.0, *)
    @Test("FIPS 203 ML-KEM-768 key generation from a seed (NIST ACVP keyGen tcId 26)")
    func mlkemKeyGenerationACVP() throws {
        let vector = MLKEM768Vectors.ACVPKeyGenTC26.self
        let seed = Data(hexString: vector.d) + Data(hexString: vector.z)
        let expected = Data(hexString: vector.ek)
        #expect(seed.count == 64)
        #expect(expected.count == 1184)

        let privateKey = try MLKEM768.PrivateKey(seedRepresentation: seed, publicKey: nil)
        #expect(privateKey.publicKey.rawRepresentation == expected)
        #expect(privateKey.seedRepresentation == seed)
        // Supplying the matching public key must be accepted too.
        let checked = try MLKEM768.PrivateKey(
            seedRepresentation: seed, publicKey: MLKEM768.PublicKey(rawRepresentation: expected))
        #expect(checked.publicKey.rawRepresentation == expected)
    }

    /// C2SP Wycheproof `mlkem_768_test.json`, tcId 2 (FIPS 203 group): the key from the 64-byte seed d || z has the
    /// expected encapsulation key, and decapsulating the given ciphertext yields the expected shared secret.
    @available(macOS 26.0, iOS 26.0, *)
    @Test("FIPS 203 ML-KEM-768 decapsulation (Wycheproof tcId 2)")
    func mlkemDecapsulationWycheproof() throws {
        let vector = MLKEM768Vectors.WycheproofTC2.self
        let privateKey = try MLKEM768.PrivateKey(seedRepresentation: Data(hexString: vector.seed), publicKey: nil)
        #expect(privateKey.publicKey.rawRepresentation == Data(hexString: vector.ek))

        let ciphertext = Data(hexString: vector.c)
        #expect(ciphertext.count == 1088)
        let secret = try privateKey.decapsulate(ciphertext)
        #expect(secret.withUnsafeBytes { Data($0) } == Data(hexString: vector.k))
    }

    /// C2SP Wycheproof `mlkem_768_test.json`, tcId 1 (flag Strcmp, from C2SP CCTV's ML-KEM strcmp vectors): the
    /// ciphertext must be rejected implicitly, so decapsulation returns the rejection secret J(z || c) given in the
    /// vector rather than throwing.
    @available(macOS 26.0, iOS 26.0, *)
    @Test("FIPS 203 ML-KEM-768 implicit rejection (Wycheproof tcId 1, strcmp)")
    func mlkemImplicitRejectionWycheproof() throws {
        let vector = MLKEM768Vectors.WycheproofTC1Strcmp.self
        let privateKey = try MLKEM768.PrivateKey(seedRepresentation: Data(hexString: vector.seed), publicKey: nil)
        let secret = try privateKey.decapsulate(Data(hexString: vector.c))
        #expect(secret.withUnsafeBytes { Data($0) } == Data(hexString: vector.k))
    }

    /// FIPS 203 §8, Table 3 (ML-KEM-768 sizes): 1184-byte encapsulation key, 1088-byte ciphertext and a 32-byte
    /// shared secret; plus an encapsulate/decapsulate round trip and a seed that does not match a given public key.
    @available(macOS 26.0, iOS 26.0, *)
    @Test("FIPS 203 ML-KEM-768 sizes, round trip and public-key mismatch")
    func mlkemSizesAndRoundTrip() throws {
        let privateKey = try MLKEM768.PrivateKey()
        #expect(privateKey.seedRepresentation.count == 64)
        #expect(privateKey.publicKey.rawRepresentation.count == 1184)

        let result = try privateKey.publicKey.encapsulate()
        #expect(result.encapsulated.count == 1088)
        #expect(result.sharedSecret.bitCount == 256)
        let recovered = try privateKey.decapsulate(result.encapsulated)
        #expect(recovered == result.sharedSecret)

        let otherPublicKey = try MLKEM768.PublicKey(rawRepresentation: Data(hexString: MLKEM768Vectors.WycheproofTC2.ek))
        #expect(throws: (any Error).self) {
            try MLKEM768.PrivateKey(seedRepresentation: privateKey.seedRepresentation, publicKey: otherPublicKey)
        }
    }
}

// MARK: - Helpers

extension PrimitiveVectorTests {
    /// X25519(scalar, u) through the key-agreement API: the scalar as a private key, u as the peer's public key.
    private func x25519(scalar: String, uCoordinate: String) throws -> Data {
        let privateKey = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Data(hexString: scalar))
        let peer = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: Data(hexString: uCoordinate))
        return try privateKey.sharedSecretFromKeyAgreement(with: peer).withUnsafeBytes { Data($0) }
    }

    /// Checks public-key derivation from the secret key, acceptance of the published signature, and rejection of the
    /// signature with one bit flipped and of the message with one bit flipped.
    private func checkEd25519(
        secretKey: String,
        publicKey: String,
        message: String,
        signature: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let privateKey = try Curve25519.Signing.PrivateKey(rawRepresentation: Data(hexString: secretKey))
        let expectedPublic = Data(hexString: publicKey)
        #expect(privateKey.publicKey.rawRepresentation == expectedPublic, sourceLocation: sourceLocation)

        let verifier = try Curve25519.Signing.PublicKey(rawRepresentation: expectedPublic)
        let message = Data(hexString: message)
        let signature = Data(hexString: signature)
        #expect(signature.count == 64, sourceLocation: sourceLocation)
        #expect(verifier.isValidSignature(signature, for: message), sourceLocation: sourceLocation)

        var flippedSignature = signature
        flippedSignature[flippedSignature.startIndex] ^= 0x01
        #expect(!verifier.isValidSignature(flippedSignature, for: message), sourceLocation: sourceLocation)
        var flippedMessage = message
        flippedMessage[flippedMessage.startIndex] ^= 0x01
        #expect(!verifier.isValidSignature(signature, for: flippedMessage), sourceLocation: sourceLocation)

        #if !canImport(CryptoKit)
            // Off Apple platforms swift-crypto signs with BoringSSL, whose Ed25519 is the deterministic RFC 8032
            // algorithm, so the signature bytes must match. CryptoKit adds randomness, so there only validity is checked.
            #expect(try privateKey.signature(for: message) == signature, sourceLocation: sourceLocation)
        #endif
    }

    /// Checks HKDF-Extract (PRK), HKDF-Expand (OKM) and the one-shot derivation (OKM) against the expected values.
    private func checkHKDF(
        inputKeyMaterial: Data,
        salt: Data,
        info: Data,
        outputByteCount: Int,
        pseudoRandomKey: String,
        outputKeyingMaterial: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let ikm = SymmetricKey(data: inputKeyMaterial)
        let expectedOKM = Data(hexString: outputKeyingMaterial)
        #expect(expectedOKM.count == outputByteCount, sourceLocation: sourceLocation)

        let prk = HKDF<SHA256>.extract(inputKeyMaterial: ikm, salt: salt)
        #expect(Data(prk) == Data(hexString: pseudoRandomKey), sourceLocation: sourceLocation)

        let expanded = HKDF<SHA256>.expand(pseudoRandomKey: prk, info: info, outputByteCount: outputByteCount)
        #expect(expanded.withUnsafeBytes { Data($0) } == expectedOKM, sourceLocation: sourceLocation)

        let derived = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: ikm, salt: salt, info: info, outputByteCount: outputByteCount)
        #expect(derived.withUnsafeBytes { Data($0) } == expectedOKM, sourceLocation: sourceLocation)
    }

    /// HMAC-SHA-256 of `message` under `key`, as bytes.
    private func hmacSHA256(key: Data, message: Data) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    /// Seals with an explicit nonce and compares ciphertext and tag, opens the result again, and checks that the
    /// same box with one bit of the tag flipped is refused.
    private func checkAESGCM(
        key: String,
        nonce: String,
        plaintext: String,
        authenticatedData: String,
        ciphertext: String,
        tag: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let key = SymmetricKey(data: Data(hexString: key))
        #expect(key.bitCount == 256, sourceLocation: sourceLocation)
        let nonce = try AES.GCM.Nonce(data: Data(hexString: nonce))
        let plaintext = Data(hexString: plaintext)
        let authenticatedData = Data(hexString: authenticatedData)

        let sealed = try AES.GCM.seal(plaintext, using: key, nonce: nonce, authenticating: authenticatedData)
        #expect(sealed.ciphertext == Data(hexString: ciphertext), sourceLocation: sourceLocation)
        #expect(sealed.tag == Data(hexString: tag), sourceLocation: sourceLocation)
        #expect(
            try AES.GCM.open(sealed, using: key, authenticating: authenticatedData) == plaintext,
            sourceLocation: sourceLocation
        )

        var badTag = Data(hexString: tag)
        badTag[badTag.startIndex] ^= 0x01
        let tampered = try AES.GCM.SealedBox(nonce: nonce, ciphertext: sealed.ciphertext, tag: badTag)
        #expect(throws: (any Error).self, sourceLocation: sourceLocation) {
            try AES.GCM.open(tampered, using: key, authenticating: authenticatedData)
        }
    }
}

fileprivate extension Data {
    /// Decodes hexadecimal digits, ignoring whitespace and line breaks. Traps on anything else: the vectors in this
    /// file are fixed, so malformed input is a bug in the test itself.
    init(hexString: String) {
        let digits = Array(hexString.filter { !$0.isWhitespace })
        precondition(digits.count.isMultiple(of: 2), "odd number of hex digits")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(digits[index...index + 1]), radix: 16) else {
                preconditionFailure("invalid hex digits \(String(digits[index...index + 1]))")
            }
            bytes.append(byte)
        }
        self.init(bytes)
    }
}
