/* afd-bench decode: decode throughput and step time of the AFD pipeline (attention here, the
 * FFN in an ffnd process over UCX) against the single-process engine, at several batch sizes,
 * with 1 and with 3 micro-batches in flight.
 *
 * Every configuration uses the same two cores: the single-process engine runs 2 threads; in
 * AFD this process (attention) and ffnd (the FFN) run one thread each. Each run prefills
 * `batch` sequences to `context` tokens, then times `steps` decode steps (one token per
 * sequence per step, fixed token ids: the work does not depend on them).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attnd/pipeline.h"
#include "bench/bench.h"
#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"

typedef struct dopts {
    const char *model, *build;
    int batches[8], n_batches;
    int context, steps;
} dopts;

typedef struct result {
    double tps, p50_ms, p99_ms, attn_ms, wait_ms; /* per step: attention, blocked on F2A */
} result;

typedef struct runner {
    afd_backend *be;
    st_set *set;
    afd_weights w;
    afd_engine e;
    afd_runstate rs;
    at_pipe pipe;
    bool afd;
    afd_kv_seq *seqs;
    afd_kv_seq **sp;
    int n;
} runner;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int fwd(runner *r, const afd_fwd_batch *b, float *logits) {
    return r->afd ? at_pipe_forward(&r->pipe, b, logits) : afd_engine_forward(&r->e, &r->rs, b, logits);
}

/* Prefills every sequence to `context` tokens, in chunks of up to 256 tokens. */
static int prefill(runner *r, int batch, int context, float *logits) {
    int chunk = 256, V = r->w.cfg.vocab;
    int32_t *tok = xmalloc((size_t)chunk * 4), *seq = xmalloc((size_t)chunk * 4),
            *pos = xmalloc((size_t)chunk * 4);
    uint8_t *want = xcalloc((size_t)chunk, 1);
    int rc = 0;
    for (int q = 0; q < batch && rc >= 0; q++) {
        if (kv_seq_reserve(&r->e.kv, &r->seqs[q], context + 64)) {
            rc = AFD_E_LIMIT;
            break;
        }
        for (int p0 = 0; p0 < context && rc >= 0; p0 += chunk) {
            int m = context - p0 < chunk ? context - p0 : chunk;
            for (int i = 0; i < m; i++)
                tok[i] = (int32_t)((q * 31 + (p0 + i) * 7 + 3) % V), seq[i] = q, pos[i] = p0 + i;
            r->seqs[q].n_tokens = p0 + m;
            afd_fwd_batch b = {.n_tok = m, .tokens = tok, .seq = seq, .pos = pos,
                               .n_seq = batch, .seqs = r->sp, .want_logits = want};
            rc = fwd(r, &b, logits);
        }
    }
    free(tok), free(seq), free(pos), free(want);
    return rc < 0 ? rc : 0;
}

static int decode(runner *r, int batch, int context, int steps, float *logits, result *res) {
    int32_t *tok = xmalloc((size_t)batch * 4), *seq = xmalloc((size_t)batch * 4),
            *pos = xmalloc((size_t)batch * 4);
    double *ms = xmalloc((size_t)steps * sizeof *ms);
    at_pipe_stats st0 = r->pipe.st;
    int rc = 0;
    double t_all = 0;
    for (int s = 0; s < steps && rc >= 0; s++) {
        for (int q = 0; q < batch; q++) {
            tok[q] = (int32_t)((q + s * 13) % r->w.cfg.vocab), seq[q] = q;
            pos[q] = context + s;
            r->seqs[q].n_tokens = context + s + 1;
        }
        afd_fwd_batch b = {.n_tok = batch, .tokens = tok, .seq = seq, .pos = pos,
                           .n_seq = batch, .seqs = r->sp, .want_logits = NULL};
        uint64_t t0 = afd_now_ns();
        rc = fwd(r, &b, logits);
        ms[s] = (double)(afd_now_ns() - t0) / 1e6;
        t_all += ms[s];
    }
    if (rc >= 0) {
        qsort(ms, (size_t)steps, sizeof *ms, cmp_d);
        res->tps = batch * steps / (t_all / 1e3);
        res->p50_ms = ms[steps / 2];
        res->p99_ms = ms[(int)((steps - 1) * 0.99)];
        res->attn_ms = (double)(r->pipe.st.attn_ns - st0.attn_ns) / 1e6 / steps;
        res->wait_ms = (double)(r->pipe.st.wait_ns - st0.wait_ns) / 1e6 / steps;
    }
    free(tok), free(seq), free(pos), free(ms);
    return rc < 0 ? rc : 0;
}

/* ---- one configuration -------------------------------------------------------------------- */

static int runner_open(runner *r, const dopts *o, int threads, bool afd, int batch, afd_err *err) {
    memset(r, 0, sizeof *r);
    int rc = afd_cpu_backend_new(NULL, threads, &r->be);
    if (!rc)
        rc = afd_model_open(o->model, afd ? AFD_PART_ATTN : AFD_PART_ALL, NULL, &r->w, &r->set,
                            err);
    afd_engine_opts eo;
    afd_engine_opts_default(&eo);
    int bs = eo.block_size;
    eo.kv_blocks = batch * ((o->context + 64 + bs - 1) / bs) + 1;
    if (!rc)
        rc = afd_engine_init(&r->e, r->be, &r->w, &eo, err);
    if (rc)
        return rc;
    r->n = batch;
    r->seqs = xcalloc((size_t)batch, sizeof *r->seqs);
    r->sp = xcalloc((size_t)batch, sizeof *r->sp);
    for (int i = 0; i < batch; i++)
        kv_seq_init(&r->seqs[i]), r->sp[i] = &r->seqs[i];
    r->afd = afd;
    return afd ? 0 : afd_runstate_init(&r->rs, &r->e, 256 > batch ? 256 : batch, batch);
}

static void runner_close(runner *r) {
    for (int i = 0; i < r->n; i++)
        kv_seq_release(&r->e.kv, &r->seqs[i]);
    free(r->seqs), free(r->sp);
    if (r->afd)
        at_pipe_free(&r->pipe);
    else if (r->rs.max_tok)
        afd_runstate_free(&r->rs, &r->e);
    afd_engine_free(&r->e);
    afd_weights_free(&r->w);
    st_set_free(r->set);
    afd_backend_free(r->be);
}

static int run_one(const dopts *o, int batch, int m, const bench_ffnd *ff, result *res) {
    runner r;
    afd_err err = {0};
    fc_group *g = NULL;
    int rc = runner_open(&r, o, m ? 1 : 2, m > 0, batch, &err);
    if (!rc && m > 0) {
        const afd_model_config *c = &r.w.cfg;
        int per_mb = (256 + m - 1) / m;
        fc_opts fo;
        fc_opts_default(&fo);
        fo.n_shards = 1;
        snprintf(fo.shards[0].host, sizeof fo.shards[0].host, "127.0.0.1");
        fo.shards[0].port = ff->port;
        fo.shards[0].ep_size = fo.shards[0].tp_size = 1;
        fo.slots = m;
        fo.max_tok = (uint32_t)per_mb;
        fo.role = WIRE_ROLE_BENCH;
        fo.fingerprint = afd_model_fingerprint(c, r.set);
        fo.dims = (wire_dims){.hidden = (uint32_t)c->hidden, .top_k = (uint32_t)c->top_k,
                              .n_experts = (uint32_t)c->n_experts,
                              .n_layers = (uint32_t)c->n_layers, .a2f_dtype = WIRE_DT_E4M3,
                              .f2a_dtype = WIRE_DT_BF16, .moe_layers = c->is_moe};
        rc = fc_open(&g, &fo, &err);
        if (!rc)
            rc = at_pipe_init(&r.pipe, &r.e, g, m, per_mb, batch);
    }
    float *logits = rc ? NULL : afd_try_alloc((size_t)256 * (size_t)r.w.cfg.vocab * sizeof(float));
    if (!rc && !logits)
        rc = -ENOMEM;
    if (!rc)
        rc = prefill(&r, batch, o->context, logits);
    if (!rc)
        rc = decode(&r, batch, o->context, o->steps, logits, res);
    if (rc)
        fprintf(stderr, "afd-bench decode: batch %d m %d: %s %s\n", batch, m, afd_strerror(rc),
                err.msg);
    free(logits);
    runner_close(&r);
    fc_close(g);
    return rc;
}

static int parse(int argc, char **argv, dopts *o) {
    memset(o, 0, sizeof *o);
    o->build = "build", o->model = "build/models/mini";
    o->context = 256, o->steps = 20;
    int def[] = {1, 8, 32, 64};
    memcpy(o->batches, def, sizeof def), o->n_batches = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) {
            o->model = "build/models/tiny", o->context = 64, o->steps = 8;
            o->batches[0] = 1, o->batches[1] = 8, o->n_batches = 2;
        } else if (!strcmp(a, "--model") && v)
            o->model = v, i++;
        else if (!strcmp(a, "--build") && v)
            o->build = v, i++;
        else if (!strcmp(a, "--context") && v)
            o->context = atoi(v), i++;
        else if (!strcmp(a, "--steps") && v)
            o->steps = atoi(v), i++;
        else if (!strcmp(a, "--batches") && v) {
            o->n_batches = 0;
            for (char *s = (char *)v; *s && o->n_batches < 8; s++) {
                o->batches[o->n_batches++] = (int)strtol(s, &s, 10);
                if (*s != ',')
                    break;
            }
            i++;
        } else if (!strcmp(a, "--help")) {
            printf("usage: afd-bench decode [--quick] [--model DIR] [--batches 1,8,32,64]\n"
                   "         [--context N] [--steps N] [--build DIR]\n"
                   "  decode tokens/s and step times: single process (2 threads) vs AFD\n"
                   "  (attention here 1 thread + ffnd 1 thread) with m = 1 and m = 3.\n"
                   "  Default model build/models/mini (afd-mkmodel --preset mini).\n");
            return 1;
        } else {
            fprintf(stderr, "afd-bench decode: unknown argument '%s' (--help)\n", a);
            return -1;
        }
    }
    for (int i = 0; i < o->n_batches; i++)
        if (o->batches[i] < 1 || o->batches[i] > 256) {
            fprintf(stderr, "afd-bench decode: batch %d outside 1..256\n", o->batches[i]);
            return -1;
        }
    if (o->context < 1 || o->steps < 3) {
        fprintf(stderr, "afd-bench decode: --context >= 1 and --steps >= 3 please\n");
        return -1;
    }
    return 0;
}

int bench_decode(int argc, char **argv) {
    dopts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    struct stat st;
    char cfgp[700];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", o.model);
    if (stat(cfgp, &st)) {
        fprintf(stderr, "afd-bench decode: no model in %s (make it: %s/bin/afd-mkmodel --preset "
                        "mini --out %s)\n", o.model, o.build, o.model);
        return 2;
    }
    if (!getenv("UCX_NET_DEVICES"))
        setenv("UCX_NET_DEVICES", "lo", 1);
    bench_ffnd ff;
    const char *extra[] = {"--max-tokens", "1024", NULL};
    if ((rc = bench_ffnd_start(o.build, o.model, extra, &ff))) {
        fprintf(stderr, "afd-bench decode: ffnd did not start (%s)\n", afd_strerror(rc));
        return 1;
    }
    printf("model %s, context %d, %d steps per point\n", o.model, o.context, o.steps);
    printf("%6s %-9s %10s %9s %9s %9s %9s\n", "batch", "mode", "tok/s", "p50 ms", "p99 ms",
           "attn ms", "wait ms");
    double gain = NAN, vs = NAN;
    for (int bi = 0; bi < o.n_batches && !rc; bi++) {
        int B = o.batches[bi];
        result R[3] = {{0}};
        const char *names[3] = {"single", "afd m=1", "afd m=3"};
        for (int k = 0; k < 3 && !rc; k++) {
            rc = run_one(&o, B, k == 0 ? 0 : (k == 1 ? 1 : 3), &ff, &R[k]);
            if (!rc)
                printf("%6d %-9s %10.1f %9.2f %9.2f %9.2f %9.2f\n", B, names[k], R[k].tps,
                       R[k].p50_ms, R[k].p99_ms, R[k].attn_ms, R[k].wait_ms);
        }
        if (!rc && bi == o.n_batches - 1)
            gain = R[2].tps / R[1].tps, vs = R[2].tps / R[0].tps;
    }
    bench_ffnd_stop(&ff);
    if (rc)
        return 1;
    printf("{\"pipeline_gain\": %.3f, \"afd_vs_single\": %.3f, \"batch\": %d, \"context\": %d}\n",
           gain, vs, o.batches[o.n_batches - 1], o.context);
    return 0;
}
