/* Unit tests for router/openai response builders: every object parsed back with jansson and
 * compared field by field, key order included (jansson keeps insertion order): chat.completion
 * and text_completion with n > 1, logprobs in both shapes (top candidates, partial UTF-8 tokens,
 * -inf, text_offset), streaming chunks with include_usage on and off, escaping, models, ids,
 * /tokenize, /detokenize and error objects. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/openai.h"

/* ---- helpers ---- */

/* Parses a builder's answer; lenp is read after the builder has run. */
static json_t *load(char *text, const size_t *lenp) {
    cr_assert_not_null(text, "builder returned NULL");
    size_t len = *lenp;
    cr_assert_eq(strlen(text), len, "len %zu, strlen %zu", len, strlen(text));
    cr_assert_null(strchr(text, '\n'), "compact JSON has no newline: %s", text);
    json_error_t je;
    json_t *v = json_loadb(text, len, 0, &je);
    cr_assert_not_null(v, "invalid JSON (%s) at %d: %s", je.text, je.position, text);
    free(text);
    return v;
}

/* The object's keys, in order, joined with ','. */
static void keys_are(const json_t *o, const char *want) {
    char got[512] = "";
    const char *k;
    json_t *v;
    cr_assert(json_is_object(o), "not an object");
    json_object_foreach((json_t *)o, k, v) {
        if (got[0]) strcat(got, ",");
        strcat(got, k);
    }
    cr_assert_str_eq(got, want, "keys '%s', want '%s'", got, want);
}

static const char *sget(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    cr_assert(json_is_string(v), "'%s' is not a string", k);
    return json_string_value(v);
}

static long long iget(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    cr_assert(json_is_integer(v), "'%s' is not an integer", k);
    return json_integer_value(v);
}

static void is_null(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    cr_assert_not_null(v, "'%s' missing", k);
    cr_assert(json_is_null(v), "'%s' is not null", k);
}

static const oa_meta CHAT = {OA_CHAT, "chatcmpl-abc", 1700000000, "step3", "fp_afd1", false};
static const oa_meta TEXT = {OA_COMPLETIONS, "cmpl-xyz", 1700000001, "step3", NULL, false};

/* ---- non-streaming ---- */

Test(openai_resp, chat_completion_shape) {
    oa_choice ch[2] = {
        {.index = 0, .text = "Hello!", .text_len = 6, .finish = OA_FINISH_STOP},
        {.index = 1, .text = "Hi", .text_len = 2, .finish = OA_FINISH_LENGTH},
    };
    oa_usage u = {9, 12};
    size_t len;
    json_t *r = load(oa_response_json(&CHAT, ch, 2, &u, &len), &len);
    keys_are(r, "id,object,created,model,system_fingerprint,choices,usage");
    cr_assert_str_eq(sget(r, "id"), "chatcmpl-abc");
    cr_assert_str_eq(sget(r, "object"), "chat.completion");
    cr_assert_eq(iget(r, "created"), 1700000000, "%lld", iget(r, "created"));
    cr_assert_str_eq(sget(r, "model"), "step3");
    cr_assert_str_eq(sget(r, "system_fingerprint"), "fp_afd1");
    json_t *cs = json_object_get(r, "choices");
    cr_assert_eq(json_array_size(cs), 2, "%zu", json_array_size(cs));
    for (int i = 0; i < 2; i++) {
        json_t *c = json_array_get(cs, i);
        keys_are(c, "index,message,logprobs,finish_reason");
        cr_assert_eq(iget(c, "index"), i, "%lld", iget(c, "index"));
        json_t *m = json_object_get(c, "message");
        keys_are(m, "role,content,refusal");
        cr_assert_str_eq(sget(m, "role"), "assistant");
        is_null(m, "refusal");
        is_null(c, "logprobs");
    }
    cr_assert_str_eq(sget(json_object_get(json_array_get(cs, 0), "message"), "content"), "Hello!");
    cr_assert_str_eq(sget(json_array_get(cs, 0), "finish_reason"), "stop");
    cr_assert_str_eq(sget(json_array_get(cs, 1), "finish_reason"), "length");
    json_t *us = json_object_get(r, "usage");
    keys_are(us, "prompt_tokens,completion_tokens,total_tokens");
    cr_assert_eq(iget(us, "prompt_tokens"), 9);
    cr_assert_eq(iget(us, "completion_tokens"), 12);
    cr_assert_eq(iget(us, "total_tokens"), 21, "%lld", iget(us, "total_tokens"));
    json_decref(r);
}

Test(openai_resp, text_completion_shape) {
    oa_choice ch[3];
    for (int i = 0; i < 3; i++)
        ch[i] = (oa_choice){
            .index = (uint32_t)i, .text = "abc", .text_len = (size_t)i, .finish = OA_FINISH_LENGTH};
    oa_usage u = {3, 5};
    size_t len;
    json_t *r = load(oa_response_json(&TEXT, ch, 3, &u, &len), &len);
    keys_are(r, "id,object,created,model,choices,usage"); /* no fingerprint given */
    cr_assert_str_eq(sget(r, "object"), "text_completion");
    json_t *cs = json_object_get(r, "choices");
    for (int i = 0; i < 3; i++) {
        json_t *c = json_array_get(cs, i);
        keys_are(c, "text,index,logprobs,finish_reason");
        cr_assert_eq(strlen(sget(c, "text")), (size_t)i);
        cr_assert_eq(iget(c, "index"), i);
        is_null(c, "logprobs");
    }
    cr_assert_eq(iget(json_object_get(r, "usage"), "total_tokens"), 8);
    json_decref(r);
}

/* ---- logprobs ---- */

static const uint8_t B_HELLO[] = "Hello", B_SP[] = " w\xc3\xb6rld", B_E2[] = {0xe2, 0x80},
                     B_AE2[] = {'a', 0xe2}, B_Q[] = "\"q\"";

Test(openai_resp, chat_logprobs_shape) {
    oa_lp_cand top[3] = {{B_HELLO, 5, -0.25f}, {B_E2, 2, -INFINITY}, {NULL, 0, -3.5f}};
    oa_lp_token t[3] = {
        {B_HELLO, 5, -0.25f, top, 3},
        {B_E2, 2, -12.5f, NULL, 0},
        {B_AE2, 2, -1e-7f, NULL, 0},
    };
    oa_choice ch = {.index = 0,
                    .text = "Hello",
                    .text_len = 5,
                    .finish = OA_FINISH_STOP,
                    .logprobs = true,
                    .lp = t,
                    .n_lp = 3};
    size_t len;
    json_t *r = load(oa_response_json(&CHAT, &ch, 1, NULL, &len), &len);
    keys_are(r, "id,object,created,model,system_fingerprint,choices");
    json_t *lp = json_object_get(json_array_get(json_object_get(r, "choices"), 0), "logprobs");
    keys_are(lp, "content,refusal");
    is_null(lp, "refusal");
    json_t *content = json_object_get(lp, "content");
    cr_assert_eq(json_array_size(content), 3, "%zu", json_array_size(content));
    json_t *c0 = json_array_get(content, 0);
    keys_are(c0, "token,logprob,bytes,top_logprobs");
    cr_assert_str_eq(sget(c0, "token"), "Hello");
    cr_assert_eq((float)json_real_value(json_object_get(c0, "logprob")), -0.25f);
    json_t *bytes = json_object_get(c0, "bytes");
    cr_assert_eq(json_array_size(bytes), 5, "%zu", json_array_size(bytes));
    cr_assert_eq(json_integer_value(json_array_get(bytes, 0)), 'H');
    json_t *tops = json_object_get(c0, "top_logprobs");
    cr_assert_eq(json_array_size(tops), 3, "%zu", json_array_size(tops));
    keys_are(json_array_get(tops, 0), "token,logprob,bytes");
    json_t *t1 = json_array_get(tops, 1);
    cr_assert_str_eq(sget(t1, "token"), "\\xe2\\x80");
    cr_assert_eq(json_number_value(json_object_get(t1, "logprob")), -9999.0, "%g",
                 json_number_value(json_object_get(t1, "logprob")));
    json_t *t2 = json_array_get(tops, 2);
    cr_assert_str_eq(sget(t2, "token"), "");
    is_null(t2, "bytes");
    /* a piece of a character: escaped text, exact bytes */
    json_t *c1 = json_array_get(content, 1);
    cr_assert_str_eq(sget(c1, "token"), "\\xe2\\x80");
    json_t *b1 = json_object_get(c1, "bytes");
    cr_assert_eq(json_array_size(b1), 2);
    cr_assert_eq(json_integer_value(json_array_get(b1, 0)), 0xe2);
    cr_assert_eq(json_integer_value(json_array_get(b1, 1)), 0x80);
    cr_assert_eq(json_array_size(json_object_get(c1, "top_logprobs")), 0);
    json_t *c2 = json_array_get(content, 2);
    cr_assert_str_eq(sget(c2, "token"), "a\\xe2");
    cr_assert_eq((float)json_number_value(json_object_get(c2, "logprob")), -1e-7f);
    json_decref(r);
}

Test(openai_resp, chat_logprobs_empty_list) {
    oa_choice ch = {.index = 0, .text = "", .finish = OA_FINISH_LENGTH, .logprobs = true};
    size_t len;
    char *s = oa_response_json(&CHAT, &ch, 1, NULL, &len);
    cr_assert(strstr(s, "\"logprobs\":{\"content\":[],\"refusal\":null}"), "%s", s);
    free(s);
}

Test(openai_resp, logprob_numbers_are_short) {
    oa_lp_token t = {B_HELLO, 5, -0.1f, NULL, 0};
    oa_choice ch = {.index = 0,
                    .text = "Hello",
                    .text_len = 5,
                    .finish = OA_FINISH_STOP,
                    .logprobs = true,
                    .lp = &t,
                    .n_lp = 1};
    size_t len;
    char *s = oa_response_json(&CHAT, &ch, 1, NULL, &len);
    cr_assert(strstr(s, "\"logprob\":-0.1,"), "%s", s);
    free(s);
    t.logprob = NAN;
    s = oa_response_json(&CHAT, &ch, 1, NULL, &len);
    cr_assert(strstr(s, "\"logprob\":-9999,"), "%s", s);
    free(s);
    t.logprob = 0;
    s = oa_response_json(&CHAT, &ch, 1, NULL, &len);
    cr_assert(strstr(s, "\"logprob\":0,"), "%s", s);
    free(s);
}

Test(openai_resp, completions_logprobs_shape) {
    oa_lp_cand top0[3] = {{B_SP, 7, -0.5f}, {B_Q, 3, -1.0f}, {B_SP, 7, -2.0f}}; /* dup key */
    oa_lp_cand top1[1] = {{B_E2, 2, -4.0f}};
    oa_lp_token t[3] = {
        {B_SP, 7, -0.5f, top0, 3}, /* " wörld": 6 characters */
        {B_E2, 2, -4.0f, top1, 1}, /* a piece of a character: 1 lead byte */
        {B_HELLO, 5, -0.75f, NULL, 0},
    };
    oa_choice ch = {.index = 0,
                    .text = "Say wörld",
                    .text_len = 10,
                    .finish = OA_FINISH_LENGTH,
                    .logprobs = true,
                    .lp = t,
                    .n_lp = 3,
                    .text_offset0 = 3};
    size_t len;
    json_t *r = load(oa_response_json(&TEXT, &ch, 1, NULL, &len), &len);
    json_t *lp = json_object_get(json_array_get(json_object_get(r, "choices"), 0), "logprobs");
    keys_are(lp, "tokens,token_logprobs,top_logprobs,text_offset");
    json_t *tokens = json_object_get(lp, "tokens");
    cr_assert_eq(json_array_size(tokens), 3);
    cr_assert_str_eq(json_string_value(json_array_get(tokens, 0)), " w\xc3\xb6rld");
    cr_assert_str_eq(json_string_value(json_array_get(tokens, 1)), "bytes:\\xe2\\x80");
    cr_assert_str_eq(json_string_value(json_array_get(tokens, 2)), "Hello");
    json_t *tl = json_object_get(lp, "token_logprobs");
    cr_assert_eq(json_number_value(json_array_get(tl, 0)), -0.5);
    cr_assert_eq(json_number_value(json_array_get(tl, 2)), -0.75);
    json_t *top = json_object_get(lp, "top_logprobs");
    cr_assert_eq(json_array_size(top), 3);
    json_t *o0 = json_array_get(top, 0);
    cr_assert_eq(json_object_size(o0), 2, "a repeated token keeps one entry: %zu",
                 json_object_size(o0));
    keys_are(o0, " w\xc3\xb6rld,\"q\"");
    cr_assert_eq(json_number_value(json_object_get(o0, " w\xc3\xb6rld")), -0.5,
                 "the first (most likely) value is kept");
    cr_assert_eq(json_number_value(json_object_get(json_array_get(top, 1), "bytes:\\xe2\\x80")),
                 -4.0);
    cr_assert_eq(json_object_size(json_array_get(top, 2)), 0);
    json_t *off = json_object_get(lp, "text_offset");
    cr_assert_eq(json_integer_value(json_array_get(off, 0)), 3);
    cr_assert_eq(json_integer_value(json_array_get(off, 1)), 9, "%lld",
                 json_integer_value(json_array_get(off, 1)));
    cr_assert_eq(json_integer_value(json_array_get(off, 2)), 10, "%lld",
                 json_integer_value(json_array_get(off, 2)));
    json_decref(r);
    cr_assert_eq(oa_text_chars(" w\xc3\xb6rld", 7), 6);
    cr_assert_eq(oa_text_chars("\xf0\x9f\x98\x80", 4), 1);
    cr_assert_eq(oa_text_chars("", 0), 0);
}

/* ---- streaming ---- */

/* The chunks of one streamed chat choice, with or without include_usage. */
static void chat_stream(bool include_usage) {
    oa_meta m = CHAT;
    m.include_usage = include_usage;
    oa_delta ds[4] = {
        {.index = 1, .role = true},
        {.index = 1, .text = "Hel", .text_len = 3},
        {.index = 1, .text = "lo", .text_len = 2},
        {.index = 1, .finish = OA_FINISH_STOP},
    };
    const char *want_delta[4] = {"{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}",
                                 "{\"content\":\"Hel\"}", "{\"content\":\"lo\"}", "{}"};
    for (int i = 0; i < 4; i++) {
        size_t len;
        json_t *c = load(oa_chunk_json(&m, &ds[i], &len), &len);
        keys_are(c, include_usage ? "id,object,created,model,system_fingerprint,choices,usage"
                                  : "id,object,created,model,system_fingerprint,choices");
        cr_assert_str_eq(sget(c, "object"), "chat.completion.chunk");
        cr_assert_str_eq(sget(c, "id"), "chatcmpl-abc");
        cr_assert_eq(iget(c, "created"), 1700000000);
        if (include_usage) is_null(c, "usage");
        json_t *cs = json_object_get(c, "choices");
        cr_assert_eq(json_array_size(cs), 1);
        json_t *ch = json_array_get(cs, 0);
        keys_are(ch, "index,delta,logprobs,finish_reason");
        cr_assert_eq(iget(ch, "index"), 1);
        is_null(ch, "logprobs");
        char *d = json_dumps(json_object_get(ch, "delta"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        cr_assert_str_eq(d, want_delta[i], "chunk %d: delta %s", i, d);
        free(d);
        if (i < 3)
            is_null(ch, "finish_reason");
        else
            cr_assert_str_eq(sget(ch, "finish_reason"), "stop");
        json_decref(c);
    }
    if (!include_usage) return;
    oa_usage u = {4, 2};
    size_t len;
    json_t *c = load(oa_chunk_usage_json(&m, &u, &len), &len);
    keys_are(c, "id,object,created,model,system_fingerprint,choices,usage");
    cr_assert_eq(json_array_size(json_object_get(c, "choices")), 0);
    json_t *us = json_object_get(c, "usage");
    cr_assert_eq(iget(us, "prompt_tokens"), 4);
    cr_assert_eq(iget(us, "completion_tokens"), 2);
    cr_assert_eq(iget(us, "total_tokens"), 6);
    json_decref(c);
}

Test(openai_resp, chat_stream_with_usage) {
    chat_stream(true);
}
Test(openai_resp, chat_stream_without_usage) {
    chat_stream(false);
}

Test(openai_resp, chat_stream_text_with_finish_and_logprobs) {
    oa_lp_token t = {(const uint8_t *)"end", 3, -0.5f, NULL, 0};
    oa_delta d = {.index = 0,
                  .text = "end",
                  .text_len = 3,
                  .finish = OA_FINISH_LENGTH,
                  .logprobs = true,
                  .lp = &t,
                  .n_lp = 1};
    size_t len;
    json_t *c = load(oa_chunk_json(&CHAT, &d, &len), &len);
    json_t *ch = json_array_get(json_object_get(c, "choices"), 0);
    cr_assert_str_eq(sget(json_object_get(ch, "delta"), "content"), "end");
    cr_assert_str_eq(sget(ch, "finish_reason"), "length");
    json_t *content = json_object_get(json_object_get(ch, "logprobs"), "content");
    cr_assert_eq(json_array_size(content), 1);
    cr_assert_str_eq(sget(json_array_get(content, 0), "token"), "end");
    json_decref(c);
}

Test(openai_resp, completions_stream) {
    oa_meta m = TEXT;
    m.include_usage = true;
    oa_delta d = {.index = 3, .text = "foo", .text_len = 3};
    size_t len;
    json_t *c = load(oa_chunk_json(&m, &d, &len), &len);
    keys_are(c, "id,object,created,model,choices,usage");
    cr_assert_str_eq(sget(c, "object"), "text_completion");
    is_null(c, "usage");
    json_t *ch = json_array_get(json_object_get(c, "choices"), 0);
    keys_are(ch, "text,index,logprobs,finish_reason");
    cr_assert_str_eq(sget(ch, "text"), "foo");
    cr_assert_eq(iget(ch, "index"), 3);
    is_null(ch, "finish_reason");
    json_decref(c);
    d = (oa_delta){.index = 3, .finish = OA_FINISH_STOP};
    c = load(oa_chunk_json(&m, &d, &len), &len);
    ch = json_array_get(json_object_get(c, "choices"), 0);
    cr_assert_str_eq(sget(ch, "text"), "");
    cr_assert_str_eq(sget(ch, "finish_reason"), "stop");
    json_decref(c);
    oa_usage u = {1, 1};
    c = load(oa_chunk_usage_json(&m, &u, &len), &len);
    cr_assert_str_eq(sget(c, "object"), "text_completion");
    cr_assert_eq(json_array_size(json_object_get(c, "choices")), 0);
    cr_assert_eq(iget(json_object_get(c, "usage"), "total_tokens"), 2);
    json_decref(c);
}

/* ---- escaping ---- */

Test(openai_resp, escaping_round_trips) {
    const char text[] = "q\"b\\s/\n\r\t\x01\x1f\x7f caf\xc3\xa9 \xf0\x9f\x98\x80 bad:\xff\xc3|"
                        "\xed\xa0\x80|\xc0\xaf|\xf4\x90\x80\x80.";
    const char want[] = "q\"b\\s/\n\r\t\x01\x1f\x7f caf\xc3\xa9 \xf0\x9f\x98\x80 bad:"
                        "\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                        "\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                        "\xef\xbf\xbd.";
    oa_choice ch = {
        .index = 0, .text = text, .text_len = sizeof text - 1, .finish = OA_FINISH_STOP};
    size_t len;
    json_t *r = load(oa_response_json(&CHAT, &ch, 1, NULL, &len), &len);
    json_t *m = json_object_get(json_array_get(json_object_get(r, "choices"), 0), "message");
    cr_assert_str_eq(sget(m, "content"), want);
    json_decref(r);
    /* embedded NUL */
    ch.text = "a\0b";
    ch.text_len = 3;
    char *s = oa_response_json(&CHAT, &ch, 1, NULL, &len);
    cr_assert(strstr(s, "\"content\":\"a\\u0000b\""), "%s", s);
    free(s);
}

/* ---- models, ids, tokenize, errors ---- */

Test(openai_resp, models) {
    oa_model_info ms[2] = {{"step3", 1700000000, "afd"}, {"step3-mini", 1, "stepfun"}};
    size_t len;
    json_t *r = load(oa_models_json(ms, 2, &len), &len);
    keys_are(r, "object,data");
    cr_assert_str_eq(sget(r, "object"), "list");
    json_t *d = json_object_get(r, "data");
    cr_assert_eq(json_array_size(d), 2);
    keys_are(json_array_get(d, 0), "id,object,created,owned_by");
    cr_assert_str_eq(sget(json_array_get(d, 1), "id"), "step3-mini");
    cr_assert_str_eq(sget(json_array_get(d, 1), "object"), "model");
    cr_assert_str_eq(sget(json_array_get(d, 1), "owned_by"), "stepfun");
    cr_assert_eq(iget(json_array_get(d, 0), "created"), 1700000000);
    json_decref(r);
    r = load(oa_models_json(NULL, 0, &len), &len);
    cr_assert_eq(json_array_size(json_object_get(r, "data")), 0);
    json_decref(r);
    r = load(oa_model_json(&ms[0], &len), &len);
    keys_are(r, "id,object,created,owned_by");
    json_decref(r);
}

Test(openai_resp, ids) {
    uint64_t a[3] = {1, 2, 3}, b[3] = {1, 2, 4};
    char ia[OA_ID_MAX], ia2[OA_ID_MAX], ib[OA_ID_MAX], ic[OA_ID_MAX];
    oa_make_id(OA_CHAT, a, ia);
    oa_make_id(OA_CHAT, a, ia2);
    oa_make_id(OA_CHAT, b, ib);
    oa_make_id(OA_COMPLETIONS, a, ic);
    cr_assert_eq(strncmp(ia, "chatcmpl-", 9), 0, "%s", ia);
    cr_assert_eq(strlen(ia), 9 + 29, "%s", ia);
    cr_assert_eq(strncmp(ic, "cmpl-", 5), 0, "%s", ic);
    cr_assert_eq(strlen(ic), 5 + 29, "%s", ic);
    cr_assert_str_eq(ia, ia2);
    cr_assert_str_neq(ia, ib);
    for (size_t i = 9; ia[i]; i++)
        cr_assert(strchr("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", ia[i]),
                  "%s", ia);
}

Test(openai_resp, tokenize_detokenize) {
    int32_t ids[3] = {1, 22, 333};
    size_t len;
    json_t *r = load(oa_tokenize_json(ids, 3, 65536, &len), &len);
    keys_are(r, "count,max_model_len,tokens");
    cr_assert_eq(iget(r, "count"), 3);
    cr_assert_eq(iget(r, "max_model_len"), 65536);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(r, "tokens"), 2)), 333);
    json_decref(r);
    r = load(oa_detokenize_json("he said \"hi\"\n", 13, &len), &len);
    keys_are(r, "prompt");
    cr_assert_str_eq(sget(r, "prompt"), "he said \"hi\"\n");
    json_decref(r);
}

Test(openai_resp, error_objects) {
    oa_error e;
    oa_errorf(&e, 400, "invalid_request_error", "invalid_type", "messages[1].content",
              "Invalid type for 'messages[1].content'.");
    size_t len;
    json_t *r = load(oa_error_json(&e, &len), &len);
    keys_are(r, "error");
    json_t *o = json_object_get(r, "error");
    keys_are(o, "message,type,param,code");
    cr_assert_str_eq(sget(o, "message"), "Invalid type for 'messages[1].content'.");
    cr_assert_str_eq(sget(o, "type"), "invalid_request_error");
    cr_assert_str_eq(sget(o, "param"), "messages[1].content");
    cr_assert_str_eq(sget(o, "code"), "invalid_type");
    json_decref(r);
    oa_errorf(&e, 400, "invalid_request_error", NULL, NULL, "We could not parse \"it\".");
    r = load(oa_error_json(&e, &len), &len);
    o = json_object_get(r, "error");
    is_null(o, "param");
    is_null(o, "code");
    cr_assert_str_eq(sget(o, "message"), "We could not parse \"it\".");
    json_decref(r);
}

/* A parse error's JSON, end to end. */
Test(openai_resp, parse_error_to_json) {
    oa_request rq;
    oa_error e;
    const char *b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":7}]}";
    cr_assert_neq(oa_parse_request(OA_CHAT, b, strlen(b), NULL, &rq, &e), 0);
    size_t len;
    json_t *r = load(oa_error_json(&e, &len), &len);
    json_t *o = json_object_get(r, "error");
    cr_assert_str_eq(sget(o, "param"), "messages[0].content");
    cr_assert_str_eq(sget(o, "code"), "invalid_type");
    cr_assert(strstr(sget(o, "message"), "an integer"), "%s", sget(o, "message"));
    json_decref(r);
}
