/* ctrl.c: control-plane message encoding and validating decoding (see ctrl.h and the "Control
 * plane" section of docs/protocol.md). Every payload is a fixed part (a multiple of 8 bytes:
 * scalars, counts and string lengths), then the u32-sized arrays, then the byte strings. */
#include "proto/ctrl.h"

#include <string.h>

/* ---- little-endian cursors (bounds are checked by the callers before any access) ---- */

typedef struct wr {
    uint8_t *p;
    size_t off;
} wr;

typedef struct rd {
    const uint8_t *p;
    size_t off;
} rd;

static void w8(wr *w, uint8_t v) {
    w->p[w->off++] = v;
}
static void w16(wr *w, uint16_t v) {
    w8(w, (uint8_t)v);
    w8(w, (uint8_t)(v >> 8));
}
static void w32(wr *w, uint32_t v) {
    w16(w, (uint16_t)v);
    w16(w, (uint16_t)(v >> 16));
}
static void w64(wr *w, uint64_t v) {
    w32(w, (uint32_t)v);
    w32(w, (uint32_t)(v >> 32));
}
static void wf32(wr *w, float v) {
    uint32_t b;
    memcpy(&b, &v, 4);
    w32(w, b);
}
static void wbytes(wr *w, const void *s, size_t n) {
    if (n) memcpy(w->p + w->off, s, n);
    w->off += n;
}

static uint8_t r8(rd *r) {
    return r->p[r->off++];
}
static uint16_t r16(rd *r) {
    uint16_t lo = r8(r);
    return (uint16_t)(lo | (r8(r) << 8));
}
static uint32_t r32(rd *r) {
    uint32_t lo = r16(r);
    return lo | ((uint32_t)r16(r) << 16);
}
static uint64_t r64(rd *r) {
    uint64_t lo = r32(r);
    return lo | ((uint64_t)r32(r) << 32);
}
static float rf32(rd *r) {
    uint32_t b = r32(r);
    float v;
    memcpy(&v, &b, 4);
    return v;
}
/* n bytes in place (NULL when n is 0). */
static const void *rarr(rd *r, uint64_t n) {
    const void *q = n ? r->p + r->off : NULL;
    r->off += n;
    return q;
}

/* ---- limits ---- */

static const ctrl_limits HARD = {
    .max_prompt = CTRL_PROMPT_MAX,
    .max_stop = CTRL_STOP_MAX,
    .max_top = CTRL_TOP_MAX,
    .max_gen = CTRL_GEN_MAX,
    .max_blocks = CTRL_BLOCKS_MAX,
    .max_rkey = CTRL_RKEY_MAX,
    .max_req_id = CTRL_REQ_ID_MAX,
    .max_name = CTRL_NAME_MAX,
    .max_host = CTRL_HOST_MAX,
    .max_msg = CTRL_MSG_MAX,
    .max_kv_data = CTRL_KV_DATA_MAX,
    .vocab = 0,
};

void ctrl_limits_default(ctrl_limits *lim) {
    *lim = HARD;
    lim->max_prompt = 131072;
    lim->max_gen = 256;
    lim->max_blocks = 65536;
    lim->max_kv_data = 4u << 20;
}

static uint32_t cap32(uint32_t v, uint32_t max) {
    return v < max ? v : max;
}

/* *lim (or the defaults) with every field capped at its built-in maximum. */
static ctrl_limits eff_limits(const ctrl_limits *lim) {
    ctrl_limits l;
    if (!lim) {
        ctrl_limits_default(&l);
        return l;
    }
    l = *lim;
    l.max_prompt = cap32(l.max_prompt, HARD.max_prompt);
    l.max_stop = cap32(l.max_stop, HARD.max_stop);
    l.max_top = cap32(l.max_top, HARD.max_top);
    l.max_gen = cap32(l.max_gen, HARD.max_gen);
    l.max_blocks = cap32(l.max_blocks, HARD.max_blocks);
    l.max_rkey = cap32(l.max_rkey, HARD.max_rkey);
    l.max_req_id = cap32(l.max_req_id, HARD.max_req_id);
    l.max_name = cap32(l.max_name, HARD.max_name);
    l.max_host = cap32(l.max_host, HARD.max_host);
    l.max_msg = cap32(l.max_msg, HARD.max_msg);
    l.max_kv_data = cap32(l.max_kv_data, HARD.max_kv_data);
    return l;
}

/* ---- fixed-part sizes and flag bits (docs/protocol.md, "Control plane") ---- */

enum {
    HEAD_SIZE = 56, /* request head: SUBMIT, RESERVE, PREFILL */
    RESV_SIZE = 48, /* reservation */
    ADDR_SIZE = 8,  /* PREFILL: port, host_len */
    STATUS_SIZE = 16,
    TOKENS_SIZE = 32,
    CANCEL_SIZE = 8,
    LOAD_SIZE = 72,
    DRAIN_SIZE = 16,
    RESERVE_SIZE = HEAD_SIZE + 8,
    RESERVE_OK_SIZE = 8 + RESV_SIZE,
    PREFILL_SIZE = HEAD_SIZE + RESV_SIZE + ADDR_SIZE,
    DONE_SIZE = 32,
    READY_SIZE = 40,
    RELEASE_SIZE = 24,
    KV_DATA_SIZE = 32,
    REGISTER_SIZE = 32,
};

enum { HF_SEED = 1, HF_IGNORE_EOS = 2, HF_LOGPROBS = 4, HF_ALL = 7 }; /* request head */
enum { TF_LOGPROBS = 1 };                                             /* TOKENS */
enum { LF_DRAINING = 1 };                                             /* LOAD */
enum { DF_RESUME = 1 };                                               /* DRAIN */
enum { PF_LOGPROB = 1 };                                              /* PREFILL_DONE */
enum { KF_CHECKSUM = 1 };                                             /* KV_READY */

/* ---- value rules shared by encoders and decoders ---- */

static bool printable(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e) return false;
    return true;
}

/* A caller's NUL-terminated string (array of max + 1): its length, or _LIMIT / _STRING. */
static int str_len(const char *s, size_t max, size_t *n) {
    *n = strnlen(s, max + 1);
    if (*n > max) return WIRE_E_LIMIT;
    return printable((const uint8_t *)s, *n) ? 0 : WIRE_E_STRING;
}

/* A received string of n bytes (n <= the destination's capacity, checked earlier). */
static int rstr(rd *r, size_t n, char *dst) {
    const uint8_t *s = r->p + r->off;
    if (!printable(s, n)) return WIRE_E_STRING;
    memcpy(dst, s, n);
    dst[n] = '\0';
    r->off += n;
    return 0;
}

static uint32_t f32_bits(float v) {
    uint32_t b;
    memcpy(&b, &v, 4);
    return b;
}

/* A log-probability: +0, or negative (-inf included); never NaN or positive. */
static bool logprob_ok(float v) {
    uint32_t b = f32_bits(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) return false; /* NaN */
    return b == 0 || (b >> 31);
}

static int ids_check(const uint32_t *ids, uint64_t n, uint32_t vocab) {
    if (vocab == 0) return 0;
    for (uint64_t i = 0; i < n; i++)
        if (ids[i] >= vocab) return WIRE_E_VALUE;
    return 0;
}

static int logprobs_check(const float *lp, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (!logprob_ok(lp[i])) return WIRE_E_VALUE;
    return 0;
}

/* n_tok rows of k candidates: ids < vocab and distinct within a row, logprobs valid. */
static int cands_check(const ctrl_cand *c, uint64_t n_tok, uint32_t k, uint32_t vocab) {
    for (uint64_t t = 0; t < n_tok; t++) {
        const ctrl_cand *row = c + t * k;
        for (uint32_t i = 0; i < k; i++) {
            if ((vocab && row[i].id >= vocab) || !logprob_ok(row[i].logprob)) return WIRE_E_VALUE;
            for (uint32_t j = 0; j < i; j++)
                if (row[j].id == row[i].id) return WIRE_E_VALUE;
        }
    }
    return 0;
}

/* An encoder's array argument: present whenever its count is not zero. */
static int arr_present(const void *p, uint64_t n) {
    return n == 0 || p ? 0 : WIRE_E_VALUE;
}

static int reason_check(uint32_t reason) {
    return reason <= CTRL_R_MAX ? 0 : WIRE_E_VALUE;
}

static int role_check(uint8_t role) {
    return role >= CTRL_ROLE_PREFILL && role <= CTRL_ROLE_BOTH ? 0 : WIRE_E_VALUE;
}

/* Exact length: TRUNC when short, LEN when long. */
static int len_check(size_t len, uint64_t want) {
    if (len < want) return WIRE_E_TRUNC;
    return len > want ? WIRE_E_LEN : 0;
}

/* Common decoder entry: alignment, then at least the fixed part. */
static int dec_begin(const uint8_t *p, size_t len, size_t fixed) {
    if ((uintptr_t)p % WIRE_ALIGN) return WIRE_E_ALIGN;
    return len < fixed ? WIRE_E_TRUNC : 0;
}

/* ---- request head: seq_id, sampling, prompt count, request id length ---- */

typedef struct head {
    uint64_t seq_id;
    uint32_t n_prompt;
    uint8_t flags;
    uint16_t reserved;
    size_t req_len;
    ctrl_sampling s;
} head;

static uint8_t head_flags(const ctrl_sampling *s) {
    return (uint8_t)((s->has_seed ? HF_SEED : 0) | (s->ignore_eos ? HF_IGNORE_EOS : 0) |
                     (s->logprobs ? HF_LOGPROBS : 0));
}

static void head_put(wr *w, const head *h) {
    const ctrl_sampling *s = &h->s;
    w64(w, h->seq_id);
    w64(w, s->seed);
    w64(w, s->deadline_ns);
    wf32(w, s->temperature);
    wf32(w, s->top_p);
    w32(w, (uint32_t)s->top_k);
    w32(w, s->max_tokens);
    w32(w, h->n_prompt);
    w32(w, s->priority);
    w16(w, (uint16_t)s->n_stop);
    w8(w, head_flags(s));
    w8(w, s->top_logprobs);
    w16(w, (uint16_t)h->req_len);
    w16(w, 0);
}

static void head_get(rd *r, head *h) {
    ctrl_sampling *s = &h->s;
    *h = (head){0};
    h->seq_id = r64(r);
    s->seed = r64(r);
    s->deadline_ns = r64(r);
    s->temperature = rf32(r);
    s->top_p = rf32(r);
    s->top_k = (int32_t)r32(r);
    s->max_tokens = r32(r);
    h->n_prompt = r32(r);
    s->priority = r32(r);
    s->n_stop = r16(r);
    h->flags = r8(r);
    s->top_logprobs = r8(r);
    h->req_len = r16(r);
    h->reserved = r16(r);
    s->has_seed = h->flags & HF_SEED;
    s->ignore_eos = h->flags & HF_IGNORE_EOS;
    s->logprobs = h->flags & HF_LOGPROBS;
}

static int sampling_check(const ctrl_sampling *s, const ctrl_limits *l) {
    if (!(s->temperature >= 0.0f && s->temperature <= CTRL_TEMP_MAX)) return WIRE_E_VALUE;
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f)) return WIRE_E_VALUE;
    if (s->top_k != -1 && s->top_k < 1) return WIRE_E_VALUE;
    if (s->max_tokens == 0 || (!s->has_seed && s->seed != 0)) return WIRE_E_VALUE;
    if (s->top_logprobs > l->max_top || s->n_stop > l->max_stop) return WIRE_E_LIMIT;
    if (s->top_logprobs > 0 && !s->logprobs) return WIRE_E_VALUE;
    return 0;
}

/* The head's fields and counts (decoder: flags and reserved too). */
static int head_check(const head *h, const ctrl_limits *l) {
    if (h->flags & ~HF_ALL) return WIRE_E_FLAGS;
    if (h->reserved != 0 || h->n_prompt == 0) return WIRE_E_VALUE;
    if (h->n_prompt > l->max_prompt || h->req_len > l->max_req_id) return WIRE_E_LIMIT;
    return sampling_check(&h->s, l);
}

/* Encoder side: fills *h from the caller's fields and checks them. */
static int head_make(head *h, uint64_t seq_id, uint32_t n_prompt, const ctrl_sampling *s,
                     const char *req_id) {
    *h = (head){.seq_id = seq_id, .n_prompt = n_prompt, .s = *s};
    h->flags = head_flags(s);
    int rc = str_len(req_id, CTRL_REQ_ID_MAX, &h->req_len);
    if (rc || (rc = head_check(h, &HARD))) return rc;
    if ((rc = arr_present(s->stop, s->n_stop)) != 0) return rc;
    return ids_check(s->stop, s->n_stop, 0);
}

/* ---- reservation ---- */

static void resv_put(wr *w, const ctrl_resv *r) {
    w64(w, r->epoch);
    w64(w, r->lease_ms);
    w64(w, r->remote_base);
    w64(w, r->block_bytes);
    w32(w, r->instance_id);
    w32(w, r->block_size);
    w32(w, r->n_blocks);
    w16(w, (uint16_t)r->rkey_len);
    w16(w, 0);
}

/* Fixed part; returns the reserved field for the check. */
static uint16_t resv_get(rd *rr, ctrl_resv *r) {
    *r = (ctrl_resv){0};
    r->epoch = r64(rr);
    r->lease_ms = r64(rr);
    r->remote_base = r64(rr);
    r->block_bytes = r64(rr);
    r->instance_id = r32(rr);
    r->block_size = r32(rr);
    r->n_blocks = r32(rr);
    r->rkey_len = r16(rr);
    return r16(rr);
}

static int resv_check(const ctrl_resv *r, const ctrl_limits *l) {
    if (r->epoch == 0 || r->lease_ms == 0 || r->block_size == 0 || r->block_bytes == 0 ||
        r->n_blocks == 0)
        return WIRE_E_VALUE;
    if (r->n_blocks > l->max_blocks || r->rkey_len > l->max_rkey) return WIRE_E_LIMIT;
    return 0;
}

/* remote_base + (max id + 1) * block_bytes must not overflow 64 bits. */
static int resv_values(const ctrl_resv *r) {
    uint32_t top = 0;
    for (uint32_t i = 0; i < r->n_blocks; i++)
        if (r->block_ids[i] > top) top = r->block_ids[i];
    uint64_t span, end;
    if (__builtin_mul_overflow((uint64_t)top + 1, r->block_bytes, &span) ||
        __builtin_add_overflow(r->remote_base, span, &end))
        return WIRE_E_VALUE;
    return 0;
}

static int resv_make(const ctrl_resv *r) {
    int rc = resv_check(r, &HARD);
    if (rc || (rc = arr_present(r->block_ids, r->n_blocks)) ||
        (rc = arr_present(r->rkey, r->rkey_len)))
        return rc;
    return resv_values(r);
}

/* ---- REGISTER ---- */

static int register_check(const ctrl_register *m, size_t host_len, size_t model_len) {
    if (role_check(m->role)) return WIRE_E_VALUE;
    if ((host_len == 0) != (m->port == 0)) return WIRE_E_VALUE;
    if (host_len == 0 && m->role != CTRL_ROLE_PREFILL) return WIRE_E_VALUE;
    if (m->kv_blocks == 0 || m->block_size == 0 || m->max_batch == 0 || m->max_context == 0)
        return WIRE_E_VALUE;
    return model_len == 0 ? WIRE_E_VALUE : 0;
}

int ctrl_register_encode(uint8_t *buf, size_t cap, const ctrl_register *m, size_t *len) {
    size_t nh, nm;
    int rc = str_len(m->host, CTRL_HOST_MAX, &nh);
    if (rc || (rc = str_len(m->model, CTRL_NAME_MAX, &nm)) || (rc = register_check(m, nh, nm)))
        return rc;
    size_t total = REGISTER_SIZE + nh + nm;
    if (cap < total) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    w32(&w, m->instance_id);
    w8(&w, m->role);
    w8(&w, 0);
    w16(&w, m->port);
    w32(&w, m->kv_blocks);
    w32(&w, m->block_size);
    w32(&w, m->max_batch);
    w32(&w, m->max_context);
    w16(&w, (uint16_t)nh);
    w16(&w, (uint16_t)nm);
    w32(&w, 0);
    wbytes(&w, m->host, nh);
    wbytes(&w, m->model, nm);
    *len = w.off;
    return 0;
}

int ctrl_register_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_register *out) {
    ctrl_limits l = eff_limits(lim);
    int rc = dec_begin(p, len, REGISTER_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    ctrl_register m = {0};
    m.instance_id = r32(&r);
    m.role = r8(&r);
    uint8_t res8 = r8(&r);
    m.port = r16(&r);
    m.kv_blocks = r32(&r);
    m.block_size = r32(&r);
    m.max_batch = r32(&r);
    m.max_context = r32(&r);
    size_t nh = r16(&r), nm = r16(&r);
    uint32_t res32 = r32(&r);
    if (res8 || res32) return WIRE_E_VALUE;
    if (nh > l.max_host || nm > l.max_name) return WIRE_E_LIMIT;
    if ((rc = register_check(&m, nh, nm)) || (rc = len_check(len, REGISTER_SIZE + nh + nm)) ||
        (rc = rstr(&r, nh, m.host)) || (rc = rstr(&r, nm, m.model)))
        return rc;
    *out = m;
    return 0;
}

/* ---- LOAD ---- */

static int load_check(const ctrl_load *m) {
    if (role_check(m->role)) return WIRE_E_VALUE;
    if ((uint64_t)m->kv_blocks_free + m->kv_blocks_reserved > m->kv_blocks_total)
        return WIRE_E_VALUE;
    if (m->block_size == 0) return WIRE_E_VALUE;
    return m->tokens_per_s >= 0.0f && m->tokens_per_s <= 3.4e38f ? 0 : WIRE_E_VALUE;
}

int ctrl_load_encode(uint8_t *buf, size_t cap, const ctrl_load *m, size_t *len) {
    int rc = load_check(m);
    if (rc) return rc;
    if (cap < LOAD_SIZE) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    w64(&w, m->step);
    w64(&w, m->ctx_tokens);
    w32(&w, m->instance_id);
    w8(&w, m->role);
    w8(&w, m->draining ? LF_DRAINING : 0);
    w16(&w, m->micro_batches);
    w32(&w, m->running);
    w32(&w, m->waiting);
    w32(&w, m->batch_tokens);
    w32(&w, m->last_step_us);
    w32(&w, m->p50_step_us);
    w32(&w, m->p99_step_us);
    w32(&w, m->kv_blocks_free);
    w32(&w, m->kv_blocks_reserved);
    w32(&w, m->kv_blocks_total);
    w32(&w, m->block_size);
    w32(&w, m->reservations);
    wf32(&w, m->tokens_per_s);
    *len = w.off;
    return 0;
}

int ctrl_load_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_load *out) {
    int rc = dec_begin(p, len, LOAD_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    ctrl_load m = {0};
    m.step = r64(&r);
    m.ctx_tokens = r64(&r);
    m.instance_id = r32(&r);
    m.role = r8(&r);
    uint8_t flags = r8(&r);
    m.draining = flags & LF_DRAINING;
    m.micro_batches = r16(&r);
    m.running = r32(&r);
    m.waiting = r32(&r);
    m.batch_tokens = r32(&r);
    m.last_step_us = r32(&r);
    m.p50_step_us = r32(&r);
    m.p99_step_us = r32(&r);
    m.kv_blocks_free = r32(&r);
    m.kv_blocks_reserved = r32(&r);
    m.kv_blocks_total = r32(&r);
    m.block_size = r32(&r);
    m.reservations = r32(&r);
    m.tokens_per_s = rf32(&r);
    if (flags & ~LF_DRAINING) return WIRE_E_FLAGS;
    if ((rc = load_check(&m)) || (rc = len_check(len, LOAD_SIZE))) return rc;
    *out = m;
    return 0;
}

/* ---- DRAIN ---- */

int ctrl_drain_encode(uint8_t *buf, size_t cap, const ctrl_drain *m, size_t *len) {
    if (m->resume && m->deadline_ms) return WIRE_E_VALUE;
    if (cap < DRAIN_SIZE) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    w64(&w, m->deadline_ms);
    w32(&w, m->resume ? DF_RESUME : 0);
    w32(&w, 0);
    *len = w.off;
    return 0;
}

int ctrl_drain_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_drain *out) {
    int rc = dec_begin(p, len, DRAIN_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    ctrl_drain m = {.deadline_ms = r64(&r)};
    uint32_t flags = r32(&r), res = r32(&r);
    m.resume = flags & DF_RESUME;
    if (flags & ~(uint32_t)DF_RESUME) return WIRE_E_FLAGS;
    if (res || (m.resume && m.deadline_ms)) return WIRE_E_VALUE;
    if ((rc = len_check(len, DRAIN_SIZE))) return rc;
    *out = m;
    return 0;
}

/* ---- SUBMIT ---- */

int ctrl_submit_encode(uint8_t *buf, size_t cap, const ctrl_submit *m, size_t *len) {
    head h;
    int rc = head_make(&h, m->seq_id, m->n_prompt, &m->s, m->req_id);
    if (rc || (rc = arr_present(m->prompt, m->n_prompt))) return rc;
    uint64_t total = HEAD_SIZE + 4ull * (m->n_prompt + m->s.n_stop) + h.req_len;
    if (cap < total) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    head_put(&w, &h);
    wbytes(&w, m->prompt, 4ull * m->n_prompt);
    wbytes(&w, m->s.stop, 4ull * m->s.n_stop);
    wbytes(&w, m->req_id, h.req_len);
    *len = w.off;
    return 0;
}

/* Reads the prompt and stop arrays of a checked head and checks their ids. */
static int head_arrays(rd *r, const head *h, const ctrl_limits *l, const uint32_t **prompt,
                       ctrl_sampling *s) {
    *prompt = rarr(r, 4ull * h->n_prompt);
    s->stop = rarr(r, 4ull * s->n_stop);
    int rc = ids_check(*prompt, h->n_prompt, l->vocab);
    return rc ? rc : ids_check(s->stop, s->n_stop, l->vocab);
}

int ctrl_submit_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_submit *out) {
    ctrl_limits l = eff_limits(lim);
    int rc = dec_begin(p, len, HEAD_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    head h;
    head_get(&r, &h);
    if ((rc = head_check(&h, &l))) return rc;
    if ((rc = len_check(len, HEAD_SIZE + 4ull * (h.n_prompt + h.s.n_stop) + h.req_len))) return rc;
    ctrl_submit m = {.seq_id = h.seq_id, .n_prompt = h.n_prompt, .s = h.s};
    if ((rc = head_arrays(&r, &h, &l, &m.prompt, &m.s)) || (rc = rstr(&r, h.req_len, m.req_id)))
        return rc;
    *out = m;
    return 0;
}

/* ---- SUBMIT_ACK / RESERVE_FAIL ---- */

static int status_check(const ctrl_status *m, size_t msg_len, bool fail) {
    if (reason_check(m->reason)) return WIRE_E_VALUE;
    if (fail && m->reason == CTRL_OK) return WIRE_E_VALUE;
    return m->reason == CTRL_OK && msg_len ? WIRE_E_VALUE : 0;
}

static int status_encode(uint8_t *buf, size_t cap, const ctrl_status *m, bool fail, size_t *len) {
    size_t n;
    int rc = str_len(m->msg, CTRL_MSG_MAX, &n);
    if (rc || (rc = status_check(m, n, fail))) return rc;
    if (cap < STATUS_SIZE + n) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    w64(&w, m->seq_id);
    w32(&w, m->reason);
    w16(&w, (uint16_t)n);
    w16(&w, 0);
    wbytes(&w, m->msg, n);
    *len = w.off;
    return 0;
}

static int status_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, bool fail,
                         ctrl_status *out) {
    ctrl_limits l = eff_limits(lim);
    int rc = dec_begin(p, len, STATUS_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    ctrl_status m = {.seq_id = r64(&r), .reason = r32(&r)};
    size_t n = r16(&r);
    if (r16(&r)) return WIRE_E_VALUE;
    if (n > l.max_msg) return WIRE_E_LIMIT;
    if ((rc = status_check(&m, n, fail)) || (rc = len_check(len, STATUS_SIZE + n)) ||
        (rc = rstr(&r, n, m.msg)))
        return rc;
    *out = m;
    return 0;
}

int ctrl_submit_ack_encode(uint8_t *buf, size_t cap, const ctrl_status *m, size_t *len) {
    return status_encode(buf, cap, m, false, len);
}
int ctrl_submit_ack_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_status *out) {
    return status_decode(p, len, lim, false, out);
}
int ctrl_reserve_fail_encode(uint8_t *buf, size_t cap, const ctrl_status *m, size_t *len) {
    return status_encode(buf, cap, m, true, len);
}
int ctrl_reserve_fail_decode(const uint8_t *p, size_t len, const ctrl_limits *lim,
                             ctrl_status *out) {
    return status_decode(p, len, lim, true, out);
}

/* ---- TOKENS ---- */

static int tokens_check(const ctrl_tokens *m, size_t msg_len, const ctrl_limits *l) {
    if (m->finish > CTRL_FINISH_MAX) return WIRE_E_VALUE;
    if (m->n_tok > l->max_gen || m->n_top > l->max_top || msg_len > l->max_msg) return WIRE_E_LIMIT;
    if (m->n_tok == 0 && m->finish == CTRL_FINISH_NONE) return WIRE_E_VALUE;
    if (m->n_top > 0 && !m->has_logprobs) return WIRE_E_VALUE;
    if (m->finish == CTRL_FINISH_ERROR) return m->code < 0 ? 0 : WIRE_E_VALUE;
    return m->code == 0 && msg_len == 0 ? 0 : WIRE_E_VALUE;
}

static uint64_t tokens_size(const ctrl_tokens *m, size_t msg_len) {
    uint64_t per = 4 + (m->has_logprobs ? 4 : 0) + 8ull * m->n_top;
    return TOKENS_SIZE + per * m->n_tok + msg_len;
}

static int tokens_values(const ctrl_tokens *m, uint32_t vocab) {
    int rc = ids_check(m->ids, m->n_tok, vocab);
    if (rc || (m->has_logprobs && (rc = logprobs_check(m->logprobs, m->n_tok)))) return rc;
    return cands_check(m->top, m->n_tok, m->n_top, vocab);
}

static int tokens_make(const ctrl_tokens *m, size_t *n) {
    int rc = str_len(m->msg, CTRL_MSG_MAX, n);
    if (rc || (rc = tokens_check(m, *n, &HARD))) return rc;
    uint64_t nt = m->n_tok;
    if ((rc = arr_present(m->ids, nt)) ||
        (m->has_logprobs && (rc = arr_present(m->logprobs, nt))) ||
        (rc = arr_present(m->top, nt * m->n_top)))
        return rc;
    return tokens_values(m, 0);
}

int ctrl_tokens_encode(uint8_t *buf, size_t cap, const ctrl_tokens *m, size_t *len) {
    size_t n;
    int rc = tokens_make(m, &n);
    if (rc) return rc;
    if (cap < tokens_size(m, n)) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    w64(&w, m->seq_id);
    w32(&w, m->n_tok);
    w8(&w, m->finish);
    w8(&w, m->has_logprobs ? TF_LOGPROBS : 0);
    w8(&w, m->n_top);
    w8(&w, 0);
    w32(&w, (uint32_t)m->code);
    w32(&w, m->prompt_tokens);
    w32(&w, m->completion_tokens);
    w16(&w, (uint16_t)n);
    w16(&w, 0);
    wbytes(&w, m->ids, 4ull * m->n_tok);
    if (m->has_logprobs) wbytes(&w, m->logprobs, 4ull * m->n_tok);
    wbytes(&w, m->top, 8ull * m->n_tok * m->n_top);
    wbytes(&w, m->msg, n);
    *len = w.off;
    return 0;
}

/* Fixed part; returns WIRE_E_FLAGS / _VALUE for the flag and reserved fields. */
static int tokens_get(rd *r, ctrl_tokens *m, size_t *msg_len) {
    *m = (ctrl_tokens){.seq_id = r64(r), .n_tok = r32(r), .finish = r8(r)};
    uint8_t flags = r8(r);
    m->has_logprobs = flags & TF_LOGPROBS;
    m->n_top = r8(r);
    uint8_t res8 = r8(r);
    m->code = (int32_t)r32(r);
    m->prompt_tokens = r32(r);
    m->completion_tokens = r32(r);
    *msg_len = r16(r);
    uint16_t res16 = r16(r);
    if (flags & ~TF_LOGPROBS) return WIRE_E_FLAGS;
    return res8 || res16 ? WIRE_E_VALUE : 0;
}

int ctrl_tokens_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_tokens *out) {
    ctrl_limits l = eff_limits(lim);
    int rc = dec_begin(p, len, TOKENS_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    ctrl_tokens m;
    size_t n;
    if ((rc = tokens_get(&r, &m, &n)) || (rc = tokens_check(&m, n, &l)) ||
        (rc = len_check(len, tokens_size(&m, n))))
        return rc;
    m.ids = rarr(&r, 4ull * m.n_tok);
    m.logprobs = m.has_logprobs ? rarr(&r, 4ull * m.n_tok) : NULL;
    m.top = rarr(&r, 8ull * m.n_tok * m.n_top);
    if ((rc = tokens_values(&m, l.vocab)) || (rc = rstr(&r, n, m.msg))) return rc;
    *out = m;
    return 0;
}

/* ---- CANCEL ---- */

int ctrl_cancel_encode(uint8_t *buf, size_t cap, const ctrl_cancel *m, size_t *len) {
    if (cap < CANCEL_SIZE) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    w64(&w, m->seq_id);
    *len = w.off;
    return 0;
}

int ctrl_cancel_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_cancel *out) {
    int rc = dec_begin(p, len, CANCEL_SIZE);
    if (rc || (rc = len_check(len, CANCEL_SIZE))) return rc;
    rd r = {p, 0};
    out->seq_id = r64(&r);
    return 0;
}

/* ---- RESERVE ---- */

int ctrl_reserve_encode(uint8_t *buf, size_t cap, const ctrl_reserve *m, size_t *len) {
    head h;
    int rc = head_make(&h, m->seq_id, m->prompt_len, &m->s, m->req_id);
    if (rc) return rc;
    uint64_t total = RESERVE_SIZE + 4ull * m->s.n_stop + h.req_len;
    if (cap < total) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    head_put(&w, &h);
    w32(&w, m->lease_ms);
    w32(&w, 0);
    wbytes(&w, m->s.stop, 4ull * m->s.n_stop);
    wbytes(&w, m->req_id, h.req_len);
    *len = w.off;
    return 0;
}

int ctrl_reserve_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_reserve *out) {
    ctrl_limits l = eff_limits(lim);
    int rc = dec_begin(p, len, RESERVE_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    head h;
    head_get(&r, &h);
    ctrl_reserve m = {.seq_id = h.seq_id, .prompt_len = h.n_prompt, .s = h.s};
    m.lease_ms = r32(&r);
    if ((rc = head_check(&h, &l))) return rc;
    if (r32(&r)) return WIRE_E_VALUE;
    if ((rc = len_check(len, RESERVE_SIZE + 4ull * h.s.n_stop + h.req_len))) return rc;
    m.s.stop = rarr(&r, 4ull * m.s.n_stop);
    if ((rc = ids_check(m.s.stop, m.s.n_stop, l.vocab)) || (rc = rstr(&r, h.req_len, m.req_id)))
        return rc;
    *out = m;
    return 0;
}

/* ---- RESERVE_OK ---- */

int ctrl_reserve_ok_encode(uint8_t *buf, size_t cap, const ctrl_reserve_ok *m, size_t *len) {
    int rc = resv_make(&m->r);
    if (rc) return rc;
    uint64_t total = RESERVE_OK_SIZE + 4ull * m->r.n_blocks + m->r.rkey_len;
    if (cap < total) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    w64(&w, m->seq_id);
    resv_put(&w, &m->r);
    wbytes(&w, m->r.block_ids, 4ull * m->r.n_blocks);
    wbytes(&w, m->r.rkey, m->r.rkey_len);
    *len = w.off;
    return 0;
}

int ctrl_reserve_ok_decode(const uint8_t *p, size_t len, const ctrl_limits *lim,
                           ctrl_reserve_ok *out) {
    ctrl_limits l = eff_limits(lim);
    int rc = dec_begin(p, len, RESERVE_OK_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    ctrl_reserve_ok m = {.seq_id = r64(&r)};
    if (resv_get(&r, &m.r)) return WIRE_E_VALUE;
    if ((rc = resv_check(&m.r, &l)) ||
        (rc = len_check(len, RESERVE_OK_SIZE + 4ull * m.r.n_blocks + m.r.rkey_len)))
        return rc;
    m.r.block_ids = rarr(&r, 4ull * m.r.n_blocks);
    m.r.rkey = rarr(&r, m.r.rkey_len);
    if ((rc = resv_values(&m.r))) return rc;
    *out = m;
    return 0;
}

/* ---- PREFILL ---- */

/* The reservation must hold the prompt. */
static int prefill_check(const ctrl_prefill *m, size_t host_len) {
    if (m->port == 0 || host_len == 0) return WIRE_E_VALUE;
    return (uint64_t)m->r.n_blocks * m->r.block_size >= m->sub.n_prompt ? 0 : WIRE_E_VALUE;
}

static uint64_t prefill_size(const ctrl_prefill *m, size_t req_len, size_t host_len) {
    return PREFILL_SIZE + 4ull * (m->sub.n_prompt + m->sub.s.n_stop) + 4ull * m->r.n_blocks +
           req_len + host_len + m->r.rkey_len;
}

int ctrl_prefill_encode(uint8_t *buf, size_t cap, const ctrl_prefill *m, size_t *len) {
    const ctrl_submit *s = &m->sub;
    head h;
    size_t nh;
    int rc = head_make(&h, s->seq_id, s->n_prompt, &s->s, s->req_id);
    if (rc || (rc = arr_present(s->prompt, s->n_prompt)) || (rc = resv_make(&m->r)) ||
        (rc = str_len(m->host, CTRL_HOST_MAX, &nh)) || (rc = prefill_check(m, nh)))
        return rc;
    if (cap < prefill_size(m, h.req_len, nh)) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    head_put(&w, &h);
    resv_put(&w, &m->r);
    w16(&w, m->port);
    w16(&w, (uint16_t)nh);
    w32(&w, 0);
    wbytes(&w, s->prompt, 4ull * s->n_prompt);
    wbytes(&w, s->s.stop, 4ull * s->s.n_stop);
    wbytes(&w, m->r.block_ids, 4ull * m->r.n_blocks);
    wbytes(&w, s->req_id, h.req_len);
    wbytes(&w, m->host, nh);
    wbytes(&w, m->r.rkey, m->r.rkey_len);
    *len = w.off;
    return 0;
}

/* The fixed part of PREFILL into *m (strings and arrays not yet), checked. */
static int prefill_fixed(rd *r, const ctrl_limits *l, head *h, ctrl_prefill *m, size_t *nh) {
    head_get(r, h);
    uint16_t res_r = resv_get(r, &m->r);
    m->port = r16(r);
    *nh = r16(r);
    uint32_t res_a = r32(r);
    m->sub.seq_id = h->seq_id;
    m->sub.n_prompt = h->n_prompt;
    m->sub.s = h->s;
    int rc = head_check(h, l);
    if (rc) return rc;
    if (res_r || res_a) return WIRE_E_VALUE;
    if ((rc = resv_check(&m->r, l))) return rc;
    if (*nh > l->max_host) return WIRE_E_LIMIT;
    return prefill_check(m, *nh);
}

int ctrl_prefill_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_prefill *out) {
    ctrl_limits l = eff_limits(lim);
    int rc = dec_begin(p, len, PREFILL_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    head h;
    ctrl_prefill m = {0};
    size_t nh;
    if ((rc = prefill_fixed(&r, &l, &h, &m, &nh)) ||
        (rc = len_check(len, prefill_size(&m, h.req_len, nh))) ||
        (rc = head_arrays(&r, &h, &l, &m.sub.prompt, &m.sub.s)))
        return rc;
    m.r.block_ids = rarr(&r, 4ull * m.r.n_blocks);
    if ((rc = resv_values(&m.r)) || (rc = rstr(&r, h.req_len, m.sub.req_id)) ||
        (rc = rstr(&r, nh, m.host)))
        return rc;
    m.r.rkey = rarr(&r, m.r.rkey_len);
    *out = m;
    return 0;
}

/* ---- PREFILL_DONE ---- */

static int done_check(const ctrl_prefill_done *m, size_t msg_len, const ctrl_limits *l) {
    if (reason_check(m->reason)) return WIRE_E_VALUE;
    if (m->n_top > l->max_top || msg_len > l->max_msg) return WIRE_E_LIMIT;
    if (m->n_top > 0 && !m->has_logprob) return WIRE_E_VALUE;
    if (!m->has_logprob && f32_bits(m->logprob) != 0) return WIRE_E_VALUE;
    if (m->reason == CTRL_OK) return m->code == 0 && msg_len == 0 ? 0 : WIRE_E_VALUE;
    bool empty = m->token == 0 && !m->has_logprob && m->n_top == 0;
    return m->code <= 0 && empty ? 0 : WIRE_E_VALUE;
}

static int done_values(const ctrl_prefill_done *m, uint32_t vocab) {
    if ((vocab && m->token >= vocab) || !logprob_ok(m->logprob)) return WIRE_E_VALUE;
    return cands_check(m->top, 1, m->n_top, vocab);
}

int ctrl_prefill_done_encode(uint8_t *buf, size_t cap, const ctrl_prefill_done *m, size_t *len) {
    size_t n;
    int rc = str_len(m->msg, CTRL_MSG_MAX, &n);
    if (rc || (rc = done_check(m, n, &HARD)) || (rc = arr_present(m->top, m->n_top)) ||
        (rc = done_values(m, 0)))
        return rc;
    if (cap < DONE_SIZE + 8ull * m->n_top + n) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    w64(&w, m->seq_id);
    w32(&w, m->reason);
    w32(&w, (uint32_t)m->code);
    w32(&w, m->token);
    wf32(&w, m->logprob);
    w32(&w, m->prompt_tokens);
    w8(&w, m->has_logprob ? PF_LOGPROB : 0);
    w8(&w, m->n_top);
    w16(&w, (uint16_t)n);
    wbytes(&w, m->top, 8ull * m->n_top);
    wbytes(&w, m->msg, n);
    *len = w.off;
    return 0;
}

int ctrl_prefill_done_decode(const uint8_t *p, size_t len, const ctrl_limits *lim,
                             ctrl_prefill_done *out) {
    ctrl_limits l = eff_limits(lim);
    int rc = dec_begin(p, len, DONE_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    ctrl_prefill_done m = {.seq_id = r64(&r), .reason = r32(&r), .code = (int32_t)r32(&r)};
    m.token = r32(&r);
    m.logprob = rf32(&r);
    m.prompt_tokens = r32(&r);
    uint8_t flags = r8(&r);
    m.has_logprob = flags & PF_LOGPROB;
    m.n_top = r8(&r);
    size_t n = r16(&r);
    if (flags & ~PF_LOGPROB) return WIRE_E_FLAGS;
    if ((rc = done_check(&m, n, &l)) || (rc = len_check(len, DONE_SIZE + 8ull * m.n_top + n)))
        return rc;
    m.top = rarr(&r, 8ull * m.n_top);
    if ((rc = done_values(&m, l.vocab)) || (rc = rstr(&r, n, m.msg))) return rc;
    *out = m;
    return 0;
}

/* ---- KV_READY ---- */

static int ready_check(const ctrl_kv_ready *m, const ctrl_limits *l) {
    if (m->epoch == 0 || m->prompt_len == 0) return WIRE_E_VALUE;
    if (m->prompt_len > l->max_prompt) return WIRE_E_LIMIT;
    if (!m->has_checksum && m->checksum) return WIRE_E_VALUE;
    return l->vocab && m->first_token >= l->vocab ? WIRE_E_VALUE : 0;
}

int ctrl_kv_ready_encode(uint8_t *buf, size_t cap, const ctrl_kv_ready *m, size_t *len) {
    int rc = ready_check(m, &HARD);
    if (rc) return rc;
    if (cap < READY_SIZE) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    w64(&w, m->seq_id);
    w64(&w, m->epoch);
    w64(&w, m->checksum);
    w32(&w, m->first_token);
    w32(&w, m->prompt_len);
    w32(&w, m->has_checksum ? KF_CHECKSUM : 0);
    w32(&w, 0);
    *len = w.off;
    return 0;
}

int ctrl_kv_ready_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_kv_ready *out) {
    ctrl_limits l = eff_limits(lim);
    int rc = dec_begin(p, len, READY_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    ctrl_kv_ready m = {.seq_id = r64(&r), .epoch = r64(&r), .checksum = r64(&r)};
    m.first_token = r32(&r);
    m.prompt_len = r32(&r);
    uint32_t flags = r32(&r), res = r32(&r);
    m.has_checksum = flags & KF_CHECKSUM;
    if (flags & ~(uint32_t)KF_CHECKSUM) return WIRE_E_FLAGS;
    if (res) return WIRE_E_VALUE;
    if ((rc = ready_check(&m, &l)) || (rc = len_check(len, READY_SIZE))) return rc;
    *out = m;
    return 0;
}

/* ---- RELEASE ---- */

int ctrl_release_encode(uint8_t *buf, size_t cap, const ctrl_release *m, size_t *len) {
    if (reason_check(m->reason)) return WIRE_E_VALUE;
    if (cap < RELEASE_SIZE) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    w64(&w, m->seq_id);
    w64(&w, m->epoch);
    w32(&w, m->reason);
    w32(&w, 0);
    *len = w.off;
    return 0;
}

int ctrl_release_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_release *out) {
    int rc = dec_begin(p, len, RELEASE_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    ctrl_release m = {.seq_id = r64(&r), .epoch = r64(&r), .reason = r32(&r)};
    if (r32(&r) || reason_check(m.reason)) return WIRE_E_VALUE;
    if ((rc = len_check(len, RELEASE_SIZE))) return rc;
    *out = m;
    return 0;
}

/* ---- KV_DATA ---- */

static int kv_data_check(const ctrl_kv_data *m, const ctrl_limits *l) {
    if (m->epoch == 0 || m->len == 0) return WIRE_E_VALUE;
    if (m->len > l->max_kv_data) return WIRE_E_LIMIT;
    return (uint64_t)m->offset + m->len > UINT32_MAX ? WIRE_E_VALUE : 0;
}

int ctrl_kv_data_encode(uint8_t *buf, size_t cap, const ctrl_kv_data *m, size_t *len) {
    int rc = kv_data_check(m, &HARD);
    if (rc || (rc = arr_present(m->data, m->len))) return rc;
    if (cap < KV_DATA_SIZE + (uint64_t)m->len) return WIRE_E_LIMIT;
    wr w = {buf, 0};
    w64(&w, m->seq_id);
    w64(&w, m->epoch);
    w32(&w, m->block);
    w32(&w, m->offset);
    w32(&w, m->len);
    w32(&w, 0);
    wbytes(&w, m->data, m->len);
    *len = w.off;
    return 0;
}

int ctrl_kv_data_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_kv_data *out) {
    ctrl_limits l = eff_limits(lim);
    int rc = dec_begin(p, len, KV_DATA_SIZE);
    if (rc) return rc;
    rd r = {p, 0};
    ctrl_kv_data m = {.seq_id = r64(&r), .epoch = r64(&r), .block = r32(&r)};
    m.offset = r32(&r);
    m.len = r32(&r);
    if (r32(&r)) return WIRE_E_VALUE;
    if ((rc = kv_data_check(&m, &l)) || (rc = len_check(len, KV_DATA_SIZE + (uint64_t)m.len)))
        return rc;
    m.data = rarr(&r, m.len);
    *out = m;
    return 0;
}

/* ---- by type ---- */

static bool is_ctrl_type(int t) {
    return (t >= WIRE_T_CTRL_REGISTER && t <= WIRE_T_CTRL_DRAIN) ||
           (t >= WIRE_T_CTRL_SUBMIT && t <= WIRE_T_CTRL_KV_DATA);
}

int ctrl_decode(const wire_hdr *h, const uint8_t *p, size_t len, const ctrl_limits *lim,
                ctrl_msg *out) {
    if (!is_ctrl_type(h->type)) return WIRE_E_TYPE;
    if (len < h->payload_len) return WIRE_E_TRUNC;
    if (len > h->payload_len) return WIRE_E_LEN;
    int rc = WIRE_E_TYPE;
    switch (h->type) {
    case WIRE_T_CTRL_REGISTER:
        rc = ctrl_register_decode(p, len, lim, &out->u.reg);
        break;
    case WIRE_T_CTRL_LOAD:
        rc = ctrl_load_decode(p, len, lim, &out->u.load);
        break;
    case WIRE_T_CTRL_DRAIN:
        rc = ctrl_drain_decode(p, len, lim, &out->u.drain);
        break;
    case WIRE_T_CTRL_SUBMIT:
        rc = ctrl_submit_decode(p, len, lim, &out->u.submit);
        break;
    case WIRE_T_CTRL_SUBMIT_ACK:
        rc = ctrl_submit_ack_decode(p, len, lim, &out->u.submit_ack);
        break;
    case WIRE_T_CTRL_TOKENS:
        rc = ctrl_tokens_decode(p, len, lim, &out->u.tokens);
        break;
    case WIRE_T_CTRL_CANCEL:
        rc = ctrl_cancel_decode(p, len, lim, &out->u.cancel);
        break;
    case WIRE_T_CTRL_RESERVE:
        rc = ctrl_reserve_decode(p, len, lim, &out->u.reserve);
        break;
    case WIRE_T_CTRL_RESERVE_OK:
        rc = ctrl_reserve_ok_decode(p, len, lim, &out->u.reserve_ok);
        break;
    case WIRE_T_CTRL_RESERVE_FAIL:
        rc = ctrl_reserve_fail_decode(p, len, lim, &out->u.reserve_fail);
        break;
    case WIRE_T_CTRL_PREFILL:
        rc = ctrl_prefill_decode(p, len, lim, &out->u.prefill);
        break;
    case WIRE_T_CTRL_PREFILL_DONE:
        rc = ctrl_prefill_done_decode(p, len, lim, &out->u.prefill_done);
        break;
    case WIRE_T_CTRL_KV_READY:
        rc = ctrl_kv_ready_decode(p, len, lim, &out->u.kv_ready);
        break;
    case WIRE_T_CTRL_RELEASE:
        rc = ctrl_release_decode(p, len, lim, &out->u.release);
        break;
    case WIRE_T_CTRL_KV_DATA:
        rc = ctrl_kv_data_decode(p, len, lim, &out->u.kv_data);
        break;
    }
    if (rc == 0) out->type = h->type;
    return rc;
}

int ctrl_encode(uint8_t *buf, size_t cap, const ctrl_msg *m, size_t *len) {
    switch (m->type) {
    case WIRE_T_CTRL_REGISTER:
        return ctrl_register_encode(buf, cap, &m->u.reg, len);
    case WIRE_T_CTRL_LOAD:
        return ctrl_load_encode(buf, cap, &m->u.load, len);
    case WIRE_T_CTRL_DRAIN:
        return ctrl_drain_encode(buf, cap, &m->u.drain, len);
    case WIRE_T_CTRL_SUBMIT:
        return ctrl_submit_encode(buf, cap, &m->u.submit, len);
    case WIRE_T_CTRL_SUBMIT_ACK:
        return ctrl_submit_ack_encode(buf, cap, &m->u.submit_ack, len);
    case WIRE_T_CTRL_TOKENS:
        return ctrl_tokens_encode(buf, cap, &m->u.tokens, len);
    case WIRE_T_CTRL_CANCEL:
        return ctrl_cancel_encode(buf, cap, &m->u.cancel, len);
    case WIRE_T_CTRL_RESERVE:
        return ctrl_reserve_encode(buf, cap, &m->u.reserve, len);
    case WIRE_T_CTRL_RESERVE_OK:
        return ctrl_reserve_ok_encode(buf, cap, &m->u.reserve_ok, len);
    case WIRE_T_CTRL_RESERVE_FAIL:
        return ctrl_reserve_fail_encode(buf, cap, &m->u.reserve_fail, len);
    case WIRE_T_CTRL_PREFILL:
        return ctrl_prefill_encode(buf, cap, &m->u.prefill, len);
    case WIRE_T_CTRL_PREFILL_DONE:
        return ctrl_prefill_done_encode(buf, cap, &m->u.prefill_done, len);
    case WIRE_T_CTRL_KV_READY:
        return ctrl_kv_ready_encode(buf, cap, &m->u.kv_ready, len);
    case WIRE_T_CTRL_RELEASE:
        return ctrl_release_encode(buf, cap, &m->u.release, len);
    case WIRE_T_CTRL_KV_DATA:
        return ctrl_kv_data_encode(buf, cap, &m->u.kv_data, len);
    default:
        return WIRE_E_TYPE;
    }
}

/* ---- limits for the transport, headers ---- */

static uint64_t max64(uint64_t a, uint64_t b) {
    return a > b ? a : b;
}

/* Largest payload of one type under *l; fixed-size types give their size. */
static uint64_t type_max(int t, const ctrl_limits *l) {
    uint64_t stop = 4ull * l->max_stop, prompt = 4ull * l->max_prompt;
    uint64_t resv = 4ull * l->max_blocks + l->max_rkey;
    switch (t) {
    case WIRE_T_CTRL_REGISTER:
        return REGISTER_SIZE + (uint64_t)l->max_host + l->max_name;
    case WIRE_T_CTRL_LOAD:
        return LOAD_SIZE;
    case WIRE_T_CTRL_DRAIN:
        return DRAIN_SIZE;
    case WIRE_T_CTRL_SUBMIT:
        return HEAD_SIZE + prompt + stop + l->max_req_id;
    case WIRE_T_CTRL_SUBMIT_ACK:
    case WIRE_T_CTRL_RESERVE_FAIL:
        return STATUS_SIZE + (uint64_t)l->max_msg;
    case WIRE_T_CTRL_TOKENS:
        return TOKENS_SIZE + l->max_gen * (8 + 8ull * l->max_top) + l->max_msg;
    case WIRE_T_CTRL_CANCEL:
        return CANCEL_SIZE;
    case WIRE_T_CTRL_RESERVE:
        return RESERVE_SIZE + stop + l->max_req_id;
    case WIRE_T_CTRL_RESERVE_OK:
        return RESERVE_OK_SIZE + resv;
    case WIRE_T_CTRL_PREFILL:
        return PREFILL_SIZE + prompt + stop + resv + l->max_req_id + l->max_host;
    case WIRE_T_CTRL_PREFILL_DONE:
        return DONE_SIZE + 8ull * l->max_top + l->max_msg;
    case WIRE_T_CTRL_KV_READY:
        return READY_SIZE;
    case WIRE_T_CTRL_RELEASE:
        return RELEASE_SIZE;
    case WIRE_T_CTRL_KV_DATA:
        return KV_DATA_SIZE + (uint64_t)l->max_kv_data;
    default:
        return 0;
    }
}

size_t ctrl_max_payload(const ctrl_limits *lim, uint64_t types) {
    ctrl_limits l = eff_limits(lim);
    uint64_t m = 0;
    for (int t = WIRE_T_CTRL_FIRST; t <= WIRE_T_CTRL_LAST; t++)
        if (types & WIRE_TYPE_BIT(t)) m = max64(m, type_max(t, &l));
    return (size_t)m;
}

void ctrl_wire_limits(const ctrl_limits *lim, uint64_t types, wire_limits *out) {
    wire_limits_default(out);
    out->types = types | WIRE_TYPE_BIT(WIRE_T_HEARTBEAT) | WIRE_TYPE_BIT(WIRE_T_ERROR) |
                 WIRE_TYPE_BIT(WIRE_T_GOODBYE);
    out->max_payload = (uint32_t)max64(ctrl_max_payload(lim, types), WIRE_MSG_MAX_LEN);
    out->max_tok = 0;
}

wire_hdr ctrl_hdr(int type, uint32_t sender, uint64_t req) {
    return (wire_hdr){
        .type = (uint8_t)type, .sender = sender, .layer = WIRE_LAYER_NONE, .step = req};
}

/* ---- helpers and names ---- */

uint64_t ctrl_kv_checksum(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

const char *ctrl_type_name(int type) {
    if (!is_ctrl_type(type)) return wire_type_name(type);
    static const char *const names[] = {
        [WIRE_T_CTRL_REGISTER - WIRE_T_CTRL_FIRST] = "REGISTER",
        [WIRE_T_CTRL_LOAD - WIRE_T_CTRL_FIRST] = "LOAD",
        [WIRE_T_CTRL_DRAIN - WIRE_T_CTRL_FIRST] = "DRAIN",
        [WIRE_T_CTRL_SUBMIT - WIRE_T_CTRL_FIRST] = "SUBMIT",
        [WIRE_T_CTRL_SUBMIT_ACK - WIRE_T_CTRL_FIRST] = "SUBMIT_ACK",
        [WIRE_T_CTRL_TOKENS - WIRE_T_CTRL_FIRST] = "TOKENS",
        [WIRE_T_CTRL_CANCEL - WIRE_T_CTRL_FIRST] = "CANCEL",
        [WIRE_T_CTRL_RESERVE - WIRE_T_CTRL_FIRST] = "RESERVE",
        [WIRE_T_CTRL_RESERVE_OK - WIRE_T_CTRL_FIRST] = "RESERVE_OK",
        [WIRE_T_CTRL_RESERVE_FAIL - WIRE_T_CTRL_FIRST] = "RESERVE_FAIL",
        [WIRE_T_CTRL_PREFILL - WIRE_T_CTRL_FIRST] = "PREFILL",
        [WIRE_T_CTRL_PREFILL_DONE - WIRE_T_CTRL_FIRST] = "PREFILL_DONE",
        [WIRE_T_CTRL_KV_READY - WIRE_T_CTRL_FIRST] = "KV_READY",
        [WIRE_T_CTRL_RELEASE - WIRE_T_CTRL_FIRST] = "RELEASE",
        [WIRE_T_CTRL_KV_DATA - WIRE_T_CTRL_FIRST] = "KV_DATA",
    };
    return names[type - WIRE_T_CTRL_FIRST];
}

const char *ctrl_reason_name(int reason) {
    static const char *const names[] = {
        [CTRL_OK] = "ok",
        [CTRL_R_KV_FULL] = "kv_full",
        [CTRL_R_TOO_LONG] = "too_long",
        [CTRL_R_DRAINING] = "draining",
        [CTRL_R_BAD_PARAMS] = "bad_params",
        [CTRL_R_DUPLICATE] = "duplicate",
        [CTRL_R_BUSY] = "busy",
        [CTRL_R_ROLE] = "role",
        [CTRL_R_EPOCH] = "epoch",
        [CTRL_R_EXPIRED] = "expired",
        [CTRL_R_PEER] = "peer",
        [CTRL_R_CANCELLED] = "cancelled",
        [CTRL_R_INTERNAL] = "internal",
    };
    return reason >= 0 && reason <= CTRL_R_MAX ? names[reason] : "unknown";
}

const char *ctrl_finish_name(int finish) {
    static const char *const names[] = {"none", "stop", "length", "cancelled", "error"};
    return finish >= 0 && finish <= CTRL_FINISH_MAX ? names[finish] : "unknown";
}

const char *ctrl_role_name(int role) {
    static const char *const names[] = {"unknown", "prefill", "decode", "both"};
    return role >= CTRL_ROLE_PREFILL && role <= CTRL_ROLE_BOTH ? names[role] : "unknown";
}
