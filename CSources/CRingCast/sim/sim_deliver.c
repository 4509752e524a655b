/*
 * sim_deliver.c — duty 2 of rc_lcr.h (pull deliveries) and the checks on them. Each delivered LCR
 * message is unpacked into its application ids, appended to the process's log, and checked against
 * §2.4.2's uniformity argument: a process delivers m only once m is stable, i.e. every process
 * already received m. A delivery before that would break uniform agreement if the deliverer crashed
 * together with the holders, so it is reported even in a run without crashes.
 */
#include "sim_world.h"

#include <errno.h>
#include <stdio.h>

static int deliver_one(sim_world *world, uint32_t process, rc_sim_id id) {
    sim_node *node = &world->node[process];
    const uint32_t origin = rc_sim_id_origin(id);
    const uint64_t seq = rc_sim_id_seq(id);
    char line[96] = "";
    if (world->trace != NULL) {
        snprintf(line, sizeof line, "%llu p%u deliver (%u,%llu)", (unsigned long long)world->now, process,
                 origin, (unsigned long long)seq);
    }
    sim_world_event(world, (const uint64_t[]){3, world->now, process, id}, 4, line);
    if (origin >= world->nodes || seq == 0 || seq > world->holders[origin].length) {
        /* Not ours: integrity will report it from the log. */
    } else if (world->holders[origin].items[seq - 1] != (1ull << world->nodes) - 1) {
        sim_world_violation(world, RC_SIM_PROPERTY_UNIFORMITY, process, id);
    }
    if (origin < world->nodes) node->delivered_from[origin]++;
    int result = sim_vec_push(&node->log, id);
    if (result == 0) result = sim_vec_push(&node->log_time, world->now);
    return result;
}

int64_t sim_world_deliver(sim_world *world, uint32_t process) {
    RC_ASSERT(process < world->nodes);
    sim_node *node = &world->node[process];
    int64_t delivered = 0;
    rc_lcr_message message;
    while (rc_lcr_next_deliveries(node->core, &message, 1) == 1) {
        RC_ASSERT(message.count >= 1);
        /* A received message's ref is our payload offset; an own one is found by its seq (sim_world.h). */
        uint64_t offset = message.ref;
        if (message.own) {
            RC_ASSERT(message.origin == process && message.seq >= 1 && message.seq <= node->own_batches.length);
            offset = node->own_batches.items[message.seq - 1];
        }
        RC_ASSERT(offset + message.count <= world->payload.length);
        for (uint32_t k = 0; k < message.count; k++) {
            const int result = deliver_one(world, process, world->payload.items[offset + k]);
            if (result != 0) return result;
            delivered++;
        }
    }
    return delivered;
}

int sim_world_check(const sim_world *world, bool quiescent, rc_sim_violation *first) {
    const rc_sim_id *logs[RC_SIM_NODES_MAX];
    uint64_t lengths[RC_SIM_NODES_MAX];
    uint64_t broadcasts[RC_SIM_NODES_MAX];
    for (uint32_t p = 0; p < world->nodes; p++) {
        logs[p] = world->node[p].log.items;
        lengths[p] = world->node[p].log.length;
        broadcasts[p] = world->node[p].broadcasts;
    }
    const rc_sim_logs view = {
        .nodes = world->nodes, .log = logs, .log_length = lengths, .broadcast_count = broadcasts,
        .correct_mask = (1u << world->nodes) - 1, .quiescent = quiescent,
    };
    rc_sim_violation found = {0};
    const int result = rc_sim_check(&view, &found);
    if (result < 0) return result;
    /* Violations seen while running come first: they happened before the logs were complete. */
    if (world->violated_mask != 0) found = world->first;
    if (first != NULL) *first = found;
    return result + __builtin_popcount(world->violated_mask);
}
