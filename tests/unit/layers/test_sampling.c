#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "common/layers/sampling.h"

#define V 1000

static float logits[V];
static unsigned char scratch[V * 8];

static void fill(unsigned seed) {
    srand(seed);
    for (int i = 0; i < V; i++)
        logits[i] = (float)(rand() % 1000) / 100.0f;
}

Test(sampling, greedy_takes_argmax_ties_to_lowest_id) {
    for (int i = 0; i < V; i++)
        logits[i] = 0;
    logits[7] = 3, logits[5] = 3, logits[900] = 2.5f;
    afd_sampling sp;
    afd_sampling_default(&sp);
    afd_rng rng;
    afd_rng_seed(&rng, 1);
    afd_sample s;
    afd_sample_token(logits, V, &sp, &rng, scratch, &s);
    cr_assert_eq(s.token, 5);
}

Test(sampling, same_seed_same_tokens_other_seed_differs) {
    fill(3);
    afd_sampling sp;
    afd_sampling_default(&sp);
    sp.temperature = 1.5f;
    int same = 0;
    afd_rng a, b, c;
    afd_rng_seed(&a, 42), afd_rng_seed(&b, 42), afd_rng_seed(&c, 43);
    for (int i = 0; i < 50; i++) {
        afd_sample x, y, z;
        afd_sample_token(logits, V, &sp, &a, scratch, &x);
        afd_sample_token(logits, V, &sp, &b, scratch, &y);
        afd_sample_token(logits, V, &sp, &c, scratch, &z);
        cr_assert_eq(x.token, y.token);
        same += x.token == z.token;
    }
    cr_assert_lt(same, 50, "a different seed gave the same 50 tokens");
}

Test(sampling, top_k_one_is_greedy) {
    fill(5);
    afd_sampling sp;
    afd_sampling_default(&sp);
    sp.temperature = 2.0f, sp.top_k = 1;
    afd_rng rng;
    afd_rng_seed(&rng, 9);
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best])
            best = i;
    for (int i = 0; i < 20; i++) {
        afd_sample s;
        afd_sample_token(logits, V, &sp, &rng, scratch, &s);
        cr_assert_eq(s.token, best);
    }
}

Test(sampling, top_p_keeps_only_the_nucleus) {
    /* p(0) = 0.5, p(1) = 0.3, p(2) = 0.2 (others ~0): top_p 0.7 keeps {0, 1} only. */
    for (int i = 0; i < V; i++)
        logits[i] = -1e9f;
    logits[0] = logf(0.5f), logits[1] = logf(0.3f), logits[2] = logf(0.2f);
    afd_sampling sp;
    afd_sampling_default(&sp);
    sp.temperature = 1.0f, sp.top_p = 0.7f;
    afd_rng rng;
    afd_rng_seed(&rng, 11);
    int seen[3] = {0};
    for (int i = 0; i < 2000; i++) {
        afd_sample s;
        afd_sample_token(logits, V, &sp, &rng, scratch, &s);
        cr_assert(s.token == 0 || s.token == 1, "token %d outside the nucleus", s.token);
        seen[s.token]++;
    }
    /* renormalised: p(0) = 0.625 */
    cr_assert(seen[0] > 1150 && seen[0] < 1350, "p(0) ~ 0.625, seen %d / 2000", seen[0]);
    cr_assert_eq(seen[2], 0);
}

Test(sampling, logprobs_are_model_log_softmax) {
    fill(8);
    afd_sampling sp;
    afd_sampling_default(&sp);
    sp.n_logprobs = 5;
    afd_rng rng;
    afd_rng_seed(&rng, 1);
    afd_sample s;
    afd_sample_token(logits, V, &sp, &rng, scratch, &s);
    double z = 0;
    for (int i = 0; i < V; i++)
        z += exp(logits[i]);
    cr_assert_eq(s.n_top, 5);
    cr_assert_eq(s.top_ids[0], s.token);
    cr_assert_float_eq(s.logprob, (float)(logits[s.token] - log(z)), 1e-4);
    for (int i = 1; i < 5; i++)
        cr_assert_geq(s.top_logprobs[i - 1], s.top_logprobs[i]);
    cr_assert_float_eq(s.top_logprobs[3], (float)(logits[s.top_ids[3]] - log(z)), 1e-4);
}
