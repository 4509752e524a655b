import RingCast

// The embedding example of Sources/RingCast/RingCast.docc/RingCast.md, verbatim but for the member list (the
// test passes free ports). Keep the two in step.
func embeddingExample(members: [String]) async throws {
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
    for node in nodes {
        var delivered = 0
        for try await batch in node.deliveries {
            for delivery in batch {
                let text = String(decoding: delivery.payload, as: UTF8.self)
                print("node \(node.configuration.position) delivered #\(delivery.originSeq) of node \(delivery.origin): \(text)")
            }
            delivered += batch.count
            if delivered == nodes.count { break }
        }
    }
    for node in nodes { node.shutdown() }
}
