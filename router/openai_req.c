/* openai_req.c: parsing and validating OpenAI requests (see openai.h, docs/api.md).
 *
 * The body is parsed with jansson (exact length, any top-level value so that a non-object gets
 * a type error rather than a syntax error), then each field is read by a small typed getter
 * that names the parameter in OpenAI's path style when it refuses. Strings the request keeps
 * are copied (checked allocations); the jansson tree is freed before returning.
 */
#include "router/openai.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"

#define INVALID "invalid_request_error"

/* ---- errors ---- */

/* Drops, in place, the bytes of s that are not part of a valid UTF-8 sequence. */
static void utf8_scrub(char *s) {
    size_t n = strlen(s), out = 0;
    for (size_t i = 0; i < n;) {
        size_t k = oa_utf8_seq((const uint8_t *)s + i, n - i);
        if (!k) {
            i++;
            continue;
        }
        memmove(s + out, s + i, k);
        out += k;
        i += k;
    }
    s[out] = 0;
}

int oa_errorf(oa_error *e, int status, const char *type, const char *code, const char *param,
              const char *fmt, ...) {
    if (e) {
        e->status = status;
        e->type = type;
        e->code = code;
        snprintf(e->param, sizeof e->param, "%s", param ? param : "");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof e->message, fmt, ap);
        va_end(ap);
        utf8_scrub(e->message);
    }
    return status < 500 ? AFD_E_FORMAT : AFD_E_STATE;
}

int oa_error_model_not_found(oa_error *e, const char *model) {
    return oa_errorf(e, 404, INVALID, "model_not_found", "model",
                     "The model '%.200s' does not exist or you do not have access to it.", model);
}

int oa_error_context_length(oa_error *e, const char *param, int64_t max_ctx, int64_t prompt_tokens,
                            int64_t max_tokens) {
    if (max_tokens > 0)
        return oa_errorf(e, 400, INVALID, "context_length_exceeded", param,
                         "This model's maximum context length is %" PRId64 " tokens. However, "
                         "you requested %" PRId64 " tokens (%" PRId64 " in the prompt, %" PRId64
                         " for the completion). Please reduce the prompt or the completion "
                         "length.",
                         max_ctx, prompt_tokens + max_tokens, prompt_tokens, max_tokens);
    return oa_errorf(e, 400, INVALID, "context_length_exceeded", param,
                     "This model's maximum context length is %" PRId64 " tokens. However, your "
                     "prompt has %" PRId64 " tokens. Please reduce the length of the prompt.",
                     max_ctx, prompt_tokens);
}

int oa_error_rate_limited(oa_error *e, const char *why) {
    return oa_errorf(e, 429, "requests", "rate_limit_exceeded", NULL, "%s", why);
}

int oa_error_overloaded(oa_error *e, const char *why) {
    return oa_errorf(e, 503, "server_error", NULL, NULL, "%s", why);
}

int oa_error_internal(oa_error *e, const char *why) {
    return oa_errorf(e, 500, "server_error", NULL, NULL, "%s", why);
}

int oa_error_invalid_api_key(oa_error *e) {
    return oa_errorf(e, 401, INVALID, "invalid_api_key", NULL,
                     "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.");
}

static int oom(oa_error *e) {
    oa_error_internal(e, "The server ran out of memory while reading the request.");
    return -ENOMEM;
}

/* ---- limits, roles ---- */

void oa_limits_default(oa_limits *l) {
    l->max_n = 16;
    l->max_choices = 64;
    l->max_stop = 4;
    l->max_stop_bytes = 256;
    l->max_messages = 4096;
    l->max_prompts = 64;
    l->max_prompt_bytes = 4u << 20;
    l->max_prompt_ids = 1u << 20;
    l->vocab = 0;
    l->max_tokens = 1 << 20;
    l->max_top_k = 1 << 20;
    l->default_max_tokens_completions = 16;
    l->max_string_bytes = 256;
}

static const char *const ROLES[] = {"system", "developer", "user", "assistant", "tool"};

const char *oa_role_name(oa_role r) {
    return (unsigned)r < sizeof ROLES / sizeof ROLES[0] ? ROLES[r] : "unknown";
}

/* ---- the parse context and typed getters ---- */

typedef struct pctx {
    const oa_limits *lim;
    oa_error *e;
    size_t text_bytes; /* prompt text so far, against lim->max_prompt_bytes */
    uint32_t n_ids;    /* token ids so far, against lim->max_prompt_ids */
} pctx;

static const char *jt_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a decimal";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static int bad_type(pctx *c, const char *param, const json_t *v, const char *want) {
    return oa_errorf(c->e, 400, INVALID, "invalid_type", param,
                     "Invalid type for '%s': expected %s, but got %s instead.", param, want,
                     jt_name(v));
}

static int missing(pctx *c, const char *param) {
    return oa_errorf(c->e, 400, INVALID, "missing_required_parameter", param,
                     "Missing required parameter: '%s'.", param);
}

static int unsupported(pctx *c, const char *param, const char *why) {
    return oa_errorf(c->e, 400, INVALID, "unsupported_parameter", param,
                     "Unsupported parameter: '%s' is not supported by this server%s.", param, why);
}

static int unsupported_value(pctx *c, const char *param, const char *got, const char *only) {
    return oa_errorf(c->e, 400, INVALID, "unsupported_value", param,
                     "Unsupported value: '%s' does not support %s with this server. Only %s is "
                     "supported.",
                     param, got, only);
}

static int too_long(pctx *c, const char *param, size_t got, size_t max) {
    return oa_errorf(c->e, 400, INVALID, "string_above_max_length", param,
                     "Invalid '%s': string too long. Expected a string with maximum length %zu, "
                     "but got a string with length %zu instead.",
                     param, max, got);
}

static int array_too_long(pctx *c, const char *param, size_t got, size_t max) {
    return oa_errorf(c->e, 400, INVALID, "array_above_max_length", param,
                     "Invalid '%s': array too long. Expected an array with maximum length %zu, "
                     "but got an array with length %zu instead.",
                     param, max, got);
}

static int empty_array(pctx *c, const char *param) {
    return oa_errorf(c->e, 400, INVALID, "empty_array", param,
                     "Invalid '%s': empty array. Expected an array with minimum length 1, but got "
                     "an empty array instead.",
                     param);
}

/* A parameter path ("messages[1].content"), truncated to OA_PARAM_MAX - 1 bytes. */
static char *pf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *pf(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, OA_PARAM_MAX, fmt, ap);
    va_end(ap);
    return buf;
}

/* The member, or NULL when absent or null (OpenAI treats null as "not given"). */
static json_t *opt(const json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

/* An integer, or a decimal with an integral value in range. */
static int as_int(const json_t *v, int64_t *out) {
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (!json_is_real(v)) return -1;
    double d = json_real_value(v);
    if (d != floor(d) || d < -9.2e18 || d > 9.2e18) return -1;
    *out = (int64_t)d;
    return 0;
}

static int int_range(pctx *c, const char *param, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo)
        return oa_errorf(c->e, 400, INVALID, "integer_below_min_value", param,
                         "Invalid '%s': integer below minimum value. Expected a value >= %" PRId64
                         ", but got %" PRId64 " instead.",
                         param, lo, v);
    if (v > hi)
        return oa_errorf(c->e, 400, INVALID, "integer_above_max_value", param,
                         "Invalid '%s': integer above maximum value. Expected a value <= %" PRId64
                         ", but got %" PRId64 " instead.",
                         param, hi, v);
    return 0;
}

/* Optional integer member in [lo, hi]; *out untouched when absent. */
static int get_int(pctx *c, const json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   bool *present) {
    json_t *v = opt(o, key);
    if (present) *present = v != NULL;
    if (!v) return 0;
    int64_t x;
    if (as_int(v, &x)) return bad_type(c, key, v, "an integer");
    int rc = int_range(c, key, x, lo, hi);
    if (rc) return rc;
    *out = x;
    return 0;
}

/* Optional number member in [lo, hi] (lo exclusive when lo_open). */
static int get_num(pctx *c, const json_t *o, const char *key, double lo, bool lo_open, double hi,
                   double *out, bool *present) {
    json_t *v = opt(o, key);
    if (present) *present = v != NULL;
    if (!v) return 0;
    if (!json_is_number(v)) return bad_type(c, key, v, "a number");
    double x = json_number_value(v);
    if (x < lo || (lo_open && x == lo))
        return oa_errorf(c->e, 400, INVALID, "decimal_below_min_value", key,
                         "Invalid '%s': decimal below minimum value. Expected a value %s %g, but "
                         "got %g instead.",
                         key, lo_open ? ">" : ">=", lo, x);
    if (x > hi)
        return oa_errorf(c->e, 400, INVALID, "decimal_above_max_value", key,
                         "Invalid '%s': decimal above maximum value. Expected a value <= %g, but "
                         "got %g instead.",
                         key, hi, x);
    *out = x;
    return 0;
}

static int get_bool(pctx *c, const json_t *o, const char *key, const char *param, bool *out) {
    json_t *v = opt(o, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return bad_type(c, param, v, "a boolean");
    *out = json_is_true(v);
    return 0;
}

static char *dup_bytes(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* A string value (v non-NULL) of at most max bytes, copied into *out. */
static int take_str(pctx *c, const json_t *v, const char *param, size_t max, char **out,
                    size_t *len) {
    if (!json_is_string(v)) return bad_type(c, param, v, "a string");
    size_t n = json_string_length(v);
    if (n > max) return too_long(c, param, n, max);
    if (!(*out = dup_bytes(json_string_value(v), n))) return oom(c->e);
    if (len) *len = n;
    return 0;
}

/* Optional short string member (model, user, name ...). */
static int get_str(pctx *c, const json_t *o, const char *key, const char *param, char **out) {
    json_t *v = opt(o, key);
    if (!v) return 0;
    return take_str(c, v, param, c->lim->max_string_bytes, out, NULL);
}

/* Counts n bytes of prompt text against the limit. */
static int count_text(pctx *c, const char *param, size_t n) {
    c->text_bytes += n;
    if (c->text_bytes > c->lim->max_prompt_bytes)
        return oa_errorf(c->e, 400, INVALID, "string_above_max_length", param,
                         "Invalid '%s': the prompt text reaches %zu bytes, over this server's "
                         "limit of %zu bytes.",
                         param, c->text_bytes, c->lim->max_prompt_bytes);
    return 0;
}

/* ---- messages ---- */

static int parse_role(pctx *c, const json_t *m, const char *param, oa_role *out) {
    char p[OA_PARAM_MAX];
    pf(p, "%s.role", param);
    json_t *v = opt(m, "role");
    if (!v) return missing(c, p);
    if (!json_is_string(v)) return bad_type(c, p, v, "a string");
    for (size_t i = 0; i < sizeof ROLES / sizeof ROLES[0]; i++)
        if (strcmp(json_string_value(v), ROLES[i]) == 0) {
            *out = (oa_role)i;
            return 0;
        }
    return oa_errorf(c->e, 400, INVALID, "invalid_value", p,
                     "Invalid value for '%s': '%.64s'. Supported values are: 'system', "
                     "'developer', 'user', 'assistant', and 'tool'.",
                     p, json_string_value(v));
}

/* The text of one content part: {"type":"text","text":...} (assistant: also
 * {"type":"refusal","refusal":...}). */
static int part_text(pctx *c, const json_t *part, const char *param, oa_role role,
                     const json_t **text) {
    char p[OA_PARAM_MAX];
    if (!json_is_object(part)) return bad_type(c, param, part, "an object");
    pf(p, "%s.type", param);
    json_t *t = opt(part, "type");
    if (!t) return missing(c, p);
    if (!json_is_string(t)) return bad_type(c, p, t, "a string");
    const char *ty = json_string_value(t);
    const char *field = strcmp(ty, "text") == 0                                   ? "text"
                        : role == OA_ROLE_ASSISTANT && strcmp(ty, "refusal") == 0 ? "refusal"
                                                                                  : NULL;
    if (!field)
        return oa_errorf(c->e, 400, INVALID, "invalid_value", p,
                         "Invalid value for '%s': '%.64s'. This server supports only text "
                         "content parts (type 'text')%s.",
                         p, ty, role == OA_ROLE_ASSISTANT ? " and 'refusal'" : "");
    pf(p, "%s.%s", param, field);
    *text = opt(part, field);
    if (!*text) return missing(c, p);
    if (!json_is_string(*text)) return bad_type(c, p, *text, "a string");
    return 0;
}

/* content: a string or an array of text parts, joined with "\n". */
static int parse_content(pctx *c, const json_t *m, const char *param, oa_message *msg) {
    char p[OA_PARAM_MAX], pp[OA_PARAM_MAX];
    pf(p, "%s.content", param);
    json_t *v = opt(m, "content");
    if (!v && msg->role != OA_ROLE_ASSISTANT) return missing(c, p);
    if (!v) return (msg->content = dup_bytes("", 0)) ? 0 : oom(c->e);
    if (json_is_string(v)) {
        int rc = count_text(c, p, json_string_length(v));
        return rc ? rc : take_str(c, v, p, SIZE_MAX - 1, &msg->content, &msg->content_len);
    }
    if (!json_is_array(v)) return bad_type(c, p, v, "a string or an array of content parts");
    size_t n = json_array_size(v), total = 0;
    if (n == 0) return empty_array(c, p);
    const json_t *text;
    for (size_t i = 0; i < n; i++) {
        pf(pp, "%s[%zu]", p, i);
        int rc = part_text(c, json_array_get(v, i), pp, msg->role, &text);
        if (rc) return rc;
        total += json_string_length(text) + (i > 0);
        if ((rc = count_text(c, pp, json_string_length(text) + (i > 0)))) return rc;
    }
    if (!(msg->content = malloc(total + 1))) return oom(c->e);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        part_text(c, json_array_get(v, i), pp, msg->role, &text);
        if (i > 0) msg->content[at++] = '\n';
        memcpy(msg->content + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    msg->content[at] = 0;
    msg->content_len = at;
    return 0;
}

/* Assistant tool_calls from the history: an array of objects, kept as compact JSON. */
static int parse_tool_calls(pctx *c, const json_t *m, const char *param, oa_message *msg) {
    char p[OA_PARAM_MAX];
    pf(p, "%s.tool_calls", param);
    json_t *v = opt(m, "tool_calls");
    if (!v) return 0;
    if (!json_is_array(v)) return bad_type(c, p, v, "an array");
    size_t i;
    json_t *tc;
    json_array_foreach(v, i, tc) {
        if (!json_is_object(tc)) {
            pf(p, "%s.tool_calls[%zu]", param, i);
            return bad_type(c, p, tc, "an object");
        }
    }
    msg->tool_calls_json = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!msg->tool_calls_json) return oom(c->e);
    return count_text(c, p, strlen(msg->tool_calls_json));
}

static int parse_message(pctx *c, const json_t *m, size_t i, oa_message *msg) {
    char param[OA_PARAM_MAX], p[OA_PARAM_MAX];
    pf(param, "messages[%zu]", i);
    if (!json_is_object(m)) return bad_type(c, param, m, "an object");
    int rc = parse_role(c, m, param, &msg->role);
    if (!rc) rc = parse_content(c, m, param, msg);
    pf(p, "%s.name", param);
    if (!rc) rc = get_str(c, m, "name", p, &msg->name);
    if (!rc && msg->role == OA_ROLE_TOOL) {
        pf(p, "%s.tool_call_id", param);
        rc = get_str(c, m, "tool_call_id", p, &msg->tool_call_id);
        if (!rc && !msg->tool_call_id) rc = missing(c, p);
    }
    if (!rc && msg->role == OA_ROLE_ASSISTANT) rc = parse_tool_calls(c, m, param, msg);
    return rc;
}

static void free_messages(oa_message *m, uint32_t n) {
    for (uint32_t i = 0; m && i < n; i++) {
        free(m[i].content);
        free(m[i].name);
        free(m[i].tool_call_id);
        free(m[i].tool_calls_json);
    }
    free(m);
}

static int parse_messages(pctx *c, const json_t *body, oa_message **out, uint32_t *n_out) {
    json_t *v = opt(body, "messages");
    if (!v) return missing(c, "messages");
    if (!json_is_array(v)) return bad_type(c, "messages", v, "an array");
    size_t n = json_array_size(v);
    if (n == 0) return empty_array(c, "messages");
    if (n > c->lim->max_messages) return array_too_long(c, "messages", n, c->lim->max_messages);
    if (!(*out = calloc(n, sizeof **out))) return oom(c->e);
    *n_out = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        int rc = parse_message(c, json_array_get(v, i), i, &(*out)[i]);
        if (rc) return rc;
    }
    return 0;
}

/* ---- completions prompts ---- */

/* One token id array: non-empty, every id an integer in [0, vocab). */
static int parse_ids(pctx *c, const json_t *arr, const char *param, oa_prompt *p) {
    char pp[OA_PARAM_MAX];
    size_t n = json_array_size(arr);
    if (n == 0) return empty_array(c, param);
    if (n > c->lim->max_prompt_ids - c->n_ids)
        return oa_errorf(c->e, 400, INVALID, "array_above_max_length", param,
                         "Invalid '%s': the prompts reach %zu token ids, over this server's limit "
                         "of %u.",
                         param, (size_t)c->n_ids + n, c->lim->max_prompt_ids);
    if (!(p->ids = malloc(n * sizeof *p->ids))) return oom(c->e);
    p->n_ids = (uint32_t)n;
    c->n_ids += (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        int64_t id;
        pf(pp, "%s[%zu]", param, i);
        if (as_int(v, &id)) return bad_type(c, pp, v, "an integer token id");
        int64_t hi = c->lim->vocab ? (int64_t)c->lim->vocab - 1 : INT32_MAX;
        if (id < 0 || id > hi)
            return oa_errorf(c->e, 400, INVALID, "invalid_value", pp,
                             "Invalid '%s': token id %" PRId64 " is out of range. Expected a "
                             "value in [0, %" PRId64 "].",
                             pp, id, hi);
        p->ids[i] = (int32_t)id;
    }
    return 0;
}

static int parse_prompt_text(pctx *c, const json_t *v, const char *param, oa_prompt *p) {
    int rc = count_text(c, param, json_string_length(v));
    return rc ? rc : take_str(c, v, param, SIZE_MAX - 1, &p->text, &p->text_len);
}

/* An array prompt: strings (a batch), integers (one prompt of ids) or arrays of integers (a
 * batch of id prompts); the first element decides. */
static int parse_prompt_array(pctx *c, const json_t *v, oa_request *r) {
    size_t n = json_array_size(v);
    if (n == 0) return empty_array(c, "prompt");
    const json_t *first = json_array_get(v, 0);
    if (json_is_integer(first) || json_is_real(first)) {
        if (!(r->prompts = calloc(1, sizeof *r->prompts))) return oom(c->e);
        r->n_prompts = 1;
        return parse_ids(c, v, "prompt", &r->prompts[0]);
    }
    if (!json_is_string(first) && !json_is_array(first))
        return bad_type(c, "prompt[0]", first, "a string, an integer or an array of integers");
    if (n > c->lim->max_prompts) return array_too_long(c, "prompt", n, c->lim->max_prompts);
    if (!(r->prompts = calloc(n, sizeof *r->prompts))) return oom(c->e);
    r->n_prompts = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        char p[OA_PARAM_MAX];
        pf(p, "prompt[%zu]", i);
        const json_t *e = json_array_get(v, i);
        int rc;
        if (json_is_string(first))
            rc = json_is_string(e) ? parse_prompt_text(c, e, p, &r->prompts[i])
                                   : bad_type(c, p, e, "a string");
        else
            rc = json_is_array(e) ? parse_ids(c, e, p, &r->prompts[i])
                                  : bad_type(c, p, e, "an array of integers");
        if (rc) return rc;
    }
    return 0;
}

static int parse_prompt(pctx *c, const json_t *body, oa_request *r) {
    json_t *v = opt(body, "prompt");
    if (!v) return missing(c, "prompt");
    if (json_is_string(v)) {
        if (!(r->prompts = calloc(1, sizeof *r->prompts))) return oom(c->e);
        r->n_prompts = 1;
        return parse_prompt_text(c, v, "prompt", &r->prompts[0]);
    }
    if (!json_is_array(v))
        return bad_type(c, "prompt", v,
                        "a string, an array of strings, an array of integers or an array of "
                        "arrays of integers");
    return parse_prompt_array(c, v, r);
}

/* ---- sampling and output parameters ---- */

static int parse_stop(pctx *c, const json_t *body, oa_request *r) {
    json_t *v = opt(body, "stop");
    if (!v) return 0;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_string(v) && !json_is_array(v))
        return bad_type(c, "stop", v, "a string or an array of strings");
    if (n > c->lim->max_stop) return array_too_long(c, "stop", n, c->lim->max_stop);
    if (n == 0) return 0;
    r->stop = calloc(n, sizeof *r->stop);
    r->stop_len = calloc(n, sizeof *r->stop_len);
    if (!r->stop || !r->stop_len) return oom(c->e);
    r->n_stop = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        char p[OA_PARAM_MAX];
        const json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        if (json_is_array(v))
            pf(p, "stop[%zu]", i);
        else
            pf(p, "stop");
        int rc = take_str(c, s, p, c->lim->max_stop_bytes, &r->stop[i], &r->stop_len[i]);
        if (rc) return rc;
        if (r->stop_len[i] == 0)
            return oa_errorf(c->e, 400, INVALID, "invalid_value", p,
                             "Invalid '%s': a stop sequence must not be empty.", p);
    }
    return 0;
}

static int parse_stream(pctx *c, const json_t *body, oa_request *r) {
    int rc = get_bool(c, body, "stream", "stream", &r->stream);
    json_t *so = opt(body, "stream_options");
    if (rc || !so) return rc;
    if (!json_is_object(so)) return bad_type(c, "stream_options", so, "an object");
    if (!r->stream)
        return oa_errorf(c->e, 400, INVALID, "invalid_value", "stream_options",
                         "The 'stream_options' parameter is only allowed when 'stream' is "
                         "enabled.");
    return get_bool(c, so, "include_usage", "stream_options.include_usage", &r->include_usage);
}

static int parse_sampling(pctx *c, const json_t *body, oa_request *r) {
    int64_t top_k = -1, n = 1;
    int rc = get_num(c, body, "temperature", 0, false, 2, &r->temperature, NULL);
    if (!rc) rc = get_num(c, body, "top_p", 0, true, 1, &r->top_p, NULL);
    if (!rc) rc = get_int(c, body, "top_k", -1, c->lim->max_top_k, &top_k, NULL);
    if (!rc) rc = get_int(c, body, "seed", INT64_MIN, INT64_MAX, &r->seed, &r->has_seed);
    if (!rc) rc = get_int(c, body, "n", 1, c->lim->max_n, &n, NULL);
    if (!rc) rc = get_bool(c, body, "ignore_eos", "ignore_eos", &r->ignore_eos);
    r->top_k = top_k <= 0 ? -1 : (int32_t)top_k;
    r->n = (uint32_t)n;
    return rc;
}

/* presence/frequency_penalty: validated, and only 0 accepted (the sampler has no penalties). */
static int parse_penalties(pctx *c, const json_t *body) {
    static const char *const keys[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        double x = 0;
        int rc = get_num(c, body, keys[i], -2, false, 2, &x, NULL);
        if (rc) return rc;
        if (x != 0) {
            char got[32];
            snprintf(got, sizeof got, "%g", x);
            return unsupported_value(c, keys[i], got, "the default value (0)");
        }
    }
    return 0;
}

/* Features that would change the output silently if ignored are refused. */
static int parse_refused(pctx *c, const json_t *body) {
    json_t *v = opt(body, "logit_bias");
    if (v && !json_is_object(v)) return bad_type(c, "logit_bias", v, "an object");
    if (v && json_object_size(v) > 0) return unsupported(c, "logit_bias", "");
    static const char *const arrays[] = {"tools", "functions"};
    for (int i = 0; i < 2; i++) {
        v = opt(body, arrays[i]);
        if (v && !json_is_array(v)) return bad_type(c, arrays[i], v, "an array");
        if (v && json_array_size(v) > 0)
            return unsupported(c, arrays[i], " (no tool calling; send the request without it)");
    }
    if (opt(body, "audio")) return unsupported(c, "audio", " (text output only)");
    v = opt(body, "response_format");
    if (!v) return 0;
    if (!json_is_object(v)) return bad_type(c, "response_format", v, "an object");
    json_t *t = opt(v, "type");
    if (!t) return missing(c, "response_format.type");
    if (!json_is_string(t)) return bad_type(c, "response_format.type", t, "a string");
    if (strcmp(json_string_value(t), "text") != 0) {
        char got[80];
        snprintf(got, sizeof got, "'%.64s'", json_string_value(t));
        return unsupported_value(c, "response_format.type", got, "'text'");
    }
    return 0;
}

static int parse_chat_output(pctx *c, const json_t *body, oa_request *r) {
    int64_t mt = -1, mct = -1, top = 0;
    bool has_top = false;
    int rc = get_int(c, body, "max_tokens", 1, c->lim->max_tokens, &mt, NULL);
    if (!rc) rc = get_int(c, body, "max_completion_tokens", 1, c->lim->max_tokens, &mct, NULL);
    r->max_tokens = mct >= 0 ? mct : mt;
    if (!rc) rc = get_bool(c, body, "logprobs", "logprobs", &r->logprobs);
    if (!rc) rc = get_int(c, body, "top_logprobs", 0, 20, &top, &has_top);
    if (!rc && top > 0 && !r->logprobs)
        return oa_errorf(c->e, 400, INVALID, "invalid_value", "top_logprobs",
                         "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                         "'top_logprobs' is used.");
    r->top_logprobs = (uint32_t)top;
    return rc;
}

static int parse_completions_output(pctx *c, const json_t *body, oa_request *r) {
    int64_t lp = -1, mt = c->lim->default_max_tokens_completions, best_of = 0;
    bool has_lp = false, has_best = false;
    int rc = get_bool(c, body, "echo", "echo", &r->echo);
    if (!rc) rc = get_int(c, body, "max_tokens", r->echo ? 0 : 1, c->lim->max_tokens, &mt, NULL);
    if (!rc) rc = get_int(c, body, "logprobs", 0, 5, &lp, &has_lp);
    if (!rc && has_lp && r->echo)
        return unsupported(c, "logprobs",
                           " together with 'echo' (prompt log-probabilities are not computed)");
    if (!rc) rc = get_int(c, body, "best_of", 1, INT32_MAX, &best_of, &has_best);
    if (!rc && has_best && best_of != (int64_t)r->n) {
        char got[32];
        snprintf(got, sizeof got, "%" PRId64, best_of);
        return unsupported_value(c, "best_of", got, "a value equal to 'n'");
    }
    json_t *sfx = opt(body, "suffix");
    if (!rc && sfx && !json_is_string(sfx)) return bad_type(c, "suffix", sfx, "a string");
    if (!rc && sfx && json_string_length(sfx) > 0) return unsupported(c, "suffix", "");
    r->max_tokens = mt;
    r->logprobs = has_lp;
    r->top_logprobs = has_lp ? (uint32_t)lp : 0;
    return rc;
}

/* ---- entry points ---- */

static json_t *load_object(pctx *c, const char *body, size_t len, int *rc) {
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY, &je);
    if (!root) {
        *rc = oa_errorf(c->e, 400, INVALID, NULL, NULL,
                        "We could not parse the JSON body of your request: %s (line %d, column "
                        "%d).",
                        je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        *rc = oa_errorf(c->e, 400, INVALID, "invalid_type", NULL,
                        "Invalid type for the request body: expected an object, but got %s "
                        "instead.",
                        jt_name(root));
        json_decref(root);
        return NULL;
    }
    *rc = 0;
    return root;
}

static int parse_model(pctx *c, const json_t *body, char **model, bool required) {
    json_t *v = opt(body, "model");
    if (!v) return required ? missing(c, "model") : 0;
    return take_str(c, v, "model", c->lim->max_string_bytes, model, NULL);
}

static int parse_body(pctx *c, const json_t *body, oa_request *r) {
    int rc = parse_model(c, body, &r->model, true);
    if (!rc)
        rc = r->endpoint == OA_CHAT ? parse_messages(c, body, &r->messages, &r->n_messages)
                                    : parse_prompt(c, body, r);
    if (!rc) rc = parse_sampling(c, body, r);
    if (!rc) rc = parse_stop(c, body, r);
    if (!rc) rc = parse_stream(c, body, r);
    if (!rc)
        rc = r->endpoint == OA_CHAT ? parse_chat_output(c, body, r)
                                    : parse_completions_output(c, body, r);
    if (!rc) rc = parse_penalties(c, body);
    if (!rc) rc = parse_refused(c, body);
    if (!rc) rc = get_str(c, body, "user", "user", &r->user);
    if (!rc && (uint64_t)oa_n_choices(r) > c->lim->max_choices)
        return oa_errorf(c->e, 400, INVALID, "invalid_value", "n",
                         "Invalid 'n': %u prompts with n = %u ask for %" PRIu64 " choices, over "
                         "this server's limit of %u.",
                         r->n_prompts, r->n, (uint64_t)r->n_prompts * r->n, c->lim->max_choices);
    return rc;
}

int oa_parse_request(oa_endpoint ep, const char *body, size_t len, const oa_limits *limits,
                     oa_request *out, oa_error *e) {
    oa_limits dl;
    if (!limits) oa_limits_default(&dl);
    pctx c = {.lim = limits ? limits : &dl, .e = e};
    memset(out, 0, sizeof *out);
    out->endpoint = ep;
    out->max_tokens = -1;
    out->temperature = 1;
    out->top_p = 1;
    out->top_k = -1;
    out->n = 1;
    if (ep != OA_CHAT && ep != OA_COMPLETIONS)
        return oa_errorf(e, 404, INVALID, NULL, NULL, "Unknown endpoint.");
    int rc;
    json_t *root = load_object(&c, body, len, &rc);
    if (!root) return rc;
    rc = parse_body(&c, root, out);
    json_decref(root);
    if (rc) oa_request_free(out);
    return rc;
}

void oa_request_free(oa_request *r) {
    if (!r) return;
    free(r->model);
    free_messages(r->messages, r->n_messages);
    for (uint32_t i = 0; r->prompts && i < r->n_prompts; i++) {
        free(r->prompts[i].text);
        free(r->prompts[i].ids);
    }
    free(r->prompts);
    for (uint32_t i = 0; r->stop && i < r->n_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    free(r->stop_len);
    free(r->user);
    memset(r, 0, sizeof *r);
}

/* ---- /tokenize and /detokenize ---- */

static int parse_tokenize_body(pctx *c, const json_t *body, oa_tokenize_req *r) {
    int rc = parse_model(c, body, &r->model, false);
    json_t *prompt = opt(body, "prompt"), *msgs = opt(body, "messages");
    if (!rc && prompt && msgs)
        return oa_errorf(c->e, 400, INVALID, "invalid_value", "messages",
                         "Give either 'prompt' or 'messages', not both.");
    if (!rc && !prompt && !msgs) return missing(c, "prompt");
    if (!rc && prompt) {
        r->add_special_tokens = true;
        if (!json_is_string(prompt)) return bad_type(c, "prompt", prompt, "a string");
        rc = count_text(c, "prompt", json_string_length(prompt));
        if (!rc) rc = take_str(c, prompt, "prompt", SIZE_MAX - 1, &r->prompt, &r->prompt_len);
    } else if (!rc) {
        r->add_generation_prompt = true;
        rc = parse_messages(c, body, &r->messages, &r->n_messages);
        if (!rc)
            rc = get_bool(c, body, "add_generation_prompt", "add_generation_prompt",
                          &r->add_generation_prompt);
    }
    if (!rc)
        rc = get_bool(c, body, "add_special_tokens", "add_special_tokens", &r->add_special_tokens);
    return rc;
}

int oa_parse_tokenize(const char *body, size_t len, const oa_limits *limits, oa_tokenize_req *out,
                      oa_error *e) {
    oa_limits dl;
    if (!limits) oa_limits_default(&dl);
    pctx c = {.lim = limits ? limits : &dl, .e = e};
    memset(out, 0, sizeof *out);
    int rc;
    json_t *root = load_object(&c, body, len, &rc);
    if (!root) return rc;
    rc = parse_tokenize_body(&c, root, out);
    json_decref(root);
    if (rc) oa_tokenize_req_free(out);
    return rc;
}

void oa_tokenize_req_free(oa_tokenize_req *r) {
    if (!r) return;
    free(r->model);
    free(r->prompt);
    free_messages(r->messages, r->n_messages);
    memset(r, 0, sizeof *r);
}

static int parse_detokenize_body(pctx *c, const json_t *body, oa_detokenize_req *r) {
    int rc = parse_model(c, body, &r->model, false);
    if (rc) return rc;
    json_t *v = opt(body, "tokens");
    if (!v) return missing(c, "tokens");
    if (!json_is_array(v)) return bad_type(c, "tokens", v, "an array of integers");
    if (json_array_size(v) == 0) return 0;
    oa_prompt p = {0};
    rc = parse_ids(c, v, "tokens", &p);
    r->tokens = p.ids;
    r->n_tokens = p.n_ids;
    return rc;
}

int oa_parse_detokenize(const char *body, size_t len, const oa_limits *limits,
                        oa_detokenize_req *out, oa_error *e) {
    oa_limits dl;
    if (!limits) oa_limits_default(&dl);
    pctx c = {.lim = limits ? limits : &dl, .e = e};
    memset(out, 0, sizeof *out);
    int rc;
    json_t *root = load_object(&c, body, len, &rc);
    if (!root) return rc;
    rc = parse_detokenize_body(&c, root, out);
    json_decref(root);
    if (rc) oa_detokenize_req_free(out);
    return rc;
}

void oa_detokenize_req_free(oa_detokenize_req *r) {
    if (!r) return;
    free(r->model);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}
