import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import Testing

/// A socket that closed must leave nothing behind in the server: its memory goes back once
/// it is gone, however many came and went before. Measured on the real `heliograph serve`
/// process, from its resident memory, so anything that keeps per-socket state (a registry
/// entry, a task, a channel held by a reference cycle) shows up as growth.
@Suite("Server memory after closed sockets", .serialized, .enabled(if: SocketChurn.procAvailable))
struct SocketMemoryTests {
    @Test("3,000 sockets opened and closed leave the server's memory where it was after a warm-up of 2,000")
    func shortChurnReturnsMemory() async throws {
        // The margin is the long run's 2 MB for 20,000 sockets, scaled down but never below
        // 1 MiB: the allocator's own bookkeeping moves by a few hundred KiB from run to run.
        // A leak of even 400 bytes per socket crosses it.
        try await SocketChurn.run(warmUp: 2000, sockets: 3000, marginKiB: 1024)
    }

    @Test(
        "20,000 sockets opened and closed leave the server's memory within 2 MB of a warm-up of 2,000",
        .enabled(if: ProcessInfo.processInfo.environment["HELIOGRAPH_LEAK_TEST"] == "1"))
    func longChurnReturnsMemory() async throws {
        try await SocketChurn.run(warmUp: 2000, sockets: 20_000, marginKiB: 2000)
    }
}

/// Opens and cleanly closes sockets against a server process and compares its memory.
enum SocketChurn {
    /// Resident memory is read from `/proc` (Linux).
    static let procAvailable = FileManager.default.fileExists(atPath: "/proc/self/status")

    /// Sockets opened at once: enough to keep both cores busy, few enough that the server's
    /// peak (and so what the allocator keeps cached) stays small.
    static let parallel = 16

    /// Starts a server, churns `warmUp` sockets, reads its memory, churns `sockets` more, and
    /// expects its memory to have grown by at most `marginKiB`.
    static func run(warmUp: Int, sockets: Int, marginKiB: Int) async throws {
        let data = temporaryDirectory("socket-memory")
        defer { _ = try? FileManager.default.removeItem(at: data) }
        let server = try await ServerProcess(dataDirectory: data, extraArguments: ["--max-connections-per-address", "0"])
        let profiles = ProfileStore(directory: data.appendingPathComponent("profiles"))
        let client = try await HeliographClient.register(
            username: "churner", server: server.url, deviceName: "laptop", profileName: "churner", store: profiles)
        let token = client.profile.token
        let pid = server.process.processIdentifier

        // Half of the sockets authenticate (and so join the delivery hub and the revocation
        // registry), half never do.
        try await churn(warmUp, server: server.url, token: token)
        let baseline = try await settledResidentKiB(pid)
        let start = ContinuousClock.now
        try await churn(sockets, server: server.url, token: token)
        let elapsed = ContinuousClock.now - start
        let after = try await settledResidentKiB(pid)
        let growth = after - baseline
        #expect(
            growth <= marginKiB,
            """
            server memory grew by \(growth) KiB (\(baseline) → \(after) KiB) over \(sockets) closed sockets, \
            \(growth * 1024 / sockets) bytes each; at most \(marginKiB) KiB allowed
            """)
        print("socket churn: \(sockets) sockets in \(elapsed); server memory \(baseline) → \(after) KiB")
        try await server.stop()
    }

    /// Opens `count` sockets, `parallel` at a time; each odd one authenticates. Each is closed
    /// with a close frame, and the server's closing frame is awaited, so every socket ends the
    /// way a well-behaved client ends it.
    static func churn(_ count: Int, server: URL, token: String) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<count {
                if index >= parallel { try await group.next() }
                group.addTask {
                    let socket = try await HeliographConnection.connect(to: server)
                    if index % 2 == 1 {
                        let session = try await socket.request(
                            .authenticate, AuthenticateRequest(token: token, after: nil), as: SessionInfo.self)
                        #expect(session.username == "churner")
                    }
                    await socket.close()
                    for await _ in socket.events {}
                }
            }
            try await group.waitForAll()
        }
    }

    /// The process's resident memory in KiB once the last sockets' cleanup had a moment to
    /// run (their channels close and their tasks end just after the client saw the close).
    static func settledResidentKiB(_ pid: Int32) async throws -> Int {
        try await Task.sleep(for: .milliseconds(500))
        return try residentKiB(pid)
    }

    /// `VmRSS` from `/proc/PID/status`, in KiB.
    static func residentKiB(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else {
            throw HeliographError(.internalError, "no VmRSS in /proc/\(pid)/status")
        }
        return kib
    }
}
