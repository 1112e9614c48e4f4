import Foundation
import HeliographCore
import HeliographCrypto

/// What a person writes, as carried inside an envelope's payload.
///
/// The server never reads payloads; end-to-end encryption wraps this same value.
public struct MessageContent: Codable, Sendable, Equatable {
    /// The text.
    public var text: String
    /// When the sender wrote it (ms since 1970), as the sender's clock saw it.
    public var sentAt: Int64
    /// For the copies a sender's other devices get: whom the message was sent to.
    public var to: String?
    /// A private group's key material and title for this recipient (a control message: the
    /// text is empty and nothing is shown).
    public var group: GroupControl?
    /// Encrypted attachments: each pointer holds the key, digest, sizes, media type and an
    /// encrypted thumbnail of one uploaded ciphertext.
    public var attachments: [AttachmentPointer]?

    /// Creates content.
    public init(text: String, sentAt: Int64, to: String? = nil) {
        self.text = text
        self.sentAt = sentAt
        self.to = to
    }
}

/// What a member device sends the others of a private group over their pairwise sessions: its
/// sender key (so they can read its posts) and the group's title (which the server never sees).
public struct GroupControl: Codable, Sendable, Equatable {
    /// The group.
    public var chatId: ChatID
    /// The title, as the creator set it.
    public var title: String?
    /// The sending device's current sender key.
    public var senderKey: SenderKeyDistribution?

    /// Creates the value.
    public init(chatId: ChatID, title: String?, senderKey: SenderKeyDistribution?) {
        self.chatId = chatId
        self.title = title
        self.senderKey = senderKey
    }
}

/// A message received by this device.
public struct IncomingMessage: Sendable, Equatable {
    /// The position in this device's inbox.
    public var sequence: Int64
    /// The sender's message id.
    public var messageID: String
    /// The sender's name.
    public var sender: String
    /// The sending account.
    public var senderAccount: AccountID
    /// The sending device.
    public var senderDevice: String
    /// When the server accepted it.
    public var serverTime: Date
    /// The raw payload.
    public var payload: Data
    /// The decoded content, when the payload is a plain ``MessageContent``.
    public var content: MessageContent?
    /// The sender's franking commitment, if any.
    public var frankingCommitment: Data?
    /// The server's franking tag for this copy, if any.
    public var frankingTag: Data?
}
