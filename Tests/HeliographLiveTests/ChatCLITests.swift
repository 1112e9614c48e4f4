import Foundation
import Testing

extension ProcessTests {
    @Test("the CLI: a private group of two reads each other's posts, and a channel subscriber reads a post and counts a view")
    func groupsAndChannelsFromTheCLI() async throws {
        let data = temporaryDirectory("cli-chats")
        defer { try? FileManager.default.removeItem(at: data) }
        let config = data.appendingPathComponent("config")
        let serverData = data.appendingPathComponent("server")
        try FileManager.default.createDirectory(at: serverData, withIntermediateDirectories: true)
        let server = try await ServerProcess(dataDirectory: serverData)
        func run(_ arguments: [String]) async throws -> CommandResult {
            let result = try await helio(arguments, configHome: config)
            #expect(result.status == 0, "helio \(arguments.joined(separator: " ")): \(result.error)")
            return result
        }
        _ = try await run(["register", "alice", "--profile", "alice", "--server", server.url.absoluteString])
        _ = try await run(["register", "bob_b", "--profile", "bob", "--server", server.url.absoluteString])

        // A private group: the title and the text travel end-to-end encrypted.
        let title = "Orchard plans 7731"
        let created = try await run(["group", "create", title, "--member", "bob_b", "--profile", "alice"])
        #expect(created.output.contains("created private group [\(title)] with @bob_b"))
        _ = try await run(["post", "Orchard", "pick", "the", "pears", "at", "noon", "--profile", "alice"])
        let read = try await run(["read", "Orchard", "--profile", "bob"])
        #expect(read.output.contains("[\(title)] #2 @alice: pick the pears at noon"), "\(read.output)")
        let listed = try await run(["chats", "--profile", "bob"])
        #expect(listed.output.contains("[\(title)] · private group"), "\(listed.output)")

        // Bob answers while Alice listens: she catches up from her position (her own post), then
        // Bob's reply reaches her through the chat socket, and her client opens it with the
        // sender key Bob's device sent over their pairwise session.
        let listening = Task {
            try await helio(["listen", "--profile", "alice", "--count", "2", "--timeout", "20"], configHome: config)
        }
        try await Task.sleep(for: .seconds(1))
        _ = try await run(["reply", title, "2", "pears", "are", "ripe", "--profile", "bob"])
        let heard = try await listening.value
        #expect(heard.status == 0, "\(heard.error)")
        let lines = heard.output.split(separator: "\n").map { $0.split(separator: " ", maxSplits: 2).last.map(String.init) ?? "" }
        #expect(
            lines == ["[\(title)] #2 @alice: pick the pears at noon", "[\(title)] #3 @bob_b (reply to #2): pears are ripe"],
            "\(heard.output)")

        // The server stored ciphertext only: neither the title nor the texts are in its files.
        let files = FileManager.default.enumerator(at: serverData, includingPropertiesForKeys: [.isRegularFileKey])
        var checked = 0
        while let file = files?.nextObject() as? URL {
            guard try file.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile == true else { continue }
            let bytes = try Data(contentsOf: file)
            for secret in [title, "pick the pears", "pears are ripe"] {
                #expect(bytes.range(of: Data(secret.utf8)) == nil, "\(file.lastPathComponent) holds '\(secret)'")
            }
            checked += 1
        }
        #expect(checked >= 2)

        // A public channel: Bob subscribes by name and reads; reading counts one view.
        _ = try await run(["channel", "create", "Harvest news", "--username", "harvest", "--sign", "--profile", "alice"])
        let subscribed = try await run(["channel", "subscribe", "@harvest", "--profile", "bob"])
        #expect(subscribed.output.contains("subscribed to [Harvest news]"))
        let posted = try await run(["channel", "post", "@harvest", "the", "cider", "is", "ready", "--profile", "alice"])
        #expect(posted.output.contains("posted #1 to [Harvest news]"), "\(posted.output)")
        let subscriberRead = try await run(["read", "@harvest", "--profile", "bob"])
        #expect(
            subscriberRead.output.contains("[Harvest news] #1: the cider is ready — alice  [1 view]"), "\(subscriberRead.output)")
        // The count is the server's: the owner's history shows it without adding a view.
        let history = try await run(["channel", "history", "harvest", "--profile", "alice"])
        #expect(history.output.contains("#1: the cider is ready — alice  [1 view]"), "\(history.output)")
        // Subscribers cannot post.
        let refused = try await helio(["channel", "post", "@harvest", "hello", "--profile", "bob"], configHome: config)
        #expect(refused.status == 1)
        #expect(refused.error.contains("[missing_right]"), "\(refused.error)")
        try await server.stop()
    }
}
