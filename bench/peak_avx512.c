/* peak_avx512.c: the AVX-512 fp32 FMA peak loop (built with the AVX-512 flags; call only when
 * the CPU has AVX-512F). 16 independent accumulators hide the 4-cycle FMA latency on 2 ports. */
#include <immintrin.h>

#include "bench/bench.h"

#define ACC 16

double peak_fma_avx512(int64_t iters) {
    __m512 acc[ACC];
    for (int j = 0; j < ACC; j++)
        acc[j] = _mm512_set1_ps(1.0f + (float)j * 1e-3f);
    const __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int j = 0; j < ACC; j++)
            acc[j] = _mm512_fmadd_ps(acc[j], a, b);
    }
    __m512 s = acc[0];
    for (int j = 1; j < ACC; j++)
        s = _mm512_add_ps(s, acc[j]);
    return (double)_mm512_reduce_add_ps(s);
}
