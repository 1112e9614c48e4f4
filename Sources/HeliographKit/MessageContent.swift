import Foundation
import HeliographCore

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

    /// Creates content.
    public init(text: String, sentAt: Int64, to: String? = nil) {
        self.text = text
        self.sentAt = sentAt
        self.to = to
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
