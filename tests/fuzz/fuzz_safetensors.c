/* libFuzzer target for st_parse: any bytes must give either an error or tensors whose data
 * lies inside the buffer's data section, never a crash, a leak or an out-of-bounds read.
 * Build and run: make fuzz && build-fuzz/fuzz_safetensors -max_total_time=60 \
 *                    tests/fuzz/corpus/safetensors   (add a scratch dir first to keep new inputs)
 */
#include <stddef.h>
#include <stdint.h>

#include "common/model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_tensor *t;
    int n;
    afd_err err;
    if (st_parse(data, size, "fuzz.safetensors", &t, &n, &err) != 0) {
        if (err.msg[0] == '\0' || t != NULL || n != 0)
            __builtin_trap(); /* an error always has a message and returns nothing */
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const uint8_t *p = t[i].data;
        if (p < data + 8 || p > data + size || t[i].nbytes > (uint64_t)(data + size - p))
            __builtin_trap();
        if (t[i].nbytes > 0) /* the bytes are readable (ASan checks) */
            (void)*(volatile const uint8_t *)(p + t[i].nbytes - 1);
        if (!t[i].name || !t[i].dtype_name || t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS)
            __builtin_trap();
    }
    st_tensors_free(t, n);
    return 0;
}
