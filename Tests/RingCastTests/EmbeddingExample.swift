import RingCast

// The embedding example of Sources/RingCast/RingCast.docc/RingCast.md, verbatim but for the member list (the
// test passes free ports) and the returned delivery orders (the test compares them). Keep the two in step.
func embeddingExample(members: [String]) async throws -> [[String]] {
    // One process, three nodes on loopback, in ring order.
    let nodes = try members.indices.map { position in
        try Node(configuration: Node.Configuration(position: position, members: members))
    }
    for node in nodes { try node.start() }
    for node in nodes { try await node.waitUntilRunning(timeout: .seconds(10)) }

    // Every node broadcasts one message…
    for node in nodes {
        try await node.broadcast(Array("hello from node \(node.configuration.position)".utf8))
    }

    // …and every node delivers all three, in the same order.
    var orders: [[String]] = []
    for node in nodes {
        var order: [String] = []
        for try await batch in node.deliveries {
            for delivery in batch {
                order.append("#\(delivery.originSeq) of node \(delivery.origin): " + String(decoding: delivery.payload, as: UTF8.self))
            }
            if order.count == nodes.count { break }
        }
        orders.append(order)
    }
    for node in nodes { node.shutdown() }
    print(orders[0])
    assert(orders.allSatisfy { $0 == orders[0] }, "every node delivers the same sequence")
    return orders
}
