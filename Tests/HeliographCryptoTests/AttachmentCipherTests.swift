import Crypto
import Foundation
import HeliographCrypto
import Testing

/// Plaintext bytes per chunk, for the size arguments below.
private let chunk = AttachmentCipher.chunkSize

/// Attachment encryption: chunked AES-256-GCM under a fresh key per file, padded to Padmé buckets.
/// AES-256-GCM itself is checked against the GCM specification's vectors in ``PrimitiveVectorTests``.
@Suite("Attachment cipher")
struct AttachmentCipherTests {
    static let sealedChunk = AttachmentCipher.chunkSize + AttachmentCipher.tagSize
    static let header = AttachmentCipher.headerSize
    /// Piece sizes cycled through when feeding bytes, so pieces straddle chunk boundaries.
    static let oddPieces = [1, 7, 4093, 65_537, 333, 200_003]

    /// Bytes that differ at every position, so a moved or dropped region shows.
    func plaintext(_ count: Int) -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    func pieces(of data: Data, sizes: [Int] = oddPieces) -> [Data] {
        var result: [Data] = []
        var offset = 0
        var turn = 0
        while offset < data.count {
            let size = min(sizes[turn % sizes.count], data.count - offset)
            result.append(data.subdata(in: offset..<offset + size))
            offset += size
            turn += 1
        }
        return result
    }

    func encrypt(_ data: Data) throws -> (ciphertext: Data, seal: AttachmentSeal) {
        var encryptor = try AttachmentEncryptor(plaintextSize: UInt64(data.count))
        var ciphertext = Data()
        for piece in pieces(of: data) { ciphertext.append(try encryptor.update(piece)) }
        let (last, seal) = try encryptor.finish()
        ciphertext.append(last)
        return (ciphertext, seal)
    }

    /// Decrypts in odd pieces; `output` receives every byte released before an error.
    func decrypt(
        _ ciphertext: Data,
        key: Data,
        digest: Data? = nil,
        plaintextSize: UInt64? = nil,
        output: inout Data
    ) throws(SessionError) {
        var decryptor = try AttachmentDecryptor(key: key, digest: digest, plaintextSize: plaintextSize)
        for piece in pieces(of: ciphertext, sizes: [5, 70_001, 13, 65_552, 1]) {
            output.append(try decryptor.update(piece))
        }
        output.append(try decryptor.finish())
    }

    func decrypt(_ ciphertext: Data, seal: AttachmentSeal) throws(SessionError) -> Data {
        var output = Data()
        try decrypt(ciphertext, key: seal.key, digest: seal.digest, plaintextSize: seal.plaintextSize, output: &output)
        return output
    }

    /// The error code of decrypting `ciphertext`, or nil if it decrypted.
    func failure(_ ciphertext: Data, key: Data, digest: Data? = nil) -> SessionError.Code? {
        var output = Data()
        do {
            try decrypt(ciphertext, key: key, digest: digest, output: &output)
            return nil
        } catch {
            return error.code
        }
    }

    /// Header and sealed chunks, cut where the format says.
    func split(_ ciphertext: Data) -> (header: Data, chunks: [Data]) {
        let header = ciphertext.prefix(Self.header)
        var chunks: [Data] = []
        var offset = Self.header
        while offset < ciphertext.count {
            let end = min(offset + Self.sealedChunk, ciphertext.count)
            chunks.append(ciphertext.subdata(in: offset..<end))
            offset = end
        }
        return (Data(header), chunks)
    }

    func join(_ header: Data, _ chunks: [Data]) -> Data { chunks.reduce(header) { $0 + $1 } }

    /// A file of five chunks (about 300 KiB).
    func fiveChunkFile() throws -> (plaintext: Data, ciphertext: Data, seal: AttachmentSeal) {
        let data = plaintext(300_000)
        let (ciphertext, seal) = try encrypt(data)
        #expect(split(ciphertext).chunks.count == 5)
        return (data, ciphertext, seal)
    }

    // MARK: - Round trips

    @Test(
        "Round trip at every edge size, fed and read in odd pieces",
        arguments: [0, 1, 1000, 1016, 1017, chunk - 9, chunk - 8, chunk - 1, chunk, chunk + 1, 2 * chunk, 3 << 20 | 12_345]
    )
    func roundTrip(size: Int) throws {
        let data = plaintext(size)
        let (ciphertext, seal) = try encrypt(data)
        #expect(try decrypt(ciphertext, seal: seal) == data)
        #expect(seal.plaintextSize == UInt64(size))
        #expect(seal.key.count == 32)
        #expect(seal.ciphertextSize == UInt64(ciphertext.count))
        #expect(seal.ciphertextSize == AttachmentCipher.ciphertextSize(forPlaintextSize: UInt64(size)))
        #expect(seal.digest == Data(SHA256.hash(data: ciphertext)))
        #expect(ciphertext.first == AttachmentCipher.formatVersion)
        if size >= 64 {
            // The ciphertext does not carry any 64-byte run of the plaintext.
            #expect(ciphertext.range(of: data.subdata(in: size / 2 - 32..<size / 2 + 32)) == nil)
        }
    }

    @Test("Whole-file helpers, thumbnails and pointers round trip; every file gets its own key and nonce prefix")
    func wholeFileAndPointer() throws {
        let image = plaintext(5000)
        let (ciphertext, seal) = try AttachmentCipher.encrypt(wholeFile: image)
        #expect(
            try AttachmentCipher.decrypt(wholeFile: ciphertext, key: seal.key, digest: seal.digest, plaintextSize: 5000)
                == image
        )
        let (again, secondSeal) = try AttachmentCipher.encrypt(wholeFile: image)
        #expect(secondSeal.key != seal.key)
        #expect(again.prefix(Self.header) != ciphertext.prefix(Self.header))
        #expect(again != ciphertext)

        let thumbnail = try AttachmentThumbnail(sealing: plaintext(3000), mediaType: "image/jpeg")
        let pointer = AttachmentPointer(seal: seal, mediaType: "image/png", fileName: "cat.png", thumbnail: thumbnail)
        #expect(pointer.blobHash == seal.digest.map { String(format: "%02x", $0) }.joined())
        #expect(pointer.blobHash.count == 64)
        let decoded = try JSONDecoder().decode(AttachmentPointer.self, from: try JSONEncoder().encode(pointer))
        #expect(decoded == pointer)
        #expect(try decoded.thumbnail?.open().count == 3000)

        var decryptor = try decoded.decryptor()
        var output = try decryptor.update(ciphertext)
        output.append(try decryptor.finish())
        #expect(output == image)

        var altered = thumbnail
        altered.ciphertext[40] ^= 1
        #expect(throws: SessionError(.tampered, "")) { try altered.open() }
        #expect(throws: SessionError(.malformed, "")) {
            try AttachmentThumbnail(sealing: Data(count: AttachmentThumbnail.maximumSize + 1), mediaType: "image/jpeg")
        }
    }

    @Test("The encryptor refuses more or fewer bytes than declared, and use after finish")
    func encryptorMisuse() throws {
        var encryptor = try AttachmentEncryptor(plaintextSize: 10)
        _ = try encryptor.update(Data(count: 6))
        #expect(throws: SessionError(.malformed, "")) { try encryptor.update(Data(count: 5)) }
        #expect(throws: SessionError(.malformed, "")) { try encryptor.finish() }
        _ = try encryptor.update(Data(count: 4))
        _ = try encryptor.finish()
        #expect(throws: SessionError(.malformed, "")) { try encryptor.finish() }
        #expect(throws: SessionError(.malformed, "")) {
            try AttachmentEncryptor(plaintextSize: AttachmentCipher.maximumPlaintextSize + 1)
        }
    }

    // MARK: - Tampering

    @Test("A flipped byte in any chunk, or in its tag, is refused and nothing of that chunk is released")
    func flippedByte() throws {
        let (data, ciphertext, seal) = try fiveChunkFile()
        let (header, chunks) = split(ciphertext)
        for index in chunks.indices {
            for position in [0, chunks[index].count / 2, chunks[index].count - 1] {
                var altered = chunks
                altered[index][position] ^= 0x20
                var output = Data()
                #expect(throws: SessionError(.tampered, "")) {
                    try decrypt(join(header, altered), key: seal.key, output: &output)
                }
                // Only the chunks before the altered one were released, exactly as encrypted.
                let before = max(0, min(data.count, index * chunk - 8))
                #expect(output == data.prefix(before))
            }
        }
    }

    @Test("Swapped, dropped, duplicated or appended chunks and a file cut at a chunk boundary are refused")
    func reorderedChunks() throws {
        let (_, ciphertext, seal) = try fiveChunkFile()
        let (header, chunks) = split(ciphertext)
        #expect(failure(ciphertext, key: seal.key, digest: seal.digest) == nil)

        var swapped = chunks
        swapped.swapAt(1, 2)
        #expect(failure(join(header, swapped), key: seal.key) == .tampered)

        var dropped = chunks
        dropped.remove(at: 2)
        #expect(failure(join(header, dropped), key: seal.key) == .tampered)

        var duplicated = chunks
        duplicated.insert(chunks[1], at: 2)
        #expect(failure(join(header, duplicated), key: seal.key) == .tampered)

        #expect(failure(join(header, chunks + [chunks[3]]), key: seal.key) == .tampered)
        #expect(failure(join(header, chunks + [chunks[4]]), key: seal.key) == .tampered)

        for count in 1..<chunks.count {
            #expect(failure(join(header, Array(chunks.prefix(count))), key: seal.key) == .tampered)
        }
        #expect(failure(header, key: seal.key) == .tampered)
        #expect(failure(ciphertext.prefix(Self.header - 1), key: seal.key) == .malformed)
        #expect(failure(ciphertext.dropLast(1), key: seal.key) == .tampered)
        #expect(failure(ciphertext + Data([0]), key: seal.key) == .tampered)
    }

    @Test("A wrong key, a key of the wrong length and an altered header are refused")
    func wrongKeyAndHeader() throws {
        let (_, ciphertext, seal) = try fiveChunkFile()
        var otherKey = seal.key
        otherKey[0] ^= 1
        #expect(failure(ciphertext, key: otherKey) == .tampered)
        #expect(failure(ciphertext, key: Data(count: 32)) == .tampered)
        #expect(throws: SessionError(.invalidKey, "")) { try AttachmentDecryptor(key: Data(count: 16)) }

        var version = ciphertext
        version[0] = 2
        #expect(failure(version, key: seal.key) == .malformed)
        for position in 1..<Self.header {
            var prefix = ciphertext
            prefix[position] ^= 0x01
            #expect(failure(prefix, key: seal.key) == .tampered)
        }
    }

    /// Re-seals chunk `index` of a file with new plaintext, as only the key holder can, following the
    /// documented nonce and associated-data layout.
    func reseal(_ plaintext: Data, index: UInt64, isFinal: Bool, header: Data, key: Data) throws -> Data {
        var nonce = [UInt8](header.dropFirst())
        for position in 0..<8 { nonce[4 + position] ^= UInt8(truncatingIfNeeded: index >> (56 - 8 * UInt64(position))) }
        var associatedData = header
        withUnsafeBytes(of: index.bigEndian) { associatedData.append(contentsOf: $0) }
        associatedData.append(isFinal ? 1 : 0)
        let box = try AES.GCM.seal(
            plaintext,
            using: SymmetricKey(data: key),
            nonce: try AES.GCM.Nonce(data: nonce),
            authenticating: associatedData
        )
        return box.ciphertext + box.tag
    }

    func openChunk(_ sealed: Data, index: UInt64, isFinal: Bool, header: Data, key: Data) throws -> Data {
        var nonce = [UInt8](header.dropFirst())
        for position in 0..<8 { nonce[4 + position] ^= UInt8(truncatingIfNeeded: index >> (56 - 8 * UInt64(position))) }
        var associatedData = header
        withUnsafeBytes(of: index.bigEndian) { associatedData.append(contentsOf: $0) }
        associatedData.append(isFinal ? 1 : 0)
        let box = try AES.GCM.SealedBox(
            nonce: try AES.GCM.Nonce(data: nonce),
            ciphertext: sealed.dropLast(16),
            tag: sealed.suffix(16)
        )
        return try AES.GCM.open(box, using: SymmetricKey(data: key), authenticating: associatedData)
    }

    @Test("The true length and the padding are authenticated: altering them, even under the right key, is refused")
    func paddingLengthAltered() throws {
        let data = plaintext(100)
        let (ciphertext, seal) = try encrypt(data)
        let (header, chunks) = split(ciphertext)
        #expect(chunks.count == 1)

        // Without the key: any change to the encrypted length field breaks the tag.
        for position in Self.header..<Self.header + 8 {
            var altered = ciphertext
            altered[position] ^= 0x01
            #expect(failure(altered, key: seal.key) == .tampered)
        }

        // With the key, following the documented layout: the stream is length, data, zero padding.
        let stream = try openChunk(chunks[0], index: 0, isFinal: true, header: header, key: seal.key)
        #expect(stream.count == 1024)
        #expect(stream.prefix(8) == Data([0, 0, 0, 0, 0, 0, 0, 100]))
        #expect(stream.subdata(in: 8..<108) == data)
        #expect(stream.dropFirst(108).allSatisfy { $0 == 0 })
        // The same stream re-sealed decrypts: the re-sealing below changes only what it says.
        let same = try reseal(stream, index: 0, isFinal: true, header: header, key: seal.key)
        #expect(
            try decrypt(
                header + same,
                seal: AttachmentSeal(
                    key: seal.key, digest: Data(SHA256.hash(data: header + same)), ciphertextSize: 0, plaintextSize: 100)) == data
        )

        var longer = stream
        longer[7] = 200
        let longerFile = header + (try reseal(longer, index: 0, isFinal: true, header: header, key: seal.key))
        #expect(failure(longerFile, key: seal.key) == nil)  // 200 bytes still fit the 1 KiB bucket
        var output = Data()
        #expect(throws: SessionError(.tampered, "")) {
            try decrypt(longerFile, key: seal.key, plaintextSize: 100, output: &output)
        }

        var outOfBucket = stream
        outOfBucket[6] = 0x10  // 4196 bytes: the bucket would be larger than the stream
        #expect(
            failure(header + (try reseal(outOfBucket, index: 0, isFinal: true, header: header, key: seal.key)), key: seal.key)
                == .malformed
        )

        var dirtyPadding = stream
        dirtyPadding[900] = 1
        #expect(
            failure(header + (try reseal(dirtyPadding, index: 0, isFinal: true, header: header, key: seal.key)), key: seal.key)
                == .malformed
        )

        let notFinal = header + (try reseal(stream, index: 0, isFinal: false, header: header, key: seal.key))
        #expect(failure(notFinal, key: seal.key) == .tampered)
    }

    @Test("Random access: each chunk decrypts alone to its plaintext range; another chunk in its place is refused")
    func randomAccess() throws {
        let (data, ciphertext, seal) = try fiveChunkFile()
        let pointer = AttachmentPointer(seal: seal, mediaType: "video/mp4")
        let header = ciphertext.prefix(AttachmentCipher.headerSize)
        let count = AttachmentCipher.chunkCount(plaintextSize: pointer.plaintextSize)
        #expect(count == 5)
        var joined = Data()
        for index in 0..<count {
            let range = AttachmentCipher.ciphertextRange(ofChunk: index, plaintextSize: pointer.plaintextSize)
            let sealed = ciphertext.subdata(in: Int(range.lowerBound)..<Int(range.upperBound))
            let part = try AttachmentCipher.decryptChunk(sealed, index: index, header: header, pointer: pointer)
            let plain = AttachmentCipher.plaintextRange(ofChunk: index, plaintextSize: pointer.plaintextSize)
            #expect(part == data.subdata(in: Int(plain.lowerBound)..<Int(plain.upperBound)))
            joined.append(part)

            let other = index == 0 ? 1 : index - 1
            let otherRange = AttachmentCipher.ciphertextRange(ofChunk: other, plaintextSize: pointer.plaintextSize)
            let wrong = ciphertext.subdata(in: Int(otherRange.lowerBound)..<Int(otherRange.upperBound))
            #expect(throws: SessionError(.tampered, "")) {
                try AttachmentCipher.decryptChunk(wrong, index: index, header: header, pointer: pointer)
            }
        }
        #expect(joined == data)
        #expect(
            AttachmentCipher.ciphertextRange(ofChunk: count - 1, plaintextSize: pointer.plaintextSize).upperBound
                == UInt64(ciphertext.count))

        let first = ciphertext.subdata(in: AttachmentCipher.headerSize..<AttachmentCipher.headerSize + Self.sealedChunk)
        #expect(throws: SessionError(.malformed, "")) {
            try AttachmentCipher.decryptChunk(first, index: count, header: header, pointer: pointer)
        }
        var badSize = pointer
        badSize.ciphertextSize += 1
        #expect(throws: SessionError(.malformed, "")) {
            try AttachmentCipher.decryptChunk(first, index: 0, header: header, pointer: badSize)
        }
        // One byte more lands in the same bucket: only the length inside chunk 0 tells.
        var lying = pointer
        lying.plaintextSize += 1
        #expect(lying.ciphertextSize == AttachmentCipher.ciphertextSize(forPlaintextSize: lying.plaintextSize))
        #expect(throws: SessionError(.tampered, "")) {
            try AttachmentCipher.decryptChunk(first, index: 0, header: header, pointer: lying)
        }
        #expect(throws: SessionError(.malformed, "")) {
            try AttachmentCipher.decryptChunk(first, index: 0, header: header.dropLast(), pointer: pointer)
        }
    }

    @Test("The digest and the plaintext size from the pointer are checked")
    func digestCheck() throws {
        let (ciphertext, seal) = try encrypt(plaintext(70_000))
        var wrongDigest = seal.digest
        wrongDigest[31] ^= 1
        #expect(throws: SessionError(.tampered, "")) {
            try AttachmentCipher.decrypt(wholeFile: ciphertext, key: seal.key, digest: wrongDigest)
        }
        #expect(failure(ciphertext, key: seal.key, digest: wrongDigest) == .tampered)
        #expect(failure(ciphertext, key: seal.key, digest: seal.digest) == nil)
        #expect(throws: SessionError(.tampered, "")) {
            try AttachmentCipher.decrypt(wholeFile: ciphertext, key: seal.key, digest: seal.digest, plaintextSize: 69_999)
        }
        #expect(throws: SessionError(.tampered, "")) {
            try AttachmentCipher.checkDigest(of: ciphertext.dropLast(), expected: seal.digest)
        }
        try AttachmentCipher.checkDigest(of: ciphertext, expected: seal.digest)
    }

    @Test("After a failure the decryptor refuses every further call")
    func poisonedAfterFailure() throws {
        let (ciphertext, seal) = try encrypt(plaintext(200_000))
        var decryptor = try AttachmentDecryptor(key: seal.key)
        var altered = ciphertext
        altered[Self.header + 5] ^= 1
        #expect(throws: SessionError(.tampered, "")) { try decryptor.update(altered.prefix(Self.header + Self.sealedChunk + 1)) }
        #expect(throws: SessionError.self) { try decryptor.update(ciphertext.dropFirst(Self.header + Self.sealedChunk + 1)) }
        #expect(throws: SessionError.self) { try decryptor.finish() }
    }

    @Test("Random bytes and random mutations of a real file never crash the decryptor and never decrypt")
    func randomInput() throws {
        for round in 0..<400 {
            var bytes = plaintext(Int.random(in: 0...3000))
            if round % 2 == 0, !bytes.isEmpty { bytes[0] = AttachmentCipher.formatVersion }
            #expect(failure(bytes, key: plaintext(32)) != nil)
        }
        let (ciphertext, seal) = try encrypt(plaintext(150_000))
        for _ in 0..<200 {
            var mutated = ciphertext
            switch Int.random(in: 0..<3) {
            case 0: mutated[Int.random(in: 0..<mutated.count)] ^= UInt8.random(in: 1...255)
            case 1: mutated = mutated.prefix(Int.random(in: 0..<mutated.count))
            default: mutated.insert(UInt8.random(in: 0...255), at: Int.random(in: 0...mutated.count))
            }
            #expect(failure(mutated, key: seal.key) != nil)
        }
    }

    // MARK: - Padding

    @Test("Padmé buckets: known values, two sizes in one bucket give equal ciphertext sizes")
    func padding() throws {
        #expect(AttachmentCipher.paddedSize(forPlaintextSize: 0) == 1024)
        #expect(AttachmentCipher.paddedSize(forPlaintextSize: 1016) == 1024)
        #expect(AttachmentCipher.paddedSize(forPlaintextSize: 1017) == 1088)  // 1025 rounded to 64
        #expect(AttachmentCipher.paddedSize(forPlaintextSize: 100_000) == 100_352)  // 100,008 rounded to 2048
        #expect(AttachmentCipher.paddedSize(forPlaintextSize: (1 << 31) - 8) == 1 << 31)
        #expect(AttachmentCipher.paddedSize(forPlaintextSize: 1 << 31) == (1 << 31) + (1 << 26))

        for (a, b) in [(1, 1000), (100_000, 100_300), (3_000_000, 3_010_000)] {
            let first = try encrypt(plaintext(a)).ciphertext
            let second = try encrypt(plaintext(b)).ciphertext
            #expect(first.count == second.count, "\(a) and \(b) share a bucket")
        }
        #expect(try encrypt(plaintext(100_000)).ciphertext.count != encrypt(plaintext(100_400)).ciphertext.count)

        // Every size lands in a bucket at least as large, never more than 6.25 % above it, and larger files
        // never get smaller buckets.
        var previous: UInt64 = 0
        for size in stride(from: UInt64(0), to: 5_000_000, by: 997) {
            let padded = AttachmentCipher.paddedSize(forPlaintextSize: size)
            #expect(padded >= size + 8 && padded >= previous)
            #expect(Double(padded) <= max(1024, Double(size + 8) * 1.0625))
            previous = padded
        }
    }
}
