/* common.c — the always-on assertion handler (see rc_common.h). */
#include "rc_common.h"

#include <stdio.h>
#include <stdlib.h>

void rc_assert_fail(const char *expression, const char *file, int line, const char *function) {
    fprintf(stderr, "ringcast: invariant failed: %s (%s:%d, %s)\n", expression, file, line, function);
    fflush(stderr);
    abort();
}
