/* kernels_generic.c: the portable scalar kernels, the reference every SIMD variant is tested
 * against. Every reduction runs in plain sequential order with one accumulator and explicit
 * fmaf() (so gcc and clang give the same bits whatever their contraction defaults):
 *   matmul   y = fma(w[k], x[k], y) for k = 0 .. K-1
 *   rmsnorm  sum of squares in double, k = 0 .. n-1
 *   attention per (token, head): online softmax over positions 0 .. ctx-1, fp32
 */
#include <math.h>
#include <string.h>

#include "common/backend/cpu/cpu.h"
#include "common/base/numfmt.h"

float cpu_fp8_scale(float amax) { return amax == 0.0f ? 1.0f : amax / AFD_E4M3_MAX; }

float cpu_weight_at(const afd_tensor *w, int64_t r, int64_t c) {
    size_t i = (size_t)(r * w->ld + c);
    switch (w->dtype) {
    case AFD_DT_F32:
        return ((const float *)w->data)[i];
    case AFD_DT_BF16:
        return afd_bf16_to_f32(((const uint16_t *)w->data)[i]);
    case AFD_DT_F16:
        return afd_f16_to_f32(((const uint16_t *)w->data)[i]);
    case AFD_DT_F8_E4M3: {
        float s = w->scale[((w->row0 + r) / AFD_FP8_BLOCK) * w->scale_ld +
                           (w->col0 + c) / AFD_FP8_BLOCK];
        return afd_e4m3_to_f32(((const uint8_t *)w->data)[i]) * s;
    }
    default:
        return 0.0f;
    }
}

/* ---- matmul ---- */

/* Row n of w as fp32 into dst[0..K). */
static void weight_row(float *dst, const afd_tensor *w, int n, int K) {
    for (int k = 0; k < K; k++)
        dst[k] = cpu_weight_at(w, n, k);
}

static void matmul_cols(float *y, const float *x, int B, const afd_tensor *w, int n0, int n1,
                        void *scratch) {
    const int K = (int)w->cols, N = (int)w->rows;
    bool fits = (size_t)K * sizeof(float) <= CPU_SCRATCH_BYTES;
    float *wr = scratch;
    for (int n = n0; n < n1; n++) {
        if (fits)
            weight_row(wr, w, n, K);
        for (int b = 0; b < B; b++) {
            const float *xb = x + (size_t)b * K;
            float acc = 0.0f;
            for (int k = 0; k < K; k++)
                acc = fmaf(fits ? wr[k] : cpu_weight_at(w, n, k), xb[k], acc);
            y[(size_t)b * N + n] = acc;
        }
    }
}

/* ---- elementwise and row ops ---- */

static void rmsnorm_row(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * (double)x[i];
    float r = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = 0; i < n; i++) {
        float t = x[i] * r;
        y[i] = t * w[i];
    }
}

/* x0' = x0*c - x1*s, x1' = x0*s + x1*c, each product rounded (no fma): every variant gives
 * the same bits. */
static void rope_row(float *x, int n_heads, int head_dim, const float *cs, const float *sn) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            float ac = a * cs[i], bs = b * sn[i], as = a * sn[i], bc = b * cs[i];
            v[i] = ac - bs;
            v[i + half] = as + bc;
        }
    }
}

static void swiglu(float *out, const float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        float s = g / (1.0f + expf(-g));
        out[i] = s * up[i];
    }
}

static void add_scaled(float *y, const float *x, float alpha, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] = fmaf(alpha, x[i], y[i]);
}

/* amax ignores NaN (a NaN never compares greater), as the SIMD max does. */
static void quantize_group(uint8_t *q, float *scale, const float *x, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax)
            amax = a;
    }
    float s = cpu_fp8_scale(amax);
    *scale = s;
    for (int i = 0; i < n; i++)
        q[i] = afd_f32_to_e4m3(x[i] / s);
}

static void dequantize_group(float *x, const uint8_t *q, float scale, int n) {
    for (int i = 0; i < n; i++)
        x[i] = afd_e4m3_to_f32(q[i]) * scale;
}

/* ---- attention ---- */

/* Element pointer and FP8 scale of K (which 0) or V (1) of position p, KV head g. */
static const uint8_t *kv_row(const cpu_attn_args *a, const int32_t *blocks, int p, int g,
                             int which, float *scale) {
    const afd_kv_layout *kv = a->kv;
    int slot = p % kv->block_size;
    const uint8_t *base = a->pool + (size_t)blocks[p / kv->block_size] * kv->block_bytes +
                          (size_t)a->layer * kv->layer_bytes;
    size_t row = (size_t)slot * kv->n_kv_heads + g;
    if (kv->dtype == AFD_DT_F8_E4M3)
        *scale = ((const float *)(base + (which ? kv->vs_off : kv->ks_off)))[row];
    return base + (which ? kv->v_off : kv->k_off) + row * kv->head_dim * afd_dtype_size(kv->dtype);
}

static float kv_elem(afd_dtype dt, const uint8_t *row, int d, float scale) {
    switch (dt) {
    case AFD_DT_BF16:
        return afd_bf16_to_f32(((const uint16_t *)row)[d]);
    case AFD_DT_F8_E4M3:
        return afd_e4m3_to_f32(row[d]) * scale;
    default:
        return ((const float *)row)[d];
    }
}

/* One (token, head): online softmax, rescaling the accumulator when the max grows. */
static void attention_head(const cpu_attn_args *a, int tok, int h, float *acc) {
    const afd_kv_layout *kv = a->kv;
    const int hd = kv->head_dim, g = h / (a->n_heads / kv->n_kv_heads);
    const int seq = a->batch->tok_seq[tok], ctx = a->batch->tok_ctx[tok];
    const int32_t *blocks = a->batch->seq_blocks + (size_t)seq * a->batch->max_blocks;
    const float *q = a->q + ((size_t)tok * a->n_heads + h) * hd;
    float m = -INFINITY, l = 0.0f, ks = 1.0f, vs = 1.0f;
    for (int d = 0; d < hd; d++)
        acc[d] = 0.0f;
    for (int p = 0; p < ctx; p++) {
        const uint8_t *kr = kv_row(a, blocks, p, g, 0, &ks);
        float dot = 0.0f;
        for (int d = 0; d < hd; d++)
            dot = fmaf(q[d], kv_elem(kv->dtype, kr, d, ks), dot);
        float s = dot * a->scale;
        if (s > m) {
            float alpha = expf(m - s);
            l *= alpha;
            for (int d = 0; d < hd; d++)
                acc[d] *= alpha;
            m = s;
        }
        float e = expf(s - m);
        l += e;
        const uint8_t *vr = kv_row(a, blocks, p, g, 1, &vs);
        for (int d = 0; d < hd; d++)
            acc[d] = fmaf(e, kv_elem(kv->dtype, vr, d, vs), acc[d]);
    }
    float *out = a->out + ((size_t)tok * a->n_heads + h) * hd;
    for (int d = 0; d < hd; d++)
        out[d] = acc[d] / l;
}

static void attention(const cpu_attn_args *a, int tok, int h0, int h1, void *scratch) {
    for (int h = h0; h < h1; h++)
        attention_head(a, tok, h, scratch);
}

const cpu_kernels cpu_kernels_generic = {
    .name = "generic",
    .matmul_cols = matmul_cols,
    .rmsnorm_row = rmsnorm_row,
    .rope_row = rope_row,
    .attention = attention,
    .swiglu = swiglu,
    .add_scaled = add_scaled,
    .quantize_group = quantize_group,
    .dequantize_group = dequantize_group,
};
