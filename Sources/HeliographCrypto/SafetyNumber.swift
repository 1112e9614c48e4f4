import Crypto
import Foundation
import HeliographCore

/// A number two people compare (read aloud, or by scanning) to be sure no one sits between
/// them: it changes when either identity key changes.
///
/// Each side's half is SHA-512 iterated 5,200 times over (version, identity key, account id),
/// the iteration making it costly to search for a colliding key; the first 30 bytes become six
/// groups of five digits. The two halves are ordered so both people see the same 60 digits.
public struct SafetyNumber: Sendable, Equatable, CustomStringConvertible {
    /// 60 digits.
    public let digits: String
    /// A compact form for QR codes: `heliograph-safety:1:` and both fingerprints in base64url.
    public let scannable: String

    static let iterations = 5_200

    /// The safety number of two accounts.
    public init(
        _ first: (account: AccountID, identity: IdentityPublicKey), _ second: (account: AccountID, identity: IdentityPublicKey)
    ) {
        let halves = [Self.fingerprint(first.account, first.identity), Self.fingerprint(second.account, second.identity)]
            .sorted { $0.digits < $1.digits }
        digits = halves.map(\.digits).joined()
        scannable = "heliograph-safety:1:" + halves.map { $0.bytes.base64URLEncodedString() }.joined(separator: ".")
    }

    /// Twelve groups of five digits, as shown to people.
    public var description: String {
        stride(from: 0, to: digits.count, by: 5).map { offset in
            let start = digits.index(digits.startIndex, offsetBy: offset)
            return String(digits[start..<digits.index(start, offsetBy: 5)])
        }.joined(separator: " ")
    }

    private static func fingerprint(_ account: AccountID, _ identity: IdentityPublicKey) -> (digits: String, bytes: Data) {
        var input = Data([0, 1])
        input.append(identity.rawBytes)
        withUnsafeBytes(of: account.rawValue.uuid) { input.append(contentsOf: $0) }
        var hash = Data(SHA512.hash(data: input))
        for _ in 1..<iterations {
            hash = Data(SHA512.hash(data: hash + identity.rawBytes))
        }
        let bytes = hash.prefix(30)
        let digits = stride(from: 0, to: 30, by: 5).map { offset -> String in
            let chunk = bytes[bytes.startIndex + offset..<bytes.startIndex + offset + 5].reduce(UInt64(0)) {
                $0 << 8 | UInt64($1)
            }
            let text = String(chunk % 100_000)
            return String(repeating: "0", count: 5 - text.count) + text
        }.joined()
        return (digits, Data(bytes))
    }
}

/// The list of an account's devices, signed by its identity key, so a server can neither add
/// a device (it cannot sign) nor quietly hide one (the version only grows).
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
    /// The devices, ordered by id.
    public var devices: [Entry]
    /// Ed25519 signature by the account identity over ``signedBytes``.
    public var signature: Data

    /// A list as received (check it with ``verify(identity:)``).
    public init(account: AccountID, version: UInt64, devices: [Entry], signature: Data) {
        self.account = account
        self.version = version
        self.devices = devices
        self.signature = signature
    }

    /// Signs a list.
    public static func sign(
        account: AccountID, version: UInt64, devices: [Entry], with identity: IdentityKeyPair
    ) throws
        -> SignedDeviceList
    {
        var list = SignedDeviceList(
            account: account, version: version, devices: devices.sorted { $0.device.description < $1.device.description },
            signature: Data())
        list.signature = try identity.sign(list.signedBytes)
        return list
    }

    /// Domain label, account, version and entries in order.
    public var signedBytes: Data {
        var writer = ByteWriter(label: "heliograph-device-list-v1")
        writer.append(account.rawValue)
        writer.append(version)
        writer.append(UInt32(devices.count))
        for entry in devices {
            writer.append(entry.device.rawValue)
            writer.appendField(entry.agreementKey)
        }
        return writer.bytes
    }

    /// Checks the signature; the error names the account.
    public func verify(identity: IdentityPublicKey) throws(SessionError) {
        guard identity.isValidSignature(signature, for: signedBytes) else {
            throw SessionError(.badSignature, "the device list of account \(account) is not signed by its identity key")
        }
    }
}
