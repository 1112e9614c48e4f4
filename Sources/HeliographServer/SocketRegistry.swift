import HeliographCore
import Synchronization

/// Every open WebSocket of this node, so a shutdown can tell each one to reconnect elsewhere.
///
/// A drain runs before the HTTP server stops: each socket gets a `shutting_down` error frame
/// and a close, after its request in flight (if any) has been answered, so no acknowledged
/// send is left without its response.
public final class SocketRegistry: Sendable {
    /// Tells one socket the server is going away; returns once the socket has been told.
    typealias Announce = @Sendable (HeliographError) async -> Void

    private let sockets = Mutex<[UInt64: Announce]>([:])
    private let nextID = Atomic<UInt64>(0)
    private let draining = Atomic<Bool>(false)

    /// The error sent to sockets during a drain.
    static let shuttingDown = HeliographError(.shuttingDown, "the server is shutting down; reconnect in a moment")

    /// Creates an empty registry.
    public init() {}

    /// Adds a socket; a socket opened during a drain is told at once.
    func add(_ announce: @escaping Announce) async -> UInt64 {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        sockets.withLock { $0[id] = announce }
        if draining.load(ordering: .acquiring) { await announce(Self.shuttingDown) }
        return id
    }

    /// Removes a closed socket.
    func remove(_ id: UInt64) {
        _ = sockets.withLock { $0.removeValue(forKey: id) }
    }

    /// Open sockets right now.
    public var count: Int { sockets.withLock { $0.count } }

    /// Announces the shutdown to every socket, then waits until all closed or `timeout` passed.
    public func drain(timeout: Duration) async {
        draining.store(true, ordering: .releasing)
        let all = sockets.withLock { Array($0.values) }
        await withTaskGroup(of: Void.self) { group in
            for announce in all { group.addTask { await announce(Self.shuttingDown) } }
        }
        let deadline = ContinuousClock.now + timeout
        while count > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}
