import Crypto
import Foundation
import HeliographCore

/// The keys one device holds about itself: who it is and its long-term agreement key.
public struct LocalDevice: Sendable {
    /// The account.
    public var account: AccountID
    /// This device.
    public var device: DeviceID
    /// The account's Ed25519 identity key pair.
    public var identity: IdentityKeyPair
    /// This device's X25519 agreement key pair.
    public var agreement: AgreementKeyPair
    /// The agreement key's public half with its identity signature.
    public var signedAgreementKey: DeviceAgreementKey

    /// Creates the value, signing the agreement key.
    public init(account: AccountID, device: DeviceID, identity: IdentityKeyPair, agreement: AgreementKeyPair) throws {
        self.account = account
        self.device = device
        self.identity = identity
        self.agreement = agreement
        signedAgreementKey = try DeviceAgreementKey.sign(
            publicKey: agreement.publicKeyBytes, account: account, device: device, with: identity)
    }
}

/// The session-setup part of the first messages of a session: what the responder needs to
/// derive the same secret.
public struct PrekeyHeader: Sendable, Equatable {
    /// The initiator's agreement key and its identity signature.
    public var initiatorAgreementKey: DeviceAgreementKey
    /// The initiator's fresh ephemeral X25519 key ("base key").
    public var baseKey: Data
    /// Which signed prekey of the responder was used.
    public var signedPrekeyID: UInt32
    /// Which one-time prekey was used, if any.
    public var oneTimePrekeyID: UInt32?
    /// Which ML-KEM prekey was used, and whether it was the last-resort one.
    public var kemPrekeyID: UInt32
    /// Whether ``kemPrekeyID`` names the last-resort key (which is not deleted after use).
    public var kemPrekeyIsLastResort: Bool
    /// The ML-KEM-768 ciphertext.
    public var kemCiphertext: Data

    func write(to writer: inout ByteWriter) {
        writer.appendField(initiatorAgreementKey.publicKey)
        writer.appendField(initiatorAgreementKey.signature)
        writer.appendFixed(baseKey)
        writer.append(signedPrekeyID)
        writer.append(UInt8(oneTimePrekeyID == nil ? 0 : 1))
        writer.append(oneTimePrekeyID ?? 0)
        writer.append(kemPrekeyID)
        writer.append(UInt8(kemPrekeyIsLastResort ? 1 : 0))
        writer.appendFixed(kemCiphertext)
    }

    static func read(from reader: inout ByteReader) throws(SessionError) -> PrekeyHeader {
        let agreement = DeviceAgreementKey(
            publicKey: try reader.readField(maximum: 32), signature: try reader.readField(maximum: 64))
        let baseKey = try reader.readData(32)
        let signedPrekeyID = try reader.readUInt32()
        let hasOneTime = try reader.readByte()
        let oneTimeID = try reader.readUInt32()
        let kemID = try reader.readUInt32()
        let lastResort = try reader.readByte()
        guard hasOneTime <= 1, lastResort <= 1 else { throw SessionError(.malformed, "a setup header flag is not 0 or 1") }
        return PrekeyHeader(
            initiatorAgreementKey: agreement, baseKey: baseKey, signedPrekeyID: signedPrekeyID,
            oneTimePrekeyID: hasOneTime == 1 ? oneTimeID : nil, kemPrekeyID: kemID, kemPrekeyIsLastResort: lastResort == 1,
            kemCiphertext: try reader.readData(KEMKeyPair.ciphertextSize))
    }
}

/// Session setup: X3DH extended with an ML-KEM-768 encapsulation, in the manner of Signal's
/// PQXDH specification. The secret is safe if either X25519 or ML-KEM-768 holds.
///
/// With A the initiator and B the responder (IK = device agreement key, SPK = signed prekey,
/// OPK = one-time prekey, EK = A's ephemeral key, PQPK = B's ML-KEM prekey):
///
///     DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)   DH4 = DH(EK_A, OPK_B)
///     (CT, SS) = ML-KEM-768.Encaps(PQPK_B)
///     SK = HKDF-SHA-256(salt: 32 zero bytes, ikm: 0xFF×32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] ‖ SS, info)
///
/// DH1 and DH2 authenticate both devices (each needs its long-term private key), DH3/DH4 give
/// forward secrecy, SS protects against a future quantum adversary who recorded the exchange.
public enum PQXDH {
    static let info = Data("Heliograph_PQXDH_X25519_SHA-256_ML-KEM-768_v1".utf8)

    /// The initiator's result: the shared secret, the associated data both sides bind every
    /// message to, and the header to send with the first messages.
    public struct Initiation: Sendable {
        /// The 32-byte session secret.
        public var secret: Data
        /// The associated data: both identities, both agreement keys, both device ids.
        public var associatedData: Data
        /// What the responder needs.
        public var header: PrekeyHeader
        /// The responder's signed prekey: the first remote ratchet key.
        public var remoteSignedPrekey: Data
    }

    /// Sets up a session with a verified bundle.
    public static func initiate(from local: LocalDevice, to remote: VerifiedPrekeyBundle) throws(SessionError) -> Initiation {
        let bundle = remote.bundle
        let ephemeral = AgreementKeyPair()
        // The order of the DH outputs is fixed by the specification; both sides must agree.
        var material = Data(repeating: 0xFF, count: 32)
        material.append(try agree(local.agreement, bundle.signedPrekey.publicKey, "DH1"))
        material.append(try agree(ephemeral, bundle.agreementKey.publicKey, "DH2"))
        material.append(try agree(ephemeral, bundle.signedPrekey.publicKey, "DH3"))
        if let oneTime = bundle.oneTimePrekey {
            material.append(try agree(ephemeral, oneTime.publicKey, "DH4"))
        }
        let encapsulation = try KEMKeyPair.encapsulate(to: bundle.kemPrekey.publicKey)
        material.append(encapsulation.secret)

        let header = PrekeyHeader(
            initiatorAgreementKey: local.signedAgreementKey, baseKey: ephemeral.publicKeyBytes,
            signedPrekeyID: bundle.signedPrekey.id, oneTimePrekeyID: bundle.oneTimePrekey?.id,
            kemPrekeyID: bundle.kemPrekey.id, kemPrekeyIsLastResort: bundle.kemPrekey.kind == .lastResortKEMPrekey,
            kemCiphertext: encapsulation.ciphertext)
        return Initiation(
            secret: deriveSecret(material),
            associatedData: associatedData(
                initiator: (local.account, local.device, local.identity.publicKey, local.agreement.publicKeyBytes),
                responder: (bundle.account, bundle.device, remote.identity, bundle.agreementKey.publicKey)),
            header: header, remoteSignedPrekey: bundle.signedPrekey.publicKey)
    }

    /// The private prekeys a responder looked up for a header.
    public struct ResponderPrekeys: Sendable {
        /// The signed prekey named by the header.
        public var signedPrekey: AgreementKeyPair
        /// The one-time prekey named by the header, if it named one.
        public var oneTimePrekey: AgreementKeyPair?
        /// The ML-KEM prekey named by the header.
        public var kemPrekey: KEMKeyPair
        /// Creates the value.
        public init(signedPrekey: AgreementKeyPair, oneTimePrekey: AgreementKeyPair?, kemPrekey: KEMKeyPair) {
            self.signedPrekey = signedPrekey
            self.oneTimePrekey = oneTimePrekey
            self.kemPrekey = kemPrekey
        }
    }

    /// Derives the responder's side: (secret, associated data).
    ///
    /// `remoteIdentity` must be the identity the caller trusts for the sending account; the
    /// header's agreement key must carry its signature, or the setup is refused.
    public static func respond(
        to header: PrekeyHeader, at local: LocalDevice, from remoteAccount: AccountID, device remoteDevice: DeviceID,
        identity remoteIdentity: IdentityPublicKey, prekeys: ResponderPrekeys
    ) throws(SessionError) -> (secret: Data, associatedData: Data) {
        try header.initiatorAgreementKey.verify(account: remoteAccount, device: remoteDevice, identity: remoteIdentity)
        guard (header.oneTimePrekeyID == nil) == (prekeys.oneTimePrekey == nil) else {
            throw SessionError(.unknownPrekey, "the one-time prekey named by the setup message is not available")
        }
        var material = Data(repeating: 0xFF, count: 32)
        material.append(try agree(prekeys.signedPrekey, header.initiatorAgreementKey.publicKey, "DH1"))
        material.append(try agree(local.agreement, header.baseKey, "DH2"))
        material.append(try agree(prekeys.signedPrekey, header.baseKey, "DH3"))
        if let oneTime = prekeys.oneTimePrekey {
            material.append(try agree(oneTime, header.baseKey, "DH4"))
        }
        material.append(try prekeys.kemPrekey.decapsulate(header.kemCiphertext))
        return (
            deriveSecret(material),
            associatedData(
                initiator: (remoteAccount, remoteDevice, remoteIdentity, header.initiatorAgreementKey.publicKey),
                responder: (local.account, local.device, local.identity.publicKey, local.agreement.publicKeyBytes))
        )
    }

    /// One Diffie-Hellman of the setup. An all-zero output means a peer key of small order got
    /// this far: the setup is refused rather than mixing a secret everyone can compute.
    private static func agree(_ pair: AgreementKeyPair, _ publicKey: Data, _ name: String) throws(SessionError) -> Data {
        let secret = try pair.sharedSecret(with: publicKey)
        guard secret.contains(where: { $0 != 0 }) else {
            throw SessionError(.invalidKey, "\(name) of the session setup gave an all-zero shared secret")
        }
        return secret
    }

    private static func deriveSecret(_ material: Data) -> Data {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: material), salt: Data(repeating: 0, count: 32), info: info, outputByteCount: 32
        ).withUnsafeBytes { Data($0) }
    }

    /// Both parties' identities in a fixed order (initiator first): every message of the session
    /// is authenticated with it, so a message cannot be moved to a session between other devices.
    static func associatedData(
        initiator: (AccountID, DeviceID, IdentityPublicKey, Data), responder: (AccountID, DeviceID, IdentityPublicKey, Data)
    ) -> Data {
        var writer = ByteWriter(label: "heliograph-session-ad-v1")
        for party in [initiator, responder] {
            writer.append(party.0.rawValue)
            writer.append(party.1.rawValue)
            writer.appendFixed(party.2.rawBytes)
            writer.appendFixed(party.3)
        }
        return writer.bytes
    }
}
