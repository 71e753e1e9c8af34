/* attnd.h: the attention daemon: its settings and its one state struct.
 *
 * attnd holds the attention side of the model (embedding, attention, router, final norm,
 * lm_head) and the paged KV cache, connects to its FFN group (ffnd shards), and serves
 * sequences submitted over the control plane (proto/ctrl.h on proto/xport.h): continuous
 * batching (attnd/sched.h) through the AFD pipeline (attnd/pipeline.h), tokens streamed back
 * as TOKENS, a LOAD report after every step. Roles: `both` (local chunked prefill, and either
 * end of a handoff), `decode` (prompts arrive by KV handoff only: RESERVE, then KV_READY from a
 * prefill instance) and `prefill` (PREFILL: prompt in, K/V written into a decode instance's
 * reserved blocks, first token out). docs/attnd.md has the handoff state machine.
 *
 * Threads: one loop thread (control plane, steps, admin HTTP); the backend's pool runs the
 * kernels. Lifetime: attnd_init .. attnd_run (until SIGTERM/SIGINT or DRAIN, then drain) ..
 * attnd_free.
 */
#ifndef AFD_ATTND_H
#define AFD_ATTND_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/conf.h"
#include "common/base/err.h"

typedef struct attnd_cfg {
    char *model;
    int role;              /* index into the role names: both (0), decode, prefill */
    char *listen_addr;     /* control plane (UCX) */
    int listen_port;
    char *admin_addr;
    int admin_port;
    char *port_file;
    int64_t instance_id;
    char **ffn;            /* FFN group shards "host:port", shard i = (i / tp_size, i % tp_size) */
    int n_ffn;
    int ffn_ep_size, ffn_tp_size;
    int micro_batches;
    int max_seqs, max_batch_tokens, prefill_chunk;
    uint64_t kv_mem;       /* bytes of KV cache */
    int kv_dtype;          /* bf16, fp8 */
    int block_size;
    int f2a_dtype;         /* bf16, fp8, f32: must match the FFN group */
    int err_mode;
    int64_t heartbeat_ms, peer_timeout_ms, drain_timeout_ms;
    int64_t lease_ms;       /* KV reservations: lease when RESERVE asks for none, and cap */
    int64_t lease_grace_ms; /* blocks of a dead reservation wait this long before reuse */
    int handoff;            /* auto (RMA when UCX offers it), rma, am (KV_DATA frames) */
    bool kv_checksum;       /* checksum handed-off K/V (P computes, D verifies) */
    char *advertise_addr;   /* data-plane host told to routers (default: listen_addr) */
    char **routers;         /* routers to register with (their control port), host:port */
    int n_routers;
    int threads;
    char *isa;
    int log_level;
    bool log_json;
} attnd_cfg;

extern const conf_table attnd_conf;

typedef struct attnd attnd;

int attnd_init(attnd **out, const attnd_cfg *cfg, afd_err *err);
int attnd_run(attnd *d); /* 0 after a clean drain */
void attnd_free(attnd *d);

#endif
