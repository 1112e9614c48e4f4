import HeliographCore
import Testing

@Suite("Usernames")
struct UsernameTests {
    @Test(
        "valid names are accepted and keep their spelling",
        arguments: ["alice", "Bob_99", "a1234", "x_y_z_w", String(repeating: "a", count: 32)])
    func valid(_ name: String) throws {
        let username = try Username(validating: name)
        #expect(username.display == name)
        #expect(username.canonical == name.lowercased())
    }

    @Test("a leading @ is accepted as people type it")
    func leadingAt() throws {
        #expect(try Username(validating: "@alice").display == "alice")
    }

    @Test(
        "invalid names are refused with invalid_username",
        arguments: [
            "", "abcd", String(repeating: "a", count: 33), "1alice", "_alice", "alice_", "ali ce", "alice!", "alïce", "@@alice",
        ])
    func invalid(_ name: String) {
        #expect(throws: HeliographError(.invalidUsername, "")) { try Username(validating: name) }
    }

    @Test("the error says which rule failed")
    func messages() {
        #expect(throws: HeliographError.self) { try Username(validating: "alice_") }
        do {
            _ = try Username(validating: "9lives")
            Issue.record("accepted a name starting with a digit")
        } catch {
            #expect(error.message.contains("start with a letter"))
        }
    }

    @Test("equality and hashing ignore case")
    func caseInsensitive() throws {
        let upper = try Username(validating: "ALICE")
        let lower = try Username(validating: "alice")
        #expect(upper == lower)
        #expect(Set([upper, lower]).count == 1)
    }
}

@Suite("Message ids")
struct MessageIDTests {
    @Test("ids of 1-64 URL-safe characters are accepted")
    func valid() throws {
        #expect(try MessageID(validating: "a").rawValue == "a")
        #expect(try MessageID(validating: String(repeating: "Z", count: 64)).rawValue.count == 64)
        #expect(try MessageID(validating: "msg-1_A").rawValue == "msg-1_A")
    }

    @Test("other ids are refused", arguments: ["", String(repeating: "a", count: 65), "has space", "slash/", "é"])
    func invalid(_ text: String) {
        #expect(throws: HeliographError(.invalidMessageID, "")) { try MessageID(validating: text) }
    }

    @Test("random ids differ")
    func random() {
        #expect(MessageID.random() != MessageID.random())
    }
}
