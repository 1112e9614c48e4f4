import Foundation

/// A random UUID identifier with a role (account, device): the shared text form, parsing
/// and coding, so each role is a distinct type with no repeated code.
public protocol UUIDIdentifier: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The underlying UUID.
    var rawValue: UUID { get }
    /// Wraps an existing UUID.
    init(_ rawValue: UUID)
}

extension UUIDIdentifier {
    /// Parses the canonical textual form; `nil` when it is not a UUID.
    public init?(_ string: String) {
        guard let uuid = UUID(uuidString: string) else { return nil }
        self.init(uuid)
    }

    /// A fresh random identifier.
    public static func random() -> Self { Self(UUID()) }

    /// Lower-case UUID text, as stored and sent.
    public var description: String { rawValue.uuidString.lowercased() }

    public init(from decoder: any Decoder) throws {
        let string = try decoder.singleValueContainer().decode(String.self)
        guard let id = Self(string) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "not an identifier: \(string)"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// The stable identifier of an account. Random, so that ids reveal neither order nor count.
public struct AccountID: UUIDIdentifier {
    public let rawValue: UUID
    public init(_ rawValue: UUID) { self.rawValue = rawValue }
}

/// The stable identifier of one device (one logged-in installation) of an account.
public struct DeviceID: UUIDIdentifier {
    public let rawValue: UUID
    public init(_ rawValue: UUID) { self.rawValue = rawValue }
}

/// A client-chosen message identifier: the idempotency key of a send.
///
/// A retried send with the same id from the same device is stored and delivered once.
public struct MessageID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The longest id accepted, in bytes.
    public static let maximumLength = 64

    /// The validated text.
    public let rawValue: String

    /// Validates `rawValue`: 1–64 characters of `[A-Za-z0-9_-]`.
    public init(validating rawValue: String) throws(HeliographError) {
        guard !rawValue.isEmpty, rawValue.utf8.count <= Self.maximumLength,
            rawValue.utf8.allSatisfy({ $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") })
        else {
            throw HeliographError(
                .invalidMessageID, "message id must be 1-\(Self.maximumLength) characters of A-Z, a-z, 0-9, '_' or '-'")
        }
        self.rawValue = rawValue
    }

    /// A fresh random id, as clients are expected to choose.
    public static func random() -> MessageID {
        // A UUID's text is always valid.
        try! MessageID(validating: UUID().uuidString.lowercased())
    }

    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        let string = try decoder.singleValueContainer().decode(String.self)
        do {
            self = try MessageID(validating: string)
        } catch {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: error.message, underlyingError: error))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

extension UInt8 {
    /// Whether the byte is an ASCII letter or digit.
    var isASCIIAlphanumeric: Bool {
        (self >= 0x30 && self <= 0x39) || (self >= 0x41 && self <= 0x5A) || (self >= 0x61 && self <= 0x7A)
    }

    /// Whether the byte is an ASCII letter.
    var isASCIILetter: Bool {
        (self >= 0x41 && self <= 0x5A) || (self >= 0x61 && self <= 0x7A)
    }
}
