import ArgumentParser
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import Histogram
import Synchronization

/// `heliograph-load`: drives a running server over real WebSockets and reports what it saw.
@main
struct LoadTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heliograph-load",
        abstract: "Load generator for a running Heliograph server.",
        discussion: """
            Start the server without rate limits for load runs, e.g.
              heliograph serve --account-send-rate 0 --pair-send-rate 0 --auth-rate 0
            Every workload registers its own accounts (names start with --prefix), prints a
            summary and writes it as JSON with --json.
            """,
        subcommands: [
            OneToOne.self, MultiDevice.self, Connections.self, LoginStorm.self, XMPPOneToOne.self, XMPPConnections.self,
            ChannelFanout.self, GroupPost.self, MediaTransfer.self, Thumbnails.self,
        ]
    )
}

/// Options every workload takes.
struct CommonOptions: ParsableArguments {
    @Option(help: "Server base URL.")
    var server: String = "http://127.0.0.1:8080"

    @Option(
        help: "The server's process id, to report its CPU time per delivered message and its memory (repeat for several nodes).")
    var serverPid: [Int32] = []

    @Option(help: "Connect the receiving sockets to this server instead (another node on the same database).")
    var receiverServer: String?

    @Option(help: "Write the report as JSON to this file.")
    var json: String?

    @Option(help: "Account name prefix (letters only), so runs do not collide.")
    var prefix: String = "load" + String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement()! })

    var url: URL { URL(string: server)! }
    var receiverURL: URL { receiverServer.flatMap(URL.init(string:)) ?? url }
}

/// One load-generating device: an account (or an extra device of one) with its token.
struct LoadDevice: Sendable {
    let username: String
    let token: String
    let identity: Data
    let accountID: AccountID
    let deviceID: DeviceID
    /// The agreement key the device committed to at login (a load device never uses it).
    let agreementKey: Data
    /// Whether the device waits for approval by the account's first device.
    let pending: Bool
}

/// Creates accounts and devices through the public protocol, as real clients do.
enum Provision {
    static func account(_ username: String, server: URL) async throws -> LoadDevice {
        let connection = try await HeliographConnection.connect(to: server)
        defer { Task { await connection.close() } }
        let identity = IdentityKeyPair()
        let account = try await connection.request(
            .register, RegisterRequest(username: username, identityKey: identity.publicKey.rawBytes), as: AccountInfo.self)
        return try await login(username, account: account.accountId, identity: identity, server: server, over: connection)
    }

    /// Logs another device in and approves it from `device` (the account's first device), as a
    /// person does with `helio devices approve`.
    static func extraDevice(of device: LoadDevice, server: URL) async throws -> LoadDevice {
        let connection = try await HeliographConnection.connect(to: server)
        defer { Task { await connection.close() } }
        let extra = try await login(
            device.username, account: device.accountID, identity: try IdentityKeyPair(privateKeyBytes: device.identity),
            server: server, over: connection)
        if extra.pending { try await approve(extra, by: device, server: server) }
        return extra
    }

    /// Approves a waiting device with a signed device list naming both devices' committed keys.
    static func approve(_ waiting: LoadDevice, by first: LoadDevice, server: URL) async throws {
        let connection = try await HeliographConnection.connect(to: server)
        defer { Task { await connection.close() } }
        _ = try await connection.request(
            .authenticate, AuthenticateRequest(token: first.token, after: nil, receive: false), as: SessionInfo.self)
        let identity = try IdentityKeyPair(privateKeyBytes: first.identity)
        for attempt in 1...5 {
            let account = try await connection.request(
                .lookupAccount, LookupAccountRequest(username: first.username), as: AccountInfo.self)
            var entries = (account.deviceList?.devices ?? []).map {
                SignedDeviceList.Entry(device: $0.deviceId, agreementKey: $0.agreementKey)
            }
            if !entries.contains(where: { $0.device == first.deviceID }) {
                entries.append(.init(device: first.deviceID, agreementKey: first.agreementKey))
            }
            entries.append(.init(device: waiting.deviceID, agreementKey: waiting.agreementKey))
            let list = try SignedDeviceList.sign(
                account: first.accountID, version: (account.deviceList?.version ?? 0) + 1, devices: entries,
                revoked: account.deviceList?.revoked ?? [], with: identity)
            let wire = WireDeviceList(
                version: list.version, devices: list.devices.map { .init(deviceId: $0.device, agreementKey: $0.agreementKey) },
                revoked: list.revoked.isEmpty ? nil : list.revoked, signature: list.signature)
            do {
                _ = try await connection.request(
                    .approveDevice, ApproveDeviceRequest(deviceId: waiting.deviceID, deviceList: wire), as: DeviceInfo.self)
                return
            } catch let error as HeliographError where error.code == .badRequest && attempt < 5 {
                // Another approval for this account took the version: sign the next one.
                continue
            }
        }
    }

    static func login(
        _ username: String, account: AccountID, identity: IdentityKeyPair, server: URL, over connection: HeliographConnection
    ) async throws
        -> LoadDevice
    {
        let challenge = try await connection.request(.challenge, ChallengeRequest(username: username), as: ChallengeResponse.self)
        let name = "load"
        let signature = try identity.signLogin(
            nonce: challenge.nonce, challengeID: challenge.challengeId, account: account, origin: try ServerOrigin(url: server),
            deviceName: name)
        let agreementKey = AgreementKeyPair().publicKeyBytes
        let session = try await connection.request(
            .login,
            LoginRequest(
                challengeId: challenge.challengeId, deviceName: name, signature: signature, agreementKey: agreementKey),
            as: LoginResponse.self)
        return LoadDevice(
            username: username, token: session.token, identity: identity.privateKeyBytes, accountID: session.accountId,
            deviceID: session.deviceId, agreementKey: agreementKey, pending: session.pending == true)
    }

    /// Runs `count` provisioning jobs, `parallel` at a time.
    static func many<T: Sendable>(
        _ count: Int, parallel: Int = 16, _ make: @escaping @Sendable (Int) async throws -> T
    )
        async throws -> [T]
    {
        try await withThrowingTaskGroup(of: (Int, T).self) { group in
            var results = [T?](repeating: nil, count: count)
            var next = 0
            while next < min(parallel, count) {
                let index = next
                group.addTask { (index, try await make(index)) }
                next += 1
            }
            while let (index, value) = try await group.next() {
                results[index] = value
                if next < count {
                    let index = next
                    group.addTask { (index, try await make(index)) }
                    next += 1
                }
            }
            return results.map { $0! }
        }
    }
}

/// A receiving socket: records the latency of every envelope from the timestamp in its
/// payload, and acknowledges cumulatively every 64 envelopes (and at the end).
final class Receiver: Sendable {
    let connection: HeliographConnection
    private let state = Mutex<(histogram: Histogram<UInt64>, delivered: Int, lastSeq: Int64)>(
        (Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three), 0, 0))

    /// Decrypts envelopes when the run is end-to-end encrypted.
    let session: LoadSession?

    init(device: LoadDevice, server: URL, session: LoadSession? = nil) async throws {
        self.session = session
        connection = try await HeliographConnection.connect(to: server)
        _ = try await connection.request(
            .authenticate, AuthenticateRequest(token: device.token, after: nil), as: SessionInfo.self)
    }

    /// Consumes pushes until the socket closes.
    func run() async {
        for await event in connection.events {
            guard case .envelope(let envelope) = event else { continue }
            let now = Clock.wallMicroseconds()
            let body = session.map { session in (try? session.open(envelope)) ?? Data() } ?? envelope.payload
            let sent = Payload.timestamp(body)
            let ack: Int64? = state.withLock { state in
                _ = state.histogram.record(UInt64(max(0, now - sent)))
                state.delivered += 1
                state.lastSeq = envelope.seq
                return state.delivered % 64 == 0 ? envelope.seq : nil
            }
            if let ack { try? await connection.acknowledge(ack) }
        }
    }

    var delivered: Int { state.withLock { $0.delivered } }
    var histogram: Histogram<UInt64> { state.withLock { $0.histogram } }

    func finish() async {
        let last = state.withLock { $0.lastSeq }
        if last > 0 { try? await connection.acknowledge(last) }
        await connection.close()
    }
}

/// The load payload: an 8-byte send timestamp (µs since 1970, big-endian) and padding.
enum Payload {
    static func make(size: Int) -> Data {
        var data = Data(count: max(size, 8))
        let now = UInt64(Clock.wallMicroseconds())
        for index in 0..<8 { data[index] = UInt8((now >> (56 - 8 * UInt64(index))) & 0xFF) }
        return data
    }

    static func timestamp(_ data: Data) -> Int64 {
        guard data.count >= 8 else { return 0 }
        var value: UInt64 = 0
        for byte in data.prefix(8) { value = value << 8 | UInt64(byte) }
        return Int64(value)
    }
}

enum Clock {
    /// Wall-clock microseconds: sender and receiver share the machine's clock.
    static func wallMicroseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1000
    }
}

/// CPU time and memory of the server process, from /proc.
struct ProcessSample {
    var cpuSeconds: Double
    var residentBytes: Int
    /// The peak resident memory so far (VmHWM).
    var peakResidentBytes: Int

    /// The sum over several processes (the nodes of a run); nil when none is given.
    init?(pids: [Int32]) {
        let samples = pids.compactMap { ProcessSample(pid: $0) }
        guard !samples.isEmpty else { return nil }
        cpuSeconds = samples.reduce(0) { $0 + $1.cpuSeconds }
        residentBytes = samples.reduce(0) { $0 + $1.residentBytes }
        peakResidentBytes = samples.reduce(0) { $0 + $1.peakResidentBytes }
    }

    init?(pid: Int32?) {
        guard let pid,
            let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        else { return nil }
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        cpuSeconds = (Double(fields[11])! + Double(fields[12])!) / ticks
        func kilobytes(_ field: String) -> Int {
            let line = status.split(separator: "\n").first { $0.hasPrefix(field) }
            return (line?.split(separator: " ").dropFirst().first).flatMap { Int($0) }.map { $0 * 1024 } ?? 0
        }
        residentBytes = kilobytes("VmRSS:")
        peakResidentBytes = kilobytes("VmHWM:")
    }
}

/// What a workload reports.
struct Report: Codable {
    var workload: String
    var parameters: [String: String]
    var durationSeconds: Double
    var offeredRate: Double?
    var sent: Int
    var errors: Int
    var delivered: Int
    var achievedRate: Double
    var latencyMicroseconds: [String: UInt64]
    var serverCPUSeconds: Double?
    var serverCPUMicrosecondsPerDelivery: Double?
    var serverResidentBytes: Int?
    var extra: [String: Double] = [:]

    func print(json path: String?) throws {
        Swift.print(
            "workload        \(workload)  \(parameters.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: " "))")
        Swift.print(String(format: "duration        %.2f s", durationSeconds))
        if let offeredRate { Swift.print(String(format: "offered rate    %.0f /s", offeredRate)) }
        Swift.print("sent            \(sent)   errors \(errors)")
        Swift.print(String(format: "delivered       %d   achieved %.0f /s", delivered, achievedRate))
        if !latencyMicroseconds.isEmpty {
            let order = ["p50", "p90", "p99", "p99.9", "max"]
            Swift.print(
                "latency (µs)    "
                    + order.compactMap { key in latencyMicroseconds[key].map { "\(key) \($0)" } }.joined(separator: "  "))
        }
        if let cpu = serverCPUSeconds {
            Swift.print(
                String(format: "server CPU      %.2f s   %.1f µs per delivery", cpu, serverCPUMicrosecondsPerDelivery ?? 0))
        }
        for (key, value) in extra.sorted(by: { $0.key < $1.key }) { Swift.print("\(key)  \(value)") }
        if let path {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(self).write(to: URL(fileURLWithPath: path))
        }
    }
}

extension Histogram<UInt64> {
    var summary: [String: UInt64] {
        guard totalCount > 0 else { return [:] }
        return [
            "p50": valueAtPercentile(50), "p90": valueAtPercentile(90), "p99": valueAtPercentile(99),
            "p99.9": valueAtPercentile(99.9), "max": max,
        ]
    }
}

extension Duration {
    /// The duration in seconds, for reports.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Raises this process's descriptor limit to the hard limit, and says so when `connections`
/// sockets will not fit.
func raiseFileLimit(for connections: Int) {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    if Int(limit.rlim_cur) < connections + 100 {
        print("note: ulimit -n is \(limit.rlim_cur); \(connections) connections need at least \(connections + 100)")
    }
}

extension Report {
    /// The report of an idle-connections run: how many stayed open and the server's memory
    /// growth per connection.
    static func connections(
        workload: String, parameters: [String: String], opening: Duration, attempted: Int, counters: SendCounters, alive: Int,
        before: ProcessSample?, after: ProcessSample?
    ) -> Report {
        var report = Report(
            workload: workload, parameters: parameters, durationSeconds: opening.seconds, offeredRate: nil, sent: attempted,
            errors: counters.errors.load(ordering: .relaxed), delivered: alive, achievedRate: 0, latencyMicroseconds: [:])
        if let before, let after {
            report.serverResidentBytes = after.residentBytes
            report.extra["server bytes per connection"] =
                Double(after.residentBytes - before.residentBytes) / Double(max(alive, 1))
        }
        report.extra["connections open"] = Double(alive)
        return report
    }
}
