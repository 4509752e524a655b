import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import RingCastBenchKit
import Testing

/// The SVG writer (`SVGPlot`), `ringcast-bench --plot` and `ringcast-bench plot`: the pictures are checked by what they
/// contain (parsed as XML: axes, lines, markers, labels) and by `rsvg-convert` rendering them to a PNG of the right
/// size, never pixel by pixel.
@Suite("Plots: SVG writer, --plot, rendered with rsvg-convert", .serialized)
struct PlotTests {
    /// rsvg-convert from Debian's librsvg2-bin (tools/setup-deps installs it).
    static let rsvgConvert = ["/usr/bin/rsvg-convert", "/usr/local/bin/rsvg-convert"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// The elements of an SVG document: name and attributes, plus the text inside `<text>`.
    final class Elements: NSObject, XMLParserDelegate {
        struct Element {
            let name: String
            let attributes: [String: String]
            var text = ""
        }
        var all: [Element] = []
        private var open: [Int] = []

        static func parse(_ svg: String) throws -> [Element] {
            let parser = XMLParser(data: Data(svg.utf8))
            let elements = Elements()
            parser.delegate = elements
            guard parser.parse() else { throw PlotTestError("the SVG is not well-formed XML: \(parser.parserError.map { "\($0)" } ?? "?")") }
            return elements.all
        }

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            all.append(Element(name: name, attributes: attributes))
            open.append(all.count - 1)
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if let index = open.last { all[index].text += string }
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            open.removeLast()
        }
    }

    struct PlotTestError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Runs `body` (seconds of blocking: a child process) on a thread of its own, so that it does not hold one of the
    /// few threads of the cooperative pool that the async tests of other suites run on.
    static func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    /// Renders `svg` with rsvg-convert and returns the PNG's width and height (from its IHDR chunk).
    static func render(_ svg: String) throws -> (width: Int, height: Int) {
        let directory = NSTemporaryDirectory() + "ringcast-plot-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try svg.write(toFile: directory + "/plot.svg", atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: rsvgConvert!)
        process.arguments = ["-o", directory + "/plot.png", directory + "/plot.svg"]
        let err = Pipe()
        process.standardError = err
        try process.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw PlotTestError("rsvg-convert failed: \(stderr)") }
        let png = try Data(contentsOf: URL(fileURLWithPath: directory + "/plot.png"))
        guard png.count > 24, png.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]),
              String(decoding: png[12..<16], as: UTF8.self) == "IHDR" else {
            throw PlotTestError("rsvg-convert did not write a PNG")
        }
        func big32(_ offset: Int) -> Int { png[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) } }
        return (big32(16), big32(20))
    }

    static func texts(_ elements: [Elements.Element], class name: String) -> [String] {
        elements.filter { $0.attributes["class"] == name }.map(\.text)
    }

    /// A kill run as the nodes would report it: five nodes, node 2 killed 1 s into the measurement, a 150 ms stall.
    static func killResult() throws -> BenchResult {
        let config = try BenchCommand.parse(["--nodes", "5", "--duration", "5", "--kill", "2@1"]).makeConfiguration()
        let t0 = FaultAnalysisTests.t0, ms = FaultAnalysisTests.ms
        let measurementStart = t0 + 1000 * ms
        let kill = InjectedFault(fault: config.faults[0], unixNanos: measurementStart + 1000 * ms, lateMillis: 2)
        let record = FaultRecord(injected: [kill], measurementStartUnixNanos: measurementStart,
                                 measurementEndUnixNanos: measurementStart + 5000 * ms)
        let change = FaultAnalysisTests.view(2, [0, 1, 3, 4], ["link_lost 2"], started: kill.unixNanos + 10 * ms,
                                             installed: kill.unixNanos + 60 * ms)
        let nodes = [0, 1, 3, 4].map {
            FaultAnalysisTests.node($0, views: [FaultAnalysisTests.initial, change],
                                    timeline: FaultAnalysisTests.timeline(stallBuckets: 3, after: 100_000, totalBuckets: 160))
        }
        return BenchResult(config: config, placementDescription: "test", nodes: nodes,
                           rawLink: .object([("throughput_mbit_s", .number(13))]), deliveryLog: nil, elapsedSeconds: 1,
                           faults: record)
    }

    @Test("--plot of a kill: a line per survivor, the optimal line, the fault and the view marked, the dip in the data")
    func throughputPlotOfAKill() throws {
        let result = try Self.killResult()
        let plot = ThroughputPlot.make(result)
        let svg = plot.render()
        let elements = try Elements.parse(svg)
        #expect(elements.first?.name == "svg" && elements.first?.attributes["width"] == "900")
        #expect(elements.contains { $0.attributes["class"] == "frame" }, "no plot frame")
        #expect(Self.texts(elements, class: "x-label") == ["seconds since the measurement started"])
        #expect(Self.texts(elements, class: "y-label") == ["delivered throughput (Mbit/s)"])
        #expect(Self.texts(elements, class: "y-tick").count >= 3)
        #expect(Self.texts(elements, class: "x-tick").contains("0"))
        let lines = elements.filter { $0.attributes["class"] == "series" }.compactMap { $0.attributes["data-name"] }
        #expect(lines == ["node 0", "node 1", "node 3", "node 4", "optimal (16 Mbit/s)"], "\(lines)")
        let markers = elements.filter { $0.attributes["class"] == "marker" }.compactMap { $0.attributes["data-label"] }
        #expect(markers == ["kill -9 node 2", "view 2: 0 1 3 4"], "\(markers)")
        #expect(Self.texts(elements, class: "marker-label") == markers)
        #expect(elements.filter { $0.attributes["class"] == "band" }.count == 2, "warm-up and cool-down shaded")
        #expect(Self.texts(elements, class: "caption").joined(separator: " ").contains("Recovery"))

        // The dip: around the kill (1 s) the line falls well below its level before, and comes back.
        let node0 = try #require(plot.series.first { $0.name == "node 0" }).points
        let before = node0.filter { $0[0] > 0 && $0[0] < 0.8 }.map { $0[1] }
        let during = node0.filter { $0[0] > 1.0 && $0[0] < 1.15 }.map { $0[1] }
        let after = node0.filter { $0[0] > 2 && $0[0] < 4 }.map { $0[1] }
        #expect(before.allSatisfy { abs($0 - 16) < 0.01 }, "100 kB per 50 ms is 16 Mbit/s: \(before)")
        #expect((during.min() ?? 16) < 8, "the stall shows as a dip: \(during)")
        #expect(after.allSatisfy { abs($0 - 16) < 0.01 }, "and the line recovers: \(after)")
    }

    @Test("the plot renders with rsvg-convert to a PNG of the SVG's size",
          .enabled(if: rsvgConvert != nil, "rsvg-convert missing: run tools/setup-deps (librsvg2-bin)"))
    func throughputPlotRenders() throws {
        let size = try Self.render(ThroughputPlot.make(try Self.killResult()).render())
        #expect(size.width == 900 && size.height == 500)
    }

    @Test("ringcast-bench plot: a chart from JSON (tools/figures' bar chart) with bars, a reference line and a legend")
    func chartFromJSON() throws {
        let spec = """
        {"title": "Figure 2.17", "x_label": "delivering process", "y_label": "share of deliveries (%)", "y_max": 57.5,
         "bar_groups": [{"label": "p0", "bars": [{"value": 33.1, "color": "#1f77b4", "title": "p0 from p0"},
                                                  {"value": 33.4, "color": "#d62728", "title": "p0 from p1"}]},
                        {"label": "p1", "bars": [{"value": 32.9, "color": "#1f77b4", "title": "p1 from p0"},
                                                  {"value": 33.6, "color": "#d62728", "title": "p1 from p1"}]}],
         "series": [{"name": "fair share 1/2", "color": "#333", "dashed": true, "points": [[-0.5, 50], [1.5, 50]]}],
         "legend": [{"name": "from sender p0", "color": "#1f77b4", "style": "box"}],
         "caption": ["measured on the emulated LAN"]}
        """
        let plot = try JSONDecoder().decode(SVGPlot.self, from: Data(spec.utf8))
        let svg = plot.render()
        let elements = try Elements.parse(svg)
        #expect(elements.filter { $0.attributes["class"] == "bar" }.count == 4)
        #expect(Self.texts(elements, class: "x-tick") == ["p0", "p1"])
        #expect(Self.texts(elements, class: "y-tick").last == "60", "y_max 57.5 rounds up to a tick")
        #expect(svg.contains("fair share 1/2") && svg.contains("from sender p0"))
        if Self.rsvgConvert != nil {
            let size = try Self.render(svg)
            #expect(size.width == 720 && size.height == 460)
        }
        let bad = ##"{"title": "t", "x_label": "x", "y_label": "y", "series": [{"name": "s", "color": "#000", "points": [[1]]}]}"##
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(SVGPlot.self, from: Data(bad.utf8)) }
    }

    @Test("ringcast-bench --kill 1@1.5 --plot on loopback: the picture of a real crash and recovery",
          .enabled(if: SignalTests.benchBinary != nil, "ringcast-bench is not built beside the tests"))
    func realKillPlot() async throws {
        let path = NSTemporaryDirectory() + "ringcast-plot-\(UUID().uuidString).svg"
        defer { try? FileManager.default.removeItem(atPath: path) }
        // A suspicion timeout a loaded machine does not trip: the picture should show the kill, not a false suspicion.
        let run = try await Self.offThePool {
            try RealFaultTests.run(["--nodes", "4", "--kill", "1@1.5", "--heartbeat-ms", "50", "--suspect-ms", "1000",
                                    "--plot", path])
        }
        RealFaultTests.expectAgreed(run)
        let svg = try String(contentsOfFile: path, encoding: .utf8)
        let elements = try Elements.parse(svg)
        let lines = elements.filter { $0.attributes["class"] == "series" }.compactMap { $0.attributes["data-name"] }
        #expect(["node 0", "node 2", "node 3"].allSatisfy(lines.contains), "\(lines)")
        let markers = elements.filter { $0.attributes["class"] == "marker" }.compactMap { $0.attributes["data-label"] }
        #expect(markers.first == "kill -9 node 1", "\(markers)")
        let views = markers.filter { $0.hasPrefix("view ") }.map { $0.split(separator: ":").last.map(String.init) ?? "" }
        #expect(views.contains(" 0 2 3"), "a view of the survivors: \(markers)")
        if Self.rsvgConvert != nil { _ = try Self.render(svg) }
    }
}
