import NIOCore
import NIOWebSocket

/// Pings a WebSocket client every `period` and fails the connection with 1001 (going away)
/// when a ping is still unanswered one period later, so a peer that vanished without closing
/// does not hold its connection forever.
///
/// It runs in the channel pipeline, behind the frame decoder, on a task of the event loop.
/// The WebSocket stack's own pings sleep in a Swift task instead, and a cancelled
/// `Task.sleep` keeps its timer (some 600 bytes) until the deadline passes: with a period of
/// 30 s, a client opening and closing sockets quickly would pin that much for each socket of
/// the last 30 s. A cancelled event-loop task is freed at once, when the connection closes.
final class WebSocketKeepalive: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// How often a socket is pinged, and how long a ping may stay unanswered.
    static let defaultPeriod = TimeAmount.seconds(30)

    private let period: TimeAmount
    private var timer: Scheduled<Void>?
    /// The payload of the ping not yet answered, if any.
    private var unanswered: ByteBuffer?
    private var pings: UInt64 = 0

    init(period: TimeAmount) { self.period = period }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { schedule(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        schedule(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        // A pong that echoes the last ping answers it (RFC 6455 section 5.5.3); the stack
        // behind ignores pongs it did not ask for.
        if frame.opcode == .pong, let ping = unanswered, frame.unmaskedData == ping {
            unanswered = nil
        }
        context.fireChannelRead(data)
    }

    private func schedule(context: ChannelHandlerContext) {
        guard timer == nil else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: period) {
            let (handler, context) = bound.value
            handler.timer = nil
            handler.tick(context: context)
        }
    }

    private func tick(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        if unanswered != nil {
            var payload = context.channel.allocator.buffer(capacity: 2)
            payload.write(webSocketErrorCode: .goingAway)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)))
                .whenComplete { _ in channel.close(promise: nil) }
            return
        }
        pings &+= 1
        var payload = context.channel.allocator.buffer(capacity: 8)
        payload.writeInteger(pings)
        unanswered = payload
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: payload)), promise: nil)
        schedule(context: context)
    }
}
