import Foundation
import HeliographCore
import HeliographProtocol

// A libFuzzer target for the wire decoding a server and a client do on bytes they did not
// choose: the routing head of a client frame, every method's request frame with its typed
// body, the ack frame, and the frames a server sends. Built by scripts/fuzz (see
// docs/security.md, "Fuzzing").
//
// Invariants checked on every input:
// - decoding never crashes, whatever the bytes (a crash here is a crash of the server's socket
//   reader or of a client's);
// - whatever decodes re-encodes, the re-encoding decodes again to an equal value (compared
//   with `==` where the type is Equatable) and re-encodes to the same bytes, so one value has
//   one spelling on the wire;
// - when a frame decodes whole and as its routing head, both read the same type, id, method,
//   sequence number or status: the socket routes on the head, then decodes the whole frame.

/// The entry point libFuzzer calls once per input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FrameDecoderFuzz.check(Data(bytes: data, count: size))
    return 0
}

/// The checks of one input.
enum FrameDecoderFuzz {
    static func check(_ input: Data) {
        let head = try? WireCodec.decode(ClientFrameHead.self, from: input)
        // Every body type is a struct decoded from a JSON object, and `EmptyBody` accepts any
        // object, so when the frame does not decode with an empty body it decodes with none of
        // them: the other bodies are tried only then, which keeps the rate up on the many
        // inputs that are not frames at all.
        if checkRequest(EmptyBody.self, input, head: head) {
            for method in APIMethod.allCases {
                checkRequest(method, input, head: head)
            }
        }
        if let ack = roundTrip(AckFrame.self, input, compare: { $0.type == $1.type && $0.seq == $1.seq }) {
            require(
                head.map { $0.type == ack.type && $0.seq == ack.seq } ?? true, "an ack frame decoded but its head did not match",
                input)
        }

        let serverHead = try? WireCodec.decode(ServerFrameHead.self, from: input)
        checkResponses(input, head: serverHead)
        if let frame = roundTrip(EnvelopeFrame.self, input, compare: { $0.type == $1.type && $0.envelope == $1.envelope }) {
            require(serverHead.map { $0.type == frame.type } ?? true, "an envelope frame decoded but its head did not", input)
        }
        // The pushes of groups and channels, which clients decode.
        if let frame = roundTrip(ChatUpdateFrame.self, input, compare: { $0.type == $1.type && $0.update == $1.update }) {
            require(serverHead.map { $0.type == frame.type } ?? true, "a chat update frame decoded but its head did not", input)
        }
        _ = roundTrip(ReadPositionFrame.self, input, compare: { $0.chatId == $1.chatId && $0.readSeq == $1.readSeq })
        _ = roundTrip(ChatsChangedFrame.self, input, compare: { $0.type == $1.type })
        // The bodies of the media routes (HTTP only), which the server and clients decode.
        _ = roundTrip(CreateUploadRequest.self, input, compare: ==)
        _ = roundTrip(UploadStatus.self, input, compare: ==)
        _ = roundTrip(UploadPartResponse.self, input, compare: ==)
        _ = roundTrip(BlobDescriptor.self, input, compare: ==)
        _ = roundTrip(ReleaseAttachmentsRequest.self, input, compare: ==)
        _ = roundTrip(ReleaseAttachmentsResponse.self, input, compare: ==)
        if let frame = roundTrip(ErrorFrame.self, input, compare: { $0.type == $1.type && $0.error == $1.error }) {
            require(
                serverHead.map { $0.type == frame.type && $0.error == frame.error } ?? true,
                "an error frame decoded but its head did not match", input)
        }
    }

    /// The body type the server decodes for each method (APIDispatcher and the socket
    /// gateway's `authenticate`); methods without parameters take `{}`, as clients send it.
    static func checkRequest(_ method: APIMethod, _ input: Data, head: ClientFrameHead?) {
        switch method {
        case .register: checkRequest(RegisterRequest.self, input, head: head)
        case .lookupAccount: checkRequest(LookupAccountRequest.self, input, head: head)
        case .challenge: checkRequest(ChallengeRequest.self, input, head: head)
        case .login: checkRequest(LoginRequest.self, input, head: head)
        case .authenticate: checkRequest(AuthenticateRequest.self, input, head: head)
        case .listDevices, .keyStatus: checkRequest(EmptyBody.self, input, head: head)
        case .revokeDevice: checkRequest(RevokeDeviceRequest.self, input, head: head)
        case .approveDevice: checkRequest(ApproveDeviceRequest.self, input, head: head)
        case .send: checkRequest(SendRequest.self, input, head: head)
        case .fetchInbox: checkRequest(FetchInboxRequest.self, input, head: head)
        case .ack: checkRequest(AckRequest.self, input, head: head)
        case .publishKeys: checkRequest(PublishKeysRequest.self, input, head: head)
        case .fetchKeys: checkRequest(FetchKeysRequest.self, input, head: head)
        case .verifyReport: checkRequest(FrankedReportRequest.self, input, head: head)
        case .createChat: checkRequest(CreateChatRequest.self, input, head: head)
        case .chatInfo, .leaveChat, .listInvites, .joinRequests: checkRequest(ChatRef.self, input, head: head)
        case .updateChat: checkRequest(UpdateChatRequest.self, input, head: head)
        case .resolveChat: checkRequest(ResolveChatRequest.self, input, head: head)
        case .searchChats: checkRequest(SearchChatsRequest.self, input, head: head)
        case .chatMembers: checkRequest(ChatMembersRequest.self, input, head: head)
        case .addMembers: checkRequest(AddMembersRequest.self, input, head: head)
        case .removeMember, .unbanMember, .transferOwnership: checkRequest(ChatMemberRequest.self, input, head: head)
        case .banMember: checkRequest(BanMemberRequest.self, input, head: head)
        case .setAdmin: checkRequest(SetAdminRequest.self, input, head: head)
        case .changeMembership: checkRequest(ChangeMembershipRequest.self, input, head: head)
        case .joinChat: checkRequest(JoinChatRequest.self, input, head: head)
        case .createInvite: checkRequest(CreateInviteRequest.self, input, head: head)
        case .revokeInvite: checkRequest(InviteRef.self, input, head: head)
        case .decideJoinRequest: checkRequest(DecideJoinRequest.self, input, head: head)
        case .post: checkRequest(PostRequest.self, input, head: head)
        case .editMessage: checkRequest(EditMessageRequest.self, input, head: head)
        case .deleteMessage, .pinMessage: checkRequest(MessageActionRequest.self, input, head: head)
        case .react: checkRequest(ReactRequest.self, input, head: head)
        case .chatHistory: checkRequest(ChatHistoryRequest.self, input, head: head)
        case .chatUpdates: checkRequest(ChatUpdatesRequest.self, input, head: head)
        case .chatList: checkRequest(EmptyBody.self, input, head: head)
        case .syncChats: checkRequest(SyncChatsRequest.self, input, head: head)
        case .markRead: checkRequest(MarkReadRequest.self, input, head: head)
        case .muteChat: checkRequest(MuteChatRequest.self, input, head: head)
        case .recordViews: checkRequest(RecordViewsRequest.self, input, head: head)
        }
    }

    /// Whether the input decodes as a request frame with this body.
    @discardableResult
    static func checkRequest<Body: Codable & Sendable>(_ type: Body.Type, _ input: Data, head: ClientFrameHead?) -> Bool {
        let frame = roundTrip(
            RequestFrame<Body>.self, input,
            compare: { $0.type == $1.type && $0.id == $1.id && $0.method == $1.method && equalIfEquatable($0.body, $1.body) }
        )
        guard let frame else { return false }
        require(
            head.map { $0.type == frame.type && $0.id == frame.id && $0.method == frame.method } ?? true,
            "a request frame decoded but its head did not match", input)
        return true
    }

    /// The answers of every method, and the error response of any of them.
    static func checkResponses(_ input: Data, head: ServerFrameHead?) {
        // As for requests: a body that is not an object (or null) fails every body type.
        guard checkResponse(EmptyBody.self, input, head: head) else { return }
        checkResponse(AccountInfo.self, input, head: head)
        checkResponse(ChallengeResponse.self, input, head: head)
        checkResponse(LoginResponse.self, input, head: head)
        checkResponse(SessionInfo.self, input, head: head)
        checkResponse(DeviceListResponse.self, input, head: head)
        checkResponse(DeviceInfo.self, input, head: head)
        checkResponse(SendResponse.self, input, head: head)
        checkResponse(FetchInboxResponse.self, input, head: head)
        checkResponse(AckResponse.self, input, head: head)
        checkResponse(KeyStatus.self, input, head: head)
        checkResponse(FetchKeysResponse.self, input, head: head)
        checkResponse(FrankedReportResponse.self, input, head: head)
        checkResponse(ChatInfoResponse.self, input, head: head)
        checkResponse(ChatsResponse.self, input, head: head)
        checkResponse(ChatMembersResponse.self, input, head: head)
        checkResponse(JoinChatResponse.self, input, head: head)
        checkResponse(WireInvite.self, input, head: head)
        checkResponse(InvitesResponse.self, input, head: head)
        checkResponse(JoinRequestsResponse.self, input, head: head)
        checkResponse(PostResponse.self, input, head: head)
        checkResponse(ChatHistoryResponse.self, input, head: head)
        checkResponse(ChatUpdatesResponse.self, input, head: head)
        checkResponse(ChatListResponse.self, input, head: head)
        checkResponse(SyncChatsResponse.self, input, head: head)
        checkResponse(ReadPositionResponse.self, input, head: head)
        checkResponse(ViewsResponse.self, input, head: head)
    }

    /// Whether the input decodes as a response frame with this body.
    @discardableResult
    static func checkResponse<Body: Codable & Sendable>(_ type: Body.Type, _ input: Data, head: ServerFrameHead?) -> Bool {
        let frame = roundTrip(
            ResponseFrame<Body>.self, input,
            compare: { first, second in
                guard first.type == second.type, first.id == second.id, first.status == second.status,
                    first.error == second.error
                else { return false }
                switch (first.body, second.body) {
                case (nil, nil): return true
                case (let a?, let b?): return equalIfEquatable(a, b)
                default: return false
                }
            })
        guard let frame else { return false }
        require(
            head.map { $0.type == frame.type && $0.id == frame.id && $0.status == frame.status && $0.error == frame.error }
                ?? true,
            "a response frame decoded but its head did not match", input)
        return true
    }

    /// Decodes `input` as `T`; when that succeeds, checks the round trip and returns the value.
    static func roundTrip<T: Codable>(_ type: T.Type, _ input: Data, compare: (T, T) -> Bool) -> T? {
        guard let value = try? WireCodec.decode(T.self, from: input) else { return nil }
        let encoded: Data
        do {
            encoded = try WireCodec.encode(value)
        } catch {
            fail("\(T.self) decoded but does not encode: \(error)", input)
        }
        let again: T
        do {
            again = try WireCodec.decode(T.self, from: encoded)
        } catch {
            fail("\(T.self) re-encoded as \(text(encoded)) does not decode: \(error)", input)
        }
        require(compare(value, again), "\(T.self) re-encoded as \(text(encoded)) decodes to a different value", input)
        guard let reencoded = try? WireCodec.encode(again) else {
            fail("\(T.self) decoded from its own encoding does not encode", input)
        }
        require(
            reencoded == encoded, "\(T.self) encodes as \(text(encoded)), then as \(text(reencoded)) after a round trip",
            input)
        return value
    }

    /// `a == b` when the values are of one Equatable type; true otherwise (the byte comparison
    /// of the re-encodings covers those).
    static func equalIfEquatable(_ a: Any, _ b: Any) -> Bool {
        guard let a = a as? any Equatable else { return true }
        return isEqual(a, b)
    }

    static func isEqual<E: Equatable>(_ a: E, _ b: Any) -> Bool {
        guard let b = b as? E else { return false }
        return a == b
    }

    static func require(_ condition: Bool, _ message: @autoclosure () -> String, _ input: Data) {
        if !condition { fail(message(), input) }
    }

    /// Stops the run so libFuzzer saves the input as a crash.
    static func fail(_ message: String, _ input: Data) -> Never {
        fatalError("\(message)\ninput: \(text(input))")
    }

    static func text(_ data: Data) -> String {
        String(decoding: data.prefix(2_000), as: UTF8.self)
    }
}
