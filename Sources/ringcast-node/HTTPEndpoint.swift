import Foundation
import RingCast
#if canImport(Glibc)
import Glibc
#endif

/// A tiny blocking HTTP/1.1 responder for `GET /metrics` and `GET /status` (`--metrics-listen`).
///
/// Scrapers ask every few seconds, so one thread that serves one request at a time is enough, and it keeps a web
/// framework (SwiftNIO and what it pulls in) out of the build. Everything is bounded so that a slow or hostile client
/// cannot hold the endpoint: a request head of at most ``requestBytesMax`` bytes, ``ioTimeoutMillis`` to send it and to
/// take the answer, `Connection: close` after each answer, and only `GET`.
final class HTTPEndpoint: @unchecked Sendable {
    struct Response: Sendable {
        var status = "200 OK"
        var contentType = "text/plain; charset=utf-8"
        var body: String
    }

    static let requestBytesMax = 8192
    static let ioTimeoutMillis = 2000

    let address: Address
    private let listenFD: Int32
    private let stopPipe: [Int32]
    private let respond: @Sendable (_ path: String) -> Response?
    private var thread: Thread?

    /// Listens on `address` (port 0 takes a free one; ``address`` tells which).
    /// - Parameter respond: the answer for a path, `nil` for 404; called on the endpoint's thread.
    init(listen: Address, respond: @escaping @Sendable (String) -> Response?) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw NodeRunError.failed("--metrics-listen: socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = listen.port.bigEndian
        guard inet_pton(AF_INET, listen.host, &socketAddress.sin_addr) == 1 else {
            close(fd)
            throw NodeRunError.failed("--metrics-listen: \(listen.host) is not an IPv4 address")
        }
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw NodeRunError.failed("--metrics-listen \(listen): \(reason)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        address = try Address(host: listen.host, port: UInt16(bigEndian: actual.sin_port))
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            close(fd)
            throw NodeRunError.failed("--metrics-listen: pipe: \(String(cString: strerror(errno)))")
        }
        listenFD = fd
        stopPipe = fds
        self.respond = respond
    }

    func start() {
        let thread = Thread { [self] in serve() }
        thread.name = "ringcast-http"
        self.thread = thread
        thread.start()
    }

    /// Stops accepting; a request being answered finishes first (bounded by the I/O timeout).
    func stop() {
        var byte: UInt8 = 1
        _ = write(stopPipe[1], &byte, 1)
    }

    deinit {
        close(listenFD)
        close(stopPipe[0])
        close(stopPipe[1])
    }

    private func serve() {
        while true {
            var fds = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stopPipe[0], events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 2, -1) >= 0 || errno == EINTR else { return }
            if fds[1].revents != 0 { return }
            guard fds[0].revents & Int16(POLLIN) != 0 else { continue }
            let client = accept(listenFD, nil, nil)
            guard client >= 0 else { continue }
            answer(client)
            lingeringClose(client)
        }
    }

    private func answer(_ client: Int32) {
        var timeout = timeval(tv_sec: Self.ioTimeoutMillis / 1000, tv_usec: Int((Self.ioTimeoutMillis % 1000) * 1000))
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let head = Self.readHead(client) else {
            return Self.send(client, Response(status: "400 Bad Request", body: "request head missing or over \(Self.requestBytesMax) bytes\n"))
        }
        let words = head.split(separator: "\r\n", maxSplits: 1).first?.split(separator: " ") ?? []
        guard words.count == 3, words[2].hasPrefix("HTTP/1.") else {
            return Self.send(client, Response(status: "400 Bad Request", body: "not an HTTP/1.x request line\n"))
        }
        guard words[0] == "GET" else {
            return Self.send(client, Response(status: "405 Method Not Allowed", body: "only GET\n"))
        }
        let path = String(words[1].split(separator: "?", maxSplits: 1).first ?? "")
        Self.send(client, respond(path) ?? Response(status: "404 Not Found", body: "try /metrics or /status\n"))
    }

    /// Closing with unread request bytes makes the kernel reset the connection, and the client may lose the answer with
    /// it (an over-long request is answered before it is all read). So: end our side, read what the client still sends
    /// until it closes — at most ``lingerBytesMax`` bytes, each read bounded by the I/O timeout — then close.
    private func lingeringClose(_ client: Int32) {
        shutdown(client, Int32(SHUT_WR))
        var chunk = [UInt8](repeating: 0, count: 4096)
        var drained = 0
        while drained < Self.lingerBytesMax {
            let count = read(client, &chunk, chunk.count)
            guard count > 0 else { break }
            drained += count
        }
        close(client)
    }

    static let lingerBytesMax = 65536

    /// The request head up to the blank line, or nil when it is longer than the limit, the peer closed or timed out.
    private static func readHead(_ client: Int32) -> String? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        while bytes.count < requestBytesMax {
            let count = read(client, &chunk, min(chunk.count, requestBytesMax - bytes.count))
            guard count > 0 else { return nil }
            bytes += chunk[..<count]
            if bytes.count >= 4, bytes.suffix(count + 3).firstRange(of: end) != nil {
                return String(decoding: bytes, as: UTF8.self)
            }
        }
        return nil
    }

    private static func send(_ client: Int32, _ response: Response) {
        let body = Array(response.body.utf8)
        let head = "HTTP/1.1 \(response.status)\r\nContent-Type: \(response.contentType)\r\n"
            + "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        var remaining = Array(head.utf8) + body
        while !remaining.isEmpty {
            let sent = Glibc.send(client, remaining, remaining.count, Int32(MSG_NOSIGNAL))
            guard sent > 0 else { return }
            remaining.removeFirst(sent)
        }
    }

    /// `GET path` from `address`: the body of a 200 answer.
    /// - Throws: `NodeRunError` saying what went wrong (refused, timed out, not 200).
    static func get(_ path: String, from address: Address, timeoutMillis: Int = ioTimeoutMillis) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw NodeRunError.failed("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutMillis / 1000, tv_usec: Int((timeoutMillis % 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = address.port.bigEndian
        guard inet_pton(AF_INET, address.host, &socketAddress.sin_addr) == 1 else {
            throw NodeRunError.failed("\(address.host) is not an IPv4 address")
        }
        // SO_SNDTIMEO bounds connect(2) too (socket(7)).
        let connected = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            throw NodeRunError.failed("cannot reach \(address): \(String(cString: strerror(errno))) (is a ringcast-node running with --metrics-listen \(address)?)")
        }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n\r\n".utf8)
        guard Glibc.send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else {
            throw NodeRunError.failed("\(address): sending the request failed: \(String(cString: strerror(errno)))")
        }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count == 0 { break }
            guard count > 0 else { throw NodeRunError.failed("\(address): no answer within \(timeoutMillis) ms") }
            answer += chunk[..<count]
        }
        let text = String(decoding: answer, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw NodeRunError.failed("\(address): not an HTTP answer") }
        let statusLine = text[..<split.lowerBound].split(separator: "\r\n").first ?? ""
        guard statusLine.split(separator: " ").dropFirst().first == "200" else {
            throw NodeRunError.failed("\(address)\(path): \(statusLine)")
        }
        return String(text[split.upperBound...])
    }
}
