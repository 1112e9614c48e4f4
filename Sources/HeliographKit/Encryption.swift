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
    /// Key changes noticed while opening it (a new or removed device, an identity change).
    public var notices: [KeyNotice] = []
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
    /// A device left the account's signed device list (revoked or removed); it gets nothing more.
    case deviceRemoved(username: String, device: DeviceID)
    /// A device the account's signed list names, but the server says is not active: the
    /// message did not go to it (the server may be hiding it).
    case unreachableDevice(username: String, device: DeviceID)

    public var description: String {
        switch self {
        case .newDevice(let name, let device): "\(name) has a new device \(device)"
        case .identityChanged(let name):
            "the identity key of \(name) changed: compare safety numbers again ('helio verify @\(name)')"
        case .deviceRemoved(let name, let device): "\(name) removed device \(device)"
        case .unreachableDevice(let name, let device):
            "device \(device) of \(name) is in \(name)'s signed device list but the server says it is not active; it did not get this message"
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
    /// Signed prekeys and the last-resort ML-KEM key are replaced after a week; the private
    /// halves of replaced ones are kept for a month, so that setup messages in flight during a
    /// rotation still open, and then deleted, after which a setup naming them is refused.
    static let signedPrekeyLifetime: Int64 = 7 * 24 * 3600 * 1000
    static let signedPrekeyRetention: Int64 = 30 * 24 * 3600 * 1000

    /// This device's copy of the account identity key.
    var identityKeyPair: IdentityKeyPair {
        get throws { try IdentityKeyPair(privateKeyBytes: profile.identityPrivateKey) }
    }

    private func localDevice(_ state: DeviceKeyState) throws -> LocalDevice {
        let profile = self.profile
        return try LocalDevice(
            account: profile.accountID, device: profile.deviceID, identity: try identityKeyPair,
            agreement: try AgreementKeyPair(privateKeyBytes: state.agreementKey))
    }

    // MARK: Keys

    /// Makes sure the server holds this device's keys: publishes them the first time (with this
    /// device in the account's signed device list), rotates the signed prekey and the
    /// last-resort key when they are old, and uploads one-time prekeys when the server says
    /// they run low. Safe to call at every start.
    ///
    /// `forceRepublish` signs and uploads everything again, with fresh one-time prekeys: after
    /// the identity key changed.
    @discardableResult
    public func prepareEncryption(forceRepublish: Bool = false) async throws -> KeyStatus {
        let profile = self.profile
        let identity = try self.identityKeyPair
        let now = Date().millisecondsSince1970
        // The signed device list first: a contact that fetches this device's bundle a moment
        // later must already find it listed.
        try await ensureListed()
        var status = try await call(.keyStatus, EmptyBody(), as: KeyStatus.self)

        let upload = try keyStore.update(create: true) { state -> PublishKeysRequest in
            var request = PublishKeysRequest()
            let current = state.signedPrekeys[state.currentSignedPrekey]
            let due = current == nil || now - (current?.createdAt ?? 0) > Self.signedPrekeyLifetime
            if !status.published || due || forceRepublish {
                if due || forceRepublish { Self.rotatePrekeys(in: &state, now: now) }
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
            var oneTime: [WirePrekey] = []
            if forceRepublish {
                // Keys signed by an earlier identity are useless to contacts: start over.
                state.oneTimePrekeys = [:]
                state.kemPrekeys = [:]
                request.replaceOneTimePrekeys = true
            } else if !status.published {
                // On first publication re-send any made earlier whose upload may have failed.
                for (id, key) in state.oneTimePrekeys {
                    oneTime.append(
                        try wirePrekey(
                            .oneTimePrekey, id, try AgreementKeyPair(privateKeyBytes: key.secret).publicKeyBytes, identity))
                }
                for (id, key) in state.kemPrekeys {
                    oneTime.append(try wirePrekey(.kemPrekey, id, try KEMKeyPair(seed: key.secret).publicKeyBytes, identity))
                }
            }
            let held = forceRepublish ? (0, 0) : (status.oneTimePrekeys, status.kemPrekeys)
            let refillAll = !status.published || forceRepublish
            if held.0 < status.refillBelow || refillAll {
                for _ in 0..<max(0, Self.prekeyBatch - held.0 - oneTime.filter { $0.kind == 2 }.count) {
                    let id = state.takePrekeyID()
                    let key = AgreementKeyPair()
                    state.oneTimePrekeys[id] = .init(secret: key.privateKeyBytes, createdAt: now)
                    oneTime.append(try wirePrekey(.oneTimePrekey, id, key.publicKeyBytes, identity))
                }
            }
            if held.1 < status.refillBelow || refillAll {
                for _ in 0..<max(0, Self.prekeyBatch - held.1 - oneTime.filter { $0.kind == 3 }.count) {
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
        return status
    }

    /// A new signed prekey and a new last-resort key; replaced ones are kept for the retention
    /// window, and everything older is deleted together with the record of setups it answered
    /// (a setup naming a deleted key is refused, so that record is no longer needed).
    static func rotatePrekeys(in state: inout DeviceKeyState, now: Int64) {
        let id = state.takePrekeyID()
        state.signedPrekeys[id] = .init(secret: AgreementKeyPair().privateKeyBytes, createdAt: now)
        state.currentSignedPrekey = id
        if !state.lastResortSeed.isEmpty {
            state.retiredLastResort = (state.retiredLastResort ?? [:]).merging(
                [state.lastResortID: .init(secret: state.lastResortSeed, createdAt: now)]) { $1 }
        }
        state.lastResortID = state.takePrekeyID()
        state.lastResortSeed = (try? KEMKeyPair().seed) ?? Data()
        state.lastResortCreatedAt = now
        state.signedPrekeys = state.signedPrekeys.filter {
            $0.key == state.currentSignedPrekey || now - $0.value.createdAt < Self.signedPrekeyRetention
        }
        state.retiredLastResort = state.retiredLastResort?.filter { now - $0.value.createdAt < Self.signedPrekeyRetention }
        state.answeredSetups = state.answeredSetups?.filter { state.signedPrekeys[$0.key] != nil }
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

    // MARK: Sending

    /// Sends text end-to-end encrypted to every device of `username` that its signed device list
    /// names, and a copy to this account's other listed devices. Sessions are set up on first
    /// use (PQXDH); the message carries a franking commitment so the recipient can report it.
    ///
    /// Throws, sending nothing, when the server misstates a device list (rolled back, two
    /// versions, left out); devices the server offers that no signed list names are not used and
    /// come back as notices.
    @discardableResult
    public func sendEncrypted(text: String, to username: String, messageID: MessageID = .random()) async throws -> EncryptedSend {
        try await sendEncrypted(text: text, control: nil, to: username, messageID: messageID)
    }

    /// ``sendEncrypted(text:to:messageID:)`` with an optional private-group control (sender key,
    /// title) and optional attachment pointers inside the encrypted content; the attachments'
    /// blobs are named to the server so that the recipient may download them.
    func sendEncrypted(
        text: String, control: GroupControl?, attachments: [AttachmentPointer]? = nil, to username: String,
        messageID: MessageID = .random()
    )
        async throws -> EncryptedSend
    {
        let profile = self.profile
        // A read, not an update: this runs on every send, and an update rewrites the file.
        if try !keyStore.exists || !keyStore.read().published { try await prepareEncryption() }
        var notices: [KeyNotice] = []
        var attempt = 0
        while true {
            attempt += 1
            let recipient = try await trustedDevices(of: username)
            let own = recipient.info.accountId == profile.accountID ? nil : try await trustedDevices(of: profile.username)
            notices += recipient.notices + (own?.notices ?? [])
            let recipientTargets = recipient.targets(excluding: profile.deviceID)
            let ownTargets = own?.targets(excluding: profile.deviceID) ?? []
            notices +=
                Self.unlisted(recipient, excluding: profile.deviceID)
                + (own.map { Self.unlisted($0, excluding: profile.deviceID) } ?? [])
            notices += try await ensureSessions(with: recipient, targets: recipientTargets)
            if let own, !ownTargets.isEmpty { notices += try await ensureSessions(with: own, targets: ownTargets) }

            var content = MessageContent(
                text: text, sentAt: Date().millisecondsSince1970,
                to: recipient.info.accountId == profile.accountID ? nil : recipient.info.username)
            content.group = control
            content.attachments = attachments
            let body = try WireCodec.encode(content)
            let frankingKey = Franking.newKey()
            let commitment = Franking.commitment(
                frankingKey: frankingKey, messageID: messageID.rawValue, sender: profile.accountID, body: body)
            let plaintext = SealedContent(frankingKey: frankingKey, body: body).bytes
            // Encrypt and save the advanced sessions before anything leaves the device: a message
            // key must never be used twice, even if the process dies right after sending.
            let targets =
                recipientTargets.map { (recipient.info.accountId, $0) } + ownTargets.map { (profile.accountID, $0) }
            let copies = try keyStore.update { state -> [WireCopy] in
                var copies: [WireCopy] = []
                for (account, entry) in targets {
                    let key = PeerSession.key(account, entry.device)
                    // Only a session made with exactly the listed key and the recorded identity.
                    guard var peer = state.peerSessions?[key],
                        Self.bindingProblem(peer, contact: state.contacts[account.description]) == nil
                    else { continue }
                    copies.append(WireCopy(deviceId: entry.device, payload: try peer.ratchet.seal(plaintext).bytes))
                    state.peerSessions?[key] = peer
                }
                return copies
            }
            guard !copies.isEmpty else {
                throw HeliographError(
                    .noDevices, "\(recipient.info.username) has no listed device that can receive encrypted messages yet")
            }
            do {
                var request = SendRequest(
                    messageId: messageID, to: recipient.info.username, copies: copies, frankingCommitment: commitment)
                request.attachments = try attachments.map { try $0.map(Self.blobHash(of:)) }
                let response = try await sendCopies(request)
                return EncryptedSend(response: response, notices: notices)
            } catch let error as HeliographError where error.code == .deviceListMismatch && attempt < 3 {
                // A device was added or removed meanwhile: look again and encrypt again. A server
                // that insists on a device no signed list names ends here, with the error.
                logger.debug("device list changed while sending; retrying", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Devices the server reports active that no signed list names (never used), and listed
    /// devices the server reports gone (not reached): both worth saying.
    private static func unlisted(_ trusted: TrustedDevices, excluding own: DeviceID) -> [KeyNotice] {
        let listed = Set((trusted.list?.devices ?? []).map(\.device))
        let active = Set(trusted.info.devices)
        let extra = trusted.info.devices.filter { !listed.contains($0) }.map {
            KeyNotice.unlistedDevice(username: trusted.info.username, device: $0)
        }
        let hidden = listed.subtracting(active).subtracting([own]).sorted { $0.description < $1.description }.map {
            KeyNotice.unreachableDevice(username: trusted.info.username, device: $0)
        }
        return extra + hidden
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

    /// Why a stored session may not be used with its peer any more, or nil when it may: the
    /// peer's identity must be the one recorded for the account, and the account's accepted
    /// signed device list must name the device with the very key the session was made with.
    static func bindingProblem(_ peer: PeerSession, contact: DeviceKeyState.Contact?) -> String? {
        guard let contact else { return "no contact record for account \(peer.account)" }
        guard contact.identityKey == peer.identityKey else {
            return "the session with device \(peer.device) was made with an earlier identity key of \(contact.username)"
        }
        if let list = contact.deviceList {
            guard list.agreementKey(of: peer.device) == peer.agreementKey else {
                return "device \(peer.device) is not in \(contact.username)'s signed device list with the key of this session"
            }
        } else if contact.devices[peer.device.description] != peer.agreementKey {
            return "device \(peer.device) is not a known device of \(contact.username)"
        }
        return nil
    }

    /// Sets up sessions with the listed target devices that have no usable session yet.
    private func ensureSessions(with trusted: TrustedDevices, targets: [SignedDeviceList.Entry]) async throws -> [KeyNotice] {
        let account = trusted.info.accountId
        let known = try keyStore.read()
        let missing = targets.filter { entry in
            guard let peer = known.peerSessions?[PeerSession.key(account, entry.device)] else { return true }
            return Self.bindingProblem(peer, contact: known.contacts[account.description]) != nil
        }
        guard !missing.isEmpty else { return [] }
        let response = try await call(
            .fetchKeys, FetchKeysRequest(username: trusted.info.username, devices: missing.map(\.device)),
            as: FetchKeysResponse.self)
        guard response.accountId == account, response.identityKey == trusted.identity.rawBytes else {
            throw HeliographError(.badSignature, "the server answered for another account or identity than it described")
        }
        var notices: [KeyNotice] = []
        let local = try localDevice(known)
        let listed = Dictionary(missing.map { ($0.device, $0.agreementKey) }, uniquingKeysWith: { first, _ in first })
        var sessions: [PeerSession] = []
        for wire in response.bundles {
            // A bundle for a device the list does not name, or with another key: the server's
            // invention. Not used.
            guard listed[wire.deviceId] == wire.agreementKey else {
                notices.append(.unlistedDevice(username: trusted.info.username, device: wire.deviceId))
                continue
            }
            let bundle = UnverifiedPrekeyBundle(
                account: account, device: wire.deviceId,
                agreementKey: DeviceAgreementKey(publicKey: wire.agreementKey, signature: wire.agreementSignature),
                signedPrekey: try signedPrekey(wire.signedPrekey),
                oneTimePrekey: try wire.oneTimePrekey.map(signedPrekey), kemPrekey: try signedPrekey(wire.kemPrekey))
            switch PrekeyBundleVerifier.verify(bundle, identity: trusted.identity) {
            case .verified(let verified):
                let setup = try PQXDH.initiate(from: local, to: verified)
                sessions.append(
                    PeerSession(
                        account: account, device: wire.deviceId, identityKey: trusted.identity.rawBytes,
                        agreementKey: wire.agreementKey, ratchet: try RatchetSession(initiating: setup)))
            case .rejected(let error):
                logger.warning("refused a prekey bundle", metadata: ["device": "\(wire.deviceId)", "reason": "\(error)"])
            }
        }
        try keyStore.update { state in
            for session in sessions {
                let key = PeerSession.key(account, session.device)
                state.contacts[account.description]?.devices[session.device.description] = session.agreementKey
                // A usable session set up meanwhile (say, by `listen` answering this device) wins.
                if let existing = state.peerSessions?[key],
                    Self.bindingProblem(existing, contact: state.contacts[account.description]) == nil
                {
                    continue
                }
                if state.peerSessions == nil { state.peerSessions = [:] }
                state.peerSessions?[key] = session
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

    /// Records an account's identity (trust on first use); notices a change, after which every
    /// session and the device list of the old identity are dropped.
    static func record(
        identity: IdentityPublicKey, account: AccountID, username: String, in state: inout DeviceKeyState,
        isOwnAccount: Bool
    ) -> [KeyNotice] {
        var notices: [KeyNotice] = []
        let key = account.description
        if var contact = state.contacts[key] {
            if contact.identityKey != identity.rawBytes {
                // A new identity: old sessions were with the old key and are dropped; the person
                // is told, and a verified contact becomes unverified until compared again.
                notices.append(.identityChanged(username: username))
                let prefix = key + "/"
                state.peerSessions = state.peerSessions?.filter { !$0.key.hasPrefix(prefix) }
                state.archivedPeerSessions = state.archivedPeerSessions?.filter { !$0.key.hasPrefix(prefix) }
                contact = .init(
                    username: username, identityKey: identity.rawBytes, verified: false, devices: [:], deviceList: nil)
            }
            contact.username = username
            state.contacts[key] = contact
        } else {
            state.contacts[key] = .init(
                username: username, identityKey: identity.rawBytes, verified: isOwnAccount, devices: [:], deviceList: nil)
        }
        return notices
    }

    // MARK: Receiving

    /// Decrypts and checks one received envelope, saving the session state.
    ///
    /// Never throws for bad input: tampered, replayed, unknown-session, unlisted-device or
    /// unreadable messages come back as `.dropped` with a reason (and are logged), and the
    /// session survives. Throws only when the key file cannot be read or written.
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
        var notices: [KeyNotice] = []
        func drop(_ reason: String) -> OpenedMessage {
            logger.notice(
                "dropped a message",
                metadata: ["seq": "\(message.sequence)", "sender": "\(message.sender)", "reason": "\(reason)"])
            for notice in notices { logger.notice("key notice", metadata: ["notice": "\(notice)"]) }
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
        // The sender's device as its account's signed list names it. A device not named (or
        // named with another key) may be new: look the account up once and check again. The
        // account is looked up by id through its name, and must match.
        let contact = known.contacts[message.senderAccount.description]
        let claimedKey: Data? =
            if case .setup(let header, _) = sealed { header.initiatorAgreementKey.publicKey } else {
                known.peerSessions?[PeerSession.key(message.senderAccount, senderDevice)]?.agreementKey
            }
        if contact?.deviceList?.agreementKey(of: senderDevice) == nil
            || (claimedKey != nil && contact?.deviceList?.agreementKey(of: senderDevice) != claimedKey)
        {
            do {
                let info = try await call(
                    .lookupAccount, LookupAccountRequest(username: message.sender), as: AccountInfo.self)
                guard info.accountId == message.senderAccount else {
                    return drop("the server names another account for \(message.sender)")
                }
                notices += try trustedDevices(info).notices
            } catch {
                return drop("the sender's device list cannot be checked: \(error)")
            }
        }
        let outcome: Result<DecryptedMessage, SessionError> = try keyStore.update { stored in
            // Work on a copy: a message that fails any check leaves no trace in the key file.
            var state = stored
            do {
                let decrypted = try openSealed(
                    sealed, of: message, from: senderDevice, commitment: commitment, state: &state)
                stored = state
                return .success(decrypted)
            } catch let error as SessionError {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(var decrypted):
            if let control = decrypted.content.group {
                try acceptGroupControl(control, from: message.senderAccount, device: senderDevice)
            }
            for notice in notices { logger.notice("key notice", metadata: ["notice": "\(notice)"]) }
            decrypted.notices = notices
            if case .setup = sealed { await refillPrekeysQuietly() }
            return .message(decrypted)
        case .failure(let error):
            return drop(error.description)
        }
    }

    /// The state-changing part of ``open(_:)``, on a copy of the key state.
    ///
    /// Sessions per peer (account and device): the current one and up to
    /// ``archivedSessionLimit`` earlier ones. When both devices set a session up at the same
    /// moment, each first answers the other's setup; keeping the replaced session and trying it
    /// when the current one fails lets the two converge on one session.
    private func openSealed(
        _ sealed: SealedMessage, of message: IncomingMessage, from senderDevice: DeviceID, commitment: Data,
        state: inout DeviceKeyState
    ) throws(SessionError) -> DecryptedMessage {
        let profile = self.profile
        let account = message.senderAccount
        let key = PeerSession.key(account, senderDevice)
        guard let contact = state.contacts[account.description] else {
            throw SessionError(.unknownSession, "nothing is known about the sending account")
        }
        // The sender device must be vouched for by the account's accepted signed list.
        guard let listedKey = contact.deviceList?.agreementKey(of: senderDevice) else {
            throw SessionError(
                .unlistedDevice, "device \(senderDevice) is not in \(contact.username)'s signed device list")
        }
        let local: LocalDevice
        do { local = try localDevice(state) } catch { throw SessionError(.invalidKey, "the device's own keys are unreadable") }
        let current = state.peerSessions?[key]
        let archived = state.archivedPeerSessions?[key] ?? []
        // Candidates in order; index -1 is the current session, nil one made from this setup.
        var candidates: [(index: Int?, session: PeerSession)] = []
        var usedPrekeys: (oneTime: UInt32?, kem: UInt32?) = (nil, nil)
        var answered: (prekey: UInt32, baseKey: Data)?
        if case .setup(let header, _) = sealed {
            guard header.initiatorAgreementKey.publicKey == listedKey else {
                throw SessionError(
                    .unlistedDevice,
                    "the setup's key for device \(senderDevice) differs from \(contact.username)'s signed device list")
            }
            let all = [current].compactMap { $0 }.map { (Optional(-1), $0) } + archived.enumerated().map { (Optional($0), $1) }
            if let existing = all.first(where: { $0.1.ratchet.initiatorBaseKey == header.baseKey }) {
                candidates = [(existing.0, existing.1)]
            } else {
                // Prekeys first: a setup naming a key no longer held is refused, so the record
                // of answered setups needs to last only as long as the signed prekey.
                guard let signed = state.signedPrekeys[header.signedPrekeyID] else {
                    throw SessionError(.unknownPrekey, "signed prekey \(header.signedPrekeyID) is not held (expired?)")
                }
                if (state.answeredSetups?[header.signedPrekeyID] ?? []).contains(header.baseKey) {
                    throw SessionError(.replayed, "this session setup was already used")
                }
                let identity: IdentityPublicKey
                do { identity = try IdentityPublicKey(rawBytes: contact.identityKey) } catch {
                    throw SessionError(.invalidKey, "the recorded identity key is unreadable")
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
                    if header.kemPrekeyID == state.lastResortID {
                        kemSeed = state.lastResortSeed
                    } else if let retired = state.retiredLastResort?[header.kemPrekeyID] {
                        kemSeed = retired.secret
                    } else {
                        throw SessionError(.unknownPrekey, "last-resort prekey \(header.kemPrekeyID) is not held")
                    }
                } else {
                    guard let stored = state.kemPrekeys[header.kemPrekeyID] else {
                        throw SessionError(.unknownPrekey, "ML-KEM prekey \(header.kemPrekeyID) was already used")
                    }
                    kemSeed = stored.secret
                }
                let signedKey = try AgreementKeyPair(privateKeyBytes: signed.secret)
                let (secret, associated) = try PQXDH.respond(
                    to: header, at: local, from: account, device: senderDevice, identity: identity,
                    prekeys: .init(signedPrekey: signedKey, oneTimePrekey: oneTime, kemPrekey: try KEMKeyPair(seed: kemSeed)))
                let ratchet = RatchetSession(
                    responding: secret, associatedData: associated, signedPrekey: signedKey, initiatorBaseKey: header.baseKey)
                candidates = [
                    (
                        nil,
                        PeerSession(
                            account: account, device: senderDevice, identityKey: contact.identityKey, agreementKey: listedKey,
                            ratchet: ratchet)
                    )
                ]
                usedPrekeys = (header.oneTimePrekeyID, header.kemPrekeyIsLastResort ? nil : header.kemPrekeyID)
                answered = (header.signedPrekeyID, header.baseKey)
            }
        } else {
            candidates = [current].compactMap { $0 }.map { (-1, $0) } + archived.enumerated().map { ($0, $1) }
        }
        guard !candidates.isEmpty else {
            throw SessionError(.unknownSession, "no session with device \(senderDevice) and no setup in the message")
        }
        // A stored session is used only if it still matches the contact and its list.
        let usable = candidates.filter { $0.index == nil || Self.bindingProblem($0.session, contact: contact) == nil }
        guard !usable.isEmpty else {
            throw SessionError(
                .unlistedDevice,
                Self.bindingProblem(candidates[0].session, contact: contact) ?? "the session no longer matches its device")
        }
        var firstError: SessionError?
        for (index, candidate) in usable {
            var session = candidate
            do throws(SessionError) {
                let plaintext = try session.ratchet.decrypt(sealed.ratchetMessage)
                let content = try SealedContent(bytes: plaintext)
                try Franking.verifyCommitment(
                    commitment, frankingKey: content.frankingKey, messageID: message.messageID, sender: account,
                    body: content.body)
                guard let decoded = try? WireCodec.decode(MessageContent.self, from: content.body) else {
                    throw SessionError(.malformed, "the decrypted content is not a message")
                }
                // Everything checked: the session that opened the message becomes the current one.
                var archive = archived
                if let index, index >= 0 { archive.remove(at: index) }
                if index != -1, let current { archive.insert(current, at: 0) }
                state.archivedPeerSessions = (state.archivedPeerSessions ?? [:]).merging(
                    [key: Array(archive.prefix(Self.archivedSessionLimit))]) { $1 }
                if state.peerSessions == nil { state.peerSessions = [:] }
                state.peerSessions?[key] = session
                if index == nil, let answered {
                    state.answeredSetups = state.answeredSetups ?? [:]
                    state.answeredSetups?[answered.prekey, default: []].append(answered.baseKey)
                }
                if let id = usedPrekeys.oneTime { state.oneTimePrekeys[id] = nil }
                if let id = usedPrekeys.kem { state.kemPrekeys[id] = nil }
                state.contacts[account.description]?.devices[senderDevice.description] = listedKey
                state.decrypted[message.sequence] = .init(message, body: content.body, frankingKey: content.frankingKey)
                return DecryptedMessage(
                    envelope: message, content: decoded, body: content.body, frankingKey: content.frankingKey,
                    fromOwnDevice: account == profile.accountID, senderName: contact.username)
            } catch {
                firstError = firstError ?? error
            }
        }
        throw firstError ?? SessionError(.unknownSession, "no session opened the message")
    }

    /// Earlier sessions kept per peer.
    static let archivedSessionLimit = 3

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
                identity: identity, account: account.accountId, username: account.username, in: &state,
                isOwnAccount: account.accountId == profile.accountID)
            return (state.contacts[account.accountId.description]?.verified ?? false, notices)
        }
        let number = SafetyNumber(
            (profile.accountID, try self.identityKeyPair.publicKey), (account.accountId, identity))
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
