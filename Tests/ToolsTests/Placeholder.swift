import Testing

@Test func ToolsTestsPlaceholderBuilds() {
    #expect(Bool(true))
}
