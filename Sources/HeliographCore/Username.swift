/// A public handle such as `alice_w`: how people find each other without a phone number.
///
/// Rules: 5–32 characters of `[A-Za-z0-9_]`, starting with a letter and not ending with `_`.
/// Uniqueness is case-insensitive: `Alice` and `alice` are the same name, so lookups and the
/// unique index use ``canonical``, while ``display`` keeps the spelling its owner chose.
public struct Username: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The shortest name accepted.
    public static let minimumLength = 5
    /// The longest name accepted.
    public static let maximumLength = 32

    /// The spelling the owner registered.
    public let display: String

    /// The lower-cased form used for uniqueness and lookup.
    public var canonical: String { display.lowercased() }

    /// Validates `text`, accepting an optional leading `@` as people type it.
    public init(validating text: String) throws(HeliographError) {
        let name = text.hasPrefix("@") ? String(text.dropFirst()) : text
        let bytes = Array(name.utf8)
        guard bytes.count >= Self.minimumLength, bytes.count <= Self.maximumLength else {
            throw HeliographError(
                .invalidUsername,
                "username must be \(Self.minimumLength)-\(Self.maximumLength) characters long, got \(bytes.count)"
            )
        }
        guard bytes.allSatisfy({ $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "_") }) else {
            throw HeliographError(.invalidUsername, "username may contain only letters A-Z, digits and '_'")
        }
        guard bytes[0].isASCIILetter else {
            throw HeliographError(.invalidUsername, "username must start with a letter")
        }
        guard bytes[bytes.count - 1] != UInt8(ascii: "_") else {
            throw HeliographError(.invalidUsername, "username must not end with '_'")
        }
        self.display = name
    }

    public var description: String { "@" + display }

    /// Equality is case-insensitive, matching the uniqueness rule.
    public static func == (lhs: Username, rhs: Username) -> Bool { lhs.canonical == rhs.canonical }

    public func hash(into hasher: inout Hasher) { hasher.combine(canonical) }

    public init(from decoder: any Decoder) throws {
        let string = try decoder.singleValueContainer().decode(String.self)
        do {
            self = try Username(validating: string)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(display)
    }
}
