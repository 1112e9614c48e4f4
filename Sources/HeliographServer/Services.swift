import Foundation
import HeliographCore
import HeliographCrypto
import HeliographProtocol
import HeliographStore
import Logging

/// A device proven by its session token: the caller of every authenticated service function.
public struct AuthenticatedDevice: Sendable, Equatable {
    /// The account.
    public var accountID: AccountID
    /// The account's name.
    public var username: Username
    /// The device.
    public var deviceID: DeviceID
    /// When the presented token stops being valid.
    public var expiresAt: Date
}

/// Registration and lookup of accounts.
public struct AccountService: Sendable {
    let storage: any HeliographStorage
    let clock: any WallClock
    let limits: AuthLimits

    /// `register`: claims a username for an identity key, counted against `client`'s address.
    public func register(_ request: RegisterRequest, from client: ClientAddress) async throws -> AccountInfo {
        let username = try Username(validating: request.username)
        let key = try IdentityPublicKey(rawBytes: request.identityKey)
        try limits.register(from: client)
        let account = Account(
            id: .random(), username: username, identityKey: key.rawBytes, createdAt: clock.now().wholeMilliseconds)
        try await storage.accounts.insert(account)
        return AccountInfo(account, devices: [])
    }

    /// `lookupAccount`: the public facts of an account, with its active devices.
    public func lookup(_ request: LookupAccountRequest) async throws -> AccountInfo {
        let account = try await requireAccount(named: request.username)
        let devices = try await storage.devices.devices(of: account.id).filter(\.isActive).map(\.id)
        var info = AccountInfo(account, devices: devices)
        // The signed list, so a client can check devices without claiming anyone's prekeys.
        info.deviceList = try await storage.prekeys.deviceList(account: account.id).flatMap {
            try? WireCodec.decode(WireDeviceList.self, from: $0.list)
        }
        return info
    }

    /// The account with this name, or `unknown_account`.
    func requireAccount(named name: String) async throws -> Account {
        let username = try Username(validating: name)
        guard let account = try await storage.accounts.account(username: username) else {
            throw HeliographError(.unknownAccount, "no account is named \(username)")
        }
        return account
    }
}

extension AccountInfo {
    init(_ account: Account, devices: [DeviceID]) {
        self.init(
            accountId: account.id, username: account.username.display, identityKey: account.identityKey,
            createdAt: account.createdAt.millisecondsSince1970, devices: devices)
    }
}

/// Challenge–response login and session-token checks.
public struct AuthService: Sendable {
    let storage: any HeliographStorage
    let clock: any WallClock
    let configuration: ServerConfiguration
    let accounts: AccountService
    let limits: AuthLimits
    /// Revocations this node heard of, for the per-request check of open sockets.
    let revocations: RevocationRegistry
    /// The origins a login proof may name.
    let origins = PublicOrigins()

    /// `challenge`: a fresh single-use nonce for the named account, counted against `client`'s
    /// address (first, so probing names costs too) and against the account.
    public func challenge(_ request: ChallengeRequest, from client: ClientAddress) async throws -> ChallengeResponse {
        try limits.login("challenge", from: client)
        let account = try await accounts.requireAccount(named: request.username)
        try limits.login("challenge", account: account.id)
        let challenge = LoginChallenge(
            id: UUID(), accountID: account.id, nonce: SessionToken.randomNonce(),
            expiresAt: (clock.now() + configuration.challengeLifetime.timeInterval).wholeMilliseconds)
        try await storage.challenges.insert(challenge)
        return ChallengeResponse(
            challengeId: challenge.id, nonce: challenge.nonce, expiresAt: challenge.expiresAt.millisecondsSince1970,
            origin: origins.accepted(for: configuration).first?.text)
    }

    /// `login`: verifies the signed challenge and creates a device with a session token.
    public func login(_ request: LoginRequest, from client: ClientAddress) async throws -> LoginResponse {
        try limits.login("login", from: client)
        let deviceName = request.deviceName.trimmingCharacters(in: .whitespacesAndNewlines)
        // Unicode scalars, not characters: one character may carry any number of combining marks.
        guard !deviceName.isEmpty, deviceName.unicodeScalars.count <= Device.maximumNameLength else {
            throw HeliographError(
                .badRequest, "deviceName must be 1-\(Device.maximumNameLength) characters (Unicode scalars)")
        }
        // Consume first: a challenge is single-use even when the signature turns out bad.
        guard let challenge = try await storage.challenges.consume(id: request.challengeId),
            challenge.expiresAt >= clock.now()
        else {
            throw HeliographError(.challengeExpired, "the login challenge is unknown, already used or expired; request a new one")
        }
        guard let account = try await storage.accounts.account(id: challenge.accountID) else {
            throw HeliographError(.unknownAccount, "the account of this challenge no longer exists")
        }
        try limits.login("login", account: account.id)
        // The proof names this account, this server's origin and the name as stored (trimmed).
        try LoginProof.verify(
            signature: request.signature, identityKey: try IdentityPublicKey(rawBytes: account.identityKey),
            nonce: challenge.nonce, challengeID: challenge.id, account: account.id,
            origins: origins.accepted(for: configuration), deviceName: deviceName)
        let now = clock.now().wholeMilliseconds
        // Active at once (a new account's first device, a recovery), or waiting for an active
        // device of the account to approve it: see DeviceLinking.
        let pending = try await DeviceLinking(storage: storage, clock: clock).admit(request, to: account, challenge: challenge)
        let device = Device(
            id: .random(), accountID: account.id, name: deviceName, createdAt: now, pending: pending,
            linkKey: request.agreementKey)
        try await storage.devices.insert(device)
        let token = SessionToken.generate()
        let session = DeviceSession(
            tokenHash: SessionToken.hash(token), accountID: account.id, deviceID: device.id, createdAt: now,
            expiresAt: (now + configuration.tokenLifetime.timeInterval).wholeMilliseconds)
        try await storage.sessions.insert(session)
        return LoginResponse(
            accountId: account.id, deviceId: device.id, token: token, expiresAt: session.expiresAt.millisecondsSince1970,
            pending: pending ? true : nil)
    }

    /// Resolves a bearer token to its device, refusing unknown, expired and revoked ones.
    public func authenticate(token: String) async throws -> AuthenticatedDevice {
        guard !token.isEmpty, let session = try await storage.sessions.session(tokenHash: SessionToken.hash(token)) else {
            throw HeliographError(.unauthenticated, "the session token is not valid; log in again")
        }
        guard session.expiresAt >= clock.now() else {
            throw HeliographError(.tokenExpired, "the session token has expired; log in again")
        }
        guard let device = try await storage.devices.device(id: session.deviceID), device.revokedAt == nil else {
            throw HeliographError(
                .deviceRevoked, "this device was revoked; log in again and have an active device approve it")
        }
        guard !device.pending else {
            throw HeliographError(
                .devicePending,
                "this device waits for approval: run 'helio devices approve CODE' on an active device of the account")
        }
        guard let account = try await storage.accounts.account(id: session.accountID) else {
            throw HeliographError(.unauthenticated, "the account of this session no longer exists")
        }
        return AuthenticatedDevice(
            accountID: account.id, username: account.username, deviceID: device.id, expiresAt: session.expiresAt)
    }

    /// Re-checks a socket's device before each request, so expiry and revocation apply to
    /// long-lived sockets too. Revocation is looked up in memory (one set lookup, no database
    /// read): the registry hears of every revocation, this node's and, through the change feed,
    /// every other node's, and closes the device's sockets as it does. (HTTP requests need no
    /// such check: each one reads its device in ``authenticate(token:)``.)
    func checkStillValid(_ device: AuthenticatedDevice) throws(HeliographError) {
        guard !revocations.isRevoked(device.deviceID) else { throw RevocationRegistry.revokedError }
        guard device.expiresAt >= clock.now() else {
            throw HeliographError(.tokenExpired, "the session token has expired; log in again")
        }
    }
}

/// Listing and revoking an account's devices.
public struct DeviceService: Sendable {
    let storage: any HeliographStorage
    let clock: any WallClock
    let hub: DeliveryHub
    /// Closes a revoked device's sockets on this node; other nodes hear of it from the change feed.
    let revocations: RevocationRegistry

    /// `listDevices`: every device of the caller's account.
    public func list(for caller: AuthenticatedDevice) async throws -> DeviceListResponse {
        let devices = try await storage.devices.devices(of: caller.accountID)
        return DeviceListResponse(devices: devices.map { DeviceInfo($0, current: $0.id == caller.deviceID) })
    }

    /// `approveDevice`: an active device approves a waiting device of its account.
    public func approve(_ request: ApproveDeviceRequest, by caller: AuthenticatedDevice) async throws -> DeviceInfo {
        try await DeviceLinking(storage: storage, clock: clock).approve(request, by: caller)
    }

    /// `revokeDevice`: revokes one of the caller's devices and closes its sockets.
    public func revoke(_ request: RevokeDeviceRequest, by caller: AuthenticatedDevice) async throws -> DeviceInfo {
        guard let device = try await storage.devices.device(id: request.deviceId), device.accountID == caller.accountID else {
            // The same answer for "no such device" and "not yours": ids of others are not probed.
            throw HeliographError(.unknownDevice, "your account has no device \(request.deviceId)")
        }
        // The signed list recording the revocation (and any identity rotation) is stored first:
        // a revocation that happened must be visible to contacts.
        let alsoRevoked = try await DeviceLinking(storage: storage, clock: clock).recordRevocation(
            of: device, request, by: caller)
        for other in alsoRevoked {
            _ = try await storage.devices.revoke(other, at: clock.now().wholeMilliseconds)
        }
        guard let revoked = try await storage.devices.revoke(device.id, at: clock.now().wholeMilliseconds) else {
            throw HeliographError(.unknownDevice, "your account has no device \(request.deviceId)")
        }
        // Every socket of the device on this node, receiving or not, is told and closed now.
        // Other nodes close theirs when the change feed brings the revocation, which the store
        // announced in the revoking transaction.
        revocations.revoke([device.id] + alsoRevoked)
        return DeviceInfo(revoked, current: revoked.id == caller.deviceID)
    }
}

extension DeviceInfo {
    init(_ device: Device, current: Bool) {
        self.init(
            deviceId: device.id, name: device.name, createdAt: device.createdAt.millisecondsSince1970,
            revokedAt: device.revokedAt?.millisecondsSince1970, current: current, pending: device.pending ? true : nil,
            linkKey: device.pending ? device.linkKey : nil)
    }
}

/// Sending envelopes and reading and acknowledging inboxes.
public struct MessageService: Sendable {
    let storage: any HeliographStorage
    let clock: any WallClock
    let configuration: ServerConfiguration
    let accounts: AccountService
    let hub: DeliveryHub
    let metrics: ServerMetrics
    let accountLimiter: RateLimiter
    let pairLimiter: RateLimiter
    let franking: FrankingKeyring
    /// Checks and records the attachments a message names.
    let media: MediaService

    /// `send`: stores one envelope per recipient device and answers only after the commit.
    public func send(_ request: SendRequest, from caller: AuthenticatedDevice) async throws -> SendResponse {
        for size in [request.payload?.count ?? 0] + (request.copies ?? []).map(\.payload.count)
        where size > configuration.maxEnvelopeBytes {
            throw HeliographError(
                .payloadTooLarge, "the payload is \(size) bytes; the limit is \(configuration.maxEnvelopeBytes)")
        }
        if let commitment = request.frankingCommitment, commitment.count != Franking.size {
            throw HeliographError(.badRequest, "frankingCommitment must be \(Franking.size) bytes")
        }
        let recipient = try await accounts.requireAccount(named: request.to)
        try accountLimiter.take(caller.accountID.description, what: "messages")
        try pairLimiter.take("\(caller.accountID)>\(recipient.id)", what: "messages to \(recipient.username)")

        let active = try await storage.devices.devices(of: recipient.id).filter(\.isActive).map(\.id)
        // A sender writing to its own account reaches its other devices, not itself.
        let targets = recipient.id == caller.accountID ? active.filter { $0 != caller.deviceID } : active
        guard !targets.isEmpty else {
            throw HeliographError(.noDevices, "\(recipient.username) has no device to deliver to")
        }
        let copies: [EnvelopeCopy]
        switch (request.payload, request.copies) {
        case (let payload?, nil):
            if let listed = request.devices, Set(listed) != Set(targets) {
                throw HeliographError(
                    .deviceListMismatch,
                    "the device list for \(recipient.username) is out of date; current devices: "
                        + targets.map(\.description).joined(separator: ", "))
            }
            copies = targets.map { EnvelopeCopy(deviceID: $0, payload: payload) }
        case (nil, let wireCopies?):
            copies = try await checkedCopies(wireCopies, recipient: recipient, targets: targets, caller: caller)
        default:
            throw HeliographError(.badRequest, "give either 'payload' (one for all devices) or 'copies' (one per device)")
        }
        if let attachments = request.attachments {
            // Before the message is stored: an acknowledged message never names a blob that
            // nothing keeps. A send refused later leaves references that expire on their own.
            try await media.attach(attachments, toDirectMessage: request.messageId, from: caller, to: recipient.id)
        }
        let serverTime = clock.now().wholeMilliseconds
        var tagged = copies
        if let commitment = request.frankingCommitment {
            // The current key; its id goes into every tag, so a report is checked with it even
            // after later rotations.
            let key = try await franking.currentKey()
            let recipients = Set(targets)
            for index in tagged.indices {
                let device = tagged[index].deviceID
                tagged[index].frankingTag = Franking.tag(
                    Franking.Context(
                        commitment: commitment, senderAccount: caller.accountID, senderDevice: caller.deviceID,
                        recipientAccount: recipients.contains(device) ? recipient.id : caller.accountID,
                        recipientDevice: device, serverTime: serverTime.millisecondsSince1970,
                        messageID: request.messageId.rawValue),
                    key: key)
            }
        }
        var message = OutgoingMessage(
            messageID: request.messageId,
            sender: EnvelopeSender(accountID: caller.accountID, username: caller.username, deviceID: caller.deviceID),
            recipientAccountID: recipient.id, copies: tagged, serverTime: serverTime,
            frankingCommitment: request.frankingCommitment)
        // A repeated message id is a retry only with the same content: the store compares digests.
        message.contentHash = request.contentHash(recipient: recipient.id)
        let receipt: DeliveryReceipt
        do {
            receipt = try await metrics.timed(\.storeEnqueueTime) { try await storage.inbox.enqueue(message) }
        } catch {
            // The store may have committed after all (a timeout on a slow database): wake the
            // devices so that nothing committed waits for the next message to be pushed.
            hub.wake(message.copies.map(\.deviceID))
            throw error
        }
        if receipt.duplicate {
            // A retry: the first attempt's hand-off may never have happened (see above).
            hub.wake(receipt.sequences.keys)
        } else {
            metrics.recordAccepted(receipt.sequences.count)
            // Committed: hand the envelopes straight to this node's sockets of those devices.
            hub.deliver(
                message.copies.compactMap { copy in
                    receipt.sequences[copy.deviceID].map { sequence in
                        Envelope(
                            sequence: sequence, messageID: message.messageID, sender: message.sender,
                            recipientDeviceID: copy.deviceID, serverTime: receipt.serverTime, payload: copy.payload,
                            frankingCommitment: message.frankingCommitment, frankingTag: copy.frankingTag)
                    }
                })
        }
        return SendResponse(
            messageId: receipt.messageID, serverTime: receipt.serverTime.millisecondsSince1970,
            deviceCount: receipt.sequences.count, duplicate: receipt.duplicate)
    }

    /// Per-device copies must cover exactly the recipient's active devices and the sender's
    /// other active devices: a copy missing means someone would silently not get the message.
    private func checkedCopies(
        _ wireCopies: [WireCopy], recipient: Account, targets: [DeviceID], caller: AuthenticatedDevice
    ) async throws -> [EnvelopeCopy] {
        // Only devices that published keys can get a ciphertext; one that has not yet cannot
        // decrypt anything and is left out rather than blocking every send. (Revocation deletes
        // a device's keys, so these are active devices.)
        let active = Set(targets)
        let keyed = try await storage.prekeys.publishedDevices(of: recipient.id).filter(active.contains)
        let own =
            recipient.id == caller.accountID
            ? [] : try await storage.prekeys.publishedDevices(of: caller.accountID).filter { $0 != caller.deviceID }
        guard !keyed.isEmpty else {
            throw HeliographError(.noDevices, "\(recipient.username) has no device that can receive encrypted messages yet")
        }
        let targets = keyed
        let given = wireCopies.map(\.deviceId)
        guard Set(given).count == given.count else {
            throw HeliographError(.badRequest, "two copies name the same device")
        }
        guard Set(given) == Set(targets).union(own) else {
            var message =
                "the device list for \(recipient.username) is out of date; current devices: "
                + targets.map(\.description).joined(separator: ", ")
            if !own.isEmpty { message += "; your other devices: " + own.map(\.description).joined(separator: ", ") }
            throw HeliographError(.deviceListMismatch, message)
        }
        return wireCopies.map { EnvelopeCopy(deviceID: $0.deviceId, payload: $0.payload) }
    }

    /// The page size of `fetchInbox` when the request names none.
    static let defaultFetchLimit = 100
    /// The largest page `fetchInbox` returns.
    static let maximumFetchLimit = 500

    /// `fetchInbox`: envelopes after a sequence number, for clients that poll. Both transports
    /// reach this with the same defaults: `after` 0 (from the start), `limit` 100.
    public func fetch(_ request: FetchInboxRequest, for caller: AuthenticatedDevice) async throws -> FetchInboxResponse {
        let limit = request.limit ?? Self.defaultFetchLimit
        guard (1...Self.maximumFetchLimit).contains(limit) else {
            throw HeliographError(.badRequest, "limit must be between 1 and \(Self.maximumFetchLimit), not \(limit)")
        }
        let after = request.after ?? 0
        guard after >= 0 else {
            throw HeliographError(.badRequest, "after must not be negative, not \(after)")
        }
        let envelopes = try await storage.inbox.envelopes(for: caller.deviceID, after: after, limit: limit)
        return FetchInboxResponse(envelopes: envelopes.map(WireEnvelope.init))
    }

    /// `authenticate`'s `after`: everything up to it is processed. It is checked against the
    /// device's highest assigned sequence number before anything is acknowledged, so a refused
    /// value leaves the inbox as it was (and the socket unauthenticated). Returns where delivery
    /// starts and that highest number (`lastSequence`).
    func resume(after: Int64?, for device: AuthenticatedDevice) async throws -> (start: Int64, lastSequence: Int64) {
        let after = after ?? 0
        // Sequence numbers only grow, so a value checked here stays valid for the acknowledgement.
        let lastSequence = try await storage.inbox.lastSequence(of: device.deviceID)
        // The same range as an `ack`: 0 up to the highest number assigned.
        guard (0...lastSequence).contains(after) else {
            throw HeliographError(
                .ackOutOfRange,
                "'after' is \(after), but it must be 0 to \(lastSequence), the highest sequence number assigned to this "
                    + "device; nothing was acknowledged and the socket is not authenticated")
        }
        if after > 0 {
            _ = try await storage.inbox.acknowledge(device.deviceID, through: after)
        }
        return (after, lastSequence)
    }

    /// `ack`: everything up to `seq` is processed; the server deletes it.
    public func acknowledge(_ request: AckRequest, for caller: AuthenticatedDevice) async throws -> AckResponse {
        AckResponse(acknowledged: try await storage.inbox.acknowledge(caller.deviceID, through: request.seq))
    }
}

extension Duration {
    /// The duration in seconds, as Foundation measures intervals.
    var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
