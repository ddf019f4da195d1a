/*
 * lsp_daemon.c — the backend of `lode lsp`: one connection to the user's
 * daemon (`lode serve`, docs/daemon.md) on the loop thread.
 *
 * States: idle → connecting → connected; on a refused/absent socket with a
 * model known, the daemon is spawned (detached: it outlives this editor and
 * serves the others) and the connect is retried every 100 ms while it loads;
 * the spawn exiting early, or no socket after START_TIMEOUT_S, is reported
 * with the last error line of the daemon's log. A lost connection requeues
 * the requests in flight (each is resubmitted once) and reconnects, so a
 * daemon restart costs the editor one slower completion, not an error.
 *
 * Requests carry our own integer ids (the handle); the session's ids never
 * reach the daemon. Cancel sends $/cancelRequest and forgets the handle, so
 * a late answer is dropped here.
 *
 * Handles: the pipe and the retry timer belong to this struct, each spawned
 * process to its own dproc; lode_lsp_daemon_close closes them and the struct is freed
 * after the loop has run their close callbacks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "jsonrpc.h"
#include "lode_daemon.h"
#include "lode_lsp.h"

#define START_TIMEOUT_S 180.0
#define RETRY_MS 100
#define MAX_REPLY (256u << 20)

typedef struct dreq {
    uint64_t handle;
    json_t *params; /* kept for a resubmit after a reconnect */
    bool sent;
    int attempts;
    struct dreq *next;
} dreq;

enum { P_NONE = 0, P_CONNECTING, P_CONNECTED, P_CLOSING };

/* One spawned daemon process. Each spawn gets its own handle: the previous
 * child's handle may still be open (its exit not yet reaped) when a killed
 * daemon is replaced, and a libuv handle must never be initialised twice. */
typedef struct dproc {
    uv_process_t h;
    struct lode_lsp_daemon *dm; /* NULL once detached by lode_lsp_daemon_close */
    struct dproc *next;
} dproc;

struct lode_lsp_daemon {
    uv_loop_t *loop;
    lode_lsp *lsp;
    uv_pipe_t pipe;
    uv_connect_t creq;
    int pstate;
    uv_timer_t timer;
    dproc *procs;                 /* spawned children whose handles are open */
    dproc *cur;                   /* the latest spawn, while it runs */
    bool proc_alive;              /* the latest spawn runs */
    int proc_exit;                /* -1 while unknown */
    bool spawned;                 /* spawned in this connect episode */
    double t_spawn, t_report;
    lode_rpc_reader rd;
    char *model, *socket;
    char sock[4096], exe[4096];
    dreq *reqs;
    uint64_t next_handle;
    bool closed;
    bool live; /* the daemon answered lode/status on this connection */
    int connect_status;
};

static void try_connect(lode_lsp_daemon *dm);

static void report(lode_lsp_daemon *dm, lode_lsp_be_state st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void report(lode_lsp_daemon *dm, lode_lsp_be_state st, const char *fmt, ...) {
    char buf[LODE_ERROR_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (dm->lsp) lode_lsp_backend_state(dm->lsp, st, buf);
}

/* ---- writing ----------------------------------------------------------------- */

static void send_msg(lode_lsp_daemon *dm, json_t *v) {
    if (dm->pstate != P_CONNECTED) {
        json_decref(v);
        return;
    }
    lode_rpc_write((uv_stream_t *)&dm->pipe, v); /* a failed write shows up as a read error / EOF */
}

static void send_req(lode_lsp_daemon *dm, dreq *r) {
    r->sent = true;
    r->attempts++;
    send_msg(dm, json_pack("{s:s, s:I, s:s, s:O}", "jsonrpc", "2.0", "id", (json_int_t)r->handle, "method",
                           "lode/infill", "params", r->params));
}

/* ---- request bookkeeping ------------------------------------------------------- */
static dreq *take(lode_lsp_daemon *dm, uint64_t h) {
    for (dreq **pp = &dm->reqs; *pp; pp = &(*pp)->next)
        if ((*pp)->handle == h) {
            dreq *r = *pp;
            *pp = r->next;
            return r;
        }
    return NULL;
}

static void dreq_free(dreq *r) {
    json_decref(r->params);
    lode_free(r);
}

/* Answer every queued (or, with all, every) request with an error. */
static void fail_reqs(lode_lsp_daemon *dm, bool all, const char *why) {
    for (dreq **pp = &dm->reqs; *pp;) {
        dreq *r = *pp;
        if (!all && r->sent) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        uint64_t h = r->handle;
        dreq_free(r);
        if (dm->lsp) lode_lsp_backend_done(dm->lsp, h, NULL, LODE_RPC_REQUEST_FAILED, why);
    }
}

static void log_path(char *buf, size_t n) {
    const char *x = getenv("XDG_STATE_HOME"), *h = getenv("HOME");
    if (x && *x) snprintf(buf, n, "%s/lode/lode.log", x);
    else snprintf(buf, n, "%s/.local/state/lode/lode.log", h ? h : "/tmp");
}

/* The last "error" line of the daemon's log, for the user. */
static void log_tail_error(char *out, size_t n) {
    char path[4200];
    log_path(path, sizeof path);
    snprintf(out, n, "see %.900s", path);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char buf[8192];
    long sz = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : 0;
    if (sz > (long)sizeof buf - 1) fseek(f, sz - (long)sizeof buf + 1, SEEK_SET);
    else fseek(f, 0, SEEK_SET);
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = 0;
    char *best = NULL;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
        if (strstr(line, "error")) best = line;
    if (best) snprintf(out, n, "%.600s (log: %.400s)", best, path);
}

/* ---- reading ------------------------------------------------------------------------ */
static void on_pipe_closed(uv_handle_t *h) {
    lode_lsp_daemon *dm = h->data;
    dm->pstate = P_NONE;
    lode_rpc_reader_free(&dm->rd);
    if (!dm->closed && dm->reqs) try_connect(dm); /* requeued work: reconnect now */
}

static void drop_connection(lode_lsp_daemon *dm, const char *why) {
    if (dm->pstate == P_CLOSING || dm->pstate == P_NONE) return;
    bool was_connected = dm->pstate == P_CONNECTED;
    dm->pstate = P_CLOSING;
    dm->live = false;
    uv_close((uv_handle_t *)&dm->pipe, on_pipe_closed);
    if (!was_connected) return;
    /* Work in flight goes again once; a request that already failed this
     * way twice is answered. */
    for (dreq **pp = &dm->reqs; *pp;) {
        dreq *r = *pp;
        if (r->sent && r->attempts >= 2) {
            *pp = r->next;
            uint64_t h = r->handle;
            dreq_free(r);
            if (dm->lsp) lode_lsp_backend_done(dm->lsp, h, NULL, LODE_RPC_REQUEST_FAILED, why);
            continue;
        }
        r->sent = false;
        pp = &r->next;
    }
    dm->spawned = false;
    if (dm->reqs) report(dm, LODE_LSP_BE_CONNECTING, "%s; reconnecting to %s", why, dm->sock);
    else report(dm, LODE_LSP_BE_CONNECTING, "%s; it is reached (or started) again at the next completion", why);
}

static void on_message(lode_lsp_daemon *dm, json_t *msg) {
    json_t *id = json_object_get(msg, "id");
    if (json_object_get(msg, "method") || !id) return; /* lode/partial etc. */
    if (json_is_string(id)) { /* "status": our lode/status after connecting */
        json_t *res = json_object_get(msg, "result");
        if (res && dm->lsp) lode_lsp_backend_info(dm->lsp, res);
        const char *m = json_string_value(json_object_get(res, "model"));
        report(dm, LODE_LSP_BE_READY, "connected to the lode daemon at %s (model %s)", dm->sock, m ? m : "?");
        /* Only now is the daemon known to be alive: a dying one can still
         * accept a connection from its listen backlog, and a request sent
         * there would be counted as a failed attempt. */
        dm->live = true;
        for (dreq *r = dm->reqs; r; r = r->next)
            if (!r->sent) send_req(dm, r);
        return;
    }
    dreq *r = take(dm, (uint64_t)json_integer_value(id));
    if (!r) return; /* cancelled meanwhile */
    uint64_t h = r->handle;
    dreq_free(r);
    json_t *e = json_object_get(msg, "error");
    if (!dm->lsp) return;
    if (e)
        lode_lsp_backend_done(dm->lsp, h, NULL, (int)json_integer_value(json_object_get(e, "code")),
                              json_string_value(json_object_get(e, "message")));
    else lode_lsp_backend_done(dm->lsp, h, json_object_get(msg, "result"), 0, NULL);
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
    (void)h;
    b->base = lode_xmalloc(sz);
    b->len = sz;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    lode_lsp_daemon *dm = st->data;
    if (n < 0) {
        lode_free(b->base);
        drop_connection(dm, n == UV_EOF ? "the lode daemon closed the connection" : "lost the lode daemon connection");
        return;
    }
    lode_rpc_reader_feed(&dm->rd, b->base, (size_t)n);
    lode_free(b->base);
    for (;;) {
        json_t *msg;
        lode_rpc_result r = lode_rpc_reader_next(&dm->rd, &msg);
        if (r == LODE_RPC_NONE) break;
        if (r == LODE_RPC_MESSAGE) {
            on_message(dm, msg);
            json_decref(msg);
            if (dm->pstate != P_CONNECTED) break;
        } else if (r == LODE_RPC_BROKEN) {
            drop_connection(dm, "unreadable reply from the lode daemon");
            break;
        }
    }
}

/* ---- connecting and spawning ------------------------------------------------------------- */
static void on_proc_closed(uv_handle_t *h) { lode_free(h->data); }

static void on_proc_exit(uv_process_t *h, int64_t status, int sig) {
    dproc *p = h->data;
    lode_lsp_daemon *dm = p->dm;
    if (dm) {
        for (dproc **pp = &dm->procs; *pp; pp = &(*pp)->next)
            if (*pp == p) {
                *pp = p->next;
                break;
            }
        if (dm->cur == p) {
            dm->cur = NULL;
            dm->proc_alive = false;
            dm->proc_exit = sig ? 128 + sig : (int)status;
        }
    }
    uv_close((uv_handle_t *)h, on_proc_closed);
}

static bool spawn_daemon(lode_lsp_daemon *dm, const char *model) {
    char *args[] = {dm->exe, "serve", "-m", (char *)model, "--socket", dm->sock, NULL};
    uv_stdio_container_t io[3] = {{.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_IGNORE}};
    uv_process_options_t o = {.exit_cb = on_proc_exit, .file = dm->exe, .args = args, .flags = UV_PROCESS_DETACHED,
                              .stdio_count = 3, .stdio = io};
    dproc *p = lode_xcalloc(1, sizeof *p);
    p->dm = dm;
    p->h.data = p;
    int e = uv_spawn(dm->loop, &p->h, &o);
    if (e) {
        /* libuv still requires the handle to be closed after a failed spawn. */
        p->dm = NULL;
        uv_close((uv_handle_t *)&p->h, on_proc_closed);
        report(dm, LODE_LSP_BE_UNREACHABLE, "cannot start `%s serve`: %s", dm->exe, uv_strerror(e));
        return false;
    }
    p->next = dm->procs;
    dm->procs = dm->cur = p;
    dm->proc_alive = true;
    dm->proc_exit = -1;
    uv_unref((uv_handle_t *)&p->h); /* the editor's session does not wait for the daemon */
    return true;
}

static void on_timer(uv_timer_t *t) { try_connect(t->data); }

static void retry_later(lode_lsp_daemon *dm) { uv_timer_start(&dm->timer, on_timer, RETRY_MS, 0); }

static void on_attempt_closed(uv_handle_t *h) {
    lode_lsp_daemon *dm = h->data;
    dm->pstate = P_NONE;
    int status = dm->connect_status;
    if (dm->closed) return;
    const char *model = dm->model ? dm->model : NULL;
    double now = lode_time_s();
    if (!dm->spawned) {
        if (!model) {
            report(dm, LODE_LSP_BE_UNREACHABLE,
                   "no lode daemon at %s (%s) and no model to start one with: set \"model\" in the editor's lode "
                   "settings (initializationOptions), pass `lode lsp -m MODEL`, or set LODE_MODEL",
                   dm->sock, uv_strerror(status));
            fail_reqs(dm, false, "no lode daemon");
            return;
        }
        if (!spawn_daemon(dm, model)) {
            fail_reqs(dm, false, "cannot start the lode daemon");
            return;
        }
        dm->spawned = true;
        dm->t_spawn = dm->t_report = now;
        report(dm, LODE_LSP_BE_STARTING, "starting the lode daemon: loading %s", model);
        retry_later(dm);
        return;
    }
    if (!dm->proc_alive && dm->proc_exit > 0) {
        char why[1024];
        log_tail_error(why, sizeof why);
        /* Another editor's daemon won the single-instance lock: wait for it. */
        if (strstr(why, "already running") && now - dm->t_spawn < START_TIMEOUT_S) {
            retry_later(dm);
            return;
        }
        dm->spawned = false;
        report(dm, LODE_LSP_BE_UNREACHABLE, "the lode daemon exited with status %d while starting: %s", dm->proc_exit,
               why);
        fail_reqs(dm, false, "the lode daemon failed to start");
        return;
    }
    if (now - dm->t_spawn > START_TIMEOUT_S) {
        char why[1024];
        log_tail_error(why, sizeof why);
        dm->spawned = false;
        report(dm, LODE_LSP_BE_UNREACHABLE, "the lode daemon did not open %s within %.0f s: %s", dm->sock,
               START_TIMEOUT_S, why);
        fail_reqs(dm, false, "the lode daemon did not start in time");
        return;
    }
    if (now - dm->t_report >= 2.0) {
        dm->t_report = now;
        report(dm, LODE_LSP_BE_STARTING, "loading %s (%.0f s)", model, now - dm->t_spawn);
    }
    retry_later(dm);
}

static void on_connect(uv_connect_t *c, int status) {
    lode_lsp_daemon *dm = c->data;
    if (dm->closed) return;
    if (status == 0) {
        dm->pstate = P_CONNECTED;
        dm->spawned = false;
        lode_rpc_reader_init(&dm->rd, MAX_REPLY);
        uv_read_start((uv_stream_t *)&dm->pipe, on_alloc, on_read);
        dm->live = false;
        send_msg(dm, json_pack("{s:s, s:s, s:s, s:{}}", "jsonrpc", "2.0", "id", "status", "method", "lode/status",
                               "params")); /* its answer releases the queued requests */
        return;
    }
    /* No daemon (yet): close this attempt, then decide once it is closed. */
    dm->connect_status = status;
    dm->pstate = P_CLOSING;
    uv_close((uv_handle_t *)&dm->pipe, on_attempt_closed);
}

static void try_connect(lode_lsp_daemon *dm) {
    if (dm->closed || dm->pstate != P_NONE) return;
    uv_timer_stop(&dm->timer);
    if (dm->socket) snprintf(dm->sock, sizeof dm->sock, "%s", dm->socket);
    else lode_daemon_default_socket(dm->sock, sizeof dm->sock);
    uv_pipe_init(dm->loop, &dm->pipe, 0);
    dm->pipe.data = dm;
    dm->creq.data = dm;
    dm->pstate = P_CONNECTING;
    if (!dm->spawned) report(dm, LODE_LSP_BE_CONNECTING, "connecting to the lode daemon at %s", dm->sock);
    uv_pipe_connect(&dm->creq, &dm->pipe, dm->sock, on_connect);
}

/* ---- the backend vtable ------------------------------------------------------------------ */
static uint64_t be_infill(void *ctx, json_t *params) {
    lode_lsp_daemon *dm = ctx;
    dreq *r = lode_xcalloc(1, sizeof *r);
    r->handle = ++dm->next_handle;
    r->params = params;
    r->next = dm->reqs;
    dm->reqs = r;
    if (dm->pstate == P_CONNECTED && dm->live) send_req(dm, r);
    else if (dm->pstate == P_NONE && !uv_is_active((uv_handle_t *)&dm->timer)) try_connect(dm);
    return r->handle;
}

static void be_cancel(void *ctx, uint64_t h) {
    lode_lsp_daemon *dm = ctx;
    dreq *r = take(dm, h);
    if (!r) return;
    if (r->sent)
        send_msg(dm, json_pack("{s:s, s:s, s:{s:I}}", "jsonrpc", "2.0", "method", "$/cancelRequest", "params", "id",
                               (json_int_t)h));
    dreq_free(r);
}

static void be_configure(void *ctx, const char *model, const char *socket) {
    lode_lsp_daemon *dm = ctx;
    bool sock_changed = (socket == NULL) != (dm->socket == NULL) || (socket && strcmp(socket, dm->socket));
    lode_free(dm->model);
    dm->model = model ? lode_xstrdup(model) : NULL;
    lode_free(dm->socket);
    dm->socket = socket ? lode_xstrdup(socket) : NULL;
    if (sock_changed && dm->pstate == P_CONNECTED) drop_connection(dm, "the socket setting changed");
    dm->spawned = false;
    if (dm->pstate == P_NONE) try_connect(dm); /* start early: the model loads while the user reads */
}

const lode_lsp_backend_i lode_lsp_daemon_backend = {be_infill, be_cancel, be_configure};

lode_lsp_daemon *lode_lsp_daemon_new(uv_loop_t *loop, const char *exe) {
    lode_lsp_daemon *dm = lode_xcalloc(1, sizeof *dm);
    dm->loop = loop;
    snprintf(dm->exe, sizeof dm->exe, "%s", exe);
    uv_timer_init(loop, &dm->timer);
    dm->timer.data = dm;
    dm->proc_exit = -1;
    return dm;
}

void lode_lsp_daemon_attach(lode_lsp_daemon *dm, lode_lsp *l) { dm->lsp = l; }

void lode_lsp_daemon_close(lode_lsp_daemon *dm) {
    dm->closed = true;
    dm->lsp = NULL;
    if (dm->pstate == P_CONNECTED || dm->pstate == P_CONNECTING) {
        dm->pstate = P_CLOSING;
        uv_close((uv_handle_t *)&dm->pipe, on_pipe_closed);
    }
    uv_close((uv_handle_t *)&dm->timer, NULL);
    while (dm->procs) { /* the daemons live on; only our handles go */
        dproc *p = dm->procs;
        dm->procs = p->next;
        p->dm = NULL;
        uv_close((uv_handle_t *)&p->h, on_proc_closed);
    }
    dm->cur = NULL;
}

void lode_lsp_daemon_free(lode_lsp_daemon *dm) {
    if (!dm) return;
    while (dm->reqs) {
        dreq *r = dm->reqs;
        dm->reqs = r->next;
        dreq_free(r);
    }
    lode_rpc_reader_free(&dm->rd);
    lode_free(dm->model);
    lode_free(dm->socket);
    lode_free(dm);
}
