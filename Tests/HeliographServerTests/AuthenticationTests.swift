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

@Suite("Accounts, devices and sessions")
struct AuthenticationTests {
    @Test("an account lists its devices and a revoked device is refused everywhere")
    func revokedDeviceIsRefused() async throws {
        try await TestServer.run { server in
            let bob = try await server.register("bob_b")
            let bobPhone = try await server.addDevice(to: bob, named: "phone")
            let devices = try await bob.devices()
            #expect(devices.count == 2)
            #expect(devices.filter(\.current).map(\.deviceId) == [bob.profile.deviceID])

            // The phone is connected when it gets revoked: its socket is told why and closed.
            let phoneSocket = try await server.connect(as: bobPhone)
            let revoked = try await bob.revokeDevice(bobPhone.profile.deviceID)
            #expect(revoked.revokedAt != nil)
            guard case .error(let error) = await nextEvent(phoneSocket) else {
                Issue.record("the revoked socket got no error frame")
                return
            }
            #expect(error.code == .deviceRevoked)

            // New sockets and HTTP requests with its token are refused.
            let socket = try await server.connect()
            await #expect(throws: HeliographError(.deviceRevoked, "")) {
                _ = try await socket.request(
                    .authenticate, AuthenticateRequest(token: bobPhone.profile.token, after: nil), as: SessionInfo.self)
            }
            let http = try await server.http(.get, "/v1/devices", token: bobPhone.profile.token)
            #expect(http.status == .unauthorized)
            #expect(http.errorCode == "device_revoked")
            // The SDK's receive loop ends with the reason instead of retrying forever.
            await #expect(throws: HeliographError(.deviceRevoked, "")) {
                for try await _ in bobPhone.messages() {}
            }
            // Senders no longer reach it.
            let alice = try await server.register("alice")
            #expect(try await alice.send(text: "hi", to: "bob_b").deviceCount == 1)
            // Others' devices cannot be revoked, and the answer does not reveal they exist.
            await #expect(throws: HeliographError(.unknownDevice, "")) {
                try await alice.revokeDevice(bob.profile.deviceID)
            }
        }
    }

    @Test("an expired token is refused with token_expired")
    func expiredToken() async throws {
        let clock = ManualWallClock(Date())
        try await TestServer.run(clock: clock, configure: { $0.tokenLifetime = .seconds(3600) }) { server in
            let alice = try await server.register("alice")
            let socket = try await server.connect(as: alice)
            clock.advance(by: 3601)
            // The open socket re-checks expiry on each request.
            await #expect(throws: HeliographError(.tokenExpired, "")) {
                _ = try await socket.request(.listDevices, EmptyBody(), as: DeviceListResponse.self)
            }
            let http = try await server.http(.get, "/v1/devices", token: alice.profile.token)
            #expect(http.errorCode == "token_expired")
            #expect(http.status == .unauthorized)
        }
    }

    @Test("login refuses bad signatures, reused and expired challenges")
    func loginRefusals() async throws {
        let clock = ManualWallClock(Date())
        try await TestServer.run(clock: clock) { server in
            let identity = IdentityKeyPair()
            let socket = try await server.connect()
            let carol = try await socket.request(
                .register, RegisterRequest(username: "carol", identityKey: identity.publicKey.rawBytes), as: AccountInfo.self)
            let origin = try ServerOrigin(url: server.url)

            let challenge = try await socket.request(.challenge, ChallengeRequest(username: "carol"), as: ChallengeResponse.self)
            let forged = try IdentityKeyPair().signLogin(
                nonce: challenge.nonce, challengeID: challenge.challengeId, account: carol.accountId, origin: origin,
                deviceName: "x")
            await #expect(throws: HeliographError(.badSignature, "")) {
                _ = try await socket.request(
                    .login, LoginRequest(challengeId: challenge.challengeId, deviceName: "x", signature: forged),
                    as: LoginResponse.self)
            }
            // The challenge was spent by the failed attempt.
            let genuine = try identity.signLogin(
                nonce: challenge.nonce, challengeID: challenge.challengeId, account: carol.accountId, origin: origin,
                deviceName: "x")
            await #expect(throws: HeliographError(.challengeExpired, "")) {
                _ = try await socket.request(
                    .login, LoginRequest(challengeId: challenge.challengeId, deviceName: "x", signature: genuine),
                    as: LoginResponse.self)
            }
            // An answer after the challenge lifetime is refused.
            let late = try await socket.request(.challenge, ChallengeRequest(username: "carol"), as: ChallengeResponse.self)
            clock.advance(by: 301)
            let lateSignature = try identity.signLogin(
                nonce: late.nonce, challengeID: late.challengeId, account: carol.accountId, origin: origin, deviceName: "x")
            await #expect(throws: HeliographError(.challengeExpired, "")) {
                _ = try await socket.request(
                    .login, LoginRequest(challengeId: late.challengeId, deviceName: "x", signature: lateSignature),
                    as: LoginResponse.self)
            }
            // A fresh challenge answered in time works.
            let fresh = try await socket.request(.challenge, ChallengeRequest(username: "carol"), as: ChallengeResponse.self)
            let signature = try identity.signLogin(
                nonce: fresh.nonce, challengeID: fresh.challengeId, account: carol.accountId, origin: origin, deviceName: "x")
            let session = try await socket.request(
                .login, LoginRequest(challengeId: fresh.challengeId, deviceName: "x", signature: signature),
                as: LoginResponse.self)
            #expect(!session.token.isEmpty)
        }
    }

    @Test("invalid and taken usernames are refused with their codes")
    func usernames() async throws {
        try await TestServer.run { server in
            let socket = try await server.connect()
            let key = IdentityKeyPair().publicKey.rawBytes
            for bad in ["abc", "1alice", "alice_", "al ice", String(repeating: "a", count: 33)] {
                await #expect(throws: HeliographError(.invalidUsername, "")) {
                    _ = try await socket.request(
                        .register, RegisterRequest(username: bad, identityKey: key), as: AccountInfo.self)
                }
            }
            _ = try await socket.request(.register, RegisterRequest(username: "Alice", identityKey: key), as: AccountInfo.self)
            await #expect(throws: HeliographError(.usernameTaken, "")) {
                _ = try await socket.request(
                    .register, RegisterRequest(username: "aLiCe", identityKey: IdentityKeyPair().publicKey.rawBytes),
                    as: AccountInfo.self)
            }
            await #expect(throws: HeliographError(.invalidKey, "")) {
                _ = try await socket.request(
                    .register, RegisterRequest(username: "dave_d", identityKey: Data(count: 12)), as: AccountInfo.self)
            }
        }
    }
}
