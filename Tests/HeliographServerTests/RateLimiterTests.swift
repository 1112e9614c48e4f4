import Foundation
import HeliographCore
import HeliographServer
import Hummingbird
import NIOCore
import Testing

@Suite("Token buckets and client addresses")
struct RateLimiterTests {
    @Test("a flood of distinct keys (addresses) keeps the bucket map bounded, and a drained bucket stays drained")
    func boundedUnderManyKeys() throws {
        let limiter = RateLimiter(rate: 0.01, burst: 3, capacity: 1000)
        for _ in 0..<3 { try limiter.take("attacker", what: "tries") }
        #expect(throws: HeliographError(.rateLimited, "")) { try limiter.take("attacker", what: "tries") }
        // Every key is fresh and active: none has refilled, so only the cap can bound the map.
        for index in 0..<20_000 {
            try limiter.take("10.\(index >> 16).\((index >> 8) & 255).\(index & 255)", what: "tries")
            #expect(limiter.trackedKeys <= 1000)
        }
        // The drained bucket was kept over the fuller ones: flooding did not reset it.
        #expect(throws: HeliographError(.rateLimited, "")) { try limiter.take("attacker", what: "tries") }
    }

    @Test("taking from several buckets is all or none, and names the longest wait")
    func allOrNone() throws {
        let limiter = RateLimiter(rate: 0.5, burst: 2)
        try limiter.take(["a", "b"], what: "claims")
        try limiter.take(["a"], what: "claims")
        // "a" is empty: the pair is refused and "b" keeps its last token.
        do {
            try limiter.take(["b", "a"], what: "claims")
            Issue.record("not limited")
        } catch {
            #expect(error.code == .rateLimited)
            #expect((error.retryAfterSeconds ?? 0) >= 1)
        }
        try limiter.take(["b"], what: "claims")
        #expect(throws: HeliographError(.rateLimited, "")) { try limiter.take(["b"], what: "claims") }
    }

    @Test("a rate of 0 turns a limiter off")
    func disabled() throws {
        let limiter = RateLimiter(rate: 0, burst: 1)
        for _ in 0..<100 { try limiter.take("k", what: "things") }
        #expect(!limiter.isEnabled)
    }

    @Test("IPv4 counts per address, IPv6 per /64, IPv4-mapped IPv6 as IPv4; loopback is recognised")
    func addressKeys() throws {
        let v4 = ClientAddress(try SocketAddress(ipAddress: "203.0.113.7", port: 4000))
        #expect(v4.key == "203.0.113.7")
        #expect(!v4.isLoopback)
        let first = ClientAddress(try SocketAddress(ipAddress: "2001:db8:1:2::1", port: 1))
        let second = ClientAddress(try SocketAddress(ipAddress: "2001:db8:1:2:ffff:1:2:3", port: 1))
        let neighbour = ClientAddress(try SocketAddress(ipAddress: "2001:db8:1:3::1", port: 1))
        #expect(first.key == "2001:db8:1:2::/64")
        #expect(first == second)
        #expect(first != neighbour)
        #expect(ClientAddress(try SocketAddress(ipAddress: "::ffff:198.51.100.4", port: 1)).key == "198.51.100.4")
        #expect(ClientAddress(try SocketAddress(ipAddress: "127.0.0.1", port: 1)).isLoopback)
        #expect(ClientAddress(try SocketAddress(ipAddress: "::1", port: 1)).isLoopback)
        #expect(!ClientAddress(nil).isLoopback)
    }

    @Test("X-Forwarded-For is ignored unless trusted; trusted, its last hop counts")
    func forwardedFor() throws {
        let peer = try SocketAddress(ipAddress: "10.0.0.5", port: 5000)
        let headers: HTTPFields = [.init("X-Forwarded-For")!: "1.2.3.4, 198.51.100.9"]
        #expect(ClientAddressResolver(trustForwardedFor: false).resolve(peer: peer, headers: headers).key == "10.0.0.5")
        let trusted = ClientAddressResolver(trustForwardedFor: true)
        #expect(trusted.resolve(peer: peer, headers: headers).key == "198.51.100.9")
        // A proxy may add its own header line after the client's.
        let split: HTTPFields = [.init("X-Forwarded-For")!: "1.2.3.4", .init("X-Forwarded-For")!: "198.51.100.10"]
        #expect(trusted.resolve(peer: peer, headers: split).key == "198.51.100.10")
        // Garbage or nothing: the peer.
        #expect(trusted.resolve(peer: peer, headers: [.init("X-Forwarded-For")!: "not-an-address"]).key == "10.0.0.5")
        #expect(trusted.resolve(peer: peer, headers: [:]).key == "10.0.0.5")
    }

    @Test("metrics addresses parse as HOST:PORT, IPv6 in brackets")
    func metricsAddress() {
        #expect(MetricsAddress(parsing: "127.0.0.1:9090") == MetricsAddress(host: "127.0.0.1", port: 9090))
        #expect(MetricsAddress(parsing: "[::1]:9090") == MetricsAddress(host: "::1", port: 9090))
        #expect(MetricsAddress(parsing: "9090") == nil)
        #expect(MetricsAddress(parsing: "host:99999") == nil)
        #expect(MetricsAddress(parsing: ":9090") == nil)
    }
}
