/*
 * sim_check.c — property checkers over delivery logs: the four properties of uniform total order
 * broadcast stated at the start of §2.4 (thesis 001_…): validity, integrity, uniform agreement and
 * total order. They read only the logs and what was broadcast, so they judge any implementation, and
 * they take the set of correct processes so that runs with crashes can be judged by the same code.
 */
#include "rc_sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/** Scratch state of one check: a dense index per message and each process's position of it. */
typedef struct check_state {
    const rc_sim_logs *logs;
    uint64_t base[RC_SIM_NODES_MAX]; /**< dense index of (o, 1) */
    uint64_t total;                  /**< messages broadcast, all origins */
    uint64_t *position[RC_SIM_NODES_MAX]; /**< position[p][index] = 1 + place in p's log, 0 = absent */
    uint32_t violated_mask;          /**< bit per rc_sim_property */
    rc_sim_violation first;
} check_state;

const char *rc_sim_property_name(rc_sim_property property) {
    switch (property) {
    case RC_SIM_PROPERTY_NONE: return "none";
    case RC_SIM_PROPERTY_VALIDITY: return "validity";
    case RC_SIM_PROPERTY_INTEGRITY: return "integrity";
    case RC_SIM_PROPERTY_AGREEMENT: return "uniform_agreement";
    case RC_SIM_PROPERTY_TOTAL_ORDER: return "total_order";
    case RC_SIM_PROPERTY_UNIFORMITY: return "uniformity";
    case RC_SIM_PROPERTY_LIVENESS: return "liveness";
    case RC_SIM_PROPERTY_PROTOCOL: return "protocol";
    case RC_SIM_PROPERTY_COUNT: break;
    }
    return "unknown";
}

static void check_report(check_state *state, rc_sim_property property, uint32_t process,
                         uint32_t other_process, rc_sim_id message, rc_sim_id other_message) {
    if (state->violated_mask == 0) {
        state->first = (rc_sim_violation){property, process, other_process, message, other_message};
    }
    state->violated_mask |= 1u << property;
}

/** Dense index of `id`, or UINT64_MAX when nobody broadcast it. */
static uint64_t check_index(const check_state *state, rc_sim_id id) {
    const uint32_t origin = rc_sim_id_origin(id);
    const uint64_t seq = rc_sim_id_seq(id);
    if (id == 0 || origin >= state->logs->nodes) return UINT64_MAX;
    if (seq == 0 || seq > state->logs->broadcast_count[origin]) return UINT64_MAX;
    return state->base[origin] + seq - 1;
}

/** Integrity: nothing delivered twice, nothing delivered that was not broadcast. Fills positions. */
static void check_integrity(check_state *state) {
    const rc_sim_logs *logs = state->logs;
    for (uint32_t p = 0; p < logs->nodes; p++) {
        for (uint64_t k = 0; k < logs->log_length[p]; k++) {
            const rc_sim_id id = logs->log[p][k];
            const uint64_t index = check_index(state, id);
            if (index == UINT64_MAX) {
                check_report(state, RC_SIM_PROPERTY_INTEGRITY, p, p, id, 0);
            } else if (state->position[p][index] != 0) {
                check_report(state, RC_SIM_PROPERTY_INTEGRITY, p, p, id, id);
            } else {
                state->position[p][index] = k + 1;
            }
        }
    }
}

/** Validity: a correct process delivers every message it broadcast (liveness: quiescent runs only). */
static void check_validity(check_state *state) {
    const rc_sim_logs *logs = state->logs;
    for (uint32_t p = 0; p < logs->nodes; p++) {
        if ((logs->correct_mask & (1u << p)) == 0) continue;
        for (uint64_t seq = 1; seq <= logs->broadcast_count[p]; seq++) {
            if (state->position[p][state->base[p] + seq - 1] == 0) {
                check_report(state, RC_SIM_PROPERTY_VALIDITY, p, p, rc_sim_id_make(p, seq), 0);
                return;
            }
        }
    }
}

/** Uniform agreement: whatever any process (crashed or not) delivered, every correct one delivered. */
static void check_agreement(check_state *state) {
    const rc_sim_logs *logs = state->logs;
    for (uint32_t p = 0; p < logs->nodes; p++) {
        for (uint64_t k = 0; k < logs->log_length[p]; k++) {
            const uint64_t index = check_index(state, logs->log[p][k]);
            if (index == UINT64_MAX) continue;
            for (uint32_t q = 0; q < logs->nodes; q++) {
                if ((logs->correct_mask & (1u << q)) == 0 || state->position[q][index] != 0) continue;
                check_report(state, RC_SIM_PROPERTY_AGREEMENT, q, p, logs->log[p][k], 0);
                return;
            }
        }
    }
}

/**
 * Total order, one direction: for every message m that both `j` and `i` delivered, everything `j`
 * delivered before m was delivered by `i` before m. Checked for (i, j) and (j, i), this makes the
 * two prefixes before m the same set, which is the thesis's definition (§2.4): if p_i delivers m
 * without having delivered m', no p_j delivers m' before m.
 */
static bool check_order_pair(check_state *state, uint32_t j, uint32_t i) {
    const rc_sim_logs *logs = state->logs;
    uint64_t prefix_max = 0;   /* largest position in i's log among j's prefix */
    rc_sim_id prefix_max_id = 0;
    rc_sim_id prefix_absent = 0; /* first message of j's prefix that i never delivered */
    for (uint64_t k = 0; k < logs->log_length[j]; k++) {
        const rc_sim_id id = logs->log[j][k];
        const uint64_t index = check_index(state, id);
        if (index == UINT64_MAX || state->position[j][index] != k + 1) continue; /* integrity's job */
        const uint64_t at_i = state->position[i][index];
        if (at_i != 0 && (prefix_absent != 0 || prefix_max > at_i)) {
            const rc_sim_id other = prefix_absent != 0 ? prefix_absent : prefix_max_id;
            check_report(state, RC_SIM_PROPERTY_TOTAL_ORDER, j, i, id, other);
            return false;
        }
        if (at_i == 0 && prefix_absent == 0) prefix_absent = id;
        if (at_i > prefix_max) {
            prefix_max = at_i;
            prefix_max_id = id;
        }
    }
    return true;
}

static void check_total_order(check_state *state) {
    const uint32_t nodes = state->logs->nodes;
    for (uint32_t j = 0; j < nodes; j++) {
        for (uint32_t i = 0; i < nodes; i++) {
            if (i != j && !check_order_pair(state, j, i)) return;
        }
    }
}

static int check_prepare(check_state *state, const rc_sim_logs *logs) {
    memset(state, 0, sizeof *state);
    state->logs = logs;
    if (logs->nodes == 0 || logs->nodes > RC_SIM_NODES_MAX) return -EINVAL;
    if (logs->log == NULL || logs->log_length == NULL || logs->broadcast_count == NULL) return -EINVAL;
    for (uint32_t o = 0; o < logs->nodes; o++) {
        state->base[o] = state->total;
        state->total += logs->broadcast_count[o];
    }
    for (uint32_t p = 0; p < logs->nodes; p++) {
        if (logs->log_length[p] > 0 && logs->log[p] == NULL) return -EINVAL;
        state->position[p] = calloc(state->total + 1, sizeof(uint64_t));
        if (state->position[p] == NULL) return -ENOMEM;
    }
    return 0;
}

int rc_sim_check(const rc_sim_logs *logs, rc_sim_violation *first) {
    if (logs == NULL) return -EINVAL;
    check_state *state = malloc(sizeof *state);
    if (state == NULL) return -ENOMEM;
    int result = check_prepare(state, logs);
    if (result == 0) {
        check_integrity(state);
        if (logs->quiescent) {
            check_validity(state);
            check_agreement(state);
        }
        check_total_order(state);
        result = __builtin_popcount(state->violated_mask);
        if (first != NULL) *first = state->first;
    }
    for (uint32_t p = 0; p < RC_SIM_NODES_MAX; p++) free(state->position[p]);
    free(state);
    return result;
}
