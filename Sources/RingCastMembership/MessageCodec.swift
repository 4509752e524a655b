/// The wire form of ``Membership/Message``: version byte, kind byte, then the fields little-endian. Counts
/// are bounded (members ≤ 64, plan ≤ 64 × 64, causes ≤ 128) and checked before anything is built, and
/// the message must use every byte: the decoder never trusts its input (ARCHITECTURE §1, `wire`).
extension Membership.Message {
    /// The only version this build writes and reads. 2: little-endian, as every other RingCast wire (1 was
    /// big-endian; a member of that version is refused, never misread).
    public static let wireVersion: UInt8 = 2

    enum Kind: UInt8 {
        case heartbeat = 1, join, leave, change, prepare, promise, fill, filled, accept, accepted, decide
    }

    public func encoded() -> [UInt8] {
        var writer = WireWriter()
        writer.byte(Self.wireVersion)
        switch self {
        case .heartbeat(let viewID):
            writer.byte(Kind.heartbeat.rawValue)
            writer.u64(viewID)
        case .join(let member):
            writer.byte(Kind.join.rawValue)
            writer.member(member)
        case .leave(let member):
            writer.byte(Kind.leave.rawValue)
            writer.member(member)
        case .change(let viewID, let suspects):
            writer.byte(Kind.change.rawValue)
            writer.u64(viewID)
            writer.members(suspects)
        default:
            encodeViewChange(into: &writer)
        }
        return writer.bytes
    }

    private func encodeViewChange(into writer: inout WireWriter) {
        switch self {
        case .prepare(let fromView, let ballot):
            writer.head(.prepare, fromView, ballot)
        case .promise(let fromView, let ballot, let received, let accepted):
            writer.head(.promise, fromView, ballot)
            writer.clock(received)
            writer.byte(accepted == nil ? 0 : 1)
            if let accepted {
                writer.ballot(accepted.ballot)
                writer.value(accepted.value)
            }
        case .fill(let fromView, let ballot, let target, let plan):
            writer.head(.fill, fromView, ballot)
            writer.clock(target)
            precondition(plan.count <= Membership.planEntriesMax, "a plan has at most 64 × 64 entries")
            writer.u16(UInt16(plan.count))
            for transfer in plan { writer.transfer(transfer) }
        case .filled(let fromView, let ballot):
            writer.head(.filled, fromView, ballot)
        case .accept(let fromView, let ballot, let value):
            writer.head(.accept, fromView, ballot)
            writer.value(value)
        case .accepted(let fromView, let ballot):
            writer.head(.accepted, fromView, ballot)
        case .decide(let fromView, let value):
            writer.byte(Kind.decide.rawValue)
            writer.u64(fromView)
            writer.value(value)
        case .heartbeat, .join, .leave, .change:
            preconditionFailure("encoded by encoded()")
        }
    }

    /// - Throws: ``Membership/Error/malformed(_:)`` for a wrong version, an unknown kind, a count over
    ///   its bound, an unsorted view, a reversed range, a truncated message or trailing bytes.
    public static func decode(_ bytes: [UInt8]) throws(Membership.Error) -> Membership.Message {
        var reader = WireReader(bytes)
        let version = try reader.byte()
        guard version == wireVersion else { throw .malformed("version \(version), expected \(wireVersion)") }
        let tag = try reader.byte()
        guard let kind = Kind(rawValue: tag) else { throw .malformed("unknown kind \(tag)") }
        let message = try decodeBody(kind, &reader)
        guard reader.isAtEnd else { throw .malformed("\(reader.remaining) trailing bytes") }
        return message
    }

    private static func decodeBody(_ kind: Kind, _ reader: inout WireReader) throws(Membership.Error) -> Self {
        switch kind {
        case .heartbeat: return .heartbeat(viewID: try reader.u64())
        case .join: return .join(try reader.member())
        case .leave: return .leave(try reader.member())
        case .change: return .change(viewID: try reader.u64(), suspects: try reader.members())
        case .prepare: return .prepare(fromView: try reader.u64(), ballot: try reader.ballot())
        case .promise:
            let (fromView, ballot) = (try reader.u64(), try reader.ballot())
            let received = try reader.clock()
            let flag = try reader.byte()
            guard flag <= 1 else { throw .malformed("accepted flag \(flag)") }
            var accepted: Membership.AcceptedValue?
            if flag == 1 { accepted = Membership.AcceptedValue(ballot: try reader.ballot(), value: try reader.value()) }
            return .promise(fromView: fromView, ballot: ballot, received: received, accepted: accepted)
        case .fill:
            let (fromView, ballot, target) = (try reader.u64(), try reader.ballot(), try reader.clock())
            return .fill(fromView: fromView, ballot: ballot, target: target, plan: try reader.plan())
        case .filled: return .filled(fromView: try reader.u64(), ballot: try reader.ballot())
        case .accept: return .accept(fromView: try reader.u64(), ballot: try reader.ballot(), value: try reader.value())
        case .accepted: return .accepted(fromView: try reader.u64(), ballot: try reader.ballot())
        case .decide: return .decide(fromView: try reader.u64(), value: try reader.value())
        }
    }
}

/// Appends little-endian fields: the one writer of the control plane (membership messages here, the group's
/// frames in RingCast), in the byte order of the C wire (rc_wire.h), so that one order holds on every link.
package struct WireWriter {
    package var bytes: [UInt8] = []

    package init() { bytes.reserveCapacity(64) }

    package mutating func byte(_ value: UInt8) { bytes.append(value) }
    package mutating func u16(_ value: UInt16) { append(value.littleEndian) }
    package mutating func u32(_ value: UInt32) { append(value.littleEndian) }
    package mutating func u64(_ value: UInt64) { append(value.littleEndian) }
    package mutating func raw(_ value: some Sequence<UInt8>) { bytes.append(contentsOf: value) }

    private mutating func append<Integer: FixedWidthInteger>(_ littleEndian: Integer) {
        withUnsafeBytes(of: littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func member(_ member: Membership.MemberID) {
        u32(member.node)
        u32(member.incarnation)
    }

    mutating func members(_ members: [Membership.MemberID]) {
        precondition(members.count <= Membership.membersMax, "at most 64 members in a list")
        byte(UInt8(members.count))
        for member in members { self.member(member) }
    }

    mutating func clock(_ clock: [UInt64]) {
        precondition(clock.count <= Membership.membersMax, "a clock has at most 64 entries")
        byte(UInt8(clock.count))
        for entry in clock { u64(entry) }
    }

    mutating func ballot(_ ballot: Membership.Ballot) {
        u64(ballot.round)
        member(ballot.coordinator)
    }

    mutating func head(_ kind: Membership.Message.Kind, _ fromView: UInt64, _ ballot: Membership.Ballot) {
        byte(kind.rawValue)
        u64(fromView)
        self.ballot(ballot)
    }

    mutating func value(_ value: Membership.Value) {
        u64(value.newView.id)
        members(value.newView.members)
        clock(value.target)
        members(value.joiners)
        members(value.leavers)
        precondition(value.causes.count <= Membership.causesMax, "at most 128 causes")
        byte(UInt8(value.causes.count))
        for cause in value.causes { self.cause(cause) }
    }

    mutating func cause(_ cause: Membership.Cause) {
        switch cause {
        case .linkLost: byte(1)
        case .silent: byte(2)
        case .joined: byte(3)
        case .left: byte(4)
        case .roundTimeout: byte(5)
        }
        member(cause.member)
    }

    mutating func transfer(_ transfer: Membership.Transfer) {
        member(transfer.supplier)
        member(transfer.receiver)
        u32(transfer.origin)
        u64(transfer.seqs.lowerBound)
        u64(transfer.seqs.upperBound)
    }
}

/// Reads little-endian fields, checking every length against what is left: the one reader of the control plane.
package struct WireReader {
    private let bytes: [UInt8]
    private var offset = 0

    package init(_ bytes: [UInt8]) { self.bytes = bytes }

    package var isAtEnd: Bool { offset == bytes.count }
    package var remaining: Int { bytes.count - offset }

    /// Everything not read yet.
    package mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return Array(bytes[offset...])
    }

    package mutating func byte() throws(Membership.Error) -> UInt8 {
        guard offset < bytes.count else { throw .malformed("truncated at byte \(offset)") }
        offset += 1
        return bytes[offset - 1]
    }

    private mutating func unsigned(_ width: Int) throws(Membership.Error) -> UInt64 {
        guard remaining >= width else { throw .malformed("truncated at byte \(offset)") }
        var value: UInt64 = 0
        for index in 0..<width { value |= UInt64(bytes[offset + index]) << (8 * index) }
        offset += width
        return value
    }

    package mutating func u16() throws(Membership.Error) -> UInt16 { UInt16(try unsigned(2)) }
    package mutating func u32() throws(Membership.Error) -> UInt32 { UInt32(try unsigned(4)) }
    package mutating func u64() throws(Membership.Error) -> UInt64 { try unsigned(8) }

    mutating func member() throws(Membership.Error) -> Membership.MemberID {
        Membership.MemberID(node: try u32(), incarnation: try u32())
    }

    /// A count, checked against its bound and against the bytes left (`width` bytes per item).
    private mutating func count(max: Int, width: Int, _ what: String) throws(Membership.Error) -> Int {
        let count = Int(try byte())
        guard count <= max else { throw .malformed("\(count) \(what), at most \(max)") }
        guard count * width <= remaining else { throw .malformed("\(count) \(what) do not fit") }
        return count
    }

    mutating func members() throws(Membership.Error) -> [Membership.MemberID] {
        let count = try count(max: Membership.membersMax, width: 8, "members")
        var members: [Membership.MemberID] = []
        members.reserveCapacity(count)
        for _ in 0..<count { members.append(try member()) }
        return members
    }

    mutating func clock() throws(Membership.Error) -> [UInt64] {
        let count = try count(max: Membership.membersMax, width: 8, "clock entries")
        var clock: [UInt64] = []
        clock.reserveCapacity(count)
        for _ in 0..<count { clock.append(try u64()) }
        return clock
    }

    mutating func ballot() throws(Membership.Error) -> Membership.Ballot {
        Membership.Ballot(round: try u64(), coordinator: try member())
    }

    mutating func view() throws(Membership.Error) -> Membership.View {
        let id = try u64()
        let members = try members()
        guard !members.isEmpty else { throw .malformed("a view without members") }
        guard zip(members, members.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw .malformed("view members not sorted or repeated")
        }
        return Membership.View(id: id, members: members)
    }

    mutating func value() throws(Membership.Error) -> Membership.Value {
        let newView = try view()
        let target = try clock()
        let joiners = try members()
        let leavers = try members()
        let count = try count(max: Membership.causesMax, width: 9, "causes")
        var causes: [Membership.Cause] = []
        for _ in 0..<count { causes.append(try cause()) }
        return Membership.Value(newView: newView, target: target, joiners: joiners, leavers: leavers, causes: causes)
    }

    mutating func cause() throws(Membership.Error) -> Membership.Cause {
        let tag = try byte()
        let member = try member()
        switch tag {
        case 1: return .linkLost(member)
        case 2: return .silent(member)
        case 3: return .joined(member)
        case 4: return .left(member)
        case 5: return .roundTimeout(member)
        default: throw .malformed("unknown cause \(tag)")
        }
    }

    mutating func plan() throws(Membership.Error) -> [Membership.Transfer] {
        let count = Int(try u16())
        guard count <= Membership.planEntriesMax else { throw .malformed("\(count) plan entries, at most 4096") }
        guard count * 36 <= remaining else { throw .malformed("\(count) plan entries do not fit") }
        var plan: [Membership.Transfer] = []
        plan.reserveCapacity(count)
        for _ in 0..<count {
            let (supplier, receiver, origin) = (try member(), try member(), try u32())
            let (lower, upper) = (try u64(), try u64())
            guard lower >= 1 && lower <= upper else { throw .malformed("plan range \(lower)...\(upper)") }
            plan.append(Membership.Transfer(supplier: supplier, receiver: receiver, origin: origin, seqs: lower...upper))
        }
        return plan
    }
}
