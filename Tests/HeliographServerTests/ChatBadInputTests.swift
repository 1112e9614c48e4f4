import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import HeliographServer
import Testing

/// Every refusal of the group and channel API has its own code and changes nothing.
@Suite("Groups and channels refuse bad input clearly and change nothing")
struct ChatBadInputTests {
    @Test("posting without the right, editing someone else's message, deleting where one cannot see, oversized text")
    func rightsAndSizes() async throws {
        try await TestServer.run { server in
            let owner = try await server.register("owner", encryption: false)
            let reader = try await server.register("reader", encryption: false)
            let stranger = try await server.register("stranger", encryption: false)
            let channel = try await owner.createChannel(title: "Announcements", username: "announce")
            _ = try await reader.join("@announce")
            let post = try await owner.post("official", to: channel.chatId)
            let hidden = try await owner.createPublicGroup(title: "Invite only")
            let secret = try await owner.post("inside", to: hidden.chatId)
            let before = try await owner.chatInfo(channel.chatId).chat.lastSeq

            await expectRefusal(.missingRight) { try await reader.post("me too", to: channel.chatId) }
            await expectRefusal(.missingRight) { try await reader.edit(post.seq, in: channel.chatId, text: "changed") }
            await expectRefusal(.missingRight) { try await reader.deleteMessage(post.seq, in: channel.chatId) }
            await expectRefusal(.missingRight) { try await reader.pin(post.seq, in: channel.chatId) }
            // A chat without a public name is invisible to non-members: the same answer as none.
            await expectRefusal(.unknownChat) { try await stranger.deleteMessage(secret.seq, in: hidden.chatId) }
            await expectRefusal(.unknownChat) { _ = try await stranger.history(of: hidden.chatId) }
            await expectRefusal(.unknownChat) { _ = try await stranger.chatInfo(ChatID.random()) }
            await expectRefusal(.notAMember) { try await stranger.react(post.seq, in: channel.chatId, emoji: "👍") }
            await expectRefusal(.badRequest) { try await reader.react(post.seq, in: channel.chatId, emoji: "🦄") }
            await expectRefusal(.unknownMessage) { try await owner.edit(999, in: channel.chatId, text: "nothing there") }
            await expectRefusal(.payloadTooLarge) {
                try await owner.post(String(repeating: "x", count: 4_097), to: channel.chatId)
            }
            // Subscribers of a channel cannot list each other.
            await expectRefusal(.missingRight) {
                _ = try await reader.call(.chatMembers, ChatMembersRequest(chatId: channel.chatId), as: ChatMembersResponse.self)
            }
            let admins = try await reader.call(
                .chatMembers, ChatMembersRequest(chatId: channel.chatId, admins: true), as: ChatMembersResponse.self)
            #expect(admins.members.map(\.username) == ["owner"])

            let after = try await owner.history(of: channel.chatId)
            #expect(try await owner.chatInfo(channel.chatId).chat.lastSeq == before)
            #expect(after.map(\.message.update.content?.text) == ["official"])
            #expect(after[0].message.reactions.isEmpty && !after[0].message.pinned && after[0].message.editedAt == nil)
        }
    }

    @Test("joining while banned, past the member limit, and by expired, used-up or revoked invite links")
    func joining() async throws {
        try await TestServer.run(configure: { $0.chatMemberLimits[.publicGroup] = 3 }) { server in
            let owner = try await server.register("owner", encryption: false)
            let names = ["first", "second", "third", "fourth"]
            var members: [HeliographClient] = []
            for name in names { members.append(try await server.register(name, encryption: false)) }
            let group = try await owner.createPublicGroup(title: "Small", username: "small_group")
            _ = try await members[0].join("@small_group")
            _ = try await members[1].join("@small_group")
            // Full at three (the owner counts).
            await expectRefusal(.chatFull) { _ = try await members[2].join("@small_group") }
            #expect(try await owner.chatInfo(group.chatId).chat.memberCount == 3)

            // A ban removes and keeps out; it ends when its time is up or it is lifted.
            _ = try await owner.call(
                .banMember, BanMemberRequest(chatId: group.chatId, username: "first"), as: ChatInfoResponse.self)
            await expectRefusal(.banned) { _ = try await members[0].join("@small_group") }
            await expectRefusal(.notAMember) { try await members[0].post("still here?", to: group.chatId) }
            _ = try await owner.call(
                .unbanMember, ChatMemberRequest(chatId: group.chatId, username: "first"), as: ChatInfoResponse.self)
            _ = try await members[0].join("@small_group")

            // Invite links: one use, then used up; expired; revoked.
            let channel = try await owner.createChannel(title: "Private channel")
            let once = try await owner.call(
                .createInvite, CreateInviteRequest(chatId: channel.chatId, usageLimit: 1), as: WireInvite.self)
            _ = try await members[1].join("https://heliograph.example/join/\(once.code)")
            await expectRefusal(.inviteUsedUp) { _ = try await members[2].join(once.code) }
            let soon = try await owner.call(
                .createInvite,
                CreateInviteRequest(chatId: channel.chatId, expiresAt: Date().millisecondsSince1970 + 400), as: WireInvite.self)
            try await Task.sleep(for: .milliseconds(600))
            await expectRefusal(.inviteExpired) { _ = try await members[2].join(soon.code) }
            let revoked = try await owner.call(.createInvite, CreateInviteRequest(chatId: channel.chatId), as: WireInvite.self)
            _ = try await owner.call(.revokeInvite, InviteRef(chatId: channel.chatId, code: revoked.code), as: WireInvite.self)
            await expectRefusal(.inviteRevoked) { _ = try await members[2].join(revoked.code) }
            await expectRefusal(.unknownChat) { _ = try await members[2].join("no-such-code") }
            #expect(try await owner.chatInfo(channel.chatId).chat.memberCount == 2)

            // Approval: the join waits until an admin lets it in.
            let gated = try await owner.call(
                .createInvite, CreateInviteRequest(chatId: channel.chatId, requiresApproval: true), as: WireInvite.self)
            #expect(try await members[3].join(gated.code).pending)
            await expectRefusal(.unknownChat) { _ = try await members[3].history(of: channel.chatId) }
            let requests = try await owner.call(.joinRequests, ChatRef(chatId: channel.chatId), as: JoinRequestsResponse.self)
            #expect(requests.requests.map(\.username) == ["fourth"])
            _ = try await owner.call(
                .decideJoinRequest, DecideJoinRequest(chatId: channel.chatId, username: "fourth", approve: true),
                as: ChatInfoResponse.self)
            #expect(try await owner.chatInfo(channel.chatId).chat.memberCount == 3)
        }
    }

    @Test("slow mode, admin rights beyond one's own, the owner's protections")
    func slowModeAndRoles() async throws {
        try await TestServer.run { server in
            let owner = try await server.register("owner", encryption: false)
            let admin = try await server.register("admin_a", encryption: false)
            let member = try await server.register("member", encryption: false)
            let group = try await owner.createPublicGroup(title: "Slow", username: "slow_group", slowModeSeconds: 60)
            _ = try await admin.join("@slow_group")
            _ = try await member.join("@slow_group")
            try await member.post("one", to: group.chatId)
            do {
                try await member.post("two", to: group.chatId)
                Issue.record("slow mode let a second post through")
            } catch let error as HeliographError {
                #expect(error.code == .slowMode)
                #expect((1...60).contains(error.retryAfterSeconds ?? 0))
            }
            // Admins are not slowed down.
            try await owner.setAdmin("admin_a", rights: ["ban", "delete"], in: group.chatId)
            try await admin.post("a", to: group.chatId)
            try await admin.post("b", to: group.chatId)
            // An admin cannot grant what it lacks, nor act on the owner.
            await expectRefusal(.missingRight) { try await admin.setAdmin("member", rights: ["ban"], in: group.chatId) }
            await expectRefusal(.missingRight) {
                _ = try await admin.call(
                    .banMember, BanMemberRequest(chatId: group.chatId, username: "owner"), as: ChatInfoResponse.self)
            }
            await expectRefusal(.badRequest) { try await owner.leave(group.chatId) }
            await expectRefusal(.badRequest) { try await owner.setAdmin("member", rights: ["fly"], in: group.chatId) }
            // Ownership moves; the old owner stays as an admin and may now leave.
            _ = try await owner.call(
                .transferOwnership, ChatMemberRequest(chatId: group.chatId, username: "admin_a"), as: ChatInfoResponse.self)
            #expect(try await admin.chatInfo(group.chatId).role == .owner)
            #expect(try await owner.chatInfo(group.chatId).role == .admin)
            try await owner.leave(group.chatId)
            #expect(try await admin.chatInfo(group.chatId).chat.memberCount == 2)
        }
    }
}
