import RingCastJSON
import Testing
@testable import RingCastBenchKit

/// What ringcast-bench makes of the nodes' `views`, `excluded` and `timeline` after faults: the merged view
/// changes, their timings, and recovery_ms, all from synthetic node outputs.
@Suite struct FaultAnalysisTests {
    static let t0: Int64 = 1_700_000_000_000_000_000
    static let ms: Int64 = 1_000_000

    static func view(_ id: Int, _ members: [Int], _ causes: [String], started: Int64, installed: Int64) -> NodeOutput.View {
        NodeOutput.View(viewID: id, members: members, causes: causes, changeStartedUnixNanos: started, installedUnixNanos: installed)
    }

    static let initial = view(1, [0, 1, 2, 3, 4], ["initial"], started: 0, installed: t0)

    static func node(_ id: Int, views: [NodeOutput.View]? = nil, excluded: Bool = false,
                     timeline: NodeOutput.Timeline? = nil, mbit: Double = 100) -> NodeOutput {
        NodeOutput(id: id, deliveredMessages: 10, deliveredBytes: 100_000, throughputMbitPerSecond: mbit,
                   totalDelivered: 10, orderDigest: "d", views: views, excluded: excluded, timeline: timeline)
    }

    // MARK: the node's JSON

    @Test func viewsExcludedAndTimelineAreRead() throws {
        let output = try NodeOutput.parse(stdout: """
        {"id": 1, "delivered_messages": 3, "delivered_bytes": 30, "throughput_mbit_s": 1.5, "excluded": true,
         "views": [{"view_id": 1, "members": [0,1,2], "causes": ["initial"], "change_started_unix_ns": 0, "installed_unix_ns": 1700000000000000000},
                   {"view_id": 2, "members": [0,1], "causes": ["link_lost 2"], "change_started_unix_ns": 1700000001000000000, "installed_unix_ns": 1700000001050000000}],
         "timeline": {"bucket_ms": 50, "start_unix_ns": 1700000000000000000, "delivered_bytes": [0, 10, 20]}}
        """)
        #expect(output.excluded)
        #expect(output.views?.count == 2)
        #expect(output.views?[1] == Self.view(2, [0, 1], ["link_lost 2"], started: 1_700_000_001_000_000_000, installed: 1_700_000_001_050_000_000))
        #expect(output.views?[0].isInitial == true && output.views?[1].isInitial == false)
        #expect(output.timeline == NodeOutput.Timeline(bucketMillis: 50, startUnixNanos: 1_700_000_000_000_000_000, deliveredBytes: [0, 10, 20]))
        // An old node without these fields is still read.
        let old = try NodeOutput.parse(stdout: #"{"id": 0, "delivered_messages": 1, "delivered_bytes": 1, "throughput_mbit_s": 1}"#)
        #expect(old.views == nil && !old.excluded && old.timeline == nil)
    }

    @Test(arguments: [
        (#""views": [{"view_id": 2, "members": [0], "causes": ["x"], "change_started_unix_ns": 1}]"#, "views[0]: missing or bad 'installed_unix_ns'"),
        (#""views": {"view_id": 2}"#, "'views' is not a list"),
        (#""excluded": "yes""#, "'excluded' is not true or false"),
        (#""timeline": {"bucket_ms": 0, "start_unix_ns": 1, "delivered_bytes": []}"#, "bad 'bucket_ms'"),
        (#""timeline": {"bucket_ms": 50, "start_unix_ns": 1, "delivered_bytes": [1, -2]}"#, "non-negative integers"),
    ])
    func malformedFaultFieldsAreRefused(field: String, message: String) {
        let text = #"{"id": 0, "delivered_messages": 1, "delivered_bytes": 1, "throughput_mbit_s": 1, "# + field + "}"
        #expect {
            _ = try NodeOutput.parse(stdout: text)
        } throws: { error in
            (error as? NodeOutputError)?.description.contains(message) == true
        }
    }

    // MARK: merging view changes

    @Test func killedNodeGivesOneChangeWithMedianTimes() throws {
        let kill = InjectedFault(fault: Fault(kind: .kill, nodeID: 2, atSeconds: 1), unixNanos: Self.t0 + 1000 * Self.ms)
        // Detection started 210, 230, 250 and 270 ms after the kill; installed at 300, 310, 320, 330 ms.
        let survivors = [0, 1, 3, 4].enumerated().map { index, id in
            Self.node(id, views: [Self.initial,
                                  Self.view(2, [0, 1, 3, 4], [index == 3 ? "silent 2" : "link_lost 2"],
                                            started: Self.t0 + Int64(1210 + 20 * index) * Self.ms,
                                            installed: Self.t0 + Int64(1300 + 10 * index) * Self.ms)])
        }
        let merged = ViewChanges.merge(survivors: survivors, faults: [kill], requireViews: true)
        #expect(merged.agreed && merged.notes.isEmpty)
        let change = try #require(merged.changes.first)
        #expect(merged.changes.count == 1)
        #expect(change.viewID == 2 && change.members == [0, 1, 3, 4])
        #expect(change.cause == "link_lost 2, silent 2")
        #expect(change.detectToViewMillis == 75)  // per node 90, 80, 70, 60 → median 75
        #expect(change.faultToViewMillis == 315)  // median install 1315 ms − kill at 1000 ms
        #expect(change.fault == kill.fault && change.attribution == "cause")
        #expect(change.installedBy == [0, 1, 3, 4] && change.installSpreadMillis == 30)
    }

    @Test func disagreeingMembersAreAProblem() {
        let views = { (members: [Int]) in [Self.initial, Self.view(2, members, ["link_lost 2"], started: Self.t0 + 5, installed: Self.t0 + 9)] }
        let merged = ViewChanges.merge(survivors: [Self.node(0, views: views([0, 1, 3, 4])), Self.node(1, views: views([0, 1, 3])),
                                                   Self.node(3, views: views([0, 1, 3, 4]))],
                                       faults: [], requireViews: true)
        #expect(!merged.agreed)
        #expect(merged.problems == ["view 2: node 0 has members [0, 1, 3, 4], node 1 has [0, 1, 3]"])
    }

    @Test func missingViewsOnlyMatterWithFaults() {
        #expect(ViewChanges.merge(survivors: [Self.node(0)], faults: [], requireViews: false).agreed)
        let merged = ViewChanges.merge(survivors: [Self.node(0)], faults: [], requireViews: true)
        #expect(merged.problems == ["node 0 reported no 'views'"])
    }

    @Test func attributionFallsBackToTimeAndLeavesFalseSuspicionsUnexplained() throws {
        let partition = InjectedFault(fault: Fault(kind: .partition, nodeID: 3, atSeconds: 1), unixNanos: Self.t0 + 1000 * Self.ms)
        let views = [Self.initial,
                     // A round timeout named by the node that noticed, not the partitioned one: attributed by time.
                     Self.view(2, [0, 1, 2, 4], ["round_timeout 1"], started: Self.t0 + 1200 * Self.ms, installed: Self.t0 + 1400 * Self.ms),
                     Self.view(3, [0, 1, 2, 4], ["silent 4"], started: Self.t0 + 500 * Self.ms, installed: Self.t0 + 600 * Self.ms)]
        // (view 3 is out of time order on purpose: a change that started before any fault has no fault to blame)
        let merged = ViewChanges.merge(survivors: [Self.node(0, views: views)], faults: [partition], requireViews: true)
        #expect(merged.changes.count == 2)
        #expect(merged.changes[0].fault == partition.fault && merged.changes[0].attribution == "time")
        #expect(merged.changes[0].faultToViewMillis == 400)
        #expect(merged.changes[1].fault == nil && merged.changes[1].faultToViewMillis == nil)
    }

    /// Nodes finishing their cool-down at different times leave the group: not the faults' doing, however late.
    @Test func changesLongAfterAFaultOrAfterTheMeasurementAreNotAttributed() throws {
        let kill = InjectedFault(fault: Fault(kind: .kill, nodeID: 3, atSeconds: 2), unixNanos: Self.t0 + 2000 * Self.ms)
        let views = [Self.initial,
                     Self.view(2, [0, 1, 2, 4], ["link_lost 3"], started: Self.t0 + 2100 * Self.ms, installed: Self.t0 + 2300 * Self.ms),
                     Self.view(3, [1, 2, 4], ["silent 0"], started: Self.t0 + 3500 * Self.ms, installed: Self.t0 + 3600 * Self.ms),
                     Self.view(4, [2, 4], ["link_lost 1"], started: Self.t0 + 5000 * Self.ms, installed: Self.t0 + 5010 * Self.ms),
                     Self.view(5, [4], ["link_lost 2"], started: Self.t0 + 7500 * Self.ms, installed: Self.t0 + 7510 * Self.ms)]
        let merged = ViewChanges.merge(survivors: [Self.node(4, views: views)], faults: [kill], requireViews: true,
                                       measurementEndUnixNanos: Self.t0 + 7000 * Self.ms)
        #expect(merged.changes.map(\.fault) == [kill.fault, kill.fault, nil, nil])
        #expect(merged.changes.map(\.attribution) == ["cause", "time", nil, nil])  // 1.5 s after: a consequence; 3 s: not
        #expect(merged.changes.map(\.duringMeasurement) == [true, true, true, false])
    }

    @Test func aJoinerAndANodeStillInTheViewAreNoted() {
        let join = InjectedFault(fault: Fault(kind: .join, nodeID: 5, atSeconds: 1), unixNanos: Self.t0 + 1000 * Self.ms)
        let kill = InjectedFault(fault: Fault(kind: .kill, nodeID: 2, atSeconds: 2), unixNanos: Self.t0 + 2000 * Self.ms)
        let joined = Self.view(2, [0, 1, 2, 3, 4, 5], ["joined 5"], started: Self.t0 + 1100 * Self.ms, installed: Self.t0 + 1250 * Self.ms)
        let merged = ViewChanges.merge(
            survivors: [Self.node(0, views: [Self.initial, joined]), Self.node(5, views: [joined])],
            faults: [join, kill], requireViews: true)
        #expect(merged.agreed)
        #expect(merged.changes.count == 1 && merged.changes[0].faultToViewMillis == 250 && merged.changes[0].fault == join.fault)
        #expect(merged.notes == ["node 2 (kill 2@2) is still a member of the survivors' last view 2"])
    }

    @Test func medianOfEvenAndOddCounts() {
        #expect(ViewChanges.median([]) == nil)
        #expect(ViewChanges.median([3, 1, 2]) == 2)
        #expect(ViewChanges.median([4, 1, 3, 2]) == 2.5)
    }

    // MARK: recovery_ms

    /// 50 ms buckets from t0: 100 kB each for 2 s (16 Mbit/s), nothing for `stallBuckets`, then `after` kB.
    static func timeline(stallBuckets: Int, after: Int64, totalBuckets: Int = 100, start: Int64 = t0) -> NodeOutput.Timeline {
        NodeOutput.Timeline(bucketMillis: 50, startUnixNanos: start, deliveredBytes: (0..<totalBuckets).map {
            $0 < 40 ? 100_000 : $0 < 40 + stallBuckets ? 0 : after
        })
    }

    @Test func section2_6_recoveryAfterAStallIsTheFirstFullWindowBack() throws {
        let series = try #require(Recovery.sum([Self.timeline(stallBuckets: 6, after: 100_000)]))
        let result = Recovery.compute(series: series, firstFaultUnixNanos: Self.t0 + 2000 * Self.ms,
                                      lastFaultUnixNanos: Self.t0 + 2000 * Self.ms, measurementEndUnixNanos: Self.t0 + 5000 * Self.ms)
        #expect(result.status == .recovered)
        #expect(result.baselineMbitPerSecond == 16)
        // Buckets 40…45 are empty. The trailing 500 ms mean at boundary b covers buckets b−10…b−1: it is back
        // (and stays) once no empty bucket is in it, at b = 56, 800 ms after the fault at boundary 40.
        #expect(result.millis == 800)
    }

    @Test func aFasterReturnCountsSooner() throws {
        // After the stall 120 kB a bucket, as when each survivor's share grows: a trailing window with two empty
        // buckets and eight full ones averages 96 kB ≥ 95 kB, so it is back at b = 54, 700 ms after the fault.
        let series = try #require(Recovery.sum([Self.timeline(stallBuckets: 6, after: 120_000)]))
        let result = Recovery.compute(series: series, firstFaultUnixNanos: Self.t0 + 2000 * Self.ms,
                                      lastFaultUnixNanos: Self.t0 + 2000 * Self.ms, measurementEndUnixNanos: Self.t0 + 5000 * Self.ms)
        #expect(result.millis == 700)
    }

    /// A view change flushes the old view's backlog in a burst and may stall again while the ring reconnects:
    /// the burst must not pass for a recovery.
    @Test func aBurstBetweenTwoStallsIsNotARecovery() throws {
        var buckets: [Int64] = Array(repeating: 100_000, count: 40) + [0, 0, 0, 1_000_000, 1_000_000] + Array(repeating: 0, count: 5)
        buckets += Array(repeating: 100_000, count: 50)
        let series = try #require(Recovery.sum([NodeOutput.Timeline(bucketMillis: 50, startUnixNanos: Self.t0, deliveredBytes: buckets)]))
        let result = Recovery.compute(series: series, firstFaultUnixNanos: Self.t0 + 2000 * Self.ms,
                                      lastFaultUnixNanos: Self.t0 + 2000 * Self.ms, measurementEndUnixNanos: Self.t0 + 5000 * Self.ms)
        // The last empty bucket is 49; the trailing mean holds from b = 60 (buckets 50…59 all full) on: 1000 ms.
        #expect(result.millis == 1000, "\(result)")
    }

    @Test func neverBackIsNotRecoveredAndNoDipIsZero() throws {
        let stalled = try #require(Recovery.sum([Self.timeline(stallBuckets: 60, after: 0)]))
        let fault = Self.t0 + 2000 * Self.ms
        let never = Recovery.compute(series: stalled, firstFaultUnixNanos: fault, lastFaultUnixNanos: fault,
                                     measurementEndUnixNanos: Self.t0 + 5000 * Self.ms)
        #expect(never.status == .notRecovered && never.millis == nil && never.detail.contains("did not stay at ≥ 95 %"))
        let steady = try #require(Recovery.sum([Self.timeline(stallBuckets: 0, after: 100_000)]))
        let none = Recovery.compute(series: steady, firstFaultUnixNanos: fault, lastFaultUnixNanos: fault,
                                    measurementEndUnixNanos: Self.t0 + 5000 * Self.ms)
        #expect(none.status == .recovered && none.millis == 0 && none.detail.contains("never fell below"))
    }

    @Test func aRecoveryCutShortByTheEndOfTheMeasurementIsUnknown() throws {
        let series = try #require(Recovery.sum([Self.timeline(stallBuckets: 6, after: 100_000)]))
        let fault = Self.t0 + 2000 * Self.ms
        // Back at b = 56 (2.8 s), but the measurement ends at 3.2 s: held 400 ms, not 1000.
        let cut = Recovery.compute(series: series, firstFaultUnixNanos: fault, lastFaultUnixNanos: fault,
                                   measurementEndUnixNanos: Self.t0 + 3200 * Self.ms)
        #expect(cut.status == .unknown && cut.millis == nil)
        #expect(cut.detail == "back 800 ms after the fault, but the measurement ended 400 ms later, before it held for 1000 ms (lengthen --duration)")
        let steady = try #require(Recovery.sum([Self.timeline(stallBuckets: 0, after: 100_000)]))
        let short = Recovery.compute(series: steady, firstFaultUnixNanos: fault, lastFaultUnixNanos: fault,
                                     measurementEndUnixNanos: Self.t0 + 2300 * Self.ms)
        #expect(short.status == .recovered && short.millis == 0 && short.detail.contains("seen for 300 ms only"))
    }

    @Test func tooLittleMeasurementAfterTheLastFaultIsWarned() throws {
        let config = try BenchCommand.parse(["--duration", "3", "--kill", "2@2"]).makeConfiguration()
        #expect(config.warnings == ["the measurement ends 1 s after the last fault; recovery_ms needs 1.5 s there " +
                                    "(a 500 ms window held for 1000 ms): lengthen --duration"])
        #expect(try BenchCommand.parse(["--duration", "4", "--kill", "2@2"]).makeConfiguration().warnings.isEmpty)
    }

    @Test func recoveryWaitsForTheLastFaultAndNeedsABaseline() throws {
        let series = try #require(Recovery.sum([Self.timeline(stallBuckets: 2, after: 100_000)]))
        // A second fault at 2.5 s (boundary 50): the held run may only start there. The trailing window still
        // holds the empty bucket 41 until b = 52, so it is back 600 ms after the first fault.
        let result = Recovery.compute(series: series, firstFaultUnixNanos: Self.t0 + 2000 * Self.ms,
                                      lastFaultUnixNanos: Self.t0 + 2500 * Self.ms, measurementEndUnixNanos: Self.t0 + 5000 * Self.ms)
        #expect(result.millis == 600)
        let early = Recovery.compute(series: series, firstFaultUnixNanos: Self.t0 + 300 * Self.ms,
                                     lastFaultUnixNanos: Self.t0 + 300 * Self.ms, measurementEndUnixNanos: Self.t0 + 5000 * Self.ms)
        #expect(early.status == .unknown && early.detail.contains("baseline"))
    }

    @Test func timelinesAreSummedAlignedByTheirStart() throws {
        let a = NodeOutput.Timeline(bucketMillis: 50, startUnixNanos: Self.t0, deliveredBytes: [100, 100])
        let b = NodeOutput.Timeline(bucketMillis: 50, startUnixNanos: Self.t0 + 25 * Self.ms, deliveredBytes: [50, 50])
        let series = try #require(Recovery.sum([b, a]))
        #expect(series.originUnixNanos == Self.t0 && series.bucketNanos == 50 * Self.ms)
        #expect(series.bytes == [125, 150, 25])
        #expect(series.bytes(from: Self.t0 + 25 * Self.ms, to: Self.t0 + 75 * Self.ms) == 137.5)
        #expect(Recovery.sum([a, NodeOutput.Timeline(bucketMillis: 100, startUnixNanos: Self.t0, deliveredBytes: [1])]) == nil)
        #expect(Recovery.sum([]) == nil)
    }

    // MARK: the result

    static func faultConfig() throws -> BenchConfiguration {
        try BenchCommand.parse(["--nodes", "5", "--duration", "5", "--kill", "2@1", "--raw-link-duration", "0"]).makeConfiguration()
    }

    @Test func resultWithAKillReportsSurvivorsViewChangesAndRecovery() throws {
        let config = try Self.faultConfig()
        let measurementStart = Self.t0 + 1000 * Self.ms
        let kill = InjectedFault(fault: config.faults[0], unixNanos: measurementStart + 1000 * Self.ms, lateMillis: 2)
        let record = FaultRecord(injected: [kill], measurementStartUnixNanos: measurementStart,
                                 measurementEndUnixNanos: measurementStart + 5000 * Self.ms)
        let change = Self.view(2, [0, 1, 3, 4], ["link_lost 2"], started: kill.unixNanos + 10 * Self.ms, installed: kill.unixNanos + 60 * Self.ms)
        let nodes = [0, 1, 3, 4].map {
            Self.node($0, views: [Self.initial, change], timeline: Self.timeline(stallBuckets: 3, after: 100_000, totalBuckets: 160))
        }
        let result = BenchResult(config: config, placementDescription: "test", nodes: nodes, rawLink: nil, deliveryLog: nil,
                                 elapsedSeconds: 1, faults: record)
        #expect(result.survivors.map(\.id) == [0, 1, 3, 4])
        #expect(result.viewsAgreed && result.orderAgreed)
        #expect(result.recovery.status == .recovered && result.recovery.millis == 650)  // buckets 40…42 empty: back at 53
        let json = try JSONValue.parse(result.json.text)
        guard case .array(let changes)? = json["view_changes"] else { Issue.record("no view_changes"); return }
        #expect(changes.count == 1)
        #expect(changes[0]["view_id"] == .integer(2) && changes[0]["cause"] == .string("link_lost 2"))
        #expect(changes[0]["members"] == .array([.integer(0), .integer(1), .integer(3), .integer(4)]))
        #expect(changes[0]["detect_to_view_ms"]?.doubleValue == 50 && changes[0]["fault_to_view_ms"]?.doubleValue == 60)
        #expect(json["recovery_ms"]?.doubleValue == 650 && json["recovery_status"] == .string("recovered"))
        #expect(json["recovery_window_ms"] == .integer(500) && json["recovery_hold_ms"] == .integer(1000))
        #expect(json["killed"] == .array([.integer(2)]) && json["views_agreed"] == .bool(true))
        #expect(json["faults"].map { "\($0)" }?.contains("kill") == true)
        #expect(result.table.contains("view 2 [0, 1, 3, 4] (link_lost 2): detect→view 50 ms, fault→view 60 ms after kill 2@1"))
        #expect(result.table.contains("recovery           650 ms after the first fault"))
        #expect(result.table.contains("killed: no report"))
    }

    /// A recorder out of buckets adds later deliveries to its last one; that spike must not pass for a recovery.
    @Test func aTimelineEndingInAClampedSpikeDoesNotFakeARecovery() throws {
        let config = try Self.faultConfig()
        let measurementStart = Self.t0 + 1000 * Self.ms
        let kill = InjectedFault(fault: config.faults[0], unixNanos: measurementStart + 1000 * Self.ms)
        let record = FaultRecord(injected: [kill], measurementStartUnixNanos: measurementStart,
                                 measurementEndUnixNanos: measurementStart + 5000 * Self.ms)
        var short = Self.timeline(stallBuckets: 200, after: 0, totalBuckets: 70)
        short.deliveredBytes[69] = 50_000_000
        let nodes = [Self.node(0, views: [Self.initial], timeline: short),
                     Self.node(1, views: [Self.initial], timeline: Self.timeline(stallBuckets: 200, after: 0, totalBuckets: 160))]
        let result = BenchResult(config: config, placementDescription: "test", nodes: nodes, rawLink: nil, deliveryLog: nil,
                                 elapsedSeconds: 1, faults: record)
        #expect(result.recovery.status == .notRecovered, "\(result.recovery)")
    }

    @Test func resultWithoutFaultsKeepsTheEmptyFields() throws {
        let config = try BenchCommand.parse(["--nodes", "2", "--raw-link-duration", "0"]).makeConfiguration()
        let result = BenchResult(config: config, placementDescription: "test", nodes: [Self.node(0), Self.node(1)],
                                 rawLink: nil, deliveryLog: nil, elapsedSeconds: 1)
        let json = result.json
        #expect(json["view_changes"] == .array([]) && json["recovery_ms"] == .null)
        #expect(json["recovery_status"] == .string("no faults") && json["views_agreed"] == .bool(true))
        #expect(!result.table.contains("view changes"))
    }

    @Test func excludedNodesAreNotSurvivorsAndAMissingSurvivorViewFailsViews() throws {
        let config = try Self.faultConfig()
        let kill = InjectedFault(fault: config.faults[0], unixNanos: Self.t0)
        let nodes = [Self.node(0, views: [Self.initial], mbit: 90), Self.node(1, views: [Self.initial], excluded: true, mbit: 10),
                     Self.node(3, mbit: 80)]
        let result = BenchResult(config: config, placementDescription: "test", nodes: nodes, rawLink: nil, deliveryLog: nil,
                                 elapsedSeconds: 1, faults: FaultRecord(injected: [kill]))
        #expect(result.survivors.map(\.id) == [0, 3] && result.excludedIDs == [1])
        #expect(result.meanThroughputMbitPerSecond == 85)
        #expect(!result.viewsAgreed && result.views.problems == ["node 3 reported no 'views'"])
        #expect(result.recovery.status == .unknown)
    }
}
