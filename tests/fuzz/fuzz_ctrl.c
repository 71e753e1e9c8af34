/* libFuzzer target for proto/ctrl: the input is one frame (32-byte header + payload). The header
 * is decoded with control-session limits; the payload, copied to an exact-size buffer so that
 * ASan sees any over-read (malloc: 16-aligned), goes through every control decoder whatever the
 * type says, and through ctrl_decode with the header's type. Nothing may crash or read out of
 * bounds; every accepted payload must re-encode to the same bytes with cap = len (and fail with
 * WIRE_E_LIMIT at len - 1), fit ctrl_max_payload for its type, and the encoders' reads of the
 * decoded arrays stay inside the payload (ASan).
 * The header's sender picks the limits: bit 0: vocab 1000, bit 1: tight counts (8 prompt
 * tokens, 2 stop ids, 3 candidates, 4 tokens, 4 blocks, 16-byte strings and rkey).
 * Seeds: tests/fuzz/ctrl_seeds.py. Run: make fuzz && build-fuzz/fuzz_ctrl -max_total_time=60 \
 *     tests/fuzz/corpus/ctrl
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ctrl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static ctrl_limits limits_for(uint32_t sender) {
    ctrl_limits l;
    ctrl_limits_default(&l);
    if (sender & 1) l.vocab = 1000;
    if (sender & 2) {
        l.max_prompt = 8;
        l.max_stop = 2;
        l.max_top = 3;
        l.max_gen = 4;
        l.max_blocks = 4;
        l.max_rkey = l.max_req_id = l.max_name = l.max_host = l.max_msg = 16;
        l.max_kv_data = 64;
    }
    return l;
}

typedef struct ctx {
    const uint8_t *pl;
    size_t len;
    uint8_t *re;
    const ctrl_limits *lim;
} ctx;

/* Decode as type T with f##_decode; if accepted, the re-encoding must be the payload. */
#define TRY(c, T, f, type)                                                                         \
    do {                                                                                           \
        T m_;                                                                                      \
        size_t n_ = 0;                                                                             \
        if (f##_decode((c)->pl, (c)->len, (c)->lim, &m_) != 0) break;                              \
        CHECK((c)->len <= ctrl_max_payload((c)->lim, WIRE_TYPE_BIT(type)));                        \
        CHECK(f##_encode((c)->re, (c)->len, &m_, &n_) == 0 && n_ == (c)->len);                     \
        CHECK((c)->len == 0 || !memcmp((c)->re, (c)->pl, (c)->len));                               \
        CHECK((c)->len == 0 || f##_encode((c)->re, (c)->len - 1, &m_, &n_) == WIRE_E_LIMIT);       \
    } while (0)

static void try_all(const ctx *c) {
    TRY(c, ctrl_register, ctrl_register, WIRE_T_CTRL_REGISTER);
    TRY(c, ctrl_load, ctrl_load, WIRE_T_CTRL_LOAD);
    TRY(c, ctrl_drain, ctrl_drain, WIRE_T_CTRL_DRAIN);
    TRY(c, ctrl_submit, ctrl_submit, WIRE_T_CTRL_SUBMIT);
    TRY(c, ctrl_status, ctrl_submit_ack, WIRE_T_CTRL_SUBMIT_ACK);
    TRY(c, ctrl_tokens, ctrl_tokens, WIRE_T_CTRL_TOKENS);
    TRY(c, ctrl_cancel, ctrl_cancel, WIRE_T_CTRL_CANCEL);
    TRY(c, ctrl_reserve, ctrl_reserve, WIRE_T_CTRL_RESERVE);
    TRY(c, ctrl_reserve_ok, ctrl_reserve_ok, WIRE_T_CTRL_RESERVE_OK);
    TRY(c, ctrl_status, ctrl_reserve_fail, WIRE_T_CTRL_RESERVE_FAIL);
    TRY(c, ctrl_prefill, ctrl_prefill, WIRE_T_CTRL_PREFILL);
    TRY(c, ctrl_prefill_done, ctrl_prefill_done, WIRE_T_CTRL_PREFILL_DONE);
    TRY(c, ctrl_kv_ready, ctrl_kv_ready, WIRE_T_CTRL_KV_READY);
    TRY(c, ctrl_release, ctrl_release, WIRE_T_CTRL_RELEASE);
    TRY(c, ctrl_kv_data, ctrl_kv_data, WIRE_T_CTRL_KV_DATA);
}

/* Through the tagged union, with the header's type and exact length. */
static void try_msg(const ctx *c, const wire_hdr *h) {
    static ctrl_msg m; /* large: keep it off the stack */
    size_t n = 0;
    int rc = ctrl_decode(h, c->pl, c->len, c->lim, &m);
    CHECK(rc <= 0 && wire_strerror(rc) != NULL);
    CHECK(ctrl_type_name(h->type) != NULL);
    if (rc != 0) return;
    CHECK(m.type == h->type && ctrl_encode(c->re, c->len, &m, &n) == 0 && n == c->len);
    CHECK(c->len == 0 || !memcmp(c->re, c->pl, c->len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < WIRE_HDR_SIZE) return 0;
    wire_hdr h = {0};
    memcpy(&h.sender, data + 8, 4);
    ctrl_limits lim = limits_for(h.sender);
    wire_limits wl;
    ctrl_wire_limits(&lim, CTRL_TYPES_ALL, &wl);
    int rc = wire_hdr_decode(data, size, &wl, &h);
    CHECK(rc <= 0);
    size_t len = size - WIRE_HDR_SIZE;
    if (rc != 0) { /* still run every decoder on the bytes */
        h.type = data[5];
        h.payload_len = (uint32_t)len;
    }
    uint8_t *pl = malloc(len ? len : 1), *re = malloc(len ? len : 1);
    if (!pl || !re) {
        free(pl);
        free(re);
        return 0;
    }
    if (len) memcpy(pl, data + WIRE_HDR_SIZE, len);
    ctx c = {pl, len, re, &lim};
    try_all(&c);
    try_msg(&c, &h);
    free(pl);
    free(re);
    return 0;
}
