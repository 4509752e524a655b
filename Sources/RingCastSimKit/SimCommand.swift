import ArgumentParser

/// ringcast-sim: LCR simulator (being written).
public struct SimCommand: ParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(commandName: "ringcast-sim")
    public func run() throws {}
}
