/* tok_int.h: the tokenizer's inside, shared by tok_load.c, tok_encode.c, tok_decode.c and
 * tok_regex.c. Not for other modules: use tokenizer.h. */
#ifndef AFD_TOK_INT_H
#define AFD_TOK_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/err.h"
#include "common/text/tokenizer.h"

#define TOK_MAX_STEPS 16 /* pre-tokenizer steps after flattening Sequences */

/* per-id flags */
enum {
    TOK_F_PRESENT = 1u << 0,
    TOK_F_ADDED = 1u << 1,
    TOK_F_SPECIAL = 1u << 2,
    TOK_F_VOCAB = 1u << 3, /* in model.vocab (merges may use it) */
};

enum { TOK_STEP_SPLIT, TOK_STEP_BYTELEVEL };

enum {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS,
};

typedef struct tok_step {
    int kind;
    pcre2_code *re; /* Split: its pattern; ByteLevel: the GPT-2 pattern when use_regex */
    bool jit;       /* re has JIT code */
    int behavior;   /* Split */
    bool invert;    /* Split */
    bool add_prefix_space; /* ByteLevel */
} tok_step;

typedef struct tok_added {
    int32_t id;
    uint32_t off, len; /* content in t->piece_blob (it is the token's piece) */
    bool special, lstrip, rstrip, normalized, single_word;
} tok_added;

/* Trie over added-token contents, for leftmost-longest matching. */
typedef struct tok_trie_node {
    int32_t child;   /* first child, -1 none */
    int32_t sibling; /* next sibling, -1 none */
    int32_t added;   /* index into t->added of the token ending here, -1 none */
    uint8_t byte;
} tok_trie_node;

struct tok_tokenizer {
    char name[256]; /* file, for messages */
    int32_t n_ids;  /* highest id + 1 */
    uint8_t *flags; /* [n_ids] TOK_F_* */

    /* piece (vocab spelling / added content) and bytes of every id: [off[id], off[id+1]) */
    uint32_t *piece_off; /* [n_ids + 1] */
    char *piece_blob;
    uint32_t *bytes_off; /* [n_ids + 1] */
    uint8_t *bytes_blob;
    size_t max_bytes;

    /* piece -> id, open addressing, -1 empty */
    int32_t *phash;
    uint32_t phash_mask;

    /* merges: (left id << 32 | right id) -> rank, result id */
    uint64_t *mkey;
    uint32_t *mrank;
    int32_t *mres;
    uint32_t mmask;
    size_t n_merges;

    int32_t byte_id[256]; /* id of each byte's single-character token */
    bool ignore_merges;

    tok_added *added;
    int n_added;
    tok_trie_node *trie; /* node 0 is the root */
    int n_trie;
    uint8_t first_byte[256]; /* bit 0: a non-normalized token starts with it; bit 1: normalized */
    bool any_single_word;
    pcre2_code *word_re; /* one "word character" (single_word), anchored */

    tok_step steps[TOK_MAX_STEPS];
    int n_steps;

    int32_t bos_id, eos_id;
    char *chat_template;
};

/* tok_load.c / tok_regex.c */
int tok_regex_compile(const char *pattern, size_t len, bool literal, pcre2_code **re, bool *jit,
                      const char *what, afd_err *err);

/* tok_load.c: hash of a byte string (also used by the encoder's cache). */
uint64_t tok_hash(const void *p, size_t n);
int32_t tok_piece_lookup(const tok_tokenizer *t, const char *s, size_t n);

/* The GPT-2 byte <-> unicode map: printable bytes (0x21..0x7E, 0xA1..0xAC, 0xAE..0xFF) are
 * spelled by the same code point, the 68 others by U+0100.. in byte order. tok_cp_byte is the
 * inverse (-1: not a byte-level character). */
uint32_t tok_byte_cp(uint8_t b);
int tok_cp_byte(uint32_t cp);

/* Merge lookup: rank (or UINT32_MAX when the pair does not merge) and result id. */
static inline uint32_t tok_merge_find(const tok_tokenizer *t, int32_t a, int32_t b,
                                      int32_t *res) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    uint32_t i = (uint32_t)(h >> 32) & t->mmask;
    for (;;) {
        if (t->mres[i] < 0)
            return UINT32_MAX;
        if (t->mkey[i] == key) {
            *res = t->mres[i];
            return t->mrank[i];
        }
        i = (i + 1) & t->mmask;
    }
}

/* Checked growth of an array to hold `need` elements of `size` bytes; -ENOMEM on failure. */
int tok_grow(void **p, size_t *cap, size_t need, size_t size);

#endif
