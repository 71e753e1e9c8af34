/* wire.c: encoding and validating decoding of afd frames (see wire.h, docs/protocol.md). */
#include "proto/wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/base/err.h"

/* ---- little-endian field access ---- */

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}
static void put64(uint8_t *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}
static uint16_t get16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get32(const uint8_t *p) {
    return get16(p) | ((uint32_t)get16(p + 2) << 16);
}
static uint64_t get64(const uint8_t *p) {
    return get32(p) | ((uint64_t)get32(p + 4) << 32);
}

/* ---- per-type rules: one row per known type ---- */

typedef struct type_rule {
    const char *name;
    uint16_t flags;   /* bits the type defines */
    bool tok;         /* n_tok meaningful */
    bool layer;       /* layer meaningful (else WIRE_LAYER_NONE) */
    uint32_t min_len; /* payload bounds implied by the type */
    uint32_t max_len;
} type_rule;

static const type_rule RULES[] = {
    [WIRE_T_HELLO] = {"HELLO", 0, false, false, WIRE_HELLO_MIN, WIRE_HELLO_MAX},
    [WIRE_T_HELLO_ACK] = {"HELLO_ACK", 0, false, false, WIRE_HELLO_MIN, WIRE_HELLO_MAX},
    [WIRE_T_A2F] = {"A2F", WIRE_F_MOE, true, true, 0, UINT32_MAX},
    [WIRE_T_F2A] = {"F2A", WIRE_F_FP8 | WIRE_F_F32, true, true, 0, UINT32_MAX},
    [WIRE_T_HEARTBEAT] = {"HEARTBEAT", 0, false, false, 0, 0},
    [WIRE_T_ERROR] = {"ERROR", 0, false, false, WIRE_MSG_MIN_LEN, WIRE_MSG_MAX_LEN},
    [WIRE_T_GOODBYE] = {"GOODBYE", 0, false, false, WIRE_MSG_MIN_LEN, WIRE_MSG_MAX_LEN},
};
#define N_RULES (sizeof RULES / sizeof RULES[0])

static const type_rule *rule_of(unsigned type) {
    return type < N_RULES && RULES[type].name ? &RULES[type] : NULL;
}

/* Control-plane types (proto/ctrl.h): accepted only where the limits enable them. */
static const type_rule CTRL_RULE = {"CTRL", 0, false, false, 0, UINT32_MAX};

/* ---- names ---- */

const char *wire_strerror(int rc) {
    switch (rc) {
    case 0:
        return "ok";
    case WIRE_E_MAGIC:
        return "bad magic (not an afd frame)";
    case WIRE_E_VERSION:
        return "unsupported protocol version";
    case WIRE_E_TYPE:
        return "unknown frame type or type not accepted now";
    case WIRE_E_FLAGS:
        return "flag bits not defined or not allowed for this frame";
    case WIRE_E_LEN:
        return "payload length does not match the frame";
    case WIRE_E_TRUNC:
        return "truncated frame";
    case WIRE_E_LIMIT:
        return "size or count over limit";
    case WIRE_E_DTYPE:
        return "unknown or unagreed wire dtype";
    case WIRE_E_ID:
        return "expert id out of range or repeated";
    case WIRE_E_VALUE:
        return "bad field value";
    case WIRE_E_ALIGN:
        return "payload not 8-byte aligned";
    case WIRE_E_LAYER:
        return "layer out of range or not allowed";
    case WIRE_E_STRING:
        return "non-printable bytes in a string";
    case WIRE_E_DIMS:
        return "inconsistent wire dims";
    default:
        return afd_strerror(rc);
    }
}

const char *wire_type_name(int type) {
    if (type >= 0 && rule_of((unsigned)type)) return RULES[type].name;
    if (type >= WIRE_T_CTRL_FIRST && type <= WIRE_T_CTRL_LAST) return "CTRL";
    return "UNKNOWN";
}

const char *wire_role_name(int role) {
    switch (role) {
    case WIRE_ROLE_ATTND:
        return "attnd";
    case WIRE_ROLE_FFND:
        return "ffnd";
    case WIRE_ROLE_ROUTER:
        return "router";
    case WIRE_ROLE_BENCH:
        return "bench";
    default:
        return "unknown";
    }
}

const char *wire_refuse_name(int status) {
    static const char *const names[] = {
        [WIRE_REFUSE_NONE] = "ok",     [WIRE_REFUSE_VERSION] = "version",
        [WIRE_REFUSE_ROLE] = "role",   [WIRE_REFUSE_FINGERPRINT] = "fingerprint",
        [WIRE_REFUSE_DIMS] = "dims",   [WIRE_REFUSE_DTYPE] = "dtype",
        [WIRE_REFUSE_SHARD] = "shard", [WIRE_REFUSE_LIMIT] = "limit",
        [WIRE_REFUSE_BUSY] = "busy",   [WIRE_REFUSE_STATE] = "state",
    };
    return status >= 0 && status <= WIRE_REFUSE_MAX ? names[status] : "unknown";
}

const char *wire_dtype_name(int dtype) {
    switch (dtype) {
    case WIRE_DT_E4M3:
        return "e4m3";
    case WIRE_DT_BF16:
        return "bf16";
    case WIRE_DT_F32:
        return "f32";
    default:
        return "unknown";
    }
}

/* ---- header ---- */

void wire_hdr_encode(uint8_t out[WIRE_HDR_SIZE], const wire_hdr *h) {
    put32(out + 0, WIRE_MAGIC);
    out[4] = WIRE_VERSION;
    out[5] = h->type;
    put16(out + 6, h->flags);
    put32(out + 8, h->sender);
    put16(out + 12, h->mb);
    put16(out + 14, h->layer);
    put64(out + 16, h->step);
    put32(out + 24, h->n_tok);
    put32(out + 28, h->payload_len);
}

static void hdr_read(const uint8_t *buf, wire_hdr *h) {
    h->version = buf[4];
    h->type = buf[5];
    h->flags = get16(buf + 6);
    h->sender = get32(buf + 8);
    h->mb = get16(buf + 12);
    h->layer = get16(buf + 14);
    h->step = get64(buf + 16);
    h->n_tok = get32(buf + 24);
    h->payload_len = get32(buf + 28);
}

/* The checks that depend on the type's rule and the limits. */
static int hdr_check(const wire_hdr *h, const type_rule *r, const wire_limits *lim) {
    if (h->flags & ~r->flags) return WIRE_E_FLAGS;
    if (h->payload_len > lim->max_payload) return WIRE_E_LIMIT;
    if (h->payload_len < r->min_len || h->payload_len > r->max_len) return WIRE_E_LEN;
    if (!r->tok && h->n_tok != 0) return WIRE_E_VALUE;
    if (h->n_tok > lim->max_tok) return WIRE_E_LIMIT;
    if (!r->layer) return h->layer == WIRE_LAYER_NONE ? 0 : WIRE_E_LAYER;
    if (h->layer == WIRE_LAYER_NONE || h->layer >= lim->max_layers) return WIRE_E_LAYER;
    return 0;
}

int wire_hdr_decode(const uint8_t *buf, size_t len, const wire_limits *lim, wire_hdr *h) {
    if (len < WIRE_HDR_SIZE) return WIRE_E_TRUNC;
    if (get32(buf) != WIRE_MAGIC) return WIRE_E_MAGIC;
    if (buf[4] < WIRE_VERSION_MIN || buf[4] > WIRE_VERSION_MAX) return WIRE_E_VERSION;
    bool ctrl = buf[5] >= WIRE_T_CTRL_FIRST && buf[5] <= WIRE_T_CTRL_LAST;
    const type_rule *r = ctrl ? &CTRL_RULE : rule_of(buf[5]);
    if (!r || buf[5] >= 64 || !(lim->types & WIRE_TYPE_BIT(buf[5]))) return WIRE_E_TYPE;
    wire_hdr tmp;
    hdr_read(buf, &tmp);
    int rc = hdr_check(&tmp, r, lim);
    if (rc == 0) *h = tmp;
    return rc;
}

/* ---- limits and dims ---- */

void wire_limits_default(wire_limits *lim) {
    *lim = (wire_limits){
        .types = WIRE_TYPES_ALL,
        .max_payload = 64u << 20,
        .max_tok = 4096,
        .max_layers = 512,
        .max_experts = 1024,
        .max_hidden = 65536,
        .max_top_k = 32,
    };
}

void wire_limits_handshake(wire_limits *lim) {
    wire_limits_default(lim);
    lim->types = WIRE_TYPES_HANDSHAKE;
    lim->max_payload = WIRE_MSG_MAX_LEN;
    lim->max_tok = 0;
}

int wire_dims_check(const wire_dims *d, const wire_limits *lim) {
    if (d->a2f_dtype != WIRE_DT_E4M3) return WIRE_E_DTYPE;
    if (d->f2a_dtype < WIRE_DT_E4M3 || d->f2a_dtype > WIRE_DT_F32) return WIRE_E_DTYPE;
    if (d->hidden == 0 || d->n_layers == 0 || d->n_layers > WIRE_LAYER_NONE) return WIRE_E_DIMS;
    if (d->n_experts > 65536 || d->top_k > d->n_experts) return WIRE_E_DIMS;
    if (d->fp8_group != 0 && d->hidden % d->fp8_group != 0) return WIRE_E_DIMS;
    if (lim && (d->hidden > lim->max_hidden || d->n_layers > lim->max_layers ||
                d->n_experts > lim->max_experts || d->top_k > lim->max_top_k))
        return WIRE_E_LIMIT;
    return 0;
}

int wire_dims_from_hello(const wire_hello *h, const wire_limits *lim, wire_dims *d) {
    *d = (wire_dims){
        .hidden = h->hidden,
        .top_k = h->top_k,
        .n_experts = h->n_experts,
        .n_layers = h->n_layers,
        .fp8_group = h->fp8_group,
        .a2f_dtype = h->a2f_dtype,
        .f2a_dtype = h->f2a_dtype,
        .moe_layers = NULL,
    };
    return wire_dims_check(d, lim);
}

/* ---- section sizes (64-bit, overflow-checked) ---- */

/* a * b + c into *out; false on overflow. */
static bool mul_add(uint64_t a, uint64_t b, uint64_t c, uint64_t *out) {
    uint64_t p;
    return !__builtin_mul_overflow(a, b, &p) && !__builtin_add_overflow(p, c, out);
}

static uint32_t groups_of(const wire_dims *d) {
    return d->fp8_group ? d->hidden / d->fp8_group : 1;
}

/* Byte offsets of the A2F sections; false if the size overflows 64 bits. */
typedef struct a2f_offs {
    uint64_t weights, ids, pad, q, total;
} a2f_offs;

static bool a2f_offsets(const wire_dims *d, uint64_t t, bool moe, a2f_offs *o) {
    uint64_t k = moe ? d->top_k : 0, ids_end;
    if (!mul_add(t * 4, groups_of(d), 0, &o->weights) || !mul_add(t * 4, k, o->weights, &o->ids) ||
        !mul_add(t * 2, k, o->ids, &ids_end))
        return false;
    o->pad = ids_end;
    o->q = (ids_end + 3) & ~(uint64_t)3;
    return mul_add(t, d->hidden, o->q, &o->total);
}

static size_t to_size(uint64_t v) {
    return v >= SIZE_MAX ? SIZE_MAX : (size_t)v;
}

size_t wire_a2f_size(const wire_dims *d, uint32_t n_tok, bool moe) {
    a2f_offs o;
    if (wire_dims_check(d, NULL) != 0 || (moe && d->top_k == 0) || !a2f_offsets(d, n_tok, moe, &o))
        return SIZE_MAX;
    return to_size(o.total);
}

/* F2A: FP8 scales end at *q_off, the values take elt bytes each. */
static bool f2a_offsets(const wire_dims *d, uint64_t t, uint8_t dtype, uint64_t *q_off,
                        uint64_t *total) {
    uint64_t elt = dtype == WIRE_DT_E4M3 ? 1 : dtype == WIRE_DT_BF16 ? 2 : 4;
    *q_off = 0;
    if (dtype == WIRE_DT_E4M3 && !mul_add(t * 4, groups_of(d), 0, q_off)) return false;
    return mul_add(t * elt, d->hidden, *q_off, total);
}

size_t wire_f2a_size_dt(const wire_dims *d, uint32_t n_tok, uint8_t dtype) {
    uint64_t q_off, total;
    if (wire_dims_check(d, NULL) != 0 || dtype < WIRE_DT_E4M3 || dtype > WIRE_DT_F32 ||
        !f2a_offsets(d, n_tok, dtype, &q_off, &total))
        return SIZE_MAX;
    return to_size(total);
}

size_t wire_f2a_size(const wire_dims *d, uint32_t n_tok, bool fp8) {
    return wire_f2a_size_dt(d, n_tok, fp8 ? WIRE_DT_E4M3 : WIRE_DT_BF16);
}

uint16_t wire_f2a_flags(uint8_t dtype) {
    return dtype == WIRE_DT_E4M3 ? WIRE_F_FP8 : dtype == WIRE_DT_F32 ? WIRE_F_F32 : 0;
}

static uint8_t f2a_dtype_of(uint16_t flags) {
    return flags & WIRE_F_FP8 ? WIRE_DT_E4M3 : flags & WIRE_F_F32 ? WIRE_DT_F32 : WIRE_DT_BF16;
}

/* ---- value checks on received sections ---- */

static uint32_t f32_bits_at(const uint8_t *p, uint64_t i) {
    uint32_t b;
    memcpy(&b, p + 4 * i, 4);
    return b;
}

/* Every scale finite and > 0 (not +-0, not negative, not inf/NaN). */
static int check_scales(const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        uint32_t b = f32_bits_at(p, i);
        if ((b & 0x7f800000u) == 0x7f800000u || (b >> 31) || b == 0) return WIRE_E_VALUE;
    }
    return 0;
}

static int check_finite(const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if ((f32_bits_at(p, i) & 0x7f800000u) == 0x7f800000u) return WIRE_E_VALUE;
    return 0;
}

/* ids[t][k] < n_experts and distinct within each token. */
static int check_ids(const uint8_t *p, uint64_t n_tok, uint32_t k, uint32_t n_experts) {
    for (uint64_t t = 0; t < n_tok; t++) {
        const uint8_t *row = p + 2 * k * t;
        for (uint32_t i = 0; i < k; i++) {
            uint16_t id = get16(row + 2 * i);
            if (id >= n_experts) return WIRE_E_ID;
            for (uint32_t j = 0; j < i; j++)
                if (get16(row + 2 * j) == id) return WIRE_E_ID;
        }
    }
    return 0;
}

static int check_zero(const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i]) return WIRE_E_VALUE;
    return 0;
}

/* ---- A2F / F2A views ---- */

/* Checks shared by both views, in order. */
static int view_common(const wire_hdr *h, int type, const uint8_t *payload, size_t len,
                       const wire_dims *d, const wire_limits *lim) {
    if (h->type != type) return WIRE_E_TYPE;
    if ((uintptr_t)payload % WIRE_ALIGN) return WIRE_E_ALIGN;
    if (len < h->payload_len) return WIRE_E_TRUNC;
    if (len > h->payload_len) return WIRE_E_LEN;
    int rc = wire_dims_check(d, lim);
    if (rc) return rc;
    if (h->flags & ~RULES[type].flags) return WIRE_E_FLAGS;
    if (h->n_tok > lim->max_tok) return WIRE_E_LIMIT;
    if (h->layer >= d->n_layers) return WIRE_E_LAYER;
    return 0;
}

static int a2f_moe_allowed(const wire_hdr *h, const wire_dims *d, bool moe) {
    if (moe && d->top_k == 0) return WIRE_E_FLAGS;
    if (d->moe_layers && moe != (d->moe_layers[h->layer] != 0)) return WIRE_E_FLAGS;
    return 0;
}

/* p + off, keeping NULL (an empty payload may come as NULL). */
static void *at(uint8_t *p, uint64_t off) {
    return p ? p + off : NULL;
}

static void a2f_fill(const wire_dims *d, uint32_t n_tok, bool moe, uint8_t *p, const a2f_offs *o,
                     wire_a2f *out) {
    *out = (wire_a2f){
        .n_tok = n_tok,
        .hidden = d->hidden,
        .groups = groups_of(d),
        .top_k = moe ? d->top_k : 0,
        .moe = moe,
        .scales = at(p, 0),
        .weights = moe ? at(p, o->weights) : NULL,
        .ids = moe ? at(p, o->ids) : NULL,
        .q = at(p, o->q),
    };
}

static int a2f_values(const uint8_t *p, const wire_hdr *h, const wire_dims *d, bool moe,
                      const a2f_offs *o) {
    if (h->n_tok == 0) return 0;
    int rc = check_scales(p, o->weights / 4);
    if (rc || !moe) return rc;
    if ((rc = check_finite(p + o->weights, (o->ids - o->weights) / 4)) != 0) return rc;
    if ((rc = check_ids(p + o->ids, h->n_tok, d->top_k, d->n_experts)) != 0) return rc;
    return check_zero(p + o->pad, o->q - o->pad);
}

int wire_a2f_view(const wire_hdr *h, const uint8_t *payload, size_t len, const wire_dims *d,
                  const wire_limits *lim, wire_a2f *out) {
    int rc = view_common(h, WIRE_T_A2F, payload, len, d, lim);
    if (rc) return rc;
    bool moe = (h->flags & WIRE_F_MOE) != 0;
    if ((rc = a2f_moe_allowed(h, d, moe)) != 0) return rc;
    a2f_offs o;
    if (!a2f_offsets(d, h->n_tok, moe, &o) || o.total != h->payload_len) return WIRE_E_LEN;
    if ((rc = a2f_values(payload, h, d, moe, &o)) != 0) return rc;
    a2f_fill(d, h->n_tok, moe, (uint8_t *)payload, &o, out);
    return 0;
}

static void f2a_fill(const wire_dims *d, uint32_t n_tok, uint8_t dtype, uint8_t *p, uint64_t q_off,
                     wire_f2a *out) {
    bool fp8 = dtype == WIRE_DT_E4M3;
    *out = (wire_f2a){
        .n_tok = n_tok,
        .hidden = d->hidden,
        .groups = fp8 ? groups_of(d) : 0,
        .dtype = dtype,
        .scales = fp8 ? at(p, 0) : NULL,
        .q = fp8 ? at(p, q_off) : NULL,
        .bf16 = dtype == WIRE_DT_BF16 ? at(p, 0) : NULL,
        .f32 = dtype == WIRE_DT_F32 ? at(p, 0) : NULL,
    };
}

int wire_f2a_view(const wire_hdr *h, const uint8_t *payload, size_t len, const wire_dims *d,
                  const wire_limits *lim, wire_f2a *out) {
    int rc = view_common(h, WIRE_T_F2A, payload, len, d, lim);
    if (rc) return rc;
    if ((h->flags & WIRE_F_FP8) && (h->flags & WIRE_F_F32)) return WIRE_E_FLAGS;
    uint8_t dtype = f2a_dtype_of(h->flags);
    if (dtype != d->f2a_dtype) return WIRE_E_DTYPE;
    uint64_t q_off, total;
    if (!f2a_offsets(d, h->n_tok, dtype, &q_off, &total) || total != h->payload_len)
        return WIRE_E_LEN;
    if ((rc = check_scales(payload, q_off / 4)) != 0) return rc;
    f2a_fill(d, h->n_tok, dtype, (uint8_t *)payload, q_off, out);
    return 0;
}

/* ---- writers ---- */

int wire_a2f_layout(const wire_dims *d, uint32_t n_tok, bool moe, uint8_t *payload, wire_a2f *out) {
    int rc = wire_dims_check(d, NULL);
    if (rc) return rc;
    if (moe && d->top_k == 0) return WIRE_E_DIMS;
    if ((uintptr_t)payload % WIRE_ALIGN) return WIRE_E_ALIGN;
    a2f_offs o;
    if (!a2f_offsets(d, n_tok, moe, &o) || o.total > UINT32_MAX) return WIRE_E_LIMIT;
    if (o.q > o.pad) memset(payload + o.pad, 0, o.q - o.pad);
    a2f_fill(d, n_tok, moe, payload, &o, out);
    return 0;
}

int wire_f2a_layout(const wire_dims *d, uint32_t n_tok, uint8_t dtype, uint8_t *payload,
                    wire_f2a *out) {
    int rc = wire_dims_check(d, NULL);
    if (rc) return rc;
    if (dtype < WIRE_DT_E4M3 || dtype > WIRE_DT_F32) return WIRE_E_DTYPE;
    if ((uintptr_t)payload % WIRE_ALIGN) return WIRE_E_ALIGN;
    uint64_t q_off, total;
    if (!f2a_offsets(d, n_tok, dtype, &q_off, &total) || total > UINT32_MAX) return WIRE_E_LIMIT;
    f2a_fill(d, n_tok, dtype, payload, q_off, out);
    return 0;
}

/* ---- strings ---- */

static bool printable(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e) return false;
    return true;
}

/* Reads u16 length + bytes at buf[*off..len) into dst (NUL-terminated). */
static int str_read(const uint8_t *buf, size_t len, size_t *off, size_t max, char *dst) {
    if (len - *off < 2) return WIRE_E_TRUNC;
    size_t n = get16(buf + *off);
    if (n > max) return WIRE_E_LIMIT;
    if (len - *off - 2 < n) return WIRE_E_TRUNC;
    if (!printable(buf + *off + 2, n)) return WIRE_E_STRING;
    memcpy(dst, buf + *off + 2, n);
    dst[n] = '\0';
    *off += 2 + n;
    return 0;
}

/* A caller's NUL-terminated string for encoding: its length, or WIRE_E_LIMIT / _STRING. */
static int str_check(const char *s, size_t max, size_t *n) {
    *n = strnlen(s, max + 1);
    if (*n > max) return WIRE_E_LIMIT;
    return printable((const uint8_t *)s, *n) ? 0 : WIRE_E_STRING;
}

/* ---- HELLO ---- */

/* Field checks shared by encode and decode (strings are checked apart). */
static int hello_fields(const wire_hello *h) {
    if (h->proto_min < 1 || h->proto_min > h->proto_max) return WIRE_E_VALUE;
    if (h->role < WIRE_ROLE_ATTND || h->role > WIRE_ROLE_BENCH || h->status > WIRE_REFUSE_MAX)
        return WIRE_E_VALUE;
    if (h->ep_size == 0 || h->ep_rank >= h->ep_size || h->tp_size == 0 || h->tp_rank >= h->tp_size)
        return WIRE_E_VALUE;
    if (h->a2f_dtype != WIRE_DT_E4M3 || h->f2a_dtype < WIRE_DT_E4M3 || h->f2a_dtype > WIRE_DT_F32)
        return WIRE_E_DTYPE;
    return 0;
}

static void hello_put_fixed(uint8_t *b, const wire_hello *h) {
    put16(b + 0, h->proto_min);
    put16(b + 2, h->proto_max);
    b[4] = h->role;
    b[5] = h->status;
    put16(b + 6, 0);
    put32(b + 8, h->instance_id);
    put64(b + 12, h->model_fingerprint);
    put16(b + 20, h->ep_rank);
    put16(b + 22, h->ep_size);
    put16(b + 24, h->tp_rank);
    put16(b + 26, h->tp_size);
    put32(b + 28, h->n_layers);
    put32(b + 32, h->n_experts);
    put32(b + 36, h->hidden);
    put16(b + 40, h->top_k);
    put16(b + 42, h->fp8_group);
    b[44] = h->a2f_dtype;
    b[45] = h->f2a_dtype;
    put16(b + 46, 0);
    put32(b + 48, h->max_tok);
}

/* Reads the fixed part; WIRE_E_VALUE if a reserved field is not zero. */
static int hello_get_fixed(const uint8_t *b, wire_hello *h) {
    h->proto_min = get16(b + 0);
    h->proto_max = get16(b + 2);
    h->role = b[4];
    h->status = b[5];
    h->instance_id = get32(b + 8);
    h->model_fingerprint = get64(b + 12);
    h->ep_rank = get16(b + 20);
    h->ep_size = get16(b + 22);
    h->tp_rank = get16(b + 24);
    h->tp_size = get16(b + 26);
    h->n_layers = get32(b + 28);
    h->n_experts = get32(b + 32);
    h->hidden = get32(b + 36);
    h->top_k = get16(b + 40);
    h->fp8_group = get16(b + 42);
    h->a2f_dtype = b[44];
    h->f2a_dtype = b[45];
    h->max_tok = get32(b + 48);
    return get16(b + 6) == 0 && get16(b + 46) == 0 ? 0 : WIRE_E_VALUE;
}

int wire_hello_encode(uint8_t *buf, size_t cap, const wire_hello *h, size_t *len) {
    size_t nn, nr;
    int rc = hello_fields(h);
    if (rc || (rc = str_check(h->name, WIRE_NAME_MAX, &nn)) ||
        (rc = str_check(h->reason, WIRE_REASON_MAX, &nr)))
        return rc;
    size_t total = WIRE_HELLO_MIN + nn + nr;
    if (cap < total) return WIRE_E_LIMIT;
    hello_put_fixed(buf, h);
    put16(buf + WIRE_HELLO_FIXED, (uint16_t)nn);
    memcpy(buf + WIRE_HELLO_FIXED + 2, h->name, nn);
    put16(buf + WIRE_HELLO_FIXED + 2 + nn, (uint16_t)nr);
    memcpy(buf + WIRE_HELLO_FIXED + 4 + nn, h->reason, nr);
    *len = total;
    return 0;
}

int wire_hello_decode(const uint8_t *buf, size_t len, wire_hello *h) {
    if (len < WIRE_HELLO_MIN) return WIRE_E_TRUNC;
    wire_hello tmp;
    size_t off = WIRE_HELLO_FIXED;
    int rc = hello_get_fixed(buf, &tmp);
    if (rc || (rc = hello_fields(&tmp)) ||
        (rc = str_read(buf, len, &off, WIRE_NAME_MAX, tmp.name)) ||
        (rc = str_read(buf, len, &off, WIRE_REASON_MAX, tmp.reason)))
        return rc;
    if (off != len) return WIRE_E_LEN;
    *h = tmp;
    return 0;
}

int wire_hello_version(const wire_hello *a, const wire_hello *b) {
    int lo = a->proto_min > b->proto_min ? a->proto_min : b->proto_min;
    int hi = a->proto_max < b->proto_max ? a->proto_max : b->proto_max;
    return lo <= hi ? hi : 0;
}

/* Role pairs that talk (symmetric). */
static bool roles_talk(int a, int b) {
    static const uint8_t ok[5][5] = {
        /*            -  attnd ffnd router bench */
        [WIRE_ROLE_ATTND] = {0, 1, 1, 1, 1},
        [WIRE_ROLE_FFND] = {0, 1, 0, 0, 1},
        [WIRE_ROLE_ROUTER] = {0, 1, 0, 0, 0},
        [WIRE_ROLE_BENCH] = {0, 1, 1, 0, 1},
    };
    return a > 0 && a < 5 && b > 0 && b < 5 && ok[a][b];
}

/* "(ffnd#7 vs attnd#3)": which end holds which value, readable from either side. */
static void who(char *s, size_t n, const wire_hello *mine, const wire_hello *theirs) {
    snprintf(s, n, "(%s#%u vs %s#%u)", wire_role_name(mine->role), (unsigned)mine->instance_id,
             wire_role_name(theirs->role), (unsigned)theirs->instance_id);
}

typedef struct dim_field {
    const char *name;
    size_t off;  /* offset in wire_hello */
    size_t size; /* 2 or 4 */
    int refuse;
} dim_field;

static const dim_field DIM_FIELDS[] = {
    {"n_layers", offsetof(wire_hello, n_layers), 4, WIRE_REFUSE_DIMS},
    {"n_experts", offsetof(wire_hello, n_experts), 4, WIRE_REFUSE_DIMS},
    {"hidden", offsetof(wire_hello, hidden), 4, WIRE_REFUSE_DIMS},
    {"top_k", offsetof(wire_hello, top_k), 2, WIRE_REFUSE_DIMS},
    {"fp8_group", offsetof(wire_hello, fp8_group), 2, WIRE_REFUSE_DIMS},
};

static uint32_t dim_get(const wire_hello *h, const dim_field *f) {
    const char *p = (const char *)h + f->off;
    if (f->size == 2) {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int refuse(int code, char *why, size_t n, const char *w, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int refuse(int code, char *why, size_t n, const char *w, const char *fmt, ...) {
    if (n == 0) return code;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(why, n, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < n) snprintf(why + k, n - (size_t)k, " %s", w);
    return code;
}

static int check_model(const wire_hello *m, const wire_hello *t, char *why, size_t n,
                       const char *w) {
    if (m->model_fingerprint != t->model_fingerprint)
        return refuse(
            WIRE_REFUSE_FINGERPRINT, why, n, w, "model fingerprint 0x%016llx != 0x%016llx",
            (unsigned long long)m->model_fingerprint, (unsigned long long)t->model_fingerprint);
    for (size_t i = 0; i < sizeof DIM_FIELDS / sizeof DIM_FIELDS[0]; i++) {
        const dim_field *f = &DIM_FIELDS[i];
        if (dim_get(m, f) != dim_get(t, f))
            return refuse(f->refuse, why, n, w, "%s %u != %u", f->name, (unsigned)dim_get(m, f),
                          (unsigned)dim_get(t, f));
    }
    if (m->a2f_dtype != t->a2f_dtype)
        return refuse(WIRE_REFUSE_DTYPE, why, n, w, "a2f dtype %s != %s",
                      wire_dtype_name(m->a2f_dtype), wire_dtype_name(t->a2f_dtype));
    if (m->f2a_dtype != t->f2a_dtype)
        return refuse(WIRE_REFUSE_DTYPE, why, n, w, "f2a dtype %s != %s",
                      wire_dtype_name(m->f2a_dtype), wire_dtype_name(t->f2a_dtype));
    return 0;
}

static int check_shard(const wire_hello *m, const wire_hello *t, char *why, size_t n,
                       const char *w) {
    if (m->role != WIRE_ROLE_FFND && t->role != WIRE_ROLE_FFND) return 0;
    if (m->ep_rank == t->ep_rank && m->ep_size == t->ep_size && m->tp_rank == t->tp_rank &&
        m->tp_size == t->tp_size)
        return 0;
    return refuse(WIRE_REFUSE_SHARD, why, n, w, "shard ep %u/%u tp %u/%u != ep %u/%u tp %u/%u",
                  m->ep_rank, m->ep_size, m->tp_rank, m->tp_size, t->ep_rank, t->ep_size,
                  t->tp_rank, t->tp_size);
}

int wire_hello_check(const wire_hello *mine, const wire_hello *theirs, char *why, size_t n) {
    char w[96];
    who(w, sizeof w, mine, theirs);
    if (n) why[0] = '\0';
    if (!roles_talk(mine->role, theirs->role))
        return refuse(WIRE_REFUSE_ROLE, why, n, w, "role %s does not talk to %s",
                      wire_role_name(mine->role), wire_role_name(theirs->role));
    if (wire_hello_version(mine, theirs) == 0)
        return refuse(WIRE_REFUSE_VERSION, why, n, w,
                      "protocol versions %u..%u and %u..%u do "
                      "not overlap",
                      mine->proto_min, mine->proto_max, theirs->proto_min, theirs->proto_max);
    int rc = check_model(mine, theirs, why, n, w);
    if (rc || (rc = check_shard(mine, theirs, why, n, w))) return rc;
    if (mine->max_tok == 0 || theirs->max_tok == 0)
        return refuse(WIRE_REFUSE_LIMIT, why, n, w, "max_tok %u / %u: must be >= 1",
                      (unsigned)mine->max_tok, (unsigned)theirs->max_tok);
    return 0;
}

static uint32_t min3(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t m = a < b ? a : b;
    return m < c ? m : c;
}

int wire_limits_session(const wire_limits *base, const wire_hello *mine, const wire_hello *theirs,
                        const wire_dims *d, wire_limits *out) {
    int rc = wire_dims_check(d, base);
    if (rc) return rc;
    wire_limits l = *base;
    l.types = WIRE_TYPES_SESSION;
    l.max_tok = min3(base->max_tok, mine->max_tok, theirs->max_tok);
    uint64_t a2f = wire_a2f_size(d, l.max_tok, d->top_k > 0);
    uint64_t f2a = wire_f2a_size_dt(d, l.max_tok, d->f2a_dtype);
    uint64_t big = a2f > f2a ? a2f : f2a;
    if (big < WIRE_MSG_MAX_LEN) big = WIRE_MSG_MAX_LEN;
    if (big > base->max_payload) return WIRE_E_LIMIT;
    l.max_payload = (uint32_t)big;
    *out = l;
    return 0;
}

/* ---- ERROR / GOODBYE ---- */

static int msg_encode(uint8_t *buf, size_t cap, int32_t code, const char *msg, size_t *len) {
    size_t n = msg ? strnlen(msg, WIRE_MSG_MAX) : 0;
    if (cap < WIRE_MSG_MIN_LEN + n) return WIRE_E_LIMIT;
    put32(buf, (uint32_t)code);
    put16(buf + 4, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)msg[i];
        buf[WIRE_MSG_MIN_LEN + i] = c >= 0x20 && c <= 0x7e ? c : '?';
    }
    *len = WIRE_MSG_MIN_LEN + n;
    return 0;
}

static int msg_decode(const uint8_t *buf, size_t len, wire_msg *m) {
    if (len < WIRE_MSG_MIN_LEN) return WIRE_E_TRUNC;
    size_t off = 4;
    wire_msg tmp;
    tmp.code = (int32_t)get32(buf);
    int rc = str_read(buf, len, &off, WIRE_MSG_MAX, tmp.text);
    if (rc) return rc;
    if (off != len) return WIRE_E_LEN;
    *m = tmp;
    return 0;
}

int wire_error_encode(uint8_t *buf, size_t cap, int32_t code, const char *msg, size_t *len) {
    return msg_encode(buf, cap, code, msg, len);
}
int wire_goodbye_encode(uint8_t *buf, size_t cap, int32_t code, const char *msg, size_t *len) {
    return msg_encode(buf, cap, code, msg, len);
}
int wire_error_decode(const uint8_t *buf, size_t len, wire_msg *m) {
    return msg_decode(buf, len, m);
}
int wire_goodbye_decode(const uint8_t *buf, size_t len, wire_msg *m) {
    return msg_decode(buf, len, m);
}
