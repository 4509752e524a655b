import Testing

@Test func LCRTestsPlaceholderBuilds() {
    #expect(Bool(true))
}
