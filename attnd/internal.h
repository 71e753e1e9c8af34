/* internal.h: attnd's state, shared by server.c (loop, router sessions, local sequences) and
 * handoff.c (KV handoff: reservations on the decode side, prefill jobs on the prefill side).
 * Not for other modules. One thread: everything here runs on the loop thread.
 */
#ifndef AFD_ATTND_INTERNAL_H
#define AFD_ATTND_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "attnd/attnd.h"
#include "attnd/pipeline.h"
#include "attnd/sched.h"
#include "common/backend/backend.h"
#include "common/base/metrics.h"
#include "common/net/http_admin.h"
#include "proto/ctrl.h"
#include "proto/ffn_client.h"
#include "proto/xport.h"

#define STEP_RING 128

/* What a control-plane peer is. Accepted peers are PENDING until their HELLO says. */
/* CP_RDIAL: a router we dialed, before its HELLO_ACK (then CP_ROUTER). */
enum { CP_PENDING, CP_ROUTER, CP_HANDOFF_IN, CP_DLINK, CP_RDIAL };

typedef struct dlink dlink;
typedef struct pjob pjob;

typedef struct cpeer {
    struct attnd *d;
    xp_peer *xp;
    int kind;
    wire_hello hello;
    char name[96];
    dlink *dl; /* CP_DLINK: the link this peer carries */
    int rdial; /* a router we dial: its index in cfg.routers, else -1 */
    struct cpeer *prev, *next;
} cpeer;

/* One sequence in the scheduler, as the router knows it (the scheduler's request ud). */
typedef struct aseq {
    uint64_t id;     /* the scheduler's id (unique in this attnd) */
    uint64_t seq_id; /* the router's */
    uint64_t req;    /* the request number TOKENS copy (SUBMIT's, or RESERVE's after a handoff) */
    cpeer *owner;    /* NULL once the router is gone */
    pjob *pj;        /* prefill side of a handoff: this sequence is the job's prefill */
    char req_id[CTRL_REQ_ID_MAX + 1];
    bool logprobs;
    int n_top;
    uint32_t n_prompt;
    struct aseq *prev, *next;
} aseq;

/* Decode side: a reservation of KV blocks for a sequence prefilled elsewhere. */
enum { RV_OPEN, RV_QUARANTINE };
typedef struct resv {
    uint64_t seq_id, epoch;
    uint64_t req;
    cpeer *owner; /* the router that reserved; NULL once gone */
    char req_id[CTRL_REQ_ID_MAX + 1];
    uint32_t prompt_len;
    ctrl_sampling s;
    uint32_t stop[CTRL_STOP_MAX];
    afd_kv_seq kv;
    int state;
    uint64_t deadline_ns; /* OPEN: lease end; QUARANTINE: when the blocks go back */
    uint64_t t0_ns;
    struct resv *prev, *next;
} resv;

/* Prefill side: a link to a decode instance (cached per host:port). */
enum { DL_CONNECTING, DL_UP, DL_DOWN };
struct dlink {
    char host[CTRL_HOST_MAX + 1];
    uint16_t port;
    cpeer *cp;
    int state;
    uint32_t instance_id;
    uint64_t remote_base, block_bytes;
    uint32_t block_size;
    xp_rkey *rk; /* NULL: K/V go as KV_DATA frames */
    int users;   /* jobs using it */
    struct dlink *next;
};

enum { PJ_PREFILL, PJ_LINK, PJ_WRITE, PJ_DONE };
struct pjob {
    struct attnd *d;
    uint64_t seq_id, req, epoch;
    cpeer *owner;
    char req_id[CTRL_REQ_ID_MAX + 1];
    aseq *a; /* the prefill sequence while it runs */
    dlink *dl;
    uint32_t n_prompt, n_blocks;
    uint32_t *block_ids; /* D's, [n_blocks] */
    uint64_t remote_base, block_bytes;
    uint64_t deadline_ns, t0_ns;
    int state;
    bool have_first, logprobs;
    afd_sample first;
    int n_top;
    afd_kv_seq kv;   /* P's blocks holding the prompt's K/V */
    int inflight;    /* puts, flush, KV_DATA sends not yet called back */
    int failed;      /* CTRL_R_* once the job failed */
    char why[160];
    bool cancelled;
    uint64_t checksum;
    struct pjob *prev, *next;
};

struct attnd {
    attnd_cfg cfg;
    afd_backend *be;
    afd_weights w;
    st_set *set;
    uint64_t fingerprint;
    afd_engine e;
    fc_opts fo;
    fc_group *ffn;
    at_pipe pipe;
    at_sched *sched;
    xp_ctx *xp;
    xp_mr *kv_mr; /* the KV pool, registered for remote writes (NULL: no RMA) */
    struct event_base *base;
    struct event *ev_term, *ev_int, *ev_tick;
    afd_admin *admin;
    afd_metrics *reg;
    wire_hello mine;
    ctrl_limits clim;
    cpeer *peers;
    cpeer **rdial;        /* [cfg.n_routers]: the session with each router we dial, or NULL */
    uint64_t rdial_last_ns;
    aseq *seqs;
    resv *resvs;
    dlink *dlinks;
    pjob *pjobs;
    uint64_t next_id, next_epoch;
    int n_resv_open, resv_blocks;
    bool draining, stopping;
    int64_t drain_deadline;
    int data_port, admin_port;
    double step_ms[STEP_RING];
    int n_steps_ring;
    uint64_t last_ffn_retry, last_status_ns;
    char ffn_why[200]; /* why the FFN group went down */
    afd_metric *m_step, *m_batch, *m_tokens, *m_running, *m_waiting, *m_kv_free, *m_ffn_wait;
    afd_metric *m_req_ok, *m_req_refused, *m_seq_error;
    afd_metric *m_ho_ok[2], *m_ho_fail[2], *m_lease_exp, *m_ho_bytes[2], *m_ho_time;
    afd_metric *m_resv_blocks, *m_kv_stale;
};

/* server.c */
void at_send_ctrl(struct attnd *d, cpeer *p, int type, uint64_t req, uint8_t *buf, size_t len);
void at_send_tokens(struct attnd *d, aseq *a, const ctrl_tokens *t);
/* Fills an at_request's sampling and limits from the wire's (prompt not set). */
void at_request_from_wire(at_request *r, const ctrl_sampling *s, uint64_t default_seed);
aseq *at_seq_new(struct attnd *d, cpeer *owner, uint64_t seq_id, uint64_t req,
                 const char *req_id, const ctrl_sampling *s, uint32_t n_prompt);
void at_seq_link(struct attnd *d, aseq *a);
void at_seq_unlink(struct attnd *d, aseq *a);
bool at_ffn_ok(struct attnd *d); /* the FFN group is connected and not broken */
cpeer *at_cpeer_new(struct attnd *d, xp_peer *xp, int kind);
void at_cpeer_free(struct attnd *d, cpeer *p);
/* Error finish for a sequence the router holds but that never reached the scheduler. */
void at_tokens_error(struct attnd *d, cpeer *owner, uint64_t req, uint64_t seq_id, int code,
                     uint32_t n_prompt, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* handoff.c */
int ho_init(struct attnd *d, afd_err *err); /* registers the KV pool when RMA is wanted */
void ho_free(struct attnd *d);
int ho_on_reserve(struct attnd *d, cpeer *p, const wire_hdr *h, const ctrl_reserve *m);
int ho_on_prefill(struct attnd *d, cpeer *p, const wire_hdr *h, const ctrl_prefill *m);
int ho_on_release(struct attnd *d, cpeer *p, const ctrl_release *m);
int ho_on_cancel(struct attnd *d, cpeer *p, uint64_t seq_id); /* 1 when it was a handoff's */
/* Frames of handoff peers (CP_HANDOFF_IN on D, CP_DLINK on P) after the handshake. */
int ho_on_frame(struct attnd *d, cpeer *p, const ctrl_msg *m);
void ho_on_hello_in(struct attnd *d, cpeer *p);      /* D: a prefill instance connected */
int ho_on_dlink_frame(struct attnd *d, cpeer *p, const wire_hdr *h, const uint8_t *pl,
                      size_t len);                    /* P: HELLO_ACK, pool announcement */
void ho_on_peer_down(struct attnd *d, cpeer *p);     /* any peer kind */
/* The prefill sequence of a job: its first token, its blocks, its end. */
void ho_on_first(struct attnd *d, aseq *a, const afd_sample *s);
void ho_on_kv(struct attnd *d, aseq *a, afd_kv_seq *kv);
void ho_on_prefill_end(struct attnd *d, aseq *a, int reason);
void ho_tick(struct attnd *d); /* leases, deadlines, quarantine */
void ho_metrics_init(struct attnd *d);

#endif
