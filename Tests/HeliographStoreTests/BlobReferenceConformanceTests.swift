import Foundation
import HeliographCore
import HeliographStore
import Testing

/// The blob reference store's contract, on SQLite and on PostgreSQL.
@Suite("BlobReferenceConformance")
struct BlobReferenceConformanceTests {
    static func hash(_ label: String) -> BlobHash { BlobHash.of(Data(label.utf8)) }

    @Test("references are found by blob and by holder, kept once, and only while live", arguments: Backend.all)
    func referencesByBlobAndHolder(_ backend: Backend) async throws {
        try await backend.with { storage in
            let store = storage.blobReferences
            let start = Fixture.start
            let (alice, bob, chat) = (AccountID.random(), AccountID.random(), ChatID.random())
            let poster = AccountID.random()
            let photo = Self.hash("photo")
            let upload = UploadID.random()
            let message = BlobHolder.directMessage(sender: alice, messageID: try MessageID(validating: "m-1"))
            let references = [
                BlobReference(
                    blob: photo, holder: .upload(upload), reader: .account(alice), quotaBytes: 5_000, createdAt: start,
                    expiresAt: start + 3_600),
                BlobReference(blob: photo, holder: message, reader: .account(alice), createdAt: start),
                BlobReference(blob: photo, holder: message, reader: .account(bob), createdAt: start),
                BlobReference(
                    blob: photo, holder: .chatPost(chat, sender: poster, messageID: try MessageID(validating: "p-7")),
                    reader: .chat(chat), createdAt: start),
            ]
            try await store.add(references)
            // A repeat changes nothing (a retried send adds the same references).
            try await store.add(references)
            #expect(Set(try await store.references(to: photo, liveAt: start, limit: 10)) == Set(references))
            #expect(Set(try await store.references(heldBy: message)) == Set(references[1...2]))
            #expect(
                try await store.references(heldBy: .chatPost(chat, sender: poster, messageID: try MessageID(validating: "p-7")))
                    == [references[3]])
            // After the upload reference's expiry only the message and post references are live.
            let later = try await store.references(to: photo, liveAt: start + 7_200, limit: 10)
            #expect(Set(later) == Set(references[1...3]))
            #expect(try await store.references(to: Self.hash("other"), liveAt: start, limit: 10).isEmpty)
        }
    }

    @Test("the readers of a blob come once each, in key order, in pages, live ones only", arguments: Backend.all)
    func readersInPages(_ backend: Backend) async throws {
        try await backend.with { storage in
            let store = storage.blobReferences
            let start = Fixture.start
            let blob = Self.hash("shared everywhere")
            let poster = AccountID.random()
            let chats = (0..<450).map { _ in ChatID.random() }
            var references: [BlobReference] = []
            for (index, chat) in chats.enumerated() {
                // Two posts in each chat: the chat is still one reader.
                for post in 0..<2 {
                    references.append(
                        BlobReference(
                            blob: blob,
                            holder: .chatPost(chat, sender: poster, messageID: try MessageID(validating: "p\(index)-\(post)")),
                            reader: .chat(chat), createdAt: start))
                }
            }
            let (alice, gone) = (AccountID.random(), AccountID.random())
            references.append(
                BlobReference(blob: blob, holder: .upload(.random()), reader: .account(alice), createdAt: start))
            references.append(
                BlobReference(
                    blob: blob, holder: .upload(.random()), reader: .account(gone), createdAt: start, expiresAt: start + 10))
            references.append(
                BlobReference(blob: Self.hash("other"), holder: .upload(.random()), reader: .account(gone), createdAt: start))
            try await store.add(references)
            var seen: [BlobReader] = []
            var after: String?
            var pages = 0
            while true {
                let page = try await store.readers(of: blob, liveAt: start + 60, after: after, limit: 200)
                pages += 1
                seen += page
                guard page.count == 200, let last = page.last else { break }
                after = last.key
            }
            #expect(pages == 3)
            let expected = (chats.map { BlobReader.chat($0) } + [.account(alice)]).sorted { $0.key < $1.key }
            #expect(seen == expected)
            #expect(try await store.readers(of: blob, liveAt: start, after: nil, limit: 1000).contains(.account(gone)))
        }
    }

    @Test("releasing a holder makes its references expire then, and expired ones are deleted", arguments: Backend.all)
    func releaseAndExpiry(_ backend: Backend) async throws {
        try await backend.with { storage in
            let store = storage.blobReferences
            let start = Fixture.start
            let chat = ChatID.random()
            let poster = AccountID.random()
            let blob = Self.hash("video")
            let post = BlobHolder.chatPost(chat, sender: poster, messageID: try MessageID(validating: "p-3"))
            let other = BlobHolder.chatPost(chat, sender: poster, messageID: try MessageID(validating: "p-4"))
            try await store.add([
                BlobReference(blob: blob, holder: post, reader: .chat(chat), createdAt: start),
                BlobReference(blob: blob, holder: other, reader: .chat(chat), createdAt: start),
            ])
            #expect(try await store.release(post, expiringAt: start + 60) == 1)
            // Releasing again does not push the expiry later.
            #expect(try await store.release(post, expiringAt: start + 600) == 0)
            #expect(try await store.references(to: blob, liveAt: start + 30, limit: 10).count == 2)
            #expect(try await store.references(to: blob, liveAt: start + 61, limit: 10).map(\.holder) == [other])
            #expect(try await store.deleteExpiredReferences(before: start + 30) == 0)
            #expect(try await store.deleteExpiredReferences(before: start + 61) == 1)
            #expect(try await store.references(heldBy: post).isEmpty)
            #expect(try await store.references(heldBy: other).count == 1)
        }
    }

    @Test("quota use counts an account's upload references in the window only", arguments: Backend.all)
    func quota(_ backend: Backend) async throws {
        try await backend.with { storage in
            let store = storage.blobReferences
            let start = Fixture.start
            let (alice, bob) = (AccountID.random(), AccountID.random())
            try await store.add([
                BlobReference(
                    blob: Self.hash("a"), holder: .upload(.random()), reader: .account(alice), quotaBytes: 1_000,
                    createdAt: start),
                BlobReference(
                    blob: Self.hash("b"), holder: .upload(.random()), reader: .account(alice), quotaBytes: 2_000,
                    createdAt: start + 100),
                BlobReference(
                    blob: Self.hash("c"), holder: .upload(.random()), reader: .account(bob), quotaBytes: 4_000,
                    createdAt: start + 100),
                // Not an upload: never counted, whatever its bytes.
                BlobReference(
                    blob: Self.hash("a"), holder: .directMessage(sender: bob, messageID: .random()),
                    reader: .account(alice), quotaBytes: 8_000, createdAt: start + 100),
            ])
            #expect(try await store.quotaBytes(of: alice, since: start) == 3_000)
            #expect(try await store.quotaBytes(of: alice, since: start + 50) == 2_000)
            #expect(try await store.quotaBytes(of: bob, since: start) == 4_000)
            #expect(try await store.quotaBytes(of: .random(), since: start) == 0)
        }
    }

    @Test("unreferenced blobs are those registered before the grace with no live reference", arguments: Backend.all)
    func unreferencedBlobs(_ backend: Backend) async throws {
        try await backend.with { storage in
            let store = storage.blobReferences
            let start = Fixture.start
            let chat = ChatID.random()
            let poster = AccountID.random()
            let (kept, orphan, released, young) = (
                Self.hash("kept"), Self.hash("orphan"), Self.hash("released"), Self.hash("young")
            )
            for blob in [kept, orphan, released] { try await store.register(blob, at: start) }
            try await store.register(young, at: start + 700)
            // Registering again keeps the first time.
            try await store.register(orphan, at: start + 900)
            try await store.add([
                BlobReference(
                    blob: kept, holder: .chatPost(chat, sender: poster, messageID: try MessageID(validating: "p-1")),
                    reader: .chat(chat), createdAt: start),
                BlobReference(
                    blob: released, holder: .chatPost(chat, sender: poster, messageID: try MessageID(validating: "p-2")),
                    reader: .chat(chat), createdAt: start),
            ])
            try await store.release(
                .chatPost(chat, sender: poster, messageID: try MessageID(validating: "p-2")), expiringAt: start + 100)
            let beforeExpiry = try await store.unreferencedBlobs(registeredBefore: start + 600, now: start + 50, limit: 10)
            #expect(Set(beforeExpiry) == [orphan])
            let afterExpiry = try await store.unreferencedBlobs(registeredBefore: start + 600, now: start + 200, limit: 10)
            #expect(Set(afterExpiry) == [orphan, released])
            let everything = try await store.unreferencedBlobs(registeredBefore: start + 1_000, now: start + 200, limit: 10)
            #expect(Set(everything) == [orphan, released, young])
            #expect(try await store.unreferencedBlobs(registeredBefore: start + 1_000, now: start + 200, limit: 1).count == 1)
            try await store.forget(orphan)
            let afterForget = try await store.unreferencedBlobs(registeredBefore: start + 600, now: start + 200, limit: 10)
            #expect(Set(afterForget) == [released])
        }
    }

    @Test("public media facts are recorded, replaced and forgotten with their blob", arguments: Backend.all)
    func mediaFacts(_ backend: Backend) async throws {
        try await backend.with { storage in
            let store = storage.blobReferences
            let photo = Self.hash("photo")
            #expect(try await store.media(photo) == nil)
            let facts = StoredMediaInfo(
                blob: photo, mediaType: "image/jpeg", width: 4_000, height: 3_000, thumbnail: Self.hash("thumb"))
            try await store.recordMedia(facts)
            #expect(try await store.media(photo) == facts)
            let video = StoredMediaInfo(blob: photo, mediaType: "video/mp4")
            try await store.recordMedia(video)
            #expect(try await store.media(photo) == video)
            try await store.register(photo, at: Fixture.start)
            try await store.forget(photo)
            #expect(try await store.media(photo) == nil)
        }
    }
}
