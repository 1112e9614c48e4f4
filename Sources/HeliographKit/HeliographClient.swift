import Foundation
import HeliographCore
import HeliographCrypto
import HeliographProtocol
import Logging
import Synchronization

/// A device that logged in and waits for approval by an active device of its account.
public struct PendingApproval: Sendable, Equatable {
    /// The waiting device.
    public var deviceID: DeviceID
    /// The code to type on an active device (`helio devices approve CODE`).
    public var code: String
    /// The same, in full, for a QR code.
    public var scannable: String
}

/// The client SDK's entry point: one device of one account, backed by a saved ``Profile``.
///
/// It registers and logs in, sends with retries that are safe (the message id makes them
/// idempotent), and receives as an `AsyncSequence` that reconnects by itself and resumes after
/// the last acknowledged sequence number.
public final class HeliographClient: Sendable {
    /// The profile's name in its store.
    public let profileName: String
    let store: ProfileStore
    private let state: Mutex<Profile>
    private let connection = Mutex<HeliographConnection?>(nil)
    let logger: Logger
    /// The end-to-end key file of this profile.
    public let keyStore: KeyStoreFile

    /// The current profile.
    public var profile: Profile { state.withLock { $0 } }

    /// Opens a saved profile.
    ///
    /// With a `passphrase` the profile and the key file are sealed (see ``PassphraseSealer``).
    public init(
        profileName: String, store: ProfileStore, passphrase: String? = nil, logger: Logger = Logger(label: "heliograph.kit")
    ) throws {
        let store = store.sealing(with: passphrase)
        self.profileName = profileName
        self.store = store
        self.state = Mutex(try store.load(profileName))
        self.logger = logger
        keyStore = try KeyStoreFile(profile: profileName, store: store, passphrase: passphrase)
    }

    private init(profile: Profile, profileName: String, store: ProfileStore, passphrase: String?, logger: Logger) throws {
        let store = store.sealing(with: passphrase)
        self.profileName = profileName
        self.store = store
        self.state = Mutex(profile)
        self.logger = logger
        keyStore = try KeyStoreFile(profile: profileName, store: store, passphrase: passphrase)
    }

    /// Creates an account with a fresh identity key, logs this device in, and saves the profile.
    /// With `encryption` (the default) the device then publishes its end-to-end keys.
    public static func register(
        username: String, server: URL, deviceName: String, profileName: String, store: ProfileStore,
        passphrase: String? = nil, encryption: Bool = true, logger: Logger = Logger(label: "heliograph.kit")
    ) async throws -> HeliographClient {
        guard !store.exists(profileName) else {
            throw HeliographError(.badRequest, "a profile named '\(profileName)' already exists in \(store.directory.path)")
        }
        let identity = IdentityKeyPair()
        let connection = try await HeliographConnection.connect(to: server, logger: logger)
        defer { Task { await connection.close() } }
        _ = try await connection.request(
            .register, RegisterRequest(username: username, identityKey: identity.publicKey.rawBytes), as: AccountInfo.self)
        // A new account's first device is active at once: nobody could approve it.
        let (client, _) = try await login(
            over: connection, username: username, identity: identity, server: server, deviceName: deviceName,
            profileName: profileName, store: store, passphrase: passphrase, logger: logger)
        if encryption { try await client.prepareEncryption() }
        return client
    }

    /// Logs a new device in to an existing account with its identity private key, and saves the profile.
    ///
    /// An account that already has an active device does not let a new one in on the identity
    /// key alone: the new device waits, `onPending` gets the code it shows, and a person approves
    /// it on an active device (``approveDevice(code:)``, `helio devices approve CODE`). This call
    /// returns once approved (or throws after `approvalTimeout`). With `encryption` (the
    /// default) the device then publishes its end-to-end keys.
    public static func login(
        username: String, identityPrivateKey: Data, server: URL, deviceName: String, profileName: String,
        store: ProfileStore, passphrase: String? = nil, encryption: Bool = true, logger: Logger = Logger(label: "heliograph.kit"),
        approvalTimeout: Duration = .seconds(Int(Device.approvalWindow)),
        onPending: @Sendable (PendingApproval) async throws -> Void = { _ in }
    ) async throws -> HeliographClient {
        guard !store.exists(profileName) else {
            throw HeliographError(.badRequest, "a profile named '\(profileName)' already exists in \(store.directory.path)")
        }
        let identity = try IdentityKeyPair(privateKeyBytes: identityPrivateKey)
        let connection = try await HeliographConnection.connect(to: server, logger: logger)
        defer { Task { await connection.close() } }
        let (client, pending) = try await login(
            over: connection, username: username, identity: identity, server: server, deviceName: deviceName,
            profileName: profileName, store: store, passphrase: passphrase, logger: logger)
        if let pending {
            try await onPending(pending)
            try await client.waitForApproval(timeout: approvalTimeout)
        }
        if encryption { try await client.prepareEncryption() }
        return client
    }

    /// Recovers an account whose devices were all revoked: logs in with the old identity key
    /// and replaces it with a new one at the same time. Contacts see an identity change and
    /// should compare safety numbers again. Refused while the account has an active device.
    public static func recover(
        username: String, identityPrivateKey: Data, server: URL, deviceName: String, profileName: String,
        store: ProfileStore, passphrase: String? = nil, logger: Logger = Logger(label: "heliograph.kit")
    ) async throws -> HeliographClient {
        guard !store.exists(profileName) else {
            throw HeliographError(.badRequest, "a profile named '\(profileName)' already exists in \(store.directory.path)")
        }
        let old = try IdentityKeyPair(privateKeyBytes: identityPrivateKey)
        let connection = try await HeliographConnection.connect(to: server, logger: logger)
        defer { Task { await connection.close() } }
        let (client, _) = try await login(
            over: connection, username: username, identity: old, recoveringTo: IdentityKeyPair(), server: server,
            deviceName: deviceName, profileName: profileName, store: store, passphrase: passphrase, logger: logger)
        try await client.prepareEncryption()
        return client
    }

    /// Polls until an active device approved this one.
    func waitForApproval(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                _ = try await call(.keyStatus, EmptyBody(), as: KeyStatus.self)
                return
            } catch let error as HeliographError where error.code == .devicePending && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    private static func login(
        over connection: HeliographConnection, username: String, identity: IdentityKeyPair,
        recoveringTo newIdentity: IdentityKeyPair? = nil, server: URL, deviceName: String, profileName: String,
        store: ProfileStore, passphrase: String?, logger: Logger
    ) async throws -> (HeliographClient, PendingApproval?) {
        // One sealer (one scrypt derivation) for the profile and key file written below.
        let store = store.sealing(with: passphrase)
        // The proof names the account and this server's origin, so it is good for nothing else;
        // the account is looked up first, and must hold this identity key.
        let account = try await connection.request(
            .lookupAccount, LookupAccountRequest(username: username), as: AccountInfo.self)
        guard account.identityKey == identity.publicKey.rawBytes else {
            throw HeliographError(
                .badSignature, "the account @\(account.username) has another identity key than the one given for this login")
        }
        let origin = try ServerOrigin(url: server)
        let deviceName = LoginProof.storedDeviceName(deviceName)
        let challenge = try await connection.request(
            .challenge, ChallengeRequest(username: username), as: ChallengeResponse.self)
        let signature = try identity.signLogin(
            nonce: challenge.nonce, challengeID: challenge.challengeId, account: account.accountId, origin: origin,
            deviceName: deviceName)
        // The device's agreement key exists before it logs in: the login commits to it, and an
        // active device approves exactly this key.
        let keys = DeviceKeyState()
        let agreementKey = try AgreementKeyPair(privateKeyBytes: keys.agreementKey).publicKeyBytes
        var recovery: IdentityRotation?
        if let newIdentity {
            let signatures = try IdentityRotationProof.sign(
                account: account.accountId, old: identity, new: newIdentity, purpose: "recovery", context: challenge.nonce)
            recovery = IdentityRotation(
                newIdentityKey: newIdentity.publicKey.rawBytes, oldSignature: signatures.old, newSignature: signatures.new)
        }
        let session: LoginResponse
        do {
            session = try await connection.request(
                .login,
                LoginRequest(
                    challengeId: challenge.challengeId, deviceName: deviceName, signature: signature,
                    agreementKey: agreementKey, recovery: recovery),
                as: LoginResponse.self)
        } catch let error as HeliographError where error.code == .badSignature {
            // The usual cause: the server is reached under another name than the one it signs for.
            if let expected = challenge.origin, expected != origin.text {
                throw HeliographError(
                    .badSignature,
                    "the server expects logins for \(expected) but this client connected to \(origin.text); "
                        + "use the server's public URL, or ask its operator to set --public-origin")
            }
            throw error
        }
        let profile = Profile(
            server: server, username: account.username, accountID: session.accountId, deviceID: session.deviceId,
            deviceName: deviceName, token: session.token,
            identityPrivateKey: (newIdentity ?? identity).privateKeyBytes)
        // A key file left behind by an earlier profile of this name belongs to another device.
        let keyFile = try KeyStoreFile(profile: profileName, store: store, passphrase: passphrase)
        if keyFile.exists { try FileManager.default.removeItem(at: keyFile.file) }
        // The profile first: saving it makes the private directory the key file goes in.
        try store.save(profile, as: profileName)
        try keyFile.update(create: true) { $0 = keys }
        let client = try HeliographClient(
            profile: profile, profileName: profileName, store: store, passphrase: passphrase, logger: logger)
        guard session.pending == true else { return (client, nil) }
        return (
            client,
            PendingApproval(
                deviceID: session.deviceId,
                code: LinkCode.code(account: session.accountId, device: session.deviceId, agreementKey: agreementKey),
                scannable: LinkCode.scannable(account: session.accountId, device: session.deviceId, agreementKey: agreementKey))
        )
    }

    // MARK: Requests

    /// An authenticated socket for requests, opened on first use and reopened after a drop.
    private func requestConnection() async throws -> HeliographConnection {
        if let open = connection.withLock({ $0 }), !open.isClosed { return open }
        let profile = self.profile
        let fresh = try await HeliographConnection.connect(to: profile.server, logger: logger)
        // Requests only: the inbox is pushed to the socket of `messages()`, not this one.
        do {
            _ = try await fresh.request(
                .authenticate, AuthenticateRequest(token: profile.token, after: nil, receive: false), as: SessionInfo.self)
        } catch {
            // Not kept, so closed now: a device polling while it waits for approval would
            // otherwise leave one socket behind per attempt.
            await fresh.close()
            throw error
        }
        connection.withLock { $0 = fresh }
        return fresh
    }

    /// Calls an authenticated method, reconnecting once if the socket had dropped.
    public func call<Body: Codable & Sendable, Result: Codable & Sendable>(
        _ method: APIMethod, _ body: Body, as result: Result.Type = Result.self
    ) async throws -> Result {
        do {
            return try await requestConnection().request(method, body, as: result)
        } catch is ConnectionClosed {
            return try await requestConnection().request(method, body, as: result)
        }
    }

    /// Sends text to an account; see ``send(payload:to:messageID:)``.
    @discardableResult
    public func send(text: String, to username: String) async throws -> SendResponse {
        let content = MessageContent(text: text, sentAt: Date().millisecondsSince1970)
        return try await send(payload: try WireCodec.encode(content), to: username)
    }

    /// Sends an opaque payload to every device of an account.
    ///
    /// A dropped connection is retried with the same message id, so the message is delivered
    /// once however many attempts it takes. Rate limits and other refusals are thrown.
    @discardableResult
    public func send(payload: Data, to username: String, messageID: MessageID = .random()) async throws -> SendResponse {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await requestConnection().request(
                    .send, SendRequest(messageId: messageID, to: username, payload: payload), as: SendResponse.self)
            } catch let error where attempt < 4 && (error is ConnectionClosed || error is ConnectionFailed) {
                logger.debug("send retry", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                try await Task.sleep(for: .milliseconds(200 * attempt))
            }
        }
    }

    /// The account's devices.
    public func devices() async throws -> [DeviceInfo] {
        try await call(.listDevices, EmptyBody(), as: DeviceListResponse.self).devices
    }

    /// Closes the request socket.
    public func close() async {
        let open = connection.withLock { connection -> HeliographConnection? in
            defer { connection = nil }
            return connection
        }
        await open?.close()
    }

    // MARK: Receiving

    /// Messages for this device, in order, from the first one not yet acknowledged.
    ///
    /// A message is acknowledged (and deleted on the server) when the consumer asks for the next
    /// one, or calls ``acknowledge(_:)``: a consumer that crashes while handling a message gets it
    /// again. Connection losses are retried with backoff; a revoked device or an invalid token
    /// ends the sequence with that error.
    public func messages() -> IncomingMessages { IncomingMessages(client: self) }

    /// Marks everything up to `message` as processed, on the server and in the profile.
    public func acknowledge(_ message: IncomingMessage) async throws {
        try await acknowledge(through: message.sequence)
    }

    /// Changes the profile and saves it.
    func updateProfile(_ change: (inout Profile) -> Void) throws {
        // Changed and saved under the lock, so saves land in the order of the changes.
        try state.withLock { profile in
            change(&profile)
            try store.save(profile, as: profileName)
        }
    }

    func acknowledge(through sequence: Int64) async throws {
        let advanced = try state.withLock { profile -> Bool in
            guard sequence > profile.lastAcknowledged else { return false }
            profile.lastAcknowledged = sequence
            return true
        }
        guard advanced else { return }
        try store.save(profile, as: profileName)
        // Decrypted copies kept for crash recovery are no longer needed once acknowledged.
        if keyStore.exists {
            try keyStore.update { keys in keys.decrypted = keys.decrypted.filter { $0.key > sequence } }
        }
        // If the socket is down the saved position travels with the next `authenticate`.
        try? await receiving.withLock({ $0 })?.acknowledge(sequence)
    }

    /// The socket currently receiving, for acknowledgements.
    let receiving = Mutex<HeliographConnection?>(nil)

    /// Whether an error means retrying cannot help.
    static func isFatal(_ error: HeliographError) -> Bool {
        [.deviceRevoked, .unauthenticated, .tokenExpired].contains(error.code)
    }

    /// The receive loop behind ``messages()``.
    func receiveLoop(into continuation: AsyncThrowingStream<IncomingMessage, any Error>.Continuation) async {
        var lastDelivered = profile.lastAcknowledged
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                let connection = try await HeliographConnection.connect(to: profile.server, logger: logger)
                receiving.withLock { $0 = connection }
                _ = try await connection.request(
                    .authenticate, AuthenticateRequest(token: profile.token, after: profile.lastAcknowledged),
                    as: SessionInfo.self)
                backoff = .milliseconds(100)
                await withTaskCancellationHandler {
                    for await event in connection.events {
                        switch event {
                        case .envelope(let envelope):
                            // After a reconnect the server resends what was not acknowledged yet.
                            guard envelope.seq > lastDelivered else { continue }
                            lastDelivered = envelope.seq
                            continuation.yield(IncomingMessage(envelope))
                        case .error(let error):
                            logger.warning("server error", metadata: ["error": "\(error)"])
                        case .chatUpdate, .readPosition, .chatsChanged:
                            // Chats are followed by `chatEvents()`.
                            break
                        }
                    }
                } onCancel: {
                    Task { await connection.close() }
                }
                receiving.withLock { $0 = nil }
                if let reason = connection.closeReason, Self.isFatal(reason) {
                    continuation.finish(throwing: reason)
                    return
                }
            } catch let error as HeliographError where Self.isFatal(error) {
                continuation.finish(throwing: error)
                return
            } catch {
                logger.debug("receive connection failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
        continuation.finish()
    }
}

/// The messages of one device as an `AsyncSequence`; see ``HeliographClient/messages()``.
public struct IncomingMessages: AsyncSequence, Sendable {
    public typealias Element = IncomingMessage
    let client: HeliographClient

    /// The iterator: acknowledges the previous message when asked for the next.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let client: HeliographClient
        var base: AsyncThrowingStream<IncomingMessage, any Error>.AsyncIterator
        var previous: IncomingMessage?

        public mutating func next() async throws -> IncomingMessage? {
            if let previous { try await client.acknowledge(previous) }
            previous = try await base.next()
            return previous
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        let client = self.client
        let stream = AsyncThrowingStream<IncomingMessage, any Error> { continuation in
            let task = Task { await client.receiveLoop(into: continuation) }
            continuation.onTermination = { _ in task.cancel() }
        }
        return AsyncIterator(client: client, base: stream.makeAsyncIterator(), previous: nil)
    }
}

extension IncomingMessage {
    init(_ envelope: WireEnvelope) {
        self.init(
            sequence: envelope.seq, messageID: envelope.messageId.rawValue, sender: envelope.sender.username,
            senderAccount: envelope.sender.accountId, senderDevice: envelope.sender.deviceId.description,
            serverTime: Date(millisecondsSince1970: envelope.serverTime), payload: envelope.payload,
            content: try? WireCodec.decode(MessageContent.self, from: envelope.payload),
            frankingCommitment: envelope.frankingCommitment, frankingTag: envelope.frankingTag)
    }
}
