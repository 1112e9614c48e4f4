import Crypto
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import HeliographStore
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// `count` bytes that differ from file to file and never repeat a pattern a test could miss.
func noiseBytes(_ count: Int) -> Data {
    var generator = SystemRandomNumberGenerator()
    var data = Data(count: count)
    data.withUnsafeMutableBytes { raw in
        let words = raw.bindMemory(to: UInt64.self)
        for index in words.indices { words[index] = generator.next() }
        for index in (words.count * 8)..<count { raw[index] = UInt8.random(in: 0...255) }
    }
    return data
}

/// Writes `data` to a new file named `name` in a fresh directory.
func writeTestFile(_ data: Data, named name: String) throws -> URL {
    let file = temporaryDirectory("media").appendingPathComponent(name)
    try data.write(to: file)
    return file
}

/// The progress reports a transfer made, in order.
final class ProgressLog: Sendable {
    private let reports = Mutex<[(done: Int64, total: Int64)]>([])

    var callback: TransferProgress { { done, total in self.reports.withLock { $0.append((done, total)) } } }
    var all: [(done: Int64, total: Int64)] { reports.withLock { $0 } }
}

/// The bytes a file-backed test server stores for a blob.
func storedBlob(_ server: TestServer, _ hash: BlobHash) -> Data? {
    let file = server.directory.appendingPathComponent("blobs").appendingPathComponent(String(hash.hex.prefix(2)))
        .appendingPathComponent(hash.hex)
    return FileManager.default.contents(atPath: file.path)
}

/// What the client remembers of an unfinished upload (the part a test reads).
struct RememberedUpload: Decodable {
    var uploadId: UUID
}

@Suite("Media through the client SDK: uploads, downloads and attachments against a real server")
struct MediaKitTests {
    static let partSize = 524_288

    @Test("an encrypted 3 MiB attachment reaches Bob intact; the server holds only ciphertext; others cannot fetch it")
    func encryptedAttachmentRoundTrip() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let carol = try await server.register("carol")
            let plaintext = noiseBytes(3 * 1024 * 1024)
            let file = try writeTestFile(plaintext, named: "report.bin")
            let uploaded = ProgressLog()
            try await alice.sendAttachment(
                file: file, to: "bob_b", caption: "the report", mediaType: "application/x-report", progress: uploaded.callback)
            let ciphertextSize = Int64(AttachmentCipher.ciphertextSize(forPlaintextSize: UInt64(plaintext.count)))
            #expect(uploaded.all.last.map { $0.done == ciphertextSize && $0.total == ciphertextSize } == true)

            let message = try await receive(1, from: bob)[0]
            guard case .message(let decrypted) = try await bob.open(message) else {
                Issue.record("Bob could not open the message")
                return
            }
            #expect(decrypted.content.text == "the report")
            let pointer = try #require(decrypted.content.attachments?.first)
            #expect(decrypted.content.attachments?.count == 1)
            #expect(pointer.fileName == "report.bin")
            #expect(pointer.mediaType == "application/x-report")
            #expect(pointer.plaintextSize == UInt64(plaintext.count))
            #expect(pointer.ciphertextSize == UInt64(ciphertextSize))

            // What the server stores is the ciphertext: the right size, and no run of the plaintext in it.
            let hash = try #require(BlobHash(hex: pointer.blobHash))
            let stored = try #require(storedBlob(server, hash))
            #expect(stored.count == Int(ciphertextSize))
            #expect(stored != plaintext)
            #expect(stored.range(of: plaintext.subdata(in: 1_000_000..<1_000_064)) == nil)

            let destination = temporaryDirectory("bob-downloads").appendingPathComponent("report.bin")
            let downloaded = ProgressLog()
            try await bob.download(attachment: pointer, to: destination, progress: downloaded.callback)
            #expect(FileManager.default.contents(atPath: destination.path) == plaintext)
            #expect(downloaded.all.last?.done == ciphertextSize)
            // Nothing is left beside the file: no partial ciphertext, no temporary plaintext.
            let left = try FileManager.default.contentsOfDirectory(atPath: destination.deletingLastPathComponent().path)
            #expect(left == ["report.bin"])

            // Carol was not sent the message: the server does not let her read the blob.
            await #expect(throws: HeliographError(.unknownBlob, "")) {
                try await carol.download(blob: hash, to: temporaryDirectory("carol").appendingPathComponent("stolen"))
            }
        }
    }

    @Test("an upload cut off after two parts continues with only the missing parts from a fresh client")
    func uploadResumesAfterACrash() async throws {
        try await TestServer.run { server in
            let first = try await server.register("alice")
            let data = noiseBytes(5 * Self.partSize + 12_345)
            let file = try writeTestFile(data, named: "video.bin")
            // The progress callback cancels the upload after its second part, as a crash would stop it.
            // (A task of its own, so that only the upload is cancelled.)
            let cut = Task {
                // One part at a time, so the parts the server holds are exactly those reported.
                try await first.upload(file: file, purpose: .encrypted, partsInFlight: 1) { done, _ in
                    if done >= 2 * Int64(Self.partSize) { withUnsafeCurrentTask { $0?.cancel() } }
                }
            }
            await #expect(throws: CancellationError.self) { try await cut.value }
            // The server holds parts 0 and 1, and the profile directory remembers the upload.
            let remembered = server.profiles.directory.appendingPathComponent("alice-laptop.uploads.json")
            let pending = try JSONDecoder().decode(
                [RememberedUpload].self, from: try #require(FileManager.default.contents(atPath: remembered.path)))
            let id = try #require(pending.first?.uploadId)
            let status = try await first.httpTransfer().json("GET", "/v1/uploads/\(id.uuidString)", as: UploadStatus.self)
            #expect(status.receivedParts == [0, 1])
            #expect(status.partCount == 6)

            // A new client of the same profile, as after a restart.
            let second = try HeliographClient(profileName: "alice-laptop", store: server.profiles)
            let resumed = ProgressLog()
            let blob = try await second.upload(
                file: file, purpose: .encrypted, partsInFlight: 1, progress: resumed.callback)
            // It starts from the two parts the server has and sends the four others, one report each.
            #expect(resumed.all.first?.done == 2 * Int64(Self.partSize))
            #expect(resumed.all.count == 1 + 4)
            #expect(resumed.all.last?.done == Int64(data.count))
            #expect(blob.sha256 == BlobHash(bytes: Data(SHA256.hash(data: data))))
            #expect(blob.size == Int64(data.count))
            #expect(storedBlob(server, blob.sha256) == data)
            // Finished uploads are forgotten.
            let after = FileManager.default.contents(atPath: remembered.path).flatMap {
                try? JSONDecoder().decode([RememberedUpload].self, from: $0)
            }
            #expect(after?.isEmpty ?? true)
        }
    }

    @Test("an upload whose bytes did not match its hash is sent once more in full, and then succeeds")
    func hashMismatchSendsEverythingAgain() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let data = noiseBytes(5 * Self.partSize + 999)
            let file = try writeTestFile(data, named: "changing.bin")
            let offset = UInt64(3 * Self.partSize + 10)
            /// Overwrites one byte of the file on disk.
            @Sendable func put(_ byte: UInt8) {
                guard let handle = try? FileHandle(forWritingTo: file) else { return }
                try? handle.seek(toOffset: offset)
                try? handle.write(contentsOf: Data([byte]))
                try? handle.close()
            }
            let reports = ProgressLog()
            let passes = Mutex(0)
            // During the first pass part 3 is read with one byte changed (as a disk or a
            // network might damage it); the byte is back before the second pass reads it.
            // One part at a time, so each part is read after the previous one was reported.
            let blob = try await alice.upload(file: file, purpose: .encrypted, partsInFlight: 1) { done, total in
                reports.callback(done, total)
                let pass = passes.withLock { count -> Int in
                    if done == 0 { count += 1 }
                    return count
                }
                if pass == 1, done == 2 * Int64(Self.partSize) { put(data[Int(offset)] ^ 0xFF) }
                if pass == 1, done == total { put(data[Int(offset)]) }
            }
            #expect(passes.withLock { $0 } == 2)
            // Two full passes of 6 parts each, each starting from nothing.
            #expect(reports.all.count == 2 * 7)
            #expect(reports.all.filter { $0.done == 0 }.count == 2)
            #expect(blob.sha256 == BlobHash(bytes: Data(SHA256.hash(data: data))))
            #expect(storedBlob(server, blob.sha256) == data)
        }
    }

    @Test("a download continues a partial file with a range request, and a damaged partial file is caught and redone")
    func downloadResumesFromAPartialFile() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let data = noiseBytes(1_500_000)
            let blob = try await alice.upload(file: try writeTestFile(data, named: "archive.bin"), purpose: .encrypted)
            let destination = temporaryDirectory("downloads").appendingPathComponent("archive.bin")
            let partial = destination.appendingPathExtension("part")

            // Half of it arrived before the connection dropped.
            try data.prefix(700_000).write(to: partial)
            let resumed = ProgressLog()
            try await alice.download(blob: blob.sha256, to: destination, progress: resumed.callback)
            #expect(resumed.all.first.map { $0.done == 700_000 && $0.total == 1_500_000 } == true)
            #expect(FileManager.default.contents(atPath: destination.path) == data)
            #expect(!FileManager.default.fileExists(atPath: partial.path))

            // A partial file that does not match the blob: the continued result fails its hash,
            // and the download starts over from nothing.
            let other = temporaryDirectory("downloads").appendingPathComponent("archive.bin")
            try noiseBytes(700_000).write(to: other.appendingPathExtension("part"))
            let redone = ProgressLog()
            try await alice.download(blob: blob.sha256, to: other, progress: redone.callback)
            #expect(FileManager.default.contents(atPath: other.path) == data)
            #expect(redone.all.first?.done == 700_000)
            #expect(redone.all.contains { $0.done == 0 })
            #expect(!FileManager.default.fileExists(atPath: other.appendingPathExtension("part").path))
        }
    }

    @Test("a file posted in a private group is an encrypted attachment every member can download")
    func privateGroupAttachment() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let carol = try await server.register("carol")
            let chat = try await alice.createPrivateGroup(title: "Plans", members: ["bob_b"])
            let plaintext = noiseBytes(800_000)
            let file = try writeTestFile(plaintext, named: "plans.pdf")
            let posted = try await alice.postMedia([file], caption: "the plans", in: chat)

            let event = try #require(try await catchUp(bob).first { $0.seq == posted.seq })
            #expect(event.dropped == nil)
            #expect(event.text == "the plans")
            let pointer = try #require(event.attachments?.first)
            #expect(pointer.mediaType == "application/pdf")
            #expect(pointer.fileName == "plans.pdf")
            let destination = temporaryDirectory("bob-group").appendingPathComponent("plans.pdf")
            try await bob.download(attachment: pointer, to: destination)
            #expect(FileManager.default.contents(atPath: destination.path) == plaintext)

            // Not a member: not readable.
            let hash = try #require(BlobHash(hex: pointer.blobHash))
            await #expect(throws: HeliographError(.unknownBlob, "")) {
                try await carol.download(blob: hash, to: temporaryDirectory("carol").appendingPathComponent("plans"))
            }

            // Deleting the post for everyone: the server cannot see an encrypted deletion, so the
            // Kit releases the post's attachments itself; they expire after the grace period.
            let stored = try #require(try await server.served.chatLog.message(of: chat, sequence: posted.seq))
            let holder = BlobHolder.chatPost(chat, sender: alice.profile.accountID, messageID: stored.update.messageID)
            #expect(try await server.served.blobReferences.references(heldBy: holder).allSatisfy { $0.expiresAt == nil })
            try await alice.deleteMessage(posted.seq, in: chat)
            let released = try await server.served.blobReferences.references(heldBy: holder)
            #expect(!released.isEmpty)
            #expect(released.allSatisfy { $0.expiresAt != nil })
        }
    }

    @Test("a server that accepts the connection and never answers fails the transfer after the idle timeout")
    func silentServerTimesOut() async throws {
        // A listener whose connections are accepted and then ignored.
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        defer { silent.close(promise: nil) }
        let port = try #require(silent.localAddress?.port)
        var transfer = try HTTPTransfer(server: URL(string: "http://127.0.0.1:\(port)")!, token: "token")
        transfer.idleTimeout = .milliseconds(300)
        let started = ContinuousClock.now
        await #expect(throws: ConnectionClosed.self) {
            _ = try await transfer.data("GET", "/v1/blobs/\(String(repeating: "0", count: 64))")
        }
        #expect(ContinuousClock.now - started < .seconds(10))
        // Nothing listening at all: the connection fails at once.
        silent.close(promise: nil)
        try? await Task.sleep(for: .milliseconds(100))
        await #expect(throws: ConnectionFailed.self) {
            _ = try await transfer.data("GET", "/v1/blobs/\(String(repeating: "0", count: 64))")
        }
    }

    @Test("refusals come back as the server's error codes")
    func refusalsCarryTheirCodes() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            // A public upload of bytes that are not the declared image.
            let fake = try writeTestFile(noiseBytes(4_000), named: "fake.jpg")
            await #expect(throws: HeliographError(.unsupportedMedia, "")) {
                try await alice.upload(file: fake, purpose: .public, mediaType: "image/jpeg")
            }
            // No such blob.
            let missing = try #require(BlobHash(bytes: Data(SHA256.hash(data: Data("nothing".utf8)))))
            await #expect(throws: HeliographError(.unknownBlob, "")) {
                try await alice.download(blob: missing, to: temporaryDirectory("missing").appendingPathComponent("x"))
            }
            // No such upload.
            await #expect(throws: HeliographError(.unknownUpload, "")) {
                try await alice.httpTransfer().json("GET", "/v1/uploads/\(UUID().uuidString)", as: UploadStatus.self)
            }
        }
    }
}
