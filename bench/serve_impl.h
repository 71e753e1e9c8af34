/* serve_impl.h: the pieces of `afd-bench serve` (bench/serve*.c), an open-loop load generator
 * for an OpenAI-compatible streaming server.
 *
 *   serve_parse.c  pure, resumable parsers: HTTP/1.1 response framing (status, headers,
 *                  chunked / Content-Length / until-close body) and Server-Sent Events, each
 *                  fed (buf, len) slices cut anywhere; one stream chunk's JSON (jansson).
 *   serve_gen.c    seeded randomness: arrival times, length distributions, prompt bodies.
 *   serve_stats.c  per-request records -> percentiles, the table and the JSON summary.
 *   serve.c        options and the libevent loop (one thread, one connection per request).
 *
 * Nothing here is thread-safe; the benchmark runs one thread. Errors: 0 / negative (err.h),
 * with an afd_err message naming what is wrong. Lengths from the network are checked against
 * the limits in the parser structs before anything is buffered.
 */
#ifndef AFD_BENCH_SERVE_IMPL_H
#define AFD_BENCH_SERVE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common/base/err.h"

/* ---- HTTP/1.1 response framing (serve_parse.c) -------------------------------------------- */

#define SV_HTTP_LINE_MAX 8192
#define SV_HTTP_HEADERS_MAX 100

typedef enum sv_http_state {
    SV_H_STATUS,     /* status line */
    SV_H_HEADERS,    /* header lines up to the empty one */
    SV_H_LEN,        /* Content-Length body */
    SV_H_CLOSE,      /* body up to the end of the connection */
    SV_H_CHUNK_SIZE, /* chunked: the hex size line */
    SV_H_CHUNK_DATA, /* chunked: data of the current chunk */
    SV_H_CHUNK_END,  /* chunked: the CRLF after a chunk's data */
    SV_H_TRAILERS,   /* chunked: trailer lines after the last chunk */
    SV_H_DONE,
} sv_http_state;

typedef struct sv_http {
    sv_http_state state;
    int status;            /* the response's status code, once the status line is in */
    bool chunked;          /* Transfer-Encoding: chunked */
    bool have_len;         /* Content-Length seen */
    bool event_stream;     /* Content-Type: text/event-stream */
    uint64_t remaining;    /* body bytes (LEN) or chunk bytes (CHUNK_DATA) still to come */
    uint64_t body_max;     /* largest Content-Length / chunk size accepted */
    int n_headers;
    size_t line_len;
    char line[SV_HTTP_LINE_MAX];
} sv_http;

/* Body bytes as they are decoded; return 0 to go on, negative to stop the parse with that code. */
typedef int (*sv_body_fn)(void *ctx, const char *p, size_t n);

void sv_http_init(sv_http *h, uint64_t body_max);
/* Feeds n bytes of the response. Returns 0 (more needed), 1 (the response is complete; bytes
 * after it are ignored), or negative: AFD_E_FORMAT / AFD_E_LIMIT with *err naming the fault, or
 * the body callback's code. */
int sv_http_feed(sv_http *h, const char *p, size_t n, sv_body_fn fn, void *ctx, afd_err *err);
/* The peer closed the connection: 1 if that completes the response (an until-close body),
 * AFD_E_PEER with a message saying where the response was cut otherwise. */
int sv_http_eof(sv_http *h, afd_err *err);

/* ---- Server-Sent Events (serve_parse.c) ---------------------------------------------------- */

/* One event's data (the "data:" lines joined with '\n'); not NUL-terminated. */
typedef int (*sv_event_fn)(void *ctx, const char *data, size_t len);

typedef struct sv_sse {
    size_t max_event;    /* longest line and longest event data accepted */
    char *line;          /* current line, line_cap bytes (grown up to max_event) */
    size_t line_len, line_cap;
    char *data;          /* current event's data, data_cap bytes (grown up to max_event) */
    size_t data_len, data_cap;
    bool has_data;       /* a data field was seen since the last dispatch */
    bool skip_lf;        /* the previous byte was a CR ending a line: a LF next belongs to it */
    bool bom_checked;    /* a leading UTF-8 BOM was looked for */
    uint64_t n_events;
} sv_sse;

void sv_sse_init(sv_sse *s, size_t max_event); /* buffers start small, grow on demand */
void sv_sse_free(sv_sse *s);
/* Feeds bytes cut anywhere (lines end in LF, CRLF or CR). Calls fn once per event with data.
 * Returns 0, AFD_E_LIMIT (a line or event over max_event) or fn's negative code. */
int sv_sse_feed(sv_sse *s, const char *p, size_t n, sv_event_fn fn, void *ctx, afd_err *err);

/* ---- one stream chunk (serve_parse.c) ------------------------------------------------------ */

typedef struct sv_chunk {
    bool done;            /* the "[DONE]" sentinel */
    bool content;         /* a choice carries non-empty text (completions) / delta.content (chat) */
    bool error;           /* an {"error": ...} object: the server gave up mid-stream */
    int completion_tokens; /* usage.completion_tokens, -1 when the chunk has no usage */
    int prompt_tokens;     /* usage.prompt_tokens, -1 when absent */
    char finish[24];      /* a choice's finish_reason, "" when null or absent */
    char message[160];    /* error.message when error */
} sv_chunk;

/* Parses one event's data. AFD_E_FORMAT (with *err) when it is not a JSON object or a field has
 * the wrong type. */
int sv_chunk_parse(const char *data, size_t len, bool chat, sv_chunk *c, afd_err *err);

/* ---- seeded randomness (serve_gen.c) ------------------------------------------------------- */

typedef struct sv_rng {
    uint64_t s[4];
} sv_rng;

void sv_rng_seed(sv_rng *r, uint64_t seed, uint64_t stream); /* independent stream per index */
uint64_t sv_rng_next(sv_rng *r);
double sv_rng_uniform(sv_rng *r); /* [0, 1) */
double sv_rng_normal(sv_rng *r);  /* standard normal */

typedef enum sv_dist_kind { SV_DIST_FIXED, SV_DIST_UNIFORM, SV_DIST_LOGNORM } sv_dist_kind;
#define SV_LEN_MAX (1 << 20)

/* A length distribution: "N", "a:b" (uniform integers, inclusive) or "lognorm:mean:sigma"
 * (log-normal with that mean and sigma of the underlying normal), drawn into [1, SV_LEN_MAX]. */
typedef struct sv_dist {
    sv_dist_kind kind;
    double a, b;
} sv_dist;

int sv_dist_parse(const char *s, sv_dist *d, afd_err *err);
int sv_dist_draw(const sv_dist *d, sv_rng *r);
void sv_dist_format(const sv_dist *d, char *buf, size_t cap);

/* Arrival times in seconds from the start, sorted: exponential gaps of mean 1/rate (rate <= 0
 * or infinite: all at 0), until `until` seconds (when > 0) and at most `max_n` (when > 0).
 * Returns the count; *out is malloc'ed (free it), NULL when the count is 0. */
int sv_arrivals(double rate, double until, int max_n, sv_rng *r, double **out);

/* A request body: the JSON for /v1/completions (prompt = prompt_len token ids drawn from
 * [tok_lo, tok_hi] by rng) or for /v1/chat/completions (one user message of about prompt_len
 * words). Returns the body length or negative (-ENOMEM); *out is malloc'ed. */
typedef struct sv_body_opts {
    bool chat;
    const char *model;
    int prompt_len, max_tokens;
    int tok_lo, tok_hi;
} sv_body_opts;
long sv_body_build(const sv_body_opts *o, sv_rng *r, char **out);

/* ---- per-request records and the report (serve_stats.c) ------------------------------------ */

typedef enum sv_outcome {
    SV_PENDING = 0,  /* not sent (run interrupted or out of time first) */
    SV_INFLIGHT,
    SV_OK,           /* 200 and the stream ended with [DONE] */
    SV_REJECTED,     /* 429 or 503 */
    SV_HTTP_ERROR,   /* another status */
    SV_CONNECT,      /* could not connect */
    SV_TIMEOUT,      /* --timeout passed */
    SV_STREAM,       /* closed or malformed mid-response, or an error object in the stream */
    SV_INTERRUPTED,  /* in flight when the run was stopped */
    SV_N_OUTCOMES
} sv_outcome;

typedef struct sv_req {
    int idx;
    bool warmup;
    int prompt_len, max_tokens;
    double t_sched, t_send, t_first, t_last, t_end; /* seconds from the run start */
    sv_outcome outcome;
    int status;            /* HTTP status, 0 if none */
    int n_chunks;          /* chunks with content */
    int tokens;            /* usage.completion_tokens (n_chunks when the server sent no usage) */
    int prompt_tokens;     /* usage.prompt_tokens, -1 if absent */
    bool usage_seen;
    bool capped;           /* waited for a slot under --concurrency-cap */
    char finish[16];
    float *gaps;           /* ms between consecutive content chunks: n_chunks - 1 of them */
    int gaps_cap;
} sv_req;

/* Appends one inter-chunk gap (xrealloc: the count is bounded by max_tokens). */
void sv_req_gap(sv_req *q, double ms);
const char *sv_outcome_name(sv_outcome o);

typedef struct sv_pct {
    double mean, p50, p90, p99, max;
    long n;
} sv_pct;

typedef struct sv_summary {
    /* counts over measured (non-warmup) requests */
    long measured, sent, completed, rejected, rej_429, rej_503, errors, interrupted, not_sent;
    long by_outcome[SV_N_OUTCOMES];
    long no_usage, no_content, sla_met, cap_delayed;
    long output_tokens, prompt_tokens;
    sv_pct ttft, tpot_tok, tpot_req, itl_chunk, e2e, cap_wait; /* milliseconds */
    double span_s;            /* first measured send .. last measured end */
    double tokens_per_s, req_per_s;
    double goodput;           /* sla_met / completed */
    double goodput_of_sent;   /* sla_met / sent */
    long finish_length, finish_stop, finish_other;
} sv_summary;

typedef struct sv_sla {
    double tpot_ms;   /* per-request TPOT target */
    double ttft_ms;   /* 0: no TTFT target */
} sv_sla;

/* Percentiles by nearest rank over the measured requests. Allocates temporaries only. */
void sv_summarize(const sv_req *q, int n, const sv_sla *sla, sv_summary *s);
/* The human-readable table (counts, latency percentiles, throughput, goodput). */
void sv_report_table(FILE *f, const sv_summary *s, const sv_sla *sla);
/* The headline figures as a new JSON object (non-finite values as null); caller decrefs. */
json_t *sv_summary_json(const sv_summary *s);
/* One request as a new JSON object, for --json-out. */
json_t *sv_req_json(const sv_req *q);
/* Nearest-rank percentile summary of v[0..n) (sorted in place) plus `zeros` extra 0 samples. */
void sv_pct_of(float *v, long n, long zeros, sv_pct *p);

#endif
