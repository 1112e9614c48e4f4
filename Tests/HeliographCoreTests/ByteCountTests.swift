import HeliographCore
import Testing

@Suite("Byte counts as people read them")
struct ByteCountTests {
    @Test(
        "bytes below a KiB, whole units for exact multiples, one decimal otherwise",
        arguments: [
            (0, "0 bytes"), (1, "1 byte"), (900, "900 bytes"), (1023, "1023 bytes"), (1024, "1 KiB"),
            (1536, "1.5 KiB"), (50 * 1_048_576, "50 MiB"), (1_258_291, "1.2 MiB"), (2 << 30, "2 GiB"),
            (3 << 40, "3 TiB"), (5 << 50, "5120 TiB"),
        ] as [(Int64, String)])
    func text(_ bytes: Int64, _ expected: String) {
        #expect(ByteCount.text(bytes) == expected)
    }
}
