import Foundation
import HeliographCore
import HeliographProtocol
import Testing

@Suite("Wire codec")
struct WireCodecTests {
    @Test("a request frame round-trips with its typed body")
    func roundTrip() throws {
        let request = SendRequest(messageId: try MessageID(validating: "m1"), to: "@bob_b", payload: Data([1, 2, 3]))
        let data = try WireCodec.encode(RequestFrame(id: "r1", method: .send, body: request))
        let head = try WireCodec.decode(ClientFrameHead.self, from: data)
        #expect(head.type == .request)
        #expect(head.id == "r1")
        #expect(head.method == "send")
        let decoded = try WireCodec.decode(RequestFrame<SendRequest>.self, from: data).body
        #expect(decoded.payload == Data([1, 2, 3]))
        #expect(decoded.messageId.rawValue == "m1")
    }

    @Test("decoding errors name the field")
    func errorsNameTheField() throws {
        do {
            _ = try WireCodec.decode(SendRequest.self, from: Data(#"{"messageId":"m1","payload":"AA=="}"#.utf8))
            Issue.record("decoded without 'to'")
        } catch {
            #expect(error.code == .badRequest)
            #expect(error.message.contains("'to'"))
        }
        do {
            _ = try WireCodec.decode(SendRequest.self, from: Data(#"{"messageId":"bad id","to":"x","payload":"AA=="}"#.utf8))
            Issue.record("decoded a bad message id")
        } catch {
            #expect(error.message.contains("messageId"))
        }
        #expect(throws: HeliographError(.badRequest, "")) { try WireCodec.decode(SendRequest.self, from: Data("{not json".utf8)) }
    }

    @Test("an ack frame carries its sequence number")
    func ackFrame() throws {
        let head = try WireCodec.decode(ClientFrameHead.self, from: try WireCodec.encode(AckFrame(seq: 42)))
        #expect(head.type == .ack)
        #expect(head.seq == 42)
    }

    @Test("error bodies keep code, message and retry delay")
    func errorBody() {
        let error = HeliographError(.rateLimited, "slow down", retryAfterSeconds: 3)
        let body = ErrorBody(error)
        #expect(body.code == "rate_limited")
        #expect(body.retryAfter == 3)
        #expect(body.heliographError == error)
    }
}
