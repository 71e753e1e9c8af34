/* tokenizer.h: HF tokenizer.json byte-level BPE (DeepSeek-V3 / Step-3 family): load, encode,
 * decode, incremental detokenization, per-token bytes for logprobs (docs/tokenizer.md).
 *
 * Supported: model BPE (vocab + merges as "a b" strings or [a, b] pairs, ignore_merges), the
 * GPT-2 byte<->unicode map, added_tokens (special, lstrip, rstrip, normalized, single_word as
 * HF tokenizers defines them), pre_tokenizer Sequence / Split (Regex or String pattern, all five
 * behaviours, invert) / ByteLevel (add_prefix_space, use_regex; must come last), an empty
 * normalizer (null or Sequence of nothing), decoder ByteLevel. Anything else is refused at load
 * with an error naming it. Regexes are compiled with PCRE2 (UTF + UCP, JIT); `\s`/`\S` mean
 * Unicode White_Space as in Oniguruma, the regex engine of HF tokenizers.
 *
 * Ownership: tok_load() returns a tokenizer the caller frees with tok_free(); it is immutable
 * afterwards and may be shared by any number of threads. Encoding needs scratch space and a
 * BPE cache: a tok_state, one per thread (tok_state_new/free). Output buffers (tok_ids,
 * tok_str) belong to the caller; functions append to them and grow them with checked
 * allocation. Errors: 0 / negative (err.h), with a message in afd_err when one is passed.
 *
 * Encoding never adds BOS/EOS: prompts get BOS from the chat template (chat.h) or the caller.
 * Invalid UTF-8 in the input is repaired first (utf8.h: each maximal ill-formed subpart becomes
 * U+FFFD), exactly what a JS or Python caller would have produced when turning bytes into text.
 */
#ifndef AFD_TOKENIZER_H
#define AFD_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/err.h"

#define TOK_MAX_FILE        (256u << 20) /* tokenizer.json size limit */
#define TOK_MAX_VOCAB       (1 << 22)    /* ids 0 .. TOK_MAX_VOCAB-1 */
#define TOK_MAX_TOKEN_BYTES 4096         /* longest token (vocab string or added content) */
#define TOK_MAX_TEXT        (1u << 30)   /* longest text tok_encode takes */

typedef struct tok_tokenizer tok_tokenizer;
typedef struct tok_state tok_state;

/* Growable id array. Set limit > 0 to make tok_encode fail with AFD_E_LIMIT (before growing
 * past it) when the result would hold more than `limit` ids. Free v with free(). */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
    size_t limit;
} tok_ids;

/* Growable byte string, always NUL-terminated after a successful append. Free s with free(). */
typedef struct tok_str {
    char *s;
    size_t len, cap;
} tok_str;

/* ---- loading ------------------------------------------------------------------------------ */

/* Loads `path`: a tokenizer.json file, or a directory holding one. tokenizer_config.json next to
 * it, when present, gives bos_token, eos_token and chat_template. Returns 0 and *out, or an
 * error (AFD_E_FORMAT malformed, AFD_E_UNSUPPORTED a valid but unsupported feature,
 * AFD_E_NOTFOUND/-errno file problems, AFD_E_LIMIT sizes) naming the file and the field. */
int tok_load(const char *path, tok_tokenizer **out, afd_err *err);

/* Same from memory: tokenizer.json text (json, len) and optionally tokenizer_config.json text
 * (cfg may be NULL). `name` is used in messages. */
int tok_load_mem(const char *json, size_t len, const char *cfg, size_t cfg_len, const char *name,
                 tok_tokenizer **out, afd_err *err);

void tok_free(tok_tokenizer *t); /* NULL is a no-op */

/* ---- vocabulary --------------------------------------------------------------------------- */

/* Highest id + 1 (128815 for Step-3). Ids below it without a token ("holes") are refused by
 * the functions taking ids. */
int32_t tok_vocab_size(const tok_tokenizer *t);

/* Id of the token spelled `name` (an added token's content such as "<|EOT|>", or a vocab
 * string in its byte-level spelling such as "Ġthe"); AFD_E_NOTFOUND when there is none. */
int32_t tok_id(const tok_tokenizer *t, const char *name, size_t len);

/* BOS / EOS ids from tokenizer_config.json (bos_token, eos_token); AFD_E_NOTFOUND when the file
 * or the key is missing or names no token. */
int32_t tok_bos_id(const tok_tokenizer *t);
int32_t tok_eos_id(const tok_tokenizer *t);

/* chat_template from tokenizer_config.json (the default one when it is a list), or NULL. */
const char *tok_chat_template(const tok_tokenizer *t);

bool tok_is_special(const tok_tokenizer *t, int32_t id); /* added token with special=true */
bool tok_is_added(const tok_tokenizer *t, int32_t id);

/* Raw bytes of one token (what it contributes to decoded text; may be a partial UTF-8
 * character): the OpenAI logprobs "bytes" array. Points into t. 0, or AFD_E_NOTFOUND for an id
 * out of range or a hole. */
int tok_token_bytes(const tok_tokenizer *t, int32_t id, const uint8_t **bytes, size_t *len);

/* The token's vocabulary spelling ("Ġthe", "<|EOT|>"). Points into t. */
int tok_token_piece(const tok_tokenizer *t, int32_t id, const char **piece, size_t *len);

/* The OpenAI logprobs "token" string: the token's bytes as UTF-8, ill-formed parts replaced by
 * U+FFFD. Appended to out. */
int tok_token_text(const tok_tokenizer *t, int32_t id, tok_str *out);

/* Longest token in bytes (<= TOK_MAX_TOKEN_BYTES). */
size_t tok_max_token_bytes(const tok_tokenizer *t);

/* ---- encoding ----------------------------------------------------------------------------- */

/* Per-thread scratch + BPE cache for t. Never shared between threads at the same time. NULL on
 * allocation failure. */
tok_state *tok_state_new(const tok_tokenizer *t);
void tok_state_free(tok_state *st); /* NULL is a no-op */

enum {
    /* Match special added tokens in the text (as HF does by default). Without it, special
     * tokens' text is encoded as ordinary text (HF's encode_special_tokens / split_special_tokens);
     * non-special added tokens (<think>, </think>, ...) are matched either way, as in HF. */
    TOK_ENC_SPECIAL = 1u << 0,
};

/* Encodes text[0..len) (any bytes; invalid UTF-8 is repaired first) and appends the ids to out.
 * st may be NULL (a temporary state is made and freed: slower, no cache across calls).
 * Errors: -ENOMEM, AFD_E_LIMIT (text over TOK_MAX_TEXT, or out->limit reached: out->n is then
 * unchanged), AFD_E_STATE (a regex engine error, named in err, or st made for another
 * tokenizer). */
int tok_encode(const tok_tokenizer *t, tok_state *st, const char *text, size_t len,
               unsigned flags, tok_ids *out, afd_err *err);

/* ---- decoding ----------------------------------------------------------------------------- */

enum {
    TOK_DEC_SKIP_SPECIAL = 1u << 0, /* leave out tokens with special=true */
};

/* Decodes ids and appends the text to out: the tokens' bytes joined, then made valid UTF-8
 * (maximal ill-formed subparts -> U+FFFD), as HF's ByteLevel decoder does. AFD_E_NOTFOUND for
 * an id that has no token (named in err); -ENOMEM. */
int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
               tok_str *out, afd_err *err);

/* Incremental detokenizer: feed ids one at a time; each push writes only complete UTF-8, holding
 * back a trailing incomplete sequence until the next token completes or breaks it. The
 * concatenation of all pushes and the final flush equals tok_decode() of the same ids with the
 * same flags. Plain struct, no allocation: tok_stream_init() it, no free needed. */
typedef struct tok_stream {
    const tok_tokenizer *t;
    unsigned flags;
    uint8_t pend[4];
    uint8_t npend;
} tok_stream;

void tok_stream_init(tok_stream *s, const tok_tokenizer *t, unsigned flags);

/* Worst-case bytes one push or flush writes (3 * (longest token + 4) + 1; 397 for DeepSeek-V3's
 * vocabulary): out buffers of this size never fail. */
size_t tok_stream_max_out(const tok_tokenizer *t);

/* Writes the text completed by `id` into out (capacity cap) and sets *n (may be 0). AFD_E_LIMIT
 * if this push's text is longer than cap (nothing written, state unchanged: retry with a
 * bigger buffer); AFD_E_NOTFOUND for a bad id. */
int tok_stream_push(tok_stream *s, int32_t id, char *out, size_t cap, size_t *n);

/* End of stream: a held-back incomplete sequence becomes one U+FFFD. Resets the state. */
int tok_stream_flush(tok_stream *s, char *out, size_t cap, size_t *n);

/* True when bytes are held back (the text so far ends inside a character). */
bool tok_stream_pending(const tok_stream *s);

/* ---- buffers ------------------------------------------------------------------------------ */

int tok_ids_push(tok_ids *a, int32_t id);                         /* -ENOMEM, AFD_E_LIMIT */
int tok_str_append(tok_str *s, const void *bytes, size_t n);      /* -ENOMEM */
void tok_ids_release(tok_ids *a);                                 /* free and zero (keeps limit) */
void tok_str_release(tok_str *s);                                 /* free and zero */

#endif
