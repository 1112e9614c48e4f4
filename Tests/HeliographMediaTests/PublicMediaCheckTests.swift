import Foundation
import HeliographCore
import HeliographMedia
import Testing

@Suite("Public media check")
struct PublicMediaCheckTests {
    /// A proper start for each magic-number type, from each format's specification.
    static let properHeads: [(String, [UInt8])] = [
        ("image/gif", Array("GIF89a".utf8) + [0x10, 0x00, 0x10, 0x00]),
        ("image/gif", Array("GIF87a".utf8) + [0x01, 0x00, 0x01, 0x00]),
        ("image/webp", Array("RIFF".utf8) + [0x24, 0x00, 0x00, 0x00] + Array("WEBPVP8 ".utf8)),
        ("video/mp4", [0x00, 0x00, 0x00, 0x20] + Array("ftypisom".utf8) + [0x00, 0x00, 0x02, 0x00]),
        ("video/webm", [0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86, 0x81, 0x01]),
        ("audio/ogg", Array("OggS".utf8) + [0x00, 0x02, 0x00, 0x00]),
        ("audio/mpeg", Array("ID3".utf8) + [0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]),
        // MPEG-1 Layer III, 128 kbit/s, 44.1 kHz.
        ("audio/mpeg", [0xFF, 0xFB, 0x90, 0x64, 0x00, 0x00]),
        ("application/pdf", Array("%PDF-1.7\n".utf8)),
    ]

    @Test("each magic-number type is accepted from a proper start, with the whole file or only its head")
    func magicAccepted() throws {
        var generator = SeededGenerator(seed: 7)
        let check = PublicMediaCheck()
        for (type, head) in Self.properHeads {
            let file = Data(head + generator.bytes(500))
            let facts = try check.check(declaredType: type, bytes: file)
            #expect(facts == PublicMediaFacts(mediaType: type), "\(type)")
            #expect(facts.width == nil && facts.thumbnail == nil)
            #expect(try check.check(declaredType: type, head: file.prefix(PublicMediaCheck.headLength)).mediaType == type)
            // A head longer than needed is fine: only its start is read.
            #expect(try check.check(declaredType: type, head: file).mediaType == type)
        }
    }

    @Test("each magic-number type is refused when its start is another type's or is damaged")
    func magicRefused() {
        let check = PublicMediaCheck()
        for (type, head) in Self.properHeads {
            // The MP4 signature is at bytes 4 to 7 (bytes 0 to 3 are the box size).
            var damaged = head
            damaged[type == "video/mp4" ? 4 : 0] ^= 0x20
            let others = Self.properHeads.filter { $0.0 != type }.map(\.1)
            for wrong in others + [damaged, Array("hello".utf8), [UInt8](MediaFixtures.png(width: 2, height: 2))] {
                let error = MediaFixtures.refusal { () throws(HeliographError) in
                    try check.check(declaredType: type, bytes: Data(wrong + [UInt8](repeating: 0x41, count: 100)))
                }
                #expect(error?.code == .unsupportedMedia, "\(type) with \(wrong.prefix(8))")
                #expect(error?.message.hasPrefix("the file was declared as \(type) but is not") == true)
            }
        }
        let mp4 = MediaFixtures.refusal { () throws(HeliographError) in
            try check.check(declaredType: "video/mp4", head: Data("%PDF-1.4 trailer".utf8))
        }
        #expect(
            mp4?.message
                == "the file was declared as video/mp4 but is not an MP4 video (it has no ftyp box at its start); its bytes look like a PDF document"
        )
    }

    @Test("an MPEG frame sync with reserved header fields is not taken for MP3 audio")
    func mpegReservedFields() {
        let check = PublicMediaCheck()
        // Version 01 (reserved), layer 00 (reserved), bitrate 1111 (bad), sample rate 11 (reserved).
        for head: [UInt8] in [
            [0xFF, 0xEB, 0x90, 0x00], [0xFF, 0xF9, 0x90, 0x00], [0xFF, 0xFB, 0xF0, 0x00], [0xFF, 0xFB, 0x9C, 0x00],
        ] {
            let error = MediaFixtures.refusal { () throws(HeliographError) in
                try check.check(declaredType: "audio/mpeg", head: Data(head))
            }
            #expect(error?.code == .unsupportedMedia, "\(head)")
        }
    }

    @Test("JPEG and PNG are decoded: their size and a 320-pixel JPEG thumbnail come back", arguments: ImageFormat.allCases)
    func imagesDecoded(format: ImageFormat) throws {
        let file = format == .jpeg ? MediaFixtures.jpeg(width: 1000, height: 500) : MediaFixtures.png(width: 1000, height: 500)
        let facts = try PublicMediaCheck().check(declaredType: format.mediaType, bytes: file)
        #expect(facts.mediaType == format.mediaType)
        #expect(facts.width == 1000 && facts.height == 500)
        let thumbnail = try #require(facts.thumbnail)
        let decoded = try ImageCodec().decode(thumbnail, as: .jpeg)
        #expect(decoded.width == 320 && decoded.height == 160)
    }

    @Test("media type case, spaces and parameters are normalised")
    func normalisation() throws {
        #expect(PublicMediaCheck.normalizedType(" image/JPEG; charset=x") == "image/jpeg")
        #expect(PublicMediaCheck.normalizedType("Application/PDF") == "application/pdf")
        let facts = try PublicMediaCheck().check(
            declaredType: "image/JPEG; charset=x", bytes: MediaFixtures.jpeg(width: 5, height: 4))
        #expect(facts.mediaType == "image/jpeg" && facts.width == 5 && facts.height == 4)
        #expect(
            try PublicMediaCheck().check(declaredType: "VIDEO/WebM ;codecs=vp9", head: Data([0x1A, 0x45, 0xDF, 0xA3])).mediaType
                == "video/webm")
    }

    @Test("a PNG declared as image/jpeg, and a JPEG declared as image/png, are refused")
    func mislabelledImages() {
        let check = PublicMediaCheck()
        let png = MediaFixtures.refusal { () throws(HeliographError) in
            try check.check(declaredType: "image/jpeg", bytes: MediaFixtures.png(width: 10, height: 10))
        }
        #expect(png?.code == .unsupportedMedia)
        #expect(png?.message.contains("its bytes look like a PNG image") == true, "\(png?.message ?? "accepted")")
        let jpeg = MediaFixtures.refusal { () throws(HeliographError) in
            try check.check(declaredType: "image/png", bytes: MediaFixtures.jpeg(width: 10, height: 10))
        }
        #expect(jpeg?.code == .unsupportedMedia)
        #expect(jpeg?.message.contains("its bytes look like a JPEG image") == true)
    }

    @Test("cut or garbage images are refused by the check", arguments: ImageFormat.allCases)
    func brokenImages(format: ImageFormat) {
        let file = format == .jpeg ? MediaFixtures.jpeg(width: 400, height: 300) : MediaFixtures.png(width: 400, height: 300)
        let check = PublicMediaCheck()
        var generator = SeededGenerator(seed: 99)
        var inputs = [file.prefix(file.count / 2), file.prefix(file.count - 1), Data(), Data(generator.bytes(3000))]
        inputs.append(file.prefix(format == .jpeg ? 3 : 8) + Data(generator.bytes(3000)))
        for input in inputs {
            let error = MediaFixtures.refusal { () throws(HeliographError) in
                try check.check(declaredType: format.mediaType, bytes: input)
            }
            #expect(error?.code == .unsupportedMedia, "\(input.count) bytes")
        }
    }

    @Test("types that are not accepted are refused with the list of accepted ones")
    func unacceptedTypes() {
        let check = PublicMediaCheck()
        for type in ["image/bmp", "text/html", "application/octet-stream", "", "image", "image/svg+xml", "video/quicktime"] {
            let error = MediaFixtures.refusal { () throws(HeliographError) in
                try check.check(declaredType: type, bytes: Data("GIF89a%PDF-".utf8))
            }
            #expect(error?.code == .unsupportedMedia, "\(type)")
            #expect(error?.message.contains("accepted types are image/jpeg, image/png, image/gif") == true)
            let declaration = MediaFixtures.refusal { () throws(HeliographError) in
                try check.checkDeclaration(declaredType: type, byteCount: 10)
            }
            #expect(declaration?.code == .unsupportedMedia)
        }
    }

    @Test("images above the byte limit are refused from their declared size, other types are not")
    func imageByteLimit() throws {
        let check = PublicMediaCheck()
        let big = MediaFixtures.refusal { () throws(HeliographError) in
            try check.checkDeclaration(declaredType: "image/png", byteCount: 60 * 1024 * 1024)
        }
        #expect(big?.code == .unsupportedMedia)
        #expect(big?.message == "the image is 60 MiB; public images may be at most 50 MiB")
        #expect(try check.checkDeclaration(declaredType: "image/png", byteCount: 50 * 1024 * 1024) == "image/png")
        #expect(try check.checkDeclaration(declaredType: "video/mp4", byteCount: 2 << 30) == "video/mp4")

        let small = PublicMediaCheck(maximumImageBytes: 1024)
        let file = MediaFixtures.jpeg(width: 300, height: 300)
        #expect(file.count > 1024)
        let error = MediaFixtures.refusal { () throws(HeliographError) in try small.check(declaredType: "image/jpeg", bytes: file)
        }
        #expect(error?.code == .unsupportedMedia)
        #expect(error?.message.hasSuffix("; public images may be at most 1 KiB") == true, "\(error?.message ?? "accepted")")
    }

    @Test("the pixel limit applies through the check")
    func pixelLimitThroughCheck() {
        let error = MediaFixtures.refusal { () throws(HeliographError) in
            try PublicMediaCheck().check(
                declaredType: "image/jpeg", bytes: MediaFixtures.jpegClaiming(width: 20000, height: 20000))
        }
        #expect(error?.message == "the image is 20000×20000 pixels; the limit is 50 megapixels")
    }

    @Test("isImage marks the types decoded in full; their head alone is not enough")
    func imageTypes() {
        #expect(PublicMediaCheck.isImage("image/jpeg") && PublicMediaCheck.isImage("IMAGE/PNG; x=y"))
        #expect(
            !PublicMediaCheck.isImage("image/gif") && !PublicMediaCheck.isImage("video/mp4")
                && !PublicMediaCheck.isImage("image/bmp"))
        let error = MediaFixtures.refusal { () throws(HeliographError) in
            try PublicMediaCheck().check(declaredType: "image/jpeg", head: MediaFixtures.jpeg(width: 4, height: 4).prefix(64))
        }
        #expect(error?.code == .internalError)
        #expect(PublicMediaCheck.acceptedTypes.count == 9)
    }

    @Test("an empty file is refused for every accepted type")
    func emptyFile() {
        for type in PublicMediaCheck.acceptedTypes {
            let error = MediaFixtures.refusal { () throws(HeliographError) in
                try PublicMediaCheck().check(declaredType: type, bytes: Data())
            }
            #expect(error?.message == "the file is empty", "\(type)")
        }
    }
}
