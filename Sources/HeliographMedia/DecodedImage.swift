import Foundation
import HeliographCore

/// An image decoded to 8-bit RGB pixels: what thumbnails, and later perceptual hashes, are made from.
///
/// Pixels are row-major, three bytes a pixel (red, green, blue), rows without padding, so the
/// pixel at (x, y) starts at byte `(y * width + x) * 3`.
public struct DecodedImage: Sendable, Equatable {
    /// Width of ``pixels`` in pixels.
    public let width: Int
    /// Height of ``pixels`` in pixels.
    public let height: Int
    /// `width * height * 3` bytes of RGB.
    public let pixels: Data
    /// Width of the image in its file. Larger than ``width`` when a JPEG was decoded at a reduced
    /// scale for a thumbnail, which never holds the full-size pixels.
    public let originalWidth: Int
    /// Height of the image in its file (see ``originalWidth``).
    public let originalHeight: Int

    /// Wraps RGB pixels, checking that their count matches the size.
    ///
    /// - Throws: `bad_request` when a side is not positive or `pixels` is not `width * height * 3` bytes.
    public init(width: Int, height: Int, pixels: Data) throws(HeliographError) {
        try self.init(width: width, height: height, pixels: pixels, originalWidth: width, originalHeight: height)
    }

    /// Wraps RGB pixels decoded at a reduced scale from an image of another size.
    ///
    /// - Throws: `bad_request` when a side is not positive or `pixels` is not `width * height * 3` bytes.
    public init(width: Int, height: Int, pixels: Data, originalWidth: Int, originalHeight: Int) throws(HeliographError) {
        guard width > 0, height > 0, originalWidth > 0, originalHeight > 0 else {
            throw HeliographError(.badRequest, "an image needs a positive width and height, not \(width)×\(height)")
        }
        let (product, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, product <= Int.max / 3, pixels.count == product * 3 else {
            throw HeliographError(
                .badRequest,
                "a \(width)×\(height) RGB image needs \(width)×\(height)×3 bytes of pixels, not \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
        self.originalWidth = originalWidth
        self.originalHeight = originalHeight
    }

    /// Made by the codec and the resizer, whose sizes are right by construction.
    init(unchecked width: Int, height: Int, pixels: Data, originalWidth: Int, originalHeight: Int) {
        self.width = width
        self.height = height
        self.pixels = pixels
        self.originalWidth = originalWidth
        self.originalHeight = originalHeight
    }

    /// The red, green and blue of the pixel at column `x`, row `y` (both from 0, top left).
    public func pixel(x: Int, y: Int) -> (red: UInt8, green: UInt8, blue: UInt8) {
        precondition(x >= 0 && x < width && y >= 0 && y < height, "pixel (\(x), \(y)) is outside \(width)×\(height)")
        let offset = pixels.startIndex + (y * width + x) * 3
        return (pixels[offset], pixels[offset + 1], pixels[offset + 2])
    }
}
