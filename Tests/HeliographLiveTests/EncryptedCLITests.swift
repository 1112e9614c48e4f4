import Foundation
import Synchronization
import Testing

extension ProcessTests {
    @Test("the CLI: two profiles with two devices each chat end-to-end encrypted and compare safety numbers")
    func encryptedChatAcrossDevices() async throws {
        let data = temporaryDirectory("cli-e2ee")
        defer { try? FileManager.default.removeItem(at: data) }
        let config = data.appendingPathComponent("config")
        let server = try await ServerProcess(dataDirectory: data)
        let serverFlag = ["--server", server.url.absoluteString]
        func run(_ arguments: [String]) async throws -> CommandResult {
            let result = try await helio(arguments, configHome: config)
            #expect(result.status == 0, "helio \(arguments.joined(separator: " ")): \(result.error)")
            return result
        }
        /// `helio login` waits for approval: read the code it prints and approve it from `approver`.
        func link(_ username: String, from approver: String, as profile: String) async throws {
            let login = Process()
            login.executableURL = binaryDirectory.appendingPathComponent("helio")
            login.arguments = ["login", username, "--identity-from", approver, "--profile", profile, "--device-name", "laptop"]
            login.environment = ProcessInfo.processInfo.environment.merging(["XDG_CONFIG_HOME": config.path]) { $1 }
            let output = Pipe()
            login.standardOutput = output
            login.standardError = Pipe()
            // Collected by the pipe's handler thread: a blocking read here would hold one of the
            // few threads every test shares.
            let collected = Mutex("")
            output.fileHandleForReading.readabilityHandler = { handle in
                let chunk = String(decoding: handle.availableData, as: UTF8.self)
                collected.withLock { $0 += chunk }
            }
            try login.run()
            var printed = ""
            let deadline = ContinuousClock.now + .seconds(30)
            while !printed.contains("helio devices approve "), login.isRunning, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
                printed = collected.withLock { $0 }
            }
            output.fileHandleForReading.readabilityHandler = nil
            let code = try #require(
                printed.split(separator: "\n").first { $0.contains("helio devices approve ") }?.split(separator: " ").last)
            let approved = try await run(["devices", "approve", String(code), "--profile", approver])
            #expect(approved.output.contains("approved"))
            while login.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(login.terminationStatus == 0)
            let devices = try await run(["devices", "--profile", approver])
            #expect(!devices.output.contains("waiting for approval"))
        }
        _ = try await run(["register", "alice", "--profile", "alice1", "--device-name", "phone"] + serverFlag)
        try await link("alice", from: "alice1", as: "alice2")
        _ = try await run(["register", "bob_b", "--profile", "bob1", "--device-name", "phone"] + serverFlag)
        try await link("bob_b", from: "bob1", as: "bob2")

        let toBob = try await run(["send", "@bob_b", "hello", "bob", "--profile", "alice1"])
        #expect(toBob.output.contains("(3 devices)"))  // Bob's two devices and Alice's laptop
        _ = try await run(["send", "@alice", "hello", "alice", "--profile", "bob2"])

        func listen(_ profile: String, _ count: Int) async throws -> [String] {
            let result = try await run(["listen", "--profile", profile, "--count", "\(count)", "--timeout", "20"])
            #expect(!result.error.contains("dropped"), "\(result.error)")
            // Drop the time stamp: "2026-11-22 19:31:21 @alice: text" → "@alice: text".
            return result.output.split(separator: "\n").map { $0.split(separator: " ", maxSplits: 2).last.map(String.init) ?? "" }
        }
        #expect(try await listen("bob1", 2) == ["@alice: hello bob", "you to @alice: hello alice"])
        #expect(try await listen("bob2", 1) == ["@alice: hello bob"])
        #expect(try await listen("alice1", 1) == ["@bob_b: hello alice"])
        #expect(try await listen("alice2", 2) == ["you to @bob_b: hello bob", "@bob_b: hello alice"])

        // Both sides see the same safety number.
        let fromAlice = try await run(["verify", "@bob_b", "--profile", "alice1"])
        let fromBob = try await run(["verify", "@alice", "--profile", "bob2"])
        let digits = { (output: String) in output.split(separator: "\n").dropFirst().prefix(3).joined(separator: "\n") }
        #expect(digits(fromAlice.output) == digits(fromBob.output))
        #expect(digits(fromAlice.output).filter(\.isNumber).count == 60)
        let confirmed = try await run(["verify", "@bob_b", "--profile", "alice1", "--confirm"])
        #expect(confirmed.output.contains("status: verified"))

        // Key files are private to their owner.
        let attributes = try FileManager.default.attributesOfItem(
            atPath: config.appendingPathComponent("heliograph/alice1.keys").path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        try await server.stop()
    }
}
