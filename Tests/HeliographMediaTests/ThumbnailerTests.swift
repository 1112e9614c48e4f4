import Foundation
import HeliographCore
import HeliographMedia
import Testing

@Suite("Thumbnails")
struct ThumbnailerTests {
    @Test(
        "the thumbnail size fits the long side, keeps the aspect and never enlarges",
        arguments: [
            (1000, 500, 320, 160), (500, 1000, 160, 320), (4000, 3000, 320, 240), (1920, 1080, 320, 180),
            (1000, 333, 320, 107), (321, 321, 320, 320), (320, 100, 320, 100), (200, 100, 200, 100), (10000, 1, 320, 1),
            (1, 1, 1, 1),
        ])
    func fittedSize(width: Int, height: Int, expectedWidth: Int, expectedHeight: Int) {
        let size = Thumbnailer.fittedSize(width: width, height: height, longSide: 320)
        #expect(size.width == expectedWidth && size.height == expectedHeight)
    }

    @Test("a 1000×500 JPEG and PNG give a 320×160 JPEG thumbnail that the codec decodes", arguments: ImageFormat.allCases)
    func thumbnailOfLargeImage(format: ImageFormat) throws {
        let file = format == .jpeg ? MediaFixtures.jpeg(width: 1000, height: 500) : MediaFixtures.png(width: 1000, height: 500)
        let thumbnail = try Thumbnailer().thumbnail(of: file, as: format)
        #expect(thumbnail.sourceWidth == 1000 && thumbnail.sourceHeight == 500)
        #expect(ImageFormat.sniff(thumbnail.jpeg) == .jpeg)
        let decoded = try ImageCodec().decode(thumbnail.jpeg, as: .jpeg)
        #expect(decoded.width == 320 && decoded.height == 160)
        #expect(thumbnail.width == 320 && thumbnail.height == 160)
        // The gradient survives: dark left edge, bright right edge, dark top, bright bottom.
        #expect(decoded.pixel(x: 2, y: 80).red < 30 && decoded.pixel(x: 317, y: 80).red > 225)
        #expect(decoded.pixel(x: 160, y: 2).green < 30 && decoded.pixel(x: 160, y: 157).green > 225)
    }

    @Test("a portrait photo far larger than the thumbnail gives exactly 320 on its long side")
    func thumbnailOfPortrait() throws {
        let file = MediaFixtures.jpeg(width: 1200, height: 1600)
        let thumbnail = try Thumbnailer().thumbnail(of: file, as: .jpeg)
        let decoded = try ImageCodec().decode(thumbnail.jpeg, as: .jpeg)
        #expect(decoded.width == 240 && decoded.height == 320)
    }

    @Test("an image already smaller than the thumbnail is re-encoded at its own size", arguments: ImageFormat.allCases)
    func smallImageNotEnlarged(format: ImageFormat) throws {
        let file = format == .jpeg ? MediaFixtures.jpeg(width: 200, height: 100) : MediaFixtures.png(width: 200, height: 100)
        let thumbnail = try Thumbnailer().thumbnail(of: file, as: format)
        let decoded = try ImageCodec().decode(thumbnail.jpeg, as: .jpeg)
        #expect(decoded.width == 200 && decoded.height == 100)
    }

    @Test("the box filter averages the area under each output pixel, partial pixels weighted")
    func boxFilterExact() throws {
        // One row [0, 90, 180] shrunk to two pixels: each covers 1.5 source pixels, so the first is
        // (0 + 90 / 2) / 1.5 = 30 and the second (90 / 2 + 180) / 1.5 = 150.
        let row = try DecodedImage(width: 3, height: 1, pixels: Data([0, 0, 0, 90, 90, 90, 180, 180, 180]))
        let shrunk = Thumbnailer.resize(row, width: 2, height: 1)
        #expect([UInt8](shrunk.pixels) == [30, 30, 30, 150, 150, 150])
        // A 4×2 block to 2×1: each output pixel is the mean of a 2×2 square.
        let block = try DecodedImage(
            width: 4, height: 2,
            pixels: Data([10, 0, 0, 20, 0, 0, 100, 0, 0, 200, 0, 0, 30, 0, 0, 40, 0, 0, 0, 0, 0, 100, 0, 0]))
        let halved = Thumbnailer.resize(block, width: 2, height: 1)
        #expect([UInt8](halved.pixels) == [25, 0, 0, 100, 0, 0])
    }

    @Test("a fine black-and-white checkerboard shrinks to even grey, not to aliased stripes")
    func boxFilterDoesNotAlias() throws {
        var bytes = [UInt8]()
        for y in 0..<100 {
            for x in 0..<100 {
                let value: UInt8 = (x + y) % 2 == 0 ? 255 : 0
                bytes += [value, value, value]
            }
        }
        let board = try DecodedImage(width: 100, height: 100, pixels: Data(bytes))
        let small = Thumbnailer.resize(board, width: 10, height: 10)
        #expect(small.pixels.allSatisfy { $0 == 127 || $0 == 128 })
        // 100 to 30 is not a whole ratio; averages still stay near the middle.
        let uneven = Thumbnailer.resize(board, width: 30, height: 30)
        #expect(uneven.pixels.allSatisfy { $0 >= 100 && $0 <= 155 })
    }

    @Test("a solid colour keeps its colour through shrinking and JPEG encoding")
    func colourKept() throws {
        let image = MediaFixtures.solid(width: 700, height: 300, red: 200, green: 60, blue: 30)
        let thumbnail = try Thumbnailer().thumbnail(of: image)
        let decoded = try ImageCodec().decode(thumbnail.jpeg, as: .jpeg)
        #expect(decoded.width == 320 && decoded.height == 137)
        let centre = decoded.pixel(x: 160, y: 68)
        #expect(abs(Int(centre.red) - 200) <= 4 && abs(Int(centre.green) - 60) <= 4 && abs(Int(centre.blue) - 30) <= 4)
    }

    @Test("a cut JPEG gives no thumbnail, also on the reduced-scale path")
    func truncatedThumbnail() {
        let file = MediaFixtures.jpeg(width: 1600, height: 1200)
        let error = MediaFixtures.refusal { () throws(HeliographError) in
            try Thumbnailer().thumbnail(of: file.prefix(file.count - 300), as: .jpeg)
        }
        #expect(error?.code == .unsupportedMedia)
        #expect(error?.message.contains("truncated") == true)
    }
}
