import CLinux

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), used to detect torn or damaged
/// records. With the CPU's crc32 instruction (x86-64 with SSE 4.2) where there is one, several
/// gigabytes per second; else slicing-by-8 in pure Swift, about one gigabyte per second.
enum CRC32C {
    /// Whether `checksum` uses the CPU's instruction (asked once).
    static let usesHardware = waakvlam_crc32c_hardware() != 0

    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 {
                let previous = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (previous >> 8) ^ t[Int(previous & 0xff)]
            }
        }
        return t
    }()

    /// The checksum of `bytes` (initial value and final xor 0xFFFFFFFF, as in iSCSI/ext4).
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return 0 }
        guard usesHardware else { return softwareChecksum(bytes) }
        return waakvlam_crc32c_update(0xFFFF_FFFF, base.assumingMemoryBound(to: UInt8.self), bytes.count) ^ 0xFFFF_FFFF
    }

    /// `checksum` without the CPU's instruction (used where there is none; tests compare both).
    static func softwareChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        guard var p = bytes.baseAddress else { return 0 }
        var n = bytes.count
        tables.withUnsafeBufferPointer { t in
            while n >= 8 {
                let word = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
                let low = UInt32(truncatingIfNeeded: word) ^ crc
                let high = UInt32(truncatingIfNeeded: word >> 32)
                crc = t[7 * 256 + Int(low & 0xff)] ^ t[6 * 256 + Int((low >> 8) & 0xff)]
                    ^ t[5 * 256 + Int((low >> 16) & 0xff)] ^ t[4 * 256 + Int(low >> 24)]
                    ^ t[3 * 256 + Int(high & 0xff)] ^ t[2 * 256 + Int((high >> 8) & 0xff)]
                    ^ t[1 * 256 + Int((high >> 16) & 0xff)] ^ t[Int(high >> 24)]
                p += 8
                n -= 8
            }
            while n > 0 {
                crc = (crc >> 8) ^ t[Int((crc ^ UInt32(p.load(as: UInt8.self))) & 0xff)]
                p += 1
                n -= 1
            }
        }
        return crc ^ 0xFFFF_FFFF
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}
