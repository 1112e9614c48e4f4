import Foundation
import HeliographProtocol
import NIOCore
import NIOPosix
import Synchronization

/// When one chat update reached one socket.
struct ChatArrival: Sendable {
    /// The update's position in the chat's log.
    var sequence: Int64
    /// Wall-clock arrival time, µs since 1970.
    var micros: Int64
}

/// What every receiving socket of a run saw, counted as frames arrive.
final class ChatArrivalCounters: Sendable {
    /// Chat updates received, over all sockets.
    let updates = Atomic<Int>(0)
    /// `chatsChanged` frames: the server dropped a socket's queued updates because it read too slowly.
    let overflows = Atomic<Int>(0)
}

/// A receiving socket for chat updates that reads frames on the event loop, without a task,
/// JSON decoding or a copy per frame.
///
/// The load tool shares the machine with the server, and at fan-out rates of 100,000 frames a
/// second a client that decoded each frame (as `HeliographConnection` does) would measure its
/// own parsing instead of the server. This socket speaks just enough WebSocket (RFC 6455: the
/// upgrade, masked client frames, unmasked server frames, ping and close) to authenticate and
/// note the log position and arrival time of every `chatUpdate` frame.
final class ChatReceiver: Sendable {
    let channel: any Channel
    private let sink: ChatReceiverSink

    private init(channel: any Channel, sink: ChatReceiverSink) {
        self.channel = channel
        self.sink = sink
    }

    /// Opens a socket to `server` (from `localAddress` when given, one of the loopback
    /// addresses) and authenticates it with `token` as a receiving socket.
    static func connect(
        to server: URL, token: String, from localAddress: String?, counters: ChatArrivalCounters,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> ChatReceiver {
        guard let host = server.host else { throw ChatSocketError("'\(server)' has no host") }
        let port = server.port ?? 80
        guard server.scheme == "http" || server.scheme == "ws" else {
            throw ChatSocketError("the chat receivers speak plain WebSocket only (http:// or ws://), not \(server.scheme ?? "?")")
        }
        let loop = group.next()
        let ready = loop.makePromise(of: Void.self)
        let sink = ChatReceiverSink()
        let authenticate = String(
            decoding: try WireCodec.encode(
                RequestFrame(id: "auth", method: .authenticate, body: AuthenticateRequest(token: token, after: nil))),
            as: UTF8.self)
        var bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ChatSocketHandler(
                            host: "\(host):\(port)", authenticate: authenticate, ready: ready, sink: sink, counters: counters))
                }
            }
        if let localAddress {
            bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: localAddress, port: 0))
        }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            ready.fail(error)
            throw error
        }
        // A server that accepts the connection but never answers must not hang the run.
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(30)) { channel.close(promise: nil) }
        defer { timeout.cancel() }
        try await ready.futureResult.get()
        return ChatReceiver(channel: channel, sink: sink)
    }

    /// Every update this socket received so far.
    var received: [ChatArrival] { sink.arrivals.withLock { $0 } }

    /// Closes the socket.
    func close() async {
        try? await channel.close()
    }
}

/// Where the handler (on the event loop) records, and the receiver reads.
final class ChatReceiverSink: Sendable {
    let arrivals = Mutex<[ChatArrival]>([])
}

/// Failures of a chat receiving socket.
struct ChatSocketError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The protocol state machine of one receiving socket, on its event loop.
private final class ChatSocketHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        case upgrading
        case authenticating
        case receiving
    }

    private var phase = Phase.upgrading
    /// Bytes read but not yet parsed into whole frames.
    private var pending: ByteBuffer?
    /// A text message arriving in several frames, until its last.
    private var fragments: ByteBuffer?
    private var settled = false
    private let host: String
    private let authenticate: String
    private let key: String
    private let ready: EventLoopPromise<Void>
    private let sink: ChatReceiverSink
    private let counters: ChatArrivalCounters

    init(
        host: String, authenticate: String, ready: EventLoopPromise<Void>, sink: ChatReceiverSink,
        counters: ChatArrivalCounters
    ) {
        self.host = host
        self.authenticate = authenticate
        self.ready = ready
        self.sink = sink
        self.counters = counters
        var generator = SystemRandomNumberGenerator()
        key = Data((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }).base64EncodedString()
    }

    func channelActive(context: ChannelHandlerContext) {
        var request = context.channel.allocator.buffer(capacity: 256)
        request.writeString(
            "GET /v1/socket HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n")
        context.writeAndFlush(wrapOutboundOut(request), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if pending == nil {
            pending = bytes
        } else {
            // Only a partial frame is left over: move it to the front before appending.
            pending!.discardReadBytes()
            pending!.writeBuffer(&bytes)
        }
        if phase == .upgrading {
            guard upgrade(context) else { return }
        }
        readFrames(context)
        if let buffer = pending, buffer.readableBytes == 0 { pending = nil }
    }

    func channelInactive(context: ChannelHandlerContext) {
        settle(.failure(ChatSocketError("the server closed the socket before it was authenticated")))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        settle(.failure(error))
        context.close(promise: nil)
    }

    private func settle(_ result: Result<Void, any Error>) {
        guard !settled else { return }
        settled = true
        ready.completeWith(result)
    }

    /// Consumes the upgrade response once it is whole; false while it is not (or was refused).
    private func upgrade(_ context: ChannelHandlerContext) -> Bool {
        guard let buffer = pending,
            let end = buffer.withUnsafeReadableBytes({ Self.offset(of: [13, 10, 13, 10], in: $0) })
        else { return false }
        let length = end + 4
        let head = buffer.getString(at: buffer.readerIndex, length: length) ?? ""
        pending!.moveReaderIndex(forwardBy: length)
        guard head.hasPrefix("HTTP/1.1 101") else {
            let status = head.split(separator: "\r\n").first.map(String.init) ?? head
            settle(.failure(ChatSocketError("the server refused the WebSocket upgrade: \(status)")))
            context.close(promise: nil)
            return false
        }
        phase = .authenticating
        var frame = context.channel.allocator.buffer(capacity: authenticate.utf8.count)
        frame.writeString(authenticate)
        write(context, opcode: 0x1, payload: frame)
        return true
    }

    /// Parses every whole frame in `pending`.
    private func readFrames(_ context: ChannelHandlerContext) {
        while var buffer = pending, buffer.readableBytes >= 2 {
            let start = buffer.readerIndex
            let first = buffer.getInteger(at: start, as: UInt8.self)!
            let second = buffer.getInteger(at: start + 1, as: UInt8.self)!
            var header = 2
            var length = Int(second & 0x7F)
            if length == 126 {
                guard let extended = buffer.getInteger(at: start + 2, as: UInt16.self) else { return }
                length = Int(extended)
                header = 4
            } else if length == 127 {
                guard let extended = buffer.getInteger(at: start + 2, as: UInt64.self) else { return }
                length = Int(extended)
                header = 10
            }
            // Servers never mask (RFC 6455 section 5.1); a masked frame is skipped with its key.
            let masked = second & 0x80 != 0
            if masked { header += 4 }
            guard buffer.readableBytes >= header + length else { return }
            let payload = buffer.getSlice(at: start + header, length: length)!
            buffer.moveReaderIndex(forwardBy: header + length)
            pending = buffer
            guard !masked else { continue }
            handle(context, opcode: first & 0x0F, final: first & 0x80 != 0, payload: payload)
        }
    }

    private func handle(_ context: ChannelHandlerContext, opcode: UInt8, final: Bool, payload: ByteBuffer) {
        switch opcode {
        case 0x1:
            if final {
                message(context, payload)
            } else {
                fragments = payload
            }
        case 0x0:
            guard var collected = fragments else { return }
            var more = payload
            collected.writeBuffer(&more)
            if final {
                fragments = nil
                message(context, collected)
            } else {
                fragments = collected
            }
        case 0x8:
            write(context, opcode: 0x8, payload: payload)
            context.close(promise: nil)
        case 0x9:
            // The server's keepalive: a socket that does not answer is closed.
            write(context, opcode: 0xA, payload: payload)
        default:
            break
        }
    }

    private static let chatUpdatePrefix = Array(#"{"type":"chatUpdate""#.utf8)
    private static let chatsChangedPrefix = Array(#"{"type":"chatsChanged""#.utf8)
    private static let sequenceKey = Array(#","seq":"#.utf8)
    private static let successStatus = Array(#""status":200"#.utf8)

    /// What a text message from the server is, as far as the run cares.
    private enum Message {
        case update(Int64)
        case chatsChanged
        case success
        case other
    }

    /// One whole text message. Frames are encoded with sorted keys, so `type` comes first;
    /// an update's own `seq` is the only one outside a quoted string after `messageId`.
    private func message(_ context: ChannelHandlerContext, _ payload: ByteBuffer) {
        let arrival = Clock.wallMicroseconds()
        let kind = payload.withUnsafeReadableBytes { Self.classify($0) }
        switch (phase, kind) {
        case (.upgrading, _):
            return
        case (.authenticating, .success):
            phase = .receiving
            settle(.success(()))
        case (.authenticating, _):
            let text = payload.getString(at: payload.readerIndex, length: min(payload.readableBytes, 300)) ?? ""
            settle(.failure(ChatSocketError("authenticate failed: \(text)")))
            context.close(promise: nil)
        case (.receiving, .update(let sequence)):
            sink.arrivals.withLock { $0.append(ChatArrival(sequence: sequence, micros: arrival)) }
            counters.updates.add(1, ordering: .relaxed)
        case (.receiving, .chatsChanged):
            counters.overflows.add(1, ordering: .relaxed)
        case (.receiving, _):
            break
        }
    }

    private static func classify(_ bytes: UnsafeRawBufferPointer) -> Message {
        if bytes.starts(with: chatUpdatePrefix) {
            guard let key = offset(of: sequenceKey, in: bytes) else { return .other }
            var sequence: Int64 = 0
            var index = key + sequenceKey.count
            while index < bytes.count, (48...57).contains(bytes[index]) {
                sequence = sequence * 10 + Int64(bytes[index] - 48)
                index += 1
            }
            return .update(sequence)
        }
        if bytes.starts(with: chatsChangedPrefix) { return .chatsChanged }
        return offset(of: successStatus, in: bytes) == nil ? .other : .success
    }

    /// Where `needle` first occurs in `haystack`. A plain loop: the standard library's generic
    /// search over a byte buffer view costs tens of microseconds a frame, more than the server's
    /// work per delivery.
    static func offset(of needle: [UInt8], in haystack: UnsafeRawBufferPointer) -> Int? {
        guard let first = needle.first, needle.count <= haystack.count else { return nil }
        var index = 0
        let last = haystack.count - needle.count
        search: while index <= last {
            defer { index += 1 }
            guard haystack[index] == first else { continue }
            for step in 1..<needle.count where haystack[index + step] != needle[step] { continue search }
            return index
        }
        return nil
    }

    /// Writes one client frame: always final, always masked (RFC 6455 section 5.3).
    private func write(_ context: ChannelHandlerContext, opcode: UInt8, payload: ByteBuffer) {
        let count = payload.readableBytes
        var frame = context.channel.allocator.buffer(capacity: count + 14)
        frame.writeInteger(0x80 | opcode)
        if count < 126 {
            frame.writeInteger(UInt8(0x80 | count))
        } else if count <= 0xFFFF {
            frame.writeInteger(UInt8(0x80 | 126))
            frame.writeInteger(UInt16(count))
        } else {
            frame.writeInteger(UInt8(0x80 | 127))
            frame.writeInteger(UInt64(count))
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame.writeBytes(mask)
        for (index, byte) in payload.readableBytesView.enumerated() { frame.writeInteger(byte ^ mask[index & 3]) }
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }
}
