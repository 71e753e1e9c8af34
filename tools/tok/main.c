/* afd-tok: the tokenizer from the command line (docs/tokenizer.md).
 *
 *   afd-tok encode --tokenizer PATH [--no-special] [--plain|--lines]   < input
 *       JSON lines {"text": "..."} or {"hex": "e4b8ad"} (raw bytes, may be invalid UTF-8);
 *       --plain: all of stdin is one text; --lines: each line is one text (without its
 *       line ending; empty lines too)                                                -> {"ids": [...]} per input
 *   afd-tok decode --tokenizer PATH [--skip-special] [--stream] < {"ids": [...]} lines
 *       -> {"text": "..."}; --stream feeds the ids one by one -> {"text": ..., "chunks": [...]}
 *       and gives the whole decode as "whole" 
 *   afd-tok chat --tokenizer PATH [--no-generation-prompt] [--escape]
 *       < {"messages": [...]} (or a bare array) lines            -> {"text": ..., "ids": [...]}
 *   afd-tok token --tokenizer PATH ID...   -> {"id", "piece", "text", "bytes", "special"}
 *   afd-tok info --tokenizer PATH          -> vocab size, BOS/EOS, chat template
 *   afd-tok bench --tokenizer PATH FILE [--seconds S]  encode speed on FILE (MB/s)
 *
 * PATH is a tokenizer.json or the directory holding it. A bad input line prints
 * {"error": "..."} and makes the exit status 1; the other lines are still answered.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/text/chat.h"
#include "common/text/tokenizer.h"

typedef struct opts {
    const char *cmd, *path;
    bool no_special, plain, lines, skip_special, stream, no_gen, escape;
    double seconds;
    char **rest; /* positional arguments after the command */
    int n_rest;
} opts;

typedef struct ctx {
    opts o;
    tok_tokenizer *t;
    tok_state *st;
    tok_chat chat;
    bool chat_ok;
    int status;
} ctx;

static void usage(void) {
    fputs("usage: afd-tok encode|decode|chat|token|info|bench --tokenizer PATH [options]\n"
          "  encode [--no-special] [--plain|--lines]    stdin: {\"text\"|\"hex\": ...} lines\n"
          "  decode [--skip-special] [--stream]         stdin: {\"ids\": [...]} lines\n"
          "  chat [--no-generation-prompt] [--escape]   stdin: {\"messages\": [...]} lines\n"
          "  token ID...  |  info  |  bench FILE [--seconds S]\n",
          stderr);
}

static int parse_args(int argc, char **argv, opts *o) {
    if (argc < 2)
        return -1;
    o->cmd = argv[1];
    o->seconds = 2.0;
    o->rest = xcalloc((size_t)argc, sizeof *o->rest);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tokenizer") && i + 1 < argc)
            o->path = argv[++i];
        else if (!strcmp(a, "--seconds") && i + 1 < argc)
            o->seconds = atof(argv[++i]);
        else if (!strcmp(a, "--no-special"))
            o->no_special = true;
        else if (!strcmp(a, "--plain"))
            o->plain = true;
        else if (!strcmp(a, "--lines"))
            o->lines = true;
        else if (!strcmp(a, "--skip-special"))
            o->skip_special = true;
        else if (!strcmp(a, "--stream"))
            o->stream = true;
        else if (!strcmp(a, "--no-generation-prompt"))
            o->no_gen = true;
        else if (!strcmp(a, "--escape"))
            o->escape = true;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "afd-tok: unknown option %s\n", a);
            return -1;
        } else
            o->rest[o->n_rest++] = argv[i];
    }
    if (!o->path) {
        fprintf(stderr, "afd-tok: --tokenizer PATH is required\n");
        return -1;
    }
    return 0;
}

/* ---- output helpers ----------------------------------------------------------------------- */

static void print_ids(const int32_t *v, size_t n) {
    putchar('[');
    for (size_t i = 0; i < n; i++)
        printf(i ? ",%d" : "%d", v[i]);
    putchar(']');
}

static void print_json_string(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    char *d = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    fputs(d ? d : "null", stdout);
    free(d);
    json_decref(j);
}

static void line_error(ctx *c, size_t line, const char *msg) {
    char buf[700];
    snprintf(buf, sizeof buf, "line %zu: %s", line, msg);
    fputs("{\"error\":", stdout);
    print_json_string(buf, strlen(buf));
    fputs("}\n", stdout);
    c->status = 1;
}

/* ---- encode ------------------------------------------------------------------------------- */

static int hex_bytes(const char *h, size_t n, tok_str *out) {
    if (n % 2)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        char pair[3] = {h[i], h[i + 1], 0}, *end;
        unsigned long v = strtoul(pair, &end, 16);
        uint8_t b = (uint8_t)v;
        if (*end || tok_str_append(out, &b, 1))
            return -1;
    }
    return 0;
}

static void encode_one(ctx *c, const char *s, size_t n, size_t line) {
    tok_ids ids = {0};
    afd_err err = {0};
    int rc = tok_encode(c->t, c->st, s, n, c->o.no_special ? 0 : TOK_ENC_SPECIAL, &ids, &err);
    if (rc)
        line_error(c, line, err.msg);
    else {
        fputs("{\"ids\":", stdout);
        print_ids(ids.v, ids.n);
        fputs("}\n", stdout);
    }
    tok_ids_release(&ids);
}

static void encode_line(ctx *c, const char *line, size_t len, size_t no) {
    json_error_t je;
    json_t *j = json_loadb(line, len, JSON_ALLOW_NUL, &je);
    json_t *text = json_object_get(j, "text"), *hex = json_object_get(j, "hex");
    tok_str raw = {0};
    if (json_is_string(text))
        encode_one(c, json_string_value(text), json_string_length(text), no);
    else if (json_is_string(hex) &&
             hex_bytes(json_string_value(hex), json_string_length(hex), &raw) == 0)
        encode_one(c, raw.s ? raw.s : "", raw.len, no);
    else
        line_error(c, no, j ? "expected {\"text\": string} or {\"hex\": even-length hex}"
                            : je.text);
    tok_str_release(&raw);
    json_decref(j);
}

/* ---- decode ------------------------------------------------------------------------------- */

static int ids_of(json_t *arr, tok_ids *ids) {
    size_t i;
    json_t *v;
    if (!json_is_array(arr))
        return -1;
    json_array_foreach(arr, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN ||
            json_integer_value(v) > INT32_MAX || tok_ids_push(ids, (int32_t)json_integer_value(v)))
            return -1;
    }
    return 0;
}

static int stream_decode(ctx *c, const tok_ids *ids, tok_str *text, json_t *chunks, afd_err *err) {
    tok_stream s;
    unsigned flags = c->o.skip_special ? TOK_DEC_SKIP_SPECIAL : 0;
    tok_stream_init(&s, c->t, flags);
    size_t cap = tok_stream_max_out(c->t), n;
    char *buf = xmalloc(cap);
    int rc = 0;
    for (size_t i = 0; i <= ids->n && !rc; i++) {
        rc = i < ids->n ? tok_stream_push(&s, ids->v[i], buf, cap, &n)
                        : tok_stream_flush(&s, buf, cap, &n);
        if (rc)
            afd_errf(err, rc, "ids[%zu] = %d: %s", i, i < ids->n ? ids->v[i] : -1,
                     afd_strerror(rc));
        else {
            tok_str_append(text, buf, n);
            json_array_append_new(chunks, json_stringn(buf, n));
        }
    }
    free(buf);
    return rc;
}

static void decode_line(ctx *c, const char *line, size_t len, size_t no) {
    json_error_t je;
    json_t *j = json_loadb(line, len, JSON_ALLOW_NUL, &je);
    tok_ids ids = {0};
    tok_str text = {0};
    afd_err err = {0};
    json_t *chunks = json_array();
    json_t *arr = json_is_array(j) ? j : json_object_get(j, "ids");
    if (ids_of(arr, &ids) != 0)
        line_error(c, no, j ? "expected {\"ids\": [integers]}" : je.text);
    else if (c->o.stream ? stream_decode(c, &ids, &text, chunks, &err)
                         : tok_decode(c->t, ids.v, ids.n,
                                      c->o.skip_special ? TOK_DEC_SKIP_SPECIAL : 0, &text, &err))
        line_error(c, no, err.msg);
    else {
        fputs("{\"text\":", stdout);
        print_json_string(text.s ? text.s : "", text.len);
        if (c->o.stream) { /* the whole decode too, to check they agree */
            tok_str whole = {0};
            char *d = json_dumps(chunks, JSON_COMPACT);
            tok_decode(c->t, ids.v, ids.n, c->o.skip_special ? TOK_DEC_SKIP_SPECIAL : 0, &whole,
                       &err);
            fputs(",\"whole\":", stdout);
            print_json_string(whole.s ? whole.s : "", whole.len);
            printf(",\"chunks\":%s", d);
            free(d);
            tok_str_release(&whole);
        }
        fputs("}\n", stdout);
    }
    json_decref(chunks);
    json_decref(j);
    tok_ids_release(&ids);
    tok_str_release(&text);
}

/* ---- chat --------------------------------------------------------------------------------- */

static void chat_line(ctx *c, const char *line, size_t len, size_t no) {
    json_error_t je;
    json_t *j = json_loadb(line, len, JSON_ALLOW_NUL, &je);
    json_t *msgs = json_is_array(j) ? j : json_object_get(j, "messages");
    json_t *gen = json_object_get(j, "add_generation_prompt");
    tok_chat_opts o = {.add_generation_prompt = json_is_boolean(gen) ? json_is_true(gen)
                                                                      : !c->o.no_gen,
                       .escape_content = c->o.escape};
    tok_str text = {0};
    tok_ids ids = {0};
    afd_err err = {0};
    if (!j)
        line_error(c, no, je.text);
    else if (!c->chat_ok)
        line_error(c, no, "the tokenizer has no chat tokens (see the load message)");
    else if (tok_chat_render_json(&c->chat, c->st, msgs, &o, &text, &ids, &err))
        line_error(c, no, err.msg);
    else {
        fputs("{\"text\":", stdout);
        print_json_string(text.s ? text.s : "", text.len);
        fputs(",\"ids\":", stdout);
        print_ids(ids.v, ids.n);
        fputs("}\n", stdout);
    }
    json_decref(j);
    tok_str_release(&text);
    tok_ids_release(&ids);
}

/* ---- token / info ------------------------------------------------------------------------- */

static void token_info(ctx *c, const char *arg) {
    char *end;
    long id = strtol(arg, &end, 10);
    const uint8_t *b;
    const char *piece;
    size_t nb, np;
    if (*end || id < INT32_MIN || id > INT32_MAX ||
        tok_token_bytes(c->t, (int32_t)id, &b, &nb) ||
        tok_token_piece(c->t, (int32_t)id, &piece, &np)) {
        line_error(c, 0, "not a token id");
        return;
    }
    tok_str text = {0};
    tok_token_text(c->t, (int32_t)id, &text);
    printf("{\"id\":%ld,\"piece\":", id);
    print_json_string(piece, np);
    fputs(",\"text\":", stdout);
    print_json_string(text.s, text.len);
    fputs(",\"bytes\":[", stdout);
    for (size_t i = 0; i < nb; i++)
        printf(i ? ",%u" : "%u", b[i]);
    printf("],\"special\":%s,\"added\":%s}\n", tok_is_special(c->t, (int32_t)id) ? "true" : "false",
           tok_is_added(c->t, (int32_t)id) ? "true" : "false");
    tok_str_release(&text);
}

static void info(ctx *c) {
    printf("{\"vocab_size\":%d,\"bos_id\":%d,\"eos_id\":%d,\"max_token_bytes\":%zu,"
           "\"chat\":%s,\"chat_template_known\":%s}\n",
           tok_vocab_size(c->t), tok_bos_id(c->t), tok_eos_id(c->t), tok_max_token_bytes(c->t),
           c->chat_ok ? "true" : "false", c->chat.template_known ? "true" : "false");
}

/* ---- bench -------------------------------------------------------------------------------- */

static int bench(ctx *c) {
    if (c->o.n_rest != 1) {
        fprintf(stderr, "afd-tok bench: one FILE expected\n");
        return 2;
    }
    FILE *f = fopen(c->o.rest[0], "rb");
    tok_str data = {0};
    char buf[65536];
    size_t n;
    if (!f) {
        fprintf(stderr, "afd-tok bench: %s: %s\n", c->o.rest[0], strerror(errno));
        return 1;
    }
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        tok_str_append(&data, buf, n);
    fclose(f);
    tok_ids ids = {0};
    afd_err err = {0};
    /* one pass with a fresh state (cold BPE cache), then repeated passes (warm) */
    tok_state *cold = tok_state_new(c->t);
    uint64_t c0 = afd_now_ns();
    if (!cold || tok_encode(c->t, cold, data.s, data.len, TOK_ENC_SPECIAL, &ids, &err)) {
        fprintf(stderr, "afd-tok bench: %s\n", err.msg);
        return 1;
    }
    double cold_sec = (double)(afd_now_ns() - c0) / 1e9;
    tok_state_free(cold);
    uint64_t t0 = afd_now_ns(), t1 = t0;
    size_t bytes = 0, runs = 0, tokens = 0;
    for (; runs == 0 || (double)(t1 - t0) < c->o.seconds * 1e9; runs++) {
        ids.n = 0;
        if (tok_encode(c->t, c->st, data.s, data.len, TOK_ENC_SPECIAL, &ids, &err)) {
            fprintf(stderr, "afd-tok bench: %s\n", err.msg);
            return 1;
        }
        bytes += data.len;
        tokens = ids.n;
        t1 = afd_now_ns();
    }
    double sec = (double)(t1 - t0) / 1e9;
    printf("{\"file\":\"%s\",\"bytes\":%zu,\"tokens\":%zu,\"runs\":%zu,\"seconds\":%.3f,"
           "\"MB_per_s\":%.2f,\"cold_MB_per_s\":%.2f,\"bytes_per_token\":%.3f}\n",
           c->o.rest[0], data.len, tokens, runs, sec, (double)bytes / sec / 1e6,
           (double)data.len / cold_sec / 1e6, tokens ? (double)data.len / (double)tokens : 0.0);
    tok_ids_release(&ids);
    tok_str_release(&data);
    return 0;
}

/* ---- main --------------------------------------------------------------------------------- */

typedef void (*line_fn)(ctx *, const char *, size_t, size_t);

/* Calls fn for each line of stdin without its line ending; empty lines only when keep_empty. */
static void each_line(ctx *c, line_fn fn, bool keep_empty) {
    char *line = NULL;
    size_t cap = 0, no = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        no++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (n > 0 || keep_empty)
            fn(c, line, (size_t)n, no);
    }
    free(line);
}

static void encode_plain(ctx *c) {
    tok_str all = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        tok_str_append(&all, buf, n);
    encode_one(c, all.s ? all.s : "", all.len, 1);
    tok_str_release(&all);
}

static void encode_text_line(ctx *c, const char *line, size_t len, size_t no) {
    encode_one(c, line, len, no);
}

static int run(ctx *c) {
    const char *cmd = c->o.cmd;
    if (!strcmp(cmd, "encode") && c->o.plain)
        encode_plain(c);
    else if (!strcmp(cmd, "encode") && c->o.lines)
        each_line(c, encode_text_line, true);
    else if (!strcmp(cmd, "encode"))
        each_line(c, encode_line, false);
    else if (!strcmp(cmd, "decode"))
        each_line(c, decode_line, false);
    else if (!strcmp(cmd, "chat"))
        each_line(c, chat_line, false);
    else if (!strcmp(cmd, "token"))
        for (int i = 0; i < c->o.n_rest; i++)
            token_info(c, c->o.rest[i]);
    else if (!strcmp(cmd, "info"))
        info(c);
    else if (!strcmp(cmd, "bench"))
        return bench(c);
    else {
        usage();
        return 2;
    }
    return c->status;
}

int main(int argc, char **argv) {
    ctx c = {0};
    if (parse_args(argc, argv, &c.o) != 0) {
        usage();
        return 2;
    }
    afd_err err = {0};
    if (tok_load(c.o.path, &c.t, &err) != 0) {
        fprintf(stderr, "afd-tok: %s\n", err.msg);
        return 1;
    }
    c.st = tok_state_new(c.t);
    afd_err cerr = {0};
    c.chat_ok = tok_chat_init(&c.chat, c.t, &cerr) == 0;
    if (!c.chat_ok && !strcmp(c.o.cmd, "chat"))
        fprintf(stderr, "afd-tok: %s\n", cerr.msg);
    int rc = run(&c);
    fflush(stdout);
    tok_state_free(c.st);
    tok_free(c.t);
    free(c.o.rest);
    return rc;
}
