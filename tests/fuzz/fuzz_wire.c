/* libFuzzer target for proto/wire: the input is one frame (32-byte header + payload). The header
 * is decoded with fixed limits; the payload, copied to an exact-size aligned buffer so that ASan
 * sees any over-read, goes through every view and decoder whatever the type says. Nothing may
 * crash or read out of bounds; anything accepted must re-encode to the same bytes and views must
 * lie inside the payload.
 * Dims are picked by the header's sender field so the fuzzer reaches every layout:
 *   bits 0-1: f2a dtype (0 e4m3, 1 bf16, 2 f32, 3 e4m3), bit 2: fp8_group 32 (else per token),
 *   bit 3: per-layer MoE map {0,1,1,0}, bit 4: no experts (dense only).
 * Base dims: hidden 64, top_k 2, 8 experts, 4 layers. Seeds: tests/fuzz/wire_seeds.py.
 * Run: make fuzz && build-fuzz/fuzz_wire -max_total_time=60 -dict=tests/fuzz/wire.dict \
 *          tests/fuzz/corpus/wire
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static const uint8_t MOE_MAP[4] = {0, 1, 1, 0};

static wire_dims dims_for(uint32_t sender) {
    static const uint8_t f2a[4] = {WIRE_DT_E4M3, WIRE_DT_BF16, WIRE_DT_F32, WIRE_DT_E4M3};
    bool dense = sender & 16;
    return (wire_dims){.hidden = 64,
                       .top_k = dense ? 0 : 2,
                       .n_experts = dense ? 0 : 8,
                       .n_layers = 4,
                       .fp8_group = sender & 4 ? 32 : 0,
                       .a2f_dtype = WIRE_DT_E4M3,
                       .f2a_dtype = f2a[sender & 3],
                       .moe_layers = sender & 8 ? MOE_MAP : NULL};
}

/* p[0..n) inside the payload (ASan checks the last byte is readable too). */
static void inside(const uint8_t *pl, size_t len, const void *p, uint64_t n) {
    if (!p) {
        CHECK(n == 0 || len == 0);
        return;
    }
    const uint8_t *b = p;
    CHECK(b >= pl && n <= (uint64_t)(pl + len - b));
    if (n)
        (void)*(volatile const uint8_t *)(b + n - 1);
}

static void try_a2f(const wire_hdr *h, const uint8_t *pl, size_t len, const wire_dims *d,
                    const wire_limits *lim) {
    wire_a2f a;
    if (wire_a2f_view(h, pl, len, d, lim, &a) != 0)
        return;
    uint64_t t = a.n_tok;
    CHECK(len == wire_a2f_size(d, a.n_tok, a.moe));
    inside(pl, len, a.scales, t * a.groups * 4);
    inside(pl, len, a.q, t * a.hidden);
    if (a.moe) {
        inside(pl, len, a.weights, t * a.top_k * 4);
        inside(pl, len, a.ids, t * a.top_k * 2);
        for (uint64_t i = 0; i < t * a.top_k; i++)
            CHECK(a.ids[i] < d->n_experts);
    }
    if (t)
        CHECK(a.q + t * a.hidden == pl + len);
}

static void try_f2a(const wire_hdr *h, const uint8_t *pl, size_t len, const wire_dims *d,
                    const wire_limits *lim) {
    wire_f2a f;
    if (wire_f2a_view(h, pl, len, d, lim, &f) != 0)
        return;
    uint64_t t = f.n_tok;
    CHECK(f.dtype == d->f2a_dtype && len == wire_f2a_size_dt(d, f.n_tok, f.dtype));
    inside(pl, len, f.scales, t * f.groups * 4);
    inside(pl, len, f.q, f.q ? t * f.hidden : 0);
    inside(pl, len, f.bf16, f.bf16 ? t * f.hidden * 2 : 0);
    inside(pl, len, f.f32, f.f32 ? t * f.hidden * 4 : 0);
}

static void try_hello(const uint8_t *pl, size_t len) {
    wire_hello h, mine = {0};
    uint8_t re[WIRE_HELLO_MAX];
    size_t n;
    char why[128];
    if (wire_hello_decode(pl, len, &h) != 0)
        return;
    CHECK(wire_hello_encode(re, sizeof re, &h, &n) == 0 && n == len && !memcmp(re, pl, n));
    mine = h;
    mine.role = WIRE_ROLE_FFND;
    mine.hidden = 64;
    int r = wire_hello_check(&mine, &h, why, sizeof why);
    CHECK(r >= 0 && r <= WIRE_REFUSE_MAX && strlen(why) < sizeof why);
    wire_limits lim, s;
    wire_dims d;
    wire_limits_default(&lim);
    if (r == 0 && wire_dims_from_hello(&h, &lim, &d) == 0 &&
        wire_limits_session(&lim, &mine, &h, &d, &s) == 0)
        CHECK(s.max_payload <= lim.max_payload && s.max_tok <= h.max_tok);
}

static void try_msg(const uint8_t *pl, size_t len) {
    wire_msg m;
    uint8_t re[WIRE_MSG_MAX_LEN];
    size_t n;
    if (wire_error_decode(pl, len, &m) == 0) {
        CHECK(wire_error_encode(re, sizeof re, m.code, m.text, &n) == 0);
        CHECK(n == len && !memcmp(re, pl, n));
    }
    (void)wire_goodbye_decode(pl, len, &m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wire_limits lim;
    wire_limits_default(&lim);
    lim.max_tok = 64;
    lim.max_payload = 1u << 20;
    wire_hdr h = {0};
    int rc = wire_hdr_decode(data, size, &lim, &h);
    CHECK(rc <= 0 && wire_strerror(rc) != NULL);
    if (size < WIRE_HDR_SIZE)
        return 0;
    if (rc == 0) {
        uint8_t re[WIRE_HDR_SIZE];
        wire_hdr_encode(re, &h);
        CHECK(!memcmp(re, data, WIRE_HDR_SIZE));
    } else { /* still exercise the views with whatever the bytes say */
        memcpy(&h.flags, data + 6, 2);
        memcpy(&h.sender, data + 8, 4);
        memcpy(&h.layer, data + 14, 2);
        memcpy(&h.n_tok, data + 24, 4);
        h.payload_len = (uint32_t)(size - WIRE_HDR_SIZE);
    }
    size_t len = size - WIRE_HDR_SIZE;
    uint8_t *pl = len ? malloc(len) : NULL; /* exact size, 16-aligned */
    if (len && !pl)
        return 0;
    if (len)
        memcpy(pl, data + WIRE_HDR_SIZE, len);
    wire_dims d = dims_for(h.sender);
    h.type = WIRE_T_A2F;
    try_a2f(&h, pl, len, &d, &lim);
    h.type = WIRE_T_F2A;
    try_f2a(&h, pl, len, &d, &lim);
    try_hello(pl, len);
    try_msg(pl, len);
    free(pl);
    return 0;
}
