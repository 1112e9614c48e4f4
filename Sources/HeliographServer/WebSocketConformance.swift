import Foundation
import HTTPTypes
import HeliographCore
import HeliographProtocol
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOWebSocket

// RFC 6455 rules that the WebSocket stack underneath does not enforce on its own, or enforces
// with the wrong close code once the gateway has taken the socket:
//
// - every client frame is masked (section 5.1), else the server fails the connection with 1002;
// - a continuation frame continues a started message, and no new message starts inside one
//   (section 5.4), else 1002;
// - a text message is valid UTF-8 (section 8.1), else 1007;
// - a message spread over fragments stays within the size limit, else 1009;
// - a handshake the server cannot accept gets an HTTP answer (section 4.2.2): 426 Upgrade Required
//   with `Sec-WebSocket-Version: 13` for another version, 400 for a malformed request.
//
// The frame checks run in the channel pipeline right after the frame decoder, so a violation is
// answered with its own close code before the gateway ever sees the frame.

/// Puts a ``WebSocketFrameChecker`` behind the frame decoder of a socket being upgraded.
///
/// Added to the pipeline while the upgrade is decided (the `/v1/socket` route), it waits for
/// the event that says the upgrade happened: the upgrader fires it after adding the frame
/// decoder and before replaying any byte that arrived meanwhile, so the checker sees every
/// frame. Then it leaves the pipeline. Until then it passes everything on untouched.
final class WebSocketCheckInstaller: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Never

    private let maxMessageBytes: Int

    init(maxMessageBytes: Int) { self.maxMessageBytes = maxMessageBytes }

    /// Adds the installer to `channel`'s pipeline.
    static func install(on channel: any Channel, maxMessageBytes: Int) async throws {
        try await channel.pipeline.addHandler(WebSocketCheckInstaller(maxMessageBytes: maxMessageBytes)).get()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .upgradeComplete = event as? HTTPServerUpgradeEvents else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        do {
            let decoder = try context.pipeline.syncOperations.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)
            let checker = WebSocketFrameChecker(maxMessageBytes: maxMessageBytes)
            try context.pipeline.syncOperations.addHandler(checker, position: .after(decoder))
            // Keepalive pings run here rather than in the WebSocket stack (see WebSocketKeepalive).
            try context.pipeline.syncOperations.addHandler(
                WebSocketKeepalive(period: WebSocketKeepalive.defaultPeriod), position: .after(checker))
        } catch {
            // Without the checker the socket would run unchecked: do not run it at all.
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

/// Answers the WebSocket handshakes that the upgrader would turn down (another
/// `Sec-WebSocket-Version`, no `Sec-WebSocket-Key`, no `Connection: Upgrade`) with 426 or 400.
///
/// It sits between the HTTP/1 parser and the upgrade handler: the upgrader itself answers such a
/// request by closing the connection without a word, so the request must not reach it. Every
/// other request passes through untouched.
final class WebSocketHandshakeGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The only version of the protocol the server speaks.
    static let supportedVersion = "13"

    /// Set once a refusal was written: the rest of that request is dropped.
    private var refused = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        guard case .head(let head) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        if let (status, message) = Self.refusal(values: { head.headers[canonicalForm: $0].map(String.init) }) {
            refused = true
            refuse(context: context, status: status, message: message)
            return
        }
        context.fireChannelRead(data)
        // Only a connection's first request can be an upgrade, and after an upgrade the bytes
        // here are WebSocket frames, not HTTP parts: the guard's work is done.
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// Why an upgrade request cannot be accepted, if it is one the upgrader turns down; nil for
    /// every other request. `values` gives a header's values (comma-separated lists split).
    static func refusal(values: (String) -> [String]) -> (HTTPResponseStatus, String)? {
        guard values("Upgrade").contains(where: { $0.lowercased().contains("websocket") }) else { return nil }
        let versions = values("Sec-WebSocket-Version")
        if versions.isEmpty {
            return (.badRequest, "a WebSocket upgrade needs 'Sec-WebSocket-Version: \(supportedVersion)'")
        }
        if versions != [supportedVersion] {
            return (
                .upgradeRequired,
                "this server speaks WebSocket version \(supportedVersion) (RFC 6455) only, not '\(versions.joined(separator: ","))'"
            )
        }
        // RFC 6455 section 4.1: the key is 16 random bytes in base64.
        let keys = values("Sec-WebSocket-Key")
        guard keys.count == 1, Data(base64Encoded: keys[0])?.count == 16 else {
            return (.badRequest, "a WebSocket upgrade needs exactly one 'Sec-WebSocket-Key' (16 bytes in base64)")
        }
        if !values("Connection").contains(where: { $0.trimmingCharacters(in: .whitespaces).lowercased() == "upgrade" }) {
            return (.badRequest, "a WebSocket upgrade needs 'Connection: Upgrade'")
        }
        return nil
    }

    private func refuse(context: ChannelHandlerContext, status: HTTPResponseStatus, message: String) {
        let body = (try? WireCodec.encode(ErrorEnvelope(error: ErrorBody(HeliographError(.badRequest, message))))) ?? Data()
        var headers: HTTPHeaders = [
            "Content-Type": "application/json; charset=utf-8", "Content-Length": String(body.count), "Connection": "close",
        ]
        if status == .upgradeRequired {
            // RFC 6455 section 4.2.2: name the version the server understands.
            headers.add(name: "Sec-WebSocket-Version", value: Self.supportedVersion)
        }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let bound = context.loopBound
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
    }
}

/// Checks every client frame against RFC 6455 and fails the connection with the close code the
/// RFC names for the violation: 1002 for an unmasked frame, a continuation without a start, a
/// new message inside a fragmented one or reserved bits (no extension is negotiated); 1007 for a
/// text message that is not UTF-8; 1009 for a fragmented message over `maxMessageBytes`.
final class WebSocketFrameChecker: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let maxMessageBytes: Int
    /// The message being received across fragments, if any.
    private var message: (isText: Bool, size: Int)?
    private var utf8 = UTF8Validator()
    /// Once the connection is failed every further frame is dropped.
    private var failed = false

    init(maxMessageBytes: Int) { self.maxMessageBytes = maxMessageBytes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let frame = unwrapInboundIn(data)
        if let code = check(frame) {
            fail(context: context, code: code)
            return
        }
        context.fireChannelRead(data)
    }

    /// The close code the frame calls for, or nil when it may pass.
    private func check(_ frame: WebSocketFrame) -> WebSocketErrorCode? {
        // Section 5.1: a server closes the connection on an unmasked client frame.
        guard let mask = frame.maskKey else { return .protocolError }
        guard !frame.rsv1, !frame.rsv2, !frame.rsv3 else { return .protocolError }
        switch frame.opcode {
        case .text, .binary:
            guard message == nil else { return .protocolError }
            message = (frame.opcode == .text, 0)
            utf8 = UTF8Validator()
        case .continuation:
            guard message != nil else { return .protocolError }
        default:
            // Control frames may come between fragments; the decoder and the socket handler
            // check their own rules (no fragments, at most 125 bytes, a valid close payload).
            return nil
        }
        guard var current = message else { return nil }
        current.size += frame.length
        guard current.size <= maxMessageBytes else { return .messageTooLarge }
        if current.isText {
            var index = 0
            for byte in frame.data.readableBytesView {
                guard utf8.feed(byte ^ mask[index & 3]) else {
                    return .dataInconsistentWithMessage
                }
                index += 1
            }
            if frame.fin, !utf8.isComplete { return .dataInconsistentWithMessage }
        }
        message = frame.fin ? nil : current
        return nil
    }

    /// Sends a close frame with `code` and closes the connection (RFC 6455 section 7.1.7: the
    /// endpoint fails the connection without waiting for the peer's close).
    private func fail(context: ChannelHandlerContext, code: WebSocketErrorCode) {
        failed = true
        var payload = context.channel.allocator.buffer(capacity: 2)
        payload.write(webSocketErrorCode: code)
        let bound = context.loopBound
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)))
            .whenComplete { _ in bound.value.close(promise: nil) }
    }
}

/// An incremental UTF-8 check over bytes that arrive in pieces, following the well-formed byte
/// sequences of the Unicode Standard (chapter 3, table 3-7): no overlong forms, no surrogates,
/// nothing above U+10FFFF.
struct UTF8Validator {
    /// Continuation bytes still expected in the current sequence.
    private var remaining = 0
    /// The range the next continuation byte must fall in.
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF

    /// Whether the input so far ends on a character boundary.
    var isComplete: Bool { remaining == 0 }

    /// Takes one byte; false once the input can no longer be UTF-8.
    mutating func feed(_ byte: UInt8) -> Bool {
        if remaining > 0 {
            guard byte >= lower, byte <= upper else { return false }
            remaining -= 1
            lower = 0x80
            upper = 0xBF
            return true
        }
        switch byte {
        case 0x00...0x7F: return true
        case 0xC2...0xDF: remaining = 1
        case 0xE0:
            remaining = 2
            lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: remaining = 2
        case 0xED:
            remaining = 2
            upper = 0x9F
        case 0xF0:
            remaining = 3
            lower = 0x90
        case 0xF1...0xF3: remaining = 3
        case 0xF4:
            remaining = 3
            upper = 0x8F
        default: return false
        }
        return true
    }
}
