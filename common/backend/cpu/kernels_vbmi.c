/* kernels_vbmi.c: the avx512vbmi variant (built with the AVX-512 flags plus -mavx512vbmi, run
 * only when cpu_vbmi_usable()). The avx512 variant with FP8 weights converted by byte-table
 * lookups (kernels_avx512.h, SIMD_VBMI): the same values in the same lanes, so the results are
 * bit-identical to avx512. */
#define SIMD_NAME "avx512vbmi"
#define SIMD_TABLE cpu_kernels_avx512vbmi
#define SIMD_VBMI 1
#include "common/backend/cpu/kernels_avx512.h"
#include "common/backend/cpu/kernels_simd.h"
