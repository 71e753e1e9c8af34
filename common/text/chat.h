/* chat.h: Step-3 chat prompts (DESIGN §1, docs/tokenizer.md), rendered exactly as the
 * chat_template of the generated tokenizer_config.json does:
 *
 *   <｜begin▁of▁sentence｜>{every system message's content, joined}
 *   <|BOT|>{role}\n{content}<|EOT|>          for every other message, in order
 *   <|BOT|>assistant\n                       when add_generation_prompt
 *
 * (no newlines between the parts; the model may then open with "<think>\n"). A message's
 * content is a string, null (""), or a list of {"type": "text", "text": ...} parts joined
 * without separator; other part types are refused. Roles are rendered as given.
 *
 * The ids are the encoding of the rendered text with special tokens parsed, which is what HF's
 * apply_chat_template(tokenize=True) gives. With escape_content, special tokens written inside
 * message text (or roles) are encoded as plain text instead: each text run between the
 * template's own special tokens is encoded without special tokens and the template's tokens are
 * inserted by id (a guard against prompt injection; HF has no such mode).
 *
 * tok_chat borrows the tokenizer (it must outlive it) and holds the ids it found by name; it is
 * read-only after tok_chat_init, so threads may share it. Errors: 0 / negative with afd_err.
 */
#ifndef AFD_CHAT_H
#define AFD_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/base/err.h"
#include "common/text/tokenizer.h"

struct json_t;

typedef struct tok_chat {
    const tok_tokenizer *t;
    int32_t bos, bot, eot; /* <｜begin▁of▁sentence｜> (bos_token), <|BOT|>, <|EOT|> */
    /* tokenizer_config.json's chat_template is the Step-3 template above, byte for byte. When
     * false the renderer still renders Step-3's format: the caller may want to warn. */
    bool template_known;
} tok_chat;

typedef struct tok_chat_msg {
    const char *role; /* NUL-terminated */
    const char *content;
    size_t content_len;
} tok_chat_msg;

typedef struct tok_chat_opts {
    bool add_generation_prompt;
    bool escape_content;
} tok_chat_opts;

/* Finds the chat tokens by name: BOS from tokenizer_config.json's bos_token (else the token
 * "<｜begin▁of▁sentence｜>"), "<|BOT|>", "<|EOT|>". AFD_E_NOTFOUND naming the missing one. */
int tok_chat_init(tok_chat *c, const tok_tokenizer *t, afd_err *err);

/* Renders msgs[0..n) and appends the prompt text to `text` and its ids to `ids` (either may be
 * NULL). st is a per-thread tok_state (NULL allowed, slower). ids->limit applies (AFD_E_LIMIT). */
int tok_chat_render(const tok_chat *c, tok_state *st, const tok_chat_msg *msgs, size_t n,
                    const tok_chat_opts *o, tok_str *text, tok_ids *ids, afd_err *err);

/* Same from an OpenAI "messages" JSON array: [{"role": "...", "content": ...}, ...]. Refuses a
 * non-array, a message without a string role, or content of another shape, naming
 * messages[i]. */
int tok_chat_render_json(const tok_chat *c, tok_state *st, const struct json_t *messages,
                         const tok_chat_opts *o, tok_str *text, tok_ids *ids, afd_err *err);

/* The Step-3 chat_template string tokenizer_config.json carries (afd-mkmodel writes it). */
extern const char *const tok_chat_step3_template;

#endif
