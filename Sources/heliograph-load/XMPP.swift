import Foundation
import HTTPTypes
import HeliographCore
import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import WSClient

/// A minimal XMPP-over-WebSocket client (RFC 7395) for the side-by-side benchmark with ejabberd:
/// stream open, anonymous SASL, resource binding, then chat messages to full JIDs.
///
/// It speaks just enough XMPP for the load workloads and finds the few elements it needs by
/// text search, which is fine for the server's own well-formed output but is not a general
/// XML parser.
final class XMPPConnection: Sendable {
    private let outbound = Mutex<WebSocketOutboundWriter?>(nil)
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let frames: AsyncStream<String>
    private let framesContinuation: AsyncStream<String>.Continuation
    private let bound = Mutex<String?>(nil)

    /// The full JID the server bound for this connection.
    var jid: String { bound.withLock { $0 ?? "" } }

    private init() {
        (frames, framesContinuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// Connects to `url` (e.g. `ws://127.0.0.1:5280/ws`) and logs in anonymously.
    static func connect(to url: String, domain: String = "localhost") async throws -> XMPPConnection {
        let connection = XMPPConnection()
        try await withCheckedThrowingContinuation { (opened: CheckedContinuation<Void, any Error>) in
            let openedOnce = Box<CheckedContinuation<Void, any Error>?>(opened)
            let task = Task {
                do {
                    var configuration = WebSocketClientConfiguration()
                    configuration.maxFrameSize = 1 << 20
                    // RFC 7395 §3.2: the client offers the "xmpp" subprotocol.
                    configuration.additionalHeaders[.secWebSocketProtocol] = "xmpp"
                    _ = try await WebSocketClient.connect(
                        url: url, configuration: configuration, logger: Logger(label: "xmpp")
                    ) { inbound, outbound, _ in
                        connection.outbound.withLock { $0 = outbound }
                        openedOnce.value.withLock { $0.take() }?.resume()
                        for try await message in inbound.messages(maxSize: 1 << 22) {
                            if case .text(let text) = message { connection.framesContinuation.yield(text) }
                        }
                    }
                } catch {
                    openedOnce.value.withLock { $0.take() }?.resume(throwing: error)
                }
                connection.framesContinuation.finish()
            }
            connection.task.withLock { $0 = task }
        }
        var iterator = connection.frames.makeAsyncIterator()
        func waitFor(_ marker: String) async throws -> String {
            while let frame = await iterator.next() {
                if frame.contains("<failure") || frame.contains("type='error'") {
                    throw HeliographError(.internalError, "XMPP server refused: \(frame)")
                }
                if frame.contains(marker) { return frame }
            }
            throw HeliographError(.internalError, "XMPP stream closed while waiting for \(marker)")
        }
        let open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='\(domain)' version='1.0'/>"
        try await connection.write(open)
        _ = try await waitFor("<stream:features")
        try await connection.write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        _ = try await waitFor("<success")
        // After SASL the stream restarts (RFC 6120 §6.4.6).
        try await connection.write(open)
        _ = try await waitFor("<stream:features")
        try await connection.write("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        let bind = try await waitFor("<jid>")
        guard let start = bind.range(of: "<jid>"), let end = bind.range(of: "</jid>") else {
            throw HeliographError(.internalError, "no JID in the bind result")
        }
        connection.bound.withLock { $0 = String(bind[start.upperBound..<end.lowerBound]) }
        return connection
    }

    private func write(_ text: String) async throws {
        guard let writer = outbound.withLock({ $0 }) else { throw HeliographError(.internalError, "XMPP socket not open") }
        try await writer.write(.text(text))
    }

    /// Sends a chat message.
    func send(body: String, to jid: String) async throws {
        try await write("<message to='\(jid)' type='chat'><body>\(body)</body></message>")
    }

    /// The bodies of chat messages received, in order. Finishes when the socket closes.
    var bodies: AsyncCompactMapSequence<AsyncStream<String>, String> {
        frames.compactMap { frame in
            guard frame.hasPrefix("<message"), let start = frame.range(of: "<body>"),
                let end = frame.range(of: "</body>", range: start.upperBound..<frame.endIndex)
            else { return nil }
            return String(frame[start.upperBound..<end.lowerBound])
        }
    }

    /// Closes the stream and the socket.
    func close() async {
        try? await write("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        try? await outbound.withLock({ $0 })?.close(.normalClosure, reason: nil)
        task.withLock { $0 }?.cancel()
    }
}

/// A mutex-protected value that closures can share.
final class Box<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
}
