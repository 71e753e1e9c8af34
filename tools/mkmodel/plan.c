/* plan.c: the tensor list of a Step-3 checkpoint, its initial scales, and the shard plan.
 *
 * Scaling (docs/models.md): activations must stay in a sane range through every layer of a
 * random model, or the oracle comparison measures overflow instead of arithmetic.
 *   embeddings ~ N(0, 1): the residual stream starts with RMS 1
 *   norm weights ~ 1 + N(0, 0.1^2): a norm bug still shows, the scale stays 1
 *   projections feeding a norm or a nonlinearity ~ N(0, 1/in): outputs have RMS ~1
 *   projections writing the residual (o_proj, every down_proj) ~ N(0, g^2/in) with
 *     g = 0.5/sqrt(layers), divided by 0.6 for down_proj (the RMS of silu(a)*b for unit a, b):
 *     every update has RMS <= g, the residual grows to about sqrt(1 + 2*L*g^2) ~ 1.2
 *   router (moe.gate) ~ N(0, 4/in): logits with std 2, so top-k is never a near tie
 *   lm_head ~ N(0, 1/in): logits with RMS ~1
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/base/alloc.h"
#include "tools/mkmodel/mkmodel.h"

#define NORM_NOISE 0.1f
#define ROUTER_SPREAD 2.0f
#define SILU_GLU_RMS 0.6f

static mk_tensor *plan_add(mk_plan *p, const char *name, afd_dtype dt, int ndim,
                           const int64_t *shape, mk_init init, float std) {
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->t = xrealloc(p->t, (size_t)p->cap * sizeof *p->t);
    }
    mk_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = ndim;
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        count *= (uint64_t)shape[i];
    }
    t->init = init;
    t->std = std;
    t->nbytes = count * afd_dtype_size(dt);
    p->total_bytes += t->nbytes;
    if (init != MK_INIT_SCALE)
        p->n_params += count;
    return t;
}

/* buf (MK_NAME_MAX bytes) = a + b, truncated (names are far shorter). */
static void join(char *buf, const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > MK_NAME_MAX - 1)
        na = MK_NAME_MAX - 1;
    if (nb > MK_NAME_MAX - 1 - na)
        nb = MK_NAME_MAX - 1 - na;
    memcpy(buf, a, na);
    memcpy(buf + na, b, nb);
    buf[na + nb] = '\0';
}

static int64_t ceil128(int64_t v) { return (v + AFD_FP8_BLOCK - 1) / AFD_FP8_BLOCK; }

/* A projection weight: BF16, or e4m3 followed by its weight_scale_inv. `n` experts stacked
 * when n > 0. */
static void add_proj(mk_plan *p, const char *name, int n, int64_t out, int64_t in, float std,
                     bool fp8) {
    char full[MK_NAME_MAX];
    int64_t shape[3] = {n, out, in}, sshape[3] = {n, ceil128(out), ceil128(in)};
    int ndim = n > 0 ? 3 : 2;
    const int64_t *sh = n > 0 ? shape : shape + 1, *ssh = n > 0 ? sshape : sshape + 1;
    join(full, name, ".weight");
    plan_add(p, full, fp8 ? AFD_DT_F8_E4M3 : AFD_DT_BF16, ndim, sh, MK_INIT_NORMAL, std);
    if (!fp8)
        return;
    join(full, name, ".weight_scale_inv");
    plan_add(p, full, AFD_DT_F32, ndim, ssh, MK_INIT_SCALE, 0);
}

static void add_vec(mk_plan *p, const char *name, int64_t n) {
    plan_add(p, name, AFD_DT_BF16, 1, &n, MK_INIT_ONES, NORM_NOISE);
}

/* Which projections are FP8: `kind` 'a' attention q side/o, 'k' k/v, 'e' routed experts,
 * 's' shared expert, 'd' dense FFN. */
static bool is_fp8(const mk_spec *s, char kind) {
    if (s->quant == MK_QUANT_ALL)
        return true;
    if (s->quant == MK_QUANT_MIXED)
        return kind == 'a' || kind == 'e';
    return false;
}

static void add_ffn(mk_plan *p, const mk_spec *s, const char *pre, int n, int64_t inter,
                    float g, char kind) {
    const afd_model_config *c = &s->cfg;
    char name[MK_NAME_MAX];
    float in_std = 1.0f / sqrtf((float)c->hidden);
    float down_std = g / SILU_GLU_RMS / sqrtf((float)inter);
    bool q = is_fp8(s, kind);
    join(name, pre, ".gate_proj");
    add_proj(p, name, n, inter, c->hidden, in_std, q);
    join(name, pre, ".up_proj");
    add_proj(p, name, n, inter, c->hidden, in_std, q);
    join(name, pre, ".down_proj");
    add_proj(p, name, n, c->hidden, inter, down_std, q);
}

static void add_attn(mk_plan *p, const mk_spec *s, const char *pre, float g) {
    const afd_model_config *c = &s->cfg;
    char name[MK_NAME_MAX];
    int64_t H = c->hidden, Q = c->share_q_dim, HD = (int64_t)c->n_heads * c->head_dim;
    int64_t KV = (int64_t)c->n_kv_heads * c->head_dim;
    join(name, pre, ".q_proj");
    add_proj(p, name, 0, Q, H, 1.0f / sqrtf((float)H), is_fp8(s, 'a'));
    join(name, pre, ".inter_norm.weight");
    add_vec(p, name, Q);
    join(name, pre, ".wq");
    add_proj(p, name, 0, HD, Q, 1.0f / sqrtf((float)Q), is_fp8(s, 'a'));
    join(name, pre, ".k_proj");
    add_proj(p, name, 0, KV, H, 1.0f / sqrtf((float)H), is_fp8(s, 'k'));
    join(name, pre, ".v_proj");
    add_proj(p, name, 0, KV, H, 1.0f / sqrtf((float)H), is_fp8(s, 'k'));
    join(name, pre, ".o_proj");
    add_proj(p, name, 0, H, HD, g / sqrtf((float)HD), is_fp8(s, 'a'));
}

static void add_layer(mk_plan *p, const mk_spec *s, int i, float g) {
    const afd_model_config *c = &s->cfg;
    char pre[MK_NAME_MAX], name[MK_NAME_MAX];
    snprintf(pre, sizeof pre, "model.layers.%d", i);
    join(name, pre, ".input_layernorm.weight");
    add_vec(p, name, c->hidden);
    join(name, pre, ".self_attn");
    add_attn(p, s, name, g);
    join(name, pre, ".post_attention_layernorm.weight");
    add_vec(p, name, c->hidden);
    if (!c->is_moe[i]) {
        join(name, pre, ".mlp");
        add_ffn(p, s, name, 0, c->inter_dense, g, 'd');
        return;
    }
    int64_t gshape[2] = {c->n_experts, c->hidden};
    join(name, pre, ".moe.gate.weight");
    plan_add(p, name, AFD_DT_BF16, 2, gshape, MK_INIT_NORMAL,
             ROUTER_SPREAD / sqrtf((float)c->hidden));
    join(name, pre, ".moe");
    add_ffn(p, s, name, c->n_experts, c->moe_inter, g, 'e');
    join(name, pre, ".share_expert");
    add_ffn(p, s, name, 0, c->share_inter, g, 's');
}

void mk_plan_build(mk_plan *p, const mk_spec *s) {
    const afd_model_config *c = &s->cfg;
    memset(p, 0, sizeof *p);
    float g = 0.5f / sqrtf((float)c->n_layers);
    int64_t emb[2] = {c->vocab, c->hidden};
    plan_add(p, "model.embed_tokens.weight", AFD_DT_BF16, 2, emb, MK_INIT_NORMAL, 1.0f);
    for (int i = 0; i < c->n_layers; i++)
        add_layer(p, s, i, g);
    add_vec(p, "model.norm.weight", c->hidden);
    plan_add(p, "lm_head.weight", AFD_DT_BF16, 2, emb, MK_INIT_NORMAL,
             1.0f / sqrtf((float)c->hidden));
    p->n_shards = 1;
}

void mk_plan_shard(mk_plan *p, uint64_t shard_size) {
    int shard = 0;
    uint64_t cur = 0;
    for (int i = 0; i < p->n; i++) {
        uint64_t unit = p->t[i].nbytes;
        if (i + 1 < p->n && p->t[i + 1].init == MK_INIT_SCALE)
            unit += p->t[i + 1].nbytes; /* a weight and its scale stay together */
        if (shard_size && cur > 0 && cur + unit > shard_size)
            shard++, cur = 0;
        p->t[i].shard = shard;
        cur += p->t[i].nbytes;
        if (unit != p->t[i].nbytes) {
            p->t[++i].shard = shard;
            cur += p->t[i].nbytes;
        }
    }
    p->n_shards = shard + 1;
}

void mk_plan_free(mk_plan *p) {
    free(p->t);
    memset(p, 0, sizeof *p);
}

void mk_shard_name(const mk_plan *p, int i, char *buf, size_t cap) {
    if (p->n_shards == 1)
        snprintf(buf, cap, "model.safetensors");
    else
        snprintf(buf, cap, "model-%05d-of-%05d.safetensors", i + 1, p->n_shards);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const mk_tensor *const *)a)->name, (*(const mk_tensor *const *)b)->name);
}

char *mk_plan_index_json(const mk_plan *p) {
    const mk_tensor **sorted = xmalloc((size_t)p->n * sizeof *sorted);
    for (int i = 0; i < p->n; i++)
        sorted[i] = &p->t[i];
    qsort(sorted, (size_t)p->n, sizeof *sorted, cmp_tensor_name);
    json_t *map = json_object();
    for (int i = 0; i < p->n; i++) {
        char file[64];
        mk_shard_name(p, sorted[i]->shard, file, sizeof file);
        json_object_set_new(map, sorted[i]->name, json_string(file));
    }
    free(sorted);
    json_t *root = json_pack("{s:{s:I},s:o}", "metadata", "total_size",
                             (json_int_t)p->total_bytes, "weight_map", map);
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    size_t n = strlen(text);
    char *out = xmalloc(n + 2);
    memcpy(out, text, n);
    memcpy(out + n, "\n", 2);
    free(text);
    return out;
}
