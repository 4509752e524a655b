/*
 * io_addr.c — socket addresses and per-socket options.
 *
 * Only literal addresses and "localhost": no DNS on an engine thread (a resolver call can block for
 * seconds), and the LAN tools address nodes by literal IPs anyway.
 */
#include "io_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

_Static_assert(sizeof(struct sockaddr_in6) <= sizeof(((rc_io_addr *)0)->bytes), "rc_io_addr holds IPv6");

int rc_io_addr_parse(const char *host, uint16_t port, rc_io_addr *out) {
    RC_ASSERT(out != NULL);
    memset(out, 0, sizeof *out);
    if (host == NULL) return -EINVAL;
    if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
    struct sockaddr_in v4;
    memset(&v4, 0, sizeof v4);
    if (inet_pton(AF_INET, host, &v4.sin_addr) == 1) {
        v4.sin_family = AF_INET;
        v4.sin_port = htons(port);
        memcpy(out->bytes, &v4, sizeof v4);
        out->length = sizeof v4;
        return 0;
    }
    struct sockaddr_in6 v6;
    memset(&v6, 0, sizeof v6);
    if (inet_pton(AF_INET6, host, &v6.sin6_addr) == 1) {
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons(port);
        memcpy(out->bytes, &v6, sizeof v6);
        out->length = sizeof v6;
        return 0;
    }
    return -EINVAL;
}

uint16_t rc_io_addr_port(const rc_io_addr *addr) {
    RC_ASSERT(addr != NULL);
    RC_ASSERT(addr->length <= sizeof addr->bytes);
    sa_family_t family;
    memcpy(&family, addr->bytes, sizeof family);
    if (family == AF_INET) return ntohs(((const struct sockaddr_in *)(const void *)addr->bytes)->sin_port);
    if (family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)(const void *)addr->bytes)->sin6_port);
    return 0;
}

/*
 * TCP_NODELAY: the application batches already, and Nagle only delays sub-MSS tails (guide §8.4,
 * netperf.texi -D). TCP_CONGESTION per socket: the guide forced cubic because BBR, this VM's default,
 * made loopback bimodal (guide §6); the engine measured better with cubic on the emulated LAN too.
 */
int rc_io_socket_configure(rc_io *io, int fd) {
    RC_ASSERT(io != NULL);
    RC_ASSERT(fd >= 0);
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) return -errno;
    size_t length = strlen(io->settings.congestion);
    if (length > 0 &&
        setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, io->settings.congestion, (socklen_t)length) < 0) {
        int error = errno;
        bool refused = error == EPERM || error == ENOENT;
        if (!refused || !io->settings.congestion_fallback) return -error;
        io->stats.congestion_refused++;
    }
    /* TCP_NOTSENT_LOWAT keeps the kernel from queueing megabytes ahead of the wire (tcp(7)): a send
     * then completes only when the data is about to leave, so the caller decides what goes next (LCR's
     * fairness) close to when it really goes. */
    int lowat = (int)io->settings.notsent_lowat;
    if (lowat > 0 && setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat) < 0) return -errno;
    return 0;
}
