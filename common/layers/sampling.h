/* sampling.h: choosing the next token from a row of logits.
 *
 * Greedy (temperature 0) takes the arg max, ties to the lowest id. Otherwise the logits are
 * divided by the temperature, softmaxed in fp32, restricted to the top_k most likely tokens
 * (top_k > 0) and then to the smallest set whose probability reaches top_p (top_p < 1), ties
 * broken by lower id, and one token is drawn with the sequence's own RNG: the same seed and
 * logits give the same token on any machine. Log-probabilities reported are those of the
 * model's distribution (log-softmax of the raw logits, before temperature), as OpenAI does.
 *
 * No allocation: the caller gives a scratch buffer of afd_sample_scratch_size(vocab) bytes.
 * Thread-safe (no globals).
 */
#ifndef AFD_SAMPLING_H
#define AFD_SAMPLING_H

#include <stddef.h>
#include <stdint.h>

#define AFD_MAX_LOGPROBS 20

typedef struct afd_sampling {
    float temperature; /* 0 = greedy */
    float top_p;       /* (0, 1]; 1 = off */
    int top_k;         /* 0 = off */
    uint64_t seed;
    int n_logprobs;    /* -1: none; 0: chosen token only; 1..20: plus that many top candidates */
} afd_sampling;

typedef struct afd_rng {
    uint64_t s[4];
} afd_rng;

typedef struct afd_sample {
    int32_t token;
    float logprob;                      /* of the chosen token (if n_logprobs >= 0) */
    int n_top;
    int32_t top_ids[AFD_MAX_LOGPROBS];  /* most likely first */
    float top_logprobs[AFD_MAX_LOGPROBS];
} afd_sample;

void afd_sampling_default(afd_sampling *sp); /* greedy, no logprobs */
void afd_rng_seed(afd_rng *r, uint64_t seed);
uint64_t afd_rng_next(afd_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double afd_rng_uniform(afd_rng *r);

size_t afd_sample_scratch_size(int vocab);
/* Picks a token from logits[vocab]. scratch: afd_sample_scratch_size(vocab) bytes. */
void afd_sample_token(const float *logits, int vocab, const afd_sampling *sp, afd_rng *rng,
                      void *scratch, afd_sample *out);

#endif
