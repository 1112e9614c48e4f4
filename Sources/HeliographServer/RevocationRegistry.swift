import HeliographCore
import HeliographStore
import Synchronization

/// What one node knows about revoked devices, as a state machine without sockets: the sockets
/// authenticated on this node by device, the devices revoked recently, and a generation
/// counter that moves whenever that knowledge changes.
///
/// A socket authenticates by reading its device from the store once; after that, every request
/// on it is checked against this state in memory (no database read per request). Revocations
/// reach it from the node's own ``DeviceService`` and, with several nodes, from the change
/// feed. The generation closes the gap between the store read and the socket joining:
///
/// 1. The socket notes ``generation`` before its authentication read.
/// 2. It joins with ``admit(socket:device:checkedAt:)``. A revocation heard after it joined
///    returns its id from ``revoke(_:)``, so it is closed.
/// 3. A revocation heard between the read and the join is still remembered (``Admission/revoked``);
///    if the feed had a gap, or a revocation was forgotten, since the read, the state cannot
///    tell and answers ``Admission/recheck``: the socket reads its device from the store again.
public struct RevocationState: Sendable {
    /// What a socket that just authenticated must do.
    public enum Admission: Sendable, Equatable {
        /// Nothing it could have missed: it may serve requests.
        case active
        /// Its device was revoked after the authentication read: refuse it.
        case revoked
        /// Revocations may have been missed or forgotten since the read: read the device again.
        case recheck
    }

    /// How many revoked devices are remembered by default. Memory is only needed for the
    /// moment between a socket's authentication read and its join, and for requests that
    /// slip in while a revoked socket closes; 16 bytes each.
    public static let defaultCapacity = 4096

    /// The most revoked devices remembered; older ones are forgotten first.
    public let capacity: Int
    /// Moves on every revocation heard, every feed gap and every forgotten revocation.
    public private(set) var generation: UInt64 = 0
    /// The generation of the last gap or forgetting: a socket whose read is older must recheck.
    private var uncertainSince: UInt64 = 0
    private var recent: Set<DeviceID> = []
    /// `recent` in the order heard, oldest first.
    private var order: [DeviceID] = []
    private var sockets: [DeviceID: Set<UInt64>] = [:]
    private var deviceOfSocket: [UInt64: DeviceID] = [:]

    /// An empty state remembering at most `capacity` revoked devices (at least 1).
    public init(capacity: Int = Self.defaultCapacity) {
        self.capacity = max(capacity, 1)
    }

    /// Whether this node heard that `device` was revoked (and still remembers it).
    public func isRevoked(_ device: DeviceID) -> Bool { recent.contains(device) }

    /// Devices with at least one socket on this node.
    public var connectedDevices: [DeviceID] { Array(sockets.keys) }

    /// Sockets on this node.
    public var socketCount: Int { deviceOfSocket.count }

    /// A socket of `device` whose authentication read started at generation `checked` joins;
    /// a socket refused as ``Admission/revoked`` does not join.
    public mutating func admit(socket: UInt64, device: DeviceID, checkedAt checked: UInt64) -> Admission {
        // A revocation is final, whenever it was heard.
        if recent.contains(device) { return .revoked }
        sockets[device, default: []].insert(socket)
        deviceOfSocket[socket] = device
        return uncertainSince > checked ? .recheck : .active
    }

    /// A socket closed (or was refused after a recheck); unknown ids are ignored.
    public mutating func remove(socket: UInt64) {
        guard let device = deviceOfSocket.removeValue(forKey: socket) else { return }
        sockets[device]?.remove(socket)
        if sockets[device]?.isEmpty == true { sockets[device] = nil }
    }

    /// These devices were revoked; returns the sockets to close, which leave the state.
    public mutating func revoke(_ devices: some Sequence<DeviceID>) -> [UInt64] {
        generation &+= 1
        var closing: [UInt64] = []
        for device in devices {
            if recent.insert(device).inserted { order.append(device) }
            for socket in sockets.removeValue(forKey: device) ?? [] {
                deviceOfSocket[socket] = nil
                closing.append(socket)
            }
        }
        if order.count > capacity {
            // Forgetting makes earlier reads uncertain: a socket that read before now rechecks.
            for device in order.prefix(order.count - capacity) { recent.remove(device) }
            order.removeFirst(order.count - capacity)
            uncertainSince = generation
        }
        return closing
    }

    /// The change feed had a gap: revocations may have been missed. Every socket that read
    /// before now must be checked against the store once (``connectedDevices`` for the ones
    /// already joined, ``Admission/recheck`` for the ones joining later).
    public mutating func gap() {
        generation &+= 1
        uncertainSince = generation
    }
}

/// This node's ``RevocationState`` behind a lock, with each joined socket's close hook: the
/// one place where a revocation heard (locally or from the change feed) closes sockets.
public final class RevocationRegistry: Sendable {
    /// Closes one socket, telling it why; called at most once, from any task.
    public typealias Close = @Sendable (HeliographError) -> Void

    private struct Guarded {
        var state: RevocationState
        var closers: [UInt64: Close] = [:]
    }

    private let guarded: Mutex<Guarded>
    private let nextID = Atomic<UInt64>(0)

    /// The error a revoked device's sockets and requests get.
    public static let revokedError = HeliographError(.deviceRevoked, "this device was revoked; log in again to add it back")

    /// An empty registry remembering at most `capacity` revoked devices.
    public init(capacity: Int = RevocationState.defaultCapacity) {
        guarded = Mutex(Guarded(state: RevocationState(capacity: capacity)))
    }

    /// The current generation: read it before a socket's authentication read.
    public var generation: UInt64 { guarded.withLock { $0.state.generation } }

    /// Whether this node heard that `device` was revoked: one lookup, for every request.
    public func isRevoked(_ device: DeviceID) -> Bool { guarded.withLock { $0.state.isRevoked(device) } }

    /// Devices with at least one socket on this node.
    public var connectedDevices: [DeviceID] { guarded.withLock { $0.state.connectedDevices } }

    /// Sockets on this node.
    public var socketCount: Int { guarded.withLock { $0.state.socketCount } }

    /// A socket authenticated as `device` joins (see ``RevocationState/admit(socket:device:checkedAt:)``);
    /// `close` runs when the device is revoked. Returns the id to ``remove(_:)`` it with.
    public func admit(
        _ device: DeviceID, checkedAt checked: UInt64, close: @escaping Close
    ) -> (id: UInt64, admission: RevocationState.Admission) {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        let admission = guarded.withLock { guarded in
            let admission = guarded.state.admit(socket: id, device: device, checkedAt: checked)
            if admission != .revoked { guarded.closers[id] = close }
            return admission
        }
        return (id, admission)
    }

    /// A socket leaves (it closed, or its authentication failed after joining).
    public func remove(_ id: UInt64) {
        guarded.withLock { guarded in
            guarded.state.remove(socket: id)
            guarded.closers[id] = nil
        }
    }

    /// These devices were revoked: remembers them and closes every socket of theirs on this node.
    public func revoke(_ devices: [DeviceID]) {
        guard !devices.isEmpty else { return }
        let closers = guarded.withLock { guarded in
            guarded.state.revoke(devices).compactMap { guarded.closers.removeValue(forKey: $0) }
        }
        // Outside the lock: a hook may take its socket's own lock.
        for close in closers { close(Self.revokedError) }
    }

    /// The change feed had a gap: sockets joining with an older read recheck themselves, and
    /// ``recheck(against:)`` must run for the ones already joined.
    public func gap() {
        guarded.withLock { $0.state.gap() }
    }

    /// Checks every device with a socket on this node against the store, in one read per
    /// batch, and closes the sockets of those revoked meanwhile.
    public func recheck(against store: any DeviceStore) async throws {
        let devices = connectedDevices
        for start in stride(from: 0, to: devices.count, by: Self.recheckBatch) {
            let batch = Array(devices[start..<min(start + Self.recheckBatch, devices.count)])
            revoke(Array(try await store.revokedDevices(among: batch)))
        }
    }

    /// Devices per store read in ``recheck(against:)``.
    static let recheckBatch = 1000
}
