/*
 * test_ts_alloc.c — the tree-sitter runtime's allocator (lsp/ts_alloc.c):
 * sizes, alignment and reuse, realloc/calloc contents, frees from other
 * threads (the remote stack), heaps handed on when a thread exits, a
 * concurrent producer/consumer stress, and whole trees parsed on one
 * thread and deleted on another. In ASan builds the allocator is plain
 * malloc: the same tests run, without the pool-specific checks.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lode_syntax.h"
#include "lode_ts_alloc.h"

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed * 131u + i * 7u);
}

static bool filled(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed * 131u + i * 7u)) return false;
    return true;
}

Test(ts_alloc, sizes_aligned_and_reused) {
    bool pooled = lode_ts_alloc_pooled();
    void *p[320];
    for (size_t n = 0; n < 320; n++) {
        p[n] = lode_ts_malloc(n);
        cr_assert(p[n], "size %zu", n);
        cr_assert_eq((uintptr_t)p[n] % 16, 0, "size %zu: 16-byte aligned", n);
        fill(p[n], n, (unsigned)n);
        bool small = n <= LODE_TS_ALLOC_MAX_SMALL;
        cr_assert_eq(lode_ts_alloc_owns(p[n]), pooled && small, "size %zu", n);
        if (pooled && small) cr_assert_geq(lode_ts_alloc_usable(p[n]), n ? n : 1);
        else cr_assert_eq(lode_ts_alloc_usable(p[n]), 0);
    }
    for (size_t n = 0; n < 320; n++) {
        cr_assert(filled(p[n], n, (unsigned)n), "size %zu: contents kept", n);
        for (size_t k = 0; k < n; k++) cr_assert_neq(p[k], p[n]);
    }
    /* The last block freed in a class is the next one handed out. */
    void *a = p[100];
    lode_ts_free(a);
    if (pooled) cr_assert_eq(lode_ts_malloc(97), a, "same class (97..112 bytes): reused");
    else lode_ts_free(lode_ts_malloc(97));
    for (size_t n = 0; n < 320; n++)
        if (n != 100) lode_ts_free(p[n]);
    lode_ts_free(NULL);
    if (pooled) {
        lode_ts_alloc_stats st;
        lode_ts_alloc_get_stats(&st);
        cr_assert_geq(st.pages, 1);
        cr_assert_eq(st.page_bytes, st.pages * 65536);
        cr_assert_eq(st.heaps, 1, "one thread, one heap");
    }
}

Test(ts_alloc, realloc_keeps_contents_across_classes) {
    unsigned char *p = lode_ts_realloc(NULL, 1);
    fill(p, 1, 9);
    size_t n = 1;
    /* Grow by small steps through every class and on into malloc, then shrink. */
    while (n < 1200) {
        size_t m = n + 1 + n / 5;
        p = lode_ts_realloc(p, m);
        cr_assert(filled(p, n, 9), "%zu -> %zu", n, m);
        fill(p, m, 9);
        n = m;
    }
    for (size_t m = 600; m >= 8; m /= 3) {
        p = lode_ts_realloc(p, m);
        cr_assert(filled(p, m, 9), "shrink to %zu", m);
    }
    lode_ts_free(p);
    /* A block from malloc (over the classes) shrunk below them stays valid. */
    unsigned char *q = lode_ts_malloc(4000);
    fill(q, 4000, 3);
    q = lode_ts_realloc(q, 40);
    cr_assert(filled(q, 40, 3));
    lode_ts_free(q);
}

Test(ts_alloc, calloc_zeroes_reused_blocks) {
    for (int round = 0; round < 3; round++) {
        unsigned char *d = lode_ts_malloc(72);
        memset(d, 0xab, 72);
        lode_ts_free(d);
        unsigned char *z = lode_ts_calloc(9, 8);
        for (int i = 0; i < 72; i++) cr_assert_eq(z[i], 0);
        lode_ts_free(z);
    }
    unsigned char *big = lode_ts_calloc(1000, 3);
    for (int i = 0; i < 3000; i++) cr_assert_eq(big[i], 0);
    lode_ts_free(big);
}

Test(ts_alloc, calloc_overflow_aborts, .signal = SIGABRT) {
    lode_ts_calloc(SIZE_MAX / 2, 4);
}

/* ---- threads ----------------------------------------------------------------- */
enum { N_BLOCKS = 5000 };
static void *g_blocks[N_BLOCKS];

static void *alloc_blocks(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (unsigned i = 0; i < N_BLOCKS; i++) {
        size_t n = 8 + (i * 37u + seed) % 240;
        g_blocks[i] = lode_ts_malloc(n);
        fill(g_blocks[i], n, i + seed);
    }
    return NULL;
}

static void free_blocks(unsigned seed) {
    for (unsigned i = 0; i < N_BLOCKS; i++) {
        size_t n = 8 + (i * 37u + seed) % 240;
        cr_assert(filled(g_blocks[i], n, i + seed), "block %u", i);
        lode_ts_free(g_blocks[i]);
    }
}

static void *free_blocks_thread(void *arg) {
    free_blocks((unsigned)(uintptr_t)arg);
    return NULL;
}

Test(ts_alloc, frees_from_other_threads_go_home) {
    pthread_t t;
    /* Allocated on a thread that exits, freed here: the remote stack of a
     * heap that no thread owns at that moment. */
    cr_assert_eq(pthread_create(&t, NULL, alloc_blocks, (void *)1), 0);
    pthread_join(t, NULL);
    void *first = g_blocks[0];
    free_blocks(1);
    /* The next thread adopts that heap: its blocks come back, no new heap. */
    cr_assert_eq(pthread_create(&t, NULL, alloc_blocks, (void *)1), 0);
    pthread_join(t, NULL);
    if (lode_ts_alloc_pooled()) {
        bool reused = false;
        for (unsigned i = 0; i < N_BLOCKS; i++) reused |= g_blocks[i] == first;
        cr_assert(reused, "the exited thread's blocks are handed out again");
        lode_ts_alloc_stats st;
        lode_ts_alloc_get_stats(&st);
        cr_assert_eq(st.heaps, 1, "the second thread adopted the first one's heap");
    }
    /* Allocated here, freed on another thread. */
    free_blocks(1);
    alloc_blocks((void *)2);
    cr_assert_eq(pthread_create(&t, NULL, free_blocks_thread, (void *)2), 0);
    pthread_join(t, NULL);
    alloc_blocks((void *)3);
    free_blocks(3);
}

/* Producers allocate and hand blocks to consumers through a ring; consumers
 * check and free them while the producers keep allocating and freeing their
 * own: local and remote frees race on the same heaps. */
enum { RING = 1024, N_PROD = 2, N_CONS = 2, PER_PROD = 200000 };
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *slot[RING];
    size_t size[RING];
    unsigned seed[RING];
    size_t head, tail;
    int producers_left;
} g_ring = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *producer(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    void *own[16] = {0};
    for (unsigned i = 0; i < PER_PROD; i++) {
        unsigned seed = id * PER_PROD + i;
        size_t n = 1 + (seed * 2654435761u >> 7) % 300;
        void *p = lode_ts_malloc(n);
        fill(p, n, seed);
        if (i % 3 == 0) { /* keep a few, free them locally later */
            lode_ts_free(own[i % 16]);
            own[i % 16] = p;
            continue;
        }
        pthread_mutex_lock(&g_ring.mu);
        while (g_ring.head - g_ring.tail == RING) pthread_cond_wait(&g_ring.cv, &g_ring.mu);
        size_t k = g_ring.head++ % RING;
        g_ring.slot[k] = p, g_ring.size[k] = n, g_ring.seed[k] = seed;
        pthread_cond_broadcast(&g_ring.cv);
        pthread_mutex_unlock(&g_ring.mu);
    }
    for (int k = 0; k < 16; k++) lode_ts_free(own[k]);
    pthread_mutex_lock(&g_ring.mu);
    g_ring.producers_left--;
    pthread_cond_broadcast(&g_ring.cv);
    pthread_mutex_unlock(&g_ring.mu);
    return NULL;
}

static void *consumer(void *arg) {
    size_t *bad = arg;
    for (;;) {
        pthread_mutex_lock(&g_ring.mu);
        while (g_ring.head == g_ring.tail && g_ring.producers_left) pthread_cond_wait(&g_ring.cv, &g_ring.mu);
        if (g_ring.head == g_ring.tail) {
            pthread_mutex_unlock(&g_ring.mu);
            return NULL;
        }
        size_t k = g_ring.tail++ % RING;
        void *p = g_ring.slot[k];
        size_t n = g_ring.size[k];
        unsigned seed = g_ring.seed[k];
        pthread_cond_broadcast(&g_ring.cv);
        pthread_mutex_unlock(&g_ring.mu);
        if (!filled(p, n, seed)) (*bad)++;
        /* A consumer also allocates, so blocks of the producers' heaps and
         * its own meet in its free lists only through remote stacks. */
        void *q = lode_ts_malloc(n);
        fill(q, n, seed);
        lode_ts_free(p);
        if (!filled(q, n, seed)) (*bad)++;
        lode_ts_free(q);
    }
}

Test(ts_alloc, concurrent_producers_and_consumers, .timeout = 120) {
    pthread_t pt[N_PROD], ct[N_CONS];
    size_t bad[N_CONS] = {0};
    g_ring.producers_left = N_PROD;
    for (int i = 0; i < N_CONS; i++) cr_assert_eq(pthread_create(&ct[i], NULL, consumer, &bad[i]), 0);
    for (int i = 0; i < N_PROD; i++) cr_assert_eq(pthread_create(&pt[i], NULL, producer, (void *)(uintptr_t)i), 0);
    for (int i = 0; i < N_PROD; i++) pthread_join(pt[i], NULL);
    for (int i = 0; i < N_CONS; i++) pthread_join(ct[i], NULL);
    for (int i = 0; i < N_CONS; i++) cr_assert_eq(bad[i], 0, "consumer %d saw %zu corrupted blocks", i, bad[i]);
    if (lode_ts_alloc_pooled()) {
        lode_ts_alloc_stats st;
        lode_ts_alloc_get_stats(&st);
        cr_assert_leq(st.heaps, N_PROD + N_CONS, "one heap per thread at most");
    }
}

/* ---- whole trees ---------------------------------------------------------------- */
static const char k_src[] =
    "#include <stdio.h>\n"
    "struct point { int x, y; };\n"
    "static int add(struct point p) { return p.x + p.y; }\n"
    "int main(void) { struct point p = {1, 2}; for (int i = 0; i < 3; i++) printf(\"%d\\n\", add(p)); }\n";

typedef struct parse_job {
    TSTree *tree;   /* made on the worker, or deleted there */
    char *sexp;     /* the worker's S-expression (lode_ts_free) */
} parse_job;

static void *parse_on_thread(void *arg) {
    parse_job *j = arg;
    const lode_lang *c = lode_lang_for_id("c");
    if (j->tree) {
        ts_tree_delete(j->tree); /* a tree from the main thread */
        j->tree = NULL;
    }
    j->tree = lode_syntax_parse(c, k_src, sizeof k_src - 1);
    j->sexp = ts_node_string(ts_tree_root_node(j->tree));
    return NULL;
}

Test(ts_alloc, trees_parsed_and_deleted_on_different_threads) {
    const lode_lang *c = lode_lang_for_id("c");
    cr_assert(c);
    TSTree *ref = lode_syntax_parse(c, k_src, sizeof k_src - 1);
    char *want = ts_node_string(ts_tree_root_node(ref));
    for (int round = 0; round < 20; round++) {
        parse_job j = {.tree = ts_tree_copy(ref)};
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, parse_on_thread, &j), 0);
        pthread_join(t, NULL);
        cr_assert_str_eq(j.sexp, want, "round %d", round);
        lode_ts_free(j.sexp);
        TSTree *mine = lode_syntax_parse(c, k_src, sizeof k_src - 1); /* reuses what came back */
        ts_tree_delete(j.tree);                                      /* the worker's tree, freed here */
        char *s = ts_node_string(ts_tree_root_node(mine));
        cr_assert_str_eq(s, want);
        lode_ts_free(s);
        ts_tree_delete(mine);
    }
    lode_ts_free(want);
    ts_tree_delete(ref);
}
