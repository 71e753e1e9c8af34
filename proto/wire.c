/* wire.c: encoding and validating decoding of afd frames (see wire.h, docs/protocol.md). */
#include "proto/wire.h"

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
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const uint8_t *p) { return get16(p) | ((uint32_t)get16(p + 2) << 16); }
static uint64_t get64(const uint8_t *p) { return get32(p) | ((uint64_t)get32(p + 4) << 32); }

/* ---- per-type rules: one row per known type ---- */

typedef struct type_rule {
    const char *name;
    uint16_t flags;    /* bits the type defines */
    bool tok;          /* n_tok meaningful */
    bool layer;        /* layer meaningful (else WIRE_LAYER_NONE) */
    uint32_t min_len;  /* payload bounds implied by the type */
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

/* ---- names ---- */

const char *wire_strerror(int rc) {
    switch (rc) {
    case 0: return "ok";
    case WIRE_E_MAGIC: return "bad magic (not an afd frame)";
    case WIRE_E_VERSION: return "unsupported protocol version";
    case WIRE_E_TYPE: return "unknown frame type or type not accepted now";
    case WIRE_E_FLAGS: return "flag bits not defined or not allowed for this frame";
    case WIRE_E_LEN: return "payload length does not match the frame";
    case WIRE_E_TRUNC: return "truncated frame";
    case WIRE_E_LIMIT: return "size or count over limit";
    case WIRE_E_DTYPE: return "unknown or unagreed wire dtype";
    case WIRE_E_ID: return "expert id out of range or repeated";
    case WIRE_E_VALUE: return "bad field value";
    case WIRE_E_ALIGN: return "payload not 8-byte aligned";
    case WIRE_E_LAYER: return "layer out of range or not allowed";
    case WIRE_E_STRING: return "non-printable bytes in a string";
    case WIRE_E_DIMS: return "inconsistent wire dims";
    default: return afd_strerror(rc);
    }
}

const char *wire_type_name(int type) {
    if (type >= 0 && rule_of((unsigned)type))
        return RULES[type].name;
    if (type >= WIRE_T_CTRL_FIRST && type <= WIRE_T_CTRL_LAST)
        return "CTRL";
    return "UNKNOWN";
}

const char *wire_role_name(int role) {
    switch (role) {
    case WIRE_ROLE_ATTND: return "attnd";
    case WIRE_ROLE_FFND: return "ffnd";
    case WIRE_ROLE_ROUTER: return "router";
    case WIRE_ROLE_BENCH: return "bench";
    default: return "unknown";
    }
}

const char *wire_refuse_name(int status) {
    static const char *const names[] = {
        [WIRE_REFUSE_NONE] = "ok",           [WIRE_REFUSE_VERSION] = "version",
        [WIRE_REFUSE_ROLE] = "role",         [WIRE_REFUSE_FINGERPRINT] = "fingerprint",
        [WIRE_REFUSE_DIMS] = "dims",         [WIRE_REFUSE_DTYPE] = "dtype",
        [WIRE_REFUSE_SHARD] = "shard",       [WIRE_REFUSE_LIMIT] = "limit",
        [WIRE_REFUSE_BUSY] = "busy",         [WIRE_REFUSE_STATE] = "state",
    };
    return status >= 0 && status <= WIRE_REFUSE_MAX ? names[status] : "unknown";
}

const char *wire_dtype_name(int dtype) {
    switch (dtype) {
    case WIRE_DT_E4M3: return "e4m3";
    case WIRE_DT_BF16: return "bf16";
    case WIRE_DT_F32: return "f32";
    default: return "unknown";
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
    if (h->flags & ~r->flags)
        return WIRE_E_FLAGS;
    if (h->payload_len > lim->max_payload)
        return WIRE_E_LIMIT;
    if (h->payload_len < r->min_len || h->payload_len > r->max_len)
        return WIRE_E_LEN;
    if (!r->tok && h->n_tok != 0)
        return WIRE_E_VALUE;
    if (h->n_tok > lim->max_tok)
        return WIRE_E_LIMIT;
    if (!r->layer)
        return h->layer == WIRE_LAYER_NONE ? 0 : WIRE_E_LAYER;
    if (h->layer == WIRE_LAYER_NONE || h->layer >= lim->max_layers)
        return WIRE_E_LAYER;
    return 0;
}

int wire_hdr_decode(const uint8_t *buf, size_t len, const wire_limits *lim, wire_hdr *h) {
    if (len < WIRE_HDR_SIZE)
        return WIRE_E_TRUNC;
    if (get32(buf) != WIRE_MAGIC)
        return WIRE_E_MAGIC;
    if (buf[4] < WIRE_VERSION_MIN || buf[4] > WIRE_VERSION_MAX)
        return WIRE_E_VERSION;
    const type_rule *r = rule_of(buf[5]);
    if (!r || buf[5] >= 64 || !(lim->types & WIRE_TYPE_BIT(buf[5])))
        return WIRE_E_TYPE;
    wire_hdr tmp;
    hdr_read(buf, &tmp);
    int rc = hdr_check(&tmp, r, lim);
    if (rc == 0)
        *h = tmp;
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
