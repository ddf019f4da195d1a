/*
 * test_engine.c — KV cache semantics (fork, truncate, refcounts, full cache),
 * the failure contract of lode_model_eval (cache unchanged), batching across
 * sequences (exactly the sequential result), cancellation, and the sampler.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lode_engine.h"
#include "lode_gen.h"
#include "unit_models.h"
#include "lode_quant.h"
#include "lode_sampler.h"

static char g_path[256];

static lode_model *tiny(const char *preset) {
    lode_test_gen(g_path, sizeof g_path, "engine", preset, LODE_TYPE_F32, false, "deepseek-llm");
    lode_error err = {0};
    lode_model_params mp = lode_model_default_params();
    mp.n_threads = 2;
    lode_model *m;
    cr_assert_eq(lode_model_load(g_path, &mp, &m, &err), LODE_OK, "%s", err.text);
    return m;
}

static void done(lode_model *m) {
    lode_model_free(m);
    unlink(g_path);
}

static const int32_t TOK[12] = {5, 77, 300, 12, 9, 401, 33, 250, 111, 64, 2, 499};

Test(engine, kv_fork_truncate_refcounts) {
    lode_model *m = tiny("tiny-v2lite");
    lode_kv *kv;
    lode_error err = {0};
    cr_assert_eq(lode_kv_new(m, 32, &kv, &err), LODE_OK);
    int32_t a = lode_kv_seq_new(kv);
    lode_batch b = {10, TOK, NULL, a, NULL};
    float *lg = malloc(sizeof(float) * 512 * 12);
    cr_assert_eq(lode_model_eval(m, kv, &b, lg, &err), LODE_OK, "%s", err.text);
    cr_assert_eq(lode_kv_seq_len(kv, a), 10);
    cr_assert_eq(lode_kv_n_free(kv), 22);
    int32_t f = lode_kv_seq_fork(kv, a, 6);
    cr_assert_geq(f, 0);
    cr_assert_eq(lode_kv_seq_len(kv, f), 6);
    cr_assert_eq(lode_kv_n_free(kv), 22, "a fork shares cells, it does not copy them");
    lode_kv_seq_free(kv, a);
    cr_assert_eq(lode_kv_n_free(kv), 26, "only the 4 unshared cells return");
    lode_kv_seq_truncate(kv, f, 3);
    cr_assert_eq(lode_kv_n_free(kv), 29);
    lode_kv_seq_free(kv, f);
    cr_assert_eq(lode_kv_n_free(kv), 32);
    free(lg);
    lode_kv_free(kv);
    done(m);
}

/* lode bench --fill synthetic: the cells count as evaluated positions (the
 * next token lands after them, the cache accounting holds, the logits that
 * follow are finite), and an over-full fill is refused without change. */
Test(engine, kv_fill_synthetic) {
    lode_model *m = tiny("tiny-v2lite");
    lode_kv *kv;
    lode_error err = {0};
    cr_assert_eq(lode_kv_new(m, 32, &kv, &err), LODE_OK);
    int32_t a = lode_kv_seq_new(kv);
    cr_assert_eq(lode_kv_seq_fill_synthetic(kv, a, 20, 7, &err), LODE_OK, "%s", err.text);
    cr_assert_eq(lode_kv_seq_len(kv, a), 20);
    cr_assert_eq(lode_kv_n_free(kv), 12);
    cr_assert_neq(lode_kv_seq_fill_synthetic(kv, a, 13, 7, &err), LODE_OK);
    cr_assert(strstr(err.text, "KV cache full"), "%s", err.text);
    cr_assert_eq(lode_kv_seq_len(kv, a), 20, "a refused fill changes nothing");
    lode_batch b = {2, TOK, NULL, a, NULL};
    float *lg = malloc(sizeof(float) * 512 * 2);
    cr_assert_eq(lode_model_eval(m, kv, &b, lg, &err), LODE_OK, "%s", err.text);
    cr_assert_eq(lode_kv_seq_len(kv, a), 22);
    for (int i = 0; i < 2 * 512; i++) cr_assert(isfinite(lg[i]), "logit %d not finite after a synthetic fill", i);
    /* the same as 22 positions whose first 20 hold those values: a fork of
     * the filled prefix gives the same logits for the same 2 tokens */
    int32_t f = lode_kv_seq_fork(kv, a, 20);
    float *lg2 = malloc(sizeof(float) * 512 * 2);
    lode_batch b2 = {2, TOK, NULL, f, NULL};
    cr_assert_eq(lode_model_eval(m, kv, &b2, lg2, &err), LODE_OK, "%s", err.text);
    cr_assert_eq(memcmp(lg, lg2, sizeof(float) * 512 * 2), 0);
    lode_kv_seq_free(kv, f);
    lode_kv_seq_free(kv, a);
    cr_assert_eq(lode_kv_n_free(kv), 32);
    free(lg);
    free(lg2);
    lode_kv_free(kv);
    done(m);
}

Test(engine, failed_eval_leaves_cache_unchanged) {
    lode_model *m = tiny("tiny-v2lite");
    lode_kv *kv;
    lode_error err = {0};
    cr_assert_eq(lode_kv_new(m, 8, &kv, &err), LODE_OK);
    int32_t s = lode_kv_seq_new(kv);
    float *lg = malloc(sizeof(float) * 512 * 12);
    lode_batch b = {4, TOK, NULL, s, NULL};
    cr_assert_eq(lode_model_eval(m, kv, &b, lg, &err), LODE_OK);
    int32_t bad[2] = {3, 100000};
    lode_batch bb = {2, bad, NULL, s, NULL};
    lode_error e2 = {0};
    cr_assert_eq(lode_model_eval(m, kv, &bb, lg, &e2), LODE_ERR_RANGE);
    cr_assert(strstr(e2.text, "100000") != NULL, "message names the token: %s", e2.text);
    cr_assert_eq(lode_kv_seq_len(kv, s), 4);
    lode_batch big = {10, TOK, NULL, s, NULL};
    lode_error e3 = {0};
    cr_assert_eq(lode_model_eval(m, kv, &big, lg, &e3), LODE_ERR_FULL);
    cr_assert_eq(lode_kv_seq_len(kv, s), 4);
    cr_assert_eq(lode_kv_n_free(kv), 4);
    volatile int cancel = 1;
    lode_model_set_cancel_flag(m, &cancel);
    lode_error e4 = {0};
    lode_batch one = {2, TOK + 4, NULL, s, NULL};
    cr_assert_eq(lode_model_eval(m, kv, &one, lg, &e4), LODE_ERR_CANCELLED);
    cr_assert_eq(lode_kv_seq_len(kv, s), 4, "cancelled eval rolls back");
    cr_assert_eq(lode_kv_n_free(kv), 4);
    lode_model_set_cancel_flag(m, NULL);
    free(lg);
    lode_kv_free(kv);
    done(m);
}

/* Decode steps of several sequences in one batch give exactly what separate
 * evaluation gives (batching is exact, bit for bit on one thread count). */
static void batched_equals_sequential(const char *preset) {
    lode_model *m = tiny(preset);
    lode_error err = {0};
    const int64_t V = lode_model_config(m)->n_vocab;
    lode_kv *kv;
    cr_assert_eq(lode_kv_new(m, 64, &kv, &err), LODE_OK);
    int32_t s[3];
    float *ref = malloc(sizeof(float) * (size_t)V * 3), *got = malloc(sizeof(float) * (size_t)V * 3);
    float *tmp = malloc(sizeof(float) * (size_t)V * 12);
    for (int i = 0; i < 3; i++) {
        s[i] = lode_kv_seq_new(kv);
        lode_batch b = {3 + i, TOK + i, NULL, s[i], NULL};
        cr_assert_eq(lode_model_eval(m, kv, &b, tmp, &err), LODE_OK, "%s", err.text);
    }
    /* Sequential reference on forks. */
    for (int i = 0; i < 3; i++) {
        int32_t f = lode_kv_seq_fork(kv, s[i], lode_kv_seq_len(kv, s[i]));
        lode_batch b = {1, TOK + 9 + i, NULL, f, NULL};
        cr_assert_eq(lode_model_eval(m, kv, &b, ref + i * V, &err), LODE_OK);
        lode_kv_seq_free(kv, f);
    }
    int32_t toks[3] = {TOK[9], TOK[10], TOK[11]};
    lode_batch b = {3, toks, s, 0, NULL};
    cr_assert_eq(lode_model_eval(m, kv, &b, got, &err), LODE_OK, "%s", err.text);
    for (int64_t i = 0; i < 3 * V; i++)
        cr_assert_float_eq(got[i], ref[i], 1e-5f + 1e-5f * fabsf(ref[i]), "logit %lld: %g vs %g", (long long)i,
                           got[i], ref[i]);
    free(ref);
    free(got);
    free(tmp);
    lode_kv_free(kv);
    done(m);
}

Test(engine, batched_decode_is_exact_deepseek2) { batched_equals_sequential("tiny-v2"); }
Test(engine, batched_decode_is_exact_llama) { batched_equals_sequential("tiny-llama-gqa"); }

Test(engine, want_logits_subset) {
    lode_model *m = tiny("tiny-llama");
    lode_error err = {0};
    const int64_t V = lode_model_config(m)->n_vocab;
    lode_kv *kv;
    cr_assert_eq(lode_kv_new(m, 64, &kv, &err), LODE_OK);
    float *all = malloc(sizeof(float) * (size_t)V * 6), *last = malloc(sizeof(float) * (size_t)V);
    int32_t a = lode_kv_seq_new(kv), b2 = lode_kv_seq_new(kv);
    lode_batch b = {6, TOK, NULL, a, NULL};
    cr_assert_eq(lode_model_eval(m, kv, &b, all, &err), LODE_OK);
    bool want[6] = {false, false, false, false, false, true};
    lode_batch c = {6, TOK, NULL, b2, want};
    cr_assert_eq(lode_model_eval(m, kv, &c, last, &err), LODE_OK);
    for (int64_t i = 0; i < V; i++) cr_assert_float_eq(last[i], all[5 * V + i], 1e-5f);
    free(all);
    free(last);
    lode_kv_free(kv);
    done(m);
}

Test(sampler, greedy_topk_seed) {
    float lg[8] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f, 0.5f, -3.0f, 1.0f};
    lode_sampler_params p = lode_sampler_default_params();
    p.temp = 0;
    lode_sampler *s = lode_sampler_new(&p, 8);
    cr_assert_eq(lode_sampler_sample(s, lg, NULL, 0), 1);
    int32_t hist[1] = {1};
    p.repeat_penalty = 2.0f;
    lode_sampler_free(s);
    s = lode_sampler_new(&p, 8);
    cr_assert_eq(lode_sampler_sample(s, lg, hist, 1), 3, "penalty moves the choice to the runner-up");
    lode_sampler_free(s);
    p = lode_sampler_default_params();
    p.temp = 1.0f;
    p.top_k = 1;
    s = lode_sampler_new(&p, 8);
    for (int i = 0; i < 20; i++) cr_assert_eq(lode_sampler_sample(s, lg, NULL, 0), 1);
    lode_sampler_free(s);
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0;
    p.seed = 42;
    lode_sampler *s1 = lode_sampler_new(&p, 8), *s2 = lode_sampler_new(&p, 8);
    int counts[8] = {0};
    for (int i = 0; i < 2000; i++) {
        int32_t a = lode_sampler_sample(s1, lg, NULL, 0), b = lode_sampler_sample(s2, lg, NULL, 0);
        cr_assert_eq(a, b, "same seed, same draws");
        counts[a]++;
    }
    /* p(1) = e^2 / sum e^x ≈ 0.33 */
    cr_assert(counts[1] > 550 && counts[1] < 800, "frequency of the top token %d", counts[1]);
    cr_assert(counts[6] < 20);
    lode_sampler_free(s1);
    lode_sampler_free(s2);
    p.min_p = 0.9f;
    s = lode_sampler_new(&p, 8);
    for (int i = 0; i < 50; i++) {
        int32_t t = lode_sampler_sample(s, lg, NULL, 0);
        cr_assert(t == 1 || t == 3, "min-p keeps tokens within 90%% of the best: got %d", t);
    }
    lode_sampler_free(s);
}

Test(sampler, stop_strings) {
    const char *stops[] = {"\n\n", "</s>"};
    size_t cut, emit;
    cr_assert(!lode_stop_check("abc", 3, stops, 2, &cut, &emit));
    cr_assert_eq(emit, 3);
    cr_assert(!lode_stop_check("abc\n", 4, stops, 2, &cut, &emit));
    cr_assert_eq(emit, 3, "a newline that may start a stop is held back");
    cr_assert(!lode_stop_check("abc</", 5, stops, 2, &cut, &emit));
    cr_assert_eq(emit, 3);
    cr_assert(lode_stop_check("abc\n\nxyz", 8, stops, 2, &cut, &emit));
    cr_assert_eq(cut, 3);
    cr_assert(lode_stop_check("a</s>\n\n", 7, stops, 2, &cut, &emit));
    cr_assert_eq(cut, 1, "the earliest stop wins");
}
