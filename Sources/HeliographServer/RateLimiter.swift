import Foundation
import HeliographCore
import Synchronization

/// Token buckets keyed by string (an account, a sender→recipient pair), in memory per node.
///
/// Each node limits on its own, so with N nodes a client could at most reach N times the rate;
/// that bound is acceptable for abuse control, and avoids a database round trip per send.
public final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    private let rate: Double
    private let burst: Double
    private let buckets = Mutex<[String: Bucket]>([:])
    private let clock = ContinuousClock()
    /// Buckets beyond this count trigger a sweep of full (idle) ones, bounding memory.
    private let sweepThreshold = 100_000

    /// A limiter refilling `rate` tokens per second up to `burst`; a rate of 0 disables it.
    public init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = max(burst, 1)
    }

    /// Takes one token for `key` or throws `rate_limited` with the seconds until one is available.
    public func take(_ key: String, what: String) throws(HeliographError) {
        guard rate > 0 else { return }
        let now = clock.now
        let waitSeconds: Double? = buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            let elapsed = bucket.updated.duration(to: now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(burst, bucket.tokens + seconds * rate)
            bucket.updated = now
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                buckets[key] = bucket
                if buckets.count > sweepThreshold { sweep(&buckets, now: now) }
                return nil
            }
            buckets[key] = bucket
            return (1 - bucket.tokens) / rate
        }
        if let waitSeconds {
            let retryAfter = max(1, Int(waitSeconds.rounded(.up)))
            throw HeliographError(.rateLimited, "too many \(what); retry in \(retryAfter) s", retryAfterSeconds: retryAfter)
        }
    }

    private func sweep(_ buckets: inout [String: Bucket], now: ContinuousClock.Instant) {
        let refillTime = Duration.seconds(burst / rate)
        buckets = buckets.filter { $0.value.updated.duration(to: now) < refillTime }
    }
}
