import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import Synchronization

/// End-to-end encryption for one sender→receiver pair, held in memory by the load tool: the
/// receiver publishes real keys, the sender sets a PQXDH session up from the real bundle, and
/// every message is a real Double Ratchet ciphertext with a franking commitment, so the server
/// does exactly the work it does for people (per-device copies, franking tags).
final class LoadSession: Sendable {
    private let senderAccount: AccountID
    private let receiverDevice: DeviceID
    private let sending: Mutex<RatchetSession>
    private let receiving = Mutex<RatchetSession?>(nil)
    private let receiver: LocalDevice
    private let signedPrekey: AgreementKeyPair
    private let lastResort: KEMKeyPair
    private let senderIdentity: IdentityPublicKey
    private let senderDevice: DeviceID

    private init(
        senderAccount: AccountID, senderDevice: DeviceID, senderIdentity: IdentityPublicKey, receiver: LocalDevice,
        signedPrekey: AgreementKeyPair, lastResort: KEMKeyPair, session: RatchetSession
    ) {
        self.senderAccount = senderAccount
        self.senderDevice = senderDevice
        self.senderIdentity = senderIdentity
        self.receiverDevice = receiver.device
        self.receiver = receiver
        self.signedPrekey = signedPrekey
        self.lastResort = lastResort
        sending = Mutex(session)
    }

    /// Publishes the receiver's keys and sets the sender's session up through the server.
    static func establish(sender: LoadDevice, receiver: LoadDevice, server: URL) async throws -> LoadSession {
        let receiverIdentity = try IdentityKeyPair(privateKeyBytes: receiver.identity)
        let local = try LocalDevice(
            account: receiver.accountID, device: receiver.deviceID, identity: receiverIdentity, agreement: AgreementKeyPair())
        let signed = AgreementKeyPair()
        let lastResort = try KEMKeyPair()
        let receiverSocket = try await senderSocket(receiver, server: server)
        defer { Task { await receiverSocket.close() } }
        func wire(_ kind: PrekeyKind, _ id: UInt32, _ key: Data) throws -> WirePrekey {
            let prekey = try SignedPrekey.sign(
                kind: kind, id: id, publicKey: key, account: local.account, device: local.device, with: receiverIdentity)
            return WirePrekey(kind: Int(kind.rawValue), id: id, publicKey: key, signature: prekey.signature)
        }
        _ = try await receiverSocket.request(
            .publishKeys,
            PublishKeysRequest(
                agreementKey: local.signedAgreementKey.publicKey, agreementSignature: local.signedAgreementKey.signature,
                signedPrekey: try wire(.signedPrekey, 1, signed.publicKeyBytes),
                lastResortPrekey: try wire(.lastResortKEMPrekey, 2, lastResort.publicKeyBytes)),
            as: KeyStatus.self)

        let senderSocket = try await senderSocket(sender, server: server)
        defer { Task { await senderSocket.close() } }
        let keys = try await senderSocket.request(
            .fetchKeys, FetchKeysRequest(username: receiver.username), as: FetchKeysResponse.self)
        guard let wireBundle = keys.bundles.first, let kemKind = PrekeyKind(rawValue: UInt8(wireBundle.kemPrekey.kind)) else {
            throw HeliographError(.noDevices, "the receiver published no keys")
        }
        let bundle = UnverifiedPrekeyBundle(
            account: keys.accountId, device: wireBundle.deviceId,
            agreementKey: DeviceAgreementKey(publicKey: wireBundle.agreementKey, signature: wireBundle.agreementSignature),
            signedPrekey: SignedPrekey(
                kind: .signedPrekey, id: wireBundle.signedPrekey.id, publicKey: wireBundle.signedPrekey.publicKey,
                signature: wireBundle.signedPrekey.signature),
            oneTimePrekey: nil,
            kemPrekey: SignedPrekey(
                kind: kemKind, id: wireBundle.kemPrekey.id, publicKey: wireBundle.kemPrekey.publicKey,
                signature: wireBundle.kemPrekey.signature))
        guard
            case .verified(let verified) = PrekeyBundleVerifier.verify(
                bundle, identity: try IdentityPublicKey(rawBytes: keys.identityKey))
        else { throw HeliographError(.badSignature, "the receiver's bundle does not verify") }
        let senderIdentity = try IdentityKeyPair(privateKeyBytes: sender.identity)
        let senderLocal = try LocalDevice(
            account: sender.accountID, device: sender.deviceID, identity: senderIdentity, agreement: AgreementKeyPair())
        // The sender's agreement key is not published here: the receiver checks the setup
        // header's signature against the sender's identity, which is all PQXDH needs.
        let session = try RatchetSession(initiating: try PQXDH.initiate(from: senderLocal, to: verified))
        let pair = LoadSession(
            senderAccount: sender.accountID, senderDevice: sender.deviceID, senderIdentity: senderIdentity.publicKey,
            receiver: local, signedPrekey: signed, lastResort: lastResort, session: session)
        try pair.exchangeGreetings()
        return pair
    }

    /// One message each way, in memory: the conversation is then under way, so the measured
    /// messages are ordinary ratchet messages, not session-setup messages (which carry the
    /// 1,088-byte ML-KEM ciphertext until the first reply).
    private func exchangeGreetings() throws {
        let greeting = try sending.withLock { try $0.seal(SealedContent(frankingKey: Franking.newKey(), body: Data()).bytes) }
        _ = try open(
            WireEnvelope(
                seq: 0, messageId: .random(),
                sender: WireSender(accountId: senderAccount, username: "", deviceId: senderDevice), serverTime: 0,
                payload: greeting.bytes))
        let reply = try receiving.withLock { session -> RatchetMessage in
            guard var current = session else { throw SessionError(.unknownSession, "no session after the greeting") }
            defer { session = current }
            return try current.encrypt(Data())
        }
        _ = try sending.withLock { try $0.decrypt(reply) }
    }

    /// An encrypted send request for `body`.
    func seal(_ body: Data, messageID: MessageID, to recipient: String) throws -> SendRequest {
        let frankingKey = Franking.newKey()
        let commitment = Franking.commitment(
            frankingKey: frankingKey, messageID: messageID.rawValue, sender: senderAccount, body: body)
        let plaintext = SealedContent(frankingKey: frankingKey, body: body).bytes
        let sealed = try sending.withLock { session in try session.seal(plaintext) }
        return SendRequest(
            messageId: messageID, to: recipient, copies: [WireCopy(deviceId: receiverDevice, payload: sealed.bytes)],
            frankingCommitment: commitment)
    }

    /// The body of a received envelope, after decrypting it and checking its commitment.
    func open(_ envelope: WireEnvelope) throws -> Data {
        let sealed = try SealedMessage(bytes: envelope.payload)
        let plaintext = try receiving.withLock { current -> Data in
            var session: RatchetSession
            if let existing = current {
                session = existing
            } else if case .setup(let header, _) = sealed {
                let (secret, associated) = try PQXDH.respond(
                    to: header, at: receiver, from: senderAccount, device: senderDevice, identity: senderIdentity,
                    prekeys: .init(signedPrekey: signedPrekey, oneTimePrekey: nil, kemPrekey: lastResort))
                session = RatchetSession(
                    responding: secret, associatedData: associated, signedPrekey: signedPrekey, initiatorBaseKey: header.baseKey)
            } else {
                throw SessionError(.unknownSession, "no session yet")
            }
            let plaintext = try session.decrypt(sealed.ratchetMessage)
            current = session
            return plaintext
        }
        let content = try SealedContent(bytes: plaintext)
        if let commitment = envelope.frankingCommitment {
            try Franking.verifyCommitment(
                commitment, frankingKey: content.frankingKey, messageID: envelope.messageId.rawValue, sender: senderAccount,
                body: content.body)
        }
        return content.body
    }
}
