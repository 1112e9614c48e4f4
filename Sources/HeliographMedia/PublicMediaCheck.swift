import Foundation
import HeliographCore

/// What the check learned about a public upload.
public struct PublicMediaFacts: Sendable, Equatable {
    /// The declared media type, normalised (lower case, without parameters), such as `image/png`.
    public let mediaType: String
    /// The image's width in pixels, for JPEG and PNG; `nil` for other types.
    public let width: Int?
    /// The image's height in pixels, for JPEG and PNG; `nil` for other types.
    public let height: Int?
    /// A JPEG thumbnail, for JPEG and PNG; `nil` for other types.
    public let thumbnail: Data?

    /// Creates facts; the server builds them only through ``PublicMediaCheck``.
    public init(mediaType: String, width: Int? = nil, height: Int? = nil, thumbnail: Data? = nil) {
        self.mediaType = mediaType
        self.width = width
        self.height = height
        self.thumbnail = thumbnail
    }
}

/// Checks that a finished public upload holds what its uploader declared.
///
/// Public media is shown to anyone who opens the chat, so the server must not serve a file under a
/// type it is not: an executable labelled as a photo, or a damaged image that breaks viewers. JPEG
/// and PNG are decoded in full (which also yields their size and a thumbnail); the other accepted
/// types are recognised by the magic numbers at their start, which is all a browser or player
/// relies on to pick a decoder. Every refusal is `unsupported_media` with a sentence a person
/// understands.
public struct PublicMediaCheck: Sendable {
    /// The media types accepted for public media, in the order messages list them.
    public static let acceptedTypes: [String] = [
        "image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4", "video/webm", "audio/ogg", "audio/mpeg",
        "application/pdf",
    ]
    /// The default for ``maximumImageBytes``: 50 MiB, more than any camera's JPEG.
    public static let defaultMaximumImageBytes = 50 * 1024 * 1024
    /// How many leading bytes the magic-number types need; ``check(declaredType:head:)`` reads no more.
    public static let headLength = 64

    /// JPEG and PNG files larger than this are refused without reading them: decoding holds the
    /// whole file in memory.
    public let maximumImageBytes: Int
    /// Decodes images (its codec's pixel limit applies) and makes their thumbnails.
    public let thumbnailer: Thumbnailer

    /// Creates a check with limits.
    public init(maximumImageBytes: Int = PublicMediaCheck.defaultMaximumImageBytes, thumbnailer: Thumbnailer = Thumbnailer()) {
        self.maximumImageBytes = max(0, maximumImageBytes)
        self.thumbnailer = thumbnailer
    }

    /// The media type without parameters, surrounding spaces or upper case: `image/JPEG; q=1`
    /// becomes `image/jpeg`, as media types compare case-insensitively (RFC 9110, section 8.3.1).
    public static func normalizedType(_ declaredType: String) -> String {
        let essence = declaredType.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return essence.trimmingCharacters(in: .whitespaces).lowercased()
    }

    /// Whether the type is one this check decodes in full (JPEG and PNG).
    ///
    /// For these the server passes the whole file to ``check(declaredType:bytes:)`` and must
    /// respect ``maximumImageBytes``; for every other accepted type (GIF and WebP included, which
    /// are checked by their signature only) ``check(declaredType:head:)`` with the first
    /// ``headLength`` bytes is enough.
    public static func isImage(_ declaredType: String) -> Bool {
        ImageFormat(mediaType: normalizedType(declaredType)) != nil
    }

    /// Checks a declaration before any byte is read: the type must be accepted and an image must
    /// not be larger than ``maximumImageBytes``. Returns the normalised type.
    ///
    /// - Throws: `unsupported_media` naming the accepted types, or the image size limit.
    @discardableResult
    public func checkDeclaration(declaredType: String, byteCount: Int) throws(HeliographError) -> String {
        let mediaType = try Self.accepted(declaredType)
        if ImageFormat(mediaType: mediaType) != nil && byteCount > maximumImageBytes {
            throw HeliographError(
                .unsupportedMedia,
                "the image is \(ByteCount.text(Int64(byteCount))); public images may be at most \(ByteCount.text(Int64(maximumImageBytes)))"
            )
        }
        return mediaType
    }

    /// Checks a whole file against its declared type. JPEG and PNG are decoded in full, giving
    /// their width, height and a JPEG thumbnail; other types are checked by their magic number.
    ///
    /// - Throws: `unsupported_media` when the type is not accepted, the image is over the size or
    ///   pixel limit, or the bytes are not of the declared type, are cut short or corrupt.
    public func check(declaredType: String, bytes: Data) throws(HeliographError) -> PublicMediaFacts {
        let mediaType = try checkDeclaration(declaredType: declaredType, byteCount: bytes.count)
        guard let format = ImageFormat(mediaType: mediaType) else {
            return try checkSignature(mediaType: mediaType, head: bytes.prefix(Self.headLength))
        }
        if bytes.isEmpty { throw HeliographError(.unsupportedMedia, "the file is empty") }
        if ImageFormat.sniff(bytes) != format {
            throw HeliographError(.unsupportedMedia, Self.mismatch(declared: mediaType, head: bytes.prefix(Self.headLength)))
        }
        let thumbnail = try thumbnailer.thumbnail(of: bytes, as: format)
        return PublicMediaFacts(
            mediaType: mediaType, width: thumbnail.sourceWidth, height: thumbnail.sourceHeight, thumbnail: thumbnail.jpeg)
    }

    /// Checks the start of a file of a magic-number type (anything but JPEG and PNG), so a large
    /// video need not be loaded: pass at least its first ``headLength`` bytes, or all of a shorter
    /// file.
    ///
    /// - Throws: `unsupported_media` when the type is not accepted or the bytes do not start as
    ///   that type does; `internal_error` for JPEG or PNG, which need the whole file.
    public func check(declaredType: String, head: Data) throws(HeliographError) -> PublicMediaFacts {
        let mediaType = try Self.accepted(declaredType)
        if ImageFormat(mediaType: mediaType) != nil {
            throw HeliographError(
                .internalError, "\(mediaType) is checked by decoding the whole file, not its first bytes")
        }
        return try checkSignature(mediaType: mediaType, head: head.prefix(Self.headLength))
    }

    /// The accepted media type whose magic number starts `head`, or `nil`.
    public static func sniff(_ head: Data) -> String? {
        let bytes = [UInt8](head.prefix(headLength))
        if let format = ImageFormat.sniff(head) { return format.mediaType }
        return signatures.first { $0.matches(bytes) }?.mediaType
    }

    // MARK: - Private

    private func checkSignature(mediaType: String, head: Data) throws(HeliographError) -> PublicMediaFacts {
        guard let signature = Self.signatures.first(where: { $0.mediaType == mediaType }) else {
            // Unreachable while every accepted type is either an image format or has a signature.
            throw HeliographError(.internalError, "no check is defined for \(mediaType)")
        }
        if head.isEmpty { throw HeliographError(.unsupportedMedia, "the file is empty") }
        guard signature.matches([UInt8](head)) else {
            throw HeliographError(.unsupportedMedia, Self.mismatch(declared: mediaType, head: head))
        }
        return PublicMediaFacts(mediaType: mediaType)
    }

    /// The normalised type when it is accepted.
    private static func accepted(_ declaredType: String) throws(HeliographError) -> String {
        let mediaType = normalizedType(declaredType)
        guard acceptedTypes.contains(mediaType) else {
            let shown = mediaType.isEmpty ? "an empty media type" : "\(mediaType)"
            throw HeliographError(
                .unsupportedMedia,
                "\(shown) is not accepted for public media; accepted types are \(acceptedTypes.joined(separator: ", "))")
        }
        return mediaType
    }

    /// "the file is not a GIF image (...); its bytes look like a PNG image".
    private static func mismatch(declared mediaType: String, head: Data) -> String {
        var text = "the file was declared as \(mediaType) but is not \(describe(mediaType: mediaType))"
        if let rule = signatures.first(where: { $0.mediaType == mediaType })?.rule {
            text += " (\(rule))"
        } else if let format = ImageFormat(mediaType: mediaType) {
            text += " (it does not start with the \(format.name) signature)"
        }
        if let actual = sniff(head), actual != mediaType {
            text += "; its bytes look like \(describe(mediaType: actual))"
        }
        return text
    }

    /// "a JPEG image", "an MP4 video": the type as a person names it.
    private static func describe(mediaType: String) -> String {
        let names: [String: String] = [
            "image/jpeg": "a JPEG image", "image/png": "a PNG image", "image/gif": "a GIF image",
            "image/webp": "a WebP image", "video/mp4": "an MP4 video", "video/webm": "a WebM video",
            "audio/ogg": "an Ogg audio file", "audio/mpeg": "an MP3 audio file", "application/pdf": "a PDF document",
        ]
        return names[mediaType] ?? "a \(mediaType) file"
    }

    /// A type recognised by the bytes it starts with.
    private struct Signature: Sendable {
        let mediaType: String
        /// What the start must be, for the refusal message.
        let rule: String
        let matches: @Sendable ([UInt8]) -> Bool
    }

    /// The magic numbers, from each format's specification.
    private static let signatures: [Signature] = [
        Signature(mediaType: "image/gif", rule: "it does not start with GIF87a or GIF89a") { bytes in
            bytes.starts(with: Array("GIF87a".utf8)) || bytes.starts(with: Array("GIF89a".utf8))
        },
        // RIFF container: "RIFF", a 4-byte little-endian size, then the form type "WEBP".
        Signature(mediaType: "image/webp", rule: "it does not start with a RIFF header of form WEBP") { bytes in
            bytes.count >= 12 && bytes.starts(with: Array("RIFF".utf8)) && Array(bytes[8..<12]) == Array("WEBP".utf8)
        },
        // ISO base media file: the first box, after its 4-byte size, is the file type box "ftyp".
        Signature(mediaType: "video/mp4", rule: "it has no ftyp box at its start") { bytes in
            bytes.count >= 8 && Array(bytes[4..<8]) == Array("ftyp".utf8)
        },
        // WebM is Matroska, an EBML document: it starts with the EBML header element's ID.
        Signature(mediaType: "video/webm", rule: "it does not start with an EBML header") { bytes in
            bytes.starts(with: [0x1A, 0x45, 0xDF, 0xA3])
        },
        // Every Ogg page starts with the capture pattern "OggS".
        Signature(mediaType: "audio/ogg", rule: "it does not start with an Ogg page") { bytes in
            bytes.starts(with: Array("OggS".utf8))
        },
        Signature(mediaType: "audio/mpeg", rule: "it starts with neither an ID3 tag nor an MPEG audio frame") { bytes in
            bytes.starts(with: Array("ID3".utf8)) || isMPEGAudioFrameHeader(bytes)
        },
        Signature(mediaType: "application/pdf", rule: "it does not start with %PDF-") { bytes in
            bytes.starts(with: Array("%PDF-".utf8))
        },
    ]

    /// An MPEG audio frame header: 11 set sync bits, then version, layer, bitrate and sample-rate
    /// fields. The sync bits alone match one random file in 2048, so the reserved values of the
    /// other fields (version 01, layer 00, bitrate 1111, sample rate 11) are refused too.
    private static func isMPEGAudioFrameHeader(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= 4, bytes[0] == 0xFF, bytes[1] & 0xE0 == 0xE0 else { return false }
        let version = (bytes[1] >> 3) & 0x3
        let layer = (bytes[1] >> 1) & 0x3
        let bitrate = bytes[2] >> 4
        let sampleRate = (bytes[2] >> 2) & 0x3
        return version != 0b01 && layer != 0b00 && bitrate != 0b1111 && sampleRate != 0b11
    }
}

extension ImageFormat {
    /// The format a normalised media type declares, or `nil`.
    init?(mediaType: String) {
        switch mediaType {
        case "image/jpeg": self = .jpeg
        case "image/png": self = .png
        default: return nil
        }
    }
}
