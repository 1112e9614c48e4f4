import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import HeliographStore
import Testing

/// A server that serves other bytes for an encrypted attachment: the recipient's client refuses
/// them and writes no file, so the server can neither forge nor alter an attachment.
@Suite("A hostile server cannot forge or alter encrypted attachments")
struct HostileMediaTests {
    /// Alice sends Bob two attachments; returns Bob's pointers to them, in order.
    static func twoAttachments(_ server: TestServer) async throws -> (HeliographClient, AttachmentPointer, AttachmentPointer) {
        let alice = try await server.register("alice")
        let bob = try await server.register("bob_b")
        for (name, size) in [("first.bin", 300_000), ("second.bin", 300_000)] {
            try await alice.sendAttachment(
                file: try writeTestFile(noiseBytes(size), named: name), to: "bob_b", caption: name, mediaType: nil)
        }
        var pointers: [AttachmentPointer] = []
        for message in try await receive(2, from: bob) {
            guard case .message(let opened) = try await bob.open(message), let pointer = opened.content.attachments?.first
            else {
                Issue.record("Bob could not open an attachment message")
                continue
            }
            pointers.append(pointer)
        }
        let ordered = pointers.sorted { ($0.fileName ?? "") < ($1.fileName ?? "") }
        return (bob, ordered[0], ordered[1])
    }

    @Test("a flipped ciphertext byte, in the first chunk or the last, is refused and no file is written")
    func flippedByte() async throws {
        try await TestServer.run(serving: { HostileStorage($0) }) { server in
            let hostile = try #require(server.served as? HostileStorage)
            let (bob, pointer, _) = try await Self.twoAttachments(server)
            let hash = try #require(BlobHash(hex: pointer.blobHash))
            for offset in [Int64(20), Int64(pointer.ciphertextSize) - 3] {
                hostile.attack { $0.flipBlobByte = [hash: offset] }
                let destination = temporaryDirectory("bob-flipped").appendingPathComponent("first.bin")
                await #expect(throws: (any Error).self) { try await bob.download(attachment: pointer, to: destination) }
                #expect(!FileManager.default.fileExists(atPath: destination.path))
                let left = try FileManager.default.contentsOfDirectory(atPath: destination.deletingLastPathComponent().path)
                #expect(left.isEmpty, "left behind: \(left)")
            }
            // Served honestly again, the same pointer opens.
            hostile.attack { $0.flipBlobByte = [:] }
            let destination = temporaryDirectory("bob-honest").appendingPathComponent("first.bin")
            try await bob.download(attachment: pointer, to: destination)
            #expect(FileManager.default.contents(atPath: destination.path)?.count == 300_000)
        }
    }

    @Test("another attachment's ciphertext served under this one's name is refused")
    func swappedBlob() async throws {
        try await TestServer.run(serving: { HostileStorage($0) }) { server in
            let hostile = try #require(server.served as? HostileStorage)
            let (bob, first, second) = try await Self.twoAttachments(server)
            let firstHash = try #require(BlobHash(hex: first.blobHash))
            let secondHash = try #require(BlobHash(hex: second.blobHash))
            // Same size, valid ciphertext, sent by the same person to the same recipient.
            hostile.attack { $0.swapBlob = [firstHash: secondHash] }
            let destination = temporaryDirectory("bob-swapped").appendingPathComponent("first.bin")
            await #expect(throws: (any Error).self) { try await bob.download(attachment: first, to: destination) }
            #expect(!FileManager.default.fileExists(atPath: destination.path))
            // Even when the client is made to skip the digest (a pointer naming the served blob
            // but keeping its own key), the other file's chunks do not open under this key.
            var misdirected = first
            misdirected.blobHash = second.blobHash
            misdirected.digest = second.digest
            hostile.attack { $0.swapBlob = [:] }
            await #expect(throws: (any Error).self) { try await bob.download(attachment: misdirected, to: destination) }
            #expect(!FileManager.default.fileExists(atPath: destination.path))
        }
    }
}
