/* Weight loading: a small Step-3-shaped checkpoint written with st_writer (hidden 256, 3
 * layers with layer 1 MoE, 4 experts, head_dim 64) in BF16, block-FP8 and mixed; views of
 * stacked experts, FP8 scale addressing of TP slices, EP ranges, parts, and refusals. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/base/numfmt.h"
#include "common/model/weights.h"
#include "tests/unit/model/ckpt_util.h"

/* ---- a checkpoint generator --------------------------------------------------------------- */

typedef struct ck_spec {
    afd_model_config cfg;
    afd_dtype attn_dt, kv_dt, expert_dt, shared_dt, dense_dt, norm_dt; /* BF16 or F8_E4M3 */
    afd_dtype scale_dt;                                                /* F32 or BF16 */
    const char *prefix;                                                /* "" or "language_model." */
    const char *skip;     /* tensors whose name contains any ';'-separated part are left out */
    const char *bad_name; /* this tensor gets first dimension bad_dim0 */
    int64_t bad_dim0;
    bool misalign;         /* a 1-byte tensor first: every later tensor is unaligned */
    bool shards;           /* two files + model.safetensors.index.json */
    const char *nan_scale; /* this scale tensor gets a NaN */
} ck_spec;

typedef struct ck_t {
    char name[160];
    afd_dtype dt;
    int ndim;
    int64_t shape[3];
    bool norm;
} ck_t;

typedef struct ck_list {
    ck_t t[256];
    int n;
} ck_list;

static void small_cfg(afd_model_config *c) {
    afd_config_defaults(c);
    c->n_layers = 3, c->hidden = 256, c->vocab = 512;
    c->n_heads = 2, c->n_kv_heads = 1, c->head_dim = 64, c->share_q_dim = 128;
    c->inter_dense = 384, c->n_experts = 4, c->top_k = 2, c->moe_inter = 256;
    c->share_inter = 256, c->bos_id = 0, c->eos_id = 1;
    memset(c->is_moe, 0, sizeof c->is_moe);
    c->is_moe[1] = 1;
}

static void spec_init(ck_spec *s, afd_dtype proj_dt) {
    memset(s, 0, sizeof *s);
    small_cfg(&s->cfg);
    s->attn_dt = s->kv_dt = s->expert_dt = s->shared_dt = s->dense_dt = proj_dt;
    s->norm_dt = AFD_DT_BF16;
    s->scale_dt = AFD_DT_F32;
    s->prefix = "";
}

static void add(ck_list *l, const ck_spec *s, const char *name, afd_dtype dt, int ndim, int64_t a,
                int64_t b, int64_t c, bool norm) {
    ck_t *t = &l->t[l->n++];
    cr_assert_lt(l->n, 250);
    snprintf(t->name, sizeof t->name, "%s%s", s->prefix, name);
    t->dt = dt, t->ndim = ndim, t->norm = norm;
    int64_t sh[3] = {a, b, c};
    memcpy(t->shape, sh, sizeof sh);
    if (s->bad_name && strcmp(name, s->bad_name) == 0) t->shape[0] = s->bad_dim0;
    if (dt != AFD_DT_F8_E4M3) return;
    ck_t *sc = &l->t[l->n++];
    snprintf(sc->name, sizeof sc->name, "%s%s_scale_inv", s->prefix, name);
    sc->dt = s->scale_dt, sc->ndim = ndim, sc->norm = false;
    for (int i = 0; i < ndim; i++)
        sc->shape[i] = (ndim == 3 && i == 0) ? t->shape[0] : (t->shape[i] + 127) / 128;
    if (s->bad_name && strstr(s->bad_name, "_scale_inv") &&
        strncmp(s->bad_name, name, strlen(name)) == 0)
        sc->shape[0] = s->bad_dim0;
}

static void add_layer_name(char *buf, size_t cap, int i, const char *suffix) {
    snprintf(buf, cap, "model.layers.%d.%s", i, suffix);
}

static void add_mlp(ck_list *l, const ck_spec *s, int i, const char *pre, int64_t inter,
                    afd_dtype dt, int n) {
    const afd_model_config *c = &s->cfg;
    char name[160], suffix[96];
    const char *parts[3] = {"gate_proj", "up_proj", "down_proj"};
    for (int k = 0; k < 3; k++) {
        snprintf(suffix, sizeof suffix, "%s.%s.weight", pre, parts[k]);
        add_layer_name(name, sizeof name, i, suffix);
        int64_t r = k < 2 ? inter : c->hidden, col = k < 2 ? c->hidden : inter;
        if (n)
            add(l, s, name, dt, 3, n, r, col, false);
        else
            add(l, s, name, dt, 2, r, col, 0, false);
    }
}

static void build_list(ck_list *l, const ck_spec *s) {
    const afd_model_config *c = &s->cfg;
    int64_t H = c->hidden, Q = c->share_q_dim, HD = (int64_t)c->n_heads * c->head_dim;
    int64_t KV = (int64_t)c->n_kv_heads * c->head_dim;
    char n[160];
    l->n = 0;
    if (s->misalign) add(l, s, "aaa.pad", AFD_DT_U8, 1, 1, 0, 0, false);
    add(l, s, "model.embed_tokens.weight", AFD_DT_BF16, 2, c->vocab, H, 0, false);
    for (int i = 0; i < c->n_layers; i++) {
        add_layer_name(n, sizeof n, i, "input_layernorm.weight");
        add(l, s, n, s->norm_dt, 1, H, 0, 0, true);
        add_layer_name(n, sizeof n, i, "self_attn.q_proj.weight");
        add(l, s, n, s->attn_dt, 2, Q, H, 0, false);
        add_layer_name(n, sizeof n, i, "self_attn.inter_norm.weight");
        add(l, s, n, s->norm_dt, 1, Q, 0, 0, true);
        add_layer_name(n, sizeof n, i, "self_attn.wq.weight");
        add(l, s, n, s->attn_dt, 2, HD, Q, 0, false);
        add_layer_name(n, sizeof n, i, "self_attn.k_proj.weight");
        add(l, s, n, s->kv_dt, 2, KV, H, 0, false);
        add_layer_name(n, sizeof n, i, "self_attn.v_proj.weight");
        add(l, s, n, s->kv_dt, 2, KV, H, 0, false);
        add_layer_name(n, sizeof n, i, "self_attn.o_proj.weight");
        add(l, s, n, s->attn_dt, 2, H, HD, 0, false);
        add_layer_name(n, sizeof n, i, "post_attention_layernorm.weight");
        add(l, s, n, s->norm_dt, 1, H, 0, 0, true);
        if (!c->is_moe[i]) {
            add_mlp(l, s, i, "mlp", c->inter_dense, s->dense_dt, 0);
            continue;
        }
        add_layer_name(n, sizeof n, i, "moe.gate.weight");
        add(l, s, n, AFD_DT_BF16, 2, c->n_experts, H, 0, false);
        add_mlp(l, s, i, "moe", c->moe_inter, s->expert_dt, c->n_experts);
        add_mlp(l, s, i, "share_expert", c->share_inter, s->shared_dt, 0);
    }
    add(l, s, "model.norm.weight", AFD_DT_BF16, 1, H, 0, 0, true);
    add(l, s, "lm_head.weight", AFD_DT_BF16, 2, c->vocab, H, 0, false);
}

static bool skipped(const ck_spec *s, const char *name) {
    if (!s->skip) return false;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s->skip);
    for (char *save = NULL, *p = strtok_r(buf, ";", &save); p; p = strtok_r(NULL, ";", &save))
        if (strstr(name, p)) return true;
    return false;
}

static uint32_t name_seed(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h % 251;
}

/* Deterministic values: small BF16 weights, norms near 1, e4m3 codes (never NaN), scales in
 * [0.5, 1.5]. */
static void fill(const ck_spec *s, const ck_t *t, uint8_t *buf, uint64_t nbytes) {
    uint32_t seed = name_seed(t->name);
    size_t es = afd_dtype_size(t->dt);
    bool nan = s->nan_scale && strstr(t->name, s->nan_scale);
    for (uint64_t i = 0; i < nbytes / es; i++) {
        float f;
        uint16_t h;
        switch (t->dt) {
        case AFD_DT_BF16:
            f = t->norm ? 1.0f + 0.001f * (float)((i + seed) % 17)
                        : 0.01f * (float)((int)((i * 7 + seed) % 13) - 6);
            if (strstr(t->name, "scale_inv")) f = 0.5f + 0.25f * (float)((i + seed) % 5);
            h = afd_f32_to_bf16(f);
            memcpy(buf + 2 * i, &h, 2);
            break;
        case AFD_DT_F8_E4M3:
            buf[i] = (uint8_t)((i * 5 + seed) % 0x7e);
            break;
        case AFD_DT_F32:
            f = nan && i == 1 ? NAN : 0.5f + 0.25f * (float)((i + seed) % 5);
            memcpy(buf + 4 * i, &f, 4);
            break;
        default:
            buf[i] = (uint8_t)i;
            break;
        }
    }
}

static uint64_t nbytes_of(const ck_t *t) {
    uint64_t n = afd_dtype_size(t->dt);
    for (int i = 0; i < t->ndim; i++)
        n *= (uint64_t)t->shape[i];
    return n;
}

static void write_file(const ck_spec *s, const ck_list *l, const char *path, int shard,
                       int n_shards) {
    st_writer *w = st_writer_new();
    for (int i = 0; i < l->n; i++)
        if (!skipped(s, l->t[i].name) && i % n_shards == shard)
            cr_assert_eq(st_writer_add(w, l->t[i].name, l->t[i].dt, l->t[i].ndim, l->t[i].shape), 0,
                         "%s", l->t[i].name);
    afd_err err = {0};
    cr_assert_eq(st_writer_begin(w, path, "{\"format\":\"pt\"}", &err), 0, "%s", err.msg);
    for (int i = 0; i < l->n; i++) {
        if (skipped(s, l->t[i].name) || i % n_shards != shard) continue;
        uint64_t n = nbytes_of(&l->t[i]);
        uint8_t *buf = malloc(n ? n : 1);
        fill(s, &l->t[i], buf, n);
        cr_assert_eq(st_writer_data(w, buf, n, &err), 0, "%s", err.msg);
        free(buf);
    }
    cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
}

static void write_config(const ck_spec *s, const char *dir) {
    const afd_model_config *c = &s->cfg;
    char text[2048], moe[256] = "", path[512];
    size_t m = 0;
    for (int i = 0; i < c->n_layers; i++)
        if (c->is_moe[i]) m += (size_t)snprintf(moe + m, sizeof moe - m, "%s%d", m ? "," : "", i);
    bool fp8 = s->attn_dt == AFD_DT_F8_E4M3 || s->expert_dt == AFD_DT_F8_E4M3;
    snprintf(text, sizeof text,
             "{\"model_type\":\"step3_vl\",\"text_config\":{\"hidden_size\":%d,"
             "\"num_hidden_layers\":%d,\"vocab_size\":%d,\"num_attention_heads\":%d,"
             "\"num_attention_groups\":%d,\"head_dim\":%d,\"share_q_dim\":%d,"
             "\"intermediate_size\":%d,\"moe_num_experts\":%d,\"moe_top_k\":%d,"
             "\"moe_intermediate_size\":%d,\"share_expert_dim\":%d,\"moe_layers_enum\":\"%s\","
             "\"bos_token_id\":%d,\"eos_token_id\":%d}%s}",
             c->hidden, c->n_layers, c->vocab, c->n_heads, c->n_kv_heads, c->head_dim,
             c->share_q_dim, c->inter_dense, c->n_experts, c->top_k, c->moe_inter, c->share_inter,
             moe, c->bos_id, c->eos_id,
             fp8 ? ",\"quantization_config\":{\"quant_method\":\"fp8\","
                   "\"weight_block_size\":[128,128]}"
                 : "");
    ck_write_text(ck_path(path, sizeof path, dir, "config.json"), text);
}

/* Writes the checkpoint into a fresh directory (dir, >= 256 bytes). */
static void write_ckpt(const ck_spec *s, char *dir) {
    ck_tmpdir(dir, 256);
    static ck_list l;
    build_list(&l, s);
    char path[512];
    write_config(s, dir);
    if (!s->shards) {
        write_file(s, &l, ck_path(path, sizeof path, dir, "model.safetensors"), 0, 1);
        return;
    }
    write_file(s, &l, ck_path(path, sizeof path, dir, "a.safetensors"), 0, 2);
    write_file(s, &l, ck_path(path, sizeof path, dir, "b.safetensors"), 1, 2);
    static char idx[65536];
    size_t n = (size_t)snprintf(idx, sizeof idx, "{\"weight_map\":{");
    for (int i = 0; i < l.n; i++)
        if (!skipped(s, l.t[i].name))
            n += (size_t)snprintf(idx + n, sizeof idx - n, "%s\"%s\":\"%s\"", n > 15 ? "," : "",
                                  l.t[i].name, i % 2 ? "b.safetensors" : "a.safetensors");
    snprintf(idx + n, sizeof idx - n, "}}");
    ck_write_text(ck_path(path, sizeof path, dir, "model.safetensors.index.json"), idx);
}

/* ---- loading helpers ---------------------------------------------------------------------- */

typedef struct loaded {
    char dir[256];
    st_set *set;
    afd_weights w;
} loaded;

static int try_load(const ck_spec *s, int parts, const afd_shard *sh, loaded *L, afd_err *err) {
    write_ckpt(s, L->dir);
    memset(err, 0, sizeof *err);
    int rc = st_set_open(L->dir, &L->set, err);
    cr_assert_eq(rc, 0, "st_set_open: %s", err->msg);
    return afd_weights_load(L->set, &s->cfg, parts, sh, &L->w, err);
}

static void load_ok(const ck_spec *s, int parts, const afd_shard *sh, loaded *L) {
    afd_err err;
    int rc = try_load(s, parts, sh, L, &err);
    cr_assert_eq(rc, 0, "load: rc %d: %s", rc, err.msg);
}

static void load_fail(const ck_spec *s, int parts, const afd_shard *sh, int code,
                      const char *needle) {
    loaded L = {0};
    afd_err err;
    int rc = try_load(s, parts, sh, &L, &err);
    cr_assert_eq(rc, code, "rc %d (%s) want %d: %s", rc, afd_strerror(rc), code, err.msg);
    cr_assert_not_null(strstr(err.msg, needle), "'%s' not in: %s", needle, err.msg);
    cr_assert_null(L.w.layers, "weights not freed after a failure");
    st_set_free(L.set);
    ck_rm_rf(L.dir);
}

static void unload(loaded *L) {
    afd_weights_free(&L->w);
    st_set_free(L->set);
    ck_rm_rf(L->dir);
}

static const st_tensor *find(const loaded *L, const char *name) {
    const st_tensor *t = st_set_find(L->set, name);
    cr_assert_not_null(t, "%s not in the checkpoint", name);
    return t;
}

static float f32_at(const void *p, size_t i) {
    float f;
    memcpy(&f, (const uint8_t *)p + 4 * i, 4);
    return f;
}

/* ---- tests -------------------------------------------------------------------------------- */

Test(weights, shard_inter_splits_on_blocks) {
    afd_shard s = {0, 48, 0, 3, 0, 0};
    int i0, i1, prev = 0;
    for (s.tp_rank = 0; s.tp_rank < 3; s.tp_rank++) {
        afd_shard_inter(&s, 5120, &i0, &i1);
        cr_assert_eq(i0, prev, "rank %d starts at %d, want %d", s.tp_rank, i0, prev);
        cr_assert_eq(i0 % 128, 0, "rank %d: %d", s.tp_rank, i0);
        cr_assert_eq(i1 % 128, 0, "rank %d: %d", s.tp_rank, i1);
        prev = i1;
    }
    cr_assert_eq(prev, 5120);
    s.tp_rank = 1, s.tp_size = 2;
    afd_shard_inter(&s, 192, &i0, &i1);
    cr_assert_eq(i0, 96);
    cr_assert_eq(i1, 192);
    afd_shard_inter(NULL, 192, &i0, &i1);
    cr_assert_eq(i1 - i0, 192);
    afd_model_config c;
    small_cfg(&c);
    afd_shard full = afd_shard_full(&c);
    cr_assert_eq(full.expert_end, 4);
    cr_assert_eq(full.tp_size, 1);
}

Test(weights, bf16_full_load) {
    ck_spec s;
    spec_init(&s, AFD_DT_BF16);
    loaded L = {0};
    load_ok(&s, AFD_PART_ALL, NULL, &L);
    const afd_weights *w = &L.w;
    cr_assert_eq(w->parts, AFD_PART_ALL);
    cr_assert_eq(w->embed.rows, 512);
    cr_assert_eq(w->embed.cols, 256);
    cr_assert_eq(w->embed.data, find(&L, "model.embed_tokens.weight")->data);
    cr_assert_eq(w->lm_head.data, find(&L, "lm_head.weight")->data);
    /* norms are fp32 copies of the BF16 values */
    const st_tensor *fn = find(&L, "model.norm.weight");
    for (int i = 0; i < 256; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)fn->data + 2 * i, 2);
        cr_assert_eq(w->final_norm[i], afd_bf16_to_f32(h), "final_norm[%d]", i);
    }
    const afd_layer_weights *l0 = &w->layers[0], *l1 = &w->layers[1];
    cr_assert_not(l0->is_moe);
    cr_assert(l1->is_moe);
    cr_assert_eq(l0->wq.rows, 128);
    cr_assert_eq(l0->wq.cols, 128);
    cr_assert_eq(l0->o_proj.rows, 256);
    cr_assert_eq(l0->o_proj.cols, 128);
    cr_assert_eq(l0->k_proj.rows, 64);
    cr_assert_eq(l0->dense.gate.rows, 384);
    cr_assert_eq(l0->dense.down.cols, 384);
    cr_assert_eq(l0->dense.down.ld, 384);
    cr_assert_null(l0->experts);
    cr_assert_null(l0->moe_gate.data);
    cr_assert_eq(l1->moe_gate.rows, 4);
    cr_assert_eq(l1->shared.up.rows, 256);
    cr_assert_null(l1->dense.gate.data);
    /* stacked experts: expert e starts e * I * H elements in */
    const st_tensor *g = find(&L, "model.layers.1.moe.gate_proj.weight");
    const st_tensor *d = find(&L, "model.layers.1.moe.down_proj.weight");
    for (int e = 0; e < 4; e++) {
        const afd_ffn_weights *ew = &l1->experts[e];
        cr_assert_eq(ew->gate.data, (const uint8_t *)g->data + (size_t)e * 256 * 256 * 2,
                     "expert %d gate", e);
        cr_assert_eq(ew->down.data, (const uint8_t *)d->data + (size_t)e * 256 * 256 * 2,
                     "expert %d down", e);
        cr_assert_eq(ew->gate.rows, 256);
        cr_assert_eq(ew->gate.ld, 256);
        cr_assert_eq(ew->gate.dtype, AFD_DT_BF16);
        cr_assert_null(ew->gate.scale);
        cr_assert_str_eq(ew->up.name, "model.layers.1.moe.up_proj.weight");
    }
    cr_assert_gt(w->bytes_mapped, 2u * 512 * 256 * 2, "bytes_mapped %llu",
                 (unsigned long long)w->bytes_mapped);
    unload(&L);
}

Test(weights, fp8_views_and_scales) {
    ck_spec s;
    spec_init(&s, AFD_DT_F8_E4M3);
    s.shards = true;
    loaded L = {0};
    load_ok(&s, AFD_PART_ALL, NULL, &L);
    const afd_layer_weights *l1 = &L.w.layers[1];
    /* 2-D: the scale tensor itself (F32, aligned) */
    const st_tensor *qs = find(&L, "model.layers.1.self_attn.q_proj.weight_scale_inv");
    cr_assert_eq((const void *)l1->q_proj.scale, qs->data, "aligned F32 scales used in place");
    cr_assert_eq(l1->q_proj.scale_ld, 2);
    cr_assert_eq(l1->q_proj.dtype, AFD_DT_F8_E4M3);
    /* stacked: expert e's scales start e * rb * cb floats in */
    const st_tensor *us = find(&L, "model.layers.1.moe.up_proj.weight_scale_inv");
    for (int e = 0; e < 4; e++) {
        cr_assert_eq((const void *)L.w.layers[1].experts[e].up.scale,
                     (const void *)((const float *)us->data + e * 2 * 2), "expert %d", e);
        cr_assert_eq(l1->experts[e].down.scale_ld, 2);
    }
    /* BF16 stays BF16 (the router, embed) */
    cr_assert_eq(l1->moe_gate.dtype, AFD_DT_BF16);
    cr_assert_null(l1->moe_gate.scale);
    unload(&L);
}

Test(weights, fp8_bf16_scales_are_converted) {
    ck_spec s;
    spec_init(&s, AFD_DT_F8_E4M3);
    s.scale_dt = AFD_DT_BF16;
    loaded L = {0};
    load_ok(&s, AFD_PART_ALL, NULL, &L);
    const st_tensor *ds = find(&L, "model.layers.1.moe.down_proj.weight_scale_inv");
    for (int e = 0; e < 4; e++)
        for (int k = 0; k < 4; k++) {
            uint16_t h;
            memcpy(&h, (const uint8_t *)ds->data + 2 * (e * 4 + k), 2);
            cr_assert_eq(L.w.layers[1].experts[e].down.scale[k], afd_bf16_to_f32(h),
                         "expert %d scale %d", e, k);
        }
    unload(&L);
}

Test(weights, fp8_unaligned_f32_scales_are_copied) {
    ck_spec s;
    spec_init(&s, AFD_DT_F8_E4M3);
    s.misalign = true;
    loaded L = {0};
    load_ok(&s, AFD_PART_ALL, NULL, &L);
    const st_tensor *os = find(&L, "model.layers.2.self_attn.o_proj.weight_scale_inv");
    cr_assert_neq((uintptr_t)os->data % 4, 0u, "the test wants an unaligned scale tensor");
    const float *sc = L.w.layers[2].o_proj.scale;
    cr_assert_neq((const void *)sc, os->data);
    cr_assert_eq((uintptr_t)sc % 4, 0u);
    for (int k = 0; k < 2; k++)
        cr_assert_eq(sc[k], f32_at(os->data, (size_t)k), "scale %d", k);
    unload(&L);
}

Test(weights, mixed_checkpoint) {
    ck_spec s;
    spec_init(&s, AFD_DT_BF16);
    s.attn_dt = AFD_DT_F8_E4M3;
    s.expert_dt = AFD_DT_F8_E4M3;
    loaded L = {0};
    load_ok(&s, AFD_PART_ALL, NULL, &L);
    const afd_layer_weights *l1 = &L.w.layers[1];
    cr_assert_eq(l1->q_proj.dtype, AFD_DT_F8_E4M3);
    cr_assert_not_null(l1->q_proj.scale);
    cr_assert_eq(l1->k_proj.dtype, AFD_DT_BF16);
    cr_assert_null(l1->k_proj.scale);
    cr_assert_eq(l1->experts[2].gate.dtype, AFD_DT_F8_E4M3);
    cr_assert_not_null(l1->experts[2].gate.scale);
    cr_assert_eq(l1->shared.gate.dtype, AFD_DT_BF16);
    cr_assert_eq(L.w.layers[0].dense.down.dtype, AFD_DT_BF16);
    unload(&L);
}

Test(weights, tp_slices_of_fp8_experts) {
    ck_spec s;
    spec_init(&s, AFD_DT_F8_E4M3);
    afd_shard sh = {0, 4, 1, 2, 0, 0};
    loaded L = {0};
    load_ok(&s, AFD_PART_FFN, &sh, &L);
    const st_tensor *g = find(&L, "model.layers.1.moe.gate_proj.weight");
    const st_tensor *gs = find(&L, "model.layers.1.moe.gate_proj.weight_scale_inv");
    const st_tensor *d = find(&L, "model.layers.1.moe.down_proj.weight");
    const st_tensor *dsc = find(&L, "model.layers.1.moe.down_proj.weight_scale_inv");
    for (int e = 0; e < 4; e++) {
        const afd_ffn_weights *ew = &L.w.layers[1].experts[e];
        /* gate rows [128, 256) of expert e */
        cr_assert_eq(ew->gate.rows, 128);
        cr_assert_eq(ew->gate.row0, 128);
        cr_assert_eq(ew->gate.data, (const uint8_t *)g->data + (size_t)e * 65536 + 128 * 256);
        /* the slice's scale lookup equals the parent's: element (0, 0) of the slice is row 128
         * of expert e, block row 1 */
        const float *ps = (const float *)gs->data + e * 4;
        cr_assert_eq((const void *)ew->gate.scale, (const void *)ps);
        float got =
            ew->gate
                .scale[((ew->gate.row0 + 0) / 128) * ew->gate.scale_ld + (ew->gate.col0 + 0) / 128];
        cr_assert_eq(got, f32_at(gs->data, (size_t)(e * 4 + 1 * 2 + 0)), "expert %d", e);
        /* down columns [128, 256) */
        cr_assert_eq(ew->down.cols, 128);
        cr_assert_eq(ew->down.rows, 256);
        cr_assert_eq(ew->down.col0, 128);
        cr_assert_eq(ew->down.ld, 256);
        cr_assert_eq(ew->down.data, (const uint8_t *)d->data + (size_t)e * 65536 + 128);
        got = ew->down.scale[((ew->down.row0 + 200) / 128) * ew->down.scale_ld +
                             (ew->down.col0 + 5) / 128];
        cr_assert_eq(got, f32_at(dsc->data, (size_t)(e * 4 + 1 * 2 + 1)), "expert %d", e);
    }
    /* dense 384 = 3 blocks: rank 1 of 2 holds blocks [1, 3) */
    const afd_ffn_weights *dn = &L.w.layers[0].dense;
    cr_assert_eq(dn->gate.row0, 128);
    cr_assert_eq(dn->gate.rows, 256);
    cr_assert_eq(dn->down.col0, 128);
    cr_assert_eq(L.w.layers[1].shared.up.rows, 128);
    /* the FFN part holds no attention weights */
    cr_assert_null(L.w.embed.data);
    cr_assert_null(L.w.layers[0].q_proj.data);
    cr_assert_null(L.w.layers[0].input_norm);
    cr_assert_null(L.w.layers[1].moe_gate.data);
    unload(&L);
}

Test(weights, expert_range_leaves_others_zeroed) {
    ck_spec s;
    spec_init(&s, AFD_DT_BF16);
    afd_shard sh = {1, 3, 0, 1, 0, 0};
    loaded L = {0};
    load_ok(&s, AFD_PART_FFN, &sh, &L);
    const afd_ffn_weights *ex = L.w.layers[1].experts;
    cr_assert_null(ex[0].gate.data);
    cr_assert_null(ex[0].down.data);
    cr_assert_null(ex[3].up.data);
    cr_assert_not_null(ex[1].gate.data);
    cr_assert_not_null(ex[2].down.data);
    cr_assert_eq(ex[2].down.rows, 256);
    uint64_t part = L.w.bytes_mapped;
    unload(&L);
    afd_shard all = {0, 4, 0, 1, 0, 0};
    load_ok(&s, AFD_PART_FFN, &all, &L);
    /* two of four experts: 2 * 3 * 256 * 256 * 2 bytes fewer */
    cr_assert_eq(L.w.bytes_mapped - part, 2ull * 3 * 256 * 256 * 2, "%llu vs %llu",
                 (unsigned long long)L.w.bytes_mapped, (unsigned long long)part);
    unload(&L);
}

Test(weights, attention_part_ignores_ffn_tensors) {
    ck_spec s;
    spec_init(&s, AFD_DT_F8_E4M3);
    s.skip = ".moe.gate_proj;.moe.up_proj;.moe.down_proj;share_expert;.mlp.";
    loaded L = {0};
    load_ok(&s, AFD_PART_ATTN, NULL, &L);
    cr_assert_not_null(L.w.layers[1].moe_gate.data, "the router is an attention-side weight");
    cr_assert_null(L.w.layers[1].experts);
    cr_assert_null(L.w.layers[0].dense.gate.data);
    cr_assert_not_null(L.w.layers[2].post_norm);
    unload(&L);
    load_fail(&s, AFD_PART_FFN, NULL, AFD_E_NOTFOUND,
              "tensor model.layers.0.mlp.gate_proj.weight: missing (needed by the FFN part)");
}

Test(weights, missing_tensors_are_named) {
    ck_spec s;
    spec_init(&s, AFD_DT_BF16);
    s.skip = "layers.2.self_attn.o_proj";
    load_fail(&s, AFD_PART_ALL, NULL, AFD_E_NOTFOUND,
              "tensor model.layers.2.self_attn.o_proj.weight: missing");
    spec_init(&s, AFD_DT_F8_E4M3);
    s.skip = "layers.1.moe.down_proj.weight_scale_inv";
    load_fail(&s, AFD_PART_FFN, NULL, AFD_E_NOTFOUND,
              "tensor model.layers.1.moe.down_proj.weight_scale_inv: missing (F8_E4M3 weight "
              "model.layers.1.moe.down_proj.weight needs its block scales)");
    spec_init(&s, AFD_DT_BF16);
    s.skip = "lm_head";
    load_fail(&s, AFD_PART_ATTN, NULL, AFD_E_NOTFOUND, "tensor lm_head.weight: missing");
}

Test(weights, wrong_shapes_and_dtypes_are_named) {
    ck_spec s;
    spec_init(&s, AFD_DT_BF16);
    s.bad_name = "model.layers.1.moe.up_proj.weight";
    s.bad_dim0 = 3;
    load_fail(&s, AFD_PART_FFN, NULL, AFD_E_SHAPE,
              "tensor model.layers.1.moe.up_proj.weight: shape [3, 256, 256], expected [4, 256, "
              "256] = [moe_num_experts, moe_intermediate_size, hidden_size]");
    s.bad_name = "model.layers.0.self_attn.wq.weight";
    s.bad_dim0 = 64;
    load_fail(&s, AFD_PART_ATTN, NULL, AFD_E_SHAPE,
              "tensor model.layers.0.self_attn.wq.weight: shape [64, 128], expected [128, 128]");
    s.bad_name = "model.layers.2.input_layernorm.weight";
    s.bad_dim0 = 255;
    load_fail(&s, AFD_PART_ATTN, NULL, AFD_E_SHAPE, "input_layernorm.weight: shape [255]");
    spec_init(&s, AFD_DT_F8_E4M3);
    s.bad_name = "model.layers.1.self_attn.q_proj.weight_scale_inv";
    s.bad_dim0 = 2;
    load_fail(&s, AFD_PART_ATTN, NULL, AFD_E_SHAPE,
              "q_proj.weight_scale_inv: shape [2, 2], expected [1, 2] = [ceil(out/128)");
    spec_init(&s, AFD_DT_BF16);
    s.norm_dt = AFD_DT_F8_E4M3;
    load_fail(&s, AFD_PART_ATTN, NULL, AFD_E_UNSUPPORTED,
              "input_layernorm.weight: dtype F8_E4M3, expected F32, BF16 or F16");
    spec_init(&s, AFD_DT_F8_E4M3);
    s.nan_scale = "layers.0.mlp.up_proj.weight_scale_inv";
    load_fail(&s, AFD_PART_FFN, NULL, AFD_E_FORMAT,
              "tensor model.layers.0.mlp.up_proj.weight_scale_inv: scale 1 is not finite");
}

Test(weights, fp8_tp_slice_must_be_block_aligned) {
    ck_spec s;
    spec_init(&s, AFD_DT_F8_E4M3);
    s.cfg.moe_inter = 192;
    afd_shard sh = {0, 4, 0, 2, 0, 0};
    load_fail(&s, AFD_PART_FFN, &sh, AFD_E_UNSUPPORTED,
              "moe_intermediate_size 192 slice [0, 96) of block-FP8 tensor "
              "model.layers.1.moe.gate_proj.weight is not on 128-element block boundaries");
    /* the same split of BF16 experts is fine */
    spec_init(&s, AFD_DT_BF16);
    s.cfg.moe_inter = 192;
    loaded L = {0};
    load_ok(&s, AFD_PART_FFN, &sh, &L);
    cr_assert_eq(L.w.layers[1].experts[3].gate.rows, 96);
    cr_assert_eq(L.w.layers[1].experts[3].down.cols, 96);
    unload(&L);
}

Test(weights, bad_shards_and_parts) {
    ck_spec s;
    spec_init(&s, AFD_DT_BF16);
    afd_shard bad_tp = {0, 4, 2, 2, 0, 0}, bad_ep = {0, 5, 0, 1, 0, 0}, many = {0, 4, 2, 4, 0, 0};
    load_fail(&s, AFD_PART_FFN, &bad_tp, -EINVAL, "tp_rank 2 / tp_size 2");
    load_fail(&s, AFD_PART_FFN, &bad_ep, -EINVAL, "experts [0, 5) outside [0, 4)");
    s.cfg.moe_inter = 192, s.cfg.share_inter = 2;
    load_fail(&s, AFD_PART_FFN, &many, -EINVAL, "share_expert_dim 2 gives an empty slice");
    spec_init(&s, AFD_DT_BF16);
    load_fail(&s, 0, NULL, -EINVAL, "parts 0");
}

Test(weights, language_model_prefix) {
    ck_spec s;
    spec_init(&s, AFD_DT_BF16);
    s.prefix = "language_model.";
    loaded L = {0};
    load_ok(&s, AFD_PART_ALL, NULL, &L);
    cr_assert_str_eq(L.w.lm_head.name, "language_model.lm_head.weight");
    cr_assert_str_eq(L.w.layers[1].experts[0].gate.name,
                     "language_model.model.layers.1.moe.gate_proj.weight");
    unload(&L);
}

Test(weights, model_open_one_call) {
    ck_spec s;
    spec_init(&s, AFD_DT_F8_E4M3);
    s.shards = true;
    char dir[256];
    write_ckpt(&s, dir);
    afd_weights w;
    st_set *set;
    afd_err err = {0};
    int rc = afd_model_open(dir, AFD_PART_ALL, NULL, &w, &set, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_str_eq(w.cfg.model_type, "step3_vl");
    cr_assert(w.cfg.fp8_blocks);
    cr_assert_eq(w.cfg.hidden, 256);
    cr_assert_not_null(w.layers[1].experts[3].down.scale);
    afd_weights_free(&w);
    afd_weights_free(&w); /* twice is harmless */
    st_set_free(set);
    /* a config that does not match the tensors: the first mismatch is named */
    char path[512];
    ck_write_text(ck_path(path, sizeof path, dir, "config.json"),
                  "{\"model_type\":\"step3_text\",\"hidden_size\":512,\"vocab_size\":512,"
                  "\"num_hidden_layers\":3,\"moe_layers_enum\":\"1\",\"eos_token_id\":1}");
    rc = afd_model_open(dir, AFD_PART_ATTN, NULL, &w, &set, &err);
    cr_assert_eq(rc, AFD_E_SHAPE, "rc %d: %s", rc, err.msg);
    cr_assert_not_null(strstr(err.msg, "model.embed_tokens.weight: shape [512, 256]"), "%s",
                       err.msg);
    cr_assert_null(set);
    cr_assert_null(w.layers);
    rc = afd_model_open("/nonexistent/afd-model", AFD_PART_ATTN, NULL, &w, &set, &err);
    cr_assert_eq(rc, AFD_E_NOTFOUND, "rc %d: %s", rc, err.msg);
    cr_assert_not_null(strstr(err.msg, "/nonexistent/afd-model/config.json"), "%s", err.msg);
    ck_rm_rf(dir);
}

Test(weights, group_shards_split_experts_and_dense) {
    afd_model_config c;
    small_cfg(&c);
    afd_shard sh;
    afd_err err = {0};
    cr_assert_eq(afd_shard_group(&c, 1, 2, 0, 1, &sh, &err), 0, "%s", err.msg);
    cr_assert_eq(sh.expert_begin, 2);
    cr_assert_eq(sh.expert_end, 4);
    cr_assert_eq(sh.dense_rank, 1);
    cr_assert_eq(sh.dense_size, 2);
    cr_assert_eq(afd_shard_group(&c, 1, 2, 1, 2, &sh, &err), 0, "%s", err.msg);
    cr_assert_eq(sh.tp_rank, 1);
    cr_assert_eq(sh.dense_rank, 3, "dense rank %d", sh.dense_rank);
    cr_assert_eq(sh.dense_size, 4);
    /* the dense slices of a 2x2 group tile the dimension */
    int prev = 0, i0, i1;
    for (int r = 0; r < 4; r++) {
        afd_shard s4 = {0, 4, 0, 1, r, 4};
        afd_shard_dense_inter(&s4, 1024, &i0, &i1);
        cr_assert_eq(i0, prev, "rank %d starts at %d, want %d", r, i0, prev);
        prev = i1;
    }
    cr_assert_eq(prev, 1024);
    cr_assert_lt(afd_shard_group(&c, 2, 2, 0, 1, &sh, &err), 0);
    cr_assert(strstr(err.msg, "ep 2/2"), "%s", err.msg);
    cr_assert_lt(afd_shard_group(&c, 0, 5, 0, 1, &sh, &err), 0);
    cr_assert(strstr(err.msg, "ep_size 5 > moe_num_experts 4"), "%s", err.msg);
}

Test(weights, empty_dense_slice_loads_as_nothing) {
    ck_spec s;
    spec_init(&s, AFD_DT_BF16);
    s.cfg.share_inter = 128, s.cfg.inter_dense = 128;
    /* 128 = one block over two dense ranks: rank 0 holds nothing, rank 1 all of it */
    afd_shard r0 = {0, 2, 0, 1, 0, 2}, r1 = {2, 4, 0, 1, 1, 2};
    loaded L = {0};
    load_ok(&s, AFD_PART_FFN, &r0, &L);
    cr_assert_eq(L.w.layers[1].shared.gate.rows, 0);
    cr_assert_eq(L.w.layers[0].dense.gate.rows, 0);
    cr_assert_eq(L.w.layers[1].experts[1].gate.rows, s.cfg.moe_inter);
    unload(&L);
    load_ok(&s, AFD_PART_FFN, &r1, &L);
    cr_assert_eq(L.w.layers[1].shared.gate.rows, 128);
    cr_assert_eq(L.w.layers[0].dense.down.cols, 128);
    unload(&L);
}

Test(weights, fingerprint_tracks_config_shapes_and_data) {
    ck_spec s;
    spec_init(&s, AFD_DT_BF16);
    loaded a = {0}, b = {0}, c = {0};
    load_ok(&s, AFD_PART_ATTN, NULL, &a);
    load_ok(&s, AFD_PART_FFN, NULL, &b);
    uint64_t fa = afd_model_fingerprint(&s.cfg, a.set), fb = afd_model_fingerprint(&s.cfg, b.set);
    cr_assert_eq(fa, fb, "same checkpoint, parts differ: %#llx vs %#llx", (unsigned long long)fa,
                 (unsigned long long)fb);
    s.cfg.moe_inter = 384;
    load_ok(&s, AFD_PART_FFN, NULL, &c);
    uint64_t fc = afd_model_fingerprint(&s.cfg, c.set);
    cr_assert_neq(fa, fc, "other shapes, same fingerprint %#llx / %#llx", (unsigned long long)fa,
                  (unsigned long long)fc);
    unload(&a);
    unload(&b);
    unload(&c);
}
