/* afd-plan model descriptions: each family's keys, the per-layer counts the cost model uses
 * (checked against hand computations), the shipped catalog, and clear errors. */
#include "tests/unit/plan/plan_test.h"

#include <unistd.h>

TestSuite(plan_model, .timeout = 10);

/* ---- Step-3 (MFA) ---------------------------------------------------------------------- */

Test(plan_model, step3_catalog_reads_the_text_config) {
    plan_model m;
    plan_test_load("models/step3/config.json", &m);
    cr_assert_eq(m.attn, PLAN_ATTN_MFA);
    cr_assert_eq(m.layers, 61, "layers %d", m.layers);
    cr_assert_eq(m.hidden, 7168, "hidden %d", m.hidden);
    cr_assert_eq(m.q_heads, 64);
    cr_assert_eq(m.kv_heads, 1, "one shared K/V head, got %d", m.kv_heads);
    cr_assert_eq(m.head_dim, 256);
    cr_assert_eq(m.q_lora_rank, 2048);
    cr_assert_eq(m.n_experts, 48);
    cr_assert_eq(m.top_k, 3);
    cr_assert_eq(m.expert_inter, 5120);
    cr_assert_eq(m.n_shared, 1);
    cr_assert_eq(m.shared_inter, 5120);
    cr_assert_eq(m.dense_inter, 18432);
    cr_assert_eq(m.n_moe_layers, 56, "MoE layers 4..59, got %d", m.n_moe_layers);
    cr_assert_eq(m.is_moe[3], 0);
    cr_assert_eq(m.is_moe[4], 1);
    cr_assert_eq(m.is_moe[59], 1);
    cr_assert_eq(m.is_moe[60], 0, "the last layer is dense");
}

Test(plan_model, step3_counts_by_hand) {
    plan_model m;
    plan_test_load("models/step3", &m); /* a directory works too */
    /* K and V: one head of 256 each, 8-bit */
    cr_assert_eq(plan_kv_bytes_per_pos(&m), 512.0, "%g", plan_kv_bytes_per_pos(&m));
    /* 2 x 64 heads x (256 + 256) */
    cr_assert_eq(plan_attn_flops_per_pos(&m), 65536.0, "%g", plan_attn_flops_per_pos(&m));
    /* q_proj 7168x2048 + wq 2048x16384 + k,v 2 x 7168x256 + o_proj 16384x7168 */
    double lin = 7168.0 * 2048 + 2048.0 * 16384 + 2 * 7168.0 * 256 + 16384.0 * 7168;
    cr_assert_eq(plan_attn_linear_params(&m), lin, "%g vs %g", plan_attn_linear_params(&m), lin);
    /* 56 MoE layers x (3 routed + 1 shared) x 3 x 7168 x 5120 + 5 dense x 3 x 7168 x 18432 */
    double ffn = 56 * 4 * 3 * 7168.0 * 5120 + 5 * 3 * 7168.0 * 18432;
    cr_assert_eq(plan_ffn_active_params(&m), ffn, "%g vs %g", plan_ffn_active_params(&m), ffn);
    plan_assert_near(plan_model_sparsity(&m), 4.0 / 49.0, 1e-15, "(3 + 1) / (48 + 1)");
}

Test(plan_model, step3_flat_config_and_defaults) {
    /* step3_text, flat; absent keys take the published defaults; moe_layers_enum as array */
    plan_model m;
    plan_test_parse("{\"model_type\": \"step3_text\", \"hidden_size\": 64, "
                    "\"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"head_dim\": 16, "
                    "\"share_q_dim\": 32, \"moe_num_experts\": 8, \"moe_top_k\": 2, "
                    "\"moe_intermediate_size\": 24, \"share_expert_dim\": 24, "
                    "\"intermediate_size\": 96, \"moe_layers_enum\": [1, 2]}",
                    &m);
    cr_assert_eq(m.kv_heads, 1, "num_attention_groups defaults to 1");
    cr_assert_eq(m.n_moe_layers, 2);
    cr_assert(m.is_moe[1] && m.is_moe[2] && !m.is_moe[0] && !m.is_moe[3]);
    /* q 64x32 + 32x64 + k,v 2x64x16 + o 64x64 */
    cr_assert_eq(plan_attn_linear_params(&m), 64.0 * 32 + 32 * 64 + 2 * 64 * 16 + 64 * 64);
    /* 2 MoE x (2+1) x 3x64x24 + 2 dense x 3x64x96 */
    cr_assert_eq(plan_ffn_active_params(&m), 2 * 3 * 3 * 64.0 * 24 + 2 * 3 * 64.0 * 96);
}

Test(plan_model, step3_default_moe_layers_skip_first_four_and_last) {
    plan_model m;
    plan_test_parse("{\"model_type\": \"step3_text\", \"hidden_size\": 64, "
                    "\"num_hidden_layers\": 10, \"num_attention_heads\": 4}",
                    &m);
    cr_assert_eq(m.n_moe_layers, 5, "layers 4..8, got %d", m.n_moe_layers);
    cr_assert(!m.is_moe[3] && m.is_moe[4] && m.is_moe[8] && !m.is_moe[9]);
}

/* ---- MLA ------------------------------------------------------------------------------- */

Test(plan_model, deepseek_v3_counts_by_hand) {
    plan_model m;
    plan_test_load("models/deepseek-v3/config.json", &m);
    cr_assert_eq(m.attn, PLAN_ATTN_MLA);
    cr_assert_eq(m.n_moe_layers, 58, "first 3 dense, got %d MoE", m.n_moe_layers);
    cr_assert_eq(plan_kv_bytes_per_pos(&m), 576.0, "kv_lora 512 + rope 64");
    /* absorbed: 2 x 128 heads x (576 + 576) */
    cr_assert_eq(plan_attn_flops_per_pos(&m), 2 * 128 * 1152.0);
    double lin = 7168.0 * 1536 + 1536.0 * 128 * 192 /* q_a, q_b */ + 7168.0 * 576 /* kv_a */ +
                 128.0 * 128 * 512 + 128.0 * 512 * 128 /* W_UK, W_UV absorbed */ +
                 128.0 * 128 * 7168 /* o */;
    cr_assert_eq(plan_attn_linear_params(&m), lin, "%g vs %g", plan_attn_linear_params(&m), lin);
    double ffn = 58 * 9 * 3 * 7168.0 * 2048 + 3 * 3 * 7168.0 * 18432;
    cr_assert_eq(plan_ffn_active_params(&m), ffn, "%g vs %g", plan_ffn_active_params(&m), ffn);
    plan_assert_near(plan_model_sparsity(&m), 9.0 / 257.0, 1e-15, "(8 + 1) / (256 + 1)");
}

Test(plan_model, kimi_k2_reads_as_mla) {
    plan_model m;
    plan_test_load("models/kimi-k2/config.json", &m);
    cr_assert_eq(m.attn, PLAN_ATTN_MLA);
    cr_assert_eq(m.q_heads, 64);
    cr_assert_eq(m.n_experts, 384);
    cr_assert_eq(m.n_moe_layers, 60, "first_k_dense_replace 1, got %d", m.n_moe_layers);
    plan_assert_near(plan_model_sparsity(&m), 9.0 / 385.0, 1e-15, "(8 + 1) / (384 + 1)");
}

Test(plan_model, mla_without_q_lora_and_with_layer_freq) {
    plan_model m;
    plan_test_parse("{\"model_type\": \"deepseek_v2\", \"hidden_size\": 32, "
                    "\"num_hidden_layers\": 6, \"num_attention_heads\": 2, \"q_lora_rank\": null, "
                    "\"kv_lora_rank\": 16, \"qk_nope_head_dim\": 8, \"qk_rope_head_dim\": 4, "
                    "\"v_head_dim\": 8, \"intermediate_size\": 64, \"n_routed_experts\": 4, "
                    "\"num_experts_per_tok\": 2, \"n_shared_experts\": 2, "
                    "\"moe_intermediate_size\": 8, \"first_k_dense_replace\": 1, "
                    "\"moe_layer_freq\": 2}",
                    &m);
    cr_assert_eq(m.q_lora_rank, 0);
    cr_assert_eq(m.n_moe_layers, 2, "layers 2 and 4, got %d", m.n_moe_layers);
    cr_assert(m.is_moe[2] && m.is_moe[4] && !m.is_moe[1] && !m.is_moe[3]);
    /* q 32 x 2x12 + kv_a 32x20 + UK 2x8x16 + UV 2x16x8 + o 2x8x32 */
    double lin = 32.0 * 24 + 32 * 20 + 2 * 8 * 16 + 2 * 16 * 8 + 2 * 8 * 32;
    cr_assert_eq(plan_attn_linear_params(&m), lin, "%g vs %g", plan_attn_linear_params(&m), lin);
    /* (2 routed + 2 shared of 8) / (4 + 2 shared) */
    plan_assert_near(plan_model_sparsity(&m), 4.0 / 6.0, 1e-15, "sparsity");
}

/* ---- GQA ------------------------------------------------------------------------------- */

Test(plan_model, qwen3_moe_counts_by_hand) {
    plan_model m;
    plan_test_load("models/qwen3-235b-a22b/config.json", &m);
    cr_assert_eq(m.attn, PLAN_ATTN_GQA);
    cr_assert_eq(m.kv_heads, 4);
    cr_assert_eq(m.head_dim, 128, "explicit head_dim, not 4096/64");
    cr_assert_eq(m.n_moe_layers, 94);
    cr_assert_eq(plan_kv_bytes_per_pos(&m), 1024.0, "2 x 4 x 128");
    cr_assert_eq(plan_attn_flops_per_pos(&m), 2 * 64 * 256.0);
    cr_assert_eq(plan_attn_linear_params(&m), 4096.0 * 8192 + 2 * 4096.0 * 512 + 8192.0 * 4096);
    cr_assert_eq(plan_ffn_active_params(&m), 94 * 8 * 3 * 4096.0 * 1536);
    cr_assert_eq(plan_model_sparsity(&m), 8.0 / 128.0);
}

Test(plan_model, gqa_dense_tiny_by_hand) {
    plan_model m;
    plan_test_parse("{\"model_type\": \"llama\", \"hidden_size\": 8, \"num_hidden_layers\": 2, "
                    "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
                    "\"intermediate_size\": 16, \"vocab_size\": 10, \"tie_word_embeddings\": true}",
                    &m);
    cr_assert_eq(m.head_dim, 4, "hidden / heads");
    cr_assert_eq(m.n_moe_layers, 0);
    cr_assert_eq(plan_kv_bytes_per_pos(&m), 8.0);
    cr_assert_eq(plan_attn_flops_per_pos(&m), 2 * 2 * 8.0);
    cr_assert_eq(plan_attn_linear_params(&m), 64.0 + 64 + 64);
    cr_assert_eq(plan_ffn_active_params(&m), 2 * 3 * 8 * 16.0);
    cr_assert_eq(plan_model_sparsity(&m), 1.0);
    plan_params p;
    plan_model_params(&m, &p);
    cr_assert_eq(p.embedding, 80.0, "tied: one 10x8 table, got %g", p.embedding);
    cr_assert_eq(p.total, 2 * 192.0 + 2 * 384 + 80, "%g", p.total);
}

Test(plan_model, qwen_sparse_step_and_mlp_only_layers) {
    plan_model m;
    plan_test_parse("{\"model_type\": \"qwen2_moe\", \"hidden_size\": 8, "
                    "\"num_hidden_layers\": 4, \"num_attention_heads\": 2, "
                    "\"intermediate_size\": 16, \"num_experts\": 4, \"num_experts_per_tok\": 1, "
                    "\"moe_intermediate_size\": 4, \"shared_expert_intermediate_size\": 12, "
                    "\"decoder_sparse_step\": 2, \"mlp_only_layers\": [1]}",
                    &m);
    cr_assert_eq(m.n_moe_layers, 1, "only layer 3, got %d", m.n_moe_layers);
    cr_assert(m.is_moe[3] && !m.is_moe[1]);
    cr_assert_eq(m.n_shared, 1);
    plan_assert_near(plan_model_sparsity(&m), (4.0 + 12) / (16.0 + 12), 1e-15, "sparsity");
}

Test(plan_model, text_config_nesting_is_followed) {
    plan_model m;
    plan_test_parse("{\"model_type\": \"kimi_k25\", \"text_config\": {\"model_type\": "
                    "\"kimi_k2\", \"hidden_size\": 32, \"num_hidden_layers\": 2, "
                    "\"num_attention_heads\": 2, \"kv_lora_rank\": 16, \"q_lora_rank\": 8, "
                    "\"qk_nope_head_dim\": 8, \"qk_rope_head_dim\": 4, \"v_head_dim\": 8, "
                    "\"intermediate_size\": 64}}",
                    &m);
    cr_assert_eq(m.attn, PLAN_ATTN_MLA);
    cr_assert_str_eq(m.name, "kimi_k2");
}

/* ---- the catalog against the models' published sizes --------------------------------- */

static void check_sizes(const char *rel, double total_b, double tol, int active_floor_b) {
    plan_model m;
    plan_params p;
    plan_test_load(rel, &m);
    plan_model_params(&m, &p);
    cr_assert(fabs(p.total / 1e9 - total_b) <= tol * total_b, "%s: %.1f B total, published %g B",
              rel, p.total / 1e9, total_b);
    cr_assert_eq((int)floor(p.active / 1e9), active_floor_b, "%s: %.2f B activated, published "
                 "%d B", rel, p.active / 1e9, active_floor_b);
}

Test(plan_model, catalog_matches_published_parameter_counts) {
    check_sizes("models/step3/config.json", 316, 0.005, 38);           /* paper Table 1 */
    check_sizes("models/deepseek-v3/config.json", 671, 0.005, 37);     /* 671B / 37B */
    check_sizes("models/qwen3-235b-a22b/config.json", 235, 0.005, 22); /* 235B / 22B */
    check_sizes("models/kimi-k2/config.json", 1000, 0.05, 32);         /* "1T" / 32B */
}

/* ---- errors ---------------------------------------------------------------------------- */

static void expect_error(const char *json, int code, const char *needle) {
    plan_model m;
    afd_err err = {0};
    int rc = plan_model_parse(json, strlen(json), "cfg.json", &m, &err);
    cr_assert_eq(rc, code, "expected %d, got %d (%s) for %s", code, rc, err.msg, json);
    cr_assert(strstr(err.msg, needle) != NULL, "message \"%s\" should mention \"%s\"", err.msg,
              needle);
    cr_assert(strstr(err.msg, "cfg.json") != NULL, "message \"%s\" names the input", err.msg);
}

Test(plan_model, bad_configs_are_refused_by_name) {
    expect_error("{\"num_hidden_layers\": 2, \"num_attention_heads\": 2}", AFD_E_NOTFOUND,
                 "hidden_size");
    expect_error("{\"hidden_size\": \"7168\", \"num_hidden_layers\": 2, "
                 "\"num_attention_heads\": 2}", AFD_E_FORMAT, "hidden_size");
    expect_error("{\"hidden_size\": 64.5, \"num_hidden_layers\": 2, \"num_attention_heads\": 2}",
                 AFD_E_FORMAT, "fraction");
    expect_error("{\"hidden_size\": -4, \"num_hidden_layers\": 2, \"num_attention_heads\": 2}",
                 AFD_E_FORMAT, "outside");
    expect_error("{\"hidden_size\": 8, \"num_hidden_layers\": 2000, "
                 "\"num_attention_heads\": 2}", AFD_E_FORMAT, "num_hidden_layers");
    expect_error("[1, 2]", AFD_E_FORMAT, "object");
    expect_error("{\"hidden_size\": 8,", AFD_E_FORMAT, "line");
    expect_error("{\"model_type\": \"mamba\", \"hidden_size\": 8, \"num_hidden_layers\": 2}",
                 AFD_E_UNSUPPORTED, "mamba");
    expect_error("{\"model_type\": \"step3_text\", \"hidden_size\": 8, \"num_hidden_layers\": 6, "
                 "\"num_attention_heads\": 2, \"moe_layers_enum\": \"1,x\"}", AFD_E_FORMAT,
                 "moe_layers_enum");
    expect_error("{\"model_type\": \"step3_text\", \"hidden_size\": 8, \"num_hidden_layers\": 6, "
                 "\"num_attention_heads\": 2, \"moe_layers_enum\": \"1,9\"}", AFD_E_FORMAT,
                 "moe_layers_enum");
    expect_error("{\"model_type\": \"step3_text\", \"hidden_size\": 8, \"num_hidden_layers\": 6, "
                 "\"num_attention_heads\": 2, \"moe_num_experts\": 2, \"moe_top_k\": 3}",
                 AFD_E_FORMAT, "experts");
    expect_error("{\"model_type\": \"deepseek_v3\", \"hidden_size\": 8, "
                 "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"kv_lora_rank\": 4, "
                 "\"qk_nope_head_dim\": 2, \"qk_rope_head_dim\": 2}", AFD_E_NOTFOUND,
                 "v_head_dim");
    expect_error("{\"model_type\": \"qwen3_moe\", \"hidden_size\": 8, \"num_hidden_layers\": 2, "
                 "\"num_attention_heads\": 4, \"num_key_value_heads\": 3, "
                 "\"intermediate_size\": 8}", AFD_E_FORMAT, "num_key_value_heads");
    expect_error("{\"model_type\": \"qwen3\", \"hidden_size\": 8, \"num_hidden_layers\": 2, "
                 "\"num_attention_heads\": 4}", AFD_E_NOTFOUND, "intermediate_size");
    expect_error("{\"model_type\": \"qwen3_moe\", \"hidden_size\": 8, \"num_hidden_layers\": 2, "
                 "\"num_attention_heads\": 4, \"num_experts\": 4, \"num_experts_per_tok\": 2, "
                 "\"moe_intermediate_size\": 4, \"mlp_only_layers\": 1}", AFD_E_FORMAT,
                 "mlp_only_layers");
}

Test(plan_model, unreadable_files_are_named) {
    plan_model m;
    afd_err err = {0};
    int rc = plan_model_load("/nonexistent/afd-plan/config.json", &m, &err);
    cr_assert_lt(rc, 0, "rc %d", rc);
    cr_assert(strstr(err.msg, "/nonexistent/afd-plan/config.json") != NULL, "%s", err.msg);
}

Test(plan_model, file_reads_are_bounded) {
    char path[4096], tmpl[] = "/tmp/afd-plan-big-XXXXXX";
    afd_err err = {0};
    plan_test_path("models/step3/config.json", path, sizeof(path));
    cr_assert_null(jget_load_file(path, 16, &err), "a 16-byte limit must refuse the file");
    cr_assert_eq(err.code, AFD_E_LIMIT, "code %d (%s)", err.code, err.msg);
    cr_assert(strstr(err.msg, "16-byte limit") != NULL, "%s", err.msg);
    /* a file past the first 64 KiB read, exactly at the limit, is read whole */
    int fd = mkstemp(tmpl);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("{\"pad\": \"", f);
    for (int i = 0; i < 70000 - 11; i++)
        fputc('x', f);
    fputs("\"}", f);
    fclose(f);
    json_t *j = jget_load_file(tmpl, 70000, &err);
    cr_assert_not_null(j, "%s", err.msg);
    cr_assert_eq(strlen(json_string_value(json_object_get(j, "pad"))), 70000 - 11);
    json_decref(j);
    cr_assert_null(jget_load_file(tmpl, 69999, &err), "one byte over the limit");
    unlink(tmpl);
}
