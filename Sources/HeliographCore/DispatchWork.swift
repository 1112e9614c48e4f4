import Foundation

/// Runs blocking work (file I/O, image decoding) on a dispatch thread and awaits its result, so
/// it never stalls the cooperative thread pool that serves sockets and tasks.
public func onDispatchThread<T: Sendable>(
    qos: DispatchQoS.QoSClass = .default, _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: qos).async { continuation.resume(with: Result { try body() }) }
    }
}
