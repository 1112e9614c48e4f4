import Foundation
import HeliographCore
import HeliographServer
import Synchronization
import Testing

/// The revocation bookkeeping of one node, without sockets or a database.
@Suite("Revocation state")
struct RevocationStateTests {
    let phone = DeviceID.random()
    let laptop = DeviceID.random()

    @Test("a revocation closes every socket of the device, and only those; the device stays refused")
    func revokeClosesItsSockets() {
        var state = RevocationState()
        let checked = state.generation
        #expect(state.admit(socket: 1, device: phone, checkedAt: checked) == .active)
        #expect(state.admit(socket: 2, device: phone, checkedAt: checked) == .active)
        #expect(state.admit(socket: 3, device: laptop, checkedAt: checked) == .active)
        #expect(!state.isRevoked(phone))

        #expect(Set(state.revoke([phone])) == [1, 2])
        #expect(state.isRevoked(phone))
        #expect(!state.isRevoked(laptop))
        #expect(state.connectedDevices == [laptop])
        // Heard again (the feed echoes this node's own revocation): nothing left to close.
        #expect(state.revoke([phone]).isEmpty)
        // A socket that read before or after: refused either way, and it does not join.
        #expect(state.admit(socket: 4, device: phone, checkedAt: checked) == .revoked)
        #expect(state.admit(socket: 5, device: phone, checkedAt: state.generation) == .revoked)
        #expect(state.socketCount == 1)
    }

    @Test("a revocation heard between a socket's store read and its join refuses the socket")
    func revocationDuringAuthentication() {
        var state = RevocationState()
        let checked = state.generation
        // The socket's store read saw the device active; then the revocation is heard.
        #expect(state.revoke([phone]).isEmpty)
        #expect(state.generation != checked)
        #expect(state.admit(socket: 1, device: phone, checkedAt: checked) == .revoked)
        // Other devices are not affected by the generation moving.
        #expect(state.admit(socket: 2, device: laptop, checkedAt: checked) == .active)
    }

    @Test("after a feed gap, sockets that read before it recheck; sockets that read after do not")
    func gapMeansRecheck() {
        var state = RevocationState()
        let before = state.generation
        #expect(state.admit(socket: 1, device: laptop, checkedAt: before) == .active)
        state.gap()
        #expect(state.connectedDevices == [laptop])
        #expect(state.admit(socket: 2, device: phone, checkedAt: before) == .recheck)
        #expect(state.admit(socket: 3, device: phone, checkedAt: state.generation) == .active)
        // A later ordinary revocation does not make newer reads uncertain.
        let afterGap = state.generation
        _ = state.revoke([DeviceID.random()])
        #expect(state.admit(socket: 4, device: laptop, checkedAt: afterGap) == .active)
    }

    @Test("memory is bounded: the oldest revocations are forgotten, and older reads then recheck")
    func boundedMemory() {
        var state = RevocationState(capacity: 2)
        let first = DeviceID.random()
        let checked = state.generation
        _ = state.revoke([first])
        _ = state.revoke([phone])
        #expect(state.isRevoked(first))
        let beforeForgetting = state.generation
        _ = state.revoke([laptop])
        #expect(!state.isRevoked(first))
        #expect(state.isRevoked(phone) && state.isRevoked(laptop))
        // Forgotten: a socket whose read may predate the revocation must read again.
        #expect(state.admit(socket: 1, device: first, checkedAt: checked) == .recheck)
        #expect(state.admit(socket: 2, device: first, checkedAt: beforeForgetting) == .recheck)
        // A read after the forgetting saw the device table as it is now.
        #expect(state.admit(socket: 3, device: first, checkedAt: state.generation) == .active)
    }

    @Test("a socket that left is not closed again")
    func removedSocket() {
        var state = RevocationState()
        #expect(state.admit(socket: 1, device: phone, checkedAt: 0) == .active)
        state.remove(socket: 1)
        state.remove(socket: 99)
        #expect(state.socketCount == 0)
        #expect(state.revoke([phone]).isEmpty)
    }

    @Test("the registry calls each revoked socket's hook once, with device_revoked, outside its lock")
    func registryHooks() {
        let registry = RevocationRegistry()
        let phone = self.phone
        let calls = Mutex<[String]>([])
        let checked = registry.generation
        let (phoneSocket, first) = registry.admit(phone, checkedAt: checked) { reason in
            // The hook may use the registry: no lock is held while it runs (else this deadlocks).
            #expect(reason.code == .deviceRevoked)
            #expect(registry.isRevoked(phone))
            calls.withLock { $0.append("phone") }
        }
        let (_, second) = registry.admit(laptop, checkedAt: checked) { _ in calls.withLock { $0.append("laptop") } }
        #expect(first == .active && second == .active)
        #expect(registry.socketCount == 2)
        registry.revoke([phone])
        registry.remove(phoneSocket)
        registry.revoke([phone])
        #expect(calls.withLock { $0 } == ["phone"])
        #expect(registry.isRevoked(phone))
        #expect(registry.connectedDevices == [laptop])
        // Refused sockets never get a hook to call.
        let (_, refused) = registry.admit(phone, checkedAt: checked) { _ in calls.withLock { $0.append("late") } }
        #expect(refused == .revoked)
        #expect(registry.socketCount == 1)
    }
}
