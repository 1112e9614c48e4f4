import Foundation
import HeliographCore
import HeliographProtocol

/// Routes a WebSocket request frame to the same service function as its HTTP twin.
///
/// It decodes the typed body for the method, calls the service, and encodes the response
/// frame; errors become error responses carrying the request id.
struct APIDispatcher: Sendable {
    let services: HeliographServices
    /// The socket's client address (taken at the upgrade), for the limits of unauthenticated methods.
    let client: ClientAddress

    /// Handles one request frame. `caller` is the socket's device, if it authenticated.
    /// `authenticate` is handled by the gateway, which owns the socket's state.
    func handle(method: APIMethod, id: String, frame: Data, caller: AuthenticatedDevice?) async throws -> Data {
        func body<T: Codable & Sendable>(_ type: T.Type) throws -> T {
            try WireCodec.decode(RequestFrame<T>.self, from: frame).body
        }
        func session() throws -> AuthenticatedDevice {
            guard let caller else {
                throw HeliographError(.unauthenticated, "send an 'authenticate' request with your session token first")
            }
            try services.auth.checkStillValid(caller)
            return caller
        }
        func reply<T: Codable & Sendable>(_ value: T) throws -> Data {
            try WireCodec.encode(ResponseFrame(id: id, status: method.successStatus, body: value, error: nil))
        }
        let chats = services.chats
        switch method {
        case .register: return try reply(try await services.accounts.register(try body(RegisterRequest.self), from: client))
        case .lookupAccount: return try reply(try await services.accounts.lookup(try body(LookupAccountRequest.self)))
        case .challenge: return try reply(try await services.auth.challenge(try body(ChallengeRequest.self), from: client))
        case .login: return try reply(try await services.auth.login(try body(LoginRequest.self), from: client))
        case .listDevices: return try reply(try await services.devices.list(for: try session()))
        case .revokeDevice:
            return try reply(try await services.devices.revoke(try body(RevokeDeviceRequest.self), by: try session()))
        case .approveDevice:
            return try reply(try await services.devices.approve(try body(ApproveDeviceRequest.self), by: try session()))
        case .send: return try reply(try await services.messages.send(try body(SendRequest.self), from: try session()))
        case .fetchInbox:
            return try reply(try await services.messages.fetch(try body(FetchInboxRequest.self), for: try session()))
        case .ack: return try reply(try await services.messages.acknowledge(try body(AckRequest.self), for: try session()))
        case .publishKeys:
            return try reply(try await services.keys.publish(try body(PublishKeysRequest.self), by: try session()))
        case .keyStatus: return try reply(try await services.keys.status(for: try session()))
        case .fetchKeys: return try reply(try await services.keys.fetch(try body(FetchKeysRequest.self), by: try session()))
        case .verifyReport:
            return try reply(try await services.reports.verify(try body(FrankedReportRequest.self), by: try session()))
        case .createChat: return try reply(try await chats.create(try body(CreateChatRequest.self), by: try session()))
        case .chatInfo: return try reply(try await chats.info(try body(ChatRef.self), for: try session()))
        case .updateChat: return try reply(try await chats.update(try body(UpdateChatRequest.self), by: try session()))
        case .resolveChat: return try reply(try await chats.resolve(try body(ResolveChatRequest.self), for: try session()))
        case .searchChats:
            _ = try session()
            return try reply(try await chats.search(try body(SearchChatsRequest.self)))
        case .chatMembers: return try reply(try await chats.members(try body(ChatMembersRequest.self), for: try session()))
        case .addMembers: return try reply(try await chats.addMembers(try body(AddMembersRequest.self), by: try session()))
        case .removeMember:
            return try reply(try await chats.removeMember(try body(ChatMemberRequest.self), by: try session()))
        case .leaveChat: return try reply(try await chats.leave(try body(ChatRef.self), by: try session()))
        case .banMember: return try reply(try await chats.ban(try body(BanMemberRequest.self), by: try session()))
        case .unbanMember: return try reply(try await chats.unban(try body(ChatMemberRequest.self), by: try session()))
        case .setAdmin: return try reply(try await chats.setAdmin(try body(SetAdminRequest.self), by: try session()))
        case .transferOwnership:
            return try reply(try await chats.transfer(try body(ChatMemberRequest.self), by: try session()))
        case .changeMembership:
            return try reply(try await chats.changeMembership(try body(ChangeMembershipRequest.self), by: try session()))
        case .joinChat: return try reply(try await chats.join(try body(JoinChatRequest.self), by: try session()))
        case .createInvite:
            return try reply(try await chats.createInvite(try body(CreateInviteRequest.self), by: try session()))
        case .revokeInvite: return try reply(try await chats.revokeInvite(try body(InviteRef.self), by: try session()))
        case .listInvites: return try reply(try await chats.invites(try body(ChatRef.self), for: try session()))
        case .joinRequests: return try reply(try await chats.joinRequests(try body(ChatRef.self), for: try session()))
        case .decideJoinRequest:
            return try reply(try await chats.decideJoinRequest(try body(DecideJoinRequest.self), by: try session()))
        case .post: return try reply(try await chats.post(try body(PostRequest.self), by: try session()))
        case .editMessage: return try reply(try await chats.edit(try body(EditMessageRequest.self), by: try session()))
        case .deleteMessage:
            return try reply(try await chats.delete(try body(MessageActionRequest.self), by: try session()))
        case .pinMessage: return try reply(try await chats.pin(try body(MessageActionRequest.self), by: try session()))
        case .react: return try reply(try await chats.react(try body(ReactRequest.self), by: try session()))
        case .chatHistory: return try reply(try await chats.history(try body(ChatHistoryRequest.self), for: try session()))
        case .chatUpdates: return try reply(try await chats.updates(try body(ChatUpdatesRequest.self), for: try session()))
        case .chatList: return try reply(try await chats.list(for: try session()))
        case .syncChats: return try reply(try await chats.sync(try body(SyncChatsRequest.self), for: try session()))
        case .markRead: return try reply(try await chats.markRead(try body(MarkReadRequest.self), by: try session()))
        case .muteChat: return try reply(try await chats.mute(try body(MuteChatRequest.self), by: try session()))
        case .recordViews: return try reply(try await chats.recordViews(try body(RecordViewsRequest.self), by: try session()))
        case .authenticate:
            throw HeliographError(.badRequest, "authenticate is handled by the socket")
        }
    }
}

extension APIMethod {
    /// The status of a successful answer, the same in a WebSocket response frame and over HTTP:
    /// 201 (Created) for the methods that create an account, a device or a chat, 200 for the others.
    var successStatus: Int {
        switch self {
        case .register, .login, .createChat: 201
        default: 200
        }
    }
}
