/*
 * engine_auth.c — the ring's authenticated links (rc_auth.h). With an auth mode other than NONE, a
 * connection is neither the predecessor nor the successor until its handshake is done: the engine runs the
 * sans-IO handshake over the transport's bytes (rc_io_recv_peek / _consume, rc_io_send), so nothing a
 * connection sends reaches the LCR core before its peer proved the cluster key and its identity (the
 * expected predecessor or successor: node id and incarnation). A connection that fails, or does not finish
 * within auth_timeout_ms, is closed and counted (auth_rejected); our own successor failing it fails the ring
 * (the membership layer above then treats the link as lost). With FRAMES, the handshake's session keys key
 * the frame MACs of both directions (engine_send.c tags, engine_recv.c verifies).
 */
#include "engine_internal.h"

#include <errno.h>
#include <string.h>

bool engine_auth_enabled(const rc_engine *engine) {
    return engine->settings.auth.mode != RC_AUTH_MODE_NONE && engine->settings.nodes > 1;
}

/* Hands what the handshake has to say to the transport; its memory stays in the link (ENGINE_TOKEN_AUTH). */
static int link_flush(rc_engine *engine, uint32_t conn) {
    rc_auth_handshake *handshake = &engine->auth_links[conn].handshake;
    uint32_t length = 0;
    const uint8_t *bytes = rc_auth_handshake_output(handshake, &length);
    if (length == 0) return 0;
    int rc = rc_io_send(engine->io, conn, bytes, length, ENGINE_TOKEN(ENGINE_TOKEN_AUTH, conn));
    if (rc < 0) return rc;
    rc_auth_handshake_output_advance(handshake, length);
    engine->stats.bytes_out += length; /* what the transport sends: the unsent-bytes check (engine_send.c) counts on it */
    return 0;
}

/* Closes a connection whose handshake failed; our own successor failing it stops the ring. */
static void link_fail(rc_engine *engine, uint32_t conn, int error) {
    engine_auth_link *link = &engine->auth_links[conn];
    link->active = false;
    engine->stats.auth_rejected++;
    rc_io_close(engine->io, conn);
    engine_stats_publish(engine, engine_now_ns(), true); /* a ring that never runs publishes nothing else */
    if (link->successor) {
        int expected = RC_ENGINE_LINK_NONE;
        atomic_compare_exchange_strong(&engine->lost_link, &expected, RC_ENGINE_LINK_SUCCESSOR);
        engine_fail(engine, error <= RC_AUTH_ERROR_MALFORMED || error >= 0 ? -EACCES : error);
    }
}

static void link_start(rc_engine *engine, uint32_t conn, bool successor) {
    if (conn >= ENGINE_CONNS_MAX) { /* the transport has no more ids than that (io_setup) */
        engine->stats.auth_rejected++;
        rc_io_close(engine->io, conn);
        return;
    }
    engine_auth_link *link = &engine->auth_links[conn];
    rc_auth_config config = engine->settings.auth;
    config.channel = RC_AUTH_CHANNEL_RING;
    config.expect_node = successor ? engine->settings.successor_node : engine->settings.predecessor_node;
    config.expect_incarnation = successor ? engine->settings.successor_incarnation
                                          : engine->settings.predecessor_incarnation;
    uint8_t nonce[RC_AUTH_NONCE_BYTES];
    link->successor = successor;
    link->deadline_ns = engine_now_ns() + (uint64_t)engine->settings.auth_timeout_ms * 1000000u;
    int rc = rc_auth_random(nonce, sizeof nonce);
    if (rc == 0) rc = rc_auth_handshake_init(&link->handshake, &config, successor, nonce);
    link->active = rc == 0;
    if (rc == 0) rc = link_flush(engine, conn);
    if (rc < 0) link_fail(engine, conn, rc);
}

void engine_auth_on_accepted(rc_engine *engine, uint32_t conn) {
    if (engine->predecessor_conn >= 0) { /* the predecessor proved itself already: nobody else may connect */
        engine->stats.connections_refused++;
        rc_io_close(engine->io, conn);
        return;
    }
    link_start(engine, conn, false);
}

void engine_auth_on_connected(rc_engine *engine, uint32_t conn) { link_start(engine, conn, true); }

/* The handshake is done: the connection becomes the link it proved to be. */
static int link_done(rc_engine *engine, uint32_t conn) {
    engine_auth_link *link = &engine->auth_links[conn];
    link->active = false;
    bool frames = engine->settings.auth.mode == RC_AUTH_MODE_FRAMES;
    if (!link->successor && engine->predecessor_conn >= 0) { /* two proved predecessors: keep the first */
        engine->stats.connections_refused++;
        rc_io_close(engine->io, conn);
        return 0;
    }
    engine->stats.auth_handshakes++;
    engine_stats_publish(engine, engine_now_ns(), true);
    int rc = 0;
    bool sealed = engine->settings.auth.mode == RC_AUTH_MODE_ENCRYPT;
    if (link->successor) {
        if (frames) rc = rc_auth_mac_create(&engine->mac_send, link->handshake.key_send);
        if (sealed) rc = rc_auth_seal_create(&engine->seal_send, link->handshake.key_send, true);
        engine->successor_conn = (int)conn;
    } else {
        if (frames) rc = rc_auth_mac_create(&engine->mac_recv, link->handshake.key_recv);
        if (sealed) rc = rc_auth_seal_create(&engine->seal_recv, link->handshake.key_recv, false);
        engine->predecessor_conn = (int)conn;
    }
    return rc;
}

bool engine_auth_on_data(rc_engine *engine, uint32_t conn) {
    if (conn >= ENGINE_CONNS_MAX || !engine->auth_links[conn].active) return false;
    engine_auth_link *link = &engine->auth_links[conn];
    const uint8_t *data = NULL;
    size_t bytes = 0;
    int rc = rc_io_recv_peek(engine->io, conn, &data, &bytes);
    if (rc == 0) rc = rc_auth_handshake_input(&link->handshake, data, bytes);
    if (rc >= 0) rc = rc_io_recv_consume(engine->io, conn, (size_t)rc); /* the rest is the link's first frames */
    if (rc == 0) rc = link_flush(engine, conn);
    if (rc == 0 && rc_auth_handshake_done(&link->handshake)) rc = link_done(engine, conn);
    if (rc < 0) link_fail(engine, conn, rc);
    return true;
}

bool engine_auth_on_closed(rc_engine *engine, uint32_t conn, int error) {
    if (conn >= ENGINE_CONNS_MAX || !engine->auth_links[conn].active) return false;
    link_fail(engine, conn, error < 0 ? error : -ECONNRESET);
    return true;
}

void engine_auth_expire(rc_engine *engine, uint64_t now_ns) {
    for (uint32_t conn = 0; conn < ENGINE_CONNS_MAX; conn++) {
        engine_auth_link *link = &engine->auth_links[conn];
        if (link->active && now_ns > link->deadline_ns) link_fail(engine, conn, -ETIMEDOUT);
    }
}

void engine_auth_release(rc_engine *engine) {
    rc_auth_mac_destroy(engine->mac_send);
    rc_auth_mac_destroy(engine->mac_recv);
    engine->mac_send = engine->mac_recv = NULL;
    rc_auth_seal_destroy(engine->seal_send);
    rc_auth_seal_destroy(engine->seal_recv);
    engine->seal_send = engine->seal_recv = NULL;
}
