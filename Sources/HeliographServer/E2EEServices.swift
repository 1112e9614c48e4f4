import Foundation
import HeliographCore
import HeliographCrypto
import HeliographProtocol
import HeliographStore

/// Publishing and handing out prekey bundles.
///
/// The server checks every signature on upload so that nonsense is refused early, but clients
/// check them again: a server that lies about keys must be caught by clients, not trusted.
public struct KeyService: Sendable {
    let storage: any HeliographStorage
    let accounts: AccountService
    let clock: any WallClock
    let fetchLimits: KeyFetchLimits

    /// Upload more one-time prekeys when fewer than this many are left.
    static let refillBelow = 20
    /// The most one-time prekeys of each kind kept per device.
    static let maximumOneTimePrekeys = 200

    /// `publishKeys`: stores the caller's keys after checking their signatures.
    public func publish(_ request: PublishKeysRequest, by caller: AuthenticatedDevice) async throws -> KeyStatus {
        guard let account = try await storage.accounts.account(id: caller.accountID) else {
            throw HeliographError(.unknownAccount, "your account no longer exists")
        }
        let identity = try IdentityPublicKey(rawBytes: account.identityKey)
        func checked(_ prekey: WirePrekey, kinds: Set<PrekeyKind>) throws -> StoredPrekey {
            guard let kind = PrekeyKind(rawValue: UInt8(clamping: prekey.kind)), kinds.contains(kind) else {
                throw HeliographError(
                    .invalidKey, "prekey \(prekey.id) has kind \(prekey.kind); expected \(kinds.map(\.rawValue).sorted())")
            }
            do {
                try SignedPrekey(kind: kind, id: prekey.id, publicKey: prekey.publicKey, signature: prekey.signature)
                    .verify(account: caller.accountID, device: caller.deviceID, identity: identity)
            } catch {
                throw HeliographError(error.code == .badSignature ? .badSignature : .invalidKey, error.message)
            }
            return StoredPrekey(kind: prekey.kind, id: Int64(prekey.id), publicKey: prekey.publicKey, signature: prekey.signature)
        }

        let existing = try await storage.prekeys.keys(for: caller.deviceID)
        let wantsLongLived =
            request.agreementKey != nil || request.signedPrekey != nil || request.lastResortPrekey != nil
            || request.agreementSignature != nil
        // A request with only a device list may come before the device's own keys.
        if wantsLongLived || (existing == nil && !(request.oneTimePrekeys ?? []).isEmpty) {
            guard let agreementKey = request.agreementKey ?? existing?.agreementKey,
                let agreementSignature = request.agreementSignature ?? existing?.agreementSignature,
                let signed = try request.signedPrekey.map({ try checked($0, kinds: [.signedPrekey]) }) ?? existing?.signedPrekey,
                let lastResort = try request.lastResortPrekey.map({ try checked($0, kinds: [.lastResortKEMPrekey]) })
                    ?? existing?.lastResortPrekey
            else {
                throw HeliographError(
                    .badRequest, "the first upload must carry agreementKey, agreementSignature, signedPrekey and lastResortPrekey"
                )
            }
            do {
                try DeviceAgreementKey(publicKey: agreementKey, signature: agreementSignature)
                    .verify(account: caller.accountID, device: caller.deviceID, identity: identity)
            } catch {
                throw HeliographError(error.code == .badSignature ? .badSignature : .invalidKey, error.message)
            }
            if let committed = try await storage.devices.device(id: caller.deviceID)?.linkKey, committed != agreementKey {
                // The key an active device approved is the only one this device may use.
                throw HeliographError(
                    .badRequest, "this device committed to another agreement key when it logged in; log in as a new device")
            }
            if let existing, existing.agreementKey != agreementKey {
                // A device's agreement key is its identity towards others: changing it would
                // silently break every session, so a new key means a new device (log in again).
                throw HeliographError(
                    .badRequest, "this device already published a different agreement key; log in as a new device")
            }
            try await storage.prekeys.setKeys(
                DeviceKeyRecord(
                    deviceID: caller.deviceID, accountID: caller.accountID, agreementKey: agreementKey,
                    agreementSignature: agreementSignature, signedPrekey: signed, lastResortPrekey: lastResort))
        }
        if request.replaceOneTimePrekeys == true { try await storage.prekeys.deleteOneTimePrekeys(for: caller.deviceID) }
        if let oneTime = request.oneTimePrekeys, !oneTime.isEmpty {
            let stored = try oneTime.map { try checked($0, kinds: [.oneTimePrekey, .kemPrekey]) }
            let counts = try await storage.prekeys.oneTimeCounts(for: caller.deviceID)
            let adding = (
                stored.filter { $0.kind == StoredPrekey.oneTimeKind }.count,
                stored.filter { $0.kind == StoredPrekey.kemKind }.count
            )
            guard counts.x25519 + adding.0 <= Self.maximumOneTimePrekeys, counts.kem + adding.1 <= Self.maximumOneTimePrekeys
            else {
                throw HeliographError(
                    .badRequest,
                    "at most \(Self.maximumOneTimePrekeys) one-time prekeys of each kind are kept; the server holds \(counts.x25519) and \(counts.kem)"
                )
            }
            try await storage.prekeys.addOneTimePrekeys(stored, for: caller.deviceID)
        }
        if let list = request.deviceList {
            // The same checks as an approval or revocation: signed, canonical, naming only
            // active devices of the account with the keys they committed to, and newer.
            let linking = DeviceLinking(storage: storage, clock: clock)
            _ = try await linking.checkedList(
                list, account: caller.accountID, identity: identity, expecting: [:], allowPending: [])
            guard list.version <= UInt64(Int64.max),
                try await storage.prekeys.storeDeviceList(
                    account: caller.accountID, version: Int64(list.version), list: try WireCodec.encode(list))
            else {
                throw HeliographError(.badRequest, "a device list with version \(list.version) or higher is already published")
            }
        }
        return try await status(for: caller)
    }

    /// `keyStatus`: what the server holds for the calling device.
    public func status(for caller: AuthenticatedDevice) async throws -> KeyStatus {
        let counts = try await storage.prekeys.oneTimeCounts(for: caller.deviceID)
        let published = try await storage.prekeys.keys(for: caller.deviceID) != nil
        let version = try await storage.prekeys.deviceList(account: caller.accountID)?.version ?? 0
        return KeyStatus(
            published: published, oneTimePrekeys: counts.x25519, kemPrekeys: counts.kem, refillBelow: Self.refillBelow,
            maximum: Self.maximumOneTimePrekeys, deviceListVersion: UInt64(version))
    }

    /// `fetchKeys`: a bundle per active device of an account, each taking one-time prekeys.
    public func fetch(_ request: FetchKeysRequest, by caller: AuthenticatedDevice) async throws -> FetchKeysResponse {
        try fetchLimits.fetch(by: caller.accountID)
        let account = try await accounts.requireAccount(named: request.username)
        var active = try await storage.devices.devices(of: account.id).filter(\.isActive).map(\.id)
        if account.id == caller.accountID { active.removeAll { $0 == caller.deviceID } }
        if let wanted = request.devices {
            let unknown = Set(wanted).subtracting(active)
            guard unknown.isEmpty else {
                throw HeliographError(
                    .unknownDevice,
                    "\(account.username) has no active device \(unknown.map(\.description).sorted().joined(separator: ", "))")
            }
            active = active.filter(Set(wanted).contains)
        }
        // Every bundle takes a device's one-time prekeys: without this, anyone could drain them.
        try fetchLimits.claim(from: active, of: account.username)
        var bundles: [WirePrekeyBundle] = []
        var withoutKeys: [DeviceID] = []
        for device in active {
            guard let claimed = try await storage.prekeys.claim(for: device) else {
                withoutKeys.append(device)
                continue
            }
            bundles.append(
                WirePrekeyBundle(
                    deviceId: device, agreementKey: claimed.keys.agreementKey,
                    agreementSignature: claimed.keys.agreementSignature,
                    signedPrekey: WirePrekey(claimed.keys.signedPrekey),
                    oneTimePrekey: claimed.oneTimePrekey.map(WirePrekey.init),
                    // No one-time ML-KEM key left: the last-resort key, so a send never fails for it.
                    kemPrekey: WirePrekey(claimed.kemPrekey ?? claimed.keys.lastResortPrekey)))
        }
        let list = try await storage.prekeys.deviceList(account: account.id).flatMap {
            try? WireCodec.decode(WireDeviceList.self, from: $0.list)
        }
        return FetchKeysResponse(
            accountId: account.id, username: account.username.display, identityKey: account.identityKey, bundles: bundles,
            withoutKeys: withoutKeys, deviceList: list)
    }
}

extension WirePrekey {
    init(_ stored: StoredPrekey) {
        self.init(kind: stored.kind, id: UInt32(clamping: stored.id), publicKey: stored.publicKey, signature: stored.signature)
    }
}

/// Checks reports of end-to-end encrypted messages (message franking). The moderation layer
/// calls ``verify(_:)``; the `verifyReport` method exposes it to the reporting device.
public struct ReportVerificationService: Sendable {
    let storage: any HeliographStorage
    let keyring: FrankingKeyring

    /// The outcome of a check.
    public enum Outcome: Sendable, Equatable {
        /// This exact body was sent by the named sender to the named device at the named time.
        case verified(sender: Account)
        /// The report does not prove anything; the reason says which check failed.
        case rejected(String)
    }

    /// Recomputes the commitment from body and franking key, then the server's tag over it and
    /// the claimed metadata; both must match.
    public func verify(_ report: FrankedReportRequest) async throws -> Outcome {
        guard let sender = try await storage.accounts.account(id: report.senderAccountId) else {
            return .rejected("the sender account does not exist")
        }
        guard let recipient = try await storage.devices.device(id: report.recipientDeviceId) else {
            return .rejected("the recipient device does not exist")
        }
        guard report.frankingKey.count == Franking.size else {
            return .rejected("the franking key must be \(Franking.size) bytes")
        }
        let commitment = Franking.commitment(
            frankingKey: report.frankingKey, messageID: report.messageId.rawValue, sender: report.senderAccountId,
            body: report.body)
        let context = Franking.Context(
            commitment: commitment, senderAccount: report.senderAccountId, senderDevice: report.senderDeviceId,
            recipientAccount: recipient.accountID, recipientDevice: recipient.id, serverTime: report.serverTime,
            messageID: report.messageId.rawValue)
        let tag: Franking.ServerTag
        do {
            tag = try Franking.ServerTag(bytes: report.frankingTag)
        } catch {
            return .rejected(error.message)
        }
        let key: Franking.ServerKey
        switch try await keyring.verificationKey(id: tag.keyID) {
        case .key(let found):
            key = found
        case .expired(let retiredAt):
            return .rejected(
                "the franking tag was made with key \(tag.keyID), replaced on \(retiredAt.formatted(.iso8601)) and no longer kept (franking keys are kept \(keyring.retention.wholeDays) days after they are replaced)"
            )
        case .unknown:
            return .rejected(
                "the franking tag names key \(tag.keyID), which this server does not hold (franking keys are kept \(keyring.retention.wholeDays) days after they are replaced)"
            )
        }
        guard Franking.isValidTag(tag, for: context, key: key) else {
            // One answer for every mismatch: the check does not reveal which field was altered.
            return .rejected("the franking tag does not match this message, sender, recipient and time")
        }
        return .verified(sender: sender)
    }

    /// `verifyReport`: the reporting device checks one of its own messages.
    public func verify(_ report: FrankedReportRequest, by caller: AuthenticatedDevice) async throws -> FrankedReportResponse {
        guard report.recipientDeviceId == caller.deviceID else {
            throw HeliographError(.forbidden, "a report can only be verified by the device that received the message")
        }
        switch try await verify(report) {
        case .verified(let sender):
            return FrankedReportResponse(verified: true, reason: nil, senderUsername: sender.username.display)
        case .rejected(let reason):
            return FrankedReportResponse(verified: false, reason: reason, senderUsername: nil)
        }
    }
}
