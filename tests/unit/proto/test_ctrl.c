/* Unit tests for proto/ctrl: round trips of every control message (empty and full arrays), the
 * exact code of every rejection (decoder and encoder), the header rules of control frames, the
 * limits helpers, and the seed corpus written from docs/protocol.md by tests/fuzz/ctrl_seeds.py
 * (an independent layout of the same tables). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ctrl.h"
#include "proto/xport.h"

/* ---- buffers and helpers ---- */

#define BUF_SIZE (1u << 21)
static _Alignas(64) uint8_t BUF[BUF_SIZE]; /* encoded message */
static _Alignas(64) uint8_t RE[BUF_SIZE];  /* re-encoding */
static _Alignas(64) uint8_t PATCH[BUF_SIZE + 64];

typedef int (*dec_fn)(const uint8_t *p, size_t n, const ctrl_limits *l);

#define WRAP(f, T)                                                                                 \
    static int dec_##f(const uint8_t *p, size_t n, const ctrl_limits *l) {                         \
        T o;                                                                                       \
        return ctrl_##f##_decode(p, n, l, &o);                                                     \
    }
WRAP(register, ctrl_register)
WRAP(load, ctrl_load)
WRAP(drain, ctrl_drain)
WRAP(submit, ctrl_submit)
WRAP(submit_ack, ctrl_status)
WRAP(tokens, ctrl_tokens)
WRAP(cancel, ctrl_cancel)
WRAP(reserve, ctrl_reserve)
WRAP(reserve_ok, ctrl_reserve_ok)
WRAP(reserve_fail, ctrl_status)
WRAP(prefill, ctrl_prefill)
WRAP(prefill_done, ctrl_prefill_done)
WRAP(kv_ready, ctrl_kv_ready)
WRAP(release, ctrl_release)
WRAP(kv_data, ctrl_kv_data)

static ctrl_limits lim_default(void) {
    ctrl_limits l;
    ctrl_limits_default(&l);
    return l;
}

static uint32_t fbits(float v) {
    uint32_t b;
    memcpy(&b, &v, 4);
    return b;
}

/* BUF[0..len) copied to PATCH with `width` bytes of v (little-endian) at off, then decoded. */
static int patched(dec_fn f, size_t len, size_t off, int width, uint64_t v, const ctrl_limits *l) {
    cr_assert_leq(off + (size_t)width, len, "patch at %zu+%d past the message (%zu)", off, width,
                  len);
    memcpy(PATCH, BUF, len);
    for (int i = 0; i < width; i++)
        PATCH[off + (size_t)i] = (uint8_t)(v >> (8 * i));
    return f(PATCH, len, l);
}

/* Every prefix is truncated, one more byte is too long, and a misaligned copy is refused. */
static void check_framing(dec_fn f, size_t len) {
    ctrl_limits l = lim_default();
    cr_assert_eq(f(BUF, len, &l), 0);
    for (size_t k = 0; k < len; k++)
        cr_assert_eq(f(BUF, k, &l), WIRE_E_TRUNC, "prefix %zu of %zu: %d", k, len, f(BUF, k, &l));
    memcpy(PATCH, BUF, len);
    PATCH[len] = 0;
    cr_assert_eq(f(PATCH, len + 1, &l), WIRE_E_LEN);
    memcpy(PATCH + 4, BUF, len);
    cr_assert_eq(f(PATCH + 4, len, &l), WIRE_E_ALIGN);
}

/* Decodes BUF[0..len) into *out and checks the re-encoding is identical. */
#define ROUND_TRIP(f, len, out)                                                                    \
    do {                                                                                           \
        size_t n2_ = 0;                                                                            \
        cr_assert_eq(ctrl_##f##_decode(BUF, (len), NULL, (out)), 0);                               \
        cr_assert_eq(ctrl_##f##_encode(RE, sizeof RE, (out), &n2_), 0);                            \
        cr_assert_eq(n2_, (len));                                                                  \
        cr_assert_eq(memcmp(RE, BUF, (len)), 0, "re-encoding of " #f " differs");                  \
    } while (0)

/* ---- fixtures ---- */

static const uint32_t PROMPT[5] = {1, 100, 200, 300, 400};
static const uint32_t STOP[2] = {2, 7};
static const uint32_t BLOCKS[3] = {5, 9, 2};
static const uint8_t RKEY[24] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
                                 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};

static ctrl_sampling sampling(void) {
    return (ctrl_sampling){.temperature = 0.7f,
                           .top_p = 0.9f,
                           .top_k = 40,
                           .max_tokens = 64,
                           .has_seed = true,
                           .seed = 1234,
                           .logprobs = true,
                           .top_logprobs = 3,
                           .priority = 2,
                           .deadline_ns = 5000000000ull,
                           .n_stop = 2,
                           .stop = STOP};
}

static ctrl_submit submit(void) {
    ctrl_submit m = {.seq_id = 42, .n_prompt = 5, .prompt = PROMPT, .s = sampling()};
    strcpy(m.req_id, "req-abc-123");
    return m;
}

static ctrl_resv resv(void) {
    return (ctrl_resv){.instance_id = 9,
                       .epoch = 3,
                       .lease_ms = 2000,
                       .block_size = 16,
                       .block_bytes = 65536,
                       .remote_base = 0x7f0000000000ull,
                       .n_blocks = 3,
                       .block_ids = BLOCKS,
                       .rkey_len = sizeof RKEY,
                       .rkey = RKEY};
}

static ctrl_prefill prefill(void) {
    ctrl_prefill m = {.sub = submit(), .r = resv(), .port = 13337};
    strcpy(m.host, "10.0.0.2");
    return m;
}

static const uint32_t TOK_IDS[2] = {11, 12};
static const float TOK_LP[2] = {-0.5f, -1.25f};
static const ctrl_cand TOK_TOP[2][2] = {{{11, -0.5f}, {13, -1.0f}}, {{12, -1.25f}, {14, -2.0f}}};

static ctrl_tokens tokens(void) {
    return (ctrl_tokens){.seq_id = 42,
                         .n_tok = 2,
                         .has_logprobs = true,
                         .n_top = 2,
                         .prompt_tokens = 5,
                         .completion_tokens = 2,
                         .ids = TOK_IDS,
                         .logprobs = TOK_LP,
                         .top = &TOK_TOP[0][0]};
}

static ctrl_register reg(void) {
    ctrl_register m = {.instance_id = 7,
                       .role = CTRL_ROLE_DECODE,
                       .port = 40123,
                       .kv_blocks = 4096,
                       .block_size = 16,
                       .max_batch = 64,
                       .max_context = 8192};
    strcpy(m.host, "127.0.0.1");
    strcpy(m.model, "step3-mini");
    return m;
}

static ctrl_load load(void) {
    return (ctrl_load){.instance_id = 7,
                       .role = CTRL_ROLE_BOTH,
                       .micro_batches = 3,
                       .step = 1234,
                       .running = 12,
                       .waiting = 2,
                       .batch_tokens = 12,
                       .last_step_us = 21000,
                       .p50_step_us = 20000,
                       .p99_step_us = 35000,
                       .kv_blocks_free = 3000,
                       .kv_blocks_reserved = 40,
                       .kv_blocks_total = 4096,
                       .block_size = 16,
                       .reservations = 2,
                       .tokens_per_s = 540.5f,
                       .ctx_tokens = 5000};
}

static ctrl_prefill_done done(void) {
    static const ctrl_cand top[2] = {{11, -0.5f}, {13, -1.0f}};
    return (ctrl_prefill_done){.seq_id = 77,
                               .token = 11,
                               .has_logprob = true,
                               .logprob = -0.5f,
                               .prompt_tokens = 17,
                               .n_top = 2,
                               .top = top};
}

/* Encoders into BUF; return the length. */
#define ENCODE(f, m)                                                                               \
    ({                                                                                             \
        size_t n_ = 0;                                                                             \
        int rc_ = ctrl_##f##_encode(BUF, sizeof BUF, (m), &n_);                                    \
        cr_assert_eq(rc_, 0, "encode " #f ": %d (%s)", rc_, wire_strerror(rc_));                   \
        n_;                                                                                        \
    })

/* ---- round trips ---- */

Test(ctrl_rt, submit) {
    ctrl_submit m = submit(), o;
    size_t n = ENCODE(submit, &m);
    cr_assert_eq(n, 56u + 4 * (5 + 2) + strlen("req-abc-123"));
    ROUND_TRIP(submit, n, &o);
    cr_assert_eq(o.seq_id, 42u);
    cr_assert_str_eq(o.req_id, "req-abc-123");
    cr_assert_eq(o.n_prompt, 5u);
    cr_assert_eq(memcmp(o.prompt, PROMPT, sizeof PROMPT), 0);
    cr_assert_eq((const uint8_t *)o.prompt, BUF + 56, "prompt is used in place");
    cr_assert_eq(o.s.n_stop, 2u);
    cr_assert_eq(o.s.stop[1], 7u);
    cr_assert_eq(fbits(o.s.temperature), fbits(0.7f));
    cr_assert_eq(fbits(o.s.top_p), fbits(0.9f));
    cr_assert_eq(o.s.top_k, 40);
    cr_assert_eq(o.s.max_tokens, 64u);
    cr_assert(o.s.has_seed && o.s.logprobs && !o.s.ignore_eos);
    cr_assert_eq(o.s.seed, 1234u);
    cr_assert_eq(o.s.top_logprobs, 3);
    cr_assert_eq(o.s.priority, 2u);
    cr_assert_eq(o.s.deadline_ns, 5000000000ull);
    check_framing(dec_submit, n);
}

Test(ctrl_rt, submit_minimal) {
    ctrl_submit m = {.seq_id = 1, .n_prompt = 1, .prompt = PROMPT};
    m.s = (ctrl_sampling){
        .temperature = 0.0f, .top_p = 1.0f, .top_k = -1, .max_tokens = 1, .ignore_eos = true};
    ctrl_submit o;
    size_t n = ENCODE(submit, &m);
    cr_assert_eq(n, 60u);
    ROUND_TRIP(submit, n, &o);
    cr_assert_eq(o.s.stop, NULL);
    cr_assert_eq(o.s.n_stop, 0u);
    cr_assert_str_eq(o.req_id, "");
    cr_assert(o.s.ignore_eos && !o.s.has_seed && !o.s.logprobs);
    check_framing(dec_submit, n);
}

Test(ctrl_rt, submit_max) {
    ctrl_limits l = lim_default();
    static uint32_t prompt[131072], stop[CTRL_STOP_MAX];
    for (uint32_t i = 0; i < l.max_prompt; i++)
        prompt[i] = i;
    ctrl_submit m = submit(), o;
    m.n_prompt = l.max_prompt;
    m.prompt = prompt;
    m.s.n_stop = CTRL_STOP_MAX;
    m.s.stop = stop;
    m.s.top_logprobs = CTRL_TOP_MAX;
    memset(m.req_id, 'x', CTRL_REQ_ID_MAX);
    m.req_id[CTRL_REQ_ID_MAX] = '\0';
    size_t n = ENCODE(submit, &m);
    cr_assert_eq(n, ctrl_max_payload(&l, WIRE_TYPE_BIT(WIRE_T_CTRL_SUBMIT)));
    ROUND_TRIP(submit, n, &o);
    cr_assert_eq(o.prompt[131071], 131071u);
    cr_assert_eq(strlen(o.req_id), (size_t)CTRL_REQ_ID_MAX);
    l.max_prompt--;
    cr_assert_eq(ctrl_submit_decode(BUF, n, &l, &o), WIRE_E_LIMIT);
}

Test(ctrl_rt, tokens) {
    ctrl_tokens m = tokens(), o;
    size_t n = ENCODE(tokens, &m);
    cr_assert_eq(n, 32u + 2 * (4 + 4 + 2 * 8));
    ROUND_TRIP(tokens, n, &o);
    cr_assert_eq(o.n_tok, 2u);
    cr_assert_eq(o.ids[1], 12u);
    cr_assert_eq(fbits(o.logprobs[1]), fbits(-1.25f));
    cr_assert_eq(o.top[3].id, 14u);
    cr_assert_eq(fbits(o.top[3].logprob), fbits(-2.0f));
    cr_assert_eq(o.finish, CTRL_FINISH_NONE);
    cr_assert_eq(o.completion_tokens, 2u);
    check_framing(dec_tokens, n);
}

Test(ctrl_rt, tokens_plain_and_final) {
    ctrl_tokens m = {.seq_id = 5, .n_tok = 1, .ids = TOK_IDS}, o;
    size_t n = ENCODE(tokens, &m);
    cr_assert_eq(n, 36u);
    ROUND_TRIP(tokens, n, &o);
    cr_assert_eq(o.logprobs, NULL);
    cr_assert_eq(o.top, NULL);
    m = (ctrl_tokens){.seq_id = 5, .finish = CTRL_FINISH_ERROR, .code = -10010};
    strcpy(m.msg, "ffnd shard 1 went away");
    n = ENCODE(tokens, &m);
    ROUND_TRIP(tokens, n, &o);
    cr_assert_eq(o.n_tok, 0u);
    cr_assert_eq(o.ids, NULL);
    cr_assert_eq(o.code, -10010);
    cr_assert_str_eq(o.msg, "ffnd shard 1 went away");
    m = (ctrl_tokens){.seq_id = 5, .finish = CTRL_FINISH_CANCELLED};
    n = ENCODE(tokens, &m);
    cr_assert_eq(n, 32u);
    ROUND_TRIP(tokens, n, &o);
    cr_assert_eq(o.finish, CTRL_FINISH_CANCELLED);
    check_framing(dec_tokens, n);
}

Test(ctrl_rt, tokens_max) {
    ctrl_limits l = lim_default();
    static uint32_t ids[256];
    static float lp[256];
    static ctrl_cand top[256 * CTRL_TOP_MAX];
    for (uint32_t t = 0; t < l.max_gen; t++) {
        ids[t] = t;
        lp[t] = -(float)t;
        for (uint32_t k = 0; k < CTRL_TOP_MAX; k++)
            top[t * CTRL_TOP_MAX + k] = (ctrl_cand){t + k, -(float)k};
    }
    ctrl_tokens m = {.seq_id = 1,
                     .n_tok = l.max_gen,
                     .has_logprobs = true,
                     .n_top = CTRL_TOP_MAX,
                     .finish = CTRL_FINISH_ERROR,
                     .code = -1,
                     .ids = ids,
                     .logprobs = lp,
                     .top = top},
                o;
    memset(m.msg, 'm', CTRL_MSG_MAX);
    size_t n = ENCODE(tokens, &m);
    cr_assert_eq(n, ctrl_max_payload(&l, WIRE_TYPE_BIT(WIRE_T_CTRL_TOKENS)));
    ROUND_TRIP(tokens, n, &o);
    cr_assert_eq(o.top[255 * CTRL_TOP_MAX + 19].id, 255u + 19);
    cr_assert_eq(fbits(o.logprobs[0]), 0x80000000u); /* -0 is a valid logprob */
    l.max_gen = 255;
    cr_assert_eq(ctrl_tokens_decode(BUF, n, &l, &o), WIRE_E_LIMIT);
    l = lim_default();
    l.max_top = 19;
    cr_assert_eq(ctrl_tokens_decode(BUF, n, &l, &o), WIRE_E_LIMIT);
}

Test(ctrl_rt, status) {
    ctrl_status m = {.seq_id = 42}, o;
    size_t n = ENCODE(submit_ack, &m);
    cr_assert_eq(n, 16u);
    ROUND_TRIP(submit_ack, n, &o);
    cr_assert_eq(o.reason, (uint32_t)CTRL_OK);
    check_framing(dec_submit_ack, n);
    m.reason = CTRL_R_TOO_LONG;
    strcpy(m.msg, "prompt 70000 tokens > 65536");
    n = ENCODE(submit_ack, &m);
    ROUND_TRIP(submit_ack, n, &o);
    cr_assert_str_eq(o.msg, "prompt 70000 tokens > 65536");
    m.reason = CTRL_R_KV_FULL;
    n = ENCODE(reserve_fail, &m);
    ROUND_TRIP(reserve_fail, n, &o);
    cr_assert_eq(o.reason, (uint32_t)CTRL_R_KV_FULL);
    check_framing(dec_reserve_fail, n);
}

Test(ctrl_rt, fixed_size) {
    ctrl_load l = load(), lo;
    size_t n = ENCODE(load, &l);
    cr_assert_eq(n, 72u);
    ROUND_TRIP(load, n, &lo);
    cr_assert_eq(memcmp(&lo, &l, sizeof l), 0);
    check_framing(dec_load, n);

    ctrl_drain d = {.deadline_ms = 30000}, dout;
    n = ENCODE(drain, &d);
    cr_assert_eq(n, 16u);
    ROUND_TRIP(drain, n, &dout);
    cr_assert_eq(dout.deadline_ms, 30000u);
    cr_assert(!dout.resume);
    check_framing(dec_drain, n);

    ctrl_cancel c = {.seq_id = 0xfedcba9876543210ull}, cout;
    n = ENCODE(cancel, &c);
    cr_assert_eq(n, 8u);
    ROUND_TRIP(cancel, n, &cout);
    cr_assert_eq(cout.seq_id, 0xfedcba9876543210ull);
    check_framing(dec_cancel, n);

    ctrl_kv_ready k = {.seq_id = 77,
                       .epoch = 3,
                       .first_token = 11,
                       .prompt_len = 17,
                       .has_checksum = true,
                       .checksum = 0x1234abcd},
                  kout;
    n = ENCODE(kv_ready, &k);
    cr_assert_eq(n, 40u);
    ROUND_TRIP(kv_ready, n, &kout);
    cr_assert_eq(kout.checksum, 0x1234abcdu);
    cr_assert(kout.has_checksum);
    check_framing(dec_kv_ready, n);

    ctrl_release r = {.seq_id = 77, .epoch = 0, .reason = CTRL_R_EXPIRED}, rout;
    n = ENCODE(release, &r);
    cr_assert_eq(n, 24u);
    ROUND_TRIP(release, n, &rout);
    cr_assert_eq(rout.reason, (uint32_t)CTRL_R_EXPIRED);
    check_framing(dec_release, n);
}

Test(ctrl_rt, register_) {
    ctrl_register m = reg(), o;
    size_t n = ENCODE(register, &m);
    cr_assert_eq(n, 32u + 9 + 10);
    ROUND_TRIP(register, n, &o);
    cr_assert_str_eq(o.host, "127.0.0.1");
    cr_assert_str_eq(o.model, "step3-mini");
    cr_assert_eq(o.port, 40123);
    cr_assert_eq(o.max_context, 8192u);
    check_framing(dec_register, n);
    m.role = CTRL_ROLE_PREFILL; /* a prefill instance may have no data-plane address */
    m.host[0] = '\0';
    m.port = 0;
    n = ENCODE(register, &m);
    ROUND_TRIP(register, n, &o);
    cr_assert_eq(o.role, CTRL_ROLE_PREFILL);
}

Test(ctrl_rt, reserve) {
    ctrl_reserve m = {.seq_id = 77, .prompt_len = 17, .lease_ms = 3000, .s = sampling()}, o;
    strcpy(m.req_id, "req-prefill-1");
    size_t n = ENCODE(reserve, &m);
    cr_assert_eq(n, 64u + 8 + 13);
    ROUND_TRIP(reserve, n, &o);
    cr_assert_eq(o.prompt_len, 17u);
    cr_assert_eq(o.lease_ms, 3000u);
    cr_assert_eq(o.s.stop[0], 2u);
    cr_assert_eq(o.s.top_k, 40);
    cr_assert_str_eq(o.req_id, "req-prefill-1");
    check_framing(dec_reserve, n);
}

Test(ctrl_rt, reserve_ok) {
    ctrl_reserve_ok m = {.seq_id = 77, .r = resv()}, o;
    size_t n = ENCODE(reserve_ok, &m);
    cr_assert_eq(n, 56u + 12 + 24);
    ROUND_TRIP(reserve_ok, n, &o);
    cr_assert_eq(o.r.epoch, 3u);
    cr_assert_eq(o.r.n_blocks, 3u);
    cr_assert_eq(o.r.block_ids[2], 2u);
    cr_assert_eq(o.r.rkey_len, 24u);
    cr_assert_eq(o.r.rkey[23], 24);
    cr_assert_eq(o.r.remote_base, 0x7f0000000000ull);
    check_framing(dec_reserve_ok, n);
    m.r.rkey_len = 0; /* no RMA key: KV_DATA */
    m.r.rkey = NULL;
    n = ENCODE(reserve_ok, &m);
    ROUND_TRIP(reserve_ok, n, &o);
    cr_assert_eq(o.r.rkey, NULL);
}

Test(ctrl_rt, reserve_ok_max) {
    ctrl_limits l = lim_default();
    static uint32_t ids[65536];
    static uint8_t key[CTRL_RKEY_MAX];
    for (uint32_t i = 0; i < l.max_blocks; i++)
        ids[i] = l.max_blocks - 1 - i;
    ctrl_reserve_ok m = {.seq_id = 1, .r = resv()}, o;
    m.r.n_blocks = l.max_blocks;
    m.r.block_ids = ids;
    m.r.rkey_len = CTRL_RKEY_MAX;
    m.r.rkey = key;
    size_t n = ENCODE(reserve_ok, &m);
    cr_assert_eq(n, 56u + 4 * 65536 + CTRL_RKEY_MAX);
    ROUND_TRIP(reserve_ok, n, &o);
    cr_assert_eq(o.r.block_ids[0], 65535u);
    l.max_blocks = 65535;
    cr_assert_eq(ctrl_reserve_ok_decode(BUF, n, &l, &o), WIRE_E_LIMIT);
    l = lim_default();
    l.max_rkey = CTRL_RKEY_MAX - 1;
    cr_assert_eq(ctrl_reserve_ok_decode(BUF, n, &l, &o), WIRE_E_LIMIT);
    m.r.rkey_len = CTRL_RKEY_MAX + 1;
    cr_assert_eq(ctrl_reserve_ok_encode(BUF, sizeof BUF, &m, &n), WIRE_E_LIMIT);
}

Test(ctrl_rt, prefill) {
    ctrl_prefill m = prefill(), o;
    m.sub.n_prompt = 5;
    size_t n = ENCODE(prefill, &m);
    cr_assert_eq(n, 112u + 4 * (5 + 2 + 3) + 11 + 8 + 24);
    ROUND_TRIP(prefill, n, &o);
    cr_assert_str_eq(o.sub.req_id, "req-abc-123");
    cr_assert_str_eq(o.host, "10.0.0.2");
    cr_assert_eq(o.port, 13337);
    cr_assert_eq(o.sub.prompt[4], 400u);
    cr_assert_eq(o.sub.s.stop[1], 7u);
    cr_assert_eq(o.r.block_ids[1], 9u);
    cr_assert_eq(o.r.rkey[0], 1);
    cr_assert_eq(o.r.rkey + 24, BUF + n, "rkey is the last section");
    check_framing(dec_prefill, n);
}

Test(ctrl_rt, prefill_max) {
    ctrl_limits l = lim_default();
    static uint32_t prompt[131072], ids[65536];
    static uint8_t key[CTRL_RKEY_MAX];
    ctrl_prefill m = prefill(), o;
    m.sub.n_prompt = l.max_prompt;
    m.sub.prompt = prompt;
    m.sub.s.n_stop = CTRL_STOP_MAX;
    m.sub.s.stop = prompt;
    memset(m.sub.req_id, 'r', CTRL_REQ_ID_MAX);
    memset(m.host, 'h', CTRL_HOST_MAX);
    m.r.n_blocks = l.max_blocks;
    m.r.block_ids = ids;
    m.r.rkey_len = CTRL_RKEY_MAX;
    m.r.rkey = key;
    size_t n = ENCODE(prefill, &m);
    cr_assert_eq(n, ctrl_max_payload(&l, WIRE_TYPE_BIT(WIRE_T_CTRL_PREFILL)));
    cr_assert_eq(n, ctrl_max_payload(&l, CTRL_TYPES_TO_ATTND));
    ROUND_TRIP(prefill, n, &o);
    cr_assert_eq(strlen(o.host), (size_t)CTRL_HOST_MAX);
}

Test(ctrl_rt, prefill_done) {
    ctrl_prefill_done m = done(), o;
    size_t n = ENCODE(prefill_done, &m);
    cr_assert_eq(n, 32u + 16);
    ROUND_TRIP(prefill_done, n, &o);
    cr_assert_eq(o.token, 11u);
    cr_assert_eq(fbits(o.logprob), fbits(-0.5f));
    cr_assert_eq(o.top[1].id, 13u);
    check_framing(dec_prefill_done, n);
    m = (ctrl_prefill_done){
        .seq_id = 77, .reason = CTRL_R_PEER, .code = -10010, .prompt_tokens = 17};
    strcpy(m.msg, "D 10.0.0.2 down");
    n = ENCODE(prefill_done, &m);
    ROUND_TRIP(prefill_done, n, &o);
    cr_assert_eq(o.reason, (uint32_t)CTRL_R_PEER);
    cr_assert_eq(o.top, NULL);
    cr_assert_str_eq(o.msg, "D 10.0.0.2 down");
}

Test(ctrl_rt, kv_data) {
    static const uint8_t bytes[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    ctrl_kv_data m = {.seq_id = 77,
                      .epoch = 3,
                      .block = 1,
                      .offset = 1024,
                      .len = 16,
                      .data = bytes},
                 o;
    size_t n = ENCODE(kv_data, &m);
    cr_assert_eq(n, 48u);
    ROUND_TRIP(kv_data, n, &o);
    cr_assert_eq(o.data, BUF + 32);
    cr_assert_eq((uintptr_t)o.data % 8, 0u);
    cr_assert_eq(o.offset, 1024u);
    check_framing(dec_kv_data, n);
}

/* ---- decoder rejections (patched encodings, exact codes) ---- */

#define F_NAN  0x7fc00000u
#define F_INF  0x7f800000u
#define F_NINF 0xff800000u

Test(ctrl_reject, submit_sampling) {
    ctrl_submit m = submit();
    size_t n = ENCODE(submit, &m);
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_submit, n, 24, 4, F_NAN, &l), WIRE_E_VALUE); /* temperature */
    cr_assert_eq(patched(dec_submit, n, 24, 4, F_INF, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_submit, n, 24, 4, fbits(-1.0f), &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_submit, n, 24, 4, fbits(100.5f), &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_submit, n, 24, 4, fbits(0.0f), &l), 0);
    cr_assert_eq(patched(dec_submit, n, 24, 4, fbits(100.0f), &l), 0);
    cr_assert_eq(patched(dec_submit, n, 28, 4, fbits(0.0f), &l), WIRE_E_VALUE); /* top_p */
    cr_assert_eq(patched(dec_submit, n, 28, 4, fbits(-0.5f), &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_submit, n, 28, 4, fbits(1.5f), &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_submit, n, 28, 4, F_NAN, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_submit, n, 28, 4, fbits(1.0f), &l), 0);
    cr_assert_eq(patched(dec_submit, n, 32, 4, (uint32_t)-2, &l), WIRE_E_VALUE); /* top_k */
    cr_assert_eq(patched(dec_submit, n, 32, 4, 0, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_submit, n, 32, 4, 0x80000000u, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_submit, n, 32, 4, (uint32_t)-1, &l), 0);
    cr_assert_eq(patched(dec_submit, n, 32, 4, 1, &l), 0);
    cr_assert_eq(patched(dec_submit, n, 36, 4, 0, &l), WIRE_E_VALUE); /* max_tokens */
    cr_assert_eq(patched(dec_submit, n, 50, 1, 0x08, &l), WIRE_E_FLAGS);
    cr_assert_eq(patched(dec_submit, n, 50, 1, 0x80, &l), WIRE_E_FLAGS);
    cr_assert_eq(patched(dec_submit, n, 50, 1, 0x04, &l), WIRE_E_VALUE); /* seed, no has_seed */
    cr_assert_eq(patched(dec_submit, n, 50, 1, 0x01, &l), WIRE_E_VALUE); /* top_lp, no logprobs */
    cr_assert_eq(patched(dec_submit, n, 51, 1, 21, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_submit, n, 51, 1, 20, &l), 0);
    cr_assert_eq(patched(dec_submit, n, 54, 2, 1, &l), WIRE_E_VALUE); /* reserved */
    l.max_top = 2;
    cr_assert_eq(patched(dec_submit, n, 51, 1, 3, &l), WIRE_E_LIMIT);
}

Test(ctrl_reject, submit_counts_and_strings) {
    ctrl_submit m = submit();
    size_t n = ENCODE(submit, &m); /* prompt at 56, stop at 76, req_id at 84 */
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_submit, n, 40, 4, 0, &l), WIRE_E_VALUE); /* empty prompt */
    cr_assert_eq(patched(dec_submit, n, 40, 4, 6, &l), WIRE_E_TRUNC);
    cr_assert_eq(patched(dec_submit, n, 40, 4, 4, &l), WIRE_E_LEN);
    cr_assert_eq(patched(dec_submit, n, 40, 4, 131073, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_submit, n, 40, 4, 0xffffffffu, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_submit, n, 48, 2, 17, &l), WIRE_E_LIMIT); /* n_stop */
    cr_assert_eq(patched(dec_submit, n, 48, 2, 3, &l), WIRE_E_TRUNC);
    cr_assert_eq(patched(dec_submit, n, 52, 2, 129, &l), WIRE_E_LIMIT); /* req_id_len */
    cr_assert_eq(patched(dec_submit, n, 52, 2, 12, &l), WIRE_E_TRUNC);
    cr_assert_eq(patched(dec_submit, n, 52, 2, 10, &l), WIRE_E_LEN);
    cr_assert_eq(patched(dec_submit, n, 84, 1, 0x01, &l), WIRE_E_STRING);
    cr_assert_eq(patched(dec_submit, n, 90, 1, 0x7f, &l), WIRE_E_STRING);
    cr_assert_eq(patched(dec_submit, n, 94, 1, 0x80, &l), WIRE_E_STRING);
    cr_assert_eq(patched(dec_submit, n, 94, 1, 0x00, &l), WIRE_E_STRING);
    l.max_prompt = 4;
    cr_assert_eq(dec_submit(BUF, n, &l), WIRE_E_LIMIT);
    l = lim_default();
    l.max_stop = 1;
    cr_assert_eq(dec_submit(BUF, n, &l), WIRE_E_LIMIT);
    l = lim_default();
    l.max_req_id = 10;
    cr_assert_eq(dec_submit(BUF, n, &l), WIRE_E_LIMIT);
    l = lim_default();
    l.vocab = 401; /* prompt ids up to 400 */
    cr_assert_eq(dec_submit(BUF, n, &l), 0);
    l.vocab = 400;
    cr_assert_eq(dec_submit(BUF, n, &l), WIRE_E_VALUE);
    l.vocab = 401;
    cr_assert_eq(patched(dec_submit, n, 80, 4, 401, &l), WIRE_E_VALUE); /* a stop id */
    l.max_prompt = 0xffffffffu; /* capped at CTRL_PROMPT_MAX */
    cr_assert_eq(patched(dec_submit, n, 40, 4, CTRL_PROMPT_MAX + 1, &l), WIRE_E_LIMIT);
}

Test(ctrl_reject, tokens) {
    ctrl_tokens m = tokens();
    size_t n = ENCODE(tokens, &m); /* ids 32, logprobs 40, top 48 */
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_tokens, n, 12, 1, 5, &l), WIRE_E_VALUE); /* finish */
    cr_assert_eq(patched(dec_tokens, n, 13, 1, 0x02, &l), WIRE_E_FLAGS);
    cr_assert_eq(patched(dec_tokens, n, 13, 1, 0x00, &l), WIRE_E_VALUE); /* top without lp */
    cr_assert_eq(patched(dec_tokens, n, 14, 1, 21, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_tokens, n, 15, 1, 1, &l), WIRE_E_VALUE); /* reserved */
    cr_assert_eq(patched(dec_tokens, n, 30, 2, 1, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_tokens, n, 16, 4, (uint32_t)-5, &l), WIRE_E_VALUE); /* code */
    cr_assert_eq(patched(dec_tokens, n, 28, 2, 1, &l), WIRE_E_VALUE); /* msg, finish none */
    cr_assert_eq(patched(dec_tokens, n, 8, 4, 0, &l), WIRE_E_VALUE);  /* nothing, no finish */
    cr_assert_eq(patched(dec_tokens, n, 8, 4, 257, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_tokens, n, 8, 4, 3, &l), WIRE_E_TRUNC);
    cr_assert_eq(patched(dec_tokens, n, 8, 4, 1, &l), WIRE_E_LEN);
    cr_assert_eq(patched(dec_tokens, n, 40, 4, fbits(0.25f), &l), WIRE_E_VALUE); /* logprob > 0 */
    cr_assert_eq(patched(dec_tokens, n, 40, 4, F_NAN, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_tokens, n, 40, 4, F_INF, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_tokens, n, 40, 4, F_NINF, &l), 0);
    cr_assert_eq(patched(dec_tokens, n, 40, 4, 0x80000000u, &l), 0); /* -0 */
    cr_assert_eq(patched(dec_tokens, n, 40, 4, 0, &l), 0);
    cr_assert_eq(patched(dec_tokens, n, 52, 4, fbits(1.0f), &l), WIRE_E_VALUE); /* candidate */
    cr_assert_eq(patched(dec_tokens, n, 56, 4, 11, &l), WIRE_E_VALUE); /* repeated candidate */
    l.vocab = 15;
    cr_assert_eq(dec_tokens(BUF, n, &l), 0);
    l.vocab = 14; /* candidate 14 */
    cr_assert_eq(dec_tokens(BUF, n, &l), WIRE_E_VALUE);
    l.vocab = 15;
    cr_assert_eq(patched(dec_tokens, n, 36, 4, 15, &l), WIRE_E_VALUE); /* a chosen id */
}

Test(ctrl_reject, tokens_finish) {
    ctrl_tokens m = {.seq_id = 5, .finish = CTRL_FINISH_ERROR, .code = -3};
    strcpy(m.msg, "boom");
    size_t n = ENCODE(tokens, &m);
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_tokens, n, 16, 4, 0, &l), WIRE_E_VALUE); /* error without code */
    cr_assert_eq(patched(dec_tokens, n, 16, 4, 7, &l), WIRE_E_VALUE); /* positive code */
    cr_assert_eq(patched(dec_tokens, n, 12, 1, CTRL_FINISH_STOP, &l), WIRE_E_VALUE); /* code */
    cr_assert_eq(patched(dec_tokens, n, 28, 2, 513, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_tokens, n, 33, 1, '\n', &l), WIRE_E_STRING);
    l.max_msg = 3;
    cr_assert_eq(dec_tokens(BUF, n, &l), WIRE_E_LIMIT);
}

Test(ctrl_reject, status) {
    ctrl_status m = {.seq_id = 1, .reason = CTRL_R_BUSY};
    strcpy(m.msg, "full");
    size_t n = ENCODE(submit_ack, &m);
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_submit_ack, n, 8, 4, CTRL_R_MAX + 1, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_submit_ack, n, 8, 4, CTRL_OK, &l), WIRE_E_VALUE); /* ok + msg */
    cr_assert_eq(patched(dec_submit_ack, n, 12, 2, 513, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_submit_ack, n, 14, 2, 1, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_submit_ack, n, 16, 1, 0xff, &l), WIRE_E_STRING);
    m = (ctrl_status){.seq_id = 1};
    n = ENCODE(submit_ack, &m);
    cr_assert_eq(dec_reserve_fail(BUF, n, &l), WIRE_E_VALUE); /* a failure needs a reason */
    cr_assert_eq(dec_submit_ack(BUF, n, &l), 0);
}

Test(ctrl_reject, load_drain) {
    ctrl_load m = load();
    size_t n = ENCODE(load, &m);
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_load, n, 20, 1, 0, &l), WIRE_E_VALUE); /* role */
    cr_assert_eq(patched(dec_load, n, 20, 1, 4, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_load, n, 21, 1, 2, &l), WIRE_E_FLAGS);
    cr_assert_eq(patched(dec_load, n, 21, 1, 1, &l), 0);
    cr_assert_eq(patched(dec_load, n, 48, 4, 4057, &l), WIRE_E_VALUE); /* free + reserved */
    cr_assert_eq(patched(dec_load, n, 48, 4, 4056, &l), 0);
    cr_assert_eq(patched(dec_load, n, 52, 4, 0xffffffffu, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_load, n, 60, 4, 0, &l), WIRE_E_VALUE); /* block_size */
    cr_assert_eq(patched(dec_load, n, 68, 4, F_NAN, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_load, n, 68, 4, F_INF, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_load, n, 68, 4, fbits(-1.0f), &l), WIRE_E_VALUE);

    ctrl_drain d = {.deadline_ms = 5};
    n = ENCODE(drain, &d);
    cr_assert_eq(patched(dec_drain, n, 8, 4, 2, &l), WIRE_E_FLAGS);
    cr_assert_eq(patched(dec_drain, n, 8, 4, 1, &l), WIRE_E_VALUE); /* resume + deadline */
    cr_assert_eq(patched(dec_drain, n, 12, 4, 1, &l), WIRE_E_VALUE);
    d = (ctrl_drain){.resume = true};
    n = ENCODE(drain, &d);
    cr_assert_eq(dec_drain(BUF, n, &l), 0);
}

Test(ctrl_reject, reservation) {
    ctrl_reserve_ok m = {.seq_id = 77, .r = resv()};
    size_t n = ENCODE(reserve_ok, &m); /* reservation at 8, block ids at 56, rkey at 68 */
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_reserve_ok, n, 8, 8, 0, &l), WIRE_E_VALUE);  /* epoch */
    cr_assert_eq(patched(dec_reserve_ok, n, 16, 8, 0, &l), WIRE_E_VALUE); /* lease */
    cr_assert_eq(patched(dec_reserve_ok, n, 32, 8, 0, &l), WIRE_E_VALUE); /* block_bytes */
    cr_assert_eq(patched(dec_reserve_ok, n, 44, 4, 0, &l), WIRE_E_VALUE); /* block_size */
    cr_assert_eq(patched(dec_reserve_ok, n, 48, 4, 0, &l), WIRE_E_VALUE); /* n_blocks */
    cr_assert_eq(patched(dec_reserve_ok, n, 48, 4, 65537, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_reserve_ok, n, 48, 4, 4, &l), WIRE_E_TRUNC);
    cr_assert_eq(patched(dec_reserve_ok, n, 52, 2, 1025, &l), WIRE_E_LIMIT); /* rkey_len */
    cr_assert_eq(patched(dec_reserve_ok, n, 52, 2, 23, &l), WIRE_E_LEN);
    cr_assert_eq(patched(dec_reserve_ok, n, 54, 2, 1, &l), WIRE_E_VALUE); /* reserved */
    /* remote_base + (9 + 1) * 65536 past 2^64 */
    cr_assert_eq(patched(dec_reserve_ok, n, 24, 8, UINT64_MAX - 655359, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_reserve_ok, n, 24, 8, UINT64_MAX - 655360, &l), 0);
    cr_assert_eq(patched(dec_reserve_ok, n, 32, 8, UINT64_MAX / 4, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_reserve_ok, n, 56, 4, 0xffffffffu, &l), 0); /* 2^32 * 64 KiB fits */
    l.max_blocks = 2;
    cr_assert_eq(dec_reserve_ok(BUF, n, &l), WIRE_E_LIMIT);
}

Test(ctrl_reject, reserve) {
    ctrl_reserve m = {.seq_id = 77, .prompt_len = 17, .s = sampling()};
    size_t n = ENCODE(reserve, &m);
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_reserve, n, 40, 4, 0, &l), WIRE_E_VALUE); /* prompt_len */
    cr_assert_eq(patched(dec_reserve, n, 40, 4, 131073, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_reserve, n, 60, 4, 1, &l), WIRE_E_VALUE); /* reserved */
    cr_assert_eq(patched(dec_reserve, n, 28, 4, fbits(2.0f), &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_reserve, n, 48, 2, 3, &l), WIRE_E_TRUNC);
}

Test(ctrl_reject, prefill) {
    ctrl_prefill m = prefill();
    size_t n = ENCODE(prefill, &m); /* head 0, resv 56, addr 104, arrays 112.., strings */
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_prefill, n, 104, 2, 0, &l), WIRE_E_VALUE); /* port */
    cr_assert_eq(patched(dec_prefill, n, 106, 2, 0, &l), WIRE_E_VALUE); /* host_len */
    cr_assert_eq(patched(dec_prefill, n, 106, 2, 256, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_prefill, n, 108, 4, 1, &l), WIRE_E_VALUE); /* reserved */
    cr_assert_eq(patched(dec_prefill, n, 102, 2, 1, &l), WIRE_E_VALUE); /* resv reserved */
    cr_assert_eq(patched(dec_prefill, n, 56, 8, 0, &l), WIRE_E_VALUE);  /* epoch */
    /* 3 blocks of 1 token cannot hold 5 prompt tokens; 3 of 2 can */
    cr_assert_eq(patched(dec_prefill, n, 92, 4, 1, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_prefill, n, 92, 4, 2, &l), 0);
    size_t host = 112 + 4 * (5 + 2 + 3) + 11;
    cr_assert_eq(patched(dec_prefill, n, host, 1, 0x09, &l), WIRE_E_STRING);
    cr_assert_eq(patched(dec_prefill, n, 112, 4, 0, &l), 0); /* a prompt id, vocab off */
    l.vocab = 10;
    cr_assert_eq(dec_prefill(BUF, n, &l), WIRE_E_VALUE);
}

Test(ctrl_reject, prefill_done) {
    ctrl_prefill_done m = done();
    size_t n = ENCODE(prefill_done, &m);
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_prefill_done, n, 8, 4, 13, &l), WIRE_E_VALUE); /* reason */
    cr_assert_eq(patched(dec_prefill_done, n, 8, 4, 1, &l), WIRE_E_VALUE);  /* + a token */
    cr_assert_eq(patched(dec_prefill_done, n, 12, 4, (uint32_t)-1, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_prefill_done, n, 20, 4, fbits(0.5f), &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_prefill_done, n, 28, 1, 2, &l), WIRE_E_FLAGS);
    cr_assert_eq(patched(dec_prefill_done, n, 28, 1, 0, &l), WIRE_E_VALUE); /* top, no lp */
    cr_assert_eq(patched(dec_prefill_done, n, 29, 1, 21, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_prefill_done, n, 29, 1, 3, &l), WIRE_E_TRUNC);
    cr_assert_eq(patched(dec_prefill_done, n, 40, 4, 11, &l), WIRE_E_VALUE); /* repeated */
    cr_assert_eq(patched(dec_prefill_done, n, 30, 2, 1, &l), WIRE_E_VALUE);  /* msg when ok */
    l.vocab = 11;
    cr_assert_eq(dec_prefill_done(BUF, n, &l), WIRE_E_VALUE);
    m = (ctrl_prefill_done){.seq_id = 1, .reason = CTRL_R_PEER, .code = -1};
    n = ENCODE(prefill_done, &m);
    l = lim_default();
    cr_assert_eq(patched(dec_prefill_done, n, 12, 4, 1, &l), WIRE_E_VALUE); /* code > 0 */
    cr_assert_eq(patched(dec_prefill_done, n, 20, 4, fbits(-1.0f), &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_prefill_done, n, 28, 1, 1, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_prefill_done, n, 12, 4, 0, &l), 0);
}

Test(ctrl_reject, handoff) {
    ctrl_kv_ready k = {.seq_id = 77, .epoch = 3, .first_token = 11, .prompt_len = 17};
    size_t n = ENCODE(kv_ready, &k);
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_kv_ready, n, 8, 8, 0, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_kv_ready, n, 16, 8, 5, &l), WIRE_E_VALUE); /* checksum, no flag */
    cr_assert_eq(patched(dec_kv_ready, n, 28, 4, 0, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_kv_ready, n, 28, 4, 131073, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_kv_ready, n, 32, 4, 2, &l), WIRE_E_FLAGS);
    cr_assert_eq(patched(dec_kv_ready, n, 36, 4, 1, &l), WIRE_E_VALUE);
    l.vocab = 11;
    cr_assert_eq(dec_kv_ready(BUF, n, &l), WIRE_E_VALUE);

    ctrl_release r = {.seq_id = 77, .epoch = 3};
    n = ENCODE(release, &r);
    l = lim_default();
    cr_assert_eq(patched(dec_release, n, 16, 4, CTRL_R_MAX + 1, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_release, n, 20, 4, 1, &l), WIRE_E_VALUE);

    static const uint8_t bytes[8] = {0};
    ctrl_kv_data d = {.seq_id = 77, .epoch = 3, .len = 8, .data = bytes};
    n = ENCODE(kv_data, &d);
    cr_assert_eq(patched(dec_kv_data, n, 8, 8, 0, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_kv_data, n, 24, 4, 0, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_kv_data, n, 24, 4, 9, &l), WIRE_E_TRUNC);
    cr_assert_eq(patched(dec_kv_data, n, 24, 4, (4u << 20) + 1, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_kv_data, n, 20, 4, 0xfffffff7u, &l), 0); /* ends at 2^32 - 1 */
    cr_assert_eq(patched(dec_kv_data, n, 20, 4, 0xfffffff8u, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_kv_data, n, 28, 4, 1, &l), WIRE_E_VALUE);
}

Test(ctrl_reject, register_) {
    ctrl_register m = reg();
    size_t n = ENCODE(register, &m);
    ctrl_limits l = lim_default();
    cr_assert_eq(patched(dec_register, n, 4, 1, 0, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_register, n, 4, 1, 4, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_register, n, 5, 1, 1, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_register, n, 6, 2, 0, &l), WIRE_E_VALUE); /* host without port */
    cr_assert_eq(patched(dec_register, n, 8, 4, 0, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_register, n, 12, 4, 0, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_register, n, 16, 4, 0, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_register, n, 20, 4, 0, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_register, n, 24, 2, 256, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_register, n, 26, 2, 129, &l), WIRE_E_LIMIT);
    cr_assert_eq(patched(dec_register, n, 28, 4, 1, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_register, n, 36, 1, 0x1b, &l), WIRE_E_STRING);
    m.host[0] = '\0'; /* a decode instance needs a data-plane address */
    m.port = 0;
    cr_assert_eq(ctrl_register_encode(BUF, sizeof BUF, &m, &n), WIRE_E_VALUE);
    m.role = CTRL_ROLE_PREFILL;
    n = ENCODE(register, &m);
    cr_assert_eq(patched(dec_register, n, 6, 2, 80, &l), WIRE_E_VALUE); /* port without host */
    cr_assert_eq(patched(dec_register, n, 4, 1, CTRL_ROLE_BOTH, &l), WIRE_E_VALUE);
    cr_assert_eq(patched(dec_register, n, 26, 2, 0, &l), WIRE_E_VALUE); /* empty model */
}

/* ---- encoder rejections ---- */

Test(ctrl_encode, rejects) {
    size_t n;
    ctrl_submit m = submit();
    cr_assert_eq(ctrl_submit_encode(BUF, 56 + 28 + 10, &m, &n), WIRE_E_LIMIT); /* 1 short */
    cr_assert_eq(ctrl_submit_encode(BUF, 56 + 28 + 11, &m, &n), 0);
    cr_assert_eq(n, 95u);
    m.s.temperature = NAN;
    cr_assert_eq(ctrl_submit_encode(BUF, sizeof BUF, &m, &n), WIRE_E_VALUE);
    m = submit();
    m.s.top_p = 0.0f;
    cr_assert_eq(ctrl_submit_encode(BUF, sizeof BUF, &m, &n), WIRE_E_VALUE);
    m = submit();
    m.s.top_k = -7;
    cr_assert_eq(ctrl_submit_encode(BUF, sizeof BUF, &m, &n), WIRE_E_VALUE);
    m = submit();
    m.s.has_seed = false;
    cr_assert_eq(ctrl_submit_encode(BUF, sizeof BUF, &m, &n), WIRE_E_VALUE);
    m = submit();
    m.s.n_stop = CTRL_STOP_MAX + 1;
    cr_assert_eq(ctrl_submit_encode(BUF, sizeof BUF, &m, &n), WIRE_E_LIMIT);
    m = submit();
    m.prompt = NULL;
    cr_assert_eq(ctrl_submit_encode(BUF, sizeof BUF, &m, &n), WIRE_E_VALUE);
    m = submit();
    m.req_id[3] = '\t';
    cr_assert_eq(ctrl_submit_encode(BUF, sizeof BUF, &m, &n), WIRE_E_STRING);
    m = submit();
    memset(m.req_id, 'a', sizeof m.req_id); /* no terminator within 128 + 1 bytes */
    cr_assert_eq(ctrl_submit_encode(BUF, sizeof BUF, &m, &n), WIRE_E_LIMIT);
    m = submit();
    m.n_prompt = CTRL_PROMPT_MAX + 1;
    cr_assert_eq(ctrl_submit_encode(BUF, sizeof BUF, &m, &n), WIRE_E_LIMIT);

    ctrl_tokens t = tokens();
    t.n_top = 2;
    t.has_logprobs = false;
    cr_assert_eq(ctrl_tokens_encode(BUF, sizeof BUF, &t, &n), WIRE_E_VALUE);
    static const float bad_lp[2] = {-1.0f, 0.5f};
    t = tokens();
    t.logprobs = bad_lp;
    cr_assert_eq(ctrl_tokens_encode(BUF, sizeof BUF, &t, &n), WIRE_E_VALUE);
    t = tokens();
    t.top = NULL;
    cr_assert_eq(ctrl_tokens_encode(BUF, sizeof BUF, &t, &n), WIRE_E_VALUE);
    t = tokens();
    cr_assert_eq(ctrl_tokens_encode(BUF, 79, &t, &n), WIRE_E_LIMIT);

    ctrl_reserve_ok r = {.seq_id = 1, .r = resv()};
    r.r.epoch = 0;
    cr_assert_eq(ctrl_reserve_ok_encode(BUF, sizeof BUF, &r, &n), WIRE_E_VALUE);
    r.r = resv();
    r.r.remote_base = UINT64_MAX;
    cr_assert_eq(ctrl_reserve_ok_encode(BUF, sizeof BUF, &r, &n), WIRE_E_VALUE);

    ctrl_prefill p = prefill();
    p.r.n_blocks = 1; /* 16 tokens < ... */
    p.sub.n_prompt = 5;
    cr_assert_eq(ctrl_prefill_encode(BUF, sizeof BUF, &p, &n), 0);
    p.r.block_size = 4;
    cr_assert_eq(ctrl_prefill_encode(BUF, sizeof BUF, &p, &n), WIRE_E_VALUE);
    p = prefill();
    p.port = 0;
    cr_assert_eq(ctrl_prefill_encode(BUF, sizeof BUF, &p, &n), WIRE_E_VALUE);

    ctrl_status s = {.reason = CTRL_OK};
    cr_assert_eq(ctrl_reserve_fail_encode(BUF, sizeof BUF, &s, &n), WIRE_E_VALUE);
    s.reason = 99;
    cr_assert_eq(ctrl_submit_ack_encode(BUF, sizeof BUF, &s, &n), WIRE_E_VALUE);
    ctrl_drain d = {.resume = true, .deadline_ms = 1};
    cr_assert_eq(ctrl_drain_encode(BUF, sizeof BUF, &d, &n), WIRE_E_VALUE);
    ctrl_cancel c = {1};
    cr_assert_eq(ctrl_cancel_encode(BUF, 7, &c, &n), WIRE_E_LIMIT);
    ctrl_load lo = load();
    lo.tokens_per_s = INFINITY;
    cr_assert_eq(ctrl_load_encode(BUF, sizeof BUF, &lo, &n), WIRE_E_VALUE);
    ctrl_kv_data kd = {.seq_id = 1, .epoch = 1, .len = 4};
    cr_assert_eq(ctrl_kv_data_encode(BUF, sizeof BUF, &kd, &n), WIRE_E_VALUE); /* no data */
    ctrl_kv_ready kr = {.seq_id = 1, .epoch = 1, .prompt_len = 1, .checksum = 9};
    cr_assert_eq(ctrl_kv_ready_encode(BUF, sizeof BUF, &kr, &n), WIRE_E_VALUE);
    ctrl_prefill_done pd = done();
    pd.has_logprob = false;
    cr_assert_eq(ctrl_prefill_done_encode(BUF, sizeof BUF, &pd, &n), WIRE_E_VALUE);
}

/* ---- frames: headers, dispatch, limits ---- */

Test(ctrl_frame, header_and_dispatch) {
    ctrl_submit m = submit();
    size_t n = ENCODE(submit, &m);
    wire_hdr h = ctrl_hdr(WIRE_T_CTRL_SUBMIT, 5, 99), g;
    h.payload_len = (uint32_t)n;
    uint8_t hb[WIRE_HDR_SIZE];
    wire_hdr_encode(hb, &h);
    wire_limits wl;
    wire_limits_default(&wl);
    cr_assert_eq(wire_hdr_decode(hb, sizeof hb, &wl, &g), WIRE_E_TYPE); /* data-plane limits */
    ctrl_wire_limits(NULL, CTRL_TYPES_TO_ROUTER, &wl);
    cr_assert_eq(wire_hdr_decode(hb, sizeof hb, &wl, &g), WIRE_E_TYPE); /* not for a router */
    ctrl_wire_limits(NULL, CTRL_TYPES_TO_ATTND, &wl);
    cr_assert_eq(wire_hdr_decode(hb, sizeof hb, &wl, &g), 0);
    cr_assert_eq(g.step, 99u);
    cr_assert_eq(g.sender, 5u);
    cr_assert_eq(g.layer, WIRE_LAYER_NONE);
    cr_assert(wl.types & WIRE_TYPE_BIT(WIRE_T_HEARTBEAT));
    cr_assert(wl.types & WIRE_TYPE_BIT(WIRE_T_GOODBYE));
    cr_assert(!(wl.types & WIRE_TYPE_BIT(WIRE_T_A2F)));
    cr_assert_eq(wl.max_payload, 788015u); /* the largest PREFILL */
    cr_assert_eq(wl.max_tok, 0u);

    wire_hdr bad = h;
    bad.flags = 1;
    wire_hdr_encode(hb, &bad);
    cr_assert_eq(wire_hdr_decode(hb, sizeof hb, &wl, &g), WIRE_E_FLAGS);
    bad = h;
    bad.n_tok = 1;
    wire_hdr_encode(hb, &bad);
    cr_assert_eq(wire_hdr_decode(hb, sizeof hb, &wl, &g), WIRE_E_VALUE);
    bad = h;
    bad.layer = 0;
    wire_hdr_encode(hb, &bad);
    cr_assert_eq(wire_hdr_decode(hb, sizeof hb, &wl, &g), WIRE_E_LAYER);
    bad = h;
    bad.payload_len = wl.max_payload + 1;
    wire_hdr_encode(hb, &bad);
    cr_assert_eq(wire_hdr_decode(hb, sizeof hb, &wl, &g), WIRE_E_LIMIT);

    static ctrl_msg msg;
    cr_assert_eq(ctrl_decode(&h, BUF, n, NULL, &msg), 0);
    cr_assert_eq(msg.type, WIRE_T_CTRL_SUBMIT);
    cr_assert_str_eq(msg.u.submit.req_id, "req-abc-123");
    size_t n2;
    cr_assert_eq(ctrl_encode(RE, sizeof RE, &msg, &n2), 0);
    cr_assert_eq(n2, n);
    cr_assert_eq(memcmp(RE, BUF, n), 0);
    cr_assert_eq(ctrl_decode(&h, BUF, n - 1, NULL, &msg), WIRE_E_TRUNC);
    cr_assert_eq(ctrl_decode(&h, BUF, n + 1, NULL, &msg), WIRE_E_LEN);
    h.type = WIRE_T_CTRL_TOKENS; /* the payload is not a TOKENS */
    cr_assert_neq(ctrl_decode(&h, BUF, n, NULL, &msg), 0);
    h.type = 19;
    cr_assert_eq(ctrl_decode(&h, BUF, n, NULL, &msg), WIRE_E_TYPE);
    h.type = WIRE_T_A2F;
    cr_assert_eq(ctrl_decode(&h, BUF, n, NULL, &msg), WIRE_E_TYPE);
    msg.type = 32;
    cr_assert_eq(ctrl_encode(RE, sizeof RE, &msg, &n2), WIRE_E_TYPE);
}

Test(ctrl_frame, max_payload) {
    ctrl_limits l = lim_default();
    cr_assert_eq(ctrl_max_payload(&l, 0), 0u);
    cr_assert_eq(ctrl_max_payload(&l, WIRE_TYPE_BIT(WIRE_T_CTRL_CANCEL)), 8u);
    cr_assert_eq(ctrl_max_payload(&l, WIRE_TYPE_BIT(WIRE_T_CTRL_LOAD)), 72u);
    /* router side: RESERVE_OK with 65536 blocks and a 1 KiB rkey is the largest */
    cr_assert_eq(ctrl_max_payload(&l, CTRL_TYPES_TO_ROUTER), 56u + 4 * 65536 + 1024);
    cr_assert_eq(ctrl_max_payload(NULL, CTRL_TYPES_HANDOFF), 32u + (4u << 20));
    cr_assert_eq(ctrl_max_payload(&l, WIRE_TYPE_BIT(WIRE_T_CTRL_TOKENS)),
                 32u + 256 * (4 + 4 + 8 * 20) + 512);
    l.max_kv_data = 0xffffffffu; /* capped */
    cr_assert_eq(ctrl_max_payload(&l, CTRL_TYPES_HANDOFF), 32u + CTRL_KV_DATA_MAX);
    wire_limits wl;
    ctrl_wire_limits(NULL, 0, &wl);
    cr_assert_eq(wl.max_payload, (uint32_t)WIRE_MSG_MAX_LEN);
    ctrl_limits hard = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu,
                        0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu,
                        0xffffffffu, 0xffffffffu, 0xffffffffu, 0};
    size_t big = ctrl_max_payload(&hard, CTRL_TYPES_TO_ATTND); /* PREFILL */
    cr_assert_eq(big, 112u + 4ull * (CTRL_PROMPT_MAX + CTRL_STOP_MAX + CTRL_BLOCKS_MAX) +
                          CTRL_RKEY_MAX + CTRL_REQ_ID_MAX + CTRL_HOST_MAX);
    big = ctrl_max_payload(&hard, CTRL_TYPES_ALL); /* KV_DATA */
    cr_assert_eq(big, 32u + CTRL_KV_DATA_MAX);
    cr_assert_lt(big, (size_t)UINT32_MAX);
}

/* ---- seeds from the documented layout ---- */

static size_t read_file(const char *path, uint8_t *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

Test(ctrl_seeds, decode_and_reencode) {
    const char *src = getenv("AFD_SRC") ? getenv("AFD_SRC") : ".";
    char dir[4096], path[4096 + 512];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/ctrl", src);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no seed directory %s", dir);
    wire_limits wl;
    ctrl_wire_limits(NULL, CTRL_TYPES_ALL, &wl);
    static ctrl_msg msg;
    int seen = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!strstr(e->d_name, ".bin")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t n = read_file(path, PATCH, sizeof PATCH);
        wire_hdr h;
        cr_assert_eq(wire_hdr_decode(PATCH, n, &wl, &h), 0, "%s: header", e->d_name);
        memcpy(BUF, PATCH + WIRE_HDR_SIZE, n - WIRE_HDR_SIZE);
        int rc = ctrl_decode(&h, BUF, n - WIRE_HDR_SIZE, NULL, &msg);
        cr_assert_eq(rc, 0, "%s: %s", e->d_name, wire_strerror(rc));
        size_t n2;
        cr_assert_eq(ctrl_encode(RE, sizeof RE, &msg, &n2), 0, "%s", e->d_name);
        cr_assert_eq(n2, n - WIRE_HDR_SIZE, "%s", e->d_name);
        cr_assert_eq(memcmp(RE, BUF, n2), 0, "%s: re-encoding differs", e->d_name);
        if (!strcmp(e->d_name, "submit.bin")) {
            cr_assert_str_eq(msg.u.submit.req_id, "req-abc-123");
            cr_assert_eq(fbits(msg.u.submit.s.temperature), fbits(0.7f));
            cr_assert_eq(msg.u.submit.s.seed, 1234u);
            cr_assert_eq(msg.u.submit.prompt[3], 300u);
        }
        if (!strcmp(e->d_name, "prefill.bin")) {
            cr_assert_str_eq(msg.u.prefill.host, "10.0.0.2");
            cr_assert_eq(msg.u.prefill.r.block_ids[1], 9u);
            cr_assert_eq(msg.u.prefill.r.rkey[39], 39);
        }
        seen |= 1 << (h.type - WIRE_T_CTRL_FIRST);
    }
    closedir(d);
    int want = 0;
    for (int t = WIRE_T_CTRL_REGISTER; t <= WIRE_T_CTRL_KV_DATA; t++)
        if (t != 19) want |= 1 << (t - WIRE_T_CTRL_FIRST);
    cr_assert_eq(seen, want, "seeds cover types 0x%x, want 0x%x", seen, want);
}

/* ---- helpers and names ---- */

Test(ctrl_names, all) {
    cr_assert_str_eq(ctrl_type_name(WIRE_T_CTRL_SUBMIT), "SUBMIT");
    cr_assert_str_eq(ctrl_type_name(WIRE_T_CTRL_PREFILL_DONE), "PREFILL_DONE");
    cr_assert_str_eq(ctrl_type_name(WIRE_T_CTRL_KV_DATA), "KV_DATA");
    cr_assert_str_eq(ctrl_type_name(19), "CTRL");
    cr_assert_str_eq(ctrl_type_name(WIRE_T_F2A), "F2A");
    cr_assert_str_eq(ctrl_type_name(-1), "UNKNOWN");
    for (int a = 0; a <= CTRL_R_MAX; a++)
        for (int b = 0; b < a; b++)
            cr_assert_str_neq(ctrl_reason_name(a), ctrl_reason_name(b));
    cr_assert_str_eq(ctrl_reason_name(CTRL_R_KV_FULL), "kv_full");
    cr_assert_str_eq(ctrl_reason_name(CTRL_R_MAX + 1), "unknown");
    cr_assert_str_eq(ctrl_finish_name(CTRL_FINISH_LENGTH), "length");
    cr_assert_str_eq(ctrl_finish_name(9), "unknown");
    cr_assert_str_eq(ctrl_role_name(CTRL_ROLE_BOTH), "both");
    cr_assert_str_eq(ctrl_role_name(0), "unknown");
}

Test(ctrl_names, checksum) {
    cr_assert_eq(ctrl_kv_checksum(CTRL_CHECKSUM_INIT, "", 0), 0xcbf29ce484222325ull);
    cr_assert_eq(ctrl_kv_checksum(CTRL_CHECKSUM_INIT, "a", 1), 0xaf63dc4c8601ec8cull);
    cr_assert_eq(ctrl_kv_checksum(CTRL_CHECKSUM_INIT, "foobar", 6), 0x85944171f73967e8ull);
    uint64_t h = ctrl_kv_checksum(CTRL_CHECKSUM_INIT, "foo", 3);
    cr_assert_eq(ctrl_kv_checksum(h, "bar", 3), 0x85944171f73967e8ull, "streaming");
}

/* ---- over the transport: a router end and an attnd end on 127.0.0.1 ---- */

/* One end: its context, the control types it takes, and what it saw. */
typedef struct ctl_end {
    xp_ctx *c;
    uint64_t types;
    int frames, downs, down_reason, decode_rc;
    wire_hdr last;
    uint32_t prompt_last; /* SUBMIT / PREFILL: the last prompt id, read in on_frame */
    char req_id[CTRL_REQ_ID_MAX + 1];
    uint32_t ack_reason;
} ctl_end;

static _Alignas(8) uint8_t ACK_BUF[64]; /* the attnd's reply: lives until on_down */

static void ctl_limits(xp_peer *p, uint64_t types) {
    wire_limits wl;
    ctrl_wire_limits(NULL, types, &wl);
    xp_peer_set_limits(p, &wl);
}

static int ce_accept(void *ud, xp_peer *p) {
    ctl_limits(p, ((ctl_end *)ud)->types);
    return 0;
}

/* The attnd answers SUBMIT and PREFILL with a SUBMIT_ACK carrying the request number. */
static void ce_answer(xp_peer *p, const wire_hdr *h, uint64_t seq_id) {
    ctrl_status ack = {.seq_id = seq_id};
    size_t n;
    cr_assert_eq(ctrl_submit_ack_encode(ACK_BUF, sizeof ACK_BUF, &ack, &n), 0);
    wire_hdr r = ctrl_hdr(WIRE_T_CTRL_SUBMIT_ACK, 2, h->step);
    cr_assert_eq(xp_send(p, &r, ACK_BUF, n, NULL, NULL), 0);
}

static int ce_frame(void *ud, xp_peer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    ctl_end *e = ud;
    static ctrl_msg m;
    e->frames++;
    e->last = *h;
    e->decode_rc = ctrl_decode(h, pl, len, NULL, &m);
    if (e->decode_rc) return e->decode_rc; /* drops the peer */
    if (m.type == WIRE_T_CTRL_SUBMIT || m.type == WIRE_T_CTRL_PREFILL) {
        const ctrl_submit *s = m.type == WIRE_T_CTRL_SUBMIT ? &m.u.submit : &m.u.prefill.sub;
        e->prompt_last = s->prompt[s->n_prompt - 1];
        strcpy(e->req_id, s->req_id);
        ce_answer(p, h, s->seq_id);
    }
    if (m.type == WIRE_T_CTRL_SUBMIT_ACK) e->ack_reason = m.u.submit_ack.reason;
    return 0;
}

static void ce_down(void *ud, xp_peer *p, int reason, const char *why) {
    ctl_end *e = ud;
    e->downs++;
    e->down_reason = reason;
}

static const xp_handlers CE_HANDLERS = {ce_accept, ce_frame, ce_down};

static void ce_init(ctl_end *e, uint64_t types) {
    memset(e, 0, sizeof *e);
    e->types = types;
    xp_opts o;
    xp_opts_default(&o);
    o.ucx_net_devices = "lo";
    o.close_timeout_ms = 300;
    afd_err err = {0};
    int rc = xp_init(&e->c, &o, &CE_HANDLERS, e, &err);
    cr_assert_eq(rc, 0, "xp_init: %d %s", rc, err.msg);
}

/* Progresses both ends until *v >= want or 5 s pass. */
static bool ce_pump(ctl_end *a, ctl_end *b, const int *v, int want) {
    for (int i = 0; i < 500000 && *v < want; i++)
        if (xp_progress(a->c) + xp_progress(b->c) == 0) xp_wait(a->c, 1);
    return *v >= want;
}

static void ctl_env(void) {
    setenv("UCX_NET_DEVICES", "lo", 1);
}

TestSuite(ctrl_xport, .init = ctl_env, .timeout = 30);

Test(ctrl_xport, submit_ack_and_refused_type) {
    ctl_end attnd, router;
    ce_init(&attnd, CTRL_TYPES_TO_ATTND);
    ce_init(&router, CTRL_TYPES_TO_ROUTER);
    int port = 0;
    afd_err err = {0};
    cr_assert_eq(xp_listen(attnd.c, "127.0.0.1", 0, &port, &err), 0, "%s", err.msg);
    xp_peer *p = NULL;
    cr_assert_eq(xp_connect(router.c, "127.0.0.1", port, &p, &err), 0, "%s", err.msg);
    ctl_limits(p, router.types);

    /* a small SUBMIT (eager), then a PREFILL with the largest prompt (rendezvous) */
    static uint32_t prompt[131072], ids[8192];
    for (uint32_t i = 0; i < 131072; i++)
        prompt[i] = i;
    ctrl_submit s = submit();
    size_t n;
    cr_assert_eq(ctrl_submit_encode(BUF, sizeof BUF, &s, &n), 0);
    wire_hdr h = ctrl_hdr(WIRE_T_CTRL_SUBMIT, 1, 1001);
    cr_assert_eq(xp_send(p, &h, BUF, n, NULL, NULL), 0);
    cr_assert(ce_pump(&attnd, &router, &router.frames, 1), "no SUBMIT_ACK");
    cr_assert_eq(attnd.decode_rc, 0, "%s", wire_strerror(attnd.decode_rc));
    cr_assert_str_eq(attnd.req_id, "req-abc-123");
    cr_assert_eq(attnd.prompt_last, 400u);
    cr_assert_eq(router.decode_rc, 0);
    cr_assert_eq(router.last.type, WIRE_T_CTRL_SUBMIT_ACK);
    cr_assert_eq(router.last.step, 1001u, "the reply carries the request number");

    ctrl_prefill pf = prefill();
    pf.sub.n_prompt = 131072;
    pf.sub.prompt = prompt;
    pf.r.n_blocks = 8192;
    pf.r.block_ids = ids;
    cr_assert_eq(ctrl_prefill_encode(RE, sizeof RE, &pf, &n), 0);
    h = ctrl_hdr(WIRE_T_CTRL_PREFILL, 1, 1002);
    cr_assert_eq(xp_send(p, &h, RE, n, NULL, NULL), 0);
    cr_assert(ce_pump(&attnd, &router, &router.frames, 2), "no answer to PREFILL");
    cr_assert_eq(attnd.prompt_last, 131071u);
    cr_assert_eq(router.last.step, 1002u);

    /* TOKENS is not something an attnd takes: the header drops the peer */
    ctrl_tokens t = tokens();
    cr_assert_eq(ctrl_tokens_encode(PATCH, sizeof PATCH, &t, &n), 0);
    h = ctrl_hdr(WIRE_T_CTRL_TOKENS, 1, 1003);
    cr_assert_eq(xp_send(p, &h, PATCH, n, NULL, NULL), 0);
    cr_assert(ce_pump(&attnd, &router, &attnd.downs, 1), "attnd kept a peer sending TOKENS");
    cr_assert_eq(attnd.down_reason, XP_DOWN_BAD_FRAME, "%s", xp_down_name(attnd.down_reason));
    cr_assert_eq(attnd.frames, 2, "the TOKENS frame reached on_frame");
    cr_assert(ce_pump(&attnd, &router, &router.downs, 1), "router did not see the drop");
    xp_free(router.c);
    xp_free(attnd.c);
}
