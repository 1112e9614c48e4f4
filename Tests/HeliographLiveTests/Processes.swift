import Foundation
import HeliographCore

/// Where the built `heliograph` and `helio` executables are: next to the test bundle, unless
/// `HELIOGRAPH_BIN_DIR` says otherwise.
let binaryDirectory: URL = {
    if let dir = ProcessInfo.processInfo.environment["HELIOGRAPH_BIN_DIR"] { return URL(fileURLWithPath: dir) }
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    // Walk up from the test binary (inside a .xctest bundle on some platforms) to the build folder.
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("heliograph").path) { return url }
    }
    return URL(fileURLWithPath: ".build/debug")
}()

/// A `heliograph serve` child process on a free port.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let url: URL
    let log: URL

    /// Starts the server on `dataDirectory` and waits until it listens.
    init(dataDirectory: URL, extraArguments: [String] = []) async throws {
        let portFile = dataDirectory.appendingPathComponent("port-\(UUID().uuidString)")
        log = dataDirectory.appendingPathComponent("server-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = binaryDirectory.appendingPathComponent("heliograph")
        process.arguments =
            ["serve", "--port", "0", "--data-dir", dataDirectory.path, "--port-file", portFile.path] + extraArguments
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOf: portFile, encoding: .utf8),
                let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                url = URL(string: "http://127.0.0.1:\(port)")!
                return
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.terminate()
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        throw HeliographError(.internalError, "the server did not start: \(text)")
    }

    /// Sends a signal and waits for the process to exit; returns its exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(20)) async throws -> Int32 {
        kill(process.processIdentifier, signal)
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                kill(process.processIdentifier, SIGKILL)
                throw HeliographError(.internalError, "the server did not stop within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// The result of running `helio`.
struct CommandResult {
    var status: Int32
    var output: String
    var error: String
}

/// Runs `helio` with arguments and a profile directory; waits up to `timeout`.
func helio(_ arguments: [String], configHome: URL, timeout: Duration = .seconds(30)) async throws -> CommandResult {
    try await runExecutable("helio", arguments, environment: ["XDG_CONFIG_HOME": configHome.path], timeout: timeout)
}

/// Runs `heliograph` with arguments; waits up to `timeout`.
func heliograph(
    _ arguments: [String], environment extra: [String: String] = [:], timeout: Duration = .seconds(30)
) async throws -> CommandResult {
    try await runExecutable("heliograph", arguments, environment: extra, timeout: timeout)
}

/// Runs one of the package's executables with `environment` added to this process's, polling
/// (not blocking a thread) until it exits; stops it after `timeout`.
private func runExecutable(
    _ name: String, _ arguments: [String], environment extra: [String: String], timeout: Duration
) async throws -> CommandResult {
    let process = Process()
    process.executableURL = binaryDirectory.appendingPathComponent(name)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
    let deadline = ContinuousClock.now + timeout
    while process.isRunning {
        guard ContinuousClock.now < deadline else {
            process.terminate()
            throw HeliographError(.internalError, "\(name) \(arguments.joined(separator: " ")) did not finish")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    return CommandResult(
        status: process.terminationStatus,
        output: String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
        error: String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
}

/// A new empty directory under `TMPDIR`.
func temporaryDirectory(_ label: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("heliograph-\(label)-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
