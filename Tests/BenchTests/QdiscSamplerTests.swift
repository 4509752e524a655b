@testable import RingCastBenchKit
import Testing

@Suite("LAN queue sampling (tc -s qdisc)")
struct QdiscSamplerTests {
    static let sample = """

        netns: rcb-sw
        qdisc noqueue 0: dev lo root refcnt 2
         Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0)
         backlog 0b 0p requeues 0
        qdisc tbf 1: dev h1 root refcnt 3 rate 100Mbit burst 64Kb lat 5.2ms
         Sent 1000 bytes 10 pkt (dropped 0, overlimits 0 requeues 0)
         backlog 3028b 2p requeues 0
        qdisc tbf 1: dev h2 root refcnt 3 rate 100Mbit burst 64Kb lat 5.2ms
         Sent 1000 bytes 10 pkt (dropped 0, overlimits 0 requeues 0)
         backlog 0b 0p requeues 0

        netns: rcb-h1
        qdisc tbf 1: dev eth0 root refcnt 3 rate 100Mbit burst 64Kb lat 83.9ms
         Sent 123764598 bytes 81774 pkt (dropped 0, overlimits 163182 requeues 0)
         backlog 95382b 63p requeues 0

        netns: other-h1
        qdisc tbf 1: dev eth0 root refcnt 3 rate 100Mbit burst 64Kb lat 83.9ms
         Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0)
         backlog 7777b 5p requeues 0

        netns: rcb-h2
        Cannot find device "eth0"
        """

    @Test func parsesEveryShapingQueueWithItsNamespaceAndDevice() {
        let entries = QdiscSampler.parse(Self.sample, prefix: "rcb")
        #expect(entries.map(\.namespace) == ["rcb-sw", "rcb-sw", "rcb-h1", "other-h1"])
        #expect(entries.map(\.device) == ["h1", "h2", "eth0", "eth0"])
        #expect(entries.map(\.backlogBytes) == [3028, 0, 95382, 7777])
    }

    @Test func keepsOnlyThisLANsHostsAndSwitchPorts() {
        let sampler = QdiscSampler(prefix: "rcb", workDirectory: "/tmp")
        sampler.add(QdiscSampler.parse(Self.sample, prefix: "rcb"))
        sampler.add(QdiscSampler.parse(Self.sample.replacingOccurrences(of: "95382b", with: "4618b"), prefix: "rcb"))
        #expect(sampler.upload.keys.sorted() == [1])
        #expect(sampler.upload[1]?.samples == 2)
        #expect(sampler.upload[1]?.meanBytes == 50_000)
        #expect(sampler.upload[1]?.backlogBytesMax == 95382)
        #expect(sampler.download.keys.sorted() == [1, 2])
        // 50 000 bytes queued at 100 Mbit/s hold every frame that passes for 4 ms.
        guard case .object(let fields) = sampler.json(rateMbit: 100), case .array(let hosts)? = fields.first?.1,
              case .object(let host)? = hosts.first, let delay = host.first(where: { $0.0 == "delay_ms_mean" })?.1 else {
            Issue.record("no host_upload entry in \(sampler.json(rateMbit: 100).text)")
            return
        }
        #expect(delay == .number(4))
    }
}
