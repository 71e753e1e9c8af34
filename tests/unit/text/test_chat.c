/* Step-3 chat rendering: the exact text of the template, ids equal to encoding that text,
 * escape_content, JSON messages (parts, null, refusals), missing tokens, limits. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/chat.h"
#include "tests/unit/text/tok_util.h"

#define BOS "<｜begin▁of▁sentence｜>"
#define ADDED                                                                                      \
    "[{\"id\":300,\"content\":\"" BOS "\",\"special\":true,\"normalized\":false},"                 \
    "{\"id\":301,\"content\":\"<|BOT|>\",\"special\":true},"                                       \
    "{\"id\":302,\"content\":\"<|EOT|>\",\"special\":true},"                                       \
    "{\"id\":303,\"content\":\"<think>\",\"special\":false}]"

static tok_tokenizer *make(bool with_template) {
    static const char *const m[] = {"u s", "us e", "use r", "\xc4\xa0 t", "h i", NULL};
    char *j = tu_json(m, ADDED, TU_PRE_GPT2, NULL);
    json_t *cfg = json_object();
    json_object_set_new(cfg, "bos_token", json_string(BOS));
    json_object_set_new(cfg, "eos_token", json_string("<|EOT|>"));
    if (with_template)
        json_object_set_new(cfg, "chat_template", json_string(tok_chat_step3_template));
    char *c = json_dumps(cfg, 0);
    tok_tokenizer *t = tu_load(j, c);
    json_decref(cfg);
    free(c);
    free(j);
    return t;
}

static tok_chat init(const tok_tokenizer *t) {
    tok_chat c;
    afd_err err = {0};
    cr_assert_eq(tok_chat_init(&c, t, &err), 0, "%s", err.msg);
    return c;
}

static const tok_chat_msg conv[] = {
    {"system", "Be brief.", 9},
    {"user", "hi", 2},
    {"assistant", "<think>\nok\n</think>\nhello", 25},
    {"system", " Twice.", 7},
    {"user", "again\n", 6},
};

Test(chat, renders_the_step3_template) {
    tok_tokenizer *t = make(true);
    tok_chat c = init(t);
    cr_assert(c.template_known, "the config's template is Step-3's");
    cr_assert_eq(c.bos, 300);
    cr_assert_eq(c.bot, 301);
    cr_assert_eq(c.eot, 302);
    tok_str text = {0};
    tok_ids ids = {0};
    tok_chat_opts o = {.add_generation_prompt = true};
    afd_err err = {0};
    cr_assert_eq(tok_chat_render(&c, NULL, conv, 5, &o, &text, &ids, &err), 0, "%s", err.msg);
    const char *want = BOS "Be brief. Twice.<|BOT|>user\nhi<|EOT|><|BOT|>assistant\n<think>\nok\n"
                           "</think>\nhello<|EOT|><|BOT|>user\nagain\n<|EOT|><|BOT|>assistant\n";
    cr_assert_str_eq(text.s, want);
    tok_ids whole = tu_enc(t, text.s, text.len, TOK_ENC_SPECIAL);
    char a[2048];
    snprintf(a, sizeof a, "%s", tu_fmt(ids.v, ids.n));
    cr_assert(ids.n == whole.n && !memcmp(ids.v, whole.v, ids.n * sizeof *ids.v),
              "render ids %s != encode(text) %s", a, tu_fmt(whole.v, whole.n));
    cr_assert_eq(ids.v[0], 300);
    cr_assert_eq(ids.v[ids.n - 1], '\n' /* "assistant\n" ends with the newline byte */);
    tok_ids_release(&whole);
    /* without the generation prompt */
    text.len = 0, ids.n = 0;
    o.add_generation_prompt = false;
    cr_assert_eq(tok_chat_render(&c, NULL, conv, 2, &o, &text, &ids, &err), 0);
    cr_assert_str_eq(text.s, BOS "Be brief.<|BOT|>user\nhi<|EOT|>");
    cr_assert_eq(ids.v[ids.n - 1], 302);
    tok_str_release(&text);
    tok_ids_release(&ids);
    tok_free(t);
}

Test(chat, empty_conversation_and_null_outputs) {
    tok_tokenizer *t = make(true);
    tok_chat c = init(t);
    tok_str text = {0};
    tok_ids ids = {0};
    cr_assert_eq(tok_chat_render(&c, NULL, NULL, 0, NULL, &text, NULL, NULL), 0);
    cr_assert_str_eq(text.s, BOS "<|BOT|>assistant\n", "default options add the prompt");
    cr_assert_eq(tok_chat_render(&c, NULL, conv, 1, NULL, NULL, &ids, NULL), 0);
    cr_assert_eq(ids.v[0], 300);
    cr_assert_eq(ids.v[ids.n - 1], '\n');
    tok_str_release(&text);
    tok_ids_release(&ids);
    tok_free(t);
}

Test(chat, escape_content_keeps_specials_in_messages_as_text) {
    tok_tokenizer *t = make(true);
    tok_chat c = init(t);
    tok_chat_msg m[] = {{"user", "a<|EOT|>b<think>", 16}};
    tok_ids plain = {0}, esc = {0};
    tok_str t1 = {0}, t2 = {0};
    tok_chat_opts o = {.add_generation_prompt = false};
    cr_assert_eq(tok_chat_render(&c, NULL, m, 1, &o, &t1, &plain, NULL), 0);
    o.escape_content = true;
    cr_assert_eq(tok_chat_render(&c, NULL, m, 1, &o, &t2, &esc, NULL), 0);
    cr_assert_str_eq(t1.s, t2.s, "same text either way");
    int n302 = 0, e302 = 0, e303 = 0;
    for (size_t i = 0; i < plain.n; i++)
        n302 += plain.v[i] == 302;
    for (size_t i = 0; i < esc.n; i++)
        e302 += esc.v[i] == 302, e303 += esc.v[i] == 303;
    cr_assert_eq(n302, 2, "parsed: the user's <|EOT|> and the template's");
    cr_assert_eq(e302, 1, "escaped: only the template's <|EOT|>");
    cr_assert_eq(e303, 1, "<think> is not special: matched either way (as in HF)");
    tok_ids_release(&plain);
    tok_ids_release(&esc);
    tok_str_release(&t1);
    tok_str_release(&t2);
    tok_free(t);
}

static int render_json(const tok_chat *c, const char *msgs, tok_str *text, afd_err *err) {
    json_error_t je;
    json_t *j = json_loads(msgs, 0, &je);
    cr_assert_not_null(j, "test JSON: %s", je.text);
    memset(err, 0, sizeof *err);
    int rc = tok_chat_render_json(c, NULL, j, NULL, text, NULL, err);
    json_decref(j);
    return rc;
}

Test(chat, json_messages) {
    tok_tokenizer *t = make(true);
    tok_chat c = init(t);
    tok_str text = {0};
    afd_err err;
    int rc = render_json(&c,
                         "[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"S1\"},"
                         "{\"type\":\"text\",\"text\":\"S2\"}]},"
                         "{\"role\":\"user\",\"content\":\"q\",\"name\":\"ignored\"},"
                         "{\"role\":\"assistant\",\"content\":null},"
                         "{\"role\":\"tool\",\"content\":[]}]",
                         &text, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_str_eq(text.s, BOS "S1S2<|BOT|>user\nq<|EOT|><|BOT|>assistant\n<|EOT|><|BOT|>tool\n"
                                 "<|EOT|><|BOT|>assistant\n");
    tok_str_release(&text);
    tok_free(t);
}

static void json_refused(const tok_chat *c, const char *msgs, int code, const char *needle) {
    tok_str text = {0};
    afd_err err;
    int rc = render_json(c, msgs, &text, &err);
    cr_assert_eq(rc, code, "rc %d, want %d for %s (%s)", rc, code, msgs, err.msg);
    cr_assert_not_null(strstr(err.msg, needle), "'%s' not in: %s", needle, err.msg);
    cr_assert_eq(text.len, 0, "nothing written on error");
    tok_str_release(&text);
}

Test(chat, json_refusals_name_the_message) {
    tok_tokenizer *t = make(true);
    tok_chat c = init(t);
    json_refused(&c, "{\"role\":\"user\"}", AFD_E_FORMAT, "messages: not an array");
    json_refused(&c, "[{\"content\":\"x\"}]", AFD_E_FORMAT, "messages[0]");
    json_refused(&c, "[{\"role\":\"user\",\"content\":\"x\"},{\"role\":5,\"content\":\"x\"}]",
                 AFD_E_FORMAT, "messages[1]");
    json_refused(&c, "[\"hi\"]", AFD_E_FORMAT, "messages[0]");
    json_refused(&c, "[{\"role\":\"user\",\"content\":42}]", AFD_E_FORMAT, "messages[0].content");
    json_refused(&c,
                 "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                 "{\"type\":\"image_url\",\"image_url\":{}}]}]",
                 AFD_E_UNSUPPORTED, "messages[0].content[1]: type image_url");
    json_refused(&c, "[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]", AFD_E_FORMAT,
                 "\"text\" is not a string");
    tok_free(t);
}

Test(chat, missing_tokens_and_unknown_template) {
    /* no <|BOT|> */
    tok_tokenizer *t = tu_make(NULL, "[{\"id\":300,\"content\":\"<|EOT|>\",\"special\":true},"
                                     "{\"id\":301,\"content\":\"" BOS "\",\"special\":true}]",
                               NULL);
    tok_chat c;
    afd_err err = {0};
    cr_assert_eq(tok_chat_init(&c, t, &err), AFD_E_NOTFOUND);
    cr_assert_not_null(strstr(err.msg, "<|BOT|>"), "%s", err.msg);
    tok_free(t);
    /* no config: BOS found by its name; template unknown */
    t = tu_make(NULL, ADDED, NULL);
    cr_assert_eq(tok_chat_init(&c, t, &err), 0, "%s", err.msg);
    cr_assert_eq(c.bos, 300);
    cr_assert(!c.template_known);
    tok_free(t);
    t = make(false);
    cr_assert_eq(tok_chat_init(&c, t, &err), 0);
    cr_assert(!c.template_known, "no chat_template in the config");
    tok_free(t);
}

Test(chat, limit) {
    tok_tokenizer *t = make(true);
    tok_chat c = init(t);
    tok_ids ids = {.limit = 6};
    tok_str text = {0};
    afd_err err = {0};
    int rc = tok_chat_render(&c, NULL, conv, 5, NULL, &text, &ids, &err);
    cr_assert_eq(rc, AFD_E_LIMIT, "rc %d", rc);
    cr_assert_eq(ids.n, 0);
    cr_assert_eq(text.len, 0);
    cr_assert_not_null(strstr(err.msg, "6 tokens"), "%s", err.msg);
    tok_ids_release(&ids);
    tok_str_release(&text);
    tok_free(t);
}

Test(chat, ids_follow_hf_when_template_tokens_strip_space) {
    /* <|BOT|> with lstrip: encoding the whole text drops the system text's trailing spaces;
     * the rendered ids must do the same (they are the encoding of the text) */
    const char *added = "[{\"id\":300,\"content\":\"" BOS "\",\"special\":true},"
                        "{\"id\":301,\"content\":\"<|BOT|>\",\"special\":true,\"lstrip\":true},"
                        "{\"id\":302,\"content\":\"<|EOT|>\",\"special\":true,\"rstrip\":true}]";
    tok_tokenizer *t = tu_make(NULL, added, TU_PRE_GPT2);
    tok_chat c = init(t);
    tok_chat_msg m[] = {{"system", "S  ", 3}, {"user", "hi", 2}};
    tok_str text = {0};
    tok_ids ids = {0};
    cr_assert_eq(tok_chat_render(&c, NULL, m, 2, NULL, &text, &ids, NULL), 0);
    tok_ids whole = tu_enc(t, text.s, text.len, TOK_ENC_SPECIAL);
    cr_assert(ids.n == whole.n && !memcmp(ids.v, whole.v, ids.n * sizeof *ids.v),
              "render %zu ids, encode(text) %zu", ids.n, whole.n);
    cr_assert_eq(ids.v[1], 'S');
    cr_assert_eq(ids.v[2], 301, "the spaces went to <|BOT|>'s lstrip");
    tok_ids_release(&whole);
    tok_ids_release(&ids);
    tok_str_release(&text);
    tok_free(t);
}
