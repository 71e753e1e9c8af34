/* backend.c: KV layout, the wrappers' defaults, afd_backend_open's choices and fallbacks. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/backend/backend.h"
#include "common/backend/cpu/cpu.h"
#include "common/base/err.h"
#include "common/base/log.h"

static void quiet(void) { afd_log_level = AFD_LOG_ERROR; }

TestSuite(backend, .init = quiet, .timeout = 20);

Test(backend, kv_layout_bf16) {
    afd_kv_layout kv;
    afd_kv_layout_init(&kv, AFD_DT_BF16, 16, 3, 1, 256);
    cr_assert_eq(kv.k_off, 0);
    cr_assert_eq(kv.v_off, 16 * 256 * 2, "v_off %zu", kv.v_off);
    cr_assert_eq(kv.layer_bytes, 2 * 16 * 256 * 2);
    cr_assert_eq(kv.block_bytes, 3 * kv.layer_bytes);
    cr_assert_eq(kv.ks_off, 0);
    cr_assert_eq(kv.vs_off, 0);
}

Test(backend, kv_layout_fp8_is_64_byte_aligned) {
    afd_kv_layout kv;
    afd_kv_layout_init(&kv, AFD_DT_F8_E4M3, 5, 2, 3, 36); /* 540-byte K region: padded */
    size_t offs[] = {kv.k_off, kv.v_off, kv.ks_off, kv.vs_off, kv.layer_bytes};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(offs[i] % 64, 0, "offset %d = %zu not 64-aligned", i, offs[i]);
    cr_assert_geq(kv.v_off, (size_t)5 * 3 * 36);
    cr_assert_geq(kv.ks_off, kv.v_off + 5 * 3 * 36);
    cr_assert_geq(kv.vs_off, kv.ks_off + 5 * 3 * sizeof(float));
    cr_assert_geq(kv.layer_bytes, kv.vs_off + 5 * 3 * sizeof(float));
    cr_assert_lt(kv.layer_bytes, kv.vs_off + 5 * 3 * sizeof(float) + 64);
    cr_assert_eq(kv.block_bytes, 2 * kv.layer_bytes);
    afd_kv_layout f;
    afd_kv_layout_init(&f, AFD_DT_F32, 4, 1, 2, 8);
    cr_assert_eq(f.v_off, 4 * 2 * 8 * 4);
    cr_assert_eq(f.layer_bytes, 2 * 4 * 2 * 8 * 4);
}

Test(backend, wrapper_defaults) {
    afd_backend *be;
    cr_assert_eq(afd_cpu_backend_new("generic", 1, &be), 0);
    cr_assert_str_eq(afd_be_describe(be), "cpu generic x1 threads");
    uint8_t *p = afd_be_alloc(be, 1000);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % 64, 0);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(p[i], 0, "alloc is zeroed: p[%d] = %d", i, p[i]);
    uint8_t src[100], back[100];
    for (int i = 0; i < 100; i++)
        src[i] = (uint8_t)(i * 7);
    afd_be_upload(be, p, src, 100);
    afd_be_download(be, back, p, 100);
    cr_assert_eq(memcmp(src, back, 100), 0);
    afd_be_release(be, p);
    afd_be_release(be, NULL);
    afd_tensor t = {.dtype = AFD_DT_BF16, .rows = 1, .cols = 1, .ld = 1, .data = src};
    cr_assert_eq(afd_be_prepare(be, &t), 0);
    cr_assert_null(t.prepared);
    afd_be_sync(be);
    cr_assert_null(afd_be_alloc(be, 0));
    afd_backend_free(be);
    afd_backend_free(NULL);
}

Test(backend, cpu_isa_names) {
    const char *names[8];
    int n = afd_cpu_isas(names, 8);
    cr_assert_geq(n, 1);
    cr_assert_str_eq(names[n - 1], "generic");
    afd_backend *be = (afd_backend *)1;
    cr_assert_eq(afd_cpu_backend_new("bogus", 1, &be), -EINVAL);
    cr_assert_null(be);
    cr_assert_eq(afd_cpu_backend_new("amx", 1, &be), AFD_E_UNSUPPORTED,
                 "no AMX kernels in this build");
    cr_assert_eq(afd_cpu_backend_new("auto", 2, &be), 0);
    char want[64];
    snprintf(want, sizeof want, "cpu %s x2 threads", names[0]);
    cr_assert_str_eq(afd_be_describe(be), want);
    afd_backend_free(be);
}

/* The list follows the feature probes, best first: avx512vbmi (AVX-512 plus VBMI) before
 * avx512, and only where the CPU has it. */
static int isa_index(const char *const *names, int n, const char *isa) {
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], isa) == 0)
            return i;
    return -1;
}

Test(backend, cpu_isa_list_follows_features) {
    const char *names[8];
    int n = afd_cpu_isas(names, 8);
    int iv = isa_index(names, n, "avx512vbmi"), ia = isa_index(names, n, "avx512");
    cr_assert_eq(iv >= 0, cpu_vbmi_usable(), "avx512vbmi listed (%d) iff VBMI usable (%d)", iv,
                 (int)cpu_vbmi_usable());
    cr_assert_eq(ia >= 0, cpu_avx512_usable(), "avx512 listed (%d) iff AVX-512 usable (%d)", ia,
                 (int)cpu_avx512_usable());
    if (cpu_vbmi_usable()) {
        cr_assert(cpu_avx512_usable(), "VBMI without the AVX-512 base is never chosen");
        cr_assert_eq(iv, 0, "avx512vbmi is the best variant, got index %d", iv);
        cr_assert_eq(ia, 1, "avx512 right after it, got index %d", ia);
    }
    afd_backend *be = NULL;
    int rc = afd_cpu_backend_new("avx512vbmi", 1, &be);
    cr_assert_eq(rc, cpu_vbmi_usable() ? 0 : AFD_E_UNSUPPORTED, "--isa avx512vbmi: %d", rc);
    if (be)
        cr_assert_str_eq(afd_be_describe(be), "cpu avx512vbmi x1 threads");
    afd_backend_free(be);
}

Test(backend, open_cpu_and_isa_from_env) {
    afd_backend *be;
    afd_backend_opts o = {"cpu", "generic", 1};
    cr_assert_eq(afd_backend_open(&o, &be), 0);
    cr_assert_str_eq(afd_be_describe(be), "cpu generic x1 threads");
    afd_backend_free(be);
    setenv("AFD_CPU_ISA", "generic", 1);
    afd_backend_opts a = {"cpu", "auto", 1};
    cr_assert_eq(afd_backend_open(&a, &be), 0);
    cr_assert_str_eq(afd_be_describe(be), "cpu generic x1 threads", "AFD_CPU_ISA applies to auto");
    afd_backend_free(be);
    const char *names[8];
    afd_cpu_isas(names, 8);
    setenv("AFD_CPU_ISA", names[0], 1);
    cr_assert_eq(afd_backend_open(&o, &be), 0);
    cr_assert_str_eq(afd_be_describe(be), "cpu generic x1 threads", "an explicit isa wins");
    afd_backend_free(be);
    setenv("AFD_CPU_ISA", "bogus", 1);
    cr_assert_eq(afd_backend_open(&a, &be), -EINVAL);
}

Test(backend, open_auto_falls_back_to_cpu_and_cuda_fails_clearly) {
    setenv("AFD_CUDA_LIB", "/nonexistent/libafd_cuda.so", 1);
    afd_backend *be = NULL;
    afd_backend_opts o = {"auto", "generic", 1};
    cr_assert_eq(afd_backend_open(&o, &be), 0);
    cr_assert_str_eq(afd_be_describe(be), "cpu generic x1 threads");
    afd_backend_free(be);
    afd_backend_opts null_kind = {NULL, "generic", 1};
    cr_assert_eq(afd_backend_open(&null_kind, &be), 0, "NULL kind is auto");
    afd_backend_free(be);
    be = (afd_backend *)1;
    afd_backend_opts c = {"cuda", NULL, 1};
    int rc = afd_backend_open(&c, &be);
    cr_assert_lt(rc, 0, "explicit cuda without the library must fail, got %d", rc);
    cr_assert_null(be);
    afd_backend_opts bad = {"tpu", NULL, 1};
    cr_assert_eq(afd_backend_open(&bad, &be), -EINVAL);
}

/* A library that loads but does not export the entry point is refused (auto: CPU). */
Test(backend, open_library_without_entry_point) {
    setenv("AFD_CUDA_LIB", "libm.so.6", 1);
    afd_backend *be = NULL;
    afd_backend_opts c = {"cuda", NULL, 1};
    cr_assert_eq(afd_backend_open(&c, &be), AFD_E_FORMAT);
    afd_backend_opts a = {"auto", "generic", 1};
    cr_assert_eq(afd_backend_open(&a, &be), 0);
    afd_backend_free(be);
}
