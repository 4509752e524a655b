/*
 * sim_world.c — the ring of real LCR cores that both simulators drive, and the bookkeeping around
 * it. Every call on a core follows the caller's duties of rc_lcr.h: after an event the caller sends
 * (rc_lcr_next_frame while the link takes frames) and pulls deliveries; payload handles are ours.
 */
#include "sim_world.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { SIM_VEC_CAPACITY_FIRST = 64 };

int sim_vec_push(sim_vec *vec, uint64_t value) {
    if (vec->length == vec->capacity) {
        const uint64_t capacity = vec->capacity == 0 ? SIM_VEC_CAPACITY_FIRST : vec->capacity * 2;
        uint64_t *items = realloc(vec->items, capacity * sizeof(uint64_t));
        if (items == NULL) return -ENOMEM;
        vec->items = items;
        vec->capacity = capacity;
    }
    vec->items[vec->length++] = value;
    return 0;
}

void sim_vec_free(sim_vec *vec) {
    free(vec->items);
    *vec = (sim_vec){0};
}

int sim_world_init(sim_world *world, uint32_t nodes, const rc_lcr_settings *settings) {
    memset(world, 0, sizeof *world);
    if (nodes < 1 || nodes > RC_SIM_NODES_MAX || settings->nodes != nodes) return -EINVAL;
    world->nodes = nodes;
    world->settings = *settings;
    world->digest = 0xCBF29CE484222325ull; /* FNV-1a 64 offset basis */
    for (uint32_t p = 0; p < nodes; p++) {
        rc_lcr_settings own = *settings;
        own.self = p;
        const size_t size = rc_lcr_memory_size(&own);
        if (size == 0) return -EINVAL;
        /* rc_lcr_init wants 16-byte aligned memory; round the size up as aligned_alloc requires. */
        world->node[p].memory = aligned_alloc(16, (size + 15) & ~(size_t)15);
        if (world->node[p].memory == NULL) return -ENOMEM;
        const int result = rc_lcr_init(&world->node[p].core, world->node[p].memory, size, &own);
        if (result != 0) return result;
    }
    return 0;
}

void sim_world_free(sim_world *world) {
    for (uint32_t p = 0; p < RC_SIM_NODES_MAX; p++) {
        free(world->node[p].memory);
        sim_vec_free(&world->node[p].log);
        sim_vec_free(&world->node[p].log_time);
        sim_vec_free(&world->node[p].own_batches);
        sim_vec_free(&world->holders[p]);
    }
    sim_vec_free(&world->payload);
}

void sim_world_event(sim_world *world, const uint64_t *fields, uint32_t field_count, const char *line) {
    const uint8_t *bytes = (const uint8_t *)fields;
    for (size_t i = 0; i < field_count * sizeof(uint64_t); i++) {
        world->digest = (world->digest ^ bytes[i]) * 0x100000001B3ull; /* FNV-1a 64 prime */
    }
    if (world->trace != NULL && line != NULL) fprintf(world->trace, "%s\n", line);
}

void sim_world_violation(sim_world *world, rc_sim_property property, uint32_t process, rc_sim_id message) {
    if (world->violated_mask == 0) world->first = (rc_sim_violation){property, process, process, message, 0};
    world->violated_mask |= 1u << property;
}

/** Marks that `process` now holds application message `id` (for the uniformity check). */
static int world_hold(sim_world *world, uint32_t process, rc_sim_id id) {
    sim_vec *holders = &world->holders[rc_sim_id_origin(id)];
    const uint64_t seq = rc_sim_id_seq(id);
    while (holders->length < seq) {
        const int result = sim_vec_push(holders, 0);
        if (result != 0) return result;
    }
    holders->items[seq - 1] |= 1ull << process;
    return 0;
}

int sim_world_broadcast(sim_world *world, uint32_t process, uint32_t bytes) {
    RC_ASSERT(process < world->nodes);
    sim_node *node = &world->node[process];
    const rc_sim_id id = rc_sim_id_make(process, node->broadcasts + 1);
    const int result = rc_lcr_broadcast(node->core, id, bytes);
    char line[96] = "";
    if (world->trace != NULL) {
        snprintf(line, sizeof line, "%llu p%u broadcast (%u,%llu) %u B -> %d", (unsigned long long)world->now,
                 process, process, (unsigned long long)rc_sim_id_seq(id), bytes, result);
    }
    const uint64_t fields[] = {1, world->now, process, id, (uint64_t)(int64_t)result};
    sim_world_event(world, fields, 5, line);
    if (result != 0) return result;
    node->broadcasts++;
    return world_hold(world, process, id);
}
