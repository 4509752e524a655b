/*
 * io_events.c — turning connection state into the caller's events.
 *
 * Nothing is queued per event: a connection keeps a few pending bits and the range of released but
 * unreported send tokens, and rc_io_wait turns them into events as long as the caller's array has
 * room. So event storage is bounded by the connections themselves and nothing is ever dropped; what
 * does not fit is reported by the next call. Connections are scanned round-robin for fairness.
 * Per connection the order is: accepted/connected, send completions, data, failure/closed.
 */
#include "io_internal.h"

#include <errno.h>

static bool rc_io_conn_reportable(const rc_io_conn *conn) {
    return conn->state != RC_IO_CONN_FREE && (conn->pending != 0 || conn->q_reported < conn->q_done);
}

bool rc_io_events_ready(const rc_io *io) {
    if (io->wake_pending) return true;
    for (uint32_t id = 0; id < io->settings.conns_max; id++) {
        if (rc_io_conn_reportable(&io->conns[id])) return true;
    }
    return false;
}

static uint32_t rc_io_event_put(rc_io_event *events, uint32_t count, uint32_t type, uint32_t id,
                                int32_t error, uint64_t token) {
    events[count] = (rc_io_event){.type = type, .conn = id, .error = error, .aux = 0, .token = token};
    return count + 1;
}

static uint32_t rc_io_conn_collect(rc_io *io, uint32_t id, rc_io_event *events, uint32_t count, uint32_t max) {
    rc_io_conn *conn = &io->conns[id];
    if (count < max && (conn->pending & RC_IO_PENDING_ACCEPTED)) {
        count = rc_io_event_put(events, count, RC_IO_EVENT_ACCEPTED, id, 0, 0);
        events[count - 1].aux = conn->listener;
        conn->pending &= ~(uint32_t)RC_IO_PENDING_ACCEPTED;
    }
    if (count < max && (conn->pending & RC_IO_PENDING_CONNECTED)) {
        count = rc_io_event_put(events, count, RC_IO_EVENT_CONNECTED, id, 0, 0);
        conn->pending &= ~(uint32_t)RC_IO_PENDING_CONNECTED;
    }
    while (count < max && conn->q_reported < conn->q_done) {
        const rc_io_send_entry *entry = &conn->queue[conn->q_reported % io->settings.send_queue_max];
        int32_t error = conn->q_reported < conn->q_ok_end ? 0 : -ECANCELED;
        count = rc_io_event_put(events, count, RC_IO_EVENT_SEND_DONE, id, error, entry->token);
        conn->q_reported++;
    }
    if (count < max && (conn->pending & RC_IO_PENDING_DATA)) {
        count = rc_io_event_put(events, count, RC_IO_EVENT_DATA, id, 0, 0);
        conn->pending &= ~(uint32_t)RC_IO_PENDING_DATA;
    }
    if (count < max && (conn->pending & RC_IO_PENDING_CONNECT_FAILED)) {
        count = rc_io_event_put(events, count, RC_IO_EVENT_CONNECT_FAILED, id, conn->error, 0);
        conn->pending &= ~(uint32_t)RC_IO_PENDING_CONNECT_FAILED;
    }
    if (count < max && (conn->pending & RC_IO_PENDING_CLOSED) && !(conn->pending & RC_IO_PENDING_DATA)) {
        count = rc_io_event_put(events, count, RC_IO_EVENT_CLOSED, id, conn->error, 0);
        conn->pending &= ~(uint32_t)RC_IO_PENDING_CLOSED;
    }
    return count;
}

uint32_t rc_io_events_collect(rc_io *io, rc_io_event *events, uint32_t max) {
    RC_ASSERT(io != NULL);
    const uint32_t conns_max = io->settings.conns_max;
    uint32_t count = 0;
    if (io->wake_pending && max > 0) {
        events[count++] = (rc_io_event){.type = RC_IO_EVENT_WAKE, .conn = RC_IO_CONN_NONE};
        io->wake_pending = false;
    }
    for (uint32_t k = 0; k < conns_max && count < max; k++) {
        uint32_t id = (io->scan_start + k) % conns_max;
        if (!rc_io_conn_reportable(&io->conns[id])) continue;
        count = rc_io_conn_collect(io, id, events, count, max);
        rc_io_conn_progress(io, id); /* reporting the last token may free a closing id */
    }
    io->scan_start = (io->scan_start + 1u) % conns_max;
    RC_ASSERT(count <= max);
    return count;
}
