import Foundation
import HeliographCore
import HeliographProtocol
import HeliographStore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import Synchronization

/// The WebSocket endpoint `/v1/socket`: request/response frames plus pushed envelopes.
///
/// One socket runs two loops: the inbound loop handles frames one at a time (so a device's
/// sends keep their order), and, once the socket authenticated, a delivery loop pushes the
/// device's inbox whenever the hub wakes it.
struct SocketGateway: Sendable {
    let services: HeliographServices
    let storage: any HeliographStorage
    let hub: DeliveryHub
    let metrics: ServerMetrics
    let configuration: ServerConfiguration
    let clock: any WallClock
    let sockets: SocketRegistry
    /// Every authenticated socket joins it, so a revocation closes the socket wherever it is
    /// heard (see ``RevocationRegistry``), whether the socket receives or not.
    let revocations: RevocationRegistry
    /// Chat updates for the sockets of members.
    let fanout: ChatFanout

    /// How many envelopes one inbox read returns.
    static let deliveryBatch = 256
    /// Request ids longer than this many UTF-8 bytes are refused (bytes, not characters: one
    /// character may carry any number of combining marks).
    static let maximumRequestIDLength = 64

    /// What one socket is doing, shared by its loops and the shutdown handler.
    private final class SocketStateBox: Sendable {
        let mutex = Mutex(SocketState())
        func withLock<T: Sendable>(_ body: (inout SocketState) -> T) -> T { mutex.withLock { body(&$0) } }

        /// Records why the socket must close; returns whether to close now (no request in
        /// flight) or leave it to the inbound loop once the request in flight is answered.
        /// A revocation is never replaced by a later reason.
        func scheduleClose(_ reason: HeliographError, code: WebSocketErrorCode, revoked: Bool = false) -> Bool {
            withLock { state in
                guard !state.revoked else { return false }
                state.revoked = revoked
                state.closeReason = reason
                state.closeCode = code
                return !state.requestInFlight
            }
        }
    }

    private struct SocketState {
        var device: AuthenticatedDevice?
        var registration: UInt64?
        /// The socket's id in the chat fan-out, once it receives.
        var chatRegistration: UInt64?
        /// The socket's id in the revocation registry, once authenticated.
        var revocation: UInt64?
        /// The device was revoked: every later frame is refused, and the socket closes.
        var revoked = false
        var requestInFlight = false
        var closeReason: HeliographError?
        var closeCode = WebSocketErrorCode.goingAway
        var closed = false
    }

    /// Serves one upgraded socket from `client` until either side closes it; `eventLoop` is the
    /// connection's, where its authentication deadline runs.
    func serve(
        inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, client: ClientAddress, channel: any Channel,
        logger: Logger
    ) async {
        let eventLoop = channel.eventLoop
        let state = SocketStateBox()
        let dispatcher = APIDispatcher(services: services, client: client)

        /// Sends the reason as an error frame, then closes; once only.
        @Sendable func close(_ reason: HeliographError, code: WebSocketErrorCode) async {
            let first = state.withLock { state -> Bool in
                defer { state.closed = true }
                return !state.closed
            }
            guard first else { return }
            try? await outbound.write(.text(Self.errorFrame(reason)))
            try? await outbound.close(code, reason: reason.message)
        }

        /// Closes now, or after the request in flight has been answered.
        @Sendable func closeWhenIdle(_ reason: HeliographError) async {
            if state.scheduleClose(reason, code: .goingAway) { await close(reason, code: .goingAway) }
        }

        let socketID = await sockets.add { reason in await closeWhenIdle(reason) }
        defer { sockets.remove(socketID) }
        // A socket that never authenticates holds a connection for nothing. The deadline is a
        // task on the event loop, not a `Task.sleep`: a cancelled sleep keeps its timer (some
        // 600 bytes) until the deadline passes, so a client opening and closing sockets quickly
        // would pin that much per socket for the whole timeout; a cancelled NIO task is freed.
        let deadline = configuration.unauthenticatedSocketTimeout
        let authenticationDeadline = eventLoop.scheduleTask(in: TimeAmount(deadline)) {
            guard state.withLock({ $0.device == nil }) else { return }
            Task {
                await close(
                    HeliographError(.unauthenticated, "authenticate within \(deadline) of connecting"), code: .policyViolation)
            }
        }
        defer { authenticationDeadline.cancel() }
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                var messages = inbound.messages(maxSize: configuration.maxFrameBytes).makeAsyncIterator()
                do {
                    while let message = try await messages.next() {
                        guard case .text(let text) = message else {
                            try await outbound.write(
                                .text(Self.errorFrame(HeliographError(.badRequest, "frames must be JSON text, not binary"))))
                            continue
                        }
                        state.withLock { $0.requestInFlight = true }
                        await handleFrame(
                            Data(text.utf8), state: state, dispatcher: dispatcher, outbound: outbound, channel: channel,
                            logger: logger, close: close, group: &group)
                        // A shutdown or revocation that arrived during the request waited for it;
                        // close now.
                        let pending = state.withLock { state -> (HeliographError, WebSocketErrorCode)? in
                            state.requestInFlight = false
                            return state.closeReason.map { ($0, state.closeCode) }
                        }
                        if let (reason, code) = pending {
                            await close(reason, code: code)
                        }
                    }
                } catch {
                    logger.debug("socket closed", metadata: ["reason": "\(error)"])
                }
                group.cancelAll()
            }
            let registered = state.withLock { state in
                state.device.flatMap { device in state.registration.map { (device.deviceID, $0) } }
            }
            if let (device, id) = registered {
                hub.unregister(device, id: id)
                metrics.recordConnectedDevices(hub.connectedDeviceCount)
            }
            if let revocation = state.withLock({ $0.revocation }) { revocations.remove(revocation) }
            if let chatRegistration = state.withLock({ $0.chatRegistration }) { fanout.unregister(chatRegistration) }
        } onGracefulShutdown: {
            // Normally the drain (SocketRegistry) has already told this socket; this covers
            // hosts that stop the server without draining first.
            Task { await closeWhenIdle(SocketRegistry.shuttingDown) }
        }
    }

    /// Handles one client frame; never throws: every failure becomes an error frame or response.
    private func handleFrame(
        _ frame: Data, state: SocketStateBox, dispatcher: APIDispatcher, outbound: WebSocketOutboundWriter,
        channel: any Channel, logger: Logger, close: @escaping @Sendable (HeliographError, WebSocketErrorCode) async -> Void,
        group: inout TaskGroup<Void>
    ) async {
        let head: ClientFrameHead
        do {
            head = try WireCodec.decode(ClientFrameHead.self, from: frame)
        } catch {
            try? await outbound.write(.text(Self.errorFrame(error)))
            return
        }
        let (caller, revoked) = state.withLock { ($0.device, $0.revoked) }
        switch head.type {
        case .ack:
            guard let seq = head.seq else {
                try? await outbound.write(.text(Self.errorFrame(HeliographError(.badRequest, "an ack frame needs 'seq'"))))
                return
            }
            guard let caller else {
                try? await outbound.write(
                    .text(Self.errorFrame(HeliographError(.unauthenticated, "authenticate before acknowledging"))))
                return
            }
            guard !revoked, !revocations.isRevoked(caller.deviceID) else {
                try? await outbound.write(.text(Self.errorFrame(RevocationRegistry.revokedError)))
                return
            }
            do {
                _ = try await services.messages.acknowledge(AckRequest(seq: seq), for: caller)
            } catch {
                try? await outbound.write(.text(Self.errorFrame(ErrorMapping.publicError(error, logger: logger))))
            }
        case .request:
            guard let id = head.id, !id.isEmpty, id.utf8.count <= Self.maximumRequestIDLength else {
                try? await outbound.write(
                    .text(
                        Self.errorFrame(
                            HeliographError(
                                .badRequest, "a request frame needs an 'id' of 1-\(Self.maximumRequestIDLength) bytes (UTF-8)"))))
                return
            }
            guard let name = head.method, let method = APIMethod(rawValue: name) else {
                let error = HeliographError(.unknownMethod, "unknown method '\(head.method ?? "")'")
                try? await outbound.write(.text(Self.errorResponse(id: id, error)))
                return
            }
            // A frame that slipped in while a revoked socket closes is answered, never executed
            // (requests of a live socket are checked again in `checkStillValid`).
            guard !revoked else {
                try? await outbound.write(.text(Self.errorResponse(id: id, RevocationRegistry.revokedError)))
                return
            }
            do {
                let response: Data
                if method == .authenticate {
                    response = try await authenticate(
                        id: id, frame: frame, state: state, outbound: outbound, channel: channel, logger: logger,
                        close: close, group: &group)
                } else {
                    response = try await dispatcher.handle(method: method, id: id, frame: frame, caller: caller)
                }
                try? await outbound.write(.text(String(decoding: response, as: UTF8.self)))
            } catch {
                let failure = ErrorMapping.publicError(error, logger: logger)
                metrics.countError(code: failure.code.rawValue)
                try? await outbound.write(.text(Self.errorResponse(id: id, failure)))
            }
        }
    }

    /// Binds the socket to a device session and starts its delivery loop.
    private func authenticate(
        id: String, frame: Data, state: SocketStateBox, outbound: WebSocketOutboundWriter, channel: any Channel,
        logger: Logger,
        close: @escaping @Sendable (HeliographError, WebSocketErrorCode) async -> Void, group: inout TaskGroup<Void>
    ) async throws -> Data {
        let request = try WireCodec.decode(RequestFrame<AuthenticateRequest>.self, from: frame).body
        guard state.withLock({ $0.device }) == nil else {
            throw HeliographError(.badRequest, "this socket is already authenticated")
        }
        // Noted before the store read: a revocation heard after this point may be one that read
        // did not see yet, and the registry then tells (see RevocationState).
        let checked = revocations.generation
        let device = try await services.auth.authenticate(token: request.token)
        // Every authenticated socket joins, receiving or not: from here on a revocation heard on
        // this node closes it with 1008 once its request in flight (this one, now) is answered.
        let (revocation, admission) = revocations.admit(device.deviceID, checkedAt: checked) { reason in
            if state.scheduleClose(reason, code: .policyViolation, revoked: true) {
                Task { await close(reason, .policyViolation) }
            }
        }
        let resumed: (start: Int64, lastSequence: Int64)
        do {
            switch admission {
            case .active:
                break
            case .revoked:
                throw RevocationRegistry.revokedError
            case .recheck:
                // The change feed had a gap since the read: read the device once more.
                if try await !storage.devices.revokedDevices(among: [device.deviceID]).isEmpty {
                    revocations.remove(revocation)
                    // Its other sockets on this node may have missed it too.
                    revocations.revoke([device.deviceID])
                    throw RevocationRegistry.revokedError
                }
            }
            // Checks `after` before acknowledging anything: a refused authenticate changes nothing.
            resumed = try await services.messages.resume(after: request.after, for: device)
            // Revoked while this request ran: refuse it (the socket closes after this answer).
            guard !state.withLock({ $0.revoked }) else { throw RevocationRegistry.revokedError }
        } catch {
            revocations.remove(revocation)
            throw error
        }
        let (start, lastSequence) = resumed
        state.withLock {
            $0.device = device
            $0.revocation = revocation
        }
        guard request.receive ?? true else {
            return try Self.sessionResponse(id: id, device: device, lastSequence: lastSequence)
        }
        // The chats it follows are read before the socket registers for them: an update committed
        // in between is not pushed, but the device's sync after authenticating fetches it.
        let chats = try await storage.chats.memberships(of: device.accountID, limit: ChatService.maximumChatList).map(
            \.chat.id)
        let (registration, wakeups, mailbox) = hub.register(device.deviceID)
        let (chatRegistration, sink) = fanout.register(
            account: device.accountID, device: device.deviceID, chats: chats, channel: channel)
        state.withLock {
            $0.registration = registration
            $0.chatRegistration = chatRegistration
        }
        metrics.recordConnectedDevices(hub.connectedDeviceCount)
        group.addTask {
            await deliver(
                to: device.deviceID, after: start, wakeups: wakeups, mailbox: mailbox, outbound: outbound, logger: logger,
                close: close)
        }
        group.addTask { await pushChatUpdates(from: sink, to: outbound, logger: logger) }
        return try Self.sessionResponse(id: id, device: device, lastSequence: lastSequence)
    }

    static func sessionResponse(id: String, device: AuthenticatedDevice, lastSequence: Int64) throws -> Data {
        return try WireCodec.encode(
            ResponseFrame(
                id: id, status: 200,
                body: SessionInfo(
                    accountId: device.accountID, username: device.username.display, deviceId: device.deviceID,
                    lastSequence: lastSequence),
                error: nil))
    }

    /// Pushes a device's inbox after `start`, then again after every wake-up, until cancelled.
    private func deliver(
        to device: DeviceID, after start: Int64, wakeups: AsyncStream<Void>, mailbox: DeliveryHub.Mailbox,
        outbound: WebSocketOutboundWriter, logger: Logger,
        close: @escaping @Sendable (HeliographError, WebSocketErrorCode) async -> Void
    ) async {
        var cursor = start
        for await _ in wakeups {
            // Handed-over envelopes that continue exactly where the socket is: push them without a
            // store read. Anything else (a gap, an overflow, a wake-up from another node) reads.
            let (taken, needsRead) = mailbox.take()
            let handed = taken.filter { $0.sequence > cursor }
            // Only hand-overs, all delivered already by an earlier read: nothing to do.
            if !needsRead && handed.isEmpty { continue }
            if !needsRead, let first = handed.first, first.sequence == cursor + 1,
                zip(handed, handed.dropFirst()).allSatisfy({ $0.sequence + 1 == $1.sequence })
            {
                do {
                    for envelope in handed {
                        try await push(envelope, to: outbound)
                        cursor = envelope.sequence
                    }
                } catch {
                    logger.debug("delivery stopped", metadata: ["device": "\(device)", "reason": "\(error)"])
                    return
                }
                continue
            }
            var more = true
            while more, !Task.isCancelled {
                do {
                    let batch: [Envelope]
                    do {
                        batch = try await metrics.timed(\.storeFetchTime) {
                            try await storage.inbox.envelopes(for: device, after: cursor, limit: Self.deliveryBatch)
                        }
                    } catch let error where !(error is CancellationError) {
                        // A socket that silently stopped receiving would look healthy to its client:
                        // close it instead, so the client reconnects and resumes when the store is back.
                        let failure = ErrorMapping.publicError(error, logger: logger)
                        await close(failure, .unexpectedServerError)
                        return
                    }
                    for envelope in batch {
                        try await push(envelope, to: outbound)
                        cursor = envelope.sequence
                    }
                    more = batch.count == Self.deliveryBatch
                } catch is CancellationError {
                    return
                } catch {
                    // The socket is gone: stop; the client resumes on reconnect.
                    logger.debug("delivery stopped", metadata: ["device": "\(device)", "reason": "\(error)"])
                    return
                }
            }
        }
    }

    /// Writes the chat updates the fan-out queued for this socket, until it closes. After an
    /// overflow the socket is told to sync instead of getting a partial stream.
    private func pushChatUpdates(from sink: ChatFanout.Sink, to outbound: WebSocketOutboundWriter, logger: Logger) async {
        for await _ in sink.wakeups {
            let (frames, overflowed) = sink.take()
            do {
                if overflowed {
                    // Waits until the socket can take it, then direct pushes resume.
                    try await outbound.write(.text(Self.chatsChangedFrame))
                    sink.resynced()
                }
                for frame in frames { try await outbound.write(.text(frame)) }
                metrics.recordChatPushes(frames.count)
            } catch {
                logger.debug("chat pushes stopped", metadata: ["reason": "\(error)"])
                return
            }
        }
    }

    static let chatsChangedFrame = String(decoding: (try? WireCodec.encode(ChatsChangedFrame())) ?? Data(), as: UTF8.self)

    private func push(_ envelope: Envelope, to outbound: WebSocketOutboundWriter) async throws {
        let text = String(decoding: try WireCodec.encode(EnvelopeFrame(envelope: WireEnvelope(envelope))), as: UTF8.self)
        try await outbound.write(.text(text))
        metrics.recordDelivered(latency: clock.now().timeIntervalSince(envelope.serverTime))
    }

    static func errorFrame(_ error: any Error) -> String {
        let body = ErrorBody((error as? HeliographError) ?? HeliographError(.internalError, "internal error"))
        return String(decoding: (try? WireCodec.encode(ErrorFrame(error: body))) ?? Data(), as: UTF8.self)
    }

    static func errorResponse(id: String, _ error: HeliographError) -> String {
        let frame = ResponseFrame<EmptyBody>(
            id: id, status: ErrorMapping.status(for: error.code), body: nil, error: ErrorBody(error))
        return String(decoding: (try? WireCodec.encode(frame)) ?? Data(), as: UTF8.self)
    }
}
