/* tok_encode.c: text -> ids.
 *
 *   1. repair invalid UTF-8 (utf8_repair)
 *   2. split on added tokens whose normalized=false (leftmost-longest, honouring special,
 *      single_word, lstrip, rstrip), then -- the normalizer being the identity -- on those
 *      whose normalized=true, as HF's AddedVocabulary does in two passes
 *   3. pre-tokenize the text between added tokens: each step splits every piece of the step
 *      before (depth first, so each step keeps one reusable segment list)
 *   4. BPE each final piece by merge rank (heap over a linked list), with a per-state cache
 *
 * Nothing allocates once the state's buffers have grown to the largest input seen.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/tok_int.h"
#include "common/text/utf8.h"

#define CACHE_SLOTS   (1u << 15)
#define CACHE_KEYS    (1u << 20) /* bytes of cached piece text */
#define CACHE_IDS     (1u << 18)
#define CACHE_MAX_KEY 255

typedef struct seg {
    uint32_t off, len;
    bool match;
} seg;

typedef struct stage {
    seg *v;
    size_t n, cap;
    uint8_t *buf; /* ByteLevel add_prefix_space copy */
    size_t buf_cap;
} stage;

typedef struct bpe_sym {
    int32_t id; /* -1 once merged into its left neighbour */
    int32_t prev, next;
} bpe_sym;

typedef struct bpe_ent {
    uint32_t rank, pos;
    int32_t a, b, res;
} bpe_ent;

typedef struct cache_slot {
    uint64_t h; /* 0: empty */
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;
} cache_slot;

struct tok_state {
    const tok_tokenizer *t;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    uint8_t *clean;
    size_t clean_cap;
    stage stages[TOK_MAX_STEPS];
    bpe_sym *sym;
    size_t sym_cap;
    bpe_ent *heap;
    size_t heap_cap, heap_n;
    int32_t *word;
    size_t word_cap;
    uint8_t *spell; /* byte-level spelling of a piece (ignore_merges) */
    size_t spell_cap;
    cache_slot *slots; /* lazily allocated */
    uint8_t *ckeys;
    int32_t *cids;
    uint32_t c_used, ckeys_used, cids_used;
    /* the call in progress */
    tok_ids *out;
    unsigned flags;
    afd_err *err;
};

/* ---- state -------------------------------------------------------------------------------- */

tok_state *tok_state_new(const tok_tokenizer *t) {
    tok_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->t = t;
    st->md = pcre2_match_data_create(1, NULL);
    st->mctx = pcre2_match_context_create(NULL);
    st->jstack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
    if (!st->md || !st->mctx || !st->jstack) {
        tok_state_free(st);
        return NULL;
    }
    pcre2_jit_stack_assign(st->mctx, NULL, st->jstack);
    return st;
}

void tok_state_free(tok_state *st) {
    if (!st)
        return;
    pcre2_match_data_free(st->md);
    pcre2_match_context_free(st->mctx);
    pcre2_jit_stack_free(st->jstack);
    free(st->clean);
    for (int i = 0; i < TOK_MAX_STEPS; i++) {
        free(st->stages[i].v);
        free(st->stages[i].buf);
    }
    free(st->sym);
    free(st->heap);
    free(st->word);
    free(st->spell);
    free(st->slots);
    free(st->ckeys);
    free(st->cids);
    free(st);
}

/* ---- output ------------------------------------------------------------------------------- */

int tok_ids_push(tok_ids *a, int32_t id) {
    if (a->limit && a->n >= a->limit)
        return AFD_E_LIMIT;
    if (a->n == a->cap && tok_grow((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v))
        return -ENOMEM;
    a->v[a->n++] = id;
    return 0;
}

static int push_ids(tok_state *st, const int32_t *ids, size_t k) {
    tok_ids *a = st->out;
    if (a->limit && a->n + k > a->limit)
        return AFD_E_LIMIT;
    if (tok_grow((void **)&a->v, &a->cap, a->n + k, sizeof *a->v))
        return -ENOMEM;
    memcpy(a->v + a->n, ids, k * sizeof *ids);
    a->n += k;
    return 0;
}

void tok_ids_release(tok_ids *a) {
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

/* ---- cache -------------------------------------------------------------------------------- */

static void cache_clear(tok_state *st) {
    memset(st->slots, 0, CACHE_SLOTS * sizeof *st->slots);
    st->c_used = st->ckeys_used = st->cids_used = 0;
}

static const cache_slot *cache_get(const tok_state *st, const uint8_t *s, size_t n, uint64_t h) {
    if (!st->slots)
        return NULL;
    for (uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const cache_slot *c = &st->slots[i];
        if (!c->h)
            return NULL;
        if (c->h == h && c->key_len == n && memcmp(st->ckeys + c->key_off, s, n) == 0)
            return c;
    }
}

static void cache_put(tok_state *st, const uint8_t *s, size_t n, uint64_t h, const int32_t *ids,
                      size_t k) {
    if (!st->slots) {
        st->slots = calloc(CACHE_SLOTS, sizeof *st->slots);
        st->ckeys = malloc(CACHE_KEYS);
        st->cids = malloc(CACHE_IDS * sizeof *st->cids);
        if (!st->slots || !st->ckeys || !st->cids) { /* no cache, still correct */
            free(st->slots), free(st->ckeys), free(st->cids);
            st->slots = NULL, st->ckeys = NULL, st->cids = NULL;
            return;
        }
    }
    if (2 * (st->c_used + 1) > CACHE_SLOTS || st->ckeys_used + n > CACHE_KEYS ||
        st->cids_used + k > CACHE_IDS)
        cache_clear(st);
    uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
    while (st->slots[i].h)
        i = (i + 1) & (CACHE_SLOTS - 1);
    st->slots[i] = (cache_slot){.h = h, .key_off = st->ckeys_used, .ids_off = st->cids_used,
                                .key_len = (uint16_t)n, .n_ids = (uint16_t)k};
    memcpy(st->ckeys + st->ckeys_used, s, n);
    memcpy(st->cids + st->cids_used, ids, k * sizeof *ids);
    st->ckeys_used += (uint32_t)n;
    st->cids_used += (uint32_t)k;
    st->c_used++;
}

/* ---- BPE ---------------------------------------------------------------------------------- */

static bool ent_less(const bpe_ent *x, const bpe_ent *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(tok_state *st, bpe_ent e) {
    size_t i = st->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_less(&e, &st->heap[p]))
            break;
        st->heap[i] = st->heap[p];
        i = p;
    }
    st->heap[i] = e;
}

static bpe_ent heap_pop(tok_state *st) {
    bpe_ent top = st->heap[0], last = st->heap[--st->heap_n];
    size_t i = 0, n = st->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && ent_less(&st->heap[c + 1], &st->heap[c]))
            c++;
        if (!ent_less(&st->heap[c], &last))
            break;
        st->heap[i] = st->heap[c];
        i = c;
    }
    st->heap[i] = last;
    return top;
}

/* Queues the merge of symbol `pos` with its right neighbour, if that pair merges. */
static void try_pair(tok_state *st, int32_t pos) {
    int32_t next = st->sym[pos].next;
    if (next < 0)
        return;
    int32_t a = st->sym[pos].id, b = st->sym[next].id, res;
    uint32_t rank = tok_merge_find(st->t, a, b, &res);
    if (rank != UINT32_MAX)
        heap_push(st, (bpe_ent){rank, (uint32_t)pos, a, b, res});
}

/* BPE of piece s[0..n), n >= 2, into st->word; returns the number of ids. */
static size_t bpe_run(tok_state *st, const uint8_t *s, size_t n) {
    bpe_sym *sym = st->sym;
    for (size_t i = 0; i < n; i++)
        sym[i] = (bpe_sym){st->t->byte_id[s[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    st->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        try_pair(st, (int32_t)i);
    while (st->heap_n) {
        bpe_ent e = heap_pop(st);
        bpe_sym *l = &sym[e.pos];
        if (l->id != e.a || l->next < 0 || sym[l->next].id != e.b)
            continue; /* stale: one side already merged differently */
        bpe_sym *r = &sym[l->next];
        l->id = e.res;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = (int32_t)e.pos;
        r->id = -1;
        if (l->prev >= 0)
            try_pair(st, l->prev);
        try_pair(st, (int32_t)e.pos);
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = sym[i].next)
        st->word[k++] = sym[i].id;
    return k;
}

/* ignore_merges: a piece that is a whole vocab token is taken as it is. */
static int32_t whole_token(tok_state *st, const uint8_t *s, size_t n) {
    if (tok_grow((void **)&st->spell, &st->spell_cap, 2 * n, 1))
        return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += utf8_encode(tok_byte_cp(s[i]), st->spell + m);
    int32_t id = tok_piece_lookup(st->t, (const char *)st->spell, m);
    return id >= 0 && (st->t->flags[id] & TOK_F_VOCAB) ? id : -1;
}

static int bpe_piece(tok_state *st, const uint8_t *s, size_t n) {
    const tok_tokenizer *t = st->t;
    if (n == 1)
        return tok_ids_push(st->out, t->byte_id[s[0]]);
    uint64_t h = 0;
    if (n <= CACHE_MAX_KEY) {
        h = tok_hash(s, n) | 1;
        const cache_slot *c = cache_get(st, s, n, h);
        if (c)
            return push_ids(st, st->cids + c->ids_off, c->n_ids);
    }
    if (t->ignore_merges) {
        int32_t id = whole_token(st, s, n);
        if (id >= 0)
            return tok_ids_push(st->out, id);
    }
    if (tok_grow((void **)&st->sym, &st->sym_cap, n, sizeof *st->sym) ||
        tok_grow((void **)&st->heap, &st->heap_cap, 3 * n, sizeof *st->heap) ||
        tok_grow((void **)&st->word, &st->word_cap, n, sizeof *st->word))
        return -ENOMEM;
    size_t k = bpe_run(st, s, n);
    if (h)
        cache_put(st, s, n, h, st->word, k);
    return push_ids(st, st->word, k);
}

/* ---- pre-tokenization --------------------------------------------------------------------- */

static int regex_error(tok_state *st, int rc) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return afd_errf(st->err, AFD_E_STATE, "%s: pre-tokenizer regex failed: %s", st->t->name,
                    (const char *)msg);
}

static int seg_push(stage *g, size_t off, size_t end, bool match) {
    if (g->n == g->cap && tok_grow((void **)&g->v, &g->cap, g->n + 1, sizeof *g->v))
        return -ENOMEM;
    g->v[g->n++] = (seg){(uint32_t)off, (uint32_t)(end - off), match};
    return 0;
}

static int find(tok_state *st, const tok_step *step, const uint8_t *s, size_t n, size_t pos,
                size_t *ms, size_t *me) {
    int rc = step->jit ? pcre2_jit_match(step->re, s, n, pos, 0, st->md, st->mctx)
                       : pcre2_match(step->re, s, n, pos, PCRE2_NO_UTF_CHECK, st->md, st->mctx);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 1;
    if (rc < 0)
        return regex_error(st, rc);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(st->md);
    *ms = ov[0];
    *me = ov[1];
    return 0;
}

/* All matches of the step's regex in s, with the text between them: segments covering s. */
static int collect(tok_state *st, const tok_step *step, const uint8_t *s, size_t n, stage *g) {
    size_t pos = 0, prev = 0, ms = 0, me = 0;
    int rc = 0;
    g->n = 0;
    while (pos <= n && (rc = find(st, step, s, n, pos, &ms, &me)) == 0) {
        if (ms > prev && (rc = seg_push(g, prev, ms, false)))
            return rc;
        if ((rc = seg_push(g, ms, me, true)))
            return rc;
        prev = me;
        if (me > ms)
            pos = me;
        else if (me >= n)
            break;
        else { /* empty match: step over one character, as JS and Rust iterators do */
            uint32_t cp;
            bool ok;
            pos = me + utf8_next(s + me, n - me, &cp, &ok);
        }
    }
    if (rc < 0)
        return rc;
    return prev < n ? seg_push(g, prev, n, false) : 0;
}

/* Rewrites g's segments into the pieces of a Split behaviour (HF semantics); returns the count.
 * Pieces may be empty (dropped by the caller). */
static size_t apply_behavior(seg *v, size_t n, int behavior, bool invert) {
    if (invert)
        for (size_t i = 0; i < n; i++)
            v[i].match = !v[i].match;
    size_t k = 0;
    bool prev = false;
    for (size_t i = 0; i < n; i++) {
        seg cur = v[i];
        bool extend = false;
        switch (behavior) {
        case TOK_SPLIT_REMOVED:
            if (cur.match)
                continue;
            break;
        case TOK_SPLIT_MERGED_PREV:
            extend = cur.match && !prev && k > 0;
            break;
        case TOK_SPLIT_CONTIGUOUS:
            extend = cur.match == prev && k > 0;
            break;
        case TOK_SPLIT_MERGED_NEXT:
            if (cur.match && i + 1 < n && !v[i + 1].match) {
                cur.len += v[i + 1].len;
                prev = false;
                v[k++] = cur;
                i++;
                continue;
            }
            break;
        default: /* Isolated */
            break;
        }
        prev = v[i].match;
        if (extend)
            v[k - 1].len = cur.off + cur.len - v[k - 1].off;
        else
            v[k++] = cur;
    }
    return k;
}

static int pre_run(tok_state *st, int k, const uint8_t *s, size_t n);

static int run_pieces(tok_state *st, int k, const uint8_t *s, size_t count) {
    stage *g = &st->stages[k];
    for (size_t i = 0; i < count; i++) {
        int rc = pre_run(st, k + 1, s + g->v[i].off, g->v[i].len);
        if (rc)
            return rc;
    }
    return 0;
}

static int pre_run(tok_state *st, int k, const uint8_t *s, size_t n) {
    const tok_tokenizer *t = st->t;
    if (n == 0)
        return 0;
    if (k == t->n_steps)
        return bpe_piece(st, s, n);
    const tok_step *step = &t->steps[k];
    stage *g = &st->stages[k];
    if (step->kind == TOK_STEP_BYTELEVEL && step->add_prefix_space && s[0] != ' ') {
        if (tok_grow((void **)&g->buf, &g->buf_cap, n + 1, 1))
            return -ENOMEM;
        g->buf[0] = ' ';
        memcpy(g->buf + 1, s, n);
        s = g->buf;
        n++;
    }
    if (!step->re)
        return pre_run(st, k + 1, s, n);
    int rc = collect(st, step, s, n, g);
    if (rc)
        return rc;
    size_t count = step->kind == TOK_STEP_SPLIT
                       ? apply_behavior(g->v, g->n, step->behavior, step->invert)
                       : g->n;
    return run_pieces(st, k, s, count);
}

/* ---- added tokens ------------------------------------------------------------------------- */

/* Leftmost-longest match at or after `from` among added tokens of class `mask` (1: normalized
 * false, 2: normalized true). */
static bool added_find(const tok_tokenizer *t, const uint8_t *s, size_t n, size_t from,
                       unsigned mask, size_t *ms, size_t *me, int *which) {
    for (size_t i = from; i < n; i++) {
        if (!(t->first_byte[s[i]] & mask))
            continue;
        int32_t node = 0, best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < n; j++) {
            int32_t c = t->trie[node].child;
            while (c >= 0 && t->trie[c].byte != s[j])
                c = t->trie[c].sibling;
            if (c < 0)
                break;
            node = c;
            int32_t a = t->trie[node].added;
            if (a >= 0 && ((t->added[a].normalized ? 2u : 1u) & mask)) {
                best = a;
                best_end = j + 1;
            }
        }
        if (best >= 0) {
            *ms = i, *me = best_end, *which = best;
            return true;
        }
    }
    return false;
}

static bool word_char_at(tok_state *st, const uint8_t *s, size_t n, size_t at) {
    uint32_t cp;
    bool ok;
    size_t len = utf8_next(s + at, n - at, &cp, &ok);
    return pcre2_match(st->t->word_re, s + at, len, 0, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK,
                       st->md, NULL) >= 0;
}

/* single_word: no word character right before or right after the match. */
static bool single_word_ok(tok_state *st, const uint8_t *s, size_t n, size_t ms, size_t me) {
    if (ms > 0 && word_char_at(st, s, ms, utf8_prev(s, ms)))
        return false;
    return me >= n || !word_char_at(st, s, n, me);
}

static size_t ws_back(const uint8_t *s, size_t i, size_t floor) {
    while (i > floor) {
        size_t p = utf8_prev(s, i);
        uint32_t cp;
        bool ok;
        utf8_next(s + p, i - p, &cp, &ok);
        if (!ok || !utf8_is_white_space(cp))
            break;
        i = p;
    }
    return i;
}

static size_t ws_fwd(const uint8_t *s, size_t n, size_t i) {
    while (i < n) {
        uint32_t cp;
        bool ok;
        size_t k = utf8_next(s + i, n - i, &cp, &ok);
        if (!ok || !utf8_is_white_space(cp))
            break;
        i += k;
    }
    return i;
}

static int split_added(tok_state *st, const uint8_t *s, size_t n, unsigned pass);

static int encode_between(tok_state *st, const uint8_t *s, size_t n, unsigned pass) {
    if (n == 0)
        return 0;
    return pass == 1 ? split_added(st, s, n, 2) : pre_run(st, 0, s, n);
}

static int split_added(tok_state *st, const uint8_t *s, size_t n, unsigned pass) {
    const tok_tokenizer *t = st->t;
    size_t cur = 0, pos = 0, ms, me;
    int which;
    while (t->n_added && added_find(t, s, n, pos, pass, &ms, &me, &which)) {
        const tok_added *a = &t->added[which];
        pos = me;
        if (a->special && !(st->flags & TOK_ENC_SPECIAL))
            continue; /* its text stays ordinary text */
        if (a->single_word && !single_word_ok(st, s, n, ms, me))
            continue;
        size_t start = a->lstrip ? ws_back(s, ms, cur) : ms;
        size_t stop = a->rstrip ? ws_fwd(s, n, me) : me;
        int rc = encode_between(st, s + cur, start - cur, pass);
        if (!rc)
            rc = tok_ids_push(st->out, a->id);
        if (rc)
            return rc;
        cur = pos = stop;
    }
    return encode_between(st, s + cur, n - cur, pass);
}

/* ---- entry -------------------------------------------------------------------------------- */

int tok_encode(const tok_tokenizer *t, tok_state *st, const char *text, size_t len,
               unsigned flags, tok_ids *out, afd_err *err) {
    if (len > TOK_MAX_TEXT)
        return afd_errf(err, AFD_E_LIMIT, "text of %zu bytes (limit %u)", len, TOK_MAX_TEXT);
    if (st && st->t != t)
        return afd_errf(err, AFD_E_STATE, "tok_encode: the state belongs to another tokenizer");
    tok_state *tmp = NULL;
    if (!st && !(st = tmp = tok_state_new(t)))
        return afd_errf(err, -ENOMEM, "tokenizer: out of memory");
    const uint8_t *s = (const uint8_t *)text;
    size_t n0 = out->n;
    int rc = 0;
    if (utf8_valid_prefix(s, len) < len) {
        if (tok_grow((void **)&st->clean, &st->clean_cap, UTF8_MAX_EXPANSION * len, 1))
            rc = -ENOMEM;
        else
            len = utf8_repair(s, len, st->clean), s = st->clean;
    }
    st->out = out, st->flags = flags, st->err = err;
    if (!rc)
        rc = split_added(st, s, len, 1);
    if (rc == AFD_E_LIMIT)
        afd_errf(err, rc, "text encodes to more than %zu tokens", out->limit);
    else if (rc == -ENOMEM)
        afd_errf(err, rc, "tokenizer: out of memory encoding %zu bytes", len);
    if (rc)
        out->n = n0;
    st->out = NULL, st->err = NULL;
    tok_state_free(tmp);
    return rc;
}
