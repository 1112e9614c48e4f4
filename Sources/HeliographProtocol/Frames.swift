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

    /// Whether the method needs an authenticated session.
    public var requiresSession: Bool {
        switch self {
        case .register, .lookupAccount, .challenge, .login, .authenticate: false
        case .listDevices, .revokeDevice, .send, .fetchInbox, .ack, .publishKeys, .keyStatus, .fetchKeys, .verifyReport,
            .approveDevice:
            true
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
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(HeliographError) -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
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
