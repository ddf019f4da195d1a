/*
 * sampler.c — see lode_sampler.h. Candidates live in a buffer reserved at
 * creation, so sampling allocates nothing.
 */
#include "lode_sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lode_base.h"

typedef struct {
    float logit, p;
    int32_t id;
} cand;

struct lode_sampler {
    lode_sampler_params p;
    int64_t n_vocab;
    uint64_t rng;
    cand *c;
};

lode_sampler_params lode_sampler_default_params(void) {
    lode_sampler_params p = {0.0f, 40, 0.95f, 0.05f, 1.0f, 64, 0};
    return p;
}

lode_sampler *lode_sampler_new(const lode_sampler_params *p, int64_t n_vocab) {
    lode_sampler *s = lode_xcalloc(1, sizeof *s);
    s->p = *p;
    s->n_vocab = n_vocab;
    s->rng = p->seed ^ 0x853C49E6748FEA9Bull;
    s->c = lode_xmalloc((size_t)n_vocab * sizeof(cand));
    return s;
}

void lode_sampler_free(lode_sampler *s) {
    if (!s) return;
    lode_free(s->c);
    lode_free(s);
}

int32_t lode_argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int32_t)b;
}

static double next_uniform(lode_sampler *s) {
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static int by_logit_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

int32_t lode_sampler_sample(lode_sampler *s, const float *logits, const int32_t *hist, int64_t n_hist) {
    const int64_t V = s->n_vocab;
    cand *c = s->c;
    for (int64_t i = 0; i < V; i++) c[i] = (cand){logits[i], 0.0f, (int32_t)i};
    if (s->p.repeat_penalty != 1.0f && s->p.repeat_penalty > 0 && hist) {
        int64_t from = s->p.repeat_last_n > 0 && n_hist > s->p.repeat_last_n ? n_hist - s->p.repeat_last_n : 0;
        for (int64_t i = from; i < n_hist; i++) {
            int32_t t = hist[i];
            if (t < 0 || t >= V) continue;
            bool seen = false; /* penalise each token once */
            for (int64_t j = from; j < i; j++)
                if (hist[j] == t) seen = true;
            if (seen) continue;
            c[t].logit = c[t].logit > 0 ? c[t].logit / s->p.repeat_penalty : c[t].logit * s->p.repeat_penalty;
        }
    }
    if (s->p.temp <= 0.0f) {
        int64_t b = 0;
        for (int64_t i = 1; i < V; i++)
            if (c[i].logit > c[b].logit) b = i;
        return c[b].id;
    }
    int64_t n = V;
    if (s->p.top_k > 0 && s->p.top_k < n) {
        /* Partial selection would be faster; V log V on a 100K vocab is
         * ~2 ms, negligible next to a forward pass. */
        qsort(c, (size_t)n, sizeof(cand), by_logit_desc);
        n = s->p.top_k;
    } else {
        qsort(c, (size_t)n, sizeof(cand), by_logit_desc);
    }
    const float mx = c[0].logit;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - mx) / s->p.temp);
        sum += c[i].p;
    }
    for (int64_t i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
    if (s->p.top_p < 1.0f && s->p.top_p > 0) {
        double acc = 0;
        int64_t keep = n;
        for (int64_t i = 0; i < n; i++) {
            acc += c[i].p;
            if (acc >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (s->p.min_p > 0) {
        const float lim = c[0].p * s->p.min_p;
        int64_t keep = 1;
        while (keep < n && c[keep].p >= lim) keep++;
        n = keep;
    }
    sum = 0;
    for (int64_t i = 0; i < n; i++) sum += c[i].p;
    double r = next_uniform(s) * sum, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc) return c[i].id;
    }
    return c[n - 1].id;
}

bool lode_stop_check(const char *text, size_t len, const char *const *stops, size_t n_stops, size_t *cut,
                     size_t *emit_upto) {
    size_t best = len;
    bool found = false;
    for (size_t k = 0; k < n_stops; k++) {
        size_t sl = strlen(stops[k]);
        if (!sl || sl > len) continue;
        for (size_t i = 0; i + sl <= len; i++)
            if (!memcmp(text + i, stops[k], sl)) {
                if (i < best) best = i;
                found = true;
                break;
            }
    }
    if (found) {
        *cut = best;
        *emit_upto = best;
        return true;
    }
    /* Hold back the longest tail that is a proper prefix of a stop string. */
    size_t hold = 0;
    for (size_t k = 0; k < n_stops; k++) {
        size_t sl = strlen(stops[k]);
        for (size_t t = sl > 1 ? sl - 1 : 0; t > hold; t--)
            if (t <= len && !memcmp(text + len - t, stops[k], t)) {
                hold = t;
                break;
            }
    }
    *cut = len;
    *emit_upto = len - hold;
    return false;
}
