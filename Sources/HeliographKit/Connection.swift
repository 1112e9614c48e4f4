import Foundation
import HeliographCore
import HeliographProtocol
import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import WSClient

/// Something the server pushed on a socket.
public enum ConnectionEvent: Sendable {
    /// An envelope for this device.
    case envelope(WireEnvelope)
    /// An error frame not tied to a request (for example a refused acknowledgement, a revocation).
    case error(HeliographError)
    /// A new update of a group or channel the account is a member of.
    case chatUpdate(WireChatUpdate)
    /// The account's read position in a chat moved on another of its devices.
    case readPosition(ChatID, Int64)
    /// The server dropped chat updates for this socket: sync the chats.
    case chatsChanged
}

/// One WebSocket to a Heliograph server: requests with ids, and pushed events.
///
/// Requests may be issued concurrently; each waits for the response with its id. When the
/// socket closes every waiting request fails with ``ConnectionClosed`` and ``events`` finishes.
public final class HeliographConnection: Sendable {
    private struct State {
        var outbound: WebSocketOutboundWriter?
        var pending: [String: CheckedContinuation<Data, any Error>] = [:]
        var nextID: UInt64 = 0
        var closed: ConnectionClosed?
        var closeReason: HeliographError?
    }

    private let state = Mutex(State())
    private let eventContinuation: AsyncStream<ConnectionEvent>.Continuation
    private let runTask = Mutex<Task<Void, Never>?>(nil)

    /// Events pushed by the server, in arrival order. Finishes when the socket closes.
    public let events: AsyncStream<ConnectionEvent>

    private init(requestTimeout: Duration) {
        self.requestTimeout = requestTimeout
        (events, eventContinuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// How long a request waits for its response before failing with ``RequestTimedOut``.
    public let requestTimeout: Duration

    /// Opens a socket to `server` (an `http(s)://` or `ws(s)://` base URL), failing after
    /// `connectTimeout`; requests on it fail after `requestTimeout` without a response.
    public static func connect(
        to server: URL, connectTimeout: Duration = .seconds(10), requestTimeout: Duration = .seconds(30),
        logger: Logger = Logger(label: "heliograph.kit")
    ) async throws -> HeliographConnection {
        let connection = HeliographConnection(requestTimeout: requestTimeout)
        let url = try socketURL(for: server)
        try await withCheckedThrowingContinuation { (opened: CheckedContinuation<Void, any Error>) in
            let openedOnce = LockedValue<CheckedContinuation<Void, any Error>?>(opened)
            let task = Task {
                do {
                    var configuration = WebSocketClientConfiguration()
                    configuration.maxFrameSize = 1 << 20
                    configuration.autoPing = .enabled(timePeriod: .seconds(30))
                    let closeFrame = try await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) {
                        inbound, outbound, _ in
                        connection.state.withLock { $0.outbound = outbound }
                        openedOnce.withLock { $0.take() }?.resume()
                        for try await message in inbound.messages(maxSize: 1 << 22) {
                            if case .text(let text) = message { connection.receive(Data(text.utf8)) }
                        }
                    }
                    connection.finish(
                        ConnectionClosed(
                            reason: closeFrame?.reason.map { HeliographError(.shuttingDown, $0) },
                            code: closeFrame.map { UInt16(webSocketErrorCode: $0.closeCode) }))
                } catch {
                    openedOnce.withLock { $0.take() }?.resume(throwing: ConnectionFailed(url: url, underlying: error))
                    connection.finish(ConnectionClosed(reason: nil))
                }
            }
            connection.runTask.withLock { $0 = task }
            // A server that accepts TCP but never completes the upgrade must not hang the caller.
            Task {
                try? await Task.sleep(for: connectTimeout)
                if let waiting = openedOnce.withLock({ $0.take() }) {
                    task.cancel()
                    waiting.resume(
                        throwing: ConnectionFailed(url: url, underlying: HeliographError(.temporarilyUnavailable, "timed out")))
                }
            }
        }
        return connection
    }

    /// The socket URL for a server base URL: `http://h:p` → `ws://h:p/v1/socket`.
    static func socketURL(for server: URL) throws -> String {
        guard var components = URLComponents(url: server, resolvingAgainstBaseURL: false), let scheme = components.scheme
        else { throw HeliographError(.badRequest, "'\(server)' is not a server URL") }
        switch scheme {
        case "http", "ws": components.scheme = "ws"
        case "https", "wss": components.scheme = "wss"
        default: throw HeliographError(.badRequest, "server URL must start with http://, https://, ws:// or wss://")
        }
        components.path = components.path.hasSuffix("/") ? components.path + "v1/socket" : components.path + "/v1/socket"
        guard let text = components.string else { throw HeliographError(.badRequest, "'\(server)' is not a server URL") }
        return text
    }

    /// Calls a method and waits for its result; a failed response throws its `HeliographError`.
    public func request<Body: Codable & Sendable, Result: Codable & Sendable>(
        _ method: APIMethod, _ body: Body, as result: Result.Type = Result.self
    ) async throws -> Result {
        let data = try await exchange { id in
            String(decoding: try WireCodec.encode(RequestFrame(id: id, method: method, body: body)), as: UTF8.self)
        }
        guard let body = try WireCodec.decode(ResponseFrame<Result>.self, from: data).body else {
            throw HeliographError(.badRequest, "the server's response to \(method.rawValue) has no body")
        }
        return body
    }

    /// Sends a request with any method name and raw JSON body, returning the raw response frame.
    /// For diagnostics and tests of the server's handling of unusual requests.
    public func requestRaw(method: String, bodyJSON: String) async throws -> Data {
        try await exchange { id in
            let methodJSON = String(decoding: try WireCodec.encode(method), as: UTF8.self)
            return #"{"type":"request","id":"\#(id)","method":\#(methodJSON),"body":\#(bodyJSON)}"#
        }
    }

    /// Writes the frame made for a fresh request id and waits for the response with that id.
    private func exchange(_ makeFrame: (String) throws -> String) async throws -> Data {
        let (id, outbound) = try state.withLock { state -> (String, WebSocketOutboundWriter) in
            if let closed = state.closed { throw closed }
            guard let outbound = state.outbound else { throw ConnectionClosed(reason: nil) }
            state.nextID += 1
            return ("r\(state.nextID)", outbound)
        }
        let frame = try makeFrame(id)
        let data = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Data, any Error>) in
            let closed = state.withLock { state -> ConnectionClosed? in
                if let closed = state.closed { return closed }
                state.pending[id] = continuation
                return nil
            }
            if let closed {
                continuation.resume(throwing: closed)
                return
            }
            Task {
                do {
                    try await outbound.write(.text(frame))
                } catch {
                    let waiting = self.state.withLock { $0.pending.removeValue(forKey: id) }
                    waiting?.resume(throwing: ConnectionClosed(reason: nil))
                }
            }
            Task {
                try? await Task.sleep(for: self.requestTimeout)
                let waiting = self.state.withLock { $0.pending.removeValue(forKey: id) }
                waiting?.resume(throwing: RequestTimedOut(after: self.requestTimeout))
            }
        }
        if let error = try WireCodec.decode(ServerFrameHead.self, from: data).error { throw error.heliographError }
        return data
    }

    /// Acknowledges everything up to `sequence` (no response; a refusal arrives as an error event).
    public func acknowledge(_ sequence: Int64) async throws {
        let outbound = try state.withLock { state -> WebSocketOutboundWriter in
            if let closed = state.closed { throw closed }
            guard let outbound = state.outbound else { throw ConnectionClosed(reason: nil) }
            return outbound
        }
        try await outbound.write(.text(String(decoding: try WireCodec.encode(AckFrame(seq: sequence)), as: UTF8.self)))
    }

    /// Sends raw text as one frame: for tests of the server's handling of malformed input.
    public func sendRaw(_ text: String) async throws {
        guard let outbound = state.withLock({ $0.outbound }) else { throw ConnectionClosed(reason: nil) }
        try await outbound.write(.text(text))
    }

    /// Closes the socket.
    public func close() async {
        let outbound = state.withLock { $0.outbound }
        try? await outbound?.close(.normalClosure, reason: "client closing")
    }

    /// Whether the socket has closed.
    public var isClosed: Bool { state.withLock { $0.closed != nil } }

    private func receive(_ data: Data) {
        guard let head = try? WireCodec.decode(ServerFrameHead.self, from: data) else { return }
        switch head.type {
        case .response:
            let waiting = head.id.flatMap { id in state.withLock { $0.pending.removeValue(forKey: id) } }
            waiting?.resume(returning: data)
        case .envelope:
            if let frame = try? WireCodec.decode(EnvelopeFrame.self, from: data) {
                eventContinuation.yield(.envelope(frame.envelope))
            }
        case .chatUpdate:
            if let frame = try? WireCodec.decode(ChatUpdateFrame.self, from: data) {
                eventContinuation.yield(.chatUpdate(frame.update))
            }
        case .readPosition:
            if let frame = try? WireCodec.decode(ReadPositionFrame.self, from: data) {
                eventContinuation.yield(.readPosition(frame.chatId, frame.readSeq))
            }
        case .chatsChanged:
            eventContinuation.yield(.chatsChanged)
        case .error:
            if let error = head.error {
                let failure = error.heliographError
                // A revocation or shutdown arrives just before the close: remember it as the reason.
                if failure.code == .deviceRevoked || failure.code == .shuttingDown || failure.code == .tokenExpired {
                    state.withLock { state in if state.closed == nil { state.closeReason = failure } }
                }
                eventContinuation.yield(.error(failure))
            }
        }
    }

    private func finish(_ closed: ConnectionClosed) {
        let waiting = state.withLock { state -> [CheckedContinuation<Data, any Error>] in
            if state.closed == nil {
                state.closed = ConnectionClosed(reason: state.closeReason ?? closed.reason, code: closed.code)
            }
            defer { state.pending.removeAll() }
            return Array(state.pending.values)
        }
        let reason = state.withLock { $0.closed }
        for continuation in waiting { continuation.resume(throwing: reason ?? closed) }
        eventContinuation.finish()
    }

    /// Why the socket closed, if the server said.
    public var closeReason: HeliographError? { state.withLock { $0.closed?.reason } }

    /// The WebSocket close code the server closed with (RFC 6455 section 7.4), if it sent one.
    public var closeCode: UInt16? { state.withLock { $0.closed?.code } }
}

/// The socket closed; waiting requests fail with this. `reason` is the server's explanation, if any.
public struct ConnectionClosed: Error, CustomStringConvertible {
    /// What the server said before closing (revoked, shutting down), if anything.
    public var reason: HeliographError?
    /// The server's WebSocket close code (1001 going away, 1008 policy violation, …), if any.
    public var code: UInt16? = nil
    public var description: String {
        reason.map { "connection closed: \($0.message)" } ?? "connection closed"
    }
}

/// A value behind a lock that several tasks may share.
final class LockedValue<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

/// A request got no response in time; the socket may be stuck and is best closed.
public struct RequestTimedOut: Error, CustomStringConvertible {
    /// The limit that passed.
    public var after: Duration
    public var description: String { "no response from the server within \(after)" }
}

/// The socket could not be opened.
public struct ConnectionFailed: Error, CustomStringConvertible {
    /// The socket URL tried.
    public var url: String
    /// The transport's error.
    public var underlying: any Error
    public var description: String { "cannot connect to \(url): \(underlying)" }
}
