/*
 * lsp_doc.c — text documents and LSP positions (see lode_lsp.h).
 *
 * A document is its UTF-8 bytes plus an index of line starts, rebuilt lazily
 * after an edit (one pass; editors send one edit per keystroke and ask for
 * a completion after it, so one rebuild per request). A position's
 * `character` counts code units of the negotiated encoding within its line:
 * bytes (utf-8), UTF-16 units (a code point above U+FFFF counts 2), or code
 * points (utf-32). Combining marks are code points like any other: they are
 * counted, never merged with their base. Positions that land inside a code
 * point round down to its start, so an edit can never split a sequence.
 */
#include <string.h>

#include "lode_lsp.h"

struct lode_lsp_doc {
    char *text;
    size_t len, cap;
    size_t *starts; /* byte offset where each line starts */
    size_t n_lines, cap_lines;
    bool dirty;
};

const char *lode_lsp_enc_name(lode_lsp_enc e) {
    return e == LODE_LSP_ENC_UTF8 ? "utf-8" : e == LODE_LSP_ENC_UTF32 ? "utf-32" : "utf-16";
}

/* Length of the UTF-8 sequence starting with byte c (1 for stray bytes). */
static size_t u8len(unsigned char c) {
    if (c < 0xC0) return 1;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    return c < 0xF8 ? 4 : 1;
}

static size_t units(lode_lsp_enc enc, size_t seqlen) {
    if (enc == LODE_LSP_ENC_UTF8) return seqlen;
    if (enc == LODE_LSP_ENC_UTF16) return seqlen == 4 ? 2 : 1;
    return 1;
}

static lode_status reserve(lode_lsp_doc *d, size_t n) {
    size_t want;
    if (!lode_add_ok(n, 1, &want)) return LODE_ERR_NOMEM;
    if (want <= d->cap) return LODE_OK;
    size_t cap = d->cap ? d->cap : 256;
    while (cap < want) {
        if (!lode_mul_ok(cap, 2, &cap)) return LODE_ERR_NOMEM;
    }
    char *t = lode_try_realloc(d->text, cap);
    if (!t) return LODE_ERR_NOMEM;
    d->text = t;
    d->cap = cap;
    return LODE_OK;
}

lode_lsp_doc *lode_lsp_doc_new(const char *text, size_t n) {
    lode_lsp_doc *d = lode_xcalloc(1, sizeof *d);
    if (lode_lsp_doc_set(d, text, n, NULL)) {
        lode_lsp_doc_free(d);
        return NULL;
    }
    return d;
}

void lode_lsp_doc_free(lode_lsp_doc *d) {
    if (!d) return;
    lode_free(d->text);
    lode_free(d->starts);
    lode_free(d);
}

const char *lode_lsp_doc_text(const lode_lsp_doc *d, size_t *len) {
    if (len) *len = d->len;
    return d->text;
}

lode_status lode_lsp_doc_set(lode_lsp_doc *d, const char *text, size_t n, lode_error *err) {
    if (reserve(d, n)) return lode_error_set(err, LODE_ERR_NOMEM, "document of %zu bytes: out of memory", n);
    if (n) memcpy(d->text, text, n);
    d->len = n;
    d->text[n] = 0;
    d->dirty = true;
    return LODE_OK;
}

static void index_lines(lode_lsp_doc *d) {
    if (!d->dirty) return;
    d->n_lines = 0;
    for (size_t i = 0;;) {
        if (d->n_lines == d->cap_lines) {
            d->cap_lines = d->cap_lines ? d->cap_lines * 2 : 64;
            d->starts = lode_xrealloc(d->starts, d->cap_lines * sizeof *d->starts);
        }
        d->starts[d->n_lines++] = i;
        /* Next line break: "\n", "\r\n" or a lone "\r". */
        const char *t = d->text;
        while (i < d->len && t[i] != '\n' && t[i] != '\r') i++;
        if (i >= d->len) break;
        i += (t[i] == '\r' && i + 1 < d->len && t[i + 1] == '\n') ? 2 : 1;
    }
    d->dirty = false;
}

size_t lode_lsp_doc_lines(lode_lsp_doc *d) {
    index_lines(d);
    return d->n_lines;
}

/* End of line `ln`'s content (before its line break). */
static size_t line_end(const lode_lsp_doc *d, size_t ln) {
    if (ln + 1 >= d->n_lines) return d->len;
    size_t e = d->starts[ln + 1];
    if (e >= 2 && d->text[e - 2] == '\r' && d->text[e - 1] == '\n') return e - 2;
    return e - 1;
}

/* Offset of `ch` units into line ln (clamped to the line, rounded down). */
static size_t char_offset(const lode_lsp_doc *d, lode_lsp_enc enc, size_t ln, int64_t ch) {
    size_t i = d->starts[ln], end = line_end(d, ln);
    uint64_t left = ch < 0 ? 0 : (uint64_t)ch;
    while (i < end) {
        size_t sl = u8len((unsigned char)d->text[i]);
        if (i + sl > end) sl = end - i;
        size_t u = units(enc, sl);
        if (u > left) break;
        left -= u;
        i += sl;
    }
    return i;
}

lode_status lode_lsp_doc_offset(lode_lsp_doc *d, lode_lsp_enc enc, lode_lsp_pos p, size_t *off, lode_error *err) {
    index_lines(d);
    if (p.line < 0 || p.character < 0)
        return lode_error_set(err, LODE_ERR_RANGE, "position (%lld, %lld) is negative", (long long)p.line,
                              (long long)p.character);
    if ((uint64_t)p.line >= d->n_lines)
        return lode_error_set(err, LODE_ERR_RANGE, "line %lld is outside the document (%zu lines)", (long long)p.line,
                              d->n_lines);
    *off = char_offset(d, enc, (size_t)p.line, p.character);
    return LODE_OK;
}

lode_lsp_pos lode_lsp_doc_position(lode_lsp_doc *d, lode_lsp_enc enc, size_t off) {
    index_lines(d);
    if (off > d->len) off = d->len;
    size_t lo = 0, hi = d->n_lines; /* last start <= off */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (d->starts[mid] <= off) lo = mid;
        else hi = mid;
    }
    size_t end = line_end(d, lo);
    if (off > end) off = end;
    int64_t ch = 0;
    for (size_t i = d->starts[lo]; i < off;) {
        size_t sl = u8len((unsigned char)d->text[i]);
        if (i + sl > off) break;
        ch += (int64_t)units(enc, sl);
        i += sl;
    }
    return (lode_lsp_pos){(int64_t)lo, ch};
}

/* Clamp a position to the document: past the end means the end. */
static size_t clamp_offset(lode_lsp_doc *d, lode_lsp_enc enc, lode_lsp_pos p) {
    index_lines(d);
    if (p.line < 0) return 0;
    if ((uint64_t)p.line >= d->n_lines) return d->len;
    return char_offset(d, enc, (size_t)p.line, p.character);
}

lode_status lode_lsp_doc_edit(lode_lsp_doc *d, lode_lsp_enc enc, lode_lsp_pos start, lode_lsp_pos end, const char *text,
                              size_t n, lode_error *err) {
    size_t a = clamp_offset(d, enc, start), b = clamp_offset(d, enc, end);
    if (b < a) {
        size_t t = a;
        a = b;
        b = t;
    }
    size_t nl = d->len - (b - a), tot;
    if (!lode_add_ok(nl, n, &tot) || reserve(d, tot))
        return lode_error_set(err, LODE_ERR_NOMEM, "document of %zu bytes: out of memory", d->len + n);
    memmove(d->text + a + n, d->text + b, d->len - b);
    if (n) memcpy(d->text + a, text, n);
    d->len = tot;
    d->text[tot] = 0;
    d->dirty = true;
    return LODE_OK;
}
