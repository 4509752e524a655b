/*
 * chain_tick.c — the core's one clock input (rc_chain_on_tick): ticks come from the driver (the engine's timer or
 * the simulator), never from a clock read inside the core. Each tick drives what is periodic: checkpoint
 * retransmissions (chain_checkpoint.c, spec §14) and FETCH rounds for init-history bodies (chain_init.c, §12).
 * Kept apart so that neither of those files calls the other.
 */
#include "chain_internal.h"

void rc_chain_on_tick(rc_chain *core) {
    RC_ASSERT(core != NULL);
    core->ticks++;
    chain_init_on_tick(core);
    chain_checkpoint_on_tick(core);
}
