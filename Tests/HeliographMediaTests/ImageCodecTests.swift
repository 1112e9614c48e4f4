import Foundation
import HeliographCore
import HeliographMedia
import Testing

@Suite("Image codec")
struct ImageCodecTests {
    static let sizes: [(Int, Int)] = [(1, 1), (2, 3), (3, 2), (17, 9), (9, 17), (640, 480), (333, 1000), (1000, 500)]

    @Test("a JPEG's width and height are read from the header and from a full decode", arguments: sizes)
    func jpegDimensions(width: Int, height: Int) throws {
        let file = MediaFixtures.jpeg(width: width, height: height)
        let codec = ImageCodec()
        let header = try codec.dimensions(of: file, as: .jpeg)
        #expect(header.width == width && header.height == height)
        let image = try codec.decode(file, as: .jpeg)
        #expect(image.width == width && image.height == height)
        #expect(image.pixels.count == width * height * 3)
    }

    @Test("a PNG's width and height are read from the header and from a full decode", arguments: sizes)
    func pngDimensions(width: Int, height: Int) throws {
        let file = MediaFixtures.png(width: width, height: height)
        let codec = ImageCodec()
        let header = try codec.dimensions(of: file, as: .png)
        #expect(header.width == width && header.height == height)
        let image = try codec.decode(file, as: .png)
        #expect(image.width == width && image.height == height)
    }

    @Test("PNG decoding is lossless: the pixels come back exactly")
    func pngPixelsExact() throws {
        let source = MediaFixtures.gradient(width: 37, height: 23)
        let decoded = try ImageCodec().decode(MediaFixtures.png(source), as: .png)
        #expect(decoded == source)
    }

    @Test("JPEG decoding gives the encoded picture back, within the loss of quality 95")
    func jpegPixelsClose() throws {
        let source = MediaFixtures.gradient(width: 64, height: 48)
        let file = try ImageCodec().encodeJPEG(source, quality: 95)
        let decoded = try ImageCodec().decode(file, as: .jpeg)
        var worst = 0
        for y in stride(from: 0, to: 48, by: 5) {
            for x in stride(from: 0, to: 64, by: 5) {
                let a = source.pixel(x: x, y: y)
                let b = decoded.pixel(x: x, y: y)
                worst = max(worst, abs(Int(a.red) - Int(b.red)), abs(Int(a.green) - Int(b.green)))
            }
        }
        #expect(worst <= 12, "largest red/green difference \(worst)")
        // A transposed or flipped decode would put the bright corner elsewhere.
        #expect(decoded.pixel(x: 63, y: 0).red > 200 && decoded.pixel(x: 0, y: 0).red < 40)
        #expect(decoded.pixel(x: 0, y: 47).green > 200)
    }

    @Test("transparent PNG pixels are composited onto white, opaque ones keep their colour")
    func pngAlpha() throws {
        // 2×1 RGBA: a fully transparent black pixel, then an opaque pure red one.
        let file = MediaFixtures.encodePNG([0, 0, 0, 0, 255, 0, 0, 255], width: 2, height: 1, channels: 4)
        let image = try ImageCodec().decode(file, as: .png)
        let transparent = image.pixel(x: 0, y: 0)
        let opaque = image.pixel(x: 1, y: 0)
        #expect([transparent.red, transparent.green, transparent.blue] == [255, 255, 255])
        #expect([opaque.red, opaque.green, opaque.blue] == [255, 0, 0])
    }

    @Test("a JPEG decoded for a thumbnail uses DCT scaling but reports the file's own size")
    func jpegReducedDecode() throws {
        let file = MediaFixtures.jpeg(width: 2000, height: 1500)
        let image = try ImageCodec().decode(file, as: .jpeg, reducingTowards: 320)
        // 1/4 scale is the smallest that still covers 320×240.
        #expect(image.width == 500 && image.height == 375)
        #expect(image.originalWidth == 2000 && image.originalHeight == 1500)
    }

    @Test("a JPEG cut short anywhere is refused as truncated, never decoded or crashed on")
    func truncatedJPEG() {
        let file = MediaFixtures.jpeg(width: 300, height: 200)
        let count = file.count
        let cuts = [1, 2, 3, 4, 10, 40, 100, 200, count / 4, count / 2, count * 3 / 4, count - 100, count - 2, count - 1]
        for cut in cuts {
            let part = file.prefix(cut)
            for reduce in [nil, 32] {
                let error = MediaFixtures.refusal { () throws(HeliographError) in
                    try ImageCodec().decode(part, as: .jpeg, reducingTowards: reduce)
                }
                #expect(error?.code == .unsupportedMedia, "cut at \(cut) of \(count)")
                #expect(error?.message.contains("truncated") == true, "cut at \(cut): \(error?.message ?? "accepted")")
            }
        }
        let empty = MediaFixtures.refusal { () throws(HeliographError) in try ImageCodec().decode(Data(), as: .jpeg) }
        #expect(empty?.message == "the file is empty")
    }

    @Test("a PNG cut short anywhere is refused as truncated")
    func truncatedPNG() {
        let file = MediaFixtures.png(width: 300, height: 200)
        let count = file.count
        let cuts = [1, 7, 8, 12, 20, 33, 40, count / 4, count / 2, count * 3 / 4, count - 12, count - 4, count - 1]
        for cut in cuts {
            let error = MediaFixtures.refusal { () throws(HeliographError) in try ImageCodec().decode(file.prefix(cut), as: .png)
            }
            #expect(error?.code == .unsupportedMedia, "cut at \(cut) of \(count)")
            #expect(error?.message.contains("truncated") == true, "cut at \(cut): \(error?.message ?? "accepted")")
        }
    }

    @Test("a PNG with a damaged image data chunk is refused: libpng finds the bad CRC")
    func corruptPNG() throws {
        var bytes = [UInt8](MediaFixtures.png(width: 50, height: 50))
        // Walk the chunks (length, type, data, CRC) to the first IDAT and flip a byte of its data.
        var offset = 8
        while Array(bytes[offset + 4..<offset + 8]) != Array("IDAT".utf8) {
            offset +=
                12
                + (Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3]))
        }
        bytes[offset + 10] ^= 0xFF
        let error = MediaFixtures.refusal { () throws(HeliographError) in try ImageCodec().decode(Data(bytes), as: .png) }
        #expect(error?.code == .unsupportedMedia)
        #expect(error?.message.contains("damaged") == true, "\(error?.message ?? "accepted")")
    }

    @Test("thousands of random inputs, bare and behind each signature, are all refused without a crash")
    func randomGarbage() {
        var generator = SeededGenerator(seed: 0x4845_4C49_4F47)
        let codec = ImageCodec()
        let prefixes: [[UInt8]] = [
            [],
            [0xFF, 0xD8],
            [0xFF, 0xD8, 0xFF],
            [0xFF, 0xD8, 0xFF, 0xE0],
            [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08],
            [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A],
            // Signature and a valid IHDR chunk (16×16 RGB), then garbage chunks.
            [UInt8](MediaFixtures.png(width: 16, height: 16).prefix(33)),
        ]
        var accepted = 0
        var otherCodes: Set<String> = []
        for round in 0..<3000 {
            let prefix = prefixes[round % prefixes.count]
            let length = Int.random(in: 0...1500, using: &generator)
            let input = Data(prefix + generator.bytes(length))
            for format in ImageFormat.allCases {
                let error = MediaFixtures.refusal { () throws(HeliographError) in try codec.decode(input, as: format) }
                guard let error else {
                    accepted += 1
                    continue
                }
                if error.code != .unsupportedMedia { otherCodes.insert(error.code.rawValue) }
            }
        }
        #expect(accepted == 0)
        #expect(otherCodes.isEmpty)
    }

    @Test("a JPEG claiming 60000×60000 pixels is refused from its header, before any pixel memory")
    func jpegPixelLimit() throws {
        let file = MediaFixtures.jpegClaiming(width: 60000, height: 60000)
        let header = try ImageCodec().dimensions(of: file, as: .jpeg)
        #expect(header.width == 60000 && header.height == 60000)
        let started = ContinuousClock.now
        let error = MediaFixtures.refusal { () throws(HeliographError) in try ImageCodec().decode(file, as: .jpeg) }
        #expect(error?.code == .unsupportedMedia)
        #expect(error?.message == "the image is 60000×60000 pixels; the limit is 50 megapixels")
        // Allocating and filling 10.8 GB of pixels could not be this quick.
        #expect(ContinuousClock.now - started < .seconds(1))
    }

    @Test("a PNG claiming 60000×60000 pixels is refused from its header")
    func pngPixelLimit() throws {
        let file = MediaFixtures.pngClaiming(width: 60000, height: 60000)
        let header = try ImageCodec().dimensions(of: file, as: .png)
        #expect(header.width == 60000 && header.height == 60000)
        let error = MediaFixtures.refusal { () throws(HeliographError) in try ImageCodec().decode(file, as: .png) }
        #expect(error?.message == "the image is 60000×60000 pixels; the limit is 50 megapixels")
    }

    @Test("the pixel limit is configurable and counts width times height")
    func configurableLimit() throws {
        let codec = ImageCodec(maximumPixels: 1000)
        #expect(try codec.decode(MediaFixtures.jpeg(width: 40, height: 25), as: .jpeg).width == 40)
        #expect(try codec.decode(MediaFixtures.png(width: 25, height: 40), as: .png).height == 40)
        let error = MediaFixtures.refusal { () throws(HeliographError) in
            try codec.decode(MediaFixtures.png(width: 41, height: 25), as: .png)
        }
        #expect(error?.message == "the image is 41×25 pixels; the limit is 1000 pixels")
    }

    @Test("a file of the other format is named in the refusal")
    func wrongFormat() {
        let png = MediaFixtures.png(width: 8, height: 8)
        let error = MediaFixtures.refusal { () throws(HeliographError) in try ImageCodec().decode(png, as: .jpeg) }
        #expect(error?.code == .unsupportedMedia)
        #expect(error?.message == "the file is not a JPEG image: it is a PNG image")
        let text = MediaFixtures.refusal { () throws(HeliographError) in try ImageCodec().decode(Data("hello".utf8)) }
        #expect(text?.code == .unsupportedMedia)
    }

    @Test("a JPEG quality outside 1...100 is refused")
    func badQuality() {
        let image = MediaFixtures.gradient(width: 4, height: 4)
        for quality in [0, 101, -5] {
            let error = MediaFixtures.refusal { () throws(HeliographError) in try ImageCodec().encodeJPEG(image, quality: quality)
            }
            #expect(error?.code == .badRequest)
        }
    }

    @Test("pixels of the wrong length do not make an image")
    func invalidImage() {
        #expect(throws: HeliographError(.badRequest, "")) { try DecodedImage(width: 2, height: 2, pixels: Data(count: 11)) }
        #expect(throws: HeliographError(.badRequest, "")) { try DecodedImage(width: 0, height: 2, pixels: Data()) }
    }

    @Test("many tasks decode and thumbnail at once, each getting its own image")
    func concurrentDecoding() async throws {
        let files = (0..<16).map { index in
            let width = 200 + index * 37
            let height = 100 + index * 23
            return (
                width, height,
                index % 2 == 0
                    ? MediaFixtures.jpeg(width: width, height: height) : MediaFixtures.png(width: width, height: height)
            )
        }
        let results = try await withThrowingTaskGroup(of: (Int, Int, Int, Int).self) { group in
            for (index, file) in files.enumerated() {
                group.addTask {
                    let format: ImageFormat = index % 2 == 0 ? .jpeg : .png
                    var last: (Int, Int, Int, Int) = (0, 0, 0, 0)
                    for _ in 0..<4 {
                        let image = try ImageCodec().decode(file.2, as: format)
                        let thumbnail = try Thumbnailer(longSide: 64).thumbnail(of: file.2, as: format)
                        last = (index, image.width * 10_000 + image.height, thumbnail.width, thumbnail.height)
                    }
                    return last
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1 }
        }
        for (index, file) in files.enumerated() {
            let result = try #require(results[index])
            #expect(result.1 == file.0 * 10_000 + file.1)
            let expected = Thumbnailer.fittedSize(width: file.0, height: file.1, longSide: 64)
            #expect(result.2 == expected.width && result.3 == expected.height)
        }
    }
}
