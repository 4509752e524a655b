import Foundation

/// The one SVG writer of RingCast's pictures: `ringcast-bench --plot` (throughput over time with faults and view
/// changes marked) and `tools/figures` (the thesis' figures, through `ringcast-bench plot`) both draw with it.
///
/// A chart is lines over x (solid with dots, or dashed for reference lines such as the optimal throughput), bars in
/// categories (a fairness chart), vertical markers for events, shaded bands for phases, a legend and a caption. It is
/// `Codable` with snake_case keys, so that a script can describe a chart in JSON. Standard library only; the output
/// is plain SVG 1.1 that browsers, GitHub and `rsvg-convert` all render.
public struct SVGPlot: Codable, Sendable, Equatable {
    public struct Series: Codable, Sendable, Equatable {
        public var name: String
        public var color: String
        /// Dashed, no dots: a reference line (optimal, fair share).
        public var dashed = false
        /// Dots on the points (for a few measured points; a 50 ms timeline has too many).
        public var dots = true
        /// `[x, y]` pairs, drawn in x order.
        public var points: [[Double]]

        public init(name: String, color: String, dashed: Bool = false, dots: Bool = true, points: [[Double]]) {
            self.name = name
            self.color = color
            self.dashed = dashed
            self.dots = dots
            self.points = points
        }

        enum CodingKeys: String, CodingKey { case name, color, dashed, dots, points }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decode(String.self, forKey: .name)
            color = try container.decode(String.self, forKey: .color)
            dashed = try container.decodeIfPresent(Bool.self, forKey: .dashed) ?? false
            dots = try container.decodeIfPresent(Bool.self, forKey: .dots) ?? true
            points = try container.decode([[Double]].self, forKey: .points)
        }
    }

    /// A vertical line at `x` with a short label at the top of the plot area (an injected fault, a view change).
    public struct Marker: Codable, Sendable, Equatable {
        public var x: Double
        public var label: String
        public var color: String
        public var dashed = false

        public init(x: Double, label: String, color: String, dashed: Bool = false) {
            self.x = x
            self.label = label
            self.color = color
            self.dashed = dashed
        }

        enum CodingKeys: String, CodingKey { case x, label, color, dashed }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            x = try container.decode(Double.self, forKey: .x)
            label = try container.decode(String.self, forKey: .label)
            color = try container.decode(String.self, forKey: .color)
            dashed = try container.decodeIfPresent(Bool.self, forKey: .dashed) ?? false
        }
    }

    /// A shaded stretch of x (a phase such as the warm-up), labelled at its bottom.
    public struct Band: Codable, Sendable, Equatable {
        public var from: Double
        public var to: Double
        public var label: String
        public var color = "#f2f2f2"

        public init(from: Double, to: Double, label: String, color: String = "#f2f2f2") {
            self.from = from
            self.to = to
            self.label = label
            self.color = color
        }

        enum CodingKeys: String, CodingKey { case from, to, label, color }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            from = try container.decode(Double.self, forKey: .from)
            to = try container.decode(Double.self, forKey: .to)
            label = try container.decode(String.self, forKey: .label)
            color = try container.decodeIfPresent(String.self, forKey: .color) ?? "#f2f2f2"
        }
    }

    /// Bars of one category, drawn side by side around the category's x (its index).
    public struct BarGroup: Codable, Sendable, Equatable {
        public var label: String
        public var bars: [Bar]

        public init(label: String, bars: [Bar]) {
            self.label = label
            self.bars = bars
        }
    }

    public struct Bar: Codable, Sendable, Equatable {
        public var value: Double
        public var color: String
        /// Tooltip text.
        public var title: String

        public init(value: Double, color: String, title: String) {
            self.value = value
            self.color = color
            self.title = title
        }
    }

    /// A legend line: `style` is "line", "dashed" or "box".
    public struct LegendEntry: Codable, Sendable, Equatable {
        public var name: String
        public var color: String
        public var style: String

        public init(name: String, color: String, style: String) {
            self.name = name
            self.color = color
            self.style = style
        }
    }

    public var title: String
    public var subtitle = ""
    public var xLabel: String
    public var yLabel: String
    public var series: [Series] = []
    public var markers: [Marker] = []
    public var bands: [Band] = []
    /// With bars the x axis is categorical: group i sits at x = i.
    public var barGroups: [BarGroup] = []
    /// Ticks at these x values with these labels; `nil` puts evenly spaced round ticks.
    public var xTicks: [XTick]?
    public var logX = false
    /// The plot's x range; `nil` fits the data (with a little padding when ticks are given).
    public var xMin: Double?
    public var xMax: Double?
    /// At least this much y range (rounded up to a tick); `nil` fits the data with 12 % headroom.
    public var yMax: Double?
    /// Extra legend lines after the series' own (bars, markers); the series always get theirs.
    public var legend: [LegendEntry] = []
    /// Paragraphs under the plot, wrapped to the width; at most ``captionLinesMax`` lines in all.
    public var caption: [String] = []
    public var width = 720
    public var height = 460

    public struct XTick: Codable, Sendable, Equatable {
        public var x: Double
        public var label: String

        public init(x: Double, label: String) {
            self.x = x
            self.label = label
        }
    }

    public init(title: String, xLabel: String, yLabel: String) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
    }

    enum CodingKeys: String, CodingKey {
        case title, subtitle, series, markers, bands, legend, caption, width, height
        case xLabel = "x_label", yLabel = "y_label", barGroups = "bar_groups", xTicks = "x_ticks", logX = "log_x"
        case xMin = "x_min", xMax = "x_max", yMax = "y_max"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        title = try container.decode(String.self, forKey: .title)
        subtitle = try container.decodeIfPresent(String.self, forKey: .subtitle) ?? ""
        xLabel = try container.decode(String.self, forKey: .xLabel)
        yLabel = try container.decode(String.self, forKey: .yLabel)
        series = try container.decodeIfPresent([Series].self, forKey: .series) ?? []
        markers = try container.decodeIfPresent([Marker].self, forKey: .markers) ?? []
        bands = try container.decodeIfPresent([Band].self, forKey: .bands) ?? []
        barGroups = try container.decodeIfPresent([BarGroup].self, forKey: .barGroups) ?? []
        xTicks = try container.decodeIfPresent([XTick].self, forKey: .xTicks)
        logX = try container.decodeIfPresent(Bool.self, forKey: .logX) ?? false
        xMin = try container.decodeIfPresent(Double.self, forKey: .xMin)
        xMax = try container.decodeIfPresent(Double.self, forKey: .xMax)
        yMax = try container.decodeIfPresent(Double.self, forKey: .yMax)
        legend = try container.decodeIfPresent([LegendEntry].self, forKey: .legend) ?? []
        caption = try container.decodeIfPresent([String].self, forKey: .caption) ?? []
        width = try container.decodeIfPresent(Int.self, forKey: .width) ?? 720
        height = try container.decodeIfPresent(Int.self, forKey: .height) ?? 460
        for item in series where item.points.contains(where: { $0.count != 2 || !$0.allSatisfy(\.isFinite) }) {
            throw DecodingError.dataCorruptedError(forKey: .series, in: container,
                                                   debugDescription: "series '\(item.name)': points must be finite [x, y] pairs")
        }
        guard (200...4000).contains(width), (150...4000).contains(height) else {
            throw DecodingError.dataCorruptedError(forKey: .width, in: container, debugDescription: "width 200...4000, height 150...4000")
        }
    }

    // MARK: Rendering

    static let left = 78.0, right = 24.0, top = 52.0
    static let captionLinesMax = 6

    /// Room under the plot: tick labels and the axis label (56 px), then the caption's lines.
    private var captionLines: [String] {
        Array(caption.flatMap { Self.wrap($0, width: max(40, Int((Double(width) - Self.left) / 6.1))) }.prefix(Self.captionLinesMax))
    }
    private var bottom: Double { 64 + 14 * Double(max(captionLines.count, 3)) }

    /// The SVG document.
    public func render() -> String {
        let w = Double(width), h = Double(height)
        let plotW = w - Self.left - Self.right, plotH = h - Self.top - bottom
        let xScale = XScale(plot: self, plotWidth: plotW)
        let yTop = Self.roundedTop(yFitted)
        let yPos = { (value: Double) in Self.top + plotH * (1 - value / yTop) }
        var out: [String] = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" "
                + "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">",
            "<rect width=\"\(width)\" height=\"\(height)\" fill=\"white\"/>",
            "<text x=\(q(w / 2)) y=\"20\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">\(escape(title))</text>",
            "<text x=\(q(w / 2)) y=\"38\" text-anchor=\"middle\" fill=\"#444\">\(escape(subtitle))</text>",
        ]
        // Bands first, under everything; clipped to the plot area.
        for band in bands {
            let from = max(Self.left, xScale.position(band.from)), to = min(w - Self.right, xScale.position(band.to))
            guard to > from else { continue }
            out.append("<rect class=\"band\" x=\(q(from)) y=\(q(Self.top)) width=\(q(to - from)) height=\(q(plotH)) fill=\"\(escape(band.color))\"/>")
            out.append("<text x=\(q((from + to) / 2)) y=\(q(Self.top + plotH - 6)) text-anchor=\"middle\" fill=\"#777\" font-size=\"10.5\">\(escape(band.label))</text>")
        }
        out += axes(xScale: xScale, yTop: yTop, yPos: yPos, plotW: plotW, plotH: plotH)
        out += barElements(xScale: xScale, yPos: yPos)
        for item in series {
            let points = item.points.filter { $0.count == 2 }.sorted { $0[0] < $1[0] }
            guard !points.isEmpty else { continue }
            let coordinates = points.map { "\(f(xScale.position($0[0]))),\(f(yPos($0[1])))" }.joined(separator: " ")
            let dash = item.dashed ? " stroke-dasharray=\"6 4\"" : ""
            out.append("<polyline class=\"series\" data-name=\"\(escape(item.name))\" points=\"\(coordinates)\" fill=\"none\" "
                + "stroke=\"\(escape(item.color))\" stroke-width=\"\(item.dashed ? 1.5 : 1.6)\" stroke-linejoin=\"round\"\(dash)/>")
            guard item.dots && !item.dashed else { continue }
            for point in points {
                out.append("<circle cx=\(q(xScale.position(point[0]))) cy=\(q(yPos(point[1]))) r=\"3.5\" fill=\"\(escape(item.color))\">"
                    + "<title>\(escape(item.name)): \(String(format: "%.1f", point[1])) at \(String(format: "%g", point[0]))</title></circle>")
            }
        }
        out += markerElements(xScale: xScale, plotH: plotH)
        out += legendElements()
        let lines = captionLines
        for (index, line) in lines.enumerated() {
            let y = h - 10 - 14 * Double(lines.count - 1 - index)
            out.append("<text class=\"caption\" x=\(q(Self.left)) y=\(q(y)) fill=\"#555\" font-size=\"10.5\">\(escape(line))</text>")
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    private var yFitted: Double {
        let values = series.flatMap { $0.points.compactMap { $0.count == 2 ? $0[1] : nil } }
            + barGroups.flatMap { $0.bars.map(\.value) }
        return max(max(values.max() ?? 1, 1e-9) * 1.12, yMax ?? 0)
    }

    /// x values to screen positions: linear or log10, fitted to the data, the ticks and the bars.
    struct XScale {
        let low: Double, high: Double, log: Bool, left: Double, width: Double

        init(plot: SVGPlot, plotWidth: Double) {
            log = plot.logX
            let transform = { (value: Double) in plot.logX ? Foundation.log10(max(value, 1e-12)) : value }
            var xs = plot.series.flatMap { $0.points.compactMap { $0.count == 2 ? $0[0] : nil } }
            xs += (plot.xTicks ?? []).map(\.x)
            if !plot.barGroups.isEmpty { xs += [-0.5, Double(plot.barGroups.count) - 0.5] }
            var low = transform(plot.xMin ?? xs.min() ?? 0), high = transform(plot.xMax ?? xs.max() ?? 1)
            if plot.xTicks != nil && plot.xMin == nil && plot.xMax == nil && plot.barGroups.isEmpty {
                // Measured points at the edges get some room, as the figures always had.
                let pad = (high - low) * 0.06
                low -= pad == 0 ? 0.5 : pad
                high += pad == 0 ? 0.5 : pad
            }
            if high <= low { high = low + 1 }
            self.low = low
            self.high = high
            left = SVGPlot.left
            width = plotWidth
        }

        func position(_ value: Double) -> Double {
            let x = log ? Foundation.log10(max(value, 1e-12)) : value
            return left + width * (x - low) / (high - low)
        }
    }

    private func axes(xScale: XScale, yTop: Double, yPos: (Double) -> Double, plotW: Double, plotH: Double) -> [String] {
        var out = ["<rect class=\"frame\" x=\(q(Self.left)) y=\(q(Self.top)) width=\(q(plotW)) height=\(q(plotH)) fill=\"none\" stroke=\"#333\"/>"]
        let step = Self.niceStep(yTop)
        var value = 0.0
        while value <= yTop + 1e-9 {
            let y = yPos(value)
            out.append("<line class=\"grid\" x1=\(q(Self.left)) x2=\(q(Self.left + plotW)) y1=\(q(y)) y2=\(q(y)) stroke=\"#ddd\"/>")
            out.append("<text class=\"y-tick\" x=\(q(Self.left - 6)) y=\(q(y + 4)) text-anchor=\"end\">\(String(format: "%g", value))</text>")
            value += step
        }
        let ticks: [XTick]
        if let xTicks {
            ticks = xTicks
        } else if !barGroups.isEmpty {
            ticks = barGroups.enumerated().map { XTick(x: Double($0.offset), label: $0.element.label) }
        } else {
            let step = Self.niceStep(xScale.high - xScale.low)
            var tick = (xScale.low / step).rounded(.up) * step
            var list: [XTick] = []
            while tick <= xScale.high + 1e-9 {
                list.append(XTick(x: tick, label: String(format: "%g", abs(tick) < 1e-9 ? 0 : tick)))
                tick += step
            }
            ticks = list
        }
        let base = Self.top + plotH
        for tick in ticks {
            let x = xScale.position(tick.x)
            guard x >= Self.left - 0.5 && x <= Self.left + plotW + 0.5 else { continue }
            out.append("<line x1=\(q(x)) x2=\(q(x)) y1=\(q(base)) y2=\(q(base + 5)) stroke=\"#333\"/>")
            out.append("<text class=\"x-tick\" x=\(q(x)) y=\(q(base + 18)) text-anchor=\"middle\">\(escape(tick.label))</text>")
        }
        out.append("<text class=\"x-label\" x=\(q(Self.left + plotW / 2)) y=\(q(base + 36)) text-anchor=\"middle\">\(escape(xLabel))</text>")
        out.append("<text class=\"y-label\" transform=\"translate(18 \(f(Self.top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>")
        return out
    }

    private func barElements(xScale: XScale, yPos: (Double) -> Double) -> [String] {
        guard !barGroups.isEmpty else { return [] }
        let group = xScale.position(1) - xScale.position(0)
        var out: [String] = []
        for (index, category) in barGroups.enumerated() {
            let bar = group * 0.7 / Double(max(1, category.bars.count))
            for (position, item) in category.bars.enumerated() {
                let x = xScale.position(Double(index)) - group * 0.35 + Double(position) * bar
                out.append("<rect class=\"bar\" x=\(q(x)) y=\(q(yPos(item.value))) width=\(q(bar * 0.9)) "
                    + "height=\(q(yPos(0) - yPos(item.value))) fill=\"\(escape(item.color))\"><title>\(escape(item.title))</title></rect>")
            }
        }
        return out
    }

    /// Labels sit in three staggered rows under the top edge, so that a fault and the view change that follows it
    /// a few hundred ms later do not print over each other.
    private func markerElements(xScale: XScale, plotH: Double) -> [String] {
        var out: [String] = []
        for (index, marker) in markers.sorted(by: { $0.x < $1.x }).enumerated() {
            let x = xScale.position(marker.x)
            guard x >= Self.left && x <= Double(width) - Self.right else { continue }
            let dash = marker.dashed ? " stroke-dasharray=\"4 3\"" : ""
            out.append("<line class=\"marker\" data-label=\"\(escape(marker.label))\" x1=\(q(x)) x2=\(q(x)) y1=\(q(Self.top)) "
                + "y2=\(q(Self.top + plotH)) stroke=\"\(escape(marker.color))\" stroke-width=\"1.5\"\(dash)/>")
            let y = Self.top + 14 + 13 * Double(index % 3)
            let anchor = x > Double(width) - Self.right - 160 ? "end" : "start"
            let dx = anchor == "end" ? -4.0 : 4.0
            out.append("<text class=\"marker-label\" x=\(q(x + dx)) y=\(q(y)) text-anchor=\"\(anchor)\" fill=\"\(escape(marker.color))\" "
                + "font-size=\"10.5\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">\(escape(marker.label))</text>")
        }
        return out
    }

    /// Top right, inside the plot, on a white box so that lines under it do not make it hard to read.
    private func legendElements() -> [String] {
        let entries = series.map { LegendEntry(name: $0.name, color: $0.color, style: $0.dashed ? "dashed" : "line") } + legend
        guard !entries.isEmpty else { return [] }
        let longest = entries.map(\.name.count).max() ?? 0
        let boxWidth = 44 + 6.3 * Double(longest)
        let x = Double(width) - Self.right - boxWidth - 8
        let y0 = Self.top + (markers.isEmpty ? 8 : 48)
        var out = ["<g class=\"legend\">",
                   "<rect x=\(q(x)) y=\(q(y0)) width=\(q(boxWidth)) height=\(q(Double(entries.count) * 16 + 8)) fill=\"white\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>"]
        for (index, entry) in entries.enumerated() {
            let y = y0 + 14 + 16 * Double(index)
            switch entry.style {
            case "box":
                out.append("<rect x=\(q(x + 12)) y=\(q(y - 6)) width=\"14\" height=\"12\" fill=\"\(escape(entry.color))\"/>")
            default:
                let dash = entry.style == "dashed" ? " stroke-dasharray=\"6 4\"" : ""
                out.append("<line x1=\(q(x + 6)) x2=\(q(x + 32)) y1=\(q(y)) y2=\(q(y)) stroke=\"\(escape(entry.color))\" stroke-width=\"2\"\(dash)/>")
            }
            out.append("<text x=\(q(x + 38)) y=\(q(y + 4))>\(escape(entry.name))</text>")
        }
        return out + ["</g>"]
    }

    // MARK: Helpers

    /// A round step (1, 2, 2.5 or 5 × 10^k) giving about six ticks over `span`.
    static func niceStep(_ span: Double, ticks: Double = 6) -> Double {
        let raw = max(span, 1e-12) / ticks
        let power = pow(10, floor(log10(raw)))
        for multiple in [1.0, 2, 2.5, 5, 10] where multiple * power >= raw { return multiple * power }
        return 10 * power
    }

    static func roundedTop(_ value: Double) -> Double {
        let step = niceStep(value)
        return step * (value / step).rounded(.up)
    }

    static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && line.count + 1 + word.count > width {
                lines.append(line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        if !line.isEmpty { lines.append(line) }
        return lines
    }
}

private func f(_ value: Double) -> String { String(format: "%.1f", value) }
private func q(_ value: Double) -> String { "\"\(f(value))\"" }

private func escape(_ text: String) -> String {
    var out = ""
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(character)
        }
    }
    return out
}
