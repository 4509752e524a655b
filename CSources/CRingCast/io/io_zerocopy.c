/*
 * io_zerocopy.c — when a send goes zero-copy, and the `auto` probe.
 *
 * Zero-copy only pays for large sends over a real NIC: the kernel always copies on loopback and veth
 * ("deferred copy", kernel Documentation/networking/msg_zerocopy.rst §Loopback; guide §2 measured 100 %
 * copied), and it costs more CPU per byte than a plain send everywhere the guide measured (§9.1). So:
 *   - only sends ≥ zc_threshold_bytes (16 KiB: "generally only effective at writes over around
 *     10 KB", msg_zerocopy.rst) go zero-copy;
 *   - every zero-copy send asks IORING_SEND_ZC_REPORT_USAGE, whose notification sets bit 31 when any
 *     part was copied (kernel io_uring/notif.c), so the stats can say what really happened;
 *   - `auto` probes the first zc_probe_sends notifications of a connection and switches to copying
 *     sends when ≥ 50 % came back copied (guide §8.5).
 */
#include "io_internal.h"

#include <errno.h>

bool rc_io_zc_wanted(const rc_io *io, const rc_io_conn *conn, uint32_t bytes) {
    RC_ASSERT(io != NULL && conn != NULL);
    if (bytes < io->settings.zc_threshold_bytes) return false;
    switch (conn->zc_mode) {
    case RC_IO_ZEROCOPY_ON: return true;
    case RC_IO_ZEROCOPY_AUTO: return !conn->zc_decided_off;
    default: return false;
    }
}

static void rc_io_zc_probe(const rc_io *io, rc_io_conn *conn, bool copied) {
    const uint32_t probes = io->settings.zc_probe_sends;
    if (conn->zc_decided_off || conn->zc_decided_on) return;
    conn->zc_probed++;
    if (copied) conn->zc_probe_copied++;
    /* Half the probe window copied already: the remaining probes cannot change the outcome. */
    if (2u * conn->zc_probe_copied >= probes) {
        conn->zc_decided_off = true;
    } else if (conn->zc_probed >= probes) {
        conn->zc_decided_on = true;
    }
    RC_ASSERT(!(conn->zc_decided_on && conn->zc_decided_off));
}

void rc_io_zc_on_notification(rc_io *io, rc_io_conn *conn, int32_t res) {
    RC_ASSERT(io != NULL && conn != NULL);
    bool copied = ((uint32_t)res & IORING_NOTIF_USAGE_ZC_COPIED) != 0;
    io->stats.zc_notifications++;
    if (copied) io->stats.zc_copied++;
    if (conn->zc_mode == RC_IO_ZEROCOPY_AUTO) rc_io_zc_probe(io, conn, copied);
}

int rc_io_zerocopy_set(rc_io *io, uint32_t id, int32_t mode) {
    rc_io_conn *conn = rc_io_conn_get(io, id);
    if (conn == NULL || conn->state == RC_IO_CONN_FREE) return -EBADF;
    if (mode < RC_IO_ZEROCOPY_AUTO || mode > RC_IO_ZEROCOPY_OFF) return -EINVAL;
    conn->zc_mode = mode;
    conn->zc_probed = conn->zc_probe_copied = 0;
    conn->zc_decided_off = conn->zc_decided_on = false;
    return 0;
}

int rc_io_zerocopy_state(const rc_io *io, uint32_t id) {
    const rc_io_conn *conn = rc_io_conn_get(io, id);
    if (conn == NULL || conn->state == RC_IO_CONN_FREE) return -EBADF;
    switch (conn->zc_mode) {
    case RC_IO_ZEROCOPY_ON: return RC_IO_ZC_STATE_ON;
    case RC_IO_ZEROCOPY_OFF: return RC_IO_ZC_STATE_OFF;
    default: break;
    }
    if (conn->zc_decided_off) return RC_IO_ZC_STATE_OFF;
    return conn->zc_decided_on ? RC_IO_ZC_STATE_ON : RC_IO_ZC_STATE_PROBING;
}
