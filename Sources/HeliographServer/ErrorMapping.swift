import HeliographCore
import HeliographStore
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// Maps domain errors to HTTP statuses, and anything else to a sanitized, logged error.
enum ErrorMapping {
    /// The HTTP status (also used in WebSocket responses) for an error code.
    static func status(for code: HeliographError.Code) -> Int {
        switch code {
        case .badRequest, .unknownMethod, .invalidUsername, .invalidMessageID, .invalidKey, .ackOutOfRange,
            .invalidMembershipChange, .partOutOfRange, .hashMismatch:
            400
        case .unauthenticated, .tokenExpired, .deviceRevoked, .badSignature, .challengeExpired: 401
        case .forbidden, .devicePending, .recoveryRequired, .notAMember, .missingRight, .banned: 403
        case .notFound, .unknownAccount, .unknownDevice, .noDevices, .unknownChat, .unknownMessage, .unknownUpload,
            .unknownBlob:
            404
        case .usernameTaken, .deviceListMismatch, .idempotencyConflict, .alreadyMember, .chatFull, .membershipConflict,
            .staleSenderKey, .partMismatch, .uploadIncomplete:
            409
        case .inviteRevoked, .inviteExpired, .inviteUsedUp: 410
        case .payloadTooLarge: 413
        case .unsupportedMedia: 415
        case .rangeNotSatisfiable: 416
        case .rateLimited, .slowMode, .quotaExceeded: 429
        case .temporarilyUnavailable, .shuttingDown: 503
        default: 500
        }
    }

    /// The error a client may see. Domain errors pass; framework errors keep their meaning;
    /// anything else is logged here with its cause and answered as `internal_error`.
    static func publicError(_ error: any Error, logger: Logger) -> HeliographError {
        switch error {
        case let error as HeliographError:
            return error
        case let error as HTTPError:
            switch error.status {
            case .contentTooLarge:
                return HeliographError(.payloadTooLarge, "the request body is larger than the server accepts")
            case .notFound:
                return HeliographError(.notFound, "no such endpoint; the API is described in docs/protocol.md")
            default:
                return HeliographError(.badRequest, error.body ?? error.status.reasonPhrase)
            }
        case let error as StorageUnavailable:
            logger.warning("storage unavailable", metadata: ["error": "\(error.detail)"])
            return HeliographError(.temporarilyUnavailable, "the database is unreachable for now; retry in a few seconds")
        case is NIOTooManyBytesError:
            return HeliographError(.payloadTooLarge, "the request body is larger than the server accepts")
        case let error as HTTPParserError:
            // The client's bytes broke HTTP/1 while a route read the body (a bad chunk size, a
            // body cut short): its fault, not the server's.
            return HeliographError(.badRequest, "malformed HTTP request body (\(error))")
        default:
            logger.error("request failed unexpectedly", metadata: ["error": "\(String(reflecting: error))"])
            return HeliographError(.internalError, "internal error; the cause is in the server log")
        }
    }
}
