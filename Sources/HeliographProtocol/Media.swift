import Foundation
import HeliographCore

/// What an upload is for, which decides what the server checks when it finishes.
public enum UploadPurpose: String, Codable, Sendable, CaseIterable {
    /// Ciphertext of an end-to-end encrypted attachment (private chats and private groups): the
    /// server stores the bytes as they are and never looks inside.
    case encrypted
    /// Media for a public group or channel: the server checks the bytes are the declared media
    /// type, reads an image's size and makes its thumbnail.
    case `public`
}

/// `POST /v1/uploads`: starts a resumable upload.
public struct CreateUploadRequest: Codable, Sendable, Equatable {
    /// The size of the whole file in bytes.
    public var size: Int64
    /// The SHA-256 of the whole file; the server checks it before the blob exists.
    public var sha256: BlobHash
    /// What the upload is for.
    public var purpose: UploadPurpose
    /// Public uploads: the declared media type, such as `image/jpeg` (required). Encrypted
    /// uploads leave it out: the real type travels inside the encrypted message.
    public var mediaType: String?

    /// Creates the request.
    public init(size: Int64, sha256: BlobHash, purpose: UploadPurpose, mediaType: String? = nil) {
        self.size = size
        self.sha256 = sha256
        self.purpose = purpose
        self.mediaType = mediaType
    }
}

/// An upload's state: the answer to creating it and to `GET /v1/uploads/{id}` (for resuming).
public struct UploadStatus: Codable, Sendable, Equatable {
    /// The upload's id, for the part and finish routes.
    public var uploadId: UUID
    /// The declared size.
    public var size: Int64
    /// The declared SHA-256.
    public var sha256: BlobHash
    /// What it is for.
    public var purpose: UploadPurpose
    /// The length of every part but the last (the last holds the rest).
    public var partSize: Int
    /// How many parts the file is cut into.
    public var partCount: Int
    /// The parts the server holds, ascending: a resuming client sends the others.
    public var receivedParts: [Int]
    /// When an unfinished upload is thrown away (ms since 1970 on the wire).
    public var expiresAt: Date

    /// Creates the value.
    public init(
        uploadId: UUID, size: Int64, sha256: BlobHash, purpose: UploadPurpose, partSize: Int, partCount: Int,
        receivedParts: [Int], expiresAt: Date
    ) {
        self.uploadId = uploadId
        self.size = size
        self.sha256 = sha256
        self.purpose = purpose
        self.partSize = partSize
        self.partCount = partCount
        self.receivedParts = receivedParts
        self.expiresAt = expiresAt
    }
}

/// The answer to `PUT /v1/uploads/{id}/parts/{index}`.
public struct UploadPartResponse: Codable, Sendable, Equatable {
    /// The part stored.
    public var index: Int
    /// How many parts the server now holds.
    public var receivedCount: Int

    /// Creates the value.
    public init(index: Int, receivedCount: Int) {
        self.index = index
        self.receivedCount = receivedCount
    }
}

/// A stored blob as the uploader and readers see it: the answer to finishing an upload.
public struct BlobDescriptor: Codable, Sendable, Equatable {
    /// Its SHA-256, which names it: `GET /v1/blobs/{sha256}`.
    public var sha256: BlobHash
    /// Its size in bytes.
    public var size: Int64
    /// Public media: the checked media type.
    public var mediaType: String?
    /// Public images: width in pixels, read from the file.
    public var width: Int?
    /// Public images: height in pixels, read from the file.
    public var height: Int?
    /// Public images: the server-made JPEG thumbnail (its own blob).
    public var thumbnail: BlobHash?

    /// Creates the value.
    public init(
        sha256: BlobHash, size: Int64, mediaType: String? = nil, width: Int? = nil, height: Int? = nil,
        thumbnail: BlobHash? = nil
    ) {
        self.sha256 = sha256
        self.size = size
        self.mediaType = mediaType
        self.width = width
        self.height = height
        self.thumbnail = thumbnail
    }
}

/// A public post's reference to media the poster uploaded with purpose `public`.
public struct MediaReference: Codable, Sendable, Equatable {
    /// The blob.
    public var blob: BlobHash
    /// The file name to show, if the poster shares it.
    public var fileName: String?

    /// Creates the value.
    public init(blob: BlobHash, fileName: String? = nil) {
        self.blob = blob
        self.fileName = fileName
    }
}

/// Media in a public post, as the server checked it.
public struct PublicMedia: Codable, Sendable, Equatable {
    /// The blob: `GET /v1/blobs/{blob}`.
    public var blob: BlobHash
    /// The checked media type.
    public var mediaType: String
    /// Its size in bytes.
    public var size: Int64
    /// Images: width in pixels.
    public var width: Int?
    /// Images: height in pixels.
    public var height: Int?
    /// Images: the server-made JPEG thumbnail.
    public var thumbnail: BlobHash?
    /// The file name the poster shared.
    public var fileName: String?

    /// Creates the value.
    public init(
        blob: BlobHash, mediaType: String, size: Int64, width: Int? = nil, height: Int? = nil, thumbnail: BlobHash? = nil,
        fileName: String? = nil
    ) {
        self.blob = blob
        self.mediaType = mediaType
        self.size = size
        self.width = width
        self.height = height
        self.thumbnail = thumbnail
        self.fileName = fileName
    }
}

/// `POST /v1/attachments/release`: a sender deleting an end-to-end encrypted message for
/// everyone drops the references the message's attachments held, so their blobs can be collected.
public struct ReleaseAttachmentsRequest: Codable, Sendable, Equatable {
    /// The message id the attachments were sent with.
    public var messageId: MessageID
    /// For a private-group post: its chat (absent for a one-to-one message).
    public var chatId: ChatID?

    /// Creates the request.
    public init(messageId: MessageID, chatId: ChatID? = nil) {
        self.messageId = messageId
        self.chatId = chatId
    }
}

/// The answer to ``ReleaseAttachmentsRequest``.
public struct ReleaseAttachmentsResponse: Codable, Sendable, Equatable {
    /// How many references were dropped.
    public var released: Int

    /// Creates the value.
    public init(released: Int) { self.released = released }
}
