/* sla_conf.c: the SLA settings: the conf rows (sla.h), the defaults, the bounds check. */
#include <stdlib.h>

#include "common/base/log.h"
#include "router/sla.h"

const char *const sla_ctx_estimate_names[] = {"midpoint", "worst", NULL};

typedef struct sla_only {
    sla_config sla;
} sla_only;

static const conf_opt sla_opts[] = {SLA_CONF_OPTS(sla_only, sla)};

const conf_table sla_conf_table = {
    .prog = "sla",
    .summary = "the router's TPOT SLA settings (keys of the router's config)",
    .opts = sla_opts,
    .n_opts = (int)(sizeof sla_opts / sizeof sla_opts[0]),
};

_Static_assert(sizeof sla_opts / sizeof sla_opts[0] == SLA_CONF_N, "SLA_CONF_N");

void sla_config_default(sla_config *c) {
    char *argv[] = {(char *)"sla", NULL};
    afd_err err = {0};
    if (conf_load(&sla_conf_table, c, 1, argv, &err) != 0) { /* a table bug: tests catch it */
        log_error("sla: default config: %s", err.msg);
        abort();
    }
}

/* A number against a row's bounds. */
static int check_num(const conf_opt *o, double v, afd_err *err) {
    if (!(v >= o->min && v <= o->max))
        return afd_errf(err, AFD_E_FORMAT, "%s: %g is outside %g .. %g", o->name, v, o->min,
                        o->max);
    return 0;
}

int sla_config_check(const sla_config *c, afd_err *err) {
    for (int k = 0; k < SLA_CONF_N; k++) {
        const conf_opt *o = &sla_opts[k];
        const char *p = (const char *)c + o->offset;
        double v;
        switch (o->type) {
        case CONF_DOUBLE:
            v = *(const double *)(const void *)p;
            break;
        case CONF_MS:
            v = (double)*(const int64_t *)(const void *)p;
            break;
        case CONF_INT:
            v = *(const int *)(const void *)p;
            break;
        case CONF_ENUM:
            v = *(const int *)(const void *)p;
            break;
        default:
            continue;
        }
        if (o->type == CONF_ENUM) {
            if (v != SLA_CTX_MIDPOINT && v != SLA_CTX_WORST)
                return afd_errf(err, AFD_E_FORMAT, "%s: %g is not a choice", o->name, v);
        } else if (check_num(o, v, err)) {
            return AFD_E_FORMAT;
        }
    }
    return 0;
}
