/* cmd_cost.c: `afd-plan cost` — theoretical decoding cost per token (cost.h). */
#include <getopt.h>
#include <string.h>

#include "tools/plan/cli.h"
#include "tools/plan/cost.h"

typedef struct cost_opts {
    const char *model, *hardware;
    double context;
    bool json;
} cost_opts;

static void cost_usage(FILE *f) {
    fprintf(f,
        "usage: afd-plan cost --model CONFIG [--context N] [--hardware FILE] [--json]\n"
        "Theoretical decoding cost per token, all weights and KV cache 8-bit (Step-3 paper §4):\n"
        "  kv_bytes     = context x layers x KV bytes per position per layer\n"
        "  attn_flops   = context x layers x 2 x query heads x (QK dim + V dim), as computed\n"
        "                 (MLA in absorbed form: latent+rope width for both)\n"
        "  linear_flops = 2 x attention projection parameters per layer x layers\n"
        "  ffn_flops    = 2 x activated FFN parameters (dense layers, top-k + shared experts)\n"
        "  attention USD = max(attn_flops x USD/FLOP, kv_bytes x USD/byte)\n"
        "                  + linear_flops x USD/FLOP;  FFN USD = ffn_flops x USD/FLOP\n"
        "USD/FLOP and USD/byte come from price per hour and peak rates (FP8 where present).\n\n"
        "  --model CONFIG    config.json (or its directory) of the model\n"
        "  --context N       context length in tokens (default 8192; 8k = 8192)\n"
        "  --hardware FILE   JSON accelerators to add or replace (see afd-plan hardware --help)\n"
        "  --json            one JSON object: kv_bytes, attn_flops, linear_flops, ffn_flops,\n"
        "                    attn_intensity, params, cost_usd_per_mtok {HW: {attention, ffn,\n"
        "                    total}}, best_afd {attention_hw, ffn_hw, usd_per_mtok}\n");
}

static int cost_parse(int argc, char **argv, cost_opts *o) {
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"context", required_argument, 0, 'c'},
                                       {"hardware", required_argument, 0, 'w'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    long ctx = 8192;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'c':
            if (cli_long("--context", optarg, 1, 1L << 40, &ctx) < 0)
                return 2;
            break;
        case 'w': o->hardware = optarg; break;
        case 'j': o->json = true; break;
        case 'h': cost_usage(stdout); return 0;
        default: cost_usage(stderr); return 2;
        }
    }
    if (optind < argc)
        return cli_fail("cost: unexpected argument \"%s\"", argv[optind]);
    o->context = (double)ctx;
    return -1;
}

static json_t *cost_params_json(const plan_model *m) {
    plan_params p;
    plan_model_params(m, &p);
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "total", cli_num(p.total), "active",
                     cli_num(p.active), "attention", cli_num(p.attention), "ffn_total",
                     cli_num(p.ffn_total), "ffn_active", cli_num(p.ffn_active), "embedding",
                     cli_num(p.embedding));
}

static json_t *cost_hw_json(const plan_token_cost *c, const plan_hw_table *t, json_t **units) {
    json_t *costs = json_object();
    *units = json_object();
    for (int i = 0; i < t->n; i++) {
        plan_hw_cost hc;
        plan_hw_cost_compute(c, &t->hw[i], &hc);
        json_object_set_new(costs, t->hw[i].name,
                            json_pack("{s:o,s:o,s:o,s:s}", "attention", cli_num(hc.attention * 1e6),
                                      "ffn", cli_num(hc.ffn * 1e6), "total",
                                      cli_num(hc.total * 1e6), "attention_bound",
                                      hc.attn_bound ? "compute" : "memory"));
        json_object_set_new(*units, t->hw[i].name,
                            json_pack("{s:o,s:o,s:o}", "usd_per_flop",
                                      cli_num(plan_hw_usd_per_flop(&t->hw[i])), "usd_per_byte",
                                      cli_num(plan_hw_usd_per_byte(&t->hw[i])), "roofline",
                                      cli_num(plan_hw_roofline(&t->hw[i]))));
    }
    return costs;
}

static int cost_json(const plan_model *m, const plan_token_cost *c, const plan_hw_table *t) {
    plan_afd_choice best;
    json_t *units, *costs = cost_hw_json(c, t, &units);
    plan_best_afd(c, t, &best);
    plan_hw_cost ha, hf;
    plan_hw_cost_compute(c, &t->hw[best.attention_hw], &ha);
    plan_hw_cost_compute(c, &t->hw[best.ffn_hw], &hf);
    json_t *o = json_pack(
        "{s:s,s:s,s:i,s:i,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "model", m->name,
        "attention_kind", plan_attn_name(m->attn), "layers", m->layers, "hidden", m->hidden,
        "context", cli_num(c->context), "kv_bytes", cli_num(c->kv_bytes), "attn_flops",
        cli_num(c->attn_flops), "linear_flops", cli_num(c->linear_flops), "ffn_flops",
        cli_num(c->ffn_flops), "attn_intensity", cli_num(c->attn_intensity), "model_sparsity",
        cli_num(plan_model_sparsity(m)), "params", cost_params_json(m), "hardware", units,
        "cost_usd_per_mtok", costs, "best_afd",
        json_pack("{s:s,s:s,s:o,s:o,s:o}", "attention_hw", t->hw[best.attention_hw].name,
                  "ffn_hw", t->hw[best.ffn_hw].name, "usd_per_mtok", cli_num(best.usd * 1e6),
                  "attention", cli_num(ha.attention * 1e6), "ffn", cli_num(hf.ffn * 1e6)));
    return cli_print_json(o);
}

static void cost_text(const plan_model *m, const plan_token_cost *c, const plan_hw_table *t) {
    plan_params p;
    plan_afd_choice best;
    plan_model_params(m, &p);
    plan_best_afd(c, t, &best);
    printf("model %s (%s attention), %d layers, hidden %d; context %.0f tokens\n", m->name,
           plan_attn_name(m->attn), m->layers, m->hidden, c->context);
    printf("parameters: %.1f B total, %.1f B activated per token; MoE sparsity %.4f\n",
           p.total / 1e9, p.active / 1e9, plan_model_sparsity(m));
    printf("per decoded token (8-bit weights and KV):\n");
    printf("  KV cache read             %12.4e bytes\n", c->kv_bytes);
    printf("  attention w/o linear      %12.4e FLOPs  (intensity %.1f FLOPs/byte)\n",
           c->attn_flops, c->attn_intensity);
    printf("  linear around attention   %12.4e FLOPs\n", c->linear_flops);
    printf("  FFN (activated)           %12.4e FLOPs\n\n", c->ffn_flops);
    printf("USD per 1M tokens  attention      FFN   one-hw total  attention is\n");
    for (int i = 0; i < t->n; i++) {
        plan_hw_cost hc;
        plan_hw_cost_compute(c, &t->hw[i], &hc);
        printf("  %-14s %10.4f %10.4f %12.4f   %s-bound\n", t->hw[i].name, hc.attention * 1e6,
               hc.ffn * 1e6, hc.total * 1e6, hc.attn_bound ? "compute" : "memory");
    }
    printf("best AFD: attention on %s + FFN on %s = %.4f USD per 1M tokens\n",
           t->hw[best.attention_hw].name, t->hw[best.ffn_hw].name, best.usd * 1e6);
}

int cmd_cost(int argc, char **argv) {
    cost_opts o = {0};
    plan_model m;
    plan_hw_table t;
    plan_token_cost c;
    int rc = cost_parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (cli_load_model(o.model, &m) < 0 || cli_load_hw(o.hardware, &t) < 0)
        return 2;
    plan_token_cost_compute(&m, o.context, &c);
    if (o.json)
        return cost_json(&m, &c, &t);
    cost_text(&m, &c, &t);
    return 0;
}
