import Foundation
import HeliographCore
import NIOCore
import NIOWebSocket
import Synchronization

/// Pushes committed chat updates to the sockets on this node whose accounts are members.
///
/// A post is encoded once into one buffer. ``publish(_:sequence:frame:)`` groups the listening
/// sockets by event loop and hands each loop one job that writes the same buffer to each of its
/// sockets, so the cost per subscriber is one write and flush on the loop that owns the socket,
/// with no task to wake. The poster never waits for the push. A socket whose outbound buffer
/// is full (it reads too slowly) gets nothing more: it is marked, and its own writer sends it one
/// `chatsChanged` frame once it drains, after which it syncs and fetches the gaps. Nothing is
/// lost, only fetched later; offline members simply fetch from their position later.
public final class ChatFanout: Sendable {
    /// One socket's queue of encoded frames.
    final class Sink: Sendable {
        /// Frames waiting for the socket's writer; past it the queue is dropped for a resync.
        static let capacity = 512
        private let state = Mutex<(frames: [String], overflowed: Bool)>(([], false))
        let wake: AsyncStream<Void>.Continuation
        let wakeups: AsyncStream<Void>
        /// The socket's connection, written directly on its event loop; nil for sockets served
        /// without one (every frame then goes through the queue).
        let channel: (any Channel)?
        /// Set on the socket's event loop when a direct write found the socket not writable; from
        /// then on frames go nowhere until the writer has told the socket to sync.
        private let resyncing = Atomic<Bool>(false)
        /// The WebSocket frame encoder's place in the connection's pipeline, found on first use:
        /// frames encoded once for everyone are written from there, past the encoder.
        private let encoder: NIOLoopBoundBox<ChannelHandlerContext?>?

        init(channel: (any Channel)?) {
            self.channel = channel
            if let channel {
                encoder = NIOLoopBoundBox<ChannelHandlerContext?>.makeEmptyBox(
                    valueType: ChannelHandlerContext.self, eventLoop: channel.eventLoop)
            } else {
                encoder = nil
            }
            (wakeups, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        }

        /// Writes a frame, already encoded as WebSocket bytes, on the socket's connection; called
        /// on its event loop. Returns whether it was written.
        func writeDirectly(_ encoded: ByteBuffer) -> Bool {
            guard let channel, let encoder, channel.isActive else { return false }
            guard channel.isWritable, !resyncing.load(ordering: .relaxed) else {
                // Too slow: stop pushing and let the writer tell it to sync once it can.
                if !resyncing.exchange(true, ordering: .relaxed) { markChanged() }
                return false
            }
            if encoder.value == nil {
                encoder.value = try? channel.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
            }
            guard let context = encoder.value else { return false }
            context.writeAndFlush(NIOAny(encoded), promise: nil)
            return true
        }

        /// The writer told the socket to sync: direct pushes may go on.
        func resynced() { resyncing.store(false, ordering: .relaxed) }

        func put(_ frame: String) {
            state.withLock { state in
                if state.frames.count < Self.capacity {
                    state.frames.append(frame)
                } else {
                    state.frames.removeAll()
                    state.overflowed = true
                }
            }
            wake.yield()
        }

        /// Makes the next ``take()`` report an overflow, so the socket is told to sync.
        func markChanged() {
            state.withLock { $0.overflowed = true }
            wake.yield()
        }

        /// Everything queued, and whether frames were dropped since the last call.
        func take() -> (frames: [String], overflowed: Bool) {
            state.withLock { state in
                defer {
                    state.frames.removeAll(keepingCapacity: true)
                    state.overflowed = false
                }
                return (state.frames, state.overflowed)
            }
        }
    }

    private struct Registration {
        let account: AccountID
        let device: DeviceID
        let sink: Sink
        var chats: Set<ChatID>
    }

    private struct State {
        var sockets: [UInt64: Registration] = [:]
        var byChat: [ChatID: [UInt64: Sink]] = [:]
        var byAccount: [AccountID: Set<UInt64>] = [:]
        /// The latest position pushed per chat, so a wake-up from another node pushes only what
        /// follows it.
        var published: [ChatID: Int64] = [:]
    }

    private let state = Mutex(State())
    private let nextID = Atomic<UInt64>(0)

    /// Creates an empty fan-out; `counted` hears how many frames each write job wrote.
    public init(counted: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.counted = counted
    }

    /// Registers a socket of `account` following `chats`; returns its id and queue.
    func register(
        account: AccountID, device: DeviceID, chats: [ChatID], channel: (any Channel)? = nil
    ) -> (
        id: UInt64, sink: Sink
    ) {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        let sink = Sink(channel: channel)
        state.withLock { state in
            state.sockets[id] = Registration(account: account, device: device, sink: sink, chats: Set(chats))
            state.byAccount[account, default: []].insert(id)
            for chat in chats { state.byChat[chat, default: [:]][id] = sink }
        }
        return (id, sink)
    }

    /// Removes a socket.
    func unregister(_ id: UInt64) {
        let removed = state.withLock { state -> Registration? in
            guard let registration = state.sockets.removeValue(forKey: id) else { return nil }
            state.byAccount[registration.account]?.remove(id)
            if state.byAccount[registration.account]?.isEmpty == true { state.byAccount[registration.account] = nil }
            for chat in registration.chats {
                state.byChat[chat]?[id] = nil
                if state.byChat[chat]?.isEmpty == true {
                    state.byChat[chat] = nil
                    state.published[chat] = nil
                }
            }
            return registration
        }
        removed?.sink.wake.finish()
    }

    /// The account joined (true) or left the chat: its sockets on this node follow it or stop.
    public func setMember(_ account: AccountID, of chat: ChatID, _ isMember: Bool) {
        state.withLock { state in
            for id in state.byAccount[account] ?? [] {
                guard let sink = state.sockets[id]?.sink else { continue }
                if isMember {
                    state.sockets[id]?.chats.insert(chat)
                    state.byChat[chat, default: [:]][id] = sink
                } else {
                    state.sockets[id]?.chats.remove(chat)
                    state.byChat[chat]?[id] = nil
                    if state.byChat[chat]?.isEmpty == true { state.byChat[chat] = nil }
                }
            }
        }
    }

    /// Hands one encoded update at `sequence` to every socket following `chat`; returns how
    /// many sockets got it.
    @discardableResult
    public func publish(_ chat: ChatID, sequence: Int64, frame: String) -> Int {
        let sinks = state.withLock { state -> [Sink] in
            guard let listeners = state.byChat[chat] else { return [] }
            state.published[chat] = max(state.published[chat] ?? 0, sequence)
            return Array(listeners.values)
        }
        // One encoded frame for every socket, jobs per event loop.
        let encoded = Self.encodeTextFrame(frame)
        var byLoop: [ObjectIdentifier: (loop: any EventLoop, sinks: [Sink])] = [:]
        for sink in sinks {
            guard let loop = sink.channel?.eventLoop else {
                sink.put(frame)
                continue
            }
            byLoop[ObjectIdentifier(loop), default: (loop, [])].sinks.append(sink)
        }
        for (_, batch) in byLoop { write(encoded, to: batch.sinks[...], on: batch.loop, fallback: frame) }
        return sinks.count
    }

    /// Sockets written per job: between jobs the loop serves everything else queued meanwhile
    /// (the poster's acknowledgement among it), so a large fan-out does not hold it up.
    static let socketsPerJob = 256

    /// Writes to a chunk of sockets on their loop, then queues the rest behind whatever came in.
    private func write(_ encoded: ByteBuffer, to sinks: ArraySlice<Sink>, on loop: any EventLoop, fallback: String) {
        loop.execute {
            let chunk = sinks.prefix(Self.socketsPerJob)
            var written = 0
            for sink in chunk {
                if sink.writeDirectly(encoded) {
                    written += 1
                } else if sink.channel?.isActive == true, sink.channel?.isWritable == true {
                    // No encoder found (an unusual pipeline): the socket's own writer sends it.
                    sink.put(fallback)
                }
            }
            self.counted(written)
            let rest = sinks.dropFirst(Self.socketsPerJob)
            if !rest.isEmpty { self.write(encoded, to: rest, on: loop, fallback: fallback) }
        }
    }

    /// A server-to-client text frame (final, unmasked) as RFC 6455 section 5.2 lays it out.
    static func encodeTextFrame(_ text: String) -> ByteBuffer {
        let payload = ByteBuffer(string: text)
        var frame = ByteBuffer()
        frame.reserveCapacity(payload.readableBytes + 10)
        frame.writeInteger(UInt8(0x81))
        switch payload.readableBytes {
        case 0..<126: frame.writeInteger(UInt8(payload.readableBytes))
        case 126...Int(UInt16.max):
            frame.writeInteger(UInt8(126))
            frame.writeInteger(UInt16(payload.readableBytes))
        default:
            frame.writeInteger(UInt8(127))
            frame.writeInteger(UInt64(payload.readableBytes))
        }
        var bytes = payload
        frame.writeBuffer(&bytes)
        return frame
    }

    /// Told how many frames each job wrote (the server's push counter).
    private let counted: @Sendable (Int) -> Void

    /// Hands a frame to the sockets of one account (read positions), except `excluding`'s.
    func publish(toAccount account: AccountID, excluding device: DeviceID?, frame: String) {
        let sinks = state.withLock { state -> [Sink] in
            (state.byAccount[account] ?? []).compactMap { id in
                guard let registration = state.sockets[id], registration.device != device else { return nil }
                return registration.sink
            }
        }
        for sink in sinks { sink.put(frame) }
    }

    /// Tells every socket on this node to sync its chats (after the cross-node feed had a gap).
    public func announceChatsChanged() {
        let sinks = state.withLock { state in state.sockets.values.map(\.sink) }
        for sink in sinks { sink.markChanged() }
    }

    /// Whether any socket on this node follows the chat, and the latest position pushed to it.
    func followers(of chat: ChatID) -> (count: Int, published: Int64?) {
        state.withLock { state in (state.byChat[chat]?.count ?? 0, state.published[chat]) }
    }

    /// The accounts among these with a socket on this node.
    func connected(_ accounts: [AccountID]) -> [AccountID] {
        state.withLock { state in accounts.filter { state.byAccount[$0] != nil } }
    }

}
