import Foundation
import HeliographCore

/// One device's published keys as the server handed them out: nothing in it is trusted yet.
///
/// The only way to a ``VerifiedPrekeyBundle`` is ``PrekeyBundleVerifier/verify(_:identity:)``,
/// so code that sets up a session cannot forget the signature checks.
public struct UnverifiedPrekeyBundle: Sendable, Equatable {
    /// The account the bundle claims to belong to.
    public var account: AccountID
    /// The device.
    public var device: DeviceID
    /// The device's long-term agreement key.
    public var agreementKey: DeviceAgreementKey
    /// The current signed X25519 prekey.
    public var signedPrekey: SignedPrekey
    /// A one-time X25519 prekey, when the device still had one.
    public var oneTimePrekey: SignedPrekey?
    /// A one-time ML-KEM prekey, or the last-resort one when the one-time ones ran out.
    public var kemPrekey: SignedPrekey

    /// Creates the value.
    public init(
        account: AccountID, device: DeviceID, agreementKey: DeviceAgreementKey, signedPrekey: SignedPrekey,
        oneTimePrekey: SignedPrekey?, kemPrekey: SignedPrekey
    ) {
        self.account = account
        self.device = device
        self.agreementKey = agreementKey
        self.signedPrekey = signedPrekey
        self.oneTimePrekey = oneTimePrekey
        self.kemPrekey = kemPrekey
    }
}

/// A bundle whose every key is signed by the identity key the caller trusts for the account.
public struct VerifiedPrekeyBundle: Sendable {
    /// The bundle's content.
    public let bundle: UnverifiedPrekeyBundle
    /// The identity key the signatures were checked against.
    public let identity: IdentityPublicKey

    fileprivate init(bundle: UnverifiedPrekeyBundle, identity: IdentityPublicKey) {
        self.bundle = bundle
        self.identity = identity
    }
}

/// The outcome of checking a bundle: a result to switch over, never a Bool to ignore.
public enum PrekeyBundleVerification: Sendable {
    /// Every signature verifies and every key has the right kind and size.
    case verified(VerifiedPrekeyBundle)
    /// Something does not verify; the reason names it.
    case rejected(SessionError)
}

/// Checks bundles against an account's identity key.
public enum PrekeyBundleVerifier {
    /// Verifies the agreement key and each prekey: signature, kind and size, and that no X25519
    /// key is a point of small order (see ``X25519Point``).
    public static func verify(_ bundle: UnverifiedPrekeyBundle, identity: IdentityPublicKey) -> PrekeyBundleVerification {
        do {
            try bundle.agreementKey.verify(account: bundle.account, device: bundle.device, identity: identity)
            try check(bundle.signedPrekey, is: [.signedPrekey], in: bundle, identity: identity)
            if let oneTime = bundle.oneTimePrekey {
                try check(oneTime, is: [.oneTimePrekey], in: bundle, identity: identity)
            }
            try check(bundle.kemPrekey, is: [.kemPrekey, .lastResortKEMPrekey], in: bundle, identity: identity)
            return .verified(VerifiedPrekeyBundle(bundle: bundle, identity: identity))
        } catch {
            return .rejected(error)
        }
    }

    private static func check(
        _ prekey: SignedPrekey, is kinds: Set<PrekeyKind>, in bundle: UnverifiedPrekeyBundle, identity: IdentityPublicKey
    ) throws(SessionError) {
        guard kinds.contains(prekey.kind) else {
            throw SessionError(.invalidKey, "a \(prekey.kind) was offered where a \(kinds.map(\.description)) belongs")
        }
        try prekey.verify(account: bundle.account, device: bundle.device, identity: identity)
    }
}

extension PrekeyKind: CustomStringConvertible {
    public var description: String {
        switch self {
        case .signedPrekey: "signed prekey"
        case .oneTimePrekey: "one-time prekey"
        case .kemPrekey: "one-time ML-KEM prekey"
        case .lastResortKEMPrekey: "last-resort ML-KEM prekey"
        }
    }
}
