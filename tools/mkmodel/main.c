/* afd-mkmodel: writes a seeded random Step-3 checkpoint in the Hugging Face layout.
 * See mkmodel.h for the parts and docs/models.md for the presets and the choices made. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "tools/mkmodel/mkmodel.h"

typedef struct mk_opts {
    const char *preset, *config, *out, *tokenizer_dir;
    uint64_t shard_size;
    bool force, no_tokenizer, quiet, dry_run;
} mk_opts;

static void usage(FILE *f) {
    fprintf(f,
        "usage: afd-mkmodel --out DIR [options]\n"
        "Writes a seeded random Step-3 checkpoint in the Hugging Face layout: config.json,\n"
        "generation_config.json, model.safetensors (or shards + model.safetensors.index.json),\n"
        "tokenizer.json and tokenizer_config.json.\n\n"
        "  --preset tiny|mini   dimensions to start from (default tiny; docs/models.md)\n"
        "  --config FILE        JSON of Step-3 config keys overriding the preset (flat, or a\n"
        "                       whole config.json with text_config): hidden_size,\n"
        "                       intermediate_size, num_attention_heads, num_attention_groups,\n"
        "                       num_hidden_layers, vocab_size, rms_norm_eps,\n"
        "                       moe_intermediate_size, moe_num_experts, moe_top_k, rope_theta,\n"
        "                       max_position_embedding, share_expert_dim, share_q_dim, head_dim,\n"
        "                       norm_expert_weight, moe_layers_enum (\"1,2,4\"), bos/eos_token_id\n"
        "  --dtype bf16|fp8     bf16 (default), or block-FP8 e4m3 projections with 128x128\n"
        "                       weight_scale_inv (router, norms, embed and lm_head stay BF16)\n"
        "  --mixed              FP8 only for routed experts and q_proj/wq/o_proj (implies fp8)\n"
        "  --seed N             random seed (default 1); same arguments, same bytes\n"
        "  --out DIR            output directory (created; must be empty unless --force)\n"
        "  --force              overwrite the checkpoint files in a non-empty DIR\n"
        "  --shard-size SIZE    split into model-0000N-of-0000M.safetensors when the total\n"
        "                       exceeds SIZE (bytes, or with kb/mb/gb, 1024-based; e.g. 2gb)\n"
        "  --flat               flat model_type step3_text config (default: step3_vl with\n"
        "                       text_config)\n"
        "  --tokenizer-dir DIR  where tokenizer.json/tokenizer_config.json of DeepSeek-V3 are\n"
        "                       (default: $AFD_TOKENIZER_DIR, or deploy/npm/... beside the build)\n"
        "  --no-tokenizer       write no tokenizer files (then any vocab_size is allowed)\n"
        "  --dry-run            print the plan (parameters, bytes, shards) and write nothing\n"
        "  --quiet              no progress or summary lines\n"
        "  --help               this text\n\n"
        "examples:\n"
        "  afd-mkmodel --preset tiny --out build/models/tiny\n"
        "  afd-mkmodel --preset tiny --dtype fp8 --seed 7 --out /tmp/tiny-fp8\n"
        "  afd-mkmodel --preset mini --shard-size 256mb --out build/models/mini\n"
        "  echo '{\"num_hidden_layers\": 6, \"moe_layers_enum\": \"1,2,4\"}' > c.json &&\n"
        "    afd-mkmodel --config c.json --mixed --flat --out /tmp/m6\n");
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "afd-mkmodel: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

/* "123", "8mb", "2gb", "512KiB" -> bytes (1024-based). */
static int parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-')
        return -1;
    static const struct {
        const char *suffix;
        int shift;
    } units[] = {{"", 0},   {"b", 0},   {"k", 10},   {"kb", 10},  {"kib", 10}, {"m", 20},
                 {"mb", 20}, {"mib", 20}, {"g", 30},  {"gb", 30},  {"gib", 30}, {"t", 40},
                 {"tb", 40}, {"tib", 40}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            if (v > (UINT64_MAX >> units[i].shift))
                return -1;
            *out = (uint64_t)v << units[i].shift;
            return 0;
        }
    }
    return -1;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (end == s || *end || errno || *s == '-')
        return -1;
    *out = v;
    return 0;
}

enum { O_PRESET = 256, O_CONFIG, O_DTYPE, O_MIXED, O_SEED, O_OUT, O_FORCE, O_SHARD, O_FLAT,
       O_TOKDIR, O_NOTOK, O_DRY, O_QUIET, O_HELP };

/* --dtype and --mixed together decide which projections are FP8. */
static int resolve_quant(mk_spec *spec, const char *dtype, bool mixed) {
    if (mixed) {
        spec->quant = MK_QUANT_MIXED;
        return dtype && strcmp(dtype, "fp8") != 0 ? -1 : 0;
    }
    if (!dtype || strcmp(dtype, "bf16") == 0)
        spec->quant = MK_QUANT_NONE;
    else if (strcmp(dtype, "fp8") == 0)
        spec->quant = MK_QUANT_ALL;
    else
        return -1;
    return 0;
}

/* Returns 0, 1 (--help printed) or an exit code > 1. */
static int parse_opts(int argc, char **argv, mk_opts *o, mk_spec *spec) {
    static const struct option lo[] = {
        {"preset", 1, 0, O_PRESET}, {"config", 1, 0, O_CONFIG}, {"dtype", 1, 0, O_DTYPE},
        {"mixed", 0, 0, O_MIXED},   {"seed", 1, 0, O_SEED},     {"out", 1, 0, O_OUT},
        {"force", 0, 0, O_FORCE},   {"shard-size", 1, 0, O_SHARD}, {"flat", 0, 0, O_FLAT},
        {"tokenizer-dir", 1, 0, O_TOKDIR}, {"no-tokenizer", 0, 0, O_NOTOK},
        {"dry-run", 0, 0, O_DRY},   {"quiet", 0, 0, O_QUIET},   {"help", 0, 0, O_HELP},
        {0, 0, 0, 0}};
    const char *dtype = NULL;
    bool mixed = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_PRESET: o->preset = optarg; break;
        case O_CONFIG: o->config = optarg; break;
        case O_DTYPE: dtype = optarg; break;
        case O_MIXED: mixed = true; break;
        case O_SEED:
            if (parse_u64(optarg, &spec->seed))
                return fail("--seed: '%s' is not a non-negative integer", optarg);
            break;
        case O_OUT: o->out = optarg; break;
        case O_FORCE: o->force = true; break;
        case O_SHARD:
            if (parse_size(optarg, &o->shard_size) || o->shard_size == 0)
                return fail("--shard-size: '%s' is not a size (e.g. 2gb, 8mb, 1048576)", optarg);
            break;
        case O_FLAT: spec->flat = true; break;
        case O_TOKDIR: o->tokenizer_dir = optarg; break;
        case O_NOTOK: o->no_tokenizer = true; break;
        case O_DRY: o->dry_run = true; break;
        case O_QUIET: o->quiet = true; break;
        case O_HELP: usage(stdout); return 1;
        default:
            return fail("unknown option or missing value: '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fail("unexpected argument '%s' (see --help)", argv[optind]);
    if (resolve_quant(spec, dtype, mixed))
        return fail("--dtype: '%s' is not bf16 or fp8%s", dtype, mixed ? " (--mixed is fp8)" : "");
    if (!o->out && !o->dry_run)
        return fail("--out DIR is required (see --help)");
    return 0;
}

/* ---- output directory --------------------------------------------------------------------- */

static bool is_ours(const char *name) {
    static const char *const exact[] = {"config.json", "generation_config.json",
                                        "model.safetensors", "model.safetensors.index.json",
                                        "tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i]) == 0)
            return true;
    size_t n = strlen(name);
    return strncmp(name, "model-", 6) == 0 && n > 12 && strcmp(name + n - 12, ".safetensors") == 0;
}

/* Creates dir (and parents); refuses a non-empty one unless force, then removes only the
 * files a checkpoint consists of, so no stale shard survives. */
static int prepare_dir(const char *dir, bool force, afd_err *err) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return afd_errf(err, -errno, "%s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return afd_errf(err, -errno, "--out %s: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    if (!d)
        return afd_errf(err, -errno, "--out %s: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) && rc == 0) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (!force)
            rc = afd_errf(err, -EEXIST, "--out %s is not empty (use --force to overwrite)", dir);
        else if (is_ours(e->d_name)) {
            snprintf(tmp, sizeof tmp, "%s/%s", dir, e->d_name);
            if (unlink(tmp) != 0)
                rc = afd_errf(err, -errno, "%s: %s", tmp, strerror(errno));
        }
    }
    closedir(d);
    return rc;
}

int mk_write_text(const char *dir, const char *name, const char *text, afd_err *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return afd_errf(err, -errno, "%s: %s", path, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    if (fclose(f) != 0 || !ok)
        return afd_errf(err, -EIO, "%s: write failed", path);
    return 0;
}

/* ---- main --------------------------------------------------------------------------------- */

static void print_plan(const mk_plan *p, const mk_spec *s, FILE *f) {
    const afd_model_config *c = &s->cfg;
    fprintf(f,
            "model: hidden %d, layers %d (%d MoE: %s), heads %d x %d (kv %d), share_q %d, "
            "inter %d, experts %d top-%d inter %d, shared %d, vocab %d\n",
            c->hidden, c->n_layers, afd_config_n_moe(c), s->moe_layers, c->n_heads, c->head_dim,
            c->n_kv_heads, c->share_q_dim, c->inter_dense, c->n_experts, c->top_k, c->moe_inter,
            c->share_inter, c->vocab);
    fprintf(f, "tensors %d, parameters %llu (%.1f M), bytes %llu (%.1f MB), shards %d, %s\n",
            p->n, (unsigned long long)p->n_params, (double)p->n_params / 1e6,
            (unsigned long long)p->total_bytes, (double)p->total_bytes / 1e6, p->n_shards,
            s->quant == MK_QUANT_NONE ? "bf16" : s->quant == MK_QUANT_ALL ? "fp8" : "mixed fp8");
}

static const char *const gen_config =
    "{\n  \"bos_token_id\": 0,\n  \"eos_token_id\": 128805,\n  \"do_sample\": true,\n"
    "  \"temperature\": 0.7,\n  \"top_p\": 0.95\n}\n";

static int write_all(const mk_opts *o, const mk_spec *spec, const mk_plan *plan,
                     const char *tokdir, afd_err *err) {
    int rc = prepare_dir(o->out, o->force, err);
    char *cfg = rc ? NULL : mk_spec_config_json(spec);
    if (!rc)
        rc = mk_write_text(o->out, "config.json", cfg, err);
    free(cfg);
    if (!rc)
        rc = mk_write_text(o->out, "generation_config.json", gen_config, err);
    if (!rc && tokdir)
        rc = mk_tok_write(tokdir, o->out, err);
    if (!rc)
        rc = mk_generate(plan, spec, o->out, o->quiet, err);
    if (!rc && plan->n_shards > 1) {
        char *index = mk_plan_index_json(plan);
        rc = mk_write_text(o->out, "model.safetensors.index.json", index, err);
        free(index);
    }
    return rc;
}

int main(int argc, char **argv) {
    afd_log_init("afd-mkmodel", AFD_LOG_INFO, AFD_LOG_TEXT);
    mk_opts o = {.preset = "tiny"};
    mk_spec spec = {.seed = 1};
    int rc = parse_opts(argc, argv, &o, &spec);
    if (rc)
        return rc == 1 ? 0 : rc;
    afd_err err = {0};
    char tokdir[PATH_MAX];
    rc = mk_spec_preset(&spec, o.preset, &err);
    if (!rc && o.config)
        rc = mk_spec_apply_file(&spec, o.config, &err);
    if (!rc)
        rc = mk_spec_validate(&spec, !o.no_tokenizer, &err);
    if (!rc && !o.no_tokenizer && !o.dry_run)
        rc = mk_tok_find(o.tokenizer_dir, tokdir, sizeof tokdir, &err);
    if (rc)
        return fail("%s", err.msg);
    mk_plan plan;
    mk_plan_build(&plan, &spec);
    mk_plan_shard(&plan, o.shard_size);
    if (o.dry_run) {
        print_plan(&plan, &spec, stdout);
        mk_plan_free(&plan);
        return 0;
    }
    double t0 = afd_now_s();
    rc = write_all(&o, &spec, &plan, o.no_tokenizer ? NULL : tokdir, &err);
    if (rc == 0 && !o.quiet) {
        print_plan(&plan, &spec, stderr);
        fprintf(stderr, "afd-mkmodel: wrote %s in %.2f s\n", o.out, afd_now_s() - t0);
    }
    mk_plan_free(&plan);
    return rc ? fail("%s", err.msg) : 0;
}
