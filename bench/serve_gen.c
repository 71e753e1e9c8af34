/* afd-bench serve: seeded randomness (xoshiro256** streams), length distributions, Poisson
 * arrivals and request bodies (serve_impl.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/serve_impl.h"
#include "common/base/log.h"

/* ---- generator ------------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sv_rng_seed(sv_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull + 0x2545f4914f6cdd1dull);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sv_rng_next(sv_rng *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double sv_rng_uniform(sv_rng *r) { return (double)(sv_rng_next(r) >> 11) * 0x1.0p-53; }

double sv_rng_normal(sv_rng *r) {
    double u = 1.0 - sv_rng_uniform(r), v = sv_rng_uniform(r); /* u in (0, 1] */
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* ---- length distributions ------------------------------------------------------------------- */

/* A whole-string number in [lo, hi]; 0 or -1. */
static int parse_num(const char *s, const char *end, double lo, double hi, double *out) {
    char tmp[40], *e;
    size_t n = (size_t)(end - s);
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    double v = strtod(tmp, &e);
    if (*e || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static bool is_int(double v) { return v == floor(v); }

int sv_dist_parse(const char *s, sv_dist *d, afd_err *err) {
    const char *end = s + strlen(s), *c1 = strchr(s, ':');
    memset(d, 0, sizeof *d);
    int bad = 0;
    if (!strncmp(s, "lognorm:", 8)) {
        const char *c2 = strchr(s + 8, ':');
        d->kind = SV_DIST_LOGNORM;
        bad = !c2 || parse_num(s + 8, c2, 1, SV_LEN_MAX, &d->a) ||
              parse_num(c2 + 1, end, 0, 4, &d->b);
    } else if (c1) {
        d->kind = SV_DIST_UNIFORM;
        bad = parse_num(s, c1, 1, SV_LEN_MAX, &d->a) ||
              parse_num(c1 + 1, end, 1, SV_LEN_MAX, &d->b) || d->b < d->a || !is_int(d->a) ||
              !is_int(d->b);
    } else {
        d->kind = SV_DIST_FIXED;
        bad = parse_num(s, end, 1, SV_LEN_MAX, &d->a) || !is_int(d->a);
    }
    if (bad)
        return afd_errf(err, AFD_E_FORMAT,
                        "length '%s': want N, a:b (1 <= a <= b <= %d) or lognorm:mean:sigma "
                        "(mean >= 1, 0 <= sigma <= 4)", s, SV_LEN_MAX);
    return 0;
}

int sv_dist_draw(const sv_dist *d, sv_rng *r) {
    double x = d->a;
    if (d->kind == SV_DIST_UNIFORM)
        x = d->a + floor(sv_rng_uniform(r) * (d->b - d->a + 1));
    else if (d->kind == SV_DIST_LOGNORM)
        x = round(exp(log(d->a) - d->b * d->b / 2 + d->b * sv_rng_normal(r)));
    return x < 1 ? 1 : x > SV_LEN_MAX ? SV_LEN_MAX : (int)x;
}

void sv_dist_format(const sv_dist *d, char *buf, size_t cap) {
    if (d->kind == SV_DIST_FIXED)
        snprintf(buf, cap, "%.0f", d->a);
    else if (d->kind == SV_DIST_UNIFORM)
        snprintf(buf, cap, "%.0f:%.0f", d->a, d->b);
    else
        snprintf(buf, cap, "lognorm:%g:%g", d->a, d->b);
}

/* ---- arrivals ------------------------------------------------------------------------------- */

int sv_arrivals(double rate, double until, int max_n, sv_rng *r, double **out) {
    bool burst = !(rate > 0) || isinf(rate);
    int cap = 64, n = 0;
    double *t = malloc((size_t)cap * sizeof *t), now = 0;
    while (t && (max_n <= 0 || n < max_n)) {
        if (!burst)
            now += -log(1.0 - sv_rng_uniform(r)) / rate;
        if (until > 0 && now >= until)
            break;
        if (burst && max_n <= 0)
            break; /* a burst needs a count */
        if (n == cap) {
            double *g = realloc(t, (size_t)(cap *= 2) * sizeof *t);
            if (!g)
                break;
            t = g;
        }
        t[n++] = now;
    }
    if (!n)
        free(t), t = NULL;
    *out = t;
    return n;
}

/* ---- request bodies ------------------------------------------------------------------------- */

/* Common English words, each one token in the usual BPE vocabularies (with its leading space). */
static const char *const word_list[] = {
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be",
    "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
    "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has",
    "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "time", "out",
    "up", "about", "into", "than", "them", "only", "other", "new", "some", "could", "these",
    "two", "may", "first", "then", "do", "any", "like", "my", "now", "over", "such", "our",
    "man", "me", "even", "most", "made", "after", "also", "did", "many", "before", "must",
    "through", "back", "years", "where", "much", "your", "way", "well", "down", "should",
    "because", "each", "just", "those", "people", "how", "too", "little", "state", "good",
    "very", "make", "world", "still", "own", "see", "men", "work", "long", "get", "here",
    "between", "both", "life", "being", "under", "never", "day", "same", "another", "know",
};
#define N_WORDS (int)(sizeof word_list / sizeof word_list[0])

static char *put(char *p, const char *s) {
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static char *put_int(char *p, long v) {
    char tmp[24];
    int n = 0;
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
    do
        tmp[n++] = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *p++ = '-';
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *prompt_ids(char *p, const sv_body_opts *o, sv_rng *r) {
    uint64_t span = (uint64_t)(o->tok_hi - o->tok_lo + 1);
    p = put(p, "\"prompt\":[");
    for (int i = 0; i < o->prompt_len; i++) {
        if (i)
            *p++ = ',';
        p = put_int(p, o->tok_lo + (long)(sv_rng_next(r) % span));
    }
    return put(p, "]");
}

static char *chat_message(char *p, const sv_body_opts *o, sv_rng *r) {
    p = put(p, "\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < o->prompt_len; i++) {
        if (i)
            *p++ = ' ';
        p = put(p, word_list[sv_rng_next(r) % N_WORDS]);
    }
    return put(p, "\"}]");
}

long sv_body_build(const sv_body_opts *o, sv_rng *r, char **out) {
    char model[600];
    afd_json_escape(model, sizeof model, o->model);
    size_t cap = (size_t)o->prompt_len * 12 + strlen(model) + 512;
    char *b = malloc(cap), *p = b;
    *out = b;
    if (!b)
        return -ENOMEM;
    p = put(p, "{\"model\":\"");
    p = put(p, model);
    p = put(p, "\",");
    p = o->chat ? chat_message(p, o, r) : prompt_ids(p, o, r);
    p = put(p, ",\"max_tokens\":");
    p = put_int(p, o->max_tokens);
    p = put(p, ",\"ignore_eos\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
               "\"temperature\":0}");
    return (long)(p - b);
}
