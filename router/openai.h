/* openai.h: the OpenAI API's JSON shapes, without I/O (docs/api.md has the user's view).
 *
 * Requests: oa_parse_request turns the body of POST /v1/chat/completions or /v1/completions
 * into an oa_request, validated against oa_limits; oa_parse_tokenize / oa_parse_detokenize do
 * the same for /tokenize and /detokenize (vLLM's shapes). A request owns all its strings and
 * arrays (checked allocations: sizes come from the client); free it with oa_request_free.
 * A rejected request gets an oa_error in OpenAI's shape: HTTP status, type
 * ("invalid_request_error", ...), code ("invalid_type", "missing_required_parameter", ... or
 * NULL), param in OpenAI's path style ("messages[1].content", "stop[2]", or "" for null) and
 * a message naming what is wrong, with the value and the limit.
 *
 * Responses: builders return malloc'd compact JSON text (NUL-terminated, *len without the NUL),
 * fields in OpenAI's order, or NULL when memory runs out; the caller frees it. Strings are
 * escaped; bytes that are not valid UTF-8 become U+FFFD, so the output is always valid JSON.
 * Streaming: one chunk per call (the caller writes "data: <json>\n\n" and, at the end,
 * "data: [DONE]\n\n").
 *
 * Everything here is pure: no globals, no logging; any thread. Errors: 0 / negative
 * (AFD_E_FORMAT for a bad request, -ENOMEM), with the oa_error filled in.
 */
#ifndef AFD_ROUTER_OPENAI_H
#define AFD_ROUTER_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ---- */

#define OA_PARAM_MAX 128
#define OA_MSG_MAX   512

typedef struct oa_error {
    int status;               /* HTTP status: 400, 401, 404, 413, 429, 500, 503 */
    const char *type;         /* static string: "invalid_request_error", "server_error", ... */
    const char *code;         /* static string or NULL (JSON null) */
    char param[OA_PARAM_MAX]; /* "" -> null */
    char message[OA_MSG_MAX];
} oa_error;

/* Fills *e (if e != NULL) and returns AFD_E_FORMAT (status < 500) or AFD_E_STATE. type and
 * code must be static strings (code may be NULL); param may be NULL. Bytes of the message that
 * are not valid UTF-8 (a character cut by truncation) are dropped. */
int oa_errorf(oa_error *e, int status, const char *type, const char *code, const char *param,
              const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Ready-made errors the router answers with (return as oa_errorf). */
int oa_error_model_not_found(oa_error *e, const char *model);                /* 404 */
int oa_error_context_length(oa_error *e, const char *param, int64_t max_ctx, /* 400 */
                            int64_t prompt_tokens, int64_t max_tokens);
int oa_error_rate_limited(oa_error *e, const char *why); /* 429 */
int oa_error_overloaded(oa_error *e, const char *why);   /* 503 */
int oa_error_internal(oa_error *e, const char *why);     /* 500 */
int oa_error_invalid_api_key(oa_error *e);               /* 401 */

/* {"error":{"message","type","param","code"}} */
char *oa_error_json(const oa_error *e, size_t *len);

/* ---- requests ---- */

typedef enum oa_endpoint {
    OA_CHAT = 1,        /* POST /v1/chat/completions */
    OA_COMPLETIONS = 2, /* POST /v1/completions */
} oa_endpoint;

typedef enum oa_role {
    OA_ROLE_SYSTEM = 0,
    OA_ROLE_DEVELOPER,
    OA_ROLE_USER,
    OA_ROLE_ASSISTANT,
    OA_ROLE_TOOL,
} oa_role;

/* "system", "developer", "user", "assistant", "tool". */
const char *oa_role_name(oa_role r);

typedef struct oa_message {
    oa_role role;
    char *content; /* text parts joined with "\n"; "" for an assistant message without content */
    size_t content_len;
    char *name;            /* NULL if absent */
    char *tool_call_id;    /* tool messages; NULL otherwise */
    char *tool_calls_json; /* assistant messages: the tool_calls array as compact JSON, or NULL */
} oa_message;

/* One completions prompt: text, or token ids. */
typedef struct oa_prompt {
    char *text; /* NULL when the prompt is token ids */
    size_t text_len;
    int32_t *ids; /* NULL when the prompt is text */
    uint32_t n_ids;
} oa_prompt;

typedef struct oa_request {
    oa_endpoint endpoint;
    char *model;
    oa_message *messages; /* chat: [n_messages], >= 1 */
    uint32_t n_messages;
    oa_prompt *prompts; /* completions: [n_prompts], >= 1 (a batch when > 1) */
    uint32_t n_prompts;
    int64_t max_tokens; /* -1: not given (chat: up to the context); completions default 16 */
    double temperature; /* [0, 2], default 1 */
    double top_p;       /* (0, 1], default 1 */
    int32_t top_k;      /* -1 = off (the request's -1 and 0), else 1 .. limits.max_top_k */
    bool has_seed;
    int64_t seed;
    char **stop; /* [n_stop] non-empty NUL-free strings */
    size_t *stop_len;
    uint32_t n_stop;
    uint32_t n; /* choices per prompt, >= 1 */
    bool stream;
    bool include_usage;    /* stream_options.include_usage (only with stream) */
    bool logprobs;         /* chat: logprobs; completions: logprobs != null */
    uint32_t top_logprobs; /* chat: top_logprobs 0..20; completions: the logprobs value 0..5 */
    bool echo;             /* completions: the prompt text comes first in each choice */
    bool ignore_eos;       /* extension */
    char *user;            /* NULL if absent */
} oa_request;

typedef struct oa_limits {
    uint32_t max_n;          /* n <= this (default 16) */
    uint32_t max_choices;    /* n * prompts <= this (default 64) */
    uint32_t max_stop;       /* stop strings (default 4, as OpenAI) */
    uint32_t max_stop_bytes; /* bytes per stop string (default 256) */
    uint32_t max_messages;   /* default 4096 */
    uint32_t max_prompts;    /* batch prompts (default 64) */
    size_t max_prompt_bytes; /* total text bytes of messages / prompts (default 4 MiB) */
    uint32_t max_prompt_ids; /* total token ids over the prompts (default 1 Mi) */
    uint32_t vocab;          /* token ids must be < vocab; 0 = not checked */
    int64_t max_tokens;      /* max_tokens <= this (default 1 Mi); the router checks context */
    int32_t max_top_k;       /* default 1 << 20 */
    uint32_t default_max_tokens_completions; /* 16, as OpenAI */
    size_t max_string_bytes;                 /* model, user, name, tool_call_id ... (default 256) */
} oa_limits;

void oa_limits_default(oa_limits *l);

/* Parses and validates body[0..len) for ep. On success returns 0 with *out filled (free with
 * oa_request_free); on failure returns negative with *e filled and *out zeroed. limits NULL:
 * defaults. Unknown fields are ignored; docs/api.md lists what is rejected and why. */
int oa_parse_request(oa_endpoint ep, const char *body, size_t len, const oa_limits *limits,
                     oa_request *out, oa_error *e);
void oa_request_free(oa_request *r); /* NULL or zeroed is fine; leaves *r zeroed */

/* Number of choices: n, times the prompts for completions. Choice index of prompt p's j-th
 * sample, in OpenAI's order (prompt-major, n-minor), and back. */
static inline uint32_t oa_n_choices(const oa_request *r) {
    return r->endpoint == OA_COMPLETIONS ? r->n_prompts * r->n : r->n;
}
static inline uint32_t oa_choice_index(const oa_request *r, uint32_t prompt, uint32_t j) {
    return prompt * r->n + j;
}
static inline uint32_t oa_choice_prompt(const oa_request *r, uint32_t index) {
    return index / r->n;
}

/* POST /tokenize: {"model"?, "prompt": string, "add_special_tokens"? (default true)} or
 * {"model"?, "messages": [...], "add_generation_prompt"? (default true), "add_special_tokens"?
 * (default false)}. */
typedef struct oa_tokenize_req {
    char *model;  /* NULL if absent */
    char *prompt; /* NULL when messages are given */
    size_t prompt_len;
    oa_message *messages;
    uint32_t n_messages;
    bool add_special_tokens;
    bool add_generation_prompt;
} oa_tokenize_req;

/* POST /detokenize: {"model"?, "tokens": [ids]}. */
typedef struct oa_detokenize_req {
    char *model;
    int32_t *tokens;
    uint32_t n_tokens;
} oa_detokenize_req;

int oa_parse_tokenize(const char *body, size_t len, const oa_limits *limits, oa_tokenize_req *out,
                      oa_error *e);
void oa_tokenize_req_free(oa_tokenize_req *r);
int oa_parse_detokenize(const char *body, size_t len, const oa_limits *limits,
                        oa_detokenize_req *out, oa_error *e);
void oa_detokenize_req_free(oa_detokenize_req *r);

/* ---- responses ---- */

#define OA_ID_MAX 48

/* "chatcmpl-" / "cmpl-" followed by 29 characters [0-9A-Za-z] taken from rnd (the caller's
 * random bits, e.g. getrandom). */
void oa_make_id(oa_endpoint ep, const uint64_t rnd[3], char out[OA_ID_MAX]);

typedef enum oa_finish {
    OA_FINISH_NONE = 0, /* null: more to come (chunks only) */
    OA_FINISH_STOP,     /* "stop": EOS or a stop string */
    OA_FINISH_LENGTH,   /* "length": max_tokens or the context */
} oa_finish;

/* What every response of one request shares. */
typedef struct oa_meta {
    oa_endpoint endpoint;
    const char *id;                 /* oa_make_id */
    int64_t created;                /* Unix seconds, the same for every chunk */
    const char *model;              /* as the client named it */
    const char *system_fingerprint; /* NULL: omitted */
    bool include_usage;             /* streaming: every chunk carries "usage":null */
} oa_meta;

typedef struct oa_usage {
    int64_t prompt_tokens;
    int64_t completion_tokens;
} oa_usage;

/* A token as logprobs show it: its bytes (NULL when it has no byte form, e.g. a special token;
 * then the token string is "" and bytes null) and log-probability (not finite or below -9999:
 * -9999, OpenAI's "very unlikely"). A token whose bytes are not valid UTF-8 on their own (a
 * piece of a character) is shown, in chat, as its valid parts with each stray byte written
 * "\xNN" and the exact bytes in "bytes"; in completions as "bytes:\xNN\xNN..." (all bytes). */
typedef struct oa_lp_cand {
    const uint8_t *bytes;
    uint32_t len;
    float logprob;
} oa_lp_cand;

typedef struct oa_lp_token {
    const uint8_t *bytes;
    uint32_t len;
    float logprob;
    const oa_lp_cand *top; /* [n_top], most likely first */
    uint32_t n_top;
} oa_lp_token;

/* One choice of a non-streaming response. */
typedef struct oa_choice {
    uint32_t index;
    const char *text; /* chat: message.content; completions: text (echoed prompt included) */
    size_t text_len;
    oa_finish finish;      /* STOP or LENGTH */
    bool logprobs;         /* false: "logprobs": null */
    const oa_lp_token *lp; /* [n_lp] */
    uint32_t n_lp;
    uint64_t text_offset0; /* completions: text_offset of lp[0] (in characters) */
} oa_choice;

/* chat.completion / text_completion with usage. */
char *oa_response_json(const oa_meta *m, const oa_choice *choices, size_t n, const oa_usage *u,
                       size_t *len);

/* One streaming chunk for one choice. Chat: role set gives the first chunk's delta
 * {"role":"assistant","content":"","refusal":null} (text ignored); otherwise
 * {"content": text}, or {} when text_len is 0 and finish is set. Completions: {"text": text}.
 * finish NONE is null. lp as in oa_choice (the tokens whose text this chunk carries). */
typedef struct oa_delta {
    uint32_t index;
    bool role;
    const char *text;
    size_t text_len;
    oa_finish finish;
    bool logprobs;
    const oa_lp_token *lp;
    uint32_t n_lp;
    uint64_t text_offset0;
} oa_delta;

char *oa_chunk_json(const oa_meta *m, const oa_delta *d, size_t *len);
/* The last chunk when include_usage: "choices": [] and the usage. */
char *oa_chunk_usage_json(const oa_meta *m, const oa_usage *u, size_t *len);

/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1): 1..4, or 0 when s starts with a
 * stray, truncated, overlong or surrogate sequence or one above U+10FFFF. */
size_t oa_utf8_seq(const uint8_t *s, size_t n);

/* Characters (UTF-8 lead bytes) in bytes[0..n): advances a completions text_offset. */
uint64_t oa_text_chars(const char *bytes, size_t n);

/* GET /v1/models: {"object":"list","data":[model...]}; GET /v1/models/{id}: one model. */
typedef struct oa_model_info {
    const char *id;
    int64_t created;
    const char *owned_by;
} oa_model_info;

char *oa_models_json(const oa_model_info *models, size_t n, size_t *len);
char *oa_model_json(const oa_model_info *model, size_t *len);

/* /tokenize: {"count":n,"max_model_len":m,"tokens":[...]}; /detokenize: {"prompt":"..."}. */
char *oa_tokenize_json(const int32_t *ids, size_t n, int64_t max_model_len, size_t *len);
char *oa_detokenize_json(const char *text, size_t n, size_t *len);

#endif
