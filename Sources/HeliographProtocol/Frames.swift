import Foundation
import HeliographCore

/// The request methods of protocol v1. Each has an HTTP twin listed in docs/protocol.md.
public enum APIMethod: String, Codable, Sendable, CaseIterable {
    /// Create an account.
    case register
    /// Look up an account by name.
    case lookupAccount
    /// Get a login challenge.
    case challenge
    /// Answer a challenge; creates a device.
    case login
    /// WebSocket only: bind the socket to a session.
    case authenticate
    /// List the account's devices.
    case listDevices
    /// Revoke a device.
    case revokeDevice
    /// Send an envelope to an account.
    case send
    /// Pull inbox envelopes.
    case fetchInbox
    /// Acknowledge inbox envelopes.
    case ack
    /// Publish the device's prekeys (and the account's signed device list).
    case publishKeys
    /// How many one-time prekeys the server still holds for the device.
    case keyStatus
    /// Prekey bundles of an account's devices.
    case fetchKeys
    /// Check a franked report of an end-to-end encrypted message.
    case verifyReport
    /// Approve a device of the caller's account that logged in and waits (device linking).
    case approveDevice
    /// Create a private group, public group or channel.
    case createChat
    /// A chat's facts and the caller's role.
    case chatInfo
    /// Change a chat's title, description, public name or settings.
    case updateChat
    /// A public chat by its name.
    case resolveChat
    /// Public chats by title words or name.
    case searchChats
    /// One page of a chat's members.
    case chatMembers
    /// Add accounts to a public group or channel.
    case addMembers
    /// Remove a member.
    case removeMember
    /// Leave a chat.
    case leaveChat
    /// Ban an account (optionally until a time).
    case banMember
    /// Lift a ban.
    case unbanMember
    /// Make an account admin with rights, change them, or make it a member again.
    case setAdmin
    /// Hand the chat to another member.
    case transferOwnership
    /// A private group's next admin-signed membership change.
    case changeMembership
    /// Join by public name or invite link.
    case joinChat
    /// Make an invite link.
    case createInvite
    /// Revoke an invite link.
    case revokeInvite
    /// A chat's invite links.
    case listInvites
    /// Pending join requests.
    case joinRequests
    /// Let a join request in, or decline it.
    case decideJoinRequest
    /// Post a message to a chat.
    case post
    /// Edit a message of a public chat.
    case editMessage
    /// Delete a message of a public chat for everyone.
    case deleteMessage
    /// Pin or unpin a message of a public chat.
    case pinMessage
    /// Set or withdraw the caller's reaction to a message of a public chat.
    case react
    /// Messages of a chat in their current state, newest first.
    case chatHistory
    /// A chat's log after a position.
    case chatUpdates
    /// The caller's chats with last message, unread count, read position and mute flag.
    case chatList
    /// After a reconnect: which chats have news for the positions a device holds.
    case syncChats
    /// Move the account's read position in a chat.
    case markRead
    /// Mute or unmute a chat.
    case muteChat
    /// Count views of channel posts, once per account.
    case recordViews

    /// Whether the method needs an authenticated session.
    public var requiresSession: Bool {
        switch self {
        case .register, .lookupAccount, .challenge, .login, .authenticate: false
        default: true
        }
    }
}

/// The kinds of frame a client sends.
public enum ClientFrameType: String, Codable, Sendable {
    /// `{"type":"request","id":"…","method":"…","body":{…}}`
    case request
    /// `{"type":"ack","seq":N}` — a cumulative acknowledgement with no response.
    case ack
}

/// The kinds of frame a server sends.
public enum ServerFrameType: String, Codable, Sendable {
    /// The answer to a request, echoing its id.
    case response
    /// A pushed envelope.
    case envelope
    /// An error not tied to a request (malformed frame, bad ack).
    case error
    /// A new update in a chat the account is a member of.
    case chatUpdate
    /// The account's read position in a chat moved (on another of its devices).
    case readPosition
    /// Chat updates for this socket were dropped: sync the chats.
    case chatsChanged
}

/// The routing fields of a client frame, decoded before the body so the body's type is known.
public struct ClientFrameHead: Decodable, Sendable {
    /// The frame kind.
    public var type: ClientFrameType
    /// The request id (requests only), 1–64 characters chosen by the client.
    public var id: String?
    /// The method name (requests only).
    public var method: String?
    /// The acknowledged sequence number (ack frames only).
    public var seq: Int64?
}

/// A whole request frame with a typed body.
public struct RequestFrame<Body: Codable & Sendable>: Codable, Sendable {
    /// Always `request`.
    public var type: ClientFrameType = .request
    /// The client-chosen request id.
    public var id: String
    /// The method.
    public var method: String
    /// The parameters.
    public var body: Body
    /// Creates a request frame.
    public init(id: String, method: APIMethod, body: Body) {
        self.id = id
        self.method = method.rawValue
        self.body = body
    }
}

/// A cumulative acknowledgement frame.
public struct AckFrame: Codable, Sendable {
    /// Always `ack`.
    public var type: ClientFrameType = .ack
    /// Everything up to and including this sequence number is processed.
    public var seq: Int64
    /// Creates an ack frame.
    public init(seq: Int64) { self.seq = seq }
}

/// The routing fields of a server frame.
public struct ServerFrameHead: Decodable, Sendable {
    /// The frame kind.
    public var type: ServerFrameType
    /// For responses: the request id echoed (null when the request's id could not be read).
    public var id: String?
    /// For responses: an HTTP-like status.
    public var status: Int?
    /// For failed responses and error frames.
    public var error: ErrorBody?
}

/// A response frame with a typed body.
public struct ResponseFrame<Body: Codable & Sendable>: Codable, Sendable {
    /// Always `response`.
    public var type: ServerFrameType = .response
    /// The echoed request id.
    public var id: String?
    /// An HTTP-like status: 200 on success.
    public var status: Int
    /// The result, on success.
    public var body: Body?
    /// The error, on failure.
    public var error: ErrorBody?
    /// Creates a response frame.
    public init(id: String?, status: Int, body: Body?, error: ErrorBody?) {
        self.id = id
        self.status = status
        self.body = body
        self.error = error
    }
}

/// A pushed envelope frame.
public struct EnvelopeFrame: Codable, Sendable {
    /// Always `envelope`.
    public var type: ServerFrameType = .envelope
    /// The envelope.
    public var envelope: WireEnvelope
    /// Creates an envelope frame.
    public init(envelope: WireEnvelope) { self.envelope = envelope }
}

/// An error frame not tied to a request.
public struct ErrorFrame: Codable, Sendable {
    /// Always `error`.
    public var type: ServerFrameType = .error
    /// The error.
    public var error: ErrorBody
    /// Creates an error frame.
    public init(error: ErrorBody) { self.error = error }
}

/// Encodes and decodes frames and bodies as JSON, the wire format of protocol v1.
public enum WireCodec {
    /// Encodes a value to JSON bytes.
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return try encoder.encode(value)
    }

    /// Decodes JSON bytes, turning any failure into a `bad_request` error naming the field.
    ///
    /// Stricter than `JSONDecoder` alone, so that one value has one spelling on the wire: an
    /// object with a key twice is refused (the decoder would silently keep one of them, unchecked),
    /// and binary fields must be canonical base64 (see ``strictBase64(_:)``).
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(HeliographError) -> T {
        if let key = JSONKeyScan.firstDuplicateKey(in: data) {
            throw HeliographError(.badRequest, "the key '\(key)' appears twice in one JSON object")
        }
        do {
            let decoder = JSONDecoder()
            decoder.dataDecodingStrategy = .custom(strictBase64)
            return try decoder.decode(type, from: data)
        } catch let error as DecodingError {
            // A value that parsed but broke a domain rule (a message id's format) keeps the
            // rule's own code, with the field named.
            if case .dataCorrupted(let context) = error, let rule = context.underlyingError as? HeliographError {
                throw HeliographError(rule.code, describe(error))
            }
            throw HeliographError(.badRequest, describe(error))
        } catch {
            throw HeliographError(.badRequest, "the body is not valid JSON")
        }
    }

    /// Decodes a binary field: standard base64 with `=` padding, accepted only in the one form
    /// its bytes encode to. Non-zero unused bits in the last character or an extra `=` would
    /// otherwise give the same bytes several spellings.
    static func strictBase64(_ decoder: any Decoder) throws -> Data {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let data = Data(base64Encoded: text), data.base64EncodedString() == text else {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(
                    codingPath: decoder.codingPath,
                    debugDescription: "not canonical base64 (standard alphabet, '=' padding, unused bits zero)"))
        }
        return data
    }

    /// A readable explanation of a decoding failure, naming the offending field.
    static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            let joined = codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
            return joined.isEmpty ? "the body" : "'\(joined)'"
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = context.codingPath.isEmpty ? "" : " in \(path(context.codingPath))"
            return "missing field '\(key.stringValue)'\(parent)"
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)) has the wrong type (expected \(type))"
        case .valueNotFound(_, let context):
            return "\(path(context.codingPath)) must not be null"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "the body is not valid JSON" }
            return "\(path(context.codingPath)) is invalid: \(context.debugDescription)"
        @unknown default:
            return "the body could not be decoded"
        }
    }
}

/// A scan of JSON bytes for an object that has a key twice, at any depth.
///
/// It reads only the structure (brackets, commas, colons, strings) and leaves every other
/// check to `JSONDecoder`: on malformed input it simply finds nothing. Keys are compared after
/// their escapes are resolved, as the decoder sees them (`"a"` and `"\u0061"` are one key).
enum JSONKeyScan {
    /// The first key found twice in one object, or nil.
    static func firstDuplicateKey(in data: Data) -> String? {
        data.withUnsafeBytes { raw in firstDuplicateKey(in: raw.bindMemory(to: UInt8.self)) }
    }

    private static func firstDuplicateKey(in bytes: UnsafeBufferPointer<UInt8>) -> String? {
        // One entry per open container: the keys of an object so far, nil for an array.
        var open: [Set<String>?] = []
        var expectingKey = false
        var index = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "{"):
                open.append([])
                expectingKey = true
                index += 1
            case UInt8(ascii: "["):
                open.append(nil)
                expectingKey = false
                index += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                guard open.popLast() != nil else { return nil }
                expectingKey = false
                index += 1
            case UInt8(ascii: ","):
                expectingKey = open.last.map { $0 != nil } ?? false
                index += 1
            case UInt8(ascii: "\""):
                guard let (string, end) = readString(bytes, from: index) else { return nil }
                if expectingKey, open.count > 0, open[open.count - 1] != nil {
                    guard open[open.count - 1]!.insert(string).inserted else { return string }
                }
                expectingKey = false
                index = end
            default:
                // Whitespace, colons, numbers, literals: structure only matters here.
                index += 1
            }
        }
        return nil
    }

    /// The string starting at the quote at `start`, escapes resolved, and the index after its
    /// closing quote; nil when it does not end or has a malformed escape.
    private static func readString(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> (String, Int)? {
        var utf8: [UInt8] = []
        var index = start + 1
        var pendingHigh: UInt32?
        func append(_ scalar: UInt32) {
            let value = Unicode.Scalar(scalar) ?? "\u{FFFD}"
            utf8.append(contentsOf: Array(String(Character(value)).utf8))
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                if let high = pendingHigh { append(high) }
                return (String(decoding: utf8, as: UTF8.self), index + 1)
            }
            if byte != UInt8(ascii: "\\") {
                if let high = pendingHigh {
                    append(high)
                    pendingHigh = nil
                }
                utf8.append(byte)
                index += 1
                continue
            }
            guard index + 1 < bytes.count else { return nil }
            let escape = bytes[index + 1]
            index += 2
            if escape == UInt8(ascii: "u") {
                guard index + 4 <= bytes.count else { return nil }
                let digits = String(decoding: UnsafeBufferPointer(rebasing: bytes[index..<index + 4]), as: UTF8.self)
                guard let unit = UInt32(digits, radix: 16) else { return nil }
                index += 4
                if let high = pendingHigh {
                    pendingHigh = nil
                    if (0xDC00...0xDFFF).contains(unit) {
                        append(0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00))
                        continue
                    }
                    append(high)
                }
                if (0xD800...0xDBFF).contains(unit) {
                    pendingHigh = unit
                } else {
                    append(unit)
                }
                continue
            }
            if let high = pendingHigh {
                append(high)
                pendingHigh = nil
            }
            switch escape {
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            default: utf8.append(escape)
            }
        }
        return nil
    }
}
