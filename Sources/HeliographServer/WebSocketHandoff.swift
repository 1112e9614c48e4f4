import HummingbirdWebSocket
import NIOCore
import Synchronization

/// Holds a request context's WebSocket hand-off until its connection closes.
///
/// Hummingbird's ``WebSocketHandlerReference`` keeps the socket's handler together with a copy
/// of the request context, and the context keeps the reference: a cycle that nothing breaks.
/// Every upgraded connection would stay in memory after it closed, with its channel, pipeline
/// and buffers (the context holds the channel), a few KiB per socket for the life of the
/// process. The context reaches the reference through this slot instead, and the slot lets go
/// of it when the connection closes, which ends the cycle.
final class WebSocketHandoffSlot: Sendable {
    private let held = Mutex<WebSocketHandlerReference<HeliographRequestContext>?>(WebSocketHandlerReference())

    /// The hand-off; once released, an empty one (a closed connection upgrades nothing).
    var reference: WebSocketHandlerReference<HeliographRequestContext> {
        held.withLock { $0 } ?? WebSocketHandlerReference()
    }

    /// Lets go of the hand-off, and with it the handler and the context copy it holds, when
    /// `channel` closes (at once if it has closed already).
    func release(whenClosed channel: any Channel) {
        channel.closeFuture.whenComplete { _ in self.held.withLock { $0 = nil } }
    }
}
