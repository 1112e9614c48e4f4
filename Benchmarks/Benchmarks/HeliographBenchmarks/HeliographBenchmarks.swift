import Benchmark
import Foundation
import HeliographCore
import HeliographProtocol
import HeliographStore

/// Benchmarks of the server's hot paths. Figures go to docs/benchmarks.md with the command.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput], maxDuration: .seconds(3), maxIterations: 100_000)

    let sender = WireSender(accountId: .random(), username: "alice", deviceId: .random())
    let envelope = WireEnvelope(
        seq: 42, messageId: .random(), sender: sender, serverTime: 1_795_375_686_743, payload: Data(repeating: 7, count: 128))
    let sendFrame = try! WireCodec.encode(
        RequestFrame(id: "r1", method: .send, body: SendRequest(messageId: .random(), to: "bob_b", payload: Data(count: 128))))

    cryptoBenchmarks()
    chatBenchmarks()

    Benchmark("frame: encode envelope push (128-byte payload)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try WireCodec.encode(EnvelopeFrame(envelope: envelope)))
        }
    }

    Benchmark("frame: decode send request (head + body)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try WireCodec.decode(ClientFrameHead.self, from: sendFrame))
            blackHole(try WireCodec.decode(RequestFrame<SendRequest>.self, from: sendFrame))
        }
    }

    // Inbox on SQLite: one file per benchmark, two accounts, the recipient with one device.
    @Sendable func sqliteInbox() async throws -> (SQLiteStorage, Account, Device, Device) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("heliograph-bench-\(UUID().uuidString)")
        let storage = try SQLiteStorage(directory: directory)
        let alice = Account(
            id: .random(), username: try Username(validating: "alice"), identityKey: Data(count: 32), createdAt: Date())
        let bob = Account(
            id: .random(), username: try Username(validating: "bob_b"), identityKey: Data(count: 32), createdAt: Date())
        let laptop = Device(id: .random(), accountID: alice.id, name: "laptop", createdAt: Date())
        let phone = Device(id: .random(), accountID: bob.id, name: "phone", createdAt: Date())
        try await storage.accounts.insert(alice)
        try await storage.accounts.insert(bob)
        try await storage.devices.insert(laptop)
        try await storage.devices.insert(phone)
        return (storage, alice, laptop, phone)
    }

    Benchmark("inbox (SQLite): append, fetch, acknowledge one envelope", configuration: .init(maxIterations: 5_000)) {
        benchmark in
        let (storage, alice, laptop, phone) = try await sqliteInbox()
        let bob = phone.accountID
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            let message = OutgoingMessage(
                messageID: try MessageID(validating: "m\(index)"),
                sender: EnvelopeSender(accountID: alice.id, username: alice.username, deviceID: laptop.id),
                recipientAccountID: bob, recipientDeviceIDs: [phone.id], serverTime: Date(), payload: Data(count: 128))
            let receipt = try await storage.inbox.enqueue(message)
            let fetched = try await storage.inbox.envelopes(for: phone.id, after: 0, limit: 16)
            blackHole(fetched)
            _ = try await storage.inbox.acknowledge(phone.id, through: receipt.sequences[phone.id] ?? 0)
        }
        benchmark.stopMeasurement()
        try await storage.close()
    }
}
