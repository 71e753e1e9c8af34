/* ctrl.h: afd's control-plane messages (router <-> attnd, attnd <-> attnd). docs/protocol.md,
 * section "Control plane", has the byte tables.
 *
 * Control messages are ordinary afd frames (proto/wire.h) with a type in 16..63 (WIRE_T_CTRL_*
 * below), no flags, no tokens, layer WIRE_LAYER_NONE, carried by the same transport as the data
 * plane (proto/xport.h). The header's `step` is a request sequence number chosen by the sender
 * of a request and copied into its reply; sequences are named by a u64 seq_id in the payload,
 * chosen by the router. This module encodes and decodes payloads only: pure functions over
 * caller buffers, no I/O, no allocation, no globals, no logging; safe from any thread.
 *
 * Encoders write into buf[0..cap) (no alignment needed) and check the message with the rules
 * the decoder applies, under the built-in maxima (CTRL_*_MAX; a receiver's limits may be
 * tighter, and the vocabulary is not known here); they return 0 and *len, the code decoding would
 * give for a bad field, or WIRE_E_LIMIT when cap is too small. Decoders parse exactly len bytes
 * against a ctrl_limits (NULL: ctrl_limits_default; each field is capped at its CTRL_*_MAX) and
 * return 0 with *out written, or a WIRE_E_* code (wire_strerror names it; *out untouched). Strings
 * are copied into NUL-terminated arrays; arrays (token ids, candidates, block ids, rkey) are
 * pointers into the payload, which must stay alive and unchanged while *out is used, and must
 * be WIRE_ALIGN (8) aligned (WIRE_E_ALIGN otherwise; xport delivers 8-aligned payloads).
 * Pointers of empty arrays are NULL. Decoding checks, in this order: alignment, the fixed part
 * (WIRE_E_TRUNC), its fields and counts (WIRE_E_VALUE / _FLAGS / _LIMIT), the exact length the
 * counts give (WIRE_E_TRUNC short, WIRE_E_LEN long), array values (WIRE_E_VALUE), strings
 * (WIRE_E_STRING). The first violation decides the code.
 */
#ifndef AFD_CTRL_H
#define AFD_CTRL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"

/* Frame types, inside wire's control range. */
enum {
    WIRE_T_CTRL_REGISTER = 16,     /* attnd -> router, once after HELLO */
    WIRE_T_CTRL_LOAD = 17,         /* attnd -> router, every step or every N ms */
    WIRE_T_CTRL_DRAIN = 18,        /* router / afdctl -> attnd */
    WIRE_T_CTRL_SUBMIT = 20,       /* router -> attnd (decode / both) */
    WIRE_T_CTRL_SUBMIT_ACK = 21,   /* attnd -> router */
    WIRE_T_CTRL_TOKENS = 22,       /* attnd -> router */
    WIRE_T_CTRL_CANCEL = 23,       /* router -> attnd */
    WIRE_T_CTRL_RESERVE = 24,      /* router -> decode attnd D */
    WIRE_T_CTRL_RESERVE_OK = 25,   /* D -> router */
    WIRE_T_CTRL_RESERVE_FAIL = 26, /* D -> router */
    WIRE_T_CTRL_PREFILL = 27,      /* router -> prefill attnd P */
    WIRE_T_CTRL_PREFILL_DONE = 28, /* P -> router */
    WIRE_T_CTRL_KV_READY = 29,     /* P -> D */
    WIRE_T_CTRL_RELEASE = 30,      /* router or P -> D */
    WIRE_T_CTRL_KV_DATA = 31,      /* P -> D: K/V bytes when RMA is not available */
};

/* Types each end accepts (for wire_limits.types; ctrl_wire_limits adds HEARTBEAT, ERROR and
 * GOODBYE). An attnd takes router requests and, as a decode instance, handoff frames. */
#define CTRL_TYPES_TO_ROUTER                                                                       \
    (WIRE_TYPE_BIT(WIRE_T_CTRL_REGISTER) | WIRE_TYPE_BIT(WIRE_T_CTRL_LOAD) |                       \
     WIRE_TYPE_BIT(WIRE_T_CTRL_SUBMIT_ACK) | WIRE_TYPE_BIT(WIRE_T_CTRL_TOKENS) |                   \
     WIRE_TYPE_BIT(WIRE_T_CTRL_RESERVE_OK) | WIRE_TYPE_BIT(WIRE_T_CTRL_RESERVE_FAIL) |             \
     WIRE_TYPE_BIT(WIRE_T_CTRL_PREFILL_DONE))
#define CTRL_TYPES_TO_ATTND                                                                        \
    (WIRE_TYPE_BIT(WIRE_T_CTRL_DRAIN) | WIRE_TYPE_BIT(WIRE_T_CTRL_SUBMIT) |                        \
     WIRE_TYPE_BIT(WIRE_T_CTRL_CANCEL) | WIRE_TYPE_BIT(WIRE_T_CTRL_RESERVE) |                      \
     WIRE_TYPE_BIT(WIRE_T_CTRL_PREFILL) | WIRE_TYPE_BIT(WIRE_T_CTRL_RELEASE))
#define CTRL_TYPES_HANDOFF                                                                         \
    (WIRE_TYPE_BIT(WIRE_T_CTRL_KV_READY) | WIRE_TYPE_BIT(WIRE_T_CTRL_RELEASE) |                    \
     WIRE_TYPE_BIT(WIRE_T_CTRL_KV_DATA))
#define CTRL_TYPES_ALL (CTRL_TYPES_TO_ROUTER | CTRL_TYPES_TO_ATTND | CTRL_TYPES_HANDOFF)

/* Built-in maxima: the sizes of the string arrays below and the caps of ctrl_limits. */
#define CTRL_REQ_ID_MAX  128         /* X-Request-Id bytes */
#define CTRL_NAME_MAX    128         /* model name */
#define CTRL_HOST_MAX    255         /* data-plane host (name or address) */
#define CTRL_MSG_MAX     512         /* error / refusal message */
#define CTRL_STOP_MAX    16          /* stop token ids */
#define CTRL_TOP_MAX     20          /* top logprob candidates per token */
#define CTRL_RKEY_MAX    1024        /* packed remote key bytes */
#define CTRL_PROMPT_MAX  (1u << 22)  /* prompt tokens */
#define CTRL_GEN_MAX     4096        /* generated tokens in one TOKENS message */
#define CTRL_BLOCKS_MAX  (1u << 22)  /* blocks in one reservation */
#define CTRL_KV_DATA_MAX (64u << 20) /* bytes in one KV_DATA frame */
#define CTRL_TEMP_MAX    100.0f      /* temperature ceiling */

/* What a receiver accepts. Each field is capped at its CTRL_*_MAX. */
typedef struct ctrl_limits {
    uint32_t max_prompt;  /* prompt tokens (SUBMIT, PREFILL; prompt_len of RESERVE, KV_READY) */
    uint32_t max_stop;    /* stop ids per request */
    uint32_t max_top;     /* candidates per token (top_logprobs) */
    uint32_t max_gen;     /* tokens per TOKENS message */
    uint32_t max_blocks;  /* block ids per reservation */
    uint32_t max_rkey;    /* rkey bytes */
    uint32_t max_req_id;  /* request id bytes */
    uint32_t max_name;    /* model name bytes */
    uint32_t max_host;    /* host bytes */
    uint32_t max_msg;     /* message bytes */
    uint32_t max_kv_data; /* KV_DATA bytes */
    uint32_t vocab;       /* token ids must be < vocab; 0: not checked */
} ctrl_limits;

/* Instance roles (REGISTER, LOAD). */
enum { CTRL_ROLE_PREFILL = 1, CTRL_ROLE_DECODE = 2, CTRL_ROLE_BOTH = 3 };

/* Why something was refused or failed (SUBMIT_ACK, RESERVE_FAIL, PREFILL_DONE, RELEASE). */
enum {
    CTRL_OK = 0,
    CTRL_R_KV_FULL = 1,    /* not enough free KV blocks */
    CTRL_R_TOO_LONG = 2,   /* prompt (+ max_tokens) over the instance's context */
    CTRL_R_DRAINING = 3,   /* the instance takes no new sequences */
    CTRL_R_BAD_PARAMS = 4, /* a parameter the instance cannot honour (vocab, top_k ...) */
    CTRL_R_DUPLICATE = 5,  /* seq_id already in use */
    CTRL_R_BUSY = 6,       /* batch or queue full */
    CTRL_R_ROLE = 7,       /* the instance's role does not do this */
    CTRL_R_EPOCH = 8,      /* no reservation with this seq_id and epoch */
    CTRL_R_EXPIRED = 9,    /* the lease ran out */
    CTRL_R_PEER = 10,      /* a peer (D, P, an FFN shard) failed */
    CTRL_R_CANCELLED = 11, /* cancelled by the router */
    CTRL_R_INTERNAL = 12,  /* anything else (see the message) */
    CTRL_R_MAX = 12,
};

/* Why a sequence finished (TOKENS). */
enum {
    CTRL_FINISH_NONE = 0, /* more tokens follow */
    CTRL_FINISH_STOP = 1, /* EOS or a stop id (the last token) */
    CTRL_FINISH_LENGTH = 2,
    CTRL_FINISH_CANCELLED = 3,
    CTRL_FINISH_ERROR = 4, /* code and msg say why */
    CTRL_FINISH_MAX = 4,
};

/* Sampling parameters of a request (SUBMIT, RESERVE, PREFILL). */
typedef struct ctrl_sampling {
    float temperature;   /* finite, 0 .. CTRL_TEMP_MAX; 0 = greedy */
    float top_p;         /* (0, 1] */
    int32_t top_k;       /* -1 = off, else >= 1 */
    uint32_t max_tokens; /* >= 1 */
    bool has_seed;       /* seed is 0 unless has_seed */
    bool ignore_eos;
    bool logprobs;        /* report the chosen tokens' logprobs */
    uint8_t top_logprobs; /* 0 .. max_top candidates per token; > 0 needs logprobs */
    uint64_t seed;
    uint32_t priority;    /* 0 normal; higher goes first */
    uint64_t deadline_ns; /* time budget from receipt; 0 none */
    uint32_t n_stop;      /* <= max_stop */
    const uint32_t *stop; /* [n_stop] stop token ids */
} ctrl_sampling;

/* SUBMIT: a sequence for a decode / both instance (which prefills it locally). */
typedef struct ctrl_submit {
    uint64_t seq_id;
    char req_id[CTRL_REQ_ID_MAX + 1]; /* X-Request-Id, printable, may be empty */
    uint32_t n_prompt;                /* 1 .. max_prompt */
    const uint32_t *prompt;           /* [n_prompt] */
    ctrl_sampling s;
} ctrl_submit;

/* SUBMIT_ACK (reason CTRL_OK = accepted) and RESERVE_FAIL (reason != CTRL_OK). */
typedef struct ctrl_status {
    uint64_t seq_id;
    uint32_t reason;            /* CTRL_OK or CTRL_R_* */
    char msg[CTRL_MSG_MAX + 1]; /* printable; empty when reason is CTRL_OK */
} ctrl_status;

/* One top-logprob candidate; the wire layout (u32 id, f32 logprob) used in place. */
typedef struct ctrl_cand {
    uint32_t id;
    float logprob; /* <= 0 or -inf; never NaN */
} ctrl_cand;

/* TOKENS: generated tokens of one sequence, and the finish when it is the last message. */
typedef struct ctrl_tokens {
    uint64_t seq_id;
    uint32_t n_tok;         /* 0 .. max_gen; >= 1 unless finish != NONE */
    uint8_t finish;         /* CTRL_FINISH_* */
    bool has_logprobs;      /* logprobs present */
    uint8_t n_top;          /* candidates per token, 0 .. max_top; > 0 needs has_logprobs */
    int32_t code;           /* finish ERROR: < 0 (AFD_E_*, WIRE_E_*, -errno); else 0 */
    uint32_t prompt_tokens; /* usage */
    uint32_t completion_tokens;
    const uint32_t *ids;        /* [n_tok] */
    const float *logprobs;      /* [n_tok] with has_logprobs, else NULL */
    const ctrl_cand *top;       /* [n_tok][n_top], NULL when n_top is 0 */
    char msg[CTRL_MSG_MAX + 1]; /* finish ERROR only (may be empty); else empty */
} ctrl_tokens;

/* CANCEL: drop a sequence (idempotent; answered by TOKENS finish CANCELLED). */
typedef struct ctrl_cancel {
    uint64_t seq_id;
} ctrl_cancel;

/* LOAD: an attnd's state, for admission and the SLA model. */
typedef struct ctrl_load {
    uint32_t instance_id;
    uint8_t role; /* CTRL_ROLE_* */
    bool draining;
    uint16_t micro_batches;
    uint64_t step;             /* the attnd's step counter */
    uint32_t running, waiting; /* sequences */
    uint32_t batch_tokens;     /* tokens in the last step */
    uint32_t last_step_us, p50_step_us, p99_step_us;
    uint32_t kv_blocks_free, kv_blocks_reserved, kv_blocks_total; /* free + reserved <= total */
    uint32_t block_size;                                          /* tokens per block, >= 1 */
    uint32_t reservations; /* open reservations (handoffs awaiting KV_READY) */
    float tokens_per_s;    /* finite, >= 0 */
    uint64_t ctx_tokens;   /* sum of the context lengths of the running sequences */
} ctrl_load;

/* DRAIN: stop taking sequences, finish the running ones (or resume taking them). */
typedef struct ctrl_drain {
    uint64_t deadline_ms; /* cancel what still runs after this long; 0 = no deadline */
    bool resume;          /* true: leave the draining state (deadline_ms must be 0) */
} ctrl_drain;

/* RESERVE: reserve KV blocks on D for a prompt; carries the request's sampling so that D can
 * decode once KV_READY arrives (D gets no SUBMIT for a handed-off sequence). */
typedef struct ctrl_reserve {
    uint64_t seq_id;
    char req_id[CTRL_REQ_ID_MAX + 1];
    uint32_t prompt_len; /* 1 .. max_prompt */
    uint32_t lease_ms;   /* lease wanted; 0 = D's default */
    ctrl_sampling s;
} ctrl_reserve;

/* A reservation on D (RESERVE_OK, and forwarded in PREFILL). Block i of the sequence lives at
 * remote_base + block_ids[i] * block_bytes in D's registered KV pool (checked not to overflow
 * 64 bits). rkey_len 0: D has no RMA key; P sends the K/V with KV_DATA. */
typedef struct ctrl_resv {
    uint32_t instance_id;      /* D */
    uint64_t epoch;            /* != 0; D accepts KV_READY / KV_DATA only with this epoch */
    uint64_t lease_ms;         /* >= 1: the lease ends this long after D sent RESERVE_OK */
    uint32_t block_size;       /* tokens per block, >= 1 */
    uint64_t block_bytes;      /* bytes per block in D's pool, >= 1 */
    uint64_t remote_base;      /* address of block 0 in D's pool */
    uint32_t n_blocks;         /* 1 .. max_blocks */
    const uint32_t *block_ids; /* [n_blocks] */
    uint32_t rkey_len;         /* 0 .. max_rkey */
    const uint8_t *rkey;       /* [rkey_len] packed ucp rkey, NULL when rkey_len is 0 */
} ctrl_resv;

typedef struct ctrl_reserve_ok {
    uint64_t seq_id;
    ctrl_resv r;
} ctrl_reserve_ok;

/* PREFILL: what SUBMIT carries, the reservation on D and D's data-plane address. */
typedef struct ctrl_prefill {
    ctrl_submit sub;
    ctrl_resv r;
    char host[CTRL_HOST_MAX + 1]; /* non-empty, printable */
    uint16_t port;                /* != 0 */
} ctrl_prefill;

/* PREFILL_DONE: P's answer: the first token, or why there is none. */
typedef struct ctrl_prefill_done {
    uint64_t seq_id;
    uint32_t reason; /* CTRL_OK, or CTRL_R_* (then token, logprob, n_top are 0) */
    int32_t code;    /* with a reason: <= 0, a detail code; with CTRL_OK: 0 */
    uint32_t token;  /* the first generated token */
    bool has_logprob;
    float logprob;              /* with has_logprob (<= 0 or -inf), else 0 */
    uint32_t prompt_tokens;     /* usage */
    uint8_t n_top;              /* 0 .. max_top; > 0 needs has_logprob */
    const ctrl_cand *top;       /* [n_top], NULL when n_top is 0 */
    char msg[CTRL_MSG_MAX + 1]; /* with a reason only */
} ctrl_prefill_done;

/* KV_READY: P wrote the prompt's K/V into the reservation; D may decode. */
typedef struct ctrl_kv_ready {
    uint64_t seq_id;
    uint64_t epoch; /* != 0 */
    uint32_t first_token;
    uint32_t prompt_len; /* 1 .. max_prompt */
    bool has_checksum;
    uint64_t checksum; /* ctrl_kv_checksum of the written blocks; 0 without has_checksum */
} ctrl_kv_ready;

/* RELEASE: drop a reservation (idempotent). epoch 0 = whatever epoch it has. */
typedef struct ctrl_release {
    uint64_t seq_id;
    uint64_t epoch;
    uint32_t reason; /* CTRL_OK (done with it) or CTRL_R_* */
} ctrl_release;

/* KV_DATA: K/V bytes for a reservation when RMA is not available: len bytes at byte offset
 * `offset` of reserved block number `block` (an index into block_ids, not a block id). D checks
 * block < n_blocks and offset + len <= block_bytes against its reservation. */
typedef struct ctrl_kv_data {
    uint64_t seq_id;
    uint64_t epoch; /* != 0 */
    uint32_t block;
    uint32_t offset;
    uint32_t len;        /* 1 .. max_kv_data */
    const uint8_t *data; /* [len], 8-aligned in a received payload */
} ctrl_kv_data;

/* REGISTER: an attnd introduces itself to the router (after HELLO / HELLO_ACK). */
typedef struct ctrl_register {
    uint32_t instance_id;
    uint8_t role;                  /* CTRL_ROLE_* */
    char host[CTRL_HOST_MAX + 1];  /* data-plane address for handoffs; decode / both: non-empty */
    uint16_t port;                 /* != 0 exactly when host is non-empty */
    uint32_t kv_blocks;            /* >= 1 */
    uint32_t block_size;           /* tokens per block, >= 1 */
    uint32_t max_batch;            /* running sequences, >= 1 */
    uint32_t max_context;          /* tokens per sequence (prompt + generated), >= 1 */
    char model[CTRL_NAME_MAX + 1]; /* non-empty, printable */
} ctrl_register;

/* Any control message, tagged by its frame type. */
typedef struct ctrl_msg {
    uint8_t type; /* WIRE_T_CTRL_* */
    union {
        ctrl_register reg;
        ctrl_load load;
        ctrl_drain drain;
        ctrl_submit submit;
        ctrl_status submit_ack;
        ctrl_tokens tokens;
        ctrl_cancel cancel;
        ctrl_reserve reserve;
        ctrl_reserve_ok reserve_ok;
        ctrl_status reserve_fail;
        ctrl_prefill prefill;
        ctrl_prefill_done prefill_done;
        ctrl_kv_ready kv_ready;
        ctrl_release release;
        ctrl_kv_data kv_data;
    } u;
} ctrl_msg;

/* ---- limits ---- */

/* Defaults: prompt 131072 tokens, 16 stop ids, 20 candidates, 256 tokens per TOKENS, 65536
 * blocks, rkey 1024, request id 128, model name 128, host 255, message 512, KV_DATA 4 MiB,
 * vocab unchecked. */
void ctrl_limits_default(ctrl_limits *lim);
/* Largest payload of a control message of the types in `types` (CTRL_TYPES_* bits) under *lim
 * (NULL: defaults; fields capped at their maxima); 0 when no control type is in the set. */
size_t ctrl_max_payload(const ctrl_limits *lim, uint64_t types);
/* Wire limits for a control session: wire_limits_default, types = `types` (CTRL_TYPES_* bits)
 * plus HEARTBEAT, ERROR and GOODBYE, max_payload = the larger of ctrl_max_payload(lim, types)
 * and the largest ERROR payload, no tokens. */
void ctrl_wire_limits(const ctrl_limits *lim, uint64_t types, wire_limits *out);
/* A control frame's header: type, sender, step = req (the request sequence number), layer
 * WIRE_LAYER_NONE, everything else 0 (xp_send sets payload_len). */
wire_hdr ctrl_hdr(int type, uint32_t sender, uint64_t req);

/* ---- messages: encode into buf[0..cap), decode exactly len bytes (see the contract) ---- */

int ctrl_register_encode(uint8_t *buf, size_t cap, const ctrl_register *m, size_t *len);
int ctrl_register_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_register *out);
int ctrl_load_encode(uint8_t *buf, size_t cap, const ctrl_load *m, size_t *len);
int ctrl_load_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_load *out);
int ctrl_drain_encode(uint8_t *buf, size_t cap, const ctrl_drain *m, size_t *len);
int ctrl_drain_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_drain *out);
int ctrl_submit_encode(uint8_t *buf, size_t cap, const ctrl_submit *m, size_t *len);
int ctrl_submit_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_submit *out);
int ctrl_submit_ack_encode(uint8_t *buf, size_t cap, const ctrl_status *m, size_t *len);
int ctrl_submit_ack_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_status *out);
int ctrl_tokens_encode(uint8_t *buf, size_t cap, const ctrl_tokens *m, size_t *len);
int ctrl_tokens_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_tokens *out);
int ctrl_cancel_encode(uint8_t *buf, size_t cap, const ctrl_cancel *m, size_t *len);
int ctrl_cancel_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_cancel *out);
int ctrl_reserve_encode(uint8_t *buf, size_t cap, const ctrl_reserve *m, size_t *len);
int ctrl_reserve_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_reserve *out);
int ctrl_reserve_ok_encode(uint8_t *buf, size_t cap, const ctrl_reserve_ok *m, size_t *len);
int ctrl_reserve_ok_decode(const uint8_t *p, size_t len, const ctrl_limits *lim,
                           ctrl_reserve_ok *out);
/* RESERVE_FAIL: reason must not be CTRL_OK. */
int ctrl_reserve_fail_encode(uint8_t *buf, size_t cap, const ctrl_status *m, size_t *len);
int ctrl_reserve_fail_decode(const uint8_t *p, size_t len, const ctrl_limits *lim,
                             ctrl_status *out);
int ctrl_prefill_encode(uint8_t *buf, size_t cap, const ctrl_prefill *m, size_t *len);
int ctrl_prefill_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_prefill *out);
int ctrl_prefill_done_encode(uint8_t *buf, size_t cap, const ctrl_prefill_done *m, size_t *len);
int ctrl_prefill_done_decode(const uint8_t *p, size_t len, const ctrl_limits *lim,
                             ctrl_prefill_done *out);
int ctrl_kv_ready_encode(uint8_t *buf, size_t cap, const ctrl_kv_ready *m, size_t *len);
int ctrl_kv_ready_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_kv_ready *out);
int ctrl_release_encode(uint8_t *buf, size_t cap, const ctrl_release *m, size_t *len);
int ctrl_release_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_release *out);
int ctrl_kv_data_encode(uint8_t *buf, size_t cap, const ctrl_kv_data *m, size_t *len);
int ctrl_kv_data_decode(const uint8_t *p, size_t len, const ctrl_limits *lim, ctrl_kv_data *out);

/* Any message by type: the decoder named by h->type, after checking h->type is a control type
 * (WIRE_E_TYPE) and len against h->payload_len (WIRE_E_TRUNC short, WIRE_E_LEN long). */
int ctrl_decode(const wire_hdr *h, const uint8_t *p, size_t len, const ctrl_limits *lim,
                ctrl_msg *out);
/* The encoder named by m->type (WIRE_E_TYPE if it is not a control type). */
int ctrl_encode(uint8_t *buf, size_t cap, const ctrl_msg *m, size_t *len);

/* ---- helpers and names ---- */

/* The optional KV_READY checksum: 64-bit FNV-1a over the bytes, continuing from h (start with
 * CTRL_CHECKSUM_INIT). P hashes each block's written bytes in the sequence's block order. */
#define CTRL_CHECKSUM_INIT 0xcbf29ce484222325ull
uint64_t ctrl_kv_checksum(uint64_t h, const void *p, size_t n);

/* "SUBMIT", "TOKENS", ...; wire_type_name for other types. Never NULL. */
const char *ctrl_type_name(int type);
/* "ok", "kv_full", "too_long", ...; "unknown". */
const char *ctrl_reason_name(int reason);
/* "none", "stop", "length", "cancelled", "error"; "unknown". */
const char *ctrl_finish_name(int finish);
/* "prefill", "decode", "both"; "unknown". */
const char *ctrl_role_name(int role);

#endif
