import ArgumentParser

/// ringperf: netperf-style link test (being written).
public struct RingPerfCommand: ParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(commandName: "ringperf")
    public func run() throws {}
}
