import Foundation
import HeliographCore
import HeliographStore
import Testing

/// The blob store's contract, on the filesystem (beside SQLite) and on PostgreSQL.
@Suite("BlobConformance")
struct BlobConformanceTests {
    /// Parts of 300,000 bytes: larger than a PostgreSQL chunk (256 KiB) and not a multiple of it
    /// or of the 64 KiB read size, so reads cross every kind of boundary.
    static let partSize = 300_000

    static func randomBytes(_ count: Int) -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    static func record(
        for data: Data, size: Int64? = nil, hash: BlobHash? = nil, partSize: Int = partSize, owner: AccountID = .random(),
        at time: Date = Fixture.start, expiresAt: Date? = nil
    ) -> UploadRecord {
        UploadRecord(
            id: .random(), owner: owner, size: size ?? Int64(data.count), sha256: hash ?? BlobHash.of(data),
            partSize: partSize, createdAt: time, expiresAt: expiresAt ?? time + 86_400)
    }

    static func part(_ data: Data, _ index: Int, size: Int = partSize) -> Data {
        let start = data.startIndex + index * size
        return Data(data[start..<min(start + size, data.endIndex)])
    }

    /// Uploads `data` whole, parts in order, and finishes it.
    static func store(_ data: Data, in blobs: any BlobStore, at time: Date = Fixture.start) async throws -> BlobInfo {
        let record = record(for: data, at: time)
        try await blobs.createUpload(record)
        for index in 0..<record.partCount { try await blobs.writePart(upload: record.id, index: index, bytes: part(data, index)) }
        return try await blobs.finish(upload: record.id, at: time)
    }

    /// Runs `body` and checks it fails with `code`; returns the error's message.
    @discardableResult
    static func expectFailure(
        _ code: HeliographError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
    ) async -> String {
        do {
            try await body()
            Issue.record("expected \(code), but it succeeded", sourceLocation: sourceLocation)
        } catch let error as HeliographError {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            return error.message
        } catch {
            Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
        }
        return ""
    }

    @Test("a multi-part upload sent out of order round-trips, and finishing twice returns the same blob", arguments: Backend.all)
    func roundTrip(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Self.randomBytes(1_000_000)
            let record = Self.record(for: data)
            #expect(record.partCount == 4)
            try await blobs.createUpload(record)
            #expect(try await blobs.upload(id: record.id) == record)
            #expect(try await blobs.receivedParts(of: record.id) == [])
            for index in [2, 0, 3] {
                try await blobs.writePart(upload: record.id, index: index, bytes: Self.part(data, index))
            }
            #expect(try await blobs.receivedParts(of: record.id) == [0, 2, 3])
            #expect(try await blobs.blob(record.sha256) == nil)
            try await blobs.writePart(upload: record.id, index: 1, bytes: Self.part(data, 1))
            let info = try await blobs.finish(upload: record.id, at: Fixture.start + 5)
            #expect(info == BlobInfo(hash: BlobHash.of(data), size: 1_000_000, createdAt: Fixture.start + 5))
            #expect(try await blobs.blob(info.hash) == info)
            #expect(try await blobs.contents(info.hash) == data)
            // Finished: the parts are gone, a second finish answers the same blob, and no more parts are taken.
            #expect(try await blobs.receivedParts(of: record.id) == [])
            #expect(try await blobs.finish(upload: record.id, at: Fixture.start + 9) == info)
            await Self.expectFailure(.unknownUpload) {
                try await blobs.writePart(upload: record.id, index: 0, bytes: Self.part(data, 0))
            }
        }
    }

    @Test(
        "a part sent again with the same bytes is accepted; with other bytes it is refused and the stored one kept",
        arguments: Backend.all)
    func partRetries(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Self.randomBytes(700_000)
            let record = Self.record(for: data)
            try await blobs.createUpload(record)
            try await blobs.writePart(upload: record.id, index: 0, bytes: Self.part(data, 0))
            try await blobs.writePart(upload: record.id, index: 0, bytes: Self.part(data, 0))
            var other = Self.part(data, 0)
            other[other.startIndex + 1234] ^= 0xFF
            let message = await Self.expectFailure(.partMismatch) {
                try await blobs.writePart(upload: record.id, index: 0, bytes: other)
            }
            #expect(message.contains("part 0"))
            #expect(try await blobs.receivedParts(of: record.id) == [0])
            for index in 1..<record.partCount {
                try await blobs.writePart(upload: record.id, index: index, bytes: Self.part(data, index))
            }
            // The kept part is the first one: the blob has the declared content.
            let info = try await blobs.finish(upload: record.id, at: Fixture.start)
            #expect(try await blobs.contents(info.hash) == data)
        }
    }

    @Test("parts past the end, of the wrong length, or for an unknown upload are refused", arguments: Backend.all)
    func partsOutOfRange(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Self.randomBytes(650_000)  // parts of 300,000, 300,000 and 50,000
            let record = Self.record(for: data)
            try await blobs.createUpload(record)
            await Self.expectFailure(.partOutOfRange) {
                try await blobs.writePart(upload: record.id, index: 3, bytes: Self.part(data, 2))
            }
            await Self.expectFailure(.partOutOfRange) {
                try await blobs.writePart(upload: record.id, index: -1, bytes: Self.part(data, 0))
            }
            await Self.expectFailure(.partOutOfRange) {
                try await blobs.writePart(upload: record.id, index: 0, bytes: Self.part(data, 0).prefix(299_999))
            }
            await Self.expectFailure(.partOutOfRange) {
                try await blobs.writePart(upload: record.id, index: 2, bytes: Self.part(data, 1))
            }
            #expect(try await blobs.receivedParts(of: record.id) == [])
            let unknown = UploadID.random()
            await Self.expectFailure(.unknownUpload) {
                try await blobs.writePart(upload: unknown, index: 0, bytes: Self.part(data, 0))
            }
            await Self.expectFailure(.unknownUpload) { _ = try await blobs.receivedParts(of: unknown) }
            await Self.expectFailure(.unknownUpload) { _ = try await blobs.finish(upload: unknown, at: Fixture.start) }
            #expect(try await blobs.upload(id: unknown) == nil)
        }
    }

    @Test("bad records are refused: negative size, empty parts, expiry before creation, a reused id", arguments: Backend.all)
    func badRecords(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Data("x".utf8)
            await Self.expectFailure(.badRequest) { try await blobs.createUpload(Self.record(for: data, size: -1)) }
            await Self.expectFailure(.badRequest) { try await blobs.createUpload(Self.record(for: data, partSize: 0)) }
            await Self.expectFailure(.badRequest) {
                try await blobs.createUpload(Self.record(for: data, expiresAt: Fixture.start - 1))
            }
            let record = Self.record(for: data)
            try await blobs.createUpload(record)
            await Self.expectFailure(.badRequest) { try await blobs.createUpload(record) }
        }
    }

    @Test("finishing with a part missing names it, and the upload finishes once the part is sent", arguments: Backend.all)
    func missingPart(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Self.randomBytes(950_000)
            let record = Self.record(for: data)
            try await blobs.createUpload(record)
            for index in [0, 2, 3] {
                try await blobs.writePart(upload: record.id, index: index, bytes: Self.part(data, index))
            }
            let message = await Self.expectFailure(.uploadIncomplete) {
                _ = try await blobs.finish(upload: record.id, at: Fixture.start)
            }
            #expect(message.contains(": 1"))
            #expect(try await blobs.blob(record.sha256) == nil)
            #expect(try await blobs.receivedParts(of: record.id) == [0, 2, 3])
            try await blobs.writePart(upload: record.id, index: 1, bytes: Self.part(data, 1))
            let info = try await blobs.finish(upload: record.id, at: Fixture.start)
            #expect(try await blobs.contents(info.hash) == data)
        }
    }

    @Test(
        "bytes whose hash is not the declared one make no blob; the upload starts over and then finishes", arguments: Backend.all)
    func wrongHash(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Self.randomBytes(800_000)
            let record = Self.record(for: data)
            try await blobs.createUpload(record)
            var corrupt = Self.part(data, 2)
            corrupt[corrupt.startIndex] ^= 0x01
            try await blobs.writePart(upload: record.id, index: 0, bytes: Self.part(data, 0))
            try await blobs.writePart(upload: record.id, index: 1, bytes: Self.part(data, 1))
            try await blobs.writePart(upload: record.id, index: 2, bytes: corrupt)
            await Self.expectFailure(.hashMismatch) { _ = try await blobs.finish(upload: record.id, at: Fixture.start) }
            #expect(try await blobs.blob(record.sha256) == nil)
            #expect(try await blobs.allBlobs(createdBefore: .distantFuture, limit: 10) == [])
            #expect(try await blobs.upload(id: record.id) == record)
            #expect(try await blobs.receivedParts(of: record.id) == [])
            for index in 0..<record.partCount {
                try await blobs.writePart(upload: record.id, index: index, bytes: Self.part(data, index))
            }
            let info = try await blobs.finish(upload: record.id, at: Fixture.start)
            #expect(info.hash == record.sha256)
            #expect(try await blobs.contents(info.hash) == data)
        }
    }

    @Test("bytes shorter than the declared size are refused part by part and the upload resumes", arguments: Backend.all)
    func wrongSize(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Self.randomBytes(610_001)
            let record = Self.record(for: data)
            try await blobs.createUpload(record)
            try await blobs.writePart(upload: record.id, index: 0, bytes: Self.part(data, 0))
            try await blobs.writePart(upload: record.id, index: 1, bytes: Self.part(data, 1))
            // A client that lost the last byte: its last part is one byte short.
            await Self.expectFailure(.partOutOfRange) {
                try await blobs.writePart(upload: record.id, index: 2, bytes: Self.part(data, 2).dropLast())
            }
            let message = await Self.expectFailure(.uploadIncomplete) {
                _ = try await blobs.finish(upload: record.id, at: Fixture.start)
            }
            #expect(message.contains(": 2"))
            try await blobs.writePart(upload: record.id, index: 2, bytes: Self.part(data, 2))
            let info = try await blobs.finish(upload: record.id, at: Fixture.start)
            #expect(info.size == 610_001)
            #expect(try await blobs.contents(info.hash) == data)
        }
    }

    @Test("the same content uploaded twice is one blob that keeps its first creation time", arguments: Backend.all)
    func deduplication(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Self.randomBytes(400_000)
            let first = try await Self.store(data, in: blobs, at: Fixture.start)
            let second = try await Self.store(data, in: blobs, at: Fixture.start + 60)
            #expect(first == second)
            #expect(second.createdAt == Fixture.start)
            #expect(try await blobs.allBlobs(createdBefore: .distantFuture, limit: 10) == [first])
            #expect(try await blobs.contents(first.hash) == data)
            // Other content is another blob.
            let other = try await Self.store(Self.randomBytes(10), in: blobs, at: Fixture.start + 60)
            #expect(other.hash != first.hash)
            #expect(try await blobs.allBlobs(createdBefore: .distantFuture, limit: 10).count == 2)
        }
    }

    @Test("range reads return exactly the bytes asked for, in chunks of at most 64 KiB", arguments: Backend.all)
    func rangeReads(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Self.randomBytes(1_000_000)
            let info = try await Self.store(data, in: blobs)
            let last = Int64(data.count - 1)
            let ranges: [ClosedRange<Int64>] = [0...0, last...last, 262_000...600_100, 299_999...300_000, 0...last]
            for range in ranges {
                let expected = data[Int(range.lowerBound)...Int(range.upperBound)]
                #expect(try await blobs.contents(info.hash, range: range) == expected, "\(range)")
            }
            // An end past the blob is cut to its last byte.
            #expect(try await blobs.contents(info.hash, range: 999_990...5_000_000) == data.suffix(10))
            var sizes: [Int] = []
            for try await chunk in blobs.read(info.hash, range: nil) { sizes.append(chunk.count) }
            #expect(sizes.reduce(0, +) == data.count)
            #expect(sizes.allSatisfy { $0 > 0 && $0 <= 64 * 1024 })
            await Self.expectFailure(.badRequest) { _ = try await blobs.contents(info.hash, range: 1_000_000...1_000_001) }
            await Self.expectFailure(.badRequest) { _ = try await blobs.contents(info.hash, range: -1...3) }
            await Self.expectFailure(.unknownBlob) { _ = try await blobs.contents(BlobHash.of(Data("absent".utf8))) }
        }
    }

    @Test("an empty file is a blob too", arguments: Backend.all)
    func emptyBlob(_ backend: Backend) async throws {
        try await backend.with { storage in
            let info = try await Self.store(Data(), in: storage.blobs)
            #expect(info.hash.hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            #expect(info.size == 0)
            #expect(try await storage.blobs.contents(info.hash) == Data())
        }
    }

    @Test("a 20 MiB upload of 512 KiB parts finishes and reads back intact", arguments: Backend.all)
    func largeUpload(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let partSize = 512 * 1024
            let size = 20 * 1024 * 1024 + 12_345
            // Parts are made from their index, so the whole file is never in this process either.
            func part(_ index: Int) -> Data {
                let length = min(partSize, size - index * partSize)
                var generator = SplitMix(seed: UInt64(index) &+ 0x9E37)
                return Data((0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
            }
            let count = (size + partSize - 1) / partSize
            var hasher = BlobHasher()
            for index in 0..<count { hasher.update(part(index)) }
            let hash = hasher.finalize()
            let record = UploadRecord(
                id: .random(), owner: .random(), size: Int64(size), sha256: hash, partSize: partSize,
                createdAt: Fixture.start, expiresAt: Fixture.start + 3600)
            try await blobs.createUpload(record)
            for index in (0..<count).reversed() { try await blobs.writePart(upload: record.id, index: index, bytes: part(index)) }
            let info = try await blobs.finish(upload: record.id, at: Fixture.start)
            #expect(info.size == Int64(size))
            var readBack = BlobHasher()
            var total = 0
            for try await chunk in blobs.read(hash, range: nil) {
                readBack.update(chunk)
                total += chunk.count
            }
            #expect(total == size)
            #expect(readBack.finalize() == hash)
            let tail = Int64(size - 100)...Int64(size - 1)
            #expect(try await blobs.contents(hash, range: tail) == part(count - 1).suffix(100))
        }
    }

    @Test("a discarded upload is gone with its parts", arguments: Backend.all)
    func discard(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Self.randomBytes(500_000)
            let record = Self.record(for: data)
            try await blobs.createUpload(record)
            try await blobs.writePart(upload: record.id, index: 0, bytes: Self.part(data, 0))
            #expect(try await blobs.discardUpload(id: record.id))
            #expect(try await blobs.upload(id: record.id) == nil)
            await Self.expectFailure(.unknownUpload) { _ = try await blobs.receivedParts(of: record.id) }
            await Self.expectFailure(.unknownUpload) {
                try await blobs.writePart(upload: record.id, index: 1, bytes: Self.part(data, 1))
            }
            #expect(try await blobs.discardUpload(id: record.id) == false)
        }
    }

    @Test("expired uploads are deleted, later ones and published blobs stay", arguments: Backend.all)
    func expiredUploads(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Self.randomBytes(1000)
            let early = Self.record(for: data, expiresAt: Fixture.start + 10)
            let finished = Self.record(for: data, expiresAt: Fixture.start + 15)
            let late = Self.record(for: data, expiresAt: Fixture.start + 30)
            for record in [early, finished, late] { try await blobs.createUpload(record) }
            try await blobs.writePart(upload: early.id, index: 0, bytes: data)
            try await blobs.writePart(upload: finished.id, index: 0, bytes: data)
            let info = try await blobs.finish(upload: finished.id, at: Fixture.start)
            #expect(try await blobs.deleteExpiredUploads(before: Fixture.start + 10) == 0)
            #expect(try await blobs.deleteExpiredUploads(before: Fixture.start + 20) == 2)
            #expect(try await blobs.upload(id: early.id) == nil)
            #expect(try await blobs.upload(id: finished.id) == nil)
            #expect(try await blobs.upload(id: late.id) == late)
            #expect(try await blobs.contents(info.hash) == data)
        }
    }

    @Test("a deleted blob is gone and other blobs are untouched", arguments: Backend.all)
    func deleteBlob(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let kept = Self.randomBytes(300_001)
            let doomed = Self.randomBytes(300_002)
            let keptInfo = try await Self.store(kept, in: blobs)
            let doomedInfo = try await Self.store(doomed, in: blobs)
            #expect(try await blobs.delete(doomedInfo.hash))
            #expect(try await blobs.blob(doomedInfo.hash) == nil)
            await Self.expectFailure(.unknownBlob) { _ = try await blobs.contents(doomedInfo.hash) }
            #expect(try await blobs.delete(doomedInfo.hash) == false)
            #expect(try await blobs.contents(keptInfo.hash) == kept)
            #expect(try await blobs.allBlobs(createdBefore: .distantFuture, limit: 10) == [keptInfo])
        }
    }

    @Test("allBlobs lists blobs created before a time, oldest first, up to a limit", arguments: Backend.all)
    func listing(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let first = try await Self.store(Self.randomBytes(100), in: blobs, at: Fixture.start + 30)
            let second = try await Self.store(Self.randomBytes(100), in: blobs, at: Fixture.start + 10)
            let third = try await Self.store(Self.randomBytes(100), in: blobs, at: Fixture.start + 20)
            #expect(try await blobs.allBlobs(createdBefore: Fixture.start + 30, limit: 10) == [second, third])
            #expect(try await blobs.allBlobs(createdBefore: Fixture.start + 31, limit: 2) == [second, third])
            #expect(try await blobs.allBlobs(createdBefore: Fixture.start + 31, limit: 10) == [second, third, first])
            #expect(try await blobs.allBlobs(createdBefore: Fixture.start + 10, limit: 10) == [])
        }
    }

    @Test("concurrent finishes of one upload (a client retrying) all get the same blob", arguments: Backend.all)
    func concurrentFinishes(_ backend: Backend) async throws {
        try await backend.with { storage in
            let blobs = storage.blobs
            let data = Self.randomBytes(900_000)
            let record = Self.record(for: data)
            try await blobs.createUpload(record)
            for index in 0..<record.partCount {
                try await blobs.writePart(upload: record.id, index: index, bytes: Self.part(data, index))
            }
            let results = try await withThrowingTaskGroup(of: BlobInfo.self) { group in
                for _ in 0..<6 { group.addTask { try await blobs.finish(upload: record.id, at: Fixture.start) } }
                var results: [BlobInfo] = []
                for try await info in group { results.append(info) }
                return results
            }
            #expect(results.count == 6)
            #expect(Set(results.map(\.hash)) == [BlobHash.of(data)])
            #expect(try await blobs.contents(BlobHash.of(data)) == data)
        }
    }

    @Test("on disk: blobs are private files, and a temporary file left by a crash is never a blob")
    func filesystemLayout() async throws {
        let directory = temporaryDirectory("blobs")
        let blobs = try FileBlobStore(directory: directory)
        let data = Self.randomBytes(1000)
        let info = try await Self.store(data, in: blobs)
        let manager = FileManager.default
        let path = blobs.root.appendingPathComponent(String(info.hash.hex.prefix(2))).appendingPathComponent(info.hash.hex)
        func mode(_ path: String) throws -> Int {
            try #require(try manager.attributesOfItem(atPath: path)[.posixPermissions] as? Int) & 0o777
        }
        #expect(try mode(path.path) == 0o600)
        #expect(try mode(blobs.root.path) == 0o700)
        #expect(try mode(path.deletingLastPathComponent().path) == 0o700)
        #expect(try mode(blobs.root.appendingPathComponent("uploads").path) == 0o700)
        // A half-written blob, as a crash before the rename leaves it.
        let half = BlobHash.of(Data("half".utf8))
        let fanOut = blobs.root.appendingPathComponent(String(half.hex.prefix(2)))
        try manager.createDirectory(at: fanOut, withIntermediateDirectories: true)
        try Data("ha".utf8).write(to: fanOut.appendingPathComponent(".\(half.hex).crash.tmp"))
        #expect(try await blobs.blob(half) == nil)
        #expect(try await blobs.allBlobs(createdBefore: .distantFuture, limit: 10) == [info])
        // A store reopened on the same directory sees the blob.
        #expect(try await FileBlobStore(directory: directory).contents(info.hash) == data)
    }
}

/// A small seeded generator (SplitMix64), so test data is reproducible from a number.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
