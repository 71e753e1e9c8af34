/* backend.h: the math every daemon runs, behind one versioned interface.
 *
 * A backend is {api_version, iface, ctx}. Callers use the afd_be_*() wrappers below, never
 * `iface` directly; a wrapper supplies the default where an optional slot is NULL. The CPU
 * backend is always built (common/backend/cpu/); the CUDA backend is a separate shared object
 * that afd_backend_open() dlopens and that falls back to CPU when no GPU answers.
 *
 * Memory: every float/uint8 pointer an op takes is "backend memory": host memory for the CPU
 * backend (so any pointer works), device memory for CUDA, obtained from afd_be_alloc(). Weights
 * (afd_tensor) may be offered to prepare() once at load time; a backend may repack them.
 *
 * Numerics contract (DESIGN §9, batch invariance): every output element of every op is computed
 * with a reduction order that depends only on the sizes of the reduced dimension and on the
 * kernel variant chosen at start-up, never on the batch size B, on the other rows of the
 * batch, or on the number of threads. Activations are fp32; accumulation is fp32.
 *
 * Threads: one caller thread at a time per backend (the backend may use its own worker threads
 * inside an op). Errors: ops on validated inputs do not fail; those returning int give 0 or
 * AFD_E_UNSUPPORTED for a dtype/shape combination the backend cannot do.
 *
 * Optional slots (NULL = the wrapper's default): alloc/release/upload/download (host
 * afd_try_alloc, free, memcpy), prepare (no-op, returns 0), sync (no-op). Every op slot is
 * required. docs/backend.md has the full contract and the conformance suite.
 */
#ifndef AFD_BACKEND_H
#define AFD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/model/tensor.h"

#define AFD_BACKEND_API_VERSION 1

/* Paged KV cache layout, shared by the cache owner (allocator) and the attention op.
 * The pool is an array of blocks, block b at base + b*block_bytes. Inside a block, layer l
 * starts at l*layer_bytes; inside a layer:
 *   K  [block_size][n_kv_heads][head_dim] of `dtype`   at k_off
 *   V  [block_size][n_kv_heads][head_dim] of `dtype`   at v_off
 *   (FP8 only) K scales [block_size][n_kv_heads] fp32   at ks_off
 *   (FP8 only) V scales [block_size][n_kv_heads] fp32   at vs_off
 * One block holds all layers of block_size positions, so a KV handoff moves whole blocks. */
typedef struct afd_kv_layout {
    afd_dtype dtype; /* AFD_DT_BF16, AFD_DT_F8_E4M3 or AFD_DT_F32 */
    int block_size;  /* positions per block */
    int n_layers;
    int n_kv_heads;
    int head_dim;
    size_t k_off, v_off, ks_off, vs_off;
    size_t layer_bytes, block_bytes;
} afd_kv_layout;

/* Computes the offsets and sizes of a layout from its first five fields. */
void afd_kv_layout_init(afd_kv_layout *kv, afd_dtype dt, int block_size, int n_layers,
                        int n_kv_heads, int head_dim);

/* Which KV positions each query token sees. Token i belongs to sequence tok_seq[i] and attends
 * to positions [0, tok_ctx[i]) of it (causal: tok_ctx = its own position + 1; its own K/V must
 * already be stored). Sequence s's position p is in block seq_blocks[s*max_blocks + p/bs] at
 * slot p%bs. All arrays in backend memory. */
typedef struct afd_attn_batch {
    int n_tok;
    const int32_t *tok_seq;    /* [n_tok] */
    const int32_t *tok_ctx;    /* [n_tok] */
    int n_seq;
    int max_blocks;
    const int32_t *seq_blocks; /* [n_seq * max_blocks] */
} afd_attn_batch;

typedef struct afd_backend afd_backend;

typedef struct afd_backend_iface {
    uint32_t api_version; /* AFD_BACKEND_API_VERSION */
    const char *name;     /* "cpu", "cuda" */
    void (*free)(afd_backend *be);
    /* A short description of the variant chosen ("cpu avx512 x2 threads"). */
    const char *(*describe)(afd_backend *be);

    /* optional, default: host malloc/free/memcpy */
    void *(*alloc)(afd_backend *be, size_t n);
    void (*release)(afd_backend *be, void *p);
    void (*upload)(afd_backend *be, void *dst, const void *src, size_t n);
    void (*download)(afd_backend *be, void *dst, const void *src, size_t n);
    /* optional, default: no-op. May set t->prepared to a repacked copy it owns. */
    int (*prepare)(afd_backend *be, afd_tensor *t);
    /* optional, default: no-op. Wait for queued work (async backends). */
    void (*sync)(afd_backend *be);

    /* y[b][n] = sum_k x[b][k] * W[n][k] for b < B, n < W.rows, k < W.cols.
     * x: [B, W.cols] fp32, y: [B, W.rows] fp32 (contiguous). W: F32, BF16, F16 or block-FP8
     * (any view: row0/col0 offsets, partial edge blocks). FP8 codes 0x7f/0xff (NaN) are not
     * valid weights: their result is unspecified. AFD_E_UNSUPPORTED for another dtype. */
    int (*matmul)(afd_backend *be, float *y, const float *x, int B, const afd_tensor *w);
    /* Rows of an embedding table: out[b] = fp32(E[ids[b]]), ids already range-checked. */
    int (*embed)(afd_backend *be, float *out, const afd_tensor *e, const int32_t *ids, int B);
    /* y[b] = x[b] / sqrt(mean(x[b]^2) + eps) * w, over n; y may equal x. CPU: the sum of
     * squares in double, r = (float)(1/sqrt(ss/n + eps)), y = (x * r) * w in fp32. */
    void (*rmsnorm)(afd_backend *be, float *y, const float *x, const float *w, int B, int n,
                    float eps);
    /* NeoX rotary embedding in place on x: [B, n_heads*head_dim] with row stride `ld` floats;
     * dim i pairs with i + head_dim/2; angle = pos[b] * theta^(-2i/head_dim), computed in
     * double, cos/sin rounded to float; x0' = x0*c - x1*s, x1' = x0*s + x1*c with every
     * product rounded (no fma): the same bits on every CPU variant. head_dim even. */
    void (*rope)(afd_backend *be, float *x, int B, int ld, int n_heads, int head_dim,
                 const int32_t *pos, double theta);
    /* Store K and V rows (fp32 [n_tok, n_kv_heads*head_dim]) at slots[i] = block*bs + offset,
     * converting to the cache dtype (BF16: RNE; FP8: per token per head, the quantize_fp8
     * rule with group = head_dim, bit-identical). A negative slot skips that token. */
    void (*kv_store)(afd_backend *be, const afd_kv_layout *kv, void *pool, int layer, int n_tok,
                     const int32_t *slots, const float *k, const float *v);
    /* out[i] = softmax(q[i] . K^T * scale) V over the positions batch->tok_ctx[i] of its
     * sequence, for n_heads query heads sharing n_kv_heads K/V heads (GQA; Step-3: 1);
     * n_heads a multiple of n_kv_heads. q, out: [n_tok, n_heads*head_dim]. Softmax in fp32
     * with max subtraction; each (token, head) depends only on its own q, ctx and cache. */
    void (*attention)(afd_backend *be, float *out, const float *q, int n_heads,
                      const afd_kv_layout *kv, const void *pool, int layer,
                      const afd_attn_batch *batch, float scale);
    /* Router: p = softmax(logits[b]) in fp32 over E; ids/weights of the top k (ties: lower id
     * first), weights renormalised to sum 1 when `renorm`. ids/w: [B, k]. */
    void (*topk_softmax)(afd_backend *be, int32_t *ids, float *w, const float *logits, int B,
                         int E, int k, bool renorm);
    /* out[i] = silu(gate[i]) * up[i] for i < n, silu(g) = g / (1 + exp(-g)). */
    void (*swiglu)(afd_backend *be, float *out, const float *gate, const float *up, size_t n);
    /* y[b] += alpha[b] * x[b] over n (alpha NULL means 1). */
    void (*add_scaled)(afd_backend *be, float *y, const float *x, const float *alpha, int B,
                       int n);
    /* FP8 quantization with one scale per `group` elements (group divides n; group == n is
     * per token): scale = amax(group)/448 (1 when amax == 0), q = e4m3(x / scale) RNE satfinite.
     * q: [B, n], scale: [B, n/group]. Bit-identical on every backend. */
    void (*quantize_fp8)(afd_backend *be, uint8_t *q, float *scale, const float *x, int B, int n,
                         int group);
    /* x = e4m3(q) * scale, the inverse mapping. */
    void (*dequantize_fp8)(afd_backend *be, float *x, const uint8_t *q, const float *scale, int B,
                           int n, int group);
} afd_backend_iface;

struct afd_backend {
    const afd_backend_iface *iface;
    void *ctx;
};

typedef struct afd_backend_opts {
    const char *kind;  /* "auto" (CUDA if present and a GPU answers, else CPU), "cpu", "cuda" */
    const char *isa;   /* CPU kernel variant: "auto", "generic", "avx2", "avx512", "avx512vbmi", "amx" */
    int n_threads;     /* CPU worker threads; 0 = number of online CPUs */
} afd_backend_opts;

/* Creates a backend; logs the choice and why (e.g. "no GPU: cudaGetDeviceCount -> 35").
 * kind "cpu": the CPU backend. "cuda": dlopen the CUDA backend (AFD_CUDA_LIB, else
 * libafd_cuda.so next to the executable), an error if it cannot load or run. "auto" (or NULL):
 * CUDA when it loads and runs, else one log line and the CPU backend. isa NULL or "auto": the
 * AFD_CPU_ISA environment variable if set, else the best variant (afd_cpu_isas()[0]).
 * 0 and *out, or a negative code (unknown kind/isa, ISA not supported by this CPU). */
int afd_backend_open(const afd_backend_opts *opts, afd_backend **out);
/* Frees a backend from afd_backend_open or afd_cpu_backend_new; NULL is a no-op. A dlopened
 * backend's shared object stays loaded (CUDA runtimes do not like being unloaded). */
void afd_backend_free(afd_backend *be);

/* The one symbol a backend shared object exports (C linkage):
 *     int afd_backend_entry(const afd_backend_opts *opts, afd_backend **out);
 * 0 and a backend whose iface->api_version == AFD_BACKEND_API_VERSION, or a negative code after
 * logging why it cannot run here (no GPU, driver too old). */
#define AFD_BACKEND_ENTRY "afd_backend_entry"
typedef int (*afd_backend_entry_fn)(const afd_backend_opts *opts, afd_backend **out);
/* The CPU backend directly (used by afd_backend_open and by conformance tests). isa as in
 * afd_backend_opts, except that "auto"/NULL ignores AFD_CPU_ISA; n_threads 0 = online CPUs.
 * AFD_E_UNSUPPORTED for an ISA this CPU (or this build) cannot run, -EINVAL for an unknown
 * name. */
int afd_cpu_backend_new(const char *isa, int n_threads, afd_backend **out);
/* ISA variants this CPU can run, best first, e.g. {"amx","avx512","avx2","generic"}. */
int afd_cpu_isas(const char **names, int max);

/* Wrappers: the only way callers reach the iface. */
const char *afd_be_describe(afd_backend *be);
void *afd_be_alloc(afd_backend *be, size_t n);
void afd_be_release(afd_backend *be, void *p);
void afd_be_upload(afd_backend *be, void *dst, const void *src, size_t n);
void afd_be_download(afd_backend *be, void *dst, const void *src, size_t n);
int afd_be_prepare(afd_backend *be, afd_tensor *t);
void afd_be_sync(afd_backend *be);
int afd_be_matmul(afd_backend *be, float *y, const float *x, int B, const afd_tensor *w);
int afd_be_embed(afd_backend *be, float *out, const afd_tensor *e, const int32_t *ids, int B);
void afd_be_rmsnorm(afd_backend *be, float *y, const float *x, const float *w, int B, int n,
                    float eps);
void afd_be_rope(afd_backend *be, float *x, int B, int ld, int n_heads, int head_dim,
                 const int32_t *pos, double theta);
void afd_be_kv_store(afd_backend *be, const afd_kv_layout *kv, void *pool, int layer, int n_tok,
                     const int32_t *slots, const float *k, const float *v);
void afd_be_attention(afd_backend *be, float *out, const float *q, int n_heads,
                      const afd_kv_layout *kv, const void *pool, int layer,
                      const afd_attn_batch *batch, float scale);
void afd_be_topk_softmax(afd_backend *be, int32_t *ids, float *w, const float *logits, int B,
                         int E, int k, bool renorm);
void afd_be_swiglu(afd_backend *be, float *out, const float *gate, const float *up, size_t n);
void afd_be_add_scaled(afd_backend *be, float *y, const float *x, const float *alpha, int B,
                       int n);
void afd_be_quantize_fp8(afd_backend *be, uint8_t *q, float *scale, const float *x, int B, int n,
                         int group);
void afd_be_dequantize_fp8(afd_backend *be, float *x, const uint8_t *q, const float *scale, int B,
                           int n, int group);

#endif
