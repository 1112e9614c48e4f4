import ArgumentParser
import Crypto
import Foundation
import HeliographCore
import HeliographKit
import HeliographMedia
import HeliographProtocol

/// Upload and download throughput of one large file through the client SDK.
struct MediaTransfer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "media-transfer",
        abstract: "Uploads one large file in parts and downloads it back: MiB/s, server CPU per MiB, server peak memory.",
        discussion: """
            Makes a file of --size-mib MiB of pseudo-random bytes in --work-dir, registers an account, \
            uploads the file through the client SDK (512 KiB parts, as helio does) and downloads it \
            again, checking its SHA-256. With --server-pid the report gives the server's CPU time per \
            MiB for each direction and its peak resident memory (VmHWM) before and after. Start the \
            server with --upload-rate 0 and --max-upload-mib at least the size.
            """)

    @OptionGroup var common: CommonOptions
    @Option(help: "The file's size in MiB.") var sizeMib = 1024
    @Option(help: "Where the file, its downloaded copy and the client profile go (removed afterwards).")
    var workDir: String = FileManager.default.temporaryDirectory.path

    func run() async throws {
        let directory = URL(fileURLWithPath: workDir).appendingPathComponent("heliograph-media-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("upload.bin")
        let expected = try Self.makeFile(file, mebibytes: sizeMib)
        let client = try await HeliographClient.register(
            username: common.prefix + "media", server: common.url, deviceName: "load", profileName: "media",
            store: ProfileStore(directory: directory.appendingPathComponent("profiles")), encryption: false)
        let beforeUpload = ProcessSample(pids: common.serverPid)
        let uploadStart = ContinuousClock.now
        let blob = try await client.upload(file: file, purpose: .encrypted)
        let uploadSeconds = elapsedSeconds(since: uploadStart)
        let afterUpload = ProcessSample(pids: common.serverPid)
        guard blob.sha256 == expected else { throw ValidationError("the server stored another hash than the file's") }

        let copy = directory.appendingPathComponent("download.bin")
        let downloadStart = ContinuousClock.now
        try await client.download(blob: blob.sha256, to: copy)
        let downloadSeconds = elapsedSeconds(since: downloadStart)
        let afterDownload = ProcessSample(pids: common.serverPid)
        await client.close()

        let mebibytes = Double(sizeMib)
        var report: [String: Double] = [
            "sizeMiB": mebibytes,
            "uploadSeconds": uploadSeconds, "uploadMiBPerSecond": mebibytes / uploadSeconds,
            "downloadSeconds": downloadSeconds, "downloadMiBPerSecond": mebibytes / downloadSeconds,
        ]
        print(String(format: "upload:   %.0f MiB in %.2f s = %.1f MiB/s", mebibytes, uploadSeconds, mebibytes / uploadSeconds))
        print(
            String(format: "download: %.0f MiB in %.2f s = %.1f MiB/s", mebibytes, downloadSeconds, mebibytes / downloadSeconds))
        if let beforeUpload, let afterUpload, let afterDownload {
            let up = (afterUpload.cpuSeconds - beforeUpload.cpuSeconds) * 1000 / mebibytes
            let down = (afterDownload.cpuSeconds - afterUpload.cpuSeconds) * 1000 / mebibytes
            report["serverCPUMillisecondsPerMiBUpload"] = up
            report["serverCPUMillisecondsPerMiBDownload"] = down
            print(String(format: "server CPU: %.2f ms per MiB uploaded, %.2f ms per MiB downloaded", up, down))
        }
        if let beforeUpload, let afterDownload {
            let (before, after) = (beforeUpload.peakResidentBytes, afterDownload.peakResidentBytes)
            report["serverPeakResidentMiBBefore"] = Double(before) / 1_048_576
            report["serverPeakResidentMiBAfter"] = Double(after) / 1_048_576
            print("server peak RSS: \(before >> 20) MiB before, \(after >> 20) MiB after")
        }
        if let json = common.json {
            try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys, .prettyPrinted])
                .write(to: URL(fileURLWithPath: json))
        }
    }

    /// Writes `mebibytes` MiB of xorshift output to `file`, one MiB at a time; returns its SHA-256.
    static func makeFile(_ file: URL, mebibytes: Int) throws -> BlobHash {
        FileManager.default.createFile(atPath: file.path, contents: nil)
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        var hasher = SHA256()
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var chunk = Data(count: 1 << 20)
        for _ in 0..<mebibytes {
            chunk.withUnsafeMutableBytes { raw in
                for index in raw.bindMemory(to: UInt64.self).indices {
                    state ^= state << 13
                    state ^= state >> 7
                    state ^= state << 17
                    raw.storeBytes(of: state, toByteOffset: index * 8, as: UInt64.self)
                }
            }
            hasher.update(data: chunk)
            try handle.write(contentsOf: chunk)
        }
        return BlobHash(bytes: Data(hasher.finalize()))!
    }
}

/// How fast the server's public-image check makes thumbnails, in this process.
struct Thumbnails: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thumbnails",
        abstract: "Runs the server's public image check (full decode, size, 320 px JPEG thumbnail) on one thread.",
        discussion: """
            Makes a --width × --height photo-like JPEG (a gradient with noise), then checks it \
            --count times exactly as a finished public upload is checked, and reports thumbnails \
            per second.
            """)

    @Option(help: "Image width in pixels.") var width = 4000
    @Option(help: "Image height in pixels.") var height = 3000
    @Option(help: "How many times to check it.") var count = 20

    func run() async throws {
        var bytes = [UInt8](repeating: 0, count: width * height * 3)
        var noise: UInt64 = 0x2545_F491_4F6C_DD1D
        for y in 0..<height {
            for x in 0..<width {
                noise ^= noise << 13
                noise ^= noise >> 7
                noise ^= noise << 17
                let offset = (y * width + x) * 3
                bytes[offset] = UInt8((x * 255 / max(width - 1, 1) + Int(noise & 15)) & 255)
                bytes[offset + 1] = UInt8((y * 255 / max(height - 1, 1) + Int((noise >> 8) & 15)) & 255)
                bytes[offset + 2] = UInt8((noise >> 16) & 255)
            }
        }
        let pixels = Data(bytes)
        let image = try DecodedImage(width: width, height: height, pixels: pixels)
        let jpeg = try ImageCodec().encodeJPEG(image, quality: 85)
        let type = "image/jpeg"
        let check = PublicMediaCheck()
        var facts = try check.check(declaredType: type, bytes: jpeg)
        let start = ContinuousClock.now
        for _ in 0..<count { facts = try check.check(declaredType: type, bytes: jpeg) }
        let seconds = elapsedSeconds(since: start)
        print(
            String(
                format: "%@ %d×%d (%.1f MiB): %d thumbnails (%d×%d, %d bytes) in %.2f s = %.2f thumbnails/s", type, width,
                height, Double(jpeg.count) / 1_048_576, count, facts.width ?? 0, facts.height ?? 0,
                facts.thumbnail?.count ?? 0, seconds, Double(count) / seconds))
    }
}

/// Seconds since `start` on the monotonic clock.
func elapsedSeconds(since start: ContinuousClock.Instant) -> Double {
    let (seconds, attoseconds) = (ContinuousClock.now - start).components
    return Double(seconds) + Double(attoseconds) / 1e18
}
