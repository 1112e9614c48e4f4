import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import Testing

extension ProcessTests {
    @Test(
        "two nodes: a device revoked through one node has its sockets on the other closed with device_revoked within a second",
        .enabled(if: postgresURL != nil))
    func revocationAcrossNodes() async throws {
        let (node1, node2, _, _) = try await twoNodes("revocation")
        let data = temporaryDirectory("revocation-profiles")
        let profiles = ProfileStore(directory: data)
        // An account without end-to-end keys; the laptop approves the phone.
        let laptop = try await HeliographClient.register(
            username: "carol", server: node1.url, deviceName: "laptop", profileName: "carol", store: profiles,
            encryption: false)
        let phone = try await HeliographClient.login(
            username: "carol", identityPrivateKey: laptop.profile.identityPrivateKey, server: node2.url,
            deviceName: "phone", profileName: "carol-phone", store: profiles, encryption: false
        ) { try await laptop.approveDevice(code: $0.code) }

        // The phone on the second node: one receiving socket, one request-only socket.
        let receiving = try await HeliographConnection.connect(to: node2.url)
        _ = try await receiving.request(
            .authenticate, AuthenticateRequest(token: phone.profile.token, after: 0), as: SessionInfo.self)
        let requestOnly = try await HeliographConnection.connect(to: node2.url)
        _ = try await requestOnly.request(
            .authenticate, AuthenticateRequest(token: phone.profile.token, after: nil, receive: false), as: SessionInfo.self)
        _ = try await requestOnly.requestRaw(method: "listDevices", bodyJSON: "{}")

        _ = try await laptop.revokeDevice(phone.profile.deviceID)
        let answered = ContinuousClock.now
        for socket in [receiving, requestOnly] {
            while !socket.isClosed, answered.duration(to: .now) < .seconds(5) {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(socket.isClosed)
            #expect(socket.closeReason?.code == .deviceRevoked)
            // RFC 6455 section 7.4.1: 1008, "Policy Violation".
            #expect(socket.closeCode == 1008)
        }
        #expect(answered.duration(to: .now) < .seconds(1), "the second node closed the sockets too late")

        // A request from a socket opened before the revocation is refused.
        do {
            _ = try await requestOnly.requestRaw(method: "listDevices", bodyJSON: "{}")
            Issue.record("a socket of the revoked device was still answered on the other node")
        } catch let error as ConnectionClosed {
            #expect(error.reason?.code == .deviceRevoked)
        } catch let error as HeliographError {
            #expect(error.code == .deviceRevoked)
        }
        // New sockets on the second node refuse the token too.
        let fresh = try await HeliographConnection.connect(to: node2.url)
        await #expect(throws: HeliographError(.deviceRevoked, "")) {
            _ = try await fresh.request(
                .authenticate, AuthenticateRequest(token: phone.profile.token, after: nil), as: SessionInfo.self)
        }
        await fresh.close()
        try await node1.stop()
        try await node2.stop()
    }
}
