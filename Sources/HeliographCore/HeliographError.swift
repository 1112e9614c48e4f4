/// A domain error with a stable machine-readable code and a message a person understands.
///
/// Errors compare by code only, so tests and clients never match on wording. The edge
/// (HTTP or WebSocket) maps the code to a status; storage details never appear in a message.
public struct HeliographError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable error code, sent on the wire as a snake_case string.
    public struct Code: Hashable, Sendable, CustomStringConvertible, Codable {
        /// The wire form, such as `username_taken`.
        public let rawValue: String

        /// Creates a code from its wire form.
        public init(_ rawValue: String) { self.rawValue = rawValue }

        public var description: String { rawValue }

        public init(from decoder: any Decoder) throws {
            self.rawValue = try decoder.singleValueContainer().decode(String.self)
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }

        // Input
        /// The request or frame could not be parsed or misses a field.
        public static let badRequest = Code("bad_request")
        /// A frame or request method the server does not know.
        public static let unknownMethod = Code("unknown_method")
        /// The username breaks the naming rules.
        public static let invalidUsername = Code("invalid_username")
        /// The message id breaks its format rules.
        public static let invalidMessageID = Code("invalid_message_id")
        /// A public key has the wrong length or format.
        public static let invalidKey = Code("invalid_key")
        /// The body, frame or envelope is larger than the configured maximum.
        public static let payloadTooLarge = Code("payload_too_large")
        // Conflicts
        /// Somebody already holds this username (compared case-insensitively).
        public static let usernameTaken = Code("username_taken")
        /// The sender's device list for the recipient is out of date.
        public static let deviceListMismatch = Code("device_list_mismatch")
        /// A message id the sending device already used for a message with different content.
        public static let idempotencyConflict = Code("idempotency_conflict")
        // Authentication
        /// No valid session token was presented.
        public static let unauthenticated = Code("unauthenticated")
        /// The session token is past its expiry.
        public static let tokenExpired = Code("token_expired")
        /// The device holding the token was revoked.
        public static let deviceRevoked = Code("device_revoked")
        /// The device logged in but waits for an active device of its account to approve it.
        public static let devicePending = Code("device_pending")
        /// Every device of the account was revoked: only a recovery with a new identity key
        /// logs in now (contacts see it as an identity change).
        public static let recoveryRequired = Code("recovery_required")
        /// The login signature does not verify against the account's identity key.
        public static let badSignature = Code("bad_signature")
        /// The login challenge is unknown, used or expired.
        public static let challengeExpired = Code("challenge_expired")
        /// The authenticated device may not act on that resource.
        public static let forbidden = Code("forbidden")
        // Lookup
        /// No such endpoint or resource.
        public static let notFound = Code("not_found")
        /// No account has this name or id.
        public static let unknownAccount = Code("unknown_account")
        /// No device of the account has this id.
        public static let unknownDevice = Code("unknown_device")
        /// The recipient has no active device to deliver to.
        public static let noDevices = Code("no_devices")
        // Delivery
        /// An acknowledgement names a sequence number that was never sent to this device.
        public static let ackOutOfRange = Code("ack_out_of_range")
        /// Too many requests; retry after the given delay.
        public static let rateLimited = Code("rate_limited")
        // Groups and channels
        /// No group or channel has this id or name, or the caller may not see it.
        public static let unknownChat = Code("unknown_chat")
        /// No message of the chat has this sequence number (or it is not a message).
        public static let unknownMessage = Code("unknown_message")
        /// The caller is not a member of the chat, or the account named is not.
        public static let notAMember = Code("not_a_member")
        /// The account is already a member.
        public static let alreadyMember = Code("already_member")
        /// The caller's role lacks the right this needs.
        public static let missingRight = Code("missing_right")
        /// The account is banned from the chat.
        public static let banned = Code("banned")
        /// The chat is at its member limit.
        public static let chatFull = Code("chat_full")
        /// The invite link was revoked.
        public static let inviteRevoked = Code("invite_revoked")
        /// The invite link has expired.
        public static let inviteExpired = Code("invite_expired")
        /// The invite link reached its use limit.
        public static let inviteUsedUp = Code("invite_used_up")
        /// Slow mode: the member must wait before posting again.
        public static let slowMode = Code("slow_mode")
        /// A private group's membership change is not signed by an admin with the right, or does
        /// not follow the current version.
        public static let invalidMembershipChange = Code("invalid_membership_change")
        /// A membership change raced another one; fetch the chain and sign again.
        public static let membershipConflict = Code("membership_conflict")
        /// A private-group post made with a sender key older than the latest removal.
        public static let staleSenderKey = Code("stale_sender_key")
        // Uploads and blobs
        /// Different bytes were sent for an upload part that is already stored.
        public static let partMismatch = Code("part_mismatch")
        /// The part index is past the upload's last part, or the part has the wrong length.
        public static let partOutOfRange = Code("part_out_of_range")
        /// The upload cannot finish: parts are missing (the message names them).
        public static let uploadIncomplete = Code("upload_incomplete")
        /// The uploaded bytes' size or SHA-256 is not the declared one.
        public static let hashMismatch = Code("hash_mismatch")
        /// No upload has this id (never created, discarded or expired).
        public static let unknownUpload = Code("unknown_upload")
        /// No blob has this hash, or the caller may not see it.
        public static let unknownBlob = Code("unknown_blob")
        /// The bytes are not of the declared media type, or the server cannot parse that type.
        public static let unsupportedMedia = Code("unsupported_media")
        /// A download's `Range` lies outside the blob.
        public static let rangeNotSatisfiable = Code("range_not_satisfiable")
        /// The account uploaded more than its quota allows in the current window.
        public static let quotaExceeded = Code("quota_exceeded")
        // Server
        /// The store is unreachable for now; retrying later will work.
        public static let temporarilyUnavailable = Code("temporarily_unavailable")
        /// The server is shutting down; reconnect (to another node).
        public static let shuttingDown = Code("shutting_down")
        /// An unexpected failure; its cause is logged on the server.
        public static let internalError = Code("internal_error")
    }

    /// The stable code.
    public let code: Code
    /// A sentence for people.
    public let message: String
    /// For ``Code/rateLimited``: seconds after which a retry may succeed.
    public let retryAfterSeconds: Int?

    /// Creates an error.
    public init(_ code: Code, _ message: String, retryAfterSeconds: Int? = nil) {
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String { "\(code): \(message)" }

    /// Errors are the same when their codes are.
    public static func == (lhs: HeliographError, rhs: HeliographError) -> Bool { lhs.code == rhs.code }
}
