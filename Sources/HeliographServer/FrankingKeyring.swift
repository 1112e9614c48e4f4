import Foundation
import HeliographCore
import HeliographCrypto
import HeliographStore

/// The server's keys for franking tags: one current key that tags new messages, and the keys
/// it replaced, kept for ``retention`` so reports of older messages still verify.
///
/// The database holds every key only sealed under ``ServerSealingKey`` (AES-256-GCM, the key
/// id and purpose as associated data), which lives outside the database (a file or an
/// environment variable; see docs/operations.md). A copy of the database alone therefore
/// cannot make a tag that verifies.
///
/// Every node sharing a database reads which key is current at most ``refreshInterval`` after
/// it last did, so a rotation reaches every node within that time. A tag naming a key this
/// node has not seen yet is looked up in the store at once, so it verifies on every node.
public actor FrankingKeyring {
    /// The name under which versions before key ids kept the key in plain text.
    static let plainSecretName = "franking-v1"

    let store: any FrankingKeyStore
    let sealingKey: ServerSealingKey?
    let clock: any WallClock
    /// How long a replaced key is kept for verification.
    public nonisolated let retention: Duration
    /// How often the current key id is read again.
    public nonisolated let refreshInterval: Duration

    private var current: (key: Franking.ServerKey, readAt: Date)?
    private var prepared = false

    /// A keyring over `store`. Without `sealingKey` no key can be made or opened: every use
    /// fails with ``FrankingKeyError/noSealingKey``.
    public init(
        store: any FrankingKeyStore, sealingKey: ServerSealingKey?, clock: any WallClock, retention: Duration,
        refreshInterval: Duration = .seconds(60)
    ) {
        self.store = store
        self.sealingKey = sealingKey
        self.clock = clock
        self.retention = retention
        self.refreshInterval = refreshInterval
    }

    /// What ``prepare()`` found and did.
    public struct State: Sendable, Equatable {
        /// The id of the current key.
        public var currentKeyID: UInt32
        /// Every stored key id, the current one included, lowest first.
        public var keyIDs: [UInt32]
        /// Whether a plain secret of an earlier version was sealed (as key 0) and its plain
        /// copy deleted.
        public var sealedPlainSecret: Bool
    }

    /// Brings the stored keys into shape and proves the sealing key opens them: seals the plain
    /// secret an earlier version kept (as key 0, retired now, so its tags still verify) and
    /// deletes the plain copy, opens every stored key, and creates the first key when there is
    /// none. Nothing is created when any stored key fails to open, so a wrong sealing key never
    /// leads to a new key that would leave every earlier tag unverifiable.
    @discardableResult
    public func prepare() async throws -> State {
        let sealing = try requireSealingKey()
        let now = clock.now()
        let sealedPlain = try await store.importPlainSecret(
            named: Self.plainSecretName, as: Franking.ServerTag.legacyKeyID, at: now
        ) { plain in
            guard plain.count == Franking.size else {
                throw FrankingKeyError.unusablePlainSecret(size: plain.count)
            }
            return sealing.seal(plain, keyID: Franking.ServerTag.legacyKeyID, purpose: .frankingTag)
        }
        let stored = try await store.keys()
        for key in stored { _ = try open(key, with: sealing) }
        let currentKey = try await store.addCurrentKey(at: now, onlyIfNone: true) { id in
            Franking.newServerSecret().sealed(by: sealing, keyID: id)
        }
        current = (try open(currentKey, with: sealing), now)
        prepared = true
        return State(
            currentKeyID: currentKey.id, keyIDs: Set(stored.map(\.id) + [currentKey.id]).sorted(),
            sealedPlainSecret: sealedPlain)
    }

    /// The key to tag new messages with.
    public func currentKey() async throws -> Franking.ServerKey {
        if !prepared { try await prepare() }
        let now = clock.now()
        if let current, now >= current.readAt, now.timeIntervalSince(current.readAt) < refreshInterval.timeInterval {
            return current.key
        }
        let sealing = try requireSealingKey()
        // Another node (or `heliograph admin rotate-franking-key`) may have rotated meanwhile.
        let stored: StoredFrankingKey
        if let found = try await store.current() {
            stored = found
        } else {
            stored = try await store.addCurrentKey(at: now, onlyIfNone: true) { id in
                Franking.newServerSecret().sealed(by: sealing, keyID: id)
            }
        }
        let key = current?.key.id == stored.id ? current!.key : try open(stored, with: sealing)
        current = (key, now)
        return key
    }

    /// What a tag's key id leads to.
    public enum Lookup: Sendable {
        /// The key, to check the tag with.
        case key(Franking.ServerKey)
        /// The key was replaced more than ``retention`` ago (`retiredAt`) and is no longer used.
        case expired(retiredAt: Date)
        /// No such key is stored (never was, or deleted after its retention).
        case unknown
    }

    /// The key named `id` by a tag, for verification.
    public func verificationKey(id: UInt32) async throws -> Lookup {
        if let current, current.key.id == id { return .key(current.key) }
        let sealing = try requireSealingKey()
        guard let stored = try await store.key(id: id) else { return .unknown }
        if let retiredAt = stored.retiredAt, retiredAt < clock.now() - retention.timeInterval {
            return .expired(retiredAt: retiredAt)
        }
        return .key(try open(stored, with: sealing))
    }

    /// Makes a new current key; the one it replaces is kept for ``retention``. Keys retired
    /// longer ago than that are deleted. Returns the new key's id and the deleted ids.
    public func rotate() async throws -> (newKeyID: UInt32, deleted: [UInt32]) {
        let sealing = try requireSealingKey()
        // Refuses a wrong sealing key before adding anything.
        try await prepare()
        let stored = try await store.addCurrentKey(at: clock.now(), onlyIfNone: false) { id in
            Franking.newServerSecret().sealed(by: sealing, keyID: id)
        }
        current = (try open(stored, with: sealing), clock.now())
        return (stored.id, try await deleteExpired())
    }

    /// Deletes keys replaced more than ``retention`` ago; returns their ids.
    public func deleteExpired() async throws -> [UInt32] {
        try await store.deleteRetired(before: clock.now() - retention.timeInterval)
    }

    private func requireSealingKey() throws(FrankingKeyError) -> ServerSealingKey {
        guard let sealingKey else { throw .noSealingKey }
        return sealingKey
    }

    private func open(_ stored: StoredFrankingKey, with sealing: ServerSealingKey) throws(FrankingKeyError) -> Franking.ServerKey
    {
        do {
            return try Franking.ServerKey(
                id: stored.id, secret: sealing.open(stored.sealedKey, keyID: stored.id, purpose: .frankingTag))
        } catch {
            throw .cannotOpen(keyID: stored.id)
        }
    }
}

extension Data {
    fileprivate func sealed(by sealing: ServerSealingKey, keyID: UInt32) -> Data {
        sealing.seal(self, keyID: keyID, purpose: .frankingTag)
    }
}

/// Why the franking keys cannot be used; each says what the operator must do.
public enum FrankingKeyError: Error, Equatable, CustomStringConvertible {
    /// The server was started without a sealing key.
    case noSealingKey
    /// A stored key does not open with the configured sealing key.
    case cannotOpen(keyID: UInt32)
    /// The plain secret of an earlier version has the wrong size.
    case unusablePlainSecret(size: Int)

    public var description: String {
        switch self {
        case .noSealingKey:
            "no franking sealing key is configured, so the franking keys cannot be opened or made"
        case .cannotOpen(let id):
            "franking key \(id) in the database does not open with the configured sealing key: it is not the sealing key the keys were sealed with (restore that one from its backup), or the stored key was altered"
        case .unusablePlainSecret(let size):
            "the plain franking secret of an earlier version is \(size) bytes, not \(Franking.size); it was left in place"
        }
    }
}

extension Duration {
    /// Whole days, for messages that state a retention.
    var wholeDays: Int64 { components.seconds / 86400 }
}
