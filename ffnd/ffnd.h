/* ffnd.h: the MoE FFN daemon: its settings and its one state struct.
 *
 * ffnd holds one shard of the FFN of every layer (a range of experts and/or a TP slice of their
 * intermediate dimension, and a slice of the shared expert and dense FFN: afd_shard_group),
 * accepts attnd peers over the UCX transport (proto/xport.h), checks each one's HELLO against
 * its own model fingerprint, dims and shard map, coalesces the A2F micro-batches that arrive
 * for the same layer within a short window (ffnd/batcher.h), runs them, and returns each peer
 * its rows of the partial sums (F2A). A bad frame or a dead peer drops that peer only.
 *
 * Threads: one event-loop thread runs the transport, the batcher and the admin HTTP port; the
 * backend's thread pool runs the kernels. Lifetime: ffnd_init .. ffnd_run (until SIGTERM /
 * SIGINT / ffnd_stop, then drain) .. ffnd_free.
 */
#ifndef AFD_FFND_H
#define AFD_FFND_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/conf.h"
#include "common/base/err.h"

typedef struct ffnd_cfg {
    char *model;          /* checkpoint directory */
    char *listen_addr;    /* data plane (UCX) */
    int listen_port;
    char *admin_addr;     /* /metrics, /health, /ready */
    int admin_port;
    char *port_file;      /* written once listening: {"data_port":N,"admin_port":M,"pid":P} */
    int64_t instance_id;
    int ep_rank, ep_size, tp_rank, tp_size;
    int max_tokens;       /* rows of one coalesced batch */
    int max_requests;     /* micro-batches in one coalesced batch */
    int max_peers;
    int64_t batch_window_us;
    int spin_us;          /* busy-poll after the last frame before sleeping on the event fd */
    int f2a_dtype;        /* index into ffnd_f2a_names */
    int fp8_group;        /* A2F/F2A scale group along hidden, 0 = per token */
    int err_mode;         /* 0 none (shared memory possible), 1 peer (tcp, UCX error callbacks) */
    int64_t heartbeat_ms, peer_timeout_ms, drain_timeout_ms;
    int threads;
    char *isa;
    bool wire_only;       /* answer without computing anything (benchmarks of the wire) */
    int log_level;        /* index into the level names */
    bool log_json;
} ffnd_cfg;

extern const conf_table ffnd_conf;

typedef struct ffnd ffnd;

/* Loads the shard's weights, opens the backend, listens on both ports. 0, or a negative code
 * with *err (nothing to free then). */
int ffnd_init(ffnd **out, const ffnd_cfg *cfg, afd_err *err);
/* Serves until stopped; then drains (finishes the open batch, flushes answers, says GOODBYE)
 * within drain_timeout_ms. Returns 0 after a clean drain. */
int ffnd_run(ffnd *d);
/* Asks the loop to stop and drain (from the loop thread; SIGTERM/SIGINT are handled by the
 * loop itself). */
void ffnd_stop(ffnd *d);
void ffnd_free(ffnd *d);

#endif
