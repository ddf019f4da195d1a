/*
 * sched.c — continuous batching over the engine (see lode_sched.h).
 *
 * Invariants: only the compute thread touches the model, the KV cache, the
 * active list and the prefix cache (prefix_cache.c, a radix tree); other
 * threads only append to `incoming` and set cancel marks under the mutex.
 * Every submitted request ends with exactly one DONE event.
 *
 * Admission: a request starts (gets a KV sequence) only when the free cells,
 * minus what the running requests may still append, hold its prompt and
 * max_tokens; idle cached prefixes are evicted LRU to make room, and a
 * request that does not fit yet waits (queued) instead of failing, unless it
 * could never fit. So a running request never meets a full cache.
 *
 * Cancellation: marks are applied between steps; in addition, when every
 * request in the batch being evaluated is cancelled, the engine's cancel
 * flag stops the evaluation between layers (the KV cache is left as it was),
 * so abandoned work stops within one layer, not one step.
 *
 * What stays cached: every row a request evaluated (its prompt, or the part
 * of it computed before a cancel, plus the generated tokens that were fed
 * back), so the next keystroke of an editor reuses the previous one's work
 * even when that one was abandoned mid-prefill.
 */
#include "lode_sched.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "lode_base.h"
#include "prefix_cache.h"

/* Prefill chunks: CHUNK tokens while the prefilling request is alone (the
 * most efficient: the engine's decompressed MLA form re-expands the whole
 * prefix once per chunk, so total prefill work grows as n^2 / chunk). While
 * other requests are active or waiting, chunks are sized so that one step
 * takes about STEP_TARGET_S, between CHUNK_MIN and CHUNK tokens: a
 * proportional controller on the last prefill step's measured time, which
 * follows both the machine's speed and the attention cost growing with
 * depth, so decodes and newcomers are not held up by long steps. */
#define CHUNK 256      /* most prefill tokens per step */
#define CHUNK_MIN 64 /* below 64 queries the engine leaves the decompressed MLA form */
#define STEP_TARGET_S 1.0

typedef struct act {
    lode_sched_req r;
    int32_t seq;
    size_t n_done;   /* prompt tokens in the cache */
    int64_t n_cached;
    int32_t *gen;
    int64_t n_gen;
    int32_t next;    /* token to feed at the next decode step, -1 if none */
    lode_sampler *smp;
    lode_tok_stream ts;
    char *text;
    size_t tlen, tcap, shown;
    bool cancel;
    uint64_t submit; /* arrival order */
    int64_t reserve; /* cells this request may still append (admission) */
    uint64_t served; /* the step that last evaluated a prefill chunk of it; 0: never */
    struct act *nxt;
} act;

struct lode_sched {
    lode_model *m;
    const lode_tok *tok;
    lode_kv *kv;
    int64_t cache_cells;
    lode_sched_notify notify;
    void *ud;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    act *incoming;     /* under mu */
    uint64_t *cancels; /* under mu */
    size_t n_cancels, cap_cancels;
    act *active;       /* compute thread only */
    lode_pcache *pc;
    uint64_t submit_seq;
    lode_sched_stats st; /* under mu */
    float *logits;
    size_t cap_batch;
    int32_t *b_tok, *b_seq;
    bool *b_want;
    act **b_act;       /* which act a logits row belongs to */
    size_t chunk_next; /* prefill tokens for the next step (see STEP_TARGET_S) */
    uint64_t n_steps;
    /* Mid-evaluation cancellation: the handles in the batch being evaluated
     * (under mu), how many of them are not cancelled yet, and the flag the
     * engine polls between layers. */
    volatile int abort_eval;
    uint64_t *inflight;
    bool *inflight_cancelled;
    size_t n_inflight, n_inflight_live, cap_inflight;
};

/* ---- events ------------------------------------------------------------- */
static void emit_partial(lode_sched *s, act *a, const char *p, size_t n) {
    if (!a->r.stream || !n) return;
    lode_sched_event *ev = lode_xcalloc(1, sizeof *ev);
    ev->kind = LODE_EV_PARTIAL;
    ev->req = a->r.handle;
    ev->text = lode_xmalloc(n + 1);
    memcpy(ev->text, p, n);
    ev->text[n] = 0;
    ev->text_len = n;
    s->notify(ev, s->ud);
}

static void free_req(lode_sched_req *r) {
    lode_free(r->prompt);
    for (size_t i = 0; i < r->n_stops; i++) lode_free(r->stops[i]);
    lode_free(r->stops);
}

/* ---- request lifecycle ------------------------------------------------------ */
static void finish(lode_sched *s, act *a, const char *reason, const char *error) {
    lode_sched_event *ev = lode_xcalloc(1, sizeof *ev);
    ev->kind = LODE_EV_DONE;
    ev->req = a->r.handle;
    /* Text: cut at a stop string; otherwise everything plus an incomplete tail. */
    size_t cut, emit;
    bool stopped = a->r.n_stops && lode_stop_check(a->text, a->tlen, (const char *const *)a->r.stops, a->r.n_stops, &cut, &emit);
    size_t keep = stopped ? cut : a->tlen;
    char tail[8];
    size_t tl = stopped ? 0 : lode_tok_stream_flush(&a->ts, tail, sizeof tail);
    ev->text = lode_xmalloc(keep + tl + 1);
    if (keep) memcpy(ev->text, a->text, keep); /* a->text is NULL before the first piece */
    memcpy(ev->text + keep, tail, tl);
    ev->text_len = keep + tl;
    ev->text[ev->text_len] = 0;
    if (a->shown < keep) emit_partial(s, a, a->text + a->shown, keep - a->shown);
    ev->reason = reason;
    if (error) snprintf(ev->error, sizeof ev->error, "%s", error);
    ev->n_prompt = (int64_t)a->r.n_prompt;
    ev->n_cached = a->n_cached;
    ev->n_generated = a->n_gen;
    if (a->seq >= 0) {
        /* Keep every evaluated row: the prompt (or its computed part) and
         * the generated tokens that were fed back. */
        int64_t n_eval = lode_kv_seq_len(s->kv, a->seq);
        if (n_eval > 0 && strcmp(reason, "error") != 0) {
            int64_t n_p = n_eval < (int64_t)a->r.n_prompt ? n_eval : (int64_t)a->r.n_prompt;
            int32_t *toks = lode_xmalloc((size_t)n_eval * sizeof(int32_t));
            memcpy(toks, a->r.prompt, (size_t)n_p * sizeof(int32_t));
            if (n_eval > n_p) memcpy(toks + n_p, a->gen, (size_t)(n_eval - n_p) * sizeof(int32_t));
            lode_pcache_insert(s->pc, toks, n_eval, a->seq);
            lode_free(toks);
        } else {
            lode_kv_seq_free(s->kv, a->seq);
        }
    }
    ev->tokens = a->gen;
    a->gen = NULL;
    pthread_mutex_lock(&s->mu);
    s->st.done++;
    if (!strcmp(reason, "cancelled")) s->st.cancelled++;
    s->st.tokens_generated += a->n_gen;
    s->st.tokens_cached += a->n_cached;
    if (a->n_cached > 0) s->st.cache_hits++;
    s->st.tokens_prompt += (int64_t)a->r.n_prompt;
    pthread_mutex_unlock(&s->mu);
    lode_sampler_free(a->smp);
    lode_free(a->text);
    free_req(&a->r);
    lode_free(a);
    s->notify(ev, s->ud);
}

/* Remove from the active list and finish. */
static void end_act(lode_sched *s, act *a, const char *reason, const char *error) {
    for (act **pp = &s->active; *pp; pp = &(*pp)->nxt)
        if (*pp == a) {
            *pp = a->nxt;
            break;
        }
    finish(s, a, reason, error);
}

/* Append a sampled token; returns the finish reason or NULL to continue. */
static const char *take_token(lode_sched *s, act *a, int32_t id) {
    a->gen[a->n_gen++] = id;
    if (!a->r.ignore_eos && lode_tok_is_eog(s->tok, id)) return "eos";
    char piece[1024];
    size_t pl = lode_tok_stream_push(s->tok, &a->ts, id, piece, sizeof piece);
    if (a->tlen + pl + 1 > a->tcap) {
        a->tcap = (a->tcap + pl) * 2 + 64;
        a->text = lode_xrealloc(a->text, a->tcap);
    }
    memcpy(a->text + a->tlen, piece, pl);
    a->tlen += pl;
    size_t cut, emit;
    bool stop = lode_stop_check(a->text, a->tlen, (const char *const *)a->r.stops, a->r.n_stops, &cut, &emit);
    if (!stop && emit > a->shown) {
        emit_partial(s, a, a->text + a->shown, emit - a->shown);
        a->shown = emit;
    }
    if (stop) return "stop";
    if (a->n_gen >= a->r.max_tokens) return "length";
    a->next = id;
    return NULL;
}

/* ---- the compute loop ---------------------------------------------------------- */
static void grow_batch(lode_sched *s, size_t n) {
    if (n <= s->cap_batch) return;
    s->cap_batch = n * 2;
    const int64_t V = lode_model_config(s->m)->n_vocab;
    s->b_tok = lode_xrealloc(s->b_tok, s->cap_batch * sizeof(int32_t));
    s->b_seq = lode_xrealloc(s->b_seq, s->cap_batch * sizeof(int32_t));
    s->b_want = lode_xrealloc(s->b_want, s->cap_batch * sizeof(bool));
    s->b_act = lode_xrealloc(s->b_act, s->cap_batch * sizeof(act *));
    s->logits = lode_xrealloc(s->logits, s->cap_batch * (size_t)V * sizeof(float));
}

/* Cells the started requests may still append. */
static int64_t reserved(lode_sched *s) {
    int64_t r = 0;
    for (act *a = s->active; a; a = a->nxt)
        if (a->seq >= 0) {
            int64_t left = a->reserve - lode_kv_seq_len(s->kv, a->seq);
            r += left > 0 ? left : 0;
        }
    return r;
}

typedef enum { START_OK, START_WAIT, START_NEVER } start_result;

static start_result start_act(lode_sched *s, act *a) {
    /* The last prompt token is always evaluated (its logits start
     * generation); the last sampled token is never fed back. */
    int64_t total = (int64_t)a->r.n_prompt + a->r.max_tokens - 1;
    if (total > lode_kv_n_cells(s->kv)) return START_NEVER;
    int64_t reused = 0;
    int32_t seq = lode_pcache_fork(s->pc, a->r.prompt, (int64_t)a->r.n_prompt, (int64_t)a->r.n_prompt - 1, &reused);
    if (seq < 0) return START_WAIT; /* out of sequence slots: wait for a request to end */
    /* The fork holds its shared cells, so evicting entries cannot take them. */
    if (!lode_pcache_make_room(s->pc, reserved(s) + total - reused)) {
        lode_kv_seq_free(s->kv, seq);
        return START_WAIT;
    }
    a->seq = seq;
    a->n_cached = reused;
    a->n_done = (size_t)reused;
    a->reserve = total;
    return START_OK;
}

/* Publish the requests of the batch about to be evaluated (see
 * lode_sched_cancel). */
static void set_inflight(lode_sched *s, size_t k) {
    pthread_mutex_lock(&s->mu);
    if (k > s->cap_inflight) {
        s->cap_inflight = k * 2;
        s->inflight = lode_xrealloc(s->inflight, s->cap_inflight * sizeof(uint64_t));
        s->inflight_cancelled = lode_xrealloc(s->inflight_cancelled, s->cap_inflight * sizeof(bool));
    }
    s->n_inflight = 0;
    for (size_t i = 0; i < k; i++) {
        act *a = s->b_act[i];
        bool seen = false;
        for (size_t j = 0; j < s->n_inflight && !seen; j++) seen = s->inflight[j] == a->r.handle;
        if (seen) continue;
        s->inflight[s->n_inflight] = a->r.handle;
        s->inflight_cancelled[s->n_inflight++] = false;
    }
    s->n_inflight_live = s->n_inflight;
    /* Cancels that arrived since the last intake count already. */
    for (size_t i = 0; i < s->n_inflight; i++)
        for (size_t j = 0; j < s->n_cancels && !s->inflight_cancelled[i]; j++)
            if (s->cancels[j] == s->inflight[i]) {
                s->inflight_cancelled[i] = true;
                s->n_inflight_live--;
            }
    /* Nothing in this batch is wanted any more: the evaluation stops at once. */
    s->abort_eval = s->stop || (s->n_inflight && !s->n_inflight_live) ? 1 : 0;
    pthread_mutex_unlock(&s->mu);
}

static void step(lode_sched *s) {
    const int64_t V = lode_model_config(s->m)->n_vocab;
    double now = lode_time_s();
    /* Deadlines. */
    for (act *a = s->active, *n; a; a = n) {
        n = a->nxt;
        bool prefill = a->n_done < a->r.n_prompt;
        if ((a->r.deadline > 0 && now > a->r.deadline) || (prefill && a->r.prefill_deadline > 0 && now > a->r.prefill_deadline))
            end_act(s, a, "deadline", NULL);
    }
    size_t n = 0;
    for (act *a = s->active; a; a = a->nxt) n += a->next >= 0 ? 1 : 0;
    /* Prefill order: within a client the newest request first (an editor's
     * latest keystroke); across clients, round robin by chunk: the candidate
     * served least recently goes next (a new request has never been served,
     * so it waits at most one chunk even behind another client's long
     * prompt), ties to the oldest. The list is newest-first, so the first
     * request seen for a client is its newest. */
    act *pre = NULL;
    for (act *a = s->active; a; a = a->nxt) {
        if (a->n_done >= a->r.n_prompt) continue;
        bool newer_same_client = false;
        for (act *b = s->active; b != a; b = b->nxt)
            if (b->r.client == a->r.client && b->n_done < b->r.n_prompt) newer_same_client = true;
        if (newer_same_client) continue;
        if (!pre || a->served < pre->served || (a->served == pre->served && a->submit < pre->submit)) pre = a;
    }
    size_t chunk = 0;
    if (pre && pre->seq < 0) {
        start_result sr = start_act(s, pre);
        if (sr == START_NEVER) {
            end_act(s, pre, "error", "the request does not fit in the KV cache (prompt + max_tokens > cache size)");
            return;
        }
        if (sr == START_WAIT) { /* no room yet: go on with a request that has started */
            pre = NULL;
            for (act *a = s->active; a && !pre; a = a->nxt)
                if (a->seq >= 0 && a->n_done < a->r.n_prompt) pre = a;
        }
    }
    if (pre) {
        bool alone = s->active == pre && !pre->nxt;
        chunk = pre->r.n_prompt - pre->n_done;
        if (chunk > (alone ? CHUNK : s->chunk_next)) chunk = alone ? CHUNK : s->chunk_next;
    }
    if (n + chunk == 0) return;
    grow_batch(s, n + chunk);
    size_t k = 0;
    for (act *a = s->active; a; a = a->nxt)
        if (a->next >= 0) {
            s->b_tok[k] = a->next, s->b_seq[k] = a->seq, s->b_want[k] = true, s->b_act[k] = a;
            a->next = -1;
            k++;
        }
    for (size_t i = 0; i < chunk; i++) {
        s->b_tok[k] = pre->r.prompt[pre->n_done + i];
        s->b_seq[k] = pre->seq;
        s->b_want[k] = pre->n_done + i + 1 == pre->r.n_prompt;
        s->b_act[k] = pre;
        k++;
    }
    lode_batch b = {(int64_t)k, s->b_tok, s->b_seq, 0, s->b_want};
    lode_error err = {0};
    set_inflight(s, k);
    double t0 = lode_time_s();
    lode_status st = lode_model_eval(s->m, s->kv, &b, s->logits, &err);
    double dt = lode_time_s() - t0;
    pthread_mutex_lock(&s->mu);
    s->n_inflight = s->n_inflight_live = 0;
    s->abort_eval = 0;
    s->st.busy_s += dt;
    if (n) s->st.gen_s += dt;
    if (!st) s->st.tokens_computed += (int64_t)k;
    pthread_mutex_unlock(&s->mu);
    if (st == LODE_ERR_CANCELLED) {
        /* Every request in the batch was cancelled (or the scheduler is
         * stopping): the cache is unchanged and the marks end them next. */
        return;
    }
    if (st) {
        for (size_t i = 0; i < k; i++) { /* fail every request in the batch (once) */
            act *a = s->b_act[i];
            bool seen = false;
            for (size_t j = 0; j < i; j++) seen |= s->b_act[j] == a;
            if (!seen) end_act(s, a, "error", err.text);
        }
        return;
    }
    s->n_steps++;
    if (pre) {
        pre->n_done += chunk;
        pre->served = s->n_steps;
    }
    if (chunk >= CHUNK_MIN || chunk == s->chunk_next) { /* a full chunk measures the step well */
        double want = (double)chunk * STEP_TARGET_S / (dt > 1e-6 ? dt : 1e-6);
        s->chunk_next = want < CHUNK_MIN ? CHUNK_MIN : want > CHUNK ? CHUNK : (size_t)want;
    }
    size_t row = 0;
    for (size_t i = 0; i < k; i++) {
        if (!s->b_want[i]) continue;
        act *a = s->b_act[i];
        int32_t id = lode_sampler_sample(a->smp, s->logits + row * (size_t)V, a->gen, a->n_gen);
        row++;
        const char *why = take_token(s, a, id);
        if (why) end_act(s, a, why, NULL);
    }
}

static void *thread_main(void *arg) {
    lode_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        /* Intake, keeping the active list newest-first: `incoming` is a
         * newest-first stack, so reverse it, then push oldest first. */
        act *rev = NULL;
        while (s->incoming) {
            act *a = s->incoming;
            s->incoming = a->nxt;
            a->nxt = rev;
            rev = a;
        }
        while (rev) {
            act *a = rev;
            rev = a->nxt;
            a->nxt = s->active;
            s->active = a;
        }
        for (size_t i = 0; i < s->n_cancels; i++)
            for (act *a = s->active; a; a = a->nxt)
                if (a->r.handle == s->cancels[i]) a->cancel = true;
        s->n_cancels = 0;
        int64_t nact = 0, nq = 0;
        for (act *a = s->active; a; a = a->nxt) {
            if (a->seq >= 0) nact++;
            else nq++;
        }
        s->st.active = nact;
        s->st.queued = nq;
        if (s->stop) break;
        if (!s->active) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        for (act *a = s->active, *n; a; a = n) {
            n = a->nxt;
            if (a->cancel) end_act(s, a, "cancelled", NULL);
        }
        if (s->active) step(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    while (s->active) end_act(s, s->active, "cancelled", NULL);
    while (s->incoming) {
        act *a = s->incoming;
        s->incoming = a->nxt;
        a->nxt = NULL;
        finish(s, a, "cancelled", NULL);
    }
    return NULL;
}

lode_status lode_sched_new(lode_model *m, const lode_tok *tok, int64_t kv_cells, int64_t cache_cells,
                           lode_sched_notify notify, void *ud, lode_sched **out, lode_error *err) {
    lode_sched *s = lode_xcalloc(1, sizeof *s);
    s->m = m;
    s->tok = tok;
    s->cache_cells = cache_cells;
    s->notify = notify;
    s->ud = ud;
    lode_status st = lode_kv_new(m, kv_cells, &s->kv, err);
    if (st) {
        lode_free(s);
        return st;
    }
    s->pc = lode_pcache_new(s->kv, cache_cells);
    s->chunk_next = CHUNK;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    lode_model_set_cancel_flag(m, &s->abort_eval);
    if (pthread_create(&s->th, NULL, thread_main, s) != 0) {
        lode_model_set_cancel_flag(m, NULL);
        lode_pcache_free(s->pc);
        lode_kv_free(s->kv);
        lode_free(s);
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "cannot start the compute thread");
    }
    *out = s;
    return LODE_OK;
}

void lode_sched_free(lode_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    if (s->n_inflight) s->abort_eval = 1; /* stop the evaluation in progress */
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    lode_model_set_cancel_flag(s->m, NULL);
    lode_pcache_free(s->pc);
    lode_free(s->inflight);
    lode_free(s->inflight_cancelled);
    lode_kv_free(s->kv);
    lode_free(s->cancels);
    lode_free(s->logits);
    lode_free(s->b_tok);
    lode_free(s->b_seq);
    lode_free(s->b_want);
    lode_free(s->b_act);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    lode_free(s);
}

void lode_sched_submit(lode_sched *s, lode_sched_req *r) {
    act *a = lode_xcalloc(1, sizeof *a);
    a->r = *r;
    a->seq = -1;
    a->next = -1;
    a->gen = lode_xmalloc((size_t)(r->max_tokens > 0 ? r->max_tokens : 1) * sizeof(int32_t));
    a->smp = lode_sampler_new(&r->sp, lode_model_config(s->m)->n_vocab);
    lode_tok_stream_init(&a->ts, false);
    pthread_mutex_lock(&s->mu);
    a->submit = ++s->submit_seq;
    a->nxt = s->incoming;
    s->incoming = a;
    s->st.requests++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void lode_sched_cancel(lode_sched *s, uint64_t handle) {
    pthread_mutex_lock(&s->mu);
    if (s->n_cancels == s->cap_cancels) {
        s->cap_cancels = s->cap_cancels ? s->cap_cancels * 2 : 16;
        s->cancels = lode_xrealloc(s->cancels, s->cap_cancels * sizeof(uint64_t));
    }
    s->cancels[s->n_cancels++] = handle;
    for (size_t i = 0; i < s->n_inflight; i++)
        if (s->inflight[i] == handle && !s->inflight_cancelled[i]) {
            s->inflight_cancelled[i] = true;
            if (--s->n_inflight_live == 0) s->abort_eval = 1; /* nobody wants this batch any more */
        }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void lode_sched_stats_get(lode_sched *s, lode_sched_stats *st) {
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    pthread_mutex_unlock(&s->mu);
    st->kv_cells = lode_kv_n_cells(s->kv);
    st->kv_free = lode_kv_n_free(s->kv); /* a racy read of a counter: fine for status */
    st->cache_entries = lode_pcache_leaves(s->pc); /* racy reads of counters: fine for status */
    st->cache_cells = lode_pcache_tokens(s->pc);
}
