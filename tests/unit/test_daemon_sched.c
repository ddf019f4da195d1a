/*
 * test_daemon_sched.c — the daemon's continuous-batching scheduler
 * (daemon/sched.c) on a tiny random model, without sockets: batching is
 * exact (concurrent requests get the tokens each gets alone), cancellation
 * stops compute (counted in tokens computed), a shared prefix is computed
 * once, deadlines, requests that can never fit, and every submitted request
 * ending with exactly one DONE event, also when the scheduler is freed with
 * work pending. The oracle for exactness is the sequential run.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lode_gen.h"
#include "unit_models.h"
#include "lode_sched.h"

#define MAXH 64

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n_done[MAXH];  /* DONE events per handle */
    int n_partial[MAXH];
    char reason[MAXH][16];
    int32_t toks[MAXH][64];
    int64_t n_toks[MAXH], n_cached[MAXH];
    int done_order[MAXH], n_finished; /* 1-based position of each DONE */
} sink;

static lode_model *g_m;
static lode_tok *g_tok;
static char g_path[128];
static sink g_sink;

static void on_event(lode_sched_event *ev, void *ud) {
    sink *k = ud;
    pthread_mutex_lock(&k->mu);
    cr_assert_lt(ev->req, MAXH);
    if (ev->kind == LODE_EV_PARTIAL) {
        k->n_partial[ev->req]++;
    } else {
        k->n_done[ev->req]++;
        k->done_order[ev->req] = ++k->n_finished;
        snprintf(k->reason[ev->req], sizeof k->reason[0], "%s", ev->reason);
        int64_t n = ev->n_generated < 64 ? ev->n_generated : 64;
        if (ev->tokens) memcpy(k->toks[ev->req], ev->tokens, (size_t)n * sizeof(int32_t));
        k->n_toks[ev->req] = ev->n_generated;
        k->n_cached[ev->req] = ev->n_cached;
    }
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    lode_free(ev->text);
    lode_free(ev->tokens);
    lode_free(ev);
}

static void setup(void) {
    lode_test_gen(g_path, sizeof g_path, "sched", "tiny-v2lite", LODE_TYPE_F32, false, "deepseek-llm");
    lode_error err = {0};
    lode_model_params mp = lode_model_default_params();
    mp.n_threads = 2;
    cr_assert_eq(lode_model_load(g_path, &mp, &g_m, &err), LODE_OK, "%s", err.text);
    cr_assert_eq(lode_tok_load(g_path, &g_tok, &err), LODE_OK, "%s", err.text);
    memset(&g_sink, 0, sizeof g_sink);
    pthread_mutex_init(&g_sink.mu, NULL);
    pthread_cond_init(&g_sink.cv, NULL);
}

static void teardown(void) {
    lode_tok_free(g_tok);
    lode_model_free(g_m);
    unlink(g_path);
}

static lode_sched *sched_new(int64_t cells, int64_t cache) {
    lode_sched *s;
    lode_error err = {0};
    cr_assert_eq(lode_sched_new(g_m, g_tok, cells, cache, on_event, &g_sink, &s, &err), LODE_OK, "%s", err.text);
    return s;
}

/* Deterministic prompt ids inside the vocabulary (avoiding ids < 8, which
 * hold the special tokens of the synthetic vocabulary). */
static void submit(lode_sched *s, uint64_t h, uint64_t client, int seed, size_t n, int64_t max_tokens, bool stream) {
    lode_sched_req r = {0};
    r.handle = h;
    r.client = client;
    r.n_prompt = n;
    r.prompt = lode_xmalloc(n * sizeof(int32_t));
    int64_t V = lode_model_config(g_m)->n_vocab;
    for (size_t i = 0; i < n; i++) r.prompt[i] = (int32_t)(8 + (uint32_t)(seed * 7919 + (int)i * 104729) % (uint32_t)(V - 8));
    r.max_tokens = max_tokens;
    r.sp = lode_sampler_default_params();
    r.sp.temp = 0;
    r.stream = stream;
    r.ignore_eos = true;
    lode_sched_submit(s, &r);
}

static void wait_done(uint64_t h) {
    pthread_mutex_lock(&g_sink.mu);
    while (!g_sink.n_done[h]) pthread_cond_wait(&g_sink.cv, &g_sink.mu);
    pthread_mutex_unlock(&g_sink.mu);
}

static void wait_partials(uint64_t h, int n) {
    pthread_mutex_lock(&g_sink.mu);
    while (g_sink.n_partial[h] < n && !g_sink.n_done[h]) pthread_cond_wait(&g_sink.cv, &g_sink.mu);
    pthread_mutex_unlock(&g_sink.mu);
}

static int64_t computed(lode_sched *s) {
    lode_sched_stats st;
    lode_sched_stats_get(s, &st);
    return st.tokens_computed;
}

Test(daemon_sched, concurrent_equals_sequential, .init = setup, .fini = teardown, .timeout = 300) {
    lode_sched *s = sched_new(4096, 2048);
    enum { K = 8 };
    /* Alone, one after the other. */
    for (int i = 0; i < K; i++) {
        submit(s, 1 + i, 1, i, 5 + (size_t)i * 37, 12, i % 2);
        wait_done(1 + i);
    }
    /* The same prompts all at once from several clients: decode steps
     * share batches, prefill chunks interleave with decodes, and cached
     * prefixes are reused. A third round on a fresh scheduler with no idle
     * cache covers the uncached path. */
    for (int i = 0; i < K; i++) submit(s, 1 + K + i, (uint64_t)i % 3, i, 5 + (size_t)i * 37, 12, i % 2);
    for (int i = 0; i < K; i++) wait_done(1 + K + i);
    lode_sched_free(s);
    s = sched_new(4096, 0);
    for (int i = 0; i < K; i++) submit(s, 1 + 2 * K + i, (uint64_t)i, i, 5 + (size_t)i * 37, 12, false);
    for (int i = 0; i < K; i++) wait_done(1 + 2 * K + i);
    for (int i = 0; i < K; i++) {
        for (int round = 1; round <= 2; round++) {
            uint64_t h = 1 + (uint64_t)round * K + (uint64_t)i;
            cr_assert_str_eq(g_sink.reason[h], "length");
            cr_assert_eq(g_sink.n_toks[h], 12);
            cr_assert_eq(memcmp(g_sink.toks[1 + i], g_sink.toks[h], 12 * sizeof(int32_t)), 0,
                         "request %d round %d differs from its sequential run", i, round);
            cr_assert_eq(g_sink.n_done[h], 1, "exactly one DONE");
        }
    }
    lode_sched_free(s);
}

Test(daemon_sched, cancel_stops_compute, .init = setup, .fini = teardown, .timeout = 300) {
    lode_sched *s = sched_new(8192, 1024);
    submit(s, 1, 1, 1, 16, 4000, true);
    wait_partials(1, 3);
    lode_sched_cancel(s, 1);
    wait_done(1);
    cr_assert_str_eq(g_sink.reason[1], "cancelled");
    int64_t at_cancel = computed(s);
    cr_assert_lt(g_sink.n_toks[1], 4000);
    usleep(100 * 1000);
    cr_assert_eq(computed(s), at_cancel, "no compute after the cancellation");
    /* A request cancelled before it starts computes nothing. */
    submit(s, 2, 1, 2, 3000, 100, false);
    lode_sched_cancel(s, 2);
    wait_done(2);
    cr_assert_str_eq(g_sink.reason[2], "cancelled");
    cr_assert_leq(computed(s) - at_cancel, 256, "at most one prefill chunk after a cancel");
    lode_sched_free(s);
}

Test(daemon_sched, shared_prefix_is_computed_once, .init = setup, .fini = teardown, .timeout = 300) {
    lode_sched *s = sched_new(4096, 4096);
    submit(s, 1, 1, 42, 600, 1, false);
    wait_done(1);
    int64_t c1 = computed(s);
    cr_assert_eq(c1, 600, "prompt only: the sampled token is never fed");
    /* The same 599 tokens, a different last one: reuses 599. */
    lode_sched_req r = {0};
    r.handle = 2;
    r.n_prompt = 600;
    r.prompt = lode_xmalloc(600 * sizeof(int32_t));
    int64_t V = lode_model_config(g_m)->n_vocab;
    for (size_t i = 0; i < 600; i++) r.prompt[i] = (int32_t)(8 + (uint32_t)(42 * 7919 + (int)i * 104729) % (uint32_t)(V - 8));
    r.prompt[599] = r.prompt[599] == 9 ? 10 : 9;
    r.max_tokens = 1;
    r.sp = lode_sampler_default_params();
    r.sp.temp = 0;
    lode_sched_submit(s, &r);
    wait_done(2);
    cr_assert_eq(g_sink.n_cached[2], 599);
    cr_assert_eq(computed(s) - c1, 1, "only the changed token is computed");
    /* An identical prompt still evaluates its last token (for its logits). */
    submit(s, 3, 2, 42, 600, 1, false);
    wait_done(3);
    cr_assert_eq(g_sink.n_cached[3], 599);
    cr_assert_eq(g_sink.toks[3][0], g_sink.toks[1][0], "a cached prefix gives the same tokens");
    lode_sched_free(s);
}

Test(daemon_sched, deadlines_and_impossible_requests, .init = setup, .fini = teardown, .timeout = 300) {
    lode_sched *s = sched_new(512, 256);
    lode_sched_req r = {0};
    r.handle = 1;
    r.n_prompt = 4;
    r.prompt = lode_xcalloc(4, sizeof(int32_t));
    r.prompt[0] = 20;
    r.max_tokens = 400;
    r.sp = lode_sampler_default_params();
    r.ignore_eos = true;
    r.deadline = lode_time_s() + 0.05;
    lode_sched_submit(s, &r);
    wait_done(1);
    cr_assert(!strcmp(g_sink.reason[1], "deadline") || g_sink.n_toks[1] == 400, "%s", g_sink.reason[1]);
    submit(s, 2, 1, 3, 600, 10, false); /* 610 cells > 512 */
    wait_done(2);
    cr_assert_str_eq(g_sink.reason[2], "error");
    submit(s, 3, 1, 3, 20, 5, false); /* still serving */
    wait_done(3);
    cr_assert_str_eq(g_sink.reason[3], "length");
    lode_sched_free(s);
}

Test(daemon_sched, free_answers_everything, .init = setup, .fini = teardown, .timeout = 300) {
    lode_sched *s = sched_new(8192, 1024);
    for (int i = 1; i <= 20; i++) submit(s, (uint64_t)i, (uint64_t)i % 4, i, 50, 2000, i % 2);
    /* Free while work is in flight: wait until the first batch is computed. */
    for (;;) {
        lode_sched_stats st;
        lode_sched_stats_get(s, &st);
        if (st.tokens_computed > 0) break;
        usleep(1000);
    }
    lode_sched_free(s);
    for (int i = 1; i <= 20; i++) cr_assert_eq(g_sink.n_done[i], 1, "request %d", i);
}

Test(daemon_sched, waits_for_room_instead_of_failing, .init = setup, .fini = teardown, .timeout = 300) {
    /* 600 cells; each request needs 300 + 200: the second one waits until
     * the first ends (then evicts its cached rows) and both succeed. */
    lode_sched *s = sched_new(600, 600);
    submit(s, 1, 1, 11, 300, 200, false);
    submit(s, 2, 2, 12, 300, 200, false);
    submit(s, 3, 3, 13, 300, 200, false);
    for (int h = 1; h <= 3; h++) {
        wait_done((uint64_t)h);
        cr_assert_str_eq(g_sink.reason[h], "length", "request %d", h);
        cr_assert_eq(g_sink.n_toks[h], 200);
    }
    lode_sched_stats st;
    lode_sched_stats_get(s, &st);
    cr_assert_eq(st.tokens_computed, 3 * (300 + 199), "nothing failed or was computed twice");
    lode_sched_free(s);
}

Test(daemon_sched, short_request_is_not_stuck_behind_a_long_prefill, .init = setup, .fini = teardown, .timeout = 300) {
    /* Client 1 sends a long prompt, client 2 a short one just after: prefill
     * chunks go round robin across clients, so the short one finishes first
     * (FIFO across clients would make it wait for the whole long prefill). */
    lode_sched *s = sched_new(8192, 0);
    submit(s, 1, 1, 1, 2000, 1, false);
    submit(s, 2, 2, 2, 10, 1, false);
    wait_done(1);
    wait_done(2);
    cr_assert_lt(g_sink.done_order[2], g_sink.done_order[1]);
    lode_sched_free(s);
}
