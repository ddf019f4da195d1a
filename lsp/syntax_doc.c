/*
 * syntax_doc.c — lode_sdoc: an open document kept parsed and reparsed
 * incrementally (ts_tree_edit with the exact byte and point mapping of the
 * edit, then ts_parser_parse with the edited old tree).
 */
#include <string.h>

#include "lode_syntax.h"

struct lode_sdoc {
    const lode_lang *lang;
    TSParser *parser;
    TSTree *tree;
    char *text; /* NUL-terminated */
    size_t len, cap;
    uint64_t version;
};

static bool reserve(lode_sdoc *d, size_t need) {
    if (need + 1 <= d->cap) return true;
    size_t nc = d->cap ? d->cap : 256;
    while (nc < need + 1) {
        if (nc > SIZE_MAX / 2) return false;
        nc *= 2;
    }
    char *t = lode_try_realloc(d->text, nc);
    if (!t) return false;
    d->text = t;
    d->cap = nc;
    return true;
}

lode_sdoc *lode_sdoc_new(const lode_lang *l, const char *text, size_t len) {
    if (!l || (!text && len) || len >= UINT32_MAX) return NULL;
    lode_sdoc *d = lode_xcalloc(1, sizeof *d);
    d->lang = l;
    d->parser = ts_parser_new();
    if (!ts_parser_set_language(d->parser, lode_lang_ts(l)) || !reserve(d, len)) {
        lode_sdoc_free(d);
        return NULL;
    }
    if (len) memcpy(d->text, text, len);
    d->text[len] = 0;
    d->len = len;
    d->tree = ts_parser_parse_string(d->parser, NULL, d->text, (uint32_t)len);
    if (!d->tree) {
        lode_sdoc_free(d);
        return NULL;
    }
    return d;
}

void lode_sdoc_free(lode_sdoc *d) {
    if (!d) return;
    if (d->tree) ts_tree_delete(d->tree);
    if (d->parser) ts_parser_delete(d->parser);
    lode_free(d->text);
    lode_free(d);
}

/* The point reached from `p` after the bytes s[0..n). */
static TSPoint advance(TSPoint p, const char *s, size_t n) {
    const char *end = s + n, *line = NULL;
    for (const char *q = s; q < end;) {
        const char *nl = memchr(q, '\n', (size_t)(end - q));
        if (!nl) break;
        p.row++;
        q = line = nl + 1;
    }
    p.column = line ? (uint32_t)(end - line) : p.column + (uint32_t)n;
    return p;
}

TSInputEdit lode_syntax_edit_for(const char *src, size_t src_len, size_t start, size_t old_end, const char *text,
                                 size_t len) {
    if (old_end > src_len) old_end = src_len;
    if (start > old_end) start = old_end;
    TSPoint sp = lode_syntax_point_at(src, src_len, start);
    TSInputEdit e = {
        .start_byte = (uint32_t)start,
        .old_end_byte = (uint32_t)old_end,
        .new_end_byte = (uint32_t)(start + len),
        .start_point = sp,
        .old_end_point = advance(sp, src + start, old_end - start),
        .new_end_point = advance(sp, text ? text : "", len),
    };
    return e;
}

lode_status lode_sdoc_edit(lode_sdoc *d, size_t start, size_t old_end, const char *text, size_t len, lode_error *err) {
    if (!d || (!text && len)) return lode_error_set(err, LODE_ERR_INVALID_ARG, "lode_sdoc_edit: bad arguments");
    if (start > old_end || old_end > d->len)
        return lode_error_set(err, LODE_ERR_RANGE, "edit [%zu, %zu) outside the document (%zu bytes)", start, old_end,
                              d->len);
    size_t nlen = d->len - (old_end - start) + len;
    if (nlen >= UINT32_MAX) return lode_error_set(err, LODE_ERR_RANGE, "document too large (%zu bytes)", nlen);
    if (!reserve(d, nlen)) return lode_error_set(err, LODE_ERR_NOMEM, "document of %zu bytes", nlen);
    TSInputEdit e = lode_syntax_edit_for(d->text, d->len, start, old_end, text, len);
    memmove(d->text + start + len, d->text + old_end, d->len - old_end);
    if (len) memcpy(d->text + start, text, len);
    d->len = nlen;
    d->text[nlen] = 0;
    ts_tree_edit(d->tree, &e);
    TSTree *nt = ts_parser_parse_string(d->parser, d->tree, d->text, (uint32_t)nlen);
    if (!nt) nt = ts_parser_parse_string(d->parser, NULL, d->text, (uint32_t)nlen);
    if (!nt) return lode_error_set(err, LODE_ERR_STATE, "tree-sitter reparse failed");
    ts_tree_delete(d->tree);
    d->tree = nt;
    d->version++;
    return LODE_OK;
}

lode_status lode_sdoc_set(lode_sdoc *d, const char *text, size_t len, lode_error *err) {
    if (!d || (!text && len)) return lode_error_set(err, LODE_ERR_INVALID_ARG, "lode_sdoc_set: bad arguments");
    if (len >= UINT32_MAX) return lode_error_set(err, LODE_ERR_RANGE, "document too large (%zu bytes)", len);
    if (!reserve(d, len)) return lode_error_set(err, LODE_ERR_NOMEM, "document of %zu bytes", len);
    if (len) memmove(d->text, text, len);
    d->text[len] = 0;
    d->len = len;
    TSTree *nt = ts_parser_parse_string(d->parser, NULL, d->text, (uint32_t)len);
    if (!nt) return lode_error_set(err, LODE_ERR_STATE, "tree-sitter parse failed");
    ts_tree_delete(d->tree);
    d->tree = nt;
    d->version++;
    return LODE_OK;
}

const TSTree *lode_sdoc_tree(const lode_sdoc *d) { return d ? d->tree : NULL; }
const char *lode_sdoc_text(const lode_sdoc *d, size_t *len) {
    if (len) *len = d ? d->len : 0;
    return d ? d->text : NULL;
}
const lode_lang *lode_sdoc_lang(const lode_sdoc *d) { return d ? d->lang : NULL; }
uint64_t lode_sdoc_version(const lode_sdoc *d) { return d ? d->version : 0; }
