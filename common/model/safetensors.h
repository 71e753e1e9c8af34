/* safetensors.h: read (mmap) and write safetensors files, single or sharded.
 *
 * Format: u64 little-endian header length N, then N bytes of JSON
 *   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {..}}
 * then the data section; offsets are relative to its start.
 *
 * Reading validates everything before any pointer arithmetic, in 64-bit: header length against
 * the file size and a limit, JSON well-formed, each dtype known, each shape's element count
 * times the dtype size equal to end - begin, offsets inside the data section, no overlaps.
 * A bad file is refused with a message naming the file and the tensor.
 *
 * An st_set is a whole checkpoint directory: either model.safetensors, or the shards named by
 * model.safetensors.index.json ("weight_map": name -> file), or every *.safetensors file when
 * neither exists. Tensor data pointers stay valid until st_set_free(). Files are mmap'd
 * read-only and pages are touched only when used (a daemon loading half the tensors reads half
 * the bytes). Thread-safe for concurrent readers after open.
 */
#ifndef AFD_SAFETENSORS_H
#define AFD_SAFETENSORS_H

#include <stdint.h>
#include <stdio.h>

#include "common/base/err.h"
#include "common/model/tensor.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) /* 100 MiB of header JSON */

typedef struct st_tensor {
    const char *name;
    afd_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; /* inside the mmap */
    uint64_t nbytes;
    const char *file; /* path of the shard holding it */
} st_tensor;

typedef struct st_set st_set;

/* Opens the checkpoint in directory `dir`. 0 and *out, or a negative code with *err. */
int st_set_open(const char *dir, st_set **out, afd_err *err);
void st_set_free(st_set *s);
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
 * their data in declaration order. Used by afd-mkmodel and tests. */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
/* Returns 0, or -EINVAL on a bad name/shape. */
int st_writer_add(st_writer *w, const char *name, afd_dtype dt, int ndim, const int64_t *shape);
/* Writes the header; then call st_writer_data for each tensor in order. */
int st_writer_begin(st_writer *w, const char *path, const char *metadata_json, afd_err *err);
int st_writer_data(st_writer *w, const void *data, uint64_t nbytes, afd_err *err);
/* Checks every tensor was written, closes the file. Frees w in all cases. */
int st_writer_finish(st_writer *w, afd_err *err);
void st_writer_free(st_writer *w);

#endif
