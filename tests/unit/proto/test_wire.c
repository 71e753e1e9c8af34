/* Unit tests for proto/wire: round trips of every frame type and the exact error code of every
 * rejection (docs/protocol.md). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proto/wire.h"

/* ---- fixtures ---- */

static const uint8_t MOE_LAYERS[4] = {0, 1, 1, 0};

static wire_dims dims_small(void) {
    return (wire_dims){.hidden = 64,
                       .top_k = 2,
                       .n_experts = 8,
                       .n_layers = 4,
                       .fp8_group = 32,
                       .a2f_dtype = WIRE_DT_E4M3,
                       .f2a_dtype = WIRE_DT_BF16};
}

static wire_dims dims_step3(uint32_t fp8_group) {
    return (wire_dims){.hidden = 7168,
                       .top_k = 3,
                       .n_experts = 48,
                       .n_layers = 61,
                       .fp8_group = fp8_group,
                       .a2f_dtype = WIRE_DT_E4M3,
                       .f2a_dtype = WIRE_DT_BF16};
}

static wire_limits lim_default(void) {
    wire_limits l;
    wire_limits_default(&l);
    return l;
}

/* One frame buffer: header then payload, 8-aligned. */
static _Alignas(64) uint8_t FRAME[1 << 16];
#define PAYLOAD (FRAME + WIRE_HDR_SIZE)

/* Fills a valid A2F payload for dims_small at PAYLOAD; returns its header. */
static wire_hdr make_a2f(const wire_dims *d, uint32_t n_tok, bool moe, uint16_t layer) {
    wire_a2f a;
    size_t n = wire_a2f_size(d, n_tok, moe);
    cr_assert_leq(n, sizeof FRAME - WIRE_HDR_SIZE);
    cr_assert_eq(wire_a2f_layout(d, n_tok, moe, PAYLOAD, &a), 0);
    for (uint32_t t = 0; t < n_tok; t++) {
        for (uint32_t g = 0; g < a.groups; g++)
            a.scales[t * a.groups + g] = 0.5f + (float)(t + g);
        for (uint32_t k = 0; k < a.top_k; k++) {
            a.ids[t * a.top_k + k] = (uint16_t)((t + 3 * k) % d->n_experts);
            a.weights[t * a.top_k + k] = 0.25f * (float)(k + 1);
        }
        for (uint32_t i = 0; i < d->hidden; i++)
            a.q[(size_t)t * d->hidden + i] = (uint8_t)(t * 7 + i);
    }
    return (wire_hdr){.type = WIRE_T_A2F,
                      .flags = moe ? WIRE_F_MOE : 0,
                      .sender = 9,
                      .mb = 1,
                      .layer = layer,
                      .step = 77,
                      .n_tok = n_tok,
                      .payload_len = (uint32_t)n};
}

static int a2f_view(const wire_hdr *h, const wire_dims *d, wire_a2f *out) {
    wire_limits l = lim_default();
    return wire_a2f_view(h, PAYLOAD, h->payload_len, d, &l, out);
}

static void set_f32(uint8_t *p, float v) {
    memcpy(p, &v, 4);
}

/* ---- header ---- */

Test(wire_hdr, round_trip_every_type) {
    wire_limits l = lim_default();
    const int types[] = {WIRE_T_HELLO,     WIRE_T_HELLO_ACK, WIRE_T_A2F,    WIRE_T_F2A,
                         WIRE_T_HEARTBEAT, WIRE_T_ERROR,     WIRE_T_GOODBYE};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int t = types[i];
        bool data = t == WIRE_T_A2F || t == WIRE_T_F2A;
        wire_hdr h = {.type = (uint8_t)t,
                      .flags = t == WIRE_T_A2F   ? WIRE_F_MOE
                               : t == WIRE_T_F2A ? WIRE_F_FP8
                                                 : 0,
                      .sender = 0xdeadbeef,
                      .mb = 2,
                      .layer = data ? 60 : WIRE_LAYER_NONE,
                      .step = 0x0102030405060708ull,
                      .n_tok = data ? 128 : 0,
                      .payload_len = t == WIRE_T_HEARTBEAT   ? 0
                                     : t <= WIRE_T_HELLO_ACK ? WIRE_HELLO_MIN
                                                             : WIRE_MSG_MIN_LEN};
        uint8_t b[WIRE_HDR_SIZE];
        wire_hdr_encode(b, &h);
        wire_hdr g;
        memset(&g, 0xaa, sizeof g);
        cr_assert_eq(wire_hdr_decode(b, sizeof b, &l, &g), 0, "type %s", wire_type_name(t));
        cr_assert_eq(g.version, WIRE_VERSION);
        cr_assert_eq(g.type, h.type);
        cr_assert_eq(g.flags, h.flags);
        cr_assert_eq(g.sender, h.sender);
        cr_assert_eq(g.mb, h.mb);
        cr_assert_eq(g.layer, h.layer);
        cr_assert_eq(g.step, h.step);
        cr_assert_eq(g.n_tok, h.n_tok);
        cr_assert_eq(g.payload_len, h.payload_len);
    }
}

Test(wire_hdr, byte_layout) {
    wire_hdr h = {.type = WIRE_T_A2F,
                  .flags = 1,
                  .sender = 0x11223344,
                  .mb = 0x5566,
                  .layer = 0x0007,
                  .step = 0x8899aabbccddeeffull,
                  .n_tok = 3,
                  .payload_len = 0x10};
    uint8_t b[WIRE_HDR_SIZE];
    wire_hdr_encode(b, &h);
    const uint8_t want[WIRE_HDR_SIZE] = {'A',  'F',  'D',  '1',  1,    3,    1,    0,
                                         0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x07, 0x00,
                                         0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
                                         3,    0,    0,    0,    0x10, 0,    0,    0};
    for (int i = 0; i < WIRE_HDR_SIZE; i++)
        cr_assert_eq(b[i], want[i], "byte %d: %#x != %#x", i, b[i], want[i]);
}

/* Encodes h, applies a byte patch, decodes with l: the return code. */
static int hdr_rc(wire_hdr h, const wire_limits *l, int off, uint8_t val, size_t len) {
    uint8_t b[WIRE_HDR_SIZE];
    wire_hdr_encode(b, &h);
    if (off >= 0) b[off] = val;
    wire_hdr g;
    return wire_hdr_decode(b, len, l, &g);
}

static const wire_hdr HB = {.type = WIRE_T_HEARTBEAT, .layer = WIRE_LAYER_NONE};
static const wire_hdr A2F_HDR = {.type = WIRE_T_A2F, .layer = 3, .n_tok = 4, .payload_len = 100};

Test(wire_hdr, rejects) {
    wire_limits l = lim_default();
    cr_assert_eq(hdr_rc(HB, &l, -1, 0, WIRE_HDR_SIZE), 0);
    cr_assert_eq(hdr_rc(HB, &l, -1, 0, WIRE_HDR_SIZE - 1), WIRE_E_TRUNC);
    cr_assert_eq(hdr_rc(HB, &l, -1, 0, 0), WIRE_E_TRUNC);
    cr_assert_eq(hdr_rc(HB, &l, 0, 'X', WIRE_HDR_SIZE), WIRE_E_MAGIC);
    cr_assert_eq(hdr_rc(HB, &l, 4, 2, WIRE_HDR_SIZE), WIRE_E_VERSION);
    cr_assert_eq(hdr_rc(HB, &l, 4, 0, WIRE_HDR_SIZE), WIRE_E_VERSION);
    cr_assert_eq(hdr_rc(HB, &l, 5, 0, WIRE_HDR_SIZE), WIRE_E_TYPE);
    cr_assert_eq(hdr_rc(HB, &l, 5, 8, WIRE_HDR_SIZE), WIRE_E_TYPE);
    cr_assert_eq(hdr_rc(HB, &l, 5, WIRE_T_CTRL_FIRST, WIRE_HDR_SIZE), WIRE_E_TYPE);
    cr_assert_eq(hdr_rc(HB, &l, 5, 200, WIRE_HDR_SIZE), WIRE_E_TYPE);
    cr_assert_eq(hdr_rc(HB, &l, 6, 1, WIRE_HDR_SIZE), WIRE_E_FLAGS);
    cr_assert_eq(hdr_rc(HB, &l, 7, 0x80, WIRE_HDR_SIZE), WIRE_E_FLAGS);
    cr_assert_eq(hdr_rc(HB, &l, 28, 1, WIRE_HDR_SIZE), WIRE_E_LEN);   /* heartbeat payload */
    cr_assert_eq(hdr_rc(HB, &l, 24, 1, WIRE_HDR_SIZE), WIRE_E_VALUE); /* tokens on heartbeat */
    cr_assert_eq(hdr_rc(HB, &l, 14, 0, WIRE_HDR_SIZE), WIRE_E_LAYER); /* layer on heartbeat */

    cr_assert_eq(hdr_rc(A2F_HDR, &l, -1, 0, WIRE_HDR_SIZE), 0);
    cr_assert_eq(hdr_rc(A2F_HDR, &l, 6, WIRE_F_FP8, WIRE_HDR_SIZE), WIRE_E_FLAGS);
    wire_hdr h = A2F_HDR;
    h.layer = WIRE_LAYER_NONE;
    cr_assert_eq(hdr_rc(h, &l, -1, 0, WIRE_HDR_SIZE), WIRE_E_LAYER);
    h.layer = (uint16_t)l.max_layers;
    cr_assert_eq(hdr_rc(h, &l, -1, 0, WIRE_HDR_SIZE), WIRE_E_LAYER);
    h = A2F_HDR;
    h.n_tok = l.max_tok + 1;
    cr_assert_eq(hdr_rc(h, &l, -1, 0, WIRE_HDR_SIZE), WIRE_E_LIMIT);
    h = A2F_HDR;
    h.payload_len = l.max_payload + 1;
    cr_assert_eq(hdr_rc(h, &l, -1, 0, WIRE_HDR_SIZE), WIRE_E_LIMIT);
    h.payload_len = UINT32_MAX;
    cr_assert_eq(hdr_rc(h, &l, -1, 0, WIRE_HDR_SIZE), WIRE_E_LIMIT);

    wire_hdr hello = {
        .type = WIRE_T_HELLO, .layer = WIRE_LAYER_NONE, .payload_len = WIRE_HELLO_MIN - 1};
    cr_assert_eq(hdr_rc(hello, &l, -1, 0, WIRE_HDR_SIZE), WIRE_E_LEN);
    hello.payload_len = WIRE_HELLO_MAX + 1;
    cr_assert_eq(hdr_rc(hello, &l, -1, 0, WIRE_HDR_SIZE), WIRE_E_LEN);
    wire_hdr err = {
        .type = WIRE_T_ERROR, .layer = WIRE_LAYER_NONE, .payload_len = WIRE_MSG_MAX_LEN + 1};
    cr_assert_eq(hdr_rc(err, &l, -1, 0, WIRE_HDR_SIZE), WIRE_E_LEN);
}

Test(wire_hdr, handshake_limits_refuse_data_before_ack) {
    wire_limits l;
    wire_limits_handshake(&l);
    cr_assert_eq(hdr_rc(A2F_HDR, &l, -1, 0, WIRE_HDR_SIZE), WIRE_E_TYPE);
    cr_assert_eq(hdr_rc(HB, &l, -1, 0, WIRE_HDR_SIZE), WIRE_E_TYPE);
    wire_hdr hello = {.type = WIRE_T_HELLO, .layer = WIRE_LAYER_NONE, .payload_len = 100};
    cr_assert_eq(hdr_rc(hello, &l, -1, 0, WIRE_HDR_SIZE), 0);
    hello.type = WIRE_T_GOODBYE;
    cr_assert_eq(hdr_rc(hello, &l, -1, 0, WIRE_HDR_SIZE), 0);
    hello.payload_len = WIRE_MSG_MAX_LEN + 1; /* over the handshake max_payload first */
    cr_assert_eq(hdr_rc(hello, &l, -1, 0, WIRE_HDR_SIZE), WIRE_E_LIMIT);
}

/* ---- A2F ---- */

Test(wire_a2f, round_trip_moe_and_dense) {
    wire_dims d = dims_small();
    for (int moe = 0; moe <= 1; moe++) {
        wire_hdr h = make_a2f(&d, 5, moe, 2);
        wire_hdr_encode(FRAME, &h);
        wire_limits l = lim_default();
        wire_hdr g;
        cr_assert_eq(wire_hdr_decode(FRAME, WIRE_HDR_SIZE + h.payload_len, &l, &g), 0);
        wire_a2f a;
        cr_assert_eq(wire_a2f_view(&g, PAYLOAD, g.payload_len, &d, &l, &a), 0, "moe %d", moe);
        cr_assert_eq(a.n_tok, 5);
        cr_assert_eq(a.groups, 2);
        cr_assert_eq(a.moe, moe);
        cr_assert_eq(a.top_k, moe ? 2u : 0u);
        cr_assert_eq((uint8_t *)a.scales, PAYLOAD);
        cr_assert_float_eq(a.scales[4 * 2 + 1], 5.5f, 0);
        cr_assert_eq(a.q[3 * 64 + 10], (uint8_t)(3 * 7 + 10));
        if (moe) {
            cr_assert_eq(a.ids[4 * 2 + 1], (4 + 3) % 8);
            cr_assert_float_eq(a.weights[4 * 2 + 1], 0.5f, 0);
            cr_assert_eq((size_t)(a.q - PAYLOAD), 5u * 2 * 4 + 5 * 2 * 4 + 20);
        } else {
            cr_assert_null(a.ids);
            cr_assert_null(a.weights);
        }
    }
}

Test(wire_a2f, sizes) {
    wire_dims d = dims_small();
    /* 3 tokens: scales 3*2*4 = 24, weights 24, ids 12 (already x4), q 192 */
    cr_assert_eq(wire_a2f_size(&d, 3, true), 24u + 24 + 12 + 192);
    /* 1 token: ids 4 bytes, no pad; top_k 3: ids 6 bytes padded to 8 */
    cr_assert_eq(wire_a2f_size(&d, 1, true), 8u + 8 + 4 + 64);
    d.top_k = 3;
    cr_assert_eq(wire_a2f_size(&d, 1, true), 8u + 12 + 8 + 64);
    cr_assert_eq(wire_a2f_size(&d, 1, false), 8u + 64);
    cr_assert_eq(wire_a2f_size(&d, 0, true), 0u);
    d.top_k = 0;
    cr_assert_eq(wire_a2f_size(&d, 1, true), SIZE_MAX);
    d = dims_small();
    d.fp8_group = 24; /* does not divide 64 */
    cr_assert_eq(wire_a2f_size(&d, 1, false), SIZE_MAX);
}

Test(wire_a2f, step3_worked_example) {
    wire_dims d = dims_step3(0);
    cr_assert_eq(wire_a2f_size(&d, 128, true), 512u + 1536 + 768 + 917504);
    cr_assert_eq(wire_a2f_size(&d, 128, false), 512u + 917504);
    cr_assert_eq(wire_f2a_size(&d, 128, false), 1835008u);
    cr_assert_eq(wire_f2a_size(&d, 128, true), 512u + 917504);
    cr_assert_eq(wire_f2a_size_dt(&d, 128, WIRE_DT_F32), 3670016u);
    d = dims_step3(128);
    cr_assert_eq(wire_a2f_size(&d, 128, true), 28672u + 1536 + 768 + 917504);
}

Test(wire_a2f, rejects_length_and_alignment) {
    wire_dims d = dims_small();
    wire_limits l = lim_default();
    wire_hdr h = make_a2f(&d, 3, true, 1);
    wire_a2f a;
    cr_assert_eq(wire_a2f_view(&h, PAYLOAD, h.payload_len - 1, &d, &l, &a), WIRE_E_TRUNC);
    cr_assert_eq(wire_a2f_view(&h, PAYLOAD, 0, &d, &l, &a), WIRE_E_TRUNC);
    cr_assert_eq(wire_a2f_view(&h, PAYLOAD, h.payload_len + 1, &d, &l, &a), WIRE_E_LEN);
    cr_assert_eq(wire_a2f_view(&h, PAYLOAD + 4, h.payload_len, &d, &l, &a), WIRE_E_ALIGN);
    wire_hdr g = h;
    g.n_tok = 2; /* header claims fewer tokens than the payload holds */
    cr_assert_eq(wire_a2f_view(&g, PAYLOAD, g.payload_len, &d, &l, &a), WIRE_E_LEN);
    g = h;
    g.flags = 0; /* payload has MoE sections, header says dense */
    cr_assert_eq(wire_a2f_view(&g, PAYLOAD, g.payload_len, &d, &l, &a), WIRE_E_LEN);
    g = h;
    g.type = WIRE_T_F2A;
    cr_assert_eq(wire_a2f_view(&g, PAYLOAD, g.payload_len, &d, &l, &a), WIRE_E_TYPE);
}

Test(wire_a2f, rejects_header_fields_against_dims) {
    wire_dims d = dims_small();
    wire_limits l = lim_default();
    wire_hdr h = make_a2f(&d, 3, true, 1);
    wire_a2f a;
    wire_hdr g = h;
    g.layer = 4; /* n_layers 4 */
    cr_assert_eq(wire_a2f_view(&g, PAYLOAD, g.payload_len, &d, &l, &a), WIRE_E_LAYER);
    g = h;
    g.flags |= 0x8;
    cr_assert_eq(wire_a2f_view(&g, PAYLOAD, g.payload_len, &d, &l, &a), WIRE_E_FLAGS);
    l.max_tok = 2;
    cr_assert_eq(wire_a2f_view(&h, PAYLOAD, h.payload_len, &d, &l, &a), WIRE_E_LIMIT);
    l = lim_default();
    d.moe_layers = MOE_LAYERS;
    cr_assert_eq(wire_a2f_view(&h, PAYLOAD, h.payload_len, &d, &l, &a), 0); /* layer 1: MoE */
    g = h;
    g.layer = 0; /* dense layer, MoE flag set */
    cr_assert_eq(wire_a2f_view(&g, PAYLOAD, g.payload_len, &d, &l, &a), WIRE_E_FLAGS);
    wire_hdr dense = make_a2f(&d, 3, false, 2); /* MoE layer without the flag */
    cr_assert_eq(a2f_view(&dense, &d, &a), WIRE_E_FLAGS);
    dense.layer = 3;
    cr_assert_eq(a2f_view(&dense, &d, &a), 0);
    wire_dims d0 = dims_small();
    d0.top_k = 0; /* no MoE agreed: the flag is refused */
    h = make_a2f(&d, 3, true, 1);
    cr_assert_eq(a2f_view(&h, &d0, &a), WIRE_E_FLAGS);
    wire_dims bad = dims_small();
    bad.a2f_dtype = WIRE_DT_BF16;
    cr_assert_eq(a2f_view(&h, &bad, &a), WIRE_E_DTYPE);
    bad = dims_small();
    bad.hidden = l.max_hidden + 32;
    cr_assert_eq(a2f_view(&h, &bad, &a), WIRE_E_LIMIT);
}

Test(wire_a2f, rejects_ids) {
    wire_dims d = dims_small();
    wire_a2f a;
    wire_hdr h = make_a2f(&d, 3, true, 1);
    size_t ids = 3 * 2 * 4 + 3 * 2 * 4;
    uint16_t save;
    memcpy(&save, PAYLOAD + ids + 10, 2);
    uint16_t v = 8; /* == n_experts */
    memcpy(PAYLOAD + ids + 10, &v, 2);
    cr_assert_eq(a2f_view(&h, &d, &a), WIRE_E_ID);
    v = 0xffff;
    memcpy(PAYLOAD + ids + 10, &v, 2);
    cr_assert_eq(a2f_view(&h, &d, &a), WIRE_E_ID);
    memcpy(PAYLOAD + ids + 10, PAYLOAD + ids + 8, 2); /* token 2: both ids equal */
    cr_assert_eq(a2f_view(&h, &d, &a), WIRE_E_ID);
    memcpy(PAYLOAD + ids + 10, &save, 2);
    cr_assert_eq(a2f_view(&h, &d, &a), 0);
}

Test(wire_a2f, rejects_scales_weights_padding) {
    wire_dims d = dims_small();
    d.top_k = 3; /* ids 3*3*2 = 18 bytes, 2 bytes of padding */
    wire_a2f a;
    wire_hdr h = make_a2f(&d, 3, true, 1);
    const float bad_scales[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, -1.0f};
    for (size_t i = 0; i < sizeof bad_scales / sizeof bad_scales[0]; i++) {
        set_f32(PAYLOAD + 5 * 4, bad_scales[i]);
        cr_assert_eq(a2f_view(&h, &d, &a), WIRE_E_VALUE, "scale %g", (double)bad_scales[i]);
    }
    set_f32(PAYLOAD + 5 * 4, 1e-40f); /* subnormal but positive: accepted */
    cr_assert_eq(a2f_view(&h, &d, &a), 0);
    size_t w = 3 * 2 * 4;
    set_f32(PAYLOAD + w + 8 * 4, NAN);
    cr_assert_eq(a2f_view(&h, &d, &a), WIRE_E_VALUE);
    set_f32(PAYLOAD + w + 8 * 4, INFINITY);
    cr_assert_eq(a2f_view(&h, &d, &a), WIRE_E_VALUE);
    set_f32(PAYLOAD + w + 8 * 4, -0.5f); /* finite weights of any sign pass */
    cr_assert_eq(a2f_view(&h, &d, &a), 0);
    size_t pad = w + 9 * 4 + 18;
    PAYLOAD[pad + 1] = 1;
    cr_assert_eq(a2f_view(&h, &d, &a), WIRE_E_VALUE);
    PAYLOAD[pad + 1] = 0;
    cr_assert_eq(a2f_view(&h, &d, &a), 0);
}

Test(wire_a2f, empty_payload) {
    wire_dims d = dims_small();
    wire_limits l = lim_default();
    wire_hdr h = {.type = WIRE_T_A2F, .flags = WIRE_F_MOE, .layer = 1};
    wire_a2f a;
    cr_assert_eq(wire_a2f_view(&h, NULL, 0, &d, &l, &a), 0);
    cr_assert_eq(a.n_tok, 0);
    h.payload_len = 4;
    cr_assert_eq(wire_a2f_view(&h, PAYLOAD, 4, &d, &l, &a), WIRE_E_LEN);
}

Test(wire_a2f, size_arithmetic_does_not_wrap) {
    /* n_tok * hidden = 2^32 exactly: a 32-bit product would be 0. */
    wire_dims d = {
        .hidden = 65536, .n_layers = 1, .a2f_dtype = WIRE_DT_E4M3, .f2a_dtype = WIRE_DT_BF16};
    cr_assert_eq(wire_a2f_size(&d, 65536, false), (size_t)65536 * 4 + ((size_t)1 << 32));
    cr_assert_eq(wire_f2a_size(&d, 65536, false), (size_t)1 << 33);
    wire_a2f a;
    cr_assert_eq(wire_a2f_layout(&d, 65536, false, PAYLOAD, &a), WIRE_E_LIMIT);
    /* A header whose payload_len equals the size modulo 2^32 is still refused. */
    wire_limits l = lim_default();
    l.max_tok = 65536;
    wire_hdr h = {.type = WIRE_T_A2F, .layer = 0, .n_tok = 65536, .payload_len = 65536 * 4};
    static _Alignas(8) uint8_t big[65536 * 4];
    for (size_t i = 0; i < sizeof big; i += 4)
        set_f32(big + i, 1.0f);
    cr_assert_eq(wire_a2f_view(&h, big, sizeof big, &d, &l, &a), WIRE_E_LEN);
    /* Sizes that overflow 64 bits saturate. */
    d.hidden = UINT32_MAX;
    cr_assert_eq(wire_a2f_size(&d, UINT32_MAX, false), SIZE_MAX);
    d.fp8_group = 1;
    cr_assert_eq(wire_a2f_size(&d, UINT32_MAX, false), SIZE_MAX);
    cr_assert_eq(wire_f2a_size_dt(&d, UINT32_MAX, WIRE_DT_F32), SIZE_MAX);
    cr_assert_eq(wire_f2a_size(&d, UINT32_MAX, true), SIZE_MAX);
}

Test(wire_a2f, layout_rejects) {
    wire_dims d = dims_small();
    wire_a2f a;
    cr_assert_eq(wire_a2f_layout(&d, 1, true, PAYLOAD + 2, &a), WIRE_E_ALIGN);
    d.top_k = 0;
    cr_assert_eq(wire_a2f_layout(&d, 1, true, PAYLOAD, &a), WIRE_E_DIMS);
    d = dims_small();
    d.top_k = 9; /* > n_experts */
    cr_assert_eq(wire_a2f_layout(&d, 1, true, PAYLOAD, &a), WIRE_E_DIMS);
    d = dims_small();
    d.n_layers = 0;
    cr_assert_eq(wire_a2f_layout(&d, 1, false, PAYLOAD, &a), WIRE_E_DIMS);
}

/* ---- F2A ---- */

static wire_hdr make_f2a(const wire_dims *d, uint32_t n_tok, uint8_t dtype, wire_f2a *f) {
    size_t n = wire_f2a_size_dt(d, n_tok, dtype);
    cr_assert_eq(wire_f2a_layout(d, n_tok, dtype, PAYLOAD, f), 0);
    memset(PAYLOAD, 0x3c, n);
    if (f->scales)
        for (uint32_t i = 0; i < n_tok * f->groups; i++)
            f->scales[i] = 2.0f;
    return (wire_hdr){.type = WIRE_T_F2A,
                      .flags = wire_f2a_flags(dtype),
                      .layer = 3,
                      .n_tok = n_tok,
                      .payload_len = (uint32_t)n};
}

Test(wire_f2a, round_trip_each_dtype) {
    const uint8_t dts[] = {WIRE_DT_BF16, WIRE_DT_E4M3, WIRE_DT_F32};
    const size_t want[] = {2 * 4 * 64, 4 * 2 * 4 + 4 * 64, 4 * 4 * 64};
    for (int i = 0; i < 3; i++) {
        wire_dims d = dims_small();
        d.f2a_dtype = dts[i];
        wire_f2a w, f;
        wire_hdr h = make_f2a(&d, 4, dts[i], &w);
        cr_assert_eq(h.payload_len, want[i], "%s: %u != %zu", wire_dtype_name(dts[i]),
                     h.payload_len, want[i]);
        wire_hdr_encode(FRAME, &h);
        wire_limits l = lim_default();
        wire_hdr g;
        cr_assert_eq(wire_hdr_decode(FRAME, sizeof FRAME, &l, &g), 0);
        cr_assert_eq(wire_f2a_view(&g, PAYLOAD, g.payload_len, &d, &l, &f), 0);
        cr_assert_eq(f.dtype, dts[i]);
        cr_assert_eq(f.n_tok, 4);
        cr_assert_eq(f.bf16 != NULL, dts[i] == WIRE_DT_BF16);
        cr_assert_eq(f.f32 != NULL, dts[i] == WIRE_DT_F32);
        cr_assert_eq(f.q != NULL, dts[i] == WIRE_DT_E4M3);
        cr_assert_eq(f.groups, dts[i] == WIRE_DT_E4M3 ? 2u : 0u);
        if (f.q) cr_assert_eq((size_t)(f.q - PAYLOAD), 32u);
        if (f.scales) cr_assert_float_eq(f.scales[7], 2.0f, 0);
    }
}

Test(wire_f2a, rejects) {
    wire_dims d = dims_small();
    d.f2a_dtype = WIRE_DT_E4M3;
    wire_limits l = lim_default();
    wire_f2a w, f;
    wire_hdr h = make_f2a(&d, 4, WIRE_DT_E4M3, &w);
    cr_assert_eq(wire_f2a_view(&h, PAYLOAD, h.payload_len, &d, &l, &f), 0);
    wire_hdr g = h;
    g.flags = WIRE_F_FP8 | WIRE_F_F32;
    cr_assert_eq(wire_f2a_view(&g, PAYLOAD, g.payload_len, &d, &l, &f), WIRE_E_FLAGS);
    g.flags = WIRE_F_MOE | WIRE_F_FP8; /* an A2F flag */
    cr_assert_eq(wire_f2a_view(&g, PAYLOAD, g.payload_len, &d, &l, &f), WIRE_E_FLAGS);
    g.flags = 0; /* BF16 frame, E4M3 agreed */
    cr_assert_eq(wire_f2a_view(&g, PAYLOAD, g.payload_len, &d, &l, &f), WIRE_E_DTYPE);
    g = h;
    g.layer = 9;
    cr_assert_eq(wire_f2a_view(&g, PAYLOAD, g.payload_len, &d, &l, &f), WIRE_E_LAYER);
    cr_assert_eq(wire_f2a_view(&h, PAYLOAD, h.payload_len - 1, &d, &l, &f), WIRE_E_TRUNC);
    cr_assert_eq(wire_f2a_view(&h, PAYLOAD + 1, h.payload_len, &d, &l, &f), WIRE_E_ALIGN);
    g = h;
    g.n_tok = 5;
    cr_assert_eq(wire_f2a_view(&g, PAYLOAD, g.payload_len, &d, &l, &f), WIRE_E_LEN);
    set_f32(PAYLOAD + 12, 0.0f);
    cr_assert_eq(wire_f2a_view(&h, PAYLOAD, h.payload_len, &d, &l, &f), WIRE_E_VALUE);
    set_f32(PAYLOAD + 12, NAN);
    cr_assert_eq(wire_f2a_view(&h, PAYLOAD, h.payload_len, &d, &l, &f), WIRE_E_VALUE);
    wire_f2a x;
    cr_assert_eq(wire_f2a_layout(&d, 1, 0, PAYLOAD, &x), WIRE_E_DTYPE);
    cr_assert_eq(wire_f2a_layout(&d, 1, 4, PAYLOAD, &x), WIRE_E_DTYPE);
    cr_assert_eq(wire_f2a_size_dt(&d, 1, 9), SIZE_MAX);
}

/* ---- HELLO ---- */

static wire_hello hello_of(int role, uint32_t id) {
    wire_hello h = {.proto_min = 1,
                    .proto_max = 1,
                    .role = (uint8_t)role,
                    .instance_id = id,
                    .model_fingerprint = 0x0123456789abcdefull,
                    .ep_rank = 1,
                    .ep_size = 2,
                    .tp_rank = 0,
                    .tp_size = 1,
                    .n_layers = 61,
                    .n_experts = 48,
                    .hidden = 7168,
                    .top_k = 3,
                    .fp8_group = 0,
                    .a2f_dtype = WIRE_DT_E4M3,
                    .f2a_dtype = WIRE_DT_BF16,
                    .max_tok = 128};
    snprintf(h.name, sizeof h.name, "host-%u", (unsigned)id);
    return h;
}

static void hello_assert_eq(const wire_hello *g, const wire_hello *h) {
    cr_assert_eq(g->proto_min, h->proto_min);
    cr_assert_eq(g->proto_max, h->proto_max);
    cr_assert_eq(g->role, h->role);
    cr_assert_eq(g->status, h->status);
    cr_assert_eq(g->instance_id, h->instance_id);
    cr_assert_eq(g->model_fingerprint, h->model_fingerprint);
    cr_assert_eq(g->ep_rank, h->ep_rank);
    cr_assert_eq(g->ep_size, h->ep_size);
    cr_assert_eq(g->tp_rank, h->tp_rank);
    cr_assert_eq(g->tp_size, h->tp_size);
    cr_assert_eq(g->n_layers, h->n_layers);
    cr_assert_eq(g->n_experts, h->n_experts);
    cr_assert_eq(g->hidden, h->hidden);
    cr_assert_eq(g->top_k, h->top_k);
    cr_assert_eq(g->fp8_group, h->fp8_group);
    cr_assert_eq(g->a2f_dtype, h->a2f_dtype);
    cr_assert_eq(g->f2a_dtype, h->f2a_dtype);
    cr_assert_eq(g->max_tok, h->max_tok);
}

Test(wire_hello, round_trip) {
    wire_hello h = hello_of(WIRE_ROLE_FFND, 7), g;
    h.status = WIRE_REFUSE_DIMS;
    strcpy(h.reason, "hidden 7168 != 4096");
    uint8_t b[WIRE_HELLO_MAX];
    size_t n;
    cr_assert_eq(wire_hello_encode(b, sizeof b, &h, &n), 0);
    cr_assert_eq(n, (size_t)WIRE_HELLO_MIN + strlen("host-7") + strlen(h.reason));
    cr_assert_eq(b[44], WIRE_DT_E4M3);
    cr_assert_eq(b[12], 0xef); /* fingerprint little-endian at offset 12 */
    memset(&g, 0x55, sizeof g);
    cr_assert_eq(wire_hello_decode(b, n, &g), 0);
    hello_assert_eq(&g, &h);
    cr_assert_str_eq(g.name, "host-7");
    cr_assert_str_eq(g.reason, h.reason);
    /* Longest strings fit WIRE_HELLO_MAX. */
    memset(h.name, 'n', WIRE_NAME_MAX);
    h.name[WIRE_NAME_MAX] = '\0';
    memset(h.reason, 'r', WIRE_REASON_MAX);
    h.reason[WIRE_REASON_MAX] = '\0';
    cr_assert_eq(wire_hello_encode(b, sizeof b, &h, &n), 0);
    cr_assert_eq(n, (size_t)WIRE_HELLO_MAX);
    cr_assert_eq(wire_hello_decode(b, n, &g), 0);
    cr_assert_eq(strlen(g.name), WIRE_NAME_MAX);
    cr_assert_eq(wire_hello_encode(b, n - 1, &h, &n), WIRE_E_LIMIT);
}

static size_t hello_bytes(uint8_t *b) {
    wire_hello h = hello_of(WIRE_ROLE_ATTND, 3);
    size_t n;
    cr_assert_eq(wire_hello_encode(b, WIRE_HELLO_MAX, &h, &n), 0);
    return n;
}

Test(wire_hello, rejects_truncation_and_trailing) {
    uint8_t b[WIRE_HELLO_MAX + 8];
    size_t n = hello_bytes(b);
    wire_hello g;
    for (size_t k = 0; k < n; k++)
        cr_assert_eq(wire_hello_decode(b, k, &g), WIRE_E_TRUNC, "length %zu of %zu", k, n);
    b[n] = 0;
    cr_assert_eq(wire_hello_decode(b, n + 1, &g), WIRE_E_LEN);
    cr_assert_eq(wire_hello_decode(b, n, &g), 0);
}

/* Decodes the encoded attnd hello after b[off] = v (or a u16 at off when wide). */
static int hello_patch(size_t off, unsigned v, bool wide) {
    uint8_t b[WIRE_HELLO_MAX + 512];
    size_t n = hello_bytes(b);
    b[off] = (uint8_t)v;
    if (wide) b[off + 1] = (uint8_t)(v >> 8);
    wire_hello g;
    return wire_hello_decode(b, n, &g);
}

Test(wire_hello, rejects_fields) {
    cr_assert_eq(hello_patch(0, 0, true), WIRE_E_VALUE);  /* proto_min 0 */
    cr_assert_eq(hello_patch(0, 2, true), WIRE_E_VALUE);  /* min > max */
    cr_assert_eq(hello_patch(4, 0, false), WIRE_E_VALUE); /* role */
    cr_assert_eq(hello_patch(4, 5, false), WIRE_E_VALUE);
    cr_assert_eq(hello_patch(5, WIRE_REFUSE_MAX + 1, false), WIRE_E_VALUE);
    cr_assert_eq(hello_patch(6, 1, false), WIRE_E_VALUE);  /* reserved */
    cr_assert_eq(hello_patch(47, 1, false), WIRE_E_VALUE); /* reserved */
    cr_assert_eq(hello_patch(20, 2, true), WIRE_E_VALUE);  /* ep_rank == ep_size */
    cr_assert_eq(hello_patch(26, 0, true), WIRE_E_VALUE);  /* tp_size 0 */
    cr_assert_eq(hello_patch(44, WIRE_DT_BF16, false), WIRE_E_DTYPE);
    cr_assert_eq(hello_patch(45, 0, false), WIRE_E_DTYPE);
    cr_assert_eq(hello_patch(45, 4, false), WIRE_E_DTYPE);
    cr_assert_eq(hello_patch(45, WIRE_DT_F32, false), 0);
}

Test(wire_hello, rejects_strings) {
    cr_assert_eq(hello_patch(WIRE_HELLO_FIXED, WIRE_NAME_MAX + 1, true), WIRE_E_LIMIT);
    cr_assert_eq(hello_patch(WIRE_HELLO_FIXED, 0xffff, true), WIRE_E_LIMIT);
    cr_assert_eq(hello_patch(WIRE_HELLO_FIXED + 2, '\n', false), WIRE_E_STRING);
    cr_assert_eq(hello_patch(WIRE_HELLO_FIXED + 3, 0x80, false), WIRE_E_STRING);
    cr_assert_eq(hello_patch(WIRE_HELLO_FIXED + 2, 0, false), WIRE_E_STRING);
    /* reason_len sits after "host-3" (6 bytes) */
    cr_assert_eq(hello_patch(WIRE_HELLO_FIXED + 8, WIRE_REASON_MAX + 1, true), WIRE_E_LIMIT);
    cr_assert_eq(hello_patch(WIRE_HELLO_FIXED + 8, 1, true), WIRE_E_TRUNC);

    wire_hello h = hello_of(WIRE_ROLE_ATTND, 3);
    uint8_t b[WIRE_HELLO_MAX + 64];
    size_t n;
    wire_hello big = h;
    memset(big.name, 'x', sizeof big.name); /* 65 bytes, no NUL within the limit */
    cr_assert_eq(wire_hello_encode(b, sizeof b, &big, &n), WIRE_E_LIMIT);
    h = hello_of(WIRE_ROLE_ATTND, 3);
    strcpy(h.name, "tab\there");
    cr_assert_eq(wire_hello_encode(b, sizeof b, &h, &n), WIRE_E_STRING);
    h = hello_of(WIRE_ROLE_ATTND, 3);
    h.f2a_dtype = 7;
    cr_assert_eq(wire_hello_encode(b, sizeof b, &h, &n), WIRE_E_DTYPE);
}

Test(wire_hello, check_agrees_and_explains) {
    wire_hello f = hello_of(WIRE_ROLE_FFND, 7), a = hello_of(WIRE_ROLE_ATTND, 3);
    char why[256];
    cr_assert_eq(wire_hello_check(&f, &a, why, sizeof why), 0, "%s", why);
    cr_assert_str_eq(why, "");
    cr_assert_eq(wire_hello_check(&a, &f, why, sizeof why), 0, "%s", why);

    wire_hello t = a;
    t.model_fingerprint = 0xfeed;
    cr_assert_eq(wire_hello_check(&f, &t, why, sizeof why), WIRE_REFUSE_FINGERPRINT);
    cr_assert_str_eq(why, "model fingerprint 0x0123456789abcdef != 0x000000000000feed "
                          "(ffnd#7 vs attnd#3)");
    t = a;
    t.hidden = 4096;
    cr_assert_eq(wire_hello_check(&f, &t, why, sizeof why), WIRE_REFUSE_DIMS);
    cr_assert_str_eq(why, "hidden 7168 != 4096 (ffnd#7 vs attnd#3)");
    t = a;
    t.top_k = 2;
    cr_assert_eq(wire_hello_check(&f, &t, why, sizeof why), WIRE_REFUSE_DIMS);
    cr_assert_str_eq(why, "top_k 3 != 2 (ffnd#7 vs attnd#3)");
    t = a;
    t.f2a_dtype = WIRE_DT_E4M3;
    cr_assert_eq(wire_hello_check(&f, &t, why, sizeof why), WIRE_REFUSE_DTYPE);
    cr_assert_str_eq(why, "f2a dtype bf16 != e4m3 (ffnd#7 vs attnd#3)");
    t = a;
    t.proto_min = t.proto_max = 2;
    cr_assert_eq(wire_hello_check(&f, &t, why, sizeof why), WIRE_REFUSE_VERSION);
    cr_assert_str_eq(why, "protocol versions 1..1 and 2..2 do not overlap (ffnd#7 vs attnd#3)");
    t = a;
    t.ep_rank = 0;
    cr_assert_eq(wire_hello_check(&f, &t, why, sizeof why), WIRE_REFUSE_SHARD);
    cr_assert_str_eq(why, "shard ep 1/2 tp 0/1 != ep 0/2 tp 0/1 (ffnd#7 vs attnd#3)");
    wire_hello other = hello_of(WIRE_ROLE_ATTND, 4); /* attnd <-> attnd: no shard check */
    other.ep_rank = 0;
    cr_assert_eq(wire_hello_check(&a, &other, why, sizeof why), 0, "%s", why);
    t = hello_of(WIRE_ROLE_FFND, 8);
    cr_assert_eq(wire_hello_check(&f, &t, why, sizeof why), WIRE_REFUSE_ROLE);
    cr_assert_str_eq(why, "role ffnd does not talk to ffnd (ffnd#7 vs ffnd#8)");
    t = hello_of(WIRE_ROLE_ROUTER, 1);
    cr_assert_eq(wire_hello_check(&f, &t, why, sizeof why), WIRE_REFUSE_ROLE);
    t = a;
    t.max_tok = 0;
    cr_assert_eq(wire_hello_check(&f, &t, why, sizeof why), WIRE_REFUSE_LIMIT);
    /* A tiny buffer gets a truncated but terminated reason; n == 0 writes nothing. */
    t = a;
    t.hidden = 1;
    char small[8];
    cr_assert_eq(wire_hello_check(&f, &t, small, sizeof small), WIRE_REFUSE_DIMS);
    cr_assert_str_eq(small, "hidden ");
    cr_assert_eq(wire_hello_check(&f, &t, NULL, 0), WIRE_REFUSE_DIMS);
}

Test(wire_hello, version_overlap) {
    wire_hello a = hello_of(WIRE_ROLE_ATTND, 1), b = hello_of(WIRE_ROLE_FFND, 2);
    a.proto_max = 3;
    b.proto_min = 2;
    b.proto_max = 5;
    cr_assert_eq(wire_hello_version(&a, &b), 3);
    b.proto_min = 4;
    cr_assert_eq(wire_hello_version(&a, &b), 0);
}

Test(wire_hello, session_limits) {
    wire_hello f = hello_of(WIRE_ROLE_FFND, 7), a = hello_of(WIRE_ROLE_ATTND, 3);
    f.max_tok = 256;
    wire_limits base = lim_default(), s;
    wire_dims d;
    cr_assert_eq(wire_dims_from_hello(&a, &base, &d), 0);
    cr_assert_eq(d.hidden, 7168);
    cr_assert_null(d.moe_layers);
    cr_assert_eq(wire_limits_session(&base, &f, &a, &d, &s), 0);
    cr_assert_eq(s.types, WIRE_TYPES_SESSION);
    cr_assert_eq(s.max_tok, 128u);
    cr_assert_eq(s.max_payload, 1835008u); /* F2A bf16 is the largest frame */
    base.max_payload = 1 << 20;
    cr_assert_eq(wire_limits_session(&base, &f, &a, &d, &s), WIRE_E_LIMIT);
    base = lim_default();
    base.max_hidden = 4096;
    cr_assert_eq(wire_dims_from_hello(&a, &base, &d), WIRE_E_LIMIT);
    a.fp8_group = 100;
    cr_assert_eq(wire_dims_from_hello(&a, NULL, &d), WIRE_E_DIMS);
}

/* ---- ERROR / GOODBYE ---- */

Test(wire_msg, round_trip) {
    uint8_t b[WIRE_MSG_MAX_LEN];
    size_t n;
    wire_msg m;
    cr_assert_eq(wire_error_encode(b, sizeof b, WIRE_E_ID, "expert id 9 >= 8", &n), 0);
    cr_assert_eq(n, 6u + 16);
    cr_assert_eq(wire_error_decode(b, n, &m), 0);
    cr_assert_eq(m.code, WIRE_E_ID);
    cr_assert_str_eq(m.text, "expert id 9 >= 8");
    cr_assert_eq(wire_goodbye_encode(b, sizeof b, 0, NULL, &n), 0);
    cr_assert_eq(n, 6u);
    cr_assert_eq(wire_goodbye_decode(b, n, &m), 0);
    cr_assert_eq(m.code, 0);
    cr_assert_str_eq(m.text, "");
}

Test(wire_msg, encode_cuts_and_sanitizes) {
    static char longmsg[2000];
    memset(longmsg, 'a', sizeof longmsg - 1);
    longmsg[3] = '\n';
    uint8_t b[WIRE_MSG_MAX_LEN];
    size_t n;
    wire_msg m;
    cr_assert_eq(wire_error_encode(b, sizeof b, -5, longmsg, &n), 0);
    cr_assert_eq(n, (size_t)WIRE_MSG_MAX_LEN);
    cr_assert_eq(wire_error_decode(b, n, &m), 0);
    cr_assert_eq(strlen(m.text), WIRE_MSG_MAX);
    cr_assert_eq(m.text[3], '?');
    cr_assert_eq(m.code, -5);
    cr_assert_eq(wire_error_encode(b, 10, -5, "longer than four", &n), WIRE_E_LIMIT);
}

Test(wire_msg, rejects) {
    uint8_t b[WIRE_MSG_MAX_LEN + 8];
    size_t n;
    wire_msg m;
    cr_assert_eq(wire_goodbye_encode(b, sizeof b, 3, "draining", &n), 0);
    for (size_t k = 0; k < n; k++)
        cr_assert_eq(wire_goodbye_decode(b, k, &m), WIRE_E_TRUNC, "length %zu", k);
    cr_assert_eq(wire_goodbye_decode(b, n + 1, &m), WIRE_E_LEN);
    b[6] = 0x1b;
    cr_assert_eq(wire_goodbye_decode(b, n, &m), WIRE_E_STRING);
    b[4] = (WIRE_MSG_MAX + 1) & 0xff;
    b[5] = (WIRE_MSG_MAX + 1) >> 8;
    cr_assert_eq(wire_error_decode(b, sizeof b, &m), WIRE_E_LIMIT);
}

/* ---- names ---- */

Test(wire_names, strerror_distinct) {
    const char *seen[16] = {0};
    for (int c = WIRE_E_MAGIC; c >= WIRE_E_DIMS; c--) {
        const char *s = wire_strerror(c);
        cr_assert_neq(strcmp(s, "unknown error"), 0, "code %d", c);
        for (int j = 0; j < WIRE_E_MAGIC - c; j++)
            cr_assert_neq(strcmp(s, seen[j]), 0, "codes %d and %d share '%s'", c, WIRE_E_MAGIC - j,
                          s);
        seen[WIRE_E_MAGIC - c] = s;
    }
    cr_assert_str_eq(wire_strerror(0), "ok");
    cr_assert_str_eq(wire_strerror(-10002), "over limit"); /* AFD_E_LIMIT via afd_strerror */
    cr_assert_str_eq(wire_type_name(WIRE_T_A2F), "A2F");
    cr_assert_str_eq(wire_type_name(WIRE_T_HELLO_ACK), "HELLO_ACK");
    cr_assert_str_eq(wire_type_name(40), "CTRL");
    cr_assert_str_eq(wire_type_name(0), "UNKNOWN");
    cr_assert_str_eq(wire_type_name(-1), "UNKNOWN");
    cr_assert_str_eq(wire_type_name(1000), "UNKNOWN");
    cr_assert_str_eq(wire_role_name(WIRE_ROLE_BENCH), "bench");
    cr_assert_str_eq(wire_refuse_name(WIRE_REFUSE_SHARD), "shard");
    cr_assert_str_eq(wire_refuse_name(99), "unknown");
    cr_assert_str_eq(wire_dtype_name(WIRE_DT_BF16), "bf16");
}
