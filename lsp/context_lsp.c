/*
 * context_lsp.c — the project-context provider of `lode lsp`
 * (lode_context.h, lode_ctx_lsp_*): workspace roots from initialize, an
 * index over them, every open document kept parsed through its edits
 * (lode_sdoc), prompts from lode_ctx_build, and lode_post_process in place
 * of the plain post-processing for the languages lode parses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lode_context.h"

typedef struct odoc {
    char *uri, *path; /* path: canonical when the file exists; NULL for other schemes */
    const lode_lang *lang;
    lode_sdoc *sd;
    bool dirty; /* changed since the index last saw it */
    struct odoc *next;
} odoc;

struct lode_ctx_lsp {
    lode_index_opts opts;
    const lode_tok *tok;
    char **roots;
    size_t n_roots;
    lode_index *ix;
    lode_ctx *ctx;
    odoc *docs;
    size_t tokens; /* contextTokens (0: contextBudget / 2) */
    lode_lsp *l;
    lode_tok *own_tok; /* the model's tokenizer, loaded at the first completion when the model is known */
    bool tok_tried;
};

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 32) >= 'a' && (c | 32) <= 'f') return (c | 32) - 'a' + 10;
    return -1;
}

char *lode_ctx_uri_path(const char *uri) {
    if (!uri || strncmp(uri, "file://", 7)) return NULL;
    const char *p = uri + 7;
    if (!strncmp(p, "localhost/", 10)) p += 9;
    if (*p != '/') return NULL; /* file://host/... (another machine) */
    size_t n = strlen(p);
    char *o = lode_xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n + 0 + 1 && hexv(p[i + 1]) >= 0 && hexv(p[i + 2]) >= 0) {
            char ch = (char)(hexv(p[i + 1]) * 16 + hexv(p[i + 2]));
            if (!ch) { /* %00 cannot name a file */
                lode_free(o);
                return NULL;
            }
            o[k++] = ch;
            i += 2;
        } else if (p[i] == '?' || p[i] == '#') {
            break;
        } else {
            o[k++] = p[i];
        }
    }
    o[k] = 0;
    return o;
}

static char *canon(const char *path) {
    char *r = realpath(path, NULL);
    if (!r) return lode_xstrdup(path);
    char *o = lode_xstrdup(r);
    free(r);
    return o;
}

lode_ctx_lsp *lode_ctx_lsp_new(const lode_index_opts *opts, const lode_tok *tok) {
    lode_ctx_lsp *p = lode_xcalloc(1, sizeof *p);
    if (opts) p->opts = *opts;
    p->tok = tok;
    p->ctx = lode_ctx_new(NULL, NULL, 0, tok);
    return p;
}

lode_index *lode_ctx_lsp_index(lode_ctx_lsp *p) { return p->ix; }

static void odoc_free(odoc *d) {
    lode_free(d->uri);
    lode_free(d->path);
    lode_sdoc_free(d->sd);
    lode_free(d);
}

void lode_ctx_lsp_free(lode_ctx_lsp *p) {
    if (!p) return;
    while (p->docs) {
        odoc *d = p->docs;
        p->docs = d->next;
        odoc_free(d);
    }
    lode_ctx_free(p->ctx);
    lode_index_free(p->ix);
    lode_tok_free(p->own_tok);
    for (size_t i = 0; i < p->n_roots; i++) lode_free(p->roots[i]);
    lode_free(p->roots);
    lode_free(p);
}

static odoc *find(lode_ctx_lsp *p, const char *uri) {
    for (odoc *d = p->docs; d; d = d->next)
        if (!strcmp(d->uri, uri)) return d;
    return NULL;
}

static void add_root(lode_ctx_lsp *p, const char *uri) {
    char *path = lode_ctx_uri_path(uri);
    if (!path) return;
    char *c = canon(path);
    lode_free(path);
    for (size_t i = 0; i < p->n_roots; i++)
        if (!strcmp(p->roots[i], c)) {
            lode_free(c);
            return;
        }
    p->roots = lode_xrealloc(p->roots, (p->n_roots + 1) * sizeof *p->roots);
    p->roots[p->n_roots++] = c;
}

static void h_init(void *ud, json_t *params) {
    lode_ctx_lsp *p = ud;
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(params, "workspaceFolders"), i, f) add_root(p, json_string_value(json_object_get(f, "uri")));
    if (!p->n_roots) add_root(p, json_string_value(json_object_get(params, "rootUri")));
    if (!p->n_roots && json_is_string(json_object_get(params, "rootPath"))) {
        const char *rp = json_string_value(json_object_get(params, "rootPath"));
        if (*rp == '/') {
            p->roots = lode_xcalloc(1, sizeof *p->roots);
            p->roots[p->n_roots++] = canon(rp);
        }
    }
    if (!p->n_roots) return;
    lode_error e = {0};
    p->ix = lode_index_open((const char *const *)p->roots, p->n_roots, &p->opts, &e);
    if (p->ix && lode_index_scan(p->ix, &e)) {
        lode_index_free(p->ix);
        p->ix = NULL;
    }
    if (!p->ix) {
        fprintf(stderr, "lode lsp: no project index: %s\n", e.text);
        return;
    }
    lode_ctx_free(p->ctx);
    p->ctx = lode_ctx_new(p->ix, (const char *const *)p->roots, p->n_roots, p->tok);
    for (odoc *d = p->docs; d; d = d->next) d->dirty = true;
}

static void h_settings(void *ud, json_t *o) {
    lode_ctx_lsp *p = ud;
    json_t *v = json_object_get(o, "contextTokens");
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 1 << 20)
        p->tokens = (size_t)json_integer_value(v);
}

static void h_open(void *ud, const char *uri, const char *lang, const char *text, size_t n) {
    lode_ctx_lsp *p = ud;
    odoc *d = find(p, uri);
    if (!d) {
        d = lode_xcalloc(1, sizeof *d);
        d->uri = lode_xstrdup(uri);
        char *path = lode_ctx_uri_path(uri);
        d->path = path ? canon(path) : NULL;
        lode_free(path);
        d->next = p->docs;
        p->docs = d;
    }
    d->lang = (lang && *lang ? lode_lang_for_id(lang) : NULL);
    if (!d->lang && d->path) d->lang = lode_lang_for_path(d->path);
    lode_sdoc_free(d->sd);
    d->sd = d->lang ? lode_sdoc_new(d->lang, text, n) : NULL;
    d->dirty = true;
}

static void h_change(void *ud, const char *uri, size_t start, size_t old_end, const char *text, size_t n,
                     const char *after, size_t after_n) {
    lode_ctx_lsp *p = ud;
    odoc *d = find(p, uri);
    if (!d) {
        h_open(ud, uri, NULL, after, after_n);
        return;
    }
    if (!d->sd) return;
    lode_error e = {0};
    size_t len;
    bool ok = start != SIZE_MAX && lode_sdoc_edit(d->sd, start, old_end, text, n, &e) == LODE_OK;
    const char *now = ok ? lode_sdoc_text(d->sd, &len) : NULL;
    if (!ok || len != after_n || memcmp(now, after, len)) lode_sdoc_set(d->sd, after, after_n, &e); /* resync */
    d->dirty = true;
    if (d->path) lode_ctx_note_edit(p->ctx, d->path, start != SIZE_MAX ? start + n : 0);
}

static void h_close(void *ud, const char *uri) {
    lode_ctx_lsp *p = ud;
    for (odoc **pp = &p->docs; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->uri, uri)) {
            odoc *d = *pp;
            *pp = d->next;
            if (p->ix && d->path && lode_index_contains(p->ix, d->path)) lode_index_close_doc(p->ix, d->path);
            odoc_free(d);
            return;
        }
}

/* Bring the index up to date: file events, and every changed document but `except`. */
static void sync_index(lode_ctx_lsp *p, const odoc *except) {
    if (!p->ix) return;
    lode_index_poll(p->ix);
    for (odoc *d = p->docs; d; d = d->next) {
        if (!d->dirty || d == except || !d->sd || !d->path) continue;
        d->dirty = false;
        if (!lode_index_contains(p->ix, d->path)) continue;
        size_t len;
        const char *t = lode_sdoc_text(d->sd, &len);
        lode_index_update(p->ix, d->path, t, len);
    }
}

static lode_status provide(void *ud, const lode_lsp_ctx_req *req, lode_lsp_ctx *out, lode_error *err) {
    lode_ctx_lsp *p = ud;
    if (!p->tok && !p->tok_tried && p->l) { /* count tokens exactly when the model is known */
        p->tok_tried = true;
        const char *m = lode_lsp_model(p->l);
        lode_error te = {0};
        if (m && lode_tok_load(m, &p->own_tok, &te) == LODE_OK) {
            p->tok = p->own_tok;
            lode_ctx_free(p->ctx);
            p->ctx = lode_ctx_new(p->ix, (const char *const *)p->roots, p->ix ? p->n_roots : 0, p->tok);
        }
    }
    odoc *d = find(p, req->uri);
    sync_index(p, d);
    const lode_lang *lang = d ? d->lang : lode_lang_for_id(req->language);
    const TSTree *tree = NULL;
    if (d && d->sd) {
        size_t len;
        const char *t = lode_sdoc_text(d->sd, &len);
        if (len == req->len && !memcmp(t, req->text, len)) tree = lode_sdoc_tree(d->sd);
    }
    size_t budget = p->tokens ? p->tokens : req->budget / 2;
    lode_ctx_input in = {d ? d->path : NULL, lang, req->text, req->len, req->cursor, tree, budget};
    lode_ctx_prompt pr;
    lode_status st = lode_ctx_build(p->ctx, &in, &pr, err);
    if (st) return st;
    out->prefix = pr.prefix;
    out->prefix_len = pr.prefix_len;
    out->suffix = pr.suffix;
    out->suffix_len = pr.suffix_len;
    out->extra = NULL;
    pr.prefix = pr.suffix = NULL;
    lode_ctx_prompt_clear(&pr);
    return LODE_OK;
}

static char *post(void *ud, const char *uri, const char *lang_id, const char *view, size_t view_n, size_t cursor,
                  const char *gen, size_t gen_n, size_t *n) {
    lode_ctx_lsp *p = ud;
    odoc *d = find(p, uri);
    const lode_lang *lang = d ? d->lang : lode_lang_for_id(lang_id);
    const TSTree *tree = NULL;
    if (d && d->sd) {
        size_t len;
        const char *t = lode_sdoc_text(d->sd, &len);
        if (len == view_n && !memcmp(t, view, len)) tree = lode_sdoc_tree(d->sd);
    }
    return lode_post_process(lang, tree, view, view_n, cursor, gen, gen_n, n, NULL);
}

void lode_ctx_lsp_attach(lode_ctx_lsp *p, lode_lsp *l) {
    static const lode_lsp_hooks hooks = {h_init, h_settings, h_open, h_change, h_close, post};
    p->l = l;
    lode_lsp_set_hooks(l, &hooks, p);
    lode_lsp_set_context_provider(l, provide, p);
}
