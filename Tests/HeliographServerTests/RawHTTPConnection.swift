import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A plain TCP connection that sends exact bytes and reads what comes back, so tests see the
/// server's HTTP parser without a client library correcting or refusing the request first.
final class RawHTTPConnection: @unchecked Sendable {
    private let fd: Int32

    /// What the server sent before it closed the connection or the deadline passed.
    struct Reply {
        var bytes: [UInt8]
        /// The server closed (or reset) the connection before the deadline.
        var closed: Bool
        /// How long after the read began the server closed the connection, or the deadline
        /// passed, timed on the reading thread (a busy test process does not lengthen it).
        var elapsed: Duration = .zero
        /// The error of a reset connection (0 for an orderly close).
        var resetError: Int32 = 0

        /// The status of the first response, if a status line arrived.
        var status: Int? {
            let text = String(decoding: bytes.prefix(64), as: UTF8.self)
            guard text.hasPrefix("HTTP/1.") else { return nil }
            let parts = text.split(separator: " ", maxSplits: 2)
            return parts.count > 1 ? Int(parts[1]) : nil
        }

        /// The text of the reply (head and body).
        var text: String { String(decoding: bytes, as: UTF8.self) }
    }

    /// Connects to `127.0.0.1:port`.
    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let error = errno
            Glibc.close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: error) ?? .ECONNREFUSED)
        }
    }

    deinit { Glibc.close(fd) }

    /// Sends `bytes`; false when the server already closed the connection.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }

    /// Sends the UTF-8 bytes of `text`.
    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Half-closes: the server reads the end of the request stream.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads until the server closes the connection or `seconds` pass; with `untilHead`, stops
    /// as soon as a complete response head arrived.
    func read(for seconds: Double, untilHead: Bool = false) async -> Reply {
        let fd = fd
        return await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                let started = ContinuousClock.now
                let deadline = Date().addingTimeInterval(seconds)
                var reply = Reply(bytes: [], closed: false)
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let left = deadline.timeIntervalSinceNow
                    guard left > 0 else { break }
                    var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    guard poll(&poller, 1, Int32(max(1, left * 1000))) > 0 else { continue }
                    let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    if count <= 0 {
                        if count < 0 { reply.resetError = errno }
                        reply.closed = true
                        break
                    }
                    reply.bytes += buffer[..<count]
                    if untilHead, reply.text.contains("\r\n\r\n") { break }
                }
                reply.elapsed = ContinuousClock.now - started
                continuation.resume(returning: reply)
            }
        }
    }
}
