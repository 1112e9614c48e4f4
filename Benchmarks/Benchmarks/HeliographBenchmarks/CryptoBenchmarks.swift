import Benchmark
import Crypto
import Foundation
import HeliographCore
import HeliographCrypto

/// A device with published keys, for setting sessions up.
private struct BenchDevice {
    let local: LocalDevice
    let signedPrekey = AgreementKeyPair()
    let oneTimePrekey = AgreementKeyPair()
    let kemPrekey: KEMKeyPair

    init() throws {
        local = try LocalDevice(account: .random(), device: .random(), identity: IdentityKeyPair(), agreement: AgreementKeyPair())
        kemPrekey = try KEMKeyPair()
    }

    func bundle() throws -> UnverifiedPrekeyBundle {
        let (account, device, identity) = (local.account, local.device, local.identity)
        return UnverifiedPrekeyBundle(
            account: account, device: device, agreementKey: local.signedAgreementKey,
            signedPrekey: try .sign(
                kind: .signedPrekey, id: 1, publicKey: signedPrekey.publicKeyBytes, account: account, device: device,
                with: identity),
            oneTimePrekey: try .sign(
                kind: .oneTimePrekey, id: 2, publicKey: oneTimePrekey.publicKeyBytes, account: account, device: device,
                with: identity),
            kemPrekey: try .sign(
                kind: .kemPrekey, id: 3, publicKey: kemPrekey.publicKeyBytes, account: account, device: device, with: identity))
    }
}

/// One full session setup: verify the bundle, PQXDH on both sides, first message each way.
private func setUpSession(
    _ alice: BenchDevice, _ bob: BenchDevice, _ bundle: UnverifiedPrekeyBundle
) throws
    -> (RatchetSession, RatchetSession)
{
    guard case .verified(let verified) = PrekeyBundleVerifier.verify(bundle, identity: bob.local.identity.publicKey) else {
        fatalError("bundle did not verify")
    }
    var initiator = try RatchetSession(initiating: try PQXDH.initiate(from: alice.local, to: verified))
    guard case .setup(let header, let first) = try initiator.seal(Data(count: 128)) else { fatalError("no setup header") }
    let (secret, associated) = try PQXDH.respond(
        to: header, at: bob.local, from: alice.local.account, device: alice.local.device,
        identity: alice.local.identity.publicKey,
        prekeys: .init(signedPrekey: bob.signedPrekey, oneTimePrekey: bob.oneTimePrekey, kemPrekey: bob.kemPrekey))
    var responder = RatchetSession(
        responding: secret, associatedData: associated, signedPrekey: bob.signedPrekey, initiatorBaseKey: header.baseKey)
    _ = try responder.decrypt(first)
    return (initiator, responder)
}

/// Ratchet and session-setup benchmarks, each beside the cost of the primitives it uses.
func cryptoBenchmarks() {
    // The closure (and so the session setup before `startMeasurement`) runs once per thousand
    // messages: a session is long-lived, and its chains must advance across iterations.
    let amortised = Benchmark.Configuration(
        metrics: Benchmark.defaultConfiguration.metrics, scalingFactor: .kilo, maxDuration: .seconds(3))
    let payload = Data(repeating: 0x61, count: 128)
    let associated = Data(repeating: 1, count: 200)
    let chainKey = SymmetricKey(size: .bits256)
    let messageKey = Data(repeating: 9, count: 32)

    // The symmetric work of one message: two chain HMACs, one HKDF expanding the message key,
    // one AES-256-GCM seal. A ratchet step should cost at most twice this.
    Benchmark("crypto: primitives of one message (2 HMAC + HKDF + AES-GCM seal, 128 B)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(HMAC<SHA256>.authenticationCode(for: [0x01], using: chainKey))
            blackHole(HMAC<SHA256>.authenticationCode(for: [0x02], using: chainKey))
            let expanded = HKDF<SHA256>.deriveKey(
                inputKeyMaterial: SymmetricKey(data: messageKey), salt: Data(count: 32), info: Data("x".utf8),
                outputByteCount: 44
            ).withUnsafeBytes { Data($0) }
            blackHole(
                try AES.GCM.seal(
                    payload, using: SymmetricKey(data: expanded.prefix(32)), nonce: try AES.GCM.Nonce(data: expanded.suffix(12)),
                    authenticating: associated))
        }
    }

    Benchmark("crypto: ratchet encrypt (128 B, same chain)", configuration: amortised) { benchmark in
        let alicePair = try BenchDevice()
        let bob = try BenchDevice()
        var (alice, _) = try setUpSession(alicePair, bob, try bob.bundle())
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try alice.encrypt(payload))
        }
    }

    Benchmark("crypto: ratchet encrypt + decrypt (128 B, in order)", configuration: amortised) { benchmark in
        let alicePair = try BenchDevice()
        let bobPair = try BenchDevice()
        var (alice, bob) = try setUpSession(alicePair, bobPair, try bobPair.bundle())
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try bob.decrypt(try alice.encrypt(payload)))
        }
    }

    // A DH ratchet step: a new key pair, two X25519 agreements and two root-chain HKDFs.
    Benchmark("crypto: primitives of a DH ratchet step (X25519 keygen + 2 DH + 2 HKDF)") { benchmark in
        let remote = Curve25519.KeyAgreement.PrivateKey().publicKey
        let current = Curve25519.KeyAgreement.PrivateKey()
        for _ in benchmark.scaledIterations {
            let next = Curve25519.KeyAgreement.PrivateKey()
            for key in [current, next] {
                let shared = try key.sharedSecretFromKeyAgreement(with: remote)
                blackHole(
                    shared.hkdfDerivedSymmetricKey(using: SHA256.self, salt: messageKey, sharedInfo: Data(), outputByteCount: 64))
            }
        }
    }

    Benchmark("crypto: ratchet turn (encrypt + decrypt with a DH step, 128 B)", configuration: amortised) { benchmark in
        let alicePair = try BenchDevice()
        let bobPair = try BenchDevice()
        var (alice, bob) = try setUpSession(alicePair, bobPair, try bobPair.bundle())
        var aliceSends = true
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            // Alternate directions: every message carries a new ratchet key, so each decrypt
            // takes a DH step (and the next encrypt uses the chain that step started).
            defer { aliceSends.toggle() }
            if aliceSends {
                blackHole(try bob.decrypt(try alice.encrypt(payload)))
            } else {
                blackHole(try alice.decrypt(try bob.encrypt(payload)))
            }
        }
    }

    // Session setup: 4 signature checks, 8 X25519 agreements (4 per side), one ML-KEM-768
    // encapsulation and decapsulation, and the key generation of the initiator.
    Benchmark("crypto: primitives of a session setup (4 Ed25519 verify + 8 X25519 + ML-KEM encaps/decaps)") { benchmark in
        let signer = Curve25519.Signing.PrivateKey()
        let message = Data(repeating: 3, count: 100)
        let signature = try signer.signature(for: message)
        let peer = Curve25519.KeyAgreement.PrivateKey().publicKey
        let kem = try MLKEM768.PrivateKey()
        for _ in benchmark.scaledIterations {
            for _ in 0..<4 { blackHole(signer.publicKey.isValidSignature(signature, for: message)) }
            let ephemeral = Curve25519.KeyAgreement.PrivateKey()
            for _ in 0..<8 { blackHole(try ephemeral.sharedSecretFromKeyAgreement(with: peer)) }
            let encapsulated = try kem.publicKey.encapsulate()
            blackHole(try kem.decapsulate(encapsulated.encapsulated))
        }
    }

    Benchmark("crypto: session setup (verify bundle, PQXDH both sides, first message)") { benchmark in
        let alice = try BenchDevice()
        let bob = try BenchDevice()
        let bundle = try bob.bundle()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try setUpSession(alice, bob, bundle))
        }
    }
}
