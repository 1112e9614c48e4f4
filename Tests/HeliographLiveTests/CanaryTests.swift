import Foundation
import HeliographCore
import HeliographKit
import HeliographProtocol
import Testing

extension ProcessTests {
    /// How often `needle` occurs in `haystack`.
    static func occurrences(of needle: Data, in haystack: Data) -> Int {
        var count = 0
        var searchRange = haystack.startIndex..<haystack.endIndex
        while let found = haystack.range(of: needle, in: searchRange) {
            count += 1
            searchRange = found.upperBound..<haystack.endIndex
        }
        return count
    }

    /// Every regular file under `directory`.
    static func files(under directory: URL) -> [URL] {
        let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey])
        return (enumerator?.allObjects as? [URL] ?? []).filter {
            (try? $0.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true
        }
    }

    /// The canary, its UTF-8 bytes and its base64 forms at the three byte alignments, so that a
    /// plaintext stored or logged as base64 would be found too.
    static func forms(of text: String) -> [Data] {
        let bytes = Data(text.utf8)
        var forms = [bytes]
        for shift in 0..<3 {
            // Base64 of the text preceded by `shift` bytes: drop the characters that depend on them.
            let encoded = (Data(repeating: 0x20, count: shift) + bytes).base64EncodedString()
            let stable = encoded.dropFirst(shift == 0 ? 0 : 4).dropLast(4)
            if stable.count >= 16 { forms.append(Data(stable.utf8)) }
        }
        return forms
    }

    @Test("canary: the server's database files and logs never contain a private message's plaintext")
    func canaryScan() async throws {
        let data = temporaryDirectory("canary-server")
        let clients = temporaryDirectory("canary-clients")
        defer {
            try? FileManager.default.removeItem(at: data)
            try? FileManager.default.removeItem(at: clients)
        }
        // The most verbose logs, in both formats' worst case: JSON with every field.
        let server = try await ServerProcess(
            dataDirectory: data, extraArguments: ["--log-level", "trace", "--log-format", "json"])
        let profiles = ProfileStore(directory: clients)
        let alicePhone = try await HeliographClient.register(
            username: "alice", server: server.url, deviceName: "phone", profileName: "alice-phone", store: profiles)
        _ = try await HeliographClient.login(
            username: "alice", identityPrivateKey: alicePhone.profile.identityPrivateKey, server: server.url,
            deviceName: "laptop", profileName: "alice-laptop", store: profiles
        ) { try await alicePhone.approveDevice(code: $0.code) }
        let bobPhone = try await HeliographClient.register(
            username: "bob_b", server: server.url, deviceName: "phone", profileName: "bob-phone", store: profiles)
        _ = try await HeliographClient.login(
            username: "bob_b", identityPrivateKey: bobPhone.profile.identityPrivateKey, server: server.url,
            deviceName: "laptop", profileName: "bob-laptop", store: profiles
        ) { try await bobPhone.approveDevice(code: $0.code) }

        let canary = "CANARY-\(UUID().uuidString)"
        for index in 1...40 { try await alicePhone.sendEncrypted(text: "\(canary) a\(index)", to: "bob_b") }
        for index in 1...10 { try await bobPhone.sendEncrypted(text: "\(canary) b\(index)", to: "alice") }
        // Bob's phone reads and acknowledges Alice's messages: they really were the canary.
        var opened: [String] = []
        for message in try await receive(40, from: bobPhone) {
            if case .message(let decrypted) = try await bobPhone.open(message) { opened.append(decrypted.content.text) }
        }
        #expect(opened == (1...40).map { "\(canary) a\($0)" })

        // An attachment whose content, file name and caption carry the canary: uploaded as
        // ciphertext, downloaded and opened by Bob's phone.
        var lines = Data()
        while lines.count < 200_000 { lines.append(Data("\(canary) attachment line \(lines.count)\n".utf8)) }
        let attachment = clients.appendingPathComponent("\(canary).txt")
        try lines.write(to: attachment)
        try await alicePhone.sendAttachment(file: attachment, to: "bob_b", caption: "\(canary) caption", mediaType: "text/plain")
        let withAttachment = try await receive(1, from: bobPhone)[0]
        guard case .message(let decrypted) = try await bobPhone.open(withAttachment),
            let pointer = decrypted.content.attachments?.first
        else {
            Issue.record("Bob's phone could not open the attachment message")
            return
        }
        let saved = clients.appendingPathComponent("saved.txt")
        try await bobPhone.download(attachment: pointer, to: saved)
        #expect(FileManager.default.contents(atPath: saved.path) == lines)

        // The controls: one message and one file sent without encryption must be found, or the
        // scan proves nothing (for the database, the logs and the blob files).
        let control = "CONTROL-\(UUID().uuidString)"
        try await alicePhone.send(text: control, to: "bob_b")
        let controlFile = clients.appendingPathComponent("control.txt")
        try Data(String(repeating: "\(control)\n", count: 100).utf8).write(to: controlFile)
        _ = try await alicePhone.upload(file: controlFile, purpose: .encrypted)
        await alicePhone.close()
        await bobPhone.close()
        try await server.stop()

        var canaryHits = 0
        var controlHits = 0
        var blobControlHits = 0
        let scanned = Self.files(under: data)
        #expect(scanned.contains { $0.lastPathComponent == "heliograph.sqlite" })
        #expect(scanned.contains { $0.pathExtension == "log" })
        #expect(scanned.contains { $0.path.contains("/blobs/") })
        for file in scanned {
            let bytes = try Data(contentsOf: file)
            for form in Self.forms(of: canary) { canaryHits += Self.occurrences(of: form, in: bytes) }
            let hits = Self.occurrences(of: Data(control.utf8), in: bytes)
            controlHits += hits
            if file.path.contains("/blobs/") { blobControlHits += hits }
        }
        #expect(canaryHits == 0, "the canary appeared \(canaryHits) times in the server's files")
        #expect(controlHits > 0, "the unencrypted control message was not found: the scan is not seeing the data")
        #expect(blobControlHits > 0, "the unencrypted control file was not found: the scan is not seeing the blob files")
    }
}
