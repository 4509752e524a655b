/*
 * rc_window.h — how many own payload bytes an origin keeps on their way round the ring: the byte window,
 * sized from what the ring needs rather than fixed. Sans-IO: the engine passes times in; no clock, no
 * allocation, no randomness, so tests drive it deterministically.
 *
 * Why. By Little's law an origin's broadcast-to-stability latency is its bytes in flight divided by its
 * rate. A fixed 1 MiB window at a fair share of 25 Mbit/s (n = k = 5 on 100 Mbit/s) is 0.33 s of queue
 * that adds nothing to throughput: the ring is full with far less. What the ring needs is its
 * bandwidth-delay product: the origin's rate times the time a message needs round the ring when the
 * queues are short, plus a margin for jitter (§2.5.3 counts 2n − 2 link transmissions for the latency of
 * one message on an unloaded ring).
 *
 * How. The ring's delivery rate T (payload bytes per second delivered here, every origin's: the same at
 * every process of a ring) is measured per epoch; the window of each of the k origins active in that
 * epoch is T × delay / k, at least bytes_min. While the ring has room, messages come back in less than
 * `delay`, T grows with the windows and the windows grow by delay / round trip per epoch; once the links
 * are full, T stops at the ring's rate and the queues settle where a message needs about `delay` to come
 * back, whatever the link speed. Below that, a floor covers what a ring needs whatever its rate: room for
 * `messages_min` of the largest application message delivered lately (a process forwards a message only
 * once it has all of it, so large messages need more bytes in flight to keep every link busy), within
 * [bytes_min, floor_bytes_max]. Measured on the emulated 100 Mbit/s LAN (docs/tuning.md): 10 kB messages
 * needed 64 KiB per origin, 100 B messages ran as well with 16 KiB, at a third of the latency.
 *
 * Every origin gets the same window: that is what keeps the shares of §2.5.2 equal. Two designs that
 * looked closer to "the bandwidth-delay product" were measured and dropped (docs/tuning.md):
 *   - a window from the origin's *own* rate lets any split of the ring sustain itself (each origin's rate
 *     is its window over the same round trip): one origin of five took 57 % of the ring;
 *   - a delay from the measured minimum round trip differs between origins (0.2–15 ms on the emulated LAN,
 *     where a token bucket passes a burst at memory speed and an origin whose messages always queue behind
 *     others never sees a short trip), so the windows and the shares differ too. The minimum is still
 *     measured (rtt_min_ns) and reported: it is the unloaded ring, the reference for the latency.
 */
#ifndef RINGCAST_RC_WINDOW_H
#define RINGCAST_RC_WINDOW_H

#include "rc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rc_window_settings {
    uint64_t bytes_min;      /**< the window never goes below this, > 0. */
    uint64_t floor_bytes_max;/**< the floor from the message size never goes above this (the window may). */
    uint32_t messages_min;   /**< the floor: this many of the largest application message delivered lately. */
    uint64_t bytes_max;      /**< the window never goes above this: the engine's window_bytes, which sizes its buffers. */
    uint64_t delay_ns;       /**< target time in flight: the queues' allowance for jitter, > 0. */
    uint64_t epoch_ns;       /**< how often the rate is measured and the window resized. */
} rc_window_settings;

/** Defaults: 6 messages within 16–64 KiB … bytes_max, delay 6 ms, epochs of 50 ms. */
void rc_window_settings_default(rc_window_settings *settings, uint64_t bytes_max);

typedef struct rc_window {
    rc_window_settings settings;
    uint64_t rtt_min_ns;          /**< shortest own round trip (sent → stable) seen; 0 until the first sample. */
    uint64_t epoch_start_ns;
    uint64_t epoch_start_bytes;   /**< delivered bytes (all origins) when the epoch started */
    double rate_previous;         /**< bytes per ns delivered in the previous epoch */
    double rate;                  /**< the larger of the last two epochs' */
    uint32_t largest_epoch;       /**< the largest application message delivered in this epoch */
    uint32_t largest_previous;    /**< ... and in the previous one */
    uint64_t bytes;               /**< the current window */
    uint64_t epochs;
} rc_window;

/** -EINVAL when the settings are inconsistent (min 0, min > floor max > max, no messages, delay 0, epoch 0).
 *  The window starts at floor_bytes_max, until the first epoch has measured the ring. */
int rc_window_init(rc_window *window, const rc_window_settings *settings, uint64_t now_ns);

/** An application message of `length` bytes was delivered (any origin): sizes the floor. A comparison. */
static inline void rc_window_on_delivery(rc_window *window, uint32_t length) {
    if (length > window->largest_epoch) window->largest_epoch = length;
}

/** An own LCR message sent at `sent_ns` became stable at `now_ns`: a round-trip sample (reported, rtt_min_ns). */
void rc_window_on_stable(rc_window *window, uint64_t now_ns, uint64_t sent_ns);

/**
 * Called with the time and the payload bytes delivered so far (every origin); when an epoch has passed,
 * `active_origins` (origins with a delivery in it, ≥ 1 counts) sizes the window. Returns true when the
 * window was resized. Call it often (once per engine pass): between epochs it is a comparison.
 */
bool rc_window_on_progress(rc_window *window, uint64_t now_ns, uint64_t delivered_bytes, uint32_t active_origins);

/** The current window in bytes (bytes_min … bytes_max). */
static inline uint64_t rc_window_bytes(const rc_window *window) { return window->bytes; }


#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_WINDOW_H */
