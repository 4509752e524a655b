import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A learner's backlog of fed ring batches (Learner.swift): the batches its provider sends while the learner cannot
/// apply them yet — during the restore of the copy (phase 1), and in phase 2 until the group's cut is known. In
/// order, first in first out, with the provider's applied index after each batch.
///
/// Why a file: the backlog grows with the load × the restore's duration. A *paced* restore (the point of pacing is
/// that the join takes a small share of the machine, so it lasts longer) at a saturating load would outgrow any
/// memory bound worth having beside a 64 MiB budget (issue #12, Done-when 4: 13 MB/s of feed × 16 s ≈ 200 MB). So the
/// stash keeps at most ``memoryBytesMax`` in memory and spills the rest to a file, the raft way (the log is on disk,
/// memory stays bounded): sequential writes at the tail, sequential reads at the head, through one buffer each.
///
/// The file: `mkstemp(3)` in the replica's ``Replica/Options/workDirectory``, unlinked at once, so that it never
/// outlives the process (a crash, a kill -9 included) and no other process sees it; closed (its space freed) when
/// the stash is closed or released. Bounded by ``spillBytesMax``: a batch beyond it throws a clear error (the
/// learner's attempt fails; the next attempt or the ordinary join follows, Learner.swift). Without a work directory
/// the stash is memory only, at most ``memoryBytesMax``, and the same error comes at that bound.
///
/// Order: while the file holds unread batches, every new batch goes to the file too (never to memory), so the batches
/// in memory always precede those in the file and ``popFirst()`` reads memory first. Once the file is read to its
/// end it is truncated and the next batches go to memory again.
///
/// Two threads (phase 1, the feed on a connection of its own): the learner's feed thread appends what it reads while
/// the learner's thread pops and applies. One lock (``lock``) around every operation, the file's I/O included: an
/// append waits for a pop's read of at most one buffer (``ioBufferBytes``). The peaks and counters are read once the
/// feed thread was joined.
final class FeedStash: @unchecked Sendable {
    /// A record in the file: the index (u64 LE), the payload's length (u32 LE), the payload.
    static let recordHeaderBytes = 12
    /// What one batch held in memory costs beyond its payload (array header, index, slot), for the bound.
    static let entryOverheadBytes = 64
    /// The file's write and read buffers, each (sequential I/O in pieces this large).
    static let ioBufferBytes = 256 << 10

    let memoryBytesMax: Int
    /// Every operation holds it; ``waitForBatch(untilNanos:)`` waits on it (an append wakes it).
    private let lock = Monitor()
    /// Where the file goes; nil: memory only.
    let directory: String?
    /// The file's size at most (bytes of records); ``append(index:payload:)`` throws beyond it.
    let spillBytesMax: Int

    private var memory: [(index: UInt64, payload: [UInt8])] = []
    private var memoryHead = 0
    /// Bytes in memory now (payload plus overhead per batch).
    private(set) var memoryBytes = 0
    private(set) var memoryBytesPeak = 0

    private var fd: Int32 = -1
    /// Bytes of records written to the file (flushed or in `writeBuffer`), and read from it.
    private var fileWritten = 0
    private var fileRead = 0
    private var fileFlushed = 0
    /// The most bytes the file held at once, and batches that went to the file.
    private(set) var fileBytesPeak = 0
    private(set) var spilledBatches: UInt64 = 0
    private var writeBuffer: [UInt8] = []
    private var readBuffer: [UInt8] = []
    private var readBufferOffset = 0

    /// Bytes of records in the file now, not yet read (what counts against ``spillBytesMax``). Without the lock: the
    /// learner's restore reads it at `SCHED_IDLE`, and an idle-class thread preempted inside ``lock`` would hold up
    /// the feed thread's appends.
    var spilledBytes: Int { spilledNow.load(ordering: .relaxed) }
    private let spilledNow = Atomic<Int>(0)
    /// Batches held now.
    private var held = 0
    var count: Int { lock.withLock { held } }
    var isEmpty: Bool { count == 0 }
    /// Whether the spill file is open (tests: it closes with the stash).
    var hasFile: Bool { lock.withLock { fd >= 0 } }

    init(memoryBytesMax: Int, directory: String?, spillBytesMax: Int) {
        precondition(memoryBytesMax >= 1 && spillBytesMax >= 0, "a feed stash needs a positive memory bound")
        self.memoryBytesMax = memoryBytesMax
        self.directory = directory
        self.spillBytesMax = spillBytesMax
    }

    deinit { closeLocked() }

    /// Appends one batch; throws when neither memory nor the file (its bound, an I/O error) takes it.
    func append(index: UInt64, payload: [UInt8]) throws(SnapshotError) {
        try lock.withLock {
            Result { () throws(SnapshotError) in
                try appendLocked(index: index, payload: payload)
                lock.broadcast()
            }
        }.get()
    }

    /// Waits until the stash holds a batch or `deadlineNanos` (CLOCK_MONOTONIC) passed, or ``wake()`` was called;
    /// returns whether it holds one.
    func waitForBatch(untilNanos deadlineNanos: UInt64) -> Bool {
        lock.withLock {
            if held == 0 && !woken { _ = lock.wait(untilNanos: deadlineNanos) }
            woken = false
            return held > 0
        }
    }

    /// Ends a ``waitForBatch(untilNanos:)`` now (the feed thread ended).
    func wake() {
        lock.withLock {
            woken = true
            lock.broadcast()
        }
    }

    private var woken = false

    private func appendLocked(index: UInt64, payload: [UInt8]) throws(SnapshotError) {
        let cost = payload.count + Self.entryOverheadBytes
        let fileHasUnread = fileWritten > fileRead
        if !fileHasUnread && (memoryBytes == 0 || memoryBytes + cost <= memoryBytesMax) {
            memory.append((index, payload))
            memoryBytes += cost
            memoryBytesPeak = max(memoryBytesPeak, memoryBytes)
            held += 1
            return
        }
        guard let directory else {
            throw SnapshotError("the learner's feed backlog exceeded its memory bound (\(memoryBytesMax) bytes) and "
                + "the replica has no work directory to spill it to (Replica.Options.workDirectory)")
        }
        let record = Self.recordHeaderBytes + payload.count
        guard fileWritten - fileRead + record <= spillBytesMax else {
            throw SnapshotError("the learner's feed backlog exceeded its spill limit (learnerSpillBytesMax, "
                + "\(spillBytesMax) bytes in \(directory)): the restore is too slow for the load")
        }
        if fd < 0 { try openFile(in: directory) }
        withUnsafeBytes(of: index.littleEndian) { writeBuffer.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { writeBuffer.append(contentsOf: $0) }
        writeBuffer.append(contentsOf: payload)
        fileWritten += record
        spilledNow.store(fileWritten - fileRead, ordering: .relaxed)
        fileBytesPeak = max(fileBytesPeak, fileWritten - fileRead)
        spilledBatches += 1
        held += 1
        if writeBuffer.count >= Self.ioBufferBytes { try flush() }
    }

    /// The oldest batch; nil when the stash is empty.
    func popFirst() throws(SnapshotError) -> (index: UInt64, payload: [UInt8])? {
        try lock.withLock { Result { () throws(SnapshotError) in try popFirstLocked() } }.get()
    }

    private func popFirstLocked() throws(SnapshotError) -> (index: UInt64, payload: [UInt8])? {
        if memoryHead < memory.count {
            let entry = memory[memoryHead]
            memory[memoryHead].payload = []
            memoryHead += 1
            memoryBytes -= entry.payload.count + Self.entryOverheadBytes
            if memoryHead == memory.count {
                memory.removeAll(keepingCapacity: false)
                memoryHead = 0
            } else if memoryHead >= 4096 && memoryHead * 2 >= memory.count {
                memory.removeFirst(memoryHead)
                memoryHead = 0
            }
            held -= 1
            return entry
        }
        guard fileWritten > fileRead else { return nil }
        let header = try readFile(Self.recordHeaderBytes)
        var index: UInt64 = 0
        for shift in 0..<8 { index |= UInt64(header[shift]) << (8 * shift) }
        var length = 0
        for shift in 0..<4 { length |= Int(header[8 + shift]) << (8 * shift) }
        let payload = try readFile(length)
        fileRead += Self.recordHeaderBytes + length
        spilledNow.store(fileWritten - fileRead, ordering: .relaxed)
        held -= 1
        if fileRead == fileWritten {
            // Read to the end: start the file over (sequential writes from offset 0 again, its space freed).
            fileRead = 0
            fileWritten = 0
            fileFlushed = 0
            fileReadPosition = 0
            writeBuffer.removeAll(keepingCapacity: true)
            readBuffer = []
            readBufferOffset = 0
            if ftruncate(fd, 0) != 0 { throw SnapshotError("truncating the learner's spill file: errno \(errno)") }
        }
        return (index, payload)
    }

    /// Closes the file (its space is freed: it was unlinked at open) and forgets everything.
    func close() { lock.withLock { closeLocked() } }

    private func closeLocked() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
        memory = []
        memoryHead = 0
        memoryBytes = 0
        writeBuffer = []
        readBuffer = []
        readBufferOffset = 0
        fileWritten = 0
        fileRead = 0
        fileFlushed = 0
        fileReadPosition = 0
        spilledNow.store(0, ordering: .relaxed)
        held = 0
    }

    private func openFile(in directory: String) throws(SnapshotError) {
        var template = Array("\(directory)/ringcast-learner-feed-XXXXXX".utf8CString)
        let opened = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard opened >= 0 else {
            throw SnapshotError("cannot create the learner's spill file in \(directory): errno \(errno)")
        }
        // Unlinked at once: the file lives as long as the descriptor, never beyond the process.
        let path = String(cString: template.map { UInt8(bitPattern: $0) } + [0])
        if unlink(path) != 0 {
            let failed = errno
            Glibc.close(opened)
            throw SnapshotError("cannot unlink the learner's spill file \(path): errno \(failed)")
        }
        fd = opened
        writeBuffer.reserveCapacity(Self.ioBufferBytes + 64 << 10)
    }

    /// Writes the buffered records at the file's end.
    private func flush() throws(SnapshotError) {
        var offset = 0
        while offset < writeBuffer.count {
            let written = writeBuffer.withUnsafeBytes { raw in
                pwrite(fd, raw.baseAddress! + offset, raw.count - offset, off_t(fileFlushed + offset))
            }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                throw SnapshotError("writing the learner's spill file failed: errno \(errno) (disk full?)")
            }
            offset += written
        }
        fileFlushed += writeBuffer.count
        writeBuffer.removeAll(keepingCapacity: true)
    }

    /// `count` bytes at the read position (through the read buffer; what is still in the write buffer is flushed
    /// first).
    private func readFile(_ count: Int) throws(SnapshotError) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        while result.count < count {
            if readBufferOffset == readBuffer.count {
                try refill(from: fileReadPosition)
            }
            let take = min(count - result.count, readBuffer.count - readBufferOffset)
            result.append(contentsOf: readBuffer[readBufferOffset..<(readBufferOffset + take)])
            readBufferOffset += take
            fileReadPosition += take
        }
        return result
    }

    /// The file offset of the next unread byte (ahead of `fileRead`, which counts whole records).
    private var fileReadPosition = 0

    private func refill(from position: Int) throws(SnapshotError) {
        if position >= fileFlushed { try flush() }
        let wanted = min(Self.ioBufferBytes, fileFlushed - position)
        guard wanted > 0 else { throw SnapshotError("the learner's spill file ends early") }
        readBuffer = [UInt8](repeating: 0, count: wanted)
        var got = 0
        while got < wanted {
            let read = readBuffer.withUnsafeMutableBytes { raw in
                pread(fd, raw.baseAddress! + got, wanted - got, off_t(position + got))
            }
            if read < 0 && errno == EINTR { continue }
            guard read > 0 else { throw SnapshotError("reading the learner's spill file failed: errno \(errno)") }
            got += read
        }
        readBufferOffset = 0
    }
}
