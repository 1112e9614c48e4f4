import Crypto
import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import Testing

/// A large upload through a real `heliograph serve` process: the server's peak memory is read
/// from the kernel (`VmHWM`), so nothing else in the test process can blur the figure.
extension ProcessTests {
    @Test("a 100 MiB upload and download through the Kit keep the server's peak memory bounded, on files and on PostgreSQL")
    func largeUploadServerMemory() async throws {
        var backends: [String?] = [nil]
        if postgresURL != nil { backends.append(try await freshDatabase()) }
        for database in backends {
            let data = temporaryDirectory("media-memory")
            var arguments = ["--upload-rate", "0"]
            if let database {
                let sealingKey = data.appendingPathComponent("franking-sealing.key")
                try Data((0..<32).map { _ in UInt8.random(in: .min ... .max) }).write(to: sealingKey)
                arguments += ["--database", database, "--franking-sealing-key-file", sealingKey.path]
            }
            let server = try await ServerProcess(dataDirectory: data, extraArguments: arguments)
            let profiles = ProfileStore(directory: data.appendingPathComponent("profiles"))
            let alice = try await HeliographClient.register(
                username: "alice", server: server.url, deviceName: "laptop", profileName: "alice", store: profiles)

            // 100 MiB of pseudo-random bytes, written a MiB at a time.
            let file = data.appendingPathComponent("large.bin")
            FileManager.default.createFile(atPath: file.path, contents: nil)
            let handle = try FileHandle(forWritingTo: file)
            var hasher = SHA256()
            var state: UInt64 = 0x2545_F491_4F6C_DD1D
            for _ in 0..<100 {
                var chunk = Data(count: 1 << 20)
                chunk.withUnsafeMutableBytes { raw in
                    let words = raw.bindMemory(to: UInt64.self)
                    for index in words.indices {
                        state ^= state << 13
                        state ^= state >> 7
                        state ^= state << 17
                        words[index] = state
                    }
                }
                hasher.update(data: chunk)
                try handle.write(contentsOf: chunk)
            }
            try handle.close()
            let expected = BlobHash(bytes: Data(hasher.finalize()))!

            let before = try peakResidentBytes(of: server.process.processIdentifier)
            let blob = try await alice.upload(file: file, purpose: .encrypted)
            #expect(blob.sha256 == expected)
            #expect(blob.size == 100 << 20)
            let copy = data.appendingPathComponent("copy.bin")
            try await alice.download(blob: blob.sha256, to: copy)
            #expect(try Self.fileHash(copy) == expected)
            let after = try peakResidentBytes(of: server.process.processIdentifier)
            let growth = after - before
            print(
                "100 MiB upload and download on \(database == nil ? "SQLite and files" : "PostgreSQL"): server peak RSS "
                    + "\(before >> 20) MiB before, \(after >> 20) MiB after")
            // A server holding the file would grow by at least its 100 MiB.
            #expect(growth < 64 << 20, "the server's peak memory grew by \(growth >> 20) MiB")
            await alice.close()
            try await server.stop()
        }
    }

    static func fileHash(_ file: URL) throws -> BlobHash {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return BlobHash(bytes: Data(hasher.finalize()))!
    }
}

/// A process's peak resident memory (`VmHWM` in /proc/PID/status), in bytes.
func peakResidentBytes(of pid: Int32) throws -> Int {
    let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
        let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
    else { throw HeliographError(.internalError, "no VmHWM for process \(pid)") }
    return kilobytes * 1024
}
