/*
 * lode_lsp.h — `lode lsp`: the stdio Language Server an editor spawns.
 *
 * Where the state lives: each editor gets its own `lode lsp` process, which
 * owns everything LSP (the negotiated position encoding, the open documents,
 * settings, pending requests, debounce). The user's daemon (`lode serve`,
 * docs/daemon.md) owns only the model, the KV/prefix cache and generation:
 * `lode lsp` sends it `lode/infill` with a prefix and suffix and forwards
 * `$/cancelRequest`. A daemon restart therefore loses nothing an editor
 * needs; `lode lsp` reconnects (starting the daemon when it is absent) and
 * resubmits what was in flight.
 *
 * Layers, each usable alone (tests drive them in-process):
 *   - documents and position encodings (lsp_doc.c): UTF-8 text, line index,
 *     LSP positions in utf-8 / utf-16 / utf-32 code units;
 *   - the completion pipeline (lsp_pipeline.c): a pluggable context
 *     provider (plain prefix/suffix window by default; the tree-sitter
 *     context builder replaces it) and the post-processing of model output;
 *   - the session (lsp_session.c, lsp_methods.c): the LSP state machine and
 *     dispatch table. It does no I/O: messages go out through a host
 *     callback, generation through a backend vtable, time through
 *     lode_lsp_tick, so it runs the same under libuv and in a unit test;
 *   - the host (lsp_server.c, lsp_daemon.c): libuv on stdin/stdout and the
 *     daemon socket, daemon spawning and reconnection.
 *
 * Threading: everything runs on one thread (the host's loop).
 */
#ifndef LODE_LSP_H
#define LODE_LSP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lode_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- position encodings and documents ------------------------------------ */
typedef enum lode_lsp_enc {
    LODE_LSP_ENC_UTF16 = 0, /* LSP's default and mandatory encoding */
    LODE_LSP_ENC_UTF8,
    LODE_LSP_ENC_UTF32
} lode_lsp_enc;

/* "utf-8" / "utf-16" / "utf-32". */
const char *lode_lsp_enc_name(lode_lsp_enc e);

typedef struct lode_lsp_pos {
    int64_t line, character;
} lode_lsp_pos;

/* A text document: UTF-8 bytes with a lazily rebuilt line index. Lines end
 * at "\n", "\r\n" or a lone "\r" (the LSP rule). */
typedef struct lode_lsp_doc lode_lsp_doc;

/* Copies text (n bytes, valid UTF-8 — jansson guarantees it for JSON
 * strings). Caller frees with lode_lsp_doc_free. NULL on OOM. */
lode_lsp_doc *lode_lsp_doc_new(const char *text, size_t n);
void lode_lsp_doc_free(lode_lsp_doc *d);
/* Borrowed, valid until the next edit. Always NUL-terminated. */
const char *lode_lsp_doc_text(const lode_lsp_doc *d, size_t *len);
size_t lode_lsp_doc_lines(lode_lsp_doc *d);

/* Position → byte offset. A line past the last one is LODE_ERR_RANGE (the
 * caller answers -32602); a character past the end of its line means the
 * end of the line (LSP rule); a position inside a UTF-16 surrogate pair or
 * inside a UTF-8 sequence rounds down to the code point's start. */
lode_status lode_lsp_doc_offset(lode_lsp_doc *d, lode_lsp_enc enc, lode_lsp_pos p, size_t *off, lode_error *err);
/* Byte offset (clamped to the text) → position. */
lode_lsp_pos lode_lsp_doc_position(lode_lsp_doc *d, lode_lsp_enc enc, size_t off);
/* Replace [start, end) given as positions (clamped to the document: an
 * editor out of sync must not crash us) with text. */
lode_status lode_lsp_doc_edit(lode_lsp_doc *d, lode_lsp_enc enc, lode_lsp_pos start, lode_lsp_pos end, const char *text,
                              size_t n, lode_error *err);
/* Replace everything. */
lode_status lode_lsp_doc_set(lode_lsp_doc *d, const char *text, size_t n, lode_error *err);

/* ---- completion pipeline -------------------------------------------------- */
/* What a context provider sees: the document and the cursor. Borrowed. */
typedef struct lode_lsp_ctx_req {
    const char *uri, *language;
    const char *text; /* whole document, UTF-8 */
    size_t len, cursor; /* cursor: byte offset */
    size_t budget;      /* bytes of context wanted in all */
} lode_lsp_ctx_req;

/* What it returns: the prompt pieces for lode/infill. The provider
 * allocates prefix/suffix with lode_xmalloc (freed by lode_lsp_ctx_clear)
 * and may add extra chunks ([{path, text}], owned). */
typedef struct lode_lsp_ctx {
    char *prefix, *suffix;
    size_t prefix_len, suffix_len;
    json_t *extra; /* NULL or an array; owned */
} lode_lsp_ctx;

typedef lode_status (*lode_lsp_context_fn)(void *ud, const lode_lsp_ctx_req *req, lode_lsp_ctx *out, lode_error *err);

/* The default provider: a window of `budget` bytes around the cursor, 3/4
 * before it, cut at line boundaries (and never inside a code point). */
lode_status lode_lsp_context_window(void *ud, const lode_lsp_ctx_req *req, lode_lsp_ctx *out, lode_error *err);
void lode_lsp_ctx_clear(lode_lsp_ctx *c);

/* Post-process model output for the cursor: when the cursor line has text
 * after the cursor only the first line is kept; text that repeats the start
 * of the rest of the line is dropped; trailing whitespace is trimmed.
 * Returns a lode_xmalloc'ed string (maybe empty); *n its length. */
char *lode_lsp_postprocess(const char *gen, size_t gen_len, const char *line_rest, size_t rest_len, size_t *n);

/* ---- the session ----------------------------------------------------------- */
typedef struct lode_lsp lode_lsp;

/* The backend: where generation happens (the daemon connection, or a fake
 * in tests). infill takes params for `lode/infill` (stolen) and returns a
 * non-zero handle; the result comes back through lode_lsp_backend_done.
 * cancel may be called for a handle that already finished (no-op). */
typedef struct lode_lsp_backend_i {
    uint64_t (*infill)(void *ctx, json_t *params);
    void (*cancel)(void *ctx, uint64_t handle);
    /* Settings that concern the backend changed (model, socket); either may be NULL. */
    void (*configure)(void *ctx, const char *model, const char *socket);
} lode_lsp_backend_i;

typedef struct lode_lsp_host {
    /* Send one message to the editor (stolen). */
    void (*send)(void *ud, json_t *msg);
    void *ud;
    const lode_lsp_backend_i *be;
    void *be_ctx;
} lode_lsp_host;

typedef struct lode_lsp_opts {
    const char *model;  /* -m; NULL: initializationOptions, then $LODE_MODEL */
    const char *socket; /* --socket; NULL: the per-user default */
} lode_lsp_opts;

/* Caller frees with lode_lsp_free. The host struct is copied. */
lode_lsp *lode_lsp_new(const lode_lsp_host *host, const lode_lsp_opts *o);
/* Answers every pending request (RequestCancelled) before freeing. */
void lode_lsp_free(lode_lsp *l);

/* Replace the context provider (NULL restores the window). */
void lode_lsp_set_context_provider(lode_lsp *l, lode_lsp_context_fn fn, void *ud);

/* Hooks for a context provider that keeps its own view of the workspace
 * (lsp/context_lsp.c): it learns the roots, follows the documents edit by
 * edit, and may replace the post-processing. Every callback may be NULL. */
typedef struct lode_lsp_hooks {
    void (*init)(void *ud, json_t *initialize_params); /* borrowed; after the answer */
    /* Settings applied (borrowed; the object itself, not {"lode": ...}): for
     * the provider's own keys (contextTokens). */
    void (*settings)(void *ud, json_t *settings);
    void (*open)(void *ud, const char *uri, const char *lang, const char *text, size_t n);
    /* Bytes [start, old_end) were replaced by text[0..n); `after` is the
     * whole document after the edit. start == SIZE_MAX: the range is not
     * known (a full change or a clamped one): take `after` as it is. */
    void (*change)(void *ud, const char *uri, size_t start, size_t old_end, const char *text, size_t n,
                   const char *after, size_t after_n);
    void (*close)(void *ud, const char *uri);
    /* In place of lode_lsp_postprocess: `view` is the text the model saw
     * and `cursor` the insertion point in it. Returns lode_xmalloc'd text. */
    char *(*post)(void *ud, const char *uri, const char *lang, const char *view, size_t view_n, size_t cursor,
                  const char *gen, size_t gen_n, size_t *n);
} lode_lsp_hooks;
/* Install hooks (copied; NULL removes them). */
void lode_lsp_set_hooks(lode_lsp *l, const lode_lsp_hooks *h, void *ud);

/* Feed one message from the editor (borrowed). */
void lode_lsp_handle(lode_lsp *l, json_t *msg);
/* The editor sent bytes that are not a message: answer -32700 (id null). */
void lode_lsp_parse_error(lode_lsp *l, const char *why);
/* The backend finished `handle`: result (borrowed) or an error code (a
 * JSON-RPC code) with a message. */
void lode_lsp_backend_done(lode_lsp *l, uint64_t handle, json_t *result, int code, const char *message);

/* Backend state, reported to the user (logMessage / showMessage /
 * $/progress / lode/status). */
typedef enum lode_lsp_be_state {
    LODE_LSP_BE_CONNECTING = 0, /* trying the socket */
    LODE_LSP_BE_STARTING,       /* daemon spawned, model loading */
    LODE_LSP_BE_READY,
    LODE_LSP_BE_UNREACHABLE     /* gave up: message says why and what to do */
} lode_lsp_be_state;
void lode_lsp_backend_state(lode_lsp *l, lode_lsp_be_state st, const char *message);
/* The backend learned what the daemon serves (borrowed lode/status result). */
void lode_lsp_backend_info(lode_lsp *l, json_t *status);

/* Timers: the host calls tick when the time returned by next_deadline
 * (lode_time_s() clock; < 0 = none) has come. */
double lode_lsp_next_deadline(const lode_lsp *l);
void lode_lsp_tick(lode_lsp *l, double now);

/* After `exit`: the process exit code (0 when shutdown came first, else 1);
 * -1 while the session goes on. */
int lode_lsp_exit_code(const lode_lsp *l);
/* The model/socket the backend should use now (borrowed; may be NULL). */
const char *lode_lsp_model(const lode_lsp *l);
const char *lode_lsp_socket(const lode_lsp *l);

/* ---- the daemon backend (libuv) -------------------------------------------------- */
/* A backend that talks to `lode serve` over its unix socket: connects on
 * configure/first request, spawns `EXE serve -m MODEL --socket PATH`
 * (detached, it outlives this process) when no daemon answers, reports the
 * loading as LODE_LSP_BE_STARTING, and reconnects after the daemon goes
 * away, resubmitting what was in flight once. */
struct uv_loop_s;
typedef struct lode_lsp_daemon lode_lsp_daemon;
extern const lode_lsp_backend_i lode_lsp_daemon_backend;
/* exe: the lode binary to spawn (borrowed, copied). */
lode_lsp_daemon *lode_lsp_daemon_new(struct uv_loop_s *loop, const char *exe);
/* The session the results go to (set before the first infill). */
void lode_lsp_daemon_attach(lode_lsp_daemon *dm, lode_lsp *l);
/* Close the handles (never kills a spawned daemon); the caller runs the
 * loop until they are closed, then calls lode_lsp_daemon_free. */
void lode_lsp_daemon_close(lode_lsp_daemon *dm);
void lode_lsp_daemon_free(lode_lsp_daemon *dm);

/* ---- the stdio server ---------------------------------------------------------- */
/* Run `lode lsp` on in_fd/out_fd (pipes or a tty) until `exit` or EOF.
 * Returns the process exit code. */
int lode_lsp_run_stdio(const lode_lsp_opts *o, int in_fd, int out_fd);

#ifdef __cplusplus
}
#endif
#endif /* LODE_LSP_H */
