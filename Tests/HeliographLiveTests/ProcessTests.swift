import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import Testing

/// Tests against the real `heliograph` and `helio` executables.
@Suite("Server and CLI processes", .serialized)
struct ProcessTests {
    /// Receives `count` messages, failing after `timeout`.
    func receive(_ count: Int, from client: HeliographClient, timeout: Duration = .seconds(20)) async throws -> [IncomingMessage]
    {
        try await withThrowingTaskGroup(of: [IncomingMessage]?.self) { group in
            group.addTask {
                var received: [IncomingMessage] = []
                for try await message in client.messages() {
                    received.append(message)
                    if received.count == count {
                        try await client.acknowledge(message)
                        break
                    }
                }
                return received
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            guard let messages = first else { throw HeliographError(.internalError, "timed out") }
            return messages
        }
    }

    @Test("stopping and starting the server between send and receive loses nothing", arguments: [SIGTERM, SIGKILL])
    func restartLosesNothing(signal: Int32) async throws {
        let data = temporaryDirectory("restart")
        let profiles = ProfileStore(directory: data.appendingPathComponent("profiles"))
        let first = try await ServerProcess(dataDirectory: data)
        let alice = try await HeliographClient.register(
            username: "alice", server: first.url, deviceName: "laptop", profileName: "alice", store: profiles)
        _ = try await HeliographClient.register(
            username: "bob_b", server: first.url, deviceName: "phone", profileName: "bob", store: profiles)
        for index in 1...25 { try await alice.send(text: "durable \(index)", to: "bob_b") }
        // Every send above was acknowledged; kill or stop the server right away.
        try await first.stop(signal: signal)

        let second = try await ServerProcess(dataDirectory: data)
        defer { _ = try? FileManager.default.removeItem(at: data) }
        var bobProfile = try profiles.load("bob")
        bobProfile.server = second.url
        try profiles.save(bobProfile, as: "bob")
        let bob = try HeliographClient(profileName: "bob", store: profiles)
        let messages = try await receive(25, from: bob)
        #expect(messages.compactMap(\.content?.text) == (1...25).map { "durable \($0)" })
        #expect(messages.map(\.sequence) == Array(1...25))
        try await second.stop()
    }

    @Test("SIGTERM closes sockets with a reconnect hint and the process exits cleanly")
    func gracefulShutdown() async throws {
        let data = temporaryDirectory("shutdown")
        let profiles = ProfileStore(directory: data.appendingPathComponent("profiles"))
        let server = try await ServerProcess(dataDirectory: data)
        let alice = try await HeliographClient.register(
            username: "alice", server: server.url, deviceName: "laptop", profileName: "alice", store: profiles)
        let socket = try await HeliographConnection.connect(to: server.url)
        _ = try await socket.request(
            .authenticate, AuthenticateRequest(token: alice.profile.token, after: nil), as: SessionInfo.self)
        let status = try await server.stop(signal: SIGTERM)
        for await _ in socket.events {}
        #expect(socket.closeReason?.code == .shuttingDown)
        #expect(status == 0)
        #expect(server.logText.contains("heliograph stopped"))
    }

    @Test("the CLI: register two profiles, send, and see the message arrive in helio listen")
    func cliWalkThrough() async throws {
        let data = temporaryDirectory("cli")
        let config = data.appendingPathComponent("config")
        let server = try await ServerProcess(dataDirectory: data)
        let serverFlag = ["--server", server.url.absoluteString]
        let alice = try await helio(["register", "alice", "--profile", "alice"] + serverFlag, configHome: config)
        #expect(alice.status == 0, "\(alice.error)")
        #expect(alice.output.contains("registered @alice"))
        let bob = try await helio(["register", "bob_b", "--profile", "bob"] + serverFlag, configHome: config)
        #expect(bob.status == 0, "\(bob.error)")

        // Profiles hold secrets: only their owner may read them.
        let attributes = try FileManager.default.attributesOfItem(
            atPath: config.appendingPathComponent("heliograph/alice.json").path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)

        let listening = Task {
            try await helio(["listen", "--profile", "bob", "--count", "2", "--timeout", "20"], configHome: config)
        }
        try await Task.sleep(for: .milliseconds(500))
        let sent = try await helio(["send", "@bob_b", "hello", "from", "alice", "--profile", "alice"], configHome: config)
        #expect(sent.status == 0, "\(sent.error)")
        #expect(sent.output.contains("sent to @bob_b"))
        _ = try await helio(["send", "bob_b", "second", "--profile", "alice"], configHome: config)
        let listened = try await listening.value
        #expect(listened.status == 0, "\(listened.error)")
        let lines = listened.output.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first?.hasSuffix("@alice: hello from alice") == true)
        #expect(lines.last?.hasSuffix("@alice: second") == true)

        // Errors are one readable line and a non-zero status.
        let unknown = try await helio(["send", "@nobody_here", "hi", "--profile", "alice"], configHome: config)
        #expect(unknown.status == 1)
        #expect(unknown.error == "helio: no account is named @nobody_here [unknown_account]\n")
        let noProfile = try await helio(["send", "@bob_b", "hi", "--profile", "ghost"], configHome: config)
        #expect(noProfile.status == 1)
        #expect(noProfile.error.split(separator: "\n").count == 1)

        let devices = try await helio(["devices", "--profile", "bob"], configHome: config)
        #expect(devices.output.contains("this device"))
        try await server.stop()
        let unreachable = try await helio(["send", "@bob_b", "hi", "--profile", "alice"], configHome: config)
        #expect(unreachable.status == 1)
        #expect(unreachable.error.contains("cannot reach the server"))
    }
}
