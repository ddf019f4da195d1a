/*
 * server.c — the daemon's event loop: a per-user unix socket speaking
 * JSON-RPC 2.0 with Content-Length framing (lode/generate, lode/infill,
 * lode/chat, lode/status, lode/shutdown, $/cancelRequest), requests handed
 * to the compute scheduler, results and streamed partial output written
 * back. The loop never computes: scheduler events arrive through a
 * mutex-guarded queue and one uv_async_t.
 *
 * Lifetimes: each connection owns its uv_pipe_t and is freed only in the
 * close callback. Requests in flight are keyed by a scheduler handle and
 * refer to their connection by id, so a connection that goes away cancels
 * its requests and late events for it are dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "jsonrpc.h"
#include "lode_daemon.h"
#include "lode_engine.h"
#include "lode_sched.h"
#include "lode_tok.h"

#define MAX_MESSAGE (64u << 20)
#define MAX_TOKENS_PER_REQUEST 16384
/* A client that stops reading while output is streamed to it is dropped
 * (its requests cancelled) once this much is queued for it. */
#define MAX_WRITE_BACKLOG (16u << 20)
/* Requests one connection may have in flight; more are refused (-32803). */
#define MAX_PENDING_PER_CONN 256

typedef struct server server;

typedef struct conn {
    uv_pipe_t pipe; /* first member: handle.data == conn */
    server *srv;
    uint64_t id;
    lode_rpc_reader rd;
    bool closing;
    int n_pending;  /* requests of this connection not answered yet */
    struct conn *next;
} conn;

typedef struct pending {
    uint64_t handle, conn_id;
    json_t *rpc_id;
    struct pending *next;
} pending;

struct server {
    uv_loop_t *loop;
    uv_pipe_t listener;
    uv_async_t wake;
    uv_signal_t sigterm, sigint;
    lode_model *m;
    lode_tok *tok;
    lode_sched *sched;
    pthread_mutex_t evmu;
    lode_sched_event **evq;
    size_t n_ev, cap_ev;
    conn *conns;
    pending *pend;
    uint64_t next_handle, next_conn;
    bool stopping;
    double t_start;
    char sock_path[4096];
    int lock_fd;
    const lode_daemon_opts *o;
};

/* ---- writing --------------------------------------------------------------- */
static conn *find_conn(server *s, uint64_t id) {
    for (conn *c = s->conns; c; c = c->next)
        if (c->id == id && !c->closing) return c;
    return NULL;
}

static void close_conn(conn *c);

/* Send a JSON value (stolen) to a connection. */
static void send_json(conn *c, json_t *v) {
    if (!c || c->closing || !v) {
        json_decref(v);
        return;
    }
    if (c->pipe.write_queue_size > MAX_WRITE_BACKLOG) {
        lode_log(LODE_LOG_WARN, "client %llu is not reading (%zu bytes queued); dropping it",
                 (unsigned long long)c->id, c->pipe.write_queue_size);
        json_decref(v);
        close_conn(c);
        return;
    }
    lode_rpc_write((uv_stream_t *)&c->pipe, v);
}

/* ---- scheduler events ---------------------------------------------------------- */
static void notify(lode_sched_event *ev, void *ud) {
    server *s = ud;
    pthread_mutex_lock(&s->evmu);
    if (s->n_ev == s->cap_ev) {
        s->cap_ev = s->cap_ev ? s->cap_ev * 2 : 64;
        s->evq = lode_xrealloc(s->evq, s->cap_ev * sizeof *s->evq);
    }
    s->evq[s->n_ev++] = ev;
    pthread_mutex_unlock(&s->evmu);
    uv_async_send(&s->wake);
}

static void free_event(lode_sched_event *ev) {
    lode_free(ev->text);
    lode_free(ev->tokens);
    lode_free(ev);
}

/* JSON strings must be valid UTF-8: invalid bytes in generated text (a
 * model may emit any byte) become U+FFFD; the exact ids are in "tokens". */
static json_t *json_text(const char *t, size_t n) {
    char *o = lode_xmalloc(n * 3 + 1);
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)t[i];
        size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = l > 0 && i + l <= n;
        for (size_t k = 1; ok && k < l; k++) ok = ((unsigned char)t[i + k] & 0xC0) == 0x80;
        if (ok && l > 1) { /* reject overlongs, surrogates, > U+10FFFF */
            unsigned cp = c & (0x7F >> l);
            for (size_t k = 1; k < l; k++) cp = (cp << 6) | ((unsigned char)t[i + k] & 0x3F);
            static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
            ok = cp >= min[l] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
        }
        if (ok && !(l == 1 && c == 0)) {
            memcpy(o + w, t + i, l);
            w += l;
            i += l;
        } else {
            memcpy(o + w, "\xEF\xBF\xBD", 3);
            w += 3;
            i++;
        }
    }
    json_t *j = json_stringn(o, w);
    lode_free(o);
    return j;
}

static void handle_event(server *s, lode_sched_event *ev) {
    pending **pp = &s->pend, *p = NULL;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->handle == ev->req) {
            p = *pp;
            break;
        }
    if (!p) return;
    conn *c = find_conn(s, p->conn_id);
    if (ev->kind == LODE_EV_PARTIAL) {
        send_json(c, lode_rpc_notification("lode/partial",
                                           json_pack("{s:O, s:o}", "id", p->rpc_id, "text", json_text(ev->text, ev->text_len))));
        return;
    }
    if (!strcmp(ev->reason, "cancelled")) {
        send_json(c, lode_rpc_error_msg(p->rpc_id, LODE_RPC_REQUEST_CANCELLED, "request cancelled"));
    } else if (!strcmp(ev->reason, "deadline")) {
        send_json(c, lode_rpc_error_msg(p->rpc_id, LODE_RPC_DEADLINE_EXCEEDED, "deadline exceeded"));
    } else if (!strcmp(ev->reason, "error")) {
        send_json(c, lode_rpc_error_msg(p->rpc_id, LODE_RPC_REQUEST_FAILED, ev->error));
    } else {
        json_t *toks = json_array();
        for (int64_t i = 0; i < ev->n_generated; i++) json_array_append_new(toks, json_integer(ev->tokens[i]));
        json_t *res = json_pack("{s:o, s:o, s:s, s:I, s:I, s:I}", "text", json_text(ev->text, ev->text_len), "tokens", toks,
                                "stop_reason", ev->reason, "prompt_tokens", (json_int_t)ev->n_prompt, "cached_tokens",
                                (json_int_t)ev->n_cached, "generated_tokens", (json_int_t)ev->n_generated);
        send_json(c, lode_rpc_result_msg(p->rpc_id, res));
    }
    lode_log(LODE_LOG_DEBUG, "client %llu request %llu: %s, %lld prompt tokens (%lld cached), %lld generated",
             (unsigned long long)p->conn_id, (unsigned long long)p->handle, ev->reason, (long long)ev->n_prompt,
             (long long)ev->n_cached, (long long)ev->n_generated);
    if (c) c->n_pending--;
    *pp = p->next;
    json_decref(p->rpc_id);
    lode_free(p);
}

static void begin_stop(server *s);

static void on_wake(uv_async_t *a) {
    server *s = a->data;
    pthread_mutex_lock(&s->evmu);
    lode_sched_event **q = s->evq;
    size_t n = s->n_ev;
    s->evq = NULL;
    s->n_ev = s->cap_ev = 0;
    pthread_mutex_unlock(&s->evmu);
    for (size_t i = 0; i < n; i++) {
        handle_event(s, q[i]);
        free_event(q[i]);
    }
    lode_free(q);
}

/* ---- requests ------------------------------------------------------------------ */
static int json_num(json_t *p, const char *k, double *out, double lo, double hi) {
    json_t *v = json_object_get(p, k);
    if (!v) return 0;
    if (!json_is_number(v)) return -1;
    double x = json_number_value(v);
    if (x < lo || x > hi) return -1;
    *out = x;
    return 1;
}

/* Fill sampling, limits, stops and deadlines from params; NULL or an error message. */
static const char *parse_common(json_t *p, lode_sched_req *r) {
    double x = 0;
    r->max_tokens = 128;
    r->sp = lode_sampler_default_params();
    r->sp.temp = 0;
    if (json_num(p, "max_tokens", &x, 1, MAX_TOKENS_PER_REQUEST) < 0) return "max_tokens must be an integer in 1..16384";
    else if (json_object_get(p, "max_tokens")) r->max_tokens = (int64_t)x;
    if (json_num(p, "temperature", &x, 0, 100) < 0) return "temperature must be a number >= 0";
    else if (json_object_get(p, "temperature")) r->sp.temp = (float)x;
    if (json_num(p, "top_k", &x, 0, 1e9) < 0) return "top_k must be >= 0";
    else if (json_object_get(p, "top_k")) r->sp.top_k = (int32_t)x;
    if (json_num(p, "top_p", &x, 0, 1) < 0) return "top_p must be in 0..1";
    else if (json_object_get(p, "top_p")) r->sp.top_p = (float)x;
    if (json_num(p, "min_p", &x, 0, 1) < 0) return "min_p must be in 0..1";
    else if (json_object_get(p, "min_p")) r->sp.min_p = (float)x;
    if (json_num(p, "repeat_penalty", &x, 0.01, 100) < 0) return "repeat_penalty must be in 0.01..100";
    else if (json_object_get(p, "repeat_penalty")) r->sp.repeat_penalty = (float)x;
    if (json_num(p, "seed", &x, 0, 9e15) < 0) return "seed must be a non-negative integer";
    else if (json_object_get(p, "seed")) r->sp.seed = (uint64_t)x;
    json_t *st = json_object_get(p, "stop");
    if (st && !json_is_array(st)) return "stop must be an array of strings";
    if (st) {
        if (json_array_size(st) > 16) return "at most 16 stop strings";
        r->stops = lode_xcalloc(json_array_size(st) + 1, sizeof(char *));
        size_t i;
        json_t *v;
        json_array_foreach(st, i, v) {
            if (!json_is_string(v) || !json_string_length(v)) return "stop must be an array of non-empty strings";
            r->stops[r->n_stops++] = lode_xstrdup(json_string_value(v));
        }
    }
    json_t *sm = json_object_get(p, "stream");
    if (sm && !json_is_boolean(sm)) return "stream must be a boolean";
    r->stream = json_is_true(sm);
    json_t *ie = json_object_get(p, "ignore_eos");
    if (ie && !json_is_boolean(ie)) return "ignore_eos must be a boolean";
    r->ignore_eos = json_is_true(ie);
    double now = lode_time_s();
    if (json_num(p, "prefill_deadline_ms", &x, 1, 1e9) < 0) return "prefill_deadline_ms must be > 0";
    else if (json_object_get(p, "prefill_deadline_ms")) r->prefill_deadline = now + x / 1000.0;
    if (json_num(p, "deadline_ms", &x, 1, 1e9) < 0) return "deadline_ms must be > 0";
    else if (json_object_get(p, "deadline_ms")) r->deadline = now + x / 1000.0;
    return NULL;
}

static void free_req_parts(lode_sched_req *r) {
    lode_free(r->prompt);
    for (size_t i = 0; i < r->n_stops; i++) lode_free(r->stops[i]);
    lode_free(r->stops);
}

/* Build the prompt for one of the generation methods. */
static const char *build_prompt(server *s, const char *method, json_t *p, lode_sched_req *r, char *ebuf, size_t en) {
    lode_error err = {0};
    if (!strcmp(method, "lode/generate")) {
        json_t *text = json_object_get(p, "text"), *toks = json_object_get(p, "tokens");
        if (json_is_string(text)) {
            json_t *ab = json_object_get(p, "add_bos");
            bool bos = ab ? json_is_true(ab) : lode_tok_add_bos(s->tok);
            lode_tok_encode(s->tok, json_string_value(text), json_string_length(text), bos, false, &r->prompt,
                            &r->n_prompt, &err);
        } else if (json_is_array(toks) && json_array_size(toks) > 0) {
            r->n_prompt = json_array_size(toks);
            r->prompt = lode_xmalloc(r->n_prompt * sizeof(int32_t));
            size_t i;
            json_t *v;
            json_array_foreach(toks, i, v) {
                json_int_t id = json_integer_value(v);
                if (!json_is_integer(v) || id < 0 || id >= lode_model_config(s->m)->n_vocab)
                    return "tokens must be an array of ids inside the vocabulary";
                r->prompt[i] = (int32_t)id;
            }
        } else {
            return "lode/generate needs \"text\" (a string) or \"tokens\" (a non-empty array of ids)";
        }
    } else if (!strcmp(method, "lode/infill")) {
        json_t *pre = json_object_get(p, "prefix"), *suf = json_object_get(p, "suffix"), *extra = json_object_get(p, "extra");
        if (!json_is_string(pre) || (suf && !json_is_string(suf)) || (extra && !json_is_array(extra)))
            return "lode/infill needs \"prefix\" (string), optional \"suffix\" (string) and \"extra\" (array of {path, text})";
        /* Extra context chunks go first, each headed by its path as in
         * DeepSeek-Coder's repository-level data, then the prefix. */
        size_t cap = json_string_length(pre) + 1, len = 0;
        size_t i;
        json_t *v;
        json_array_foreach(extra, i, v) {
            if (!json_is_string(json_object_get(v, "text"))) return "extra items need a \"text\" string";
            cap += json_string_length(json_object_get(v, "text")) + 520;
        }
        char *buf = lode_xmalloc(cap);
        json_array_foreach(extra, i, v) {
            const char *path = json_string_value(json_object_get(v, "path"));
            const char *t = json_string_value(json_object_get(v, "text"));
            len += (size_t)snprintf(buf + len, cap - len, "%s%.500s\n%s\n", path ? "# " : "", path ? path : "", t);
        }
        memcpy(buf + len, json_string_value(pre), json_string_length(pre));
        len += json_string_length(pre);
        lode_status st = lode_tok_fim_prompt(s->tok, buf, len, suf ? json_string_value(suf) : "",
                                             suf ? json_string_length(suf) : 0, &r->prompt, &r->n_prompt, &err);
        lode_free(buf);
        if (st) {
            snprintf(ebuf, en, "%s", err.text);
            return ebuf;
        }
    } else { /* lode/chat */
        json_t *msgs = json_object_get(p, "messages");
        if (!json_is_array(msgs) || !json_array_size(msgs) || json_array_size(msgs) > 1024)
            return "lode/chat needs \"messages\": a non-empty array of {role, content}";
        size_t n = json_array_size(msgs), i;
        lode_chat_msg *m = lode_xcalloc(n, sizeof *m);
        json_t *v;
        json_array_foreach(msgs, i, v) {
            m[i].role = json_string_value(json_object_get(v, "role"));
            m[i].content = json_string_value(json_object_get(v, "content"));
            if (!m[i].role || !m[i].content) {
                lode_free(m);
                return "every message needs string \"role\" and \"content\"";
            }
        }
        lode_status st = lode_tok_chat_prompt(s->tok, m, n, &r->prompt, &r->n_prompt, &err);
        lode_free(m);
        if (st) {
            snprintf(ebuf, en, "%s", err.text);
            return ebuf;
        }
    }
    if (!r->n_prompt) return "the prompt is empty";
    return NULL;
}

static json_t *status_json(server *s) {
    lode_sched_stats st;
    lode_sched_stats_get(s->sched, &st);
    const lode_config *c = lode_model_config(s->m);
    double hit = st.tokens_prompt ? (double)st.tokens_cached / (double)st.tokens_prompt : 0.0;
    const double kv_token_bytes = (double)lode_model_kv_width(s->m) * (double)c->n_layer * 4.0;
    json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:s, s:f, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I}, s:f, s:f, s:f, s:i}",
                     "model", lode_model_path(s->m), "format", lode_model_format(s->m), "architecture",
                     c->arch == LODE_ARCH_DEEPSEEK2 ? "deepseek2" : "llama", "threads", lode_model_n_threads(s->m),
                     "backend", lode_model_device(s->m), "weights_gb", (double)lode_model_weight_bytes(s->m) / 1e9, "kv_cells",
                     (json_int_t)st.kv_cells, "kv_free", (json_int_t)st.kv_free, "cache_entries",
                     (json_int_t)st.cache_entries, "requests", "received", (json_int_t)st.requests, "done",
                     (json_int_t)st.done, "cancelled", (json_int_t)st.cancelled, "active", (json_int_t)st.active,
                     "queued", (json_int_t)st.queued, "tokens", "prompt", (json_int_t)st.tokens_prompt, "cached",
                     (json_int_t)st.tokens_cached, "generated", (json_int_t)st.tokens_generated, "computed",
                     (json_int_t)st.tokens_computed, "cache_hit_rate", hit, "tokens_per_s",
                     st.busy_s > 0 ? (double)st.tokens_computed / st.busy_s : 0.0, "uptime_s",
                     lode_time_s() - s->t_start, "pid", (int)getpid());
    json_object_set_new(j, "kv_mb", json_real(kv_token_bytes * (double)st.kv_cells / 1048576.0));
    json_object_set_new(j, "cache_tokens", json_integer(st.cache_cells));
    json_object_set_new(j, "cache_hits", json_integer(st.cache_hits));
    json_object_set_new(j, "tokens_saved", json_integer(st.tokens_cached));
    json_object_set_new(j, "generated_tokens_per_s",
                        json_real(st.gen_s > 0 ? (double)st.tokens_generated / st.gen_s : 0.0));
    /* Resident memory: procfs is in memory, so this read does not block the loop on disk. */
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long size_pages;
        if (fscanf(f, "%ld %ld", &size_pages, &pages) != 2) pages = 0;
        fclose(f);
    }
    json_object_set_new(j, "rss_mb", json_real((double)pages * (double)sysconf(_SC_PAGESIZE) / 1048576.0));
    return j;
}

/* ---- dispatch -------------------------------------------------------------------
 * One table, sorted by method name (bsearch). Handlers answer requests
 * themselves (directly or through the scheduler's DONE event), so every
 * request gets exactly one response; notifications never get one. */
typedef void (*method_fn)(conn *c, json_t *id, json_t *params, const char *method);

static void m_cancel(conn *c, json_t *id, json_t *params, const char *method) {
    (void)id, (void)method;
    server *s = c->srv;
    json_t *cid = json_object_get(params, "id"); /* borrowed; NULL when params is not an object */
    if (!cid) return;
    for (pending *p = s->pend; p; p = p->next)
        if (p->conn_id == c->id && json_equal(p->rpc_id, cid)) lode_sched_cancel(s->sched, p->handle);
}

static void m_status(conn *c, json_t *id, json_t *params, const char *method) {
    (void)params, (void)method;
    send_json(c, lode_rpc_result_msg(id, status_json(c->srv)));
}

static void m_shutdown(conn *c, json_t *id, json_t *params, const char *method) {
    (void)params, (void)method;
    send_json(c, lode_rpc_result_msg(id, json_object()));
    begin_stop(c->srv);
}

/* lode/generate, lode/infill, lode/chat: validate, build the prompt, queue. */
static void m_generate(conn *c, json_t *id, json_t *params, const char *method) {
    server *s = c->srv;
    if (!json_is_object(params)) {
        send_json(c, lode_rpc_error_msg(id, LODE_RPC_INVALID_PARAMS, "params must be an object"));
        return;
    }
    if (s->stopping) {
        send_json(c, lode_rpc_error_msg(id, LODE_RPC_SERVER_CANCELLED, "the daemon is shutting down"));
        return;
    }
    lode_sched_req r = {0};
    char ebuf[LODE_ERROR_TEXT];
    const char *bad = parse_common(params, &r);
    if (!bad) bad = build_prompt(s, method, params, &r, ebuf, sizeof ebuf);
    if (bad) {
        free_req_parts(&r);
        send_json(c, lode_rpc_error_msg(id, LODE_RPC_INVALID_PARAMS, bad));
        return;
    }
    if (c->n_pending >= MAX_PENDING_PER_CONN) {
        free_req_parts(&r);
        send_json(c, lode_rpc_error_msg(id, LODE_RPC_REQUEST_FAILED, "too many requests in flight on this connection"));
        return;
    }
    c->n_pending++;
    pending *p = lode_xcalloc(1, sizeof *p);
    p->handle = ++s->next_handle;
    p->conn_id = c->id;
    p->rpc_id = json_incref(id);
    p->next = s->pend;
    s->pend = p;
    r.handle = p->handle;
    r.client = c->id;
    lode_sched_submit(s->sched, &r);
}

static const struct method_entry {
    const char *name;
    method_fn fn;
    bool notification; /* true: a notification (never answered) */
} k_methods[] = {
    /* sorted by strcmp */
    {"$/cancelRequest", m_cancel, true},
    {"lode/chat", m_generate, false},
    {"lode/generate", m_generate, false},
    {"lode/infill", m_generate, false},
    {"lode/shutdown", m_shutdown, false},
    {"lode/status", m_status, false},
};

static int method_cmp(const void *key, const void *e) {
    return strcmp(key, ((const struct method_entry *)e)->name);
}

static void dispatch(conn *c, json_t *msg) {
    lode_rpc_msg m;
    int code;
    lode_error err = {0};
    lode_rpc_kind kind = lode_rpc_parse(msg, &m, &code, &err);
    if (kind == LODE_RPC_KIND_INVALID) {
        /* An invalid notification (method, no id) is dropped; anything else
         * is answered, addressed to its id when that is usable. */
        bool looks_like_notification = json_is_object(msg) && !json_object_get(msg, "id") &&
                                       json_is_string(json_object_get(msg, "method"));
        if (!looks_like_notification) send_json(c, lode_rpc_error_msg(m.id, code, err.text));
        return;
    }
    if (kind == LODE_RPC_KIND_RESPONSE) return; /* the daemon sends no requests */
    const struct method_entry *e =
        bsearch(m.method, k_methods, sizeof k_methods / sizeof k_methods[0], sizeof k_methods[0], method_cmp);
    if (kind == LODE_RPC_KIND_NOTIFICATION) {
        if (e && e->notification) e->fn(c, NULL, m.params, m.method);
        return; /* unknown notifications are ignored (JSON-RPC, LSP "$/") */
    }
    if (!e || e->notification) {
        char text[200];
        snprintf(text, sizeof text, "unknown method '%.120s'", m.method);
        send_json(c, lode_rpc_error_msg(m.id, LODE_RPC_METHOD_NOT_FOUND, text));
        return;
    }
    e->fn(c, m.id, m.params, m.method);
}

/* ---- connections ------------------------------------------------------------------ */
static void on_conn_closed(uv_handle_t *h) {
    conn *c = h->data;
    server *s = c->srv;
    for (conn **pp = &s->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    lode_rpc_reader_free(&c->rd);
    lode_free(c);
}

static void close_conn(conn *c) {
    if (c->closing) return;
    c->closing = true;
    for (pending *p = c->srv->pend; p; p = p->next) /* abandoned work stops at once */
        if (p->conn_id == c->id) lode_sched_cancel(c->srv->sched, p->handle);
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
    (void)h;
    b->base = lode_xmalloc(sz);
    b->len = sz;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    conn *c = st->data;
    if (n < 0) {
        lode_free(b->base);
        close_conn(c);
        return;
    }
    lode_rpc_reader_feed(&c->rd, b->base, (size_t)n);
    lode_free(b->base);
    for (;;) {
        json_t *msg;
        lode_rpc_result r = lode_rpc_reader_next(&c->rd, &msg);
        if (r == LODE_RPC_NONE) break;
        if (r == LODE_RPC_BAD_JSON) {
            send_json(c, lode_rpc_error_msg(NULL, LODE_RPC_PARSE_ERROR, "invalid JSON (or invalid UTF-8) in message body"));
            continue;
        }
        if (r == LODE_RPC_BROKEN) {
            char m[200];
            snprintf(m, sizeof m, "framing error: %s; closing the connection", c->rd.error);
            send_json(c, lode_rpc_error_msg(NULL, LODE_RPC_PARSE_ERROR, m));
            lode_log(LODE_LOG_INFO, "client %llu: %s", (unsigned long long)c->id, m);
            close_conn(c);
            return;
        }
        if (json_is_array(msg)) send_json(c, lode_rpc_error_msg(NULL, LODE_RPC_INVALID_REQUEST, "batches are not supported"));
        else dispatch(c, msg);
        json_decref(msg);
        if (c->closing) return;
    }
}

static void on_connection(uv_stream_t *l, int status) {
    server *s = l->data;
    if (status < 0 || s->stopping) return;
    conn *c = lode_xcalloc(1, sizeof *c);
    c->srv = s;
    c->id = ++s->next_conn;
    lode_rpc_reader_init(&c->rd, MAX_MESSAGE);
    uv_pipe_init(s->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = s->conns;
    s->conns = c;
    if (uv_accept(l, (uv_stream_t *)&c->pipe) != 0 || uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0)
        close_conn(c);
}

/* ---- start / stop ----------------------------------------------------------------- */
static void on_signal(uv_signal_t *h, int sig) {
    (void)sig;
    begin_stop(h->data);
}

static void begin_stop(server *s) {
    if (s->stopping) return;
    s->stopping = true;
    lode_log(LODE_LOG_INFO, "shutting down");
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_signal_stop(&s->sigterm);
    uv_signal_stop(&s->sigint);
    /* Drain: every pending request is cancelled (its DONE event answers it). */
    for (pending *p = s->pend; p; p = p->next) lode_sched_cancel(s->sched, p->handle);
    uv_stop(s->loop);
}

void lode_daemon_default_socket(char *buf, size_t n) {
    const char *x = getenv("XDG_RUNTIME_DIR");
    if (x && *x) snprintf(buf, n, "%s/lode/lode.sock", x);
    else snprintf(buf, n, "/tmp/lode-%d/lode.sock", (int)getuid());
}

/* The socket directory must be ours alone: created 0700, refused when it is
 * a symlink, owned by someone else, or open to others. */
static bool secure_dir(const char *dir) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        lode_log(LODE_LOG_ERROR, "cannot create %s: %s", dir, strerror(errno));
        return false;
    }
    struct stat sb;
    if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != getuid() || (sb.st_mode & 077)) {
        lode_log(LODE_LOG_ERROR, "%s must be a directory owned by you with mode 0700 (not a symlink); refusing to serve", dir);
        return false;
    }
    return true;
}

static FILE *g_logf;
static void log_to_file(lode_log_level lvl, const char *msg, void *ud) {
    (void)ud;
    static const char *names[] = {"debug", "info", "warn", "error", "none"};
    FILE *f = g_logf ? g_logf : stderr;
    time_t t = time(NULL);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", localtime(&t));
    fprintf(f, "%s %s %s\n", ts, names[lvl], msg);
    fflush(f);
    if (g_logf && lvl >= LODE_LOG_ERROR) fprintf(stderr, "lode serve: %s\n", msg);
}

static void open_log(void) {
    char dir[4096], path[4200];
    const char *st = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    if (st && *st) snprintf(dir, sizeof dir, "%s/lode", st);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.local/state/lode", home);
    else return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0700);
            *p = '/';
        }
    mkdir(tmp, 0700);
    snprintf(path, sizeof path, "%s/lode.log", dir);
    g_logf = fopen(path, "a");
}

int lode_daemon_run(const lode_daemon_opts *o) {
    server *s = lode_xcalloc(1, sizeof *s);
    s->o = o;
    s->lock_fd = -1;
    int rc = 1;
    open_log();
    /* The log file records info and above unless LODE_LOG asks for another level. */
    lode_log_level lvl = LODE_LOG_INFO;
    const char *ll = getenv("LODE_LOG");
    if (ll && !strcasecmp(ll, "debug")) lvl = LODE_LOG_DEBUG;
    else if (ll && !strcasecmp(ll, "warn")) lvl = LODE_LOG_WARN;
    else if (ll && !strcasecmp(ll, "error")) lvl = LODE_LOG_ERROR;
    lode_log_set(log_to_file, NULL, lvl);
    if (o->socket) snprintf(s->sock_path, sizeof s->sock_path, "%s", o->socket);
    else lode_daemon_default_socket(s->sock_path, sizeof s->sock_path);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", s->sock_path);
    char *sl = strrchr(dir, '/');
    if (sl) *sl = 0;
    else snprintf(dir, sizeof dir, ".");
    if (!secure_dir(dir)) goto out;
    char lockp[4200];
    snprintf(lockp, sizeof lockp, "%s.lock", s->sock_path);
    s->lock_fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        lode_log(LODE_LOG_ERROR, "another lode serve is already running on %s (lock %s)", s->sock_path, lockp);
        goto out;
    }
    lode_error err = {0};
    lode_model_params mp = lode_model_default_params();
    mp.n_threads = o->n_threads;
    mp.quant_type = o->quant_type;
    mp.mla_mode = (lode_mla_mode)o->mla_mode;
    mp.device = (lode_device)o->device;
    lode_log(LODE_LOG_INFO, "loading %s", o->model);
    if (lode_tok_load(o->model, &s->tok, &err) || lode_model_load(o->model, &mp, &s->m, &err)) {
        lode_log(LODE_LOG_ERROR, "%s", err.text);
        goto out;
    }
    int64_t cache_tokens = o->cache_tokens;
    const double kv_token_bytes = (double)lode_model_kv_width(s->m) * (double)lode_model_config(s->m)->n_layer * 4.0;
    if (o->cache_mb > 0) cache_tokens = (int64_t)((double)o->cache_mb * 1048576.0 / kv_token_bytes);
    if (lode_sched_new(s->m, s->tok, o->ctx, cache_tokens, notify, s, &s->sched, &err)) {
        lode_log(LODE_LOG_ERROR, "%s", err.text);
        goto out;
    }
    pthread_mutex_init(&s->evmu, NULL);
    s->loop = lode_xmalloc(sizeof(uv_loop_t));
    uv_loop_init(s->loop);
    uv_async_init(s->loop, &s->wake, on_wake);
    s->wake.data = s;
    uv_signal_init(s->loop, &s->sigterm);
    uv_signal_init(s->loop, &s->sigint);
    s->sigterm.data = s->sigint.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    signal(SIGPIPE, SIG_IGN);
    uv_pipe_init(s->loop, &s->listener, 0);
    s->listener.data = s;
    unlink(s->sock_path); /* stale: we hold the lock */
    mode_t old = umask(0177);
    int e = uv_pipe_bind(&s->listener, s->sock_path);
    umask(old);
    if (e == 0) chmod(s->sock_path, 0600);
    if (e != 0 || (e = uv_listen((uv_stream_t *)&s->listener, 128, on_connection)) != 0) {
        lode_log(LODE_LOG_ERROR, "cannot listen on %s: %s", s->sock_path, uv_strerror(e));
        uv_close((uv_handle_t *)&s->listener, NULL);
        s->stopping = true;
    } else {
        s->t_start = lode_time_s();
        lode_log(LODE_LOG_INFO, "serving %s on %s (pid %d)", o->model, s->sock_path, (int)getpid());
        printf("lode serve: listening on %s\n", s->sock_path);
        fflush(stdout);
        uv_run(s->loop, UV_RUN_DEFAULT);
        rc = 0;
    }
    /* Teardown: the scheduler answers everything still pending, then the
     * loop delivers those answers and closes every handle. */
    lode_sched_free(s->sched);
    s->sched = NULL;
    on_wake(&s->wake);
    for (conn *c = s->conns; c; c = c->next) {
        if (!c->closing) {
            c->closing = true;
            uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
        }
    }
    if (!uv_is_closing((uv_handle_t *)&s->listener)) uv_close((uv_handle_t *)&s->listener, NULL);
    uv_close((uv_handle_t *)&s->wake, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    for (int i = 0; i < 100 && uv_run(s->loop, UV_RUN_NOWAIT); i++) usleep(1000);
    uv_loop_close(s->loop);
    lode_free(s->loop);
    pthread_mutex_destroy(&s->evmu);
    unlink(s->sock_path);
    lode_log(LODE_LOG_INFO, "stopped");
out:
    lode_sched_free(s->sched);
    while (s->pend) {
        pending *p = s->pend;
        s->pend = p->next;
        json_decref(p->rpc_id);
        lode_free(p);
    }
    lode_model_free(s->m);
    lode_tok_free(s->tok);
    if (s->lock_fd >= 0) close(s->lock_fd);
    lode_free(s);
    lode_log_set(NULL, NULL, LODE_LOG_WARN);
    if (g_logf) fclose(g_logf), g_logf = NULL;
    return rc;
}
