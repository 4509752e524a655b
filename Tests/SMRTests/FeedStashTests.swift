import Foundation
@testable import RingCastSMR
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory for a test, removed (with what is left in it) by `remove()`.
struct ScratchDirectory {
    let path: String

    init() throws {
        // No double slash: the path must be a prefix of what /proc/self/fd's links name.
        var base = NSTemporaryDirectory()
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        var template = Array("\(base)/ringcast-smr-test-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SnapshotError("mkdtemp failed: errno \(errno)")
        }
        path = String(cString: made)
    }

    /// Names in the directory.
    var entries: [String] { (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] }

    /// This process's open descriptors on files in the directory (an unlinked file shows as "… (deleted)").
    var openDescriptors: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return names.compactMap { name in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(name)"),
                  target.hasPrefix(path + "/") else { return nil }
            return target
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// The learner's feed backlog (FeedStash.swift): memory first, the rest spilled to an unlinked file, in order,
/// bounded, with clear errors.
@Suite struct FeedStashTests {
    /// A payload that names its batch: filled with a byte of the index (a memset, cheap: these tests run on Swift's
    /// cooperative pool beside the other suites, and a slow synchronous test starves their clients), its first
    /// bytes the index itself.
    private func payload(_ index: UInt64, bytes: Int) -> [UInt8] {
        var result = [UInt8](repeating: UInt8(truncatingIfNeeded: index &* 31), count: bytes)
        for shift in 0..<min(8, bytes) { result[shift] = UInt8(truncatingIfNeeded: index >> (8 * UInt64(shift))) }
        return result
    }

    /// Appends and pops interleaved across the memory bound: every batch comes back once, in order, with its index;
    /// the file was used, is invisible in the directory (unlinked at open), and its descriptor closes with the stash.
    @Test func spillsBeyondMemoryAndKeepsOrder() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let stash = FeedStash(memoryBytesMax: 4_096, directory: directory.path, spillBytesMax: 64 << 20)
        var next: UInt64 = 1
        var expected: UInt64 = 1
        // Sizes across the I/O buffer (256 KiB) too: a record larger than the buffer, many small ones.
        let sizes = [10, 1_000, 3_000, 300_000, 50, 70_000, 1, 0, 5_000]
        for round in 0..<24 {
            for _ in 0..<(round % 7 + 1) {
                try stash.append(index: next, payload: payload(next, bytes: sizes[Int(next) % sizes.count]))
                next += 1
            }
            for _ in 0..<(round % 5) {
                guard let entry = try stash.popFirst() else { break }
                #expect(entry.index == expected)
                #expect(entry.payload == payload(expected, bytes: sizes[Int(expected) % sizes.count]))
                expected += 1
            }
            #expect(stash.count == Int(next - expected))
        }
        #expect(stash.hasFile && stash.spilledBatches > 0, "nothing was spilled")
        #expect(stash.spilledBytes > 0 && stash.spilledBytes <= stash.fileBytesPeak)
        #expect(stash.memoryBytesPeak <= 4_096 + 300_000 + FeedStash.entryOverheadBytes)
        #expect(directory.entries.isEmpty, "the spill file is unlinked at once: \(directory.entries)")
        #expect(directory.openDescriptors.count == 1, "\(directory.openDescriptors)")
        while let entry = try stash.popFirst() {
            #expect(entry.index == expected)
            #expect(entry.payload == payload(expected, bytes: sizes[Int(expected) % sizes.count]))
            expected += 1
        }
        #expect(expected == next && stash.isEmpty)
        #expect(stash.spilledBytes == 0)
        // Drained: the next batches go to memory again (the file was truncated, not grown).
        let spilled = stash.spilledBatches
        try stash.append(index: next, payload: payload(next, bytes: 100))
        #expect(stash.spilledBatches == spilled)
        #expect(try stash.popFirst()?.index == next)
        stash.close()
        #expect(directory.openDescriptors.isEmpty, "the spill file's descriptor outlived the stash")
        #expect(directory.entries.isEmpty)
    }

    /// The spill limit: the batch that would exceed it throws a clear error and is not kept; what was kept still
    /// comes back in order.
    @Test func spillLimitThrowsAClearError() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let stash = FeedStash(memoryBytesMax: 4_096, directory: directory.path, spillBytesMax: 10_000)
        var appended: UInt64 = 0
        var failure: SnapshotError?
        for index in UInt64(1)...100 {
            do {
                try stash.append(index: index, payload: payload(index, bytes: 1_000))
                appended = index
            } catch {
                failure = error
                break
            }
        }
        let error = try #require(failure, "the limit never threw")
        #expect(error.reason.contains("spill limit") && error.reason.contains("10000"), "\(error.reason)")
        #expect(appended >= 3 && appended < 100)
        #expect(stash.count == Int(appended))
        for index in UInt64(1)...appended { #expect(try stash.popFirst()?.index == index) }
        #expect(try stash.popFirst() == nil)
        stash.close()
        #expect(directory.openDescriptors.isEmpty && directory.entries.isEmpty)
    }

    /// Without a work directory the stash is memory only: beyond its bound a clear error names the option.
    @Test func withoutDirectoryTheMemoryBoundThrows() throws {
        let stash = FeedStash(memoryBytesMax: 4_096, directory: nil, spillBytesMax: 0)
        try stash.append(index: 1, payload: [UInt8](repeating: 1, count: 10_000)) // one batch into an empty stash
        #expect(throws: SnapshotError.self) { try stash.append(index: 2, payload: [1]) }
        do {
            try stash.append(index: 2, payload: [1])
        } catch {
            #expect(error.reason.contains("workDirectory"), "\(error.reason)")
        }
        #expect(try stash.popFirst()?.index == 1)
        #expect(stash.isEmpty)
    }

    /// A directory that does not exist: the first spill throws (the learner's attempt fails), nothing is created.
    @Test func missingDirectoryThrows() throws {
        let stash = FeedStash(memoryBytesMax: 4_096, directory: "/nonexistent-ringcast-dir", spillBytesMax: 1 << 20)
        try stash.append(index: 1, payload: [UInt8](repeating: 1, count: 4_000))
        do {
            try stash.append(index: 2, payload: [UInt8](repeating: 2, count: 4_000))
            Issue.record("spilling into a missing directory did not throw")
        } catch {
            #expect(error.reason.contains("cannot create the learner's spill file"), "\(error.reason)")
        }
        #expect(!stash.hasFile)
    }
}
