import HeliographCore
import Synchronization

/// Wakes the delivery loops of devices connected to this node.
///
/// A plain wake-up carries no data: a woken loop reads the device's inbox from the store, so a
/// missed or coalesced wake-up can delay delivery but never lose or reorder it. The cross-node
/// bus of the PostgreSQL backend feeds the same ``wake(_:)``.
///
/// A send accepted on this node also hands its committed envelopes over (``deliver(_:)``): a
/// loop that finds exactly the next sequence numbers in its mailbox pushes them without reading
/// the store again, and falls back to the store on any gap.
public final class DeliveryHub: Sendable {
    /// One connected socket's hooks. (Closing a revoked device's sockets is the
    /// ``RevocationRegistry``'s job: it knows every socket, receiving or not.)
    struct Listener: Sendable {
        let wake: AsyncStream<Void>.Continuation
        let mailbox: Mailbox
    }

    /// Committed envelopes handed to one socket's delivery loop, bounded: past the bound the
    /// loop simply reads the store.
    final class Mailbox: Sendable {
        /// At most this many envelopes and payload bytes wait in a mailbox; past either, the
        /// loop reads the store instead, so a socket that stopped reading pins little memory.
        static let capacity = 256
        static let byteCapacity = 1 << 20
        private let state = Mutex<(envelopes: [Envelope], bytes: Int, needsRead: Bool)>(([], 0, true))

        func put(_ envelope: Envelope) {
            state.withLock { state in
                if state.envelopes.count < Self.capacity, state.bytes + envelope.payload.count <= Self.byteCapacity {
                    state.envelopes.append(envelope)
                    state.bytes += envelope.payload.count
                } else {
                    // Full: drop what waits; the store read that follows delivers it all.
                    state.envelopes.removeAll()
                    state.bytes = 0
                    state.needsRead = true
                }
            }
        }

        /// A plain wake-up: the store may hold envelopes that were not handed over.
        func markNeedsRead() { state.withLock { $0.needsRead = true } }

        /// Everything handed over since the last call, in sequence order, and whether the loop
        /// must read the store (a plain wake-up came, or the mailbox overflowed).
        func take() -> (envelopes: [Envelope], needsRead: Bool) {
            state.withLock { state in
                defer {
                    state.envelopes.removeAll(keepingCapacity: true)
                    state.bytes = 0
                    state.needsRead = false
                }
                return (state.envelopes.sorted { $0.sequence < $1.sequence }, state.needsRead)
            }
        }
    }

    private let listeners = Mutex<[DeviceID: [UInt64: Listener]]>([:])
    private let nextID = Atomic<UInt64>(0)

    /// Creates an empty hub.
    public init() {}

    /// Registers a socket of `device`; returns its id and the stream of its wake-ups.
    ///
    /// The stream holds at most one pending wake-up: several sends while the loop is busy
    /// collapse into one read of the inbox.
    func register(_ device: DeviceID) -> (id: UInt64, wakeups: AsyncStream<Void>, mailbox: Mailbox) {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        let mailbox = Mailbox()
        listeners.withLock {
            $0[device, default: [:]][id] = Listener(wake: continuation, mailbox: mailbox)
        }
        // Start with one wake-up so the loop delivers what waited while the device was offline.
        continuation.yield()
        return (id, stream, mailbox)
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
        let targets = listeners.withLock { listeners in devices.flatMap { listeners[$0]?.values.map { $0 } ?? [] } }
        for listener in targets {
            listener.mailbox.markNeedsRead()
            listener.wake.yield()
        }
    }

    /// Hands committed envelopes to the sockets of their devices and wakes them.
    public func deliver(_ envelopes: [Envelope]) {
        let targets = listeners.withLock { listeners in
            envelopes.flatMap { envelope in (listeners[envelope.recipientDeviceID]?.values ?? [:].values).map { ($0, envelope) } }
        }
        for (listener, envelope) in targets { listener.mailbox.put(envelope) }
        for (listener, _) in targets { listener.wake.yield() }
    }

    /// Wakes every socket on this node: after the cross-node feed may have missed changes.
    public func wakeAll() {
        let targets = listeners.withLock { listeners in listeners.values.flatMap { $0.values.map { $0 } } }
        for listener in targets {
            listener.mailbox.markNeedsRead()
            listener.wake.yield()
        }
    }

    /// Devices with at least one socket on this node.
    public var connectedDeviceCount: Int { listeners.withLock { $0.count } }
}
