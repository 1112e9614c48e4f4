import Foundation
import GRDB
import HeliographCore
import Synchronization

/// Group commit for sends on SQLite: concurrent `enqueue` calls that arrive while a commit is
/// running are written together in the next transaction, each in its own savepoint.
///
/// Every send is still acknowledged only after the transaction holding it is on disk
/// (`synchronous = FULL`), but one fsync and one hop to the writer queue now serve a whole
/// batch instead of a single message. A send that fails (its savepoint is rolled back) does not
/// affect the others in its batch.
final class SQLiteGroupCommitter: Sendable {
    private typealias Waiter = (message: OutgoingMessage, continuation: CheckedContinuation<DeliveryReceipt, any Error>)
    private struct State {
        var waiting: [Waiter] = []
        var committing = false
    }

    /// The most sends written in one transaction, so one commit never grows without bound.
    static let maximumBatch = 256

    private let pool: DatabasePool
    private let state = Mutex(State())

    init(pool: DatabasePool) { self.pool = pool }

    func enqueue(_ message: OutgoingMessage) async throws -> DeliveryReceipt {
        try await withCheckedThrowingContinuation { continuation in
            let startCommitting = state.withLock { state -> Bool in
                state.waiting.append((message, continuation))
                guard !state.committing else { return false }
                state.committing = true
                return true
            }
            // The first caller of an idle committer drives it until nothing is waiting.
            if startCommitting { Task { await self.commitWhileWaiting() } }
        }
    }

    private func commitWhileWaiting() async {
        while true {
            let batch = state.withLock { state -> [Waiter] in
                let batch = Array(state.waiting.prefix(Self.maximumBatch))
                state.waiting.removeFirst(batch.count)
                if batch.isEmpty { state.committing = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            let messages = batch.map(\.message)
            do {
                let results = try await pool.write { db -> [Result<DeliveryReceipt, any Error>] in
                    messages.map { message in
                        var receipt: DeliveryReceipt?
                        do {
                            try db.inSavepoint {
                                receipt = try SQLiteInboxStore.enqueue(message, in: db)
                                return .commit
                            }
                            return receipt.map(Result.success) ?? .failure(StorageCorruption(column: "sent_messages"))
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                for (waiter, result) in zip(batch, results) { waiter.continuation.resume(with: result) }
            } catch {
                // The transaction itself failed (disk full, database closed): nothing was committed.
                for waiter in batch { waiter.continuation.resume(throwing: error) }
            }
        }
    }
}
