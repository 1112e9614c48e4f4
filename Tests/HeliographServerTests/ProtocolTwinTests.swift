import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOWebSocket
import Testing
import WSClient

/// The protocol as docs/protocol.md describes it, checked from the outside: every request is
/// written as JSON text, the way a client written from the document alone would send it.
@Suite("Protocol: HTTP and WebSocket twins")
struct ProtocolTwinTests {
    @Test("every method answers the same status and body shape over HTTP and over the WebSocket")
    func twins() async throws {
        try await TestServer.run { server in
            let httpKey = IdentityKeyPair()
            let socketKey = IdentityKeyPair()
            try await withRawSocket(server) { socket in
                // register (201, documented), and its refusals.
                let registered = try await expectTwins(
                    "register", status: 201,
                    http: try await server.answer(.post, "/v1/accounts", json: register("twin_http", httpKey)),
                    socket: try await socket.request("register", register("twin_sock", socketKey)))
                try await expectTwins(
                    "register a taken name", status: 409, code: "username_taken",
                    http: try await server.answer(.post, "/v1/accounts", json: register("TWIN_SOCK", httpKey)),
                    socket: try await socket.request("register", register("Twin_Http", socketKey)))
                try await expectTwins(
                    "register an invalid name", status: 400, code: "invalid_username",
                    http: try await server.answer(.post, "/v1/accounts", json: register("9lives", httpKey)),
                    socket: try await socket.request("register", register("9lives", socketKey)))
                try await expectTwins(
                    "register with a short key", status: 400, code: "invalid_key",
                    http: try await server.answer(.post, "/v1/accounts", json: #"{"username":"short_key","identityKey":"AAAA"}"#),
                    socket: try await socket.request("register", #"{"username":"short_key","identityKey":"AAAA"}"#))
                let httpAccount = try #require(registered.http.value["accountId"]?.string)
                let socketAccount = try #require(registered.socket.value["accountId"]?.string)

                // lookupAccount
                try await expectTwins(
                    "lookupAccount", status: 200,
                    http: try await server.answer(.get, "/v1/accounts/twin_sock"),
                    socket: try await socket.request("lookupAccount", #"{"username":"twin_http"}"#))
                try await expectTwins(
                    "lookupAccount of nobody", status: 404, code: "unknown_account",
                    http: try await server.answer(.get, "/v1/accounts/nobody_here"),
                    socket: try await socket.request("lookupAccount", #"{"username":"nobody_here"}"#))

                // challenge and login (201, documented).
                let challenges = try await expectTwins(
                    "challenge", status: 200,
                    http: try await server.answer(.post, "/v1/auth/challenge", json: #"{"username":"twin_http"}"#),
                    socket: try await socket.request("challenge", #"{"username":"twin_sock"}"#))
                let httpLogin = try login(challenges.http.value, account: httpAccount, key: httpKey, server: server)
                let socketLogin = try login(challenges.socket.value, account: socketAccount, key: socketKey, server: server)
                let logins = try await expectTwins(
                    "login", status: 201,
                    http: try await server.answer(.post, "/v1/auth/login", json: httpLogin),
                    socket: try await socket.request("login", socketLogin))
                try await expectTwins(
                    "login with a spent challenge", status: 401, code: "challenge_expired",
                    http: try await server.answer(.post, "/v1/auth/login", json: httpLogin),
                    socket: try await socket.request("login", socketLogin))
                let httpToken = try #require(logins.http.value["token"]?.string)
                let socketToken = try #require(logins.socket.value["token"]?.string)
                let httpDevice = try #require(logins.http.value["deviceId"]?.string)
                let socketDevice = try #require(logins.socket.value["deviceId"]?.string)

                // A device id no account has, written as the document writes ids.
                let stranger = UUID().uuidString.lowercased()

                // Before authenticating, session methods are refused alike.
                try await expectTwins(
                    "listDevices without a session", status: 401, code: "unauthenticated",
                    http: try await server.answer(.get, "/v1/devices"),
                    socket: try await socket.request("listDevices", "{}"))
                let session = try await socket.request(
                    "authenticate", #"{"token":"\#(socketToken)","after":0,"receive":false}"#)
                #expect(session.status == 200)
                #expect(session.value.shape == #"{accountId:string,deviceId:string,lastSequence:number,username:string}"#)

                // listDevices
                try await expectTwins(
                    "listDevices", status: 200,
                    http: try await server.answer(.get, "/v1/devices", token: httpToken),
                    socket: try await socket.request("listDevices", "{}"))

                // send: accepted, retried, reused for other content, and refused.
                try await expectTwins(
                    "send", status: 200,
                    http: try await server.answer(.post, "/v1/messages", json: send("twin-1", to: "twin_sock"), token: httpToken),
                    socket: try await socket.request("send", send("twin-1", to: "twin_http")))
                let retried = try await expectTwins(
                    "send again (a retry)", status: 200,
                    http: try await server.answer(.post, "/v1/messages", json: send("twin-1", to: "twin_sock"), token: httpToken),
                    socket: try await socket.request("send", send("twin-1", to: "twin_http")))
                #expect(retried.http.value["duplicate"] == .bool(true))
                #expect(retried.socket.value["duplicate"] == .bool(true))
                try await expectTwins(
                    "send a used id with other content", status: 409, code: "idempotency_conflict",
                    http: try await server.answer(
                        .post, "/v1/messages", json: send("twin-1", to: "twin_sock", payload: "b3RoZXI="), token: httpToken),
                    socket: try await socket.request("send", send("twin-1", to: "twin_http", payload: "b3RoZXI=")))
                try await expectTwins(
                    "send to nobody", status: 404, code: "unknown_account",
                    http: try await server.answer(
                        .post, "/v1/messages", json: send("twin-2", to: "nobody_here"), token: httpToken),
                    socket: try await socket.request("send", send("twin-2", to: "nobody_here")))
                try await expectTwins(
                    "send with an invalid message id", status: 400, code: "invalid_message_id",
                    http: try await server.answer(
                        .post, "/v1/messages", json: send("no spaces", to: "twin_sock"), token: httpToken),
                    socket: try await socket.request("send", send("no spaces", to: "twin_http")))
                try await expectTwins(
                    "send with a stale device list", status: 409, code: "device_list_mismatch",
                    http: try await server.answer(
                        .post, "/v1/messages",
                        json: #"{"messageId":"twin-3","to":"twin_sock","devices":["\#(stranger)"],"payload":"aGk="}"#,
                        token: httpToken),
                    socket: try await socket.request(
                        "send", #"{"messageId":"twin-3","to":"twin_http","devices":["\#(stranger)"],"payload":"aGk="}"#))

                // fetchInbox with its documented defaults (after 0, limit 100), and a bad limit.
                let inboxes = try await expectTwins(
                    "fetchInbox with defaults", status: 200,
                    http: try await server.answer(.get, "/v1/inbox", token: httpToken),
                    socket: try await socket.request("fetchInbox", "{}"))
                #expect(inboxes.http.value["envelopes"]?.array?.count == 1)
                #expect(inboxes.socket.value["envelopes"]?.array?.count == 1)
                try await expectTwins(
                    "fetchInbox with after and limit", status: 200,
                    http: try await server.answer(.get, "/v1/inbox?after=1&limit=500", token: httpToken),
                    socket: try await socket.request("fetchInbox", #"{"after":1,"limit":500}"#))
                try await expectTwins(
                    "fetchInbox with a limit above 500", status: 400, code: "bad_request",
                    http: try await server.answer(.get, "/v1/inbox?limit=501", token: httpToken),
                    socket: try await socket.request("fetchInbox", #"{"limit":501}"#))

                // ack
                try await expectTwins(
                    "ack", status: 200,
                    http: try await server.answer(.post, "/v1/inbox/ack", json: #"{"seq":1}"#, token: httpToken),
                    socket: try await socket.request("ack", #"{"seq":1}"#))
                try await expectTwins(
                    "ack of a number never sent", status: 400, code: "ack_out_of_range",
                    http: try await server.answer(.post, "/v1/inbox/ack", json: #"{"seq":9}"#, token: httpToken),
                    socket: try await socket.request("ack", #"{"seq":9}"#))

                // publishKeys, keyStatus, fetchKeys
                try await expectTwins(
                    "publishKeys with nothing", status: 200,
                    http: try await server.answer(.put, "/v1/keys", json: "{}", token: httpToken),
                    socket: try await socket.request("publishKeys", "{}"))
                try await expectTwins(
                    "publishKeys without the first upload's keys", status: 400, code: "bad_request",
                    http: try await server.answer(.put, "/v1/keys", json: #"{"agreementKey":"AAAA"}"#, token: httpToken),
                    socket: try await socket.request("publishKeys", #"{"agreementKey":"AAAA"}"#))
                try await expectTwins(
                    "keyStatus", status: 200,
                    http: try await server.answer(.get, "/v1/keys", token: httpToken),
                    socket: try await socket.request("keyStatus", "{}"))
                let keys = try await expectTwins(
                    "fetchKeys", status: 200,
                    http: try await server.answer(.post, "/v1/keys/twin_sock", token: httpToken),
                    socket: try await socket.request("fetchKeys", #"{"username":"twin_http"}"#))
                #expect(keys.http.value["withoutKeys"] == .array([.string(socketDevice)]))
                #expect(keys.socket.value["withoutKeys"] == .array([.string(httpDevice)]))
                try await expectTwins(
                    "fetchKeys naming a device the account does not have", status: 404, code: "unknown_device",
                    http: try await server.answer(
                        .post, "/v1/keys/twin_sock", json: #"{"devices":["\#(stranger)"]}"#, token: httpToken),
                    socket: try await socket.request("fetchKeys", #"{"username":"twin_http","devices":["\#(stranger)"]}"#))

                // verifyReport
                try await expectTwins(
                    "verifyReport of a message never sent", status: 200,
                    http: try await server.answer(
                        .post, "/v1/reports/verify",
                        json: report(sender: socketAccount, senderDevice: socketDevice, recipientDevice: httpDevice),
                        token: httpToken),
                    socket: try await socket.request(
                        "verifyReport", report(sender: httpAccount, senderDevice: httpDevice, recipientDevice: socketDevice)))
                try await expectTwins(
                    "verifyReport for another device", status: 403, code: "forbidden",
                    http: try await server.answer(
                        .post, "/v1/reports/verify",
                        json: report(sender: socketAccount, senderDevice: socketDevice, recipientDevice: socketDevice),
                        token: httpToken),
                    socket: try await socket.request(
                        "verifyReport", report(sender: httpAccount, senderDevice: httpDevice, recipientDevice: httpDevice)))

                // Unknown methods exist only on the WebSocket; unknown paths only over HTTP.
                let unknown = try await socket.request("teleport", "{}")
                #expect(unknown.status == 400)
                #expect(unknown.code == "unknown_method")
                let nowhere = try await server.answer(.get, "/v1/teleport")
                #expect(nowhere.status == 404)
                #expect(nowhere.code == "not_found")

                // approveDevice of a device that is not waiting.
                let approval = #"{"deviceId":"\#(stranger)","deviceList":{"version":2,"devices":[],"signature":"AAAA"}}"#
                let approvals = try await expectTwins(
                    "approveDevice of a device the account does not have", status: nil,
                    http: try await server.answer(.post, "/v1/devices/\(stranger)/approve", json: approval, token: httpToken),
                    socket: try await socket.request("approveDevice", approval))
                #expect(approvals.http.status >= 400)

                // revokeDevice (last: it ends both sessions).
                try await expectTwins(
                    "revokeDevice of a device the account does not have", status: 404, code: "unknown_device",
                    http: try await server.answer(.delete, "/v1/devices/\(stranger)", token: httpToken),
                    socket: try await socket.request("revokeDevice", #"{"deviceId":"\#(stranger)"}"#))
                let revoked = try await expectTwins(
                    "revokeDevice", status: 200,
                    http: try await server.answer(.delete, "/v1/devices/\(httpDevice)", token: httpToken),
                    socket: try await socket.request("revokeDevice", #"{"deviceId":"\#(socketDevice)"}"#))
                #expect(revoked.http.value["revokedAt"]?.number != nil)
                #expect(revoked.socket.value["revokedAt"]?.number != nil)
            }
        }
    }

    @Test("fetchInbox without 'after' starts from the beginning over both transports")
    func fetchInboxDefaults() async throws {
        try await TestServer.run { server in
            let alice = try await rawDevice(server, "alice")
            let bob = try await rawDevice(server, "bob_b")
            for index in 1...3 {
                let sent = try await server.answer(
                    .post, "/v1/messages", json: send("m\(index)", to: "bob_b"), token: alice.token)
                #expect(sent.status == 200)
            }
            try await withRawSocket(server) { socket in
                let session = try await socket.request("authenticate", #"{"token":"\#(bob.token)","receive":false}"#)
                #expect(session.status == 200)
                #expect(session.value["lastSequence"] == .number(3))
                let overSocket = try await socket.request("fetchInbox", "{}")
                #expect(overSocket.status == 200)
                #expect(overSocket.value["envelopes"]?.array?.compactMap { $0["seq"]?.number } == [1, 2, 3])
                let limited = try await socket.request("fetchInbox", #"{"limit":2}"#)
                #expect(limited.value["envelopes"]?.array?.compactMap { $0["seq"]?.number } == [1, 2])
                let negative = try await socket.request("fetchInbox", #"{"after":-1}"#)
                #expect(negative.status == 400)
                #expect(negative.code == "bad_request")
            }
            let overHTTP = try await server.answer(.get, "/v1/inbox", token: bob.token)
            #expect(overHTTP.status == 200)
            #expect(overHTTP.value["envelopes"]?.array?.compactMap { $0["seq"]?.number } == [1, 2, 3])
            let limited = try await server.answer(.get, "/v1/inbox?limit=2", token: bob.token)
            #expect(limited.value["envelopes"]?.array?.compactMap { $0["seq"]?.number } == [1, 2])
        }
    }

    @Test("authenticate refuses an 'after' beyond lastSequence without acknowledging anything")
    func authenticateAfterBeyondLastSequence() async throws {
        try await TestServer.run { server in
            let alice = try await rawDevice(server, "alice")
            let bob = try await rawDevice(server, "bob_b")
            for index in 1...3 {
                let sent = try await server.answer(
                    .post, "/v1/messages", json: send("m\(index)", to: "bob_b"), token: alice.token)
                #expect(sent.status == 200)
            }
            try await withRawSocket(server) { socket in
                let beyond = try await socket.request("authenticate", #"{"token":"\#(bob.token)","after":7}"#)
                #expect(beyond.status == 400)
                #expect(beyond.code == "ack_out_of_range")
                // The message says which field and what the limit is.
                let message = beyond.value["message"]?.string ?? ""
                #expect(message.contains("'after'") && message.contains("3"))
                let negative = try await socket.request("authenticate", #"{"token":"\#(bob.token)","after":-1}"#)
                #expect(negative.status == 400)
                #expect(negative.code == "ack_out_of_range")
                // The socket is still unauthenticated...
                let refused = try await socket.request("fetchInbox", "{}")
                #expect(refused.status == 401)
                #expect(refused.code == "unauthenticated")
                // ...and nothing was acknowledged: a valid authenticate resumes after 1 and
                // pushes 2 and 3, and the inbox still holds all three.
                let session = try await socket.request("authenticate", #"{"token":"\#(bob.token)","after":1}"#)
                #expect(session.status == 200)
                #expect(session.value["lastSequence"] == .number(3))
                let pushed = try await socket.pushedEnvelopes(2)
                #expect(pushed.compactMap { $0["seq"]?.number } == [2, 3])
            }
            let inbox = try await server.answer(.get, "/v1/inbox", token: bob.token)
            #expect(inbox.value["envelopes"]?.array?.compactMap { $0["seq"]?.number } == [2, 3])
        }
    }

    @Test("a message id reused for other content is refused over both transports; the first content is delivered")
    func idempotencyConflict() async throws {
        try await TestServer.run { server in
            let alice = try await rawDevice(server, "alice")
            let bob = try await rawDevice(server, "bob_b")
            _ = try await rawDevice(server, "carol")
            let first = Data("first".utf8).base64EncodedString()
            let second = Data("second".utf8).base64EncodedString()
            let sent = try await server.answer(
                .post, "/v1/messages", json: send("reused-id", to: "bob_b", payload: first), token: alice.token)
            #expect(sent.status == 200)
            #expect(sent.value["duplicate"] == .bool(false))
            let overHTTP = try await server.answer(
                .post, "/v1/messages", json: send("reused-id", to: "bob_b", payload: second), token: alice.token)
            #expect(overHTTP.status == 409)
            #expect(overHTTP.code == "idempotency_conflict")
            #expect(overHTTP.value["message"]?.string?.contains("reused-id") == true)
            try await withRawSocket(server) { socket in
                let session = try await socket.request(
                    "authenticate", #"{"token":"\#(alice.token)","receive":false}"#)
                #expect(session.status == 200)
                let overSocket = try await socket.request("send", send("reused-id", to: "bob_b", payload: second))
                #expect(overSocket.status == 409)
                #expect(overSocket.code == "idempotency_conflict")
                // The same content again is still a retry.
                let retry = try await socket.request("send", send("reused-id", to: "bob_b", payload: first))
                #expect(retry.status == 200)
                #expect(retry.value["duplicate"] == .bool(true))
                #expect(retry.value["serverTime"] == sent.value["serverTime"])
                // Another recipient is another message, even with the same payload.
                let elsewhere = try await socket.request("send", send("reused-id", to: "carol", payload: first))
                #expect(elsewhere.status == 409)
                #expect(elsewhere.code == "idempotency_conflict")
            }
            try await withRawSocket(server) { socket in
                let session = try await socket.request("authenticate", #"{"token":"\#(bob.token)","after":0}"#)
                #expect(session.value["lastSequence"] == .number(1))
                let pushed = try await socket.pushedEnvelopes(1)
                #expect(pushed.first?["payload"] == .string(first))
            }
        }
    }
}

// MARK: Requests as a client written from the document would send them

/// A device logged in with plain HTTP calls: what a client needs to make requests.
struct RawDevice {
    let accountId: String
    let deviceId: String
    let token: String
}

/// Registers `name` and logs in its first device, over HTTP.
private func rawDevice(_ server: TestServer, _ name: String) async throws -> RawDevice {
    let key = IdentityKeyPair()
    let account = try await server.answer(.post, "/v1/accounts", json: register(name, key))
    let accountID = try #require(account.value["accountId"]?.string, "register \(name): \(account.value)")
    let challenge = try await server.answer(.post, "/v1/auth/challenge", json: #"{"username":"\#(name)"}"#)
    let login = try await server.answer(
        .post, "/v1/auth/login", json: try login(challenge.value, account: accountID, key: key, server: server))
    return RawDevice(
        accountId: accountID, deviceId: try #require(login.value["deviceId"]?.string),
        token: try #require(login.value["token"]?.string, "login \(name): \(login.value)"))
}

/// `register` for `name` with `key`.
private func register(_ name: String, _ key: IdentityKeyPair) -> String {
    #"{"username":"\#(name)","identityKey":"\#(key.publicKey.rawBytes.base64EncodedString())"}"#
}

/// `login` answering `challenge` (a `challenge` result) for the device "desk".
private func login(_ challenge: JSONValue, account: String, key: IdentityKeyPair, server: TestServer) throws -> String {
    let challengeID = try #require(challenge["challengeId"]?.string.flatMap(UUID.init(uuidString:)))
    let nonce = try #require(challenge["nonce"]?.string.flatMap { Data(base64Encoded: $0) })
    let signature = try key.signLogin(
        nonce: nonce, challengeID: challengeID, account: try #require(AccountID(account)),
        origin: try ServerOrigin(url: server.url), deviceName: "desk")
    return
        #"{"challengeId":"\#(challengeID.uuidString.lowercased())","deviceName":"desk","signature":"\#(signature.base64EncodedString())"}"#
}

/// `send` with one payload for every device ("hi" unless given, base64).
private func send(_ messageID: String, to username: String, payload: String = "aGk=") -> String {
    #"{"messageId":"\#(messageID)","to":"\#(username)","payload":"\#(payload)"}"#
}

/// `verifyReport` of a message that was never sent.
private func report(sender: String, senderDevice: String, recipientDevice: String) -> String {
    let zeros = Data(count: 32).base64EncodedString()
    return #"""
        {"messageId":"never-sent","senderAccountId":"\#(sender)","senderDeviceId":"\#(senderDevice)",\#
        "recipientDeviceId":"\#(recipientDevice)","serverTime":1800000000000,"body":"aGk=",\#
        "frankingKey":"\#(zeros)","frankingTag":"\#(zeros)"}
        """#
}

// MARK: Answers, as either transport carries them

/// One answer: the status, and the result (on success) or the error object (on failure).
struct Answer: Sendable {
    let status: Int
    let value: JSONValue

    /// The error code of a failure.
    var code: String? { status >= 300 ? value["code"]?.string : nil }
}

/// The two answers to the same request, one per transport.
struct TwinAnswers {
    let http: Answer
    let socket: Answer
}

/// Expects both transports to answer alike (and with `status` and `code`, when given), with
/// bodies of the same shape.
@discardableResult
private func expectTwins(
    _ name: String, status: Int?, code: String? = nil, http: Answer, socket: Answer,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws -> TwinAnswers {
    if let status {
        #expect(http.status == status, "\(name) over HTTP: \(http.value)", sourceLocation: sourceLocation)
        #expect(http.code == code, "\(name) over HTTP", sourceLocation: sourceLocation)
    }
    #expect(socket.status == http.status, "\(name) over the WebSocket: \(socket.value)", sourceLocation: sourceLocation)
    #expect(socket.code == http.code, "\(name) over the WebSocket", sourceLocation: sourceLocation)
    #expect(
        http.value.shape == socket.value.shape,
        "\(name): HTTP \(http.value.shape), WebSocket \(socket.value.shape)", sourceLocation: sourceLocation)
    return TwinAnswers(http: http, socket: socket)
}

extension TestServer {
    /// An HTTP call, as an ``Answer``: the body, or the `error` object of a failure.
    func answer(
        _ method: HTTPRequest.Method, _ uri: String, json: String? = nil, token: String? = nil
    ) async throws -> Answer {
        let response = try await http(method, uri, json: json, token: token)
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(response.body.readableBytesView))
        let status = Int(response.status.code)
        return Answer(status: status, value: status >= 300 ? (value["error"] ?? .null) : value)
    }
}

/// A bare WebSocket to the server: responses exactly as sent, status included, and every
/// other frame kept in arrival order.
struct RawSocket {
    let outbound: WebSocketOutboundWriter
    var inbound: WebSocketInboundMessageStream.AsyncIterator
    /// Frames that were not the awaited response (envelopes, error frames).
    var other: [JSONValue] = []
    private var requests = 0

    init(outbound: WebSocketOutboundWriter, inbound: WebSocketInboundMessageStream.AsyncIterator) {
        self.outbound = outbound
        self.inbound = inbound
    }

    /// Sends a request frame with `body` (JSON text) and waits for its response.
    mutating func request(_ method: String, _ body: String) async throws -> Answer {
        requests += 1
        let id = "q\(requests)"
        try await outbound.write(.text(#"{"type":"request","id":"\#(id)","method":"\#(method)","body":\#(body)}"#))
        while let frame = try await nextFrame() {
            if frame["type"] == .string("response"), frame["id"] == .string(id) {
                let status = Int(try #require(frame["status"]?.number))
                return Answer(status: status, value: (status >= 300 ? frame["error"] : frame["body"]) ?? .null)
            }
            other.append(frame)
        }
        throw HeliographError(.internalError, "the socket closed before the response to \(method)")
    }

    /// The next `count` pushed envelopes (those already received first).
    mutating func pushedEnvelopes(_ count: Int) async throws -> [JSONValue] {
        var envelopes = other.filter { $0["type"] == .string("envelope") }.compactMap { $0["envelope"] }
        other.removeAll { $0["type"] == .string("envelope") }
        while envelopes.count < count, let frame = try await nextFrame() {
            if frame["type"] == .string("envelope"), let envelope = frame["envelope"] {
                envelopes.append(envelope)
            } else {
                other.append(frame)
            }
        }
        return envelopes
    }

    private mutating func nextFrame() async throws -> JSONValue? {
        while let message = try await inbound.next() {
            guard case .text(let text) = message else { continue }
            return try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        }
        return nil
    }
}

/// Opens a bare socket to `server`, runs `body` with it, closes it; returns the close frame.
@discardableResult
func withRawSocket(
    _ server: TestServer, timeout: Duration = .seconds(30), _ body: @escaping @Sendable (inout RawSocket) async throws -> Void
) async throws -> WebSocketCloseFrame? {
    let url = "ws://localhost:\(server.url.port!)/v1/socket"
    return try await withThrowingTaskGroup(of: WebSocketCloseFrame?.self) { group in
        group.addTask {
            try await WebSocketClient.connect(url: url, logger: Logger(label: "raw-socket")) { inbound, outbound, _ in
                var socket = RawSocket(outbound: outbound, inbound: inbound.messages(maxSize: 1 << 22).makeAsyncIterator())
                try await body(&socket)
            }
        }
        // A server that never answers fails the test instead of hanging it.
        group.addTask {
            try await Task.sleep(for: timeout)
            throw HeliographError(.internalError, "no answer on the socket within \(timeout)")
        }
        let closed = try await group.next()!
        group.cancelAll()
        return closed
    }
}

/// Any JSON value, compared structurally.
enum JSONValue: Decodable, Equatable, Sendable, CustomStringConvertible {
    case object([String: JSONValue])
    case array([JSONValue])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let fields) = self { fields[key] } else { nil }
    }

    var string: String? { if case .string(let value) = self { value } else { nil } }
    var number: Double? { if case .number(let value) = self { value } else { nil } }
    var array: [JSONValue]? { if case .array(let value) = self { value } else { nil } }

    /// The structure without the values: field names and kinds, the kinds of array elements.
    var shape: String {
        switch self {
        case .object(let fields): "{" + fields.keys.sorted().map { "\($0):\(fields[$0]!.shape)" }.joined(separator: ",") + "}"
        case .array(let elements): "[" + Set(elements.map(\.shape)).sorted().joined(separator: "|") + "]"
        case .string: "string"
        case .number: "number"
        case .bool: "bool"
        case .null: "null"
        }
    }

    var description: String {
        switch self {
        case .object(let fields): "{" + fields.keys.sorted().map { "\($0): \(fields[$0]!)" }.joined(separator: ", ") + "}"
        case .array(let elements): "[" + elements.map(\.description).joined(separator: ", ") + "]"
        case .string(let value): "\"\(value)\""
        case .number(let value): "\(value)"
        case .bool(let value): "\(value)"
        case .null: "null"
        }
    }
}
