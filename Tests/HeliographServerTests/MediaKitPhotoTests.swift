import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import Testing

extension MediaKitTests {
    @Test("a photo posted in a public channel shows its size, dimensions and a thumbnail to a subscriber")
    func publicPhotoInAChannel() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let channel = try await alice.createChannel(title: "Pictures", username: "pictures_daily")
            _ = try await bob.join("@pictures_daily")

            let jpeg = try makeJPEG(width: 640, height: 480)
            let photo = try writeTestFile(jpeg, named: "sunset.jpg")
            let posted = try await alice.postMedia([photo], caption: "sunset", in: channel.chatId)

            let event = try #require(try await bob.syncChats().first { $0.seq == posted.seq })
            #expect(event.text == "sunset")
            let media = try #require(event.media?.first)
            #expect(media.mediaType == "image/jpeg")
            #expect(media.size == Int64(jpeg.count))
            #expect(media.width == 640)
            #expect(media.height == 480)
            #expect(media.fileName == "sunset.jpg")
            let thumbnail = try #require(media.thumbnail)

            let directory = temporaryDirectory("bob-media")
            try await bob.download(blob: media.blob, to: directory.appendingPathComponent("sunset.jpg"))
            #expect(FileManager.default.contents(atPath: directory.appendingPathComponent("sunset.jpg").path) == jpeg)
            try await bob.download(blob: thumbnail, to: directory.appendingPathComponent("thumb.jpg"))
            let thumb = try #require(FileManager.default.contents(atPath: directory.appendingPathComponent("thumb.jpg").path))
            #expect(thumb.starts(with: [0xFF, 0xD8, 0xFF]))
            #expect(thumb.count < jpeg.count)
        }
    }
}
