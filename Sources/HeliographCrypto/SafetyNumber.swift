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
