import Foundation
import HeliographCore

/// Why an end-to-end operation failed. Compared by code; the message is for logs and people.
///
/// None of these carries key material or plaintext, so every one of them may be logged.
public struct SessionError: Error, Equatable, CustomStringConvertible {
    /// A stable, comparable failure kind.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The stable name.
        public let rawValue: String
        fileprivate init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The bytes are not a message of this protocol (truncated, wrong version, bad lengths).
        public static let malformed = Code("malformed")
        /// Authentication failed: the ciphertext, header or associated data were altered.
        public static let tampered = Code("tampered")
        /// This message was already decrypted once.
        public static let replayed = Code("replayed")
        /// The message claims to be further ahead in its chain than the skipped-key bound allows.
        public static let tooFarAhead = Code("too_far_ahead")
        /// No session exists for a message that is not a session-setup message.
        public static let unknownSession = Code("unknown_session")
        /// A signature on a key, bundle or device list does not verify.
        public static let badSignature = Code("bad_signature")
        /// A prekey named by a setup message is no longer (or never was) held by this device.
        public static let unknownPrekey = Code("unknown_prekey")
        /// A public key has the wrong size or is not a valid point.
        public static let invalidKey = Code("invalid_key")
        /// The franking commitment does not match the decrypted content.
        public static let badCommitment = Code("bad_commitment")
        /// A device list older than, or conflicting with, one already seen: the server is
        /// hiding a change or showing different lists to different people.
        public static let staleDeviceList = Code("stale_device_list")
        /// A device, key or session that the account's latest signed device list does not vouch for.
        public static let unlistedDevice = Code("unlisted_device")
    }

    /// The failure kind.
    public let code: Code
    /// A sentence for a person.
    public let message: String

    /// Creates the error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    public static func == (lhs: SessionError, rhs: SessionError) -> Bool { lhs.code == rhs.code }
}

/// Appends fixed-size big-endian integers and length-prefixed fields: the binary form of
/// everything that is signed, authenticated or hashed, so the bytes never depend on a JSON
/// encoder's choices.
struct ByteWriter {
    private(set) var bytes = Data()

    init(label: String? = nil) {
        if let label { appendField(Data(label.utf8)) }
    }

    mutating func append(_ byte: UInt8) { bytes.append(byte) }

    mutating func append(_ value: UInt32) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ value: UInt64) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ value: Int64) { append(UInt64(bitPattern: value)) }

    /// Raw bytes whose length the reader knows in advance.
    mutating func appendFixed(_ data: Data) { bytes.append(data) }

    /// Bytes preceded by their length, so two adjacent fields can never be confused.
    mutating func appendField(_ data: Data) {
        append(UInt32(data.count))
        bytes.append(data)
    }

    mutating func append(_ uuid: UUID) {
        withUnsafeBytes(of: uuid.uuid) { bytes.append(contentsOf: $0) }
    }
}

/// Reads what ``ByteWriter`` wrote; every shortfall is a `malformed` error, never a crash.
struct ByteReader {
    /// A zero-based copy: input may be a `Data` slice whose indices do not start at 0.
    private let data: [UInt8]
    private var offset: Int

    init(_ data: Data) {
        self.data = Array(data)
        offset = 0
    }

    var isAtEnd: Bool { offset == data.count }

    mutating func readByte() throws(SessionError) -> UInt8 {
        try readFixed(1)[0]
    }

    mutating func readUInt32() throws(SessionError) -> UInt32 {
        try readFixed(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func readUInt64() throws(SessionError) -> UInt64 {
        try readFixed(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func readFixed(_ count: Int) throws(SessionError) -> [UInt8] {
        guard count >= 0, data.count - offset >= count else {
            throw SessionError(.malformed, "the message is truncated")
        }
        defer { offset += count }
        return Array(data[offset..<offset + count])
    }

    mutating func readData(_ count: Int) throws(SessionError) -> Data { Data(try readFixed(count)) }

    mutating func readField(maximum: Int = 1 << 20) throws(SessionError) -> Data {
        let count = Int(try readUInt32())
        guard count <= maximum else { throw SessionError(.malformed, "a field is longer than \(maximum) bytes") }
        return try readData(count)
    }

    mutating func readUUID() throws(SessionError) -> UUID {
        let b = try readFixed(16)
        return UUID(uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
    }

    func requireEnd() throws(SessionError) {
        guard isAtEnd else { throw SessionError(.malformed, "the message has trailing bytes") }
    }
}

extension Data {
    /// Cryptographically secure random bytes.
    static func random(count: Int) -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }
}
