/* backend.c: the afd_be_* wrappers (defaults for optional slots), the KV layout, and
 * afd_backend_open (CPU, or a dlopened CUDA backend with a CPU fallback). */
#include "common/backend/backend.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/alloc.h"
#include "common/base/err.h"
#include "common/base/log.h"

/* ---- KV layout ---- */

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

void afd_kv_layout_init(afd_kv_layout *kv, afd_dtype dt, int block_size, int n_layers,
                        int n_kv_heads, int head_dim) {
    memset(kv, 0, sizeof *kv);
    kv->dtype = dt;
    kv->block_size = block_size;
    kv->n_layers = n_layers;
    kv->n_kv_heads = n_kv_heads;
    kv->head_dim = head_dim;
    size_t rows = (size_t)block_size * (size_t)n_kv_heads;
    size_t kv_bytes = align64(rows * (size_t)head_dim * afd_dtype_size(dt));
    kv->k_off = 0;
    kv->v_off = kv_bytes;
    size_t end = 2 * kv_bytes;
    if (dt == AFD_DT_F8_E4M3) {
        size_t scale_bytes = align64(rows * sizeof(float));
        kv->ks_off = end;
        kv->vs_off = end + scale_bytes;
        end += 2 * scale_bytes;
    }
    kv->layer_bytes = end;
    kv->block_bytes = end * (size_t)n_layers;
}

/* ---- wrappers ---- */

const char *afd_be_describe(afd_backend *be) { return be->iface->describe(be); }

void *afd_be_alloc(afd_backend *be, size_t n) {
    if (be->iface->alloc)
        return be->iface->alloc(be, n);
    return afd_try_alloc(n);
}

void afd_be_release(afd_backend *be, void *p) {
    if (!p)
        return;
    if (be->iface->release)
        be->iface->release(be, p);
    else
        free(p);
}

void afd_be_upload(afd_backend *be, void *dst, const void *src, size_t n) {
    if (be->iface->upload)
        be->iface->upload(be, dst, src, n);
    else if (n)
        memcpy(dst, src, n);
}

void afd_be_download(afd_backend *be, void *dst, const void *src, size_t n) {
    if (be->iface->download)
        be->iface->download(be, dst, src, n);
    else if (n)
        memcpy(dst, src, n);
}

int afd_be_prepare(afd_backend *be, afd_tensor *t) {
    return be->iface->prepare ? be->iface->prepare(be, t) : 0;
}

void afd_be_sync(afd_backend *be) {
    if (be->iface->sync)
        be->iface->sync(be);
}

int afd_be_matmul(afd_backend *be, float *y, const float *x, int B, const afd_tensor *w) {
    return be->iface->matmul(be, y, x, B, w);
}

int afd_be_embed(afd_backend *be, float *out, const afd_tensor *e, const int32_t *ids, int B) {
    return be->iface->embed(be, out, e, ids, B);
}

void afd_be_rmsnorm(afd_backend *be, float *y, const float *x, const float *w, int B, int n,
                    float eps) {
    be->iface->rmsnorm(be, y, x, w, B, n, eps);
}

void afd_be_rope(afd_backend *be, float *x, int B, int ld, int n_heads, int head_dim,
                 const int32_t *pos, double theta) {
    be->iface->rope(be, x, B, ld, n_heads, head_dim, pos, theta);
}

void afd_be_kv_store(afd_backend *be, const afd_kv_layout *kv, void *pool, int layer, int n_tok,
                     const int32_t *slots, const float *k, const float *v) {
    be->iface->kv_store(be, kv, pool, layer, n_tok, slots, k, v);
}

void afd_be_attention(afd_backend *be, float *out, const float *q, int n_heads,
                      const afd_kv_layout *kv, const void *pool, int layer,
                      const afd_attn_batch *batch, float scale) {
    be->iface->attention(be, out, q, n_heads, kv, pool, layer, batch, scale);
}

void afd_be_topk_softmax(afd_backend *be, int32_t *ids, float *w, const float *logits, int B,
                         int E, int k, bool renorm) {
    be->iface->topk_softmax(be, ids, w, logits, B, E, k, renorm);
}

void afd_be_swiglu(afd_backend *be, float *out, const float *gate, const float *up, size_t n) {
    be->iface->swiglu(be, out, gate, up, n);
}

void afd_be_add_scaled(afd_backend *be, float *y, const float *x, const float *alpha, int B,
                       int n) {
    be->iface->add_scaled(be, y, x, alpha, B, n);
}

void afd_be_quantize_fp8(afd_backend *be, uint8_t *q, float *scale, const float *x, int B, int n,
                         int group) {
    be->iface->quantize_fp8(be, q, scale, x, B, n, group);
}

void afd_be_dequantize_fp8(afd_backend *be, float *x, const uint8_t *q, const float *scale, int B,
                           int n, int group) {
    be->iface->dequantize_fp8(be, x, q, scale, B, n, group);
}

/* ---- open ---- */

void afd_backend_free(afd_backend *be) {
    if (be)
        be->iface->free(be);
}

/* Path of the CUDA backend: $AFD_CUDA_LIB, else libafd_cuda.so in the executable's directory. */
static void cuda_lib_path(char *buf, size_t cap) {
    const char *env = getenv("AFD_CUDA_LIB");
    if (env && *env) {
        snprintf(buf, cap, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(buf, cap, "libafd_cuda.so");
        return;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    snprintf(buf, cap, "%s/libafd_cuda.so", exe);
}

/* dlopens the CUDA backend and asks it for a backend. 0 and *out, or a negative code with a
 * reason in why[]. */
static int cuda_open(const afd_backend_opts *opts, afd_backend **out, char *why, size_t cap) {
    char path[PATH_MAX + 32];
    cuda_lib_path(path, sizeof path);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(why, cap, "%s", dlerror());
        return AFD_E_NOTFOUND;
    }
    afd_backend_entry_fn entry;
    *(void **)&entry = dlsym(h, AFD_BACKEND_ENTRY);
    if (!entry) {
        if (snprintf(why, cap, "%s: no symbol %s", path, AFD_BACKEND_ENTRY) >= (int)cap)
            why[cap - 1] = '\0';
        dlclose(h);
        return AFD_E_FORMAT;
    }
    afd_backend *be = NULL;
    int rc = entry(opts, &be);
    if (rc) {
        if (snprintf(why, cap, "%s: %s", path, afd_strerror(rc)) >= (int)cap)
            why[cap - 1] = '\0';
        return rc;
    }
    if (!be || !be->iface || be->iface->api_version != AFD_BACKEND_API_VERSION) {
        if (snprintf(why, cap, "%s: backend api version %u, want %u", path,
                     be && be->iface ? be->iface->api_version : 0u,
                     AFD_BACKEND_API_VERSION) >= (int)cap)
            why[cap - 1] = '\0';
        if (be && be->iface && be->iface->free)
            be->iface->free(be);
        return AFD_E_MISMATCH;
    }
    *out = be;
    return 0;
}

int afd_backend_open(const afd_backend_opts *opts, afd_backend **out) {
    *out = NULL;
    const char *kind = opts->kind ? opts->kind : "auto";
    const char *isa = opts->isa;
    if (!isa || strcmp(isa, "auto") == 0) {
        const char *env = getenv("AFD_CPU_ISA");
        isa = env && *env ? env : "auto";
    }
    if (strcmp(kind, "cpu") == 0)
        return afd_cpu_backend_new(isa, opts->n_threads, out);
    if (strcmp(kind, "cuda") != 0 && strcmp(kind, "auto") != 0) {
        log_error("backend kind '%s' unknown (want auto, cpu or cuda)", kind);
        return -EINVAL;
    }
    char why[512];
    int rc = cuda_open(opts, out, why, sizeof why);
    if (rc == 0) {
        log_info("backend: %s", afd_be_describe(*out));
        return 0;
    }
    if (strcmp(kind, "cuda") == 0) {
        log_error("cuda backend unavailable (%s)", why);
        return rc;
    }
    log_info("cuda backend unavailable (%s): using cpu", why);
    return afd_cpu_backend_new(isa, opts->n_threads, out);
}
