import Crypto
import Foundation
import HeliographCore
import HeliographProtocol

extension SendRequest {
    /// SHA-256 over what this request asks to deliver, kept with the message id so that a repeat
    /// with other content is refused (`idempotency_conflict`) instead of answered as a retry.
    ///
    /// The digest covers exactly what the sender chose, in a fixed binary form that no JSON
    /// encoding choice can change:
    ///
    /// 1. the label `heliograph-send-content-v1` and the recipient account id (16 bytes), so one
    ///    id reused for another recipient is a different message;
    /// 2. for `payload`: the byte 1 and the payload; for `copies`: the byte 2, the number of
    ///    copies, then each copy's device id and payload in device id order (the order the copies
    ///    were listed in does not matter);
    /// 3. the franking commitment, or a marker that there is none;
    /// 4. when the message names attachments: the byte 3, their number and their hashes in order.
    ///
    /// Variable-length parts are preceded by their length (big-endian u32). For `payload` sends
    /// the server chooses the devices, so they are left out: a retry after the recipient added
    /// a device is still the same message. Franking tags are left out too: the server computes
    /// them, from the acceptance time, which differs between attempts.
    func contentHash(recipient: AccountID) -> Data {
        var bytes = Data()
        func field(_ data: Data) {
            withUnsafeBytes(of: UInt32(data.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes.append(data)
        }
        func identifier(_ uuid: UUID) {
            withUnsafeBytes(of: uuid.uuid) { bytes.append(contentsOf: $0) }
        }
        field(Data("heliograph-send-content-v1".utf8))
        identifier(recipient.rawValue)
        if let payload {
            bytes.append(1)
            field(payload)
        }
        if let copies {
            bytes.append(2)
            withUnsafeBytes(of: UInt32(copies.count).bigEndian) { bytes.append(contentsOf: $0) }
            let ordered = copies.sorted { Self.rawBytes($0.deviceId).lexicographicallyPrecedes(Self.rawBytes($1.deviceId)) }
            for copy in ordered {
                identifier(copy.deviceId.rawValue)
                field(copy.payload)
            }
        }
        if let frankingCommitment {
            bytes.append(1)
            field(frankingCommitment)
        } else {
            bytes.append(0)
        }
        // Attachments are appended only when present, so the digest of a message without any is
        // the one computed before attachments existed.
        if let attachments, !attachments.isEmpty {
            bytes.append(3)
            withUnsafeBytes(of: UInt32(attachments.count).bigEndian) { bytes.append(contentsOf: $0) }
            for blob in attachments { bytes.append(blob.bytes) }
        }
        return Data(SHA256.hash(data: bytes))
    }

    private static func rawBytes(_ device: DeviceID) -> [UInt8] {
        withUnsafeBytes(of: device.rawValue.uuid) { Array($0) }
    }
}
