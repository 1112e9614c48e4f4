import Foundation
import HeliographCore
import HeliographProtocol
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The status and headers of an HTTP response.
public struct HTTPTransferResponse: Sendable, Equatable {
    /// The status code, such as 200 or 206.
    public var status: Int
    /// The headers, names in lower case (a repeated header keeps its last value).
    public var headers: [String: String]

    /// A header's value, by name in any case.
    public func header(_ name: String) -> String? { headers[name.lowercased()] }

    /// `Content-Length`, when the server sent one.
    public var contentLength: Int64? { header("content-length").flatMap { Int64($0) } }
}

/// A small HTTP/1.1 client for the server's HTTP routes (media uploads and downloads): one
/// request per connection, `Authorization: Bearer` with the profile's token, TLS for `https`,
/// and response bodies handed over piece by piece so a download never sits whole in memory.
///
/// A refused request throws the server's JSON error as a ``HeliographError`` (its code, say
/// `unknown_blob`, and message). A server that cannot be reached throws ``ConnectionFailed``;
/// a connection lost during the exchange throws ``ConnectionClosed``. Both are worth retrying.
public struct HTTPTransfer: Sendable {
    /// The server's base URL (`http(s)://` or `ws(s)://`; a path is kept as a prefix).
    public let server: URL
    /// The bearer token sent with every request, if any.
    public let token: String?
    /// How long connecting may take.
    public var connectTimeout: Duration = .seconds(10)
    /// How long a connection may go without a byte read or written (a request being sent, a
    /// response awaited or streamed) before the exchange fails.
    public var idleTimeout: Duration = .seconds(60)

    private let host: String
    private let port: Int
    private let pathPrefix: String
    private let tls: NIOSSLContext?

    /// Error bodies longer than this are cut: they are a sentence, not a payload.
    static let maximumErrorBody = 64 * 1024

    /// A client of `server` that authenticates with `token`.
    public init(server: URL, token: String?) throws {
        guard let components = URLComponents(url: server, resolvingAgainstBaseURL: false), let scheme = components.scheme,
            let host = components.host, !host.isEmpty
        else { throw HeliographError(.badRequest, "'\(server)' is not a server URL") }
        let secure: Bool
        switch scheme {
        case "http", "ws": secure = false
        case "https", "wss": secure = true
        default: throw HeliographError(.badRequest, "server URL must start with http://, https://, ws:// or wss://")
        }
        self.server = server
        self.token = token
        // An IPv6 literal comes back bracketed from URLComponents in some versions.
        self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        port = components.port ?? (secure ? 443 : 80)
        pathPrefix = components.path.hasSuffix("/") ? String(components.path.dropLast()) : components.path
        tls = secure ? try NIOSSLContext(configuration: .makeClientConfiguration()) : nil
    }

    /// Sends a request and decodes the JSON answer; a refusal throws the server's error.
    public func json<Result: Decodable>(
        _ method: String, _ path: String, body: (some Encodable)?, as result: Result.Type = Result.self
    ) async throws -> Result {
        let encoded = try body.map { try WireCodec.encode($0) }
        let (_, answer) = try await data(
            method, path, body: encoded, contentType: encoded == nil ? nil : "application/json")
        return try WireCodec.decode(Result.self, from: answer)
    }

    /// Sends a request without a body and decodes the JSON answer.
    public func json<Result: Decodable>(
        _ method: String, _ path: String, as result: Result.Type = Result.self
    )
        async throws -> Result
    {
        try await json(method, path, body: Optional<EmptyBody>.none, as: result)
    }

    /// Sends a request and collects the whole answer (for small answers only).
    public func data(
        _ method: String, _ path: String, headers: [String: String] = [:], body: Data? = nil, contentType: String? = nil,
        limit: Int = 1 << 20
    ) async throws -> (HTTPTransferResponse, Data) {
        var collected = Data()
        let response = try await stream(method, path, headers: headers, body: body, contentType: contentType) { piece in
            guard collected.count + piece.count <= limit else {
                throw HeliographError(.payloadTooLarge, "the server's answer to \(method) \(path) is over \(limit) bytes")
            }
            collected.append(piece)
        }
        return (response, collected)
    }

    /// Sends a request and hands the answer's body to `onBody` piece by piece, in order.
    ///
    /// Statuses of 400 and above throw the server's error, unless listed in `accepting` (then
    /// they are answered like successes). `onResponse` sees the status and headers before the
    /// first piece of the body.
    @discardableResult
    public func stream(
        _ method: String, _ path: String, headers: [String: String] = [:], body: Data? = nil, contentType: String? = nil,
        accepting: Set<Int> = [], onResponse: (HTTPTransferResponse) async throws -> Void = { _ in },
        onBody: (Data) async throws -> Void
    ) async throws -> HTTPTransferResponse {
        let channel = try await connect()
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: pathPrefix + path)
        head.headers.add(name: "Host", value: hostHeader)
        head.headers.add(name: "User-Agent", value: "HeliographKit")
        head.headers.add(name: "Connection", value: "close")
        if let token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let contentType { head.headers.add(name: "Content-Type", value: contentType) }
        if body != nil || ["POST", "PUT", "PATCH"].contains(method) {
            head.headers.add(name: "Content-Length", value: "\(body?.count ?? 0)")
        }
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        let request = head
        return try await channel.executeThenClose { inbound, outbound in
            do {
                try await outbound.write(.head(request))
                if let body, !body.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
                try await outbound.write(.end(nil))
            } catch {
                throw lost(error)
            }
            var parts = inbound.makeAsyncIterator()
            var response: HTTPTransferResponse?
            while true {
                let part: HTTPClientResponsePart?
                do { part = try await parts.next() } catch { throw lost(error) }
                switch part {
                case .head(let answer):
                    // Interim answers (100 Continue) come before the real one.
                    if answer.status.code < 200 { continue }
                    let received = HTTPTransferResponse(
                        status: Int(answer.status.code),
                        headers: Dictionary(answer.headers.map { ($0.name.lowercased(), $0.value) }) { _, last in last })
                    if received.status >= 400, !accepting.contains(received.status) {
                        throw try await refusal(received, rest: &parts)
                    }
                    response = received
                    try await onResponse(received)
                case .body(let buffer):
                    guard response != nil else { continue }
                    try await onBody(Data(buffer.readableBytesView))
                case .end:
                    guard let response else { throw ConnectionClosed(reason: nil) }
                    return response
                case nil:
                    // The server closed before the answer was complete.
                    throw ConnectionClosed(
                        reason: HeliographError(.temporarilyUnavailable, "the server closed the connection mid-answer"))
                }
            }
        }
    }

    /// Reads the rest of an error answer and turns it into the server's error.
    private func refusal(
        _ response: HTTPTransferResponse, rest parts: inout NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    ) async throws -> HeliographError {
        var body = Data()
        reading: while true {
            let part: HTTPClientResponsePart?
            do { part = try await parts.next() } catch { break reading }
            switch part {
            case .body(let buffer):
                if body.count < Self.maximumErrorBody { body.append(contentsOf: buffer.readableBytesView) }
            case .head: continue
            case .end, nil: break reading
            }
        }
        if let envelope = try? JSONDecoder().decode(ErrorEnvelope.self, from: body) {
            return envelope.error.heliographError
        }
        let code: HeliographError.Code =
            switch response.status {
            case 401: .unauthenticated
            case 404: .notFound
            case 413: .payloadTooLarge
            case 416: .badRequest
            case 429: .rateLimited
            case 503: .temporarilyUnavailable
            default: response.status >= 500 ? .internalError : .badRequest
            }
        let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return HeliographError(code, "the server answered HTTP \(response.status)" + (text.isEmpty ? "" : ": \(text)"))
    }

    private var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == (tls == nil ? 80 : 443) ? name : "\(name):\(port)"
    }

    private func connect() async throws -> NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart> {
        let tls = self.tls
        let host = self.host
        let idleTimeout = TimeAmount.nanoseconds(
            idleTimeout.components.seconds * 1_000_000_000 + idleTimeout.components.attoseconds / 1_000_000_000)
        let connectTimeout = TimeAmount.nanoseconds(
            connectTimeout.components.seconds * 1_000_000_000 + connectTimeout.components.attoseconds / 1_000_000_000)
        do {
            return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(connectTimeout)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        if let tls {
                            // SNI and certificate checks use the name, never an address literal.
                            let isAddress = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
                            try pipeline.addHandler(NIOSSLClientHandler(context: tls, serverHostname: isAddress ? nil : host))
                        }
                        try pipeline.addHTTPClientHandlers()
                        try pipeline.addHandler(IdleStateHandler(allTimeout: idleTimeout))
                        try pipeline.addHandler(IdleTimeoutHandler())
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                            wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ConnectionFailed(url: server.absoluteString, underlying: error)
        }
    }

    private func lost(_ error: any Error) -> any Error {
        if error is HeliographError || error is ConnectionClosed { return error }
        return ConnectionClosed(
            reason: HeliographError(.temporarilyUnavailable, "the connection to \(server.absoluteString) broke: \(error)"))
    }
}

/// Fails the exchange when nothing was read or written for the idle timeout: a slow upload
/// that keeps writing is not cut, a server that stopped answering is.
private final class IdleTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias InboundOut = HTTPClientResponsePart

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .all {
            context.fireErrorCaught(IdleTimeout())
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Nothing was read or written for the idle timeout; reported as a lost connection.
private struct IdleTimeout: Error, CustomStringConvertible {
    var description: String { "nothing was sent or received for too long" }
}
