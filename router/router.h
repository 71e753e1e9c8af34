/* router.h: afd-router: the OpenAI-compatible front of a cluster (docs/api.md, docs/sla.md).
 *
 * One thread, one libevent loop: the HTTP front (router/http.h), the control plane to the
 * attnds (proto/ctrl.h over proto/xport.h, attached to the same loop), the tokenizer
 * (common/text) and the SLA logic (router/sla.h). A request becomes one sequence per choice;
 * each is admitted by the SLA to a decode-capable instance (role both: SUBMIT there; role
 * decode: RESERVE there, then PREFILL on a prefill instance, DESIGN §6), its tokens come back
 * as TOKENS (and the first, after a handoff, in PREFILL_DONE), are detokenized incrementally,
 * checked against the stop strings and sent as SSE chunks or gathered for one JSON answer.
 *
 * Files: config.c (settings), pool.c (attnd sessions, LOAD, membership), serve.c (HTTP
 * handlers and the request's life), main.c.
 */
#ifndef AFD_ROUTER_ROUTER_H
#define AFD_ROUTER_ROUTER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/conf.h"
#include "common/base/err.h"
#include "common/base/metrics.h"
#include "common/model/config.h"
#include "common/text/chat.h"
#include "common/text/tokenizer.h"
#include "proto/ctrl.h"
#include "proto/xport.h"
#include "router/http.h"
#include "router/openai.h"
#include "router/sla.h"
#include "router/stop.h"

typedef struct router_cfg {
    char *model;      /* checkpoint directory: config.json, tokenizer files, fingerprint */
    char *model_name; /* the name clients use ("model"); default: the directory's name */
    char *listen_addr;
    int port;
    char *tls_cert, *tls_key;
    char *api_keys_file;
    char **cors_origins;
    int n_cors_origins;
    uint64_t max_body;
    int64_t read_timeout_ms, write_timeout_ms, idle_timeout_ms;
    int max_connections;
    char **attnd; /* instances to dial: host:port (their control port) */
    char *ctrl_addr; /* control listener attnds register at (their `routers`) */
    int ctrl_port;   /* -1: none; 0: ephemeral (port file "admin_port") */
    int n_attnd;
    int64_t reconnect_ms;     /* redial a configured instance that is down this often */
    int64_t heartbeat_ms, peer_timeout_ms;
    int err_mode;
    int64_t drain_timeout_ms;
    int64_t request_timeout_ms; /* a request with no progress this long fails (504) */
    int max_n;
    uint64_t stream_buffer; /* SSE bytes queued for a slow reader before it is cut */
    bool escape_special;    /* chat: special tokens in message text are plain text */
    sla_config sla;
    int log_level;
    bool log_json;
    char *port_file;
} router_cfg;

extern const conf_table router_conf;

typedef struct router router;
typedef struct rinst rinst;
typedef struct rreq rreq;
typedef struct rseq rseq;

/* An attnd the router talks to. */
struct rinst {
    router *r;
    xp_peer *xp;
    char addr[CTRL_HOST_MAX + 16]; /* as dialed (host:port), or the peer's name */
    bool configured;               /* from config: redialed when down */
    bool inbound;                  /* it dialed us (live registration): HELLO comes from it */
    bool acked, registered, down;
    bool draining;                 /* DRAIN sent by us */
    ctrl_register reg;
    ctrl_load load;
    uint64_t n_load, last_load_ns;
    uint64_t paused_until_ns; /* refused work lately: out of admission until then */
    sla_inst *si;      /* decode-capable instances (both, decode) */
    uint64_t next_req; /* request numbers of our control messages */
    int n_seqs;        /* sequences of ours that name it */
    rinst *next;
};

/* One choice of a request: one sequence on the cluster. */
enum { SQ_NEW, SQ_WAIT, SQ_RESERVE, SQ_PREFILL, SQ_RUN, SQ_DONE };
struct rseq {
    rreq *q;
    uint32_t index;  /* choice index */
    uint32_t prompt; /* index of its prompt */
    uint64_t seq_id;
    int state;
    sla_req sr;
    rinst *d;         /* the decode (or both) instance */
    rinst *p;         /* the prefill instance of a handoff */
    uint64_t epoch;   /* the reservation's */
    bool first_in;    /* the first token came (PREFILL_DONE or TOKENS) */
    bool cancel_sent;
    /* tokens early from D while PREFILL_DONE is still on its way */
    ctrl_tokens *early;
    /* output */
    tok_stream ts;
    oa_stop *stop;
    tok_str text;      /* gathered text (non-streaming), or the chunk being built */
    int32_t *ids;      /* generated ids (for usage and logprobs) */
    float *lps;
    ctrl_cand *tops;   /* [n_ids][top_logprobs] */
    uint32_t n_ids, cap_ids;
    uint64_t *tok_end; /* decoded bytes after token i (for logprobs vs stop cuts) */
    uint32_t n_lp_sent;
    uint64_t dec_bytes;
    uint32_t completion_tokens, prompt_tokens;
    oa_finish finish;
    int err_status; /* != 0: the sequence failed (HTTP status for the request) */
    char err_msg[CTRL_MSG_MAX + 64];
    uint64_t text_offset; /* completions: characters before this chunk */
    uint32_t refusals; /* by instances (SUBMIT_ACK / RESERVE_FAIL), resubmitted */
};

struct rreq {
    router *r;
    rh_req *h;
    oa_request o;
    char id[OA_ID_MAX];
    char req_id[CTRL_REQ_ID_MAX + 1];
    int64_t created;
    tok_ids *prompts; /* [n_prompts] */
    uint32_t n_prompts; /* chat: 1; completions: o.n_prompts */
    rseq *seqs;       /* [n_seqs] */
    uint32_t n_seqs, n_done;
    bool streaming, finished, gone, dead;
    bool started;      /* the SSE stream has begun (200 sent) */
    char **pend;       /* chunks made before the stream could start, in order */
    size_t *pend_len;
    uint32_t n_pend, cap_pend;
    uint64_t t0_ns, last_progress_ns;
    rreq *prev, *next;
};

struct router {
    router_cfg cfg;
    struct event_base *base;
    struct event *ev_term, *ev_int, *ev_tick;
    rh_server *http;
    afd_metrics *reg;
    xp_ctx *xp;
    tok_tokenizer *tok;
    tok_state *tst;
    tok_chat chat;
    char *detok_buf; /* tok_stream_max_out bytes */
    size_t detok_cap;
    afd_model_config mcfg;
    uint64_t fingerprint;
    wire_hello hello;
    ctrl_limits clim;
    sla *sla;
    oa_limits olim;
    rinst *insts;
    rreq *reqs;
    uint64_t next_seq;
    int64_t started;
    int ctrl_port; /* bound control port, or -1 */
    bool draining, notified_ready;
    uint64_t drain_deadline_ns, last_status_ns;
    afd_metric *m_req[6], *m_tokens, *m_handoffs, *m_handoff_fail, *m_cancels;
};

/* pool.c */
int pool_init(router *r, afd_err *err);
void pool_free(router *r);
int pool_add(router *r, const char *hostport, bool configured, afd_err *err);
void pool_tick(router *r);
int pool_send(router *r, rinst *in, const ctrl_msg *m, uint64_t req);
/* A ready prefill-capable instance (role prefill preferred, least loaded), or NULL. */
rinst *pool_pick_prefill(router *r);
rinst *pool_by_sla(router *r, const sla_inst *si);
/* Out of the pool for good: no redial; a live session is closed (its sequences fail). */
void pool_forget(router *r, rinst *in);
/* No new sequences for it for ms (it refused one); the tick lets it back. */
void pool_pause(router *r, rinst *in, int ms);
bool pool_ready(router *r, char *why, size_t n);

/* serve.c */
int serve_init(router *r, afd_err *err);
void serve_free(router *r);
void serve_tick(router *r);
void serve_reap(router *r); /* frees the requests that ended */
/* From the control plane: everything an instance says about one of our sequences. */
void serve_on_msg(router *r, rinst *in, const ctrl_msg *m);
void serve_on_inst_down(router *r, rinst *in);
void serve_admit_events(router *r, const sla_event *ev, int n);

/* main.c drives: */
int router_init(router **out, const router_cfg *cfg, afd_err *err);
int router_run(router *r);
void router_free(router *r);

#endif
