/*
 * io_slots.c — the two getters every io file uses: a connection by id, and a submission queue entry.
 * They sit below the dispatcher (io_ring.c) so that no two io files call each other in a circle.
 */
#include "io_internal.h"

#include <errno.h>

rc_io_conn *rc_io_conn_get(const rc_io *io, uint32_t id) {
    if (io == NULL || id >= io->settings.conns_max) return NULL;
    return &io->conns[id];
}

struct io_uring_sqe *rc_io_sqe_get(rc_io *io) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
    if (sqe == NULL) {
        /* SQ full: submit what is there to make room (never drop an operation). */
        int rc = io_uring_submit(&io->ring);
        RC_ASSERT(rc >= 0 || rc == -EBUSY || rc == -EAGAIN);
        sqe = io_uring_get_sqe(&io->ring);
    }
    RC_ASSERT(sqe != NULL);
    return sqe;
}
