/* safetensors.h: read (mmap) and write safetensors files, single or sharded (docs/checkpoint.md).
 *
 * Format: u64 little-endian header length N, then N bytes of JSON
 *   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__":
 * {..}} then the data section; offsets are relative to its start.
 *
 * Reading validates everything before any pointer arithmetic, in 64-bit: 2 <= N <= ST_MAX_HEADER
 * and N <= file size - 8; the JSON is one object without duplicate keys; each entry has a known
 * dtype, a shape of at most ST_MAX_DIMS integers >= 0 whose element count times the dtype size
 * (overflow-checked) equals end - begin, and begin <= end <= data section size; no two tensors
 * overlap; "__metadata__", if present, is an object of strings. Gaps between tensors are allowed.
 * A bad file is refused (AFD_E_FORMAT, AFD_E_LIMIT for the header limit) with a message naming
 * the file and the tensor.
 *
 * Alignment: `data` points wherever the file puts the tensor. Writers that pad the header to 8
 * bytes (ours, and the reference one) give 8-byte aligned tensors when the earlier tensors' sizes
 * keep it so, but nothing guarantees it: readers of `data` use memcpy or unaligned loads, and
 * code that needs an aligned type (the weights loader with fp32 block scales) checks and copies.
 *
 * An st_set is a whole checkpoint: model.safetensors in the directory, else the shards named by
 * model.safetensors.index.json ("weight_map": name -> file; every shard it names must exist and
 * every listed tensor must be in its shard), else every *.safetensors file of the directory; or
 * one .safetensors file given by path. A tensor name present in two shards is refused. Tensors
 * in a listed shard but absent from the weight_map are kept. Tensor data pointers stay valid
 * until st_set_free(). Files are mmap'd read-only and pages are read only when touched (a daemon
 * loading half the tensors reads half the bytes). Thread-safe for concurrent readers after open.
 */
#ifndef AFD_SAFETENSORS_H
#define AFD_SAFETENSORS_H

#include <stdint.h>
#include <stdio.h>

#include "common/base/err.h"
#include "common/model/tensor.h"

#define ST_MAX_DIMS   8
#define ST_MAX_HEADER (100u << 20) /* 100 MiB of header JSON */

typedef struct st_tensor {
    const char *name;
    afd_dtype dtype; /* AFD_DT_INVALID for a valid safetensors dtype afd does not compute
                      * with (F64, I8, BOOL, F8_E5M2, ...): parsed and checked, not usable */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; /* inside the mmap */
    uint64_t nbytes;
    const char *file;       /* path of the shard holding it (NULL from st_parse) */
    const char *dtype_name; /* the dtype as the file spells it ("BF16"), for messages */
} st_tensor;

typedef struct st_set st_set;

/* Opens the checkpoint in directory `dir` (or the single file `dir`). 0 and *out, or a negative
 * code with *err: AFD_E_NOTFOUND (no safetensors, a missing shard, a listed tensor absent from
 * its shard), AFD_E_FORMAT (a bad file or index, a tensor in two shards), -errno (I/O). */
int st_set_open(const char *dir, st_set **out, afd_err *err);
/* Unmaps everything; every st_tensor and data pointer of the set dies. NULL is a no-op. */
void st_set_free(st_set *s);
/* The path st_set_open was given. */
const char *st_set_path(const st_set *s);
/* The tensor called `name`, or NULL. */
const st_tensor *st_set_find(const st_set *s, const char *name);
/* Number of tensors, and the i-th (in no particular order), for listing. */
int st_set_count(const st_set *s);
const st_tensor *st_set_at(const st_set *s, int i);

/* Parses one file's header from memory (`buf`, `len` = whole file). Used by st_set_open and by
 * the fuzz/abuse tests. On success the tensors array (malloc'd, names malloc'd) is returned in
 * (*out, *n); free with st_tensors_free. `what` names the file in messages. */
int st_parse(const uint8_t *buf, uint64_t len, const char *what, st_tensor **out, int *n,
             afd_err *err);
void st_tensors_free(st_tensor *t, int n);

/* Writer: streams tensors to a file. Declare all tensors first (name, dtype, shape), then write
 * their data in declaration order. The header is padded with spaces to a multiple of 8 bytes
 * and the data offsets are packed in declaration order (no gaps). The file is written as
 * "<path>.tmp" and renamed to <path> by a successful st_writer_finish, so a failed or
 * interrupted write never leaves a truncated checkpoint under the real name.
 * Used by afd-mkmodel and tests. Single thread per writer. */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
/* Declares the next tensor. Returns 0, or -EINVAL on an empty, duplicate or "__metadata__"
 * name, a dtype without a size, ndim outside [0, ST_MAX_DIMS], a negative dimension, a size
 * overflow, or a call after st_writer_begin. */
int st_writer_add(st_writer *w, const char *name, afd_dtype dt, int ndim, const int64_t *shape);
/* Writes the header (`metadata_json`: NULL or a JSON object of strings, stored as
 * "__metadata__"); then call st_writer_data for the tensors in order. */
int st_writer_begin(st_writer *w, const char *path, const char *metadata_json, afd_err *err);
/* Appends `nbytes` of the current tensor's data; a tensor may come in several calls, but one
 * call never spans two tensors (more bytes than the current tensor has left: AFD_E_LIMIT).
 * Zero-size tensors need no call. */
int st_writer_data(st_writer *w, const void *data, uint64_t nbytes, afd_err *err);
/* Checks every tensor was written in full, closes and renames the file. Frees w in all cases. */
int st_writer_finish(st_writer *w, afd_err *err);
/* Abandons the writer (removing the partial "<path>.tmp"). NULL is a no-op. */
void st_writer_free(st_writer *w);

#endif
