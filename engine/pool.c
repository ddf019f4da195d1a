/*
 * pool.c — a fixed-size worker pool for data-parallel loops.
 *
 * Work is handed out by an atomic counter so uneven items balance; workers
 * sleep on a condition variable between runs (a resident daemon must not
 * burn CPU while idle) after a short spin (SPIN_NS_DEFAULT), which keeps the per-run
 * wake-up cost low in the token loop: a decoded token makes hundreds of runs
 * (every matmul, expert and attention step), and a futex wake-up costs
 * several microseconds each way. The caller also spins briefly for the last
 * workers before sleeping. Only runs that find a worker asleep pay for the
 * broadcast. The caller participates as worker 0.
 */
#include "lode_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long an idle worker (or the caller waiting for workers) spins before
 * sleeping: long enough to bridge the gaps between the runs of one token
 * (SPIN_NS_DEFAULT).
 * Past YIELD_NS the spinner yields the CPU between checks, so a machine
 * with more runnable threads than cores still runs the thread with work. */
#define SPIN_NS_DEFAULT 20000
#define YIELD_NS 10000
/* LODE_POOL_SPIN_US overrides SPIN_NS (0: sleep at once), read once. */
static uint64_t g_spin_ns = SPIN_NS_DEFAULT;
static pthread_once_t g_spin_once = PTHREAD_ONCE_INIT;
static void spin_init(void) {
    const char *e = getenv("LODE_POOL_SPIN_US");
    if (e && *e) {
        char *end;
        const long v = strtol(e, &end, 10);
        if (*end == 0 && v >= 0 && v <= 1000000) g_spin_ns = (uint64_t)v * 1000u;
    }
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One step of a bounded spin; false once the spin is over. */
static bool spin_step(int k, uint64_t t0) {
    if (g_spin_ns == 0) return false;
    CPU_RELAX();
    if ((k & 63) != 63) return true;
    const uint64_t dt = now_ns() - t0;
    if (dt > g_spin_ns) return false;
    if (dt > YIELD_NS) sched_yield();
    return true;
}

#include "lode_base.h"

struct lode_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    atomic_uint_fast64_t generation; /* bumped per run */
    atomic_int stop;
    atomic_int running;  /* workers still busy in this run */
    atomic_int sleepers; /* workers waiting (or about to wait) on cv_start */
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
        /* Spin for the next run, then sleep. */
        const uint64_t t0 = now_ns();
        for (int k = 0; atomic_load(&p->generation) == seen && !atomic_load(&p->stop); k++)
            if (!spin_step(k, t0)) break;
        if (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (!atomic_load(&p->stop) && atomic_load(&p->generation) == seen) pthread_cond_wait(&p->cv_start, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load(&p->generation);
        drain(p);
        if (atomic_fetch_sub(&p->running, 1) == 1) {
            /* Last one out: wake the caller if it went to sleep. */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

lode_pool *lode_pool_new(int n_threads) {
    pthread_once(&g_spin_once, spin_init);
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
    atomic_store(&p->stop, 1);
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
    p->fn = fn;
    p->ctx = ctx;
    p->n_items = n;
    atomic_store(&p->next, 0);
    atomic_store(&p->running, p->n - 1);
    /* Publish the run (seq_cst: the fields above are visible to a worker
     * that sees the new generation), then wake sleepers. A worker that
     * registered as a sleeper re-checks the generation under the mutex, so
     * taking the mutex here cannot miss it. */
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv_start);
        pthread_mutex_unlock(&p->mu);
    }
    int saved = tl_index;
    tl_index = 0;
    drain(p);
    tl_index = saved;
    const uint64_t t0 = now_ns();
    for (int k = 0; atomic_load(&p->running) > 0; k++)
        if (!spin_step(k, t0)) break;
    if (atomic_load(&p->running) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->running) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    atomic_store(&p->active, 0);
}
