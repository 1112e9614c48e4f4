import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import HeliographStorePostgres
import Logging
import Testing

let postgresURL = ProcessInfo.processInfo.environment["HELIOGRAPH_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }

/// Two server nodes on PostgreSQL. Part of the serialized process suite: spawning child
/// processes from several tests at once has hung Foundation's `Process` on Linux.
extension ProcessTests {
    /// A fresh database on the test server.
    func freshDatabase() async throws -> String {
        var logger = Logger(label: "test")
        logger.logLevel = .error
        let admin = try PostgresLocation(url: postgresURL!)
        let name = "heliograph_live_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        let location = try await PostgresAdministration.createDatabase(named: String(name), using: admin, logger: logger)
        return "postgres://\(location.username)@\(location.host):\(location.port)/\(location.database)"
    }

    /// Two server nodes on one fresh database without rate limits, alice registered through
    /// the first and bob through the second.
    func twoNodes(_ label: String) async throws -> (ServerProcess, ServerProcess, HeliographClient, HeliographClient) {
        let database = try await freshDatabase()
        let data = temporaryDirectory(label)
        let profiles = ProfileStore(directory: data.appendingPathComponent("profiles"))
        // Nodes sharing a database share the franking sealing key, which lives outside it.
        let sealingKey = data.appendingPathComponent("franking-sealing.key")
        try Data((0..<32).map { _ in UInt8.random(in: .min ... .max) }).write(to: sealingKey)
        let arguments = [
            "--database", database, "--franking-sealing-key-file", sealingKey.path, "--pair-send-rate", "0",
            "--account-send-rate", "0",
        ]
        let node1 = try await ServerProcess(dataDirectory: data, extraArguments: arguments)
        let node2 = try await ServerProcess(dataDirectory: data, extraArguments: arguments)
        let alice = try await HeliographClient.register(
            username: "alice", server: node1.url, deviceName: "laptop", profileName: "alice", store: profiles)
        let bob = try await HeliographClient.register(
            username: "bob_b", server: node2.url, deviceName: "phone", profileName: "bob", store: profiles)
        return (node1, node2, alice, bob)
    }

    @Test("two nodes: a message sent on one node reaches a device on the other in real time", .enabled(if: postgresURL != nil))
    func crossNodeDelivery() async throws {
        let (node1, node2, alice, bob) = try await twoNodes("nodes")
        let socket = try await HeliographConnection.connect(to: node2.url)
        _ = try await socket.request(.authenticate, AuthenticateRequest(token: bob.profile.token, after: 0), as: SessionInfo.self)
        try await Task.sleep(for: .milliseconds(200))
        let sentAt = ContinuousClock.now
        try await alice.send(text: "across nodes", to: "bob_b")
        var events = socket.events.makeAsyncIterator()
        guard case .envelope(let envelope) = await events.next() else {
            Issue.record("nothing arrived on the other node")
            return
        }
        // Pushed, not polled: well under the listener's reconnect interval.
        #expect(sentAt.duration(to: .now) < .seconds(1))
        #expect(envelope.sender.username == "alice")
        try await node1.stop()
        try await node2.stop()
    }

    @Test(
        "two nodes: a node killed mid-stream, its client resumes on the other, nothing lost, nothing duplicated",
        .enabled(if: postgresURL != nil))
    func failover() async throws {
        let (node1, node2, alice, bob) = try await twoNodes("failover")
        let total = 150

        let sender = Task {
            for index in 1...total {
                try await alice.send(text: "stream \(index)", to: "bob_b")
                try await Task.sleep(for: .milliseconds(5))
            }
        }

        // Bob's device: process each envelope once (by sequence number), acknowledge it, and on a
        // lost connection reconnect to the other node after the last acknowledged number.
        var processed: [String] = []
        var lastProcessed: Int64 = 0
        var redelivered = 0
        var killed = false
        var servers = [node2.url, node1.url]
        let deadline = ContinuousClock.now + .seconds(60)
        while processed.count < total {
            guard ContinuousClock.now < deadline else {
                Issue.record("only \(processed.count) of \(total) messages arrived")
                break
            }
            let socket = try await HeliographConnection.connect(to: servers[0])
            _ = try await socket.request(
                .authenticate, AuthenticateRequest(token: bob.profile.token, after: lastProcessed), as: SessionInfo.self)
            for await event in socket.events {
                guard case .envelope(let envelope) = event else { continue }
                guard envelope.seq > lastProcessed else {
                    redelivered += 1
                    continue
                }
                #expect(envelope.seq == lastProcessed + 1, "gap before \(envelope.seq)")
                lastProcessed = envelope.seq
                if let content = try? WireCodec.decode(MessageContent.self, from: envelope.payload) {
                    processed.append(content.text)
                }
                try? await socket.acknowledge(envelope.seq)
                if processed.count == 40, !killed {
                    killed = true
                    try await node2.stop(signal: SIGKILL)
                }
                if processed.count == total { break }
            }
            servers.removeAll { $0 == node2.url && killed }
        }
        try await sender.value
        #expect(killed)
        #expect(processed == (1...total).map { "stream \($0)" })
        #expect(redelivered <= total)
        try await node1.stop()
    }

    @Test("an unreachable database at start: a clear message naming host and port, within seconds")
    func unreachableDatabase() async throws {
        let process = Process()
        process.executableURL = binaryDirectory.appendingPathComponent("heliograph")
        process.arguments = ["serve", "--port", "0", "--database", "postgres://heliograph@127.0.0.1:1/heliograph"]
        process.environment = ProcessInfo.processInfo.environment.merging([
            "HELIOGRAPH_FRANKING_SEALING_KEY": Data(repeating: 7, count: 32).base64EncodedString()
        ]) { $1 }
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = Pipe()
        let started = ContinuousClock.now
        try process.run()
        while process.isRunning, started.duration(to: .now) < .seconds(20) {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(!process.isRunning)
        if process.isRunning { process.terminate() }
        #expect(started.duration(to: .now) < .seconds(8))
        #expect(process.terminationStatus != 0)
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(message.contains("127.0.0.1:1"))
        #expect(message.split(separator: "\n").count <= 2)
    }
}
