/* cmd_plan.c: `afd-plan plan` — pool sizing from a measured profile (planner.h). */
#include <getopt.h>
#include <string.h>

#include "tools/plan/cli.h"
#include "tools/plan/planner.h"

#define PLAN_FIT_WARN 0.15 /* fits worse than this relative error are flagged */

typedef struct pl_opts {
    const char *model, *profile;
    plan_search_opts s;
    bool json;
} pl_opts;

static void pl_usage(FILE *f) {
    fprintf(f,
        "usage: afd-plan plan --model CONFIG --profile FILE [options]\n"
        "Chooses attention instances A, FFN instances F, micro-batches m and batch b (sequences\n"
        "per micro-batch per attention instance) that maximise tokens/s per machine (or per\n"
        "dollar) while TPOT = layers x max(sum of stages, m x slowest stage) + step overhead\n"
        "stays within the target; stages per layer are attention, A2F + F2A, FFN (3-stage) or\n"
        "attention, A2F, FFN, F2A (4-stage). docs/planning.md derives the model.\n\n"
        "  --model CONFIG      config.json of the model served (layers, hidden, top-k)\n"
        "  --profile FILE      measured profile (format afd-profile v1, bench/profiles/):\n"
        "                      attention us per layer vs (batch, context), FFN us per layer vs\n"
        "                      tokens, link us vs bytes, prices and capacity limits\n"
        "  --tpot-ms T         TPOT target, milliseconds (default 50)\n"
        "  --context N         average context length per sequence, tokens (default 4096)\n"
        "  --stages 3|4        pipeline stages (default 3)\n"
        "  --objective machine|dollar   maximise tokens/s per machine or per USD (machine)\n"
        "  --max-attn N, --max-ffn N    instance counts searched (default 64 each)\n"
        "  --max-micro N       micro-batches searched (default 8)\n"
        "  --max-batch N       sequences per micro-batch per attention instance (2^20)\n"
        "  --attn N, --ffn N, --micro N fix a value instead of searching it\n"
        "  --json              one JSON object: plan {attention_instances, ffn_instances,\n"
        "                      micro_batches, batch_per_micro_batch, total_batch}, predicted\n"
        "                      {tpot_ms, tokens_per_s, tokens_per_s_per_machine, usd_per_mtok,\n"
        "                      stage_us, bottleneck}, fits, warnings\n"
        "exit status 1 when no layout meets the target.\n");
}

static int pl_int(const char *opt, int *dst, long lo, long hi) {
    long v;
    if (cli_long(opt, optarg, lo, hi, &v) < 0)
        return 2;
    *dst = (int)v;
    return -1;
}

static int pl_objective(pl_opts *o) {
    if (strcmp(optarg, "machine") == 0)
        o->s.objective = PLAN_PER_MACHINE;
    else if (strcmp(optarg, "dollar") == 0)
        o->s.objective = PLAN_PER_DOLLAR;
    else
        return cli_fail("--objective: \"%s\" is not machine or dollar", optarg);
    return -1;
}

static int pl_option(int c, pl_opts *o) {
    long v;
    switch (c) {
    case 'm': o->model = optarg; return -1;
    case 'p': o->profile = optarg; return -1;
    case 'j': o->json = true; return -1;
    case 't':
        if (cli_double("--tpot-ms", optarg, 1e-3, 1e7, &o->s.tpot_us) < 0)
            return 2;
        o->s.tpot_us *= 1000;
        return -1;
    case 'c':
        if (cli_long("--context", optarg, 0, 1L << 40, &v) < 0)
            return 2;
        o->s.context = (double)v;
        return -1;
    case 's': return pl_int("--stages", &o->s.stages, 3, 4);
    case 'o': return pl_objective(o);
    case 'A': return pl_int("--max-attn", &o->s.max_attn, 1, 4096);
    case 'F': return pl_int("--max-ffn", &o->s.max_ffn, 1, 4096);
    case 'M': return pl_int("--max-micro", &o->s.max_micro, 1, 64);
    case 'B': return cli_long("--max-batch", optarg, 1, 1L << 40, &o->s.max_batch) < 0 ? 2 : -1;
    case 'a': return pl_int("--attn", &o->s.fix_attn, 1, 4096);
    case 'f': return pl_int("--ffn", &o->s.fix_ffn, 1, 4096);
    case 'u': return pl_int("--micro", &o->s.fix_micro, 1, 64);
    case 'h': pl_usage(stdout); return 0;
    default: pl_usage(stderr); return 2;
    }
}

static int pl_parse(int argc, char **argv, pl_opts *o) {
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},     {"profile", required_argument, 0, 'p'},
        {"tpot-ms", required_argument, 0, 't'},   {"context", required_argument, 0, 'c'},
        {"stages", required_argument, 0, 's'},    {"objective", required_argument, 0, 'o'},
        {"max-attn", required_argument, 0, 'A'},  {"max-ffn", required_argument, 0, 'F'},
        {"max-micro", required_argument, 0, 'M'}, {"max-batch", required_argument, 0, 'B'},
        {"attn", required_argument, 0, 'a'},      {"ffn", required_argument, 0, 'f'},
        {"micro", required_argument, 0, 'u'},     {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    int c, rc;
    plan_search_opts_default(&o->s);
    optind = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1)
        if ((rc = pl_option(c, o)) >= 0)
            return rc;
    if (optind < argc)
        return cli_fail("plan: unexpected argument \"%s\"", argv[optind]);
    if (!o->profile)
        return cli_fail("plan: --profile FILE is required (format in docs/planning.md; "
                        "example in bench/profiles/example.json)");
    return -1;
}

/* Appends a warning when v lies outside the sampled range [r0, r1]. */
static void pl_range_warn(json_t *w, const char *what, double v, const double *r) {
    if (v < r[0] * 0.999 || v > r[1] * 1.001)
        json_array_append_new(w, json_sprintf("%s %.6g is outside the profiled range "
                                              "[%.6g, %.6g]: the fit is extrapolated",
                                              what, v, r[0], r[1]));
}

static void pl_fit_warn(json_t *w, const char *what, const plan_fit *f) {
    if (f->max_rel_err > PLAN_FIT_WARN)
        json_array_append_new(w, json_sprintf("%s fit is off by up to %.0f%% on its samples; "
                                              "the model may not suit this hardware",
                                              what, f->max_rel_err * 100));
}

static json_t *pl_warnings(const plan_profile *p, const plan_search_opts *s,
                           const plan_estimate *e) {
    json_t *w = json_array();
    double b = (double)e->l.batch, fan = e->l.n_attn > e->l.n_ffn ? e->l.n_attn : e->l.n_ffn;
    pl_fit_warn(w, "attention", &p->attn);
    pl_fit_warn(w, "ffn", &p->ffn);
    pl_fit_warn(w, "link", &p->link);
    pl_range_warn(w, "attention batch", b, p->attn_batch_range);
    pl_range_warn(w, "context", s->context, p->attn_ctx_range);
    pl_range_warn(w, "ffn tokens", (double)e->l.n_attn * b, p->ffn_tokens_range);
    pl_range_warn(w, "a2f bytes", b * e->a2f_bytes * fan, p->link_bytes_range);
    pl_range_warn(w, "f2a bytes", b * e->f2a_bytes * fan, p->link_bytes_range);
    return w;
}

static json_t *pl_fits_json(const plan_profile *p) {
    return json_pack(
        "{s:{s:o,s:o,s:o,s:o,s:i},s:{s:o,s:o,s:o,s:i,s:i},s:{s:o,s:o,s:o,s:i}}", "attention",
        "us", cli_num(p->attn.coef[0]), "us_per_seq", cli_num(p->attn.coef[1]),
        "us_per_seq_ctx_token", cli_num(p->attn.coef[2]), "max_rel_err",
        cli_num(p->attn.max_rel_err), "samples", p->attn.n, "ffn", "us",
        cli_num(p->ffn.coef[0]), "us_per_token", cli_num(p->ffn.coef[1]), "max_rel_err",
        cli_num(p->ffn.max_rel_err), "samples", p->ffn.n, "shards", p->ffn_shards, "link", "us",
        cli_num(p->link.coef[0]), "us_per_byte", cli_num(p->link.coef[1]), "max_rel_err",
        cli_num(p->link.max_rel_err), "samples", p->link.n);
}

static json_t *pl_plan_json(const plan_estimate *e) {
    const plan_layout *l = &e->l;
    long per_inst = l->batch * l->micro;
    return json_pack("{s:i,s:i,s:i,s:I,s:I,s:I,s:I}", "attention_instances", l->n_attn,
                     "ffn_instances", l->n_ffn, "micro_batches", l->micro,
                     "batch_per_micro_batch", (json_int_t)l->batch,
                     "sequences_per_attention_instance", (json_int_t)per_inst, "total_batch",
                     (json_int_t)per_inst * l->n_attn, "ffn_tokens_per_micro_batch",
                     (json_int_t)l->batch * l->n_attn);
}

static json_t *pl_predicted_json(const plan_estimate *e) {
    return json_pack(
        "{s:o,s:o,s:o,s:o,s:o,s:i,s:{s:o,s:o,s:o,s:o,s:o},s:s,s:s}", "tpot_ms",
        cli_num(e->tpot_us / 1000), "tokens_per_s", cli_num(e->tokens_per_s),
        "tokens_per_s_per_machine", cli_num(e->per_machine), "usd_per_hour",
        cli_num(e->usd_per_hour), "usd_per_mtok", cli_num(e->usd_per_mtok), "machines",
        e->machines, "stage_us", "attention", cli_num(e->t_attn), "a2f", cli_num(e->t_a2f),
        "ffn", cli_num(e->t_ffn), "f2a", cli_num(e->t_f2a), "layer_cycle", cli_num(e->t_cycle),
        "bottleneck", e->bottleneck, "batch_limited_by", e->limit);
}

static int pl_json(const pl_opts *o, const plan_model *m, const plan_profile *p,
                   const plan_estimate *e, long evaluated) {
    return cli_print_json(json_pack(
        "{s:s,s:s,s:o,s:o,s:i,s:s,s:o,s:o,s:{s:o,s:o},s:o,s:I,s:o}", "model", m->name,
        "profile", o->profile, "tpot_target_ms", cli_num(o->s.tpot_us / 1000), "context",
        cli_num(o->s.context), "stages", o->s.stages, "objective",
        o->s.objective == PLAN_PER_DOLLAR ? "dollar" : "machine", "plan", pl_plan_json(e),
        "predicted", pl_predicted_json(e), "wire_bytes_per_token", "a2f",
        cli_num(e->a2f_bytes), "f2a", cli_num(e->f2a_bytes), "fits", pl_fits_json(p),
        "layouts_evaluated", (json_int_t)evaluated, "warnings", pl_warnings(p, &o->s, e)));
}

static void pl_text(const pl_opts *o, const plan_model *m, const plan_profile *p,
                    const plan_estimate *e) {
    const plan_layout *l = &e->l;
    json_t *w = pl_warnings(p, &o->s, e);
    size_t i;
    json_t *v;
    printf("model %s, %d layers; profile %s (%s on %s)\n", m->name, m->layers, o->profile,
           p->model[0] ? p->model : "?", p->hardware[0] ? p->hardware : "?");
    printf("target TPOT %.2f ms at context %.0f, %d-stage pipeline, best tokens/s per %s\n\n",
           o->s.tpot_us / 1000, o->s.context, o->s.stages,
           o->s.objective == PLAN_PER_DOLLAR ? "dollar" : "machine");
    printf("plan: %dA%dF, %d micro-batches of %ld sequences per attention instance\n",
           l->n_attn, l->n_ffn, l->micro, l->batch);
    printf("      total batch %ld; the FFN pool sees %ld tokens per micro-batch\n",
           l->batch * l->micro * l->n_attn, l->batch * l->n_attn);
    printf("per layer: attention %.1f us, A2F %.1f us, FFN %.1f us, F2A %.1f us; cycle %.1f us "
           "(bottleneck: %s; batch limited by %s)\n", e->t_attn, e->t_a2f, e->t_ffn, e->t_f2a,
           e->t_cycle, e->bottleneck, e->limit);
    printf("predicted: TPOT %.2f ms, %.0f tokens/s, %.1f tokens/s per machine (%d machines), "
           "%.4f USD per 1M tokens\n", e->tpot_us / 1000, e->tokens_per_s, e->per_machine,
           e->machines, e->usd_per_mtok);
    json_array_foreach(w, i, v) printf("warning: %s\n", json_string_value(v));
    json_decref(w);
}

int cmd_plan(int argc, char **argv) {
    pl_opts o = {0};
    plan_model m;
    plan_profile p;
    plan_estimate best;
    afd_err err = {0};
    long evaluated = 0;
    int rc = pl_parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (cli_load_model(o.model, &m) < 0)
        return 2;
    if (plan_profile_load(o.profile, &p, &err) < 0)
        return cli_fail("%s", err.msg);
    if (plan_search(&m, &p, &o.s, &best, &evaluated, &err) < 0) {
        cli_fail("%s", err.msg);
        return err.code == AFD_E_NOTFOUND ? 1 : 2;
    }
    if (o.json)
        return pl_json(&o, &m, &p, &best, evaluated);
    pl_text(&o, &m, &p, &best);
    return 0;
}
