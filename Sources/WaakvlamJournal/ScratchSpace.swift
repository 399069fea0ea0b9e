import Glibc
import WaakvlamSystem

/// Memory for the delivery index that the kernel can take back: the index's arrays live in
/// windows of a sparse, nameless scratch file in the journal's folder, mapped shared. The
/// index reads and writes them like ordinary arrays; every so often it drops the pages it
/// has touched from the process (`releaseResident`). They stay in the kernel's page cache,
/// are written back like any file and evicted under memory pressure, and come back on the
/// next access (a minor fault while cached). So the daemon's resident memory follows the
/// index's working set (recent signals, the heads of the queues), not the size of a backlog,
/// the way Postfix keeps its deferred queue on disk.
///
/// The file holds nothing durable: it has no name (O_TMPFILE, or unlinked at once), is gone
/// when the process ends, and the index is rebuilt from the journal at open. Disk blocks are
/// reserved with `posix_fallocate` before they are used (and kept for reuse), so on ext4 and
/// XFS a full disk never faults a mapped page (copy-on-write file systems such as btrfs or ZFS
/// do not keep that promise; see docs/JOURNAL.md): an array that cannot get blocks moves to
/// anonymous memory (and stays correct, only resident; logged). Without a usable folder
/// or sparse files, all windows are anonymous memory.
///
/// Not thread-safe: the index uses it under its lock.
final class ScratchSpace {
    /// Address space per window (one array): 268 million 64-byte delivery entries, far more
    /// than a node keeps within `rememberCompletedSignals`; `ScratchArray` stops the process
    /// with a clear message beyond it. Reserved address space only (sparse file, no swap).
    static let windowBytes = 1 << 34
    /// Windows per scratch file (and mapping): 512 GiB of address space each. The index uses
    /// seven windows plus one per push recipient's schedule and one per inbox queue, so a
    /// node with many recipients maps more than one file.
    static let windowsPerChunk = 32

    /// A window: where it is mapped, and whether it is a file's (false: anonymous memory).
    struct Window {
        let number: Int
        let base: UnsafeMutableRawPointer
        let fileBacked: Bool
    }

    private struct Chunk {
        let base: UnsafeMutableRawPointer
        /// The scratch file, or -1 for anonymous memory.
        let fd: Int32
    }

    private let directory: String?
    private var chunks: [Chunk] = []
    /// Free window numbers, per kind (file, anonymous).
    private var freeFile: [Int] = []
    private var freeAnonymous: [Int] = []
    /// Bytes reserved (and possibly touched) per window number in use.
    private var reserved: [Int: Int] = [:]
    /// Bytes with disk blocks per file window number, in use or not: a window given back
    /// keeps its blocks for the next array (punching holes costs synchronous discards on
    /// file systems mounted with `discard`).
    private var allocated: [Int: Int] = [:]
    /// Set when a scratch file could not be made: the windows are anonymous from then on.
    private var fileUnavailable = false

    /// `directory`: where the scratch file goes (the journal's folder); nil for anonymous memory only.
    init(directory: String?) {
        self.directory = directory
    }

    deinit {
        for chunk in chunks {
            munmap(chunk.base, Self.windowBytes * Self.windowsPerChunk)
            if chunk.fd >= 0 { Glibc.close(chunk.fd) }
        }
    }

    /// Bytes reserved by the windows in use: the index's size, wherever its pages are.
    var reservedBytes: Int { reserved.values.reduce(0, +) }

    /// Disk blocks reserved in the scratch files (kept for reuse when a window is given back):
    /// what the nameless files take on disk, which `du` cannot see.
    var diskBytes: Int { allocated.values.reduce(0, +) }

    /// True when the windows are a file's (the index can leave memory).
    var isFileBacked: Bool { chunks.contains { $0.fd >= 0 } }

    func allocate(anonymous: Bool = false) -> Window {
        if !anonymous, freeFile.isEmpty, !fileUnavailable, let directory {
            addFileChunk(directory)
        }
        if !anonymous, let number = freeFile.popLast() {
            reserved[number] = 0
            return window(number)
        }
        if freeAnonymous.isEmpty { addAnonymousChunk() }
        let number = freeAnonymous.removeLast()
        reserved[number] = 0
        return window(number)
    }

    func reservedBytes(of window: Window) -> Int { reserved[window.number] ?? 0 }

    /// Makes the first `bytes` of a window usable; false when a file window cannot get disk
    /// blocks (the caller moves to an anonymous window).
    func reserve(_ window: Window, bytes: Int) -> Bool {
        let have = reserved[window.number] ?? 0
        guard bytes > have else { return true }
        // Grow by an eighth at least, in whole 64 KiB: few calls, little waste (a recipient's
        // small queue keeps little disk).
        let target = min(Self.windowBytes, roundUp(max(bytes, have + have / 8), to: 1 << 16))
        let blocks = allocated[window.number] ?? 0
        if window.fileBacked, target > blocks {
            let chunk = chunks[window.number / Self.windowsPerChunk]
            let offset = (window.number % Self.windowsPerChunk) * Self.windowBytes
            let status = posix_fallocate(chunk.fd, off_t(offset + blocks), off_t(target - blocks))
            guard status == 0 else {
                Log.shared.warning("delivery_index_not_paged", [
                    "reason": "no disk blocks for the index's scratch file: \(String(cString: strerror(status)))",
                    "effect": "this part of the delivery index stays in memory until the daemon restarts",
                ])
                return false
            }
            allocated[window.number] = target
        }
        reserved[window.number] = target
        return true
    }

    /// Gives a window back: its pages leave memory (anonymous ones are freed); what it held
    /// is undefined for the next user.
    func free(_ window: Window) {
        let bytes = reserved.removeValue(forKey: window.number) ?? 0
        if bytes > 0 { madvise(window.base, bytes, MADV_DONTNEED) }
        if window.fileBacked { freeFile.append(window.number) } else { freeAnonymous.append(window.number) }
    }

    /// Drops every file-backed page from the process's resident set. Their contents stay in
    /// the file (the kernel's page cache); the next access maps them again.
    func releaseResident() {
        for (number, bytes) in reserved where bytes > 0 {
            let w = window(number)
            if w.fileBacked { madvise(w.base, bytes, MADV_DONTNEED) }
        }
    }

    // MARK: Chunks

    private func window(_ number: Int) -> Window {
        let chunk = chunks[number / Self.windowsPerChunk]
        return Window(number: number, base: chunk.base + (number % Self.windowsPerChunk) * Self.windowBytes, fileBacked: chunk.fd >= 0)
    }

    private var chunkBytes: Int { Self.windowBytes * Self.windowsPerChunk }

    /// A sparse nameless file of `chunkBytes`, mapped shared; on any failure nothing changes
    /// (and the next windows are anonymous).
    private func addFileChunk(_ directory: String) {
        let tmpfile: Int32 = 0o20000000 | O_DIRECTORY  // O_TMPFILE, which Glibc's module leaves out
        var fd = Glibc.open(directory, tmpfile | O_RDWR | O_CLOEXEC, 0o600)
        if fd < 0 {
            // File systems without O_TMPFILE: a file unlinked right after it is made.
            var template = Array((directory + "/.index-scratch-XXXXXX").utf8CString)
            fd = mkstemp(&template)
            if fd >= 0 {
                unlink(template)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            }
        }
        guard fd >= 0, ftruncate(fd, off_t(chunkBytes)) == 0,
              let base = mmap(nil, chunkBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0),
              base != MAP_FAILED else {
            let reason = String(cString: strerror(errno))
            if fd >= 0 { Glibc.close(fd) }
            fileUnavailable = true
            Log.shared.warning("delivery_index_not_paged", [
                "reason": "cannot make the index's scratch file in \(directory): \(reason)",
                "effect": "the delivery index stays in memory (correct, but its size follows the backlog)",
            ])
            return
        }
        let first = chunks.count * Self.windowsPerChunk
        chunks.append(Chunk(base: base, fd: fd))
        freeFile.append(contentsOf: (first..<first + Self.windowsPerChunk).reversed())
    }

    private func addAnonymousChunk() {
        guard let base = mmap(nil, chunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              base != MAP_FAILED else {
            fatalError("delivery index: cannot reserve \(chunkBytes >> 30) GiB of address space (\(String(cString: strerror(errno)))): allow it with the virtual memory limit (ulimit -v, LimitAS=) and, under vm.overcommit_memory=2, make the journal's folder hold the scratch file")
        }
        let first = chunks.count * Self.windowsPerChunk
        chunks.append(Chunk(base: base, fd: -1))
        freeAnonymous.append(contentsOf: (first..<first + Self.windowsPerChunk).reversed())
    }
}

private func roundUp(_ value: Int, to multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }

/// A growable array of plain values in a `ScratchSpace` window: appends never copy (the
/// window is reserved address space), and the pages can leave memory. A class: copies of
/// the struct that holds it share it, like the array it replaces would not, so holders mutate
/// it only in place.
final class ScratchArray<Element: BitwiseCopyable> {
    private let space: ScratchSpace
    // Accessed under the index's lock only: no dynamic exclusivity checks (they were a
    // measurable part of rebuilding the index).
    @exclusivity(unchecked) private var window: ScratchSpace.Window
    @exclusivity(unchecked) private(set) var base: UnsafeMutablePointer<Element>
    @exclusivity(unchecked) private(set) var count = 0
    @exclusivity(unchecked) private var usable = 0

    /// An empty array, or `zeroed` elements of all-zero bytes.
    init(_ space: ScratchSpace, zeroed: Int = 0) {
        self.space = space
        window = space.allocate()
        base = window.base.assumingMemoryBound(to: Element.self)
        if zeroed > 0 {
            ensure(zeroed)
            memset(base, 0, zeroed * MemoryLayout<Element>.stride)  // a reused window holds old bytes
            count = zeroed
        }
    }

    deinit { space.free(window) }

    var indices: Range<Int> { 0..<count }
    var isEmpty: Bool { count == 0 }
    var bytes: Int { count * MemoryLayout<Element>.stride }

    subscript(i: Int) -> Element {
        get {
            precondition(i >= 0 && i < count, "ScratchArray index out of range")
            return base[i]
        }
        set {
            precondition(i >= 0 && i < count, "ScratchArray index out of range")
            base[i] = newValue
        }
    }

    var last: Element? { count == 0 ? nil : base[count - 1] }

    func append(_ element: Element) {
        if count == usable { ensure(count + 1) }
        base[count] = element
        count += 1
    }

    func append(contentsOf elements: UnsafeBufferPointer<Element>) {
        guard !elements.isEmpty else { return }
        ensure(count + elements.count)
        (base + count).update(from: elements.baseAddress!, count: elements.count)
        count += elements.count
    }

    func removeLast() {
        precondition(count > 0, "removeLast on an empty ScratchArray")
        count -= 1
    }

    /// Keeps the first `n` elements.
    func truncate(to n: Int) {
        precondition(n >= 0 && n <= count, "ScratchArray truncate out of range")
        count = n
    }

    /// Removes the first `n` elements, moving the rest to the front.
    func removeFirst(_ n: Int) {
        precondition(n >= 0 && n <= count, "ScratchArray removeFirst out of range")
        base.update(from: base + n, count: count - n)
        count -= n
    }

    func swapAt(_ i: Int, _ j: Int) {
        precondition(i >= 0 && i < count && j >= 0 && j < count, "ScratchArray swapAt out of range")
        let t = base[i]
        base[i] = base[j]
        base[j] = t
    }

    /// Makes room for `n` elements: reserves disk blocks, or moves to anonymous memory
    /// when the file cannot have more.
    private func ensure(_ n: Int) {
        let stride = MemoryLayout<Element>.stride
        precondition(n * stride <= ScratchSpace.windowBytes, "delivery index: an array outgrew its \(ScratchSpace.windowBytes >> 30) GiB window")
        guard n > usable else { return }
        if !space.reserve(window, bytes: n * stride) {
            let moved = space.allocate(anonymous: true)
            _ = space.reserve(moved, bytes: n * stride)
            moved.base.copyMemory(from: window.base, byteCount: count * stride)
            space.free(window)
            window = moved
            base = window.base.assumingMemoryBound(to: Element.self)
        }
        usable = space.reservedBytes(of: window) / stride
    }
}
