import Crypto
import Foundation
import HeliographCore
import HeliographCrypto
import Testing

/// The admin-signed membership chain of a private group, replayed by every client.
@Suite("Group membership chain")
struct GroupMembershipTests {
    /// An account with its identity key.
    struct Person {
        let identity = IdentityKeyPair()
        let account = AccountID.random()

        func member(_ role: ChatRole = .member, _ rights: AdminRights = []) -> MembershipChange.Member {
            MembershipChange.Member(account: account, identityKey: identity.publicKey.rawBytes, role: role, rights: rights)
        }
    }

    let chat = ChatID.random()
    let owner = Person()
    let alice = Person()
    let bob = Person()
    let carol = Person()
    let dave = Person()
    /// The server's own signing key: it signs nothing a client accepts.
    let server = IdentityKeyPair()

    func creation(title: String = "Lighthouse keepers", members extra: [MembershipChange.Member] = []) -> SignedMembershipChange {
        SignedMembershipChange.sign(
            MembershipChange(
                chat: chat, version: 1, previous: MembershipChange.genesisPrevious, action: .create, actor: owner.account,
                members: [owner.member(.owner)] + extra, time: 1_700_000_000_000, title: title),
            with: owner.identity)
    }

    /// The next change after `state`, signed by `signer` (the actor by default).
    func change(
        _ state: GroupMembershipState, _ action: MembershipChange.Action, by actor: Person,
        _ members: [MembershipChange.Member], signer: IdentityKeyPair? = nil, version: Int64? = nil, previous: Data? = nil
    ) -> SignedMembershipChange {
        SignedMembershipChange.sign(
            MembershipChange(
                chat: state.chat, version: version ?? state.version + 1, previous: previous ?? state.hash, action: action,
                actor: actor.account, members: members, time: 1_700_000_000_000 + state.version),
            with: signer ?? actor.identity)
    }

    /// A group with: owner; alice admin [invite, ban]; bob admin [invite, ban, manageAdmins, pin];
    /// carol member.
    func group() throws -> GroupMembershipState {
        var state = try GroupMembershipState.genesis(creation(members: [carol.member()]))
        try state.apply(change(state, .add, by: owner, [alice.member(), bob.member()]))
        try state.apply(change(state, .setRole, by: owner, [alice.member(.admin, [.invite, .ban])]))
        try state.apply(change(state, .setRole, by: owner, [bob.member(.admin, [.invite, .ban, .manageAdmins, .pin])]))
        return state
    }

    /// Applies `signed` to a copy and expects a refusal naming `reason`, with the state unchanged.
    func expectRefused(
        _ state: GroupMembershipState, _ signed: SignedMembershipChange, because reason: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        var copy = state
        do {
            try copy.apply(signed)
            Issue.record("the change was accepted; expected a refusal because \(reason)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == .invalidMembershipChange, sourceLocation: sourceLocation)
            #expect(error.message.contains(reason), "got: \(error.message)", sourceLocation: sourceLocation)
        }
        #expect(copy == state, sourceLocation: sourceLocation)
    }

    func expectGenesisRefused(
        _ signed: SignedMembershipChange, because reason: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            _ = try GroupMembershipState.genesis(signed)
            Issue.record("the creation was accepted; expected a refusal because \(reason)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == .invalidMembershipChange, sourceLocation: sourceLocation)
            #expect(error.message.contains(reason), "got: \(error.message)", sourceLocation: sourceLocation)
        }
    }

    /// Re-signs an edited creation with `signer`.
    func creation(editing edit: (inout MembershipChange) -> Void, signer: IdentityKeyPair? = nil) -> SignedMembershipChange {
        var change = creation(members: [alice.member()]).change
        edit(&change)
        return SignedMembershipChange.sign(change, with: signer ?? owner.identity)
    }

    @Test("creation: the state holds the listed members, version 1, the change's hash and the title")
    func genesis() throws {
        let signed = creation(members: [alice.member(.admin, [.pin]), bob.member()])
        let state = try GroupMembershipState.genesis(signed)
        #expect(state.chat == chat)
        #expect(state.version == 1)
        #expect(state.hash == signed.hash)
        #expect(state.removalVersion == 0)
        #expect(state.title == "Lighthouse keepers")
        #expect(state.owner == owner.account)
        #expect(state.members.count == 3)
        #expect(state.members[owner.account]?.rights == .all)
        #expect(state.members[alice.account] == alice.member(.admin, [.pin]))
        #expect(state.members[bob.account]?.role == .member)
    }

    @Test(
        "creation refused: not signed by the owner, by the server, no or two owners, creator not the owner, wrong version, previous, action or a blank title"
    )
    func genesisRefusals() throws {
        expectGenesisRefused(creation(editing: { _ in }, signer: alice.identity), because: "not signed by the owner")
        expectGenesisRefused(creation(editing: { _ in }, signer: server), because: "not signed by the owner")
        expectGenesisRefused(
            creation(editing: { $0.members = [owner.member(), alice.member()] }), because: "exactly one owner (got 0)")
        expectGenesisRefused(
            creation(editing: { $0.members = [owner.member(.owner), alice.member(.owner)] }),
            because: "exactly one owner (got 2)")
        // Alice lists herself as owner and signs: she is not the actor.
        expectGenesisRefused(
            creation(editing: { $0.members = [alice.member(.owner)] }, signer: alice.identity),
            because: "the creator must be the owner")
        expectGenesisRefused(creation(editing: { $0.version = 2 }), because: "must be version 1")
        expectGenesisRefused(
            creation(editing: { $0.previous = Data(repeating: 1, count: 32) }), because: "32 zero bytes")
        expectGenesisRefused(
            creation(editing: {
                $0.action = .add
                $0.title = nil
            }), because: "must create it")
        // No title is fine (clients keep it out of what the server reads); a blank one is not.
        #expect(try GroupMembershipState.genesis(creation(editing: { $0.title = nil })).title == nil)
        expectGenesisRefused(creation(editing: { $0.title = "   " }), because: "title must be 1 to 128")
        expectGenesisRefused(
            creation(editing: { $0.title = String(repeating: "é", count: 129) }), because: "title must be 1 to 128")
        // A member's key that is a point of small order (signatures under it are forgeable).
        var weak = alice.member()
        weak.identityKey = Data([1] + [UInt8](repeating: 0, count: 31))
        expectGenesisRefused(creation(editing: { $0.members = [owner.member(.owner), weak] }), because: "small order")
        // An owner listed without every right, or a member with rights.
        var partialOwner = owner.member(.owner)
        partialOwner.rights = [.ban]
        expectGenesisRefused(creation(editing: { $0.members = [partialOwner] }), because: "owner holds every right")
        var richMember = alice.member()
        richMember.rights = [.ban]
        expectGenesisRefused(
            creation(editing: { $0.members = [owner.member(.owner), richMember] }), because: "holds no admin rights")
    }

    @Test("add: owner and admins with invite add non-members as plain members")
    func add() throws {
        var state = try group()
        try state.apply(change(state, .add, by: alice, [dave.member()]))
        #expect(state.members[dave.account] == dave.member())
        #expect(state.version == 5)
        let extra = Person()
        try state.apply(change(state, .add, by: owner, [extra.member()]))
        #expect(state.members.count == 6)
        #expect(state.removalVersion == 0)
    }

    @Test("add refused: no invite right, plain member, non-member actor, existing member, as admin")
    func addRefusals() throws {
        var state = try group()
        try state.apply(change(state, .setRole, by: bob, [alice.member(.admin, [.ban])]))
        expectRefused(state, change(state, .add, by: alice, [dave.member()]), because: "needs the invite right")
        expectRefused(state, change(state, .add, by: carol, [dave.member()]), because: "needs the invite right")
        expectRefused(state, change(state, .add, by: dave, [dave.member()]), because: "is not a member")
        expectRefused(state, change(state, .add, by: owner, [carol.member()]), because: "already a member")
        expectRefused(state, change(state, .add, by: owner, [dave.member(.admin, [.pin])]), because: "join as members")
        expectRefused(state, change(state, .add, by: owner, []), because: "must list members")
    }

    @Test("forgery: a change in an admin's name signed by a member, by the server, or with a broken signature is refused")
    func forgery() throws {
        let state = try group()
        // Carol (a plain member) writes a change with the owner as actor and signs it herself.
        expectRefused(
            state, change(state, .add, by: owner, [dave.member()], signer: carol.identity),
            because: "not signed by the identity key")
        // The server signs with its own key.
        expectRefused(
            state, change(state, .add, by: owner, [dave.member()], signer: server), because: "not signed by the identity key")
        var broken = change(state, .add, by: owner, [dave.member()])
        broken.signature[broken.signature.startIndex + 3] ^= 0x01
        expectRefused(state, broken, because: "not signed by the identity key")
        // An edited change under the owner's genuine signature of another.
        var edited = change(state, .add, by: owner, [dave.member()])
        edited.change.time += 1
        expectRefused(state, edited, because: "not signed by the identity key")
        // A member added with one key cannot later sign with another (the key the adder vouched for holds).
        let impostor = IdentityKeyPair()
        expectRefused(
            state, change(state, .add, by: bob, [dave.member()], signer: impostor), because: "not signed by the identity key")
    }

    @Test("chain: a skipped version, a wrong previous hash, another chat, a replay and a second creation are refused")
    func chaining() throws {
        var state = try group()
        expectRefused(
            state, change(state, .add, by: owner, [dave.member()], version: state.version + 2), because: "the next is")
        expectRefused(
            state, change(state, .add, by: owner, [dave.member()], version: state.version), because: "the next is")
        expectRefused(
            state, change(state, .add, by: owner, [dave.member()], previous: Data(repeating: 7, count: 32)),
            because: "previous hash differs")
        var otherChat = change(state, .add, by: owner, [dave.member()]).change
        otherChat.chat = .random()
        expectRefused(state, SignedMembershipChange.sign(otherChat, with: owner.identity), because: "is for chat")
        let applied = change(state, .add, by: owner, [dave.member()])
        try state.apply(applied)
        expectRefused(state, applied, because: "the next is")
        var recreate = creation().change
        recreate.version = state.version + 1
        recreate.previous = state.hash
        recreate.title = nil
        expectRefused(state, SignedMembershipChange.sign(recreate, with: owner.identity), because: "created only once")
        recreate.action = .add
        recreate.members = [Person().member()]
        recreate.title = "Renamed"
        expectRefused(
            state, SignedMembershipChange.sign(recreate, with: owner.identity), because: "only the creation carries a title")
    }

    @Test("remove: needs ban, never the owner, an admin only with manage_admins and no fewer rights; sets the removal version")
    func remove() throws {
        var state = try group()
        let before = state
        // Alice (invite, ban) may remove carol, not bob (an admin), never the owner.
        expectRefused(
            state, change(state, .remove, by: alice, [bob.member(.admin, [.invite, .ban, .manageAdmins, .pin])]),
            because: "needs the manage_admins right")
        expectRefused(state, change(state, .remove, by: alice, [owner.member(.owner)]), because: "owner cannot be removed")
        expectRefused(
            state, change(state, .remove, by: carol, [alice.member(.admin, [.invite, .ban])]), because: "needs the ban right")
        expectRefused(state, change(state, .remove, by: owner, [dave.member()]), because: "is not a member")
        // The listed entry must be the member as recorded.
        expectRefused(state, change(state, .remove, by: owner, [carol.member(.admin, [.pin])]), because: "another role or rights")
        var otherKey = carol.member()
        otherKey.identityKey = IdentityKeyPair().publicKey.rawBytes
        expectRefused(state, change(state, .remove, by: owner, [otherKey]), because: "another identity key")

        try state.apply(change(state, .remove, by: alice, [carol.member()]))
        #expect(state.members[carol.account] == nil)
        #expect(state.removalVersion == state.version)
        #expect(state.removalVersion == before.version + 1)
        // Bob (ban, manage_admins, but not every right of a richer admin) removes alice, whose
        // rights he holds all of.
        try state.apply(change(state, .remove, by: bob, [alice.member(.admin, [.invite, .ban])]))
        #expect(state.members[alice.account] == nil)
        // The owner may remove any admin.
        try state.apply(change(state, .remove, by: owner, [bob.member(.admin, [.invite, .ban, .manageAdmins, .pin])]))
        #expect(state.members.count == 1)
        // A removed member's changes are refused afterwards.
        expectRefused(state, change(state, .add, by: bob, [dave.member()]), because: "is not a member")
    }

    @Test("remove refused: an admin cannot remove an admin holding a right it lacks")
    func removeRicherAdmin() throws {
        var state = try group()
        try state.apply(change(state, .setRole, by: owner, [alice.member(.admin, [.invite, .ban, .manageAdmins])]))
        // Alice lacks pin, which bob holds.
        expectRefused(
            state, change(state, .remove, by: alice, [bob.member(.admin, [.invite, .ban, .manageAdmins, .pin])]),
            because: "rights it does not have")
    }

    @Test("leave: a member or admin leaves alone; the owner cannot; sets the removal version")
    func leave() throws {
        var state = try group()
        expectRefused(state, change(state, .leave, by: owner, [owner.member(.owner)]), because: "owner cannot leave")
        expectRefused(
            state, change(state, .leave, by: carol, [alice.member(.admin, [.invite, .ban])]), because: "leaving actor alone")
        expectRefused(
            state,
            change(
                state, .leave, by: carol,
                [carol.member(), alice.member(.admin, [.invite, .ban])].sorted {
                    $0.account.description < $1.account.description
                }), because: "leaving actor alone")
        expectRefused(state, change(state, .leave, by: dave, [dave.member()]), because: "is not a member")
        try state.apply(change(state, .leave, by: carol, [carol.member()]))
        #expect(state.members[carol.account] == nil)
        #expect(state.removalVersion == state.version)
        try state.apply(change(state, .leave, by: alice, [alice.member(.admin, [.invite, .ban])]))
        #expect(state.removalVersion == state.version)
        #expect(state.members.count == 2)
    }

    @Test("set_role: needs manage_admins, grants no more than the actor holds, never touches the owner, demotes")
    func setRole() throws {
        var state = try group()
        // Bob (invite, ban, manage_admins, pin) promotes carol with a subset of his rights.
        try state.apply(change(state, .setRole, by: bob, [carol.member(.admin, [.pin, .invite])]))
        #expect(state.members[carol.account] == carol.member(.admin, [.pin, .invite]))
        // Alice has no manage_admins.
        expectRefused(state, change(state, .setRole, by: alice, [carol.member()]), because: "needs the manage_admins right")
        // Bob cannot grant change_info, which he lacks.
        expectRefused(
            state, change(state, .setRole, by: bob, [carol.member(.admin, [.pin, .changeInfo])]),
            because: "rights it does not have")
        // Nor raise himself.
        expectRefused(
            state, change(state, .setRole, by: bob, [bob.member(.admin, .all)]), because: "rights it does not have")
        // Nobody touches the owner, or makes an owner without a transfer.
        expectRefused(state, change(state, .setRole, by: bob, [owner.member(.admin, [.pin])]), because: "only by transfer")
        expectRefused(state, change(state, .setRole, by: owner, [carol.member(.owner)]), because: "only by transfer")
        // A new identity key cannot slip in with a role change.
        var otherKey = carol.member(.admin, [.pin])
        otherKey.identityKey = IdentityKeyPair().publicKey.rawBytes
        expectRefused(state, change(state, .setRole, by: owner, [otherKey]), because: "another identity key")
        // The owner grants anything; then demotes back to member.
        try state.apply(change(state, .setRole, by: owner, [carol.member(.admin, .all)]))
        #expect(state.members[carol.account]?.rights == .all)
        // Bob cannot demote carol now: she holds rights he lacks.
        expectRefused(state, change(state, .setRole, by: bob, [carol.member()]), because: "rights it does not have")
        try state.apply(change(state, .setRole, by: owner, [carol.member()]))
        #expect(state.members[carol.account] == carol.member())
        #expect(state.removalVersion == 0)
    }

    @Test("transfer: only the owner, to one member; the old owner becomes an admin with every right")
    func transfer() throws {
        var state = try group()
        expectRefused(state, change(state, .transfer, by: bob, [carol.member(.owner)]), because: "only the owner")
        expectRefused(state, change(state, .transfer, by: owner, [carol.member()]), because: "with the owner role")
        expectRefused(state, change(state, .transfer, by: owner, [dave.member(.owner)]), because: "is not a member")
        expectRefused(state, change(state, .transfer, by: owner, [owner.member(.owner)]), because: "already owns")
        try state.apply(change(state, .transfer, by: owner, [carol.member(.owner)]))
        #expect(state.owner == carol.account)
        #expect(state.members[carol.account]?.rights == .all)
        #expect(state.members[owner.account] == owner.member(.admin, .all))
        #expect(state.members.values.filter { $0.role == .owner }.count == 1)
        // The former owner is an admin now: it cannot transfer, and it can be removed.
        expectRefused(state, change(state, .transfer, by: owner, [bob.member(.owner)]), because: "only the owner")
        try state.apply(change(state, .remove, by: carol, [owner.member(.admin, .all)]))
        #expect(state.members[owner.account] == nil)
    }

    @Test("the 1,000-member limit holds for creation and additions")
    func limit() throws {
        let limit = GroupMembershipState.memberLimit
        #expect(limit == 1_000)
        let key = IdentityKeyPair().publicKey.rawBytes
        let filler = (0..<(limit - 2)).map { _ in
            MembershipChange.Member(account: .random(), identityKey: key, role: .member)
        }
        var state = try GroupMembershipState.genesis(creation(members: filler))
        #expect(state.members.count == limit - 1)
        expectRefused(state, change(state, .add, by: owner, [alice.member(), bob.member()]), because: "at most 1000 members")
        try state.apply(change(state, .add, by: owner, [alice.member()]))
        #expect(state.members.count == limit)
        expectRefused(state, change(state, .add, by: owner, [bob.member()]), because: "at most 1000 members")
        expectGenesisRefused(creation(members: filler + [alice.member(), bob.member()]), because: "at most 1000 members")
    }

    @Test("bytes are deterministic, round-trip for every action, and the hash is SHA-256 of them")
    func encoding() throws {
        let state = try group()
        let members = [dave.member(), Person().member(), Person().member()]
        let one = change(state, .add, by: owner, members)
        let two = change(state, .add, by: owner, members.reversed())
        #expect(one.bytes == two.bytes)
        #expect(one.change.members.map(\.account.description) == one.change.members.map(\.account.description).sorted())
        #expect(one.hash == Data(SHA256.hash(data: one.bytes)))
        #expect(one.hash.count == 32)

        let samples: [SignedMembershipChange] = [
            creation(title: "Ναυτίλοι ⛵️ 灯台"), one,
            change(state, .remove, by: owner, [carol.member()]), change(state, .leave, by: carol, [carol.member()]),
            change(state, .setRole, by: owner, [carol.member(.admin, [.pin, .delete])]),
            change(state, .transfer, by: owner, [alice.member(.owner)]),
        ]
        for signed in samples {
            let parsed = try SignedMembershipChange(bytes: signed.bytes)
            #expect(parsed == signed)
            #expect(parsed.bytes == signed.bytes)
            #expect(parsed.hash == signed.hash)
        }
        #expect(Set(samples.map(\.hash)).count == samples.count)
        // Any edited field changes the hash.
        var later = one
        later.change.time += 1
        #expect(later.hash != one.hash)

        // Two clients replaying the same chain from bytes reach the same state.
        var first = try GroupMembershipState.genesis(SignedMembershipChange(bytes: creation(members: [carol.member()]).bytes))
        var second = first
        for signed in [change(first, .add, by: owner, [dave.member()])] {
            try first.apply(SignedMembershipChange(bytes: signed.bytes))
            try second.apply(signed)
        }
        #expect(first == second)
        #expect(first.hash == second.hash)
    }

    @Test("the server's check: the actor's key verifies, others and bad keys do not")
    func verifySignature() throws {
        let state = try group()
        let signed = change(state, .add, by: alice, [dave.member()])
        #expect(SignedMembershipChange.verifySignature(signed, identityKey: alice.identity.publicKey.rawBytes))
        #expect(!SignedMembershipChange.verifySignature(signed, identityKey: owner.identity.publicKey.rawBytes))
        #expect(!SignedMembershipChange.verifySignature(signed, identityKey: server.publicKey.rawBytes))
        #expect(!SignedMembershipChange.verifySignature(signed, identityKey: Data(count: 31)))
        #expect(!SignedMembershipChange.verifySignature(signed, identityKey: Data([1] + [UInt8](repeating: 0, count: 31))))
        var edited = signed
        edited.change.members = [carol.member()]
        #expect(!SignedMembershipChange.verifySignature(edited, identityKey: alice.identity.publicKey.rawBytes))
    }

    @Test("malformed bytes: truncations, trailing bytes, unknown codes and random bytes are refused without a crash")
    func malformed() throws {
        let signed = change(try group(), .setRole, by: owner, [carol.member(.admin, [.pin])])
        let bytes = signed.bytes
        // format 1, chat 16, version 8, previous 32, action 1, actor 16, time 8, title flag 1,
        // count 4, one member 53, signature 64.
        #expect(bytes.count == 1 + 16 + 8 + 32 + 1 + 16 + 8 + 1 + 4 + 53 + 64)
        func refused(_ data: Data, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(throws: HeliographError(.invalidMembershipChange, ""), sourceLocation: sourceLocation) {
                _ = try SignedMembershipChange(bytes: data)
            }
        }
        for length in 0..<bytes.count { refused(bytes.prefix(length)) }
        refused(bytes + Data([0]))
        var format = bytes
        format[0] = 2
        refused(format)
        var action = bytes
        action[57] = 9
        refused(action)
        var titleFlag = bytes
        titleFlag[82] = 2
        refused(titleFlag)
        var count = bytes
        count[84] = 0xFF
        refused(count)
        var role = bytes
        role[87 + 48] = 4
        refused(role)
        var rights = bytes
        rights[87 + 49] = 0x01  // bit 24: not a right
        refused(rights)
        // The same offsets hold what the test says they hold: restoring them parses again.
        #expect(try SignedMembershipChange(bytes: bytes) == signed)

        var generator = SystemRandomNumberGenerator()
        for round in 0..<2_000 {
            var random = Data((0..<Int.random(in: 0...300, using: &generator)).map { _ in UInt8.random(in: 0...255) })
            if round % 2 == 0, !random.isEmpty { random[0] = 1 }
            _ = try? SignedMembershipChange(bytes: random)
        }
    }
}
