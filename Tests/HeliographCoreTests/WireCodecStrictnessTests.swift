import Foundation
import HeliographCore
import HeliographProtocol
import Testing

@Suite("Wire codec strictness")
struct WireCodecStrictnessTests {
    private func send(payload: String) -> Data {
        Data(#"{"messageId":"m1","to":"bob","payload":"\#(payload)"}"#.utf8)
    }

    @Test("canonical base64 decodes")
    func canonicalBase64() throws {
        #expect(try WireCodec.decode(SendRequest.self, from: send(payload: "/w==")).payload == Data([0xFF]))
        #expect(try WireCodec.decode(SendRequest.self, from: send(payload: "AQID")).payload == Data([1, 2, 3]))
        #expect(try WireCodec.decode(SendRequest.self, from: send(payload: "")).payload == Data())
    }

    @Test(
        "non-canonical base64 is refused with bad_request naming the field",
        arguments: [
            "/x==",  // the unused low bits of the last character are not zero (0xFF is "/w==")
            "AQJ=",  // the same for two bytes ("AQI=" is canonical)
            "/w===",  // an extra '='
            "AQID=",  // padding where none is due
            "/w",  // padding left out
            "/w\u{3d}\u{3d}\n",  // a line break
        ])
    func nonCanonicalBase64(_ text: String) {
        let body = text.replacingOccurrences(of: "\n", with: "\\n")
        do {
            _ = try WireCodec.decode(SendRequest.self, from: send(payload: body))
            Issue.record("accepted '\(body)'")
        } catch {
            #expect(error.code == .badRequest)
            #expect(error.message.contains("'payload'"))
            #expect(error.message.contains("base64"))
        }
    }

    @Test(
        "an object with a key twice is refused at any depth",
        arguments: [
            #"{"messageId":"m1","to":"bob","to":"mallory","payload":"AA=="}"#,
            #"{"messageId":"m1","to":"bob","\u0074o":"mallory","payload":"AA=="}"#,
            #"{"messageId":"m1","to":"bob","copies":[{"deviceId":"a","deviceId":"b","payload":"AA=="}]}"#,
        ])
    func duplicateKeys(_ json: String) {
        do {
            _ = try WireCodec.decode(SendRequest.self, from: Data(json.utf8))
            Issue.record("accepted \(json)")
        } catch {
            #expect(error.code == .badRequest)
            #expect(error.message.contains("appears twice"))
        }
    }

    @Test("a duplicate key inside a request frame's body is refused when the head is read")
    func duplicateKeyInFrameBody() {
        let frame = #"{"type":"request","id":"r1","method":"send","body":{"to":"a","to":"b"}}"#
        #expect(throws: HeliographError.self) { try WireCodec.decode(ClientFrameHead.self, from: Data(frame.utf8)) }
    }

    @Test("the same key in different objects, and key-like text inside strings, are fine")
    func sameKeyInSiblingObjects() throws {
        let device = "00000000-0000-0000-0000-000000000001"
        let json = #"""
            {"messageId":"m1","to":"bob \"to\":","copies":[{"deviceId":"\#(device)","payload":"AA=="},
            {"deviceId":"\#(device)","payload":"AQ=="}]}
            """#
        let request = try WireCodec.decode(SendRequest.self, from: Data(json.utf8))
        #expect(request.copies?.count == 2)
        #expect(request.to == #"bob "to":"#)
    }
}
