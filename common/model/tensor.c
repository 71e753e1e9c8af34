#include "common/model/tensor.h"

#include <string.h>

static const struct {
    afd_dtype dt;
    const char *name;
    size_t size;
} dtypes[] = {
    {AFD_DT_F32, "F32", 4},    {AFD_DT_BF16, "BF16", 2}, {AFD_DT_F16, "F16", 2},
    {AFD_DT_F8_E4M3, "F8_E4M3", 1}, {AFD_DT_I32, "I32", 4}, {AFD_DT_I64, "I64", 8},
    {AFD_DT_U8, "U8", 1},
};

size_t afd_dtype_size(afd_dtype dt) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dt == dt)
            return dtypes[i].size;
    return 0;
}

const char *afd_dtype_name(afd_dtype dt) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dt == dt)
            return dtypes[i].name;
    return "INVALID";
}

afd_dtype afd_dtype_parse(const char *s) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, s) == 0)
            return dtypes[i].dt;
    return AFD_DT_INVALID;
}

afd_tensor afd_tensor_rows(const afd_tensor *t, int64_t r0, int64_t n) {
    afd_tensor v = *t;
    v.data = (const char *)t->data + (size_t)(r0 * t->ld) * afd_dtype_size(t->dtype);
    v.rows = n;
    v.row0 = t->row0 + r0;
    v.prepared = NULL;
    return v;
}

afd_tensor afd_tensor_cols(const afd_tensor *t, int64_t c0, int64_t n) {
    afd_tensor v = *t;
    v.data = (const char *)t->data + (size_t)c0 * afd_dtype_size(t->dtype);
    v.cols = n;
    v.col0 = t->col0 + c0;
    v.prepared = NULL;
    return v;
}
