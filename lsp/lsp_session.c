/*
 * lsp_session.c — the LSP state machine of `lode lsp` (see lode_lsp.h).
 *
 * No I/O here: messages from the editor arrive through lode_lsp_handle,
 * replies leave through host.send, generation goes through the backend
 * vtable, and debounce deadlines are polled by the host (next_deadline /
 * tick). So the whole protocol runs in a unit test without a socket.
 *
 * Invariants:
 *  - every request gets exactly one response: answered at once, or kept
 *    in `reqs` until the backend answers, the editor cancels (-32800), the
 *    document changes under it (-32801), a newer automatic request for the
 *    same document supersedes it (empty result) or the session ends;
 *  - a request in `reqs` either waits for its debounce deadline (handle 0,
 *    `params` set) or is in the backend (handle != 0);
 *  - user-facing problems go to window/showMessage once per distinct text
 *    (repeated failures only to window/logMessage), so the user is told what
 *    is wrong without being flooded at every keystroke.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonrpc.h"
#include "lode_lsp.h"

#define MAX_DOC_BYTES (16u << 20)
#define LODE_LSP_VERSION "0.1.0"

enum { ST_UNINIT = 0, ST_RUNNING, ST_SHUTDOWN };
enum { MSG_ERROR = 1, MSG_WARNING = 2, MSG_INFO = 3, MSG_LOG = 4 };
enum { FALLBACK_AUTO = 0, FALLBACK_ALWAYS, FALLBACK_NEVER };
typedef enum { REQ_INLINE, REQ_COMPLETION } req_kind;

typedef struct docent {
    char *uri, *lang;
    int64_t version;
    lode_lsp_doc *doc; /* NULL while the document is over MAX_DOC_BYTES */
    struct docent *next;
} docent;

typedef struct req {
    json_t *id;
    req_kind kind;
    docent *d;
    size_t cursor;        /* byte offset in the document */
    size_t repl_start;    /* start of the text the answer replaces */
    size_t repl_end;      /* end of it (>= cursor) */
    char *lead;           /* text the answer starts with (selected item / word) */
    char *line_rest;      /* the cursor line after the cursor */
    char *view;           /* the text the model saw (only with a post hook) */
    size_t view_len, view_cursor;
    json_t *params;       /* lode/infill params while debouncing */
    uint64_t handle;      /* backend handle once sent */
    double due, t0;
    struct req *next;
} req;

typedef struct settings {
    char *model, *socket;
    int64_t max_tokens, budget, debounce_ms, deadline_ms, ctx_tokens;
    double temperature;
    bool enable;
    json_t *languages; /* {"languageId": bool} or NULL */
    int fallback;
} settings;

typedef struct outreq { /* requests we sent to the editor */
    int64_t id;
    int kind; /* 1 progress create, 2 workspace/configuration */
    struct outreq *next;
} outreq;

struct lode_lsp {
    lode_lsp_host h;
    int state, exit_code;
    lode_lsp_enc enc;
    bool cap_progress, cap_inline, cap_config;
    settings cfg;
    char *opt_model, *opt_socket;
    docent *docs;
    req *reqs;
    outreq *out;
    int64_t next_out_id;
    lode_lsp_context_fn ctx_fn;
    void *ctx_ud;
    lode_lsp_hooks hooks;
    void *hooks_ud;
    lode_lsp_be_state be_state;
    char be_msg[LODE_ERROR_TEXT];
    char *daemon_model;
    int progress; /* 0 none, 1 create sent, 2 begun */
    char progress_token[32];
    int64_t n_progress;
    char **shown; /* texts already shown with showMessage */
    size_t n_shown;
    /* last completion, for lode/status */
    double last_ms;
    int64_t last_prompt, last_cached, last_generated, n_completions;
};

/* ---- output helpers --------------------------------------------------------- */
static void send(lode_lsp *l, json_t *msg) { l->h.send(l->h.ud, msg); }

static void respond(lode_lsp *l, json_t *id, json_t *result) { send(l, lode_rpc_result_msg(id, result)); }

static void respond_error(lode_lsp *l, json_t *id, int code, const char *msg) {
    send(l, lode_rpc_error_msg(id, code, msg));
}

static void notify(lode_lsp *l, const char *method, json_t *params) { send(l, lode_rpc_notification(method, params)); }

static void log_text(lode_lsp *l, int type, const char *text) {
    notify(l, "window/logMessage", json_pack("{s:i, s:s}", "type", type, "message", text));
}

static void log_msg(lode_lsp *l, int type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void log_msg(lode_lsp *l, int type, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_text(l, type, buf);
}

/* showMessage once per distinct text (and always logMessage). */
static void show_msg(lode_lsp *l, int type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void show_msg(lode_lsp *l, int type, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_text(l, type, buf);
    for (size_t i = 0; i < l->n_shown; i++)
        if (!strcmp(l->shown[i], buf)) return;
    l->shown = lode_xrealloc(l->shown, (l->n_shown + 1) * sizeof *l->shown);
    l->shown[l->n_shown++] = lode_xstrdup(buf);
    notify(l, "window/showMessage", json_pack("{s:i, s:s}", "type", type, "message", buf));
}

static void forget_shown(lode_lsp *l) {
    for (size_t i = 0; i < l->n_shown; i++) lode_free(l->shown[i]);
    lode_free(l->shown);
    l->shown = NULL;
    l->n_shown = 0;
}

static const char *be_state_name(lode_lsp_be_state s) {
    static const char *names[] = {"connecting", "starting", "ready", "error"};
    return names[s];
}

static void send_status(lode_lsp *l) {
    json_t *p = json_pack("{s:s, s:s, s:b}", "state", be_state_name(l->be_state), "message", l->be_msg, "enabled",
                          l->cfg.enable);
    if (l->daemon_model) json_object_set_new(p, "model", json_string(l->daemon_model));
    if (l->n_completions) {
        json_object_set_new(p, "completions", json_integer(l->n_completions));
        json_object_set_new(p, "last_ms", json_real(l->last_ms));
        json_object_set_new(p, "prompt_tokens", json_integer(l->last_prompt));
        json_object_set_new(p, "cached_tokens", json_integer(l->last_cached));
        json_object_set_new(p, "generated_tokens", json_integer(l->last_generated));
    }
    notify(l, "lode/status", p);
}

/* ---- requests ------------------------------------------------------------------ */
static void req_free(req *r) {
    json_decref(r->id);
    json_decref(r->params);
    lode_free(r->lead);
    lode_free(r->line_rest);
    lode_free(r->view);
    lode_free(r);
}

static void req_unlink(lode_lsp *l, req *r) {
    for (req **pp = &l->reqs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            return;
        }
}

/* Answer r with an error (code != 0) or an empty result, cancel its backend
 * work, and free it. */
static void req_finish_empty(lode_lsp *l, req *r, int code, const char *msg) {
    if (r->handle) l->h.be->cancel(l->h.be_ctx, r->handle);
    if (code) respond_error(l, r->id, code, msg);
    else if (r->kind == REQ_INLINE) respond(l, r->id, json_pack("{s:[]}", "items"));
    else respond(l, r->id, json_pack("{s:b, s:[]}", "isIncomplete", 1, "items"));
    req_unlink(l, r);
    req_free(r);
}

/* Every pending request on document d (NULL: all) answered with code. */
static void finish_doc_reqs(lode_lsp *l, docent *d, int code, const char *msg) {
    for (req *r = l->reqs, *n; r; r = n) {
        n = r->next;
        if (!d || r->d == d) req_finish_empty(l, r, code, msg);
    }
}

/* ---- settings ------------------------------------------------------------------ */
static void settings_free(settings *s) {
    lode_free(s->model);
    lode_free(s->socket);
    json_decref(s->languages);
}

static bool int_setting(lode_lsp *l, json_t *o, const char *k, int64_t lo, int64_t hi, int64_t *out) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return false;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        show_msg(l, MSG_WARNING, "lode: setting \"%s\" must be an integer in %lld..%lld; keeping %lld", k, (long long)lo,
                 (long long)hi, (long long)*out);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

static bool str_setting(lode_lsp *l, json_t *o, const char *k, char **out) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return false;
    if (!json_is_string(v)) {
        show_msg(l, MSG_WARNING, "lode: setting \"%s\" must be a string", k);
        return false;
    }
    const char *s = json_string_value(v);
    if (*out && !strcmp(*out, s)) return false;
    lode_free(*out);
    *out = *s ? lode_xstrdup(s) : NULL;
    return true;
}

/* Apply settings from initializationOptions or didChangeConfiguration:
 * either the settings themselves or {"lode": {...}}. */
static void check_model(lode_lsp *l);

static void apply_settings(lode_lsp *l, json_t *o) {
    if (json_is_object(json_object_get(o, "lode"))) o = json_object_get(o, "lode");
    if (!json_is_object(o)) return;
    settings *s = &l->cfg;
    bool be = false;
    if (!l->opt_model) be |= str_setting(l, o, "model", &s->model);
    if (!l->opt_socket) be |= str_setting(l, o, "socket", &s->socket);
    int_setting(l, o, "maxTokens", 1, 4096, &s->max_tokens);
    if (int_setting(l, o, "contextBudget", 0, 1 << 24, &s->budget) && s->budget < 256)
        show_msg(l, MSG_WARNING,
                 "lode: contextBudget %lld bytes is too small for useful completions (the model sees only %lld bytes "
                 "around the cursor); 4096 or more is recommended",
                 (long long)s->budget, (long long)s->budget);
    int_setting(l, o, "contextTokens", 0, 1 << 20, &s->ctx_tokens);
    int_setting(l, o, "debounceMs", 0, 10000, &s->debounce_ms);
    int_setting(l, o, "deadlineMs", 0, 600000, &s->deadline_ms);
    json_t *v = json_object_get(o, "temperature");
    if (v && !json_is_null(v)) {
        if (json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) <= 2) s->temperature = json_number_value(v);
        else show_msg(l, MSG_WARNING, "lode: setting \"temperature\" must be a number in 0..2");
    }
    v = json_object_get(o, "enable");
    if (json_is_boolean(v)) s->enable = json_is_true(v);
    v = json_object_get(o, "languages");
    if (json_is_object(v)) {
        json_decref(s->languages);
        s->languages = json_incref(v);
    } else if (v && !json_is_null(v)) {
        show_msg(l, MSG_WARNING, "lode: setting \"languages\" must be an object like {\"markdown\": false}");
    }
    v = json_object_get(o, "completionFallback");
    if (json_is_string(v)) {
        const char *f = json_string_value(v);
        s->fallback = !strcmp(f, "always") ? FALLBACK_ALWAYS : !strcmp(f, "never") ? FALLBACK_NEVER : FALLBACK_AUTO;
    }
    if (l->hooks.settings) l->hooks.settings(l->hooks_ud, o);
    if (be && l->state != ST_UNINIT) {
        l->h.be->configure(l->h.be_ctx, lode_lsp_model(l), lode_lsp_socket(l));
        check_model(l);
    }
}

static bool language_enabled(lode_lsp *l, const char *lang) {
    if (!l->cfg.enable) return false;
    json_t *v = json_object_get(l->cfg.languages, lang ? lang : "");
    if (json_is_boolean(v)) return json_is_true(v);
    v = json_object_get(l->cfg.languages, "*");
    return !json_is_false(v);
}

/* ---- lifetime ------------------------------------------------------------------ */
lode_lsp *lode_lsp_new(const lode_lsp_host *host, const lode_lsp_opts *o) {
    lode_lsp *l = lode_xcalloc(1, sizeof *l);
    l->h = *host;
    l->exit_code = -1;
    l->enc = LODE_LSP_ENC_UTF16;
    l->cfg.max_tokens = 64;
    l->cfg.budget = 8192;
    l->cfg.debounce_ms = 75;
    l->cfg.deadline_ms = 30000;
    l->cfg.enable = true;
    if (o && o->model) l->opt_model = lode_xstrdup(o->model);
    if (o && o->socket) l->opt_socket = lode_xstrdup(o->socket);
    l->ctx_fn = lode_lsp_context_window;
    l->next_out_id = 1;
    snprintf(l->be_msg, sizeof l->be_msg, "not connected yet");
    return l;
}

void lode_lsp_free(lode_lsp *l) {
    if (!l) return;
    finish_doc_reqs(l, NULL, LODE_RPC_REQUEST_CANCELLED, "the server is exiting");
    while (l->docs) {
        docent *d = l->docs;
        l->docs = d->next;
        lode_free(d->uri);
        lode_free(d->lang);
        lode_lsp_doc_free(d->doc);
        lode_free(d);
    }
    while (l->out) {
        outreq *o = l->out;
        l->out = o->next;
        lode_free(o);
    }
    settings_free(&l->cfg);
    lode_free(l->opt_model);
    lode_free(l->opt_socket);
    lode_free(l->daemon_model);
    forget_shown(l);
    lode_free(l);
}

void lode_lsp_set_context_provider(lode_lsp *l, lode_lsp_context_fn fn, void *ud) {
    l->ctx_fn = fn ? fn : lode_lsp_context_window;
    l->ctx_ud = fn ? ud : NULL;
}

void lode_lsp_set_hooks(lode_lsp *l, const lode_lsp_hooks *h, void *ud) {
    memset(&l->hooks, 0, sizeof l->hooks);
    if (h) l->hooks = *h;
    l->hooks_ud = h ? ud : NULL;
}

int lode_lsp_exit_code(const lode_lsp *l) { return l->exit_code; }

const char *lode_lsp_model(const lode_lsp *l) {
    if (l->opt_model) return l->opt_model;
    if (l->cfg.model) return l->cfg.model;
    const char *e = getenv("LODE_MODEL");
    return e && *e ? e : NULL;
}

const char *lode_lsp_socket(const lode_lsp *l) { return l->opt_socket ? l->opt_socket : l->cfg.socket; }

/* ---- params helpers ------------------------------------------------------------ */
static bool get_pos(json_t *o, lode_lsp_pos *p) {
    json_t *ln = json_object_get(o, "line"), *ch = json_object_get(o, "character");
    if (!json_is_integer(ln) || !json_is_integer(ch)) return false;
    p->line = json_integer_value(ln);
    p->character = json_integer_value(ch);
    return p->line >= 0 && p->character >= 0;
}

static bool get_range(json_t *o, lode_lsp_pos *a, lode_lsp_pos *b) {
    return json_is_object(o) && get_pos(json_object_get(o, "start"), a) && get_pos(json_object_get(o, "end"), b);
}

static docent *find_doc(lode_lsp *l, const char *uri) {
    for (docent *d = l->docs; d; d = d->next)
        if (!strcmp(d->uri, uri)) return d;
    return NULL;
}

static const char *doc_uri(json_t *params) {
    return json_string_value(json_object_get(json_object_get(params, "textDocument"), "uri"));
}

static json_t *pos_json(lode_lsp_pos p) {
    return json_pack("{s:I, s:I}", "line", (json_int_t)p.line, "character", (json_int_t)p.character);
}

static json_t *range_json(lode_lsp *l, docent *d, size_t a, size_t b) {
    return json_pack("{s:o, s:o}", "start", pos_json(lode_lsp_doc_position(d->doc, l->enc, a)), "end",
                     pos_json(lode_lsp_doc_position(d->doc, l->enc, b)));
}

/* ---- lifecycle handlers ------------------------------------------------------------ */
typedef int (*handler_fn)(lode_lsp *l, json_t *id, json_t *params, lode_error *err);

static int m_initialize(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    if (l->state != ST_UNINIT) {
        lode_error_set(err, LODE_ERR_STATE, "initialize may be sent only once");
        return LODE_RPC_INVALID_REQUEST;
    }
    json_t *caps = json_object_get(params, "capabilities");
    /* Position encoding: utf-8 costs nothing here, utf-32 little; utf-16 is
     * the mandatory default. */
    json_t *encs = json_object_get(json_object_get(caps, "general"), "positionEncodings");
    bool u8 = false, u32 = false;
    size_t i;
    json_t *v;
    json_array_foreach(encs, i, v) {
        if (!json_is_string(v)) continue;
        u8 |= !strcmp(json_string_value(v), "utf-8");
        u32 |= !strcmp(json_string_value(v), "utf-32");
    }
    l->enc = u8 ? LODE_LSP_ENC_UTF8 : u32 ? LODE_LSP_ENC_UTF32 : LODE_LSP_ENC_UTF16;
    l->cap_progress = json_is_true(json_object_get(json_object_get(caps, "window"), "workDoneProgress"));
    l->cap_inline = json_object_get(json_object_get(caps, "textDocument"), "inlineCompletion") != NULL;
    l->cap_config = json_is_true(json_object_get(json_object_get(caps, "workspace"), "configuration"));
    apply_settings(l, json_object_get(params, "initializationOptions"));
    json_t *c = json_pack("{s:s, s:{s:b, s:i, s:{s:b}}, s:{}}", "positionEncoding", lode_lsp_enc_name(l->enc),
                          "textDocumentSync", "openClose", 1, "change", 2, "save", "includeText", 0,
                          "inlineCompletionProvider");
    /* The popup fallback only for clients that cannot show inline
     * completions (or when asked), so no editor shows both. */
    bool fb = l->cfg.fallback == FALLBACK_ALWAYS || (l->cfg.fallback == FALLBACK_AUTO && !l->cap_inline);
    if (fb)
        json_object_set_new(c, "completionProvider",
                            json_pack("{s:b, s:[s,s,s,s,s,s,s,s,s,s]}", "resolveProvider", 0, "triggerCharacters", ".",
                                      "(", "[", "{", ",", ":", "=", " ", ">", "/"));
    respond(l, id, json_pack("{s:o, s:{s:s, s:s}}", "capabilities", c, "serverInfo", "name", "lode", "version",
                             LODE_LSP_VERSION));
    l->state = ST_RUNNING;
    l->h.be->configure(l->h.be_ctx, lode_lsp_model(l), lode_lsp_socket(l));
    if (l->hooks.init) l->hooks.init(l->hooks_ud, params);
    return 0;
}

static int m_initialized(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    (void)id, (void)params, (void)err;
    send_status(l);
    return 0;
}

static int m_shutdown(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    (void)params, (void)err;
    finish_doc_reqs(l, NULL, LODE_RPC_REQUEST_CANCELLED, "the server is shutting down");
    l->state = ST_SHUTDOWN;
    respond(l, id, json_null());
    return 0;
}

static int m_exit(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    (void)id, (void)params, (void)err;
    l->exit_code = l->state == ST_SHUTDOWN ? 0 : 1;
    return 0;
}

static int m_cancel(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    (void)id, (void)err;
    json_t *cid = json_object_get(params, "id");
    for (req *r = l->reqs; r; r = r->next)
        if (cid && json_equal(r->id, cid)) {
            req_finish_empty(l, r, LODE_RPC_REQUEST_CANCELLED, "request cancelled");
            break;
        }
    return 0;
}

/* ---- text synchronisation ------------------------------------------------------- */
static void doc_set_text(lode_lsp *l, docent *d, const char *text, size_t n) {
    if (n > MAX_DOC_BYTES) {
        lode_lsp_doc_free(d->doc);
        d->doc = NULL;
        show_msg(l, MSG_WARNING, "lode: %s is %zu MiB, over the %u MiB limit; no completions in this file", d->uri,
                 n >> 20, MAX_DOC_BYTES >> 20);
        return;
    }
    lode_error e = {0};
    if (!d->doc) d->doc = lode_lsp_doc_new(text, n);
    else if (lode_lsp_doc_set(d->doc, text, n, &e)) lode_lsp_doc_free(d->doc), d->doc = NULL;
    if (!d->doc) show_msg(l, MSG_ERROR, "lode: out of memory for %s (%zu bytes)", d->uri, n);
}

static int m_did_open(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    (void)id, (void)err;
    json_t *td = json_object_get(params, "textDocument");
    const char *uri = json_string_value(json_object_get(td, "uri"));
    json_t *text = json_object_get(td, "text");
    if (!uri || !json_is_string(text)) {
        log_msg(l, MSG_ERROR, "textDocument/didOpen without textDocument.uri and text: ignored");
        return 0;
    }
    docent *d = find_doc(l, uri);
    if (d) finish_doc_reqs(l, d, LODE_RPC_CONTENT_MODIFIED, "the document was reopened");
    else {
        d = lode_xcalloc(1, sizeof *d);
        d->uri = lode_xstrdup(uri);
        d->next = l->docs;
        l->docs = d;
    }
    const char *lang = json_string_value(json_object_get(td, "languageId"));
    lode_free(d->lang);
    d->lang = lode_xstrdup(lang ? lang : "");
    d->version = json_integer_value(json_object_get(td, "version"));
    doc_set_text(l, d, json_string_value(text), json_string_length(text));
    if (l->hooks.open && d->doc) l->hooks.open(l->hooks_ud, d->uri, d->lang, json_string_value(text), json_string_length(text));
    return 0;
}

static int m_did_change(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    (void)id, (void)err;
    const char *uri = doc_uri(params);
    docent *d = uri ? find_doc(l, uri) : NULL;
    if (!d) {
        log_msg(l, MSG_WARNING, "textDocument/didChange for %s, which is not open: ignored", uri ? uri : "(no uri)");
        return 0;
    }
    finish_doc_reqs(l, d, LODE_RPC_CONTENT_MODIFIED, "the document changed");
    json_t *v = json_object_get(json_object_get(params, "textDocument"), "version");
    if (json_is_integer(v)) d->version = json_integer_value(v);
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(params, "contentChanges"), i, ch) {
        json_t *text = json_object_get(ch, "text"), *range = json_object_get(ch, "range");
        if (!json_is_string(text)) continue;
        if (!range) {
            doc_set_text(l, d, json_string_value(text), json_string_length(text));
            if (l->hooks.change && d->doc)
                l->hooks.change(l->hooks_ud, d->uri, SIZE_MAX, SIZE_MAX, NULL, 0, json_string_value(text),
                                json_string_length(text));
            continue;
        }
        lode_lsp_pos a, b;
        if (!d->doc) continue; /* over the size limit: only a full change brings it back */
        if (!get_range(range, &a, &b)) {
            log_msg(l, MSG_ERROR, "didChange with a malformed range in %s: change ignored (document may be out of sync)",
                    uri);
            continue;
        }
        size_t len;
        lode_lsp_doc_text(d->doc, &len);
        if (len + json_string_length(text) > MAX_DOC_BYTES) {
            doc_set_text(l, d, NULL, len + json_string_length(text));
            continue;
        }
        lode_error e = {0};
        size_t hs = SIZE_MAX, he = SIZE_MAX; /* the byte range, for the hook (SIZE_MAX: clamped, unknown) */
        if (l->hooks.change && (lode_lsp_doc_offset(d->doc, l->enc, a, &hs, &e) ||
                                lode_lsp_doc_offset(d->doc, l->enc, b, &he, &e) || he < hs))
            hs = he = SIZE_MAX, e = (lode_error){0};
        if (lode_lsp_doc_edit(d->doc, l->enc, a, b, json_string_value(text), json_string_length(text), &e))
            show_msg(l, MSG_ERROR, "lode: %s", e.text);
        else if (l->hooks.change) {
            size_t al;
            const char *after = lode_lsp_doc_text(d->doc, &al);
            l->hooks.change(l->hooks_ud, d->uri, hs, he, json_string_value(text), json_string_length(text), after, al);
        }
    }
    return 0;
}

static int m_did_close(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    (void)id, (void)err;
    const char *uri = doc_uri(params);
    for (docent **pp = &l->docs; uri && *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->uri, uri)) {
            docent *d = *pp;
            finish_doc_reqs(l, d, LODE_RPC_CONTENT_MODIFIED, "the document was closed");
            if (l->hooks.close) l->hooks.close(l->hooks_ud, d->uri);
            *pp = d->next;
            lode_free(d->uri);
            lode_free(d->lang);
            lode_lsp_doc_free(d->doc);
            lode_free(d);
            return 0;
        }
    return 0;
}

static int m_did_save(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    (void)l, (void)id, (void)params, (void)err;
    return 0;
}

/* ---- configuration --------------------------------------------------------------- */
static void send_request(lode_lsp *l, int kind, const char *method, json_t *params) {
    outreq *o = lode_xcalloc(1, sizeof *o);
    o->id = l->next_out_id++;
    o->kind = kind;
    o->next = l->out;
    l->out = o;
    send(l, json_pack("{s:s, s:I, s:s, s:o}", "jsonrpc", "2.0", "id", (json_int_t)o->id, "method", method, "params",
                      params));
}

static int m_did_change_configuration(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    (void)id, (void)err;
    json_t *s = json_object_get(params, "settings");
    bool ours = json_is_object(s) && (json_object_get(s, "lode") || json_object_get(s, "maxTokens") ||
                                      json_object_get(s, "model") || json_object_get(s, "enable"));
    if (ours) apply_settings(l, s);
    else if (l->cap_config) /* a "pull" client: ask for our section */
        send_request(l, 2, "workspace/configuration", json_pack("{s:[{s:s}]}", "items", "section", "lode"));
    log_msg(l, MSG_LOG, "settings: maxTokens %lld, temperature %.2f, contextBudget %lld, debounceMs %lld, enable %s",
            (long long)l->cfg.max_tokens, l->cfg.temperature, (long long)l->cfg.budget, (long long)l->cfg.debounce_ms,
            l->cfg.enable ? "true" : "false");
    send_status(l);
    return 0;
}

static void handle_response(lode_lsp *l, json_t *msg) {
    json_t *id = json_object_get(msg, "id");
    for (outreq **pp = &l->out; *pp; pp = &(*pp)->next) {
        outreq *o = *pp;
        if (!json_is_integer(id) || json_integer_value(id) != o->id) continue;
        *pp = o->next;
        json_t *res = json_object_get(msg, "result");
        if (o->kind == 1 && l->progress == 1) {
            if (!res || l->be_state != LODE_LSP_BE_STARTING) l->progress = 0;
            else {
                l->progress = 2;
                notify(l, "$/progress",
                       json_pack("{s:s, s:{s:s, s:s, s:s, s:b}}", "token", l->progress_token, "value", "kind", "begin",
                                 "title", "lode", "message", l->be_msg, "cancellable", 0));
            }
        } else if (o->kind == 2 && json_is_array(res)) {
            apply_settings(l, json_array_get(res, 0));
        }
        lode_free(o);
        return;
    }
}

/* ---- completions ---------------------------------------------------------------- */
static bool word_byte(unsigned char c) { return c >= 0x80 || c == '_' || (unsigned)((c | 32) - 'a') < 26u || (unsigned)(c - '0') < 10u; }

static void send_to_backend(lode_lsp *l, req *r) {
    json_t *p = r->params;
    r->params = NULL;
    r->due = 0;
    r->handle = l->h.be->infill(l->h.be_ctx, p);
}

/* textDocument/inlineCompletion and textDocument/completion share this. */
static int start_completion(lode_lsp *l, json_t *id, json_t *params, req_kind kind, lode_error *err) {
    const char *uri = doc_uri(params);
    lode_lsp_pos pos;
    if (!uri || !get_pos(json_object_get(params, "position"), &pos)) {
        lode_error_set(err, LODE_ERR_INVALID_ARG, "params need textDocument.uri and position {line, character} >= 0");
        return LODE_RPC_INVALID_PARAMS;
    }
    docent *d = find_doc(l, uri);
    if (!d) {
        lode_error_set(err, LODE_ERR_NOT_FOUND, "unknown document %s: send textDocument/didOpen first", uri);
        return LODE_RPC_INVALID_PARAMS;
    }
    json_t *ctx = json_object_get(params, "context");
    json_t *tk = json_object_get(ctx, "triggerKind");
    /* inline: 1 invoked, 2 automatic; completion: 1 invoked, 2 character, 3 incomplete */
    bool automatic = kind == REQ_INLINE ? json_integer_value(tk) == 2 : json_integer_value(tk) != 1;
    req *r = lode_xcalloc(1, sizeof *r);
    r->kind = kind;
    r->d = d;
    r->id = json_incref(id);
    r->t0 = lode_time_s();
    if (!d->doc || !language_enabled(l, d->lang)) {
        r->next = l->reqs;
        l->reqs = r;
        req_finish_empty(l, r, 0, NULL);
        return 0;
    }
    if (lode_lsp_doc_offset(d->doc, l->enc, pos, &r->cursor, err)) {
        req_free(r);
        return LODE_RPC_INVALID_PARAMS;
    }
    size_t len;
    const char *t = lode_lsp_doc_text(d->doc, &len);
    r->repl_start = r->repl_end = r->cursor;
    const char *lead = "";
    size_t lead_n = 0;
    json_t *sel = json_object_get(ctx, "selectedCompletionInfo");
    lode_lsp_pos a, b;
    if (kind == REQ_INLINE && json_is_object(sel) && get_range(json_object_get(sel, "range"), &a, &b) &&
        json_is_string(json_object_get(sel, "text"))) {
        /* The popup's selected item: complete as if it were accepted, and
         * answer with text that starts with it over its range. */
        size_t sa, sb;
        if (lode_lsp_doc_offset(d->doc, l->enc, a, &sa, err) || lode_lsp_doc_offset(d->doc, l->enc, b, &sb, err)) {
            req_free(r);
            return LODE_RPC_INVALID_PARAMS;
        }
        if (sb < sa) sa = sb;
        r->repl_start = sa;
        r->repl_end = sb > r->cursor ? sb : r->cursor;
        lead = json_string_value(json_object_get(sel, "text"));
        lead_n = json_string_length(json_object_get(sel, "text"));
    } else if (kind == REQ_COMPLETION) { /* the item replaces the word before the cursor, so clients can filter */
        while (r->repl_start > 0 && word_byte((unsigned char)t[r->repl_start - 1])) r->repl_start--;
        lead = t + r->repl_start;
        lead_n = r->cursor - r->repl_start;
    }
    r->lead = lode_xmalloc(lead_n + 1);
    memcpy(r->lead, lead, lead_n);
    r->lead[lead_n] = 0;
    size_t le = r->repl_end;
    while (le < len && t[le] != '\n' && t[le] != '\r') le++;
    r->line_rest = lode_xmalloc(le - r->repl_end + 1);
    memcpy(r->line_rest, t + r->repl_end, le - r->repl_end);
    r->line_rest[le - r->repl_end] = 0;
    /* The text as the model should see it: [.. repl_start) + lead + [repl_end ..). */
    size_t vlen = r->repl_start + lead_n + (len - r->repl_end);
    char *view = lode_xmalloc(vlen + 1);
    memcpy(view, t, r->repl_start);
    memcpy(view + r->repl_start, r->lead, lead_n);
    memcpy(view + r->repl_start + lead_n, t + r->repl_end, len - r->repl_end);
    view[vlen] = 0;
    lode_lsp_ctx_req cq = {uri, d->lang, view, vlen, r->repl_start + lead_n, (size_t)l->cfg.budget};
    lode_lsp_ctx c = {0};
    lode_error cerr = {0};
    lode_status st = l->ctx_fn(l->ctx_ud, &cq, &c, &cerr);
    if (l->hooks.post) { /* the post-processor parses the text the model saw */
        r->view = view;
        r->view_len = vlen;
        r->view_cursor = r->repl_start + lead_n;
    } else {
        lode_free(view);
    }
    if (st) {
        log_msg(l, MSG_ERROR, "lode: building the context failed: %s", cerr.text);
        lode_lsp_ctx_clear(&c);
        r->next = l->reqs;
        l->reqs = r;
        req_finish_empty(l, r, 0, NULL);
        return 0;
    }
    r->params = json_pack("{s:s%, s:s%, s:I, s:f, s:b}", "prefix", c.prefix, c.prefix_len, "suffix", c.suffix,
                          c.suffix_len, "max_tokens", (json_int_t)l->cfg.max_tokens, "temperature", l->cfg.temperature,
                          "stream", 0);
    if (c.extra) json_object_set(r->params, "extra", c.extra);
    if (l->cfg.deadline_ms > 0) json_object_set_new(r->params, "deadline_ms", json_integer(l->cfg.deadline_ms));
    lode_lsp_ctx_clear(&c);
    /* A newer automatic request supersedes older ones in the same document
     * (they get an empty answer and their work is cancelled). */
    if (automatic)
        for (req *o = l->reqs, *n; o; o = n) {
            n = o->next;
            if (o->d == d && o->kind == kind) req_finish_empty(l, o, 0, NULL);
        }
    r->next = l->reqs;
    l->reqs = r;
    if (automatic && l->cfg.debounce_ms > 0) r->due = r->t0 + (double)l->cfg.debounce_ms / 1000.0;
    else send_to_backend(l, r);
    return 0;
}

static int m_inline(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    return start_completion(l, id, params, REQ_INLINE, err);
}

static int m_completion(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    return start_completion(l, id, params, REQ_COMPLETION, err);
}

static int m_status(lode_lsp *l, json_t *id, json_t *params, lode_error *err) {
    (void)params, (void)err;
    respond(l, id, json_pack("{s:s, s:s, s:s?, s:s}", "state", be_state_name(l->be_state), "message", l->be_msg,
                             "model", l->daemon_model, "positionEncoding", lode_lsp_enc_name(l->enc)));
    return 0;
}

/* Turn a backend error into words the user can act on. */
static void explain_failure(lode_lsp *l, int code, const char *msg) {
    if (code == LODE_RPC_INVALID_PARAMS && strstr(msg, "fill-in-the-middle"))
        show_msg(l, MSG_ERROR, "lode: the model %s cannot complete code: %s", l->daemon_model ? l->daemon_model : "",
                 msg);
    else if (code == LODE_RPC_REQUEST_FAILED && (strstr(msg, "KV") || strstr(msg, "cache") || strstr(msg, "fit")))
        show_msg(l, MSG_WARNING,
                 "lode: the context does not fit the daemon (%s); lower lode.contextBudget or restart the daemon with "
                 "a larger --ctx",
                 msg);
    else if (code == LODE_RPC_DEADLINE_EXCEEDED)
        log_msg(l, MSG_WARNING, "lode: completion took longer than deadlineMs (%lld ms): the model is slow here",
                (long long)l->cfg.deadline_ms);
    else log_msg(l, MSG_WARNING, "lode: completion failed (%d): %s", code, msg);
}

void lode_lsp_backend_done(lode_lsp *l, uint64_t handle, json_t *result, int code, const char *message) {
    req *r = l->reqs;
    while (r && r->handle != handle) r = r->next;
    if (!r) return; /* answered already (cancelled, superseded) */
    r->handle = 0;
    if (code || !json_is_object(result)) {
        explain_failure(l, code, message ? message : "no result");
        req_finish_empty(l, r, 0, NULL);
        return;
    }
    json_t *txt = json_object_get(result, "text");
    size_t n;
    const char *gen = json_string_value(txt) ? json_string_value(txt) : "";
    char *s = l->hooks.post && r->view
                  ? l->hooks.post(l->hooks_ud, r->d->uri, r->d->lang, r->view, r->view_len, r->view_cursor, gen,
                                  json_string_length(txt), &n)
                  : lode_lsp_postprocess(gen, json_string_length(txt), r->line_rest, strlen(r->line_rest), &n);
    l->n_completions++;
    l->last_ms = (lode_time_s() - r->t0) * 1000.0;
    l->last_prompt = json_integer_value(json_object_get(result, "prompt_tokens"));
    l->last_cached = json_integer_value(json_object_get(result, "cached_tokens"));
    l->last_generated = json_integer_value(json_object_get(result, "generated_tokens"));
    json_t *items = json_array();
    if (n) {
        size_t ln = strlen(r->lead);
        char *full = lode_xmalloc(ln + n + 1);
        memcpy(full, r->lead, ln);
        memcpy(full + ln, s, n + 1);
        json_t *range = range_json(l, r->d, r->repl_start, r->repl_end);
        if (r->kind == REQ_INLINE) {
            json_array_append_new(items, json_pack("{s:s, s:o}", "insertText", full, "range", range));
        } else {
            size_t lab = strcspn(full, "\r\n");
            if (lab > 80) { /* label: the first line, cut at a code point */
                lab = 80;
                while (lab && (full[lab] & 0xC0) == 0x80) lab--;
            }
            json_array_append_new(items, json_pack("{s:s%, s:i, s:s, s:s, s:s, s:s, s:i, s:{s:o, s:s}}", "label",
                                                   full, lab, "kind", 1, "detail", "lode", "documentation", full,
                                                   "filterText", full, "sortText", "0", "insertTextFormat", 1,
                                                   "textEdit", "range", range, "newText", full));
        }
        lode_free(full);
    }
    lode_free(s);
    if (r->kind == REQ_INLINE) respond(l, r->id, json_pack("{s:o}", "items", items));
    else respond(l, r->id, json_pack("{s:b, s:o}", "isIncomplete", 1, "items", items));
    req_unlink(l, r);
    req_free(r);
    send_status(l);
}

/* ---- backend state ------------------------------------------------------------------ */
void lode_lsp_backend_state(lode_lsp *l, lode_lsp_be_state st, const char *message) {
    lode_lsp_be_state old = l->be_state;
    l->be_state = st;
    snprintf(l->be_msg, sizeof l->be_msg, "%s", message ? message : "");
    if (st == LODE_LSP_BE_STARTING && l->cap_progress && l->progress == 0) {
        snprintf(l->progress_token, sizeof l->progress_token, "lode-load-%lld", (long long)++l->n_progress);
        l->progress = 1;
        send_request(l, 1, "window/workDoneProgress/create", json_pack("{s:s}", "token", l->progress_token));
    } else if (st == LODE_LSP_BE_STARTING && l->progress == 2) {
        notify(l, "$/progress", json_pack("{s:s, s:{s:s, s:s}}", "token", l->progress_token, "value", "kind", "report",
                                          "message", l->be_msg));
    }
    if (st != LODE_LSP_BE_STARTING && l->progress) {
        if (l->progress == 2)
            notify(l, "$/progress", json_pack("{s:s, s:{s:s, s:s}}", "token", l->progress_token, "value", "kind", "end",
                                              "message", st == LODE_LSP_BE_READY ? "model loaded" : l->be_msg));
        l->progress = 0;
    }
    if (st == LODE_LSP_BE_UNREACHABLE) show_msg(l, MSG_ERROR, "lode: %s", l->be_msg);
    else if (st == LODE_LSP_BE_READY && old != LODE_LSP_BE_READY) {
        log_msg(l, MSG_INFO, "lode: %s", l->be_msg);
        forget_shown(l); /* problems are shown again if they come back */
    } else if (st != old) {
        log_msg(l, MSG_INFO, "lode: %s", l->be_msg);
    }
    if (st != old && l->state != ST_UNINIT) send_status(l);
}

/* The daemon serves one model for every editor: say so when it is not the one asked for. */
static void check_model(lode_lsp *l) {
    const char *want = lode_lsp_model(l), *m = l->daemon_model;
    if (!want || !m || !strcmp(want, m)) return;
    char *a = realpath(want, NULL), *b = realpath(m, NULL);
    if (!a || !b || strcmp(a, b))
        show_msg(l, MSG_WARNING,
                 "lode: the running daemon serves %s, not %s (one daemon serves every editor); run `lode stop` to "
                 "switch models",
                 m, want);
    free(a);
    free(b);
}

void lode_lsp_backend_info(lode_lsp *l, json_t *status) {
    const char *m = json_string_value(json_object_get(status, "model"));
    if (!m) return;
    lode_free(l->daemon_model);
    l->daemon_model = lode_xstrdup(m);
    check_model(l);
    if (l->state != ST_UNINIT) send_status(l);
}

/* ---- timers --------------------------------------------------------------------------- */
double lode_lsp_next_deadline(const lode_lsp *l) {
    double t = -1;
    for (const req *r = l->reqs; r; r = r->next)
        if (r->params && r->due > 0 && (t < 0 || r->due < t)) t = r->due;
    return t;
}

void lode_lsp_tick(lode_lsp *l, double now) {
    for (req *r = l->reqs; r; r = r->next)
        if (r->params && r->due > 0 && r->due <= now) send_to_backend(l, r);
}

/* ---- dispatch ---------------------------------------------------------------------------- */
enum { KIND_REQUEST = 1, KIND_NOTIFICATION = 2 };
static const struct method {
    const char *name;
    handler_fn fn;
    int kind;
} k_methods[] = { /* sorted by name (strcmp) for bsearch */
    {"$/cancelRequest", m_cancel, KIND_NOTIFICATION},
    {"exit", m_exit, KIND_NOTIFICATION},
    {"initialize", m_initialize, KIND_REQUEST},
    {"initialized", m_initialized, KIND_NOTIFICATION},
    {"lode/status", m_status, KIND_REQUEST},
    {"shutdown", m_shutdown, KIND_REQUEST},
    {"textDocument/completion", m_completion, KIND_REQUEST},
    {"textDocument/didChange", m_did_change, KIND_NOTIFICATION},
    {"textDocument/didClose", m_did_close, KIND_NOTIFICATION},
    {"textDocument/didOpen", m_did_open, KIND_NOTIFICATION},
    {"textDocument/didSave", m_did_save, KIND_NOTIFICATION},
    {"textDocument/inlineCompletion", m_inline, KIND_REQUEST},
    {"workspace/didChangeConfiguration", m_did_change_configuration, KIND_NOTIFICATION},
};

static int method_cmp(const void *key, const void *e) { return strcmp(key, ((const struct method *)e)->name); }

void lode_lsp_parse_error(lode_lsp *l, const char *why) {
    respond_error(l, NULL, LODE_RPC_PARSE_ERROR, why);
    log_msg(l, MSG_ERROR, "lode: unreadable message from the editor: %s", why);
}

void lode_lsp_handle(lode_lsp *l, json_t *msg) {
    lode_rpc_msg m;
    int code = 0;
    lode_error err = {0};
    lode_rpc_kind kind = lode_rpc_parse(msg, &m, &code, &err);
    if (kind == LODE_RPC_KIND_INVALID) {
        bool notification = json_is_object(msg) && json_object_get(msg, "method") && !json_object_get(msg, "id");
        if (!notification) respond_error(l, m.id, code, err.text);
        log_msg(l, MSG_ERROR, "lode: invalid message from the editor: %s", err.text);
        return;
    }
    if (kind == LODE_RPC_KIND_RESPONSE) {
        handle_response(l, msg);
        return;
    }
    bool request = kind == LODE_RPC_KIND_REQUEST;
    const struct method *e =
        bsearch(m.method, k_methods, sizeof k_methods / sizeof k_methods[0], sizeof k_methods[0], method_cmp);
    if (e && e->kind != (request ? KIND_REQUEST : KIND_NOTIFICATION)) e = NULL;
    if (!request) { /* notifications: never answered */
        if (!e) return; /* unknown ($/ or not): ignored, as the spec asks */
        if (l->state == ST_UNINIT && e->fn != m_exit) return;
        if (l->state == ST_SHUTDOWN && e->fn != m_exit) return;
        e->fn(l, NULL, m.params, &err);
        return;
    }
    if (l->state == ST_UNINIT && (!e || e->fn != m_initialize)) {
        respond_error(l, m.id, LODE_RPC_SERVER_NOT_INITIALIZED, "the server is not initialized yet");
        return;
    }
    if (l->state == ST_SHUTDOWN) {
        respond_error(l, m.id, LODE_RPC_INVALID_REQUEST, "the server is shut down: only exit is accepted");
        return;
    }
    if (!e) {
        char buf[300];
        snprintf(buf, sizeof buf, "method not found: %.200s", m.method);
        respond_error(l, m.id, LODE_RPC_METHOD_NOT_FOUND, buf);
        return;
    }
    if (m.params && !json_is_object(m.params) && e->fn != m_shutdown) {
        respond_error(l, m.id, LODE_RPC_INVALID_PARAMS, "params must be an object");
        return;
    }
    int rc = e->fn(l, m.id, m.params, &err);
    if (rc) respond_error(l, m.id, rc, err.text[0] ? err.text : "error");
}
