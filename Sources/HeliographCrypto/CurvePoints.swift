import Foundation

/// Strict rules for the 32-byte Ed25519 point encodings of identity keys and of the R half of
/// signatures, checked with plain byte arithmetic before swift-crypto sees the bytes.
///
/// Why: swift-crypto (BoringSSL's ref10 code) decodes a y-coordinate at or above p without
/// complaint and accepts the points of small order. A small-order public key makes forgery
/// trivial — for the identity point `01 00…00`, the signature `01 00…00 ‖ 00…00` verifies for
/// every message — so such keys are refused wherever a key enters, and signatures whose R or S
/// is not in its canonical range are refused before verification.
///
/// An encoding is the little-endian y-coordinate (255 bits) with the sign of x in bit 255
/// (RFC 8032 §5.1.2).
public enum Ed25519Point {
    /// p = 2²⁵⁵ − 19, little-endian.
    static let fieldPrime: [UInt8] = [0xED] + [UInt8](repeating: 0xFF, count: 30) + [0x7F]

    /// The group order L = 2²⁵² + 27742317777372353535851937790883648493, little-endian.
    static let groupOrder: [UInt8] = [
        0xED, 0xD3, 0xF5, 0x5C, 0x1A, 0x63, 0x12, 0x58, 0xD6, 0x9C, 0xF7, 0xA2, 0xDE, 0xF9, 0xDE, 0x14,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
    ]

    /// The y-coordinates (canonical, little-endian) of the eight points whose order divides 8.
    ///
    /// Derived from the curve −x² + y² = 1 + d·x²·y² (d = −121665/121666): y = 1 is the neutral
    /// element, y = −1 the point of order 2, y = 0 the two points (±√−1, 0) of order 4. A point of
    /// order 8 doubles to one of order 4, whose y is 0; by the doubling formula that means
    /// x² = −y², and on the curve d·y⁴ + 2·y² − 1 = 0, so y² = (−1 ± √(1 + d)) / d. Only the
    /// "−" root has square roots y, and each of ±y has two points (±x), hence four points.
    static let smallOrderYCoordinates: [[UInt8]] = [
        [UInt8](repeating: 0, count: 32),  // order 4: (±√−1, 0)
        [0x01] + [UInt8](repeating: 0, count: 31),  // order 1: the neutral element (0, 1)
        [0xEC] + [UInt8](repeating: 0xFF, count: 30) + [0x7F],  // order 2: (0, −1), y = p − 1
        bytes("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  // order 8
        bytes("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),  // order 8
    ]

    /// Every 32-byte string that decodes (in a lenient decoder such as ref10's) to a point of
    /// small order: the eight canonical encodings, the sign-bit aliases of the two points with
    /// x = 0 (y = ±1), and y + p wherever that still fits in 255 bits (y = 0 and y = 1), each
    /// with either sign bit. Fourteen strings in all.
    public static let smallOrderEncodings: Set<Data> = {
        var encodings = Set<Data>()
        for y in smallOrderYCoordinates {
            for alias in [y, add(y, fieldPrime)].compactMap({ $0 }) where alias[31] & 0x80 == 0 {
                encodings.insert(Data(alias))
                var negative = alias
                negative[31] |= 0x80
                encodings.insert(Data(negative))
            }
        }
        return encodings
    }()

    /// Whether `encoding` is the one canonical encoding of its point: y < p, and no sign bit on
    /// a point whose x is 0 (y = ±1), as RFC 8032 §5.1.3 requires of a decoder.
    public static func isCanonical(_ encoding: Data) -> Bool {
        guard encoding.count == 32 else { return false }
        var y = [UInt8](encoding)
        let signBit = y[31] & 0x80 != 0
        y[31] &= 0x7F
        guard isLess(y, than: fieldPrime) else { return false }
        // x = 0 exactly when y = ±1; "−0" is not an encoding.
        if signBit, y == smallOrderYCoordinates[1] || y == smallOrderYCoordinates[2] { return false }
        return true
    }

    /// Whether `encoding` is one of ``smallOrderEncodings``.
    public static func isSmallOrder(_ encoding: Data) -> Bool {
        smallOrderEncodings.contains(Data(encoding))
    }

    /// Whether a 32-byte signature scalar S is below the group order L (RFC 8032 §5.1.7: a
    /// larger S gives a second valid signature for the same message).
    public static func isReducedScalar(_ scalar: Data) -> Bool {
        scalar.count == 32 && isLess([UInt8](scalar), than: groupOrder)
    }

    /// Checks a public key encoding: canonical and not of small order.
    static func checkPublicKey(_ encoding: Data) throws(Refusal) {
        guard encoding.count == 32 else { throw .wrongLength(encoding.count) }
        guard isCanonical(encoding) else { throw .nonCanonical }
        guard !isSmallOrder(encoding) else { throw .smallOrder }
    }

    /// Why an encoding was refused, for the error message of the caller's error type.
    enum Refusal: Error {
        case wrongLength(Int)
        case nonCanonical
        case smallOrder

        var sentence: String {
            switch self {
            case .wrongLength(let count): "must be 32 bytes (got \(count))"
            case .nonCanonical: "is not a canonical Ed25519 encoding (y must be below 2^255 - 19)"
            case .smallOrder: "is a point of small order, with which signatures can be forged"
            }
        }
    }

    // MARK: Little-endian 256-bit arithmetic on byte arrays

    /// a < b for little-endian numbers of equal length, comparing from the most significant byte.
    static func isLess(_ a: [UInt8], than b: [UInt8]) -> Bool {
        for index in stride(from: a.count - 1, through: 0, by: -1) where a[index] != b[index] {
            return a[index] < b[index]
        }
        return false
    }

    /// a + b, or nil when the sum does not fit in 32 bytes.
    static func add(_ a: [UInt8], _ b: [UInt8]) -> [UInt8]? {
        var sum = [UInt8](repeating: 0, count: 32)
        var carry: UInt16 = 0
        for index in 0..<32 {
            let total = UInt16(a[index]) + UInt16(b[index]) + carry
            sum[index] = UInt8(total & 0xFF)
            carry = total >> 8
        }
        return carry == 0 ? sum : nil
    }

    /// a − b for a ≥ b.
    static func subtract(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        var difference = [UInt8](repeating: 0, count: 32)
        var borrow: Int16 = 0
        for index in 0..<32 {
            var value = Int16(a[index]) - Int16(b[index]) - borrow
            borrow = value < 0 ? 1 : 0
            if value < 0 { value += 256 }
            difference[index] = UInt8(value)
        }
        return difference
    }

    static func bytes(_ hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            result.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        return result
    }
}

/// The X25519 public keys that must never be accepted: u-coordinates of points of small order
/// on Curve25519 or its twist, with which a Diffie-Hellman output is one of at most eight
/// values whatever the private key (RFC 7748 §7) — for most of them all zeros.
public enum X25519Point {
    /// The canonical small-order u-coordinates, little-endian: 0 (order 2), 1 (order 4), p − 1
    /// (order 4 on the twist), and the two points of order 8.
    ///
    /// The order-8 values are u = (1 + y) / (1 − y) of the Edwards points of order 8 (see
    /// ``Ed25519Point``), the birational map between the two curves.
    static let smallOrderCoordinates: Set<[UInt8]> = [
        [UInt8](repeating: 0, count: 32),
        [0x01] + [UInt8](repeating: 0, count: 31),
        [0xEC] + [UInt8](repeating: 0xFF, count: 30) + [0x7F],
        Ed25519Point.bytes("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        Ed25519Point.bytes("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    ]

    /// Whether the 32 bytes name a small-order point. X25519 ignores bit 255 and reduces
    /// modulo p (RFC 7748 §5), so the aliases count too: each value with bit 255 set, and
    /// p = 0 + p and p + 1 = 1 + p (the only values ≥ p that reduce onto the list).
    public static func isSmallOrder(_ publicKey: Data) -> Bool {
        guard publicKey.count == 32 else { return false }
        var u = [UInt8](publicKey)
        u[31] &= 0x7F
        if !Ed25519Point.isLess(u, than: Ed25519Point.fieldPrime) {
            u = Ed25519Point.subtract(u, Ed25519Point.fieldPrime)
        }
        return smallOrderCoordinates.contains(u)
    }

    /// Checks a peer's X25519 public key: 32 bytes and not of small order.
    public static func check(_ publicKey: Data, as role: String) throws(SessionError) {
        guard publicKey.count == 32 else {
            throw SessionError(.invalidKey, "\(role) must be a 32-byte X25519 key (got \(publicKey.count) bytes)")
        }
        guard !isSmallOrder(publicKey) else {
            throw SessionError(
                .invalidKey, "\(role) is an X25519 point of small order, which would give a predictable shared secret")
        }
    }
}
