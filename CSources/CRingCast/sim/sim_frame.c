/*
 * sim_frame.c — frames between simulated processes. rc_lcr_next_frame returns a frame whose clock
 * and ACKs live in core memory until the next call, so the simulator copies them into a sim_frame
 * that can wait on a link. An own message names its batch by send-queue index (rc_lcr.h); the
 * simulator copies the batch's application ids into its payload store and from then on the message
 * is named by that store offset, the handle the successor's core will hand back when forwarding.
 */
#include "sim_world.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/** Appends the ids of an own batch to the payload store; returns the batch's offset in `*payload`. */
static int frame_store_batch(sim_world *world, uint32_t process, const rc_lcr_message *message,
                             rc_ref *payload) {
    sim_node *node = &world->node[process];
    const rc_lcr *core = node->core;
    *payload = world->payload.length;
    /* Own LCR messages leave in seq order (Fig. 2.5 line 6), so the vector index is seq - 1. */
    RC_ASSERT(message->seq == node->own_batches.length + 1);
    int result = sim_vec_push(&node->own_batches, *payload);
    if (result != 0) return result;
    for (uint32_t k = 0; k < message->count; k++) {
        const rc_lcr_app app = rc_lcr_app_at(core, message->ref + k);
        /* An own batch holds only this process's messages (rc_lcr.h: one origin per LCR message). */
        RC_ASSERT(rc_sim_id_origin(app.ref) == process);
        result = sim_vec_push(&world->payload, app.ref);
        if (result != 0) return result;
    }
    return 0;
}

static void frame_trace(sim_world *world, const char *verb, uint32_t process, const sim_frame *frame,
                        int result) {
    char line[512];
    int used = snprintf(line, sizeof line, "%llu p%u %s", (unsigned long long)world->now, process, verb);
    if (frame->has_message) {
        used += snprintf(line + used, sizeof line - (size_t)used, " msg(o=%u seq=%llu count=%u burst=%u C=[",
                         frame->origin, (unsigned long long)frame->seq, frame->count, frame->burst_size);
        for (uint32_t p = 0; p < world->nodes && used < (int)sizeof line - 64; p++) {
            used += snprintf(line + used, sizeof line - (size_t)used, p == 0 ? "%llu" : ",%llu",
                             (unsigned long long)frame->clock[p]);
        }
        used += snprintf(line + used, sizeof line - (size_t)used, "])");
    }
    for (uint32_t a = 0; a < frame->ack_count && used < (int)sizeof line - 40; a++) {
        used += snprintf(line + used, sizeof line - (size_t)used, " ack(o=%u seq=%llu)", frame->acks[a].origin,
                         (unsigned long long)frame->acks[a].seq);
    }
    if (result != 1 && used < (int)sizeof line - 16) snprintf(line + used, sizeof line - (size_t)used, " -> %d", result);
    sim_world_event(world, (const uint64_t[]){2, world->now, process, frame->has_message, frame->origin,
                                              frame->seq, frame->ack_count, (uint64_t)(int64_t)result},
                    8, line);
}

int sim_world_take_frame(sim_world *world, uint32_t process, sim_frame *frame) {
    RC_ASSERT(process < world->nodes);
    rc_lcr_frame out;
    memset(&out, 0, sizeof out);
    if (rc_lcr_next_frame(world->node[process].core, &out) == 0) return 0;
    RC_ASSERT(out.ack_count <= world->nodes);
    memset(frame, 0, sizeof *frame);
    frame->has_message = out.has_message;
    if (out.has_message) {
        const rc_lcr_message *message = &out.message;
        RC_ASSERT(message->origin < world->nodes && message->count >= 1);
        frame->origin = message->origin;
        frame->seq = message->seq;
        frame->burst_size = message->burst_size;
        frame->count = message->count;
        frame->bytes = message->bytes;
        memcpy(frame->clock, message->clock, world->nodes * sizeof(uint64_t));
        frame->payload = message->ref;
        if (message->own) {
            const int result = frame_store_batch(world, process, message, &frame->payload);
            if (result != 0) return result;
        }
    } else {
        world->ack_only_frames++;
    }
    frame->ack_count = out.ack_count;
    if (out.ack_count > 0) memcpy(frame->acks, out.acks, out.ack_count * sizeof(rc_lcr_ack));
    frame_trace(world, "send", process, frame, 1);
    return 1;
}

/** Marks every application message of an accepted batch as held by `process`. */
static int frame_hold_batch(sim_world *world, uint32_t process, const sim_frame *frame) {
    for (uint32_t k = 0; k < frame->count; k++) {
        const rc_sim_id id = world->payload.items[frame->payload + k];
        sim_vec *holders = &world->holders[rc_sim_id_origin(id)];
        const uint64_t seq = rc_sim_id_seq(id);
        /* The origin marked it at broadcast, so the entry exists. */
        RC_ASSERT(seq >= 1 && seq <= holders->length);
        holders->items[seq - 1] |= 1ull << process;
    }
    return 0;
}

int sim_world_give_frame(sim_world *world, uint32_t process, const sim_frame *frame) {
    RC_ASSERT(process < world->nodes);
    rc_lcr_frame in;
    memset(&in, 0, sizeof in);
    in.has_message = frame->has_message;
    if (frame->has_message) {
        RC_ASSERT(frame->payload + frame->count <= world->payload.length);
        in.message = (rc_lcr_message){
            .origin = frame->origin, .seq = frame->seq, .burst_size = frame->burst_size,
            .count = frame->count, .bytes = frame->bytes, .clock = frame->clock, .own = false,
            .ref = frame->payload,
        };
    }
    in.ack_count = frame->ack_count;
    in.acks = frame->acks;
    bool forwarded = false;
    const int result = rc_lcr_on_frame(world->node[process].core, &in, &forwarded, NULL);
    frame_trace(world, "receive", process, frame, result);
    if (result == -EAGAIN) {
        world->frames_refused++;
    } else if (result != 0) {
        /* A correct predecessor in a failure-free run never sends a frame the core must reject. */
        sim_world_violation(world, RC_SIM_PROPERTY_PROTOCOL, process, 0);
    } else if (frame->has_message) {
        return frame_hold_batch(world, process, frame);
    }
    return result;
}
