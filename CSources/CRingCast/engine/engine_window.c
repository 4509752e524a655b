/*
 * engine_window.c — the byte window sized from the ring's delivery rate (rc_window.h says why). Pure
 * arithmetic on times and counts the engine passes in.
 */
#include "rc_window.h"

#include <errno.h>
#include <string.h>

void rc_window_settings_default(rc_window_settings *s, uint64_t bytes_max) {
    memset(s, 0, sizeof(*s));
    /* On the emulated 100 Mbit/s LAN (n = k = 5; docs/tuning.md): with 10 kB messages fixed windows of 32 and
     * 48 KiB left the links idle (efficiency 0.69–0.91), 64 KiB (6.5 messages) did not (0.97–0.99); with 100 B
     * messages 16 KiB kept 0.92 at p50 13 ms, where 64 KiB held 33 ms. */
    s->floor_bytes_max = bytes_max < (64u << 10) ? bytes_max : (64u << 10);
    s->bytes_min = s->floor_bytes_max < (16u << 10) ? s->floor_bytes_max : (16u << 10);
    s->messages_min = 6;
    s->bytes_max = bytes_max;
    /* 6 ms of queue: a few scheduler wake-ups on a busy host, about one 64 KiB frame per hop at 1 Gbit/s. */
    s->delay_ns = 6000000;
    s->epoch_ns = 50000000;
}

int rc_window_init(rc_window *w, const rc_window_settings *s, uint64_t now_ns) {
    if (s->bytes_min < 1 || s->bytes_min > s->floor_bytes_max || s->floor_bytes_max > s->bytes_max) return -EINVAL;
    if (s->messages_min < 1 || s->delay_ns < 1 || s->epoch_ns < 1) return -EINVAL;
    memset(w, 0, sizeof(*w));
    w->settings = *s;
    w->bytes = s->floor_bytes_max;
    w->epoch_start_ns = now_ns;
    return 0;
}

void rc_window_on_stable(rc_window *w, uint64_t now_ns, uint64_t sent_ns) {
    RC_ASSERT(now_ns >= sent_ns);
    uint64_t rtt = now_ns - sent_ns;
    if (rtt == 0) rtt = 1;
    if (w->rtt_min_ns == 0 || rtt < w->rtt_min_ns) w->rtt_min_ns = rtt;
}

bool rc_window_on_progress(rc_window *w, uint64_t now_ns, uint64_t delivered_bytes, uint32_t active_origins) {
    RC_ASSERT(delivered_bytes >= w->epoch_start_bytes);
    if (now_ns < w->epoch_start_ns || now_ns - w->epoch_start_ns < w->settings.epoch_ns) return false;
    double rate = (double)(delivered_bytes - w->epoch_start_bytes) / (double)(now_ns - w->epoch_start_ns);
    /* The larger of two epochs: an epoch can only understate the ring's rate (a stall, a view starting). */
    w->rate = rate > w->rate_previous ? rate : w->rate_previous;
    w->rate_previous = rate;
    w->epoch_start_ns = now_ns;
    w->epoch_start_bytes = delivered_bytes;
    w->epochs++;
    const rc_window_settings *s = &w->settings;
    uint64_t largest = w->largest_epoch > w->largest_previous ? w->largest_epoch : w->largest_previous;
    w->largest_previous = w->largest_epoch;
    w->largest_epoch = 0;
    uint64_t floor = largest * s->messages_min;
    floor = floor < s->bytes_min ? s->bytes_min : floor > s->floor_bytes_max ? s->floor_bytes_max : floor;
    double target = w->rate * (double)s->delay_ns / (double)(active_origins > 0 ? active_origins : 1);
    w->bytes = target < (double)floor ? floor
             : target > (double)s->bytes_max ? s->bytes_max
                                             : (uint64_t)target;
    RC_ASSERT(w->bytes >= s->bytes_min && w->bytes <= s->bytes_max);
    return true;
}
