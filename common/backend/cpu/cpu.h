/* cpu.h: internals of the CPU backend, shared by cpu.c, the kernel variants, the conformance
 * tests and afd-bench. Not for the engine (it uses backend.h only).
 *
 * cpu.c owns the backend object, the thread pool and the per-thread scratch, validates
 * arguments, splits every op into tasks and calls one cpu_kernels table. A table holds the
 * ISA-specific inner loops; each entry computes whole output elements, so how cpu.c splits the
 * work (and how many threads run it) never changes a result (backend.h, batch invariance).
 * Kernels allocate nothing and log nothing; they get CPU_SCRATCH_BYTES of 64-byte aligned
 * per-thread scratch.
 */
#ifndef AFD_CPU_H
#define AFD_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/backend/backend.h"

#define CPU_SCRATCH_BYTES ((size_t)2 << 20) /* per thread */
#define CPU_MM_NP 128                       /* matmul: max output columns per task */
#define CPU_ATT_MAX_HEAD_DIM 1024
#define CPU_ATT_MAX_HEADS 64                /* attention: max query heads per task */

/* One attention call, as cpu.c received it. */
typedef struct cpu_attn_args {
    float *out;
    const float *q;
    int n_heads;
    const afd_kv_layout *kv;
    const uint8_t *pool;
    int layer;
    const afd_attn_batch *batch;
    float scale;
} cpu_attn_args;

typedef struct cpu_kernels {
    const char *name;
    /* y[b][n] for every b < B and n in [n0, n1), n1 - n0 <= CPU_MM_NP. w: F32, BF16, F16 or
     * F8_E4M3 with scales (checked by cpu.c). */
    void (*matmul_cols)(float *y, const float *x, int B, const afd_tensor *w, int n0, int n1,
                        void *scratch);
    /* One row: y = x * r * w with r = 1/sqrt(sum(x^2)/n + eps), the sum in double. */
    void (*rmsnorm_row)(float *y, const float *x, const float *w, int n, float eps);
    /* One token: rotate every head of x; cs/sn[i] = cos/sin of the angle of pair i. */
    void (*rope_row)(float *x, int n_heads, int head_dim, const float *cs, const float *sn);
    /* Token `tok`, query heads [h0, h1) (all of one KV head, h1 - h0 <= CPU_ATT_MAX_HEADS). */
    void (*attention)(const cpu_attn_args *a, int tok, int h0, int h1, void *scratch);
    void (*swiglu)(float *out, const float *gate, const float *up, size_t n);
    /* y[i] = fma(alpha, x[i], y[i]). */
    void (*add_scaled)(float *y, const float *x, float alpha, size_t n);
    /* One group of n values: *scale and the e4m3 codes (backend.h rule, bit-exact). */
    void (*quantize_group)(uint8_t *q, float *scale, const float *x, int n);
    /* x[i] = e4m3(q[i]) * scale (bit-exact). */
    void (*dequantize_group)(float *x, const uint8_t *q, float scale, int n);
} cpu_kernels;

extern const cpu_kernels cpu_kernels_generic;
extern const cpu_kernels cpu_kernels_avx2;
extern const cpu_kernels cpu_kernels_avx512;
extern const cpu_kernels cpu_kernels_avx512vbmi;

/* The kernel table of a variant name, NULL if unknown or not runnable on this CPU. */
const cpu_kernels *cpu_kernels_find(const char *isa);
/* True when this CPU has AMX-BF16 and the kernel granted the tile-data permission. */
bool cpu_amx_usable(void);
/* True when the CPU has the AVX-512 subsets the avx512 variant needs. */
bool cpu_avx512_usable(void);
/* True when the CPU also has AVX512-VBMI (the avx512vbmi variant). */
bool cpu_vbmi_usable(void);

/* Scalar reference pieces shared by every variant (kernels_generic.c). */
float cpu_fp8_scale(float amax); /* amax / 448, or 1 when amax == 0 */
/* Weight element (r, c) of a view as fp32 (block scale applied for F8_E4M3). */
float cpu_weight_at(const afd_tensor *w, int64_t r, int64_t c);

#endif
