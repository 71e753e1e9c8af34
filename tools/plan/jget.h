/* jget.h: typed, range-checked reads from jansson objects for afd-plan's inputs.
 *
 * Every getter names the input (`what`, e.g. the file) and the key in its error message. A key
 * whose value is JSON null counts as absent. Absent optional keys leave the default; absent
 * required keys are AFD_E_NOTFOUND; a wrong type or an out-of-range value is AFD_E_FORMAT.
 * Integers accept JSON reals with an integral value (1024.0). Nothing is allocated except by
 * jget_load_file, whose result the caller releases with json_decref. Thread-safe.
 */
#ifndef AFD_PLAN_JGET_H
#define AFD_PLAN_JGET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/base/err.h"

enum { JGET_OPTIONAL = 0, JGET_REQUIRED = 1 };

/* Reads the file (at most max_bytes) and parses it as a JSON object. NULL on error with *err
 * naming the file (and line/column for syntax errors). */
json_t *jget_load_file(const char *path, size_t max_bytes, afd_err *err);
/* Parses len bytes as a JSON object. */
json_t *jget_load_buf(const char *buf, size_t len, const char *what, afd_err *err);

int jget_long(const json_t *obj, const char *key, int required, long lo, long hi, long *out,
              const char *what, afd_err *err);
int jget_int(const json_t *obj, const char *key, int required, int lo, int hi, int *out,
             const char *what, afd_err *err);
int jget_double(const json_t *obj, const char *key, int required, double lo, double hi,
                double *out, const char *what, afd_err *err);
int jget_bool(const json_t *obj, const char *key, int required, bool *out, const char *what,
              afd_err *err);
/* String: *out points into obj (valid while obj lives). */
int jget_string(const json_t *obj, const char *key, int required, const char **out,
                const char *what, afd_err *err);
/* True when key is present and not null. */
bool jget_has(const json_t *obj, const char *key);
/* JSON type name for messages ("string", "array", ...). */
const char *jget_type_name(const json_t *v);

#endif
