import ArgumentParser
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import Histogram
import Synchronization

/// Counters shared by the sending tasks of a run.
final class SendCounters: Sendable {
    let sent = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let firstError = Mutex<String?>(nil)

    func failed(_ error: any Error) {
        errors.add(1, ordering: .relaxed)
        firstError.withLock { if $0 == nil { $0 = "\(error)" } }
    }
}

/// How many more sends a run may start: until a deadline, and at most `limit`.
final class SendBudget: Sendable {
    let deadline: ContinuousClock.Instant
    let limit: Int?
    private let attempts = Atomic<Int>(0)

    init(deadline: ContinuousClock.Instant, limit: Int?) {
        self.deadline = deadline
        self.limit = limit
    }

    func take() -> Bool {
        guard ContinuousClock.now < deadline else { return false }
        guard let limit else { return true }
        return attempts.add(1, ordering: .relaxed).newValue <= limit
    }
}

/// One sending socket of a run: where it sends, and its session when the run is encrypted.
struct SendTarget: Sendable {
    let connection: HeliographConnection
    let recipient: String
    let session: LoadSession?
}

/// Sends one payload with a fresh message id (end-to-end encrypted when the target has a session).
func send(_ target: SendTarget, payloadBytes: Int, counters: SendCounters) async {
    do {
        let body = Payload.make(size: payloadBytes)
        let request =
            try target.session?.seal(body, messageID: .random(), to: target.recipient)
            ?? SendRequest(messageId: .random(), to: target.recipient, payload: body)
        _ = try await target.connection.request(.send, request, as: SendResponse.self)
        counters.sent.add(1, ordering: .relaxed)
    } catch {
        counters.failed(error)
    }
}

/// A request-only socket for a sending device.
func senderSocket(_ device: LoadDevice, server: URL) async throws -> HeliographConnection {
    let connection = try await HeliographConnection.connect(to: server)
    _ = try await connection.request(
        .authenticate, AuthenticateRequest(token: device.token, after: nil, receive: false), as: SessionInfo.self)
    return connection
}

/// Sends from `senders` (socket, recipient) pairs, closed loop with `window` outstanding sends
/// per socket, or open loop at `rate` per second overall; stops after `duration` or `limit` sends.
func drive(
    senders: [SendTarget], rate: Double, window: Int, duration: Double, limit: Int?, payloadBytes: Int,
    counters: SendCounters
) async {
    let budget = SendBudget(deadline: ContinuousClock.now + .seconds(duration), limit: limit)

    if rate <= 0 {
        await withTaskGroup(of: Void.self) { group in
            for target in senders {
                for _ in 0..<window {
                    group.addTask {
                        while budget.take() {
                            await send(target, payloadBytes: payloadBytes, counters: counters)
                        }
                    }
                }
            }
        }
    } else {
        // Open loop: each sender on its own fixed schedule, sends fired without waiting, so a
        // slow server shows up as latency rather than as a lower offered rate.
        let interval = Double(senders.count) / rate
        await withTaskGroup(of: Void.self) { group in
            for (index, target) in senders.enumerated() {
                group.addTask {
                    let start = ContinuousClock.now + .seconds(interval * Double(index) / Double(senders.count))
                    var tick = 0
                    await withTaskGroup(of: Void.self) { inflight in
                        while true {
                            let due = start + .seconds(interval * Double(tick))
                            try? await Task.sleep(until: due)
                            guard budget.take() else { break }
                            inflight.addTask {
                                await send(target, payloadBytes: payloadBytes, counters: counters)
                            }
                            tick += 1
                        }
                    }
                }
            }
        }
    }
}

/// Waits until `receivers` got `expected` envelopes or `timeout` passed.
func drain(_ receivers: [Receiver], expected: Int, timeout: Duration = .seconds(15)) async {
    let deadline = ContinuousClock.now + timeout
    while receivers.reduce(0, { $0 + $1.delivered }) < expected, ContinuousClock.now < deadline {
        try? await Task.sleep(for: .milliseconds(20))
    }
}

func merged(_ receivers: [Receiver]) -> Histogram<UInt64> {
    var all = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    for receiver in receivers {
        let histogram = receiver.histogram
        all.add(histogram)
    }
    return all
}

/// What one delivery run saw.
struct DeliveryRun {
    var sent: Int
    var errors: Int
    var firstError: String?
    var delivered: Int
    var seconds: Double
    var latency: Histogram<UInt64>
    var serverBefore: ProcessSample?
    var serverAfter: ProcessSample?
}

/// Connects a receiving socket per device in `receiving` and a request socket per sender in
/// `sending` (device, recipient name), drives the sends, waits until every send reached
/// `fanOut` devices (or a timeout), and closes everything.
func runDelivery(
    receiving: [LoadDevice], sending: [(LoadDevice, String)], server: URL, receiverServer: URL? = nil, serverPid: [Int32],
    rate: Double, window: Int,
    duration: Double, limit: Int?, payloadBytes: Int, fanOut: Int, sessions: [LoadSession]? = nil
) async throws -> DeliveryRun {
    var receivers: [Receiver] = []
    for (index, device) in receiving.enumerated() {
        receivers.append(try await Receiver(device: device, server: receiverServer ?? server, session: sessions?[index]))
    }
    var sockets: [SendTarget] = []
    for (index, (device, recipient)) in sending.enumerated() {
        sockets.append(
            SendTarget(
                connection: try await senderSocket(device, server: server), recipient: recipient, session: sessions?[index]))
    }
    let listeners = receivers
    let listening = Task {
        await withTaskGroup(of: Void.self) { group in for r in listeners { group.addTask { await r.run() } } }
    }

    let counters = SendCounters()
    let before = ProcessSample(pids: serverPid)
    let started = ContinuousClock.now
    await drive(
        senders: sockets, rate: rate, window: window, duration: duration, limit: limit, payloadBytes: payloadBytes,
        counters: counters)
    let sent = counters.sent.load(ordering: .relaxed)
    await drain(receivers, expected: sent * fanOut)
    let elapsed = started.duration(to: .now)
    let after = ProcessSample(pids: serverPid)
    let delivered = receivers.reduce(0) { $0 + $1.delivered }
    for receiver in receivers { await receiver.finish() }
    for target in sockets { await target.connection.close() }
    listening.cancel()
    return DeliveryRun(
        sent: sent, errors: counters.errors.load(ordering: .relaxed), firstError: counters.firstError.withLock { $0 },
        delivered: delivered, seconds: elapsed.seconds,
        latency: merged(receivers), serverBefore: before, serverAfter: after)
}

extension LoadTool {
    /// Workload 1: N sender→receiver pairs.
    struct OneToOne: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "one-to-one", abstract: "N pairs; open loop at --rate, or closed loop (--rate 0) for maximum throughput."
        )

        @OptionGroup var common: CommonOptions
        @Option(help: "Sender→receiver pairs.") var pairs = 16
        @Option(help: "Offered sends per second overall; 0 for closed loop.") var rate: Double = 0
        @Option(help: "Closed loop: sends in flight per sender.") var window = 8
        @Option(help: "Seconds to send for.") var duration: Double = 10
        @Option(help: "Stop after this many sends.") var count: Int?
        @Option(help: "Payload size in bytes.") var payloadBytes = 128
        @Flag(help: "End-to-end encrypt every message (PQXDH + Double Ratchet, franking commitment), as clients do.")
        var encrypted = false

        func run() async throws {
            let server = common.url
            let prefix = common.prefix
            let senders = try await Provision.many(pairs) { try await Provision.account("\(prefix)s\($0)", server: server) }
            let receiverDevices = try await Provision.many(pairs) {
                try await Provision.account("\(prefix)r\($0)", server: server)
            }
            let sessions =
                encrypted
                ? try await Provision.many(pairs) { index in
                    try await LoadSession.establish(sender: senders[index], receiver: receiverDevices[index], server: server)
                } : nil
            let run = try await runDelivery(
                receiving: receiverDevices, sending: senders.enumerated().map { ($1, receiverDevices[$0].username) },
                server: server, receiverServer: common.receiverURL, serverPid: common.serverPid, rate: rate, window: window,
                duration: duration, limit: count,
                payloadBytes: payloadBytes, fanOut: 1, sessions: sessions)
            var report = Report(
                workload: "one-to-one",
                parameters: [
                    "pairs": "\(pairs)", "mode": rate > 0 ? "open" : "closed", "window": "\(window)",
                    "payloadBytes": "\(payloadBytes)", "encrypted": "\(encrypted)",
                ],
                durationSeconds: run.seconds, offeredRate: rate > 0 ? rate : nil, sent: run.sent, errors: run.errors,
                delivered: run.delivered, achievedRate: Double(run.delivered) / run.seconds,
                latencyMicroseconds: run.latency.summary)
            report.attachServer(before: run.serverBefore, after: run.serverAfter, deliveries: run.delivered)
            try report.print(json: common.json)
            if let error = run.firstError { Swift.print("first error     \(error)") }
        }
    }

    /// Workload 2: senders to accounts with several devices each.
    struct MultiDevice: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "multi-device", abstract: "Senders to recipient accounts with several devices each (fan-out).")

        @OptionGroup var common: CommonOptions
        @Option(help: "Sending accounts.") var senders = 4
        @Option(help: "Recipient accounts.") var recipients = 8
        @Option(help: "Devices per recipient account.") var devices = 4
        @Option(help: "Closed loop: sends in flight per sender.") var window = 8
        @Option(help: "Seconds to send for.") var duration: Double = 10
        @Option(help: "Payload size in bytes.") var payloadBytes = 128

        func run() async throws {
            let server = common.url
            let prefix = common.prefix
            let senderDevices = try await Provision.many(senders) {
                try await Provision.account("\(prefix)s\($0)", server: server)
            }
            let firsts = try await Provision.many(recipients) { try await Provision.account("\(prefix)r\($0)", server: server) }
            var recipientDevices = firsts
            for first in firsts {
                for _ in 1..<devices { recipientDevices.append(try await Provision.extraDevice(of: first, server: server)) }
            }
            let run = try await runDelivery(
                receiving: recipientDevices,
                sending: senderDevices.enumerated().map { ($1, firsts[$0 % firsts.count].username) }, server: server,
                receiverServer: common.receiverURL, serverPid: common.serverPid, rate: 0, window: window, duration: duration,
                limit: nil,
                payloadBytes: payloadBytes, fanOut: devices)
            var report = Report(
                workload: "multi-device",
                parameters: [
                    "senders": "\(senders)", "recipients": "\(recipients)", "devicesPerRecipient": "\(devices)",
                    "window": "\(window)",
                ],
                durationSeconds: run.seconds, offeredRate: nil, sent: run.sent, errors: run.errors, delivered: run.delivered,
                achievedRate: Double(run.delivered) / run.seconds, latencyMicroseconds: run.latency.summary)
            report.attachServer(before: run.serverBefore, after: run.serverAfter, deliveries: run.delivered)
            try report.print(json: common.json)
            if let error = run.firstError { Swift.print("first error     \(error)") }
        }
    }

    /// Workload 3: many idle connections.
    struct Connections: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open K authenticated sockets, hold them, and report server memory per connection.",
            discussion: """
                Each socket needs a file descriptor here and on the server: raise `ulimit -n` above K \
                on both sides (the tool raises its own soft limit to the hard limit). One client \
                address reaches about 28,000 connections to one server port (the ephemeral port \
                range); beyond that start the server with --host 0.0.0.0 and pass several \
                --targets (127.0.0.1, 127.0.0.2, …).
                """)

        @OptionGroup var common: CommonOptions
        @Option(help: "Connections to open.") var count = 1000
        @Option(help: "Devices to spread the sockets over.") var devices = 10
        @Option(help: "Seconds to hold the connections before measuring.") var hold: Double = 2
        @Option(help: "Server addresses to spread connections over (same port as --server).")
        var targets: [String] = []
        @Option(help: "Connections opened at once.") var parallel = 64

        func run() async throws {
            raiseFileLimit(for: count)
            let server = common.url
            let prefix = common.prefix
            let loginDevices = try await Provision.many(devices) {
                try await Provision.account("\(prefix)c\($0)", server: server)
            }
            let bases =
                targets.isEmpty
                ? [server]
                : targets.map { host -> URL in
                    var components = URLComponents(url: server, resolvingAgainstBaseURL: false)!
                    components.host = host
                    return components.url!
                }
            let before = ProcessSample(pids: common.serverPid)
            let started = ContinuousClock.now
            let counters = SendCounters()
            let opened = try await Provision.many(count, parallel: parallel) { index -> HeliographConnection? in
                do {
                    let connection = try await HeliographConnection.connect(to: bases[index % bases.count])
                    _ = try await connection.request(
                        .authenticate, AuthenticateRequest(token: loginDevices[index % loginDevices.count].token, after: nil),
                        as: SessionInfo.self)
                    return connection
                } catch {
                    counters.failed(error)
                    return nil
                }
            }
            let openSeconds = started.duration(to: .now)
            try await Task.sleep(for: .seconds(hold))
            let after = ProcessSample(pids: common.serverPid)
            let alive = opened.compactMap { $0 }.filter { !$0.isClosed }.count
            try Report.connections(
                workload: "connections", parameters: ["count": "\(count)", "targets": "\(bases.count)"], opening: openSeconds,
                attempted: count, counters: counters, alive: alive, before: before, after: after
            ).print(json: common.json)
            if let error = counters.firstError.withLock({ $0 }) { Swift.print("first error     \(error)") }
            for connection in opened.compactMap({ $0 }) { await connection.close() }
        }
    }

    /// Workload 4: logins per second.
    struct LoginStorm: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "login-storm", abstract: "Challenge-and-sign logins as fast as the server takes them.")

        @OptionGroup var common: CommonOptions
        @Option(help: "Accounts to log in to.") var accounts = 16
        @Option(help: "Concurrent logins.") var parallel = 16
        @Option(help: "Seconds to run.") var duration: Double = 5

        func run() async throws {
            let server = common.url
            let prefix = common.prefix
            let devices = try await Provision.many(accounts) { try await Provision.account("\(prefix)l\($0)", server: server) }
            let counters = SendCounters()
            let before = ProcessSample(pids: common.serverPid)
            let started = ContinuousClock.now
            let deadline = started + .seconds(duration)
            var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            let latencies = LatencyRecorder(histogram)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<parallel {
                    group.addTask {
                        let device = devices[worker % devices.count]
                        let connection = try await HeliographConnection.connect(to: server)
                        // The account's first device refuses each new (waiting) device again, so
                        // the account never reaches its limit of waiting devices.
                        let owner = try await HeliographConnection.connect(to: server)
                        _ = try await owner.request(
                            .authenticate, AuthenticateRequest(token: device.token, after: nil, receive: false),
                            as: SessionInfo.self)
                        let identity = try IdentityKeyPair(privateKeyBytes: device.identity)
                        while ContinuousClock.now < deadline {
                            let begin = ContinuousClock.now
                            do {
                                let added = try await Provision.login(
                                    device.username, account: device.accountID, identity: identity, server: server,
                                    over: connection)
                                counters.sent.add(1, ordering: .relaxed)
                                let micros =
                                    begin.duration(to: .now).components.attoseconds / 1_000_000_000_000
                                    + begin.duration(to: .now).components.seconds * 1_000_000
                                latencies.withLock { _ = $0.record(UInt64(micros)) }
                                if added.pending {
                                    _ = try await owner.request(
                                        .revokeDevice, RevokeDeviceRequest(deviceId: added.deviceID), as: DeviceInfo.self)
                                }
                            } catch {
                                counters.failed(error)
                            }
                        }
                        await connection.close()
                        await owner.close()
                    }
                }
                try await group.waitForAll()
            }
            histogram = latencies.withLock { $0 }
            let elapsed = started.duration(to: .now)
            let after = ProcessSample(pids: common.serverPid)
            let seconds = elapsed.seconds
            let logins = counters.sent.load(ordering: .relaxed)
            var report = Report(
                workload: "login-storm", parameters: ["accounts": "\(accounts)", "parallel": "\(parallel)"],
                durationSeconds: seconds, offeredRate: nil, sent: logins, errors: counters.errors.load(ordering: .relaxed),
                delivered: logins, achievedRate: Double(logins) / seconds, latencyMicroseconds: histogram.summary)
            report.attachServer(before: before, after: after, deliveries: logins)
            try report.print(json: common.json)
            if let error = counters.firstError.withLock({ $0 }) { Swift.print("first error     \(error)") }
        }
    }
}

/// A histogram several tasks record into.
final class LatencyRecorder: Sendable {
    private let mutex: Mutex<Histogram<UInt64>>
    init(_ histogram: Histogram<UInt64>) { mutex = Mutex(histogram) }
    func withLock<R: Sendable>(_ body: (inout Histogram<UInt64>) -> R) -> R { mutex.withLock { body(&$0) } }
}

extension Report {
    mutating func attachServer(before: ProcessSample?, after: ProcessSample?, deliveries: Int) {
        guard let before, let after else { return }
        serverCPUSeconds = after.cpuSeconds - before.cpuSeconds
        serverCPUMicrosecondsPerDelivery =
            deliveries > 0 ? (after.cpuSeconds - before.cpuSeconds) * 1e6 / Double(deliveries) : nil
        serverResidentBytes = after.residentBytes
    }
}
