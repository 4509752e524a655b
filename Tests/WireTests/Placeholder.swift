import Testing

@Test func wirePlaceholderBuilds() {
    #expect(Bool(true))
}
