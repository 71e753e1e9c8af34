/* jget.c: typed, range-checked reads from jansson objects. See jget.h. */
#include "tools/plan/jget.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


const char *jget_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "value";
}

json_t *jget_load_buf(const char *buf, size_t len, const char *what, afd_err *err) {
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        afd_errf(err, AFD_E_FORMAT, "%s: invalid JSON at line %d column %d: %s", what, je.line,
                 je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        afd_errf(err, AFD_E_FORMAT, "%s: expected a JSON object at the top, got %s", what,
                 jget_type_name(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Reads at most max_bytes of path into a fresh buffer (grown as needed, checked allocation:
 * the size comes from the file); 0 or negative with *err set. */
static int jget_read_file(const char *path, size_t max_bytes, char **buf, size_t *len,
                          afd_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return afd_errf(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 0, n = 0;
    char *b = NULL;
    int rc = 0;
    for (;;) {
        if (n == cap) {
            if (cap == max_bytes + 1) { /* read one byte past the limit: too big */
                rc = afd_errf(err, AFD_E_LIMIT, "%s: larger than the %zu-byte limit", path,
                              max_bytes);
                break;
            }
            size_t want = cap ? cap * 2 : 65536;
            want = want < max_bytes + 1 ? want : max_bytes + 1;
            char *nb = realloc(b, want);
            if (!nb) {
                rc = afd_errf(err, -ENOMEM, "%s: out of memory reading %zu bytes", path, want);
                break;
            }
            b = nb;
            cap = want;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (rc == 0 && ferror(f))
        rc = afd_errf(err, -EIO, "%s: read error: %s", path, strerror(errno));
    if (rc == 0 && n > max_bytes)
        rc = afd_errf(err, AFD_E_LIMIT, "%s: larger than the %zu-byte limit", path, max_bytes);
    fclose(f);
    if (rc < 0) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = n;
    return 0;
}

json_t *jget_load_file(const char *path, size_t max_bytes, afd_err *err) {
    char *buf = NULL;
    size_t len = 0;
    if (jget_read_file(path, max_bytes, &buf, &len, err) < 0)
        return NULL;
    json_t *root = jget_load_buf(buf, len, path, err);
    free(buf);
    return root;
}

bool jget_has(const json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v);
}

/* The value of key, NULL when absent or null; a missing required key sets *rc. */
static json_t *jget_value(const json_t *obj, const char *key, int required, int *rc,
                          const char *what, afd_err *err) {
    json_t *v = json_object_get(obj, key);
    *rc = 0;
    if (v && !json_is_null(v))
        return v;
    if (required)
        *rc = afd_errf(err, AFD_E_NOTFOUND, "%s: missing key \"%s\"", what, key);
    return NULL;
}

int jget_double(const json_t *obj, const char *key, int required, double lo, double hi,
                double *out, const char *what, afd_err *err) {
    int rc;
    json_t *v = jget_value(obj, key, required, &rc, what, err);
    if (!v)
        return rc;
    if (!json_is_number(v))
        return afd_errf(err, AFD_E_FORMAT, "%s: key \"%s\": expected a number, got %s", what,
                        key, jget_type_name(v));
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return afd_errf(err, AFD_E_FORMAT, "%s: key \"%s\": %g is outside [%g, %g]", what, key,
                        d, lo, hi);
    *out = d;
    return 0;
}

int jget_long(const json_t *obj, const char *key, int required, long lo, long hi, long *out,
              const char *what, afd_err *err) {
    int rc;
    json_t *v = jget_value(obj, key, required, &rc, what, err);
    if (!v)
        return rc;
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)))
        d = json_real_value(v);
    else
        return afd_errf(err, AFD_E_FORMAT, "%s: key \"%s\": expected an integer, got %s", what,
                        key, json_is_real(v) ? "a fraction" : jget_type_name(v));
    if (d < (double)lo || d > (double)hi)
        return afd_errf(err, AFD_E_FORMAT, "%s: key \"%s\": %.0f is outside [%ld, %ld]", what,
                        key, d, lo, hi);
    *out = (long)d;
    return 0;
}

int jget_int(const json_t *obj, const char *key, int required, int lo, int hi, int *out,
             const char *what, afd_err *err) {
    long l = *out;
    int rc = jget_long(obj, key, required, lo, hi, &l, what, err);
    if (rc == 0)
        *out = (int)l;
    return rc;
}

int jget_bool(const json_t *obj, const char *key, int required, bool *out, const char *what,
              afd_err *err) {
    int rc;
    json_t *v = jget_value(obj, key, required, &rc, what, err);
    if (!v)
        return rc;
    if (!json_is_boolean(v))
        return afd_errf(err, AFD_E_FORMAT, "%s: key \"%s\": expected true or false, got %s",
                        what, key, jget_type_name(v));
    *out = json_is_true(v);
    return 0;
}

int jget_string(const json_t *obj, const char *key, int required, const char **out,
                const char *what, afd_err *err) {
    int rc;
    json_t *v = jget_value(obj, key, required, &rc, what, err);
    if (!v)
        return rc;
    if (!json_is_string(v))
        return afd_errf(err, AFD_E_FORMAT, "%s: key \"%s\": expected a string, got %s", what,
                        key, jget_type_name(v));
    *out = json_string_value(v);
    return 0;
}
