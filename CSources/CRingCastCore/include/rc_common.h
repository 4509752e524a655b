/*
 * rc_common.h — conventions shared by every RingCast C file.
 *
 * - Errors are returned as negative errno values (`-EINVAL`, `-EAGAIN`, ...); 0 or a positive count
 *   means success. Nothing fails silently.
 * - RC_ASSERT stays on in every build (TigerBeetle style): an invariant that does not hold means the
 *   process state is corrupt, and stopping is safer than delivering out of order.
 */
#ifndef RINGCAST_RC_COMMON_H
#define RINGCAST_RC_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Reports a failed invariant on stderr and aborts. Never compiled out. */
void rc_assert_fail(const char *expression, const char *file, int line, const char *function)
    __attribute__((noreturn));

#define RC_ASSERT(expression)                                                                       \
    ((expression) ? (void)0 : rc_assert_fail(#expression, __FILE__, __LINE__, __func__))

/** Opaque handle for payload bytes owned by the caller (the engine or the simulator). */
typedef uint64_t rc_ref;

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_COMMON_H */
