/* safetensors.c: the safetensors reader (st_parse, st_set) and writer (st_writer).
 *
 * Reading is validate-then-trust: every number from the file is checked in 64-bit arithmetic
 * against the file before a pointer is formed from it. See safetensors.h for the rules and
 * docs/checkpoint.md for the messages.
 */
#include "common/model/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/base/alloc.h"

#define ST_MAX_INDEX (64u << 20) /* model.safetensors.index.json: 64 MiB is ~100x a real one */

/* ==== dtypes ================================================================================ */

/* Every dtype the safetensors format defines with a whole-byte size. Those afd computes with map
 * to an afd_dtype; the others are parsed and size-checked but come out as AFD_DT_INVALID. */
static const struct {
    const char *name;
    afd_dtype dt;
    unsigned size;
} st_dtypes[] = {
    {"F32", AFD_DT_F32, 4},         {"BF16", AFD_DT_BF16, 2},    {"F16", AFD_DT_F16, 2},
    {"F8_E4M3", AFD_DT_F8_E4M3, 1}, {"I32", AFD_DT_I32, 4},      {"I64", AFD_DT_I64, 8},
    {"U8", AFD_DT_U8, 1},           {"F64", AFD_DT_INVALID, 8},  {"I8", AFD_DT_INVALID, 1},
    {"I16", AFD_DT_INVALID, 2},     {"U16", AFD_DT_INVALID, 2},  {"U32", AFD_DT_INVALID, 4},
    {"U64", AFD_DT_INVALID, 8},     {"BOOL", AFD_DT_INVALID, 1}, {"F8_E5M2", AFD_DT_INVALID, 1},
    {"F8_E8M0", AFD_DT_INVALID, 1},
};

static int st_dtype_find(const char *s) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) return (int)i;
    return -1;
}

/* ==== st_parse ============================================================================== */

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Checks the 8-byte header length against the limits and the file. */
static int header_len(const uint8_t *buf, uint64_t len, const char *what, uint64_t *hlen,
                      afd_err *err) {
    if (len < 8)
        return afd_errf(err, AFD_E_FORMAT,
                        "%s: %llu bytes: too short for the 8-byte safetensors header length", what,
                        (unsigned long long)len);
    *hlen = le64(buf);
    if (*hlen < 2)
        return afd_errf(err, AFD_E_FORMAT, "%s: header length %llu: too small for a JSON object",
                        what, (unsigned long long)*hlen);
    if (*hlen > ST_MAX_HEADER)
        return afd_errf(err, AFD_E_LIMIT, "%s: header length %llu over the limit %u", what,
                        (unsigned long long)*hlen, ST_MAX_HEADER);
    if (*hlen > len - 8)
        return afd_errf(err, AFD_E_FORMAT,
                        "%s: header length %llu exceeds the file (%llu bytes after the length)",
                        what, (unsigned long long)*hlen, (unsigned long long)(len - 8));
    return 0;
}

/* jansson reports a duplicate key without naming it: recover the name from the text, the last
 * complete string token before the error position (a key, since the error is raised right
 * after the key is read). Best effort, for the message only. */
static void dup_key_name(const char *text, size_t len, size_t pos, char *out, size_t cap) {
    out[0] = '\0';
    if (pos > len) pos = len;
    size_t end = pos;
    while (end > 0 && text[end - 1] != '"')
        end--;
    if (end == 0) return;
    size_t start = end - 1;
    while (start > 0 && !(text[start - 1] == '"' && (start < 2 || text[start - 2] != '\\')))
        start--;
    if (start == 0) return;
    size_t n = end - 1 - start;
    if (n >= cap) n = cap - 1;
    memcpy(out, text + start, n);
    out[n] = '\0';
}

static int parse_json_error(const uint8_t *text, uint64_t hlen, const char *what,
                            const json_error_t *je, afd_err *err) {
    if (strstr(je->text, "duplicate")) {
        char name[160];
        dup_key_name((const char *)text, (size_t)hlen, (size_t)je->position, name, sizeof name);
        return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: duplicate name in the header", what,
                        name[0] ? name : "?");
    }
    return afd_errf(err, AFD_E_FORMAT, "%s: header JSON: %s (line %d, column %d)", what, je->text,
                    je->line, je->column);
}

static int check_metadata(json_t *v, const char *what, afd_err *err) {
    const char *k;
    json_t *s;
    if (!json_is_object(v))
        return afd_errf(err, AFD_E_FORMAT, "%s: __metadata__: not an object of strings", what);
    json_object_foreach(v, k, s) {
        if (!json_is_string(s))
            return afd_errf(err, AFD_E_FORMAT,
                            "%s: __metadata__: value of \"%.100s\" is not a string", what, k);
    }
    return 0;
}

static int parse_shape(json_t *v, const char *what, const char *name, st_tensor *t, uint64_t *numel,
                       afd_err *err) {
    if (!json_is_array(v))
        return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: shape is missing or not an array", what,
                        name);
    size_t nd = json_array_size(v);
    if (nd > ST_MAX_DIMS)
        return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: %zu dimensions, at most %d supported",
                        what, name, nd, ST_MAX_DIMS);
    t->ndim = (int)nd;
    *numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(v, i);
        if (!json_is_integer(d))
            return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: shape[%zu] is not an integer", what,
                            name, i);
        json_int_t x = json_integer_value(d);
        if (x < 0)
            return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: shape[%zu] = %lld is negative", what,
                            name, i, (long long)x);
        t->shape[i] = x;
        if (__builtin_mul_overflow(*numel, (uint64_t)x, numel))
            return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: element count overflows 64 bits",
                            what, name);
    }
    return 0;
}

static int parse_offsets(json_t *v, const char *what, const char *name, uint64_t *b, uint64_t *e,
                         afd_err *err) {
    if (!json_is_array(v) || json_array_size(v) != 2)
        return afd_errf(err, AFD_E_FORMAT,
                        "%s: tensor %s: data_offsets is missing or not [begin, end]", what, name);
    json_t *jb = json_array_get(v, 0), *je = json_array_get(v, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
        json_integer_value(je) < 0)
        return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: data_offsets must be two integers >= 0",
                        what, name);
    *b = (uint64_t)json_integer_value(jb);
    *e = (uint64_t)json_integer_value(je);
    return 0;
}

/* One header entry: {"dtype", "shape", "data_offsets"} checked against the data section. */
static int parse_entry(json_t *v, const char *what, const char *name, const uint8_t *data,
                       uint64_t dsize, st_tensor *t, afd_err *err) {
    if (!json_is_object(v))
        return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: entry is not an object", what, name);
    json_t *jdt = json_object_get(v, "dtype");
    if (!json_is_string(jdt))
        return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: dtype is missing or not a string", what,
                        name);
    int di = st_dtype_find(json_string_value(jdt));
    if (di < 0)
        return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: unknown dtype \"%.32s\"", what, name,
                        json_string_value(jdt));
    t->dtype = st_dtypes[di].dt;
    t->dtype_name = st_dtypes[di].name;
    uint64_t numel = 0, b = 0, e = 0;
    int rc = parse_shape(json_object_get(v, "shape"), what, name, t, &numel, err);
    if (rc == 0) rc = parse_offsets(json_object_get(v, "data_offsets"), what, name, &b, &e, err);
    if (rc) return rc;
    if (__builtin_mul_overflow(numel, (uint64_t)st_dtypes[di].size, &t->nbytes))
        return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: byte size overflows 64 bits", what,
                        name);
    if (e < b)
        return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu]: end < begin",
                        what, name, (unsigned long long)b, (unsigned long long)e);
    if (e > dsize)
        return afd_errf(err, AFD_E_FORMAT,
                        "%s: tensor %s: data_offsets [%llu, %llu] outside the data section "
                        "(%llu bytes)",
                        what, name, (unsigned long long)b, (unsigned long long)e,
                        (unsigned long long)dsize);
    if (e - b != t->nbytes)
        return afd_errf(err, AFD_E_FORMAT,
                        "%s: tensor %s: data_offsets span %llu bytes but %s of %llu elements "
                        "needs %llu",
                        what, name, (unsigned long long)(e - b), t->dtype_name,
                        (unsigned long long)numel, (unsigned long long)t->nbytes);
    t->data = data + b;
    return 0;
}

typedef struct span {
    uint64_t b, e;
    int i;
} span;

static int span_cmp(const void *pa, const void *pb) {
    const span *a = pa, *b = pb;
    if (a->b != b->b) return a->b < b->b ? -1 : 1;
    return a->e < b->e ? -1 : a->e > b->e;
}

/* No two non-empty tensors may share a byte. */
static int check_overlaps(const st_tensor *t, int n, const uint8_t *data, const char *what,
                          afd_err *err) {
    if (n < 2) return 0;
    span *s = afd_try_alloc((size_t)n * sizeof *s);
    if (!s) return afd_errf(err, -ENOMEM, "%s: no memory for %d tensors", what, n);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (t[i].nbytes > 0) {
            uint64_t b = (uint64_t)((const uint8_t *)t[i].data - data);
            s[m++] = (span){b, b + t[i].nbytes, i};
        }
    qsort(s, (size_t)m, sizeof *s, span_cmp);
    int rc = 0;
    for (int k = 1; k < m && rc == 0; k++)
        if (s[k].b < s[k - 1].e)
            rc = afd_errf(err, AFD_E_FORMAT,
                          "%s: tensors %.150s [%llu, %llu] and %.150s [%llu, %llu] overlap", what,
                          t[s[k - 1].i].name, (unsigned long long)s[k - 1].b,
                          (unsigned long long)s[k - 1].e, t[s[k].i].name,
                          (unsigned long long)s[k].b, (unsigned long long)s[k].e);
    free(s);
    return rc;
}

static int parse_entries(json_t *root, const char *what, const uint8_t *data, uint64_t dsize,
                         st_tensor *t, int *n, afd_err *err) {
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            int rc = check_metadata(v, what, err);
            if (rc) return rc;
            continue;
        }
        char shown[208]; /* names in messages are cut at 200 bytes */
        snprintf(shown, sizeof shown, "%.200s", key);
        st_tensor *cur = &t[*n];
        int rc = parse_entry(v, what, shown, data, dsize, cur, err);
        if (rc) return rc;
        cur->name = xstrdup(key);
        (*n)++;
    }
    return check_overlaps(t, *n, data, what, err);
}

int st_parse(const uint8_t *buf, uint64_t len, const char *what, st_tensor **out, int *n,
             afd_err *err) {
    uint64_t hlen = 0;
    *out = NULL;
    *n = 0;
    int rc = header_len(buf, len, what, &hlen, err);
    if (rc) return rc;
    json_error_t je;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) return parse_json_error(buf + 8, hlen, what, &je, err);
    if (!json_is_object(root)) {
        json_decref(root);
        return afd_errf(err, AFD_E_FORMAT, "%s: header JSON is not an object", what);
    }
    size_t cap = json_object_size(root);
    st_tensor *t = cap ? afd_try_alloc(cap * sizeof *t) : NULL;
    if (cap && !t) {
        json_decref(root);
        return afd_errf(err, -ENOMEM, "%s: no memory for %zu tensors", what, cap);
    }
    int count = 0;
    rc = parse_entries(root, what, buf + 8 + hlen, len - 8 - hlen, t, &count, err);
    json_decref(root);
    if (rc) {
        st_tensors_free(t, count);
        return rc;
    }
    *out = t;
    *n = count;
    return 0;
}

void st_tensors_free(st_tensor *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++)
        free((char *)t[i].name);
    free(t);
}

/* ==== st_set ================================================================================ */

typedef struct st_file {
    char *path;
    uint8_t *map;
    uint64_t len;
    st_tensor *t;
    int n;
} st_file;

struct st_set {
    char *path;
    st_file *files;
    int n_files;
    const st_tensor **all; /* every tensor, file by file */
    int n_all;
    const st_tensor **table; /* open addressing, power-of-two size, NULL = empty */
    size_t mask;
};

static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = xmalloc(a + b + 2);
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static bool is_regular(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Maps `path` read-only and parses its header. Takes ownership of `path`. */
static int file_open(st_file *f, char *path, afd_err *err) {
    memset(f, 0, sizeof *f);
    f->path = path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return afd_errf(err, errno == ENOENT ? AFD_E_NOTFOUND : -errno, "%s: %s", path,
                        strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return afd_errf(err, AFD_E_FORMAT, "%s: not a regular file", path);
    }
    f->len = (uint64_t)sb.st_size;
    void *m = f->len ? mmap(NULL, (size_t)f->len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    int e = errno;
    close(fd);
    if (m == MAP_FAILED)
        return afd_errf(err, -e, "%s: mmap of %llu bytes: %s", path, (unsigned long long)f->len,
                        strerror(e));
    f->map = m;
    static const uint8_t empty[1];
    int rc = st_parse(f->map ? f->map : empty, f->len, path, &f->t, &f->n, err);
    for (int i = 0; i < f->n; i++)
        f->t[i].file = f->path;
    return rc;
}

static void file_close(st_file *f) {
    st_tensors_free(f->t, f->n);
    if (f->map) munmap(f->map, (size_t)f->len);
    free(f->path);
}

static st_file *set_add_file(st_set *s) {
    s->files = xrealloc(s->files, (size_t)(s->n_files + 1) * sizeof *s->files);
    return &s->files[s->n_files++];
}

/* Opens one more shard of the set. */
static int set_open_file(st_set *s, char *path, afd_err *err) {
    st_file *f = set_add_file(s);
    int rc = file_open(f, path, err);
    if (rc) file_close(f), s->n_files--;
    return rc;
}

/* Indexes every tensor of every file by name; a name seen twice is refused. */
static int set_build_table(st_set *s, afd_err *err) {
    size_t n = 0, size = 16;
    for (int i = 0; i < s->n_files; i++)
        n += (size_t)s->files[i].n;
    while (size < 2 * n)
        size *= 2;
    s->table = xcalloc(size, sizeof *s->table);
    s->mask = size - 1;
    s->all = xmalloc((n ? n : 1) * sizeof *s->all);
    for (int i = 0; i < s->n_files; i++)
        for (int j = 0; j < s->files[i].n; j++) {
            const st_tensor *t = &s->files[i].t[j];
            size_t h = (size_t)name_hash(t->name) & s->mask;
            for (; s->table[h]; h = (h + 1) & s->mask)
                if (strcmp(s->table[h]->name, t->name) == 0)
                    return afd_errf(err, AFD_E_FORMAT,
                                    "%s: tensor %.200s is in two shards: %s and %s", s->path,
                                    t->name, s->table[h]->file, t->file);
            s->table[h] = t;
            s->all[s->n_all++] = t;
        }
    return 0;
}

const st_tensor *st_set_find(const st_set *s, const char *name) {
    if (!s || !s->table) return NULL;
    for (size_t h = (size_t)name_hash(name) & s->mask; s->table[h]; h = (h + 1) & s->mask)
        if (strcmp(s->table[h]->name, name) == 0) return s->table[h];
    return NULL;
}

int st_set_count(const st_set *s) {
    return s ? s->n_all : 0;
}

const st_tensor *st_set_at(const st_set *s, int i) {
    return s && i >= 0 && i < s->n_all ? s->all[i] : NULL;
}

const char *st_set_path(const st_set *s) {
    return s ? s->path : NULL;
}

void st_set_free(st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n_files; i++)
        file_close(&s->files[i]);
    free(s->files);
    free(s->all);
    free(s->table);
    free(s->path);
    free(s);
}

/* ---- model.safetensors.index.json ---- */

static int read_small_file(const char *path, uint64_t limit, char **out, size_t *len,
                           afd_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return afd_errf(err, -errno, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size > limit) {
        close(fd);
        return afd_errf(err, AFD_E_LIMIT, "%s: larger than the limit of %llu bytes", path,
                        (unsigned long long)limit);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    char *buf = xmalloc(n + 1);
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            free(buf);
            return afd_errf(err, -e, "%s: read: %s", path, strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static bool shard_name_ok(const char *f) {
    return f[0] && !strchr(f, '/') && strcmp(f, ".") != 0 && strcmp(f, "..") != 0;
}

/* The distinct shard files of the weight map, in order of first mention, opened. */
static int index_open_shards(st_set *s, const char *dir, const char *ipath, json_t *map,
                             afd_err *err) {
    const char *name;
    json_t *v;
    json_object_foreach(map, name, v) {
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v)))
            return afd_errf(err, AFD_E_FORMAT,
                            "%s: weight_map: tensor %.200s: file must be a plain file name", ipath,
                            name);
        const char *file = json_string_value(v);
        char *path = path_join(dir, file);
        bool seen = false;
        for (int i = 0; i < s->n_files && !seen; i++)
            seen = strcmp(s->files[i].path, path) == 0;
        if (seen) {
            free(path);
            continue;
        }
        if (!is_regular(path)) {
            afd_errf(err, AFD_E_NOTFOUND, "%s: shard %s (holding tensor %.200s) is missing", ipath,
                     file, name);
            free(path);
            return AFD_E_NOTFOUND;
        }
        int rc = set_open_file(s, path, err);
        if (rc) return rc;
    }
    return 0;
}

/* Every tensor the weight map lists must be found in the shard it names. */
static int index_check(const st_set *s, const char *dir, const char *ipath, json_t *map,
                       afd_err *err) {
    const char *name;
    json_t *v;
    json_object_foreach(map, name, v) {
        const st_tensor *t = st_set_find(s, name);
        char *want = path_join(dir, json_string_value(v));
        int rc = 0;
        if (!t)
            rc = afd_errf(err, AFD_E_NOTFOUND, "%s: tensor %.200s: listed in %s but absent from it",
                          ipath, name, json_string_value(v));
        else if (strcmp(t->file, want) != 0)
            rc = afd_errf(err, AFD_E_FORMAT, "%s: tensor %.200s: listed in %s but found in %s",
                          ipath, name, json_string_value(v), t->file);
        free(want);
        if (rc) return rc;
    }
    return 0;
}

static int open_index(st_set *s, const char *dir, const char *ipath, afd_err *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = read_small_file(ipath, ST_MAX_INDEX, &text, &len, err);
    if (rc) return rc;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return afd_errf(err, AFD_E_FORMAT, "%s: line %d, column %d: %s", ipath, je.line, je.column,
                        je.text);
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map))
        rc = afd_errf(err, AFD_E_FORMAT, "%s: key weight_map: missing or not an object", ipath);
    if (rc == 0) rc = index_open_shards(s, dir, ipath, map, err);
    if (rc == 0) rc = set_build_table(s, err);
    if (rc == 0) rc = index_check(s, dir, ipath, map, err);
    json_decref(root);
    return rc;
}

/* ---- every *.safetensors of the directory ---- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a > b && strcmp(s + a - b, suf) == 0;
}

static int open_glob(st_set *s, const char *dir, afd_err *err) {
    DIR *d = opendir(dir);
    if (!d)
        return afd_errf(err, errno == ENOENT ? AFD_E_NOTFOUND : -errno, "%s: %s", dir,
                        strerror(errno));
    char **names = NULL;
    size_t n = 0;
    for (struct dirent *de; (de = readdir(d));)
        if (has_suffix(de->d_name, ".safetensors")) {
            names = xrealloc(names, (n + 1) * sizeof *names);
            names[n++] = xstrdup(de->d_name);
        }
    closedir(d);
    if (n > 1) qsort(names, n, sizeof *names, cmp_str);
    int rc = n ? 0
               : afd_errf(err, AFD_E_NOTFOUND,
                          "%s: no model.safetensors, model.safetensors.index.json or "
                          "*.safetensors file",
                          dir);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) rc = set_open_file(s, path_join(dir, names[i]), err);
        free(names[i]);
    }
    free(names);
    return rc ? rc : set_build_table(s, err);
}

static int set_open_dir(st_set *s, const char *dir, afd_err *err) {
    char *single = path_join(dir, "model.safetensors");
    if (is_regular(single)) {
        int rc = set_open_file(s, single, err);
        return rc ? rc : set_build_table(s, err);
    }
    free(single);
    char *ipath = path_join(dir, "model.safetensors.index.json");
    int rc = is_regular(ipath) ? open_index(s, dir, ipath, err) : open_glob(s, dir, err);
    free(ipath);
    return rc;
}

int st_set_open(const char *dir, st_set **out, afd_err *err) {
    *out = NULL;
    st_set *s = xcalloc(1, sizeof *s);
    s->path = xstrdup(dir);
    int rc;
    if (is_regular(dir)) {
        rc = set_open_file(s, xstrdup(dir), err);
        if (rc == 0) rc = set_build_table(s, err);
    } else {
        rc = set_open_dir(s, dir, err);
    }
    if (rc) {
        st_set_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ==== st_writer ============================================================================= */

typedef struct st_wtensor {
    char *name;
    afd_dtype dt;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
} st_wtensor;

struct st_writer {
    st_wtensor *t;
    int n, cap;
    FILE *f;
    char *path, *tmp;
    int cur;           /* tensor whose data comes next */
    uint64_t cur_done; /* bytes of it written so far */
    bool failed;
};

st_writer *st_writer_new(void) {
    return xcalloc(1, sizeof(st_writer));
}

static bool writer_has(const st_writer *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) return true;
    return false;
}

int st_writer_add(st_writer *w, const char *name, afd_dtype dt, int ndim, const int64_t *shape) {
    if (!w || w->path || !name || !name[0] || strcmp(name, "__metadata__") == 0 ||
        afd_dtype_size(dt) == 0 || ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && !shape))
        return -EINVAL;
    uint64_t nbytes = afd_dtype_size(dt);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(nbytes, (uint64_t)shape[i], &nbytes))
            return -EINVAL;
    if (nbytes > (uint64_t)INT64_MAX || writer_has(w, name)) return -EINVAL;
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->t = xrealloc(w->t, (size_t)w->cap * sizeof *w->t);
    }
    st_wtensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->dt = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->nbytes = nbytes;
    return 0;
}

static json_t *writer_metadata(const char *metadata_json, const char *path, afd_err *err) {
    json_error_t je;
    json_t *m = json_loads(metadata_json, JSON_REJECT_DUPLICATES, &je);
    if (!m) {
        afd_errf(err, -EINVAL, "%s: metadata: %s", path, je.text);
        return NULL;
    }
    if (check_metadata(m, path, err)) {
        json_decref(m);
        return NULL;
    }
    return m;
}

/* The header JSON: __metadata__ first, then the tensors with packed offsets. */
static char *writer_header(const st_writer *w, json_t *meta, afd_err *err) {
    json_t *root = json_object();
    if (meta) json_object_set_new(root, "__metadata__", meta);
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_wtensor *t = &w->t[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        if (off + t->nbytes < off || off + t->nbytes > (uint64_t)INT64_MAX) {
            json_decref(shape);
            json_decref(root);
            afd_errf(err, AFD_E_LIMIT, "%s: tensor %s: data section over 2^63 bytes", w->path,
                     t->name);
            return NULL;
        }
        json_t *e = json_pack("{s:s,s:o,s:[I,I]}", "dtype", afd_dtype_name(t->dt), "shape", shape,
                              "data_offsets", (json_int_t)off, (json_int_t)(off + t->nbytes));
        json_object_set_new(root, t->name, e);
        off += t->nbytes;
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text) afd_errf(err, -ENOMEM, "%s: cannot format the header", w->path);
    return text;
}

static int writer_put(st_writer *w, const void *p, size_t n, afd_err *err) {
    if (n && fwrite(p, 1, n, w->f) != n) {
        w->failed = true;
        return afd_errf(err, -EIO, "%s: write: %s", w->tmp, strerror(errno));
    }
    return 0;
}

static int writer_header_out(st_writer *w, const char *text, afd_err *err) {
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    int rc = writer_put(w, lenbuf, 8, err);
    if (rc == 0) rc = writer_put(w, text, len, err);
    if (rc == 0) rc = writer_put(w, spaces, padded - len, err);
    return rc;
}

/* Skips zero-size tensors so that `cur` is the next one that needs bytes. */
static void writer_advance(st_writer *w) {
    while (w->cur < w->n && w->cur_done == w->t[w->cur].nbytes) {
        w->cur++;
        w->cur_done = 0;
    }
}

static int writer_fail(st_writer *w, afd_err *err, int fallback) {
    w->failed = true;
    return err && err->code < 0 ? err->code : fallback;
}

int st_writer_begin(st_writer *w, const char *path, const char *metadata_json, afd_err *err) {
    if (!w || !path || w->path)
        return afd_errf(err, AFD_E_STATE, "%s: st_writer_begin called twice or without a writer",
                        path ? path : "st_writer");
    w->path = xstrdup(path);
    json_t *meta = NULL;
    if (metadata_json && !(meta = writer_metadata(metadata_json, path, err)))
        return writer_fail(w, err, -EINVAL);
    char *text = writer_header(w, meta, err);
    if (!text) return writer_fail(w, err, -ENOMEM);
    size_t n = strlen(path);
    w->tmp = xmalloc(n + 5);
    memcpy(w->tmp, path, n);
    memcpy(w->tmp + n, ".tmp", 5);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        int e = errno;
        afd_errf(err, -e, "%s: %s", w->tmp, strerror(e));
        free(text);
        free(w->tmp);
        w->tmp = NULL; /* nothing to unlink */
        w->failed = true;
        return -e;
    }
    setvbuf(w->f, NULL, _IOFBF, 1u << 20);
    int rc = writer_header_out(w, text, err);
    free(text);
    writer_advance(w);
    return rc;
}

int st_writer_data(st_writer *w, const void *data, uint64_t nbytes, afd_err *err) {
    if (!w || !w->f || w->failed)
        return afd_errf(err, AFD_E_STATE, "st_writer_data: writer not begun or already failed");
    if (nbytes == 0) return 0;
    if (!data) return afd_errf(err, -EINVAL, "%s: st_writer_data: NULL data", w->path);
    if (w->cur >= w->n) {
        w->failed = true;
        return afd_errf(err, AFD_E_LIMIT, "%s: %llu bytes of data after the last tensor", w->path,
                        (unsigned long long)nbytes);
    }
    const st_wtensor *t = &w->t[w->cur];
    if (nbytes > t->nbytes - w->cur_done) {
        w->failed = true;
        return afd_errf(
            err, AFD_E_LIMIT, "%s: tensor %s: %llu bytes given, only %llu of its %llu remain",
            w->path, t->name, (unsigned long long)nbytes,
            (unsigned long long)(t->nbytes - w->cur_done), (unsigned long long)t->nbytes);
    }
    int rc = writer_put(w, data, (size_t)nbytes, err);
    if (rc) return rc;
    w->cur_done += nbytes;
    writer_advance(w);
    return 0;
}

static int writer_close(st_writer *w, afd_err *err) {
    if (!w->f || w->failed)
        return afd_errf(err, AFD_E_STATE, "%s: writer not begun or failed earlier",
                        w->path ? w->path : "st_writer");
    if (w->cur < w->n)
        return afd_errf(err, AFD_E_STATE, "%s: tensor %s: %llu of %llu bytes written", w->path,
                        w->t[w->cur].name, (unsigned long long)w->cur_done,
                        (unsigned long long)w->t[w->cur].nbytes);
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) return afd_errf(err, -EIO, "%s: close: %s", w->tmp, strerror(errno));
    if (rename(w->tmp, w->path) != 0)
        return afd_errf(err, -errno, "%s: rename to %s: %s", w->tmp, w->path, strerror(errno));
    free(w->tmp);
    w->tmp = NULL;
    return 0;
}

int st_writer_finish(st_writer *w, afd_err *err) {
    if (!w) return afd_errf(err, AFD_E_STATE, "st_writer_finish: no writer");
    int rc = writer_close(w, err);
    st_writer_free(w);
    return rc;
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    if (w->tmp) unlink(w->tmp);
    for (int i = 0; i < w->n; i++)
        free(w->t[i].name);
    free(w->t);
    free(w->path);
    free(w->tmp);
    free(w);
}
