/*
 * chain_client.c — the client's side of Chain as stateless helpers: C1 (the client's f+1 MACs for
 * r_1 … r_{f+1}), C4 (commit only on f+1 valid ρ from Σlast over the client's own D(reply)), and P1 (PANIC).
 */
#include "chain_internal.h"

#include <errno.h>

int rc_chain_client_authenticate(const rc_chain_client_settings *s, uint64_t timestamp, const uint8_t *op,
                                 uint32_t op_bytes, rc_crypto_mac *macs) {
    if (s == NULL || macs == NULL || s->f == 0 || s->f > RC_CHAIN_F_MAX) return -EINVAL;
    rc_crypto_digest digest;
    int rc = chain_request_digest(&s->crypto, s->client, timestamp, op, op_bytes, &digest);
    if (rc < 0) return rc;
    return rc_chain_client_authenticate_digest(s, &digest, macs);
}

int rc_chain_client_authenticate_digest(const rc_chain_client_settings *s, const rc_crypto_digest *request,
                                        rc_crypto_mac *macs) {
    if (s == NULL || request == NULL || macs == NULL || s->f == 0 || s->f > RC_CHAIN_F_MAX) return -EINVAL;
    uint8_t buffer[64];
    rc_crypto_part parts[2];
    uint32_t part_count = chain_parts_client(s->instance, request, buffer, parts);
    for (uint32_t r = 0; r <= s->f; r++) {
        int rc = s->crypto.mac(s->crypto.context, r, parts, part_count, &macs[r]);
        if (rc < 0) return rc;
    }
    return 0;
}

int rc_chain_client_check_reply(const rc_chain_client_settings *s, uint64_t timestamp, const uint8_t *op,
                                uint32_t op_bytes, uint64_t sn, const uint8_t *reply, uint32_t reply_bytes,
                                const rc_crypto_digest *history_digest, const rc_crypto_mac *reply_macs) {
    if (s == NULL || history_digest == NULL || reply_macs == NULL || s->f == 0 || s->f > RC_CHAIN_F_MAX) return -EINVAL;
    rc_crypto_digest request;
    int rc = chain_request_digest(&s->crypto, s->client, timestamp, op, op_bytes, &request);
    if (rc < 0) return rc;
    return rc_chain_client_check_reply_digest(s, &request, sn, reply, reply_bytes, history_digest, reply_macs);
}

int rc_chain_client_check_reply_digest(const rc_chain_client_settings *s, const rc_crypto_digest *request, uint64_t sn,
                                       const uint8_t *reply, uint32_t reply_bytes,
                                       const rc_crypto_digest *history_digest, const rc_crypto_mac *reply_macs) {
    if (s == NULL || request == NULL || history_digest == NULL || reply_macs == NULL || s->f == 0 ||
        s->f > RC_CHAIN_F_MAX)
        return -EINVAL;
    rc_crypto_digest reply_digest;
    rc_crypto_part part = {reply, reply_bytes};
    int rc = s->crypto.digest(s->crypto.context, &part, 1, &reply_digest);
    if (rc < 0) return rc;
    uint8_t buffer[64];
    rc_crypto_part parts[4];
    uint32_t part_count = chain_parts_reply(s->instance, sn, request, &reply_digest, history_digest, buffer, parts);
    /* Every member of Σlast = r_{2f+1} … r_{3f+1} must vouch; one missing or bad ρ means no commit (C4). */
    for (uint32_t k = 0; k <= s->f; k++) {
        rc = s->crypto.mac_verify(s->crypto.context, 2 * s->f + k, parts, part_count, &reply_macs[k]);
        if (rc != 1) return rc < 0 ? rc : 0;
    }
    return 1;
}

int rc_chain_client_panic(const rc_chain_client_settings *s, uint64_t timestamp, uint32_t replica,
                          rc_chain_panic *out) {
    if (s == NULL || out == NULL || replica >= rc_chain_nodes(s->f)) return -EINVAL;
    *out = (rc_chain_panic){.instance = s->instance, .client = s->client, .timestamp = timestamp, .replica = replica};
    uint8_t buffer[64];
    rc_crypto_part parts[1];
    uint32_t part_count = chain_parts_panic(s->instance, s->client, timestamp, buffer, parts);
    return s->crypto.mac(s->crypto.context, replica, parts, part_count, &out->mac);
}
