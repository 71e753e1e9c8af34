/* stop.c: stop strings with an Aho-Corasick automaton (see stop.h).
 *
 * The trie's nodes are the prefixes of the stops; node 0 is the empty prefix. fail(u) is the
 * longest proper suffix of u that is also a node; best(u) is the length of the longest stop
 * that is a suffix of u (0: none). After each byte the current node is the longest suffix of
 * the text that is a prefix of some stop, so its depth is exactly the number of bytes to
 * withhold, and best > 0 means a stop ends here.
 */
#include "router/stop.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_node {
    uint32_t child;   /* first child, 0 = none (the root is nobody's child) */
    uint32_t sibling; /* next child of the same parent, 0 = none */
    uint32_t fail;
    uint32_t depth;
    uint32_t best;      /* length of the longest stop ending here, 0 = none */
    int32_t best_which; /* its index in the caller's list */
    uint8_t byte;       /* edge label from the parent */
} st_node;

enum { ST_RUNNING = 0, ST_MATCHED = 1, ST_FINISHED = 2 };

struct oa_stop {
    size_t n_stops;
    st_node *nodes;
    uint32_t n_nodes;
    uint32_t state;
    char *held; /* the withheld suffix, nodes[state].depth bytes */
    uint32_t held_len;
    char *out; /* answers that join held bytes and a delta */
    size_t out_cap;
    uint64_t emitted;
    int which;
    int phase;
};

static uint32_t st_child(const oa_stop *s, uint32_t u, uint8_t c) {
    for (uint32_t v = s->nodes[u].child; v; v = s->nodes[v].sibling)
        if (s->nodes[v].byte == c) return v;
    return 0;
}

/* The goto-with-failure transition. */
static uint32_t st_step(const oa_stop *s, uint32_t u, uint8_t c) {
    for (;;) {
        uint32_t v = st_child(s, u, c);
        if (v || u == 0) return v;
        u = s->nodes[u].fail;
    }
}

static void st_insert(oa_stop *s, const char *str, size_t len, int which) {
    uint32_t u = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)str[i];
        uint32_t v = st_child(s, u, c);
        if (!v) {
            v = s->n_nodes++;
            st_node *n = &s->nodes[v];
            memset(n, 0, sizeof *n);
            n->byte = c;
            n->depth = s->nodes[u].depth + 1;
            n->sibling = s->nodes[u].child;
            s->nodes[u].child = v;
        }
        u = v;
    }
    if (!s->nodes[u].best) { /* a duplicate stop keeps the first index */
        s->nodes[u].best = (uint32_t)len;
        s->nodes[u].best_which = which;
    }
}

/* Failure links and best() in breadth-first order (a node's fail is shallower than it). */
static int st_link(oa_stop *s) {
    uint32_t *queue = malloc(sizeof *queue * s->n_nodes);
    if (!queue) return -ENOMEM;
    uint32_t head = 0, tail = 0;
    queue[tail++] = 0;
    while (head < tail) {
        uint32_t u = queue[head++];
        for (uint32_t v = s->nodes[u].child; v; v = s->nodes[v].sibling) {
            st_node *n = &s->nodes[v];
            n->fail = u == 0 ? 0 : st_step(s, s->nodes[u].fail, n->byte);
            if (!n->best) {
                n->best = s->nodes[n->fail].best;
                n->best_which = s->nodes[n->fail].best_which;
            }
            queue[tail++] = v;
        }
    }
    free(queue);
    return 0;
}

static int st_check(const char *const *stops, const size_t *lens, size_t n, size_t *total,
                    size_t *longest) {
    *total = *longest = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i] == 0 || !stops[i] || lens[i] > OA_STOP_MAX_BYTES) return -EINVAL;
        *total += lens[i];
        if (*total > OA_STOP_MAX_BYTES) return -EINVAL;
        if (lens[i] > *longest) *longest = lens[i];
    }
    return 0;
}

int oa_stop_new(const char *const *stops, const size_t *lens, size_t n, oa_stop **out) {
    size_t total, longest;
    *out = NULL;
    if (n && (!stops || !lens)) return -EINVAL;
    int rc = st_check(stops, lens, n, &total, &longest);
    if (rc) return rc;
    oa_stop *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->n_stops = n;
    s->nodes = malloc(sizeof *s->nodes * (total + 1));
    s->held = malloc(longest + 1);
    if (!s->nodes || !s->held) {
        oa_stop_free(s);
        return -ENOMEM;
    }
    memset(&s->nodes[0], 0, sizeof s->nodes[0]);
    s->n_nodes = 1;
    for (size_t i = 0; i < n; i++)
        st_insert(s, stops[i], lens[i], (int)i);
    if ((rc = st_link(s))) {
        oa_stop_free(s);
        return rc;
    }
    oa_stop_reset(s);
    *out = s;
    return 0;
}

void oa_stop_free(oa_stop *s) {
    if (!s) return;
    free(s->nodes);
    free(s->held);
    free(s->out);
    free(s);
}

void oa_stop_reset(oa_stop *s) {
    s->state = 0;
    s->held_len = 0;
    s->emitted = 0;
    s->which = -1;
    s->phase = ST_RUNNING;
}

size_t oa_stop_held(const oa_stop *s) {
    return s->held_len;
}
uint64_t oa_stop_emitted(const oa_stop *s) {
    return s->emitted;
}
int oa_stop_which(const oa_stop *s) {
    return s->which;
}

static int st_reserve(oa_stop *s, size_t n) {
    if (n <= s->out_cap) return 0;
    size_t cap = s->out_cap ? s->out_cap : 64;
    while (cap < n)
        cap *= 2;
    char *p = realloc(s->out, cap);
    if (!p) return -ENOMEM;
    s->out = p;
    s->out_cap = cap;
    return 0;
}

/* Points *out at the first k bytes of held + delta (copying only when both contribute or the
 * held bytes are about to move). */
static int st_emit(oa_stop *s, const char *delta, size_t k, const char **out, size_t *out_len) {
    size_t h = s->held_len;
    *out_len = k;
    if (h == 0 || k == 0) {
        *out = k ? delta : "";
        return 0;
    }
    if (st_reserve(s, k)) return -ENOMEM;
    size_t from_held = k < h ? k : h;
    memcpy(s->out, s->held, from_held);
    memcpy(s->out + from_held, delta, k - from_held);
    *out = s->out;
    return 0;
}

/* The withheld suffix becomes the last d bytes of held + delta[0..n). */
static void st_keep(oa_stop *s, const char *delta, size_t n, uint32_t d) {
    if (d <= n) {
        memcpy(s->held, delta + n - d, d);
    } else {
        uint32_t from_held = d - (uint32_t)n;
        memmove(s->held, s->held + s->held_len - from_held, from_held);
        memcpy(s->held + from_held, delta, n);
    }
    s->held_len = d;
}

int oa_stop_feed(oa_stop *s, const char *delta, size_t n, const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    if (s->phase != ST_RUNNING) return s->phase == ST_MATCHED;
    if (s->n_stops == 0) {
        *out = n ? delta : "";
        *out_len = n;
        s->emitted += n;
        return 0;
    }
    uint32_t u = s->state;
    size_t h = s->held_len;
    for (size_t i = 0; i < n; i++) {
        u = st_step(s, u, (uint8_t)delta[i]);
        if (s->nodes[u].best) {
            size_t cut = h + i + 1 - s->nodes[u].best;
            if (st_emit(s, delta, cut, out, out_len)) return -ENOMEM;
            s->emitted += cut;
            s->which = s->nodes[u].best_which;
            s->phase = ST_MATCHED;
            s->held_len = 0;
            return 1;
        }
    }
    uint32_t d = s->nodes[u].depth;
    size_t k = h + n - d;
    if (st_emit(s, delta, k, out, out_len)) return -ENOMEM;
    st_keep(s, delta, n, d);
    s->state = u;
    s->emitted += k;
    return 0;
}

int oa_stop_finish(oa_stop *s, const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    if (s->phase != ST_RUNNING) return s->phase == ST_MATCHED;
    if (s->held_len) {
        *out = s->held;
        *out_len = s->held_len;
    }
    s->emitted += s->held_len;
    s->held_len = 0;
    s->state = 0;
    s->phase = ST_FINISHED;
    return 0;
}
