import Foundation
import HeliographCore
import Synchronization

/// Pushes committed chat updates to the sockets on this node whose accounts are members.
///
/// A post is encoded once; ``publish(_:frame:)`` hands the same text to every listening
/// socket's bounded queue and wakes its writer, so the poster never waits for the push and
/// the cost per subscriber is one queue append. A socket that reads too slowly loses queued
/// frames and gets one `chatsChanged` frame instead: it syncs and fetches the gaps, so nothing
/// is lost, only fetched later. Offline members simply fetch from their position later.
public final class ChatFanout: Sendable {
    /// One socket's queue of encoded frames.
    final class Sink: Sendable {
        /// Frames waiting for the socket's writer; past it the queue is dropped for a resync.
        static let capacity = 512
        private let state = Mutex<(frames: [String], overflowed: Bool)>(([], false))
        let wake: AsyncStream<Void>.Continuation
        let wakeups: AsyncStream<Void>

        init() {
            (wakeups, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        }

        func put(_ frame: String) {
            state.withLock { state in
                if state.frames.count < Self.capacity {
                    state.frames.append(frame)
                } else {
                    state.frames.removeAll()
                    state.overflowed = true
                }
            }
            wake.yield()
        }

        /// Makes the next ``take()`` report an overflow, so the socket is told to sync.
        func markChanged() {
            state.withLock { $0.overflowed = true }
            wake.yield()
        }

        /// Everything queued, and whether frames were dropped since the last call.
        func take() -> (frames: [String], overflowed: Bool) {
            state.withLock { state in
                defer {
                    state.frames.removeAll(keepingCapacity: true)
                    state.overflowed = false
                }
                return (state.frames, state.overflowed)
            }
        }
    }

    private struct Registration {
        let account: AccountID
        let device: DeviceID
        let sink: Sink
        var chats: Set<ChatID>
    }

    private struct State {
        var sockets: [UInt64: Registration] = [:]
        var byChat: [ChatID: [UInt64: Sink]] = [:]
        var byAccount: [AccountID: Set<UInt64>] = [:]
        /// The latest position pushed per chat, so a wake-up from another node pushes only what
        /// follows it.
        var published: [ChatID: Int64] = [:]
    }

    private let state = Mutex(State())
    private let nextID = Atomic<UInt64>(0)

    /// Creates an empty fan-out.
    public init() {}

    /// Registers a socket of `account` following `chats`; returns its id and queue.
    func register(account: AccountID, device: DeviceID, chats: [ChatID]) -> (id: UInt64, sink: Sink) {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        let sink = Sink()
        state.withLock { state in
            state.sockets[id] = Registration(account: account, device: device, sink: sink, chats: Set(chats))
            state.byAccount[account, default: []].insert(id)
            for chat in chats { state.byChat[chat, default: [:]][id] = sink }
        }
        return (id, sink)
    }

    /// Removes a socket.
    func unregister(_ id: UInt64) {
        let removed = state.withLock { state -> Registration? in
            guard let registration = state.sockets.removeValue(forKey: id) else { return nil }
            state.byAccount[registration.account]?.remove(id)
            if state.byAccount[registration.account]?.isEmpty == true { state.byAccount[registration.account] = nil }
            for chat in registration.chats {
                state.byChat[chat]?[id] = nil
                if state.byChat[chat]?.isEmpty == true {
                    state.byChat[chat] = nil
                    state.published[chat] = nil
                }
            }
            return registration
        }
        removed?.sink.wake.finish()
    }

    /// The account joined (true) or left the chat: its sockets on this node follow it or stop.
    public func setMember(_ account: AccountID, of chat: ChatID, _ isMember: Bool) {
        state.withLock { state in
            for id in state.byAccount[account] ?? [] {
                guard let sink = state.sockets[id]?.sink else { continue }
                if isMember {
                    state.sockets[id]?.chats.insert(chat)
                    state.byChat[chat, default: [:]][id] = sink
                } else {
                    state.sockets[id]?.chats.remove(chat)
                    state.byChat[chat]?[id] = nil
                    if state.byChat[chat]?.isEmpty == true { state.byChat[chat] = nil }
                }
            }
        }
    }

    /// Hands one encoded update at `sequence` to every socket following `chat`; returns how
    /// many sockets got it.
    @discardableResult
    public func publish(_ chat: ChatID, sequence: Int64, frame: String) -> Int {
        let sinks = state.withLock { state -> [Sink] in
            guard let listeners = state.byChat[chat] else { return [] }
            state.published[chat] = max(state.published[chat] ?? 0, sequence)
            return Array(listeners.values)
        }
        for sink in sinks { sink.put(frame) }
        return sinks.count
    }

    /// Hands a frame to the sockets of one account (read positions), except `excluding`'s.
    func publish(toAccount account: AccountID, excluding device: DeviceID?, frame: String) {
        let sinks = state.withLock { state -> [Sink] in
            (state.byAccount[account] ?? []).compactMap { id in
                guard let registration = state.sockets[id], registration.device != device else { return nil }
                return registration.sink
            }
        }
        for sink in sinks { sink.put(frame) }
    }

    /// Tells every socket on this node to sync its chats (after the cross-node feed had a gap).
    public func announceChatsChanged() {
        let sinks = state.withLock { state in state.sockets.values.map(\.sink) }
        for sink in sinks { sink.markChanged() }
    }

    /// Whether any socket on this node follows the chat, and the latest position pushed to it.
    func followers(of chat: ChatID) -> (count: Int, published: Int64?) {
        state.withLock { state in (state.byChat[chat]?.count ?? 0, state.published[chat]) }
    }

    /// The accounts among these with a socket on this node.
    func connected(_ accounts: [AccountID]) -> [AccountID] {
        state.withLock { state in accounts.filter { state.byAccount[$0] != nil } }
    }

    /// Chats followed by at least one socket on this node.
    var followedChats: [ChatID] { state.withLock { Array($0.byChat.keys) } }

    /// Sockets registered.
    var socketCount: Int { state.withLock { $0.sockets.count } }
}
