/* Unit tests for router/openai request parsing: every field of a full chat and completions
 * request, the defaults, OpenAI's index order for batch prompts, /tokenize and /detokenize, and
 * a table of rejected bodies, each with its exact HTTP status, error code and param. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "router/openai.h"

static int parse(oa_endpoint ep, const char *body, oa_request *r, oa_error *e) {
    memset(e, 0, sizeof *e);
    return oa_parse_request(ep, body, strlen(body), NULL, r, e);
}

static void ok(oa_endpoint ep, const char *body, oa_request *r) {
    oa_error e;
    int rc = parse(ep, body, r, &e);
    cr_assert_eq(rc, 0, "rc %d: %d %s [%s] %s", rc, e.status, e.code ? e.code : "null", e.param,
                 e.message);
}

/* ---- accepted requests ---- */

Test(openai_req, chat_minimal_defaults) {
    oa_request r;
    ok(OA_CHAT, "{\"model\":\"step3\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r);
    cr_assert_eq(r.endpoint, OA_CHAT);
    cr_assert_str_eq(r.model, "step3");
    cr_assert_eq(r.n_messages, 1, "%u", r.n_messages);
    cr_assert_eq(r.messages[0].role, OA_ROLE_USER);
    cr_assert_str_eq(r.messages[0].content, "hi");
    cr_assert_eq(r.messages[0].content_len, 2, "%zu", r.messages[0].content_len);
    cr_assert_null(r.messages[0].name);
    cr_assert_eq(r.max_tokens, -1, "%lld", (long long)r.max_tokens);
    cr_assert_eq(r.temperature, 1.0, "%g", r.temperature);
    cr_assert_eq(r.top_p, 1.0, "%g", r.top_p);
    cr_assert_eq(r.top_k, -1, "%d", r.top_k);
    cr_assert_eq(r.n, 1, "%u", r.n);
    cr_assert(!r.has_seed && !r.stream && !r.include_usage && !r.logprobs && !r.ignore_eos);
    cr_assert_eq(r.n_stop, 0, "%u", r.n_stop);
    cr_assert_null(r.prompts);
    cr_assert_eq(oa_n_choices(&r), 1, "%u", oa_n_choices(&r));
    oa_request_free(&r);
    cr_assert_null(r.model);
    oa_request_free(&r); /* twice is fine: zeroed */
}

Test(openai_req, chat_full) {
    const char *body =
        "{\"model\":\"m\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
        "{\"type\":\"text\",\"text\":\"b\"}],\"name\":\"dev\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"caf\\u00e9\"}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"c1\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"refusal\",\"refusal\":\"no\"}]}],"
        "\"max_tokens\":5,\"max_completion_tokens\":7,\"temperature\":0,\"top_p\":0.5,"
        "\"top_k\":40,\"seed\":-9223372036854775807,\"stop\":\"END\",\"n\":3,\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"logprobs\":true,\"top_logprobs\":20,"
        "\"presence_penalty\":0,\"frequency_penalty\":0.0,\"logit_bias\":{},\"user\":\"u1\","
        "\"ignore_eos\":true,\"tools\":[],\"response_format\":{\"type\":\"text\"},"
        "\"unknown_field\":{\"x\":[1,2]},\"metadata\":null,\"store\":false}";
    oa_request r;
    ok(OA_CHAT, body, &r);
    cr_assert_eq(r.n_messages, 6, "%u", r.n_messages);
    oa_role roles[] = {OA_ROLE_SYSTEM,    OA_ROLE_DEVELOPER, OA_ROLE_USER,
                       OA_ROLE_ASSISTANT, OA_ROLE_TOOL,      OA_ROLE_ASSISTANT};
    for (int i = 0; i < 6; i++)
        cr_assert_eq(r.messages[i].role, roles[i], "message %d", i);
    cr_assert_str_eq(r.messages[1].content, "a\nb");
    cr_assert_str_eq(r.messages[1].name, "dev");
    cr_assert_str_eq(r.messages[2].content, "caf\xc3\xa9");
    cr_assert_str_eq(r.messages[3].content, "");
    cr_assert_str_eq(r.messages[3].tool_calls_json,
                     "[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                     "\"arguments\":\"{}\"}}]");
    cr_assert_str_eq(r.messages[4].tool_call_id, "c1");
    cr_assert_str_eq(r.messages[5].content, "no");
    cr_assert_eq(r.max_tokens, 7, "max_completion_tokens wins: %lld", (long long)r.max_tokens);
    cr_assert_eq(r.temperature, 0.0, "%g", r.temperature);
    cr_assert_eq(r.top_p, 0.5, "%g", r.top_p);
    cr_assert_eq(r.top_k, 40, "%d", r.top_k);
    cr_assert(r.has_seed);
    cr_assert_eq(r.seed, -9223372036854775807LL, "%lld", (long long)r.seed);
    cr_assert_eq(r.n_stop, 1, "%u", r.n_stop);
    cr_assert_str_eq(r.stop[0], "END");
    cr_assert_eq(r.stop_len[0], 3, "%zu", r.stop_len[0]);
    cr_assert_eq(r.n, 3, "%u", r.n);
    cr_assert(r.stream && r.include_usage && r.logprobs && r.ignore_eos);
    cr_assert_eq(r.top_logprobs, 20, "%u", r.top_logprobs);
    cr_assert_str_eq(r.user, "u1");
    cr_assert_eq(oa_n_choices(&r), 3, "%u", oa_n_choices(&r));
    oa_request_free(&r);
}

Test(openai_req, chat_nulls_and_integral_decimals) {
    oa_request r;
    ok(OA_CHAT,
       "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":"
       "null,\"top_p\":null,\"stop\":null,\"n\":2.0,\"max_tokens\":10.0,\"top_k\":0,"
       "\"stream\":false,\"stream_options\":null,\"seed\":7,\"logprobs\":false,"
       "\"top_logprobs\":0,\"stop\":[]}",
       &r);
    cr_assert_eq(r.temperature, 1.0, "%g", r.temperature);
    cr_assert_eq(r.n, 2, "%u", r.n);
    cr_assert_eq(r.max_tokens, 10, "%lld", (long long)r.max_tokens);
    cr_assert_eq(r.top_k, -1, "top_k 0 means off: %d", r.top_k);
    cr_assert(r.has_seed);
    cr_assert_eq(r.seed, 7, "%lld", (long long)r.seed);
    cr_assert_eq(r.n_stop, 0, "%u", r.n_stop);
    cr_assert(!r.logprobs);
    oa_request_free(&r);
}

Test(openai_req, chat_stop_array) {
    oa_request r;
    ok(OA_CHAT,
       "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
       "\"stop\":[\"a\",\"\\n\\n\",\"\\u00e9t\\u00e9\",\"<|end|>\"]}",
       &r);
    cr_assert_eq(r.n_stop, 4, "%u", r.n_stop);
    cr_assert_str_eq(r.stop[1], "\n\n");
    cr_assert_str_eq(r.stop[2], "\xc3\xa9t\xc3\xa9");
    cr_assert_eq(r.stop_len[2], 5, "%zu", r.stop_len[2]);
    oa_request_free(&r);
}

Test(openai_req, completions_string_prompt_defaults) {
    oa_request r;
    ok(OA_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"Once upon\"}", &r);
    cr_assert_eq(r.n_prompts, 1, "%u", r.n_prompts);
    cr_assert_str_eq(r.prompts[0].text, "Once upon");
    cr_assert_eq(r.prompts[0].text_len, 9, "%zu", r.prompts[0].text_len);
    cr_assert_null(r.prompts[0].ids);
    cr_assert_eq(r.max_tokens, 16, "OpenAI's default: %lld", (long long)r.max_tokens);
    cr_assert(!r.logprobs && !r.echo);
    cr_assert_null(r.messages);
    oa_request_free(&r);
}

Test(openai_req, completions_batches_and_index_order) {
    oa_request r;
    ok(OA_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"a\",\"bb\",\"\"],\"n\":2}", &r);
    cr_assert_eq(r.n_prompts, 3, "%u", r.n_prompts);
    cr_assert_str_eq(r.prompts[1].text, "bb");
    cr_assert_str_eq(r.prompts[2].text, "");
    cr_assert_eq(oa_n_choices(&r), 6, "%u", oa_n_choices(&r));
    /* prompt-major, n-minor: prompt 1's second sample is choice 3 */
    cr_assert_eq(oa_choice_index(&r, 1, 1), 3, "%u", oa_choice_index(&r, 1, 1));
    cr_assert_eq(oa_choice_index(&r, 2, 0), 4, "%u", oa_choice_index(&r, 2, 0));
    for (uint32_t p = 0; p < 3; p++)
        for (uint32_t j = 0; j < 2; j++)
            cr_assert_eq(oa_choice_prompt(&r, oa_choice_index(&r, p, j)), p);
    oa_request_free(&r);

    ok(OA_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[1,2,3]}", &r);
    cr_assert_eq(r.n_prompts, 1, "%u", r.n_prompts);
    cr_assert_null(r.prompts[0].text);
    cr_assert_eq(r.prompts[0].n_ids, 3, "%u", r.prompts[0].n_ids);
    cr_assert_eq(r.prompts[0].ids[2], 3, "%d", r.prompts[0].ids[2]);
    oa_request_free(&r);

    ok(OA_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[[5],[6,7]],\"n\":1}", &r);
    cr_assert_eq(r.n_prompts, 2, "%u", r.n_prompts);
    cr_assert_eq(r.prompts[1].n_ids, 2, "%u", r.prompts[1].n_ids);
    cr_assert_eq(r.prompts[1].ids[1], 7, "%d", r.prompts[1].ids[1]);
    oa_request_free(&r);
}

Test(openai_req, completions_options) {
    oa_request r;
    ok(OA_COMPLETIONS,
       "{\"model\":\"m\",\"prompt\":\"p\",\"echo\":true,\"max_tokens\":0,\"best_of\":1,"
       "\"suffix\":\"\",\"stop\":[\"x\"]}",
       &r);
    cr_assert(r.echo);
    cr_assert_eq(r.max_tokens, 0, "%lld", (long long)r.max_tokens);
    cr_assert_eq(r.n_stop, 1, "%u", r.n_stop);
    oa_request_free(&r);
    ok(OA_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"p\",\"logprobs\":3}", &r);
    cr_assert(r.logprobs);
    cr_assert_eq(r.top_logprobs, 3, "%u", r.top_logprobs);
    oa_request_free(&r);
    ok(OA_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"p\",\"logprobs\":0,\"max_tokens\":4}", &r);
    cr_assert(r.logprobs);
    cr_assert_eq(r.top_logprobs, 0, "%u", r.top_logprobs);
    cr_assert_eq(r.max_tokens, 4, "%lld", (long long)r.max_tokens);
    oa_request_free(&r);
    ok(OA_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"p\",\"logprobs\":null}", &r);
    cr_assert(!r.logprobs);
    oa_request_free(&r);
}

Test(openai_req, limits_applied) {
    oa_limits l;
    oa_limits_default(&l);
    cr_assert_eq(l.max_stop, 4, "%u", l.max_stop);
    cr_assert_eq(l.default_max_tokens_completions, 16, "%u", l.default_max_tokens_completions);
    l.vocab = 100;
    l.max_n = 2;
    oa_request r;
    oa_error e;
    const char *b = "{\"model\":\"m\",\"prompt\":[99,0],\"n\":2}";
    cr_assert_eq(oa_parse_request(OA_COMPLETIONS, b, strlen(b), &l, &r, &e), 0, "%s", e.message);
    oa_request_free(&r);
    b = "{\"model\":\"m\",\"prompt\":[[1],[100]]}";
    cr_assert_eq(oa_parse_request(OA_COMPLETIONS, b, strlen(b), &l, &r, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.param, "prompt[1][0]");
    cr_assert_str_eq(e.code, "invalid_value");
    cr_assert(strstr(e.message, "100") && strstr(e.message, "99"), "%s", e.message);
    b = "{\"model\":\"m\",\"prompt\":\"x\",\"n\":3}";
    cr_assert_eq(oa_parse_request(OA_COMPLETIONS, b, strlen(b), &l, &r, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.code, "integer_above_max_value");
    cr_assert_str_eq(e.param, "n");
    l.max_prompt_bytes = 10;
    b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"},"
        "{\"role\":\"user\",\"content\":\"world!\"}]}";
    cr_assert_eq(oa_parse_request(OA_CHAT, b, strlen(b), &l, &r, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.code, "string_above_max_length");
    cr_assert_str_eq(e.param, "messages[1].content");
    cr_assert(strstr(e.message, "11") && strstr(e.message, "10"), "%s", e.message);
    l.max_prompt_bytes = 1 << 20;
    l.max_messages = 1;
    cr_assert_eq(oa_parse_request(OA_CHAT, b, strlen(b), &l, &r, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.code, "array_above_max_length");
    cr_assert_str_eq(e.param, "messages");
    l.max_prompt_ids = 3;
    b = "{\"model\":\"m\",\"prompt\":[[1,2],[3,4]]}";
    cr_assert_eq(oa_parse_request(OA_COMPLETIONS, b, strlen(b), &l, &r, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.param, "prompt[1]");
    l.max_choices = 5;
    l.max_n = 16;
    b = "{\"model\":\"m\",\"prompt\":[\"a\",\"b\",\"c\"],\"n\":2}";
    cr_assert_eq(oa_parse_request(OA_COMPLETIONS, b, strlen(b), &l, &r, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.param, "n");
    cr_assert(strstr(e.message, "6") && strstr(e.message, "5"), "%s", e.message);
    l.max_string_bytes = 4;
    b = "{\"model\":\"model\",\"prompt\":\"x\"}";
    cr_assert_eq(oa_parse_request(OA_COMPLETIONS, b, strlen(b), &l, &r, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.code, "string_above_max_length");
    cr_assert_str_eq(e.param, "model");
    l.max_tokens = 100;
    b = "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":101}";
    cr_assert_eq(oa_parse_request(OA_COMPLETIONS, b, strlen(b), &l, &r, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.code, "integer_above_max_value");
    cr_assert_str_eq(e.param, "max_tokens");
}

/* ---- rejected requests ---- */

typedef struct bad_case {
    oa_endpoint ep;
    const char *body;
    int status;
    const char *code;  /* NULL: JSON null */
    const char *param; /* "" : null */
} bad_case;

#define MSG "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"
#define PR  "\"model\":\"m\",\"prompt\":\"x\""
#define C   OA_CHAT
#define T   OA_COMPLETIONS

static const bad_case BAD[] = {
    {C, "{\"model\":\"m\",", 400, NULL, ""},
    {C, "{\"model\":\"m\"} trailing", 400, NULL, ""},
    {C, "", 400, NULL, ""},
    {C, "[1]", 400, "invalid_type", ""},
    {C, "\"str\"", 400, "invalid_type", ""},
    {C, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "missing_required_parameter",
     "model"},
    {C, "{\"model\":null,\"messages\":[]}", 400, "missing_required_parameter", "model"},
    {C, "{\"model\":5,\"messages\":[]}", 400, "invalid_type", "model"},
    {C, "{\"model\":\"m\"}", 400, "missing_required_parameter", "messages"},
    {C, "{\"model\":\"m\",\"messages\":{}}", 400, "invalid_type", "messages"},
    {C, "{\"model\":\"m\",\"messages\":[]}", 400, "empty_array", "messages"},
    {C, "{\"model\":\"m\",\"messages\":[\"hi\"]}", 400, "invalid_type", "messages[0]"},
    {C, "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", 400, "missing_required_parameter",
     "messages[0].role"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}", 400,
     "invalid_value", "messages[0].role"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":1,\"content\":\"x\"}]}", 400, "invalid_type",
     "messages[0].role"},
    {C,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"user\"}]}",
     400, "missing_required_parameter", "messages[1].content"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":null}]}", 400,
     "missing_required_parameter", "messages[0].content"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "invalid_type",
     "messages[0].content"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}", 400, "empty_array",
     "messages[0].content"},
    {C,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"user\","
     "\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image_url\",\"image_url\":"
     "{\"url\":\"http://x\"}}]}]}",
     400, "invalid_value", "messages[1].content[1].type"},
    {C,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"refusal\","
     "\"refusal\":\"r\"}]}]}",
     400, "invalid_value", "messages[0].content[0].type"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"a\"}]}]}", 400,
     "missing_required_parameter", "messages[0].content[0].type"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
     400, "missing_required_parameter", "messages[0].content[0].text"},
    {C,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":3}]}]}",
     400, "invalid_type", "messages[0].content[0].text"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[\"a\"]}]}", 400,
     "invalid_type", "messages[0].content[0]"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":1}]}", 400,
     "invalid_type", "messages[0].name"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400,
     "missing_required_parameter", "messages[0].tool_call_id"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":{}}]}", 400,
     "invalid_type", "messages[0].tool_calls"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[1]}]}", 400,
     "invalid_type", "messages[0].tool_calls[0]"},
    {C, "{" MSG ",\"temperature\":2.5}", 400, "decimal_above_max_value", "temperature"},
    {C, "{" MSG ",\"temperature\":-0.1}", 400, "decimal_below_min_value", "temperature"},
    {C, "{" MSG ",\"temperature\":\"hot\"}", 400, "invalid_type", "temperature"},
    {C, "{" MSG ",\"top_p\":0}", 400, "decimal_below_min_value", "top_p"},
    {C, "{" MSG ",\"top_p\":1.01}", 400, "decimal_above_max_value", "top_p"},
    {C, "{" MSG ",\"top_k\":-2}", 400, "integer_below_min_value", "top_k"},
    {C, "{" MSG ",\"top_k\":1.5}", 400, "invalid_type", "top_k"},
    {C, "{" MSG ",\"seed\":\"s\"}", 400, "invalid_type", "seed"},
    {C, "{" MSG ",\"seed\":0.5}", 400, "invalid_type", "seed"},
    {C, "{" MSG ",\"n\":0}", 400, "integer_below_min_value", "n"},
    {C, "{" MSG ",\"n\":17}", 400, "integer_above_max_value", "n"},
    {C, "{" MSG ",\"n\":true}", 400, "invalid_type", "n"},
    {C, "{" MSG ",\"stop\":5}", 400, "invalid_type", "stop"},
    {C, "{" MSG ",\"stop\":\"\"}", 400, "invalid_value", "stop"},
    {C, "{" MSG ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "array_above_max_length",
     "stop"},
    {C, "{" MSG ",\"stop\":[\"a\",\"\"]}", 400, "invalid_value", "stop[1]"},
    {C, "{" MSG ",\"stop\":[1]}", 400, "invalid_type", "stop[0]"},
    {C, "{" MSG ",\"stream\":\"yes\"}", 400, "invalid_type", "stream"},
    {C, "{" MSG ",\"stream_options\":{\"include_usage\":true}}", 400, "invalid_value",
     "stream_options"},
    {C, "{" MSG ",\"stream\":true,\"stream_options\":1}", 400, "invalid_type", "stream_options"},
    {C, "{" MSG ",\"stream\":true,\"stream_options\":{\"include_usage\":1}}", 400, "invalid_type",
     "stream_options.include_usage"},
    {C, "{" MSG ",\"max_tokens\":0}", 400, "integer_below_min_value", "max_tokens"},
    {C, "{" MSG ",\"max_completion_tokens\":-1}", 400, "integer_below_min_value",
     "max_completion_tokens"},
    {C, "{" MSG ",\"max_tokens\":\"5\"}", 400, "invalid_type", "max_tokens"},
    {C, "{" MSG ",\"logprobs\":1}", 400, "invalid_type", "logprobs"},
    {C, "{" MSG ",\"logprobs\":true,\"top_logprobs\":21}", 400, "integer_above_max_value",
     "top_logprobs"},
    {C, "{" MSG ",\"top_logprobs\":3}", 400, "invalid_value", "top_logprobs"},
    {C, "{" MSG ",\"presence_penalty\":0.5}", 400, "unsupported_value", "presence_penalty"},
    {C, "{" MSG ",\"frequency_penalty\":3}", 400, "decimal_above_max_value", "frequency_penalty"},
    {C, "{" MSG ",\"frequency_penalty\":-1}", 400, "unsupported_value", "frequency_penalty"},
    {C, "{" MSG ",\"logit_bias\":{\"50256\":-100}}", 400, "unsupported_parameter", "logit_bias"},
    {C, "{" MSG ",\"logit_bias\":[]}", 400, "invalid_type", "logit_bias"},
    {C, "{" MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", 400,
     "unsupported_parameter", "tools"},
    {C, "{" MSG ",\"functions\":[{\"name\":\"f\"}]}", 400, "unsupported_parameter", "functions"},
    {C, "{" MSG ",\"audio\":{\"voice\":\"alloy\",\"format\":\"wav\"}}", 400,
     "unsupported_parameter", "audio"},
    {C, "{" MSG ",\"response_format\":{\"type\":\"json_object\"}}", 400, "unsupported_value",
     "response_format.type"},
    {C, "{" MSG ",\"response_format\":{}}", 400, "missing_required_parameter",
     "response_format.type"},
    {C, "{" MSG ",\"user\":5}", 400, "invalid_type", "user"},
    {C, "{" MSG ",\"ignore_eos\":\"x\"}", 400, "invalid_type", "ignore_eos"},
    {T, "{\"model\":\"m\"}", 400, "missing_required_parameter", "prompt"},
    {T, "{\"model\":\"m\",\"prompt\":5}", 400, "invalid_type", "prompt"},
    {T, "{\"model\":\"m\",\"prompt\":[]}", 400, "empty_array", "prompt"},
    {T, "{\"model\":\"m\",\"prompt\":[\"a\",1]}", 400, "invalid_type", "prompt[1]"},
    {T, "{\"model\":\"m\",\"prompt\":[1,\"a\"]}", 400, "invalid_type", "prompt[1]"},
    {T, "{\"model\":\"m\",\"prompt\":[[1,2],[]]}", 400, "empty_array", "prompt[1]"},
    {T, "{\"model\":\"m\",\"prompt\":[[1,\"x\"]]}", 400, "invalid_type", "prompt[0][1]"},
    {T, "{\"model\":\"m\",\"prompt\":[[1],2]}", 400, "invalid_type", "prompt[1]"},
    {T, "{\"model\":\"m\",\"prompt\":[1,-1]}", 400, "invalid_value", "prompt[1]"},
    {T, "{\"model\":\"m\",\"prompt\":[2147483648]}", 400, "invalid_value", "prompt[0]"},
    {T, "{\"model\":\"m\",\"prompt\":[true]}", 400, "invalid_type", "prompt[0]"},
    {T, "{" PR ",\"max_tokens\":0}", 400, "integer_below_min_value", "max_tokens"},
    {T, "{" PR ",\"logprobs\":6}", 400, "integer_above_max_value", "logprobs"},
    {T, "{" PR ",\"logprobs\":true}", 400, "invalid_type", "logprobs"},
    {T, "{" PR ",\"echo\":true,\"logprobs\":1}", 400, "unsupported_parameter", "logprobs"},
    {T, "{" PR ",\"echo\":1}", 400, "invalid_type", "echo"},
    {T, "{" PR ",\"best_of\":3}", 400, "unsupported_value", "best_of"},
    {T, "{" PR ",\"best_of\":0}", 400, "integer_below_min_value", "best_of"},
    {T, "{" PR ",\"suffix\":\"end\"}", 400, "unsupported_parameter", "suffix"},
    {T, "{" PR ",\"suffix\":1}", 400, "invalid_type", "suffix"},
    {T, "{" PR ",\"stop\":[\"\"]}", 400, "invalid_value", "stop[0]"},
    {T,
     "{\"model\":\"m\",\"prompt\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"],"
     "\"n\":8}",
     400, "invalid_value", "n"},
};

Test(openai_req, rejections) {
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        const bad_case *b = &BAD[i];
        oa_request r;
        oa_error e;
        int rc = parse(b->ep, b->body, &r, &e);
        cr_assert_eq(rc, AFD_E_FORMAT, "case %zu (%s): rc %d", i, b->body, rc);
        cr_assert_eq(e.status, b->status, "case %zu (%s): status %d, want %d", i, b->body, e.status,
                     b->status);
        cr_assert_str_eq(e.type, "invalid_request_error", "case %zu", i);
        cr_assert_str_eq(e.code ? e.code : "null", b->code ? b->code : "null",
                         "case %zu (%s): code %s, want %s (%s)", i, b->body,
                         e.code ? e.code : "null", b->code ? b->code : "null", e.message);
        cr_assert_str_eq(e.param, b->param, "case %zu (%s): param '%s', want '%s' (%s)", i, b->body,
                         e.param, b->param, e.message);
        cr_assert_gt(strlen(e.message), 10, "case %zu: message '%s'", i, e.message);
        if (b->param[0] && strncmp(b->code ? b->code : "", "missing", 7) != 0)
            cr_assert(strstr(e.message, b->param), "case %zu: message '%s' does not name '%s'", i,
                      e.message, b->param);
        cr_assert_null(r.model, "case %zu: the request is freed and zeroed", i);
        cr_assert_null(r.messages, "case %zu", i);
        cr_assert_null(r.prompts, "case %zu", i);
    }
}

Test(openai_req, bad_json_says_where) {
    oa_request r;
    oa_error e;
    const char *b = "{\n  \"model\": \"m\",\n  \"messages\": [}\n}";
    cr_assert_eq(oa_parse_request(OA_CHAT, b, strlen(b), NULL, &r, &e), AFD_E_FORMAT);
    cr_assert_eq(e.status, 400, "%d", e.status);
    cr_assert(strstr(e.message, "line 3"), "message: %s", e.message);
    cr_assert(strstr(e.message, "column"), "message: %s", e.message);
    /* the body length is honoured: a valid prefix followed by junk */
    const char *b2 = "{\"model\":\"m\",\"prompt\":\"x\"}GARBAGE";
    cr_assert_eq(oa_parse_request(OA_COMPLETIONS, b2, strcspn(b2, "G"), NULL, &r, &e), 0, "%s",
                 e.message);
    oa_request_free(&r);
    cr_assert_eq(oa_parse_request(OA_COMPLETIONS, b2, strlen(b2), NULL, &r, &e), AFD_E_FORMAT);
    /* NUL inside a string and invalid UTF-8 are refused by the JSON layer */
    const char b3[] = "{\"model\":\"m\",\"prompt\":\"a\\u0000b\"}";
    cr_assert_eq(oa_parse_request(OA_COMPLETIONS, b3, strlen(b3), NULL, &r, &e), AFD_E_FORMAT);
    const char b4[] = "{\"model\":\"m\",\"prompt\":\"\xff\"}";
    cr_assert_eq(oa_parse_request(OA_COMPLETIONS, b4, strlen(b4), NULL, &r, &e), AFD_E_FORMAT);
    cr_assert_eq(e.status, 400, "%d", e.status);
}

/* ---- /tokenize, /detokenize ---- */

Test(openai_req, tokenize) {
    oa_tokenize_req t;
    oa_error e;
    const char *b = "{\"model\":\"m\",\"prompt\":\"hello\"}";
    cr_assert_eq(oa_parse_tokenize(b, strlen(b), NULL, &t, &e), 0, "%s", e.message);
    cr_assert_str_eq(t.prompt, "hello");
    cr_assert_str_eq(t.model, "m");
    cr_assert(t.add_special_tokens, "prompt default: add special tokens");
    cr_assert_null(t.messages);
    oa_tokenize_req_free(&t);
    b = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"add_generation_prompt\":false}";
    cr_assert_eq(oa_parse_tokenize(b, strlen(b), NULL, &t, &e), 0, "%s", e.message);
    cr_assert_null(t.model);
    cr_assert_null(t.prompt);
    cr_assert_eq(t.n_messages, 1, "%u", t.n_messages);
    cr_assert(!t.add_generation_prompt && !t.add_special_tokens);
    oa_tokenize_req_free(&t);
    b = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"add_special_tokens\":true}";
    cr_assert_eq(oa_parse_tokenize(b, strlen(b), NULL, &t, &e), 0, "%s", e.message);
    cr_assert(t.add_generation_prompt && t.add_special_tokens);
    oa_tokenize_req_free(&t);
    b = "{\"prompt\":\"x\",\"messages\":[]}";
    cr_assert_eq(oa_parse_tokenize(b, strlen(b), NULL, &t, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.param, "messages");
    b = "{\"model\":\"m\"}";
    cr_assert_eq(oa_parse_tokenize(b, strlen(b), NULL, &t, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.code, "missing_required_parameter");
    b = "{\"prompt\":[1,2]}";
    cr_assert_eq(oa_parse_tokenize(b, strlen(b), NULL, &t, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.code, "invalid_type");
    cr_assert_str_eq(e.param, "prompt");
    b = "{\"prompt\":\"x\",\"add_special_tokens\":\"no\"}";
    cr_assert_eq(oa_parse_tokenize(b, strlen(b), NULL, &t, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.param, "add_special_tokens");
    cr_assert_null(t.prompt);
}

Test(openai_req, detokenize) {
    oa_detokenize_req d;
    oa_error e;
    const char *b = "{\"model\":\"m\",\"tokens\":[1,2,30]}";
    cr_assert_eq(oa_parse_detokenize(b, strlen(b), NULL, &d, &e), 0, "%s", e.message);
    cr_assert_eq(d.n_tokens, 3, "%u", d.n_tokens);
    cr_assert_eq(d.tokens[2], 30, "%d", d.tokens[2]);
    oa_detokenize_req_free(&d);
    b = "{\"tokens\":[]}";
    cr_assert_eq(oa_parse_detokenize(b, strlen(b), NULL, &d, &e), 0, "%s", e.message);
    cr_assert_eq(d.n_tokens, 0, "%u", d.n_tokens);
    oa_detokenize_req_free(&d);
    b = "{\"model\":\"m\"}";
    cr_assert_eq(oa_parse_detokenize(b, strlen(b), NULL, &d, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.param, "tokens");
    b = "{\"tokens\":[1,\"a\"]}";
    cr_assert_eq(oa_parse_detokenize(b, strlen(b), NULL, &d, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.param, "tokens[1]");
    cr_assert_str_eq(e.code, "invalid_type");
    oa_limits l;
    oa_limits_default(&l);
    l.vocab = 10;
    b = "{\"tokens\":[10]}";
    cr_assert_eq(oa_parse_detokenize(b, strlen(b), &l, &d, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.param, "tokens[0]");
    cr_assert_str_eq(e.code, "invalid_value");
}

/* ---- errors ---- */

static void valid_utf8(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0, k; i < n; i += k) {
        k = oa_utf8_seq((const uint8_t *)s + i, n - i);
        cr_assert_gt(k, 0, "invalid UTF-8 at byte %zu of '%s'", i, s);
    }
}

/* Truncated values in messages never leave half a character behind. */
Test(openai_req, messages_stay_utf8) {
    char model[400] = "a";
    for (int i = 0; i < 150; i++)
        strcat(model, "\xc3\xa9");
    oa_error e;
    oa_error_model_not_found(&e, model);
    valid_utf8(e.message);
    cr_assert(strstr(e.message, "a\xc3\xa9\xc3\xa9"), "%s", e.message);
    char body[1200];
    snprintf(body, sizeof body, "{\"model\":\"m\",\"messages\":[{\"role\":\"x%s\"}]}", model);
    oa_request r;
    cr_assert_eq(oa_parse_request(OA_CHAT, body, strlen(body), NULL, &r, &e), AFD_E_FORMAT);
    cr_assert_str_eq(e.param, "messages[0].role");
    valid_utf8(e.message);
    cr_assert_eq(oa_utf8_seq((const uint8_t *)"\xed\xa0\x80", 3), 0);
    cr_assert_eq(oa_utf8_seq((const uint8_t *)"\xf0\x9f\x98\x80", 4), 4);
    cr_assert_eq(oa_utf8_seq((const uint8_t *)"\xf0\x9f\x98", 3), 0);
    cr_assert_eq(oa_utf8_seq((const uint8_t *)"\xc1\x81", 2), 0, "overlong");
}

Test(openai_req, error_helpers) {
    oa_error e;
    cr_assert_eq(oa_error_model_not_found(&e, "gpt-9"), AFD_E_FORMAT);
    cr_assert_eq(e.status, 404, "%d", e.status);
    cr_assert_str_eq(e.code, "model_not_found");
    cr_assert(strstr(e.message, "gpt-9"), "%s", e.message);
    oa_error_context_length(&e, "messages", 4096, 4000, 200);
    cr_assert_eq(e.status, 400, "%d", e.status);
    cr_assert_str_eq(e.code, "context_length_exceeded");
    cr_assert_str_eq(e.param, "messages");
    cr_assert(strstr(e.message, "4096") && strstr(e.message, "4200"), "%s", e.message);
    oa_error_rate_limited(&e, "queue full");
    cr_assert_eq(e.status, 429, "%d", e.status);
    cr_assert_str_eq(e.code, "rate_limit_exceeded");
    cr_assert_neq(oa_error_overloaded(&e, "busy"), 0);
    cr_assert_eq(e.status, 503, "%d", e.status);
    cr_assert_str_eq(e.type, "server_error");
    oa_error_internal(&e, "boom");
    cr_assert_eq(e.status, 500, "%d", e.status);
    oa_error_invalid_api_key(&e);
    cr_assert_eq(e.status, 401, "%d", e.status);
    cr_assert_str_eq(e.code, "invalid_api_key");
    cr_assert_eq(oa_errorf(NULL, 400, "invalid_request_error", NULL, NULL, "x"), AFD_E_FORMAT);
    cr_assert_str_eq(oa_role_name(OA_ROLE_DEVELOPER), "developer");
    cr_assert_str_eq(oa_role_name((oa_role)99), "unknown");
}
