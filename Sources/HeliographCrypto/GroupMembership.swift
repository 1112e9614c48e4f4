import Crypto
import Foundation
import HeliographCore

// The membership of a private group is a hash chain of changes, each signed with the identity
// key of the member who made it. Every client replays the chain and checks each step against
// the rules (who may add, remove, promote), so a server that stores and relays the chain can
// withhold changes but never add a member, raise an admin, or rewrite history on its own.

/// One step of a private group's membership chain, before it is signed.
public struct MembershipChange: Sendable, Equatable {
    /// What the change does.
    public enum Action: String, Sendable, CaseIterable {
        /// The group is made: `members` are its first members, exactly one of them the owner
        /// (the actor), with the title. Version 1 only.
        case create
        /// `members` join, as plain members (role member, no rights). Needs `invite`.
        case add
        /// `members` (as recorded) are removed. Needs `ban`, and `manageAdmins` for an admin.
        case remove
        /// The actor, listed alone as recorded, leaves. Not the owner.
        case leave
        /// `members` take the listed role (admin or member) and rights. Needs `manageAdmins`.
        case setRole = "set_role"
        /// The owner hands the group to the one listed member (listed as owner) and becomes
        /// an admin with every right.
        case transfer

        /// The byte written for the action in the binary form.
        var code: UInt8 {
            switch self {
            case .create: 1
            case .add: 2
            case .remove: 3
            case .leave: 4
            case .setRole: 5
            case .transfer: 6
            }
        }

        init?(code: UInt8) {
            guard let action = Self.allCases.first(where: { $0.code == code }) else { return nil }
            self = action
        }
    }

    /// A member as a change lists it.
    public struct Member: Sendable, Equatable {
        /// The account.
        public var account: AccountID
        /// The account's 32-byte Ed25519 identity key, vouched for by the actor who added it:
        /// the key every later change by this member must be signed with.
        public var identityKey: Data
        /// Owner, admin or member.
        public var role: ChatRole
        /// The admin rights: every right for the owner, none for a member.
        public var rights: AdminRights

        /// Creates the value; as for ``ChatMember``, the owner gets every right and a member none.
        public init(account: AccountID, identityKey: Data, role: ChatRole, rights: AdminRights = []) {
            self.account = account
            self.identityKey = identityKey
            self.role = role
            self.rights = role == .owner ? .all : (role == .member ? [] : rights)
        }

        /// Whether the member holds every right of `right` (the owner holds all).
        func has(_ right: AdminRights) -> Bool { role == .owner || rights.isSuperset(of: right) }
    }

    /// The group.
    public var chat: ChatID
    /// The position in the chain: 1 for the creation, then one more per change.
    public var version: Int64
    /// SHA-256 of the previous signed change's ``SignedMembershipChange/bytes``; 32 zero bytes
    /// for version 1.
    public var previous: Data
    /// What the change does.
    public var action: Action
    /// The member who makes and signs it.
    public var actor: AccountID
    /// The members the change is about (see ``Action``).
    public var members: [Member]
    /// When it was made, in milliseconds since 1970 (as the actor's clock says).
    public var time: Int64
    /// The group's title: for the creation only.
    public var title: String?

    /// Creates the value.
    public init(
        chat: ChatID, version: Int64, previous: Data, action: Action, actor: AccountID, members: [Member], time: Int64,
        title: String? = nil
    ) {
        self.chat = chat
        self.version = version
        self.previous = previous
        self.action = action
        self.actor = actor
        self.members = members
        self.time = time
        self.title = title
    }

    /// The `previous` of the creation.
    public static let genesisPrevious = Data(repeating: 0, count: 32)
}

/// A membership change with the actor's Ed25519 identity signature.
///
/// Binary form (``bytes``), integers big-endian, deterministic: one change has one encoding.
///
///     format       u8    = 1
///     chat         16 bytes (UUID)
///     version      i64
///     previous     32 bytes
///     action       u8    (create 1, add 2, remove 3, leave 4, setRole 5, transfer 6)
///     actor        16 bytes
///     time         i64
///     title        u8 0 (none) or 1, then u32 length and UTF-8 (at most 1,024 bytes)
///     count        u32   (at most 1,000)
///     members      count × (account 16 bytes, identity key 32 bytes, role u8 (owner 1,
///                  admin 2, member 3), rights u32)
///     signature    64 bytes
///
/// The signature is over the UTF-8 label `heliograph-membership-change-v1` (u32 length first)
/// followed by everything between the format byte and the signature.
public struct SignedMembershipChange: Sendable, Equatable {
    /// The change.
    public var change: MembershipChange
    /// Ed25519 signature by the actor's identity key over ``signedBytes``.
    public var signature: Data

    /// A change as received (check it by applying it to a ``GroupMembershipState``).
    public init(change: MembershipChange, signature: Data) {
        self.change = change
        self.signature = signature
    }

    static let formatVersion: UInt8 = 1
    static let signatureLabel = "heliograph-membership-change-v1"
    /// The longest title encoding accepted (128 scalars of at most 4 bytes, plus room).
    static let maximumTitleBytes = 1_024

    /// Signs `change` with the actor's identity key. Members are put in canonical order (by
    /// account id) first, so one set of members has one signed form.
    public static func sign(_ change: MembershipChange, with identity: IdentityKeyPair) -> SignedMembershipChange {
        var ordered = change
        ordered.members.sort { $0.account.description < $1.account.description }
        var signed = SignedMembershipChange(change: ordered, signature: Data())
        // Ed25519 signing does not fail for a valid key; if it ever did, the empty signature
        // verifies nowhere and the change is refused.
        signed.signature = (try? identity.sign(signed.signedBytes)) ?? Data()
        return signed
    }

    /// The change's fields in order (the part of ``bytes`` between format byte and signature).
    private var body: Data {
        var writer = ByteWriter()
        writer.append(change.chat.rawValue)
        writer.append(change.version)
        writer.appendFixed(change.previous)
        writer.append(change.action.code)
        writer.append(change.actor.rawValue)
        writer.append(change.time)
        if let title = change.title {
            writer.append(UInt8(1))
            writer.appendField(Data(title.utf8))
        } else {
            writer.append(UInt8(0))
        }
        writer.append(UInt32(truncatingIfNeeded: change.members.count))
        for member in change.members {
            writer.append(member.account.rawValue)
            writer.appendFixed(member.identityKey)
            writer.append(Self.roleCode(member.role))
            writer.append(UInt32(truncatingIfNeeded: member.rights.rawValue))
        }
        return writer.bytes
    }

    /// The bytes the actor signs: the domain label, then the change's fields.
    public var signedBytes: Data {
        var writer = ByteWriter(label: Self.signatureLabel)
        writer.appendFixed(body)
        return writer.bytes
    }

    /// The binary form (see the type's documentation).
    public var bytes: Data {
        var writer = ByteWriter()
        writer.append(Self.formatVersion)
        writer.appendFixed(body)
        writer.appendFixed(signature)
        return writer.bytes
    }

    /// SHA-256 of ``bytes``: what the next change names as `previous`.
    public var hash: Data { Data(SHA256.hash(data: bytes)) }

    /// Parses ``bytes``. Anything else — another format version, a truncation, trailing bytes,
    /// an unknown action or role, unknown right bits, a title that is not UTF-8, more than
    /// 1,000 members — is refused with `invalid_membership_change`.
    public init(bytes: Data) throws(HeliographError) {
        do {
            var reader = ByteReader(bytes)
            let format = try reader.readByte()
            guard format == Self.formatVersion else { throw Refusal("unknown format version \(format)") }
            let chat = ChatID(try reader.readUUID())
            let version = Int64(bitPattern: try reader.readUInt64())
            let previous = try reader.readData(32)
            let actionCode = try reader.readByte()
            guard let action = MembershipChange.Action(code: actionCode) else {
                throw Refusal("unknown action \(actionCode)")
            }
            let actor = AccountID(try reader.readUUID())
            let time = Int64(bitPattern: try reader.readUInt64())
            var title: String?
            switch try reader.readByte() {
            case 0: title = nil
            case 1:
                let data = try reader.readField(maximum: Self.maximumTitleBytes)
                guard let text = String(data: data, encoding: .utf8), Data(text.utf8) == data else {
                    throw Refusal("the title is not UTF-8")
                }
                title = text
            case let flag: throw Refusal("unknown title marker \(flag)")
            }
            let count = Int(try reader.readUInt32())
            guard count <= GroupMembershipState.memberLimit else {
                throw Refusal("a change lists at most \(GroupMembershipState.memberLimit) members (got \(count))")
            }
            var members: [MembershipChange.Member] = []
            members.reserveCapacity(count)
            for _ in 0..<count {
                let account = AccountID(try reader.readUUID())
                let key = try reader.readData(32)
                let roleCode = try reader.readByte()
                guard let role = Self.role(code: roleCode) else { throw Refusal("unknown role \(roleCode)") }
                let rawRights = try reader.readUInt32()
                guard AdminRights.all.isSuperset(of: AdminRights(rawValue: Int(rawRights))) else {
                    throw Refusal("unknown admin right bits \(rawRights)")
                }
                var member = MembershipChange.Member(account: account, identityKey: key, role: role)
                // Kept as written (not normalised by role), so the state checks see what was signed.
                member.rights = AdminRights(rawValue: Int(rawRights))
                members.append(member)
            }
            let signature = try reader.readData(64)
            try reader.requireEnd()
            self.init(
                change: MembershipChange(
                    chat: chat, version: version, previous: previous, action: action, actor: actor, members: members,
                    time: time, title: title),
                signature: signature)
        } catch let refusal as Refusal {
            throw HeliographError(.invalidMembershipChange, "the membership change is malformed: \(refusal.reason)")
        } catch let error as SessionError {
            throw HeliographError(.invalidMembershipChange, "the membership change is malformed: \(error.message)")
        } catch {
            throw HeliographError(.invalidMembershipChange, "the membership change is malformed")
        }
    }

    /// Whether `signature` is the signature of `identityKey` (32-byte Ed25519, checked strictly)
    /// over the change. For the server, which knows the actor's account key but does not
    /// replay the chain; clients apply the change to their ``GroupMembershipState``.
    public static func verifySignature(_ signed: SignedMembershipChange, identityKey: Data) -> Bool {
        guard let key = try? IdentityPublicKey(rawBytes: identityKey) else { return false }
        return key.isValidSignature(signed.signature, for: signed.signedBytes)
    }

    private struct Refusal: Error {
        let reason: String
        init(_ reason: String) { self.reason = reason }
    }

    static func roleCode(_ role: ChatRole) -> UInt8 {
        switch role {
        case .owner: 1
        case .admin: 2
        case .member: 3
        }
    }

    static func role(code: UInt8) -> ChatRole? {
        ChatRole.allCases.first { roleCode($0) == code }
    }
}

/// A private group's membership as the replay of its signed chain: pure, so the rules are
/// table-tested without a server, and every client reaches the same state from the same chain.
public struct GroupMembershipState: Sendable, Equatable {
    /// The most members a private group has.
    public static let memberLimit = ChatKind.privateGroup.memberLimit ?? 1_000

    /// The group.
    public private(set) var chat: ChatID
    /// The title set at creation, if the creator put one in the signed change. Heliograph's
    /// clients do not: the server reads the change, and a private group's title travels only
    /// end-to-end encrypted, with the sender keys.
    public private(set) var title: String?
    /// The members by account, with the identity keys their changes must be signed with.
    public private(set) var members: [AccountID: MembershipChange.Member]
    /// The version of the last change applied.
    public private(set) var version: Int64
    /// SHA-256 of the last change applied: the `previous` of the next.
    public private(set) var hash: Data
    /// The version of the latest remove or leave (0 before any): sender keys made at an
    /// earlier version are held by someone who left, so they must be replaced.
    public private(set) var removalVersion: Int64

    /// The owner's account.
    public var owner: AccountID? { members.values.first { $0.role == .owner }?.account }

    private init(chat: ChatID, title: String?, members: [AccountID: MembershipChange.Member], version: Int64, hash: Data) {
        self.chat = chat
        self.title = title
        self.members = members
        self.version = version
        self.hash = hash
        removalVersion = 0
    }

    /// The state after the creation: version 1, `previous` all zeros, no title or one of 1–128
    /// characters, at most ``memberLimit`` members of whom exactly one is the owner — the
    /// actor, whose identity key listed in the change signed it.
    public static func genesis(_ signed: SignedMembershipChange) throws(HeliographError) -> GroupMembershipState {
        let change = signed.change
        try checkShape(signed)
        guard change.action == .create else { throw refusal("the first change of a group must create it, not \(change.action)") }
        guard change.version == 1 else { throw refusal("the creation must be version 1 (got \(change.version))") }
        guard change.previous == MembershipChange.genesisPrevious else {
            throw refusal("the creation must name 32 zero bytes as its previous hash")
        }
        let title = change.title
        let owners = change.members.filter { $0.role == .owner }
        guard owners.count == 1, let owner = owners.first else {
            throw refusal("the creation must list exactly one owner (got \(owners.count))")
        }
        guard owner.account == change.actor else { throw refusal("the creator must be the owner it lists") }
        guard SignedMembershipChange.verifySignature(signed, identityKey: owner.identityKey) else {
            throw refusal("the creation is not signed by the owner's identity key")
        }
        return GroupMembershipState(
            chat: change.chat, title: title,
            members: Dictionary(change.members.map { ($0.account, $0) }, uniquingKeysWith: { first, _ in first }),
            version: 1, hash: signed.hash)
    }

    /// Applies the next change, or throws `invalid_membership_change` saying why and leaves
    /// the state unchanged.
    ///
    /// In order: the change is well formed; same group, version one above, `previous` the hash
    /// of the last change; not a creation; the actor is a member and signed with the identity
    /// key recorded for it; then the action's own rules (see ``MembershipChange/Action``).
    public mutating func apply(_ signed: SignedMembershipChange) throws(HeliographError) {
        let change = signed.change
        try Self.checkShape(signed)
        guard change.chat == chat else { throw Self.refusal("the change is for chat \(change.chat), not \(chat)") }
        guard change.version == version + 1 else {
            throw Self.refusal("the change has version \(change.version); the next is \(version + 1)")
        }
        guard change.previous == hash else {
            throw Self.refusal("the change does not follow version \(version): its previous hash differs")
        }
        guard change.action != .create else { throw Self.refusal("a group is created only once, at version 1") }
        guard let actor = members[change.actor] else {
            throw Self.refusal("account \(change.actor) is not a member of the group")
        }
        guard SignedMembershipChange.verifySignature(signed, identityKey: actor.identityKey) else {
            throw Self.refusal("the change is not signed by the identity key recorded for account \(change.actor)")
        }
        guard !change.members.isEmpty else { throw Self.refusal("a \(change.action) change must list members") }

        var next = members
        switch change.action {
        case .create:
            throw Self.refusal("a group is created only once, at version 1")

        case .add:
            guard actor.has(.invite) else { throw Self.refusal("adding members needs the invite right") }
            for member in change.members {
                guard members[member.account] == nil else {
                    throw Self.refusal("account \(member.account) is already a member")
                }
                guard member.role == .member else {
                    throw Self.refusal("accounts join as members; make them admins with a set_role change")
                }
                next[member.account] = member
            }
            guard next.count <= Self.memberLimit else {
                throw Self.refusal("a private group has at most \(Self.memberLimit) members")
            }

        case .remove:
            guard actor.has(.ban) else { throw Self.refusal("removing members needs the ban right") }
            for member in change.members {
                let recorded = try recordedMember(member)
                guard recorded.role != .owner else { throw Self.refusal("the owner cannot be removed") }
                if recorded.role == .admin { try Self.checkMayManage(recorded, by: actor) }
                next[member.account] = nil
            }

        case .leave:
            guard change.members.count == 1, change.members[0].account == change.actor else {
                throw Self.refusal("a leave lists the leaving actor alone")
            }
            _ = try recordedMember(change.members[0])
            guard actor.role != .owner else {
                throw Self.refusal("the owner cannot leave; transfer the group first")
            }
            next[change.actor] = nil

        case .setRole:
            guard actor.has(.manageAdmins) else { throw Self.refusal("changing roles needs the manage_admins right") }
            for member in change.members {
                let recorded = try recordedMember(member, comparingRole: false)
                guard recorded.role != .owner else { throw Self.refusal("the owner's role changes only by transfer") }
                guard member.role != .owner else { throw Self.refusal("ownership moves only by transfer") }
                if recorded.role == .admin { try Self.checkMayManage(recorded, by: actor) }
                guard actor.role == .owner || actor.rights.isSuperset(of: member.rights) else {
                    throw Self.refusal("an admin cannot grant rights it does not have")
                }
                next[member.account] = member
            }

        case .transfer:
            guard actor.role == .owner else { throw Self.refusal("only the owner can transfer the group") }
            guard change.members.count == 1, let target = change.members.first else {
                throw Self.refusal("a transfer lists the new owner alone")
            }
            guard target.account != change.actor else { throw Self.refusal("the owner already owns the group") }
            _ = try recordedMember(target, comparingRole: false)
            guard target.role == .owner else { throw Self.refusal("a transfer lists the new owner with the owner role") }
            next[target.account] = target
            next[change.actor] = MembershipChange.Member(
                account: actor.account, identityKey: actor.identityKey, role: .admin, rights: .all)
        }

        members = next
        version = change.version
        hash = signed.hash
        if change.action == .remove || change.action == .leave { removalVersion = change.version }
    }

    /// The member as recorded, when `listed` names a member with the same identity key (and,
    /// unless `comparingRole` is false, the same role and rights).
    private func recordedMember(
        _ listed: MembershipChange.Member, comparingRole: Bool = true
    ) throws(HeliographError) -> MembershipChange.Member {
        guard let recorded = members[listed.account] else {
            throw Self.refusal("account \(listed.account) is not a member of the group")
        }
        guard recorded.identityKey == listed.identityKey else {
            throw Self.refusal("the change lists account \(listed.account) with another identity key than recorded")
        }
        if comparingRole, recorded != listed {
            throw Self.refusal("the change lists account \(listed.account) with another role or rights than recorded")
        }
        return recorded
    }

    /// An admin is changed or removed only with `manageAdmins`, and by an admin only when it
    /// holds every right of the target: otherwise a lesser admin could depose a greater one.
    private static func checkMayManage(
        _ target: MembershipChange.Member, by actor: MembershipChange.Member
    ) throws(HeliographError) {
        guard actor.has(.manageAdmins) else { throw refusal("changing or removing an admin needs the manage_admins right") }
        guard actor.role == .owner || actor.rights.isSuperset(of: target.rights) else {
            throw refusal("an admin cannot change or remove an admin with rights it does not have")
        }
    }

    /// Rules every change obeys whatever the state: a canonical encoding (so the signed bytes
    /// are the only form of the change), members sorted by account and each once, strict
    /// identity keys, rights matching roles, a title only on the creation and of 1–128
    /// characters, at most ``memberLimit`` members.
    private static func checkShape(_ signed: SignedMembershipChange) throws(HeliographError) {
        let change = signed.change
        guard change.previous.count == 32 else { throw refusal("the previous hash must be 32 bytes") }
        guard signed.signature.count == 64 else { throw refusal("the signature must be 64 bytes") }
        guard change.members.count <= memberLimit else {
            throw refusal("a change lists at most \(memberLimit) members")
        }
        let ids = change.members.map(\.account.description)
        guard ids == ids.sorted(), Set(ids).count == ids.count else {
            throw refusal("the members of a change must be sorted by account, each once")
        }
        for member in change.members {
            do {
                _ = try IdentityPublicKey(rawBytes: member.identityKey)
            } catch {
                throw refusal("account \(member.account): \(error.message)")
            }
            guard AdminRights.all.isSuperset(of: member.rights) else {
                throw refusal("account \(member.account) has unknown admin rights")
            }
            switch member.role {
            case .owner where member.rights != .all: throw refusal("the owner holds every right")
            case .member where !member.rights.isEmpty: throw refusal("a plain member holds no admin rights")
            default: break
            }
        }
        if let title = change.title {
            guard change.action == .create else { throw refusal("only the creation carries a title") }
            let length = title.unicodeScalars.count
            guard length >= 1, length <= Chat.maximumTitleLength,
                !title.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
            else {
                throw refusal("the title must be 1 to \(Chat.maximumTitleLength) characters, not blank")
            }
        }
        // The change must be exactly what its bytes say; otherwise two clients could read one
        // signature as two different changes.
        guard let decoded = try? SignedMembershipChange(bytes: signed.bytes), decoded == signed else {
            throw refusal("the change has no canonical binary form")
        }
    }

    private static func refusal(_ reason: String) -> HeliographError {
        HeliographError(.invalidMembershipChange, reason)
    }
}
