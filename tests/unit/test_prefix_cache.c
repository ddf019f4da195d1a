/*
 * test_prefix_cache.c — the daemon's radix-tree prefix cache over KV
 * sequences: longest-prefix forks (also inside an edge), edge splits, cells
 * shared not copied, LRU eviction under the token budget, make_room.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <unistd.h>

#include "lode_engine.h"
#include "lode_gen.h"
#include "unit_models.h"
#include "prefix_cache.h"

static lode_model *g_m;
static char g_path[128];

static void setup(void) {
    lode_test_gen(g_path, sizeof g_path, "pc", "tiny-llama", LODE_TYPE_F32, false, "deepseek-coder");
    lode_model_params mp = lode_model_default_params();
    mp.n_threads = 1;
    cr_assert_eq(lode_model_load(g_path, &mp, &g_m, NULL), LODE_OK);
}
static void teardown(void) {
    lode_model_free(g_m);
    unlink(g_path);
}

/* A sequence holding toks (evaluated for real). */
static int32_t seq_of(lode_kv *kv, const int32_t *toks, int64_t n) {
    int32_t s = lode_kv_seq_new(kv);
    lode_batch b = {n, toks, NULL, s, NULL};
    static float lg[512 * 64];
    cr_assert_eq(lode_model_eval(g_m, kv, &b, lg, NULL), LODE_OK);
    return s;
}

Test(prefix_cache, fork_split_share_evict, .init = setup, .fini = teardown) {
    lode_kv *kv;
    cr_assert_eq(lode_kv_new(g_m, 64, &kv, NULL), LODE_OK);
    lode_pcache *pc = lode_pcache_new(kv, 20);
    int32_t a[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, b[8] = {1, 2, 3, 4, 50, 60, 70, 80};
    lode_pcache_insert(pc, a, 10, seq_of(kv, a, 10));
    cr_assert_eq(lode_pcache_tokens(pc), 10);
    cr_assert_eq(lode_kv_n_free(kv), 54);
    int64_t r;
    int32_t f = lode_pcache_fork(pc, b, 8, 7, &r);
    cr_assert_eq(r, 4, "match ends inside the edge");
    cr_assert_eq(lode_kv_seq_len(kv, f), 4);
    cr_assert_eq(lode_kv_n_free(kv), 54, "a fork shares cells");
    /* Extend the fork with b's tail and cache it: the edge splits at 4. */
    lode_batch bt = {4, b + 4, NULL, f, NULL};
    static float lg[512 * 8];
    cr_assert_eq(lode_model_eval(g_m, kv, &bt, lg, NULL), LODE_OK);
    lode_pcache_insert(pc, b, 8, f);
    cr_assert_eq(lode_pcache_tokens(pc), 14, "10 + 4 new tokens, the shared 4 stored once");
    cr_assert_eq(lode_pcache_leaves(pc), 2);
    cr_assert_eq(lode_kv_n_free(kv), 50, "only b's 4 new cells are used");
    f = lode_pcache_fork(pc, a, 10, 9, &r);
    cr_assert_eq(r, 9, "limit respected");
    lode_kv_seq_free(kv, f);
    /* Inserting something already covered keeps the tree as is. */
    int32_t a5[5] = {1, 2, 3, 4, 5};
    int32_t x = lode_pcache_fork(pc, a5, 5, 5, &r);
    lode_pcache_insert(pc, a5, 5, lode_kv_seq_fork(kv, x, 5));
    lode_kv_seq_free(kv, x);
    cr_assert_eq(lode_pcache_tokens(pc), 14);
    /* Budget 20: a 10-token unrelated prompt evicts the least recently used leaf. */
    int32_t c[10] = {100, 101, 102, 103, 104, 105, 106, 107, 108, 109};
    lode_pcache_insert(pc, c, 10, seq_of(kv, c, 10));
    cr_assert_leq(lode_pcache_tokens(pc), 20);
    cr_assert(lode_pcache_make_room(pc, 64), "everything can be evicted");
    cr_assert_eq(lode_pcache_leaves(pc), 0);
    lode_pcache_free(pc);
    lode_kv_free(kv);
}
