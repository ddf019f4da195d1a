/*
 * lode_sched.h — the daemon's compute side: one thread owns the model and the KV
 * cache and runs a continuous-batching loop. Each step evaluates, in one
 * lode_model_eval call, the next token of every generating request plus at
 * most one prefill chunk (newest request first within a client, round robin
 * across clients, chunks sized to ~1 s), so a new interactive request waits
 * at most one chunk and concurrent decodes share one pass over the weights.
 * The rows a request evaluated (prompt, or its computed part when cancelled,
 * plus fed-back generated tokens) stay in a radix-tree prefix cache (LRU
 * leaves under a token budget): a request whose tokens start with a cached
 * prefix forks it and computes only the rest. Requests that do not fit the
 * KV cache yet are queued; cancelling every request of the batch being
 * evaluated stops it between layers.
 *
 * Threading: lode_sched_submit/cancel may be called from any thread; events
 * are delivered through the `notify` callback, which is called on the
 * compute thread and must only queue (the server wakes its loop with
 * uv_async_send).
 */
#ifndef LODE_SCHED_H
#define LODE_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "lode_engine.h"
#include "lode_sampler.h"
#include "lode_tok.h"

typedef enum {
    LODE_EV_PARTIAL = 0, /* text: newly completed UTF-8 output */
    LODE_EV_DONE = 1     /* final: reason, full text, counts */
} lode_ev_kind;

typedef struct lode_sched_event {
    lode_ev_kind kind;
    uint64_t req;         /* request handle given at submit */
    char *text;           /* owned by the receiver (lode_free) */
    size_t text_len;
    const char *reason;   /* DONE: "stop", "length", "eos", "cancelled", "deadline", "error" */
    char error[256];
    int64_t n_prompt, n_cached, n_generated;
    int32_t *tokens;      /* DONE: generated ids (owned by receiver) */
} lode_sched_event;

typedef void (*lode_sched_notify)(lode_sched_event *ev, void *ud); /* takes ownership of ev */

typedef struct lode_sched_req {
    uint64_t handle;      /* caller's id, echoed in events */
    uint64_t client;      /* connection: newest-first ordering is per client */
    int32_t *prompt;      /* owned by the scheduler after submit */
    size_t n_prompt;
    int64_t max_tokens;
    lode_sampler_params sp;
    char **stops;         /* owned after submit */
    size_t n_stops;
    bool stream;
    bool ignore_eos;         /* keep generating past end-of-generation tokens (benchmarks) */
    double prefill_deadline; /* absolute lode_time_s(); 0 = none */
    double deadline;         /* for the whole request */
} lode_sched_req;

typedef struct lode_sched_stats {
    int64_t requests, done, cancelled, queued, active;
    int64_t cache_hits;   /* requests that reused a cached prefix */
    int64_t tokens_prompt, tokens_cached, tokens_generated, tokens_computed;
    int64_t cache_entries, cache_cells, kv_cells, kv_free;
    double busy_s, gen_s;
} lode_sched_stats;

typedef struct lode_sched lode_sched;

/* kv_cells: total cache size in tokens; cache_cells: budget for idle cached
 * prefixes. Never fails except OOM (err). */
lode_status lode_sched_new(lode_model *m, const lode_tok *tok, int64_t kv_cells, int64_t cache_cells,
                           lode_sched_notify notify, void *ud, lode_sched **out, lode_error *err);
void lode_sched_free(lode_sched *s); /* stops the thread; pending requests get DONE/cancelled */
void lode_sched_submit(lode_sched *s, lode_sched_req *r); /* takes ownership of r's arrays */
void lode_sched_cancel(lode_sched *s, uint64_t handle);
void lode_sched_stats_get(lode_sched *s, lode_sched_stats *st);

#endif
