/* kernels_simd.h: the SIMD kernels, written once over a small vector vocabulary and included
 * by kernels_avx2.c (VL = 8) and kernels_avx512.c (VL = 16). Not a public header: the including
 * file defines VL, SIMD_NAME, SIMD_TABLE, the type vf and the v_* / w_* primitives, sumsq_d,
 * e4m3_store(n) and dequantize_group.
 *
 * Reduction orders (the numerics contract of this variant, identical for every batch size,
 * batch composition and thread count):
 *   matmul    output (b, n) owns one VL-lane accumulator; the lane layout and the per-output
 *             FMA sequence are fixed by the dtype (see "matmul" below); then v_hsum (a fixed
 *             tree). Micro-kernels of 1..4 rows x 1, 4 or 8 columns, raw or packed weights,
 *             K-blocked or not: all run exactly this sequence (the accumulator is carried
 *             exactly through memory between K blocks).
 *   attention per (token, head): score(p) = sequential fma over d (as generic), times scale;
 *             online softmax over blocks of 2*VL positions; out[d] sums p in increasing order,
 *             rescaled when the running max grows; finally divided by the running sum.
 *   rmsnorm   sum of squares in double, lanes then a fixed tree.
 * Bit-identical to generic: rope, add_scaled, quantize/dequantize (and the kv_store codes).
 */
#ifndef VL
#error "kernels_simd.h is included by a kernels_<isa>.c file"
#endif

#include <math.h>

#include "common/base/numfmt.h"

#define ALWAYS static inline __attribute__((always_inline))

static int round_vl(int n) { return (n + VL - 1) / VL * VL; }

/* ---- exp: Cody-Waite reduction, degree-7 Taylor, relative error ~2 ulp. Results below
 * FLT_MIN (x < -87.336) are 0, above FLT_MAX (x > 88.7228) +inf. ---- */
ALWAYS vf v_exp(vf x) {
    vf xc = v_min(v_max(x, v_set1(-87.5f)), v_set1(88.75f));
    vf n = v_round(v_mul(xc, v_set1(1.44269504088896341f)));
    vf r = v_fma(n, v_set1(-0.693145751953125f), xc);
    r = v_fma(n, v_set1(-1.42860682030941723e-6f), r);
    vf p = v_set1(1.0f / 5040.0f);
    p = v_fma(p, r, v_set1(1.0f / 720.0f));
    p = v_fma(p, r, v_set1(1.0f / 120.0f));
    p = v_fma(p, r, v_set1(1.0f / 24.0f));
    p = v_fma(p, r, v_set1(1.0f / 6.0f));
    p = v_fma(p, r, v_set1(0.5f));
    p = v_fma(p, r, v_set1(1.0f));
    p = v_fma(p, r, v_set1(1.0f));
    vf y = v_ldexp(p, n);
    y = v_select_lt(x, -87.33654475f, v_zero(), y);
    return v_select_gt(x, 88.72283905f, v_set1(INFINITY), y);
}

/* ---- element conversion ---- */

enum { SRC_F32, SRC_BF16, SRC_F16, SRC_E4M3, N_SRC };

static size_t src_size(int src) {
    return src == SRC_F32 ? 4 : src == SRC_E4M3 ? 1 : 2;
}

static int src_of(afd_dtype dt) {
    switch (dt) {
    case AFD_DT_BF16:
        return SRC_BF16;
    case AFD_DT_F16:
        return SRC_F16;
    case AFD_DT_F8_E4M3:
        return SRC_E4M3;
    default:
        return SRC_F32;
    }
}

/* VL elements k.. of a row of type src as fp32 (E4M3: times s256 / 256). */
ALWAYS vf wload(const int src, const uint8_t *row, int k, vf s256) {
    switch (src) {
    case SRC_BF16:
        return w_bf16((const uint16_t *)row + k);
    case SRC_F16:
        return w_f16((const uint16_t *)row + k);
    case SRC_E4M3:
        return w_e4m3(row + k, s256);
    default:
        return v_load((const float *)row + k);
    }
}

/* The first n (< VL) elements, the other lanes 0. */
ALWAYS vf wloadn(const int src, const uint8_t *row, int k, int n, vf s256) {
    switch (src) {
    case SRC_BF16:
        return w_bf16n((const uint16_t *)row + k, n);
    case SRC_F16:
        return w_f16n((const uint16_t *)row + k, n);
    case SRC_E4M3:
        return w_e4m3n(row + k, n, s256);
    default:
        return v_loadn((const float *)row + k, n);
    }
}

/* n elements of a row to fp32 with one scale; writes round_vl(n) floats (zero tail). */
ALWAYS void cvt_run(const int src, float *d, const uint8_t *row, int n, vf s256) {
    int k = 0;
    for (; k + VL <= n; k += VL)
        v_store(d + k, wload(src, row, k, s256));
    if (k < n)
        v_store(d + k, wloadn(src, row, k, n - k, s256));
}

static void cvt_row(int src, float *d, const uint8_t *row, int n, float scale) {
    vf s256 = v_set1(scale * 256.0f);
    switch (src) {
    case SRC_BF16:
        cvt_run(SRC_BF16, d, row, n, s256);
        break;
    case SRC_F16:
        cvt_run(SRC_F16, d, row, n, s256);
        break;
    case SRC_E4M3:
        cvt_run(SRC_E4M3, d, row, n, s256);
        break;
    default:
        cvt_run(SRC_F32, d, row, n, s256);
    }
}

/* ---- matmul ----
 *
 * Layouts. F32 and F16 weights: the natural layout, chunks of VL columns. BF16 and FP8: the
 * pair layout, chunks of 2*VL columns split into E (even positions) and O (odd positions), which
 * the conversion produces with shifts and masks alone. FP8 splits K into segments at the 128-
 * column block boundaries of the parent; each segment is chunked from its own start and its
 * last chunk is zero-padded ("padded layout": segment i starts at the sum of the padded lengths
 * before it). x is permuted into the same padded pair layout once per call (raw) or per K block
 * (packed), so the micro-kernels only ever load whole vectors of x.
 *
 * Per output (b, n), every path runs exactly this:
 *   F32/F16: acc = fma(w_chunk, x_chunk, acc) over the chunks, masked tail.
 *   BF16:    acc = fma(w_E, x_E, acc); acc = fma(w_O, x_O, acc) per chunk.
 *   FP8:     per segment, p = 0; per chunk p = fma(w_E, x_E, p); p = fma(w_O, x_O, p), with
 *            w = e4m3/256 exactly; then acc = fma(p, 256*scale, acc).
 *   then y = v_hsum(acc). */

#ifndef MM_KC
#define MM_KC 512     /* K block of the packed path (natural columns; a multiple of 2*VL) */
#endif
#define MM_RB 64      /* rows of x per pass (accumulator scratch) */
#define MM_RAW_MAX 8  /* up to this many rows: raw weights, converted in the micro-kernel */
#ifndef MM_PAD
#define MM_PAD 16     /* row padding of packed panels (floats): no 4 KiB aliasing */
#endif
#define MM_CMAX 8     /* widest micro-kernel tile (C = 8 for one row of x) */
/* Raw FP8 weights: software prefetch this many bytes ahead in every streamed row (the
 * conversion keeps the core busy, so the hardware prefetcher alone falls behind; measured
 * 256-768 equally good). BF16, F16 and F32 rows get none: the hardware prefetcher keeps up and
 * extra prefetches only cost bandwidth. */
#define MM_PF_DIST 512
/* A padded K block: MM_KC columns plus the zero padding of up to 6 segments. */
#define MM_KCP_MAX (MM_KC + 6 * 2 * VL)
#define MM_SUB 32     /* packed path: columns per packed sub-panel */
/* scratch: acc [MM_RB][CPU_MM_NP][VL], pack [MM_SUB][MM_KCP_MAX + MM_PAD], x buffer */
#define MM_ACC_FLOATS ((size_t)MM_RB * CPU_MM_NP * VL)
#define MM_PACK_FLOATS ((size_t)MM_SUB * (MM_KCP_MAX + MM_PAD))
#define MM_XB_FLOATS (CPU_SCRATCH_BYTES / sizeof(float) - MM_ACC_FLOATS - MM_PACK_FLOATS)

/* Micro-kernel weight sources: raw dtypes, and packed panels (natural, or pair BF16 / FP8). */
enum { MK_F32, MK_BF16, MK_F16, MK_E4M3, MK_PBF16, MK_PE4M3, N_MK };

static bool src_pair(int src) { return src == SRC_BF16 || src == SRC_E4M3; }
static int round_to(int n, int m) { return (n + m - 1) / m * m; }

/* End (view column, exclusive, at most kn) of the FP8 segment holding column k; kcol0 is the
 * parent column of view column 0. Other dtypes: one segment. */
static int seg_end(int src, int64_t kcol0, int k, int kn) {
    if (src != SRC_E4M3)
        return kn;
    int64_t e = ((kcol0 + k) / AFD_FP8_BLOCK + 1) * AFD_FP8_BLOCK - kcol0;
    return e < kn ? (int)e : kn;
}

/* Length of columns [0, kn) in the padded pair layout. */
static int pair_len(int src, int64_t kcol0, int kn) {
    int len = 0;
    for (int k = 0, e; k < kn; k = e) {
        e = seg_end(src, kcol0, k, kn);
        len += round_to(e - k, 2 * VL);
    }
    return len;
}

/* x columns [0, kn) into the padded pair layout (pair_len floats). */
static void x_layout(float *dst, const float *x, int src, int64_t kcol0, int kn) {
    vf e, o;
    for (int k = 0, end; k < kn; k = end) {
        end = seg_end(src, kcol0, k, kn);
        int j = k;
        for (; j + 2 * VL <= end; j += 2 * VL, dst += 2 * VL) {
            x_pair(x + j, &e, &o);
            v_store(dst, e);
            v_store(dst + VL, o);
        }
        if (j < end) {
            x_pairn(x + j, end - j, &e, &o);
            v_store(dst, e);
            v_store(dst + VL, o);
            dst += 2 * VL;
        }
    }
}

/* n (<= 2*VL) BF16 or FP8 weights as E, O vectors (FP8 unscaled: e4m3 / 256). */
ALWAYS void wload_pair(const int src, const uint8_t *row, int k, int n, vf *e, vf *o) {
    if (src == SRC_BF16) {
        if (n == 2 * VL)
            w_bf16_pair((const uint16_t *)row + k, e, o);
        else
            w_bf16_pairn((const uint16_t *)row + k, n, e, o);
    } else {
        if (n == 2 * VL)
            w_e4m3_pair(row + k, e, o);
        else
            w_e4m3_pairn(row + k, n, e, o);
    }
}

/* One weight row, columns [0, kn), into the padded pair layout. */
static void pack_pair_row(float *d, int src, const uint8_t *row, int64_t kcol0, int kn) {
    vf e, o, e1, o1;
    for (int k = 0, end; k < kn; k = end) {
        end = seg_end(src, kcol0, k, kn);
        int j = k;
        if (src == SRC_E4M3) /* 4*VL codes per step where the segment has them */
            for (; j + 4 * VL <= end; j += 4 * VL, d += 4 * VL) {
                w_e4m3_quad(row + j, &e, &o, &e1, &o1);
                v_store(d, e);
                v_store(d + VL, o);
                v_store(d + 2 * VL, e1);
                v_store(d + 3 * VL, o1);
            }
        for (; j < end; j += 2 * VL, d += 2 * VL) {
            wload_pair(src, row, j, end - j < 2 * VL ? end - j : 2 * VL, &e, &o);
            v_store(d, e);
            v_store(d + VL, o);
        }
    }
}

/* One micro-kernel call: R rows of x times C weight rows over view columns [k0, k0+kn). */
typedef struct mm_blk {
    const float *x;         /* x row r at x + r*ldx: padded pair layout, or natural from k0 */
    size_t ldx;
    const uint8_t *w;       /* weight row c at w + c*ldw bytes: raw from column k0, or packed */
    size_t ldw;
    const float *srow[MM_CMAX]; /* FP8: block-scale row of each weight row */
    int64_t kcol0;          /* parent column of view column k0 */
    int kn;
    float *acc;             /* accumulator (r, c) at acc + r*ldacc + c*VL */
    size_t ldacc;
    bool init;              /* first K block: start from 0 */
    bool pf;                /* raw FP8 weights: prefetch MM_PF_DIST bytes ahead in each row */
    bool pf_wrap;           /* ... and past a row's end into the next C rows (this task's) */
} mm_blk;

/* Raw FP8 rows at step column kw: prefetch MM_PF_DIST bytes ahead in each of the C rows; past
 * the rows' end, the same distance into the next C rows (the next tile) when they are this
 * task's, so short rows start warm too. Never past the view's columns (TP slices). */
ALWAYS void mm_pf_e4m3(const int C, const mm_blk *m, int kw) {
    if (!m->pf)
        return;
    size_t off = (size_t)kw + MM_PF_DIST;
    const uint8_t *base = m->w;
    if (off >= (size_t)m->kn) {
        if (!m->pf_wrap)
            return;
        off -= (size_t)m->kn;
        base += C * m->ldw;
        if (off >= (size_t)m->kn)
            return;
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        prefetch(base + c * m->ldw + off);
}

/* One pair chunk: weights at column kw (raw: natural; packed: padded), x at padded column kx;
 * a[r][c] = fma(w_E, x_E, a); a = fma(w_O, x_O, a). */
ALWAYS void mm_pair_chunk(const int R, const int C, const int mk, const mm_blk *m,
                          vf a[4][MM_CMAX], int kw, int kx, int n) {
    vf we[MM_CMAX], wo[MM_CMAX];
    const bool packed = mk == MK_PBF16 || mk == MK_PE4M3;
    if (mk == MK_E4M3)
        mm_pf_e4m3(C, m, kw);
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        if (packed) {
            const float *wp = (const float *)(m->w + c * m->ldw) + kx;
            we[c] = v_load(wp);
            wo[c] = v_load(wp + VL);
        } else {
            wload_pair(mk == MK_BF16 ? SRC_BF16 : SRC_E4M3, m->w + c * m->ldw, kw, n, &we[c],
                       &wo[c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        vf xe = v_load(m->x + r * m->ldx + kx), xo = v_load(m->x + r * m->ldx + kx + VL);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            a[r][c] = v_fma(we[c], xe, a[r][c]);
            a[r][c] = v_fma(wo[c], xo, a[r][c]);
        }
    }
}

/* Two full chunks of raw FP8 weights at natural column kw (x at padded kx): the same FMA
 * sequence as two mm_pair_chunk calls, with the byte work shared. */
ALWAYS void mm_e4m3_chunk2(const int R, const int C, const mm_blk *m, vf a[4][MM_CMAX], int kw,
                           int kx) {
    vf we0[MM_CMAX], wo0[MM_CMAX], we1[MM_CMAX], wo1[MM_CMAX];
    mm_pf_e4m3(C, m, kw); /* one line per row and step */
    if (R == 1) { /* one row of x: each weight row converted and used at once (no spills) */
        const float *xr = m->x + kx;
        vf xe0 = v_load(xr), xo0 = v_load(xr + VL), xe1 = v_load(xr + 2 * VL);
        vf xo1 = v_load(xr + 3 * VL);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            w_e4m3_quad(m->w + c * m->ldw + kw, &we0[0], &wo0[0], &we1[0], &wo1[0]);
            a[0][c] = v_fma(we0[0], xe0, a[0][c]);
            a[0][c] = v_fma(wo0[0], xo0, a[0][c]);
            a[0][c] = v_fma(we1[0], xe1, a[0][c]);
            a[0][c] = v_fma(wo1[0], xo1, a[0][c]);
        }
        return;
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        w_e4m3_quad(m->w + c * m->ldw + kw, &we0[c], &wo0[c], &we1[c], &wo1[c]);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const float *xr = m->x + r * m->ldx + kx;
        vf xe0 = v_load(xr), xo0 = v_load(xr + VL), xe1 = v_load(xr + 2 * VL);
        vf xo1 = v_load(xr + 3 * VL);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            a[r][c] = v_fma(we0[c], xe0, a[r][c]);
            a[r][c] = v_fma(wo0[c], xo0, a[r][c]);
            a[r][c] = v_fma(we1[c], xe1, a[r][c]);
            a[r][c] = v_fma(wo1[c], xo1, a[r][c]);
        }
    }
}

/* The chunks of view columns [k, end), starting at padded column kx. */
ALWAYS void mm_pair_seg(const int R, const int C, const int mk, const mm_blk *m,
                        vf a[4][MM_CMAX], int k, int end, int kx) {
    const bool packed = mk == MK_PBF16 || mk == MK_PE4M3;
    if (end - k == AFD_FP8_BLOCK && mk == MK_E4M3) {
#pragma GCC unroll 8
        for (int j = 0; j < AFD_FP8_BLOCK; j += 4 * VL)
            mm_e4m3_chunk2(R, C, m, a, k + j, kx + j);
        return;
    }
    if (end - k == AFD_FP8_BLOCK && mk == MK_PE4M3) {
#pragma GCC unroll 8
        for (int j = 0; j < AFD_FP8_BLOCK; j += 2 * VL)
            mm_pair_chunk(R, C, mk, m, a, kx + j, kx + j, 2 * VL);
        return;
    }
    for (; k < end; k += 2 * VL, kx += 2 * VL)
        mm_pair_chunk(R, C, mk, m, a, packed ? kx : k, kx, end - k < 2 * VL ? end - k : 2 * VL);
}

/* BF16 (raw or packed): the accumulators stay in registers for the whole call. */
ALWAYS void mm_bf16_run(const int R, const int C, const int mk, const mm_blk *m,
                        vf a[4][MM_CMAX]) {
    mm_pair_seg(R, C, mk, m, a, 0, m->kn, 0);
}

/* FP8 (raw or packed): per segment a partial sum in registers, then
 * acc = fma(partial, 256 * block scale, acc) in memory. */
ALWAYS void mm_e4m3_run(const int R, const int C, const int mk, const mm_blk *m) {
    /* locals: the stores below must not make the compiler reload m (it cannot see they do
     * not alias) */
    float *const acc = m->acc;
    const size_t ldacc = m->ldacc;
    const int64_t kcol0 = m->kcol0;
    const int kn = m->kn;
    const float *srow[MM_CMAX];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        srow[c] = m->srow[c];
    vf p[4][MM_CMAX];
    if (R == 1) { /* one row of x: the accumulators stay in registers across segments */
        vf a1[MM_CMAX];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            a1[c] = v_load(acc + c * VL);
        for (int k = 0, kx = 0, end; k < kn; kx += round_to(end - k, 2 * VL), k = end) {
            end = seg_end(SRC_E4M3, kcol0, k, kn);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++)
                p[0][c] = v_zero();
            mm_pair_seg(1, C, mk, m, p, k, end, kx);
            int64_t blk = (kcol0 + k) / AFD_FP8_BLOCK;
#pragma GCC unroll 8
            for (int c = 0; c < C; c++)
                a1[c] = v_fma(p[0][c], v_set1(srow[c][blk] * 256.0f), a1[c]);
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            v_store(acc + c * VL, a1[c]);
        return;
    }
    for (int k = 0, kx = 0, end; k < kn; kx += round_to(end - k, 2 * VL), k = end) {
        end = seg_end(SRC_E4M3, kcol0, k, kn);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 8
            for (int c = 0; c < C; c++)
                p[r][c] = v_zero();
        mm_pair_seg(R, C, mk, m, p, k, end, kx);
        int64_t blk = (kcol0 + k) / AFD_FP8_BLOCK;
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            vf s = v_set1(srow[c][blk] * 256.0f);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                float *a = acc + r * ldacc + c * VL;
                v_store(a, v_fma(p[r][c], s, v_load(a)));
            }
        }
    }
}

/* The natural-layout loop (F32, F16 raw; packed F32/F16 panels). */
ALWAYS void mm_natural_run(const int R, const int C, const int mk, const mm_blk *m,
                           vf a[4][MM_CMAX]) {
    const int src = mk == MK_F16 ? SRC_F16 : SRC_F32;
    const vf one = v_set1(1.0f);
    int k = 0;
    for (; k + VL <= m->kn; k += VL) {
        vf wv[MM_CMAX];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            wv[c] = wload(src, m->w + c * m->ldw, k, one);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            vf xv = v_load(m->x + r * m->ldx + k);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++)
                a[r][c] = v_fma(wv[c], xv, a[r][c]);
        }
    }
    if (k < m->kn) {
        int n = m->kn - k;
        vf wv[MM_CMAX];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            wv[c] = wloadn(src, m->w + c * m->ldw, k, n, one);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            vf xv = v_loadn(m->x + r * m->ldx + k, n);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++)
                a[r][c] = v_fma(wv[c], xv, a[r][c]);
        }
    }
}

/* The one per-output sequence (see above), for an R x C tile. */
ALWAYS void mm_micro(const int R, const int C, const int mk, const mm_blk *m) {
    float *const acc = m->acc;
    const size_t ldacc = m->ldacc;
    if (mk == MK_E4M3 || mk == MK_PE4M3) {
        if (m->init)
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
#pragma GCC unroll 8
                for (int c = 0; c < C; c++)
                    v_store(acc + r * ldacc + c * VL, v_zero());
        mm_e4m3_run(R, C, mk, m);
        return;
    }
    vf a[4][MM_CMAX];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            a[r][c] = m->init ? v_zero() : v_load(acc + r * ldacc + c * VL);
    if (mk == MK_BF16 || mk == MK_PBF16)
        mm_bf16_run(R, C, mk, m, a);
    else
        mm_natural_run(R, C, mk, m, a);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            v_store(acc + r * ldacc + c * VL, a[r][c]);
}

typedef void (*mm_fn)(const mm_blk *m);

#define MM_DEF(MK, R, C)                                                                           \
    static void mm_##MK##_##R##x##C(const mm_blk *m) { mm_micro(R, C, MK, m); }
#define MM_DEF_R(MK)                                                                               \
    MM_DEF(MK, 1, 1) MM_DEF(MK, 2, 1) MM_DEF(MK, 3, 1) MM_DEF(MK, 4, 1)                            \
    MM_DEF(MK, 1, 8) MM_DEF(MK, 2, 4) MM_DEF(MK, 3, 4) MM_DEF(MK, 4, 4)
MM_DEF_R(MK_F32)
MM_DEF_R(MK_BF16)
MM_DEF_R(MK_F16)
MM_DEF_R(MK_E4M3)
MM_DEF_R(MK_PBF16)
MM_DEF_R(MK_PE4M3)
#define MM_ROW(MK)                                                                                 \
    {{mm_##MK##_1x1, mm_##MK##_1x8}, {mm_##MK##_2x1, mm_##MK##_2x4},                                \
     {mm_##MK##_3x1, mm_##MK##_3x4}, {mm_##MK##_4x1, mm_##MK##_4x4}}
/* [kind][R - 1][wide]: wide is C = 8 for one row of x (eight weight rows streaming at once
 * keep more memory requests in flight), else C = 4; narrow is C = 1 */
static const mm_fn mm_fns[N_MK][4][2] = {MM_ROW(MK_F32),  MM_ROW(MK_BF16),  MM_ROW(MK_F16),
                                         MM_ROW(MK_E4M3), MM_ROW(MK_PBF16), MM_ROW(MK_PE4M3)};

/* Weights [n0, n0+np) x [k0, k0+kn) into dst (row stride ld): F32/F16 natural (zero tail),
 * BF16/FP8 the padded pair layout (FP8 unscaled). */
static void mm_pack(float *dst, int ld, const afd_tensor *w, int src, int n0, int np, int k0,
                    int kn) {
    const size_t es = src_size(src);
    for (int c = 0; c < np; c++) {
        float *d = dst + (size_t)c * ld;
        const uint8_t *row = (const uint8_t *)w->data + ((size_t)(n0 + c) * w->ld + k0) * es;
        if (src_pair(src))
            pack_pair_row(d, src, row, w->col0 + k0, kn);
        else
            cvt_row(src, d, row, kn, 1.0f);
    }
}

static void mm_zero(float *y, int B, int N, int n0, int n1) {
    for (int b = 0; b < B; b++)
        for (int n = n0; n < n1; n++)
            y[(size_t)b * N + n] = 0.0f;
}

/* End of the packed K block starting at k0: MM_KC columns (FP8: whole segments, at least one). */
static int kblock_end(int src, int64_t col0, int k0, int K) {
    int e = K - k0 > MM_KC ? k0 + MM_KC : K;
    if (src != SRC_E4M3 || e == K)
        return e;
    int b = (int)(((col0 + e) / AFD_FP8_BLOCK) * AFD_FP8_BLOCK - col0); /* boundary <= e */
    return b > k0 ? b : seg_end(src, col0 + k0, 0, K - k0) + k0;
}

/* Where the micro-kernels of one pass read x and W: columns [n0, n0+np) of the view, whose
 * accumulators start at column c0 of the acc scratch. */
typedef struct mm_pass {
    const afd_tensor *w;
    int src, n0, np, c0;
    bool raw;
    const float *x; /* row 0 of the pass: natural user rows, or the pair buffer */
    size_t ldx;
    const float *pack;
    int ldp;        /* row stride of the packed panel */
    const float *const *srow; /* block-scale rows of columns n0.. */
} mm_pass;

/* Every micro-kernel call of one K block [k0, k0+kn) for rb rows. */
static void mm_block(const mm_pass *p, float *acc, int rb, int k0, int kn) {
    const size_t es = src_size(p->src);
    const bool pair = src_pair(p->src);
    const int mk = p->raw ? p->src : pair ? (p->src == SRC_BF16 ? MK_PBF16 : MK_PE4M3) : MK_F32;
    for (int r = 0; r < rb; r += 4) {
        const int R = rb - r < 4 ? rb - r : 4;
        for (int c = 0; c < p->np;) {
            const int wide = R == 1 ? 8 : 4, C = p->np - c >= wide ? wide : 1;
            mm_blk m = {
                .x = p->x + (size_t)r * p->ldx + (pair || p->raw ? 0 : k0),
                .ldx = p->ldx,
                .kcol0 = p->w->col0 + k0,
                .kn = kn,
                .acc = acc + ((size_t)r * CPU_MM_NP + p->c0 + c) * VL,
                .ldacc = (size_t)CPU_MM_NP * VL,
                .init = k0 == 0,
            };
            for (int i = 0; i < C; i++)
                m.srow[i] = p->srow[c + i];
            if (p->raw) {
                m.w = (const uint8_t *)p->w->data + ((size_t)(p->n0 + c) * p->w->ld + k0) * es;
                m.ldw = (size_t)p->w->ld * es;
                m.pf = true;
                m.pf_wrap = c + 2 * C <= p->np;
            } else {
                m.w = (const uint8_t *)(p->pack + (size_t)c * p->ldp);
                m.ldw = (size_t)p->ldp * sizeof(float);
            }
            mm_fns[mk][R - 1][C > 1](&m);
            c += C;
        }
    }
}

/* Raw path: x rows [b0, b0+rb) once in the pair layout (BF16/FP8), then every tile over all
 * of K straight from the weights. */
static void mm_raw(mm_pass *p, float *acc, float *xb, const float *x, int b0, int rb, int K) {
    const int Kp = pair_len(p->src, p->w->col0, K);
    p->x = x + (size_t)b0 * K;
    p->ldx = (size_t)K;
    if (src_pair(p->src)) {
        for (int r = 0; r < rb; r++)
            x_layout(xb + (size_t)r * Kp, x + (size_t)(b0 + r) * K, p->src, p->w->col0, K);
        p->x = xb;
        p->ldx = (size_t)Kp;
    }
    mm_block(p, acc, rb, 0, K);
}

/* Packed path: per K block, x rows once in the pair layout (BF16/FP8), then per sub-panel of
 * MM_SUB columns the weights converted once into a packed fp32 panel and reused by every
 * group of 4 rows. */
static void mm_packed(mm_pass *p, float *acc, float *xb, const float *x, int b0, int rb, int K,
                      int n0, int n1, const float *const *srow) {
    const int src = p->src;
    const bool pair = src_pair(src);
    for (int k0 = 0, k1; k0 < K; k0 = k1) {
        k1 = kblock_end(src, p->w->col0, k0, K);
        const int kp = pair ? pair_len(src, p->w->col0 + k0, k1 - k0) : round_vl(k1 - k0);
        p->ldp = kp + MM_PAD;
        p->x = x + (size_t)b0 * K;
        p->ldx = (size_t)K;
        if (pair) {
            for (int r = 0; r < rb; r++)
                x_layout(xb + (size_t)r * p->ldp, x + (size_t)(b0 + r) * K + k0, src,
                         p->w->col0 + k0, k1 - k0);
            p->x = xb;
            p->ldx = (size_t)p->ldp;
        }
        for (int s0 = n0; s0 < n1; s0 += MM_SUB) {
            p->n0 = s0;
            p->np = n1 - s0 < MM_SUB ? n1 - s0 : MM_SUB;
            p->c0 = s0 - n0;
            p->srow = srow + (s0 - n0);
            mm_pack((float *)p->pack, p->ldp, p->w, src, s0, p->np, k0, k1 - k0);
            mm_block(p, acc, rb, k0, k1 - k0);
        }
    }
}

/* Raw weights (no copy) when the rows of x are few: each weight vector is converted in the
 * micro-kernel and used by up to 4 rows straight from memory, streaming at DRAM speed.
 * Otherwise the packed path. Same bits either way (tested). */
static void matmul_cols(float *y, const float *x, int B, const afd_tensor *w, int n0, int n1,
                        void *scratch) {
    const int K = (int)w->cols, N = (int)w->rows, src = src_of(w->dtype);
    if (K == 0) {
        mm_zero(y, B, N, n0, n1);
        return;
    }
    float *acc = scratch, *pack = acc + MM_ACC_FLOATS, *xb = pack + MM_PACK_FLOATS;
    const float *srow[CPU_MM_NP + MM_CMAX] = {0};
    if (src == SRC_E4M3)
        for (int c = 0; c < n1 - n0; c++)
            srow[c] = w->scale + ((w->row0 + n0 + c) / AFD_FP8_BLOCK) * w->scale_ld;
    const int Kp = src_pair(src) ? pair_len(src, w->col0, K) : K;
    for (int b0 = 0; b0 < B; b0 += MM_RB) {
        const int rb = B - b0 < MM_RB ? B - b0 : MM_RB;
        mm_pass p = {.w = w, .src = src, .n0 = n0, .np = n1 - n0, .pack = pack, .srow = srow};
        p.raw = rb <= MM_RAW_MAX && (size_t)rb * Kp <= MM_XB_FLOATS;
        if (p.raw)
            mm_raw(&p, acc, xb, x, b0, rb, K);
        else
            mm_packed(&p, acc, xb, x, b0, rb, K, n0, n1, srow);
        for (int r = 0; r < rb; r++)
            for (int c = 0; c < n1 - n0; c++)
                y[(size_t)(b0 + r) * N + n0 + c] =
                    v_hsum(v_load(acc + ((size_t)r * CPU_MM_NP + c) * VL));
    }
}

/* ---- row and elementwise ops ---- */

static void rmsnorm_row(float *y, const float *x, const float *w, int n, float eps) {
    double ss = sumsq_d(x, n);
    vf r = v_set1((float)(1.0 / sqrt(ss / n + (double)eps)));
    int i = 0;
    for (; i + VL <= n; i += VL)
        v_store(y + i, v_mul(v_mul(v_load(x + i), r), v_load(w + i)));
    if (i < n)
        v_storen(y + i, v_mul(v_mul(v_loadn(x + i, n - i), r), v_loadn(w + i, n - i)), n - i);
}

/* Same products and order as the generic kernel: bit-identical. */
ALWAYS void rope_vec(float *lo, float *hi, const float *cs, const float *sn, int n) {
    vf a = n == VL ? v_load(lo) : v_loadn(lo, n), b = n == VL ? v_load(hi) : v_loadn(hi, n);
    vf c = n == VL ? v_load(cs) : v_loadn(cs, n), s = n == VL ? v_load(sn) : v_loadn(sn, n);
    vf x0 = v_sub(v_mul(a, c), v_mul(b, s)), x1 = v_add(v_mul(a, s), v_mul(b, c));
    if (n == VL) {
        v_store(lo, x0);
        v_store(hi, x1);
    } else {
        v_storen(lo, x0, n);
        v_storen(hi, x1, n);
    }
}

static void rope_row(float *x, int n_heads, int head_dim, const float *cs, const float *sn) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        int i = 0;
        for (; i + VL <= half; i += VL)
            rope_vec(v + i, v + half + i, cs + i, sn + i, VL);
        if (i < half)
            rope_vec(v + i, v + half + i, cs + i, sn + i, half - i);
    }
}

ALWAYS vf silu_mul(vf g, vf u) {
    vf e = v_exp(v_sub(v_zero(), g));
    return v_mul(v_div(g, v_add(v_set1(1.0f), e)), u);
}

static void swiglu(float *out, const float *gate, const float *up, size_t n) {
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        v_store(out + i, silu_mul(v_load(gate + i), v_load(up + i)));
    if (i < n) {
        int t = (int)(n - i);
        v_storen(out + i, silu_mul(v_loadn(gate + i, t), v_loadn(up + i, t)), t);
    }
}

static void add_scaled(float *y, const float *x, float alpha, size_t n) {
    vf a = v_set1(alpha);
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        v_store(y + i, v_fma(a, v_load(x + i), v_load(y + i)));
    if (i < n) {
        int t = (int)(n - i);
        v_storen(y + i, v_fma(a, v_loadn(x + i, t), v_loadn(y + i, t)), t);
    }
}

/* amax with max(|x|, acc): a NaN |x| leaves acc (as the scalar `a > amax` test does). */
static void quantize_group(uint8_t *q, float *scale, const float *x, int n) {
    vf am = v_zero();
    int i = 0;
    for (; i + VL <= n; i += VL)
        am = v_max(v_abs(v_load(x + i)), am);
    if (i < n)
        am = v_max(v_abs(v_loadn(x + i, n - i)), am);
    float s = cpu_fp8_scale(v_hmax(am));
    *scale = s;
    vf sv = v_set1(s);
    for (i = 0; i + VL <= n; i += VL)
        e4m3_store(q + i, v_div(v_load(x + i), sv));
    if (i < n)
        e4m3_storen(q + i, v_div(v_loadn(x + i, n - i), sv), n - i);
}

/* ---- attention ---- */

#define ATT_PB (2 * VL) /* positions per block */

/* Elements of K (which 0) or V (1) of position p, KV head g; *scale its FP8 scale. */
static const uint8_t *att_elems(const cpu_attn_args *a, const int32_t *blocks, int p, int g,
                                int which, float *scale) {
    const afd_kv_layout *kv = a->kv;
    const uint8_t *base = a->pool + (size_t)blocks[p / kv->block_size] * kv->block_bytes +
                          (size_t)a->layer * kv->layer_bytes;
    size_t row = (size_t)(p % kv->block_size) * kv->n_kv_heads + g;
    if (kv->dtype == AFD_DT_F8_E4M3)
        *scale = ((const float *)(base + (which ? kv->vs_off : kv->ks_off)))[row];
    return base + (which ? kv->v_off : kv->k_off) + row * kv->head_dim * afd_dtype_size(kv->dtype);
}

/* K or V of position p as fp32 into dst (zero tail to round_vl). */
static void att_row(float *dst, const cpu_attn_args *a, const int32_t *blocks, int p, int g,
                    int which) {
    float scale = 1.0f;
    const uint8_t *e = att_elems(a, blocks, p, g, which, &scale);
    cvt_row(src_of(a->kv->dtype), dst, e, a->kv->head_dim, scale);
}

/* Prefetch K or V rows of positions [p, p+n): the next block streams in while this one
 * computes. */
static void att_prefetch(const cpu_attn_args *a, const int32_t *blocks, int p, int n, int g,
                         int which) {
    size_t bytes = (size_t)a->kv->head_dim * afd_dtype_size(a->kv->dtype);
    float scale;
    for (int i = 0; i < n; i++) {
        const uint8_t *e = att_elems(a, blocks, p + i, g, which, &scale);
        for (size_t off = 0; off < bytes; off += 64)
            prefetch(e + off);
    }
}

/* Kt[d][p] = rows[p][d] for p < np, 0 for np <= p < ATT_PB, d < hdp (rows: ATT_PB x ldr,
 * the ones past np are zeroed here). */
static void att_transpose(float *Kt, float *rows, int np, int hdp, int ldr) {
    for (int p = np; p < ATT_PB; p++)
        for (int d = 0; d < hdp; d += VL)
            v_store(rows + (size_t)p * ldr + d, v_zero());
    for (int p0 = 0; p0 < ATT_PB; p0 += VL)
        for (int d0 = 0; d0 < hdp; d0 += VL)
            transpose_tile(Kt + (size_t)d0 * ATT_PB + p0, ATT_PB, rows + (size_t)p0 * ldr + d0,
                           (size_t)ldr);
}

/* S[j][p] = sum_d q[j][d] * Kt[d][p], sequential in d, for HR heads. */
ALWAYS void att_qk(const int HR, const float *Kt, const float *q, int hd, float *S) {
    vf acc[8][2];
#pragma GCC unroll 8
    for (int j = 0; j < HR; j++)
        acc[j][0] = acc[j][1] = v_zero();
    for (int d = 0; d < hd; d++) {
        vf k0 = v_load(Kt + (size_t)d * ATT_PB), k1 = v_load(Kt + (size_t)d * ATT_PB + VL);
#pragma GCC unroll 8
        for (int j = 0; j < HR; j++) {
            vf qb = v_set1(q[(size_t)j * hd + d]);
            acc[j][0] = v_fma(qb, k0, acc[j][0]);
            acc[j][1] = v_fma(qb, k1, acc[j][1]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < HR; j++) {
        v_store(S + (size_t)j * ATT_PB, acc[j][0]);
        v_store(S + (size_t)j * ATT_PB + VL, acc[j][1]);
    }
}

static void att_qk8(const float *Kt, const float *q, int hd, float *S) { att_qk(8, Kt, q, hd, S); }
static void att_qk1(const float *Kt, const float *q, int hd, float *S) { att_qk(1, Kt, q, hd, S); }

/* Online softmax step of one head over a block: S (raw scores) becomes the weights p, the
 * running max *m and sum *l advance, O is rescaled when the max grows. */
static void att_softmax(float *S, int np, float scale, float *m, float *l, float *O, int hdp) {
    vf sc = v_set1(scale);
    vf s0 = v_mask_tail(v_mul(v_load(S), sc), np, -INFINITY);
    vf s1 = v_mask_tail(v_mul(v_load(S + VL), sc), np - VL, -INFINITY);
    float bm = v_hmax(v_max(s0, s1)), mn = bm > *m ? bm : *m;
    vf mv = v_set1(mn);
    vf p0 = v_exp(v_sub(s0, mv)), p1 = v_exp(v_sub(s1, mv));
    v_store(S, p0);
    v_store(S + VL, p1);
    float alpha = v_first(v_exp(v_set1(*m - mn)));
    *l = *l * alpha + v_hsum(v_add(p0, p1));
    if (alpha != 1.0f) {
        vf av = v_set1(alpha);
        for (int i = 0; i < hdp; i += VL)
            v_store(O + i, v_mul(v_load(O + i), av));
    }
    *m = mn;
}

/* O[j][d..] += sum_p P[j][p] * V[p][d..], sequential in p, HR heads x DR vectors of dims. */
ALWAYS void att_pv(const int HR, const int DR, float *O, int ldo, const float *P, const float *V,
                   int ldv, int np) {
    vf acc[4][4];
#pragma GCC unroll 4
    for (int j = 0; j < HR; j++)
#pragma GCC unroll 4
        for (int i = 0; i < DR; i++)
            acc[j][i] = v_load(O + (size_t)j * ldo + i * VL);
    for (int p = 0; p < np; p++) {
        vf v[4];
#pragma GCC unroll 4
        for (int i = 0; i < DR; i++)
            v[i] = v_load(V + (size_t)p * ldv + i * VL);
#pragma GCC unroll 4
        for (int j = 0; j < HR; j++) {
            vf pb = v_set1(P[(size_t)j * ATT_PB + p]);
#pragma GCC unroll 4
            for (int i = 0; i < DR; i++)
                acc[j][i] = v_fma(pb, v[i], acc[j][i]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < HR; j++)
#pragma GCC unroll 4
        for (int i = 0; i < DR; i++)
            v_store(O + (size_t)j * ldo + i * VL, acc[j][i]);
}

static void att_pv44(float *O, int ldo, const float *P, const float *V, int ldv, int np) {
    att_pv(4, 4, O, ldo, P, V, ldv, np);
}
static void att_pv41(float *O, int ldo, const float *P, const float *V, int ldv, int np) {
    att_pv(4, 1, O, ldo, P, V, ldv, np);
}
static void att_pv14(float *O, int ldo, const float *P, const float *V, int ldv, int np) {
    att_pv(1, 4, O, ldo, P, V, ldv, np);
}
static void att_pv11(float *O, int ldo, const float *P, const float *V, int ldv, int np) {
    att_pv(1, 1, O, ldo, P, V, ldv, np);
}

/* PV for nh heads, every dim vector of the padded head. */
static void att_pv_all(float *O, int nh, int hdp, const float *P, const float *V, int np) {
    int h = 0;
    for (; h + 4 <= nh; h += 4) {
        int d = 0;
        for (; d + 4 * VL <= hdp; d += 4 * VL)
            att_pv44(O + (size_t)h * hdp + d, hdp, P + (size_t)h * ATT_PB, V + d, hdp, np);
        for (; d < hdp; d += VL)
            att_pv41(O + (size_t)h * hdp + d, hdp, P + (size_t)h * ATT_PB, V + d, hdp, np);
    }
    for (; h < nh; h++) {
        int d = 0;
        for (; d + 4 * VL <= hdp; d += 4 * VL)
            att_pv14(O + (size_t)h * hdp + d, hdp, P + (size_t)h * ATT_PB, V + d, hdp, np);
        for (; d < hdp; d += VL)
            att_pv11(O + (size_t)h * hdp + d, hdp, P + (size_t)h * ATT_PB, V + d, hdp, np);
    }
}

static void attention(const cpu_attn_args *a, int tok, int h0, int h1, void *scratch) {
    const afd_kv_layout *kv = a->kv;
    const int hd = kv->head_dim, hdp = round_vl(hd), nh = h1 - h0;
    const int g = h0 / (a->n_heads / kv->n_kv_heads);
    const int seq = a->batch->tok_seq[tok], ctx = a->batch->tok_ctx[tok];
    const int32_t *blocks = a->batch->seq_blocks + (size_t)seq * a->batch->max_blocks;
    const float *q = a->q + ((size_t)tok * a->n_heads + h0) * hd;
    float *Kt = scratch;                       /* [hdp][ATT_PB] */
    float *V = Kt + (size_t)hdp * ATT_PB;      /* [ATT_PB][hdp]: K rows, then V rows */
    float *P = V + (size_t)ATT_PB * hdp;       /* [nh][ATT_PB] */
    float *O = P + (size_t)nh * ATT_PB;        /* [nh][hdp] */
    float *M = O + (size_t)nh * hdp, *L = M + nh;
    for (size_t i = 0; i < (size_t)nh * hdp; i++)
        O[i] = 0.0f;
    for (int h = 0; h < nh; h++)
        M[h] = -INFINITY, L[h] = 0.0f;
    for (int p0 = 0; p0 < ctx; p0 += ATT_PB) {
        const int np = ctx - p0 < ATT_PB ? ctx - p0 : ATT_PB;
        const int nn = ctx - p0 - np < ATT_PB ? ctx - p0 - np : ATT_PB;
        att_prefetch(a, blocks, p0, np, g, 1);
        att_prefetch(a, blocks, p0 + np, nn, g, 0);
        for (int p = 0; p < np; p++)
            att_row(V + (size_t)p * hdp, a, blocks, p0 + p, g, 0);
        att_transpose(Kt, V, np, hdp, hdp);
        int h = 0;
        for (; h + 8 <= nh; h += 8)
            att_qk8(Kt, q + (size_t)h * hd, hd, P + (size_t)h * ATT_PB);
        for (; h < nh; h++)
            att_qk1(Kt, q + (size_t)h * hd, hd, P + (size_t)h * ATT_PB);
        for (h = 0; h < nh; h++)
            att_softmax(P + (size_t)h * ATT_PB, np, a->scale, &M[h], &L[h], O + (size_t)h * hdp,
                        hdp);
        for (int p = 0; p < np; p++)
            att_row(V + (size_t)p * hdp, a, blocks, p0 + p, g, 1);
        att_pv_all(O, nh, hdp, P, V, np);
    }
    float *out = a->out + ((size_t)tok * a->n_heads + h0) * hd;
    for (int h = 0; h < nh; h++) {
        vf l = v_set1(L[h]);
        const float *o = O + (size_t)h * hdp;
        float *dst = out + (size_t)h * hd;
        int d = 0;
        for (; d + VL <= hd; d += VL)
            v_store(dst + d, v_div(v_load(o + d), l));
        if (d < hd)
            v_storen(dst + d, v_div(v_load(o + d), l), hd - d);
    }
}

const cpu_kernels SIMD_TABLE = {
    .name = SIMD_NAME,
    .matmul_cols = matmul_cols,
    .rmsnorm_row = rmsnorm_row,
    .rope_row = rope_row,
    .attention = attention,
    .swiglu = swiglu,
    .add_scaled = add_scaled,
    .quantize_group = quantize_group,
    .dequantize_group = dequantize_group,
};
