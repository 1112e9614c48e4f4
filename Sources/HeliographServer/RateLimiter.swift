import Foundation
import HeliographCore
import Synchronization

/// Token buckets keyed by string (an account, a sender→recipient pair, a client address), in
/// memory per node.
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
    private let capacity: Int
    private let buckets = Mutex<[String: Bucket]>([:])
    private let clock = ContinuousClock()

    /// A limiter refilling `rate` tokens per second up to `burst`; a rate of 0 disables it.
    ///
    /// At most `capacity` keys keep a bucket: keys are chosen by clients (addresses, names), so
    /// the map must stay bounded however many of them appear.
    public init(rate: Double, burst: Double, capacity: Int = 100_000) {
        self.rate = rate
        self.burst = max(burst, 1)
        self.capacity = max(capacity, 16)
    }

    /// Whether the limiter limits anything (a rate of 0 turns it off).
    public var isEnabled: Bool { rate > 0 }

    /// How many keys currently have a bucket; never more than the capacity.
    public var trackedKeys: Int { buckets.withLock { $0.count } }

    /// Takes one token for `key` or throws `rate_limited` with the seconds until one is available.
    public func take(_ key: String, what: String) throws(HeliographError) {
        try take([key], what: what)
    }

    /// Takes one token from each of `keys`, all or none: when any bucket is empty nothing is
    /// taken (a refused request must not cost the other buckets), and the error names the
    /// longest wait among the empty ones.
    public func take(_ keys: some Collection<String>, what: String) throws(HeliographError) {
        guard rate > 0, !keys.isEmpty else { return }
        let now = clock.now
        let waitSeconds: Double? = buckets.withLock { buckets in
            var refilled: [(String, Bucket)] = []
            var longestWait: Double?
            for key in keys {
                var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
                bucket.tokens = min(burst, bucket.tokens + bucket.updated.duration(to: now).timeInterval * rate)
                bucket.updated = now
                if bucket.tokens < 1 { longestWait = max(longestWait ?? 0, (1 - bucket.tokens) / rate) }
                refilled.append((key, bucket))
            }
            for (key, var bucket) in refilled {
                if longestWait == nil { bucket.tokens -= 1 }
                buckets[key] = bucket
            }
            if buckets.count > capacity { shrink(&buckets, now: now) }
            return longestWait
        }
        if let waitSeconds {
            let retryAfter = max(1, Int(waitSeconds.rounded(.up)))
            throw HeliographError(.rateLimited, "too many \(what); retry in \(retryAfter) s", retryAfterSeconds: retryAfter)
        }
    }

    /// Brings the map back under its capacity. Buckets that have refilled completely are the
    /// same as absent ones and go first. If that is not enough (many keys active at once), the
    /// fullest buckets go next: forgetting them gives back the fewest tokens, and a drained
    /// bucket, the one that matters, is dropped last. The map is cut to 90 % of the capacity
    /// so that the sort is paid once per many inserts, not on every one.
    private func shrink(_ buckets: inout [String: Bucket], now: ContinuousClock.Instant) {
        let refillTime = Duration.seconds(burst / rate)
        buckets = buckets.filter { $0.value.updated.duration(to: now) < refillTime }
        let target = capacity - capacity / 10
        guard buckets.count > target else { return }
        func current(_ bucket: Bucket) -> Double {
            min(burst, bucket.tokens + bucket.updated.duration(to: now).timeInterval * rate)
        }
        let fullestFirst = buckets.map { ($0.key, current($0.value)) }.sorted { $0.1 > $1.1 }
        for (key, _) in fullestFirst.prefix(buckets.count - target) {
            buckets[key] = nil
        }
    }
}

/// The limits on registration and login, which anybody can call without an account.
///
/// Each request is counted per client address (one client cannot take what others need),
/// logins also per target account (an attacker on many addresses cannot try one account faster
/// than its bucket, and one account under attack leaves the others alone), and everything
/// against a large server-wide ceiling that protects the server, not any one account.
public struct AuthLimits: Sendable {
    let registerPerAddress: RateLimiter
    let loginPerAddress: RateLimiter
    let loginPerAccount: RateLimiter
    let serverWide: RateLimiter

    /// The limits of `configuration`.
    public init(_ configuration: ServerConfiguration) {
        registerPerAddress = RateLimiter(
            rate: configuration.registerAddressRate, burst: configuration.registerAddressBurst)
        loginPerAddress = RateLimiter(rate: configuration.loginAddressRate, burst: configuration.loginAddressBurst)
        loginPerAccount = RateLimiter(rate: configuration.loginAccountRate, burst: configuration.loginAccountBurst)
        serverWide = RateLimiter(rate: configuration.authRate, burst: configuration.authBurst)
    }

    /// One registration from `client`.
    func register(from client: ClientAddress) throws(HeliographError) {
        try registerPerAddress.take(client.key, what: "registrations from your address")
        try serverWide.take("register", what: "registrations on this server")
    }

    /// One `challenge` or `login` (`step`) from `client`, before the account is known.
    func login(_ step: String, from client: ClientAddress) throws(HeliographError) {
        try loginPerAddress.take("\(step) \(client.key)", what: "login attempts from your address")
    }

    /// One `challenge` or `login` (`step`) for `account`, once it is known.
    func login(_ step: String, account: AccountID) throws(HeliographError) {
        try loginPerAccount.take("\(step) \(account)", what: "login attempts for this account")
        try serverWide.take("login", what: "login attempts on this server")
    }
}

/// The limits on `fetchKeys`, each call of which uses up one-time prekeys of other devices.
///
/// Per requesting account, so one account cannot sweep the directory, and per target device,
/// so many accounts together cannot drain one device's one-time prekeys faster than it refills.
public struct KeyFetchLimits: Sendable {
    let perRequester: RateLimiter
    let perTargetDevice: RateLimiter

    /// The limits of `configuration`.
    public init(_ configuration: ServerConfiguration) {
        perRequester = RateLimiter(rate: configuration.fetchKeysAccountRate, burst: configuration.fetchKeysAccountBurst)
        perTargetDevice = RateLimiter(rate: configuration.fetchKeysDeviceRate, burst: configuration.fetchKeysDeviceBurst)
    }

    /// One fetch by `requester`.
    func fetch(by requester: AccountID) throws(HeliographError) {
        try perRequester.take(requester.description, what: "key fetches from your account")
    }

    /// One claim on each of `devices`, all or none.
    func claim(from devices: [DeviceID], of username: Username) throws(HeliographError) {
        try perTargetDevice.take(devices.map(\.description), what: "key fetches for the devices of \(username)")
    }
}
