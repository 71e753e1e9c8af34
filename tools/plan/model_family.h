/* model_family.h: the per-family config readers behind plan_model_parse (internal to afd-plan).
 *
 * Each reads its family's keys from `cfg` (the text part of a config.json) into *m, which the
 * caller has zeroed and given its name; `what` names the input in messages. 0 or a negative
 * code with *err naming the key. The caller validates the result (plan_model_validate).
 */
#ifndef AFD_PLAN_MODEL_FAMILY_H
#define AFD_PLAN_MODEL_FAMILY_H

#include <jansson.h>

#include "tools/plan/model.h"

int plan_read_step3(const json_t *cfg, const char *what, plan_model *m, afd_err *err);
int plan_read_mla(const json_t *cfg, const char *what, plan_model *m, afd_err *err);
int plan_read_gqa(const json_t *cfg, const char *what, plan_model *m, afd_err *err);

/* Keys every family shares: num_hidden_layers, hidden_size, num_attention_heads (required),
 * vocab_size, tie_word_embeddings (optional). */
int plan_read_common(const json_t *cfg, const char *what, plan_model *m, afd_err *err);

#endif
