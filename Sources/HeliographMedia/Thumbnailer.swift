import Foundation
import HeliographCore

/// A JPEG thumbnail and the sizes it was made from.
public struct Thumbnail: Sendable, Equatable {
    /// The thumbnail file, a baseline JPEG.
    public let jpeg: Data
    /// The thumbnail's width in pixels.
    public let width: Int
    /// The thumbnail's height in pixels.
    public let height: Int
    /// The width of the image it shows, as stored in that image's file.
    public let sourceWidth: Int
    /// The height of the image it shows, as stored in that image's file.
    public let sourceHeight: Int
}

/// Makes JPEG thumbnails: the image shrunk to fit a square of ``longSide`` pixels, aspect kept.
///
/// Shrinking averages every source pixel under each thumbnail pixel, weighted by how much of it
/// lies there (a box, or area-averaging, filter), which does not alias on the fine detail of a
/// photo as picking one pixel in N would. Images that already fit are never enlarged; they are
/// re-encoded at their own size, so a thumbnail is always a small baseline JPEG whatever came in.
public struct Thumbnailer: Sendable {
    /// The default long side: 320 pixels, sharp in a chat bubble, a few kilobytes.
    public static let defaultLongSide = 320
    /// The default JPEG quality of thumbnails.
    public static let defaultQuality = 80

    /// The thumbnail's longer side, in pixels.
    public let longSide: Int
    /// The JPEG quality of thumbnails, 1...100.
    public let quality: Int
    /// Decodes sources and encodes thumbnails; its pixel limit applies to sources.
    public let codec: ImageCodec

    /// Creates a thumbnailer; `longSide` is at least 1 and `quality` within 1...100 (values
    /// outside are clamped, as they are configuration, not input).
    public init(
        longSide: Int = Thumbnailer.defaultLongSide, quality: Int = Thumbnailer.defaultQuality,
        codec: ImageCodec = ImageCodec()
    ) {
        self.longSide = max(1, longSide)
        self.quality = min(100, max(1, quality))
        self.codec = codec
    }

    /// The size of an image of `width`×`height` scaled to fit `longSide`, aspect kept, never
    /// enlarged, never below one pixel on a side.
    public static func fittedSize(width: Int, height: Int, longSide: Int) -> (width: Int, height: Int) {
        let long = max(width, height)
        guard long > longSide else { return (width, height) }
        // Rounded to the nearest pixel, so 1000×500 becomes 320×160 and 1000×333 becomes 320×107.
        let scaled = { (side: Int) in max(1, Int((Double(side) * Double(longSide) / Double(long)).rounded())) }
        return width >= height ? (longSide, scaled(height)) : (scaled(width), longSide)
    }

    /// The thumbnail of an image file: decoded (a JPEG at a reduced scale when it is much larger
    /// than the thumbnail), shrunk and encoded.
    ///
    /// - Throws: `unsupported_media` when the file cannot be decoded as `format` (see ``ImageCodec``).
    public func thumbnail(of bytes: Data, as format: ImageFormat) throws(HeliographError) -> Thumbnail {
        let decoded = try codec.decode(bytes, as: format, reducingTowards: longSide)
        return try thumbnail(of: decoded)
    }

    /// The thumbnail of decoded pixels.
    ///
    /// The size follows the image's original size, so a JPEG decoded at a reduced scale gives the
    /// same thumbnail size (and aspect) as the full-size pixels would.
    public func thumbnail(of image: DecodedImage) throws(HeliographError) -> Thumbnail {
        let size = Self.fittedSize(width: image.originalWidth, height: image.originalHeight, longSide: longSide)
        let small = Self.resize(image, width: size.width, height: size.height)
        let jpeg = try codec.encodeJPEG(small, quality: quality)
        return Thumbnail(
            jpeg: jpeg, width: size.width, height: size.height, sourceWidth: image.originalWidth,
            sourceHeight: image.originalHeight)
    }

    /// Resamples `image` to `width`×`height` with an area-averaging filter; the result keeps the
    /// source's original size.
    ///
    /// Each output pixel is the mean of the source area it covers, partial source pixels at its
    /// edges weighted by the fraction covered. The filter is separable: rows first, then columns.
    public static func resize(_ image: DecodedImage, width: Int, height: Int) -> DecodedImage {
        precondition(width > 0 && height > 0, "a resized image needs a positive size")
        if width == image.width && height == image.height { return image }
        let columns = AxisWeights(source: image.width, destination: width)
        let rows = AxisWeights(source: image.height, destination: height)

        // Pass 1: each source row shrunk to `width` pixels, kept as Float so rounding happens once.
        var horizontal = [Float](repeating: 0, count: width * image.height * 3)
        image.pixels.withUnsafeBytes { raw in
            let source = raw.bindMemory(to: UInt8.self)
            horizontal.withUnsafeMutableBufferPointer { output in
                for y in 0..<image.height {
                    let sourceRow = y * image.width * 3
                    let outputRow = y * width * 3
                    for x in 0..<width {
                        var red: Float = 0
                        var green: Float = 0
                        var blue: Float = 0
                        for index in columns.range(x) {
                            let offset = sourceRow + columns.sources[index] * 3
                            let weight = columns.weights[index]
                            red += Float(source[offset]) * weight
                            green += Float(source[offset + 1]) * weight
                            blue += Float(source[offset + 2]) * weight
                        }
                        output[outputRow + x * 3] = red
                        output[outputRow + x * 3 + 1] = green
                        output[outputRow + x * 3 + 2] = blue
                    }
                }
            }
        }

        // Pass 2: columns, accumulating whole rows at a time, which reads memory in order.
        let rowLength = width * 3
        var pixels = Data(count: rowLength * height)
        pixels.withUnsafeMutableBytes { raw in
            let output = raw.bindMemory(to: UInt8.self)
            var accumulator = [Float](repeating: 0, count: rowLength)
            horizontal.withUnsafeBufferPointer { input in
                accumulator.withUnsafeMutableBufferPointer { sum in
                    for y in 0..<height {
                        for index in 0..<rowLength { sum[index] = 0 }
                        for index in rows.range(y) {
                            let sourceRow = rows.sources[index] * rowLength
                            let weight = rows.weights[index]
                            for position in 0..<rowLength { sum[position] += input[sourceRow + position] * weight }
                        }
                        let outputRow = y * rowLength
                        for position in 0..<rowLength {
                            output[outputRow + position] = UInt8(min(255, max(0, sum[position] + 0.5)))
                        }
                    }
                }
            }
        }
        return DecodedImage(
            unchecked: width, height: height, pixels: pixels, originalWidth: image.originalWidth,
            originalHeight: image.originalHeight)
    }
}

/// For each output position along one axis, the source positions it covers and their weights
/// (the covered fraction of each, divided by the span), flattened into three arrays.
private struct AxisWeights {
    /// Where output position i's entries start in ``sources`` and ``weights``; one more entry
    /// than there are output positions, so entries of i are `starts[i]..<starts[i + 1]`.
    var starts: [Int] = [0]
    var sources: [Int] = []
    var weights: [Float] = []

    init(source: Int, destination: Int) {
        let span = Double(source) / Double(destination)
        for position in 0..<destination {
            let start = Double(position) * span
            let end = min(Double(source), Double(position + 1) * span)
            var sourcePosition = Int(start.rounded(.down))
            while sourcePosition < source && Double(sourcePosition) < end {
                let covered = min(Double(sourcePosition + 1), end) - max(Double(sourcePosition), start)
                // Slivers left by floating-point rounding carry no weight worth a multiply.
                if covered > 1e-9 {
                    sources.append(sourcePosition)
                    weights.append(Float(covered / (end - start)))
                }
                sourcePosition += 1
            }
            starts.append(sources.count)
        }
    }

    func range(_ position: Int) -> Range<Int> { starts[position]..<starts[position + 1] }
}
