/* sla.h: the router's TPOT SLA: a step-time model per decode instance, admission against the
 * target, a bounded FIFO queue, and TPOT accounting (histograms, a sliding-window percentile,
 * the verdict, goodput). docs/sla.md explains the definitions and the choices.
 *
 * TPOT here is the token-weighted inter-token latency (ITL): every output token after a
 * request's first contributes its gap to the previous token of that request; a request's own
 * TPOT is (t_last - t_first) / (n - 1). The SLA is "the p-th percentile of ITL over the last W
 * seconds <= target" (default p99 <= 50 ms).
 *
 * Pure logic: no sockets, no clocks, no threads. Every call takes `now` in nanoseconds on one
 * monotonic clock (afd_now_ns in the router, synthetic in tests). One thread (the router's
 * event loop) calls everything; metric handles are atomics, so /metrics may render elsewhere.
 *
 * Ownership: sla owns its instances (sla_inst_add .. sla_inst_remove / sla_free). Requests are
 * the caller's: an sla_req lives in the caller's request object; sla links it into its queue or
 * an instance's list between sla_submit and sla_req_finish, so the caller must not free or
 * reuse it before sla_req_finish (or a reject event) has released it. No allocation after
 * sla_init except in sla_inst_add. Errors: 0 / negative AFD_E_*, as err.h.
 */
#ifndef AFD_ROUTER_SLA_H
#define AFD_ROUTER_SLA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/conf.h"
#include "common/base/metrics.h"
#include "proto/ctrl.h"

/* ---- configuration ------------------------------------------------------------------------ */

enum { SLA_CTX_MIDPOINT = 0, SLA_CTX_WORST = 1 };

typedef struct sla_config {
    bool enable;             /* admission control; false: least loaded ready instance */
    int64_t target_ms;       /* TPOT (ITL) target */
    double percentile;       /* of ITL, over the window; 50 .. 99.99 */
    int64_t window_ms;       /* sliding window of the percentile */
    double margin;           /* admit while predicted step <= target * (1 - margin) */
    double resid_quantile;   /* quantile of |residual| added to each prediction (percent) */
    int queue_max;           /* queued requests at most; 0: no queue */
    int64_t queue_wait_ms;   /* longest wait in the queue before 429 / 503 */
    int64_t stale_ms;        /* an instance busy at its last LOAD with none since is skipped */
    int ctx_estimate;        /* SLA_CTX_MIDPOINT or SLA_CTX_WORST (docs/sla.md) */
    int prefill_chunk;       /* prefill tokens per step checked for a new prompt; 0: not */
    int kv_growth_cap;       /* tokens of max_tokens reserved in KV; 0: all of max_tokens */
    double forget;           /* forgetting factor per LOAD report, 0.5 .. 1 */
    double prior_step_us;    /* prior model: fixed cost of a step */
    double prior_seq_us;     /*   per running sequence */
    double prior_kctx_us;    /*   per 1000 tokens of context in the batch */
    double prior_prefill_us; /*  per prefill token in the step */
    double prior_weight;     /* the prior's worth in reports (decays with `forget`) */
} sla_config;

/* The defaults (the table's, as a struct). */
void sla_config_default(sla_config *c);
/* Every field within its row's bounds: 0, or AFD_E_FORMAT with *err naming the key. */
int sla_config_check(const sla_config *c, afd_err *err);

/* Rows for a daemon's conf table, keys "sla_<field>" (the router's "sla section": the conf
 * engine has flat keys). Use inside a conf_opt array of the daemon's config type, whose member
 * `member` is an sla_config:
 *     static const conf_opt router_opts[] = { ..., SLA_CONF_OPTS(router_cfg, sla), ... };
 * SLA_CONF_N rows. */
extern const char *const sla_ctx_estimate_names[]; /* "midpoint", "worst", NULL */
/* clang-format off */
#define SLA_CONF_N 18
#define SLA_O_(T, m, f) offsetof(T, m.f)
#define SLA_CONF_OPTS(T, m)                                                                        \
    {.name = "sla_enable", .type = CONF_BOOL, .offset = SLA_O_(T, m, enable), .def = "true",       \
     .help = "SLA admission control (false: least loaded ready instance, no prediction)"},        \
    {.name = "sla_target_ms", .type = CONF_MS, .offset = SLA_O_(T, m, target_ms), .min = 1,       \
     .max = 600000, .def = "50ms", .help = "TPOT target: inter-token latency percentile"},        \
    {.name = "sla_percentile", .type = CONF_DOUBLE, .offset = SLA_O_(T, m, percentile),           \
     .min = 50, .max = 99.99, .def = "99", .help = "percentile of inter-token latency"},          \
    {.name = "sla_window_ms", .type = CONF_MS, .offset = SLA_O_(T, m, window_ms), .min = 1000,    \
     .max = 3600000, .def = "60s", .help = "sliding window of the SLA percentile"},               \
    {.name = "sla_margin", .type = CONF_DOUBLE, .offset = SLA_O_(T, m, margin), .min = 0,         \
     .max = 0.9, .def = "0.4", .help = "admit while predicted step <= target x (1 - margin)"},    \
    {.name = "sla_resid_quantile", .type = CONF_DOUBLE, .offset = SLA_O_(T, m, resid_quantile),   \
     .min = 0, .max = 100, .def = "90",                                                            \
     .help = "quantile (%) of recent |prediction error| added to each prediction"},             \
    {.name = "sla_queue_max", .type = CONF_INT, .offset = SLA_O_(T, m, queue_max), .min = 0,      \
     .max = 1000000, .def = "256", .help = "requests waiting for admission at most (0: none)"},  \
    {.name = "sla_queue_wait_ms", .type = CONF_MS, .offset = SLA_O_(T, m, queue_wait_ms),         \
     .min = 0, .max = 3600000, .def = "5s", .help = "longest wait for admission (then 429/503)"}, \
    {.name = "sla_stale_ms", .type = CONF_MS, .offset = SLA_O_(T, m, stale_ms), .min = 1,         \
     .max = 3600000, .def = "2s", .help = "skip a busy instance whose last LOAD is older"},       \
    {.name = "sla_ctx_estimate", .type = CONF_ENUM, .offset = SLA_O_(T, m, ctx_estimate),         \
     .def = "midpoint", .choices = sla_ctx_estimate_names,                                         \
     .help = "context of a new sequence in the prediction: prompt + max/2, or worst case"},      \
    {.name = "sla_prefill_chunk", .type = CONF_INT, .offset = SLA_O_(T, m, prefill_chunk),        \
     .min = 0, .max = 1 << 20, .def = "256",                                                       \
     .help = "prefill tokens per step (the attnd's budget) checked for a new prompt; 0: off"},   \
    {.name = "sla_kv_growth_cap", .type = CONF_INT, .offset = SLA_O_(T, m, kv_growth_cap),        \
     .min = 0, .max = 1 << 24, .def = "0",                                                         \
     .help = "tokens of max_tokens reserved in KV per sequence (0: all of max_tokens)"},         \
    {.name = "sla_forget", .type = CONF_DOUBLE, .offset = SLA_O_(T, m, forget), .min = 0.5,       \
     .max = 1, .def = "0.99", .help = "step-time model forgetting factor per LOAD report"},       \
    {.name = "sla_prior_step_us", .type = CONF_DOUBLE, .offset = SLA_O_(T, m, prior_step_us),     \
     .min = 0, .max = 1e9, .def = "5000", .help = "prior: fixed cost of a step (us)"},            \
    {.name = "sla_prior_seq_us", .type = CONF_DOUBLE, .offset = SLA_O_(T, m, prior_seq_us),       \
     .min = 0, .max = 1e9, .def = "500", .help = "prior: cost per running sequence (us)"},        \
    {.name = "sla_prior_kctx_us", .type = CONF_DOUBLE, .offset = SLA_O_(T, m, prior_kctx_us),     \
     .min = 0, .max = 1e9, .def = "100", .help = "prior: cost per 1000 context tokens (us)"},     \
    {.name = "sla_prior_prefill_us", .type = CONF_DOUBLE,                                          \
     .offset = SLA_O_(T, m, prior_prefill_us), .min = 0, .max = 1e9, .def = "50",                 \
     .help = "prior: cost per prefill token in a step (us)"},                                    \
    {.name = "sla_prior_weight", .type = CONF_DOUBLE, .offset = SLA_O_(T, m, prior_weight),       \
     .min = 0.001, .max = 1e12, .def = "10",                                                       \
     .help = "prior's worth in LOAD reports (fades with sla_forget)"}
/* clang-format on */

/* A table of the rows alone over a bare sla_config (prog "sla"), for tests and tools. */
extern const conf_table sla_conf_table;

/* ---- the step-time model ------------------------------------------------------------------ */

/* step_ns = c0 + c1 * batch + c2 * ctx_tokens + c3 * prefill_tokens, every c >= 0, fitted by
 * exponentially weighted least squares (recursive: the normal equations decay by `forget` per
 * report) started from a prior worth `prior_weight` reports, solved exactly under c >= 0. Plain
 * data: embed it, no free needed. */
#define SLA_NFEAT   4
#define SLA_RESID_N 64

typedef struct sla_model {
    /* private */
    double a[SLA_NFEAT][SLA_NFEAT], b[SLA_NFEAT]; /* scaled normal equations */
    double prior[SLA_NFEAT], floor_w;             /* scaled prior and its permanent ridge */
    double theta[SLA_NFEAT];                      /* scaled solution */
    double forget, resid_q;
    uint64_t n;               /* reports fitted */
    float resid[SLA_RESID_N]; /* recent |step - prediction|, ns */
    int resid_n, resid_pos;
    double margin_ns; /* quantile of resid[] */
} sla_model;

/* prior_ns: c0 ns, c1 ns per sequence, c2 ns per context token, c3 ns per prefill token;
 * weight > 0 (reports' worth); forget in (0, 1]; resid_quantile in [0, 100]. */
void sla_model_init(sla_model *m, const double prior_ns[SLA_NFEAT], double weight, double forget,
                    double resid_quantile);
/* Folds in one observed step (its residual against the model before the update, too). */
void sla_model_update(sla_model *m, double batch, double ctx, double prefill, double step_ns);
/* Predicted step time in ns, without the margin. */
double sla_model_predict(const sla_model *m, double batch, double ctx, double prefill);
/* The residual quantile (ns) added to admission predictions; 0 before any report. */
double sla_model_margin_ns(const sla_model *m);
/* The coefficients in the units of prior_ns. */
void sla_model_coef(const sla_model *m, double out[SLA_NFEAT]);

/* ---- instances, requests, admission ------------------------------------------------------- */

typedef struct sla sla;
typedef struct sla_inst sla_inst;

enum { SLA_RS_IDLE = 0, SLA_RS_QUEUED, SLA_RS_RUNNING };

/* What sla_req_finish is told. */
enum {
    SLA_END_OK = 0,        /* finished normally (stop, length): counted, goodput if TPOT met */
    SLA_END_ERROR = 1,     /* failed after admission: counted as finished, never goodput */
    SLA_END_CANCELLED = 2, /* client went away: latency not counted */
    SLA_END_REFUSED = 3,   /* the attnd refused the SUBMIT: nothing counted; the request is
                              back to IDLE and may be submitted again */
};

/* A request as the SLA sees it. Zero it before its first sla_submit (e.g. `= (sla_req){...}`);
 * after sla_req_finish or a reject it is IDLE and may be reused as it is. */
typedef struct sla_req {
    /* in: set before sla_submit */
    uint32_t prompt_len; /* >= 1 */
    uint32_t max_tokens; /* >= 1 */
    void *ud;            /* the caller's */
    /* out: read-only for the caller */
    int state;         /* SLA_RS_* */
    sla_inst *inst;    /* RUNNING: the instance it was admitted to (NULL if removed) */
    uint32_t inst_id;  /* RUNNING: that instance's id */
    uint64_t t_arrive; /* first sla_submit */
    uint64_t t_admit, t_first, t_last;
    uint32_t n_out; /* output tokens seen */
    /* private */
    struct sla_req *prev, *next; /* queue or instance list */
    bool pending, acked, seen;
    uint64_t t_queued;
    uint64_t res_blocks, grow_blocks; /* KV reservation and its outstanding part */
    uint32_t grow_tokens;             /* outstanding growth in tokens */
} sla_req;

/* Outcome of sla_submit and of each sla_poll event. */
enum { SLA_EV_ADMIT = 1, SLA_EV_QUEUED = 2, SLA_EV_REJECT = 3 };
enum {
    SLA_REJ_NONE = 0,
    SLA_REJ_QUEUE_FULL = 1,  /* 429 (503 when no instance is ready) */
    SLA_REJ_TIMEOUT = 2,     /* 429 (503 when no instance is ready) */
    SLA_REJ_UNAVAILABLE = 3, /* 503: no instance ready */
    SLA_REJ_TOO_LARGE = 4,   /* 400: prompt + KV reserve over every ready instance's pool */
};

typedef struct sla_event {
    sla_req *req;
    int kind;               /* SLA_EV_* */
    int reason;             /* SLA_REJ_* for SLA_EV_REJECT */
    int http_status;        /* 429, 503 or 400 for a reject; 0 otherwise */
    uint32_t retry_after_s; /* for 429 / 503: Retry-After, 1 .. 60 */
    sla_inst *inst;         /* SLA_EV_ADMIT: where to send the SUBMIT */
    uint32_t inst_id;
} sla_event;

/* Never NULL (aborts on out-of-memory); c is copied (NULL: defaults). 0 / AFD_E_FORMAT with
 * *err for a config out of its bounds (sla_init_checked), or use sla_init for trusted ones. */
int sla_init_checked(const sla_config *c, sla **out, afd_err *err);
sla *sla_init(const sla_config *c); /* aborts on a bad config: for tests and defaults */
/* Frees the instances; linked requests are unlinked (state IDLE, inst NULL). NULL: no-op. */
void sla_free(sla *s);
const sla_config *sla_get_config(const sla *s);

/* An instance by its attnd instance_id (0 or the existing one when already added). Starts not
 * ready; it needs sla_inst_set_ready(true) and a LOAD report before it gets traffic. */
sla_inst *sla_inst_add(sla *s, uint32_t instance_id);
sla_inst *sla_inst_find(sla *s, uint32_t instance_id);
/* Removes an instance (peer gone): its running requests stay RUNNING with inst NULL (finish
 * them as the router learns their fate). NULL: no-op. */
void sla_inst_remove(sla *s, sla_inst *in);
void sla_inst_set_ready(sla_inst *in, bool ready);
/* The router's own drain mark (DRAIN sent), on top of the draining flag of LOAD. */
void sla_inst_set_draining(sla_inst *in, bool draining);
/* Liveness without a report (heartbeat): keeps a busy instance from going stale. */
void sla_inst_touch(sla_inst *in, uint64_t now);
uint32_t sla_inst_id(const sla_inst *in);
const sla_model *sla_inst_model(const sla_inst *in);

/* One LOAD report: fits the model (when the step ran: last_step_us > 0 and batch_tokens > 0),
 * refreshes the state, and settles what the router had promised (pending admissions the
 * instance has acknowledged, departures). 0, or AFD_E_FORMAT for an inconsistent report (free +
 * reserved over total, block size 0). */
int sla_report(sla *s, sla_inst *in, const ctrl_load *l, uint64_t now);

/* What admitting a request of (prompt_len, max_tokens) to `in` would do. */
typedef struct sla_pred {
    bool eligible;    /* ready, reported, not draining, decode role, not stale */
    bool fits;        /* eligible, KV fits and step <= limit (or the instance is idle) */
    double step_ns;   /* predicted step with the request, including the residual margin */
    double limit_ns;  /* target * (1 - margin) */
    uint32_t batch;   /* sequences with the request */
    uint64_t ctx;     /* context tokens used in the prediction */
    int64_t kv_free;  /* blocks the router can still promise */
    uint64_t kv_need; /* blocks the request needs */
} sla_pred;
void sla_inst_predict(const sla *s, const sla_inst *in, uint32_t prompt_len, uint32_t max_tokens,
                      uint64_t now, sla_pred *out);

/* The instance a request would go to now: with admission, the fitting one with the most
 * headroom (limit - step); without, the ready one with the fewest sequences. NULL if none.
 * Changes nothing. */
sla_inst *sla_pick(const sla *s, const sla_req *r, uint64_t now);

/* Admits (ev->kind ADMIT, r RUNNING on ev->inst: send the SUBMIT), queues (QUEUED: wait for an
 * sla_poll event) or rejects at once (REJECT: queue full, or too large). r must be IDLE with
 * prompt_len, max_tokens >= 1: else AFD_E_STATE / AFD_E_FORMAT and nothing changes. A new
 * request never overtakes a queued one. */
int sla_submit(sla *s, sla_req *r, uint64_t now, sla_event *ev);

/* Admits queued requests that fit now (FIFO: stops at the first that does not) and rejects
 * those that waited queue_wait_ms; writes up to max events, returns how many (call again while
 * it returns max). Call after reports, departures, and at sla_next_deadline. Also refreshes
 * the window gauges. */
int sla_poll(sla *s, uint64_t now, sla_event *ev, int max);
/* When the oldest queued request expires (ns), or UINT64_MAX with an empty queue. */
uint64_t sla_next_deadline(const sla *s);

/* The attnd accepted the SUBMIT (SUBMIT_ACK OK): its next LOAD counts the sequence. */
void sla_req_ack(sla *s, sla_req *r, uint64_t now);
/* n >= 1 output tokens of r arrived at now (one TOKENS message). The first token sets TTFT;
 * each later token gets the gap since the previous message divided by n; tokens that arrive
 * with the first one get gap 0. Implies the ack. */
void sla_req_tokens(sla *s, sla_req *r, uint32_t n, uint64_t now);
/* r leaves (SLA_END_*): queued or running, it is unlinked and IDLE afterwards. */
void sla_req_finish(sla *s, sla_req *r, uint64_t now, int end);

/* ---- TPOT accounting ----------------------------------------------------------------------- */

typedef struct sla_counts {
    uint64_t admitted, queued, rejected[5]; /* rejected[SLA_REJ_*] */
    uint64_t finished, goodput, goodput_tokens, cancelled, refused;
    uint32_t running, waiting;
} sla_counts;
void sla_get_counts(const sla *s, sla_counts *out);

enum { SLA_VERDICT_NODATA = 0, SLA_VERDICT_MET = 1, SLA_VERDICT_VIOLATED = 2 };
/* The configured percentile of ITL over the window ending at now (seconds, in *itl_s; an
 * upper bound within 1% of the sample; 0 with no data) and the verdict. */
int sla_verdict(const sla *s, uint64_t now, double *itl_s);
/* Any quantile q in (0, 1] of ITL over the window (seconds; 0 with no data). */
double sla_itl_quantile(const sla *s, uint64_t now, double q);
/* Retry-After (s, 1 .. 60) for a request at queue position pos (0 = head): the time the
 * recent departure rate needs to free pos + 1 places; queue_wait when nothing departed. */
uint32_t sla_retry_after_s(const sla *s, uint64_t now, uint32_t pos);

/* Registers the SLA metrics (docs/sla.md lists them) in reg and updates them from now on:
 * afd:inter_token_latency_seconds, afd:request_time_per_output_token_seconds,
 * afd:time_to_first_token_seconds, afd:e2e_request_latency_seconds (histograms),
 * afd:num_requests_running, afd:num_requests_waiting (gauges kept by sla: the router does not
 * set them), afd:sla_* counters and the window gauges. Once per sla. 0 or negative. */
int sla_metrics_register(sla *s, afd_metrics *reg);

#endif
