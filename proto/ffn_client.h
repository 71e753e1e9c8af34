/* ffn_client.h: the attention side's view of one FFN group (every shard of it).
 *
 * An FFN group is n shards (ffnd processes) that together hold the whole FFN: each A2F
 * micro-batch goes to all of them, each answers with its partial sums (F2A), and the client
 * adds the partials in shard order (shard 0's, plus shard 1's, ...), so the sum does not
 * depend on arrival order and a one-shard group gives the shard's answer bit for bit.
 *
 * Slots: the client has `slots` micro-batch slots (the pipeline depth, m). A slot owns a
 * registered A2F send buffer (fc_a2f_buffer: fill it in place, then fc_send) and the shards'
 * partials until fc_take sums them. One micro-batch per slot at a time.
 *
 * Connecting: fc_open starts connections to every shard, sends HELLO (with the shard map the
 * client expects at each address) and waits for every HELLO_ACK; a refusal (other model, other
 * dims, wrong shard) fails fc_open with the ffnd's reason.
 *
 * Failure: a shard that goes down (closed, heartbeat timeout, bad frame, ERROR) fails every
 * in-flight slot with AFD_E_PEER and marks the group broken (fc_broken); the caller
 * reconnects by fc_close + fc_open. Nothing is retried silently.
 *
 * Threads: single-threaded; the client owns its transport context (xport) and drives it in
 * fc_progress / fc_wait. Buffers from fc_a2f_buffer live until fc_close.
 */
#ifndef AFD_FFN_CLIENT_H
#define AFD_FFN_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/err.h"
#include "proto/wire.h"

#define FC_MAX_SHARDS 64

typedef struct fc_shard_addr {
    char host[256]; /* a name or an address (CTRL_HOST_MAX) */
    int port;
    int ep_rank, ep_size, tp_rank, tp_size; /* the shard expected at this address */
} fc_shard_addr;

typedef struct fc_opts {
    int n_shards;
    fc_shard_addr shards[FC_MAX_SHARDS];
    int slots;                 /* in-flight micro-batches (default 3) */
    uint32_t max_tok;          /* largest micro-batch */
    uint32_t instance_id;
    uint8_t role;              /* WIRE_ROLE_ATTND (default) or WIRE_ROLE_BENCH */
    char name[WIRE_NAME_MAX + 1];
    uint64_t fingerprint;      /* afd_model_fingerprint of the client's checkpoint */
    wire_dims dims;            /* hidden, top_k, n_experts, n_layers, fp8_group, dtypes,
                                  moe_layers (borrowed, for checks of what we send) */
    int err_mode;              /* transport error mode: 0 none, 1 peer */
    int heartbeat_ms, peer_timeout_ms;
    int connect_timeout_ms;    /* fc_open gives up after this (default 10000) */
} fc_opts;

typedef struct fc_group fc_group;

void fc_opts_default(fc_opts *o);
/* Parses "host:port" into a (with ep/tp ranks from the caller). 0 or -EINVAL. */
int fc_parse_addr(const char *s, fc_shard_addr *a);
/* Connects and handshakes with every shard. 0, or negative + *err (refusal: AFD_E_PEER with
 * the ffnd's reason; timeout: -ETIMEDOUT). */
int fc_open(fc_group **out, const fc_opts *o, afd_err *err);
void fc_close(fc_group *g); /* GOODBYE to every shard; NULL is a no-op */

/* The A2F payload buffer of `slot` (WIRE_ALIGN, registered, sized for max_tok tokens), laid
 * out for n_tok tokens: *a gets the section pointers to fill. 0 or a WIRE_E_ code. */
int fc_a2f_buffer(fc_group *g, int slot, uint32_t n_tok, bool moe, wire_a2f *a);
/* Sends the slot's payload (as laid out by fc_a2f_buffer) to every shard for (step, mb,
 * layer). 0, -EBUSY (slot in flight), AFD_E_PEER (group broken). */
int fc_send(fc_group *g, int slot, uint64_t step, uint16_t mb, uint16_t layer);
/* 1 when every shard answered slot (then fc_take), 0 pending, negative: the slot failed. */
int fc_ready(fc_group *g, int slot);
/* out[n_tok, hidden] = the partials summed in shard order; frees the slot. 0 or negative. */
int fc_take(fc_group *g, int slot, float *out);
/* Drives the transport without blocking; returns events handled. */
int fc_progress(fc_group *g);
/* Blocks until the slot is ready or timeout_ms passes: 1, 0 (timeout), negative (failed). */
int fc_wait(fc_group *g, int slot, int timeout_ms);
bool fc_broken(const fc_group *g, char *why, size_t n);
/* The transport's event fd (libevent integration by the caller). */
int fc_fd(fc_group *g);

typedef struct fc_stats {
    uint64_t sent, answered, a2f_bytes, f2a_bytes;
} fc_stats;
void fc_get_stats(const fc_group *g, fc_stats *s);

#endif
