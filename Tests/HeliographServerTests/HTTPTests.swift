import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite("HTTP API and operations endpoints")
struct HTTPTests {
    @Test("the HTTP twins register, log in, send, fetch and acknowledge")
    func httpTwins() async throws {
        try await TestServer.run { server in
            let identity = IdentityKeyPair()
            let key = identity.publicKey.rawBytes.base64EncodedString()
            let created = try await server.http(.post, "/v1/accounts", json: #"{"username":"Erin_E","identityKey":"\#(key)"}"#)
            #expect(created.status == .created)
            let again = try await server.http(.post, "/v1/accounts", json: #"{"username":"erin_e","identityKey":"\#(key)"}"#)
            #expect(again.status == .conflict)
            #expect(again.errorCode == "username_taken")

            let lookup = try await server.http(.get, "/v1/accounts/ERIN_E")
            #expect(try lookup.decode(AccountInfo.self).username == "Erin_E")
            #expect(try await server.http(.get, "/v1/accounts/nobody_here").status == .notFound)

            let challenge = try await server.http(.post, "/v1/auth/challenge", json: #"{"username":"erin_e"}"#)
                .decode(ChallengeResponse.self)
            let signature = try identity.signLogin(
                nonce: challenge.nonce, challengeID: challenge.challengeId,
                account: try created.decode(AccountInfo.self).accountId, origin: try ServerOrigin(url: server.url),
                deviceName: "web")
            let login = try await server.http(
                .post, "/v1/auth/login",
                json:
                    #"{"challengeId":"\#(challenge.challengeId)","deviceName":"web","signature":"\#(signature.base64EncodedString())"}"#
            )
            #expect(login.status == .created)
            let token = try login.decode(LoginResponse.self).token

            let bob = try await server.register("bob_b")
            try await bob.send(text: "over http", to: "erin_e")
            let inbox = try await server.http(.get, "/v1/inbox?after=0&limit=10", token: token).decode(FetchInboxResponse.self)
            #expect(inbox.envelopes.count == 1)
            #expect(inbox.envelopes.first?.sender.username == "bob_b")
            let ack = try await server.http(.post, "/v1/inbox/ack", json: #"{"seq":1}"#, token: token)
            #expect(try ack.decode(AckResponse.self).acknowledged == 1)
            let empty = try await server.http(.get, "/v1/inbox", token: token).decode(FetchInboxResponse.self)
            #expect(empty.envelopes.isEmpty)

            let sent = try await server.http(
                .post, "/v1/messages", json: #"{"messageId":"h-1","to":"@bob_b","payload":"aGk="}"#, token: token)
            #expect(try sent.decode(SendResponse.self).deviceCount == 1)
            let devices = try await server.http(.get, "/v1/devices", token: token).decode(DeviceListResponse.self)
            #expect(devices.devices.map(\.name) == ["web"])
        }
    }

    @Test("bad HTTP requests get JSON errors with the right status")
    func httpErrors() async throws {
        try await TestServer.run(configure: { $0.maxFrameBytes = 2048 }) { server in
            let missing = try await server.http(.get, "/v1/devices")
            #expect(missing.status == .unauthorized)
            #expect(missing.errorCode == "unauthenticated")
            let bogus = try await server.http(.get, "/v1/devices", token: "bogus")
            #expect(bogus.errorCode == "unauthenticated")
            let notFound = try await server.http(.get, "/v1/nothing-here")
            #expect(notFound.status == .notFound)
            #expect(notFound.errorCode == "not_found")
            let garbage = try await server.http(.post, "/v1/accounts", json: "{")
            #expect(garbage.status == .badRequest)
            #expect(garbage.errorCode == "bad_request")
            let huge = try await server.http(.post, "/v1/accounts", json: String(repeating: " ", count: 5000) + "{}")
            #expect(huge.status == .contentTooLarge)
            #expect(huge.errorCode == "payload_too_large")
            let alice = try await server.register("alice", encryption: false)
            let badLimit = try await server.http(.get, "/v1/inbox?limit=0", token: alice.profile.token)
            #expect(badLimit.status == .badRequest)
            let badDevice = try await server.http(.delete, "/v1/devices/not-a-uuid", token: alice.profile.token)
            #expect(badDevice.status == .badRequest)
        }
    }

    @Test("health, readiness and metrics endpoints answer; metrics count deliveries")
    func operations() async throws {
        try await TestServer.run { server in
            #expect(try await server.http(.get, "/healthz").status == .ok)
            #expect(try await server.http(.get, "/readyz").status == .ok)
            let alice = try await server.register("alice", encryption: false)
            let bob = try await server.register("bob_b")
            for index in 1...3 { try await alice.send(text: "m\(index)", to: "bob_b") }
            _ = try await receive(3, from: bob)
            let metrics = String(buffer: try await server.http(.get, "/metrics").body)
            #expect(metrics.contains("heliograph_envelopes_accepted_total 3"))
            #expect(metrics.contains("heliograph_envelopes_delivered_total 3"))
            #expect(metrics.contains("heliograph_delivery_latency_seconds_count 3"))
            #expect(metrics.contains("heliograph_connected_devices"))
            #expect(metrics.contains(#"heliograph_store_seconds_count{operation="enqueue"} 3"#))
            #expect(metrics.contains(#"operation="fetch""#))
        }
    }
}
