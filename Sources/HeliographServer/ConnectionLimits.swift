import Foundation
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Counts the open connections of one listener, in all and per client address, and decides
/// whether a new one is admitted.
///
/// A refused connection is answered and closed at once instead of being left in the accept
/// queue: a server that keeps accepting until the process runs out of descriptors can no
/// longer open its database or answer anyone, so the cap sits below the descriptor limit.
final class ConnectionLimiter: Sendable {
    /// Why a connection was refused.
    enum Refusal: Equatable {
        /// The server holds `maxConnections` already.
        case serverFull
        /// The client address holds `maxConnectionsPerAddress` already.
        case addressFull
    }

    /// The most connections in all.
    let maxConnections: Int
    /// The most connections per client address; 0 for no limit.
    let maxPerAddress: Int
    private let state = Mutex(Counts())

    private struct Counts {
        var total = 0
        var perAddress: [String: Int] = [:]
    }

    /// A limiter admitting at most `maxConnections` in all, and `maxPerAddress` per client
    /// address (0: no per-address limit).
    init(maxConnections: Int, maxPerAddress: Int) {
        self.maxConnections = maxConnections
        self.maxPerAddress = maxPerAddress
    }

    /// The limiter `configuration` asks for. Behind a trusted proxy every connection comes
    /// from the proxy, so only the total is limited then.
    convenience init(_ configuration: ServerConfiguration) {
        self.init(
            maxConnections: configuration.maxConnections ?? Self.defaultMaxConnections(),
            maxPerAddress: configuration.trustForwardedFor ? 0 : configuration.maxConnectionsPerAddress)
    }

    /// Counts a new connection from `address`, or says why it is refused (then nothing is counted).
    func admit(_ address: ClientAddress) -> Refusal? {
        state.withLock { counts in
            guard counts.total < maxConnections else { return .serverFull }
            let held = counts.perAddress[address.key, default: 0]
            guard maxPerAddress == 0 || held < maxPerAddress else { return .addressFull }
            counts.total += 1
            counts.perAddress[address.key] = held + 1
            return nil
        }
    }

    /// Forgets an admitted connection of `address` once it closed.
    func release(_ address: ClientAddress) {
        state.withLock { counts in
            counts.total -= 1
            let held = counts.perAddress[address.key, default: 1] - 1
            counts.perAddress[address.key] = held > 0 ? held : nil
        }
    }

    /// Open connections in all.
    var openConnections: Int { state.withLock { $0.total } }

    /// Descriptors kept free for everything but client connections: the listeners, the
    /// database files or connections, logs, and accepts that are closed again at once.
    static let descriptorReserve = 128

    /// The process's descriptor limit (soft) minus ``descriptorReserve``, at least 16.
    static func defaultMaxConnections() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int32.max) else {
            return 65536
        }
        return max(16, Int(clamping: limit.rlim_cur) - descriptorReserve)
    }
}
