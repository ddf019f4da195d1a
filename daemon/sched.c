/*
 * sched.c — continuous batching over the engine (see lode_sched.h).
 *
 * Invariants: only the compute thread touches the model, the KV cache, the
 * active list and the prefix cache (prefix_cache.c, a radix tree); other threads only append to `incoming`
 * and set cancel marks under the mutex. Every submitted request ends with
 * exactly one DONE event.
 */
#include "lode_sched.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "lode_base.h"
#include "prefix_cache.h"

#define CHUNK 256      /* prefill tokens per step */

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
    memcpy(ev->text, a->text, keep);
    memcpy(ev->text + keep, tail, tl);
    ev->text_len = keep + tl;
    ev->text[ev->text_len] = 0;
    if (a->shown < keep) emit_partial(s, a, a->text + a->shown, keep - a->shown);
    ev->reason = reason;
    if (error) snprintf(ev->error, sizeof ev->error, "%s", error);
    ev->n_prompt = (int64_t)a->r.n_prompt;
    ev->n_cached = a->n_cached;
    ev->n_generated = a->n_gen;
    ev->tokens = a->gen;
    a->gen = NULL;
    if (a->seq >= 0) {
        if (a->n_done == a->r.n_prompt && strcmp(reason, "error") != 0)
            lode_pcache_insert(s->pc, a->r.prompt, (int64_t)a->r.n_prompt, a->seq);
        else
            lode_kv_seq_free(s->kv, a->seq);
    }
    pthread_mutex_lock(&s->mu);
    s->st.done++;
    if (!strcmp(reason, "cancelled")) s->st.cancelled++;
    s->st.tokens_generated += a->n_gen;
    s->st.tokens_cached += a->n_cached;
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

static bool start_act(lode_sched *s, act *a) {
    int64_t need = (int64_t)a->r.n_prompt + a->r.max_tokens;
    if (need > lode_kv_n_cells(s->kv) || !lode_pcache_make_room(s->pc, need)) return false;
    /* The last prompt token is always evaluated (its logits start generation). */
    a->seq = lode_pcache_fork(s->pc, a->r.prompt, (int64_t)a->r.n_prompt, (int64_t)a->r.n_prompt - 1, &a->n_cached);
    a->n_done = (size_t)a->n_cached;
    return a->seq >= 0;
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
     * latest keystroke); across clients, the client whose candidate has
     * waited longest. The list is newest-first, so the first request seen
     * for a client is its newest. */
    act *pre = NULL;
    for (act *a = s->active; a; a = a->nxt) {
        if (a->n_done >= a->r.n_prompt) continue;
        bool newer_same_client = false;
        for (act *b = s->active; b != a; b = b->nxt)
            if (b->r.client == a->r.client && b->n_done < b->r.n_prompt) newer_same_client = true;
        if (newer_same_client) continue;
        if (!pre || a->submit < pre->submit) pre = a;
    }
    size_t chunk = 0;
    if (pre) {
        if (pre->seq < 0 && !start_act(s, pre)) {
            end_act(s, pre, "error", "the request does not fit in the KV cache (prompt + max_tokens > cache size)");
            return;
        }
        chunk = pre->r.n_prompt - pre->n_done;
        if (chunk > CHUNK) chunk = CHUNK;
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
    double t0 = lode_time_s();
    lode_status st = lode_model_eval(s->m, s->kv, &b, s->logits, &err);
    double dt = lode_time_s() - t0;
    pthread_mutex_lock(&s->mu);
    s->st.busy_s += dt;
    if (n) s->st.gen_s += dt;
    if (!st) s->st.tokens_computed += (int64_t)k;
    pthread_mutex_unlock(&s->mu);
    if (st) {
        for (size_t i = 0; i < k; i++) { /* fail every request in the batch (once) */
            act *a = s->b_act[i];
            bool seen = false;
            for (size_t j = 0; j < i; j++) seen |= s->b_act[j] == a;
            if (!seen) end_act(s, a, "error", err.text);
        }
        return;
    }
    if (pre) pre->n_done += chunk;
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
        int64_t nact = 0;
        for (act *a = s->active; a; a = a->nxt) nact++;
        s->st.active = nact;
        s->st.queued = 0;
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
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->th, NULL, thread_main, s) != 0) {
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
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    lode_pcache_free(s->pc);
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
