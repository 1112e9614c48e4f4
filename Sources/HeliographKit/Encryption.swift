import Foundation
import HeliographCore
import HeliographCrypto
import HeliographProtocol
import Logging

/// A decrypted end-to-end message.
public struct DecryptedMessage: Sendable, Equatable {
    /// The envelope as received.
    public var envelope: IncomingMessage
    /// The content.
    public var content: MessageContent
    /// The exact decrypted body (what a report reveals).
    public var body: Data
    /// The franking key from inside the ciphertext (what a report reveals).
    public var frankingKey: Data
    /// Whether another device of this account sent it (a copy of one's own message).
    public var fromOwnDevice: Bool
    /// The sender's name as this device recorded it with the sender's identity key (the
    /// envelope's name is the server's word; this one was checked when the session was set up).
    public var senderName: String
}

/// What became of one received envelope.
public enum OpenedMessage: Sendable, Equatable {
    /// Decrypted and checked.
    case message(DecryptedMessage)
    /// Dropped: the reason is safe to log and show (it contains no plaintext or key).
    case dropped(IncomingMessage, reason: String)
}

/// Something a person should know about a contact's keys.
public enum KeyNotice: Sendable, Equatable, CustomStringConvertible {
    /// A device not seen before.
    case newDevice(username: String, device: DeviceID)
    /// The account's identity key differs from the one seen before: compare safety numbers again.
    case identityChanged(username: String)
    /// A device the server offered is not in the account's signed device list; it was not used.
    case unlistedDevice(username: String, device: DeviceID)

    public var description: String {
        switch self {
        case .newDevice(let name, let device): "\(name) has a new device \(device)"
        case .identityChanged(let name):
            "the identity key of \(name) changed: compare safety numbers again ('helio verify @\(name)')"
        case .unlistedDevice(let name, let device):
            "the server offered device \(device) of \(name), which is not in \(name)'s signed device list; it was not used"
        }
    }
}

/// The result of an end-to-end encrypted send.
public struct EncryptedSend: Sendable {
    /// The server's acknowledgement.
    public var response: SendResponse
    /// Key changes noticed while sending.
    public var notices: [KeyNotice]
}

extension HeliographClient {
    /// One-time prekeys of each kind uploaded at a time.
    static let prekeyBatch = 50
    /// One-time prekeys per upload request (about 40 KB of JSON at most).
    static let prekeysPerRequest = 20
    /// Signed prekeys are replaced after a week and their private halves kept for a month, so
    /// that setup messages in flight during a rotation still open.
    static let signedPrekeyLifetime: Int64 = 7 * 24 * 3600 * 1000
    static let signedPrekeyRetention: Int64 = 30 * 24 * 3600 * 1000

    private var identity: IdentityKeyPair {
        get throws { try IdentityKeyPair(privateKeyBytes: profile.identityPrivateKey) }
    }

    private func localDevice(_ state: DeviceKeyState) throws -> LocalDevice {
        let profile = self.profile
        return try LocalDevice(
            account: profile.accountID, device: profile.deviceID, identity: try identity,
            agreement: try AgreementKeyPair(privateKeyBytes: state.agreementKey))
    }

    // MARK: Keys

    /// Makes sure the server holds this device's keys: publishes them the first time (with a
    /// new signed device list), rotates the signed prekey when it is old, and uploads one-time
    /// prekeys when the server says they run low. Safe to call at every start.
    @discardableResult
    public func prepareEncryption() async throws -> KeyStatus {
        let profile = self.profile
        let identity = try self.identity
        let now = Date().millisecondsSince1970
        let firstTime = !(try keyStore.update(create: true) { $0.published })
        // The signed device list goes first: a contact that fetches this device's bundle a
        // moment later must already find it listed.
        if firstTime { try await publishDeviceList() }
        var status = try await call(.keyStatus, EmptyBody(), as: KeyStatus.self)

        // Long-lived keys: on first publication, or when the signed prekey is due for rotation.
        let upload = try keyStore.update(create: true) { state -> PublishKeysRequest in
            var request = PublishKeysRequest()
            let current = state.signedPrekeys[state.currentSignedPrekey]
            if !status.published || current == nil || now - (current?.createdAt ?? 0) > Self.signedPrekeyLifetime {
                if current == nil || (status.published && now - (current?.createdAt ?? 0) > Self.signedPrekeyLifetime) {
                    let id = state.takePrekeyID()
                    state.signedPrekeys[id] = .init(secret: AgreementKeyPair().privateKeyBytes, createdAt: now)
                    state.currentSignedPrekey = id
                }
                if state.lastResortSeed.isEmpty {
                    state.lastResortID = state.takePrekeyID()
                    state.lastResortSeed = try KEMKeyPair().seed
                }
                state.signedPrekeys = state.signedPrekeys.filter {
                    $0.key == state.currentSignedPrekey || now - $0.value.createdAt < Self.signedPrekeyRetention
                }
                let agreement = try AgreementKeyPair(privateKeyBytes: state.agreementKey)
                let signedKey = try DeviceAgreementKey.sign(
                    publicKey: agreement.publicKeyBytes, account: profile.accountID, device: profile.deviceID, with: identity)
                request.agreementKey = signedKey.publicKey
                request.agreementSignature = signedKey.signature
                let signed = try AgreementKeyPair(privateKeyBytes: state.signedPrekeys[state.currentSignedPrekey]!.secret)
                request.signedPrekey = try wirePrekey(.signedPrekey, state.currentSignedPrekey, signed.publicKeyBytes, identity)
                request.lastResortPrekey = try wirePrekey(
                    .lastResortKEMPrekey, state.lastResortID, try KEMKeyPair(seed: state.lastResortSeed).publicKeyBytes, identity)
            }
            // One-time prekeys: top up to a batch when the server runs low; on first
            // publication re-send any made earlier whose upload may have failed.
            var oneTime: [WirePrekey] = []
            if !status.published {
                for (id, key) in state.oneTimePrekeys {
                    oneTime.append(
                        try wirePrekey(
                            .oneTimePrekey, id, try AgreementKeyPair(privateKeyBytes: key.secret).publicKeyBytes, identity))
                }
                for (id, key) in state.kemPrekeys {
                    oneTime.append(try wirePrekey(.kemPrekey, id, try KEMKeyPair(seed: key.secret).publicKeyBytes, identity))
                }
            }
            let needX25519 = max(0, Self.prekeyBatch - status.oneTimePrekeys - oneTime.filter { $0.kind == 2 }.count)
            let needKEM = max(0, Self.prekeyBatch - status.kemPrekeys - oneTime.filter { $0.kind == 3 }.count)
            if status.oneTimePrekeys < status.refillBelow || !status.published {
                for _ in 0..<needX25519 {
                    let id = state.takePrekeyID()
                    let key = AgreementKeyPair()
                    state.oneTimePrekeys[id] = .init(secret: key.privateKeyBytes, createdAt: now)
                    oneTime.append(try wirePrekey(.oneTimePrekey, id, key.publicKeyBytes, identity))
                }
            }
            if status.kemPrekeys < status.refillBelow || !status.published {
                for _ in 0..<needKEM {
                    let id = state.takePrekeyID()
                    let key = try KEMKeyPair()
                    state.kemPrekeys[id] = .init(secret: key.seed, createdAt: now)
                    oneTime.append(try wirePrekey(.kemPrekey, id, key.publicKeyBytes, identity))
                }
            }
            request.oneTimePrekeys = oneTime.isEmpty ? nil : oneTime
            return request
        }
        if upload.agreementKey != nil || upload.oneTimePrekeys != nil {
            // In chunks, so that each request stays far below the server's frame limit
            // (an ML-KEM key alone is 1,184 bytes).
            let oneTime = upload.oneTimePrekeys ?? []
            var first = upload
            first.oneTimePrekeys = oneTime.isEmpty ? nil : Array(oneTime.prefix(Self.prekeysPerRequest))
            status = try await call(.publishKeys, first, as: KeyStatus.self)
            for start in stride(from: Self.prekeysPerRequest, to: oneTime.count, by: Self.prekeysPerRequest) {
                let chunk = Array(oneTime[start..<min(start + Self.prekeysPerRequest, oneTime.count)])
                status = try await call(.publishKeys, PublishKeysRequest(oneTimePrekeys: chunk), as: KeyStatus.self)
            }
            try keyStore.update { $0.published = true }
        }
        // Once more now that the keys are up: a device that logged in meanwhile built its list
        // from the devices with keys, which did not include this one yet.
        if firstTime { try await publishDeviceList() }
        return status
    }

    private func wirePrekey(
        _ kind: PrekeyKind, _ id: UInt32, _ publicKey: Data, _ identity: IdentityKeyPair
    ) throws
        -> WirePrekey
    {
        let profile = self.profile
        let signed = try SignedPrekey.sign(
            kind: kind, id: id, publicKey: publicKey, account: profile.accountID, device: profile.deviceID, with: identity)
        return WirePrekey(kind: Int(kind.rawValue), id: id, publicKey: publicKey, signature: signed.signature)
    }

    /// Signs and publishes the account's device list: this device and every other active device
    /// of the account that published keys. Called after login and after revoking a device.
    public func publishDeviceList() async throws {
        let profile = self.profile
        let identity = try self.identity
        let own = try keyStore.read()
        for attempt in 1...3 {
            let status = try await call(.keyStatus, EmptyBody(), as: KeyStatus.self)
            let others = try await call(.fetchKeys, FetchKeysRequest(username: profile.username), as: FetchKeysResponse.self)
            var entries = [
                SignedDeviceList.Entry(
                    device: profile.deviceID, agreementKey: try AgreementKeyPair(privateKeyBytes: own.agreementKey).publicKeyBytes
                )
            ]
            for bundle in others.bundles {
                // Only keys this account's identity signed go into the list.
                let key = DeviceAgreementKey(publicKey: bundle.agreementKey, signature: bundle.agreementSignature)
                guard (try? key.verify(account: profile.accountID, device: bundle.deviceId, identity: identity.publicKey)) != nil
                else { continue }
                entries.append(.init(device: bundle.deviceId, agreementKey: bundle.agreementKey))
            }
            let list = try SignedDeviceList.sign(
                account: profile.accountID, version: status.deviceListVersion + 1, devices: entries, with: identity)
            let wire = WireDeviceList(
                version: list.version, devices: list.devices.map { .init(deviceId: $0.device, agreementKey: $0.agreementKey) },
                signature: list.signature)
            do {
                _ = try await call(.publishKeys, PublishKeysRequest(deviceList: wire), as: KeyStatus.self)
                return
            } catch let error as HeliographError where error.code == .badRequest && attempt < 3 {
                // Another device published the same version at the same moment: take the next one.
                logger.debug("device list version taken, retrying", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: Sending

    /// Sends text end-to-end encrypted to every device of `username` that published keys, and a
    /// copy to this account's other devices. Sessions are set up on first use (PQXDH); the
    /// message carries a franking commitment so the recipient can report it.
    @discardableResult
    public func sendEncrypted(text: String, to username: String, messageID: MessageID = .random()) async throws -> EncryptedSend {
        let profile = self.profile
        // A read, not an update: this runs on every send, and an update rewrites the file.
        if try !keyStore.exists || !keyStore.read().published { try await prepareEncryption() }
        var notices: [KeyNotice] = []
        var attempt = 0
        while true {
            attempt += 1
            let recipient = try await call(.lookupAccount, LookupAccountRequest(username: username), as: AccountInfo.self)
            let ownDevices: [DeviceID]
            if recipient.accountId == profile.accountID {
                ownDevices = []
            } else {
                ownDevices = try await call(
                    .lookupAccount, LookupAccountRequest(username: profile.username), as: AccountInfo.self
                )
                .devices.filter { $0 != profile.deviceID }
            }
            let recipientDevices = recipient.devices.filter { $0 != profile.deviceID }
            notices += try await ensureSessions(with: recipient.username, devices: recipientDevices)
            if !ownDevices.isEmpty { notices += try await ensureSessions(with: profile.username, devices: ownDevices) }

            let body = try WireCodec.encode(
                MessageContent(
                    text: text, sentAt: Date().millisecondsSince1970,
                    to: recipient.accountId == profile.accountID ? nil : recipient.username))
            let frankingKey = Franking.newKey()
            let commitment = Franking.commitment(
                frankingKey: frankingKey, messageID: messageID.rawValue, sender: profile.accountID, body: body)
            let plaintext = SealedContent(frankingKey: frankingKey, body: body).bytes
            // Encrypt and save the advanced sessions before anything leaves the device: a message
            // key must never be used twice, even if the process dies right after sending.
            let copies = try keyStore.update { state -> [WireCopy] in
                var copies: [WireCopy] = []
                for device in recipientDevices + ownDevices {
                    guard var session = state.sessions[device.description] else { continue }
                    copies.append(WireCopy(deviceId: device, payload: try session.seal(plaintext).bytes))
                    state.sessions[device.description] = session
                }
                return copies
            }
            guard !copies.isEmpty else {
                throw HeliographError(.noDevices, "\(recipient.username) has no device that can receive encrypted messages yet")
            }
            do {
                let response = try await sendCopies(
                    SendRequest(messageId: messageID, to: recipient.username, copies: copies, frankingCommitment: commitment))
                return EncryptedSend(response: response, notices: notices)
            } catch let error as HeliographError where error.code == .deviceListMismatch && attempt < 3 {
                // A device was added or removed meanwhile: look again and encrypt again.
                logger.debug("device list changed while sending; retrying", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Sends with retries on a dropped connection (the message id makes them idempotent).
    private func sendCopies(_ request: SendRequest) async throws -> SendResponse {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await call(.send, request, as: SendResponse.self)
            } catch let error where attempt < 4 && (error is ConnectionClosed || error is ConnectionFailed) {
                try await Task.sleep(for: .milliseconds(200 * attempt))
            }
        }
    }

    /// Sets up sessions with the listed devices of an account that have none yet.
    private func ensureSessions(with username: String, devices: [DeviceID]) async throws -> [KeyNotice] {
        let known = try keyStore.read()
        let missing = devices.filter { known.sessions[$0.description] == nil }
        guard !missing.isEmpty else { return [] }
        let response = try await call(
            .fetchKeys, FetchKeysRequest(username: username, devices: missing), as: FetchKeysResponse.self)
        let identity = try IdentityPublicKey(rawBytes: response.identityKey)
        var notices: [KeyNotice] = []
        let local = try localDevice(known)
        // Verify outside the lock (signatures are slow-ish), then record.
        let list: SignedDeviceList? = try response.deviceList.map { wire in
            let list = SignedDeviceList(
                account: response.accountId, version: wire.version,
                devices: wire.devices.map { .init(device: $0.deviceId, agreementKey: $0.agreementKey) }, signature: wire.signature
            )
            try list.verify(identity: identity)
            return list
        }
        if let list, let seen = known.contacts[response.accountId.description],
            seen.identityKey == identity.rawBytes, list.version < seen.deviceListVersion
        {
            // A correctly signed but older list: the server is hiding a later change.
            throw HeliographError(
                .badSignature,
                "the server offered version \(list.version) of \(response.username)'s device list after version \(seen.deviceListVersion)"
            )
        }
        var sessions: [(DeviceID, Data, RatchetSession)] = []
        for wire in response.bundles {
            if let list, !list.devices.contains(where: { $0.device == wire.deviceId && $0.agreementKey == wire.agreementKey }) {
                notices.append(.unlistedDevice(username: response.username, device: wire.deviceId))
                continue
            }
            let bundle = UnverifiedPrekeyBundle(
                account: response.accountId, device: wire.deviceId,
                agreementKey: DeviceAgreementKey(publicKey: wire.agreementKey, signature: wire.agreementSignature),
                signedPrekey: try signedPrekey(wire.signedPrekey),
                oneTimePrekey: try wire.oneTimePrekey.map(signedPrekey), kemPrekey: try signedPrekey(wire.kemPrekey))
            switch PrekeyBundleVerifier.verify(bundle, identity: identity) {
            case .verified(let verified):
                let setup = try PQXDH.initiate(from: local, to: verified)
                sessions.append((wire.deviceId, wire.agreementKey, try RatchetSession(initiating: setup)))
            case .rejected(let error):
                logger.warning("refused a prekey bundle", metadata: ["device": "\(wire.deviceId)", "reason": "\(error)"])
            }
        }
        try keyStore.update { state in
            notices += Self.record(
                identity: identity, account: response.accountId, username: response.username, list: list, in: &state,
                isOwnAccount: response.accountId == profile.accountID)
            // A contact seen before with other devices: each device not seen yet is news.
            let seen = state.contacts[response.accountId.description]?.devices ?? [:]
            for (device, agreementKey, session) in sessions {
                if !seen.isEmpty, seen[device.description] == nil {
                    notices.append(.newDevice(username: response.username, device: device))
                }
                state.contacts[response.accountId.description]?.devices[device.description] = agreementKey
                // A session set up meanwhile (say, by `listen` answering this device) wins.
                if state.sessions[device.description] == nil { state.sessions[device.description] = session }
            }
        }
        return notices
    }

    private func signedPrekey(_ wire: WirePrekey) throws -> SignedPrekey {
        guard let kind = PrekeyKind(rawValue: UInt8(clamping: wire.kind)) else {
            throw SessionError(.invalidKey, "unknown prekey kind \(wire.kind)")
        }
        return SignedPrekey(kind: kind, id: wire.id, publicKey: wire.publicKey, signature: wire.signature)
    }

    /// Records an account's identity (trust on first use) and device list; notices a change.
    private static func record(
        identity: IdentityPublicKey, account: AccountID, username: String, list: SignedDeviceList?,
        in state: inout DeviceKeyState, isOwnAccount: Bool
    ) -> [KeyNotice] {
        var notices: [KeyNotice] = []
        let key = account.description
        if var contact = state.contacts[key] {
            if contact.identityKey != identity.rawBytes {
                // A new identity: old sessions were with the old key and are dropped; the person
                // is told, and a verified contact becomes unverified until compared again.
                notices.append(.identityChanged(username: username))
                for device in contact.devices.keys { state.sessions[device] = nil }
                contact = .init(
                    username: username, identityKey: identity.rawBytes, verified: false, devices: [:], deviceListVersion: 0)
            }
            if let list, list.version >= contact.deviceListVersion { contact.deviceListVersion = list.version }
            contact.username = username
            state.contacts[key] = contact
        } else {
            state.contacts[key] = .init(
                username: username, identityKey: identity.rawBytes, verified: isOwnAccount, devices: [:],
                deviceListVersion: list?.version ?? 0)
        }
        return notices
    }

    // MARK: Receiving

    /// Decrypts and checks one received envelope, saving the session state.
    ///
    /// Never throws for bad input: tampered, replayed, unknown-session or unreadable messages
    /// come back as `.dropped` with a reason (and are logged), and the session survives.
    /// Throws only when the key file cannot be read or written.
    public func open(_ message: IncomingMessage) async throws -> OpenedMessage {
        let profile = self.profile
        // A message decrypted before a crash: only if it is exactly the same envelope again.
        let known = try keyStore.read()
        if let cached = known.decrypted[message.sequence], cached.matches(message),
            let content = try? WireCodec.decode(MessageContent.self, from: cached.body)
        {
            return .message(
                DecryptedMessage(
                    envelope: message, content: content, body: cached.body, frankingKey: cached.frankingKey,
                    fromOwnDevice: message.senderAccount == profile.accountID,
                    senderName: known.contacts[message.senderAccount.description]?.username ?? message.sender))
        }
        func drop(_ reason: String) -> OpenedMessage {
            logger.notice(
                "dropped a message",
                metadata: ["seq": "\(message.sequence)", "sender": "\(message.sender)", "reason": "\(reason)"])
            return .dropped(message, reason: reason)
        }
        guard let senderDevice = DeviceID(message.senderDevice) else { return drop("the sender device id is malformed") }
        let sealed: SealedMessage
        do {
            sealed = try SealedMessage(bytes: message.payload)
        } catch {
            return drop("not an end-to-end encrypted message (\(error.message))")
        }
        guard let commitment = message.frankingCommitment, message.frankingTag != nil else {
            // Without a commitment the message could not be reported: refuse to show it.
            return drop("the message carries no franking commitment")
        }
        // The sender's identity, for a session-setup message: as recorded, or looked up now.
        var senderIdentity: IdentityPublicKey?
        var notices: [KeyNotice] = []
        if case .setup = sealed {
            if let contact = known.contacts[message.senderAccount.description],
                let key = try? IdentityPublicKey(rawBytes: contact.identityKey)
            {
                senderIdentity = key
            }
            if message.senderAccount == profile.accountID {
                // A copy from another device of this account: its identity is this device's own.
                senderIdentity = try self.identity.publicKey
            } else if senderIdentity == nil {
                let account = try? await call(
                    .lookupAccount, LookupAccountRequest(username: message.sender), as: AccountInfo.self)
                guard let account, account.accountId == message.senderAccount,
                    let key = try? IdentityPublicKey(rawBytes: account.identityKey)
                else { return drop("the sender's identity key cannot be looked up") }
                senderIdentity = key
            }
        }
        let outcome: Result<DecryptedMessage, SessionError> = try keyStore.update { stored in
            // Work on a copy: a message that fails any check leaves no trace in the key file.
            var state = stored
            do {
                let decrypted = try openSealed(
                    sealed, of: message, from: senderDevice, commitment: commitment, senderIdentity: senderIdentity,
                    state: &state, notices: &notices)
                stored = state
                return .success(decrypted)
            } catch let error as SessionError {
                return .failure(error)
            }
        }
        for notice in notices { logger.notice("key notice", metadata: ["notice": "\(notice)"]) }
        switch outcome {
        case .success(let decrypted):
            if case .setup = sealed { await refillPrekeysQuietly() }
            return .message(decrypted)
        case .failure(let error):
            return drop(error.description)
        }
    }

    /// The state-changing part of ``open(_:)``, on a copy of the key state.
    ///
    /// Sessions per remote device: the current one and up to ``archivedSessionLimit`` earlier
    /// ones. When both devices set a session up at the same moment, each first answers the
    /// other's setup; keeping the replaced session and trying it when the current one fails
    /// lets the two converge on one session instead of losing each other for good.
    private func openSealed(
        _ sealed: SealedMessage, of message: IncomingMessage, from senderDevice: DeviceID, commitment: Data,
        senderIdentity: IdentityPublicKey?, state: inout DeviceKeyState, notices: inout [KeyNotice]
    ) throws(SessionError) -> DecryptedMessage {
        let profile = self.profile
        let key = senderDevice.description
        let local: LocalDevice
        do { local = try localDevice(state) } catch { throw SessionError(.invalidKey, "the device's own keys are unreadable") }
        let current = state.sessions[key]
        let archived = state.archivedSessions?[key] ?? []
        // Candidates in order; `nil` index marks a session made from this message's setup.
        var candidates: [(index: Int?, session: RatchetSession)] = []
        var usedPrekeys: (oneTime: UInt32?, kem: UInt32?) = (nil, nil)
        var senderAgreementKey: Data?
        if case .setup(let header, _) = sealed {
            let all = [current].compactMap { $0 }.map { (Optional(-1), $0) } + archived.enumerated().map { (Optional($0), $1) }
            if let existing = all.first(where: { $0.1.initiatorBaseKey == header.baseKey }) {
                candidates = [(existing.0, existing.1)]
            } else if (state.usedBaseKeys ?? []).contains(header.baseKey) {
                throw SessionError(.replayed, "this session setup was already used")
            } else {
                guard let identity = senderIdentity else { throw SessionError(.unknownSession, "no sender identity") }
                notices += Self.record(
                    identity: identity, account: message.senderAccount, username: message.sender, list: nil, in: &state,
                    isOwnAccount: message.senderAccount == profile.accountID)
                guard let signed = state.signedPrekeys[header.signedPrekeyID] else {
                    throw SessionError(.unknownPrekey, "signed prekey \(header.signedPrekeyID) is not held (expired?)")
                }
                var oneTime: AgreementKeyPair?
                if let id = header.oneTimePrekeyID {
                    guard let stored = state.oneTimePrekeys[id] else {
                        throw SessionError(.unknownPrekey, "one-time prekey \(id) was already used")
                    }
                    oneTime = try AgreementKeyPair(privateKeyBytes: stored.secret)
                }
                let kemSeed: Data
                if header.kemPrekeyIsLastResort {
                    guard header.kemPrekeyID == state.lastResortID else {
                        throw SessionError(.unknownPrekey, "last-resort prekey \(header.kemPrekeyID) is not held")
                    }
                    kemSeed = state.lastResortSeed
                } else {
                    guard let stored = state.kemPrekeys[header.kemPrekeyID] else {
                        throw SessionError(.unknownPrekey, "ML-KEM prekey \(header.kemPrekeyID) was already used")
                    }
                    kemSeed = stored.secret
                }
                let signedKey = try AgreementKeyPair(privateKeyBytes: signed.secret)
                let (secret, associated) = try PQXDH.respond(
                    to: header, at: local, from: message.senderAccount, device: senderDevice, identity: identity,
                    prekeys: .init(signedPrekey: signedKey, oneTimePrekey: oneTime, kemPrekey: try KEMKeyPair(seed: kemSeed)))
                candidates = [
                    (
                        nil,
                        RatchetSession(
                            responding: secret, associatedData: associated, signedPrekey: signedKey,
                            initiatorBaseKey: header.baseKey)
                    )
                ]
                usedPrekeys = (header.oneTimePrekeyID, header.kemPrekeyIsLastResort ? nil : header.kemPrekeyID)
                senderAgreementKey = header.initiatorAgreementKey.publicKey
            }
        } else {
            candidates = [current].compactMap { $0 }.map { (-1, $0) } + archived.enumerated().map { ($0, $1) }
        }
        guard !candidates.isEmpty else {
            throw SessionError(.unknownSession, "no session with device \(senderDevice) and no setup in the message")
        }
        var firstError: SessionError?
        for (index, candidate) in candidates {
            var session = candidate
            do throws(SessionError) {
                let plaintext = try session.decrypt(sealed.ratchetMessage)
                let content = try SealedContent(bytes: plaintext)
                try Franking.verifyCommitment(
                    commitment, frankingKey: content.frankingKey, messageID: message.messageID, sender: message.senderAccount,
                    body: content.body)
                guard let decoded = try? WireCodec.decode(MessageContent.self, from: content.body) else {
                    throw SessionError(.malformed, "the decrypted content is not a message")
                }
                // Everything checked: the session that opened the message becomes the current one.
                var archive = archived
                if let index, index >= 0 { archive.remove(at: index) }
                if index != -1, let current { archive.insert(current, at: 0) }
                state.archivedSessions = (state.archivedSessions ?? [:]).merging(
                    [key: Array(archive.prefix(Self.archivedSessionLimit))]) { $1 }
                state.sessions[key] = session
                if index == nil, case .setup(let header, _) = sealed {
                    state.usedBaseKeys = Array(((state.usedBaseKeys ?? []) + [header.baseKey]).suffix(Self.usedBaseKeyLimit))
                }
                if let id = usedPrekeys.oneTime { state.oneTimePrekeys[id] = nil }
                if let id = usedPrekeys.kem { state.kemPrekeys[id] = nil }
                if let agreement = senderAgreementKey {
                    state.contacts[message.senderAccount.description]?.devices[key] = agreement
                }
                state.decrypted[message.sequence] = .init(message, body: content.body, frankingKey: content.frankingKey)
                return DecryptedMessage(
                    envelope: message, content: decoded, body: content.body, frankingKey: content.frankingKey,
                    fromOwnDevice: message.senderAccount == profile.accountID,
                    senderName: state.contacts[message.senderAccount.description]?.username ?? message.sender)
            } catch {
                firstError = firstError ?? error
            }
        }
        throw firstError ?? SessionError(.unknownSession, "no session opened the message")
    }

    /// Earlier sessions kept per remote device.
    static let archivedSessionLimit = 3
    /// Session-setup base keys remembered, so a replayed setup cannot start a session again.
    static let usedBaseKeyLimit = 2_000

    /// After a session setup consumed prekeys: top up if the server runs low. Failure here must
    /// not lose the message, so it is only logged.
    private func refillPrekeysQuietly() async {
        do {
            let status = try await call(.keyStatus, EmptyBody(), as: KeyStatus.self)
            if status.needsRefill { try await prepareEncryption() }
        } catch {
            logger.warning("could not refill prekeys", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Reports and verification

    /// Asks the server to verify a report of a received message: the body and franking key are
    /// revealed for this one message only.
    public func verifyReport(of message: DecryptedMessage) async throws -> FrankedReportResponse {
        guard let tag = message.envelope.frankingTag, let senderDevice = DeviceID(message.envelope.senderDevice) else {
            throw HeliographError(.badRequest, "the message has no franking tag")
        }
        return try await call(
            .verifyReport,
            FrankedReportRequest(
                messageId: try MessageID(validating: message.envelope.messageID), senderAccountId: message.envelope.senderAccount,
                senderDeviceId: senderDevice, recipientDeviceId: profile.deviceID,
                serverTime: message.envelope.serverTime.millisecondsSince1970, body: message.body,
                frankingKey: message.frankingKey, frankingTag: tag),
            as: FrankedReportResponse.self)
    }

    /// The safety number with another account, and whether its identity was marked verified.
    /// An account not seen before is recorded (trust on first use).
    public func safetyNumber(with username: String) async throws -> (number: SafetyNumber, verified: Bool, notices: [KeyNotice]) {
        let profile = self.profile
        let account = try await call(.lookupAccount, LookupAccountRequest(username: username), as: AccountInfo.self)
        let identity = try IdentityPublicKey(rawBytes: account.identityKey)
        let (verified, notices) = try keyStore.update(create: true) { state -> (Bool, [KeyNotice]) in
            let notices = Self.record(
                identity: identity, account: account.accountId, username: account.username, list: nil, in: &state,
                isOwnAccount: account.accountId == profile.accountID)
            return (state.contacts[account.accountId.description]?.verified ?? false, notices)
        }
        let number = SafetyNumber(
            (profile.accountID, try self.identity.publicKey), (account.accountId, identity))
        return (number, verified, notices)
    }

    /// Marks a contact verified after the person compared safety numbers.
    public func markVerified(_ username: String) async throws {
        let account = try await call(.lookupAccount, LookupAccountRequest(username: username), as: AccountInfo.self)
        try keyStore.update { state in
            guard state.contacts[account.accountId.description]?.identityKey == account.identityKey else {
                throw HeliographError(.badRequest, "run 'helio verify @\(account.username)' first and compare the numbers")
            }
            state.contacts[account.accountId.description]?.verified = true
        }
    }
}
