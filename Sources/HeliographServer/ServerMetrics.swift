import Foundation
import Metrics
import Prometheus

/// The server's counters and histograms, registered on one Prometheus registry.
///
/// Metrics are created against an explicit factory rather than the global MetricsSystem,
/// so several servers in one test process keep separate figures.
public struct ServerMetrics: Sendable {
    /// The registry `/metrics` renders.
    public let registry: PrometheusCollectorRegistry
    /// WebSocket connections bound to a device right now.
    let connectedDevices: Metrics.Gauge
    /// Envelopes stored (one per recipient device), duplicates excluded.
    let envelopesAccepted: Metrics.Counter
    /// Envelopes written to a recipient's socket.
    let envelopesDelivered: Metrics.Counter
    /// Time from acceptance to push, per envelope.
    let deliveryLatency: Metrics.Timer
    /// Time spent in the store committing a send (all recipient devices).
    let storeEnqueueTime: Metrics.Timer
    /// Time spent in the store reading a batch of inbox envelopes for a push.
    let storeFetchTime: Metrics.Timer
    /// Chat updates written to member sockets (one per socket per update).
    let chatPushes: Metrics.Counter
    /// The factory that makes per-code error counters on demand.
    let registryFactory: PrometheusMetricsFactory

    /// Creates the metrics on a fresh registry.
    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5), .seconds(30),
        ]
        self.registry = registry
        self.registryFactory = factory
        connectedDevices = Metrics.Gauge(label: "heliograph_connected_devices", factory: factory)
        envelopesAccepted = Metrics.Counter(label: "heliograph_envelopes_accepted_total", factory: factory)
        envelopesDelivered = Metrics.Counter(label: "heliograph_envelopes_delivered_total", factory: factory)
        deliveryLatency = Metrics.Timer(label: "heliograph_delivery_latency_seconds", factory: factory)
        storeEnqueueTime = Metrics.Timer(
            label: "heliograph_store_seconds", dimensions: [("operation", "enqueue")], factory: factory)
        storeFetchTime = Metrics.Timer(label: "heliograph_store_seconds", dimensions: [("operation", "fetch")], factory: factory)
        chatPushes = Metrics.Counter(label: "heliograph_chat_pushes_total", factory: factory)
    }

    /// Counts chat updates written to sockets.
    func recordChatPushes(_ count: Int) { if count > 0 { chatPushes.increment(by: Int64(count)) } }

    /// Records how many devices have a socket on this node.
    func recordConnectedDevices(_ count: Int) { connectedDevices.record(count) }

    /// Counts envelopes stored for delivery.
    func recordAccepted(_ count: Int) { envelopesAccepted.increment(by: Int64(count)) }

    /// Counts one envelope pushed to a socket, `latency` seconds after it was accepted.
    func recordDelivered(latency: TimeInterval) {
        envelopesDelivered.increment()
        deliveryLatency.recordNanoseconds(Int64(max(latency, 0) * 1e9))
    }

    /// Runs a store call and records its duration under `operation`'s timer.
    func timed<T>(_ timer: KeyPath<ServerMetrics, Metrics.Timer>, _ body: () async throws -> T) async rethrows -> T {
        let start = ContinuousClock.now
        defer {
            let elapsed = start.duration(to: .now).components
            self[keyPath: timer].recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
        }
        return try await body()
    }

    /// Counts an error answered to a client, by code.
    func countError(code: String) {
        Metrics.Counter(label: "heliograph_errors_total", dimensions: [("code", code)], factory: registryFactory).increment()
    }

    /// The Prometheus text exposition.
    public func render() -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
