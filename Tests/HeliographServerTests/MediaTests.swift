import Crypto
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographMedia
import HeliographProtocol
import HeliographServer
import HeliographStore
import HeliographStorePostgres
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// The storage a media test runs the server over: SQLite with blob files beside it, or
/// PostgreSQL with blobs as chunk rows (when `HELIOGRAPH_TEST_POSTGRES_URL` is set).
struct MediaBackend: CustomStringConvertible, Sendable {
    let description: String
    let postgresURL: String?

    static var all: [MediaBackend] {
        var backends = [MediaBackend(description: "SQLite and files", postgresURL: nil)]
        if let url = ProcessInfo.processInfo.environment["HELIOGRAPH_TEST_POSTGRES_URL"], !url.isEmpty {
            backends.append(MediaBackend(description: "PostgreSQL", postgresURL: url))
        }
        return backends
    }

    /// Runs a test server over this backend.
    func run(
        clock: any WallClock = SystemWallClock(), configure: (inout ServerConfiguration) -> Void = { _ in },
        _ body: @Sendable (TestServer) async throws -> Void
    ) async throws {
        guard let postgresURL else {
            try await TestServer.run(clock: clock, configure: configure, body)
            return
        }
        var logger = Logger(label: "media-test")
        logger.logLevel = .error
        let admin = try PostgresLocation(url: postgresURL)
        let name = "heliograph_media_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        let location = try await PostgresAdministration.createDatabase(named: String(name), using: admin, logger: logger)
        let storage = try await PostgresStorage(
            location: location, maximumConnections: 8, connectTimeout: .seconds(30), operationTimeout: .seconds(60),
            logger: logger)
        do {
            try await TestServer.run(clock: clock, configure: configure, serving: { _ in storage }, body)
        } catch {
            try? await storage.close()
            throw error
        }
        try? await storage.close()
    }
}

/// One account's view of the media routes, over the server's HTTP test client.
struct MediaHTTP: Sendable {
    let server: TestServer
    let token: String

    init(_ server: TestServer, _ client: HeliographClient) {
        self.server = server
        self.token = client.profile.token
    }

    func request(
        _ method: HTTPRequest.Method, _ uri: String, body: Data? = nil, headers extra: HTTPFields = [:]
    ) async throws -> TestResponse {
        var headers = extra
        headers[.authorization] = "Bearer \(token)"
        return try await server.client.execute(
            uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(bytes: $0) })
    }

    func create(
        _ size: Int64, _ hash: BlobHash, purpose: UploadPurpose = .encrypted, mediaType: String? = nil
    )
        async throws -> TestResponse
    {
        try await request(
            .post, "/v1/uploads",
            body: try WireCodec.encode(CreateUploadRequest(size: size, sha256: hash, purpose: purpose, mediaType: mediaType)))
    }

    func start(_ data: Data, purpose: UploadPurpose = .encrypted, mediaType: String? = nil) async throws -> UploadStatus {
        let response = try await create(Int64(data.count), BlobHash.of(data), purpose: purpose, mediaType: mediaType)
        #expect(response.status == .created, "\(String(buffer: response.body))")
        return try response.decode(UploadStatus.self)
    }

    func put(_ upload: UploadStatus, _ index: Int, _ bytes: Data) async throws -> TestResponse {
        try await request(.put, "/v1/uploads/\(upload.uploadId.uuidString.lowercased())/parts/\(index)", body: bytes)
    }

    func part(_ data: Data, _ upload: UploadStatus, _ index: Int) -> Data {
        let start = data.startIndex + index * upload.partSize
        return Data(data[start..<min(start + upload.partSize, data.endIndex)])
    }

    func finish(_ upload: UploadStatus) async throws -> TestResponse {
        try await request(.post, "/v1/uploads/\(upload.uploadId.uuidString.lowercased())/finish")
    }

    func status(_ upload: UploadStatus) async throws -> TestResponse {
        try await request(.get, "/v1/uploads/\(upload.uploadId.uuidString.lowercased())")
    }

    /// Uploads `data` whole and returns the blob.
    func upload(_ data: Data, purpose: UploadPurpose = .encrypted, mediaType: String? = nil) async throws -> BlobDescriptor {
        let upload = try await start(data, purpose: purpose, mediaType: mediaType)
        for index in 0..<upload.partCount {
            let response = try await put(upload, index, part(data, upload, index))
            #expect(response.status == .ok, "\(String(buffer: response.body))")
        }
        let finished = try await finish(upload)
        #expect(finished.status == .ok, "\(String(buffer: finished.body))")
        return try finished.decode(BlobDescriptor.self)
    }

    func download(_ hash: BlobHash, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await request(.get, "/v1/blobs/\(hash.hex)", headers: headers)
    }
}

/// A real JPEG of `width`×`height` (a colour gradient), made with libjpeg-turbo.
func makeJPEG(width: Int, height: Int) throws -> Data {
    var pixels = Data(count: width * height * 3)
    for y in 0..<height {
        for x in 0..<width {
            let offset = (y * width + x) * 3
            pixels[offset] = UInt8(x * 255 / max(width - 1, 1))
            pixels[offset + 1] = UInt8(y * 255 / max(height - 1, 1))
            pixels[offset + 2] = 128
        }
    }
    return try ImageCodec().encodeJPEG(try DecodedImage(width: width, height: height, pixels: pixels), quality: 85)
}

@Suite("Media: uploads, downloads, references and collection")
struct MediaTests {
    @Test(
        "a multi-part upload out of order, resumed after a part was cut off mid-body, then ranged downloads",
        arguments: MediaBackend.all)
    func resumableUploadAndRanges(_ backend: MediaBackend) async throws {
        try await backend.run { server in
            let alice = try await server.register("alice", encryption: false)
            let http = MediaHTTP(server, alice)
            let data = noiseBytes(1_300_000)
            let upload = try await http.start(data)
            #expect(upload.partSize == 512 * 1024)
            #expect(upload.partCount == 3)
            #expect(try await http.put(upload, 2, http.part(data, upload, 2)).status == .ok)
            // The connection drops halfway through part 0: nothing of it is kept.
            let cut = try RawHTTPConnection(port: Int(server.url.port!))
            let head =
                "PUT /v1/uploads/\(upload.uploadId.uuidString.lowercased())/parts/0 HTTP/1.1\r\nHost: localhost\r\n"
                + "Authorization: Bearer \(alice.profile.token)\r\nContent-Length: \(upload.partSize)\r\n\r\n"
            cut.send(Array(head.utf8) + Array(http.part(data, upload, 0).prefix(200_000)))
            cut.shutdownWrite()
            _ = await cut.read(for: 2)
            // Resuming: the status names what the server holds; the client sends the rest.
            var status = try await http.status(upload).decode(UploadStatus.self)
            #expect(status.receivedParts == [2])
            let early = try await http.finish(upload)
            #expect(early.status == .conflict)
            #expect(early.errorCode == "upload_incomplete")
            for index in 0..<upload.partCount where !status.receivedParts.contains(index) {
                #expect(try await http.put(upload, index, http.part(data, upload, index)).status == .ok)
            }
            // A repeated part with the same bytes is fine.
            #expect(try await http.put(upload, 1, http.part(data, upload, 1)).status == .ok)
            status = try await http.status(upload).decode(UploadStatus.self)
            #expect(status.receivedParts == [0, 1, 2])
            let blob = try await http.finish(upload).decode(BlobDescriptor.self)
            #expect(blob.sha256 == BlobHash.of(data))
            #expect(blob.size == Int64(data.count))

            let whole = try await http.download(blob.sha256)
            #expect(whole.status == .ok)
            #expect(Data(whole.body.readableBytesView) == data)
            #expect(whole.headers[.eTag] == "\"\(blob.sha256.hex)\"")
            #expect(whole.headers[.cacheControl]?.contains("immutable") == true)
            #expect(whole.headers[.acceptRanges] == "bytes")
            let middle = try await http.download(blob.sha256, headers: [.range: "bytes=500000-700000"])
            #expect(middle.status == .partialContent)
            #expect(Data(middle.body.readableBytesView) == data[500_000...700_000])
            #expect(middle.headers[.contentRange] == "bytes 500000-700000/\(data.count)")
            let tail = try await http.download(blob.sha256, headers: [.range: "bytes=-1000"])
            #expect(Data(tail.body.readableBytesView) == data.suffix(1000))
            let from = try await http.download(blob.sha256, headers: [.range: "bytes=1299990-"])
            #expect(Data(from.body.readableBytesView) == data.suffix(10))
            let outside = try await http.download(blob.sha256, headers: [.range: "bytes=1300000-"])
            #expect(outside.status == .rangeNotSatisfiable)
            #expect(outside.errorCode == "range_not_satisfiable")
            #expect(outside.headers[.contentRange] == "bytes */\(data.count)")
            let cached = try await http.download(blob.sha256, headers: [.ifNoneMatch: "\"\(blob.sha256.hex)\""])
            #expect(cached.status == .notModified)
        }
    }

    @Test("bad uploads get clear errors, stay resumable or are discarded, and touch no other blob", arguments: MediaBackend.all)
    func badUploads(_ backend: MediaBackend) async throws {
        try await backend.run(configure: {
            $0.media.maxUploadBytes = 8 * 1024 * 1024
            $0.media.quotaBytes = 10 * 1024 * 1024
        }) { server in
            let alice = try await server.register("alice", encryption: false)
            let mallory = try await server.register("mallory", encryption: false)
            let http = MediaHTTP(server, alice)
            let other = try await http.upload(noiseBytes(100_000))

            let data = noiseBytes(1_100_000)
            let upload = try await http.start(data)
            // A part past the last, a part of the wrong length, a part index that is not one.
            var response = try await http.put(upload, 3, Data(count: 10))
            #expect(response.status == .badRequest)
            #expect(response.errorCode == "part_out_of_range")
            response = try await http.put(upload, 0, Data(count: 1000))
            #expect(response.errorCode == "part_out_of_range")
            response = try await http.request(.put, "/v1/uploads/\(upload.uploadId.uuidString.lowercased())/parts/x")
            #expect(response.errorCode == "part_out_of_range")
            // Different bytes for a stored part: refused, the first kept.
            #expect(try await http.put(upload, 0, http.part(data, upload, 0)).status == .ok)
            var forged = http.part(data, upload, 0)
            forged[10] ^= 0xFF
            response = try await http.put(upload, 0, forged)
            #expect(response.status == .conflict)
            #expect(response.errorCode == "part_mismatch")
            #expect(try await http.status(upload).decode(UploadStatus.self).receivedParts == [0])
            // Another account cannot see or touch the upload.
            let intruder = MediaHTTP(server, mallory)
            #expect(try await intruder.status(upload).errorCode == "unknown_upload")
            #expect(try await intruder.put(upload, 1, http.part(data, upload, 1)).errorCode == "unknown_upload")

            // A declared hash that the bytes do not have: refused at finish, the parts dropped,
            // the upload open and empty for a new try.
            let liar = try await http.start(data.prefix(600_000) + Data(count: 1))
            let wrongBytes = Data(data.prefix(600_001))
            for index in 0..<liar.partCount {
                _ = try await http.put(liar, index, http.part(wrongBytes, liar, index))
            }
            response = try await http.finish(liar)
            #expect(response.status == .badRequest)
            #expect(response.errorCode == "hash_mismatch")
            #expect(try await http.status(liar).decode(UploadStatus.self).receivedParts == [])

            // Over the size limit; over the 10 MiB quota (0.1 + 1.1 + 0.6 + 2 MiB declared, then 8 more).
            response = try await http.create(9 * 1024 * 1024, BlobHash.of(Data("big".utf8)))
            #expect(response.status == .contentTooLarge)
            #expect(response.errorCode == "payload_too_large")
            response = try await http.create(2 * 1024 * 1024, BlobHash.of(Data("fits".utf8)))
            #expect(response.status == .created)
            response = try await http.create(8 * 1024 * 1024, BlobHash.of(Data("over".utf8)))
            #expect(response.status == .tooManyRequests)
            #expect(response.errorCode == "quota_exceeded")
            // Malformed requests.
            response = try await http.request(.post, "/v1/uploads", body: Data(#"{"size":-1}"#.utf8))
            #expect(response.errorCode == "bad_request")
            response = try await http.create(10, BlobHash.of(Data("x".utf8)), purpose: .public)
            #expect(response.errorCode == "bad_request")
            response = try await http.create(10, BlobHash.of(Data("x".utf8)), purpose: .public, mediaType: "text/html")
            #expect(response.status == .unsupportedMediaType)
            #expect(response.errorCode == "unsupported_media")
            response = try await http.create(10, BlobHash.of(Data("x".utf8)), purpose: .encrypted, mediaType: "image/png")
            #expect(response.errorCode == "bad_request")
            #expect(try await http.request(.get, "/v1/uploads/not-an-id").errorCode == "unknown_upload")
            #expect(try await http.request(.get, "/v1/blobs/1234").errorCode == "bad_request")
            #expect(try await server.http(.post, "/v1/uploads", json: "{}").errorCode == "unauthenticated")

            // A blob the caller may not see is answered as one that does not exist.
            #expect(try await intruder.download(other.sha256).errorCode == "unknown_blob")
            #expect(try await intruder.download(BlobHash.of(Data("nothing".utf8))).errorCode == "unknown_blob")
            // None of this touched the first blob.
            #expect(Data(try await http.download(other.sha256).body.readableBytesView).count == 100_000)
        }
    }

    @Test("public images are checked, measured and thumbnailed; lies and broken files are refused", arguments: MediaBackend.all)
    func publicMediaChecks(_ backend: MediaBackend) async throws {
        try await backend.run { server in
            let alice = try await server.register("alice", encryption: false)
            let http = MediaHTTP(server, alice)
            let jpeg = try makeJPEG(width: 1000, height: 500)
            let photo = try await http.upload(jpeg, purpose: .public, mediaType: "image/jpeg")
            #expect(photo.mediaType == "image/jpeg")
            #expect(photo.width == 1000)
            #expect(photo.height == 500)
            let thumbnailHash = try #require(photo.thumbnail)
            let thumbnail = try await http.download(thumbnailHash)
            #expect(thumbnail.headers[.contentType] == "image/jpeg")
            let small = try ImageCodec().decode(Data(thumbnail.body.readableBytesView))
            #expect((small.width, small.height) == (320, 160))
            #expect(try await http.download(photo.sha256).headers[.contentType] == "image/jpeg")

            // A PNG declared as JPEG, a truncated JPEG, garbage: unsupported_media, upload gone.
            for (bytes, type) in [
                (Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) + noiseBytes(2000), "image/jpeg"),
                (jpeg.prefix(jpeg.count / 2), "image/jpeg"),
                (noiseBytes(5000), "image/png"),
                (noiseBytes(5000), "video/mp4"),
            ] {
                let upload = try await http.start(bytes, purpose: .public, mediaType: type)
                for index in 0..<upload.partCount { _ = try await http.put(upload, index, http.part(bytes, upload, index)) }
                let refused = try await http.finish(upload)
                #expect(refused.status == .unsupportedMediaType)
                #expect(refused.errorCode == "unsupported_media")
                #expect(try await http.status(upload).errorCode == "unknown_upload")
                #expect(try await http.download(BlobHash.of(bytes)).errorCode == "unknown_blob")
                #expect(try await server.served.blobs.blob(BlobHash.of(bytes)) == nil)
            }
            // A real MP4 header is accepted by its magic number, without a thumbnail.
            let mp4 = Data([0, 0, 0, 0x18]) + Data("ftypmp42".utf8) + noiseBytes(3000)
            let video = try await http.upload(mp4, purpose: .public, mediaType: "video/mp4")
            #expect(video.mediaType == "video/mp4")
            #expect(video.thumbnail == nil)
            // The photo is intact.
            #expect(Data(try await http.download(photo.sha256).body.readableBytesView) == jpeg)
        }
    }

    @Test(
        "a photo posted in a channel reaches subscribers with its size and thumbnail; deleting the post releases it",
        arguments: MediaBackend.all)
    func channelPhoto(_ backend: MediaBackend) async throws {
        let clock = ManualWallClock(Date())
        try await backend.run(clock: clock) { server in
            let alice = try await server.register("alice", encryption: false)
            let bob = try await server.register("bobby", encryption: false)
            let carol = try await server.register("carol", encryption: false)
            let channel = try await alice.createChannel(title: "Photos", username: "photos_daily")
            _ = try await bob.join("@photos_daily")
            let http = MediaHTTP(server, alice)
            let jpeg = try makeJPEG(width: 640, height: 960)
            let photo = try await http.upload(jpeg, purpose: .public, mediaType: "image/jpeg")
            let post = try await alice.call(
                .post,
                PostRequest(
                    chatId: channel.chatId, messageId: .random(), text: "sunrise",
                    media: [MediaReference(blob: photo.sha256, fileName: "sunrise.jpg")]),
                as: PostResponse.self)
            let history = try await bob.history(of: channel.chatId)
            let posted = try #require(history.first { $0.message.update.seq == post.seq }?.message.update.content)
            let shown = try #require(posted.media?.first)
            #expect(shown.blob == photo.sha256)
            #expect(shown.mediaType == "image/jpeg")
            #expect((shown.width, shown.height) == (640, 960))
            #expect(shown.size == Int64(jpeg.count))
            #expect(shown.fileName == "sunrise.jpg")
            #expect(posted.text == "sunrise")
            let thumbnail = try #require(shown.thumbnail)
            // A subscriber downloads the photo and its thumbnail; so may anyone for a public channel.
            let asBob = MediaHTTP(server, bob)
            #expect(Data(try await asBob.download(photo.sha256).body.readableBytesView) == jpeg)
            let small = try ImageCodec().decode(Data(try await asBob.download(thumbnail).body.readableBytesView))
            #expect((small.width, small.height) == (213, 320))
            #expect(try await MediaHTTP(server, carol).download(photo.sha256).status == .ok)

            // Media nobody uploaded as public cannot be posted; nor can someone else's upload.
            let secret = try await http.upload(noiseBytes(2000))
            let notPublic = try await server.http(
                .post, "/v1/chats/\(channel.chatId)/messages",
                json: try String(
                    decoding: WireCodec.encode(
                        PostRequest(chatId: channel.chatId, messageId: .random(), media: [MediaReference(blob: secret.sha256)])),
                    as: UTF8.self), token: alice.profile.token)
            #expect(notPublic.errorCode == "unsupported_media")

            // Deleting the post: after the grace period and the uploader's hold, the photo goes.
            _ = try await alice.deleteMessage(post.seq, in: channel.chatId)
            let media = MediaService(
                storage: server.served, clock: clock, limits: server.configuration.media,
                uploadLimiter: RateLimiter(rate: 0, burst: 1))
            #expect(try await media.collectGarbage() == 0)
            clock.advance(by: seconds(server.configuration.media.uploadLifetime) + 1)
            // The photo, its thumbnail and the encrypted upload that no message named.
            #expect(try await media.collectGarbage() == 3)
            #expect(try await server.served.blobs.blob(photo.sha256) == nil)
            #expect(try await server.served.blobs.blob(thumbnail) == nil)
            #expect(try await asBob.download(photo.sha256).errorCode == "unknown_blob")
            #expect(try await server.served.blobs.blob(secret.sha256) == nil)
        }
    }

    @Test("a media post refused by slow mode does not keep its media", arguments: MediaBackend.all)
    func refusedPostReleasesMedia(_ backend: MediaBackend) async throws {
        try await backend.run { server in
            let owner = try await server.register("owner", encryption: false)
            let member = try await server.register("member", encryption: false)
            let group = try await owner.createPublicGroup(title: "Slow", username: "slow_photos", slowModeSeconds: 60)
            _ = try await member.join("@slow_photos")
            _ = try await member.call(
                .post, PostRequest(chatId: group.chatId, messageId: .random(), text: "first"), as: PostResponse.self)
            let photo = try await MediaHTTP(server, member).upload(
                try makeJPEG(width: 100, height: 80), purpose: .public, mediaType: "image/jpeg")
            let messageID = MessageID.random()
            await #expect(throws: HeliographError(.slowMode, "")) {
                _ = try await member.call(
                    .post, PostRequest(chatId: group.chatId, messageId: messageID, media: [MediaReference(blob: photo.sha256)]),
                    as: PostResponse.self)
            }
            let held = try await server.served.blobReferences.references(
                heldBy: .chatPost(group.chatId, sender: member.profile.accountID, messageID: messageID))
            #expect(held.count == 2)
            #expect(held.allSatisfy { $0.expiresAt != nil })
        }
    }

    @Test(
        "garbage collection removes only unreferenced blobs, after the grace period, and spares uploads in flight",
        arguments: MediaBackend.all)
    func garbageCollection(_ backend: MediaBackend) async throws {
        let clock = ManualWallClock(Date())
        try await backend.run(clock: clock) { server in
            let alice = try await server.register("alice", encryption: false)
            let bob = try await server.register("bobby", encryption: false)
            let carol = try await server.register("carol", encryption: false)
            let http = MediaHTTP(server, alice)
            let limits = server.configuration.media
            let media = MediaService(
                storage: server.served, clock: clock, limits: limits, uploadLimiter: RateLimiter(rate: 0, burst: 1))
            let sent = try await http.upload(noiseBytes(70_000))
            let released = try await http.upload(noiseBytes(80_000))
            let orphan = try await http.upload(noiseBytes(90_000))
            // Two messages to Bob name blobs: Bob may read them, Carol may not.
            let keep = MessageID.random()
            let drop = MessageID.random()
            for (id, blob) in [(keep, sent.sha256), (drop, released.sha256)] {
                var send = SendRequest(messageId: id, to: "bobby", payload: Data("see attached".utf8))
                send.attachments = [blob]
                let response = try await server.http(
                    .post, "/v1/messages", json: String(decoding: try WireCodec.encode(send), as: UTF8.self),
                    token: alice.profile.token)
                #expect(response.status == .ok, "\(String(buffer: response.body))")
            }
            #expect(try await MediaHTTP(server, bob).download(sent.sha256).status == .ok)
            #expect(try await MediaHTTP(server, carol).download(sent.sha256).errorCode == "unknown_blob")
            // A message cannot name a blob its sender may not read.
            var stolen = SendRequest(messageId: .random(), to: "alice", payload: Data("mine now".utf8))
            stolen.attachments = [orphan.sha256]
            let refused = try await server.http(
                .post, "/v1/messages", json: String(decoding: try WireCodec.encode(stolen), as: UTF8.self),
                token: carol.profile.token)
            #expect(refused.errorCode == "unknown_blob")
            // The sender deletes the second message for everyone.
            let release = try await http.request(
                .post, "/v1/attachments/release", body: try WireCodec.encode(ReleaseAttachmentsRequest(messageId: drop)))
            #expect(try release.decode(ReleaseAttachmentsResponse.self).released == 2)
            // An upload is in flight for the orphan's very bytes (an identical file sent again).
            let again = try await http.create(orphan.size, orphan.sha256)
            #expect(again.status == .created)

            // Nothing goes before the uploads' hold and the grace period have passed.
            #expect(try await media.collectGarbage() == 0)
            clock.advance(by: seconds(limits.grace) + 1)
            #expect(try await media.collectGarbage() == 0)
            clock.advance(by: seconds(limits.uploadLifetime))
            #expect(try await media.collectGarbage() == 2)
            #expect(try await server.served.blobs.blob(sent.sha256) != nil)
            #expect(try await server.served.blobs.blob(released.sha256) == nil)
            #expect(try await server.served.blobs.blob(orphan.sha256) == nil)
            #expect(try await MediaHTTP(server, bob).download(sent.sha256).status == .ok)
            #expect(try await MediaHTTP(server, bob).download(released.sha256).errorCode == "unknown_blob")
        }
    }

    @Test(
        "an encrypted attachment is stored as ciphertext only: no trace of the plaintext anywhere on the server",
        arguments: MediaBackend.all)
    func attachmentCanary(_ backend: MediaBackend) async throws {
        try await backend.run { server in
            let alice = try await server.register("alice", encryption: false)
            let bob = try await server.register("bobby", encryption: false)
            let canary = "CANARY-ATTACHMENT-\(UUID().uuidString)"
            var plaintext = Data()
            while plaintext.count < 300_000 { plaintext.append(Data("\(canary) line \(plaintext.count)\n".utf8)) }
            var encryptor = try AttachmentEncryptor(plaintextSize: UInt64(plaintext.count))
            var ciphertext = try encryptor.update(plaintext)
            let (last, seal) = try encryptor.finish()
            ciphertext.append(last)
            let blob = try await MediaHTTP(server, alice).upload(ciphertext)
            #expect(blob.sha256.bytes == seal.digest)
            // Padded to a size bucket: the exact length does not show.
            #expect(blob.size == Int64(AttachmentCipher.ciphertextSize(forPlaintextSize: UInt64(plaintext.count))))
            var send = SendRequest(messageId: .random(), to: "bobby", payload: Data("pointer inside".utf8))
            send.attachments = [blob.sha256]
            _ = try await server.http(
                .post, "/v1/messages", json: String(decoding: try WireCodec.encode(send), as: UTF8.self),
                token: alice.profile.token)
            let fetched = Data(try await MediaHTTP(server, bob).download(blob.sha256).body.readableBytesView)
            let pointer = AttachmentPointer(seal: seal, mediaType: "text/plain")
            var decryptor = try pointer.decryptor()
            var opened = try decryptor.update(fetched)
            opened.append(try decryptor.finish())
            #expect(opened == plaintext)

            // Every stored blob, and for SQLite every file under the data directory.
            let needle = Data(canary.utf8)
            for info in try await server.served.blobs.allBlobs(createdBefore: Date().addingTimeInterval(86_400), limit: 1000) {
                #expect(try await server.served.blobs.contents(info.hash).range(of: needle) == nil)
            }
            if backend.postgresURL == nil {
                let files = FileManager.default.enumerator(at: server.directory, includingPropertiesForKeys: nil)
                var scanned = 0
                while let file = files?.nextObject() as? URL {
                    guard let bytes = try? Data(contentsOf: file) else { continue }
                    scanned += 1
                    #expect(bytes.range(of: needle) == nil, "the plaintext is in \(file.path)")
                }
                #expect(scanned > 2)
            }
        }
    }
}

/// A duration in seconds.
func seconds(_ duration: Duration) -> TimeInterval { Double(duration.components.seconds) }
