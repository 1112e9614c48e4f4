import Crypto
import Foundation
import HeliographCore

/// The list of an account's devices, signed by its identity key, so a server can neither add
/// a device (it cannot sign), nor quietly hide one (the version only grows and clients keep the
/// highest they saw), nor bring a revoked one back (revocations are listed and never dropped).
public struct SignedDeviceList: Sendable, Equatable, Codable {
    /// One device in the list.
    public struct Entry: Sendable, Equatable, Codable {
        /// The device.
        public var device: DeviceID
        /// Its agreement public key.
        public var agreementKey: Data
        /// Creates the value.
        public init(device: DeviceID, agreementKey: Data) {
            self.device = device
            self.agreementKey = agreementKey
        }
    }

    /// The account.
    public var account: AccountID
    /// Grows with every change; a client never accepts a lower version than one it saw.
    public var version: UInt64
    /// The active devices, ordered by id.
    public var devices: [Entry]
    /// Every device ever revoked, ordered by id. A list only ever adds to it, so a device once
    /// revoked can never be listed again under this identity.
    public var revoked: [DeviceID]
    /// Ed25519 signature by the account identity over ``signedBytes``.
    public var signature: Data

    /// The most devices (active plus revoked) a list may name; bounds the work of checking one.
    public static let maximumEntries = 1_000

    /// A list as received (check it with ``verify(identity:)``).
    public init(account: AccountID, version: UInt64, devices: [Entry], revoked: [DeviceID] = [], signature: Data) {
        self.account = account
        self.version = version
        self.devices = devices
        self.revoked = revoked
        self.signature = signature
    }

    /// Signs a list; entries and revocations are put in canonical (id) order first.
    public static func sign(
        account: AccountID, version: UInt64, devices: [Entry], revoked: [DeviceID] = [], with identity: IdentityKeyPair
    ) throws -> SignedDeviceList {
        var list = SignedDeviceList(
            account: account, version: version, devices: devices.sorted { $0.device.description < $1.device.description },
            revoked: Array(Set(revoked)).sorted { $0.description < $1.description }, signature: Data())
        list.signature = try identity.sign(list.signedBytes)
        return list
    }

    /// Domain label, account, version, entries and revocations in order.
    public var signedBytes: Data {
        var writer = ByteWriter(label: "heliograph-device-list-v2")
        writer.append(account.rawValue)
        writer.append(version)
        writer.append(UInt32(devices.count))
        for entry in devices {
            writer.append(entry.device.rawValue)
            writer.appendField(entry.agreementKey)
        }
        writer.append(UInt32(revoked.count))
        for device in revoked { writer.append(device.rawValue) }
        return writer.bytes
    }

    /// Checks the shape and the signature; the error names the account.
    ///
    /// Shape first: a list must be canonical (sorted, no device twice, none both active and
    /// revoked, 32-byte keys, version at least 1), so one set of devices has exactly one signed
    /// form and two lists with the same version can be compared byte for byte.
    public func verify(identity: IdentityPublicKey) throws(SessionError) {
        guard version >= 1 else { throw SessionError(.malformed, "a device list version starts at 1") }
        guard devices.count + revoked.count <= Self.maximumEntries else {
            throw SessionError(.malformed, "a device list names at most \(Self.maximumEntries) devices")
        }
        let ids = devices.map(\.device.description)
        guard ids == ids.sorted(), Set(ids).count == ids.count else {
            throw SessionError(.malformed, "the devices of a list must be sorted by id, each once")
        }
        let gone = revoked.map(\.description)
        guard gone == gone.sorted(), Set(gone).count == gone.count else {
            throw SessionError(.malformed, "the revoked devices of a list must be sorted by id, each once")
        }
        guard Set(ids).isDisjoint(with: gone) else {
            throw SessionError(.malformed, "a device list names a device as both active and revoked")
        }
        guard devices.allSatisfy({ $0.agreementKey.count == 32 }) else {
            throw SessionError(.invalidKey, "every agreement key in a device list must be 32 bytes")
        }
        guard identity.isValidSignature(signature, for: signedBytes) else {
            throw SessionError(.badSignature, "the device list of account \(account) is not signed by its identity key")
        }
    }

    /// The agreement key this list vouches for `device`, if it lists it as active.
    public func agreementKey(of device: DeviceID) -> Data? {
        devices.first { $0.device == device }?.agreementKey
    }

    /// Whether the list names `device` as revoked.
    public func isRevoked(_ device: DeviceID) -> Bool { revoked.contains(device) }
}

/// What changed between two device lists of one account, for notices a person sees.
public struct DeviceListChange: Sendable, Equatable {
    /// Devices listed now and not before (or with a new agreement key).
    public var added: [DeviceID]
    /// Devices listed before and not now.
    public var removed: [DeviceID]
}

/// The rule a client applies to every device list a server hands it, given the highest list of
/// that account it has already accepted. Pure, so it is table-tested without a server.
public enum DeviceListPolicy {
    /// The verdict on a received list.
    public enum Verdict: Sendable, Equatable {
        /// The received list is the one already held (same version, same bytes).
        case unchanged
        /// A newer list that keeps every earlier revocation: adopt it.
        case newer(DeviceListChange)
        /// Refused: the reason says what the server tried.
        case refused(SessionError)
    }

    /// Judges `received` (already signature-checked) against `known`, the highest list accepted
    /// before for the same account and identity (nil for a first meeting).
    ///
    /// 1. A missing list for an account whose list was seen before is refused: the server would
    ///    otherwise make the client fall back to unlisted bundles.
    /// 2. A lower version is refused (a rollback hides a later change, such as a revocation).
    /// 3. The same version with other contents is refused (the server shows different lists).
    /// 4. A newer list must keep every revocation of the known list and must not list a device
    ///    the known list revoked: a revoked device never comes back under this identity.
    public static func judge(_ received: SignedDeviceList?, known: SignedDeviceList?) -> Verdict {
        guard let received else {
            guard let known else { return .unchanged }
            return .refused(
                SessionError(
                    .staleDeviceList,
                    "the server left out the device list of account \(known.account) (version \(known.version) was seen before)"))
        }
        guard let known else {
            return .newer(DeviceListChange(added: received.devices.map(\.device), removed: []))
        }
        guard received.account == known.account else {
            return .refused(SessionError(.staleDeviceList, "the device list names another account"))
        }
        if received.version < known.version {
            return .refused(
                SessionError(
                    .staleDeviceList,
                    "the server offered version \(received.version) of a device list after version \(known.version)"))
        }
        if received.version == known.version {
            return received == known
                ? .unchanged
                : .refused(
                    SessionError(
                        .staleDeviceList, "the server offered two different device lists with version \(known.version)"))
        }
        let revokedNow = Set(received.revoked)
        if let dropped = known.revoked.first(where: { !revokedNow.contains($0) }) {
            return .refused(SessionError(.staleDeviceList, "a newer device list forgets that device \(dropped) was revoked"))
        }
        if let back = received.devices.first(where: { known.isRevoked($0.device) }) {
            return .refused(SessionError(.unlistedDevice, "a newer device list brings back revoked device \(back.device)"))
        }
        let before = Dictionary(known.devices.map { ($0.device, $0.agreementKey) }, uniquingKeysWith: { first, _ in first })
        let now = Set(received.devices.map(\.device))
        return .newer(
            DeviceListChange(
                added: received.devices.filter { before[$0.device] != $0.agreementKey }.map(\.device),
                removed: known.devices.map(\.device).filter { !now.contains($0) }))
    }
}
