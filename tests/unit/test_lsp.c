/*
 * test_lsp.c — the uv-free layers of `lode lsp`: positions in utf-8/16/32
 * (non-BMP, combining marks, CRLF and lone CR), edits, the context window,
 * post-processing, and the session driven in-process with a fake backend
 * (debounce, supersede, cancel, ContentModified, lifecycle errors).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "jsonrpc.h"
#include "lode_lsp.h"

static lode_lsp_pos P(int64_t l, int64_t c) { return (lode_lsp_pos){l, c}; }

Test(lsp, positions_all_encodings) {
    /* "a😀é" + combining acute, CRLF, lone CR, LF */
    const char *t = "a\xF0\x9F\x98\x80" "e\xCC\x81" "b\r\nx\ry\n";
    lode_lsp_doc *d = lode_lsp_doc_new(t, strlen(t));
    cr_assert_eq(lode_lsp_doc_lines(d), 4);
    size_t off;
    /* After the emoji: utf-8 5, utf-16 3, utf-32 2 — all byte 5. */
    cr_assert_eq(lode_lsp_doc_offset(d, LODE_LSP_ENC_UTF8, P(0, 5), &off, NULL), LODE_OK);
    cr_assert_eq(off, 5);
    lode_lsp_doc_offset(d, LODE_LSP_ENC_UTF16, P(0, 3), &off, NULL);
    cr_assert_eq(off, 5);
    lode_lsp_doc_offset(d, LODE_LSP_ENC_UTF32, P(0, 2), &off, NULL);
    cr_assert_eq(off, 5);
    /* Inside the surrogate pair / the UTF-8 sequence: rounds down. */
    lode_lsp_doc_offset(d, LODE_LSP_ENC_UTF16, P(0, 2), &off, NULL);
    cr_assert_eq(off, 1);
    lode_lsp_doc_offset(d, LODE_LSP_ENC_UTF8, P(0, 3), &off, NULL);
    cr_assert_eq(off, 1);
    /* The combining mark is its own code point. */
    lode_lsp_doc_offset(d, LODE_LSP_ENC_UTF32, P(0, 4), &off, NULL);
    cr_assert_eq(off, 8);
    /* Past the line end: the line end, before "\r\n". */
    lode_lsp_doc_offset(d, LODE_LSP_ENC_UTF16, P(0, 99), &off, NULL);
    cr_assert_eq(off, 9);
    lode_lsp_doc_offset(d, LODE_LSP_ENC_UTF16, P(1, 1), &off, NULL);
    cr_assert_eq(off, 12);
    lode_lsp_doc_offset(d, LODE_LSP_ENC_UTF16, P(2, 0), &off, NULL);
    cr_assert_eq(off, 13); /* after the lone CR */
    lode_lsp_doc_offset(d, LODE_LSP_ENC_UTF16, P(3, 0), &off, NULL);
    cr_assert_eq(off, 15); /* the empty last line */
    lode_error err = {0};
    cr_assert_eq(lode_lsp_doc_offset(d, LODE_LSP_ENC_UTF16, P(4, 0), &off, &err), LODE_ERR_RANGE);
    cr_assert(strstr(err.text, "outside"));
    /* And back. */
    lode_lsp_pos p = lode_lsp_doc_position(d, LODE_LSP_ENC_UTF16, 8);
    cr_assert(p.line == 0 && p.character == 5);
    p = lode_lsp_doc_position(d, LODE_LSP_ENC_UTF8, 8);
    cr_assert(p.line == 0 && p.character == 8);
    p = lode_lsp_doc_position(d, LODE_LSP_ENC_UTF16, 10); /* inside "\r\n": end of line 0 */
    cr_assert(p.line == 0 && p.character == 6);
    p = lode_lsp_doc_position(d, LODE_LSP_ENC_UTF32, 13);
    cr_assert(p.line == 2 && p.character == 0);
    lode_lsp_doc_free(d);
}

Test(lsp, edits) {
    lode_lsp_doc *d = lode_lsp_doc_new("ab\ncd", 5);
    cr_assert_eq(lode_lsp_doc_edit(d, LODE_LSP_ENC_UTF16, P(0, 1), P(1, 1), "\xF0\x9D\x94\x98", 4, NULL), LODE_OK);
    size_t n;
    cr_assert_str_eq(lode_lsp_doc_text(d, &n), "a\xF0\x9D\x94\x98" "d");
    cr_assert_eq(lode_lsp_doc_lines(d), 1);
    /* After 𝔘 in utf-16 is character 3. */
    lode_lsp_doc_edit(d, LODE_LSP_ENC_UTF16, P(0, 3), P(0, 3), "\r\n", 2, NULL);
    cr_assert_str_eq(lode_lsp_doc_text(d, &n), "a\xF0\x9D\x94\x98\r\nd");
    cr_assert_eq(lode_lsp_doc_lines(d), 2);
    /* Ranges past the end are clamped, not a crash; reversed ones swapped. */
    lode_lsp_doc_edit(d, LODE_LSP_ENC_UTF16, P(9, 9), P(1, 0), "!", 1, NULL);
    cr_assert_str_eq(lode_lsp_doc_text(d, &n), "a\xF0\x9D\x94\x98\r\n!");
    lode_lsp_doc_free(d);
}

Test(lsp, context_window) {
    const char *t = "line1\nline2\nline3\nHERE\nnext1\nnext2\n";
    lode_lsp_ctx c = {0};
    size_t cur = strstr(t, "HERE") - t + 2;
    lode_lsp_ctx_req q = {"u", "c", t, strlen(t), cur, 16};
    cr_assert_eq(lode_lsp_context_window(NULL, &q, &c, NULL), LODE_OK);
    cr_assert_str_eq(c.prefix, "line3\nHE"); /* 12 bytes back, cut at a line start */
    cr_assert_str_eq(c.suffix, "RE\n");      /* 4 bytes on, cut at a line end */
    lode_lsp_ctx_clear(&c);
    /* Typing at the cursor keeps the window start (prefix-cache friendly). */
    char big[4096];
    for (int i = 0; i < 4095; i++) big[i] = i % 40 == 39 ? '\n' : 'a' + i % 26;
    big[4095] = 0;
    q = (lode_lsp_ctx_req){"u", "c", big, 4095, 3000, 1024};
    lode_lsp_context_window(NULL, &q, &c, NULL);
    const char *start = c.prefix;
    size_t first = 3000 - c.prefix_len;
    cr_assert_leq(c.prefix_len, 768);
    cr_assert(first == 0 || big[first - 1] == '\n');
    (void)start;
    lode_lsp_ctx_clear(&c);
    int moves = 0; /* the grid is 768/4 = 192 bytes: over 150 typed bytes it moves at most once */
    for (size_t k = 3001; k < 3150; k++) {
        q.cursor = k;
        lode_lsp_context_window(NULL, &q, &c, NULL);
        size_t f = k - c.prefix_len;
        cr_assert_leq(c.prefix_len, 768);
        cr_assert(f == 0 || big[f - 1] == '\n');
        if (f != first) moves++, first = f;
        lode_lsp_ctx_clear(&c);
    }
    cr_assert_leq(moves, 1);
    q = (lode_lsp_ctx_req){"u", "c", t, strlen(t), cur, 16};
    q.budget = 1 << 20;
    lode_lsp_context_window(NULL, &q, &c, NULL);
    cr_assert_eq(c.prefix_len + c.suffix_len, strlen(t));
    lode_lsp_ctx_clear(&c);
}

Test(lsp, postprocess) {
    size_t n;
    char *s = lode_lsp_postprocess("a + b)\n    more", 16, ")", 1, &n);
    cr_assert_str_eq(s, "a + b"); /* mid-line: one line, the ")" already there dropped */
    lode_free(s);
    s = lode_lsp_postprocess("return a\n  b  \n\n", 16, "   ", 3, &n);
    cr_assert_str_eq(s, "return a\n  b"); /* end of line: multi-line kept, trailing blanks trimmed */
    lode_free(s);
    s = lode_lsp_postprocess(" \n", 2, "", 0, &n);
    cr_assert_eq(n, 0);
    lode_free(s);
}

/* ---- the session with a fake backend ------------------------------------------------ */
typedef struct fake {
    json_t *out; /* messages sent to the editor */
    uint64_t next, last_cancel;
    json_t *last_params;
    int n_infill;
} fake;

static void f_send(void *ud, json_t *m) { json_array_append_new(((fake *)ud)->out, m); }
static uint64_t f_infill(void *ctx, json_t *p) {
    fake *f = ctx;
    json_decref(f->last_params);
    f->last_params = p;
    f->n_infill++;
    return ++f->next;
}
static void f_cancel(void *ctx, uint64_t h) { ((fake *)ctx)->last_cancel = h; }
static void f_configure(void *ctx, const char *m, const char *s) { (void)ctx, (void)m, (void)s; }
static const lode_lsp_backend_i k_fake = {f_infill, f_cancel, f_configure};

static void in(lode_lsp *l, const char *json) {
    json_error_t e;
    json_t *m = json_loads(json, 0, &e);
    cr_assert(m, "%s", e.text);
    lode_lsp_handle(l, m);
    json_decref(m);
}

/* The response to id (borrowed from f->out), or NULL. */
static json_t *resp(fake *f, int id) {
    size_t i;
    json_t *m;
    json_array_foreach(f->out, i, m) if (!json_object_get(m, "method") && json_integer_value(json_object_get(m, "id")) == id) return m;
    return NULL;
}

Test(lsp, session_lifecycle_and_requests) {
    fake f = {.out = json_array()};
    lode_lsp_host h = {f_send, &f, &k_fake, &f};
    lode_lsp *l = lode_lsp_new(&h, NULL);
    in(l, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"textDocument/completion\",\"params\":{}}");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(resp(&f, 1), "error"), "code")), -32002);
    in(l, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\",\"params\":{\"capabilities\":{\"general\":"
          "{\"positionEncodings\":[\"utf-32\",\"utf-16\"]}},\"initializationOptions\":{\"debounceMs\":50}}}");
    json_t *caps = json_object_get(json_object_get(resp(&f, 2), "result"), "capabilities");
    cr_assert_str_eq(json_string_value(json_object_get(caps, "positionEncoding")), "utf-32");
    cr_assert(json_object_get(caps, "completionProvider")); /* no inline support offered: the fallback */
    in(l, "{\"jsonrpc\":\"2.0\",\"method\":\"textDocument/didOpen\",\"params\":{\"textDocument\":{\"uri\":\"u\","
          "\"languageId\":\"c\",\"version\":1,\"text\":\"int x = f(\\n\"}}}");
    /* Automatic: debounced, then superseded by a newer one (empty answer). */
    in(l, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"textDocument/inlineCompletion\",\"params\":{\"textDocument\":"
          "{\"uri\":\"u\"},\"position\":{\"line\":0,\"character\":10},\"context\":{\"triggerKind\":2}}}");
    cr_assert_eq(f.n_infill, 0);
    cr_assert_gt(lode_lsp_next_deadline(l), 0);
    in(l, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"textDocument/inlineCompletion\",\"params\":{\"textDocument\":"
          "{\"uri\":\"u\"},\"position\":{\"line\":0,\"character\":10},\"context\":{\"triggerKind\":2}}}");
    cr_assert_eq(json_array_size(json_object_get(json_object_get(resp(&f, 3), "result"), "items")), 0);
    lode_lsp_tick(l, lode_time_s() + 1);
    cr_assert_eq(f.n_infill, 1);
    cr_assert_str_eq(json_string_value(json_object_get(f.last_params, "prefix")), "int x = f(");
    json_t *r = json_pack("{s:s, s:i, s:i, s:i}", "text", "a, b);\nmore", "prompt_tokens", 9, "cached_tokens", 0,
                          "generated_tokens", 3);
    lode_lsp_backend_done(l, f.next, r, 0, NULL);
    json_decref(r);
    json_t *it = json_array_get(json_object_get(json_object_get(resp(&f, 4), "result"), "items"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(it, "insertText")), "a, b);\nmore");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(json_object_get(it, "range"), "start"), "character")), 10);
    /* Invoked: sent at once; the document changes under it: ContentModified and a backend cancel. */
    in(l, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"textDocument/inlineCompletion\",\"params\":{\"textDocument\":"
          "{\"uri\":\"u\"},\"position\":{\"line\":0,\"character\":10},\"context\":{\"triggerKind\":1}}}");
    cr_assert_eq(f.n_infill, 2);
    in(l, "{\"jsonrpc\":\"2.0\",\"method\":\"textDocument/didChange\",\"params\":{\"textDocument\":{\"uri\":\"u\","
          "\"version\":2},\"contentChanges\":[{\"text\":\"y\"}]}}");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(resp(&f, 5), "error"), "code")), -32801);
    cr_assert_eq(f.last_cancel, f.next);
    /* $/cancelRequest: -32800 at once; the late backend answer is dropped. */
    in(l, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"textDocument/completion\",\"params\":{\"textDocument\":"
          "{\"uri\":\"u\"},\"position\":{\"line\":0,\"character\":1},\"context\":{\"triggerKind\":1}}}");
    in(l, "{\"jsonrpc\":\"2.0\",\"method\":\"$/cancelRequest\",\"params\":{\"id\":6}}");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(resp(&f, 6), "error"), "code")), -32800);
    size_t before = json_array_size(f.out);
    lode_lsp_backend_done(l, f.next, NULL, -32800, "cancelled");
    cr_assert_eq(json_array_size(f.out), before);
    in(l, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"shutdown\"}");
    cr_assert(json_is_null(json_object_get(resp(&f, 7), "result")));
    in(l, "{\"jsonrpc\":\"2.0\",\"method\":\"exit\"}");
    cr_assert_eq(lode_lsp_exit_code(l), 0);
    lode_lsp_free(l);
    json_decref(f.last_params);
    json_decref(f.out);
}

Test(lsp, configuration_pull_and_languages) {
    fake f = {.out = json_array()};
    lode_lsp_host h = {f_send, &f, &k_fake, &f};
    lode_lsp *l = lode_lsp_new(&h, NULL);
    in(l, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"capabilities\":{\"workspace\":"
          "{\"configuration\":true},\"textDocument\":{\"inlineCompletion\":{}}}}}");
    cr_assert_null(json_object_get(json_object_get(json_object_get(resp(&f, 1), "result"), "capabilities"),
                                   "completionProvider")); /* inline client: no popup fallback */
    /* No settings in the notification: the server asks for section "lode". */
    in(l, "{\"jsonrpc\":\"2.0\",\"method\":\"workspace/didChangeConfiguration\",\"params\":{\"settings\":null}}");
    json_t *rq = NULL;
    size_t i;
    json_t *m;
    json_array_foreach(f.out, i, m) if (json_object_get(m, "id") && json_object_get(m, "method")) rq = m;
    cr_assert(rq);
    cr_assert_str_eq(json_string_value(json_object_get(rq, "method")), "workspace/configuration");
    char buf[256];
    snprintf(buf, sizeof buf, "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"result\":[{\"maxTokens\":5,\"languages\":{\"c\":false}}]}",
             (long long)json_integer_value(json_object_get(rq, "id")));
    in(l, buf);
    in(l, "{\"jsonrpc\":\"2.0\",\"method\":\"textDocument/didOpen\",\"params\":{\"textDocument\":{\"uri\":\"a\","
          "\"languageId\":\"python\",\"version\":1,\"text\":\"x\"}}}");
    in(l, "{\"jsonrpc\":\"2.0\",\"method\":\"textDocument/didOpen\",\"params\":{\"textDocument\":{\"uri\":\"b\","
          "\"languageId\":\"c\",\"version\":1,\"text\":\"x\"}}}");
    in(l, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"textDocument/inlineCompletion\",\"params\":{\"textDocument\":"
          "{\"uri\":\"a\"},\"position\":{\"line\":0,\"character\":1},\"context\":{\"triggerKind\":1}}}");
    cr_assert_eq(json_integer_value(json_object_get(f.last_params, "max_tokens")), 5);
    in(l, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"textDocument/inlineCompletion\",\"params\":{\"textDocument\":"
          "{\"uri\":\"b\"},\"position\":{\"line\":0,\"character\":1},\"context\":{\"triggerKind\":1}}}");
    cr_assert_eq(f.n_infill, 1); /* c is disabled: answered empty, never sent */
    cr_assert_eq(json_array_size(json_object_get(json_object_get(resp(&f, 3), "result"), "items")), 0);
    lode_lsp_free(l); /* answers request 2 (RequestCancelled) */
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(resp(&f, 2), "error"), "code")), -32800);
    json_decref(f.last_params);
    json_decref(f.out);
}

/* ---- random edits against an independent model ---------------------------------------
 * The reference keeps the document as code points and computes LSP positions
 * from them directly (lines split at \n, \r\n, lone \r; a code point above
 * U+FFFF is 2 UTF-16 units, 4 UTF-8 bytes). Every position the reference can
 * name must map to the same place in lode_lsp_doc, both ways, and the text
 * after each edit must be identical. */
static const uint32_t k_cps[] = {'a', 'b', ' ', '\n', '\r', 0xE9, 0x301, 0x4E2D, 0x1F600, 0x1D518, 0x7FF, 0x10FFFF};

static size_t put_utf8(uint32_t c, char *o) {
    if (c < 0x80) return o[0] = (char)c, 1;
    if (c < 0x800) return o[0] = (char)(0xC0 | c >> 6), o[1] = (char)(0x80 | (c & 63)), 2;
    if (c < 0x10000)
        return o[0] = (char)(0xE0 | c >> 12), o[1] = (char)(0x80 | ((c >> 6) & 63)), o[2] = (char)(0x80 | (c & 63)), 3;
    o[0] = (char)(0xF0 | c >> 18), o[1] = (char)(0x80 | ((c >> 12) & 63));
    o[2] = (char)(0x80 | ((c >> 6) & 63)), o[3] = (char)(0x80 | (c & 63));
    return 4;
}

static size_t ref_units(uint32_t c, lode_lsp_enc e) {
    if (e == LODE_LSP_ENC_UTF8) return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (e == LODE_LSP_ENC_UTF16) return c >= 0x10000 ? 2 : 1;
    return 1;
}

/* Position of code point index i (not inside a "\r\n"). */
static lode_lsp_pos ref_pos(const uint32_t *cp, size_t i, lode_lsp_enc e) {
    lode_lsp_pos p = {0, 0};
    for (size_t k = 0; k < i; k++) {
        if (cp[k] == '\n' || (cp[k] == '\r' && cp[k + 1] != '\n')) p.line++, p.character = 0;
        else if (cp[k] == '\r') continue; /* the \r of a \r\n: the \n ends the line */
        else p.character += (int64_t)ref_units(cp[k], e);
    }
    return p;
}

Test(lsp, random_edits_match_reference) {
    uint32_t cp[4097] = {0};
    size_t n = 0;
    unsigned seed = 12345;
    lode_lsp_doc *d = lode_lsp_doc_new("", 0);
    for (int it = 0; it < 3000; it++) {
        lode_lsp_enc e = (lode_lsp_enc)(it % 3);
        seed = seed * 1103515245u + 12345u;
        /* Two addressable indices (never between \r and \n). */
        size_t a, b;
        do a = (seed >> 8) % (n + 1), seed = seed * 1103515245u + 12345u;
        while (a > 0 && a < n && cp[a - 1] == '\r' && cp[a] == '\n');
        do b = a + (seed >> 8) % 4, seed = seed * 1103515245u + 12345u;
        while (b <= n && b > 0 && b < n && cp[b - 1] == '\r' && cp[b] == '\n' && (b = b + 1));
        if (b > n) b = n;
        /* Both ways for a. */
        lode_lsp_pos pa = ref_pos(cp, a, e), pb = ref_pos(cp, b, e);
        size_t boff = 0;
        char tmp[8];
        for (size_t k = 0; k < a; k++) boff += put_utf8(cp[k], tmp);
        size_t off;
        cr_assert_eq(lode_lsp_doc_offset(d, e, pa, &off, NULL), LODE_OK);
        cr_assert_eq(off, boff, "it %d enc %d: (%lld,%lld) -> %zu, want %zu", it, e, (long long)pa.line,
                     (long long)pa.character, off, boff);
        lode_lsp_pos back = lode_lsp_doc_position(d, e, boff);
        cr_assert(back.line == pa.line && back.character == pa.character, "it %d: position of byte %zu", it, boff);
        /* Replace [a, b) with 0..3 random code points. */
        uint32_t ins[3];
        size_t ni = (seed >> 16) % 4, il = 0;
        char ibuf[16];
        for (size_t k = 0; k < ni; k++) {
            seed = seed * 1103515245u + 12345u;
            ins[k] = k_cps[(seed >> 8) % (sizeof k_cps / sizeof k_cps[0])];
            il += put_utf8(ins[k], ibuf + il);
        }
        if (n - (b - a) + ni > 4000) ni = 0, il = 0;
        cr_assert_eq(lode_lsp_doc_edit(d, e, pa, pb, ibuf, il, NULL), LODE_OK);
        memmove(cp + a + ni, cp + b, (n - b) * sizeof *cp);
        memcpy(cp + a, ins, ni * sizeof *cp);
        n = n - (b - a) + ni;
        cp[n] = 0; /* the reference looks one past the end for "\r\n" */
        /* Same text. */
        size_t len, rl = 0;
        const char *t = lode_lsp_doc_text(d, &len);
        char *r = lode_xmalloc(n * 4 + 1);
        for (size_t k = 0; k < n; k++) rl += put_utf8(cp[k], r + rl);
        cr_assert(len == rl && !memcmp(t, r, rl), "it %d: text differs", it);
        lode_free(r);
    }
    lode_lsp_doc_free(d);
}
