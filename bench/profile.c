/* profile.c: `afd-bench profile`: the measured profile afd-plan consumes (docs/planning.md §4,
 * format afd-profile v1), taken on this machine with the engine's code and the model's weights.
 *
 *   1. ffn.samples        the FFN of one MoE layer per token count, real routing
 *   2. attention.samples  one layer's attention side per batch x context
 *      step_overhead_us   embedding, final norm, lm_head, sampling for the largest batch
 *      kv_capacity_tokens the engine's KV pool in the --kv-mem budget
 *   3. link.samples       one-way transfers over UCX on loopback (or --link-from FILE)
 *   4. the file, read back with afd-plan's own reader and fits (tools/plan/profile.h), and one
 *      JSON summary line of the fits' headline numbers.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/profile_impl.h"
#include "common/base/clock.h"
#include "common/base/conf.h"
#include "common/base/err.h"
#include "tools/plan/profile.h"

static void usage(FILE *out) {
    fprintf(out,
        "usage: afd-bench profile --model DIR [options]\n"
        "\n"
        "Measures this machine with the real engine and the model's weights and writes a\n"
        "profile for `afd-plan plan --profile FILE` (format afd-profile v1, docs/planning.md\n"
        "section 4). Times are microseconds for one layer (the first MoE layer).\n"
        "\n"
        "  --model DIR          the model (config.json + safetensors)\n"
        "  --out FILE           the profile to write (default afd-profile.json)\n"
        "  --quick              small grids and few repetitions (CI smoke run)\n"
        "  --batches LIST       attention batch sizes, sequences (default 1,4,16,64; quick 1,4,8)\n"
        "  --contexts LIST      attention contexts, tokens (default 256,1024,4096; quick 256,1024)\n"
        "  --tokens LIST        FFN batch sizes, tokens (default 1,8,64,256; quick 1,16,256)\n"
        "  --link-bytes LIST    link transfer sizes, bytes (default: one token's A2F up to 4x\n"
        "                       an F2A of the largest --tokens, log-spaced)\n"
        "  --link-via xport|raw measure through afd's transport (proto/xport.h, default) or\n"
        "                       with a bare UCP active-message ping-pong (the yardstick)\n"
        "  --link-from FILE     take link.samples from another profile instead of measuring\n"
        "  --no-link            measure no link (the file then needs link samples added\n"
        "                       before afd-plan can use it)\n"
        "  --shards N           time FFN shard 0 of N expert-parallel shards (default 1)\n"
        "  --kv-mem SIZE        KV-cache memory of one attention instance, for\n"
        "                       attention.kv_capacity_tokens (default 8gb; k/m/g/t units)\n"
        "  --kv-dtype D         KV cache dtype: bf16 (default), fp8 or f32\n"
        "  --threads N          cpu threads (default: all)\n"
        "  --isa X              cpu kernels: auto, generic, avx2, avx512, amx\n"
        "  --warm               no cache flush between runs (default: each run starts with\n"
        "                       its weights and KV out of the caches, as in a decode step)\n"
        "\n"
        "LIST is comma-separated integers. UCX_NET_DEVICES defaults to lo.\n"
        "The last line is one JSON object: fitted coefficients, their errors, the file.\n"
        "examples:\n"
        "  afd-bench profile --model build/models/tiny --quick --out /tmp/p.json\n"
        "  afd-bench profile --model build/models/mini --out build/profile-mini.json\n"
        "  afd-plan plan --model build/models/mini --profile build/profile-mini.json --tpot-ms 50\n");
}

/* ---- options ---- */

static int parse_list(const char *opt, const char *s, long lo, long hi, prof_list *l) {
    const char *p = s;
    l->n = 0;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < lo || x > hi || (*end && *end != ',') ||
            l->n == PROF_MAX_POINTS) {
            fprintf(stderr, "afd-bench profile: %s '%s': want up to %d comma-separated integers "
                            "in [%ld, %ld]\n", opt, s, PROF_MAX_POINTS, lo, hi);
            return 2;
        }
        l->v[l->n++] = x;
        p = *end ? end + 1 : end;
    }
    if (l->n == 0) {
        fprintf(stderr, "afd-bench profile: %s: empty list\n", opt);
        return 2;
    }
    return 0;
}

/* "8gb", "512m", "1048576": bytes (conf_parse_size, as every daemon reads sizes). */
static int parse_size(const char *opt, const char *s, uint64_t *out) {
    if (conf_parse_size(s, out) != 0 || *out == 0) {
        fprintf(stderr, "afd-bench profile: %s '%s': want a size such as 8gb, 512mb or a byte "
                        "count above 0\n", opt, s);
        return 2;
    }
    return 0;
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "afd-bench profile: %s '%s': want an integer in [%d, %d]\n", opt, s, lo,
                hi);
        return 2;
    }
    *out = (int)x;
    return 0;
}

static void defaults(prof_opts *o) {
    memset(o, 0, sizeof *o);
    o->out = "afd-profile.json";
    o->isa = "auto";
    o->kv_dtype = "bf16";
    o->shards = 1;
    o->kv_mem = 8ull << 30;
}

/* Lists not given on the command line, and the timing budget, by --quick. */
static void fill_defaults(prof_opts *o) {
    static const prof_list qb = {{1, 4, 8}, 3}, fb = {{1, 4, 16, 64}, 4};
    static const prof_list qc = {{256, 1024}, 2}, fc = {{256, 1024, 4096}, 3};
    static const prof_list qt = {{1, 16, 256}, 3}, ft = {{1, 8, 64, 256}, 4};
    if (!o->batches.n)
        o->batches = o->quick ? qb : fb;
    if (!o->contexts.n)
        o->contexts = o->quick ? qc : fc;
    if (!o->tokens.n)
        o->tokens = o->quick ? qt : ft;
    o->min_reps = o->quick ? 7 : 9;
    o->max_reps = o->quick ? 50 : 200;
    o->budget_ms = o->quick ? 40 : 300;
    o->rounds = o->quick ? 2 : 3;
}

enum { O_MODEL = 256, O_OUT, O_QUICK, O_BATCHES, O_CONTEXTS, O_TOKENS, O_LINKB, O_LINKFROM,
       O_NOLINK, O_SHARDS, O_KVMEM, O_KVDT, O_THREADS, O_ISA, O_WARM, O_LINKVIA, O_HELP };

static int parse_opt(int c, prof_opts *o) {
    switch (c) {
    case O_MODEL: o->model = optarg; return 0;
    case O_OUT: o->out = optarg; return 0;
    case O_QUICK: o->quick = true; return 0;
    case O_WARM: o->warm = true; return 0;
    case O_LINKVIA:
        o->link_raw = strcmp(optarg, "raw") == 0;
        if (!o->link_raw && strcmp(optarg, "xport") != 0) {
            fprintf(stderr, "afd-bench profile: --link-via '%s': use xport or raw\n", optarg);
            return 2;
        }
        return 0;
    case O_BATCHES: return parse_list("--batches", optarg, 1, 4096, &o->batches);
    case O_CONTEXTS: return parse_list("--contexts", optarg, 1, 1 << 20, &o->contexts);
    case O_TOKENS: return parse_list("--tokens", optarg, 1, 16384, &o->tokens);
    case O_LINKB: return parse_list("--link-bytes", optarg, 1, 1L << 30, &o->link_bytes);
    case O_LINKFROM: o->link_from = optarg; return 0;
    case O_NOLINK: o->no_link = true; return 0;
    case O_SHARDS: return parse_int("--shards", optarg, 1, 1 << 16, &o->shards);
    case O_KVMEM: return parse_size("--kv-mem", optarg, &o->kv_mem);
    case O_THREADS: return parse_int("--threads", optarg, 1, 1024, &o->threads);
    case O_ISA: o->isa = optarg; return 0;
    case O_KVDT:
        o->kv_dtype = optarg;
        if (strcmp(optarg, "bf16") && strcmp(optarg, "fp8") && strcmp(optarg, "f32")) {
            fprintf(stderr, "afd-bench profile: --kv-dtype '%s': use bf16, fp8 or f32\n", optarg);
            return 2;
        }
        return 0;
    case O_HELP: usage(stdout); return 1;
    default: usage(stderr); return 2;
    }
}

/* 0 to run, 1 after --help, 2 on bad usage. */
static int parse(int argc, char **argv, prof_opts *o) {
    static const struct option longopts[] = {
        {"model", 1, 0, O_MODEL},       {"out", 1, 0, O_OUT},
        {"quick", 0, 0, O_QUICK},       {"batches", 1, 0, O_BATCHES},
        {"contexts", 1, 0, O_CONTEXTS}, {"tokens", 1, 0, O_TOKENS},
        {"link-bytes", 1, 0, O_LINKB},  {"link-from", 1, 0, O_LINKFROM},
        {"no-link", 0, 0, O_NOLINK},    {"shards", 1, 0, O_SHARDS},
        {"kv-mem", 1, 0, O_KVMEM},      {"kv-dtype", 1, 0, O_KVDT},
        {"threads", 1, 0, O_THREADS},   {"isa", 1, 0, O_ISA},
        {"warm", 0, 0, O_WARM},         {"link-via", 1, 0, O_LINKVIA},
        {"help", 0, 0, O_HELP},         {0, 0, 0, 0}};
    defaults(o);
    optind = 1;
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
        rc = parse_opt(c == 'h' ? O_HELP : c, o);
    if (rc)
        return rc;
    if (optind < argc) {
        fprintf(stderr, "afd-bench profile: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->model) {
        fprintf(stderr, "afd-bench profile: --model DIR is required (see --help)\n");
        return 2;
    }
    if (o->link_from && o->no_link) {
        fprintf(stderr, "afd-bench profile: --link-from and --no-link exclude each other\n");
        return 2;
    }
    fill_defaults(o);
    return 0;
}

/* ---- labels ---- */

static void model_label(const char *dir, char *out, size_t n) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    size_t b = len;
    while (b > 0 && dir[b - 1] != '/')
        b--;
    snprintf(out, n, "%.*s", (int)(len - b), dir + b);
}

static void hardware_label(const prof_result *r, char *out, size_t n) {
    char cpu[96] = "cpu";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(cpu, sizeof cpu, "%s", colon + 2);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    }
    if (f)
        fclose(f);
    snprintf(out, n, "%s, %s", cpu, r->backend);
}

/* ---- the file ---- */

static double round3(double x) { return round(x * 1000.0) / 1000.0; }

static json_t *samples_json(const prof_sample *s, int n, const char *k0, const char *k1) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, k0, json_integer((json_int_t)s[i].x0));
        if (k1)
            json_object_set_new(o, k1, json_integer((json_int_t)s[i].x1));
        json_object_set_new(o, "us", json_real(round3(s[i].us)));
        if (s[i].reps > 0) {
            json_object_set_new(o, "us_min", json_real(round3(s[i].us_min)));
            json_object_set_new(o, "us_max", json_real(round3(s[i].us_max)));
            json_object_set_new(o, "runs", json_integer(s[i].reps));
        }
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *attention_json(const prof_opts *o, const prof_result *r) {
    return json_pack("{s:o, s:I, s:I, s:s, s:I, s:f, s:I, s:i}",
                     "samples", samples_json(r->attn, r->n_attn, "batch", "context"),
                     "kv_capacity_tokens", (json_int_t)r->kv_capacity_tokens,
                     "kv_mem_bytes", (json_int_t)o->kv_mem, "kv_dtype", r->kv_dtype,
                     "kv_bytes_per_token", (json_int_t)r->kv_bytes_per_token,
                     "step_overhead_us", round3(r->step_overhead_us),
                     "step_overhead_batch", (json_int_t)r->overhead_batch,
                     "layer", r->layer);
}

static json_t *ffn_json(const prof_result *r) {
    return json_pack("{s:o, s:i, s:i, s:b, s:f}", "samples",
                     samples_json(r->ffn, r->n_ffn, "tokens", NULL), "shards", r->shards,
                     "layer", r->layer, "moe", r->layer_moe,
                     "route_imbalance", round(r->route_imbalance * 1000) / 1000);
}

static json_t *link_json(const prof_result *r) {
    json_t *l = json_pack("{s:f, s:f}", "a2f_bytes_per_token",
                          round(r->a2f_bytes_per_token * 100) / 100, "f2a_bytes_per_token",
                          round(r->f2a_bytes_per_token * 100) / 100);
    if (r->have_link) {
        json_object_set_new(l, "samples", samples_json(r->link, r->n_link, "bytes", NULL));
        json_object_set_new(l, "source", json_string(r->link_source));
    }
    return l;
}

static const char *comment(const prof_result *r) {
    static char c[1024];
    snprintf(c, sizeof c,
             "Measured by afd-bench profile. Times are medians, microseconds, of layer %d (%s), "
             "caches flushed before each run. attention: afd_attn_layer + afd_ffn_prepare "
             "(projections, MFA attention over the paged KV cache, router, FP8 quantisation) "
             "for one decode token of each of `batch` sequences holding `context` positions. "
             "ffn: afd_ffn_forward of FFN shard 0 of %d, inputs and routing from the model's "
             "router on a prefill of random token ids. step_overhead_us: embedding, final "
             "norm, lm_head and greedy sampling for %d sequences. kv_capacity_tokens: the KV "
             "pool (%s, all %d layers) in kv_mem_bytes. link: one-way transfers.",
             r->layer, r->layer_moe ? "the first MoE layer" : "no MoE layer: layer 0",
             r->shards, r->overhead_batch, r->kv_dtype, r->n_layers);
    return c;
}

static int write_profile(const prof_opts *o, const prof_result *r) {
    json_t *root = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "format",
                             "afd-profile", "version", 1, "model", r->model_name, "hardware",
                             r->hardware, "generator", "afd-bench profile", "comment",
                             comment(r), "attention", attention_json(o, r), "ffn", ffn_json(r),
                             "link", link_json(r));
    if (!root) {
        fprintf(stderr, "afd-bench profile: building the JSON failed\n");
        return -ENOMEM;
    }
    int rc = json_dump_file(root, o->out, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
    json_decref(root);
    if (rc) {
        fprintf(stderr, "afd-bench profile: --out %s: cannot write: %s\n", o->out,
                strerror(errno));
        return -EIO;
    }
    return 0;
}

/* ---- the summary ---- */

static void print_summary(const prof_opts *o, const prof_result *r, const plan_profile *p,
                          double secs) {
    printf("fits (afd-plan's, us per layer): attention %.3g + %.3g b + %.3g b c (max err "
           "%.0f%%); ffn %.3g + %.3g n (max err %.0f%%)", p->attn.coef[0], p->attn.coef[1],
           p->attn.coef[2], 100 * p->attn.max_rel_err, p->ffn.coef[0], p->ffn.coef[1],
           100 * p->ffn.max_rel_err);
    if (r->have_link)
        printf("; link %.3g + %.3g bytes (max err %.0f%%)", p->link.coef[0], p->link.coef[1],
               100 * p->link.max_rel_err);
    printf("\nwrote %s in %.1f s\n", o->out, secs);
    json_t *j = json_pack(
        "{s:s, s:s, s:b, s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:I, s:f, s:f, s:f,"
        " s:[f,f,f], s:f, s:[f,f], s:f, s:f, s:f}",
        "bench", "profile", "file", o->out, "quick", o->quick, "model", r->model_name, "layer",
        r->layer, "attention_samples", r->n_attn, "ffn_samples", r->n_ffn, "link_samples",
        r->n_link, "shards", r->shards, "step_overhead_us", round3(r->step_overhead_us),
        "kv_capacity_tokens", (json_int_t)r->kv_capacity_tokens, "a2f_bytes_per_token",
        r->a2f_bytes_per_token, "f2a_bytes_per_token", r->f2a_bytes_per_token,
        "route_imbalance", r->route_imbalance, "attention_fit_us", p->attn.coef[0],
        p->attn.coef[1], p->attn.coef[2], "attention_fit_max_err", p->attn.max_rel_err,
        "ffn_fit_us", p->ffn.coef[0], p->ffn.coef[1], "ffn_fit_max_err", p->ffn.max_rel_err,
        "seconds", round(secs * 10) / 10, "link_gbps",
        r->have_link && p->link.coef[1] > 0 ? 1e-3 / p->link.coef[1] : 0.0);
    if (j && r->have_link) {
        json_object_set_new(j, "link_latency_us", json_real(p->link.coef[0]));
        json_object_set_new(j, "link_fit_max_err", json_real(p->link.max_rel_err));
    }
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    printf("%s\n", s ? s : "{\"bench\":\"profile\",\"error\":\"summary\"}");
    free(s);
    json_decref(j);
}

/* The file read back with afd-plan's reader, which also fits it. Without link samples the
 * reader would refuse it: the attention and FFN fits come from a copy with a stand-in link. */
static int read_back(const prof_opts *o, const prof_result *r, plan_profile *p) {
    afd_err err = {0};
    int rc;
    if (r->have_link) {
        rc = plan_profile_load(o->out, p, &err);
    } else {
        json_error_t je;
        json_t *root = json_load_file(o->out, 0, &je);
        json_t *stand_in = json_pack("{s:[{s:i, s:f}, {s:i, s:f}]}", "samples", "bytes", 1, "us",
                                     1.0, "bytes", 2, "us", 2.0);
        json_object_set_new(root, "link", stand_in);
        char *s = json_dumps(root, JSON_COMPACT);
        rc = s ? plan_profile_parse(s, strlen(s), o->out, p, &err) : -ENOMEM;
        free(s);
        json_decref(root);
    }
    if (rc)
        fprintf(stderr, "afd-bench profile: %s does not read back as a profile: %s\n", o->out,
                err.msg);
    return rc;
}

/* ---- the run ---- */

static int measure(const prof_opts *o, prof_result *r) {
    prof_engine *pe = NULL;
    prof_timer t;
    int rc = prof_timer_init(&t, o);
    if (!rc)
        rc = prof_engine_open(o, &pe, r);
    if (!rc) {
        hardware_label(r, r->hardware, sizeof r->hardware);
        printf("afd-bench profile: %s on %s%s\n", r->model_name, r->hardware,
               o->quick ? " (quick)" : "");
    }
    if (!rc)
        rc = prof_measure_ffn(pe, &t, r);
    if (!rc)
        rc = prof_measure_attention(pe, &t, r);
    if (!rc)
        rc = prof_measure_overhead(pe, &t, r);
    prof_engine_free(pe);
    prof_timer_free(&t);
    if (!rc)
        printf("kv capacity: %ld tokens in %.2f GiB (%zu bytes per token, %s)\n",
               r->kv_capacity_tokens, (double)o->kv_mem / (1u << 30), r->kv_bytes_per_token,
               r->kv_dtype);
    return rc;
}

static int measure_link(const prof_opts *o, prof_result *r) {
    printf("link: A2F %.1f, F2A %.1f bytes per token (proto/wire.h sizes)\n",
           r->a2f_bytes_per_token, r->f2a_bytes_per_token);
    if (o->no_link) {
        printf("link: not measured (--no-link): add link.samples before planning\n");
        return 0;
    }
    return o->link_from ? prof_link_from_file(o->link_from, r) : prof_measure_link(o, r);
}

int bench_profile(int argc, char **argv) {
    prof_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;
    uint64_t t0 = afd_now_ns();
    prof_result *r = calloc(1, sizeof *r);
    if (!r)
        return 1;
    model_label(o.model, r->model_name, sizeof r->model_name);
    rc = measure(&o, r);
    if (!rc)
        rc = measure_link(&o, r);
    if (!rc)
        rc = write_profile(&o, r);
    plan_profile p;
    if (!rc)
        rc = read_back(&o, r, &p);
    if (!rc)
        print_summary(&o, r, &p, (double)(afd_now_ns() - t0) * 1e-9);
    free(r);
    return rc ? 1 : 0;
}
