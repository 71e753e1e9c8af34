/* wire.h: afd's binary wire format (docs/protocol.md has the byte tables).
 *
 * Every frame is a fixed 32-byte little-endian header (wire_hdr) followed by payload_len bytes.
 * This module encodes and decodes headers and payloads: pure functions over caller buffers, no
 * I/O, no allocation, no globals, no logging; safe from any thread.
 *
 * Decoding trusts nothing. wire_hdr_decode checks magic, version, a known type that the caller's
 * wire_limits accept, the type's flag bits, payload_len and n_tok against the limits and the
 * type's fixed sizes. The payload views check the exact length (64-bit arithmetic, no overflow
 * on n_tok * hidden), the layer, the MoE flag, expert ids, scales and weights against the dims
 * agreed at the handshake. Each failure has its own WIRE_E_* code (negative, in the range
 * (WIRE_E_BASE - 100, WIRE_E_BASE), distinct from AFD_E_* and -errno); wire_strerror names it.
 *
 * Views do not copy: they return pointers into the caller's payload, which must stay alive and
 * unchanged while the view is used, and must be WIRE_ALIGN (8) byte aligned (WIRE_E_ALIGN
 * otherwise; the transport receives into 8-aligned buffers). A view's pointers are non-const
 * because the same struct describes a payload being written (wire_*_layout); do not write
 * through a view of a received frame. Section values inside A2F/F2A payloads (e4m3, bf16, f32
 * activations) are not inspected: only scales, weights and ids are.
 *
 * The host must be little-endian (checked at compile time): array sections are used in place.
 */
#ifndef AFD_WIRE_H
#define AFD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "afd's wire format is used in place and needs a little-endian host"
#endif

#define WIRE_MAGIC       0x31444641u /* "AFD1" in memory order */
#define WIRE_VERSION     1
#define WIRE_VERSION_MIN 1 /* versions this build decodes */
#define WIRE_VERSION_MAX 1
#define WIRE_HDR_SIZE    32
#define WIRE_ALIGN       8      /* payload alignment the views require */
#define WIRE_LAYER_NONE  0xffff /* header layer of frames that are not about a layer */

/* Frame types. 16..63 are the control plane (router <-> attnd, proto/ctrl.h): no flags, no
 * tokens, no layer, payloads up to max_payload, accepted only when the caller's limits.types
 * enables them (no default limits do). 8..15 and 64..255 are unassigned. Decoding rejects
 * every type this build does not know (WIRE_E_TYPE). */
enum {
    WIRE_T_HELLO = 1,
    WIRE_T_HELLO_ACK = 2,
    WIRE_T_A2F = 3,
    WIRE_T_F2A = 4,
    WIRE_T_HEARTBEAT = 5,
    WIRE_T_ERROR = 6,
    WIRE_T_GOODBYE = 7,
    WIRE_T_CTRL_FIRST = 16,
    WIRE_T_CTRL_LAST = 63,
};

/* Bit sets of types for wire_limits.types. */
#define WIRE_TYPE_BIT(t) (1ull << (t))
/* Before the handshake completes: nothing but HELLO / HELLO_ACK, ERROR and GOODBYE. */
#define WIRE_TYPES_HANDSHAKE                                                                       \
    (WIRE_TYPE_BIT(WIRE_T_HELLO) | WIRE_TYPE_BIT(WIRE_T_HELLO_ACK) | WIRE_TYPE_BIT(WIRE_T_ERROR) | \
     WIRE_TYPE_BIT(WIRE_T_GOODBYE))
/* After it: data, heartbeats, errors, goodbye (a second HELLO is refused). */
#define WIRE_TYPES_SESSION                                                                         \
    (WIRE_TYPE_BIT(WIRE_T_A2F) | WIRE_TYPE_BIT(WIRE_T_F2A) | WIRE_TYPE_BIT(WIRE_T_HEARTBEAT) |     \
     WIRE_TYPE_BIT(WIRE_T_ERROR) | WIRE_TYPE_BIT(WIRE_T_GOODBYE))
#define WIRE_TYPES_ALL (WIRE_TYPES_HANDSHAKE | WIRE_TYPES_SESSION)

/* Header flags, per type; a bit the type does not define is rejected (WIRE_E_FLAGS). */
#define WIRE_F_MOE 0x0001u /* A2F: payload carries top-k expert ids and weights */
#define WIRE_F_FP8 0x0002u /* F2A: e4m3 + scales instead of bf16 */
#define WIRE_F_F32 0x0004u /* F2A: f32 (exact partial sums, for tests and tools) */

/* Wire dtypes (hello a2f_dtype / f2a_dtype). A2F is always E4M3. */
enum { WIRE_DT_E4M3 = 1, WIRE_DT_BF16 = 2, WIRE_DT_F32 = 3 };

/* Roles in HELLO. */
enum { WIRE_ROLE_ATTND = 1, WIRE_ROLE_FFND = 2, WIRE_ROLE_ROUTER = 3, WIRE_ROLE_BENCH = 4 };

/* HELLO_ACK status: 0 accepted, else why the peer was refused. */
enum {
    WIRE_REFUSE_NONE = 0,
    WIRE_REFUSE_VERSION = 1,     /* no protocol version in common */
    WIRE_REFUSE_ROLE = 2,        /* these two roles do not talk to each other */
    WIRE_REFUSE_FINGERPRINT = 3, /* different model (config and tensor shapes) */
    WIRE_REFUSE_DIMS = 4,        /* hidden, layers, experts, top_k or fp8 group differ */
    WIRE_REFUSE_DTYPE = 5,       /* wire dtypes differ */
    WIRE_REFUSE_SHARD = 6,       /* the shard map is not the one the client expects */
    WIRE_REFUSE_LIMIT = 7,       /* a size the receiver cannot take (max_tok, dims) */
    WIRE_REFUSE_BUSY = 8,        /* too many peers */
    WIRE_REFUSE_STATE = 9,       /* shutting down / not ready */
    WIRE_REFUSE_MAX = 9,
};

/* Decoding errors. */
enum {
    WIRE_E_BASE = -10100,
    WIRE_E_MAGIC = -10101,   /* not an afd frame */
    WIRE_E_VERSION = -10102, /* header version this build does not speak */
    WIRE_E_TYPE = -10103,    /* unknown type, or a type not accepted in this state */
    WIRE_E_FLAGS = -10104,   /* flag bits the type does not define, or MoE flag not allowed */
    WIRE_E_LEN = -10105,     /* payload length differs from what the header/type implies */
    WIRE_E_TRUNC = -10106,   /* fewer bytes than the header or payload needs */
    WIRE_E_LIMIT = -10107,   /* a size or count over its limit (or a buffer too small) */
    WIRE_E_DTYPE = -10108,   /* unknown wire dtype, or not the one agreed */
    WIRE_E_ID = -10109,      /* expert id >= n_experts, or repeated within a token */
    WIRE_E_VALUE = -10110,   /* bad field value (scale, weight, reserved, rank, role ...) */
    WIRE_E_ALIGN = -10111,   /* payload pointer not WIRE_ALIGN aligned */
    WIRE_E_LAYER = -10112,   /* layer >= n_layers, or a layer on a frame that has none */
    WIRE_E_STRING = -10113,  /* name / reason / message with non-printable bytes */
    WIRE_E_DIMS = -10114,    /* wire_dims inconsistent (fp8_group, top_k > n_experts ...) */
};

/* The fixed header. magic is implied; version is filled by decode and ignored by encode
 * (which writes WIRE_VERSION). */
typedef struct wire_hdr {
    uint8_t version;
    uint8_t type;         /* WIRE_T_* */
    uint16_t flags;       /* WIRE_F_* */
    uint32_t sender;      /* instance id of the sender */
    uint16_t mb;          /* micro-batch index */
    uint16_t layer;       /* layer index, WIRE_LAYER_NONE for non-layer frames */
    uint64_t step;        /* step number, or request sequence number for control frames */
    uint32_t n_tok;       /* tokens (A2F/F2A), 0 otherwise */
    uint32_t payload_len; /* bytes after the header */
} wire_hdr;

/* What a receiver accepts. Tighter before the handshake (wire_limits_handshake) than after
 * (wire_limits_session). */
typedef struct wire_limits {
    uint64_t types;       /* bit t set: type t accepted (WIRE_TYPES_*) */
    uint32_t max_payload; /* bytes after the header */
    uint32_t max_tok;     /* tokens per A2F/F2A frame */
    uint32_t max_layers;
    uint32_t max_experts;
    uint32_t max_hidden;
    uint32_t max_top_k;
} wire_limits;

/* What the handshake agreed; A2F/F2A layouts depend on it. */
typedef struct wire_dims {
    uint32_t hidden;
    uint32_t top_k;     /* 0: no MoE frames */
    uint32_t n_experts; /* ids on the wire are < n_experts (<= 65536) */
    uint32_t n_layers;  /* <= 0xffff; layer WIRE_LAYER_NONE is never a layer */
    uint32_t fp8_group; /* elements per scale; 0 = one scale per token; else divides hidden */
    uint8_t a2f_dtype;  /* WIRE_DT_E4M3 */
    uint8_t f2a_dtype;  /* WIRE_DT_BF16, WIRE_DT_E4M3 or WIRE_DT_F32 */
    const uint8_t *moe_layers; /* optional, borrowed: n_layers flags, 1 = MoE layer (A2F must
                                * carry WIRE_F_MOE), 0 = dense (must not); NULL = no check */
} wire_dims;

/* A2F payload: sections in this order (each naturally aligned).
 *   float    scales[n_tok][groups]      groups = fp8_group ? hidden / fp8_group : 1
 *   float    weights[n_tok][top_k]      } only with WIRE_F_MOE
 *   uint16_t ids[n_tok][top_k]          } then zero bytes to a multiple of 4
 *   uint8_t  q[n_tok][hidden]           e4m3 */
typedef struct wire_a2f {
    uint32_t n_tok, hidden, groups, top_k; /* top_k 0 without WIRE_F_MOE */
    bool moe;
    float *scales;
    float *weights; /* NULL without WIRE_F_MOE */
    uint16_t *ids;  /* NULL without WIRE_F_MOE */
    uint8_t *q;
} wire_a2f;

/* F2A payload, by flags:
 *   none        uint16_t bf16[n_tok][hidden]
 *   WIRE_F_FP8  float scales[n_tok][groups], then uint8_t q[n_tok][hidden] (e4m3)
 *   WIRE_F_F32  float f32[n_tok][hidden] */
typedef struct wire_f2a {
    uint32_t n_tok, hidden, groups; /* groups 0 unless FP8 */
    uint8_t dtype;                  /* WIRE_DT_* */
    float *scales;                  /* FP8 only, else NULL */
    uint8_t *q;                     /* FP8 only */
    uint16_t *bf16;                 /* BF16 only */
    float *f32;                     /* F32 only */
} wire_f2a;

/* HELLO / HELLO_ACK payload. */
#define WIRE_NAME_MAX    64
#define WIRE_REASON_MAX  256
#define WIRE_HELLO_FIXED 52 /* bytes before name_len */
#define WIRE_HELLO_MIN   (WIRE_HELLO_FIXED + 4)
#define WIRE_HELLO_MAX   (WIRE_HELLO_MIN + WIRE_NAME_MAX + WIRE_REASON_MAX)
typedef struct wire_hello {
    uint16_t proto_min, proto_max; /* versions spoken, 1 <= min <= max */
    uint8_t role;                  /* WIRE_ROLE_* */
    uint8_t status;                /* ACK: WIRE_REFUSE_*; HELLO: 0 */
    uint32_t instance_id;
    uint64_t model_fingerprint;
    uint16_t ep_rank, ep_size, tp_rank, tp_size; /* rank < size; size >= 1 */
    uint32_t n_layers, n_experts, hidden;
    uint16_t top_k, fp8_group;
    uint8_t a2f_dtype, f2a_dtype;
    uint32_t max_tok;                 /* largest micro-batch sent / accepted */
    char name[WIRE_NAME_MAX + 1];     /* printable ASCII, NUL-terminated */
    char reason[WIRE_REASON_MAX + 1]; /* printable ASCII, NUL-terminated; ACK refusals */
} wire_hello;

/* ERROR / GOODBYE payload: u32 code, u16 msg_len, msg. */
#define WIRE_MSG_MAX     1024
#define WIRE_MSG_MIN_LEN 6
#define WIRE_MSG_MAX_LEN (WIRE_MSG_MIN_LEN + WIRE_MSG_MAX)
typedef struct wire_msg {
    int32_t code; /* ERROR: an AFD_E_ / WIRE_E_ / -errno code; GOODBYE: a reason code */
    char text[WIRE_MSG_MAX + 1]; /* printable ASCII, NUL-terminated */
} wire_msg;

/* ---- limits and dims ---- */

/* Defaults after the handshake, before it is tightened to the agreed dims: every known type,
 * 64 MiB payloads, 4096 tokens, 512 layers, 1024 experts, hidden 65536, top_k 32. */
void wire_limits_default(wire_limits *lim);
/* Before the handshake: handshake types only, payload <= WIRE_MSG_MAX_LEN, no tokens. */
void wire_limits_handshake(wire_limits *lim);
/* After a successful handshake: *base tightened to session types, max_tok = min of base's and
 * both hellos', max_payload = the largest A2F/F2A/ERROR payload possible under *d. 0, or
 * WIRE_E_DIMS / WIRE_E_LIMIT (the largest frame does not fit 32 bits or base's max_payload). */
int wire_limits_session(const wire_limits *base, const wire_hello *mine, const wire_hello *theirs,
                        const wire_dims *d, wire_limits *out);
/* Checks dims for consistency (and against *lim when lim != NULL): 0, WIRE_E_DIMS, WIRE_E_DTYPE
 * or WIRE_E_LIMIT. */
int wire_dims_check(const wire_dims *d, const wire_limits *lim);
/* Fills *d from a hello (moe_layers = NULL) and checks it: 0 or as wire_dims_check. */
int wire_dims_from_hello(const wire_hello *h, const wire_limits *lim, wire_dims *d);

/* ---- header ---- */

/* Writes the 32-byte header (magic, WIRE_VERSION, then *h). */
void wire_hdr_encode(uint8_t out[WIRE_HDR_SIZE], const wire_hdr *h);
/* Decodes and checks a header from buf[0..len) (len may include the payload, which is not
 * looked at). 0 and *h, or WIRE_E_TRUNC (len < 32), _MAGIC, _VERSION, _TYPE (unknown or not in
 * lim->types), _FLAGS, _LIMIT (payload_len / n_tok over lim), _LEN (payload_len impossible for
 * the type), _VALUE (n_tok on a tokenless type), _LAYER (a layer on a non-layer frame, or on
 * A2F/F2A WIRE_LAYER_NONE or >= lim->max_layers). *h is written only on success. Checks are in
 * this order, so the first violation decides the code. */
int wire_hdr_decode(const uint8_t *buf, size_t len, const wire_limits *lim, wire_hdr *h);

/* ---- A2F / F2A ---- */

/* Payload bytes; SIZE_MAX if *d is inconsistent (wire_dims_check) or the size overflows. */
size_t wire_a2f_size(const wire_dims *d, uint32_t n_tok, bool moe);
size_t wire_f2a_size(const wire_dims *d, uint32_t n_tok, bool fp8); /* fp8 ? E4M3 : BF16 */
size_t wire_f2a_size_dt(const wire_dims *d, uint32_t n_tok, uint8_t dtype);

/* Views of a received payload (len bytes at payload) described by a decoded header. Checks:
 * type, alignment, len against h->payload_len (_TRUNC short, _LEN long), dims, n_tok <=
 * lim->max_tok, layer < n_layers (_LAYER), MoE flag allowed for the layer (_FLAGS), payload_len
 * equal to the size the dims give (_LEN), scales finite and > 0 and weights finite (_VALUE), ids
 * < n_experts and distinct within a token (_ID), id padding zero (_VALUE); F2A: the dtype the
 * flags give is the agreed d->f2a_dtype (_DTYPE). 0 and *out, or the code. */
int wire_a2f_view(const wire_hdr *h, const uint8_t *payload, size_t len, const wire_dims *d,
                  const wire_limits *lim, wire_a2f *out);
int wire_f2a_view(const wire_hdr *h, const uint8_t *payload, size_t len, const wire_dims *d,
                  const wire_limits *lim, wire_f2a *out);

/* Writers: payload is a WIRE_ALIGN-aligned buffer of exactly wire_*_size bytes; *out gets
 * writable section pointers inside it (id padding is zeroed here). The caller fills the
 * sections and sends a header with payload_len = that size, n_tok, and flags WIRE_F_MOE (A2F)
 * or wire_f2a_flags(dtype) (F2A). 0, or WIRE_E_DIMS / _DTYPE / _ALIGN / _LIMIT (size). */
int wire_a2f_layout(const wire_dims *d, uint32_t n_tok, bool moe, uint8_t *payload, wire_a2f *out);
int wire_f2a_layout(const wire_dims *d, uint32_t n_tok, uint8_t dtype, uint8_t *payload,
                    wire_f2a *out);
/* Header flags of an F2A frame in dtype (0 for BF16). */
uint16_t wire_f2a_flags(uint8_t dtype);

/* ---- HELLO / HELLO_ACK ---- */

/* Encodes *h into buf[0..cap); *len gets the payload size (<= WIRE_HELLO_MAX). 0, or the code
 * decoding would give for an invalid field, or WIRE_E_LIMIT when cap is too small. */
int wire_hello_encode(uint8_t *buf, size_t cap, const wire_hello *h, size_t *len);
/* Decodes exactly len bytes: 0 and *h, or WIRE_E_TRUNC / _LEN (trailing bytes) / _VALUE
 * (versions, role, status, reserved, ranks) / _DTYPE / _LIMIT (name > 64, reason > 256) /
 * _STRING (non-printable name or reason). Dims are checked by wire_dims_from_hello. */
int wire_hello_decode(const uint8_t *buf, size_t len, wire_hello *h);
/* Do the two ends agree? Returns 0 (yes), or the WIRE_REFUSE_* reason (> 0) to put in the ACK
 * status, with a one-line explanation in why[0..n) ("model fingerprint 0x... != 0x...",
 * "hidden 7168 != 4096"). Compares: roles that talk to each other, version overlap, fingerprint,
 * n_layers, n_experts, hidden, top_k, fp8_group, a2f/f2a dtypes, and, when either end is an
 * ffnd, the shard map (ep/tp rank and size: the client names the shard it expects). */
int wire_hello_check(const wire_hello *mine, const wire_hello *theirs, char *why, size_t n);
/* Highest protocol version both speak, or 0 if none. */
int wire_hello_version(const wire_hello *a, const wire_hello *b);

/* ---- ERROR / GOODBYE ---- */

/* Encode code + msg into buf[0..cap), *len = payload size. msg (may be NULL) is cut to
 * WIRE_MSG_MAX bytes and non-printable bytes become '?': an error path never fails on its own
 * message. 0, or WIRE_E_LIMIT when cap is too small. */
int wire_error_encode(uint8_t *buf, size_t cap, int32_t code, const char *msg, size_t *len);
int wire_goodbye_encode(uint8_t *buf, size_t cap, int32_t code, const char *msg, size_t *len);
/* Decode exactly len bytes: 0 and *m, or WIRE_E_TRUNC / _LEN / _LIMIT (msg_len > 1024) /
 * _STRING. */
int wire_error_decode(const uint8_t *buf, size_t len, wire_msg *m);
int wire_goodbye_decode(const uint8_t *buf, size_t len, wire_msg *m);

/* ---- names ---- */

/* Message for a WIRE_E_* code; other codes go to afd_strerror. Never NULL. */
const char *wire_strerror(int rc);
/* "HELLO", "A2F", ...; "CTRL" for the reserved range, "UNKNOWN" otherwise. Never NULL. */
const char *wire_type_name(int type);
/* "attnd", "ffnd", "router", "bench", "unknown". */
const char *wire_role_name(int role);
/* "ok", "version", "fingerprint", ... for a WIRE_REFUSE_* status. */
const char *wire_refuse_name(int status);
/* "e4m3", "bf16", "f32", "unknown". */
const char *wire_dtype_name(int dtype);

#endif
