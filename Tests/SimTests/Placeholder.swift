import Testing

@Test func SimTestsPlaceholderBuilds() {
    #expect(Bool(true))
}
