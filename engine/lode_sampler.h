/*
 * lode_sampler.h — next-token selection and stop conditions.
 *
 * Order of operations (llama.cpp's default chain): repetition penalty over
 * the last `repeat_last_n` tokens (positive logits divided, negative
 * multiplied), then greedy if temp <= 0; otherwise top-k, temperature,
 * softmax, top-p (nucleus), min-p (relative to the best probability), and a
 * draw from the seeded generator. Deterministic for a given seed.
 */
#ifndef LODE_SAMPLER_H
#define LODE_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lode_sampler_params {
    float temp;           /* <= 0: greedy */
    int32_t top_k;        /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int32_t repeat_last_n;
    uint64_t seed;
} lode_sampler_params;

typedef struct lode_sampler lode_sampler;

lode_sampler_params lode_sampler_default_params(void);
lode_sampler *lode_sampler_new(const lode_sampler_params *p, int64_t n_vocab);
void lode_sampler_free(lode_sampler *s);
/* Pick a token. `logits` (n_vocab) is not modified. `hist` = tokens so far. */
int32_t lode_sampler_sample(lode_sampler *s, const float *logits, const int32_t *hist, int64_t n_hist);
/* Index of the largest logit (first on ties). */
int32_t lode_argmax(const float *logits, int64_t n);

/* Stop strings. Given the text generated so far, returns true when a stop
 * string occurs; *cut is where it starts (the text to keep). Otherwise
 * *emit_upto is how much may be shown now: the text minus a tail that is a
 * prefix of some stop string (held back until resolved). */
bool lode_stop_check(const char *text, size_t len, const char *const *stops, size_t n_stops, size_t *cut,
                     size_t *emit_upto);

#endif
