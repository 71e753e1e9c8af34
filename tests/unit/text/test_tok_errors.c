/* Malformed and unsupported tokenizer files: each is refused with the exact code and a message
 * naming the file and the field, never a crash (the fuzz target covers the rest). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/text/tok_util.h"

static json_t *base(void) {
    static const char *const m[] = {"a b", NULL};
    char *s = tu_json(m, "[{\"id\":300,\"content\":\"<s>\",\"special\":true}]", TU_PRE_GPT2, NULL);
    json_t *j = tu_parse("base", s);
    free(s);
    return j;
}

static json_t *model(json_t *root) { return json_object_get(root, "model"); }

static void refused_text(const char *text, const char *cfg, int code, const char *needle) {
    tok_tokenizer *t = (tok_tokenizer *)1;
    afd_err err = {0};
    int rc = tok_load_mem(text, strlen(text), cfg, cfg ? strlen(cfg) : 0, "test.json", &t, &err);
    cr_assert_eq(rc, code, "rc %d (%s), want %d (%s); msg: %s", rc, afd_strerror(rc), code,
                 afd_strerror(code), err.msg);
    cr_assert_null(t, "no tokenizer on failure");
    cr_assert_not_null(strstr(err.msg, "test.json"), "file not named: %s", err.msg);
    cr_assert_not_null(strstr(err.msg, needle), "'%s' not in: %s", needle, err.msg);
}

/* Takes root (and frees it). */
static void refused(json_t *root, int code, const char *needle) {
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    refused_text(s, NULL, code, needle);
    free(s);
}

static void set_json(json_t *obj, const char *key, const char *json_text) {
    json_object_set_new(obj, key, tu_parse(key, json_text));
}

Test(tok_errors, base_loads) {
    json_t *root = base();
    char *s = json_dumps(root, JSON_COMPACT);
    tok_tokenizer *t = tu_load(s, NULL);
    cr_assert_eq(tok_vocab_size(t), 301);
    tok_free(t);
    free(s);
    json_decref(root);
}

Test(tok_errors, not_json_or_not_an_object) {
    refused_text("{\"model\":", NULL, AFD_E_FORMAT, "line 1");
    refused_text("[1,2]", NULL, AFD_E_FORMAT, "not a JSON object");
    refused_text("", NULL, AFD_E_FORMAT, "test.json");
    refused_text("{\"a\":1,\"a\":2}", NULL, AFD_E_FORMAT, "duplicate");
}

Test(tok_errors, model) {
    json_t *r = base();
    json_object_del(r, "model");
    refused(r, AFD_E_FORMAT, "\"model\" is missing");
    r = base();
    set_json(model(r), "type", "\"WordPiece\"");
    refused(r, AFD_E_UNSUPPORTED, "model.type WordPiece is not supported");
    r = base();
    json_object_del(model(r), "vocab");
    refused(r, AFD_E_FORMAT, "model.vocab is missing");
    r = base();
    set_json(model(r), "merges", "{}");
    refused(r, AFD_E_FORMAT, "model.merges is missing or not an array");
    r = base();
    set_json(model(r), "dropout", "0.1");
    refused(r, AFD_E_UNSUPPORTED, "model.dropout");
    r = base();
    set_json(model(r), "end_of_word_suffix", "\"</w>\"");
    refused(r, AFD_E_UNSUPPORTED, "model.end_of_word_suffix");
    r = base();
    set_json(model(r), "ignore_merges", "\"yes\"");
    refused(r, AFD_E_FORMAT, "model.ignore_merges is not a boolean");
}

Test(tok_errors, vocab) {
    json_t *r = base();
    set_json(json_object_get(model(r), "vocab"), "zz", "-1");
    refused(r, AFD_E_FORMAT, "model.vocab[\"zz\"]: id is not an integer");
    r = base();
    set_json(json_object_get(model(r), "vocab"), "zz", "\"7\"");
    refused(r, AFD_E_FORMAT, "model.vocab[\"zz\"]");
    r = base();
    set_json(json_object_get(model(r), "vocab"), "zz", "99999999");
    refused(r, AFD_E_LIMIT, "model.vocab[\"zz\"]");
    r = base();
    set_json(json_object_get(model(r), "vocab"), "zz", "65");
    refused(r, AFD_E_FORMAT, "id 65 is given to");
    r = base();
    set_json(json_object_get(model(r), "vocab"), "", "400");
    refused(r, AFD_E_FORMAT, "empty token");
    r = base();
    json_object_del(json_object_get(model(r), "vocab"), "A");
    refused(r, AFD_E_UNSUPPORTED, "no token \"A\" for byte 0x41: not a byte-level BPE");
    r = base();
    set_json(model(r), "vocab", "{}");
    set_json(r, "added_tokens", "[]");
    refused(r, AFD_E_FORMAT, "model.vocab is empty");
}

Test(tok_errors, merges) {
    json_t *r = base();
    set_json(model(r), "merges", "[\"ab\"]");
    refused(r, AFD_E_FORMAT, "model.merges[0]: \"ab\" is not \"A B\"");
    r = base();
    set_json(model(r), "merges", "[\"a b\", \"a b c\"]");
    refused(r, AFD_E_FORMAT, "model.merges[1]");
    r = base();
    set_json(model(r), "merges", "[\"a zz\"]");
    refused(r, AFD_E_FORMAT, "model.merges[0]: \"zz\" is not in model.vocab");
    r = base();
    set_json(model(r), "merges", "[\"a b\", \"b c\"]");
    refused(r, AFD_E_FORMAT, "model.merges[1]: the merged token \"bc\" is not in model.vocab");
    r = base();
    set_json(model(r), "merges", "[[\"a\", 1]]");
    refused(r, AFD_E_FORMAT, "model.merges[0]: neither");
    r = base();
    set_json(model(r), "merges", "[[\"a\", \"b\", \"c\"]]");
    refused(r, AFD_E_FORMAT, "model.merges[0]");
    r = base(); /* added-only tokens cannot take part in merges */
    set_json(model(r), "merges", "[\"a <s>\"]");
    refused(r, AFD_E_FORMAT, "\"<s>\" is not in model.vocab");
}

Test(tok_errors, added_tokens) {
    json_t *r = base();
    set_json(r, "added_tokens", "{}");
    refused(r, AFD_E_FORMAT, "\"added_tokens\" is not an array");
    r = base();
    set_json(r, "added_tokens", "[5]");
    refused(r, AFD_E_FORMAT, "added_tokens[0]: not an object");
    r = base();
    set_json(r, "added_tokens", "[{\"id\":300}]");
    refused(r, AFD_E_FORMAT, "added_tokens[0]");
    r = base();
    set_json(r, "added_tokens", "[{\"id\":300,\"content\":\"\"}]");
    refused(r, AFD_E_FORMAT, "added_tokens[0]: empty token");
    r = base();
    set_json(r, "added_tokens", "[{\"id\":300,\"content\":\"<s>\"},{\"id\":300,\"content\":\"<t>\"}]");
    refused(r, AFD_E_FORMAT, "added_tokens[1]: id 300 is already added token \"<s>\"");
    r = base();
    set_json(r, "added_tokens", "[{\"id\":65,\"content\":\"<s>\"}]");
    refused(r, AFD_E_FORMAT, "added_tokens[0]: \"<s>\" has id 65, which model.vocab gives to \"A\"");
    r = base();
    set_json(r, "added_tokens", "[{\"id\":300,\"content\":\"A\"}]");
    refused(r, AFD_E_FORMAT, "token \"A\" has two ids, 65 and 300");
    r = base();
    set_json(r, "added_tokens", "[{\"id\":300,\"content\":\"<s>\",\"lstrip\":1}]");
    refused(r, AFD_E_FORMAT, "added_tokens[0].lstrip is not a boolean");
    r = base();
    set_json(r, "added_tokens", "[{\"id\":-3,\"content\":\"<s>\"}]");
    refused(r, AFD_E_FORMAT, "added_tokens[0]: id is not an integer");
}

Test(tok_errors, pre_tokenizer) {
    json_t *r = base();
    set_json(r, "pre_tokenizer", "{\"type\":\"Whitespace\"}");
    refused(r, AFD_E_UNSUPPORTED, "pre_tokenizer Whitespace is not supported");
    r = base();
    set_json(r, "pre_tokenizer", "null");
    refused(r, AFD_E_FORMAT, "pre_tokenizer is missing");
    r = base();
    set_json(r, "pre_tokenizer", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"x\"},"
                                 "\"behavior\":\"Isolated\"}");
    refused(r, AFD_E_UNSUPPORTED, "no ByteLevel step");
    r = base();
    set_json(r, "pre_tokenizer", "{\"type\":\"Sequence\",\"pretokenizers\":["
                                 "{\"type\":\"ByteLevel\"},{\"type\":\"Split\",\"pattern\":"
                                 "{\"Regex\":\"x\"},\"behavior\":\"Isolated\"}]}");
    refused(r, AFD_E_UNSUPPORTED, "ByteLevel must be the last step");
    r = base();
    set_json(r, "pre_tokenizer", "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
                                 "\"pattern\":{\"Regex\":\"(a|\"},\"behavior\":\"Isolated\"},"
                                 "{\"type\":\"ByteLevel\"}]}");
    refused(r, AFD_E_FORMAT, "bad regex \"(a|\"");
    r = base();
    set_json(r, "pre_tokenizer", "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
                                 "\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Weird\"},"
                                 "{\"type\":\"ByteLevel\"}]}");
    refused(r, AFD_E_FORMAT, "behavior Weird is not one of");
    r = base();
    set_json(r, "pre_tokenizer", "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
                                 "\"pattern\":{\"Glob\":\"a\"},\"behavior\":\"Isolated\"},"
                                 "{\"type\":\"ByteLevel\"}]}");
    refused(r, AFD_E_FORMAT, "pattern is neither");
    r = base();
    set_json(r, "pre_tokenizer", "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
                                 "\"pattern\":{\"Regex\":\"\"},\"behavior\":\"Isolated\"},"
                                 "{\"type\":\"ByteLevel\"}]}");
    refused(r, AFD_E_FORMAT, "empty pattern");
    r = base();
    set_json(r, "pre_tokenizer", "{\"type\":\"Sequence\"}");
    refused(r, AFD_E_FORMAT, "no \"pretokenizers\" array");
    r = base();
    set_json(r, "pre_tokenizer", "{\"type\":\"ByteLevel\",\"use_regex\":\"no\"}");
    refused(r, AFD_E_FORMAT, "use_regex is not a boolean");
}

Test(tok_errors, normalizer_and_decoder) {
    json_t *r = base();
    set_json(r, "normalizer", "{\"type\":\"NFC\"}");
    refused(r, AFD_E_UNSUPPORTED, "normalizer NFC is not supported");
    r = base();
    set_json(r, "normalizer", "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Lowercase\"}]}");
    refused(r, AFD_E_UNSUPPORTED, "normalizer Lowercase");
    r = base();
    set_json(r, "decoder", "{\"type\":\"WordPiece\"}");
    refused(r, AFD_E_UNSUPPORTED, "decoder WordPiece is not supported");
    r = base();
    json_object_del(r, "decoder");
    refused(r, AFD_E_UNSUPPORTED, "decoder (missing)");
    /* an empty Sequence normalizer is the identity: accepted */
    r = base();
    set_json(r, "normalizer", "{\"type\":\"Sequence\",\"normalizers\":[]}");
    char *s = json_dumps(r, JSON_COMPACT);
    tok_free(tu_load(s, NULL));
    free(s);
    json_decref(r);
}

Test(tok_errors, config) {
    json_t *r = base();
    char *s = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    refused_text(s, "{\"bos_token\":", AFD_E_FORMAT, "(tokenizer_config.json): line 1");
    refused_text(s, "[]", AFD_E_FORMAT, "(tokenizer_config.json): not a JSON object");
    refused_text(s, "{\"bos_token\":\"<nope>\"}", AFD_E_NOTFOUND,
                 "bos_token \"<nope>\" is not a token");
    refused_text(s, "{\"eos_token\":7}", AFD_E_FORMAT, "eos_token is neither");
    refused_text(s, "{\"chat_template\":7}", AFD_E_FORMAT, "chat_template is not a string");
    free(s);
}

Test(tok_errors, load_paths) {
    tok_tokenizer *t = NULL;
    afd_err err = {0};
    cr_assert_eq(tok_load("/nonexistent/dir/tokenizer.json", &t, &err), AFD_E_NOTFOUND);
    cr_assert_not_null(strstr(err.msg, "/nonexistent/dir"), "%s", err.msg);
    cr_assert_eq(tok_load("/dev/null", &t, &err), AFD_E_FORMAT);
    cr_assert_not_null(strstr(err.msg, "not a regular file"), "%s", err.msg);
}
