import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import HeliographServer
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite("Key validation and login binding on the server")
struct KeyValidationTests {
    /// Every encoding of a small-order point, and every encoding with y ≥ p.
    static let refusedIdentityKeys: [Data] = {
        let p = [UInt8](Data(hex: "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"))
        var keys = Array(Ed25519Point.smallOrderEncodings)
        for k in 0...18 {
            var y = p
            y[0] += UInt8(k)
            keys.append(Data(y))
            y[31] |= 0x80
            keys.append(Data(y))
        }
        return keys
    }()

    @Test("register with a small-order or non-canonical identity key answers 400 invalid_key")
    func registerRefusesWeakKeys() async throws {
        try await TestServer.run { server in
            #expect(Self.refusedIdentityKeys.count >= 14 + 38 - 4)
            for (index, key) in Self.refusedIdentityKeys.enumerated() {
                let response = try await server.http(
                    .post, "/v1/accounts",
                    json: #"{"username":"weak_\#(index)","identityKey":"\#(key.base64EncodedString())"}"#)
                #expect(response.status == .badRequest, "key \(key.base64EncodedString())")
                #expect(response.errorCode == "invalid_key", "key \(key.base64EncodedString())")
            }
            // The fixed-signature key over the socket too, and the name stays free for a real key.
            let socket = try await server.connect()
            let neutral = Data([1] + [UInt8](repeating: 0, count: 31))
            await #expect(throws: HeliographError(.invalidKey, "")) {
                _ = try await socket.request(
                    .register, RegisterRequest(username: "weak_0", identityKey: neutral), as: AccountInfo.self)
            }
            let created = try await server.http(
                .post, "/v1/accounts",
                json: #"{"username":"weak_0","identityKey":"\#(IdentityKeyPair().publicKey.rawBytes.base64EncodedString())"}"#)
            #expect(created.status == .created)
        }
    }

    @Test("publishKeys refuses small-order X25519 keys, however well signed, with invalid_key")
    func publishRefusesSmallOrderKeys() async throws {
        try await TestServer.run { server in
            let alice = try await server.register("alice")
            let profile = alice.profile
            let identity = try IdentityKeyPair(privateKeyBytes: profile.identityPrivateKey)
            let (account, device) = (profile.accountID, profile.deviceID)
            func wire(_ kind: PrekeyKind, _ id: UInt32, _ key: Data) throws -> WirePrekey {
                let signed = try SignedPrekey.sign(
                    kind: kind, id: id, publicKey: key, account: account, device: device, with: identity)
                return WirePrekey(kind: Int(kind.rawValue), id: id, publicKey: key, signature: signed.signature)
            }
            // The agreement key the device committed to when it logged in.
            let good = try AgreementKeyPair(privateKeyBytes: try alice.keyStore.read().agreementKey).publicKeyBytes
            let lastResort = try wire(.lastResortKEMPrekey, 9, try KEMKeyPair().publicKeyBytes)
            let zero = Data(count: 32)
            let orderEight = Data(hex: "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880")
            for bad in [zero, orderEight] {
                let agreement = try DeviceAgreementKey.sign(publicKey: bad, account: account, device: device, with: identity)
                let goodAgreement = try DeviceAgreementKey.sign(publicKey: good, account: account, device: device, with: identity)
                let requests = [
                    PublishKeysRequest(
                        agreementKey: bad, agreementSignature: agreement.signature,
                        signedPrekey: try wire(.signedPrekey, 1, good),
                        lastResortPrekey: lastResort),
                    PublishKeysRequest(
                        agreementKey: good, agreementSignature: goodAgreement.signature,
                        signedPrekey: try wire(.signedPrekey, 1, bad), lastResortPrekey: lastResort),
                    PublishKeysRequest(
                        agreementKey: good, agreementSignature: goodAgreement.signature,
                        signedPrekey: try wire(.signedPrekey, 1, good), lastResortPrekey: lastResort,
                        oneTimePrekeys: [try wire(.oneTimePrekey, 2, bad)]),
                ]
                for request in requests {
                    await #expect(throws: HeliographError(.invalidKey, "")) {
                        _ = try await alice.call(.publishKeys, request, as: KeyStatus.self)
                    }
                }
            }
            // The same upload with real keys goes through.
            let before = try await alice.call(.keyStatus, EmptyBody(), as: KeyStatus.self)
            let goodAgreement = try DeviceAgreementKey.sign(publicKey: good, account: account, device: device, with: identity)
            let status = try await alice.call(
                .publishKeys,
                PublishKeysRequest(
                    agreementKey: good, agreementSignature: goodAgreement.signature,
                    signedPrekey: try wire(.signedPrekey, 1, AgreementKeyPair().publicKeyBytes), lastResortPrekey: lastResort,
                    oneTimePrekeys: [try wire(.oneTimePrekey, 99_999, AgreementKeyPair().publicKeyBytes)]),
                as: KeyStatus.self)
            #expect(status.published)
            #expect(status.oneTimePrekeys == before.oneTimePrekeys + 1)
        }
    }

    @Test("a login proof for another origin or another account is refused")
    func loginProofBinding() async throws {
        try await TestServer.run { server in
            let identity = IdentityKeyPair()
            let socket = try await server.connect()
            // Accounts that all hold the same identity key: a proof for one must not open another.
            // Each successful login below is an account's first device, active at once.
            var accounts: [String: AccountID] = [:]
            for name in ["carol", "dave_d", "erin_e", "fred_f", "gina_g", "hank_h"] {
                accounts[name] = try await socket.request(
                    .register, RegisterRequest(username: name, identityKey: identity.publicKey.rawBytes), as: AccountInfo.self
                ).accountId
            }
            let origin = try ServerOrigin(url: server.url)
            let port = server.url.port!

            func attempt(
                _ username: String, signingFor account: AccountID?, origin: ServerOrigin, name: String = "x"
            )
                async throws -> LoginResponse
            {
                let challenge = try await socket.request(
                    .challenge, ChallengeRequest(username: username), as: ChallengeResponse.self)
                // The server says which origin it signs for: the one it listens on.
                #expect(challenge.origin == "http://127.0.0.1:\(port)")
                let signature = try identity.signLogin(
                    nonce: challenge.nonce, challengeID: challenge.challengeId, account: account ?? accounts[username]!,
                    origin: origin, deviceName: name)
                return try await socket.request(
                    .login, LoginRequest(challengeId: challenge.challengeId, deviceName: name, signature: signature),
                    as: LoginResponse.self)
            }
            await #expect(throws: HeliographError(.badSignature, "")) {
                _ = try await attempt("carol", signingFor: accounts["dave_d"], origin: origin)
            }
            for other in ["https://127.0.0.1:\(port)", "http://127.0.0.1:\(port + 1)", "http://evil.example"] {
                await #expect(throws: HeliographError(.badSignature, "")) {
                    _ = try await attempt("carol", signingFor: nil, origin: try ServerOrigin(parsing: other))
                }
            }
            // The genuine proof works, under each loopback name of this server, and ws:// is the
            // same origin as http://.
            for (username, host) in [("carol", "localhost"), ("dave_d", "127.0.0.1"), ("erin_e", "[::1]")] {
                let session = try await attempt(
                    username, signingFor: nil, origin: try ServerOrigin(parsing: "ws://\(host):\(port)/v1/socket"))
                #expect(session.accountId == accounts[username])
            }
            // The name is stored trimmed and the signature covers the stored form.
            let session = try await attempt("fred_f", signingFor: nil, origin: origin, name: "  phone \n")
            let phone = try await server.connect()
            _ = try await phone.request(
                .authenticate, AuthenticateRequest(token: session.token, after: nil), as: SessionInfo.self)
            let devices = try await phone.request(.listDevices, EmptyBody(), as: DeviceListResponse.self).devices
            #expect(devices.map(\.name) == ["phone"])
        }
    }

    @Test("a server with another public origin refuses the SDK's login and says which origin it expects")
    func publicOriginMismatch() async throws {
        try await TestServer.run(configure: { $0.publicOrigin = try? ServerOrigin(parsing: "https://chat.example.org") }) {
            server in
            do {
                _ = try await server.register("erin_e", encryption: false)
                Issue.record("logged in through an origin the server does not sign for")
            } catch let error as HeliographError {
                #expect(error.code == .badSignature)
                #expect(error.message.contains("https://chat.example.org:443"))
                #expect(error.message.contains("http://localhost:\(server.url.port!)"))
            }
        }
    }
}

extension Data {
    /// Bytes from hexadecimal text (test vectors).
    fileprivate init(hex: String) {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        self.init(bytes)
    }
}
