/* chat.c: the Step-3 chat format (chat.h). */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/chat.h"

#define BOS_TEXT "<｜begin▁of▁sentence｜>"

const char *const tok_chat_step3_template =
    "{{ bos_token }}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{{ message['content'] }}{%- endif %}{%- endfor %}"
    "{%- for message in messages %}{%- if message['role'] != 'system' %}"
    "{{ '<|BOT|>' + message['role'] + '\\n' + message['content'] + '<|EOT|>' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|BOT|>assistant\\n' }}{%- endif %}";

static int need(const tok_tokenizer *t, const char *name, int32_t *id, afd_err *err) {
    *id = tok_id(t, name, strlen(name));
    if (*id < 0)
        return afd_errf(err, AFD_E_NOTFOUND, "chat: the tokenizer has no token %s", name);
    return 0;
}

int tok_chat_init(tok_chat *c, const tok_tokenizer *t, afd_err *err) {
    memset(c, 0, sizeof *c);
    c->t = t;
    c->bos = tok_bos_id(t);
    int rc = c->bos >= 0 ? 0 : need(t, BOS_TEXT, &c->bos, err);
    if (!rc)
        rc = need(t, "<|BOT|>", &c->bot, err);
    if (!rc)
        rc = need(t, "<|EOT|>", &c->eot, err);
    const char *tpl = tok_chat_template(t);
    c->template_known = tpl && strcmp(tpl, tok_chat_step3_template) == 0;
    return rc;
}

/* ---- rendering ------------------------------------------------------------------------- */

/* The prompt text is built whole. Its ids are the encoding of that text with special tokens
 * parsed (what HF does, lstrip/rstrip of the template's tokens included); with escape_content,
 * each text run between the template's special tokens is encoded with special tokens as plain
 * text and the template's tokens are inserted as ids. */
typedef struct render {
    const tok_chat *c;
    tok_state *st;
    bool escape;
    tok_str all;  /* the whole prompt text */
    size_t run0;  /* where the current text run starts in `all` (escape mode) */
    tok_ids *ids; /* escape mode: ids as we go */
    afd_err *err;
} render;

static int flush_run(render *r) {
    size_t n = r->all.len - r->run0;
    int rc = 0;
    if (r->escape && r->ids && n)
        rc = tok_encode(r->c->t, r->st, r->all.s + r->run0, n, 0, r->ids, r->err);
    r->run0 = r->all.len;
    return rc;
}

static int put_text(render *r, const char *s, size_t n) {
    return tok_str_append(&r->all, s, n);
}

static int put_special(render *r, int32_t id) {
    const uint8_t *b;
    size_t n;
    int rc = flush_run(r);
    if (!rc)
        rc = tok_token_bytes(r->c->t, id, &b, &n);
    if (!rc)
        rc = tok_str_append(&r->all, b, n);
    r->run0 = r->all.len;
    if (!rc && r->escape && r->ids)
        rc = tok_ids_push(r->ids, id);
    return rc;
}

static int render_all(render *r, const tok_chat_msg *m, size_t n, bool gen_prompt) {
    int rc = put_special(r, r->c->bos);
    for (size_t i = 0; i < n && !rc; i++)
        if (strcmp(m[i].role, "system") == 0)
            rc = put_text(r, m[i].content, m[i].content_len);
    for (size_t i = 0; i < n && !rc; i++) {
        if (strcmp(m[i].role, "system") == 0)
            continue;
        rc = put_special(r, r->c->bot);
        if (!rc)
            rc = put_text(r, m[i].role, strlen(m[i].role));
        if (!rc)
            rc = put_text(r, "\n", 1);
        if (!rc)
            rc = put_text(r, m[i].content, m[i].content_len);
        if (!rc)
            rc = put_special(r, r->c->eot);
    }
    if (!rc && gen_prompt) {
        rc = put_special(r, r->c->bot);
        if (!rc)
            rc = put_text(r, "assistant\n", 10);
    }
    if (!rc)
        rc = flush_run(r);
    if (!rc && !r->escape && r->ids && r->all.len)
        rc = tok_encode(r->c->t, r->st, r->all.s, r->all.len, TOK_ENC_SPECIAL, r->ids, r->err);
    return rc;
}

int tok_chat_render(const tok_chat *c, tok_state *st, const tok_chat_msg *msgs, size_t n,
                    const tok_chat_opts *o, tok_str *text, tok_ids *ids, afd_err *err) {
    static const tok_chat_opts dflt = {.add_generation_prompt = true};
    if (!o)
        o = &dflt;
    render r = {.c = c, .st = st, .escape = o->escape_content, .ids = ids, .err = err};
    size_t ids0 = ids ? ids->n : 0;
    int rc = render_all(&r, msgs, n, o->add_generation_prompt);
    if (!rc && text)
        rc = tok_str_append(text, r.all.s ? r.all.s : "", r.all.len);
    tok_str_release(&r.all);
    if (rc) {
        if (ids)
            ids->n = ids0;
        if (rc == AFD_E_LIMIT)
            return afd_errf(err, rc, "chat: prompt over the limit of %zu tokens",
                            ids ? ids->limit : 0);
        if (rc == -ENOMEM)
            return afd_errf(err, rc, "chat: out of memory");
    }
    return rc;
}

/* ---- JSON messages ------------------------------------------------------------------------ */

/* A message's content as one string: string, null, or a list of text parts (joined into buf). */
static int json_content(json_t *v, size_t i, tok_str *buf, const char **s, size_t *n,
                        afd_err *err) {
    if (json_is_string(v)) {
        *s = json_string_value(v), *n = json_string_length(v);
        return 0;
    }
    if (!v || json_is_null(v)) {
        *s = "", *n = 0;
        return 0;
    }
    if (!json_is_array(v))
        return afd_errf(err, AFD_E_FORMAT, "messages[%zu].content: not a string or a list of "
                        "parts", i);
    size_t k;
    json_t *part;
    size_t start = buf->len;
    json_array_foreach(v, k, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *txt = json_object_get(part, "text");
        if (!type || strcmp(type, "text") != 0)
            return afd_errf(err, AFD_E_UNSUPPORTED, "messages[%zu].content[%zu]: type %s is not "
                            "supported (text only)", i, k, type ? type : "(missing)");
        if (!json_is_string(txt))
            return afd_errf(err, AFD_E_FORMAT, "messages[%zu].content[%zu]: \"text\" is not a "
                            "string", i, k);
        if (tok_str_append(buf, json_string_value(txt), json_string_length(txt)))
            return afd_errf(err, -ENOMEM, "chat: out of memory");
    }
    /* buf may move while growing: offsets are turned into pointers by the caller */
    *s = NULL, *n = buf->len - start;
    return 0;
}

static int json_msgs(const json_t *messages, tok_chat_msg *m, tok_str *buf, afd_err *err) {
    size_t i, n = json_array_size(messages);
    json_t *v;
    size_t *off = calloc(n + 1, sizeof *off);
    if (!off)
        return afd_errf(err, -ENOMEM, "chat: out of memory");
    int rc = 0;
    json_array_foreach(messages, i, v) {
        m[i].role = json_string_value(json_object_get(v, "role"));
        if (!json_is_object(v) || !m[i].role) {
            rc = afd_errf(err, AFD_E_FORMAT, "messages[%zu]: not an object with a string "
                          "\"role\"", i);
            break;
        }
        off[i] = buf->len;
        rc = json_content(json_object_get(v, "content"), i, buf, &m[i].content,
                          &m[i].content_len, err);
        if (rc)
            break;
    }
    for (i = 0; !rc && i < n; i++)
        if (!m[i].content)
            m[i].content = buf->s + off[i];
    free(off);
    return rc;
}

int tok_chat_render_json(const tok_chat *c, tok_state *st, const struct json_t *messages,
                         const tok_chat_opts *o, tok_str *text, tok_ids *ids, afd_err *err) {
    if (!json_is_array(messages))
        return afd_errf(err, AFD_E_FORMAT, "messages: not an array");
    size_t n = json_array_size(messages);
    tok_chat_msg *m = calloc(n + 1, sizeof *m);
    tok_str buf = {0};
    if (!m)
        return afd_errf(err, -ENOMEM, "chat: out of memory");
    int rc = json_msgs(messages, m, &buf, err);
    if (!rc)
        rc = tok_chat_render(c, st, m, n, o, text, ids, err);
    free(m);
    tok_str_release(&buf);
    return rc;
}
