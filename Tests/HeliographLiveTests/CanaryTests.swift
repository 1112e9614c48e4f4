import Foundation
import HeliographCore
import HeliographKit
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

        // The control: one message sent without encryption must be found, or the scan proves nothing.
        let control = "CONTROL-\(UUID().uuidString)"
        try await alicePhone.send(text: control, to: "bob_b")
        await alicePhone.close()
        await bobPhone.close()
        try await server.stop()

        var canaryHits = 0
        var controlHits = 0
        let scanned = Self.files(under: data)
        #expect(scanned.contains { $0.lastPathComponent == "heliograph.sqlite" })
        #expect(scanned.contains { $0.pathExtension == "log" })
        for file in scanned {
            let bytes = try Data(contentsOf: file)
            for form in Self.forms(of: canary) { canaryHits += Self.occurrences(of: form, in: bytes) }
            controlHits += Self.occurrences(of: Data(control.utf8), in: bytes)
        }
        #expect(canaryHits == 0, "the canary appeared \(canaryHits) times in the server's files")
        #expect(controlHits > 0, "the unencrypted control message was not found: the scan is not seeing the data")
    }
}
