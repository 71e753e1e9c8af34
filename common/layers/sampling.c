#include "common/layers/sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float p;
    int32_t id;
} cand;

void afd_sampling_default(afd_sampling *sp) {
    memset(sp, 0, sizeof *sp);
    sp->top_p = 1.0f;
    sp->n_logprobs = -1;
}

/* xoshiro256** seeded through splitmix64. */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void afd_rng_seed(afd_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t afd_rng_next(afd_rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double afd_rng_uniform(afd_rng *r) { return (double)(afd_rng_next(r) >> 11) * 0x1.0p-53; }

size_t afd_sample_scratch_size(int vocab) { return (size_t)vocab * sizeof(cand); }

/* Higher probability first; equal probabilities: lower id first. */
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* First index of the maximum (ties to the lowest id; a NaN never wins). The running maximum
 * stays in a register: reloading v[best] every element cost 0.55 ms per 128K-vocab row. */
static int32_t argmax(const float *v, int n) {
    int32_t best = 0;
    float m = v[0];
    for (int i = 1; i < n; i++)
        if (v[i] > m)
            m = v[i], best = i;
    return best;
}

/* log-sum-exp of logits, for model log-probabilities. */
static double log_norm(const float *logits, int vocab, float mx) {
    double sum = 0;
    for (int i = 0; i < vocab; i++)
        sum += exp((double)logits[i] - mx);
    return (double)mx + log(sum);
}

/* Moves the n largest (by cand_cmp order) of c[0..len) to the front, sorted. */
static void top_n(cand *c, int len, int n) {
    if (n >= len) {
        qsort(c, (size_t)len, sizeof *c, cand_cmp);
        return;
    }
    /* Partial selection: keep a sorted prefix of n, insert when better than its last. */
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    for (int i = n; i < len; i++) {
        if (cand_cmp(&c[i], &c[n - 1]) >= 0)
            continue;
        cand x = c[i];
        int j = n - 1;
        while (j > 0 && cand_cmp(&x, &c[j - 1]) < 0) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = x;
    }
}

static void fill_logprobs(const float *logits, int vocab, int n, cand *scratch, afd_sample *out) {
    float mx = logits[argmax(logits, vocab)];
    double lz = log_norm(logits, vocab, mx);
    out->logprob = (float)((double)logits[out->token] - lz);
    out->n_top = 0;
    if (n <= 0)
        return;
    for (int i = 0; i < vocab; i++)
        scratch[i] = (cand){logits[i], i};
    top_n(scratch, vocab, n);
    for (int i = 0; i < n && i < vocab; i++) {
        out->top_ids[i] = scratch[i].id;
        out->top_logprobs[i] = (float)((double)scratch[i].p - lz);
        out->n_top++;
    }
}

/* Draws from the tempered distribution restricted by top_k / top_p. */
static int32_t draw(const float *logits, int vocab, const afd_sampling *sp, afd_rng *rng,
                    cand *c) {
    float mx = logits[argmax(logits, vocab)];
    float inv_t = 1.0f / sp->temperature;
    double sum = 0;
    for (int i = 0; i < vocab; i++) {
        float p = expf((logits[i] - mx) * inv_t);
        c[i] = (cand){p, i};
        sum += p;
    }
    int n = vocab;
    if (sp->top_p < 1.0f && sp->top_k <= 0) {
        /* Without top_k the nucleus is taken over the whole distribution. Every member of the nucleus has p >= (1 - top_p) / vocab: if one did not, all
         * tokens above it would hold less than top_p, so the mass below the bound (less than
         * vocab * bound = 1 - top_p) would exceed 1 - top_p. Filtering first keeps the sort
         * small. */
        double bound = (1.0 - sp->top_p) / vocab * sum;
        n = 0;
        for (int i = 0; i < vocab; i++)
            if (c[i].p >= bound)
                c[n++] = c[i];
    }
    int k = (sp->top_k > 0 && sp->top_k < n) ? sp->top_k : n;
    top_n(c, n, k);
    n = k;
    double kept = 0;
    for (int i = 0; i < n; i++)
        kept += c[i].p;
    if (sp->top_p < 1.0f) {
        double acc = 0, target = sp->top_p * kept;
        int m = 0;
        while (m < n && acc < target)
            acc += c[m++].p;
        n = m > 0 ? m : 1;
        kept = acc > 0 ? acc : c[0].p;
    }
    double u = afd_rng_uniform(rng) * kept, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (u < acc)
            return c[i].id;
    }
    return c[n - 1].id;
}

void afd_sample_token(const float *logits, int vocab, const afd_sampling *sp, afd_rng *rng,
                      void *scratch, afd_sample *out) {
    memset(out, 0, sizeof *out);
    if (sp->temperature <= 0.0f)
        out->token = argmax(logits, vocab);
    else
        out->token = draw(logits, vocab, sp, rng, scratch);
    if (sp->n_logprobs >= 0) {
        int n = sp->n_logprobs > AFD_MAX_LOGPROBS ? AFD_MAX_LOGPROBS : sp->n_logprobs;
        fill_logprobs(logits, vocab, n, scratch, out);
    }
}
