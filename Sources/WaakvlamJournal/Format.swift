#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import WaakvlamCrypto
import WaakvlamSystem

// The byte layouts of the journal's files. docs/JOURNAL.md describes each byte; keep the two
// in step.

func putU32(_ v: UInt32, _ p: UnsafeMutableRawPointer) { p.storeBytes(of: v.littleEndian, as: UInt32.self) }
func putU64(_ v: UInt64, _ p: UnsafeMutableRawPointer) { p.storeBytes(of: v.littleEndian, as: UInt64.self) }
func getU32(_ p: UnsafeRawPointer) -> UInt32 { UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)) }
func getU64(_ p: UnsafeRawPointer) -> UInt64 { UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)) }

/// A segment file: a 32-byte header, then record frames back to back.
enum Segment {
    static let magic = Array("WVJSEG1\n".utf8)
    static let headerSize = 32
    static let version: UInt32 = 1

    static func fileName(_ number: UInt32) -> String { String(format: "%08u.seg", number) }

    /// The segment number of a file name like `00000012.seg`, or nil for other files.
    static func number(fromFileName name: String) -> UInt32? {
        guard name.count == 12, name.hasSuffix(".seg") else { return nil }
        let digits = name.prefix(8)
        guard digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt32(digits)
    }

    static func header(number: UInt32, firstSequence: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: headerSize)
        bytes.withUnsafeMutableBytes { p in
            for (i, b) in magic.enumerated() { p[i] = b }
            putU32(number, p.baseAddress! + 8)
            putU32(version, p.baseAddress! + 12)
            putU64(firstSequence, p.baseAddress! + 16)
            putU32(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<28])), p.baseAddress! + 28)
        }
        return bytes
    }

    struct Header {
        let number: UInt32
        let firstSequence: UInt64
    }

    /// Parses a header; the error string says what is wrong.
    static func parseHeader(_ bytes: UnsafeRawBufferPointer) -> Result<Header, ScanProblem> {
        guard bytes.count >= headerSize else {
            return .failure(ScanProblem(offset: 0, reason: "segment header is incomplete (\(bytes.count) of \(headerSize) bytes)", torn: true))
        }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<28])) == getU32(bytes.baseAddress! + 28) else {
            return .failure(ScanProblem(offset: 0, reason: "segment header checksum mismatch", torn: false))
        }
        guard Array(bytes[0..<8]) == magic else {
            return .failure(ScanProblem(offset: 0, reason: "not a journal segment (bad magic)", torn: false))
        }
        guard getU32(bytes.baseAddress! + 12) == version else {
            return .failure(ScanProblem(offset: 0, reason: "unsupported segment format version \(getU32(bytes.baseAddress! + 12))", torn: false))
        }
        return .success(Header(number: getU32(bytes.baseAddress! + 8), firstSequence: getU64(bytes.baseAddress! + 16)))
    }
}

/// One record on disk:
///
///     0  u32  crc32c of bytes 4 ..< 52+bodyLength
///     4  u32  bodyLength
///     8  u64  sequence
///     16 u8   kind
///     17 u8   flags (bit 0: last record of one append call)
///     18 u16  reserved, 0
///     20 [32] SHA-256 of the previous record's frame (zeros before the first record)
///     52 body
///
/// The chain hash of a record is SHA-256 over its whole frame.
enum Frame {
    static let headerSize = 52
    static let flagEndOfAppend: UInt8 = 1

    /// Appends `record` to `w` as a frame with its body length, kind and flags; the sequence
    /// number, previous hash and CRC stay zero until `seal` fills them in. Callers encode their
    /// own records this way, so the writer thread only seals. `sealing`: see `encodeBody`.
    static func encode(_ record: JournalRecord, sealing: PayloadSealing? = nil, flags: UInt8, into w: inout ByteWriter) throws {
        let start = w.bytes.count
        w.zeros(headerSize)
        try record.encodeBody(into: &w, sealing: sealing)
        let length = w.bytes.count - start
        w.bytes.withUnsafeMutableBytes { all in
            let p = all.baseAddress! + start
            putU32(UInt32(length - headerSize), p + 4)
            p.storeBytes(of: record.kind.rawValue, toByteOffset: 16, as: UInt8.self)
            p.storeBytes(of: flags, toByteOffset: 17, as: UInt8.self)
        }
    }

    /// Completes the frame that `encode` left at `frame`: its sequence number, the previous
    /// record's chain hash (read from `hash`, 32 bytes) and its CRC; then replaces `hash` with
    /// this record's chain hash. Returns the frame's length.
    static func seal(_ frame: UnsafeMutableRawPointer, sequence: UInt64, hash: UnsafeMutableRawPointer,
                     hasher: SHA256Context) -> Int {
        let length = headerSize + Int(getU32(frame + 4))
        putU64(sequence, frame + 8)
        (frame + 20).copyMemory(from: hash, byteCount: 32)
        putU32(CRC32C.checksum(UnsafeRawBufferPointer(start: frame + 4, count: length - 4)), frame)
        hasher.hash(UnsafeRawBufferPointer(start: frame, count: length), into: hash)
        return length
    }
}

/// A frame as the scanner sees it; the buffers are valid only during the callback.
struct FrameView {
    let offset: UInt32
    let bytes: UnsafeRawBufferPointer
    var sequence: UInt64 { getU64(bytes.baseAddress! + 8) }
    var kind: UInt8 { bytes[16] }
    var flags: UInt8 { bytes[17] }
    var endsAppend: Bool { flags & Frame.flagEndOfAppend != 0 }
    var previousHash: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[20..<52]) }
    var body: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[Frame.headerSize...]) }
    var end: UInt32 { offset + UInt32(bytes.count) }
    func hash(_ hasher: SHA256Context) -> [UInt8] { hasher.hash(bytes) }
    func decode(_ detail: JournalRecord.Detail = .full) -> JournalRecord? { JournalRecord.decode(kind: kind, body: body, detail: detail) }
}

/// What stopped a scan before the end of a file. `torn` marks damage that a crash during a
/// write can cause (a record cut short at the end of the file) as opposed to changed bytes.
struct ScanProblem: Error, Equatable {
    let offset: UInt64
    let reason: String
    let torn: Bool
}

/// Reads a segment file front to back in bounded chunks.
final class SegmentReader {
    let path: String
    let fd: Int32
    let size: UInt64

    init(path: String) throws {
        self.path = path
        fd = try syscall("open(\(path))") { open(path, O_RDONLY | O_CLOEXEC) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let code = errno
            close(fd)
            throw SystemError(call: "fstat(\(path))", errno: code)
        }
        size = UInt64(st.st_size)
    }

    deinit { close(fd) }

    func readHeader() throws -> Result<Segment.Header, ScanProblem> {
        var bytes = [UInt8](repeating: 0, count: Segment.headerSize)
        let n = try bytes.withUnsafeMutableBytes { p in
            try syscall("pread(\(path))") { pread(fd, p.baseAddress!, Segment.headerSize, 0) }
        }
        return bytes.withUnsafeBytes { Segment.parseHeader(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
    }

    /// Calls `body` for every intact frame from `start`; returns nil at a clean end of file or
    /// the first problem. `maxBody` bounds a believable body length.
    func scan(from start: UInt64, maxBody: Int, chunk: Int = 4 << 20,
              _ body: (FrameView) throws -> Void) throws -> ScanProblem? {
        var buffer = [UInt8](repeating: 0, count: max(chunk, Frame.headerSize))
        var bufferStart = start      // file offset of buffer[0]
        var filled = 0               // valid bytes in buffer
        var cursor = 0               // next frame within buffer
        while true {
            let fileOffset = bufferStart + UInt64(cursor)
            if fileOffset == size { return nil }
            let available = filled - cursor
            var needed = Frame.headerSize
            if available >= Frame.headerSize {
                let bodyLength = buffer.withUnsafeBytes { getU32($0.baseAddress! + cursor + 4) }
                guard bodyLength <= UInt32(maxBody) else {
                    let remaining = size - fileOffset
                    return ScanProblem(offset: fileOffset,
                                       reason: "record length \(bodyLength) is beyond the limit of \(maxBody) bytes",
                                       torn: remaining < UInt64(Frame.headerSize) + UInt64(bodyLength))
                }
                needed = Frame.headerSize + Int(bodyLength)
            }
            if available >= needed {
                let problem: ScanProblem? = try buffer.withUnsafeBytes { all in
                    let frame = UnsafeRawBufferPointer(rebasing: all[cursor..<cursor + needed])
                    guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: frame[4...])) == getU32(frame.baseAddress!) else {
                        return ScanProblem(offset: fileOffset, reason: "checksum mismatch", torn: fileOffset + UInt64(needed) == size)
                    }
                    try body(FrameView(offset: UInt32(fileOffset), bytes: frame))
                    return nil
                }
                if let problem { return problem }
                cursor += needed
                continue
            }
            // Need more bytes: is there more file?
            if fileOffset + UInt64(needed) > size {
                return ScanProblem(offset: fileOffset,
                                   reason: "record is cut short (\(size - fileOffset) of \(needed) bytes present)", torn: true)
            }
            // Move the partial frame to the front and refill.
            if cursor > 0 {
                buffer.withUnsafeMutableBytes { p in
                    if available > 0 { p.baseAddress!.copyMemory(from: p.baseAddress! + cursor, byteCount: available) }
                }
                bufferStart += UInt64(cursor)
                filled = available
                cursor = 0
            }
            if buffer.count < needed { buffer.append(contentsOf: repeatElement(0, count: needed - buffer.count)) }
            let want = min(buffer.count - filled, Int(size - bufferStart) - filled)
            let n = try buffer.withUnsafeMutableBytes { p in
                try syscall("pread(\(path))") { pread(fd, p.baseAddress! + filled, want, off_t(bufferStart) + off_t(filled)) }
            }
            if n == 0 {
                return ScanProblem(offset: fileOffset, reason: "segment ended while reading (file shrank)", torn: true)
            }
            filled += n
        }
    }

    /// Reads the frame at `offset`, checking its checksum.
    func frame<T>(at offset: UInt32, maxBody: Int, _ body: (FrameView) throws -> T) throws -> T? {
        var header = [UInt8](repeating: 0, count: Frame.headerSize)
        guard try preadFully(&header, at: UInt64(offset)) else { return nil }
        let length = Int(header.withUnsafeBytes { getU32($0.baseAddress! + 4) })
        guard length <= maxBody else { return nil }
        var bytes = header + [UInt8](repeating: 0, count: length)
        guard try preadFully(&bytes, at: UInt64(offset)) else { return nil }
        return try bytes.withUnsafeBytes { p in
            guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[4...])) == getU32(p.baseAddress!) else { return nil }
            return try body(FrameView(offset: offset, bytes: p))
        }
    }

    private func preadFully(_ bytes: inout [UInt8], at offset: UInt64) throws -> Bool {
        var done = 0
        let count = bytes.count
        while done < count {
            let n = try bytes.withUnsafeMutableBytes { p in
                try syscall("pread(\(path))") { pread(fd, p.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            }
            if n == 0 { return false }
            done += n
        }
        return true
    }
}

/// The checkpoint file names the last record whose chain was verified and made durable, so
/// that open re-hashes only what came after it, and a journal cut short below it is noticed.
///
///     0  [8]  "WVJCKPT1"
///     8  u32  segment number
///     12 u32  end offset of the record in that segment
///     16 u64  sequence of the record
///     24 [32] chain hash of the record
///     56 u32  reserved, 0
///     60 u32  crc32c of bytes 0 ..< 60
struct Checkpoint: Equatable {
    static let fileName = "checkpoint"
    static let magic = Array("WVJCKPT1".utf8)
    static let size = 64

    let segment: UInt32
    let endOffset: UInt32
    let sequence: UInt64
    let hash: [UInt8]

    func encode() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Checkpoint.size)
        bytes.withUnsafeMutableBytes { p in
            for (i, b) in Checkpoint.magic.enumerated() { p[i] = b }
            putU32(segment, p.baseAddress! + 8)
            putU32(endOffset, p.baseAddress! + 12)
            putU64(sequence, p.baseAddress! + 16)
            hash.withUnsafeBytes { (p.baseAddress! + 24).copyMemory(from: $0.baseAddress!, byteCount: 32) }
            putU32(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<60])), p.baseAddress! + 60)
        }
        return bytes
    }

    static func decode(_ bytes: [UInt8]) -> Checkpoint? {
        guard bytes.count == size, Array(bytes[0..<8]) == magic else { return nil }
        return bytes.withUnsafeBytes { p in
            guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<60])) == getU32(p.baseAddress! + 60) else { return nil }
            return Checkpoint(segment: getU32(p.baseAddress! + 8), endOffset: getU32(p.baseAddress! + 12),
                              sequence: getU64(p.baseAddress! + 16), hash: Array(p[24..<56]))
        }
    }

    /// Reads the checkpoint of a journal folder: nil when there is none; throws when the file
    /// exists but is unreadable or damaged.
    static func load(directory: String) throws -> Checkpoint? {
        let path = directory + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else {
            if FileManager.default.fileExists(atPath: path) {
                throw JournalError.unavailable("cannot read \(path)")
            }
            return nil
        }
        guard let checkpoint = decode(Array(data)) else {
            throw JournalError.corrupt(JournalDamage(segment: fileName, offset: 0, sequence: nil,
                                                     reason: "checkpoint file is damaged"))
        }
        return checkpoint
    }

    /// Replaces the checkpoint file durably (temporary file, fdatasync, rename, directory fsync).
    func store(directory: String) throws {
        let temporary = directory + "/" + Checkpoint.fileName + ".tmp"
        let fd = try syscall("open(\(temporary))") { open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }
        do {
            try encode().withUnsafeBytes { try writeAll(fd, $0) }
            try dataSync(fd)
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        try syscall("rename(\(temporary))") { rename(temporary, directory + "/" + Checkpoint.fileName) }
        try syncDirectory(directory)
    }
}

/// The key file holds one 64-byte slot per sealed payload, after a 64-byte header:
///
///     header: [8] "WVJKEYS1", u32 slot size (64), [48] zeros, u32 crc32c of bytes 0 ..< 60
///     slot:   [32] AES-256 key, u64 sequence of the decision record, u32 slot number,
///             [16] zeros, u32 crc32c of bytes 0 ..< 60
///
/// An all-zero slot holds no key: never used, or purged.
enum KeySlot {
    static let fileName = "keys"
    static let magic = Array("WVJKEYS1".utf8)
    static let size = 64

    static func offset(_ slot: UInt32) -> Int64 { Int64(size) * (Int64(slot) + 1) }

    static func fileHeader() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.withUnsafeMutableBytes { p in
            for (i, b) in magic.enumerated() { p[i] = b }
            putU32(UInt32(size), p.baseAddress! + 8)
            putU32(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<60])), p.baseAddress! + 60)
        }
        return bytes
    }

    /// Writes the slot of `key` (`size` bytes) at `p`.
    static func encode(key: [UInt8], sequence: UInt64, slot: UInt32, into p: UnsafeMutableRawPointer) {
        key.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: 32) }
        (p + 32).initializeMemory(as: UInt8.self, repeating: 0, count: size - 32)
        putU64(sequence, p + 32)
        putU32(slot, p + 40)
        putU32(CRC32C.checksum(UnsafeRawBufferPointer(start: p, count: 60)), p + 60)
    }

    enum Content: Equatable {
        case empty
        case key([UInt8], sequence: UInt64)
        case damaged
    }

    static func decode(_ bytes: [UInt8], slot: UInt32) -> Content {
        guard bytes.count == size else { return .empty }
        if bytes.allSatisfy({ $0 == 0 }) { return .empty }
        return bytes.withUnsafeBytes { p in
            guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<60])) == getU32(p.baseAddress! + 60),
                  getU32(p.baseAddress! + 40) == slot else { return .damaged }
            return .key(Array(p[0..<32]), sequence: getU64(p.baseAddress! + 32))
        }
    }

    /// Authenticated data binding a sealed payload to its delivery.
    static func associatedData(signalID: String, recipientID: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(signalID.utf8.count + 1 + recipientID.utf8.count)
        bytes += signalID.utf8
        bytes.append(0)
        bytes += recipientID.utf8
        return bytes
    }
}

/// The segment files of a journal folder, in order.
func listSegments(directory: String) throws -> [UInt32] {
    let names: [String]
    do {
        names = try FileManager.default.contentsOfDirectory(atPath: directory)
    } catch {
        throw JournalError.unavailable("cannot list the journal folder \(directory): \(error.localizedDescription)")
    }
    return names.compactMap(Segment.number(fromFileName:)).sorted()
}
