import Foundation
import Testing

extension ProcessTests {
    @Test("the CLI: a file sent with 'helio send --file' is shown, saved by 'listen --save-dir' and by 'helio save'")
    func attachmentsThroughTheCLI() async throws {
        let data = temporaryDirectory("cli-media")
        defer { try? FileManager.default.removeItem(at: data) }
        let config = data.appendingPathComponent("config")
        let server = try await ServerProcess(dataDirectory: data)
        let serverFlag = ["--server", server.url.absoluteString]
        func run(_ arguments: [String]) async throws -> CommandResult {
            let result = try await helio(arguments, configHome: config)
            #expect(result.status == 0, "helio \(arguments.joined(separator: " ")): \(result.error)")
            return result
        }
        _ = try await run(["register", "alice", "--profile", "alice"] + serverFlag)
        _ = try await run(["register", "bob_b", "--profile", "bob"] + serverFlag)

        // 1.2 MiB that no pattern could fake.
        var bytes = [UInt8](repeating: 0, count: 1_258_291)
        for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255) }
        let original = Data(bytes)
        let file = data.appendingPathComponent("notes.pdf")
        try original.write(to: file)

        let sent = try await run(["send", "@bob_b", "--file", file.path, "see", "attached", "--profile", "alice"])
        #expect(sent.output.contains("sent to @bob_b"))
        // Not a terminal: no progress bar.
        #expect(!sent.error.contains("%"))

        let inbox = data.appendingPathComponent("inbox")
        let listened = try await run([
            "listen", "--profile", "bob", "--count", "1", "--timeout", "30", "--save-dir", inbox.path,
        ])
        let lines = listened.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasSuffix("@alice: see attached") == true, "\(lines)")
        #expect(lines.contains("  attachment: notes.pdf (application/pdf, 1.2 MiB)"), "\(lines)")
        #expect(lines.contains("  saved to \(inbox.appendingPathComponent("notes.pdf").path)"), "\(lines)")
        #expect(FileManager.default.contents(atPath: inbox.appendingPathComponent("notes.pdf").path) == original)
        let reference = try #require(lines.first { $0.hasPrefix("  save with: helio save ") }?.split(separator: " ").last)

        // Saved again later by the reference listen printed, under another name.
        let copy = data.appendingPathComponent("copy.pdf")
        let saved = try await run(["save", String(reference), copy.path, "--profile", "bob"])
        #expect(saved.output.contains("saved \(copy.path) (1.2 MiB)"))
        #expect(FileManager.default.contents(atPath: copy.path) == original)

        // A private group's encrypted attachment, saved by CHAT#SEQ without listening.
        _ = try await run(["group", "create", "Plans", "--member", "bob_b", "--profile", "alice"])
        let posted = try await run(["post", "Plans", "--file", file.path, "the", "plans", "--profile", "alice"])
        let seq = try #require(posted.output.split(separator: "#").last?.split(separator: " ").first)
        let groupCopy = data.appendingPathComponent("group")
        try FileManager.default.createDirectory(at: groupCopy, withIntermediateDirectories: true)
        let fromGroup = try await run(["save", "Plans#\(seq)", groupCopy.path, "--profile", "bob"])
        #expect(fromGroup.output.contains("notes.pdf"), "\(fromGroup.output)")
        #expect(FileManager.default.contents(atPath: groupCopy.appendingPathComponent("notes.pdf").path) == original)

        // Unknown references are refused with a reason.
        let unknown = try await helio(["save", "no-such-message", "--profile", "bob"], configHome: config)
        #expect(unknown.status == 1)
        #expect(unknown.error.contains("no attachment known"))
        try await server.stop()
    }
}
