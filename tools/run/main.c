/* afd-run: the whole model in one process. The reference the AFD daemons are compared with.
 *
 *   afd-run --model DIR --tokens 1,2,3 --logits FILE [--exact]
 *       writes float32 little-endian logits of every position, row-major [n_tokens, vocab]
 *   afd-run --model DIR --prompt-tokens 0,1,2 [--prompt-tokens ...] --max-tokens N
 *       prints the generated token ids of each prompt, one line per prompt
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/backend/backend.h"
#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/layers/engine.h"
#include "common/layers/sampling.h"
#include "common/model/weights.h"

#define MAX_PROMPTS 256

typedef struct run_opts {
    const char *model;
    const char *tokens;           /* --tokens (logits mode) */
    const char *logits_path;
    const char *prompts[MAX_PROMPTS];
    int n_prompts;
    int max_tokens;
    int chunk;                    /* tokens per forward call during prefill */
    bool exact, stats, ignore_eos;
    afd_sampling sp;
    afd_engine_opts eng;
    afd_backend_opts be;
} run_opts;

static void usage(FILE *out) {
    fprintf(out,
        "usage: afd-run --model DIR (--tokens IDS --logits FILE | --prompt-tokens IDS... "
        "--max-tokens N) [options]\n"
        "\n"
        "Runs the Step-3 model of DIR (config.json + safetensors) in one process.\n"
        "\n"
        "modes:\n"
        "  --tokens IDS          comma-separated token ids; with --logits FILE, writes the logits\n"
        "                        of every position as float32 LE, row-major [n_tokens, vocab]\n"
        "  --prompt-tokens IDS   a prompt (repeatable: prompts decode together as one batch);\n"
        "                        prints the generated ids of each prompt, one line each\n"
        "options:\n"
        "  --max-tokens N        tokens to generate per prompt (default 16)\n"
        "  --exact               fp32 activations everywhere: no FP8 quantization of the FFN\n"
        "                        input, fp32 KV cache, fp32-activation kernels\n"
        "  --temperature T       0 = greedy (default); --top-p P, --top-k K, --seed S\n"
        "  --ignore-eos          keep generating after the EOS token\n"
        "  --kv-dtype D          bf16 (default), fp8 or f32; --block-size N (16), --kv-blocks N\n"
        "  --chunk N             prefill tokens per forward call (default 256)\n"
        "  --isa X               cpu kernels: auto, generic, avx2, avx512, amx\n"
        "  --threads N           cpu threads (default: all)\n"
        "  --stats               print per-layer residual RMS as one JSON line (stderr)\n"
        "examples:\n"
        "  afd-run --model build/models/tiny --tokens 0,100,200 --logits /tmp/l.f32 --exact\n"
        "  afd-run --model build/models/tiny --prompt-tokens 0,3,4,5 --max-tokens 8\n");
}

/* Parses "1,2,3" into a malloc'd array; each id must be in [0, vocab). */
static int parse_ids(const char *s, int vocab, int32_t **out, int *n) {
    int cap = 16, len = 0;
    int32_t *v = xmalloc((size_t)cap * sizeof *v);
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x >= vocab || (*end && *end != ',')) {
            fprintf(stderr, "afd-run: bad token id list '%s': ids are integers in [0, %d)\n", s,
                    vocab);
            free(v);
            return -EINVAL;
        }
        if (len == cap)
            v = xrealloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[len++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (len == 0) {
        fprintf(stderr, "afd-run: empty token id list\n");
        free(v);
        return -EINVAL;
    }
    *out = v, *n = len;
    return 0;
}

static afd_dtype parse_kv_dtype(const char *s) {
    if (strcmp(s, "bf16") == 0)
        return AFD_DT_BF16;
    if (strcmp(s, "fp8") == 0)
        return AFD_DT_F8_E4M3;
    if (strcmp(s, "f32") == 0)
        return AFD_DT_F32;
    return AFD_DT_INVALID;
}

static int parse_int(const char *name, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "afd-run: %s '%s' is not an integer in [%ld, %ld]\n", name, s, lo, hi);
        return -EINVAL;
    }
    *out = (int)x;
    return 0;
}

static int parse_float(const char *name, const char *s, double lo, double hi, float *out) {
    char *end;
    double x = strtod(s, &end);
    if (end == s || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "afd-run: %s '%s' is not a number in [%g, %g]\n", name, s, lo, hi);
        return -EINVAL;
    }
    *out = (float)x;
    return 0;
}

enum { O_TOKENS = 256, O_LOGITS, O_PROMPT, O_MAXTOK, O_EXACT, O_TEMP, O_TOPP, O_TOPK, O_SEED,
       O_IGNEOS, O_KVDT, O_BS, O_KVB, O_CHUNK, O_ISA, O_THREADS, O_STATS, O_MODEL, O_HELP };

static int parse_args(int argc, char **argv, run_opts *o) {
    static const struct option longopts[] = {
        {"model", 1, 0, O_MODEL},         {"tokens", 1, 0, O_TOKENS},
        {"logits", 1, 0, O_LOGITS},       {"prompt-tokens", 1, 0, O_PROMPT},
        {"max-tokens", 1, 0, O_MAXTOK},   {"exact", 0, 0, O_EXACT},
        {"temperature", 1, 0, O_TEMP},    {"top-p", 1, 0, O_TOPP},
        {"top-k", 1, 0, O_TOPK},          {"seed", 1, 0, O_SEED},
        {"ignore-eos", 0, 0, O_IGNEOS},   {"kv-dtype", 1, 0, O_KVDT},
        {"block-size", 1, 0, O_BS},       {"kv-blocks", 1, 0, O_KVB},
        {"chunk", 1, 0, O_CHUNK},         {"isa", 1, 0, O_ISA},
        {"threads", 1, 0, O_THREADS},     {"stats", 0, 0, O_STATS},
        {"help", 0, 0, O_HELP},           {0, 0, 0, 0}};
    int c, rc = 0, seed = 0;
    bool kv_set = false;
    while (!rc && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: o->model = optarg; break;
        case O_TOKENS: o->tokens = optarg; break;
        case O_LOGITS: o->logits_path = optarg; break;
        case O_PROMPT:
            if (o->n_prompts == MAX_PROMPTS) {
                fprintf(stderr, "afd-run: at most %d prompts\n", MAX_PROMPTS);
                return -EINVAL;
            }
            o->prompts[o->n_prompts++] = optarg;
            break;
        case O_MAXTOK: rc = parse_int("--max-tokens", optarg, 0, 1 << 20, &o->max_tokens); break;
        case O_EXACT: o->exact = true; break;
        case O_TEMP: rc = parse_float("--temperature", optarg, 0, 100, &o->sp.temperature); break;
        case O_TOPP: rc = parse_float("--top-p", optarg, 1e-6, 1, &o->sp.top_p); break;
        case O_TOPK: rc = parse_int("--top-k", optarg, 0, 1 << 20, &o->sp.top_k); break;
        case O_SEED:
            rc = parse_int("--seed", optarg, 0, 0x7fffffff, &seed);
            o->sp.seed = (uint64_t)seed;
            break;
        case O_IGNEOS: o->ignore_eos = true; break;
        case O_KVDT:
            o->eng.kv_dtype = parse_kv_dtype(optarg);
            kv_set = true;
            if (o->eng.kv_dtype == AFD_DT_INVALID) {
                fprintf(stderr, "afd-run: --kv-dtype '%s': use bf16, fp8 or f32\n", optarg);
                rc = -EINVAL;
            }
            break;
        case O_BS: rc = parse_int("--block-size", optarg, 1, 1024, &o->eng.block_size); break;
        case O_KVB: rc = parse_int("--kv-blocks", optarg, 1, 1 << 24, &o->eng.kv_blocks); break;
        case O_CHUNK: rc = parse_int("--chunk", optarg, 1, 1 << 16, &o->chunk); break;
        case O_ISA: o->be.isa = optarg; break;
        case O_THREADS: rc = parse_int("--threads", optarg, 0, 1024, &o->be.n_threads); break;
        case O_STATS: o->stats = true; break;
        case 'h':
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); return -EINVAL;
        }
    }
    if (rc)
        return rc;
    if (optind < argc) {
        fprintf(stderr, "afd-run: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if (!o->model || (!o->tokens && o->n_prompts == 0) || (o->tokens && o->n_prompts)) {
        fprintf(stderr, "afd-run: need --model and either --tokens or --prompt-tokens "
                        "(see --help)\n");
        return -EINVAL;
    }
    o->eng.exact = o->exact;
    if (o->exact && !kv_set)
        o->eng.kv_dtype = AFD_DT_F32;
    return 0;
}

/* Everything a run holds, released in one place. */
typedef struct run_ctx {
    afd_weights w;
    st_set *set;
    afd_backend *be;
    afd_engine eng;
    afd_runstate rs;
    afd_kv_seq seqs[MAX_PROMPTS];
    int n_seqs;
    bool have_w, have_eng, have_rs;
} run_ctx;

static void run_free(run_ctx *r) {
    for (int i = 0; i < r->n_seqs; i++)
        kv_seq_release(&r->eng.kv, &r->seqs[i]);
    if (r->have_rs)
        afd_runstate_free(&r->rs, &r->eng);
    if (r->have_eng)
        afd_engine_free(&r->eng);
    afd_backend_free(r->be);
    if (r->have_w)
        afd_weights_free(&r->w);
    st_set_free(r->set);
}

/* --exact wants fp32 activations: the best CPU variant other than AMX (bf16 activations). */
static const char *best_fp32_isa(void) {
    const char *isas[8];
    int n = afd_cpu_isas(isas, 8);
    for (int i = 0; i < n; i++)
        if (strcmp(isas[i], "amx") != 0)
            return isas[i];
    return "generic";
}

static int run_open(run_ctx *r, run_opts *o, int max_tok, int max_seq, int ctx_tokens) {
    afd_err err = {0};
    int rc = afd_model_open(o->model, AFD_PART_ALL, NULL, &r->w, &r->set, &err);
    if (rc) {
        log_error("load %s: %s", o->model, err.msg);
        return rc;
    }
    r->have_w = true;
    if (o->exact && (!o->be.isa || strcmp(o->be.isa, "auto") == 0))
        o->be.isa = best_fp32_isa();
    if ((rc = afd_backend_open(&o->be, &r->be))) {
        log_error("backend: %s", afd_strerror(rc));
        return rc;
    }
    int bs = o->eng.block_size;
    if (o->eng.kv_blocks == 0)
        o->eng.kv_blocks = max_seq * ((ctx_tokens + bs - 1) / bs) + max_seq;
    if ((rc = afd_engine_init(&r->eng, r->be, &r->w, &o->eng, &err))) {
        log_error("engine: %s", err.msg);
        return rc;
    }
    r->have_eng = true;
    if ((rc = afd_runstate_init(&r->rs, &r->eng, max_tok, max_seq))) {
        log_error("runstate for %d tokens: %s", max_tok, afd_strerror(rc));
        return rc;
    }
    r->have_rs = true;
    for (int i = 0; i < max_seq; i++)
        kv_seq_init(&r->seqs[r->n_seqs++]);
    return 0;
}

static void print_stats(const run_ctx *r, const double *rms) {
    char line[16384];
    int n = snprintf(line, sizeof line, "{\"layer_rms\":[");
    for (int l = 0; l < r->w.cfg.n_layers && n < (int)sizeof line - 32; l++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%.6g", l ? "," : "", rms[l]);
    fprintf(stderr, "%s]}\n", line);
}

/* --tokens/--logits: one sequence, logits of every position, prefill in chunks. */
static int run_logits(run_opts *o) {
    run_ctx r = {0};
    int32_t *ids = NULL;
    float *logits = NULL;
    FILE *out = NULL;
    int n = 0, rc;
    afd_model_config cfg;
    afd_err err = {0};
    if ((rc = afd_config_load(o->model, &cfg, &err))) {
        log_error("%s", err.msg);
        return rc;
    }
    if ((rc = parse_ids(o->tokens, cfg.vocab, &ids, &n)))
        return rc;
    if (n > cfg.max_pos) {
        log_error("%d tokens exceed max_position_embedding %d", n, cfg.max_pos);
        free(ids);
        return AFD_E_LIMIT;
    }
    int chunk = o->chunk ? o->chunk : 256;
    if (chunk > n)
        chunk = n;
    if ((rc = run_open(&r, o, chunk, 1, n)))
        goto done;
    double *rms = o->stats ? xcalloc((size_t)cfg.n_layers, sizeof(double)) : NULL;
    r.rs.layer_rms = rms;
    size_t V = (size_t)cfg.vocab;
    logits = afd_try_alloc((size_t)chunk * V * sizeof(float));
    out = fopen(o->logits_path ? o->logits_path : "/dev/null", "wb");
    if (!logits || !out) {
        log_error("%s: %s", o->logits_path, logits ? strerror(errno) : "out of memory");
        rc = -EIO;
        free(rms);
        goto done;
    }
    if ((rc = kv_seq_reserve(&r.eng.kv, &r.seqs[0], n)))
        goto done;
    int32_t *pos = xmalloc((size_t)chunk * sizeof *pos), *seq = xcalloc((size_t)chunk, 4);
    afd_kv_seq *seqs[1] = {&r.seqs[0]};
    for (int p0 = 0; p0 < n && !rc; p0 += chunk) {
        int m = n - p0 < chunk ? n - p0 : chunk;
        for (int i = 0; i < m; i++)
            pos[i] = p0 + i;
        afd_fwd_batch b = {.n_tok = m, .tokens = ids + p0, .seq = seq, .pos = pos, .n_seq = 1,
                           .seqs = seqs};
        int got = afd_engine_forward(&r.eng, &r.rs, &b, logits);
        if (got < 0)
            rc = got;
        else if (fwrite(logits, sizeof(float) * V, (size_t)got, out) != (size_t)got)
            rc = -EIO;
    }
    if (!rc && rms)
        print_stats(&r, rms);
    free(pos), free(seq), free(rms);
done:
    if (out && fclose(out) != 0 && !rc)
        rc = -EIO;
    if (rc)
        log_error("afd-run: %s", afd_strerror(rc));
    free(logits);
    free(ids);
    run_free(&r);
    return rc;
}

typedef struct gen_seq {
    int32_t *prompt;
    int n_prompt;
    int32_t *out;
    int n_out;
    bool done;
    afd_rng rng;
} gen_seq;

/* Prefill every prompt, chunk by chunk, sequences mixed in one batch; each sequence's last
 * prompt token yields its first generated token. */
static int prefill_all(run_ctx *r, run_opts *o, gen_seq *g, int np, int chunk, float *logits,
                       void *scratch) {
    int32_t *tok = xmalloc((size_t)chunk * 4), *seq = xmalloc((size_t)chunk * 4);
    int32_t *pos = xmalloc((size_t)chunk * 4);
    uint8_t *want = xmalloc((size_t)chunk);
    afd_kv_seq *seqs[MAX_PROMPTS];
    int s = 0, p = 0, rc = 0;
    for (int i = 0; i < np; i++)
        seqs[i] = &r->seqs[i];
    while (s < np && !rc) {
        int m = 0;
        for (; s < np && m < chunk; p = 0, s++) {
            for (; p < g[s].n_prompt && m < chunk; p++, m++) {
                tok[m] = g[s].prompt[p], seq[m] = s, pos[m] = p;
                want[m] = p == g[s].n_prompt - 1;
            }
            if (p < g[s].n_prompt)
                break;
        }
        afd_fwd_batch b = {.n_tok = m, .tokens = tok, .seq = seq, .pos = pos, .n_seq = np,
                           .seqs = seqs, .want_logits = want};
        int got = afd_engine_forward(&r->eng, &r->rs, &b, logits);
        if (got < 0) {
            rc = got;
            break;
        }
        for (int i = 0, row = 0; i < m; i++) {
            if (!want[i])
                continue;
            afd_sample smp;
            afd_sample_token(logits + (size_t)row++ * r->w.cfg.vocab, r->w.cfg.vocab, &o->sp,
                             &g[seq[i]].rng, scratch, &smp);
            g[seq[i]].out[g[seq[i]].n_out++] = smp.token;
        }
    }
    free(tok), free(seq), free(pos), free(want);
    return rc;
}

static bool seq_finished(const run_opts *o, const gen_seq *g, int eos) {
    return g->n_out >= o->max_tokens ||
           (!o->ignore_eos && g->n_out > 0 && g->out[g->n_out - 1] == eos);
}

/* Decode: one token per unfinished sequence per step, all in one batch. */
static int decode_all(run_ctx *r, run_opts *o, gen_seq *g, int np, float *logits, void *scratch) {
    int32_t tok[MAX_PROMPTS], seq[MAX_PROMPTS], pos[MAX_PROMPTS];
    afd_kv_seq *seqs[MAX_PROMPTS];
    for (int i = 0; i < np; i++)
        seqs[i] = &r->seqs[i];
    for (;;) {
        int m = 0;
        for (int s = 0; s < np; s++) {
            g[s].done = g[s].done || seq_finished(o, &g[s], r->w.cfg.eos_id);
            if (g[s].done)
                continue;
            tok[m] = g[s].out[g[s].n_out - 1], seq[m] = s;
            pos[m] = g[s].n_prompt + g[s].n_out - 1;
            m++;
        }
        if (m == 0)
            return 0;
        afd_fwd_batch b = {.n_tok = m, .tokens = tok, .seq = seq, .pos = pos, .n_seq = np,
                           .seqs = seqs};
        int got = afd_engine_forward(&r->eng, &r->rs, &b, logits);
        if (got < 0)
            return got;
        for (int i = 0; i < m; i++) {
            afd_sample smp;
            afd_sample_token(logits + (size_t)i * r->w.cfg.vocab, r->w.cfg.vocab, &o->sp,
                             &g[seq[i]].rng, scratch, &smp);
            g[seq[i]].out[g[seq[i]].n_out++] = smp.token;
        }
    }
}

static int run_generate(run_opts *o) {
    afd_model_config cfg;
    afd_err err = {0};
    int rc = afd_config_load(o->model, &cfg, &err);
    if (rc) {
        log_error("%s", err.msg);
        return rc;
    }
    int np = o->n_prompts, longest = 0;
    gen_seq g[MAX_PROMPTS];
    memset(g, 0, sizeof g);
    for (int i = 0; i < np && !rc; i++) {
        rc = parse_ids(o->prompts[i], cfg.vocab, &g[i].prompt, &g[i].n_prompt);
        g[i].out = xmalloc((size_t)(o->max_tokens + 1) * sizeof(int32_t));
        afd_rng_seed(&g[i].rng, o->sp.seed);
        if (g[i].n_prompt + o->max_tokens > longest)
            longest = g[i].n_prompt + o->max_tokens;
    }
    if (!rc && longest > cfg.max_pos) {
        log_error("prompt + max tokens = %d exceeds max_position_embedding %d", longest,
                  cfg.max_pos);
        rc = AFD_E_LIMIT;
    }
    run_ctx r = {0};
    int chunk = o->chunk ? o->chunk : 256;
    if (chunk < np)
        chunk = np;
    if (!rc)
        rc = run_open(&r, o, chunk, np, longest);
    for (int i = 0; i < np && !rc; i++)
        if ((rc = kv_seq_reserve(&r.eng.kv, &r.seqs[i], longest)))
            log_error("kv cache too small for %d sequences of %d tokens", np, longest);
    float *logits = rc ? NULL : afd_try_alloc((size_t)chunk * (size_t)cfg.vocab * sizeof(float));
    void *scratch = rc ? NULL : xmalloc(afd_sample_scratch_size(cfg.vocab));
    if (!rc && o->max_tokens > 0) {
        uint64_t t0 = afd_now_ns();
        rc = prefill_all(&r, o, g, np, chunk, logits, scratch);
        uint64_t t1 = afd_now_ns();
        if (!rc)
            rc = decode_all(&r, o, g, np, logits, scratch);
        uint64_t t2 = afd_now_ns();
        int gen = 0;
        for (int i = 0; i < np; i++)
            gen += g[i].n_out;
        log_info("prefill %.1f ms, decode %d tokens in %.1f ms (%s)", (t1 - t0) / 1e6, gen - np,
                 (t2 - t1) / 1e6, afd_be_describe(r.be));
    }
    for (int i = 0; i < np && !rc; i++) {
        for (int j = 0; j < g[i].n_out; j++)
            printf("%s%d", j ? "," : "", g[i].out[j]);
        printf("\n");
    }
    if (rc)
        log_error("afd-run: %s", afd_strerror(rc));
    for (int i = 0; i < np; i++)
        free(g[i].prompt), free(g[i].out);
    free(logits), free(scratch);
    run_free(&r);
    return rc;
}

int main(int argc, char **argv) {
    afd_log_init("afd-run", AFD_LOG_INFO, AFD_LOG_TEXT);
    run_opts o;
    memset(&o, 0, sizeof o);
    afd_sampling_default(&o.sp);
    afd_engine_opts_default(&o.eng);
    o.be.kind = "cpu";
    o.max_tokens = 16;
    if (parse_args(argc, argv, &o))
        return 2;
    int rc = o.tokens ? run_logits(&o) : run_generate(&o);
    return rc ? 1 : 0;
}
