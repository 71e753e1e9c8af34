/* ffnd_util.h: shared by the ffnd tests: a generated model, A2F payloads, in-process answers. */
#ifndef AFD_TEST_FFND_UTIL_H
#define AFD_TEST_FFND_UTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/backend/backend.h"
#include "common/base/alloc.h"
#include "common/layers/ffn.h"
#include "common/model/weights.h"
#include "proto/wire.h"

/* tiny, with expert and shared dims of two 128-blocks so that 2 TP ranks hold one each */
#define FT_CONFIG "{\"moe_intermediate_size\": 256, \"share_expert_dim\": 256}"

static inline const char *ft_build(void) {
    const char *b = getenv("AFD_BUILD");
    return b && *b ? b : "build";
}

/* Generates the test model into a fresh temp dir (dtype "bf16" or "fp8"); returns the dir. */
static inline void ft_make_model(char *dir, size_t n, const char *dtype, int seed) {
    snprintf(dir, n, "/tmp/afd-ffnd-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp");
    char cfg[300], cmd[1200];
    snprintf(cfg, sizeof cfg, "%s/c.json", dir);
    FILE *f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fputs(FT_CONFIG, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s/bin/afd-mkmodel --quiet --config %s --dtype %s --seed %d --out %s/m --force "
             ">/dev/null 2>&1",
             ft_build(), cfg, dtype, seed, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(dir + strlen(dir), n - strlen(dir), "/m");
}

static inline void ft_rm(const char *dir) {
    char cmd[600];
    /* dir is .../afd-ffnd-test-XXXXXX/m: remove the parent */
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strrchr(dir, '/') - dir), dir);
    cr_assert_eq(system(cmd), 0);
}

typedef struct ft_model {
    st_set *set;
    afd_weights w;
} ft_model;

static inline void ft_load(ft_model *m, const char *dir, const afd_shard *sh) {
    afd_err err = {0};
    int rc = afd_model_open(dir, AFD_PART_FFN, sh, &m->w, &m->set, &err);
    cr_assert_eq(rc, 0, "load %s: %s", dir, err.msg);
}

static inline void ft_unload(ft_model *m) {
    afd_weights_free(&m->w);
    st_set_free(m->set);
}

static inline uint64_t ft_rng(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static inline float ft_uniform(uint64_t *s) {
    return (float)((ft_rng(s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* Fills the sections of a laid-out A2F view: hidden states ~U(-2, 2) quantized per token,
 * distinct random experts with positive weights. */
static inline void ft_fill_view(afd_backend *be, const afd_model_config *c, uint64_t *seed,
                                wire_a2f *a) {
    int T = (int)a->n_tok;
    float *x = xmalloc((size_t)T * (size_t)c->hidden * sizeof(float));
    for (size_t i = 0; i < (size_t)T * (size_t)c->hidden; i++)
        x[i] = 2.0f * ft_uniform(seed);
    afd_be_quantize_fp8(be, a->q, a->scales, x, T, c->hidden, c->hidden);
    free(x);
    if (!a->moe)
        return;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < c->top_k; j++) {
            uint16_t id;
            bool dup;
            do {
                id = (uint16_t)(ft_rng(seed) % (uint64_t)c->n_experts);
                dup = false;
                for (int i = 0; i < j; i++)
                    dup |= a->ids[t * c->top_k + i] == id;
            } while (dup);
            a->ids[t * c->top_k + j] = id;
            a->weights[t * c->top_k + j] = 0.1f + 0.5f * (ft_uniform(seed) + 1.0f);
        }
}

/* Lays out and fills an A2F payload of T tokens (payload WIRE_ALIGN aligned). */
static inline void ft_fill_a2f(afd_backend *be, const afd_model_config *c, bool moe, int T,
                               uint64_t *seed, uint8_t *payload, wire_a2f *a) {
    wire_dims d = {.hidden = (uint32_t)c->hidden, .top_k = (uint32_t)c->top_k,
                   .n_experts = (uint32_t)c->n_experts, .n_layers = (uint32_t)c->n_layers,
                   .a2f_dtype = WIRE_DT_E4M3, .f2a_dtype = WIRE_DT_F32};
    cr_assert_eq(wire_a2f_layout(&d, (uint32_t)T, moe, payload, a), 0);
    ft_fill_view(be, c, seed, a);
}

/* The in-process answer: the single-process engine's FFN on the dequantized rows. */
static inline void ft_reference(afd_backend *be, const afd_weights *w, int layer,
                                const wire_a2f *a, float *out) {
    const afd_model_config *c = &w->cfg;
    int T = (int)a->n_tok, H = c->hidden, k = c->top_k;
    float *f = xmalloc((size_t)T * (size_t)H * sizeof(float));
    int32_t *ids = xcalloc((size_t)T * (size_t)k + 1, sizeof(int32_t));
    afd_be_dequantize_fp8(be, f, a->q, a->scales, T, H, H);
    for (int i = 0; a->moe && i < T * k; i++)
        ids[i] = a->ids[i];
    afd_ffn_scratch s;
    cr_assert_eq(afd_ffn_scratch_init(&s, be, c, T), 0);
    cr_assert_eq(afd_ffn_forward(&s, c, &w->layers[layer], &w->shard, true, out, f, T, ids,
                                 a->weights),
                 0);
    afd_ffn_scratch_free(&s);
    free(f);
    free(ids);
}

#endif
