/* cli_util.c: option parsing and output helpers shared by afd-plan's subcommands. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tools/plan/cli.h"

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("afd-plan: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

int cli_long(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end != s && (*end == 'k' || *end == 'K') && end[1] == '\0' && v <= hi / 1024) {
        v *= 1024;
        end++;
    }
    if (end == s || *end != '\0' || errno || v < lo || v > hi) {
        cli_fail("%s: \"%s\" is not an integer in [%ld, %ld] (a k suffix means x1024)", opt, s,
                 lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_double(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno || !isfinite(v) || v < lo || v > hi) {
        cli_fail("%s: \"%s\" is not a number in [%g, %g]", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_load_model(const char *path, plan_model *m) {
    afd_err err = {0};
    if (!path) {
        cli_fail("--model CONFIG is required (a config.json or a directory holding one; "
                 "see models/)");
        return -1;
    }
    if (plan_model_load(path, m, &err) < 0) {
        cli_fail("%s", err.msg);
        return -1;
    }
    return 0;
}

int cli_load_hw(const char *path, plan_hw_table *t) {
    afd_err err = {0};
    plan_hw_builtin(t);
    if (path && plan_hw_load(t, path, &err) < 0) {
        cli_fail("%s", err.msg);
        return -1;
    }
    return 0;
}

json_t *cli_num(double v) {
    if (!isfinite(v))
        return json_null();
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        return json_integer((json_int_t)v);
    return json_real(v);
}

int cli_print_json(json_t *obj) {
    int rc = json_dumpf(obj, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
    fputc('\n', stdout);
    json_decref(obj);
    return rc == 0 ? 0 : 1;
}
