import CMediaCodecs
import Foundation
import HeliographCore
import HeliographMedia

/// Test images made on the spot: RGB gradients, encoded by the module's JPEG encoder and by
/// libpng's writer, so every test reads files that real encoders produced.
enum MediaFixtures {
    /// A gradient: red grows left to right, green top to bottom, blue mixes both, so any
    /// transposition, flip or shift of the pixels shows.
    static func gradient(width: Int, height: Int) -> DecodedImage {
        var bytes = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let offset = (y * width + x) * 3
                bytes[offset] = UInt8(width == 1 ? 0 : x * 255 / (width - 1))
                bytes[offset + 1] = UInt8(height == 1 ? 0 : y * 255 / (height - 1))
                bytes[offset + 2] = UInt8((x + y) % 256)
            }
        }
        return try! DecodedImage(width: width, height: height, pixels: Data(bytes))
    }

    /// One colour everywhere.
    static func solid(width: Int, height: Int, red: UInt8, green: UInt8, blue: UInt8) -> DecodedImage {
        var bytes = [UInt8]()
        bytes.reserveCapacity(width * height * 3)
        for _ in 0..<(width * height) { bytes += [red, green, blue] }
        return try! DecodedImage(width: width, height: height, pixels: Data(bytes))
    }

    /// A gradient encoded as JPEG by the module's encoder.
    static func jpeg(width: Int, height: Int, quality: Int = 90) -> Data {
        try! ImageCodec().encodeJPEG(gradient(width: width, height: height), quality: quality)
    }

    /// A gradient encoded as PNG by libpng.
    static func png(width: Int, height: Int) -> Data {
        png(gradient(width: width, height: height))
    }

    /// Pixels encoded as PNG by libpng.
    static func png(_ image: DecodedImage) -> Data {
        encodePNG([UInt8](image.pixels), width: image.width, height: image.height, channels: 3)
    }

    /// Raw RGB (3 channels) or RGBA (4) bytes encoded as PNG by libpng.
    static func encodePNG(_ bytes: [UInt8], width: Int, height: Int, channels: Int) -> Data {
        var result = hg_media_result()
        bytes.withUnsafeBufferPointer { buffer in
            hg_png_encode(buffer.baseAddress, UInt32(width), UInt32(height), Int32(channels), &result)
        }
        precondition(result.status == HG_MEDIA_OK, "libpng could not write the test image")
        defer { hg_media_free(result.bytes) }
        return Data(bytes: result.bytes!, count: result.byte_count)
    }

    /// A JPEG whose frame header (SOF0) claims another size; the scan data is left as it is.
    static func jpegClaiming(width: Int, height: Int) -> Data {
        var bytes = [UInt8](jpeg(width: 16, height: 16))
        // Markers after SOI are FF xx followed by a big-endian length that counts itself.
        var offset = 2
        while offset + 4 < bytes.count {
            precondition(bytes[offset] == 0xFF, "marker expected at \(offset)")
            let marker = bytes[offset + 1]
            let length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            if marker == 0xC0 {
                // SOF0: length(2) precision(1) height(2) width(2) ...
                bytes[offset + 5] = UInt8(height >> 8)
                bytes[offset + 6] = UInt8(height & 0xFF)
                bytes[offset + 7] = UInt8(width >> 8)
                bytes[offset + 8] = UInt8(width & 0xFF)
                return Data(bytes)
            }
            offset += 2 + length
        }
        preconditionFailure("the encoder wrote no SOF0 marker")
    }

    /// A PNG whose IHDR claims another size, with the chunk's CRC recomputed so libpng accepts
    /// the header and only the size is wrong.
    static func pngClaiming(width: Int, height: Int) -> Data {
        var bytes = [UInt8](png(width: 16, height: 16))
        // Signature (8), IHDR length (4), "IHDR" (4), then width and height, then 5 bytes, then CRC.
        for (index, value) in [UInt32(width), UInt32(height)].enumerated() {
            for byte in 0..<4 { bytes[16 + index * 4 + byte] = UInt8((value >> (24 - 8 * UInt32(byte))) & 0xFF) }
        }
        let crc = crc32(bytes[12..<29])
        for byte in 0..<4 { bytes[29 + byte] = UInt8((crc >> (24 - 8 * UInt32(byte))) & 0xFF) }
        return Data(bytes)
    }

    /// CRC-32 as PNG defines it (ISO 3309, reflected polynomial 0xEDB88320).
    static func crc32<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }

    /// Runs `body` and returns the error it threw, or `nil`.
    static func refusal<T>(_ body: () throws(HeliographError) -> T) -> HeliographError? {
        do {
            _ = try body()
            return nil
        } catch {
            return error
        }
    }
}

/// SplitMix64: a small generator with a fixed seed, so random inputs are the same on every run.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) } }
}
