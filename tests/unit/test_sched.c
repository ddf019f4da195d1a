/*
 * test_sched.c — the scheduler on its own (no sockets): concurrent requests
 * get exactly the greedy tokens of a plain engine loop, every request ends
 * with exactly one DONE event, cancellation and the prefix cache work.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lode_engine.h"
#include "lode_gen.h"
#include "lode_sched.h"

static lode_model *g_m;
static lode_tok *g_t;
static char g_path[128];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static lode_sched_event *g_done[64];
static int g_n_done, g_n_partial;

static void on_event(lode_sched_event *ev, void *ud) {
    (void)ud;
    pthread_mutex_lock(&mu);
    if (ev->kind == LODE_EV_DONE) g_done[g_n_done++] = ev;
    else {
        g_n_partial++;
        lode_free(ev->text);
        lode_free(ev);
    }
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static void wait_done(int n) {
    pthread_mutex_lock(&mu);
    while (g_n_done < n) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void setup(void) {
    snprintf(g_path, sizeof g_path, "/tmp/lode-test-sched-%d.gguf", (int)getpid());
    lode_config cfg;
    const char *v;
    lode_gen_preset("tiny-v2", &cfg, &v, NULL);
    lode_gen_params p = {.out = g_path, .format = LODE_GEN_GGUF, .type = LODE_TYPE_F32, .kb_type = -1, .quiet = true,
                         .n_threads = 1, .vocab_pre = "deepseek-llm"};
    cr_assert_eq(lode_gen_write(&cfg, &p, NULL), LODE_OK);
    lode_model_params mp = lode_model_default_params();
    mp.n_threads = 2;
    cr_assert_eq(lode_model_load(g_path, &mp, &g_m, NULL), LODE_OK);
    cr_assert_eq(lode_tok_load(g_path, &g_t, NULL), LODE_OK);
    g_n_done = g_n_partial = 0;
}

static void teardown(void) {
    for (int i = 0; i < g_n_done; i++) {
        lode_free(g_done[i]->text);
        lode_free(g_done[i]->tokens);
        lode_free(g_done[i]);
    }
    lode_tok_free(g_t);
    lode_model_free(g_m);
    unlink(g_path);
}

/* Greedy continuation with a plain engine loop (the reference). */
static void greedy(const int32_t *p, int n, int steps, int32_t *out) {
    lode_kv *kv;
    lode_kv_new(g_m, 128, &kv, NULL);
    int32_t s = lode_kv_seq_new(kv);
    float lg[512];
    bool want[64] = {0};
    want[n - 1] = true;
    lode_batch b = {n, p, NULL, s, want};
    lode_model_eval(g_m, kv, &b, lg, NULL);
    for (int i = 0; i < steps; i++) {
        out[i] = lode_argmax(lg, 512);
        lode_batch d = {1, &out[i], NULL, s, NULL};
        lode_model_eval(g_m, kv, &d, lg, NULL);
    }
    lode_kv_free(kv);
}

static lode_sched_req req(uint64_t h, const int32_t *p, int n, int max) {
    lode_sched_req r = {0};
    r.handle = h;
    r.client = h % 2;
    r.prompt = lode_xmalloc((size_t)n * sizeof(int32_t));
    memcpy(r.prompt, p, (size_t)n * sizeof(int32_t));
    r.n_prompt = (size_t)n;
    r.max_tokens = max;
    r.sp = lode_sampler_default_params();
    r.sp.temp = 0;
    r.ignore_eos = true;
    r.stream = true;
    return r;
}

Test(sched, concurrent_exact_and_one_done_each, .init = setup, .fini = teardown) {
    lode_sched *s;
    cr_assert_eq(lode_sched_new(g_m, g_t, 512, 128, on_event, NULL, &s, NULL), LODE_OK);
    int32_t prompts[4][6] = {{5, 6, 7, 8, 9, 10}, {11, 12, 13, 14, 15, 16}, {5, 6, 7, 8, 20, 21}, {30, 31, 32, 33, 34, 35}};
    for (int i = 0; i < 4; i++) {
        lode_sched_req r = req((uint64_t)i + 1, prompts[i], 6, 10);
        lode_sched_submit(s, &r);
    }
    wait_done(4);
    for (int i = 0; i < 4; i++) {
        lode_sched_event *ev = g_done[i];
        int k = (int)ev->req - 1;
        int32_t ref[10];
        greedy(prompts[k], 6, 10, ref);
        cr_assert_str_eq(ev->reason, "length");
        cr_assert_eq(ev->n_generated, 10);
        cr_assert(memcmp(ev->tokens, ref, sizeof ref) == 0, "request %d: batched tokens differ from the plain loop", k);
    }
    /* Prefix cache: a prompt sharing 4 tokens with a finished one reuses them. */
    int32_t p5[6] = {5, 6, 7, 8, 40, 41};
    lode_sched_req r = req(9, p5, 6, 2);
    lode_sched_submit(s, &r);
    wait_done(5);
    cr_assert_eq(g_done[4]->n_cached, 4);
    /* Cancellation: a long request cancelled ends with "cancelled". */
    lode_sched_req lr = req(10, prompts[3], 6, 400);
    lode_sched_submit(s, &lr);
    lode_sched_cancel(s, 10);
    wait_done(6);
    cr_assert_str_eq(g_done[5]->reason, "cancelled");
    cr_assert_lt(g_done[5]->n_generated, 400);
    cr_assert_gt(g_n_partial, 0, "streaming sends partial text");
    lode_sched_free(s);
    cr_assert_eq(g_n_done, 6, "exactly one DONE per request");
}
