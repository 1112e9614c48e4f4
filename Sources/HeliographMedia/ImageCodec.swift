import CMediaCodecs
import Foundation
import HeliographCore

/// The image file formats this module decodes in full.
public enum ImageFormat: String, Sendable, CaseIterable {
    /// JPEG (JFIF or Exif), baseline or progressive.
    case jpeg
    /// PNG, any bit depth, palette, grey or colour, with or without alpha, interlaced or not.
    case png

    /// The media type that declares this format.
    public var mediaType: String {
        switch self {
        case .jpeg: "image/jpeg"
        case .png: "image/png"
        }
    }

    /// The format's name as people write it, for messages.
    public var name: String {
        switch self {
        case .jpeg: "JPEG"
        case .png: "PNG"
        }
    }

    /// The format whose signature starts `bytes`, or `nil`.
    public static func sniff(_ bytes: Data) -> ImageFormat? {
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        return nil
    }
}

/// Decodes JPEG and PNG files to RGB and encodes RGB as JPEG, over libjpeg-turbo and libpng.
///
/// Every failure is a `HeliographError`: a file that is cut short, corrupt, of another format or
/// too large is `unsupported_media` with a sentence saying which. The codec holds no mutable
/// state, so one value may be used from many tasks at once.
public struct ImageCodec: Sendable {
    /// The default pixel limit: 50 megapixels, above any phone camera, far below what would let an
    /// upload of a few kilobytes (a tiny file claiming a huge size) exhaust the server's memory.
    public static let defaultMaximumPixels = 50_000_000

    /// Images with more pixels than this (`width * height` in the file) are refused before any
    /// pixel memory is allocated.
    public let maximumPixels: Int

    /// Creates a codec with a pixel limit.
    public init(maximumPixels: Int = ImageCodec.defaultMaximumPixels) {
        self.maximumPixels = max(1, maximumPixels)
    }

    /// The image's width and height from its header, without decoding the pixels.
    ///
    /// Cheap, but it does not prove the rest of the file is intact; ``decode(_:as:reducingTowards:)``
    /// does.
    /// - Throws: `unsupported_media` when the header is missing, cut short or malformed.
    public func dimensions(of bytes: Data, as format: ImageFormat) throws(HeliographError) -> (width: Int, height: Int) {
        var result = hg_media_result()
        Self.withBytes(bytes) { base, count in
            switch format {
            case .jpeg: hg_jpeg_read_header(base, count, &result)
            case .png: hg_png_read_header(base, count, &result)
            }
        }
        try check(result, bytes: bytes, format: format)
        return (Int(result.width), Int(result.height))
    }

    /// Decodes the whole file to RGB.
    ///
    /// With `reducingTowards`, a JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 of its size (the
    /// smallest that still has at least that many pixels on the long side), so a thumbnail of a
    /// large photo never needs its full-size pixels; every byte of the file is still decoded, so
    /// damage is still found. PNG has no such shortcut and is always decoded at full size.
    /// - Throws: `unsupported_media` for a file that is not of `format`, is cut short or corrupt,
    ///   or has more than ``maximumPixels`` pixels.
    public func decode(
        _ bytes: Data, as format: ImageFormat, reducingTowards longSide: Int? = nil
    ) throws(HeliographError) -> DecodedImage {
        var result = hg_media_result()
        switch format {
        case .jpeg:
            var denominator: UInt32 = 1
            if let longSide {
                let size = try dimensions(of: bytes, as: .jpeg)
                denominator = Self.jpegScaleDenominator(width: size.width, height: size.height, longSide: longSide)
            }
            Self.withBytes(bytes) { base, count in
                hg_jpeg_decode_rgb(base, count, UInt64(maximumPixels), denominator, &result)
            }
        case .png:
            Self.withBytes(bytes) { base, count in
                hg_png_decode_rgb(base, count, UInt64(maximumPixels), &result)
            }
        }
        try check(result, bytes: bytes, format: format)
        guard let pixels = result.pixels else {
            throw HeliographError(.internalError, "the \(format.name) decoder returned no pixels")
        }
        // The C buffer becomes the Data's storage: no copy of what may be tens of megabytes.
        let data = Data(
            bytesNoCopy: pixels, count: result.byte_count, deallocator: .custom { pointer, _ in hg_media_free(pointer) })
        return DecodedImage(
            unchecked: Int(result.output_width), height: Int(result.output_height), pixels: data,
            originalWidth: Int(result.width), originalHeight: Int(result.height))
    }

    /// Decodes a JPEG or PNG, recognised by its signature.
    ///
    /// - Throws: `unsupported_media` when the bytes are neither, or as ``decode(_:as:reducingTowards:)``.
    public func decode(_ bytes: Data) throws(HeliographError) -> DecodedImage {
        guard let format = ImageFormat.sniff(bytes) else {
            throw HeliographError(.unsupportedMedia, "the file is neither a JPEG nor a PNG image")
        }
        return try decode(bytes, as: format)
    }

    /// Encodes RGB pixels as a baseline JPEG.
    ///
    /// - Parameter quality: libjpeg's quality scale, 1 (smallest) to 100 (best).
    /// - Throws: `bad_request` for a quality outside 1...100; `unsupported_media` for an image wider
    ///   or taller than JPEG allows (65500 pixels).
    public func encodeJPEG(_ image: DecodedImage, quality: Int = 80) throws(HeliographError) -> Data {
        guard (1...100).contains(quality) else {
            throw HeliographError(.badRequest, "a JPEG quality is between 1 and 100, not \(quality)")
        }
        guard image.width <= 65_500, image.height <= 65_500 else {
            throw HeliographError(
                .unsupportedMedia,
                "a JPEG image is at most 65500 pixels on a side; this one is \(image.width)×\(image.height)")
        }
        var result = hg_media_result()
        image.pixels.withUnsafeBytes { raw in
            hg_jpeg_encode_rgb(
                raw.bindMemory(to: UInt8.self).baseAddress, UInt32(image.width), UInt32(image.height), Int32(quality),
                &result)
        }
        guard result.status == HG_MEDIA_OK, let bytes = result.bytes else {
            throw HeliographError(.internalError, "the JPEG encoder failed: \(Self.message(of: result))")
        }
        return Data(bytesNoCopy: bytes, count: result.byte_count, deallocator: .custom { pointer, _ in hg_media_free(pointer) })
    }

    /// The largest libjpeg scale denominator (1, 2, 4 or 8) whose output still covers a thumbnail
    /// with `longSide` pixels on the long side in both directions, so the box filter that follows
    /// only ever shrinks.
    static func jpegScaleDenominator(width: Int, height: Int, longSide: Int) -> UInt32 {
        let target = Thumbnailer.fittedSize(width: width, height: height, longSide: longSide)
        for denominator in [8, 4, 2] {
            // libjpeg rounds scaled sizes up.
            let scaledWidth = (width + denominator - 1) / denominator
            let scaledHeight = (height + denominator - 1) / denominator
            if scaledWidth >= target.width && scaledHeight >= target.height { return UInt32(denominator) }
        }
        return 1
    }

    /// Passes the bytes to C as a pointer and count; an empty Data passes a null pointer, which
    /// the C side reports as an empty file.
    private static func withBytes(_ bytes: Data, _ body: (UnsafePointer<UInt8>?, Int) -> Void) {
        bytes.withUnsafeBytes { raw in body(raw.bindMemory(to: UInt8.self).baseAddress, raw.count) }
    }

    /// The C side's own explanation (from libjpeg or libpng), as Swift text.
    private static func message(of result: hg_media_result) -> String {
        withUnsafeBytes(of: result.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Turns a failed status into the error a person reads.
    private func check(_ result: hg_media_result, bytes: Data, format: ImageFormat) throws(HeliographError) {
        let detail = Self.message(of: result)
        switch result.status {
        case HG_MEDIA_OK:
            return
        case HG_MEDIA_WRONG_FORMAT:
            if let other = ImageFormat.sniff(bytes), other != format {
                throw HeliographError(.unsupportedMedia, "the file is not a \(format.name) image: it is a \(other.name) image")
            }
            throw HeliographError(
                .unsupportedMedia, "the file is not a \(format.name) image (it does not start with the \(format.name) signature)")
        case HG_MEDIA_TRUNCATED:
            if bytes.isEmpty { throw HeliographError(.unsupportedMedia, "the file is empty") }
            throw HeliographError(
                .unsupportedMedia, "the \(format.name) file is truncated: it ends before the image does (\(detail))")
        case HG_MEDIA_TOO_MANY_PIXELS:
            throw HeliographError(
                .unsupportedMedia,
                "the image is \(result.width)×\(result.height) pixels; the limit is \(Self.megapixels(maximumPixels))")
        case HG_MEDIA_UNSUPPORTED_VARIANT:
            throw HeliographError(.unsupportedMedia, "the \(format.name) image cannot be read: \(detail)")
        case HG_MEDIA_OUT_OF_MEMORY:
            throw HeliographError(.internalError, "not enough memory to decode the \(format.name) image")
        case HG_MEDIA_INVALID_ARGUMENT:
            throw HeliographError(.internalError, "the \(format.name) decoder was called wrongly: \(detail)")
        default:
            throw HeliographError(
                .unsupportedMedia, "the \(format.name) image is damaged and cannot be decoded (\(detail))")
        }
    }

    /// "50 megapixels", or "1.5 megapixels", or "2000 pixels" for small limits.
    static func megapixels(_ count: Int) -> String {
        if count < 1_000_000 { return "\(count) pixels" }
        if count % 1_000_000 == 0 { return "\(count / 1_000_000) megapixels" }
        return String(format: "%.1f megapixels", Double(count) / 1_000_000)
    }
}
