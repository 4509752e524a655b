/// Reads the first `count` elements of a fixed-size C array imported as a homogeneous tuple.
///
/// - Precondition: `count` does not exceed the tuple's length.
func tupleElements<Tuple, Element>(_ tuple: Tuple, as _: Element.Type, count: Int) -> [Element] {
    withUnsafeBytes(of: tuple) { raw in
        precondition(count * MemoryLayout<Element>.stride <= raw.count, "count exceeds the C array")
        return Array(raw.bindMemory(to: Element.self).prefix(count))
    }
}
