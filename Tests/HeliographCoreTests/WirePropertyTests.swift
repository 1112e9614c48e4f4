import Foundation
import HeliographCore
import HeliographProtocol
import PropertyBased
import Testing

/// Random values of every wire type survive encode → decode → encode unchanged: the codec's
/// strictness (canonical base64, no duplicate keys) never refuses what the encoder writes.
@Suite("Wire types round-trip (property-based)")
struct WirePropertyTests {
    static let bytes = Gen<UInt8>.value(in: 0...255).array(of: 0...48).map { Data($0) }
    static let text = Gen.character(in: " "..."\u{2FFF}").string(of: 0...24)
    static let uuid = Gen<UInt8>.value(in: 0...255).array(of: 16).map { bytes in
        UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9],
                bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }
    static let messageID = Gen.letterOrNumber.string(of: 1...64).map { try! MessageID(validating: $0) }
    static let prekey = zip(Gen.int(in: 1...4), Gen.uint32(), bytes, bytes).map { value in
        WirePrekey(kind: value.0, id: value.1, publicKey: value.2, signature: value.3)
    }
    static let deviceList = zip(Gen.uint64(), zip(uuid, bytes).array(of: 0...4), uuid.array(of: 0...3), bytes).map { value in
        WireDeviceList(
            version: value.0, devices: value.1.map { WireDeviceList.Entry(deviceId: DeviceID($0.0), agreementKey: $0.1) },
            revoked: value.2.isEmpty ? nil : value.2.map(DeviceID.init), signature: value.3)
    }

    /// Encodes, decodes with the strict codec, encodes again: the two encodings are equal.
    private func roundTrips<T: Codable>(_ value: T) throws {
        let first = try WireCodec.encode(value)
        let decoded = try WireCodec.decode(T.self, from: first)
        #expect(try WireCodec.encode(decoded) == first)
    }

    @Test("send requests (payload and copies) round-trip")
    func sendRequests() async {
        await propertyCheck(input: Self.messageID, Self.text, Self.bytes, zip(Self.uuid, Self.bytes).array(of: 0...3), Gen.bool) {
            id, to, payload, copies, useCopies in
            let request =
                useCopies
                ? SendRequest(
                    messageId: id, to: to, copies: copies.map { WireCopy(deviceId: DeviceID($0.0), payload: $0.1) },
                    frankingCommitment: payload.isEmpty ? nil : payload)
                : SendRequest(messageId: id, to: to, payload: payload)
            try roundTrips(RequestFrame(id: "r", method: .send, body: request))
        }
    }

    @Test("envelopes round-trip")
    func envelopes() async {
        await propertyCheck(input: Gen.int64(), Self.messageID, Self.uuid, Self.text, Self.bytes, Self.bytes) {
            seq, id, account, name, payload, tag in
            let envelope = WireEnvelope(
                seq: seq, messageId: id,
                sender: WireSender(accountId: AccountID(account), username: name, deviceId: DeviceID(account)),
                serverTime: seq, payload: payload, frankingCommitment: tag.isEmpty ? nil : tag, frankingTag: tag)
            try roundTrips(EnvelopeFrame(envelope: envelope))
            try roundTrips(FetchInboxResponse(envelopes: [envelope, envelope]))
        }
    }

    @Test("key bodies round-trip")
    func keys() async {
        await propertyCheck(input: Self.prekey, Self.prekey.array(of: 0...4), Self.deviceList, Self.bytes, Self.uuid, Self.text) {
            signed, oneTime, list, key, device, name in
            try roundTrips(
                PublishKeysRequest(
                    agreementKey: key, agreementSignature: key, signedPrekey: signed, lastResortPrekey: signed,
                    oneTimePrekeys: oneTime, deviceList: list, replaceOneTimePrekeys: oneTime.isEmpty))
            try roundTrips(
                WirePrekeyBundle(
                    deviceId: DeviceID(device), agreementKey: key, agreementSignature: key, signedPrekey: signed,
                    oneTimePrekey: oneTime.first, kemPrekey: signed))
            try roundTrips(FetchKeysRequest(username: name, devices: list.devices.map(\.deviceId)))
            try roundTrips(RevokeDeviceRequest(deviceId: DeviceID(device), deviceList: list))
            try roundTrips(ApproveDeviceRequest(deviceId: DeviceID(device), deviceList: list))
        }
    }

    @Test("account, login and report bodies round-trip")
    func accounts() async {
        await propertyCheck(input: Self.text, Self.bytes, Self.uuid, Gen.int64(), Self.messageID, Gen.bool) {
            name, key, id, time, message, flag in
            try roundTrips(RegisterRequest(username: name, identityKey: key))
            try roundTrips(
                AccountInfo(accountId: AccountID(id), username: name, identityKey: key, createdAt: time, devices: [DeviceID(id)]))
            try roundTrips(ChallengeResponse(challengeId: id, nonce: key, expiresAt: time, origin: flag ? name : nil))
            try roundTrips(
                LoginRequest(
                    challengeId: id, deviceName: name, signature: key, agreementKey: flag ? key : nil,
                    recovery: flag ? IdentityRotation(newIdentityKey: key, oldSignature: key, newSignature: key) : nil))
            try roundTrips(AuthenticateRequest(token: name, after: flag ? time : nil, receive: flag))
            try roundTrips(
                FrankedReportRequest(
                    messageId: message, senderAccountId: AccountID(id), senderDeviceId: DeviceID(id),
                    recipientDeviceId: DeviceID(id), serverTime: time, body: key, frankingKey: key, frankingTag: key))
            try roundTrips(ErrorEnvelope(error: ErrorBody(code: name, message: name, retryAfter: flag ? 3 : nil)))
            try roundTrips(AckFrame(seq: time))
            try roundTrips(FetchInboxRequest(after: time, limit: flag ? 5 : nil))
        }
    }
}
