import ArgumentParser
import Foundation
import Histogram
import Synchronization

/// Options of the XMPP workloads.
struct XMPPOptions: ParsableArguments {
    @Option(help: "XMPP-over-WebSocket URL of the server (RFC 7395).")
    var server: String = "ws://127.0.0.1:5280/ws"

    @Option(help: "The XMPP domain.")
    var domain: String = "localhost"

    @Option(help: "The server's process id (for ejabberd: its beam.smp), for CPU per delivery and memory.")
    var serverPid: Int32?

    @Option(help: "Write the report as JSON to this file.")
    var json: String?
}

/// The receiving side of an XMPP pair: latency from the timestamp in each body.
final class XMPPReceiver: Sendable {
    let connection: XMPPConnection
    private let state = Mutex<(histogram: Histogram<UInt64>, delivered: Int)>(
        (Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three), 0))

    init(_ connection: XMPPConnection) { self.connection = connection }

    /// Consumes messages until the socket closes; `onDelivery` runs after each.
    func run(onDelivery: @Sendable () -> Void) async {
        for await body in connection.bodies {
            let now = Clock.wallMicroseconds()
            let sent = Int64(body.prefix { $0.isNumber }) ?? now
            state.withLock { state in
                _ = state.histogram.record(UInt64(max(0, now - sent)))
                state.delivered += 1
            }
            onDelivery()
        }
    }

    var delivered: Int { state.withLock { $0.delivered } }
    var histogram: Histogram<UInt64> { state.withLock { $0.histogram } }
}

extension LoadTool {
    /// Workload 1 against an XMPP server: N pairs of anonymous sessions exchanging chat messages.
    struct XMPPOneToOne: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "xmpp-one-to-one",
            abstract: "N pairs over XMPP/WebSocket; open loop at --rate, or closed loop (--rate 0).",
            discussion: """
                XMPP has no per-message acknowledgement from the server to the sender, so the closed \
                loop keeps --window messages per pair in flight until they are delivered to the \
                receiver (for Heliograph the window is freed by the server's durable acknowledgement).
                """)

        @OptionGroup var xmpp: XMPPOptions
        @Option(help: "Sender→receiver pairs.") var pairs = 16
        @Option(help: "Offered messages per second overall; 0 for closed loop.") var rate: Double = 0
        @Option(help: "Closed loop: messages in flight per pair.") var window = 8
        @Option(help: "Seconds to send for.") var duration: Double = 10
        @Option(help: "Payload size in bytes (the body).") var payloadBytes = 128

        func run() async throws {
            let url = xmpp.server
            let domain = xmpp.domain
            let connections = try await Provision.many(pairs * 2) { _ in try await XMPPConnection.connect(to: url, domain: domain)
            }
            let senders = Array(connections.prefix(pairs))
            let receivers = connections.suffix(pairs).map(XMPPReceiver.init)
            // Closed loop: one credit stream per pair, refilled by each delivery.
            let credits = (0..<pairs).map { _ in AsyncStream<Void>.makeStream(bufferingPolicy: .unbounded) }
            let listening = Task {
                await withTaskGroup(of: Void.self) { group in
                    for (index, receiver) in receivers.enumerated() {
                        let credit = credits[index].continuation
                        group.addTask { await receiver.run { credit.yield() } }
                    }
                }
            }
            let counters = SendCounters()
            let budget = SendBudget(deadline: ContinuousClock.now + .seconds(duration), limit: nil)
            let padding = String(repeating: "x", count: max(0, payloadBytes - 17))
            @Sendable func body() -> String { "\(Clock.wallMicroseconds())-" + padding }

            let before = ProcessSample(pid: xmpp.serverPid)
            let started = ContinuousClock.now
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<pairs {
                    let sender = senders[index]
                    let target = receivers[index].connection.jid
                    @Sendable func sendOne() async {
                        do {
                            try await sender.send(body: body(), to: target)
                            counters.sent.add(1, ordering: .relaxed)
                        } catch {
                            counters.failed(error)
                        }
                    }
                    if rate <= 0 {
                        for _ in 0..<window { credits[index].continuation.yield() }
                        let stream = credits[index].stream
                        group.addTask {
                            for await _ in stream {
                                guard budget.take() else { break }
                                await sendOne()
                            }
                        }
                    } else {
                        let interval = Double(pairs) / rate
                        group.addTask {
                            let start = ContinuousClock.now + .seconds(interval * Double(index) / Double(pairs))
                            var tick = 0
                            while true {
                                try? await Task.sleep(until: start + .seconds(interval * Double(tick)))
                                guard budget.take() else { break }
                                await sendOne()
                                tick += 1
                            }
                        }
                    }
                }
            }
            let sent = counters.sent.load(ordering: .relaxed)
            let deadline = ContinuousClock.now + .seconds(15)
            while receivers.reduce(0, { $0 + $1.delivered }) < sent, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
            let elapsed = started.duration(to: .now)
            let after = ProcessSample(pid: xmpp.serverPid)
            let delivered = receivers.reduce(0) { $0 + $1.delivered }
            var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            for receiver in receivers { latency.add(receiver.histogram) }
            for credit in credits { credit.continuation.finish() }
            for connection in connections { await connection.close() }
            listening.cancel()

            let seconds = elapsed.seconds
            var report = Report(
                workload: "xmpp-one-to-one",
                parameters: [
                    "pairs": "\(pairs)", "rate": "\(rate)", "window": "\(window)", "payloadBytes": "\(payloadBytes)",
                ],
                durationSeconds: seconds, offeredRate: rate > 0 ? rate : nil, sent: sent,
                errors: counters.errors.load(ordering: .relaxed), delivered: delivered,
                achievedRate: Double(delivered) / max(seconds, 0.001), latencyMicroseconds: latency.summary)
            report.attachServer(before: before, after: after, deliveries: delivered)
            try report.print(json: xmpp.json)
            if let error = counters.firstError.withLock({ $0 }) { Swift.print("first error     \(error)") }
        }
    }

    /// Workload 3 against an XMPP server: K idle sessions, server memory per connection.
    struct XMPPConnections: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "xmpp-connections",
            abstract: "Open K logged-in XMPP/WebSocket sessions, hold them, and report server memory per connection.")

        @OptionGroup var xmpp: XMPPOptions
        @Option(help: "Connections to open.") var count = 1000
        @Option(help: "Seconds to hold the connections before measuring.") var hold: Double = 2
        @Option(help: "Connections opened at once.") var parallel = 64

        func run() async throws {
            raiseFileLimit(for: count)
            let url = xmpp.server
            let domain = xmpp.domain
            let counters = SendCounters()
            let before = ProcessSample(pid: xmpp.serverPid)
            let started = ContinuousClock.now
            let opened = try await Provision.many(count, parallel: parallel) { _ -> XMPPConnection? in
                do {
                    return try await XMPPConnection.connect(to: url, domain: domain)
                } catch {
                    counters.failed(error)
                    return nil
                }
            }
            let openSeconds = started.duration(to: .now)
            try await Task.sleep(for: .seconds(hold))
            let after = ProcessSample(pid: xmpp.serverPid)
            let alive = opened.compactMap { $0 }.count
            try Report.connections(
                workload: "xmpp-connections", parameters: ["count": "\(count)"], opening: openSeconds, attempted: count,
                counters: counters, alive: alive, before: before, after: after
            ).print(json: xmpp.json)
            if let error = counters.firstError.withLock({ $0 }) { Swift.print("first error     \(error)") }
            for connection in opened.compactMap({ $0 }) { await connection.close() }
        }
    }
}
