/*
 * lode_pool.h — the engine's one thread pool. lode_pool_run(pool, n, fn, ctx)
 * calls fn(ctx, i) for i in [0, n) spread over the pool's threads (the
 * calling thread works too) and returns when all calls are done. Not
 * reentrant: one run at a time per pool (nested runs execute inline).
 */
#ifndef LODE_POOL_H
#define LODE_POOL_H

#include <stdint.h>

typedef struct lode_pool lode_pool;
typedef void (*lode_pool_fn)(void *ctx, int64_t i);

/* n_threads <= 0: available cores. Never NULL (aborts on OOM). */
lode_pool *lode_pool_new(int n_threads);
void lode_pool_free(lode_pool *p);
int lode_pool_size(const lode_pool *p);
void lode_pool_run(lode_pool *p, int64_t n, lode_pool_fn fn, void *ctx);
/* Index of the calling worker in [0, size), valid inside fn. */
int lode_pool_thread_index(void);
/* Number of CPUs this process may use. */
int lode_cpu_count(void);

#endif
