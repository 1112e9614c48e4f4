import Foundation
import HeliographCrypto
import Synchronization

/// The origins (`scheme://host:port`) under which clients reach this server: a login proof
/// must name one of them (see ``LoginProof``), so a signature made for another server is
/// worthless here.
///
/// With `publicOrigin` configured that is the only one. Without it the origin is derived from
/// the listening address and the port actually bound (a configured port 0 is known only once
/// listening): `http://HOST:PORT`, and for a loopback or wildcard address also the loopback
/// names (`localhost`, `127.0.0.1`, `[::1]`), since a client on this machine may use any of
/// them. A server behind a reverse proxy or TLS terminator must be told its public origin.
public final class PublicOrigins: Sendable {
    private let boundPort = Mutex<Int?>(nil)

    /// Origins derived before the port is known use the configured one.
    public init() {}

    /// Records the port the server is listening on.
    func listening(on port: Int) {
        boundPort.withLock { $0 = port }
    }

    /// The accepted origins, the expected one first.
    func accepted(for configuration: ServerConfiguration) -> [ServerOrigin] {
        if let configured = configuration.publicOrigin { return [configured] }
        let port = boundPort.withLock { $0 } ?? configuration.port
        var host = configuration.host.lowercased()
        if host.contains(":"), !host.hasPrefix("[") { host = "[\(host)]" }
        let loopback = ["localhost", "127.0.0.1", "[::1]"]
        let wildcard = ["0.0.0.0", "[::]", ""]
        var names = wildcard.contains(host) ? [] : [host]
        if loopback.contains(host) || wildcard.contains(host) || host.hasPrefix("127.") {
            names += loopback.filter { $0 != host }
        }
        return names.compactMap { try? ServerOrigin(parsing: "http://\($0):\(port)") }
    }
}
