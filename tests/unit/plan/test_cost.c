/* afd-plan cost model: the Step-3 paper's worked example and its Tables 2, 3, 5 and 6, the
 * accelerator table and its JSON extension, and hand-computed toy cases of each formula. */
#include "tests/unit/plan/plan_test.h"

#include "tools/plan/cost.c"
#include "tools/plan/hw.c"

#include <unistd.h>

TestSuite(plan_cost, .timeout = 10);

static void cost_of(const char *rel, double context, plan_token_cost *c) {
    plan_model m;
    plan_test_load(rel, &m);
    plan_token_cost_compute(&m, context, c);
}

/* ---- per-token counts: Step-3's worked example and Tables 2 (8K) and 3 (32K) ------------ */

Test(plan_cost, step3_worked_example_at_8k) {
    plan_token_cost c;
    cost_of("models/step3/config.json", 8192, &c);
    cr_assert_eq(c.kv_bytes, 8192.0 * 61 * 512, "KV %g", c.kv_bytes);
    cr_assert_eq(c.attn_flops, 8192.0 * 61 * 2 * 64 * 512, "attention %g", c.attn_flops);
    plan_assert_sig3(c.kv_bytes, 2.56e8, "Step-3 KV bytes");
    plan_assert_sig3(c.attn_flops, 3.27e10, "Step-3 attention FLOPs");
    plan_assert_sig3(c.linear_flops, 2.07e10, "Step-3 linear FLOPs");
    plan_assert_sig3(c.ffn_flops, 5.33e10, "Step-3 FFN FLOPs");
    cr_assert_eq(c.attn_intensity, 128.0, "paper §5.1: MFA intensity 128, got %g",
                 c.attn_intensity);
}

typedef struct table_row {
    const char *rel;
    double kv, attn, linear, ffn; /* paper Table 2 or 3 */
} table_row;

static void check_rows(const table_row *rows, int n, double context) {
    for (int i = 0; i < n; i++) {
        plan_token_cost c;
        char what[128];
        cost_of(rows[i].rel, context, &c);
        snprintf(what, sizeof(what), "%s at %.0f: KV", rows[i].rel, context);
        plan_assert_sig3(c.kv_bytes, rows[i].kv, what);
        snprintf(what, sizeof(what), "%s at %.0f: attention", rows[i].rel, context);
        plan_assert_sig3(c.attn_flops, rows[i].attn, what);
        snprintf(what, sizeof(what), "%s at %.0f: linear", rows[i].rel, context);
        plan_assert_sig3(c.linear_flops, rows[i].linear, what);
        snprintf(what, sizeof(what), "%s at %.0f: FFN", rows[i].rel, context);
        plan_assert_sig3(c.ffn_flops, rows[i].ffn, what);
    }
}

Test(plan_cost, paper_table2_at_8k) {
    static const table_row rows[] = {
        {"models/deepseek-v3/config.json", 2.88e8, 1.47e11, 2.28e10, 4.84e10},
        {"models/kimi-k2/config.json", 2.88e8, 7.37e10, 1.23e10, 4.84e10},
        {"models/qwen3-235b-a22b/config.json", 7.89e8, 2.52e10, 1.34e10, 2.84e10},
        {"models/step3/config.json", 2.56e8, 3.27e10, 2.07e10, 5.33e10},
    };
    check_rows(rows, 4, 8192);
}

Test(plan_cost, paper_table3_at_32k) {
    static const table_row rows[] = {
        {"models/deepseek-v3/config.json", 1.15e9, 5.89e11, 2.28e10, 4.84e10},
        {"models/kimi-k2/config.json", 1.15e9, 2.95e11, 1.23e10, 4.84e10},
        {"models/qwen3-235b-a22b/config.json", 3.15e9, 1.01e11, 1.34e10, 2.84e10},
        {"models/step3/config.json", 1.02e9, 1.31e11, 2.07e10, 5.33e10},
    };
    check_rows(rows, 4, 32768);
}

Test(plan_cost, attention_intensities_of_section_5_1) {
    plan_token_cost c;
    cost_of("models/deepseek-v3/config.json", 1000, &c);
    cr_assert_eq(c.attn_intensity, 512.0, "MLA %g", c.attn_intensity);
    cost_of("models/qwen3-235b-a22b/config.json", 1000, &c);
    cr_assert_eq(c.attn_intensity, 32.0, "GQA %g", c.attn_intensity);
}

/* ---- accelerators: Table 4 rooflines and Table 5 unit costs --------------------------- */

Test(plan_cost, paper_table5_unit_costs_and_table4_rooflines) {
    static const struct {
        const char *name;
        double flop, byte, roof;
    } rows[] = {{"H800", 2.80e-19, 1.66e-16, 591},
                {"H20", 7.51e-19, 5.56e-17, 74},
                {"A800", 6.68e-19, 1.04e-16, 156},
                {"910B", 6.65e-19, 1.16e-16, 175}};
    plan_hw_table t;
    plan_hw_builtin(&t);
    cr_assert_eq(t.n, 4);
    for (int i = 0; i < 4; i++) {
        const plan_hw *h = plan_hw_find(&t, rows[i].name);
        cr_assert_not_null(h, "%s missing", rows[i].name);
        /* within 0.5%: the paper truncates H800's 2.806e-19 to 2.80 but rounds the rest */
        plan_assert_near(plan_hw_usd_per_flop(h) / rows[i].flop, 1.0, 0.005, rows[i].name);
        plan_assert_near(plan_hw_usd_per_byte(h) / rows[i].byte, 1.0, 0.005, rows[i].name);
        cr_assert_eq(round(plan_hw_roofline(h)), rows[i].roof, "%s roofline %g", rows[i].name,
                     plan_hw_roofline(h));
    }
    cr_assert_eq(plan_hw_find(&t, "H800")->net_bw, 4e11, "400 Gb/s x 8 = 4e11 B/s");
    cr_assert_eq(plan_hw_find(&t, "910B")->net_bw, 2e11, "200 Gb/s x 8 = 2e11 B/s");
    cr_assert_eq(plan_hw_flops(plan_hw_find(&t, "A800")), 3.12e14, "no FP8: BF16 rate");
    cr_assert_null(plan_hw_find(&t, "B200"));
}

/* ---- Table 6: USD per 1M tokens, attention and FFN, each accelerator ------------------- */

typedef struct usd_row {
    const char *rel;
    double attn8k[4], attn32k[4], ffn[4]; /* H800, H20, A800, 910B */
} usd_row;

static const usd_row table6[] = {
    {"models/deepseek-v3/config.json", {0.054, 0.128, 0.114, 0.113},
     {0.197, 0.460, 0.409, 0.407}, {0.014, 0.036, 0.032, 0.032}},
    {"models/kimi-k2/config.json", {0.051, 0.065, 0.057, 0.057}, {0.194, 0.231, 0.205, 0.204},
     {0.014, 0.036, 0.032, 0.032}},
    {"models/qwen3-235b-a22b/config.json", {0.135, 0.054, 0.091, 0.101},
     {0.527, 0.185, 0.338, 0.376}, {0.008, 0.021, 0.019, 0.019}},
    {"models/step3/config.json", {0.048, 0.040, 0.040, 0.043}, {0.176, 0.114, 0.120, 0.133},
     {0.015, 0.040, 0.036, 0.035}},
};

Test(plan_cost, paper_table6_usd_per_million_tokens) {
    plan_hw_table t;
    plan_hw_builtin(&t);
    for (size_t r = 0; r < sizeof(table6) / sizeof(table6[0]); r++)
        for (int h = 0; h < 4; h++) {
            plan_token_cost c8, c32;
            plan_hw_cost u8, u32;
            char what[160];
            cost_of(table6[r].rel, 8192, &c8);
            cost_of(table6[r].rel, 32768, &c32);
            plan_hw_cost_compute(&c8, &t.hw[h], &u8);
            plan_hw_cost_compute(&c32, &t.hw[h], &u32);
            /* the paper prints 3 decimals: within half a unit plus a hair */
            snprintf(what, sizeof(what), "%s on %s: attention at 8K", table6[r].rel,
                     t.hw[h].name);
            plan_assert_near(u8.attention * 1e6, table6[r].attn8k[h], 0.0006, what);
            snprintf(what, sizeof(what), "%s on %s: attention at 32K", table6[r].rel,
                     t.hw[h].name);
            plan_assert_near(u32.attention * 1e6, table6[r].attn32k[h], 0.0006, what);
            snprintf(what, sizeof(what), "%s on %s: FFN", table6[r].rel, t.hw[h].name);
            plan_assert_near(u8.ffn * 1e6, table6[r].ffn[h], 0.0006, what);
        }
}

/* Observation 1 of §4.2: the best decoding costs at 8K and 32K. */
Test(plan_cost, paper_observation1_best_costs) {
    plan_hw_table t;
    plan_afd_choice afd;
    plan_token_cost c;
    plan_hw_cost h800;
    plan_hw_builtin(&t);
    cost_of("models/step3/config.json", 8192, &c);
    plan_best_afd(&c, &t, &afd);
    plan_assert_near(afd.usd * 1e6, 0.055, 0.0006, "Step-3 AFD at 8K");
    cr_assert_str_eq(t.hw[afd.attention_hw].name, "H20");
    cr_assert_str_eq(t.hw[afd.ffn_hw].name, "H800");
    cost_of("models/step3/config.json", 32768, &c);
    plan_best_afd(&c, &t, &afd);
    plan_assert_near(afd.usd * 1e6, 0.129, 0.0006, "Step-3 AFD at 32K");
    cost_of("models/qwen3-235b-a22b/config.json", 8192, &c);
    plan_best_afd(&c, &t, &afd);
    plan_assert_near(afd.usd * 1e6, 0.062, 0.0006, "Qwen3 MoE AFD at 8K");
    cost_of("models/qwen3-235b-a22b/config.json", 32768, &c);
    plan_best_afd(&c, &t, &afd);
    plan_assert_near(afd.usd * 1e6, 0.193, 0.0006, "Qwen3 MoE AFD at 32K");
    cost_of("models/deepseek-v3/config.json", 8192, &c); /* EP on H800 alone */
    plan_hw_cost_compute(&c, plan_hw_find(&t, "H800"), &h800);
    plan_assert_near(h800.total * 1e6, 0.068, 0.0006, "DSv3 on H800 at 8K");
    cost_of("models/deepseek-v3/config.json", 32768, &c);
    plan_hw_cost_compute(&c, plan_hw_find(&t, "H800"), &h800);
    plan_assert_near(h800.total * 1e6, 0.211, 0.0006, "DSv3 on H800 at 32K");
}

/* ---- the formulas on toy numbers -------------------------------------------------------- */

/* $3600/h makes USD/FLOP = 1/FLOPs and USD/byte = 1/bw. */
static const plan_hw toy_hw = {"toy", 3600, 1000, 0, 100, 10};

Test(plan_cost, max_of_compute_and_memory_plus_linear) {
    plan_token_cost c = {.kv_bytes = 2, .attn_flops = 100, .linear_flops = 50, .ffn_flops = 7};
    plan_hw_cost u;
    plan_hw_cost_compute(&c, &toy_hw, &u);
    /* compute 100/1000 = 0.1 > memory 2/100 = 0.02 */
    plan_assert_near(u.attention, 0.1 + 0.05, 1e-15, "compute-bound attention");
    cr_assert_eq(u.attn_bound, 1);
    plan_assert_near(u.ffn, 0.007, 1e-15, "ffn");
    plan_assert_near(u.total, 0.157, 1e-15, "total");
    c.kv_bytes = 30; /* memory 0.3 > compute 0.1 */
    plan_hw_cost_compute(&c, &toy_hw, &u);
    plan_assert_near(u.attention, 0.3 + 0.05, 1e-15, "memory-bound attention");
    cr_assert_eq(u.attn_bound, 0);
}

Test(plan_cost, fp8_rate_is_used_where_present) {
    plan_hw h = toy_hw;
    h.fp8_flops = 4000;
    plan_assert_near(plan_hw_usd_per_flop(&h), 1.0 / 4000, 1e-18, "USD/FLOP at FP8 rate");
    plan_assert_near(plan_hw_roofline(&h), 40, 1e-12, "roofline at FP8 rate");
}

Test(plan_cost, afd_picks_cheapest_side_each) {
    plan_hw_table t = {.n = 2};
    t.hw[0] = toy_hw;                              /* cheap FLOPs */
    t.hw[1] = (plan_hw){"mem", 3600, 100, 0, 1000, 10}; /* cheap bytes */
    plan_token_cost c = {.kv_bytes = 100, .attn_flops = 10, .linear_flops = 0, .ffn_flops = 10};
    plan_afd_choice a;
    plan_best_afd(&c, &t, &a);
    /* attention: toy max(0.01, 1) = 1; mem max(0.1, 0.1) = 0.1. FFN: toy 0.01, mem 0.1 */
    cr_assert_eq(a.attention_hw, 1);
    cr_assert_eq(a.ffn_hw, 0);
    plan_assert_near(a.usd, 0.1 + 0.01, 1e-15, "AFD sum");
}

Test(plan_cost, cost_scales_linearly_with_context_for_attention_only) {
    plan_token_cost a, b;
    cost_of("models/step3/config.json", 1000, &a);
    cost_of("models/step3/config.json", 3000, &b);
    plan_assert_near(b.kv_bytes, 3 * a.kv_bytes, 1e-3, "KV");
    plan_assert_near(b.attn_flops, 3 * a.attn_flops, 1e-3, "attention");
    cr_assert_eq(b.linear_flops, a.linear_flops);
    cr_assert_eq(b.ffn_flops, a.ffn_flops);
}

/* ---- the accelerator file -------------------------------------------------------------- */

static const char *write_tmp(const char *text, char *path) {
    strcpy(path, "/tmp/afd-plan-hw-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

Test(plan_cost, hardware_file_adds_and_replaces) {
    char path[64];
    plan_hw_table t;
    afd_err err = {0};
    plan_hw_builtin(&t);
    write_tmp("{\"accelerators\": [{\"name\": \"L20\", \"usd_per_hour\": 0.9, "
              "\"bf16_flops\": 1.19e14, \"fp8_flops\": null, \"mem_bytes_per_s\": 8.64e11, "
              "\"net_bytes_per_s\": 1e11}, {\"name\": \"H20\", \"usd_per_hour\": 1.6, "
              "\"bf16_flops\": 1.48e14, \"fp8_flops\": 2.96e14, \"mem_bytes_per_s\": 4e12, "
              "\"net_bytes_per_s\": 4e11}]}",
              path);
    int rc = plan_hw_load(&t, path, &err);
    unlink(path);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(t.n, 5, "4 built in + L20, got %d", t.n);
    cr_assert_eq(plan_hw_find(&t, "H20")->usd_per_hour, 1.6, "H20 replaced");
    cr_assert_eq(plan_hw_find(&t, "L20")->fp8_flops, 0.0, "null FP8 = none");
    cr_assert_str_eq(t.hw[1].name, "H20", "replacement keeps the row's place");
}

Test(plan_cost, hardware_file_can_replace_the_table) {
    char path[64];
    plan_hw_table t;
    afd_err err = {0};
    plan_hw_builtin(&t);
    write_tmp("{\"replace_builtin\": true, \"accelerators\": [{\"name\": \"X\", "
              "\"usd_per_hour\": 1, \"bf16_flops\": 1e12, \"mem_bytes_per_s\": 1e9, "
              "\"net_bytes_per_s\": 1e8}]}",
              path);
    int rc = plan_hw_load(&t, path, &err);
    unlink(path);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(t.n, 1);
}

static void expect_hw_error(const char *text, const char *needle) {
    char path[64];
    plan_hw_table t;
    afd_err err = {0};
    plan_hw_builtin(&t);
    write_tmp(text, path);
    int rc = plan_hw_load(&t, path, &err);
    unlink(path);
    cr_assert_lt(rc, 0, "accepted %s", text);
    cr_assert(strstr(err.msg, needle) != NULL, "message \"%s\" should mention \"%s\"", err.msg,
              needle);
    cr_assert_eq(t.n, 4, "table unchanged on error, n = %d", t.n);
}

Test(plan_cost, bad_hardware_files_are_refused) {
    expect_hw_error("{\"accelerators\": {}}", "accelerators");
    expect_hw_error("{\"accelerators\": [{\"name\": \"Y\", \"usd_per_hour\": 1, "
                    "\"bf16_flops\": 1e12, \"net_bytes_per_s\": 1e8}]}",
                    "mem_bytes_per_s");
    expect_hw_error("{\"accelerators\": [{\"name\": \"Y\", \"usd_per_hour\": -1, "
                    "\"bf16_flops\": 1e12, \"mem_bytes_per_s\": 1e9, \"net_bytes_per_s\": 1e8}]}",
                    "usd_per_hour");
    expect_hw_error("{\"accelerators\": [7]}", "accelerators[0]");
    expect_hw_error("{\"replace_builtin\": true, \"accelerators\": []}", "empty");
    expect_hw_error("not json", "invalid JSON");
}
