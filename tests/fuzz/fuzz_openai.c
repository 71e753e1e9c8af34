/* libFuzzer target for router/openai (request parsing) and router/stop. The first byte picks
 * the parser (bits 0-1: chat, completions, /tokenize, /detokenize) and the limits (bit 2:
 * tight: n <= 2, 2 stops of <= 4 bytes, 3 messages, 2 prompts, 64 text bytes, 8 ids, vocab
 * 50); the rest is the body. Nothing may crash, leak or read out of bounds. An accepted request
 * must satisfy every limit and invariant the header promises; its texts then go through the
 * response builders (the output must be valid JSON whose strings read back unchanged) and
 * through an oa_stop with the request's stops, fed in deltas at character boundaries, whose
 * answer must equal a brute-force cut. A rejected one must carry a 4xx status, a type, a
 * message, and an error object that is valid JSON.
 * Seeds: tests/fuzz/corpus/openai. Run: make fuzz && build-fuzz/fuzz_openai
 *     -max_total_time=60 -dict=tests/fuzz/openai.dict tests/fuzz/corpus/openai
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/openai.h"
#include "router/stop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static oa_limits limits_for(uint8_t sel) {
    oa_limits l;
    oa_limits_default(&l);
    if (sel & 4) {
        l.max_n = 2;
        l.max_choices = 3;
        l.max_stop = 2;
        l.max_stop_bytes = 4;
        l.max_messages = 3;
        l.max_prompts = 2;
        l.max_prompt_bytes = 64;
        l.max_prompt_ids = 8;
        l.vocab = 50;
        l.max_tokens = 100;
        l.max_top_k = 10;
        l.max_string_bytes = 8;
    }
    return l;
}

/* Parses JSON text (trap if invalid) and frees it. */
static json_t *valid_json(char *s, size_t len) {
    CHECK(s);
    CHECK(strlen(s) == len);
    json_t *v = json_loadb(s, len, JSON_ALLOW_NUL, NULL);
    CHECK(v);
    free(s);
    return v;
}

/* Brute force: the first end position where a stop ends, cut before the longest. */
static size_t ref_cut(const char *t, size_t len, const oa_request *r) {
    for (size_t e = 1; e <= len; e++) {
        size_t best = 0;
        for (uint32_t i = 0; i < r->n_stop; i++) {
            size_t l = r->stop_len[i];
            if (l <= e && l > best && memcmp(t + e - l, r->stop[i], l) == 0) best = l;
        }
        if (best) return e - best;
    }
    return len;
}

/* Feeds text in deltas of `step` characters; the sent text must be text[0..ref_cut). */
static void check_stop(const oa_request *r, const char *text, size_t len, unsigned step) {
    oa_stop *s;
    const char *const *stops = (const char *const *)r->stop;
    CHECK(oa_stop_new(stops, r->stop_len, r->n_stop, &s) == 0);
    char *got = malloc(len + 1);
    CHECK(got);
    size_t got_len = 0, i = 0;
    int rc = 0;
    while (i < len && rc == 0) {
        size_t j = i, chars = 0;
        while (j < len && chars < step) { /* step characters */
            j++;
            while (j < len && ((uint8_t)text[j] & 0xc0) == 0x80)
                j++;
            chars++;
        }
        const char *o;
        size_t ol;
        rc = oa_stop_feed(s, text + i, j - i, &o, &ol);
        CHECK(rc >= 0 && got_len + ol <= len);
        memcpy(got + got_len, o, ol);
        got_len += ol;
        CHECK(rc == 1 || got_len + oa_stop_held(s) == j);
        i = j;
    }
    const char *o;
    size_t ol;
    CHECK(oa_stop_finish(s, &o, &ol) == rc);
    memcpy(got + got_len, o, ol);
    got_len += ol;
    CHECK(got_len == ref_cut(text, len, r));
    CHECK(memcmp(got, text, got_len) == 0);
    CHECK(oa_stop_emitted(s) == got_len);
    free(got);
    oa_stop_free(s);
}

static void check_request(const oa_request *r, const oa_limits *l) {
    CHECK(r->model && strlen(r->model) <= l->max_string_bytes);
    CHECK(r->n >= 1 && r->n <= l->max_n && oa_n_choices(r) <= l->max_choices);
    CHECK(r->temperature >= 0 && r->temperature <= 2 && r->top_p > 0 && r->top_p <= 1);
    CHECK(r->top_k == -1 || (r->top_k >= 1 && r->top_k <= l->max_top_k));
    CHECK(r->max_tokens >= -1 && r->max_tokens <= l->max_tokens);
    CHECK(r->n_stop <= l->max_stop && (!r->include_usage || r->stream));
    for (uint32_t i = 0; i < r->n_stop; i++)
        CHECK(r->stop_len[i] >= 1 && r->stop_len[i] <= l->max_stop_bytes &&
              strlen(r->stop[i]) == r->stop_len[i]);
    size_t text = 0;
    if (r->endpoint == OA_CHAT) {
        CHECK(r->n_messages >= 1 && r->n_messages <= l->max_messages && !r->prompts);
        CHECK(r->top_logprobs <= 20 && (r->logprobs || r->top_logprobs == 0));
        for (uint32_t i = 0; i < r->n_messages; i++) {
            CHECK(r->messages[i].content &&
                  strlen(r->messages[i].content) == r->messages[i].content_len);
            CHECK(r->messages[i].role <= OA_ROLE_TOOL);
            CHECK(r->messages[i].role != OA_ROLE_TOOL || r->messages[i].tool_call_id);
            text += r->messages[i].content_len;
        }
    } else {
        CHECK(r->n_prompts >= 1 && r->n_prompts <= l->max_prompts && !r->messages);
        CHECK(r->top_logprobs <= 5 && (r->logprobs || r->top_logprobs == 0));
        CHECK(r->max_tokens >= (r->echo ? 0 : 1));
        uint64_t ids = 0;
        for (uint32_t i = 0; i < r->n_prompts; i++) {
            const oa_prompt *p = &r->prompts[i];
            CHECK(!p->text != !p->ids);
            if (p->text) CHECK(strlen(p->text) == p->text_len);
            text += p->text_len;
            ids += p->n_ids;
            for (uint32_t k = 0; k < p->n_ids; k++)
                CHECK(p->ids[k] >= 0 && (!l->vocab || (uint32_t)p->ids[k] < l->vocab));
        }
        CHECK(ids <= l->max_prompt_ids);
    }
    CHECK(text <= l->max_prompt_bytes);
}

/* The request's first text, through a response and a chunk, and through the stop matcher. */
static void check_output(const oa_request *r) {
    const char *text = "";
    size_t len = 0;
    if (r->endpoint == OA_CHAT) {
        text = r->messages[r->n_messages - 1].content;
        len = r->messages[r->n_messages - 1].content_len;
    } else if (r->prompts[0].text) {
        text = r->prompts[0].text;
        len = r->prompts[0].text_len;
    }
    oa_meta m = {r->endpoint, "id", 1, r->model, NULL, r->include_usage};
    oa_lp_token lp = {(const uint8_t *)text, (uint32_t)(len < 16 ? len : 16), -1.5f, NULL, 0};
    oa_choice c = {.index = 0,
                   .text = text,
                   .text_len = len,
                   .finish = OA_FINISH_STOP,
                   .logprobs = r->logprobs,
                   .lp = &lp,
                   .n_lp = 1};
    oa_usage u = {1, 2};
    size_t n;
    json_t *v = valid_json(oa_response_json(&m, &c, 1, &u, &n), n);
    json_t *ch = json_array_get(json_object_get(v, "choices"), 0);
    json_t *t = r->endpoint == OA_CHAT ? json_object_get(json_object_get(ch, "message"), "content")
                                       : json_object_get(ch, "text");
    CHECK(json_string_length(t) == len && memcmp(json_string_value(t), text, len) == 0);
    CHECK(strcmp(json_string_value(json_object_get(v, "model")), r->model) == 0);
    json_decref(v);
    oa_delta d = {
        .index = 1, .text = text, .text_len = len, .logprobs = r->logprobs, .lp = &lp, .n_lp = 1};
    json_decref(valid_json(oa_chunk_json(&m, &d, &n), n));
    check_stop(r, text, len, 1 + (unsigned)(len % 3));
}

static void check_error(const oa_error *e) {
    CHECK(e->status >= 400 && e->status < 600 && e->type && e->message[0]);
    size_t n;
    json_t *v = valid_json(oa_error_json(e, &n), n);
    json_t *o = json_object_get(v, "error");
    CHECK(strcmp(json_string_value(json_object_get(o, "message")), e->message) == 0);
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    oa_limits l = limits_for(sel);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    oa_error e;
    int rc;
    if ((sel & 3) <= 1) {
        oa_request r;
        rc = oa_parse_request((sel & 3) == 0 ? OA_CHAT : OA_COMPLETIONS, body, len, &l, &r, &e);
        if (rc == 0) {
            check_request(&r, &l);
            check_output(&r);
        }
        oa_request_free(&r);
    } else if ((sel & 3) == 2) {
        oa_tokenize_req t;
        rc = oa_parse_tokenize(body, len, &l, &t, &e);
        if (rc == 0) CHECK(!t.prompt != !t.messages);
        oa_tokenize_req_free(&t);
    } else {
        oa_detokenize_req d;
        rc = oa_parse_detokenize(body, len, &l, &d, &e);
        if (rc == 0) {
            size_t n;
            json_decref(valid_json(oa_tokenize_json(d.tokens, d.n_tokens, 8, &n), n));
        }
        oa_detokenize_req_free(&d);
    }
    if (rc) check_error(&e);
    return 0;
}
