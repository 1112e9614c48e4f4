import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import HeliographServer
import Hummingbird
import HummingbirdTesting
import NIOCore
import PropertyBased
import Testing

/// Whatever a client sends, the server answers with a clear refusal and never with
/// `internal_error` (500): random bytes, random JSON, valid bodies with one thing broken, odd
/// path segments and query strings, over HTTP and over the WebSocket.
@Suite("No input produces a server error (property-based)")
struct NoServerErrorPropertyTests {
    /// Cases per property: enough to reach every route with every kind of input, few enough that
    /// the suite stays quick on a busy two-core machine.
    static let cases = 200

    // MARK: HTTP

    @Test("random bytes as the body of every route, with and without a token")
    func randomBytes() async throws {
        try await Self.withFixture { server, fixture in
            let routes = fixture.routes
            let bytes = Gen<UInt8>.value(in: 0...255).array(of: 0...400).map { Data($0) }
            // A leading `{` or `[` gets past the first byte, so the parser sees the rest.
            let prefix = Gen<String?>.element(of: ["", "", "{", "[", "{\"", "\u{FEFF}"])
            await propertyCheck(
                count: Self.cases, input: Gen.int(in: 0...(routes.count - 1)), prefix, bytes, Self.tokenChoice
            ) { index, prefix, bytes, tokenChoice in
                let route = routes[index]
                let body = Data((prefix ?? "").utf8) + bytes
                let response = try await Self.http(
                    server, route.method, route.path(route.segment), body: body, token: fixture.token(tokenChoice))
                Self.expectClearAnswer(response, "\(route.method) \(route.path(route.segment)) with \(body.count) random bytes")
            }
        }
    }

    @Test("random JSON values as the body of every route, with and without a token")
    func randomJSON() async throws {
        try await Self.withFixture { server, fixture in
            // Routes without a body refuse any body before decoding (413): the bytes property shows that.
            let routes = fixture.routes.filter { $0.validBody != nil }
            let json = Generator(run: { rng in RandomInput.body(using: &rng).text })
            await propertyCheck(count: Self.cases, input: Gen.int(in: 0...(routes.count - 1)), json, Self.tokenChoice) {
                index, json, tokenChoice in
                let route = routes[index]
                let response = try await Self.http(
                    server, route.method, route.path(route.segment), body: Data(json.utf8), token: fixture.token(tokenChoice))
                Self.expectClearAnswer(response, "\(route.method) \(route.path(route.segment)) with \(json)")
            }
        }
    }

    @Test("valid bodies with a field removed, retyped, a number out of range or base64 broken")
    func mutatedBodies() async throws {
        try await Self.withFixture { server, fixture in
            let routes = fixture.routes.filter { $0.validBody != nil }
            let mutated = Generator(run: { rng in
                let index = Int.random(in: 0..<routes.count, using: &rng)
                return (index, BodyMutation.apply(to: routes[index].validBody!, using: &rng).text)
            })
            await propertyCheck(count: Self.cases, input: mutated, Self.tokenChoice) { mutated, tokenChoice in
                let (index, json) = mutated
                let route = routes[index]
                let response = try await Self.http(
                    server, route.method, route.path(route.segment), body: Data(json.utf8), token: fixture.token(tokenChoice))
                Self.expectClearAnswer(response, "\(route.method) \(route.path(route.segment)) with \(json)")
            }
        }
    }

    @Test("random path segments and query strings")
    func randomPathsAndQueries() async throws {
        try await Self.withFixture { server, fixture in
            let routes = fixture.routes
            let segment = Generator(run: { rng in RandomInput.pathSegment(using: &rng) })
            let query = Generator(run: { rng in RandomInput.query(using: &rng) })
            await propertyCheck(
                count: Self.cases, input: Gen.int(in: 0...(routes.count - 1)), segment, query, Self.tokenChoice
            ) { index, segment, query, tokenChoice in
                let route = routes[index]
                let uri = route.path(segment) + query
                let body = route.validBody.map { Data($0.text.utf8) }
                let response = try await Self.http(server, route.method, uri, body: body, token: fixture.token(tokenChoice))
                Self.expectClearAnswer(response, "\(route.method) \(uri)")
            }
        }
    }

    // MARK: WebSocket

    @Test("random request frames on an authenticated socket; the socket stays usable")
    func randomFrames() async throws {
        try await Self.withFixture { server, fixture in
            let socket = try await server.connect(as: fixture.alice)
            let bodies = fixture.socketBodies
            let methods = APIMethod.allCases.map(\.rawValue)
            let frame = Generator(run: { rng -> (String, String) in
                let method =
                    Int.random(in: 0..<10, using: &rng) < 7
                    ? methods.randomElement(using: &rng)! : RandomInput.plainString(using: &rng)
                let body: String
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: body = RandomInput.value(depth: 3, using: &rng).text
                case 1 where bodies[method] != nil: body = BodyMutation.apply(to: bodies[method]!, using: &rng).text
                default: body = RandomInput.body(using: &rng).text
                }
                return (method, body)
            })
            await propertyCheck(count: Self.cases, input: frame) { frame in
                try await Self.exchange(socket, method: frame.0, body: frame.1)
            }
            let devices = try await socket.request(.listDevices, EmptyBody(), as: DeviceListResponse.self)
            #expect(devices.devices.contains { $0.deviceId == fixture.alice.profile.deviceID })
            await socket.close()
        }
    }

    // MARK: Helpers

    /// 0: no token, 1: a token the server never issued, otherwise the account's token (most
    /// often, since routes that need a session decode their body only after checking it).
    static let tokenChoice = Gen.int(in: 0...4)

    /// Runs `body` on a fresh server with one account (`alice`, registered and logged in) and a
    /// recipient (`bob_b`). Rate limits are off, so every request reaches the decoders.
    static func withFixture(_ body: @Sendable (TestServer, PropertyFixture) async throws -> Void) async throws {
        try await TestServer.run(configure: { configuration in
            configuration.registerAddressRate = 0
            configuration.loginAddressRate = 0
            configuration.loginAccountRate = 0
            configuration.authRate = 0
            configuration.accountSendRate = 0
            configuration.pairSendRate = 0
            configuration.fetchKeysAccountRate = 0
            configuration.fetchKeysDeviceRate = 0
        }) { server in
            let alice = try await server.register("alice")
            _ = try await server.register("bob_b", encryption: false)
            // A public group with one message, so chat routes reach their checks past "unknown chat".
            let group = try await alice.createPublicGroup(title: "Properties", username: "property_group")
            try await alice.post("first", to: group.chatId)
            try await body(server, PropertyFixture(alice: alice, chat: group.chatId.description))
        }
    }

    /// Sends one HTTP request with raw body bytes.
    static func http(
        _ server: TestServer, _ method: HTTPRequest.Method, _ uri: String, body: Data?, token: String?
    ) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        if body != nil { headers[.contentType] = "application/json" }
        return try await server.client.execute(
            uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(bytes: $0) })
    }

    /// Never a 500 (nor another 5xx but 503), and every 4xx is a JSON error with a code.
    static func expectClearAnswer(_ response: TestResponse, _ what: @autoclosure () -> String) {
        let status = response.status.code
        #expect(status < 500 || status == 503, "\(status) for \(what()): \(String(buffer: response.body))")
        if (400..<500).contains(status) {
            #expect(
                response.errorCode.map { !$0.isEmpty } == true,
                "\(status) without a JSON error for \(what()): \(String(buffer: response.body))")
        }
    }

    /// Sends one request frame and checks its answer. A frame whose routing fields do not parse
    /// (a duplicate key or a broken escape anywhere in it) has no id to answer by, so it gets an
    /// error frame instead of a response; the test decides which by decoding the head itself.
    static func exchange(_ socket: HeliographConnection, method: String, body: String) async throws {
        let methodJSON = String(decoding: try WireCodec.encode(method), as: UTF8.self)
        let frame = #"{"type":"request","id":"r1","method":\#(methodJSON),"body":\#(body)}"#
        let what = "\(method) with \(body)"
        if (try? WireCodec.decode(ClientFrameHead.self, from: Data(frame.utf8))) == nil {
            try await socket.sendRaw(frame)
            // Chat updates the earlier frames caused may be pushed in between.
            var event = await nextEvent(socket, timeout: .seconds(10))
            while let pushed = event, !pushed.isError { event = await nextEvent(socket, timeout: .seconds(10)) }
            guard case .error(let error) = event else {
                Issue.record("no error frame for \(what)")
                return
            }
            #expect(error.code != .internalError, "\(error.code): \(error.message) for \(what)")
            return
        }
        do {
            _ = try await socket.requestRaw(method: method, bodyJSON: body)
        } catch let error as HeliographError {
            #expect(error.code != .internalError, "\(error.code): \(error.message) for \(what)")
            #expect(!error.message.isEmpty, "an error without a message for \(what)")
        }
    }
}

extension ConnectionEvent {
    /// Whether this is an error frame.
    var isError: Bool {
        if case .error = self { return true }
        return false
    }
}

/// The account the properties use, and the routes with valid bodies built from its facts.
struct PropertyFixture: Sendable {
    let alice: HeliographClient
    /// A public group alice owns, with message 1.
    let chat: String

    func token(_ choice: Int) -> String? {
        switch choice {
        case 0: nil
        case 1: "hg_" + String(repeating: "A", count: 43)
        default: alice.profile.token
        }
    }

    /// One HTTP route: its method, its path with the variable segment filled in, the segment
    /// that makes sense there, and a valid body (nil for routes that take none).
    struct Route: Sendable {
        let method: HTTPRequest.Method
        let path: @Sendable (String) -> String
        let segment: String
        let validBody: RawJSON?
    }

    var routes: [Route] {
        let unknownDevice = UUID().uuidString.lowercased()
        let own = alice.profile
        func fixed(_ path: String) -> @Sendable (String) -> String { { _ in path } }
        return [
            Route(method: .post, path: fixed("/v1/accounts"), segment: "", validBody: ValidBodies.register),
            Route(method: .get, path: { "/v1/accounts/\($0)" }, segment: own.username, validBody: nil),
            Route(method: .post, path: fixed("/v1/auth/challenge"), segment: "", validBody: ValidBodies.challenge),
            Route(method: .post, path: fixed("/v1/auth/login"), segment: "", validBody: ValidBodies.login),
            Route(method: .get, path: fixed("/v1/devices"), segment: "", validBody: nil),
            Route(
                method: .delete, path: { "/v1/devices/\($0)" }, segment: unknownDevice,
                validBody: ValidBodies.revoke(unknownDevice)),
            Route(
                method: .post, path: { "/v1/devices/\($0)/approve" }, segment: unknownDevice,
                validBody: ValidBodies.approve(unknownDevice)),
            Route(method: .post, path: fixed("/v1/messages"), segment: "", validBody: ValidBodies.send),
            Route(method: .get, path: { _ in "/v1/inbox?after=0&limit=10" }, segment: "", validBody: nil),
            Route(method: .post, path: fixed("/v1/inbox/ack"), segment: "", validBody: ValidBodies.ack),
            Route(method: .put, path: fixed("/v1/keys"), segment: "", validBody: ValidBodies.publishKeys),
            Route(method: .get, path: fixed("/v1/keys"), segment: "", validBody: nil),
            Route(
                method: .post, path: { "/v1/keys/\($0)" }, segment: "bob_b",
                validBody: .object([("devices", .array([.string(unknownDevice)]))])),
            Route(
                method: .post, path: fixed("/v1/reports/verify"), segment: "",
                validBody: ValidBodies.report(own.accountID.description, own.deviceID.description)),
        ] + chatRoutes + mediaRoutes
    }

    /// The upload and blob routes, on an upload id and a blob name no one has.
    var mediaRoutes: [Route] {
        func fixed(_ path: String) -> @Sendable (String) -> String { { _ in path } }
        let upload = UUID().uuidString.lowercased()
        let blob = String(repeating: "ab", count: 32)
        return [
            Route(
                method: .post, path: fixed("/v1/uploads"), segment: "",
                validBody: .object([
                    ("size", .number("1000")), ("sha256", .string(blob)), ("purpose", .string("public")),
                    ("mediaType", .string("image/png")),
                ])),
            Route(method: .get, path: { "/v1/uploads/\($0)" }, segment: upload, validBody: nil),
            Route(method: .put, path: { "/v1/uploads/\($0)/parts/0" }, segment: upload, validBody: .object([])),
            Route(method: .post, path: { "/v1/uploads/\($0)/finish" }, segment: upload, validBody: .object([])),
            Route(method: .delete, path: { "/v1/uploads/\($0)" }, segment: upload, validBody: nil),
            Route(method: .get, path: { "/v1/blobs/\($0)" }, segment: blob, validBody: nil),
            Route(
                method: .post, path: fixed("/v1/attachments/release"), segment: "",
                validBody: .object([("messageId", .string("m-9"))])),
        ]
    }

    /// The group and channel routes, on the fixture's group.
    var chatRoutes: [Route] {
        let chat = self.chat
        func fixed(_ path: String) -> @Sendable (String) -> String { { _ in path } }
        func inChat(_ rest: String) -> @Sendable (String) -> String { { "/v1/chats/\($0)\(rest)" } }
        let message = RawJSON.object([("messageId", .string("m-2")), ("seq", .number("1"))])
        return [
            Route(method: .post, path: fixed("/v1/chats"), segment: "", validBody: ValidBodies.createChat),
            Route(method: .get, path: fixed("/v1/chats"), segment: "", validBody: nil),
            Route(method: .get, path: { "/v1/chats/search?q=\($0)" }, segment: "properties", validBody: nil),
            Route(method: .get, path: { "/v1/chats/by-name/\($0)" }, segment: "property_group", validBody: nil),
            Route(method: .post, path: fixed("/v1/chats/join"), segment: "", validBody: .object([("invite", .string("abc"))])),
            Route(
                method: .post, path: fixed("/v1/chats/sync"), segment: "",
                validBody: .object([("positions", .object([(chat, .number("0"))]))])),
            Route(method: .get, path: inChat(""), segment: chat, validBody: nil),
            Route(
                method: .patch, path: inChat(""), segment: chat,
                validBody: .object([("title", .string("Renamed")), ("slowModeSeconds", .number("5"))])),
            Route(method: .get, path: { "/v1/chats/\($0)/members?limit=5&admins=false" }, segment: chat, validBody: nil),
            Route(
                method: .post, path: inChat("/members"), segment: chat,
                validBody: .object([("usernames", .array([.string("bob_b")]))])),
            Route(method: .delete, path: { "/v1/chats/\($0)/members/bob_b" }, segment: chat, validBody: nil),
            Route(method: .post, path: inChat("/leave"), segment: chat, validBody: .object([])),
            Route(
                method: .post, path: inChat("/bans"), segment: chat,
                validBody: .object([("username", .string("bob_b")), ("until", .number("99999999999999"))])),
            Route(method: .delete, path: { "/v1/chats/\($0)/bans/bob_b" }, segment: chat, validBody: nil),
            Route(
                method: .put, path: { "/v1/chats/\($0)/admins/bob_b" }, segment: chat,
                validBody: .object([("rights", .array([.string("pin")]))])),
            Route(method: .post, path: inChat("/owner"), segment: chat, validBody: .object([("username", .string("bob_b"))])),
            Route(
                method: .post, path: inChat("/membership"), segment: chat,
                validBody: .object([("change", ValidBodies.base64(200))])),
            Route(
                method: .post, path: inChat("/invites"), segment: chat,
                validBody: .object([("usageLimit", .number("2")), ("requiresApproval", .bool(true))])),
            Route(method: .get, path: inChat("/invites"), segment: chat, validBody: nil),
            Route(method: .delete, path: { "/v1/chats/\($0)/invites/abc" }, segment: chat, validBody: nil),
            Route(method: .get, path: inChat("/requests"), segment: chat, validBody: nil),
            Route(
                method: .post, path: { "/v1/chats/\($0)/requests/bob_b" }, segment: chat,
                validBody: .object([("approve", .bool(false))])),
            Route(
                method: .post, path: inChat("/messages"), segment: chat,
                validBody: .object([("messageId", .string("m-1")), ("text", .string("hi")), ("replyTo", .number("1"))])),
            Route(method: .get, path: { "/v1/chats/\($0)/messages?before=5&limit=3" }, segment: chat, validBody: nil),
            Route(
                method: .put, path: { "/v1/chats/\($0)/messages/1" }, segment: chat,
                validBody: .object([("messageId", .string("m-3")), ("text", .string("edited"))])),
            Route(
                method: .delete, path: { "/v1/chats/\($0)/messages/1" }, segment: chat,
                validBody: .object([("messageId", .string("m-4"))])),
            Route(method: .post, path: { "/v1/chats/\($0)/messages/1/pin" }, segment: chat, validBody: message),
            Route(
                method: .put, path: { "/v1/chats/\($0)/messages/1/reaction" }, segment: chat,
                validBody: .object([("messageId", .string("m-5")), ("emoji", .string("👍"))])),
            Route(method: .get, path: { "/v1/chats/\($0)/updates?after=0&limit=5" }, segment: chat, validBody: nil),
            Route(method: .post, path: inChat("/read"), segment: chat, validBody: .object([("seq", .number("1"))])),
            Route(method: .put, path: inChat("/mute"), segment: chat, validBody: .object([("muted", .bool(true))])),
            Route(
                method: .post, path: inChat("/views"), segment: chat,
                validBody: .object([("seqs", .array([.number("1"), .number("2")]))])),
        ]
    }

    /// A valid body per WebSocket method (never one that revokes the socket's own device).
    var socketBodies: [String: RawJSON] {
        let unknownDevice = UUID().uuidString.lowercased()
        let own = alice.profile
        return [
            "register": ValidBodies.register, "lookupAccount": ValidBodies.challenge, "challenge": ValidBodies.challenge,
            "login": ValidBodies.login, "authenticate": .object([("token", .string(own.token))]),
            "listDevices": .object([]), "revokeDevice": ValidBodies.revoke(unknownDevice),
            "approveDevice": ValidBodies.approve(unknownDevice), "send": ValidBodies.send,
            "fetchInbox": .object([("after", .number("0")), ("limit", .number("10"))]), "ack": ValidBodies.ack,
            "publishKeys": ValidBodies.publishKeys, "keyStatus": .object([]),
            "fetchKeys": .object([("username", .string("bob_b")), ("devices", .array([.string(unknownDevice)]))]),
            "verifyReport": ValidBodies.report(own.accountID.description, own.deviceID.description),
        ].merging(chatSocketBodies) { first, _ in first }
    }

    /// Valid bodies of the group and channel methods, on the fixture's group.
    var chatSocketBodies: [String: RawJSON] {
        let chat = RawJSON.string(self.chat)
        let ref = RawJSON.object([("chatId", chat)])
        let member = RawJSON.object([("chatId", chat), ("username", .string("bob_b"))])
        let message = RawJSON.object([("chatId", chat), ("messageId", .string("m-9")), ("seq", .number("1"))])
        return [
            "createChat": ValidBodies.createChat, "chatInfo": ref, "leaveChat": ref, "listInvites": ref,
            "joinRequests": ref, "chatList": .object([]),
            "updateChat": .object([("chatId", chat), ("about", .string("about"))]),
            "resolveChat": .object([("username", .string("property_group"))]),
            "searchChats": .object([("query", .string("prop")), ("limit", .number("3"))]),
            "chatMembers": .object([("chatId", chat), ("limit", .number("2"))]),
            "addMembers": .object([("chatId", chat), ("usernames", .array([.string("bob_b")]))]),
            "removeMember": member, "unbanMember": member, "transferOwnership": member,
            "banMember": .object([("chatId", chat), ("username", .string("bob_b"))]),
            "setAdmin": .object([("chatId", chat), ("username", .string("bob_b")), ("rights", .array([.string("ban")]))]),
            "changeMembership": .object([("chatId", chat), ("change", ValidBodies.base64(150))]),
            "joinChat": .object([("username", .string("property_group"))]),
            "createInvite": .object([("chatId", chat), ("expiresAt", .number("99999999999999"))]),
            "revokeInvite": .object([("chatId", chat), ("code", .string("abc"))]),
            "decideJoinRequest": .object([("chatId", chat), ("username", .string("bob_b")), ("approve", .bool(true))]),
            "post": .object([("chatId", chat), ("messageId", .string("m-8")), ("text", .string("hello"))]),
            "editMessage": .object([
                ("chatId", chat), ("messageId", .string("m-7")), ("seq", .number("1")), ("text", .string("x")),
            ]),
            "deleteMessage": message, "pinMessage": message,
            "react": .object([("chatId", chat), ("messageId", .string("m-6")), ("seq", .number("1")), ("emoji", .string("🔥"))]),
            "chatHistory": .object([("chatId", chat), ("limit", .number("5"))]),
            "chatUpdates": .object([("chatId", chat), ("after", .number("0"))]),
            "syncChats": .object([("positions", .object([(self.chat, .number("1"))]))]),
            "markRead": .object([("chatId", chat), ("seq", .number("1"))]),
            "muteChat": .object([("chatId", chat), ("muted", .bool(false))]),
            "recordViews": .object([("chatId", chat), ("seqs", .array([.number("1")]))]),
        ]
    }
}

/// Well-formed bodies for each method, the starting points of the mutations.
enum ValidBodies {
    static func base64(_ count: Int, _ byte: UInt8 = 7) -> RawJSON {
        .string(Data(repeating: byte, count: count).base64EncodedString())
    }
    static func uuid() -> RawJSON { .string(UUID().uuidString.lowercased()) }

    static let register = RawJSON.object([("username", .string("carol_c")), ("identityKey", base64(32))])
    static let challenge = RawJSON.object([("username", .string("alice"))])
    static let login = RawJSON.object([
        ("challengeId", uuid()), ("deviceName", .string("phone")), ("signature", base64(64)),
        ("agreementKey", base64(32, 9)),
        (
            "recovery",
            .object([("newIdentityKey", base64(32)), ("oldSignature", base64(64)), ("newSignature", base64(64))])
        ),
    ])
    static func deviceList(_ device: String) -> RawJSON {
        .object([
            ("version", .number("2")),
            ("devices", .array([.object([("deviceId", .string(device)), ("agreementKey", base64(32))])])),
            ("revoked", .array([uuid()])), ("signature", base64(64)),
        ])
    }
    static func revoke(_ device: String) -> RawJSON {
        .object([
            ("deviceId", .string(device)), ("deviceList", deviceList(UUID().uuidString.lowercased())),
            (
                "rotation",
                .object([("newIdentityKey", base64(32)), ("oldSignature", base64(64)), ("newSignature", base64(64))])
            ),
        ])
    }
    static func approve(_ device: String) -> RawJSON {
        .object([("deviceId", .string(device)), ("deviceList", deviceList(device))])
    }
    static let send = RawJSON.object([
        ("messageId", .string("m-1")), ("to", .string("bob_b")), ("payload", base64(12)),
        ("devices", .array([uuid()])),
        ("copies", .array([.object([("deviceId", uuid()), ("payload", base64(20))])])),
        ("frankingCommitment", base64(32)),
    ])
    static let ack = RawJSON.object([("seq", .number("0"))])
    static let createChat = RawJSON.object([
        ("kind", .string("public_group")), ("title", .string("Made by a property")), ("slowModeSeconds", .number("0")),
        ("members", .array([.string("bob_b")])), ("about", .string("")),
    ])
    static func prekey(_ kind: Int, _ size: Int) -> RawJSON {
        .object([("kind", .number("\(kind)")), ("id", .number("1")), ("publicKey", base64(size, 5)), ("signature", base64(64))])
    }
    static let publishKeys = RawJSON.object([
        ("agreementKey", base64(32, 9)), ("agreementSignature", base64(64)), ("signedPrekey", prekey(1, 32)),
        ("lastResortPrekey", prekey(4, 1184)), ("oneTimePrekeys", .array([prekey(2, 32), prekey(3, 1184)])),
        ("deviceList", deviceList(UUID().uuidString.lowercased())), ("replaceOneTimePrekeys", .bool(false)),
    ])
    static func report(_ account: String, _ device: String) -> RawJSON {
        .object([
            ("messageId", .string("m-1")), ("senderAccountId", .string(account)), ("senderDeviceId", uuid()),
            ("recipientDeviceId", .string(device)), ("serverTime", .number("1700000000000")), ("body", base64(16)),
            ("frankingKey", base64(32)), ("frankingTag", base64(37)),
        ])
    }
}

/// A JSON value kept as text pieces, so that tests can write what a JSON encoder never would:
/// duplicate keys, escapes of lone surrogates, numbers out of every integer range.
indirect enum RawJSON: Sendable {
    case null
    case bool(Bool)
    /// The number's literal text.
    case number(String)
    /// A string from its characters (escaped when written).
    case string(String)
    /// A string written exactly as given between the quotes (escapes included).
    case rawString(String)
    case array([RawJSON])
    case object([(String, RawJSON)])

    var text: String {
        switch self {
        case .null: "null"
        case .bool(let value): value ? "true" : "false"
        case .number(let literal): literal
        case .string(let value): Self.quoted(value)
        case .rawString(let literal): "\"\(literal)\""
        case .array(let values): "[" + values.map(\.text).joined(separator: ",") + "]"
        case .object(let members): "{" + members.map { Self.quoted($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
        }
    }

    static func quoted(_ value: String) -> String {
        var result = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    /// Paths (member or element indices) to every value inside, the root excluded.
    var paths: [[Int]] {
        switch self {
        case .array(let values):
            values.indices.flatMap { index in [[index]] + values[index].paths.map { [index] + $0 } }
        case .object(let members):
            members.indices.flatMap { index in [[index]] + members[index].1.paths.map { [index] + $0 } }
        default: []
        }
    }

    /// The value at `path`.
    func value(at path: [Int]) -> RawJSON {
        guard let first = path.first else { return self }
        switch self {
        case .array(let values): return values[first].value(at: Array(path.dropFirst()))
        case .object(let members): return members[first].1.value(at: Array(path.dropFirst()))
        default: return self
        }
    }

    /// A copy with the value at `path` replaced by `change`'s result, or removed when it is nil.
    func replacing(_ path: [Int], with change: (RawJSON) -> RawJSON?) -> RawJSON {
        guard let first = path.first else { return change(self) ?? .null }
        let rest = Array(path.dropFirst())
        switch self {
        case .array(var values):
            if rest.isEmpty, change(values[first]) == nil {
                values.remove(at: first)
            } else {
                values[first] = values[first].replacing(rest, with: change)
            }
            return .array(values)
        case .object(var members):
            if rest.isEmpty, change(members[first].1) == nil {
                members.remove(at: first)
            } else {
                members[first].1 = members[first].1.replacing(rest, with: change)
            }
            return .object(members)
        default:
            return self
        }
    }
}

/// Random JSON: values of every type nested a few levels, keys the API uses and keys it does
/// not, and strings with the Unicode that breaks naive text handling.
enum RandomInput {
    static let fieldNames = [
        "username", "identityKey", "challengeId", "deviceName", "signature", "agreementKey", "recovery", "token", "after",
        "receive", "deviceId", "deviceList", "rotation", "version", "devices", "revoked", "messageId", "to", "payload",
        "copies", "frankingCommitment", "seq", "limit", "kind", "id", "publicKey", "signedPrekey", "lastResortPrekey",
        "oneTimePrekeys", "replaceOneTimePrekeys", "senderAccountId", "senderDeviceId", "recipientDeviceId",
        "serverTime", "body", "frankingKey", "frankingTag", "type", "method",
    ]

    /// Pieces of odd text: escapes (a lone surrogate among them), controls, combining marks,
    /// direction overrides, a BOM, noncharacters, emoji sequences, characters that change
    /// length when case-folded.
    static let oddPieces: [RawJSON] = [
        .rawString("\\u0000"), .rawString("\\ud800"), .rawString("\\udfff"), .rawString("\\ud83d\\ude00"),
        .rawString("\\\"\\\\\\/\\b\\f\\n\\r\\t"), .string("é"), .string("e\u{301}"), .string("\u{202E}abc"),
        .string("\u{200D}"), .string("\u{FEFF}"), .string("\u{FFFF}"), .string("\u{10FFFF}"), .string("😀"),
        .string("👩‍👩‍👧"), .string("ß"), .string("İ"), .string("ﬃ"), .string("\u{0085}\u{2028}\u{2029}"),
        .string("日本語"), .string("alice"), .string("bob_b"), .string(""), .string("AAAA"), .string("=="),
        .string(String(repeating: "x", count: 300)),
    ]

    static let edgeNumbers = [
        "0", "-0", "1", "-1", "1.5", "-1.5", "1e400", "-1e400", "1e-400", "1E2", "2147483647", "2147483648",
        "-2147483649", "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "-9223372036854775809", "18446744073709551616", "123456789012345678901234567890", "0.1", "5e-324",
        "1.7976931348623157e308",
    ]

    static func plainString(using rng: inout some RandomNumberGenerator) -> String {
        let count = Int.random(in: 0...12, using: &rng)
        var text = ""
        for _ in 0..<count {
            let ranges: [ClosedRange<UInt32>] = [0x20...0x7E, 0xA0...0x2FFF, 0xE000...0xFFFD, 0x1F300...0x1FAFF, 0x0...0x1F]
            let range = ranges.randomElement(using: &rng)!
            if let scalar = Unicode.Scalar(UInt32.random(in: range, using: &rng)) { text.unicodeScalars.append(scalar) }
        }
        return text
    }

    static func string(using rng: inout some RandomNumberGenerator) -> RawJSON {
        switch Int.random(in: 0..<3, using: &rng) {
        case 0: return .string(plainString(using: &rng))
        case 1: return oddPieces.randomElement(using: &rng)!
        default:
            // Several odd pieces in one string.
            let pieces = (0..<Int.random(in: 2...4, using: &rng)).map { _ in oddPieces.randomElement(using: &rng)! }
            return .rawString(pieces.map { String($0.text.dropFirst().dropLast()) }.joined())
        }
    }

    static func number(using rng: inout some RandomNumberGenerator) -> RawJSON {
        switch Int.random(in: 0..<3, using: &rng) {
        case 0: .number(edgeNumbers.randomElement(using: &rng)!)
        case 1: .number("\(Int64.random(in: .min ... .max, using: &rng))")
        default: .number("\(Double.random(in: -1e6...1e6, using: &rng))")
        }
    }

    static func key(using rng: inout some RandomNumberGenerator) -> String {
        Int.random(in: 0..<3, using: &rng) < 2 ? fieldNames.randomElement(using: &rng)! : plainString(using: &rng)
    }

    /// Any JSON value, containers nested at most `depth` levels.
    static func value(depth: Int, using rng: inout some RandomNumberGenerator) -> RawJSON {
        switch Int.random(in: 0..<(depth > 0 ? 8 : 5), using: &rng) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2: return number(using: &rng)
        case 3, 4: return string(using: &rng)
        case 5: return .array((0..<Int.random(in: 0...4, using: &rng)).map { _ in value(depth: depth - 1, using: &rng) })
        default: return object(depth: depth, using: &rng)
        }
    }

    static func object(depth: Int, using rng: inout some RandomNumberGenerator) -> RawJSON {
        var members = (0..<Int.random(in: 0...6, using: &rng)).map { _ in
            (key(using: &rng), value(depth: depth - 1, using: &rng))
        }
        // Now and then a key twice, which the strict decoder must refuse.
        if let first = members.first, Int.random(in: 0..<6, using: &rng) == 0 { members.append(first) }
        return .object(members)
    }

    /// A request body: mostly objects (what every route expects), sometimes any value.
    static func body(using rng: inout some RandomNumberGenerator) -> RawJSON {
        Int.random(in: 0..<4, using: &rng) < 3 ? object(depth: 3, using: &rng) : value(depth: 3, using: &rng)
    }

    /// A path segment: odd Unicode percent-encoded, broken percent escapes, dots, very long.
    static func pathSegment(using rng: inout some RandomNumberGenerator) -> String {
        let fixed = [
            "", ".", "..", "%", "%zz", "%C3%28", "%00", "%2F", "%ED%A0%80", "alice", "ALICE", "bob_b",
            UUID().uuidString, UUID().uuidString.lowercased(), "00000000-0000-0000-0000-000000000000",
            String(repeating: "a", count: 2000), "a%20b", "%F0%9F%98%80",
        ]
        if Int.random(in: 0..<2, using: &rng) == 0 { return fixed.randomElement(using: &rng)! }
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/;")
        return plainString(using: &rng).addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    /// A query string: `after` and `limit` with odd values, repeated, empty or unknown.
    static func query(using rng: inout some RandomNumberGenerator) -> String {
        let values = edgeNumbers + ["", "abc", "%00", "%", "0x10", " 1", "1 ", "+1", "１"]
        var parts: [String] = []
        for _ in 0..<Int.random(in: 0...4, using: &rng) {
            let name = ["after", "limit", "after", "limit", "x", ""].randomElement(using: &rng)!
            let value = values.randomElement(using: &rng)!
            parts.append(
                "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&+"))) ?? "")"
            )
        }
        if parts.isEmpty { return Int.random(in: 0..<2, using: &rng) == 0 ? "" : "?" }
        return "?" + parts.joined(separator: "&")
    }
}

/// One to three changes to a valid body: a value removed, its type changed, a number out of
/// range, a base64 string broken, an unknown or repeated key added.
enum BodyMutation {
    static func apply(to body: RawJSON, using rng: inout some RandomNumberGenerator) -> RawJSON {
        var result = body
        // Mostly one change, so the rest of the body stays valid and the changed field is what is checked.
        let changes = [1, 1, 1, 1, 2, 2, 3].randomElement(using: &rng)!
        for _ in 0..<changes {
            let paths = result.paths
            guard let path = paths.randomElement(using: &rng) else {
                result = RandomInput.body(using: &rng)
                continue
            }
            let target = result.value(at: path)
            switch Int.random(in: 0..<5, using: &rng) {
            case 0:
                result = result.replacing(path) { _ in nil }
            case 1:
                let replacement = RandomInput.value(depth: 2, using: &rng)
                result = result.replacing(path) { _ in replacement }
            case 2:
                let number = RawJSON.number(RandomInput.edgeNumbers.randomElement(using: &rng)!)
                result = result.replacing(path) { _ in number }
            case 3:
                if case .string(let text) = target {
                    let broken = corrupt(text, using: &rng)
                    result = result.replacing(path) { _ in broken }
                } else {
                    result = result.replacing(path) { _ in .string("") }
                }
            default:
                let key = RandomInput.fieldNames.randomElement(using: &rng)!
                let value = RandomInput.value(depth: 1, using: &rng)
                if case .object(var members) = result {
                    members.append((key, value))
                    result = .object(members)
                }
            }
        }
        return result
    }

    /// A string (usually base64) made non-canonical or not base64 at all.
    static func corrupt(_ text: String, using rng: inout some RandomNumberGenerator) -> RawJSON {
        let middle = text.index(text.startIndex, offsetBy: text.count / 2)
        let choices: [RawJSON] = [
            .string(text + "="), .string("=" + text), .string(String(text.dropLast())), .string(String(text.dropFirst())),
            .string(text.replacingCharacters(in: middle..<middle, with: "!")),
            .rawString(text.replacingCharacters(in: middle..<middle, with: "\\n")),
            .string(text.replacingOccurrences(of: "=", with: "")), .string(text + text), .string("===="),
            .string(text.replacingCharacters(in: middle..<middle, with: "é")), .string(text.lowercased()),
            .string(text.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-") + "-_"),
            .string(String(repeating: "A", count: 6000)), .rawString("\\ud800"),
        ]
        return choices.randomElement(using: &rng)!
    }
}
