// fuzz_control.swift — libFuzzer target for the control plane's decoders, the Swift code that reads what any
// process sends to a member's control port once it is past the handshake (fuzz_auth.c covers the handshake):
//   ControlFrameReader (length-prefixed frames, with or without a frame tag after each, cut however the stream was
//   split), ControlFrame.parseHello,
//   GroupFrame.decode (Sources/RingCast/Internal/Group/GroupWire.swift) and Membership.Message.decode.
// Built by tools/fuzz/run with `swiftc -sanitize=fuzzer,address` from those source files (RingCastMembership as
// its own module), so it runs the very code the library runs. Properties, besides no crash and no trap:
//   1. the frames the reader returns, re-prefixed, are exactly the bytes it consumed; it throws TooLong only
//      for a length above its bound, and never holds a frame longer than the bound;
//   2. a hello that parses encodes back to the same bytes;
//   3. a membership message that decodes, encoded again, decodes to the same message.
import RingCastMembership
#if canImport(Glibc)
import Glibc
#endif

/// Ring.swift's payload type, which GroupWire.swift names; the same fields (the fuzz build does not compile
/// the engine). If the library's changes, this build fails, and this copy follows.
struct RecoveredPayload: Sendable, Hashable {
    var bytes: [UInt8]
    var lengths: [UInt32]
    var firstOriginSeq: UInt64
    var tokens: [UInt64]
}

private func check(_ condition: Bool, _ what: String) {
    if !condition {
        print("fuzz_control: property failed: \(what)")
        abort()
    }
}

private func checkFrame(_ frame: [UInt8]) {
    if let peer = try? ControlFrame.parseHello(frame) {
        let hello = ControlFrame.hello(from: peer)
        check(Array(hello.dropFirst(ControlFrame.headerBytes)) == frame, "hello round trip")
    }
    guard let decoded = GroupFrame.decode(frame) else { return }
    if case let .membership(bytes) = decoded, let message = try? Membership.Message.decode(bytes) {
        let again = try? Membership.Message.decode(message.encoded())
        check(again == message, "membership message round trip")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    // Byte 0: the reader's bound (small bounds reach TooLong); byte 1: the chunk size the stream is cut into.
    let lengthMax = [16, 64, 4096, 1 << 20][Int(data[0]) % 4]
    let chunk = Int(data[1]) + 1
    let stream = UnsafeBufferPointer(start: data + 2, count: size - 2)
    var reader = ControlFrameReader(lengthMax: lengthMax)
    reader.trailerBytes = data[0] & 4 != 0 ? 16 : 0 // an authenticated channel's frame tag
    var consumed: [UInt8] = []
    var reframed: [UInt8] = []
    var offset = 0
    while offset < stream.count {
        let end = min(stream.count, offset + chunk)
        var at = offset
        while at < end {
            let piece = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: stream[at..<end]))
            let result: (used: Int, frame: [UInt8]?)
            do throws(ControlFrameReader.TooLong) {
                result = try reader.consume(piece)
            } catch {
                check(error.length > lengthMax && error.limit == lengthMax, "TooLong only above the bound")
                return 0
            }
            check(result.used <= end - at && (result.used > 0 || result.frame != nil), "progress")
            consumed += stream[at..<(at + result.used)]
            at += result.used
            if let frame = result.frame {
                check(frame.count <= lengthMax, "a frame above the bound")
                ControlFrame.appendHeader(length: frame.count, to: &reframed)
                reframed += frame
                check(reader.lastTrailer.count == reader.trailerBytes, "a whole trailer with each frame")
                reframed += reader.lastTrailer
                check(consumed == reframed, "frames are exactly the bytes consumed")
                checkFrame(frame)
            }
        }
        offset = end
    }
    // Whatever the reader was given that is not in a frame is a partial frame it holds.
    check(consumed.count == stream.count, "every byte consumed")
    return 0
}
