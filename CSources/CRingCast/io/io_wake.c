/*
 * io_wake.c — waking the engine thread from another thread.
 *
 * With SINGLE_ISSUER|DEFER_TASKRUN only the owner thread may touch the ring (guide §5: -EEXIST
 * otherwise), yet Swift threads must be able to say "a broadcast is queued" (ARCHITECTURE §2: bounded
 * queues plus an eventfd wake-up). So the ring keeps one IORING_OP_READ of an eventfd in flight, and
 * rc_io_wake only write(2)s to that eventfd, which is safe from any thread (man 2 eventfd). Wakes that
 * arrive while one is pending coalesce into one event: the eventfd counter sums them.
 */
#include "io_internal.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RC_IO_WAKE_ID 0xffffu

int rc_io_wake_open(rc_io *io) {
    RC_ASSERT(io != NULL);
    io->wake_fd = eventfd(0, EFD_CLOEXEC);
    return io->wake_fd < 0 ? -errno : 0;
}

void rc_io_wake_arm(rc_io *io) {
    if (io->wake_armed || io->wake_fd < 0) return;
    struct io_uring_sqe *sqe = rc_io_sqe_get(io);
    io_uring_prep_read(sqe, io->wake_fd, &io->wake_value, sizeof io->wake_value, 0);
    io_uring_sqe_set_data64(sqe, rc_io_user_data(RC_IO_OP_WAKE, RC_IO_WAKE_ID, 0, 0));
    io->wake_armed = true;
}

void rc_io_on_wake(rc_io *io, int32_t res) {
    RC_ASSERT(io->wake_armed);
    io->wake_armed = false;
    if (res == (int32_t)sizeof io->wake_value) io->wake_pending = true;
}

int rc_io_wake(rc_io *io) {
    RC_ASSERT(io != NULL);
    uint64_t one = 1;
    ssize_t written = write(io->wake_fd, &one, sizeof one);
    if (written == (ssize_t)sizeof one) return 0;
    return written < 0 ? -errno : -EIO;
}

/* Cancels the eventfd read (its CQE is waited for by rc_io_destroy) and closes the eventfd afterwards. */
void rc_io_wake_close(rc_io *io) {
    if (io->wake_armed) {
        struct io_uring_sqe *sqe = rc_io_sqe_get(io);
        io_uring_prep_cancel64(sqe, rc_io_user_data(RC_IO_OP_WAKE, RC_IO_WAKE_ID, 0, 0), 0);
        io_uring_sqe_set_data64(sqe, rc_io_user_data(RC_IO_OP_CANCEL, RC_IO_WAKE_ID, 0, 0));
    }
}
