import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import HeliographServer
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite("Bad input gets a clear error and the connection stays usable")
struct BadInputTests {
    @Test("malformed and unknown frames get error frames; the socket keeps working")
    func malformedFrames() async throws {
        try await TestServer.run { server in
            _ = try await server.register("alice")
            let socket = try await server.connect()
            let cases: [(String, HeliographError.Code)] = [
                ("{not json", .badRequest),
                (#"{"type":"telepathy"}"#, .badRequest),
                (#"{"type":"request","method":"lookupAccount","body":{}}"#, .badRequest),  // no id
                (#"{"type":"ack"}"#, .badRequest),  // no seq
                (#"{"type":"ack","seq":1}"#, .unauthenticated),
            ]
            for (frame, code) in cases {
                try await socket.sendRaw(frame)
                guard case .error(let error) = await nextEvent(socket) else {
                    Issue.record("no error frame for \(frame)")
                    continue
                }
                #expect(error.code == code, "for \(frame)")
                #expect(!error.message.isEmpty)
            }
            // Still usable.
            let account = try await socket.request(.lookupAccount, LookupAccountRequest(username: "alice"), as: AccountInfo.self)
            #expect(account.username == "alice")
        }
    }

    @Test("requests with an unknown method or a bad body get error responses with their id")
    func badRequests() async throws {
        try await TestServer.run { server in
            let socket = try await server.connect()
            await #expect(throws: HeliographError(.unknownMethod, "")) {
                _ = try await socket.requestRaw(method: "teleport", bodyJSON: "{}")
            }
            do {
                _ = try await socket.requestRaw(method: "register", bodyJSON: #"{"username":"alice"}"#)
                Issue.record("registered without a key")
            } catch let error as HeliographError {
                #expect(error.code == .badRequest)
                #expect(error.message.contains("identityKey"))
            }
            await #expect(throws: HeliographError(.unauthenticated, "")) {
                _ = try await socket.requestRaw(method: "send", bodyJSON: #"{"messageId":"m","to":"alice","payload":""}"#)
            }
            await #expect(throws: HeliographError(.unauthenticated, "")) {
                _ = try await socket.request(
                    .authenticate, AuthenticateRequest(token: "not-a-token", after: nil), as: SessionInfo.self)
            }
        }
    }

    @Test("unknown recipients, oversized envelopes and acks of unsent numbers are refused")
    func deliveryRefusals() async throws {
        try await TestServer.run(configure: { $0.maxEnvelopeBytes = 1000 }) { server in
            let alice = try await server.register("alice")
            _ = try await server.register("bob_b")
            let socket = try await server.connect(as: alice)
            await #expect(throws: HeliographError(.unknownAccount, "")) {
                _ = try await socket.request(
                    .send, SendRequest(messageId: .random(), to: "nobody_here", payload: Data([1])), as: SendResponse.self)
            }
            await #expect(throws: HeliographError(.payloadTooLarge, "")) {
                _ = try await socket.request(
                    .send, SendRequest(messageId: .random(), to: "bob_b", payload: Data(count: 1001)), as: SendResponse.self)
            }
            try await socket.acknowledge(99)
            guard case .error(let error) = await nextEvent(socket) else {
                Issue.record("no error for an ack of a number never sent")
                return
            }
            #expect(error.code == .ackOutOfRange)
            await #expect(throws: HeliographError(.ackOutOfRange, "")) {
                _ = try await socket.request(.ack, AckRequest(seq: 99), as: AckResponse.self)
            }
            // Nothing accepted before is lost: a good send still works and arrives.
            #expect(
                try await socket.request(
                    .send, SendRequest(messageId: .random(), to: "bob_b", payload: Data([1])), as: SendResponse.self
                ).deviceCount == 1)
        }
    }

    @Test("a frame over the size limit closes the socket with 'message too big'; others are unaffected")
    func oversizedFrame() async throws {
        try await TestServer.run(configure: { $0.maxFrameBytes = 4096 }) { server in
            let alice = try await server.register("alice", encryption: false)
            let socket = try await server.connect(as: alice)
            try await socket.sendRaw(String(repeating: "x", count: 10_000))
            for await _ in socket.events {}  // ends when the server closes
            #expect(socket.isClosed)
            let other = try await server.connect(as: alice)
            #expect(try await other.request(.listDevices, EmptyBody(), as: DeviceListResponse.self).devices.count == 1)
        }
    }

    @Test("sending faster than the limits is answered with rate_limited and a retry delay")
    func rateLimits() async throws {
        try await TestServer.run(configure: {
            $0.pairSendRate = 0.5
            $0.pairSendBurst = 3
        }) { server in
            let alice = try await server.register("alice")
            _ = try await server.register("bob_b")
            _ = try await server.register("carol")
            for _ in 0..<3 { try await alice.send(text: "ok", to: "bob_b") }
            do {
                try await alice.send(text: "too many", to: "bob_b")
                Issue.record("not rate limited")
            } catch let error as HeliographError {
                #expect(error.code == .rateLimited)
                #expect((error.retryAfterSeconds ?? 0) >= 1)
            }
            // The limit is per recipient: carol is still reachable.
            try await alice.send(text: "hello carol", to: "carol")
            // Over HTTP the answer is 429 with Retry-After.
            let body = #"{"messageId":"h1","to":"bob_b","payload":"AQ=="}"#
            let response = try await server.http(.post, "/v1/messages", json: body, token: alice.profile.token)
            #expect(response.status == .tooManyRequests)
            #expect(response.headers[.retryAfter] != nil)
            #expect(response.errorCode == "rate_limited")
        }
    }
}
