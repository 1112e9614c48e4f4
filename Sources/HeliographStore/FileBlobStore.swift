import Foundation
import HeliographCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Blobs as files under `<data directory>/blobs/`, the embedded backend.
///
/// A blob lives at `blobs/<first two hex digits>/<hex hash>`, so no directory grows past what
/// one hash prefix holds; its modification time is its creation time. An upload is a directory
/// `blobs/uploads/<id>/` holding `record.json`, one `<index>.part` file per received part and,
/// once finished, a `finished` file naming its blob. Every file is written under a temporary
/// name starting with a dot, flushed to disk, and only then linked or renamed to its real name,
/// so a crash leaves at worst a dot file that no lookup ever reads as a part or a blob.
/// Directories are mode 0700 and files 0600: blobs of private chats are ciphertext, but their
/// sizes and existence are still nobody else's business on a shared machine.
public struct FileBlobStore: BlobStore {
    /// The `blobs` directory.
    public let root: URL

    /// Opens (creating, mode 0700) the blob directory `blobs` inside `directory`.
    public init(directory: URL) throws {
        root = directory.appendingPathComponent("blobs", isDirectory: true)
        for url in [root, root.appendingPathComponent("uploads", isDirectory: true)] {
            try FileManager.default.createDirectory(
                at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }

    private var uploadsDirectory: URL { root.appendingPathComponent("uploads", isDirectory: true) }

    private func uploadDirectory(_ id: UploadID) -> URL {
        uploadsDirectory.appendingPathComponent(id.description, isDirectory: true)
    }

    private func fanOutDirectory(_ hash: BlobHash) -> URL {
        root.appendingPathComponent(String(hash.hex.prefix(2)), isDirectory: true)
    }

    private func blobFile(_ hash: BlobHash) -> URL { fanOutDirectory(hash).appendingPathComponent(hash.hex) }

    private static func partName(_ index: Int) -> String { "\(index).part" }

    // MARK: Uploads

    public func createUpload(_ record: UploadRecord) async throws {
        try record.validate()
        let directory = uploadDirectory(record.id)
        try await onDispatchThread {
            guard mkdir(directory.path, 0o700) == 0 else {
                if errno == EEXIST { throw HeliographError(.badRequest, "an upload with id \(record.id) already exists") }
                throw FileBlobError("create \(directory.path)", errno)
            }
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .millisecondsSince1970
            try Self.writeDurably(try encoder.encode(record), to: directory.appendingPathComponent("record.json"))
            try Self.syncDirectory(uploadsDirectory)
        }
    }

    public func upload(id: UploadID) async throws -> UploadRecord? {
        try await onDispatchThread { try readRecord(id) }
    }

    public func writePart(upload id: UploadID, index: Int, bytes: Data) async throws {
        try await onDispatchThread {
            let record = try requireOpenUpload(id)
            if let error = record.partError(index: index, length: bytes.count) { throw error }
            let directory = uploadDirectory(id)
            let part = directory.appendingPathComponent(Self.partName(index))
            if let stored = try Self.contentsIfPresent(part) {
                guard stored == bytes else { throw Self.mismatch(id, index) }
                return
            }
            let temporary = directory.appendingPathComponent(".\(index).\(UUID().uuidString).tmp")
            do {
                try Self.writeDurably(bytes, to: temporary)
            } catch let error as FileBlobError where error.code == ENOENT {
                throw HeliographError(.unknownUpload, "upload \(id) was discarded")
            }
            defer { unlink(temporary.path) }
            // link, unlike rename, never replaces: of two racing writers of one part exactly one
            // wins, and the other compares its bytes with the winner's.
            if link(temporary.path, part.path) == 0 {
                try Self.syncDirectory(directory)
                return
            }
            let failure = errno
            guard failure == EEXIST else { throw FileBlobError("store part \(part.path)", failure) }
            guard try Self.contentsIfPresent(part) == bytes else { throw Self.mismatch(id, index) }
        }
    }

    public func receivedParts(of id: UploadID) async throws -> [Int] {
        try await onDispatchThread {
            guard try readRecord(id) != nil else { throw Self.unknown(id) }
            return try receivedIndices(id)
        }
    }

    public func finish(upload id: UploadID, at time: Date) async throws -> BlobInfo {
        let outcome = try await onDispatchThread { () throws -> BlobHash in
            guard let record = try readRecord(id) else { throw Self.unknown(id) }
            let directory = uploadDirectory(id)
            if let finished = try finishedHash(id) { return finished }
            let received = Set(try receivedIndices(id))
            let missing = (0..<record.partCount).filter { !received.contains($0) }
            guard missing.isEmpty else {
                let listed = missing.prefix(20).map(String.init).joined(separator: ", ")
                let more = missing.count > 20 ? " and \(missing.count - 20) more" : ""
                throw HeliographError(
                    .uploadIncomplete, "upload \(id) is missing \(missing.count) part(s): \(listed)\(more)")
            }
            let fanOut = fanOutDirectory(record.sha256)
            try FileManager.default.createDirectory(
                at: fanOut, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let temporary = fanOut.appendingPathComponent(".\(record.sha256.hex).\(UUID().uuidString).tmp")
            defer { unlink(temporary.path) }
            // One pass: each part is read in pieces, hashed, and appended to the temporary file.
            let (hash, size): (BlobHash, Int64)
            do {
                (hash, size) = try Self.concatenate(
                    (0..<record.partCount).map { directory.appendingPathComponent(Self.partName($0)) }, into: temporary)
            } catch {
                // A concurrent finish of the same upload (a client retrying) completed meanwhile
                // and removed the parts: its blob is the answer.
                if let finished = try finishedHash(id) { return finished }
                throw error
            }
            guard size == record.size, hash == record.sha256 else {
                // Which part is wrong cannot be told: drop them all so the upload starts over clean.
                for index in received { unlink(directory.appendingPathComponent(Self.partName(index)).path) }
                throw HeliographError(
                    .hashMismatch,
                    size == record.size
                        ? "upload \(id) has SHA-256 \(hash.hex), not the declared \(record.sha256.hex); send its parts again"
                        : "upload \(id) has \(size) bytes, not the declared \(record.size); send its parts again")
            }
            let final = blobFile(hash)
            if access(final.path, F_OK) != 0 {
                try FileManager.default.setAttributes([.modificationDate: time], ofItemAtPath: temporary.path)
                guard rename(temporary.path, final.path) == 0 else { throw FileBlobError("publish \(final.path)", errno) }
                try Self.syncDirectory(fanOut)
            }
            // A temporary name of its own: a concurrent finish of the same upload writes the same mark.
            let mark = directory.appendingPathComponent(".finished.\(UUID().uuidString).tmp")
            try Self.writeDurably(Data(hash.hex.utf8), to: mark)
            guard rename(mark.path, directory.appendingPathComponent("finished").path) == 0 else {
                unlink(mark.path)
                throw FileBlobError("mark upload \(id) finished", errno)
            }
            try Self.syncDirectory(directory)
            for index in received { unlink(directory.appendingPathComponent(Self.partName(index)).path) }
            return hash
        }
        guard let info = try await blob(outcome) else {
            throw HeliographError(.unknownBlob, "the blob \(outcome.hex) of upload \(id) was deleted since it was finished")
        }
        return info
    }

    public func discardUpload(id: UploadID) async throws -> Bool {
        try await onDispatchThread { try removeUpload(id) }
    }

    public func deleteExpiredUploads(before time: Date) async throws -> Int {
        try await onDispatchThread {
            var deleted = 0
            for name in try FileManager.default.contentsOfDirectory(atPath: uploadsDirectory.path) {
                guard let id = UploadID(name), let record = try readRecord(id), record.expiresAt < time else { continue }
                if try removeUpload(id) { deleted += 1 }
            }
            return deleted
        }
    }

    // MARK: Blobs

    public func blob(_ hash: BlobHash) async throws -> BlobInfo? {
        try await onDispatchThread { try info(hash) }
    }

    public func read(_ hash: BlobHash, range: ClosedRange<Int64>?) -> AsyncThrowingStream<Data, any Error> {
        let reader = FileChunkReader(path: blobFile(hash).path, hash: hash, range: range)
        return AsyncThrowingStream { try await onDispatchThread { try reader.next() } }
    }

    public func delete(_ hash: BlobHash) async throws -> Bool {
        try await onDispatchThread {
            if unlink(blobFile(hash).path) == 0 { return true }
            if errno == ENOENT { return false }
            throw FileBlobError("delete blob \(hash.hex)", errno)
        }
    }

    public func allBlobs(createdBefore time: Date, limit: Int) async throws -> [BlobInfo] {
        try await onDispatchThread {
            var found: [BlobInfo] = []
            let manager = FileManager.default
            for prefix in try manager.contentsOfDirectory(atPath: root.path) where prefix.utf8.count == 2 {
                let directory = root.appendingPathComponent(prefix, isDirectory: true)
                for name in try manager.contentsOfDirectory(atPath: directory.path) {
                    // Temporary files start with a dot and are never valid hashes.
                    guard let hash = BlobHash(hex: name), let info = try info(hash), info.createdAt < time else { continue }
                    found.append(info)
                }
            }
            found.sort { ($0.createdAt, $0.hash.hex) < ($1.createdAt, $1.hash.hex) }
            return Array(found.prefix(max(0, limit)))
        }
    }

    // MARK: Helpers (blocking; called on an I/O thread)

    private func info(_ hash: BlobHash) throws -> BlobInfo? {
        var status = stat()
        guard stat(blobFile(hash).path, &status) == 0 else {
            if errno == ENOENT { return nil }
            throw FileBlobError("inspect blob \(hash.hex)", errno)
        }
        let millis = Int64(status.st_mtim.tv_sec) * 1000 + Int64(status.st_mtim.tv_nsec) / 1_000_000
        return BlobInfo(hash: hash, size: Int64(status.st_size), createdAt: Date(millisecondsSince1970: millis))
    }

    private func readRecord(_ id: UploadID) throws -> UploadRecord? {
        guard let data = try Self.contentsIfPresent(uploadDirectory(id).appendingPathComponent("record.json")) else {
            return nil
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return try decoder.decode(UploadRecord.self, from: data)
    }

    private func finishedHash(_ id: UploadID) throws -> BlobHash? {
        guard let data = try Self.contentsIfPresent(uploadDirectory(id).appendingPathComponent("finished")) else {
            return nil
        }
        guard let hash = BlobHash(hex: String(decoding: data, as: UTF8.self)) else {
            throw FileBlobError("read the finished mark of upload \(id)", EINVAL)
        }
        return hash
    }

    private func requireOpenUpload(_ id: UploadID) throws -> UploadRecord {
        guard let record = try readRecord(id) else { throw Self.unknown(id) }
        if let hash = try finishedHash(id) {
            throw HeliographError(.unknownUpload, "upload \(id) is already finished as blob \(hash.hex)")
        }
        return record
    }

    private func receivedIndices(_ id: UploadID) throws -> [Int] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: uploadDirectory(id).path)
        } catch {
            throw Self.unknown(id)
        }
        return names.compactMap { name in name.hasSuffix(".part") ? Int(name.dropLast(5)) : nil }.sorted()
    }

    private func removeUpload(_ id: UploadID) throws -> Bool {
        let directory = uploadDirectory(id)
        // Renamed away first, so the upload disappears at once even if removing its files is cut short.
        let doomed = uploadsDirectory.appendingPathComponent(".discarded-\(UUID().uuidString)")
        guard rename(directory.path, doomed.path) == 0 else {
            if errno == ENOENT { return false }
            throw FileBlobError("discard upload \(id)", errno)
        }
        try FileManager.default.removeItem(at: doomed)
        return true
    }

    private static func unknown(_ id: UploadID) -> HeliographError {
        HeliographError(.unknownUpload, "no upload has id \(id); it may have expired or been discarded")
    }

    private static func mismatch(_ id: UploadID, _ index: Int) -> HeliographError {
        HeliographError(.partMismatch, "part \(index) of upload \(id) is already stored with different bytes")
    }

    /// The whole file, or nil when it does not exist.
    private static func contentsIfPresent(_ url: URL) throws -> Data? {
        let descriptor = open(url.path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw FileBlobError("open \(url.path)", errno)
        }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        return try handle.readToEnd() ?? Data()
    }

    /// Creates `url` (which must not exist) with mode 0600, writes `data` and flushes it to disk.
    private static func writeDurably(_ data: Data, to url: URL) throws {
        let descriptor = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw FileBlobError("create \(url.path)", errno) }
        defer { close(descriptor) }
        try writeAll(descriptor, data, url)
        guard fsync(descriptor) == 0 else { throw FileBlobError("flush \(url.path)", errno) }
    }

    private static func writeAll(_ descriptor: Int32, _ data: Data, _ url: URL) throws {
        try data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
            var offset = 0
            while offset < buffer.count {
                let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw FileBlobError("write \(url.path)", errno)
                }
                offset += written
            }
        }
    }

    /// Appends the files to a new file `destination` (mode 0600) in pieces of 64 KiB, hashing as
    /// it goes, and flushes it; returns the hash and the length.
    private static func concatenate(_ sources: [URL], into destination: URL) throws -> (BlobHash, Int64) {
        let output = open(destination.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw FileBlobError("create \(destination.path)", errno) }
        defer { close(output) }
        var hasher = BlobHasher()
        var size: Int64 = 0
        for source in sources {
            guard let input = FileHandle(forReadingAtPath: source.path) else {
                throw FileBlobError("open \(source.path)", ENOENT)
            }
            defer { try? input.close() }
            while let piece = try input.read(upToCount: blobReadChunkSize), !piece.isEmpty {
                hasher.update(piece)
                try writeAll(output, piece, destination)
                size += Int64(piece.count)
            }
        }
        guard fsync(output) == 0 else { throw FileBlobError("flush \(destination.path)", errno) }
        return (hasher.finalize(), size)
    }

    /// Flushes a directory, so a rename or link inside it survives a power cut.
    private static func syncDirectory(_ url: URL) throws {
        let descriptor = open(url.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileBlobError("open \(url.path)", errno) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw FileBlobError("flush \(url.path)", errno) }
    }
}

/// A file operation of the blob store failed for a reason other than the caller's input.
struct FileBlobError: Error, CustomStringConvertible {
    let operation: String
    let code: Int32

    init(_ operation: String, _ code: Int32) {
        self.operation = operation
        self.code = code
    }

    var description: String { "cannot \(operation): \(String(cString: strerror(code)))" }
}

/// Reads one blob file range chunk by chunk as a stream's consumer pulls.
///
/// `@unchecked Sendable`: the stream calls `next()` for one pull at a time, never concurrently,
/// and the state is only touched there.
private final class FileChunkReader: @unchecked Sendable {
    private let path: String
    private let hash: BlobHash
    private let requested: ClosedRange<Int64>?
    private var handle: FileHandle?
    private var position: Int64 = 0
    private var end: Int64 = -1
    private var opened = false

    init(path: String, hash: BlobHash, range: ClosedRange<Int64>?) {
        self.path = path
        self.hash = hash
        self.requested = range
    }

    deinit { try? handle?.close() }

    func next() throws -> Data? {
        if !opened {
            opened = true
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw HeliographError(.unknownBlob, "no blob has hash \(hash.hex)")
            }
            self.handle = handle
            let size = Int64(try handle.seekToEnd())
            guard let range = try resolvedBlobRange(requested, size: size) else { return nil }
            position = range.lowerBound
            end = range.upperBound
            try handle.seek(toOffset: UInt64(position))
        }
        guard position <= end, let handle else {
            try? handle?.close()
            handle = nil
            return nil
        }
        let count = Int(min(Int64(blobReadChunkSize), end - position + 1))
        guard let data = try handle.read(upToCount: count), !data.isEmpty else {
            throw FileBlobError("read blob \(hash.hex)", EIO)
        }
        position += Int64(data.count)
        return data
    }
}
