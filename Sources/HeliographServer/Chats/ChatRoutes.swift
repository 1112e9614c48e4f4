import Foundation
import HeliographCore
import HeliographProtocol
import Hummingbird
import NIOCore

/// The HTTP twins of the group and channel methods (see docs/protocol.md).
///
/// Values in the path (`chatId`, `seq`, `username`, `code`) are merged into the JSON body before
/// it is decoded, so each route decodes the same request type as its WebSocket twin; a body
/// naming another value than the path is refused.
struct ChatRoutes: Sendable {
    let chats: ChatService
    let maxBodyBytes: Int
    let authenticate: @Sendable (Request) async throws -> AuthenticatedDevice

    func register(on v1: RouterGroup<HeliographRequestContext>) {
        /// POST /v1/chats — create a group or channel (201).
        v1.post("chats") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.create(try await decode(CreateChatRequest.self, request, context), by: caller),
                status: .init(code: APIMethod.createChat.successStatus))
        }
        /// GET /v1/chats — the chat list.
        v1.get("chats") { request, _ in try JSONBody.response(try await chats.list(for: try await authenticate(request))) }
        /// GET /v1/chats/search?q=WORDS&limit=N — public chats.
        v1.get("chats/search") { request, _ in
            _ = try await authenticate(request)
            let query = request.uri.queryParameters
            return try JSONBody.response(
                try await chats.search(
                    SearchChatsRequest(query: query["q"].map(String.init) ?? "", limit: try Self.integer(query["limit"], "limit"))
                ))
        }
        /// GET /v1/chats/by-name/{username} — a public chat by name.
        v1.get("chats/by-name/:username") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.resolve(ResolveChatRequest(username: try context.parameters.require("username")), for: caller))
        }
        /// POST /v1/chats/join — join by name or invite link.
        v1.post("chats/join") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.join(try await decode(JoinChatRequest.self, request, context), by: caller))
        }
        /// POST /v1/chats/sync — which chats have news for the positions held.
        v1.post("chats/sync") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.sync(try await decode(SyncChatsRequest.self, request, context), for: caller))
        }
        /// GET /v1/chats/{chatId} — facts and the caller's role.
        v1.get("chats/:chatId") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(try await chats.info(ChatRef(chatId: try Self.chatID(context)), for: caller))
        }
        /// PATCH /v1/chats/{chatId} — title, description, name, settings.
        v1.patch("chats/:chatId") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.update(try await decode(UpdateChatRequest.self, request, context), by: caller))
        }
        /// GET /v1/chats/{chatId}/members?after=ID&limit=N&admins=true — one page of members.
        v1.get("chats/:chatId/members") { request, context in
            let caller = try await authenticate(request)
            let query = request.uri.queryParameters
            let after = try query["after"].map { text -> AccountID in
                guard let id = AccountID(String(text)) else { throw HeliographError(.badRequest, "'after' is not an account id") }
                return id
            }
            let admins = try query["admins"].map { text -> Bool in
                guard let value = Bool(String(text)) else { throw HeliographError(.badRequest, "'admins' must be true or false") }
                return value
            }
            return try JSONBody.response(
                try await chats.members(
                    ChatMembersRequest(
                        chatId: try Self.chatID(context), after: after, limit: try Self.integer(query["limit"], "limit"),
                        admins: admins), for: caller))
        }
        /// POST /v1/chats/{chatId}/members — add accounts.
        v1.post("chats/:chatId/members") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.addMembers(try await decode(AddMembersRequest.self, request, context), by: caller))
        }
        /// DELETE /v1/chats/{chatId}/members/{username} — remove a member.
        v1.delete("chats/:chatId/members/:username") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.removeMember(
                    ChatMemberRequest(chatId: try Self.chatID(context), username: try context.parameters.require("username")),
                    by: caller))
        }
        /// POST /v1/chats/{chatId}/leave — leave the chat.
        v1.post("chats/:chatId/leave") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(try await chats.leave(ChatRef(chatId: try Self.chatID(context)), by: caller))
        }
        /// POST /v1/chats/{chatId}/bans — ban an account.
        v1.post("chats/:chatId/bans") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.ban(try await decode(BanMemberRequest.self, request, context), by: caller))
        }
        /// DELETE /v1/chats/{chatId}/bans/{username} — lift a ban.
        v1.delete("chats/:chatId/bans/:username") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.unban(
                    ChatMemberRequest(chatId: try Self.chatID(context), username: try context.parameters.require("username")),
                    by: caller))
        }
        /// PUT /v1/chats/{chatId}/admins/{username} — set an admin's rights (none: member again).
        v1.put("chats/:chatId/admins/:username") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.setAdmin(try await decode(SetAdminRequest.self, request, context), by: caller))
        }
        /// POST /v1/chats/{chatId}/owner — transfer ownership (body: `username`).
        v1.post("chats/:chatId/owner") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.transfer(try await decode(ChatMemberRequest.self, request, context), by: caller))
        }
        /// POST /v1/chats/{chatId}/membership — a private group's signed membership change.
        v1.post("chats/:chatId/membership") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.changeMembership(try await decode(ChangeMembershipRequest.self, request, context), by: caller))
        }
        /// POST /v1/chats/{chatId}/invites — make an invite link.
        v1.post("chats/:chatId/invites") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.createInvite(try await decode(CreateInviteRequest.self, request, context), by: caller))
        }
        /// GET /v1/chats/{chatId}/invites — the chat's invite links.
        v1.get("chats/:chatId/invites") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(try await chats.invites(ChatRef(chatId: try Self.chatID(context)), for: caller))
        }
        /// DELETE /v1/chats/{chatId}/invites/{code} — revoke an invite link.
        v1.delete("chats/:chatId/invites/:code") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.revokeInvite(
                    InviteRef(chatId: try Self.chatID(context), code: try context.parameters.require("code")), by: caller))
        }
        /// GET /v1/chats/{chatId}/requests — pending join requests.
        v1.get("chats/:chatId/requests") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(try await chats.joinRequests(ChatRef(chatId: try Self.chatID(context)), for: caller))
        }
        /// POST /v1/chats/{chatId}/requests/{username} — approve or decline (body: `approve`).
        v1.post("chats/:chatId/requests/:username") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.decideJoinRequest(try await decode(DecideJoinRequest.self, request, context), by: caller))
        }
        /// POST /v1/chats/{chatId}/messages — post.
        v1.post("chats/:chatId/messages") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(try await chats.post(try await decode(PostRequest.self, request, context), by: caller))
        }
        /// GET /v1/chats/{chatId}/messages?before=N&limit=M — history, newest first.
        v1.get("chats/:chatId/messages") { request, context in
            let caller = try await authenticate(request)
            let query = request.uri.queryParameters
            return try JSONBody.response(
                try await chats.history(
                    ChatHistoryRequest(
                        chatId: try Self.chatID(context), before: try Self.integer(query["before"], "before").map(Int64.init),
                        limit: try Self.integer(query["limit"], "limit")), for: caller))
        }
        /// PUT /v1/chats/{chatId}/messages/{seq} — edit.
        v1.put("chats/:chatId/messages/:seq") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.edit(try await decode(EditMessageRequest.self, request, context), by: caller))
        }
        /// DELETE /v1/chats/{chatId}/messages/{seq} — delete for everyone (body: `messageId`).
        v1.delete("chats/:chatId/messages/:seq") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.delete(try await decode(MessageActionRequest.self, request, context), by: caller))
        }
        /// POST /v1/chats/{chatId}/messages/{seq}/pin — pin or unpin (body: `messageId`, `pinned`).
        v1.post("chats/:chatId/messages/:seq/pin") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.pin(try await decode(MessageActionRequest.self, request, context), by: caller))
        }
        /// PUT /v1/chats/{chatId}/messages/{seq}/reaction — set or withdraw a reaction.
        v1.put("chats/:chatId/messages/:seq/reaction") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(try await chats.react(try await decode(ReactRequest.self, request, context), by: caller))
        }
        /// GET /v1/chats/{chatId}/updates?after=N&limit=M — the log after a position.
        v1.get("chats/:chatId/updates") { request, context in
            let caller = try await authenticate(request)
            let query = request.uri.queryParameters
            guard let after = try Self.integer(query["after"], "after") else {
                throw HeliographError(.badRequest, "'after' (the position held) is required")
            }
            return try JSONBody.response(
                try await chats.updates(
                    ChatUpdatesRequest(
                        chatId: try Self.chatID(context), after: Int64(after), limit: try Self.integer(query["limit"], "limit")),
                    for: caller))
        }
        /// POST /v1/chats/{chatId}/read — move the read position.
        v1.post("chats/:chatId/read") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.markRead(try await decode(MarkReadRequest.self, request, context), by: caller))
        }
        /// PUT /v1/chats/{chatId}/mute — mute or unmute.
        v1.put("chats/:chatId/mute") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.mute(try await decode(MuteChatRequest.self, request, context), by: caller))
        }
        /// POST /v1/chats/{chatId}/views — count views.
        v1.post("chats/:chatId/views") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await chats.recordViews(try await decode(RecordViewsRequest.self, request, context), by: caller))
        }
    }

    /// The chat id in the path.
    static func chatID(_ context: HeliographRequestContext) throws -> ChatID {
        let text = try context.parameters.require("chatId")
        guard let id = ChatID(text) else { throw HeliographError(.badRequest, "'\(text)' is not a chat id") }
        return id
    }

    /// An optional integer query parameter.
    static func integer(_ value: Substring?, _ name: String) throws(HeliographError) -> Int? {
        guard let value else { return nil }
        guard let number = Int(String(value)) else { throw HeliographError(.badRequest, "'\(name)' must be an integer") }
        return number
    }

    /// Decodes the body with the path's values merged in.
    func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: HeliographRequestContext) async throws -> T {
        let buffer = try await request.body.collect(upTo: maxBodyBytes)
        var data = Data(buffer.readableBytesView)
        if data.allSatisfy({ [0x20, 0x09, 0x0A, 0x0D].contains($0) }) { data = Data("{}".utf8) }
        var path: [String: Any] = [:]
        if context.parameters.get("chatId") != nil { path["chatId"] = try Self.chatID(context).description }
        if let seq = context.parameters.get("seq") {
            guard let number = Int64(seq) else { throw HeliographError(.badRequest, "'\(seq)' is not a message number") }
            path["seq"] = number
        }
        if let username = context.parameters.get("username") { path["username"] = username }
        return try WireCodec.decode(type, from: try PathMerge.merge(path, into: data))
    }
}

/// Merges path values into a JSON object body.
enum PathMerge {
    static func merge(_ path: [String: Any], into body: Data) throws -> Data {
        guard !path.isEmpty else { return body }
        // The body's own checks (valid JSON, an object, no key twice) come first, with the codec's words.
        _ = try WireCodec.decode(AnyJSONObject.self, from: body)
        guard var object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw HeliographError(.badRequest, "the body must be a JSON object")
        }
        for (key, value) in path {
            if let given = object[key], "\(given)" != "\(value)" {
                throw HeliographError(.badRequest, "the body names \(key) \(given), the path \(value)")
            }
            object[key] = value
        }
        return try JSONSerialization.data(withJSONObject: object)
    }

    /// Any JSON object, read only for the codec's checks.
    private struct AnyJSONObject: Decodable {
        init(from decoder: any Decoder) throws {
            _ = try decoder.container(keyedBy: AnyKey.self)
        }
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int?
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) {
            self.intValue = intValue
            stringValue = String(intValue)
        }
    }
}
