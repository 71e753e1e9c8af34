/* ffnd's batcher: coalesced answers equal the single-process FFN bit for bit; shards add up. */
#include <errno.h>
#include <math.h>

#include "ffnd/batcher.h"
#include "tests/unit/ffnd/ffnd_util.h"

static char model_dir[256];
static afd_backend *be;

static void setup(void) {
    ft_make_model(model_dir, sizeof model_dir, "fp8", 5);
    cr_assert_eq(afd_cpu_backend_new(NULL, 2, &be), 0);
}

static void teardown(void) {
    afd_backend_free(be);
    ft_rm(model_dir);
}

TestSuite(batcher, .init = setup, .fini = teardown, .timeout = 60);

static wire_dims dims_of(const afd_model_config *c, uint8_t f2a) {
    wire_dims d = {.hidden = (uint32_t)c->hidden, .top_k = (uint32_t)c->top_k,
                   .n_experts = (uint32_t)c->n_experts, .n_layers = (uint32_t)c->n_layers,
                   .a2f_dtype = WIRE_DT_E4M3, .f2a_dtype = f2a};
    return d;
}

/* Runs requests of sizes n[0..nr) through one batch for `layer`; out[i] gets request i's F32
 * answer. */
static void run_batch(const afd_weights *w, int layer, int nr, const int *n, uint8_t **pl,
                      wire_a2f *a, float **out) {
    ffn_batcher b;
    cr_assert_eq(fb_init(&b, be, w, 64, 8, 0), 0);
    wire_dims d = dims_of(&w->cfg, WIRE_DT_F32);
    for (int i = 0; i < nr; i++) {
        wire_hdr h = {.type = WIRE_T_A2F, .flags = a[i].moe ? WIRE_F_MOE : 0, .mb = (uint16_t)i,
                      .layer = (uint16_t)layer, .step = 9, .n_tok = (uint32_t)n[i]};
        cr_assert(fb_fits(&b, layer, n[i]));
        cr_assert_eq(fb_add(&b, &h, &a[i], (void *)pl[i]), i);
    }
    cr_assert_eq(fb_run(&b), 0);
    for (int i = 0; i < nr; i++) {
        size_t sz = wire_f2a_size_dt(&d, (uint32_t)n[i], WIRE_DT_F32);
        uint8_t *buf = aligned_alloc(64, (sz + 63) & ~(size_t)63);
        cr_assert_eq(fb_encode(&b, i, &d, WIRE_DT_F32, buf), 0);
        memcpy(out[i], buf, sz);
        free(buf);
    }
    fb_free(&b);
}

static void coalesced_equals_alone(int layer) {
    ft_model m;
    ft_load(&m, model_dir, NULL);
    const afd_model_config *c = &m.w.cfg;
    bool moe = c->is_moe[layer];
    int n[3] = {3, 1, 5};
    uint8_t *pl[3];
    wire_a2f a[3];
    float *got[3], *want[3];
    uint64_t seed = 77 + (uint64_t)layer;
    wire_dims d = dims_of(c, WIRE_DT_F32);
    for (int i = 0; i < 3; i++) {
        pl[i] = aligned_alloc(64, (wire_a2f_size(&d, (uint32_t)n[i], moe) + 63) & ~(size_t)63);
        ft_fill_a2f(be, c, moe, n[i], &seed, pl[i], &a[i]);
        got[i] = xmalloc((size_t)n[i] * (size_t)c->hidden * sizeof(float));
        want[i] = xmalloc((size_t)n[i] * (size_t)c->hidden * sizeof(float));
        ft_reference(be, &m.w, layer, &a[i], want[i]);
    }
    run_batch(&m.w, layer, 3, n, pl, a, got);
    for (int i = 0; i < 3; i++) {
        size_t N = (size_t)n[i] * (size_t)c->hidden;
        for (size_t j = 0; j < N; j++)
            cr_assert_eq(memcmp(&got[i][j], &want[i][j], 4), 0,
                         "layer %d request %d element %zu: batched %.9g, alone %.9g", layer, i,
                         j, got[i][j], want[i][j]);
        double norm = 0;
        for (size_t j = 0; j < N; j++)
            norm += (double)want[i][j] * want[i][j];
        cr_assert_gt(norm, 0.0, "an all-zero answer proves nothing");
        free(got[i]), free(want[i]), free(pl[i]);
    }
    ft_unload(&m);
}

Test(batcher, coalesced_moe_layer_bitwise_equals_alone) { coalesced_equals_alone(1); }
Test(batcher, coalesced_dense_layer_bitwise_equals_alone) { coalesced_equals_alone(0); }

/* Two shards of a group (EP or TP) add up to the whole FFN within fp32 rounding. */
static void shards_sum(int ep_size, int tp_size, int layer) {
    ft_model full, sh[2];
    ft_load(&full, model_dir, NULL);
    const afd_model_config *c = &full.w.cfg;
    afd_err err = {0};
    for (int r = 0; r < 2; r++) {
        afd_shard s;
        cr_assert_eq(afd_shard_group(c, ep_size > 1 ? r : 0, ep_size, tp_size > 1 ? r : 0,
                                     tp_size, &s, &err),
                     0, "%s", err.msg);
        ft_load(&sh[r], model_dir, &s);
    }
    bool moe = c->is_moe[layer];
    int n = 6;
    wire_dims d = dims_of(c, WIRE_DT_F32);
    uint8_t *pl = aligned_alloc(64, (wire_a2f_size(&d, (uint32_t)n, moe) + 63) & ~(size_t)63);
    wire_a2f a;
    uint64_t seed = 1234;
    ft_fill_a2f(be, c, moe, n, &seed, pl, &a);
    size_t N = (size_t)n * (size_t)c->hidden;
    float *want = xmalloc(N * 4), *p0 = xmalloc(N * 4), *p1 = xmalloc(N * 4);
    ft_reference(be, &full.w, layer, &a, want);
    run_batch(&sh[0].w, layer, 1, &n, &pl, &a, &p0);
    run_batch(&sh[1].w, layer, 1, &n, &pl, &a, &p1);
    double err2 = 0, ref2 = 0, part2 = 0;
    for (size_t j = 0; j < N; j++) {
        double s = (double)(0.0f + p0[j] + p1[j]);
        err2 += (s - want[j]) * (s - want[j]);
        ref2 += (double)want[j] * want[j];
        part2 += (double)p0[j] * p0[j];
    }
    double rel = sqrt(err2 / ref2);
    cr_assert_lt(rel, 1e-5, "ep %d tp %d layer %d: rel L2 %.3g", ep_size, tp_size, layer, rel);
    cr_assert_gt(part2, 0.0, "shard 0 contributed nothing");
    cr_assert_gt(sqrt(part2 / ref2), 1e-3, "shard 0's part is negligible: not a real split");
    free(want), free(p0), free(p1), free(pl);
    ft_unload(&sh[0]);
    ft_unload(&sh[1]);
    ft_unload(&full);
}

Test(batcher, two_ep_shards_sum_to_whole_moe) { shards_sum(2, 1, 1); }
Test(batcher, two_tp_shards_sum_to_whole_moe) { shards_sum(1, 2, 1); }
Test(batcher, two_ep_shards_sum_to_whole_dense) { shards_sum(2, 1, 0); }
Test(batcher, two_tp_shards_sum_to_whole_dense) { shards_sum(1, 2, 0); }

Test(batcher, refuses_what_does_not_fit) {
    ft_model m;
    ft_load(&m, model_dir, NULL);
    ffn_batcher b;
    cr_assert_eq(fb_init(&b, be, &m.w, 8, 2, 0), 0);
    cr_assert_not(fb_fits(&b, 1, 9), "9 tokens fit a batch of 8");
    cr_assert_not(fb_fits(&b, 1, 0));
    wire_dims d = dims_of(&m.w.cfg, WIRE_DT_F32);
    uint8_t *pl = aligned_alloc(64, (wire_a2f_size(&d, 4, true) + 63) & ~(size_t)63);
    wire_a2f a;
    uint64_t seed = 3;
    ft_fill_a2f(be, &m.w.cfg, true, 4, &seed, pl, &a);
    wire_hdr h = {.type = WIRE_T_A2F, .flags = WIRE_F_MOE, .layer = 1, .n_tok = 4};
    cr_assert_eq(fb_add(&b, &h, &a, NULL), 0);
    cr_assert_not(fb_fits(&b, 2, 1), "another layer joined an open batch");
    cr_assert(fb_fits(&b, 1, 4));
    cr_assert_not(fb_fits(&b, 1, 5), "over capacity");
    cr_assert_eq(fb_add(&b, &h, &a, NULL), 1);
    cr_assert_not(fb_fits(&b, 1, 0), "max_req reached");
    cr_assert_eq(fb_add(&b, &h, &a, NULL), -EINVAL);
    fb_reset(&b);
    cr_assert(fb_fits(&b, 2, 8));
    fb_free(&b);
    free(pl);
    ft_unload(&m);
}
