@testable import RingCast
import Testing

// ControlFrame: the control plane's framing, without sockets.

@Suite struct ControlFrameTests {
    @Test func helloRoundTripsAndIsSixteenBytes() throws {
        let peer = ControlPeer(node: 0xDEAD_BEEF, incarnation: 7)
        let frame = ControlFrame.hello(from: peer)
        #expect(frame.count == ControlFrame.headerBytes + ControlFrame.helloBytes)
        #expect(Array(frame[0..<4]) == [16, 0, 0, 0]) // little-endian
        #expect(Array(frame[4..<8]) == Array("RCCT".utf8))
        #expect(try ControlFrame.parseHello(Array(frame[4...])) == peer)
    }

    @Test func helloWithWrongMagicVersionOrLengthIsRefused() {
        var payload = Array(ControlFrame.hello(from: ControlPeer(node: 1, incarnation: 1))[4...])
        #expect(throws: ControlFrame.HelloError.length(15)) { try ControlFrame.parseHello(Array(payload.dropLast())) }
        payload[4] = 3 // version 3, little-endian
        #expect(throws: ControlFrame.HelloError.version(3)) { try ControlFrame.parseHello(payload) }
        payload[0] = UInt8(ascii: "X")
        #expect(throws: ControlFrame.HelloError.magic(Array("XCCT".utf8))) { try ControlFrame.parseHello(payload) }
    }

    /// The reader yields the same frames however the stream is cut into reads (every chunk size from 1 byte).
    @Test func readerIsIndependentOfHowTheStreamIsSplit() throws {
        let frames: [[UInt8]] = [[], [1], Array(0..<200).map { UInt8($0) }, [], Array(repeating: 9, count: 1000)]
        var stream: [UInt8] = []
        for frame in frames {
            ControlFrame.appendHeader(length: frame.count, to: &stream)
            stream += frame
        }
        for chunk in 1...stream.count {
            var reader = ControlFrameReader(lengthMax: 1000)
            var out: [[UInt8]] = []
            var start = 0
            while start < stream.count {
                let end = min(start + chunk, stream.count)
                try stream[start..<end].withUnsafeBytes { bytes in
                    var offset = 0
                    while offset < bytes.count {
                        let (used, frame) = try reader.consume(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
                        offset += used
                        if let frame { out.append(frame) }
                    }
                }
                start = end
            }
            #expect(out == frames, "chunk size \(chunk)")
            #expect(reader.isBetweenFrames)
        }
    }

    @Test func readerRefusesAnOversizeLengthBeforeBufferingTheBody() {
        var reader = ControlFrameReader(lengthMax: 10)
        let stream: [UInt8] = [11, 0, 0, 0, 1, 2, 3] // 11, little-endian
        #expect(throws: ControlFrameReader.TooLong(length: 11, limit: 10)) {
            _ = try stream.withUnsafeBytes { try reader.consume($0) }
        }
    }
}

@Suite struct ControlFrameTrailerTests {
    /// An authenticated channel's reader takes a fixed trailer (the frame tag) after each body, however the stream
    /// is cut, and hands it out with the frame.
    @Test(arguments: [1, 3, 7, 64])
    func trailerFollowsEachFrame(chunk: Int) throws {
        var stream: [UInt8] = []
        for index in 0..<5 {
            let frame = [UInt8](repeating: UInt8(index), count: index * 3)
            ControlFrame.appendHeader(length: frame.count, to: &stream)
            stream += frame + [UInt8](repeating: 0xa0 + UInt8(index), count: 16)
        }
        var reader = ControlFrameReader(lengthMax: 100)
        reader.trailerBytes = 16
        var frames: [([UInt8], [UInt8])] = []
        var offset = 0
        while offset < stream.count {
            let end = min(stream.count, offset + chunk)
            var at = offset
            while at < end {
                let result = try stream[at..<end].withUnsafeBytes { try reader.consume($0) }
                at += result.used
                if let frame = result.frame { frames.append((frame, reader.lastTrailer)) }
            }
            offset = end
        }
        #expect(frames.count == 5)
        for (index, (frame, trailer)) in frames.enumerated() {
            #expect(frame == [UInt8](repeating: UInt8(index), count: index * 3))
            #expect(trailer == [UInt8](repeating: 0xa0 + UInt8(index), count: 16))
        }
        #expect(reader.isBetweenFrames)
    }
}
