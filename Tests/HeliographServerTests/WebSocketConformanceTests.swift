import Foundation
import HeliographServer
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// RFC 6455 as a hostile client sees it: a hand-written upgrade request and hand-built frames
/// on a plain TCP socket, so nothing on the client side corrects what is sent.
@Suite("WebSocket conformance (RFC 6455)")
struct WebSocketConformanceTests {
    @Test("an unmasked client frame closes the socket with 1002")
    func unmaskedClientFrame() async throws {
        try await TestServer.run { server in
            let port = server.url.port!
            try await offThePool {
                let socket = try HandWrittenWebSocket.upgraded(port: port)
                try socket.send(HandBuiltFrame.build(opcode: 0x1, payload: Array(#"{"type":"ack","seq":1}"#.utf8), masked: false))
                #expect(try socket.closeCode() == 1002)
            }
        }
    }

    @Test("a text frame that is not UTF-8 closes the socket with 1007")
    func invalidUTF8Text() async throws {
        try await TestServer.run { server in
            let port = server.url.port!
            try await offThePool {
                let socket = try HandWrittenWebSocket.upgraded(port: port)
                // 0xC3 starts a two-byte sequence; 0x28 cannot continue it.
                try socket.send(HandBuiltFrame.build(opcode: 0x1, payload: [0x7B, 0xC3, 0x28, 0x7D]))
                #expect(try socket.closeCode() == 1007)
            }
        }
    }

    @Test("a fragmented message over the size limit closes the socket with 1009")
    func fragmentedMessageTooBig() async throws {
        try await TestServer.run(configure: { $0.maxFrameBytes = 1024 }) { server in
            let port = server.url.port!
            try await offThePool {
                let socket = try HandWrittenWebSocket.upgraded(port: port)
                // Each fragment is within the frame limit; together they are not.
                try socket.send(HandBuiltFrame.build(fin: false, opcode: 0x1, payload: Array(repeating: 0x20, count: 800)))
                try socket.send(HandBuiltFrame.build(fin: true, opcode: 0x0, payload: Array(repeating: 0x20, count: 800)))
                #expect(try socket.closeCode() == 1009)
            }
        }
    }

    @Test("a continuation frame without a started message closes the socket with 1002")
    func continuationWithoutStart() async throws {
        try await TestServer.run { server in
            let port = server.url.port!
            try await offThePool {
                let socket = try HandWrittenWebSocket.upgraded(port: port)
                try socket.send(HandBuiltFrame.build(opcode: 0x0, payload: Array(#"{"type":"ack","seq":1}"#.utf8)))
                #expect(try socket.closeCode() == 1002)
            }
        }
    }

    @Test("an upgrade asking for WebSocket version 8 is answered 426 naming version 13")
    func unsupportedVersion() async throws {
        do {
            try await TestServer.run { server in
                let port = server.url.port!
                try await offThePool {
                    let socket = try HandWrittenWebSocket(port: port)
                    let head = try socket.upgrade(version: "8")
                    #expect(head.hasPrefix("HTTP/1.1 426"))
                    #expect(head.lowercased().contains("sec-websocket-version: 13"))
                }
            }
        }
    }

    @Test("an upgrade without Sec-WebSocket-Key is answered 400")
    func missingKey() async throws {
        do {
            try await TestServer.run { server in
                let port = server.url.port!
                try await offThePool {
                    let socket = try HandWrittenWebSocket(port: port)
                    let head = try socket.upgrade(key: nil)
                    #expect(head.hasPrefix("HTTP/1.1 400"))
                    #expect(head.contains("Sec-WebSocket-Key"))
                }
            }
        }
    }

    @Test("well-formed frames still reach the gateway: a fragmented text message split inside a character is answered")
    func validFragmentsPass() async throws {
        try await TestServer.run { server in
            let port = server.url.port!
            try await offThePool {
                let socket = try HandWrittenWebSocket.upgraded(port: port)
                // "é" (C3 A9) is split across the two fragments; a ping comes between them.
                let text = Array(#"{"type":"request","id":"r1","method":"nosuch","body":{"x":"é"}}"#.utf8)
                let split = text.firstIndex(of: 0xC3)! + 1
                try socket.send(HandBuiltFrame.build(fin: false, opcode: 0x1, payload: Array(text[..<split])))
                try socket.send(HandBuiltFrame.build(opcode: 0x9, payload: [1, 2]))
                try socket.send(HandBuiltFrame.build(opcode: 0x0, payload: Array(text[split...])))
                let answer = try socket.nextTextFrame()
                #expect(answer.contains("unknown_method"))
                #expect(answer.contains(#""id":"r1""#))
            }
        }
    }
}

/// Runs blocking socket code on a thread of its own: blocking one of the few threads of the
/// concurrency pool would stall the server's upgrade, which runs on that pool.
func offThePool(_ body: @escaping @Sendable () throws -> Void) async throws {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// Builds client frames by hand (RFC 6455 section 5.2).
enum HandBuiltFrame {
    static func build(fin: Bool = true, opcode: UInt8, payload: [UInt8], masked: Bool = true) -> [UInt8] {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        switch payload.count {
        case 0..<126: frame.append(maskBit | UInt8(payload.count))
        case 126...0xFFFF:
            frame.append(maskBit | 126)
            frame.append(contentsOf: [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)])
        default:
            frame.append(maskBit | 127)
            frame.append(contentsOf: (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) })
        }
        guard masked else { return frame + payload }
        let key: [UInt8] = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame.append(contentsOf: key)
        frame.append(contentsOf: payload.enumerated().map { $0.element ^ key[$0.offset & 3] })
        return frame
    }
}

/// A blocking TCP socket to the test server, with a receive timeout so a test never hangs.
final class HandWrittenWebSocket {
    private let descriptor: Int32
    private var buffer: [UInt8] = []

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(port: Int) throws {
        #if canImport(Glibc)
            descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            descriptor = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { throw Failure(description: "socket() failed") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(descriptor)
            throw Failure(description: "connect() failed")
        }
    }

    deinit { close(descriptor) }

    /// A socket that completed the opening handshake.
    static func upgraded(port: Int) throws -> HandWrittenWebSocket {
        let socket = try HandWrittenWebSocket(port: port)
        let head = try socket.upgrade()
        guard head.hasPrefix("HTTP/1.1 101") else { throw Failure(description: "no upgrade: \(head)") }
        return socket
    }

    /// Sends an upgrade request for /v1/socket and returns the response head.
    func upgrade(version: String = "13", key: String? = "dGhlIHNhbXBsZSBub25jZQ==") throws -> String {
        var request = "GET /v1/socket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        if let key { request += "Sec-WebSocket-Key: \(key)\r\n" }
        request += "Sec-WebSocket-Version: \(version)\r\n\r\n"
        try send(Array(request.utf8))
        while true {
            if let end = buffer.firstRange(of: Array("\r\n\r\n".utf8)) {
                var head = String(decoding: buffer[..<end.upperBound], as: UTF8.self)
                buffer.removeSubrange(..<end.upperBound)
                // A refusal carries a body naming the reason: keep what has arrived of it.
                if !head.hasPrefix("HTTP/1.1 101") {
                    while (try? receiveMore()) == true {}
                    head += String(decoding: buffer, as: UTF8.self)
                }
                return head
            }
            guard try receiveMore() else { throw Failure(description: "closed before a response head") }
        }
    }

    func send(_ bytes: [UInt8]) throws {
        let sent = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { throw Failure(description: "send() failed") }
    }

    /// Reads more bytes; false when the peer closed.
    private func receiveMore() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count < 0 { throw Failure(description: "recv() failed or timed out (errno \(errno))") }
        buffer.append(contentsOf: chunk[..<count])
        return count > 0
    }

    /// The next whole server frame: opcode and payload (servers never mask).
    private func nextFrame() throws -> (opcode: UInt8, payload: [UInt8])? {
        while true {
            if buffer.count >= 2 {
                var length = Int(buffer[1] & 0x7F)
                var offset = 2
                if length == 126, buffer.count >= 4 {
                    length = Int(buffer[2]) << 8 | Int(buffer[3])
                    offset = 4
                } else if length == 127, buffer.count >= 10 {
                    length = buffer[2..<10].reduce(0) { $0 << 8 | Int($1) }
                    offset = 10
                }
                if length < 126 || offset > 2, buffer.count >= offset + length {
                    let frame = (buffer[0] & 0x0F, Array(buffer[offset..<offset + length]))
                    buffer.removeSubrange(..<(offset + length))
                    return frame
                }
            }
            guard try receiveMore() else { return nil }
        }
    }

    /// The code of the server's close frame, skipping data frames and pings before it; nil when
    /// the connection ends without one.
    func closeCode() throws -> Int? {
        while let frame = try nextFrame() {
            if frame.opcode == 0x8 {
                guard frame.payload.count >= 2 else { return nil }
                return Int(frame.payload[0]) << 8 | Int(frame.payload[1])
            }
        }
        return nil
    }

    /// The next text frame's content, skipping pings.
    func nextTextFrame() throws -> String {
        while let frame = try nextFrame() {
            if frame.opcode == 0x1 { return String(decoding: frame.payload, as: UTF8.self) }
            if frame.opcode == 0x8 { throw Failure(description: "closed: \(frame.payload)") }
        }
        throw Failure(description: "connection ended")
    }
}
