import Foundation
import HeliographCore
import HeliographStore
import Testing

/// Sealed franking keys: the key-rotation part of the storage contract, on every backend. The
/// store treats sealed bytes as opaque, so these tests "seal" with a readable marker.
extension StoreConformanceTests {
    static func sealedMarker(_ id: UInt32) -> Data { Data("sealed-\(id)".utf8) }

    @Test("the first key gets id 1 once, however many nodes ask at the same time", arguments: Backend.all)
    func firstFrankingKey(_ backend: Backend) async throws {
        try await backend.with { storage in
            let store = storage.frankingKeys
            #expect(try await store.keys().isEmpty)
            #expect(try await store.current() == nil)
            let created = try await withThrowingTaskGroup(of: StoredFrankingKey.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await store.addCurrentKey(at: Fixture.start, onlyIfNone: true) { Self.sealedMarker($0) }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(created.map(\.id)) == [1])
            #expect(try await store.keys().count == 1)
            let current = try #require(try await store.current())
            #expect(current.id == 1)
            #expect(current.sealedKey == Self.sealedMarker(1))
            #expect(current.createdAt == Fixture.start)
            #expect(current.retiredAt == nil)
        }
    }

    @Test(
        "rotation retires the current key, ids keep rising, and only keys retired long enough are deleted", arguments: Backend.all
    )
    func rotateFrankingKeys(_ backend: Backend) async throws {
        try await backend.with { storage in
            let store = storage.frankingKeys
            _ = try await store.addCurrentKey(at: Fixture.start, onlyIfNone: true) { Self.sealedMarker($0) }
            let second = try await store.addCurrentKey(at: Fixture.start + 100, onlyIfNone: false) { Self.sealedMarker($0) }
            #expect(second.id == 2)
            // onlyIfNone leaves a current key alone.
            #expect(try await store.addCurrentKey(at: Fixture.start + 150, onlyIfNone: true) { _ in Data("x".utf8) } == second)
            let third = try await store.addCurrentKey(at: Fixture.start + 200, onlyIfNone: false) { Self.sealedMarker($0) }
            #expect(third.id == 3)
            #expect(try await store.current()?.id == 3)
            let all = try await store.keys()
            #expect(all.map(\.id) == [1, 2, 3])
            #expect(all.map(\.retiredAt) == [Fixture.start + 100, Fixture.start + 200, nil])
            #expect(all.map(\.sealedKey) == [1, 2, 3].map(Self.sealedMarker))
            #expect(try await store.key(id: 2)?.retiredAt == Fixture.start + 200)
            #expect(try await store.key(id: 4) == nil)

            // Key 1 was retired at +100, key 2 at +200: a cut-off between deletes only key 1.
            #expect(try await store.deleteRetired(before: Fixture.start + 100) == [])
            #expect(try await store.deleteRetired(before: Fixture.start + 150) == [1])
            #expect(try await store.key(id: 1) == nil)
            // The current key survives any cut-off.
            #expect(try await store.deleteRetired(before: Fixture.start + 10_000) == [2])
            #expect(try await store.keys().map(\.id) == [3])
            // Ids are never reused after deletions.
            #expect(try await store.addCurrentKey(at: Fixture.start + 300, onlyIfNone: false) { Self.sealedMarker($0) }.id == 4)
        }
    }

    @Test("concurrent rotations each get their own id and leave exactly one current key", arguments: Backend.all)
    func concurrentFrankingRotations(_ backend: Backend) async throws {
        try await backend.with { storage in
            let store = storage.frankingKeys
            _ = try await store.addCurrentKey(at: Fixture.start, onlyIfNone: true) { Self.sealedMarker($0) }
            let ids = try await withThrowingTaskGroup(of: UInt32.self) { group in
                for index in 1...6 {
                    group.addTask {
                        try await store.addCurrentKey(at: Fixture.start + Double(index), onlyIfNone: false) {
                            Self.sealedMarker($0)
                        }.id
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(ids.sorted() == Array(2...7))
            let keys = try await store.keys()
            #expect(keys.filter { $0.retiredAt == nil }.map(\.id) == [7])
            // Every key is sealed for its own id.
            #expect(keys.allSatisfy { $0.sealedKey == Self.sealedMarker($0.id) })
        }
    }

    @Test("a plain secret of an earlier version is moved in sealed, retired, and its plain copy deleted", arguments: Backend.all)
    func importPlainFrankingSecret(_ backend: Backend) async throws {
        try await backend.with { storage in
            let store = storage.frankingKeys
            #expect(!(try await store.importPlainSecret(named: "franking-v1", as: 0, at: Fixture.start) { $0 }))
            let plain = Data(repeating: 0x5A, count: 32)
            _ = try await storage.secrets.secret(named: "franking-v1") { plain }
            #expect(
                try await store.importPlainSecret(named: "franking-v1", as: 0, at: Fixture.start) { Data("sealed:".utf8) + $0 })
            let imported = try #require(try await store.key(id: 0))
            #expect(imported.sealedKey == Data("sealed:".utf8) + plain)
            #expect(imported.retiredAt == Fixture.start)
            #expect(try await store.current() == nil)
            // The plain copy is gone: asking for the name again creates a fresh value.
            #expect(try await storage.secrets.secret(named: "franking-v1") { Data("fresh".utf8) } == Data("fresh".utf8))
            // A second import finds the id taken: it keeps the stored key and only deletes the plain copy.
            #expect(try await store.importPlainSecret(named: "franking-v1", as: 0, at: Fixture.start + 5) { $0 })
            #expect(try await store.key(id: 0) == imported)
            #expect(!(try await store.importPlainSecret(named: "franking-v1", as: 0, at: Fixture.start + 6) { $0 }))
            // The first new key comes after it.
            #expect(try await store.addCurrentKey(at: Fixture.start + 1, onlyIfNone: true) { Self.sealedMarker($0) }.id == 1)
            // A failing seal changes nothing.
            _ = try await storage.secrets.secret(named: "franking-v1") { plain }
            struct SealFailed: Error {}
            await #expect(throws: SealFailed.self) {
                _ = try await store.importPlainSecret(named: "franking-v1", as: 9, at: Fixture.start) { _ in throw SealFailed() }
            }
            #expect(try await store.key(id: 9) == nil)
            #expect(try await storage.secrets.secret(named: "franking-v1") { Data() } == plain)
        }
    }
}
