/*
 * lsp_server.c — `lode lsp` on stdin/stdout: the libuv loop that feeds the
 * session (lsp_session.c) with framed messages from the editor, writes its
 * replies, runs its debounce deadlines on one timer, and hosts the daemon
 * backend (lsp_daemon.c).
 *
 * Framing reuses the daemon's reader (daemon/jsonrpc.c). Unlike a socket,
 * stdio cannot be reopened, so a framing error (bad header, bad
 * Content-Length) is answered -32700 and the stream is resynchronised at
 * the next "Content-Length:" header instead of being closed.
 *
 * Output is written synchronously (the editor reads its pipe; replies are
 * small), so a reply is on the wire before the next message is handled.
 * stdout carries protocol only; diagnostics go to stderr and logMessage.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>

#include "jsonrpc.h"
#include "lode_context.h"
#include "lode_lsp.h"

#define MAX_MESSAGE (64u << 20)

typedef struct stdio_server {
    uv_loop_t loop;
    union {
        uv_pipe_t pipe;
        uv_tty_t tty;
    } in;
    bool in_is_file, in_open;
    uv_fs_t fsreq;
    char fsbuf[65536];
    int64_t fsoff;
    int in_fd, out_fd;
    bool out_dead;
    uv_timer_t timer;
    lode_rpc_reader rd;
    bool resync;     /* looking for the next header after a framing error */
    char carry[16];  /* tail of the last chunk while resyncing */
    size_t n_carry;
    lode_lsp *lsp;
    lode_lsp_daemon *dm;
    bool done;
    int exit_code;
} stdio_server;

/* ---- output -------------------------------------------------------------------- */
static void write_all(stdio_server *s, const char *buf, size_t n) {
    while (n && !s->out_dead) {
        ssize_t w = write(s->out_fd, buf, n);
        if (w > 0) {
            buf += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd p = {.fd = s->out_fd, .events = POLLOUT};
            poll(&p, 1, 1000);
        } else {
            s->out_dead = true; /* the editor is gone */
        }
    }
}

static void host_send(void *ud, json_t *msg) {
    stdio_server *s = ud;
    size_t n;
    char *buf = lode_rpc_frame(msg, &n);
    json_decref(msg);
    write_all(s, buf, n);
    lode_free(buf);
}

/* ---- input --------------------------------------------------------------------- */
static void finish(stdio_server *s, int code) {
    if (s->done) return;
    s->done = true;
    s->exit_code = code;
    if (s->in_open && !s->in_is_file) uv_read_stop((uv_stream_t *)&s->in.pipe);
    uv_stop(&s->loop);
}

static void on_timer(uv_timer_t *t);

static void arm_timer(stdio_server *s) {
    double dl = lode_lsp_next_deadline(s->lsp);
    if (dl < 0) {
        uv_timer_stop(&s->timer);
        return;
    }
    double ms = (dl - lode_time_s()) * 1000.0;
    uv_timer_start(&s->timer, on_timer, ms > 0 ? (uint64_t)ms + 1 : 0, 0);
}

static void on_timer(uv_timer_t *t) {
    stdio_server *s = t->loop->data;
    lode_lsp_tick(s->lsp, lode_time_s());
    arm_timer(s);
}

/* While resyncing, drop bytes up to the next "Content-Length:" header. */
static void feed_resync(stdio_server *s, const char *data, size_t n) {
    static const char key[] = "content-length:";
    const size_t kl = sizeof key - 1;
    /* Search carry + data without copying data: check the seam first. */
    char seam[32];
    size_t sn = s->n_carry + (n < kl ? n : kl);
    memcpy(seam, s->carry, s->n_carry);
    memcpy(seam + s->n_carry, data, sn - s->n_carry);
    for (size_t i = 0; i + kl <= sn; i++)
        if (!strncasecmp(seam + i, key, kl)) {
            s->resync = false;
            if (i < s->n_carry) lode_rpc_reader_feed(&s->rd, seam + i, s->n_carry - i);
            size_t from = i < s->n_carry ? 0 : i - s->n_carry;
            lode_rpc_reader_feed(&s->rd, data + from, n - from);
            s->n_carry = 0;
            return;
        }
    for (size_t i = 0; i + kl <= n; i++)
        if (!strncasecmp(data + i, key, kl)) {
            s->resync = false;
            s->n_carry = 0;
            lode_rpc_reader_feed(&s->rd, data + i, n - i);
            return;
        }
    /* Keep the last kl-1 bytes: a header may straddle chunks. */
    size_t keep = kl - 1;
    if (n >= keep) {
        memcpy(s->carry, data + n - keep, keep);
        s->n_carry = keep;
    } else {
        size_t tot = s->n_carry + n, drop = tot > keep ? tot - keep : 0;
        memmove(s->carry, s->carry + drop, s->n_carry - drop);
        memcpy(s->carry + s->n_carry - drop, data, n);
        s->n_carry = tot - drop;
    }
}

static void on_bytes(stdio_server *s, const char *data, size_t n) {
    if (s->resync) feed_resync(s, data, n);
    else lode_rpc_reader_feed(&s->rd, data, n);
    while (!s->done) {
        json_t *msg;
        lode_rpc_result r = lode_rpc_reader_next(&s->rd, &msg);
        if (r == LODE_RPC_NONE) break;
        if (r == LODE_RPC_MESSAGE) {
            lode_lsp_handle(s->lsp, msg);
            json_decref(msg);
            if (lode_lsp_exit_code(s->lsp) >= 0) finish(s, lode_lsp_exit_code(s->lsp));
        } else if (r == LODE_RPC_BAD_JSON) {
            lode_lsp_parse_error(s->lsp, "the message body is not valid JSON (or not valid UTF-8)");
        } else { /* framing lost: answer, then look for the next header */
            char why[160];
            snprintf(why, sizeof why, "bad message framing: %s", s->rd.error);
            lode_lsp_parse_error(s->lsp, why);
            size_t rest = s->rd.len - s->rd.off;
            char *tail = rest > 1 ? lode_xmalloc(rest - 1) : NULL;
            if (tail) memcpy(tail, s->rd.buf + s->rd.off + 1, rest - 1); /* skip the bad header's first byte */
            lode_rpc_reader_free(&s->rd);
            lode_rpc_reader_init(&s->rd, MAX_MESSAGE);
            s->resync = true;
            s->n_carry = 0;
            if (tail) feed_resync(s, tail, rest - 1);
            lode_free(tail);
        }
    }
    if (s->out_dead) finish(s, 1);
    if (!s->done) arm_timer(s);
}

static void on_eof(stdio_server *s) {
    /* The editor closed our stdin without `exit`: behave as if it sent it. */
    json_t *ex = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method", "exit");
    lode_lsp_handle(s->lsp, ex);
    json_decref(ex);
    finish(s, lode_lsp_exit_code(s->lsp));
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
    (void)h;
    b->base = lode_xmalloc(sz);
    b->len = sz;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    stdio_server *s = st->loop->data;
    if (n > 0) on_bytes(s, b->base, (size_t)n);
    else if (n < 0) on_eof(s);
    lode_free(b->base);
}

static void on_fs_read(uv_fs_t *r) {
    stdio_server *s = r->loop->data;
    ssize_t n = r->result;
    uv_fs_req_cleanup(r);
    if (n <= 0) {
        on_eof(s);
        return;
    }
    s->fsoff += n;
    on_bytes(s, s->fsbuf, (size_t)n);
    if (!s->done) {
        uv_buf_t b = uv_buf_init(s->fsbuf, sizeof s->fsbuf);
        uv_fs_read(&s->loop, &s->fsreq, s->in_fd, &b, 1, s->fsoff, on_fs_read);
    }
}

static bool open_input(stdio_server *s) {
    uv_handle_type t = uv_guess_handle(s->in_fd);
    int e = 0;
    if (t == UV_TTY) {
        e = uv_tty_init(&s->loop, &s->in.tty, s->in_fd, 1);
    } else if (t == UV_NAMED_PIPE || t == UV_TCP) {
        e = uv_pipe_init(&s->loop, &s->in.pipe, 0);
        if (!e) e = uv_pipe_open(&s->in.pipe, s->in_fd);
    } else { /* a regular file (a recorded session replayed with <) */
        s->in_is_file = true;
        s->in_open = true;
        uv_buf_t b = uv_buf_init(s->fsbuf, sizeof s->fsbuf);
        return uv_fs_read(&s->loop, &s->fsreq, s->in_fd, &b, 1, 0, on_fs_read) == 0;
    }
    if (e) {
        fprintf(stderr, "lode lsp: cannot read stdin: %s\n", uv_strerror(e));
        return false;
    }
    s->in_open = true;
    return uv_read_start((uv_stream_t *)&s->in.pipe, on_alloc, on_read) == 0;
}

static void exe_path(char *buf, size_t n) {
    ssize_t k = readlink("/proc/self/exe", buf, n - 1);
    if (k <= 0) snprintf(buf, n, "lode");
    else buf[k] = 0;
}

int lode_lsp_run_stdio(const lode_lsp_opts *o, int in_fd, int out_fd) {
    signal(SIGPIPE, SIG_IGN);
    stdio_server *s = lode_xcalloc(1, sizeof *s);
    s->in_fd = in_fd;
    s->out_fd = out_fd;
    s->exit_code = 1;
    uv_loop_init(&s->loop);
    s->loop.data = s;
    uv_timer_init(&s->loop, &s->timer);
    lode_rpc_reader_init(&s->rd, MAX_MESSAGE);
    char exe[4096];
    exe_path(exe, sizeof exe);
    s->dm = lode_lsp_daemon_new(&s->loop, exe);
    lode_lsp_host h = {host_send, s, &lode_lsp_daemon_backend, s->dm};
    s->lsp = lode_lsp_new(&h, o);
    lode_lsp_daemon_attach(s->dm, s->lsp);
    /* Project context (tree-sitter + workspace index); LODE_NO_PROJECT_CONTEXT=1: the plain window. */
    const char *npc = getenv("LODE_NO_PROJECT_CONTEXT");
    lode_ctx_lsp *cx = npc && *npc && strcmp(npc, "0") ? NULL : lode_ctx_lsp_new(NULL, NULL);
    if (cx) lode_ctx_lsp_attach(cx, s->lsp);
    if (open_input(s)) uv_run(&s->loop, UV_RUN_DEFAULT);
    /* Teardown: pending requests are answered, the daemon connection and
     * every handle closed (a daemon we started keeps running). */
    lode_lsp_daemon_close(s->dm);
    lode_lsp_free(s->lsp);
    lode_ctx_lsp_free(cx);
    if (s->in_open && !s->in_is_file) uv_close((uv_handle_t *)&s->in.pipe, NULL);
    uv_close((uv_handle_t *)&s->timer, NULL);
    for (int i = 0; i < 1000 && uv_run(&s->loop, UV_RUN_NOWAIT); i++) usleep(1000);
    uv_loop_close(&s->loop);
    lode_lsp_daemon_free(s->dm);
    lode_rpc_reader_free(&s->rd);
    int rc = s->exit_code;
    lode_free(s);
    return rc;
}
