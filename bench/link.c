/* afd-bench link: the A2F + F2A round trip of one layer for one micro-batch, through a real
 * ffnd (started here, with --wire-only so that no FFN or conversion time is in the figure) and the
 * attention side's client library, against a bare UCP ping-pong of the same bytes
 * (link_raw.c), over shared memory and over TCP on loopback.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/model/weights.h"
#include "proto/ffn_client.h"

typedef struct shape {
    const char *name;
    int hidden, tokens;
} shape;

static const shape shapes[] = {
    {"paper", 7168, 128}, /* Step-3: 917,504 B FP8 out, 1,835,008 B BF16 back */
    {"mini", 1024, 128},  /* the mini preset's hidden size */
};

typedef struct mode {
    const char *name, *tls;
} mode;

static const mode modes[] = {{"shm", "sm,tcp"}, {"tcp", "tcp"}};

typedef struct lopts {
    int iters, warmup;
    const char *build;
    const char *only_shape, *only_mode;
} lopts;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stats {
    double p50, p99, max;
} stats;

static stats summarize(double *us, int n) {
    qsort(us, (size_t)n, sizeof *us, cmp_d);
    stats s = {us[n / 2], us[(int)((n - 1) * 0.99)], us[n - 1]};
    return s;
}

/* A one-dense-layer model of the shape's hidden size (no tokenizer, tiny vocab): ffnd needs the
 * dims and a fingerprint, not real FFN weights (wire-only mode). */
static int make_model(const lopts *o, const shape *sh, char *dir, size_t n) {
    snprintf(dir, n, "%s/models/link-%d", o->build, sh->hidden);
    char probe[600];
    snprintf(probe, sizeof probe, "%s/config.json", dir);
    struct stat st;
    if (stat(probe, &st) == 0)
        return 0;
    char cfg[600], cmd[2000];
    snprintf(cfg, sizeof cfg, "%s.json", dir);
    FILE *f = fopen(cfg, "w");
    if (!f)
        return -errno;
    fprintf(f,
            "{\"hidden_size\": %d, \"num_hidden_layers\": 2, \"moe_layers_enum\": \"1\", "
            "\"vocab_size\": 256, \"num_attention_heads\": 1, \"head_dim\": 64, "
            "\"share_q_dim\": 128, \"intermediate_size\": 128, \"moe_intermediate_size\": 128, "
            "\"share_expert_dim\": 128, \"moe_num_experts\": 4, \"moe_top_k\": 2, "
            "\"bos_token_id\": 0, \"eos_token_id\": 1}\n",
            sh->hidden);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s/bin/afd-mkmodel --quiet --no-tokenizer --config %s --out %s --force",
             o->build, cfg, dir);
    return system(cmd) == 0 ? 0 : -EIO;
}

/* Round trips through ffnd; us[iters]. */
static int afd_rounds(const lopts *o, const char *model, const shape *sh, const mode *m,
                      double *us, double *take_us, size_t *a2f, size_t *f2a) {
    afd_model_config cfg;
    afd_err err = {0};
    st_set *set = NULL;
    int rc = afd_config_load(model, &cfg, &err);
    if (!rc)
        rc = st_set_open(model, &set, &err);
    if (rc) {
        fprintf(stderr, "link: %s\n", err.msg);
        return rc;
    }
    bench_ffnd p;
    const char *extra[] = {"--wire-only", "--max-tokens", "256", NULL};
    if ((rc = bench_ffnd_start(o->build, model, extra, &p))) {
        st_set_free(set);
        fprintf(stderr, "link: ffnd did not start (%s)\n", afd_strerror(rc));
        return rc;
    }
    fc_opts fo;
    fc_opts_default(&fo);
    fo.n_shards = 1;
    snprintf(fo.shards[0].host, sizeof fo.shards[0].host, "127.0.0.1");
    fo.shards[0].port = p.port;
    fo.shards[0].ep_size = fo.shards[0].tp_size = 1;
    fo.slots = 1;
    fo.max_tok = (uint32_t)sh->tokens;
    fo.role = WIRE_ROLE_BENCH;
    fo.fingerprint = afd_model_fingerprint(&cfg, set);
    fo.dims = (wire_dims){.hidden = (uint32_t)cfg.hidden, .top_k = (uint32_t)cfg.top_k,
                          .n_experts = (uint32_t)cfg.n_experts,
                          .n_layers = (uint32_t)cfg.n_layers, .a2f_dtype = WIRE_DT_E4M3,
                          .f2a_dtype = WIRE_DT_BF16};
    st_set_free(set);
    fc_group *g = NULL;
    if ((rc = fc_open(&g, &fo, &err))) {
        fprintf(stderr, "link: %s\n", err.msg);
        bench_ffnd_stop(&p);
        return rc;
    }
    float *out = xmalloc((size_t)sh->tokens * (size_t)sh->hidden * sizeof(float));
    *a2f = wire_a2f_size(&fo.dims, (uint32_t)sh->tokens, false);
    *f2a = wire_f2a_size(&fo.dims, (uint32_t)sh->tokens, false);
    for (int i = 0; !rc && i < o->warmup + o->iters; i++) {
        wire_a2f a;
        fc_a2f_buffer(g, 0, (uint32_t)sh->tokens, false, &a);
        for (uint32_t t = 0; t < a.n_tok * a.groups; t++)
            a.scales[t] = 1.0f;
        int64_t t0 = (int64_t)afd_now_ns();
        rc = fc_send(g, 0, (uint64_t)i, 0, 0);
        /* busy-poll, as attnd does while a step is in flight */
        while (!rc && (rc = fc_ready(g, 0)) == 0)
            fc_progress(g);
        /* the round trip ends when every answer is in (held in place in the receive buffer);
         * turning it into fp32 partial sums is the attention side's compute, timed apart */
        int64_t t1 = (int64_t)afd_now_ns();
        rc = rc < 0 ? rc : fc_take(g, 0, out);
        if (i >= o->warmup) {
            us[i - o->warmup] = (double)(t1 - t0) / 1e3;
            take_us[i - o->warmup] = (double)((int64_t)afd_now_ns() - t1) / 1e3;
        }
    }
    (void)m;
    free(out);
    fc_close(g);
    bench_ffnd_stop(&p);
    return rc;
}

static int parse(int argc, char **argv, lopts *o) {
    memset(o, 0, sizeof *o);
    o->iters = 300, o->warmup = 30, o->build = "build";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick"))
            o->iters = 60, o->warmup = 10;
        else if (!strcmp(a, "--iters") && v)
            o->iters = atoi(v), i++;
        else if (!strcmp(a, "--build") && v)
            o->build = v, i++;
        else if (!strcmp(a, "--shape") && v)
            o->only_shape = v, i++;
        else if (!strcmp(a, "--mode") && v)
            o->only_mode = v, i++;
        else if (!strcmp(a, "--help")) {
            printf("usage: afd-bench link [--quick] [--iters N] [--shape paper|mini] "
                   "[--mode shm|tcp] [--build DIR]\n"
                   "  A2F+F2A round trip of one micro-batch through ffnd (--wire-only) vs a\n"
                   "  bare UCP ping-pong of the same bytes; shapes: paper 128x7168, mini "
                   "128x1024.\n"
                   "  Needs DIR/bin/ffnd and afd-mkmodel (default DIR: build).\n");
            return 1;
        } else {
            fprintf(stderr, "afd-bench link: unknown argument '%s' (--help)\n", a);
            return -1;
        }
    }
    if (o->iters < 10) {
        fprintf(stderr, "afd-bench link: --iters %d: need >= 10\n", o->iters);
        return -1;
    }
    return 0;
}

/* A JSON number, or null for a figure that was not measured. */
static const char *jnum(char buf[32], double v, const char *fmt) {
    if (isnan(v))
        return "null";
    snprintf(buf, 32, fmt, v);
    return buf;
}

int bench_link(int argc, char **argv) {
    lopts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    if (!getenv("UCX_NET_DEVICES"))
        setenv("UCX_NET_DEVICES", "lo", 1);
    setenv("UCX_WARN_UNUSED_ENV_VARS", "n", 0);
    double *us = xmalloc((size_t)o.iters * sizeof *us);
    double *take = xmalloc((size_t)o.iters * sizeof *take);
    double ratio[2] = {NAN, NAN}, head_p50 = NAN, head_p99 = NAN;
    printf("%-6s %-4s %10s %10s %9s %9s %9s %9s %9s %7s %9s\n", "shape", "tls", "a2f B",
           "f2a B", "afd p50", "afd p99", "afd max", "raw p50", "raw p99", "ratio", "take p50");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        if (o.only_shape && strcmp(o.only_shape, sh->name))
            continue;
        char model[512];
        if ((rc = make_model(&o, sh, model, sizeof model))) {
            fprintf(stderr, "afd-bench link: cannot make the %s model in %s\n", sh->name, model);
            return 1;
        }
        for (size_t mi = 0; mi < 2; mi++) {
            const mode *m = &modes[mi];
            if (o.only_mode && strcmp(o.only_mode, m->name))
                continue;
            setenv("UCX_TLS", m->tls, 1);
            size_t a2f = 0, f2a = 0;
            if ((rc = afd_rounds(&o, model, sh, m, us, take, &a2f, &f2a)))
                return 1;
            stats A = summarize(us, o.iters), K = summarize(take, o.iters);
            raw_link_opts ro = {a2f, f2a, o.iters, o.warmup, false};
            if ((rc = raw_link_pingpong(&ro, us))) {
                fprintf(stderr, "afd-bench link: raw ping-pong failed (%d)\n", rc);
                return 1;
            }
            stats R = summarize(us, o.iters);
            double r = A.p50 / R.p50;
            printf("%-6s %-4s %10zu %10zu %9.1f %9.1f %9.1f %9.1f %9.1f %7.2f %9.1f\n",
                   sh->name, m->name, a2f, f2a, A.p50, A.p99, A.max, R.p50, R.p99, r, K.p50);
            if (s == 0) {
                ratio[mi] = r;
                if (mi == 0)
                    head_p50 = A.p50, head_p99 = A.p99;
            }
        }
    }
    unsetenv("UCX_TLS");
    free(us);
    free(take);
    char r0[32], r1[32], p50[32], p99[32];
    printf("{\"link_ratio_shm\": %s, \"link_ratio_tcp\": %s, \"p50_us\": %s, \"p99_us\": %s, "
           "\"shape\": \"paper 128x7168\", \"iters\": %d}\n",
           jnum(r0, ratio[0], "%.3f"), jnum(r1, ratio[1], "%.3f"), jnum(p50, head_p50, "%.1f"),
           jnum(p99, head_p99, "%.1f"), o.iters);
    return 0;
}
