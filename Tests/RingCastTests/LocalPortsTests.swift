import RingCastLocalPorts
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The port pools of local clusters (`LocalPorts`): outside the kernel's ephemeral range, which outgoing connects
/// draw from (CI lost a ring member's port to one on 2026-12-07), and never the same port twice in one process.
@Suite("Loopback ports for local clusters (LocalPorts)")
struct LocalPortsTests {
    @Test(arguments: [LocalPorts.Pool.tests, .tools])
    func runsAreConsecutiveBindableOutsideTheEphemeralRangeAndNeverRepeat(pool: LocalPorts.Pool) throws {
        var seen = Set<Int>()
        for run in [1, 2, 3] {
            let firsts = try #require(LocalPorts.free(count: 40, run: run, pool: pool))
            #expect(firsts.count == 40)
            for first in firsts {
                for port in Int(first)..<Int(first) + run {
                    #expect(pool.range.contains(port), "\(port) is outside \(pool.range)")
                    #expect(!LocalPorts.ephemeralRange.contains(port), "\(port) is an ephemeral port")
                    #expect(seen.insert(port).inserted, "\(port) was handed out twice")
                }
            }
        }
    }

    @Test func thePoolsDoNotOverlap() {
        #expect(!LocalPorts.Pool.tests.range.overlaps(LocalPorts.Pool.tools.range))
        #expect(LocalPorts.Pool.tests.range.count >= 10_000 && LocalPorts.Pool.tools.range.count >= 1_000)
    }

    @Test func theBlockOfAHandedOutPortIsClaimedByThisProcess() throws {
        // Another process (here: another open file description) cannot claim the block while this one lives.
        let port = try #require(LocalPorts.free(count: 1, pool: .tools)?.first)
        let block = (Int(port) - LocalPorts.Pool.tools.range.lowerBound) / LocalPorts.blockPorts
        let fd = open("\(LocalPorts.lockDirectory)/tools-\(block).lock", O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0, "the block's lock file exists")
        defer { close(fd) }
        #expect(flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK)
    }

    /// A port that cannot be bound when its turn comes is skipped, not handed out. (Checked this way rather than by
    /// binding every handed-out port afterwards: another process may take any port after the pick, and one full
    /// test run saw that happen to a port of the tools pool.)
    @Test func aHeldPortIsSkipped() throws {
        let first = try #require(LocalPorts.free(count: 1, pool: .tests)?.first)
        let held = first + 1 // the next candidate, unless another test of this process takes a port meanwhile
        let (fd, _) = try RawControlTCP.listen(backlog: 1, port: held)
        defer { close(fd) }
        let next = try #require(LocalPorts.free(count: LocalPorts.blockPorts, pool: .tests))
        #expect(!next.contains(held), "the held port \(held) was handed out")
    }

    @Test func aPortSomeoneHoldsIsNotBindable() throws {
        // The pick skips a held port; the check it relies on must see one.
        let (fd, port) = try RawControlTCP.listen(backlog: 1)
        defer { close(fd) }
        #expect(!LocalPorts.isBindable(port))
    }
}
