import Foundation
import HeliographCore

/// The rule every backend applies when a sending device repeats a message id.
///
/// A repeat is a retry (answered with the first receipt, nothing stored) only when it carries
/// the same content as the first send; otherwise the new content would be silently dropped, so
/// the repeat is refused instead. The comparison uses the content digest the caller put in
/// ``OutgoingMessage/contentHash``; records from before digests were kept, and messages without
/// one, cannot be compared and count as retries.
package enum SendIdempotency {
    /// Whether a repeat whose content digest is `incoming` is a retry of the message recorded
    /// with `stored`.
    package static func isRetry(stored: Data?, incoming: Data?) -> Bool {
        guard let stored, let incoming else { return true }
        return stored == incoming
    }

    /// The error for a message id reused for different content.
    package static func conflict(_ messageID: MessageID) -> HeliographError {
        HeliographError(
            .idempotencyConflict,
            "message id \(messageID.rawValue) was already used for a different message; use a new id for a new message")
    }
}
