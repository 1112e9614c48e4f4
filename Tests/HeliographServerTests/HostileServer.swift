import Foundation
import HeliographCore
import HeliographStore
import Synchronization

/// A storage backend that lies on purpose, so that tests can run the real server as a hostile
/// operator would: every answer the server gives clients passes through here, and each attack
/// rewrites one kind of answer. Writes go to the real SQLite storage underneath.
///
/// What it can do is what a compromised server can do: relabel envelopes, replay old ones,
/// slip devices into accounts, hand out other devices' keys, leave out or roll back signed
/// device lists, and report waiting devices with other keys. What it cannot do is sign as an
/// account's identity key; the tests check that clients notice every one of these.
final class HostileStorage: HeliographStorage, Sendable {
    /// The lies currently told.
    struct Attacks: Sendable {
        /// Envelopes for a device get their sender rewritten (recipient device → new sender).
        var relabel: [DeviceID: EnvelopeSender] = [:]
        /// Envelopes delivered again with new sequence numbers, the first getting `from`.
        var replay: [DeviceID: (from: Int64, envelopes: [Envelope])] = [:]
        /// Devices listed as active devices of an account that does not own them.
        var extraDevices: [AccountID: [Device]] = [:]
        /// Accounts whose signed device list is left out.
        var omitList: Set<AccountID> = []
        /// Accounts whose device list is replaced with an older one (stored bytes).
        var rollBack: [AccountID: (version: Int64, list: Data)] = [:]
        /// Waiting devices reported with another committed key.
        var swapLinkKey: [DeviceID: Data] = [:]
        /// Devices reported as gone (not active, no keys) although they are.
        var hide: Set<DeviceID> = []
        /// Bundles claimed for a device come from another device (key → source).
        var substituteBundle: [DeviceID: DeviceID] = [:]
        /// Accounts looked up by id come back under another account's name (member lists).
        var rename: [AccountID: Username] = [:]
        /// Blobs served with one byte flipped at this offset.
        var flipBlobByte: [BlobHash: Int64] = [:]
        /// Blobs served with another blob's bytes instead (requested → served).
        var swapBlob: [BlobHash: BlobHash] = [:]
    }

    let base: SQLiteStorage
    private let attacks = Mutex(Attacks())

    init(_ base: SQLiteStorage) { self.base = base }

    /// Changes the attacks in effect.
    func attack(_ change: (inout Attacks) -> Void) { attacks.withLock { change(&$0) } }

    var current: Attacks { attacks.withLock { $0 } }

    var accounts: any AccountStore { HostileAccounts(base: base.accounts, owner: self) }
    var devices: any DeviceStore { HostileDevices(base: base.devices, owner: self) }
    var sessions: any SessionStore { base.sessions }
    var challenges: any ChallengeStore { base.challenges }
    var inbox: any InboxStore { HostileInbox(base: base.inbox, owner: self) }
    var prekeys: any PrekeyStore { HostilePrekeys(base: base.prekeys, owner: self) }
    var secrets: any ServerSecretStore { base.secrets }
    var frankingKeys: any FrankingKeyStore { base.frankingKeys }
    var chats: any ChatStore { base.chats }
    var chatLog: any ChatLogStore { base.chatLog }
    var blobs: any BlobStore { HostileBlobs(base: base.blobs, owner: self) }
    var blobReferences: any BlobReferenceStore { base.blobReferences }
    var changeFeed: (any InboxChangeFeed)? { base.changeFeed }
    func ping() async throws { try await base.ping() }
    func close() async throws { try await base.close() }
}

private struct HostileAccounts: AccountStore {
    let base: any AccountStore
    let owner: HostileStorage

    func insert(_ account: Account) async throws { try await base.insert(account) }
    func account(id: AccountID) async throws -> Account? {
        var account = try await base.account(id: id)
        if let name = owner.current.rename[id] { account?.username = name }
        return account
    }
    func account(username: Username) async throws -> Account? { try await base.account(username: username) }
    func replaceIdentityKey(of accountID: AccountID, from old: Data, to new: Data) async throws -> Bool {
        try await base.replaceIdentityKey(of: accountID, from: old, to: new)
    }
}

private struct HostileDevices: DeviceStore {
    let base: any DeviceStore
    let owner: HostileStorage

    func insert(_ device: Device) async throws { try await base.insert(device) }
    func device(id: DeviceID) async throws -> Device? {
        var device = try await base.device(id: id)
        if let swapped = owner.current.swapLinkKey[id] { device?.linkKey = swapped }
        return device
    }
    func devices(of accountID: AccountID) async throws -> [Device] {
        let attacks = owner.current
        let real = try await base.devices(of: accountID).filter { !attacks.hide.contains($0.id) }.map { device -> Device in
            var device = device
            if let swapped = attacks.swapLinkKey[device.id] { device.linkKey = swapped }
            return device
        }
        return real
            + (attacks.extraDevices[accountID] ?? []).map { device in
                var device = device
                device.accountID = accountID
                return device
            }
    }
    func revoke(_ deviceID: DeviceID, at time: Date) async throws -> Device? { try await base.revoke(deviceID, at: time) }
    func approve(_ deviceID: DeviceID) async throws -> Device? { try await base.approve(deviceID) }
}

private struct HostileInbox: InboxStore {
    let base: any InboxStore
    let owner: HostileStorage

    func enqueue(_ message: OutgoingMessage) async throws -> DeliveryReceipt { try await base.enqueue(message) }
    func envelopes(for deviceID: DeviceID, after: Int64, limit: Int) async throws -> [Envelope] {
        let attacks = owner.current
        var envelopes = try await base.envelopes(for: deviceID, after: after, limit: limit)
        if let sender = attacks.relabel[deviceID] {
            for index in envelopes.indices { envelopes[index].sender = sender }
        }
        if let replay = attacks.replay[deviceID] {
            // Replayed envelopes come after everything real, numbered from `from`.
            for (offset, old) in replay.envelopes.enumerated() where replay.from + Int64(offset) > after {
                var copy = old
                copy.sequence = replay.from + Int64(offset)
                envelopes.append(copy)
            }
        }
        return envelopes
    }
    func acknowledge(_ deviceID: DeviceID, through sequence: Int64) async throws -> Int64 {
        let last = try await base.lastSequence(of: deviceID)
        return try await base.acknowledge(deviceID, through: min(sequence, last))
    }
    func lastSequence(of deviceID: DeviceID) async throws -> Int64 {
        let real = try await base.lastSequence(of: deviceID)
        guard let replay = owner.current.replay[deviceID], !replay.envelopes.isEmpty else { return real }
        return max(real, replay.from + Int64(replay.envelopes.count) - 1)
    }
    func deleteExpired(before time: Date) async throws -> Int { try await base.deleteExpired(before: time) }
}

private struct HostilePrekeys: PrekeyStore {
    let base: any PrekeyStore
    let owner: HostileStorage

    func setKeys(_ keys: DeviceKeyRecord) async throws { try await base.setKeys(keys) }
    func addOneTimePrekeys(_ prekeys: [StoredPrekey], for deviceID: DeviceID) async throws {
        try await base.addOneTimePrekeys(prekeys, for: deviceID)
    }
    func keys(for deviceID: DeviceID) async throws -> DeviceKeyRecord? { try await base.keys(for: deviceID) }
    func claim(for deviceID: DeviceID) async throws -> ClaimedPrekeys? {
        guard let source = owner.current.substituteBundle[deviceID] else { return try await base.claim(for: deviceID) }
        // Another device's genuine keys, presented as this device's.
        var claimed = try await base.claim(for: source)
        claimed?.keys.deviceID = deviceID
        return claimed
    }
    func oneTimeCounts(for deviceID: DeviceID) async throws -> (x25519: Int, kem: Int) {
        try await base.oneTimeCounts(for: deviceID)
    }
    func publishedDevices(of accountID: AccountID) async throws -> [DeviceID] {
        let attacks = owner.current
        return try await base.publishedDevices(of: accountID).filter { !attacks.hide.contains($0) }
            + (attacks.extraDevices[accountID] ?? []).map(\.id)
    }
    func deleteOneTimePrekeys(for deviceID: DeviceID) async throws { try await base.deleteOneTimePrekeys(for: deviceID) }
    func deleteKeys(for deviceID: DeviceID) async throws { try await base.deleteKeys(for: deviceID) }
    func storeDeviceList(account: AccountID, version: Int64, list: Data) async throws -> Bool {
        try await base.storeDeviceList(account: account, version: version, list: list)
    }
    func deleteDeviceList(account: AccountID) async throws { try await base.deleteDeviceList(account: account) }
    func deviceList(account: AccountID) async throws -> (version: Int64, list: Data)? {
        let attacks = owner.current
        if attacks.omitList.contains(account) { return nil }
        if let old = attacks.rollBack[account] { return old }
        return try await base.deviceList(account: account)
    }
}

/// Serves other bytes than were stored, as a server tampering with attachments would.
private struct HostileBlobs: BlobStore {
    let base: any BlobStore
    let owner: HostileStorage

    func createUpload(_ record: UploadRecord) async throws { try await base.createUpload(record) }
    func upload(id: UploadID) async throws -> UploadRecord? { try await base.upload(id: id) }
    func writePart(upload: UploadID, index: Int, bytes: Data) async throws {
        try await base.writePart(upload: upload, index: index, bytes: bytes)
    }
    func receivedParts(of upload: UploadID) async throws -> [Int] { try await base.receivedParts(of: upload) }
    func finish(upload: UploadID, at time: Date) async throws -> BlobInfo { try await base.finish(upload: upload, at: time) }
    func discardUpload(id: UploadID) async throws -> Bool { try await base.discardUpload(id: id) }
    func deleteExpiredUploads(before time: Date) async throws -> Int { try await base.deleteExpiredUploads(before: time) }
    func blob(_ hash: BlobHash) async throws -> BlobInfo? {
        guard let swapped = owner.current.swapBlob[hash], let other = try await base.blob(swapped) else {
            return try await base.blob(hash)
        }
        return BlobInfo(hash: hash, size: other.size, createdAt: other.createdAt)
    }
    func read(_ hash: BlobHash, range: ClosedRange<Int64>?) -> AsyncThrowingStream<Data, any Error> {
        let attacks = owner.current
        if let swapped = attacks.swapBlob[hash] { return base.read(swapped, range: range) }
        guard let offset = attacks.flipBlobByte[hash] else { return base.read(hash, range: range) }
        let stream = base.read(hash, range: range)
        return AsyncThrowingStream { continuation in
            let task = Task {
                var position = range?.lowerBound ?? 0
                do {
                    for try await chunk in stream {
                        var piece = chunk
                        let end = position + Int64(piece.count)
                        if offset >= position, offset < end {
                            let index = piece.startIndex + Int(offset - position)
                            piece[index] ^= 0x01
                        }
                        position = end
                        continuation.yield(piece)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
    func delete(_ hash: BlobHash) async throws -> Bool { try await base.delete(hash) }
    func allBlobs(createdBefore time: Date, limit: Int) async throws -> [BlobInfo] {
        try await base.allBlobs(createdBefore: time, limit: limit)
    }
}
