import Foundation
import HeliographCore
import HeliographServer
import Testing

/// One malformed request, as raw bytes, and the statuses that may answer it.
struct MalformedRequest: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let statuses: Set<Int>
    /// Half-close after sending, as a client that gave up would.
    var halfClose = false

    init(_ name: String, _ text: String, statuses: Set<Int> = [400], halfClose: Bool = false) {
        self.init(name, Array(text.utf8), statuses: statuses, halfClose: halfClose)
    }

    init(_ name: String, _ bytes: [UInt8], statuses: Set<Int> = [400], halfClose: Bool = false) {
        self.name = name
        self.bytes = bytes
        self.statuses = statuses
        self.halfClose = halfClose
    }

    var testDescription: String { name }
}

/// A request to a route that reads its body, with `body` after the head.
private func chunked(_ body: String) -> String {
    "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + body
}

@Suite("HTTP edges against hostile clients")
struct HTTPEdgeTests {
    static let brokenBodies: [MalformedRequest] = [
        MalformedRequest("chunk size zz", chunked("zz\r\n{}\r\n0\r\n\r\n")),
        MalformedRequest("overflowing chunk size", chunked("fffffffffffffffffffffffff\r\n{}\r\n0\r\n\r\n")),
        MalformedRequest("bad chunk size after data", chunked("2\r\n{}\r\nzz\r\n\r\n")),
        MalformedRequest("missing CRLF after chunk data", chunked("2\r\n{}0\r\n\r\n")),
        MalformedRequest(
            "body shorter than its Content-Length, then half-closed",
            "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
            halfClose: true),
    ]

    @Test("a malformed request body is a 400, never a 500", arguments: brokenBodies)
    func malformedBodyIsBadRequest(_ request: MalformedRequest) async throws {
        try await TestServer.run { server in
            let socket = try RawHTTPConnection(port: server.url.port!)
            socket.send(request.bytes)
            if request.halfClose { socket.shutdownWrite() }
            let reply = await socket.read(for: 30)
            #expect(reply.status == 400, "\(request.name): \(reply.text.prefix(300)) (reset: \(reply.resetError))")
            #expect(reply.text.contains("bad_request"), "\(request.name): \(reply.text.prefix(300))")
            #expect(reply.closed, "\(request.name): the connection stays open after a broken body")
        }
    }

    static let unparsable: [MalformedRequest] = [
        MalformedRequest("NUL in the method", "G\u{0}ET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        MalformedRequest("NUL in a header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n"),
        MalformedRequest("unknown method", "FROB /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        MalformedRequest("lower-case method", "get /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        MalformedRequest("HTTP/0.9", "GET /healthz HTTP/0.9\r\n\r\n", statuses: [400, 505]),
        MalformedRequest("HTTP/1.2", "GET /healthz HTTP/1.2\r\nHost: x\r\n\r\n", statuses: [400, 505]),
        MalformedRequest("HTTP/2.0", "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", statuses: [400, 505]),
        MalformedRequest("an h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", statuses: [400, 505]),
        MalformedRequest(
            "Content-Length with Transfer-Encoding",
            "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        MalformedRequest(
            "two Content-Lengths", "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
        MalformedRequest("negative Content-Length", "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
        MalformedRequest("bare LF line endings", "GET /healthz HTTP/1.1\nHost: x\n\n", statuses: [400, 505]),
        MalformedRequest("a folded header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
        MalformedRequest(
            "a TLS ClientHello",
            [0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03] + [UInt8](repeating: 0x2a, count: 40)),
        MalformedRequest(
            "a 90 KB header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 90_000))\r\n\r\n",
            statuses: [400, 431]),
        MalformedRequest(
            "a URI over 60 KB", "GET /\(String(repeating: "a", count: 61_000)) HTTP/1.1\r\nHost: x\r\n\r\n",
            statuses: [400, 414, 431]),
        MalformedRequest("a target not starting with /", "GET healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]

    @Test("a request the parser refuses is answered 400/431/505 and closed at once", arguments: unparsable)
    func parseErrorIsAnsweredAndClosed(_ request: MalformedRequest) async throws {
        try await TestServer.run { server in
            let socket = try RawHTTPConnection(port: server.url.port!)
            socket.send(request.bytes)
            let reply = await socket.read(for: 5)
            #expect(reply.closed, "\(request.name): the connection stays open")
            #expect(reply.elapsed < .seconds(2), "\(request.name): closed only after \(reply.elapsed)")
            // An answer, when there is one, has one of the expected statuses (a bare close is allowed).
            if !reply.bytes.isEmpty {
                #expect(
                    reply.status.map(request.statuses.contains) == true, "\(request.name): \(reply.text.prefix(300))")
            }
        }
    }

    @Test("a client dribbling its request head is closed after the header timeout")
    func slowLorisHeaderDribbleIsClosed() async throws {
        try await TestServer.run(configure: { $0.headerTimeout = .seconds(1) }) { server in
            let socket = try RawHTTPConnection(port: server.url.port!)
            let started = ContinuousClock.now
            socket.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            var open = true
            // A second of timeout; the slack is for a busy test machine. Without a deadline the
            // connection would stay open as long as bytes keep coming.
            while open, ContinuousClock.now - started < .seconds(20) {
                open = socket.send("a")
                let reply = await socket.read(for: 0.2)
                if reply.closed { open = false }
            }
            #expect(!open, "a dribbling client still holds its connection after 20 s")
            #expect(ContinuousClock.now - started < .seconds(15))
        }
    }

    @Test("an idle connection that never sends a request is closed after the header timeout")
    func idleConnectionIsClosed() async throws {
        try await TestServer.run(configure: { $0.headerTimeout = .seconds(1) }) { server in
            let socket = try RawHTTPConnection(port: server.url.port!)
            let reply = await socket.read(for: 15)
            #expect(reply.closed)
            // A keep-alive connection after its answer is held no longer either.
            let second = try RawHTTPConnection(port: server.url.port!)
            second.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            let answered = await second.read(for: 30)
            #expect(answered.status == 200)
            #expect(answered.closed)
        }
    }

    @Test("a WebSocket that never authenticates is closed after the unauthenticated timeout")
    func unauthenticatedWebSocketIsClosed() async throws {
        try await TestServer.run(configure: { $0.unauthenticatedSocketTimeout = .seconds(1) }) { server in
            let socket = try RawHTTPConnection(port: server.url.port!)
            socket.send(
                "GET /v1/socket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            let head = await socket.read(for: 30, untilHead: true)
            #expect(head.status == 101)
            let rest = await socket.read(for: 20)
            // A close frame (opcode 8, unmasked from the server), or the connection closed.
            #expect(rest.closed || rest.bytes.contains(0x88), "the unauthenticated socket is still open")
            #expect(rest.text.contains("unauthenticated"))
        }
    }

    @Test("connection N+1 from one address is refused at once; a freed slot admits again")
    func perAddressConnectionLimit() async throws {
        try await TestServer.run(configure: { $0.maxConnectionsPerAddress = 3 }) { server in
            let port = server.url.port!
            let held = try (0..<3).map { _ in try RawHTTPConnection(port: port) }
            // Accepted in order; let the server take them before the next one arrives.
            try await Task.sleep(for: .milliseconds(300))
            let extra = try RawHTTPConnection(port: port)
            let refused = await extra.read(for: 3)
            #expect(refused.status == 429, "\(refused.text.prefix(200))")
            #expect(refused.closed)
            #expect(refused.elapsed < .seconds(1))
            // The held connections still work, and one closed frees its slot.
            held[0].send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let first = await held[0].read(for: 30)
            #expect(first.status == 200 && first.closed, "\(first.text.prefix(200))")
            // The server ends a finished connection at once and releases it within a second.
            try await Task.sleep(for: .milliseconds(1500))
            let again = try RawHTTPConnection(port: port)
            again.send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let admitted = await again.read(for: 30)
            #expect(admitted.status == 200, "\(admitted.text.prefix(200))")
            _ = held
        }
    }

    @Test("past the server's connection cap new connections are answered 503 and closed at once")
    func globalConnectionCap() async throws {
        try await TestServer.run(configure: {
            $0.maxConnections = 2
            $0.maxConnectionsPerAddress = 0
        }) { server in
            let port = server.url.port!
            // The test client holds no connection yet: two raw ones fill the server.
            let held = try (0..<2).map { _ in try RawHTTPConnection(port: port) }
            try await Task.sleep(for: .milliseconds(300))
            let extra = try RawHTTPConnection(port: port)
            let refused = await extra.read(for: 3)
            #expect(refused.status == 503, "\(refused.text.prefix(200))")
            #expect(refused.closed)
            _ = held
        }
    }

    @Test("a body on a route that takes none is refused with 413 before it is sent")
    func bodyOnBodylessRouteIsRefusedEarly() async throws {
        try await TestServer.run { server in
            for path in ["/v1/devices", "/v1/keys", "/healthz", "/v1/inbox", "/v1/accounts/alice"] {
                let socket = try RawHTTPConnection(port: server.url.port!)
                socket.send("GET \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n")
                let reply = await socket.read(for: 30)
                #expect(reply.status == 413, "\(path): \(reply.text.prefix(200))")
                #expect(reply.closed, "\(path): the server waits for a body it refused")
            }
        }
    }

    @Test("a Content-Length over the limit is refused with 413 before the body is sent")
    func overLimitContentLengthIsRefusedEarly() async throws {
        try await TestServer.run { server in
            let socket = try RawHTTPConnection(port: server.url.port!)
            socket.send(
                "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")
            let reply = await socket.read(for: 30)
            #expect(reply.status == 413, "\(reply.text.prefix(200))")
            #expect(reply.text.contains("payload_too_large"))
            #expect(reply.closed)
        }
    }

    @Test("a device name of one character with 50,000 combining marks is refused")
    func combiningMarkDeviceNameIsRefused() async throws {
        try await TestServer.run { server in
            let name = "e" + String(repeating: "\u{0301}", count: 50_000)
            #expect(name.count == 1)
            await #expect(throws: HeliographError(.badRequest, "")) {
                _ = try await server.register("alice", device: name, encryption: false)
            }
            // A name within the limit is accepted.
            _ = try await server.register("bobby", device: "tablet", encryption: false)
        }
    }
}
