import Foundation
import Hummingbird
import NIOCore

/// Where a request came from, as rate limits count it.
///
/// IPv4 addresses count one by one. IPv6 addresses count by their /64 prefix: one subscriber
/// usually holds a whole /64, so counting single addresses would give one client 2^64 buckets.
public struct ClientAddress: Sendable, Hashable, CustomStringConvertible {
    /// The bucket key: `203.0.113.7`, `2001:db8:1:2::/64`, `unix` or `unknown`.
    public let key: String
    /// Whether the peer is this machine (127.0.0.0/8 or ::1).
    public let isLoopback: Bool

    public var description: String { key }

    /// The address of a connected peer.
    public init(_ address: SocketAddress?) {
        switch address {
        case .v4(let v4):
            // The 4 address bytes of `sockaddr_in`, at offset 4 (after family and port), read
            // by offset for the same reason as below.
            let octets = withUnsafeBytes(of: v4.address) { Array($0[4..<8]) }
            self.init(ipv4: octets)
        case .v6(let v6):
            // The 16 address bytes of `sockaddr_in6`, at offset 8 on Linux and on Darwin (after
            // family, port and flow info). Read by offset: naming `sin6_addr` needs the C module
            // that declares it, which this target does not import.
            let bytes = withUnsafeBytes(of: v6.address) { Array($0[8..<24]) }
            // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
            if bytes.prefix(10).allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
                self.init(ipv4: Array(bytes.suffix(4)))
            } else {
                let prefix = stride(from: 0, to: 8, by: 2).map {
                    String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16)
                }
                self.init(
                    key: prefix.joined(separator: ":") + "::/64",
                    isLoopback: bytes.prefix(15).allSatisfy { $0 == 0 } && bytes[15] == 1)
            }
        case .unixDomainSocket:
            // Only processes on this machine can reach a Unix socket.
            self.init(key: "unix", isLoopback: true)
        case nil:
            self.init(key: "unknown", isLoopback: false)
        }
    }

    private init(key: String, isLoopback: Bool) {
        self.key = key
        self.isLoopback = isLoopback
    }

    private init(ipv4 octets: [UInt8]) {
        self.init(key: octets.map(String.init).joined(separator: "."), isLoopback: octets.first == 127)
    }

    /// The address in text (`198.51.100.4`, `2001:db8::1`), or nil if it is not one.
    init?(parsing text: String) {
        guard let address = try? SocketAddress(ipAddress: text.trimmingCharacters(in: .whitespaces), port: 0) else {
            return nil
        }
        self.init(address)
    }
}

/// Decides which address a request counts against: the TCP peer, or, behind a trusted reverse
/// proxy, the address the proxy appended to `X-Forwarded-For`.
public struct ClientAddressResolver: Sendable {
    /// Whether `X-Forwarded-For` is believed. Only safe when every request arrives through a
    /// proxy that appends the real peer; otherwise any client could choose its own address.
    public let trustForwardedFor: Bool

    /// A resolver; `trustForwardedFor` is off unless the server is configured behind a proxy.
    public init(trustForwardedFor: Bool) {
        self.trustForwardedFor = trustForwardedFor
    }

    /// The client of a request from `peer` with `headers`.
    ///
    /// With trust on, the last entry of `X-Forwarded-For` is the one the nearest proxy added
    /// (nginx's `$proxy_add_x_forwarded_for` appends `$remote_addr`); earlier entries come from
    /// the client and are ignored. A missing or malformed header falls back to the peer.
    public func resolve(peer: SocketAddress?, headers: HTTPFields) -> ClientAddress {
        if trustForwardedFor, let last = Self.lastForwardedHop(headers), let forwarded = ClientAddress(parsing: last) {
            return forwarded
        }
        return ClientAddress(peer)
    }

    /// The last entry over every `X-Forwarded-For` line, which a proxy may have split.
    static func lastForwardedHop(_ headers: HTTPFields) -> String? {
        let hops = headers.filter { $0.name.canonicalName == "x-forwarded-for" }.flatMap { $0.value.split(separator: ",") }
        return hops.last.map { String($0).trimmingCharacters(in: .whitespaces) }
    }

    /// Whether a request passed through a proxy: then its TCP peer says nothing about the client.
    static func isProxied(_ headers: HTTPFields) -> Bool {
        headers.contains { ["x-forwarded-for", "forwarded", "x-real-ip"].contains($0.name.canonicalName) }
    }
}
