import Foundation
import HeliographCore
import HeliographCrypto
import HeliographProtocol
import HeliographStore

/// Who may add a device to an account, and how revocations and identity changes are recorded.
///
/// Every device holds the account's identity key, so a signature by it cannot tell the owner's
/// new phone from a stolen, revoked laptop. What tells them apart is approval: once an account
/// has an active device, a new login only creates a *waiting* device, and an active device must
/// approve it by signing a device list that names it with the key it committed to at login. A
/// revoked device can log in as often as it likes and never gets further than waiting.
///
/// - The first device of a new account is active at once (nobody could approve it).
/// - An account whose devices were all revoked is recovered only with a new identity key, which
///   contacts see as an identity change (`recovery_required` otherwise).
/// - A revocation carries the new signed device list naming the device revoked; it may also
///   rotate the identity key, after which the old key logs nothing in.
struct DeviceLinking: Sendable {
    let storage: any HeliographStorage
    let clock: any WallClock

    /// The purpose strings of identity rotations (bound into what both keys sign).
    static let recoveryPurpose = "recovery"
    static let revocationPurpose = "revocation"

    /// Decides whether a device logging in with a valid identity signature is active at once
    /// (false) or waits for approval (true); performs a recovery's identity change.
    func admit(_ request: LoginRequest, to account: Account, challenge: LoginChallenge) async throws -> Bool {
        if let agreementKey = request.agreementKey {
            // The same rule as every published agreement key: 32 bytes, not of small order.
            do {
                try X25519Point.check(agreementKey, as: "agreementKey")
            } catch {
                throw HeliographError(.invalidKey, error.message)
            }
        }
        let devices = try await storage.devices.devices(of: account.id)
        let now = clock.now()
        if devices.contains(where: \.isActive) {
            guard request.recovery == nil else {
                throw HeliographError(
                    .forbidden,
                    "the account still has active devices; approve the new device from one of them instead of recovering")
            }
            guard request.agreementKey != nil else {
                throw HeliographError(
                    .badRequest,
                    "this account has active devices: send the new device's agreementKey, then approve it from an active device")
            }
            let waiting = devices.filter {
                $0.pending && $0.revokedAt == nil && now.timeIntervalSince($0.createdAt) < Device.approvalWindow
            }
            guard waiting.count < Device.maximumPending else {
                throw HeliographError(
                    .rateLimited,
                    "\(Device.maximumPending) devices already wait for approval; approve or refuse them first",
                    retryAfterSeconds: Int(Device.approvalWindow))
            }
            return true
        }
        // No active device. A device that was ever active (not merely waiting) means this is an
        // account whose devices were all revoked: only a new identity gets back in.
        guard devices.contains(where: { !$0.pending }) else { return false }
        guard let recovery = request.recovery else {
            throw HeliographError(
                .recoveryRequired,
                "every device of this account was revoked; recover it with a new identity key ('helio recover'); contacts will see the change"
            )
        }
        let oldKey = try IdentityPublicKey(rawBytes: account.identityKey)
        let newKey = try IdentityPublicKey(rawBytes: recovery.newIdentityKey)
        try Self.verifyRotation(
            recovery, account: account.id, oldKey: oldKey, newKey: newKey, purpose: Self.recoveryPurpose,
            context: challenge.nonce)
        guard try await storage.accounts.replaceIdentityKey(of: account.id, from: oldKey.rawBytes, to: newKey.rawBytes) else {
            throw HeliographError(.challengeExpired, "the account's identity changed meanwhile; log in again")
        }
        // The old list was signed by the old key: nobody could check it any more.
        try await storage.prekeys.deleteDeviceList(account: account.id)
        return false
    }

    /// `approveDevice`: an active device approves a waiting one of its account by publishing the
    /// signed device list that names it.
    func approve(_ request: ApproveDeviceRequest, by caller: AuthenticatedDevice) async throws -> DeviceInfo {
        guard let device = try await storage.devices.device(id: request.deviceId), device.accountID == caller.accountID else {
            throw HeliographError(.unknownDevice, "your account has no device \(request.deviceId)")
        }
        guard device.pending, device.revokedAt == nil else {
            throw HeliographError(.badRequest, "device \(device.id) does not wait for approval")
        }
        guard clock.now().timeIntervalSince(device.createdAt) < Device.approvalWindow else {
            throw HeliographError(
                .challengeExpired,
                "device \(device.id) waited longer than \(Int(Device.approvalWindow / 60)) minutes; log it in again")
        }
        guard let linkKey = device.linkKey else {
            throw HeliographError(.badRequest, "device \(device.id) committed to no agreement key; log it in again")
        }
        let account = try await requireAccount(caller.accountID)
        let list = try await checkedList(
            request.deviceList, account: account.id, identity: try IdentityPublicKey(rawBytes: account.identityKey),
            expecting: [device.id: linkKey], allowPending: [device.id])
        guard !list.isRevoked(device.id) else {
            throw HeliographError(.badRequest, "the device list names device \(device.id) as revoked")
        }
        try await store(request.deviceList, account: account.id)
        guard let approved = try await storage.devices.approve(device.id) else {
            throw HeliographError(.badRequest, "device \(device.id) no longer waits for approval")
        }
        return DeviceInfo(approved, current: false)
    }

    /// Checks the signed list (and identity rotation) that must come with revoking `device`,
    /// and records them. Called before the device is marked revoked. Returns the other devices
    /// to revoke with it: after an identity rotation, every device but the caller (they hold
    /// the old identity key and must be linked again).
    func recordRevocation(
        of device: Device, _ request: RevokeDeviceRequest, by caller: AuthenticatedDevice
    ) async throws -> [DeviceID] {
        let account = try await requireAccount(caller.accountID)
        let published = try await storage.prekeys.deviceList(account: account.id)
        var identity = try IdentityPublicKey(rawBytes: account.identityKey)
        if let rotation = request.rotation {
            let newKey = try IdentityPublicKey(rawBytes: rotation.newIdentityKey)
            try Self.verifyRotation(
                rotation, account: account.id, oldKey: identity, newKey: newKey, purpose: Self.revocationPurpose,
                context: Data(device.id.description.utf8))
            identity = newKey
        }
        guard let wire = request.deviceList else {
            // A device that never appeared in a signed list (waiting, or an account that never
            // published one) is revoked without one; otherwise the list must record it.
            guard published == nil || device.pending, request.rotation == nil else {
                throw HeliographError(
                    .badRequest, "revoking a listed device needs the account's new signed device list naming it revoked")
            }
            return []
        }
        let list = try await checkedList(wire, account: account.id, identity: identity, expecting: [:], allowPending: [])
        guard list.isRevoked(device.id), list.agreementKey(of: device.id) == nil else {
            throw HeliographError(.badRequest, "the new device list must name device \(device.id) as revoked")
        }
        var alsoRevoked: [DeviceID] = []
        if let rotation = request.rotation {
            guard list.devices.map(\.device) == [caller.deviceID] else {
                throw HeliographError(
                    .badRequest, "after an identity rotation the device list must name the rotating device alone")
            }
            alsoRevoked = try await storage.devices.devices(of: account.id)
                .filter { $0.revokedAt == nil && $0.id != caller.deviceID && $0.id != device.id }.map(\.id)
            guard
                try await storage.accounts.replaceIdentityKey(
                    of: account.id, from: account.identityKey, to: rotation.newIdentityKey)
            else {
                throw HeliographError(.badRequest, "the account's identity key changed meanwhile; try again")
            }
        }
        try await store(wire, account: account.id)
        return alsoRevoked
    }

    /// Verifies a list against `identity` and the server's records: every active entry is an
    /// active device of the account (or one of `allowPending`), entries in `expecting` carry
    /// exactly the given keys, and the version is above the stored one.
    func checkedList(
        _ wire: WireDeviceList, account: AccountID, identity: IdentityPublicKey, expecting: [DeviceID: Data],
        allowPending: Set<DeviceID>
    ) async throws -> SignedDeviceList {
        let list = SignedDeviceList(wire, account: account)
        do {
            try list.verify(identity: identity)
        } catch {
            let code: HeliographError.Code =
                switch error.code {
                case .badSignature: .badSignature
                case .invalidKey: .invalidKey
                default: .badRequest
                }
            throw HeliographError(code, error.message)
        }
        let devices = Dictionary(
            try await storage.devices.devices(of: account).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for entry in list.devices {
            guard let device = devices[entry.device], device.isActive || allowPending.contains(device.id) else {
                throw HeliographError(.unknownDevice, "the device list names \(entry.device), which is not an active device")
            }
            if let linkKey = device.linkKey, linkKey != entry.agreementKey {
                throw HeliographError(
                    .invalidKey, "the device list gives device \(entry.device) another key than the one it logged in with")
            }
        }
        for (device, key) in expecting where list.agreementKey(of: device) != key {
            throw HeliographError(
                .invalidKey, "the device list must name device \(device) with the agreement key it committed to at login")
        }
        if let stored = try await storage.prekeys.deviceList(account: account), UInt64(max(stored.version, 0)) >= list.version {
            throw HeliographError(
                .badRequest,
                "a device list with version \(stored.version) is already published; sign version \(stored.version + 1)")
        }
        return list
    }

    private func store(_ wire: WireDeviceList, account: AccountID) async throws {
        guard wire.version <= UInt64(Int64.max),
            try await storage.prekeys.storeDeviceList(
                account: account, version: Int64(wire.version), list: WireCodec.encode(wire))
        else {
            throw HeliographError(.badRequest, "a device list with version \(wire.version) or higher is already published")
        }
    }

    private func requireAccount(_ id: AccountID) async throws -> Account {
        guard let account = try await storage.accounts.account(id: id) else {
            throw HeliographError(.unknownAccount, "your account no longer exists")
        }
        return account
    }

    private static func verifyRotation(
        _ rotation: IdentityRotation, account: AccountID, oldKey: IdentityPublicKey, newKey: IdentityPublicKey,
        purpose: String, context: Data
    ) throws {
        do {
            try IdentityRotationProof.verify(
                account: account, oldKey: oldKey, newKey: newKey, purpose: purpose, context: context,
                oldSignature: rotation.oldSignature, newSignature: rotation.newSignature)
        } catch {
            throw HeliographError(error.code == .badSignature ? .badSignature : .invalidKey, error.message)
        }
    }
}

extension SignedDeviceList {
    /// The list a wire value claims to be (check it with `verify(identity:)`).
    init(_ wire: WireDeviceList, account: AccountID) {
        self.init(
            account: account, version: wire.version,
            devices: wire.devices.map { Entry(device: $0.deviceId, agreementKey: $0.agreementKey) }, revoked: wire.revoked ?? [],
            signature: wire.signature)
    }
}
