import Foundation

/// Sizes in the words of messages and command output.
public enum ByteCount {
    /// A byte count as people read it: `1 byte`, `900 bytes`, `50 MiB` for an exact multiple,
    /// `1.2 MiB` otherwise, in binary units up to TiB.
    public static func text(_ bytes: Int64) -> String {
        guard bytes >= 1024 || bytes <= -1024 else { return bytes == 1 ? "1 byte" : "\(bytes) bytes" }
        let units = ["KiB", "MiB", "GiB", "TiB"]
        var unit = 0
        var size: Int64 = 1024
        while unit < units.count - 1, abs(bytes) >= size * 1024 {
            size *= 1024
            unit += 1
        }
        if bytes % size == 0 { return "\(bytes / size) \(units[unit])" }
        return String(format: "%.1f %@", Double(bytes) / Double(size), units[unit])
    }
}
