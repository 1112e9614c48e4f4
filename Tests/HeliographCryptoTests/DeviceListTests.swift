import Foundation
import HeliographCore
import HeliographCrypto
import Testing

/// The rules a client applies to signed device lists, table-tested without a server.
@Suite("Signed device lists, link codes and identity rotation")
struct DeviceListTests {
    let identity = IdentityKeyPair()
    let account = AccountID.random()
    let devices = (0..<4).map { _ in DeviceID.random() }
    let keys = (0..<4).map { _ in AgreementKeyPair().publicKeyBytes }

    func list(
        _ version: UInt64, _ active: [Int], revoked: [Int] = [], by signer: IdentityKeyPair? = nil
    ) throws
        -> SignedDeviceList
    {
        try SignedDeviceList.sign(
            account: account, version: version, devices: active.map { .init(device: devices[$0], agreementKey: keys[$0]) },
            revoked: revoked.map { devices[$0] }, with: signer ?? identity)
    }

    @Test("a signed list verifies; any change to devices, revocations or version breaks the signature")
    func signature() throws {
        let signed = try list(3, [0, 1], revoked: [2])
        try signed.verify(identity: identity.publicKey)
        var tampered = signed
        tampered.revoked = []
        #expect(throws: SessionError.self) { try tampered.verify(identity: identity.publicKey) }
        tampered = signed
        tampered.version = 4
        #expect(throws: SessionError.self) { try tampered.verify(identity: identity.publicKey) }
        #expect(throws: SessionError.self) { try signed.verify(identity: IdentityKeyPair().publicKey) }
    }

    @Test("lists that are not canonical are refused before the signature is checked")
    func shape() throws {
        // Version 0, a device both active and revoked, unsorted entries, a short key.
        #expect(throws: SessionError.self) { try list(0, [0]).verify(identity: identity.publicKey) }
        #expect(throws: SessionError.self) { try list(1, [0], revoked: [0]).verify(identity: identity.publicKey) }
        var unsorted = try list(1, [0, 1])
        unsorted.devices.reverse()
        unsorted.signature = try identity.sign(unsorted.signedBytes)
        #expect(throws: SessionError.self) { try unsorted.verify(identity: identity.publicKey) }
        var short = try list(1, [0])
        short.devices[0].agreementKey = Data([1, 2, 3])
        short.signature = try identity.sign(short.signedBytes)
        #expect(throws: SessionError.self) { try short.verify(identity: identity.publicKey) }
    }

    @Test(
        "the acceptance policy: first meeting, unchanged, newer, rollback, equivocation, omission, forgotten or undone revocation",
        arguments: [
            // (known, received, expected verdict kind)
            (nil, 1, "newer"),
            (1, 1, "unchanged"),
            (1, 2, "newer"),
            (2, 1, "refused"),
            (1, nil, "refused"),
        ] as [(Int?, Int?, String)])
    func policy(known: Int?, received: Int?, expected: String) throws {
        let lists = [nil, try list(1, [0, 1]), try list(2, [0, 1, 2])]
        let verdict = DeviceListPolicy.judge(received.map { lists[$0]! }, known: known.map { lists[$0]! })
        switch verdict {
        case .unchanged: #expect(expected == "unchanged")
        case .newer: #expect(expected == "newer")
        case .refused: #expect(expected == "refused")
        }
    }

    @Test("a newer list reports what changed, and may neither forget a revocation nor bring a revoked device back")
    func changesAndRevocations() throws {
        let first = try list(1, [0, 1])
        let second = try list(2, [0, 2], revoked: [1])
        guard case .newer(let change) = DeviceListPolicy.judge(second, known: first) else {
            Issue.record("a newer list was not accepted")
            return
        }
        #expect(change.added == [devices[2]])
        #expect(change.removed == [devices[1]])
        // Forgets that device 1 was revoked.
        guard case .refused = DeviceListPolicy.judge(try list(3, [0, 2]), known: second) else {
            Issue.record("a list forgetting a revocation was accepted")
            return
        }
        // Keeps the revocation list but lists device 1 again: not canonical, and refused as such.
        #expect(throws: SessionError.self) { try list(3, [0, 1], revoked: [1]).verify(identity: identity.publicKey) }
        // Same version, other contents: the server shows two different lists.
        guard case .refused = DeviceListPolicy.judge(try list(2, [0]), known: second) else {
            Issue.record("two lists with one version were accepted")
            return
        }
    }

    @Test("link codes: twelve characters, stable, and different for another key or device; scannable form matches")
    func linkCodes() {
        let code = LinkCode.code(account: account, device: devices[0], agreementKey: keys[0])
        #expect(code.count == 14 && code.split(separator: "-").count == 3)
        #expect(code == LinkCode.code(account: account, device: devices[0], agreementKey: keys[0]))
        #expect(code != LinkCode.code(account: account, device: devices[0], agreementKey: keys[1]))
        #expect(code != LinkCode.code(account: account, device: devices[1], agreementKey: keys[0]))
        #expect(LinkCode.matches(code.lowercased(), account: account, device: devices[0], agreementKey: keys[0]))
        #expect(
            LinkCode.matches(
                code.replacingOccurrences(of: "-", with: ""), account: account, device: devices[0], agreementKey: keys[0]))
        #expect(!LinkCode.matches(code, account: account, device: devices[0], agreementKey: keys[1]))
        let scannable = LinkCode.scannable(account: account, device: devices[0], agreementKey: keys[0])
        #expect(LinkCode.matches(scannable, account: account, device: devices[0], agreementKey: keys[0]))
        #expect(!LinkCode.matches(scannable, account: account, device: devices[1], agreementKey: keys[0]))
    }

    @Test("an identity rotation needs both signatures over the same purpose and context")
    func rotation() throws {
        let new = IdentityKeyPair()
        let context = Data("device".utf8)
        let (old, fresh) = try IdentityRotationProof.sign(
            account: account, old: identity, new: new, purpose: "revocation", context: context)
        try IdentityRotationProof.verify(
            account: account, oldKey: identity.publicKey, newKey: new.publicKey, purpose: "revocation", context: context,
            oldSignature: old, newSignature: fresh)
        // Replayed for another purpose, context or account, or with one signature missing.
        #expect(throws: SessionError.self) {
            try IdentityRotationProof.verify(
                account: account, oldKey: identity.publicKey, newKey: new.publicKey, purpose: "recovery", context: context,
                oldSignature: old, newSignature: fresh)
        }
        #expect(throws: SessionError.self) {
            try IdentityRotationProof.verify(
                account: account, oldKey: identity.publicKey, newKey: new.publicKey, purpose: "revocation",
                context: Data("other".utf8), oldSignature: old, newSignature: fresh)
        }
        #expect(throws: SessionError.self) {
            try IdentityRotationProof.verify(
                account: .random(), oldKey: identity.publicKey, newKey: new.publicKey, purpose: "revocation",
                context: context, oldSignature: old, newSignature: fresh)
        }
        #expect(throws: SessionError.self) {
            try IdentityRotationProof.verify(
                account: account, oldKey: identity.publicKey, newKey: new.publicKey, purpose: "revocation", context: context,
                oldSignature: old, newSignature: old)
        }
    }
}
