import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import HeliographServer
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite("Delivery over real sockets")
struct DeliveryTests {
    @Test("two accounts, three devices: every message reaches every recipient device, in order")
    func fanOutInOrder() async throws {
        try await TestServer.run { server in
            let alicePhone = try await server.register("alice", device: "phone")
            let aliceLaptop = try await server.addDevice(to: alicePhone, named: "laptop")
            let bob = try await server.register("bob_b")

            for index in 1...10 { try await bob.send(text: "to alice \(index)", to: "@alice") }
            for index in 1...10 { try await alicePhone.send(text: "to bob \(index)", to: "bob_b") }
            // Writing to one's own account reaches one's other devices only.
            try await alicePhone.send(text: "note to self", to: "alice")

            let expectedForAlice = (1...10).map { "to alice \($0)" }
            let phone = try await receive(10, from: alicePhone)
            #expect(phone.compactMap(\.content?.text) == expectedForAlice)
            #expect(phone.map(\.sequence) == Array(1...10))
            #expect(Set(phone.map(\.sender)) == ["bob_b"])
            let laptop = try await receive(11, from: aliceLaptop)
            #expect(laptop.compactMap(\.content?.text) == expectedForAlice + ["note to self"])
            #expect(laptop.last?.senderDevice == alicePhone.profile.deviceID.description)
            let bobs = try await receive(10, from: bob)
            #expect(bobs.compactMap(\.content?.text) == (1...10).map { "to bob \($0)" })
        }
    }

    @Test("a listening device gets messages pushed as they are sent")
    func livePush() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let listening = Task { try await receive(3, from: bob) }
            try await Task.sleep(for: .milliseconds(200))
            for index in 1...3 { try await alice.send(text: "live \(index)", to: "bob_b") }
            let messages = try await listening.value
            #expect(messages.compactMap(\.content?.text) == ["live 1", "live 2", "live 3"])
        }
    }

    @Test("an offline device catches up in order after reconnecting, and acknowledged messages are not resent")
    func offlineCatchUp() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            for index in 1...5 { try await alice.send(text: "while away \(index)", to: "bob_b") }
            let first = try await receive(5, from: bob)
            #expect(first.compactMap(\.content?.text) == (1...5).map { "while away \($0)" })
            #expect(bob.profile.lastAcknowledged == 5)

            try await alice.send(text: "later", to: "bob_b")
            let second = try await receive(1, from: bob)
            #expect(second.map(\.sequence) == [6])
            #expect(second.first?.content?.text == "later")

            // A profile reopened from disk resumes after the saved position.
            let reopened = try HeliographClient(profileName: bob.profileName, store: server.profiles)
            #expect(reopened.profile.lastAcknowledged == 6)
            try await alice.send(text: "after reopen", to: "bob_b")
            #expect(try await receive(1, from: reopened).map(\.sequence) == [7])
        }
    }

    @Test("an unacknowledged message is delivered again after a reconnect")
    func unacknowledgedIsRedelivered() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            try await alice.send(text: "keep me", to: "bob_b")
            let socket = try await server.connect(as: bob)
            guard case .envelope(let envelope) = await nextEvent(socket) else {
                Issue.record("no envelope pushed")
                return
            }
            #expect(envelope.seq == 1)
            await socket.close()  // gone without acknowledging
            let again = try await server.connect(as: bob)
            guard case .envelope(let redelivered) = await nextEvent(again) else {
                Issue.record("not redelivered")
                return
            }
            #expect(redelivered == envelope)
            try await again.acknowledge(1)
            await again.close()
            let third = try await server.connect(as: bob)
            let inbox = try await third.request(.fetchInbox, FetchInboxRequest(after: 0), as: FetchInboxResponse.self)
            #expect(inbox.envelopes.isEmpty)
        }
    }

    @Test("a retried send with the same message id is stored and delivered once")
    func idempotentRetry() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let id = MessageID.random()
            let payload = Data("once".utf8)
            let first = try await alice.send(payload: payload, to: "bob_b", messageID: id)
            let retry = try await alice.send(payload: payload, to: "bob_b", messageID: id)
            #expect(!first.duplicate)
            #expect(retry.duplicate)
            #expect(retry.serverTime == first.serverTime)
            try await alice.send(text: "marker", to: "bob_b")
            let messages = try await receive(2, from: bob)
            #expect(messages.map(\.messageID) == [id.rawValue, messages[1].messageID])
            #expect(messages[1].content?.text == "marker")
        }
    }

    @Test("a sender naming the recipient's devices must name exactly the active ones")
    func deviceListMismatch() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob_b")
            let bobPhone = try await server.addDevice(to: bob, named: "phone")
            let socket = try await server.connect(as: alice)
            let stale = SendRequest(messageId: .random(), to: "bob_b", devices: [bob.profile.deviceID], payload: Data([1]))
            await #expect(throws: HeliographError(.deviceListMismatch, "")) {
                _ = try await socket.request(.send, stale, as: SendResponse.self)
            }
            let exact = SendRequest(
                messageId: .random(), to: "bob_b", devices: [bobPhone.profile.deviceID, bob.profile.deviceID], payload: Data([1]))
            #expect(try await socket.request(.send, exact, as: SendResponse.self).deviceCount == 2)
        }
    }
}
