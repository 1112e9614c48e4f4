import Crypto
import Foundation
import HeliographCore

// Attachment encryption for private chats and private groups.
//
// Every file gets a fresh random 32-byte key, used for that file only. The file is padded up to a
// size bucket and cut into chunks of 64 KiB; each chunk is sealed on its own with AES-256-GCM, so
// a file of any size is encrypted and decrypted as a stream, with bounded memory, and no byte of
// a chunk is released before that chunk's tag has verified.
//
// Ciphertext (version 1):
//
//     header       13 bytes: version u8 = 1, nonce prefix (12 random bytes)
//     chunk 0      ciphertext of up to 65,536 padded-stream bytes, then a 16-byte GCM tag
//     chunk 1 ...  the same; every chunk but the last holds exactly 65,536 bytes
//
// The padded stream that the chunks carry is: the true plaintext length (u64, big-endian), the
// plaintext, then zero bytes up to the bucket size (``AttachmentCipher/paddedSize(forPlaintextSize:)``).
//
// Chunk i uses the nonce prefix with its last eight bytes XORed with i (u64, big-endian), and the
// associated data header || i (u64, big-endian) || final flag (u8, 1 on the last chunk only).
// A chunk moved, repeated or dropped opens under the wrong index, and a file cut at a chunk
// boundary ends on a chunk that was sealed as not final; both fail authentication. The key is
// never reused, so the nonces of two files never meet under one key.

/// Sizes and one-shot helpers of the attachment encryption scheme.
public enum AttachmentCipher {
    /// The format version written in the first header byte.
    public static let formatVersion: UInt8 = 1
    /// The header length: version and nonce prefix.
    public static let headerSize = 13
    /// Padded-stream bytes per chunk (every chunk but the last is exactly this long).
    public static let chunkSize = 65_536
    /// The GCM tag after every chunk.
    public static let tagSize = 16
    /// The attachment key length.
    public static let keySize = 32
    /// The smallest padded stream: small files all look alike.
    public static let minimumPaddedSize: UInt64 = 1024
    /// The largest plaintext the scheme accepts (1 TiB); far above any upload limit, it only
    /// keeps the size arithmetic away from overflow.
    public static let maximumPlaintextSize: UInt64 = 1 << 40
    /// The length field at the start of the padded stream.
    static let lengthFieldSize: UInt64 = 8

    /// The size of the padded stream for a plaintext of `plaintextSize` bytes: the length field
    /// and the plaintext, rounded up with Padmé (Nikitin et al., "Reducing Metadata Leakage from
    /// Encrypted Files and Communication with PURBs", PETS 2019) and never below 1 KiB.
    ///
    /// Padmé keeps the top bits of the size and zeroes the rest: for a length with exponent
    /// E = ⌊log₂ L⌋ it rounds up to a multiple of 2^(E − ⌊log₂ E⌋ − 1). The overhead is under
    /// 2^−(⌊log₂ E⌋ + 1): at most 6.25 % above 1 KiB, 3.125 % from 64 KiB, 1.6 % from 4 GiB,
    /// while only O(log log L) bits of the size remain visible.
    public static func paddedSize(forPlaintextSize plaintextSize: UInt64) -> UInt64 {
        let content = plaintextSize + lengthFieldSize
        guard content > minimumPaddedSize else { return minimumPaddedSize }
        let exponent = UInt64(63 - content.leadingZeroBitCount)
        let exponentBits = UInt64(64 - exponent.leadingZeroBitCount)
        let lowBits = exponent - exponentBits
        let mask: UInt64 = (1 << lowBits) - 1
        return (content + mask) & ~mask
    }

    /// The number of chunks of a padded stream of `paddedSize` bytes (at least one).
    static func chunkCount(forPaddedSize paddedSize: UInt64) -> UInt64 {
        (paddedSize + UInt64(chunkSize) - 1) / UInt64(chunkSize)
    }

    /// The exact ciphertext size (header, padded stream, one tag per chunk) for a plaintext of
    /// `plaintextSize` bytes: what the server sees, and all it sees of the size.
    public static func ciphertextSize(forPlaintextSize plaintextSize: UInt64) -> UInt64 {
        let padded = paddedSize(forPlaintextSize: plaintextSize)
        return UInt64(headerSize) + padded + chunkCount(forPaddedSize: padded) * UInt64(tagSize)
    }

    /// Encrypts a small file held in memory (a thumbnail, a voice note) under a fresh key.
    public static func encrypt(wholeFile plaintext: Data) throws(SessionError) -> (ciphertext: Data, seal: AttachmentSeal) {
        var encryptor = try AttachmentEncryptor(plaintextSize: UInt64(plaintext.count))
        var ciphertext = try encryptor.update(plaintext)
        let (last, seal) = try encryptor.finish()
        ciphertext.append(last)
        return (ciphertext, seal)
    }

    /// Decrypts a file held in memory. The SHA-256 digest of the ciphertext is checked before any
    /// decryption, and the plaintext length against `plaintextSize` when one is given.
    public static func decrypt(
        wholeFile ciphertext: Data,
        key: Data,
        digest: Data,
        plaintextSize: UInt64? = nil
    ) throws(SessionError) -> Data {
        try checkDigest(of: ciphertext, expected: digest)
        var decryptor = try AttachmentDecryptor(key: key, plaintextSize: plaintextSize)
        var plaintext = try decryptor.update(ciphertext)
        plaintext.append(try decryptor.finish())
        return plaintext
    }

    /// Refuses ciphertext whose SHA-256 is not `expected` (the digest from the attachment pointer).
    public static func checkDigest(of ciphertext: Data, expected: Data) throws(SessionError) {
        guard Data(SHA256.hash(data: ciphertext)) == expected else {
            throw SessionError(.tampered, "the attachment does not match the digest its sender gave")
        }
    }

    /// Authenticates and decrypts one sealed chunk (ciphertext and tag) under its index and final flag.
    static func openChunk(
        _ sealed: Data,
        key: SymmetricKey,
        header: Data,
        index: UInt64,
        isFinal: Bool
    ) throws(SessionError) -> Data {
        let failure = SessionError(
            .tampered,
            "attachment chunk \(index) does not authenticate (wrong key, or altered, moved, dropped or cut)"
        )
        guard sealed.count > tagSize else { throw failure }
        let tagStart = sealed.endIndex - tagSize
        do {
            let box = try AES.GCM.SealedBox(
                nonce: nonce(prefix: Data(header.dropFirst()), index: index),
                ciphertext: sealed[sealed.startIndex..<tagStart],
                tag: sealed[tagStart...]
            )
            let associatedData = associatedData(header: header, index: index, isFinal: isFinal)
            return try AES.GCM.open(box, using: key, authenticating: associatedData)
        } catch {
            throw failure
        }
    }

    /// The plaintext bytes within a chunk's decrypted padded-stream bytes that start at stream
    /// offset `start`; the padding within them must be zero.
    static func plaintextPart(of stream: Data, at start: UInt64, plaintextSize: UInt64) throws(SessionError) -> Data {
        let end = start + UInt64(stream.count)
        let dataStart = lengthFieldSize
        let dataEnd = dataStart + plaintextSize
        let base = stream.startIndex
        if end > dataEnd {
            let padding = stream[(base + Int(max(start, dataEnd) - start))...]
            guard padding.allSatisfy({ $0 == 0 }) else {
                throw SessionError(.malformed, "the attachment's padding is not zero")
            }
        }
        let from = max(start, dataStart)
        let to = min(end, dataEnd)
        guard from < to else { return Data() }
        return Data(stream[(base + Int(from - start))..<(base + Int(to - start))])
    }

    // MARK: Random access

    /// The number of chunks of the file a pointer describes.
    public static func chunkCount(plaintextSize: UInt64) -> UInt64 {
        chunkCount(forPaddedSize: paddedSize(forPlaintextSize: plaintextSize))
    }

    /// Where chunk `index` (ciphertext and tag) sits in the uploaded ciphertext: fetch this range
    /// and the header (bytes 0..<13) to decrypt the chunk alone with ``decryptChunk(_:index:header:pointer:)``.
    public static func ciphertextRange(ofChunk index: UInt64, plaintextSize: UInt64) -> Range<UInt64> {
        let start = UInt64(headerSize) + index * UInt64(chunkSize + tagSize)
        return start..<min(start + UInt64(chunkSize + tagSize), ciphertextSize(forPlaintextSize: plaintextSize))
    }

    /// The plaintext bytes chunk `index` holds (empty for chunks of padding only).
    public static func plaintextRange(ofChunk index: UInt64, plaintextSize: UInt64) -> Range<UInt64> {
        let start = index * UInt64(chunkSize)
        let end = start + UInt64(chunkSize)
        let from = min(max(start, lengthFieldSize) - lengthFieldSize, plaintextSize)
        let to = min(max(end, lengthFieldSize) - lengthFieldSize, plaintextSize)
        return from..<to
    }

    /// Decrypts one chunk of a file on its own (for a range request), under the pointer's key.
    /// The chunk's tag binds it to its index and to being last or not, so a server answering a
    /// range request with other bytes is refused; the file's digest is not checked here.
    public static func decryptChunk(
        _ sealed: Data,
        index: UInt64,
        header: Data,
        pointer: AttachmentPointer
    ) throws(SessionError) -> Data {
        guard pointer.key.count == keySize else {
            throw SessionError(.invalidKey, "an attachment key is \(keySize) bytes (got \(pointer.key.count))")
        }
        guard header.count == headerSize, header.first == formatVersion else {
            throw SessionError(.malformed, "an attachment header is \(headerSize) bytes starting with version \(formatVersion)")
        }
        let size = pointer.plaintextSize
        guard size <= maximumPlaintextSize, pointer.ciphertextSize == ciphertextSize(forPlaintextSize: size) else {
            throw SessionError(.malformed, "the attachment's sizes do not fit together")
        }
        let count = chunkCount(plaintextSize: size)
        guard index < count else {
            throw SessionError(.malformed, "the attachment has \(count) chunks (asked for chunk \(index))")
        }
        let stream = try openChunk(
            sealed,
            key: SymmetricKey(data: pointer.key),
            header: header,
            index: index,
            isFinal: index + 1 == count
        )
        let start = index * UInt64(chunkSize)
        let padded = paddedSize(forPlaintextSize: size)
        guard UInt64(stream.count) == min(UInt64(chunkSize), padded - start) else {
            throw SessionError(.malformed, "attachment chunk \(index) does not fit the length the file declares")
        }
        if index == 0 {
            var reader = ByteReader(stream.prefix(Int(lengthFieldSize)))
            guard try reader.readUInt64() == size else {
                throw SessionError(.tampered, "the attachment's length is not the one its sender gave")
            }
        }
        return try plaintextPart(of: stream, at: start, plaintextSize: size)
    }

    /// The nonce of chunk `index`: the file's prefix with its last eight bytes XORed with the index.
    static func nonce(prefix: Data, index: UInt64) -> AES.GCM.Nonce {
        var bytes = [UInt8](prefix)
        for position in 0..<8 {
            bytes[4 + position] ^= UInt8(truncatingIfNeeded: index >> (56 - 8 * UInt64(position)))
        }
        // Twelve bytes is always a valid GCM nonce.
        return try! AES.GCM.Nonce(data: bytes)
    }

    /// The associated data of chunk `index`: header, index and final flag.
    static func associatedData(header: Data, index: UInt64, isFinal: Bool) -> Data {
        var writer = ByteWriter()
        writer.appendFixed(header)
        writer.append(index)
        writer.append(isFinal ? UInt8(1) : UInt8(0))
        return writer.bytes
    }
}

/// What the sender learns from encrypting a file, and sends (inside the end-to-end encrypted
/// message) so that the recipient can fetch, check and decrypt it.
public struct AttachmentSeal: Sendable, Equatable {
    /// The 32-byte attachment key.
    public var key: Data
    /// SHA-256 of the complete ciphertext as uploaded.
    public var digest: Data
    /// The ciphertext length in bytes.
    public var ciphertextSize: UInt64
    /// The plaintext length in bytes.
    public var plaintextSize: UInt64

    /// Creates the value.
    public init(key: Data, digest: Data, ciphertextSize: UInt64, plaintextSize: UInt64) {
        self.key = key
        self.digest = digest
        self.ciphertextSize = ciphertextSize
        self.plaintextSize = plaintextSize
    }
}

/// Encrypts one file as a stream: feed the plaintext in pieces of any size to ``update(_:)``,
/// upload what it returns in order, then upload what ``finish()`` returns.
///
/// The plaintext size is declared up front (a file's size is known before it is read), because
/// the true length leads the padded stream and fixes the bucket.
public struct AttachmentEncryptor {
    /// The 32-byte key, fresh for this file.
    public let key: Data
    /// The declared plaintext size.
    public let plaintextSize: UInt64
    private let header: Data
    private let noncePrefix: Data
    private let symmetricKey: SymmetricKey
    private let paddedSize: UInt64
    private let chunkCount: UInt64
    /// Padded-stream bytes not yet sealed (always fewer than two chunks' worth after a call).
    private var pending = Data()
    private var chunkIndex: UInt64 = 0
    private var received: UInt64 = 0
    private var produced: UInt64 = 0
    private var hasher = SHA256()
    private var headerSent = false
    private var finished = false

    /// Starts a file of `plaintextSize` bytes under a fresh random key and nonce prefix.
    public init(plaintextSize: UInt64) throws(SessionError) {
        try self.init(
            plaintextSize: plaintextSize,
            key: .random(count: AttachmentCipher.keySize),
            noncePrefix: .random(count: 12)
        )
    }

    init(plaintextSize: UInt64, key: Data, noncePrefix: Data) throws(SessionError) {
        guard plaintextSize <= AttachmentCipher.maximumPlaintextSize else {
            throw SessionError(.malformed, "an attachment may be at most \(AttachmentCipher.maximumPlaintextSize) bytes")
        }
        self.key = key
        self.plaintextSize = plaintextSize
        self.noncePrefix = noncePrefix
        symmetricKey = SymmetricKey(data: key)
        var header = Data([AttachmentCipher.formatVersion])
        header.append(noncePrefix)
        self.header = header
        paddedSize = AttachmentCipher.paddedSize(forPlaintextSize: plaintextSize)
        chunkCount = AttachmentCipher.chunkCount(forPaddedSize: paddedSize)
        var writer = ByteWriter()
        writer.append(plaintextSize)
        pending = writer.bytes
    }

    /// Takes the next piece of plaintext and returns the ciphertext that is ready (possibly none).
    public mutating func update(_ piece: Data) throws(SessionError) -> Data {
        guard !finished else { throw SessionError(.malformed, "the attachment was already finished") }
        guard UInt64(piece.count) <= plaintextSize - received else {
            throw SessionError(.malformed, "the attachment is longer than the \(plaintextSize) bytes declared")
        }
        received += UInt64(piece.count)
        pending.append(piece)
        var output = takeHeader()
        let chunk = AttachmentCipher.chunkSize
        var offset = pending.startIndex
        // The last chunk waits for finish(): only then is it known to be complete.
        while pending.endIndex - offset >= chunk, chunkIndex + 1 < chunkCount {
            output.append(seal(Data(pending[offset..<offset + chunk]), isFinal: false))
            offset += chunk
        }
        pending = Data(pending[offset...])
        return output
    }

    /// Pads, seals the remaining chunks and returns them with the values for the attachment
    /// pointer. Fails if fewer plaintext bytes came than were declared.
    ///
    /// The padding may fill several chunks (under 3.2 % of the file), all returned here.
    public mutating func finish() throws(SessionError) -> (ciphertext: Data, seal: AttachmentSeal) {
        guard !finished else { throw SessionError(.malformed, "the attachment was already finished") }
        guard received == plaintextSize else {
            throw SessionError(.malformed, "the attachment ended after \(received) of the \(plaintextSize) bytes declared")
        }
        finished = true
        var output = takeHeader()
        let chunk = UInt64(AttachmentCipher.chunkSize)
        while chunkIndex < chunkCount {
            let isFinal = chunkIndex + 1 == chunkCount
            let length = Int(isFinal ? paddedSize - chunkIndex * chunk : chunk)
            if pending.count < length { pending.append(Data(count: length - pending.count)) }
            output.append(seal(Data(pending.prefix(length)), isFinal: isFinal))
            pending = Data(pending.dropFirst(length))
        }
        let seal = AttachmentSeal(
            key: key,
            digest: Data(hasher.finalize()),
            ciphertextSize: produced,
            plaintextSize: plaintextSize
        )
        return (output, seal)
    }

    private mutating func takeHeader() -> Data {
        guard !headerSent else { return Data() }
        headerSent = true
        hasher.update(data: header)
        produced += UInt64(header.count)
        return header
    }

    private mutating func seal(_ plaintext: Data, isFinal: Bool) -> Data {
        let nonce = AttachmentCipher.nonce(prefix: noncePrefix, index: chunkIndex)
        let associatedData = AttachmentCipher.associatedData(header: header, index: chunkIndex, isFinal: isFinal)
        // Sealing with a 32-byte key and a valid nonce cannot fail.
        let box = try! AES.GCM.seal(plaintext, using: symmetricKey, nonce: nonce, authenticating: associatedData)
        var output = box.ciphertext
        output.append(box.tag)
        hasher.update(data: output)
        produced += UInt64(output.count)
        chunkIndex += 1
        return output
    }
}

/// Decrypts one file as a stream: feed the ciphertext in pieces of any size to ``update(_:)``,
/// then call ``finish()``.
///
/// Every byte returned comes from a chunk whose tag verified, in its place in the file. The
/// file as a whole is only proven complete and equal to the uploaded ciphertext when
/// ``finish()`` returns (final chunk present, digest equal): write the output to a temporary
/// file and keep it only then. After any error the decryptor refuses every further call.
public struct AttachmentDecryptor {
    private let symmetricKey: SymmetricKey
    private let expectedDigest: Data?
    private let expectedPlaintextSize: UInt64?
    private var header: Data?
    private var buffer = Data()
    private var chunkIndex: UInt64 = 0
    /// Known from chunk 0: the true length, the padded size and the chunk count.
    private var plaintextSize: UInt64?
    private var paddedSize: UInt64 = 0
    private var chunkCount: UInt64 = 0
    /// Padded-stream bytes decrypted so far.
    private var streamOffset: UInt64 = 0
    private var hasher = SHA256()
    private var failed = false
    private var finished = false

    /// Prepares to decrypt under `key` (32 bytes). `digest`, when given, is compared with the
    /// SHA-256 of all ciphertext at ``finish()``; `plaintextSize`, when given, with the length
    /// found in the first chunk.
    public init(key: Data, digest: Data? = nil, plaintextSize: UInt64? = nil) throws(SessionError) {
        guard key.count == AttachmentCipher.keySize else {
            throw SessionError(.invalidKey, "an attachment key is \(AttachmentCipher.keySize) bytes (got \(key.count))")
        }
        symmetricKey = SymmetricKey(data: key)
        expectedDigest = digest
        expectedPlaintextSize = plaintextSize
    }

    /// Takes the next piece of ciphertext and returns the plaintext of every chunk completed by it.
    public mutating func update(_ piece: Data) throws(SessionError) -> Data {
        try guardUsable()
        do throws(SessionError) {
            hasher.update(data: piece)
            buffer.append(piece)
            try readHeader()
            guard header != nil else { return Data() }
            var output = Data()
            let sealedChunk = AttachmentCipher.chunkSize + AttachmentCipher.tagSize
            var offset = buffer.startIndex
            // A full chunk is only known not to be the last once a byte after it has arrived.
            while buffer.endIndex - offset > sealedChunk {
                output.append(try open(Data(buffer[offset..<offset + sealedChunk]), isFinal: false))
                offset += sealedChunk
            }
            buffer = Data(buffer[offset...])
            return output
        } catch {
            failed = true
            throw error
        }
    }

    /// Opens the final chunk and checks that the file is complete and matches its digest.
    public mutating func finish() throws(SessionError) -> Data {
        try guardUsable()
        do throws(SessionError) {
            guard header != nil else {
                throw SessionError(.malformed, "the attachment is shorter than its header")
            }
            guard buffer.count > AttachmentCipher.tagSize else {
                throw SessionError(.tampered, "the attachment ends without its final chunk")
            }
            let output = try open(buffer, isFinal: true)
            buffer = Data()
            if let expectedDigest, Data(hasher.finalize()) != expectedDigest {
                throw SessionError(.tampered, "the attachment does not match the digest its sender gave")
            }
            finished = true
            return output
        } catch {
            failed = true
            throw error
        }
    }

    private func guardUsable() throws(SessionError) {
        guard !failed else { throw SessionError(.tampered, "the attachment already failed to decrypt") }
        guard !finished else { throw SessionError(.malformed, "the attachment was already finished") }
    }

    private mutating func readHeader() throws(SessionError) {
        guard header == nil, buffer.count >= AttachmentCipher.headerSize else { return }
        let candidate = Data(buffer.prefix(AttachmentCipher.headerSize))
        guard candidate[candidate.startIndex] == AttachmentCipher.formatVersion else {
            throw SessionError(.malformed, "unknown attachment format version \(candidate[candidate.startIndex])")
        }
        header = candidate
        buffer = Data(buffer.dropFirst(AttachmentCipher.headerSize))
    }

    /// Authenticates and decrypts chunk `chunkIndex`, then returns its part of the plaintext.
    private mutating func open(_ sealed: Data, isFinal: Bool) throws(SessionError) -> Data {
        guard let header else { throw SessionError(.malformed, "the attachment has no header") }
        if plaintextSize != nil, chunkIndex >= chunkCount {
            throw SessionError(.tampered, "the attachment has more chunks than its length allows")
        }
        let plaintext = try AttachmentCipher.openChunk(
            sealed,
            key: symmetricKey,
            header: header,
            index: chunkIndex,
            isFinal: isFinal
        )
        if chunkIndex == 0 { try readLength(plaintext) }
        guard let plaintextSize else { throw SessionError(.malformed, "the attachment has no length") }
        let isLast = chunkIndex + 1 == chunkCount
        let expectedLength =
            isLast ? paddedSize - chunkIndex * UInt64(AttachmentCipher.chunkSize) : UInt64(AttachmentCipher.chunkSize)
        // The tag verified, so only the key holder can have made these: still, refuse them.
        guard isFinal == isLast, UInt64(plaintext.count) == expectedLength else {
            throw SessionError(.malformed, "attachment chunk \(chunkIndex) does not fit the length the file declares")
        }
        let start = streamOffset
        let end = start + UInt64(plaintext.count)
        let output = try AttachmentCipher.plaintextPart(of: plaintext, at: start, plaintextSize: plaintextSize)
        streamOffset = end
        chunkIndex += 1
        return output
    }

    /// Reads the true length that leads chunk 0 and derives the padded size and chunk count.
    private mutating func readLength(_ plaintext: Data) throws(SessionError) {
        var reader = ByteReader(plaintext.prefix(Int(AttachmentCipher.lengthFieldSize)))
        let length = try reader.readUInt64()
        guard length <= AttachmentCipher.maximumPlaintextSize else {
            throw SessionError(.malformed, "the attachment declares \(length) bytes, above the limit")
        }
        if let expectedPlaintextSize, expectedPlaintextSize != length {
            throw SessionError(
                .tampered,
                "the attachment holds \(length) bytes, not the \(expectedPlaintextSize) its sender gave"
            )
        }
        plaintextSize = length
        paddedSize = AttachmentCipher.paddedSize(forPlaintextSize: length)
        chunkCount = AttachmentCipher.chunkCount(forPaddedSize: paddedSize)
    }
}

/// A small image shown before the attachment is downloaded, encrypted under its own key and
/// carried whole inside the message.
public struct AttachmentThumbnail: Codable, Sendable, Equatable {
    /// The largest thumbnail plaintext accepted (64 KiB): it rides inside every message copy.
    public static let maximumSize = 65_536

    /// The media type of the thumbnail image, for example `image/jpeg`.
    public var mediaType: String
    /// The 32-byte key of the thumbnail.
    public var key: Data
    /// SHA-256 of ``ciphertext``.
    public var digest: Data
    /// The encrypted thumbnail in the attachment format.
    public var ciphertext: Data
    /// The plaintext length.
    public var plaintextSize: UInt64

    /// Encrypts `image` under a fresh key.
    public init(sealing image: Data, mediaType: String) throws(SessionError) {
        guard image.count <= Self.maximumSize else {
            throw SessionError(.malformed, "a thumbnail may be at most \(Self.maximumSize) bytes (got \(image.count))")
        }
        let (ciphertext, seal) = try AttachmentCipher.encrypt(wholeFile: image)
        self.mediaType = mediaType
        key = seal.key
        digest = seal.digest
        self.ciphertext = ciphertext
        plaintextSize = seal.plaintextSize
    }

    /// Checks and decrypts the thumbnail.
    public func open() throws(SessionError) -> Data {
        try AttachmentCipher.decrypt(wholeFile: ciphertext, key: key, digest: digest, plaintextSize: plaintextSize)
    }
}

/// Everything a recipient needs to fetch, check and decrypt one attachment. It travels only
/// inside the end-to-end encrypted message, never to the server in the clear.
public struct AttachmentPointer: Codable, Sendable, Equatable {
    /// The 32-byte attachment key.
    public var key: Data
    /// SHA-256 of the complete ciphertext; checked before the plaintext is trusted.
    public var digest: Data
    /// The ciphertext length (what the server stores).
    public var ciphertextSize: UInt64
    /// The plaintext length.
    public var plaintextSize: UInt64
    /// The media type, for example `image/jpeg`.
    public var mediaType: String
    /// The original file name, if the sender shares it.
    public var fileName: String?
    /// A small encrypted preview.
    public var thumbnail: AttachmentThumbnail?
    /// The name of the stored ciphertext on the server: lowercase hexadecimal SHA-256, which
    /// for a content-addressed store is the digest itself.
    public var blobHash: String

    /// Creates the pointer for a sealed file; the blob hash defaults to the digest in hexadecimal.
    public init(
        seal: AttachmentSeal,
        mediaType: String,
        fileName: String? = nil,
        thumbnail: AttachmentThumbnail? = nil,
        blobHash: String? = nil
    ) {
        key = seal.key
        digest = seal.digest
        ciphertextSize = seal.ciphertextSize
        plaintextSize = seal.plaintextSize
        self.mediaType = mediaType
        self.fileName = fileName
        self.thumbnail = thumbnail
        self.blobHash = blobHash ?? seal.digest.map { String(format: "%02x", $0) }.joined()
    }

    /// A decryptor that checks this pointer's digest and plaintext size.
    public func decryptor() throws(SessionError) -> AttachmentDecryptor {
        try AttachmentDecryptor(key: key, digest: digest, plaintextSize: plaintextSize)
    }
}
