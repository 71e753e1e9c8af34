/* kernels_avx512.c: the AVX-512 variant (F/BW/DQ/VL; built with the AVX-512 flags, run only
 * when cpu_avx512_usable()). The primitives are in kernels_avx512.h, the loops in
 * kernels_simd.h. */
#define SIMD_NAME "avx512"
#define SIMD_TABLE cpu_kernels_avx512
#include "common/backend/cpu/kernels_avx512.h"
#include "common/backend/cpu/kernels_simd.h"
