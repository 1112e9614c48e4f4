import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import Testing

/// Groups and channels across two server nodes on one PostgreSQL database.
extension ProcessTests {
    @Test(
        "two nodes: a channel post and a private group post made on one node reach members on the other, pushed",
        .enabled(if: postgresURL != nil))
    func chatsAcrossNodes() async throws {
        let (node1, node2, alice, bob) = try await twoNodes("chat-nodes")
        // Bob follows from node 2; Alice creates and posts on node 1.
        let channel = try await alice.createChannel(title: "Across", username: "across_nodes")
        let socket = try await HeliographConnection.connect(to: node2.url)
        _ = try await socket.request(.authenticate, AuthenticateRequest(token: bob.profile.token, after: 0), as: SessionInfo.self)
        // Joining on node 1 while the socket is on node 2: the feed tells node 2 to follow.
        let bobOnNode1 = try await HeliographConnection.connect(to: node1.url)
        _ = try await bobOnNode1.request(
            .authenticate, AuthenticateRequest(token: bob.profile.token, after: nil, receive: false), as: SessionInfo.self)
        _ = try await bobOnNode1.request(.joinChat, JoinChatRequest(username: "@across_nodes"), as: JoinChatResponse.self)
        try await Task.sleep(for: .milliseconds(300))
        let posted = try await alice.post("one post, two nodes", to: channel.chatId)
        // Waits for the push, failing (not hanging) if none comes within a generous bound.
        let pushed = await withTaskGroup(of: WireChatUpdate?.self) { group in
            group.addTask {
                for await event in socket.events {
                    if case .chatUpdate(let update) = event { return update }
                }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(20))
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
        #expect(pushed?.seq == posted.seq && pushed?.content?.text == "one post, two nodes")

        // A private group made on node 1, read on node 2 after the pairwise sender key.
        let group = try await alice.createPrivateGroup(title: "Two nodes", members: ["bob_b"])
        try await alice.post("sealed across nodes", to: group)
        _ = try await bob.processInbox()
        let read = try await bob.syncChats()
        #expect(read.compactMap(\.text).contains("sealed across nodes"), "\(read)")
        #expect(read.contains { $0.chatTitle == "Two nodes" })
        await socket.close()
        await bobOnNode1.close()
        _ = try await node1.stop()
        _ = try await node2.stop()
    }
}
