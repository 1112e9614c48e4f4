import Foundation

/// The payload of an end-to-end encrypted envelope, as the server stores and forwards it
/// without being able to read it.
///
/// Layout: the byte 0xE2, a version byte (2), a type byte (1 = message, 2 = message with
/// session setup), the setup header when present, the ratchet header (ratchet key, previous
/// chain length, message number, 16-byte salt), and the ciphertext. Version 1, whose ratchet
/// header had no salt, is still read (messages sent before the salt existed) but never written.
public enum SealedMessage: Sendable, Equatable {
    /// A message of an established session.
    case message(RatchetMessage)
    /// A message that also carries what the responder needs to set the session up.
    case setup(PrekeyHeader, RatchetMessage)

    static let marker: UInt8 = 0xE2
    /// The version written.
    static let version: UInt8 = 2
    /// The version without a per-message salt, still read.
    static let unsaltedVersion: UInt8 = 1

    /// The ratchet message inside.
    public var ratchetMessage: RatchetMessage {
        switch self {
        case .message(let message), .setup(_, let message): message
        }
    }

    /// The wire bytes.
    public var bytes: Data {
        var writer = ByteWriter()
        writer.append(Self.marker)
        // Only a message parsed from version 1 has no salt; it is written back as it came.
        writer.append(ratchetMessage.header.salt.isEmpty ? Self.unsaltedVersion : Self.version)
        switch self {
        case .message(let message):
            writer.append(UInt8(1))
            write(message, to: &writer)
        case .setup(let header, let message):
            writer.append(UInt8(2))
            header.write(to: &writer)
            write(message, to: &writer)
        }
        return writer.bytes
    }

    private func write(_ message: RatchetMessage, to writer: inout ByteWriter) {
        writer.appendFixed(message.header.bytes)
        writer.appendField(message.ciphertext)
    }

    /// Whether the bytes look like a sealed message (a first check before parsing).
    public static func isSealed(_ bytes: Data) -> Bool { bytes.first == marker }

    /// Parses wire bytes; a `malformed` error for anything else.
    public init(bytes: Data) throws(SessionError) {
        var reader = ByteReader(bytes)
        guard try reader.readByte() == Self.marker else {
            throw SessionError(.malformed, "the payload is not an end-to-end encrypted message")
        }
        let version = try reader.readByte()
        guard version == Self.version || version == Self.unsaltedVersion else {
            throw SessionError(
                .malformed, "message format version \(version) is not supported (this client speaks \(Self.version))")
        }
        let salted = version == Self.version
        let type = try reader.readByte()
        switch type {
        case 1:
            self = .message(try Self.readMessage(&reader, salted: salted))
        case 2:
            let header = try PrekeyHeader.read(from: &reader)
            self = .setup(header, try Self.readMessage(&reader, salted: salted))
        default:
            throw SessionError(.malformed, "unknown message type \(type)")
        }
        try reader.requireEnd()
    }

    private static func readMessage(_ reader: inout ByteReader, salted: Bool) throws(SessionError) -> RatchetMessage {
        let ratchetKey = try reader.readData(32)
        let previous = try reader.readUInt32()
        let number = try reader.readUInt32()
        let salt = salted ? try reader.readData(RatchetHeader.saltSize) : Data()
        return RatchetMessage(
            header: RatchetHeader(ratchetKey: ratchetKey, previousChainLength: previous, messageNumber: number, salt: salt),
            ciphertext: try reader.readField())
    }
}

extension RatchetSession {
    /// Encrypts and wraps: a setup message until the peer has replied, a plain one after.
    public mutating func seal(_ plaintext: Data) throws(SessionError) -> SealedMessage {
        let message = try encrypt(plaintext)
        if let pending = pendingSetup {
            return .setup(try pending.header(), message)
        }
        return .message(message)
    }
}
