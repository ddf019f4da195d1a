/*
 * lsp_pipeline.c — the completion pipeline's default pieces: a plain
 * prefix/suffix window around the cursor (the context provider the
 * tree-sitter builder replaces through lode_lsp_set_context_provider) and
 * the post-processing of the model's text for the cursor.
 */
#include <string.h>

#include "lode_lsp.h"

static bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

lode_status lode_lsp_context_window(void *ud, const lode_lsp_ctx_req *req, lode_lsp_ctx *out, lode_error *err) {
    (void)ud, (void)err;
    const char *t = req->text;
    size_t cur = req->cursor > req->len ? req->len : req->cursor;
    size_t pre = req->budget - req->budget / 4, suf = req->budget / 4;
    /* Prefix: whole lines when the window does not reach the file start.
     * Its start moves on a grid of pre/4 bytes, not with every keystroke,
     * so consecutive requests share their first tokens and the daemon's
     * prefix cache computes only the typed tail. */
    size_t a = 0;
    if (cur > pre) {
        size_t grid = pre / 4 ? pre / 4 : 1;
        a = (cur - pre + grid - 1) / grid * grid; /* round up: at most pre bytes */
    }
    if (a > 0) {
        size_t s = a;
        while (s < cur && t[s - 1] != '\n' && t[s - 1] != '\r') s++;
        if (s < cur) a = s; /* else one long line: keep the partial window */
        while (a < cur && is_cont((unsigned char)t[a])) a++;
    }
    /* Suffix: up to a line end when the window does not reach the file end. */
    size_t b = req->len - cur > suf ? cur + suf : req->len;
    if (b < req->len) {
        size_t e = b;
        while (e > cur && t[e - 1] != '\n') e--;
        if (e > cur) b = e;
        while (b > cur && b < req->len && is_cont((unsigned char)t[b])) b--;
    }
    out->prefix_len = cur - a;
    out->prefix = lode_xmalloc(out->prefix_len + 1);
    memcpy(out->prefix, t + a, out->prefix_len);
    out->prefix[out->prefix_len] = 0;
    out->suffix_len = b - cur;
    out->suffix = lode_xmalloc(out->suffix_len + 1);
    memcpy(out->suffix, t + cur, out->suffix_len);
    out->suffix[out->suffix_len] = 0;
    out->extra = NULL;
    return LODE_OK;
}

void lode_lsp_ctx_clear(lode_lsp_ctx *c) {
    lode_free(c->prefix);
    lode_free(c->suffix);
    json_decref(c->extra);
    memset(c, 0, sizeof *c);
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t') return false;
    return true;
}

char *lode_lsp_postprocess(const char *gen, size_t n, const char *rest, size_t rn, size_t *out_n) {
    /* The rest of the cursor line, without trailing blanks. */
    while (rn && (rest[rn - 1] == ' ' || rest[rn - 1] == '\t')) rn--;
    bool midline = !blank(rest, rn);
    if (midline) { /* text after the cursor: complete this line only */
        for (size_t i = 0; i < n; i++)
            if (gen[i] == '\n' || gen[i] == '\r') {
                n = i;
                break;
            }
    }
    while (n && (gen[n - 1] == ' ' || gen[n - 1] == '\t' || gen[n - 1] == '\n' || gen[n - 1] == '\r')) n--;
    if (midline) { /* drop an end that repeats the start of the line's rest: "a + b)" before ")" */
        size_t lead = 0;
        while (lead < rn && (rest[lead] == ' ' || rest[lead] == '\t')) lead++;
        for (size_t k = rn - lead < n ? rn - lead : n; k > 0; k--)
            if (!memcmp(gen + n - k, rest + lead, k) && (lead + k == rn || !is_cont((unsigned char)rest[lead + k]))) {
                n -= k;
                break;
            }
        while (n && (gen[n - 1] == ' ' || gen[n - 1] == '\t')) n--;
    }
    char *s = lode_xmalloc(n + 1);
    memcpy(s, gen, n);
    s[n] = 0;
    *out_n = n;
    return s;
}
