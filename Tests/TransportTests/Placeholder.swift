import Testing

@Test func TransportTestsPlaceholderBuilds() {
    #expect(Bool(true))
}
