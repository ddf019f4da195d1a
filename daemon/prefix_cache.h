/*
 * prefix_cache.h — a radix tree of token prefixes over the engine's KV
 * sequences. Each node covers the path from the root to its end and holds a
 * KV sequence with exactly those tokens; nodes share their cells with their
 * ancestors and descendants by reference count (lode_kv_seq_fork), so the
 * tree stores every cached token once. Lookups fork the deepest match;
 * eviction removes least-recently-used leaves. Compute thread only.
 */
#ifndef LODE_PREFIX_CACHE_H
#define LODE_PREFIX_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "lode_engine.h"

typedef struct lode_pcache lode_pcache;

lode_pcache *lode_pcache_new(lode_kv *kv, int64_t budget_tokens);
void lode_pcache_free(lode_pcache *pc);
/* A new sequence holding the longest cached prefix of toks[0..n), at most
 * `limit` tokens (*reused = its length; 0 → a fresh empty sequence). */
int32_t lode_pcache_fork(lode_pcache *pc, const int32_t *toks, int64_t n, int64_t limit, int64_t *reused);
/* Cache toks[0..n) whose KV is sequence `seq` (ownership passes to the cache). */
void lode_pcache_insert(lode_pcache *pc, const int32_t *toks, int64_t n, int32_t seq);
/* Evict LRU leaves until `cells` KV cells are free; false if impossible. */
bool lode_pcache_make_room(lode_pcache *pc, int64_t cells);
int64_t lode_pcache_tokens(const lode_pcache *pc); /* distinct cached tokens */
int64_t lode_pcache_leaves(const lode_pcache *pc);

#endif
