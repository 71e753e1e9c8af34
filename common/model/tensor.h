/* tensor.h: dtypes and the 2-D weight view every kernel reads.
 *
 * An afd_tensor borrows its bytes (from the checkpoint mmap, or from a buffer owned by the
 * weights object); it never owns them. Shapes follow PyTorch's Linear convention: a weight is
 * [rows = out_features, cols = in_features], row-major, and y = x . W^T.
 *
 * A view may be a slice of a larger tensor (an expert of a stacked [E, I, H] tensor, or a
 * tensor-parallel slice of rows or columns): `data` points at element [0,0] of the view, `ld`
 * is the parent's row stride in elements, and (row0, col0) is the view's position inside the
 * parent, needed to find the block scale of a block-FP8 weight:
 *     real W[r][c] = e4m3(data[r*ld + c]) * scale[((row0+r)/128) * scale_ld + (col0+c)/128]
 * For other dtypes scale is NULL and row0/col0 are informational.
 */
#ifndef AFD_TENSOR_H
#define AFD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum afd_dtype {
    AFD_DT_INVALID = 0,
    AFD_DT_F32,
    AFD_DT_BF16,
    AFD_DT_F16,
    AFD_DT_F8_E4M3,
    AFD_DT_I32,
    AFD_DT_I64,
    AFD_DT_U8,
} afd_dtype;

#define AFD_FP8_BLOCK 128 /* block-FP8 weights: one fp32 scale per 128x128 block */

/* Bytes per element (0 for AFD_DT_INVALID). */
size_t afd_dtype_size(afd_dtype dt);
/* "F32", "BF16", ... as safetensors spells them. */
const char *afd_dtype_name(afd_dtype dt);
/* Parses a safetensors dtype string; AFD_DT_INVALID when unknown. */
afd_dtype afd_dtype_parse(const char *s);

typedef struct afd_tensor {
    afd_dtype dtype;     /* F32, BF16, F16 or F8_E4M3 */
    int64_t rows, cols;  /* logical shape of the view: [out, in] */
    int64_t ld;          /* elements between consecutive rows of `data` */
    const void *data;    /* element [0][0] of the view */
    const float *scale;  /* F8_E4M3 only: block scales of the parent, [ceil(R/128), scale_ld] */
    int64_t scale_ld;    /* F8_E4M3 only: ceil(parent cols / 128) */
    int64_t row0, col0;  /* position of the view in its parent */
    const char *name;    /* checkpoint name of the parent tensor, for messages */
    void *prepared;      /* backend-private repacked copy (see backend.h prepare), or NULL */
} afd_tensor;

/* Sub-view of rows [r0, r0+n) of t (same columns). */
afd_tensor afd_tensor_rows(const afd_tensor *t, int64_t r0, int64_t n);
/* Sub-view of columns [c0, c0+n) of t (same rows). */
afd_tensor afd_tensor_cols(const afd_tensor *t, int64_t c0, int64_t n);

#endif
