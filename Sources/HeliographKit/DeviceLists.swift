import Foundation
import HeliographCore
import HeliographCrypto
import HeliographProtocol

/// A session with one device of one account, with the keys it was made with.
typealias PeerSession = DeviceKeyState.PeerSession

/// An account's devices as this device trusts them: from the account's signed device list,
/// checked against the highest list seen before, never from the server's word alone.
struct TrustedDevices: Sendable {
    /// The account as the server described it.
    var info: AccountInfo
    /// Its identity key.
    var identity: IdentityPublicKey
    /// The accepted list (nil only for an account that never published one).
    var list: SignedDeviceList?
    /// Key changes noticed while checking.
    var notices: [KeyNotice]

    /// The devices to encrypt for: listed ones the server also reports active, except `excluded`.
    func targets(excluding excluded: DeviceID?) -> [SignedDeviceList.Entry] {
        let active = Set(info.devices)
        return (list?.devices ?? []).filter { $0.device != excluded && active.contains($0.device) }
    }
}

extension HeliographClient {
    /// Looks an account up and checks its device list against what this device accepted before
    /// (see `DeviceListPolicy`), recording the accepted list and the identity (trust on first
    /// use; a change is a notice). Throws when the server rolls a list back, shows two lists
    /// with one version, or leaves out a list seen before.
    func trustedDevices(of username: String) async throws -> TrustedDevices {
        let info = try await call(.lookupAccount, LookupAccountRequest(username: username), as: AccountInfo.self)
        return try trustedDevices(info)
    }

    /// ``trustedDevices(of:)`` for an account description already fetched.
    func trustedDevices(_ info: AccountInfo) throws -> TrustedDevices {
        let profile = self.profile
        let identity = try IdentityPublicKey(rawBytes: info.identityKey)
        // The signature first, outside the lock.
        let received: SignedDeviceList? = try info.deviceList.map { wire in
            let list = SignedDeviceList(wire, account: info.accountId)
            do throws(SessionError) {
                try list.verify(identity: identity)
            } catch {
                throw HeliographError(.badSignature, "the device list of \(info.username) was refused: \(error.message)")
            }
            return list
        }
        // The common case, on every send: nothing new. A read, so the key file is not rewritten.
        if keyStore.exists, let contact = try keyStore.read().contacts[info.accountId.description],
            contact.identityKey == identity.rawBytes, contact.username == info.username,
            case .unchanged = DeviceListPolicy.judge(received, known: contact.deviceList)
        {
            return TrustedDevices(info: info, identity: identity, list: contact.deviceList, notices: [])
        }
        return try keyStore.update(create: true) { state -> TrustedDevices in
            var notices = Self.record(
                identity: identity, account: info.accountId, username: info.username, in: &state,
                isOwnAccount: info.accountId == profile.accountID)
            let key = info.accountId.description
            let known = state.contacts[key]?.deviceList
            switch DeviceListPolicy.judge(received, known: known) {
            case .unchanged:
                return TrustedDevices(info: info, identity: identity, list: known, notices: notices)
            case .refused(let error):
                throw HeliographError(
                    .badSignature,
                    "refused what the server says about \(info.username)'s devices: \(error.message); nothing was sent")
            case .newer(let change):
                guard let list = received else {
                    return TrustedDevices(info: info, identity: identity, list: known, notices: notices)
                }
                state.contacts[key]?.deviceList = list
                // A first meeting lists every device as added; that is not news to a person.
                if known != nil {
                    for device in change.added where !(info.accountId == profile.accountID && device == profile.deviceID) {
                        notices.append(.newDevice(username: info.username, device: device))
                    }
                }
                for device in change.removed {
                    notices.append(.deviceRemoved(username: info.username, device: device))
                    // Sessions with a device that left the list are never used again.
                    let peer = PeerSession.key(info.accountId, device)
                    state.peerSessions?[peer] = nil
                    state.archivedPeerSessions?[peer] = nil
                    state.contacts[key]?.devices[device.description] = nil
                }
                return TrustedDevices(info: info, identity: identity, list: list, notices: notices)
            }
        }
    }

    /// Signs the next version of this account's device list, for the caller to send (with a
    /// publication, an approval or a revocation). It is made from the latest list this device
    /// accepted, never from the server's idea of which devices exist, and claims nobody's
    /// prekeys: `change` edits the entries and revocations.
    ///
    /// A device named revoked stays revoked: `change` may add revocations, never remove them,
    /// and an entry for a revoked device is refused.
    func nextOwnDeviceList(
        signingWith identity: IdentityKeyPair? = nil,
        _ change: (inout [SignedDeviceList.Entry], inout Set<DeviceID>) throws -> Void
    ) async throws -> WireDeviceList {
        let profile = self.profile
        let own = try await trustedDevices(of: profile.username)
        var entries = own.list?.devices ?? []
        var revoked = Set(own.list?.revoked ?? [])
        let revokedBefore = revoked
        try change(&entries, &revoked)
        guard revoked.isSuperset(of: revokedBefore) else {
            throw HeliographError(.badRequest, "a device once revoked stays revoked")
        }
        if let back = entries.first(where: { revoked.contains($0.device) }) {
            throw HeliographError(.badRequest, "device \(back.device) was revoked and cannot be listed again")
        }
        // A rotated identity starts its own history of lists, but versions keep growing on the server.
        let list = try SignedDeviceList.sign(
            account: profile.accountID, version: (own.list?.version ?? 0) + 1, devices: entries,
            revoked: Array(revoked), with: try identity ?? self.identityKeyPair)
        return WireDeviceList(
            version: list.version, devices: list.devices.map { .init(deviceId: $0.device, agreementKey: $0.agreementKey) },
            revoked: list.revoked.isEmpty ? nil : list.revoked, signature: list.signature)
    }

    /// Makes sure this device is in its account's signed list, publishing a new version with it
    /// added when it is not (the first device of an account, or one that recovered it). A
    /// device that an earlier list names revoked is refused: it must log in again.
    func ensureListed() async throws {
        let profile = self.profile
        let agreementKey = try AgreementKeyPair(privateKeyBytes: try keyStore.read().agreementKey).publicKeyBytes
        let own = try await trustedDevices(of: profile.username)
        if own.list?.isRevoked(profile.deviceID) == true {
            throw HeliographError(.deviceRevoked, "this device is revoked in the account's signed device list")
        }
        if let listed = own.list?.agreementKey(of: profile.deviceID) {
            guard listed == agreementKey else {
                throw HeliographError(.badSignature, "the account's device list gives this device another key")
            }
            return
        }
        let wire = try await nextOwnDeviceList { entries, _ in
            entries.append(.init(device: profile.deviceID, agreementKey: agreementKey))
        }
        _ = try await call(.publishKeys, PublishKeysRequest(deviceList: wire), as: KeyStatus.self)
        _ = try await trustedDevices(of: profile.username)
    }

    /// Re-signs the account's device list as it is now: after a change made elsewhere.
    public func publishDeviceList() async throws {
        try await ensureListed()
    }

    // MARK: Linking, revoking, recovering

    /// The devices of this account that wait for approval, with the codes they show.
    public func waitingDevices() async throws -> [(device: DeviceInfo, code: String)] {
        let profile = self.profile
        return try await devices().compactMap { device in
            guard device.pending == true, device.revokedAt == nil, let key = device.linkKey else { return nil }
            return (device, LinkCode.code(account: profile.accountID, device: device.deviceId, agreementKey: key))
        }
    }

    /// Approves the waiting device that shows `code` (or the scannable string): signs a new
    /// device list naming it with the key it committed to, and sends it with the approval.
    ///
    /// The code is recomputed from what the server reports; a server that swapped the waiting
    /// device's key produces another code, and nothing is approved.
    @discardableResult
    public func approveDevice(code: String) async throws -> DeviceInfo {
        let profile = self.profile
        let candidates = try await devices().filter { $0.pending == true && $0.revokedAt == nil && $0.linkKey != nil }
        guard
            let device = candidates.first(where: {
                LinkCode.matches(code, account: profile.accountID, device: $0.deviceId, agreementKey: $0.linkKey!)
            }), let key = device.linkKey
        else {
            throw HeliographError(
                .unknownDevice,
                candidates.isEmpty
                    ? "no device of this account waits for approval"
                    : "no waiting device shows the code \(code); check it on the new device's screen")
        }
        let ownKey = try AgreementKeyPair(privateKeyBytes: try keyStore.update(create: true) { $0.agreementKey })
            .publicKeyBytes
        let wire = try await nextOwnDeviceList { entries, revoked in
            guard !revoked.contains(device.deviceId) else {
                throw HeliographError(.badRequest, "device \(device.deviceId) was revoked before")
            }
            // An account that never published a list (no end-to-end keys yet) starts one here.
            if !entries.contains(where: { $0.device == profile.deviceID }) {
                entries.append(.init(device: profile.deviceID, agreementKey: ownKey))
            }
            entries.append(.init(device: device.deviceId, agreementKey: key))
        }
        let approved = try await call(
            .approveDevice, ApproveDeviceRequest(deviceId: device.deviceId, deviceList: wire), as: DeviceInfo.self)
        _ = try await trustedDevices(of: profile.username)
        return approved
    }

    /// Revokes one of the account's devices (this one included): the new signed device list
    /// names it revoked, so contacts stop encrypting to it and it can never be listed again.
    ///
    /// With `rotateIdentity`, the account also gets a new identity key, sent with the
    /// revocation; the old key then logs nothing in. Contacts see an identity change. Every
    /// other device of the account holds the old key, so the server signs them all out: link
    /// them again (`helio login`, then approve) once the stolen device is gone.
    @discardableResult
    public func revokeDevice(_ deviceID: DeviceID, rotateIdentity: Bool = false) async throws -> DeviceInfo {
        let profile = self.profile
        let (request, newIdentity) = try await signedRevocation(of: deviceID, rotateIdentity: rotateIdentity)
        let revoked = try await call(.revokeDevice, request, as: DeviceInfo.self)
        if let newIdentity {
            try adoptIdentity(newIdentity)
            // Every published key was signed by the old identity: sign and publish them again.
            try await prepareEncryption(forceRepublish: true)
        }
        if deviceID != profile.deviceID { _ = try? await trustedDevices(of: profile.username) }
        return revoked
    }

    /// The `revokeDevice` request for `deviceID`, with the new signed device list naming it
    /// revoked (and, with `rotateIdentity`, the rotation and the new key pair to adopt once the
    /// server accepted it). ``revokeDevice(_:rotateIdentity:)`` sends it.
    public func signedRevocation(
        of deviceID: DeviceID, rotateIdentity: Bool = false
    ) async throws -> (request: RevokeDeviceRequest, newIdentity: IdentityKeyPair?) {
        let profile = self.profile
        let target = try await devices().first { $0.deviceId == deviceID }
        var rotation: IdentityRotation?
        var newIdentity: IdentityKeyPair?
        if rotateIdentity {
            guard deviceID != profile.deviceID else {
                throw HeliographError(.badRequest, "rotate the identity from a device that stays, not from the one revoked")
            }
            let fresh = IdentityKeyPair()
            let signatures = try IdentityRotationProof.sign(
                account: profile.accountID, old: try identityKeyPair, new: fresh, purpose: "revocation",
                context: Data(deviceID.description.utf8))
            rotation = IdentityRotation(
                newIdentityKey: fresh.publicKey.rawBytes, oldSignature: signatures.old, newSignature: signatures.new)
            newIdentity = fresh
        }
        var request = RevokeDeviceRequest(deviceId: deviceID, rotation: rotation)
        // A device still waiting for approval was never listed: no list to change.
        if target?.pending != true {
            let ownKey = try AgreementKeyPair(privateKeyBytes: try keyStore.update(create: true) { $0.agreementKey })
                .publicKeyBytes
            request.deviceList = try await nextOwnDeviceList(signingWith: newIdentity) { entries, revoked in
                entries.removeAll { $0.device == deviceID }
                revoked.insert(deviceID)
                if newIdentity != nil {
                    // The other devices hold the old identity key: the server signs them out
                    // too, and the new list vouches for this device alone until they relink.
                    for entry in entries where entry.device != profile.deviceID { revoked.insert(entry.device) }
                    entries = [.init(device: profile.deviceID, agreementKey: ownKey)]
                }
            }
        }
        return (request, newIdentity)
    }

    /// Switches this profile to a new identity key and forgets the old list of its own account
    /// (a new identity starts its own list).
    func adoptIdentity(_ identity: IdentityKeyPair) throws {
        try updateProfile { $0.identityPrivateKey = identity.privateKeyBytes }
        try keyStore.update { state in
            let own = self.profile.accountID.description
            state.contacts[own]?.identityKey = identity.publicKey.rawBytes
            state.contacts[own]?.deviceList = nil
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
