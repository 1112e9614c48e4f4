import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import HeliographServer
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Revocation of open sockets")
struct RevocationTests {
    /// RFC 6455 section 7.4.1: 1008 "Policy Violation".
    static let policyViolation: UInt16 = 1008

    @Test(
        "a request-only socket is told device_revoked and closed with 1008 when its device is revoked; its requests are refused")
    func requestOnlySocket() async throws {
        try await TestServer.run { server in
            let (bob, phone) = try await plainAccount(on: server)
            _ = try await server.register("alice")
            let socket = try await server.connect()
            _ = try await socket.request(
                .authenticate, AuthenticateRequest(token: phone.profile.token, after: nil, receive: false),
                as: SessionInfo.self)
            // Working before the revocation: these are the requests refused after it.
            _ = try await socket.requestRaw(method: "listDevices", bodyJSON: "{}")
            _ = try await socket.requestRaw(method: "fetchKeys", bodyJSON: #"{"username":"alice"}"#)

            _ = try await bob.revokeDevice(phone.profile.deviceID)
            guard case .error(let error) = await nextEvent(socket, timeout: .seconds(1)) else {
                Issue.record("the request-only socket of the revoked device got no error frame within a second")
                return
            }
            #expect(error.code == .deviceRevoked)
            #expect(await closed(socket, within: .seconds(1)))
            #expect(socket.closeCode == Self.policyViolation)

            let requests: [(String, String)] = [
                ("send", #"{"messageId":"after-revocation","to":"alice","payload":"aGk="}"#),
                ("publishKeys", "{}"),
                ("listDevices", "{}"),
                ("fetchKeys", #"{"username":"alice"}"#),
            ]
            for (method, body) in requests {
                await expectRevoked(method) { _ = try await socket.requestRaw(method: method, bodyJSON: body) }
            }
        }
    }

    @Test("frames sent right behind a revocation on the same socket are never executed")
    func framesBehindTheRevocation() async throws {
        try await TestServer.run { server in
            let (bob, phone) = try await plainAccount(on: server)
            let alice = try await server.register("alice", encryption: false)
            let socket = try await server.connect()
            _ = try await socket.request(
                .authenticate, AuthenticateRequest(token: phone.profile.token, after: nil, receive: false),
                as: SessionInfo.self)
            // The phone logs itself out and, without waiting for the answer, sends and acknowledges:
            // the server reads these frames while the revoking request is in flight.
            let revoke = RequestFrame(
                id: "x1", method: .revokeDevice, body: try await phone.signedRevocation(of: phone.profile.deviceID).request)
            let send = RequestFrame(
                id: "x2", method: .send,
                body: SendRequest(
                    messageId: try MessageID(validating: "behind-revocation"), to: "alice", payload: Data("hi".utf8)))
            try await socket.sendRaw(String(decoding: try WireCodec.encode(revoke), as: UTF8.self))
            try await socket.sendRaw(String(decoding: try WireCodec.encode(send), as: UTF8.self))
            #expect(await closed(socket, within: .seconds(2)))
            #expect(socket.closeReason?.code == .deviceRevoked)
            #expect(socket.closeCode == Self.policyViolation)

            // Nothing reached alice: the send behind the revocation was refused or never read.
            let inbox = try await server.http(.get, "/v1/inbox?after=0", token: alice.profile.token)
            #expect(inbox.status == .ok)
            #expect(try inbox.decode(FetchInboxResponse.self).envelopes.isEmpty)
            // The device is revoked for HTTP too: each HTTP request reads the device.
            let http = try await server.http(.get, "/v1/devices", token: phone.profile.token)
            #expect(http.errorCode == "device_revoked")
        }
    }

    @Test("a receiving socket and a request-only socket of one device both close, other devices' sockets stay")
    func everySocketOfTheDevice() async throws {
        try await TestServer.run { server in
            let (bob, phone) = try await plainAccount(on: server)
            let receiving = try await server.connect(as: phone)
            let requestOnly = try await server.connect()
            _ = try await requestOnly.request(
                .authenticate, AuthenticateRequest(token: phone.profile.token, after: nil, receive: false),
                as: SessionInfo.self)
            let laptop = try await server.connect(as: bob)

            _ = try await bob.revokeDevice(phone.profile.deviceID)
            for socket in [receiving, requestOnly] {
                #expect(await closed(socket, within: .seconds(1)))
                #expect(socket.closeReason?.code == .deviceRevoked)
                #expect(socket.closeCode == Self.policyViolation)
            }
            // Bob's laptop is not affected.
            #expect(!laptop.isClosed)
            _ = try await laptop.requestRaw(method: "listDevices", bodyJSON: "{}")
        }
    }
}

/// Bob with a laptop and a phone (approved by the laptop), without end-to-end keys.
func plainAccount(on server: TestServer) async throws -> (laptop: HeliographClient, phone: HeliographClient) {
    let laptop = try await server.register("bob_b", encryption: false)
    let profile = laptop.profile
    _ = profile
    let phone = try await server.addDevice(to: laptop, named: "phone", encryption: false)
    return (laptop, phone)
}

/// Whether `socket` closed within `limit`.
func closed(_ socket: HeliographConnection, within limit: Duration) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while !socket.isClosed, ContinuousClock.now < deadline {
        try? await Task.sleep(for: .milliseconds(10))
    }
    return socket.isClosed
}

/// Expects `body` to be refused because the device was revoked: an error response
/// `device_revoked`, or a socket the server closed for that reason.
func expectRevoked(
    _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async {
    do {
        try await body()
        Issue.record("\(what) was answered after the revocation", sourceLocation: sourceLocation)
    } catch let error as HeliographError {
        #expect(error.code == .deviceRevoked, "\(what)", sourceLocation: sourceLocation)
    } catch let error as ConnectionClosed {
        #expect(error.reason?.code == .deviceRevoked, "\(what)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(what) failed with \(error)", sourceLocation: sourceLocation)
    }
}
