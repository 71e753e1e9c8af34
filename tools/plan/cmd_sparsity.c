/* cmd_sparsity.c: `afd-plan sparsity` — network-limited MoE sparsity and FFN batch sizes. */
#include <getopt.h>
#include <math.h>

#include "tools/plan/cli.h"
#include "tools/plan/sparsity.h"

typedef struct sp_opts {
    const char *model, *hardware;
    double tpot_ms;
    plan_net_opts net;
    bool json;
} sp_opts;

static void sp_usage(FILE *f) {
    fprintf(f,
        "usage: afd-plan sparsity --model CONFIG [--tpot-ms T] [--stages S] [--dispatch-bytes D]\n"
        "                         [--combine-bytes C] [--hardware FILE] [--json]\n"
        "FFN-side limits of an accelerator (Step-3 paper §5.3-5.4). With FLOP/s F (FP8 where\n"
        "present), memory bandwidth bw, network bandwidth net, hidden H and L layers:\n"
        "  B_dense >= F / bw / 2                  tokens per FFN batch to reach the roofline\n"
        "  B_MoE    = B_dense / S_model           the same for a MoE of sparsity S_model\n"
        "  S_model >= H F L / (net bw budget)      budget = 2 (T / S) / (D + C): 11.1 ms for\n"
        "                                          T = 50 ms, S = 3, D = 1 (FP8), C = 2 (BF16)\n"
        "S_model = activated / total expert parameters of a MoE layer, shared experts counted\n"
        "in both ((k + 1) / (E + 1) for one shared expert of expert size).\n\n"
        "  --model CONFIG        config.json (or its directory)\n"
        "  --tpot-ms T           TPOT target in milliseconds (default 50)\n"
        "  --stages S            pipeline stages sharing T (default 3)\n"
        "  --dispatch-bytes D    bytes per hidden element attention -> FFN (default 1)\n"
        "  --combine-bytes C     bytes per hidden element FFN -> attention (default 2)\n"
        "  --hardware FILE       JSON accelerators to add or replace\n"
        "  --json                one JSON object: model_sparsity, min_sparsity {HW: S},\n"
        "                        b_dense {HW: n}, b_moe {HW: n}, fits {HW: bool},\n"
        "                        min_top_k {HW: k}, roofline {HW: FLOPs/byte}, net_budget_ms\n");
}

static int sp_option(int c, sp_opts *o) {
    long v;
    switch (c) {
    case 'm': o->model = optarg; return -1;
    case 'w': o->hardware = optarg; return -1;
    case 'j': o->json = true; return -1;
    case 't': return cli_double("--tpot-ms", optarg, 1e-3, 1e7, &o->tpot_ms) < 0 ? 2 : -1;
    case 's':
        if (cli_long("--stages", optarg, 1, 16, &v) < 0)
            return 2;
        o->net.stages = (int)v;
        return -1;
    case 'd':
        return cli_double("--dispatch-bytes", optarg, 0.125, 8, &o->net.dispatch_bytes) < 0 ? 2
                                                                                           : -1;
    case 'c':
        return cli_double("--combine-bytes", optarg, 0.125, 8, &o->net.combine_bytes) < 0 ? 2
                                                                                         : -1;
    case 'h': sp_usage(stdout); return 0;
    default: sp_usage(stderr); return 2;
    }
}

static int sp_parse(int argc, char **argv, sp_opts *o) {
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"tpot-ms", required_argument, 0, 't'},
                                       {"stages", required_argument, 0, 's'},
                                       {"dispatch-bytes", required_argument, 0, 'd'},
                                       {"combine-bytes", required_argument, 0, 'c'},
                                       {"hardware", required_argument, 0, 'w'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c, rc;
    plan_net_opts_default(&o->net);
    o->tpot_ms = o->net.tpot_s * 1000;
    optind = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1)
        if ((rc = sp_option(c, o)) >= 0)
            return rc;
    if (optind < argc)
        return cli_fail("sparsity: unexpected argument \"%s\"", argv[optind]);
    o->net.tpot_s = o->tpot_ms / 1000;
    return -1;
}

static void sp_row(const plan_model *m, const plan_hw *h, const plan_net_opts *n, double *s_min,
                   double *b_dense, double *b_moe) {
    *s_min = plan_min_sparsity(h, m->hidden, m->layers, n);
    *b_dense = plan_b_dense(h);
    *b_moe = plan_b_moe(h, plan_model_sparsity(m));
}

static int sp_json(const plan_model *m, const plan_hw_table *t, const plan_net_opts *n) {
    json_t *smin = json_object(), *bd = json_object(), *bm = json_object();
    json_t *fits = json_object(), *topk = json_object(), *roof = json_object();
    double s_model = plan_model_sparsity(m);
    for (int i = 0; i < t->n; i++) {
        const plan_hw *h = &t->hw[i];
        double s, d, b;
        sp_row(m, h, n, &s, &d, &b);
        json_object_set_new(smin, h->name, cli_num(s));
        json_object_set_new(bd, h->name, cli_num(ceil(d - 1e-9)));
        json_object_set_new(bm, h->name, cli_num(ceil(b - 1e-9)));
        json_object_set_new(fits, h->name, json_boolean(s_model >= s));
        json_object_set_new(topk, h->name, json_integer(plan_min_top_k(m, s)));
        json_object_set_new(roof, h->name, cli_num(plan_hw_roofline(h)));
    }
    return cli_print_json(json_pack(
        "{s:s,s:i,s:i,s:i,s:i,s:i,s:o,s:o,s:o,s:i,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "model",
        m->name, "hidden", m->hidden, "layers", m->layers, "experts", m->n_experts, "top_k",
        m->top_k, "shared_experts", m->n_shared, "model_sparsity", cli_num(s_model), "tpot_ms",
        cli_num(n->tpot_s * 1000), "net_budget_ms", cli_num(plan_net_budget_s(n) * 1000),
        "stages", n->stages, "min_sparsity", smin, "fits", fits, "min_top_k", topk, "roofline",
        roof, "b_dense", bd, "b_moe", bm, "bytes_per_hidden_element",
        json_pack("{s:o,s:o}", "dispatch", cli_num(n->dispatch_bytes), "combine",
                  cli_num(n->combine_bytes))));
}

static void sp_text(const plan_model *m, const plan_hw_table *t, const plan_net_opts *n) {
    double s_model = plan_model_sparsity(m);
    printf("model %s: hidden %d, %d layers, %d of %d experts + %d shared -> sparsity %.4f\n",
           m->name, m->hidden, m->layers, m->top_k, m->n_experts, m->n_shared, s_model);
    printf("network budget: TPOT %.1f ms / %d stages, %g + %g bytes per hidden element "
           "-> %.2f ms\n\n", n->tpot_s * 1000, n->stages, n->dispatch_bytes, n->combine_bytes,
           plan_net_budget_s(n) * 1000);
    printf("accelerator  roofline  min sparsity  model fits  min top-k  B_dense  B_MoE\n");
    for (int i = 0; i < t->n; i++) {
        double s, d, b;
        sp_row(m, &t->hw[i], n, &s, &d, &b);
        printf("  %-10s %8.0f  %12.4f  %10s  %9d  %7.0f  %5.0f\n", t->hw[i].name,
               plan_hw_roofline(&t->hw[i]), s, s_model >= s ? "yes" : "NO",
               plan_min_top_k(m, s), ceil(d - 1e-9), ceil(b - 1e-9));
    }
}

int cmd_sparsity(int argc, char **argv) {
    sp_opts o = {0};
    plan_model m;
    plan_hw_table t;
    int rc = sp_parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (cli_load_model(o.model, &m) < 0 || cli_load_hw(o.hardware, &t) < 0)
        return 2;
    if (o.json)
        return sp_json(&m, &t, &o.net);
    sp_text(&m, &t, &o.net);
    return 0;
}
