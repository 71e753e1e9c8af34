/* hw.c: the accelerator table. See hw.h; numbers from the Step-3 paper's Table 4 and §5.4. */
#include "tools/plan/hw.h"

#include <stdio.h>
#include <string.h>

#include "tools/plan/jget.h"

#define GBIT_PER_S (1e9 / 8.0)

static const plan_hw hw_builtin[] = {
    {"H800", 2.00, 9.89e14, 1.98e15, 3.35e12, 8 * 400 * GBIT_PER_S},
    {"H20", 0.80, 1.48e14, 2.96e14, 4.00e12, 8 * 400 * GBIT_PER_S},
    {"A800", 0.75, 3.12e14, 0, 2.00e12, 8 * 200 * GBIT_PER_S},
    {"910B", 0.67, 2.80e14, 0, 1.60e12, 8 * 200 * GBIT_PER_S},
};

void plan_hw_builtin(plan_hw_table *t) {
    memset(t, 0, sizeof(*t));
    t->n = (int)(sizeof(hw_builtin) / sizeof(hw_builtin[0]));
    memcpy(t->hw, hw_builtin, sizeof(hw_builtin));
}

const plan_hw *plan_hw_find(const plan_hw_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->hw[i].name, name) == 0)
            return &t->hw[i];
    return NULL;
}

double plan_hw_flops(const plan_hw *h) { return h->fp8_flops > 0 ? h->fp8_flops : h->bf16_flops; }
double plan_hw_usd_per_flop(const plan_hw *h) { return h->usd_per_hour / 3600.0 / plan_hw_flops(h); }
double plan_hw_usd_per_byte(const plan_hw *h) { return h->usd_per_hour / 3600.0 / h->mem_bw; }
double plan_hw_roofline(const plan_hw *h) { return plan_hw_flops(h) / h->mem_bw; }

/* One accelerator entry of the file. */
static int hw_read_entry(const json_t *e, const char *what, plan_hw *h, afd_err *err) {
    const char *name = NULL;
    int rc;
    if (!json_is_object(e))
        return afd_errf(err, AFD_E_FORMAT, "%s: expected an object, got %s", what,
                        jget_type_name(e));
    memset(h, 0, sizeof(*h));
    if ((rc = jget_string(e, "name", JGET_REQUIRED, &name, what, err)) < 0)
        return rc;
    if (name[0] == '\0' || strlen(name) >= sizeof(h->name))
        return afd_errf(err, AFD_E_FORMAT, "%s: name must have 1 to %zu characters", what,
                        sizeof(h->name) - 1);
    snprintf(h->name, sizeof(h->name), "%s", name);
    if ((rc = jget_double(e, "usd_per_hour", JGET_REQUIRED, 1e-9, 1e9, &h->usd_per_hour, what,
                          err)) < 0 ||
        (rc = jget_double(e, "bf16_flops", JGET_REQUIRED, 1, 1e22, &h->bf16_flops, what, err)) <
            0 ||
        (rc = jget_double(e, "fp8_flops", JGET_OPTIONAL, 0, 1e22, &h->fp8_flops, what, err)) <
            0 ||
        (rc = jget_double(e, "mem_bytes_per_s", JGET_REQUIRED, 1, 1e18, &h->mem_bw, what,
                          err)) < 0 ||
        (rc = jget_double(e, "net_bytes_per_s", JGET_REQUIRED, 1, 1e18, &h->net_bw, what,
                          err)) < 0)
        return rc;
    return 0;
}

/* Replaces the row of the same name or appends. */
static int hw_merge(plan_hw_table *t, const plan_hw *h, const char *path, afd_err *err) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->hw[i].name, h->name) == 0) {
            t->hw[i] = *h;
            return 0;
        }
    if (t->n >= PLAN_MAX_HW)
        return afd_errf(err, AFD_E_LIMIT, "%s: more than %d accelerators", path, PLAN_MAX_HW);
    t->hw[t->n++] = *h;
    return 0;
}

static int hw_read_file(const json_t *root, const char *path, plan_hw_table *t, afd_err *err) {
    bool replace = false;
    int rc = jget_bool(root, "replace_builtin", JGET_OPTIONAL, &replace, path, err);
    if (rc < 0)
        return rc;
    json_t *arr = json_object_get(root, "accelerators");
    if (!json_is_array(arr))
        return afd_errf(err, AFD_E_FORMAT, "%s: key \"accelerators\": expected an array of "
                        "accelerator objects", path);
    if (replace)
        t->n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        char what[512];
        plan_hw h;
        snprintf(what, sizeof(what), "%s: accelerators[%zu]", path, i);
        if ((rc = hw_read_entry(e, what, &h, err)) < 0 || (rc = hw_merge(t, &h, path, err)) < 0)
            return rc;
    }
    if (t->n == 0)
        return afd_errf(err, AFD_E_FORMAT, "%s: the accelerator table is empty", path);
    return 0;
}

int plan_hw_load(plan_hw_table *t, const char *path, afd_err *err) {
    json_t *root = jget_load_file(path, PLAN_HW_FILE_MAX_BYTES, err);
    if (!root)
        return err ? err->code : AFD_E_FORMAT;
    plan_hw_table tmp = *t;
    int rc = hw_read_file(root, path, &tmp, err);
    json_decref(root);
    if (rc == 0)
        *t = tmp;
    return rc;
}
