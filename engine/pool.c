/*
 * pool.c — a fixed-size worker pool for data-parallel loops.
 *
 * Work is handed out by an atomic counter so uneven items balance; workers
 * sleep on a condition variable between runs (a resident daemon must not
 * burn CPU while idle) after a short spin, which keeps the per-run wake-up
 * cost low in the token loop. The caller participates as worker 0.
 */
#include "lode_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "lode_base.h"

struct lode_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    uint64_t generation; /* bumped per run */
    int stop;
    int running;         /* workers still busy in this run */
    lode_pool_fn fn;
    void *ctx;
    int64_t n_items;
    atomic_int_fast64_t next;
    atomic_int active;   /* set while a run is executing (nesting check) */
};

static _Thread_local int tl_index = 0;

int lode_pool_thread_index(void) { return tl_index; }

int lode_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c > 0) return c;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void drain(lode_pool *p) {
    for (;;) {
        int64_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n_items) break;
        p->fn(p->ctx, i);
    }
}

typedef struct { lode_pool *p; int index; } worker_arg;

static void *worker_main(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    lode_free(arg);
    lode_pool *p = wa.p;
    tl_index = wa.index;
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->cv_start, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        drain(p);
        pthread_mutex_lock(&p->mu);
        if (--p->running == 0) pthread_cond_signal(&p->cv_done);
        pthread_mutex_unlock(&p->mu);
    }
}

lode_pool *lode_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = lode_cpu_count();
    if (n_threads > 256) n_threads = 256;
    lode_pool *p = lode_xcalloc(1, sizeof *p);
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_start, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->threads = lode_xcalloc((size_t)n_threads, sizeof(pthread_t));
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = lode_xmalloc(sizeof *wa);
        wa->p = p;
        wa->index = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            lode_free(wa);
            p->n = i; /* run with fewer threads rather than fail */
            break;
        }
    }
    return p;
}

void lode_pool_free(lode_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_start);
    pthread_cond_destroy(&p->cv_done);
    lode_free(p->threads);
    lode_free(p);
}

int lode_pool_size(const lode_pool *p) { return p->n; }

void lode_pool_run(lode_pool *p, int64_t n, lode_pool_fn fn, void *ctx) {
    if (n <= 0) return;
    /* Inline when single-threaded, trivially small, or nested. */
    if (p->n == 1 || n == 1 || atomic_load(&p->active)) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    atomic_store(&p->active, 1);
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_items = n;
    atomic_store(&p->next, 0);
    p->running = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);
    int saved = tl_index;
    tl_index = 0;
    drain(p);
    tl_index = saved;
    pthread_mutex_lock(&p->mu);
    while (p->running > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    atomic_store(&p->active, 0);
}
