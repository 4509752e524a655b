/*
 * engine_views.c — the application messages of one LCR message, as views of their bytes: an own
 * message's from the broadcaster's memory (`apps`, the mirror of the core's send queue), a received
 * one's in place in the receive buffer. Delivery (engine_deliver.c) and the freeze's export of pending
 * (engine_freeze.c) both walk a message this way.
 */
#include "engine_internal.h"

void engine_app_views_init(engine_app_views *views, rc_engine *engine, uint32_t origin, bool own, uint64_t ref,
                           uint32_t count) {
    RC_ASSERT(count >= 1 && count <= engine->settings.batch_count_max);
    *views = (engine_app_views){.engine = engine, .origin = origin, .own = own, .ref = ref, .count = count};
    if (!own) {
        uint32_t body_bytes = 0;
        const uint8_t *body = engine_record_body(engine, ref, &body_bytes);
        rc_wire_app_iter_init(&views->wire, body, body_bytes);
    }
}

bool engine_app_views_next(engine_app_views *views, rc_engine_delivery *out) {
    if (views->next == views->count) return false;
    if (views->own) {
        const engine_app *app = &views->engine->apps[(views->ref + views->next) % views->engine->settings.window];
        *out = (rc_engine_delivery){
            .bytes = app->bytes, .length = app->length, .origin = views->origin, .token = app->token, .own = true,
        };
    } else {
        const uint8_t *bytes;
        uint32_t length;
        bool found = rc_wire_app_next(&views->wire, &bytes, &length);
        RC_ASSERT(found); /* the wire decoder checked that the block holds `count` application messages */
        *out = (rc_engine_delivery){.bytes = bytes, .length = length, .origin = views->origin};
    }
    views->next++;
    return true;
}
