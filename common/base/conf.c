/* conf.c: the config-table engine (see conf.h). Values from every source (table default,
 * JSON file, flag) go through the same steps: parse into a conf_val, check the bounds, store
 * into the struct. Messages are "<where>: <why>", where is "--flag-name" or
 * "file: key \"name\"". */
#include "common/base/conf.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/base/alloc.h"
#include "common/base/log.h"

#define WHY_MAX 320
#define NAME_MAX_LEN 64

typedef struct conf_val {
    bool b;
    int64_t i;  /* INT, I64, MS, US, ENUM */
    uint64_t u; /* SIZE */
    double d;
    char *s;     /* STR (owned while in a conf_val) */
    char **list; /* STRLIST (owned) */
    int n;
} conf_val;

static void val_release(conf_val *v) {
    free(v->s);
    for (int k = 0; k < v->n; k++)
        free(v->list[k]);
    free(v->list);
    memset(v, 0, sizeof *v);
}

/* ---- field access ---- */

static void *field(void *cfg, size_t off) { return (char *)cfg + off; }
static const void *cfield(const void *cfg, size_t off) { return (const char *)cfg + off; }

static void field_clear(const conf_opt *o, void *cfg) {
    if (o->type == CONF_STR) {
        char **p = field(cfg, o->offset);
        free(*p);
        *p = NULL;
    } else if (o->type == CONF_STRLIST) {
        char ***p = field(cfg, o->offset);
        int *n = field(cfg, o->count_offset);
        for (int k = 0; *p && k < *n; k++)
            free((*p)[k]);
        free(*p);
        *p = NULL;
        *n = 0;
    }
}

/* Moves v into the field (freeing what the field owned). */
static void field_store(const conf_opt *o, void *cfg, conf_val *v) {
    field_clear(o, cfg);
    switch (o->type) {
    case CONF_BOOL: *(bool *)field(cfg, o->offset) = v->b; break;
    case CONF_INT:
    case CONF_ENUM: *(int *)field(cfg, o->offset) = (int)v->i; break;
    case CONF_I64:
    case CONF_MS:
    case CONF_US: *(int64_t *)field(cfg, o->offset) = v->i; break;
    case CONF_SIZE: *(uint64_t *)field(cfg, o->offset) = v->u; break;
    case CONF_DOUBLE: *(double *)field(cfg, o->offset) = v->d; break;
    case CONF_STR: *(char **)field(cfg, o->offset) = v->s, v->s = NULL; break;
    case CONF_STRLIST:
        *(char ***)field(cfg, o->offset) = v->list;
        *(int *)field(cfg, o->count_offset) = v->n;
        v->list = NULL, v->n = 0;
        break;
    }
}

/* ---- sizes and durations ---- */

typedef struct num_text {
    unsigned __int128 mant; /* digits without the point */
    unsigned __int128 div;  /* 10^(digits after the point) */
    const char *unit;       /* rest of the string after optional spaces */
} num_text;

static int parse_decimal(const char *s, num_text *nt) {
    const char *p = s;
    int digits = 0, frac = 0;
    nt->mant = 0, nt->div = 1;
    while (*p == '0' && p[1] >= '0' && p[1] <= '9')
        p++; /* leading zeros do not count against the digit limit */
    for (; *p >= '0' && *p <= '9'; p++, digits++)
        nt->mant = nt->mant * 10 + (unsigned)(*p - '0');
    if (digits == 0)
        return AFD_E_FORMAT; /* ".5" */
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, frac++, digits++) {
            nt->mant = nt->mant * 10 + (unsigned)(*p - '0');
            nt->div *= 10;
        }
        if (frac == 0)
            return AFD_E_FORMAT;
    }
    if (digits == 0)
        return AFD_E_FORMAT;
    if (digits > 24)
        return AFD_E_LIMIT;
    while (*p == ' ')
        p++;
    nt->unit = p;
    return 0;
}

static int unit_eq(const char *u, const char *name) { return strcasecmp(u, name) == 0; }

int conf_parse_size(const char *s, uint64_t *out) {
    static const char units[] = "kmgtpe";
    num_text nt;
    int rc = s ? parse_decimal(s, &nt) : AFD_E_FORMAT;
    if (rc)
        return rc;
    unsigned __int128 mul = 1;
    const char *u = nt.unit;
    if (*u && !unit_eq(u, "b")) {
        const char *hit = strchr(units, u[0] | 0x20);
        if (!hit || u[0] == 0)
            return AFD_E_FORMAT;
        const char *rest = u + 1;
        if (!(*rest == 0 || unit_eq(rest, "b") || unit_eq(rest, "ib")))
            return AFD_E_FORMAT;
        mul = (unsigned __int128)1 << (10 * (hit - units + 1));
    }
    unsigned __int128 bytes = nt.mant * mul;
    if (bytes % nt.div)
        return AFD_E_FORMAT;
    bytes /= nt.div;
    if (bytes > UINT64_MAX)
        return AFD_E_LIMIT;
    *out = (uint64_t)bytes;
    return 0;
}

static int64_t duration_unit_ns(const char *u, int64_t bare_ns) {
    static const struct { const char *name; int64_t ns; } units[] = {
        {"ns", 1},           {"us", 1000},        {"\xc2\xb5s", 1000},   {"ms", 1000000},
        {"s", 1000000000},   {"m", 60000000000},  {"min", 60000000000}, {"h", 3600000000000},
        {"d", 86400000000000},
    };
    if (*u == 0)
        return bare_ns;
    for (size_t k = 0; k < sizeof units / sizeof units[0]; k++)
        if (strcmp(u, units[k].name) == 0)
            return units[k].ns;
    return 0;
}

int conf_parse_duration(const char *s, int64_t unit_ns, int64_t *out) {
    num_text nt;
    if (unit_ns <= 0)
        return -EINVAL;
    int rc = s ? parse_decimal(s, &nt) : AFD_E_FORMAT;
    if (rc)
        return rc;
    int64_t ns = duration_unit_ns(nt.unit, unit_ns);
    if (ns == 0)
        return AFD_E_FORMAT;
    unsigned __int128 num = nt.mant * (unsigned __int128)ns;
    unsigned __int128 den = nt.div * (unsigned __int128)unit_ns;
    if (num % den)
        return AFD_E_FORMAT;
    if (num / den > INT64_MAX)
        return AFD_E_LIMIT;
    *out = (int64_t)(num / den);
    return 0;
}

/* ---- text form of values (help, messages) ---- */

static void fmt_num(char *buf, size_t n, double x) {
    if (x == floor(x) && fabs(x) < 1e18)
        snprintf(buf, n, "%.0f", x);
    else
        snprintf(buf, n, "%g", x);
}

static void fmt_size(char *buf, size_t n, uint64_t v) {
    static const char units[] = "kmgtpe";
    int k = 0;
    while (k < 6 && v && v % ((uint64_t)1 << (10 * (k + 1))) == 0)
        k++;
    if (k == 0)
        snprintf(buf, n, "%" PRIu64, v);
    else
        snprintf(buf, n, "%" PRIu64 "%cb", v >> (10 * k), units[k - 1]);
}

/* A bound in the option's stored unit, written the way a user would. */
static void fmt_bound(const conf_opt *o, double x, char *buf, size_t n) {
    if (o->type == CONF_SIZE && x >= 0 && x < 1.8e19)
        fmt_size(buf, n, (uint64_t)x);
    else if (o->type == CONF_MS || o->type == CONF_US) {
        char num[48];
        fmt_num(num, sizeof num, x);
        snprintf(buf, n, "%s%s", num, o->type == CONF_MS ? "ms" : "us");
    } else
        fmt_num(buf, n, x);
}

/* ---- parsing one value from text ---- */

static int parse_bool_text(const char *s, bool *b) {
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (int k = 0; k < 4; k++) {
        if (strcasecmp(s, yes[k]) == 0)
            return *b = true, 0;
        if (strcasecmp(s, no[k]) == 0)
            return *b = false, 0;
    }
    return AFD_E_FORMAT;
}

static int parse_int_text(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    const char *p = (*s == '-' || *s == '+') ? s + 1 : s;
    if (*p < '0' || *p > '9')
        return AFD_E_FORMAT;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return AFD_E_FORMAT;
    if (errno == ERANGE || v < lo || v > hi)
        return AFD_E_LIMIT;
    *out = v;
    return 0;
}

static int parse_double_text(const char *s, double *out) {
    if (!*s || *s == ' ' || *s == '\t')
        return AFD_E_FORMAT;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || !isfinite(v))
        return AFD_E_FORMAT;
    if (errno == ERANGE && fabs(v) > 1)
        return AFD_E_LIMIT;
    *out = v;
    return 0;
}

static int enum_index(const conf_opt *o, const char *s) {
    for (int k = 0; o->choices[k]; k++)
        if (strcmp(o->choices[k], s) == 0)
            return k;
    return -1;
}

static void enum_list(const conf_opt *o, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; o->choices[k] && len < n; k++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", k ? ", " : "", o->choices[k]);
}

static int split_list(const char *s, conf_val *v, char *why, size_t wn) {
    if (!*s)
        return 0;
    int n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    v->list = xcalloc((size_t)n + 1, sizeof *v->list);
    for (const char *p = s;; p++) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0)
            return snprintf(why, wn, "empty item in list \"%s\"", s), AFD_E_FORMAT;
        v->list[v->n++] = strndup(p, len);
        if (!v->list[v->n - 1])
            abort();
        if (!q)
            return 0;
        p = q;
    }
}

static int parse_text_number(const conf_opt *o, const char *s, conf_val *v, char *why, size_t wn) {
    int rc = 0;
    const char *what = "";
    switch (o->type) {
    case CONF_INT: rc = parse_int_text(s, INT_MIN, INT_MAX, &v->i), what = "an integer"; break;
    case CONF_I64: rc = parse_int_text(s, INT64_MIN, INT64_MAX, &v->i), what = "an integer"; break;
    case CONF_DOUBLE: rc = parse_double_text(s, &v->d), what = "a number"; break;
    case CONF_SIZE:
        rc = conf_parse_size(s, &v->u), what = "a size (bytes, or with a unit: 512k, 8gb, 1.5GiB)";
        break;
    case CONF_MS:
        rc = conf_parse_duration(s, 1000000, &v->i);
        what = "a whole number of milliseconds (250, 50ms, 2s, 1.5m, 1h)";
        break;
    case CONF_US:
        rc = conf_parse_duration(s, 1000, &v->i);
        what = "a whole number of microseconds (200, 200us, 1.5ms, 1s)";
        break;
    default: return -EINVAL;
    }
    if (rc == AFD_E_LIMIT)
        snprintf(why, wn, "\"%s\" is out of range", s);
    else if (rc)
        snprintf(why, wn, "\"%s\" is not %s", s, what);
    return rc;
}

static int parse_text(const conf_opt *o, const char *s, conf_val *v, char *why, size_t wn) {
    char list[200];
    switch (o->type) {
    case CONF_BOOL:
        if (parse_bool_text(s, &v->b))
            return snprintf(why, wn, "\"%s\" is not a boolean (true/false)", s), AFD_E_FORMAT;
        return 0;
    case CONF_STR: v->s = xstrdup(s); return 0;
    case CONF_ENUM:
        v->i = enum_index(o, s);
        if (v->i < 0) {
            enum_list(o, list, sizeof list);
            return snprintf(why, wn, "\"%s\" is not one of: %s", s, list), AFD_E_FORMAT;
        }
        return 0;
    case CONF_STRLIST: return split_list(s, v, why, wn);
    default: return parse_text_number(o, s, v, why, wn);
    }
}

/* ---- bounds ---- */

static double val_number(const conf_opt *o, const conf_val *v) {
    switch (o->type) {
    case CONF_INT:
    case CONF_I64:
    case CONF_MS:
    case CONF_US: return (double)v->i;
    case CONF_SIZE: return (double)v->u;
    case CONF_DOUBLE: return v->d;
    default: return 0;
    }
}

static bool has_bounds(const conf_opt *o) {
    if (o->min == 0 && o->max == 0)
        return false;
    return o->type != CONF_BOOL && o->type != CONF_STR && o->type != CONF_ENUM &&
           o->type != CONF_STRLIST;
}

static int check_bounds(const conf_opt *o, const conf_val *v, const char *text, char *why,
                        size_t wn) {
    if (!has_bounds(o))
        return 0;
    double x = val_number(o, v);
    char b[64];
    if (x < o->min) {
        fmt_bound(o, o->min, b, sizeof b);
        return snprintf(why, wn, "%s is below the minimum %s", text, b), AFD_E_LIMIT;
    }
    if (x > o->max) {
        fmt_bound(o, o->max, b, sizeof b);
        return snprintf(why, wn, "%s is above the maximum %s", text, b), AFD_E_LIMIT;
    }
    return 0;
}

/* Text value -> bounds -> v. On error v holds nothing. */
static int value_from_text(const conf_opt *o, const char *s, conf_val *v, char *why, size_t wn) {
    memset(v, 0, sizeof *v);
    int rc = parse_text(o, s, v, why, wn);
    if (!rc)
        rc = check_bounds(o, v, s, why, wn);
    if (rc)
        val_release(v);
    return rc;
}

/* ---- JSON values ---- */

static const char *json_kind(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static const char *json_expect(const conf_opt *o) {
    switch (o->type) {
    case CONF_BOOL: return "true or false";
    case CONF_INT:
    case CONF_I64: return "an integer";
    case CONF_DOUBLE: return "a number";
    case CONF_SIZE:
    case CONF_MS:
    case CONF_US: return "an integer or a string with a unit";
    case CONF_STR:
    case CONF_ENUM: return "a string";
    case CONF_STRLIST: return "an array of strings";
    }
    return "?";
}

static bool json_type_ok(const conf_opt *o, const json_t *j) {
    switch (o->type) {
    case CONF_BOOL: return json_is_boolean(j);
    case CONF_INT:
    case CONF_I64: return json_is_integer(j);
    case CONF_DOUBLE: return json_is_number(j);
    case CONF_SIZE:
    case CONF_MS:
    case CONF_US: return json_is_integer(j) || json_is_string(j);
    case CONF_STR: return json_is_string(j) || json_is_null(j);
    case CONF_ENUM: return json_is_string(j);
    case CONF_STRLIST: return json_is_array(j) || json_is_null(j);
    }
    return false;
}

static int string_has_nul(const json_t *j) {
    return strlen(json_string_value(j)) != json_string_length(j);
}

static int list_from_json(const json_t *arr, conf_val *v, char *why, size_t wn) {
    size_t n = json_array_size(arr), k;
    json_t *item;
    v->list = xcalloc(n + 1, sizeof *v->list);
    json_array_foreach(arr, k, item) {
        if (!json_is_string(item))
            return snprintf(why, wn, "item %zu is %s, expected a string", k, json_kind(item)),
                   AFD_E_FORMAT;
        if (string_has_nul(item))
            return snprintf(why, wn, "item %zu contains a NUL byte", k), AFD_E_FORMAT;
        v->list[v->n++] = xstrdup(json_string_value(item));
    }
    return 0;
}

static int value_from_json(const conf_opt *o, const json_t *j, conf_val *v, char *why,
                           size_t wn) {
    char text[64];
    memset(v, 0, sizeof *v);
    if (!json_type_ok(o, j))
        return snprintf(why, wn, "expected %s, got %s", json_expect(o), json_kind(j)),
               AFD_E_FORMAT;
    if (json_is_null(j))
        return 0;
    if (json_is_string(j) && string_has_nul(j))
        return snprintf(why, wn, "string contains a NUL byte"), AFD_E_FORMAT;
    if (json_is_string(j))
        return value_from_text(o, json_string_value(j), v, why, wn);
    if (json_is_boolean(j))
        return v->b = json_is_true(j), 0;
    if (json_is_integer(j)) {
        snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        return value_from_text(o, text, v, why, wn);
    }
    if (json_is_real(j)) {
        v->d = json_real_value(j);
        fmt_num(text, sizeof text, v->d);
        return check_bounds(o, v, text, why, wn);
    }
    int rc = list_from_json(j, v, why, wn);
    if (rc)
        val_release(v);
    return rc;
}

/* ---- names ---- */

static void flag_name(const conf_opt *o, char *buf, size_t n) {
    size_t k = 0;
    for (; o->name[k] && k + 3 < n; k++)
        buf[k + 2] = o->name[k] == '_' ? '-' : o->name[k];
    buf[0] = buf[1] = '-';
    buf[k + 2] = 0;
}

static const conf_opt *find_opt(const conf_table *t, const char *name, size_t len) {
    for (int k = 0; k < t->n_opts; k++) {
        const char *a = t->opts[k].name;
        size_t i = 0;
        for (; i < len && a[i]; i++)
            if (a[i] != name[i] && !(a[i] == '_' && name[i] == '-'))
                break;
        if (i == len && a[i] == 0)
            return &t->opts[k];
    }
    return NULL;
}

static int edit_distance(const char *a, size_t la, const char *b) {
    size_t lb = strlen(b);
    if (la >= NAME_MAX_LEN || lb >= NAME_MAX_LEN)
        return 99;
    int row[NAME_MAX_LEN + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            char ca = a[i - 1] == '-' ? '_' : a[i - 1];
            int sub = diag + (ca != b[j - 1]), del = row[j] + 1, ins = row[j - 1] + 1;
            diag = row[j];
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    }
    return row[lb];
}

/* The closest option name within a distance of about a third of its length, or NULL. */
static const conf_opt *closest_opt(const conf_table *t, const char *name, size_t len) {
    const conf_opt *best = NULL;
    int best_d = 99;
    for (int k = 0; k < t->n_opts; k++) {
        int d = edit_distance(name, len, t->opts[k].name);
        int limit = (int)strlen(t->opts[k].name) / 3;
        if (d <= (limit < 1 ? 1 : limit > 3 ? 3 : limit) && d < best_d)
            best = &t->opts[k], best_d = d;
    }
    return best;
}

static void suggest(const conf_table *t, const char *name, size_t len, int as_flag, char *buf,
                    size_t n) {
    const conf_opt *o = closest_opt(t, name, len);
    char f[NAME_MAX_LEN + 3];
    buf[0] = 0;
    if (!o)
        return;
    if (as_flag) {
        flag_name(o, f, sizeof f);
        snprintf(buf, n, " (did you mean %s?)", f);
    } else
        snprintf(buf, n, " (did you mean \"%s\"?)", o->name);
}

/* ---- table validation ---- */

static bool name_ok(const char *s) {
    if (!s || !*s || strlen(s) >= NAME_MAX_LEN)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static int check_opt(const conf_table *t, const conf_opt *o, afd_err *err) {
    const char *p = t->prog;
    if (!name_ok(o->name))
        return afd_errf(err, AFD_E_FORMAT, "conf table %s: bad option name \"%s\"", p,
                        o->name ? o->name : "(null)");
    if (find_opt(t, o->name, strlen(o->name)) != o || strcmp(o->name, "config") == 0 ||
        strcmp(o->name, "help") == 0)
        return afd_errf(err, AFD_E_FORMAT, "conf table %s: option \"%s\" defined twice", p,
                        o->name);
    if (o->type == CONF_ENUM && (!o->choices || !o->choices[0]))
        return afd_errf(err, AFD_E_FORMAT, "conf table %s: enum \"%s\" has no choices", p,
                        o->name);
    if (o->type == CONF_STRLIST && o->count_offset == o->offset)
        return afd_errf(err, AFD_E_FORMAT, "conf table %s: list \"%s\" needs count_offset", p,
                        o->name);
    if ((o->flags & CONF_REQUIRED) && o->def)
        return afd_errf(err, AFD_E_FORMAT, "conf table %s: required \"%s\" has a default", p,
                        o->name);
    if ((o->flags & CONF_POSITIONAL) && o->type != CONF_STR && o->type != CONF_STRLIST)
        return afd_errf(err, AFD_E_FORMAT, "conf table %s: positional \"%s\" is not a string",
                        p, o->name);
    if (has_bounds(o) && !(o->min <= o->max))
        return afd_errf(err, AFD_E_FORMAT, "conf table %s: \"%s\" has min > max", p, o->name);
    return 0;
}

static int check_table(const conf_table *t, afd_err *err) {
    int positional = 0;
    if (!t || !t->prog || (t->n_opts > 0 && !t->opts) || t->n_opts < 0)
        return afd_errf(err, AFD_E_FORMAT, "conf table: missing prog or options");
    for (int k = 0; k < t->n_opts; k++) {
        int rc = check_opt(t, &t->opts[k], err);
        if (rc)
            return rc;
        positional += (t->opts[k].flags & CONF_POSITIONAL) != 0;
    }
    if (positional > 1)
        return afd_errf(err, AFD_E_FORMAT, "conf table %s: more than one positional option",
                        t->prog);
    return 0;
}

static const conf_opt *positional_opt(const conf_table *t) {
    for (int k = 0; k < t->n_opts; k++)
        if (t->opts[k].flags & CONF_POSITIONAL)
            return &t->opts[k];
    return NULL;
}

/* ---- defaults ---- */

static void zero_field(const conf_opt *o, void *cfg) {
    static const conf_val zero;
    conf_val v = zero;
    if (o->type == CONF_STR)
        *(char **)field(cfg, o->offset) = NULL;
    if (o->type == CONF_STRLIST)
        *(char ***)field(cfg, o->offset) = NULL, *(int *)field(cfg, o->count_offset) = 0;
    field_store(o, cfg, &v);
}

static int apply_defaults(const conf_table *t, void *cfg, afd_err *err) {
    for (int k = 0; k < t->n_opts; k++) {
        const conf_opt *o = &t->opts[k];
        char why[WHY_MAX];
        conf_val v;
        if (!o->def)
            continue;
        int rc = value_from_text(o, o->def, &v, why, sizeof why);
        if (rc)
            return afd_errf(err, AFD_E_FORMAT, "conf table %s: default of \"%s\": %s", t->prog,
                            o->name, why);
        field_store(o, cfg, &v);
    }
    return 0;
}

/* ---- the file ---- */

static int read_file(const char *path, char **out, size_t *len, afd_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return afd_errf(err, AFD_E_NOTFOUND, "config file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return afd_errf(err, AFD_E_FORMAT, "config file %s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > CONF_FILE_MAX) {
        fclose(f);
        return afd_errf(err, AFD_E_LIMIT, "config file %s: %lld bytes, over the limit of %u",
                        path, (long long)st.st_size, CONF_FILE_MAX);
    }
    char *buf = xmalloc((size_t)st.st_size + 1);
    *len = fread(buf, 1, (size_t)st.st_size + 1, f);
    fclose(f);
    if (*len > (size_t)st.st_size) { /* grew while reading */
        free(buf);
        return afd_errf(err, AFD_E_LIMIT, "config file %s: changed while reading", path);
    }
    *out = buf;
    return 0;
}

static int load_json(const char *path, json_t **root, afd_err *err) {
    char *buf = NULL;
    size_t len = 0;
    int rc = read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    json_error_t je;
    *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (!*root)
        return afd_errf(err, AFD_E_FORMAT, "config file %s:%d:%d: %s", path, je.line, je.column,
                        je.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        return afd_errf(err, AFD_E_FORMAT, "config file %s: top level must be an object", path);
    }
    return 0;
}

/* cfg == NULL: validate only. set[] marks the options given. */
static int apply_file(const conf_table *t, const char *path, void *cfg, bool *set, afd_err *err) {
    json_t *root = NULL, *j;
    const char *key;
    int rc = load_json(path, &root, err);
    if (rc)
        return rc;
    json_object_foreach(root, key, j) {
        char why[WHY_MAX], hint[96];
        const conf_opt *o = strchr(key, '-') ? NULL : find_opt(t, key, strlen(key));
        conf_val v;
        if (!o) {
            suggest(t, key, strlen(key), 0, hint, sizeof hint);
            rc = afd_errf(err, AFD_E_FORMAT, "%s: unknown key \"%s\"%s", path, key, hint);
        } else if ((rc = value_from_json(o, j, &v, why, sizeof why)) != 0) {
            afd_errf(err, rc, "%s: key \"%s\": %s", path, key, why);
        } else if (cfg) {
            field_store(o, cfg, &v);
            set[o - t->opts] = true;
        } else {
            val_release(&v);
        }
        if (rc)
            break;
    }
    json_decref(root);
    return rc;
}

int conf_check_file(const conf_table *t, const char *path, afd_err *err) {
    int rc = check_table(t, err);
    return rc ? rc : apply_file(t, path, NULL, NULL, err);
}

/* ---- the command line ---- */

typedef struct flag_val {
    const conf_opt *o;
    const char *text;
} flag_val;

typedef struct cmdline {
    flag_val *flags; /* in order of appearance */
    int n_flags;
    const char **pos; /* positional arguments */
    int n_pos;
    const char *config;
    bool help;
} cmdline;

static int bad_flag(const conf_table *t, const char *arg, size_t len, afd_err *err) {
    char hint[96];
    suggest(t, arg + 2, len - 2, 1, hint, sizeof hint);
    return afd_errf(err, AFD_E_FORMAT, "unknown flag %.*s%s", (int)len, arg, hint);
}

/* "--no-name" for a boolean option. */
static const conf_opt *negated_bool(const conf_table *t, const char *name, size_t len) {
    if (len <= 3 || strncmp(name, "no-", 3) != 0)
        return NULL;
    const conf_opt *o = find_opt(t, name + 3, len - 3);
    return o && o->type == CONF_BOOL ? o : NULL;
}

static int take_flag(const conf_table *t, cmdline *c, int argc, char **argv, int *i,
                     afd_err *err) {
    const char *arg = argv[*i], *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const char *name = arg + 2, *value = eq ? eq + 1 : NULL;
    if (len == 6 && strncmp(name, "help", 4) == 0)
        return c->help = true, 0;
    const conf_opt *o = find_opt(t, name, len - 2);
    const conf_opt *neg = o ? NULL : negated_bool(t, name, len - 2);
    bool is_config = len == 8 && strncmp(name, "config", 6) == 0;
    if (!o && !neg && !is_config)
        return bad_flag(t, arg, len, err);
    if (neg && value)
        return afd_errf(err, AFD_E_FORMAT, "%.*s takes no value", (int)len, arg);
    if (!value && (neg || (o && o->type == CONF_BOOL)))
        value = neg ? "false" : "true", o = neg ? neg : o;
    else if (!value && *i + 1 >= argc)
        return afd_errf(err, AFD_E_FORMAT, "%.*s needs a value", (int)len, arg);
    else if (!value)
        value = argv[++*i];
    if (is_config && c->config)
        return afd_errf(err, AFD_E_FORMAT, "--config given twice");
    if (is_config)
        return c->config = value, 0;
    c->flags[c->n_flags++] = (flag_val){o, value};
    return 0;
}

static int scan_args(const conf_table *t, cmdline *c, int argc, char **argv, afd_err *err) {
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (only_pos || a[0] != '-' || strcmp(a, "-") == 0)
            c->pos[c->n_pos++] = a;
        else if (strcmp(a, "--") == 0)
            only_pos = true;
        else if (strcmp(a, "-h") == 0)
            c->help = true;
        else if (a[1] != '-')
            rc = afd_errf(err, AFD_E_FORMAT, "unknown flag %s (flags start with --)", a);
        else
            rc = take_flag(t, c, argc, argv, &i, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int apply_flag(const flag_val *f, void *cfg, bool *set, const conf_table *t,
                      afd_err *err) {
    char why[WHY_MAX], name[NAME_MAX_LEN + 3];
    conf_val v;
    int rc = value_from_text(f->o, f->text, &v, why, sizeof why);
    if (rc) {
        flag_name(f->o, name, sizeof name);
        return afd_errf(err, rc, "%s: %s", name, why);
    }
    field_store(f->o, cfg, &v);
    set[f->o - t->opts] = true;
    return 0;
}

static int apply_positional(const conf_table *t, const cmdline *c, void *cfg, bool *set,
                            afd_err *err) {
    const conf_opt *o = positional_opt(t);
    if (c->n_pos == 0)
        return 0;
    if (!o)
        return afd_errf(err, AFD_E_FORMAT, "unexpected argument \"%s\" (%s takes only flags)",
                        c->pos[0], t->prog);
    if (o->type == CONF_STR && c->n_pos > 1)
        return afd_errf(err, AFD_E_FORMAT, "unexpected argument \"%s\" (%s takes one <%s>)",
                        c->pos[1], t->prog, o->name);
    conf_val v = {0};
    if (o->type == CONF_STR)
        v.s = xstrdup(c->pos[0]);
    else {
        v.list = xcalloc((size_t)c->n_pos + 1, sizeof *v.list);
        for (; v.n < c->n_pos; v.n++)
            v.list[v.n] = xstrdup(c->pos[v.n]);
    }
    field_store(o, cfg, &v);
    set[o - t->opts] = true;
    return 0;
}

static int check_required(const conf_table *t, const void *cfg, const bool *set, afd_err *err) {
    for (int k = 0; k < t->n_opts; k++) {
        const conf_opt *o = &t->opts[k];
        bool empty = o->type == CONF_STR && !*(char *const *)cfield(cfg, o->offset);
        char name[NAME_MAX_LEN + 3];
        flag_name(o, name, sizeof name);
        if ((o->flags & CONF_REQUIRED) && (!set[k] || empty))
            return afd_errf(err, AFD_E_NOTFOUND, "%s: %s is required (flag %s or key \"%s\")",
                            t->prog, o->name, name, o->name);
    }
    return 0;
}

static int load_sources(const conf_table *t, void *cfg, const cmdline *c, bool *set,
                        afd_err *err) {
    int rc = apply_defaults(t, cfg, err);
    if (!rc && c->config)
        rc = apply_file(t, c->config, cfg, set, err);
    for (int k = 0; !rc && k < c->n_flags; k++)
        rc = apply_flag(&c->flags[k], cfg, set, t, err);
    if (!rc)
        rc = apply_positional(t, c, cfg, set, err);
    return rc ? rc : check_required(t, cfg, set, err);
}

int conf_load(const conf_table *t, void *cfg, int argc, char **argv, afd_err *err) {
    int rc = check_table(t, err);
    if (rc)
        return rc;
    for (int k = 0; k < t->n_opts; k++) /* conf_free is safe from here on */
        zero_field(&t->opts[k], cfg);
    size_t n = argc > 0 ? (size_t)argc : 1;
    cmdline c = {.flags = xcalloc(n, sizeof *c.flags), .pos = xcalloc(n, sizeof *c.pos)};
    bool *set = xcalloc((size_t)t->n_opts + 1, sizeof *set);
    rc = scan_args(t, &c, argc, argv, err);
    if (!rc && c.help) {
        conf_print_help(t, stdout);
        fflush(stdout);
        rc = CONF_HELP;
    } else if (!rc) {
        rc = load_sources(t, cfg, &c, set, err);
        if (rc)
            conf_free(t, cfg);
    }
    free(c.flags);
    free(c.pos);
    free(set);
    return rc;
}

void conf_free(const conf_table *t, void *cfg) {
    if (!t || !cfg)
        return;
    for (int k = 0; k < t->n_opts; k++)
        field_clear(&t->opts[k], cfg);
}

/* ---- help ---- */

static const char *type_label(const conf_opt *o) {
    switch (o->type) {
    case CONF_BOOL: return "";
    case CONF_INT:
    case CONF_I64: return " N";
    case CONF_DOUBLE: return " X";
    case CONF_SIZE: return " SIZE";
    case CONF_MS:
    case CONF_US: return " DURATION";
    case CONF_STR: return " STR";
    case CONF_ENUM: return " CHOICE";
    case CONF_STRLIST: return " A,B,..";
    }
    return "";
}

static void help_details(const conf_opt *o, char *buf, size_t n) {
    size_t len = 0;
    char lo[64], hi[64], list[200];
    buf[0] = 0;
    if (o->flags & CONF_REQUIRED)
        len += (size_t)snprintf(buf + len, n - len, "; required");
    else if (o->def && !(o->flags & CONF_SECRET))
        len += (size_t)snprintf(buf + len, n - len, "; default %s", o->def[0] ? o->def : "\"\"");
    if (has_bounds(o) && len < n) {
        fmt_bound(o, o->min, lo, sizeof lo);
        fmt_bound(o, o->max, hi, sizeof hi);
        len += (size_t)snprintf(buf + len, n - len, "; %s..%s", lo, hi);
    }
    if (o->type == CONF_ENUM && len < n) {
        enum_list(o, list, sizeof list);
        len += (size_t)snprintf(buf + len, n - len, "; one of: %s", list);
    }
    if (o->type == CONF_MS && len < n)
        snprintf(buf + len, n - len, "; bare numbers in ms");
    if (o->type == CONF_US && len < n)
        snprintf(buf + len, n - len, "; bare numbers in us");
}

static void help_line(FILE *f, const char *left, const char *help, const char *details) {
    if (strlen(left) <= 28)
        fprintf(f, "  %-28s  %s%s\n", left, help, details);
    else
        fprintf(f, "  %s\n  %-28s  %s%s\n", left, "", help, details);
}

static void help_opt(FILE *f, const conf_opt *o) {
    char left[2 * NAME_MAX_LEN + 32], name[NAME_MAX_LEN + 3], details[400];
    flag_name(o, name, sizeof name);
    if (o->type == CONF_BOOL)
        snprintf(left, sizeof left, "%s, --no-%s", name, name + 2);
    else if (o->flags & CONF_POSITIONAL)
        snprintf(left, sizeof left, "%s%s, <%s>%s", name, type_label(o), o->name,
                 o->type == CONF_STRLIST ? "..." : "");
    else
        snprintf(left, sizeof left, "%s%s", name, type_label(o));
    help_details(o, details, sizeof details);
    help_line(f, left, o->help ? o->help : "", details);
}

void conf_print_help(const conf_table *t, FILE *f) {
    const conf_opt *pos = positional_opt(t);
    fprintf(f, "Usage: %s [--config FILE] [options]", t->prog);
    if (pos)
        fprintf(f, " [<%s>%s]", pos->name, pos->type == CONF_STRLIST ? "..." : "");
    fprintf(f, "\n%s\n\nOptions (config file keys are the names with underscores):\n",
            t->summary ? t->summary : "");
    help_line(f, "--config FILE", "JSON object of settings, applied before the flags", "");
    help_line(f, "-h, --help", "print this help and exit", "");
    for (int k = 0; k < t->n_opts; k++)
        help_opt(f, &t->opts[k]);
    fprintf(f, "\nSizes: 4096, 512k, 8gb, 1.5GiB (k = 1024). Durations: 250ms, 2s, 1.5m, 1h.\n");
    if (t->usage_examples)
        fprintf(f, "\nExamples:\n%s%s", t->usage_examples,
                t->usage_examples[0] && t->usage_examples[strlen(t->usage_examples) - 1] == '\n'
                    ? ""
                    : "\n");
}

/* ---- effective config ---- */

static json_t *json_list(char *const *list, int n) {
    json_t *a = json_array();
    for (int k = 0; k < n; k++)
        json_array_append_new(a, json_string(list[k]));
    return a;
}

static json_t *enum_json(const conf_opt *o, int idx) {
    for (int k = 0; o->choices[k]; k++)
        if (k == idx)
            return json_string(o->choices[k]);
    return json_integer(idx); /* not a valid index: show it as is */
}

static json_t *opt_json(const conf_opt *o, const void *cfg) {
    const void *p = cfield(cfg, o->offset);
    switch (o->type) {
    case CONF_BOOL: return json_boolean(*(const bool *)p);
    case CONF_INT: return json_integer(*(const int *)p);
    case CONF_I64:
    case CONF_MS:
    case CONF_US: return json_integer(*(const int64_t *)p);
    case CONF_SIZE:
        if (*(const uint64_t *)p > INT64_MAX)
            return json_real((double)*(const uint64_t *)p);
        return json_integer((json_int_t) * (const uint64_t *)p);
    case CONF_DOUBLE: return json_real(*(const double *)p);
    case CONF_ENUM: return enum_json(o, *(const int *)p);
    case CONF_STR: return *(char *const *)p ? json_string(*(char *const *)p) : json_null();
    case CONF_STRLIST:
        return json_list(*(char **const *)p, *(const int *)cfield(cfg, o->count_offset));
    }
    return json_null();
}

static json_t *opt_json_masked(const conf_opt *o, const void *cfg, int mask) {
    if (!mask || !(o->flags & CONF_SECRET))
        return opt_json(o, cfg);
    bool unset = (o->type == CONF_STR && !*(char *const *)cfield(cfg, o->offset));
    return unset ? json_null() : json_string("***");
}

static json_t *conf_json(const conf_table *t, const void *cfg, int mask, int from, int to) {
    json_t *obj = json_object();
    for (int k = from; k < to; k++) {
        json_t *v = opt_json_masked(&t->opts[k], cfg, mask);
        json_object_set_new(obj, t->opts[k].name, v ? v : json_null());
    }
    return obj;
}

char *conf_dump_json(const conf_table *t, const void *cfg, int mask_secrets) {
    json_t *obj = conf_json(t, cfg, mask_secrets, 0, t->n_opts);
    char *s = json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(obj);
    if (!s)
        abort();
    return s;
}

/* Size of one "key":value member in the compact dump. */
static size_t member_len(const conf_table *t, const void *cfg, int k) {
    json_t *obj = conf_json(t, cfg, 1, k, k + 1);
    char *s = json_dumps(obj, JSON_COMPACT);
    size_t n = s ? strlen(s) - 2 : 0;
    free(s);
    json_decref(obj);
    return n;
}

#define CONF_LOG_PART 1700 /* below log.h's message buffer, with room for escaping */

void conf_log_effective(const conf_table *t, const void *cfg) {
    int *starts = xcalloc((size_t)t->n_opts + 2, sizeof *starts), parts = 0;
    size_t len = 0;
    for (int k = 0; k < t->n_opts; k++) {
        size_t m = member_len(t, cfg, k) + 1;
        if (k == 0 || len + m > CONF_LOG_PART)
            starts[parts++] = k, len = 0;
        len += m;
    }
    starts[parts] = t->n_opts;
    if (parts == 0)
        starts[parts++] = 0;
    for (int p = 0; p < parts; p++) {
        json_t *obj = conf_json(t, cfg, 1, starts[p], starts[p + 1]);
        char *s = json_dumps(obj, JSON_COMPACT);
        if (parts == 1)
            log_info("effective config: %s", s ? s : "{}");
        else
            log_info("effective config (part %d/%d): %s", p + 1, parts, s ? s : "{}");
        free(s);
        json_decref(obj);
    }
    free(starts);
}
