/* weights.c: checkpoint tensors -> afd_weights views, checked against the config.
 *
 * Loading is three passes over the needed tensors:
 *   1. look up, check dtype and exact shape, pair FP8 weights with their block scales, build
 *      the views (expert e of a stacked tensor, a TP slice of rows or columns), convert the
 *      small tensors (norms, BF16 scales) into owned fp32 copies; any failure frees everything
 *      and names the tensor;
 *   2. read every page the views cover once (madvise WILLNEED, then MADV_POPULATE_READ for
 *      contiguous spans or one byte per 4 KiB), so a daemon is ready when load returns,
 *      reporting progress;
 *   3. nothing else: views borrow the st_set's mmap.
 * A part never looks up the other part's tensors (an attnd runs on a checkpoint without
 * experts). Names: docs/checkpoint.md.
 */
#include "common/model/weights.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/base/numfmt.h"
#include "common/base/progress.h"

#define TOUCH_STRIDE   4096        /* one byte read per 4 KiB */
#define POPULATE_CHUNK (64u << 20) /* contiguous spans are populated 64 MiB at a time */
#define NAME_MAX_LEN   256

/* ==== shards ================================================================================ */

afd_shard afd_shard_full(const afd_model_config *cfg) {
    afd_shard s = {0, cfg->n_experts, 0, 1, 0, 1};
    return s;
}

int afd_shard_group(const afd_model_config *cfg, int ep_rank, int ep_size, int tp_rank,
                    int tp_size, afd_shard *out, afd_err *err) {
    if (ep_size < 1 || ep_rank < 0 || ep_rank >= ep_size || tp_size < 1 || tp_rank < 0 ||
        tp_rank >= tp_size)
        return afd_errf(err, -EINVAL, "shard: ep %d/%d, tp %d/%d: need 0 <= rank < size",
                        ep_rank, ep_size, tp_rank, tp_size);
    if (cfg->n_experts > 0 && ep_size > cfg->n_experts)
        return afd_errf(err, -EINVAL, "shard: ep_size %d > moe_num_experts %d", ep_size,
                        cfg->n_experts);
    int64_t E = cfg->n_experts;
    afd_shard s = {(int)(E * ep_rank / ep_size), (int)(E * (ep_rank + 1) / ep_size), tp_rank,
                   tp_size, ep_rank * tp_size + tp_rank, ep_size * tp_size};
    *out = s;
    return 0;
}

static void split(int64_t rank, int64_t size, int inter, int *i0, int *i1) {
    /* whole 128-blocks when the dimension has them, so block-FP8 slices stay aligned */
    int64_t unit = inter % AFD_FP8_BLOCK == 0 ? AFD_FP8_BLOCK : 1, n = inter / unit;
    *i0 = (int)(n * rank / size * unit);
    *i1 = (int)(n * (rank + 1) / size * unit);
}

void afd_shard_inter(const afd_shard *sh, int inter, int *i0, int *i1) {
    split(sh ? sh->tp_rank : 0, sh && sh->tp_size > 0 ? sh->tp_size : 1, inter, i0, i1);
}

void afd_shard_dense_inter(const afd_shard *sh, int inter, int *i0, int *i1) {
    if (sh && sh->dense_size > 0)
        split(sh->dense_rank, sh->dense_size, inter, i0, i1);
    else
        afd_shard_inter(sh, inter, i0, i1);
}

static int shard_check(const afd_model_config *c, const afd_shard *s, afd_err *err) {
    if (s->tp_size < 1 || s->tp_rank < 0 || s->tp_rank >= s->tp_size)
        return afd_errf(err, -EINVAL, "shard: tp_rank %d / tp_size %d: need 0 <= rank < size",
                        s->tp_rank, s->tp_size);
    if (s->dense_size < 0 || (s->dense_size > 0 && (s->dense_rank < 0 ||
                                                    s->dense_rank >= s->dense_size)))
        return afd_errf(err, -EINVAL,
                        "shard: dense_rank %d / dense_size %d: need 0 <= rank < size",
                        s->dense_rank, s->dense_size);
    if (s->expert_begin < 0 || s->expert_begin > s->expert_end || s->expert_end > c->n_experts)
        return afd_errf(err, -EINVAL, "shard: experts [%d, %d) outside [0, %d) (moe_num_experts)",
                        s->expert_begin, s->expert_end, c->n_experts);
    return 0;
}

/* ==== the loader's state ==================================================================== */

/* Pages one view covers: `rows` runs of `row_bytes`, `stride` bytes apart. */
typedef struct region {
    const uint8_t *p;
    uint64_t rows, row_bytes, stride;
    bool new_tensor; /* the first view of a checkpoint tensor (for the tensor count) */
} region;

typedef struct wl {
    const st_set *set;
    const afd_model_config *cfg;
    afd_weights *w;
    const char *prefix; /* "" or "language_model." */
    afd_err *err;
    region *reg;
    int n_reg, cap_reg;
    uint64_t bytes; /* tensor bytes the views cover, plus converted tensors */
    int n_tensors;
    char name[NAME_MAX_LEN];
} wl;

static void *wl_own(wl *L, size_t bytes) {
    afd_weights *w = L->w;
    if (w->n_owned == w->cap_owned) {
        w->cap_owned = w->cap_owned ? w->cap_owned * 2 : 64;
        w->owned = xrealloc(w->owned, (size_t)w->cap_owned * sizeof *w->owned);
    }
    void *p = xalloc_aligned(bytes);
    w->owned[w->n_owned++] = p;
    return p;
}

/* Records the pages of view v for the populate pass. */
static void wl_use(wl *L, const afd_tensor *v, bool new_tensor) {
    if (L->n_reg == L->cap_reg) {
        L->cap_reg = L->cap_reg ? L->cap_reg * 2 : 256;
        L->reg = xrealloc(L->reg, (size_t)L->cap_reg * sizeof *L->reg);
    }
    size_t es = afd_dtype_size(v->dtype);
    region *r = &L->reg[L->n_reg++];
    *r = (region){v->data, (uint64_t)v->rows, (uint64_t)v->cols * es, (uint64_t)v->ld * es,
                  new_tensor};
    L->bytes += r->rows * r->row_bytes;
    L->n_tensors += new_tensor;
}

/* <prefix>model.layers.<layer>.<suffix>, or <prefix><suffix> for layer < 0. */
static const char *wl_name(wl *L, int layer, const char *suffix) {
    if (layer < 0)
        snprintf(L->name, sizeof L->name, "%s%s", L->prefix, suffix);
    else
        snprintf(L->name, sizeof L->name, "%smodel.layers.%d.%s", L->prefix, layer, suffix);
    return L->name;
}

static const st_tensor *wl_find(wl *L, const char *name, const char *part) {
    const st_tensor *t = st_set_find(L->set, name);
    if (!t)
        afd_errf(L->err, AFD_E_NOTFOUND, "%s: tensor %s: missing (needed by the %s part)",
                 st_set_path(L->set), name, part);
    return t;
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Exact shape, or AFD_E_SHAPE naming the tensor, both shapes and what the dims mean. */
static int check_shape(wl *L, const st_tensor *t, int ndim, const int64_t *want, const char *dims) {
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == want[i];
    if (ok) return 0;
    char got[160], exp[160];
    fmt_shape(got, sizeof got, t->ndim, t->shape);
    fmt_shape(exp, sizeof exp, ndim, want);
    return afd_errf(L->err, AFD_E_SHAPE, "%s: tensor %s: shape %s, expected %s = %s",
                    st_set_path(L->set), t->name, got, exp, dims);
}

static bool is_float_dtype(afd_dtype dt) {
    return dt == AFD_DT_F32 || dt == AFD_DT_BF16 || dt == AFD_DT_F16;
}

static int check_dtype(wl *L, const st_tensor *t, bool fp8_ok) {
    if (is_float_dtype(t->dtype) || (fp8_ok && t->dtype == AFD_DT_F8_E4M3)) return 0;
    return afd_errf(L->err, AFD_E_UNSUPPORTED, "%s: tensor %s: dtype %s, expected %s",
                    st_set_path(L->set), t->name, t->dtype_name ? t->dtype_name : "?",
                    fp8_ok ? "F32, BF16, F16 or F8_E4M3" : "F32, BF16 or F16");
}

/* ==== small tensors: owned fp32 copies ====================================================== */

static float elem_f32(const st_tensor *t, uint64_t i) {
    const uint8_t *p = (const uint8_t *)t->data;
    uint16_t h;
    float f;
    switch (t->dtype) {
    case AFD_DT_BF16:
        memcpy(&h, p + 2 * i, 2);
        return afd_bf16_to_f32(h);
    case AFD_DT_F16:
        memcpy(&h, p + 2 * i, 2);
        return afd_f16_to_f32(h);
    default:
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
}

/* A norm weight [n] -> owned fp32. */
static int load_vec(wl *L, int layer, const char *suffix, int64_t n, const char *dims,
                    const char *part, const float **out) {
    const st_tensor *t = wl_find(L, wl_name(L, layer, suffix), part);
    if (!t) return AFD_E_NOTFOUND;
    int rc = check_dtype(L, t, false);
    if (rc || (rc = check_shape(L, t, 1, &n, dims))) return rc;
    float *v = wl_own(L, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        v[i] = elem_f32(t, (uint64_t)i);
    *out = v;
    L->bytes += t->nbytes;
    L->n_tensors++;
    return 0;
}

/* Block scales of matrices [m0, m1) of `s` (`per` floats each) as fp32: the mmap itself when
 * it is F32 and 4-byte aligned, else an owned copy. Every scale must be finite. */
static int load_scale_range(wl *L, const st_tensor *s, int64_t m0, int64_t m1, int64_t per,
                            const float **out) {
    uint64_t n = (uint64_t)((m1 - m0) * per), first = (uint64_t)(m0 * per);
    const uint8_t *src = (const uint8_t *)s->data + first * afd_dtype_size(s->dtype);
    for (uint64_t i = 0; i < n; i++) {
        float v = elem_f32(s, first + i);
        if (!isfinite(v))
            return afd_errf(L->err, AFD_E_FORMAT, "%s: tensor %s: scale %llu is not finite (%g)",
                            st_set_path(L->set), s->name, (unsigned long long)(first + i), v);
    }
    L->bytes += n * afd_dtype_size(s->dtype);
    if (s->dtype == AFD_DT_F32 && (uintptr_t)src % 4 == 0) {
        *out = (const float *)src;
        return 0;
    }
    float *copy = wl_own(L, n * sizeof(float));
    for (uint64_t i = 0; i < n; i++)
        copy[i] = elem_f32(s, first + i);
    *out = copy;
    return 0;
}

/* "<weight>_scale_inv" of an FP8 weight of n stacked [rows, cols] matrices (n = 0: 2-D),
 * checked, for matrices [m0, m1). *base is the scale block of matrix m0. */
static int load_scales(wl *L, const st_tensor *w, int n, int64_t rows, int64_t cols, int m0, int m1,
                       const float **base) {
    char name[NAME_MAX_LEN + 16];
    snprintf(name, sizeof name, "%s_scale_inv", w->name);
    const st_tensor *s = st_set_find(L->set, name);
    if (!s)
        return afd_errf(L->err, AFD_E_NOTFOUND,
                        "%s: tensor %s: missing (F8_E4M3 weight %s needs its block scales)",
                        st_set_path(L->set), name, w->name);
    if (s->dtype != AFD_DT_F32 && s->dtype != AFD_DT_BF16)
        return afd_errf(L->err, AFD_E_UNSUPPORTED, "%s: tensor %s: dtype %s, expected F32 or BF16",
                        st_set_path(L->set), name, s->dtype_name ? s->dtype_name : "?");
    int64_t rb = (rows + AFD_FP8_BLOCK - 1) / AFD_FP8_BLOCK;
    int64_t cb = (cols + AFD_FP8_BLOCK - 1) / AFD_FP8_BLOCK;
    int64_t shape[3] = {n, rb, cb};
    int rc =
        check_shape(L, s, n ? 3 : 2, n ? shape : shape + 1,
                    n ? "[experts, ceil(out/128), ceil(in/128)]" : "[ceil(out/128), ceil(in/128)]");
    if (rc) return rc;
    return m1 > m0 ? load_scale_range(L, s, m0, m1, rb * cb, base) : 0;
}

/* ==== projections =========================================================================== */

static afd_tensor view_of(const st_tensor *t, int64_t off_elems, int64_t rows, int64_t cols) {
    afd_tensor v;
    memset(&v, 0, sizeof v);
    v.dtype = t->dtype;
    v.rows = rows;
    v.cols = cols;
    v.ld = cols;
    v.data = (const uint8_t *)t->data + (size_t)off_elems * afd_dtype_size(t->dtype);
    v.name = t->name;
    return v;
}

/* A 2-D projection [rows, cols], whole (slicing, if any, is the caller's). */
static int load_proj(wl *L, int layer, const char *suffix, int64_t rows, int64_t cols,
                     const char *dims, const char *part, afd_tensor *out) {
    const st_tensor *t = wl_find(L, wl_name(L, layer, suffix), part);
    if (!t) return AFD_E_NOTFOUND;
    int64_t shape[2] = {rows, cols};
    int rc = check_dtype(L, t, true);
    if (rc || (rc = check_shape(L, t, 2, shape, dims))) return rc;
    *out = view_of(t, 0, rows, cols);
    if (t->dtype != AFD_DT_F8_E4M3) return 0;
    out->scale_ld = (cols + AFD_FP8_BLOCK - 1) / AFD_FP8_BLOCK;
    return load_scales(L, t, 0, rows, cols, 0, 1, &out->scale);
}

/* A stacked [E, rows, cols] expert tensor: views of experts [e0, e1) into member `off` of
 * each ex[e]; the other experts stay zeroed and their bytes are never read. */
static int load_stacked(wl *L, int layer, const char *suffix, int64_t rows, int64_t cols,
                        const char *dims, afd_ffn_weights *ex, size_t off, int e0, int e1) {
    const afd_model_config *c = L->cfg;
    const st_tensor *t = wl_find(L, wl_name(L, layer, suffix), "FFN");
    if (!t) return AFD_E_NOTFOUND;
    int64_t shape[3] = {c->n_experts, rows, cols};
    int rc = check_dtype(L, t, true);
    if (rc || (rc = check_shape(L, t, 3, shape, dims))) return rc;
    const float *scale = NULL;
    int64_t per =
        ((rows + AFD_FP8_BLOCK - 1) / AFD_FP8_BLOCK) * ((cols + AFD_FP8_BLOCK - 1) / AFD_FP8_BLOCK);
    if (t->dtype == AFD_DT_F8_E4M3 &&
        (rc = load_scales(L, t, c->n_experts, rows, cols, e0, e1, &scale)))
        return rc;
    for (int e = e0; e < e1; e++) {
        afd_tensor *v = (afd_tensor *)((char *)&ex[e] + off);
        *v = view_of(t, (int64_t)e * rows * cols, rows, cols);
        if (scale) {
            v->scale = scale + (e - e0) * per;
            v->scale_ld = (cols + AFD_FP8_BLOCK - 1) / AFD_FP8_BLOCK;
        }
    }
    return 0;
}

/* ==== the FFN side: TP slices =============================================================== */

static bool any_fp8(const afd_ffn_weights *f) {
    return f->gate.dtype == AFD_DT_F8_E4M3 || f->up.dtype == AFD_DT_F8_E4M3 ||
           f->down.dtype == AFD_DT_F8_E4M3;
}

/* The shard's slice [i0, i1) of intermediate dimension `inter` (named `key`): gate/up rows,
 * down columns. Block-FP8 slices must start and end on 128-element block boundaries. A dense
 * (shared expert / dense FFN) slice may be empty: *f is then zeroed (gate.rows == 0). */
static int slice_ffn(wl *L, afd_ffn_weights *f, int inter, const char *key, bool first,
                     bool dense) {
    const afd_shard *sh = &L->w->shard;
    int i0, i1;
    if (dense)
        afd_shard_dense_inter(sh, inter, &i0, &i1);
    else
        afd_shard_inter(sh, inter, &i0, &i1);
    if (i1 <= i0 && dense && sh->dense_size > 0) {
        memset(f, 0, sizeof *f);
        return 0;
    }
    if (i1 <= i0)
        return afd_errf(L->err, -EINVAL,
                        "shard tp_rank %d/%d: %s %d gives an empty slice [%d, %d); use fewer "
                        "TP ranks",
                        sh->tp_rank, sh->tp_size, key, inter, i0, i1);
    bool aligned = i0 % AFD_FP8_BLOCK == 0 && (i1 % AFD_FP8_BLOCK == 0 || i1 == inter);
    if (any_fp8(f) && !aligned)
        return afd_errf(L->err, AFD_E_UNSUPPORTED,
                        "shard tp_rank %d/%d: %s %d slice [%d, %d) of block-FP8 tensor %s is "
                        "not on 128-element block boundaries; choose tp_size so that %s / "
                        "tp_size is a multiple of 128",
                        sh->tp_rank, sh->tp_size, key, inter, i0, i1, f->gate.name, key);
    f->gate = afd_tensor_rows(&f->gate, i0, i1 - i0);
    f->up = afd_tensor_rows(&f->up, i0, i1 - i0);
    f->down = afd_tensor_cols(&f->down, i0, i1 - i0);
    wl_use(L, &f->gate, first);
    wl_use(L, &f->up, first);
    wl_use(L, &f->down, first);
    return 0;
}

/* A 2-D SwiGLU MLP (dense FFN or shared expert) under `pre` (".mlp" / ".share_expert"). */
static int load_mlp(wl *L, int layer, const char *pre, int inter, const char *key,
                    afd_ffn_weights *f) {
    const afd_model_config *c = L->cfg;
    char s_gate[64], s_up[64], s_down[64], d_in[96], d_out[96];
    snprintf(s_gate, sizeof s_gate, "%s.gate_proj.weight", pre);
    snprintf(s_up, sizeof s_up, "%s.up_proj.weight", pre);
    snprintf(s_down, sizeof s_down, "%s.down_proj.weight", pre);
    snprintf(d_in, sizeof d_in, "[%s, hidden_size]", key);
    snprintf(d_out, sizeof d_out, "[hidden_size, %s]", key);
    int rc = load_proj(L, layer, s_gate, inter, c->hidden, d_in, "FFN", &f->gate);
    if (rc == 0) rc = load_proj(L, layer, s_up, inter, c->hidden, d_in, "FFN", &f->up);
    if (rc == 0) rc = load_proj(L, layer, s_down, c->hidden, inter, d_out, "FFN", &f->down);
    return rc ? rc : slice_ffn(L, f, inter, key, true, true);
}

static int load_experts(wl *L, int layer, afd_layer_weights *lw) {
    const afd_model_config *c = L->cfg;
    int e0 = L->w->shard.expert_begin, e1 = L->w->shard.expert_end;
    lw->experts = xcalloc((size_t)c->n_experts, sizeof *lw->experts);
    if (e1 <= e0) return 0;
    const char *d_in = "[moe_num_experts, moe_intermediate_size, hidden_size]";
    const char *d_out = "[moe_num_experts, hidden_size, moe_intermediate_size]";
    int rc = load_stacked(L, layer, "moe.gate_proj.weight", c->moe_inter, c->hidden, d_in,
                          lw->experts, offsetof(afd_ffn_weights, gate), e0, e1);
    if (rc == 0)
        rc = load_stacked(L, layer, "moe.up_proj.weight", c->moe_inter, c->hidden, d_in,
                          lw->experts, offsetof(afd_ffn_weights, up), e0, e1);
    if (rc == 0)
        rc = load_stacked(L, layer, "moe.down_proj.weight", c->hidden, c->moe_inter, d_out,
                          lw->experts, offsetof(afd_ffn_weights, down), e0, e1);
    for (int e = e0; e < e1 && rc == 0; e++)
        rc = slice_ffn(L, &lw->experts[e], c->moe_inter, "moe_intermediate_size", e == e0,
                       false);
    return rc;
}

static int load_ffn_layer(wl *L, int i, afd_layer_weights *lw) {
    const afd_model_config *c = L->cfg;
    if (!lw->is_moe) return load_mlp(L, i, "mlp", c->inter_dense, "intermediate_size", &lw->dense);
    int rc = load_mlp(L, i, "share_expert", c->share_inter, "share_expert_dim", &lw->shared);
    return rc ? rc : load_experts(L, i, lw);
}

/* ==== the attention side ==================================================================== */

static int attn_proj(wl *L, int i, const char *suffix, int64_t rows, int64_t cols, const char *dims,
                     afd_tensor *out) {
    int rc = load_proj(L, i, suffix, rows, cols, dims, "attention", out);
    if (rc == 0) wl_use(L, out, true);
    return rc;
}

static int load_attn_layer(wl *L, int i, afd_layer_weights *lw) {
    const afd_model_config *c = L->cfg;
    int64_t H = c->hidden, Q = c->share_q_dim, HD = (int64_t)c->n_heads * c->head_dim;
    int64_t KV = (int64_t)c->n_kv_heads * c->head_dim;
    int rc =
        load_vec(L, i, "input_layernorm.weight", H, "[hidden_size]", "attention", &lw->input_norm);
    if (rc == 0)
        rc = load_vec(L, i, "post_attention_layernorm.weight", H, "[hidden_size]", "attention",
                      &lw->post_norm);
    if (rc == 0)
        rc = attn_proj(L, i, "self_attn.q_proj.weight", Q, H, "[share_q_dim, hidden_size]",
                       &lw->q_proj);
    if (rc == 0)
        rc = load_vec(L, i, "self_attn.inter_norm.weight", Q, "[share_q_dim]", "attention",
                      &lw->inter_norm);
    if (rc == 0)
        rc = attn_proj(L, i, "self_attn.wq.weight", HD, Q,
                       "[num_attention_heads * head_dim, share_q_dim]", &lw->wq);
    if (rc == 0)
        rc = attn_proj(L, i, "self_attn.k_proj.weight", KV, H,
                       "[num_attention_groups * head_dim, hidden_size]", &lw->k_proj);
    if (rc == 0)
        rc = attn_proj(L, i, "self_attn.v_proj.weight", KV, H,
                       "[num_attention_groups * head_dim, hidden_size]", &lw->v_proj);
    if (rc == 0)
        rc = attn_proj(L, i, "self_attn.o_proj.weight", H, HD,
                       "[hidden_size, num_attention_heads * head_dim]", &lw->o_proj);
    if (rc == 0 && lw->is_moe)
        rc = attn_proj(L, i, "moe.gate.weight", c->n_experts, H, "[moe_num_experts, hidden_size]",
                       &lw->moe_gate);
    return rc;
}

static int load_globals(wl *L) {
    const afd_model_config *c = L->cfg;
    afd_weights *w = L->w;
    int rc = load_proj(L, -1, "model.embed_tokens.weight", c->vocab, c->hidden,
                       "[vocab_size, hidden_size]", "attention", &w->embed);
    if (rc == 0) wl_use(L, &w->embed, true);
    if (rc == 0)
        rc = load_vec(L, -1, "model.norm.weight", c->hidden, "[hidden_size]", "attention",
                      &w->final_norm);
    if (rc == 0)
        rc = load_proj(L, -1, "lm_head.weight", c->vocab, c->hidden, "[vocab_size, hidden_size]",
                       "attention", &w->lm_head);
    if (rc == 0) wl_use(L, &w->lm_head, true);
    return rc;
}

/* ==== populate ============================================================================== */

/* Reads one byte of every 4 KiB of [p, p + n) not read just before (*last). */
static void touch_span(const uint8_t *p, uint64_t n, uintptr_t *last) {
    uintptr_t a = (uintptr_t)p, end = a + n;
    for (uintptr_t pg = a & ~(uintptr_t)(TOUCH_STRIDE - 1); pg < end; pg += TOUCH_STRIDE) {
        if (pg == *last) continue;
        (void)*(const volatile uint8_t *)(pg < a ? a : pg);
        *last = pg;
    }
}

static uintptr_t page_down(const uint8_t *p) {
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    return (uintptr_t)p & ~(uintptr_t)(page - 1);
}

/* A contiguous span: start read-ahead, then map every page with one madvise
 * (MADV_POPULATE_READ, Linux >= 5.14: no fault per page); older kernels touch each page. */
static void populate_span(const uint8_t *p, uint64_t n, uintptr_t *last) {
    uintptr_t a = page_down(p);
    size_t len = (size_t)((uintptr_t)p + n - a);
    (void)madvise((void *)a, len, MADV_WILLNEED);
#ifdef MADV_POPULATE_READ
    if (madvise((void *)a, len, MADV_POPULATE_READ) == 0) return;
#endif
    touch_span(p, n, last);
}

static void wl_populate(wl *L, const char *label) {
    afd_progress pr;
    afd_progress_begin(&pr, label, L->bytes, (uint64_t)L->n_tensors, 0);
    uint64_t done = 0, items = 0;
    uintptr_t last = 0;
    for (int i = 0; i < L->n_reg; i++) {
        const region *r = &L->reg[i];
        items += r->new_tensor;
        if (r->stride == r->row_bytes) { /* contiguous: in chunks, so progress moves */
            uint64_t n = r->rows * r->row_bytes;
            for (uint64_t off = 0; off < n; off += POPULATE_CHUNK) {
                uint64_t len = n - off < POPULATE_CHUNK ? n - off : POPULATE_CHUNK;
                populate_span(r->p + off, len, &last);
                done += len;
                afd_progress_update(&pr, done, items);
            }
            continue;
        }
        for (uint64_t k = 0; k < r->rows; k++) /* a column slice: only its bytes of each row */
            touch_span(r->p + k * r->stride, r->row_bytes, &last);
        done += r->rows * r->row_bytes;
        afd_progress_update(&pr, done, items);
    }
    afd_progress_update(&pr, L->bytes, (uint64_t)L->n_tensors);
    afd_progress_end(&pr);
}

/* ==== load ================================================================================== */

/* "" for model.* names, "language_model." for checkpoints saved from a wrapper whose text
 * model is `language_model` (vLLM's internal naming of Step-3 VL); AFD_TENSOR_PREFIX
 * overrides. Real Step-3 checkpoints use the plain names. */
static const char *detect_prefix(const st_set *s) {
    static const char *const known[] = {"", "language_model."};
    const char *env = getenv("AFD_TENSOR_PREFIX");
    if (env) return env;
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        size_t n = strlen(known[k]);
        for (int i = 0; i < st_set_count(s); i++) {
            const char *name = st_set_at(s, i)->name;
            if (strncmp(name, known[k], n) == 0 &&
                (strncmp(name + n, "model.", 6) == 0 || strncmp(name + n, "lm_head.", 8) == 0))
                return known[k];
        }
    }
    return "";
}

static int load_all(wl *L, int parts) {
    const afd_model_config *c = L->cfg;
    afd_weights *w = L->w;
    w->layers = xcalloc((size_t)c->n_layers, sizeof *w->layers);
    int rc = (parts & AFD_PART_ATTN) ? load_globals(L) : 0;
    for (int i = 0; i < c->n_layers && rc == 0; i++) {
        afd_layer_weights *lw = &w->layers[i];
        lw->is_moe = c->is_moe[i] != 0;
        if (parts & AFD_PART_ATTN) rc = load_attn_layer(L, i, lw);
        if (rc == 0 && (parts & AFD_PART_FFN)) rc = load_ffn_layer(L, i, lw);
    }
    return rc;
}

int afd_weights_load(const st_set *set, const afd_model_config *cfg, int parts,
                     const afd_shard *shard, afd_weights *w, afd_err *err) {
    memset(w, 0, sizeof *w);
    if (!set || !cfg || parts < 1 || parts > AFD_PART_ALL)
        return afd_errf(err, -EINVAL, "afd_weights_load: parts %d (want 1, 2 or 3)", parts);
    afd_err verr = {0};
    int rc = afd_config_validate(cfg, &verr);
    if (rc) return afd_errf(err, rc, "%s: config: %s", st_set_path(set), verr.msg);
    w->cfg = *cfg;
    w->parts = parts;
    w->shard = shard ? *shard : afd_shard_full(cfg);
    if ((rc = shard_check(cfg, &w->shard, err))) return rc;
    wl L = {.set = set, .cfg = &w->cfg, .w = w, .prefix = detect_prefix(set), .err = err};
    rc = load_all(&L, parts);
    if (rc == 0) {
        char label[300];
        snprintf(label, sizeof label, "loading %s", st_set_path(set));
        wl_populate(&L, label);
        w->bytes_mapped = L.bytes;
    }
    free(L.reg);
    if (rc) afd_weights_free(w);
    return rc;
}

void afd_weights_free(afd_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_owned; i++)
        free(w->owned[i]);
    free(w->owned);
    if (w->layers)
        for (int i = 0; i < w->cfg.n_layers; i++)
            free(w->layers[i].experts);
    free(w->layers);
    memset(w, 0, sizeof *w);
}

/* ==== the one-call path ===================================================================== */

static const char *parts_name(int parts) {
    return parts == AFD_PART_ATTN ? "attention" : parts == AFD_PART_FFN ? "FFN" : "all";
}

int afd_model_open(const char *dir, int parts, const afd_shard *shard, afd_weights *w, st_set **set,
                   afd_err *err) {
    memset(w, 0, sizeof *w);
    *set = NULL;
    afd_model_config cfg;
    double t0 = afd_now_s();
    int rc = afd_config_load(dir, &cfg, err);
    if (rc == 0) rc = st_set_open(dir, set, err);
    if (rc == 0) rc = afd_weights_load(*set, &cfg, parts, shard, w, err);
    if (rc) {
        st_set_free(*set);
        *set = NULL;
        return rc;
    }
    log_info("model %s: %s, %d layers (%d MoE), hidden %d, %d experts top-%d%s; %s part, "
             "experts [%d, %d), tp %d/%d, dense %d/%d: %.2f GB in %.1f s",
             dir, cfg.model_type, cfg.n_layers, afd_config_n_moe(&cfg), cfg.hidden, cfg.n_experts,
             cfg.top_k, cfg.fp8_blocks ? ", block-FP8" : "", parts_name(parts),
             w->shard.expert_begin, w->shard.expert_end, w->shard.tp_rank, w->shard.tp_size,
             w->shard.dense_size ? w->shard.dense_rank : w->shard.tp_rank,
             w->shard.dense_size ? w->shard.dense_size : w->shard.tp_size,
             (double)w->bytes_mapped / 1e9, afd_now_s() - t0);
    return 0;
}

/* ==== fingerprint =========================================================================== */

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

uint64_t afd_model_fingerprint(const afd_model_config *cfg, const st_set *set) {
    uint64_t h = 0xcbf29ce484222325ull, ch = afd_config_hash(cfg);
    h = fnv_bytes(h, &ch, sizeof ch);
    int n = st_set_count(set);
    const st_tensor **t = xcalloc((size_t)(n > 0 ? n : 1), sizeof *t);
    for (int i = 0; i < n; i++)
        t[i] = st_set_at(set, i);
    qsort(t, (size_t)n, sizeof *t, by_name);
    for (int i = 0; i < n; i++) {
        int64_t dims[ST_MAX_DIMS + 2] = {t[i]->dtype, t[i]->ndim};
        for (int d = 0; d < t[i]->ndim && d < ST_MAX_DIMS; d++)
            dims[d + 2] = t[i]->shape[d];
        h = fnv_bytes(h, t[i]->name, strlen(t[i]->name) + 1);
        h = fnv_bytes(h, dims, sizeof dims);
        h = fnv_bytes(h, t[i]->data, t[i]->nbytes < 16 ? (size_t)t[i]->nbytes : 16);
    }
    free(t);
    return h;
}
