/* config.json reading: defaults, both model types, absent keys, moe_layers_enum spellings,
 * block-FP8, and every refusal with the exact key named. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/model/config.h"
#include "tests/unit/model/ckpt_util.h"

static int parse(const char *json, afd_model_config *c, afd_err *err) {
    memset(err, 0, sizeof *err);
    return afd_config_parse(json, strlen(json), "cfg.json", c, err);
}

static void parse_ok(const char *json, afd_model_config *c) {
    afd_err err;
    int rc = parse(json, c, &err);
    cr_assert_eq(rc, 0, "rc %d: %s\n  json: %s", rc, err.msg, json);
}

static void parse_bad(const char *json, int code, const char *needle) {
    afd_model_config c;
    afd_err err;
    int rc = parse(json, &c, &err);
    cr_assert_eq(rc, code, "rc %d (%s), want %d; msg: %s\n  json: %s", rc, afd_strerror(rc), code,
                 err.msg, json);
    cr_assert_not_null(strstr(err.msg, "cfg.json: "), "file not named: %s", err.msg);
    cr_assert_not_null(strstr(err.msg, needle), "'%s' not in: %s", needle, err.msg);
}

/* A flat config with one extra member (text without braces, or ""). */
static const char *flat(const char *extra) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "{\"model_type\":\"step3_text\"%s%s}", extra[0] ? "," : "", extra);
    return buf;
}

/* ---- defaults and shapes ------------------------------------------------------------------ */

Test(config, defaults_are_full_step3) {
    afd_model_config c;
    afd_config_defaults(&c);
    cr_assert_eq(c.n_layers, 61);
    cr_assert_eq(c.hidden, 7168);
    cr_assert_eq(c.vocab, 128815);
    cr_assert_eq(c.n_heads, 64);
    cr_assert_eq(c.n_kv_heads, 1);
    cr_assert_eq(c.head_dim, 256);
    cr_assert_eq(c.share_q_dim, 2048);
    cr_assert_eq(c.inter_dense, 18432);
    cr_assert_eq(c.n_experts, 48);
    cr_assert_eq(c.top_k, 3);
    cr_assert_eq(c.moe_inter, 5120);
    cr_assert_eq(c.share_inter, 5120);
    cr_assert_float_eq(c.rms_eps, 1e-5f, 1e-12);
    cr_assert_float_eq(c.rope_theta, 500000.0, 1e-9);
    cr_assert_eq(c.max_pos, 65536);
    cr_assert_eq(c.bos_id, 0);
    cr_assert_eq(c.eos_id, 128805);
    cr_assert_eq(c.norm_expert_weight, false);
    cr_assert_eq(c.fp8_blocks, false);
    cr_assert_eq(afd_config_n_moe(&c), 56);
    cr_assert_eq(c.is_moe[3], 0);
    cr_assert_eq(c.is_moe[4], 1);
    cr_assert_eq(c.is_moe[59], 1);
    cr_assert_eq(c.is_moe[60], 0);
    afd_err err = {0};
    cr_assert_eq(afd_config_validate(&c, &err), 0, "%s", err.msg);
}

Test(config, absent_keys_take_defaults) {
    afd_model_config c, d;
    afd_config_defaults(&d);
    parse_ok(flat(""), &c);
    cr_assert_eq(afd_config_hash(&c), afd_config_hash(&d), "empty config differs from defaults");
    cr_assert_str_eq(c.model_type, "step3_text");
    parse_ok(flat("\"hidden_size\":512"), &c);
    cr_assert_eq(c.hidden, 512);
    cr_assert_eq(c.n_layers, 61);
    cr_assert_eq(c.moe_inter, 5120);
    /* the default MoE layers are cut to the layers that exist */
    parse_ok(flat("\"num_hidden_layers\":10"), &c);
    cr_assert_eq(afd_config_n_moe(&c), 6, "layers 4..9 are MoE: %d", afd_config_n_moe(&c));
    cr_assert_eq(c.is_moe[9], 1);
    cr_assert_eq(c.is_moe[10], 0);
}

/* The real Step-3 text config, key for key (values are the defaults). */
#define REAL_TEXT                                                                                  \
    "\"architectures\":[\"Step3TextForCausalLM\"],\"model_type\":\"step3_text\","                  \
    "\"hidden_size\":7168,\"intermediate_size\":18432,\"num_attention_heads\":64,"                 \
    "\"num_attention_groups\":1,\"num_hidden_layers\":61,\"max_seq_len\":65536,"                   \
    "\"vocab_size\":128815,\"rms_norm_eps\":1e-05,\"moe_intermediate_size\":5120,"                 \
    "\"moe_num_experts\":48,\"moe_top_k\":3,\"rope_theta\":500000,\"rope_scaling\":null,"          \
    "\"max_position_embedding\":65536,\"share_expert_dim\":5120,\"share_q_dim\":2048,"             \
    "\"head_dim\":256,\"norm_expert_weight\":false,\"moe_layers_enum\":\"4,5,6,7,8,9,10,11,12,"    \
    "13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,"   \
    "43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59\",\"torch_dtype\":\"bfloat16\""

Test(config, step3_vl_and_step3_text_agree) {
    afd_model_config vl, text, d;
    afd_config_defaults(&d);
    parse_ok("{\"architectures\":[\"Step3VLForConditionalGeneration\"],\"model_type\":\"step3_vl\","
             "\"hidden_size\":1,\"bos_token_id\":0,\"eos_token_id\":128805,"
             "\"vision_config\":{\"hidden_size\":1792},\"text_config\":{" REAL_TEXT "}}",
             &vl);
    parse_ok("{" REAL_TEXT "}", &text);
    cr_assert_str_eq(vl.model_type, "step3_vl");
    cr_assert_str_eq(text.model_type, "step3_text");
    cr_assert_eq(vl.hidden, 7168, "top-level hidden_size must not override text_config");
    cr_assert_eq(afd_config_hash(&vl), afd_config_hash(&text));
    cr_assert_eq(afd_config_hash(&vl), afd_config_hash(&d));
    cr_assert_eq(afd_config_n_moe(&vl), 56);
    cr_assert_eq(vl.dtype, AFD_DT_BF16);
}

Test(config, step3_vl_top_level_fallbacks) {
    afd_model_config c;
    parse_ok("{\"model_type\":\"step3_vl\",\"eos_token_id\":[7,8],\"bos_token_id\":3,"
             "\"torch_dtype\":\"float16\",\"quantization_config\":{\"quant_method\":\"fp8\","
             "\"weight_block_size\":[128,128]},\"text_config\":{\"hidden_size\":256}}",
             &c);
    cr_assert_eq(c.hidden, 256);
    cr_assert_eq(c.eos_id, 7, "first of a list");
    cr_assert_eq(c.bos_id, 3);
    cr_assert_eq(c.dtype, AFD_DT_F16);
    cr_assert(c.fp8_blocks);
    /* the text part wins over the top level */
    parse_ok("{\"model_type\":\"step3_vl\",\"eos_token_id\":9,"
             "\"text_config\":{\"eos_token_id\":10,\"model_type\":\"step3_text\"}}",
             &c);
    cr_assert_eq(c.eos_id, 10);
}

Test(config, moe_layers_enum_string_and_array) {
    afd_model_config c;
    parse_ok(flat("\"num_hidden_layers\":6,\"moe_layers_enum\":\"1, 3,5\""), &c);
    cr_assert_eq(afd_config_n_moe(&c), 3);
    cr_assert(c.is_moe[1] && c.is_moe[3] && c.is_moe[5] && !c.is_moe[4]);
    afd_model_config a;
    parse_ok(flat("\"num_hidden_layers\":6,\"moe_layers_enum\":[5,1,3]"), &a);
    cr_assert_eq(afd_config_hash(&a), afd_config_hash(&c), "string and array spellings differ");
    parse_ok(flat("\"moe_layers_enum\":\"\""), &c);
    cr_assert_eq(afd_config_n_moe(&c), 0);
    parse_ok(flat("\"moe_layers_enum\":[]"), &c);
    cr_assert_eq(afd_config_n_moe(&c), 0);
}

Test(config, fp8_quantization_config) {
    afd_model_config c;
    parse_ok(flat("\"quantization_config\":{\"quant_method\":\"fp8\",\"fmt\":\"e4m3\","
                  "\"activation_scheme\":\"dynamic\",\"weight_block_size\":[128,128],"
                  "\"modules_to_not_convert\":[\"lm_head\"]}"),
             &c);
    cr_assert(c.fp8_blocks);
    afd_model_config plain;
    parse_ok(flat("\"quantization_config\":null"), &plain);
    cr_assert_not(plain.fp8_blocks);
    cr_assert_neq(afd_config_hash(&c), afd_config_hash(&plain));
}

Test(config, misc_values) {
    afd_model_config c;
    parse_ok(flat("\"max_position_embeddings\":4096,\"rope_theta\":10000.5,"
                  "\"rms_norm_eps\":1e-6,\"norm_expert_weight\":true,\"eos_token_id\":null,"
                  "\"dtype\":\"float32\""),
             &c);
    cr_assert_eq(c.max_pos, 4096);
    cr_assert_float_eq(c.rope_theta, 10000.5, 1e-9);
    cr_assert_float_eq(c.rms_eps, 1e-6f, 1e-12);
    cr_assert(c.norm_expert_weight);
    cr_assert_eq(c.eos_id, 128805, "null keeps the default");
    cr_assert_eq(c.dtype, AFD_DT_F32);
    parse_ok(flat("\"max_position_embeddings\":4096,\"max_position_embedding\":4096"), &c);
    cr_assert_eq(c.max_pos, 4096);
}

Test(config, hash_sees_every_semantic_field) {
    afd_model_config a, b;
    afd_config_defaults(&a);
    uint64_t h = afd_config_hash(&a);
    b = a, b.hidden++;
    cr_assert_neq(afd_config_hash(&b), h);
    b = a, b.is_moe[4] = 0;
    cr_assert_neq(afd_config_hash(&b), h);
    b = a, b.rms_eps = 1e-6f;
    cr_assert_neq(afd_config_hash(&b), h);
    b = a, b.norm_expert_weight = true;
    cr_assert_neq(afd_config_hash(&b), h);
    b = a, b.eos_id = 1;
    cr_assert_neq(afd_config_hash(&b), h);
    b = a, b.dtype = AFD_DT_F32; /* informational */
    cr_assert_eq(afd_config_hash(&b), h);
    b = a, b.is_moe[100] = 1; /* past the last layer: not part of the model */
    cr_assert_eq(afd_config_hash(&b), h);
}

/* ---- refusals ----------------------------------------------------------------------------- */

Test(config, refuses_bad_json_and_model_types) {
    parse_bad("{\"model_type\":", AFD_E_FORMAT, "line 1");
    parse_bad("[1]", AFD_E_FORMAT, "not a JSON object");
    parse_bad("{\"model_type\":\"step3_text\",\"hidden_size\":1,\"hidden_size\":2}", AFD_E_FORMAT,
              "duplicate");
    parse_bad("{\"hidden_size\":7168}", AFD_E_FORMAT, "key model_type: missing");
    parse_bad("{\"model_type\":3}", AFD_E_FORMAT, "key model_type: must be a string");
    parse_bad("{\"model_type\":\"llama\"}", AFD_E_UNSUPPORTED, "key model_type: \"llama\"");
    parse_bad("{\"model_type\":\"step3_vl\"}", AFD_E_FORMAT, "key text_config: missing");
    parse_bad("{\"model_type\":\"step3_vl\",\"text_config\":[]}", AFD_E_FORMAT,
              "key text_config: must be an object");
    parse_bad("{\"model_type\":\"step3_vl\",\"text_config\":{\"model_type\":\"qwen3_moe\"}}",
              AFD_E_UNSUPPORTED, "key text_config.model_type");
}

Test(config, refuses_bad_types) {
    parse_bad(flat("\"hidden_size\":\"7168\""), AFD_E_FORMAT,
              "key hidden_size: must be an integer, got a string");
    parse_bad(flat("\"hidden_size\":7168.0"), AFD_E_FORMAT,
              "key hidden_size: must be an integer, got a real number");
    parse_bad(flat("\"num_hidden_layers\":null"), AFD_E_FORMAT,
              "key num_hidden_layers: must be an integer, got null");
    parse_bad(flat("\"rms_norm_eps\":\"1e-5\""), AFD_E_FORMAT,
              "key rms_norm_eps: must be a number");
    parse_bad(flat("\"norm_expert_weight\":0"), AFD_E_FORMAT,
              "key norm_expert_weight: must be true or false");
    parse_bad(flat("\"torch_dtype\":5"), AFD_E_FORMAT, "key torch_dtype: must be a string");
    parse_bad(flat("\"torch_dtype\":\"int8\""), AFD_E_UNSUPPORTED, "key torch_dtype: \"int8\"");
    parse_bad(flat("\"eos_token_id\":\"2\""), AFD_E_FORMAT, "key eos_token_id: must be an integer");
    parse_bad(flat("\"eos_token_id\":[]"), AFD_E_FORMAT, "key eos_token_id: empty list");
    parse_bad(flat("\"eos_token_id\":[\"x\"]"), AFD_E_FORMAT,
              "key eos_token_id: must be an integer");
    parse_bad("{\"model_type\":\"step3_vl\",\"text_config\":{\"moe_top_k\":true}}", AFD_E_FORMAT,
              "key text_config.moe_top_k: must be an integer, got a boolean");
}

Test(config, refuses_bad_ranges) {
    parse_bad(flat("\"hidden_size\":0"), AFD_E_FORMAT, "key hidden_size: 0 is outside [1, 65536]");
    parse_bad(flat("\"hidden_size\":-7168"), AFD_E_FORMAT, "key hidden_size: -7168 is outside");
    parse_bad(flat("\"vocab_size\":1000000000000"), AFD_E_FORMAT,
              "key vocab_size: 1000000000000 is outside");
    parse_bad(flat("\"num_hidden_layers\":100000"), AFD_E_FORMAT, "key num_hidden_layers");
    parse_bad(flat("\"moe_num_experts\":5000"), AFD_E_FORMAT, "key moe_num_experts");
    parse_bad(flat("\"moe_top_k\":0"), AFD_E_FORMAT, "key moe_top_k: 0 is outside");
    parse_bad(flat("\"rms_norm_eps\":-1e-5"), AFD_E_FORMAT, "key rms_norm_eps");
    parse_bad(flat("\"rope_theta\":0"), AFD_E_FORMAT, "key rope_theta");
    parse_bad(flat("\"head_dim\":1"), AFD_E_FORMAT, "key head_dim");
    parse_bad(flat("\"max_position_embedding\":0"), AFD_E_FORMAT, "key max_position_embedding");
    parse_bad(flat("\"max_position_embeddings\":-1"), AFD_E_FORMAT, "key max_position_embeddings");
    parse_bad(flat("\"share_expert_dim\":0"), AFD_E_FORMAT, "key share_expert_dim");
    parse_bad(flat("\"share_q_dim\":2000000"), AFD_E_FORMAT, "key share_q_dim");
    parse_bad(flat("\"intermediate_size\":-3"), AFD_E_FORMAT, "key intermediate_size");
    parse_bad(flat("\"moe_intermediate_size\":0"), AFD_E_FORMAT, "key moe_intermediate_size");
    parse_bad(flat("\"bos_token_id\":-1"), AFD_E_FORMAT, "key bos_token_id");
}

Test(config, refuses_inconsistent_values) {
    parse_bad(flat("\"moe_num_experts\":4,\"moe_top_k\":5"), AFD_E_FORMAT,
              "key moe_top_k: 5 > moe_num_experts 4");
    parse_bad(flat("\"num_attention_groups\":3"), AFD_E_FORMAT,
              "key num_attention_groups: 3 does not divide num_attention_heads 64");
    parse_bad(flat("\"head_dim\":255"), AFD_E_FORMAT, "key head_dim: 255 must be even");
    parse_bad(flat("\"vocab_size\":1000"), AFD_E_FORMAT, "key eos_token_id: 128805 is outside");
    parse_bad(flat("\"vocab_size\":1000,\"eos_token_id\":2,\"bos_token_id\":1000"), AFD_E_FORMAT,
              "key bos_token_id: 1000 is outside");
    parse_bad(flat("\"max_position_embedding\":100,\"max_position_embeddings\":200"), AFD_E_FORMAT,
              "key max_position_embeddings: 200 disagrees with max_position_embedding 100");
}

Test(config, refuses_rope_scaling) {
    parse_bad(flat("\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}"), AFD_E_UNSUPPORTED,
              "key rope_scaling: must be null or absent");
    parse_bad("{\"model_type\":\"step3_vl\",\"text_config\":{\"rope_scaling\":1.0}}",
              AFD_E_UNSUPPORTED, "key text_config.rope_scaling");
}

Test(config, refuses_bad_moe_layers_enum) {
    parse_bad(flat("\"moe_layers_enum\":\"4,x\""), AFD_E_FORMAT,
              "key moe_layers_enum: \"4,x\" is not a comma-separated list");
    parse_bad(flat("\"moe_layers_enum\":\"4,,5\""), AFD_E_FORMAT, "not a comma-separated list");
    parse_bad(flat("\"moe_layers_enum\":\"4,5,\""), AFD_E_FORMAT, "not a comma-separated list");
    parse_bad(flat("\"moe_layers_enum\":\"4;5\""), AFD_E_FORMAT, "not a comma-separated list");
    parse_bad(flat("\"moe_layers_enum\":\"4,70\""), AFD_E_FORMAT,
              "key moe_layers_enum: layer 70 is outside [0, 61)");
    parse_bad(flat("\"moe_layers_enum\":\"-1\""), AFD_E_FORMAT, "layer -1 is outside");
    parse_bad(flat("\"moe_layers_enum\":\"99999999999999999999\""), AFD_E_FORMAT,
              "not a comma-separated list");
    parse_bad(flat("\"moe_layers_enum\":\"4,5,4\""), AFD_E_FORMAT,
              "key moe_layers_enum: layer 4 is listed twice");
    parse_bad(flat("\"moe_layers_enum\":[4,\"5\"]"), AFD_E_FORMAT,
              "key moe_layers_enum: element 1 is a string");
    parse_bad(flat("\"moe_layers_enum\":[4,4]"), AFD_E_FORMAT, "listed twice");
    parse_bad(flat("\"num_hidden_layers\":4,\"moe_layers_enum\":[4]"), AFD_E_FORMAT,
              "layer 4 is outside [0, 4)");
    parse_bad(flat("\"moe_layers_enum\":{}"), AFD_E_FORMAT,
              "key moe_layers_enum: must be a string like");
}

Test(config, refuses_bad_quantization_config) {
    parse_bad(flat("\"quantization_config\":\"fp8\""), AFD_E_FORMAT,
              "key quantization_config: must be an object");
    parse_bad(flat("\"quantization_config\":{\"quant_method\":\"awq\"}"), AFD_E_UNSUPPORTED,
              "key quantization_config.quant_method: \"awq\"");
    parse_bad(flat("\"quantization_config\":{\"weight_block_size\":[128,128]}"), AFD_E_UNSUPPORTED,
              "key quantization_config.quant_method: missing");
    parse_bad(flat("\"quantization_config\":{\"quant_method\":\"fp8\"}"), AFD_E_UNSUPPORTED,
              "key quantization_config.weight_block_size: missing");
    parse_bad(flat("\"quantization_config\":{\"quant_method\":\"fp8\","
                   "\"weight_block_size\":[64,64]}"),
              AFD_E_UNSUPPORTED, "key quantization_config.weight_block_size: not [128, 128]");
    parse_bad(flat("\"quantization_config\":{\"quant_method\":\"fp8\","
                   "\"weight_block_size\":[128,128,1]}"),
              AFD_E_UNSUPPORTED, "weight_block_size");
    parse_bad(flat("\"quantization_config\":{\"quant_method\":\"fp8\",\"fmt\":\"e5m2\","
                   "\"weight_block_size\":[128,128]}"),
              AFD_E_UNSUPPORTED, "key quantization_config.fmt: \"e5m2\"");
    parse_bad(flat("\"quantization_config\":{\"quant_method\":\"fp8\","
                   "\"activation_scheme\":\"static\",\"weight_block_size\":[128,128]}"),
              AFD_E_UNSUPPORTED, "key quantization_config.activation_scheme");
}

Test(config, validate_checks_structs_built_in_code) {
    afd_model_config c;
    afd_config_defaults(&c);
    c.n_layers = 10; /* the default MoE layers now reach past the end */
    afd_err err = {0};
    cr_assert_eq(afd_config_validate(&c, &err), AFD_E_FORMAT);
    cr_assert_not_null(strstr(err.msg, "key moe_layers_enum: layer 10"), "%s", err.msg);
    afd_config_defaults(&c);
    c.share_inter = 0;
    cr_assert_eq(afd_config_validate(&c, &err), AFD_E_FORMAT);
    cr_assert_not_null(strstr(err.msg, "key share_expert_dim"), "%s", err.msg);
}

Test(config, load_from_directory_and_file) {
    char dir[256], path[512];
    ck_tmpdir(dir, sizeof dir);
    afd_model_config c;
    afd_err err = {0};
    int rc = afd_config_load(dir, &c, &err);
    cr_assert_eq(rc, AFD_E_NOTFOUND, "rc %d: %s", rc, err.msg);
    cr_assert_not_null(strstr(err.msg, "config.json"), "%s", err.msg);
    ck_write_text(ck_path(path, sizeof path, dir, "config.json"),
                  "{\"model_type\":\"step3_text\",\"hidden_size\":384}\n");
    cr_assert_eq(afd_config_load(dir, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.hidden, 384);
    cr_assert_eq(afd_config_load(path, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.hidden, 384);
    ck_write_text(path, "{\"model_type\":\"step3_text\",\"hidden_size\":0}");
    rc = afd_config_load(dir, &c, &err);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert_not_null(strstr(err.msg, path), "file path not in: %s", err.msg);
    cr_assert_not_null(strstr(err.msg, "key hidden_size"), "%s", err.msg);
    ck_rm_rf(dir);
    /* a missing directory: the message says which file was wanted */
    rc = afd_config_load("/nonexistent/afd-model", &c, &err);
    cr_assert_eq(rc, AFD_E_NOTFOUND);
    cr_assert_not_null(strstr(err.msg, "/nonexistent/afd-model/config.json"), "%s", err.msg);
}
