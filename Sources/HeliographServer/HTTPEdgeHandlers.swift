import Foundation
import HeliographCore
import HeliographProtocol
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1

/// The server's connections: Hummingbird's HTTP/1 channel with the WebSocket upgrade, behind
/// the connection limits, with a deadline for every request head and an answer to every
/// request the parser refuses.
///
/// Without this, a request the HTTP/1 parser refuses before its head is complete would get no
/// answer at all and its connection would stay open, and a client sending its head one byte
/// at a time would hold a connection forever.
struct GuardedHTTPChannel<Inner: ServerChildChannel>: ServerChildChannel {
    /// A served connection, or one refused by the limits (answered and closing).
    enum Value: ServerChildChannelValue {
        case served(Inner.Value)
        case refused(any Channel)

        var channel: any Channel {
            switch self {
            case .served(let value): value.channel
            case .refused(let channel): channel
            }
        }
    }

    /// The HTTP/1 channel with the WebSocket upgrade that serves admitted connections; its
    /// setup must leave the HTTP/1 parser and upgrade handler as the pipeline's last handlers.
    let inner: Inner
    let limiter: ConnectionLimiter
    /// How long a request head may take, from the connection's start or the previous response.
    let headerTimeout: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let address = ClientAddress(channel.remoteAddress)
        if let refusal = limiter.admit(address) {
            // Answered and closed at once; a failed setup would end the server's accept loop.
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(RefusedConnectionHandler(refusal))
                return .refused(channel)
            }
        }
        channel.closeFuture.whenComplete { _ in limiter.release(address) }
        let headerTimeout = headerTimeout
        return inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            // Right after the parser, before the upgrader, which closes refused handshakes
            // without an answer: WebSocketHandshakeGuard answers them 400 or 426.
            let parser = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(WebSocketHandshakeGuard(), position: .after(parser))
            // After the parser and the upgrade handler, before the handlers Hummingbird adds
            // once it knows the connection stays HTTP.
            try channel.pipeline.syncOperations.addHandler(HTTPEdgeGuard(headerTimeout: headerTimeout, logger: logger))
            return .served(value)
        }
    }

    func handle(value: Value, logger: Logger) async {
        switch value {
        case .served(let value):
            await inner.handle(value: value, logger: logger)
        case .refused(let channel):
            try? await channel.closeFuture.get()
        }
    }
}

extension HTTPServerBuilder {
    /// The child channel `inner` builds (HTTP/1 with the WebSocket upgrade), behind `limiter`
    /// and with a request head deadline of `headerTimeout` (see ``GuardedHTTPChannel``).
    static func guarded<Inner: ServerChildChannel>(
        limiter: ConnectionLimiter, headerTimeout: Duration,
        _ inner: @escaping @Sendable (@escaping HTTPChannelHandler.Responder) -> Inner
    ) -> HTTPServerBuilder {
        let (seconds, attoseconds) = headerTimeout.components
        let timeout = TimeAmount.nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        return HTTPServerBuilder { responder in
            GuardedHTTPChannel(inner: inner(responder), limiter: limiter, headerTimeout: timeout)
        }
    }

    /// HTTP/1 with the WebSocket upgrade of `webSocketRouter`, behind `limiter` and with a
    /// request head deadline of `headerTimeout`.
    static func guardedHTTP1WebSocketUpgrade(
        webSocketRouter: Router<HeliographRequestContext>, configuration: HTTP1WebSocketUpgradeChannel.Configuration,
        limiter: ConnectionLimiter, headerTimeout: Duration
    ) -> HTTPServerBuilder {
        let webSocketResponder = webSocketRouter.buildResponder()
        return guarded(limiter: limiter, headerTimeout: headerTimeout) { responder in
            HTTP1WebSocketUpgradeChannel(
                responder: responder, webSocketResponder: webSocketResponder, configuration: configuration)
        }
    }
}

/// Raw HTTP/1 answers written before (or instead of) Hummingbird's handlers.
enum EdgeResponse {
    /// The status for a request the parser refused: 431 for an oversized head, 505 for an
    /// unsupported version, 400 for everything else.
    static func status(for error: HTTPParserError) -> HTTPResponseStatus {
        switch error {
        case .headerOverflow: .requestHeaderFieldsTooLarge
        case .invalidVersion: .httpVersionNotSupported
        default: .badRequest
        }
    }

    /// The JSON error body every API error has.
    static func body(_ error: HeliographError) -> Data {
        (try? WireCodec.encode(ErrorEnvelope(error: ErrorBody(error)))) ?? Data()
    }

    /// A complete response with `Connection: close`, as raw bytes.
    static func bytes(status: HTTPResponseStatus, error: HeliographError) -> ByteBuffer {
        let body = body(error)
        var buffer = ByteBuffer(
            string:
                "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nContent-Type: application/json; charset=utf-8\r\n"
                + "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n")
        buffer.writeBytes(body)
        return buffer
    }
}

/// On a connection the limits refused: answers 503 with `Connection: close` and closes.
final class RefusedConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let refusal: ConnectionLimiter.Refusal

    init(_ refusal: ConnectionLimiter.Refusal) {
        self.refusal = refusal
    }

    func channelActive(context: ChannelHandlerContext) {
        let error =
            switch refusal {
            case .serverFull:
                HeliographError(.temporarilyUnavailable, "the server holds as many connections as it can; retry later")
            case .addressFull:
                HeliographError(
                    .rateLimited, "too many open connections from this address; close some before opening another")
            }
        let status: HTTPResponseStatus = refusal == .serverFull ? .serviceUnavailable : .tooManyRequests
        context.writeAndFlush(NIOAny(EdgeResponse.bytes(status: status, error: error))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The request is not read: the answer is the same whatever it is.
    }
}

/// Watches one HTTP/1 connection between the parser and Hummingbird:
///
/// - a request head must be complete within `headerTimeout` of the connection's start or of
///   the previous response's end, else the connection closes (slow clients, idle keep-alive);
/// - a request the parser refuses before any head reached Hummingbird is answered here
///   (400, 431 or 505) and the connection closed; later parser errors go on to Hummingbird,
///   which answers them, and the connection closes after that answer;
/// - a version other than HTTP/1.0 and 1.1 (505), a target over 8 KiB (414) or a target that is
///   not a path (400) is refused here;
/// - a response that says `Connection: close` closes the connection once written, so a
///   refused body is not read to its end.
///
/// It leaves the pipeline when the connection becomes a WebSocket, whose frames it does not
/// know; the WebSocket gateway has its own deadline for authenticating.
final class HTTPEdgeGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// The longest request target served; every path of the API is far shorter.
    static let maximumTargetBytes = 8192

    private let headerTimeout: TimeAmount
    private let logger: Logger
    private var headerDeadline: Scheduled<Void>?
    /// Whether Hummingbird has seen a request head (then it answers parser errors itself).
    private var forwardedHead = false
    /// A request head was read and its response's end is not yet written.
    private var requestInProgress = false
    private var closeAfterResponse = false
    private var closing = false

    init(headerTimeout: TimeAmount, logger: Logger) {
        self.headerTimeout = headerTimeout
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armHeaderDeadline(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        headerDeadline?.cancel()
        headerDeadline = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        headerDeadline?.cancel()
        headerDeadline = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        if case .head(let head) = unwrapInboundIn(data) {
            headerDeadline?.cancel()
            headerDeadline = nil
            guard head.version == .http1_1 || head.version == .http1_0 else {
                refuse(
                    context: context, status: .httpVersionNotSupported,
                    HeliographError(
                        .badRequest, "only HTTP/1.1 (and 1.0) are served, not HTTP/\(head.version.major).\(head.version.minor)"))
                return
            }
            guard head.uri.utf8.count <= Self.maximumTargetBytes else {
                refuse(
                    context: context, status: .uriTooLong,
                    HeliographError(.badRequest, "the request target is over \(Self.maximumTargetBytes) bytes"))
                return
            }
            guard head.uri.hasPrefix("/") else {
                refuse(
                    context: context, status: .badRequest,
                    HeliographError(.badRequest, "the request target must be a path starting with '/'"))
                return
            }
            forwardedHead = true
            requestInProgress = true
            if !head.isKeepAlive {
                // The client asked for the connection to end with this answer.
                closeAfterResponse = true
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            if closeAfterResponse || head.headers[canonicalForm: "connection"].contains(where: { $0.lowercased() == "close" }) {
                closeAfterResponse = true
                head.headers.replaceOrAdd(name: "connection", value: "close")
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            requestInProgress = false
            if closeAfterResponse {
                closing = true
                let written = context.eventLoop.makePromise(of: Void.self)
                written.futureResult.cascade(to: promise)
                context.writeAndFlush(data, promise: written)
                written.futureResult.assumeIsolated().whenComplete { _ in Self.lingeringClose(context: context) }
            } else {
                context.write(data, promise: promise)
                armHeaderDeadline(context: context)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard forwardedHead else {
            // Nothing after this handler has a request yet, so nothing else would answer.
            refuse(
                context: context, status: EdgeResponse.status(for: parserError),
                HeliographError(.badRequest, "malformed HTTP request (\(parserError))"))
            return
        }
        // Hummingbird answers (a route reading the body gets the error, see ErrorMapping); the
        // connection closes after that answer, or after the header timeout if none comes.
        closeAfterResponse = true
        context.fireErrorCaught(error)
        if !requestInProgress {
            headerDeadline?.cancel()
        }
        let channel = context.channel
        headerDeadline = context.eventLoop.scheduleTask(in: headerTimeout) { channel.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent, !requestInProgress {
            // The server stops: a connection without a request in progress has nothing to
            // finish (Hummingbird's own handler is not there yet before the first request).
            context.close(promise: nil)
            return
        }
        if case HTTPServerUpgradeEvents.upgradeComplete = event {
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Answers with `status` and `Connection: close` from here, and closes.
    private func refuse(context: ChannelHandlerContext, status: HTTPResponseStatus, _ error: HeliographError) {
        guard !closing else { return }
        closing = true
        headerDeadline?.cancel()
        headerDeadline = nil
        let body = EdgeResponse.body(error)
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json; charset=utf-8")
        headers.add(name: "content-length", value: String(body.count))
        headers.add(name: "connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            Self.lingeringClose(context: context)
        }
    }

    /// Ends the server's side at once, and closes the connection a moment later. Closing at
    /// once while request bytes are still unread would make the kernel reset the connection,
    /// and a reset can destroy the answer before the client has read it.
    static func lingeringClose(context: ChannelHandlerContext) {
        let channel = context.channel
        context.close(mode: .output, promise: nil)
        context.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
    }

    /// Closes the connection unless a request head arrives within `headerTimeout`.
    private func armHeaderDeadline(context: ChannelHandlerContext) {
        headerDeadline?.cancel()
        let channel = context.channel
        let logger = logger
        headerDeadline = context.eventLoop.scheduleTask(in: headerTimeout) {
            logger.debug("no complete request head in time; closing the connection")
            channel.close(promise: nil)
        }
    }
}
