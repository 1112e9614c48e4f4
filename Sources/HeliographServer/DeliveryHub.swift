import HeliographCore
import Synchronization

/// Wakes the delivery loops of devices connected to this node.
///
/// A wake-up carries no data: a woken loop reads the device's inbox from the store, so a missed
/// or coalesced wake-up can delay delivery but never lose or reorder it. The cross-node bus of
/// the PostgreSQL backend feeds the same ``wake(_:)``.
public final class DeliveryHub: Sendable {
    /// One connected socket's hooks.
    struct Listener: Sendable {
        let wake: AsyncStream<Void>.Continuation
        let disconnect: @Sendable (HeliographError) -> Void
    }

    private let listeners = Mutex<[DeviceID: [UInt64: Listener]]>([:])
    private let nextID = Atomic<UInt64>(0)

    /// Creates an empty hub.
    public init() {}

    /// Registers a socket of `device`; returns its id and the stream of its wake-ups.
    ///
    /// The stream holds at most one pending wake-up: several sends while the loop is busy
    /// collapse into one read of the inbox.
    func register(
        _ device: DeviceID, disconnect: @escaping @Sendable (HeliographError) -> Void
    ) -> (id: UInt64, wakeups: AsyncStream<Void>) {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        listeners.withLock { $0[device, default: [:]][id] = Listener(wake: continuation, disconnect: disconnect) }
        // Start with one wake-up so the loop delivers what waited while the device was offline.
        continuation.yield()
        return (id, stream)
    }

    /// Removes a socket's registration.
    func unregister(_ device: DeviceID, id: UInt64) {
        let removed = listeners.withLock { listeners -> Listener? in
            let listener = listeners[device]?.removeValue(forKey: id)
            if listeners[device]?.isEmpty == true { listeners[device] = nil }
            return listener
        }
        removed?.wake.finish()
    }

    /// Wakes every socket of these devices.
    public func wake(_ devices: some Sequence<DeviceID>) {
        let targets = listeners.withLock { listeners in devices.flatMap { listeners[$0]?.values.map(\.wake) ?? [] } }
        for wake in targets { wake.yield() }
    }

    /// Wakes every socket on this node: after the cross-node feed may have missed changes.
    public func wakeAll() {
        let targets = listeners.withLock { listeners in listeners.values.flatMap { $0.values.map(\.wake) } }
        for wake in targets { wake.yield() }
    }

    /// Closes every socket of a device, telling it why (revocation).
    public func disconnect(_ device: DeviceID, because reason: HeliographError) {
        let targets = listeners.withLock { $0[device]?.values.map(\.disconnect) ?? [] }
        for disconnect in targets { disconnect(reason) }
    }

    /// Devices with at least one socket on this node.
    public var connectedDeviceCount: Int { listeners.withLock { $0.count } }
}
